//! A model decoded for its kernels: the op table an [`Executor`](crate::Executor) runs.
//!
//! A [`Program`] is built on the device from a parsed [`Model`] ([`Program::decode`],
//! what the [`Interpreter`](crate::Interpreter) does), or ahead of time: a build script
//! decodes the model on the host and writes Rust that rebuilds the same table from
//! [`OpParts`] literals (`codegen::program_source`, with the `std` feature), so firmware links
//! neither the format parser nor the op decoder (TFLite Micro's code generator does the
//! same for its interpreter). Either way [`Step::new`] checks every conv and fully
//! connected layer with its kernel's constructor, every other op's kernel checks its
//! operands when it runs, and the executor checks every arena range: a `Program` built
//! from any values can fail, but cannot make a kernel read or write out of bounds.

use crate::format::{Model, Op, OpCode, OpParams};
use crate::Error;
use core::ops::Range;
use edgekd_kernels as k;
use edgekd_kernels::Shape;

/// A slice of the arena.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: usize,
    len: usize,
}

impl Span {
    pub(crate) fn of(range: Range<usize>) -> Self {
        Span {
            start: range.start,
            len: range.len(),
        }
    }

    pub(crate) fn range(self) -> Range<usize> {
        self.start..self.start + self.len
    }
}

/// Everything one op's kernel is built from, as the format stores it: what
/// [`Step::new`] checks and `codegen::program_source` (with the `std` feature) writes out.
#[derive(Debug, Clone)]
pub struct OpParts<'m> {
    /// The op and its parameters (zero points, clamps, strides, requantization).
    pub params: OpParams<'m>,
    /// Arena bytes of the (first) input.
    pub input: Range<usize>,
    /// Arena bytes of Add's second input (`None` for every other op).
    pub input2: Option<Range<usize>>,
    /// Arena bytes of the output.
    pub output: Range<usize>,
    /// The input's shape, NHWC.
    pub input_shape: Shape,
    /// The output's shape, NHWC.
    pub output_shape: Shape,
    /// Filter of fully connected, conv and depthwise layers (empty for other ops).
    pub weights: &'m [i8],
    /// The filter's shape, NHWC (a fully connected filter `[out, in]` is `1x1xoutxin`).
    pub weight_shape: Shape,
    /// Bias of fully connected, conv and depthwise layers, when they have one.
    pub bias: Option<&'m [i32]>,
}

impl<'m> OpParts<'m> {
    /// Reads op `op` of `model`: its tensors' places, shapes and constants and its
    /// parameters, checked against the format's rules.
    ///
    /// Errors: the format's ([`Error::BadTensorIndex`], [`Error::WrongDType`],
    /// [`Error::InvalidValue`] for a missing operand, [`Error::ShapeMismatch`],
    /// [`Error::UnsupportedParams`], ...).
    // Out of line: inlined, its tensor records would share the frame that also holds
    // the interpreter under construction, raising the firmware's stack high-water mark.
    #[inline(never)]
    pub fn decode(model: &Model<'m>, op: &Op<'m>) -> Result<Self, Error> {
        let out_t = model.tensor(op.output())?;
        let in_t = model.tensor(op.input(0).ok_or(Error::InvalidValue)?)?;
        let other = match op.input(1) {
            Some(t) => Some(model.tensor(t)?),
            None => None,
        };
        let bias = match op.input(2) {
            Some(t) => Some(model.tensor(t)?.const_i32()?),
            None => None,
        };
        let params = op.params_with(model, &in_t, &out_t, other.as_ref())?;
        let (mut weights, mut weight_shape, mut input2) = (&[][..], Shape::default(), None);
        match (&params, other) {
            (OpParams::Add(_), Some(t)) => input2 = Some(t.range()),
            (OpParams::FullyConnected(..), Some(w)) if w.dims().len() != 2 => {
                return Err(Error::ShapeMismatch)
            }
            (
                OpParams::FullyConnected(..) | OpParams::Conv2d(..) | OpParams::DepthwiseConv2d(..),
                Some(w),
            ) => {
                weights = w.const_i8()?;
                weight_shape = w.shape();
            }
            (
                OpParams::Add(_)
                | OpParams::FullyConnected(..)
                | OpParams::Conv2d(..)
                | OpParams::DepthwiseConv2d(..),
                None,
            ) => return Err(Error::InvalidValue),
            _ => {}
        }
        Ok(OpParts {
            params,
            input: in_t.range(),
            input2,
            output: out_t.range(),
            input_shape: in_t.shape(),
            output_shape: out_t.shape(),
            weights,
            weight_shape,
            bias,
        })
    }

