//! Calibration statistics in fixed memory and the choice of an activation's clipping range.
//!
//! Two streaming passes over the calibration samples: the first records each tensor's
//! min/max, the second fills a histogram of [`BINS`] bins spanning exactly that range. Memory
//! is `BINS` counters per tensor whatever the calibration set size, and no value falls outside
//! the histogram. Ranges are then picked from the histogram:
//! - min/max: the observed extremes;
//! - percentile `p`: the `(100 - p)`-th and `p`-th percentiles (outliers are clipped);
//! - MSE: the range minimizing the expected squared error of quantize-dequantize (rounding
//!   noise `step^2 / 12` inside the range, squared distance to the edge outside), searched on a
//!   grid of clipping fractions of both ends.

use serde::{Deserialize, Serialize};

/// Histogram resolution per tensor.
pub const BINS: usize = 2048;

/// How an activation's range is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "method", content = "value")]
pub enum Method {
    /// Observed min and max.
    MinMax,
    /// Percentile of the observed distribution (e.g. 99.99).
    Percentile(f64),
    /// Least expected squared quantization error.
    Mse,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::MinMax => write!(f, "minmax"),
            Method::Percentile(p) => write!(f, "percentile({p})"),
            Method::Mse => write!(f, "mse"),
        }
    }
}

/// Running min/max (first pass).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MinMax {
    /// Smallest value seen (+inf before any).
    pub min: f32,
    /// Largest value seen (-inf before any).
    pub max: f32,
    /// Values seen.
    pub count: u64,
}

impl Default for MinMax {
    fn default() -> Self {
        MinMax {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            count: 0,
        }
    }
}

impl MinMax {
    /// Adds values.
    pub fn add(&mut self, v: &[f32]) {
        for &x in v {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += v.len() as u64;
    }
}

/// A fixed-size histogram over `[lo, hi]` (second pass).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Left edge.
    pub lo: f32,
    /// Right edge.
    pub hi: f32,
    /// Counts.
    pub bins: Vec<u64>,
}

impl Histogram {
    /// An empty histogram over the range a first pass observed.
    pub fn new(range: &MinMax) -> Histogram {
        let (lo, mut hi) = if range.count == 0 {
            (0.0, 0.0)
        } else {
            (range.min, range.max)
        };
        if hi <= lo {
            hi = lo + 1e-6;
        }
        Histogram {
            lo,
            hi,
            bins: vec![0; BINS],
        }
    }

    fn width(&self) -> f64 {
        (f64::from(self.hi) - f64::from(self.lo)) / BINS as f64
    }

    /// Adds values (values outside the range land in the edge bins).
    pub fn add(&mut self, v: &[f32]) {
        let w = self.width();
        for &x in v {
            let b = ((f64::from(x) - f64::from(self.lo)) / w).floor();
            let b = (b.max(0.0) as usize).min(BINS - 1);
            self.bins[b] += 1;
        }
    }

    /// Values counted.
    pub fn total(&self) -> u64 {
        self.bins.iter().sum()
    }

    fn centre(&self, b: usize) -> f64 {
        f64::from(self.lo) + (b as f64 + 0.5) * self.width()
    }

    /// The value below which `q` (0..=1) of the mass lies, linear within a bin.
    pub fn quantile(&self, q: f64) -> f32 {
        let total = self.total() as f64;
        if total == 0.0 {
            return self.lo;
        }
        let target = q.clamp(0.0, 1.0) * total;
        let mut cum = 0.0;
        for (b, &n) in self.bins.iter().enumerate() {
            let next = cum + n as f64;
            if next >= target && n > 0 {
                let frac = ((target - cum) / n as f64).clamp(0.0, 1.0);
                return (f64::from(self.lo) + (b as f64 + frac) * self.width()) as f32;
            }
            cum = next;
        }
        self.hi
    }

