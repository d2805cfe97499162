//! Argument parsing and the one place that prints errors and picks exit codes.
//!
//! Exit codes: 0 success; 1 the command failed (bad input file, malformed model, ...);
//! 2 the command line itself was wrong (clap's usage errors).

use crate::cmd;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// edgekd: distil, quantize, export and measure tiny int8 models.
#[derive(Debug, Parser)]
#[command(name = "edgekd", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole chain from one recipe: teacher, distillation, int8 quantization, export,
    /// evaluation and measurement on every target, with one summary table.
    Run(cmd::run::Args),
    /// Print a model: sections, tensors, ops, MACs, arena, format overhead.
    Inspect(cmd::inspect::Args),
    /// Run a model on a batch of inputs with the int8 runtime.
    Infer(cmd::infer::Args),
    /// Write the reference models and their golden vectors.
    Reference(cmd::reference::Args),
    /// Train a model from a recipe (a teacher, or a labels-only student).
    Train(cmd::train::Args),
    /// Distil a student from one or more teachers (edgekd float models or ONNX).
    Distill(cmd::distill::Args),
    /// Run a study (recipes x seeds) and write its results table.
    Experiment(cmd::experiment::Args),
    /// Convert a full-integer (int8) .tflite model to .ekd.
    Import(cmd::import::Args),
    /// Benchmark a model: the Cortex-M firmware in QEMU (instructions, flash, RAM), or
    /// edgekd-bench (tract vs edgekd, µs) on this machine, aarch64 (qemu) or Android.
    Bench(cmd::bench::Args),
    /// Build the firmware and run it in QEMU (--board) or on a chip via probe-rs (--chip).
    Flash(cmd::flash::Args),
    /// Quantize a float model to int8 (.ekd) with calibration data; per-layer report.
    Quantize(cmd::quantize::Args),
    /// Export an .ekd model as .ekd, C header, Rust source or ONNX.
    Export(cmd::export::Args),
    /// Accuracy of teacher f32, student f32 and student int8 (edgekd-runtime) on a test set.
    Eval(cmd::eval::Args),
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(1)
        }
    }
}

/// Runs one parsed command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(a) => cmd::run::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Infer(a) => cmd::infer::run(a),
        Command::Reference(a) => cmd::reference::run(a),
        Command::Train(a) => cmd::train::run(a),
        Command::Distill(a) => cmd::distill::run(a),
        Command::Experiment(a) => cmd::experiment::run(a),
        Command::Import(a) => cmd::import::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Flash(a) => cmd::flash::run(a),
        Command::Quantize(a) => cmd::quantize::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Eval(a) => cmd::eval::run(a),
    }
}
