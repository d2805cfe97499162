//! Fixed-point primitives and host-side parameter derivation.
#![cfg(feature = "std")]

mod common;

use common::Rng;
use edgekd_kernels::quant::*;
use edgekd_kernels::Clamp;

#[test]
fn srdhm_hand_values() {
    let f = saturating_rounding_doubling_high_mul;
    // The only overflowing case saturates.
    assert_eq!(f(i32::MIN, i32::MIN), i32::MAX);
    assert_eq!(f(i32::MIN, i32::MAX), -i32::MAX);
    assert_eq!(f(i32::MAX, i32::MAX), i32::MAX - 1);
    assert_eq!(f(1 << 30, 1 << 30), 1 << 29);
    assert_eq!(f(0, i32::MIN), 0);
    // Ties: +1.5 -> 2, but -1.5 -> -1 (gemmlowp's nudge rounds ties upward).
    assert_eq!(f(3, 1 << 30), 2);
    assert_eq!(f(-3, 1 << 30), -1);
    assert_eq!(f(3, -(1 << 30)), -1);
    // -2.5 -> -2, +2.5 -> 3.
    assert_eq!(f(-5, 1 << 30), -2);
    assert_eq!(f(5, 1 << 30), 3);
    // Non-ties round to nearest: 1/4 -> 0, -3/4 -> -1.
    assert_eq!(f(1, 1 << 30), 1); // 0.5 -> 1
    assert_eq!(f(1, 1 << 29), 0); // 0.25 -> 0
    assert_eq!(f(-3, 1 << 29), -1); // -0.75 -> -1
}

#[test]
fn rdbpot_hand_values() {
    let f = rounding_divide_by_pot;
    assert_eq!(f(5, 1), 3); // 2.5 -> 3
    assert_eq!(f(-5, 1), -3); // -2.5 -> -3 (ties away from zero)
    assert_eq!(f(-4, 1), -2);
    assert_eq!(f(7, 2), 2); // 1.75
    assert_eq!(f(-6, 2), -2); // -1.5 -> -2
    assert_eq!(f(-5, 2), -1); // -1.25 -> -1
    assert_eq!(f(6, 2), 2); // 1.5 -> 2
    assert_eq!(f(12345, 0), 12345);
    assert_eq!(f(i32::MIN, 31), -1);
    assert_eq!(f(i32::MAX, 31), 1);
    assert_eq!(f(1 << 30, 31), 1); // 0.5 -> 1
    assert_eq!(f(-(1 << 30), 31), -1); // -0.5 -> -1
    assert_eq!(f((1 << 30) - 1, 31), 0);
    assert_eq!(f(i32::MIN, 1), -(1 << 30));
    // Out-of-range exponents are clamped, not a panic.
    assert_eq!(f(100, -3), 100);
    assert_eq!(f(i32::MIN, 40), -1);
}

#[test]
fn mbqm_hand_values() {
    let f = multiply_by_quantized_multiplier;
    assert_eq!(f(100, 1 << 30, 0), 50);
    assert_eq!(f(100, 1 << 30, 1), 100);
    assert_eq!(f(100, 1 << 30, 3), 400);
    assert_eq!(f(100, 1 << 30, -3), 6); // 6.25
                                        // Double rounding: 0.75 -> SRDHM 2 -> 1.
    assert_eq!(f(3, 1 << 30, -1), 1);
    assert_eq!(f(-3, 1 << 30, -1), -1);
    // Left shift overflow wraps like the C code on two's complement.
    assert_eq!(f(1 << 30, 1 << 30, 2), 0);
    // Huge shifts are clamped, never a panic.
    let _ = f(i32::MAX, i32::MAX, 100);
    let _ = f(i32::MIN, i32::MAX, -100);
    let _ = f(i32::MIN, i32::MIN, i32::MIN);
    let _ = f(i32::MIN, i32::MIN, i32::MAX);
}

#[test]
fn quantize_multiplier_hand_values() {
    assert_eq!(quantize_multiplier(0.5), (1 << 30, 0));
    assert_eq!(quantize_multiplier(0.25), (1 << 30, -1));
    assert_eq!(quantize_multiplier(1.0), (1 << 30, 1));
    assert_eq!(quantize_multiplier(0.75), (3 << 29, 0));
    assert_eq!(quantize_multiplier(3.0), (3 << 29, 2));
    assert_eq!(quantize_multiplier(0.0), (0, 0));
    assert_eq!(quantize_multiplier(2f64.powi(-40)), (0, 0));
    assert_eq!(quantize_multiplier(2f64.powi(-32)), (1 << 30, -31));
    assert_eq!(quantize_multiplier(2f64.powi(-33)), (0, 0));
    // Just below one: q * 2^31 rounds up to 2^31 and is folded into the shift.
    assert_eq!(quantize_multiplier(1.0 - 2f64.powi(-40)), (1 << 30, 1));
    assert_eq!(quantize_multiplier(0.5 - 2f64.powi(-40)), (1 << 30, 0));
    // ... but not when the rounding stays below 2^31.
    assert_eq!(quantize_multiplier(1.0 - 2f64.powi(-31)), (i32::MAX, 0));
    assert_eq!(quantize_multiplier(1.0 - 2f64.powi(-30)), (i32::MAX - 1, 0));
    // Subnormal and non-finite inputs do not panic.
    assert_eq!(quantize_multiplier(f64::MIN_POSITIVE / 4.0), (0, 0));
    assert_eq!(quantize_multiplier(f64::NAN), (0, 0));
    assert_eq!(quantize_multiplier(f64::INFINITY), (0, 0));
}

