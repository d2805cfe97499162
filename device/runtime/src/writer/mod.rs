//! Builds `.ekd` files (needs `std`): tensors and ops in, a validated file out.
//!
//! The builder takes float-level descriptions (scales, activations, strides) and derives
//! everything the device needs precomputed: Q31 requantization multipliers and shifts
//! per channel, activation clamps, softmax and add parameters, and the static memory
//! plan. [`ModelBuilder::finish`] parses its own output before returning it, so a
//! builder never hands out a file the runtime would refuse.

mod plan;

pub use edgekd_kernels::quant::Activation;
pub use plan::{plan_arena, ArenaPlan, Buffer};

use crate::format::{self, section, DType, NO_TENSOR, SECTION_REQUIRED};
use crate::{Error, Model};
use byteorder::{LittleEndian as LE, WriteBytesExt};
use edgekd_kernels::quant::{
    activation_clamp, add_params, mean_params, quantize_multiplier, softmax_params,
};
use edgekd_kernels::Clamp;
use std::collections::BTreeMap;
use std::fmt;
use std::string::String;
use std::vec::Vec;

/// Handle of a tensor inside a [`ModelBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(pub u16);

/// Quantization of a tensor being written.
#[derive(Debug, Clone, PartialEq)]
pub enum QuantSpec {
    /// Plain integers.
    None,
    /// One scale and zero point.
    PerTensor {
        /// Scale.
        scale: f32,
        /// Zero point.
        zero_point: i32,
    },
    /// Symmetric, one scale per slice along `axis`.
    PerChannel {
        /// Scales.
        scales: Vec<f32>,
        /// Channel axis.
        axis: usize,
    },
}

#[derive(Debug, Clone)]
enum TensorData {
    Arena,
    I8(Vec<i8>),
    I32(Vec<i32>),
}

#[derive(Debug, Clone)]
struct TensorSpec {
    dims: Vec<usize>,
    quant: QuantSpec,
    data: TensorData,
}

impl TensorSpec {
    fn dtype(&self) -> DType {
        match self.data {
            TensorData::I32(_) => DType::I32,
            _ => DType::I8,
        }
    }

    fn elements(&self) -> usize {
        self.dims.iter().product()
    }
}

/// An op, described at the float level.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OpSpec {
    /// `output = act(input · weightsᵀ + bias)`, weights `[out, in]`.
    FullyConnected {
        /// Input `[batch, in]` (any shape with `in` innermost).
        input: TensorId,
        /// Weights `[out, in]`.
        weights: TensorId,
        /// Bias `[out]`, int32.
        bias: Option<TensorId>,
        /// Output `[batch, out]`.
        output: TensorId,
        /// Fused activation.
        activation: Activation,
    },
    /// NHWC convolution, weights `[out, kh, kw, in]`.
    Conv2d {
        /// Input.
        input: TensorId,
        /// Weights.
        weights: TensorId,
        /// Bias.
        bias: Option<TensorId>,
        /// Output.
        output: TensorId,
        /// `[h, w]` strides.
        stride: [usize; 2],
        /// `[h, w]` dilations.
        dilation: [usize; 2],
        /// `[top, left]` padding.
        pad: [usize; 2],
        /// Fused activation.
        activation: Activation,
    },
    /// Depthwise convolution, weights `[1, kh, kw, in * depth_multiplier]`.
    DepthwiseConv2d {
        /// Input.
        input: TensorId,
        /// Weights.
        weights: TensorId,
        /// Bias.
        bias: Option<TensorId>,
        /// Output.
        output: TensorId,
        /// `[h, w]` strides.
        stride: [usize; 2],
        /// `[h, w]` dilations.
        dilation: [usize; 2],
        /// `[top, left]` padding.
        pad: [usize; 2],
        /// Output channels per input channel.
        depth_multiplier: usize,
        /// Fused activation.
        activation: Activation,
    },
    /// Max pooling (input and output share quantization).
    MaxPool2d {
        /// Input.
        input: TensorId,
        /// Output.
        output: TensorId,
        /// `[h, w]` window.
        filter: [usize; 2],
        /// `[h, w]` strides.
        stride: [usize; 2],
        /// `[top, left]` padding.
        pad: [usize; 2],
    },
    /// Average pooling (input and output share quantization).
    AvgPool2d {
        /// Input.
        input: TensorId,
        /// Output.
        output: TensorId,
        /// `[h, w]` window.
        filter: [usize; 2],
        /// `[h, w]` strides.
        stride: [usize; 2],
        /// `[top, left]` padding.
        pad: [usize; 2],
    },
    /// Mean over H and W.
    GlobalAvgPool {
        /// Input.
        input: TensorId,
        /// Output `[n, 1, 1, c]` or `[n, c]`.
        output: TensorId,
    },
    /// Element-wise sum.
    Add {
        /// First input.
        a: TensorId,
        /// Second input (same element count).
        b: TensorId,
        /// Output.
        output: TensorId,
        /// Fused activation.
        activation: Activation,
    },
    /// Same bytes, new shape; planned in place.
    Reshape {
        /// Input.
        input: TensorId,
        /// Output.
        output: TensorId,
    },
    /// Softmax over the last axis; the output must be quantized (1/256, -128).
    Softmax {
        /// Input.
        input: TensorId,
        /// Output.
        output: TensorId,
        /// Inverse temperature (1.0 for a plain softmax).
        beta: f32,
    },
}

