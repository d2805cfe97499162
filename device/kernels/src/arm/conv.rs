//! The DSP convolution of layers whose receptive fields are runs of the input (1-D
//! signals, possibly padded at the ends, and kernels as wide as the input) and that
//! have their prepared table ([`crate::conv2d_wide_weights`]): an even number of output
//! channels, the whole int8 range. `ConvLayer::with_wide_weights` decides it once
//! (`ConvLayer::runs_dense`); each call then walks the output rows, giving the pixels
//! with whole windows to one asm block per row ([`pixel_pairs_wide`]) and the padded
//! edge pixels, whose columns get zeros for the padding, to [`pair_rows_wide`] in
//! pairs, without the window arithmetic and block bookkeeping of the general loop.

use super::matvec::{matvec, pack, pair_rows_wide, pixel_pairs_wide, widen_pack, PairLayer};
use crate::matvec::{widen, Cols, OutQ, PAIR_OFFSET};
use crate::{Axis, KernelError};

/// What the dense path needs of a layer, derived from its checked shapes.
#[derive(Clone, Copy)]
pub(crate) struct DenseConv<'a> {
    /// Entries of a receptive field (`kh * kw * in_c`).
    pub(crate) k: usize,
    /// Input channels.
    pub(crate) in_c: usize,
    /// Kernel width.
    pub(crate) kw: usize,
    /// The horizontal axis (windows of padded pixels).
    pub(crate) ax: Axis,
    /// The pixels of a row whose windows are whole: `whole.0..whole.1`.
    pub(crate) whole: (usize, usize),
    /// Input entries of the left padding (`pad_left * in_c`).
    pub(crate) pad_x: usize,
    /// Input offset between vertically neighbouring output pixels
    /// (`stride_h * in_w * in_c`).
    pub(crate) step_y: usize,
    /// Input offset between horizontally neighbouring output pixels (`stride_w * in_c`).
    pub(crate) step_x: usize,
    /// Input entries per image.
    pub(crate) in_img: usize,
    /// Output rows and columns per image.
    pub(crate) out_h: usize,
    /// See `out_h`.
    pub(crate) out_w: usize,
    /// Output channels (even).
    pub(crate) out_c: usize,
    pub(crate) input_zero_point: i32,
    pub(crate) output_zero_point: i32,
    /// The layer's int8 filter (only an odd last pixel reads it).
    pub(crate) filter: &'a [i8],
    /// The layer's prepared table.
    pub(crate) wide: &'a [i16],
}

