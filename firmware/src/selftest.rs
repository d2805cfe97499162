//! `--features selftest`: the kernels the firmware runs (Cortex-M DSP kernels on cores
//! with the extension) against the portable reference kernels, on seeded random shapes
//! and data, on the emulated core itself. Prints one line per kernel and a verdict.

use crate::app::Verdict;
use edgekd_kernels::selftest;
use embedded_io::Write;

/// Seeds and cases per seed: a few thousand random layers, well under a second of QEMU.
const SEEDS: [u64; 4] = [1, 2, 3, 0x5eed];
const CASES: u32 = 100;

/// A seeded self-test of one elementwise kernel against its reference.
type ElementwiseRun = fn(u64, u32) -> selftest::Tally;

pub fn run(out: &mut impl Write) -> Verdict {
    let mut failed = false;
    let mut totals = [selftest::Tally::default(); 3];
    for seed in SEEDS {
        for (total, (_, t)) in totals.iter_mut().zip(selftest::run(seed, CASES)) {
            total.cases += t.cases;
            total.mismatches += t.mismatches;
            total.macs += t.macs;
            total.wide += t.wide;
            total.dense += t.dense;
        }
    }
    let names = ["Conv2D", "DepthwiseConv2D", "FullyConnected"];
    for (name, t) in names.iter().zip(totals) {
        failed |= t.mismatches != 0 || t.cases == 0;
        let _ = writeln!(
            out,
            "selftest kernel={name} dsp={} cases={} mismatches={} macs={} wide={} dense={}",
            edgekd_kernels::DSP_KERNELS,
            t.cases,
            t.mismatches,
            t.macs,
            t.wide,
            t.dense
        );
    }
    let elementwise: [(&str, ElementwiseRun); 4] = [
        ("Add", selftest::run_add),
        ("MaxPool2D", selftest::run_max_pool),
        ("AvgPool2D", selftest::run_avg_pool),
        ("GlobalAvgPool", selftest::run_global_avg_pool),
    ];
    for (name, run) in elementwise {
        let mut t = selftest::Tally::default();
        for seed in SEEDS {
            let s = run(seed, CASES);
            t.cases += s.cases;
            t.mismatches += s.mismatches;
            t.macs += s.macs;
            t.wide += s.wide;
            t.dense += s.dense;
        }
        failed |= t.mismatches != 0 || t.cases == 0;
        let _ = writeln!(
            out,
            "selftest elementwise kernel={name} dsp={} cases={} mismatches={} elements={} \
             wide={} dense={}",
            edgekd_kernels::DSP_KERNELS,
            t.cases,
            t.mismatches,
            t.macs,
            t.wide,
            t.dense
        );
    }
    let verdict = if failed { Verdict::Fail } else { Verdict::Pass };
    let _ = writeln!(
        out,
        "selftest result={}",
        if failed { "FAIL" } else { "PASS" }
    );
    verdict
}
