//! `edgekd run` end to end: a reduced recipe (seconds of training) through every stage and
//! every target CI has — host, QEMU Cortex-M4 and Cortex-M0, aarch64 under qemu-user — and
//! the recipe errors that must stop it before any training.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn edgekd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgekd"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run edgekd")
}

fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const STUDENT: &str = r#"
[[student.model.layers]]
type = "conv"
filters = 8
kernel = 5
stride = 2
padding = "same"
act = "relu"

[[student.model.layers]]
type = "conv"
filters = 16
kernel = 3
stride = 2
padding = "same"
act = "relu"

[[student.model.layers]]
type = "dense"
units = 10

[student.train]
epochs = 3
batch = 100
lr = 0.01
eval_every = 3
"#;

/// A recipe in `dir` over the shipped MNIST-1D data; `teacher` and `extra` are TOML.
fn recipe(dir: &Path, targets: &str, teacher: &str, extra: &str) -> PathBuf {
    let data = repo().join("models/data");
    let d = |f: &str| data.join(f).display().to_string();
    let text = format!(
        r#"name = "e2e"
targets = [{targets}]

[data]
train = "{}"
train_labels = "{}"
test = "{}"
test_labels = "{}"
shape = [1, 40, 1]
classes = 10

[augment]
shift = 3
noise = 0.1

{teacher}
{STUDENT}
[distill]
temperature = 2.0
alpha = 0.5

[quantize]
calib_size = 300
search_samples = 100

[measure]
samples = 8
runs = 20
warmup = 2
{extra}
"#,
        d("mnist1d-x-train.npy"),
        d("mnist1d-y-train.npy"),
        d("mnist1d-x-test.npy"),
        d("mnist1d-y-test.npy"),
    );
    let path = dir.join("recipe.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn onnx_teacher() -> String {
    format!(
        "[teacher]\nonnx = \"{}\"\n",
        repo()
            .join("models/teachers/mnist1d_teacher.onnx")
            .display()
    )
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

#[test]
fn every_stage_and_every_ci_target() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The firmware targets measure a build at "z" with the fast kernels (the recipe's
    // choice; the default is opt-level 3).
    let r = recipe(
        dir.path(),
        r#""host", "qemu-m4", "qemu-m0", "aarch64""#,
        &onnx_teacher(),
        "firmware_opt_level = \"z\"\nfirmware_kernels = \"fast\"\n",
    );
    let o = edgekd(&["run", r.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    for row in [
        "teacher (f32)",
        "student (f32)",
        "student (int8)",
        "qemu-m4",
        "qemu-m0",
    ] {
        assert!(table.contains(row), "{row} missing:\n{table}");
    }
    for f in [
        "student.ekd",
        "student.onnx",
        "student.h",
        "student.rs",
        "student_program.rs",
        "report.json",
        "report.md",
        "student/model.safetensors",
        "eval/confusion.svg",
    ] {
        assert!(out.join(f).is_file(), "{f} was not written");
    }
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    // Models: accuracies are percentages above chance after 3 epochs; sizes are the
    // architecture's (2,058 parameters, 6,240 MACs).
    let teacher_acc = num(&report["teacher"]["accuracy"], "teacher accuracy");
    assert!(teacher_acc > 90.0, "teacher {teacher_acc}");
    for row in ["student_f32", "student_int8"] {
        let acc = num(&report[row]["accuracy"], row);
        assert!((15.0..=100.0).contains(&acc), "{row} accuracy {acc}");
        assert_eq!(report[row]["params"], 2058, "{row}");
        assert_eq!(report[row]["macs"], 6240, "{row}");
    }
    let ekd_len = std::fs::metadata(out.join("student.ekd")).unwrap().len();
    assert_eq!(report["student_int8"]["flash_bytes"], ekd_len);
    assert_eq!(report["student_f32"]["flash_bytes"], 4 * 2058);
    let arena = num(&report["student_int8"]["arena_bytes"], "arena");
    assert!((100.0..2000.0).contains(&arena), "arena {arena}");
    // Targets: every one agrees bit for bit with the host runtime.
    let targets = report["targets"].as_array().unwrap();
    let names: Vec<&str> = targets
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["host", "qemu-m4", "qemu-m0", "aarch64"]);
    for t in targets {
        let name = t["target"].as_str().unwrap();
        assert_eq!(t["mismatches"], 0, "{name}: {t}");
        assert!(num(&t["samples"], name) >= 8.0, "{name}: {t}");
        assert_ne!(t["tract_agrees"], Value::Bool(false), "{name}: {t}");
    }
    let host = &targets[0];
    assert_eq!(host["samples"], 1000);
    assert_eq!(host["tract_agrees"], true);
    for k in ["edgekd_us", "tract_us"] {
        let us = num(&host[k], k);
        assert!(us > 0.0 && us < 100_000.0, "host {k} = {us}");
    }
    for t in &targets[1..3] {
        let per_mac = num(&t["instructions_per_mac"], "instructions per MAC");
        assert!((1.0..200.0).contains(&per_mac), "{t}");
        let instr = num(&t["instructions"], "instructions");
        assert!((per_mac * 6240.0 - instr).abs() < 1.0, "{t}");
        assert!(num(&t["flash_bytes"], "flash") > ekd_len as f64, "{t}");
        assert!(num(&t["ram_bytes"], "ram") >= arena, "{t}");
        let note = t["note"].as_str().unwrap();
        assert!(note.contains("opt-level z, fast kernels"), "{t}");
    }
    // The M0 has no DSP instructions: it needs more instructions than the M4.
    assert!(num(&targets[2]["instructions"], "m0") > num(&targets[1]["instructions"], "m4"));

    // A second run changes nothing and skips every stage.
    let before = std::fs::read(out.join("student.ekd")).unwrap();
    let o = edgekd(&[
        "run",
        r.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(out.join("student.ekd")).unwrap(), before);
    let stages: Value =
        serde_json::from_slice(&std::fs::read(out.join("stages.json")).unwrap()).unwrap();
    for s in ["teacher", "student", "quantize", "export"] {
        assert!(stages[s].is_string(), "stage {s} not recorded: {stages}");
    }
}

#[test]
fn a_teacher_trained_here_and_cached_stages() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let teacher = r#"
[[teacher.model.layers]]
type = "conv"
filters = 16
kernel = 5
stride = 2
padding = "same"
act = "relu"

[[teacher.model.layers]]
type = "dense"
units = 10

[teacher.train]
epochs = 2
batch = 100
lr = 0.01
eval_every = 2
"#;
    let r = recipe(dir.path(), r#""host""#, teacher, "");
    let run = || edgekd(&["run", r.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    let o = run();
    assert!(o.status.success(), "{}", text(&o));
    assert!(out.join("teacher/model.safetensors").is_file());
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!stderr.contains("skipped"), "{stderr}");
    let o = run();
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    for stage in [
        "teacher",
        "student (distillation)",
        "quantize (int8)",
        "export",
    ] {
        assert!(
            stderr.contains(&format!("{stage}: unchanged, skipped")),
            "{stage} re-ran:\n{stderr}"
        );
    }
    // Changing the quantizer settings re-runs quantization, not training.
    let r = recipe(dir.path(), r#""host""#, teacher, "");
    let text_now = std::fs::read_to_string(&r)
        .unwrap()
        .replace("calib_size = 300", "calib_size = 200");
    std::fs::write(&r, text_now).unwrap();
    let o = run();
    assert!(o.status.success(), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        stderr.contains("student (distillation): unchanged, skipped"),
        "{stderr}"
    );
    assert!(!stderr.contains("quantize (int8): unchanged"), "{stderr}");
}

/// Runs a broken recipe: it must fail with `needle` in the message, before writing anything.
fn fails_before_training(teacher: &str, targets: &str, extra: &str, needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let r = recipe(dir.path(), targets, teacher, extra);
    let o = edgekd(&["run", r.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains(needle), "expected `{needle}` in:\n{stderr}");
    assert!(!out.exists(), "{needle}: output written before the error");
}

#[test]
fn recipe_errors_stop_before_any_training() {
    let onnx = onnx_teacher();
    fails_before_training(&onnx, r#""host""#, "[export]\nformat = [\"c\"]\n", "format");
    fails_before_training(&onnx, r#""host""#, "[export]\nformats = \"c\"\n", "formats");
    fails_before_training(&onnx, r#""host", "qemu-m9""#, "", "unknown target");
    fails_before_training(
        &onnx,
        r#""host", "qemu-m4""#,
        "firmware_kernels = \"tiny\"\n",
        "measure.firmware_kernels must be \"fast\" or \"small\"",
    );
    fails_before_training(
        &onnx,
        r#""host", "qemu-m4""#,
        "firmware_opt_level = \"4\"\n",
        "measure.firmware_opt_level",
    );
    fails_before_training(
        "[teacher]\nonnx = \"/nonexistent/teacher.onnx\"\n",
        r#""host""#,
        "",
        "/nonexistent/teacher.onnx",
    );
    fails_before_training("", r#""host""#, "", "teacher");
    // A teacher file that is not a model.
    let wrong = repo().join("models/tflite/mlp.tflite");
    fails_before_training(
        &format!("[teacher]\nfile = \"{}\"\n", wrong.display()),
        r#""host""#,
        "",
        "mlp.tflite",
    );
}

#[test]
fn a_student_too_big_for_the_board_stops_before_training() {
    // A 512-filter first layer needs a 10 KB+ activation: more than the micro:bit's
    // 16 KB of RAM with the stack, fine for the M4 board.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let r = recipe(dir.path(), r#""host", "qemu-m0""#, &onnx_teacher(), "");
    let big = std::fs::read_to_string(&r)
        .unwrap()
        .replacen("filters = 8", "filters = 512", 1)
        .replacen("stride = 2", "stride = 1", 1);
    std::fs::write(&r, big).unwrap();
    let o = edgekd(&["run", r.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("qemu-m0") && stderr.contains("bytes of RAM"),
        "{stderr}"
    );
    assert!(!out.exists());
}
