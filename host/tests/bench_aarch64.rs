//! `edgekd bench --target aarch64`, for real: cross-builds `edgekd-bench` for
//! aarch64-unknown-linux-gnu (cargo profile `bench-cross`), runs it under
//! `qemu-aarch64` on every reference model's golden inputs, and checks that the int8
//! outputs on aarch64 are bit-exact with the golden files and that tract agrees with
//! the edgekd interpreter there.
//!
//! Needs the aarch64 Rust target, the cross linker and qemu-user (scripts/bootstrap.sh
//! installs them); without them it fails with the command to run — it never skips.

use edgekd::cmd::bench_arm::{measure, BenchOptions, Runtime, Target};
use edgekd::io::read_i8_matrix;
use std::path::{Path, PathBuf};
use std::process::Command;

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/reference")
}

#[test]
fn aarch64_under_qemu_is_bit_exact_with_the_golden_vectors() {
    let dir = reference_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("models/reference")
        .filter_map(|e| {
            let p = e.ok()?.path();
            let stem = p.file_stem()?.to_string_lossy().into_owned();
            (p.extension()? == "ekd").then_some(stem)
        })
        .collect();
    names.sort();
    assert!(names.len() >= 3, "reference models missing: {names:?}");
    let opts = BenchOptions {
        runtime: Runtime::Both,
        runs: 2,
        warmup: 1,
        threads: 1,
        adb: false,
    };
    for name in &names {
        let model = dir.join(format!("{name}.ekd"));
        let input = dir.join(format!("{name}.input.npy"));
        let expected = read_i8_matrix(&dir.join(format!("{name}.expected.npy"))).unwrap();
        let report = measure(&model, Target::Aarch64, &input, &opts)
            .unwrap_or_else(|e| panic!("edgekd bench --target aarch64 on {name}: {e:#}"));
        assert_eq!(report.target, "aarch64");
        assert!(
            report.emulated,
            "{name}: qemu runs must be flagged emulated"
        );
        assert_eq!(
            report.tract_agrees,
            Some(true),
            "{name}: tract and edgekd differ on aarch64"
        );
        assert_eq!(report.runtimes.len(), 2, "{name}");
        assert_eq!(report.outputs.len(), expected.rows, "{name}: sample count");
        for (r, out) in report.outputs.iter().enumerate() {
            assert_eq!(
                out.as_slice(),
                expected.row(r),
                "{name}: sample {r} on aarch64 differs from the golden outputs"
            );
        }
        eprintln!(
            "{name}: {} samples bit-exact on aarch64 (qemu), tract agrees",
            expected.rows
        );
    }
}

fn edgekd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgekd"))
        .args(args)
        .output()
        .expect("run edgekd")
}

#[test]
fn cli_rejects_flags_of_the_other_kind_of_target() {
    let model = reference_dir().join("mlp.ekd");
    let model = model.to_str().unwrap();
    let out = edgekd(&[
        "bench", "--target", "qemu-m4", "--model", model, "--runs", "5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("apply to --target host"), "{err}");

    let out = edgekd(&[
        "bench",
        "--target",
        "aarch64",
        "--model",
        model,
        "--opt-level",
        "s",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("qemu-* targets only"), "{err}");

    let out = edgekd(&["bench", "--target", "host", "--model", model, "--adb"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("android only"), "{err}");
}

#[test]
fn cli_android_needs_adb_and_a_phone() {
    let model = reference_dir().join("mlp.ekd");
    let model = model.to_str().unwrap();
    let out = edgekd(&["bench", "--target", "android", "--model", model]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pass --adb"), "{err}");

    let out = edgekd(&["bench", "--target", "android", "--adb", "--model", model]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`adb` was not found") || err.contains("no Android device"),
        "{err}"
    );
}
