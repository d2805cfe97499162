//! The shared inner product of conv and fully connected layers: one input column
//! (`x - input_zp` widened to i16, im2col style) against every output channel's
//! filter row, then per-channel requantization.
//!
//! Widening the input once per column and reusing it for all output channels removes
//! the zero-point subtraction and the sign extension of `x` from the inner loop; on
//! Cortex-M with the DSP extension [`crate::arm`] replaces [`pack`] and [`matvec`] with
//! `SXTB16`/`SMLAD` versions that give the same bits.

#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
use crate::quant::ChannelRq;
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
use crate::Requant;

// Longest column (`kh * kw * in_c` or `in_features`) the im2col path handles, longer
// ones take the generic kernels: `MAX_COLS`, 256 entries (512 bytes) unless a firmware
// build sizes it to its model (`EDGEKD_MAX_COLS`, see `build.rs`).
include!(concat!(env!("OUT_DIR"), "/max_cols.rs"));

/// Column entries in builds whose buffer is not sized to a model.
pub const DEFAULT_MAX_COLS: usize = 256;

/// The column-buffer entries a conv layer with `columns` entries per output pixel
/// (`kh * kw * in_c`) needs to run its fast path in every build: with pixel pairing the
/// second column starts at [`PAIR_OFFSET`]. 0 for a layer over [`DEFAULT_MAX_COLS`],
/// which runs the reference kernel and no column.
pub fn conv2d_scratch_columns(columns: usize) -> usize {
    match columns {
        c if c > DEFAULT_MAX_COLS => 0,
        c if c <= PAIR_OFFSET => PAIR_OFFSET + c.next_multiple_of(4),
        c => c.next_multiple_of(4),
    }
}

/// [`conv2d_scratch_columns`] for a fully connected layer: its input row, rounded up to
/// whole groups of four.
pub fn fully_connected_scratch_columns(in_features: usize) -> usize {
    if in_features > DEFAULT_MAX_COLS {
        0
    } else {
        in_features.next_multiple_of(4)
    }
}

/// Word-aligned column buffer (the DSP kernels load it two lanes at a time).
#[repr(C, align(8))]
pub(crate) struct Cols(pub(crate) [i16; MAX_COLS]);

impl Cols {
    pub(crate) const fn new() -> Self {
        Cols([0; MAX_COLS])
    }
}

/// Output quantization shared by every channel of one layer.
#[derive(Clone, Copy)]
pub(crate) struct OutQ {
    pub(crate) zero_point: i32,
    pub(crate) lo: i32,
    pub(crate) hi: i32,
}

/// A filter of `rows` rows of `columns` int8 entries widened to 16 bits in the order
/// the DSP kernels' `SMLAD`s read it: for each block of `BLOCK_ROWS` rows, for each
/// group of four columns, the block's rows' entries of that group, in the order
/// `0, 2, 1, 3` (the packed column's) for full groups and in natural order for the last
/// group of a row whose length is not a multiple of four, with zeros beyond the last
/// row and column (`fc_wide_weights`: blocks of 4, `conv2d_wide_weights`: 2).
#[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
pub(crate) fn widened<const BLOCK_ROWS: usize>(
    filter: &[i8],
    columns: usize,
    rows: usize,
) -> impl Iterator<Item = i16> + '_ {
    (0..rows.div_ceil(BLOCK_ROWS))
        .flat_map(move |b| widened_block::<BLOCK_ROWS>(filter, columns, rows, b))
}

/// Block `b` (rows `BLOCK_ROWS * b ..`) of [`widened`].
#[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
pub(crate) fn widened_block<const BLOCK_ROWS: usize>(
    filter: &[i8],
    columns: usize,
    rows: usize,
    b: usize,
) -> impl Iterator<Item = i16> + '_ {
    // Nested rather than one index split by division: the firmware checks its tables
    // with this at start-up.
    (0..columns.div_ceil(4)).flat_map(move |g| {
        let full = 4 * g + 4 <= columns;
        (0..4 * BLOCK_ROWS).map(move |e| {
            let (row, j) = (BLOCK_ROWS * b + e / 4, e % 4);
            let col = 4 * g + if full { [0, 2, 1, 3][j] } else { j };
            if row < rows && col < columns {
                filter.get(row * columns + col).map_or(0, |&w| i16::from(w))
            } else {
                0
            }
        })
    })
}

