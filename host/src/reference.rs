//! The reference models: small int8 models with deterministic weights, written by the
//! `.ekd` writer, and the golden vectors every runtime (host, firmware, tract) must
//! reproduce bit for bit.
//!
//! Architectures match the TensorFlow Lite Micro baselines in `shared/conventions.md`
//! (`tiny_cnn`, `mlp`), plus `ds_cnn`, which exercises every op the runtime has.

use edgekd_runtime::writer::{Activation, ModelBuilder, OpSpec, QuantSpec, TensorId};

/// Number of golden samples per model (as in the TFLM measurement).
pub const GOLDEN_SAMPLES: usize = 16;
/// Input length of every reference model.
pub const SIGNAL_LEN: usize = 40;

/// SplitMix64: tiny, seeded, identical on every platform.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }
}

/// The golden input signals, `GOLDEN_SAMPLES x SIGNAL_LEN`, raw (before preprocessing):
/// a bump at a varying position plus a sine and noise, like MNIST-1D-shaped sensor data.
pub fn golden_inputs() -> Vec<f32> {
    let mut rng = SplitMix64::new(0x5EED_1A7A);
    let mut out = Vec::with_capacity(GOLDEN_SAMPLES * SIGNAL_LEN);
    for s in 0..GOLDEN_SAMPLES {
        let centre = 5.0 + 30.0 * s as f32 / GOLDEN_SAMPLES as f32;
        let freq = 0.2 + 0.05 * (s % 5) as f32;
        for t in 0..SIGNAL_LEN {
            let x = t as f32;
            let bump = 2.0 * (-(x - centre) * (x - centre) / 8.0).exp();
            out.push(bump + 0.7 * (freq * x).sin() + rng.uniform(-0.3, 0.3));
        }
    }
    out
}

/// Input preprocessing stored in every reference model: `(raw - 0.1) * 0.8`.
pub const PREPROCESS: (f32, f32) = (0.1, 0.8);

struct Gen<'b> {
    b: &'b mut ModelBuilder,
    rng: SplitMix64,
}

impl Gen<'_> {
    /// Symmetric per-channel int8 weights along `axis` with uniform float values
    /// scaled for unit-variance outputs, and an int32 bias.
    fn weights(
        &mut self,
        dims: &[usize],
        axis: usize,
        fan_in: usize,
        in_scale: f32,
    ) -> (TensorId, TensorId) {
        let n: usize = dims.iter().product();
        let channels = dims[axis];
        let inner: usize = dims[axis + 1..].iter().product();
        let limit = (3.0 / fan_in as f32).sqrt() * 1.2;
        let w: Vec<f32> = (0..n).map(|_| self.rng.uniform(-limit, limit)).collect();
        let channel_of = |i: usize| (i / inner) % channels;
        let mut max_abs = vec![0f32; channels];
        for (i, v) in w.iter().enumerate() {
            max_abs[channel_of(i)] = max_abs[channel_of(i)].max(v.abs());
        }
        let scales: Vec<f32> = max_abs.iter().map(|m| m.max(1e-6) / 127.0).collect();
        let q: Vec<i8> = w
            .iter()
            .enumerate()
            .map(|(i, v)| (v / scales[channel_of(i)]).round().clamp(-127.0, 127.0) as i8)
            .collect();
        let bias: Vec<i32> = scales
            .iter()
            .map(|s| (self.rng.uniform(-0.1, 0.1) / (in_scale * s)).round() as i32)
            .collect();
        let w_id = self
            .b
            .weights(dims, q, QuantSpec::PerChannel { scales, axis });
        let b_id = self.b.bias(bias, QuantSpec::None);
        (w_id, b_id)
    }
}

/// Activation quantization: ReLU outputs cover [0, 4], others [-4, 4].
fn act(b: &mut ModelBuilder, dims: &[usize], relu: bool) -> (TensorId, f32) {
    if relu {
        (b.activation(dims, 4.0 / 255.0, -128), 4.0 / 255.0)
    } else {
        (b.activation(dims, 8.0 / 255.0, 0), 8.0 / 255.0)
    }
}

fn start(name: &str) -> (ModelBuilder, TensorId, f32) {
    let mut b = ModelBuilder::new(name);
    b.io_names("signal", "logits")
        .labels(&["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"])
        .preprocess(&[PREPROCESS]);
    let scale = 5.0 / 255.0;
    let x = b.activation(&[1, 1, SIGNAL_LEN, 1], scale, 0);
    (b, x, scale)
}

/// Tiny 1-D CNN: conv 8 k5 s2 ReLU, conv 16 k3 s2 ReLU (valid), flatten, FC 10.
pub fn tiny_cnn() -> ModelBuilder {
    let (mut b, x, xs) = start("tiny_cnn");
    let mut g = Gen {
        b: &mut b,
        rng: SplitMix64::new(1),
    };
    let (w1, b1) = g.weights(&[8, 1, 5, 1], 0, 5, xs);
    let (a1, s1) = act(g.b, &[1, 1, 18, 8], true);
    let (w2, b2) = g.weights(&[16, 1, 3, 8], 0, 24, s1);
    let (a2, s2) = act(g.b, &[1, 1, 8, 16], true);
    let flat = g.b.activation(&[1, 128], s2, -128);
    let (w3, b3) = g.weights(&[10, 128], 0, 128, s2);
    let (y, _) = act(g.b, &[1, 10], false);
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
    b.op(conv(x, w1, b1, a1))
        .op(conv(a1, w2, b2, a2))
        .op(OpSpec::Reshape {
            input: a2,
            output: flat,
        })
        .op(OpSpec::FullyConnected {
            input: flat,
            weights: w3,
            bias: Some(b3),
            output: y,
            activation: Activation::None,
        })
        .inputs(&[x])
        .outputs(&[y]);
    b
}

