//! `SMLAD` version of [`crate::matvec`]: one column against two output channels per
//! pass (fully connected, and the last pixel of a convolution), or two columns (two
//! output pixels) against one channel, so that each weight word is loaded and widened
//! once for two outputs. Requantization is [`crate::quant::RoundingRq`]: one `SMLAL` pair and a
//! shift per output instead of TFLite's two rounding steps.

pub(crate) use super::table::{Chan, Chans};
use crate::matvec::{OutQ, PAIR_OFFSET};
use core::arch::asm;

/// Reorders each full group of four column entries to `x0, x2, x1, x3`: `SXTB16` of a
/// weight word yields lanes `(w0, w2)` and, rotated by 8, `(w1, w3)`, so the column is
/// stored to match and the weights need no repacking. A tail of fewer than four
/// entries stays in natural order.
#[inline(always)]
pub(crate) fn pack(col: &mut [i16]) {
    for g in col.chunks_exact_mut(4) {
        g.swap(1, 2);
    }
}

/// `x - zp` widened straight into packed order: `SXTAB16` of an input word gives lanes
/// `(x0, x2)` and, rotated by 8, `(x1, x3)`, each added to `-zp`; `STRD` stores the group (the column must be 4-byte aligned, as the kernels' buffers
/// are; an unaligned one takes the portable loop).
#[inline(always)]
pub(crate) fn widen_pack(col: &mut [i16], x: &[i8], zp: i32) {
    let n = col.len().min(x.len());
    let groups = if col.as_ptr() as usize % 4 == 0 {
        n / 4
    } else {
        0
    };
    if groups > 0 {
        let neg_zp2 = super::neg_zero_point2(zp);
        // SAFETY: reads `4 * groups <= x.len()` bytes (ARMv7-M LDR tolerates an
        // unaligned input) and writes `4 * groups <= col.len()` entries of the 4-byte
        // aligned column (checked), as STRD requires; |x - zp| <= 255 fits each 16-bit
        // lane exactly. Writes only the column, register operands and the flags.
        unsafe {
            asm!(
                "2:",
                "ldr {w}, [{src}], #4",
                "sxtab16 {e}, {nzp}, {w}",
                "sxtab16 {o}, {nzp}, {w}, ror #8",
                "strd {e}, {o}, [{dst}], #8",
                "subs {n}, {n}, #1",
                "bne 2b",
                src = inout(reg) x.as_ptr() => _,
                dst = inout(reg) col.as_mut_ptr() => _,
                n = inout(reg) groups => _,
                nzp = in(reg) neg_zp2,
                w = out(reg) _,
                e = out(reg) _,
                o = out(reg) _,
                options(nostack),
            );
        }
    }
    let done = groups * 4;
    crate::matvec::widen(&mut col[done..n], &x[done..n], zp);
}

/// One group of four column entries against two filter rows.
macro_rules! group2 {
    () => {
        concat!(
            "ldrd {xa}, {xb}, [{x}], #8\n",
            "ldr {w}, [{p0}], #4\n",
            "sxtb16 {t}, {w}\n",
            "smlad {a0}, {t}, {xa}, {a0}\n",
            "sxtb16 {t}, {w}, ror #8\n",
            "smlad {a0}, {t}, {xb}, {a0}\n",
            "ldr {w}, [{p1}], #4\n",
            "sxtb16 {t}, {w}\n",
            "smlad {a1}, {t}, {xa}, {a1}\n",
            "sxtb16 {t}, {w}, ror #8\n",
            "smlad {a1}, {t}, {xb}, {a1}\n",
        )
    };
}

/// Adds `groups` groups of four packed column entries times two filter rows to `a0`/`a1`.
///
/// # Safety
/// `x` must be 4-byte aligned and valid for reading `4 * groups` i16; `p0` and `p1`
/// valid for reading `4 * groups` bytes each (any alignment).
#[inline(always)]
pub(super) unsafe fn dot2(
    x: *const i16,
    p0: *const i8,
    p1: *const i8,
    groups: usize,
    a0: &mut i32,
    a1: &mut i32,
) {
    let (mut x, mut p0, mut p1) = (x, p0, p1);
    let pairs = groups / 2;
    if pairs > 0 {
        // SAFETY: the caller guarantees `4 * groups` readable entries behind each
        // pointer; this loop reads `8 * pairs <= 4 * groups` of them, with LDRD only on
        // the 4-byte aligned column (ARMv7-M LDR tolerates unaligned weight rows). The
        // asm writes only its own register operands and the flags (SUBS).
        unsafe {
            asm!(
                "2:",
                group2!(),
                group2!(),
                "subs {n}, {n}, #1",
                "bne 2b",
                x = inout(reg) x,
                p0 = inout(reg) p0,
                p1 = inout(reg) p1,
                n = inout(reg) pairs => _,
                a0 = inout(reg) *a0,
                a1 = inout(reg) *a1,
                xa = out(reg) _,
                xb = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly),
            );
        }
    }
    if groups % 2 == 1 {
        // SAFETY: as above; the pointers now address the last group, still in bounds.
        unsafe {
            asm!(
                group2!(),
                x = inout(reg) x => _,
                p0 = inout(reg) p0 => _,
                p1 = inout(reg) p1 => _,
                a0 = inout(reg) *a0,
                a1 = inout(reg) *a1,
                xa = out(reg) _,
                xb = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                options(nostack, readonly, preserves_flags),
            );
        }
    }
}

/// Adds `groups` groups of four packed column entries times one filter row to `a0`.
///
/// # Safety
/// As [`dot2`], for one row.
#[inline(always)]
pub(super) unsafe fn dot1(x: *const i16, p0: *const i8, groups: usize, a0: &mut i32) {
    if groups == 0 {
        return;
    }
    // SAFETY: reads exactly `4 * groups` entries behind `x` (4-byte aligned, LDRD) and
    // `p0`, both guaranteed readable by the caller; writes only register operands and
    // the flags.
    unsafe {
        asm!(
            "2:",
            "ldrd {xa}, {xb}, [{x}], #8",
            "ldr {w}, [{p0}], #4",
            "sxtb16 {t}, {w}",
            "smlad {a0}, {t}, {xa}, {a0}",
            "sxtb16 {t}, {w}, ror #8",
            "smlad {a0}, {t}, {xb}, {a0}",
            "subs {n}, {n}, #1",
            "bne 2b",
            x = inout(reg) x => _,
            p0 = inout(reg) p0 => _,
            n = inout(reg) groups => _,
            a0 = inout(reg) *a0,
            xa = out(reg) _,
            xb = out(reg) _,
            w = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly),
        );
    }
}

