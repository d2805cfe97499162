//! The DSP convolution of layers whose receptive fields are runs of the input (1-D
//! signals, possibly padded at the ends, and kernels as wide as the input) and that
//! have their prepared table ([`crate::conv2d_wide_weights`]): an even number of output
//! channels, the whole int8 range. `ConvLayer::with_wide_weights` decides it once
//! (`ConvLayer::runs_dense`); each call then walks the output pixels in pairs, giving
//! each run of pairs with whole windows in a row to one asm block
//! ([`pixel_pairs_wide`]) and every other pair (a padded edge pixel, a pair straddling
//! two rows, a field of under four entries whose word would read past the input) to
//! the same block on a copy of its two windows ([`edge_pair`]), without the window
//! arithmetic and block bookkeeping of the general loop. A field's partial last group
//! is read as the word that ends where the field does, so a run reaches the end of
//! the input.

use super::matvec::{pixel_pairs_wide, PairLayer};
use crate::conv::ConvLayer;
use crate::matvec::{Cols, MAX_COLS, PAIR_OFFSET};
use crate::{Axis, KernelError};
use core::arch::asm;

/// Bytes of [`edge_pair`]'s copy of two receptive fields: two of the widest the column
/// buffer takes (`MAX_COLS - PAIR_OFFSET` entries each; 48 B with tiny_cnn's 152).
const EDGE_BYTES: usize = 2 * MAX_COLS.saturating_sub(PAIR_OFFSET);

/// Runs `layer` (which [`ConvLayer::runs_dense`] with its table `wide`): `input` and
/// `output` hold the whole activations (lengths checked by the caller). The output
/// pixels go in pairs, across rows and images: a run of pairs whose windows are whole
/// and whose widening stays inside the input (it reads the field, or one word of a
/// field shorter than that: [`PairLayer::field_read`]) to [`pixel_pairs_wide`], one call
/// per run, any other pair to [`edge_pair`]. An odd last pixel goes again with its
/// predecessor, which gets the same outputs a second time. Reads the layer's fields in
/// place: copying them into a plan cost about 100 instructions per call.
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
    let (Some(chans), Some(rows)) = (chans, rows) else {
        return Err(KernelError::ShapeMismatch);
    };
    // `runs_dense` promised these; they guard the asm.
    if out_c % 2 != 0 || k == 0 || rows.as_ptr() as usize % 4 != 0 || 4 * groups > PAIR_OFFSET {
        return Err(KernelError::ShapeMismatch);
    }
    let pixels = output.len() / out_c;
    if PAIR_OFFSET + 4 * groups > cols.0.len() || pixels < 2 || outs.w == 0 {
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
        partial_back: PairLayer::partial_back(k),
    };
    let read = PairLayer::field_read(k);
    let pad_x = p.pad_left * ins.c;
    let (lo, hi) = crate::whole_windows(ins.w, fs.w, p.stride_w, p.pad_left, outs.w);
    let mut next = 0;
    while next < pixels {
        let first = next.min(pixels - 2);
        let ox = first % outs.w;
        let out = output
            .get_mut(first * out_c..)
            .ok_or(KernelError::ShapeMismatch)?;
        // Whole windows in pairs, while their widening stays inside the input; a window
        // starts `pad_left` columns before its pixel.
        let at = (row_start(layer, first / outs.w) + ox * step_x).saturating_sub(pad_x);
        let readable = input.len().saturating_sub(at + read);
        let pairs = match ox >= lo {
            true => (hi.saturating_sub(ox) / 2).min((readable / step_x.max(1)).div_ceil(2)),
            false => 0,
        };
        if pairs == 0 {
            edge_pair(cols, layer, &layer_asm, input, first, out)?;
            next = first + 2;
            continue;
        }
        let x = input.get(at..).ok_or(KernelError::ShapeMismatch)?;
        let run = out
            .get_mut(..2 * pairs * out_c)
            .ok_or(KernelError::ShapeMismatch)?;
        // SAFETY: `x` holds `(2 * pairs - 1) * step + read` bytes (`pairs` bounded by
        // what is readable above; `partial_back` set for `k`); the column buffer is
        // 8-byte aligned with `PAIR_OFFSET + 4 * groups` entries (checked); `rows` is
        // 4-byte aligned (checked) with `out_c / 2` channel pairs of `8 * groups` entries
        // and `chans` holds `out_c` channels made by `RoundingRq::new` (shifts at most
        // 22), both from the checked table; `run` holds `2 * pairs * out_c` outputs
        // (checked); `groups`, `pairs` and `out_c / 2` are at least 1.
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
        next = first + 2 * pairs;
    }
    Ok(())
}

