//! Pooling four channels at a time. Max: `SSUB8` sets one GE flag per byte lane where
//! the first operand is the larger (signed), `SEL` then picks per lane, so `max`/`min`
//! of four int8 lanes is two instructions and exact. Average: `SXTAB16` adds lanes
//! (0, 2) and, rotated, (1, 3) of a word to two 16-bit sums per register, exact for
//! windows of up to 256 cells.

use crate::quant::{clamp_to_i8, rounded_div};
use crate::{Axis, KernelError, PoolParams, Shape};
use core::arch::asm;

/// Most channel words (4 channels each) per pixel the word path handles (64 channels);
/// wider layers take the portable loop.
pub(crate) const MAX_WORDS: usize = 16;

/// Lane-wise signed max of four int8 lanes.
#[inline(always)]
fn max4(a: u32, b: u32) -> u32 {
    let r: u32;
    // SAFETY: register-only arithmetic; SSUB8 sets the GE flags SEL reads in the same
    // block, nothing else reads them.
    unsafe {
        asm!(
            "ssub8 {t}, {a}, {b}",
            "sel {r}, {a}, {b}",
            a = in(reg) a,
            b = in(reg) b,
            t = out(reg) _,
            r = lateout(reg) r,
            options(pure, nomem, nostack),
        );
    }
    r
}

/// Lane-wise signed min of four int8 lanes.
#[inline(always)]
fn min4(a: u32, b: u32) -> u32 {
    let r: u32;
    // SAFETY: as in `max4`.
    unsafe {
        asm!(
            "ssub8 {t}, {a}, {b}",
            "sel {r}, {b}, {a}",
            a = in(reg) a,
            b = in(reg) b,
            t = out(reg) _,
            r = lateout(reg) r,
            options(pure, nomem, nostack),
        );
    }
    r
}

#[inline(always)]
fn word(b: &[i8]) -> u32 {
    u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8])
}

/// [`crate::max_pool2d`] for `c % 4 == 0`, `c <= 4 * MAX_WORDS`, geometry already
/// validated (`ay`, `ax` from its checks): the same bits as the portable loop (max over
/// the in-bounds window cells, then `max(lo)` and `min(hi)`).
pub(crate) fn max_pool_words(
    p: &PoolParams,
    ay: Axis,
    ax: Axis,
    input_shape: Shape,
    input: &[i8],
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let c = input_shape.c;
    let words = c / 4;
    let in_w = input_shape.w;
    let in_img = input_shape.h * in_w * c;
    let splat = |v: i8| u32::from(v as u8) * 0x0101_0101;
    let (lo4, hi4) = (splat(p.clamp.min), splat(p.clamp.max));
    let mut acc = [0u32; MAX_WORDS];
    let acc = &mut acc[..words];
    let mut out_px = output.chunks_exact_mut(c);
    for b in 0..input_shape.n {
        let img = &input[b * in_img..][..in_img];
        for oy in 0..output_shape.h {
            let (ky0, ky1, iy0) = ay.window(oy);
            for ox in 0..output_shape.w {
                let (kx0, kx1, ix0) = ax.window(ox);
                let Some(out) = out_px.next() else {
                    return Err(KernelError::ShapeMismatch);
                };
                acc.fill(0x8080_8080);
                for iy in iy0..iy0 + (ky1 - ky0) {
                    let row = &img[(iy * in_w + ix0) * c..][..(kx1 - kx0) * c];
                    for px in row.chunks_exact(c) {
                        for (a, x) in acc.iter_mut().zip(px.chunks_exact(4)) {
                            *a = max4(*a, word(x));
                        }
                    }
                }
                for (o, &a) in out.chunks_exact_mut(4).zip(acc.iter()) {
                    let v = min4(max4(a, lo4), hi4).to_le_bytes();
                    for (o, v) in o.iter_mut().zip(v) {
                        *o = v as i8;
                    }
                }
            }
        }
    }
    Ok(())
}

/// `acc` plus lanes (0, 2) of `x` (`ROT` 0) or lanes (1, 3) (`ROT` 8), sign-extended,
/// in two 16-bit halves.
#[inline(always)]
fn add_lanes<const ROT: u32>(acc: u32, x: u32) -> u32 {
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

/// Most cells of a window [`avg_pool_words`] sums in 16-bit lanes (256 * 128 fits).
pub(crate) const MAX_AVG_CELLS: usize = 256;

/// [`crate::avg_pool2d`] for `c % 4 == 0`, `c <= 4 * MAX_WORDS` and windows of at most
/// [`MAX_AVG_CELLS`] cells, geometry already validated (`ay`, `ax` from its checks):
/// the same bits as the portable loop (the in-bounds cells' sum, rounded division by
/// their count, then the clamp), four channels per word of input.
pub(crate) fn avg_pool_words(
    p: &PoolParams,
    ay: Axis,
    ax: Axis,
    input_shape: Shape,
    input: &[i8],
    output_shape: Shape,
    output: &mut [i8],
) -> Result<(), KernelError> {
    let c = input_shape.c;
    let words = c / 4;
    let in_w = input_shape.w;
    let in_img = input_shape.h * in_w * c;
    let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
    // Per word, the sums of lanes (0, 2) and of lanes (1, 3).
    let mut acc = [(0u32, 0u32); MAX_WORDS];
    let acc = &mut acc[..words];
    let mut out_px = output.chunks_exact_mut(c);
    for b in 0..input_shape.n {
        let img = &input[b * in_img..][..in_img];
        for oy in 0..output_shape.h {
            let (ky0, ky1, iy0) = ay.window(oy);
            for ox in 0..output_shape.w {
                let (kx0, kx1, ix0) = ax.window(ox);
                let Some(out) = out_px.next() else {
                    return Err(KernelError::ShapeMismatch);
                };
                let cells = (ky1 - ky0) * (kx1 - kx0);
                if cells == 0 || cells > MAX_AVG_CELLS {
                    return Err(KernelError::ShapeMismatch);
                }
                acc.fill((0, 0));
                for iy in iy0..iy0 + (ky1 - ky0) {
                    let row = &img[(iy * in_w + ix0) * c..][..(kx1 - kx0) * c];
                    for px in row.chunks_exact(c) {
                        for ((even, odd), x) in acc.iter_mut().zip(px.chunks_exact(4)) {
                            let x = word(x);
                            *even = add_lanes::<0>(*even, x);
                            *odd = add_lanes::<8>(*odd, x);
                        }
                    }
                }
                let count = cells as i32;
                for (o, &(even, odd)) in out.chunks_exact_mut(4).zip(acc.iter()) {
                    let sums = [
                        even as i16,
                        odd as i16,
                        (even >> 16) as i16,
                        (odd >> 16) as i16,
                    ];
                    for (o, s) in o.iter_mut().zip(sums) {
                        *o = clamp_to_i8(rounded_div(i32::from(s), count), lo, hi);
                    }
                }
            }
        }
    }
    Ok(())
}
