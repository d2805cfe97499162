//! ONNX export of an int8 `.ekd` model, for cross-checking in onnxruntime, tract or Netron.
//!
//! The graph takes raw float features `[N, H*W*C]` (the model's stored preprocessing is
//! inside), quantizes them with QuantizeLinear, and computes in int8 in NCHW:
//! - Conv2d / DepthwiseConv2d -> QLinearConv (per-channel weight scales, int32 bias);
//! - FullyConnected -> QLinearConv with a 1x1 kernel on `[N, in, 1, 1]`, because
//!   QLinearMatMul has no bias input and folding the bias into a separate Add would need
//!   a com.microsoft op (QLinearAdd) that tract rejects;
//! - MaxPool2d -> int8 MaxPool; Reshape -> Transpose to NHWC + Reshape (keeps the runtime's
//!   NHWC flattening order);
//! - AvgPool2d, GlobalAvgPool, Add -> DequantizeLinear, float op, QuantizeLinear (no standard
//!   QLinear op exists);
//! - Softmax -> DequantizeLinear + Softmax, left in float (tract 0.23 mis-evaluates
//!   DequantizeLinear -> Softmax -> QuantizeLinear).
//!
//! Fused activations are clamps; where a clamp is narrower than int8 saturation a Clip on the
//! int8 tensor follows. The output is dequantized to float.
//!
//! Differences from the runtime: ONNX requantizes with a float multiply and rounds half to
//! even (QuantizeLinear, QLinearConv), the runtime uses a Q31 fixed-point multiplier with
//! round-half-away, so outputs are not bit-exact. Average pooling is exported as Cast +
//! AveragePool + explicit round-half-away, which is exact. Measured through tract-onnx
//! (tests/quant_export.rs): MLP within 1 LSB, a 7-op CNN within 2 LSB with 93 % of the
//! logits bit-exact.

use crate::nn::onnx::{f32_tensor, model_proto, value_info};
use anyhow::{bail, Context, Result};
use edgekd_runtime::format::{OpCode, OpParams};
use edgekd_runtime::{Model, Quant};
use prost::Message;
use tract_onnx::pb;

fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i: v,
        ..Default::default()
    }
}

fn int_tensor(
    name: &str,
    dims: &[usize],
    dtype: pb::tensor_proto::DataType,
    raw: Vec<u8>,
) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: dtype as i32,
        raw_data: raw,
        ..Default::default()
    }
}

fn i8_tensor(name: &str, dims: &[usize], v: &[i8]) -> pb::TensorProto {
    int_tensor(
        name,
        dims,
        pb::tensor_proto::DataType::Int8,
        v.iter().map(|&x| x as u8).collect(),
    )
}

