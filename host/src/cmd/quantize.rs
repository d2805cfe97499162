//! `edgekd quantize`: float model + calibration data -> int8 `.ekd` and a per-layer report.

use crate::io;
use crate::quant::ptq::BiasCorrection;
use crate::quant::{
    quantize, BuildOptions, CalibSet, Calibration, FloatModel, Method, PtqOptions, QatMode,
    QatOptions,
};
use anyhow::{bail, ensure, Context, Result};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Calibration method names on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CalibArg {
    /// Observed min/max.
    Minmax,
    /// `--percentile` of the observed distribution.
    Percentile,
    /// Least expected squared quantization error.
    Mse,
    /// Per tensor, the best of the three by the SQNR of the model output.
    Auto,
}

/// Arguments of `edgekd quantize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The float model (`model.safetensors` from `edgekd train` / `distill`).
    pub model: PathBuf,
    /// Calibration features (`.npy`, one raw sample per row, as in the training data).
    #[arg(long)]
    pub calib: PathBuf,
    /// Labels of the calibration samples (`.npy`): the --max-drop budget is then checked
    /// against accuracy; without them, against agreement with the float model.
    #[arg(long)]
    pub calib_labels: Option<PathBuf>,
    /// Use the first N calibration samples (0: all).
    #[arg(long, default_value_t = 1000)]
    pub calib_size: usize,
    /// Range selection for activations.
    #[arg(long, value_enum, default_value_t = CalibArg::Auto)]
    pub calibration: CalibArg,
    /// Percentile for `percentile` (and the `auto` candidate).
    #[arg(long, default_value_t = 99.99)]
    pub percentile: f64,
    /// Append a softmax (output quantization 1/256, -128).
    #[arg(long)]
    pub softmax: bool,
    /// One weight scale per tensor instead of per output channel (refused for depthwise).
    #[arg(long)]
    pub per_tensor_weights: bool,
    /// Cross-layer equalization first: rescale the channels between consecutive conv/dense
    /// layers (through ReLU, pooling, flatten) so each pair shares its weight ranges. Same
    /// float function; helps most with --per-tensor-weights. `edgekd eval --equalize` then
    /// compares per-layer SQNR against the equalized float model.
    #[arg(long)]
    pub equalize: bool,
    /// Accuracy-drop budget in points that triggers recovery steps.
    #[arg(long, default_value_t = 0.5)]
    pub max_drop: f64,
    /// Empirical bias correction.
    #[arg(long, value_enum, default_value_t = BiasCorrection::Auto)]
    pub bias_correction: BiasCorrection,
    /// Samples used to score `auto` candidates and to measure bias errors.
    #[arg(long, default_value_t = 500)]
    pub search_samples: usize,
    /// Quantization-aware fine-tuning with the float model as the KD teacher (after bias
    /// correction): `auto` runs it when the drop still exceeds --max-drop. It trains on the
    /// calibration set (with --calib-labels: KD + cross-entropy; without: KD only) and is
    /// kept only if it raises the calibration metric.
    #[arg(long, value_enum, default_value_t = QatMode::Auto)]
    pub qat: QatMode,
    /// QAT epochs over the calibration set.
    #[arg(long, default_value_t = QatOptions::default().epochs)]
    pub qat_epochs: usize,
    /// QAT peak learning rate (AdamW, cosine decay).
    #[arg(long, default_value_t = QatOptions::default().lr)]
    pub qat_lr: f64,
    /// QAT batch size.
    #[arg(long, default_value_t = QatOptions::default().batch)]
    pub qat_batch: usize,
    /// QAT KD temperature.
    #[arg(long, default_value_t = QatOptions::default().temperature)]
    pub qat_temperature: f64,
    /// QAT weight of the KD term (1 - alpha goes to cross-entropy on --calib-labels).
    #[arg(long, default_value_t = QatOptions::default().alpha)]
    pub qat_alpha: f64,
    /// EMA momentum for updating activation ranges during QAT (0: keep calibrated ranges).
    #[arg(long, default_value_t = QatOptions::default().ema)]
    pub qat_ema: f64,
    /// Seed of the QAT batch order.
    #[arg(long, default_value_t = 0)]
    pub qat_seed: u64,
    /// Fraction of the calibration samples (the last ones) QAT does not train on; they choose
    /// the epoch and decide whether QAT is kept (0: all samples do both).
    #[arg(long, default_value_t = 0.0)]
    pub qat_holdout: f64,
    /// Output `.ekd`.
    #[arg(long, short)]
    pub out: PathBuf,
    /// JSON report (default: the output path with `.quant.json`).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Model name stored in the file (default: the float model's).
    #[arg(long)]
    pub name: Option<String>,
}

