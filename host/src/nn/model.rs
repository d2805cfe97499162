//! A network built from layer declarations, trained with candle's autodiff.
//!
//! Convolutions, depthwise convolutions and pools are written as an unfold (`index_select`
//! with a precomputed gather index over the zero-padded NHWC input) followed by a matmul or a
//! reduction. candle 0.11's CPU `conv1d` backward gives wrong weight gradients on this
//! project's shapes (see `conventions.md`); the unfold form is finite-difference checked in the
//! tests, maps one-to-one onto the runtime's NHWC/OHWI layouts, and is faster for tiny layers.

use super::spec::{infer, window, Act, LayerSpec, Padding, Shape, Window};
use crate::data::Normalization;
use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

const BN_EPS: f64 = 1e-5;
const BN_MOMENTUM: f64 = 0.1;

/// A trainable tensor with its export name.
#[derive(Debug, Clone)]
pub struct Param {
    /// Name, e.g. `l0.weight`.
    pub name: String,
    /// The variable.
    pub var: Var,
    /// Whether weight decay applies (weights, not biases or BatchNorm parameters).
    pub decay: bool,
}

#[derive(Debug, Clone)]
struct Bn {
    gamma: usize,
    beta: usize,
    mean: usize,
    var: usize,
}

#[derive(Debug, Clone)]
enum Node {
    Conv {
        win: Window,
        idx: Tensor,
        w: usize,
        b: usize,
        bn: Option<Bn>,
        act: Act,
        depthwise: bool,
    },
    Dense {
        w: usize,
        b: usize,
        bn: Option<Bn>,
        act: Act,
    },
    Pool {
        win: Window,
        idx: Tensor,
        max: bool,
    },
    Gap,
    Flatten,
    Dropout(f32),
}

/// Training or inference behaviour of BatchNorm and dropout.
pub enum Mode<'a> {
    /// Batch statistics (running statistics updated) and dropout drawn from the generator.
    Train(&'a mut Pcg64),
    /// Running statistics, no dropout.
    Eval,
}

/// Parameters and MACs of one layer, for the summary printed before training.
#[derive(Debug, Clone)]
pub struct LayerInfo {
    /// Layer kind and settings.
    pub what: String,
    /// Output shape.
    pub out: Shape,
    /// Trainable parameters (including BatchNorm's, which fold away at export).
    pub params: usize,
    /// Multiply-accumulates per sample.
    pub macs: usize,
}

/// A network: declarations, parameters, BatchNorm running statistics, input normalization.
#[derive(Debug, Clone)]
pub struct Net {
    /// Layer declarations.
    pub layers: Vec<LayerSpec>,
    /// Shape of one input sample `[H, W, C]`.
    pub input: [usize; 3],
    /// Number of classes (the last layer's width).
    pub classes: usize,
    /// Input normalization, applied inside `forward`.
    pub norm: Normalization,
    /// Trainable parameters.
    pub params: Vec<Param>,
    /// BatchNorm running statistics `(name, tensor)`.
    pub buffers: Vec<(String, Tensor)>,
    nodes: Vec<Node>,
    shapes: Vec<Shape>,
    dtype: DType,
    device: Device,
}

pub(crate) fn gather_index(win: &Window, device: &Device) -> Result<Tensor> {
    let [kh, kw] = win.k;
    let [sh, sw] = win.s;
    let [oh, ow] = win.out;
    let wp = win.input[1] + win.pad[2] + win.pad[3];
    let mut idx = Vec::with_capacity(oh * ow * kh * kw);
    for y in 0..oh {
        for x in 0..ow {
            for ky in 0..kh {
                for kx in 0..kw {
                    idx.push(((y * sh + ky) * wp + (x * sw + kx)) as u32);
                }
            }
        }
    }
    Ok(Tensor::from_vec(idx, oh * ow * kh * kw, device)?)
}

/// `[N, H, W, C]` -> `[N * OH * OW, KH * KW, C]`: the receptive fields, zero padded.
pub(crate) fn unfold(x: &Tensor, win: &Window, idx: &Tensor) -> Result<Tensor> {
    let [pt, pb, pl, pr] = win.pad;
    let mut x = x.clone();
    if pt + pb > 0 {
        x = x.pad_with_zeros(1, pt, pb)?;
    }
    if pl + pr > 0 {
        x = x.pad_with_zeros(2, pl, pr)?;
    }
    let (n, hp, wp, c) = x.dims4()?;
    let g = x.reshape((n, hp * wp, c))?.index_select(idx, 1)?;
    Ok(g.reshape((n * win.out[0] * win.out[1], win.k[0] * win.k[1], c))?)
}

