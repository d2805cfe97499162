//! 2-D convolution (TFLite `ConvPerChannel`, int8).

use crate::matvec::{
    matvec, matvec2, pack, widen, widen_pack, OutQ, BLOCK, MAX_COLS, PAIR_OFFSET, PAIR_PIXELS,
};

use crate::quant::{all_single_step, requantize};
use crate::{
    check_bias, check_len, check_requant, dot, Activations, Axis, ConvParams, KernelError, Requant,
    Scratch, Shape,
};

/// int8 2-D convolution, NHWC input and output, OHWI filter.
///
/// `filter_shape` is `out_channels x kh x kw x in_channels`. Each output is
/// `clamp(MultiplyByQuantizedMultiplier(sum((x - input_zp) * w) + bias, m[c], s[c]) + output_zp)`;
/// cells in the padding contribute nothing (they read as the input zero point).
/// `p.depth_multiplier` is ignored. The output shape is validated against the
/// input shape, kernel, stride, dilation and top/left padding (see the crate docs).
///
/// Errors: [`KernelError::UnsupportedParams`] for a zero stride, dilation or
/// kernel size or padding at least as large as the dilated kernel;
/// [`KernelError::ShapeMismatch`] for any slice length or shape inconsistency,
/// including a bias or requantization slice of the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    p: &ConvParams,
    rq: Requant<'_>,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    conv2d_in(
        &mut Scratch::new(),
        p,
        rq,
        input_shape,
        input,
        filter_shape,
        filter,
        bias,
        output_shape,
        output,
    )
}

/// [`conv2d`] with caller-provided working memory (reused across layers, it need not
/// be zeroed again for each one).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_in(
    scratch: &mut Scratch,
    p: &ConvParams,
    rq: Requant<'_>,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    ConvLayer::new(p, rq, input_shape, filter_shape, filter, bias, output_shape)?
        .run(scratch, input, output)
}

/// A convolution checked once, as TFLite Micro's `Prepare` does: [`ConvLayer::new`]
/// validates the shapes, axes, filter, bias and requantization, so [`ConvLayer::run`]
/// (once per inference) only compares the two activation lengths.
#[derive(Debug, Clone, Copy)]
pub struct ConvLayer<'a> {
    pub(crate) p: ConvParams,
    rq: Requant<'a>,
    pub(crate) input_shape: Shape,
    pub(crate) filter_shape: Shape,
    pub(crate) filter: &'a [i8],
    bias: Option<&'a [i32]>,
    pub(crate) output_shape: Shape,
    lens: Activations,
    /// The filter in [`conv2d_wide_weights`]' layout, when the caller has it in flash
    /// ([`ConvLayer::with_wide_weights`]); only builds with
    /// [`crate::CONV_USES_WIDE_WEIGHTS`] read it.
    #[cfg_attr(not(all(target_arch = "arm", edgekd_dsp)), allow(dead_code))]
    wide: Option<&'a [i16]>,
    /// Whether the layer, with its table, takes the dense paired-pixel path
    /// ([`ConvLayer::runs_dense`]), decided once by [`ConvLayer::with_wide_weights`].
    #[cfg_attr(
        not(all(target_arch = "arm", edgekd_dsp, not(edgekd_small_kernels))),
        allow(dead_code)
    )]
    dense: bool,
}

/// Entries of [`conv2d_wide_weights`] for a layer of `columns` entries per output pixel
/// (`kh * kw * in_c`) and `out_c` output channels: 10 per channel (its bias and
/// requantization), then the filter with `columns` rounded up to a multiple of four and
/// `out_c` to a multiple of two.
pub const fn conv2d_wide_len(columns: usize, out_c: usize) -> usize {
    CONV_WIDE_CHANNEL_ENTRIES * out_c + columns.next_multiple_of(4) * out_c.next_multiple_of(2)
}

/// Entries of one output channel's bias and single-step requantization: five words
/// as 16-bit halves.
pub(crate) const CONV_WIDE_CHANNEL_ENTRIES: usize = 10;

