//! Runs `edgekd-bench` (crate `edgekd-tract`) on the host, on aarch64 under
//! `qemu-aarch64`, or on an Android phone through `adb`.
//!
//! `edgekd bench --target host|aarch64|android` calls [`run`]; until that command
//! exists, `edgekd bench-arm` exposes the same thing ([`Args`], [`run_cli`]).
//!
//! Emulated (qemu-user) timings mean nothing: that path is for checking that the
//! aarch64 build runs and agrees with the reference interpreter.

use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where to run the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// This machine, natively.
    Host,
    /// Cross-built for aarch64-unknown-linux-gnu, run under qemu-aarch64.
    Aarch64,
    /// Cross-built for aarch64-linux-android, pushed and run through adb.
    Android,
}

/// What `edgekd-bench` should measure (passed through as its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// `tract`, `edgekd` or `both`.
    pub runtime: String,
    /// Timed runs.
    pub runs: u64,
    /// Warm-up runs.
    pub warmup: u64,
    /// tract threads.
    pub threads: u64,
    /// An .npy input file; `None` for random input.
    pub input: Option<PathBuf>,
    /// JSON output.
    pub json: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            runtime: "both".into(),
            runs: 100,
            warmup: 10,
            threads: 1,
            input: None,
            json: false,
        }
    }
}

/// One benchmark request.
#[derive(Debug, Clone)]
pub struct ArmBench {
    /// Where to run.
    pub target: Target,
    /// The .ekd model.
    pub model: PathBuf,
    /// Android only: allowed to use adb (the phone path needs `--adb`).
    pub adb: bool,
    /// Flags for edgekd-bench.
    pub options: BenchOptions,
}

/// `edgekd bench-arm` arguments (temporary home of `edgekd bench --target`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The .ekd model.
    pub model: PathBuf,
    /// Where to run: host, aarch64 (qemu-aarch64) or android (adb).
    #[arg(long, value_enum, default_value = "host")]
    pub target: Target,
    /// Push and run on a phone through adb (required with --target android).
    #[arg(long)]
    pub adb: bool,
    /// tract, edgekd or both.
    #[arg(long, default_value = "both")]
    pub runtime: String,
    /// Timed runs.
    #[arg(long, default_value_t = 100)]
    pub runs: u64,
    /// Warm-up runs.
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// tract threads.
    #[arg(long, default_value_t = 1)]
    pub threads: u64,
    /// .npy input samples (default: random).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// JSON output.
    #[arg(long)]
    pub json: bool,
}

/// Runs `edgekd bench-arm`.
pub fn run_cli(a: Args) -> Result<()> {
    run(&ArmBench {
        target: a.target,
        model: a.model,
        adb: a.adb,
        options: BenchOptions {
            runtime: a.runtime,
            runs: a.runs,
            warmup: a.warmup,
            threads: a.threads,
            input: a.input,
            json: a.json,
        },
    })
}

const AARCH64_LINUX: &str = "aarch64-unknown-linux-gnu";
const AARCH64_ANDROID: &str = "aarch64-linux-android";
/// Directory on the phone that a shell user may write and execute from.
const DEVICE_DIR: &str = "/data/local/tmp/edgekd";
/// Android API level of the NDK clang wrapper used when cargo-ndk is absent.
const ANDROID_API: u32 = 24;

/// Builds edgekd-bench for `target` and runs it there.
pub fn run(b: &ArmBench) -> Result<()> {
    if !b.model.is_file() {
        bail!("model {} does not exist", b.model.display());
    }
    if let Some(input) = &b.options.input {
        if !input.is_file() {
            bail!("input {} does not exist", input.display());
        }
    }
    match b.target {
        Target::Host => {
            let exe = build_bench(None, &[])?;
            let args = bench_args(&b.model, b.options.input.as_deref(), &b.options);
            run_inherit(Command::new(exe).args(args), "edgekd-bench")
        }
        Target::Aarch64 => run_aarch64(b),
        Target::Android => run_android(b),
    }
}

fn bench_args(model: &Path, input: Option<&Path>, o: &BenchOptions) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        model.into(),
        "--runtime".into(),
        o.runtime.clone().into(),
        "--runs".into(),
        o.runs.to_string().into(),
        "--warmup".into(),
        o.warmup.to_string().into(),
        "--threads".into(),
        o.threads.to_string().into(),
    ];
    if let Some(i) = input {
        v.push("--input".into());
        v.push(i.into());
    }
    if o.json {
        v.push("--json".into());
    }
    v
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

