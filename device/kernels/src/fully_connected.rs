//! Fully connected layer (TFLite int8 `FullyConnected`, per-channel capable).

#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
use crate::matvec::layer_scratch;
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
use crate::matvec::OutQ;
#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
use crate::matvec::BLOCK;
use crate::matvec::{widen_pack, MAX_COLS};
use crate::quant::{all_single_step, requantize, rounding_shift_fits};
use crate::{check_bias, check_requant, dot, Activations, FcParams, KernelError, Requant, Scratch};

/// int8 fully connected layer: `output[b][o] = requant(sum_i (x[b][i] - input_zp) * w[o][i] + bias[o])`.
///
/// `filter` is `[out_features][in_features]` row-major; the batch is
/// `input.len() / in_features` (must divide exactly) and `output` holds
/// `batch * out_features` values. `rq` is per tensor or per output feature.
///
/// Errors: [`KernelError::UnsupportedParams`] if `in_features == 0`;
/// [`KernelError::ShapeMismatch`] for any slice length inconsistency.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected(
    p: &FcParams,
    rq: Requant<'_>,
    input: &[i8],
    in_features: usize,
    filter: &[i8],
    bias: Option<&[i32]>,
    out_features: usize,
    output: &mut [i8],
) -> Result<(), KernelError> {
    fully_connected_in(
        &mut Scratch::new(),
        p,
        rq,
        input,
        in_features,
        filter,
        bias,
        out_features,
        output,
    )
}

/// [`fully_connected`] with caller-provided working memory (reused across layers, it
/// need not be zeroed again for each one).
#[allow(clippy::too_many_arguments)]
pub fn fully_connected_in(
    scratch: &mut Scratch,
    p: &FcParams,
    rq: Requant<'_>,
    input: &[i8],
    in_features: usize,
    filter: &[i8],
    bias: Option<&[i32]>,
    out_features: usize,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let layer = FcLayer::new(
        p,
        rq,
        in_features,
        filter,
        bias,
        out_features,
        input.len(),
        output.len(),
    )?;
    layer.run(scratch, input, output)
}

/// A fully connected layer checked once, as TFLite Micro's `Prepare` does: every
/// length and the requantization's form are settled by [`FcLayer::new`], so
/// [`FcLayer::run`] (once per inference) only compares the two activation lengths.
#[derive(Debug, Clone, Copy)]
pub struct FcLayer<'a> {
    pub(crate) p: FcParams,
    pub(crate) rq: Requant<'a>,
    /// `[out_features][in_features]`, exactly.
    pub(crate) filter: &'a [i8],
    /// `out_features` entries when present.
    pub(crate) bias: Option<&'a [i32]>,
    /// At least 1.
    pub(crate) in_features: usize,
    pub(crate) out_features: usize,
    lens: Activations,
    /// Read by the DSP rows; the portable blocks prepare each channel's form.
    #[cfg_attr(not(all(target_arch = "arm", edgekd_dsp)), allow(dead_code))]
    pub(crate) form: RqForm,
    /// The filter in [`fc_wide_weights`]' layout, when the caller has it in flash
    /// ([`FcLayer::with_wide_weights`]); only builds with
    /// [`crate::FC_USES_WIDE_WEIGHTS`] read it.
    #[cfg_attr(not(all(target_arch = "arm", edgekd_dsp)), allow(dead_code))]
    pub(crate) wide: Option<&'a [i16]>,
}

/// Entries of [`fc_wide_weights`] for a layer: per block of four output rows, the
/// filter with both dimensions rounded up to a multiple of four, plus 40 entries of
/// biases and requantization.
pub const fn fc_wide_len(in_features: usize, out_features: usize) -> usize {
    out_features.div_ceil(4) * (16 * in_features.div_ceil(4) + FC_WIDE_CHANNEL_ENTRIES)
}

