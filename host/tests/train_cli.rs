//! The built binary on bad inputs (clear error, exit 1, no output written), resume
//! determinism, and the experiment runner on a tiny study.

use edgekd::io::{npy_bytes, Matrix};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_edgekd"));
    c.env("RAYON_NUM_THREADS", "1");
    c
}

fn recipes() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/recipes")
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_npy_f32(path: &Path, rows: usize, cols: usize, data: Vec<f32>) {
    std::fs::write(path, npy_bytes(&Matrix { rows, cols, data }).unwrap()).unwrap();
}

fn write_npy_i64(path: &Path, labels: Vec<i64>) {
    let rows = labels.len();
    std::fs::write(
        path,
        npy_bytes(&Matrix {
            rows,
            cols: 1,
            data: labels,
        })
        .unwrap(),
    )
    .unwrap();
}

/// A small synthetic 1-D dataset (class = position of a bump) and a recipe for it.
fn synthetic(
    dir: &Path,
    features: usize,
    recipe_len: usize,
    mutate: impl Fn(&mut Vec<f32>, &mut Vec<i64>),
) -> PathBuf {
    let n = 60;
    let mut x = vec![0f32; n * features];
    let mut y = Vec::new();
    for i in 0..n {
        let c = i % 3;
        x[i * features + c * 2] = 1.0;
        y.push(c as i64);
    }
    mutate(&mut x, &mut y);
    write_npy_f32(&dir.join("x.npy"), n, features, x);
    write_npy_i64(&dir.join("y.npy"), y);
    let recipe = dir.join("r.toml");
    std::fs::write(
        &recipe,
        format!(
            r#"name = "synthetic"
[data]
train = "x.npy"
train_labels = "y.npy"
shape = [1, {recipe_len}, 1]
classes = 3
test_fraction = 0.2
[[model.layers]]
type = "conv"
filters = 4
kernel = 3
act = "relu"
[[model.layers]]
type = "dense"
units = 3
[train]
epochs = 2
batch = 16
"#
        ),
    )
    .unwrap();
    recipe
}

fn assert_fails(args: &[&str], out: &Path, needle: &str) {
    let o = run(args);
    let e = stderr(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "expected exit 1 for {args:?}; stderr: {e}"
    );
    assert!(e.contains(needle), "stderr lacks `{needle}`: {e}");
    assert!(
        !out.exists(),
        "{} was written despite the error",
        out.display()
    );
}

#[test]
fn bad_data_is_a_clear_error_with_nothing_written() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = d.join("out");
    let o = out.to_str().unwrap();

    // Sanity: the unmodified data trains.
    let r = synthetic(d, 8, 8, |_, _| {});
    let ok = run(&[
        "train",
        "--recipe",
        r.to_str().unwrap(),
        "--out",
        o,
        "--quiet",
    ]);
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(out.join("model.safetensors").exists());
    std::fs::remove_dir_all(&out).unwrap();

    // Missing data file.
    std::fs::remove_file(d.join("x.npy")).unwrap();
    assert_fails(
        &["train", "--recipe", r.to_str().unwrap(), "--out", o],
        &out,
        "x.npy",
    );

    // Corrupt data file.
    synthetic(d, 8, 8, |_, _| {});
    std::fs::write(d.join("x.npy"), b"\x93NUMPY garbage").unwrap();
    assert_fails(
        &["train", "--recipe", r.to_str().unwrap(), "--out", o],
        &out,
        "not a valid .npy",
    );

    // Labels out of range.
    synthetic(d, 8, 8, |_, y| y[5] = 7);
    assert_fails(
        &["train", "--recipe", r.to_str().unwrap(), "--out", o],
        &out,
        "label 7",
    );

    // NaN features.
    synthetic(d, 8, 8, |x, _| x[17] = f32::NAN);
    assert_fails(
        &["train", "--recipe", r.to_str().unwrap(), "--out", o],
        &out,
        "not finite",
    );

    // Shape mismatch between data and recipe.
    let r = synthetic(d, 8, 10, |_, _| {});
    assert_fails(
        &["train", "--recipe", r.to_str().unwrap(), "--out", o],
        &out,
        "needs 10",
    );

    // Missing recipe, malformed recipe.
    assert_fails(
        &[
            "train",
            "--recipe",
            d.join("nope.toml").to_str().unwrap(),
            "--out",
            o,
        ],
        &out,
        "nope.toml",
    );
    std::fs::write(d.join("bad.toml"), "name = 3").unwrap();
    assert_fails(
        &[
            "train",
            "--recipe",
            d.join("bad.toml").to_str().unwrap(),
            "--out",
            o,
        ],
        &out,
        "invalid recipe",
    );

    // Corrupt gzip CSV.
    std::fs::write(d.join("c.csv.gz"), b"not gzip at all").unwrap();
    std::fs::write(
        d.join("c.toml"),
        "name = \"c\"\n[data]\ntrain = \"c.csv.gz\"\nshape = [1, 4, 1]\nclasses = 3\n[[model.layers]]\ntype = \"dense\"\nunits = 3\n",
    )
    .unwrap();
    assert_fails(
        &[
            "train",
            "--recipe",
            d.join("c.toml").to_str().unwrap(),
            "--out",
            o,
        ],
        &out,
        "gzip",
    );

    // Missing teacher file.
    let r = synthetic(d, 8, 8, |_, _| {});
    assert_fails(
        &[
            "distill",
            "--recipe",
            r.to_str().unwrap(),
            "--out",
            o,
            "--teacher",
            d.join("t.safetensors").to_str().unwrap(),
        ],
        &out,
        "t.safetensors",
    );
    // Usage errors exit 2.
    assert_eq!(run(&["train"]).status.code(), Some(2));
}

