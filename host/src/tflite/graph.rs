//! A checked, plain view of a TFLite model's single subgraph: tensors with their
//! quantization and constant bytes, ops with their resolved builtin code.
//!
//! The flatbuffer is verified first (bounds, offsets, nesting), so a truncated or
//! corrupted file is an error here, never a panic later.

use super::error::ImportError;
use tract_tflite::tflite::{self, BuiltinOperator, TensorType};

/// One tensor of the subgraph.
#[derive(Debug, Clone)]
pub(crate) struct Tensor<'a> {
    pub name: &'a str,
    pub dtype: TensorType,
    pub shape: Vec<i32>,
    pub scales: Vec<f32>,
    pub zero_points: Vec<i64>,
    pub quantized_dimension: i32,
    /// Constant bytes; `None` for tensors computed at run time.
    pub data: Option<&'a [u8]>,
}

impl Tensor<'_> {
    /// `INT8[1,40,1]`, as error messages show tensors.
    pub fn describe(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        format!("{}[{}]", type_name(self.dtype), dims.join(","))
    }

    pub fn is_float(&self) -> bool {
        matches!(
            self.dtype,
            TensorType::FLOAT32 | TensorType::FLOAT16 | TensorType::FLOAT64
        )
    }
}

/// One op, in execution order.
#[derive(Clone)]
pub(crate) struct Op<'a> {
    pub index: usize,
    pub code: BuiltinOperator,
    /// `CONV_2D`, `CUSTOM(name)`, ...
    pub name: String,
    /// Optional inputs (index -1 in the file) are `None`.
    pub inputs: Vec<Option<usize>>,
    pub outputs: Vec<usize>,
    pub raw: tflite::Operator<'a>,
}

/// The subgraph.
pub(crate) struct Graph<'a> {
    pub tensors: Vec<Tensor<'a>>,
    pub ops: Vec<Op<'a>>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

impl Graph<'_> {
    /// `INT8[1,10], INT8[10,32]` for a list of tensor slots.
    pub fn describe(&self, slots: &[Option<usize>]) -> String {
        let parts: Vec<String> = slots
            .iter()
            .map(|s| s.map_or("(none)".into(), |t| self.tensors[t].describe()))
            .collect();
        format!("[{}]", parts.join(", "))
    }
}

pub(crate) fn type_name(t: TensorType) -> String {
    t.variant_name()
        .map_or_else(|| format!("type {}", t.0), str::to_string)
}

fn malformed<T>(msg: impl Into<String>) -> Result<T, ImportError> {
    Err(ImportError::Malformed(msg.into()))
}

fn index(v: i32, len: usize, what: &str) -> Result<usize, ImportError> {
    match usize::try_from(v) {
        Ok(i) if i < len => Ok(i),
        _ => malformed(format!("{what} index {v} out of range (0..{len})")),
    }
}

/// Reads and checks the model's only subgraph.
pub(crate) fn read(bytes: &[u8]) -> Result<Graph<'_>, ImportError> {
    if bytes.len() < 8 || &bytes[4..8] != tflite::MODEL_IDENTIFIER.as_bytes() {
        return malformed(format!(
            "no \"{}\" file identifier ({} bytes): not a TFLite flatbuffer",
            tflite::MODEL_IDENTIFIER,
            bytes.len()
        ));
    }
    let model = tflite::root_as_model(bytes)
        .map_err(|e| ImportError::Malformed(format!("flatbuffer verification failed: {e}")))?;
    if model.version() != 3 {
        return Err(ImportError::UnsupportedModel(format!(
            "TFLite schema version {} (only version 3 is known)",
            model.version()
        )));
    }
    let subgraphs = model
        .subgraphs()
        .ok_or_else(|| ImportError::Malformed("no subgraphs".into()))?;
    if subgraphs.len() != 1 {
        return Err(ImportError::UnsupportedModel(format!(
            "{} subgraphs (control flow or several signatures); edgekd imports single-graph models",
            subgraphs.len()
        )));
    }
    let sg = subgraphs.get(0);
    let buffers = model.buffers();
    let n_buffers = buffers.map_or(0, |b| b.len());
    let mut tensors = Vec::new();
    for (i, t) in sg.tensors().into_iter().flatten().enumerate() {
        let name = t.name().unwrap_or("");
        if t.sparsity().is_some() {
            return Err(ImportError::UnsupportedModel(format!(
                "tensor {i} ('{name}') is sparse"
            )));
        }
        let data = match buffers {
            Some(b) if t.buffer() != 0 => {
                let bi = index(t.buffer() as i32, n_buffers, "buffer")?;
                b.get(bi)
                    .data()
                    .map(|d| d.bytes())
                    .filter(|d| !d.is_empty())
            }
            _ => None,
        };
        let q = t.quantization();
        tensors.push(Tensor {
            name,
            dtype: t.type_(),
            shape: t.shape().map(|s| s.iter().collect()).unwrap_or_default(),
            scales: q
                .and_then(|q| q.scale())
                .map(|s| s.iter().collect())
                .unwrap_or_default(),
            zero_points: q
                .and_then(|q| q.zero_point())
                .map(|z| z.iter().collect())
                .unwrap_or_default(),
            quantized_dimension: q.map_or(0, |q| q.quantized_dimension()),
            data,
        });
    }
    let codes: Vec<_> = model.operator_codes().into_iter().flatten().collect();
    let mut ops = Vec::new();
    for (i, op) in sg.operators().into_iter().flatten().enumerate() {
        let oc = codes[index(op.opcode_index() as i32, codes.len(), "operator code")?];
        // TFLite `GetBuiltinCode`: newer files keep small codes in the deprecated
        // int8 field and large ones in the int32 field.
        let code = BuiltinOperator(
            oc.builtin_code()
                .0
                .max(i32::from(oc.deprecated_builtin_code())),
        );
        let name = if code == BuiltinOperator::CUSTOM {
            format!("CUSTOM({})", oc.custom_code().unwrap_or("?"))
        } else {
            code.variant_name()
                .map_or_else(|| format!("builtin {}", code.0), str::to_string)
        };
        let mut inputs = Vec::new();
        for t in op.inputs().into_iter().flatten() {
            inputs.push(if t < 0 {
                None
            } else {
                Some(index(t, tensors.len(), "tensor")?)
            });
        }
        let outputs = op
            .outputs()
            .into_iter()
            .flatten()
            .map(|t| index(t, tensors.len(), "tensor"))
            .collect::<Result<_, _>>()?;
        ops.push(Op {
            index: i,
            code,
            name,
            inputs,
            outputs,
            raw: op,
        });
    }
    let io = |v: Vec<i32>| -> Result<Vec<usize>, ImportError> {
        v.into_iter()
            .map(|t| index(t, tensors.len(), "graph input/output tensor"))
            .collect()
    };
    let inputs = io(sg.inputs().map(|v| v.iter().collect()).unwrap_or_default())?;
    let outputs = io(sg.outputs().map(|v| v.iter().collect()).unwrap_or_default())?;
    Ok(Graph {
        tensors,
        ops,
        inputs,
        outputs,
    })
}
