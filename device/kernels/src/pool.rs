//! Max and average pooling (TFLite reference int8 pooling).

use crate::quant::{clamp_to_i8, rounded_div};
use crate::{check_len, Axis, KernelError, PoolParams, Shape};

/// Channels averaged together per output pixel (stack buffer).
const BLOCK: usize = 32;

/// Validates the pooling geometry; returns the two axes, or `None` if the
/// output is empty.
fn prepare(
    p: &PoolParams,
    input_shape: Shape,
    input: &[i8],
    output_shape: Shape,
    output: &[i8],
) -> Result<Option<(Axis, Axis)>, KernelError> {
    let ay = Axis::new(
        input_shape.h,
        output_shape.h,
        p.filter_h,
        p.stride_h,
        1,
        p.pad_top,
    )?;
    let ax = Axis::new(
        input_shape.w,
        output_shape.w,
        p.filter_w,
        p.stride_w,
        1,
        p.pad_left,
    )?;
    // The window element count must fit the i32 accumulator arithmetic.
    match p.filter_h.checked_mul(p.filter_w) {
        Some(n) if n <= i32::MAX as usize => {}
        _ => return Err(KernelError::UnsupportedParams),
    }
    check_len(input.len(), input_shape)?;
    check_len(output.len(), output_shape)?;
    if output_shape.n != input_shape.n || output_shape.c != input_shape.c {
        return Err(KernelError::ShapeMismatch);
    }
    if output.is_empty() {
        return Ok(None);
    }
    Ok(Some((ay, ax)))
}

/// int8 max pooling, NHWC. Padded cells are ignored; the result is clamped to
/// `p.clamp`. Input and output share quantization parameters.
///
/// Errors: [`KernelError::UnsupportedParams`] for a zero window or stride or
/// padding at least the window size; [`KernelError::ShapeMismatch`] for slice
/// lengths or an output shape inconsistent with the geometry.
pub fn max_pool2d(
    p: &PoolParams,
    input_shape: Shape,
    input: &[i8],
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    #[cfg(all(target_arch = "arm", edgekd_dsp))]
    if input_shape.c % 4 == 0 && input_shape.c <= 4 * crate::arm::pool::MAX_WORDS {
        let Some((ay, ax)) = prepare(p, input_shape, input, output_shape, output)? else {
            return Ok(());
        };
        return crate::arm::pool::max_pool_words(
            p,
            ay,
            ax,
            input_shape,
            input,
            output_shape,
            output,
        );
    }
    max_pool2d_reference(p, input_shape, input, output_shape, output)
}

/// The portable reference [`max_pool2d`]: same contract and bits, no
/// architecture-specific code.
pub fn max_pool2d_reference(
    p: &PoolParams,
    input_shape: Shape,
    input: &[i8],
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let Some((ay, ax)) = prepare(p, input_shape, input, output_shape, output)? else {
        return Ok(());
    };
    let c = input_shape.c;
    let in_w = input_shape.w;
    let in_img = input_shape.h * in_w * c;
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    let mut out_px = output.chunks_exact_mut(c);
    for b in 0..input_shape.n {
        let img = &input[b * in_img..][..in_img];
        for oy in 0..output_shape.h {
            let (ky0, ky1, iy0) = ay.window(oy);
            for ox in 0..output_shape.w {
                let (kx0, kx1, ix0) = ax.window(ox);
                let Some(out) = out_px.next() else {
                    return Err(KernelError::ShapeMismatch);
                };
                out.fill(i8::MIN);
                for iy in iy0..iy0 + (ky1 - ky0) {
                    let row = &img[(iy * in_w + ix0) * c..][..(kx1 - kx0) * c];
                    for px in row.chunks_exact(c) {
                        for (o, &x) in out.iter_mut().zip(px) {
                            *o = (*o).max(x);
                        }
                    }
                }
                for o in out.iter_mut() {
                    *o = clamp_to_i8(i32::from(*o), lo, hi);
                }
            }
        }
    }
    Ok(())
}

/// int8 average pooling, NHWC, TFLite reference arithmetic: the sum of the
/// window's in-bounds values divided by their count, rounded half away from
/// zero, then clamped to `p.clamp`. Padded cells are excluded from both sum and
/// count. Input and output share quantization parameters.
///
/// Errors: as [`max_pool2d`].
pub fn avg_pool2d(
    p: &PoolParams,
    input_shape: Shape,
    input: &[i8],
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let Some((ay, ax)) = prepare(p, input_shape, input, output_shape, output)? else {
        return Ok(());
    };
    #[cfg(all(target_arch = "arm", edgekd_dsp))]
    if input_shape.c % 4 == 0
        && input_shape.c <= 4 * crate::arm::pool::MAX_WORDS
        && p.filter_h * p.filter_w <= crate::arm::pool::MAX_AVG_CELLS
    {
        return crate::arm::pool::avg_pool_words(
            p,
            ay,
            ax,
            input_shape,
            input,
            output_shape,
            output,
        );
    }
    avg_pool_portable(p, ay, ax, input_shape, input, output_shape, output)
}

/// The portable reference [`avg_pool2d`]: same contract and bits, no
/// architecture-specific code.
pub fn avg_pool2d_reference(
    p: &PoolParams,
    input_shape: Shape,
    input: &[i8],
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let Some((ay, ax)) = prepare(p, input_shape, input, output_shape, output)? else {
        return Ok(());
    };
    avg_pool_portable(p, ay, ax, input_shape, input, output_shape, output)
}

/// [`avg_pool2d`]'s portable loop, geometry validated (`ay`, `ax` from `prepare`).
fn avg_pool_portable(
    p: &PoolParams,
    ay: Axis,
    ax: Axis,
    input_shape: Shape,
    input: &[i8],
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let c = input_shape.c;
    let in_w = input_shape.w;
    let in_img = input_shape.h * in_w * c;
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    let mut out_px = output.chunks_exact_mut(c);
    // Cleared per block of channels below, as far as the block goes (clearing all of it
    // per pixel cost ds_cnn's 10-pixel layer a tenth of its instructions).
    let mut acc_buf = [0i32; BLOCK];
    for b in 0..input_shape.n {
        let img = &input[b * in_img..][..in_img];
        for oy in 0..output_shape.h {
            let (ky0, ky1, iy0) = ay.window(oy);
            for ox in 0..output_shape.w {
                let (kx0, kx1, ix0) = ax.window(ox);
                let Some(out) = out_px.next() else {
                    return Err(KernelError::ShapeMismatch);
                };
                // The geometry check guarantees at least one cell per window and
                // a count that fits in i32.
                let count = ((ky1 - ky0) * (kx1 - kx0)) as i32;
                if count == 0 {
                    return Err(KernelError::ShapeMismatch);
                }
                for (blk, out_blk) in out.chunks_mut(BLOCK).enumerate() {
                    let c0 = blk * BLOCK;
                    let len = out_blk.len();
                    let acc = &mut acc_buf[..len];
                    acc.fill(0);
                    for iy in iy0..iy0 + (ky1 - ky0) {
                        let row = &img[(iy * in_w + ix0) * c..][..(kx1 - kx0) * c];
                        for px in row.chunks_exact(c) {
                            for (a, &x) in acc.iter_mut().zip(&px[c0..][..len]) {
                                *a = a.wrapping_add(i32::from(x));
                            }
                        }
                    }
                    for (o, &a) in out_blk.iter_mut().zip(acc.iter()) {
                        *o = clamp_to_i8(rounded_div(a, count), lo, hi);
                    }
                }
            }
        }
    }
    Ok(())
}
