//! Depthwise 2-D convolution (TFLite `DepthwiseConvPerChannel`, int8).

use crate::quant::{requantize, ChannelRq};
use crate::{
    check_bias, check_len, check_requant, Axis, ConvParams, KernelError, Requant, Scratch, Shape,
};

/// Output channels accumulated together per output pixel (stack buffer).
const BLOCK: usize = 32;

/// int8 depthwise 2-D convolution, NHWC input and output.
///
/// `filter_shape` is `1 x kh x kw x out_c` with `out_c = in_c * p.depth_multiplier`
/// (TFLite layout); output channel `ic * depth_multiplier + m` reads input channel
/// `ic`. Arithmetic, padding and shape validation are as in [`crate::conv2d`].
///
/// Errors: [`KernelError::UnsupportedParams`] for a zero stride, dilation,
/// kernel size or depth multiplier, or too much padding;
/// [`KernelError::ShapeMismatch`] for any slice length or shape inconsistency.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d(
    p: &ConvParams,
    rq: Requant<'_>,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    depthwise_conv2d_in(
        &mut Scratch::new(),
        p,
        rq,
        input_shape,
        input,
        filter_shape,
        filter,
        bias,
        output_shape,
        output,
    )
}

/// [`depthwise_conv2d`] with caller-provided working memory (see [`Scratch`]).
#[allow(clippy::too_many_arguments)]
#[cfg_attr(not(all(target_arch = "arm", edgekd_dsp)), allow(unused_variables))]
pub fn depthwise_conv2d_in(
    scratch: &mut Scratch,
    p: &ConvParams,
    rq: Requant<'_>,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    #[cfg(all(target_arch = "arm", edgekd_dsp))]
    if p.depth_multiplier == 1 {
        let (ay, ax) = check(
            p,
            &rq,
            input_shape,
            input,
            filter_shape,
            filter,
            bias,
            output_shape,
            output,
        )?;
        let done = crate::arm::depthwise::depthwise_dm1(
            &mut scratch.layer,
            p,
            &rq,
            ay,
            ax,
            input_shape,
            input,
            filter_shape,
            filter,
            bias,
            output_shape,
            output,
        );
        if done {
            return Ok(());
        }
    }
    direct::<true>(
        p,
        rq,
        input_shape,
        input,
        filter_shape,
        filter,
        bias,
        output_shape,
        output,
    )
}

/// The portable reference [`depthwise_conv2d`]: same contract and bits, no
/// architecture-specific code.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_conv2d_reference(
    p: &ConvParams,
    rq: Requant<'_>,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    direct::<false>(
        p,
        rq,
        input_shape,
        input,
        filter_shape,
        filter,
        bias,
        output_shape,
        output,
    )
}

