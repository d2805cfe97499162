//! Helpers for the `runtimes` criterion bench: the three ways to run a reference
//! model at batch 1, and the ratio table written from criterion's estimates.
#![deny(missing_docs)]

use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::Model;
use edgekd_tract::float::{dequantize, into_runnable, lower_f32};
use edgekd_tract::{Options, TractModel};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_core::internal::*;

/// The reference models benchmarked.
pub const MODELS: [&str; 3] = ["tiny_cnn", "mlp", "ds_cnn"];

/// The three runtimes, in table order.
pub const RUNTIMES: [&str; 3] = ["edgekd-runtime int8", "edgekd-tract int8", "tract f32"];

/// Directory of the reference models.
pub fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/reference")
}

/// A reference model and its first golden input.
pub struct Case {
    /// Model name.
    pub name: &'static str,
    /// The `.ekd` bytes, aligned for the parser.
    pub bytes: AlignedBytes,
    /// One int8 input sample.
    pub input: Vec<i8>,
}

impl Case {
    /// Loads `models/reference/<name>.ekd` and the first row of `<name>.input.npy`.
    pub fn load(name: &'static str) -> Case {
        let dir = reference_dir();
        let raw = std::fs::read(dir.join(format!("{name}.ekd"))).expect("reference model");
        let bytes = AlignedBytes::copy_from(&raw);
        let npy = std::fs::read(dir.join(format!("{name}.input.npy"))).expect("golden input");
        let all: Vec<i8> = npyz::NpyFile::new(&npy[..]).unwrap().into_vec().unwrap();
        let model = Model::parse(bytes.as_bytes()).expect("valid model");
        let n = model.input(0).unwrap().elements();
        Case {
            name,
            input: all[..n].to_vec(),
            bytes,
        }
    }

    /// The parsed model.
    pub fn model(&self) -> Model<'_> {
        Model::parse(self.bytes.as_bytes()).unwrap()
    }

    /// The int8 tract model (single-threaded).
    pub fn tract_int8(&self) -> TractModel {
        TractModel::from_model(&self.model(), &Options::default()).unwrap()
    }

    /// The float tract model and its (dequantized) input.
    pub fn tract_f32(&self) -> (Arc<TypedRunnableModel>, TValue) {
        let lowered = lower_f32(&self.model()).unwrap();
        let input = dequantize(&lowered.inputs[0], &self.input).unwrap();
        (into_runnable(lowered).unwrap(), input.into_tvalue())
    }
}

/// Mean time (ns) criterion estimated for `group/id`, from its `estimates.json`.
pub fn criterion_mean_ns(criterion_dir: &Path, group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir
        .join(group)
        .join(id)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

/// Markdown table of mean times and ratios to edgekd-runtime, one row per model.
pub fn ratio_table(criterion_dir: &Path) -> String {
    let mut s = String::from(
        "| model | edgekd-runtime int8 | edgekd-tract int8 | tract f32 | tract int8 / runtime | tract f32 / runtime | tract f32 / tract int8 |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for m in MODELS {
        let t: Vec<Option<f64>> = RUNTIMES
            .iter()
            .map(|r| criterion_mean_ns(criterion_dir, m, r))
            .collect();
        let fmt = |x: Option<f64>| x.map_or("-".into(), |ns| format!("{:.2} µs", ns / 1e3));
        let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        s += &format!(
            "| {m} | {} | {} | {} | {} | {} | {} |\n",
            fmt(t[0]),
            fmt(t[1]),
            fmt(t[2]),
            ratio(t[1], t[0]),
            ratio(t[2], t[0]),
            ratio(t[2], t[1])
        );
    }
    s
}
