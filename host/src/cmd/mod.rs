//! One module per subcommand.
pub mod bench;
pub mod flash;
pub mod infer;
pub mod inspect;
pub mod reference;