    /// Fraction of the values outside what `[lo, hi]` represents after quantization.
    pub fn clipped_fraction(&self, lo: f32, hi: f32) -> f64 {
        let (scale, zp) = qparams(lo, hi);
        let (rlo, rhi) = representable(scale, zp);
        let total = self.total().max(1) as f64;
        let out: u64 = self
            .bins
            .iter()
            .enumerate()
            .filter(|(b, _)| {
                let c = self.centre(*b);
                c < rlo - 0.5 * f64::from(scale) || c > rhi + 0.5 * f64::from(scale)
            })
            .map(|(_, n)| n)
            .sum();
        out as f64 / total
    }

    /// Expected squared error of quantizing this distribution with range `[lo, hi]`.
    pub fn expected_mse(&self, lo: f32, hi: f32) -> f64 {
        let (scale, zp) = qparams(lo, hi);
        let (rlo, rhi) = representable(scale, zp);
        let noise = f64::from(scale) * f64::from(scale) / 12.0;
        let mut err = 0.0;
        for (b, &n) in self.bins.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let c = self.centre(b);
            let e = if c < rlo {
                (rlo - c) * (rlo - c)
            } else if c > rhi {
                (c - rhi) * (c - rhi)
            } else {
                noise
            };
            err += e * n as f64;
        }
        err / self.total().max(1) as f64
    }

    /// The clipping range `method` picks.
    pub fn range(&self, method: Method) -> (f32, f32) {
        match method {
            Method::MinMax => (self.lo, self.hi),
            Method::Percentile(p) => {
                let q = (p / 100.0).clamp(0.5, 1.0);
                (self.quantile(1.0 - q), self.quantile(q))
            }
            Method::Mse => self.mse_range(),
        }
    }

    fn mse_range(&self) -> (f32, f32) {
        const STEPS: usize = 100;
        let (lo0, hi0) = (self.lo.min(0.0), self.hi.max(0.0));
        // Ends at zero (e.g. ReLU outputs) stay there; the others shrink towards zero.
        let fracs = |end: f32| -> Vec<f32> {
            if end == 0.0 {
                vec![1.0]
            } else {
                (1..=STEPS).map(|i| i as f32 / STEPS as f32).collect()
            }
        };
        let mut best = (f64::INFINITY, lo0, hi0);
        for a in fracs(lo0) {
            for b in fracs(hi0) {
                let (lo, hi) = (lo0 * a, hi0 * b);
                let e = self.expected_mse(lo, hi);
                if e < best.0 {
                    best = (e, lo, hi);
                }
            }
        }
        (best.1, best.2)
    }
}

/// Scale and zero point of an asymmetric int8 tensor covering `[lo, hi]` (zero always
/// included, so zero is exact, as TFLite requires).
pub fn qparams(lo: f32, hi: f32) -> (f32, i32) {
    let lo = lo.min(0.0);
    let mut hi = hi.max(0.0);
    if hi - lo < 1e-8 {
        hi = lo + 1e-8;
    }
    let scale = (hi - lo) / 255.0;
    let zp = (-128.0 - lo / scale).round().clamp(-128.0, 127.0) as i32;
    (scale, zp)
}

/// The real interval an int8 tensor with `(scale, zp)` represents.
pub fn representable(scale: f32, zp: i32) -> (f64, f64) {
    let s = f64::from(scale);
    (s * f64::from(-128 - zp), s * f64::from(127 - zp))
}

/// Quantize-dequantize of one value (round half away from zero, saturating), as the
/// runtime's input quantization does.
pub fn fake_quant(x: f32, scale: f32, zp: i32) -> f32 {
    let q = ((x / scale).round() as i32)
        .saturating_add(zp)
        .clamp(-128, 127);
    scale * (q - zp) as f32
}

/// Signal-to-quantization-noise ratio in dB from accumulated powers (`inf` when exact).
pub fn sqnr_db(signal: f64, noise: f64) -> f64 {
    if noise <= 0.0 {
        f64::INFINITY
    } else if signal <= 0.0 {
        f64::NEG_INFINITY
    } else {
        10.0 * (signal / noise).log10()
    }
}
