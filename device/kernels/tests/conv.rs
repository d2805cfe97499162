//! conv2d and depthwise_conv2d: hand-worked cases, a bit-exact naive integer
//! reference (a direct transcription of the TFLite reference loops) and an f64
//! reference from dequantized values.
#![cfg(feature = "std")]

mod common;

use common::*;
use edgekd_kernels::quant::multiply_by_quantized_multiplier;
use edgekd_kernels::*;

fn params(stride: usize, dil: usize, pad: usize, izp: i32, ozp: i32, clamp: Clamp) -> ConvParams {
    ConvParams {
        stride_h: stride,
        stride_w: stride,
        dilation_h: dil,
        dilation_w: dil,
        pad_top: pad,
        pad_left: pad,
        depth_multiplier: 1,
        input_zero_point: izp,
        output_zero_point: ozp,
        clamp,
    }
}

const ONE: (i32, i32) = (1 << 30, 1); // multiplier 1.0

#[test]
fn conv_hand_1x1_per_channel_and_saturation() {
    // Two input channels, three output channels, one pixel.
    let p = params(1, 1, 0, 2, -5, Clamp::NONE);
    let input = [10i8, 20];
    // oc0: (8*1 + 18*-2) = -28 (+100 bias) = 72, * 0.5 = 36, -5 -> 31
    // oc1: 8*127 + 18*127 = 3302, * 1.0 -> 3297 -> saturates at 127
    // oc2: -(8 + 18) * 127 = -3302 -> -128
    let filter = [1i8, -2, 127, 127, -127, -127];
    let bias = [100, 0, 0];
    let mult = [1 << 30, 1 << 30, 1 << 30];
    let shift = [0, 1, 1];
    let mut out = [0i8; 3];
    conv2d(
        &p,
        Requant {
            multiplier: &mult,
            shift: &shift,
        },
        Shape::new(1, 1, 1, 2),
        &input,
        Shape::new(3, 1, 1, 2),
        &filter,
        Some(&bias),
        Shape::new(1, 1, 1, 3),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [31, 127, -128]);

    // ReLU (clamp min = output zero point) and ReLU6-style upper clamp.
    let p = params(1, 1, 0, 2, -5, Clamp { min: -5, max: 20 });
    let filter = [1i8, -2, 1, 0, -1, 0];
    let bias = [100, 0, 0];
    // oc0 -> 31 clamped to 20; oc1: 8 -> 8 - 5 = 3; oc2: -8 -> -13 -> -5.
    let shift = [0, 1, 1];
    conv2d(
        &p,
        Requant {
            multiplier: &mult,
            shift: &shift,
        },
        Shape::new(1, 1, 1, 2),
        &input,
        Shape::new(3, 1, 1, 2),
        &filter,
        Some(&bias),
        Shape::new(1, 1, 1, 3),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [20, 3, -5]);
}

#[test]
fn conv_hand_3x3_same_padding_and_stride() {
    let input: Vec<i8> = (1..=9).collect();
    let filter = [1i8; 9];
    let rq = Requant {
        multiplier: &[ONE.0],
        shift: &[ONE.1],
    };
    let mut out = [0i8; 9];
    conv2d(
        &params(1, 1, 1, 0, 0, Clamp::NONE),
        rq,
        Shape::new(1, 3, 3, 1),
        &input,
        Shape::new(1, 3, 3, 1),
        &filter,
        None,
        Shape::new(1, 3, 3, 1),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [12, 21, 16, 27, 45, 33, 24, 39, 28]);

    // Stride 2, SAME: out 2x2, pad 1.
    let mut out = [0i8; 4];
    conv2d(
        &params(2, 1, 1, 0, 0, Clamp::NONE),
        rq,
        Shape::new(1, 3, 3, 1),
        &input,
        Shape::new(1, 3, 3, 1),
        &filter,
        None,
        Shape::new(1, 2, 2, 1),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [12, 16, 24, 28]);

    // Padding reads the input zero point: with zp = 1 every in-image cell
    // contributes x - 1 and padding contributes nothing.
    let mut out = [0i8; 9];
    conv2d(
        &params(1, 1, 1, 1, 0, Clamp::NONE),
        rq,
        Shape::new(1, 3, 3, 1),
        &input,
        Shape::new(1, 3, 3, 1),
        &filter,
        None,
        Shape::new(1, 3, 3, 1),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [8, 15, 12, 21, 36, 27, 20, 33, 24]);
}

