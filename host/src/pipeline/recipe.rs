//! The pipeline recipe: one TOML file for the whole chain, teacher to measured int8 model.
//!
//! It reuses the training recipe's sections (`[data]`, `[augment]`, `[distill]`, layer
//! lists, `[train]`) so a model described for `edgekd train` is described the same way
//! here, and adds `[teacher]`, `[student]`, `[quantize]`, `[export]`, `[measure]` and the
//! list of `targets`. Unknown keys and wrong types are refused by serde with the key's
//! name and line; everything else is checked by [`load`] before any work starts.

use super::targets::TargetSpec;
use crate::cmd::bench::{Build, Kernels, OPT_LEVELS};
use crate::data::augment::AugmentSpec;
use crate::data::DataSpec;
use crate::quant::ptq::BiasCorrection;
use crate::teacher::OutputKind;
use crate::train::recipe::{DistillSpec, Loaded, ModelSpec, Recipe, TrainSpec};
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole pipeline recipe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineRecipe {
    /// Name of the run (file metadata, reports).
    pub name: String,
    /// Default output folder, relative to the recipe (overridden by `--out`).
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// Where the int8 student is measured: `host`, `qemu-m4`, `qemu-m7`, `qemu-m33`,
    /// `qemu-m0`, `aarch64`, `android`, or `probe-rs:<chip>`.
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// Data shared by teacher and student.
    pub data: DataSpec,
    /// Augmentation shared by teacher training and distillation.
    #[serde(default)]
    pub augment: AugmentSpec,
    /// The teacher.
    pub teacher: TeacherSpec,
    /// The student.
    pub student: StudentSpec,
    /// Distillation settings.
    #[serde(default)]
    pub distill: DistillSpec,
    /// Quantization settings.
    #[serde(default)]
    pub quantize: QuantizeSpec,
    /// Export formats.
    #[serde(default)]
    pub export: ExportSpec,
    /// Measurement settings.
    #[serde(default)]
    pub measure: MeasureSpec,
}

fn default_targets() -> Vec<String> {
    vec!["host".into()]
}

/// `[teacher]`: exactly one of `onnx`, `file` or `model` (trained here).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSpec {
    /// An ONNX classifier from any framework.
    #[serde(default)]
    pub onnx: Option<PathBuf>,
    /// A float model written by `edgekd train` (`model.safetensors`).
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// ONNX only: shape of one input sample without the batch, when the file leaves it open.
    #[serde(default)]
    pub input_shape: Option<Vec<usize>>,
    /// ONNX only: `auto`, `logits` or `probs`.
    #[serde(default = "default_output")]
    pub output: String,
    /// Train the teacher here with this architecture.
    #[serde(default)]
    pub model: Option<ModelSpec>,
    /// Schedule of a teacher trained here.
    #[serde(default)]
    pub train: Option<TrainSpec>,
}

fn default_output() -> String {
    "auto".into()
}

/// `[student]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentSpec {
    /// Architecture.
    pub model: ModelSpec,
    /// Schedule.
    #[serde(default)]
    pub train: TrainSpec,
}

/// Activation calibration, as in `edgekd quantize --calibration`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CalibrationName {
    /// Observed min/max.
    Minmax,
    /// A percentile of the observed distribution.
    Percentile,
    /// Least expected squared error.
    Mse,
    /// Per tensor, the best of the three by output SQNR.
    #[default]
    Auto,
}

/// `[quantize]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuantizeSpec {
    /// Activation range selection.
    pub calibration: CalibrationName,
    /// Percentile for `percentile` and the `auto` candidate.
    pub percentile: f64,
    /// Calibration samples taken from the training split.
    pub calib_size: usize,
    /// Accuracy-drop budget (points) that triggers recovery.
    pub max_drop: f64,
    /// Empirical bias correction: `auto`, `on` or `off`.
    pub bias_correction: BiasCorrection,
    /// Samples used to score `auto` candidates and measure bias errors.
    pub search_samples: usize,
    /// Append a softmax (output quantization 1/256, -128).
    pub softmax: bool,
    /// One weight scale per tensor instead of per channel.
    pub per_tensor_weights: bool,
    /// Cross-layer equalization before calibration.
    pub equalize: bool,
}

impl Default for QuantizeSpec {
    fn default() -> Self {
        QuantizeSpec {
            calibration: CalibrationName::Auto,
            percentile: 99.99,
            calib_size: 1000,
            max_drop: 0.5,
            bias_correction: BiasCorrection::Auto,
            search_samples: 500,
            softmax: false,
            per_tensor_weights: false,
            equalize: false,
        }
    }
}

