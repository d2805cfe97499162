//! TFLite ops to `.ekd` ops, with every integer parameter derived the way TFLite's
//! kernels derive it (see the notes on [`Converter::fully_connected`]).

use super::error::ImportError;
use super::graph::{type_name, Graph, Op, Tensor};
use super::padding::{leading_pad, out_size, Mode};
use edgekd_kernels::quant::quantize_multiplier;
use edgekd_runtime::writer::{Activation, ModelBuilder, OpSpec, QuantSpec, TensorId};
use tract_tflite::tflite::{
    ActivationFunctionType, BuiltinOperator as B, FullyConnectedOptionsWeightsFormat, Padding,
    TensorType,
};

/// Failure of one op, turned into an [`ImportError::UnsupportedUse`] by the caller.
type OpResult<T> = Result<T, String>;

pub(crate) struct Converter<'g, 'a> {
    g: &'g Graph<'a>,
    b: ModelBuilder,
    ids: Vec<Option<TensorId>>,
    /// Written by an earlier op or a graph input: what an op may read.
    ready: Vec<bool>,
    pub notes: Vec<String>,
}

impl<'g, 'a> Converter<'g, 'a> {
    pub fn new(g: &'g Graph<'a>, name: &str) -> Self {
        Converter {
            g,
            b: ModelBuilder::new(name),
            ids: vec![None; g.tensors.len()],
            ready: vec![false; g.tensors.len()],
            notes: Vec::new(),
        }
    }

    /// Converts the whole graph and serializes it.
    pub fn run(mut self) -> Result<(Vec<u8>, Vec<String>), ImportError> {
        let g = self.g;
        let mut inputs = Vec::new();
        for &t in &g.inputs {
            let id = self
                .act(t)
                .map_err(|r| ImportError::UnsupportedModel(format!("graph input: {r}")))?;
            self.ready[t] = true;
            inputs.push(id);
        }
        for op in &g.ops {
            self.op(op).map_err(|reason| ImportError::UnsupportedUse {
                index: op.index,
                op: op.name.clone(),
                reason,
            })?;
        }
        let mut outputs = Vec::new();
        for &t in &g.outputs {
            match (self.ids[t], self.ready[t]) {
                (Some(id), true) => outputs.push(id),
                _ => {
                    return Err(ImportError::UnsupportedModel(format!(
                        "graph output '{}' is not computed by any op",
                        g.tensors[t].name
                    )))
                }
            }
        }
        let name = |ts: &[usize]| ts.first().map_or("", |&t| g.tensors[t].name);
        self.b
            .inputs(&inputs)
            .outputs(&outputs)
            .io_names(name(&g.inputs), name(&g.outputs));
        Ok((self.b.finish()?, self.notes))
    }

    fn op(&mut self, op: &Op<'a>) -> OpResult<()> {
        if op.outputs.len() != 1 {
            return Err(format!(
                "{} outputs (edgekd ops have one)",
                op.outputs.len()
            ));
        }
        match op.code {
            B::CONV_2D => self.conv(op, false),
            B::DEPTHWISE_CONV_2D => self.conv(op, true),
            B::FULLY_CONNECTED => self.fully_connected(op),
            B::MAX_POOL_2D | B::AVERAGE_POOL_2D => self.pool(op),
            B::MEAN => self.mean(op),
            B::ADD => self.add(op),
            B::RESHAPE | B::EXPAND_DIMS | B::SQUEEZE => self.reshape(op),
            B::SOFTMAX => self.softmax(op),
            _ => Err("not supported by edgekd-runtime".into()),
        }
    }

    fn tensor(&self, t: usize) -> &'g Tensor<'a> {
        &self.g.tensors[t]
    }

    fn input(&self, op: &Op<'a>, slot: usize) -> OpResult<usize> {
        op.inputs
            .get(slot)
            .copied()
            .flatten()
            .ok_or_else(|| format!("input {slot} is missing"))
    }

