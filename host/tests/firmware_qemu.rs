//! End to end on emulated Cortex-M: `edgekd bench` builds the firmware around each
//! reference model for the Cortex-M4F (mps2-an386) and the Cortex-M0 (microbit), runs it
//! in QEMU, and the firmware's outputs must equal the host runtime's bit for bit.
//!
//! Needs qemu-system-arm, the thumbv7em-none-eabihf and thumbv6m-none-eabi targets and
//! llvm-tools (`scripts/bootstrap.sh` installs them all). Without them these tests fail
//! and say what to install: a skipped firmware test would hide a broken firmware.

use edgekd::io::{read_i8_matrix, read_model};
use edgekd_runtime::{Interpreter, Model};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The firmware crate has one target dir, and each build replaces its ELF: run the
/// builds one at a time.
static FIRMWARE: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn require_tools(triples: &[&str]) {
    let mut missing = Vec::new();
    let on_path = |name: &str| {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
            .unwrap_or(false)
    };
    if !on_path("qemu-system-arm") {
        missing.push("qemu-system-arm: apt-get install -y qemu-system-arm".to_string());
    }
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .expect("rustc runs");
    for t in triples {
        if !sysroot.join("lib/rustlib").join(t).is_dir() {
            missing.push(format!("{t}: rustup target add {t}"));
        }
    }
    let has_llvm_size = std::fs::read_dir(sysroot.join("lib/rustlib"))
        .map(|d| {
            d.flatten()
                .any(|e| e.path().join("bin/llvm-size").is_file())
        })
        .unwrap_or(false);
    if !has_llvm_size {
        missing.push("llvm-size: rustup component add llvm-tools".into());
    }
    assert!(
        missing.is_empty(),
        "the firmware tests need tools that are missing (scripts/bootstrap.sh installs all):\n  {}",
        missing.join("\n  ")
    );
}

fn bench(target: &str, model: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgekd"))
        .args(["bench", "--target", target, "--json", "--model"])
        .arg(model)
        .args(extra)
        .arg("--firmware-dir")
        .arg(repo().join("firmware"))
        .output()
        .expect("edgekd runs")
}

/// [`bench`] that must succeed: its JSON report.
fn bench_report(target: &str, model: &Path, extra: &[&str]) -> serde_json::Value {
    let out = bench(target, model, extra);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "edgekd bench --target {target} {} failed:\n{stdout}\n{}",
        model.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("bench prints JSON")
}

/// The host runtime's outputs on the golden inputs, computed here rather than trusted.
fn host_outputs(model_path: &Path, inputs: &edgekd::io::Matrix<i8>) -> Vec<Vec<i8>> {
    let bytes = read_model(model_path).unwrap();
    let model = Model::parse(bytes.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena).unwrap();
    (0..inputs.rows)
        .map(|r| {
            interp.input_mut(0).unwrap().copy_from_slice(inputs.row(r));
            interp.invoke().unwrap();
            interp.output(0).unwrap().to_vec()
        })
        .collect()
}

fn check_model(target: &str, name: &str) -> serde_json::Value {
    check_model_built(target, name, &[])
}

