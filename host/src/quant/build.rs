//! Turns a float model plus activation ranges into an `.ekd` file: per-channel symmetric int8
//! weights, int32 biases at `input_scale * weight_scale[c]`, asymmetric int8 activations.
//! `ModelBuilder` derives the Q31 multipliers, clamps and the memory plan.

use super::calib::qparams;
use super::float::{FloatModel, Layer};
use crate::nn::spec::{Act, Shape};
use anyhow::{bail, Result};
use edgekd_runtime::writer::{Activation, ModelBuilder, OpSpec, QuantSpec};

/// Output quantization of an appended softmax (TFLite int8 spec).
pub const SOFTMAX_QUANT: (f32, i32) = (1.0 / 256.0, -128);

/// Options of the int8 model.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Model name stored in the file.
    pub name: String,
    /// One weight scale per tensor instead of per output channel (refused for depthwise).
    pub per_tensor_weights: bool,
    /// Append a softmax (output `(1/256, -128)`).
    pub softmax: bool,
}

impl Default for BuildOptions {
    /// Name `model`, per-channel weights, no softmax.
    fn default() -> Self {
        BuildOptions {
            name: "model".into(),
            per_tensor_weights: false,
            softmax: false,
        }
    }
}

/// Which float tensor an op's int8 output approximates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpPoint {
    /// Point `p` of the float forward pass (`0` input, `i + 1` output of layer `i`).
    Point(usize),
    /// The appended softmax of the logits.
    Softmax,
}

/// Quantized weights of one layer.
#[derive(Debug, Clone)]
pub struct QuantWeights {
    /// Layer index.
    pub layer: usize,
    /// One scale per output channel (or one for the tensor).
    pub scales: Vec<f32>,
    /// int8 weights.
    pub q: Vec<i8>,
    /// int32 bias.
    pub bias: Vec<i32>,
}

/// The written model and how its ops relate to the float model.
#[derive(Debug, Clone)]
pub struct Built {
    /// `.ekd` bytes.
    pub bytes: Vec<u8>,
    /// Per op: the float tensor its output approximates.
    pub op_points: Vec<OpPoint>,
    /// Per op: the layer it comes from (`None` for the appended softmax).
    pub op_layers: Vec<Option<usize>>,
    /// Quantized weights of every weighted layer.
    pub weights: Vec<QuantWeights>,
    /// `(scale, zero_point)` of every activation group.
    pub act_quant: Vec<(f32, i32)>,
}

/// Groups of float tensors sharing one quantization: `groups[p]` for point `p`. Pools,
/// flatten and dropout keep their input's quantization (the runtime requires it for pools).
pub fn groups(model: &FloatModel) -> Vec<usize> {
    let mut g = vec![0];
    let mut next = 1;
    for layer in &model.layers {
        match layer {
            Layer::Conv { .. } | Layer::Dense { .. } | Layer::Gap { .. } => {
                g.push(next);
                next += 1;
            }
            Layer::Pool { .. } | Layer::Identity => g.push(*g.last().expect("input group")),
        }
    }
    g
}

fn activation(a: Act) -> Activation {
    match a {
        Act::None => Activation::None,
        Act::Relu => Activation::Relu,
        Act::Relu6 => Activation::Relu6,
    }
}