/// A conv layer prepared for the DSP kernel, [`conv2d_wide_len`] 16-bit entries
/// (firmware generates it at build time):
/// - for each output channel, its bias and single-step requantization with
///   `output_zero_point` folded in (multiplier, the 64-bit nudge's low and high words,
///   right shift), five little-endian words, low half first: the table the kernel
///   otherwise prepares in RAM on every call (zeros for a channel outside that form;
///   a layer with one does not take the table);
/// - the filter (`[out_c][kh][kw][in_c]`, int8: `out_c` rows of `columns` entries)
///   widened to 16 bits in the order the paired-pixel loop reads it:
///   `fc_wide_weights`' filter layout with blocks of two output channels (the loop's
///   channel pair). The loop then loads two entries per word and needs no `SXTB16` per
///   weight: 12 instead of 18 instructions per 16 MACs.
///
/// It costs twice the filter's bytes of flash plus 20 bytes per output channel. `rq`
/// holds one entry or one per output channel, as in [`conv2d`].
pub fn conv2d_wide_weights<'a>(
    filter: &'a [i8],
    bias: Option<&'a [i32]>,
    rq: Requant<'a>,
    output_zero_point: i32,
    columns: usize,
    out_c: usize,
) -> impl Iterator<Item = i16> + 'a {
    use crate::matvec::{halves, prepared_channel};
    let channels = (0..out_c).flat_map(move |c| {
        let (bias, [m, nudge_lo, nudge_hi, shift]) =
            prepared_channel(bias, &rq, output_zero_point, c);
        [bias, m, nudge_lo, nudge_hi, shift]
            .into_iter()
            .flat_map(halves)
    });
    channels.chain(crate::matvec::widened::<2>(filter, columns, out_c))
}

impl<'a> ConvLayer<'a> {
    /// Checks a convolution; the arguments are those of [`conv2d`] without the
    /// activations.
    ///
    /// Errors: as [`conv2d`]'s.
    pub fn new(
        p: &ConvParams,
        rq: Requant<'a>,
        input_shape: Shape,
        filter_shape: Shape,
        filter: &'a [i8],
        bias: Option<&'a [i32]>,
        output_shape: Shape,
    ) -> Result<Self, KernelError> {
        let (_, _, lens) = check_layer(
            p,
            &rq,
            input_shape,
            filter_shape,
            filter,
            bias,
            output_shape,
        )?;
        Ok(ConvLayer {
            p: *p,
            rq,
            input_shape,
            filter_shape,
            filter,
            bias,
            output_shape,
            lens,
            wide: None,
            dense: false,
        })
    }

    /// The layer reading its channels' bias and requantization and its widened filter
    /// from `wide`, the layer in [`conv2d_wide_weights`]' layout (e.g. a `static` the
    /// firmware's build script wrote), compared with the layer entry by entry, so a
    /// stale table is refused rather than computed with. DSP builds
    /// ([`crate::CONV_USES_WIDE_WEIGHTS`]) then prepare no channel table per call and
    /// read the widened filter on the paired-pixel path.
    ///
    /// Errors: [`KernelError::ShapeMismatch`] if `wide` differs from the layer in that
    /// layout or is not 4-byte aligned; [`KernelError::UnsupportedParams`] for a layer
    /// that does not [read](ConvLayer::reads_wide_weights) one.
    pub fn with_wide_weights(mut self, wide: &'a [i16]) -> Result<Self, KernelError> {
        if !self.reads_wide_weights() {
            return Err(KernelError::UnsupportedParams);
        }
        crate::check_table(wide, self.wide_weights())?;
        self.wide = Some(wide);
        self.dense = self.runs_dense();
        Ok(self)
    }

