//! Global average pooling as TFLite int8 MEAN over H and W.

use crate::quant::rounded_div;
use crate::quant::{clamp_to_i8, multiply_by_quantized_multiplier};
use crate::{check_len, KernelError, MeanParams, Shape};

/// Channels reduced together (stack buffer).
const BLOCK: usize = 32;

/// Mean over H and W of an NHWC int8 tensor; `output` is `n x 1 x 1 x c`.
///
/// TFLite `reference_integer_ops::Mean` arithmetic: per (n, c),
/// `acc = sum(x - input_zp)`, `acc = MultiplyByQuantizedMultiplier(acc, m, s)`
/// with `m, s` from `input_scale / output_scale`, then divided by `H * W`
/// rounding half away from zero, plus `output_zp`, clamped to `p.clamp`.
///
/// Errors: [`KernelError::ShapeMismatch`] for slice lengths, or an empty
/// `H * W` (with a non-empty output); [`KernelError::UnsupportedParams`] if
/// `H * W` exceeds `i32::MAX`.
pub fn global_avg_pool(
    p: &MeanParams,
    input_shape: Shape,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    check_len(input.len(), input_shape)?;
    check_len(output.len(), Shape::new(input_shape.n, 1, 1, input_shape.c))?;
    if output.is_empty() {
        return Ok(());
    }
    let hw = input_shape.h * input_shape.w; // fits: bounded by input.len() / (n * c)
    if hw == 0 {
        return Err(KernelError::ShapeMismatch);
    }
    let Ok(count) = i32::try_from(hw) else {
        return Err(KernelError::UnsupportedParams);
    };
    let c = input_shape.c;
    let zp = p.input_zero_point;
    let ozp = p.output_zero_point;
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    for (img, out) in input.chunks_exact(hw * c).zip(output.chunks_exact_mut(c)) {
        for (blk, out_blk) in out.chunks_mut(BLOCK).enumerate() {
            let c0 = blk * BLOCK;
            let len = out_blk.len();
            let mut acc_buf = [0i32; BLOCK];
            let acc = &mut acc_buf[..len];
            for px in img.chunks_exact(c) {
                for (a, &x) in acc.iter_mut().zip(&px[c0..][..len]) {
                    *a = a.wrapping_add(i32::from(x).wrapping_sub(zp));
                }
            }
            for (o, &a) in out_blk.iter_mut().zip(acc.iter()) {
                let v = multiply_by_quantized_multiplier(a, p.multiplier, p.shift);
                let v = rounded_div(v, count).wrapping_add(ozp);
                *o = clamp_to_i8(v, lo, hi);
            }
        }
    }
    Ok(())
}
