//! Runs a parsed model over a caller-provided arena.

use crate::format::{Model, Op, OpCode, OpParams};
use crate::Error;
use core::ops::Range;
use edgekd_kernels as k;
use edgekd_kernels::Shape;

/// Static figures of one op, for per-op reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpStats {
    /// The op.
    pub op: OpCode,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Bytes the op writes.
    pub output_bytes: usize,
}

/// Hooks called around every op, e.g. to read a cycle counter.
pub trait Profiler {
    /// Called just before op `index` runs.
    fn begin(&mut self, index: usize, op: OpCode);
    /// Called just after op `index` ran.
    fn end(&mut self, index: usize, op: OpCode);
    /// Called after [`Profiler::end`] with the op's int8 output, for tools that compare
    /// every intermediate tensor (per-layer SQNR, debugging), when
    /// [`Profiler::wants_outputs`] says so.
    fn observe(&mut self, _index: usize, _output: &[i8]) {}
    /// Whether [`Profiler::observe`] should be called (false by default, which keeps
    /// the per-op cost of profiling to the two hooks).
    fn wants_outputs(&self) -> bool {
        false
    }
}

/// A [`Profiler`] that does nothing.
struct NoProfiler;

impl Profiler for NoProfiler {
    fn begin(&mut self, _: usize, _: OpCode) {}
    fn end(&mut self, _: usize, _: OpCode) {}
}

/// Ops an [`Interpreter`] made with [`Interpreter::new`] can hold: 128 with the `std`
/// feature (host tools, any model), 16 on bare metal, where each slot costs RAM;
/// firmware sizes the table to its model with [`Interpreter::with_max_ops`].
#[cfg(feature = "std")]
pub const DEFAULT_MAX_OPS: usize = 128;
/// Ops an [`Interpreter`] made with [`Interpreter::new`] can hold: 128 with the `std`
/// feature (host tools, any model), 16 on bare metal, where each slot costs RAM;
/// firmware sizes the table to its model with [`Interpreter::with_max_ops`].
#[cfg(not(feature = "std"))]
pub const DEFAULT_MAX_OPS: usize = 16;

/// An interpreter: a model plus the arena its activations live in.
///
/// The interpreter never allocates; the arena must hold at least
/// [`Model::arena_size`] bytes. Every op is decoded once, when the interpreter is made
/// (tensor records, parameters, requantization slices, arena places), into a table of
/// up to `MAX_OPS` steps, so [`Interpreter::invoke`] only runs kernels (TFLite Micro's
/// `Prepare` does the same).
pub struct Interpreter<'m, 'a, const MAX_OPS: usize = DEFAULT_MAX_OPS> {
    model: Model<'m>,
    arena: &'a mut [i8],
    invocations: u32,
    /// Working memory of the conv / fully connected kernels, zeroed once here rather
    /// than for every layer of every inference.
    scratch: k::Scratch,
    steps: heapless::Vec<Step<'m>, MAX_OPS>,
    /// Arena places of input 0 and output 0, decoded once (a firmware loop reads them
    /// every inference); other inputs and outputs are decoded when asked for.
    input0: Option<Span>,
    output0: Option<Span>,
}

/// A slice of the arena.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

impl Span {
    fn of(range: Range<usize>) -> Self {
        Span {
            start: range.start,
            len: range.len(),
        }
    }

    fn range(self) -> Range<usize> {
        self.start..self.start + self.len
    }
}

/// One op decoded for its kernel.
#[derive(Debug, Clone, Copy)]
struct Step<'m> {
    code: OpCode,
    input: Span,
    /// The second operand of Add.
    input2: Option<Span>,
    output: Span,
    kernel: Kernel<'m>,
}

/// What an op's kernel needs besides the arena.
#[derive(Debug, Clone, Copy)]
enum Kernel<'m> {
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
struct Operands<'m> {
    params: OpParams<'m>,
    in_shape: Shape,
    out_shape: Shape,
    /// Depthwise conv filters (empty for other ops).
    weights: &'m [i8],
    weight_shape: Shape,
    bias: Option<&'m [i32]>,
    /// An Add op's prepared table (`Interpreter::set_wide_weights`; only builds with
    /// Add pay for the field).
    #[cfg(edgekd_op_add)]
    table: Option<&'m [i16]>,
}

