//! `edgekd bench --target host|aarch64|android`: builds `edgekd-bench` (crate
//! `edgekd-tract`) and runs it on this machine, on aarch64 under `qemu-aarch64`, or on
//! an Android phone through `adb`.
//!
//! [`measure`] is the library entry point (used by `edgekd run`): it runs the tool with
//! `--json --save-outputs` and returns the timings and the int8 outputs per sample.
//! [`run_cli`] is the command: it prints the tool's own report (text or JSON) and checks
//! the target's outputs against the host runtime's, bit for bit.
//!
//! Emulated (qemu-user) timings mean nothing: that path is for checking that the
//! aarch64 build runs and agrees with the reference interpreter; reports say so.
//! Build progress goes to stderr; only the report goes to stdout.

use super::bench::{Args, Golden};
use crate::io::{self, Matrix};
use anyhow::{bail, Context, Result};
use edgekd_runtime::Model;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use super::bench::Target;

/// Which runtime(s) `edgekd-bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// `edgekd-tract` (the model lowered to tract, int8).
    Tract,
    /// `edgekd-runtime` (the interpreter the microcontrollers run).
    Edgekd,
    /// Both, in one process run, with their outputs compared on every sample.
    #[default]
    Both,
}

impl Runtime {
    fn flag(self) -> &'static str {
        match self {
            Runtime::Tract => "tract",
            Runtime::Edgekd => "edgekd",
            Runtime::Both => "both",
        }
    }
}

/// What `edgekd-bench` should measure (passed through as its flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchOptions {
    /// `tract`, `edgekd` or `both`.
    pub runtime: Runtime,
    /// Timed runs (at least 1).
    pub runs: u64,
    /// Warm-up runs.
    pub warmup: u64,
    /// tract matmul threads (1..=256).
    pub threads: u64,
    /// Android only: allowed to use adb (`--target android` needs it).
    pub adb: bool,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            runtime: Runtime::Both,
            runs: 100,
            warmup: 10,
            threads: 1,
            adb: false,
        }
    }
}

/// Timings of one runtime, microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct RuntimeFigures {
    /// `tract` or `edgekd`.
    pub runtime: String,
    /// Parse + build (+ optimize, for tract).
    pub init_us: f64,
    /// The first inference.
    pub first_us: f64,
    /// Mean of the timed runs.
    pub mean_us: f64,
    /// Median of the timed runs.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Fastest timed run.
    pub min_us: f64,
    /// Slowest timed run.
    pub max_us: f64,
}

/// What [`measure`] found.
#[derive(Debug, Clone, Serialize)]
pub struct ArmReport {
    /// `host`, `aarch64` or `android`.
    pub target: String,
    /// Run under an emulator (qemu-user): the timings mean nothing, the outputs do.
    pub emulated: bool,
    /// Per runtime measured.
    pub runtimes: Vec<RuntimeFigures>,
    /// int8 outputs per input sample, from the edgekd runtime on that target (from
    /// tract when only tract ran).
    pub outputs: Vec<Vec<i8>>,
    /// With both runtimes: tract's outputs equal edgekd's on every sample.
    pub tract_agrees: Option<bool>,
    /// Peak resident memory of the benchmark process (`VmHWM`), where known.
    pub peak_rss_bytes: Option<u64>,
}

/// Builds `edgekd-bench` for `target` (cached by cargo), runs it on `input` (int8
/// `.npy`, one sample per row) and returns its figures and outputs.
///
/// When tract and edgekd disagree the report says so (`tract_agrees: Some(false)`); it
/// is not an error. Missing tools (cross linker, qemu-aarch64, adb, a phone) are errors
/// that name what to install.
pub fn measure(
    model: &Path,
    target: Target,
    input: &Path,
    opts: &BenchOptions,
) -> Result<ArmReport> {
    let samples = check_inputs(model, input)?;
    let opts = &onnx_options(model, opts)?;
    let runner = Runner::prepare(target, opts.adb, is_onnx(model))?;
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let saved = dir.path().join("outputs.npy");
    let out = runner.run(
        model,
        input,
        opts,
        &["--json", "--no-profile"],
        Some(&saved),
        Capture::All,
    )?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let parsed: Option<BenchJson> = serde_json::from_str(&stdout).ok();
    let json = match parsed {
        // A disagreement between the runtimes is a finding, reported below.
        Some(j)
            if out.status.success()
                || j.agreement
                    .as_ref()
                    .is_some_and(|a| a.first_mismatch.is_some()) =>
        {
            j
        }
        _ => bail!(
            "edgekd-bench on {} failed ({}): {}",
            target.name(),
            out.status,
            stderr.trim()
        ),
    };
    let outputs = io::read_i8_matrix(&saved).context("reading the outputs edgekd-bench saved")?;
    let outputs: Vec<Vec<i8>> = (0..outputs.rows).map(|r| outputs.row(r).to_vec()).collect();
    if outputs.len() != samples {
        bail!(
            "edgekd-bench returned {} output rows for {samples} input samples",
            outputs.len()
        );
    }
    Ok(json.into_report(target, outputs))
}

