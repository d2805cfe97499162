//! Runs a parsed model over a caller-provided arena.

use crate::executor::{argmax, Executor};
use crate::format::{Model, OpCode};
use crate::program::Program;
use crate::Error;

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
pub(crate) struct NoProfiler;

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
    exec: Executor<'m, 'a, MAX_OPS>,
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
        if arena.len() < needed {
            return Err(Error::ArenaTooSmall { needed });
        }
        let exec = Executor::new(Program::decode(&model)?, arena)?;
        Ok(Interpreter { model, exec })
    }

    /// The model.
    pub fn model(&self) -> &Model<'m> {
        &self.model
    }

    /// How many times [`Interpreter::invoke`] completed.
    pub fn invocations(&self) -> u32 {
        self.exec.invocations()
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

    /// See [`Program::set_wide_weights`].
    pub fn set_wide_weights(&mut self, index: usize, wide: &'m [i16]) -> Result<(), Error> {
        self.exec.set_wide_weights(index, wide)
    }

    /// Input `i` as int8, to be filled in place.
    pub fn input_mut(&mut self, i: usize) -> Result<&mut [i8], Error> {
        match i {
            0 => self.exec.input_mut(),
            _ => {
                let range = self.model.input(i)?.range();
                self.exec.arena_mut(range)
            }
        }
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
        match i {
            0 => self.exec.output(),
            _ => self.exec.arena(self.model.output(i)?.range()),
        }
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
        Ok(argmax(self.output(i)?))
    }

    /// Runs the model once on the current inputs.
    pub fn invoke(&mut self) -> Result<(), Error> {
        self.exec.invoke()
    }

    /// Runs the model once, calling `profiler` around every op.
    pub fn invoke_profiled(&mut self, profiler: &mut impl Profiler) -> Result<(), Error> {
        self.exec.invoke_profiled(profiler)
    }
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