impl<'m> Step<'m> {
    // Out of line: inlined, its tensor records would share the frame that also holds
    // the interpreter under construction, raising the firmware's stack high-water mark.
    #[inline(never)]
    fn decode(model: &Model<'m>, op: &Op<'m>) -> Result<Self, Error> {
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
        let (input, output) = (Span::of(in_t.range()), Span::of(out_t.range()));
        let (mut weights, mut weight_shape, mut input2) = (&[][..], Shape::default(), None);
        // The checked layers return their own `Step`: building the `Kernel` in one match
        // and the `Step` once reads shorter but costs 250 B of firmware code at
        // opt-level 3 and 82 B at "z" (measured on the mlp, which then passes 8,000 B).
        match (&params, other) {
            (OpParams::Add(_), Some(t)) => input2 = Some(Span::of(t.range())),
            #[cfg(edgekd_op_fully_connected)]
            (OpParams::FullyConnected(p, rq), Some(w)) => {
                let [out_f, in_f] = match w.dims() {
                    [o, i] => [*o, *i],
                    _ => return Err(Error::ShapeMismatch),
                };
                let (filter, (n_in, n_out)) = (w.const_i8()?, (input.len, output.len));
                let layer = k::FcLayer::new(p, *rq, in_f, filter, bias, out_f, n_in, n_out)
                    .map_err(kernel_error)?;
                return Ok(Step {
                    code: op.code,
                    input,
                    input2,
                    output,
                    kernel: Kernel::FullyConnected(layer),
                });
            }
            #[cfg(edgekd_op_conv2d)]
            (OpParams::Conv2d(p, rq), Some(w)) => {
                let (ins, outs) = (in_t.shape(), out_t.shape());
                let layer = k::ConvLayer::new(p, *rq, ins, w.shape(), w.const_i8()?, bias, outs)
                    .map_err(kernel_error)?;
                return Ok(Step {
                    code: op.code,
                    input,
                    input2,
                    output,
                    kernel: Kernel::Conv2d(layer),
                });
            }
            (OpParams::DepthwiseConv2d(..), Some(w)) => {
                weights = w.const_i8()?;
                weight_shape = w.shape();
            }
            (
                OpParams::Add(_)
                | OpParams::FullyConnected(..)
                | OpParams::Conv2d(..)
                | OpParams::DepthwiseConv2d(..),
                _,
            ) => return Err(Error::InvalidValue),
            _ => {}
        }
        Ok(Step {
            code: op.code,
            input,
            input2,
            output,
            kernel: Kernel::Other(Operands {
                params,
                in_shape: in_t.shape(),
                out_shape: out_t.shape(),
                weights,
                weight_shape,
                bias,
                #[cfg(edgekd_op_add)]
                table: None,
            }),
        })
    }
}

impl<'m, 'a> Interpreter<'m, 'a> {
    /// Binds a model to an arena, with room for [`DEFAULT_MAX_OPS`] ops.
    ///
    /// Errors: [`Error::ArenaTooSmall`]; [`Error::CapacityExceeded`] for a model with
    /// more ops (use [`Interpreter::with_max_ops`]).
    pub fn new(model: Model<'m>, arena: &'a mut [u8]) -> Result<Self, Error> {
        Self::with_max_ops(model, arena)
    }
}