impl OpSpec {
    fn inputs(&self) -> [Option<TensorId>; 3] {
        match *self {
            OpSpec::FullyConnected {
                input,
                weights,
                bias,
                ..
            }
            | OpSpec::Conv2d {
                input,
                weights,
                bias,
                ..
            }
            | OpSpec::DepthwiseConv2d {
                input,
                weights,
                bias,
                ..
            } => [Some(input), Some(weights), bias],
            OpSpec::Add { a, b, .. } => [Some(a), Some(b), None],
            OpSpec::MaxPool2d { input, .. }
            | OpSpec::AvgPool2d { input, .. }
            | OpSpec::GlobalAvgPool { input, .. }
            | OpSpec::Reshape { input, .. }
            | OpSpec::Softmax { input, .. } => [Some(input), None, None],
        }
    }

    fn output(&self) -> TensorId {
        match *self {
            OpSpec::FullyConnected { output, .. }
            | OpSpec::Conv2d { output, .. }
            | OpSpec::DepthwiseConv2d { output, .. }
            | OpSpec::MaxPool2d { output, .. }
            | OpSpec::AvgPool2d { output, .. }
            | OpSpec::GlobalAvgPool { output, .. }
            | OpSpec::Add { output, .. }
            | OpSpec::Reshape { output, .. }
            | OpSpec::Softmax { output, .. } => output,
        }
    }
}

/// Why a model could not be written.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum WriteError {
    /// The description is inconsistent (message says how).
    Invalid(String),
    /// The written file failed the runtime's own validation.
    Rejected(Error),
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::Invalid(m) => write!(f, "cannot write model: {m}"),
            WriteError::Rejected(e) => write!(f, "written model fails validation: {e}"),
        }
    }
}

impl std::error::Error for WriteError {}

fn invalid<T>(msg: impl Into<String>) -> Result<T, WriteError> {
    Err(WriteError::Invalid(msg.into()))
}

/// Builds an `.ekd` model.
#[derive(Debug, Clone, Default)]
pub struct ModelBuilder {
    name: String,
    input_name: String,
    output_name: String,
    labels: Vec<String>,
    preprocess: Vec<(f32, f32)>,
    tensors: Vec<TensorSpec>,
    ops: Vec<OpSpec>,
    inputs: Vec<TensorId>,
    outputs: Vec<TensorId>,
    /// Op index -> explicit `(multiplier, shift)` pairs, see [`ModelBuilder::op_with_requant`].
    requant_overrides: BTreeMap<usize, Vec<(i32, i32)>>,
}

impl ModelBuilder {
    /// A new, empty model called `name`.
    pub fn new(name: &str) -> Self {
        ModelBuilder {
            name: name.into(),
            input_name: "input".into(),
            output_name: "output".into(),
            ..Default::default()
        }
    }

    fn push(&mut self, spec: TensorSpec) -> TensorId {
        self.tensors.push(spec);
        TensorId((self.tensors.len() - 1) as u16)
    }

    /// An int8 activation tensor (lives in the arena).
    pub fn activation(&mut self, dims: &[usize], scale: f32, zero_point: i32) -> TensorId {
        self.push(TensorSpec {
            dims: dims.to_vec(),
            quant: QuantSpec::PerTensor { scale, zero_point },
            data: TensorData::Arena,
        })
    }

