//! Models declared in a recipe and trained with candle.
//!
//! - [`spec`]: layer declarations and shape inference; every layer maps onto an
//!   `edgekd-runtime` op (see the module docs).
//! - [`model`]: the trainable network (unfold + matmul convolutions, BatchNorm, dropout).
//! - [`store`]: the trained float model file (`model.safetensors`) the quantizer reads —
//!   its layout is documented there.
//! - [`onnx`]: ONNX export of a trained network.

pub mod model;
pub mod onnx;
pub mod spec;
pub mod store;

pub use model::{Mode, Net};
pub use spec::{Act, LayerSpec, Padding, Shape, Size2};
