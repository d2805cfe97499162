//! Int8 softmax (TFLite reference arithmetic) against f64.
#![cfg(feature = "std")]

mod common;

use common::*;
use edgekd_kernels::quant::softmax_params;
use edgekd_kernels::*;

fn f64_softmax(row: &[i8], scale: f32, beta: f32) -> Vec<i32> {
    let xs: Vec<f64> = row
        .iter()
        .map(|&q| beta as f64 * scale as f64 * q as f64)
        .collect();
    let m = xs.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = xs.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter()
        .map(|v| quantize(v / s, 1.0 / 256.0, -128, Clamp::NONE))
        .collect()
}

#[test]
fn softmax_hand() {
    let p = softmax_params(0.1, 1.0);
    let mut out = [0i8; 4];
    // Uniform rows: 0.25 each -> 64 - 128 = -64, whatever the level.
    softmax(&p, 4, &[5, 5, 5, 5], &mut out).unwrap();
    assert_eq!(out, [-64; 4]);
    softmax(&p, 4, &[-128; 4], &mut out).unwrap();
    assert_eq!(out, [-64; 4]);
    // Max dominates: 1.0 -> 128 saturates at 127; the rest round to 0 -> -128.
    softmax(&p, 4, &[127, -128, -128, -60], &mut out).unwrap();
    assert_eq!(out, [127, -128, -128, -128]);
    // Two equal maxima: 0.5 each -> 0.
    softmax(&p, 4, &[-128, 100, -128, 100], &mut out).unwrap();
    assert_eq!(out, [-128, 0, -128, 0]);
    // depth 1: always probability 1.
    let mut o1 = [0i8; 3];
    softmax(&p, 1, &[-5, 0, 99], &mut o1).unwrap();
    assert_eq!(o1, [127; 3]);
    // Two rows handled independently: [0, ln 3 / 0.1 ~ 11] -> 1/4, 3/4.
    let mut o2 = [0i8; 4];
    softmax(&p, 2, &[0, 11, 7, 7], &mut o2).unwrap();
    // exp(1.1) = 3.004: 0.2497 -> 64 - 128 = -64; 0.7503 -> 192 - 128 = 64.
    assert_eq!(o2, [-64, 64, 0, 0]);
}

#[test]
fn softmax_diff_below_diff_min() {
    // Input scale 1.0: diff_min = -15 (differences below it are exactly -128).
    let p = softmax_params(1.0, 1.0);
    assert_eq!(p.diff_min, -15);
    let mut out = [0i8; 3];
    softmax(&p, 3, &[10, -6, -100], &mut out).unwrap();
    assert_eq!(out, [127, -128, -128]);
    // Small scale: diff_min is far below -255, so nothing is cut off and a
    // uniform-ish row spreads probability.
    let p = softmax_params(0.001, 1.0);
    assert!(p.diff_min < -255);
    let mut out = [0i8; 2];
    softmax(&p, 2, &[127, -128], &mut out).unwrap();
    // 0.255 nats apart: 0.5634 / 0.4366 -> 144 - 128 = 16, 112 - 128 = -16.
    assert_eq!(out, [16, -16]);
}

#[test]
fn softmax_random_vs_f64() {
    let mut rng = Rng::new(51);
    let mut max_err = 0;
    let mut hist = [0usize; 3];
    for case in 0..2000 {
        let depth = rng.usize(1, 40);
        let rows = rng.usize(1, 3);
        let scale = rng.log_uniform(0.002, 1.0) as f32;
        let beta = if rng.usize(0, 3) == 0 {
            rng.log_uniform(0.3, 3.0) as f32
        } else {
            1.0
        };
        let spread = rng.usize(1, 255) as i64;
        let lo = rng.range(-128, 127 - spread);
        let mut input = Vec::new();
        for _ in 0..rows * depth {
            input.push(rng.range(lo, lo + spread) as i8);
        }
        let p = softmax_params(scale, beta);
        let mut out = vec![0i8; input.len()];
        softmax(&p, depth, &input, &mut out).unwrap();
        let want: Vec<i32> = input
            .chunks(depth)
            .flat_map(|r| f64_softmax(r, scale, beta))
            .collect();
        for (&g, &w) in out.iter().zip(&want) {
            hist[(g as i32 - w).unsigned_abs().min(2) as usize] += 1;
        }
        max_err = max_err.max(assert_close(
            &out,
            &want,
            1,
            &format!("case {case} scale {scale} beta {beta} {input:?}"),
        ));
    }
    eprintln!("softmax: max |int8 - f64 reference| = {max_err} LSB; |err| 0/1/2+ counts: {hist:?}");
}

#[test]
fn softmax_long_row_does_not_panic() {
    // 5000 equal values overflow the Q12.19 sum exactly as TFLite does; the
    // result is meaningless but must not panic.
    let p = softmax_params(0.1, 1.0);
    let input = vec![3i8; 5000];
    let mut out = vec![0i8; 5000];
    softmax(&p, 5000, &input, &mut out).unwrap();
    // 4000 is still fine: 1/4000 * 256 rounds to 0.
    let mut out = vec![0i8; 4000];
    softmax(&p, 4000, &input[..4000], &mut out).unwrap();
    assert!(out.iter().all(|&v| v == -128));
}

#[test]
fn softmax_long_rows_vs_f64() {
    // Around and beyond a sum of exponentials of 512, where TFLite's shift
    // exceeds 31 bits.
    let mut rng = Rng::new(61);
    for depth in [100usize, 300, 511, 512, 513, 600, 1000, 4000] {
        for &scale in &[0.001f32, 0.02, 0.1] {
            let input = rng.i8s(depth, 100, 127);
            let p = softmax_params(scale, 1.0);
            let mut out = vec![0i8; depth];
            softmax(&p, depth, &input, &mut out).unwrap();
            let want = f64_softmax(&input, scale, 1.0);
            assert_close(&out, &want, 1, &format!("depth {depth} scale {scale}"));
        }
    }
}

/// Regression pin: FNV-1a of the outputs over a fixed pseudo-random set of rows.
/// The arithmetic is a line-by-line port of TFLite's reference int8 softmax and
/// gemmlowp's fixed-point exp/reciprocal; the f64 tests cannot see 1e-7-level
/// changes in those, this hash can. Any optimized softmax must keep it.
#[test]
fn softmax_bits_pinned() {
    let mut rng = Rng::new(71);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for _ in 0..3000 {
        let depth = rng.usize(1, 64);
        // Exact decimal scales (no libm in the test input).
        let scale = rng.usize(2, 1000) as f32 / 1000.0;
        let input = rng.i8s(depth, -128, 127);
        let mut out = vec![0i8; depth];
        softmax(&softmax_params(scale, 1.0), depth, &input, &mut out).unwrap();
        for v in out {
            h = (h ^ v as u8 as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    assert_eq!(
        h, 0x31ca_9ff9_f378_720d,
        "softmax output bits changed (hash {h:#x})"
    );
}