    /// An int8 tensor computed at run time (created on first use).
    fn act(&mut self, t: usize) -> OpResult<TensorId> {
        if let Some(id) = self.ids[t] {
            return Ok(id);
        }
        let info = self.tensor(t);
        if info.data.is_some() {
            return Err(format!(
                "constant tensor '{}' used as a data input (not supported)",
                info.name
            ));
        }
        if info.dtype != TensorType::INT8 {
            return Err(format!(
                "tensor '{}' is {}; edgekd activations are int8",
                info.name,
                info.describe()
            ));
        }
        let (scale, zero_point) = per_tensor(info)?;
        if !(-128..=127).contains(&zero_point) {
            return Err(format!(
                "tensor '{}' has zero point {zero_point}, outside int8",
                info.name
            ));
        }
        let id = self.b.activation(&dims(info)?, scale, zero_point as i32);
        self.ids[t] = Some(id);
        Ok(id)
    }

    /// An op's data input: must already be computed.
    fn read(&mut self, op: &Op<'a>, slot: usize) -> OpResult<TensorId> {
        let t = self.input(op, slot)?;
        let id = self.act(t)?;
        if !self.ready[t] {
            return Err(format!(
                "reads tensor '{}' before any op computes it",
                self.tensor(t).name
            ));
        }
        Ok(id)
    }

    fn write(&mut self, op: &Op<'a>) -> OpResult<TensorId> {
        let t = op.outputs[0];
        if self.ready[t] {
            return Err(format!("tensor '{}' is written twice", self.tensor(t).name));
        }
        let id = self.act(t)?;
        self.ready[t] = true;
        Ok(id)
    }

    /// Constant int8 weights, per tensor or per channel along `axis`.
    fn weights(&mut self, t: usize, axis: usize) -> OpResult<TensorId> {
        let info = self.tensor(t);
        if info.dtype != TensorType::INT8 {
            return Err(format!(
                "weights '{}' are {}; edgekd needs int8 weights",
                info.name,
                info.describe()
            ));
        }
        let dims = dims(info)?;
        let data = constant(info, dims.iter().product())?;
        if info.zero_points.iter().any(|&z| z != 0) {
            return Err(format!(
                "weights '{}' are asymmetric (nonzero zero point)",
                info.name
            ));
        }
        let quant = match info.scales.len() {
            1 => QuantSpec::PerTensor {
                scale: info.scales[0],
                zero_point: 0,
            },
            n if n == dims[axis] && info.quantized_dimension as usize == axis => {
                QuantSpec::PerChannel {
                    scales: info.scales.clone(),
                    axis,
                }
            }
            n => {
                return Err(format!(
                    "weights '{}' have {n} scales along dimension {} (expected 1, or {} along \
                     dimension {axis})",
                    info.name, info.quantized_dimension, dims[axis]
                ))
            }
        };
        if info.scales.iter().any(|s| !s.is_finite() || *s <= 0.0) {
            return Err(format!("weights '{}' have a non-positive scale", info.name));
        }
        let values = data.iter().map(|&b| b as i8).collect();
        Ok(self.b.weights(&dims, values, quant))
    }

