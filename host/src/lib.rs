//! `edgekd`: the host toolchain — datasets, teachers, distillation, quantization, export,
//! evaluation and benchmarks around the `edgekd-runtime` int8 engine.

pub mod cli;
pub mod cmd;
pub mod data;
pub mod eval;
pub mod export;
pub mod io;
pub mod nn;
pub mod pipeline;
pub mod quant;
pub mod reference;
pub mod teacher;
pub mod tflite;
pub mod train;
