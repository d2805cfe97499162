//! Quantization-aware fine-tuning: the straight-through estimator, the fake-quantized forward
//! pass against the int8 model the builder writes, a QAT run on a small CNN (the metric does
//! not drop, the rebuilt file parses and runs, runs are deterministic), and bad settings.

mod quant_common;

use candle_core::{Device, Tensor, Var};
use edgekd::quant::calib::fake_quant;
use edgekd::quant::float::{argmax, FloatModel, Layer};
use edgekd::quant::int8::Int8Model;
use edgekd::quant::ptq::BiasCorrection;
use edgekd::quant::qat::{fake_quant_ste, QatNet};
use edgekd::quant::{quantize, CalibSet, Calibration, Method, PtqOptions, QatMode, QatOptions};
use quant_common::{cnn_bytes, mlp_bytes_rescaled, signals};
use std::path::Path;

fn cnn() -> FloatModel {
    FloatModel::from_bytes(&cnn_bytes(7), Path::new("handmade")).unwrap()
}

/// Calibration samples labelled by the float model itself.
fn labelled(float: &FloatModel, n: usize, seed: u64) -> CalibSet {
    let x = signals(n, seed);
    let y = x
        .chunks_exact(40)
        .map(|r| argmax(&float.logits(r)) as u32)
        .collect();
    CalibSet { x, labels: Some(y) }
}

fn qat_off() -> QatOptions {
    QatOptions {
        mode: QatMode::Off,
        ..Default::default()
    }
}

fn opts(qat: QatOptions) -> PtqOptions {
    PtqOptions {
        calibration: Calibration::Fixed(Method::Mse),
        bias_correction: BiasCorrection::Off,
        qat,
        ..Default::default()
    }
}

#[test]
fn ste_gradient_is_identity_inside_the_range_and_zero_outside() {
    let (scale, zp) = (0.05f32, -20);
    // Representable: [0.05 * (-128 + 20), 0.05 * (127 + 20)] = [-5.4, 7.35].
    let vals = [
        -9.0f32, -5.5, -5.3, -1.234, -0.025, 0.0, 0.025, 0.07, 3.3333, 7.3, 7.4, 50.0,
    ];
    let x = Var::from_tensor(&Tensor::new(&vals[..], &Device::Cpu).unwrap()).unwrap();
    let y = fake_quant_ste(x.as_tensor(), scale, zp).unwrap();
    let got = y.to_vec1::<f32>().unwrap();
    for (v, g) in vals.iter().zip(&got) {
        assert_eq!(*g, fake_quant(*v, scale, zp), "fake quant of {v}");
    }
    // d/dx sum(w * y) = w inside the range, 0 outside.
    let w: Vec<f32> = (1..=vals.len()).map(|i| i as f32).collect();
    let wt = Tensor::new(&w[..], &Device::Cpu).unwrap();
    let grads = (y * wt).unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads.get(&x).unwrap().to_vec1::<f32>().unwrap();
    for ((v, gi), wi) in vals.iter().zip(&g).zip(&w) {
        let inside = (-5.4..=7.35).contains(v);
        assert_eq!(*gi, if inside { *wi } else { 0.0 }, "gradient at {v}");
    }
}