    fn bias(&mut self, op: &Op<'a>, channels: usize) -> OpResult<Option<TensorId>> {
        let Some(t) = op.inputs.get(2).copied().flatten() else {
            return Ok(None);
        };
        let info = self.tensor(t);
        if info.dtype != TensorType::INT32 {
            return Err(format!(
                "bias '{}' is {}; edgekd needs int32 bias",
                info.name,
                info.describe()
            ));
        }
        let data = constant(info, channels * 4)?;
        let values = data
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Some(self.b.bias(values, QuantSpec::None)))
    }

    fn conv(&mut self, op: &Op<'a>, depthwise: bool) -> OpResult<()> {
        let (padding, stride, dilation, act, dm_option) = if depthwise {
            let o = op
                .raw
                .builtin_options_as_depthwise_conv_2_doptions()
                .ok_or("missing DepthwiseConv2DOptions")?;
            (
                o.padding(),
                [o.stride_h(), o.stride_w()],
                [o.dilation_h_factor(), o.dilation_w_factor()],
                o.fused_activation_function(),
                o.depth_multiplier(),
            )
        } else {
            let o = op
                .raw
                .builtin_options_as_conv_2_doptions()
                .ok_or("missing Conv2DOptions")?;
            (
                o.padding(),
                [o.stride_h(), o.stride_w()],
                [o.dilation_h_factor(), o.dilation_w_factor()],
                o.fused_activation_function(),
                0,
            )
        };
        let activation = activation(act)?;
        let input = self.read(op, 0)?;
        let (it, ft, ot) = (
            self.tensor(self.input(op, 0)?),
            self.tensor(self.input(op, 1)?),
            self.tensor(op.outputs[0]),
        );
        let (ishape, fshape, oshape) = (nhwc(it)?, nhwc(ft)?, nhwc(ot)?);
        let (in_c, out_c) = (ishape[3], oshape[3]);
        let depth_multiplier = if depthwise {
            if fshape[0] != 1 || fshape[3] != out_c || out_c % in_c != 0 {
                return Err(format!(
                    "depthwise filter {} does not fit input {} and output {}",
                    ft.describe(),
                    it.describe(),
                    ot.describe()
                ));
            }
            let dm = out_c / in_c;
            if dm_option != 0 && dm_option as usize != dm {
                return Err(format!(
                    "depth_multiplier option {dm_option} disagrees with the shapes ({dm})"
                ));
            }
            dm
        } else {
            if fshape[3] != in_c {
                return Err(format!(
                    "grouped convolution (filter {} on input {}) is not supported",
                    ft.describe(),
                    it.describe()
                ));
            }
            if fshape[0] != out_c {
                return Err(format!(
                    "filter {} does not fit output {}",
                    ft.describe(),
                    ot.describe()
                ));
            }
            1
        };
        let geometry = Window::new(
            padding,
            [ishape[1], ishape[2]],
            [fshape[1], fshape[2]],
            stride,
            dilation,
            [oshape[1], oshape[2]],
        )?;
        let weights = self.weights(self.input(op, 1)?, if depthwise { 3 } else { 0 })?;
        let bias = self.bias(op, out_c)?;
        let output = self.write(op)?;
        self.b.op(if depthwise {
            OpSpec::DepthwiseConv2d {
                input,
                weights,
                bias,
                output,
                stride: geometry.stride,
                dilation: geometry.dilation,
                pad: geometry.pad,
                depth_multiplier,
                activation,
            }
        } else {
            OpSpec::Conv2d {
                input,
                weights,
                bias,
                output,
                stride: geometry.stride,
                dilation: geometry.dilation,
                pad: geometry.pad,
                activation,
            }
        });
        Ok(())
    }

    /// FULLY_CONNECTED. TFLite derives the per-tensor requantization multiplier in
    /// `GetQuantizedConvolutionMultipler` as
    /// `double(float(input_scale * weight_scale)) / double(output_scale)`: the product
    /// is rounded to float first, unlike conv and per-channel FC, which multiply in
    /// double. The builder derives the double product, so this path passes TFLite's
    /// multiplier explicitly.
    fn fully_connected(&mut self, op: &Op<'a>) -> OpResult<()> {
        let o = op
            .raw
            .builtin_options_as_fully_connected_options()
            .ok_or("missing FullyConnectedOptions")?;
        if o.weights_format() != FullyConnectedOptionsWeightsFormat::DEFAULT {
            return Err("shuffled weights format is not supported".into());
        }
        let activation = activation(o.fused_activation_function())?;
        let input = self.read(op, 0)?;
        let (it, wt, ot) = (
            self.tensor(self.input(op, 0)?),
            self.tensor(self.input(op, 1)?),
            self.tensor(op.outputs[0]),
        );
        let wdims = dims(wt)?;
        let [out_f, in_f] = wdims[..] else {
            return Err(format!("weights {} are not 2-D", wt.describe()));
        };
        let in_n: usize = dims(it)?.iter().product();
        let out_n: usize = dims(ot)?.iter().product();
        let rows = in_n / in_f;
        if in_n % in_f != 0 || out_n != rows * out_f {
            return Err(format!(
                "input {} and output {} do not fit weights {}",
                it.describe(),
                ot.describe(),
                wt.describe()
            ));
        }
        let weights = self.weights(self.input(op, 1)?, 0)?;
        let bias = self.bias(op, out_f)?;
        let output = self.write(op)?;
        let spec = OpSpec::FullyConnected {
            input,
            weights,
            bias,
            output,
            activation,
        };
        if wt.scales.len() == 1 {
            let (is, _) = per_tensor(it)?;
            let (os, _) = per_tensor(ot)?;
            let product = is * wt.scales[0];
            let real = f64::from(product) / f64::from(os);
            self.b
                .op_with_requant(spec, vec![quantize_multiplier(real)]);
        } else {
            self.b.op(spec);
        }
        Ok(())
    }

    fn pool(&mut self, op: &Op<'a>) -> OpResult<()> {
        let o = op
            .raw
            .builtin_options_as_pool_2_doptions()
            .ok_or("missing Pool2DOptions")?;
        if o.fused_activation_function() != ActivationFunctionType::NONE {
            return Err(format!(
                "fused activation {} on pooling is not supported",
                act_name(o.fused_activation_function())
            ));
        }
        let input = self.read(op, 0)?;
        let (it, ot) = (self.tensor(self.input(op, 0)?), self.tensor(op.outputs[0]));
        if per_tensor(it)? != per_tensor(ot)? {
            return Err(format!(
                "input and output quantization differ ({:?} vs {:?}); TFLite pools without \
                 requantizing",
                per_tensor(it)?,
                per_tensor(ot)?
            ));
        }
        let (ishape, oshape) = (nhwc(it)?, nhwc(ot)?);
        let filter = [o.filter_height(), o.filter_width()].map(|f| f.max(0) as usize);
        let w = Window::new(
            o.padding(),
            [ishape[1], ishape[2]],
            filter,
            [o.stride_h(), o.stride_w()],
            [1, 1],
            [oshape[1], oshape[2]],
        )?;
        let output = self.write(op)?;
        self.b.op(if op.code == B::MAX_POOL_2D {
            OpSpec::MaxPool2d {
                input,
                output,
                filter,
                stride: w.stride,
                pad: w.pad,
            }
        } else {
            OpSpec::AvgPool2d {
                input,
                output,
                filter,
                stride: w.stride,
                pad: w.pad,
            }
        });
        Ok(())
    }

    /// MEAN over H and W of an NHWC tensor, as TFLite 2.21's reference kernel computes
    /// it for int8 with or without keep_dims (`reference_ops::QuantizedMeanOrSum`):
    /// `MultiplyByQuantizedMultiplier(sum(x - in_zp), m', s') + out_zp`, where `m', s'`
    /// fold `1 / (H*W)` into the multiplier of `in_scale / out_scale`.
    ///
    /// `edgekd-kernels`' GlobalAvgPool implements the older `reference_integer_ops::Mean`
    /// (requantize, then a rounded division by H*W), which differs by one step on some
    /// outputs. Until the kernel follows TFLite, the import expresses the mean exactly
    /// with existing kernels: a depthwise conv whose H x W window of ones sums
    /// `x - in_zp` per channel, with TFLite's folded multiplier given explicitly. The
    /// price is H*W*C bytes of ones in flash.
    fn mean(&mut self, op: &Op<'a>) -> OpResult<()> {
        let (it, at, ot) = (
            self.tensor(self.input(op, 0)?),
            self.tensor(self.input(op, 1)?),
            self.tensor(op.outputs[0]),
        );
        if it.shape.len() != 4 {
            return Err(format!(
                "MEAN of a rank-{} tensor (only 4-D NHWC)",
                it.shape.len()
            ));
        }
        if at.dtype != TensorType::INT32 {
            return Err(format!("axis tensor is {}", at.describe()));
        }
        let n: usize = dims(at)?.iter().product();
        let mut axes = Vec::new();
        for c in constant(at, n * 4)?.chunks_exact(4) {
            let a = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            if !(-4..4).contains(&a) {
                return Err(format!("axis {a} out of range for a 4-D input"));
            }
            axes.push(a.rem_euclid(4));
        }
        axes.sort_unstable();
        axes.dedup();
        if axes != [1, 2] {
            return Err(format!(
                "MEAN over axes {axes:?} (only over H and W, axes [1, 2])"
            ));
        }
        let [batch, h, w, c] = nhwc(it)?;
        let (in_scale, _) = per_tensor(it)?;
        let (out_scale, out_zp) = per_tensor(ot)?;
        let (m, s) = quantize_multiplier(f64::from(in_scale) / f64::from(out_scale));
        let requant = mean_multiplier(m, s, h * w);
        let input = self.read(op, 0)?;
        let output = self.write(op)?;
        let ones = self.b.weights(
            &[1, h, w, c],
            vec![1; h * w * c],
            QuantSpec::PerTensor {
                scale: 1.0,
                zero_point: 0,
            },
        );
        let four_d = dims(ot)? == [batch, 1, 1, c];
        let sums = if four_d {
            output
        } else {
            self.b
                .activation(&[batch, 1, 1, c], out_scale, out_zp as i32)
        };
        self.b.op_with_requant(
            OpSpec::DepthwiseConv2d {
                input,
                weights: ones,
                bias: None,
                output: sums,
                stride: [1, 1],
                dilation: [1, 1],
                pad: [0, 0],
                depth_multiplier: 1,
                activation: Activation::None,
            },
            vec![requant],
        );
        if !four_d {
            self.b.op(OpSpec::Reshape {
                input: sums,
                output,
            });
        }
        Ok(())
    }

    fn add(&mut self, op: &Op<'a>) -> OpResult<()> {
        let o = op
            .raw
            .builtin_options_as_add_options()
            .ok_or("missing AddOptions")?;
        let activation = activation(o.fused_activation_function())?;
        let (at, bt, ot) = (
            self.tensor(self.input(op, 0)?),
            self.tensor(self.input(op, 1)?),
            self.tensor(op.outputs[0]),
        );
        if at.shape != bt.shape || at.shape != ot.shape {
            return Err(format!(
                "broadcasting ADD ({} + {} -> {}) is not supported",
                at.describe(),
                bt.describe(),
                ot.describe()
            ));
        }
        let a = self.read(op, 0)?;
        let b = self.read(op, 1)?;
        let output = self.write(op)?;
        self.b.op(OpSpec::Add {
            a,
            b,
            output,
            activation,
        });
        Ok(())
    }

    /// RESHAPE, and EXPAND_DIMS / SQUEEZE, which are reshapes of the same bytes
    /// (Keras Conv1D converts to EXPAND_DIMS + CONV_2D + SQUEEZE or RESHAPE).
    fn reshape(&mut self, op: &Op<'a>) -> OpResult<()> {
        let (it, ot) = (self.tensor(self.input(op, 0)?), self.tensor(op.outputs[0]));
        if per_tensor(it)? != per_tensor(ot)? {
            return Err("input and output quantization differ".into());
        }
        let input = self.read(op, 0)?;
        let output = self.write(op)?;
        self.b.op(OpSpec::Reshape { input, output });
        Ok(())
    }

    fn softmax(&mut self, op: &Op<'a>) -> OpResult<()> {
        let beta = op
            .raw
            .builtin_options_as_softmax_options()
            .ok_or("missing SoftmaxOptions")?
            .beta();
        let ot = self.tensor(op.outputs[0]);
        if per_tensor(ot)? != (1.0 / 256.0, -128) {
            return Err(format!(
                "softmax output quantization {:?} (int8 softmax needs scale 1/256, zero point \
                 -128)",
                per_tensor(ot)?
            ));
        }
        let input = self.read(op, 0)?;
        let output = self.write(op)?;
        self.b.op(OpSpec::Softmax {
            input,
            output,
            beta,
        });
        Ok(())
    }
}

