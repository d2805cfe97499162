//! Where the pipeline measures the int8 student, and how.
//!
//! - `host`: edgekd-runtime and the tract runtime in this process: latency of each and
//!   their agreement on the whole test split.
//! - `qemu-*`: the Cortex-M firmware built around the model, run in qemu-system-arm with
//!   `-icount` (instructions, not cycles), compared with the host runtime bit for bit.
//! - `aarch64` / `android`: `edgekd-bench` cross-built and run under qemu-aarch64 or on a
//!   phone through adb; outputs compared bit for bit.
//! - `probe-rs:<chip>`: the firmware flashed to a real chip through probe-rs; the firmware
//!   itself checks its outputs against the embedded expected ones.

use crate::cmd::bench::{self, Board, FirmwareDir};
use crate::cmd::bench_arm;
use crate::cmd::infer::run_batch;
use crate::io::{self, Matrix};
use anyhow::{bail, ensure, Context, Result};
use edgekd_runtime::{Interpreter, Model};
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// A measurement target named in a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSpec {
    /// This machine, both runtimes in-process.
    Host,
    /// An emulated Cortex-M board.
    Qemu(bench::Target),
    /// aarch64 Linux under qemu-aarch64.
    Aarch64,
    /// An Android phone through adb.
    Android,
    /// A real chip through probe-rs.
    ProbeRs(String),
}

impl TargetSpec {
    /// Parses a recipe's target name.
    pub fn parse(name: &str) -> Result<TargetSpec> {
        Ok(match name {
            "host" => TargetSpec::Host,
            "qemu-m4" => TargetSpec::Qemu(bench::Target::QemuM4),
            "qemu-m7" => TargetSpec::Qemu(bench::Target::QemuM7),
            "qemu-m33" => TargetSpec::Qemu(bench::Target::QemuM33),
            "qemu-m0" => TargetSpec::Qemu(bench::Target::QemuM0),
            "aarch64" => TargetSpec::Aarch64,
            "android" => TargetSpec::Android,
            other => match other.strip_prefix("probe-rs:") {
                Some(chip) if !chip.is_empty() => TargetSpec::ProbeRs(chip.to_string()),
                _ => bail!(
                    "unknown target; use host, qemu-m4, qemu-m7, qemu-m33, qemu-m0, aarch64, \
                     android or probe-rs:<chip>"
                ),
            },
        })
    }

    /// The recipe name.
    pub fn name(&self) -> String {
        match self {
            TargetSpec::Host => "host".into(),
            TargetSpec::Qemu(t) => t.name().into(),
            TargetSpec::Aarch64 => "aarch64".into(),
            TargetSpec::Android => "android".into(),
            TargetSpec::ProbeRs(chip) => format!("probe-rs:{chip}"),
        }
    }

    /// The firmware board, for microcontroller targets.
    pub fn board(&self) -> Result<Option<Board>> {
        Ok(match self {
            TargetSpec::Qemu(t) => t.board(),
            TargetSpec::ProbeRs(chip) => Some(crate::cmd::flash::board_for_chip(chip)?),
            _ => None,
        })
    }

    /// Checks, before any training, that the tools this target needs are installed.
    pub fn check_tools(&self) -> Result<()> {
        let need = |program: &str, hint: &str| -> Result<()> {
            ensure!(
                bench::which(program).is_some(),
                "target {} needs `{program}`, which is not installed: {hint}",
                self.name()
            );
            Ok(())
        };
        match self {
            TargetSpec::Host => Ok(()),
            TargetSpec::Qemu(_) => need(
                "qemu-system-arm",
                "run scripts/bootstrap.sh or `apt-get install -y qemu-system-arm`",
            ),
            TargetSpec::Aarch64 => {
                need(
                    "qemu-aarch64",
                    "run scripts/bootstrap.sh or `apt-get install -y qemu-user`",
                )?;
                need(
                    "aarch64-linux-gnu-gcc",
                    "run scripts/bootstrap.sh or `apt-get install -y gcc-aarch64-linux-gnu`",
                )
            }
            TargetSpec::Android => need(
                "adb",
                "install Android platform-tools and connect a phone with USB debugging",
            ),
            TargetSpec::ProbeRs(_) => need(
                "probe-rs",
                "`cargo install probe-rs-tools --locked`, and attach a debug probe",
            ),
        }
    }
}