#[test]
fn fake_quantized_forward_uses_the_int8_model_weights_exactly() {
    let float = cnn();
    let data = labelled(&float, 300, 1);
    let out = quantize(&float, &data, &opts(qat_off())).unwrap();
    let mut net = QatNet::new(&float, &out.ranges, false).unwrap();
    let mut checked = 0;
    for qw in &out.built.weights {
        let li = qw.layer;
        let (w, b) = net.fake_weights(li).unwrap().unwrap();
        let layer = &float.layers[li];
        let deq: Vec<f32> =
            qw.q.iter()
                .enumerate()
                .map(|(i, &q)| f32::from(q) * qw.scales[layer.weight_channel(i)])
                .collect();
        assert_eq!(w, deq, "layer {li} weights");
        // The int8 file's bias, dequantized at input_scale * weight_scale[c].
        let groups = edgekd::quant::build::groups(&float);
        let in_s = out.built.act_quant[groups[li]].0;
        let bias: Vec<f32> = qw
            .bias
            .iter()
            .zip(&qw.scales)
            .map(|(&q, &s)| q as f32 * in_s * s)
            .collect();
        assert_eq!(b, bias, "layer {li} bias");
        checked += 1;
    }
    assert_eq!(checked, 4);
    // The simulated logits follow the runtime's within a few output steps (requantization
    // rounds in fixed point; the simulation in float).
    let n = 100;
    let x = Tensor::from_slice(&data.x[..n * 40], (n, 40), &Device::Cpu).unwrap();
    let sim = net
        .forward(&x, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let int8 = Int8Model::new(&out.built.bytes)
        .unwrap()
        .outputs(&data.x[..n * 40], 40)
        .unwrap();
    let step = *out.built.act_quant.last().map(|(s, _)| s).unwrap();
    let mean_lsb = sim
        .iter()
        .zip(&int8.values)
        .map(|(a, b)| f64::from((a - b).abs() / step))
        .sum::<f64>()
        / sim.len() as f64;
    let pred_sim: Vec<usize> = sim.chunks_exact(10).map(argmax).collect();
    let agree = pred_sim
        .iter()
        .zip(&int8.predictions)
        .filter(|(a, b)| a == b)
        .count();
    eprintln!("simulated vs int8 logits: mean {mean_lsb:.3} LSB, {agree}/100 same class");
    assert!(mean_lsb < 1.0, "mean |sim - int8| = {mean_lsb} LSB");
    assert!(
        agree >= 95,
        "simulated and int8 predictions agree on {agree}/100"
    );
}

#[test]
fn qat_does_not_lower_the_metric_and_its_model_runs() {
    let float = cnn();
    let data = labelled(&float, 300, 1);
    // KD only: the labels of this random model sit on near-ties (a third of the samples have
    // a top-2 logit margin under 0.1), which cross-entropy at this rate tramples.
    let qat = QatOptions {
        mode: QatMode::On,
        epochs: 3,
        lr: 1e-3,
        alpha: 1.0,
        ..Default::default()
    };
    let out = quantize(&float, &data, &opts(qat.clone())).unwrap();
    let step = out.steps.iter().find(|s| s.name == "QAT + KD").unwrap();
    assert!(step.ran, "{step:?}");
    eprintln!("{step:?}");
    let (before, after) = (step.before.unwrap(), step.after.unwrap());
    assert!(out.int8_metric >= before, "{step:?}");
    if step.kept {
        assert!(after > before && out.int8_metric == after, "{step:?}");
    } else {
        assert_eq!(out.int8_metric, before, "{step:?}");
    }
    let int8 = Int8Model::new(&out.built.bytes).unwrap();
    let res = int8.outputs(&data.x, 40).unwrap();
    assert_eq!(res.predictions.len(), 300);
    // Deterministic given the seed.
    let again = quantize(&float, &data, &opts(qat)).unwrap();
    assert_eq!(again.built.bytes, out.built.bytes);
    assert_eq!(again.int8_metric, out.int8_metric);
}

/// The QAT graph is its own code (unfold convolutions, depthwise broadcast, pools), so its
/// wiring gets a finite-difference check: with ranges wide enough that nothing clips, the
/// straight-through gradient of `sum(c * logits)` must match central differences of the
/// same loss through the plain float model (`FloatModel::logits`), up to the difference
/// between evaluating at the quantized and the float point (fine grids: a few percent).
#[test]
fn qat_gradients_match_finite_differences_of_the_float_model() {
    let float = cnn();
    let n = 8;
    let x = signals(n, 5);
    let xt = Tensor::from_slice(&x, (n, 40), &Device::Cpu).unwrap();
    let n_groups = edgekd::quant::build::groups(&float).iter().max().unwrap() + 1;
    // Observe the true ranges, then widen them by 20 % so that no value clips.
    let mut probe = QatNet::new(&float, &vec![(-50.0, 50.0); n_groups], false).unwrap();
    let mut seen = vec![(f32::MAX, f32::MIN); n_groups];
    probe.forward(&xt, Some(&mut seen)).unwrap();
    let ranges: Vec<(f32, f32)> = seen
        .iter()
        .map(|&(lo, hi)| (1.2 * lo.min(0.0) - 0.1, 1.2 * hi.max(0.0) + 0.1))
        .collect();
    let mut net = QatNet::new(&float, &ranges, false).unwrap();
    let coef: Vec<f32> = (0..n * 10)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 11.0)
        .collect();
    let ct = Tensor::from_slice(&coef, (n, 10), &Device::Cpu).unwrap();
    let loss = (net.forward(&xt, None).unwrap() * &ct)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    let float_loss = |m: &FloatModel| -> f64 {
        x.chunks_exact(40)
            .zip(coef.chunks_exact(10))
            .map(|(r, c)| {
                let l = m.logits(r);
                l.iter().zip(c).map(|(a, b)| f64::from(a * b)).sum::<f64>()
            })
            .sum()
    };
    for p in net.params() {
        let g = grads.get(p.var.as_tensor()).unwrap();
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let li: usize = p.name[1..p.name.find('.').unwrap()].parse().unwrap();
        let fd: Vec<f32> = (0..g.len())
            .map(|k| {
                let eps = 1e-3f32;
                let mut plus = float.clone();
                let mut minus = float.clone();
                for (m, d) in [(&mut plus, eps), (&mut minus, -eps)] {
                    let v = match &mut m.layers[li] {
                        Layer::Conv { w, b, .. } | Layer::Dense { w, b, .. } => {
                            if p.name.ends_with("weight") {
                                w
                            } else {
                                b
                            }
                        }
                        other => panic!("{}: no weights in {other:?}", p.name),
                    };
                    v[k] += d;
                }
                ((float_loss(&plus) - float_loss(&minus)) / f64::from(2.0 * eps)) as f32
            })
            .collect();
        let dot =
            |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| f64::from(x * y)).sum::<f64>();
        let diff: Vec<f32> = g.iter().zip(&fd).map(|(a, b)| a - b).collect();
        let cos = dot(&g, &fd) / (dot(&g, &g) * dot(&fd, &fd)).sqrt();
        let rel = (dot(&diff, &diff) / dot(&fd, &fd)).sqrt();
        eprintln!(
            "{}: {} entries, cosine {cos:.4}, relative error {rel:.3}",
            p.name,
            g.len()
        );
        // A wiring fault (a transposed weight, a wrong gather index) gives a cosine near 0;
        // quantization moves a few ReLU/ReLU6/max-pool decisions, which costs a few percent.
        assert!(
            cos > 0.95 && rel < 0.3,
            "{}: cosine {cos}, relative error {rel}",
            p.name
        );
    }
}

