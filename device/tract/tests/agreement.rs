//! edgekd-tract agrees with edgekd-runtime: bit-exact int8 outputs and identical
//! argmax on the reference models' golden vectors, on random inputs, and on synthetic
//! models that exercise every op and parameter the lowering handles (padding with a
//! nonzero input zero point, strides, dilation, depth multipliers, per-tensor weights,
//! fused clamps, max pooling with and without a clamp).

use edgekd_runtime::writer::{Activation, AlignedBytes, ModelBuilder, OpSpec, QuantSpec};
use edgekd_runtime::{Interpreter, Model};
use edgekd_tract::{argmax, Options, TractModel};
use std::path::{Path, PathBuf};

const REFERENCE: [&str; 3] = ["tiny_cnn", "mlp", "ds_cnn"];

fn reference_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/reference")
}

fn read_i8_npy(path: &Path) -> (Vec<u64>, Vec<i8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<i8>().unwrap())
}

/// Runs the reference interpreter on one input.
fn interpret(bytes: &[u8], input: &[i8]) -> Vec<i8> {
    let aligned = AlignedBytes::copy_from(bytes);
    let model = Model::parse(aligned.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena).unwrap();
    interp.input_mut(0).unwrap().copy_from_slice(input);
    interp.invoke().unwrap();
    interp.output(0).unwrap().to_vec()
}

#[test]
fn reference_models_match_golden_vectors_bit_exactly() {
    for name in REFERENCE {
        let dir = reference_dir();
        let bytes = std::fs::read(dir.join(format!("{name}.ekd"))).unwrap();
        let (in_shape, inputs) = read_i8_npy(&dir.join(format!("{name}.input.npy")));
        let (out_shape, expected) = read_i8_npy(&dir.join(format!("{name}.expected.npy")));
        assert_eq!(in_shape[0], out_shape[0]);
        let samples = in_shape[0] as usize;
        assert!(samples >= 16, "{name}: only {samples} golden samples");
        let (n_in, n_out) = (inputs.len() / samples, expected.len() / samples);
        let mut tract = TractModel::from_ekd_bytes(&bytes, &Options::default()).unwrap();
        for s in 0..samples {
            let x = &inputs[s * n_in..][..n_in];
            let want = &expected[s * n_out..][..n_out];
            let got = tract.run(&[x]).unwrap().remove(0);
            assert_eq!(
                got, want,
                "{name} sample {s}: tract output differs from the golden vector"
            );
            assert_eq!(argmax(&got), argmax(want), "{name} sample {s}");
            // The golden vectors came from the same interpreter; check it live too.
            assert_eq!(
                interpret(&bytes, x),
                want,
                "{name} sample {s}: interpreter drifted"
            );
        }
    }
}

#[test]
fn reference_models_match_on_random_inputs() {
    let mut rng = fastrand::Rng::with_seed(7);
    for name in REFERENCE {
        let bytes = std::fs::read(reference_dir().join(format!("{name}.ekd"))).unwrap();
        let mut tract = TractModel::from_ekd_bytes(&bytes, &Options::default()).unwrap();
        let n = tract.inputs()[0].elements();
        for trial in 0..100 {
            let x: Vec<i8> = (0..n).map(|_| rng.i8(..)).collect();
            let got = tract.run(&[&x]).unwrap().remove(0);
            assert_eq!(got, interpret(&bytes, &x), "{name} random trial {trial}");
        }
    }
}

#[test]
fn two_threads_give_the_same_outputs() {
    let bytes = std::fs::read(reference_dir().join("ds_cnn.ekd")).unwrap();
    let (_, inputs) = read_i8_npy(&reference_dir().join("ds_cnn.input.npy"));
    let mut one = TractModel::from_ekd_bytes(&bytes, &Options::default()).unwrap();
    let mut two = TractModel::from_ekd_bytes(&bytes, &Options { threads: Some(2) }).unwrap();
    for x in inputs.chunks(40) {
        assert_eq!(one.run(&[x]).unwrap(), two.run(&[x]).unwrap());
    }
}

/// Deterministic pseudo-random weights in [-127, 127].
fn weights(rng: &mut fastrand::Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.i8(-127..=127)).collect()
}

fn biases(rng: &mut fastrand::Rng, n: usize) -> Vec<i32> {
    (0..n).map(|_| rng.i32(-2000..=2000)).collect()
}

fn scales(rng: &mut fastrand::Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| 0.002 + 0.01 * rng.f32()).collect()
}

