//! Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization Through Weight
//! Equalization and Bias Correction").
//!
//! For a weighted layer A followed (through max/average pooling, global average pooling,
//! flatten or dropout only) by a weighted layer B, output channel `i` of A can be divided by
//! any `s_i > 0` and B's weights reading channel `i` multiplied by it without changing the
//! float function, as long as A's activation is the identity or ReLU (positive-homogeneous;
//! ReLU6 is not: its clamp at 6 does not scale). Choosing `s_i = sqrt(r1_i / r2_i)`, where
//! `r1_i` is the largest |weight| of A's channel `i` and `r2_i` the largest |weight| of B
//! reading it, gives both the same range `sqrt(r1_i * r2_i)`: one outlier channel no longer
//! sets a whole per-tensor weight scale. Depthwise layers are left alone (their output
//! channel is their input channel, so a rescale would have to continue down the chain).

use super::float::{FloatModel, Layer};
use crate::nn::spec::Act;

/// Sweeps over all pairs; DFQ iterates because each layer sits in two pairs.
const SWEEPS: usize = 8;

/// What [`equalize`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Equalized {
    /// Layer pairs that were equalized.
    pub pairs: usize,
}

/// Output channels of a layer that can lead a pair (plain conv or dense, identity or ReLU).
fn leader_channels(layer: &Layer) -> Option<usize> {
    match layer {
        Layer::Conv {
            out_c,
            depthwise: false,
            act: Act::None | Act::Relu,
            ..
        } => Some(*out_c),
        Layer::Dense {
            units,
            act: Act::None | Act::Relu,
            ..
        } => Some(*units),
        _ => None,
    }
}

/// Index of the weighted layer that reads layer `a`'s output channel by channel, if the
/// layers between keep channels and are positive-homogeneous.
fn follower(model: &FloatModel, a: usize) -> Option<usize> {
    for (b, layer) in model.layers.iter().enumerate().skip(a + 1) {
        match layer {
            Layer::Pool { .. } | Layer::Gap { .. } | Layer::Identity => continue,
            Layer::Conv {
                depthwise: false, ..
            }
            | Layer::Dense { .. } => return Some(b),
            Layer::Conv { .. } => return None,
        }
    }
    None
}

/// Equalizes every eligible pair of `model` in place; the float function is unchanged up
/// to rounding.
pub fn equalize(model: &mut FloatModel) -> Equalized {
    let pairs: Vec<(usize, usize, usize)> = (0..model.layers.len())
        .filter_map(|a| {
            let c = leader_channels(&model.layers[a])?;
            let b = follower(model, a)?;
            // B must read A's channels with the channel fastest (NHWC flatten or a conv).
            let fan_in = match &model.layers[b] {
                Layer::Dense { inputs, .. } => *inputs,
                Layer::Conv { w, out_c, .. } => w.len() / out_c,
                _ => return None,
            };
            (fan_in % c == 0).then_some((a, b, c))
        })
        .collect();
    for _ in 0..SWEEPS {
        for &(a, b, c) in &pairs {
            equalize_pair(model, a, b, c);
        }
    }
    Equalized { pairs: pairs.len() }
}

/// Weights and bias of a weighted layer, mutably (`Layer::weights` reads them).
fn weights_mut(layer: &mut Layer) -> Option<(&mut [f32], &mut [f32])> {
    match layer {
        Layer::Conv { w, b, .. } | Layer::Dense { w, b, .. } => Some((w, b)),
        _ => None,
    }
}

fn equalize_pair(model: &mut FloatModel, a: usize, b: usize, c: usize) {
    let (Some((w1, _)), Some((w2, _))) = (model.layers[a].weights(), model.layers[b].weights())
    else {
        return;
    };
    // A's weights are [out, fan-in] (conv OHWI): channel i is row i. B reads channel i at
    // every index congruent to i modulo c (OHWI conv: input channel fastest; dense after
    // an NHWC flatten or a global average pool: likewise).
    let fan1 = w1.len() / c;
    let mut r2 = vec![0f32; c];
    for (j, v) in w2.iter().enumerate() {
        r2[j % c] = r2[j % c].max(v.abs());
    }
    let s: Vec<f32> = w1
        .chunks_exact(fan1)
        .zip(&r2)
        .map(|(row, &y)| {
            let x = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            if x > 0.0 && y > 0.0 {
                (x / y).sqrt()
            } else {
                1.0
            }
        })
        .collect();
    if let Some((w2, _)) = weights_mut(&mut model.layers[b]) {
        for (j, v) in w2.iter_mut().enumerate() {
            *v *= s[j % c];
        }
    }
    if let Some((w1, b1)) = weights_mut(&mut model.layers[a]) {
        for (i, row) in w1.chunks_exact_mut(fan1).enumerate() {
            row.iter_mut().for_each(|v| *v /= s[i]);
            b1[i] /= s[i];
        }
    }
}