    /// Whether DSP builds with the fast kernels run this layer, once it has its
    /// table ([`ConvLayer::with_wide_weights`], which decides it), on the dense
    /// paired-pixel path: every receptive field a run of the input (1-D signals, where
    /// padding may clip the windows at both ends of a row, or kernels as wide as the
    /// input, unpadded), an even number of output channels, and room in the column
    /// buffer for both pixels' columns rounded up to whole groups of four, at least two
    /// output pixels (they go in pairs) and an input zero point in the int8 range (a
    /// copied window's padding holds it). Such a layer skips the general loop's window
    /// arithmetic and per-call setup.
    pub fn runs_dense(&self) -> bool {
        let (p, fs, ins, outs) = (
            &self.p,
            self.filter_shape,
            self.input_shape,
            self.output_shape,
        );
        let ay = Axis::accepted(ins.h, fs.h, p.stride_h, p.dilation_h, p.pad_top);
        let ax = Axis::accepted(ins.w, fs.w, p.stride_w, p.dilation_w, p.pad_left);
        let groups = (fs.h * fs.w * fs.c).div_ceil(4);
        let rows_whole =
            outs.h > 0 && ay.window(0) == (0, fs.h, 0) && ay.window(outs.h - 1).1 == fs.h;
        // A padded window is filled from one input row.
        let one_row = fs.h == 1 || dense_windows(p, ay, ax, fs, outs);
        self.reads_wide_weights()
            && outs.c % 2 == 0
            && 4 * groups <= PAIR_OFFSET
            && PAIR_OFFSET + 4 * groups <= MAX_COLS
            && contiguous_windows(p, ins, fs)
            && rows_whole
            && one_row
            && outs.n * outs.h * outs.w >= 2
            && i8::try_from(p.input_zero_point).is_ok()
    }

    /// Whether DSP builds ([`crate::CONV_USES_WIDE_WEIGHTS`]) read a widened filter for
    /// this layer: its paired-pixel loop does, for columns of at most 128 entries and at
    /// least two output channels, when the clamp is the whole int8 range and every
    /// channel's requantization is in the single-step form. Firmware generates tables
    /// only for such layers.
    pub fn reads_wide_weights(&self) -> bool {
        let (p, fs) = (&self.p, self.filter_shape);
        let k = fs.h * fs.w * fs.c;
        (1..=PAIR_OFFSET).contains(&k)
            && fs.n >= 2
            && p.clamp.min == i8::MIN
            && p.clamp.max == i8::MAX
            && all_single_step(&self.rq, p.output_zero_point)
    }