fn is_onnx(model: &Path) -> bool {
    model.extension().is_some_and(|e| e == "onnx")
}

/// An .onnx model (the host's export) runs on tract only: `both` means tract there.
fn onnx_options(model: &Path, opts: &BenchOptions) -> Result<BenchOptions> {
    if !is_onnx(model) {
        return Ok(opts.clone());
    }
    if opts.runtime == Runtime::Edgekd {
        bail!(
            "{} is an ONNX file: it runs on tract only; benchmark the .ekd for the edgekd runtime",
            model.display()
        );
    }
    Ok(BenchOptions {
        runtime: Runtime::Tract,
        ..opts.clone()
    })
}

/// Runs `edgekd bench --target host|aarch64|android`.
pub fn run_cli(args: Args) -> Result<()> {
    let target = args.target;
    if target.board().is_some() {
        bail!(
            "--target {} is a firmware target (edgekd bench runs it in QEMU)",
            target.name()
        );
    }
    if args.firmware_dir.is_some() || args.build.is_set() {
        bail!("--firmware-dir, --opt-level and --kernels apply to the qemu-* targets only");
    }
    if args.adb && target != Target::Android {
        bail!("--adb applies to --target android only");
    }
    let defaults = BenchOptions::default();
    let opts = BenchOptions {
        runtime: args.runtime.unwrap_or(defaults.runtime),
        runs: args.runs.unwrap_or(defaults.runs),
        warmup: args.warmup.unwrap_or(defaults.warmup),
        threads: args.threads.unwrap_or(defaults.threads),
        adb: args.adb,
    };
    if is_onnx(&args.model) {
        return run_cli_onnx(&args, &onnx_options(&args.model, &opts)?);
    }
    // The same inputs as the firmware path: --input, `<model>.input.npy`, or 16 seeded
    // random samples; and the host runtime's outputs on them, to compare with.
    let golden = Golden::prepare(&args.model, args.input.as_deref())?;
    let runner = Runner::prepare(target, opts.adb, false)?;
    let saved = golden.dir_path().join("target-outputs.npy");
    let mut flags = Vec::new();
    if args.json {
        flags.push("--json");
    }
    let out = runner.run(
        &args.model,
        &golden.input_path(),
        &opts,
        &flags,
        Some(&saved),
        Capture::Nothing,
    )?;
    let outputs = io::read_i8_matrix(&saved).ok();
    // Whatever edgekd-bench said, compare what it saved with the host runtime.
    if let Some(outputs) = &outputs {
        let verdict = compare(outputs, &golden.expected);
        match verdict {
            None => eprintln!(
                "edgekd bench: outputs on {} bit-exact with the host runtime on {}/{} samples",
                target.name(),
                golden.expected.rows,
                golden.expected.rows
            ),
            Some(first) => bail!(
                "the outputs on {} differ from the host runtime's, first on sample {first}",
                target.name()
            ),
        }
    }
    if !out.status.success() {
        bail!("edgekd-bench on {} failed ({})", target.name(), out.status);
    }
    if outputs.is_none() {
        bail!("edgekd-bench on {} saved no outputs", target.name());
    }
    Ok(())
}

/// `edgekd bench` on an .onnx file: tract-onnx only, on the given int8 inputs (there is
/// no .ekd here to compute the reference outputs with).
fn run_cli_onnx(args: &Args, opts: &BenchOptions) -> Result<()> {
    let input = args.input.as_deref().with_context(|| {
        format!(
            "{} is an ONNX file: pass --input with int8 samples (.npy, one per row)",
            args.model.display()
        )
    })?;
    check_inputs(&args.model, input)?;
    let runner = Runner::prepare(args.target, opts.adb, true)?;
    let flags: &[&str] = if args.json { &["--json"] } else { &[] };
    let out = runner.run(&args.model, input, opts, flags, None, Capture::Nothing)?;
    if !out.status.success() {
        bail!(
            "edgekd-bench on {} failed ({})",
            args.target.name(),
            out.status
        );
    }
    Ok(())
}