/// `[export]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSpec {
    /// Any of `onnx`, `c`, `rust`, `rust-program` (the `.ekd` is always written).
    pub formats: Vec<String>,
}

impl Default for ExportSpec {
    fn default() -> Self {
        ExportSpec {
            formats: vec![
                "onnx".into(),
                "c".into(),
                "rust".into(),
                "rust-program".into(),
            ],
        }
    }
}

/// `[measure]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MeasureSpec {
    /// Test samples run on every emulated or remote target (checked bit for bit).
    pub samples: usize,
    /// Timed host runs per runtime.
    pub runs: usize,
    /// Warm-up runs before timing.
    pub warmup: usize,
    /// cargo `opt-level` of the firmware the qemu-* and probe-rs targets build: "0"-"3",
    /// "s", "z".
    pub firmware_opt_level: String,
    /// Kernels of that firmware: "fast" or "small" (default: fast at opt-level 0-3,
    /// small at s/z; see `edgekd bench --kernels`).
    pub firmware_kernels: Option<String>,
}

impl MeasureSpec {
    /// The firmware build the qemu-* and probe-rs targets run; `firmware_kernels` must
    /// be valid (`load` checks).
    pub fn firmware_build(&self) -> Result<Build<'_>> {
        let kernels = match &self.firmware_kernels {
            Some(k) => Some(
                <Kernels as clap::ValueEnum>::from_str(k, false).map_err(|_| {
                    anyhow::anyhow!(
                        "measure.firmware_kernels must be \"fast\" or \"small\", not {k:?}"
                    )
                })?,
            ),
            None => None,
        };
        Ok(Build::new(&self.firmware_opt_level, kernels))
    }
}

impl Default for MeasureSpec {
    fn default() -> Self {
        MeasureSpec {
            samples: 32,
            runs: 200,
            warmup: 20,
            firmware_opt_level: "3".into(),
            firmware_kernels: None,
        }
    }
}

/// A loaded, checked recipe.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The recipe.
    pub recipe: PipelineRecipe,
    /// The recipe file's text (stored in the report).
    pub text: String,
    /// Directory of the recipe file (relative paths start here).
    pub base: PathBuf,
    /// Parsed targets, in recipe order.
    pub targets: Vec<TargetSpec>,
}

/// Reads and checks a pipeline recipe: syntax, keys, types, ranges, targets and files.
pub fn load(path: &Path) -> Result<Pipeline> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read recipe {}", path.display()))?;
    let recipe: PipelineRecipe =
        toml::from_str(&text).with_context(|| format!("invalid recipe {}", path.display()))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let targets = check(&recipe, &base).with_context(|| format!("recipe {}", path.display()))?;
    Ok(Pipeline {
        recipe,
        text,
        base,
        targets,
    })
}

