//! Augmentations for 1-D signals and images: random circular shift, gaussian noise, mixup.
//!
//! The augmented view of sample `i` in epoch `e` is a function of `(seed, e, i)` and the pool
//! only, never of the batch order. That is what lets a teacher's outputs on augmented views be
//! cached and shared between students trained with different seeds for their batch order, and
//! what makes student and teacher see the same view (function matching).

use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Normal};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

/// The `[augment]` section of a recipe. All off by default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AugmentSpec {
    /// Maximum circular shift in samples along W (and along H for images with H > 1).
    #[serde(default)]
    pub shift: usize,
    /// Standard deviation of additive gaussian noise, in raw input units.
    #[serde(default)]
    pub noise: f32,
    /// Mixup Beta(a, a) parameter; 0 disables mixup.
    #[serde(default)]
    pub mixup: f32,
}

impl AugmentSpec {
    /// True when the augmentation changes nothing.
    pub fn is_identity(&self) -> bool {
        self.shift == 0 && self.noise == 0.0 && self.mixup == 0.0
    }
}

/// One epoch's augmented pool.
#[derive(Debug, Clone)]
pub struct EpochView {
    /// Augmented inputs, same layout as the pool.
    pub x: Vec<f32>,
    /// Mixup: partner of each sample and its weight `lambda` (own weight); `None` without mixup.
    pub mix: Option<(Vec<usize>, Vec<f32>)>,
}

/// A stable seed for one (run seed, epoch, purpose) triple.
pub fn derive_seed(seed: u64, epoch: u64, stream: u64) -> u64 {
    // SplitMix64 finalizer over a combination: cheap and well mixed.
    let mut z = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(epoch.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(stream.wrapping_mul(0x94D0_49BB_1331_11EB));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Augments `x` (`n` samples of `shape` = `[H, W, C]`) for `epoch`.
pub fn epoch_view(
    x: &[f32],
    shape: [usize; 3],
    spec: &AugmentSpec,
    seed: u64,
    epoch: u64,
) -> EpochView {
    let [h, w, c] = shape;
    let f = h * w * c;
    let n = x.len() / f.max(1);
    let mut rng = Pcg64::seed_from_u64(derive_seed(seed, epoch, 1));
    let mut out = x.to_vec();
    if spec.shift > 0 || spec.noise > 0.0 {
        let k = spec.shift as i64;
        let noise = Normal::new(0.0f32, spec.noise.max(0.0)).expect("std is non-negative");
        for i in 0..n {
            let src = &x[i * f..(i + 1) * f];
            let dst = &mut out[i * f..(i + 1) * f];
            let (dy, dx) = if k > 0 {
                let dy = if h > 1 { rng.random_range(-k..=k) } else { 0 };
                (dy, rng.random_range(-k..=k))
            } else {
                (0, 0)
            };
            for yy in 0..h {
                let sy = (yy as i64 - dy).rem_euclid(h as i64) as usize;
                for xx in 0..w {
                    let sx = (xx as i64 - dx).rem_euclid(w as i64) as usize;
                    let s = (sy * w + sx) * c;
                    let d = (yy * w + xx) * c;
                    dst[d..d + c].copy_from_slice(&src[s..s + c]);
                }
            }
            if spec.noise > 0.0 {
                for v in dst.iter_mut() {
                    *v += noise.sample(&mut rng);
                }
            }
        }
    }
    let mix = if spec.mixup > 0.0 && n > 1 {
        let beta = Beta::new(spec.mixup, spec.mixup).expect("mixup parameter is positive");
        let mut partner: Vec<usize> = (0..n).collect();
        use rand::seq::SliceRandom;
        partner.shuffle(&mut rng);
        let lambda: Vec<f32> = (0..n).map(|_| beta.sample(&mut rng)).collect();
        let base = out.clone();
        for i in 0..n {
            let j = partner[i];
            let l = lambda[i];
            for k in 0..f {
                out[i * f + k] = l * base[i * f + k] + (1.0 - l) * base[j * f + k];
            }
        }
        Some((partner, lambda))
    } else {
        None
    };
    EpochView { x: out, mix }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_a_copy() {
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let v = epoch_view(&x, [1, 6, 1], &AugmentSpec::default(), 3, 0);
        assert_eq!(v.x, x);
        assert!(v.mix.is_none());
    }

    #[test]
    fn shift_is_a_rotation_and_deterministic() {
        let x: Vec<f32> = (0..40).map(|v| v as f32).collect();
        let spec = AugmentSpec {
            shift: 3,
            ..Default::default()
        };
        let a = epoch_view(&x, [1, 40, 1], &spec, 7, 2);
        let b = epoch_view(&x, [1, 40, 1], &spec, 7, 2);
        assert_eq!(a.x, b.x);
        let mut sorted = a.x.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, x);
        let d = (a.x[0] as i64).rem_euclid(40);
        assert!(d <= 3 || d >= 37, "shift {d} exceeds 3");
        let c = epoch_view(&x, [1, 40, 1], &spec, 7, 3);
        let e = epoch_view(&x, [1, 40, 1], &spec, 8, 2);
        assert!(c.x != a.x || e.x != a.x);
    }

    #[test]
    fn mixup_mixes_with_a_partner() {
        let x = vec![0.0, 0.0, 1.0, 1.0];
        let spec = AugmentSpec {
            mixup: 0.4,
            ..Default::default()
        };
        let v = epoch_view(&x, [1, 2, 1], &spec, 1, 0);
        let (p, l) = v.mix.unwrap();
        for i in 0..2 {
            let want = l[i] * x[i * 2] + (1.0 - l[i]) * x[p[i] * 2];
            assert!((v.x[i * 2] - want).abs() < 1e-6);
        }
    }
}