/// Entries of one block's four biases (a word each) and four single-step
/// requantizations (four words each), as 16-bit halves.
const FC_WIDE_CHANNEL_ENTRIES: usize = 2 * (4 + 4 * 4);

/// A fully connected layer prepared for the DSP kernel, [`fc_wide_len`] 16-bit entries
/// (firmware generates it at build time; it costs a little over twice the filter's
/// bytes of flash). For each block of four output rows, in the order the kernel reads
/// them:
/// - the four rows' biases, one little-endian word each (two entries, low half first);
/// - the filter widened to 16 bits: for each group of four input columns, the four
///   rows' entries of that group, in the order `0, 2, 1, 3` (the packed column's order)
///   for full groups, in natural order for the last group of a row whose length is not
///   a multiple of four, with zeros beyond the last row and column. The kernel then
///   loads two entries per word and needs no `SXTB16` per weight (CMSIS-NN's legacy
///   `arm_fully_connected_q7_opt` reorders its weights offline the same way);
/// - the four rows' single-step requantizations with `output_zero_point` folded in
///   (multiplier, the 64-bit nudge's low and high words, right shift: four words
///   each), so the kernel requantizes each block's four accumulators while they are
///   still in registers.
///
/// Rows past `out_features` have zero biases and requantizations; so does a channel
/// outside the single-step form (a layer with one is refused by
/// [`FcLayer::with_wide_weights`]). `rq` holds one entry for the whole layer or one per
/// output row, as in [`fully_connected`].
pub fn fc_wide_weights<'a>(
    filter: &'a [i8],
    bias: Option<&'a [i32]>,
    rq: Requant<'a>,
    output_zero_point: i32,
    in_features: usize,
    out_features: usize,
) -> impl Iterator<Item = i16> + 'a {
    use crate::matvec::{halves, prepared_channel};
    let channel = move |row: usize| match row < out_features {
        true => prepared_channel(bias, &rq, output_zero_point, row),
        false => (0, [0; 4]),
    };
    (0..out_features.div_ceil(4)).flat_map(move |b| {
        let rows = 4 * b..4 * b + 4;
        let biases = rows.clone().flat_map(move |row| halves(channel(row).0));
        let filter = crate::matvec::widened_block::<4>(filter, in_features, out_features, b);
        let rqs = rows.flat_map(move |row| channel(row).1.into_iter().flat_map(halves));
        biases.chain(filter).chain(rqs)
    })
}

/// How a layer's outputs are requantized: `rq` holds one entry or `out_features`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RqForm {
    /// One multiplier and shift, in [`crate::quant::rounding_shift`]'s single-step form.
    OneFits,
    /// One per output feature, every one in the single-step form.
    AllFit,
    /// Some channel needs TFLite's two-step form.
    Mixed,
}