fn check(r: &PipelineRecipe, base: &Path) -> Result<Vec<TargetSpec>> {
    ensure!(!r.name.trim().is_empty(), "`name` must not be empty");
    let t = &r.teacher;
    let sources = [t.onnx.is_some(), t.file.is_some(), t.model.is_some()]
        .iter()
        .filter(|&&s| s)
        .count();
    ensure!(
        sources == 1,
        "[teacher] needs exactly one of `onnx` (a file), `file` (an edgekd model.safetensors) \
         or `model` (layers to train here); found {sources}"
    );
    if t.model.is_none() {
        ensure!(
            t.train.is_none(),
            "teacher.train applies only to a teacher trained here (teacher.model)"
        );
    }
    if t.onnx.is_none() {
        ensure!(
            t.input_shape.is_none() && t.output == "auto",
            "teacher.input_shape and teacher.output apply only to an ONNX teacher"
        );
    }
    output_kind(&t.output)?;
    for (key, p) in [("teacher.onnx", &t.onnx), ("teacher.file", &t.file)] {
        if let Some(p) = p {
            let full = crate::io::join_clean(base, p);
            ensure!(full.is_file(), "{key}: {} does not exist", full.display());
        }
    }
    for (key, p) in [
        ("data.train", Some(&r.data.train)),
        ("data.train_labels", r.data.train_labels.as_ref()),
        ("data.test", r.data.test.as_ref()),
        ("data.test_labels", r.data.test_labels.as_ref()),
    ] {
        if let Some(p) = p {
            let full = crate::io::join_clean(base, p);
            ensure!(full.is_file(), "{key}: {} does not exist", full.display());
        }
    }
    for (what, spec) in [
        ("teacher.train", t.train.as_ref()),
        ("student.train", Some(&r.student.train)),
    ] {
        if let Some(s) = spec {
            ensure!(s.epochs > 0, "{what}.epochs must be positive");
            ensure!(s.batch > 0, "{what}.batch must be positive");
            ensure!(s.lr > 0.0 && s.lr.is_finite(), "{what}.lr must be positive");
            ensure!(
                s.checkpoint_every > 0 && s.eval_every > 0,
                "{what}.checkpoint_every and eval_every must be positive"
            );
        }
    }
    ensure!(
        r.augment.noise >= 0.0 && r.augment.mixup >= 0.0,
        "augment.noise and augment.mixup must be non-negative"
    );
    r.distill.validate()?;
    let q = &r.quantize;
    ensure!(
        q.max_drop.is_finite() && q.max_drop >= 0.0,
        "quantize.max_drop must be a non-negative number"
    );
    ensure!(
        q.percentile > 50.0 && q.percentile <= 100.0,
        "quantize.percentile must lie in (50, 100]"
    );
    ensure!(q.calib_size > 0, "quantize.calib_size must be positive");
    for f in &r.export.formats {
        ensure!(
            matches!(f.as_str(), "onnx" | "c" | "rust" | "rust-program" | "ekd"),
            "export.formats: unknown format `{f}` (onnx, c, rust, rust-program; the .ekd is \
             always written)"
        );
    }
    ensure!(
        r.measure.samples > 0 && r.measure.runs > 0,
        "measure.samples and measure.runs must be positive"
    );
    ensure!(
        OPT_LEVELS.contains(&r.measure.firmware_opt_level.as_str()),
        "measure.firmware_opt_level must be one of \"0\"-\"3\", \"s\", \"z\", not {:?}",
        r.measure.firmware_opt_level
    );
    r.measure.firmware_build()?;
    ensure!(
        !r.targets.is_empty(),
        "`targets` is empty: list at least `host`"
    );
    let mut targets = Vec::new();
    for name in &r.targets {
        let t = TargetSpec::parse(name).with_context(|| format!("targets: `{name}`"))?;
        if targets.contains(&t) {
            bail!("targets: `{name}` is listed twice");
        }
        targets.push(t);
    }
    Ok(targets)
}

/// The teacher's ONNX output interpretation.
pub fn output_kind(s: &str) -> Result<OutputKind> {
    Ok(match s {
        "auto" => OutputKind::Auto,
        "logits" => OutputKind::Logits,
        "probs" => OutputKind::Probs,
        other => bail!("teacher.output must be auto, logits or probs, not `{other}`"),
    })
}

impl Pipeline {
    /// The training recipe of the student (its data paths resolve against the same base).
    pub fn student_recipe(&self) -> Result<Loaded> {
        let r = &self.recipe;
        self.loaded(Recipe {
            name: r.name.clone(),
            data: r.data.clone(),
            augment: r.augment.clone(),
            model: r.student.model.clone(),
            train: r.student.train.clone(),
            distill: r.distill.clone(),
        })
    }

    /// The training recipe of a teacher trained here, if the recipe trains one.
    pub fn teacher_recipe(&self) -> Result<Option<Loaded>> {
        let r = &self.recipe;
        let Some(model) = &r.teacher.model else {
            return Ok(None);
        };
        self.loaded(Recipe {
            name: format!("{}_teacher", r.name),
            data: r.data.clone(),
            augment: r.augment.clone(),
            model: model.clone(),
            train: r.teacher.train.clone().unwrap_or_default(),
            distill: DistillSpec::default(),
        })
        .map(Some)
    }

    fn loaded(&self, recipe: Recipe) -> Result<Loaded> {
        let text = toml::to_string(&recipe).context("cannot serialize the stage recipe")?;
        Ok(Loaded {
            recipe,
            text,
            base: self.base.clone(),
        })
    }

    /// A teacher file given by the recipe (ONNX or edgekd), resolved against the base.
    pub fn teacher_file(&self) -> Option<PathBuf> {
        let t = &self.recipe.teacher;
        t.onnx
            .as_ref()
            .or(t.file.as_ref())
            .map(|p| crate::io::join_clean(&self.base, p))
    }
}
