//! Timing summaries and memory readings for `edgekd-bench`.

use serde::Serialize;

/// Summary of a series of timings, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Smallest.
    pub min_us: f64,
    /// Largest.
    pub max_us: f64,
    /// Arithmetic mean.
    pub mean_us: f64,
    /// Population standard deviation (TFLite's benchmark_model reports this one).
    pub std_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
}

/// Percentile `p` (0..=100) of sorted samples, nearest-rank (the value below which
/// `p` % of the samples fall, always one of the samples).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Summary {
    /// Summarizes samples (in microseconds); `None` for no samples.
    pub fn of(samples_us: &[f64]) -> Option<Summary> {
        if samples_us.is_empty() {
            return None;
        }
        let mut sorted = samples_us.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len() as f64;
        let mean = sorted.iter().sum::<f64>() / n;
        let var = sorted.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
        Some(Summary {
            count: sorted.len(),
            min_us: sorted[0],
            max_us: sorted[sorted.len() - 1],
            mean_us: mean,
            std_us: var.sqrt(),
            p50_us: percentile(&sorted, 50.0),
            p90_us: percentile(&sorted, 90.0),
            p99_us: percentile(&sorted, 99.0),
        })
    }
}

/// Peak resident set size of this process in KiB (`VmHWM` in `/proc/self/status`);
/// `None` where that file does not exist (not Linux/Android) or has no such line.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// The `VmHWM` value (KiB) of a `/proc/<pid>/status` text.
pub fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_samples() {
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, 10.0]).unwrap();
        assert_eq!(s.count, 5);
        assert_eq!((s.min_us, s.max_us), (1.0, 10.0));
        assert_eq!(s.mean_us, 4.0);
        // Population variance: (0 + 9 + 1 + 4 + 36) / 5 = 10.
        assert!((s.std_us - 10f64.sqrt()).abs() < 1e-12);
        assert_eq!(s.p50_us, 3.0);
        assert_eq!(s.p90_us, 10.0);
        assert_eq!(s.p99_us, 10.0);
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 90.0), 90.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
    }

    #[test]
    fn parses_vm_hwm() {
        let status = "Name:\tx\nVmPeak:\t  1000 kB\nVmHWM:\t    2345 kB\nVmRSS:\t 12 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2345));
        assert_eq!(parse_vm_hwm("VmRSS: 1 kB"), None);
        #[cfg(target_os = "linux")]
        assert!(peak_rss_kib().unwrap() > 0);
    }
}