/// RAM and flash of a firmware board, from its `memory.x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoardMemory {
    /// Flash bytes.
    pub flash: u64,
    /// RAM bytes.
    pub ram: u64,
}

/// RAM the firmware keeps for its stack and statics beyond the arena (the firmware's
/// build script reserves 8 KB for the stack; statics add a few hundred bytes).
pub const RAM_RESERVE: u64 = 9 * 1024;
/// Flash for the firmware's code and golden vectors beyond the model: the measured
/// runtime + kernels + firmware code at opt-level 3 is about 40 KB.
pub const FLASH_RESERVE: u64 = 48 * 1024;

impl BoardMemory {
    /// Reads `firmware/boards/<board>/memory.x`.
    pub(crate) fn of(fw: &FirmwareDir, board: Board) -> Result<BoardMemory> {
        let path = fw
            .path()
            .join("boards")
            .join(board.feature())
            .join("memory.x");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let region = |name: &str| -> Result<u64> {
            text.lines()
                .map(str::trim)
                .find(|l| l.starts_with(name) && l[name.len()..].trim_start().starts_with(':'))
                .and_then(|l| l.split("LENGTH").nth(1))
                .and_then(|rest| parse_length(rest.trim_start_matches([' ', '='])))
                .with_context(|| format!("{}: no {name} region with a LENGTH", path.display()))
        };
        Ok(BoardMemory {
            flash: region("FLASH")?,
            ram: region("RAM")?,
        })
    }

    /// Fails with both figures when a model with this arena and file size cannot fit.
    pub fn check_fits(&self, what: &str, arena: u64, model_bytes: u64) -> Result<()> {
        ensure!(
            arena + RAM_RESERVE <= self.ram,
            "{what}: the model needs {arena} bytes of arena + {RAM_RESERVE} bytes of stack and \
             statics, but the board has {} bytes of RAM; choose a smaller student or a bigger \
             board",
            self.ram
        );
        ensure!(
            model_bytes + FLASH_RESERVE <= self.flash,
            "{what}: the model file ({model_bytes} bytes) + about {FLASH_RESERVE} bytes of \
             firmware code do not fit the board's {} bytes of flash",
            self.flash
        );
        Ok(())
    }
}

/// `256K`, `0x4000`, `16384`, `1M`.
fn parse_length(s: &str) -> Option<u64> {
    let s: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let (digits, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1024),
        'M' | 'm' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s.as_str(), 1),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    Some(v * mult)
}

/// What one target measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetResult {
    /// Recipe name of the target.
    pub target: String,
    /// Core or machine, for the table.
    pub platform: String,
    /// Samples compared with the host runtime.
    pub samples: usize,
    /// Samples whose int8 outputs differ from the host runtime's.
    pub mismatches: usize,
    /// edgekd-runtime latency per inference, µs (host only: emulated time means nothing).
    pub edgekd_us: Option<f64>,
    /// tract latency per inference, µs.
    pub tract_us: Option<f64>,
    /// Whether tract's outputs equal edgekd-runtime's on every sample.
    pub tract_agrees: Option<bool>,
    /// Instructions per inference (QEMU -icount).
    pub instructions: Option<u64>,
    /// Instructions per MAC.
    pub instructions_per_mac: Option<f64>,
    /// Firmware flash bytes (.vector_table + .text + .rodata).
    pub flash_bytes: Option<u64>,
    /// Firmware static RAM bytes (.data + .bss, arena included).
    pub ram_bytes: Option<u64>,
    /// Anything the reader must know (emulated timings, what was not measured).
    pub note: String,
}

impl TargetResult {
    fn new(target: &TargetSpec, platform: &str, samples: usize) -> Self {
        TargetResult {
            target: target.name(),
            platform: platform.into(),
            samples,
            mismatches: 0,
            edgekd_us: None,
            tract_us: None,
            tract_agrees: None,
            instructions: None,
            instructions_per_mac: None,
            flash_bytes: None,
            ram_bytes: None,
            note: String::new(),
        }
    }

    /// Every sample agreed with the host runtime.
    pub fn bit_exact(&self) -> bool {
        self.mismatches == 0 && self.samples > 0 && self.tract_agrees != Some(false)
    }
}