    /// Constant int8 weights.
    pub fn weights(&mut self, dims: &[usize], data: Vec<i8>, quant: QuantSpec) -> TensorId {
        self.push(TensorSpec {
            dims: dims.to_vec(),
            quant,
            data: TensorData::I8(data),
        })
    }

    /// Constant int32 bias. Its scale is implied (`input_scale * weight_scale[c]`, zero
    /// point 0), so it is normally stored with [`QuantSpec::None`].
    pub fn bias(&mut self, data: Vec<i32>, quant: QuantSpec) -> TensorId {
        self.push(TensorSpec {
            dims: vec![data.len()],
            quant,
            data: TensorData::I32(data),
        })
    }

    /// Appends an op (ops run in the order they are added).
    pub fn op(&mut self, op: OpSpec) -> &mut Self {
        self.ops.push(op);
        self
    }

    /// Appends a `FullyConnected`, `Conv2d` or `DepthwiseConv2d` op whose requantization
    /// `(multiplier, shift)` pairs (one, or one per output channel) are given instead of
    /// derived from the tensor scales.
    ///
    /// For importers that must reproduce another toolchain's derivation bit for bit:
    /// TFLite, for one, rounds `input_scale * weight_scale` to `f32` before dividing in
    /// `f64` for per-tensor fully connected layers, where [`Self::op`] multiplies in
    /// `f64`. [`Self::finish`] checks the op kind, and the runtime's own validation the
    /// count and ranges.
    pub fn op_with_requant(&mut self, op: OpSpec, requant: Vec<(i32, i32)>) -> &mut Self {
        self.requant_overrides.insert(self.ops.len(), requant);
        self.ops.push(op);
        self
    }

    /// Declares the model inputs.
    pub fn inputs(&mut self, ids: &[TensorId]) -> &mut Self {
        self.inputs = ids.to_vec();
        self
    }

    /// Declares the model outputs.
    pub fn outputs(&mut self, ids: &[TensorId]) -> &mut Self {
        self.outputs = ids.to_vec();
        self
    }

    /// Names of the first input and output.
    pub fn io_names(&mut self, input: &str, output: &str) -> &mut Self {
        self.input_name = input.into();
        self.output_name = output.into();
        self
    }

    /// Class labels, in output order.
    pub fn labels<S: AsRef<str>>(&mut self, labels: &[S]) -> &mut Self {
        self.labels = labels.iter().map(|s| s.as_ref().to_string()).collect();
        self
    }

    /// Input preprocessing, `(offset, scale)` pairs: one for the whole input or one per
    /// channel. The model sees `(raw - offset) * scale`.
    pub fn preprocess(&mut self, pairs: &[(f32, f32)]) -> &mut Self {
        self.preprocess = pairs.to_vec();
        self
    }

    fn spec(&self, id: TensorId) -> Result<&TensorSpec, WriteError> {
        match self.tensors.get(id.0 as usize) {
            Some(s) => Ok(s),
            None => invalid(format!("tensor {} does not exist", id.0)),
        }
    }

    fn scale_zp(&self, id: TensorId) -> Result<(f32, i32), WriteError> {
        match self.spec(id)?.quant {
            QuantSpec::PerTensor { scale, zero_point } => Ok((scale, zero_point)),
            _ => invalid(format!("tensor {} needs per-tensor quantization", id.0)),
        }
    }

    fn clamp(&self, output: TensorId, act: Activation) -> Result<Clamp, WriteError> {
        let (scale, zp) = self.scale_zp(output)?;
        Ok(activation_clamp(act, scale, zp))
    }

    /// Q31 multipliers and shifts for `in_scale * w_scale[c] / out_scale`.
    fn requant(
        &self,
        input: TensorId,
        weights: TensorId,
        output: TensorId,
    ) -> Result<(Vec<i32>, Vec<i32>), WriteError> {
        let (in_scale, _) = self.scale_zp(input)?;
        let (out_scale, _) = self.scale_zp(output)?;
        let w_scales: Vec<f32> = match &self.spec(weights)?.quant {
            QuantSpec::PerTensor {
                scale,
                zero_point: 0,
            } => vec![*scale],
            QuantSpec::PerChannel { scales, .. } => scales.clone(),
            _ => {
                return invalid(format!(
                    "weights {} must be symmetric (zero point 0)",
                    weights.0
                ))
            }
        };
        Ok(w_scales
            .iter()
            .map(|&ws| quantize_multiplier(in_scale as f64 * ws as f64 / out_scale as f64))
            .unzip())
    }

