//! The trained float model (`model.safetensors`, see `nn::store`) as plain `f32` arrays, and a
//! reference forward pass over its layers that hands every intermediate tensor to a callback.
//!
//! Plain Rust rather than candle: calibration runs thousands of single-sample forward passes
//! and needs every activation, the models are tiny, and a loop nest is easy to check against
//! the integer kernels layer by layer.

use crate::nn::spec::{infer, window, Act, LayerSpec, Padding, Shape, Window};
use crate::nn::store::{ModelMeta, FORMAT};
use anyhow::{bail, ensure, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

/// Layer types the quantizer maps onto runtime ops (the `type` values of `LayerSpec`).
pub const SUPPORTED_LAYERS: [&str; 8] = [
    "conv", "dwconv", "dense", "maxpool", "avgpool", "gap", "flatten", "dropout",
];

/// One layer, ready to run.
#[derive(Debug, Clone)]
pub enum Layer {
    /// Convolution (weights OHWI) or depthwise convolution (weights `[1, KH, KW, C]`).
    Conv {
        /// Weights.
        w: Vec<f32>,
        /// Bias, one per output channel.
        b: Vec<f32>,
        /// Geometry.
        win: Window,
        /// Output channels.
        out_c: usize,
        /// Depthwise (multiplier 1).
        depthwise: bool,
        /// Fused activation.
        act: Act,
    },
    /// Fully connected, weights `[out, in]` over the NHWC-flattened input.
    Dense {
        /// Weights.
        w: Vec<f32>,
        /// Bias.
        b: Vec<f32>,
        /// Input features.
        inputs: usize,
        /// Output features.
        units: usize,
        /// Fused activation.
        act: Act,
    },
    /// Max or average pooling, valid padding.
    Pool {
        /// Geometry.
        win: Window,
        /// Max (true) or average.
        max: bool,
    },
    /// Mean over H and W.
    Gap {
        /// Input `[H, W, C]`.
        input: [usize; 3],
    },
    /// Flatten or dropout: values unchanged.
    Identity,
}

impl Layer {
    /// True for layers with weights.
    pub fn has_weights(&self) -> bool {
        matches!(self, Layer::Conv { .. } | Layer::Dense { .. })
    }

    /// Fused activation (identity for layers without one).
    pub fn act(&self) -> Act {
        match self {
            Layer::Conv { act, .. } | Layer::Dense { act, .. } => *act,
            _ => Act::None,
        }
    }

    /// Output channels of a weighted layer.
    pub fn out_channels(&self) -> usize {
        match self {
            Layer::Conv { out_c, .. } => *out_c,
            Layer::Dense { units, .. } => *units,
            _ => 0,
        }
    }

    /// Weights and bias of a weighted layer.
    pub fn weights(&self) -> Option<(&[f32], &[f32])> {
        match self {
            Layer::Conv { w, b, .. } | Layer::Dense { w, b, .. } => Some((w, b)),
            _ => None,
        }
    }

    /// Mutable bias of a weighted layer (bias correction).
    pub fn bias_mut(&mut self) -> Option<&mut Vec<f32>> {
        match self {
            Layer::Conv { b, .. } | Layer::Dense { b, .. } => Some(b),
            _ => None,
        }
    }

    /// Output channel of weight element `i`.
    pub fn weight_channel(&self, i: usize) -> usize {
        match self {
            Layer::Conv {
                depthwise: true,
                out_c,
                ..
            } => i % out_c,
            Layer::Conv { w, out_c, .. } => i / (w.len() / out_c),
            Layer::Dense { inputs, .. } => i / inputs,
            _ => 0,
        }
    }
}

/// A float model: metadata, layers and the shape after every layer.
#[derive(Debug, Clone)]
pub struct FloatModel {
    /// Metadata from the file.
    pub meta: ModelMeta,
    /// Layers, in order (same indices as `meta.layers`).
    pub layers: Vec<Layer>,
    /// `shapes[0]` is the input, `shapes[i + 1]` the output of layer `i`.
    pub shapes: Vec<Shape>,
}

fn tensor_f32(st: &SafeTensors<'_>, name: &str, len: usize, what: &Path) -> Result<Vec<f32>> {
    let t = st
        .tensor(name)
        .with_context(|| format!("{}: tensor `{name}` is missing", what.display()))?;
    ensure!(
        t.dtype() == Dtype::F32,
        "{}: tensor `{name}` is {:?}, expected F32",
        what.display(),
        t.dtype()
    );
    let n: usize = t.shape().iter().product();
    ensure!(
        n == len,
        "{}: tensor `{name}` has shape {:?} ({n} values), the layer needs {len}",
        what.display(),
        t.shape()
    );
    let v: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    ensure!(
        v.iter().all(|x| x.is_finite()),
        "{}: tensor `{name}` holds NaN or infinite values",
        what.display()
    );
    Ok(v)
}

/// Names the first layer whose `type` the quantizer cannot map, before serde's generic
/// "unknown variant" message would.
fn check_layer_types(json: &str, what: &Path) -> Result<()> {
    let v: serde_json::Value = serde_json::from_str(json)
        .with_context(|| format!("{}: malformed `model` metadata", what.display()))?;
    if let Some(layers) = v.get("layers").and_then(|l| l.as_array()) {
        for (i, l) in layers.iter().enumerate() {
            let ty = l.get("type").and_then(|t| t.as_str()).unwrap_or("<none>");
            ensure!(
                SUPPORTED_LAYERS.contains(&ty),
                "{}: layer {i} has unsupported type `{ty}` (the int8 runtime supports: {})",
                what.display(),
                SUPPORTED_LAYERS.join(", ")
            );
        }
    }
    Ok(())
}

impl FloatModel {
    /// Reads a float model file.
    pub fn load(path: &Path) -> Result<FloatModel> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(&bytes, path)
    }

    /// Parses the bytes of a float model file (`what` names it in errors).
    pub fn from_bytes(bytes: &[u8], what: &Path) -> Result<FloatModel> {
        let (_, st_meta) = SafeTensors::read_metadata(bytes)
            .with_context(|| format!("{} is not a safetensors file", what.display()))?;
        let md = st_meta.metadata().clone().unwrap_or_default();
        match md.get("format") {
            Some(f) if f == FORMAT => {}
            Some(f) => bail!("{}: format `{f}` is not {FORMAT}", what.display()),
            None => bail!(
                "{}: not an edgekd float model (no `format` metadata)",
                what.display()
            ),
        }
        let json = md.get("model").map(String::as_str).unwrap_or("");
        check_layer_types(json, what)?;
        let meta: ModelMeta = serde_json::from_str(json)
            .with_context(|| format!("{}: malformed `model` metadata", what.display()))?;
        let st = SafeTensors::deserialize(bytes)
            .with_context(|| format!("{} is not a safetensors file", what.display()))?;
        Self::from_parts(meta, |name, len| tensor_f32(&st, name, len, what))
            .with_context(|| format!("{}: invalid model", what.display()))
    }

    /// Builds a model from metadata and a tensor source `(name, expected length) -> values`.
    pub fn from_parts(
        meta: ModelMeta,
        mut get: impl FnMut(&str, usize) -> Result<Vec<f32>>,
    ) -> Result<FloatModel> {
        let [h, w, c] = meta.input_shape;
        ensure!(h * w * c > 0, "input shape {:?} is empty", meta.input_shape);
        ensure!(
            meta.norm.mean.len() == c && meta.norm.std.len() == c,
            "normalization has {} channels, the input has {c}",
            meta.norm.mean.len()
        );
        ensure!(
            meta.norm.std.iter().all(|s| s.is_finite() && *s > 0.0)
                && meta.norm.mean.iter().all(|m| m.is_finite()),
            "normalization statistics must be finite with positive std"
        );
        ensure!(meta.classes >= 2, "a classifier needs at least 2 classes");
        let mut shapes = vec![Shape::Spatial(meta.input_shape)];
        let mut layers = Vec::with_capacity(meta.layers.len());
        for (i, spec) in meta.layers.iter().enumerate() {
            let input = *shapes.last().expect("input shape");
            let out = infer(spec, input, i)?;
            let spatial = |s: Shape| match s {
                Shape::Spatial(v) => v,
                Shape::Flat(f) => [1, 1, f],
            };
            let what = format!("layer {i}");
            let layer = match spec {
                LayerSpec::Conv {
                    filters,
                    kernel,
                    stride,
                    padding,
                    batchnorm,
                    act,
                } => {
                    ensure!(!batchnorm, "{what}: BatchNorm was not folded");
                    let win = window(spatial(input), *kernel, *stride, *padding, &what)?;
                    let n = filters * win.k[0] * win.k[1] * win.input[2];
                    Layer::Conv {
                        w: get(&format!("l{i}.weight"), n)?,
                        b: get(&format!("l{i}.bias"), *filters)?,
                        win,
                        out_c: *filters,
                        depthwise: false,
                        act: *act,
                    }
                }
                LayerSpec::Dwconv {
                    kernel,
                    stride,
                    padding,
                    batchnorm,
                    act,
                } => {
                    ensure!(!batchnorm, "{what}: BatchNorm was not folded");
                    let win = window(spatial(input), *kernel, *stride, *padding, &what)?;
                    let ch = win.input[2];
                    Layer::Conv {
                        w: get(&format!("l{i}.weight"), win.k[0] * win.k[1] * ch)?,
                        b: get(&format!("l{i}.bias"), ch)?,
                        win,
                        out_c: ch,
                        depthwise: true,
                        act: *act,
                    }
                }
                LayerSpec::Dense {
                    units,
                    batchnorm,
                    act,
                } => {
                    ensure!(!batchnorm, "{what}: BatchNorm was not folded");
                    Layer::Dense {
                        w: get(&format!("l{i}.weight"), units * input.len())?,
                        b: get(&format!("l{i}.bias"), *units)?,
                        inputs: input.len(),
                        units: *units,
                        act: *act,
                    }
                }
                LayerSpec::Maxpool { size, stride } | LayerSpec::Avgpool { size, stride } => {
                    let win = window(
                        spatial(input),
                        *size,
                        stride.unwrap_or(*size),
                        Padding::Valid,
                        &what,
                    )?;
                    Layer::Pool {
                        win,
                        max: matches!(spec, LayerSpec::Maxpool { .. }),
                    }
                }
                LayerSpec::Gap => Layer::Gap {
                    input: spatial(input),
                },
                LayerSpec::Flatten | LayerSpec::Dropout { .. } => Layer::Identity,
            };
            layers.push(layer);
            shapes.push(out);
        }
        let last = *shapes.last().expect("input shape");
        ensure!(
            last == Shape::Flat(meta.classes),
            "the last layer produces {last:?}, not {} logits (end with a dense layer of {} units)",
            meta.classes,
            meta.classes
        );
        Ok(FloatModel {
            meta,
            layers,
            shapes,
        })
    }

    /// Values per input sample.
    pub fn features(&self) -> usize {
        self.shapes[0].len()
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.meta.classes
    }

    /// Normalizes one raw sample, `(x - mean[c]) / std[c]`, as training did.
    pub fn normalize(&self, raw: &[f32]) -> Vec<f32> {
        let c = self.meta.input_shape[2];
        raw.iter()
            .enumerate()
            .map(|(i, &v)| (v - self.meta.norm.mean[i % c]) / self.meta.norm.std[i % c])
            .collect()
    }

    /// Logits of one raw sample; `visit(p, values)` sees the normalized input (`p = 0`) and
    /// the output of every layer `i` (`p = i + 1`).
    pub fn forward(&self, raw: &[f32], mut visit: impl FnMut(usize, &[f32])) -> Vec<f32> {
        let mut x = self.normalize(raw);
        visit(0, &x);
        for (i, layer) in self.layers.iter().enumerate() {
            x = apply(layer, &x, true);
            visit(i + 1, &x);
        }
        x
    }

    /// Logits of one raw sample.
    pub fn logits(&self, raw: &[f32]) -> Vec<f32> {
        self.forward(raw, |_, _| {})
    }
}

