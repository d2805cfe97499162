//! Teachers: a float model trained here (`model.safetensors`), any ONNX classifier run with
//! tract-onnx, or several of them at once (an ensemble averages their probabilities).
//!
//! Every teacher answers with log-probabilities over the student's classes for raw
//! (unnormalized) inputs; temperature and ensembling are applied by the distillation loss
//! (`train::loss::ensemble`). Outputs are cached by content (see [`cache`]).

pub mod cache;
pub mod onnx;

use crate::nn::{store, Net};
use anyhow::{ensure, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// A classifier that labels inputs for a student.
pub trait Teacher {
    /// Number of classes it predicts.
    fn classes(&self) -> usize;
    /// Log-probabilities `[n, classes]` for `n` raw input rows.
    fn log_probs(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>>;
    /// Identifies the teacher file and its settings (cache key); changes when the file does.
    fn fingerprint(&self) -> &str;
    /// Human-readable description.
    fn describe(&self) -> String;
}

/// A float model trained by `edgekd train` or `edgekd distill`.
pub struct NativeTeacher {
    net: Net,
    fingerprint: String,
    path: PathBuf,
}

impl NativeTeacher {
    /// Loads `model.safetensors`.
    pub fn load(path: &Path) -> Result<NativeTeacher> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read teacher {}", path.display()))?;
        let (net, _) = store::load(path)?;
        Ok(NativeTeacher {
            net,
            fingerprint: format!("native:{:x}", Sha256::digest(&bytes)),
            path: path.to_path_buf(),
        })
    }
}

impl Teacher for NativeTeacher {
    fn classes(&self) -> usize {
        self.net.classes
    }
    fn log_probs(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        ensure!(
            x.len() == n * self.net.features(),
            "teacher {} takes {} features per sample, the data has {}",
            self.path.display(),
            self.net.features(),
            x.len() / n.max(1)
        );
        let logits = self.net.predict(x, 1000)?;
        Ok(log_softmax_rows(&logits, self.net.classes))
    }
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    fn describe(&self) -> String {
        format!(
            "{} (edgekd float model, {} params)",
            self.path.display(),
            self.net.param_count()
        )
    }
}

/// Row-wise log-softmax of logits.
pub fn log_softmax_rows(logits: &[f32], k: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(k) {
        let m = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        let lse = m + row.iter().map(|&v| (v - m).exp()).sum::<f32>().ln();
        out.extend(row.iter().map(|&v| v - lse));
    }
    out
}

/// How to read an ONNX teacher's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputKind {
    /// Decide from the outputs: rows of non-negative values summing to 1 are probabilities.
    Auto,
    /// Logits (log-softmax is applied).
    Logits,
    /// Probabilities (their logarithm is taken).
    Probs,
}

/// Options for loading teachers.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Input shape of one sample for ONNX teachers whose file leaves it open (without batch).
    pub input_shape: Option<Vec<usize>>,
    /// ONNX output interpretation.
    pub output: OutputKind,
    /// Features per sample of the data.
    pub features: usize,
    /// Classes of the student.
    pub classes: usize,
}

/// Loads one teacher by file extension (`.onnx` or an edgekd float model) and checks it
/// against the student's data.
pub fn load(path: &Path, opts: &LoadOptions) -> Result<Box<dyn Teacher>> {
    let t: Box<dyn Teacher> = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        Box::new(onnx::OnnxTeacher::load(path, opts)?)
    } else {
        let t = NativeTeacher::load(path)?;
        ensure!(
            t.net.features() == opts.features,
            "teacher {} takes {} features per sample, the data has {}",
            path.display(),
            t.net.features(),
            opts.features
        );
        Box::new(t)
    };
    ensure!(
        t.classes() == opts.classes,
        "teacher {} predicts {} classes but the student has {}",
        path.display(),
        t.classes(),
        opts.classes
    );
    Ok(t)
}

/// Accuracy of teacher log-probabilities against labels.
pub fn accuracy(logp: &[f32], labels: &[u32], k: usize) -> f64 {
    let pred = Net::argmax(logp, k);
    let ok = pred.iter().zip(labels).filter(|(p, y)| p == y).count();
    ok as f64 / labels.len().max(1) as f64
}