#[test]
fn qat_recovers_part_of_a_large_per_tensor_ptq_loss() {
    // Same float function, one hidden unit 128x larger: with per-tensor weights its scale
    // crushes the other 15 units' weights to a few levels.
    let balanced = FloatModel::from_bytes(&mlp_bytes_rescaled(3, 1.0), Path::new("m")).unwrap();
    let float = FloatModel::from_bytes(&mlp_bytes_rescaled(3, 128.0), Path::new("m")).unwrap();
    let data = labelled(&balanced, 400, 2);
    for r in data.x.chunks_exact(40).take(20) {
        let (a, b) = (balanced.logits(r), float.logits(r));
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() < 1e-4 * (1.0 + x.abs()),
                "rescaling changed {a:?} -> {b:?}"
            );
        }
    }
    let per_tensor = |qat: QatOptions| {
        let mut o = opts(qat);
        o.build.per_tensor_weights = true;
        o
    };
    let ptq = quantize(&float, &data, &per_tensor(QatOptions::default())).unwrap();
    let ptq_off = quantize(&float, &data, &per_tensor(qat_off())).unwrap();
    let channel = quantize(&float, &data, &opts(qat_off())).unwrap();
    let qat = QatOptions {
        mode: QatMode::On,
        epochs: 10,
        lr: 1e-3,
        alpha: 1.0,
        ..Default::default()
    };
    let out = quantize(&float, &data, &per_tensor(qat)).unwrap();
    let step = out.steps.iter().find(|s| s.name == "QAT + KD").unwrap();
    eprintln!(
        "float 100 %, per-channel PTQ {:.1} %, per-tensor PTQ {:.1} %, default recovery {:.1} %, \
         QAT {:.1} % ({step:?})",
        channel.int8_metric, ptq_off.int8_metric, ptq.int8_metric, out.int8_metric
    );
    // The labels are the float model's own predictions (100 %). The loss is large: the big
    // unit sets both the weight scale and the hidden activation's range (so per-channel
    // weights lose too, less), and QAT wins a good part of it back.
    assert!(ptq_off.int8_metric < 80.0, "no large PTQ loss to recover");
    assert!(
        channel.int8_metric > ptq_off.int8_metric,
        "per-tensor should lose more"
    );
    assert!(step.ran && step.kept, "{step:?}");
    assert!(out.int8_metric > ptq_off.int8_metric + 5.0, "{step:?}");
}

