//! Writer -> parser round trips and the parser's refusals.
#![cfg(feature = "std")]

mod common;
use common::*;
use edgekd_runtime::format::{section, OpParams, Storage, SECTION_REQUIRED};
use edgekd_runtime::writer::{Activation, ModelBuilder, OpSpec, QuantSpec};
use edgekd_runtime::{DType, Error, Model, OpCode, Quant};

fn small_model() -> ModelBuilder {
    let mut b = ModelBuilder::new("roundtrip");
    let x = b.activation(&[1, 1, 6, 2], 0.1, -5);
    let w = b.weights(
        &[3, 1, 2, 2],
        (0..12).map(|i| i as i8 - 6).collect(),
        QuantSpec::PerChannel {
            scales: vec![0.01, 0.02, 0.03],
            axis: 0,
        },
    );
    let bias = b.bias(vec![100, -200, 300], QuantSpec::None);
    let c = b.activation(&[1, 1, 5, 3], 0.05, -128);
    let flat = b.activation(&[1, 15], 0.05, -128);
    let fw = b.weights(
        &[4, 15],
        vec![1; 60],
        QuantSpec::PerTensor {
            scale: 0.004,
            zero_point: 0,
        },
    );
    let y = b.activation(&[1, 4], 0.2, 3);
    b.op(OpSpec::Conv2d {
        input: x,
        weights: w,
        bias: Some(bias),
        output: c,
        stride: [1, 1],
        dilation: [1, 1],
        pad: [0, 0],
        activation: Activation::Relu,
    })
    .op(OpSpec::Reshape {
        input: c,
        output: flat,
    })
    .op(OpSpec::FullyConnected {
        input: flat,
        weights: fw,
        bias: None,
        output: y,
        activation: Activation::None,
    })
    .inputs(&[x])
    .outputs(&[y])
    .io_names("in", "out")
    .labels(&["a", "b", "c", "d"])
    .preprocess(&[(1.5, 2.0), (-1.0, 0.5)]);
    b
}

/// A conv layer with an odd number of output channels cannot run on the DSP kernels'
/// dense path (it pairs channels): firmware keeps the general loop for it.
#[test]
fn odd_channel_conv_needs_the_general_loop() {
    let bytes = small_model().finish().unwrap();
    let buf = aligned(&bytes);
    let m = Model::parse(buf.as_bytes()).unwrap();
    let needs: Vec<bool> = m
        .ops()
        .map(|op| op.unwrap().needs_conv_general(&m).unwrap())
        .collect();
    assert_eq!(needs, [true, false, false]);
}

