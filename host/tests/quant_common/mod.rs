//! Small float models built by hand and synthetic data for the quantizer tests.
#![allow(dead_code)]

use edgekd::io::{npy_bytes, Matrix};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::Path;

/// SplitMix64-based uniform and normal draws, identical on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f64 / (1u64 << 24) as f64) as f32
    }
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

/// Safetensors bytes of a float model: `layers` JSON, tensors `(name, shape, values)`.
pub fn float_model_bytes(
    input_shape: [usize; 3],
    classes: usize,
    mean: &[f32],
    std: &[f32],
    layers: Value,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
) -> Vec<u8> {
    let meta = json!({
        "name": "handmade",
        "input_shape": input_shape,
        "classes": classes,
        "norm": {"mean": mean, "std": std},
        "layers": layers,
        "recipe": "",
    });
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| {
            (
                n.clone(),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    let mut md = HashMap::new();
    md.insert("format".to_string(), "edgekd-float-model/1".to_string());
    md.insert("model".to_string(), meta.to_string());
    safetensors::serialize(views, Some(md)).unwrap()
}

fn he(rng: &mut Rng, n: usize, fan_in: usize) -> Vec<f32> {
    let s = (2.0 / fan_in as f32).sqrt();
    (0..n).map(|_| rng.normal() * s).collect()
}

/// A 1-D CNN over 40 samples with every layer type the runtime maps:
/// conv 6 k5 s2 same relu, dwconv k3 relu6, maxpool 2, conv 8 k3 relu, avgpool 2, dense 10.
pub fn cnn_bytes(seed: u64) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let layers = json!([
        {"type": "conv", "filters": 6, "kernel": 5, "stride": 2, "padding": "same", "act": "relu"},
        {"type": "dwconv", "kernel": 3, "padding": "same", "act": "relu6"},
        {"type": "maxpool", "size": 2},
        {"type": "conv", "filters": 8, "kernel": 3, "act": "relu"},
        {"type": "avgpool", "size": 2},
        {"type": "dropout", "rate": 0.1},
        {"type": "dense", "units": 10},
    ]);
    // Shapes: 40 -> 20x6 -> 20x6 -> 10x6 -> 8x8 -> 4x8 -> 32 -> 10.
    let tensors = vec![
        ("l0.weight".to_string(), vec![6, 1, 5, 1], he(&mut r, 30, 5)),
        (
            "l0.bias".to_string(),
            vec![6],
            (0..6).map(|_| 0.1 * r.normal()).collect(),
        ),
        ("l1.weight".to_string(), vec![1, 1, 3, 6], he(&mut r, 18, 3)),
        (
            "l1.bias".to_string(),
            vec![6],
            (0..6).map(|_| 0.1 * r.normal()).collect(),
        ),
        (
            "l3.weight".to_string(),
            vec![8, 1, 3, 6],
            he(&mut r, 144, 18),
        ),
        (
            "l3.bias".to_string(),
            vec![8],
            (0..8).map(|_| 0.1 * r.normal()).collect(),
        ),
        ("l6.weight".to_string(), vec![10, 32], he(&mut r, 320, 32)),
        (
            "l6.bias".to_string(),
            vec![10],
            (0..10).map(|_| 0.1 * r.normal()).collect(),
        ),
    ];
    float_model_bytes([1, 40, 1], 10, &[0.5], &[2.0], layers, &tensors)
}

/// An MLP 40-16-10 with a GAP-free flat input.
pub fn mlp_bytes(seed: u64) -> Vec<u8> {
    mlp_bytes_rescaled(seed, 1.0)
}

/// [`mlp_bytes`] with hidden unit 0's incoming weights and bias multiplied by `k` and its
/// outgoing weights divided by `k`. ReLU is positive-homogeneous, so the float function is
/// the same; per-tensor weight quantization (one scale for the whole first layer, set by the
/// large unit) and the hidden activation's range are not: the classic case where PTQ loses
/// accuracy and cross-layer equalization or QAT must recover it.
pub fn mlp_bytes_rescaled(seed: u64, k: f32) -> Vec<u8> {
    let mut r = Rng::new(seed);
    let layers = json!([
        {"type": "flatten"},
        {"type": "dense", "units": 16, "act": "relu"},
        {"type": "dense", "units": 10},
    ]);
    let tensors = vec![
        ("l1.weight".to_string(), vec![16, 40], he(&mut r, 640, 40)),
        (
            "l1.bias".to_string(),
            vec![16],
            (0..16).map(|_| 0.1 * r.normal()).collect(),
        ),
        ("l2.weight".to_string(), vec![10, 16], he(&mut r, 160, 16)),
        (
            "l2.bias".to_string(),
            vec![10],
            (0..10).map(|_| 0.1 * r.normal()).collect(),
        ),
    ];
    let mut tensors = tensors;
    for w in &mut tensors[0].2[..40] {
        *w *= k;
    }
    tensors[1].2[0] *= k;
    for row in tensors[2].2.chunks_exact_mut(16) {
        row[0] /= k;
    }
    float_model_bytes([1, 40, 1], 10, &[0.5], &[2.0], layers, &tensors)
}

/// Raw signals like MNIST-1D-ish data: a bump at a varying place plus a sine and noise,
/// in the raw units the models above normalize (mean 0.5, std 2).
pub fn signals(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    let mut x = Vec::with_capacity(n * 40);
    for _ in 0..n {
        let centre = 5.0 + 30.0 * r.uniform();
        let freq = 0.1 + 0.4 * r.uniform();
        let amp = 1.0 + 3.0 * r.uniform();
        for t in 0..40 {
            let tt = t as f32;
            let bump = amp * (-(tt - centre) * (tt - centre) / 8.0).exp();
            x.push(0.5 + bump + 1.5 * (freq * tt).sin() + 0.5 * r.normal());
        }
    }
    x
}

pub fn write_npy_f32(path: &Path, rows: usize, cols: usize, data: Vec<f32>) {
    let bytes = npy_bytes(&Matrix { rows, cols, data }).unwrap();
    std::fs::write(path, bytes).unwrap();
}

pub fn write_labels(path: &Path, y: &[u32]) {
    let data: Vec<i64> = y.iter().map(|&v| i64::from(v)).collect();
    let bytes = npy_bytes(&Matrix {
        rows: y.len(),
        cols: 1,
        data,
    })
    .unwrap();
    std::fs::write(path, bytes).unwrap();
}
