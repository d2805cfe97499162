//! `edgekd-bench`: benchmark an `.ekd` model on tract and/or the edgekd interpreter,
//! in the manner of TFLite's `benchmark_model`.

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::{Interpreter, Model};
use edgekd_tract::bench::{
    agreement, bench_edgekd, bench_tract, Agreement, Config, Report, Runtime,
};
use npyz::WriterBuilder;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Environment variable the host glue sets when it runs this binary under an emulator.
const EMULATED_ENV: &str = "EDGEKD_BENCH_EMULATED";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Which {
    Tract,
    Edgekd,
    Both,
}

/// Benchmark an .ekd int8 model: init time, first inference, warm-up, timed runs
/// (min/max/mean/std/p50/p90/p99), peak RSS and a per-op profile.
#[derive(Debug, Parser)]
#[command(name = "edgekd-bench", version)]
struct Args {
    /// The .ekd model, or the .onnx file `edgekd export --format onnx` wrote (tract
    /// only; needs the `onnx` feature).
    model: PathBuf,
    /// Which runtime(s) to measure [default: both, which also checks that their
    /// outputs are identical on every sample]. An .onnx model runs on tract only.
    #[arg(long, value_enum)]
    runtime: Option<Which>,
    /// Timed runs.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    runs: u64,
    /// Warm-up runs before the timed ones.
    #[arg(long, default_value_t = 10)]
    warmup: u64,
    /// Threads for tract's matmuls (the edgekd interpreter is single-threaded).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: u64,
    /// `random`, or an .npy file of int8 (or float32, quantized like the runtime does)
    /// samples: one sample of the model's input shape, or [N, ...] samples run in turn.
    #[arg(long, default_value = "random")]
    input: String,
    /// Seed for `--input random`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Skip the profiled runs (no per-op table).
    #[arg(long)]
    no_profile: bool,
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
    /// Write the int8 outputs to this .npy file, shape [samples, output size], one row
    /// per input sample: the edgekd runtime's (tract's with `--runtime tract`). Written
    /// atomically (temp file + rename), also when the runtimes disagree.
    #[arg(long, value_name = "FILE.npy")]
    save_outputs: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Output {
    model: String,
    ops: usize,
    macs: u64,
    input: String,
    samples: usize,
    runs: u64,
    warmup: u64,
    threads: u64,
    arch: &'static str,
    /// True when run under an emulator: timings are meaningless then.
    emulated: bool,
    results: Vec<Report>,
    agreement: Option<Agreement>,
    /// Which runtime's outputs `--save-outputs` wrote.
    saved_outputs: Option<SavedOutputs>,
}

#[derive(Debug, Serialize)]
struct SavedOutputs {
    path: String,
    runtime: &'static str,
    shape: [usize; 2],
}

/// Encodes int8 rows as an .npy matrix `[rows, cols]`.
fn npy_i8(rows: &[Vec<i8>]) -> Result<Vec<u8>> {
    let cols = rows.first().map_or(0, Vec::len);
    if rows.iter().any(|r| r.len() != cols) {
        bail!("output rows have different lengths");
    }
    let mut out = Vec::new();
    {
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[rows.len() as u64, cols as u64])
            .writer(&mut out)
            .begin_nd()?;
        for r in rows {
            w.extend(r.iter().copied())?;
        }
        w.finish()?;
    }
    Ok(out)
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so
/// a reader never sees a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} is not a file path", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Loads the input samples, flattened to `n` values each. Float samples are quantized
/// by `model` (an .ekd), which ONNX inputs do not have.
fn load_samples(args: &Args, n: usize, model: Option<&Model<'_>>) -> Result<Vec<Vec<i8>>> {
    if args.input == "random" {
        let mut rng = fastrand::Rng::with_seed(args.seed);
        return Ok(vec![(0..n).map(|_| rng.i8(..)).collect()]);
    }
    let bytes = std::fs::read(&args.input).with_context(|| format!("reading {}", args.input))?;
    let npy = npyz::NpyFile::new(&bytes[..])
        .with_context(|| format!("{} is not an .npy file", args.input))?;
    let npy_shape = npy.shape().to_vec();
    let flat: Vec<i8> = match npy.dtype() {
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Int && t.size_field() == 1 => {
            npy.into_vec::<i8>()?
        }
        npyz::DType::Plain(t) if t.type_char() == npyz::TypeChar::Float && t.size_field() == 4 => {
            // Quantize exactly as the runtime does (preprocessing metadata included).
            let Some(model) = model else {
                bail!(
                    "{}: float inputs need the .ekd model (its quantization); give int8 samples",
                    args.input
                );
            };
            let values = npy.into_vec::<f32>()?;
            if values.len() % n != 0 {
                bail!(
                    "{}: {} values is not a multiple of the model input size {n}",
                    args.input,
                    values.len()
                );
            }
            let mut arena = vec![0u8; model.arena_size()];
            let mut interp = Interpreter::new(*model, &mut arena)?;
            let mut out = Vec::with_capacity(values.len());
            for chunk in values.chunks(n) {
                interp.set_input_f32(0, chunk)?;
                out.extend_from_slice(interp.input_mut(0)?);
            }
            out
        }
        other => bail!(
            "{}: expected int8 or float32 data, found {other:?}",
            args.input
        ),
    };
    // One sample of any shape, or [N, ...] with one sample per row.
    let row: u64 = npy_shape.iter().skip(1).product();
    if flat.len() != n && row as usize != n {
        bail!(
            "{}: shape {npy_shape:?} holds neither one input of {n} values nor [N, ...] rows of {n}",
            args.input
        );
    }
    if flat.is_empty() || flat.len() % n != 0 {
        bail!(
            "{}: {} values is not a positive multiple of the model input size {n}",
            args.input,
            flat.len()
        );
    }
    Ok(flat.chunks(n).map(<[i8]>::to_vec).collect())
}

/// `writeln!` into the report buffer (writing to a String cannot fail).
macro_rules! w {
    ($o:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($o, $($arg)*);
    }};
}