/// Adds the first `k` entries of two packed columns times one filter row to `a`/`b`:
/// whole groups of four with `SMLAD` (each weight word loaded and widened once for both
/// columns), then the `k % 4` tail entries (natural order) with `SMLABB`, in one asm
/// block so the tail costs no bounds checks or loop setup of its own.
///
/// # Safety
/// `xa` and `xb` must be 4-byte aligned and valid for reading `k` i16 each; `w` valid
/// for reading `k` bytes (any alignment).
#[inline(always)]
unsafe fn dot_cols(
    xa: *const i16,
    xb: *const i16,
    w: *const i8,
    k: usize,
    a: &mut i32,
    b: &mut i32,
) -> *const i8 {
    let next: *const i8;
    // SAFETY: reads exactly `k` entries behind each pointer (LDRD on the 4-byte aligned
    // columns for whole groups; ARMv7-M LDR tolerates an unaligned weight row), all
    // guaranteed readable by the caller; writes only register operands and the flags.
    unsafe {
        asm!(
            // n = k - 4: negative when there is no whole group.
            "subs {n}, {n}, #4",
            "bmi 3f",
            "2:",
            "ldr {w1}, [{w}], #4",
            "sxtb16 {w0}, {w1}",
            "sxtb16 {w1}, {w1}, ror #8",
            "ldrd {x0}, {x1}, [{xa}], #8",
            "smlad {a}, {w0}, {x0}, {a}",
            "smlad {a}, {w1}, {x1}, {a}",
            "ldrd {x0}, {x1}, [{xb}], #8",
            "smlad {b}, {w0}, {x0}, {b}",
            "smlad {b}, {w1}, {x1}, {b}",
            "subs {n}, {n}, #4",
            "bpl 2b",
            // n = k % 4 after the groups.
            "3:",
            "adds {n}, {n}, #4",
            "beq 5f",
            "4:",
            "ldrsb {w0}, [{w}], #1",
            "ldrsh {x0}, [{xa}], #2",
            "ldrsh {x1}, [{xb}], #2",
            "smlabb {a}, {w0}, {x0}, {a}",
            "smlabb {b}, {w0}, {x1}, {b}",
            "subs {n}, {n}, #1",
            "bne 4b",
            "5:",
            xa = inout(reg) xa => _,
            xb = inout(reg) xb => _,
            w = inout(reg) w => next,
            n = inout(reg) k => _,
            a = inout(reg) *a,
            b = inout(reg) *b,
            w0 = out(reg) _,
            w1 = out(reg) _,
            x0 = out(reg) _,
            x1 = out(reg) _,
            options(nostack, readonly),
        );
    }
    next
}

/// One group of four column entries of pixels a (`[xa]`) and b (`[xa, #256]`) against
/// two filter rows (`[w, k]` and `[w], #4`), into `a0`, `b0`, `a1`, `b1`.
macro_rules! group_2x2 {
    () => {
        concat!(
            "ldr {v0}, [{w}, {k}]\n",
            "ldr {u0}, [{w}], #4\n",
            "sxtb16 {v1}, {v0}, ror #8\n",
            "sxtb16 {v0}, {v0}\n",
            "sxtb16 {u1}, {u0}, ror #8\n",
            "sxtb16 {u0}, {u0}\n",
            "ldr {x}, [{xa}, #256]\n",
            "smlad {b0}, {u0}, {x}, {b0}\n",
            "smlad {b1}, {v0}, {x}, {b1}\n",
            "ldr {x}, [{xa}, #260]\n",
            "smlad {b0}, {u1}, {x}, {b0}\n",
            "smlad {b1}, {v1}, {x}, {b1}\n",
            "ldr {x}, [{xa}, #4]\n",
            "smlad {a0}, {u1}, {x}, {a0}\n",
            "smlad {a1}, {v1}, {x}, {a1}\n",
            "ldr {x}, [{xa}], #8\n",
            "smlad {a0}, {u0}, {x}, {a0}\n",
            "smlad {a1}, {v0}, {x}, {a1}\n",
        )
    };
}

/// The whole two-channel x two-pixel MAC loop over a column of `k` entries, entered with
/// `n = k - 4` just computed (its flags): `group_2x2!` per group of four, then the
/// `k % 4` tail one entry at a time with `SMLABB` (natural order, channel 1's row `k`
/// bytes after channel 0's, pixel 1's column at `+256`). Ends at label `5:` with `w` one
/// row on.
macro_rules! loop_2x2 {
    () => {
        concat!(
            "bmi 3f\n",
            "2:\n",
            group_2x2!(),
            "subs {n}, {n}, #4\n",
            "bpl 2b\n",
            // n = k % 4 after the groups.
            "3:\n",
            "adds {n}, {n}, #4\n",
            "beq 5f\n",
            "4:\n",
            "ldrsb {v0}, [{w}, {k}]\n",
            "ldrsb {u0}, [{w}], #1\n",
            "ldrsh {x}, [{xa}, #256]\n",
            "smlabb {b0}, {u0}, {x}, {b0}\n",
            "smlabb {b1}, {v0}, {x}, {b1}\n",
            "ldrsh {x}, [{xa}], #2\n",
            "smlabb {a0}, {u0}, {x}, {a0}\n",
            "smlabb {a1}, {v0}, {x}, {a1}\n",
            "subs {n}, {n}, #1\n",
            "bne 4b\n",
            "5:\n",
        )
    };
}

