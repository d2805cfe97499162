//! One module per subcommand.
pub mod infer;
pub mod inspect;
pub mod reference;
