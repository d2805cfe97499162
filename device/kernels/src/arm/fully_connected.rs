//! Fully connected rows on DSP cores. From the layer's prepared table
//! (`fc_wide_weights`, generated at build time): four rows per pass, biases, 16-bit
//! filter and single-step requantization read in order from flash, the four outputs
//! requantized in registers ([`dot4_wide_rq`]: 13 instructions per 16 MACs, 8 per
//! output). Without one: four filter rows per pass against one packed column
//! ([`dot4`]: each column word loaded once for four rows, 1.375 instructions per MAC),
//! the accumulators of up to [`CHUNK`] rows kept in a small stack buffer, then
//! requantized in one `asm` loop per chunk with [`crate::quant::rounding_shift`]'s form
//! (the zero point folded into the high word `SMLAL` accumulates into: two `SMLAL`s,
//! one shift and `SSAT` per output, no prepared table).

use super::matvec::{dot1, dot2};
use crate::fully_connected::{FcLayer, RqForm};
#[cfg(not(edgekd_small_kernels))]
use crate::quant::RoundingRq;
use crate::quant::{rounding_shift, rounding_shift_fits, ChannelRq};
use crate::{Clamp, Requant};
use core::arch::asm;

/// Rows accumulated before one requantization pass (a 128-byte buffer on the stack).
const CHUNK: usize = 32;

/// One group of four column entries (`xa`, `xb`, packed) against the filter row word
/// at `$addr`, into the accumulator named `$acc`.
macro_rules! row_group {
    ($acc:literal, $addr:literal) => {
        concat!(
            "ldr {v}, ",
            $addr,
            "\n",
            "sxtb16 {t}, {v}\n",
            "smlad {",
            $acc,
            "}, {t}, {xa}, {",
            $acc,
            "}\n",
            "sxtb16 {t}, {v}, ror #8\n",
            "smlad {",
            $acc,
            "}, {t}, {xb}, {",
            $acc,
            "}\n",
        )
    };
}

/// One group of four column entries against four rows: rows 1 and 0 through `w0`
/// (`[w0, k]`, then `[w0], #4`), rows 3 and 2 through `w2`.
macro_rules! group4 {
    () => {
        concat!(
            "ldrd {xa}, {xb}, [{x}], #8\n",
            row_group!("a1", "[{w0}, {k}]"),
            row_group!("a0", "[{w0}], #4"),
            row_group!("a3", "[{w2}, {k}]"),
            row_group!("a2", "[{w2}], #4"),
        )
    };
}

/// Runs the group macro `$group` once per group, `$groups` (a register operand) times:
/// an odd group first, then pairs, counting pairs down in `n` (the groups leave
/// `LSRS`'s Z flag alone: loads and `SMLAD` set no N/Z/C flags). Ends at label `5:`.
macro_rules! odd_then_pairs {
    ($groups:literal, $group:ident) => {
        concat!(
            "lsrs {n}, ",
            $groups,
            ", #1\n",
            "bcc 3f\n",
            $group!(),
            "3:\n",
            "beq 5f\n",
            "4:\n",
            $group!(),
            $group!(),
            "subs {n}, {n}, #1\n",
            "bne 4b\n",
            "5:\n",
        )
    };
}

