//! The float twin of a model: the same graph in f32 with dequantized weights.
//!
//! This is what a phone runs when it runs "the float model" on tract; benchmarks
//! compare it with the int8 graph. Weights are `scale[c] * q`, biases
//! `input_scale * weight_scale[c] * q`, activations become clamps at the dequantized
//! bounds of each output's int8 range, and softmax, pooling and mean are tract's float
//! ops. It is the int8 model without rounding, not the pre-quantization checkpoint.

use crate::error::{Error, Result};
use crate::graph::{op_prefix, pool_spec_for, IoInfo};
use edgekd_kernels::{Clamp, Shape};
use edgekd_runtime::format::{Op, OpParams};
use edgekd_runtime::{Model, OpCode, Quant, Tensor as EkdTensor};
use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, SumPool};
use tract_core::ops::einsum::EinSum;
use tract_core::ops::math;
use tract_core::ops::nn::{Reduce, Reducer, Softmax, SoftmaxKind};

/// A float graph: inputs and outputs are f32 with the `.ekd` tensors' dims.
#[derive(Debug, Clone)]
pub struct FloatLowered {
    /// The graph, not yet optimized.
    pub model: TypedModel,
    /// Quantization of the model inputs (to dequantize int8 inputs with).
    pub inputs: Vec<IoInfo>,
}

/// Lowers `model` to f32, dequantizing every constant.
pub fn lower_f32(model: &Model<'_>) -> Result<FloatLowered> {
    let mut g = TypedModel::default();
    let mut wires: Vec<Option<OutletId>> = vec![None; model.tensor_count()];
    let mut inputs = Vec::new();
    for i in 0..model.input_count() {
        let index = model.input_index(i)?;
        let t = model.tensor(index)?;
        let (scale, zero_point) = t.scale_zero_point()?;
        wires[index] = Some(g.add_source(format!("input{i}"), f32::fact(t.dims()))?);
        inputs.push(IoInfo {
            dims: t.dims().to_vec(),
            scale,
            zero_point,
        });
    }
    for (index, op) in model.ops().enumerate() {
        let op = op?;
        let out = lower_op(&mut g, model, index, &op, &wires)?;
        wires[op.output()] = Some(out);
    }
    let outlets = (0..model.output_count())
        .map(|i| {
            let t = model.output_index(i)?;
            wires[t].ok_or_else(|| Error::Input(format!("output tensor {t} is never written")))
        })
        .collect::<Result<Vec<_>>>()?;
    g.select_output_outlets(&outlets)?;
    Ok(FloatLowered { model: g, inputs })
}

/// Prepares a float graph to run (optimized, single-threaded).
pub fn into_runnable(lowered: FloatLowered) -> Result<std::sync::Arc<TypedRunnableModel>> {
    Ok(lowered.model.into_optimized()?.into_runnable()?)
}

/// Dequantizes int8 input values for the float graph.
pub fn dequantize(info: &IoInfo, q: &[i8]) -> Result<Tensor> {
    let values: Vec<f32> = q
        .iter()
        .map(|&v| info.scale * (i32::from(v) - info.zero_point) as f32)
        .collect();
    Ok(Tensor::from_shape(&info.dims, &values)?)
}

fn unsupported(index: usize, op: &Op<'_>, reason: &str) -> Error {
    Error::Unsupported {
        op: index,
        name: op.code.name(),
        reason: reason.into(),
    }
}

fn reshape(g: &mut TypedModel, name: String, wire: OutletId, to: &[usize]) -> Result<OutletId> {
    let from: TVec<TDim> = g.outlet_fact(wire)?.shape.iter().cloned().collect();
    let to: TVec<TDim> = to.iter().map(|d| d.to_dim()).collect();
    if from == to {
        return Ok(wire);
    }
    Ok(g.wire_node(name, AxisOp::Reshape(0, from, to), &[wire])?[0])
}

/// Per-output-channel scales of a weight tensor (one entry per channel).
fn channel_scales(w: &EkdTensor<'_>, channels: usize) -> Vec<f32> {
    match w.quant {
        Quant::PerChannel { scales, .. } => scales.to_vec(),
        Quant::PerTensor { scale, .. } => vec![scale; channels],
        Quant::None => vec![1.0; channels],
    }
}

/// A constant broadcastable against a tensor of `rank` along its last axis.
fn last_axis_const(
    g: &mut TypedModel,
    name: String,
    values: &[f32],
    rank: usize,
) -> Result<OutletId> {
    let mut shape = vec![1; rank];
    shape[rank - 1] = values.len();
    Ok(g.add_const(name, Tensor::from_shape(&shape, values)?)?)
}

