//! The firmware's `selftest` build on emulated Cortex-M: the kernels each core runs
//! (SXTB16/SMLAD on the M4F and the M33, portable im2col on the M0) against the
//! portable reference kernels on seeded random shapes and data, bit for bit.
//!
//! Needs qemu-system-arm and the thumbv7em-none-eabihf, thumbv8m.main-none-eabihf and
//! thumbv6m-none-eabi targets (`scripts/bootstrap.sh`); without them the test fails and
//! the build error says what is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

fn firmware() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware")
}

/// Builds and runs the self-test for one board; returns its output lines.
fn selftest(features: &str, target: &str) -> Vec<String> {
    let dir = firmware();
    let out = Command::new(env!("CARGO"))
        .current_dir(&dir)
        // Its own target dir: the model builds of the other firmware tests replace their
        // ELF concurrently.
        .env("CARGO_TARGET_DIR", dir.join("target/selftest"))
        .args(["run", "--release", "--no-default-features", "--features"])
        .arg(format!("{features},selftest"))
        .args(["--target", target])
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "selftest {features} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

/// The number after `key=` on a self-test line.
fn field<T: std::str::FromStr>(line: &str, key: &str) -> T {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// Every kernel (and elementwise op) ran cases, none mismatched, and DSP kernels were (or
/// were not) in use.
fn check(lines: &[String], dsp: bool) {
    let kernels: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("selftest kernel="))
        .collect();
    assert_eq!(kernels.len(), 3, "{lines:?}");
    for l in kernels {
        assert!(l.contains(&format!(" dsp={dsp} ")), "{l}");
        assert!(l.contains(" mismatches=0 "), "{l}");
        let macs: u64 = field(l, "macs");
        assert!(macs > 100_000, "too little covered: {l}");
        // Conv and fully connected cases run again from the widened filter wherever the
        // DSP kernel reads one (checked on every core: the portable kernels ignore it).
        let wide: u32 = field(l, "wide");
        if !l.contains("kernel=DepthwiseConv2D") {
            assert!(wide >= 10, "too few widened-filter cases: {l}");
        }
        // Of those, conv cases whose windows are runs of the input take the dense
        // paired-pixel path on DSP cores.
        if l.contains("kernel=Conv2D") {
            let dense: u32 = field(l, "dense");
            assert!(dense >= 10, "too few dense-path cases: {l}");
        }
        // ... and depthwise cases with whole one-row windows the asm row block.
        if l.contains("kernel=DepthwiseConv2D") {
            let dense: u32 = field(l, "dense");
            assert!(dense >= 10, "too few one-row window cases: {l}");
        }
    }
    // Add, MaxPool2D, AvgPool2D and GlobalAvgPool against their reference loops.
    let elementwise: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("selftest elementwise kernel="))
        .collect();
    assert_eq!(elementwise.len(), 4, "{lines:?}");
    for l in elementwise {
        assert!(l.contains(&format!(" dsp={dsp} ")), "{l}");
        assert!(l.contains(" mismatches=0 "), "{l}");
        let elements: u64 = field(l, "elements");
        assert!(elements > 1_000, "too little covered: {l}");
        // Add cases run again from the prepared table where there is one.
        if l.contains("kernel=Add") {
            let wide: u32 = field(l, "wide");
            assert!(wide >= 10, "too few prepared-table cases: {l}");
        }
        // Pooling cases with whole one-row windows take the asm row blocks.
        if l.contains("kernel=MaxPool2D") || l.contains("kernel=AvgPool2D") {
            let dense: u32 = field(l, "dense");
            assert!(dense >= 10, "too few one-row window cases: {l}");
        }
    }
    assert!(
        lines.iter().any(|l| l == "selftest result=PASS"),
        "{lines:?}"
    );
}

#[test]
fn dsp_kernels_equal_reference_on_cortex_m4() {
    check(&selftest("mps2-an386", "thumbv7em-none-eabihf"), true);
}

#[test]
fn dsp_kernels_equal_reference_on_cortex_m33() {
    check(&selftest("mps2-an505", "thumbv8m.main-none-eabihf"), true);
}

#[test]
fn portable_kernels_equal_reference_on_cortex_m0() {
    check(&selftest("microbit", "thumbv6m-none-eabi"), false);
}
