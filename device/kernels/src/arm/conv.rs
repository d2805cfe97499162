//! The DSP convolution of layers whose every receptive field is one run of the input
//! and that have their prepared table ([`crate::conv2d_wide_weights`]): 1-D signals
//! and kernels as wide as the input, with no padding reaching a window, an even number
//! of output channels, the whole int8 range. `ConvLayer::with_wide_weights` decides it
//! once; each call is then a pixel walk with two widenings and one asm channel loop
//! per pair of pixels, without the window arithmetic and block bookkeeping of the
//! general loop, whose setup cost about 500 instructions per call.

use super::matvec::{matvec, pair_rows_wide, pixel_pairs_wide, widen_pack, PairLayer};
use crate::matvec::{Cols, OutQ, PAIR_OFFSET};
use crate::KernelError;

/// What the dense path needs of a layer, derived from its checked shapes.
#[derive(Clone, Copy)]
pub(crate) struct DenseConv<'a> {
    /// Entries of a receptive field (`kh * kw * in_c`).
    pub(crate) k: usize,
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
/// the caller). Each output row's pixels go in pairs to [`pixel_pairs_wide`]; a pair
/// that straddles two rows, or whose widening would read past the input, takes
/// [`pair_rows_wide`] with exact columns, and an odd last pixel [`matvec`].
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
    };
    let window = |at: usize| input.get(at..at + k).ok_or(KernelError::ShapeMismatch);
    // A pixel waiting for its partner from the next row.
    let mut waiting: Option<(usize, &mut [i8])> = None;
    let images = output.len() / (row_len * l.out_h).max(1);
    let mut out_rows = output.chunks_exact_mut(row_len);
    for image in 0..images {
        for oy in 0..l.out_h {
            let Some(mut out) = out_rows.next() else {
                return Err(KernelError::ShapeMismatch);
            };
            let mut at = image * l.in_img + oy * l.step_y;
            if let Some((prev, prev_out)) = waiting.take() {
                let (first, rest) = out.split_at_mut(out_c);
                pair(
                    cols,
                    &layer,
                    zp,
                    k,
                    groups,
                    window(prev)?,
                    window(at)?,
                    prev_out,
                    first,
                );
                (out, at) = (rest, at + l.step_x);
            }
            // Pairs whose widening (whole groups of four) stays inside the input. The
            // asm widens a last, partial group in packed order (entries 1 and 2
            // swapped), where the table has it in natural order: the two agree only
            // when that group holds one entry (the others meet zero weights).
            let pixels = if k % 4 < 2 { out.len() / out_c } else { 0 };
            let readable = input.len().saturating_sub(at + 4 * groups);
            let pairs = (pixels / 2).min((readable / l.step_x.max(1)).div_ceil(2));
            if pairs > 0 {
                let (run, rest) = out.split_at_mut(2 * pairs * out_c);
                let x = input.get(at..).ok_or(KernelError::ShapeMismatch)?;
                // SAFETY: `x` holds `(2 * pairs - 1) * step + 4 * groups` bytes (`pairs`
                // bounded by what is readable above); the column buffer is 8-byte
                // aligned with `PAIR_OFFSET + 4 * groups` entries (checked); `rows` is
                // 4-byte aligned (checked) with `out_c / 2` channel pairs of
                // `8 * groups` entries and `chans` holds `out_c` channels made by
                // `RoundingRq::new` (shifts at most 22), both from the checked table;
                // `run` holds `2 * pairs * out_c` outputs; `groups`, `pairs` and
                // `out_c / 2` are at least 1.
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
                (out, at) = (rest, at + 2 * pairs * l.step_x);
            }
            let mut rest = out.chunks_exact_mut(out_c);
            while let Some(a) = rest.next() {
                match rest.next() {
                    Some(b) => {
                        let (xa, xb) = (window(at)?, window(at + l.step_x)?);
                        pair(cols, &layer, zp, k, groups, xa, xb, a, b);
                        at += 2 * l.step_x;
                    }
                    None => waiting = Some((at, a)),
                }
            }
        }
    }
    if let Some((at, last)) = waiting {
        let col = &mut cols.0[..k];
        widen_pack(col, window(at)?, zp);
        let q = OutQ {
            zero_point: l.output_zero_point,
            lo: i32::from(i8::MIN),
            hi: i32::from(i8::MAX),
        };
        matvec(col, l.filter, chans, q, last);
    }
    Ok(())
}

/// One pixel pair from exact columns (`xa`, `xb`: `k` bytes each).
#[allow(clippy::too_many_arguments)]
fn pair(
    cols: &mut Cols,
    layer: &PairLayer,
    zp: i32,
    k: usize,
    groups: usize,
    xa: &[i8],
    xb: &[i8],
    out_a: &mut [i8],
    out_b: &mut [i8],
) {
    let (first, rest) = cols.0.split_at_mut(PAIR_OFFSET);
    widen_pack(&mut first[..k], xa, zp);
    widen_pack(&mut rest[..k], xb, zp);
    // SAFETY: the columns start the 8-byte aligned buffer and `PAIR_OFFSET` entries on,
    // each with room for `4 * groups` entries (checked by the caller; entries past `k`
    // meet the table's zero padding); `layer.rows` and `layer.chans` are the checked
    // table's (4-byte aligned, `out_c / 2` channel pairs, shifts from
    // `RoundingRq::new`); `out_a` and `out_b` hold `out_c` outputs each.
    unsafe {
        pair_rows_wide(
            first.as_ptr(),
            groups,
            layer.rows,
            layer.chans,
            out_a.as_mut_ptr(),
            out_b.as_mut_ptr(),
            layer.chan_pairs,
        );
    }
}
