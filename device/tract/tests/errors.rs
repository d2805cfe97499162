//! Malformed files and bad inputs give errors naming the problem, never a panic.

use edgekd_runtime::format::checksum;
use edgekd_tract::{Error, Options, TractModel};
use std::path::PathBuf;

fn tiny_cnn() -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/reference/tiny_cnn.ekd");
    std::fs::read(p).unwrap()
}

fn load(bytes: &[u8]) -> Result<TractModel, Error> {
    TractModel::from_ekd_bytes(bytes, &Options::default())
}

/// Rewrites the stored checksum so a deliberate edit reaches the deeper checks.
fn reseal(bytes: &mut [u8]) {
    let sum = checksum(&bytes[16..]);
    bytes[12..16].copy_from_slice(&sum.to_le_bytes());
}

fn model_error(r: Result<TractModel, Error>) -> edgekd_runtime::Error {
    match r {
        Err(Error::Model(e)) => e,
        other => panic!("expected a model error, got {other:?}"),
    }
}

#[test]
fn truncated_and_foreign_files_are_model_errors() {
    let bytes = tiny_cnn();
    for len in [0, 3, 16, 40, bytes.len() / 2, bytes.len() - 1] {
        let e = model_error(load(&bytes[..len]));
        let msg = Error::Model(e).to_string();
        assert!(msg.starts_with("malformed .ekd model"), "{msg}");
    }
    let e = model_error(load(b"PK\x03\x04 definitely a zip file, not a model......"));
    assert_eq!(e, edgekd_runtime::Error::BadMagic);
}

#[test]
fn a_flipped_byte_is_a_checksum_error() {
    let mut bytes = tiny_cnn();
    let at = bytes.len() - 20;
    bytes[at] ^= 0x40;
    assert!(matches!(
        model_error(load(&bytes)),
        edgekd_runtime::Error::BadChecksum { .. }
    ));
}

#[test]
fn an_unknown_op_code_is_reported() {
    let bytes = tiny_cnn();
    let aligned = edgekd_runtime::writer::AlignedBytes::copy_from(&bytes);
    let model = edgekd_runtime::Model::parse(aligned.as_bytes()).unwrap();
    let ops = model.sections().find(|s| s.kind == 3).unwrap();
    // First op record starts after the 4-byte count; its first byte is the op code.
    let mut edited = bytes.clone();
    edited[ops.offset + 4] = 0xEE;
    reseal(&mut edited);
    assert_eq!(
        model_error(load(&edited)),
        edgekd_runtime::Error::UnsupportedOp(0xEE)
    );
}

#[test]
fn every_single_byte_corruption_is_an_error_or_a_valid_model() {
    // Resealed corruptions reach the structural checks; none may panic.
    let bytes = tiny_cnn();
    let mut failures = 0;
    for at in (16..bytes.len()).step_by(7) {
        let mut edited = bytes.clone();
        edited[at] = edited[at].wrapping_add(0x55);
        reseal(&mut edited);
        if let Ok(mut m) = load(&edited) {
            let n = m.inputs()[0].elements();
            // A model that still parses must run (weights changed, structure intact).
            m.run(&[&vec![0i8; n]]).unwrap();
        } else {
            failures += 1;
        }
    }
    assert!(
        failures > 10,
        "corruption was almost never detected ({failures})"
    );
}

#[test]
fn wrong_inputs_are_input_errors() {
    let mut m = load(&tiny_cnn()).unwrap();
    let n = m.inputs()[0].elements();
    match m.run(&[&vec![0i8; n - 1]]) {
        Err(Error::Input(msg)) => assert!(msg.contains(&format!("needs {n} int8 values")), "{msg}"),
        other => panic!("{other:?}"),
    }
    match m.run(&[]) {
        Err(Error::Input(msg)) => assert!(msg.contains("1 input(s), got 0"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // The model still works after refusing bad inputs.
    assert_eq!(m.run(&[&vec![0i8; n]]).unwrap()[0].len(), 10);
}
