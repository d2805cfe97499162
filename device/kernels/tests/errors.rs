//! Every kernel rejects bad lengths and parameters with the right error, and no
//! input (random shapes, lengths and parameters) makes any kernel panic.
#![cfg(feature = "std")]

mod common;

use common::Rng;
use edgekd_kernels::*;
use KernelError::{ShapeMismatch, UnsupportedParams};

fn cp(stride: usize, dil: usize, pad: usize, dm: usize) -> ConvParams {
    ConvParams {
        stride_h: stride,
        stride_w: stride,
        dilation_h: dil,
        dilation_w: dil,
        pad_top: pad,
        pad_left: pad,
        depth_multiplier: dm,
        input_zero_point: 0,
        output_zero_point: 0,
        clamp: Clamp::NONE,
    }
}

const M1: [i32; 1] = [1 << 30];
const S1: [i32; 1] = [0];
fn rq1() -> Requant<'static> {
    Requant {
        multiplier: &M1,
        shift: &S1,
    }
}

#[test]
fn conv_errors() {
    let is = Shape::new(1, 4, 4, 2);
    let fs = Shape::new(3, 3, 3, 2);
    let os = Shape::new(1, 2, 2, 3);
    let input = [0i8; 32];
    let filter = [0i8; 54];
    let mut out = [0i8; 12];
    let run =
        |p: &ConvParams, rq, is, inp: &[i8], fs, f: &[i8], b: Option<&[i32]>, os, o: &mut [i8]| {
            conv2d(p, rq, is, inp, fs, f, b, os, o)
        };
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Ok(())
    );
    assert_eq!(
        run(
            &cp(0, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(UnsupportedParams)
    );
    assert_eq!(
        run(
            &cp(1, 0, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(UnsupportedParams)
    );
    // Padding as large as the kernel.
    assert_eq!(
        run(
            &cp(1, 1, 3, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(UnsupportedParams)
    );
    // Zero kernel size.
    let fs0 = Shape::new(3, 0, 3, 2);
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs0,
            &[],
            None,
            os,
            &mut out
        ),
        Err(UnsupportedParams)
    );
    // Wrong slice lengths.
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input[..31],
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter[1..],
            None,
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out[..11]
        ),
        Err(ShapeMismatch)
    );
    // Bias and requant lengths.
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            Some(&[0, 0]),
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
    let m2 = [1 << 30; 2];
    let s2 = [0; 2];
    let bad = Requant {
        multiplier: &m2,
        shift: &s2,
    };
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            bad,
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
    let bad = Requant {
        multiplier: &m2[..1],
        shift: &s2,
    };
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            bad,
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
    let m3 = [1 << 30; 3];
    let s3 = [0; 3];
    let ok = Requant {
        multiplier: &m3,
        shift: &s3,
    };
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            ok,
            is,
            &input,
            fs,
            &filter,
            Some(&[1, 2, 3]),
            os,
            &mut out
        ),
        Ok(())
    );
    // Channel mismatch between filter and input / output.
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            Shape::new(2, 3, 3, 3),
            &filter,
            None,
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
    // 3x3 is fine: it implies one row/column of bottom/right padding.
    let mut big = [0i8; 75];
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            Shape::new(1, 3, 3, 3),
            &mut big[..27]
        ),
        Ok(())
    );
    // Output too large (the last window would lie entirely in the padding) or
    // too small (1x1 < 2x2: a second VALID window fits).
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            Shape::new(1, 5, 5, 3),
            &mut big
        ),
        Err(ShapeMismatch)
    );
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            Shape::new(1, 1, 1, 3),
            &mut out[..3]
        ),
        Err(ShapeMismatch)
    );
    // Batch mismatch.
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            Shape::new(2, 2, 1, 3),
            &mut out
        ),
        Err(ShapeMismatch)
    );
    // Overflowing shapes are a mismatch, not a panic.
    let huge = Shape::new(usize::MAX, 2, 2, 2);
    assert_eq!(
        run(
            &cp(1, 1, 0, 1),
            rq1(),
            huge,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
    let huge_out = Shape::new(1, usize::MAX, 1, 3);
    assert!(run(
        &cp(usize::MAX, 1, 0, 1),
        rq1(),
        is,
        &input,
        fs,
        &filter,
        None,
        huge_out,
        &mut out
    )
    .is_err());
}

#[test]
fn depthwise_errors() {
    let is = Shape::new(1, 3, 3, 2);
    let fs = Shape::new(1, 3, 3, 4);
    let os = Shape::new(1, 1, 1, 4);
    let input = [0i8; 18];
    let filter = [0i8; 36];
    let mut out = [0i8; 4];
    let p = cp(1, 1, 0, 2);
    assert_eq!(
        depthwise_conv2d(&p, rq1(), is, &input, fs, &filter, None, os, &mut out),
        Ok(())
    );
    assert_eq!(
        depthwise_conv2d(
            &cp(1, 1, 0, 0),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(UnsupportedParams)
    );
    assert_eq!(
        depthwise_conv2d(
            &cp(0, 1, 0, 2),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(UnsupportedParams)
    );
    // depth multiplier inconsistent with channels.
    assert_eq!(
        depthwise_conv2d(
            &cp(1, 1, 0, 1),
            rq1(),
            is,
            &input,
            fs,
            &filter,
            None,
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
    // Filter with n != 1.
    assert_eq!(
        depthwise_conv2d(
            &p,
            rq1(),
            is,
            &input,
            Shape::new(2, 3, 3, 2),
            &filter,
            None,
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
    assert_eq!(
        depthwise_conv2d(&p, rq1(), is, &input, fs, &filter, None, os, &mut out[..3]),
        Err(ShapeMismatch)
    );
    assert_eq!(
        depthwise_conv2d(
            &p,
            rq1(),
            is,
            &input,
            fs,
            &filter,
            Some(&[0; 3]),
            os,
            &mut out
        ),
        Err(ShapeMismatch)
    );
}

#[test]
fn fc_errors() {
    let p = FcParams {
        input_zero_point: 0,
        output_zero_point: 0,
        clamp: Clamp::NONE,
    };
    let mut out = [0i8; 4];
    let f = [0i8; 6];
    assert_eq!(
        fully_connected(&p, rq1(), &[0; 6], 3, &f, None, 2, &mut out),
        Ok(())
    );
    assert_eq!(
        fully_connected(&p, rq1(), &[0; 6], 0, &f, None, 2, &mut out),
        Err(UnsupportedParams)
    );
    assert_eq!(
        fully_connected(&p, rq1(), &[0; 5], 3, &f, None, 2, &mut out),
        Err(ShapeMismatch)
    );
    assert_eq!(
        fully_connected(&p, rq1(), &[0; 6], 3, &f[..5], None, 2, &mut out),
        Err(ShapeMismatch)
    );
    assert_eq!(
        fully_connected(&p, rq1(), &[0; 6], 3, &f, None, 2, &mut out[..3]),
        Err(ShapeMismatch)
    );
    assert_eq!(
        fully_connected(&p, rq1(), &[0; 6], 3, &f, Some(&[1]), 2, &mut out),
        Err(ShapeMismatch)
    );
    let bad = Requant {
        multiplier: &[1, 2, 3],
        shift: &[0, 0, 0],
    };
    assert_eq!(
        fully_connected(&p, bad, &[0; 6], 3, &f, None, 2, &mut out),
        Err(ShapeMismatch)
    );
    assert_eq!(
        fully_connected(&p, rq1(), &[0; 6], 3, &f, None, usize::MAX, &mut out),
        Err(ShapeMismatch)
    );
}

#[test]
fn pool_mean_add_softmax_errors() {
    let pp = |f: usize, s: usize, pad: usize| PoolParams {
        filter_h: f,
        filter_w: f,
        stride_h: s,
        stride_w: s,
        pad_top: pad,
        pad_left: pad,
        clamp: Clamp::NONE,
    };
    let is = Shape::new(1, 4, 4, 1);
    let os = Shape::new(1, 2, 2, 1);
    let input = [0i8; 16];
    let mut out = [0i8; 4];
    for pool in [max_pool2d, avg_pool2d] {
        assert_eq!(pool(&pp(2, 2, 0), is, &input, os, &mut out), Ok(()));
        assert_eq!(
            pool(&pp(2, 0, 0), is, &input, os, &mut out),
            Err(UnsupportedParams)
        );
        assert_eq!(
            pool(&pp(0, 2, 0), is, &input, os, &mut out),
            Err(UnsupportedParams)
        );
        assert_eq!(
            pool(&pp(2, 2, 2), is, &input, os, &mut out),
            Err(UnsupportedParams)
        );
        assert_eq!(
            pool(&pp(2, 2, 0), is, &input[..15], os, &mut out),
            Err(ShapeMismatch)
        );
        assert_eq!(
            pool(&pp(2, 2, 0), is, &input, os, &mut out[..3]),
            Err(ShapeMismatch)
        );
        assert_eq!(
            pool(
                &pp(2, 2, 0),
                is,
                &input,
                Shape::new(1, 2, 2, 2),
                &mut [0; 8]
            ),
            Err(ShapeMismatch)
        );
        assert_eq!(
            pool(
                &pp(2, 2, 0),
                is,
                &input,
                Shape::new(1, 3, 2, 1),
                &mut [0; 6]
            ),
            Err(ShapeMismatch)
        );
        assert_eq!(
            pool(
                &pp(2, 2, 0),
                is,
                &input,
                Shape::new(1, 1, 2, 1),
                &mut [0; 2]
            ),
            Err(ShapeMismatch)
        );
    }

    let mp = MeanParams {
        input_zero_point: 0,
        output_zero_point: 0,
        multiplier: 1 << 30,
        shift: 1,
        clamp: Clamp::NONE,
    };
    let mut o2 = [0i8; 2];
    assert_eq!(
        global_avg_pool(&mp, Shape::new(1, 2, 2, 2), &[0; 8], &mut o2),
        Ok(())
    );
    assert_eq!(
        global_avg_pool(&mp, Shape::new(1, 2, 2, 2), &[0; 7], &mut o2),
        Err(ShapeMismatch)
    );
    assert_eq!(
        global_avg_pool(&mp, Shape::new(1, 2, 2, 2), &[0; 8], &mut o2[..1]),
        Err(ShapeMismatch)
    );
    assert_eq!(
        global_avg_pool(&mp, Shape::new(1, 0, 2, 2), &[], &mut o2),
        Err(ShapeMismatch)
    );

    let ap = AddParams {
        input1_zero_point: 0,
        input2_zero_point: 0,
        output_zero_point: 0,
        left_shift: 20,
        input1_multiplier: 1 << 30,
        input1_shift: 0,
        input2_multiplier: 1 << 30,
        input2_shift: 0,
        output_multiplier: 1 << 30,
        output_shift: -19,
        clamp: Clamp::NONE,
    };
    assert_eq!(add(&ap, &[0; 3], &[0; 3], &mut [0; 3]), Ok(()));
    assert_eq!(add(&ap, &[0; 3], &[0; 2], &mut [0; 3]), Err(ShapeMismatch));
    assert_eq!(add(&ap, &[0; 2], &[0; 3], &mut [0; 3]), Err(ShapeMismatch));
    assert_eq!(add(&ap, &[0; 3], &[0; 3], &mut [0; 2]), Err(ShapeMismatch));
    assert_eq!(
        add(
            &AddParams {
                left_shift: 31,
                ..ap
            },
            &[0; 3],
            &[0; 3],
            &mut [0; 3]
        ),
        Err(UnsupportedParams)
    );

    let sp = SoftmaxParams {
        input_multiplier: 1 << 30,
        input_left_shift: 23,
        diff_min: -248,
    };
    assert_eq!(softmax(&sp, 3, &[0; 6], &mut [0; 6]), Ok(()));
    assert_eq!(
        softmax(&sp, 0, &[0; 6], &mut [0; 6]),
        Err(UnsupportedParams)
    );
    assert_eq!(softmax(&sp, 4, &[0; 6], &mut [0; 6]), Err(ShapeMismatch));
    assert_eq!(softmax(&sp, 3, &[0; 6], &mut [0; 3]), Err(ShapeMismatch));
}

fn rand_shape(rng: &mut Rng) -> Shape {
    let mut d = || {
        if rng.usize(0, 20) == 0 {
            usize::MAX / rng.usize(1, 3)
        } else {
            rng.usize(0, 5)
        }
    };
    Shape::new(d(), d(), d(), d())
}

fn rand_len(rng: &mut Rng, shape: Shape) -> usize {
    match (shape.elements(), rng.usize(0, 3)) {
        (Some(n), 0..=1) if n < 4096 => n,
        (Some(n), 2) if n < 4096 => n + 1,
        _ => rng.usize(0, 64),
    }
}

/// Random garbage in every argument: results may be Ok or Err, but never a panic.
#[test]
fn no_panics_on_random_arguments() {
    let mut rng = Rng::new(99);
    let mut oks = 0;
    for _ in 0..30_000 {
        let is = rand_shape(&mut rng);
        let fs = rand_shape(&mut rng);
        let os = rand_shape(&mut rng);
        let input = vec![rng.range(-128, 127) as i8; rand_len(&mut rng, is)];
        let filter = vec![rng.range(-128, 127) as i8; rand_len(&mut rng, fs)];
        let mut out = vec![0i8; rand_len(&mut rng, os)];
        let nb = rng.usize(0, 5);
        let bias: Vec<i32> = (0..nb).map(|_| rng.next_u64() as i32).collect();
        let nm = if rng.bool() { 1 } else { rng.usize(0, 5) };
        let mult: Vec<i32> = (0..nm).map(|_| rng.next_u64() as i32).collect();
        let shift: Vec<i32> = (0..nm).map(|_| rng.range(-40, 40) as i32).collect();
        let rq = Requant {
            multiplier: &mult,
            shift: &shift,
        };
        let mut small = || rng.usize(0, 3);
        let p = ConvParams {
            stride_h: small(),
            stride_w: small(),
            dilation_h: small(),
            dilation_w: small(),
            pad_top: small(),
            pad_left: small(),
            depth_multiplier: small(),
            input_zero_point: rng.next_u64() as i32,
            output_zero_point: rng.next_u64() as i32,
            clamp: Clamp {
                min: rng.next_u64() as i8,
                max: rng.next_u64() as i8,
            },
        };
        let b = if rng.bool() { Some(&bias[..]) } else { None };
        oks += conv2d(&p, rq, is, &input, fs, &filter, b, os, &mut out).is_ok() as usize;
        oks += depthwise_conv2d(&p, rq, is, &input, fs, &filter, b, os, &mut out).is_ok() as usize;
        let fp = FcParams {
            input_zero_point: p.input_zero_point,
            output_zero_point: p.output_zero_point,
            clamp: p.clamp,
        };
        oks += fully_connected(&fp, rq, &input, is.c, &filter, b, os.c, &mut out).is_ok() as usize;
        let pp = PoolParams {
            filter_h: fs.h,
            filter_w: fs.w,
            stride_h: p.stride_h,
            stride_w: p.stride_w,
            pad_top: p.pad_top,
            pad_left: p.pad_left,
            clamp: p.clamp,
        };
        oks += max_pool2d(&pp, is, &input, os, &mut out).is_ok() as usize;
        oks += avg_pool2d(&pp, is, &input, os, &mut out).is_ok() as usize;
        let mp = MeanParams {
            input_zero_point: p.input_zero_point,
            output_zero_point: p.output_zero_point,
            multiplier: mult.first().copied().unwrap_or(0),
            shift: shift.first().copied().unwrap_or(0),
            clamp: p.clamp,
        };
        oks += global_avg_pool(&mp, is, &input, &mut out).is_ok() as usize;
        let ap = AddParams {
            input1_zero_point: p.input_zero_point,
            input2_zero_point: p.output_zero_point,
            output_zero_point: rng.next_u64() as i32,
            left_shift: rng.range(-2, 33) as i32,
            input1_multiplier: rng.next_u64() as i32,
            input1_shift: rng.range(-40, 40) as i32,
            input2_multiplier: rng.next_u64() as i32,
            input2_shift: rng.range(-40, 40) as i32,
            output_multiplier: rng.next_u64() as i32,
            output_shift: rng.range(-40, 40) as i32,
            clamp: p.clamp,
        };
        oks += add(&ap, &input, &filter, &mut out).is_ok() as usize;
        let sp = SoftmaxParams {
            input_multiplier: rng.next_u64() as i32,
            input_left_shift: rng.range(-40, 40) as i32,
            diff_min: rng.next_u64() as i32,
        };
        oks += softmax(&sp, is.c, &input, &mut out).is_ok() as usize;
    }
    // The generator must also hit valid combinations, not only errors.
    assert!(oks > 1000, "only {oks} successful calls");
}