/// The fused activation at its dequantized bounds. Both bounds always apply: the file
/// stores no activation kind, and a ReLU often shows only as the int8 range itself
/// (zero point -128 with clamp [-128, 127]), so the real range of the output tensor
/// is the activation.
fn clamp(
    g: &mut TypedModel,
    name: &str,
    wire: OutletId,
    c: Clamp,
    out: &EkdTensor<'_>,
) -> Result<OutletId> {
    let (scale, zp) = out.scale_zero_point()?;
    let rank = g.outlet_fact(wire)?.rank();
    let lo = scale * (i32::from(c.min) - zp) as f32;
    let hi = scale * (i32::from(c.max) - zp) as f32;
    let lo = last_axis_const(g, format!("{name}.lo"), &[lo], rank)?;
    let hi = last_axis_const(g, format!("{name}.hi"), &[hi], rank)?;
    let wire = g.wire_node(format!("{name}.max"), math::max(), &[wire, lo])?[0];
    Ok(g.wire_node(format!("{name}.min"), math::min(), &[wire, hi])?[0])
}

fn nhwc(s: Shape) -> [usize; 4] {
    [s.n, s.h, s.w, s.c]
}

fn lower_op(
    g: &mut TypedModel,
    model: &Model<'_>,
    index: usize,
    op: &Op<'_>,
    wires: &[Option<OutletId>],
) -> Result<OutletId> {
    let name = format!("{}{}", op_prefix(index), op.code.name());
    let input = |slot: usize| -> Result<(OutletId, EkdTensor<'_>)> {
        let t = op
            .input(slot)
            .ok_or_else(|| unsupported(index, op, "missing input"))?;
        let w = wires[t].ok_or_else(|| unsupported(index, op, "input not yet computed"))?;
        Ok((w, model.tensor(t)?))
    };
    let (x, in_t) = input(0)?;
    let out_t = model.tensor(op.output())?;
    let (ins, outs) = (in_t.shape(), out_t.shape());
    let in_scale = in_t.scale_zero_point()?.0;
    Ok(match op.params(model)? {
        OpParams::Conv2d(p, _) | OpParams::DepthwiseConv2d(p, _) => {
            let depthwise = op.code == OpCode::DepthwiseConv2d;
            let w = model.tensor(
                op.input(1)
                    .ok_or_else(|| unsupported(index, op, "no weights"))?,
            )?;
            let ws = w.shape();
            let scales = channel_scales(&w, outs.c);
            // Output channels are the first axis of conv weights (OHWI) and the last
            // of depthwise weights (1HWO).
            let q = w.const_i8()?;
            let weights: Vec<f32> = q
                .iter()
                .enumerate()
                .map(|(i, &v)| {
                    let c = if depthwise {
                        i % ws.c
                    } else {
                        i / (ws.h * ws.w * ws.c)
                    };
                    scales[c] * f32::from(v)
                })
                .collect();
            let (kernel, fmt, group) = if depthwise {
                (
                    Tensor::from_shape(&[ws.h, ws.w, ins.c, ws.c / ins.c], &weights)?,
                    KernelFormat::HWIO,
                    ins.c,
                )
            } else {
                (
                    Tensor::from_shape(&nhwc(ws), &weights)?,
                    KernelFormat::OHWI,
                    1,
                )
            };
            let bias = dequantized_bias(model, op, &scales, in_scale)?;
            let spec = tract_core::ops::cnn::PoolSpec {
                kernel_shape: tvec!(ws.h, ws.w),
                dilations: Some(tvec!(p.dilation_h, p.dilation_w)),
                strides: Some(tvec!(p.stride_h, p.stride_w)),
                padding: crate::graph::padding(
                    [ins.h, ins.w],
                    [outs.h, outs.w],
                    [ws.h, ws.w],
                    [p.stride_h, p.stride_w],
                    [p.dilation_h, p.dilation_w],
                    [p.pad_top, p.pad_left],
                ),
                data_format: tract_core::ops::nn::DataFormat::NHWC,
                input_channels: ins.c,
                output_channels: outs.c,
            };
            let x = reshape(g, format!("{name}.to_nhwc"), x, &nhwc(ins))?;
            let kernel = g.add_const(format!("{name}.weights"), kernel)?;
            let bias = g.add_const(format!("{name}.bias"), tensor1(&bias))?;
            let conv = Conv {
                pool_spec: spec,
                kernel_fmt: fmt,
                group,
                q_params: None,
            };
            let y = g.wire_node(format!("{name}.conv"), conv, &[x, kernel, bias])?[0];
            let y = clamp(g, &name, y, p.clamp, &out_t)?;
            reshape(g, format!("{name}.from_nhwc"), y, out_t.dims())?
        }
        OpParams::FullyConnected(p, _) => {
            let w = model.tensor(
                op.input(1)
                    .ok_or_else(|| unsupported(index, op, "no weights"))?,
            )?;
            let [out_f, in_f] = match *w.dims() {
                [o, i] => [o, i],
                _ => return Err(unsupported(index, op, "weights must be [out, in]")),
            };
            let scales = channel_scales(&w, out_f);
            let weights: Vec<f32> = w
                .const_i8()?
                .iter()
                .enumerate()
                .map(|(i, &v)| scales[i / in_f] * f32::from(v))
                .collect();
            let bias = dequantized_bias(model, op, &scales, in_scale)?;
            let x = reshape(
                g,
                format!("{name}.flatten"),
                x,
                &[in_t.elements() / in_f, in_f],
            )?;
            let weights = g.add_const(
                format!("{name}.weights"),
                Tensor::from_shape(&[out_f, in_f], &weights)?,
            )?;
            let axes: AxesMapping = "mk,nk->mn".parse()?;
            let y = g.wire_node(
                format!("{name}.matmul"),
                EinSum::new(axes, f32::datum_type()),
                &[x, weights],
            )?[0];
            let bias = last_axis_const(g, format!("{name}.bias"), &bias, 2)?;
            let y = g.wire_node(format!("{name}.add_bias"), math::add(), &[y, bias])?[0];
            let y = clamp(g, &name, y, p.clamp, &out_t)?;
            reshape(g, format!("{name}.reshape"), y, out_t.dims())?
        }
        OpParams::MaxPool2d(p) | OpParams::AvgPool2d(p) => {
            let spec = pool_spec_for(&p, ins, outs);
            let x = reshape(g, format!("{name}.to_nhwc"), x, &nhwc(ins))?;
            let y = if op.code == OpCode::MaxPool2d {
                let pool = MaxPool {
                    pool_spec: spec,
                    with_index_outputs: None,
                };
                g.wire_node(format!("{name}.pool"), pool, &[x])?[0]
            } else {
                let pool = SumPool {
                    pool_spec: spec,
                    count_include_pad: false,
                    normalize: true,
                };
                g.wire_node(format!("{name}.pool"), pool, &[x])?[0]
            };
            let y = clamp(g, &name, y, p.clamp, &out_t)?;
            reshape(g, format!("{name}.from_nhwc"), y, out_t.dims())?
        }
        OpParams::GlobalAvgPool(p) => {
            let x = reshape(g, format!("{name}.to_nhwc"), x, &nhwc(ins))?;
            let sum = Reduce::new(tvec!(1, 2), Reducer::Sum);
            let y = g.wire_node(format!("{name}.sum"), sum, &[x])?[0];
            let inv = last_axis_const(
                g,
                format!("{name}.inv_count"),
                &[1.0 / (ins.h * ins.w) as f32],
                4,
            )?;
            let y = g.wire_node(format!("{name}.mean"), math::mul(), &[y, inv])?[0];
            let y = clamp(g, &name, y, p.clamp, &out_t)?;
            reshape(g, format!("{name}.reshape"), y, out_t.dims())?
        }
        OpParams::Add(p) => {
            let (y, _) = input(1)?;
            let sum = g.wire_node(format!("{name}.add"), math::add(), &[x, y])?[0];
            clamp(g, &name, sum, p.clamp, &out_t)?
        }
        OpParams::Softmax(_) => {
            let rank = in_t.dims().len();
            let softmax = Softmax {
                axes: tvec!(rank - 1),
                quant_output_dt: None,
                kind: SoftmaxKind::Softmax,
            };
            g.wire_node(name, softmax, &[x])?[0]
        }
        OpParams::Reshape => reshape(g, name, x, out_t.dims())?,
        _ => return Err(unsupported(index, op, "no float lowering for this op")),
    })
}

fn dequantized_bias(
    model: &Model<'_>,
    op: &Op<'_>,
    scales: &[f32],
    in_scale: f32,
) -> Result<Vec<f32>> {
    Ok(match op.input(2) {
        Some(t) => model
            .tensor(t)?
            .const_i32()?
            .iter()
            .zip(scales)
            .map(|(&b, &s)| b as f32 * s * in_scale)
            .collect(),
        None => vec![0.0; scales.len()],
    })
}
