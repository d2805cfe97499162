//! `edgekd train`: train a model (a teacher, or a labels-only student) from a recipe.

use crate::train::{self, recipe, RunConfig};
use anyhow::Result;
use std::path::PathBuf;

/// Options shared by `train` and `distill`.
#[derive(Debug, clap::Args)]
pub struct Common {
    /// Recipe file (TOML).
    #[arg(long)]
    pub recipe: PathBuf,
    /// Output directory (model.safetensors, metrics.jsonl, curves.svg, summary.json, checkpoint).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed for initialization, batch order, augmentation and dropout (default: the recipe's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Override the recipe's epoch count.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the recipe's peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Continue from the output directory's checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after this many epochs (checkpoint written), as if the run had been killed.
    #[arg(long, hide = true)]
    pub halt_after: Option<usize>,
    /// Also write model.onnx.
    #[arg(long)]
    pub onnx: bool,
    /// No progress bar or model summary.
    #[arg(long)]
    pub quiet: bool,
    /// Compute threads (tiny models train fastest on one).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Arguments of `edgekd train`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Shared options.
    #[command(flatten)]
    pub common: Common,
}

/// Applies the thread count before any tensor work starts (candle and rayon read it lazily).
pub fn set_threads(n: usize) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", n.max(1).to_string());
    }
}

/// Loads the recipe with command-line overrides applied.
pub fn load_recipe(c: &Common) -> Result<recipe::Loaded> {
    let mut loaded = recipe::load(&c.recipe)?;
    if let Some(e) = c.epochs {
        anyhow::ensure!(e > 0, "--epochs must be positive");
        loaded.recipe.train.epochs = e;
    }
    if let Some(lr) = c.lr {
        anyhow::ensure!(
            lr.is_finite() && lr > 0.0,
            "--lr must be a positive number, got {lr}"
        );
        loaded.recipe.train.lr = lr;
    }
    Ok(loaded)
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let c = &args.common;
    set_threads(c.threads);
    let loaded = load_recipe(c)?;
    let splits = train::load_splits(&loaded)?;
    let seed = c.seed.unwrap_or(loaded.recipe.train.seed);
    let summary = train::run(RunConfig {
        recipe: &loaded,
        out: c.out.clone(),
        seed,
        resume: c.resume,
        halt_after: c.halt_after,
        teachers: Vec::new(),
        cache_dir: None,
        progress: !c.quiet,
        export_onnx: c.onnx,
        splits,
    })?;
    report(&summary, &c.out);
    Ok(())
}

/// Prints the outcome.
pub fn report(s: &train::Summary, out: &std::path::Path) {
    if s.halted {
        eprintln!(
            "halted after epoch {} (checkpoint in {})",
            s.epochs,
            out.display()
        );
    } else {
        println!(
            "{}: test accuracy {:.2} % ({} params, {} MACs, {} epochs, {:.1} s) -> {}",
            s.name,
            100.0 * s.test_acc,
            s.params,
            s.macs,
            s.epochs,
            s.seconds,
            out.join("model.safetensors").display()
        );
    }
}
