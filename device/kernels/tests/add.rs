//! Elementwise int8 ADD.
#![cfg(feature = "std")]

mod common;

use common::*;
use edgekd_kernels::quant::add_params;
use edgekd_kernels::*;

#[test]
fn add_hand() {
    let p = add_params(0.5, 0, 0.5, 0, 1.0, 0, Clamp::NONE);
    let mut out = [0i8; 4];
    add(&p, &[10, 127, -128, -3], &[20, 127, -128, 0], &mut out).unwrap();
    // 5 + 10 = 15; 127 saturates; -128 saturates; -1.5 -> -2 (away from zero).
    assert_eq!(out, [15, 127, -128, -2]);

    // Different scales and zero points: in1 0.1 zp 5, in2 0.2 zp -3, out 0.25 zp -10.
    let p = add_params(0.1, 5, 0.2, -3, 0.25, -10, Clamp::NONE);
    // 0.1*(25-5) + 0.2*(7+3) = 2 + 2 = 4 -> 16 - 10 = 6.
    add(&p, &[25, 25, 25, 25], &[7, 7, 7, 7], &mut out).unwrap();
    assert_eq!(out, [6; 4]);

    // ReLU6 clamp: [zp, zp + 6/0.25] = [-10, 14].
    let p = add_params(0.1, 5, 0.2, -3, 0.25, -10, Clamp { min: -10, max: 14 });
    // 0.1*100 + 0.2*10 = 12 -> 48 - 10 = 38 -> 14;  0.1*(-100) + 0 = -10 -> -50 -> -10.
    add(&p, &[105, -95, 5, 5], &[7, -3, -3, 7], &mut out).unwrap();
    assert_eq!(out, [14, -10, -10, -2]);
}

#[test]
fn add_random_vs_f64() {
    let mut rng = Rng::new(41);
    let mut max_err = 0;
    for case in 0..300 {
        let len = rng.usize(1, 64);
        let s1 = rng.log_uniform(0.005, 0.5) as f32;
        let s2 = (s1 as f64 * rng.log_uniform(0.1, 10.0)) as f32;
        let so = ((s1.max(s2)) as f64 * rng.log_uniform(0.5, 3.0)) as f32;
        let (z1, z2, zo) = (
            rng.range(-128, 127) as i32,
            rng.range(-128, 127) as i32,
            rng.range(-60, 60) as i32,
        );
        let clamp = if rng.bool() {
            Clamp::NONE
        } else {
            Clamp {
                min: zo as i8,
                max: 127,
            }
        };
        let a = rng.i8s(len, -128, 127);
        let b = rng.i8s(len, -128, 127);
        let want: Vec<i32> = a
            .iter()
            .zip(&b)
            .map(|(&x, &y)| {
                let r = s1 as f64 * (x as i32 - z1) as f64 + s2 as f64 * (y as i32 - z2) as f64;
                quantize(r, so as f64, zo, clamp)
            })
            .collect();
        let p = add_params(s1, z1, s2, z2, so, zo, clamp);
        let mut out = vec![0i8; len];
        add(&p, &a, &b, &mut out).unwrap();
        max_err = max_err.max(assert_close(&out, &want, 1, &format!("case {case}")));
    }
    eprintln!("add: max |int8 - f64 reference| = {max_err} LSB");
}

/// The prepared table holds, for each input and each int8 value in `x as u8` order, the
/// input's rescaled value as TFLite's reference computes it, as little-endian words;
/// parameters outside the exact 32-bit rescaling get none.
#[test]
fn add_tables_hold_the_reference_rescaling() {
    use edgekd_kernels::quant::multiply_by_quantized_multiplier;
    let p = add_params(0.1, 5, 0.2, -3, 0.25, -10, Clamp::NONE);
    let table: Vec<i16> = add_tables(&p).expect("TFLite's parameters").collect();
    assert_eq!(table.len(), ADD_TABLE_LEN);
    let inputs = [
        (p.input1_zero_point, p.input1_multiplier, p.input1_shift),
        (p.input2_zero_point, p.input2_multiplier, p.input2_shift),
    ];
    for (input, (zp, m, s)) in inputs.into_iter().enumerate() {
        for i in 0..256 {
            let x = i32::from(i as u8 as i8);
            let want = multiply_by_quantized_multiplier((x - zp) << p.left_shift, m, s);
            let at = 2 * (256 * input + i);
            let got = i32::from(table[at] as u16) | i32::from(table[at + 1]) << 16;
            assert_eq!(got, want, "input {input}, x {x}");
        }
    }
    // A left shift of 0 is outside the 32-bit rescaling's range: no table (the kernel
    // then rescales through the general path).
    let odd = AddParams { left_shift: 0, ..p };
    assert!(add_tables(&odd).is_none());
    // Whatever the table, the results are the kernel's: `add_in` with it equals `add`.
    let (a, b) = ([25i8, -128, 127, 0], [7i8, 127, -128, -3]);
    let (mut with, mut without) = ([0i8; 4], [0i8; 4]);
    add(&p, &a, &b, &mut without).unwrap();
    add_in(&p, Some(&table), &a, &b, &mut with).unwrap();
    assert_eq!(with, without);
}
