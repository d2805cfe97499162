//! `edgekd infer`: run the int8 runtime over a batch of inputs.

use crate::io::{self, Matrix, NpyKind};
use anyhow::{bail, Context, Result};
use edgekd_runtime::{Interpreter, Model};
use std::path::PathBuf;

/// Arguments of `edgekd infer`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.ekd` model.
    pub model: PathBuf,
    /// Inputs, one sample per row: int8 (used as is) or float (preprocessed and
    /// quantized with the model's stored parameters).
    #[arg(long)]
    pub input: PathBuf,
    /// Where to write the outputs (`.npy`, one row per sample).
    #[arg(long)]
    pub output: PathBuf,
    /// Write dequantized float32 outputs instead of int8.
    #[arg(long)]
    pub dequantize: bool,
}

/// Outputs of a batch run: int8 rows and their dequantized values.
pub struct BatchOutput {
    /// int8 outputs, one row per sample.
    pub int8: Matrix<i8>,
    /// The same, dequantized.
    pub float: Matrix<f32>,
}

/// Runs `model` on every row of an int8 or float input matrix.
pub fn run_batch(
    model: Model<'_>,
    int8: Option<&Matrix<i8>>,
    float: Option<&Matrix<f32>>,
) -> Result<BatchOutput> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena)?;
    let in_len = model.input(0)?.elements();
    let out_len = model.output(0)?.elements();
    let (rows, cols) = match (int8, float) {
        (Some(m), _) => (m.rows, m.cols),
        (_, Some(m)) => (m.rows, m.cols),
        _ => bail!("no input"),
    };
    if cols != in_len {
        bail!("inputs have {cols} values per sample but the model takes {in_len}");
    }
    let mut out8 = Vec::with_capacity(rows * out_len);
    let mut outf = vec![0f32; rows * out_len];
    for r in 0..rows {
        match (int8, float) {
            (Some(m), _) => interp.input_mut(0)?.copy_from_slice(m.row(r)),
            (_, Some(m)) => interp
                .set_input_f32(0, m.row(r))
                .with_context(|| format!("sample {r}"))?,
            _ => unreachable!("checked above"),
        }
        interp.invoke().with_context(|| format!("sample {r}"))?;
        out8.extend_from_slice(interp.output(0)?);
        interp.output_f32(0, &mut outf[r * out_len..(r + 1) * out_len])?;
    }
    Ok(BatchOutput {
        int8: Matrix {
            rows,
            cols: out_len,
            data: out8,
        },
        float: Matrix {
            rows,
            cols: out_len,
            data: outf,
        },
    })
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let bytes = io::read_model(&args.model)?;
    let model = Model::parse(bytes.as_bytes())
        .with_context(|| format!("{} is not a valid model", args.model.display()))?;
    let out = match io::npy_kind(&args.input)? {
        NpyKind::I8 => run_batch(model, Some(&io::read_i8_matrix(&args.input)?), None)?,
        NpyKind::Float => run_batch(model, None, Some(&io::read_f32_matrix(&args.input)?))?,
        NpyKind::Int => bail!("{}: inputs must be int8 or float", args.input.display()),
    };
    let bytes = if args.dequantize {
        io::npy_bytes(&out.float)?
    } else {
        io::npy_bytes(&out.int8)?
    };
    io::write_atomic(&args.output, &bytes)?;
    eprintln!(
        "ran {} samples, wrote {}",
        out.int8.rows,
        args.output.display()
    );
    Ok(())
}
