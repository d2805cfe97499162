//! Quantization-aware fine-tuning (QAT) with the float model as the distillation teacher.
//!
//! The forward pass (candle, unfold + matmul as in `nn::model`) simulates the int8 model that
//! [`build`](super::build::build) writes:
//! - weights: per output channel (or per tensor) symmetric int8, computed from the current
//!   float weights by the builder's own [`quantize_weights`] (scale `max|w| / 127`, the int32
//!   bias at `input_scale * weight_scale[c]`), so the simulated weights *are* the int8 file's
//!   dequantized weights;
//! - activations: the model input (after the stored normalization) and the output of every
//!   layer are quantized asymmetrically with the calibrated ranges (optionally tracked by an
//!   exponential moving average of the batch min/max); ReLU/ReLU6 are applied before the
//!   output quantization, as the builder fuses them into the op's output clamp; BatchNorm is
//!   already folded in the float model file.
//!
//! Gradients pass through the rounding with the straight-through estimator: the forward value
//! is `fq(x) + (x - detach(x))` (exactly `fq(x)`), whose gradient is the identity; for
//! activations `x` is first clipped to the representable range, so the gradient is zero
//! outside it. The scales themselves receive no gradient.
//!
//! The loss is Hinton KD (`T^2 * KL` at temperature `T`) against the float model's logits,
//! weighted `alpha`, plus `1 - alpha` times cross-entropy on the labels when there are labels
//! (KD only without labels). AdamW without weight decay, cosine learning-rate decay, batch
//! order from a seeded PCG stream: a run is a function of its inputs and seed.

use super::build::{groups, quantize_weights};
use super::calib::{qparams, representable};
use super::float::{FloatModel, Layer};
use crate::data::augment::derive_seed;
use crate::nn::model::{gather_index, unfold, Param};
use crate::nn::spec::{Act, Shape};
use crate::train::loss::{hinton_kd, temper};
use crate::train::optim::AdamW;
use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// When to run quantization-aware fine-tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QatMode {
    /// Only when the drop still exceeds the budget after bias correction.
    Auto,
    /// Always (kept only if it raises the calibration metric).
    On,
    /// Never.
    Off,
}

/// QAT settings.
#[derive(Debug, Clone, PartialEq)]
pub struct QatOptions {
    /// Policy.
    pub mode: QatMode,
    /// Epochs over the calibration set.
    pub epochs: usize,
    /// Peak learning rate (AdamW, cosine decay to zero).
    pub lr: f64,
    /// Batch size.
    pub batch: usize,
    /// KD temperature.
    pub temperature: f64,
    /// Weight of the KD term (the rest goes to cross-entropy on the labels, when given).
    pub alpha: f64,
    /// EMA momentum for the activation ranges (0: keep the calibrated ranges fixed).
    pub ema: f64,
    /// Seed of the batch order.
    pub seed: u64,
    /// Fraction of the calibration samples (the last ones) held out of training to choose the
    /// epoch and decide whether to keep the result (0: train and decide on all of them).
    pub holdout: f64,
}

impl Default for QatOptions {
    fn default() -> Self {
        QatOptions {
            mode: QatMode::Auto,
            epochs: 10,
            lr: 1e-4,
            batch: 32,
            temperature: 4.0,
            alpha: 0.5,
            ema: 0.0,
            seed: 0,
            holdout: 0.0,
        }
    }
}

impl QatOptions {
    /// Checks the settings (whenever QAT may run).
    pub fn validate(&self) -> Result<()> {
        if self.mode == QatMode::Off {
            return Ok(());
        }
        ensure!(
            self.epochs >= 1,
            "QAT needs at least 1 epoch (--qat-epochs {}); use --qat off to skip it",
            self.epochs
        );
        ensure!(
            self.lr.is_finite() && self.lr > 0.0,
            "the QAT learning rate must be a positive finite number (--qat-lr {})",
            self.lr
        );
        ensure!(self.batch >= 1, "the QAT batch size must be at least 1");
        ensure!(
            self.temperature.is_finite() && self.temperature > 0.0,
            "the QAT KD temperature must be a positive finite number (--qat-temperature {})",
            self.temperature
        );
        ensure!(
            (0.0..=1.0).contains(&self.alpha),
            "the QAT KD weight must lie in [0, 1] (--qat-alpha {})",
            self.alpha
        );
        ensure!(
            (0.0..1.0).contains(&self.ema),
            "the QAT range EMA momentum must lie in [0, 1) (--qat-ema {})",
            self.ema
        );
        ensure!(
            (0.0..=0.9).contains(&self.holdout),
            "the QAT holdout fraction must lie in [0, 0.9] (--qat-holdout {})",
            self.holdout
        );
        Ok(())
    }
}

