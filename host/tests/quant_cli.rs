//! `edgekd quantize`, `eval` and `export` through the built binary: a full run on a small
//! hand-made model, and bad inputs that must fail with a clear message, exit code 1 and no
//! output file.

mod quant_common;

use edgekd::quant::float::{argmax, FloatModel};
use quant_common::{cnn_bytes, float_model_bytes, signals, write_labels, write_npy_f32};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn edgekd(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgekd"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run edgekd")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// A CNN, calibration and test sets labelled by the float model itself.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        let bytes = cnn_bytes(7);
        std::fs::write(p.join("model.safetensors"), &bytes).unwrap();
        let float = FloatModel::from_bytes(&bytes, Path::new("m")).unwrap();
        for (name, n, seed) in [("calib", 300, 1), ("test", 400, 2)] {
            let x = signals(n, seed);
            let y: Vec<u32> = x
                .chunks_exact(40)
                .map(|r| argmax(&float.logits(r)) as u32)
                .collect();
            write_npy_f32(&p.join(format!("{name}.npy")), n, 40, x);
            write_labels(&p.join(format!("{name}-y.npy")), &y);
        }
        Fixture { dir }
    }
    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
    fn run(&self, args: &[&str]) -> Output {
        edgekd(args, self.dir.path())
    }
}

