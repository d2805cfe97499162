//! Evaluation of a deployed int8 model against its float student and teacher on a test set.
//!
//! The int8 figures come from `edgekd-runtime`'s interpreter itself — the code the firmware
//! runs — so the host accuracy is the device accuracy.

pub mod plot;

use crate::cmd::inspect::summarize;
use crate::quant::build::{build, groups, BuildOptions};
use crate::quant::float::FloatModel;
use crate::quant::int8::{accuracy, agreement, float_predictions, Int8Model};
use crate::quant::report::{measure, LayerReport};
use anyhow::{bail, ensure, Result};
use edgekd_runtime::OpCode;
use serde::Serialize;
use std::fmt::Write as _;

/// A labelled test set of raw samples.
#[derive(Debug, Clone)]
pub struct TestSet {
    /// `n * features` values.
    pub x: Vec<f32>,
    /// Labels.
    pub y: Vec<u32>,
}

/// Sizes of the deployed model.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Parameters (weights and biases).
    pub params: usize,
    /// Bytes of the `.ekd` file (flash).
    pub flash_bytes: usize,
    /// Weight and bias bytes in it.
    pub payload_bytes: usize,
    /// Arena bytes (RAM for activations).
    pub arena_bytes: usize,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Bytes of the float weights (4 per parameter), when the float model is known.
    pub float_weight_bytes: Option<usize>,
}

/// The evaluation report.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// Model name.
    pub model: String,
    /// Test samples.
    pub samples: usize,
    /// Classes.
    pub classes: usize,
    /// Teacher accuracy (f32), %.
    pub teacher_f32: Option<f64>,
    /// Student accuracy (f32), %.
    pub student_f32: Option<f64>,
    /// Student accuracy (int8, edgekd-runtime), %.
    pub student_int8: f64,
    /// int8 minus f32 student accuracy, points.
    pub int8_drop: Option<f64>,
    /// Agreement of int8 and f32 student predictions, %.
    pub agreement_int8_f32: Option<f64>,
    /// Agreement of the f32 student with the teacher, %.
    pub agreement_f32_teacher: Option<f64>,
    /// Agreement of the int8 student with the teacher, %.
    pub agreement_int8_teacher: Option<f64>,
    /// Confusion matrix of the int8 student (rows: true class, columns: predicted).
    pub confusion: Vec<Vec<u64>>,
    /// Class labels stored in the model.
    pub labels: Vec<String>,
    /// Sizes.
    pub sizes: Sizes,
    /// Per-layer float vs int8 report (needs the float student).
    pub per_layer: Option<LayerReport>,
}

fn pct(v: f64) -> f64 {
    (v * 10000.0).round() / 100.0
}

/// Evaluates `int8` (and the optional float student and teacher) on `test`.
pub fn evaluate(
    int8: &Int8Model,
    student: Option<&FloatModel>,
    teacher: Option<&FloatModel>,
    test: &TestSet,
) -> Result<EvalReport> {
    let model = int8.model();
    let summary = summarize(&model)?;
    let in_len = model.input(0)?.elements();
    let classes = model.output(0)?.elements();
    ensure!(!test.y.is_empty(), "the test set is empty");
    ensure!(
        test.x.len() == test.y.len() * in_len,
        "the test set has {} values for {} samples, the model takes {in_len} per sample",
        test.x.len(),
        test.y.len()
    );
    if let Some(bad) = test.y.iter().find(|&&y| y as usize >= classes) {
        bail!("test label {bad} is not below the model's {classes} outputs");
    }
    for (what, m) in [("student", student), ("teacher", teacher)] {
        if let Some(m) = m {
            ensure!(
                m.classes() == classes,
                "the {what} float model has {} classes, the int8 model {classes}: they must match",
                m.classes()
            );
            ensure!(
                m.features() == in_len,
                "the {what} float model takes {} values per sample, the int8 model {in_len}",
                m.features()
            );
        }
    }
    let out = int8.outputs(&test.x, in_len)?;
    let mut confusion = vec![vec![0u64; classes]; classes];
    for (&y, &p) in test.y.iter().zip(&out.predictions) {
        confusion[y as usize][p] += 1;
    }
    let student_pred = student.map(|m| float_predictions(m, &test.x).1);
    let teacher_pred = teacher.map(|m| float_predictions(m, &test.x).1);
    let int8_acc = pct(accuracy(&out.predictions, &test.y));
    let student_f32 = student_pred.as_ref().map(|p| pct(accuracy(p, &test.y)));
    let per_layer = match student {
        Some(m) => per_layer(int8, m, &test.x)?,
        None => None,
    };
    Ok(EvalReport {
        model: summary.name.clone(),
        samples: test.y.len(),
        classes,
        teacher_f32: teacher_pred.as_ref().map(|p| pct(accuracy(p, &test.y))),
        student_f32,
        student_int8: int8_acc,
        int8_drop: student_f32.map(|f| ((int8_acc - f) * 100.0).round() / 100.0),
        agreement_int8_f32: student_pred
            .as_ref()
            .map(|p| pct(agreement(p, &out.predictions))),
        agreement_f32_teacher: match (&student_pred, &teacher_pred) {
            (Some(s), Some(t)) => Some(pct(agreement(s, t))),
            _ => None,
        },
        agreement_int8_teacher: teacher_pred
            .as_ref()
            .map(|t| pct(agreement(t, &out.predictions))),
        confusion,
        labels: summary.labels.clone(),
        sizes: Sizes {
            params: summary.params,
            flash_bytes: summary.flash_bytes,
            payload_bytes: summary.payload_bytes,
            arena_bytes: summary.arena_bytes,
            macs: summary.macs,
            float_weight_bytes: student.map(|m| {
                m.layers
                    .iter()
                    .filter_map(|l| l.weights())
                    .map(|(w, b)| 4 * (w.len() + b.len()))
                    .sum()
            }),
        },
        per_layer,
    })
}