impl<'m, 'a, const MAX_OPS: usize> Interpreter<'m, 'a, MAX_OPS> {
    /// Binds a model to an arena with room for `MAX_OPS` ops, and decodes every op.
    ///
    /// Errors: [`Error::ArenaTooSmall`]; [`Error::CapacityExceeded`] if the model has
    /// more than `MAX_OPS` ops.
    // Inlined, the interpreter is built in the caller's frame instead of being moved
    // there from this one (-0.7 KB of the firmware's stack high-water mark).
    #[inline(always)]
    pub fn with_max_ops(model: Model<'m>, arena: &'a mut [u8]) -> Result<Self, Error> {
        let needed = model.arena_size();
        let arena = arena
            .get_mut(..needed)
            .ok_or(Error::ArenaTooSmall { needed })?;
        let mut steps = heapless::Vec::new();
        for op in model.ops() {
            let step = Step::decode(&model, &op?)?;
            steps.push(step).map_err(|_| Error::CapacityExceeded)?;
        }
        let input0 = model.input(0).ok().map(|t| Span::of(t.range()));
        let output0 = model.output(0).ok().map(|t| Span::of(t.range()));
        Ok(Interpreter {
            model,
            arena: bytemuck::cast_slice_mut(arena),
            invocations: 0,
            scratch: k::Scratch::new(),
            steps,
            input0,
            output0,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// How many times [`Interpreter::invoke`] completed.
    pub fn invocations(&self) -> u32 {
        self.invocations
    }

    /// Static figures of op `index`.
    pub fn op_stats(&self, index: usize) -> Result<OpStats, Error> {
        let op = self.model.ops().nth(index).ok_or(Error::BadIndex)??;
        Ok(OpStats {
            op: op.code,
            macs: op.macs(&self.model)?,
            output_bytes: self.model.tensor(op.output())?.byte_len(),
        })
    }

    /// Gives fully connected, conv or Add op `index` its prepared table
    /// ([`crate::Op::wide_weights`]: `fc_wide_weights`', `conv2d_wide_weights`' or
    /// `add_tables`' layout; 4-byte aligned, e.g. a `static` a firmware build script
    /// wrote), which the DSP kernels read instead of widening each weight and preparing
    /// each channel's requantization (conv, fully connected) or rescaling each input
    /// (Add). Only builds with [`crate::FC_USES_WIDE_WEIGHTS`] read it; every build
    /// checks it against the model entry by entry first.
    ///
    /// Errors: [`Error::BadIndex`] if there is no op `index`; [`Error::InvalidValue`] if
    /// it is none of those; [`Error::ShapeMismatch`] if `wide` is not the op's table or
    /// not 4-byte aligned; [`Error::UnsupportedParams`] for an op that reads none
    /// ([`crate::Op::reads_wide_weights`]).
    pub fn set_wide_weights(&mut self, index: usize, wide: &'m [i16]) -> Result<(), Error> {
        let step = self.steps.get_mut(index).ok_or(Error::BadIndex)?;
        match &mut step.kernel {
            #[cfg(edgekd_op_fully_connected)]
            Kernel::FullyConnected(layer) => {
                *layer = layer.with_wide_weights(wide).map_err(kernel_error)?;
                Ok(())
            }
            #[cfg(edgekd_op_conv2d)]
            Kernel::Conv2d(layer) => {
                *layer = layer.with_wide_weights(wide).map_err(kernel_error)?;
                Ok(())
            }
            #[cfg(edgekd_op_add)]
            Kernel::Other(Operands {
                params: OpParams::Add(p),
                table,
                ..
            }) => {
                k::check_add_table(p, wide).map_err(kernel_error)?;
                *table = Some(wide);
                Ok(())
            }
            _ => Err(Error::InvalidValue),
        }
    }

    /// Input `i` as int8, to be filled in place.
    pub fn input_mut(&mut self, i: usize) -> Result<&mut [i8], Error> {
        let range = match (i, self.input0) {
            (0, Some(span)) => span.range(),
            _ => self.model.input(i)?.range(),
        };
        self.arena.get_mut(range).ok_or(Error::OutOfBounds)
    }

    /// Writes input `i` from raw float values: the stored preprocessing
    /// (`(x - offset) * scale`) and the input quantization are applied, rounding half
    /// away from zero and saturating, as TFLite's quantize op does.
    pub fn set_input_f32(&mut self, i: usize, values: &[f32]) -> Result<(), Error> {
        let tensor = self.model.input(i)?;
        let (scale, zero_point) = tensor.scale_zero_point()?;
        if values.len() != tensor.elements() {
            return Err(Error::LengthMismatch {
                expected: tensor.elements(),
                got: values.len(),
            });
        }
        if values.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite);
        }
        let channels = tensor.shape().c;
        let meta = self.model.metadata();
        let input = self.input_mut(i)?;
        for (idx, (q, &raw)) in input.iter_mut().zip(values).enumerate() {
            let (offset, pre_scale) = meta
                .map(|m| m.preprocess(idx, channels))
                .unwrap_or((0.0, 1.0));
            *q = quantize(((raw - offset) * pre_scale) / scale, zero_point);
        }
        Ok(())
    }

    /// Output `i` as int8.
    pub fn output(&self, i: usize) -> Result<&[i8], Error> {
        let range = match (i, self.output0) {
            (0, Some(span)) => span.range(),
            _ => self.model.output(i)?.range(),
        };
        self.arena.get(range).ok_or(Error::OutOfBounds)
    }

    /// Output `i` dequantized into `out`.
    pub fn output_f32(&self, i: usize, out: &mut [f32]) -> Result<(), Error> {
        let (scale, zero_point) = self.model.output(i)?.scale_zero_point()?;
        let q = self.output(i)?;
        if out.len() != q.len() {
            return Err(Error::LengthMismatch {
                expected: q.len(),
                got: out.len(),
            });
        }
        for (o, &v) in out.iter_mut().zip(q) {
            *o = scale * (v as i32 - zero_point) as f32;
        }
        Ok(())
    }

    /// Index of the largest value of output `i` (the predicted class); ties go to the
    /// lowest index.
    pub fn argmax(&self, i: usize) -> Result<usize, Error> {
        let q = self.output(i)?;
        let mut best = 0;
        for (idx, &v) in q.iter().enumerate() {
            if v > q[best] {
                best = idx;
            }
        }
        Ok(best)
    }

    /// Runs the model once on the current inputs.
    pub fn invoke(&mut self) -> Result<(), Error> {
        self.invoke_profiled(&mut NoProfiler)
    }

    /// Runs the model once, calling `profiler` around every op.
    pub fn invoke_profiled(&mut self, profiler: &mut impl Profiler) -> Result<(), Error> {
        for (index, step) in self.steps.iter().enumerate() {
            profiler.begin(index, step.code);
            run_step(step, self.arena, &mut self.scratch)?;
            profiler.end(index, step.code);
            if profiler.wants_outputs() {
                let out = self.arena.get(step.output.range());
                profiler.observe(index, out.ok_or(Error::OutOfBounds)?);
            }
        }
        self.invocations = self.invocations.wrapping_add(1);
        Ok(())
    }
}

/// Runs one decoded op.
fn run_step(step: &Step<'_>, arena: &mut [i8], scratch: &mut k::Scratch) -> Result<(), Error> {
    let ops = match &step.kernel {
        Kernel::Other(ops) => ops,
        #[cfg(edgekd_op_fully_connected)]
        Kernel::FullyConnected(layer) => {
            let (input, _, output) =
                split_arena(arena, step.input.range(), None, step.output.range())?;
            return layer.run(scratch, input, output).map_err(kernel_error);
        }
        #[cfg(edgekd_op_conv2d)]
        Kernel::Conv2d(layer) => {
            let (input, _, output) =
                split_arena(arena, step.input.range(), None, step.output.range())?;
            return layer.run(scratch, input, output).map_err(kernel_error);
        }
    };
    if let OpParams::Reshape = ops.params {
        return reshape(arena, step.input.range(), step.output.range());
    }
    let (input, input2, output) = split_arena(
        arena,
        step.input.range(),
        step.input2.map(Span::range),
        step.output.range(),
    )?;
    let (ins, outs) = (ops.in_shape, ops.out_shape);
    let (w, ws, bias) = (ops.weights, ops.weight_shape, ops.bias);
    let result = match ops.params {
        #[cfg(edgekd_op_depthwise_conv2d)]
        OpParams::DepthwiseConv2d(p, rq) => {
            k::depthwise_conv2d_in(scratch, &p, rq, ins, input, ws, w, bias, outs, output)
        }
        #[cfg(edgekd_op_max_pool2d)]
        OpParams::MaxPool2d(p) => k::max_pool2d(&p, ins, input, outs, output),
        #[cfg(edgekd_op_avg_pool2d)]
        OpParams::AvgPool2d(p) => k::avg_pool2d(&p, ins, input, outs, output),
        #[cfg(edgekd_op_global_avg_pool)]
        OpParams::GlobalAvgPool(p) => k::global_avg_pool(&p, ins, input, output),
        #[cfg(edgekd_op_add)]
        OpParams::Add(p) => {
            let input2 = input2.ok_or(Error::InvalidValue)?;
            k::add_in(&p, ops.table, input, input2, output)
        }
        #[cfg(edgekd_op_softmax)]
        OpParams::Softmax(p) => k::softmax(&p, outs.c, input, output),
        OpParams::Reshape => Ok(()),
        // Fully connected layers and convolutions are decoded into their own `Kernel`;
        // ops compiled out of this build never parse. This arm keeps the match total.
        #[allow(unreachable_patterns)]
        _ => return Err(Error::UnsupportedOp(step.code.code())),
    };
    result.map_err(kernel_error)
}

/// The runtime's error for a kernel's.
fn kernel_error(e: k::KernelError) -> Error {
    match e {
        k::KernelError::UnsupportedParams => Error::UnsupportedParams,
        _ => Error::ShapeMismatch,
    }
}

/// Reshape moves no data when the planner gave input and output the same place (it
/// does whenever it can).
fn reshape(arena: &mut [i8], from: Range<usize>, to: Range<usize>) -> Result<(), Error> {
    if from != to {
        if from.len() != to.len() || to.end > arena.len() || from.end > arena.len() {
            return Err(Error::OutOfBounds);
        }
        arena.copy_within(from, to.start);
    }
    Ok(())
}

type ArenaViews<'s> = (&'s [i8], Option<&'s [i8]>, &'s mut [i8]);

