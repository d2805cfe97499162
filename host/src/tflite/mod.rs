//! Import of full-integer (int8) TensorFlow Lite models into `.ekd`.
//!
//! The `.tflite` flatbuffer is read with the flatc-generated reader of TFLite's public
//! schema that `tract-tflite` ships (verified before use, so bad files are errors, not
//! panics). Ops map one to one onto `edgekd-runtime` ops; requantization parameters are
//! derived as TFLite's own `Prepare` functions derive them, so that the runtime's
//! outputs equal TFLite's reference kernels bit for bit (`models/tflite/` holds the
//! proof: converter-made models and TFLite's outputs).
//!
//! Refused, with nothing converted: float and hybrid models, int8 models with float
//! input/output, ops outside [`SUPPORTED_OPS`], and supported ops used in ways the
//! runtime cannot express.

mod convert;
mod error;
mod graph;
pub mod padding;

pub use error::{ImportError, FULL_INT8_RECIPE};

use graph::Graph;
use tract_tflite::tflite::{BuiltinOperator as B, TensorType};

/// TFLite ops the importer converts. EXPAND_DIMS and SQUEEZE become reshapes.
pub const SUPPORTED_OPS: &[&str] = &[
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "MAX_POOL_2D",
    "AVERAGE_POOL_2D",
    "MEAN",
    "ADD",
    "RESHAPE",
    "EXPAND_DIMS",
    "SQUEEZE",
    "SOFTMAX",
];

const SUPPORTED_CODES: &[B] = &[
    B::CONV_2D,
    B::DEPTHWISE_CONV_2D,
    B::FULLY_CONNECTED,
    B::MAX_POOL_2D,
    B::AVERAGE_POOL_2D,
    B::MEAN,
    B::ADD,
    B::RESHAPE,
    B::EXPAND_DIMS,
    B::SQUEEZE,
    B::SOFTMAX,
];

/// A converted model.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The `.ekd` file.
    pub ekd: Vec<u8>,
    /// The TFLite ops, in order (`CONV_2D`, ...).
    pub ops: Vec<String>,
    /// Things the user should know (places where bit-exactness with TFLite is not
    /// guaranteed).
    pub notes: Vec<String>,
}

/// Converts a `.tflite` file to an `.ekd` model called `name`.
pub fn import(tflite: &[u8], name: &str) -> Result<Imported, ImportError> {
    let g = graph::read(tflite)?;
    check_full_integer(&g)?;
    check_ops(&g)?;
    let (ekd, notes) = convert::Converter::new(&g, name).run()?;
    Ok(Imported {
        ekd,
        ops: g.ops.iter().map(|o| o.name.clone()).collect(),
        notes,
    })
}

/// Refuses float, hybrid and float-I/O models with a message that says which.
fn check_full_integer(g: &Graph<'_>) -> Result<(), ImportError> {
    let refuse = |m: String| Err(ImportError::NotFullInteger(m));
    for op in &g.ops {
        let ins = || op.inputs.iter().flatten().map(|&t| &g.tensors[t]);
        let float_data = ins().any(|t| t.is_float() && t.data.is_none());
        let int_weights = ins()
            .any(|t| t.data.is_some() && matches!(t.dtype, TensorType::INT8 | TensorType::INT4));
        if float_data && int_weights {
            return refuse(format!(
                "hybrid (dynamic-range quantized) model: op {} ({}) takes float activations \
                 with integer weights {}; edgekd runs full-integer models only",
                op.index,
                op.name,
                g.describe(&op.inputs)
            ));
        }
    }
    let boundary = |c: B| matches!(c, B::QUANTIZE | B::DEQUANTIZE);
    for op in g.ops.iter().filter(|o| !boundary(o.code)) {
        let touches_float = op
            .inputs
            .iter()
            .flatten()
            .chain(&op.outputs)
            .any(|&t| g.tensors[t].is_float());
        if touches_float {
            return refuse(format!(
                "float model: op {} ({}) computes in floating point (inputs {}); edgekd runs \
                 full-integer models only",
                op.index,
                op.name,
                g.describe(&op.inputs)
            ));
        }
    }
    let float_io: Vec<String> = g
        .inputs
        .iter()
        .chain(&g.outputs)
        .map(|&t| &g.tensors[t])
        .filter(|t| t.is_float())
        .map(|t| format!("'{}' {}", t.name, t.describe()))
        .collect();
    if !float_io.is_empty() {
        return refuse(format!(
            "the model computes in int8 but its input/output {} is float (QUANTIZE/DEQUANTIZE \
             ops at the boundary); edgekd models take and return int8",
            float_io.join(", ")
        ));
    }
    Ok(())
}

/// Refuses the first op the runtime does not have, naming it and its tensors.
fn check_ops(g: &Graph<'_>) -> Result<(), ImportError> {
    match g.ops.iter().find(|o| !SUPPORTED_CODES.contains(&o.code)) {
        Some(op) => {
            let outs: Vec<Option<usize>> = op.outputs.iter().map(|&t| Some(t)).collect();
            Err(ImportError::UnsupportedOp {
                index: op.index,
                op: op.name.clone(),
                inputs: g.describe(&op.inputs),
                outputs: g.describe(&outs),
            })
        }
        None => Ok(()),
    }
}
