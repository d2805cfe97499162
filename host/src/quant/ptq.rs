//! The quantization pipeline: validate the calibration set, collect statistics, choose
//! ranges (one method, or `auto` = the best per tensor by the SQNR of the model output),
//! write the int8 model, and recover accuracy when the drop exceeds the budget.
//!
//! Recovery steps, in order: empirical bias correction (the mean error of every weighted
//! layer's int8 pre-activation against the float one, measured on the calibration set with
//! the upstream layers already quantized, is subtracted from the float bias before
//! re-quantizing it); then quantization-aware fine-tuning with the float model as the
//! distillation teacher ([`super::qat`]), after which the int8 model is rebuilt from the
//! fine-tuned weights and the QAT ranges. Each step is kept only if it raises the metric on the
//! calibration set (bias correction: does not lower it), and [`Outcome::steps`] says what ran
//! and what it gained.

use super::build::{build, groups, BuildOptions, Built};
use super::calib::{sqnr_db, Histogram, Method, MinMax};
use super::equalize::equalize;
use super::float::{apply, FloatModel, Layer};
use super::int8::{accuracy, agreement, float_predictions, Int8Model, SqnrProbe};
use super::qat::{finetune, QatMode, QatOptions};
use super::report::{measure, LayerReport};
use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

/// Calibration samples (raw, as the training data files hold them).
#[derive(Debug, Clone)]
pub struct CalibSet {
    /// `n * features` values.
    pub x: Vec<f32>,
    /// Optional labels (enables the accuracy-drop budget; otherwise agreement with the float
    /// model stands in for accuracy).
    pub labels: Option<Vec<u32>>,
}

/// Range selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Calibration {
    /// One method for every tensor.
    Fixed(Method),
    /// Per tensor, the method giving the best output SQNR.
    Auto {
        /// Percentile used as the percentile candidate.
        percentile: f64,
    },
}

/// When to run bias correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BiasCorrection {
    /// Only when the drop exceeds the budget.
    Auto,
    /// Always (kept only if it does not lower accuracy on the calibration set).
    On,
    /// Never.
    Off,
}

/// Pipeline options.
#[derive(Debug, Clone)]
pub struct PtqOptions {
    /// Range selection.
    pub calibration: Calibration,
    /// Model building.
    pub build: BuildOptions,
    /// Accuracy-drop budget in percentage points.
    pub max_drop: f64,
    /// Bias correction policy.
    pub bias_correction: BiasCorrection,
    /// Samples used to score candidates in `auto` and for bias correction.
    pub search_samples: usize,
    /// Quantization-aware fine-tuning (policy and settings).
    pub qat: QatOptions,
    /// Cross-layer equalization before calibration ([`super::equalize`]).
    pub equalize: bool,
}

impl Default for PtqOptions {
    /// `auto` calibration (percentile 99.99), per-channel weights, no softmax, a 0.5-point
    /// budget, bias correction and QAT when over budget, 500 search samples.
    fn default() -> Self {
        PtqOptions {
            calibration: Calibration::Auto { percentile: 99.99 },
            build: BuildOptions::default(),
            max_drop: 0.5,
            bias_correction: BiasCorrection::Auto,
            search_samples: 500,
            qat: QatOptions::default(),
            equalize: false,
        }
    }
}

/// What one recovery step did.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// Step name.
    pub name: String,
    /// Whether it ran.
    pub ran: bool,
    /// Whether its result was kept.
    pub kept: bool,
    /// Metric (accuracy or agreement, %) before.
    pub before: Option<f64>,
    /// Metric after.
    pub after: Option<f64>,
    /// Explanation.
    pub note: String,
    /// Wall time of the step, seconds (when it ran).
    pub seconds: Option<f64>,
}

/// Result of [`quantize`].
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The int8 model.
    pub built: Built,
    /// Method name per activation group.
    pub methods: Vec<String>,
    /// Range per activation group.
    pub ranges: Vec<(f32, f32)>,
    /// Float accuracy (or 100 % agreement) on the calibration set, %.
    pub float_metric: f64,
    /// int8 accuracy (or agreement with float) on the calibration set, %.
    pub int8_metric: f64,
    /// True when the metric is accuracy against labels, false for agreement with float.
    pub metric_is_accuracy: bool,
    /// Logits SQNR (dB) of the int8 model on the calibration set.
    pub logits_sqnr_db: f64,
    /// Recovery steps.
    pub steps: Vec<Step>,
    /// Guardrail warnings.
    pub warnings: Vec<String>,
    /// The per-layer report (on the calibration set).
    pub report: LayerReport,
}

