//! Depthwise convolution with depth multiplier 1: four channels per pass, one word of
//! input and one of weights per tap, `SXTAB16` (widening with the zero point
//! subtracted) + `SMLABB`/`SMLATT` into four register accumulators, then the
//! single-step requantization of the conv kernels ([`crate::quant::RoundingRq`]).

use super::table::{Chan, Chans};
use crate::matvec::BLOCK;
use crate::{Axis, ConvParams, Requant, Shape};
use core::arch::asm;

/// Adds `(x[i] - zp) * w[i]` for the four int8 lanes of `x` and `w` to `a[i]`;
/// `neg_zp2` holds `-zp` in both halfwords.
#[inline(always)]
fn tap4(a: &mut [i32; 4], x: u32, w: u32, neg_zp2: u32) {
    // SAFETY: register-only arithmetic (no memory access, no flags written). SXTAB16
    // adds each sign-extended byte to its halfword of `neg_zp2` without carry between
    // the halves, and |x - zp| <= 255 fits a 16-bit lane exactly.
    unsafe {
        asm!(
            "sxtab16 {t}, {nzp}, {x}",
            "sxtab16 {x}, {nzp}, {x}, ror #8",
            "sxtb16 {u}, {w}",
            "sxtb16 {w}, {w}, ror #8",
            "smlabb {a0}, {t}, {u}, {a0}",
            "smlatt {a2}, {t}, {u}, {a2}",
            "smlabb {a1}, {x}, {w}, {a1}",
            "smlatt {a3}, {x}, {w}, {a3}",
            x = inout(reg) x => _,
            w = inout(reg) w => _,
            nzp = in(reg) neg_zp2,
            a0 = inout(reg) a[0],
            a1 = inout(reg) a[1],
            a2 = inout(reg) a[2],
            a3 = inout(reg) a[3],
            t = out(reg) _,
            u = out(reg) _,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
}

/// The four channels' taps along one row of a window: input words at `x + t * sx`,
/// weight words at `w + t * sw`, for `t` in `0..taps`.
///
/// # Safety
/// `x` must be valid for reading `(taps - 1) * sx + 4` bytes and `w` for
/// `(taps - 1) * sw + 4` bytes when `taps > 0` (any alignment: ARMv7-M `LDR` takes
/// unaligned words).
#[inline(always)]
unsafe fn row4(
    a: &mut [i32; 4],
    x: *const i8,
    sx: usize,
    w: *const i8,
    sw: usize,
    taps: usize,
    neg_zp2: u32,
) {
    let (mut x, mut w) = (x, w);
    for _ in 0..taps {
        // SAFETY: tap `t` reads bytes `t * s .. t * s + 4` of each run, inside what the
        // caller guarantees; the pointers advance by the strides only between taps.
        unsafe {
            let xv = x.cast::<u32>().read_unaligned();
            let wv = w.cast::<u32>().read_unaligned();
            tap4(a, xv, wv, neg_zp2);
            x = x.wrapping_add(sx);
            w = w.wrapping_add(sw);
        }
    }
}

/// Requantizes lane accumulator `$acc` by the channel whose multiplier and nudge's low
/// word are at byte offset `$m` of `{x}` (a [`Chan`]) and nudge's high word and shift at
/// `$hi` (two `LDRD`s) and stores it saturated to byte `$at` of `{w}`; `{s}` holds
/// `i32::MIN`.
#[cfg(not(edgekd_small_kernels))]
macro_rules! lane_out {
    ($acc:literal, $m:literal, $hi:literal, $at:literal) => {
        concat!(
            "ldrd {u}, {t}, [{x}, #",
            $m,
            "]\n",
            "ldrd {xv}, {wv}, [{x}, #",
            $hi,
            "]\n",
            "smlal {t}, {xv}, {",
            $acc,
            "}, {u}\n",
            "lsr {",
            $acc,
            "}, {",
            $acc,
            "}, #31\n",
            "smlal {t}, {xv}, {",
            $acc,
            "}, {s}\n",
            "asr {xv}, {xv}, {wv}\n",
            "ssat {xv}, #8, {xv}\n",
            "strb {xv}, [{w}, #",
            $at,
            "]\n",
        )
    };
}

/// The four lanes of [`lane_out`]: the accumulators `a0`..`a3` by the four [`Chan`]s at
/// `{x}`, to bytes 0..4 of `{w}`.
#[cfg(not(edgekd_small_kernels))]
macro_rules! lanes_out4 {
    () => {
        concat!(
            lane_out!("a0", "4", "12", "0"),
            lane_out!("a1", "24", "32", "1"),
            lane_out!("a2", "44", "52", "2"),
            lane_out!("a3", "64", "72", "3"),
        )
    };
}

/// The taps of four channels (label 2): `{n}` taps, input words at `{x}` and filter words
/// at `{w}`, both `{s}` bytes apart; per tap the input widened with `-zp` (`{nzp}`), the
/// filter widened, and four `SMLAxy` into `a0`..`a3`. 14 instructions per tap.
#[cfg(not(edgekd_small_kernels))]
macro_rules! taps4 {
    () => {
        concat!(
            "2:\n",
            "ldr {xv}, [{x}]\n",
            "add {x}, {x}, {s}\n",
            "ldr {wv}, [{w}]\n",
            "add {w}, {w}, {s}\n",
            "sxtab16 {t}, {nzp}, {xv}\n",
            "sxtab16 {xv}, {nzp}, {xv}, ror #8\n",
            "sxtb16 {u}, {wv}\n",
            "sxtb16 {wv}, {wv}, ror #8\n",
            "smlabb {a0}, {t}, {u}, {a0}\n",
            "smlatt {a2}, {t}, {u}, {a2}\n",
            "smlabb {a1}, {xv}, {wv}, {a1}\n",
            "smlatt {a3}, {xv}, {wv}, {a3}\n",
            "subs {n}, {n}, #1\n",
            "bne 2b\n",
        )
    };
}

/// Four channels of one output pixel whose window is one row of `taps` taps `stride`
/// bytes apart in both the input and the filter (dilation 1: `stride` is the channel
/// count), clamped to the whole int8 range: the accumulators start at the channels'
/// biases, take `(x - zp) * w` per tap and lane in registers, and are requantized by
/// the channels' single-step form and stored saturated to `out[0..4]`. One asm block:
/// 14 instructions per tap and 8 per output, where the Rust loop spilled its lanes.
///
/// # Safety
/// `x` and `w` valid for reading `(taps - 1) * stride + 4` bytes (any alignment),
/// `taps >= 1`; `chans` valid for reading four [`Chan`]s whose shifts are at most 22
/// (`RoundingRq::new`); `out` valid for writing 4 bytes.
#[cfg(not(edgekd_small_kernels))]
#[inline(always)]
unsafe fn window4(
    x: *const i8,
    w: *const i8,
    stride: usize,
    taps: usize,
    chans: *const Chan,
    out: *mut i8,
    neg_zp2: u32,
) {
    // SAFETY: reads the caller's `taps` words of input and of filter (LDR, unaligned
    // allowed on ARMv7-M) and four `Chan`s, writes four bytes at `out`; the 8 bytes of
    // stack it takes are given back before it ends. ASR by a register of at most 22
    // behaves like Rust's `>>`. Otherwise only register operands and the flags (SUBS;
    // SSAT's Q flag is read by nothing) change.
    unsafe {
        asm!(
            // [sp]: chans, [sp, #4]: out.
            "sub sp, sp, #8",
            "str {a0}, [sp]",
            "str {t}, [sp, #4]",
            "ldr {a1}, [{a0}, #20]",
            "ldr {a2}, [{a0}, #40]",
            "ldr {a3}, [{a0}, #60]",
            "ldr {a0}, [{a0}]",
            taps4!(),
            "ldr {x}, [sp]",
            "ldr {w}, [sp, #4]",
            "add sp, sp, #8",
            "mov {s}, #0x80000000",
            lanes_out4!(),
            x = inout(reg) x => _,
            w = inout(reg) w => _,
            s = inout(reg) stride => _,
            n = inout(reg) taps => _,
            nzp = in(reg) neg_zp2,
            a0 = inout(reg) chans => _,
            t = inout(reg) out => _,
            a1 = out(reg) _,
            a2 = out(reg) _,
            a3 = out(reg) _,
            xv = out(reg) _,
            wv = out(reg) _,
            u = out(reg) _,
        );
    }
}

/// What [`window4_run`] reads of a layer (`repr(C)`: the asm reads the fields at byte
/// offsets 0 to 20).
#[cfg(not(edgekd_small_kernels))]
#[repr(C)]
struct Run4 {
    /// Channels (bytes between a window's taps and between output pixels).
    c: usize,
    /// Taps of a window (the kernel width).
    taps: usize,
    /// The filter row at the block's first channel.
    w_row: *const i8,
    /// The block's prepared channels.
    chans: *const Chan,
    /// Groups of four channels in the block.
    groups: usize,
    /// Bytes of input between neighbouring pixels' windows (`stride_w * c`).
    step: usize,
}

/// [`window4`] for every group of four channels of `pixels` neighbouring output pixels
/// whose windows hold all `l.taps` taps (one row, dilation 1), in one asm block: the
/// window of pixel `p` starts at `x + p * l.step`, its outputs at `out + p * l.c`.
/// About 100 instructions per pixel and group of three taps, where a Rust loop around
/// `window4` spent about 155 finding the windows.
///
/// # Safety
/// `x` valid for reading `(pixels - 1) * l.step + (l.taps - 1) * l.c + 4 * l.groups`
/// bytes and `l.w_row` for `(l.taps - 1) * l.c + 4 * l.groups` (any alignment);
/// `l.chans` for `4 * l.groups` [`Chan`]s whose shifts are at most 22
/// (`RoundingRq::new`); `out` valid for writing `(pixels - 1) * l.c + 4 * l.groups`
/// bytes; `pixels`, `l.taps` and `l.groups` at least 1.
#[cfg(not(edgekd_small_kernels))]
#[inline(never)]
unsafe fn window4_run(l: &Run4, x: *const i8, out: *mut i8, pixels: usize, neg_zp2: u32) {
    // SAFETY: per pixel and group, `window4`'s reads and writes (`taps` words of input
    // and of filter, four `Chan`s, four output bytes) at the group's offsets, all within
    // what the caller guarantees; the 40 bytes of stack it takes are given back before
    // it ends. ASR by a register of at most 22 behaves like Rust's `>>`. Otherwise only
    // register operands and the flags change.
    unsafe {
        asm!(
            // [sp]: the group's chans, [sp, #4]: its outputs, [sp, #8]: its input,
            // [sp, #12]: its filter, [sp, #16]: groups left, [sp, #20]: layer,
            // [sp, #24]: the pixel's input, [sp, #28]: its outputs, [sp, #32]: pixels
            // left.
            "sub sp, sp, #40",
            "str {a0}, [sp, #20]",
            "str {x}, [sp, #24]",
            "str {t}, [sp, #28]",
            "str {n}, [sp, #32]",
            "5:",
            "ldr {a0}, [sp, #20]",
            "ldr {x}, [sp, #24]",
            "ldr {t}, [sp, #28]",
            "ldr {w}, [{a0}, #8]",
            "ldr {u}, [{a0}, #12]",
            "ldr {n}, [{a0}, #16]",
            "str {n}, [sp, #16]",
            "6:",
            "strd {u}, {t}, [sp]",
            "strd {x}, {w}, [sp, #8]",
            "ldr {a0}, [sp, #20]",
            "ldr {s}, [{a0}]",
            "ldr {n}, [{a0}, #4]",
            "ldr {a1}, [{u}, #20]",
            "ldr {a2}, [{u}, #40]",
            "ldr {a3}, [{u}, #60]",
            "ldr {a0}, [{u}]",
            taps4!(),
            "ldrd {x}, {w}, [sp]",
            "mov {s}, #0x80000000",
            lanes_out4!(),
            // The next group: four channels on.
            "add {u}, {x}, #80",
            "add {t}, {w}, #4",
            "ldrd {x}, {w}, [sp, #8]",
            "add {x}, {x}, #4",
            "add {w}, {w}, #4",
            "ldr {n}, [sp, #16]",
            "subs {n}, {n}, #1",
            "str {n}, [sp, #16]",
            "bne 6b",
            // The next pixel.
            "ldr {a0}, [sp, #20]",
            "ldrd {x}, {t}, [sp, #24]",
            "ldr {s}, [{a0}, #20]",
            "add {x}, {x}, {s}",
            "ldr {s}, [{a0}]",
            "add {t}, {t}, {s}",
            "strd {x}, {t}, [sp, #24]",
            "ldr {n}, [sp, #32]",
            "subs {n}, {n}, #1",
            "str {n}, [sp, #32]",
            "bne 5b",
            "add sp, sp, #40",
            a0 = inout(reg) l as *const Run4 => _,
            x = inout(reg) x => _,
            t = inout(reg) out => _,
            n = inout(reg) pixels => _,
            nzp = in(reg) neg_zp2,
            w = out(reg) _,
            s = out(reg) _,
            a1 = out(reg) _,
            a2 = out(reg) _,
            a3 = out(reg) _,
            xv = out(reg) _,
            wv = out(reg) _,
            u = out(reg) _,
        );
    }
}

/// One output: `acc` requantized by its channel, offset and clamped (`FULL`: the clamp
/// is the whole int8 range, one `SSAT`).
#[inline(always)]
fn requantized<const FULL: bool>(c: &Chan, acc: i32, lo: i32, hi: i32) -> i8 {
    if FULL {
        super::saturate_i8(super::requant_rounding(acc, &c.rq))
    } else {
        c.rq.output(acc, lo, hi)
    }
}

/// [`crate::depthwise_conv2d`] for `depth_multiplier == 1`, after validation. Returns
/// `false`, having written nothing, when a channel's requantization does not fit the
/// single-step form (see [`Chans::prepare_layer`]); the caller then runs the portable
/// kernel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise_dm1(
    table: &mut Chans,
    p: &ConvParams,
    rq: &Requant<'_>,
    ay: Axis,
    ax: Axis,
    input_shape: Shape,
    input: &[i8],
    filter_shape: Shape,
    filter: &[i8],
    bias: Option<&[i32]>,
    output_shape: Shape,
    output: &mut [i8],
) -> bool {
    let c = output_shape.c;
    // Layers of several blocks check them all before any output is written, so a
    // refusal leaves the output to the portable kernel whole; a single block (the
    // common case) is prepared once, by `blocks`, which refuses before writing.
    for cb in (0..c).step_by(BLOCK).filter(|_| c > BLOCK) {
        if table
            .prepare_layer(bias, rq, p.output_zero_point, cb, BLOCK.min(c - cb))
            .is_none()
        {
            return false;
        }
    }
    let args = Layer {
        p,
        ay,
        ax,
        input_shape,
        input,
        kw: filter_shape.w,
        filter,
        output_shape,
    };
    // A second copy of the loops saturating with `SSAT` (1.5k of ds_cnn's 19k
    // instructions in this layer for 3 KB of code): not in the small kernels.
    if !cfg!(edgekd_small_kernels) && p.clamp.min == i8::MIN && p.clamp.max == i8::MAX {
        blocks::<true>(table, rq, bias, &args, output)
    } else {
        blocks::<false>(table, rq, bias, &args, output)
    }
}

/// What [`blocks`] needs of a validated layer.
struct Layer<'a> {
    p: &'a ConvParams,
    ay: Axis,
    ax: Axis,
    input_shape: Shape,
    input: &'a [i8],
    kw: usize,
    filter: &'a [i8],
    output_shape: Shape,
}