/// `acc[i] = init[i] + col . row_i` for `4 * blocks` consecutive filter rows of `k`
/// bytes from `w`, four rows per pass over `groups` groups of four packed column
/// entries; `init` moves `init_step` bytes per block (16 for a bias, 0 to read the
/// same four zeros). One asm block for all of it: the 13 registers run the four-row
/// loop and the block state waits on the stack.
///
/// # Safety
/// `x` must be 4-byte aligned and valid for reading `4 * groups` i16, `groups >= 1`
/// and `k >= 4 * groups`; `w` valid for reading `4 * blocks` rows of `k` bytes (any
/// alignment); `init` for reading `4 * blocks` i32 (or four, with `init_step` 0) and
/// `acc` for writing `4 * blocks` i32; `blocks >= 1`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn dot4_blocks(
    x: *const i16,
    w: *const i8,
    k: usize,
    groups: usize,
    blocks: usize,
    init: *const i32,
    init_step: usize,
    acc: *mut i32,
) {
    // SAFETY: per block, reads four i32 at `init`, exactly `4 * groups` entries behind
    // `x` (LDRD on the 4-byte aligned column) and `4 * groups` bytes of each of four
    // rows (ARMv7-M LDR tolerates unaligned rows), and writes four i32 at `acc`, all
    // guaranteed by the caller; `w + 2k` stays inside the rows, and the next block's
    // rows start `2k - 4 * groups` bytes after where `w + 2k` stopped. The 28 bytes of
    // stack it takes are given back before the block ends; otherwise only register
    // operands and the flags (LSRS, SUBS) change.
    unsafe {
        asm!(
            // [sp]: acc, [sp, #4]: init, [sp, #8]: blocks left, [sp, #12]: groups,
            // [sp, #16]: init step, [sp, #20]: row skip, [sp, #24]: column start.
            "sub sp, sp, #28",
            "str {a0}, [sp]",
            "str {a1}, [sp, #4]",
            "str {a2}, [sp, #8]",
            "str {a3}, [sp, #12]",
            "str {xa}, [sp, #16]",
            "str {xb}, [sp, #20]",
            "str {x}, [sp, #24]",
            "1:",
            "ldr {t}, [sp, #4]",
            "ldr {a0}, [{t}]",
            "ldr {a1}, [{t}, #4]",
            "ldr {a2}, [{t}, #8]",
            "ldr {a3}, [{t}, #12]",
            "ldr {v}, [sp, #16]",
            "add {t}, {t}, {v}",
            "str {t}, [sp, #4]",
            "add {w2}, {w0}, {k}, lsl #1",
            "ldr {xa}, [sp, #12]",
            odd_then_pairs!("{xa}", group4),
            "ldr {t}, [sp]",
            "str {a0}, [{t}], #4",
            "str {a1}, [{t}], #4",
            "str {a2}, [{t}], #4",
            "str {a3}, [{t}], #4",
            "str {t}, [sp]",
            "ldr {x}, [sp, #24]",
            "ldr {v}, [sp, #20]",
            "add {w0}, {w2}, {v}",
            "ldr {v}, [sp, #8]",
            "subs {v}, {v}, #1",
            "str {v}, [sp, #8]",
            "bne 1b",
            "add sp, sp, #28",
            x = inout(reg) x => _,
            w0 = inout(reg) w => _,
            k = in(reg) k,
            a0 = inout(reg) acc => _,
            a1 = inout(reg) init => _,
            a2 = inout(reg) blocks => _,
            a3 = inout(reg) groups => _,
            xa = inout(reg) init_step => _,
            xb = inout(reg) 2 * k - 4 * groups => _,
            w2 = out(reg) _,
            n = out(reg) _,
            v = out(reg) _,
            t = out(reg) _,
        );
    }
}

/// One group of four column entries against four rows of the widened filter: each
/// row's four entries are two words (`fc_wide_weights`' layout), one `LDRD`, two
/// `SMLAD`s.
#[cfg(not(edgekd_small_kernels))]
macro_rules! wide_group4 {
    () => {
        concat!(
            "ldrd {xa}, {xb}, [{x}], #8\n",
            "ldrd {v}, {t}, [{w}], #8\n",
            "smlad {a0}, {v}, {xa}, {a0}\n",
            "smlad {a0}, {t}, {xb}, {a0}\n",
            "ldrd {v}, {t}, [{w}], #8\n",
            "smlad {a1}, {v}, {xa}, {a1}\n",
            "smlad {a1}, {t}, {xb}, {a1}\n",
            "ldrd {v}, {t}, [{w}], #8\n",
            "smlad {a2}, {v}, {xa}, {a2}\n",
            "smlad {a2}, {t}, {xb}, {a2}\n",
            "ldrd {v}, {t}, [{w}], #8\n",
            "smlad {a3}, {v}, {xa}, {a3}\n",
            "smlad {a3}, {t}, {xb}, {a3}\n",
        )
    };
}

/// Requantizes accumulator `$acc` by the next channel entry at `{w}` (multiplier,
/// nudge low and high words, shift: [`crate::quant::RoundingRq`]) and stores it
/// saturated to int8 at `{out}`; `{x}` holds `i32::MIN`. Clobbers the accumulator.
#[cfg(not(edgekd_small_kernels))]
macro_rules! requant_store {
    ($acc:literal) => {
        concat!(
            "ldrd {xa}, {xb}, [{w}], #8\n",
            "ldrd {v}, {n}, [{w}], #8\n",
            "smlal {xb}, {v}, {",
            $acc,
            "}, {xa}\n",
            "lsr {",
            $acc,
            "}, {",
            $acc,
            "}, #31\n",
            "smlal {xb}, {v}, {",
            $acc,
            "}, {x}\n",
            "asr {v}, {v}, {n}\n",
            "ssat {v}, #8, {v}\n",
            "strb {v}, [{out}], #1\n",
        )
    };
}