fn read_calib(args: &Args, features: usize, shape: [usize; 3]) -> Result<CalibSet> {
    let m = io::read_f32_matrix(&args.calib)?;
    ensure!(
        m.rows > 0,
        "{}: the calibration set is empty",
        args.calib.display()
    );
    ensure!(
        m.cols == features,
        "{}: calibration samples have {} values, the model takes {shape:?} = {features}",
        args.calib.display(),
        m.cols
    );
    let keep = if args.calib_size == 0 {
        m.rows
    } else {
        m.rows.min(args.calib_size)
    };
    let labels = match &args.calib_labels {
        Some(p) => {
            let y = io::read_labels(p)?;
            ensure!(
                y.len() == m.rows,
                "{}: {} labels for {} calibration samples",
                p.display(),
                y.len(),
                m.rows
            );
            let y: Vec<u32> = y[..keep]
                .iter()
                .map(|&v| u32::try_from(v).with_context(|| format!("{}: label {v}", p.display())))
                .collect::<Result<_>>()?;
            Some(y)
        }
        None => None,
    };
    Ok(CalibSet {
        x: m.data[..keep * features].to_vec(),
        labels,
    })
}

fn default_report(out: &Path) -> PathBuf {
    out.with_extension("quant.json")
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    ensure!(
        args.max_drop.is_finite() && args.max_drop >= 0.0,
        "--max-drop must be a non-negative number"
    );
    ensure!(
        args.percentile > 50.0 && args.percentile <= 100.0,
        "--percentile must lie in (50, 100]"
    );
    let float = FloatModel::load(&args.model)?;
    let data = read_calib(&args, float.features(), float.meta.input_shape)?;
    let calibration = match args.calibration {
        CalibArg::Minmax => Calibration::Fixed(Method::MinMax),
        CalibArg::Percentile => Calibration::Fixed(Method::Percentile(args.percentile)),
        CalibArg::Mse => Calibration::Fixed(Method::Mse),
        CalibArg::Auto => Calibration::Auto {
            percentile: args.percentile,
        },
    };
    let opts = PtqOptions {
        calibration,
        build: BuildOptions {
            name: args.name.clone().unwrap_or_else(|| float.meta.name.clone()),
            per_tensor_weights: args.per_tensor_weights,
            softmax: args.softmax,
        },
        max_drop: args.max_drop,
        bias_correction: args.bias_correction,
        search_samples: args.search_samples,
        qat: QatOptions {
            mode: args.qat,
            epochs: args.qat_epochs,
            lr: args.qat_lr,
            batch: args.qat_batch,
            temperature: args.qat_temperature,
            alpha: args.qat_alpha,
            ema: args.qat_ema,
            seed: args.qat_seed,
            holdout: args.qat_holdout,
        },
        equalize: args.equalize,
    };
    opts.qat.validate()?;
    let out = quantize(&float, &data, &opts)?;
    for w in &out.warnings {
        eprintln!("warning: {w}");
    }
    let what = if out.metric_is_accuracy {
        "accuracy"
    } else {
        "agreement with float"
    };
    println!("{}", out.report.table());
    println!(
        "calibration set ({} samples): float {what} {:.2} %, int8 {:.2} % ({:+.2} points); logits SQNR {:.1} dB",
        data.x.len() / float.features(),
        out.float_metric,
        out.int8_metric,
        out.int8_metric - out.float_metric,
        out.logits_sqnr_db
    );
    for s in &out.steps {
        let delta = match (s.before, s.after) {
            (Some(b), Some(a)) => format!(" ({b:.2} % -> {a:.2} %, {:+.2} points)", a - b),
            _ => String::new(),
        };
        let delta = match s.seconds {
            Some(t) => format!("{delta} in {t:.1} s"),
            None => delta,
        };
        println!("recovery: {}: {}{delta}", s.name, s.note);
    }
    let report = json!({
        "model": args.model.display().to_string(),
        "output": args.out.display().to_string(),
        "calibration": format!("{:?}", args.calibration).to_lowercase(),
        "percentile": args.percentile,
        "calib_samples": data.x.len() / float.features(),
        "metric": what,
        "float_metric": out.float_metric,
        "int8_metric": out.int8_metric,
        "logits_sqnr_db": if out.logits_sqnr_db.is_finite() { Some(out.logits_sqnr_db) } else { None },
        "max_drop": args.max_drop,
        "steps": out.steps,
        "warnings": out.warnings,
        "activation_ranges": out.ranges.iter().zip(&out.methods).map(|(r, m)| json!({"range": [r.0, r.1], "method": m})).collect::<Vec<_>>(),
        "per_layer": out.report,
        "flash_bytes": out.built.bytes.len(),
    });
    let report_path = args
        .report
        .clone()
        .unwrap_or_else(|| default_report(&args.out));
    if report_path == args.out {
        bail!("--report must differ from --out");
    }
    io::write_atomic(&args.out, &out.built.bytes)?;
    io::write_atomic(
        &report_path,
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    println!(
        "wrote {} ({} bytes) and {}",
        args.out.display(),
        out.built.bytes.len(),
        report_path.display()
    );
    Ok(())
}
