//! The ONNX file `edgekd export --format onnx` writes, run by two independent ONNX
//! implementations against the golden vectors of the reference models (the
//! edgekd-runtime outputs):
//! - tract-onnx through edgekd-tract (int8 in, int8 out: the float ends cut off);
//! - onnxruntime (Python, `scripts/ort_run.py`): the same int8 cut, and the file as
//!   exported (float features in, dequantized float out) on the raw float inputs.
//!
//! Argmax must be identical on every sample whose top two classes are not a near-tie
//! (within twice the bound), int8 outputs within the bound the exporter documents (MLP
//! 1 LSB, CNNs 2 LSB): ONNX requantizes with a float multiply and rounds ties to even,
//! the runtime uses the Q31 fixed-point multiplier.

use edgekd::export::{export, Format};
use edgekd::io::{npy_bytes, npy_kind, read_f32_matrix, read_i8_matrix, Matrix, NpyKind};
use edgekd_runtime::Model;
use edgekd_tract::argmax;
use edgekd_tract::onnx::{int8_ends, quantize_softmax, OnnxModel};
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/reference")
}

/// The exported ONNX bytes and the golden int8 inputs and outputs of reference model `name`.
fn exported(name: &str) -> (Vec<u8>, Matrix<i8>, Matrix<i8>) {
    let dir = reference_dir();
    let ekd = std::fs::read(dir.join(format!("{name}.ekd"))).unwrap();
    let onnx = export(&ekd, Format::Onnx, name, name).unwrap();
    let input = read_i8_matrix(&dir.join(format!("{name}.input.npy"))).unwrap();
    let expected = read_i8_matrix(&dir.join(format!("{name}.expected.npy"))).unwrap();
    (onnx, input, expected)
}

/// Asserts `got` (one row per sample) is within `bound` LSB of `expected` and agrees on
/// the argmax except on near-ties; returns the worst difference.
fn compare(engine: &str, name: &str, got: &[Vec<i8>], expected: &Matrix<i8>, bound: i32) -> i32 {
    assert_eq!(got.len(), expected.rows, "{engine} {name}: sample count");
    let (mut worst, mut exact, mut total, mut near_ties) = (0, 0, 0, 0);
    for (r, got) in got.iter().enumerate() {
        let want = expected.row(r);
        assert_eq!(
            got.len(),
            want.len(),
            "{engine} {name} sample {r}: output length"
        );
        // Outputs within `bound` LSB can swap the argmax only where the runtime's top two
        // classes are within 2 * bound of each other (a near-tie); elsewhere it must hold.
        let mut sorted: Vec<i32> = want.iter().map(|&v| i32::from(v)).collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        if sorted[0] - sorted[1] > 2 * bound {
            assert_eq!(
                argmax(got),
                argmax(want),
                "{engine} {name} sample {r}: argmax differs\n onnx {got:?}\n ekd  {want:?}"
            );
        } else if argmax(got) != argmax(want) {
            near_ties += 1;
        }
        for (a, b) in got.iter().zip(want) {
            let d = (i32::from(*a) - i32::from(*b)).abs();
            worst = worst.max(d);
            exact += usize::from(d == 0);
            total += 1;
        }
    }
    eprintln!(
        "{name}: ONNX on {engine} vs edgekd-runtime: max {worst} LSB, {exact}/{total} values \
         exact, argmax differs on {near_ties}/{} samples (near-ties only)",
        expected.rows
    );
    assert!(worst <= bound, "{engine} {name}: {worst} LSB > {bound}");
    worst
}

fn check_tract(name: &str, bound: i32) {
    let (onnx, input, expected) = exported(name);
    let model = OnnxModel::from_onnx_bytes(&onnx)
        .unwrap_or_else(|e| panic!("{name}: edgekd-tract rejects the exported ONNX: {e}"));
    assert_eq!(model.input_len(), input.cols, "{name}");
    assert_eq!(model.output_len(), expected.cols, "{name}");
    let got: Vec<Vec<i8>> = (0..input.rows)
        .map(|r| model.run(input.row(r)).unwrap())
        .collect();
    compare("tract", name, &got, &expected, bound);
}