/// The per-layer report of an `.ekd` written by `edgekd quantize` from `float`; `None` when
/// the file's ops do not follow the float model (e.g. an imported model).
fn per_layer(int8: &Int8Model, float: &FloatModel, x: &[f32]) -> Result<Option<LayerReport>> {
    let model = int8.model();
    let codes: Vec<OpCode> = model
        .ops()
        .map(|o| o.map(|o| o.code))
        .collect::<Result<_, _>>()?;
    let softmax = codes.last() == Some(&OpCode::Softmax);
    let n_groups = groups(float).iter().max().map_or(0, |g| g + 1);
    // Rebuilt only for the op-to-layer mapping and the weight statistics.
    let mut shadow = build(
        float,
        &vec![(-1.0, 1.0); n_groups],
        &BuildOptions {
            name: String::new(),
            per_tensor_weights: false,
            softmax,
        },
    )?;
    let shadow_codes: Vec<OpCode> = Int8Model::new(&shadow.bytes)?
        .model()
        .ops()
        .map(|o| o.map(|o| o.code))
        .collect::<Result<_, _>>()?;
    if shadow_codes != codes {
        return Ok(None);
    }
    shadow.bytes = int8.bytes().to_vec();
    Ok(Some(measure(float, &shadow, &[], x)?))
}

impl EvalReport {
    /// A readable summary (Markdown).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let opt = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} %"));
        let _ = writeln!(
            s,
            "# Evaluation of `{}` ({} test samples)\n",
            self.model, self.samples
        );
        let _ = writeln!(s, "| model | accuracy | agreement with teacher |");
        let _ = writeln!(s, "|---|---|---|");
        let _ = writeln!(s, "| teacher (f32) | {} | - |", opt(self.teacher_f32));
        let _ = writeln!(
            s,
            "| student (f32) | {} | {} |",
            opt(self.student_f32),
            opt(self.agreement_f32_teacher)
        );
        let _ = writeln!(
            s,
            "| student (int8, edgekd-runtime) | {:.2} % | {} |",
            self.student_int8,
            opt(self.agreement_int8_teacher)
        );
        if let (Some(d), Some(a)) = (self.int8_drop, self.agreement_int8_f32) {
            let _ = writeln!(
                s,
                "\nint8 vs f32: {d:+.2} points; the two agree on {a:.2} % of the samples."
            );
        }
        let z = &self.sizes;
        let _ = writeln!(
            s,
            "\nSize: {} parameters, {} bytes of flash (.ekd; {} of weights{}), {} bytes of arena, {} MACs per inference.",
            z.params,
            z.flash_bytes,
            z.payload_bytes,
            z.float_weight_bytes
                .map_or(String::new(), |b| format!(", vs {b} bytes of f32 weights")),
            z.arena_bytes,
            z.macs
        );
        let _ = writeln!(
            s,
            "\n## Confusion matrix (int8; rows true, columns predicted)\n"
        );
        let n = self.confusion.len();
        let label = |i: usize| self.labels.get(i).cloned().unwrap_or_else(|| i.to_string());
        let _ = writeln!(
            s,
            "| | {} |",
            (0..n).map(label).collect::<Vec<_>>().join(" | ")
        );
        let _ = writeln!(s, "|---{}|", "|---".repeat(n));
        for (i, row) in self.confusion.iter().enumerate() {
            let _ = writeln!(
                s,
                "| **{}** | {} |",
                label(i),
                row.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        if let Some(r) = &self.per_layer {
            let _ = writeln!(
                s,
                "\n## Per-layer float vs int8 (test set)\n\n```\n{}```",
                r.table()
            );
        }
        s
    }

    /// `(label, SQNR)` rows for the bar chart.
    pub fn sqnr_rows(&self) -> Vec<(String, Option<f64>)> {
        self.per_layer.as_ref().map_or(Vec::new(), |r| {
            r.tensors
                .iter()
                .map(|t| (format!("op {} {}", t.op, t.op_type), t.sqnr_db))
                .collect()
        })
    }
}
