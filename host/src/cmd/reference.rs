//! `edgekd reference`: (re)write the reference models and their golden vectors.
//!
//! For each model: `<name>.ekd`, `<name>.input.npy` (int8 inputs after the model's own
//! preprocessing and quantization) and `<name>.expected.npy` (int8 outputs of the host
//! runtime). `inputs.npy` holds the raw float signals they all start from.

use crate::cmd::infer::run_batch;
use crate::io::{self, Matrix};
use crate::reference::{self, GOLDEN_SAMPLES, SIGNAL_LEN};
use anyhow::{Context, Result};
use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::{Interpreter, Model};
use std::path::PathBuf;

/// Arguments of `edgekd reference`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory.
    #[arg(long, default_value = "models/reference")]
    pub out: PathBuf,
}

/// Every file of the reference set: `(file name, bytes)`.
pub fn files() -> Result<Vec<(String, Vec<u8>)>> {
    let raw = Matrix {
        rows: GOLDEN_SAMPLES,
        cols: SIGNAL_LEN,
        data: reference::golden_inputs(),
    };
    let mut files = vec![("inputs.npy".to_string(), io::npy_bytes(&raw)?)];
    for (name, builder) in reference::all() {
        let bytes = builder
            .finish()
            .with_context(|| format!("building {name}"))?;
        let aligned = AlignedBytes::copy_from(&bytes);
        let model = Model::parse(aligned.as_bytes())?;
        let quantized = quantize_inputs(model, &raw)?;
        let out = run_batch(model, Some(&quantized), None)?;
        files.push((format!("{name}.ekd"), bytes));
        files.push((format!("{name}.input.npy"), io::npy_bytes(&quantized)?));
        files.push((format!("{name}.expected.npy"), io::npy_bytes(&out.int8)?));
    }
    Ok(files)
}

/// The int8 inputs the model sees for raw float rows (its preprocessing + quantization).
pub fn quantize_inputs(model: Model<'_>, raw: &Matrix<f32>) -> Result<Matrix<i8>> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena)?;
    let mut data = Vec::with_capacity(raw.data.len());
    for r in 0..raw.rows {
        interp.set_input_f32(0, raw.row(r))?;
        data.extend_from_slice(interp.input_mut(0)?);
    }
    Ok(Matrix {
        rows: raw.rows,
        cols: raw.cols,
        data,
    })
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    for (name, bytes) in files()? {
        let path = args.out.join(&name);
        io::write_atomic(&path, &bytes)?;
        eprintln!("wrote {} ({} bytes)", path.display(), bytes.len());
    }
    Ok(())
}
