//! `edgekd eval`: teacher f32 / student f32 / student int8 (edgekd-runtime) on a test set.

use crate::eval::{evaluate, plot, TestSet};
use crate::io;
use crate::quant::float::FloatModel;
use crate::quant::int8::Int8Model;
use anyhow::{ensure, Context, Result};
use std::path::PathBuf;

/// Arguments of `edgekd eval`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The int8 `.ekd` model.
    pub model: PathBuf,
    /// Test features (`.npy`, one raw sample per row).
    #[arg(long)]
    pub data: PathBuf,
    /// Test labels (`.npy`).
    #[arg(long)]
    pub labels: PathBuf,
    /// The float student it was quantized from (adds f32 accuracy and the per-layer report).
    #[arg(long)]
    pub float: Option<PathBuf>,
    /// A float teacher (`model.safetensors`).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// The model was quantized with `--equalize`: equalize `--float` the same way before
    /// comparing layer by layer (the logits are the same either way).
    #[arg(long, requires = "float")]
    pub equalize: bool,
    /// Output directory: report.json, summary.md, confusion.svg, sqnr.svg.
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let int8 = Int8Model::new(&bytes).with_context(|| format!("{}", args.model.display()))?;
    let x = io::read_f32_matrix(&args.data)?;
    let y = io::read_labels(&args.labels)?;
    ensure!(
        y.len() == x.rows,
        "{} labels for {} samples",
        y.len(),
        x.rows
    );
    let y: Vec<u32> = y
        .iter()
        .map(|&v| u32::try_from(v).with_context(|| format!("{}: label {v}", args.labels.display())))
        .collect::<Result<_>>()?;
    let mut student = args.float.as_deref().map(FloatModel::load).transpose()?;
    if let (true, Some(m)) = (args.equalize, student.as_mut()) {
        crate::quant::equalize::equalize(m);
    }
    let teacher = args.teacher.as_deref().map(FloatModel::load).transpose()?;
    let report = evaluate(
        &int8,
        student.as_ref(),
        teacher.as_ref(),
        &TestSet { x: x.data, y },
    )?;
    let summary = report.summary();
    print!("{summary}");
    io::write_atomic(
        &args.out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    io::write_atomic(&args.out.join("summary.md"), summary.as_bytes())?;
    io::write_atomic(
        &args.out.join("confusion.svg"),
        plot::confusion(
            &format!("{} (int8) confusion matrix", report.model),
            &report.confusion,
            &report.labels,
        )
        .as_bytes(),
    )?;
    let rows = report.sqnr_rows();
    if !rows.is_empty() {
        io::write_atomic(
            &args.out.join("sqnr.svg"),
            plot::sqnr_bars(
                &format!("{}: float vs int8 SQNR per op", report.model),
                &rows,
            )
            .as_bytes(),
        )?;
    }
    println!("\nwrote {}", args.out.display());
    Ok(())
}
