//! The trained float model file (`model.safetensors`), the hand-off to the quantizer.
//!
//! A safetensors file holding:
//! - tensors (f32, BatchNorm already folded): `l{i}.weight` and `l{i}.bias` for every
//!   conv/dwconv/dense layer `i` (0-based position in `layers`). Layouts are the runtime's:
//!   conv `[O, KH, KW, I]` (OHWI), dwconv `[1, KH, KW, C]`, dense `[out, in]` where `in` is
//!   the NHWC-flattened input; biases `[O]`.
//! - metadata key `format` = `edgekd-float-model/1` and key `model` = the JSON of
//!   [`ModelMeta`]: input shape `[H, W, C]`, class count, normalization statistics
//!   (`(x - mean[c]) / std[c]` per channel, applied to raw inputs before the first layer), the
//!   layer declarations (with `batchnorm = false`, since it is folded), and the recipe text.
//!
//! The network's output is logits; a Softmax may be appended at export.

use super::model::Net;
use super::spec::LayerSpec;
use crate::data::Normalization;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// Format tag of the float model file.
pub const FORMAT: &str = "edgekd-float-model/1";

/// Everything but the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelMeta {
    /// Model name from the recipe.
    pub name: String,
    /// One input sample `[H, W, C]`, NHWC.
    pub input_shape: [usize; 3],
    /// Number of classes (logits).
    pub classes: usize,
    /// Input normalization.
    pub norm: Normalization,
    /// Layers, BatchNorm folded.
    pub layers: Vec<LayerSpec>,
    /// The recipe that trained it (TOML text).
    pub recipe: String,
}

/// Serializes named tensors plus string metadata as safetensors bytes.
pub fn tensors_to_bytes(
    tensors: &[(String, Tensor)],
    meta: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let items: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.clone(), t.to_dtype(DType::F32)?.contiguous()?)))
        .collect::<Result<_>>()?;
    canonical(safetensors::serialize(items, Some(meta))?)
}

/// Rewrites a safetensors header with sorted keys. safetensors serializes the metadata from a
/// `HashMap`, whose order changes from process to process; sorted keys make identical weights
/// give identical files (resume determinism is checked byte for byte).
fn canonical(bytes: Vec<u8>) -> Result<Vec<u8>> {
    use serde_json::Value;
    use std::collections::BTreeMap;
    let len: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .context("safetensors output too short")?;
    let n = usize::try_from(u64::from_le_bytes(len))?;
    let header: BTreeMap<String, Value> = serde_json::from_slice(
        bytes
            .get(8..8 + n)
            .context("safetensors header out of bounds")?,
    )?;
    let header: BTreeMap<String, Value> = header
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Object(m) => {
                    serde_json::to_value(m.into_iter().collect::<BTreeMap<String, Value>>())?
                }
                other => other,
            };
            Ok((k, v))
        })
        .collect::<Result<_>>()?;
    let mut text = serde_json::to_vec(&header)?;
    // The data section stays 8-byte aligned, as safetensors itself pads with spaces.
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

/// Parses safetensors bytes into tensors and metadata.
pub fn tensors_from_bytes(
    bytes: &[u8],
    what: &Path,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .with_context(|| format!("{} is not a valid safetensors file", what.display()))?;
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .with_context(|| format!("{} is not a valid safetensors file", what.display()))?;
    Ok((tensors, meta.metadata().clone().unwrap_or_default()))
}

/// Writes the folded float model of `net` to `path` atomically.
pub fn save(net: &Net, name: &str, recipe: &str, path: &Path) -> Result<()> {
    let bytes = to_bytes(net, name, recipe)?;
    crate::io::write_atomic(path, &bytes)
}

/// The float model file's bytes.
pub fn to_bytes(net: &Net, name: &str, recipe: &str) -> Result<Vec<u8>> {
    let folded = net.folded()?;
    let meta = ModelMeta {
        name: name.to_string(),
        input_shape: folded.input,
        classes: folded.classes,
        norm: folded.norm.clone(),
        layers: folded.layers.clone(),
        recipe: recipe.to_string(),
    };
    let mut m = HashMap::new();
    m.insert("format".to_string(), FORMAT.to_string());
    m.insert("model".to_string(), serde_json::to_string(&meta)?);
    tensors_to_bytes(&folded.named_tensors(), m)
}

/// Loads a float model file as an f32 network in eval form.
pub fn load(path: &Path) -> Result<(Net, ModelMeta)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (tensors, meta) = tensors_from_bytes(&bytes, path)?;
    match meta.get("format") {
        Some(f) if f == FORMAT => {}
        Some(f) => bail!("{}: format `{f}` is not {FORMAT}", path.display()),
        None => bail!(
            "{}: not an edgekd float model (no `format` metadata)",
            path.display()
        ),
    }
    let meta: ModelMeta = serde_json::from_str(meta.get("model").map(String::as_str).unwrap_or(""))
        .with_context(|| format!("{}: malformed `model` metadata", path.display()))?;
    let mut net = Net::new(
        &meta.layers,
        meta.input_shape,
        meta.classes,
        meta.norm.clone(),
        0,
        DType::F32,
    )
    .with_context(|| format!("{}: invalid model", path.display()))?;
    ensure!(
        net.buffers.is_empty(),
        "{}: BatchNorm was not folded",
        path.display()
    );
    net.load_named(&|n| tensors.get(n).cloned())
        .with_context(|| format!("{}: invalid model", path.display()))?;
    Ok((net, meta))
}
