//! The one error type of this crate.

use std::fmt;

/// Why a model could not be loaded into tract or run.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The `.ekd` file is malformed (the runtime's parser said why).
    Model(edgekd_runtime::Error),
    /// The model is valid but uses something this backend does not build.
    Unsupported {
        /// Index of the op in the model's op list.
        op: usize,
        /// Op name.
        name: &'static str,
        /// What is not supported.
        reason: String,
    },
    /// An input has the wrong number of values, or the wrong number of inputs was given.
    Input(String),
    /// tract refused the graph or failed while running it.
    Tract(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Model(e) => write!(f, "malformed .ekd model: {e}"),
            Error::Unsupported { op, name, reason } => {
                write!(
                    f,
                    "op {op} ({name}) is not supported by the tract backend: {reason}"
                )
            }
            Error::Input(msg) => write!(f, "bad input: {msg}"),
            Error::Tract(msg) => write!(f, "tract: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<edgekd_runtime::Error> for Error {
    fn from(e: edgekd_runtime::Error) -> Self {
        Error::Model(e)
    }
}

impl From<tract_core::internal::TractError> for Error {
    fn from(e: tract_core::internal::TractError) -> Self {
        // `{:#}` keeps anyhow's context chain, which names the failing node.
        Error::Tract(format!("{e:#}"))
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
