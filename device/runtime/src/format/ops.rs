//! Op records: the op code, its tensors, and its parameters decoded for the kernels.

use super::bytes::{i32_slice, Reader};
use super::tensor::{DType, Quant, Storage, Tensor};
use super::{Model, NO_TENSOR};
use crate::Error;
use edgekd_kernels::{
    AddParams, Clamp, ConvParams, FcParams, MeanParams, PoolParams, Requant, SoftmaxParams,
};

/// Bytes of the fixed part of an op record.
pub const OP_HEADER_LEN: usize = 8;

/// The operations the runtime implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpCode {
    /// Fully connected (dense) layer.
    FullyConnected,
    /// 2-D convolution, NHWC (1-D signals have H = 1).
    Conv2d,
    /// Depthwise 2-D convolution.
    DepthwiseConv2d,
    /// Max pooling.
    MaxPool2d,
    /// Average pooling.
    AvgPool2d,
    /// Mean over H and W (TFLite MEAN).
    GlobalAvgPool,
    /// Element-wise addition with requantization of both inputs.
    Add,
    /// Reshape / flatten: same bytes, new shape.
    Reshape,
    /// Softmax with int8 output (scale 1/256, zero point -128).
    Softmax,
}

impl OpCode {
    /// Code stored in the file.
    pub const fn code(self) -> u8 {
        match self {
            OpCode::FullyConnected => 1,
            OpCode::Conv2d => 2,
            OpCode::DepthwiseConv2d => 3,
            OpCode::MaxPool2d => 4,
            OpCode::AvgPool2d => 5,
            OpCode::GlobalAvgPool => 6,
            OpCode::Add => 7,
            OpCode::Reshape => 8,
            OpCode::Softmax => 9,
        }
    }

    /// The op code for a stored code.
    pub fn from_code(code: u8) -> Result<Self, Error> {
        Ok(match code {
            1 => OpCode::FullyConnected,
            2 => OpCode::Conv2d,
            3 => OpCode::DepthwiseConv2d,
            4 => OpCode::MaxPool2d,
            5 => OpCode::AvgPool2d,
            6 => OpCode::GlobalAvgPool,
            7 => OpCode::Add,
            8 => OpCode::Reshape,
            9 => OpCode::Softmax,
            c => return Err(Error::UnsupportedOp(c)),
        })
        .and_then(|op| {
            if op.compiled_in() {
                Ok(op)
            } else {
                Err(Error::UnsupportedOp(code))
            }
        })
    }

    /// Whether this build of the runtime includes the op (cargo features, narrowed by
    /// `EDGEKD_OPS` for firmware; see `build.rs`). Models using an op that is not
    /// compiled in fail to parse with [`Error::UnsupportedOp`].
    pub const fn compiled_in(self) -> bool {
        match self {
            OpCode::FullyConnected => cfg!(edgekd_op_fully_connected),
            OpCode::Conv2d => cfg!(edgekd_op_conv2d),
            OpCode::DepthwiseConv2d => cfg!(edgekd_op_depthwise_conv2d),
            OpCode::MaxPool2d => cfg!(edgekd_op_max_pool2d),
            OpCode::AvgPool2d => cfg!(edgekd_op_avg_pool2d),
            OpCode::GlobalAvgPool => cfg!(edgekd_op_global_avg_pool),
            OpCode::Add => cfg!(edgekd_op_add),
            OpCode::Reshape => true,
            OpCode::Softmax => cfg!(edgekd_op_softmax),
        }
    }