    /// Plans the arena, derives all integer parameters and serializes the model.
    /// The result is 16-byte-aligned-safe to parse after [`crate::writer::AlignedBytes`].
    pub fn finish(&self) -> Result<Vec<u8>, WriteError> {
        self.check()?;
        let plan = self.plan()?;
        let mut data = Vec::new();
        let mut records = Vec::new();
        for (i, t) in self.tensors.iter().enumerate() {
            let offset = match &t.data {
                TensorData::Arena => plan.offsets[i],
                TensorData::I8(v) => {
                    pad_to(&mut data, format::ALIGN);
                    let at = data.len();
                    data.extend(v.iter().map(|&x| x as u8));
                    at
                }
                TensorData::I32(v) => {
                    pad_to(&mut data, format::ALIGN);
                    let at = data.len();
                    for &x in v {
                        data.write_i32::<LE>(x).expect("vec write");
                    }
                    at
                }
            };
            let quant_word = match &t.quant {
                QuantSpec::PerChannel { scales, .. } => {
                    pad_to(&mut data, 4);
                    let at = data.len() as u32;
                    for &s in scales {
                        data.write_f32::<LE>(s).expect("vec write");
                    }
                    at
                }
                QuantSpec::PerTensor { scale, .. } => scale.to_bits(),
                QuantSpec::None => 0,
            };
            write_tensor_record(&mut records, t, offset, quant_word)?;
        }
        let mut ops = Vec::new();
        ops.write_u32::<LE>(self.ops.len() as u32)
            .expect("vec write");
        for (index, op) in self.ops.iter().enumerate() {
            self.write_op(&mut ops, &mut data, index, op)?;
        }
        let mut graph = Vec::new();
        graph
            .write_u32::<LE>(plan.arena_size as u32)
            .expect("vec write");
        graph.push(self.inputs.len() as u8);
        graph.push(self.outputs.len() as u8);
        graph.write_u16::<LE>(0).expect("vec write");
        for id in self.inputs.iter().chain(&self.outputs) {
            graph.write_u16::<LE>(id.0).expect("vec write");
        }
        let meta = self.meta()?;
        let sections: [(u16, u16, &[u8]); 5] = [
            (section::GRAPH, SECTION_REQUIRED, &graph),
            (section::TENSORS, SECTION_REQUIRED, &records),
            (section::OPS, SECTION_REQUIRED, &ops),
            (section::META, 0, &meta),
            (section::DATA, SECTION_REQUIRED, &data),
        ];
        let file = assemble(&sections);
        let aligned = AlignedBytes::copy_from(&file);
        Model::parse(aligned.as_bytes()).map_err(WriteError::Rejected)?;
        Ok(file)
    }