/// Runs `model` on `input` (an .npy file) in onnxruntime; returns the output .npy path.
fn onnxruntime(dir: &Path, model: &[u8], input: &[u8]) -> PathBuf {
    let (m, i, o) = (dir.join("m.onnx"), dir.join("x.npy"), dir.join("y.npy"));
    std::fs::write(&m, model).unwrap();
    std::fs::write(&i, input).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ort_run.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&m, &i, &o])
        .output()
        .expect("python3 is required (scripts/bootstrap.sh)");
    assert!(
        out.status.success(),
        "onnxruntime failed (run scripts/bootstrap.sh to install it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    o
}

/// Reads an onnxruntime output: int8 as is, float quantized with `quantize`.
fn read_output(path: &Path, quantize: impl Fn(f32) -> i8) -> Vec<Vec<i8>> {
    let rows = |m: Matrix<i8>| (0..m.rows).map(|r| m.row(r).to_vec()).collect();
    if npy_kind(path).unwrap() == NpyKind::I8 {
        return rows(read_i8_matrix(path).unwrap());
    }
    let f = read_f32_matrix(path).unwrap();
    rows(Matrix {
        rows: f.rows,
        cols: f.cols,
        data: f.data.iter().map(|&v| quantize(v)).collect(),
    })
}

fn check_onnxruntime(name: &str, bound: i32) {
    let (onnx, input, expected) = exported(name);
    let tmp = tempfile::tempdir().unwrap();

    // The int8 core: the same cut edgekd-tract makes (int8 in, int8 out).
    let mut proto = tract_onnx::pb::ModelProto::decode(onnx.as_slice()).unwrap();
    let ends = int8_ends(&mut proto).unwrap();
    let y = onnxruntime(
        tmp.path(),
        &proto.encode_to_vec(),
        &npy_bytes(&input).unwrap(),
    );
    let got = read_output(&y, quantize_softmax);
    compare("onnxruntime (int8 cut)", name, &got, &expected, bound);

    // The file as exported: raw float features in (its own preprocessing and
    // QuantizeLinear), dequantized floats out, requantized with the model's output
    // parameters (or softmax's fixed 1/256, -128).
    let dir = reference_dir();
    let raw = std::fs::read(dir.join("inputs.npy")).unwrap();
    let y = onnxruntime(tmp.path(), &onnx, &raw);
    let ekd = edgekd::io::read_model(&dir.join(format!("{name}.ekd"))).unwrap();
    let (scale, zp) = Model::parse(ekd.as_bytes())
        .unwrap()
        .output(0)
        .unwrap()
        .scale_zero_point()
        .unwrap();
    let got = if ends.float_softmax {
        read_output(&y, quantize_softmax)
    } else {
        read_output(&y, |v| {
            ((v / scale).round() + zp as f32).clamp(-128.0, 127.0) as i8
        })
    };
    compare("onnxruntime (float file)", name, &got, &expected, bound);
}

#[test]
fn exported_mlp_on_tract_onnx_within_one_lsb() {
    check_tract("mlp", 1);
}

#[test]
fn exported_tiny_cnn_on_tract_onnx_within_two_lsb() {
    check_tract("tiny_cnn", 2);
}

#[test]
fn exported_ds_cnn_on_tract_onnx_within_two_lsb() {
    check_tract("ds_cnn", 2);
}

#[test]
fn exported_mlp_on_onnxruntime_within_one_lsb() {
    check_onnxruntime("mlp", 1);
}

#[test]
fn exported_tiny_cnn_on_onnxruntime_within_two_lsb() {
    check_onnxruntime("tiny_cnn", 2);
}

#[test]
fn exported_ds_cnn_on_onnxruntime_within_two_lsb() {
    check_onnxruntime("ds_cnn", 2);
}

#[test]
fn foreign_onnx_and_garbage_are_clear_errors() {
    let err = OnnxModel::from_onnx_bytes(b"definitely not protobuf \xff\xff").unwrap_err();
    assert!(err.to_string().contains("ONNX"), "{err}");
    // A valid ONNX model that is not an edgekd export (no QuantizeLinear).
    let proto = tract_onnx::pb::ModelProto {
        graph: Some(tract_onnx::pb::GraphProto::default()),
        ..Default::default()
    };
    let bytes = prost::Message::encode_to_vec(&proto);
    let err = OnnxModel::from_onnx_bytes(&bytes).unwrap_err();
    assert!(
        err.to_string()
            .contains("not an ONNX file exported by edgekd"),
        "{err}"
    );
}
