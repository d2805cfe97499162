//! The ONNX file `edgekd export --format onnx` writes, run by edgekd-tract through
//! tract-onnx (int8 in, int8 out), against the golden vectors of the reference models
//! (the edgekd-runtime outputs): argmax identical on every sample whose top two classes are
//! not a near-tie (within twice the bound), int8 outputs within
//! the bound the exporter documents (MLP 1 LSB, CNNs 2 LSB: ONNX requantizes with a
//! float multiply and rounds ties to even, the runtime uses the Q31 fixed-point
//! multiplier).

use edgekd::export::{export, Format};
use edgekd::io::read_i8_matrix;
use edgekd_tract::argmax;
use edgekd_tract::onnx::OnnxModel;
use std::path::Path;

fn check(name: &str, bound: i32) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/reference");
    let ekd = std::fs::read(dir.join(format!("{name}.ekd"))).unwrap();
    let onnx = export(&ekd, Format::Onnx, name, name).unwrap();
    let model = OnnxModel::from_onnx_bytes(&onnx)
        .unwrap_or_else(|e| panic!("{name}: edgekd-tract rejects the exported ONNX: {e}"));
    let input = read_i8_matrix(&dir.join(format!("{name}.input.npy"))).unwrap();
    let expected = read_i8_matrix(&dir.join(format!("{name}.expected.npy"))).unwrap();
    assert_eq!(model.input_len(), input.cols, "{name}");
    assert_eq!(model.output_len(), expected.cols, "{name}");
    let (mut worst, mut exact, mut total, mut near_ties) = (0, 0, 0, 0);
    for r in 0..input.rows {
        let got = model.run(input.row(r)).unwrap();
        let want = expected.row(r);
        // Outputs within `bound` LSB can swap the argmax only where the runtime's top two
        // classes are within 2 * bound of each other (a near-tie); elsewhere it must hold.
        let mut sorted: Vec<i32> = want.iter().map(|&v| i32::from(v)).collect();
        sorted.sort_unstable_by(|a, b| b.cmp(a));
        if sorted[0] - sorted[1] > 2 * bound {
            assert_eq!(
                argmax(&got),
                argmax(want),
                "{name} sample {r}: argmax differs\n onnx {got:?}\n ekd  {want:?}"
            );
        } else if argmax(&got) != argmax(want) {
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
        "{name}: ONNX on tract vs edgekd-runtime: max {worst} LSB, {exact}/{total} values exact, \
         argmax differs on {near_ties}/{} samples (near-ties only)",
        input.rows
    );
    assert!(worst <= bound, "{name}: {worst} LSB > {bound}");
}

#[test]
fn exported_mlp_on_tract_onnx_within_one_lsb() {
    check("mlp", 1);
}

#[test]
fn exported_tiny_cnn_on_tract_onnx_within_two_lsb() {
    check("tiny_cnn", 2);
}

#[test]
fn exported_ds_cnn_on_tract_onnx_within_two_lsb() {
    check("ds_cnn", 2);
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
