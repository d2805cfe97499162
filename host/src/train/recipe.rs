//! Recipes: one TOML file declares the data, augmentation, model, training schedule and
//! distillation settings of a run.

use crate::data::augment::AugmentSpec;
use crate::data::DataSpec;
use crate::nn::LayerSpec;
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Model name (used in file metadata and reports).
    pub name: String,
    /// Data.
    pub data: DataSpec,
    /// Augmentation (both labels-only training and distillation use it).
    #[serde(default)]
    pub augment: AugmentSpec,
    /// Model.
    pub model: ModelSpec,
    /// Optimisation.
    #[serde(default)]
    pub train: TrainSpec,
    /// Distillation (used by `edgekd distill`).
    #[serde(default)]
    pub distill: DistillSpec,
}

/// The `[model]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Layers, input to logits.
    pub layers: Vec<LayerSpec>,
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Cosine decay to zero over the run.
    #[default]
    Cosine,
    /// Constant.
    Constant,
}

/// The `[train]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSpec {
    /// Passes over the training pool.
    pub epochs: usize,
    /// Samples per step.
    pub batch: usize,
    /// Peak AdamW learning rate.
    pub lr: f64,
    /// Decoupled weight decay (weights only).
    pub weight_decay: f64,
    /// Schedule.
    pub schedule: Schedule,
    /// Seed (overridden by `--seed`).
    pub seed: u64,
    /// Write a checkpoint every this many epochs.
    pub checkpoint_every: usize,
    /// Evaluate on the test set every this many epochs (and always at the end).
    pub eval_every: usize,
}

impl Default for TrainSpec {
    fn default() -> Self {
        TrainSpec {
            epochs: 100,
            batch: 100,
            lr: 3e-3,
            weight_decay: 0.01,
            schedule: Schedule::Cosine,
            seed: 0,
            checkpoint_every: 10,
            eval_every: 5,
        }
    }
}

/// Distillation loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KdLoss {
    /// Hinton: alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE.
    #[default]
    Hinton,
    /// Decoupled KD (Zhao et al. 2022): (1 - alpha) * CE + T^2 * (dkd_alpha * TCKD + dkd_beta * NCKD).
    Dkd,
}

/// The `[distill]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistillSpec {
    /// Loss.
    pub loss: KdLoss,
    /// Temperature T > 0.
    pub temperature: f64,
    /// Weight of the distillation term, in [0, 1]; 1 - alpha weighs the label loss.
    pub alpha: f64,
    /// DKD: weight of the target-class term.
    pub dkd_alpha: f64,
    /// DKD: weight of the non-target term.
    pub dkd_beta: f64,
    /// Also distil on the unlabelled transfer set (samples beyond `data.labelled`).
    pub transfer: bool,
}

impl Default for DistillSpec {
    fn default() -> Self {
        DistillSpec {
            loss: KdLoss::Hinton,
            temperature: 4.0,
            alpha: 0.5,
            dkd_alpha: 1.0,
            dkd_beta: 8.0,
            transfer: true,
        }
    }
}

impl DistillSpec {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.temperature.is_finite() && self.temperature > 0.0,
            "distill.temperature must be positive, got {}",
            self.temperature
        );
        ensure!(
            (0.0..=1.0).contains(&self.alpha),
            "distill.alpha must lie in [0, 1], got {}",
            self.alpha
        );
        ensure!(
            self.dkd_alpha >= 0.0 && self.dkd_beta >= 0.0,
            "distill.dkd_alpha and dkd_beta must be non-negative"
        );
        Ok(())
    }
}

/// A parsed recipe with its text and directory (data paths are relative to it).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// Parsed recipe.
    pub recipe: Recipe,
    /// Source text, stored with the trained model.
    pub text: String,
    /// Directory of the recipe file.
    pub base: PathBuf,
}

/// Reads and validates a recipe file.
pub fn load(path: &Path) -> Result<Loaded> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read recipe {}", path.display()))?;
    let recipe: Recipe =
        toml::from_str(&text).with_context(|| format!("invalid recipe {}", path.display()))?;
    let t = &recipe.train;
    ensure!(t.epochs > 0, "train.epochs must be positive");
    ensure!(t.batch > 0, "train.batch must be positive");
    ensure!(t.lr > 0.0 && t.lr.is_finite(), "train.lr must be positive");
    ensure!(
        t.checkpoint_every > 0 && t.eval_every > 0,
        "train.checkpoint_every and eval_every must be positive"
    );
    ensure!(
        recipe.augment.noise >= 0.0 && recipe.augment.mixup >= 0.0,
        "augment.noise and augment.mixup must be non-negative"
    );
    recipe.distill.validate()?;
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    Ok(Loaded { recipe, text, base })
}
