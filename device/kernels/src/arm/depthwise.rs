//! Depthwise convolution with depth multiplier 1: four channels per pass, one word of
//! input and one of weights per tap, `SXTB16` + `SSUB16` (zero point) + `SMLABB`/`SMLATT`
//! into four register accumulators.

use crate::matvec::{Chans, BLOCK};
use crate::{Axis, ConvParams, Requant, Shape};
use core::arch::asm;

/// Adds `(x[i] - zp) * w[i]` for the four int8 lanes of `x` and `w` to `a[i]`.
#[inline(always)]
fn tap4(a: &mut [i32; 4], x: u32, w: u32, zp2: u32) {
    // SAFETY: register-only arithmetic (no memory access, no flags written: SXTB16,
    // SSUB16 only set the GE bits, which nothing reads); `zp2` holds the zero point in
    // both halfwords, and |x - zp| <= 255 fits each 16-bit lane exactly.
    unsafe {
        asm!(
            "sxtb16 {t}, {x}",
            "sxtb16 {x}, {x}, ror #8",
            "ssub16 {t}, {t}, {zp2}",
            "ssub16 {x}, {x}, {zp2}",
            "sxtb16 {u}, {w}",
            "sxtb16 {w}, {w}, ror #8",
            "smlabb {a0}, {t}, {u}, {a0}",
            "smlatt {a2}, {t}, {u}, {a2}",
            "smlabb {a1}, {x}, {w}, {a1}",
            "smlatt {a3}, {x}, {w}, {a3}",
            x = inout(reg) x => _,
            w = inout(reg) w => _,
            zp2 = in(reg) zp2,
            a0 = inout(reg) a[0],
            a1 = inout(reg) a[1],
            a2 = inout(reg) a[2],
            a3 = inout(reg) a[3],
            t = out(reg) _,
            u = out(reg) _,
            options(pure, nomem, nostack),
        );
    }
}

/// A little-endian word of four int8 lanes (an unaligned LDR on ARMv7-M).
#[inline(always)]
fn word(b: &[i8]) -> u32 {
    match b {
        [a, b, c, d, ..] => u32::from_le_bytes([*a as u8, *b as u8, *c as u8, *d as u8]),
        _ => 0,
    }
}

/// [`crate::depthwise_conv2d`] for `depth_multiplier == 1`, after validation.
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
) {
    let c = output_shape.c;
    if c == 0 {
        return;
    }
    let in_w = input_shape.w;
    let in_img = input_shape.h * in_w * c;
    let kw = filter_shape.w;
    let (dh, dw) = (p.dilation_h, p.dilation_w);
    let zp = p.input_zero_point;
    let zp2 = (zp as u32 & 0xffff) | ((zp as u32) << 16);
    let (ozp, lo, hi) = (
        p.output_zero_point,
        i32::from(p.clamp.min),
        i32::from(p.clamp.max),
    );
    // Bias and requantization prepared once per block of channels (BLOCK is a multiple
    // of 4, so blocks split into whole 4-channel groups plus a tail in the last block).
    for cb in (0..c).step_by(BLOCK) {
        let nb = BLOCK.min(c - cb);
        let chans = table.prepare(bias, rq, cb, nb);
        let (groups, tail) = chans.split_at(nb / 4 * 4);
        let mut out_px = output.chunks_exact_mut(c);
        for img in input.chunks_exact(in_img).take(input_shape.n) {
            for oy in 0..output_shape.h {
                let (ky0, ky1, iy0) = ay.window(oy);
                for ox in 0..output_shape.w {
                    let (kx0, kx1, ix0) = ax.window(ox);
                    let Some(out) = out_px.next() else {
                        return;
                    };
                    let out = &mut out[cb..][..nb];
                    let (out4, out_tail) = out.split_at_mut(groups.len());
                    for (g, (o4, cg)) in out4
                        .chunks_exact_mut(4)
                        .zip(groups.chunks_exact(4))
                        .enumerate()
                    {
                        let c0 = cb + 4 * g;
                        let mut a = [cg[0].bias, cg[1].bias, cg[2].bias, cg[3].bias];
                        let mut iy = iy0;
                        for ky in ky0..ky1 {
                            let row = iy * in_w;
                            let mut ix = ix0;
                            for kx in kx0..kx1 {
                                let x = word(&img[(row + ix) * c + c0..]);
                                let w = word(&filter[(ky * kw + kx) * c + c0..]);
                                tap4(&mut a, x, w, zp2);
                                ix += dw;
                            }
                            iy += dh;
                        }
                        for ((o, &a), ch) in o4.iter_mut().zip(&a).zip(cg) {
                            *o = ch.rq.output(a, ozp, lo, hi);
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
                                let w = i32::from(filter[(ky * kw + kx) * c + ch]);
                                a = a.wrapping_add(x * w);
                                ix += dw;
                            }
                            iy += dh;
                        }
                        *o = chan.rq.output(a, ozp, lo, hi);
                    }
                }
            }
        }
    }
}
