//! `edgekd export`: an `.ekd` model as `.ekd`, C header, Rust source or ONNX.

use crate::export::{export, Format};
use crate::io;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Arguments of `edgekd export`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.ekd` model.
    pub model: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Ekd)]
    pub format: Format,
    /// Output file.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Array/static name in C and Rust outputs (default: the output file stem).
    #[arg(long)]
    pub symbol: Option<String>,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let symbol = args.symbol.clone().unwrap_or_else(|| {
        args.out
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned())
    });
    let source = args
        .model
        .file_name()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let out = export(&bytes, args.format, &symbol, &source)?;
    io::write_atomic(&args.out, &out)?;
    println!(
        "wrote {} ({:?}, {} bytes; model {} bytes)",
        args.out.display(),
        args.format,
        out.len(),
        bytes.len()
    );
    Ok(())
}