/// First row where `got` differs from `want` (a missing row counts), `None` if equal.
fn compare(got: &Matrix<i8>, want: &Matrix<i8>) -> Option<usize> {
    if got.cols != want.cols && want.rows > 0 {
        return Some(0);
    }
    (0..want.rows.max(got.rows))
        .find(|&r| r >= got.rows || r >= want.rows || got.row(r) != want.row(r))
}

/// Checks model and inputs before a (long) build; returns the number of samples.
fn check_inputs(model: &Path, input: &Path) -> Result<usize> {
    if !model.is_file() {
        bail!("model {} does not exist", model.display());
    }
    if !input.is_file() {
        bail!("input {} does not exist", input.display());
    }
    let inputs = io::read_i8_matrix(input).with_context(|| {
        format!(
            "{} must be an int8 .npy, one sample per row",
            input.display()
        )
    })?;
    if inputs.rows == 0 {
        bail!("{} holds no samples", input.display());
    }
    if model.extension().is_some_and(|e| e == "onnx") {
        return Ok(inputs.rows);
    }
    let bytes = io::read_model(model)?;
    let parsed = Model::parse(bytes.as_bytes())
        .with_context(|| format!("{} is not a valid model", model.display()))?;
    let n = parsed.input(0)?.elements();
    if inputs.cols != n {
        bail!(
            "{} has {} values per sample but the model takes {n}",
            input.display(),
            inputs.cols
        );
    }
    Ok(inputs.rows)
}

/// What `edgekd-bench --json` prints (the parts used here).
#[derive(Debug, Deserialize)]
struct BenchJson {
    emulated: bool,
    results: Vec<BenchResult>,
    agreement: Option<BenchAgreement>,
}

#[derive(Debug, Deserialize)]
struct BenchResult {
    runtime: String,
    init_us: f64,
    first_inference_us: f64,
    runs: BenchSummary,
    peak_rss_kib: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct BenchSummary {
    min_us: f64,
    max_us: f64,
    mean_us: f64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
}

#[derive(Debug, Deserialize)]
struct BenchAgreement {
    first_mismatch: Option<usize>,
}

impl BenchJson {
    fn into_report(self, target: Target, outputs: Vec<Vec<i8>>) -> ArmReport {
        ArmReport {
            target: target.name().into(),
            emulated: self.emulated || target == Target::Aarch64,
            peak_rss_bytes: self
                .results
                .iter()
                .filter_map(|r| r.peak_rss_kib)
                .max()
                .map(|k| k * 1024),
            runtimes: self
                .results
                .into_iter()
                .map(|r| RuntimeFigures {
                    runtime: r.runtime,
                    init_us: r.init_us,
                    first_us: r.first_inference_us,
                    mean_us: r.runs.mean_us,
                    p50_us: r.runs.p50_us,
                    p90_us: r.runs.p90_us,
                    p99_us: r.runs.p99_us,
                    min_us: r.runs.min_us,
                    max_us: r.runs.max_us,
                })
                .collect(),
            outputs,
            tract_agrees: self.agreement.map(|a| a.first_mismatch.is_none()),
        }
    }
}

const AARCH64_LINUX: &str = "aarch64-unknown-linux-gnu";
const AARCH64_ANDROID: &str = "aarch64-linux-android";
/// Cargo profile of the aarch64 build run under qemu (Cargo.toml says why).
const CROSS_PROFILE: &str = "bench-cross";
/// Directory on the phone that a shell user may write and execute from.
const DEVICE_DIR: &str = "/data/local/tmp/edgekd";
/// Android API level of the NDK clang wrapper used when cargo-ndk is absent.
const ANDROID_API: u32 = 24;
/// Environment variable that makes edgekd-bench flag its timings as emulated.
const EMULATED_ENV: &str = "EDGEKD_BENCH_EMULATED";

/// How edgekd-bench's stdout/stderr are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Capture {
    /// Captured (for parsing).
    All,
    /// Passed through to the user.
    Nothing,
}

/// A built edgekd-bench and how to start it on its target.
enum Runner {
    Local(PathBuf),
    Qemu(PathBuf),
    Adb { serial: String, exe: String },
}

