//! Lowers a parsed `.ekd` model to a tract `TypedModel` that computes in int8.
//!
//! Activations are `QI8` tensors carrying the model's own scale and zero point.
//! Convolutions (including depthwise, as grouped convolutions) and fully connected
//! layers are tract quantized `Conv` / `EinSum` ops with the input zero point wired
//! in, producing exact i32 accumulators (bias included) on tract's integer matmul
//! kernels; [`FixedPointRequant`] then applies the file's Q31 multipliers. Max pooling
//! and reshapes are plain tract ops (exact on int8). See [`crate::ops`] for why the
//! remaining ops run the reference kernels inside tract nodes.

use crate::error::{Error, Result};
use crate::ops::{EkdKernel, FixedPointRequant, Kernel};
use edgekd_kernels::{Clamp, PoolParams, Requant, Shape};
use edgekd_runtime::format::{Op, OpParams};
use edgekd_runtime::{Model, OpCode, Quant, Tensor as EkdTensor};
use tract_core::internal::*;
use tract_core::ops::cnn::{Conv, KernelFormat, MaxPool, PaddingSpec, PoolSpec};
use tract_core::ops::einsum::EinSum;
use tract_core::ops::nn::DataFormat;

/// Shape and quantization of one model input or output.
#[derive(Debug, Clone, PartialEq)]
pub struct IoInfo {
    /// Dimensions as the model declares them.
    pub dims: Vec<usize>,
    /// Scale.
    pub scale: f32,
    /// Zero point.
    pub zero_point: i32,
}

impl IoInfo {
    /// Number of elements.
    pub fn elements(&self) -> usize {
        self.dims.iter().product()
    }

    /// tract datum type of the tensor.
    pub fn datum_type(&self) -> DatumType {
        qi8(self.scale, self.zero_point)
    }

    fn of(t: &EkdTensor<'_>) -> Result<Self> {
        let (scale, zero_point) = t.scale_zero_point()?;
        Ok(IoInfo {
            dims: t.dims().to_vec(),
            scale,
            zero_point,
        })
    }
}

/// A lowered model: the tract graph plus what its inputs and outputs are.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// The graph, not yet optimized.
    pub model: TypedModel,
    /// Model inputs, in order.
    pub inputs: Vec<IoInfo>,
    /// Model outputs, in order.
    pub outputs: Vec<IoInfo>,
    /// Names of the `.ekd` ops, by index: tract node names start with `op<index>.`.
    pub op_names: Vec<&'static str>,
}

pub(crate) fn qi8(scale: f32, zero_point: i32) -> DatumType {
    DatumType::QI8(QParams::ZpScale { zero_point, scale })
}

/// Node-name prefix of `.ekd` op `index`; profiles group tract nodes by it.
pub fn op_prefix(index: usize) -> String {
    format!("op{index}.")
}

/// Lowers `model` to an int8 tract graph.
pub fn lower_int8(model: &Model<'_>) -> Result<Lowered> {
    let mut g = TypedModel::default();
    let mut wires: Vec<Option<OutletId>> = vec![None; model.tensor_count()];
    let mut inputs = Vec::new();
    for i in 0..model.input_count() {
        let index = model.input_index(i)?;
        let info = IoInfo::of(&model.tensor(index)?)?;
        let fact = info.datum_type().fact(&*info.dims);
        wires[index] = Some(g.add_source(format!("input{i}"), fact)?);
        inputs.push(info);
    }
    let mut op_names = Vec::new();
    for (index, op) in model.ops().enumerate() {
        let op = op?;
        op_names.push(op.code.name());
        let out = lower_op(&mut g, model, index, &op, &wires)?;
        wires[op.output()] = Some(out);
    }
    let mut outputs = Vec::new();
    let mut outlets = Vec::new();
    for i in 0..model.output_count() {
        let index = model.output_index(i)?;
        outputs.push(IoInfo::of(&model.tensor(index)?)?);
        outlets.push(wires[index].ok_or_else(|| Error::Unsupported {
            op: usize::MAX,
            name: "graph",
            reason: format!("output {i} (tensor {index}) is never written"),
        })?);
    }
    g.select_output_outlets(&outlets)?;
    Ok(Lowered {
        model: g,
        inputs,
        outputs,
        op_names,
    })
}

fn unsupported(index: usize, op: &Op<'_>, reason: impl Into<String>) -> Error {
    Error::Unsupported {
        op: index,
        name: op.code.name(),
        reason: reason.into(),
    }
}

/// The wire holding tensor `slot` of `op`, which an earlier op (or a model input) must
/// have produced.
fn wire_of(
    wires: &[Option<OutletId>],
    index: usize,
    op: &Op<'_>,
    slot: usize,
) -> Result<(OutletId, usize)> {
    let t = op
        .input(slot)
        .ok_or_else(|| unsupported(index, op, format!("input {slot} is absent")))?;
    let w = wires.get(t).copied().flatten().ok_or_else(|| {
        unsupported(
            index,
            op,
            format!("reads tensor {t} before anything writes it"),
        )
    })?;
    Ok((w, t))
}

