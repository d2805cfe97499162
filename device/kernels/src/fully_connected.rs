//! Fully connected layer (TFLite int8 `FullyConnected`, per-channel capable).

#[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
use crate::matvec::BLOCK;
use crate::matvec::{layer_scratch, widen_pack, OutQ, MAX_COLS};
use crate::quant::requantize;
use crate::{check_bias, check_requant, dot, FcParams, KernelError, Requant, Scratch};

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
    check(
        p,
        &rq,
        input,
        in_features,
        filter,
        bias,
        out_features,
        output,
    )?;
    if output.is_empty() {
        return Ok(());
    }
    if fully_connected_needs_fallback(in_features) {
        // Builds whose model has no such layer leave the reference out (code size;
        // see `fully_connected_needs_fallback`).
        #[cfg(edgekd_no_fallback)]
        return Err(KernelError::UnsupportedParams);
        #[cfg(not(edgekd_no_fallback))]
        {
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
            return Ok(());
        }
    }
    let q = OutQ {
        zero_point: p.output_zero_point,
        lo: i32::from(p.clamp.min),
        hi: i32::from(p.clamp.max),
    };
    let (cols, table) = layer_scratch(scratch);
    let col = &mut cols.0[..in_features];
    // DSP cores requantize each channel on the fly (it is used once per row).
    #[cfg(all(target_arch = "arm", edgekd_dsp))]
    {
        let _ = table;
        for (x, out) in input
            .chunks_exact(in_features)
            .zip(output.chunks_exact_mut(out_features))
        {
            widen_pack(col, x, p.input_zero_point);
            crate::arm::fully_connected::fc_row(col, filter, bias, &rq, q, out);
        }
    }
    // Portable: output features in blocks whose bias and requantization are prepared
    // once.
    #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
    for c0 in (0..out_features).step_by(BLOCK) {
        let n = BLOCK.min(out_features - c0);
        let chans = table.prepare(bias, &rq, c0, n);
        let filter = &filter[c0 * in_features..][..n * in_features];
        for (x, out) in input
            .chunks_exact(in_features)
            .zip(output.chunks_exact_mut(out_features))
        {
            widen_pack(col, x, p.input_zero_point);
            crate::matvec::matvec(col, filter, chans, q, &mut out[c0..][..n]);
        }
    }
    Ok(())
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
        p,
        &rq,
        input,
        in_features,
        filter,
        bias,
        out_features,
        output,
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

#[allow(clippy::too_many_arguments)]
fn check(
    _p: &FcParams,
    rq: &Requant<'_>,
    input: &[i8],
    in_features: usize,
    filter: &[i8],
    bias: Option<&[i32]>,
    out_features: usize,
    output: &[i8],
) -> Result<(), KernelError> {
    if in_features == 0 {
        return Err(KernelError::UnsupportedParams);
    }
    if input.len() % in_features != 0
        || out_features.checked_mul(in_features) != Some(filter.len())
        || (input.len() / in_features).checked_mul(out_features) != Some(output.len())
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
