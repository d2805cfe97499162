//! `edgekd distill`: train a student from one or more teachers (edgekd float models or ONNX).

use super::train::{load_recipe, report, set_threads, Common};
use crate::teacher::{self, LoadOptions, OutputKind};
use crate::train::{self, recipe::KdLoss, RunConfig};
use anyhow::{ensure, Context, Result};
use std::path::PathBuf;

/// Arguments of `edgekd distill`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
    /// Teacher file: an edgekd `model.safetensors` or an `.onnx` classifier. Repeat for an
    /// ensemble (probabilities are averaged).
    #[arg(long = "teacher", required = true)]
    pub teachers: Vec<PathBuf>,
    /// Shape of one ONNX teacher input without the batch, e.g. `1,40`, when the file leaves it open.
    #[arg(long, value_delimiter = ',')]
    pub teacher_input_shape: Option<Vec<usize>>,
    /// How to read ONNX teacher outputs.
    #[arg(long, value_enum, default_value_t = OutputKind::Auto)]
    pub teacher_output: OutputKind,
    /// Directory for cached teacher outputs (shared between runs with the same teacher).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Override the recipe's temperature.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Override the recipe's alpha.
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Override the recipe's loss (hinton or dkd).
    #[arg(long)]
    pub loss: Option<String>,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let c = &args.common;
    set_threads(c.threads);
    let mut loaded = load_recipe(c)?;
    let d = &mut loaded.recipe.distill;
    if let Some(t) = args.temperature {
        d.temperature = t;
    }
    if let Some(a) = args.alpha {
        d.alpha = a;
    }
    if let Some(l) = &args.loss {
        d.loss = match l.as_str() {
            "hinton" => KdLoss::Hinton,
            "dkd" => KdLoss::Dkd,
            other => anyhow::bail!("--loss must be hinton or dkd, not `{other}`"),
        };
    }
    d.validate()?;
    let splits = train::load_splits(&loaded)?;
    let opts = LoadOptions {
        input_shape: args.teacher_input_shape.clone(),
        output: args.teacher_output,
        features: splits.train.features(),
        classes: loaded.recipe.data.classes,
    };
    ensure!(
        opts.input_shape
            .as_ref()
            .is_none_or(|s| !s.is_empty() && s.iter().all(|&d| d > 0)),
        "--teacher-input-shape must list positive dimensions"
    );
    let mut teachers = Vec::new();
    for p in &args.teachers {
        teachers.push(teacher::load(p, &opts).with_context(|| format!("teacher {}", p.display()))?);
    }
    let seed = c.seed.unwrap_or(loaded.recipe.train.seed);
    let summary = train::run(RunConfig {
        recipe: &loaded,
        out: c.out.clone(),
        seed,
        resume: c.resume,
        halt_after: c.halt_after,
        teachers,
        cache_dir: args.cache_dir.clone(),
        progress: !c.quiet,
        export_onnx: c.onnx,
        splits,
    })?;
    report(&summary, &c.out);
    Ok(())
}