fn reshape(g: &mut TypedModel, name: String, wire: OutletId, to: &[usize]) -> Result<OutletId> {
    let from: TVec<TDim> = g.outlet_fact(wire)?.shape.iter().cloned().collect();
    let to: TVec<TDim> = to.iter().map(|d| d.to_dim()).collect();
    if from == to {
        return Ok(wire);
    }
    Ok(g.wire_node(name, AxisOp::Reshape(0, from, to), &[wire])?[0])
}

fn nhwc(s: Shape) -> [usize; 4] {
    [s.n, s.h, s.w, s.c]
}

/// Explicit before/after padding that makes tract's output extent equal the model's:
/// the model stores top/left padding and implies bottom/right from the output shape.
pub(crate) fn padding(
    input: [usize; 2],
    output: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    before: [usize; 2],
) -> PaddingSpec {
    let after = |i: usize| {
        let effective = (kernel[i] - 1) * dilation[i] + 1;
        ((output[i] - 1) * stride[i] + effective).saturating_sub(input[i] + before[i])
    };
    PaddingSpec::Explicit(tvec!(before[0], before[1]), tvec!(after(0), after(1)))
}

fn pool_spec_of(
    ins: Shape,
    outs: Shape,
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    before: [usize; 2],
) -> PoolSpec {
    PoolSpec {
        data_format: DataFormat::NHWC,
        kernel_shape: tvec!(kernel[0], kernel[1]),
        padding: padding(
            [ins.h, ins.w],
            [outs.h, outs.w],
            kernel,
            stride,
            dilation,
            before,
        ),
        dilations: Some(tvec!(dilation[0], dilation[1])),
        strides: Some(tvec!(stride[0], stride[1])),
        input_channels: ins.c,
        output_channels: outs.c,
    }
}

fn requant_op(rq: Requant<'_>, out: &EkdTensor<'_>, clamp: Clamp) -> Result<FixedPointRequant> {
    let (scale, zero_point) = out.scale_zero_point()?;
    Ok(FixedPointRequant {
        multiplier: rq.multiplier.to_vec(),
        shift: rq.shift.to_vec(),
        zero_point,
        min: clamp.min,
        max: clamp.max,
        out_dt: qi8(scale, zero_point),
    })
}

fn bias_tensor(model: &Model<'_>, op: &Op<'_>, channels: usize) -> Result<Tensor> {
    Ok(match op.input(2) {
        Some(t) => tensor1(model.tensor(t)?.const_i32()?),
        None => tensor1(&vec![0i32; channels]),
    })
}

/// The constant inputs 3..9 of a quantized Conv/EinSum: input zero point, and unit
/// scales so tract leaves the accumulators alone (requantization happens after).
fn q_inputs(g: &mut TypedModel, name: &str, input_zp: i32) -> Result<[OutletId; 6]> {
    Ok([
        g.add_const(format!("{name}.x0"), tensor0(input_zp))?,
        g.add_const(format!("{name}.x_scale"), tensor0(1f32))?,
        g.add_const(format!("{name}.k0"), tensor0(0i32))?,
        g.add_const(format!("{name}.k_scale"), tensor0(1f32))?,
        g.add_const(format!("{name}.y0"), tensor0(0i32))?,
        g.add_const(format!("{name}.y_scale"), tensor0(1f32))?,
    ])
}

fn check_weights(index: usize, op: &Op<'_>, w: &EkdTensor<'_>) -> Result<()> {
    match w.quant {
        Quant::PerChannel { .. } | Quant::PerTensor { zero_point: 0, .. } => Ok(()),
        _ => Err(unsupported(
            index,
            op,
            "weights must be symmetric (zero point 0)",
        )),
    }
}