/// Adds the first `k` entries of two packed columns (`x` and `x + PAIR_OFFSET`, pixels
/// `a` and `b`) times two filter rows (`w` and `w + k`, channels 0 and 1) to the four
/// accumulators `acc = [a0, b0, a1, b1]`: per group of four entries, both weight words
/// are loaded and widened once for two pixels and every column word once for two
/// channels (20 instructions for 16 MACs, against 22 for two [`dot_cols`] passes, and
/// half the passes). The `k % 4` tail entries (natural order) take `SMLABB`.
///
/// # Safety
/// `x` must be 4-byte aligned and valid for reading `k` i16 at `x` and at
/// `x + PAIR_OFFSET`; `w` valid for reading `2 * k` bytes (any alignment).
#[inline(always)]
unsafe fn dot_2x2(x: *const i16, w: *const i8, k: usize, acc: &mut [i32; 4]) {
    const _: () = assert!(
        PAIR_OFFSET * 2 == 256,
        "the asm addresses column b at +256 bytes"
    );
    let [mut a0, mut b0, mut a1, mut b1] = *acc;
    // SAFETY: reads exactly `k` entries of each column and `k` bytes of each row, all
    // guaranteed readable by the caller (ARMv7-M LDR tolerates unaligned weight rows);
    // writes only register operands and the flags.
    unsafe {
        asm!(
            // n = k - 4: negative when there is no whole group.
            "subs {n}, {n}, #4",
            loop_2x2!(),
            xa = inout(reg) x => _,
            w = inout(reg) w => _,
            k = in(reg) k,
            n = inout(reg) k => _,
            a0 = inout(reg) a0,
            b0 = inout(reg) b0,
            a1 = inout(reg) a1,
            b1 = inout(reg) b1,
            u0 = out(reg) _,
            u1 = out(reg) _,
            v0 = out(reg) _,
            v1 = out(reg) _,
            x = out(reg) _,
            options(nostack, readonly),
        );
    }
    *acc = [a0, b0, a1, b1];
}

#[inline(always)]
fn output(c: &Chan, acc: i32, q: OutQ) -> i8 {
    c.rq.output(acc, q.lo, q.hi)
}

/// `out[j] = requant_j(bias_j + col . filter_row_j)` for the prepared channels; `col`
/// must have been through [`pack`] and start 4-byte aligned (a [`crate::matvec::Cols`]
/// buffer at an offset that is a multiple of four entries).
// Out of line at "s", where the paired conv loop calls it from two places (-544 B of
// tiny_cnn's code, 6 fewer instructions); at "z" it has one caller, and the call would
// cost 1,878 instructions per inference.
#[cfg_attr(all(edgekd_small_kernels, not(edgekd_min_size)), inline(never))]
#[cfg_attr(not(all(edgekd_small_kernels, not(edgekd_min_size))), inline(always))]
pub(crate) fn matvec(col: &[i16], filter: &[i8], chans: &[Chan], q: OutQ, out: &mut [i8]) {
    let k = col.len();
    let n = out.len().min(chans.len());
    if k == 0 || col.as_ptr() as usize % 4 != 0 || filter.len() < n * k {
        return matvec_scalar(col, filter, chans, q, out);
    }
    let groups = k / 4;
    let main = groups * 4;
    let x = col.as_ptr();
    let (mut w, mut c, mut o) = (filter.as_ptr(), chans.as_ptr(), out.as_mut_ptr());
    for _ in 0..n / 2 {
        // SAFETY: each pass reads two filter rows of `k` bytes (`w`, `w + k`), two
        // prepared channels and writes two outputs, then advances by as much; there are
        // `n / 2` passes and at least `n` rows (checked), channels and outputs behind the
        // starting pointers. `x` is 4-byte aligned (checked) with `k >= main` entries, as
        // `dot2` requires.
        unsafe {
            let (c0, c1) = (&*c, &*c.add(1));
            let w1 = w.add(k);
            let (mut a0, mut a1) = (c0.bias, c1.bias);
            dot2(x, w, w1, groups, &mut a0, &mut a1);
            for i in main..k {
                // The tail (fewer than four entries) is in natural order.
                let xv = i32::from(*x.add(i));
                a0 = a0.wrapping_add(xv * i32::from(*w.add(i)));
                a1 = a1.wrapping_add(xv * i32::from(*w1.add(i)));
            }
            *o = output(c0, a0, q);
            *o.add(1) = output(c1, a1, q);
            w = w.add(2 * k);
            c = c.add(2);
            o = o.add(2);
        }
    }
    if n % 2 == 1 {
        // SAFETY: the last row, channel and output, in bounds as above.
        unsafe {
            let c0 = &*c;
            let mut a0 = c0.bias;
            dot1(x, w, groups, &mut a0);
            for i in main..k {
                a0 = a0.wrapping_add(i32::from(*x.add(i)) * i32::from(*w.add(i)));
            }
            *o = output(c0, a0, q);
        }
    }
}

/// `bias + col . row` with `col` in packed order (entries 1 and 2 of each full group of
/// four swapped).
#[cold]
pub(super) fn packed_dot(col: &[i16], row: &[i8], bias: i32) -> i32 {
    let main = col.len() / 4 * 4;
    let mut acc = bias;
    for (i, &w) in row.iter().enumerate() {
        let at = match i % 4 {
            1 if i < main => i + 1,
            2 if i < main => i - 1,
            _ => i,
        };
        let x = col.get(at).copied().unwrap_or(0);
        acc = acc.wrapping_add(i32::from(x) * i32::from(w));
    }
    acc
}

