//! The training loop shared by `edgekd train` (labels only) and `edgekd distill` (teachers).
//!
//! Determinism: initialization, batch order, augmentation and dropout all come from seeded
//! PCG streams derived from `(seed, epoch, purpose)`, so a run is a function of its recipe,
//! seed and teachers. A checkpoint stores weights, BatchNorm statistics, AdamW moments and
//! the epoch; `--resume` replays from there and ends at the same weights.
//!
//! Output directory: `model.safetensors` (see `nn::store`), `metrics.jsonl`, `curves.svg`,
//! `summary.json`, `checkpoint.safetensors`; teachers trained here also get `model.onnx`.

pub mod loss;
pub mod metrics;
pub mod optim;
pub mod recipe;

use crate::data::augment::{derive_seed, epoch_view};
use crate::data::{self, Dataset, Splits};
use crate::nn::{store, Mode, Net};
use crate::teacher::{cache::TeacherCache, Teacher};
use anyhow::{ensure, Context, Result};
use candle_core::{DType, Tensor};
use metrics::EpochMetrics;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use recipe::{KdLoss, Loaded, Schedule};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to run.
pub struct RunConfig<'a> {
    /// The recipe.
    pub recipe: &'a Loaded,
    /// Output directory.
    pub out: PathBuf,
    /// Seed (init, batch order, augmentation, dropout).
    pub seed: u64,
    /// Continue from `out/checkpoint.safetensors` if present.
    pub resume: bool,
    /// Stop (after checkpointing) once this many epochs are done — simulates a killed run.
    pub halt_after: Option<usize>,
    /// Teachers (empty for labels-only training).
    pub teachers: Vec<Box<dyn Teacher>>,
    /// Teacher output cache directory.
    pub cache_dir: Option<PathBuf>,
    /// Show a progress bar.
    pub progress: bool,
    /// Also export `model.onnx`.
    pub export_onnx: bool,
    /// Already loaded splits (validated by the caller before anything is written).
    pub splits: Splits,
}

/// The outcome of a run, also written as `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Recipe name.
    pub name: String,
    /// Seed.
    pub seed: u64,
    /// Trainable parameters after folding.
    pub params: usize,
    /// MACs per inference.
    pub macs: usize,
    /// Final test accuracy.
    pub test_acc: f64,
    /// Final validation accuracy (if there is a validation split).
    pub val_acc: Option<f64>,
    /// Epochs trained.
    pub epochs: usize,
    /// Wall time of this process's share of training, seconds.
    pub seconds: f64,
    /// Teachers used, with their test accuracy.
    pub teachers: Vec<(String, f64)>,
    /// Labelled training samples.
    pub labelled: usize,
    /// Unlabelled transfer samples used.
    pub transfer: usize,
    /// Whether the run stopped early because of `halt_after`.
    pub halted: bool,
}

/// Loads and validates a recipe's data (before any output is written).
pub fn load_splits(recipe: &Loaded) -> Result<Splits> {
    data::splits(&recipe.recipe.data, &recipe.base)
}

fn accuracy(net: &mut Net, d: &Dataset) -> Result<f64> {
    if d.is_empty() {
        return Ok(0.0);
    }
    let logits = net.predict(&d.x, 1000)?;
    let pred = Net::argmax(&logits, d.classes);
    Ok(pred.iter().zip(&d.y).filter(|(p, y)| p == y).count() as f64 / d.len() as f64)
}

fn lr_at(spec: &recipe::TrainSpec, step: u64, total: u64) -> f64 {
    match spec.schedule {
        Schedule::Constant => spec.lr,
        Schedule::Cosine => {
            let f = (step as f64 / total.max(1) as f64).min(1.0);
            spec.lr * 0.5 * (1.0 + (std::f64::consts::PI * f).cos())
        }
    }
}

const CHECKPOINT: &str = "checkpoint.safetensors";