/// Fake quantization of an activation with the straight-through estimator: the value is the
/// quantize-dequantize of `x` (round half away from zero, saturating to int8); the gradient is
/// 1 where `x` lies inside the representable range and 0 outside.
pub fn fake_quant_ste(x: &Tensor, scale: f32, zero_point: i32) -> Result<Tensor> {
    let (lo, hi) = representable(scale, zero_point);
    let dev = x.device();
    let s = Tensor::new(scale, dev)?.to_dtype(x.dtype())?;
    let q = x
        .detach()
        .broadcast_div(&s)?
        .round()?
        .affine(1.0, f64::from(zero_point))?
        .clamp(-128f32, 127f32)?
        .affine(1.0, -f64::from(zero_point))?
        .broadcast_mul(&s)?;
    let clipped = x.clamp(lo as f32, hi as f32)?;
    Ok((q + (&clipped - clipped.detach())?)?)
}

/// The simulated int8 weights with the straight-through estimator (value `wq` exactly,
/// gradient identity into `w`).
fn ste(wq: Tensor, w: &Tensor) -> Result<Tensor> {
    Ok((wq + (w - w.detach())?)?)
}

fn activate(y: Tensor, act: Act) -> Result<Tensor> {
    Ok(match act {
        Act::None => y,
        Act::Relu => y.relu()?,
        Act::Relu6 => y.clamp(0f32, 6f32)?,
    })
}

/// The fake-quantized network: trainable copies of the float weights plus the activation
/// ranges.
pub struct QatNet {
    model: FloatModel,
    /// Per layer: weight `[out, fan-in]` (depthwise `[KH*KW, C]`) and bias variables.
    vars: Vec<Option<(Var, Var)>>,
    /// Per layer: the gather index of convolutions and pools.
    idx: Vec<Option<Tensor>>,
    groups: Vec<usize>,
    /// Float range per activation group.
    pub ranges: Vec<(f32, f32)>,
    per_tensor: bool,
    device: Device,
}

impl QatNet {
    /// Wraps `model` with the activation ranges `ranges` (one per group, see
    /// [`groups`](super::build::groups)).
    pub fn new(model: &FloatModel, ranges: &[(f32, f32)], per_tensor: bool) -> Result<QatNet> {
        let groups = groups(model);
        let n_groups = groups.iter().max().map_or(0, |g| g + 1);
        ensure!(
            ranges.len() == n_groups,
            "{} activation ranges for {n_groups} tensors",
            ranges.len()
        );
        let device = Device::Cpu;
        let mut vars = Vec::new();
        let mut idx = Vec::new();
        for layer in &model.layers {
            let (v, ix) = match layer {
                Layer::Conv {
                    w,
                    b,
                    win,
                    out_c,
                    depthwise,
                    ..
                } => {
                    let shape = if *depthwise {
                        (win.k[0] * win.k[1], *out_c)
                    } else {
                        (*out_c, w.len() / out_c)
                    };
                    (
                        Some((
                            Var::from_tensor(&Tensor::from_slice(w, shape, &device)?)?,
                            Var::from_tensor(&Tensor::from_slice(b, b.len(), &device)?)?,
                        )),
                        Some(gather_index(win, &device)?),
                    )
                }
                Layer::Dense {
                    w,
                    b,
                    inputs,
                    units,
                    ..
                } => (
                    Some((
                        Var::from_tensor(&Tensor::from_slice(w, (*units, *inputs), &device)?)?,
                        Var::from_tensor(&Tensor::from_slice(b, b.len(), &device)?)?,
                    )),
                    None,
                ),
                Layer::Pool { win, .. } => (None, Some(gather_index(win, &device)?)),
                Layer::Gap { .. } | Layer::Identity => (None, None),
            };
            vars.push(v);
            idx.push(ix);
        }
        Ok(QatNet {
            model: model.clone(),
            vars,
            idx,
            groups,
            ranges: ranges.to_vec(),
            per_tensor,
            device,
        })
    }

