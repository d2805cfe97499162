//! `edgekd`: the host toolchain — datasets, teachers, distillation, quantization, export,
//! evaluation and benchmarks around the `edgekd-runtime` int8 engine.

pub mod cli;
mod cmd;
pub mod io;
pub mod reference;