fn i32_tensor(name: &str, dims: &[usize], v: &[i32]) -> pb::TensorProto {
    int_tensor(
        name,
        dims,
        pb::tensor_proto::DataType::Int32,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

fn i64_tensor(name: &str, v: &[i64]) -> pb::TensorProto {
    int_tensor(
        name,
        &[v.len()],
        pb::tensor_proto::DataType::Int64,
        v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    )
}

/// ONNX `TensorProto.DataType` codes used by Cast.
const FLOAT: i64 = 1;
const INT8: i64 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// 4-D, stored NCHW in the graph (NHWC in the runtime).
    Nchw,
    /// `[N, F]`.
    Flat,
}

#[derive(Debug, Clone)]
struct Val {
    name: String,
    layout: Layout,
    /// Runtime dims (NHWC or `[1, F]`).
    dims: Vec<usize>,
    /// `(scale, zero point)` initializer names.
    q: (String, String),
}

struct Graph {
    g: pb::GraphProto,
    next: usize,
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    fn node(&mut self, op: &str, inputs: &[&str], attrs: Vec<pb::AttributeProto>) -> String {
        let out = self.fresh(&op.to_ascii_lowercase());
        self.g.node.push(pb::NodeProto {
            name: format!("n_{out}"),
            op_type: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn init(&mut self, t: pb::TensorProto) -> String {
        let name = t.name.clone();
        self.g.initializer.push(t);
        name
    }

    /// Scalar scale (f32) and zero point (int8) initializers.
    fn qparams(&mut self, scale: f32, zp: i32) -> (String, String) {
        let s = self.fresh("scale");
        let z = self.fresh("zp");
        self.init(f32_tensor(&s, &[], &[scale]));
        self.init(i8_tensor(&z, &[], &[zp as i8]));
        (s, z)
    }

    fn shape(&mut self, dims: &[i64]) -> String {
        let n = self.fresh("shape");
        self.init(i64_tensor(&n, dims))
    }

    /// The value as an NHWC-ordered tensor (transposing an NCHW one).
    fn nhwc_of(&mut self, v: &Val) -> String {
        match v.layout {
            Layout::Nchw => self.node(
                "Transpose",
                &[&v.name],
                vec![attr_ints("perm", &[0, 2, 3, 1])],
            ),
            Layout::Flat => v.name.clone(),
        }
    }

    /// Rounds a float tensor half away from zero and saturates it to int8.
    fn round_half_away_to_i8(&mut self, x: &str) -> String {
        let half = self.fresh("half");
        self.init(f32_tensor(&half, &[], &[0.5]));
        let lo = self.fresh("lo");
        self.init(f32_tensor(&lo, &[], &[-128.0]));
        let hi = self.fresh("hi");
        self.init(f32_tensor(&hi, &[], &[127.0]));
        let sign = self.node("Sign", &[x], vec![]);
        let abs = self.node("Abs", &[x], vec![]);
        let shifted = self.node("Add", &[&abs, &half], vec![]);
        let floor = self.node("Floor", &[&shifted], vec![]);
        let rounded = self.node("Mul", &[&sign, &floor], vec![]);
        let clipped = self.node("Clip", &[&rounded, &lo, &hi], vec![]);
        self.node("Cast", &[&clipped], vec![attr_int("to", INT8)])
    }

    /// int8 Clip when the clamp is narrower than saturation.
    fn clamp(&mut self, name: String, lo: i8, hi: i8) -> String {
        if lo == i8::MIN && hi == i8::MAX {
            return name;
        }
        let a = self.fresh("clip_min");
        let b = self.fresh("clip_max");
        self.init(i8_tensor(&a, &[], &[lo]));
        self.init(i8_tensor(&b, &[], &[hi]));
        self.node("Clip", &[&name, &a, &b], vec![])
    }
}

fn tensor_q(model: &Model<'_>, i: usize) -> Result<(f32, i32)> {
    Ok(model.tensor(i)?.scale_zero_point()?)
}

fn layout_of(dims: &[usize]) -> Result<Layout> {
    match dims.len() {
        4 => Ok(Layout::Nchw),
        2 => Ok(Layout::Flat),
        r => bail!("tensors of rank {r} are not supported by the ONNX exporter"),
    }
}

/// Per-output-channel weight scales of a weights tensor.
fn weight_scales(model: &Model<'_>, i: usize, channels: usize) -> Result<Vec<f32>> {
    Ok(match model.tensor(i)?.quant {
        Quant::PerChannel { scales, .. } => scales.to_vec(),
        Quant::PerTensor { scale, .. } => vec![scale; channels],
        Quant::None => bail!("weights tensor {i} has no quantization"),
    })
}

/// Serialized ONNX model of an `.ekd` model.
pub fn export(model: &Model<'_>) -> Result<Vec<u8>> {
    Ok(build(model)?.encode_to_vec())
}

/// The ONNX graph of an `.ekd` model.
pub fn build(model: &Model<'_>) -> Result<pb::ModelProto> {
    let mut gr = Graph {
        g: pb::GraphProto {
            name: model
                .metadata()
                .map_or("edgekd".to_string(), |m| m.name.to_string()),
            ..Default::default()
        },
        next: 0,
    };
    let in_idx = model.input_index(0)?;
    let in_t = model.tensor(in_idx)?;
    let in_dims = in_t.dims().to_vec();
    let features: usize = in_dims[1..].iter().product();
    gr.g.input.push(value_info("input", &[features]));
    // Preprocessing, then quantization, in NHWC, as `Interpreter::set_input_f32` does.
    let channels = in_t.shape().c.max(1);
    let (offset, pscale): (Vec<f32>, Vec<f32>) = (0..channels)
        .map(|c| {
            model
                .metadata()
                .map_or((0.0, 1.0), |m| m.preprocess(c, channels))
        })
        .unzip();
    let nhwc_dims: Vec<i64> = std::iter::once(-1)
        .chain(in_dims[1..].iter().map(|&d| d as i64))
        .collect();
    let shp = gr.shape(&nhwc_dims);
    let x = gr.node("Reshape", &["input", &shp], vec![]);
    let off = gr.init(f32_tensor("pre_offset", &[channels], &offset));
    let sc = gr.init(f32_tensor("pre_scale", &[channels], &pscale));
    let x = gr.node("Sub", &[&x, &off], vec![]);
    let x = gr.node("Mul", &[&x, &sc], vec![]);
    let (s, z) = tensor_q(model, in_idx)?;
    let q = gr.qparams(s, z);
    let x = gr.node("QuantizeLinear", &[&x, &q.0, &q.1], vec![]);
    let layout = layout_of(&in_dims)?;
    let x = if layout == Layout::Nchw {
        gr.node("Transpose", &[&x], vec![attr_ints("perm", &[0, 3, 1, 2])])
    } else {
        x
    };
    let mut vals: Vec<Option<Val>> = vec![None; model.tensor_count()];
    vals[in_idx] = Some(Val {
        name: x,
        layout,
        dims: in_dims,
        q,
    });
    let mut float_out: Option<String> = None;
    for (oi, op) in model.ops().enumerate() {
        let op = op?;
        let input = op.input(0).context("op without input")?;
        let v = vals[input]
            .clone()
            .with_context(|| format!("op {oi}: input tensor {input} is not computed yet"))?;
        let out_i = op.output();
        let out_t = model.tensor(out_i)?;
        let out_dims = out_t.dims().to_vec();
        let out_layout = layout_of(&out_dims)?;
        let (os, oz) = tensor_q(model, out_i)?;
        let oq = gr.qparams(os, oz);
        let params = op.params(model)?;
        let name = match (&params, op.code) {
            (OpParams::Conv2d(p, _) | OpParams::DepthwiseConv2d(p, _), code) => {
                let w_i = op.input(1).context("conv without weights")?;
                let w_t = model.tensor(w_i)?;
                let wd = w_t.dims().to_vec();
                let w = w_t.const_i8()?;
                let depthwise = code == OpCode::DepthwiseConv2d;
                let (kh, kw) = (wd[1], wd[2]);
                let (oc, ic_per_group) = if depthwise {
                    (wd[3], 1)
                } else {
                    (wd[0], wd[3])
                };
                let mut onnx_w = vec![0i8; w.len()];
                for o in 0..oc {
                    for ky in 0..kh {
                        for kx in 0..kw {
                            for c in 0..ic_per_group {
                                let src = if depthwise {
                                    (ky * kw + kx) * oc + o
                                } else {
                                    ((o * kh + ky) * kw + kx) * ic_per_group + c
                                };
                                onnx_w[((o * ic_per_group + c) * kh + ky) * kw + kx] = w[src];
                            }
                        }
                    }
                }
                let in_shape = model.tensor(input)?.shape();
                let out_shape = out_t.shape();
                let pad_b = ((out_shape.h - 1) * p.stride_h + p.dilation_h * (kh - 1) + 1)
                    .saturating_sub(in_shape.h + p.pad_top);
                let pad_r = ((out_shape.w - 1) * p.stride_w + p.dilation_w * (kw - 1) + 1)
                    .saturating_sub(in_shape.w + p.pad_left);
                let mut attrs = vec![
                    attr_ints("kernel_shape", &[kh as i64, kw as i64]),
                    attr_ints("strides", &[p.stride_h as i64, p.stride_w as i64]),
                    attr_ints("dilations", &[p.dilation_h as i64, p.dilation_w as i64]),
                    attr_ints(
                        "pads",
                        &[
                            p.pad_top as i64,
                            p.pad_left as i64,
                            pad_b as i64,
                            pad_r as i64,
                        ],
                    ),
                ];
                if depthwise {
                    attrs.push(attr_int("group", in_shape.c as i64));
                }
                let y = qlinear_conv(
                    &mut gr,
                    model,
                    &v,
                    &onnx_w,
                    &[oc, ic_per_group, kh, kw],
                    w_i,
                    op.input(2),
                    &oq,
                    attrs,
                )?;
                gr.clamp(y, p.clamp.min, p.clamp.max)
            }
            (OpParams::FullyConnected(p, _), _) => {
                let w_i = op.input(1).context("fully connected without weights")?;
                let w_t = model.tensor(w_i)?;
                let (o, i) = (w_t.dims()[0], w_t.dims()[1]);
                let flat = gr.nhwc_of(&v);
                let shp = gr.shape(&[-1, i as i64, 1, 1]);
                let x4 = gr.node("Reshape", &[&flat, &shp], vec![]);
                let x4 = Val {
                    name: x4,
                    ..v.clone()
                };
                let y = qlinear_conv(
                    &mut gr,
                    model,
                    &x4,
                    w_t.const_i8()?,
                    &[o, i, 1, 1],
                    w_i,
                    op.input(2),
                    &oq,
                    vec![attr_ints("kernel_shape", &[1, 1])],
                )?;
                let y = gr.clamp(y, p.clamp.min, p.clamp.max);
                let shp = gr.shape(&[-1, o as i64]);
                let y = gr.node("Reshape", &[&y, &shp], vec![]);
                if out_layout == Layout::Nchw {
                    bail!("op {oi}: fully connected with a 4-D output is not supported");
                }
                y
            }
            (OpParams::MaxPool2d(p) | OpParams::AvgPool2d(p), code) => {
                let in_shape = model.tensor(input)?.shape();
                let out_shape = out_t.shape();
                let pad_b = ((out_shape.h - 1) * p.stride_h + p.filter_h)
                    .saturating_sub(in_shape.h + p.pad_top);
                let pad_r = ((out_shape.w - 1) * p.stride_w + p.filter_w)
                    .saturating_sub(in_shape.w + p.pad_left);
                let mut attrs = vec![
                    attr_ints("kernel_shape", &[p.filter_h as i64, p.filter_w as i64]),
                    attr_ints("strides", &[p.stride_h as i64, p.stride_w as i64]),
                    attr_ints(
                        "pads",
                        &[
                            p.pad_top as i64,
                            p.pad_left as i64,
                            pad_b as i64,
                            pad_r as i64,
                        ],
                    ),
                ];
                let y = if code == OpCode::MaxPool2d {
                    gr.node("MaxPool", &[&v.name], attrs)
                } else {
                    // Input and output share quantization, so the runtime averages the raw
                    // int8 values and rounds ties away from zero (TFLite); QuantizeLinear
                    // would round the frequent .5 averages to even instead.
                    attrs.push(attr_int("count_include_pad", 0));
                    let f = gr.node("Cast", &[&v.name], vec![attr_int("to", FLOAT)]);
                    let f = gr.node("AveragePool", &[&f], attrs);
                    gr.round_half_away_to_i8(&f)
                };
                gr.clamp(y, p.clamp.min, p.clamp.max)
            }
            (OpParams::GlobalAvgPool(p), _) => {
                let f = gr.node("DequantizeLinear", &[&v.name, &v.q.0, &v.q.1], vec![]);
                let f = gr.node("GlobalAveragePool", &[&f], vec![]);
                let y = gr.node("QuantizeLinear", &[&f, &oq.0, &oq.1], vec![]);
                let y = gr.clamp(y, p.clamp.min, p.clamp.max);
                if out_layout == Layout::Flat {
                    let shp = gr.shape(&[-1, out_dims[1] as i64]);
                    gr.node("Reshape", &[&y, &shp], vec![])
                } else {
                    y
                }
            }
            (OpParams::Add(p), _) => {
                let b_i = op.input(1).context("add without second input")?;
                let b = vals[b_i].clone().context("add input not computed")?;
                if b.layout != v.layout {
                    bail!("op {oi}: add of tensors with different layouts");
                }
                let fa = gr.node("DequantizeLinear", &[&v.name, &v.q.0, &v.q.1], vec![]);
                let fb = gr.node("DequantizeLinear", &[&b.name, &b.q.0, &b.q.1], vec![]);
                let f = gr.node("Add", &[&fa, &fb], vec![]);
                let y = gr.node("QuantizeLinear", &[&f, &oq.0, &oq.1], vec![]);
                gr.clamp(y, p.clamp.min, p.clamp.max)
            }
            (OpParams::Reshape, _) => {
                let nhwc = gr.nhwc_of(&v);
                let dims: Vec<i64> = std::iter::once(-1)
                    .chain(out_dims[1..].iter().map(|&d| d as i64))
                    .collect();
                let shp = gr.shape(&dims);
                let y = gr.node("Reshape", &[&nhwc, &shp], vec![]);
                if out_layout == Layout::Nchw {
                    gr.node("Transpose", &[&y], vec![attr_ints("perm", &[0, 3, 1, 2])])
                } else {
                    y
                }
            }
            (OpParams::Softmax(_), _) => {
                if model.output_index(0)? != out_i {
                    bail!("op {oi}: softmax is only exported as the model's last op");
                }
                let f = gr.node("DequantizeLinear", &[&v.name, &v.q.0, &v.q.1], vec![]);
                let f = match v.layout {
                    Layout::Flat => f,
                    Layout::Nchw => bail!("op {oi}: softmax over a 4-D tensor is not supported"),
                };
                let y = gr.node("Softmax", &[&f], vec![attr_int("axis", -1)]);
                float_out = Some(y.clone());
                y
            }
            (other, _) => bail!("op {oi}: {other:?} is not supported by the ONNX exporter"),
        };
        vals[out_i] = Some(Val {
            name,
            layout: out_layout,
            dims: out_dims,
            q: oq,
        });
    }
    let out_i = model.output_index(0)?;
    let out = vals[out_i]
        .clone()
        .context("the output is never computed")?;
    let y = match float_out {
        Some(f) if f == out.name => f,
        _ => {
            let nhwc = gr.nhwc_of(&out);
            gr.node("DequantizeLinear", &[&nhwc, &out.q.0, &out.q.1], vec![])
        }
    };
    let out_features: usize = out.dims[1..].iter().product();
    let shp = gr.shape(&[-1, out_features as i64]);
    let y_flat = gr.node("Reshape", &[&y, &shp], vec![]);
    gr.g.node.push(pb::NodeProto {
        name: "output_identity".into(),
        op_type: "Identity".into(),
        input: vec![y_flat],
        output: vec!["output".into()],
        ..Default::default()
    });
    gr.g.output.push(value_info("output", &[out_features]));
    Ok(model_proto(gr.g))
}

#[allow(clippy::too_many_arguments)]
fn qlinear_conv(
    gr: &mut Graph,
    model: &Model<'_>,
    x: &Val,
    w: &[i8],
    w_dims: &[usize],
    w_index: usize,
    bias: Option<usize>,
    oq: &(String, String),
    attrs: Vec<pb::AttributeProto>,
) -> Result<String> {
    let oc = w_dims[0];
    let scales = weight_scales(model, w_index, oc)?;
    let wn = gr.fresh("w");
    gr.init(i8_tensor(&wn, w_dims, w));
    let ws = gr.fresh("w_scale");
    gr.init(f32_tensor(&ws, &[oc], &scales));
    let wz = gr.fresh("w_zp");
    gr.init(i8_tensor(&wz, &[oc], &vec![0; oc]));
    let mut inputs = vec![
        x.name.clone(),
        x.q.0.clone(),
        x.q.1.clone(),
        wn,
        ws,
        wz,
        oq.0.clone(),
        oq.1.clone(),
    ];
    if let Some(b) = bias {
        let bn = gr.fresh("bias");
        gr.init(i32_tensor(&bn, &[oc], model.tensor(b)?.const_i32()?));
        inputs.push(bn);
    }
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    Ok(gr.node("QLinearConv", &refs, attrs))
}
