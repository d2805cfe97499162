//! Cortex-M kernels for cores with the DSP extension (ARMv7E-M, and ARMv8-M Mainline
//! cores that implement it): `SXTB16` widens two int8 lanes to int16 in one instruction
//! and `SMLAD` does two 16x16 multiply-accumulates. The `core::arch::arm` intrinsics for
//! them are unstable, so they are written with `core::arch::asm!`.
//!
//! Compiled only with `cfg(edgekd_dsp)` (see `build.rs`). Every kernel here gives the
//! same bits as its portable counterpart: int8 products summed in i32 are exact, so
//! only the order of (wrapping) additions differs, which cannot change the result.
//! The firmware's `selftest` feature checks that in QEMU on random shapes and data.

#[cfg(all(edgekd_conv2d, not(edgekd_small_kernels)))]
pub(crate) mod conv;
#[cfg(edgekd_depthwise)]
pub(crate) mod depthwise;
#[cfg(feature = "fully-connected")]
pub(crate) mod fully_connected;
#[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
pub(crate) mod matvec;
#[cfg(feature = "pool")]
pub(crate) mod pool;
#[cfg(any(edgekd_conv2d, feature = "fully-connected", edgekd_depthwise))]
pub(crate) mod table;

use core::arch::asm;

/// `-zero_point` in both halfwords: the addend `SXTAB16` widens int8 lanes onto, so
/// that one instruction gives two `x - zero_point` (|x - zp| <= 255 fits a lane).
#[cfg(any(edgekd_conv2d, feature = "fully-connected", edgekd_depthwise))]
#[inline(always)]
pub(crate) fn neg_zero_point2(zero_point: i32) -> u32 {
    let neg = zero_point.wrapping_neg() as u32;
    (neg & 0xffff) | (neg << 16)
}

/// [`crate::quant::ChannelRq::apply`]: `x << left`, gemmlowp's
/// SaturatingRoundingDoublingHighMul by `multiplier`, then RoundingDivideByPOT by `right`
/// with `mask = 2^right - 1`. The high multiply is `SMLAL` into an accumulator pre-set to
/// the nudge `2^30` (bits 31..62 of the sum are the result) and `QADD` doubles the high
/// word with saturation, which only triggers for `i32::MIN * i32::MIN` (the one case the
/// high word reaches `2^30`) and gives `i32::MAX` there, as gemmlowp does. Written out so
/// the register shifts need no masking of their amounts (`left`, `right` <= 31 by
/// construction, where LSL/ASR by register behave exactly like Rust's shifts).
#[inline(always)]
pub(crate) fn requant(x: i32, multiplier: i32, left: u32, right: u32, mask: i32) -> i32 {
    let v: i32;
    // SAFETY: register-only arithmetic (no memory access). The CMP/QADD flag updates are
    // not claimed to be preserved.
    unsafe {
        asm!(
            "lsl {x}, {x}, {left}",
            "smlal {lo}, {hi}, {x}, {m}",
            "qadd {hi}, {hi}, {hi}",
            "orr {hi}, {hi}, {lo}, lsr #31",
            // remainder, and the threshold: half the mask, one more for negatives
            "and {x}, {hi}, {mask}",
            "asr {lo}, {mask}, #1",
            "add {lo}, {lo}, {hi}, lsr #31",
            "asr {hi}, {hi}, {right}",
            "cmp {x}, {lo}",
            "it gt",
            "addgt {hi}, {hi}, #1",
            x = inout(reg) x => _,
            lo = inout(reg) 1u32 << 30 => _,
            hi = inout(reg) 0i32 => v,
            m = in(reg) multiplier,
            left = in(reg) left,
            right = in(reg) right,
            mask = in(reg) mask,
            options(pure, nomem, nostack),
        );
    }
    v
}

