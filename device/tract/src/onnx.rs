//! The ONNX file the host exports (`edgekd export model.ekd --format onnx`), run
//! through tract-onnx with int8 in and int8 out (feature `onnx`).
//!
//! The exported graph takes float features and returns dequantized floats: `input ->
//! Reshape -> Sub -> Mul (preprocessing) -> QuantizeLinear -> ... int8 QLinear ops ...
//! -> DequantizeLinear [-> Softmax] -> Reshape -> Identity -> output`. To compare with
//! the int8 runtimes on the same int8 samples, [`OnnxModel`] cuts the float ends off
//! before loading: the graph input becomes the int8 tensor QuantizeLinear produced (the
//! leading Reshape stays) and the output the int8 tensor DequantizeLinear consumed.
//! A float softmax at the end stays float in the graph (tract 0.23 mis-evaluates
//! DequantizeLinear -> Softmax -> QuantizeLinear) and [`OnnxModel::run`] quantizes it
//! with TFLite's fixed softmax output parameters (scale 1/256, zero point -128).
//!
//! Not bit-exact with `edgekd-runtime`: ONNX requantizes with a float multiply and
//! rounds ties to even where the runtime uses the Q31 fixed-point multiplier. The
//! export documents the bound (MLP 1 LSB, CNN 2 LSB); host/tests/onnx_export.rs checks
//! it on the reference models.

use crate::error::{Error, Result};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// An exported ONNX model, optimized by tract, with int8 input and output.
#[derive(Debug)]
pub struct OnnxModel {
    plan: std::sync::Arc<TypedSimplePlan>,
    ends: Ends,
}

fn unsupported(msg: impl Into<String>) -> Error {
    Error::Input(format!(
        "not an ONNX file exported by edgekd (`edgekd export --format onnx`): {}",
        msg.into()
    ))
}

/// The node producing the value `name`.
fn producer<'a>(g: &'a pb::GraphProto, name: &str) -> Option<(usize, &'a pb::NodeProto)> {
    g.node
        .iter()
        .enumerate()
        .find(|(_, n)| n.output.iter().any(|o| o == name))
}

fn dims_of(v: &pb::ValueInfoProto) -> Option<Vec<i64>> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match d.value {
                Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) => v,
                _ => 1,
            })
            .collect(),
    )
}

fn set_elem_type(v: &mut pb::ValueInfoProto, t: pb::tensor_proto::DataType) {
    if let Some(pb::type_proto::Value::TensorType(tt)) =
        v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        tt.elem_type = t as i32;
    }
}

/// Rewrites an exported graph to take and return int8 (see the module docs).
pub fn int8_ends(proto: &mut pb::ModelProto) -> Result<Ends> {
    let g = proto
        .graph
        .as_mut()
        .ok_or_else(|| unsupported("no graph"))?;
    if g.input.len() != 1 || g.output.len() != 1 {
        return Err(unsupported(format!(
            "{} inputs and {} outputs, expected one of each",
            g.input.len(),
            g.output.len()
        )));
    }
    let in_name = g.input[0].name.clone();
    let out_name = g.output[0].name.clone();
    let input_len = dims_of(&g.input[0])
        .ok_or_else(|| unsupported("the input has no shape"))?
        .iter()
        .skip(1)
        .product::<i64>();
    let output_len = dims_of(&g.output[0])
        .ok_or_else(|| unsupported("the output has no shape"))?
        .iter()
        .skip(1)
        .product::<i64>();

    // Input: Reshape(input) -> Sub -> Mul -> QuantizeLinear  ==>  Reshape(int8 input).
    let (q_idx, q) = g
        .node
        .iter()
        .enumerate()
        .find(|(_, n)| n.op_type == "QuantizeLinear")
        .ok_or_else(|| unsupported("no QuantizeLinear after the input"))?;
    let q_out = q.output.first().cloned().unwrap_or_default();
    let mut drop = vec![q_idx];
    let mut cur = q.input.first().cloned().unwrap_or_default();
    let reshape_out = loop {
        let (i, n) = producer(g, &cur)
            .ok_or_else(|| unsupported(format!("{cur} has no producer before quantization")))?;
        match n.op_type.as_str() {
            "Sub" | "Mul" => {
                drop.push(i);
                cur = n.input.first().cloned().unwrap_or_default();
            }
            "Reshape" if n.input.first() == Some(&in_name) => break cur,
            other => {
                return Err(unsupported(format!(
                    "unexpected {other} between the input and its quantization"
                )))
            }
        }
    };

    // Output: [DequantizeLinear | DequantizeLinear -> Softmax] -> Reshape -> Identity.
    let (_, ident) = producer(g, &out_name).ok_or_else(|| unsupported("no output node"))?;
    let flat_in = ident.input.first().cloned().unwrap_or_default();
    let (flat_idx, flat) =
        producer(g, &flat_in).ok_or_else(|| unsupported("no Reshape before the output"))?;
    if flat.op_type != "Reshape" {
        return Err(unsupported(format!(
            "{} before the output, expected Reshape",
            flat.op_type
        )));
    }
    let y = flat.input.first().cloned().unwrap_or_default();
    let (y_idx, y_node) =
        producer(g, &y).ok_or_else(|| unsupported("the output has no producer"))?;
    let int8_y = match y_node.op_type.as_str() {
        "DequantizeLinear" => {
            drop.push(y_idx);
            y_node.input.first().cloned().unwrap_or_default()
        }
        // tract 0.23 mis-evaluates DequantizeLinear -> Softmax -> QuantizeLinear (every
        // output 1.0), so a final float softmax stays float and is quantized in `run`.
        "Softmax" => y.clone(),
        other => {
            return Err(unsupported(format!(
                "{other} before the output, expected DequantizeLinear or Softmax"
            )))
        }
    };
    let float_softmax = y_node_is_softmax(g, &y);
    g.node[flat_idx].input[0] = int8_y;
    // Consumers of the quantized input read the int8 input (reshaped) instead.
    for n in &mut g.node {
        for i in &mut n.input {
            if *i == q_out {
                *i = reshape_out.clone();
            }
        }
    }
    drop.sort_unstable();
    for i in drop.into_iter().rev() {
        g.node.remove(i);
    }
    set_elem_type(&mut g.input[0], pb::tensor_proto::DataType::Int8);
    if !float_softmax {
        set_elem_type(&mut g.output[0], pb::tensor_proto::DataType::Int8);
    }
    let len = |v: i64, what: &str| {
        usize::try_from(v)
            .ok()
            .filter(|&v| v > 0)
            .ok_or_else(|| unsupported(format!("bad {what} size {v}")))
    };
    Ok(Ends {
        input_len: len(input_len, "input")?,
        output_len: len(output_len, "output")?,
        float_softmax,
    })
}

