//! Elementwise addition (TFLite int8 ADD).

use crate::quant::{clamp_to_i8, multiply_by_quantized_multiplier, ChannelRq};
use crate::{AddParams, KernelError};

/// Elements per pass of [`add`] on DSP cores (a 128-byte buffer on the stack).
#[cfg(all(target_arch = "arm", edgekd_dsp))]
const CHUNK: usize = 32;

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
    // The three rescalings prepared once (split shifts, rounding masks, the inputs'
    // `left_shift` folded into their own): the same bits as
    // `multiply_by_quantized_multiplier` per element, without its clamps and branches.
    let rq1 = ChannelRq::with_pre_shift(p.input1_multiplier, p.input1_shift, ls);
    let rq2 = ChannelRq::with_pre_shift(p.input2_multiplier, p.input2_shift, ls);
    let rqo = ChannelRq::new(p.output_multiplier, p.output_shift);
    let (zp1, zp2, ozp) = (
        p.input1_zero_point,
        p.input2_zero_point,
        p.output_zero_point,
    );
    // Without SMULL (portable builds, the Cortex-M0): the input rescalings in 32-bit
    // arithmetic when the zero points keep `|x - zp| <= 255` and the combined left shift
    // (`left_shift` plus a positive input shift) is in 15..=23, as with TFLite's 20 and
    // the input shifts it derives (<= 0); same bits as the general loop. One pass.
    #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
    {
        let elements = output.iter_mut().zip(input1).zip(input2);
        if rq1.small_ok()
            && rq2.small_ok()
            && (-128..=127).contains(&zp1)
            && (-128..=127).contains(&zp2)
        {
            for ((o, &a), &b) in elements {
                let a = rq1.apply_small(i32::from(a) - zp1);
                let b = rq2.apply_small(i32::from(b) - zp2);
                *o = rqo.output(a.wrapping_add(b), ozp, lo, hi);
            }
        } else {
            for ((o, &a), &b) in elements {
                let a = rq1.apply(i32::from(a).wrapping_sub(zp1));
                let b = rq2.apply(i32::from(b).wrapping_sub(zp2));
                *o = rqo.output(a.wrapping_add(b), ozp, lo, hi);
            }
        }
    }
    // DSP cores: two passes per chunk (inputs rescaled and summed, then the output
    // requantized) keep each loop's parameters in registers.
    #[cfg(all(target_arch = "arm", edgekd_dsp))]
    {
        let mut sums = [0i32; CHUNK];
        for ((o, a), b) in output
            .chunks_mut(CHUNK)
            .zip(input1.chunks(CHUNK))
            .zip(input2.chunks(CHUNK))
        {
            for ((s, &a), &b) in sums.iter_mut().zip(a).zip(b) {
                let a = rq1.apply(i32::from(a).wrapping_sub(zp1));
                let b = rq2.apply(i32::from(b).wrapping_sub(zp2));
                *s = a.wrapping_add(b);
            }
            for (o, &s) in o.iter_mut().zip(&sums) {
                *o = rqo.output(s, ozp, lo, hi);
            }
        }
    }
    Ok(())
}

/// The portable reference [`add`]: same contract and bits, each rescaling done with
/// [`multiply_by_quantized_multiplier`] per element, as TFLite's reference kernel does.
pub fn add_reference(
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