    fn check(&self) -> Result<(), WriteError> {
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return invalid("a model needs at least one input and one output");
        }
        if self.inputs.len() > format::MAX_IO || self.outputs.len() > format::MAX_IO {
            return invalid(format!("at most {} inputs and outputs", format::MAX_IO));
        }
        if self.tensors.len() >= NO_TENSOR as usize {
            return invalid("too many tensors");
        }
        for (i, t) in self.tensors.iter().enumerate() {
            if t.dims.is_empty() || t.dims.len() > format::MAX_RANK {
                return invalid(format!("tensor {i}: rank must be 1..=4"));
            }
            if t.dims.iter().any(|&d| d == 0 || d > u16::MAX as usize) {
                return invalid(format!("tensor {i}: dimensions must be 1..=65535"));
            }
            let n = match &t.data {
                TensorData::Arena => t.elements(),
                TensorData::I8(v) => v.len(),
                TensorData::I32(v) => v.len(),
            };
            if n != t.elements() {
                return invalid(format!("tensor {i}: {n} values for shape {:?}", t.dims));
            }
            if let QuantSpec::PerChannel { scales, axis } = &t.quant {
                if *axis >= t.dims.len() || scales.len() != t.dims[*axis] {
                    return invalid(format!(
                        "tensor {i}: per-channel scales do not match axis {axis}"
                    ));
                }
            }
        }
        for id in self.inputs.iter().chain(&self.outputs) {
            self.spec(*id)?;
        }
        for (&index, pairs) in &self.requant_overrides {
            let requantized = matches!(
                self.ops[index],
                OpSpec::FullyConnected { .. }
                    | OpSpec::Conv2d { .. }
                    | OpSpec::DepthwiseConv2d { .. }
            );
            if !requantized || pairs.is_empty() {
                return invalid(format!(
                    "op {index}: explicit requantization needs a fully connected or conv op \
                     and at least one multiplier"
                ));
            }
        }
        Ok(())
    }

    fn plan(&self) -> Result<ArenaPlan, WriteError> {
        let arena: Vec<bool> = self
            .tensors
            .iter()
            .map(|t| matches!(t.data, TensorData::Arena))
            .collect();
        let sizes: Vec<usize> = self
            .tensors
            .iter()
            .map(|t| t.elements() * t.dtype().size())
            .collect();
        let ops: Vec<(Vec<usize>, usize, bool)> = self
            .ops
            .iter()
            .map(|op| {
                let ins = op.inputs().iter().flatten().map(|t| t.0 as usize).collect();
                (
                    ins,
                    op.output().0 as usize,
                    matches!(op, OpSpec::Reshape { .. }),
                )
            })
            .collect();
        let inputs: Vec<usize> = self.inputs.iter().map(|t| t.0 as usize).collect();
        let outputs: Vec<usize> = self.outputs.iter().map(|t| t.0 as usize).collect();
        plan_arena(&sizes, &arena, &ops, &inputs, &outputs).map_err(WriteError::Invalid)
    }

    fn write_op(
        &self,
        out: &mut Vec<u8>,
        data: &mut Vec<u8>,
        index: usize,
        op: &OpSpec,
    ) -> Result<(), WriteError> {
        let op_requant = |input, weights, output| match self.requant_overrides.get(&index) {
            Some(pairs) => Ok(pairs.iter().copied().unzip()),
            None => self.requant(input, weights, output),
        };
        let code = match op {
            OpSpec::FullyConnected { .. } => format::OpCode::FullyConnected,
            OpSpec::Conv2d { .. } => format::OpCode::Conv2d,
            OpSpec::DepthwiseConv2d { .. } => format::OpCode::DepthwiseConv2d,
            OpSpec::MaxPool2d { .. } => format::OpCode::MaxPool2d,
            OpSpec::AvgPool2d { .. } => format::OpCode::AvgPool2d,
            OpSpec::GlobalAvgPool { .. } => format::OpCode::GlobalAvgPool,
            OpSpec::Add { .. } => format::OpCode::Add,
            OpSpec::Reshape { .. } => format::OpCode::Reshape,
            OpSpec::Softmax { .. } => format::OpCode::Softmax,
        };
        let (n_in, _) = code.arity();
        let mut params = Vec::new();
        let requant = |data: &mut Vec<u8>, params: &mut Vec<u8>, (m, s): (Vec<i32>, Vec<i32>)| {
            pad_to(data, 4);
            params
                .write_u32::<LE>(data.len() as u32)
                .expect("vec write");
            params.write_u32::<LE>(m.len() as u32).expect("vec write");
            for v in m.iter().chain(&s) {
                data.write_i32::<LE>(*v).expect("vec write");
            }
        };
        match *op {
            OpSpec::FullyConnected {
                input,
                weights,
                output,
                activation,
                ..
            } => {
                let c = self.clamp(output, activation)?;
                params.extend([c.min as u8, c.max as u8, 0, 0]);
                requant(data, &mut params, op_requant(input, weights, output)?);
            }
            OpSpec::Conv2d {
                input,
                weights,
                output,
                stride,
                dilation,
                pad,
                activation,
                ..
            }
            | OpSpec::DepthwiseConv2d {
                input,
                weights,
                output,
                stride,
                dilation,
                pad,
                activation,
                ..
            } => {
                let c = self.clamp(output, activation)?;
                params.extend([
                    byte(stride[0], "stride")?,
                    byte(stride[1], "stride")?,
                    byte(dilation[0], "dilation")?,
                    byte(dilation[1], "dilation")?,
                    byte(pad[0], "padding")?,
                    byte(pad[1], "padding")?,
                    c.min as u8,
                    c.max as u8,
                ]);
                requant(data, &mut params, op_requant(input, weights, output)?);
                if let OpSpec::DepthwiseConv2d {
                    depth_multiplier, ..
                } = *op
                {
                    params.extend([byte(depth_multiplier, "depth multiplier")?, 0, 0, 0]);
                }
            }
            OpSpec::MaxPool2d {
                input,
                output,
                filter,
                stride,
                pad,
            }
            | OpSpec::AvgPool2d {
                input,
                output,
                filter,
                stride,
                pad,
            } => {
                if self.spec(input)?.quant != self.spec(output)?.quant {
                    return invalid("pooling input and output must share quantization");
                }
                params.extend([
                    byte(filter[0], "pool size")?,
                    byte(filter[1], "pool size")?,
                    byte(stride[0], "stride")?,
                    byte(stride[1], "stride")?,
                    byte(pad[0], "padding")?,
                    byte(pad[1], "padding")?,
                    i8::MIN as u8,
                    i8::MAX as u8,
                ]);
            }
            OpSpec::GlobalAvgPool { input, output } => {
                let (is, iz) = self.scale_zp(input)?;
                let (os, oz) = self.scale_zp(output)?;
                let p = mean_params(is, iz, os, oz, Clamp::NONE);
                params.extend([p.clamp.min as u8, p.clamp.max as u8, 0, 0]);
                params.write_i32::<LE>(p.multiplier).expect("vec write");
                params.write_i32::<LE>(p.shift).expect("vec write");
            }
            OpSpec::Add {
                a,
                b,
                output,
                activation,
            } => {
                let (s1, z1) = self.scale_zp(a)?;
                let (s2, z2) = self.scale_zp(b)?;
                let (so, zo) = self.scale_zp(output)?;
                let p = add_params(s1, z1, s2, z2, so, zo, self.clamp(output, activation)?);
                params.extend([p.clamp.min as u8, p.clamp.max as u8, p.left_shift as u8, 0]);
                for v in [
                    p.input1_multiplier,
                    p.input1_shift,
                    p.input2_multiplier,
                    p.input2_shift,
                    p.output_multiplier,
                    p.output_shift,
                ] {
                    params.write_i32::<LE>(v).expect("vec write");
                }
            }
            OpSpec::Reshape { .. } => {}
            OpSpec::Softmax { input, beta, .. } => {
                let (scale, _) = self.scale_zp(input)?;
                let p = softmax_params(scale, beta);
                for v in [p.input_multiplier, p.input_left_shift, p.diff_min] {
                    params.write_i32::<LE>(v).expect("vec write");
                }
            }
        }
        let ins = op.inputs();
        let index_bytes = 2 * (n_in + 1);
        let params_at = format::OP_HEADER_LEN + round_up(index_bytes, 4);
        let record_len = params_at + round_up(params.len(), 4);
        let record_len = u16::try_from(record_len).or_else(|_| invalid("op record too long"))?;
        let mut rec = Vec::with_capacity(record_len as usize);
        rec.extend([code.code(), n_in as u8, 1, 0]);
        rec.write_u16::<LE>(record_len).expect("vec write");
        rec.write_u16::<LE>(params_at as u16).expect("vec write");
        for slot in ins.iter().take(n_in) {
            rec.write_u16::<LE>(slot.map_or(NO_TENSOR, |t| t.0))
                .expect("vec write");
        }
        rec.write_u16::<LE>(op.output().0).expect("vec write");
        rec.resize(params_at, 0);
        rec.extend(&params);
        rec.resize(record_len as usize, 0);
        out.extend(rec);
        Ok(())
    }

    fn meta(&self) -> Result<Vec<u8>, WriteError> {
        let mut m = Vec::new();
        for s in [&self.name, &self.input_name, &self.output_name] {
            write_str(&mut m, s)?;
        }
        m.write_u16::<LE>(self.labels.len() as u16)
            .expect("vec write");
        for l in &self.labels {
            write_str(&mut m, l)?;
        }
        m.write_u16::<LE>(self.preprocess.len() as u16)
            .expect("vec write");
        for &(offset, scale) in &self.preprocess {
            if !offset.is_finite() || !scale.is_finite() {
                return invalid("preprocessing offset/scale must be finite");
            }
            m.write_f32::<LE>(offset).expect("vec write");
            m.write_f32::<LE>(scale).expect("vec write");
        }
        Ok(m)
    }
}

