//! Elementwise addition (TFLite int8 ADD).

use crate::quant::{clamp_to_i8, multiply_by_quantized_multiplier, ChannelRq, InputRescale};
use crate::{AddParams, KernelError};

/// Elements per pass of [`add`] (a 128-byte buffer on the stack).
const CHUNK: usize = 32;

/// Entries of [`add_tables`]: 256 words per input, as 16-bit halves.
pub const ADD_TABLE_LEN: usize = 2 * 2 * 256;

/// An Add layer's prepared table (firmware generates it at build time; 2 KB of flash):
/// for input 1, then input 2, and for each of the 256 int8 values `x` in the order of
/// `x as u8`, the input's rescaled value (TFLite's `MultiplyByQuantizedMultiplier((x -
/// zp) << left_shift, multiplier, shift)`) as a little-endian word, low half first.
/// DSP builds then rescale an element with one load per input. `None` for parameters
/// outside the exact 32-bit rescaling [`add`] uses (not what TFLite derives).
pub fn add_tables(p: &AddParams) -> Option<impl Iterator<Item = i16>> {
    let rescale = |multiplier, shift, zp: i32| {
        let r = InputRescale::new(multiplier, shift, p.left_shift)?;
        (-128..=127).contains(&zp).then_some((r, zp))
    };
    let one = rescale(p.input1_multiplier, p.input1_shift, p.input1_zero_point)?;
    let two = rescale(p.input2_multiplier, p.input2_shift, p.input2_zero_point)?;
    Some([one, two].into_iter().flat_map(|(r, zp)| {
        (0..=255u8).flat_map(move |x| {
            let v = r.apply(i32::from(x as i8) - zp);
            [v as i16, (v >> 16) as i16]
        })
    }))
}

/// Checks `table` as the prepared table of an Add layer with parameters `p` (what
/// [`add_in`] then reads).
///
/// Errors: [`KernelError::UnsupportedParams`] for parameters that have none
/// ([`add_tables`]); [`KernelError::ShapeMismatch`] if `table` is not theirs or not
/// 4-byte aligned.
pub fn check_add_table(p: &AddParams, table: &[i16]) -> Result<(), KernelError> {
    let expected = add_tables(p).ok_or(KernelError::UnsupportedParams)?;
    crate::check_table(table, expected)
}

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
    add_in(p, None, input1, input2, output)
}

/// [`add`] with the layer's prepared table ([`add_tables`], 4-byte aligned, checked
/// against `p` by the caller: the interpreter compares it entry by entry once), which
/// builds with [`crate::ADD_USES_TABLES`] read instead of rescaling each input.
///
/// Errors: as [`add`].
pub fn add_in(
    p: &AddParams,
    table: Option<&[i16]>,
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
    #[cfg(all(target_arch = "arm", edgekd_dsp, not(edgekd_small_kernels)))]
    if let (Some(rq), Some([t1, t2])) = (&single_step, table.and_then(crate::arm::add_words)) {
        if full_range && !output.is_empty() && t2.as_ptr() == t1.as_ptr_range().end {
            // SAFETY: `t1` and `t2` are the table's two 256-word halves, adjacent
            // (checked) and 4-byte aligned (`add_words`); the three slices have
            // `output.len() >= 1` elements (checked above); `rq` comes from
            // `RoundingRq::new` (shift at most 22).
            unsafe {
                crate::arm::add_tables_i8(
                    t1.as_ptr(),
                    input1.as_ptr(),
                    input2.as_ptr(),
                    output.as_mut_ptr(),
                    output.len(),
                    rq,
                );
            }
        } else {
            for ((o, &a), &b) in output.iter_mut().zip(input1).zip(input2) {
                let s = t1[usize::from(a as u8)].wrapping_add(t2[usize::from(b as u8)]);
                *o = rq.output(s, lo, hi);
            }
        }
        return Ok(());
    }
    #[cfg(not(all(target_arch = "arm", edgekd_dsp, not(edgekd_small_kernels))))]
    let _ = table;
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
