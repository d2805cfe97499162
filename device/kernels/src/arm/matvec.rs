//! `SMLAD` version of [`crate::matvec`]: two output channels per pass over the column.

use crate::matvec::{matvec_portable, Chan, OutQ};
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

/// `x - zp` widened straight into packed order: `SXTB16` of an input word gives lanes
/// `(x0, x2)` and, rotated by 8, `(x1, x3)`; `SSUB16` subtracts the zero point from both.
#[inline(always)]
pub(crate) fn widen_pack(col: &mut [i16], x: &[i8], zp: i32) {
    let zp2 = (zp as u32 & 0xffff) | ((zp as u32) << 16);
    let mut dst = col.chunks_exact_mut(4);
    let mut src = x.chunks_exact(4);
    for (d, s) in (&mut dst).zip(&mut src) {
        let w = u32::from_le_bytes([s[0] as u8, s[1] as u8, s[2] as u8, s[3] as u8]);
        let (even, odd): (u32, u32);
        // SAFETY: register-only arithmetic; |x - zp| <= 255 fits each 16-bit lane
        // exactly. SSUB16 sets only the GE flags, which nothing reads.
        unsafe {
            asm!(
                "sxtb16 {e}, {w}",
                "sxtb16 {o}, {w}, ror #8",
                "ssub16 {e}, {e}, {zp2}",
                "ssub16 {o}, {o}, {zp2}",
                w = in(reg) w,
                zp2 = in(reg) zp2,
                e = out(reg) even,
                o = out(reg) odd,
                options(pure, nomem, nostack),
            );
        }
        d[0] = even as i16;
        d[1] = (even >> 16) as i16;
        d[2] = odd as i16;
        d[3] = (odd >> 16) as i16;
    }
    crate::matvec::widen(dst.into_remainder(), src.remainder(), zp);
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
unsafe fn dot2(
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
unsafe fn dot1(x: *const i16, p0: *const i8, groups: usize, a0: &mut i32) {
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

/// [`crate::matvec::matvec`] with `SMLAD`; `col` must have been through [`pack`].
#[inline(always)]
pub(crate) fn matvec(col: &[i16], filter: &[i8], chans: &[Chan], q: OutQ, out: &mut [i8]) {
    let k = col.len();
    if k == 0 || col.as_ptr() as usize % 4 != 0 {
        // Unpacked order only matters for full groups; with k < 4 nothing was packed.
        // Misaligned columns do not occur (callers pass a `Cols` buffer), but stay
        // correct if they ever do: unpack and use the portable loop.
        if k < 4 {
            return matvec_portable(col, filter, chans, q, out);
        }
        return unpacked_fallback(col, filter, chans, q, out);
    }
    // Channels that have a filter row, a prepared entry and an output slot (all of
    // them, for the callers' slices).
    let n = out.len().min(chans.len()).min(filter.len() / k);
    let groups = k / 4;
    let main = groups * 4;
    let x = col.as_ptr();
    let (mut w, mut c, mut o) = (filter.as_ptr(), chans.as_ptr(), out.as_mut_ptr());
    for _ in 0..n / 2 {
        // SAFETY: each pass reads two filter rows of `k` bytes (`w`, `w + k`), two
        // prepared channels and writes two outputs, then advances by as much; there are
        // `n / 2` passes and `n` rows, channels and outputs behind the starting
        // pointers. `x` is 4-byte aligned (checked) with `k >= main` entries, as `dot2`
        // requires.
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
            *o = c0.rq.output(a0, q.zero_point, q.lo, q.hi);
            *o.add(1) = c1.rq.output(a1, q.zero_point, q.lo, q.hi);
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
            *o = c0.rq.output(a0, q.zero_point, q.lo, q.hi);
        }
    }
}

/// Undoes [`pack`] into a scratch column and runs the portable loop.
#[cold]
fn unpacked_fallback(col: &[i16], filter: &[i8], chans: &[Chan], q: OutQ, out: &mut [i8]) {
    let mut buf = crate::matvec::Cols::new();
    let Some(tmp) = buf.0.get_mut(..col.len()) else {
        return;
    };
    tmp.copy_from_slice(col);
    pack(tmp);
    matvec_portable(tmp, filter, chans, q, out);
}