/// Runs the layer: `input` and `output` hold the whole activations (lengths checked by
/// the caller). Pixels whose windows are whole go in pairs to [`pixel_pairs_wide`], one
/// call per run of them in a row; a padded pixel, a pair straddling two rows and a
/// pair whose widening would read past the input take [`pair_rows_wide`] with exact
/// columns, and an odd last pixel [`matvec`].
///
/// Errors: [`KernelError::ShapeMismatch`] if the table or a window is not where the
/// layer says (not reached for a layer `ConvLayer::with_wide_weights` accepted).
#[inline(never)]
pub(crate) fn dense_wide(
    cols: &mut Cols,
    l: &DenseConv<'_>,
    input: &[i8],
    output: &mut [i8],
) -> Result<(), KernelError> {
    let (k, out_c, zp) = (l.k, l.out_c, l.input_zero_point);
    let groups = k.div_ceil(4);
    let header = crate::conv::CONV_WIDE_CHANNEL_ENTRIES * out_c;
    let chans = super::table::prepared_channels(Some(l.wide), out_c, 0, out_c);
    let rows = l.wide.get(header..header + 4 * groups * out_c);
    let row_len = l.out_w * out_c;
    let (Some(chans), Some(rows)) = (chans, rows) else {
        return Err(KernelError::ShapeMismatch);
    };
    if out_c % 2 != 0 || k == 0 || rows.as_ptr() as usize % 4 != 0 || 4 * groups > PAIR_OFFSET {
        return Err(KernelError::ShapeMismatch);
    }
    if PAIR_OFFSET + 4 * groups > cols.0.len() || row_len == 0 {
        return Err(KernelError::ShapeMismatch);
    }
    let layer = PairLayer {
        step: l.step_x,
        neg_zp2: super::neg_zero_point2(zp),
        rows: rows.as_ptr(),
        chans: chans.as_ptr(),
        chan_pairs: out_c / 2,
        full_groups: k / 4,
        partial_group: usize::from(k % 4 != 0),
        chans_end: chans.as_ptr_range().end,
    };
    let (lo, hi) = l.whole;
    // A pixel whose column waits in the first slot for a partner.
    let mut waiting: Option<&mut [i8]> = None;
    let images = output.len() / (row_len * l.out_h).max(1);
    let mut out_rows = output.chunks_exact_mut(row_len);
    for image in 0..images {
        for oy in 0..l.out_h {
            let Some(mut out) = out_rows.next() else {
                return Err(KernelError::ShapeMismatch);
            };
            let row = image * l.in_img + oy * l.step_y;
            // Left edge, and the partner of a pixel waiting from the row before.
            let mut ox = 0;
            while ox < l.out_w && (ox < lo || waiting.is_some()) {
                let (o, rest) = core::mem::take(&mut out).split_at_mut(out_c);
                out = rest;
                waiting = one_pixel(cols, l, &layer, input, row, ox, o, waiting)?;
                ox += 1;
            }
            // Whole windows in pairs, while their widening (whole groups of four) stays
            // inside the input; a window starts `pad_left` columns before its pixel.
            let at = (row + ox * l.step_x).saturating_sub(l.pad_x);
            let readable = input.len().saturating_sub(at + 4 * groups);
            let pairs = (hi.saturating_sub(ox) / 2).min((readable / l.step_x.max(1)).div_ceil(2));
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
                        &layer,
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
            while ox < l.out_w {
                let (o, rest) = core::mem::take(&mut out).split_at_mut(out_c);
                out = rest;
                waiting = one_pixel(cols, l, &layer, input, row, ox, o, waiting)?;
                ox += 1;
            }
        }
    }
    if let Some(last) = waiting {
        let q = OutQ {
            zero_point: l.output_zero_point,
            lo: i32::from(i8::MIN),
            hi: i32::from(i8::MAX),
        };
        matvec(&cols.0[..k], l.filter, chans, q, last);
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
    l: &DenseConv<'_>,
    layer: &PairLayer,
    input: &[i8],
    row: usize,
    ox: usize,
    out: &'o mut [i8],
    waiting: Option<&'o mut [i8]>,
) -> Result<Option<&'o mut [i8]>, KernelError> {
    let (k, zp) = (l.k, l.input_zero_point);
    let (kx0, kx1, ix0) = l.ax.window(ox);
    let at = row + ix0 * l.in_c;
    let slot = if waiting.is_some() { PAIR_OFFSET } else { 0 };
    let col = cols
        .0
        .get_mut(slot..slot + k)
        .ok_or(KernelError::ShapeMismatch)?;
    if kx1 - kx0 == l.kw {
        let x = input.get(at..at + k).ok_or(KernelError::ShapeMismatch)?;
        widen_pack(col, x, zp);
    } else {
        // Padding reads as the zero point: (zp - zp) = 0.
        col.fill(0);
        let n = (kx1 - kx0) * l.in_c;
        let x = input.get(at..at + n).ok_or(KernelError::ShapeMismatch)?;
        let dst = col.get_mut(kx0 * l.in_c..).and_then(|d| d.get_mut(..n));
        widen(dst.ok_or(KernelError::ShapeMismatch)?, x, zp);
        pack(col);
    }
    let Some(prev) = waiting else {
        return Ok(Some(out));
    };
    if prev.len() < l.out_c || out.len() < l.out_c {
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