fn activate(y: Tensor, act: Act) -> Result<Tensor> {
    Ok(match act {
        Act::None => y,
        Act::Relu => y.relu()?,
        Act::Relu6 => y.clamp(0f32, 6f32)?,
    })
}

impl Net {
    /// Builds a network with seeded initialization (PyTorch's default uniform bounds).
    pub fn new(
        layers: &[LayerSpec],
        input: [usize; 3],
        classes: usize,
        norm: Normalization,
        seed: u64,
        dtype: DType,
    ) -> Result<Net> {
        ensure!(!layers.is_empty(), "the model has no layers");
        ensure!(
            norm.mean.len() == input[2] && norm.std.len() == input[2],
            "normalization has {} channels, the input has {}",
            norm.mean.len(),
            input[2]
        );
        let device = Device::Cpu;
        let mut rng = Pcg64::seed_from_u64(crate::data::augment::derive_seed(seed, 0, 0x1417));
        let mut params: Vec<Param> = Vec::new();
        let mut buffers = Vec::new();
        let mut nodes = Vec::new();
        let mut shapes = Vec::new();
        let mut shape = Shape::Spatial(input);
        let mut uniform =
            |name: String, dims: &[usize], bound: f64, decay: bool| -> Result<Param> {
                let n: usize = dims.iter().product();
                let v: Vec<f64> = (0..n).map(|_| rng.random_range(-bound..bound)).collect();
                let t = Tensor::from_vec(v, dims, &device)?.to_dtype(dtype)?;
                Ok(Param {
                    name,
                    var: Var::from_tensor(&t)?,
                    decay,
                })
            };
        let constant = |dims: usize, v: f64| -> Result<Tensor> {
            Ok(Tensor::full(v, dims, &device)?.to_dtype(dtype)?)
        };
        for (i, layer) in layers.iter().enumerate() {
            let out = infer(layer, shape, i)?;
            let bn_for = |params: &mut Vec<Param>,
                          buffers: &mut Vec<(String, Tensor)>,
                          c: usize|
             -> Result<Bn> {
                params.push(Param {
                    name: format!("l{i}.bn.gamma"),
                    var: Var::from_tensor(&constant(c, 1.0)?)?,
                    decay: false,
                });
                params.push(Param {
                    name: format!("l{i}.bn.beta"),
                    var: Var::from_tensor(&constant(c, 0.0)?)?,
                    decay: false,
                });
                buffers.push((format!("l{i}.bn.mean"), constant(c, 0.0)?));
                buffers.push((format!("l{i}.bn.var"), constant(c, 1.0)?));
                Ok(Bn {
                    gamma: params.len() - 2,
                    beta: params.len() - 1,
                    mean: buffers.len() - 2,
                    var: buffers.len() - 1,
                })
            };
            let node = match layer {
                LayerSpec::Conv {
                    filters,
                    kernel,
                    stride,
                    padding,
                    batchnorm,
                    act,
                } => {
                    let Shape::Spatial(ins) = shape else {
                        unreachable!("checked by infer")
                    };
                    let win = window(ins, *kernel, *stride, *padding, "conv")?;
                    let fan_in = win.k[0] * win.k[1] * ins[2];
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    params.push(uniform(
                        format!("l{i}.weight"),
                        &[*filters, win.k[0], win.k[1], ins[2]],
                        bound,
                        true,
                    )?);
                    params.push(uniform(format!("l{i}.bias"), &[*filters], bound, false)?);
                    let (w, b) = (params.len() - 2, params.len() - 1);
                    let bn = if *batchnorm {
                        Some(bn_for(&mut params, &mut buffers, *filters)?)
                    } else {
                        None
                    };
                    Node::Conv {
                        idx: gather_index(&win, &device)?,
                        win,
                        w,
                        b,
                        bn,
                        act: *act,
                        depthwise: false,
                    }
                }
                LayerSpec::Dwconv {
                    kernel,
                    stride,
                    padding,
                    batchnorm,
                    act,
                } => {
                    let Shape::Spatial(ins) = shape else {
                        unreachable!("checked by infer")
                    };
                    let win = window(ins, *kernel, *stride, *padding, "dwconv")?;
                    let bound = 1.0 / ((win.k[0] * win.k[1]) as f64).sqrt();
                    params.push(uniform(
                        format!("l{i}.weight"),
                        &[1, win.k[0], win.k[1], ins[2]],
                        bound,
                        true,
                    )?);
                    params.push(uniform(format!("l{i}.bias"), &[ins[2]], bound, false)?);
                    let (w, b) = (params.len() - 2, params.len() - 1);
                    let bn = if *batchnorm {
                        Some(bn_for(&mut params, &mut buffers, ins[2])?)
                    } else {
                        None
                    };
                    Node::Conv {
                        idx: gather_index(&win, &device)?,
                        win,
                        w,
                        b,
                        bn,
                        act: *act,
                        depthwise: true,
                    }
                }
                LayerSpec::Dense {
                    units,
                    batchnorm,
                    act,
                } => {
                    let fan_in = shape.len();
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    params.push(uniform(
                        format!("l{i}.weight"),
                        &[*units, fan_in],
                        bound,
                        true,
                    )?);
                    params.push(uniform(format!("l{i}.bias"), &[*units], bound, false)?);
                    let (w, b) = (params.len() - 2, params.len() - 1);
                    let bn = if *batchnorm {
                        Some(bn_for(&mut params, &mut buffers, *units)?)
                    } else {
                        None
                    };
                    Node::Dense {
                        w,
                        b,
                        bn,
                        act: *act,
                    }
                }
                LayerSpec::Maxpool { size, stride } | LayerSpec::Avgpool { size, stride } => {
                    let Shape::Spatial(ins) = shape else {
                        unreachable!("checked by infer")
                    };
                    let win = window(ins, *size, stride.unwrap_or(*size), Padding::Valid, "pool")?;
                    Node::Pool {
                        idx: gather_index(&win, &device)?,
                        win,
                        max: matches!(layer, LayerSpec::Maxpool { .. }),
                    }
                }
                LayerSpec::Gap => Node::Gap,
                LayerSpec::Flatten => Node::Flatten,
                LayerSpec::Dropout { rate } => Node::Dropout(*rate),
            };
            nodes.push(node);
            shapes.push(out);
            shape = out;
        }
        ensure!(
            shape == Shape::Flat(classes),
            "the model's output is {shape:?}, but the data has {classes} classes: end with a dense layer of {classes} units"
        );
        Ok(Net {
            layers: layers.to_vec(),
            input,
            classes,
            norm,
            params,
            buffers,
            nodes,
            shapes,
            dtype,
            device,
        })
    }