/// Checks the calibration set against the model; returns warnings for suspicious data.
pub fn validate(model: &FloatModel, data: &CalibSet) -> Result<Vec<String>> {
    let f = model.features();
    ensure!(!data.x.is_empty(), "the calibration set is empty");
    ensure!(
        data.x.len() % f == 0,
        "calibration data has the wrong shape: {} values do not split into samples of {:?} \
         ({f} values) that the model takes",
        data.x.len(),
        model.meta.input_shape
    );
    let n = data.x.len() / f;
    if let Some(bad) = data.x.iter().position(|v| !v.is_finite()) {
        bail!(
            "calibration data holds a non-finite value ({}) at sample {}, feature {}",
            data.x[bad],
            bad / f,
            bad % f
        );
    }
    if let Some(y) = &data.labels {
        ensure!(
            y.len() == n,
            "{} calibration labels for {n} samples",
            y.len()
        );
        if let Some(bad) = y.iter().find(|&&v| v as usize >= model.classes()) {
            bail!(
                "calibration label {bad} is not below the class count {}",
                model.classes()
            );
        }
    }
    // The model normalizes raw inputs with statistics of its training data: raw calibration
    // data must look like that data, not like data preprocessed some other way.
    let mut warnings = Vec::new();
    let c = model.meta.input_shape[2];
    for ch in 0..c {
        let vals: Vec<f64> = data
            .x
            .iter()
            .skip(ch)
            .step_by(c)
            .map(|&v| f64::from(v))
            .collect();
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len() as f64).sqrt();
        let (m0, s0) = (
            f64::from(model.meta.norm.mean[ch]),
            f64::from(model.meta.norm.std[ch]),
        );
        let z = (mean - m0).abs() / s0;
        let ratio = sd / s0;
        if n >= 16 && (z > 1.0 || !(0.25..=4.0).contains(&ratio)) {
            warnings.push(format!(
                "calibration channel {ch}: mean {mean:.3}, std {sd:.3}, but the model was trained \
                 on mean {m0:.3}, std {s0:.3}: pass raw data preprocessed as for training (the \
                 model applies its own normalization)"
            ));
        }
    }
    Ok(warnings)
}

/// Collects min/max, then histograms, per activation group.
pub fn statistics(model: &FloatModel, x: &[f32]) -> Vec<Histogram> {
    let groups = groups(model);
    let n_groups = groups.iter().max().map_or(0, |g| g + 1);
    let f = model.features();
    let mut mm = vec![MinMax::default(); n_groups];
    for row in x.chunks_exact(f) {
        model.forward(row, |p, v| mm[groups[p]].add(v));
    }
    let mut hist: Vec<Histogram> = mm.iter().map(Histogram::new).collect();
    for row in x.chunks_exact(f) {
        model.forward(row, |p, v| hist[groups[p]].add(v));
    }
    hist
}

/// Logits SQNR of an int8 model against float logits on `x`.
fn logits_sqnr(float_logits: &[f32], int8: &Int8Model, x: &[f32], features: usize) -> Result<f64> {
    let out = int8.outputs(x, features)?;
    let (mut s, mut n) = (0f64, 0f64);
    for (f, q) in float_logits.iter().zip(&out.values) {
        s += f64::from(*f).powi(2);
        n += f64::from(f - q).powi(2);
    }
    Ok(sqnr_db(s, n))
}

fn no_softmax(opts: &BuildOptions) -> BuildOptions {
    BuildOptions {
        softmax: false,
        ..opts.clone()
    }
}

/// Range and method name per activation group.
type RangesAndMethods = (Vec<(f32, f32)>, Vec<String>);

