//! `edgekd inspect`: print what a model file holds and what it costs.

use crate::io;
use anyhow::{Context, Result};
use edgekd_runtime::format::{section, Quant, Storage};
use edgekd_runtime::Model;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Arguments of `edgekd inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `.ekd` model.
    pub model: PathBuf,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// A model's figures, as printed and as written to reports.
#[derive(Debug, Serialize)]
pub struct Summary {
    /// Model name.
    pub name: String,
    /// Format version.
    pub version: String,
    /// File size (what goes to flash).
    pub flash_bytes: usize,
    /// Arena the memory plan needs (RAM for activations).
    pub arena_bytes: usize,
    /// Weight and bias bytes.
    pub payload_bytes: usize,
    /// Everything else.
    pub overhead_bytes: usize,
    /// Overhead as a percentage of the file.
    pub overhead_percent: f64,
    /// Parameter count (weights and biases).
    pub params: usize,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Sections.
    pub sections: Vec<SectionRow>,
    /// Tensors.
    pub tensors: Vec<TensorRow>,
    /// Ops.
    pub ops: Vec<OpRow>,
    /// Class labels.
    pub labels: Vec<String>,
}

/// One section.
#[derive(Debug, Serialize)]
pub struct SectionRow {
    /// Name.
    pub kind: String,
    /// Offset.
    pub offset: usize,
    /// Bytes.
    pub bytes: usize,
}

/// One tensor.
#[derive(Debug, Serialize)]
pub struct TensorRow {
    /// Index.
    pub index: usize,
    /// dtype.
    pub dtype: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// "arena" or "const".
    pub storage: String,
    /// Arena or data offset.
    pub offset: usize,
    /// Bytes.
    pub bytes: usize,
    /// Quantization, readable.
    pub quant: String,
}

/// One op.
#[derive(Debug, Serialize)]
pub struct OpRow {
    /// Index.
    pub index: usize,
    /// Op name.
    pub op: String,
    /// Input tensor indices.
    pub inputs: Vec<usize>,
    /// Output tensor index.
    pub output: usize,
    /// Output shape.
    pub output_shape: Vec<usize>,
    /// Parameters (weights and biases) of the op.
    pub params: usize,
    /// MACs.
    pub macs: u64,
    /// Arena range of the output.
    pub arena_offset: usize,
    /// Output bytes.
    pub arena_bytes: usize,
}

fn section_name(kind: u16) -> String {
    match kind {
        section::GRAPH => "graph".into(),
        section::TENSORS => "tensors".into(),
        section::OPS => "ops".into(),
        section::DATA => "data".into(),
        section::META => "meta".into(),
        k => format!("unknown({k})"),
    }
}

fn quant_text(q: &Quant<'_>) -> String {
    match q {
        Quant::None => "-".into(),
        Quant::PerTensor { scale, zero_point } => format!("scale {scale:.6} zp {zero_point}"),
        Quant::PerChannel { scales, axis } => {
            let lo = scales.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = scales.iter().copied().fold(0.0f32, f32::max);
            format!(
                "per-channel axis {axis}: {} scales {lo:.6}..{hi:.6}",
                scales.len()
            )
        }
    }
}

/// Collects a model's figures.
pub fn summarize(model: &Model<'_>) -> Result<Summary> {
    let mut tensors = Vec::new();
    let mut params = 0usize;
    for i in 0..model.tensor_count() {
        let t = model.tensor(i)?;
        if t.storage == Storage::Constant {
            params += t.elements();
        }
        tensors.push(TensorRow {
            index: i,
            dtype: format!("{:?}", t.dtype).to_lowercase(),
            shape: t.dims().to_vec(),
            storage: if t.storage == Storage::Arena {
                "arena"
            } else {
                "const"
            }
            .into(),
            offset: t.range().start,
            bytes: t.byte_len(),
            quant: quant_text(&t.quant),
        });
    }
    let mut ops = Vec::new();
    for (index, op) in model.ops().enumerate() {
        let op = op?;
        let inputs: Vec<usize> = (0..op.input_count()).filter_map(|i| op.input(i)).collect();
        let op_params = inputs
            .iter()
            .filter_map(|&t| model.tensor(t).ok())
            .filter(|t| t.storage == Storage::Constant)
            .map(|t| t.elements())
            .sum();
        let out = model.tensor(op.output())?;
        ops.push(OpRow {
            index,
            op: op.code.name().into(),
            inputs,
            output: op.output(),
            output_shape: out.dims().to_vec(),
            params: op_params,
            macs: op.macs(model)?,
            arena_offset: out.range().start,
            arena_bytes: out.byte_len(),
        });
    }
    let meta = model.metadata();
    let flash = model.as_bytes().len();
    Ok(Summary {
        name: meta.map(|m| m.name.to_string()).unwrap_or_default(),
        version: format!("{}.{}", model.version().0, model.version().1),
        flash_bytes: flash,
        arena_bytes: model.arena_size(),
        payload_bytes: model.payload_bytes(),
        overhead_bytes: model.overhead_bytes(),
        overhead_percent: 100.0 * model.overhead_bytes() as f64 / flash as f64,
        params,
        macs: model.macs(),
        sections: model
            .sections()
            .map(|s| SectionRow {
                kind: section_name(s.kind),
                offset: s.offset,
                bytes: s.len,
            })
            .collect(),
        tensors,
        ops,
        labels: meta
            .map(|m| m.labels.iter().map(String::from).collect())
            .unwrap_or_default(),
    })
}

/// Renders the summary as text tables.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "model '{}' (format {})", s.name, s.version);
    let _ = writeln!(o, "\nsections:");
    for sec in &s.sections {
        let _ = writeln!(
            o,
            "  {:<8} offset {:>6}  {:>6} bytes",
            sec.kind, sec.offset, sec.bytes
        );
    }
    let _ = writeln!(o, "\ntensors:");
    let _ = writeln!(
        o,
        "  {:>3} {:<5} {:<16} {:<6} {:>6} {:>6}  quantization",
        "#", "type", "shape", "where", "offset", "bytes"
    );
    for t in &s.tensors {
        let _ = writeln!(
            o,
            "  {:>3} {:<5} {:<16} {:<6} {:>6} {:>6}  {}",
            t.index,
            t.dtype,
            format!("{:?}", t.shape),
            t.storage,
            t.offset,
            t.bytes,
            t.quant
        );
    }
    let _ = writeln!(o, "\nops:");
    let _ = writeln!(
        o,
        "  {:>3} {:<16} {:<12} {:<16} {:>7} {:>8} {:>13}",
        "#", "op", "inputs", "output shape", "params", "MACs", "arena out"
    );
    for op in &s.ops {
        let _ = writeln!(
            o,
            "  {:>3} {:<16} {:<12} {:<16} {:>7} {:>8} {:>6}+{:<6}",
            op.index,
            op.op,
            format!("{:?}", op.inputs),
            format!("{:?}", op.output_shape),
            op.params,
            op.macs,
            op.arena_offset,
            op.arena_bytes
        );
    }
    let _ = writeln!(o, "\ntotals:");
    let _ = writeln!(o, "  params          {}", s.params);
    let _ = writeln!(o, "  MACs            {}", s.macs);
    let _ = writeln!(o, "  flash bytes     {}", s.flash_bytes);
    let _ = writeln!(o, "  arena bytes     {}", s.arena_bytes);
    let _ = writeln!(
        o,
        "  format overhead {} bytes ({:.1} % of the file; weights+biases {} bytes)",
        s.overhead_bytes, s.overhead_percent, s.payload_bytes
    );
    if !s.labels.is_empty() {
        let _ = writeln!(o, "  labels          {}", s.labels.join(", "));
    }
    o
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let bytes = io::read_model(&args.model)?;
    let model = Model::parse(bytes.as_bytes())
        .with_context(|| format!("{} is not a valid model", args.model.display()))?;
    let summary = summarize(&model)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", render(&summary));
    }
    Ok(())
}
