//! fully_connected: hand-worked cases, bit-exact naive reference, f64 reference.
#![cfg(feature = "std")]

mod common;

use common::*;
use edgekd_kernels::quant::multiply_by_quantized_multiplier;
use edgekd_kernels::*;

#[test]
fn fc_hand() {
    let p = FcParams {
        input_zero_point: 0,
        output_zero_point: 0,
        clamp: Clamp::NONE,
    };
    let input = [1i8, 2, 3, 100, 100, 100, -100, -100, -100];
    let filter = [1i8, 1, 1, 1, -1, 0];
    let bias = [10, -1];
    let mut out = [0i8; 6];
    fully_connected(
        &p,
        Requant {
            multiplier: &[1 << 30],
            shift: &[1],
        },
        &input,
        3,
        &filter,
        Some(&bias),
        2,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [16, -2, 127, -1, -128, -1]);

    // Per-channel multipliers (0.5 and 0.25), zero points, ReLU clamp.
    let p = FcParams {
        input_zero_point: -3,
        output_zero_point: -10,
        clamp: Clamp { min: -10, max: 127 },
    };
    // row 0: (4 + 5 + 6) = 15 + 10 = 25 * 0.5 = 12.5 -> 13 - 10 = 3
    // row 1: (4 - 5) = -1 - 1 = -2 * 0.25 = -0.5 -> -1 (away from zero) - 10 = -11 -> -10
    fully_connected(
        &p,
        Requant {
            multiplier: &[1 << 30, 1 << 30],
            shift: &[0, -1],
        },
        &input[..3],
        3,
        &filter,
        Some(&bias),
        2,
        &mut out[..2],
    )
    .unwrap();
    assert_eq!(out[..2], [3, -10]);
}

#[test]
fn fc_random_vs_references() {
    let mut rng = Rng::new(11);
    let mut max_err = 0;
    for case in 0..300 {
        let batch = rng.usize(1, 3);
        let inf = rng.usize(1, 70);
        let outf = rng.usize(1, 12);
        let in_zp = rng.range(-128, 127) as i32;
        let in_scale = rng.log_uniform(0.005, 0.2) as f32;
        let per_channel = rng.bool();
        let base = rng.log_uniform(0.001, 0.05) as f32;
        let w_scales: Vec<f32> = (0..outf)
            .map(|_| {
                if per_channel {
                    rng.log_uniform(0.001, 0.05) as f32
                } else {
                    base
                }
            })
            .collect();
        let input = rng.i8s(batch * inf, -128, 127);
        let filter = rng.i8s(outf * inf, -127, 127);
        let bias: Option<Vec<i32>> = rng
            .bool()
            .then(|| (0..outf).map(|_| rng.range(-5000, 5000) as i32).collect());
        let clamp = if rng.bool() {
            Clamp::NONE
        } else {
            Clamp { min: -40, max: 90 }
        };
        let mut reals = Vec::new();
        let mut accs = Vec::new();
        for b in 0..batch {
            for o in 0..outf {
                let mut acc = 0i32;
                let mut r = 0f64;
                for i in 0..inf {
                    let x = input[b * inf + i] as i32 - in_zp;
                    let w = filter[o * inf + i] as i32;
                    acc += x * w;
                    r += in_scale as f64 * x as f64 * w_scales[o] as f64 * w as f64;
                }
                if let Some(bias) = &bias {
                    acc += bias[o];
                    r += bias[o] as f64 * in_scale as f64 * w_scales[o] as f64;
                }
                reals.push(r);
                accs.push(acc);
            }
        }
        let (out_scale, out_zp) = pick_output_quant(&mut rng, &reals);
        let (mut mult, mut shift) = channel_requant(in_scale, &w_scales, out_scale);
        if !per_channel {
            mult.truncate(1);
            shift.truncate(1);
        }
        let exact: Vec<i32> = accs
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let k = if per_channel { i % outf } else { 0 };
                (multiply_by_quantized_multiplier(a, mult[k], shift[k]) + out_zp)
                    .max(clamp.min as i32)
                    .min(clamp.max as i32)
            })
            .collect();
        let want: Vec<i32> = reals
            .iter()
            .map(|&r| quantize(r, out_scale as f64, out_zp, clamp))
            .collect();
        let mut out = vec![0i8; batch * outf];
        let p = FcParams {
            input_zero_point: in_zp,
            output_zero_point: out_zp,
            clamp,
        };
        fully_connected(
            &p,
            Requant {
                multiplier: &mult,
                shift: &shift,
            },
            &input,
            inf,
            &filter,
            bias.as_deref(),
            outf,
            &mut out,
        )
        .unwrap();
        let what = format!("case {case}");
        assert_close(&out, &exact, 0, &what);
        max_err = max_err.max(assert_close(&out, &want, 1, &what));
    }
    eprintln!("fully_connected: max |int8 - f64 reference| = {max_err} LSB");
}

/// A prepared table's storage, aligned as `FcLayer::with_wide_weights` needs.
#[repr(C, align(4))]
struct Wide([i16; 80]);

const WIDE_P: FcParams = FcParams {
    input_zero_point: 3,
    output_zero_point: -2,
    clamp: Clamp::NONE,
};

const WIDE_RQ: Requant<'static> = Requant {
    multiplier: &[1 << 30],
    shift: &[-3],
};

