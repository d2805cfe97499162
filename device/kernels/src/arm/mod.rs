//! Cortex-M kernels for cores with the DSP extension (ARMv7E-M, and ARMv8-M Mainline
//! cores that implement it): `SXTB16` widens two int8 lanes to int16 in one instruction
//! and `SMLAD` does two 16x16 multiply-accumulates. The `core::arch::arm` intrinsics for
//! them are unstable, so they are written with `core::arch::asm!`.
//!
//! Compiled only with `cfg(edgekd_dsp)` (see `build.rs`). Every kernel here gives the
//! same bits as its portable counterpart: int8 products summed in i32 are exact, so
//! only the order of (wrapping) additions differs, which cannot change the result.
//! The firmware's `selftest` feature checks that in QEMU on random shapes and data.

#[cfg(feature = "depthwise-conv2d")]
pub(crate) mod depthwise;
#[cfg(any(feature = "conv2d", feature = "fully-connected"))]
pub(crate) mod matvec;

use core::arch::asm;

/// gemmlowp `SaturatingRoundingDoublingHighMul` in three instructions: `SMLAL` adds
/// `a * b` to an accumulator pre-set to the nudge `2^30`, and bits 31..62 of the sum
/// are the result; `QADD` doubles the high word with saturation, which only triggers
/// for `i32::MIN * i32::MIN` (the one case the high word reaches `2^30`) and gives
/// `i32::MAX` there, as gemmlowp does.
#[inline(always)]
pub(crate) fn srdhm(a: i32, b: i32) -> i32 {
    let hi: i32;
    // SAFETY: register-only arithmetic (no memory access). QADD may set the sticky Q
    // flag, which nothing reads; the asm does not claim to preserve flags.
    unsafe {
        asm!(
            "smlal {lo}, {hi}, {a}, {b}",
            "qadd {hi}, {hi}, {hi}",
            "orr {hi}, {hi}, {lo}, lsr #31",
            lo = inout(reg) 1u32 << 30 => _,
            hi = inout(reg) 0i32 => hi,
            a = in(reg) a,
            b = in(reg) b,
            options(pure, nomem, nostack),
        );
    }
    hi
}
