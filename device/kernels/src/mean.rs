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
    let Some(count) = checked_count(input_shape, input, output)? else {
        return Ok(());
    };
    #[cfg(all(target_arch = "arm", edgekd_dsp))]
    if input_shape.c % 4 == 0 && input_shape.c <= 4 * LANE_WORDS && count as usize <= LANE_SUM_CELLS
    {
        lane_sums(p, count, input_shape.c, input, output);
        return Ok(());
    }
    portable(p, count, input_shape.c, input, output);
    Ok(())
}

/// The portable reference [`global_avg_pool`]: same contract and bits, no
/// architecture-specific code.
pub fn global_avg_pool_reference(
    p: &MeanParams,
    input_shape: Shape,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    let Some(count) = checked_count(input_shape, input, output)? else {
        return Ok(());
    };
    portable(p, count, input_shape.c, input, output);
    Ok(())
}

/// `H * W` of a checked layer, or `None` if the output is empty.
fn checked_count(
    input_shape: Shape,
    input: &[i8],
    output: &[i8],
) -> Result<Option<i32>, KernelError> {
    check_len(input.len(), input_shape)?;
    check_len(output.len(), Shape::new(input_shape.n, 1, 1, input_shape.c))?;
    if output.is_empty() {
        return Ok(None);
    }
    let hw = input_shape.h * input_shape.w; // fits: bounded by input.len() / (n * c)
    if hw == 0 {
        return Err(KernelError::ShapeMismatch);
    }
    match i32::try_from(hw) {
        Ok(count) => Ok(Some(count)),
        Err(_) => Err(KernelError::UnsupportedParams),
    }
}

/// One channel's output from its sum of `x - input_zero_point` over `count` cells.
#[inline(always)]
fn finish(p: &MeanParams, acc: i32, count: i32) -> i8 {
    let v = multiply_by_quantized_multiplier(acc, p.multiplier, p.shift);
    let v = rounded_div(v, count).wrapping_add(p.output_zero_point);
    clamp_to_i8(v, i32::from(p.clamp.min), i32::from(p.clamp.max))
}

#[cfg(all(target_arch = "arm", edgekd_dsp))]
use crate::arm::{LANE_SUM_CELLS, LANE_WORDS};

/// [`global_avg_pool`] on DSP cores for `c % 4 == 0`, `c <= 4 * LANE_WORDS` and at most
/// `LANE_SUM_CELLS` cells: four channels per word of input (`SXTAB16` into 16-bit lane
/// sums), the zero point taken off the sum once (`sum(x - zp) = sum(x) - zp * count`,
/// exact in the same wrapping arithmetic).
#[cfg(all(target_arch = "arm", edgekd_dsp))]
fn lane_sums(p: &MeanParams, count: i32, c: usize, input: &[i8], output: &mut [i8]) {
    use crate::arm::add_lanes;
    let hw = count as usize;
    let zp_sum = p.input_zero_point.wrapping_mul(count);
    let mut acc = [(0u32, 0u32); LANE_WORDS];
    let acc = &mut acc[..c / 4];
    for (img, out) in input.chunks_exact(hw * c).zip(output.chunks_exact_mut(c)) {
        acc.fill((0, 0));
        for px in img.chunks_exact(c) {
            for ((even, odd), x) in acc.iter_mut().zip(px.chunks_exact(4)) {
                let x = u32::from_le_bytes([x[0] as u8, x[1] as u8, x[2] as u8, x[3] as u8]);
                *even = add_lanes::<0>(*even, x);
                *odd = add_lanes::<8>(*odd, x);
            }
        }
        for (o4, &(even, odd)) in out.chunks_exact_mut(4).zip(acc.iter()) {
            for (o, s) in o4.iter_mut().zip(crate::arm::lane_sums(even, odd)) {
                *o = finish(p, i32::from(s).wrapping_sub(zp_sum), count);
            }
        }
    }
}

/// [`global_avg_pool`]'s portable loop, lengths checked.
fn portable(p: &MeanParams, count: i32, c: usize, input: &[i8], output: &mut [i8]) {
    let hw = count as usize;
    let zp = p.input_zero_point;
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
                *o = finish(p, a, count);
            }
        }
    }
}