/// [`matvec`] for two columns (two output pixels) at once: `out_a` from `col_a`,
/// `out_b` from `col_b`, both packed, of equal length and 4-byte aligned. `wide`: the
/// channel pairs' rows of the widened filter (`conv2d_wide_weights`, `8 * groups`
/// entries a pair, from this block's first channel), for a caller that checked both
/// columns have room for `k` rounded up to whole groups of four; read by whole-range
/// layers.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn matvec2(
    col_a: &[i16],
    col_b: &[i16],
    filter: &[i8],
    wide: Option<&[i16]>,
    chans: &[Chan],
    q: OutQ,
    out_a: &mut [i8],
    out_b: &mut [i8],
) {
    let k = col_a.len();
    let n = out_a.len().min(out_b.len()).min(chans.len());
    if k == 0
        || col_b.len() != k
        || col_a.as_ptr() as usize % 4 != 0
        || col_b.as_ptr() != col_a.as_ptr().wrapping_add(PAIR_OFFSET)
        || filter.len() < n * k
    {
        matvec_scalar(col_a, filter, chans, q, out_a);
        return matvec_scalar(col_b, filter, chans, q, out_b);
    }
    let (xa, xb) = (col_a.as_ptr(), col_b.as_ptr());
    let (chans, out_a, out_b) = (&chans[..n], &mut out_a[..n], &mut out_b[..n]);
    // Layers whose clamp is the whole int8 range (no activation, or ReLU with output
    // zero point -128, the common case) saturate with one `SSAT` instead of two compares.
    if q.lo <= -128 && q.hi >= 127 {
        let pairs = n / 2;
        let groups = k.div_ceil(4);
        // Size-optimized builds do without the widened filter (no `pair_rows_wide`).
        let wide = wide
            .filter(|w| !cfg!(edgekd_small_kernels) && w.len() >= pairs * 8 * groups && pairs > 0);
        if let Some(w) = wide {
            #[cfg(edgekd_small_kernels)]
            let _ = w;
            // SAFETY: `xa` is 4-byte aligned (checked above) and both columns have room
            // for `4 * groups` entries (the caller's guarantee); `w` holds the `pairs`
            // pairs' `8 * groups` entries (checked), 4-byte aligned as
            // `ConvLayer::with_wide_weights` checked of the table and every block starts
            // a multiple of 16 channels in; `chans`, `out_a` and `out_b` hold
            // `n >= 2 * pairs` entries.
            #[cfg(not(edgekd_small_kernels))]
            unsafe {
                pair_rows_wide(
                    xa,
                    groups,
                    w.as_ptr(),
                    chans.as_ptr(),
                    out_a.as_mut_ptr(),
                    out_b.as_mut_ptr(),
                    pairs,
                );
            }
        } else if pairs > 0 {
            // SAFETY: `xa` is 4-byte aligned with `k` entries at `xa` and `xa +
            // PAIR_OFFSET` (checked above); `filter` holds `n * k` bytes (checked);
            // `chans`, `out_a` and `out_b` hold `n >= 2 * pairs` entries.
            unsafe {
                pair_rows_i8(
                    xa,
                    k,
                    filter.as_ptr(),
                    chans.as_ptr(),
                    out_a.as_mut_ptr(),
                    out_b.as_mut_ptr(),
                    pairs,
                );
            }
        }
        if n % 2 == 1 {
            let j = n - 1;
            let (c, w) = (&chans[j], filter[j * k..].as_ptr());
            let (mut a, mut b) = (c.bias, c.bias);
            // SAFETY: `w` is the last row, of `k` readable bytes; the columns as above.
            unsafe { dot_cols(xa, xb, w, k, &mut a, &mut b) };
            out_a[j] = crate::arm::requant_rounding_i8(a, &c.rq);
            out_b[j] = crate::arm::requant_rounding_i8(b, &c.rq);
        }
    } else {
        pair_rows(xa, xb, k, filter.as_ptr(), chans, q, out_a, out_b);
    }
}

/// Requantizes accumulator `$acc` with the channel parameters in `u0` (multiplier),
/// `v0`/`v1` (nudge) and `n` (shift) into `$acc` as int8 (`SSAT`): the sign term
/// `-2^31 * [acc < 0]` is added to the nudge with `ADDS`/`ADC` of the sign mask.
macro_rules! requant_acc {
    ($acc:literal) => {
        concat!(
            "asr {xa}, {",
            $acc,
            "}, #31\n",
            "adds {u1}, {v0}, {xa}, lsl #31\n",
            "adc {xa}, {v1}, {xa}\n",
            "smlal {u1}, {xa}, {",
            $acc,
            "}, {u0}\n",
            "asr {",
            $acc,
            "}, {xa}, {n}\n",
            "ssat {",
            $acc,
            "}, #8, {",
            $acc,
            "}\n",
        )
    };
}

/// The end of a channel-pair pass of [`pair_rows_i8`] and [`pair_rows_wide`]: the
/// four accumulators requantized from the pass's two [`Chan`]s (`[sp]`; two `LDRD`s
/// each), stored to both pixels (`out_a` at `[sp, #4]`, `out_b - out_a` at `[sp, #8]`)
/// as one halfword per pixel, the pointers moved on (one `STRD`), and back to label
/// `1:` until the chan pointer reaches the channels' end (`[sp, #12]`); it stays in
/// `{x}` for the next pass's biases. 39 instructions.
macro_rules! pair_pass_end {
    () => {
        concat!(
            "ldr {x}, [sp]\n",
            "ldrd {u0}, {v0}, [{x}, #4]\n",
            "ldrd {v1}, {n}, [{x}, #12]\n",
            requant_acc!("a0"),
            requant_acc!("b0"),
            "ldrd {u0}, {v0}, [{x}, #24]\n",
            "ldrd {v1}, {n}, [{x}, #32]\n",
            requant_acc!("a1"),
            requant_acc!("b1"),
            "add {x}, {x}, #40\n",
            "ldrd {u0}, {n}, [sp, #4]\n",
            // Both channels' bytes of a pixel in one halfword (`SSAT` left them
            // sign-extended; only the low byte of each counts).
            "bfi {b0}, {b1}, #8, #8\n",
            "strh {b0}, [{u0}, {n}]\n",
            "bfi {a0}, {a1}, #8, #8\n",
            "strh {a0}, [{u0}], #2\n",
            "strd {x}, {u0}, [sp]\n",
            "ldr {n}, [sp, #12]\n",
            "cmp {x}, {n}\n",
            "bne 1b\n",
        )
    };
}