/// Runs `layer` on `x` (its input), with or without its fused activation.
pub fn apply(layer: &Layer, x: &[f32], activate: bool) -> Vec<f32> {
    {
        let mut y = match layer {
            Layer::Conv {
                w,
                b,
                win,
                out_c,
                depthwise,
                ..
            } => conv(x, w, b, win, *out_c, *depthwise),
            Layer::Dense {
                w,
                b,
                inputs,
                units,
                ..
            } => (0..*units)
                .map(|o| {
                    let row = &w[o * inputs..(o + 1) * inputs];
                    b[o] + row.iter().zip(x).map(|(a, b)| a * b).sum::<f32>()
                })
                .collect(),
            Layer::Pool { win, max } => pool(x, win, *max),
            Layer::Gap { input } => {
                let [h, w, c] = *input;
                let mut s = vec![0f32; c];
                for (j, v) in x.iter().enumerate() {
                    s[j % c] += v;
                }
                s.iter().map(|v| v / (h * w) as f32).collect()
            }
            Layer::Identity => x.to_vec(),
        };
        if activate {
            activation(&mut y, layer.act());
        }
        y
    }
}

/// Applies a fused activation in place.
pub fn activation(y: &mut [f32], act: Act) {
    match act {
        Act::None => {}
        Act::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
        Act::Relu6 => y.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0)),
    }
}

