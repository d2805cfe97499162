//! The measuring loop of `edgekd-bench`, for both runtimes.
//!
//! Modelled on TFLite's `benchmark_model`: init time, first inference, warm-up runs,
//! then timed runs summarized, peak resident memory and a per-op profile. The per-op
//! profile comes from separate profiled runs so the timer calls around every op do
//! not inflate the timed runs.

use crate::error::{Error, Result};
use crate::runner::{OpProfile, Options, TractModel};
use crate::stats::{peak_rss_kib, Summary};
use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::{Interpreter, Model, OpCode, Profiler};
use serde::Serialize;
use std::time::{Duration, Instant};

/// Which runtime to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Runtime {
    /// `edgekd-tract`: the model lowered to tract, int8.
    Tract,
    /// `edgekd-runtime`: the no_std interpreter the microcontrollers run.
    Edgekd,
    /// The host's ONNX export through tract-onnx (feature `onnx`).
    TractOnnx,
}

impl Runtime {
    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Tract => "tract",
            Runtime::Edgekd => "edgekd",
            Runtime::TractOnnx => "tract-onnx",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Timed runs.
    pub runs: usize,
    /// Untimed-for-the-summary runs before them (reported separately).
    pub warmup: usize,
    /// tract matmul threads (the edgekd interpreter is single-threaded).
    pub threads: usize,
    /// Whether to do the profiled runs for the per-op table.
    pub profile: bool,
}

/// Time of one `.ekd` op over the profiled runs.
#[derive(Debug, Clone, Serialize)]
pub struct OpTime {
    /// Op index in the model.
    pub index: usize,
    /// Op name.
    pub op: String,
    /// Mean time per inference, microseconds.
    pub mean_us: f64,
    /// Median time per inference, microseconds.
    pub median_us: f64,
    /// Share of the summed median op times, percent.
    pub percent: f64,
}

/// Everything measured for one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The runtime.
    pub runtime: Runtime,
    /// Parse + build (+ optimize, for tract), microseconds.
    pub init_us: f64,
    /// The first inference, microseconds.
    pub first_inference_us: f64,
    /// Warm-up runs (absent with `--warmup 0`).
    pub warmup: Option<Summary>,
    /// Timed runs.
    pub runs: Summary,
    /// Process peak RSS after this runtime ran, KiB (process-wide, so with both
    /// runtimes the second value includes the first).
    pub peak_rss_kib: Option<u64>,
    /// Per-op profile (empty without profiling).
    pub ops: Vec<OpTime>,
    /// Time of the profiled runs outside any op (graph glue), microseconds per run.
    pub unattributed_us: f64,
    /// Outputs for every input sample, in order (for agreement checks).
    #[serde(skip)]
    pub outputs: Vec<Vec<i8>>,
}

/// How two runtimes' outputs compare over all samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// Samples compared.
    pub samples: usize,
    /// Samples whose outputs are identical byte for byte.
    pub bit_exact_samples: usize,
    /// Samples with the same argmax.
    pub argmax_agree: usize,
    /// Largest absolute difference of any output value, in LSB.
    pub max_abs_diff: u32,
    /// Index of the first sample whose outputs differ (`None` when all are identical).
    pub first_mismatch: Option<usize>,
}

impl Agreement {
    /// Every sample compared and identical byte for byte.
    pub fn bit_exact(&self) -> bool {
        self.first_mismatch.is_none()
    }
}

/// Compares two runtimes' outputs sample by sample.
pub fn agreement(a: &[Vec<i8>], b: &[Vec<i8>]) -> Agreement {
    let mut r = Agreement {
        samples: a.len().min(b.len()),
        bit_exact_samples: 0,
        argmax_agree: 0,
        max_abs_diff: 0,
        first_mismatch: None,
    };
    if a.len() != b.len() {
        r.first_mismatch = Some(r.samples);
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if x == y {
            r.bit_exact_samples += 1;
        } else if r.first_mismatch.is_none_or(|m| i < m) {
            r.first_mismatch = Some(i);
        }
        r.argmax_agree += usize::from(crate::argmax(x) == crate::argmax(y));
        for (p, q) in x.iter().zip(y) {
            r.max_abs_diff = r
                .max_abs_diff
                .max((i32::from(*p) - i32::from(*q)).unsigned_abs());
        }
    }
    r
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Runs `f` on each sample in turn (cycling) and times every call.
fn timed(
    n: usize,
    samples: &[Vec<i8>],
    mut f: impl FnMut(&[i8]) -> Result<()>,
) -> Result<Vec<f64>> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let start = Instant::now();
        f(&samples[i % samples.len()])?;
        times.push(us(start.elapsed()));
    }
    Ok(times)
}

