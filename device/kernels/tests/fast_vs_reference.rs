//! The fast kernels (im2col columns on the host; the same code paths the DSP kernels
//! replace on Cortex-M) against the portable reference kernels, bit for bit, on random
//! shapes and data. The firmware's `selftest` feature runs the same generator in QEMU.
#![cfg(feature = "selftest")]

use edgekd_kernels::selftest::{run, run_add, run_avg_pool, run_global_avg_pool, run_max_pool};

#[test]
fn fast_kernels_equal_reference_on_random_cases() {
    for seed in [1, 2, 3] {
        for (kernel, t) in run(seed, 150) {
            assert_eq!(t.mismatches, 0, "{kernel:?} seed {seed}: {t:?}");
            // Most random geometries must be valid, or the test checks nothing.
            assert!(
                t.cases >= 80 && t.macs > 10_000,
                "{kernel:?} seed {seed}: {t:?}"
            );
        }
    }
}

#[test]
fn prepared_add_equals_reference_on_random_cases() {
    for seed in [1, 2, 3] {
        let t = run_add(seed, 300);
        assert_eq!(t.mismatches, 0, "Add seed {seed}: {t:?}");
        // Each case once, and again from its prepared table where it has one.
        assert!(
            t.cases == 300 + t.wide && t.wide >= 10,
            "Add seed {seed}: {t:?}"
        );
        assert!(t.macs > 50_000, "Add seed {seed}: {t:?}");
    }
}

#[test]
fn pools_equal_reference_on_random_cases() {
    for seed in [1, 2, 3] {
        for (kernel, run) in [
            ("MaxPool2D", run_max_pool as fn(u64, u32) -> _),
            ("AvgPool2D", run_avg_pool),
            ("GlobalAvgPool", run_global_avg_pool),
        ] {
            let t = run(seed, 300);
            assert_eq!(t.mismatches, 0, "{kernel} seed {seed}: {t:?}");
            assert!(
                t.cases >= 200 && t.macs > 10_000,
                "{kernel} seed {seed}: {t:?}"
            );
        }
    }
}
