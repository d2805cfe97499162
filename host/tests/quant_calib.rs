//! Calibration methods on synthetic distributions with known answers.

mod quant_common;

use edgekd::quant::calib::{fake_quant, qparams, Histogram, Method, MinMax};
use quant_common::Rng;

fn histogram(v: &[f32]) -> Histogram {
    let mut mm = MinMax::default();
    // Streamed in chunks, as calibration does.
    for c in v.chunks(97) {
        mm.add(c);
    }
    let mut h = Histogram::new(&mm);
    for c in v.chunks(97) {
        h.add(c);
    }
    h
}

/// Mean squared error of quantize-dequantize with range `r`.
fn mse(v: &[f32], r: (f32, f32)) -> f64 {
    let (s, z) = qparams(r.0, r.1);
    v.iter()
        .map(|&x| f64::from(x - fake_quant(x, s, z)).powi(2))
        .sum::<f64>()
        / v.len() as f64
}

#[test]
fn minmax_is_the_observed_range() {
    let mut r = Rng::new(1);
    let v: Vec<f32> = (0..10_000).map(|_| r.normal()).collect();
    let h = histogram(&v);
    let lo = v.iter().cloned().fold(f32::INFINITY, f32::min);
    let hi = v.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(h.range(Method::MinMax), (lo, hi));
    assert_eq!(h.total(), 10_000);
}

#[test]
fn percentile_clips_outliers() {
    let mut r = Rng::new(2);
    let mut v: Vec<f32> = (0..100_000).map(|_| r.normal()).collect();
    // Five wild outliers (0.005 %).
    v.extend([500.0, -400.0, 800.0, 650.0, -900.0]);
    let h = histogram(&v);
    let (lo, hi) = h.range(Method::Percentile(99.99));
    // The 99.99th percentile of N(0, 1) is 3.72; bins are (1700 / 2048) wide.
    assert!((2.5..5.0).contains(&hi), "hi {hi}");
    assert!((-5.0..-2.5).contains(&lo), "lo {lo}");
    let (mlo, mhi) = h.range(Method::MinMax);
    assert_eq!((mlo, mhi), (-900.0, 800.0));
    // The other 99.995 % of the values get a 200x finer step.
    let bulk = &v[..100_000];
    assert!(mse(bulk, (lo, hi)) < mse(bulk, (mlo, mhi)) / 1000.0);
    assert!(h.clipped_fraction(lo, hi) < 1e-3);
}

#[test]
fn quantiles_of_a_uniform_distribution() {
    let v: Vec<f32> = (0..100_001).map(|i| i as f32 / 100_000.0).collect();
    let h = histogram(&v);
    for q in [0.1, 0.5, 0.9, 0.99] {
        assert!(
            (h.quantile(q) - q as f32).abs() < 2e-3,
            "q {q}: {}",
            h.quantile(q)
        );
    }
}

#[test]
fn mse_beats_minmax_on_heavy_tails() {
    // Student-t with 3 degrees of freedom over 400k values (an activation tensor seen over
    // a calibration set): rare values far out stretch min/max over a mostly empty range.
    let mut r = Rng::new(3);
    let v: Vec<f32> = (0..400_000)
        .map(|_| {
            let chi = (r.normal().powi(2) + r.normal().powi(2) + r.normal().powi(2)) / 3.0;
            r.normal() / chi.sqrt().max(1e-3)
        })
        .collect();
    let h = histogram(&v);
    let m = h.range(Method::Mse);
    let mm = h.range(Method::MinMax);
    let (e_mse, e_mm) = (mse(&v, m), mse(&v, mm));
    assert!(
        e_mse < 0.7 * e_mm,
        "MSE range {m:?}: {e_mse}, min/max {mm:?}: {e_mm}"
    );
    // And it shrank the range, not just moved it.
    assert!(m.1 - m.0 < 0.8 * (mm.1 - mm.0));
}

#[test]
fn mse_keeps_the_range_of_a_uniform_distribution() {
    // Nothing to gain from clipping a uniform distribution.
    let v: Vec<f32> = (0..20_001)
        .map(|i| -1.0 + 2.0 * i as f32 / 20_000.0)
        .collect();
    let h = histogram(&v);
    let (lo, hi) = h.range(Method::Mse);
    assert!(lo < -0.97 && hi > 0.97, "{lo} {hi}");
}

#[test]
fn relu_outputs_keep_zero_exact_and_use_all_levels() {
    let (s, z) = qparams(0.0, 6.0);
    assert_eq!(z, -128);
    assert!((s - 6.0 / 255.0).abs() < 1e-9);
    assert_eq!(fake_quant(0.0, s, z), 0.0);
    // Asymmetric range: zero still exact.
    let (s, z) = qparams(-1.3, 3.1);
    assert_eq!(fake_quant(0.0, s, z), 0.0);
}
