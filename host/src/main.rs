//! The `edgekd` command line: a thin shell around [`edgekd::cli::run`].
use std::process::ExitCode;

fn main() -> ExitCode {
    edgekd::cli::main()
}