    /// The trainable tensors (weights and biases; no weight decay is applied).
    pub fn params(&self) -> Vec<Param> {
        self.vars
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.as_ref().map(|v| (i, v)))
            .flat_map(|(i, (w, b))| {
                [
                    Param {
                        name: format!("l{i}.weight"),
                        var: w.clone(),
                        decay: false,
                    },
                    Param {
                        name: format!("l{i}.bias"),
                        var: b.clone(),
                        decay: false,
                    },
                ]
            })
            .collect()
    }

    /// Copies the variables back into the float model.
    fn sync(&mut self) -> Result<()> {
        for (layer, v) in self.model.layers.iter_mut().zip(&self.vars) {
            if let (Layer::Conv { w, b, .. } | Layer::Dense { w, b, .. }, Some((wv, bv))) =
                (layer, v)
            {
                *w = wv.as_tensor().flatten_all()?.to_vec1::<f32>()?;
                *b = bv.as_tensor().to_vec1::<f32>()?;
            }
        }
        Ok(())
    }

    /// The float model with the current weights (what [`build`](super::build::build) takes).
    pub fn float_model(&mut self) -> Result<FloatModel> {
        self.sync()?;
        ensure!(
            self.model.layers.iter().all(|l| l
                .weights()
                .is_none_or(|(w, b)| w.iter().chain(b).all(|v| v.is_finite()))),
            "QAT diverged: the fine-tuned weights hold NaN or infinite values (lower --qat-lr)"
        );
        Ok(self.model.clone())
    }

    /// `(scale, zero_point)` per activation group from the current ranges.
    pub fn act_quant(&self) -> Vec<(f32, i32)> {
        self.ranges
            .iter()
            .map(|&(lo, hi)| qparams(lo, hi))
            .collect()
    }

    /// The dequantized int8 weights and biases of layer `li` as the builder would write
    /// them from the current weights (`None` for layers without weights).
    pub fn fake_weights(&mut self, li: usize) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        self.sync()?;
        Ok(self.dequantized(li))
    }

    /// [`QatNet::fake_weights`] of the float model as last synced.
    fn dequantized(&self, li: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        let layer = &self.model.layers[li];
        if !layer.has_weights() {
            return None;
        }
        let (in_s, _) = qparams(
            self.ranges[self.groups[li]].0,
            self.ranges[self.groups[li]].1,
        );
        let qw = quantize_weights(layer, li, in_s, self.per_tensor);
        let w =
            qw.q.iter()
                .enumerate()
                .map(|(i, &q)| f32::from(q) * qw.scales[layer.weight_channel(i)])
                .collect();
        let b = qw
            .bias
            .iter()
            .zip(&qw.scales)
            .map(|(&q, &s)| q as f32 * in_s * s)
            .collect();
        Some((w, b))
    }

    /// Logits `[n, classes]` of raw inputs `x` `[n, features]`; with `observe`, the min/max
    /// of every activation group's unquantized values (group producers only).
    pub fn forward(
        &mut self,
        x: &Tensor,
        mut observe: Option<&mut Vec<(f32, f32)>>,
    ) -> Result<Tensor> {
        let n = x.dim(0)?;
        let [h, w, c] = self.model.meta.input_shape;
        let aq = self.act_quant();
        let mean = Tensor::from_slice(&self.model.meta.norm.mean, c, &self.device)?;
        // As the runtime's `set_input_f32`: `(raw - mean) * (1 / std)`.
        let inv: Vec<f32> = self.model.meta.norm.std.iter().map(|s| 1.0 / s).collect();
        let inv = Tensor::from_vec(inv, c, &self.device)?;
        let mut t = x
            .reshape((n, h, w, c))?
            .broadcast_sub(&mean)?
            .broadcast_mul(&inv)?;
        let mut see = |g: usize, t: &Tensor| -> Result<()> {
            if let Some(obs) = observe.as_deref_mut() {
                let lo = t.min_all()?.to_scalar::<f32>()?;
                let hi = t.max_all()?.to_scalar::<f32>()?;
                obs[g] = (obs[g].0.min(lo), obs[g].1.max(hi));
            }
            Ok(())
        };
        see(0, &t)?;
        t = fake_quant_ste(&t, aq[0].0, aq[0].1)?;
        self.sync()?;
        for li in 0..self.model.layers.len() {
            let g = self.groups[li + 1];
            let layer = self.model.layers[li].clone();
            let produces = matches!(
                layer,
                Layer::Conv { .. } | Layer::Dense { .. } | Layer::Gap { .. }
            );
            t = match layer {
                Layer::Conv {
                    win,
                    depthwise,
                    act,
                    out_c,
                    ..
                } => {
                    let (wq, bq) = self.dequantized(li).context("conv has weights")?;
                    let (wv, bv) = self.vars[li].as_ref().context("conv has weights")?;
                    let wt = ste(
                        Tensor::from_vec(wq, wv.shape(), &self.device)?,
                        wv.as_tensor(),
                    )?;
                    let bt = ste(Tensor::from_vec(bq, out_c, &self.device)?, bv.as_tensor())?;
                    let cols = unfold(&t, &win, self.idx[li].as_ref().context("conv index")?)?;
                    let (m, kk, ci) = cols.dims3()?;
                    let y = if depthwise {
                        cols.broadcast_mul(&wt)?.sum(1)?
                    } else {
                        cols.reshape((m, kk * ci))?.matmul(&wt.t()?)?
                    };
                    let y = activate(y.broadcast_add(&bt)?, act)?;
                    y.reshape((n, win.out[0], win.out[1], out_c))?
                }
                Layer::Dense { units, act, .. } => {
                    let (wq, bq) = self.dequantized(li).context("dense has weights")?;
                    let (wv, bv) = self.vars[li].as_ref().context("dense has weights")?;
                    let wt = ste(
                        Tensor::from_vec(wq, wv.shape(), &self.device)?,
                        wv.as_tensor(),
                    )?;
                    let bt = ste(Tensor::from_vec(bq, units, &self.device)?, bv.as_tensor())?;
                    let y = t.flatten_from(1)?.matmul(&wt.t()?)?.broadcast_add(&bt)?;
                    activate(y, act)?
                }
                Layer::Pool { win, max } => {
                    let cols = unfold(&t, &win, self.idx[li].as_ref().context("pool index")?)?;
                    let y = if max { cols.max(1)? } else { cols.mean(1)? };
                    let ch = y.dim(1)?;
                    y.reshape((n, win.out[0], win.out[1], ch))?
                }
                Layer::Gap { input } => {
                    let [gh, gw, gc] = input;
                    t.reshape((n, gh * gw, gc))?.mean(1)?
                }
                Layer::Identity => match self.model.shapes[li + 1] {
                    Shape::Flat(_) => t.flatten_from(1)?,
                    Shape::Spatial(_) => t,
                },
            };
            if matches!(layer, Layer::Identity) {
                continue;
            }
            if produces {
                see(g, &t)?;
            }
            // Max pools keep their input's grid (a no-op value-wise); average pools and every
            // other op round into their output's grid.
            t = fake_quant_ste(&t, aq[g].0, aq[g].1)?;
        }
        Ok(t)
    }
}