/// [`crate::quant::RoundingRq::apply`]: `SMLAL` of `x * multiplier` into the prepared
/// 64-bit nudge, a second `SMLAL` of `x >> 31` (0 or 1) by `i32::MIN` for the sign
/// term, and the high word shifted right by `r - 1`.
#[inline(always)]
pub(crate) fn requant_rounding(x: i32, rq: &crate::quant::RoundingRq) -> i32 {
    let v: i32;
    // SAFETY: register-only arithmetic (no memory access, no flags: SMLAL, LSR with an
    // immediate and ASR by register without the S suffix leave them alone). `shift`
    // is at most 30, where ASR by register behaves like Rust's `>>`.
    unsafe {
        asm!(
            "smlal {lo}, {hi}, {x}, {m}",
            "lsr {t}, {x}, #31",
            "smlal {lo}, {hi}, {t}, {min}",
            "asr {hi}, {hi}, {sh}",
            x = in(reg) x,
            m = in(reg) rq.multiplier,
            min = in(reg) i32::MIN,
            sh = in(reg) rq.shift,
            lo = inout(reg) rq.nudge_lo => _,
            hi = inout(reg) rq.nudge_hi => v,
            t = out(reg) _,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    v
}

/// [`requant_rounding`] saturated to int8 (`SSAT`): the output of a layer whose clamp is
/// the whole int8 range.
#[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
#[inline(always)]
pub(crate) fn requant_rounding_i8(x: i32, rq: &crate::quant::RoundingRq) -> i8 {
    saturate_i8(requant_rounding(x, rq))
}

/// `v` clamped to `-128..=127` in one `SSAT`.
#[inline(always)]
pub(crate) fn saturate_i8(v: i32) -> i8 {
    let s: i32;
    // SAFETY: register-only arithmetic; SSAT sets only the Q flag, which nothing reads.
    unsafe {
        asm!(
            "ssat {v}, #8, {v}",
            v = inout(reg) v => s,
            options(pure, nomem, nostack),
        );
    }
    s as i8
}

/// An Add over `n` elements from its prepared tables (`t1` the first input's 256 words,
/// the second's right after), clamped to the whole int8 range:
/// `out[i] = saturate(rq(t1[a[i]] + t2[b[i]]))`, in one asm loop of 14 instructions per
/// element (two byte loads, two table loads, the sum, the single-step requantization
/// of the conv kernels, one store, one index update) where the Rust loop took 20.
///
/// # Safety
/// `t1` must be 4-byte aligned and valid for reading 512 words; `a`, `b` for reading and
/// `out` for writing `n` bytes; `n >= 1`; `rq.shift` at most 22 (`RoundingRq::new`).
#[cfg(all(feature = "add", not(edgekd_small_kernels)))]
#[inline(never)]
pub(crate) unsafe fn add_tables_i8(
    t1: *const i32,
    a: *const i8,
    b: *const i8,
    out: *mut i8,
    n: usize,
    rq: &crate::quant::RoundingRq,
) {
    // SAFETY: the loop reads `a[i]`, `b[i]`, two table words indexed by bytes (< 256
    // each, so within the 512 words) and writes `out[i]` for `i < n`, as the caller
    // guarantees; the pointers address from their ends with a negative index that
    // reaches 0 after `n` elements. ASR by a register of at most 22 behaves like Rust's
    // `>>`. Otherwise only register operands and the flags change.
    unsafe {
        asm!(
            "add {a}, {a}, {i}",
            "add {b}, {b}, {i}",
            "add {o}, {o}, {i}",
            "rsb {i}, {i}, #0",
            "add {t2}, {t1}, #1024",
            "2:",
            "ldrb {x}, [{a}, {i}]",
            "ldrb {y}, [{b}, {i}]",
            "ldr {x}, [{t1}, {x}, lsl #2]",
            "ldr {y}, [{t2}, {y}, lsl #2]",
            "add {x}, {x}, {y}",
            "asr {hi}, {x}, #31",
            "adds {y}, {nlo}, {hi}, lsl #31",
            "adc {hi}, {nhi}, {hi}",
            "smlal {y}, {hi}, {x}, {m}",
            "asr {hi}, {hi}, {sh}",
            "ssat {hi}, #8, {hi}",
            "strb {hi}, [{o}, {i}]",
            "adds {i}, {i}, #1",
            "bne 2b",
            t1 = in(reg) t1,
            a = inout(reg) a => _,
            b = inout(reg) b => _,
            o = inout(reg) out => _,
            i = inout(reg) n => _,
            m = in(reg) rq.multiplier,
            nlo = in(reg) rq.nudge_lo,
            nhi = in(reg) rq.nudge_hi,
            sh = in(reg) rq.shift,
            t2 = out(reg) _,
            x = out(reg) _,
            y = out(reg) _,
            hi = out(reg) _,
            options(nostack),
        );
    }
}

/// The two 256-word rescaling tables of an Add layer's prepared table (`add_tables`), or
/// `None` if `table` is not 4-byte aligned or not [`crate::ADD_TABLE_LEN`] entries.
#[cfg(all(feature = "add", not(edgekd_small_kernels)))]
#[inline(always)]
pub(crate) fn add_words(table: &[i16]) -> Option<[&[i32; 256]; 2]> {
    if table.len() != crate::ADD_TABLE_LEN || table.as_ptr() as usize % 4 != 0 {
        return None;
    }
    // SAFETY: `table` is 4-byte aligned (checked) and holds 1,024 i16 = 512 i32 (checked),
    // borrowed shared for the result's lifetime; every bit pattern is a valid i32.
    let words: &[i32; 512] = unsafe { &*table.as_ptr().cast::<[i32; 512]>() };
    let (one, two) = words.split_at(256);
    Some([one.try_into().ok()?, two.try_into().ok()?])
}

/// Most values [`add_lanes`] sums per 16-bit lane exactly (256 * -128 and 256 * 127 fit
/// an i16): the pooling and global-average kernels' window limit.
#[cfg(any(feature = "pool", feature = "mean"))]
pub(crate) const LANE_SUM_CELLS: usize = 256;

/// Words of four channels the lane-sum kernels keep on the stack (64 channels).
#[cfg(any(feature = "pool", feature = "mean"))]
pub(crate) const LANE_WORDS: usize = 16;

/// `acc` plus lanes (0, 2) of `x` (`ROT` 0) or lanes (1, 3) (`ROT` 8), sign-extended,
/// in two 16-bit halves.
#[cfg(any(feature = "pool", feature = "mean"))]
#[inline(always)]
pub(crate) fn add_lanes<const ROT: u32>(acc: u32, x: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only arithmetic, no flags.
    unsafe {
        if ROT == 0 {
            asm!(
                "sxtab16 {r}, {a}, {x}",
                a = in(reg) acc,
                x = in(reg) x,
                r = lateout(reg) r,
                options(pure, nomem, nostack, preserves_flags),
            );
        } else {
            asm!(
                "sxtab16 {r}, {a}, {x}, ror #8",
                a = in(reg) acc,
                x = in(reg) x,
                r = lateout(reg) r,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
    }
    r
}

/// The four lane sums of a word's channels 0..4 from [`add_lanes`]' two registers:
/// lanes (0, 2) in `even`, (1, 3) in `odd`.
#[cfg(any(feature = "pool", feature = "mean"))]
#[inline(always)]
pub(crate) fn lane_sums(even: u32, odd: u32) -> [i16; 4] {
    [
        even as i16,
        odd as i16,
        (even >> 16) as i16,
        (odd >> 16) as i16,
    ]
}