#[test]
fn wide_weights_layout_is_bias_packed_smlad_order_then_requantization() {
    // Two rows of five: one full group (order 0, 2, 1, 3), one partial group (natural
    // order, zero padded), and rows 2 and 3 of the block all zeros. Biases and the
    // single-step requantization (multiplier 2^30, shift -3: r = 3, so the nudge is
    // 2^30 in the low word and 2^(r-2) + zp * 2^(r-1) = 2 - 8 in the high word, right
    // shift r - 1 = 2) as little-endian words, zeros for the padding rows.
    let filter: Vec<i8> = (1..=10).collect();
    let bias = [100_000, -2];
    let wide: Vec<i16> = fc_wide_weights(&filter, Some(&bias), WIDE_RQ, -2, 5, 2).collect();
    assert_eq!(fc_wide_len(5, 2), 72);
    #[rustfmt::skip]
    let want: [i16; 72] = [
        // 100_000 = 0x1_86A0; -2.
        0x86A0_u16 as i16, 1,   -2, -1,   0, 0,   0, 0,
        1, 3, 2, 4,   6, 8, 7, 9,    0, 0, 0, 0,  0, 0, 0, 0,
        5, 0, 0, 0,   10, 0, 0, 0,   0, 0, 0, 0,  0, 0, 0, 0,
        0, 0x4000,   0, 0x4000,   -6, -1,   2, 0,
        0, 0x4000,   0, 0x4000,   -6, -1,   2, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert_eq!(wide, want);
}

#[test]
fn wide_weights_are_checked_against_the_layer() {
    let filter: Vec<i8> = (0..10).map(|i| (i * 37 % 255 - 127) as i8).collect();
    let bias = [1000, -700];
    let layer = FcLayer::new(&WIDE_P, WIDE_RQ, 5, &filter, Some(&bias), 2, 5, 2).unwrap();
    assert!(layer.reads_wide_weights());
    let mut buf = Wide([0; 80]);
    for (d, v) in buf
        .0
        .iter_mut()
        .zip(fc_wide_weights(&filter, Some(&bias), WIDE_RQ, -2, 5, 2))
    {
        *d = v;
    }
    // The right table is taken, and the layer computes what it computed without it.
    let (x, mut a, mut b) = ([5i8, -7, 9, 100, -128], [0i8; 2], [0i8; 2]);
    let mut scratch = Scratch::new();
    layer.run(&mut scratch, &x, &mut a).unwrap();
    let wide = layer.with_wide_weights(&buf.0[..72]).unwrap();
    wide.run(&mut scratch, &x, &mut b).unwrap();
    assert_eq!(a, b);
    // Wrong length, misaligned, or one entry off (bias, filter, requantization):
    // refused.
    let refused = |w: &[i16]| layer.with_wide_weights(w).map(|_| ()).unwrap_err();
    assert_eq!(refused(&buf.0[..71]), KernelError::ShapeMismatch);
    buf.0.copy_within(0..72, 1);
    assert_eq!(refused(&buf.0[1..73]), KernelError::ShapeMismatch);
    buf.0.copy_within(1..73, 0);
    assert!(layer.with_wide_weights(&buf.0[..72]).is_ok());
    for at in [0, 17, 45] {
        buf.0[at] += 1;
        assert_eq!(
            refused(&buf.0[..72]),
            KernelError::ShapeMismatch,
            "entry {at}"
        );
        buf.0[at] -= 1;
    }
    // A table written for another bias or output zero point is stale.
    let other = |bias: &[i32], zp| -> Vec<i16> {
        fc_wide_weights(&filter, Some(bias), WIDE_RQ, zp, 5, 2).collect()
    };
    for table in [other(&[1000, -701], -2), other(&bias, -1)] {
        buf.0[..72].copy_from_slice(&table);
        assert_eq!(refused(&buf.0[..72]), KernelError::ShapeMismatch);
    }
}

#[test]
fn layers_off_the_fast_path_take_no_wide_weights() {
    // Beyond the fast kernel's column limit.
    let big = vec![1i8; 300];
    let layer = FcLayer::new(&WIDE_P, WIDE_RQ, 300, &big, None, 1, 300, 1).unwrap();
    assert!(!layer.reads_wide_weights());
    let table: Vec<i16> = fc_wide_weights(&big, None, WIDE_RQ, -2, 300, 1).collect();
    assert_eq!(
        layer.with_wide_weights(&table).map(|_| ()).unwrap_err(),
        KernelError::UnsupportedParams
    );
    // A channel outside the single-step requantization (shift 0 multiplies).
    let filter = [1i8; 8];
    let rq = Requant {
        multiplier: &[1 << 30, 1 << 30],
        shift: &[-3, 0],
    };
    let layer = FcLayer::new(&WIDE_P, rq, 4, &filter, None, 2, 4, 2).unwrap();
    assert!(!layer.reads_wide_weights());
    let mut buf = Wide([0; 80]);
    let len = fc_wide_len(4, 2);
    for (d, v) in buf
        .0
        .iter_mut()
        .zip(fc_wide_weights(&filter, None, rq, -2, 4, 2))
    {
        *d = v;
    }
    assert_eq!(
        layer
            .with_wide_weights(&buf.0[..len])
            .map(|_| ())
            .unwrap_err(),
        KernelError::UnsupportedParams
    );
}