    /// The cargo feature (and `EDGEKD_OPS` entry) that compiles the op in; `reshape`
    /// is always in.
    pub const fn feature(self) -> &'static str {
        match self {
            OpCode::FullyConnected => "fully-connected",
            OpCode::Conv2d => "conv2d",
            OpCode::DepthwiseConv2d => "depthwise-conv2d",
            OpCode::MaxPool2d => "max-pool2d",
            OpCode::AvgPool2d => "avg-pool2d",
            OpCode::GlobalAvgPool => "global-avg-pool",
            OpCode::Add => "add",
            OpCode::Reshape => "reshape",
            OpCode::Softmax => "softmax",
        }
    }

    /// Human-readable name.
    pub const fn name(self) -> &'static str {
        match self {
            OpCode::FullyConnected => "FullyConnected",
            OpCode::Conv2d => "Conv2D",
            OpCode::DepthwiseConv2d => "DepthwiseConv2D",
            OpCode::MaxPool2d => "MaxPool2D",
            OpCode::AvgPool2d => "AvgPool2D",
            OpCode::GlobalAvgPool => "GlobalAvgPool",
            OpCode::Add => "Add",
            OpCode::Reshape => "Reshape",
            OpCode::Softmax => "Softmax",
        }
    }

    /// `(inputs, outputs)` every op of this kind has (optional inputs count).
    pub const fn arity(self) -> (usize, usize) {
        match self {
            OpCode::FullyConnected | OpCode::Conv2d | OpCode::DepthwiseConv2d => (3, 1),
            OpCode::Add => (2, 1),
            _ => (1, 1),
        }
    }

    /// Bytes of parameters this runtime reads (a newer minor version may append more).
    pub const fn params_len(self) -> usize {
        match self {
            OpCode::FullyConnected => 12,
            OpCode::Conv2d => 16,
            OpCode::DepthwiseConv2d => 20,
            OpCode::MaxPool2d | OpCode::AvgPool2d => 8,
            OpCode::GlobalAvgPool => 12,
            OpCode::Add => 28,
            OpCode::Reshape => 0,
            OpCode::Softmax => 12,
        }
    }
}

/// One op record.
#[derive(Debug, Clone, Copy)]
pub struct Op<'a> {
    /// What the op does.
    pub code: OpCode,
    indices: &'a [u8],
    n_inputs: usize,
    params: &'a [u8],
}