fn lower_op(
    g: &mut TypedModel,
    model: &Model<'_>,
    index: usize,
    op: &Op<'_>,
    wires: &[Option<OutletId>],
) -> Result<OutletId> {
    let name = format!("{}{}", op_prefix(index), op.code.name());
    let out_t = model.tensor(op.output())?;
    let (x, x_index) = wire_of(wires, index, op, 0)?;
    let in_t = model.tensor(x_index)?;
    let (ins, outs) = (in_t.shape(), out_t.shape());
    let (out_scale, out_zp) = out_t.scale_zero_point()?;
    let out_dt = qi8(out_scale, out_zp);
    let params = op.params(model)?;
    let kernel_node = |kernel: Kernel| EkdKernel {
        op_index: index,
        kernel,
        input_shape: ins,
        output_shape: outs,
        output_dims: out_t.dims().iter().copied().collect(),
        out_dt,
    };
    let wire = match params {
        OpParams::Conv2d(p, rq) | OpParams::DepthwiseConv2d(p, rq) => {
            let depthwise = op.code == OpCode::DepthwiseConv2d;
            let w_index = op
                .input(1)
                .ok_or_else(|| unsupported(index, op, "no weights"))?;
            let w = model.tensor(w_index)?;
            check_weights(index, op, &w)?;
            let ws = w.shape();
            // Conv weights are OHWI. Depthwise weights are 1 x KH x KW x (C_in * M) with
            // channel c_in * M + m, the same bytes as tract's grouped HWIO layout
            // KH x KW x C_in x M (tract puts all input channels on I, M outputs per group).
            let (kernel, fmt, group) = if depthwise {
                let t = Tensor::from_shape(&[ws.h, ws.w, ins.c, ws.c / ins.c], w.const_i8()?)?;
                (t, KernelFormat::HWIO, ins.c)
            } else {
                (
                    Tensor::from_shape(&nhwc(ws), w.const_i8()?)?,
                    KernelFormat::OHWI,
                    1,
                )
            };
            let spec = pool_spec_of(
                ins,
                outs,
                [ws.h, ws.w],
                [p.stride_h, p.stride_w],
                [p.dilation_h, p.dilation_w],
                [p.pad_top, p.pad_left],
            );
            let x = reshape(g, format!("{name}.to_nhwc"), x, &nhwc(ins))?;
            let kernel = g.add_const(format!("{name}.weights"), kernel)?;
            let bias = g.add_const(format!("{name}.bias"), bias_tensor(model, op, outs.c)?)?;
            let q = q_inputs(g, &name, p.input_zero_point)?;
            let conv = Conv {
                pool_spec: spec,
                kernel_fmt: fmt,
                group,
                q_params: Some(i32::datum_type()),
            };
            let mut conv_inputs = vec![x, kernel, bias];
            conv_inputs.extend(q);
            let acc = g.wire_node(format!("{name}.conv"), conv, &conv_inputs)?[0];
            let rq = requant_op(rq, &out_t, p.clamp)?;
            let y = g.wire_node(format!("{name}.requant"), rq, &[acc])?[0];
            reshape(g, format!("{name}.from_nhwc"), y, out_t.dims())?
        }
        OpParams::FullyConnected(p, rq) => {
            let w_index = op
                .input(1)
                .ok_or_else(|| unsupported(index, op, "no weights"))?;
            let w = model.tensor(w_index)?;
            check_weights(index, op, &w)?;
            let [out_f, in_f] = match *w.dims() {
                [o, i] => [o, i],
                _ => return Err(unsupported(index, op, "weights must be [out, in]")),
            };
            let batch = in_t.elements() / in_f;
            let x = reshape(g, format!("{name}.flatten"), x, &[batch, in_f])?;
            let weights = Tensor::from_shape(&[out_f, in_f], w.const_i8()?)?;
            let weights = g.add_const(format!("{name}.weights"), weights)?;
            let bias = g.add_const(format!("{name}.bias"), bias_tensor(model, op, out_f)?)?;
            let q = q_inputs(g, &name, p.input_zero_point)?;
            let axes: AxesMapping = "mk,nk,n,,,,,,->mn".parse()?;
            let einsum = EinSum::newq(axes, i32::datum_type(), i32::datum_type());
            let mut mm_inputs = vec![x, weights, bias];
            mm_inputs.extend(q);
            let acc = g.wire_node(format!("{name}.matmul"), einsum, &mm_inputs)?[0];
            let rq = requant_op(rq, &out_t, p.clamp)?;
            let y = g.wire_node(format!("{name}.requant"), rq, &[acc])?[0];
            reshape(g, format!("{name}.reshape"), y, out_t.dims())?
        }
        OpParams::MaxPool2d(p) if p.clamp == Clamp::NONE => {
            let spec = pool_spec_of(
                ins,
                outs,
                [p.filter_h, p.filter_w],
                [p.stride_h, p.stride_w],
                [1, 1],
                [p.pad_top, p.pad_left],
            );
            let x = reshape(g, format!("{name}.to_nhwc"), x, &nhwc(ins))?;
            let pool = MaxPool {
                pool_spec: spec,
                with_index_outputs: None,
            };
            let y = g.wire_node(format!("{name}.maxpool"), pool, &[x])?[0];
            reshape(g, format!("{name}.from_nhwc"), y, out_t.dims())?
        }
        OpParams::MaxPool2d(p) => g.wire_node(name, kernel_node(Kernel::MaxPool(p)), &[x])?[0],
        OpParams::AvgPool2d(p) => g.wire_node(name, kernel_node(Kernel::AvgPool(p)), &[x])?[0],
        OpParams::GlobalAvgPool(p) => g.wire_node(name, kernel_node(Kernel::Mean(p)), &[x])?[0],
        OpParams::Softmax(p) => g.wire_node(name, kernel_node(Kernel::Softmax(p)), &[x])?[0],
        OpParams::Add(p) => {
            let (y, _) = wire_of(wires, index, op, 1)?;
            g.wire_node(name, kernel_node(Kernel::Add(p)), &[x, y])?[0]
        }
        OpParams::Reshape => reshape(g, name, x, out_t.dims())?,
        _ => return Err(unsupported(index, op, "no tract lowering for this op")),
    };
    Ok(wire)
}

/// Pooling parameters are shared by the float lowering.
pub(crate) fn pool_spec_for(p: &PoolParams, ins: Shape, outs: Shape) -> PoolSpec {
    pool_spec_of(
        ins,
        outs,
        [p.filter_h, p.filter_w],
        [p.stride_h, p.stride_w],
        [1, 1],
        [p.pad_top, p.pad_left],
    )
}
