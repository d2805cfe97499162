//! `edgekd bench --target qemu-*`: build the firmware around a model, run it in QEMU,
//! and report instructions per inference and per MAC, flash, static RAM and arena.
//! `--target host|aarch64|android` runs `edgekd-bench` instead ([`super::bench_arm`]).
//!
//! The firmware compares its outputs with the host runtime's on the same inputs, so a
//! benchmark is also a bit-exactness check. The build and run helpers here are shared
//! with `edgekd flash`.

use crate::io::{self, Matrix};
use crate::reference::SplitMix64;
use anyhow::{bail, Context, Result};
use edgekd_runtime::Model;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where `edgekd bench` runs: emulated Cortex-M (the firmware), or edgekd-bench on
/// this machine, on aarch64 Linux (qemu-user) or on an Android phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Cortex-M4F on QEMU's mps2-an386.
    QemuM4,
    /// Cortex-M7 on QEMU's mps2-an500.
    QemuM7,
    /// Cortex-M33 on QEMU's mps2-an505.
    QemuM33,
    /// Cortex-M0 on QEMU's microbit (16 KB RAM).
    QemuM0,
    /// edgekd-bench (tract and edgekd runtimes) natively on this machine.
    Host,
    /// edgekd-bench cross-built for aarch64-unknown-linux-gnu, run under qemu-aarch64
    /// (outputs only: emulated timings mean nothing).
    Aarch64,
    /// edgekd-bench built for aarch64-linux-android, run on a phone through adb (--adb).
    Android,
}

impl Target {
    /// The firmware board a `qemu-*` target builds; `None` for the edgekd-bench targets.
    pub fn board(self) -> Option<Board> {
        match self {
            Target::QemuM4 => Some(Board::Mps2An386),
            Target::QemuM7 => Some(Board::Mps2An500),
            Target::QemuM33 => Some(Board::Mps2An505),
            Target::QemuM0 => Some(Board::Microbit),
            Target::Host | Target::Aarch64 | Target::Android => None,
        }
    }

    /// The target's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::QemuM4 => "qemu-m4",
            Target::QemuM7 => "qemu-m7",
            Target::QemuM33 => "qemu-m33",
            Target::QemuM0 => "qemu-m0",
            Target::Host => "host",
            Target::Aarch64 => "aarch64",
            Target::Android => "android",
        }
    }
}

/// Boards the firmware builds for (its cargo features; memory maps in
/// `firmware/boards/<name>/memory.x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Board {
    /// Arm MPS2 AN386, Cortex-M4F.
    #[value(name = "mps2-an386")]
    Mps2An386,
    /// Arm MPS2 AN500, Cortex-M7.
    #[value(name = "mps2-an500")]
    Mps2An500,
    /// Netduino Plus 2, STM32F405 (Cortex-M4F).
    #[value(name = "netduinoplus2")]
    Netduinoplus2,
    /// Arm MPS2+ AN505, Cortex-M33.
    #[value(name = "mps2-an505")]
    Mps2An505,
    /// BBC micro:bit v1, nRF51822 (Cortex-M0).
    #[value(name = "microbit")]
    Microbit,
}

impl Board {
    /// The firmware's cargo feature.
    pub fn feature(self) -> &'static str {
        match self {
            Board::Mps2An386 => "mps2-an386",
            Board::Mps2An500 => "mps2-an500",
            Board::Netduinoplus2 => "netduinoplus2",
            Board::Mps2An505 => "mps2-an505",
            Board::Microbit => "microbit",
        }
    }

    /// The Rust target triple of the board's core.
    pub fn triple(self) -> &'static str {
        match self {
            Board::Mps2An386 | Board::Mps2An500 | Board::Netduinoplus2 => "thumbv7em-none-eabihf",
            Board::Mps2An505 => "thumbv8m.main-none-eabihf",
            Board::Microbit => "thumbv6m-none-eabi",
        }
    }

    /// The core, for reports.
    pub fn core(self) -> &'static str {
        match self {
            Board::Mps2An386 | Board::Netduinoplus2 => "Cortex-M4F",
            Board::Mps2An500 => "Cortex-M7",
            Board::Mps2An505 => "Cortex-M33",
            Board::Microbit => "Cortex-M0",
        }
    }

    /// Whether the core has the DSP extension (and so the kernels' assembly paths).
    pub fn has_dsp(self) -> bool {
        self != Board::Microbit
    }
}