/// MLP 40-32-10 with ReLU.
pub fn mlp() -> ModelBuilder {
    let (mut b, x, xs) = start("mlp");
    let mut g = Gen {
        b: &mut b,
        rng: SplitMix64::new(2),
    };
    let flat = g.b.activation(&[1, SIGNAL_LEN], xs, 0);
    let (w1, b1) = g.weights(&[32, SIGNAL_LEN], 0, SIGNAL_LEN, xs);
    let (h, hs) = act(g.b, &[1, 32], true);
    let (w2, b2) = g.weights(&[10, 32], 0, 32, hs);
    let (y, _) = act(g.b, &[1, 10], false);
    b.op(OpSpec::Reshape {
        input: x,
        output: flat,
    })
    .op(OpSpec::FullyConnected {
        input: flat,
        weights: w1,
        bias: Some(b1),
        output: h,
        activation: Activation::Relu,
    })
    .op(OpSpec::FullyConnected {
        input: h,
        weights: w2,
        bias: Some(b2),
        output: y,
        activation: Activation::None,
    })
    .inputs(&[x])
    .outputs(&[y]);
    b
}

/// Depthwise-separable CNN touching every op: conv (same, ReLU6), depthwise (same,
/// ReLU), pointwise conv, residual add, max pool, average pool, global average pool,
/// reshape, FC and softmax.
pub fn ds_cnn() -> ModelBuilder {
    let (mut b, x, xs) = start("ds_cnn");
    let mut g = Gen {
        b: &mut b,
        rng: SplitMix64::new(3),
    };
    let (w1, b1) = g.weights(&[8, 1, 3, 1], 0, 3, xs);
    let relu6_scale = 6.0 / 255.0;
    let c1 = g.b.activation(&[1, 1, 40, 8], relu6_scale, -128);
    let (wd, bd) = g.weights(&[1, 1, 3, 8], 3, 3, relu6_scale);
    let (d1, ds) = act(g.b, &[1, 1, 40, 8], true);
    let (wp, bp) = g.weights(&[8, 1, 1, 8], 0, 8, ds);
    let (p1, _) = act(g.b, &[1, 1, 40, 8], false);
    let (sum, ss) = act(g.b, &[1, 1, 40, 8], true);
    let mp = g.b.activation(&[1, 1, 20, 8], ss, -128);
    let ap = g.b.activation(&[1, 1, 10, 8], ss, -128);
    let gap = g.b.activation(&[1, 1, 1, 8], 2.0 / 255.0, -128);
    let flat = g.b.activation(&[1, 8], 2.0 / 255.0, -128);
    let (wf, bf) = g.weights(&[10, 8], 0, 8, 2.0 / 255.0);
    let (logits, _) = act(g.b, &[1, 10], false);
    let probs = g.b.activation(&[1, 10], 1.0 / 256.0, -128);
    let same = |input, weights, bias, output, activation| OpSpec::Conv2d {
        input,
        weights,
        bias: Some(bias),
        output,
        stride: [1, 1],
        dilation: [1, 1],
        pad: [0, 1],
        activation,
    };
    b.op(same(x, w1, b1, c1, Activation::Relu6))
        .op(OpSpec::DepthwiseConv2d {
            input: c1,
            weights: wd,
            bias: Some(bd),
            output: d1,
            stride: [1, 1],
            dilation: [1, 1],
            pad: [0, 1],
            depth_multiplier: 1,
            activation: Activation::Relu,
        })
        .op(OpSpec::Conv2d {
            input: d1,
            weights: wp,
            bias: Some(bp),
            output: p1,
            stride: [1, 1],
            dilation: [1, 1],
            pad: [0, 0],
            activation: Activation::None,
        })
        .op(OpSpec::Add {
            a: c1,
            b: p1,
            output: sum,
            activation: Activation::Relu,
        })
        .op(OpSpec::MaxPool2d {
            input: sum,
            output: mp,
            filter: [1, 2],
            stride: [1, 2],
            pad: [0, 0],
        })
        .op(OpSpec::AvgPool2d {
            input: mp,
            output: ap,
            filter: [1, 2],
            stride: [1, 2],
            pad: [0, 0],
        })
        .op(OpSpec::GlobalAvgPool {
            input: ap,
            output: gap,
        })
        .op(OpSpec::Reshape {
            input: gap,
            output: flat,
        })
        .op(OpSpec::FullyConnected {
            input: flat,
            weights: wf,
            bias: Some(bf),
            output: logits,
            activation: Activation::None,
        })
        .op(OpSpec::Softmax {
            input: logits,
            output: probs,
            beta: 1.0,
        })
        .inputs(&[x])
        .outputs(&[probs]);
    b
}

/// All reference models by name.
pub fn all() -> Vec<(&'static str, ModelBuilder)> {
    vec![
        ("tiny_cnn", tiny_cnn()),
        ("mlp", mlp()),
        ("ds_cnn", ds_cnn()),
    ]
}