/// Strides, dilations and top/left padding of a conv or pooling window, checked
/// against the output shape TFLite itself computes.
struct Window {
    stride: [usize; 2],
    dilation: [usize; 2],
    pad: [usize; 2],
}

impl Window {
    fn new(
        padding: Padding,
        input: [usize; 2],
        filter: [usize; 2],
        stride: [i32; 2],
        dilation: [i32; 2],
        output: [usize; 2],
    ) -> OpResult<Self> {
        let mode = match padding {
            Padding::SAME => Mode::Same,
            Padding::VALID => Mode::Valid,
            p => return Err(format!("unknown padding mode {}", p.0)),
        };
        let mut pad = [0; 2];
        for axis in 0..2 {
            let (i, f, s, d, o) = (
                input[axis] as i64,
                filter[axis] as i64,
                i64::from(stride[axis]),
                i64::from(dilation[axis]),
                output[axis] as i64,
            );
            if out_size(mode, i, f, s, d) != Some(o) {
                return Err(format!(
                    "output size {o} does not match TFLite's for input {i}, window {f}, stride \
                     {s}, dilation {d}, {mode:?} padding"
                ));
            }
            pad[axis] = leading_pad(i, f, s, d, o) as usize;
        }
        Ok(Window {
            stride: stride.map(|s| s as usize),
            dilation: dilation.map(|d| d as usize),
            pad,
        })
    }
}

