//! Softmax (TFLite reference int8 softmax with gemmlowp fixed point).

use crate::quant::{
    exp_on_negative_values_q5, get_reciprocal, rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
};
use crate::{KernelError, SoftmaxParams};

/// Integer bits of the sum of exponentials (Q12.19).
const ACCUMULATION_INTEGER_BITS: i32 = 12;

/// Exponentials a row keeps on the stack between its two passes (classifier heads have
/// tens of classes; 64 bytes of stack).
const KEPT: usize = 16;

/// Softmax over the last axis: `input` is `len / depth` rows of `depth` values.
/// Output quantization is fixed at scale 1/256, zero point -128.
///
/// TFLite `reference_ops::Softmax<int8_t, int8_t>` arithmetic: input
/// differences from the row maximum below `p.diff_min` give -128; the others
/// are scaled by `p.input_multiplier << p.input_left_shift` into Q5.26,
/// exponentiated with gemmlowp's `exp_on_negative_values`, summed in Q12.19
/// and normalized by gemmlowp's fixed-point reciprocal.
///
/// Bit-exact with TFLite wherever TFLite's arithmetic is defined. Where it is
/// not: a sum of exponentials of 512 or more makes TFLite shift right by more
/// than 31 bits (undefined behavior in C); this kernel returns the correctly
/// rounded 0 (output -128) there. Rows of more than 4095 values near the maximum
/// overflow the Q12.19 sum; it wraps (garbage out, no panic).
///
/// Errors: [`KernelError::UnsupportedParams`] if `depth == 0`;
/// [`KernelError::ShapeMismatch`] if the lengths differ or are not a multiple
/// of `depth`.
pub fn softmax(
    p: &SoftmaxParams,
    depth: usize,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    if depth == 0 {
        return Err(KernelError::UnsupportedParams);
    }
    if input.len() != output.len() || input.len() % depth != 0 {
        return Err(KernelError::ShapeMismatch);
    }
    let ls = p.input_left_shift.clamp(0, 31) as u32;
    // Input differences scaled into Q5.26, then exp() in Q0.31.
    let scaled_exp = |diff: i32| -> i32 {
        let rescaled =
            saturating_rounding_doubling_high_mul(diff.wrapping_shl(ls), p.input_multiplier);
        exp_on_negative_values_q5(rescaled)
    };
    for (row, out) in input
        .chunks_exact(depth)
        .zip(output.chunks_exact_mut(depth))
    {
        let max = i32::from(row.iter().copied().max().unwrap_or(i8::MIN));
        // Rows of up to `KEPT` values keep their exponentials for the output pass (the
        // exponential is most of the work); longer ones compute them again.
        let mut kept = [0i32; KEPT];
        let mut sum_of_exps = 0i32;
        for (i, &x) in row.iter().enumerate() {
            let diff = i32::from(x) - max;
            if diff >= p.diff_min {
                let e = scaled_exp(diff);
                if let Some(k) = kept.get_mut(i) {
                    *k = e;
                }
                // Rescale Q0.31 -> Q12.19.
                sum_of_exps =
                    sum_of_exps.wrapping_add(rounding_divide_by_pot(e, ACCUMULATION_INTEGER_BITS));
            }
        }
        let (shifted_scale, num_bits_over_unit) =
            get_reciprocal(sum_of_exps, ACCUMULATION_INTEGER_BITS);
        let exponent = num_bits_over_unit + 31 - 8;
        for (i, (o, &x)) in out.iter_mut().zip(row).enumerate() {
            let diff = i32::from(x) - max;
            *o = if diff >= p.diff_min {
                let e = match kept.get(i) {
                    Some(&e) => e,
                    None => scaled_exp(diff),
                };
                let v = saturating_rounding_doubling_high_mul(shifted_scale, e);
                // TFLite shifts by more than 31 (undefined) once the sum of
                // exponentials reaches 512; v / 2^32 is then below 1/2 for v >= 0,
                // so the correctly rounded result is 0.
                let unsat = if exponent <= 31 {
                    rounding_divide_by_pot(v, exponent)
                } else {
                    0
                };
                unsat.wrapping_sub(128).clamp(-128, 127) as i8
            } else {
                i8::MIN
            };
        }
    }
    Ok(())
}
