//! One module per subcommand.
pub mod bench;
pub mod bench_arm;
pub mod distill;
pub mod eval;
pub mod experiment;
pub mod export;
pub mod flash;
pub mod import;
pub mod infer;
pub mod inspect;
pub mod quantize;
pub mod reference;
pub mod train;