/// Kernel parameters of an op, decoded and checked against its tensors.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum OpParams<'a> {
    /// Fully connected.
    FullyConnected(FcParams, Requant<'a>),
    /// Convolution.
    Conv2d(ConvParams, Requant<'a>),
    /// Depthwise convolution.
    DepthwiseConv2d(ConvParams, Requant<'a>),
    /// Max pooling.
    MaxPool2d(PoolParams),
    /// Average pooling.
    AvgPool2d(PoolParams),
    /// Global average pooling.
    GlobalAvgPool(MeanParams),
    /// Addition.
    Add(AddParams),
    /// Reshape.
    Reshape,
    /// Softmax.
    Softmax(SoftmaxParams),
}

impl<'a> Op<'a> {
    /// Tensor index of input `i`, or `None` for an absent optional input.
    pub fn input(&self, i: usize) -> Option<usize> {
        if i >= self.n_inputs {
            return None;
        }
        match Reader::new(self.indices).u16(2 * i) {
            Ok(NO_TENSOR) | Err(_) => None,
            Ok(t) => Some(t as usize),
        }
    }

    /// Number of input slots (including absent optional ones).
    pub fn input_count(&self) -> usize {
        self.n_inputs
    }

    /// Tensor index of the (single) output.
    pub fn output(&self) -> usize {
        Reader::new(self.indices)
            .u16(2 * self.n_inputs)
            .map(usize::from)
            .unwrap_or(NO_TENSOR as usize)
    }

    fn tensor(&self, model: &Model<'a>, slot: usize) -> Result<Tensor<'a>, Error> {
        let index = self.input(slot).ok_or(Error::InvalidValue)?;
        model.tensor(index)
    }

    fn output_tensor(&self, model: &Model<'a>) -> Result<Tensor<'a>, Error> {
        model.tensor(self.output())
    }

    fn clamp(&self, at: usize) -> Result<Clamp, Error> {
        let r = Reader::new(self.params);
        let clamp = Clamp {
            min: r.i8(at)?,
            max: r.i8(at + 1)?,
        };
        if clamp.min > clamp.max {
            return Err(Error::InvalidValue);
        }
        Ok(clamp)
    }

    fn requant(
        &self,
        model: &Model<'a>,
        at: usize,
        channels: usize,
        check_values: bool,
    ) -> Result<Requant<'a>, Error> {
        let r = Reader::new(self.params);
        let offset = r.u32(at)? as usize;
        let count = r.u32(at + 4)? as usize;
        if count != 1 && count != channels {
            return Err(Error::ShapeMismatch);
        }
        let multiplier = i32_slice(model.data(), offset, count)?;
        let shift_offset = offset.checked_add(count * 4).ok_or(Error::OutOfBounds)?;
        let shift = i32_slice(model.data(), shift_offset, count)?;
        if check_values
            && (multiplier.iter().any(|m| *m < 0) || shift.iter().any(|s| !(-31..=30).contains(s)))
        {
            return Err(Error::InvalidValue);
        }
        Ok(Requant { multiplier, shift })
    }

    /// Decodes the op's kernel parameters, reading zero points from its tensors.
    pub fn params(&self, model: &Model<'a>) -> Result<OpParams<'a>, Error> {
        self.decode(model, false)
    }

    fn decode(&self, model: &Model<'a>, check_values: bool) -> Result<OpParams<'a>, Error> {
        let input = self.tensor(model, 0)?;
        let output = self.output_tensor(model)?;
        let other = match self.code {
            OpCode::FullyConnected | OpCode::Add => Some(self.tensor(model, 1)?),
            _ => None,
        };
        self.decode_with(model, &input, &output, other.as_ref(), check_values)
    }

    /// [`Op::params`] from the op's tensors, already decoded by the caller: `input`
    /// (slot 0), `output`, and `other` (slot 1: the weights or the second addend).
    pub(crate) fn params_with(
        &self,
        model: &Model<'a>,
        input: &Tensor<'a>,
        output: &Tensor<'a>,
        other: Option<&Tensor<'a>>,
    ) -> Result<OpParams<'a>, Error> {
        self.decode_with(model, input, output, other, false)
    }

    fn decode_with(
        &self,
        model: &Model<'a>,
        input: &Tensor<'a>,
        output: &Tensor<'a>,
        other: Option<&Tensor<'a>>,
        check_values: bool,
    ) -> Result<OpParams<'a>, Error> {
        if !self.code.compiled_in() {
            // Never reached (the parser refuses such ops), but it lets the compiler drop
            // the decoding of ops this build leaves out.
            return Err(Error::UnsupportedOp(self.code.code()));
        }
        let r = Reader::new(self.params);
        let in_zp = || input.scale_zero_point().map(|q| q.1);
        let out_zp = || output.scale_zero_point().map(|q| q.1);
        Ok(match self.code {
            #[cfg(edgekd_op_fully_connected)]
            OpCode::FullyConnected => {
                let weights = other.ok_or(Error::InvalidValue)?;
                let out_features = *weights.dims().first().ok_or(Error::ShapeMismatch)?;
                let p = FcParams {
                    input_zero_point: in_zp()?,
                    output_zero_point: out_zp()?,
                    clamp: self.clamp(0)?,
                };
                OpParams::FullyConnected(p, self.requant(model, 4, out_features, check_values)?)
            }
            #[cfg(any(edgekd_op_conv2d, edgekd_op_depthwise_conv2d))]
            OpCode::Conv2d | OpCode::DepthwiseConv2d => {
                let depthwise = self.code == OpCode::DepthwiseConv2d;
                let out_channels = output.shape().c;
                let p = ConvParams {
                    stride_h: r.u8(0)? as usize,
                    stride_w: r.u8(1)? as usize,
                    dilation_h: r.u8(2)? as usize,
                    dilation_w: r.u8(3)? as usize,
                    pad_top: r.u8(4)? as usize,
                    pad_left: r.u8(5)? as usize,
                    depth_multiplier: if depthwise { r.u8(16)? as usize } else { 1 },
                    input_zero_point: in_zp()?,
                    output_zero_point: out_zp()?,
                    clamp: self.clamp(6)?,
                };
                let rq = self.requant(model, 8, out_channels, check_values)?;
                if depthwise {
                    OpParams::DepthwiseConv2d(p, rq)
                } else {
                    OpParams::Conv2d(p, rq)
                }
            }
            #[cfg(any(edgekd_op_max_pool2d, edgekd_op_avg_pool2d))]
            OpCode::MaxPool2d | OpCode::AvgPool2d => {
                let p = PoolParams {
                    filter_h: r.u8(0)? as usize,
                    filter_w: r.u8(1)? as usize,
                    stride_h: r.u8(2)? as usize,
                    stride_w: r.u8(3)? as usize,
                    pad_top: r.u8(4)? as usize,
                    pad_left: r.u8(5)? as usize,
                    clamp: self.clamp(6)?,
                };
                if input.quant != output.quant {
                    return Err(Error::InvalidValue);
                }
                if self.code == OpCode::MaxPool2d {
                    OpParams::MaxPool2d(p)
                } else {
                    OpParams::AvgPool2d(p)
                }
            }
            #[cfg(edgekd_op_global_avg_pool)]
            OpCode::GlobalAvgPool => OpParams::GlobalAvgPool(MeanParams {
                input_zero_point: in_zp()?,
                output_zero_point: out_zp()?,
                multiplier: r.i32(4)?,
                shift: r.i32(8)?,
                clamp: self.clamp(0)?,
            }),
            #[cfg(edgekd_op_add)]
            OpCode::Add => {
                let other = other.ok_or(Error::InvalidValue)?;
                OpParams::Add(AddParams {
                    input1_zero_point: in_zp()?,
                    input2_zero_point: other.scale_zero_point()?.1,
                    output_zero_point: out_zp()?,
                    left_shift: r.u8(2)? as i32,
                    input1_multiplier: r.i32(4)?,
                    input1_shift: r.i32(8)?,
                    input2_multiplier: r.i32(12)?,
                    input2_shift: r.i32(16)?,
                    output_multiplier: r.i32(20)?,
                    output_shift: r.i32(24)?,
                    clamp: self.clamp(0)?,
                })
            }
            OpCode::Reshape => {
                if input.quant != output.quant {
                    return Err(Error::InvalidValue);
                }
                OpParams::Reshape
            }
            #[cfg(edgekd_op_softmax)]
            OpCode::Softmax => {
                let (scale, zp) = output.scale_zero_point()?;
                if scale != 1.0 / 256.0 || zp != -128 {
                    return Err(Error::InvalidValue);
                }
                OpParams::Softmax(SoftmaxParams {
                    input_multiplier: r.i32(0)?,
                    input_left_shift: r.i32(4)?,
                    diff_min: r.i32(8)?,
                })
            }
            // Compiled out: refused above (and by the parser).
            #[allow(unreachable_patterns)]
            _ => return Err(Error::UnsupportedOp(self.code.code())),
        })
    }

    /// Checks the op against its tensors: dtypes, storage, shapes, parameters and arena
    /// ranges (an op's output never overlaps its inputs, except a reshape in place).
    pub(super) fn validate(&self, model: &Model<'a>) -> Result<(), Error> {
        let output = self.output_tensor(model)?;
        expect(&output, DType::I8, Storage::Arena)?;
        let input = self.tensor(model, 0)?;
        expect(&input, DType::I8, Storage::Arena)?;
        if !matches!(input.quant, Quant::PerTensor { .. })
            || !matches!(output.quant, Quant::PerTensor { .. })
        {
            return Err(Error::InvalidValue);
        }
        for slot in 0..self.n_inputs {
            let Some(index) = self.input(slot) else {
                continue;
            };
            let t = model.tensor(index)?;
            if t.storage == Storage::Arena && overlaps(&t, &output) {
                let in_place = self.code == OpCode::Reshape && t.range() == output.range();
                if !in_place {
                    return Err(Error::OutOfBounds);
                }
            }
        }
        let params = self.decode(model, true)?;
        let (ins, outs) = (input.shape(), output.shape());
        match params {
            #[cfg(edgekd_op_fully_connected)]
            OpParams::FullyConnected(..) => {
                let weights = self.tensor(model, 1)?;
                expect(&weights, DType::I8, Storage::Constant)?;
                check_weight_quant(&weights, 0)?;
                let [out_f, in_f] = match weights.dims() {
                    [o, i] => [*o, *i],
                    _ => return Err(Error::ShapeMismatch),
                };
                if input.elements() % in_f != 0
                    || output.elements() != input.elements() / in_f * out_f
                {
                    return Err(Error::ShapeMismatch);
                }
                self.check_bias(model, out_f)?;
            }
            #[cfg(any(edgekd_op_conv2d, edgekd_op_depthwise_conv2d))]
            OpParams::Conv2d(p, _) | OpParams::DepthwiseConv2d(p, _) => {
                let weights = self.tensor(model, 1)?;
                expect(&weights, DType::I8, Storage::Constant)?;
                let w = weights.shape();
                if weights.dims().len() != 4 || ins.n != outs.n {
                    return Err(Error::ShapeMismatch);
                }
                if self.code == OpCode::Conv2d {
                    check_weight_quant(&weights, 0)?;
                    if w.n != outs.c || w.c != ins.c {
                        return Err(Error::ShapeMismatch);
                    }
                } else {
                    check_weight_quant(&weights, 3)?;
                    if w.n != 1
                        || w.c != outs.c
                        || ins.c.checked_mul(p.depth_multiplier) != Some(outs.c)
                    {
                        return Err(Error::ShapeMismatch);
                    }
                }
                check_window(ins.h, outs.h, w.h, p.stride_h, p.dilation_h, p.pad_top)?;
                check_window(ins.w, outs.w, w.w, p.stride_w, p.dilation_w, p.pad_left)?;
                self.check_bias(model, outs.c)?;
            }
            #[cfg(any(edgekd_op_max_pool2d, edgekd_op_avg_pool2d))]
            OpParams::MaxPool2d(p) | OpParams::AvgPool2d(p) => {
                if ins.n != outs.n || ins.c != outs.c {
                    return Err(Error::ShapeMismatch);
                }
                check_window(ins.h, outs.h, p.filter_h, p.stride_h, 1, p.pad_top)?;
                check_window(ins.w, outs.w, p.filter_w, p.stride_w, 1, p.pad_left)?;
            }
            #[cfg(edgekd_op_global_avg_pool)]
            OpParams::GlobalAvgPool(_) => {
                if output.elements() != ins.n * ins.c || outs.c != ins.c {
                    return Err(Error::ShapeMismatch);
                }
            }
            #[cfg(edgekd_op_add)]
            OpParams::Add(_) => {
                let other = self.tensor(model, 1)?;
                expect(&other, DType::I8, Storage::Arena)?;
                if other.elements() != input.elements() || output.elements() != input.elements() {
                    return Err(Error::ShapeMismatch);
                }
            }
            OpParams::Reshape | OpParams::Softmax(_) => {
                if output.elements() != input.elements() {
                    return Err(Error::ShapeMismatch);
                }
            }
            #[allow(unreachable_patterns)]
            _ => return Err(Error::UnsupportedOp(self.code.code())),
        }
        Ok(())
    }

    fn check_bias(&self, model: &Model<'a>, channels: usize) -> Result<(), Error> {
        if let Some(index) = self.input(2) {
            let bias = model.tensor(index)?;
            expect(&bias, DType::I32, Storage::Constant)?;
            if bias.elements() != channels {
                return Err(Error::ShapeMismatch);
            }
        }
        Ok(())
    }

    /// Whether this op runs its kernel's slow fallback on some build (a convolution
    /// column over 256 entries, a requantization the DSP kernels' single-step form does
    /// not take, a fully connected layer over 256 inputs; see
    /// `edgekd_kernels::conv2d_needs_fallback`). Firmware for a model where no op does
    /// is built with `EDGEKD_FALLBACK=0`, which leaves the fallbacks out (code size).
    pub fn needs_fallback(&self, model: &Model<'a>) -> Result<bool, Error> {
        Ok(match self.params(model)? {
            #[cfg(edgekd_op_conv2d)]
            OpParams::Conv2d(p, rq) => {
                let w = self.tensor(model, 1)?.shape();
                edgekd_kernels::conv2d_needs_fallback(w.h * w.w * w.c, rq, p.output_zero_point)
            }
            #[cfg(edgekd_op_fully_connected)]
            OpParams::FullyConnected(..) => {
                let in_features = *self.tensor(model, 1)?.dims().get(1).unwrap_or(&0);
                edgekd_kernels::fully_connected_needs_fallback(in_features)
            }
            _ => false,
        })
    }

    /// Entries of the kernels' column buffer this op needs to run its fast path
    /// (`edgekd_kernels::conv2d_scratch_columns`; 0 for ops that use none). Firmware
    /// sizes the buffer to the largest over its model's ops (`EDGEKD_MAX_COLS`).
    ///
    /// Errors: as [`Op::needs_fallback`].
    pub fn scratch_columns(&self, model: &Model<'a>) -> Result<usize, Error> {
        Ok(match self.code {
            #[cfg(edgekd_op_conv2d)]
            OpCode::Conv2d => {
                let w = self.tensor(model, 1)?.shape();
                edgekd_kernels::conv2d_scratch_columns(w.h * w.w * w.c)
            }
            #[cfg(edgekd_op_fully_connected)]
            OpCode::FullyConnected => {
                let in_features = *self.tensor(model, 1)?.dims().get(1).unwrap_or(&0);
                edgekd_kernels::fully_connected_scratch_columns(in_features)
            }
            _ => 0,
        })
    }

    /// Whether DSP builds read a widened filter for this op if given one
    /// (`Interpreter::set_wide_weights`): a fully connected layer on its fast path, a
    /// conv layer on its paired-pixel path (`edgekd_kernels::ConvLayer::reads_wide_weights`).
    /// Firmware generates tables only for these.
    ///
    /// Errors: the op's own (bad tensors or parameters), as [`Op::needs_fallback`].
    pub fn reads_wide_weights(&self, model: &Model<'a>) -> Result<bool, Error> {
        Ok(self.wide_weights(model)?.is_some())
    }

    /// Whether DSP builds with the fast kernels prepare this op's channels in the
    /// kernels' RAM channel table: depthwise ops, and conv ops without a prepared table
    /// ([`Op::wide_weights`] gives none). Firmware whose model has no such op is built
    /// without the table (`EDGEKD_CHANNEL_TABLE=0`, 320 bytes less RAM).
    ///
    /// Errors: as [`Op::reads_wide_weights`].
    pub fn needs_channel_table(&self, model: &Model<'a>) -> Result<bool, Error> {
        Ok(match self.code {
            OpCode::DepthwiseConv2d => true,
            OpCode::Conv2d => self.wide_weights(model)?.is_none(),
            _ => false,
        })
    }

    /// Whether DSP builds with the fast kernels run this op on the fully connected
    /// kernel's plain rows, which widen the filter as they go: a fully connected layer
    /// on the fast kernel (not the fallback, [`Op::needs_fallback`]) without a prepared
    /// table ([`Op::reads_wide_weights`]: a channel outside the single-step
    /// requantization). Firmware whose model has no such op is built without them
    /// (`EDGEKD_FC_PLAIN=0`).
    ///
    /// Errors: as [`Op::reads_wide_weights`].
    pub fn needs_fc_plain(&self, model: &Model<'a>) -> Result<bool, Error> {
        Ok(self.code == OpCode::FullyConnected
            && !self.needs_fallback(model)?
            && !self.reads_wide_weights(model)?)
    }

    /// Whether DSP builds with the fast kernels run this op on the conv kernel's general
    /// im2col loop: a conv layer that does not run on the dense path
    /// (`edgekd_kernels::ConvLayer::runs_dense`, which takes its prepared table).
    /// Firmware whose model has no such op is built without the loop
    /// (`EDGEKD_CONV_GENERAL=0`, the kernels' largest piece of code).
    ///
    /// Errors: as [`Op::reads_wide_weights`].
    pub fn needs_conv_general(&self, model: &Model<'a>) -> Result<bool, Error> {
        if self.code != OpCode::Conv2d {
            return Ok(false);
        }
        #[cfg(edgekd_op_conv2d)]
        return Ok(!self
            .conv_layer(model)?
            .is_some_and(|layer| layer.runs_dense()));
        #[cfg(not(edgekd_op_conv2d))]
        {
            let _ = model;
            Ok(true)
        }
    }

    /// This op's conv layer as the interpreter builds it, or `None` for another op or
    /// a layer its kernel's checks refuse.
    #[cfg(edgekd_op_conv2d)]
    fn conv_layer(
        &self,
        model: &Model<'a>,
    ) -> Result<Option<edgekd_kernels::ConvLayer<'a>>, Error> {
        let OpParams::Conv2d(p, rq) = self.params(model)? else {
            return Ok(None);
        };
        let filter = self.tensor(model, 1)?;
        let bias = match self.input(2) {
            Some(t) => Some(model.tensor(t)?.const_i32()?),
            None => None,
        };
        let (ins, outs) = (
            self.tensor(model, 0)?.shape(),
            self.output_tensor(model)?.shape(),
        );
        Ok(edgekd_kernels::ConvLayer::new(
            &p,
            rq,
            ins,
            filter.shape(),
            filter.const_i8()?,
            bias,
            outs,
        )
        .ok())
    }

    /// The widened table DSP builds read for this op (`edgekd_kernels::fc_wide_weights`
    /// or `conv2d_wide_weights`, what `Interpreter::set_wide_weights` takes), or `None`
    /// if they read none ([`Op::reads_wide_weights`]). Firmware build scripts write it.
    ///
    /// Errors: as [`Op::reads_wide_weights`].
    pub fn wide_weights(
        &self,
        model: &Model<'a>,
    ) -> Result<Option<impl Iterator<Item = i16> + 'a>, Error> {
        #[cfg(edgekd_op_add)]
        let add = match self.params(model)? {
            OpParams::Add(p) => edgekd_kernels::add_tables(&p),
            _ => None,
        };
        #[cfg(not(edgekd_op_add))]
        let add = None::<core::iter::Empty<i16>>;
        if add.is_some() {
            return Ok(Some(Tables::Add(add.into_iter().flatten())));
        }
        let (params, filter) = match self.code {
            OpCode::Conv2d | OpCode::FullyConnected => {
                (self.params(model)?, self.tensor(model, 1)?)
            }
            _ => return Ok(None),
        };
        let bias = match self.input(2) {
            Some(t) => Some(model.tensor(t)?.const_i32()?),
            None => None,
        };
        let (input, output) = (self.tensor(model, 0)?, self.output_tensor(model)?);
        // Built as the interpreter builds them (a layer its checks refuse reads none);
        // one iterator type for both ops: at most one of the two is `Some`.
        #[cfg(edgekd_op_fully_connected)]
        let fc = match (&params, filter.dims()) {
            (OpParams::FullyConnected(p, rq), &[out_f, in_f]) => {
                let (n_in, n_out) = (input.range().len(), output.range().len());
                edgekd_kernels::FcLayer::new(
                    p,
                    *rq,
                    in_f,
                    filter.const_i8()?,
                    bias,
                    out_f,
                    n_in,
                    n_out,
                )
                .ok()
                .filter(|layer| layer.reads_wide_weights())
                .map(|layer| layer.wide_weights())
            }
            _ => None,
        };
        #[cfg(not(edgekd_op_fully_connected))]
        let fc = None::<core::iter::Empty<i16>>;
        #[cfg(edgekd_op_conv2d)]
        let conv = self
            .conv_layer(model)?
            .filter(|layer| layer.reads_wide_weights())
            .map(|layer| layer.wide_weights());
        #[cfg(not(edgekd_op_conv2d))]
        let conv = None::<core::iter::Empty<i16>>;
        // Builds with neither op compile the arguments for nothing.
        let _ = (&params, &bias, &input, &output, &filter);
        Ok(match (fc, conv) {
            (None, None) => None,
            (fc, conv) => Some(Tables::Layer(
                fc.into_iter().flatten().chain(conv.into_iter().flatten()),
            )),
        })
    }

    /// Multiply-accumulates of one run of this op (0 for ops without MACs).
    pub fn macs(&self, model: &Model<'a>) -> Result<u64, Error> {
        let out = self.output_tensor(model)?;
        let per_output = match self.code {
            OpCode::FullyConnected => *self.tensor(model, 1)?.dims().get(1).unwrap_or(&0),
            OpCode::Conv2d => {
                let w = self.tensor(model, 1)?.shape();
                w.h * w.w * w.c
            }
            OpCode::DepthwiseConv2d => {
                let w = self.tensor(model, 1)?.shape();
                w.h * w.w
            }
            _ => 0,
        };
        Ok(out.elements() as u64 * per_output as u64)
    }
}

fn expect(t: &Tensor<'_>, dtype: DType, storage: Storage) -> Result<(), Error> {
    if t.dtype != dtype || t.storage != storage {
        return Err(Error::WrongDType);
    }
    Ok(())
}

fn overlaps(a: &Tensor<'_>, b: &Tensor<'_>) -> bool {
    let (a, b) = (a.range(), b.range());
    a.start < b.end && b.start < a.end
}

/// Weights are symmetric: per-channel along `axis`, or per-tensor with zero point 0.
fn check_weight_quant(w: &Tensor<'_>, axis: usize) -> Result<(), Error> {
    match w.quant {
        Quant::PerChannel { axis: a, .. } if a == axis => Ok(()),
        Quant::PerTensor { zero_point: 0, .. } => Ok(()),
        _ => Err(Error::InvalidValue),
    }
}

/// Checks that an output extent fits an input extent, a window and a stride: every
/// window starts inside the padded input and the top/left padding is smaller than the
/// window, so bottom/right padding is what the output shape implies.
fn check_window(
    input: usize,
    output: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
) -> Result<(), Error> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(Error::UnsupportedParams);
    }
    let effective = (kernel - 1) * dilation + 1;
    if pad >= effective {
        return Err(Error::UnsupportedParams);
    }
    let last_start = (output - 1) * stride;
    // The last window must start inside input + top padding.
    if last_start >= input + pad {
        return Err(Error::ShapeMismatch);
    }
    // The output must be as large as valid windows allow (no skipped windows).
    if input + pad >= effective && (input + pad - effective) / stride + 1 > output {
        return Err(Error::ShapeMismatch);
    }
    Ok(())
}

