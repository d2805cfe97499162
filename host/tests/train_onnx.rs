//! ONNX teachers: a teacher trained here, exported to ONNX and loaded through tract-onnx gives
//! the same outputs; unsupported ops and class-count mismatches are clear errors.

use edgekd::nn::onnx::{f32_tensor, model_proto, value_info};
use edgekd::teacher::{self, onnx::OnnxTeacher, LoadOptions, NativeTeacher, OutputKind, Teacher};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tract_onnx::pb;

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgekd"))
        .env("RAYON_NUM_THREADS", "1")
        .args(args)
        .output()
        .expect("runs")
}

fn smoke() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/recipes/smoke.toml")
}

fn opts() -> LoadOptions {
    LoadOptions {
        input_shape: None,
        output: OutputKind::Auto,
        features: 64,
        classes: 10,
    }
}

/// A one-node graph: `input [N, 64]` -> op -> `[N, classes]`.
fn tiny_onnx(path: &Path, op: &str, classes: usize, softmax: bool) {
    let w: Vec<f32> = (0..classes * 64)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 50.0)
        .collect();
    let mut nodes = vec![pb::NodeProto {
        op_type: op.into(),
        name: "n0".into(),
        input: vec!["input".into(), "w".into()],
        output: vec![if softmax { "z".into() } else { "logits".into() }],
        attribute: vec![pb::AttributeProto {
            name: "transB".into(),
            r#type: pb::attribute_proto::AttributeType::Int as i32,
            i: 1,
            ..Default::default()
        }],
        ..Default::default()
    }];
    if softmax {
        nodes.push(pb::NodeProto {
            op_type: "Softmax".into(),
            name: "n1".into(),
            input: vec!["z".into()],
            output: vec!["logits".into()],
            ..Default::default()
        });
    }
    let graph = pb::GraphProto {
        name: "g".into(),
        node: nodes,
        initializer: vec![f32_tensor("w", &[classes, 64], &w)],
        input: vec![value_info("input", &[64])],
        output: vec![value_info("logits", &[classes])],
        ..Default::default()
    };
    std::fs::write(path, model_proto(graph).encode_to_vec()).unwrap();
}

#[test]
fn exported_teacher_round_trips_through_tract() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("teacher");
    let o = run(&[
        "train",
        "--recipe",
        smoke().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--onnx",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut native = NativeTeacher::load(&out.join("model.safetensors")).unwrap();
    let mut onnx = OnnxTeacher::load(&out.join("model.onnx"), &opts()).unwrap();
    assert_eq!(onnx.classes(), 10);
    assert!(onnx.describe().contains("logits"), "{}", onnx.describe());
    // Raw optdigits-like inputs (0..16), more rows than one tract batch to cover padding.
    let n = 300;
    let x: Vec<f32> = (0..n * 64).map(|i| (i * 31 % 17) as f32).collect();
    let a = native.log_probs(&x, n).unwrap();
    let b = onnx.log_probs(&x, n).unwrap();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    assert!(
        worst < 1e-5,
        "native and ONNX log-probabilities differ by {worst}"
    );
    // The outputs are not trivially equal (e.g. all uniform).
    assert!(a.iter().any(|&v| (v - a[0]).abs() > 1e-3));

    // Distilling from the ONNX teacher, and from an ensemble of both, works end to end.
    let s = tmp.path().join("student");
    let o = run(&[
        "distill",
        "--recipe",
        smoke().to_str().unwrap(),
        "--out",
        s.to_str().unwrap(),
        "--epochs",
        "1",
        "--quiet",
        "--teacher",
        out.join("model.onnx").to_str().unwrap(),
        "--teacher",
        out.join("model.safetensors").to_str().unwrap(),
        "--cache-dir",
        tmp.path().join("cache").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(s.join("model.safetensors").exists());
    let cached = std::fs::read_dir(tmp.path().join("cache")).unwrap().count();
    assert!(
        cached >= 2,
        "teacher outputs were not cached ({cached} files)"
    );
}

#[test]
fn probability_outputs_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("probs.onnx");
    tiny_onnx(&p, "Gemm", 10, true);
    let mut t = OnnxTeacher::load(&p, &opts()).unwrap();
    assert!(t.describe().contains("probabilities"));
    let l = tmp.path().join("logits.onnx");
    tiny_onnx(&l, "Gemm", 10, false);
    let mut u = OnnxTeacher::load(&l, &opts()).unwrap();
    let x: Vec<f32> = (0..2 * 64).map(|i| (i % 5) as f32).collect();
    // Softmax(z) read as probabilities and z read as logits give the same log-probabilities.
    let a = t.log_probs(&x, 2).unwrap();
    let b = u.log_probs(&x, 2).unwrap();
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() < 1e-4, "{p} vs {q}");
    }
}

#[test]
fn unsupported_op_and_class_mismatch_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.onnx");
    tiny_onnx(&bad, "FancyAttentionOp", 10, false);
    let e = teacher::load(&bad, &opts()).err().unwrap().to_string();
    assert!(
        e.contains("FancyAttentionOp") && e.contains("not supported"),
        "{e}"
    );

    let seven = tmp.path().join("seven.onnx");
    tiny_onnx(&seven, "Gemm", 7, false);
    let e = teacher::load(&seven, &opts()).err().unwrap().to_string();
    assert!(e.contains("7 classes") && e.contains("10"), "{e}");

    let wrong = LoadOptions {
        features: 40,
        ..opts()
    };
    let e = format!(
        "{:#}",
        teacher::load(&tmp.path().join("seven.onnx"), &wrong)
            .err()
            .unwrap()
    );
    assert!(e.contains("64") && e.contains("40"), "{e}");

    std::fs::write(
        tmp.path().join("junk.onnx"),
        b"definitely not protobuf \xff\xff",
    )
    .unwrap();
    assert!(teacher::load(&tmp.path().join("junk.onnx"), &opts()).is_err());

    // Through the binary: exit 1, message on stderr, no output directory.
    for (file, needle) in [(&bad, "FancyAttentionOp"), (&seven, "7 classes")] {
        let out = tmp.path().join("out");
        let o = run(&[
            "distill",
            "--recipe",
            smoke().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--teacher",
            file.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!out.exists());
    }
}
