//! max_pool2d, avg_pool2d and global_avg_pool (MEAN).
#![cfg(feature = "std")]

mod common;

use common::*;
use edgekd_kernels::quant::mean_params;
use edgekd_kernels::*;

fn pp(fh: usize, fw: usize, s: usize, pt: usize, pl: usize, clamp: Clamp) -> PoolParams {
    PoolParams {
        filter_h: fh,
        filter_w: fw,
        stride_h: s,
        stride_w: s,
        pad_top: pt,
        pad_left: pl,
        clamp,
    }
}

#[test]
fn pool_hand() {
    let input = [1i8, 5, -3, 7, 2, 8];
    let (is, os) = (Shape::new(1, 2, 3, 1), Shape::new(1, 1, 2, 1));
    let mut out = [0i8; 2];
    max_pool2d(&pp(2, 2, 1, 0, 0, Clamp::NONE), is, &input, os, &mut out).unwrap();
    assert_eq!(out, [7, 8]);
    max_pool2d(
        &pp(2, 2, 1, 0, 0, Clamp { min: -128, max: 7 }),
        is,
        &input,
        os,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [7, 7]);
    avg_pool2d(&pp(2, 2, 1, 0, 0, Clamp::NONE), is, &input, os, &mut out).unwrap();
    assert_eq!(out, [4, 3]); // 15/4 = 3.75 -> 4, 12/4 = 3

    // Negative ties round away from zero; padded cells are not counted.
    let is = Shape::new(1, 1, 3, 1);
    let mut out = [0i8; 3];
    avg_pool2d(
        &pp(1, 2, 1, 0, 0, Clamp::NONE),
        is,
        &[-1, -2, -4],
        is,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [-2, -3, -4]);
    avg_pool2d(
        &pp(1, 2, 1, 0, 0, Clamp::NONE),
        is,
        &[1, 2, 4],
        is,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [2, 3, 4]);
    // Max pooling with only negative values and padding: padding is not a zero.
    let mut out = [0i8; 2];
    max_pool2d(
        &pp(1, 3, 2, 0, 1, Clamp::NONE),
        is,
        &[-100, -50, -128],
        Shape::new(1, 1, 2, 1),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [-50, -50]);
    // ReLU clamp on avg.
    avg_pool2d(
        &pp(1, 3, 2, 0, 1, Clamp { min: -60, max: 127 }),
        is,
        &[-100, -50, -128],
        Shape::new(1, 1, 2, 1),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [-60, -60]); // -75 -> -60, -89 -> -60

    // Two channels, saturating values, 2x2 stride 2.
    let input = [127i8, -128, 127, -128, 127, -128, 126, -127];
    let mut out = [0i8; 2];
    avg_pool2d(
        &pp(2, 2, 2, 0, 0, Clamp::NONE),
        Shape::new(1, 2, 2, 2),
        &input,
        Shape::new(1, 1, 1, 2),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [127, -128]); // 126.75 -> 127, -127.75 -> -128
}

#[test]
fn pool_random_vs_references() {
    let mut rng = Rng::new(21);
    for case in 0..400 {
        let n = rng.usize(1, 2);
        let c = rng.usize(1, 40);
        let fh = rng.usize(1, 3);
        let fw = rng.usize(1, 4);
        let s = rng.usize(1, 3);
        let same = rng.bool();
        let h = rng.usize(fh, 7);
        let w = rng.usize(fw, 9);
        let (oh, pt) = out_and_pad(h, fh, s, 1, same);
        let (ow, pl) = out_and_pad(w, fw, s, 1, same);
        let clamp = if rng.bool() {
            Clamp::NONE
        } else {
            Clamp { min: -30, max: 100 }
        };
        let p = pp(fh, fw, s, pt, pl, clamp);
        let (is, os) = (Shape::new(n, h, w, c), Shape::new(n, oh, ow, c));
        let input = rng.i8s(is.elements().unwrap(), -128, 127);
        let mut want_max = Vec::new();
        let mut want_avg = Vec::new();
        for b in 0..n {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ch in 0..c {
                        let mut vals = Vec::new();
                        for ky in 0..fh {
                            for kx in 0..fw {
                                let iy = (oy * s + ky) as isize - pt as isize;
                                let ix = (ox * s + kx) as isize - pl as isize;
                                if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                    vals.push(
                                        input[((b * h + iy as usize) * w + ix as usize) * c + ch]
                                            as f64,
                                    );
                                }
                            }
                        }
                        assert!(!vals.is_empty());
                        let mx = vals.iter().cloned().fold(f64::MIN, f64::max);
                        want_max.push(quantize(mx, 1.0, 0, clamp));
                        // Same quantization in and out: the mean, rounded half away.
                        want_avg.push(quantize(
                            vals.iter().sum::<f64>() / vals.len() as f64,
                            1.0,
                            0,
                            clamp,
                        ));
                    }
                }
            }
        }
        let mut out = vec![0i8; os.elements().unwrap()];
        max_pool2d(&p, is, &input, os, &mut out).unwrap();
        assert_close(&out, &want_max, 0, &format!("max case {case} {p:?} {is:?}"));
        avg_pool2d(&p, is, &input, os, &mut out).unwrap();
        assert_close(&out, &want_avg, 0, &format!("avg case {case} {p:?} {is:?}"));
    }
}

