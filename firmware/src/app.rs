//! The measurement run: every golden sample through the model, outputs compared with the
//! expected ones, instructions (or cycles) per inference and per op.
//!
//! Generic over the output, the clock and a busy pin, so the same run works on any board
//! whose HAL provides an `embedded_io::Write` and an `OutputPin`.
//!
//! Every line is `key=value` tokens after a tag, for `edgekd bench` to parse.

use crate::clock::{hundred_instructions, Clock};
use crate::generated as gen;
use edgekd_runtime::{Error, Executor, OpCode, Profiler, Program};
use embedded_hal::digital::OutputPin;
use embedded_io::{Write, WriteFmtError};

/// Outcome of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every output equals the expected one.
    Pass,
    /// Some output differs, or the model could not run.
    Fail,
}

/// Measures every op of one inference.
struct OpTimer<'c, C: Clock> {
    clock: &'c mut C,
    /// Counts of an empty measured region, subtracted from every op.
    overhead: u64,
    start: u64,
    per_op: [u64; gen::OP_COUNT],
}

impl<C: Clock> Profiler for OpTimer<'_, C> {
    fn begin(&mut self, _: usize, _: OpCode) {
        self.start = self.clock.ticks();
    }

    fn end(&mut self, index: usize, _: OpCode) {
        let elapsed = self.clock.ticks() - self.start;
        if let Some(slot) = self.per_op.get_mut(index) {
            *slot += self.clock.count(elapsed).saturating_sub(self.overhead);
        }
    }
}

/// Counts of a measured region with nothing in it: the cost of reading the clock.
fn clock_overhead(clock: &mut impl Clock) -> u64 {
    (0..4)
        .map(|_| timed_region::<false>(clock))
        .min()
        .unwrap_or(0)
}

/// Counts of one region between two clock readings: empty, or [`hundred_instructions`].
/// One out-of-line copy per case, so the two differ only by the `nop`s (inline, the
/// register moves around the readings changed with the code around them, and the
/// check read 101/100).
#[inline(never)]
fn timed_region<const HUNDRED: bool>(clock: &mut impl Clock) -> u64 {
    let t0 = clock.ticks();
    if HUNDRED {
        hundred_instructions();
    }
    let t1 = clock.ticks();
    clock.count(t1 - t0)
}

