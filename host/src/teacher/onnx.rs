//! ONNX teachers through tract-onnx.
//!
//! The batch dimension is fixed to [`BATCH`] at load (short batches are zero padded), which
//! also works for files exported with a fixed batch of 1 or a symbolic one. Ops tract lacks
//! are reported by name before optimisation, where tract's own message would be opaque.

use super::{log_softmax_rows, LoadOptions, OutputKind, Teacher};
use anyhow::{bail, ensure, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;
use tract_onnx::tract_hir::internal::DimLike;

/// Rows per tract call.
pub const BATCH: usize = 250;

/// A loaded ONNX classifier.
pub struct OnnxTeacher {
    plan: Arc<TypedRunnableModel>,
    sample_dims: Vec<usize>,
    classes: usize,
    probs: bool,
    fingerprint: String,
    path: PathBuf,
}

impl OnnxTeacher {
    /// Loads, checks and optimises an ONNX file.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<OnnxTeacher> {
        let name = path.display();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read teacher {name}"))?;
        let onnx = tract_onnx::onnx();
        let proto = <tract_onnx::pb::ModelProto as prost::Message>::decode(bytes.as_slice())
            .with_context(|| {
                format!("{name} is not a valid ONNX model (protobuf decoding failed)")
            })?;
        let graph = proto
            .graph
            .as_ref()
            .with_context(|| format!("{name}: the ONNX model has no graph"))?;
        let missing: Vec<String> = graph
            .node
            .iter()
            .filter(|n| !onnx.op_register.0.contains_key(&n.op_type))
            .map(|n| {
                let domain = if n.domain.is_empty() {
                    String::new()
                } else {
                    format!("{}.", n.domain)
                };
                format!("{domain}{} (node `{}`)", n.op_type, n.name)
            })
            .collect();
        if !missing.is_empty() {
            bail!(
                "{name}: ONNX op(s) not supported by tract-onnx: {}",
                missing.join(", ")
            );
        }
        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("{name}: tract-onnx cannot load this model"))?;
        ensure!(
            model.inputs.len() == 1,
            "{name}: expected one input, found {}",
            model.inputs.len()
        );
        let sample_dims: Vec<usize> = match &opts.input_shape {
            Some(s) => s.clone(),
            None => {
                let fact = model.input_fact(0)?;
                let shape = fact
                    .shape
                    .concretize()
                    .filter(|s| s.len() >= 2)
                    .with_context(|| {
                        format!("{name}: the input shape is open; pass --teacher-input-shape")
                    })?;
                shape[1..]
                    .iter()
                    .map(|d| d.to_usize())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "{name}: the input shape is open; pass --teacher-input-shape"
                        )
                    })?
            }
        };
        let feat: usize = sample_dims.iter().product();
        ensure!(
            feat == opts.features,
            "{name}: the teacher input {sample_dims:?} has {feat} values per sample, the data has {}",
            opts.features
        );
        let mut dims = vec![BATCH];
        dims.extend(&sample_dims);
        model
            .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), &*dims))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let plan = model
            .into_optimized()
            .and_then(|m| m.into_runnable())
            .map_err(|e| anyhow::anyhow!("{e:?}"))
            .with_context(|| format!("{name}: tract-onnx cannot prepare this model"))?;
        let mut t = OnnxTeacher {
            plan,
            sample_dims,
            classes: 0,
            probs: false,
            fingerprint: String::new(),
            path: path.to_path_buf(),
        };
        // Probe with two inputs to learn the class count and whether rows are probabilities.
        let probe: Vec<f32> = (0..2 * feat)
            .map(|i| if i < feat { 0.0 } else { 1.0 })
            .collect();
        let (raw, k) = t.run_raw(&probe, 2)?;
        t.classes = k;
        t.probs = match opts.output {
            OutputKind::Probs => true,
            OutputKind::Logits => false,
            OutputKind::Auto => raw
                .chunks(k)
                .all(|r| r.iter().all(|&v| v >= 0.0) && (r.iter().sum::<f32>() - 1.0).abs() < 1e-3),
        };
        t.fingerprint = format!(
            "onnx:{:x}:{:?}:{}",
            Sha256::digest(&bytes),
            t.sample_dims,
            t.probs
        );
        Ok(t)
    }

    fn run_raw(&self, x: &[f32], n: usize) -> Result<(Vec<f32>, usize)> {
        let feat: usize = self.sample_dims.iter().product();
        let mut out = Vec::new();
        let mut k = 0;
        let mut start = 0;
        while start < n {
            let end = (start + BATCH).min(n);
            let mut buf = vec![0f32; BATCH * feat];
            buf[..(end - start) * feat].copy_from_slice(&x[start * feat..end * feat]);
            let mut dims = vec![BATCH];
            dims.extend(&self.sample_dims);
            let input = tract_ndarray::ArrayD::from_shape_vec(dims, buf)?;
            let res = self
                .plan
                .run(tvec!(Tensor::from(input).into()))
                .map_err(|e| anyhow::anyhow!("{e:?}"))
                .with_context(|| format!("running teacher {}", self.path.display()))?;
            let y = res[0]
                .to_plain_array_view::<f32>()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let shape = y.shape().to_vec();
            ensure!(
                shape.first() == Some(&BATCH) && shape.len() >= 2,
                "{}: output shape {shape:?} is not [batch, classes]",
                self.path.display()
            );
            k = shape[1..].iter().product();
            let flat: Vec<f32> = y.iter().copied().collect();
            out.extend_from_slice(&flat[..(end - start) * k]);
            start = end;
        }
        Ok((out, k))
    }
}