#[test]
fn conv_hand_dilation() {
    // 1-D signal, kernel 2 with dilation 2, VALID.
    let input = [1i8, 2, 3, 4, 5];
    let mut out = [0i8; 3];
    let p = ConvParams {
        stride_h: 1,
        stride_w: 1,
        dilation_h: 1,
        dilation_w: 2,
        pad_top: 0,
        pad_left: 0,
        depth_multiplier: 1,
        input_zero_point: 0,
        output_zero_point: 0,
        clamp: Clamp::NONE,
    };
    conv2d(
        &p,
        Requant {
            multiplier: &[ONE.0],
            shift: &[ONE.1],
        },
        Shape::new(1, 1, 5, 1),
        &input,
        Shape::new(1, 1, 2, 1),
        &[1, 1],
        None,
        Shape::new(1, 1, 3, 1),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [4, 6, 8]);
}

#[test]
fn depthwise_hand_multiplier_2() {
    let p = ConvParams {
        depth_multiplier: 2,
        ..params(1, 1, 0, 1, 0, Clamp::NONE)
    };
    // (3 - 1) = 2, (-4 - 1) = -5; filter [1, 2 | 3, -1].
    let input = [3i8, -4];
    let filter = [1i8, 2, 3, -1];
    let m = [1 << 30; 4];
    let s = [1; 4];
    let mut out = [0i8; 4];
    depthwise_conv2d(
        &p,
        Requant {
            multiplier: &m,
            shift: &s,
        },
        Shape::new(1, 1, 1, 2),
        &input,
        Shape::new(1, 1, 1, 4),
        &filter,
        Some(&[0, 0, 0, 1]),
        Shape::new(1, 1, 1, 4),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [2, 4, -15, 6]);
    let p = ConvParams {
        clamp: Clamp { min: 0, max: 4 },
        ..p
    };
    depthwise_conv2d(
        &p,
        Requant {
            multiplier: &m,
            shift: &s,
        },
        Shape::new(1, 1, 1, 2),
        &input,
        Shape::new(1, 1, 1, 4),
        &[100, 2, 3, -1],
        None,
        Shape::new(1, 1, 1, 4),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [4, 4, 0, 4]);
    // Saturation at both ends.
    depthwise_conv2d(
        &ConvParams {
            clamp: Clamp::NONE,
            ..p
        },
        Requant {
            multiplier: &m,
            shift: &s,
        },
        Shape::new(1, 1, 1, 2),
        &[127, -128],
        Shape::new(1, 1, 1, 4),
        &[127, -127, 127, -127],
        None,
        Shape::new(1, 1, 1, 4),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [127, -128, -128, 127]);
}

/// A random (depthwise) convolution problem.
struct Case {
    p: ConvParams,
    depthwise: bool,
    in_shape: Shape,
    f_shape: Shape,
    out_shape: Shape,
    input: Vec<i8>,
    filter: Vec<i8>,
    bias: Option<Vec<i32>>,
    in_scale: f32,
    w_scales: Vec<f32>, // one per output channel (all equal if per-tensor)
    per_channel: bool,
}