/// The DSP fully connected layer from its prepared table ([`crate::fc_wide_weights`]):
/// for each of `blocks` blocks of four output rows, the accumulators start at the
/// block's biases, take `groups` groups of four column entries (13 instructions per 16
/// MACs), and are requantized in registers and stored saturated to int8, four bytes at
/// `out` (8 instructions per output, no accumulator buffer, no per-chunk loop).
///
/// # Safety
/// `x` 4-byte aligned and valid for reading `4 * groups` i16; `w` 4-byte aligned and
/// valid for reading `blocks` blocks of `16 * groups + 40` i16 laid out as
/// `fc_wide_weights` writes them, every shift at most 30; `out` valid for writing
/// `4 * blocks` bytes; `groups >= 1`, `blocks >= 1`.
#[cfg(not(edgekd_small_kernels))]
#[inline(never)]
unsafe fn dot4_wide_rq(x: *const i16, w: *const i16, groups: usize, blocks: usize, out: *mut i8) {
    // SAFETY: per block, reads the four bias words, the `16 * groups` filter entries
    // and the four channel entries at `w` (LDRD, 4-byte aligned) and the `4 * groups`
    // column entries (LDRD on the 4-byte aligned column), and writes four bytes at
    // `out`, all guaranteed by the caller. ASR by register with a shift of at most 30
    // behaves like Rust's `>>`. The 8 bytes of stack it takes are given back before
    // the block ends; otherwise only register operands and the flags (LSRS, SUBS)
    // change (SSAT's Q flag is read by nothing).
    unsafe {
        asm!(
            // [sp]: column start, [sp, #4]: groups.
            "sub sp, sp, #8",
            "str {x}, [sp]",
            "str {n}, [sp, #4]",
            "1:",
            "ldrd {a0}, {a1}, [{w}], #8",
            "ldrd {a2}, {a3}, [{w}], #8",
            "ldr {x}, [sp]",
            "ldr {n}, [sp, #4]",
            odd_then_pairs!("{n}", wide_group4),
            "mov {x}, #0x80000000",
            requant_store!("a0"),
            requant_store!("a1"),
            requant_store!("a2"),
            requant_store!("a3"),
            "subs {blocks}, {blocks}, #1",
            "bne 1b",
            "add sp, sp, #8",
            x = inout(reg) x => _,
            w = inout(reg) w => _,
            n = inout(reg) groups => _,
            blocks = inout(reg) blocks => _,
            out = inout(reg) out => _,
            a0 = out(reg) _,
            a1 = out(reg) _,
            a2 = out(reg) _,
            a3 = out(reg) _,
            xa = out(reg) _,
            xb = out(reg) _,
            v = out(reg) _,
            t = out(reg) _,
        );
    }
}

/// [`wide_group4`] for the first two rows of a block only: the last block of a layer
/// whose row count leaves one or two over skips its zero rows (`LDRD` post-indexed
/// past rows 2 and 3).
#[cfg(not(edgekd_small_kernels))]
macro_rules! wide_group2 {
    () => {
        concat!(
            "ldrd {xa}, {xb}, [{x}], #8\n",
            "ldrd {v}, {t}, [{w}], #8\n",
            "smlad {a0}, {v}, {xa}, {a0}\n",
            "smlad {a0}, {t}, {xb}, {a0}\n",
            "ldrd {v}, {t}, [{w}], #24\n",
            "smlad {a1}, {v}, {xa}, {a1}\n",
            "smlad {a1}, {t}, {xb}, {a1}\n",
        )
    };
}