fn y_node_is_softmax(g: &pb::GraphProto, y: &str) -> bool {
    producer(g, y).is_some_and(|(_, n)| n.op_type == "Softmax")
}

/// What [`int8_ends`] made of the graph's ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ends {
    /// int8 values per input sample.
    pub input_len: usize,
    /// Values per output sample.
    pub output_len: usize,
    /// The output is a float softmax (quantized by [`OnnxModel::run`]).
    pub float_softmax: bool,
}

/// Quantizes a softmax probability with TFLite's fixed softmax output parameters
/// (scale 1/256, zero point -128), rounding ties away from zero.
pub fn quantize_softmax(p: f32) -> i8 {
    ((p * 256.0).round() - 128.0).clamp(-128.0, 127.0) as i8
}

impl OnnxModel {
    /// Loads the bytes of an exported `.onnx` file.
    pub fn from_onnx_bytes(bytes: &[u8]) -> Result<Self> {
        let mut proto = pb::ModelProto::decode(bytes)
            .map_err(|e| Error::Input(format!("not an ONNX file: {e}")))?;
        let ends = int8_ends(&mut proto)?;
        let model = tract_onnx::onnx()
            .model_for_proto_model(&proto)?
            .with_input_fact(0, i8::fact([1, ends.input_len]).into())?
            .into_optimized()?;
        let plan = model.into_runnable()?;
        Ok(OnnxModel { plan, ends })
    }

    /// int8 values per input sample.
    pub fn input_len(&self) -> usize {
        self.ends.input_len
    }

    /// int8 values per output sample.
    pub fn output_len(&self) -> usize {
        self.ends.output_len
    }

    /// Runs one sample.
    pub fn run(&self, input: &[i8]) -> Result<Vec<i8>> {
        let (n, m) = (self.ends.input_len, self.ends.output_len);
        if input.len() != n {
            return Err(Error::Input(format!(
                "input needs {n} int8 values, got {}",
                input.len()
            )));
        }
        let x = Tensor::from_shape(&[1, n], input)?;
        let out = self.plan.run(tvec!(x.into_tvalue()))?;
        let y = out
            .first()
            .ok_or_else(|| Error::Tract("the model returned no output".into()))?;
        let v: Vec<i8> = if self.ends.float_softmax {
            let y = y.cast_to::<f32>()?;
            y.try_as_plain_ram()?
                .as_slice::<f32>()?
                .iter()
                .map(|&p| quantize_softmax(p))
                .collect()
        } else {
            // The int8 tensor may carry tract's quantized type (QI8): same bytes.
            let y = y.cast_to_dt(i8::datum_type())?;
            y.try_as_plain_ram()?.as_slice::<i8>()?.to_vec()
        };
        if v.len() != m {
            return Err(Error::Tract(format!(
                "the model returned {} values, expected {m}",
                v.len()
            )));
        }
        Ok(v)
    }
}