#[test]
fn resume_ends_at_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let recipe = recipes().join("smoke.toml");
    let r = recipe.to_str().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let full = run(&[
        "train",
        "--recipe",
        r,
        "--out",
        a.to_str().unwrap(),
        "--seed",
        "3",
        "--quiet",
    ]);
    assert!(full.status.success(), "{}", stderr(&full));
    let part = run(&[
        "train",
        "--recipe",
        r,
        "--out",
        b.to_str().unwrap(),
        "--seed",
        "3",
        "--quiet",
        "--halt-after",
        "1",
    ]);
    assert!(part.status.success(), "{}", stderr(&part));
    assert!(
        !b.join("model.safetensors").exists(),
        "a halted run must not write a model"
    );
    assert!(b.join("checkpoint.safetensors").exists());
    let rest = run(&[
        "train",
        "--recipe",
        r,
        "--out",
        b.to_str().unwrap(),
        "--seed",
        "3",
        "--quiet",
        "--resume",
    ]);
    assert!(rest.status.success(), "{}", stderr(&rest));
    let wa = std::fs::read(a.join("model.safetensors")).unwrap();
    let wb = std::fs::read(b.join("model.safetensors")).unwrap();
    assert!(wa == wb, "resumed run ended at different weights");
    let ma = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    let mb = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    assert_eq!(ma.lines().count(), 3);
    // Same records; f64 text round trips may differ in the last digit.
    for (la, lb) in ma.lines().zip(mb.lines()) {
        let va: serde_json::Value = serde_json::from_str(la).unwrap();
        let vb: serde_json::Value = serde_json::from_str(lb).unwrap();
        for (key, x) in va.as_object().unwrap() {
            let y = &vb[key];
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => assert!(
                    (x - y).abs() <= 1e-12 * x.abs().max(1.0),
                    "{key}: {x} vs {y}"
                ),
                _ => assert_eq!(x, y, "{key}"),
            }
        }
    }
    // A different seed gives different weights (the comparison above can fail).
    let c = tmp.path().join("c");
    let other = run(&[
        "train",
        "--recipe",
        r,
        "--out",
        c.to_str().unwrap(),
        "--seed",
        "4",
        "--quiet",
    ]);
    assert!(other.status.success());
    assert!(std::fs::read(c.join("model.safetensors")).unwrap() != wa);
    // Resuming with another seed is refused.
    let bad = run(&[
        "train",
        "--recipe",
        r,
        "--out",
        b.to_str().unwrap(),
        "--seed",
        "5",
        "--quiet",
        "--resume",
    ]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(stderr(&bad).contains("seed"));
}

#[test]
fn experiment_runner_writes_a_table() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let smoke = recipes().join("smoke.toml");
    std::fs::write(d.join("README.md"), "# Results\n\nKeep this line.\n").unwrap();
    let study = d.join("study.toml");
    std::fs::write(
        &study,
        format!(
            r#"title = "Smoke study"
seeds = [0]
out = "runs"
readme = "README.md"
epochs = 1
[[run]]
name = "teacher"
recipe = "{s}"
about = "teacher"
onnx = true
[[run]]
name = "student"
recipe = "{s}"
about = "labels"
[[run]]
name = "student_kd"
recipe = "{s}"
about = "distilled"
teachers = ["teacher"]
[[gap]]
label = "smoke"
teacher = "teacher"
baseline = "student"
student = "student_kd"
"#,
            s = smoke.display()
        ),
    )
    .unwrap();
    let o = run(&["experiment", study.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let readme = std::fs::read_to_string(d.join("README.md")).unwrap();
    assert!(readme.contains("Keep this line."));
    assert!(readme.contains("| student_kd | distilled |"), "{readme}");
    assert!(readme.contains("1/1"), "{readme}");
    assert!(readme.contains("gap closed"), "{readme}");
    assert!(d.join("runs/teacher/s0/model.onnx").exists());
    // Re-running skips finished runs and rewrites the block in place.
    let again = run(&["experiment", study.to_str().unwrap()]);
    assert!(again.status.success());
    let readme2 = std::fs::read_to_string(d.join("README.md")).unwrap();
    assert_eq!(readme2.matches("edgekd-study:begin").count(), 1);
}
