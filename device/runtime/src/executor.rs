//! Runs a [`Program`] over a caller-provided arena.

use crate::format::OpParams;
use crate::interpreter::{NoProfiler, Profiler};
use crate::program::{Kernel, Program, Span, Step};
use crate::Error;
use core::ops::Range;
use edgekd_kernels as k;

/// A [`Program`] bound to the arena its activations live in: the part of an
/// [`Interpreter`](crate::Interpreter) that runs kernels, without the model (firmware
/// whose program was decoded at build time has none).
///
/// Never allocates; the arena must hold at least [`Program::arena_size`] bytes.
pub struct Executor<'m, 'a, const MAX_OPS: usize> {
    program: Program<'m, MAX_OPS>,
    arena: &'a mut [i8],
    invocations: u32,
    /// Working memory of the conv / fully connected kernels, zeroed once here rather
    /// than for every layer of every inference.
    scratch: k::Scratch,
}

impl<'m, 'a, const MAX_OPS: usize> Executor<'m, 'a, MAX_OPS> {
    /// Binds `program` to `arena`.
    ///
    /// Errors: [`Error::ArenaTooSmall`].
    // Inlined, the executor is built in the caller's frame instead of being moved there
    // from this one (the program is most of it).
    #[inline(always)]
    pub fn new(program: Program<'m, MAX_OPS>, arena: &'a mut [u8]) -> Result<Self, Error> {
        let needed = program.arena_size;
        let arena = arena
            .get_mut(..needed)
            .ok_or(Error::ArenaTooSmall { needed })?;
        Ok(Executor {
            program,
            arena: bytemuck::cast_slice_mut(arena),
            invocations: 0,
            scratch: k::Scratch::new(),
        })
    }

    /// The program.
    pub fn program(&self) -> &Program<'m, MAX_OPS> {
        &self.program
    }

    /// See [`Program::set_wide_weights`].
    pub fn set_wide_weights(&mut self, index: usize, wide: &'m [i16]) -> Result<(), Error> {
        self.program.set_wide_weights(index, wide)
    }

    /// How many times [`Executor::invoke`] completed.
    pub fn invocations(&self) -> u32 {
        self.invocations
    }

    /// The arena bytes `range` (e.g. an input to fill in place).
    pub(crate) fn arena_mut(&mut self, range: Range<usize>) -> Result<&mut [i8], Error> {
        self.arena.get_mut(range).ok_or(Error::OutOfBounds)
    }

    /// The arena bytes `range` (e.g. an output).
    pub(crate) fn arena(&self, range: Range<usize>) -> Result<&[i8], Error> {
        self.arena.get(range).ok_or(Error::OutOfBounds)
    }

    /// Input 0 as int8, to be filled in place.
    ///
    /// Errors: [`Error::BadIndex`] for a program without one.
    pub fn input_mut(&mut self) -> Result<&mut [i8], Error> {
        let span = self.program.input0.ok_or(Error::BadIndex)?;
        self.arena_mut(span.range())
    }

    /// Output 0 as int8.
    ///
    /// Errors: [`Error::BadIndex`] for a program without one.
    pub fn output(&self) -> Result<&[i8], Error> {
        let span = self.program.output0.ok_or(Error::BadIndex)?;
        self.arena(span.range())
    }

    /// Index of the largest value of output 0 (the predicted class); ties go to the
    /// lowest index.
    pub fn argmax(&self) -> Result<usize, Error> {
        Ok(argmax(self.output()?))
    }

    /// Runs the program once on the current inputs.
    pub fn invoke(&mut self) -> Result<(), Error> {
        self.invoke_profiled(&mut NoProfiler)
    }

    /// Runs the program once, calling `profiler` around every op.
    pub fn invoke_profiled(&mut self, profiler: &mut impl Profiler) -> Result<(), Error> {
        for (index, step) in self.program.steps.iter().enumerate() {
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

/// Index of the largest value; ties go to the lowest index.
pub(crate) fn argmax(q: &[i8]) -> usize {
    let mut best = 0;
    for (idx, &v) in q.iter().enumerate() {
        if v > q[best] {
            best = idx;
        }
    }
    best
}

/// Runs one decoded op.
fn run_step(step: &Step<'_>, arena: &mut [i8], scratch: &mut k::Scratch) -> Result<(), Error> {
    let ops = match &step.kernel {
        Kernel::Other(ops) => ops,
        #[cfg(edgekd_op_fully_connected)]
        Kernel::FullyConnected(layer) => {
            let (input, _, output) =
                split_arena(arena, step.input.range(), None, step.output.range())?;
            return Ok(layer.run(scratch, input, output)?);
        }
        #[cfg(edgekd_op_conv2d)]
        Kernel::Conv2d(layer) => {
            let (input, _, output) =
                split_arena(arena, step.input.range(), None, step.output.range())?;
            return Ok(layer.run(scratch, input, output)?);
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
    let result: Result<(), k::KernelError> = match ops.params {
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
        // ops compiled out of this build never decode. This arm keeps the match total.
        #[allow(unreachable_patterns)]
        _ => return Err(Error::UnsupportedOp(step.code.code())),
    };
    Ok(result?)
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
/// (a program built ahead of time was never parsed on this device) so the borrow split
/// cannot fail silently.
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