    /// This layer's [`conv2d_wide_weights`] table (what [`ConvLayer::with_wide_weights`]
    /// takes), for tools that write it.
    pub fn wide_weights(self) -> impl Iterator<Item = i16> + 'a {
        let (fs, zp) = (self.filter_shape, self.p.output_zero_point);
        conv2d_wide_weights(
            self.filter,
            self.bias,
            self.rq,
            zp,
            fs.h * fs.w * fs.c,
            fs.n,
        )
    }

    /// Runs the convolution: `input` and `output` must hold the elements of the
    /// shapes given to [`ConvLayer::new`].
    ///
    /// Errors: [`KernelError::ShapeMismatch`] for other lengths;
    /// [`KernelError::UnsupportedParams`] from builds without the fallback kernels
    /// (`EDGEKD_FALLBACK=0`) for a layer that needs them ([`conv2d_needs_fallback`]),
    /// and from builds without the general loop (`EDGEKD_CONV_GENERAL=0`) for a layer
    /// that does not run dense ([`ConvLayer::runs_dense`], with its prepared table).
    // Small and out of line: the dense path's frames do not nest inside the general
    // loop's 0.5 KB one, and neither sits under every other op's kernel (as it would
    // inlined into the interpreter's dispatch).
    #[inline(never)]
    pub fn run(
        &self,
        scratch: &mut Scratch,
        input: &[i8],
        output: &mut [i8],
    ) -> Result<(), KernelError> {
        self.lens.check(input, output)?;
        if output.is_empty() {
            return Ok(());
        }
        #[cfg(all(target_arch = "arm", edgekd_dsp, not(edgekd_small_kernels)))]
        if let Some(wide) = self.wide.filter(|_| self.dense) {
            return crate::arm::conv::dense_wide(&mut scratch.cols, self, wide, input, output);
        }
        // Builds whose every conv layer runs dense leave the general loop out (code
        // size; `EDGEKD_CONV_GENERAL=0`, see `Op::needs_conv_general`).
        #[cfg(edgekd_no_conv_general)]
        return Err(KernelError::UnsupportedParams);
        #[cfg(not(edgekd_no_conv_general))]
        self.run_im2col(scratch, input, output)
    }

    /// [`ConvLayer::run`] on the general loop (or the reference), lengths checked.
    #[inline(never)]
    #[cfg_attr(edgekd_no_conv_general, allow(dead_code))]
    fn run_im2col(
        &self,
        scratch: &mut Scratch,
        input: &[i8],
        output: &mut [i8],
    ) -> Result<(), KernelError> {
        let (p, fs) = (&self.p, self.filter_shape);
        let (ins, outs) = (self.input_shape, self.output_shape);
        let ay = Axis::accepted(ins.h, fs.h, p.stride_h, p.dilation_h, p.pad_top);
        let ax = Axis::accepted(ins.w, fs.w, p.stride_w, p.dilation_w, p.pad_left);
        let (rq, filter, bias) = (&self.rq, self.filter, self.bias);
        let k = fs.h * fs.w * ins.c;
        if k <= MAX_COLS {
            let done = im2col(
                scratch, p, rq, ay, ax, ins, input, fs, filter, self.wide, bias, outs, output,
            );
            if done {
                return Ok(());
            }
        }
        // Builds whose model has no such layer leave the reference out (code size; see
        // `conv2d_needs_fallback`).
        #[cfg(edgekd_no_fallback)]
        return Err(KernelError::UnsupportedParams);
        #[cfg(not(edgekd_no_fallback))]
        generic(p, rq, ay, ax, ins, input, fs, filter, bias, outs, output)
    }
}

/// Whether [`conv2d_in`] would run the reference kernel for a layer (its slow
/// fallback) on some build: when a pixel's column has more than 256 entries
/// (`columns` = kernel height x width x input channels), or, on DSP cores, when a
/// channel's requantization does not fit the single-step form (a shift outside
/// `-23..0` or a negative multiplier). Firmware whose model has no such layer is built
/// with `EDGEKD_FALLBACK=0`, which compiles the fallback out (such a layer would then
/// fail with [`KernelError::UnsupportedParams`]).
pub fn conv2d_needs_fallback(columns: usize, rq: Requant<'_>, output_zero_point: i32) -> bool {
    columns > MAX_COLS || !all_single_step(&rq, output_zero_point)
}

/// The portable reference [`conv2d`]: same contract and bits, no im2col, no
/// architecture-specific code.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_reference(
    p: &ConvParams,
    rq: Requant<'_>,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let (ay, ax) = check(
        p,
        &rq,
        input_shape,
        input,
        filter_shape,
        filter,
        bias,
        output_shape,
        output,
    )?;
    if output.is_empty() {
        return Ok(());
    }
    generic(
        p,
        &rq,
        ay,
        ax,
        input_shape,
        input,
        filter_shape,
        filter,
        bias,
        output_shape,
        output,
    )
}

/// Validates a convolution with its activations; returns its two spatial axes.
#[allow(clippy::too_many_arguments)]
fn check(
    p: &ConvParams,
    rq: &Requant<'_>,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &[i8],
) -> Result<(Axis, Axis), KernelError> {
    let (ay, ax, lens) = check_layer(p, rq, input_shape, filter_shape, filter, bias, output_shape)?;
    lens.check(input, output)?;
    Ok((ay, ax))
}

