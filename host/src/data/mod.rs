//! Datasets: `.npy` and CSV(.gz) loading, seeded train/validation/test splits, a labelled
//! subset plus an unlabelled transfer set, and normalization statistics computed on the
//! training split only (they travel with the trained model so the quantizer and devices
//! preprocess exactly as training did).

pub mod augment;

use crate::io;
use anyhow::{bail, ensure, Context, Result};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// The `[data]` section of a recipe. Paths are relative to the recipe file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    /// Training features (`.npy`, float) — or a CSV(.gz) with the label in the last column.
    pub train: PathBuf,
    /// Training labels (`.npy`, integers); absent for CSV input.
    #[serde(default)]
    pub train_labels: Option<PathBuf>,
    /// Test features; when absent the test set is carved from `train` (`test_fraction`).
    #[serde(default)]
    pub test: Option<PathBuf>,
    /// Test labels (`.npy`).
    #[serde(default)]
    pub test_labels: Option<PathBuf>,
    /// Shape of one sample as `[H, W, C]` (NHWC without the batch); 1-D signals use H = 1.
    pub shape: [usize; 3],
    /// Number of classes; labels must lie in `0..classes`.
    pub classes: usize,
    /// Fraction of the training file held out for validation.
    #[serde(default)]
    pub val_fraction: f64,
    /// Fraction held out for test when there is no test file.
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Keep only this many labelled training samples; the rest form the unlabelled transfer set.
    #[serde(default)]
    pub labelled: Option<usize>,
    /// Seed of the splits (independent of the training seed, so every run sees the same split).
    #[serde(default)]
    pub split_seed: u64,
}

fn default_test_fraction() -> f64 {
    0.25
}

/// Samples with their labels, each sample `shape` = `[H, W, C]` floats (NHWC).
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// `n * features` values, row-major.
    pub x: Vec<f32>,
    /// `n` labels in `0..classes`.
    pub y: Vec<u32>,
    /// `[H, W, C]` of one sample.
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
}

impl Dataset {
    /// Values per sample.
    pub fn features(&self) -> usize {
        self.shape.iter().product()
    }
    /// Number of samples.
    pub fn len(&self) -> usize {
        self.y.len()
    }
    /// True when there are no samples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }
    /// Sample `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        let f = self.features();
        &self.x[i * f..(i + 1) * f]
    }
    /// The samples at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        let mut x = Vec::with_capacity(idx.len() * self.features());
        for &i in idx {
            x.extend_from_slice(self.row(i));
        }
        Dataset {
            x,
            y: idx.iter().map(|&i| self.y[i]).collect(),
            shape: self.shape,
            classes: self.classes,
        }
    }
}

/// Per-channel affine normalization `(x - mean[c]) / std[c]`, from the training split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: Vec<f32>,
    /// Standard deviation per channel (never zero).
    pub std: Vec<f32>,
}

impl Normalization {
    /// Statistics of `x` (samples of `shape`) per channel.
    pub fn fit(x: &[f32], shape: [usize; 3]) -> Normalization {
        let c = shape[2];
        let mut sum = vec![0f64; c];
        let mut sq = vec![0f64; c];
        for (i, &v) in x.iter().enumerate() {
            sum[i % c] += f64::from(v);
            sq[i % c] += f64::from(v) * f64::from(v);
        }
        let count = (x.len() / c).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                let sd = (s / count - m * m).max(0.0).sqrt() as f32;
                // A constant channel would divide by zero: leave it unscaled.
                if sd > 1e-6 {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Normalization {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }
    /// Identity normalization for `c` channels.
    pub fn identity(c: usize) -> Normalization {
        Normalization {
            mean: vec![0.0; c],
            std: vec![1.0; c],
        }
    }
}

/// The splits a run trains and evaluates on.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Labelled training samples.
    pub train: Dataset,
    /// Unlabelled transfer samples (their labels are kept only for diagnostics, never trained on).
    pub transfer: Dataset,
    /// Validation samples (may be empty).
    pub val: Dataset,
    /// Test samples.
    pub test: Dataset,
    /// Normalization statistics of the training inputs (labelled + transfer).
    pub norm: Normalization,
}

/// Loads features and labels from a `.npy` pair or a CSV(.gz) file with the label last.
pub fn load(features: &Path, labels: Option<&Path>, spec: &DataSpec) -> Result<Dataset> {
    let name = features.display().to_string();
    let (x, y, cols) = if is_csv(features) {
        ensure!(
            labels.is_none(),
            "{name}: CSV data carries its label in the last column; remove the labels file"
        );
        load_csv(features)?
    } else {
        let labels = labels.with_context(|| format!("{name}: a labels .npy file is required"))?;
        let m = io::read_f32_matrix(features)?;
        let y = io::read_labels(labels)?;
        ensure!(
            y.len() == m.rows,
            "{}: {} labels for {} samples in {name}",
            labels.display(),
            y.len(),
            m.rows
        );
        (m.data, y, m.cols)
    };
    let features_expected: usize = spec.shape.iter().product();
    ensure!(
        cols == features_expected,
        "{name}: samples have {cols} features but the recipe's shape {:?} needs {features_expected}",
        spec.shape
    );
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        bail!(
            "{name}: value at sample {}, feature {} is not finite (NaN or infinity)",
            i / cols,
            i % cols
        );
    }
    let mut labels_u32 = Vec::with_capacity(y.len());
    for (i, &l) in y.iter().enumerate() {
        if l < 0 || l as usize >= spec.classes {
            bail!(
                "{name}: label {l} of sample {i} is outside 0..{} (the recipe's class count)",
                spec.classes
            );
        }
        labels_u32.push(l as u32);
    }
    ensure!(!labels_u32.is_empty(), "{name}: no samples");
    Ok(Dataset {
        x,
        y: labels_u32,
        shape: spec.shape,
        classes: spec.classes,
    })
}