/// Arguments of `edgekd bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to run.
    #[arg(long, value_enum)]
    pub target: Target,
    /// The `.ekd` model.
    #[arg(long)]
    pub model: PathBuf,
    /// int8 inputs (`.npy`, one sample per row). Default: `<model stem>.input.npy` beside
    /// the model, else 16 seeded random samples.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The firmware crate. Default: `$EDGEKD_FIRMWARE_DIR`, else the `firmware/` of this
    /// source tree, else `./firmware`.
    #[arg(long)]
    pub firmware_dir: Option<PathBuf>,
    /// qemu-*: how the firmware is compiled.
    #[command(flatten)]
    pub build: BuildArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// host/aarch64/android: which runtime(s) edgekd-bench measures [default: both,
    /// which also checks that their outputs are identical].
    #[arg(long, value_enum)]
    pub runtime: Option<super::bench_arm::Runtime>,
    /// host/aarch64/android: timed runs [default: 100].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub runs: Option<u64>,
    /// host/aarch64/android: warm-up runs [default: 10].
    #[arg(long)]
    pub warmup: Option<u64>,
    /// host/aarch64/android: threads for tract's matmuls [default: 1].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub threads: Option<u64>,
    /// android: push and run on the connected phone through adb (required there).
    #[arg(long)]
    pub adb: bool,
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    if args.target.board().is_none() {
        return super::bench_arm::run_cli(args);
    }
    if args.runtime.is_some()
        || args.runs.is_some()
        || args.warmup.is_some()
        || args.threads.is_some()
        || args.adb
    {
        bail!(
            "--runtime, --runs, --warmup, --threads and --adb apply to --target host, aarch64 \
             and android (edgekd-bench), not to the firmware target {}",
            args.target.name()
        );
    }
    let m = measure(
        args.target,
        &args.model,
        args.input.as_deref(),
        args.firmware_dir.as_deref(),
        args.build.build(),
    )?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&m.report)?);
    } else {
        print!("{}", m.report.table());
    }
    m.verdict()
}

/// One firmware run in QEMU: the report and how QEMU exited.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// The figures.
    pub report: Report,
    /// What the firmware printed.
    pub stdout: String,
    /// QEMU exited 0 (the firmware found its outputs equal to the expected ones).
    pub status_ok: bool,
}

impl Measurement {
    /// `Err` unless every output equals the host runtime's and the firmware passed.
    pub fn verdict(&self) -> Result<()> {
        if !self.report.bit_exact {
            bail!(
                "the firmware's outputs differ from the host runtime's on {} of {} samples",
                self.report.mismatches,
                self.report.samples
            );
        }
        if !self.status_ok {
            bail!("QEMU exited with a failure status:\n{}", self.stdout);
        }
        Ok(())
    }
}

/// Which kernels a firmware build compiles in (`EDGEKD_KERNELS`; see
/// `device/kernels/build.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kernels {
    /// The DSP cores' assembly loops and the layers' prepared tables (2 bytes of flash
    /// per weight): fewest instructions.
    Fast,
    /// Without them: least code.
    Small,
}

impl Kernels {
    /// The name `EDGEKD_KERNELS` takes.
    pub fn name(self) -> &'static str {
        match self {
            Kernels::Fast => "fast",
            Kernels::Small => "small",
        }
    }
}

/// The opt-levels a firmware build takes (cargo's).
pub const OPT_LEVELS: [&str; 6] = ["0", "1", "2", "3", "s", "z"];

/// The firmware build options `edgekd bench` and `edgekd flash` take.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildArgs {
    /// Optimization level of the firmware build (3, the default, is fastest; "s"/"z"
    /// are smaller).
    #[arg(long, value_parser = OPT_LEVELS)]
    pub opt_level: Option<String>,
    /// The kernels compiled in [default: fast at opt-level 0-3, small at s/z].
    #[arg(long, value_enum)]
    pub kernels: Option<Kernels>,
}

impl BuildArgs {
    /// Whether any option was given.
    pub fn is_set(&self) -> bool {
        self.opt_level.is_some() || self.kernels.is_some()
    }

    /// The build they ask for.
    pub fn build(&self) -> Build<'_> {
        Build::new(self.opt_level.as_deref().unwrap_or("3"), self.kernels)
    }
}

/// How the firmware is compiled.
#[derive(Debug, Clone, Copy)]
pub struct Build<'a> {
    /// cargo's `opt-level`.
    pub opt_level: &'a str,
    /// The kernels compiled in.
    pub kernels: Kernels,
}

impl<'a> Build<'a> {
    /// A build at `opt_level` with `kernels`, by default the fast ones unless the build
    /// is optimized for size ("s" or "z").
    pub fn new(opt_level: &'a str, kernels: Option<Kernels>) -> Self {
        let size = matches!(opt_level, "s" | "z");
        Build {
            opt_level,
            kernels: kernels.unwrap_or(if size { Kernels::Small } else { Kernels::Fast }),
        }
    }
}