/// The int8 inputs every target runs and the host runtime's outputs for them.
pub struct Probe<'a> {
    /// The `.ekd` file.
    pub model_path: &'a Path,
    /// int8 inputs, one sample per row (the quantized test samples).
    pub inputs: &'a Matrix<i8>,
    /// The host runtime's outputs for them.
    pub expected: &'a Matrix<i8>,
    /// `inputs` written as `.npy` (for the tools that read files).
    pub inputs_path: &'a Path,
    /// How many rows the slower targets run.
    pub samples: usize,
    /// Timed runs on the host.
    pub runs: usize,
    /// Warm-up runs on the host.
    pub warmup: usize,
    /// The firmware build the qemu-* and probe-rs targets run.
    pub firmware: bench::Build<'a>,
}

impl Probe<'_> {
    fn first_rows(&self, n: usize) -> Matrix<i8> {
        let n = n.min(self.inputs.rows);
        Matrix {
            rows: n,
            cols: self.inputs.cols,
            data: self.inputs.data[..n * self.inputs.cols].to_vec(),
        }
    }
}

fn mismatches(expected: &Matrix<i8>, got: &[Vec<i8>]) -> usize {
    (0..expected.rows)
        .filter(|&r| got.get(r).map(Vec::as_slice) != Some(expected.row(r)))
        .count()
}

/// Median of per-inference times in µs.
fn median_us(mut t: Vec<f64>) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

/// Measures on one target.
pub fn measure(target: &TargetSpec, p: &Probe<'_>) -> Result<TargetResult> {
    match target {
        TargetSpec::Host => measure_host(target, p),
        TargetSpec::Qemu(t) => {
            let subset = p.first_rows(p.samples);
            let dir = tempfile::tempdir()?;
            let input = dir.path().join("inputs.npy");
            std::fs::write(&input, io::npy_bytes(&subset)?)?;
            let m = bench::measure(*t, p.model_path, Some(&input), None, p.firmware)?;
            let r = &m.report;
            let mut out = TargetResult::new(target, &r.core, r.samples);
            out.mismatches = if r.bit_exact { 0 } else { r.mismatches.max(1) };
            out.instructions = Some(r.per_inference);
            out.instructions_per_mac = r.per_mac;
            out.flash_bytes = Some(r.flash_bytes);
            out.ram_bytes = Some(r.static_ram_bytes);
            out.note = format!(
                "{} (QEMU -icount: instructions, not cycles); stack {} B; opt-level {}, {} kernels",
                r.board, r.stack_bytes, r.opt_level, r.kernels
            );
            Ok(out)
        }
        TargetSpec::Aarch64 | TargetSpec::Android => {
            let subset = p.first_rows(p.samples);
            let dir = tempfile::tempdir()?;
            let input = dir.path().join("inputs.npy");
            std::fs::write(&input, io::npy_bytes(&subset)?)?;
            let (arm_target, platform) = if *target == TargetSpec::Aarch64 {
                (bench::Target::Aarch64, "aarch64 (qemu-user)")
            } else {
                (bench::Target::Android, "Android (adb)")
            };
            let opts = bench_arm::BenchOptions {
                runs: 10,
                warmup: 2,
                adb: arm_target == bench::Target::Android,
                ..bench_arm::BenchOptions::default()
            };
            let r = bench_arm::measure(p.model_path, arm_target, &input, &opts)?;
            let mut out = TargetResult::new(target, platform, subset.rows);
            out.mismatches = mismatches(&subset_expected(p, subset.rows), &r.outputs);
            out.tract_agrees = r.tract_agrees;
            if !r.emulated {
                for f in &r.runtimes {
                    match f.runtime.as_str() {
                        "edgekd" => out.edgekd_us = Some(f.p50_us),
                        "tract" => out.tract_us = Some(f.p50_us),
                        _ => {}
                    }
                }
            } else {
                out.note = "emulated: correctness only, timings mean nothing".into();
            }
            Ok(out)
        }
        TargetSpec::ProbeRs(chip) => {
            let subset = p.first_rows(p.samples);
            let dir = tempfile::tempdir()?;
            let input = dir.path().join("inputs.npy");
            std::fs::write(&input, io::npy_bytes(&subset)?)?;
            let fw = FirmwareDir::find(None)?;
            crate::cmd::flash::run_on_chip(&fw, chip, p.model_path, Some(&input), p.firmware)?;
            let mut out = TargetResult::new(target, chip, subset.rows);
            out.note = "the firmware checked its outputs on the chip (probe-rs exit 0)".into();
            Ok(out)
        }
    }
}