/// `acc[i] = init[i] + col . row_i` for rows 0 and 1 of one block of the widened
/// filter (`fc_wide_weights`' layout): 7 instructions per 8 MACs, for a last block with
/// one or two real rows, where [`dot4_wide`] would spend half or more of its work on
/// the zero rows.
///
/// # Safety
/// As [`dot4_wide`] with `blocks = 1`: `x` 4-byte aligned and valid for reading
/// `4 * groups` i16, `w` 4-byte aligned and valid for reading `16 * groups` i16,
/// `groups >= 1`.
#[cfg(not(edgekd_small_kernels))]
#[inline(always)]
unsafe fn dot2_wide(x: *const i16, w: *const i16, groups: usize, init: [i32; 2]) -> [i32; 2] {
    let [mut a0, mut a1] = init;
    // SAFETY: reads the `4 * groups` column entries and, per group, the first 8 of the
    // block's 16 filter entries (LDRD on 4-byte aligned addresses), as the caller
    // guarantees; writes only register operands and the flags (LSRS, SUBS).
    unsafe {
        asm!(
            odd_then_pairs!("{n}", wide_group2),
            x = inout(reg) x => _,
            w = inout(reg) w => _,
            n = inout(reg) groups => _,
            a0 = inout(reg) a0,
            a1 = inout(reg) a1,
            xa = out(reg) _,
            xb = out(reg) _,
            v = out(reg) _,
            t = out(reg) _,
            options(nostack, readonly),
        );
    }
    [a0, a1]
}

/// `out[i] = SSAT8(requant(acc[i]))` for `i < n` with one multiplier and shift
/// (`rounding_shift_fits`, checked by the caller), the output zero point `zp` folded in.
///
/// # Safety
/// `acc` valid for reading and `out` for writing `n >= 1` entries.
#[inline(always)]
unsafe fn requant_per_tensor(
    acc: *const i32,
    n: usize,
    multiplier: i32,
    shift: i32,
    zp: i32,
    out: *mut i8,
) {
    let r = -shift;
    // SAFETY: reads `n` accumulators and writes `n` outputs (the caller's guarantee);
    // `r - 1` is 1..=22 (`rounding_shift_fits`), where ASR by register behaves like
    // Rust's `>>`, and `(2 * zp + 1) << (r - 2)` fits an i32 (|2 * zp + 1| <= 255).
    // Writes only the outputs, register operands and the flags.
    unsafe {
        asm!(
            "2:",
            "ldr {a}, [{acc}], #4",
            "mov {lo}, #0x40000000",
            "mov {hi}, {high}",
            "smlal {lo}, {hi}, {a}, {m}",
            "lsr {a}, {a}, #31",
            "smlal {lo}, {hi}, {a}, {min}",
            "asr {hi}, {hi}, {r}",
            "ssat {hi}, #8, {hi}",
            "strb {hi}, [{out}], #1",
            "subs {n}, {n}, #1",
            "bne 2b",
            acc = inout(reg) acc => _,
            out = inout(reg) out => _,
            n = inout(reg) n => _,
            m = in(reg) multiplier,
            high = in(reg) (2 * zp + 1) << (r - 2),
            r = in(reg) r - 1,
            min = in(reg) i32::MIN,
            a = out(reg) _,
            lo = out(reg) _,
            hi = out(reg) _,
            options(nostack),
        );
    }
}

/// [`requant_per_tensor`] with a multiplier and shift per output, read from `m` and
/// `s`, every one of them in the single-step form (`rounding_shift_fits`, checked by
/// [`crate::FcLayer::new`]).
///
/// # Safety
/// `acc`, `m` and `s` valid for reading and `out` for writing `n >= 1` entries; every
/// `(m, s)` passes `rounding_shift_fits`.
#[inline(always)]
unsafe fn requant_per_channel(
    acc: *const i32,
    n: usize,
    m: *const i32,
    s: *const i32,
    zp: i32,
    out: *mut i8,
) {
    // SAFETY: reads `n` accumulators, multipliers and shifts and writes `n` outputs
    // (the caller's guarantee). `j = -2 - shift` is 0..=21 and `j + 1` (the second
    // shift, half of it in SSAT's `ASR #1`) 1..=22, as in `requant_per_tensor`. Writes
    // only the outputs, register operands and the flags.
    unsafe {
        asm!(
            "2:",
            "ldr {j}, [{s}], #4",
            "ldr {mv}, [{m}], #4",
            "ldr {a}, [{acc}], #4",
            "sub {j}, {minus2}, {j}",
            "lsl {hi}, {zp1}, {j}",
            "mov {lo}, #0x40000000",
            "smlal {lo}, {hi}, {a}, {mv}",
            "lsr {a}, {a}, #31",
            "smlal {lo}, {hi}, {a}, {min}",
            "asr {hi}, {hi}, {j}",
            "ssat {hi}, #8, {hi}, asr #1",
            "strb {hi}, [{out}], #1",
            "subs {n}, {n}, #1",
            "bne 2b",
            acc = inout(reg) acc => _,
            out = inout(reg) out => _,
            m = inout(reg) m => _,
            s = inout(reg) s => _,
            n = inout(reg) n => _,
            zp1 = in(reg) 2 * zp + 1,
            min = in(reg) i32::MIN,
            minus2 = in(reg) -2,
            mv = out(reg) _,
            j = out(reg) _,
            a = out(reg) _,
            lo = out(reg) _,
            hi = out(reg) _,
            options(nostack),
        );
    }
}