/// The best epoch so far: metric, model, ranges, epoch.
type Snapshot = (f64, FloatModel, Vec<(f32, f32)>, usize);

/// Result of [`finetune`].
#[derive(Debug, Clone)]
pub struct Finetuned {
    /// The fine-tuned float model (best epoch by the calibration metric).
    pub model: FloatModel,
    /// Activation ranges at that epoch.
    pub ranges: Vec<(f32, f32)>,
    /// The calibration metric of the int8 model rebuilt after each epoch.
    pub history: Vec<f64>,
    /// Best epoch (1-based; 0 when no epoch beat the starting metric).
    pub best_epoch: usize,
    /// Wall time, seconds.
    pub seconds: f64,
}

/// Fine-tunes `student` with fake quantization, distilling from `teacher_logits` (the float
/// model's logits on `x`, `n * classes` values) and, with weight `1 - alpha`, the labels.
/// After every epoch `score(model, ranges)` rates the int8 model rebuilt from the current
/// weights; the best epoch is returned (ties: the earlier), `start` being the metric before.
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    student: &FloatModel,
    ranges: &[(f32, f32)],
    per_tensor: bool,
    x: &[f32],
    labels: Option<&[u32]>,
    teacher_logits: &[f32],
    opts: &QatOptions,
    start: f64,
    mut score: impl FnMut(&FloatModel, &[(f32, f32)]) -> Result<f64>,
) -> Result<Finetuned> {
    opts.validate()?;
    let t0 = Instant::now();
    let f = student.features();
    let k = student.classes();
    ensure!(
        !x.is_empty() && x.len() % f == 0,
        "QAT data do not split into samples"
    );
    let n = x.len() / f;
    ensure!(
        teacher_logits.len() == n * k,
        "teacher logits do not match the data"
    );
    if let Some(y) = labels {
        ensure!(y.len() == n, "{} labels for {n} samples", y.len());
    }
    let alpha = if labels.is_some() { opts.alpha } else { 1.0 };
    let t = opts.temperature;
    let teacher_t = temper(teacher_logits, k, t);
    let mut net = QatNet::new(student, ranges, per_tensor)?;
    let params = net.params();
    let mut adam = AdamW::new(&params, 0.0)?;
    let steps_per_epoch = n.div_ceil(opts.batch);
    let total = (steps_per_epoch * opts.epochs) as u64;
    let mut best: Option<Snapshot> = None;
    let mut history = Vec::new();
    let mut best_metric = start;
    let mut order: Vec<usize> = (0..n).collect();
    for epoch in 0..opts.epochs {
        let mut rng = Pcg64::seed_from_u64(derive_seed(opts.seed, epoch as u64, 0x9a7));
        order.shuffle(&mut rng);
        for chunk in order.chunks(opts.batch) {
            let m = chunk.len();
            let mut xb = Vec::with_capacity(m * f);
            let mut tb = Vec::with_capacity(m * k);
            for &i in chunk {
                xb.extend_from_slice(&x[i * f..(i + 1) * f]);
                tb.extend_from_slice(&teacher_t[i * k..(i + 1) * k]);
            }
            let xt = Tensor::from_vec(xb, (m, f), &Device::Cpu)?;
            let mut obs = (opts.ema > 0.0)
                .then(|| vec![(f32::INFINITY, f32::NEG_INFINITY); net.ranges.len()]);
            let logits = net.forward(&xt, obs.as_mut())?;
            let mut loss = (hinton_kd(&logits, &tb, t)? * alpha)?;
            if let (Some(y), true) = (labels, alpha < 1.0) {
                let yb: Vec<u32> = chunk.iter().map(|&i| y[i]).collect();
                let yt = Tensor::from_vec(yb, m, &Device::Cpu)?;
                let ce = candle_nn::loss::cross_entropy(&logits, &yt)?;
                loss = (loss + (ce * (1.0 - alpha))?)?;
            }
            let lv = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            if !lv.is_finite() {
                bail!(
                    "QAT diverged at epoch {}: the loss is {lv} (lower --qat-lr)",
                    epoch + 1
                );
            }
            let grads = loss.backward()?;
            let step = adam.step;
            let lr =
                opts.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total as f64).cos());
            adam.step(&params, &grads, lr)?;
            if let Some(obs) = obs {
                let mom = opts.ema as f32;
                for (r, o) in net.ranges.iter_mut().zip(obs) {
                    if o.0 <= o.1 {
                        *r = ((1.0 - mom) * r.0 + mom * o.0, (1.0 - mom) * r.1 + mom * o.1);
                    }
                }
            }
        }
        let fm = net.float_model()?;
        let metric = score(&fm, &net.ranges)?;
        history.push(metric);
        if metric > best_metric {
            best_metric = metric;
            best = Some((metric, fm, net.ranges.clone(), epoch + 1));
        }
    }
    let (model, ranges, best_epoch) = match best {
        Some((_, m, r, e)) => (m, r, e),
        None => (net.float_model()?, net.ranges.clone(), 0),
    };
    Ok(Finetuned {
        model,
        ranges,
        history,
        best_epoch,
        seconds: t0.elapsed().as_secs_f64(),
    })
}