impl Teacher for OnnxTeacher {
    fn classes(&self) -> usize {
        self.classes
    }
    fn log_probs(&mut self, x: &[f32], n: usize) -> Result<Vec<f32>> {
        let (raw, k) = self.run_raw(x, n)?;
        if self.probs {
            Ok(raw.iter().map(|&p| p.max(1e-12).ln()).collect())
        } else {
            Ok(log_softmax_rows(&raw, k))
        }
    }
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    fn describe(&self) -> String {
        format!(
            "{} (ONNX via tract, input {:?}, {} outputs as {})",
            self.path.display(),
            self.sample_dims,
            self.classes,
            if self.probs {
                "probabilities"
            } else {
                "logits"
            }
        )
    }
}

/// Multiply-accumulates per sample of an ONNX classifier, from tract's cost model
/// (`Cost::FMA` of every op of the decluttered graph at batch 1).
pub fn macs_per_sample(path: &Path, sample_dims: &[usize]) -> Result<u64> {
    let name = path.display();
    let mut model = tract_onnx::onnx()
        .model_for_path(path)
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("{name}: tract-onnx cannot load this model"))?;
    let mut dims = vec![1];
    dims.extend(sample_dims);
    model
        .set_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), &*dims))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let typed = model
        .into_typed()
        .and_then(|m| m.into_decluttered())
        .map_err(|e| anyhow::anyhow!("{e:?}"))
        .with_context(|| format!("{name}: tract cannot type this model"))?;
    let mut macs = 0u64;
    for id in typed.eval_order().map_err(|e| anyhow::anyhow!("{e:?}"))? {
        let node = &typed.nodes[id];
        let inputs = typed
            .node_input_facts(id)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        for (cost, count) in node
            .op
            .cost(&inputs)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
        {
            if matches!(cost, tract_onnx::tract_core::ops::Cost::FMA(_)) {
                macs += count
                    .to_i64()
                    .map_err(|e| anyhow::anyhow!("{e:?}"))
                    .with_context(|| format!("{name}: op {} has a symbolic cost", node.name))?
                    as u64;
            }
        }
    }
    Ok(macs)
}