impl Runner {
    /// Checks the tools `target` needs, builds edgekd-bench (with ONNX support if
    /// `onnx`) and pushes it to the phone.
    fn prepare(target: Target, adb: bool, onnx: bool) -> Result<Self> {
        let features: &[&str] = if onnx { &["onnx"] } else { &[] };
        match target {
            Target::Host => Ok(Runner::Local(build_bench(None, "release", features, &[])?)),
            Target::Aarch64 => {
                check_rust_target(AARCH64_LINUX)?;
                require(
                    "aarch64-linux-gnu-gcc",
                    "the aarch64 cross linker is missing: run `sudo apt-get install -y gcc-aarch64-linux-gnu libc6-dev-arm64-cross` (or scripts/bootstrap.sh)",
                )?;
                if !Path::new("/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1").is_file() {
                    bail!(
                        "the aarch64 C library (/usr/aarch64-linux-gnu) is missing: run \
                         `sudo apt-get install -y libc6-dev-arm64-cross` (or scripts/bootstrap.sh)"
                    );
                }
                require(
                    "qemu-aarch64",
                    "qemu-user runs aarch64 binaries here: run `sudo apt-get install -y qemu-user` (or scripts/bootstrap.sh)",
                )?;
                let exe = build_bench(
                    Some(AARCH64_LINUX),
                    CROSS_PROFILE,
                    features,
                    &[(
                        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
                        "aarch64-linux-gnu-gcc".into(),
                    )],
                )?;
                eprintln!(
                    "note: running {AARCH64_LINUX} under qemu-aarch64: emulated timings mean nothing; \
                     only the outputs and the tract/edgekd agreement count"
                );
                Ok(Runner::Qemu(exe))
            }
            Target::Android => {
                if !adb {
                    bail!("--target android runs on a phone through adb: pass --adb");
                }
                require(
                    "adb",
                    "install Android platform-tools (adb) to reach a phone",
                )?;
                let serial = adb_device()?;
                check_rust_target(AARCH64_ANDROID)?;
                let exe = build_bench(
                    Some(AARCH64_ANDROID),
                    "release",
                    features,
                    &ndk_linker_env()?,
                )?;
                let remote = format!("{DEVICE_DIR}/edgekd-bench");
                adb_cmd(&serial, &["shell", "mkdir", "-p", DEVICE_DIR])?;
                adb_cmd(&serial, &["push", &exe.to_string_lossy(), &remote])?;
                adb_cmd(&serial, &["shell", "chmod", "755", &remote])?;
                Ok(Runner::Adb {
                    serial,
                    exe: remote,
                })
            }
            other => bail!(
                "--target {} is a firmware target: edgekd-bench runs on host, aarch64 or android",
                other.name()
            ),
        }
    }

    /// Runs edgekd-bench on `model` and `input` with `opts` and `extra` flags; with
    /// `save` the outputs end up in that local file.
    fn run(
        &self,
        model: &Path,
        input: &Path,
        opts: &BenchOptions,
        extra: &[&str],
        save: Option<&Path>,
        capture: Capture,
    ) -> Result<Output> {
        let (mut cmd, remote_save) = match self {
            Runner::Local(exe) => {
                let mut cmd = Command::new(exe);
                cmd.args(bench_args(model, input, opts, extra, save));
                (cmd, None)
            }
            Runner::Qemu(exe) => {
                let mut cmd = Command::new("qemu-aarch64");
                cmd.args(["-L", "/usr/aarch64-linux-gnu"])
                    .arg(exe)
                    .args(bench_args(model, input, opts, extra, save))
                    .env(EMULATED_ENV, "1");
                (cmd, None)
            }
            Runner::Adb { serial, exe } => {
                let remote_model = format!("{DEVICE_DIR}/{}", file_name(model)?);
                adb_cmd(serial, &["push", &model.to_string_lossy(), &remote_model])?;
                let remote_input = format!("{DEVICE_DIR}/input.npy");
                adb_cmd(serial, &["push", &input.to_string_lossy(), &remote_input])?;
                let remote_save = save.map(|_| format!("{DEVICE_DIR}/outputs.npy"));
                let args = bench_args(
                    Path::new(&remote_model),
                    Path::new(&remote_input),
                    opts,
                    extra,
                    remote_save.as_deref().map(Path::new),
                );
                let mut cmd = Command::new("adb");
                cmd.args(["-s", serial, "shell", exe]).args(args);
                (cmd, remote_save)
            }
        };
        cmd.stdin(Stdio::null());
        let out = match capture {
            Capture::All => cmd.output().context("starting edgekd-bench")?,
            Capture::Nothing => Output {
                status: cmd.status().context("starting edgekd-bench")?,
                stdout: Vec::new(),
                stderr: Vec::new(),
            },
        };
        if let (Runner::Adb { serial, .. }, Some(remote), Some(local)) = (self, remote_save, save) {
            // Fetch the outputs even after a failure: a disagreement still writes them.
            let _ = adb_cmd(serial, &["pull", &remote, &local.to_string_lossy()]);
        }
        Ok(out)
    }
}