fn random_case(rng: &mut Rng, depthwise: bool) -> Case {
    let n = rng.usize(1, 2);
    let in_c = rng.usize(1, if depthwise { 40 } else { 5 });
    let dm = if depthwise { rng.usize(1, 3) } else { 1 };
    let out_c = if depthwise {
        in_c * dm
    } else {
        rng.usize(1, 6)
    };
    let kh = rng.usize(1, 3);
    let kw = rng.usize(1, 4);
    let (sh, sw) = (rng.usize(1, 2), rng.usize(1, 3));
    let (dh, dw) = (rng.usize(1, 2), rng.usize(1, 2));
    let same = rng.bool();
    let h = rng.usize((kh - 1) * dh + 1, 7);
    let w = rng.usize((kw - 1) * dw + 1, 9);
    let (oh, pt) = out_and_pad(h, kh, sh, dh, same);
    let (ow, pl) = out_and_pad(w, kw, sw, dw, same);
    let in_zp = rng.range(-128, 127) as i32;
    let per_channel = rng.bool();
    let in_scale = rng.log_uniform(0.005, 0.2) as f32;
    let base = rng.log_uniform(0.001, 0.05);
    let w_scales: Vec<f32> = (0..out_c)
        .map(|_| {
            if per_channel {
                rng.log_uniform(0.001, 0.05) as f32
            } else {
                base as f32
            }
        })
        .collect();
    let in_shape = Shape::new(n, h, w, in_c);
    let f_shape = if depthwise {
        Shape::new(1, kh, kw, out_c)
    } else {
        Shape::new(out_c, kh, kw, in_c)
    };
    let out_shape = Shape::new(n, oh, ow, out_c);
    let input = rng.i8s(in_shape.elements().unwrap(), -128, 127);
    let filter = rng.i8s(f_shape.elements().unwrap(), -127, 127);
    let bias = rng
        .bool()
        .then(|| (0..out_c).map(|_| rng.range(-3000, 3000) as i32).collect());
    let clamp = match rng.usize(0, 2) {
        0 => Clamp::NONE,
        1 => Clamp { min: -20, max: 127 },
        _ => Clamp { min: -50, max: 60 },
    };
    Case {
        p: ConvParams {
            stride_h: sh,
            stride_w: sw,
            dilation_h: dh,
            dilation_w: dw,
            pad_top: pt,
            pad_left: pl,
            depth_multiplier: dm,
            input_zero_point: in_zp,
            output_zero_point: 0, // chosen later
            clamp,
        },
        depthwise,
        in_shape,
        f_shape,
        out_shape,
        input,
        filter,
        bias,
        in_scale,
        w_scales,
        per_channel,
    }
}

/// Calls `f(b, oy, ox, oc, [(input value, filter value)])` for every output,
/// exactly as the TFLite reference loops visit taps.
fn for_each_output(c: &Case, mut f: impl FnMut(usize, &[(i32, i32)])) {
    let (is, fs, os, p) = (c.in_shape, c.f_shape, c.out_shape, c.p);
    let mut taps = Vec::new();
    let mut idx = 0;
    for b in 0..os.n {
        for oy in 0..os.h {
            for ox in 0..os.w {
                for oc in 0..os.c {
                    taps.clear();
                    for ky in 0..fs.h {
                        for kx in 0..fs.w {
                            let iy =
                                (oy * p.stride_h + ky * p.dilation_h) as isize - p.pad_top as isize;
                            let ix = (ox * p.stride_w + kx * p.dilation_w) as isize
                                - p.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= is.h as isize || ix >= is.w as isize {
                                continue;
                            }
                            let (iy, ix) = (iy as usize, ix as usize);
                            if c.depthwise {
                                let ic = oc / p.depth_multiplier;
                                let x = c.input[((b * is.h + iy) * is.w + ix) * is.c + ic];
                                let w = c.filter[(ky * fs.w + kx) * fs.c + oc];
                                taps.push((x as i32, w as i32));
                            } else {
                                for ic in 0..is.c {
                                    let x = c.input[((b * is.h + iy) * is.w + ix) * is.c + ic];
                                    let w = c.filter[((oc * fs.h + ky) * fs.w + kx) * fs.c + ic];
                                    taps.push((x as i32, w as i32));
                                }
                            }
                        }
                    }
                    f(idx, &taps);
                    idx += 1;
                }
            }
        }
    }
}