/// A word as two 16-bit table entries, low half first (little-endian, as the DSP
/// kernels load them).
#[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
pub(crate) fn halves(v: i32) -> [i16; 2] {
    [v as i16, (v >> 16) as i16]
}

/// Output channel `c`'s words in a prepared table: its bias (0 without one) and its
/// single-step requantization with the output zero point folded in
/// ([`crate::quant::RoundingRq`]; zeros for a channel outside that form, which a layer
/// reading the table refuses). `rq` holds one entry or one per channel.
#[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
pub(crate) fn prepared_channel(
    bias: Option<&[i32]>,
    rq: &crate::Requant<'_>,
    output_zero_point: i32,
    c: usize,
) -> (i32, [i32; 4]) {
    let at = if rq.multiplier.len() == 1 { 0 } else { c };
    let single_step = match (rq.multiplier.get(at), rq.shift.get(at)) {
        (Some(&m), Some(&s)) => crate::quant::RoundingRq::new(m, s, output_zero_point),
        _ => None,
    };
    let bias = bias.and_then(|b| b.get(c)).copied().unwrap_or(0);
    (bias, single_step.map_or([0; 4], |r| r.words()))
}

/// Fills `dst` with `x - zp`.
#[inline(always)]
pub(crate) fn widen(dst: &mut [i16], x: &[i8], zp: i32) {
    for (d, &v) in dst.iter_mut().zip(x) {
        // |x - zp| <= 255 for any i8 pair, so the i16 is exact.
        *d = (i32::from(v) - zp) as i16;
    }
}

/// Puts a column in the order [`matvec`] reads it (portable: natural order).
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
#[inline(always)]
pub(crate) fn pack(_col: &mut [i16]) {}

/// [`widen`] then [`pack`] of a whole column in one pass.
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
#[inline(always)]
pub(crate) fn widen_pack(col: &mut [i16], x: &[i8], zp: i32) {
    widen(col, x, zp)
}

#[cfg(all(
    target_arch = "arm",
    edgekd_dsp,
    any(edgekd_conv2d, feature = "fully-connected")
))]
pub(crate) use crate::arm::matvec::{matvec, matvec2, pack, widen_pack, Chans as Table};

/// The prepared channels conv and fully connected layers use: [`Chans`] in portable
/// builds, single-step requantization on DSP cores.
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
pub(crate) type Table = Chans;

/// Whether convolutions run two output pixels per pass ([`matvec2`]); the portable
/// kernel gains nothing from it, so it keeps one. Builds for the least code
/// (opt-level "z", `cfg(edgekd_min_size)`) keep one too: the paired loop is a second
/// copy of the inner loop, 2.4 KB of tiny_cnn's 10.3 KB of runtime code for 22 % fewer
/// instructions (19,726 against 25,446 per inference).
pub(crate) const PAIR_PIXELS: bool =
    cfg!(all(target_arch = "arm", edgekd_dsp, not(edgekd_min_size)));

/// Where the second pixel's column starts in [`Cols`] when convolutions pair pixels: a
/// fixed offset (128 entries, 256 bytes: half the default buffer) lets the DSP kernel address both columns
/// from one pointer (`LDR` with an immediate offset), which frees the register a second
/// pointer would take. Paired layers therefore need `k <= PAIR_OFFSET` and a buffer of
/// at least `PAIR_OFFSET + k` entries.
pub(crate) const PAIR_OFFSET: usize = DEFAULT_MAX_COLS / 2;

/// The column buffer and the channel table of a conv (or, portable, fully connected)
/// layer.
#[cfg(any(
    all(edgekd_conv2d, not(edgekd_no_channel_table)),
    all(feature = "fully-connected", not(all(target_arch = "arm", edgekd_dsp)))
))]
#[inline(always)]
pub(crate) fn layer_scratch(s: &mut crate::Scratch) -> (&mut Cols, &mut Table) {
    #[cfg(all(target_arch = "arm", edgekd_dsp))]
    return (&mut s.cols, &mut s.layer);
    #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
    return (&mut s.cols, &mut s.chans);
}

