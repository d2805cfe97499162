//! Losses on candle tensors, built from `log_softmax` (candle has no `kl_div`).
//!
//! All reductions are "batchmean": a sum over classes, a mean over samples. Teacher
//! distributions are constants (no gradient flows into the teacher); the teacher's own
//! entropy terms are included so each loss equals the KL divergence it names, not just its
//! gradient.

use anyhow::{ensure, Result};
use candle_core::{Tensor, D};
use candle_nn::ops::log_softmax;

/// Cross-entropy with soft targets, averaged over samples whose `mask` is 1.
///
/// `logits` `[n, k]`, `targets` `[n, k]` (rows sum to 1 for labelled samples), `mask` `[n]`.
pub fn soft_cross_entropy(logits: &Tensor, targets: &Tensor, mask: &Tensor) -> Result<Tensor> {
    let per = (targets * log_softmax(logits, D::Minus1)?)?.sum(1)?.neg()?;
    let count = mask
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?;
    Ok(((per * mask)?.sum_all()? / count.max(1.0))?)
}

fn xlogx(p: f64) -> f64 {
    if p > 0.0 {
        p * p.ln()
    } else {
        0.0
    }
}

/// `T^2 * KL(teacher_T || student_T)`, batchmean. `teacher_t` `[n, k]` holds the teacher's
/// probabilities at temperature `T` (for an ensemble: the mean of the members' tempered
/// probabilities).
pub fn hinton_kd(logits: &Tensor, teacher_t: &[f32], t: f64) -> Result<Tensor> {
    let (n, k) = logits.dims2()?;
    ensure!(
        teacher_t.len() == n * k,
        "teacher outputs do not match the batch"
    );
    let p = Tensor::from_slice(teacher_t, (n, k), logits.device())?.to_dtype(logits.dtype())?;
    let neg_entropy: f64 = teacher_t.iter().map(|&v| xlogx(f64::from(v))).sum();
    let cross = (p * log_softmax(&(logits / t)?, D::Minus1)?)?.sum_all()?;
    let kl = ((cross.neg()? + neg_entropy)? / n as f64)?;
    Ok((kl * (t * t))?)
}

/// Decoupled KD (Zhao et al., CVPR 2022): `T^2 * (a * TCKD + b * NCKD)`, batchmean.
///
/// TCKD is the binary KL on (target, rest); NCKD the KL among the non-target classes.
/// `target` holds one class per sample (the label, or the teacher's argmax for unlabelled
/// samples).
pub fn dkd(
    logits: &Tensor,
    teacher_t: &[f32],
    target: &[u32],
    t: f64,
    a: f64,
    b: f64,
) -> Result<Tensor> {
    let (n, k) = logits.dims2()?;
    ensure!(
        teacher_t.len() == n * k && target.len() == n,
        "teacher outputs do not match the batch"
    );
    let dev = logits.device();
    let dt = logits.dtype();
    let mut gt = vec![0f32; n * k];
    let mut pt_gt = vec![0f64; n];
    let mut q = vec![0f32; n * k];
    let mut tckd_const = 0.0;
    let mut nckd_const = 0.0;
    for i in 0..n {
        let c = target[i] as usize;
        ensure!(c < k, "target class {c} out of range");
        gt[i * k + c] = 1.0;
        let row = &teacher_t[i * k..(i + 1) * k];
        let pg = f64::from(row[c]).clamp(0.0, 1.0);
        pt_gt[i] = pg;
        tckd_const += xlogx(pg) + xlogx(1.0 - pg);
        let rest = (1.0 - pg).max(1e-12);
        for j in 0..k {
            if j != c {
                let v = f64::from(row[j]) / rest;
                q[i * k + j] = v as f32;
                nckd_const += xlogx(v);
            }
        }
    }
    let gt = Tensor::from_vec(gt, (n, k), dev)?.to_dtype(dt)?;
    let s = (logits / t)?;
    let lse = s.log_sum_exp(1)?;
    // Masking the target logit by a large negative constant leaves the non-target softmax.
    let s_masked = (&s - (&gt * 1e4)?)?;
    let lse_nt = s_masked.log_sum_exp(1)?;
    let log_ps_gt = (log_softmax(&s, D::Minus1)? * &gt)?.sum(1)?;
    let log_ps_nt = (lse_nt - lse)?;
    let ptg = Tensor::from_vec(pt_gt.clone(), n, dev)?.to_dtype(dt)?;
    let ptn = Tensor::from_vec(pt_gt.iter().map(|p| 1.0 - p).collect::<Vec<_>>(), n, dev)?
        .to_dtype(dt)?;
    let tckd_cross = ((ptg * log_ps_gt)? + (ptn * log_ps_nt)?)?.sum_all()?;
    let tckd = ((tckd_cross.neg()? + tckd_const)? / n as f64)?;
    let q = Tensor::from_vec(q, (n, k), dev)?.to_dtype(dt)?;
    let nckd_cross = (q * log_softmax(&s_masked, D::Minus1)?)?.sum_all()?;
    let nckd = ((nckd_cross.neg()? + nckd_const)? / n as f64)?;
    Ok((((tckd * a)? + (nckd * b)?)? * (t * t))?)
}

/// Tempered probabilities `softmax(logp / T)` of one member's log-probabilities, row-wise.
pub fn temper(logp: &[f32], k: usize, t: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(logp.len());
    for row in logp.chunks(k) {
        let m = row
            .iter()
            .fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v) / t));
        let e: Vec<f64> = row.iter().map(|&v| (f64::from(v) / t - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| (v / s) as f32));
    }
    out
}

/// Ensemble teacher distribution at temperature `T`: the mean of the members' tempered
/// probabilities (averaging probabilities, not logits).
pub fn ensemble(members: &[Vec<f32>], k: usize, t: f64) -> Vec<f32> {
    let mut acc = vec![0f32; members.first().map_or(0, Vec::len)];
    for m in members {
        for (a, p) in acc.iter_mut().zip(temper(m, k, t)) {
            *a += p / members.len() as f32;
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temper_is_a_distribution() {
        let p = temper(&[0.0, 1.0, 2.0, -5.0, 0.0, 5.0], 3, 2.0);
        for r in p.chunks(3) {
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert!(p[2] > p[1] && p[1] > p[0]);
    }
}