/// Picks per group the candidate whose model output SQNR is best, greedily in graph order.
fn auto_ranges(
    model: &FloatModel,
    hist: &[Histogram],
    percentile: f64,
    opts: &BuildOptions,
    x: &[f32],
) -> Result<RangesAndMethods> {
    let f = model.features();
    let (logits, _) = float_predictions(model, x);
    let candidates = [Method::Mse, Method::MinMax, Method::Percentile(percentile)];
    let mut ranges: Vec<(f32, f32)> = hist.iter().map(|h| h.range(Method::Mse)).collect();
    let mut methods = vec![Method::Mse.to_string(); hist.len()];
    let opts = no_softmax(opts);
    for g in 0..hist.len() {
        let mut best: Option<(f64, (f32, f32), String)> = None;
        for m in candidates {
            let r = hist[g].range(m);
            let mut trial = ranges.clone();
            trial[g] = r;
            let built = build(model, &trial, &opts)?;
            let score = logits_sqnr(&logits, &Int8Model::new(&built.bytes)?, x, f)?;
            if best.as_ref().is_none_or(|b| score > b.0 + 1e-9) {
                best = Some((score, r, m.to_string()));
            }
        }
        let (_, r, name) = best.expect("at least one candidate");
        ranges[g] = r;
        methods[g] = name;
    }
    Ok((ranges, methods))
}

/// Metric (%): accuracy with labels, else agreement with the float predictions.
fn metric(pred: &[usize], float_pred: &[usize], labels: Option<&[u32]>) -> f64 {
    100.0
        * match labels {
            Some(y) => accuracy(pred, y),
            None => agreement(pred, float_pred),
        }
}

/// Empirical bias correction, layer by layer in graph order. Returns the corrected model.
// `li` indexes the layers, the activation groups and the built model's tables alike.
#[allow(clippy::needless_range_loop)]
pub fn bias_correct(
    model: &FloatModel,
    ranges: &[(f32, f32)],
    opts: &BuildOptions,
    x: &[f32],
) -> Result<FloatModel> {
    let f = model.features();
    let mut fm = model.clone();
    let opts = no_softmax(opts);
    let groups = groups(model);
    for li in 0..fm.layers.len() {
        if !fm.layers[li].has_weights() {
            continue;
        }
        let built = build(&fm, ranges, &opts)?;
        let int8 = Int8Model::new(&built.bytes)?;
        let mint = int8.model();
        // The int8 input of layer `li`: the output of the op before the layer's first op
        // (or the quantized model input).
        let feeder = built
            .op_layers
            .iter()
            .position(|l| *l == Some(li))
            .and_then(|first| first.checked_sub(1));
        let (in_s, in_z) = built.act_quant[groups[li]];
        let qw = built
            .weights
            .iter()
            .find(|w| w.layer == li)
            .expect("weighted layer was quantized");
        let mut deq = fm.layers[li].clone();
        if let Layer::Conv { w, b, .. } | Layer::Dense { w, b, .. } = &mut deq {
            for (i, (wv, q)) in w.iter_mut().zip(&qw.q).enumerate() {
                *wv = f32::from(*q) * qw.scales[fm.layers[li].weight_channel(i)];
            }
            for (c, bv) in b.iter_mut().enumerate() {
                *bv = qw.bias[c] as f32 * in_s * qw.scales[c];
            }
        }
        let channels = fm.layers[li].out_channels();
        let mut diff = vec![0f64; channels];
        let mut counts = vec![0u64; channels];
        let mut probe = SqnrProbe::new(&mint, &built.op_points)?;
        let model_ref = model;
        let mut float_inputs: Vec<Vec<f32>> = Vec::new();
        let mut int8_inputs: Vec<Vec<f32>> = Vec::new();
        int8.run(x, f, &mut probe, |s, p| {
            if s > 0 {
                // Collect the previous sample's int8 input of layer `li`.
                if let Some(op) = feeder {
                    int8_inputs.push(
                        p.last[op]
                            .iter()
                            .map(|&q| in_s * (i32::from(q) - in_z) as f32)
                            .collect(),
                    );
                }
            }
            p.load_sample(model_ref, &x[s * f..(s + 1) * f]);
            float_inputs.push(p.current[li].clone());
        })?;
        if let Some(op) = feeder {
            int8_inputs.push(
                probe.last[op]
                    .iter()
                    .map(|&q| in_s * (i32::from(q) - in_z) as f32)
                    .collect(),
            );
        } else {
            // The model input: quantized exactly as the runtime's `set_input_f32` does.
            int8_inputs = float_inputs
                .iter()
                .map(|v| {
                    v.iter()
                        .map(|&t| super::calib::fake_quant(t, in_s, in_z))
                        .collect()
                })
                .collect();
        }
        for (xf, xq) in float_inputs.iter().zip(&int8_inputs) {
            let yf = apply(&model.layers[li], xf, false);
            let yq = apply(&deq, xq, false);
            for (j, (a, b)) in yq.iter().zip(&yf).enumerate() {
                let c = j % channels;
                diff[c] += f64::from(a - b);
                counts[c] += 1;
            }
        }
        if let Some(bias) = fm.layers[li].bias_mut() {
            for (c, bv) in bias.iter_mut().enumerate() {
                *bv -= (diff[c] / counts[c].max(1) as f64) as f32;
            }
        }
    }
    Ok(fm)
}