fn bench_args(
    model: &Path,
    input: &Path,
    o: &BenchOptions,
    extra: &[&str],
    save: Option<&Path>,
) -> Vec<OsString> {
    let mut v: Vec<OsString> = vec![
        model.into(),
        "--runtime".into(),
        o.runtime.flag().into(),
        "--runs".into(),
        o.runs.to_string().into(),
        "--warmup".into(),
        o.warmup.to_string().into(),
        "--threads".into(),
        o.threads.to_string().into(),
        "--input".into(),
        input.into(),
    ];
    if let Some(s) = save {
        v.push("--save-outputs".into());
        v.push(s.into());
    }
    v.extend(extra.iter().map(OsString::from));
    v
}

fn file_name(p: &Path) -> Result<String> {
    Ok(p.file_name()
        .with_context(|| format!("{} has no file name", p.display()))?
        .to_string_lossy()
        .into_owned())
}

fn require(program: &str, hint: &str) -> Result<()> {
    if super::bench::which(program).is_none() {
        bail!("`{program}` was not found on PATH: {hint}");
    }
    Ok(())
}

fn check_rust_target(triple: &str) -> Result<()> {
    super::bench::check_target_installed(triple)
}

fn adb_cmd(serial: &str, args: &[&str]) -> Result<()> {
    let out = Command::new("adb")
        .args(["-s", serial])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("running adb {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`adb {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
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

fn workspace_root() -> PathBuf {
    // host/ sits in the workspace root.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `cargo build --profile P -p edgekd-tract --bin edgekd-bench [--target T]`; returns
/// the executable cargo reports (so CARGO_TARGET_DIR is honoured). Cargo's progress
/// and diagnostics go to stderr.
fn build_bench(
    target: Option<&str>,
    profile: &str,
    features: &[&str],
    env: &[(&str, OsString)],
) -> Result<PathBuf> {
    let root = workspace_root();
    if !root.join("device/tract/Cargo.toml").is_file() {
        bail!(
            "edgekd-bench is built from the edgekd source tree, which is not at {}",
            root.display()
        );
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", profile])
        .args(["-p", "edgekd-tract", "--bin", "edgekd-bench"])
        .args(["--message-format", "json-render-diagnostics"])
        // A host-side setting must not leak into a cross build.
        .env_remove("CARGO_BUILD_TARGET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(t) = target {
        cmd.args(["--target", t]);
    }
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let what = format!(
        "edgekd-bench{} (profile {profile})",
        target.map(|t| format!(" for {t}")).unwrap_or_default()
    );
    eprintln!("building {what} ...");
    let out = cmd.output().context("running cargo build")?;
    if !out.status.success() {
        bail!("cargo build of {what} failed (see the messages above)");
    }
    executable_from_messages(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("cargo did not report an executable for {what}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write_inputs(dir: &Path, rows: usize, cols: usize) -> PathBuf {
        let p = dir.join("in.npy");
        let m = Matrix {
            rows,
            cols,
            data: vec![0i8; rows * cols],
        };
        std::fs::write(&p, io::npy_bytes(&m).unwrap()).unwrap();
        p
    }

    fn reference(name: &str) -> PathBuf {
        workspace_root().join("models/reference").join(name)
    }

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
            runtime: Runtime::Tract,
            runs: 5,
            ..BenchOptions::default()
        };
        let args = bench_args(
            Path::new("m.ekd"),
            Path::new("x.npy"),
            &o,
            &["--json"],
            Some(Path::new("o.npy")),
        );
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        assert_eq!(
            args.join(" "),
            "m.ekd --runtime tract --runs 5 --warmup 10 --threads 1 --input x.npy --save-outputs o.npy --json"
        );
    }

    #[test]
    fn parses_the_bench_json() {
        let json = r#"{"model":"m.ekd","emulated":false,"results":[
          {"runtime":"tract","init_us":900.0,"first_inference_us":50.0,"warmup":null,
           "runs":{"count":3,"min_us":1.0,"max_us":3.0,"mean_us":2.0,"std_us":0.8,"p50_us":2.0,"p90_us":3.0,"p99_us":3.0},
           "peak_rss_kib":100,"ops":[],"unattributed_us":0.0},
          {"runtime":"edgekd","init_us":9.0,"first_inference_us":5.0,"warmup":null,
           "runs":{"count":3,"min_us":4.0,"max_us":6.0,"mean_us":5.0,"std_us":0.8,"p50_us":5.0,"p90_us":6.0,"p99_us":6.0},
           "peak_rss_kib":120,"ops":[],"unattributed_us":0.0}],
          "agreement":{"samples":1,"bit_exact_samples":1,"argmax_agree":1,"max_abs_diff":0,"first_mismatch":null}}"#;
        let j: BenchJson = serde_json::from_str(json).unwrap();
        let r = j.into_report(Target::Aarch64, vec![vec![1, 2]]);
        assert!(r.emulated);
        assert_eq!(r.target, "aarch64");
        assert_eq!(r.tract_agrees, Some(true));
        assert_eq!(r.peak_rss_bytes, Some(120 * 1024));
        assert_eq!(r.runtimes.len(), 2);
        assert_eq!(r.runtimes[1].runtime, "edgekd");
        assert_eq!(r.runtimes[1].mean_us, 5.0);
        assert_eq!(r.runtimes[0].first_us, 50.0);
    }

    #[test]
    fn compares_outputs_row_by_row() {
        let m = |rows, data: Vec<i8>| Matrix {
            rows,
            cols: 2,
            data,
        };
        let want = m(2, vec![1, 2, 3, 4]);
        assert_eq!(compare(&m(2, vec![1, 2, 3, 4]), &want), None);
        assert_eq!(compare(&m(2, vec![1, 2, 3, 5]), &want), Some(1));
        assert_eq!(compare(&m(1, vec![1, 2]), &want), Some(1));
    }

    #[test]
    fn android_without_adb_flag_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let input = write_inputs(dir.path(), 1, 40);
        let err = measure(
            &reference("mlp.ekd"),
            Target::Android,
            &input,
            &BenchOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("pass --adb"), "{err}");
    }

    #[test]
    fn android_without_adb_program_or_device_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let input = write_inputs(dir.path(), 1, 40);
        let err = measure(
            &reference("mlp.ekd"),
            Target::Android,
            &input,
            &BenchOptions {
                adb: true,
                ..BenchOptions::default()
            },
        )
        .unwrap_err()
        .to_string();
        // No adb here; on a machine with adb but no phone the device check answers.
        assert!(
            err.contains("`adb` was not found") || err.contains("no Android device"),
            "{err}"
        );
    }

    #[test]
    fn bad_inputs_are_reported_before_building() {
        let dir = tempfile::tempdir().unwrap();
        let o = BenchOptions::default();
        let input = write_inputs(dir.path(), 2, 7);
        let err = measure(Path::new("/nonexistent/m.ekd"), Target::Host, &input, &o).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        // mlp takes 40 values per sample.
        let err = measure(&reference("mlp.ekd"), Target::Host, &input, &o).unwrap_err();
        assert!(err.to_string().contains("model takes 40"), "{err}");
        let not_npy = dir.path().join("x.npy");
        std::fs::write(&not_npy, b"nope").unwrap();
        let err = measure(&reference("mlp.ekd"), Target::Host, &not_npy, &o).unwrap_err();
        assert!(format!("{err:#}").contains("int8 .npy"), "{err:#}");
        let bad_model = dir.path().join("bad.ekd");
        std::fs::write(&bad_model, b"not a model").unwrap();
        let err = measure(&bad_model, Target::Host, &input, &o).unwrap_err();
        assert!(err.to_string().contains("not a valid model"), "{err}");
        let err = measure(
            &reference("mlp.ekd"),
            Target::QemuM4,
            &write_inputs(dir.path(), 1, 40),
            &o,
        )
        .unwrap_err();
        assert!(err.to_string().contains("firmware target"), "{err}");
    }
}
