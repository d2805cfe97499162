//! `--features selftest`: the kernels the firmware runs (Cortex-M DSP kernels on cores
//! with the extension) against the portable reference kernels, on seeded random shapes
//! and data, on the emulated core itself. Prints one line per kernel and a verdict.

use crate::app::Verdict;
use edgekd_kernels::selftest;
use embedded_io::Write;

/// Seeds and cases per seed: a few thousand random layers, well under a second of QEMU.
const SEEDS: [u64; 4] = [1, 2, 3, 0x5eed];
const CASES: u32 = 100;

pub fn run(out: &mut impl Write) -> Verdict {
    let mut failed = false;
    let mut totals = [(0u32, 0u32, 0u64); 3];
    for seed in SEEDS {
        for (i, (_, t)) in selftest::run(seed, CASES).into_iter().enumerate() {
            totals[i].0 += t.cases;
            totals[i].1 += t.mismatches;
            totals[i].2 += t.macs;
        }
    }
    let names = ["Conv2D", "DepthwiseConv2D", "FullyConnected"];
    for (name, (cases, mismatches, macs)) in names.iter().zip(totals) {
        failed |= mismatches != 0 || cases == 0;
        let _ = writeln!(
            out,
            "selftest kernel={name} dsp={} cases={cases} mismatches={mismatches} macs={macs}",
            edgekd_kernels::DSP_KERNELS
        );
    }
    let mut add = selftest::Tally::default();
    for seed in SEEDS {
        let t = selftest::run_add(seed, CASES);
        add.cases += t.cases;
        add.mismatches += t.mismatches;
        add.macs += t.macs;
    }
    failed |= add.mismatches != 0 || add.cases == 0;
    let _ = writeln!(
        out,
        "selftest elementwise kernel=Add dsp={} cases={} mismatches={} elements={}",
        edgekd_kernels::DSP_KERNELS,
        add.cases,
        add.mismatches,
        add.macs
    );
    let mut pool = selftest::Tally::default();
    for seed in SEEDS {
        let t = selftest::run_max_pool(seed, CASES);
        pool.cases += t.cases;
        pool.mismatches += t.mismatches;
        pool.macs += t.macs;
    }
    failed |= pool.mismatches != 0 || pool.cases == 0;
    let _ = writeln!(
        out,
        "selftest elementwise kernel=MaxPool2D dsp={} cases={} mismatches={} elements={}",
        edgekd_kernels::DSP_KERNELS,
        pool.cases,
        pool.mismatches,
        pool.macs
    );
    let verdict = if failed { Verdict::Fail } else { Verdict::Pass };
    let _ = writeln!(
        out,
        "selftest result={}",
        if failed { "FAIL" } else { "PASS" }
    );
    verdict
}