#[test]
fn mean_hand() {
    // Channel 0: sum(x + 1) = 10, /4 = 2.5 -> 3, + 3 = 6.
    // Channel 1: sum = -18, /4 = -4.5 -> -5, + 3 = -2.
    let input = [0i8, -5, 1, -5, 2, -6, 3, -6];
    let p = MeanParams {
        input_zero_point: -1,
        output_zero_point: 3,
        multiplier: 1 << 30,
        shift: 1,
        clamp: Clamp::NONE,
    };
    let mut out = [0i8; 2];
    global_avg_pool(&p, Shape::new(1, 2, 2, 2), &input, &mut out).unwrap();
    assert_eq!(out, [6, -2]);
    // Rescale by 4 (in 1.0, out 0.25) saturates; ReLU-style clamp.
    let p = mean_params(1.0, -1, 0.25, 3, Clamp { min: 3, max: 127 });
    global_avg_pool(&p, Shape::new(1, 2, 2, 2), &input, &mut out).unwrap();
    assert_eq!(out, [13, 3]); // 2.5 * 4 = 10 + 3 = 13; -18 -> 3 (clamped)
    let input = [127i8, -128, 127, -128];
    let p = mean_params(1.0, 0, 0.5, 0, Clamp::NONE);
    global_avg_pool(&p, Shape::new(1, 1, 2, 2), &input, &mut out).unwrap();
    assert_eq!(out, [127, -128]);
}

#[test]
fn mean_random_vs_f64() {
    let mut rng = Rng::new(31);
    let mut max_err = 0;
    for case in 0..300 {
        let n = rng.usize(1, 3);
        let h = rng.usize(1, 6);
        let w = rng.usize(1, 30);
        let c = rng.usize(1, 40);
        let is = Shape::new(n, h, w, c);
        let in_scale = rng.log_uniform(0.01, 0.2) as f32;
        let in_zp = rng.range(-128, 127) as i32;
        let out_scale = (in_scale as f64 * rng.log_uniform(0.3, 3.0)) as f32;
        let out_zp = rng.range(-40, 40) as i32;
        let clamp = if rng.bool() {
            Clamp::NONE
        } else {
            Clamp { min: -20, max: 110 }
        };
        let input = rng.i8s(is.elements().unwrap(), -128, 127);
        let mut want = Vec::new();
        for b in 0..n {
            for ch in 0..c {
                let mut s = 0f64;
                for i in 0..h * w {
                    s += in_scale as f64 * (input[(b * h * w + i) * c + ch] as i32 - in_zp) as f64;
                }
                want.push(quantize(
                    s / (h * w) as f64,
                    out_scale as f64,
                    out_zp,
                    clamp,
                ));
            }
        }
        let p = mean_params(in_scale, in_zp, out_scale, out_zp, clamp);
        let mut out = vec![0i8; n * c];
        global_avg_pool(&p, is, &input, &mut out).unwrap();
        max_err = max_err.max(assert_close(&out, &want, 1, &format!("case {case} {is:?}")));
    }
    eprintln!("global_avg_pool: max |int8 - f64 reference| = {max_err} LSB");
}