/// The channel-pair loop of [`matvec2`] for layers clamped to the whole int8 range,
/// in one asm block: per pass, two channels' biases, the four accumulators of two
/// pixels ([`dot_2x2`]'s loop), their single-step requantization from the prepared
/// [`Chan`]s and the four stores; the loop state waits on the stack (the MAC loop
/// takes all 13 registers).
///
/// # Safety
/// `xa` must be 4-byte aligned with `k` readable entries at `xa` and at
/// `xa + PAIR_OFFSET`; `w` the first of `2 * pairs` rows of `k` readable bytes;
/// `chans` valid for reading and `out_a`, `out_b` for writing `2 * pairs` entries;
/// `pairs >= 1`. Every `Chan`'s shift is at most 22 (as [`crate::quant::RoundingRq::new`] makes them).
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(crate) unsafe fn pair_rows_i8(
    xa: *const i16,
    k: usize,
    w: *const i8,
    chans: *const Chan,
    out_a: *mut i8,
    out_b: *mut i8,
    pairs: usize,
) {
    // SAFETY: per pass, reads two `Chan`s (20 bytes each, 4-byte aligned for LDRD),
    // `k` entries of both columns and `k` bytes of two rows, and writes two outputs of
    // each pixel, all within what the caller guarantees; `w` moves two rows per pass.
    // ASR by a register of at most 22 behaves like Rust's `>>`. The 20 bytes of stack
    // it takes are given back before the block ends; otherwise only register operands
    // and the flags change.
    unsafe {
        asm!(
            // [sp]: chans, [sp, #4]: out_a, [sp, #8]: out_b - out_a, [sp, #12]: chans
            // end, [sp, #16]: column start.
            "sub sp, sp, #20",
            "str {a0}, [sp]",
            "str {a1}, [sp, #4]",
            "sub {b0}, {b0}, {a1}",
            "str {b0}, [sp, #8]",
            // The channels' end: `chans + 40 * pairs`.
            "add {b1}, {b1}, {b1}, lsl #2",
            "add {b1}, {a0}, {b1}, lsl #3",
            "str {b1}, [sp, #12]",
            "str {xa}, [sp, #16]",
            "mov {x}, {a0}",
            "1:",
            "ldr {a0}, [{x}]",
            "ldr {a1}, [{x}, #20]",
            "mov {b0}, {a0}",
            "mov {b1}, {a1}",
            "ldr {xa}, [sp, #16]",
            // n = k - 4: negative when there is no whole group.
            "subs {n}, {k}, #4",
            loop_2x2!(),
            // The next pass starts two rows on (this one walked one row).
            "add {w}, {w}, {k}",
            pair_pass_end!(),
            "add sp, sp, #20",
            xa = inout(reg) xa => _,
            w = inout(reg) w => _,
            k = in(reg) k,
            a0 = inout(reg) chans => _,
            a1 = inout(reg) out_a => _,
            b0 = inout(reg) out_b => _,
            b1 = inout(reg) pairs => _,
            n = out(reg) _,
            u0 = out(reg) _,
            u1 = out(reg) _,
            v0 = out(reg) _,
            v1 = out(reg) _,
            x = out(reg) _,
        );
    }
}

/// One group of four column entries of pixels a (`[xa, #$a]`) and b (`[xa, #$b]`,
/// `PAIR_OFFSET` entries on) against the channel pair's two rows of the widened filter
/// (`[w]`, eight entries in `conv2d_wide_weights`' order), into `a0`, `b0`, `a1`, `b1`:
/// four `LDRD`s, eight `SMLAD`s, 48 bytes of code (all 32-bit encodings:
/// [`wide_chunk`] jumps into a run of them by address).
#[cfg(not(edgekd_small_kernels))]
macro_rules! wide_group_2x2 {
    ($a:literal, $b:literal) => {
        concat!(
            "ldrd {v0}, {v1}, [{xa}, #",
            $b,
            "]\n",
            "ldrd {u0}, {u1}, [{xa}, #",
            $a,
            "]\n",
            "ldrd {x}, {t}, [{w}], #8\n",
            "smlad {a0}, {x}, {u0}, {a0}\n",
            "smlad {a0}, {t}, {u1}, {a0}\n",
            "smlad {b0}, {x}, {v0}, {b0}\n",
            "smlad {b0}, {t}, {v1}, {b0}\n",
            "ldrd {x}, {t}, [{w}], #8\n",
            "smlad {a1}, {x}, {u0}, {a1}\n",
            "smlad {a1}, {t}, {u1}, {a1}\n",
            "smlad {b1}, {x}, {v0}, {b1}\n",
            "smlad {b1}, {t}, {v1}, {b1}\n",
        )
    };
}

/// A pass's groups as chunks of eight unrolled [`wide_group_2x2`]s that address the
/// column from their chunk's end (`{xa}`), with no count per group: the first chunk
/// takes the `r = (groups - 1) % 8 + 1` groups left over, entered by address
/// (`[sp, #24]`, from [`wide_chunk_entry`]) `8 - r` groups in; each further chunk
/// (`{n}` of them) moves `{xa}` 8 groups on and starts again at label 2. 12
/// instructions per group and 2 per pass (the two jumps) where a counted loop spent
/// 13.5 per group. Uses labels 2, 3 and 4.
#[cfg(not(edgekd_small_kernels))]
macro_rules! wide_chunk {
    () => {
        concat!(
            "ldr pc, [sp, #24]\n",
            "2:\n",
            wide_group_2x2!("-64", "192"),
            wide_group_2x2!("-56", "200"),
            wide_group_2x2!("-48", "208"),
            wide_group_2x2!("-40", "216"),
            wide_group_2x2!("-32", "224"),
            wide_group_2x2!("-24", "232"),
            wide_group_2x2!("-16", "240"),
            wide_group_2x2!("-8", "248"),
            // To label 4 when the pass has one chunk, else to label 3.
            "ldr pc, [sp, #28]\n",
            "3:\n",
            "subs {n}, {n}, #1\n",
            "blt 4f\n",
            "add {xa}, {xa}, #64\n",
            "b 2b\n",
            "4:\n",
        )
    };
}

