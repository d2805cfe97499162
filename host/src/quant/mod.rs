//! Post-training int8 quantization (TFLite int8 spec) of a trained float model.
//!
//! - [`float`]: the float model file as plain arrays and a reference forward pass.
//! - [`calib`]: streaming calibration statistics and range selection (min/max, percentile, MSE).
//! - [`equalize`]: cross-layer equalization (opt-in), so one outlier channel does not set a
//!   whole per-tensor weight scale.
//! - [`build`]: int8 weights/biases/activation parameters, written with `ModelBuilder`.
//! - [`int8`]: running the result with `edgekd-runtime` and probing every op's output.
//! - [`ptq`]: the pipeline (`auto` calibration, recovery: bias correction, then QAT + KD).
//! - [`qat`]: quantization-aware fine-tuning (fake quantization, straight-through estimator)
//!   with the float model as the distillation teacher.
//! - [`report`]: the per-layer report.

pub mod build;
pub mod calib;
pub mod equalize;
pub mod float;
pub mod int8;
pub mod ptq;
pub mod qat;
pub mod report;

pub use build::{BuildOptions, Built};
pub use calib::Method;
pub use float::FloatModel;
pub use ptq::{quantize, CalibSet, Calibration, Outcome, PtqOptions};
pub use qat::{QatMode, QatOptions};
