//! Elementwise addition (TFLite int8 ADD).

use crate::quant::{clamp_to_i8, multiply_by_quantized_multiplier};
use crate::{AddParams, KernelError};

/// Elementwise int8 addition of two same-length tensors (no broadcasting),
/// TFLite reference `AddElementwise` arithmetic:
/// both inputs are offset, shifted left by `p.left_shift`, rescaled to a common
/// scale, summed, rescaled to the output, offset and clamped.
///
/// Errors: [`KernelError::ShapeMismatch`] unless all three slices have the same
/// length; [`KernelError::UnsupportedParams`] if `p.left_shift` is outside `0..=30`.
pub fn add(
    p: &AddParams,
    input1: &[i8],
    input2: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    if input1.len() != output.len() || input2.len() != output.len() {
        return Err(KernelError::ShapeMismatch);
    }
    if !(0..=30).contains(&p.left_shift) {
        return Err(KernelError::UnsupportedParams);
    }
    let ls = p.left_shift as u32;
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    for ((o, &a), &b) in output.iter_mut().zip(input1).zip(input2) {
        let a = i32::from(a)
            .wrapping_sub(p.input1_zero_point)
            .wrapping_shl(ls);
        let b = i32::from(b)
            .wrapping_sub(p.input2_zero_point)
            .wrapping_shl(ls);
        let a = multiply_by_quantized_multiplier(a, p.input1_multiplier, p.input1_shift);
        let b = multiply_by_quantized_multiplier(b, p.input2_multiplier, p.input2_shift);
        let raw = multiply_by_quantized_multiplier(
            a.wrapping_add(b),
            p.output_multiplier,
            p.output_shift,
        )
        .wrapping_add(p.output_zero_point);
        *o = clamp_to_i8(raw, lo, hi);
    }
    Ok(())
}