#[test]
fn mbqm_matches_real_product() {
    let mut rng = Rng::new(7);
    let mut max_err = 0f64;
    for _ in 0..200_000 {
        let r = rng.log_uniform(1e-7, 200.0);
        let (m, s) = quantize_multiplier(r);
        assert!((1 << 30..=i32::MAX).contains(&m), "r={r} m={m}");
        let bits = rng.range(1, 30) as u32;
        let mut x = rng.range(-(1i64 << bits), 1i64 << bits) as i32;
        // Keep the exact product and the pre-shift inside i32 (as kernels do).
        let limit = (1i64 << 30) as f64;
        if (x as f64 * r).abs() > limit || (x as i64).abs() << s.max(0) > limit as i64 {
            x = (x as f64 / (x as f64 * r).abs().max(1.0) * 1000.0) as i32;
        }
        let got = multiply_by_quantized_multiplier(x, m, s) as f64;
        let want = (x as f64 * r).round();
        let err = (got - want).abs();
        assert!(err <= 1.0, "x={x} r={r} m={m} s={s} got={got} want={want}");
        max_err = max_err.max(err);
    }
    assert!(max_err <= 1.0);
}

#[test]
fn activation_clamps() {
    let c = |min, max| Clamp { min, max };
    assert_eq!(activation_clamp(Activation::None, 0.1, -10), Clamp::NONE);
    assert_eq!(activation_clamp(Activation::Relu, 0.1, -10), c(-10, 127));
    assert_eq!(activation_clamp(Activation::Relu6, 0.1, -10), c(-10, 50));
    assert_eq!(activation_clamp(Activation::Relu6, 0.05, -128), c(-128, -8));
    assert_eq!(activation_clamp(Activation::Relu6, 0.01, 0), c(0, 127));
    assert_eq!(activation_clamp(Activation::Relu, 0.02, 5), c(5, 127));
}

#[test]
fn derived_params() {
    let p = add_params(0.5, 3, 0.25, -7, 1.0, 2, Clamp::NONE);
    assert_eq!(p.left_shift, 20);
    assert_eq!((p.input1_multiplier, p.input1_shift), (1 << 30, 0));
    assert_eq!((p.input2_multiplier, p.input2_shift), (1 << 30, -1));
    assert_eq!((p.output_multiplier, p.output_shift), (1 << 30, -19));
    assert_eq!(
        (
            p.input1_zero_point,
            p.input2_zero_point,
            p.output_zero_point
        ),
        (3, -7, 2)
    );

    let s = softmax_params(0.0625, 1.0);
    assert_eq!((s.input_multiplier, s.input_left_shift), (1 << 30, 23));
    assert_eq!(s.diff_min, -248);
    // Typical: input scale 0.1 -> multiplier of 0.1 * 2^26.
    let s = softmax_params(0.1, 1.0);
    let real = s.input_multiplier as f64 * 2f64.powi(s.input_left_shift - 31);
    assert!((real / (0.1f32 as f64 * 2f64.powi(26)) - 1.0).abs() < 1e-9);
    assert_eq!(
        s.diff_min,
        -((31.0 * 2f64.powi(26) / 2f64.powi(s.input_left_shift)).floor() as i32)
    );

    let m = mean_params(0.5, 1, 0.25, -1, Clamp::NONE);
    assert_eq!((m.multiplier, m.shift), (1 << 30, 2));
    assert_eq!((m.input_zero_point, m.output_zero_point), (1, -1));
}

/// The shift form of SRDHM equals gemmlowp's nudge-and-truncating-division form.
#[test]
fn srdhm_equals_gemmlowp_division_form() {
    let gemmlowp = |a: i32, b: i32| -> i32 {
        if a == i32::MIN && b == i32::MIN {
            return i32::MAX;
        }
        let ab = a as i64 * b as i64;
        let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
        ((ab + nudge) / (1i64 << 31)) as i32
    };
    let edges = [
        i32::MIN,
        i32::MIN + 1,
        -(1 << 30) - 1,
        -(1 << 30),
        -3,
        -1,
        0,
        1,
        3,
        1 << 30,
        (1 << 30) + 1,
        i32::MAX - 1,
        i32::MAX,
    ];
    for &a in &edges {
        for &b in &edges {
            assert_eq!(
                saturating_rounding_doubling_high_mul(a, b),
                gemmlowp(a, b),
                "{a} {b}"
            );
        }
    }
    let mut rng = Rng::new(77);
    for _ in 0..200_000 {
        let a = rng.next_u64() as i32 >> rng.range(0, 31);
        let b = rng.next_u64() as i32;
        assert_eq!(
            saturating_rounding_doubling_high_mul(a, b),
            gemmlowp(a, b),
            "{a} {b}"
        );
    }
}