/// Validates a convolution's shapes and constants; returns its two spatial axes and
/// activation lengths.
fn check_layer(
    p: &ConvParams,
    rq: &Requant<'_>,
    input_shape: Shape,
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
) -> Result<(Axis, Axis, Activations), KernelError> {
    let ay = Axis::new(
        input_shape.h,
        output_shape.h,
        filter_shape.h,
        p.stride_h,
        p.dilation_h,
        p.pad_top,
    )?;
    let ax = Axis::new(
        input_shape.w,
        output_shape.w,
        filter_shape.w,
        p.stride_w,
        p.dilation_w,
        p.pad_left,
    )?;
    let elements = |s: Shape| s.elements().ok_or(KernelError::ShapeMismatch);
    let lens = Activations {
        input: elements(input_shape)?,
        output: elements(output_shape)?,
    };
    check_len(filter.len(), filter_shape)?;
    let out_c = output_shape.c;
    if filter_shape.n != out_c || filter_shape.c != input_shape.c || output_shape.n != input_shape.n
    {
        return Err(KernelError::ShapeMismatch);
    }
    check_bias(bias, out_c)?;
    check_requant(rq, out_c)?;
    Ok((ay, ax, lens))
}

/// Whether the rows of a full window follow each other in the input: one row, or a
/// filter row spanning the whole input row, without dilation.
fn contiguous_windows(p: &ConvParams, input_shape: Shape, filter_shape: Shape) -> bool {
    let (f_row, in_row) = (
        filter_shape.w * input_shape.c,
        input_shape.w * input_shape.c,
    );
    p.dilation_w == 1 && (filter_shape.h == 1 || (p.dilation_h == 1 && f_row == in_row))
}

/// Whether every window lies wholly inside the input (no padding reaches it): the first
/// and last windows of both axes are full, so all between are, and with no left padding
/// and no dilation column `ox`'s window starts at input column `ox * stride_w`.
fn dense_windows(
    p: &ConvParams,
    ay: Axis,
    ax: Axis,
    filter_shape: Shape,
    output_shape: Shape,
) -> bool {
    let (kh, kw) = (filter_shape.h, filter_shape.w);
    p.dilation_w == 1
        && output_shape.h > 0
        && output_shape.w > 0
        && ay.window(0) == (0, kh, 0)
        && ay.window(output_shape.h - 1).1 == kh
        && ax.window(0) == (0, kw, 0)
        && ax.window(output_shape.w - 1).1 == kw
}