/// One fully connected row of `layer`: `out[j] = requant_j(bias_j + col . filter_row_j)`
/// for `j < out_features`, `col` the packed input row rounded up to a multiple of four
/// entries (those past `in_features` are not read as input). The layer's checks
/// ([`FcLayer::new`]) leave two lengths to compare here; then the common path is the
/// two asm loops per chunk of rows, the rest is out of line.
// Out of line: inlined into the interpreter's dispatch, its loop state spills.
#[inline(never)]
pub(crate) fn fc_row(col: &[i16], layer: &FcLayer<'_>, out: &mut [i8]) {
    let (k, n) = (layer.in_features, layer.out_features);
    if col.len() != k.next_multiple_of(4) || out.len() != n || col.as_ptr() as usize % 4 != 0 {
        // Not reached with the kernels' own (aligned) buffers.
        return fc_row_scalar(col, layer, out);
    }
    #[cfg(not(edgekd_small_kernels))]
    if let Some(wide) = layer.wide {
        return fc_row_wide(col, layer, wide, out);
    }
    // Builds whose every layer brings its table leave the plain rows out
    // (`EDGEKD_FC_PLAIN=0`); `FcLayer::run` refuses a layer without one first.
    #[cfg(edgekd_no_fc_plain)]
    return fc_row_scalar(col, layer, out);
    #[cfg(not(edgekd_no_fc_plain))]
    fc_row_plain(col, layer, out);
}

/// [`fc_row`] widening the filter as it goes (no prepared table), lengths checked:
/// blocks of four rows through [`dot4_blocks`], the rest through [`rest_rows`], then
/// the requantization in the layer's form.
#[inline(always)]
#[cfg_attr(edgekd_no_fc_plain, allow(dead_code))]
fn fc_row_plain(col: &[i16], layer: &FcLayer<'_>, out: &mut [i8]) {
    let (k, n) = (layer.in_features, layer.out_features);
    let (rq, zp) = (&layer.rq, layer.p.output_zero_point);
    let groups = k / 4;
    let x = col.as_ptr();
    // A missing bias reads four zeros for every block.
    static ZEROS: [i32; 4] = [0; 4];
    let (mut init, init_step) = match layer.bias {
        Some(b) => (b.as_ptr(), 1),
        None => (ZEROS.as_ptr(), 0),
    };
    let mut acc = core::mem::MaybeUninit::<[i32; CHUNK]>::uninit();
    let a = acc.as_mut_ptr().cast::<i32>();
    let (mut w, mut o) = (layer.filter.as_ptr(), out.as_mut_ptr());
    let (m, s) = (rq.multiplier.as_ptr(), rq.shift.as_ptr());
    let mut c0 = 0;
    while c0 < n {
        let len = CHUNK.min(n - c0);
        let blocks = if groups > 0 { len / 4 } else { 0 };
        // SAFETY: `FcLayer::new` checked `k >= 1`, `filter.len() == n * k`, a bias of
        // `n` entries and requantization of one entry or `n`, and settled `form`;
        // `out.len() == n` and `col.len() >= k` were just compared. So for channels
        // `c0..c0 + len <= n`: `w` is at row `c0`, `o` at output `c0`, `init` at bias
        // `c0` (or `ZEROS`, step 0), `m`/`s` hold channel `c0` (per channel); `x` is
        // 4-byte aligned with `k >= 4 * groups` entries; `a` has `CHUNK >= len`
        // entries, the first `len` written (blocks, then the rest) before they are read.
        unsafe {
            if blocks > 0 {
                dot4_blocks(x, w, k, groups, blocks, init, init_step * 16, a);
            }
            if blocks * 4 < len {
                let done = blocks * 4;
                rest_rows(
                    x,
                    w.add(done * k),
                    k,
                    len - done,
                    init.add(done * init_step),
                    init_step,
                    a.add(done),
                );
            }
            if k % 4 != 0 {
                add_tail(&col[groups * 4..k], w, k, len, a);
            }
            match layer.form {
                RqForm::OneFits => requant_per_tensor(a, len, *m, *s, zp, o),
                RqForm::AllFit => requant_per_channel(a, len, m.add(c0), s.add(c0), zp, o),
                RqForm::Mixed => requant_mixed(a, len, rq, c0, zp, o),
            }
            if layer.p.clamp.min > -128 || layer.p.clamp.max < 127 {
                clamp(o, len, layer.p.clamp);
            }
            w = w.add(len * k);
            o = o.add(len);
            init = init.add(len * init_step);
        }
        c0 += len;
    }
}

