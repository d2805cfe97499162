# edgekd tasks. On a fresh machine run them through `scripts/just <recipe>`, which
# installs the toolchain pieces first; `just <recipe>` works once they are there.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The main job on shipped data: distil, quantize, export and measure the MNIST-1D student
# on every target (see models/recipes/mnist1d_demo.toml); results in runs/mnist1d_demo/.
# The first step builds the tools; the aarch64 edgekd-bench (what `run` cross-builds for
# its aarch64 target) is built up front so the run itself is timed on its own.
demo:
    cargo build --release -p edgekd
    cargo build --profile bench-cross -p edgekd-tract --bin edgekd-bench --target aarch64-unknown-linux-gnu
    ./target/release/edgekd run models/recipes/mnist1d_demo.toml

# Every check CI makes: formatting, lints, no_std builds, all tests.
test: lint nostd firmware-lint
    cargo test --workspace

# Formatting and clippy, warnings are errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# The device runtime builds without std for Cortex-M4F and Cortex-M0.
nostd:
    cargo build -p edgekd-runtime --target thumbv7em-none-eabihf
    cargo build -p edgekd-runtime --target thumbv6m-none-eabi
    # Firmware compiles only its model's kernels: each one alone must build (DSP core).
    for f in conv2d depthwise-conv2d fully-connected pool mean add softmax; do cargo clippy -q -p edgekd-kernels --target thumbv7em-none-eabihf --no-default-features --features $f -- -D warnings || exit 1; done
    # ... and conv without the RAM channel table (every layer brings its prepared one)
    # or the general loop (every layer runs dense), fully connected without the rows
    # that read no table.
    EDGEKD_CHANNEL_TABLE=0 cargo clippy -q -p edgekd-kernels --target thumbv7em-none-eabihf --no-default-features --features conv2d,fully-connected -- -D warnings
    EDGEKD_CONV_GENERAL=0 cargo clippy -q -p edgekd-kernels --target thumbv7em-none-eabihf --no-default-features --features conv2d -- -D warnings
    EDGEKD_FC_PLAIN=0 cargo clippy -q -p edgekd-kernels --target thumbv7em-none-eabihf --no-default-features --features fully-connected -- -D warnings

# Regenerate the reference models and golden vectors (commit the result deliberately).
reference:
    cargo run -p edgekd -- reference --out models/reference

# The runtime's tests under Miri (needs the nightly toolchain with the miri component).
miri:
    rustup +nightly component add miri rust-src
    cargo +nightly miri test -p edgekd-runtime --features std --test golden --test format --test plan
    cargo +nightly miri test -p edgekd-kernels --features std

# Fuzz the parser + interpreter (needs nightly and cargo-fuzz); SECONDS bounds the run.
fuzz SECONDS="60":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
    cd fuzz && cargo +nightly fuzz run parse_and_run -- -max_total_time={{SECONDS}}

# --- firmware (Cortex-M in QEMU; see firmware/README.md) ---

# Benchmark a model on an emulated Cortex-M: TARGET is qemu-m4, qemu-m7, qemu-m33 or qemu-m0.
firmware MODEL="models/reference/tiny_cnn.ekd" TARGET="qemu-m4":
    cargo run --release -p edgekd -- bench --target {{TARGET}} --model {{MODEL}}

# Every reference model on every emulated core.
firmware-bench-all:
    for t in qemu-m4 qemu-m7 qemu-m33 qemu-m0; do for m in tiny_cnn mlp ds_cnn; do cargo run --release -q -p edgekd -- bench --target $t --model models/reference/$m.ekd; done; done

# --- ARM Linux / phones (edgekd-bench: tract vs edgekd; see device/tract/README.md) ---

# TARGET is host, aarch64 (cross-built, run under qemu-aarch64: outputs only, timings
# mean nothing) or android (add --adb; needs a phone and the NDK).
tract-bench MODEL="models/reference/ds_cnn.ekd" TARGET="host":
    cargo run --release -p edgekd -- bench --target {{TARGET}} --model {{MODEL}}

# Formatting and clippy for the firmware crate (outside the workspace), M4F and M0 builds,
# and the build that decodes its model on the device.
firmware-lint:
    cd firmware && cargo fmt --check
    cd firmware && cargo clippy --release -- -D warnings
    cd firmware && cargo clippy --release --features runtime-decode -- -D warnings
    cd firmware && EDGEKD_OPS=conv2d,fully-connected EDGEKD_FALLBACK=0 EDGEKD_CHANNEL_TABLE=0 EDGEKD_CONV_GENERAL=0 EDGEKD_FC_PLAIN=0 cargo clippy --release -- -D warnings
    cd firmware && cargo clippy --release --no-default-features --features microbit --target thumbv6m-none-eabi -- -D warnings