/// Gathers each output pixel's receptive field into an i16 column (`x - zp`, zeros in
/// the padding) and multiplies it with all filters at once; on DSP cores two pixels'
/// columns at a time ([`PAIR_PIXELS`]). Returns `false` when the build's channel table
/// cannot take the layer's requantization; the caller then runs the reference kernel,
/// which rewrites every output.
#[allow(clippy::too_many_arguments)]
fn im2col(
    scratch: &mut Scratch,
    p: &ConvParams,
    rq: &Requant<'_>,
    ay: Axis,
    ax: Axis,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    wide: Option<&[i16]>,
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> bool {
    let in_c = input_shape.c;
    let in_row = input_shape.w * in_c;
    let in_img = input_shape.h * in_row;
    let (kh, kw) = (filter_shape.h, filter_shape.w);
    let f_row = kw * in_c;
    let k = kh * f_row;
    let (dh, dw) = (p.dilation_h, p.dilation_w);
    let zp = p.input_zero_point;
    let q = OutQ {
        zero_point: p.output_zero_point,
        lo: i32::from(p.clamp.min),
        hi: i32::from(p.clamp.max),
    };
    let contiguous = contiguous_windows(p, input_shape, filter_shape);
    let out_c = output_shape.c;
    let dense = dense_windows(p, ay, ax, filter_shape, output_shape);
    #[cfg(not(edgekd_no_channel_table))]
    let (cols, table) = crate::matvec::layer_scratch(scratch);
    #[cfg(edgekd_no_channel_table)]
    let (cols, _) = (&mut scratch.cols, (rq, bias));
    // Only the DSP paired-pixel loop reads a widened filter.
    #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
    let _ = wide;
    // The second column of a pair starts at a fixed place (see `PAIR_OFFSET`).
    let second = PAIR_OFFSET;
    let pair = PAIR_PIXELS && k <= PAIR_OFFSET && PAIR_OFFSET + k <= MAX_COLS;
    // Output channels in blocks whose bias and requantization are prepared once; models
    // with at most `BLOCK` output channels (all the reference ones) make one pass.
    for c0 in (0..out_c).step_by(BLOCK) {
        let n = BLOCK.min(out_c - c0);
        // DSP builds read the channels from the layer's prepared table when it has one.
        #[cfg(all(target_arch = "arm", edgekd_dsp, not(edgekd_small_kernels)))]
        let prepared = crate::arm::table::prepared_channels(wide, out_c, c0, n);
        #[cfg(not(all(target_arch = "arm", edgekd_dsp, not(edgekd_small_kernels))))]
        let prepared = None;
        let chans = match prepared {
            Some(chans) => chans,
            // Builds without the channel table (`EDGEKD_CHANNEL_TABLE=0`) run a layer
            // without a prepared table on the reference kernel.
            #[cfg(edgekd_no_channel_table)]
            None => return false,
            #[cfg(not(edgekd_no_channel_table))]
            None => match table.prepare_layer(bias, rq, q.zero_point, c0, n) {
                Some(chans) => chans,
                None => return false,
            },
        };
        let filter = &filter[c0 * k..][..n * k];
        // This block's channel pairs in the widened filter (`8 * groups` entries each),
        // read in whole groups of four: the second column needs room for `k` rounded up
        // (the first has it: `k <= PAIR_OFFSET`, a multiple of four).
        let groups = k.div_ceil(4);
        let wide = wide
            .filter(|_| pair && PAIR_OFFSET + 4 * groups <= MAX_COLS)
            .and_then(|w| w.get(CONV_WIDE_CHANNEL_ENTRIES * out_c + c0 * 4 * groups..))
            .and_then(|w| w.get(..n / 2 * 8 * groups));
        // The small kernels keep only the general loop (this one is a second
        // copy of the pair kernel: 2.5 KB for 3 % of tiny_cnn's instructions).
        #[cfg(all(target_arch = "arm", edgekd_dsp))]
        if !cfg!(edgekd_small_kernels) && pair && dense && contiguous {
            dense_pairs(
                cols,
                chans,
                q,
                zp,
                input_shape,
                input,
                output_shape,
                output,
                p.stride_h * in_row,
                p.stride_w * in_c,
                k,
                c0,
                filter,
            );
            continue;
        }
        // A pixel whose column waits in the first slot for a partner.
        let mut waiting: Option<&mut [i8]> = None;
        let mut out_px = output.chunks_exact_mut(out_c);
        'pixels: for img in input.chunks_exact(in_img).take(input_shape.n) {
            for oy in 0..output_shape.h {
                let (ky0, ky1, iy0) = ay.window(oy);
                let row_full = ky0 == 0 && ky1 == kh;
                for ox in 0..output_shape.w {
                    let Some(out) = out_px.next() else {
                        break 'pixels;
                    };
                    let out = &mut out[c0..][..n];
                    let (first, rest) = cols.0.split_at_mut(if pair { second } else { MAX_COLS });
                    let col = if waiting.is_some() {
                        &mut rest[..k]
                    } else {
                        &mut first[..k]
                    };
                    // Unpadded layers (every window full) skip the window arithmetic.
                    let (kx0, kx1, ix0) = if dense {
                        (0, kw, ox * p.stride_w)
                    } else {
                        ax.window(ox)
                    };
                    let full = dense || (row_full && kx0 == 0 && kx1 == kw);
                    if full && contiguous {
                        // The whole receptive field is one run of the input (1-D
                        // signals, or kernels as wide as the input): widen and pack in
                        // one pass.
                        let start = iy0 * in_row + ix0 * in_c;
                        widen_pack(col, &img[start..][..k], zp);
                    } else {
                        if !full {
                            // Padding reads as the zero point: (zp - zp) = 0.
                            col.fill(0);
                        }
                        let mut iy = iy0;
                        for ky in ky0..ky1 {
                            let row = &img[iy * in_row..][..in_row];
                            let dst = &mut col[ky * f_row..][..f_row];
                            if dw == 1 {
                                let n = (kx1 - kx0) * in_c;
                                widen(&mut dst[kx0 * in_c..][..n], &row[ix0 * in_c..][..n], zp);
                            } else {
                                let mut ix = ix0;
                                for kx in kx0..kx1 {
                                    widen(
                                        &mut dst[kx * in_c..][..in_c],
                                        &row[ix * in_c..][..in_c],
                                        zp,
                                    );
                                    ix += dw;
                                }
                            }
                            iy += dh;
                        }
                        pack(col);
                    }
                    if let Some(prev) = waiting.take() {
                        matvec2(&first[..k], &rest[..k], filter, wide, chans, q, prev, out);
                    } else if pair {
                        waiting = Some(out);
                    } else {
                        matvec(&first[..k], filter, chans, q, out);
                    }
                }
            }
        }
        if let Some(prev) = waiting {
            matvec(&cols.0[..k], filter, chans, q, prev);
        }
    }
    true
}

