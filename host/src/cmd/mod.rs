//! One module per subcommand.
pub mod bench;
pub mod distill;
pub mod experiment;
pub mod flash;
pub mod import;
pub mod infer;
pub mod inspect;
pub mod reference;
pub mod train;