#[test]
fn writer_output_parses_back_to_the_same_model() {
    let bytes = small_model().finish().unwrap();
    let buf = aligned(&bytes);
    let m = Model::parse(buf.as_bytes()).unwrap();
    assert_eq!(m.version(), (1, 0));
    assert_eq!(m.tensor_count(), 7);
    assert_eq!(m.op_count(), 3);

    let x = m.input(0).unwrap();
    assert_eq!(x.dims(), &[1, 1, 6, 2]);
    assert_eq!((x.dtype, x.storage), (DType::I8, Storage::Arena));
    assert_eq!(
        x.quant,
        Quant::PerTensor {
            scale: 0.1,
            zero_point: -5
        }
    );

    let w = m.tensor(1).unwrap();
    assert_eq!(
        w.const_i8().unwrap(),
        (0..12).map(|i| i as i8 - 6).collect::<Vec<_>>().as_slice()
    );
    assert_eq!(
        w.quant,
        Quant::PerChannel {
            scales: &[0.01, 0.02, 0.03],
            axis: 0
        }
    );
    assert_eq!(m.tensor(2).unwrap().const_i32().unwrap(), &[100, -200, 300]);
    assert_eq!(m.tensor(2).unwrap().dtype, DType::I32);

    let ops: Vec<_> = m.ops().map(|o| o.unwrap()).collect();
    assert_eq!(
        ops.iter().map(|o| o.code).collect::<Vec<_>>(),
        [OpCode::Conv2d, OpCode::Reshape, OpCode::FullyConnected]
    );
    assert_eq!(ops[2].input(2), None, "absent bias");
    match ops[0].params(&m).unwrap() {
        OpParams::Conv2d(p, rq) => {
            assert_eq!((p.input_zero_point, p.output_zero_point), (-5, -128));
            assert_eq!(
                (p.clamp.min, p.clamp.max),
                (-128, 127),
                "ReLU at zp -128 clamps nothing above -128"
            );
            assert_eq!(rq.multiplier.len(), 3);
            // effective scale 0.1 * 0.01 / 0.05 ~ 0.02 = 0.64 * 2^-5, computed in f64
            // from the stored f32 scales as TFLite does.
            let eff = 0.1f32 as f64 * 0.01f32 as f64 / 0.05f32 as f64;
            assert_eq!(rq.shift[0], -5);
            assert_eq!(
                rq.multiplier[0],
                (eff * 32.0 * (1u64 << 31) as f64).round() as i32
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    match ops[2].params(&m).unwrap() {
        OpParams::FullyConnected(_, rq) => assert_eq!(rq.multiplier.len(), 1, "per-tensor weights"),
        other => panic!("unexpected {other:?}"),
    }
    // The reshape shares its input's bytes.
    assert_eq!(m.tensor(3).unwrap().range(), m.tensor(4).unwrap().range());

    let meta = m.metadata().unwrap();
    assert_eq!(
        (meta.name, meta.input_name, meta.output_name),
        ("roundtrip", "in", "out")
    );
    assert_eq!(meta.labels.iter().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    assert_eq!(meta.preprocess(0, 2), (1.5, 2.0));
    assert_eq!(meta.preprocess(3, 2), (-1.0, 0.5));
    assert_eq!(m.macs(), 5 * 3 * 4 + 15 * 4);
    assert_eq!(m.payload_bytes(), 12 + 12 + 60);
    assert_eq!(m.overhead_bytes(), bytes.len() - 84);
}

#[test]
fn writer_is_deterministic() {
    assert_eq!(
        small_model().finish().unwrap(),
        small_model().finish().unwrap()
    );
}

#[test]
fn sections_are_aligned_and_constants_readable_in_place() {
    let bytes = small_model().finish().unwrap();
    let buf = aligned(&bytes);
    let m = Model::parse(buf.as_bytes()).unwrap();
    for s in m.sections() {
        assert_eq!(s.offset % 16, 0, "{s:?}");
    }
    for i in 0..m.tensor_count() {
        let t = m.tensor(i).unwrap();
        if t.storage == Storage::Constant {
            assert_eq!(t.range().start % 16, 0, "tensor {i}");
        }
    }
}

fn set_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

/// Offset of the section-table entry for `kind`.
fn entry_of(bytes: &[u8], kind: u16) -> usize {
    let count = u16::from_le_bytes([bytes[16], bytes[17]]) as usize;
    (0..count)
        .map(|i| 32 + 12 * i)
        .find(|&at| u16::from_le_bytes([bytes[at], bytes[at + 1]]) == kind)
        .unwrap()
}

#[test]
fn refusals_name_the_problem() {
    let good = small_model().finish().unwrap();
    let parse = |b: &[u8]| Model::parse(aligned(b).as_bytes()).map(|_| ());

    let mut b = good.clone();
    b[0] = b'X';
    assert_eq!(parse(&b), Err(Error::BadMagic));

    let mut b = good.clone();
    set_u16(&mut b, 4, 2);
    assert_eq!(
        parse(&b),
        Err(Error::UnsupportedVersion { major: 2, minor: 0 })
    );

    let mut b = good.clone();
    let last = b.len() - 1;
    b[last] ^= 1;
    assert!(matches!(parse(&b), Err(Error::BadChecksum { .. })));

    assert_eq!(parse(&good[..good.len() - 1]), Err(Error::Truncated));
    assert_eq!(parse(&good[..10]), Err(Error::Truncated));

    // A newer minor version adding an unknown optional section still loads...
    let mut b = good.clone();
    set_u16(&mut b, 6, 7);
    let meta = entry_of(&b, section::META);
    set_u16(&mut b, meta, 99);
    fix_checksum(&mut b);
    let buf = aligned(&b);
    let m = Model::parse(buf.as_bytes()).unwrap();
    assert!(m.metadata().is_none());
    assert_eq!(m.version(), (1, 7));
    // ...but an unknown required one does not.
    set_u16(&mut b, meta + 2, SECTION_REQUIRED);
    fix_checksum(&mut b);
    assert_eq!(parse(&b), Err(Error::UnsupportedSection(99)));

    let mut b = good.clone();
    let ops = entry_of(&b, section::OPS);
    set_u16(&mut b, ops, 77);
    set_u16(&mut b, ops + 2, 0);
    fix_checksum(&mut b);
    assert_eq!(parse(&b), Err(Error::MissingSection(section::OPS)));

    let buf = aligned(&[&[0u8][..], &good].concat());
    assert_eq!(
        Model::parse(&buf.as_bytes()[1..]).map(|_| ()),
        Err(Error::Misaligned)
    );
}

#[test]
fn builder_rejects_inconsistent_models() {
    let mut b = small_model();
    let x = b.activation(&[1, 4], 0.1, 0);
    b.weights(&[2, 2], vec![1, 2, 3], QuantSpec::None);
    b.inputs(&[x]);
    let err = b.finish().unwrap_err().to_string();
    assert!(err.contains("3 values for shape [2, 2]"), "{err}");

    let mut b = ModelBuilder::new("no-io");
    b.activation(&[4], 0.1, 0);
    assert!(b
        .finish()
        .unwrap_err()
        .to_string()
        .contains("at least one input"));
}