fn require(program: &str, hint: &str) -> Result<()> {
    if !on_path(program) {
        bail!("`{program}` was not found on PATH: {hint}");
    }
    Ok(())
}

fn run_aarch64(b: &ArmBench) -> Result<()> {
    require(
        "aarch64-linux-gnu-gcc",
        "install gcc-aarch64-linux-gnu (the cross linker)",
    )?;
    require(
        "qemu-aarch64",
        "install qemu-user (runs aarch64 binaries on this machine)",
    )?;
    let exe = build_bench(
        Some(AARCH64_LINUX),
        &[(
            "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
            "aarch64-linux-gnu-gcc".into(),
        )],
    )?;
    eprintln!(
        "note: running {AARCH64_LINUX} under qemu-aarch64: emulated timings mean nothing; \
         only outputs and the tract/edgekd agreement count"
    );
    let args = bench_args(&b.model, b.options.input.as_deref(), &b.options);
    run_inherit(
        Command::new("qemu-aarch64")
            .args(["-L", "/usr/aarch64-linux-gnu"])
            .arg(exe)
            .args(args)
            .env("EDGEKD_BENCH_EMULATED", "1"),
        "qemu-aarch64 edgekd-bench",
    )
}

/// Serial of the one device `adb devices` lists as ready.
fn adb_device() -> Result<String> {
    let out = Command::new("adb")
        .arg("devices")
        .output()
        .context("running `adb devices`")?;
    if !out.status.success() {
        bail!(
            "`adb devices` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let ready: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, state)| state.trim() == "device")
        .map(|(serial, _)| serial)
        .collect();
    match ready.as_slice() {
        [] => bail!(
            "no Android device is connected (`adb devices` lists none in state `device`): \
             plug in a phone with USB debugging enabled and accept its prompt"
        ),
        [one] => Ok(one.to_string()),
        many => bail!(
            "{} devices are connected ({}); connect only one",
            many.len(),
            many.join(", ")
        ),
    }
}

/// Environment for linking aarch64-linux-android without cargo-ndk: the NDK's clang.
fn ndk_linker_env() -> Result<Vec<(&'static str, OsString)>> {
    let ndk = std::env::var_os("ANDROID_NDK_HOME")
        .or_else(|| std::env::var_os("ANDROID_NDK_ROOT"))
        .context(
            "linking for Android needs the Android NDK: set ANDROID_NDK_HOME \
             (see device/tract/README.md)",
        )?;
    let clang = Path::new(&ndk)
        .join("toolchains/llvm/prebuilt/linux-x86_64/bin")
        .join(format!("aarch64-linux-android{ANDROID_API}-clang"));
    if !clang.is_file() {
        bail!(
            "the NDK at {} has no {}",
            Path::new(&ndk).display(),
            clang.display()
        );
    }
    Ok(vec![(
        "CARGO_TARGET_AARCH64_LINUX_ANDROID_LINKER",
        clang.into(),
    )])
}

fn run_android(b: &ArmBench) -> Result<()> {
    if !b.adb {
        bail!("--target android runs on a phone through adb: pass --adb");
    }
    require(
        "adb",
        "install Android platform-tools (adb) to reach a phone",
    )?;
    let serial = adb_device()?;
    let exe = build_bench(Some(AARCH64_ANDROID), &ndk_linker_env()?)?;
    let adb = |args: &[&str]| -> Result<()> {
        let status = Command::new("adb")
            .args(["-s", &serial])
            .args(args)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("running adb {}", args.join(" ")))?;
        if !status.success() {
            bail!("`adb {}` failed ({status})", args.join(" "));
        }
        Ok(())
    };
    let file_name = |p: &Path| -> Result<String> {
        Ok(p.file_name()
            .context("path has no file name")?
            .to_string_lossy()
            .into_owned())
    };
    adb(&["shell", "mkdir", "-p", DEVICE_DIR])?;
    let remote_exe = format!("{DEVICE_DIR}/edgekd-bench");
    adb(&["push", &exe.to_string_lossy(), &remote_exe])?;
    adb(&["shell", "chmod", "755", &remote_exe])?;
    let remote_model = format!("{DEVICE_DIR}/{}", file_name(&b.model)?);
    adb(&["push", &b.model.to_string_lossy(), &remote_model])?;
    let remote_input = match &b.options.input {
        Some(i) => {
            let r = format!("{DEVICE_DIR}/{}", file_name(i)?);
            adb(&["push", &i.to_string_lossy(), &r])?;
            Some(PathBuf::from(r))
        }
        None => None,
    };
    let args = bench_args(
        Path::new(&remote_model),
        remote_input.as_deref(),
        &b.options,
    );
    let mut shell = vec!["shell".to_string(), remote_exe];
    shell.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    let shell: Vec<&str> = shell.iter().map(String::as_str).collect();
    adb(&shell)
}

/// One runtime's timings from edgekd-bench.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeFigures {
    /// `tract` or `edgekd`.
    pub runtime: String,
    /// Model load and plan, µs.
    pub init_us: f64,
    /// First inference, µs.
    pub first_us: f64,
    /// Mean, µs.
    pub mean_us: f64,
    /// Median, µs.
    pub p50_us: f64,
    /// 90th percentile, µs.
    pub p90_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Fastest, µs.
    pub min_us: f64,
    /// Slowest, µs.
    pub max_us: f64,
}