/// [`wide_chunk`]'s frame entries from the column start in `{xa}` and the group count
/// (at least 1) in `{n}`: the first chunk's column end `xa + 8 * r` (`[sp, #16]`), the
/// further chunks `(groups - 1) / 8` (`[sp, #20]`), the entry address, `8 - r`
/// groups of 48 bytes after label 2, with the Thumb bit set (`[sp, #24]`), and where
/// a chunk goes on: label 4 (the pass end) if there is no further chunk, else label 3
/// (`[sp, #28]`). Takes `{u0}` and `{v0}`; leaves `{xa}` and `{n}` as they were.
#[cfg(not(edgekd_small_kernels))]
macro_rules! wide_chunk_entry {
    () => {
        concat!(
            "sub {u0}, {n}, #1\n",
            "lsr {v0}, {u0}, #3\n",
            "str {v0}, [sp, #20]\n",
            // r = (groups - 1) % 8 + 1
            "and {u0}, {u0}, #7\n",
            "add {u0}, {u0}, #1\n",
            "add {v0}, {xa}, {u0}, lsl #3\n",
            "str {v0}, [sp, #16]\n",
            // entry = label 2 + 48 * (8 - r) + 1 (Thumb) = label 2 + 385 - 48 * r.
            // `ADR` counts from the word-aligned PC and the assembler fixes its offset
            // as if the function's section started on a word: `.p2align` makes it so
            // (it raises the section's alignment; the padding, if any, is one `NOP`).
            "add {u0}, {u0}, {u0}, lsl #1\n",
            ".p2align 2\n",
            "adr {v0}, 2f\n",
            "add {v0}, {v0}, #385\n",
            "sub {v0}, {v0}, {u0}, lsl #4\n",
            "str {v0}, [sp, #24]\n",
            // After the chunk: straight to label 4 when there is no further chunk.
            "ldr {u0}, [sp, #20]\n",
            "adr {v0}, 4f + 1\n",
            "cmp {u0}, #0\n",
            "it ne\n",
            "adrne {v0}, 3f + 1\n",
            "str {v0}, [sp, #28]\n",
        )
    };
}

/// The channel-pair passes of [`pair_rows_wide`] and [`pixel_pairs_wide`] (label 1),
/// from the chan pointer in `{x}` and `pair_rows_wide`'s stack frame: per pass the two
/// channels' biases, [`wide_chunk`] over the column's groups and [`pair_pass_end`].
#[cfg(not(edgekd_small_kernels))]
macro_rules! wide_passes {
    () => {
        concat!(
            "1:\n",
            "ldr {a0}, [{x}]\n",
            "ldr {a1}, [{x}, #20]\n",
            "mov {b0}, {a0}\n",
            "mov {b1}, {a1}\n",
            "ldrd {xa}, {n}, [sp, #16]\n",
            wide_chunk!(),
            pair_pass_end!(),
        )
    };
}

/// [`pair_rows_i8`] from the filter widened to 16 bits (`conv2d_wide_weights`' layout):
/// the MAC loop reads each channel pair's rows group by group with no `SXTB16` and no
/// leftover entries (the layout pads each row to `4 * groups` entries with zeros), 14
/// instructions per 16 MACs instead of 20; the requantization and stores are the same.
///
/// # Safety
/// `xa` must be 4-byte aligned with `4 * groups` readable entries at `xa` and at
/// `xa + PAIR_OFFSET` (entries past the layer's `k` meet zero weights); `w` 4-byte
/// aligned with `8 * groups * pairs` readable entries; `chans` valid for reading and
/// `out_a`, `out_b` for writing `2 * pairs` entries; `groups >= 1`, `pairs >= 1`. Every
/// `Chan`'s shift is at most 22 (as [`crate::quant::RoundingRq::new`] makes them).
#[cfg(not(edgekd_small_kernels))]
#[allow(clippy::too_many_arguments)]
#[inline(never)]
pub(crate) unsafe fn pair_rows_wide(
    xa: *const i16,
    groups: usize,
    w: *const i16,
    chans: *const Chan,
    out_a: *mut i8,
    out_b: *mut i8,
    pairs: usize,
) {
    // SAFETY: per pass, reads two `Chan`s (20 bytes each, 4-byte aligned for LDRD),
    // `4 * groups` entries of both columns and of two widened rows (LDRD on 4-byte
    // aligned addresses), and writes two outputs of each pixel, all within what the
    // caller guarantees; `w` moves two rows per pass. ASR by a register of at most 22
    // behaves like Rust's `>>`. The 32 bytes of stack it takes are given back before
    // the block ends; otherwise only register operands and the flags change.
    unsafe {
        asm!(
            // [sp]: chans, [sp, #4]: out_a, [sp, #8]: out_b - out_a, [sp, #12]: chans
            // end, [sp, #16]..[sp, #28]: `wide_chunk_entry`'s.
            "sub sp, sp, #32",
            "str {a0}, [sp]",
            "str {a1}, [sp, #4]",
            "sub {b0}, {b0}, {a1}",
            "str {b0}, [sp, #8]",
            // The channels' end: `chans + 40 * pairs`.
            "add {b1}, {b1}, {b1}, lsl #2",
            "add {b1}, {a0}, {b1}, lsl #3",
            "str {b1}, [sp, #12]",
            wide_chunk_entry!(),
            "mov {x}, {a0}",
            wide_passes!(),
            "add sp, sp, #32",
            xa = inout(reg) xa => _,
            w = inout(reg) w => _,
            n = inout(reg) groups => _,
            a0 = inout(reg) chans => _,
            a1 = inout(reg) out_a => _,
            b0 = inout(reg) out_b => _,
            b1 = inout(reg) pairs => _,
            u0 = out(reg) _,
            u1 = out(reg) _,
            v0 = out(reg) _,
            v1 = out(reg) _,
            x = out(reg) _,
            t = out(reg) _,
        );
    }
}

