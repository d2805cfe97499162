//! The built `edgekd` binary: inspect, infer and reference, on good and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn edgekd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgekd"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run edgekd")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn inspect_prints_the_reference_model() {
    let o = edgekd(&["inspect", "models/reference/tiny_cnn.ekd"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("MACs            5072"), "{text}");
    assert!(text.contains("Conv2D"));
    let o = edgekd(&["inspect", "--json", "models/reference/ds_cnn.ekd"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["ops"].as_array().unwrap().len(), 10);
    assert_eq!(json["macs"], 4560);
}

#[test]
fn malformed_models_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(repo().join("models/reference/mlp.ekd")).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "truncated"),
        (
            "text",
            b"hello, this is not a model at all".to_vec(),
            "bad magic",
        ),
        ("cut", good[..good.len() / 2].to_vec(), "truncated"),
        (
            "flipped",
            {
                let mut b = good.clone();
                b[200] ^= 0x10;
                b
            },
            "checksum mismatch",
        ),
    ];
    for (name, bytes, message) in cases {
        let path = dir.path().join(format!("{name}.ekd"));
        std::fs::write(&path, bytes).unwrap();
        let o = edgekd(&["inspect", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{name}: {}", stderr(&o));
    }
    let o = edgekd(&["inspect", "no/such/file.ekd"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read no/such/file.ekd"),
        "{}",
        stderr(&o)
    );
    let o = edgekd(&["inspect"]);
    assert_eq!(o.status.code(), Some(2), "usage error");
}

#[test]
fn infer_reproduces_the_golden_vectors() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["tiny_cnn", "mlp", "ds_cnn"] {
        // From the int8 inputs...
        let out = dir.path().join(format!("{name}.npy"));
        let o = edgekd(&[
            "infer",
            &format!("models/reference/{name}.ekd"),
            "--input",
            &format!("models/reference/{name}.input.npy"),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let expected =
            std::fs::read(repo().join(format!("models/reference/{name}.expected.npy"))).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), expected, "{name}");
        // ...and from the raw float signals through the stored preprocessing.
        let o = edgekd(&[
            "infer",
            &format!("models/reference/{name}.ekd"),
            "--input",
            "models/reference/inputs.npy",
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), expected, "{name} from floats");
    }
}

#[test]
fn infer_refuses_bad_inputs_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("y.npy");
    let wrong = dir.path().join("wrong.npy");
    let m = edgekd::io::Matrix {
        rows: 2,
        cols: 39,
        data: vec![0.5f32; 78],
    };
    std::fs::write(&wrong, edgekd::io::npy_bytes(&m).unwrap()).unwrap();
    let nan = dir.path().join("nan.npy");
    let mut m = edgekd::io::Matrix {
        rows: 2,
        cols: 40,
        data: vec![0.5f32; 80],
    };
    m.data[45] = f32::NAN;
    std::fs::write(&nan, edgekd::io::npy_bytes(&m).unwrap()).unwrap();
    for (input, message) in [
        (&wrong, "39 values per sample but the model takes 40"),
        (&nan, "sample 1, feature 5 is not finite"),
    ] {
        let o = edgekd(&[
            "infer",
            "models/reference/mlp.ekd",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains(message), "{}", stderr(&o));
        assert!(!out.exists(), "nothing written on failure");
    }
}

#[test]
fn shipped_reference_files_are_what_the_builder_writes() {
    for (name, bytes) in edgekd::cmd::reference::files().unwrap() {
        let shipped = std::fs::read(repo().join("models/reference").join(&name)).unwrap();
        assert!(
            shipped == bytes,
            "models/reference/{name} is stale: run `just reference`"
        );
    }
}