/// [`fc_row`] from the layer's prepared table (`wide`, checked by
/// [`FcLayer::with_wide_weights`], which takes only layers whose channels all fit the
/// single-step form): whole blocks of four rows through [`dot4_wide_rq`]; a last block
/// of one or two rows through [`dot2_wide`], of three through [`dot4_wide_rq`] into a
/// local buffer. A clamp narrower than int8 is applied afterwards.
#[cfg(not(edgekd_small_kernels))]
#[inline(always)]
fn fc_row_wide(col: &[i16], layer: &FcLayer<'_>, wide: &[i16], out: &mut [i8]) {
    let (groups, n) = (layer.in_features.div_ceil(4), out.len());
    let (blocks, part) = (n / 4, n % 4);
    let block_len = 16 * groups + 40;
    let (x, w) = (col.as_ptr(), wide.as_ptr());
    // SAFETY: `FcLayer::with_wide_weights` checked that `wide` is 4-byte aligned and
    // holds `n.div_ceil(4)` blocks of `block_len` entries in `fc_wide_weights`' layout,
    // its shifts from `RoundingRq::new` (at most 22); `fc_row` compared
    // `col.len() == 4 * groups` (4-byte aligned) and `out.len() == n`. So the whole
    // blocks write `4 * blocks <= n` outputs, and the last block starts at entry
    // `blocks * block_len` with its biases, filter (from entry 8) and channels (from
    // entry `8 + 16 * groups`).
    unsafe {
        if blocks > 0 {
            dot4_wide_rq(x, w, groups, blocks, out.as_mut_ptr());
        }
        if part > 0 {
            let last = w.add(blocks * block_len);
            let tail = &mut out[4 * blocks..];
            if part <= 2 {
                // The little-endian word at entry `at` of the block.
                let word = |at: usize| {
                    let (lo, hi) = (*last.add(at), *last.add(at + 1));
                    i32::from(lo as u16) | i32::from(hi) << 16
                };
                let acc = dot2_wide(x, last.add(8), groups, [word(0), word(2)]);
                for (j, (o, a)) in tail.iter_mut().zip(acc).enumerate() {
                    let at = 8 + 16 * groups + 8 * j;
                    let rq = RoundingRq {
                        multiplier: word(at),
                        nudge_lo: word(at + 2) as u32,
                        nudge_hi: word(at + 4),
                        shift: word(at + 6) as u32,
                    };
                    *o = super::requant_rounding_i8(a, &rq);
                }
            } else {
                let mut four = [0i8; 4];
                dot4_wide_rq(x, last, groups, 1, four.as_mut_ptr());
                tail.copy_from_slice(&four[..part]);
            }
        }
    }
    let c = layer.p.clamp;
    if c.min > -128 || c.max < 127 {
        // SAFETY: `out` holds `n` entries.
        unsafe { clamp(out.as_mut_ptr(), n, c) };
    }
}