/// [`im2col`]'s pixel loop for paired layers whose every receptive field is one run of
/// the input (`dense` and `contiguous`: 1-D signals, kernels as wide as the input):
/// pixel `(oy, ox)`'s column starts at `oy * step_y + ox * step_x`, so the loop is
/// one widening per pixel and one [`matvec2`] per pair, without the window
/// arithmetic of the general loop. It serves layers without a prepared table (or with
/// an odd channel count); the others take `arm::conv::dense_wide`.
#[cfg(all(target_arch = "arm", edgekd_dsp))]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn dense_pairs(
    cols: &mut crate::matvec::Cols,
    chans: &[crate::arm::matvec::Chan],
    q: OutQ,
    zp: i32,
    input_shape: Shape,
    input: &[i8],
    output_shape: Shape,
    output: &mut [i8],
    step_y: usize,
    step_x: usize,
    k: usize,
    c0: usize,
    filter: &[i8],
) {
    let n = chans.len();
    let in_img = input_shape.h * input_shape.w * input_shape.c;
    let (first, rest) = cols.0.split_at_mut(PAIR_OFFSET);
    let (col_a, col_b) = (&mut first[..k], &mut rest[..k]);
    let Some(filter) = filter.get(..n * k) else {
        return;
    };
    // Whole-range layers with an even number of channels go straight to the asm
    // channel loop (the checks `matvec2` makes per pair hold for the whole layer).
    let direct = q.lo <= -128 && q.hi >= 127 && n % 2 == 0 && n > 0 && k <= PAIR_OFFSET;
    let mut waiting: Option<&mut [i8]> = None;
    let mut out_px = output.chunks_exact_mut(output_shape.c);
    for img in input.chunks_exact(in_img).take(input_shape.n) {
        for oy in 0..output_shape.h {
            let row = oy * step_y;
            for ox in 0..output_shape.w {
                let (Some(out), Some(x)) = (out_px.next(), img.get(row + ox * step_x..)) else {
                    return;
                };
                let (Some(out), Some(x)) = (out.get_mut(c0..c0 + n), x.get(..k)) else {
                    return;
                };
                match waiting.take() {
                    None => {
                        widen_pack(col_a, x, zp);
                        waiting = Some(out);
                    }
                    Some(prev) => {
                        widen_pack(col_b, x, zp);
                        if direct {
                            // SAFETY: `col_a` starts the 8-byte aligned buffer and
                            // `col_b` is `PAIR_OFFSET` entries on, both `k <=
                            // PAIR_OFFSET` long (the caller pairs only such layers);
                            // `filter` holds `n * k` bytes, `chans`, `prev` and `out`
                            // `n = 2 * (n / 2)` entries; the table's shifts come from
                            // `RoundingRq::new` (at most 22).
                            unsafe {
                                crate::arm::matvec::pair_rows_i8(
                                    col_a.as_ptr(),
                                    k,
                                    filter.as_ptr(),
                                    chans.as_ptr(),
                                    prev.as_mut_ptr(),
                                    out.as_mut_ptr(),
                                    n / 2,
                                );
                            }
                        } else {
                            // A narrowed clamp or an odd channel count.
                            matvec2(col_a, col_b, filter, None, chans, q, prev, out);
                        }
                    }
                }
            }
        }
    }
    if let Some(prev) = waiting {
        matvec(col_a, filter, chans, q, prev);
    }
}

