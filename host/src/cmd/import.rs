//! `edgekd import`: convert a full-integer `.tflite` model to `.ekd`.

use crate::{io, tflite};
use anyhow::{Context, Result};
use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::Model;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `edgekd import`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.tflite` model (full integer: int8 activations, input and output).
    pub model: PathBuf,
    /// Where to write the `.ekd` model (written only if the whole import succeeds).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Model name stored in the file (default: the input file's stem).
    #[arg(long)]
    pub name: Option<String>,
}

/// Runs `edgekd import`.
pub fn run(a: Args) -> Result<()> {
    let bytes =
        std::fs::read(&a.model).with_context(|| format!("cannot read {}", a.model.display()))?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => a
            .model
            .file_stem()
            .map_or("model".into(), |s| s.to_string_lossy().into_owned()),
    };
    let imported = tflite::import(&bytes, &name)
        .with_context(|| format!("cannot import {}", a.model.display()))?;
    io::write_atomic(&a.output, &imported.ekd)?;
    let aligned = AlignedBytes::copy_from(&imported.ekd);
    let model = Model::parse(aligned.as_bytes()).context("re-reading the written model")?;
    let mut counts = BTreeMap::new();
    for op in &imported.ops {
        *counts.entry(op.as_str()).or_insert(0) += 1;
    }
    let ops: Vec<String> = counts.iter().map(|(op, n)| format!("{n} {op}")).collect();
    println!(
        "{} -> {}: {} ops ({}), {} MACs, {} bytes, arena {} bytes",
        a.model.display(),
        a.output.display(),
        imported.ops.len(),
        ops.join(", "),
        model.macs(),
        imported.ekd.len(),
        model.arena_size()
    );
    for note in &imported.notes {
        println!("note: {note}");
    }
    Ok(())
}