fn run_random(depthwise: bool, seed: u64, cases: usize) -> i32 {
    let mut rng = Rng::new(seed);
    let mut max_err = 0;
    let mut saw = [false; 4]; // stride 2, dilation 2, dm 2, padding
    for case_i in 0..cases {
        let mut c = random_case(&mut rng, depthwise);
        let out_c = c.out_shape.c;
        // f64 reference.
        let mut reals = vec![0f64; c.out_shape.elements().unwrap()];
        for_each_output(&c, |i, taps| {
            let oc = i % out_c;
            let ws = c.w_scales[oc] as f64;
            let is = c.in_scale as f64;
            let mut r: f64 = taps
                .iter()
                .map(|&(x, w)| is * (x - c.p.input_zero_point) as f64 * ws * w as f64)
                .sum();
            if let Some(b) = &c.bias {
                r += b[oc] as f64 * is * ws;
            }
            reals[i] = r;
        });
        let (out_scale, out_zp) = pick_output_quant(&mut rng, &reals);
        c.p.output_zero_point = out_zp;
        let (mut mult, mut shift) = channel_requant(c.in_scale, &c.w_scales, out_scale);
        if !c.per_channel {
            mult.truncate(1);
            shift.truncate(1);
        }
        // Naive integer reference: bit-exact target.
        let mut exact = vec![0i32; reals.len()];
        for_each_output(&c, |i, taps| {
            let oc = i % out_c;
            let mut acc: i32 = taps
                .iter()
                .map(|&(x, w)| (x - c.p.input_zero_point) * w)
                .sum();
            if let Some(b) = &c.bias {
                acc += b[oc];
            }
            let k = if c.per_channel { oc } else { 0 };
            let v = multiply_by_quantized_multiplier(acc, mult[k], shift[k]) + out_zp;
            exact[i] = v.max(c.p.clamp.min as i32).min(c.p.clamp.max as i32);
        });
        let want: Vec<i32> = reals
            .iter()
            .map(|&r| quantize(r, out_scale as f64, out_zp, c.p.clamp))
            .collect();
        let mut out = vec![0x55i8; reals.len()];
        let rq = Requant {
            multiplier: &mult,
            shift: &shift,
        };
        let f = if depthwise { depthwise_conv2d } else { conv2d };
        f(
            &c.p,
            rq,
            c.in_shape,
            &c.input,
            c.f_shape,
            &c.filter,
            c.bias.as_deref(),
            c.out_shape,
            &mut out,
        )
        .unwrap_or_else(|e| {
            panic!(
                "case {case_i}: {e:?} {:?} {:?} {:?}",
                c.in_shape, c.out_shape, c.p
            )
        });
        let what = format!("case {case_i} {:?} {:?} {:?}", c.in_shape, c.f_shape, c.p);
        assert_close(&out, &exact, 0, &what);
        max_err = max_err.max(assert_close(&out, &want, 1, &what));
        saw[0] |= c.p.stride_h == 2 || c.p.stride_w >= 2;
        saw[1] |= c.p.dilation_h == 2 || c.p.dilation_w == 2;
        saw[2] |= c.p.depth_multiplier == 2;
        saw[3] |= c.p.pad_top > 0 || c.p.pad_left > 0;
    }
    assert!(
        saw[0] && saw[1] && saw[3] && (saw[2] || !depthwise),
        "coverage {saw:?}"
    );
    max_err
}

#[test]
fn conv_random_vs_references() {
    let e = run_random(false, 1, 400);
    eprintln!("conv2d: max |int8 - f64 reference| = {e} LSB");
}

#[test]
fn depthwise_random_vs_references() {
    let e = run_random(true, 2, 400);
    eprintln!("depthwise_conv2d: max |int8 - f64 reference| = {e} LSB");
}