impl<'a> FcLayer<'a> {
    /// Checks a layer for inputs of `input_len` values (a whole number of rows of
    /// `in_features`) and outputs of `output_len`; the arguments are those of
    /// [`fully_connected`].
    ///
    /// Errors: as [`fully_connected`]'s.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: &FcParams,
        rq: Requant<'a>,
        in_features: usize,
        filter: &'a [i8],
        bias: Option<&'a [i32]>,
        out_features: usize,
        input_len: usize,
        output_len: usize,
    ) -> Result<Self, KernelError> {
        check(
            &rq,
            input_len,
            in_features,
            filter,
            bias,
            out_features,
            output_len,
        )?;
        let fits = |(&m, &s): (&i32, &i32)| rounding_shift_fits(m, s);
        let all_fit = rq.multiplier.iter().zip(rq.shift).all(fits);
        let form = match (all_fit, rq.multiplier.len()) {
            (false, _) => RqForm::Mixed,
            (true, 1) => RqForm::OneFits,
            (true, _) => RqForm::AllFit,
        };
        Ok(FcLayer {
            p: *p,
            rq,
            filter,
            bias,
            in_features,
            out_features,
            lens: Activations {
                input: input_len,
                output: output_len,
            },
            form,
            wide: None,
        })
    }

    /// Whether DSP builds ([`crate::FC_USES_WIDE_WEIGHTS`]) run this layer from its
    /// [`fc_wide_weights`] table, so firmware generates one: every layer the fast
    /// kernel takes ([`fully_connected_needs_fallback`]) whose channels all fit the
    /// single-step requantization (a dividing shift and a non-negative multiplier).
    pub fn reads_wide_weights(&self) -> bool {
        !fully_connected_needs_fallback(self.in_features)
            && all_single_step(&self.rq, self.p.output_zero_point)
    }

    /// This layer's [`fc_wide_weights`] table (what [`FcLayer::with_wide_weights`]
    /// takes), for tools that write it.
    pub fn wide_weights(self) -> impl Iterator<Item = i16> + 'a {
        let (k, n, zp) = (
            self.in_features,
            self.out_features,
            self.p.output_zero_point,
        );
        fc_wide_weights(self.filter, self.bias, self.rq, zp, k, n)
    }

    /// The layer reading its filter, biases and requantization from `wide`, the layer in
    /// [`fc_wide_weights`]' layout (e.g. a `static` the firmware's build script wrote).
    /// `wide` is compared with the layer entry by entry, so a stale table is refused
    /// rather than computed with.
    ///
    /// Errors: [`KernelError::ShapeMismatch`] if `wide` differs from the layer in that
    /// layout or is not 4-byte aligned (the kernel loads it a word at a time);
    /// [`KernelError::UnsupportedParams`] for a layer that does not
    /// [read](FcLayer::reads_wide_weights) one (too many input features for the fast
    /// kernel, or a channel outside the single-step requantization).
    pub fn with_wide_weights(mut self, wide: &'a [i16]) -> Result<Self, KernelError> {
        if !self.reads_wide_weights() {
            return Err(KernelError::UnsupportedParams);
        }
        crate::check_table(wide, self.wide_weights())?;
        self.wide = Some(wide);
        Ok(self)
    }

    /// Runs the layer: `input` and `output` must have the lengths given to
    /// [`FcLayer::new`].
    ///
    /// Errors: [`KernelError::ShapeMismatch`] for other lengths;
    /// [`KernelError::UnsupportedParams`] from builds without the fallback kernels
    /// (`EDGEKD_FALLBACK=0`) for a layer that needs them
    /// ([`fully_connected_needs_fallback`]), and from builds without the plain rows
    /// (`EDGEKD_FC_PLAIN=0`) for a layer without its prepared table.
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
        let (in_features, out_features) = (self.in_features, self.out_features);
        if fully_connected_needs_fallback(in_features) {
            // Builds whose model has no such layer leave the reference out (code size;
            // see `fully_connected_needs_fallback`).
            #[cfg(edgekd_no_fallback)]
            return Err(KernelError::UnsupportedParams);
            #[cfg(not(edgekd_no_fallback))]
            {
                generic(
                    &self.p,
                    &self.rq,
                    input,
                    in_features,
                    self.filter,
                    self.bias,
                    out_features,
                    output,
                );
                return Ok(());
            }
        }
        let p = &self.p;
        #[cfg(all(target_arch = "arm", edgekd_dsp))]
        let cols = &mut scratch.cols;
        #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
        let (cols, table) = layer_scratch(scratch);
        // DSP cores requantize each channel on the fly (it is used once per row). The
        // rows see the column rounded up to whole groups of four entries (the widened
        // filter's zeros meet the entries past `in_features`).
        #[cfg(all(target_arch = "arm", edgekd_dsp))]
        {
            // Builds without the plain rows (`EDGEKD_FC_PLAIN=0`) need the table.
            #[cfg(edgekd_no_fc_plain)]
            if self.wide.is_none() {
                return Err(KernelError::UnsupportedParams);
            }
            for (x, out) in input
                .chunks_exact(in_features)
                .zip(output.chunks_exact_mut(out_features))
            {
                widen_pack(&mut cols.0[..in_features], x, p.input_zero_point);
                let col = &cols.0[..in_features.next_multiple_of(4)];
                crate::arm::fully_connected::fc_row(col, self, out);
            }
        }
        // Portable: output features in blocks whose bias and requantization are prepared
        // once.
        #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
        {
            let col = &mut cols.0[..in_features];
            let q = OutQ {
                zero_point: p.output_zero_point,
                lo: i32::from(p.clamp.min),
                hi: i32::from(p.clamp.max),
            };
            for c0 in (0..out_features).step_by(BLOCK) {
                let n = BLOCK.min(out_features - c0);
                let chans = table.prepare(self.bias, &self.rq, c0, n);
                let filter = &self.filter[c0 * in_features..][..n * in_features];
                for (x, out) in input
                    .chunks_exact(in_features)
                    .zip(output.chunks_exact_mut(out_features))
                {
                    widen_pack(col, x, p.input_zero_point);
                    crate::matvec::matvec(col, filter, chans, q, &mut out[c0..][..n]);
                }
            }
        }
        Ok(())
    }
}

