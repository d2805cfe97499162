//! The `edgekd-bench` binary: `--save-outputs` writes the edgekd runtime's int8 outputs,
//! one row per sample (bit-exact with the golden vectors), `--json` is one document,
//! and bad arguments are errors with a message, never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/reference")
        .join(name)
}

fn bench(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgekd-bench"))
        .args(args)
        .output()
        .expect("run edgekd-bench")
}

fn read_npy_i8(p: &Path) -> (Vec<u64>, Vec<i8>) {
    let bytes = std::fs::read(p).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    (shape, npy.into_vec::<i8>().unwrap())
}

#[test]
fn saves_outputs_bit_exact_with_the_golden_vectors() {
    let dir = std::env::temp_dir().join(format!("edgekd-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["mlp", "tiny_cnn", "ds_cnn"] {
        let saved = dir.join(format!("{name}.out.npy"));
        let model = reference(&format!("{name}.ekd"));
        let input = reference(&format!("{name}.input.npy"));
        let out = bench(&[
            model.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
            "--runs".as_ref(),
            "3".as_ref(),
            "--warmup".as_ref(),
            "0".as_ref(),
            "--json".as_ref(),
            "--no-profile".as_ref(),
            "--save-outputs".as_ref(),
            saved.as_os_str(),
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
        assert_eq!(json["agreement"]["first_mismatch"], serde_json::Value::Null);
        assert_eq!(json["saved_outputs"]["runtime"], "edgekd");
        assert_eq!(json["emulated"], false);
        let (shape, got) = read_npy_i8(&saved);
        let (want_shape, want) = read_npy_i8(&reference(&format!("{name}.expected.npy")));
        assert_eq!(shape, want_shape, "{name}");
        assert_eq!(
            got, want,
            "{name}: saved outputs differ from the golden ones"
        );
    }
    // No temp files are left beside the outputs.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let model = reference("mlp.ekd");
    let wrong_input = reference("mlp.expected.npy"); // [16, 10], the model takes 40
    let not_a_model = reference("mlp.input.npy");
    let cases: Vec<(Vec<&std::ffi::OsStr>, &str)> = vec![
        (vec!["/nonexistent.ekd".as_ref()], "reading"),
        (
            vec![
                model.as_os_str(),
                "--input".as_ref(),
                wrong_input.as_os_str(),
            ],
            "one input of 40 values",
        ),
        (
            vec![
                model.as_os_str(),
                "--save-outputs".as_ref(),
                "/nonexistent-dir/x.npy".as_ref(),
                "--runs".as_ref(),
                "1".as_ref(),
            ],
            "writing /nonexistent-dir/x.npy",
        ),
        (vec![not_a_model.as_os_str()], "loading"),
    ];
    for (args, want) in cases {
        let out = bench(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