fn is_csv(p: &Path) -> bool {
    let s = p.to_string_lossy();
    s.ends_with(".csv") || s.ends_with(".csv.gz")
}

fn load_csv(path: &Path) -> Result<(Vec<f32>, Vec<i64>, usize)> {
    let name = path.display();
    let raw = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
    let mut text = String::new();
    if path.to_string_lossy().ends_with(".gz") {
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .with_context(|| format!("{name} is not a valid gzip-compressed CSV file"))?;
    } else {
        text = String::from_utf8(raw).with_context(|| format!("{name} is not UTF-8 text"))?;
    }
    let mut x = Vec::new();
    let mut y = Vec::new();
    let mut cols = None;
    for (line_no, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        ensure!(
            fields.len() >= 2,
            "{name}:{}: expected features then a label",
            line_no + 1
        );
        match cols {
            None => cols = Some(fields.len() - 1),
            Some(c) => ensure!(
                c == fields.len() - 1,
                "{name}:{}: {} columns, earlier rows have {}",
                line_no + 1,
                fields.len(),
                c + 1
            ),
        }
        for f in &fields[..fields.len() - 1] {
            x.push(
                f.parse::<f32>()
                    .with_context(|| format!("{name}:{}: `{f}` is not a number", line_no + 1))?,
            );
        }
        let label = fields[fields.len() - 1];
        let l: f64 = label
            .parse()
            .with_context(|| format!("{name}:{}: label `{label}` is not a number", line_no + 1))?;
        ensure!(
            l.fract() == 0.0,
            "{name}:{}: label `{label}` is not an integer",
            line_no + 1
        );
        y.push(l as i64);
    }
    let cols = cols.with_context(|| format!("{name}: no rows"))?;
    Ok((x, y, cols))
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Loads and splits the data a recipe names; `base` is the recipe's directory.
pub fn splits(spec: &DataSpec, base: &Path) -> Result<Splits> {
    ensure!(spec.classes >= 2, "data.classes must be at least 2");
    ensure!(
        spec.shape.iter().all(|&d| d > 0),
        "data.shape {:?} has a zero dimension",
        spec.shape
    );
    ensure!(
        (0.0..0.9).contains(&spec.val_fraction) && (0.0..0.9).contains(&spec.test_fraction),
        "data.val_fraction and data.test_fraction must lie in [0, 0.9)"
    );
    let train_path = resolve(base, &spec.train);
    let train_labels = spec.train_labels.as_ref().map(|p| resolve(base, p));
    let all = load(&train_path, train_labels.as_deref(), spec)?;
    let mut rng = Pcg64::seed_from_u64(spec.split_seed ^ 0x5eed_5eed);
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.shuffle(&mut rng);
    let (test, rest) = match &spec.test {
        Some(t) => {
            let labels = spec.test_labels.as_ref().map(|p| resolve(base, p));
            (load(&resolve(base, t), labels.as_deref(), spec)?, order)
        }
        None => {
            let n_test = ((all.len() as f64) * spec.test_fraction).round() as usize;
            ensure!(
                n_test > 0,
                "no test file and test_fraction leaves no test samples"
            );
            let (t, r) = order.split_at(n_test);
            let mut t = t.to_vec();
            t.sort_unstable();
            (all.subset(&t), r.to_vec())
        }
    };
    let n_val = ((all.len() as f64) * spec.val_fraction).round() as usize;
    ensure!(
        n_val < rest.len(),
        "validation split leaves no training samples"
    );
    let (val_idx, train_idx) = rest.split_at(n_val);
    let n_lab = spec.labelled.unwrap_or(train_idx.len());
    ensure!(
        n_lab > 0 && n_lab <= train_idx.len(),
        "data.labelled = {n_lab}, but the training split has {} samples",
        train_idx.len()
    );
    let (lab_idx, unl_idx) = train_idx.split_at(n_lab);
    let sorted = |v: &[usize]| {
        let mut v = v.to_vec();
        v.sort_unstable();
        v
    };
    let train = all.subset(&sorted(lab_idx));
    let transfer = all.subset(&sorted(unl_idx));
    let mut fit_x = train.x.clone();
    fit_x.extend_from_slice(&transfer.x);
    let norm = Normalization::fit(&fit_x, spec.shape);
    Ok(Splits {
        train,
        transfer,
        val: all.subset(&sorted(val_idx)),
        test,
        norm,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalization_per_channel() {
        // Two channels: (1, 10), (3, 30).
        let n = Normalization::fit(&[1.0, 10.0, 3.0, 30.0], [1, 2, 2]);
        assert_eq!(n.mean, vec![2.0, 20.0]);
        assert_eq!(n.std, vec![1.0, 10.0]);
        let c = Normalization::fit(&[5.0, 5.0], [1, 2, 1]);
        assert_eq!(c.std, vec![1.0]);
    }
}