/// What edgekd-bench measured on a target.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ArmReport {
    /// Target name.
    pub target: String,
    /// Timings come from an emulator and mean nothing.
    pub emulated: bool,
    /// Timings per runtime.
    pub runtimes: Vec<RuntimeFigures>,
    /// edgekd-runtime's int8 outputs on that target, one row per input sample.
    pub outputs: Vec<Vec<i8>>,
    /// tract's outputs equal edgekd-runtime's on every sample.
    pub tract_agrees: Option<bool>,
    /// Peak resident memory.
    pub peak_rss_bytes: Option<u64>,
}

/// Runs edgekd-bench on `target` over `input` and collects its figures and outputs.
pub fn measure(
    _model: &Path,
    target: Target,
    _input: &Path,
    _opts: &BenchOptions,
) -> Result<ArmReport> {
    bail!("edgekd-bench output collection for {target:?} is not wired yet")
}

fn workspace_root() -> PathBuf {
    // host/ sits in the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo build --release -p edgekd-tract --bin edgekd-bench [--target T]`; returns the
/// executable cargo reports (so CARGO_TARGET_DIR and profiles are honoured).
fn build_bench(target: Option<&str>, env: &[(&str, OsString)]) -> Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "edgekd-tract",
            "--bin",
            "edgekd-bench",
        ])
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    eprintln!(
        "building edgekd-bench{} ...",
        target.map(|t| format!(" for {t}")).unwrap_or_default()
    );
    let out = cmd.output().context("running cargo build")?;
    if !out.status.success() {
        bail!(
            "cargo build of edgekd-bench{} failed (see the messages above)",
            target.map(|t| format!(" for {t}")).unwrap_or_default()
        );
    }
    executable_from_messages(&String::from_utf8_lossy(&out.stdout))
        .context("cargo did not report an edgekd-bench executable")
}

/// The `executable` of the `edgekd-bench` artifact in cargo's JSON messages.
fn executable_from_messages(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "edgekd-bench")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

fn run_inherit(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_executable_in_cargo_messages() {
        let msgs = r#"{"reason":"compiler-artifact","target":{"name":"edgekd_tract"},"executable":null}
{"reason":"compiler-artifact","target":{"name":"edgekd-bench"},"executable":"/t/release/edgekd-bench"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            executable_from_messages(msgs),
            Some(PathBuf::from("/t/release/edgekd-bench"))
        );
        assert_eq!(executable_from_messages("not json"), None);
    }

    #[test]
    fn passes_options_through() {
        let o = BenchOptions {
            input: Some("x.npy".into()),
            json: true,
            ..BenchOptions::default()
        };
        let args = bench_args(Path::new("m.ekd"), o.input.as_deref(), &o);
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            args.join(" "),
            "m.ekd --runtime both --runs 100 --warmup 10 --threads 1 --input x.npy --json"
        );
    }

    #[test]
    fn android_without_adb_flag_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.ekd");
        std::fs::write(&model, b"x").unwrap();
        let err = run(&ArmBench {
            target: Target::Android,
            model,
            adb: false,
            options: BenchOptions::default(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("pass --adb"), "{err}");
    }

    #[test]
    fn android_without_adb_program_or_device_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.ekd");
        std::fs::write(&model, b"x").unwrap();
        let err = run(&ArmBench {
            target: Target::Android,
            model,
            adb: true,
            options: BenchOptions::default(),
        })
        .unwrap_err()
        .to_string();
        // No adb here; on a machine with adb but no phone the device check answers.
        assert!(
            err.contains("`adb` was not found") || err.contains("no Android device"),
            "{err}"
        );
    }

    #[test]
    fn missing_model_is_reported_before_building() {
        let err = run(&ArmBench {
            target: Target::Host,
            model: "/nonexistent/m.ekd".into(),
            adb: false,
            options: BenchOptions::default(),
        })
        .unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