/// The direct depthwise loop. `PREPARED`: each output's requantization through
/// [`ChannelRq`] (split shifts, no 64-bit multiply on cores without `SMULL`, the asm
/// sequence on DSP cores), the same bits as the reference's
/// `multiply_by_quantized_multiplier`, which `PREPARED = false` keeps.
#[allow(clippy::too_many_arguments)]
fn direct<const PREPARED: bool>(
    p: &ConvParams,
    rq: Requant<'_>,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    check(
        p,
        &rq,
        input_shape,
        input,
        filter_shape,
        filter,
        bias,
        output_shape,
        output,
    )?;
    if output.is_empty() {
        return Ok(());
    }
    let in_c = input_shape.c;
    let out_c = output_shape.c;
    let dm = p.depth_multiplier;
    let ay = Axis::new(
        input_shape.h,
        output_shape.h,
        filter_shape.h,
        p.stride_h,
        p.dilation_h,
        p.pad_top,
    )?;
    let ax = Axis::new(
        input_shape.w,
        output_shape.w,
        filter_shape.w,
        p.stride_w,
        p.dilation_w,
        p.pad_left,
    )?;
    let in_w = input_shape.w;
    let in_img = input_shape.h * in_w * in_c;
    let kw = filter_shape.w;
    let (dh, dw) = (p.dilation_h, p.dilation_w);
    let zp = p.input_zero_point;
    let ozp = p.output_zero_point;
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    let per_tensor = rq.multiplier.len() == 1;

    let mut out_px = output.chunks_exact_mut(out_c);
    for b in 0..input_shape.n {
        let img = &input[b * in_img..][..in_img];
        for oy in 0..output_shape.h {
            let (ky0, ky1, iy0) = ay.window(oy);
            for ox in 0..output_shape.w {
                let (kx0, kx1, ix0) = ax.window(ox);
                let Some(out) = out_px.next() else {
                    return Err(KernelError::ShapeMismatch);
                };
                for (blk, out_blk) in out.chunks_mut(BLOCK).enumerate() {
                    let oc0 = blk * BLOCK;
                    let len = out_blk.len();
                    let mut acc_buf = [0i32; BLOCK];
                    let acc = &mut acc_buf[..len];
                    if let Some(bias) = bias {
                        acc.copy_from_slice(&bias[oc0..][..len]);
                    }
                    let mut iy = iy0;
                    for ky in ky0..ky1 {
                        let mut ix = ix0;
                        for kx in kx0..kx1 {
                            let px = &img[(iy * in_w + ix) * in_c..][..in_c];
                            let f = &filter[(ky * kw + kx) * out_c + oc0..][..len];
                            if dm == 1 {
                                for ((a, &w), &x) in acc.iter_mut().zip(f).zip(&px[oc0..][..len]) {
                                    *a = a.wrapping_add(
                                        i32::from(x).wrapping_sub(zp).wrapping_mul(i32::from(w)),
                                    );
                                }
                            } else {
                                let mut ic = oc0 / dm;
                                let mut m = oc0 % dm;
                                for (a, &w) in acc.iter_mut().zip(f) {
                                    let x = i32::from(px[ic]);
                                    *a = a.wrapping_add(
                                        x.wrapping_sub(zp).wrapping_mul(i32::from(w)),
                                    );
                                    m += 1;
                                    if m == dm {
                                        m = 0;
                                        ic += 1;
                                    }
                                }
                            }
                            ix += dw;
                        }
                        iy += dh;
                    }
                    for (j, (o, &a)) in out_blk.iter_mut().zip(acc.iter()).enumerate() {
                        let oc = oc0 + j;
                        let (m, s) = if per_tensor {
                            (rq.multiplier[0], rq.shift[0])
                        } else {
                            (rq.multiplier[oc], rq.shift[oc])
                        };
                        *o = if PREPARED {
                            ChannelRq::new(m, s).output(a, ozp, lo, hi)
                        } else {
                            requantize(a, m, s, ozp, lo, hi)
                        };
                    }
                }
            }
        }
    }
    Ok(())
}

/// Validates a depthwise convolution; returns its two spatial axes.
#[allow(clippy::too_many_arguments)]
fn check(
    p: &ConvParams,
    rq: &Requant<'_>,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &[i8],
) -> Result<(Axis, Axis), KernelError> {
    let dm = p.depth_multiplier;
    if dm == 0 {
        return Err(KernelError::UnsupportedParams);
    }
    let ay = Axis::new(
        input_shape.h,
        output_shape.h,
        filter_shape.h,
        p.stride_h,
        p.dilation_h,
        p.pad_top,
    )?;
    let ax = Axis::new(
        input_shape.w,
        output_shape.w,
        filter_shape.w,
        p.stride_w,
        p.dilation_w,
        p.pad_left,
    )?;
    check_len(input.len(), input_shape)?;
    check_len(filter.len(), filter_shape)?;
    check_len(output.len(), output_shape)?;
    let in_c = input_shape.c;
    let out_c = output_shape.c;
    if in_c.checked_mul(dm) != Some(out_c)
        || filter_shape.n != 1
        || filter_shape.c != out_c
        || output_shape.n != input_shape.n
    {
        return Err(KernelError::ShapeMismatch);
    }
    check_bias(bias, out_c)?;
    check_requant(rq, out_c)?;
    Ok((ay, ax))
}