    /// The op these parts belong to.
    pub fn code(&self) -> OpCode {
        match self.params {
            OpParams::FullyConnected(..) => OpCode::FullyConnected,
            OpParams::Conv2d(..) => OpCode::Conv2d,
            OpParams::DepthwiseConv2d(..) => OpCode::DepthwiseConv2d,
            OpParams::MaxPool2d(_) => OpCode::MaxPool2d,
            OpParams::AvgPool2d(_) => OpCode::AvgPool2d,
            OpParams::GlobalAvgPool(_) => OpCode::GlobalAvgPool,
            OpParams::Add(_) => OpCode::Add,
            OpParams::Reshape => OpCode::Reshape,
            OpParams::Softmax(_) => OpCode::Softmax,
        }
    }
}

/// One op decoded for its kernel.
#[derive(Debug, Clone, Copy)]
pub struct Step<'m> {
    pub(crate) code: OpCode,
    pub(crate) input: Span,
    /// The second operand of Add.
    pub(crate) input2: Option<Span>,
    pub(crate) output: Span,
    pub(crate) kernel: Kernel<'m>,
}

/// What an op's kernel needs besides the arena.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kernel<'m> {
    /// A fully connected layer, checked once here rather than on every call.
    #[cfg(edgekd_op_fully_connected)]
    FullyConnected(k::FcLayer<'m>),
    /// A convolution, checked once here rather than on every call.
    #[cfg(edgekd_op_conv2d)]
    Conv2d(k::ConvLayer<'m>),
    /// Any other op: its kernel checks parameters and shapes when called.
    Other(Operands<'m>),
}

/// Parameters, shapes and constant operands of an op whose kernel checks them itself.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operands<'m> {
    pub(crate) params: OpParams<'m>,
    pub(crate) in_shape: Shape,
    pub(crate) out_shape: Shape,
    /// Depthwise conv filters (empty for other ops).
    pub(crate) weights: &'m [i8],
    pub(crate) weight_shape: Shape,
    pub(crate) bias: Option<&'m [i32]>,
    /// An Add op's prepared table (`Program::set_wide_weights`; only builds with Add
    /// pay for the field).
    #[cfg(edgekd_op_add)]
    pub(crate) table: Option<&'m [i16]>,
}

impl<'m> Step<'m> {
    /// Builds an op's kernel call, checking conv and fully connected layers once here
    /// (their kernels then only compare the activation lengths on every call).
    ///
    /// Errors: [`Error::ShapeMismatch`] or [`Error::UnsupportedParams`] from the
    /// layer's kernel; [`Error::UnsupportedOp`] for an op this build compiled out.
    // One copy whoever calls it (the decoder, a generated program's loop), and counted
    // as the runtime's code rather than inlined into a firmware's function.
    #[inline(never)]
    pub fn new(parts: OpParts<'m>) -> Result<Self, Error> {
        let code = parts.code();
        // As the parser refuses them: a program built ahead of time was never parsed here.
        if !code.compiled_in() {
            return Err(Error::UnsupportedOp(code.code()));
        }
        let (input, output) = (
            Span::of(parts.input.clone()),
            Span::of(parts.output.clone()),
        );
        let input2 = parts.input2.clone().map(Span::of);
        let (filter, ws, bias) = (parts.weights, parts.weight_shape, parts.bias);
        // The checked layers return their own `Step`: building the `Kernel` in one match
        // and the `Step` once reads shorter but costs 250 B of firmware code at
        // opt-level 3 and 82 B at "z" (measured on the mlp).
        match &parts.params {
            #[cfg(edgekd_op_fully_connected)]
            OpParams::FullyConnected(p, rq) => {
                if ws.n != 1 || ws.h != 1 {
                    return Err(Error::ShapeMismatch);
                }
                let (in_f, out_f) = (ws.c, ws.w);
                let layer =
                    k::FcLayer::new(p, *rq, in_f, filter, bias, out_f, input.len, output.len)?;
                return Ok(Step {
                    code,
                    input,
                    input2,
                    output,
                    kernel: Kernel::FullyConnected(layer),
                });
            }
            #[cfg(edgekd_op_conv2d)]
            OpParams::Conv2d(p, rq) => {
                let (ins, outs) = (parts.input_shape, parts.output_shape);
                let layer = k::ConvLayer::new(p, *rq, ins, ws, filter, bias, outs)?;
                return Ok(Step {
                    code,
                    input,
                    input2,
                    output,
                    kernel: Kernel::Conv2d(layer),
                });
            }
            _ => {}
        }
        Ok(Step {
            code,
            input,
            input2,
            output,
            kernel: Kernel::Other(Operands {
                params: parts.params,
                in_shape: parts.input_shape,
                out_shape: parts.output_shape,
                weights: filter,
                weight_shape: ws,
                bias,
                #[cfg(edgekd_op_add)]
                table: None,
            }),
        })
    }

    /// The op.
    pub fn code(&self) -> OpCode {
        self.code
    }
}

/// A model decoded into kernel calls: its ops' [`Step`]s (up to `MAX_OPS`), the arena
/// size they need and where input 0 and output 0 live. What an
/// [`Executor`](crate::Executor) runs.
#[derive(Debug, Clone)]
pub struct Program<'m, const MAX_OPS: usize> {
    pub(crate) steps: heapless::Vec<Step<'m>, MAX_OPS>,
    pub(crate) arena_size: usize,
    pub(crate) input0: Option<Span>,
    pub(crate) output0: Option<Span>,
}