/// A 2-D model that covers every op with awkward parameters.
fn synthetic_model(seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut b = ModelBuilder::new("synthetic");
    // Input 1x7x9x3 with a nonzero zero point: padding must read as the zero point.
    let x = b.activation(&[1, 7, 9, 3], 0.03, 11);
    // Conv 3->6, k3x3, stride 2x1, pad 1/1, per-channel, ReLU6.
    let w1 = b.weights(
        &[6, 3, 3, 3],
        weights(&mut rng, 162),
        QuantSpec::PerChannel {
            scales: scales(&mut rng, 6),
            axis: 0,
        },
    );
    let b1 = b.bias(biases(&mut rng, 6), QuantSpec::None);
    let y1 = b.activation(&[1, 4, 9, 6], 0.02, -20);
    b.op(OpSpec::Conv2d {
        input: x,
        weights: w1,
        bias: Some(b1),
        output: y1,
        stride: [2, 1],
        dilation: [1, 1],
        pad: [1, 1],
        activation: Activation::Relu6,
    });
    // Depthwise, multiplier 2, dilation 2 along W, pad 2, no bias, per-channel.
    let w2 = b.weights(
        &[1, 3, 3, 12],
        weights(&mut rng, 108),
        QuantSpec::PerChannel {
            scales: scales(&mut rng, 12),
            axis: 3,
        },
    );
    let y2 = b.activation(&[1, 4, 9, 12], 0.04, 5);
    b.op(OpSpec::DepthwiseConv2d {
        input: y1,
        weights: w2,
        bias: None,
        output: y2,
        stride: [1, 1],
        dilation: [1, 2],
        pad: [1, 2],
        depth_multiplier: 2,
        activation: Activation::None,
    });
    // Max pool with padding (padded cells are ignored, not zero).
    let y3 = b.activation(&[1, 2, 5, 12], 0.04, 5);
    b.op(OpSpec::MaxPool2d {
        input: y2,
        output: y3,
        filter: [2, 3],
        stride: [2, 2],
        pad: [0, 1],
    });
    // Average pool with padding (divides by the valid count, rounding half away).
    let y4 = b.activation(&[1, 2, 3, 12], 0.04, 5);
    b.op(OpSpec::AvgPool2d {
        input: y3,
        output: y4,
        filter: [2, 2],
        stride: [1, 2],
        pad: [1, 1],
    });
    // 1x1 conv with per-tensor weights, ReLU.
    let w5 = b.weights(
        &[12, 1, 1, 12],
        weights(&mut rng, 144),
        QuantSpec::PerTensor {
            scale: 0.006,
            zero_point: 0,
        },
    );
    let b5 = b.bias(biases(&mut rng, 12), QuantSpec::None);
    let y5 = b.activation(&[1, 2, 3, 12], 0.05, -128);
    b.op(OpSpec::Conv2d {
        input: y4,
        weights: w5,
        bias: Some(b5),
        output: y5,
        stride: [1, 1],
        dilation: [1, 1],
        pad: [0, 0],
        activation: Activation::Relu,
    });
    // Residual add with a different output scale, then mean, FC, softmax.
    let y6 = b.activation(&[1, 2, 3, 12], 0.07, -3);
    b.op(OpSpec::Add {
        a: y4,
        b: y5,
        output: y6,
        activation: Activation::None,
    });
    let y7 = b.activation(&[1, 12], 0.05, 2);
    b.op(OpSpec::GlobalAvgPool {
        input: y6,
        output: y7,
    });
    let w8 = b.weights(
        &[5, 12],
        weights(&mut rng, 60),
        QuantSpec::PerChannel {
            scales: scales(&mut rng, 5),
            axis: 0,
        },
    );
    let b8 = b.bias(biases(&mut rng, 5), QuantSpec::None);
    let y8 = b.activation(&[1, 5], 0.1, 0);
    b.op(OpSpec::FullyConnected {
        input: y7,
        weights: w8,
        bias: Some(b8),
        output: y8,
        activation: Activation::None,
    });
    let y9 = b.activation(&[1, 5], 1.0 / 256.0, -128);
    b.op(OpSpec::Softmax {
        input: y8,
        output: y9,
        beta: 1.0,
    });
    b.inputs(&[x]).outputs(&[y9]);
    b.finish().unwrap()
}

/// A model whose max pool carries a clamp (ReLU-style) is not expressible by the
/// writer's MaxPool; instead cover the clamped-requant path with ReLU on FC.
fn fc_relu_model(seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut b = ModelBuilder::new("fc");
    let x = b.activation(&[2, 16], 0.05, -7);
    let w = b.weights(
        &[8, 16],
        weights(&mut rng, 128),
        QuantSpec::PerTensor {
            scale: 0.01,
            zero_point: 0,
        },
    );
    let y = b.activation(&[2, 8], 0.03, -128);
    b.op(OpSpec::FullyConnected {
        input: x,
        weights: w,
        bias: None,
        output: y,
        activation: Activation::Relu,
    });
    b.inputs(&[x]).outputs(&[y]);
    b.finish().unwrap()
}

#[test]
fn synthetic_models_match_bit_exactly() {
    let mut rng = fastrand::Rng::with_seed(99);
    for seed in 0..4 {
        for bytes in [synthetic_model(seed), fc_relu_model(seed)] {
            let mut tract = TractModel::from_ekd_bytes(&bytes, &Options::default()).unwrap();
            let n = tract.inputs()[0].elements();
            let mut nonzero = 0;
            for trial in 0..50 {
                let x: Vec<i8> = (0..n).map(|_| rng.i8(..)).collect();
                let got = tract.run(&[&x]).unwrap().remove(0);
                let want = interpret(&bytes, &x);
                nonzero += usize::from(want.iter().any(|v| *v != want[0]));
                assert_eq!(got, want, "seed {seed} trial {trial}");
            }
            // Outputs that never vary would make the comparison vacuous.
            assert!(nonzero > 25, "seed {seed}: outputs are degenerate");
        }
    }
}

#[test]
fn plan_runs_int8_matmuls_not_float() {
    let bytes = std::fs::read(reference_dir().join("tiny_cnn.ekd")).unwrap();
    let tract = TractModel::from_ekd_bytes(&bytes, &Options::default()).unwrap();
    let ops = tract.plan_ops().join("\n");
    assert!(
        ops.contains("OptMatMul"),
        "no tract matmul in the plan:\n{ops}"
    );
    assert!(ops.contains("FixedPointRequant"), "{ops}");
    // Nothing is dequantized to float on the int8 path.
    assert!(!ops.to_lowercase().contains("dequant"), "{ops}");
}
