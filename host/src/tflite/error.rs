//! Why a `.tflite` file could not be imported.

use edgekd_runtime::writer::WriteError;
use std::fmt;

/// How to produce a model this importer accepts; appended to every float/hybrid refusal.
pub const FULL_INT8_RECIPE: &str = "convert it to full int8 with the TFLite converter: \
converter.optimizations = [tf.lite.Optimize.DEFAULT]; \
converter.representative_dataset = <a generator of ~100 real input samples>; \
converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]; \
converter.inference_input_type = tf.int8; converter.inference_output_type = tf.int8";

/// An import failure. Nothing is written when one occurs.
#[derive(Debug)]
#[non_exhaustive]
pub enum ImportError {
    /// Not a readable TFLite flatbuffer: truncated, corrupted or another format.
    Malformed(String),
    /// A float or hybrid (dynamic-range) model, or int8 with float input/output;
    /// the message says which and how to convert it.
    NotFullInteger(String),
    /// An op `edgekd-runtime` does not run.
    UnsupportedOp {
        /// Position of the op in the subgraph's execution order.
        index: usize,
        /// TFLite op name (`TANH`, `CONCATENATION`, `CUSTOM(name)`, ...).
        op: String,
        /// Input tensor types and shapes, e.g. `INT8[1,10]`.
        inputs: String,
        /// Output tensor types and shapes.
        outputs: String,
    },
    /// A supported op used in a way the runtime cannot express (broadcasting ADD,
    /// a fused TANH, grouped convolution, ...).
    UnsupportedUse {
        /// Position of the op in the subgraph's execution order.
        index: usize,
        /// TFLite op name.
        op: String,
        /// What is not supported.
        reason: String,
    },
    /// A model-level feature the runtime lacks (several subgraphs, dynamic or
    /// rank > 4 shapes, sparse tensors, ...).
    UnsupportedModel(String),
    /// The converted model was refused by the `.ekd` writer.
    Write(WriteError),
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImportError::Malformed(m) => write!(f, "not a valid .tflite model: {m}"),
            ImportError::NotFullInteger(m) => write!(f, "{m}; {FULL_INT8_RECIPE}"),
            ImportError::UnsupportedOp {
                index,
                op,
                inputs,
                outputs,
            } => write!(
                f,
                "op {index} ({op}, inputs {inputs}, outputs {outputs}) is not supported by \
                 edgekd-runtime; supported ops: {}",
                super::SUPPORTED_OPS.join(", ")
            ),
            ImportError::UnsupportedUse { index, op, reason } => {
                write!(f, "op {index} ({op}): {reason}")
            }
            ImportError::UnsupportedModel(m) => write!(f, "unsupported model: {m}"),
            ImportError::Write(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ImportError::Write(e) => Some(e),
            _ => None,
        }
    }
}

impl From<WriteError> for ImportError {
    fn from(e: WriteError) -> Self {
        ImportError::Write(e)
    }
}
