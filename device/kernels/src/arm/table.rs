//! The channel table of the DSP conv, fully connected and depthwise kernels: each
//! output channel's bias and single-step requantization ([`RoundingRq`], output zero
//! point folded in), prepared once per block of channels instead of once per output.

use crate::matvec::BLOCK;
use crate::quant::RoundingRq;
use crate::Requant;

/// One output channel's bias and single-step requantization (`repr(C)`: [`super::matvec::pair_rows_i8`]
/// reads bias, multiplier, nudge and shift at byte offsets 0, 4, 8/12 and 16).
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct Chan {
    pub(crate) bias: i32,
    pub(crate) rq: RoundingRq,
}

/// The prepared channels of one block (a 320-byte table on the stack).
pub(crate) struct Chans([Chan; BLOCK]);

impl Chans {
    pub(crate) const fn new() -> Self {
        Chans(
            [Chan {
                bias: 0,
                rq: RoundingRq {
                    multiplier: 0,
                    nudge_lo: 0,
                    nudge_hi: 0,
                    shift: 0,
                },
            }; BLOCK],
        )
    }

    /// Prepares channels `c0..c0 + n` (`n <= BLOCK`) with the output zero point folded
    /// in, or `None` if one of them does not fit [`RoundingRq`] (a shift outside
    /// `-23..0` or a negative multiplier: the caller then runs the portable reference
    /// kernel).
    #[inline(always)]
    pub(crate) fn prepare_layer(
        &mut self,
        bias: Option<&[i32]>,
        rq: &Requant<'_>,
        out_zp: i32,
        c0: usize,
        n: usize,
    ) -> Option<&[Chan]> {
        let table = &mut self.0[..n.min(BLOCK)];
        let biases = bias.and_then(|b| b.get(c0..)).unwrap_or(&[]);
        for (j, t) in table.iter_mut().enumerate() {
            t.bias = biases.get(j).copied().unwrap_or(0);
        }
        if let ([m], [s]) = (rq.multiplier, rq.shift) {
            let one = RoundingRq::new(*m, *s, out_zp)?;
            for t in table.iter_mut() {
                t.rq = one;
            }
        } else {
            let ms = rq.multiplier.get(c0..)?.iter();
            let ss = rq.shift.get(c0..)?.iter();
            for ((t, &m), &s) in table.iter_mut().zip(ms).zip(ss) {
                t.rq = RoundingRq::new(m, s, out_zp)?;
            }
        }
        Some(table)
    }
}

// A conv layer's prepared table stores its channels as `Chan`s, entry for entry.
#[cfg(edgekd_conv2d)]
const _: () = assert!(
    core::mem::size_of::<Chan>() == 2 * crate::conv::CONV_WIDE_CHANNEL_ENTRIES
        && core::mem::align_of::<Chan>() == 4
);

/// Channels `c0..c0 + n` from the header of a conv layer's prepared table
/// (`conv2d_wide_weights`: one [`Chan`] per output channel from entry 0, written by the
/// same `RoundingRq::new` as [`Chans::prepare_layer`], so every shift is at most 22), or
/// `None` without a table (the caller prepares them in RAM). Size-optimized builds
/// read no table.
#[cfg(all(edgekd_conv2d, not(edgekd_small_kernels)))]
#[inline(always)]
pub(crate) fn prepared_channels(
    wide: Option<&[i16]>,
    out_c: usize,
    c0: usize,
    n: usize,
) -> Option<&[Chan]> {
    let entries = crate::conv::CONV_WIDE_CHANNEL_ENTRIES.checked_mul(out_c)?;
    let header = wide?.get(..entries)?;
    if header.as_ptr() as usize % 4 != 0 {
        return None;
    }
    // SAFETY: `Chan` is `repr(C)` of five 4-byte integers (20 bytes, alignment 4, no
    // padding, every bit pattern valid: asserted above); `header` is 4-byte aligned
    // (checked) and holds `out_c * 20` bytes, borrowed shared for the result's lifetime.
    let all: &[Chan] = unsafe { core::slice::from_raw_parts(header.as_ptr().cast(), out_c) };
    all.get(c0..c0.checked_add(n)?)
}