#[test]
fn discarded_qat_leaves_the_ptq_model() {
    let float = cnn();
    let data = labelled(&float, 300, 1);
    let ptq = quantize(&float, &data, &opts(qat_off())).unwrap();
    // Cross-entropy only at a high rate on near-tied labels: every epoch is worse.
    let out = quantize(
        &float,
        &data,
        &opts(QatOptions {
            mode: QatMode::On,
            epochs: 2,
            lr: 1e-3,
            alpha: 0.0,
            ..Default::default()
        }),
    )
    .unwrap();
    let step = out.steps.iter().find(|s| s.name == "QAT + KD").unwrap();
    assert!(
        step.ran && !step.kept && step.note.starts_with("discarded"),
        "{step:?}"
    );
    assert_eq!(out.built.bytes, ptq.built.bytes);
    assert_eq!(out.int8_metric, ptq.int8_metric);
}

#[test]
fn qat_without_labels_distils_only() {
    let float = cnn();
    let mut data = labelled(&float, 200, 3);
    data.labels = None;
    let out = quantize(
        &float,
        &data,
        &opts(QatOptions {
            mode: QatMode::On,
            epochs: 2,
            lr: 1e-3,
            ..Default::default()
        }),
    )
    .unwrap();
    let step = out.steps.iter().find(|s| s.name == "QAT + KD").unwrap();
    assert!(step.ran && step.note.contains("KD only"), "{step:?}");
    assert!(out.int8_metric >= step.before.unwrap());
}

#[test]
fn qat_holdout_chooses_on_unseen_samples() {
    let float = cnn();
    let data = labelled(&float, 300, 5);
    let out = quantize(
        &float,
        &data,
        &opts(QatOptions {
            mode: QatMode::On,
            epochs: 2,
            lr: 1e-4,
            holdout: 0.25,
            ..Default::default()
        }),
    )
    .unwrap();
    let step = out.steps.iter().find(|s| s.name == "QAT + KD").unwrap();
    assert!(
        step.ran && step.note.contains("225 samples") && step.note.contains("75 held-out"),
        "{step:?}"
    );
    Int8Model::new(&out.built.bytes)
        .unwrap()
        .outputs(&data.x, 40)
        .unwrap();
}

#[test]
fn bad_qat_settings_are_clear_errors() {
    let float = cnn();
    let data = labelled(&float, 50, 1);
    let cases = [
        (
            QatOptions {
                mode: QatMode::On,
                epochs: 0,
                ..Default::default()
            },
            "at least 1 epoch",
        ),
        (
            QatOptions {
                mode: QatMode::On,
                lr: f64::NAN,
                ..Default::default()
            },
            "learning rate must be a positive finite number",
        ),
        (
            QatOptions {
                mode: QatMode::Auto,
                lr: -1.0,
                ..Default::default()
            },
            "learning rate",
        ),
        (
            QatOptions {
                mode: QatMode::On,
                alpha: 1.5,
                ..Default::default()
            },
            "KD weight",
        ),
        (
            QatOptions {
                mode: QatMode::On,
                holdout: 1.5,
                ..Default::default()
            },
            "holdout fraction",
        ),
    ];
    for (q, needle) in cases {
        let err = quantize(&float, &data, &opts(q.clone())).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains(needle), "{q:?}: {msg}");
    }
    // Off: the settings are not used, so they are not checked.
    quantize(
        &float,
        &data,
        &opts(QatOptions {
            mode: QatMode::Off,
            epochs: 0,
            ..Default::default()
        }),
    )
    .unwrap();
}