/// Prints parameters and MACs per layer.
pub fn print_summary(net: &Net, name: &str) {
    eprintln!(
        "model {name}: input {:?}, {} classes",
        net.input, net.classes
    );
    eprintln!(
        "  {:<3} {:<78} {:>14} {:>8} {:>8}",
        "#", "layer", "output", "params", "MACs"
    );
    let mut tp = 0;
    let mut tm = 0;
    for (i, l) in net.summary().iter().enumerate() {
        let out = match l.out {
            crate::nn::Shape::Spatial(s) => format!("{s:?}"),
            crate::nn::Shape::Flat(f) => format!("[{f}]"),
        };
        let mut what = l.what.clone();
        what.truncate(78);
        eprintln!(
            "  {i:<3} {what:<78} {out:>14} {:>8} {:>8}",
            l.params, l.macs
        );
        tp += l.params;
        tm += l.macs;
    }
    eprintln!("  total: {tp} params (BatchNorm folds away at export), {tm} MACs per inference");
}

/// Trains (and distils, with teachers) one model.
pub fn run(mut cfg: RunConfig<'_>) -> Result<Summary> {
    let start = Instant::now();
    let r = &cfg.recipe.recipe;
    let t = &r.train;
    let s = &cfg.splits;
    let mut net = Net::new(
        &r.model.layers,
        r.data.shape,
        r.data.classes,
        s.norm.clone(),
        cfg.seed,
        DType::F32,
    )
    .with_context(|| format!("model of recipe {}", r.name))?;
    if cfg.progress {
        print_summary(&net, &r.name);
    }
    let distilling = !cfg.teachers.is_empty();
    let kd = &r.distill;
    let use_transfer = distilling && kd.transfer && !s.transfer.is_empty();
    // The pool: labelled samples, then (when distilling with a transfer set) unlabelled ones.
    let mut pool_x = s.train.x.clone();
    let mut labels: Vec<Option<u32>> = s.train.y.iter().map(|&y| Some(y)).collect();
    if use_transfer {
        pool_x.extend_from_slice(&s.transfer.x);
        labels.extend(std::iter::repeat_n(None, s.transfer.len()));
    }
    let n = labels.len();
    let k = r.data.classes;
    let f = net.features();
    let steps_per_epoch = n.div_ceil(t.batch) as u64;
    let total_steps = steps_per_epoch * t.epochs as u64;
    let mut opt = optim::AdamW::new(&net.params, t.weight_decay)?;
    let mut caches: Vec<TeacherCache> = cfg
        .teachers
        .iter()
        .map(|_| TeacherCache::new(cfg.cache_dir.clone()))
        .collect();
    let mut teacher_acc = Vec::new();
    for (tch, cache) in cfg.teachers.iter_mut().zip(&mut caches) {
        let lp = cache.log_probs(tch.as_mut(), &s.test.x, s.test.len())?;
        let acc = crate::teacher::accuracy(&lp, &s.test.y, k);
        if cfg.progress {
            eprintln!(
                "teacher {}: test accuracy {:.2} %",
                tch.describe(),
                100.0 * acc
            );
        }
        teacher_acc.push((tch.describe(), acc));
    }
    std::fs::create_dir_all(&cfg.out)
        .with_context(|| format!("cannot create {}", cfg.out.display()))?;
    let ckpt_path = cfg.out.join(CHECKPOINT);
    let metrics_path = cfg.out.join("metrics.jsonl");
    let mut first_epoch = 0usize;
    if cfg.resume && ckpt_path.exists() {
        first_epoch = load_checkpoint(&ckpt_path, &mut net, &mut opt, cfg.seed)?;
        if cfg.progress {
            eprintln!(
                "resuming from {} after epoch {first_epoch}",
                ckpt_path.display()
            );
        }
    }
    let mut history = if first_epoch > 0 {
        metrics::read(&metrics_path, first_epoch)?
    } else {
        Vec::new()
    };
    let bar = if cfg.progress {
        let b = indicatif::ProgressBar::new(total_steps);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:30} epoch {prefix} {msg} [{elapsed} < {eta}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b.set_position(first_epoch as u64 * steps_per_epoch);
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut halted = false;
    for epoch in first_epoch..t.epochs {
        let view = epoch_view(&pool_x, r.data.shape, &r.augment, cfg.seed, epoch as u64);
        // Targets: one-hot labels, mixed like the inputs; a sample counts for the label loss
        // only when every sample mixed into it is labelled.
        let mut targets = vec![0f32; n * k];
        let mut mask = vec![0f32; n];
        for i in 0..n {
            let mut add = |j: usize, w: f32| -> bool {
                match labels[j] {
                    Some(y) => {
                        targets[i * k + y as usize] += w;
                        true
                    }
                    None => false,
                }
            };
            let labelled = match &view.mix {
                None => add(i, 1.0),
                Some((p, l)) => {
                    let a = add(i, l[i]);
                    let b = add(p[i], 1.0 - l[i]);
                    a && b
                }
            };
            mask[i] = if labelled { 1.0 } else { 0.0 };
        }
        // Teacher distributions on exactly the view the student sees (function matching).
        let (teacher_t, teacher_arg) = if distilling {
            let mut members = Vec::with_capacity(cfg.teachers.len());
            for (tch, cache) in cfg.teachers.iter_mut().zip(&mut caches) {
                members.push(cache.log_probs(tch.as_mut(), &view.x, n)?);
            }
            let pt = loss::ensemble(&members, k, kd.temperature);
            let p1 = loss::ensemble(&members, k, 1.0);
            (pt, Net::argmax(&p1, k))
        } else {
            (Vec::new(), Vec::new())
        };
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut Pcg64::seed_from_u64(derive_seed(
            cfg.seed,
            epoch as u64,
            2,
        )));
        let mut drop_rng = Pcg64::seed_from_u64(derive_seed(cfg.seed, epoch as u64, 3));
        let (mut loss_sum, mut correct, mut counted) = (0.0, 0usize, 0usize);
        let mut lr = t.lr;
        bar.set_prefix(format!("{}/{}", epoch + 1, t.epochs));
        for chunk in order.chunks(t.batch) {
            let b = chunk.len();
            let mut xb = Vec::with_capacity(b * f);
            let mut tb = Vec::with_capacity(b * k);
            let mut mb = Vec::with_capacity(b);
            let mut pb = Vec::with_capacity(b * k);
            let mut ab = Vec::with_capacity(b);
            for &i in chunk {
                xb.extend_from_slice(&view.x[i * f..(i + 1) * f]);
                tb.extend_from_slice(&targets[i * k..(i + 1) * k]);
                mb.push(mask[i]);
                if distilling {
                    pb.extend_from_slice(&teacher_t[i * k..(i + 1) * k]);
                    // DKD's target class: the (dominant) label, or the teacher's argmax.
                    let tgt = if mask[i] > 0.0 {
                        Net::argmax(&targets[i * k..(i + 1) * k], k)[0]
                    } else {
                        teacher_arg[i]
                    };
                    ab.push(tgt);
                }
            }
            let x = net.input_tensor(&xb, b)?;
            let logits = net.forward(&x, Mode::Train(&mut drop_rng))?;
            let targets_t = Tensor::from_vec(tb.clone(), (b, k), x.device())?;
            let mask_t = Tensor::from_vec(mb.clone(), b, x.device())?;
            let ce = loss::soft_cross_entropy(&logits, &targets_t, &mask_t)?;
            let total = if distilling {
                let temp = kd.temperature;
                match kd.loss {
                    KdLoss::Hinton => {
                        let kdl = loss::hinton_kd(&logits, &pb, temp)?;
                        ((kdl * kd.alpha)? + (ce * (1.0 - kd.alpha))?)?
                    }
                    KdLoss::Dkd => {
                        let d = loss::dkd(&logits, &pb, &ab, temp, kd.dkd_alpha, kd.dkd_beta)?;
                        (d + (ce * (1.0 - kd.alpha))?)?
                    }
                }
            } else {
                ce
            };
            let grads = total.backward()?;
            lr = lr_at(t, opt.step, total_steps);
            opt.step(&net.params, &grads, lr)?;
            let lv = f64::from(total.to_scalar::<f32>()?);
            ensure!(
                lv.is_finite(),
                "the loss diverged (NaN/infinity) at epoch {}",
                epoch + 1
            );
            loss_sum += lv * b as f64;
            let pred = Net::argmax(&logits.flatten_all()?.to_vec1::<f32>()?, k);
            for (j, &p) in pred.iter().enumerate() {
                if mb[j] > 0.0 {
                    counted += 1;
                    if tb[j * k + p as usize] >= 0.5 {
                        correct += 1;
                    }
                }
            }
            bar.inc(1);
            bar.set_message(format!(
                "loss {:.4} acc {:.1} %",
                loss_sum / n as f64,
                100.0 * correct as f64 / counted.max(1) as f64
            ));
        }
        let done = epoch + 1;
        let eval = done % t.eval_every == 0 || done == t.epochs;
        let test_acc = if eval {
            Some(accuracy(&mut net, &s.test)?)
        } else {
            None
        };
        let val_acc = if eval && !s.val.is_empty() {
            Some(accuracy(&mut net, &s.val)?)
        } else {
            None
        };
        let m = EpochMetrics {
            epoch: done,
            loss: loss_sum / n as f64,
            train_acc: correct as f64 / counted.max(1) as f64,
            test_acc,
            val_acc,
            lr,
        };
        if let Some(a) = test_acc {
            let line = format!(
                "epoch {done}/{}: loss {:.4}, train {:.2} %, test {:.2} %",
                t.epochs,
                m.loss,
                100.0 * m.train_acc,
                100.0 * a
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
        history.push(m);
        let halt = cfg.halt_after == Some(done) && done < t.epochs;
        if done % t.checkpoint_every == 0 || halt {
            save_checkpoint(&ckpt_path, &net, &opt, done, cfg.seed)?;
            metrics::write(&metrics_path, &history)?;
        }
        if halt {
            halted = true;
            break;
        }
    }
    bar.finish_and_clear();
    metrics::write(&metrics_path, &history)?;
    crate::io::write_atomic(
        &cfg.out.join("curves.svg"),
        metrics::svg(&history, &r.name).as_bytes(),
    )?;
    let test_acc = history.last().and_then(|m| m.test_acc).unwrap_or(0.0);
    let val_acc = history.last().and_then(|m| m.val_acc);
    let folded = net.folded()?;
    let summary = Summary {
        name: r.name.clone(),
        seed: cfg.seed,
        params: folded.param_count(),
        macs: net.summary().iter().map(|l| l.macs).sum(),
        test_acc,
        val_acc,
        epochs: history.len(),
        seconds: start.elapsed().as_secs_f64(),
        teachers: teacher_acc,
        labelled: s.train.len(),
        transfer: if use_transfer { s.transfer.len() } else { 0 },
        halted,
    };
    if !halted {
        store::save(
            &net,
            &r.name,
            &cfg.recipe.text,
            &cfg.out.join("model.safetensors"),
        )?;
        if cfg.export_onnx {
            crate::io::write_atomic(
                &cfg.out.join("model.onnx"),
                &crate::nn::onnx::to_bytes(&net)?,
            )?;
        }
        crate::io::write_atomic(
            &cfg.out.join("summary.json"),
            serde_json::to_string_pretty(&summary)?.as_bytes(),
        )?;
    }
    Ok(summary)
}

fn save_checkpoint(
    path: &Path,
    net: &Net,
    opt: &optim::AdamW,
    epoch: usize,
    seed: u64,
) -> Result<()> {
    let mut tensors = net.named_tensors();
    tensors.extend(opt.named_tensors(&net.params));
    let mut meta = HashMap::new();
    meta.insert("epoch".to_string(), epoch.to_string());
    meta.insert("step".to_string(), opt.step.to_string());
    meta.insert("seed".to_string(), seed.to_string());
    let bytes = store::tensors_to_bytes(&tensors, meta)?;
    crate::io::write_atomic(path, &bytes)
}

fn load_checkpoint(path: &Path, net: &mut Net, opt: &mut optim::AdamW, seed: u64) -> Result<usize> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let (tensors, meta) = store::tensors_from_bytes(&bytes, path)?;
    let num = |k: &str| -> Result<u64> {
        meta.get(k)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{}: checkpoint lacks `{k}`", path.display()))
    };
    ensure!(
        num("seed")? == seed,
        "{} was written with seed {}, this run uses seed {seed}",
        path.display(),
        num("seed")?
    );
    let get = |n: &str| tensors.get(n).cloned();
    net.load_named(&get)
        .with_context(|| format!("{} does not match the recipe's model", path.display()))?;
    opt.load(&net.params, &get, num("step")?)?;
    Ok(num("epoch")? as usize)
}