/// One output channel's bias and requantization, prepared once per layer (per block
/// of [`BLOCK`] channels) instead of once per output pixel (portable builds; DSP cores
/// use `arm::table`).
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
#[derive(Clone, Copy)]
pub(crate) struct Chan {
    pub(crate) bias: i32,
    pub(crate) rq: ChannelRq,
}

/// Output channels prepared at a time (a 256-byte table on the stack).
pub(crate) const BLOCK: usize = 16;

/// Prepared channels of one block.
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
pub(crate) struct Chans(pub(crate) [Chan; BLOCK]);

#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
impl Chans {
    pub(crate) const fn new() -> Self {
        Chans(
            [Chan {
                bias: 0,
                rq: ChannelRq::ZERO,
            }; BLOCK],
        )
    }

    /// [`Self::prepare`] in the form of the DSP table's `prepare_layer`, which folds the
    /// output zero point into its requantization and can refuse a layer.
    #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
    #[inline(always)]
    pub(crate) fn prepare_layer(
        &mut self,
        bias: Option<&[i32]>,
        rq: &Requant<'_>,
        _out_zp: i32,
        c0: usize,
        n: usize,
    ) -> Option<&[Chan]> {
        Some(self.prepare(bias, rq, c0, n))
    }

    /// Prepares channels `c0..c0 + n` (`n <= BLOCK`) and returns them. Channels the
    /// slices do not cover (never, after the kernels' checks) get bias 0 and
    /// multiplier 0.
    #[inline(always)]
    pub(crate) fn prepare(
        &mut self,
        bias: Option<&[i32]>,
        rq: &Requant<'_>,
        c0: usize,
        n: usize,
    ) -> &[Chan] {
        let table = &mut self.0[..n.min(BLOCK)];
        let from = |s: &'_ [i32]| -> usize { c0.min(s.len()) };
        let biases = bias.map_or(&[][..], |b| &b[from(b)..]);
        for (j, t) in table.iter_mut().enumerate() {
            t.bias = biases.get(j).copied().unwrap_or(0);
        }
        if let ([m], [s]) = (rq.multiplier, rq.shift) {
            let one = ChannelRq::new(*m, *s);
            for t in table.iter_mut() {
                t.rq = one;
            }
        } else {
            let (ms, ss) = (
                &rq.multiplier[from(rq.multiplier)..],
                &rq.shift[from(rq.shift)..],
            );
            for (j, t) in table.iter_mut().enumerate() {
                t.rq = match (ms.get(j), ss.get(j)) {
                    (Some(&m), Some(&s)) => ChannelRq::new(m, s),
                    _ => ChannelRq::ZERO,
                };
            }
        }
        table
    }
}

/// `out[j] = requant_j(bias_j + sum_i col[i] * filter[j * k + i])` with
/// `k = col.len()`, for the prepared channels `chans`; `filter` holds `out.len()` rows
/// of `k`.
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
#[inline(always)]
pub(crate) fn matvec(col: &[i16], filter: &[i8], chans: &[Chan], q: OutQ, out: &mut [i8]) {
    matvec_portable(col, filter, chans, q, out)
}

/// [`matvec`] for two columns (unused: see [`PAIR_PIXELS`]).
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn matvec2(
    col_a: &[i16],
    col_b: &[i16],
    filter: &[i8],
    _wide: Option<&[i16]>,
    chans: &[Chan],
    q: OutQ,
    out_a: &mut [i8],
    out_b: &mut [i8],
) {
    matvec(col_a, filter, chans, q, out_a);
    matvec(col_b, filter, chans, q, out_b);
}

/// The portable [`matvec`] (natural column order).
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
#[inline(always)]
pub(crate) fn matvec_portable(col: &[i16], filter: &[i8], chans: &[Chan], q: OutQ, out: &mut [i8]) {
    let k = col.len();
    if k == 0 {
        for (o, c) in out.iter_mut().zip(chans) {
            *o = c.rq.output(c.bias, q.zero_point, q.lo, q.hi);
        }
        return;
    }
    for ((o, w), c) in out.iter_mut().zip(filter.chunks_exact(k)).zip(chans) {
        let mut acc = c.bias;
        for (&x, &w) in col.iter().zip(w) {
            // Wrapping like the C reference; the sum is exact modulo 2^32.
            acc = acc.wrapping_add(i32::from(x) * i32::from(w));
        }
        *o = c.rq.output(acc, q.zero_point, q.lo, q.hi);
    }
}