/// Per-op table from per-run samples (`runs[r][op]`, microseconds). The median is
/// reported next to the mean because one preempted run can dominate a mean.
fn op_table(names: &[&str], runs: &[Vec<f64>]) -> Vec<OpTime> {
    let column = |i: usize| -> Vec<f64> {
        runs.iter()
            .map(|r| r.get(i).copied().unwrap_or(0.0))
            .collect()
    };
    let medians: Vec<f64> = (0..names.len())
        .map(|i| Summary::of(&column(i)).map_or(0.0, |s| s.p50_us))
        .collect();
    let total: f64 = medians.iter().sum();
    names
        .iter()
        .enumerate()
        .map(|(index, name)| OpTime {
            index,
            op: name.to_string(),
            mean_us: Summary::of(&column(index)).map_or(0.0, |s| s.mean_us),
            median_us: medians[index],
            percent: if total > 0.0 {
                100.0 * medians[index] / total
            } else {
                0.0
            },
        })
        .collect()
}

fn durations_us(per_op: &[Duration]) -> Vec<f64> {
    per_op.iter().map(|d| us(*d)).collect()
}

fn check_samples(samples: &[Vec<i8>]) -> Result<()> {
    if samples.is_empty() {
        return Err(Error::Input("no input samples".into()));
    }
    Ok(())
}

/// Measures `edgekd-tract` on `model_bytes`.
pub fn bench_tract(model_bytes: &[u8], samples: &[Vec<i8>], cfg: &Config) -> Result<Report> {
    check_samples(samples)?;
    let start = Instant::now();
    let options = Options {
        threads: Some(cfg.threads),
    };
    let mut model = TractModel::from_ekd_bytes(model_bytes, &options)?;
    let init_us = us(start.elapsed());
    let mut run = |x: &[i8]| model.run(&[x]).map(drop);
    let first = timed(1, samples, &mut run)?[0];
    let warm = timed(cfg.warmup, samples, &mut run)?;
    let runs = timed(cfg.runs, samples, &mut run)?;
    let peak = peak_rss_kib();
    let mut ops = Vec::new();
    let mut unattributed_us = 0.0;
    if cfg.profile && cfg.runs > 0 {
        let mut per_run = Vec::with_capacity(cfg.runs);
        let mut other = Duration::ZERO;
        for i in 0..cfg.runs {
            let mut profile = OpProfile::default();
            model.run_profiled(&[&samples[i % samples.len()]], &mut profile)?;
            per_run.push(durations_us(&profile.per_op));
            other += profile.other;
        }
        ops = op_table(model.op_names(), &per_run);
        unattributed_us = us(other) / cfg.runs as f64;
    }
    let outputs = samples
        .iter()
        .map(|x| Ok(model.run(&[x])?.swap_remove(0)))
        .collect::<Result<_>>()?;
    finish(
        Runtime::Tract,
        init_us,
        first,
        &warm,
        &runs,
        peak,
        ops,
        unattributed_us,
        outputs,
    )
}

#[allow(clippy::too_many_arguments)]
fn finish(
    runtime: Runtime,
    init_us: f64,
    first_inference_us: f64,
    warm: &[f64],
    runs: &[f64],
    peak_rss_kib: Option<u64>,
    ops: Vec<OpTime>,
    unattributed_us: f64,
    outputs: Vec<Vec<i8>>,
) -> Result<Report> {
    Ok(Report {
        runtime,
        init_us,
        first_inference_us,
        warmup: Summary::of(warm),
        runs: Summary::of(runs).ok_or_else(|| Error::Input("--runs must be at least 1".into()))?,
        peak_rss_kib,
        ops,
        unattributed_us,
        outputs,
    })
}

/// Measures an ONNX file exported by the host, through tract-onnx (no per-op profile).
#[cfg(feature = "onnx")]
pub fn bench_onnx(onnx_bytes: &[u8], samples: &[Vec<i8>], cfg: &Config) -> Result<Report> {
    check_samples(samples)?;
    let start = Instant::now();
    let model = crate::onnx::OnnxModel::from_onnx_bytes(onnx_bytes)?;
    let init_us = us(start.elapsed());
    let mut run = |x: &[i8]| model.run(x).map(drop);
    let first = timed(1, samples, &mut run)?[0];
    let warm = timed(cfg.warmup, samples, &mut run)?;
    let runs = timed(cfg.runs, samples, &mut run)?;
    let peak = peak_rss_kib();
    let outputs = samples
        .iter()
        .map(|x| model.run(x))
        .collect::<Result<_>>()?;
    finish(
        Runtime::TractOnnx,
        init_us,
        first,
        &warm,
        &runs,
        peak,
        Vec::new(),
        0.0,
        outputs,
    )
}