/// What [`pixel_pairs_wide`] reads of a layer (`repr(C)`: the asm reads the fields at
/// byte offsets 0, 4, 8, 12, 20, 24, 28 and 32).
#[cfg(not(edgekd_small_kernels))]
#[repr(C)]
pub(crate) struct PairLayer {
    /// Bytes of input between neighbouring pixels' receptive fields.
    pub(crate) step: usize,
    /// `-input_zero_point` in both halfwords ([`super::neg_zero_point2`]).
    pub(crate) neg_zp2: u32,
    /// The widened filter (`conv2d_wide_weights`' rows, 4-byte aligned).
    pub(crate) rows: *const i16,
    /// The prepared channels.
    pub(crate) chans: *const Chan,
    /// Output channel pairs (`out_c / 2`, at least 1).
    pub(crate) chan_pairs: usize,
    /// Whole groups of four entries in a receptive field (`k / 4`).
    pub(crate) full_groups: usize,
    /// 1 if the field ends with a partial group (`k % 4 != 0`), else 0.
    pub(crate) partial_group: usize,
    /// The end of the prepared channels (`chans + 2 * chan_pairs`).
    pub(crate) chans_end: *const Chan,
    /// Bytes before its group at which the partial group's word is read: `4 - k % 4`
    /// when a whole group comes first, so that the word ends where the field does (its
    /// entries then shifted down), else 0 (the word reads up to 3 bytes past the field).
    /// See [`PairLayer::field_read`].
    pub(crate) partial_back: usize,
}

#[cfg(not(edgekd_small_kernels))]
impl PairLayer {
    /// [`PairLayer::partial_back`] for a field of `k` entries.
    pub(crate) fn partial_back(k: usize) -> usize {
        if k > 4 && k % 4 != 0 {
            4 - k % 4
        } else {
            0
        }
    }

    /// Bytes of input one field's widening reads from its start: the field itself, or
    /// one whole word for a field shorter than that ([`PairLayer::partial_back`]).
    pub(crate) fn field_read(k: usize) -> usize {
        k.max(4)
    }
}

/// `x - zp` for both columns of a pixel pair (`PairLayer` at `{x}`, pixel a's input
/// at `{u0}`, pixel b's `step` bytes on, columns at `{t}` and `{t}` + 256 bytes, `-zp`
/// in both halves in `{v0}`): the whole groups in packed order (`SXTAB16` of a word
/// gives lanes (0, 2) and, rotated, (1, 3)), 10 instructions per group of both
/// pixels, then a partial last group in natural order (`PKHBT`/`PKHTB` put the lanes
/// back), as `widen_pack` and the table have them: its word read `partial_back` bytes
/// early and shifted down as many bytes (the bytes shifted in meet the table's zero
/// weights), so that it does not read past the field. Uses labels 6, 7 and 8.
#[cfg(not(edgekd_small_kernels))]
macro_rules! widen_pair {
    () => {
        concat!(
            "ldr {a1}, [{x}]\n",
            "ldr {n}, [{x}, #20]\n",
            "cmp {n}, #0\n",
            "beq 7f\n",
            "6:\n",
            "ldr {u1}, [{u0}, {a1}]\n",
            "ldr {v1}, [{u0}], #4\n",
            "sxtab16 {b0}, {v0}, {u1}\n",
            "sxtab16 {u1}, {v0}, {u1}, ror #8\n",
            "strd {b0}, {u1}, [{t}, #256]\n",
            "sxtab16 {b0}, {v0}, {v1}\n",
            "sxtab16 {v1}, {v0}, {v1}, ror #8\n",
            "strd {b0}, {v1}, [{t}], #8\n",
            "subs {n}, {n}, #1\n",
            "bne 6b\n",
            "7:\n",
            "ldr {n}, [{x}, #24]\n",
            "cmp {n}, #0\n",
            "beq 8f\n",
            "ldr {n}, [{x}, #32]\n",
            "sub {u0}, {u0}, {n}\n",
            "lsl {n}, {n}, #3\n",
            "ldr {u1}, [{u0}, {a1}]\n",
            "ldr {v1}, [{u0}]\n",
            "lsr {u1}, {u1}, {n}\n",
            "lsr {v1}, {v1}, {n}\n",
            "sxtab16 {b0}, {v0}, {u1}\n",
            "sxtab16 {u1}, {v0}, {u1}, ror #8\n",
            "pkhbt {b1}, {b0}, {u1}, lsl #16\n",
            "pkhtb {u1}, {u1}, {b0}, asr #16\n",
            "strd {b1}, {u1}, [{t}, #256]\n",
            "sxtab16 {b0}, {v0}, {v1}\n",
            "sxtab16 {v1}, {v0}, {v1}, ror #8\n",
            "pkhbt {b1}, {b0}, {v1}, lsl #16\n",
            "pkhtb {v1}, {v1}, {b0}, asr #16\n",
            "strd {b1}, {v1}, [{t}]\n",
            "8:\n",
        )
    };
}