/// Builds the firmware around `model` (and `input`, int8 samples; default as for
/// `--input`), runs it on the emulated `target` and compares it with the host runtime.
pub fn measure(
    target: Target,
    model: &Path,
    input: Option<&Path>,
    firmware_dir: Option<&Path>,
    build: Build<'_>,
) -> Result<Measurement> {
    let Some(board) = target.board() else {
        bail!(
            "{} is not an emulated Cortex-M target (use bench_arm::measure)",
            target.name()
        );
    };
    let fw = FirmwareDir::find(firmware_dir)?;
    let golden = Golden::prepare(model, input)?;
    let elf = fw.build(board, model, &golden, build)?;
    let run = run_qemu(&elf, QEMU_TIMEOUT)?;
    let parsed = FirmwareRun::parse(&run.stdout)
        .with_context(|| format!("cannot read the firmware's output:\n{}", run.stdout))?;
    let sizes = Sections::of(&elf)?;
    let report = Report::new(target, board, model, &golden, &parsed, &sizes, build)?;
    Ok(Measurement {
        report,
        stdout: run.stdout,
        status_ok: run.status_ok,
    })
}

/// A build-time variable's value for a piece of firmware kept (`1`) or left out (`0`).
fn flag(keep: bool) -> &'static str {
    if keep {
        "1"
    } else {
        "0"
    }
}

/// Longest a firmware run may take in QEMU.
pub(crate) const QEMU_TIMEOUT: Duration = Duration::from_secs(300);

/// Samples synthesized when a model has no inputs beside it.
const SYNTHETIC_SAMPLES: usize = 16;

/// The firmware crate.
pub(crate) struct FirmwareDir(PathBuf);