/// [`check_model`] for a firmware built with `build_args` (`--opt-level`, `--kernels`:
/// other variants of the DSP kernels).
fn check_model_built(target: &str, name: &str, build_args: &[&str]) -> serde_json::Value {
    let dir = repo().join("models/reference");
    let model = dir.join(format!("{name}.ekd"));
    let inputs = read_i8_matrix(&dir.join(format!("{name}.input.npy"))).unwrap();
    let golden = read_i8_matrix(&dir.join(format!("{name}.expected.npy"))).unwrap();

    let report = bench_report(target, &model, build_args);
    let firmware: Vec<Vec<i8>> = serde_json::from_value(report["outputs"].clone()).unwrap();

    let host = host_outputs(&model, &inputs);
    assert_eq!(firmware.len(), inputs.rows, "{target} {name}: samples");
    for (r, got) in firmware.iter().enumerate() {
        assert_eq!(
            got, &host[r],
            "{target} {name}: sample {r} differs from the host runtime"
        );
        assert_eq!(
            got.as_slice(),
            golden.row(r),
            "{target} {name}: sample {r} differs from the golden vector"
        );
    }
    assert_eq!(report["bit_exact"], true);
    assert_eq!(report["mismatches"], 0);
    // Every layer of the reference models fits the kernels' fast paths, so the
    // firmware is built without their fallbacks.
    assert_eq!(report["fallback_kernels"], false, "{target} {name}");
    // ... and with the kernels' column buffer sized to the model (`EDGEKD_MAX_COLS`):
    // the paired conv columns of tiny_cnn (128 + 24), the mlp's 40 inputs.
    let columns = match name {
        "tiny_cnn" => 152,
        "mlp" => 40,
        _ => 0,
    };
    if columns > 0 {
        assert_eq!(report["scratch_columns"], columns, "{target} {name}");
    }

    // The counts are exact instruction counts: the clock check is exact, the same
    // inference costs the same on every sample, and the ops plus the interpreter add up.
    assert_eq!(report["unit"], "instructions");
    assert_eq!(
        report["clock_calibration"], "100/100",
        "{target}: SysTick/-icount conversion is off"
    );
    let per_inference = report["per_inference"].as_u64().unwrap();
    assert!(
        per_inference > 1000,
        "{target} {name}: {per_inference} instructions is implausible"
    );
    let op_sum: u64 = report["ops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["count"].as_u64().unwrap())
        .sum();
    let interp = report["interpreter"].as_u64().unwrap();
    assert!(op_sum <= per_inference && op_sum + interp == per_inference);
    let macs = Model::parse(read_model(&model).unwrap().as_bytes())
        .unwrap()
        .macs();
    assert_eq!(report["macs"].as_u64().unwrap(), macs);
    let arena = report["arena_bytes"].as_u64().unwrap();
    assert!(report["static_ram_bytes"].as_u64().unwrap() >= arena);
    assert!(report["flash_bytes"].as_u64().unwrap() > report["model_bytes"].as_u64().unwrap());
    report
}

#[test]
fn cortex_m4_outputs_equal_host_runtime() {
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    for name in ["tiny_cnn", "mlp", "ds_cnn"] {
        let r = check_model("qemu-m4", name);
        eprintln!(
            "qemu-m4 {name}: {} instructions per inference",
            r["per_inference"]
        );
        // Every conv layer of tiny_cnn reads its channels from its prepared table, so
        // the firmware leaves the RAM channel table out; ds_cnn's depthwise layer
        // needs it. tiny_cnn's arena plus interpreter then stay under the 1,588-byte
        // arena TFLite Micro needs for the same model (issue 5).
        let (arena, interp) = (&r["arena_bytes"], &r["interpreter_bytes"]);
        let ram = arena.as_u64().unwrap() + interp.as_u64().unwrap();
        match name {
            "tiny_cnn" => {
                assert_eq!(r["channel_table"], false);
                // ... and every conv layer runs dense, every fully connected layer has
                // its table: no general conv loop, no plain fully connected rows.
                assert_eq!(r["conv_general"], false);
                assert_eq!(r["fc_plain"], false);
                assert!(ram < 1588, "tiny_cnn: arena + interpreter {ram} bytes");
            }
            "ds_cnn" => assert_eq!(r["channel_table"], true),
            _ => {}
        }
    }
}

/// Builds optimized for size take other kernel variants: tiny_cnn (conv pairs, fully
/// connected) at "z" on the M4, with the small kernels (the default there) and with the
/// fast ones.
#[test]
fn size_optimized_cortex_m4_outputs_equal_host_runtime() {
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let small = check_model_built("qemu-m4", "tiny_cnn", &["--opt-level", "z"]);
    assert_eq!(small["opt_level"], "z");
    assert_eq!(small["kernels"], "small");
    assert_eq!(small["channel_table"], true);
    assert_eq!(small["table_bytes"], 0);
    assert_eq!(small["conv_general"], true);
    assert_eq!(small["fc_plain"], true);

    let fast = check_model_built(
        "qemu-m4",
        "tiny_cnn",
        &["--opt-level", "z", "--kernels", "fast"],
    );
    assert_eq!(fast["kernels"], "fast");
    // The fast kernels read every layer's prepared table (so no channel table in RAM),
    // run both conv layers dense (so no general conv loop) and take fewer
    // instructions (exact counts); this build meets issue 5's aims in one: under half
    // TFLM + CMSIS-NN's 32,344 instructions and under 8 KB of runtime code.
    assert_eq!(fast["channel_table"], false);
    assert_eq!(fast["conv_general"], false);
    assert_eq!(fast["fc_plain"], false);
    assert!(fast["table_bytes"].as_u64().unwrap() > 0);
    let count = |r: &serde_json::Value, key: &str| r[key].as_u64().unwrap();
    assert!(count(&fast, "per_inference") < count(&small, "per_inference"));
    assert!(count(&fast, "per_inference") < 32_344 / 2);
    assert!(count(&fast, "runtime_code_bytes") < 8 * 1024);
}

#[test]
fn cortex_m0_outputs_equal_host_runtime() {
    require_tools(&["thumbv6m-none-eabi"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    for name in ["tiny_cnn", "mlp", "ds_cnn"] {
        let r = check_model("qemu-m0", name);
        eprintln!(
            "qemu-m0 {name}: {} instructions per inference",
            r["per_inference"]
        );
        // The M0 build must fit the micro:bit's 16 KB of RAM with room to spare.
        let ram = r["static_ram_bytes"].as_u64().unwrap() + r["stack_bytes"].as_u64().unwrap();
        assert!(ram < 16 * 1024, "qemu-m0 {name}: {ram} bytes of RAM");
    }
}

/// The firmware must fail (non-zero exit) when an output differs from the expected one.
#[test]
fn firmware_fails_on_a_wrong_expected_output() {
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo().join("models/reference");
    let tmp = tempfile::tempdir().unwrap();
    let mut expected = std::fs::read(dir.join("mlp.expected.npy")).unwrap();
    let last = expected.len() - 1;
    expected[last] = expected[last].wrapping_add(1);
    let bad = tmp.path().join("bad.expected.npy");
    std::fs::write(&bad, expected).unwrap();

    let run = build_and_run(&dir.join("mlp.ekd"), &dir.join("mlp.input.npy"), &bad, &[]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        !run.status.success(),
        "QEMU exited 0 despite a wrong expected output:\n{stdout}"
    );
    assert!(
        stdout.contains("sample index=15") && stdout.contains("match=no"),
        "{stdout}"
    );
    assert!(stdout.contains("result FAIL mismatches=1"), "{stdout}");
}

/// Builds the M4 firmware (mps2-an386) for `model` with extra cargo `features` and runs
/// it in QEMU.
fn build_and_run(
    model: &Path,
    input: &Path,
    expected: &Path,
    features: &[&str],
) -> std::process::Output {
    let build = firmware_build(model)
        .args(features.iter().flat_map(|f| ["--features", f]))
        .env("EDGEKD_INPUT", input)
        .env("EDGEKD_EXPECTED", expected)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let fw = repo().join("firmware");
    Command::new("sh")
        .current_dir(&fw)
        .arg("qemu-run.sh")
        .arg(fw.join("target/thumbv7em-none-eabihf/release/edgekd-firmware"))
        .output()
        .unwrap()
}

/// The firmware runs the ops build.rs decoded (`edgekd_runtime::codegen`); with
/// `runtime-decode` it parses the embedded `.ekd` on the device instead, as a device
/// that loads its model at run time would. ds_cnn has every op kind: both must give the
/// golden outputs (the firmware exits 0 only if every output equals them).
#[test]
fn runtime_decode_on_the_device_gives_the_golden_outputs() {
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = repo().join("models/reference");
    let run = build_and_run(
        &dir.join("ds_cnn.ekd"),
        &dir.join("ds_cnn.input.npy"),
        &dir.join("ds_cnn.expected.npy"),
        &["runtime-decode"],
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(
        stdout.contains("result PASS mismatches=0 samples=16"),
        "{stdout}"
    );
}

/// A model of one fully connected layer (`n` inputs, `weights.len() / n` outputs with
/// one weight scale each, no bias), written to `dir/<name>.ekd`.
fn one_fc_model(dir: &Path, name: &str, n: usize, weights: Vec<i8>, scales: Vec<f32>) -> PathBuf {
    use edgekd_runtime::writer::{Activation, ModelBuilder, OpSpec, QuantSpec};
    let out = weights.len() / n;
    let mut b = ModelBuilder::new(name);
    let x = b.activation(&[1, n], 0.05, -3);
    let w = b.weights(
        &[out, n],
        weights,
        QuantSpec::PerChannel { scales, axis: 0 },
    );
    let y = b.activation(&[1, out], 0.25, 5);
    b.op(OpSpec::FullyConnected {
        input: x,
        weights: w,
        bias: None,
        output: y,
        activation: Activation::None,
    })
    .inputs(&[x])
    .outputs(&[y]);
    let model = dir.join(format!("{name}.ekd"));
    std::fs::write(&model, b.finish().unwrap()).unwrap();
    model
}

/// A model whose arena cannot fit the board's RAM fails the build with a clear message.
#[test]
fn model_too_big_for_the_board_fails_the_build() {
    require_tools(&["thumbv6m-none-eabi"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let n = 16_000;
    let tmp = tempfile::tempdir().unwrap();
    let model = one_fc_model(tmp.path(), "too_big", n, vec![1; n], vec![0.01]);
    let input = edgekd::io::Matrix {
        rows: 1,
        cols: n,
        data: vec![3i8; n],
    };
    let input_path = tmp.path().join("one.npy");
    std::fs::write(&input_path, edgekd::io::npy_bytes(&input).unwrap()).unwrap();

    let out = bench(
        "qemu-m0",
        &model,
        &["--input", input_path.to_str().unwrap()],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not fit board microbit"), "{stderr}");
    assert!(stderr.contains("16384 bytes"), "{stderr}");
}

/// A fully connected layer with more than 256 inputs runs the kernel's fallback: the
/// firmware keeps it (and matches the host bit for bit through it), and a build told to
/// leave the fallbacks out (`EDGEKD_FALLBACK=0`) is refused with a message.
#[test]
fn long_fully_connected_keeps_the_fallback() {
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let (n, out) = (300, 4);
    let weights = (0..out * n)
        .map(|i| ((i * 37 % 255) as i32 - 127) as i8)
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let scales = vec![0.002, 0.003, 0.001, 0.004];
    let model = one_fc_model(tmp.path(), "long_fc", n, weights, scales);

    let report = bench_report("qemu-m4", &model, &[]);
    assert_eq!(report["fallback_kernels"], true);
    assert_eq!(report["bit_exact"], true);

    assert_build_refused(
        &model,
        ("EDGEKD_FALLBACK", "0"),
        &["runs a kernel's fallback", "long_fc.ekd"],
    );
}

/// The `cargo build --release` of the M4 firmware (the crate's default target,
/// mps2-an386) for `model`, in the firmware's own target directory.
fn firmware_build(model: &Path) -> Command {
    let fw = repo().join("firmware");
    let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    build
        .current_dir(&fw)
        .args(["build", "--release"])
        .env("CARGO_TARGET_DIR", fw.join("target"))
        .env("EDGEKD_MODEL", model)
        .env_remove("RUSTFLAGS");
    build
}

/// Builds the M4 firmware for `model` with one build-time variable set, which the build
/// must refuse with a message containing every one of `needles`.
fn assert_build_refused(model: &Path, (var, value): (&str, &str), needles: &[&str]) {
    let build = firmware_build(model).env(var, value).output().unwrap();
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(!build.status.success(), "the build took {var}={value}");
    for needle in needles {
        assert!(stderr.contains(needle), "`{needle}` missing:\n{stderr}");
    }
}

/// A column buffer smaller than the model's layers need (`EDGEKD_MAX_COLS`) is refused
/// by the firmware's build, naming the model and the size it needs.
#[test]
fn too_small_column_buffer_is_refused() {
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let model = repo().join("models/reference/mlp.ekd");
    assert_build_refused(
        &model,
        ("EDGEKD_MAX_COLS", "36"),
        &["needs a column buffer of 40 entries", "mlp.ekd"],
    );
}

/// `EDGEKD_CHANNEL_TABLE=0` is refused for a model whose layers need the table (ds_cnn:
/// a depthwise layer), naming the variable.
#[test]
fn channel_table_is_kept_for_layers_that_need_it() {
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let model = repo().join("models/reference/ds_cnn.ekd");
    assert_build_refused(
        &model,
        ("EDGEKD_CHANNEL_TABLE", "0"),
        &["EDGEKD_CHANNEL_TABLE=0", "depthwise"],
    );
}

/// `EDGEKD_CONV_GENERAL=0` is refused for a model with a conv layer the dense path
/// cannot run (three output channels: it pairs them), naming the op and the variable.
#[test]
fn conv_general_loop_is_kept_for_layers_that_need_it() {
    use edgekd_runtime::writer::{Activation, ModelBuilder, OpSpec, QuantSpec};
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let mut b = ModelBuilder::new("odd_conv");
    let x = b.activation(&[1, 1, 8, 2], 0.05, -3);
    let w = b.weights(
        &[3, 1, 3, 2],
        (0..18).map(|i| i as i8 - 9).collect(),
        QuantSpec::PerChannel {
            scales: vec![0.01, 0.02, 0.03],
            axis: 0,
        },
    );
    let y = b.activation(&[1, 1, 6, 3], 0.1, -128);
    b.op(OpSpec::Conv2d {
        input: x,
        weights: w,
        bias: None,
        output: y,
        stride: [1, 1],
        dilation: [1, 1],
        pad: [0, 0],
        activation: Activation::Relu,
    })
    .inputs(&[x])
    .outputs(&[y]);
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("odd_conv.ekd");
    std::fs::write(&model, b.finish().unwrap()).unwrap();

    assert_build_refused(
        &model,
        ("EDGEKD_CONV_GENERAL", "0"),
        &["op 0 of the model", "odd_conv.ekd", "EDGEKD_CONV_GENERAL=0"],
    );
}

/// A fully connected layer whose requantization multiplier is above one has no
/// prepared table: the firmware keeps the rows that widen the filter as they go (and
/// matches the host bit for bit through them), and refuses `EDGEKD_FC_PLAIN=0` for it.
#[test]
fn fully_connected_rows_without_a_table_are_kept_for_layers_that_need_them() {
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let (n, out) = (24, 6);
    let weights = (0..out * n).map(|i| (i % 7) as i8 - 3).collect();
    let tmp = tempfile::tempdir().unwrap();
    // 0.05 (input) x 10 (weights) / 0.25 (output): a multiplier of 2.
    let model = one_fc_model(tmp.path(), "plain_fc", n, weights, vec![10.0; out]);

    let report = bench_report("qemu-m4", &model, &[]);
    assert_eq!(report["fc_plain"], true);
    assert_eq!(report["table_bytes"], 0);
    assert_eq!(report["bit_exact"], true);

    assert_build_refused(
        &model,
        ("EDGEKD_FC_PLAIN", "0"),
        &["op 0 of the model", "plain_fc.ekd", "EDGEKD_FC_PLAIN=0"],
    );
}

/// `edgekd flash --board` builds the firmware as `edgekd bench` does (here at "z" with
/// the fast kernels) and runs it in QEMU, which passes only if every output equals the
/// host runtime's.
#[test]
fn flash_runs_the_firmware_on_a_qemu_board() {
    require_tools(&["thumbv7em-none-eabihf"]);
    let _guard = FIRMWARE.lock().unwrap_or_else(|e| e.into_inner());
    let model = repo().join("models/reference/mlp.ekd");
    let out = Command::new(env!("CARGO_BIN_EXE_edgekd"))
        .args(["flash", "--board", "mps2-an386", "--opt-level", "z"])
        .args(["--kernels", "fast", "--model"])
        .arg(&model)
        .arg("--firmware-dir")
        .arg(repo().join("firmware"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("result PASS mismatches=0 samples=16"),
        "{stdout}"
    );
}

/// `edgekd flash --chip` names what is missing before building anything: a chip no
/// board describes, then probe-rs (not installed here) or a probe.
#[test]
fn flash_on_a_chip_says_what_is_missing() {
    let flash = |chip: &str| {
        Command::new(env!("CARGO_BIN_EXE_edgekd"))
            .args(["flash", "--chip", chip, "--firmware-dir"])
            .arg(repo().join("firmware"))
            .output()
            .unwrap()
    };
    let out = flash("ESP32");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no firmware board has the memory map of ESP32")
            && stderr.contains("STM32F405*"),
        "{stderr}"
    );
    let out = flash("STM32F405RGTx");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("probe-rs is not installed") || stderr.contains("no debug probe"),
        "{stderr}"
    );
}