fn conv(x: &[f32], w: &[f32], b: &[f32], win: &Window, out_c: usize, depthwise: bool) -> Vec<f32> {
    let [ih, iw, ic] = win.input;
    let [kh, kw] = win.k;
    let [oh, ow] = win.out;
    let mut y = Vec::with_capacity(oh * ow * out_c);
    for oy in 0..oh {
        for ox in 0..ow {
            for o in 0..out_c {
                let mut acc = b[o];
                for ky in 0..kh {
                    let iy = (oy * win.s[0] + ky) as isize - win.pad[0] as isize;
                    if iy < 0 || iy >= ih as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * win.s[1] + kx) as isize - win.pad[2] as isize;
                        if ix < 0 || ix >= iw as isize {
                            continue;
                        }
                        let at = (iy as usize * iw + ix as usize) * ic;
                        if depthwise {
                            acc += x[at + o] * w[(ky * kw + kx) * out_c + o];
                        } else {
                            let wk = &w[((o * kh + ky) * kw + kx) * ic..][..ic];
                            acc += x[at..at + ic]
                                .iter()
                                .zip(wk)
                                .map(|(a, b)| a * b)
                                .sum::<f32>();
                        }
                    }
                }
                y.push(acc);
            }
        }
    }
    y
}

fn pool(x: &[f32], win: &Window, max: bool) -> Vec<f32> {
    let [_, iw, c] = win.input;
    let [oh, ow] = win.out;
    let mut y = Vec::with_capacity(oh * ow * c);
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..c {
                let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                for ky in 0..win.k[0] {
                    for kx in 0..win.k[1] {
                        let v = x[((oy * win.s[0] + ky) * iw + ox * win.s[1] + kx) * c + ch];
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                y.push(if max {
                    acc
                } else {
                    acc / (win.k[0] * win.k[1]) as f32
                });
            }
        }
    }
    y
}

/// Index of the largest logit (ties: lowest index), as the runtime's `argmax`.
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Numerically stable softmax.
pub fn softmax(v: &[f32]) -> Vec<f32> {
    let m = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}