/// Iterator over the op records of a model.
#[derive(Debug, Clone)]
pub struct OpIter<'a> {
    bytes: &'a [u8],
    at: usize,
    remaining: usize,
}

impl<'a> OpIter<'a> {
    pub(super) fn new(section: &'a [u8], count: usize) -> Self {
        OpIter {
            bytes: section,
            at: 4,
            remaining: count,
        }
    }

    fn read(&mut self) -> Result<Op<'a>, Error> {
        let r = Reader::new(self.bytes);
        let code = OpCode::from_code(r.u8(self.at)?)?;
        let n_inputs = r.u8(self.at + 1)? as usize;
        let n_outputs = r.u8(self.at + 2)? as usize;
        let record_len = r.u16(self.at + 4)? as usize;
        let params_at = r.u16(self.at + 6)? as usize;
        let (want_in, want_out) = code.arity();
        if n_inputs != want_in || n_outputs != want_out || record_len % 4 != 0 {
            return Err(Error::InvalidValue);
        }
        let record = r.slice(self.at, record_len)?;
        let index_bytes = 2 * (n_inputs + n_outputs);
        if params_at < OP_HEADER_LEN + index_bytes || params_at > record_len {
            return Err(Error::InvalidValue);
        }
        let params = &record[params_at..];
        if params.len() < code.params_len() {
            return Err(Error::Truncated);
        }
        self.at += record_len;
        Ok(Op {
            code,
            indices: &record[OP_HEADER_LEN..OP_HEADER_LEN + index_bytes],
            n_inputs,
            params,
        })
    }
}