fn byte(v: usize, what: &str) -> Result<u8, WriteError> {
    u8::try_from(v).or_else(|_| invalid(format!("{what} {v} does not fit the format (max 255)")))
}

fn write_str(out: &mut Vec<u8>, s: &str) -> Result<(), WriteError> {
    let len = u16::try_from(s.len()).or_else(|_| invalid("string longer than 65535 bytes"))?;
    out.write_u16::<LE>(len).expect("vec write");
    out.extend(s.as_bytes());
    Ok(())
}

fn write_tensor_record(
    out: &mut Vec<u8>,
    t: &TensorSpec,
    offset: usize,
    quant_word: u32,
) -> Result<(), WriteError> {
    out.push(t.dtype().code());
    out.push(t.dims.len() as u8);
    out.push(if matches!(t.data, TensorData::Arena) {
        0
    } else {
        1
    });
    let (kind, zp, axis) = match t.quant {
        QuantSpec::None => (0u8, 0, 0),
        QuantSpec::PerTensor { zero_point, .. } => (1, zero_point, 0),
        QuantSpec::PerChannel { axis, .. } => (2, 0, axis as u8),
    };
    out.push(kind);
    for i in 0..format::MAX_RANK {
        out.write_u16::<LE>(t.dims.get(i).copied().unwrap_or(1) as u16)
            .expect("vec write");
    }
    let offset = u32::try_from(offset).or_else(|_| invalid("tensor offset exceeds 4 GiB"))?;
    out.write_u32::<LE>(offset).expect("vec write");
    out.write_u32::<LE>((t.elements() * t.dtype().size()) as u32)
        .expect("vec write");
    out.write_u32::<LE>(quant_word).expect("vec write");
    out.write_i32::<LE>(zp).expect("vec write");
    out.extend([axis, 0, 0, 0]);
    Ok(())
}

