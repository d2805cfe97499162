//! `edgekd flash`: build the firmware around a model and run it, in QEMU (`--board`) or
//! on a real chip through probe-rs (`--chip`).

use super::bench::{self, Board, Build, BuildArgs, FirmwareDir, Golden};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Arguments of `edgekd flash`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("where").required(true).args(["board", "chip"])))]
pub struct Args {
    /// Run in QEMU on this board.
    #[arg(long, value_enum)]
    pub board: Option<Board>,
    /// Flash and run on a real chip through probe-rs (a probe-rs chip name, e.g.
    /// STM32F405RGTx or nRF51822_xxAA).
    #[arg(long)]
    pub chip: Option<String>,
    /// The `.ekd` model. Default: models/reference/tiny_cnn.ekd beside the firmware.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// int8 inputs (`.npy`). Default: `<model stem>.input.npy`, else seeded random ones.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The firmware crate (see `edgekd bench --help`).
    #[arg(long)]
    pub firmware_dir: Option<PathBuf>,
    /// How the firmware is compiled.
    #[command(flatten)]
    pub build: BuildArgs,
}

/// Chips whose memory map a firmware board describes: probe-rs name prefix -> board.
const CHIPS: &[(&str, Board)] = &[
    ("STM32F405", Board::Netduinoplus2),
    ("nRF51822", Board::Microbit),
];

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let fw = FirmwareDir::find(args.firmware_dir.as_deref())?;
    let model = match &args.model {
        Some(m) => m.clone(),
        None => fw.default_model(),
    };
    let build = args.build.build();
    match (args.board, &args.chip) {
        (Some(board), _) => run_in_qemu(&fw, board, &model, args.input.as_deref(), build),
        (None, Some(chip)) => run_on_chip(&fw, chip, &model, args.input.as_deref(), build),
        (None, None) => bail!("pass --board <qemu board> or --chip <probe-rs chip>"),
    }
}

fn run_in_qemu(
    fw: &FirmwareDir,
    board: Board,
    model: &Path,
    input: Option<&Path>,
    build: Build<'_>,
) -> Result<()> {
    let golden = Golden::prepare(model, input)?;
    let elf = fw.build(board, model, &golden, build)?;
    let run = bench::run_qemu(&elf, bench::QEMU_TIMEOUT)?;
    print!("{}", run.stdout);
    if !run.status_ok {
        bail!(
            "the firmware failed on {} (its outputs are above)",
            board.feature()
        );
    }
    Ok(())
}

/// The firmware board whose memory map fits a probe-rs chip name.
pub(crate) fn board_for_chip(chip: &str) -> Result<Board> {
    let Some(&(_, board)) = CHIPS.iter().find(|(prefix, _)| {
        chip.to_ascii_lowercase()
            .starts_with(&prefix.to_ascii_lowercase())
    }) else {
        bail!(
            "no firmware board has the memory map of {chip}; supported chips: {}. To add one, \
             write firmware/boards/<board>/memory.x, add the board to firmware/build.rs and \
             firmware/Cargo.toml, and map the chip here (see firmware/README.md)",
            CHIPS
                .iter()
                .map(|(c, _)| format!("{c}*"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    Ok(board)
}

/// Builds the firmware for the chip's board, flashes it through probe-rs and runs it; the
/// firmware checks its own outputs.
pub(crate) fn run_on_chip(
    fw: &FirmwareDir,
    chip: &str,
    model: &Path,
    input: Option<&Path>,
    build: Build<'_>,
) -> Result<()> {
    let board = board_for_chip(chip)?;
    let Some(probe_rs) = bench::which("probe-rs") else {
        bail!(
            "probe-rs is not installed: run `cargo install probe-rs-tools --locked` (about 8 \
             minutes), connect a debug probe (ST-LINK, J-Link, CMSIS-DAP) to the {chip}, and retry"
        );
    };
    let probes = Command::new(&probe_rs)
        .arg("list")
        .output()
        .context("cannot run `probe-rs list`")?;
    let listed = String::from_utf8_lossy(&probes.stdout);
    if !probes.status.success()
        || listed.contains("No debug probes were found")
        || listed.trim().is_empty()
    {
        bail!(
            "no debug probe is attached: connect one (ST-LINK, J-Link, CMSIS-DAP) to the {chip} \
             over SWD and check `probe-rs list` shows it"
        );
    }
    let golden = Golden::prepare(model, input)?;
    let elf = fw.build(board, model, &golden, build)?;
    // `probe-rs run` flashes, resets, prints semihosting output and exits with the
    // firmware's semihosting exit status.
    let status = Command::new(&probe_rs)
        .args(["run", "--chip", chip])
        .arg(&elf)
        .status()
        .context("cannot run `probe-rs run`")?;
    if !status.success() {
        bail!("the firmware failed on the {chip} (probe-rs exit {status})");
    }
    Ok(())
}

impl FirmwareDir {
    /// The reference model the firmware embeds by default.
    pub(crate) fn default_model(&self) -> PathBuf {
        self.path().join("../models/reference/tiny_cnn.ekd")
    }
}