    /// The element type of the parameters.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Values per input sample.
    pub fn features(&self) -> usize {
        self.input.iter().product()
    }

    /// A `[n, features]` tensor from raw inputs, in the network's dtype.
    pub fn input_tensor(&self, x: &[f32], n: usize) -> Result<Tensor> {
        ensure!(
            x.len() == n * self.features(),
            "input has {} values, expected {n} x {}",
            x.len(),
            self.features()
        );
        Ok(Tensor::from_slice(x, (n, self.features()), &self.device)?.to_dtype(self.dtype)?)
    }

    /// Logits `[n, classes]` for raw (unnormalized) inputs `[n, features]`.
    pub fn forward(&mut self, x: &Tensor, mut mode: Mode<'_>) -> Result<Tensor> {
        let n = x.dim(0)?;
        let [h, w, c] = self.input;
        let mean = Tensor::from_slice(&self.norm.mean, c, &self.device)?.to_dtype(self.dtype)?;
        let std = Tensor::from_slice(&self.norm.std, c, &self.device)?.to_dtype(self.dtype)?;
        let mut t = x
            .reshape((n, h, w, c))?
            .broadcast_sub(&mean)?
            .broadcast_div(&std)?;
        let train = matches!(mode, Mode::Train(_));
        let mut updates = Vec::new();
        for (li, node) in self.nodes.iter().enumerate() {
            t = match node {
                Node::Conv {
                    win,
                    idx,
                    w,
                    b,
                    bn,
                    act,
                    depthwise,
                } => {
                    let cols = unfold(&t, win, idx)?;
                    let (m, kk, ci) = cols.dims3()?;
                    let wt = self.params[*w].var.as_tensor();
                    let y = if *depthwise {
                        cols.broadcast_mul(&wt.reshape((kk, ci))?)?.sum(1)?
                    } else {
                        let oc = wt.dim(0)?;
                        cols.reshape((m, kk * ci))?
                            .matmul(&wt.reshape((oc, kk * ci))?.t()?)?
                    };
                    let y = y.broadcast_add(self.params[*b].var.as_tensor())?;
                    let y = self.batchnorm(y, bn.as_ref(), train, &mut updates)?;
                    let y = activate(y, *act)?;
                    let oc = y.dim(1)?;
                    y.reshape((n, win.out[0], win.out[1], oc))?
                }
                Node::Dense { w, b, bn, act } => {
                    let flat = t.flatten_from(1)?;
                    let y = flat
                        .matmul(&self.params[*w].var.as_tensor().t()?)?
                        .broadcast_add(self.params[*b].var.as_tensor())?;
                    let y = self.batchnorm(y, bn.as_ref(), train, &mut updates)?;
                    activate(y, *act)?
                }
                Node::Pool { win, idx, max } => {
                    let cols = unfold(&t, win, idx)?;
                    let y = if *max { cols.max(1)? } else { cols.mean(1)? };
                    let c = y.dim(1)?;
                    y.reshape((n, win.out[0], win.out[1], c))?
                }
                Node::Gap => {
                    let (n, h, w, c) = t.dims4()?;
                    t.reshape((n, h * w, c))?.mean(1)?
                }
                Node::Flatten => t.flatten_from(1)?,
                Node::Dropout(rate) => match &mut mode {
                    Mode::Train(rng) if *rate > 0.0 => {
                        let len = self.shapes[li].len();
                        let keep = 1.0 - f64::from(*rate);
                        let mask: Vec<f32> = (0..n * len)
                            .map(|_| {
                                if rng.random::<f64>() < keep {
                                    (1.0 / keep) as f32
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        let mask =
                            Tensor::from_vec(mask, t.dims(), &self.device)?.to_dtype(self.dtype)?;
                        (t * mask)?
                    }
                    _ => t,
                },
            };
        }
        for (i, v) in updates {
            self.buffers[i].1 = v;
        }
        Ok(t)
    }

    fn batchnorm(
        &self,
        y: Tensor,
        bn: Option<&Bn>,
        train: bool,
        updates: &mut Vec<(usize, Tensor)>,
    ) -> Result<Tensor> {
        let Some(bn) = bn else { return Ok(y) };
        let gamma = self.params[bn.gamma].var.as_tensor();
        let beta = self.params[bn.beta].var.as_tensor();
        let (mean, var) = if train {
            let mean = y.mean_keepdim(0)?;
            let var = y.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
            // Running statistics are side state, not part of the graph.
            let m = y.dim(0)? as f64;
            let unbiased = (var.detach() * (m / (m - 1.0).max(1.0)))?.squeeze(0)?;
            let rm = &self.buffers[bn.mean].1;
            let rv = &self.buffers[bn.var].1;
            let new_m = ((rm * (1.0 - BN_MOMENTUM))? + (mean.detach().squeeze(0)? * BN_MOMENTUM)?)?;
            let new_v = ((rv * (1.0 - BN_MOMENTUM))? + (unbiased * BN_MOMENTUM)?)?;
            updates.push((bn.mean, new_m));
            updates.push((bn.var, new_v));
            (mean, var)
        } else {
            (
                self.buffers[bn.mean].1.unsqueeze(0)?,
                self.buffers[bn.var].1.unsqueeze(0)?,
            )
        };
        let xhat = y
            .broadcast_sub(&mean)?
            .broadcast_div(&(var + BN_EPS)?.sqrt()?)?;
        Ok(xhat.broadcast_mul(gamma)?.broadcast_add(beta)?)
    }

    /// Parameters and MACs per layer.
    pub fn summary(&self) -> Vec<LayerInfo> {
        let mut out = Vec::new();
        let mut prev = Shape::Spatial(self.input);
        for (i, layer) in self.layers.iter().enumerate() {
            let o = self.shapes[i];
            let prefix = format!("l{i}.");
            let params: usize = self
                .params
                .iter()
                .filter(|p| p.name.starts_with(&prefix))
                .map(|p| p.var.elem_count())
                .sum();
            let macs = match (&self.nodes[i], o) {
                (Node::Conv { win, depthwise, .. }, Shape::Spatial([oh, ow, oc])) => {
                    let per = win.k[0] * win.k[1] * if *depthwise { 1 } else { win.input[2] };
                    oh * ow * oc * per
                }
                (Node::Dense { .. }, _) => prev.len() * o.len(),
                _ => 0,
            };
            let what = serde_json::to_string(layer).unwrap_or_default();
            out.push(LayerInfo {
                what,
                out: o,
                params,
                macs,
            });
            prev = o;
        }
        out
    }

    /// All named tensors: parameters then BatchNorm buffers (checkpoint order).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.var.as_tensor().clone()))
            .chain(self.buffers.iter().cloned())
            .collect()
    }

    /// Overwrites parameters and buffers from named tensors; every name must be present.
    pub fn load_named(&mut self, get: &dyn Fn(&str) -> Option<Tensor>) -> Result<()> {
        for p in &self.params {
            let t = get(&p.name).with_context(|| format!("tensor {} is missing", p.name))?;
            ensure!(
                t.dims() == p.var.dims(),
                "tensor {} has shape {:?}, the model needs {:?}",
                p.name,
                t.dims(),
                p.var.dims()
            );
            p.var.set(&t.to_dtype(self.dtype)?)?;
        }
        for (name, buf) in &mut self.buffers {
            let t = get(name).with_context(|| format!("tensor {name} is missing"))?;
            ensure!(t.dims() == buf.dims(), "tensor {name} has the wrong shape");
            *buf = t.to_dtype(self.dtype)?;
        }
        Ok(())
    }

    /// Logits for many samples in eval mode, in chunks.
    pub fn predict(&mut self, x: &[f32], batch: usize) -> Result<Vec<f32>> {
        let f = self.features();
        let n = x.len() / f;
        let mut out = Vec::with_capacity(n * self.classes);
        let mut start = 0;
        while start < n {
            let end = (start + batch.max(1)).min(n);
            let t = self.input_tensor(&x[start * f..end * f], end - start)?;
            let y = self.forward(&t, Mode::Eval)?.to_dtype(DType::F32)?;
            out.extend(y.flatten_all()?.to_vec1::<f32>()?);
            start = end;
        }
        Ok(out)
    }

    /// Folds BatchNorm into the preceding weights: the deployable float model.
    pub fn folded(&self) -> Result<Net> {
        let mut layers = self.layers.clone();
        for l in &mut layers {
            match l {
                LayerSpec::Conv { batchnorm, .. }
                | LayerSpec::Dwconv { batchnorm, .. }
                | LayerSpec::Dense { batchnorm, .. } => *batchnorm = false,
                _ => {}
            }
        }
        let out = Net::new(
            &layers,
            self.input,
            self.classes,
            self.norm.clone(),
            0,
            self.dtype,
        )?;
        for (i, node) in self.nodes.iter().enumerate() {
            let (w, b, bn) = match node {
                Node::Conv { w, b, bn, .. } | Node::Dense { w, b, bn, .. } => (*w, *b, bn),
                _ => continue,
            };
            let wt = self.params[w].var.as_tensor().clone();
            let bt = self.params[b].var.as_tensor().clone();
            let (wt, bt) = match bn {
                None => (wt, bt),
                Some(bn) => {
                    let gamma = self.params[bn.gamma].var.as_tensor();
                    let beta = self.params[bn.beta].var.as_tensor();
                    let mean = &self.buffers[bn.mean].1;
                    let var = &self.buffers[bn.var].1;
                    let scale = gamma.div(&(var + BN_EPS)?.sqrt()?)?;
                    let oc = scale.dim(0)?;
                    // Output channels are axis 0 for conv/dense ([O, ...]) and the last axis
                    // for depthwise ([1, KH, KW, C]).
                    let wt = match node {
                        Node::Conv {
                            depthwise: true, ..
                        } => wt.broadcast_mul(&scale)?,
                        _ => {
                            let mut dims = vec![1usize; wt.rank()];
                            dims[0] = oc;
                            wt.broadcast_mul(&scale.reshape(dims)?)?
                        }
                    };
                    let bt = ((bt - mean)? * &scale)?.add(beta)?;
                    (wt, bt)
                }
            };
            out.params
                .iter()
                .find(|p| p.name == format!("l{i}.weight"))
                .context("folded weight")?
                .var
                .set(&wt)?;
            out.params
                .iter()
                .find(|p| p.name == format!("l{i}.bias"))
                .context("folded bias")?
                .var
                .set(&bt)?;
        }
        Ok(out)
    }

    /// Number of trainable values.
    pub fn param_count(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }

    /// Layer output shapes.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// Argmax of logits per row.
    pub fn argmax(logits: &[f32], classes: usize) -> Vec<u32> {
        logits
            .chunks(classes)
            .map(|r| {
                r.iter()
                    .enumerate()
                    .fold((0usize, f32::NEG_INFINITY), |a, (i, &v)| {
                        if v > a.1 {
                            (i, v)
                        } else {
                            a
                        }
                    })
                    .0 as u32
            })
            .collect()
    }
}

/// Softmax over the last axis of a `[n, classes]` tensor, as log-probabilities.
pub fn log_softmax(t: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(t, D::Minus1)?)
}