/// Direct convolution for any column length (the reference).
#[allow(clippy::too_many_arguments)]
fn generic(
    p: &ConvParams,
    rq: &Requant<'_>,
    ay: Axis,
    ax: Axis,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let out_c = output_shape.c;
    // All products below are bounded by the (validated) slice lengths.
    let in_c = input_shape.c;
    let in_row = input_shape.w * in_c;
    let in_img = input_shape.h * in_row;
    let f_row = filter_shape.w * in_c;
    let f_oc = filter_shape.h * f_row;
    let (dh, dw) = (p.dilation_h, p.dilation_w);
    let zp = p.input_zero_point;
    let ozp = p.output_zero_point;
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    let per_tensor = rq.multiplier.len() == 1;

    let mut out_px = output.chunks_exact_mut(out_c);
    for b in 0..input_shape.n {
        let img = &input[b * in_img..][..in_img];
        for oy in 0..output_shape.h {
            let (ky0, ky1, iy0) = ay.window(oy);
            for ox in 0..output_shape.w {
                let (kx0, kx1, ix0) = ax.window(ox);
                let Some(out) = out_px.next() else {
                    return Err(KernelError::ShapeMismatch);
                };
                for (oc, o) in out.iter_mut().enumerate() {
                    let f = &filter[oc * f_oc..][..f_oc];
                    let mut acc = bias.map_or(0, |bias| bias[oc]);
                    let mut iy = iy0;
                    for ky in ky0..ky1 {
                        let row = &img[iy * in_row..][..in_row];
                        let frow = &f[ky * f_row..][..f_row];
                        if dw == 1 {
                            let n = (kx1 - kx0) * in_c;
                            acc = dot(acc, &row[ix0 * in_c..][..n], &frow[kx0 * in_c..][..n], zp);
                        } else {
                            let mut ix = ix0;
                            for kx in kx0..kx1 {
                                acc = dot(
                                    acc,
                                    &row[ix * in_c..][..in_c],
                                    &frow[kx * in_c..][..in_c],
                                    zp,
                                );
                                ix += dw;
                            }
                        }
                        iy += dh;
                    }
                    let (m, s) = if per_tensor {
                        (rq.multiplier[0], rq.shift[0])
                    } else {
                        (rq.multiplier[oc], rq.shift[oc])
                    };
                    *o = requantize(acc, m, s, ozp, lo, hi);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::{whole_windows, Axis};

    /// `whole_windows` against every window of every valid axis up to a small size:
    /// exactly the outputs `lo..hi` have windows of the whole kernel (the DSP dense path
    /// widens whole groups of input for those, with no padding check).
    #[test]
    fn whole_windows_are_the_windows_of_the_whole_kernel() {
        let mut axes = 0;
        for input in 1..12 {
            for kernel in 1..6 {
                for stride in 1..4 {
                    for pad in 0..kernel {
                        for output in 1..16 {
                            let Ok(ax) = Axis::new(input, output, kernel, stride, 1, pad) else {
                                continue;
                            };
                            axes += 1;
                            let (lo, hi) = whole_windows(input, kernel, stride, pad, output);
                            for o in 0..output {
                                let (k0, k1, _) = ax.window(o);
                                let whole = k0 == 0 && k1 == kernel;
                                assert_eq!(
                                    whole,
                                    (lo..hi).contains(&o),
                                    "input {input} kernel {kernel} stride {stride} pad {pad} \
                                     output {o} of {output}: {lo}..{hi}"
                                );
                            }
                        }
                    }
                }
            }
        }
        assert!(axes > 200, "{axes}");
    }
}