/// The layers `conv2d_needs_fallback` / `fully_connected_needs_fallback` name are
/// exactly those outside the fast paths: columns up to 256 and, for conv, dividing
/// shifts `-23..=-1` with non-negative multipliers.
#[test]
fn fallback_predicates_name_the_slow_layers() {
    use edgekd_kernels::{conv2d_needs_fallback, fully_connected_needs_fallback};
    fn rq<'a>(multiplier: &'a [i32], shift: &'a [i32]) -> Requant<'a> {
        Requant { multiplier, shift }
    }
    const M: i32 = 1 << 30;
    assert!(!conv2d_needs_fallback(256, rq(&[M], &[-1]), -128));
    assert!(conv2d_needs_fallback(257, rq(&[M], &[-1]), -128));
    assert!(!conv2d_needs_fallback(9, rq(&[M, M], &[-1, -23]), 127));
    for s in [0, 1, -24, -31] {
        assert!(
            conv2d_needs_fallback(9, rq(&[M, M], &[-3, s]), 0),
            "shift {s}"
        );
    }
    assert!(conv2d_needs_fallback(9, rq(&[M, -M], &[-3, -3]), 0));
    assert!(!fully_connected_needs_fallback(256));
    assert!(fully_connected_needs_fallback(257));
}

/// A prepared table's storage, aligned as `ConvLayer::with_wide_weights` needs.
#[repr(C, align(4))]
struct Wide([i16; 80]);

#[test]
fn conv_wide_weights_layout_is_channels_then_paired_filter() {
    // Three channels of five entries. First each channel's bias and single-step
    // requantization as little-endian words (multiplier 2^30, shift -1: r = 1, so the
    // nudge's low word is 2^30 + 2^31 and its high word the zero point 3, right shift
    // r - 1 = 0); then blocks of two channels: per group of four, each channel's
    // entries in the packed order (0, 2, 1, 3), the partial last group in natural
    // order, zeros past the last entry and for the fourth channel.
    let filter: Vec<i8> = [1..=5, 11..=15, 21..=25].into_iter().flatten().collect();
    let rq = Requant {
        multiplier: &[1 << 30],
        shift: &[-1],
    };
    let bias = [70_000, -1, 5];
    let wide: Vec<i16> = conv2d_wide_weights(&filter, Some(&bias), rq, 3, 5, 3).collect();
    assert_eq!(conv2d_wide_len(5, 3), 62);
    let rq_entries = [0, 0x4000, 0, 0xC000_u16 as i16, 3, 0, 0, 0];
    let mut want = Vec::new();
    // 70_000 = 0x1_1170.
    for b in [[0x1170, 1], [-1, -1], [5, 0]] {
        want.extend(b);
        want.extend(rq_entries);
    }
    #[rustfmt::skip]
    want.extend([
        1, 3, 2, 4,   11, 13, 12, 14,   5, 0, 0, 0,   15, 0, 0, 0,
        21, 23, 22, 24,   0, 0, 0, 0,   25, 0, 0, 0,   0, 0, 0, 0,
    ]);
    assert_eq!(wide, want);
}

/// A 1-D layer (one row, VALID): 4 channels, kernel 3, 2 input channels.
fn one_d_layer<'a>(p: &ConvParams, filter: &'a [i8], rq: Requant<'a>) -> ConvLayer<'a> {
    let (ins, fs, outs) = (
        Shape::new(1, 1, 10, 2),
        Shape::new(4, 1, 3, 2),
        Shape::new(1, 1, 8, 4),
    );
    ConvLayer::new(p, rq, ins, fs, filter, None, outs).unwrap()
}