/// Splits the arena into the op's inputs (read-only) and its output (mutable). The
/// parser has checked that the output does not overlap the inputs; this re-checks it
/// so the borrow split cannot fail silently.
fn split_arena(
    arena: &mut [i8],
    input: Range<usize>,
    input2: Option<Range<usize>>,
    output: Range<usize>,
) -> Result<ArenaViews<'_>, Error> {
    if output.end > arena.len() || output.start > output.end {
        return Err(Error::OutOfBounds);
    }
    let (before, rest) = arena.split_at_mut(output.start);
    let (out, after) = rest.split_at_mut(output.len());
    let (before, after): (&[i8], &[i8]) = (before, after);
    let view = |r: Range<usize>| -> Result<&[i8], Error> {
        if r.end <= output.start {
            before.get(r).ok_or(Error::OutOfBounds)
        } else if r.start >= output.end {
            after
                .get(r.start - output.end..r.end - output.end)
                .ok_or(Error::OutOfBounds)
        } else {
            Err(Error::OutOfBounds)
        }
    };
    let a = view(input)?;
    let b = match input2 {
        Some(r) => Some(view(r)?),
        None => None,
    };
    Ok((a, b, out))
}

/// Rounds half away from zero and saturates to int8 (no `f32::round` in `core`).
fn quantize(x: f32, zero_point: i32) -> i8 {
    let rounded = if x >= 0.0 { x + 0.5 } else { x - 0.5 } as i32;
    rounded.saturating_add(zero_point).clamp(-128, 127) as i8
}

#[cfg(test)]
mod tests {
    use super::quantize;

    #[test]
    fn quantize_rounds_half_away_and_saturates() {
        assert_eq!(quantize(0.5, 0), 1);
        assert_eq!(quantize(-0.5, 0), -1);
        assert_eq!(quantize(1.49, -3), -2);
        assert_eq!(quantize(1e9, 0), 127);
        assert_eq!(quantize(-1e9, 10), -128);
        assert_eq!(quantize(126.6, 5), 127);
    }
}
