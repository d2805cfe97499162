//! Shared helpers for the kernel tests: a tiny PRNG, quantization helpers and
//! output-geometry helpers.
#![allow(dead_code)]

use edgekd_kernels::quant::quantize_multiplier;
use edgekd_kernels::Clamp;

/// xorshift64* PRNG (deterministic, no dependencies).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % ((hi - lo + 1) as u64)) as i64
    }
    pub fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as i64, hi as i64) as usize
    }
    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Log-uniform in `[lo, hi)`.
    pub fn log_uniform(&mut self, lo: f64, hi: f64) -> f64 {
        (lo.ln() + self.unit() * (hi.ln() - lo.ln())).exp()
    }
    pub fn i8s(&mut self, n: usize, lo: i8, hi: i8) -> Vec<i8> {
        (0..n)
            .map(|_| self.range(lo as i64, hi as i64) as i8)
            .collect()
    }
    pub fn bool(&mut self) -> bool {
        self.next_u64() & 1 == 1
    }
}

/// `clamp(round(real / scale) + zp)` with ties away from zero: what a perfect
/// int8 kernel would output.
pub fn quantize(real: f64, scale: f64, zp: i32, clamp: Clamp) -> i32 {
    let q = (real / scale).round() + zp as f64;
    q.max(clamp.min as f64).min(clamp.max as f64) as i32
}

/// Per-channel Q31 multipliers/shifts of `in_scale * w_scale[c] / out_scale`,
/// computed from f32 scales in f64 like TFLite does.
pub fn channel_requant(in_scale: f32, w_scales: &[f32], out_scale: f32) -> (Vec<i32>, Vec<i32>) {
    w_scales
        .iter()
        .map(|&ws| quantize_multiplier(in_scale as f64 * ws as f64 / out_scale as f64))
        .unzip()
}

/// TFLite output size and top/left padding for one axis.
pub fn out_and_pad(
    input: usize,
    k: usize,
    stride: usize,
    dil: usize,
    same: bool,
) -> (usize, usize) {
    let eff = (k - 1) * dil + 1;
    if same {
        let out = input.div_ceil(stride);
        let total = ((out - 1) * stride + eff).saturating_sub(input);
        (out, total / 2)
    } else {
        ((input - eff) / stride + 1, 0)
    }
}

/// Asserts every output is within `tol` of the expected value; returns the
/// maximum absolute difference seen.
pub fn assert_close(got: &[i8], want: &[i32], tol: i32, what: &str) -> i32 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut max = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as i32 - w).abs();
        assert!(
            d <= tol,
            "{what}: element {i}: got {g}, want {w} (tol {tol})"
        );
        max = max.max(d);
    }
    max
}

/// A random output scale/zero point that makes the given real outputs span
/// somewhat more than the int8 range (so some saturate), with a random zero point.
pub fn pick_output_quant(rng: &mut Rng, reals: &[f64]) -> (f32, i32) {
    let max_abs = reals.iter().fold(1e-6f64, |m, &r| m.max(r.abs()));
    let scale = (2.0 * max_abs / 255.0 * (0.7 + 0.5 * rng.unit())) as f32;
    let zp = rng.range(-30, 30) as i32;
    (scale, zp)
}