/// The rows of a chunk that do not fill a block of four (and every row when the column
/// has fewer than four entries): accumulators from `init`, then two rows at a time.
///
/// # Safety
/// As in [`fc_row`]: `rows` rows of `k` bytes at `w`, their `init` entries (step
/// `init_step`: 1 or 0) and `acc` entries; `x` 4-byte aligned with `k` entries.
#[inline(never)]
unsafe fn rest_rows(
    x: *const i16,
    w: *const i8,
    k: usize,
    rows: usize,
    init: *const i32,
    init_step: usize,
    acc: *mut i32,
) {
    let groups = k / 4;
    // SAFETY: the caller's guarantees, row by row.
    unsafe {
        for j in 0..rows {
            *acc.add(j) = *init.add(j * init_step);
        }
        if groups == 0 {
            return;
        }
        let mut j = 0;
        while j + 2 <= rows {
            dot2(
                x,
                w.add(j * k),
                w.add((j + 1) * k),
                groups,
                &mut *acc.add(j),
                &mut *acc.add(j + 1),
            );
            j += 2;
        }
        if j < rows {
            dot1(x, w.add(j * k), groups, &mut *acc.add(j));
        }
    }
}

/// Adds the `k % 4` tail entries (natural order, `tail`) of `rows` rows to `acc`.
///
/// # Safety
/// `rows` rows of `k` bytes at `w`, `acc` valid for `rows` entries.
#[cold]
unsafe fn add_tail(tail: &[i16], w: *const i8, k: usize, rows: usize, acc: *mut i32) {
    let main = k - tail.len();
    // SAFETY: the caller's guarantees; entries `main..k` of each row.
    unsafe {
        for j in 0..rows {
            let a = &mut *acc.add(j);
            for (i, &xv) in tail.iter().enumerate() {
                *a = a.wrapping_add(i32::from(xv) * i32::from(*w.add(j * k + main + i)));
            }
        }
    }
}

/// The outputs of a chunk of a layer where some channel needs TFLite's two-step form
/// (its shift is not a divide by 4 to 2^23, or its multiplier is negative): each by
/// the form it takes.
///
/// # Safety
/// As in [`fc_row`] for the chunk of `len` outputs at channel `c0`.
#[cold]
#[inline(never)]
unsafe fn requant_mixed(
    acc: *const i32,
    len: usize,
    rq: &Requant<'_>,
    c0: usize,
    zp: i32,
    out: *mut i8,
) {
    let per_tensor = rq.multiplier.len() == 1;
    for j in 0..len {
        let c = if per_tensor { 0 } else { c0 + j };
        let (m, s) = (rq.multiplier[c], rq.shift[c]);
        // SAFETY: the caller's guarantee, `j < len`.
        let (x, o) = unsafe { (*acc.add(j), &mut *out.add(j)) };
        *o = if rounding_shift_fits(m, s) {
            rounding_shift(x, m, s, zp).clamp(-128, 127) as i8
        } else {
            two_step(x, m, s, zp)
        };
    }
}

/// Applies a clamp narrower than int8 to `n` outputs.
///
/// # Safety
/// `out` valid for `n` entries.
#[cold]
unsafe fn clamp(out: *mut i8, n: usize, c: Clamp) {
    // SAFETY: the caller's guarantee.
    let out = unsafe { core::slice::from_raw_parts_mut(out, n) };
    for o in out {
        *o = (*o).clamp(c.min, c.max);
    }
}

/// One output by TFLite's two-step requantization, saturated to int8 (the channels
/// [`rounding_shift_fits`] refuses; out of line, their registers would crowd the
/// common path).
#[cold]
#[inline(never)]
fn two_step(acc: i32, m: i32, s: i32, zp: i32) -> i8 {
    ChannelRq::new(m, s).output(acc, zp, -128, 127)
}

/// [`fc_row`] without its preconditions (never taken with the kernels' own buffers).
#[cold]
fn fc_row_scalar(col: &[i16], layer: &FcLayer<'_>, out: &mut [i8]) {
    let (k, rq, p) = (layer.in_features, &layer.rq, &layer.p);
    let col = col.get(..k).unwrap_or(col);
    let per_tensor = rq.multiplier.len() == 1;
    for (c, o) in out.iter_mut().enumerate() {
        let at = if per_tensor { 0 } else { c };
        let b = layer.bias.and_then(|b| b.get(c)).copied().unwrap_or(0);
        let m = rq.multiplier.get(at).copied().unwrap_or(0);
        let s = rq.shift.get(at).copied().unwrap_or(0);
        let row = layer.filter.get(c * k..c * k + k).unwrap_or(&[]);
        let acc = super::matvec::packed_dot(col, row, b);
        let (lo, hi) = (i32::from(p.clamp.min), i32::from(p.clamp.max));
        *o = ChannelRq::new(m, s).output(acc, p.output_zero_point, lo, hi);
    }
}