#[test]
fn quantize_eval_export_end_to_end() {
    let f = Fixture::new();
    let o = f.run(&[
        "quantize",
        "model.safetensors",
        "--calib",
        "calib.npy",
        "--calib-labels",
        "calib-y.npy",
        "--softmax",
        "--out",
        "m.ekd",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("SQNR dB") && text.contains("QAT + KD"),
        "{text}"
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(f.path("m.quant.json")).unwrap()).unwrap();
    // conv, dwconv, maxpool, conv, avgpool, reshape, fc, softmax.
    let tensors = report["per_layer"]["tensors"].as_array().unwrap();
    assert_eq!(tensors.len(), 8);
    assert_eq!(tensors[7]["op_type"], "Softmax");
    assert_eq!(tensors[7]["zero_point"], -128);
    assert_eq!(report["per_layer"]["weights"].as_array().unwrap().len(), 4);
    let qat = &report["steps"][1];
    assert_eq!(qat["name"], "QAT + KD");
    // `--qat auto`: QAT runs when the drop after bias correction exceeds 0.5 points, and is
    // kept only if it raises the calibration metric.
    if qat["ran"] == true {
        let before = qat["before"].as_f64().unwrap();
        assert!(report["int8_metric"].as_f64().unwrap() >= before, "{qat}");
        assert!(qat["seconds"].as_f64().unwrap() >= 0.0, "{qat}");
    } else {
        assert!(
            qat["note"].as_str().unwrap().contains("not needed"),
            "{qat}"
        );
    }
    for t in tensors.iter().take(6) {
        assert!(t["sqnr_db"].as_f64().unwrap() > 15.0, "{t}");
    }
    // Evaluation: the float student labelled the data, so its accuracy is 100 %.
    let o = f.run(&[
        "eval",
        "m.ekd",
        "--data",
        "test.npy",
        "--labels",
        "test-y.npy",
        "--float",
        "model.safetensors",
        "--teacher",
        "model.safetensors",
        "--out",
        "eval",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let r: Value =
        serde_json::from_slice(&std::fs::read(f.path("eval/report.json")).unwrap()).unwrap();
    assert_eq!(r["student_f32"], 100.0);
    assert_eq!(r["teacher_f32"], 100.0);
    let int8 = r["student_int8"].as_f64().unwrap();
    assert!(int8 > 90.0, "{int8}");
    assert_eq!(r["agreement_int8_f32"].as_f64().unwrap(), int8);
    let total: u64 = r["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 400);
    assert_eq!(
        r["sizes"]["flash_bytes"].as_u64().unwrap(),
        std::fs::metadata(f.path("m.ekd")).unwrap().len()
    );
    assert!(r["per_layer"]["tensors"].as_array().unwrap().len() == 8);
    for svg in ["confusion.svg", "sqnr.svg"] {
        let s = std::fs::read_to_string(f.path("eval").join(svg)).unwrap();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
    }
    assert!(f.path("eval/summary.md").exists());
    // Exports.
    for (fmt, out) in [
        ("c", "m.h"),
        ("rust", "m.rs"),
        ("rust-program", "m_program.rs"),
        ("onnx", "m.onnx"),
        ("ekd", "copy.ekd"),
    ] {
        let o = f.run(&["export", "m.ekd", "--format", fmt, "--out", out]);
        assert!(o.status.success(), "{fmt}: {}", stderr(&o));
    }
    assert_eq!(
        std::fs::read(f.path("copy.ekd")).unwrap(),
        std::fs::read(f.path("m.ekd")).unwrap()
    );
    let program = std::fs::read_to_string(f.path("m_program.rs")).unwrap();
    assert!(program.contains("pub mod m_program {"), "{program:.400}");
    assert!(program.contains("pub fn build() -> Result<Program<'static, OPS>, Error>"));
}

fn assert_fails(f: &Fixture, args: &[&str], needle: &str, out: &str) {
    let o = f.run(args);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{args:?} should fail: {}",
        stderr(&o)
    );
    let e = stderr(&o);
    assert!(e.contains(needle), "{args:?}: expected `{needle}` in:\n{e}");
    assert!(!e.contains("panicked"), "{e}");
    assert!(!f.path(out).exists(), "{out} was written");
    assert!(!f
        .path(&format!("{}.quant.json", out.trim_end_matches(".ekd")))
        .exists());
}

#[test]
fn unsupported_layer_is_refused() {
    let f = Fixture::new();
    let bytes = float_model_bytes(
        [1, 40, 1],
        10,
        &[0.0],
        &[1.0],
        json!([{"type": "flatten"}, {"type": "lstm", "units": 8}, {"type": "dense", "units": 10}]),
        &[],
    );
    std::fs::write(f.path("lstm.safetensors"), bytes).unwrap();
    assert_fails(
        &f,
        &[
            "quantize",
            "lstm.safetensors",
            "--calib",
            "calib.npy",
            "--out",
            "o.ekd",
        ],
        "layer 1 has unsupported type `lstm`",
        "o.ekd",
    );
}

#[test]
fn wrong_shaped_calibration_set_is_refused() {
    let f = Fixture::new();
    write_npy_f32(&f.path("short.npy"), 10, 39, vec![0.0; 390]);
    assert_fails(
        &f,
        &[
            "quantize",
            "model.safetensors",
            "--calib",
            "short.npy",
            "--out",
            "o.ekd",
        ],
        "calibration samples have 39 values, the model takes [1, 40, 1] = 40",
        "o.ekd",
    );
}

#[test]
fn nan_in_calibration_data_is_refused() {
    let f = Fixture::new();
    let mut x = signals(20, 3);
    x[5 * 40 + 7] = f32::NAN;
    write_npy_f32(&f.path("nan.npy"), 20, 40, x);
    assert_fails(
        &f,
        &[
            "quantize",
            "model.safetensors",
            "--calib",
            "nan.npy",
            "--out",
            "o.ekd",
        ],
        "at sample 5, feature 7 is not finite",
        "o.ekd",
    );
}

#[test]
fn empty_calibration_set_is_refused() {
    let f = Fixture::new();
    write_npy_f32(&f.path("empty.npy"), 0, 40, vec![]);
    assert_fails(
        &f,
        &[
            "quantize",
            "model.safetensors",
            "--calib",
            "empty.npy",
            "--out",
            "o.ekd",
        ],
        "empty",
        "o.ekd",
    );
}

#[test]
fn per_tensor_weights_are_refused_on_depthwise_layers() {
    let f = Fixture::new();
    assert_fails(
        &f,
        &[
            "quantize",
            "model.safetensors",
            "--calib",
            "calib.npy",
            "--per-tensor-weights",
            "--out",
            "o.ekd",
        ],
        "layer 1 is a depthwise convolution",
        "o.ekd",
    );
}

#[test]
fn teacher_with_other_class_count_is_refused() {
    let f = Fixture::new();
    let o = f.run(&[
        "quantize",
        "model.safetensors",
        "--calib",
        "calib.npy",
        "--out",
        "m.ekd",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let t = float_model_bytes(
        [1, 40, 1],
        3,
        &[0.0],
        &[1.0],
        json!([{"type": "dense", "units": 3}]),
        &[
            ("l0.weight".into(), vec![3, 40], vec![0.01; 120]),
            ("l0.bias".into(), vec![3], vec![0.0; 3]),
        ],
    );
    std::fs::write(f.path("t3.safetensors"), t).unwrap();
    let o = f.run(&[
        "eval",
        "m.ekd",
        "--data",
        "test.npy",
        "--labels",
        "test-y.npy",
        "--teacher",
        "t3.safetensors",
        "--out",
        "ev",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has 3 classes, the int8 model 10"),
        "{}",
        stderr(&o)
    );
    assert!(!f.path("ev/report.json").exists());
}

#[test]
fn preprocessed_calibration_data_draws_a_warning() {
    let f = Fixture::new();
    // Data already normalized differently (scaled by 10): the model's own normalization
    // would then see the wrong statistics.
    let x: Vec<f32> = signals(100, 4).iter().map(|v| v * 10.0).collect();
    write_npy_f32(&f.path("scaled.npy"), 100, 40, x);
    let o = f.run(&[
        "quantize",
        "model.safetensors",
        "--calib",
        "scaled.npy",
        "--out",
        "w.ekd",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("warning: calibration channel 0"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_qat_settings_are_refused() {
    let f = Fixture::new();
    let base = [
        "quantize",
        "model.safetensors",
        "--calib",
        "calib.npy",
        "--calib-labels",
        "calib-y.npy",
        "--out",
        "q.ekd",
    ];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    assert_fails(
        &f,
        &with(&["--qat", "on", "--qat-epochs", "0"]),
        "QAT needs at least 1 epoch",
        "q.ekd",
    );
    assert_fails(
        &f,
        &with(&["--qat", "on", "--qat-lr", "NaN"]),
        "the QAT learning rate must be a positive finite number",
        "q.ekd",
    );
}
