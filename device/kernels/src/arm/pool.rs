//! Pooling four channels at a time. Max: `SSUB8` sets one GE flag per byte lane where
//! the first operand is the larger (signed), `SEL` then picks per lane, so `max`/`min`
//! of four int8 lanes is two instructions and exact. Average: `SXTAB16` adds lanes
//! (0, 2) and, rotated, (1, 3) of a word to two 16-bit sums per register, exact for
//! windows of up to 256 cells.

use super::{add_lanes, lane_sums};
use crate::quant::{clamp_to_i8, rounded_div};
use crate::{Axis, KernelError, PoolParams, Shape};
use core::arch::asm;

/// Most channel words (4 channels each) per pixel the word paths handle (64 channels);
/// wider layers take the portable loop.
pub(crate) const MAX_WORDS: usize = super::LANE_WORDS;

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
    // The output pixel (across images and rows) the loops are at.
    let mut px = 0;
    for b in 0..input_shape.n {
        let img = &input[b * in_img..][..in_img];
        for oy in 0..output_shape.h {
            let (ky0, ky1, iy0) = ay.window(oy);
            let out_w = output_shape.w;
            let out_row = output
                .get_mut(px * c..(px + out_w) * c)
                .ok_or(KernelError::ShapeMismatch)?;
            px += out_w;
            // Pixels whose one-row windows hold every cell go to one asm block.
            #[cfg(not(edgekd_small_kernels))]
            let (run_lo, run_hi) = match ky1 - ky0 {
                1 => ax.whole(out_w),
                _ => (0, 0),
            };
            let mut ox = 0;
            while ox < out_w {
                let (kx0, kx1, ix0) = ax.window(ox);
                #[cfg(not(edgekd_small_kernels))]
                if ox == run_lo && run_hi > run_lo && kx1 - kx0 == p.filter_w {
                    let run = MaxRun {
                        words,
                        taps: p.filter_w,
                        c,
                        step: p.stride_w * c,
                        lo4,
                        hi4,
                    };
                    let pixels = run_hi - run_lo;
                    let at = (iy0 * in_w + ix0) * c;
                    let x_end = at + (pixels - 1) * run.step + run.taps * c;
                    if x_end > img.len() || run.taps == 0 || words == 0 {
                        return Err(KernelError::ShapeMismatch);
                    }
                    // SAFETY: pixel `p`'s window reads `taps` words per channel word
                    // from `at + p * step + t * c + 4 * w` (`4 * w + 4 <= c`): the last
                    // ends by `x_end <= img.len()`, checked; the outputs of pixels
                    // `run_lo..run_hi` lie in `out_row`; `pixels`, `taps` and `words`
                    // are at least 1.
                    unsafe {
                        max_run(
                            &run,
                            img.as_ptr().add(at),
                            out_row.as_mut_ptr().add(run_lo * c),
                            pixels,
                        );
                    }
                    ox = run_hi;
                    continue;
                }
                let out = &mut out_row[ox * c..(ox + 1) * c];
                ox += 1;
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

/// What [`max_run`] reads of a layer (`repr(C)`: the asm reads the fields at byte
/// offsets 0 to 20).
#[cfg(not(edgekd_small_kernels))]
#[repr(C)]
struct MaxRun {
    /// Words of four channels per pixel.
    words: usize,
    /// Cells of a window (its width).
    taps: usize,
    /// Channels (bytes between a window's cells and between output pixels).
    c: usize,
    /// Bytes of input between neighbouring pixels' windows (`stride_w * c`).
    step: usize,
    /// The clamp's bounds in all four lanes.
    lo4: u32,
    /// See `lo4`.
    hi4: u32,
}

/// Max pooling of `pixels` neighbouring output pixels whose one-row windows hold all
/// `l.taps` cells, in one asm block: pixel `p`'s window starts at `x + p * l.step`, its
/// outputs at `out + p * l.c`; per word of four channels, `SSUB8`/`SEL` over the cells
/// and the clamp. About 21 instructions per word of a two-cell window, where the Rust
/// loop spent about 70 per word finding and slicing the window.
///
/// # Safety
/// `x` valid for reading `(pixels - 1) * l.step + l.taps * l.c` bytes, `out` for
/// writing `(pixels - 1) * l.c + 4 * l.words` bytes (any alignment: ARMv7-M `LDR`/`STR`
/// take unaligned words); `4 * l.words <= l.c`; `pixels`, `l.taps` and `l.words` at
/// least 1.
#[cfg(not(edgekd_small_kernels))]
#[inline(never)]
unsafe fn max_run(l: &MaxRun, x: *const i8, out: *mut i8, pixels: usize) {
    // SAFETY: per pixel and word, `taps` word reads `c` bytes apart from the window's
    // start and one word write, all within what the caller guarantees. Otherwise only
    // register operands and the flags (SSUB8's GE bits, SUBS) change.
    unsafe {
        asm!(
            "ldr {c}, [{l}, #8]",
            "2:",
            "ldr {w}, [{l}]",
            "mov {p}, {x}",
            "mov {q}, {o}",
            "3:",
            "ldr {t}, [{l}, #4]",
            "ldr {acc}, [{p}]",
            "add {r}, {p}, {c}",
            "subs {t}, {t}, #1",
            "beq 5f",
            "4:",
            "ldr {v}, [{r}]",
            "add {r}, {r}, {c}",
            "ssub8 {tmp}, {acc}, {v}",
            "sel {acc}, {acc}, {v}",
            "subs {t}, {t}, #1",
            "bne 4b",
            "5:",
            // max with the clamp's lower bound, then min with its upper bound.
            "ldr {v}, [{l}, #16]",
            "ssub8 {tmp}, {acc}, {v}",
            "sel {acc}, {acc}, {v}",
            "ldr {v}, [{l}, #20]",
            "ssub8 {tmp}, {acc}, {v}",
            "sel {acc}, {v}, {acc}",
            "str {acc}, [{q}], #4",
            "add {p}, {p}, #4",
            "subs {w}, {w}, #1",
            "bne 3b",
            "ldr {tmp}, [{l}, #12]",
            "add {x}, {x}, {tmp}",
            "add {o}, {o}, {c}",
            "subs {n}, {n}, #1",
            "bne 2b",
            l = in(reg) l as *const MaxRun,
            x = inout(reg) x => _,
            o = inout(reg) out => _,
            n = inout(reg) pixels => _,
            c = out(reg) _,
            w = out(reg) _,
            p = out(reg) _,
            q = out(reg) _,
            t = out(reg) _,
            r = out(reg) _,
            acc = out(reg) _,
            v = out(reg) _,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}

/// Most cells of a window [`avg_pool_words`] sums in 16-bit lanes.
pub(crate) const MAX_AVG_CELLS: usize = super::LANE_SUM_CELLS;

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
    // The output pixel (across images and rows) the loops are at.
    let mut px = 0;
    for b in 0..input_shape.n {
        let img = &input[b * in_img..][..in_img];
        for oy in 0..output_shape.h {
            let (ky0, ky1, iy0) = ay.window(oy);
            let out_w = output_shape.w;
            let out_row = output
                .get_mut(px * c..(px + out_w) * c)
                .ok_or(KernelError::ShapeMismatch)?;
            px += out_w;
            // Pixels whose one-row windows hold every cell go to one asm block.
            #[cfg(not(edgekd_small_kernels))]
            let (run_lo, run_hi) = match ky1 - ky0 {
                1 => ax.whole(out_w),
                _ => (0, 0),
            };
            let mut ox = 0;
            while ox < out_w {
                let (kx0, kx1, ix0) = ax.window(ox);
                let cells = (ky1 - ky0) * (kx1 - kx0);
                if cells == 0 || cells > MAX_AVG_CELLS {
                    return Err(KernelError::ShapeMismatch);
                }
                #[cfg(not(edgekd_small_kernels))]
                if ox == run_lo && run_hi > run_lo && kx1 - kx0 == p.filter_w {
                    let run = AvgRun {
                        words,
                        taps: cells,
                        c,
                        step: p.stride_w * c,
                        half: cells as i32 / 2,
                        count: cells as i32,
                        lo,
                        hi,
                    };
                    let pixels = run_hi - run_lo;
                    let at = (iy0 * in_w + ix0) * c;
                    let x_end = at + (pixels - 1) * run.step + cells * c;
                    if x_end > img.len() || words == 0 {
                        return Err(KernelError::ShapeMismatch);
                    }
                    // SAFETY: pixel `p`'s window reads `cells` words per channel word
                    // from `at + p * step + t * c + 4 * w` (`4 * w + 4 <= c`): the last
                    // ends by `x_end <= img.len()`, checked; the outputs of pixels
                    // `run_lo..run_hi` lie in `out_row`; `pixels`, `cells` (at most
                    // `MAX_AVG_CELLS`) and `words` are at least 1.
                    unsafe {
                        avg_run(
                            &run,
                            img.as_ptr().add(at),
                            out_row.as_mut_ptr().add(run_lo * c),
                            pixels,
                        );
                    }
                    ox = run_hi;
                    continue;
                }
                let out = &mut out_row[ox * c..(ox + 1) * c];
                ox += 1;
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
                    for (o, s) in o.iter_mut().zip(lane_sums(even, odd)) {
                        *o = clamp_to_i8(rounded_div(i32::from(s), count), lo, hi);
                    }
                }
            }
        }
    }
    Ok(())
}

/// What [`avg_run`] reads of a layer (`repr(C)`: the asm reads the fields at byte
/// offsets 0 to 28).
#[cfg(not(edgekd_small_kernels))]
#[repr(C)]
struct AvgRun {
    /// Words of four channels per pixel.
    words: usize,
    /// Cells of a window (its width; at most [`MAX_AVG_CELLS`]).
    taps: usize,
    /// Channels (bytes between a window's cells and between output pixels).
    c: usize,
    /// Bytes of input between neighbouring pixels' windows (`stride_w * c`).
    step: usize,
    /// `count / 2`, the rounding of the division.
    half: i32,
    /// Cells of a window, the divisor.
    count: i32,
    /// The clamp.
    lo: i32,
    /// See `lo`.
    hi: i32,
}

/// `rounded_div` of the lane sum in `{v}` by `{r}` with `{t}` half of it: the half added
/// away from zero, then `SDIV` (truncating like Rust's `/`).
#[cfg(not(edgekd_small_kernels))]
macro_rules! avg_div {
    () => {
        concat!(
            "cmp {v}, #0\n",
            "ite gt\n",
            "addgt {v}, {v}, {t}\n",
            "suble {v}, {v}, {t}\n",
            "sdiv {v}, {v}, {r}\n",
        )
    };
}

/// One lane's average from its sum in `{v}` (`rounded_div` by `{r}` with `{t}` half of
/// it, `SDIV` truncating like Rust's `/`), stored to byte `$at` of `{q}`: the average of
/// int8 values is an int8 value, so a layer clamped to the whole range needs no clamp.
#[cfg(not(edgekd_small_kernels))]
macro_rules! avg_lane {
    ($at:literal) => {
        concat!(avg_div!(), "strb {v}, [{q}, #", $at, "]\n",)
    };
}

/// [`avg_lane`] with the clamp (`[l, #24]`, `[l, #28]`) before the store.
#[cfg(not(edgekd_small_kernels))]
macro_rules! avg_lane_clamped {
    ($at:literal) => {
        concat!(
            avg_div!(),
            "ldr {tmp}, [{l}, #24]\n",
            "cmp {v}, {tmp}\n",
            "it lt\n",
            "movlt {v}, {tmp}\n",
            "ldr {tmp}, [{l}, #28]\n",
            "cmp {v}, {tmp}\n",
            "it gt\n",
            "movgt {v}, {tmp}\n",
            "strb {v}, [{q}, #",
            $at,
            "]\n",
        )
    };
}

/// Average pooling of `pixels` neighbouring output pixels whose one-row windows hold
/// all `l.taps` cells, in one asm block: pixel `p`'s window starts at `x + p * l.step`,
/// its outputs at `out + p * l.c`; per word of four channels, `SXTAB16` sums over the
/// cells, then per lane the rounded division, the clamp if it is narrower than int8 and
/// a byte store (the same arithmetic as the portable loop).
///
/// # Safety
/// `x` valid for reading `(pixels - 1) * l.step + l.taps * l.c` bytes, `out` for
/// writing `(pixels - 1) * l.c + 4 * l.words` bytes (any alignment); `4 * l.words <=
/// l.c`; `pixels`, `l.words` and `l.taps` (at most [`MAX_AVG_CELLS`], so the 16-bit lane
/// sums are exact) at least 1; `l.count == l.taps`, `l.half == l.count / 2`.
#[cfg(not(edgekd_small_kernels))]
#[inline(never)]
unsafe fn avg_run(l: &AvgRun, x: *const i8, out: *mut i8, pixels: usize) {
    // SAFETY: per pixel and word, `taps` word reads `c` bytes apart from the window's
    // start and four byte writes, all within what the caller guarantees; SDIV by the
    // count (at least 1) of a sum of at most 256 int8 values cannot overflow. The 8
    // bytes of stack it takes are given back before it ends. Otherwise only register
    // operands and the flags change.
    unsafe {
        asm!(
            // [sp]: this pixel's input, [sp, #4]: its outputs.
            "sub sp, sp, #8",
            "strd {p}, {q}, [sp]",
            "ldr {c}, [{l}, #8]",
            "2:",
            "ldr {w}, [{l}]",
            "ldrd {p}, {q}, [sp]",
            "3:",
            "ldr {t}, [{l}, #4]",
            "mov {e}, #0",
            "mov {d}, #0",
            "mov {r}, {p}",
            "4:",
            "ldr {v}, [{r}]",
            "add {r}, {r}, {c}",
            "sxtab16 {e}, {e}, {v}",
            "sxtab16 {d}, {d}, {v}, ror #8",
            "subs {t}, {t}, #1",
            "bne 4b",
            "ldrd {t}, {r}, [{l}, #16]",
            // Lanes (0, 2) of the word are in `e`, (1, 3) in `d`.
            "cmp {clamped}, #0",
            "bne 6f",
            "sxth {v}, {e}",
            avg_lane!("0"),
            "sxth {v}, {d}",
            avg_lane!("1"),
            "asr {v}, {e}, #16",
            avg_lane!("2"),
            "asr {v}, {d}, #16",
            avg_lane!("3"),
            "b 7f",
            "6:",
            "sxth {v}, {e}",
            avg_lane_clamped!("0"),
            "sxth {v}, {d}",
            avg_lane_clamped!("1"),
            "asr {v}, {e}, #16",
            avg_lane_clamped!("2"),
            "asr {v}, {d}, #16",
            avg_lane_clamped!("3"),
            "7:",
            "add {p}, {p}, #4",
            "add {q}, {q}, #4",
            "subs {w}, {w}, #1",
            "bne 3b",
            "ldrd {p}, {q}, [sp]",
            "ldr {tmp}, [{l}, #12]",
            "add {p}, {p}, {tmp}",
            "add {q}, {q}, {c}",
            "strd {p}, {q}, [sp]",
            "subs {n}, {n}, #1",
            "bne 2b",
            "add sp, sp, #8",
            l = in(reg) l as *const AvgRun,
            clamped = in(reg) u32::from(l.lo > -128 || l.hi < 127),
            p = inout(reg) x => _,
            q = inout(reg) out => _,
            n = inout(reg) pixels => _,
            c = out(reg) _,
            w = out(reg) _,
            t = out(reg) _,
            r = out(reg) _,
            e = out(reg) _,
            d = out(reg) _,
            v = out(reg) _,
            tmp = out(reg) _,
        );
    }
}
