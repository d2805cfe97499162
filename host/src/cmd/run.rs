//! `edgekd run`: one recipe, teacher to measured int8 model on every target.

use crate::pipeline::{self, recipe, Options};
use anyhow::{bail, Result};
use std::path::PathBuf;

/// Arguments of `edgekd run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pipeline recipe (TOML; see models/recipes/mnist1d_demo.toml).
    pub recipe: PathBuf,
    /// Output folder (default: the recipe's `out`, else `runs/<name>`).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Redo every stage, even those whose inputs did not change.
    #[arg(long)]
    pub force: bool,
    /// No progress bars or stage lines.
    #[arg(long)]
    pub quiet: bool,
    /// Print report.json instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Compute threads for training (tiny models train fastest on one).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    super::train::set_threads(args.threads);
    let p = recipe::load(&args.recipe)?;
    let out = match (&args.out, &p.recipe.out) {
        (Some(o), _) => o.clone(),
        (None, Some(o)) => crate::io::join_clean(&p.base, o),
        (None, None) => PathBuf::from("runs").join(&p.recipe.name),
    };
    let report = pipeline::run(
        &p,
        &Options {
            out,
            force: args.force,
            progress: !args.quiet,
        },
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if !report.all_bit_exact() {
        bail!("a target's outputs differ from the host runtime's (see the table)");
    }
    Ok(())
}