/// Runs the golden samples through the embedded model and reports.
pub fn run<W: Write, C: Clock, P: OutputPin>(
    out: &mut W,
    clock: &mut C,
    busy: &mut P,
    arena: &mut [u8],
) -> Result<Verdict, WriteFmtError<W::Error>> {
    let marker = core::str::from_utf8(&gen::QEMU_MARKER).unwrap_or("?");
    write!(
        out,
        "edgekd-firmware board={} model={} {}",
        gen::BOARD,
        gen::MODEL_NAME,
        marker
    )?;

    let program = match program() {
        Ok(p) => p,
        Err(e) => {
            writeln!(out, "error stage=program reason=\"{e}\"")?;
            return Ok(Verdict::Fail);
        }
    };
    writeln!(
        out,
        "model bytes={} arena={} ops={} macs={} samples={} input_len={} output_len={} compiled_ops={}",
        gen::MODEL.0.len(),
        program.arena_size(),
        program.steps().len(),
        gen::OP_MACS.iter().sum::<u64>(),
        gen::SAMPLES,
        gen::INPUT_LEN,
        gen::OUTPUT_LEN,
        gen::COMPILED_OPS
    )?;
    for (i, step) in program.steps().iter().enumerate() {
        writeln!(
            out,
            "op index={i} code={} macs={}",
            step.code().name(),
            gen::OP_MACS.get(i).copied().unwrap_or(0)
        )?;
    }

    let overhead = clock_overhead(clock);
    let calibration = timed_region::<true>(clock).saturating_sub(overhead);
    writeln!(
        out,
        "clock unit={} overhead={overhead} calibration={calibration}/100",
        clock.unit()
    )?;

    let mut interp = match Executor::new(program, arena) {
        Ok(i) => i,
        Err(e) => {
            writeln!(out, "error stage=arena reason=\"{e}\"")?;
            return Ok(Verdict::Fail);
        }
    };

    let mut mismatches = 0usize;
    let mut invoke_stack = 0;
    let mut total = 0u64;
    let (mut min, mut max) = (u64::MAX, 0u64);
    let mut timer = OpTimer {
        clock,
        overhead,
        start: 0,
        per_op: [0; gen::OP_COUNT],
    };
    for s in 0..gen::SAMPLES {
        let input = &gen::INPUTS[s * gen::INPUT_LEN..(s + 1) * gen::INPUT_LEN];
        let expected = &gen::EXPECTED[s * gen::OUTPUT_LEN..(s + 1) * gen::OUTPUT_LEN];

        // The inference alone, without per-op hooks, is the headline number.
        let written = interp.input_mut().map(|i| i.copy_from_slice(input));
        // The first inference also measures the stack `invoke` needs (the harness's
        // printing goes deeper, so the high-water mark overstates the model's need).
        let sp = (s == 0).then(crate::stack::paint_below_caller);
        let _ = busy.set_high();
        let t0 = timer.clock.ticks();
        let result = written.and_then(|()| interp.invoke());
        let t1 = timer.clock.ticks();
        let _ = busy.set_low();
        if let Some(sp) = sp {
            invoke_stack = crate::stack::used_below(sp);
        }
        if let Err(e) = result {
            writeln!(out, "error stage=invoke sample={s} reason=\"{e}\"")?;
            return Ok(Verdict::Fail);
        }
        let instr = timer.clock.count(t1 - t0).saturating_sub(overhead);
        let plain_ok = interp.output().map(|o| o == expected).unwrap_or(false);

        // Again with per-op hooks, from the same input.
        let profiled = interp
            .input_mut()
            .map(|i| i.copy_from_slice(input))
            .and_then(|()| interp.invoke_profiled(&mut timer));
        if let Err(e) = profiled {
            writeln!(out, "error stage=invoke sample={s} reason=\"{e}\"")?;
            return Ok(Verdict::Fail);
        }
        let output = interp.output().unwrap_or(&[]);
        let ok = plain_ok && output == expected;
        if !ok {
            mismatches += 1;
        }
        total += instr;
        min = min.min(instr);
        max = max.max(instr);
        write!(
            out,
            "sample index={s} class={} count={instr} match={} out=",
            interp.argmax().unwrap_or(usize::MAX),
            if ok { "yes" } else { "no" }
        )?;
        write_list(out, output)?;
        if !ok {
            write!(out, " expected=")?;
            write_list(out, expected)?;
        }
        writeln!(out)?;
    }

    // RAM beside the arena: the interpreter (decoded ops and the kernels' scratch, in
    // this frame) and the stack one inference needs below it.
    writeln!(
        out,
        "footprint interpreter={} invoke_stack={invoke_stack}",
        core::mem::size_of_val(&interp)
    )?;
    let samples = gen::SAMPLES as u64;
    writeln!(
        out,
        "inference unit={} mean={} min={min} max={max} samples={samples}",
        timer.clock.unit(),
        (total + samples / 2) / samples
    )?;
    let mut op_sum = 0;
    for (i, step) in interp.program().steps().iter().enumerate() {
        let per = (timer.per_op[i] + samples / 2) / samples;
        op_sum += per;
        writeln!(
            out,
            "opcount index={i} code={} macs={} count={per}",
            step.code().name(),
            gen::OP_MACS.get(i).copied().unwrap_or(0)
        )?;
    }
    writeln!(
        out,
        "interpreter count={}",
        ((total + samples / 2) / samples).saturating_sub(op_sum)
    )?;
    let verdict = if mismatches == 0 {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
    writeln!(
        out,
        "result {} mismatches={mismatches} samples={samples}",
        if verdict == Verdict::Pass {
            "PASS"
        } else {
            "FAIL"
        }
    )?;
    Ok(verdict)
}

/// The model's ops: decoded by build.rs (the default), or from the embedded `.ekd` on
/// the device (`runtime-decode`).
#[cfg(not(feature = "runtime-decode"))]
fn program() -> Result<Program<'static, { gen::OP_COUNT }>, Error> {
    gen::program::build()
}

/// The model's ops: decoded by build.rs (the default), or from the embedded `.ekd` on
/// the device (`runtime-decode`).
#[cfg(feature = "runtime-decode")]
fn program() -> Result<Program<'static, { gen::OP_COUNT }>, Error> {
    let mut program = Program::decode(&edgekd_runtime::Model::parse(&gen::MODEL.0)?)?;
    gen::program::set_tables(&mut program)?;
    Ok(program)
}

fn write_list<W: Write>(out: &mut W, values: &[i8]) -> Result<(), WriteFmtError<W::Error>> {
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            write!(out, ",")?;
        }
        write!(out, "{v}")?;
    }
    Ok(())
}