/// Symmetric int8 weights, one scale per output channel (or one), and the int32 bias.
pub fn quantize_weights(
    layer: &Layer,
    index: usize,
    in_scale: f32,
    per_tensor: bool,
) -> QuantWeights {
    let (w, b) = layer.weights().expect("weighted layer");
    let channels = layer.out_channels();
    let mut max_abs = vec![0f32; channels];
    for (i, v) in w.iter().enumerate() {
        let c = layer.weight_channel(i);
        max_abs[c] = max_abs[c].max(v.abs());
    }
    if per_tensor {
        let m = max_abs.iter().cloned().fold(0.0, f32::max);
        max_abs.iter_mut().for_each(|v| *v = m);
    }
    // A scale must keep the bias representable in int32 (and be positive for all-zero rows).
    let scales: Vec<f32> = max_abs
        .iter()
        .enumerate()
        .map(|(c, &m)| {
            let bias_floor = b[c].abs() / (in_scale * (1u32 << 30) as f32);
            (m / 127.0).max(bias_floor).max(1e-12)
        })
        .collect();
    let scales = if per_tensor {
        let m = scales.iter().cloned().fold(0.0, f32::max);
        vec![m; channels]
    } else {
        scales
    };
    let q = w
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (v / scales[layer.weight_channel(i)])
                .round()
                .clamp(-127.0, 127.0) as i8
        })
        .collect();
    let bias = b
        .iter()
        .zip(&scales)
        .map(|(v, s)| {
            (f64::from(*v) / (f64::from(in_scale) * f64::from(*s)))
                .round()
                .clamp(i32::MIN as f64, i32::MAX as f64) as i32
        })
        .collect();
    QuantWeights {
        layer: index,
        scales,
        q,
        bias,
    }
}

fn dims4(s: Shape) -> Vec<usize> {
    match s {
        Shape::Spatial([h, w, c]) => vec![1, h, w, c],
        Shape::Flat(f) => vec![1, f],
    }
}