/// The layer in blocks of [`BLOCK`] channels, each prepared once; per output pixel,
/// groups of four channels through [`row4`], then the block's last `n % 4` channels
/// one at a time. `false` when a block's requantization does not fit the single-step
/// form, before any of that block's outputs is written.
#[inline(always)]
fn blocks<const FULL: bool>(
    table: &mut Chans,
    rq: &Requant<'_>,
    bias: Option<&[i32]>,
    l: &Layer<'_>,
    output: &mut [i8],
) -> bool {
    let c = l.output_shape.c;
    let in_w = l.input_shape.w;
    let in_img = l.input_shape.h * in_w * c;
    let (dh, dw) = (l.p.dilation_h, l.p.dilation_w);
    let zp = l.p.input_zero_point;
    let neg_zp2 = super::neg_zero_point2(zp);
    let (lo, hi) = (i32::from(l.p.clamp.min), i32::from(l.p.clamp.max));
    // Bytes between a window's taps along a row, in the input and in the filter.
    let (sx, sw) = (dw * c, c);
    // ... and between its rows.
    let (row_x, row_w) = (dh * in_w * c, l.kw * c);
    for cb in (0..c).step_by(BLOCK) {
        let nb = BLOCK.min(c - cb);
        let Some(chans) = table.prepare_layer(bias, rq, l.p.output_zero_point, cb, nb) else {
            return false;
        };
        let (groups, tail) = chans.split_at(nb / 4 * 4);
        // The output pixel (across images and rows) the loops are at.
        let mut px = 0;
        for img in l.input.chunks_exact(in_img).take(l.input_shape.n) {
            for oy in 0..l.output_shape.h {
                let (ky0, ky1, iy0) = l.ay.window(oy);
                // Output rows whose windows have one row (1-D signals) on a whole-range
                // clamp: per pixel only the horizontal window and two pointers, then
                // the asm per group of four channels.
                #[cfg(not(edgekd_small_kernels))]
                if FULL && ky1 == ky0 + 1 && dw == 1 && nb % 4 == 0 {
                    let out_w = l.output_shape.w;
                    let x_row = img.get(iy0 * in_w * c..(iy0 + 1) * in_w * c);
                    let w_row = l.filter.get(ky0 * l.kw * c..(ky0 + 1) * l.kw * c);
                    let out_row = output.get_mut(px * c..(px + out_w) * c);
                    let (Some(x_row), Some(w_row), Some(out_row)) = (x_row, w_row, out_row) else {
                        return true;
                    };
                    px += out_w;
                    // The pixels whose windows hold every tap, in one asm block.
                    let (run_lo, run_hi) = l.ax.whole(out_w);
                    let mut ox = 0;
                    while ox < out_w {
                        let (kx0, kx1, ix0) = l.ax.window(ox);
                        let taps = kx1 - kx0;
                        if ox == run_lo && run_hi > run_lo && taps == l.kw && taps > 0 {
                            let run = Run4 {
                                c,
                                taps,
                                w_row: w_row[cb..].as_ptr(),
                                chans: chans.as_ptr(),
                                groups: nb / 4,
                                step: l.p.stride_w * c,
                            };
                            let pixels = run_hi - run_lo;
                            let x_end = ix0 * c + (pixels - 1) * run.step + taps * c;
                            if x_end > x_row.len() || taps * c > w_row.len() {
                                return true;
                            }
                            // SAFETY: pixel `p`'s window reads `taps` words from
                            // `(ix0 + t) * c + p * step + cb + 4 * g` of the input row
                            // (`cb + 4 * g + 4 <= c`): the last ends by `x_end`, checked;
                            // the filter row's by `taps * c`, checked; `chans` holds the
                            // block's `nb` channels from `prepare_layer` (shifts at most
                            // 22); the outputs end by `run_hi * c <= out_row.len()`;
                            // `pixels`, `taps` and `nb / 4` are at least 1.
                            unsafe {
                                window4_run(
                                    &run,
                                    x_row.as_ptr().add(ix0 * c + cb),
                                    out_row.as_mut_ptr().add(run_lo * c + cb),
                                    pixels,
                                    neg_zp2,
                                );
                            }
                            ox = run_hi;
                            continue;
                        }
                        let Some(out) = out_row.get_mut(ox * c + cb..ox * c + cb + nb) else {
                            return true;
                        };
                        ox += 1;
                        if taps == 0 {
                            // No tap lands inside: the outputs are the biases'.
                            for (o, chan) in out.iter_mut().zip(chans) {
                                *o = requantized::<FULL>(chan, chan.bias, lo, hi);
                            }
                            continue;
                        }
                        if (ix0 + taps) * c > x_row.len() || (kx0 + taps) * c > w_row.len() {
                            return true;
                        }
                        for (g, (o4, cg)) in out
                            .chunks_exact_mut(4)
                            .zip(chans.chunks_exact(4))
                            .enumerate()
                        {
                            // SAFETY: the group's taps read 4 bytes at
                            // `(ix0 + t) * c + cb + 4 * g` of the input row and
                            // `(kx0 + t) * c + cb + 4 * g` of the filter row for
                            // `t < taps`, the last ending at most `(ix0 + taps) * c` and
                            // `(kx0 + taps) * c` bytes in (`cb + 4 * g + 4 <= c`),
                            // compared above; `cg` holds four `Chan`s from
                            // `prepare_layer` (shifts at most 22), `o4` four outputs.
                            unsafe {
                                window4(
                                    x_row.as_ptr().add(ix0 * c + cb + 4 * g),
                                    w_row.as_ptr().add(kx0 * c + cb + 4 * g),
                                    c,
                                    taps,
                                    cg.as_ptr(),
                                    o4.as_mut_ptr(),
                                    neg_zp2,
                                );
                            }
                        }
                    }
                    continue;
                }
                for ox in 0..l.output_shape.w {
                    let (kx0, kx1, ix0) = l.ax.window(ox);
                    let Some(out) = output.get_mut(px * c + cb..px * c + cb + nb) else {
                        return true;
                    };
                    px += 1;
                    let (out4, out_tail) = out.split_at_mut(groups.len());
                    let (rows, taps) = (ky1 - ky0, kx1 - kx0);
                    // The window as one run of input and one of filter, from the block's
                    // first channel: row `r`, tap `t` of group `g` is 4 bytes at
                    // `4 * g + r * row + t * s`.
                    let span =
                        |row: usize, s: usize| (rows.max(1) - 1) * row + (taps.max(1) - 1) * s + nb;
                    let xs = img
                        .get((iy0 * in_w + ix0) * c + cb..)
                        .and_then(|x| x.get(..span(row_x, sx)));
                    let ws = l
                        .filter
                        .get((ky0 * l.kw + kx0) * c + cb..)
                        .and_then(|w| w.get(..span(row_w, sw)));
                    let (Some(xs), Some(ws)) = (xs, ws) else {
                        return true;
                    };
                    for (g, (o4, cg)) in out4
                        .chunks_exact_mut(4)
                        .zip(groups.chunks_exact(4))
                        .enumerate()
                    {
                        let mut a = [cg[0].bias, cg[1].bias, cg[2].bias, cg[3].bias];
                        for r in 0..rows {
                            // SAFETY: row `r` of group `g` reads 4 bytes at
                            // `4 * g + r * row + t * s` for `t < taps`, the last ending at
                            // most `span` bytes in (`4 * g + 4 <= nb`).
                            unsafe {
                                row4(
                                    &mut a,
                                    xs.as_ptr().add(4 * g + r * row_x),
                                    sx,
                                    ws.as_ptr().add(4 * g + r * row_w),
                                    sw,
                                    taps,
                                    neg_zp2,
                                );
                            }
                        }
                        for ((o, &a), ch) in o4.iter_mut().zip(&a).zip(cg) {
                            *o = requantized::<FULL>(ch, a, lo, hi);
                        }
                    }
                    for (j, (o, chan)) in out_tail.iter_mut().zip(tail).enumerate() {
                        let ch = cb + groups.len() + j;
                        let mut a = chan.bias;
                        let mut iy = iy0;
                        for ky in ky0..ky1 {
                            let mut ix = ix0;
                            for kx in kx0..kx1 {
                                let x = i32::from(img[(iy * in_w + ix) * c + ch]) - zp;
                                let w = i32::from(l.filter[(ky * l.kw + kx) * c + ch]);
                                a = a.wrapping_add(x * w);
                                ix += dw;
                            }
                            iy += dh;
                        }
                        *o = requantized::<FULL>(chan, a, lo, hi);
                    }
                }
            }
        }
    }
    true
}
