#!/usr/bin/env bash
# Installs everything edgekd needs beyond Rust itself; quiet and quick when all is there.
#   - rustup targets for the MCU and ARM builds, llvm-tools (llvm-size), clippy, rustfmt
#   - Debian packages: qemu-system-arm (Cortex-M), qemu-user (aarch64), the aarch64 linker
#     and C library (libc6-dev-arm64-cross is only a Recommends of gcc-aarch64-linux-gnu,
#     and `cargo test` cross-builds edgekd-bench and runs it under qemu-aarch64 -L
#     /usr/aarch64-linux-gnu: host/tests/bench_aarch64.rs)
#   - just (the task runner)
#   - onnxruntime + numpy for Python 3: an independent ONNX implementation the exported
#     ONNX is checked against (host/tests/onnx_onnxruntime.rs, scripts/ort_run.py)
# Without root, missing Debian packages are reported with the command to install them.
set -euo pipefail
export PATH="$HOME/.cargo/bin:$PATH"

targets=(thumbv7em-none-eabihf thumbv7m-none-eabi thumbv6m-none-eabi thumbv8m.main-none-eabihf
         aarch64-unknown-linux-gnu aarch64-linux-android)
installed="$(rustup target list --installed)"
missing=()
for t in "${targets[@]}"; do
  grep -qx "$t" <<<"$installed" || missing+=("$t")
done
if ((${#missing[@]})); then
  echo "bootstrap: rustup target add ${missing[*]}"
  rustup target add "${missing[@]}"
fi
components="$(rustup component list --installed)"
for c in llvm-tools clippy rustfmt; do
  grep -q "^$c" <<<"$components" || rustup component add "$c"
done

need_apt=()
command -v qemu-system-arm >/dev/null || need_apt+=(qemu-system-arm)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
[ -e /usr/aarch64-linux-gnu/lib/crt1.o ] && [ -e /usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1 ] \
  || need_apt+=(libc6-dev-arm64-cross)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "bootstrap: apt-get install ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "bootstrap: missing Debian packages; run: sudo apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
fi

if ! command -v just >/dev/null; then
  echo "bootstrap: cargo install just (about a minute)"
  cargo install --locked just >/dev/null 2>&1 || cargo install just
fi

if ! python3 -c "import onnxruntime, numpy" 2>/dev/null; then
  echo "bootstrap: python3 -m pip install onnxruntime numpy"
  # Debian's own python3 refuses pip installs (PEP 668); a pyenv/venv python does not.
  python3 -m pip install --quiet "onnxruntime>=1.17" numpy 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "onnxruntime>=1.17" numpy
fi