/// Quantizes `model` with calibration data `data`.
pub fn quantize(model: &FloatModel, data: &CalibSet, opts: &PtqOptions) -> Result<Outcome> {
    opts.qat.validate()?;
    let warnings = validate(model, data)?;
    // Everything below (ranges, the int8 file, the per-layer report, QAT) works on the
    // equalized model: the same function with differently scaled intermediate channels.
    let equalized_model;
    let mut equalize_step = None;
    let model = if opts.equalize {
        let t0 = std::time::Instant::now();
        let mut m = model.clone();
        let e = equalize(&mut m);
        equalize_step = Some(Step {
            name: "cross-layer equalization".into(),
            ran: true,
            kept: true,
            before: None,
            after: None,
            note: format!(
                "{} layer pair(s) rescaled (conv/dense -> conv/dense through ReLU, pooling or flatten)",
                e.pairs
            ),
            seconds: Some(t0.elapsed().as_secs_f64()),
        });
        equalized_model = m;
        &equalized_model
    } else {
        model
    };
    let f = model.features();
    let n = data.x.len() / f;
    let hist = statistics(model, &data.x);
    let search = &data.x[..n.min(opts.search_samples.max(1)) * f];
    let (mut ranges, mut methods) = match opts.calibration {
        Calibration::Fixed(m) => (
            hist.iter().map(|h| h.range(m)).collect(),
            vec![m.to_string(); hist.len()],
        ),
        Calibration::Auto { percentile } => {
            auto_ranges(model, &hist, percentile, &opts.build, search)?
        }
    };
    let (float_logits, float_pred) = float_predictions(model, &data.x);
    let labels = data.labels.as_deref();
    let float_metric = metric(&float_pred, &float_pred, labels);
    let mut built = build(model, &ranges, &opts.build)?;
    let mut int8 = Int8Model::new(&built.bytes)?;
    let mut int8_metric = metric(&int8.outputs(&data.x, f)?.predictions, &float_pred, labels);
    let mut steps: Vec<Step> = equalize_step.into_iter().collect();
    let over = |m: f64| float_metric - m > opts.max_drop;
    let run_bc = match opts.bias_correction {
        BiasCorrection::On => true,
        BiasCorrection::Off => false,
        BiasCorrection::Auto => over(int8_metric),
    };
    let mut used = model.clone();
    if run_bc {
        let t0 = std::time::Instant::now();
        let corrected = bias_correct(model, &ranges, &opts.build, search)?;
        let b2 = build(&corrected, &ranges, &opts.build)?;
        let i2 = Int8Model::new(&b2.bytes)?;
        let m2 = metric(&i2.outputs(&data.x, f)?.predictions, &float_pred, labels);
        let kept = m2 >= int8_metric;
        steps.push(Step {
            name: "bias correction".into(),
            ran: true,
            kept,
            before: Some(int8_metric),
            after: Some(m2),
            note: if kept {
                "kept".into()
            } else {
                "discarded: it lowered the calibration metric".into()
            },
            seconds: Some(t0.elapsed().as_secs_f64()),
        });
        if kept {
            built = b2;
            int8 = i2;
            int8_metric = m2;
            used = corrected;
        }
    } else {
        steps.push(Step {
            name: "bias correction".into(),
            ran: false,
            kept: false,
            before: None,
            after: None,
            note: match opts.bias_correction {
                BiasCorrection::Off => "disabled (--bias-correction off)".into(),
                _ => format!("not needed: drop within {} points", opts.max_drop),
            },
            seconds: None,
        });
    }
    let run_qat = match opts.qat.mode {
        QatMode::On => true,
        QatMode::Off => false,
        QatMode::Auto => over(int8_metric),
    };
    if run_qat {
        let q = &opts.qat;
        // With a holdout, QAT trains on the first samples and the last ones choose the epoch
        // and decide whether to keep the result (the calibration set is training data the
        // float model has fitted, and QAT can overfit it).
        let n_hold = ((n as f64) * q.holdout).round() as usize;
        let n_fit = if n_hold > 0 && n_hold < n {
            n - n_hold
        } else {
            n
        };
        let hold = |v: usize| if n_fit < n { n_fit * v.. } else { 0.. };
        let score_x = &data.x[hold(f)];
        let score_pred = &float_pred[hold(1)];
        let score_labels = labels.map(|y| &y[hold(1)]);
        let score_opts = opts.build.clone();
        let score = |m: &FloatModel, r: &[(f32, f32)]| -> Result<f64> {
            let b = build(m, r, &score_opts)?;
            let p = Int8Model::new(&b.bytes)?.outputs(score_x, f)?.predictions;
            Ok(metric(&p, score_pred, score_labels))
        };
        let start = if n_fit < n {
            score(&used, &ranges)?
        } else {
            int8_metric
        };
        // Fine-tune the float model in use (bias-corrected if that was kept), distilling from
        // the original float model.
        let tuned = finetune(
            &used,
            &ranges,
            opts.build.per_tensor_weights,
            &data.x[..n_fit * f],
            labels.map(|y| &y[..n_fit]),
            &float_logits[..n_fit * model.classes()],
            q,
            start,
            score,
        )?;
        let b2 = build(&tuned.model, &tuned.ranges, &opts.build)?;
        let i2 = Int8Model::new(&b2.bytes)?;
        let m2 = metric(&i2.outputs(&data.x, f)?.predictions, &float_pred, labels);
        let kept = tuned.best_epoch > 0;
        let held =
            if n_fit < n {
                format!(
                "; {n_hold} held-out samples choose the epoch: {start:.2} % before, best {:.2} %",
                tuned.history.iter().cloned().fold(f64::NEG_INFINITY, f64::max)
            )
            } else {
                String::new()
            };
        let history = tuned
            .history
            .iter()
            .map(|m| format!("{m:.2}"))
            .collect::<Vec<_>>()
            .join(", ");
        let what = format!(
            "{} epochs, lr {}, batch {}, T {}, alpha {}{}, {} samples{}; per-epoch int8 metric: {history}",
            q.epochs,
            q.lr,
            q.batch,
            q.temperature,
            if labels.is_some() { q.alpha } else { 1.0 },
            if labels.is_some() { "" } else { " (no labels: KD only)" },
            n_fit,
            if q.ema > 0.0 {
                format!(", range EMA {}", q.ema)
            } else {
                String::new()
            },
        );
        steps.push(Step {
            name: "QAT + KD".into(),
            ran: true,
            kept,
            before: Some(int8_metric),
            after: Some(m2),
            note: if kept {
                format!("kept (epoch {}): {what}{held}", tuned.best_epoch)
            } else {
                format!("discarded: no epoch raised the calibration metric ({what}{held})")
            },
            seconds: Some(tuned.seconds),
        });
        if kept {
            built = b2;
            int8 = i2;
            int8_metric = m2;
            used = tuned.model;
            if tuned.ranges != ranges {
                for m in &mut methods {
                    m.push_str("+qat-ema");
                }
            }
            ranges = tuned.ranges;
        }
    } else {
        steps.push(Step {
            name: "QAT + KD".into(),
            ran: false,
            kept: false,
            before: None,
            after: None,
            note: match opts.qat.mode {
                QatMode::Off if over(int8_metric) => format!(
                    "disabled (--qat off), although the drop ({:.2} points) exceeds --max-drop {}",
                    float_metric - int8_metric,
                    opts.max_drop
                ),
                QatMode::Off => "disabled (--qat off)".into(),
                _ => format!("not needed: drop within {} points", opts.max_drop),
            },
            seconds: None,
        });
    }
    let mut logits_sqnr_db = logits_sqnr(&float_logits, &int8, &data.x, f)?;
    if opts.build.softmax {
        // The output is probabilities; measure the logits on the same ranges without it.
        let plain = build(&used, &ranges, &no_softmax(&opts.build))?;
        logits_sqnr_db = logits_sqnr(&float_logits, &Int8Model::new(&plain.bytes)?, &data.x, f)?;
    }
    let report = measure(&used, &built, &methods, &data.x)?;
    Ok(Outcome {
        built,
        methods,
        ranges,
        float_metric,
        int8_metric,
        metric_is_accuracy: labels.is_some(),
        logits_sqnr_db,
        steps,
        warnings,
        report,
    })
}