/// Lays out header, section table and sections (each 16-byte aligned), then the CRC.
fn assemble(sections: &[(u16, u16, &[u8])]) -> Vec<u8> {
    let table_end = format::HEADER_LEN + sections.len() * format::SECTION_ENTRY_LEN;
    let mut offsets = Vec::new();
    let mut at = round_up(table_end, format::ALIGN);
    for (_, _, body) in sections {
        offsets.push(at);
        at = round_up(at + body.len(), format::ALIGN);
    }
    let file_len = offsets
        .last()
        .map_or(at, |o| o + sections.last().map_or(0, |s| s.2.len()));
    let mut f = Vec::with_capacity(file_len);
    f.extend(format::MAGIC);
    f.write_u16::<LE>(format::VERSION_MAJOR).expect("vec write");
    f.write_u16::<LE>(format::VERSION_MINOR).expect("vec write");
    f.write_u32::<LE>(file_len as u32).expect("vec write");
    f.write_u32::<LE>(0).expect("vec write"); // CRC, filled below
    f.write_u16::<LE>(sections.len() as u16).expect("vec write");
    f.write_u16::<LE>(format::HEADER_LEN as u16)
        .expect("vec write");
    f.resize(format::HEADER_LEN, 0);
    for ((kind, flags, body), offset) in sections.iter().zip(&offsets) {
        f.write_u16::<LE>(*kind).expect("vec write");
        f.write_u16::<LE>(*flags).expect("vec write");
        f.write_u32::<LE>(*offset as u32).expect("vec write");
        f.write_u32::<LE>(body.len() as u32).expect("vec write");
    }
    for ((_, _, body), offset) in sections.iter().zip(&offsets) {
        f.resize(*offset, 0);
        f.extend(*body);
    }
    let crc = format::checksum(&f[16..]);
    f[12..16].copy_from_slice(&crc.to_le_bytes());
    f
}

fn round_up(x: usize, align: usize) -> usize {
    x.div_ceil(align) * align
}

fn pad_to(v: &mut Vec<u8>, align: usize) {
    v.resize(round_up(v.len(), align), 0);
}

/// A byte buffer whose start is 16-byte aligned, as [`Model::parse`] requires.
#[derive(Debug, Clone, Default)]
pub struct AlignedBytes {
    words: Vec<u128>,
    len: usize,
}

impl AlignedBytes {
    /// Copies `bytes` into an aligned buffer.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut words = vec![0u128; bytes.len().div_ceil(16)];
        bytemuck::cast_slice_mut::<u128, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            len: bytes.len(),
        }
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<u128, u8>(&self.words)[..self.len]
    }
}