fn subset_expected(p: &Probe<'_>, rows: usize) -> Matrix<i8> {
    Matrix {
        rows,
        cols: p.expected.cols,
        data: p.expected.data[..rows * p.expected.cols].to_vec(),
    }
}

fn measure_host(target: &TargetSpec, p: &Probe<'_>) -> Result<TargetResult> {
    let bytes = io::read_model(p.model_path)?;
    let model = Model::parse(bytes.as_bytes())
        .with_context(|| format!("{} is not a valid model", p.model_path.display()))?;
    let mut out = TargetResult::new(target, std::env::consts::ARCH, p.inputs.rows);
    // edgekd-runtime: the host runtime is the reference, so its row checks determinism
    // (a second pass equals the first) and measures latency.
    let again = run_batch(model, Some(p.inputs), None)?.int8;
    out.mismatches = (0..p.inputs.rows)
        .filter(|&r| again.row(r) != p.expected.row(r))
        .count();
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena)?;
    let mut times = Vec::with_capacity(p.runs);
    for i in 0..p.warmup + p.runs {
        let row = p.inputs.row(i % p.inputs.rows);
        let start = Instant::now();
        interp.input_mut(0)?.copy_from_slice(row);
        interp.invoke()?;
        std::hint::black_box(interp.output(0)?);
        if i >= p.warmup {
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    out.edgekd_us = Some(median_us(times));
    // tract: same inputs, every test sample compared with edgekd-runtime.
    let mut tract = edgekd_tract::TractModel::from_ekd_bytes(
        bytes.as_bytes(),
        &edgekd_tract::Options::default(),
    )
    .context("the tract runtime cannot load the model")?;
    let mut tract_out = Vec::with_capacity(p.inputs.rows);
    for r in 0..p.inputs.rows {
        let o = tract.run(&[p.inputs.row(r)])?;
        tract_out.push(o.into_iter().next().unwrap_or_default());
    }
    let tract_mismatches = mismatches(p.expected, &tract_out);
    out.tract_agrees = Some(tract_mismatches == 0);
    let mut times = Vec::with_capacity(p.runs);
    for i in 0..p.warmup + p.runs {
        let row = p.inputs.row(i % p.inputs.rows);
        let start = Instant::now();
        std::hint::black_box(tract.run(&[row])?);
        if i >= p.warmup {
            times.push(start.elapsed().as_secs_f64() * 1e6);
        }
    }
    out.tract_us = Some(median_us(times));
    out.note = format!(
        "median of {} runs; tract agrees on {} of {} samples",
        p.runs,
        p.inputs.rows - tract_mismatches,
        p.inputs.rows
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_target_names() {
        assert_eq!(TargetSpec::parse("host").unwrap(), TargetSpec::Host);
        assert_eq!(
            TargetSpec::parse("qemu-m0").unwrap(),
            TargetSpec::Qemu(bench::Target::QemuM0)
        );
        assert_eq!(
            TargetSpec::parse("probe-rs:STM32F405RG").unwrap(),
            TargetSpec::ProbeRs("STM32F405RG".into())
        );
        for bad in ["qemu-m3", "probe-rs:", "Host", ""] {
            let e = TargetSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains("unknown target"), "{bad}: {e}");
        }
        assert_eq!(TargetSpec::parse("qemu-m33").unwrap().name(), "qemu-m33");
    }

    #[test]
    fn parses_memory_lengths() {
        assert_eq!(parse_length("256K"), Some(256 * 1024));
        assert_eq!(parse_length("0x4000 }"), Some(0x4000));
        assert_eq!(parse_length("4M"), Some(4 << 20));
        assert_eq!(parse_length("16384"), Some(16384));
        assert_eq!(parse_length("lots"), None);
    }

    #[test]
    fn board_memory_matches_the_memory_maps() {
        let fw = FirmwareDir::find(None).unwrap();
        let m0 = BoardMemory::of(&fw, Board::Microbit).unwrap();
        assert_eq!(
            m0,
            BoardMemory {
                flash: 256 * 1024,
                ram: 16 * 1024
            }
        );
        let e = m0.check_fits("qemu-m0", 14 * 1024, 1000).unwrap_err();
        assert!(e.to_string().contains("bytes of RAM"), "{e}");
        m0.check_fits("qemu-m0", 2 * 1024, 10_000).unwrap();
    }
}
