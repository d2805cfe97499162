//! The DSP convolution of layers whose receptive fields are runs of the input (1-D
//! signals, possibly padded at the ends, and kernels as wide as the input) and that
//! have their prepared table ([`crate::conv2d_wide_weights`]): an even number of output
//! channels, the whole int8 range. `ConvLayer::with_wide_weights` decides it once
//! (`ConvLayer::runs_dense`); each call then walks the output rows, giving the pixels
//! with whole windows to one asm block per row ([`pixel_pairs_wide`]) and the padded
//! edge pixels, whose columns get zeros for the padding, to [`pair_rows_wide`] in
//! pairs, without the window arithmetic and block bookkeeping of the general loop.

use super::matvec::{matvec, pack, pair_rows_wide, pixel_pairs_wide, widen_pack, PairLayer};
use crate::conv::ConvLayer;
use crate::matvec::{widen, Cols, OutQ, PAIR_OFFSET};
use crate::{Axis, KernelError};

/// Runs `layer` (which [`ConvLayer::runs_dense`] with its table `wide`): `input` and
/// `output` hold the whole activations (lengths checked by the caller). Pixels whose
/// windows are whole go in pairs to [`pixel_pairs_wide`], one call per run of them in
/// a row; a padded pixel, a pair straddling two rows and a pair whose widening would
/// read past the input take [`pair_rows_wide`] with exact columns, and an odd last
/// pixel [`matvec`]. Reads the layer's fields in place: copying them into a plan cost
/// about 100 instructions per call.
///
/// Errors: [`KernelError::ShapeMismatch`] if the table or a window is not where the
/// layer says (not reached for a layer `ConvLayer::with_wide_weights` accepted).
#[inline(never)]
pub(crate) fn dense_wide(
    cols: &mut Cols,
    layer: &ConvLayer<'_>,
    wide: &[i16],
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    let (p, fs, ins, outs) = (
        &layer.p,
        layer.filter_shape,
        layer.input_shape,
        layer.output_shape,
    );
    let (k, out_c) = (fs.h * fs.w * fs.c, outs.c);
    let groups = k.div_ceil(4);
    let header = crate::conv::CONV_WIDE_CHANNEL_ENTRIES * out_c;
    let chans = super::table::prepared_channels(Some(wide), out_c, 0, out_c);
    let rows = wide.get(header..header + 4 * groups * out_c);
    let row_len = outs.w * out_c;
    let (Some(chans), Some(rows)) = (chans, rows) else {
        return Err(KernelError::ShapeMismatch);
    };
    // `runs_dense` promised these; they guard the asm.
    if out_c % 2 != 0 || k == 0 || rows.as_ptr() as usize % 4 != 0 || 4 * groups > PAIR_OFFSET {
        return Err(KernelError::ShapeMismatch);
    }
    if PAIR_OFFSET + 4 * groups > cols.0.len() || row_len == 0 {
        return Err(KernelError::ShapeMismatch);
    }
    let step_x = p.stride_w * ins.c;
    let layer_asm = PairLayer {
        step: step_x,
        neg_zp2: super::neg_zero_point2(p.input_zero_point),
        rows: rows.as_ptr(),
        chans: chans.as_ptr(),
        chan_pairs: out_c / 2,
        full_groups: k / 4,
        partial_group: usize::from(k % 4 != 0),
        chans_end: chans.as_ptr_range().end,
    };
    let (step_y, in_img) = (p.stride_h * ins.w * ins.c, ins.h * ins.w * ins.c);
    let pad_x = p.pad_left * ins.c;
    let (lo, hi) = crate::whole_windows(ins.w, fs.w, p.stride_w, p.pad_left, outs.w);
    // A pixel whose column waits in the first slot for a partner.
    let mut waiting: Option<&mut [i8]> = None;
    let images = output.len() / (row_len * outs.h).max(1);
    let mut out_rows = output.chunks_exact_mut(row_len);
    for image in 0..images {
        for oy in 0..outs.h {
            let Some(mut out) = out_rows.next() else {
                return Err(KernelError::ShapeMismatch);
            };
            let row = image * in_img + oy * step_y;
            // Left edge, and the partner of a pixel waiting from the row before.
            let mut ox = 0;
            while ox < outs.w && (ox < lo || waiting.is_some()) {
                let (o, rest) = core::mem::take(&mut out).split_at_mut(out_c);
                out = rest;
                waiting = one_pixel(cols, layer, &layer_asm, input, row, ox, o, waiting)?;
                ox += 1;
            }
            // Whole windows in pairs, while their widening (whole groups of four) stays
            // inside the input; a window starts `pad_left` columns before its pixel.
            let at = (row + ox * step_x).saturating_sub(pad_x);
            let readable = input.len().saturating_sub(at + 4 * groups);
            let pairs = (hi.saturating_sub(ox) / 2).min((readable / step_x.max(1)).div_ceil(2));
            if pairs > 0 {
                let (run, rest) = core::mem::take(&mut out).split_at_mut(2 * pairs * out_c);
                let x = input.get(at..).ok_or(KernelError::ShapeMismatch)?;
                // SAFETY: `x` holds `(2 * pairs - 1) * step + 4 * groups` bytes (`pairs`
                // bounded by what is readable above); the column buffer is 8-byte aligned
                // with `PAIR_OFFSET + 4 * groups` entries (checked); `rows` is 4-byte
                // aligned (checked) with `out_c / 2` channel pairs of `8 * groups`
                // entries and `chans` holds `out_c` channels made by `RoundingRq::new`
                // (shifts at most 22), both from the checked table; `run` holds
                // `2 * pairs * out_c` outputs; `groups`, `pairs` and `out_c / 2` are at
                // least 1.
                unsafe {
                    pixel_pairs_wide(
                        &layer_asm,
                        x.as_ptr(),
                        run.as_mut_ptr(),
                        pairs,
                        cols.0.as_mut_ptr(),
                        groups,
                    );
                }
                (out, ox) = (rest, ox + 2 * pairs);
            }
            // The rest of the row: right edge, and runs cut short.
            while ox < outs.w {
                let (o, rest) = core::mem::take(&mut out).split_at_mut(out_c);
                out = rest;
                waiting = one_pixel(cols, layer, &layer_asm, input, row, ox, o, waiting)?;
                ox += 1;
            }
        }
    }
    if let Some(last) = waiting {
        let q = OutQ {
            zero_point: p.output_zero_point,
            lo: i32::from(i8::MIN),
            hi: i32::from(i8::MAX),
        };
        matvec(&cols.0[..k], layer.filter, chans, q, last);
    }
    Ok(())
}