#[test]
fn conv_wide_weights_are_checked_and_read_where_the_kernel_can() {
    let rq = Requant {
        multiplier: &[1 << 30],
        shift: &[-4],
    };
    let filter: Vec<i8> = (0..24).map(|i| (i * 37 % 255 - 127) as i8).collect();
    let p = params(1, 1, 0, 3, -2, Clamp::NONE);
    let layer = one_d_layer(&p, &filter, rq);
    assert!(layer.reads_wide_weights());
    let mut buf = Wide([0; 80]);
    for (d, v) in buf.0.iter_mut().zip(layer.wide_weights()) {
        *d = v;
    }
    assert_eq!(conv2d_wide_len(6, 4), 72);
    assert!(buf.0[..72]
        .iter()
        .copied()
        .eq(conv2d_wide_weights(&filter, None, rq, -2, 6, 4)));
    // The right table is taken, and the layer computes what it computed without it.
    let x: Vec<i8> = (0..20).map(|i| (i * 53 % 251 - 125) as i8).collect();
    let (mut a, mut b) = ([0i8; 32], [0i8; 32]);
    let mut scratch = Scratch::new();
    layer.run(&mut scratch, &x, &mut a).unwrap();
    let wide = layer.with_wide_weights(&buf.0[..72]).unwrap();
    wide.run(&mut scratch, &x, &mut b).unwrap();
    assert_eq!(a, b);
    // Wrong length, misaligned, one entry off (channel header or filter), or written
    // for another output zero point: refused.
    let refused = |w: &[i16]| layer.with_wide_weights(w).map(|_| ()).unwrap_err();
    assert_eq!(refused(&buf.0[..71]), KernelError::ShapeMismatch);
    buf.0.copy_within(0..72, 1);
    assert_eq!(refused(&buf.0[1..73]), KernelError::ShapeMismatch);
    buf.0.copy_within(1..73, 0);
    for at in [3, 49] {
        buf.0[at] += 1;
        assert_eq!(
            refused(&buf.0[..72]),
            KernelError::ShapeMismatch,
            "entry {at}"
        );
        buf.0[at] -= 1;
    }
    let other_zp: Vec<i16> = conv2d_wide_weights(&filter, None, rq, -1, 6, 4).collect();
    buf.0[..72].copy_from_slice(&other_zp);
    assert_eq!(refused(&buf.0[..72]), KernelError::ShapeMismatch);
    // Padded layers and odd channel counts read one too; a narrowed clamp, one output
    // channel or a requantization outside the single-step form do not.
    let padded = ConvParams { pad_left: 1, ..p };
    let (ins, fs) = (Shape::new(1, 1, 10, 2), Shape::new(4, 1, 3, 2));
    let layer = ConvLayer::new(&padded, rq, ins, fs, &filter, None, Shape::new(1, 1, 10, 4));
    assert!(layer.unwrap().reads_wide_weights());
    let (fs3, outs3) = (Shape::new(3, 1, 3, 2), Shape::new(1, 1, 8, 3));
    let layer = ConvLayer::new(&p, rq, ins, fs3, &filter[..18], None, outs3).unwrap();
    assert!(layer.reads_wide_weights());
    let narrowed = params(
        1,
        1,
        0,
        3,
        -2,
        Clamp {
            min: -100,
            max: 127,
        },
    );
    let layer = one_d_layer(&narrowed, &filter, rq);
    assert!(!layer.reads_wide_weights());
    let table: Vec<i16> = layer.wide_weights().collect();
    assert_eq!(
        layer.with_wide_weights(&table).map(|_| ()).unwrap_err(),
        KernelError::UnsupportedParams
    );
    let (fs1, outs1) = (Shape::new(1, 1, 3, 2), Shape::new(1, 1, 8, 1));
    let layer = ConvLayer::new(&p, rq, ins, fs1, &filter[..6], None, outs1).unwrap();
    assert!(!layer.reads_wide_weights());
    let left = Requant {
        multiplier: &[1 << 30],
        shift: &[1],
    };
    assert!(!one_d_layer(&p, &filter, left).reads_wide_weights());
    // Columns over 128 entries cannot take one.
    let big = vec![1i8; 2 * 130];
    let (ins, fs, outs) = (
        Shape::new(1, 1, 1, 130),
        Shape::new(2, 1, 1, 130),
        Shape::new(1, 1, 1, 2),
    );
    let layer = ConvLayer::new(&p, rq, ins, fs, &big, None, outs).unwrap();
    let table: Vec<i16> = layer.wide_weights().collect();
    assert_eq!(
        layer.with_wide_weights(&table).map(|_| ()).unwrap_err(),
        KernelError::UnsupportedParams
    );
}