/// Per-op timer for the edgekd interpreter.
struct OpTimer {
    per_op: Vec<Duration>,
    started: Option<Instant>,
}

impl Profiler for OpTimer {
    fn begin(&mut self, _: usize, _: OpCode) {
        self.started = Some(Instant::now());
    }

    fn end(&mut self, index: usize, _: OpCode) {
        if let Some(start) = self.started.take() {
            if self.per_op.len() <= index {
                self.per_op.resize(index + 1, Duration::ZERO);
            }
            self.per_op[index] += start.elapsed();
        }
    }
}

/// Measures `edgekd-runtime` (the reference interpreter) on `model_bytes`.
pub fn bench_edgekd(model_bytes: &[u8], samples: &[Vec<i8>], cfg: &Config) -> Result<Report> {
    check_samples(samples)?;
    let start = Instant::now();
    let aligned = AlignedBytes::copy_from(model_bytes);
    let model = Model::parse(aligned.as_bytes())?;
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena)?;
    let init_us = us(start.elapsed());
    let names: Vec<&str> = model
        .ops()
        .map(|op| op.map(|op| op.code.name()))
        .collect::<Result<_, _>>()?;
    let infer = |interp: &mut Interpreter<'_, '_>, x: &[i8]| -> Result<()> {
        let input = interp.input_mut(0)?;
        if input.len() != x.len() {
            return Err(Error::Input(format!(
                "input needs {} int8 values, got {}",
                input.len(),
                x.len()
            )));
        }
        input.copy_from_slice(x);
        interp.invoke()?;
        Ok(())
    };
    let mut run = |x: &[i8]| infer(&mut interp, x);
    let first = timed(1, samples, &mut run)?[0];
    let warm = timed(cfg.warmup, samples, &mut run)?;
    let runs = timed(cfg.runs, samples, &mut run)?;
    let peak = peak_rss_kib();
    let mut ops = Vec::new();
    if cfg.profile && cfg.runs > 0 {
        let mut per_run = Vec::with_capacity(cfg.runs);
        for i in 0..cfg.runs {
            let mut timer = OpTimer {
                per_op: Vec::new(),
                started: None,
            };
            interp
                .input_mut(0)?
                .copy_from_slice(&samples[i % samples.len()]);
            interp.invoke_profiled(&mut timer)?;
            per_run.push(durations_us(&timer.per_op));
        }
        ops = op_table(&names, &per_run);
    }
    let mut outputs = Vec::with_capacity(samples.len());
    for x in samples {
        infer(&mut interp, x)?;
        outputs.push(interp.output(0)?.to_vec());
    }
    finish(
        Runtime::Edgekd,
        init_us,
        first,
        &warm,
        &runs,
        peak,
        ops,
        0.0,
        outputs,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_table_uses_medians_for_shares() {
        // Op 1 has one preempted run; its median, not its mean, sets its share.
        let runs = vec![vec![1.0, 1.0], vec![1.0, 1.0], vec![1.0, 1000.0]];
        let t = op_table(&["A", "B"], &runs);
        assert_eq!(t[1].median_us, 1.0);
        assert_eq!(t[1].mean_us, 334.0);
        assert_eq!(t[0].percent, 50.0);
        assert_eq!(t[1].op, "B");
    }

    #[test]
    fn agreement_counts_exact_and_argmax() {
        let a = vec![vec![1, 2, 3], vec![5, 0, 0], vec![0, 0, 9]];
        let b = vec![vec![1, 2, 3], vec![4, 0, 0], vec![0, 9, 8]];
        let r = agreement(&a, &b);
        assert_eq!(r.samples, 3);
        assert_eq!(r.bit_exact_samples, 1);
        assert_eq!(r.argmax_agree, 2);
        assert_eq!(r.max_abs_diff, 9);
        assert_eq!(r.first_mismatch, Some(1));
        assert!(!r.bit_exact());
        let same = agreement(&a, &a);
        assert!(same.bit_exact());
        assert_eq!(same.first_mismatch, None);
        // A missing sample is a mismatch too.
        assert_eq!(agreement(&a, &a[..2]).first_mismatch, Some(2));
    }
}