/// Whether [`fully_connected_in`] would run the reference kernel for a layer (its
/// slow fallback): when it has more than 256 input features. Firmware whose model has
/// no such layer is built with `EDGEKD_FALLBACK=0`, which compiles the fallback out.
pub fn fully_connected_needs_fallback(in_features: usize) -> bool {
    in_features > MAX_COLS
}

/// The portable reference [`fully_connected`]: same contract and bits, no
/// architecture-specific code.
#[allow(clippy::too_many_arguments)]
pub fn fully_connected_reference(
    p: &FcParams,
    rq: Requant<'_>,
    input: &[i8],
    in_features: usize,
    filter: &[i8],
    bias: Option<&[i32]>,
    out_features: usize,
    output: &mut [i8],
) -> Result<(), KernelError> {
    check(
        &rq,
        input.len(),
        in_features,
        filter,
        bias,
        out_features,
        output.len(),
    )?;
    generic(
        p,
        &rq,
        input,
        in_features,
        filter,
        bias,
        out_features,
        output,
    );
    Ok(())
}

fn check(
    rq: &Requant<'_>,
    input_len: usize,
    in_features: usize,
    filter: &[i8],
    bias: Option<&[i32]>,
    out_features: usize,
    output_len: usize,
) -> Result<(), KernelError> {
    if in_features == 0 {
        return Err(KernelError::UnsupportedParams);
    }
    if input_len % in_features != 0
        || out_features.checked_mul(in_features) != Some(filter.len())
        || (input_len / in_features).checked_mul(out_features) != Some(output_len)
    {
        return Err(KernelError::ShapeMismatch);
    }
    check_bias(bias, out_features)?;
    check_requant(rq, out_features)?;
    Ok(())
}

/// Direct per-row dot products (the reference).
#[allow(clippy::too_many_arguments)]
fn generic(
    p: &FcParams,
    rq: &Requant<'_>,
    input: &[i8],
    in_features: usize,
    filter: &[i8],
    bias: Option<&[i32]>,
    out_features: usize,
    output: &mut [i8],
) {
    let zp = p.input_zero_point;
    let ozp = p.output_zero_point;
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    let per_tensor = rq.multiplier.len() == 1;
    for (x, out) in input
        .chunks_exact(in_features)
        .zip(output.chunks_exact_mut(out_features))
    {
        for (oc, (o, w)) in out
            .iter_mut()
            .zip(filter.chunks_exact(in_features))
            .enumerate()
        {
            let acc = dot(bias.map_or(0, |bias| bias[oc]), x, w, zp);
            let (m, s) = if per_tensor {
                (rq.multiplier[0], rq.shift[0])
            } else {
                (rq.multiplier[oc], rq.shift[oc])
            };
            *o = requantize(acc, m, s, ozp, lo, hi);
        }
    }
}