impl FirmwareDir {
    /// The crate's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    /// Finds the firmware crate: the argument, `$EDGEKD_FIRMWARE_DIR`, this source
    /// tree's `firmware/`, or `./firmware`.
    pub(crate) fn find(arg: Option<&Path>) -> Result<Self> {
        let candidates: Vec<PathBuf> = match arg {
            Some(p) => vec![p.to_path_buf()],
            None => std::env::var_os("EDGEKD_FIRMWARE_DIR")
                .map(PathBuf::from)
                .into_iter()
                .chain([
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware"),
                    PathBuf::from("firmware"),
                ])
                .collect(),
        };
        for dir in &candidates {
            if dir.join("Cargo.toml").is_file() && dir.join("build.rs").is_file() {
                return Ok(FirmwareDir(dir.canonicalize()?));
            }
        }
        bail!(
            "cannot find the firmware crate (looked in {}); pass --firmware-dir",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    /// Builds the release firmware for `board` around `model` and `golden`, and returns
    /// a private copy of the ELF (the next build overwrites cargo's).
    pub(crate) fn build(
        &self,
        board: Board,
        model: &Path,
        golden: &Golden,
        build: Build<'_>,
    ) -> Result<PathBuf> {
        check_target_installed(board.triple())?;
        let model = model
            .canonicalize()
            .with_context(|| format!("cannot read the model {}", model.display()))?;
        let target_dir = self.0.join("target");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let output = Command::new(cargo)
            .current_dir(&self.0)
            .args(["build", "--release", "--no-default-features", "--features"])
            .arg(board.feature())
            .args(["--target", board.triple()])
            .env("CARGO_TARGET_DIR", &target_dir)
            .env("EDGEKD_MODEL", &model)
            .env("EDGEKD_INPUT", golden.input_path())
            .env("EDGEKD_EXPECTED", golden.expected_path())
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", build.opt_level)
            .env("EDGEKD_KERNELS", build.kernels.name())
            // Only the model's op kinds are compiled into the runtime (code size).
            .env("EDGEKD_OPS", golden.ops.join(","))
            // ... and the kernels' slow fallbacks only if a layer takes them.
            .env("EDGEKD_FALLBACK", flag(golden.fallback))
            // ... and the column buffer sized to the model's largest layer (RAM).
            .env("EDGEKD_MAX_COLS", golden.columns.to_string())
            // ... and the DSP kernels' RAM channel table only if a layer prepares its
            // channels there (the small kernels always do).
            .env(
                "EDGEKD_CHANNEL_TABLE",
                flag(golden.needs_channel_table(build.kernels)),
            )
            // ... and the conv kernel's general loop only if a layer runs on it.
            .env(
                "EDGEKD_CONV_GENERAL",
                flag(golden.needs_conv_general(build.kernels)),
            )
            // ... and the fully connected rows without a table only if a layer has none.
            .env(
                "EDGEKD_FC_PLAIN",
                flag(golden.needs_fc_plain(build.kernels)),
            )
            // RUSTFLAGS would replace the firmware's own (and drop -Tlink.x).
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .stdin(Stdio::null())
            .output()
            .context("cannot run cargo to build the firmware")?;
        if !output.status.success() {
            bail!(
                "building the firmware for {} failed:\n{}",
                board.feature(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let built = target_dir
            .join(board.triple())
            .join("release")
            .join("edgekd-firmware");
        let copy = golden
            .dir
            .path()
            .join(format!("edgekd-firmware-{}.elf", board.feature()));
        std::fs::copy(&built, &copy).with_context(|| format!("cannot copy {}", built.display()))?;
        Ok(copy)
    }
}

pub(crate) fn check_target_installed(triple: &str) -> Result<()> {
    let sysroot = rustc_sysroot()?;
    if !sysroot.join("lib/rustlib").join(triple).is_dir() {
        bail!("the Rust target {triple} is not installed: run `rustup target add {triple}`");
    }
    Ok(())
}

fn rustc_sysroot() -> Result<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .context("cannot run rustc (is Rust installed through rustup?)")?;
    if !out.status.success() {
        bail!("rustc --print sysroot failed");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Inputs and the host runtime's outputs for them, as `.npy` files in a temp dir that
/// lives as long as this value.
pub(crate) struct Golden {
    dir: tempfile::TempDir,
    /// The inputs.
    pub inputs: Matrix<i8>,
    /// The host runtime's outputs.
    pub expected: Matrix<i8>,
    /// The op kinds the model uses, as the runtime's feature names
    /// (`conv2d,fully-connected`): the firmware is built with only these
    /// (`EDGEKD_OPS`, see `device/runtime/build.rs`).
    pub ops: Vec<String>,
    /// Whether a layer takes a kernel's slow fallback, which the firmware then keeps
    /// (`EDGEKD_FALLBACK`, see `device/kernels/build.rs`).
    pub fallback: bool,
    /// The kernels' column-buffer entries the model needs (`Op::scratch_columns`, at
    /// least 4): the firmware's buffer is sized to it (`EDGEKD_MAX_COLS`).
    pub columns: usize,
    /// Whether a layer prepares its channels in the DSP kernels' RAM table
    /// (`Op::needs_channel_table`); without one the firmware leaves the table out
    /// (`EDGEKD_CHANNEL_TABLE`).
    pub channel_table: bool,
    /// Whether a conv layer runs on the kernel's general loop (`Op::needs_conv_general`);
    /// without one the firmware leaves the loop out (`EDGEKD_CONV_GENERAL`).
    pub conv_general: bool,
    /// Whether a fully connected layer runs without a prepared table
    /// (`Op::needs_fc_plain`); without one the firmware leaves those rows out
    /// (`EDGEKD_FC_PLAIN`).
    pub fc_plain: bool,
}

impl Golden {
    /// Reads or synthesizes inputs for `model` and runs the host runtime on them.
    pub(crate) fn prepare(model_path: &Path, input: Option<&Path>) -> Result<Self> {
        let bytes = io::read_model(model_path)?;
        let model = Model::parse(bytes.as_bytes())
            .with_context(|| format!("{} is not a valid model", model_path.display()))?;
        let sibling = model_path.with_extension("input.npy");
        let inputs = match input {
            Some(p) => io::read_i8_matrix(p)?,
            None if sibling.is_file() => io::read_i8_matrix(&sibling)?,
            None => synthetic_inputs(model)?,
        };
        let (mut ops, mut fallback): (Vec<String>, bool) = (Vec::new(), false);
        let (mut columns, mut channel_table) = (4, false);
        let (mut conv_general, mut fc_plain) = (false, false);
        for op in model.ops() {
            let op = op?;
            fallback |= op.needs_fallback(&model)?;
            columns = columns.max(op.scratch_columns(&model)?);
            channel_table |= op.needs_channel_table(&model)?;
            conv_general |= op.needs_conv_general(&model)?;
            fc_plain |= op.needs_fc_plain(&model)?;
            let name = op.code.feature().to_string();
            if !ops.contains(&name) {
                ops.push(name);
            }
        }
        let expected = super::infer::run_batch(model, Some(&inputs), None)?.int8;
        let dir = tempfile::tempdir().context("cannot create a temp dir")?;
        let golden = Golden {
            dir,
            inputs,
            expected,
            ops,
            fallback,
            columns,
            channel_table,
            conv_general,
            fc_plain,
        };
        std::fs::write(golden.input_path(), io::npy_bytes(&golden.inputs)?)?;
        std::fs::write(golden.expected_path(), io::npy_bytes(&golden.expected)?)?;
        Ok(golden)
    }

    /// Whether firmware built with `kernels` keeps the DSP kernels' RAM channel table:
    /// when a layer prepares its channels there, and with the small kernels (which read
    /// no prepared tables).
    pub fn needs_channel_table(&self, kernels: Kernels) -> bool {
        self.channel_table || kernels == Kernels::Small
    }

    /// Whether firmware built with `kernels` keeps the conv kernel's general loop: when a
    /// conv layer runs on it, and with the small kernels (which have no dense path).
    pub fn needs_conv_general(&self, kernels: Kernels) -> bool {
        self.conv_general || kernels == Kernels::Small
    }

    /// Whether firmware built with `kernels` keeps the fully connected rows without a
    /// prepared table: when a layer runs on them, and with the small kernels (which
    /// read no tables).
    pub fn needs_fc_plain(&self, kernels: Kernels) -> bool {
        self.fc_plain || kernels == Kernels::Small
    }

    /// The inputs' `.npy` file.
    pub(crate) fn input_path(&self) -> PathBuf {
        self.dir.path().join("input.npy")
    }

    /// The temp dir holding the files (removed with this value).
    pub(crate) fn dir_path(&self) -> &Path {
        self.dir.path()
    }

    fn expected_path(&self) -> PathBuf {
        self.dir.path().join("expected.npy")
    }

    fn bytes(&self) -> usize {
        self.inputs.data.len() + self.expected.data.len()
    }
}

fn synthetic_inputs(model: Model<'_>) -> Result<Matrix<i8>> {
    let cols = model.input(0)?.elements();
    let mut rng = SplitMix64::new(0xB3_4C4D);
    let data = (0..SYNTHETIC_SAMPLES * cols)
        .map(|_| (rng.next_u64() >> 56) as u8 as i8)
        .collect();
    Ok(Matrix {
        rows: SYNTHETIC_SAMPLES,
        cols,
        data,
    })
}

/// What a QEMU run printed and how it ended.
pub(crate) struct QemuRun {
    /// The firmware's semihosting output.
    pub stdout: String,
    /// QEMU exited 0 (the firmware's verdict).
    pub status_ok: bool,
}

/// QEMU command line for a firmware ELF, from the marker its build embedded.
pub(crate) fn qemu_command(elf: &Path) -> Result<Command> {
    let bytes = std::fs::read(elf).with_context(|| format!("cannot read {}", elf.display()))?;
    let tag = b"EDGEKD_QEMU ";
    let at = bytes
        .windows(tag.len())
        .position(|w| w == tag)
        .with_context(|| {
            format!(
                "{} is not an edgekd firmware (no QEMU marker)",
                elf.display()
            )
        })?;
    let line: String = bytes[at + tag.len()..]
        .iter()
        .take_while(|&&b| b != b'\n' && b != 0)
        .map(|&b| b as char)
        .collect();
    let fields: HashMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let (Some(machine), Some(shift)) = (fields.get("machine"), fields.get("shift")) else {
        bail!("{}: malformed QEMU marker {line:?}", elf.display());
    };
    if which("qemu-system-arm").is_none() {
        bail!("qemu-system-arm is not installed: run `apt-get install -y qemu-system-arm` (or scripts/bootstrap.sh)");
    }
    let mut cmd = Command::new("qemu-system-arm");
    cmd.args(["-M", machine]);
    if let Some(cpu) = fields.get("cpu") {
        cmd.args(["-cpu", cpu]);
    }
    cmd.args(["-nographic", "-monitor", "none", "-serial", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-icount")
        .arg(format!("shift={shift}"))
        .arg("-kernel")
        .arg(elf);
    Ok(cmd)
}

/// Runs a firmware ELF in QEMU and captures what it prints.
pub(crate) fn run_qemu(elf: &Path, timeout: Duration) -> Result<QemuRun> {
    let mut child = qemu_command(elf)?
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start qemu-system-arm")?;
    let mut stdout = child.stdout.take().context("no QEMU stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "the firmware did not finish in QEMU within {} s",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = reader.join().unwrap_or_default();
    if stdout.is_empty() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        bail!("the firmware printed nothing in QEMU (exit {status}): {err}");
    }
    Ok(QemuRun {
        stdout,
        status_ok: status.success(),
    })
}

/// An executable on PATH.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// One op's figures from the firmware.
#[derive(Debug, Clone, Serialize)]
pub struct OpFigures {
    /// Position in the model.
    pub index: usize,
    /// Op name.
    pub op: String,
    /// Multiply-accumulates.
    pub macs: u64,
    /// Instructions (or cycles) per inference.
    pub count: u64,
    /// `count / macs`, when the op has MACs.
    pub per_mac: Option<f64>,
}

/// What the firmware printed, parsed.
#[derive(Debug, Clone)]
pub(crate) struct FirmwareRun {
    unit: String,
    macs: u64,
    arena: usize,
    mean: u64,
    min: u64,
    max: u64,
    ops: Vec<OpFigures>,
    interpreter: u64,
    outputs: Vec<Vec<i8>>,
    classes: Vec<usize>,
    mismatches: usize,
    pass: bool,
    stack: usize,
    interpreter_bytes: usize,
    invoke_stack: usize,
    calibration: String,
}

/// `tag key=value key=value ...`
fn fields(line: &str) -> (&str, HashMap<&str, &str>) {
    let mut parts = line.split_whitespace();
    let tag = parts.next().unwrap_or("");
    (tag, parts.filter_map(|kv| kv.split_once('=')).collect())
}

fn get<T: std::str::FromStr>(f: &HashMap<&str, &str>, key: &str, line: &str) -> Result<T> {
    f.get(key)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no valid `{key}` in line {line:?}"))
}

impl FirmwareRun {
    /// Parses the firmware's `key=value` lines.
    pub(crate) fn parse(text: &str) -> Result<Self> {
        let mut run = FirmwareRun {
            unit: String::new(),
            macs: 0,
            arena: 0,
            mean: 0,
            min: 0,
            max: 0,
            ops: Vec::new(),
            interpreter: 0,
            outputs: Vec::new(),
            classes: Vec::new(),
            mismatches: 0,
            pass: false,
            stack: 0,
            interpreter_bytes: 0,
            invoke_stack: 0,
            calibration: String::new(),
        };
        let mut saw_result = false;
        for line in text.lines() {
            let (tag, f) = fields(line);
            match tag {
                "error" => bail!("the firmware reported an error: {line}"),
                "model" => {
                    run.macs = get(&f, "macs", line)?;
                    run.arena = get(&f, "arena", line)?;
                }
                "clock" => {
                    run.unit = get(&f, "unit", line)?;
                    run.calibration = get(&f, "calibration", line)?;
                }
                "sample" => {
                    let out = f.get("out").copied().unwrap_or("");
                    let values = out
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|v| v.parse::<i8>())
                        .collect::<Result<Vec<_>, _>>()
                        .with_context(|| format!("bad outputs in line {line:?}"))?;
                    run.outputs.push(values);
                    run.classes.push(get(&f, "class", line)?);
                }
                "inference" => {
                    run.mean = get(&f, "mean", line)?;
                    run.min = get(&f, "min", line)?;
                    run.max = get(&f, "max", line)?;
                }
                "opcount" => {
                    let macs: u64 = get(&f, "macs", line)?;
                    let count: u64 = get(&f, "count", line)?;
                    run.ops.push(OpFigures {
                        index: get(&f, "index", line)?,
                        op: get(&f, "code", line)?,
                        macs,
                        count,
                        per_mac: (macs > 0).then(|| count as f64 / macs as f64),
                    });
                }
                "interpreter" => run.interpreter = get(&f, "count", line)?,
                "result" => {
                    saw_result = true;
                    run.pass = line.starts_with("result PASS");
                    run.mismatches = get(&f, "mismatches", line)?;
                }
                "stack" => run.stack = get(&f, "used", line)?,
                "footprint" => {
                    run.interpreter_bytes = get(&f, "interpreter", line)?;
                    run.invoke_stack = get(&f, "invoke_stack", line)?;
                }
                _ => {}
            }
        }
        if !saw_result {
            bail!("the firmware stopped before reporting a result");
        }
        Ok(run)
    }
}

/// Section sizes of an ELF, from `llvm-size -A`, and the code of the runtime's own
/// functions and the model's constants, from `llvm-nm`.
pub(crate) struct Sections {
    sizes: HashMap<String, u64>,
    symbols: SymbolSizes,
}

impl Sections {
    /// Runs the toolchain's `llvm-size` on `elf`.
    pub(crate) fn of(elf: &Path) -> Result<Self> {
        let tool = llvm_tool("llvm-size")?;
        let out = Command::new(&tool)
            .arg("-A")
            .arg(elf)
            .output()
            .with_context(|| format!("cannot run {}", tool.display()))?;
        if !out.status.success() {
            bail!("llvm-size failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let sizes = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let name = it.next()?;
                let size = it.next()?.parse().ok()?;
                name.starts_with('.').then(|| (name.to_string(), size))
            })
            .collect();
        Ok(Sections {
            sizes,
            symbols: symbol_sizes(elf)?,
        })
    }

    fn get(&self, name: &str) -> u64 {
        self.sizes.get(name).copied().unwrap_or(0)
    }
}

/// Bytes of an ELF's symbols that belong to the runtime or the model.
#[derive(Default)]
struct SymbolSizes {
    /// Code in functions of `edgekd_runtime` and `edgekd_kernels` (what LTO left out of
    /// line; code inlined into the firmware's own functions is not counted).
    runtime_code: u64,
    /// The model as the firmware embeds it: the ops' constants build.rs wrote out
    /// (`generated::program`), or the `.ekd` file (`generated::MODEL`, with the
    /// `runtime-decode` feature).
    model: u64,
    /// The prepared tables the generated program holds (`generated::program::OP*_TABLE`,
    /// filters widened to 16 bits and the like), which only DSP builds with the fast
    /// kernels keep.
    tables: u64,
}

fn symbol_sizes(elf: &Path) -> Result<SymbolSizes> {
    let tool = llvm_tool("llvm-nm")?;
    let out = Command::new(&tool)
        .args(["-S", "-C", "-t", "d"])
        .arg(elf)
        .output()
        .with_context(|| format!("cannot run {}", tool.display()))?;
    if !out.status.success() {
        bail!("llvm-nm failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut sizes = SymbolSizes::default();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut it = line.splitn(4, ' ');
        let (Some(_addr), Some(size), Some(kind), Some(name)) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            continue;
        };
        let Ok(size) = size.parse::<u64>() else {
            continue;
        };
        let code = matches!(kind, "t" | "T");
        if code && (name.contains("edgekd_runtime") || name.contains("edgekd_kernels")) {
            sizes.runtime_code += size;
        } else if !code && name.contains("generated::program::") && name.contains("_TABLE::") {
            sizes.tables += size;
        } else if !code
            && (name.contains("generated::program::") || name.contains("generated::MODEL::"))
        {
            sizes.model += size;
        }
    }
    Ok(sizes)
}

/// A tool from rustup's llvm-tools component, in the active toolchain's sysroot.
fn llvm_tool(name: &str) -> Result<PathBuf> {
    let sysroot = rustc_sysroot()?;
    let out = Command::new("rustc").arg("-vV").output()?;
    let host = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV printed no host triple")?;
    let tool = sysroot
        .join("lib/rustlib")
        .join(host)
        .join("bin")
        .join(name);
    if !tool.is_file() {
        bail!(
            "{name} not found at {}: run `rustup component add llvm-tools`",
            tool.display()
        );
    }
    Ok(tool)
}

/// The benchmark of one model on one target.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `qemu-m4`, ...
    pub target: String,
    /// Firmware board.
    pub board: String,
    /// Core.
    pub core: String,
    /// The model file.
    pub model: String,
    /// What counts are: `instructions` (QEMU -icount) or `cycles`.
    pub unit: String,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Samples run.
    pub samples: usize,
    /// Every output equal to the host runtime's.
    pub bit_exact: bool,
    /// Samples whose outputs differ.
    pub mismatches: usize,
    /// Mean count per inference.
    pub per_inference: u64,
    /// Least and most over the samples.
    pub per_inference_min: u64,
    /// See `per_inference_min`.
    pub per_inference_max: u64,
    /// `per_inference / macs`.
    pub per_mac: Option<f64>,
    /// Per op.
    pub ops: Vec<OpFigures>,
    /// The interpreter's own share (per inference minus the ops).
    pub interpreter: u64,
    /// `.text + .rodata` (+ vector table) bytes.
    pub flash_bytes: u64,
    /// The model as embedded (the ops' constants, or the `.ekd` file), part of
    /// `flash_bytes`.
    pub model_bytes: u64,
    /// The embedded golden vectors' bytes, part of `flash_bytes`.
    pub golden_bytes: u64,
    /// The layers' prepared tables (DSP builds with the fast kernels), part of
    /// `flash_bytes`.
    pub table_bytes: u64,
    /// `.text` bytes.
    pub text_bytes: u64,
    /// Out-of-line code of the runtime and its kernels, part of `text_bytes`.
    pub runtime_code_bytes: u64,
    /// The firmware's optimization level.
    pub opt_level: String,
    /// The kernels compiled in: `fast` or `small`.
    pub kernels: String,
    /// `.data + .bss` bytes (the arena included).
    pub static_ram_bytes: u64,
    /// Arena bytes.
    pub arena_bytes: usize,
    /// Stack high-water mark (of the whole firmware, its printing included).
    pub stack_bytes: usize,
    /// Bytes of the interpreter value (decoded ops, the kernels' scratch).
    pub interpreter_bytes: usize,
    /// Stack one `invoke` needs below its caller.
    pub invoke_stack_bytes: usize,
    /// The 100-instruction check of the clock (`100/100` when exact).
    pub clock_calibration: String,
    /// Predicted class per sample.
    pub classes: Vec<usize>,
    /// int8 outputs per sample.
    pub outputs: Vec<Vec<i8>>,
    /// The op kinds compiled into the firmware's runtime (the model's; `EDGEKD_OPS`).
    pub compiled_ops: Vec<String>,
    /// Whether the kernels' slow fallbacks are compiled in (a layer needs them).
    pub fallback_kernels: bool,
    /// Entries of the kernels' column buffer (`EDGEKD_MAX_COLS`).
    pub scratch_columns: usize,
    /// Whether the DSP kernels' RAM channel table is compiled in (`EDGEKD_CHANNEL_TABLE`;
    /// cores without DSP have a portable table instead).
    pub channel_table: bool,
    /// Whether the conv kernel's general loop is compiled in (`EDGEKD_CONV_GENERAL`;
    /// cores without DSP always have it).
    pub conv_general: bool,
    /// Whether the fully connected rows without a prepared table are compiled in
    /// (`EDGEKD_FC_PLAIN`; cores without DSP always have them).
    pub fc_plain: bool,
}

impl Report {
    fn new(
        target: Target,
        board: Board,
        model: &Path,
        golden: &Golden,
        run: &FirmwareRun,
        sizes: &Sections,
        build: Build<'_>,
    ) -> Result<Self> {
        let mismatches = (0..golden.expected.rows)
            .filter(|&r| run.outputs.get(r).map(|o| o.as_slice()) != Some(golden.expected.row(r)))
            .count();
        if run.outputs.len() != golden.expected.rows {
            bail!(
                "the firmware ran {} samples, {} were embedded",
                run.outputs.len(),
                golden.expected.rows
            );
        }
        Ok(Report {
            target: target.name().into(),
            board: board.feature().into(),
            core: board.core().into(),
            model: model.display().to_string(),
            unit: run.unit.clone(),
            macs: run.macs,
            samples: run.outputs.len(),
            bit_exact: mismatches == 0 && run.mismatches == 0 && run.pass,
            mismatches: mismatches.max(run.mismatches),
            per_inference: run.mean,
            per_inference_min: run.min,
            per_inference_max: run.max,
            per_mac: (run.macs > 0).then(|| run.mean as f64 / run.macs as f64),
            ops: run.ops.clone(),
            interpreter: run.interpreter,
            flash_bytes: sizes.get(".vector_table") + sizes.get(".text") + sizes.get(".rodata"),
            model_bytes: sizes.symbols.model,
            golden_bytes: golden.bytes() as u64,
            table_bytes: sizes.symbols.tables,
            text_bytes: sizes.get(".text"),
            runtime_code_bytes: sizes.symbols.runtime_code,
            opt_level: build.opt_level.into(),
            kernels: build.kernels.name().into(),
            static_ram_bytes: sizes.get(".data") + sizes.get(".bss"),
            arena_bytes: run.arena,
            stack_bytes: run.stack,
            interpreter_bytes: run.interpreter_bytes,
            invoke_stack_bytes: run.invoke_stack,
            clock_calibration: run.calibration.clone(),
            classes: run.classes.clone(),
            outputs: run.outputs.clone(),
            compiled_ops: golden.ops.clone(),
            fallback_kernels: golden.fallback,
            scratch_columns: golden.columns,
            channel_table: golden.needs_channel_table(build.kernels),
            conv_general: golden.needs_conv_general(build.kernels) || !board.has_dsp(),
            fc_plain: golden.needs_fc_plain(build.kernels) || !board.has_dsp(),
        })
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let per_mac = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{} on {} ({}, {}): {} of {} samples bit-exact with the host runtime",
            self.model,
            self.target,
            self.board,
            self.core,
            self.samples - self.mismatches,
            self.samples
        );
        let _ = writeln!(
            s,
            "{:>3}  {:<16} {:>8} {:>14} {:>10}",
            "op", "kind", "MACs", self.unit, "per MAC"
        );
        for op in &self.ops {
            let _ = writeln!(
                s,
                "{:>3}  {:<16} {:>8} {:>14} {:>10}",
                op.index,
                op.op,
                op.macs,
                op.count,
                per_mac(op.per_mac)
            );
        }
        let _ = writeln!(
            s,
            "{:>3}  {:<16} {:>8} {:>14} {:>10}",
            "", "(interpreter)", "", self.interpreter, ""
        );
        let _ = writeln!(
            s,
            "{:>3}  {:<16} {:>8} {:>14} {:>10}",
            "",
            "per inference",
            self.macs,
            self.per_inference,
            per_mac(self.per_mac)
        );
        let _ = writeln!(
            s,
            "flash (.text+.rodata+vectors): {} bytes (code {} of which runtime+kernels {}, model {}, prepared tables {}, golden vectors {}), opt-level {}, {} kernels",
            self.flash_bytes,
            self.text_bytes,
            self.runtime_code_bytes,
            self.model_bytes,
            self.table_bytes,
            self.golden_bytes,
            self.opt_level,
            self.kernels
        );
        let _ = writeln!(
            s,
            "runtime ops compiled in: {} (fallback kernels {}); column buffer {} entries; \
             channel table {}; conv general loop {}; fully connected rows without a table {}",
            self.compiled_ops.join(", "),
            if self.fallback_kernels {
                "in: a layer needs them"
            } else {
                "left out"
            },
            self.scratch_columns,
            if self.channel_table {
                "in"
            } else {
                "left out (DSP: every conv layer reads its prepared one)"
            },
            if self.conv_general {
                "in"
            } else {
                "left out (every conv layer runs dense)"
            },
            if self.fc_plain {
                "in"
            } else {
                "left out (every layer has one)"
            }
        );
        let _ = writeln!(
            s,
            "static RAM (.data+.bss): {} bytes (arena {}); stack high-water {} bytes",
            self.static_ram_bytes, self.arena_bytes, self.stack_bytes
        );
        let _ = writeln!(
            s,
            "inference RAM: arena {} + interpreter {} + invoke stack {} = {} bytes",
            self.arena_bytes,
            self.interpreter_bytes,
            self.invoke_stack_bytes,
            self.arena_bytes + self.interpreter_bytes + self.invoke_stack_bytes
        );
        let _ = writeln!(s, "clock check: {} {}", self.clock_calibration, self.unit);
        s
    }
}