impl<'m, const MAX_OPS: usize> Program<'m, MAX_OPS> {
    /// An empty program over an arena of `arena_size` bytes whose input 0 and output 0
    /// take the arena bytes `input` and `output` ([`Program::push`] adds the ops).
    pub fn new(arena_size: usize, input: Range<usize>, output: Range<usize>) -> Self {
        Program {
            steps: heapless::Vec::new(),
            arena_size,
            input0: Some(Span::of(input)),
            output0: Some(Span::of(output)),
        }
    }

    /// Decodes every op of `model` (tensor records, parameters, requantization slices,
    /// arena places) once, as TFLite Micro's `Prepare` does.
    ///
    /// Errors: the ops' ([`OpParts::decode`], [`Step::new`]);
    /// [`Error::CapacityExceeded`] if the model has more than `MAX_OPS` ops.
    // Inlined, the program is built in the caller's frame instead of being moved there
    // from this one (-0.7 KB of the firmware's stack high-water mark).
    #[inline(always)]
    pub fn decode(model: &Model<'m>) -> Result<Self, Error> {
        let mut steps = heapless::Vec::new();
        for op in model.ops() {
            let step = Step::new(OpParts::decode(model, &op?)?)?;
            steps.push(step).map_err(|_| Error::CapacityExceeded)?;
        }
        Ok(Program {
            steps,
            arena_size: model.arena_size(),
            input0: model.input(0).ok().map(|t| Span::of(t.range())),
            output0: model.output(0).ok().map(|t| Span::of(t.range())),
        })
    }

    /// Appends an op.
    ///
    /// Errors: [`Error::CapacityExceeded`] past `MAX_OPS` ops.
    pub fn push(&mut self, step: Step<'m>) -> Result<(), Error> {
        self.steps.push(step).map_err(|_| Error::CapacityExceeded)
    }

    /// The ops, in running order.
    pub fn steps(&self) -> &[Step<'m>] {
        &self.steps
    }

    /// Bytes of arena the ops need.
    pub fn arena_size(&self) -> usize {
        self.arena_size
    }

    /// Gives fully connected, conv or Add op `index` its prepared table
    /// ([`crate::format::Op::wide_weights`]: `fc_wide_weights`', `conv2d_wide_weights`' or
    /// `add_tables`' layout; 4-byte aligned, e.g. a `static` a firmware build script
    /// wrote), which the DSP kernels read instead of widening each weight and preparing
    /// each channel's requantization (conv, fully connected) or rescaling each input
    /// (Add). Only builds with [`crate::FC_USES_WIDE_WEIGHTS`] read it; every build
    /// checks it against the op entry by entry first.
    ///
    /// Errors: [`Error::BadIndex`] if there is no op `index`; [`Error::InvalidValue`] if
    /// it is none of those; [`Error::ShapeMismatch`] if `wide` is not the op's table or
    /// not 4-byte aligned; [`Error::UnsupportedParams`] for an op that reads none
    /// ([`crate::format::Op::reads_wide_weights`]).
    // Out of line for the reason `Step::new` is.
    #[inline(never)]
    pub fn set_wide_weights(&mut self, index: usize, wide: &'m [i16]) -> Result<(), Error> {
        let step = self.steps.get_mut(index).ok_or(Error::BadIndex)?;
        match &mut step.kernel {
            #[cfg(edgekd_op_fully_connected)]
            Kernel::FullyConnected(layer) => {
                *layer = layer.with_wide_weights(wide)?;
                Ok(())
            }
            #[cfg(edgekd_op_conv2d)]
            Kernel::Conv2d(layer) => {
                *layer = layer.with_wide_weights(wide)?;
                Ok(())
            }
            #[cfg(edgekd_op_add)]
            Kernel::Other(Operands {
                params: OpParams::Add(p),
                table,
                ..
            }) => {
                k::check_add_table(p, wide)?;
                *table = Some(wide);
                Ok(())
            }
            _ => Err(Error::InvalidValue),
        }
    }
}