/// Writes the int8 model; `ranges[g]` is the float range of activation group `g`
/// (see [`groups`]).
pub fn build(model: &FloatModel, ranges: &[(f32, f32)], opts: &BuildOptions) -> Result<Built> {
    let groups = groups(model);
    let n_groups = groups.iter().max().map_or(0, |g| g + 1);
    if ranges.len() != n_groups {
        bail!("{} activation ranges for {n_groups} tensors", ranges.len());
    }
    if opts.per_tensor_weights {
        if let Some(i) = model.layers.iter().position(|l| {
            matches!(
                l,
                Layer::Conv {
                    depthwise: true,
                    ..
                }
            )
        }) {
            bail!(
                "layer {i} is a depthwise convolution: per-tensor weight scales wreck depthwise \
                 layers (one channel's range sets every channel's step); use per-channel weights"
            );
        }
    }
    let act_quant: Vec<(f32, i32)> = ranges.iter().map(|&(lo, hi)| qparams(lo, hi)).collect();
    let mut b = ModelBuilder::new(&opts.name);
    let labels: Vec<String> = (0..model.classes()).map(|c| c.to_string()).collect();
    let pre: Vec<(f32, f32)> = model
        .meta
        .norm
        .mean
        .iter()
        .zip(&model.meta.norm.std)
        .map(|(m, s)| (*m, 1.0 / *s))
        .collect();
    b.io_names(
        "input",
        if opts.softmax {
            "probabilities"
        } else {
            "logits"
        },
    )
    .labels(&labels)
    .preprocess(&pre);
    let (s0, z0) = act_quant[0];
    let input = b.activation(&dims4(model.shapes[0]), s0, z0);
    let mut cur = input;
    let mut cur_shape = model.shapes[0];
    let mut op_points = Vec::new();
    let mut op_layers = Vec::new();
    let mut weights = Vec::new();
    for (i, layer) in model.layers.iter().enumerate() {
        let out_shape = model.shapes[i + 1];
        let (os, oz) = act_quant[groups[i + 1]];
        let (in_s, in_z) = act_quant[groups[i]];
        // Every op of layer `i` approximates the layer's output (point `i + 1`).
        macro_rules! push {
            ($b:expr, $op:expr $(,)?) => {{
                $b.op($op);
                op_points.push(OpPoint::Point(i + 1));
                op_layers.push(Some(i));
            }};
        }
        match layer {
            Layer::Conv {
                win,
                depthwise,
                act,
                out_c,
                ..
            } => {
                let qw = quantize_weights(layer, i, in_s, opts.per_tensor_weights);
                let (dims, axis) = if *depthwise {
                    (vec![1, win.k[0], win.k[1], *out_c], 3)
                } else {
                    (vec![*out_c, win.k[0], win.k[1], win.input[2]], 0)
                };
                let quant = if opts.per_tensor_weights {
                    QuantSpec::PerTensor {
                        scale: qw.scales[0],
                        zero_point: 0,
                    }
                } else {
                    QuantSpec::PerChannel {
                        scales: qw.scales.clone(),
                        axis,
                    }
                };
                let w = b.weights(&dims, qw.q.clone(), quant);
                let bias = b.bias(qw.bias.clone(), QuantSpec::None);
                let out = b.activation(&dims4(out_shape), os, oz);
                let common = (win.s, [win.pad[0], win.pad[2]], activation(*act));
                let op = if *depthwise {
                    OpSpec::DepthwiseConv2d {
                        input: cur,
                        weights: w,
                        bias: Some(bias),
                        output: out,
                        stride: common.0,
                        dilation: [1, 1],
                        pad: common.1,
                        depth_multiplier: 1,
                        activation: common.2,
                    }
                } else {
                    OpSpec::Conv2d {
                        input: cur,
                        weights: w,
                        bias: Some(bias),
                        output: out,
                        stride: common.0,
                        dilation: [1, 1],
                        pad: common.1,
                        activation: common.2,
                    }
                };
                push!(b, op);
                weights.push(qw);
                cur = out;
            }
            Layer::Dense {
                inputs, units, act, ..
            } => {
                if matches!(cur_shape, Shape::Spatial(_)) {
                    let flat = b.activation(&[1, *inputs], in_s, in_z);
                    b.op(OpSpec::Reshape {
                        input: cur,
                        output: flat,
                    });
                    op_points.push(OpPoint::Point(i));
                    op_layers.push(Some(i));
                    cur = flat;
                }
                let qw = quantize_weights(layer, i, in_s, opts.per_tensor_weights);
                let quant = if opts.per_tensor_weights {
                    QuantSpec::PerTensor {
                        scale: qw.scales[0],
                        zero_point: 0,
                    }
                } else {
                    QuantSpec::PerChannel {
                        scales: qw.scales.clone(),
                        axis: 0,
                    }
                };
                let w = b.weights(&[*units, *inputs], qw.q.clone(), quant);
                let bias = b.bias(qw.bias.clone(), QuantSpec::None);
                let out = b.activation(&[1, *units], os, oz);
                push!(
                    b,
                    OpSpec::FullyConnected {
                        input: cur,
                        weights: w,
                        bias: Some(bias),
                        output: out,
                        activation: activation(*act),
                    },
                );
                weights.push(qw);
                cur = out;
            }
            Layer::Pool { win, max } => {
                let out = b.activation(&dims4(out_shape), in_s, in_z);
                let (filter, stride, pad) = (win.k, win.s, [0, 0]);
                let op = if *max {
                    OpSpec::MaxPool2d {
                        input: cur,
                        output: out,
                        filter,
                        stride,
                        pad,
                    }
                } else {
                    OpSpec::AvgPool2d {
                        input: cur,
                        output: out,
                        filter,
                        stride,
                        pad,
                    }
                };
                push!(b, op);
                cur = out;
            }
            Layer::Gap { .. } => {
                let out = b.activation(&dims4(out_shape), os, oz);
                push!(
                    b,
                    OpSpec::GlobalAvgPool {
                        input: cur,
                        output: out,
                    },
                );
                cur = out;
            }
            Layer::Identity => {
                if let (Shape::Spatial(_), Shape::Flat(f)) = (cur_shape, out_shape) {
                    let out = b.activation(&[1, f], in_s, in_z);
                    push!(
                        b,
                        OpSpec::Reshape {
                            input: cur,
                            output: out,
                        },
                    );
                    cur = out;
                }
            }
        }
        cur_shape = out_shape;
    }
    if opts.softmax {
        let (s, z) = SOFTMAX_QUANT;
        let out = b.activation(&[1, model.classes()], s, z);
        b.op(OpSpec::Softmax {
            input: cur,
            output: out,
            beta: 1.0,
        });
        op_points.push(OpPoint::Softmax);
        op_layers.push(None);
        cur = out;
    }
    if cur == input {
        bail!("the model has no layer that computes anything");
    }
    b.inputs(&[input]).outputs(&[cur]);
    let bytes = b.finish()?;
    Ok(Built {
        bytes,
        op_points,
        op_layers,
        weights,
        act_quant,
    })
}
