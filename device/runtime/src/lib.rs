//! `edgekd-runtime`: the `.ekd` model format and a `no_std`, no-alloc int8 interpreter.
//!
//! The parser ([`Model::parse`]) validates a model in place, straight from a
//! `&'static [u8]` in flash, and never allocates. The [`Interpreter`] runs the model
//! over an arena the caller provides: it decodes the model's ops once into a [`Program`]
//! and runs it with an [`Executor`], which firmware can also use alone, with a program
//! decoded at build time. Every kernel follows the TFLite int8 spec and is bit-exact with
//! CMSIS-NN's requantization (see `docs/format.md` and `quant`).
//!
//! With the `std` feature, `writer` builds `.ekd` files and plans their arena, and
//! `codegen` writes a model's decoded ops as Rust for such firmware.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]
#![forbid(unsafe_op_in_unsafe_fn)]
// With ops compiled out (see build.rs), code only they use is dead.
#![cfg_attr(edgekd_op_subset, allow(dead_code, unused_imports, unused_variables))]

#[cfg(target_endian = "big")]
compile_error!("edgekd-runtime reads tensors in place and supports little-endian targets only");

#[cfg(feature = "std")]
pub mod codegen;
mod error;
mod executor;
pub mod format;
mod interpreter;
mod program;
#[cfg(feature = "std")]
pub mod writer;

/// The kernels and their parameter types (what [`OpParts`] holds), for code that
/// builds a [`Program`] ahead of time.
pub use edgekd_kernels as kernels;
#[cfg(edgekd_op_add)]
pub use edgekd_kernels::{add_tables, ADD_TABLE_LEN};
#[cfg(edgekd_op_conv2d)]
pub use edgekd_kernels::{conv2d_wide_len, conv2d_wide_weights};
#[cfg(feature = "fully-connected")]
pub use edgekd_kernels::{fc_wide_len, fc_wide_weights};
pub use edgekd_kernels::{ADD_USES_TABLES, CONV_USES_WIDE_WEIGHTS, FC_USES_WIDE_WEIGHTS};
pub use error::Error;
pub use executor::Executor;
pub use format::{DType, Model, OpCode, Quant, Tensor};
pub use interpreter::{Interpreter, OpStats, Profiler, DEFAULT_MAX_OPS};
pub use program::{OpParts, Program, Step};
