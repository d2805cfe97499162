//! Helpers shared by the runtime's integration tests.
#![allow(dead_code)]

use edgekd_runtime::writer::AlignedBytes;

/// `(name, model, int8 inputs .npy, expected int8 outputs .npy)`.
pub type Reference = (&'static str, &'static [u8], &'static [u8], &'static [u8]);

/// The reference models shipped in `models/reference/`, with their golden vectors.
pub const REFERENCE: [Reference; 3] = [
    (
        "tiny_cnn",
        include_bytes!("../../../../models/reference/tiny_cnn.ekd"),
        include_bytes!("../../../../models/reference/tiny_cnn.input.npy"),
        include_bytes!("../../../../models/reference/tiny_cnn.expected.npy"),
    ),
    (
        "mlp",
        include_bytes!("../../../../models/reference/mlp.ekd"),
        include_bytes!("../../../../models/reference/mlp.input.npy"),
        include_bytes!("../../../../models/reference/mlp.expected.npy"),
    ),
    (
        "ds_cnn",
        include_bytes!("../../../../models/reference/ds_cnn.ekd"),
        include_bytes!("../../../../models/reference/ds_cnn.input.npy"),
        include_bytes!("../../../../models/reference/ds_cnn.expected.npy"),
    ),
];

/// `(rows, cols, values)` of a 2-D int8 `.npy` (v1 header, C order).
pub fn npy_i8(bytes: &[u8]) -> (usize, usize, Vec<i8>) {
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'|i1'"), "not int8: {header}");
    let shape = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let dims: Vec<usize> = shape
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data: Vec<i8> = bytes[10 + header_len..].iter().map(|&b| b as i8).collect();
    assert_eq!(data.len(), dims[0] * dims[1]);
    (dims[0], dims[1], data)
}

/// A copy of `bytes` at a 16-byte-aligned address.
pub fn aligned(bytes: &[u8]) -> AlignedBytes {
    AlignedBytes::copy_from(bytes)
}

/// Recomputes the header checksum after a test edits the body.
pub fn fix_checksum(bytes: &mut [u8]) {
    let crc = edgekd_runtime::format::checksum(&bytes[16..]);
    bytes[12..16].copy_from_slice(&crc.to_le_bytes());
}