#[test]
fn dense_path_is_for_layers_whose_windows_are_runs_of_the_input() {
    let rq = Requant {
        multiplier: &[1 << 30],
        shift: &[-4],
    };
    let filter: Vec<i8> = (0..72).map(|i| (i * 37 % 255 - 127) as i8).collect();
    let p = params(1, 1, 0, 3, -2, Clamp::NONE);
    // 1-D VALID with four channels (tiny_cnn's shape of layer): dense.
    assert!(one_d_layer(&p, &filter[..24], rq).runs_dense());
    let layer = |p: &ConvParams, ins: Shape, fs: Shape, outs: Shape| {
        let f = &filter[..fs.elements().unwrap()];
        ConvLayer::new(p, rq, ins, fs, f, None, outs).unwrap()
    };
    let (ins, fs) = (Shape::new(1, 1, 10, 2), Shape::new(4, 1, 3, 2));
    // SAME padding on a 1-D signal: the edge pixels' columns get zeros (ds_cnn's
    // first layer); dilated windows are not runs; three channels do not pair.
    let padded = ConvParams { pad_left: 1, ..p };
    assert!(layer(&padded, ins, fs, Shape::new(1, 1, 10, 4)).runs_dense());
    let dilated = ConvParams { dilation_w: 2, ..p };
    assert!(!layer(&dilated, ins, fs, Shape::new(1, 1, 6, 4)).runs_dense());
    // Pixels go in pairs, and a copied window's padding holds the input zero point as
    // a byte: one output pixel, or a zero point outside int8, takes the general loop.
    let whole = Shape::new(4, 1, 6, 2);
    let one = |n| layer(&p, Shape::new(n, 1, 6, 2), whole, Shape::new(n, 1, 1, 4));
    assert!(!one(1).runs_dense());
    assert!(one(2).runs_dense());
    let wide_zp = ConvParams {
        input_zero_point: 128,
        ..padded
    };
    assert!(!layer(&wide_zp, ins, fs, Shape::new(1, 1, 10, 4)).runs_dense());
    let fs3 = Shape::new(3, 1, 3, 2);
    assert!(!layer(&p, ins, fs3, Shape::new(1, 1, 8, 3)).runs_dense());
    // A kernel as wide as a 2-D input: each window is one run; narrower: it is not.
    let ins2 = Shape::new(1, 4, 3, 2);
    assert!(layer(&p, ins2, Shape::new(4, 2, 3, 2), Shape::new(1, 3, 1, 4)).runs_dense());
    assert!(!layer(&p, ins2, Shape::new(4, 2, 2, 2), Shape::new(1, 3, 2, 4)).runs_dense());
    // Padding around a 2-D window clips several rows: not one run.
    let padded2 = ConvParams {
        pad_top: 1,
        pad_left: 1,
        ..p
    };
    let outs2 = Shape::new(1, 4, 3, 4);
    assert!(!layer(&padded2, ins2, Shape::new(4, 2, 3, 2), outs2).runs_dense());
    // Only layers that read a table take it (here: a clamp narrower than int8).
    let narrowed = params(
        1,
        1,
        0,
        3,
        -2,
        Clamp {
            min: -100,
            max: 127,
        },
    );
    assert!(!one_d_layer(&narrowed, &filter[..24], rq).runs_dense());
}