impl<'a> Iterator for OpIter<'a> {
    type Item = Result<Op<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let item = self.read();
        // After a malformed record nothing later can be located: stop there.
        self.remaining = if item.is_ok() { self.remaining - 1 } else { 0 };
        Some(item)
    }
}

/// The iterator [`Op::wide_weights`] returns: an Add op's tables or a layer's.
enum Tables<A, L> {
    Add(A),
    Layer(L),
}

impl<A: Iterator<Item = i16>, L: Iterator<Item = i16>> Iterator for Tables<A, L> {
    type Item = i16;

    fn next(&mut self) -> Option<i16> {
        match self {
            Tables::Add(a) => a.next(),
            Tables::Layer(l) => l.next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::OpCode;

    /// The default build has every op; each op's feature name is a feature of this
    /// crate (the name `EDGEKD_OPS` and `edgekd bench` use).
    #[test]
    fn default_build_has_every_op_and_feature_names_match_the_manifest() {
        let manifest = include_str!("../../Cargo.toml");
        for code in 1..=9u8 {
            let op = OpCode::from_code(code).unwrap();
            assert_eq!(op.code(), code);
            assert!(op.compiled_in(), "{}", op.name());
            let f = op.feature();
            if f != "reshape" {
                assert!(
                    manifest
                        .lines()
                        .any(|l| l.strip_prefix(f).is_some_and(|r| r.starts_with(" = ["))),
                    "{f} is not a feature of edgekd-runtime"
                );
            }
        }
        assert!(OpCode::from_code(10).is_err());
    }
}
