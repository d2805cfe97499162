//! Cortex-M kernels for cores with the DSP extension (ARMv7E-M, and ARMv8-M Mainline
//! cores that implement it): `SXTB16` widens two int8 lanes to int16 in one instruction
//! and `SMLAD` does two 16x16 multiply-accumulates. The `core::arch::arm` intrinsics for
//! them are unstable, so they are written with `core::arch::asm!`.
//!
//! Compiled only with `cfg(edgekd_dsp)` (see `build.rs`). Every kernel here gives the
//! same bits as its portable counterpart: int8 products summed in i32 are exact, so
//! only the order of (wrapping) additions differs, which cannot change the result.
//! The firmware's `selftest` feature checks that in QEMU on random shapes and data.

pub(crate) mod depthwise;
pub(crate) mod matvec;
