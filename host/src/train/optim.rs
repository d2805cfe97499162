//! AdamW with checkpointable state.
//!
//! candle-nn's `AdamW` keeps its moment estimates private, so a killed run could not resume to
//! the same weights; this one exposes them as named tensors for the checkpoint. Weight decay is
//! decoupled and applies to weights only (not biases or BatchNorm parameters).

use crate::nn::model::Param;
use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::Tensor;

const B1: f64 = 0.9;
const B2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Optimizer state.
pub struct AdamW {
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Steps taken.
    pub step: u64,
    weight_decay: f64,
}

impl AdamW {
    /// Zero state for `params`.
    pub fn new(params: &[Param], weight_decay: f64) -> Result<AdamW> {
        let zeros = |p: &Param| p.var.as_tensor().zeros_like();
        Ok(AdamW {
            m: params
                .iter()
                .map(zeros)
                .collect::<candle_core::Result<_>>()?,
            v: params
                .iter()
                .map(zeros)
                .collect::<candle_core::Result<_>>()?,
            step: 0,
            weight_decay,
        })
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, params: &[Param], grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let t = self.step as i32;
        let c1 = 1.0 - B1.powi(t);
        let c2 = 1.0 - B2.powi(t);
        for (i, p) in params.iter().enumerate() {
            let Some(g) = grads.get(&p.var) else { continue };
            let m = ((&self.m[i] * B1)? + (g * (1.0 - B1))?)?;
            let v = ((&self.v[i] * B2)? + (g.sqr()? * (1.0 - B2))?)?;
            let upd = ((&m / c1)? / ((&v / c2)?.sqrt()? + EPS)?)?;
            let theta = p.var.as_tensor();
            let decayed = if p.decay && self.weight_decay > 0.0 {
                (theta * (1.0 - lr * self.weight_decay))?
            } else {
                theta.clone()
            };
            p.var.set(&(decayed - (upd * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Moments as named tensors (`adam.m.<param>`, `adam.v.<param>`).
    pub fn named_tensors(&self, params: &[Param]) -> Vec<(String, Tensor)> {
        params
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                [
                    (format!("adam.m.{}", p.name), self.m[i].clone()),
                    (format!("adam.v.{}", p.name), self.v[i].clone()),
                ]
            })
            .collect()
    }

    /// Restores moments saved by [`AdamW::named_tensors`].
    pub fn load(
        &mut self,
        params: &[Param],
        get: &dyn Fn(&str) -> Option<Tensor>,
        step: u64,
    ) -> Result<()> {
        for (i, p) in params.iter().enumerate() {
            let dt = p.var.dtype();
            self.m[i] = get(&format!("adam.m.{}", p.name))
                .with_context(|| format!("checkpoint lacks adam.m.{}", p.name))?
                .to_dtype(dt)?;
            self.v[i] = get(&format!("adam.v.{}", p.name))
                .with_context(|| format!("checkpoint lacks adam.v.{}", p.name))?
                .to_dtype(dt)?;
        }
        self.step = step;
        Ok(())
    }
}