/// The input offset of output row `out_row` (counted across images).
fn row_start(layer: &ConvLayer<'_>, out_row: usize) -> usize {
    let (p, ins, outs) = (&layer.p, layer.input_shape, layer.output_shape);
    let (image, oy) = (out_row / outs.h.max(1), out_row % outs.h.max(1));
    image * ins.h * ins.w * ins.c + oy * p.stride_h * ins.w * ins.c
}

/// Output pixels `first` and `first + 1` of [`dense_wide`] (counted across rows and
/// images, outputs from `out`): their windows copied into a buffer that reads as the
/// input zero point elsewhere (padding, and the bytes a field of under four entries
/// reads past its end, which meet the table's zero weights), `4 * groups` bytes apart,
/// then [`pixel_pairs_wide`] on the copy. About 720 instructions for tiny_cnn's conv
/// 1->8 against 330 for a pair in a run. Out of line: the buffer's frame is only on the
/// stack for these pairs.
#[inline(never)]
fn edge_pair(
    cols: &mut Cols,
    l: &ConvLayer<'_>,
    layer: &PairLayer,
    input: &[i8],
    first: usize,
    out: &mut [i8],
) -> Result<(), KernelError> {
    let (p, fs, in_c, outs) = (&l.p, l.filter_shape, l.input_shape.c, l.output_shape);
    let k = fs.h * fs.w * fs.c;
    let width = 4 * k.div_ceil(4);
    let zp = i8::try_from(p.input_zero_point).map_err(|_| KernelError::UnsupportedParams)?;
    if 2 * width > EDGE_BYTES || PAIR_OFFSET + width > cols.0.len() {
        return Err(KernelError::ShapeMismatch);
    }
    let mut fields = [zp; EDGE_BYTES];
    let ax = Axis::accepted(l.input_shape.w, fs.w, p.stride_w, p.dilation_w, p.pad_left);
    for (slot, pixel) in [(0, first), (width, first + 1)] {
        let (kx0, kx1, ix0) = ax.window(pixel % outs.w.max(1));
        // A whole window is the whole field (kernels as wide as the input span rows);
        // `runs_dense` leaves padding to 1-D layers, whose field is one row's taps.
        let n = if kx1 - kx0 == fs.w {
            k
        } else {
            (kx1 - kx0) * in_c
        };
        let at = row_start(l, pixel / outs.w.max(1)) + ix0 * in_c;
        let src = input.get(at..).and_then(|s| s.get(..n));
        let dst = fields
            .get_mut(slot + kx0 * in_c..)
            .and_then(|d| d.get_mut(..n));
        let (Some(src), Some(dst)) = (src, dst) else {
            return Err(KernelError::ShapeMismatch);
        };
        copy_bytes(dst, src);
    }
    let out = out.get_mut(..2 * 2 * layer.chan_pairs);
    let out = out.ok_or(KernelError::ShapeMismatch)?;
    let copy = PairLayer {
        step: width,
        ..*layer
    };
    // SAFETY: `fields` holds both windows, `2 * width` bytes (checked); the column
    // buffer is 8-byte aligned with `PAIR_OFFSET + width` entries (checked); `rows` and
    // `chans` are `dense_wide`'s, from the checked table; `out` holds both pixels'
    // `2 * chan_pairs` outputs (checked); `groups = width / 4` and `pairs` are at least 1.
    unsafe {
        pixel_pairs_wide(
            &copy,
            fields.as_ptr(),
            out.as_mut_ptr(),
            1,
            cols.0.as_mut_ptr(),
            width / 4,
        );
    }
    Ok(())
}

/// Copies `src` into `dst` (equal lengths) a byte at a time: an edge pair's windows are a
/// few bytes long, and `copy_from_slice`'s `memcpy` call spent about 55 instructions on
/// five of them (tiny_cnn's conv 1->8), this loop 4 per byte.
#[inline(always)]
fn copy_bytes(dst: &mut [i8], src: &[i8]) {
    let n = dst.len().min(src.len());
    if n == 0 {
        return;
    }
    // SAFETY: reads `n` bytes from `src` and writes `n` bytes to `dst`, `n` at most
    // both lengths and at least 1; otherwise only register operands and the flags
    // change.
    unsafe {
        asm!(
            "2:",
            "ldrb {t}, [{s}], #1",
            "strb {t}, [{d}], #1",
            "subs {n}, {n}, #1",
            "bne 2b",
            s = inout(reg) src.as_ptr() => _,
            d = inout(reg) dst.as_mut_ptr() => _,
            n = inout(reg) n => _,
            t = out(reg) _,
            options(nostack),
        );
    }
}
