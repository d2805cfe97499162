//! Elementwise addition (TFLite int8 ADD).

use crate::quant::{clamp_to_i8, multiply_by_quantized_multiplier, ChannelRq, InputRescale};
use crate::{AddParams, KernelError};

/// Elements per pass of [`add`] (a 128-byte buffer on the stack).
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
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    let (zp1, zp2, ozp) = (
        p.input1_zero_point,
        p.input2_zero_point,
        p.output_zero_point,
    );
    let rqo = ChannelRq::new(p.output_multiplier, p.output_shift);
    let in1 = InputRescale::new(p.input1_multiplier, p.input1_shift, p.left_shift);
    let in2 = InputRescale::new(p.input2_multiplier, p.input2_shift, p.left_shift);
    let byte_zps = (-128..=127).contains(&zp1) && (-128..=127).contains(&zp2);
    let (Some(in1), Some(in2), true) = (in1, in2, byte_zps) else {
        return add_general(p, input1, input2, output);
    };
    // In chunks, three passes each (each input rescaled into the sums, then the output
    // requantized), which keeps each loop's parameters in registers.
    #[cfg(all(target_arch = "arm", edgekd_dsp))]
    let single_step = crate::quant::RoundingRq::new(p.output_multiplier, p.output_shift, ozp);
    #[cfg(all(target_arch = "arm", edgekd_dsp))]
    let full_range = lo == -128 && hi == 127;
    let mut sums = [0i32; CHUNK];
    for ((o, a), b) in output
        .chunks_mut(CHUNK)
        .zip(input1.chunks(CHUNK))
        .zip(input2.chunks(CHUNK))
    {
        for (s, &a) in sums.iter_mut().zip(a) {
            *s = in1.apply(i32::from(a) - zp1);
        }
        for (s, &b) in sums.iter_mut().zip(b) {
            *s = s.wrapping_add(in2.apply(i32::from(b) - zp2));
        }
        #[cfg(all(target_arch = "arm", edgekd_dsp))]
        if let Some(rq) = &single_step {
            if full_range {
                for (o, &s) in o.iter_mut().zip(&sums) {
                    *o = crate::arm::saturate_i8(rq.apply(s));
                }
            } else {
                for (o, &s) in o.iter_mut().zip(&sums) {
                    *o = rq.output(s, lo, hi);
                }
            }
            continue;
        }
        for (o, &s) in o.iter_mut().zip(&sums) {
            *o = rqo.output(s, ozp, lo, hi);
        }
    }
    Ok(())
}

/// [`add`] for parameters outside [`InputRescale`]'s range (not what TFLite derives):
/// each rescaling through [`ChannelRq`], the same bits as the reference.
#[cold]
fn add_general(
    p: &AddParams,
    input1: &[i8],
    input2: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    let ls = p.left_shift as u32;
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    let rq1 = ChannelRq::with_pre_shift(p.input1_multiplier, p.input1_shift, ls);
    let rq2 = ChannelRq::with_pre_shift(p.input2_multiplier, p.input2_shift, ls);
    let rqo = ChannelRq::new(p.output_multiplier, p.output_shift);
    let (zp1, zp2, ozp) = (
        p.input1_zero_point,
        p.input2_zero_point,
        p.output_zero_point,
    );
    for ((o, &a), &b) in output.iter_mut().zip(input1).zip(input2) {
        let a = rq1.apply(i32::from(a).wrapping_sub(zp1));
        let b = rq2.apply(i32::from(b).wrapping_sub(zp2));
        *o = rqo.output(a.wrapping_add(b), ozp, lo, hi);
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