/// One pixel of [`dense_wide`] outside an asm run (`row`: the input offset of its
/// output row, `ox`: its column): its column into the slot
/// `waiting` leaves free, then the pair's passes if `waiting` held its partner. Returns
/// the pixel now waiting. Out of line, so that `dense_wide`'s loop keeps few values.
#[allow(clippy::too_many_arguments)]
#[inline(never)]
fn one_pixel<'o>(
    cols: &mut Cols,
    l: &ConvLayer<'_>,
    layer: &PairLayer,
    input: &[i8],
    row: usize,
    ox: usize,
    out: &'o mut [i8],
    waiting: Option<&'o mut [i8]>,
) -> Result<Option<&'o mut [i8]>, KernelError> {
    let (p, fs, in_c) = (&l.p, l.filter_shape, l.input_shape.c);
    let (k, zp, out_c) = (fs.h * fs.w * fs.c, p.input_zero_point, fs.n);
    let ax = Axis::accepted(l.input_shape.w, fs.w, p.stride_w, p.dilation_w, p.pad_left);
    let (kx0, kx1, ix0) = ax.window(ox);
    let at = row + ix0 * in_c;
    let slot = if waiting.is_some() { PAIR_OFFSET } else { 0 };
    let col = cols
        .0
        .get_mut(slot..slot + k)
        .ok_or(KernelError::ShapeMismatch)?;
    if kx1 - kx0 == fs.w {
        let x = input.get(at..at + k).ok_or(KernelError::ShapeMismatch)?;
        widen_pack(col, x, zp);
    } else {
        // Padding reads as the zero point: (zp - zp) = 0.
        col.fill(0);
        let n = (kx1 - kx0) * in_c;
        let x = input.get(at..at + n).ok_or(KernelError::ShapeMismatch)?;
        let dst = col.get_mut(kx0 * in_c..).and_then(|d| d.get_mut(..n));
        widen(dst.ok_or(KernelError::ShapeMismatch)?, x, zp);
        pack(col);
    }
    let Some(prev) = waiting else {
        return Ok(Some(out));
    };
    if prev.len() < out_c || out.len() < out_c {
        return Err(KernelError::ShapeMismatch);
    }
    // SAFETY: the columns start the 8-byte aligned buffer and `PAIR_OFFSET` entries on,
    // each with room for `4 * groups` entries (checked by `dense_wide`; entries past `k`
    // meet the table's zero padding); `layer.rows` and `layer.chans` are the checked
    // table's (4-byte aligned, `out_c / 2` channel pairs, shifts from
    // `RoundingRq::new`); `prev` and `out` hold `out_c` outputs each (checked).
    unsafe {
        pair_rows_wide(
            cols.0.as_ptr(),
            k.div_ceil(4),
            layer.rows,
            layer.chans,
            prev.as_mut_ptr(),
            out.as_mut_ptr(),
            layer.chan_pairs,
        );
    }
    Ok(None)
}
