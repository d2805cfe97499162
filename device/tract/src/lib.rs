//! `edgekd-tract`: runs `.ekd` int8 models on [tract](https://github.com/sonos/tract),
//! the runtime for ARM Linux boards and phones, with true int8 compute.
//!
//! [`TractModel`] parses a model with `edgekd_runtime::Model::parse`, lowers it to a
//! tract graph in code ([`graph`]), optimizes it and runs it. Convolutions and fully
//! connected layers run on tract's integer matmul kernels; requantization uses the
//! file's own fixed-point multipliers, so outputs are bit-exact with `edgekd-runtime`
//! (see [`ops`] for how). [`float`] builds the float model from the same weights, for
//! benchmarks. The `edgekd-bench` binary measures both runtimes. With the `onnx`
//! feature, [`onnx::OnnxModel`] runs the ONNX file the host exports, int8 in and out.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod bench;
mod error;
pub mod float;
pub mod graph;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod ops;
mod runner;
pub mod stats;

pub use error::{Error, Result};
pub use graph::IoInfo;
pub use runner::{argmax, OpProfile, Options, TractModel};