/// `pairs` pixel pairs of a convolution whose receptive fields are runs of the input
/// spaced `layer.step` bytes apart (one output row of a dense layer): for each pair,
/// both columns widened from the input ([`widen_pair`]: `4 * groups` entries each,
/// entries past the field meeting the table's zero padding) into `col` and
/// `col + PAIR_OFFSET`, then [`pair_rows_wide`]'s channel-pair passes, all in one asm
/// block: about 30 instructions per pair besides the widening and the passes, where a
/// Rust loop around [`pair_rows_wide`] spent about 95.
///
/// # Safety
/// `x` must be valid for reading `(2 * pairs - 1) * layer.step + r` bytes, `r` the
/// bytes one field's widening reads ([`PairLayer::field_read`] of the field's `k`
/// entries, with `layer.partial_back` set for `k`; `4 * groups` with it 0);
/// `col` 8-byte aligned and valid for writing `PAIR_OFFSET + 4 * groups` entries;
/// `layer.rows` 4-byte aligned with `8 * groups * chan_pairs` readable entries;
/// `layer.chans` valid for reading `2 * chan_pairs` channels whose shifts are at most
/// 22; `out` valid for writing `out_c * 2 * pairs` bytes with `out_c = 2 * chan_pairs`;
/// `groups >= 1`, `pairs >= 1`, `chan_pairs >= 1`.
#[cfg(not(edgekd_small_kernels))]
#[inline(never)]
pub(crate) unsafe fn pixel_pairs_wide(
    layer: &PairLayer,
    x: *const i8,
    out: *mut i8,
    pairs: usize,
    col: *mut i16,
    groups: usize,
) {
    let out_c = 2 * layer.chan_pairs;
    // SAFETY: per pair, writes `4 * groups` entries at `col` and at `col + 256` bytes
    // from the `r` bytes of input at `x` and `x + step` that the caller vouches for (the
    // whole groups' words, then the partial group's word `partial_back` bytes early, so
    // ending at `r`; LDR tolerates unaligned
    // input, STRD needs the 8-byte aligned column), then runs `pair_rows_wide`'s passes
    // over `chan_pairs` channel pairs (reads and writes as documented there) with
    // `out_a` at `out` and `out_b` at `out + out_c`; `x` moves `2 * step` and `out`
    // `2 * out_c` per pair, `pairs` times: all within what the caller guarantees. The
    // 56 bytes of stack it takes are given back before the block ends; otherwise only
    // register operands and the flags change.
    unsafe {
        asm!(
            // `pair_rows_wide`'s frame ([sp]: chans, [sp, #4]: out_a, [sp, #8]: out_b -
            // out_a, [sp, #12]: chans end, [sp, #16]..[sp, #28]: `wide_chunk_entry`'s),
            // then [sp, #32]: layer, [sp, #36]: input, [sp, #40]: this pair's outputs,
            // [sp, #44]: pairs left, [sp, #48]: column.
            "sub sp, sp, #56",
            "str {b1}, [sp, #8]",
            "str {xa}, [sp, #48]",
            "str {a0}, [sp, #32]",
            "str {a1}, [sp, #36]",
            "str {b0}, [sp, #40]",
            "str {u0}, [sp, #44]",
            wide_chunk_entry!(),
            "5:",
            // Both pixels' columns, pixel b's input `step` bytes on.
            "ldr {x}, [sp, #32]",
            "ldr {u0}, [sp, #36]",
            "ldr {v0}, [{x}, #4]",
            "ldr {t}, [sp, #48]",
            widen_pair!(),
            // The passes start at the first rows, channels and outputs of the pair.
            "ldr {w}, [{x}, #8]",
            "ldr {t}, [sp, #40]",
            "str {t}, [sp, #4]",
            "ldr {t}, [{x}, #28]",
            "str {t}, [sp, #12]",
            "ldr {x}, [{x}, #12]",
            "str {x}, [sp]",
            wide_passes!(),
            // The next pair: input `2 * step` on, outputs `2 * out_c` on.
            "ldr {x}, [sp, #32]",
            "ldr {u0}, [sp, #36]",
            "ldr {u1}, [{x}]",
            "add {u0}, {u0}, {u1}, lsl #1",
            "str {u0}, [sp, #36]",
            "ldr {u0}, [sp, #40]",
            "ldr {u1}, [sp, #8]",
            "add {u0}, {u0}, {u1}, lsl #1",
            "str {u0}, [sp, #40]",
            "ldr {n}, [sp, #44]",
            "subs {n}, {n}, #1",
            "str {n}, [sp, #44]",
            "bne 5b",
            "add sp, sp, #56",
            a0 = inout(reg) layer as *const PairLayer => _,
            a1 = inout(reg) x => _,
            b0 = inout(reg) out => _,
            b1 = inout(reg) out_c => _,
            xa = inout(reg) col => _,
            n = inout(reg) groups => _,
            u0 = inout(reg) pairs => _,
            w = out(reg) _,
            u1 = out(reg) _,
            v0 = out(reg) _,
            v1 = out(reg) _,
            x = out(reg) _,
            t = out(reg) _,
        );
    }
}

/// The channel loop of [`matvec2`] for a clamp narrower than int8 (whole-range layers
/// take [`pair_rows_i8`]), whose checks it relies on: `xa` 4-byte aligned with `k`
/// entries at `xa` and at `xa + PAIR_OFFSET` (`xb`), `w` the first of `chans.len()`
/// rows of `k` readable bytes. Channels go two at a time ([`dot_2x2`]); an odd last one
/// takes [`dot_cols`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pair_rows(
    xa: *const i16,
    xb: *const i16,
    k: usize,
    w: *const i8,
    chans: &[Chan],
    q: OutQ,
    out_a: &mut [i8],
    out_b: &mut [i8],
) {
    let out = |c: &Chan, acc: i32| output(c, acc, q);
    let mut w = w;
    let mut pairs = chans.chunks_exact(2);
    let mut oa = out_a.chunks_exact_mut(2);
    let mut ob = out_b.chunks_exact_mut(2);
    for ((c, oa), ob) in (&mut pairs).zip(&mut oa).zip(&mut ob) {
        let mut acc = [c[0].bias, c[0].bias, c[1].bias, c[1].bias];
        // SAFETY: `w` is at row `j` (two rows per pass) with rows `j` and `j + 1 <
        // chans.len()` of `k` readable bytes; the columns hold `k` entries each, 4-byte
        // aligned, `xb = xa + PAIR_OFFSET` (checked by `matvec2`), as `dot_2x2`
        // requires. Afterwards `w` moves two rows on, at most to the end of the rows.
        unsafe {
            dot_2x2(xa, w, k, &mut acc);
            w = w.add(2 * k);
        }
        oa[0] = out(&c[0], acc[0]);
        ob[0] = out(&c[0], acc[1]);
        oa[1] = out(&c[1], acc[2]);
        ob[1] = out(&c[1], acc[3]);
    }
    if let ([c], [oa], [ob]) = (pairs.remainder(), oa.into_remainder(), ob.into_remainder()) {
        let (mut a, mut b) = (c.bias, c.bias);
        // SAFETY: `w` is at the last row, of `k` readable bytes; the columns as above.
        unsafe { dot_cols(xa, xb, w, k, &mut a, &mut b) };
        *oa = out(c, a);
        *ob = out(c, b);
    }
}

/// The same products without `SMLAD`, for a column that is not word-aligned or a
/// filter shorter than the outputs (neither happens with the kernels' own buffers and
/// checked slices). Reads the packed order: within each full group of four,
/// entries 1 and 2 are swapped.
#[cold]
fn matvec_scalar(col: &[i16], filter: &[i8], chans: &[Chan], q: OutQ, out: &mut [i8]) {
    let k = col.len();
    for ((o, c), j) in out.iter_mut().zip(chans).zip(0..) {
        let Some(row) = filter.get(j * k..j * k + k) else {
            return;
        };
        *o = output(c, packed_dot(col, row, c.bias), q);
    }
}