fn print_report(o: &mut String, r: &Report) {
    w!(o, "[{}]", r.runtime.name());
    w!(o, "  init:            {:>10.1} us", r.init_us);
    w!(o, "  first inference: {:>10.1} us", r.first_inference_us);
    if let Some(w) = &r.warmup {
        w!(o, "  warm-up ({:>4}):  mean {:.2} us", w.count, w.mean_us);
    }
    let s = &r.runs;
    w!(
        o,
        "  runs ({}): min {:.2}  max {:.2}  mean {:.2}  std {:.2}  p50 {:.2}  p90 {:.2}  p99 {:.2} (us)",
        s.count, s.min_us, s.max_us, s.mean_us, s.std_us, s.p50_us, s.p90_us, s.p99_us
    );
    match r.peak_rss_kib {
        Some(k) => w!(o, "  peak RSS:        {k} KiB (process-wide)"),
        None => w!(o, "  peak RSS:        unavailable (no /proc/self/status)"),
    }
    if !r.ops.is_empty() {
        w!(o, "  per-op profile (profiled runs; % of summed medians):");
        w!(
            o,
            "    {:>3}  {:<16} {:>10} {:>10} {:>7}",
            "#",
            "op",
            "median us",
            "mean us",
            "%"
        );
        for op in &r.ops {
            w!(
                o,
                "    {:>3}  {:<16} {:>10.2} {:>10.2} {:>6.1}%",
                op.index,
                op.op,
                op.median_us,
                op.mean_us,
                op.percent
            );
        }
        if r.unattributed_us > 0.0 {
            w!(
                o,
                "         {:<16} {:>10.2}",
                "(graph glue)",
                r.unattributed_us
            );
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let bytes =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let cfg = Config {
        runs: args.runs as usize,
        warmup: args.warmup as usize,
        threads: args.threads as usize,
        profile: !args.no_profile,
    };
    let emulated = std::env::var_os(EMULATED_ENV).is_some_and(|v| !v.is_empty() && v != "0");
    if args.model.extension().is_some_and(|e| e == "onnx") {
        return run_onnx(args, &bytes, &cfg, emulated);
    }
    let aligned = AlignedBytes::copy_from(&bytes);
    let model = Model::parse(aligned.as_bytes())
        .map_err(edgekd_tract::Error::from)
        .with_context(|| format!("loading {}", args.model.display()))?;
    if model.input_count() != 1 || model.output_count() != 1 {
        bail!("edgekd-bench handles single-input, single-output models; this one has {} inputs and {} outputs", model.input_count(), model.output_count());
    }
    let samples = load_samples(args, model.input(0)?.elements(), Some(&model))?;
    let which = args.runtime.unwrap_or(Which::Both);
    let mut results = Vec::new();
    if matches!(which, Which::Tract | Which::Both) {
        results.push(bench_tract(&bytes, &samples, &cfg).context("tract runtime")?);
    }
    if matches!(which, Which::Edgekd | Which::Both) {
        results.push(bench_edgekd(&bytes, &samples, &cfg).context("edgekd runtime")?);
    }
    report(
        args,
        model.op_count(),
        model.macs(),
        samples.len(),
        emulated,
        results,
    )
}

/// An .onnx model: tract-onnx only.
#[cfg(feature = "onnx")]
fn run_onnx(args: &Args, bytes: &[u8], cfg: &Config, emulated: bool) -> Result<()> {
    if matches!(args.runtime, Some(Which::Edgekd | Which::Both)) {
        bail!(
            "an .onnx model runs on tract only (--runtime tract); to compare the runtimes, \
             benchmark the .ekd it was exported from"
        );
    }
    let model = edgekd_tract::onnx::OnnxModel::from_onnx_bytes(bytes)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let samples = load_samples(args, model.input_len(), None)?;
    let results =
        vec![edgekd_tract::bench::bench_onnx(bytes, &samples, cfg).context("tract-onnx")?];
    report(args, 0, 0, samples.len(), emulated, results)
}

#[cfg(not(feature = "onnx"))]
fn run_onnx(args: &Args, _: &[u8], _: &Config, _: bool) -> Result<()> {
    bail!(
        "{}: this edgekd-bench was built without ONNX support (cargo feature `onnx` of \
         edgekd-tract)",
        args.model.display()
    )
}

/// Compares, saves and prints what the runtimes measured.
fn report(
    args: &Args,
    ops: usize,
    macs: u64,
    samples: usize,
    emulated: bool,
    results: Vec<Report>,
) -> Result<()> {
    let agreement = match results.as_slice() {
        [a, b] => Some(agreement(&a.outputs, &b.outputs)),
        _ => None,
    };
    // The edgekd runtime's outputs when it ran (the reference), else tract's.
    let saved_outputs = match &args.save_outputs {
        Some(path) => {
            let r = results
                .iter()
                .rev()
                .find(|r| r.runtime == Runtime::Edgekd)
                .or(results.first())
                .context("no runtime ran")?;
            write_atomic(path, &npy_i8(&r.outputs)?)?;
            Some(SavedOutputs {
                path: path.display().to_string(),
                runtime: r.runtime.name(),
                shape: [r.outputs.len(), r.outputs.first().map_or(0, Vec::len)],
            })
        }
        None => None,
    };
    let out = Output {
        model: args.model.display().to_string(),
        ops,
        macs,
        input: if args.input == "random" {
            format!("random (seed {})", args.seed)
        } else {
            args.input.clone()
        },
        samples,
        runs: args.runs,
        warmup: args.warmup,
        threads: args.threads,
        arch: std::env::consts::ARCH,
        emulated,
        results,
        agreement,
        saved_outputs,
    };
    let mut o = String::new();
    if args.json {
        w!(o, "{}", serde_json::to_string_pretty(&out)?);
    } else {
        w!(
            o,
            "edgekd-bench: {} ({} ops, {} MACs), input {} ({} sample(s)), {} threads, {}",
            out.model,
            out.ops,
            out.macs,
            out.input,
            out.samples,
            out.threads,
            out.arch
        );
        if emulated {
            w!(o, "NOTE: running under an emulator (qemu-user): the timings below mean nothing; only the outputs and their agreement do.");
        }
        for r in &out.results {
            print_report(&mut o, r);
        }
        if let Some(a) = &out.agreement {
            w!(
                o,
                "agreement tract vs edgekd: {}/{} samples bit-exact, argmax equal on {}/{}, max |diff| {} LSB",
                a.bit_exact_samples, a.samples, a.argmax_agree, a.samples, a.max_abs_diff
            );
        }
        if let Some(s) = &out.saved_outputs {
            w!(
                o,
                "outputs ({}, {}x{}) written to {}",
                s.runtime,
                s.shape[0],
                s.shape[1],
                s.path
            );
        }
    }
    emit(&o)?;
    if let Some(a) = &out.agreement {
        if let Some(first) = a.first_mismatch {
            bail!(
                "tract and edgekd outputs differ, first on sample {first} ({} of {} samples differ, \
                 argmax differs on {}, max |diff| {} LSB)",
                a.samples - a.bit_exact_samples,
                a.samples,
                a.samples - a.argmax_agree,
                a.max_abs_diff
            );
        }
    }
    Ok(())
}

/// Writes the report to stdout; a closed pipe (`| head`) is not an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing the report to stdout"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("edgekd-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
