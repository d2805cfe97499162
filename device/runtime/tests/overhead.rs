//! Format overhead of a representative 10 KB model (conv 16, conv 32, FC 32, FC 10 on a
//! 40-sample signal): guards the figure reported in docs and notes against regressions.
#![cfg(feature = "std")]

mod common;
use common::*;
use edgekd_runtime::writer::{Activation, ModelBuilder, OpSpec, QuantSpec};
use edgekd_runtime::Model;

fn per_channel(
    b: &mut ModelBuilder,
    dims: &[usize],
) -> (
    edgekd_runtime::writer::TensorId,
    edgekd_runtime::writer::TensorId,
) {
    let n: usize = dims.iter().product();
    let w = b.weights(
        dims,
        (0..n).map(|i| ((i * 37) % 255) as i8).collect(),
        QuantSpec::PerChannel {
            scales: vec![0.01; dims[0]],
            axis: 0,
        },
    );
    let bias = b.bias(vec![7; dims[0]], QuantSpec::None);
    (w, bias)
}

#[test]
fn ten_kilobyte_model_overhead() {
    let mut b = ModelBuilder::new("overhead10k");
    let x = b.activation(&[1, 1, 40, 1], 0.02, 0);
    let (w1, b1) = per_channel(&mut b, &[16, 1, 5, 1]);
    let a1 = b.activation(&[1, 1, 18, 16], 0.02, -128);
    let (w2, b2) = per_channel(&mut b, &[32, 1, 3, 16]);
    let a2 = b.activation(&[1, 1, 8, 32], 0.02, -128);
    let flat = b.activation(&[1, 256], 0.02, -128);
    let (w3, b3) = per_channel(&mut b, &[32, 256]);
    let a3 = b.activation(&[1, 32], 0.02, -128);
    let (w4, b4) = per_channel(&mut b, &[10, 32]);
    let y = b.activation(&[1, 10], 0.1, 0);
    let conv = |input, weights, bias, output| OpSpec::Conv2d {
        input,
        weights,
        bias: Some(bias),
        output,
        stride: [1, 2],
        dilation: [1, 1],
        pad: [0, 0],
        activation: Activation::Relu,
    };
    let fc = |input, weights, bias, output, activation| OpSpec::FullyConnected {
        input,
        weights,
        bias: Some(bias),
        output,
        activation,
    };
    b.op(conv(x, w1, b1, a1))
        .op(conv(a1, w2, b2, a2))
        .op(OpSpec::Reshape {
            input: a2,
            output: flat,
        })
        .op(fc(flat, w3, b3, a3, Activation::Relu))
        .op(fc(a3, w4, b4, y, Activation::None))
        .inputs(&[x])
        .outputs(&[y])
        .labels(&["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
        .preprocess(&[(0.0, 1.0)]);
    let bytes = b.finish().unwrap();
    let buf = aligned(&bytes);
    let m = Model::parse(buf.as_bytes()).unwrap();
    let payload = m.payload_bytes();
    let overhead = m.overhead_bytes();
    let channels = 16 + 32 + 32 + 10;
    println!(
        "payload {payload} B, overhead {overhead} B ({:.1} %), of which per-channel scales + requant {} B",
        100.0 * overhead as f64 / bytes.len() as f64,
        channels * 12
    );
    assert_eq!(payload, 80 + 1536 + 8192 + 320 + 4 * channels);
    // Per-channel quantization costs 12 bytes per output channel (f32 scale, Q31
    // multiplier, shift); everything else must stay within 1 KB here.
    assert!(overhead - channels * 12 < 1024, "overhead {overhead}");
}