/// TFLite `QuantizedMeanOrSum` (reference/reduce.h): the multiplier `(m, s)` of
/// `in_scale / out_scale` readapted to include `1 / count`. The shift is capped so that
/// `m << shift` cannot overflow and the final shift stays >= -31, as TFLite caps it.
pub(crate) fn mean_multiplier(m: i32, s: i32, count: usize) -> (i32, i32) {
    let count = count.max(1) as u64;
    let shift = (63 - count.leading_zeros() as i32)
        .min(32)
        .min(31 + s)
        .max(0);
    let folded = (i64::from(m) << shift) / count as i64;
    (folded as i32, s - shift)
}

fn activation(f: ActivationFunctionType) -> OpResult<Activation> {
    match f {
        ActivationFunctionType::NONE => Ok(Activation::None),
        ActivationFunctionType::RELU => Ok(Activation::Relu),
        ActivationFunctionType::RELU6 => Ok(Activation::Relu6),
        other => Err(format!(
            "fused activation {} is not supported (NONE, RELU and RELU6 are)",
            act_name(other)
        )),
    }
}

fn act_name(f: ActivationFunctionType) -> String {
    f.variant_name()
        .map_or_else(|| format!("{}", f.0), str::to_string)
}

/// `(scale, zero_point)` of a per-tensor quantized tensor.
fn per_tensor(t: &Tensor<'_>) -> OpResult<(f32, i64)> {
    match (t.scales.as_slice(), t.zero_points.as_slice()) {
        ([s], [z]) if s.is_finite() && *s > 0.0 => Ok((*s, *z)),
        ([], _) => Err(format!(
            "tensor '{}' ({}) is not quantized",
            t.name,
            type_name(t.dtype)
        )),
        _ => Err(format!(
            "tensor '{}' needs one positive scale and zero point ({} scales, {} zero points)",
            t.name,
            t.scales.len(),
            t.zero_points.len()
        )),
    }
}

