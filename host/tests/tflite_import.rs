//! `.tflite` import against TensorFlow Lite itself.
//!
//! `models/tflite/` holds int8 models made by TFLite's converter and the outputs of
//! TFLite's interpreter with its reference kernels (`make_models.py`, TensorFlow
//! 2.21). Imported into `.ekd` and run on `edgekd-runtime`, every int8 output must be
//! identical. Models the runtime cannot run must be refused with the right error,
//! and the CLI must then write nothing.

use edgekd::io::read_i8_matrix;
use edgekd::tflite::{import, ImportError};
use edgekd_kernels::quant::quantize_multiplier;
use edgekd_runtime::format::OpParams;
use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::{Interpreter, Model, OpCode};
use std::path::{Path, PathBuf};
use std::process::Command;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/tflite")
}

fn read(name: &str) -> Vec<u8> {
    let path = dir().join(format!("{name}.tflite"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn imported(name: &str) -> AlignedBytes {
    let out = import(&read(name), name).unwrap_or_else(|e| panic!("{name}: {e}"));
    AlignedBytes::copy_from(&out.ekd)
}

/// Runs all golden inputs and compares with TFLite's reference outputs.
fn assert_bit_exact(name: &str) {
    let bytes = imported(name);
    let model = Model::parse(bytes.as_bytes()).expect("imported model parses");
    let inputs = read_i8_matrix(&dir().join(format!("{name}.input.npy"))).unwrap();
    let expected = read_i8_matrix(&dir().join(format!("{name}.expected.npy"))).unwrap();
    assert_eq!(inputs.rows, 16);
    assert_eq!(expected.rows, 16);
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena).unwrap();
    let mut got = Vec::new();
    for r in 0..inputs.rows {
        interp.input_mut(0).unwrap().copy_from_slice(inputs.row(r));
        interp.invoke().unwrap();
        got.extend_from_slice(interp.output(0).unwrap());
    }
    let wrong: Vec<String> = got
        .iter()
        .zip(&expected.data)
        .enumerate()
        .filter(|(_, (g, e))| g != e)
        .map(|(i, (g, e))| {
            format!(
                "sample {} out {}: got {g} want {e}",
                i / expected.cols,
                i % expected.cols
            )
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{name}: {} of {} outputs differ from TFLite's reference kernels: {:?}",
        wrong.len(),
        got.len(),
        &wrong[..wrong.len().min(10)]
    );
    // The golden outputs are not degenerate: a broken runtime could not match them by
    // accident (several distinct values per sample).
    let distinct = |row: &[i8]| {
        let mut v = row.to_vec();
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    assert!((0..expected.rows).all(|r| distinct(expected.row(r)) >= 3));
}

#[test]
fn tiny_cnn_is_bit_exact_with_tflite_reference() {
    assert_bit_exact("tiny_cnn");
}

#[test]
fn mlp_is_bit_exact_with_tflite_reference() {
    assert_bit_exact("mlp");
}

#[test]
fn ds_cnn_is_bit_exact_with_tflite_reference() {
    assert_bit_exact("ds_cnn");
}

#[test]
fn ops_and_same_padding_map_to_explicit_top_left_padding() {
    let out = import(&read("ds_cnn"), "ds_cnn").unwrap();
    assert_eq!(
        out.ops,
        [
            "CONV_2D",
            "DEPTHWISE_CONV_2D",
            "CONV_2D",
            "ADD",
            "MAX_POOL_2D",
            "DEPTHWISE_CONV_2D",
            "CONV_2D",
            "AVERAGE_POOL_2D",
            "MEAN",
            "FULLY_CONNECTED",
            "SOFTMAX"
        ]
    );
    assert!(out.notes.is_empty(), "{:?}", out.notes);
    let bytes = AlignedBytes::copy_from(&out.ekd);
    let model = Model::parse(bytes.as_bytes()).unwrap();
    let mut pads = Vec::new();
    for op in model.ops() {
        let op = op.unwrap();
        match op.params(&model).unwrap() {
            OpParams::Conv2d(p, _) | OpParams::DepthwiseConv2d(p, _) => {
                pads.push((op.code, p.pad_top, p.pad_left, p.depth_multiplier))
            }
            OpParams::MaxPool2d(p) | OpParams::AvgPool2d(p) => {
                pads.push((op.code, p.pad_top, p.pad_left, 0))
            }
            _ => {}
        }
    }
    assert_eq!(
        pads,
        [
            // 3x3 SAME on 12x10: one cell each side.
            (OpCode::Conv2d, 1, 1, 1),
            (OpCode::DepthwiseConv2d, 1, 1, 1),
            (OpCode::Conv2d, 0, 0, 1),
            (OpCode::MaxPool2d, 0, 0, 0),
            // 3x3 stride 2 SAME on 6x5 -> 3x3: H pads 1 (all bottom), W pads 2 (1 left).
            (OpCode::DepthwiseConv2d, 0, 1, 2),
            (OpCode::Conv2d, 0, 0, 1),
            // 2x2 stride 1 SAME on 3x3: one cell, bottom/right only.
            (OpCode::AvgPool2d, 0, 0, 0),
            // MEAN as a 3x3 window of ones with TFLite's folded multiplier.
            (OpCode::DepthwiseConv2d, 0, 0, 1),
        ]
    );
}

/// TFLite derives a per-tensor FULLY_CONNECTED multiplier from the float product of
/// the input and weight scales; the import must store exactly that.
#[test]
fn per_tensor_fully_connected_uses_tflite_float_product() {
    let bytes = imported("mlp");
    let model = Model::parse(bytes.as_bytes()).unwrap();
    let mut seen = 0;
    let mut product_rounding_matters = false;
    for op in model.ops() {
        let op = op.unwrap();
        let OpParams::FullyConnected(_, rq) = op.params(&model).unwrap() else {
            continue;
        };
        let scale = |i: usize| match model.tensor(i).unwrap().quant {
            edgekd_runtime::Quant::PerTensor { scale, .. } => scale,
            ref q => panic!("mlp is per-tensor throughout, found {q:?}"),
        };
        let (is, ws, os) = (
            scale(op.input(0).unwrap()),
            scale(op.input(1).unwrap()),
            scale(op.output()),
        );
        let tflite = quantize_multiplier(f64::from(is * ws) / f64::from(os));
        let double = quantize_multiplier(f64::from(is) * f64::from(ws) / f64::from(os));
        assert_eq!((rq.multiplier[0], rq.shift[0]), tflite);
        product_rounding_matters |= tflite != double;
        seen += 1;
    }
    assert_eq!(seen, 2);
    // Otherwise this test could not tell the two derivations apart.
    assert!(product_rounding_matters);
}

#[test]
fn unsupported_op_is_named_with_index_and_types() {
    let err = import(&read("refuse_logistic"), "x").unwrap_err();
    match &err {
        ImportError::UnsupportedOp { index, op, .. } => {
            assert_eq!((*index, op.as_str()), (1, "LOGISTIC"));
        }
        other => panic!("expected UnsupportedOp, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("op 1 (LOGISTIC"), "{msg}");
    assert!(msg.contains("inputs [INT8[1,10]]"), "{msg}");
    assert!(msg.contains("outputs [INT8[1,10]]"), "{msg}");
}

#[test]
fn float_model_is_refused_with_conversion_advice() {
    let err = import(&read("refuse_float"), "x").unwrap_err();
    assert!(matches!(err, ImportError::NotFullInteger(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("float model: op 0 (FULLY_CONNECTED)"),
        "{msg}"
    );
    assert!(msg.contains("representative_dataset"), "{msg}");
    assert!(msg.contains("inference_input_type = tf.int8"), "{msg}");
}

#[test]
fn hybrid_model_is_refused_with_conversion_advice() {
    let err = import(&read("refuse_hybrid"), "x").unwrap_err();
    assert!(matches!(err, ImportError::NotFullInteger(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("hybrid (dynamic-range quantized) model"),
        "{msg}"
    );
    assert!(msg.contains("TFLITE_BUILTINS_INT8"), "{msg}");
}

#[test]
fn truncated_or_foreign_files_are_malformed_not_panics() {
    let full = read("tiny_cnn");
    for len in [
        0,
        4,
        7,
        8,
        64,
        full.len() / 2,
        full.len() - 100,
        full.len() - 1,
    ] {
        let err = import(&full[..len], "x").unwrap_err();
        assert!(
            matches!(err, ImportError::Malformed(_)),
            "length {len}: {err:?}"
        );
    }
    let ekd = imported("tiny_cnn");
    let err = import(ekd.as_bytes(), "x").unwrap_err();
    assert!(err.to_string().contains("not a TFLite flatbuffer"), "{err}");
}

#[test]
fn corrupted_bytes_never_panic() {
    let good = read("mlp");
    let mut refused = 0;
    for i in (0..good.len()).step_by(3) {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bad = good.clone();
            bad[i] ^= flip;
            match import(&bad, "x") {
                Ok(out) => {
                    // Whatever imports must be a model the runtime accepts.
                    let bytes = AlignedBytes::copy_from(&out.ekd);
                    Model::parse(bytes.as_bytes()).expect("imported model parses");
                }
                Err(_) => refused += 1,
            }
        }
    }
    assert!(refused > 0);
}

fn edgekd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgekd"))
        .args(args)
        .output()
        .expect("run edgekd")
}

#[test]
fn cli_imports_and_writes_nothing_on_refusal() {
    let tmp = tempfile::tempdir().unwrap();
    let ok = tmp.path().join("ds_cnn.ekd");
    let model = dir().join("ds_cnn.tflite");
    let out = edgekd(&[
        "import",
        model.to_str().unwrap(),
        "-o",
        ok.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("11 ops"), "{stdout}");
    let bytes = AlignedBytes::copy_from(&std::fs::read(&ok).unwrap());
    let parsed = Model::parse(bytes.as_bytes()).unwrap();
    assert_eq!(parsed.metadata().map(|m| m.name), Some("ds_cnn"));

    for (name, needle) in [
        ("refuse_logistic", "LOGISTIC"),
        ("refuse_float", "float model"),
        ("refuse_hybrid", "hybrid"),
    ] {
        let target = tmp.path().join(format!("{name}.ekd"));
        let model = dir().join(format!("{name}.tflite"));
        let out = edgekd(&[
            "import",
            model.to_str().unwrap(),
            "-o",
            target.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{name}: {stderr}");
        assert!(!target.exists(), "{name}: output written despite the error");
    }
    // Only the successful output is in the directory (no temp files left behind).
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
}

/// The imported tiny CNN on the emulated Cortex-M4 (the firmware, DSP kernels) gives
/// TFLite's reference outputs bit for bit.
#[test]
fn imported_model_in_qemu_m4_matches_tflite_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let ekd = tmp.path().join("tiny_cnn.ekd");
    let out = edgekd(&[
        "import",
        dir().join("tiny_cnn.tflite").to_str().unwrap(),
        "-o",
        ekd.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let input = dir().join("tiny_cnn.input.npy");
    let out = edgekd(&[
        "bench",
        "--target",
        "qemu-m4",
        "--model",
        ekd.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = read_i8_matrix(&dir().join("tiny_cnn.expected.npy")).unwrap();
    let outputs = report["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), expected.rows);
    for (r, row) in outputs.iter().enumerate() {
        let got: Vec<i8> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap() as i8)
            .collect();
        assert_eq!(got, expected.row(r), "sample {r}");
    }
    assert_eq!(report["bit_exact"], true);
}