/// Static dimensions, rank 1..=4 (a scalar becomes `[1]`).
fn dims(t: &Tensor<'_>) -> OpResult<Vec<usize>> {
    if t.shape.len() > 4 {
        return Err(format!("tensor '{}' {} has rank > 4", t.name, t.describe()));
    }
    if t.shape.is_empty() {
        return Ok(vec![1]);
    }
    t.shape
        .iter()
        .map(|&d| match usize::try_from(d) {
            Ok(d) if (1..=u16::MAX as usize).contains(&d) => Ok(d),
            _ => Err(format!(
                "tensor '{}' {} has a dynamic, empty or too large dimension",
                t.name,
                t.describe()
            )),
        })
        .collect()
}

fn nhwc(t: &Tensor<'_>) -> OpResult<[usize; 4]> {
    match dims(t)?[..] {
        [n, h, w, c] => Ok([n, h, w, c]),
        _ => Err(format!("tensor '{}' {} is not 4-D", t.name, t.describe())),
    }
}

/// The constant bytes of `t`, which must be exactly `len` long.
fn constant<'a>(t: &Tensor<'a>, len: usize) -> OpResult<&'a [u8]> {
    match t.data {
        Some(d) if d.len() == len => Ok(d),
        Some(d) => Err(format!(
            "constant '{}' {} has {} bytes, expected {len}",
            t.name,
            t.describe(),
            d.len()
        )),
        None => Err(format!("tensor '{}' should be a constant", t.name)),
    }
}

#[cfg(test)]
mod tests {
    use super::mean_multiplier;

    #[test]
    fn mean_multiplier_folds_the_count_like_tflite() {
        // ds_cnn's MEAN: in/out scale ratio 2.0024 -> (1075001200, 2), 3x3 window:
        // shift = floor(log2 9) = 3, (m << 3) / 9 truncated.
        assert_eq!(mean_multiplier(1_075_001_200, 2, 9), (955_556_622, -1));
        // The shift is capped at 31 + s so the result stays a valid shift (>= -31).
        assert_eq!(mean_multiplier(1 << 30, -30, 1 << 20).1, -31);
        // Power-of-two counts divide exactly.
        assert_eq!(mean_multiplier(1 << 30, 0, 16), (1 << 30, -4));
        assert_eq!(mean_multiplier(1 << 30, 0, 1), (1 << 30, 0));
    }
}
