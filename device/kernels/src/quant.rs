//! Fixed-point primitives (gemmlowp / TFLite / CMSIS-NN) and, with the `std`
//! feature, the host-side derivation of kernel parameters from real scales.
//!
//! Every function here is total: out-of-range arguments are clamped or wrap the
//! way the C reference does on two's-complement hardware, never panic.

#[cfg(feature = "std")]
use crate::{AddParams, Clamp, MeanParams, SoftmaxParams};

/// gemmlowp `SaturatingRoundingDoublingHighMul` (ARM `VQRDMULH`):
/// `round(a * b / 2^31)` with ties away from zero, saturating the single
/// overflowing case `i32::MIN * i32::MIN` to `i32::MAX`.
#[inline]
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = (a as i64) * (b as i64);
    // gemmlowp computes `(ab + nudge) / 2^31` truncating toward zero, with nudge 2^30
    // for ab >= 0 and 1 - 2^30 below. For ab < 0 the numerator is negative, so the
    // truncation is a ceiling: ceil((ab + 1 - 2^30) / 2^31) = floor((ab + 2^30) / 2^31).
    // Both signs are therefore one arithmetic shift (SMLAL + two ops on Cortex-M), and
    // the quotient fits in i32 once MIN * MIN is excluded.
    ((ab + (1 << 30)) >> 31) as i32
}

/// [`saturating_rounding_doubling_high_mul`] with 32-bit multiplies only (16-bit
/// halves, Hacker's Delight `mulhs`): cores without a 32x32->64 multiply (the
/// Cortex-M0 calls `__aeabi_lmul`, ~40 instructions, for the i64 product). Same bits.
#[inline(always)]
pub fn srdhm_halves(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let (ah, al) = (a >> 16, a & 0xffff);
    let (bh, bl) = (b >> 16, b & 0xffff);
    // Every partial sum below stays inside i32 / u32 (|ah|, |bh| <= 2^15, al, bl < 2^16).
    let lo = (al as u32).wrapping_mul(bl as u32);
    let t = ah.wrapping_mul(bl).wrapping_add((lo >> 16) as i32);
    let u = al.wrapping_mul(bh).wrapping_add(t & 0xffff);
    let hi = ah
        .wrapping_mul(bh)
        .wrapping_add(t >> 16)
        .wrapping_add(u >> 16);
    let low = ((u as u32) << 16) | (lo & 0xffff);
    // (hi:low + 2^30) >> 31, with the carry out of the low word.
    let low_n = low.wrapping_add(1 << 30);
    let hi_n = hi.wrapping_add(i32::from(low_n < low));
    (hi_n << 1) | (low_n >> 31) as i32
}

/// gemmlowp `RoundingDivideByPOT`: `x / 2^exponent` rounded to nearest, ties
/// away from zero. `exponent` is meant to be in `0..=31`; values outside are
/// clamped into that range.
#[inline]
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let e = exponent.clamp(0, 31) as u32;
    let mask = ((1i64 << e) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> e) + i32::from(remainder > threshold)
}

/// TFLite `MultiplyByQuantizedMultiplier` (double rounding), identical to
/// CMSIS-NN `arm_nn_requantize`: `x * multiplier * 2^shift / 2^31`.
///
/// `shift > 0` shifts `x` left first (wrapping, as the C code does on
/// overflow), `shift < 0` is a rounding right shift after the high multiply.
/// Shifts beyond 31 in either direction are clamped to 31.
#[inline]
pub fn multiply_by_quantized_multiplier(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.clamp(0, 31) as u32;
    let right = if shift < 0 { shift.saturating_neg() } else { 0 };
    rounding_divide_by_pot(
        saturating_rounding_doubling_high_mul(x.wrapping_shl(left), multiplier),
        right,
    )
}

/// gemmlowp `SaturatingRoundingMultiplyByPOT` for a positive exponent: a
/// saturating left shift.
#[inline]
pub(crate) fn saturating_shl(x: i32, exponent: u32) -> i32 {
    let threshold = (1i32 << (31 - exponent)) - 1;
    if x > threshold {
        i32::MAX
    } else if x < -threshold {
        i32::MIN
    } else {
        x << exponent
    }
}

/// gemmlowp `exp_on_interval_between_negative_one_quarter_and_0_excl`, Q0.31 in
/// and out.
fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
    const CONSTANT_TERM: i32 = 1_895_147_668; // exp(-1/8)
    const ONE_THIRD: i32 = 715_827_883;
    let mul = saturating_rounding_doubling_high_mul;
    let x = a.wrapping_add(1 << 28);
    let x2 = mul(x, x);
    let x3 = mul(x2, x);
    let x4 = mul(x2, x2);
    let x4_over_4 = rounding_divide_by_pot(x4, 2);
    let poly = rounding_divide_by_pot(
        mul(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2),
        1,
    );
    CONSTANT_TERM.wrapping_add(mul(CONSTANT_TERM, x.wrapping_add(poly)))
}

/// gemmlowp `exp_on_negative_values` for a Q5.26 input (`a <= 0`), Q0.31 output.
pub(crate) fn exp_on_negative_values_q5(a: i32) -> i32 {
    const FRACTIONAL_BITS: u32 = 26;
    const ONE_QUARTER: i32 = 1 << (FRACTIONAL_BITS - 2);
    const MASK: i32 = ONE_QUARTER - 1;
    // (exponent of the power of two, Q0.31 of exp(-2^exponent)); the input has
    // 5 integer bits, so all seven barrel-shifter stages apply.
    const BARREL: [(u32, i32); 7] = [
        (FRACTIONAL_BITS - 2, 1_672_461_947),
        (FRACTIONAL_BITS - 1, 1_302_514_674),
        (FRACTIONAL_BITS, 790_015_084),
        (FRACTIONAL_BITS + 1, 290_630_308),
        (FRACTIONAL_BITS + 2, 39_332_535),
        (FRACTIONAL_BITS + 3, 720_401),
        (FRACTIONAL_BITS + 4, 242),
    ];
    if a == 0 {
        return i32::MAX;
    }
    let a_mod_quarter_minus_one_quarter = (a & MASK).wrapping_sub(ONE_QUARTER);
    // Rescale Q5.26 -> Q0.31: a saturating multiply by 2^5.
    let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(saturating_shl(
        a_mod_quarter_minus_one_quarter,
        5,
    ));
    let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
    for &(bit, multiplier) in BARREL.iter() {
        if remainder & (1i32 << bit) != 0 {
            result = saturating_rounding_doubling_high_mul(result, multiplier);
        }
    }
    result
}

/// gemmlowp `one_over_one_plus_x_for_x_in_0_1`, Q0.31 in and out.
pub(crate) fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
    const C48_OVER_17: i32 = 1_515_870_810; // Q2.29
    const CNEG32_OVER_17: i32 = -1_010_580_540; // Q2.29
    const F2_ONE: i32 = 1 << 29;
    let mul = saturating_rounding_doubling_high_mul;
    // RoundingHalfSum(a, One) with One = i32::MAX in Q0.31.
    let sum = a as i64 + i32::MAX as i64;
    let sign = if sum >= 0 { 1 } else { -1 };
    let half_denominator = ((sum + sign) / 2) as i32;
    let mut x = C48_OVER_17.wrapping_add(mul(half_denominator, CNEG32_OVER_17));
    for _ in 0..3 {
        let half_denominator_times_x = mul(half_denominator, x);
        let one_minus = F2_ONE.wrapping_sub(half_denominator_times_x);
        // Q2 * Q2 = Q4, rescaled to Q2 with a saturating multiply by 4.
        x = x.wrapping_add(saturating_shl(mul(x, one_minus), 2));
    }
    // x is 1/(1+a) / 2 in Q2.29 == 1/(1+a) in Q1.30; rescale to Q0.31.
    saturating_shl(x, 1)
}

/// TFLite `GetReciprocal`: for `x` in Q(`integer_digits`).(31 - integer_digits),
/// returns `(reciprocal_q0_31, num_bits_over_unit)` such that
/// `1/x = reciprocal * 2^-num_bits_over_unit`.
pub(crate) fn get_reciprocal(x: i32, integer_digits: i32) -> (i32, i32) {
    let headroom_plus_one = (x as u32).leading_zeros();
    let num_bits_over_unit = integer_digits - headroom_plus_one as i32;
    let shifted_sum_minus_one = (x as u32)
        .checked_shl(headroom_plus_one)
        .unwrap_or(0)
        .wrapping_sub(1u32 << 31) as i32;
    (
        one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one),
        num_bits_over_unit,
    )
}

/// One output channel's requantization, prepared once per channel: the same bits as
/// [`multiply_by_quantized_multiplier`] (double rounding), with the shift split into a
/// left shift and a rounding right shift whose mask and threshold are computed up front
/// (CMSIS-NN `arm_nn_requantize` / `arm_nn_divide_by_power_of_two`).
#[derive(Clone, Copy)]
pub(crate) struct ChannelRq {
    multiplier: i32,
    /// `2^right - 1`.
    mask: i32,
    left: u8,
    right: u8,
}

impl ChannelRq {
    /// Multiplier 0: every output is the zero point (clamped).
    pub(crate) const ZERO: ChannelRq = ChannelRq {
        multiplier: 0,
        mask: 0,
        left: 0,
        right: 0,
    };

    /// Prepares `multiplier * 2^shift / 2^31` (shifts beyond 31 clamped, as in
    /// [`multiply_by_quantized_multiplier`]).
    #[inline(always)]
    pub(crate) fn new(multiplier: i32, shift: i32) -> Self {
        let right = shift.saturating_neg().clamp(0, 31) as u32;
        ChannelRq {
            multiplier,
            mask: ((1u32 << right) - 1) as i32,
            left: shift.clamp(0, 31) as u8,
            right: right as u8,
        }
    }

    /// Prepares `multiplier_by_quantized_multiplier(x.wrapping_shl(pre), multiplier,
    /// shift)` for `pre <= 31`: the two left shifts become one (wrapping shifts that
    /// together exceed 31 leave 0, and so does multiplier 0).
    #[cfg(feature = "add")]
    #[inline(always)]
    pub(crate) fn with_pre_shift(multiplier: i32, shift: i32, pre: u32) -> Self {
        let mut rq = Self::new(multiplier, shift);
        let left = u32::from(rq.left) + pre.min(31);
        if left > 31 {
            return Self::ZERO;
        }
        rq.left = left as u8;
        rq
    }

    /// [`multiply_by_quantized_multiplier`]`(acc, multiplier, shift)`.
    #[inline(always)]
    pub(crate) fn apply(&self, acc: i32) -> i32 {
        #[cfg(all(target_arch = "arm", edgekd_dsp))]
        {
            crate::arm::requant(
                acc,
                self.multiplier,
                u32::from(self.left),
                u32::from(self.right),
                self.mask,
            )
        }
        #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
        {
            self.apply_portable(acc)
        }
    }

    /// [`Self::apply`] in plain Rust.
    #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
    #[inline(always)]
    fn apply_portable(&self, acc: i32) -> i32 {
        #[cfg(target_arch = "arm")]
        let srdhm = srdhm_halves;
        #[cfg(not(target_arch = "arm"))]
        let srdhm = saturating_rounding_doubling_high_mul;
        let v = srdhm(acc.wrapping_shl(u32::from(self.left)), self.multiplier);
        // RoundingDivideByPOT: ties away from zero (one more for negative values).
        let threshold = (self.mask >> 1) + (v as u32 >> 31) as i32;
        (v >> self.right) + i32::from((v & self.mask) > threshold)
    }

    /// [`Self::apply`], plus the output zero point, clamped to `[lo, hi]` as int8.
    #[inline(always)]
    pub(crate) fn output(&self, acc: i32, out_zp: i32, lo: i32, hi: i32) -> i8 {
        clamp_to_i8(self.apply(acc).wrapping_add(out_zp), lo, hi)
    }
}

/// One ADD input's rescaling, [`multiply_by_quantized_multiplier`]`(d << left_shift,
/// multiplier, shift)` for `|d| <= 255` (`d = x - zero_point`), in 32-bit arithmetic:
/// two multiply-adds and two shifts, no 64-bit product, one rounding step.
///
/// With `q = 31 - left_shift` and `x = d * 2^left_shift`, gemmlowp's high multiply is
/// `v = floor((d * m + 2^(q-1)) / 2^q)` (`floor((x * m + 2^30) / 2^31)`, as in
/// [`RoundingRq`]), and splitting `m = mh * 2^q + ml` gives
/// `v = d * mh + floor((d * ml + 2^(q-1)) / 2^q)`. TFLite's rounding divide by `2^r`
/// (`r = -shift`) is `floor((v + 2^(r-1) - [v < 0]) / 2^r)`; `2^(r-1)` moves inside the
/// inner floor as `2^(q+r-1)`, and `[v < 0]` may be replaced by `[d < 0]` (they differ
/// only when `v = 0`, where both give 0). For `r = 0` there is no divide.
#[cfg(feature = "add")]
#[derive(Clone, Copy)]
pub(crate) struct InputRescale {
    mh: i32,
    ml: i32,
    /// `2^(q-1) + 2^(q+r-1)` (no second term for `r = 0`).
    nudge: i32,
    /// All ones when `r > 0` (the `[d < 0]` term), else 0.
    sign_mask: i32,
    q: u32,
    r: u32,
}

#[cfg(feature = "add")]
impl InputRescale {
    /// `None` unless `multiplier >= 0`, `shift <= 0`, `left_shift` is in `9..=22` (TFLite
    /// uses 20) and `q - shift <= 30`: then no product or sum can overflow
    /// (`|d * mh| <= 255 * 2^22`, `|d * ml| + nudge < 255 * 2^22 + 2^30`).
    #[inline(always)]
    pub(crate) fn new(multiplier: i32, shift: i32, left_shift: i32) -> Option<Self> {
        if multiplier < 0 || shift > 0 || !(9..=22).contains(&left_shift) {
            return None;
        }
        let q = 31 - left_shift as u32;
        let r = shift.unsigned_abs();
        if q + r > 30 {
            return None;
        }
        Some(InputRescale {
            mh: multiplier >> q,
            ml: multiplier & ((1 << q) - 1),
            nudge: (1 << (q - 1)) + if r > 0 { 1 << (q + r - 1) } else { 0 },
            sign_mask: if r > 0 { -1 } else { 0 },
            q,
            r,
        })
    }

    /// The rescaled input for `d = x - zero_point`, `|d| <= 255`.
    #[inline(always)]
    pub(crate) fn apply(&self, d: i32) -> i32 {
        let t = d.wrapping_mul(self.ml).wrapping_add(self.nudge) >> self.q;
        let u = d
            .wrapping_mul(self.mh)
            .wrapping_add(t)
            .wrapping_add((d >> 31) & self.sign_mask);
        u >> self.r
    }
}

/// Whether [`RoundingRq`] (the DSP kernels' single-step requantization) takes this
/// channel: `-23 <= shift < 0`, `multiplier >= 0` and `|zero_point| <= 128`. Compiled on
/// every target so host tools can tell which layers a DSP build serves on its fast path.
pub(crate) fn single_step_fits(multiplier: i32, shift: i32, zero_point: i32) -> bool {
    multiplier >= 0 && (-23..0).contains(&shift) && (-128..=128).contains(&zero_point)
}

/// Whether every channel of `rq` takes [`RoundingRq`]'s single-step form
/// ([`single_step_fits`]) with output zero point `zero_point`.
pub(crate) fn all_single_step(rq: &crate::Requant<'_>, zero_point: i32) -> bool {
    rq.multiplier
        .iter()
        .zip(rq.shift)
        .all(|(&m, &s)| single_step_fits(m, s, zero_point))
}

/// Whether [`rounding_shift`] takes a channel: `-23 <= shift <= -2`, `multiplier >= 0`.
#[cfg_attr(not(all(target_arch = "arm", edgekd_dsp)), allow(dead_code))]
#[inline(always)]
pub(crate) fn rounding_shift_fits(multiplier: i32, shift: i32) -> bool {
    multiplier >= 0 && (-23..=-2).contains(&shift)
}

/// [`multiply_by_quantized_multiplier`]`(x, m, shift) + zero_point` for the channels
/// [`rounding_shift_fits`] takes, with no per-channel preparation (fully connected
/// layers use each channel once per row, so preparing a [`RoundingRq`] would cost more
/// than it saves).
///
/// With `r = -shift`, [`RoundingRq`]'s single rounding step without its per-channel
/// terms is `P = x * m + 2^30 - [x < 0] * 2^31`, and the result is
/// `floor((P + 2^(30+r)) / 2^(31+r))`. For `r >= 2`, `2^(30+r)` is a multiple of `2^32`,
/// so the low word of `P` cannot carry into the sum: with `h = P >> 32`, the result is
/// `floor((h + 2^(r-2)) / 2^(r-1))`, and adding the zero point inside the floor,
/// `floor((h + (2 * zp + 1) * 2^(r-2)) / 2^(r-1))`. On Cortex-M the term
/// `(2 * zp + 1) << (r - 2)` (below `2^29` in magnitude: it cannot overflow the high
/// word) is the high word `SMLAL` accumulates into, so an output is two `SMLAL`s and
/// one shift ([`crate::arm::fully_connected`]).
// The definition the Cortex-M asm follows; only the tests call it.
#[cfg_attr(not(test), allow(dead_code))]
#[inline(always)]
pub(crate) fn rounding_shift(x: i32, multiplier: i32, shift: i32, zero_point: i32) -> i32 {
    let r = -shift;
    let sign = if x < 0 { 1i64 << 31 } else { 0 };
    let high = ((2 * zero_point + 1) << (r - 2)) as i64;
    let p = i64::from(x) * i64::from(multiplier) + (1 << 30) - sign + (high << 32);
    ((p >> 32) as i32) >> (r - 1)
}

/// One output channel's requantization plus output zero point in a single rounding
/// step, for the common case of a dividing shift (`-23 <= shift < 0`) and a
/// non-negative multiplier: the same bits as
/// [`multiply_by_quantized_multiplier`]`(x, m, shift) + zero_point`, from one 64-bit sum.
///
/// With `v = floor((x * m + 2^30) / 2^31)` (gemmlowp's high multiply; it cannot saturate
/// for `m >= 0`) and `r = -shift`, TFLite's rounding divide is
/// `floor((v + 2^(r-1) - [v < 0]) / 2^r)`, and because `floor((floor(a / b) + c) / d)
/// = floor((a + c * b) / (b * d))` for integers, the whole plus the zero point `z` is
/// `floor((x * m + 2^30 + 2^(30+r) + z * 2^(31+r) - [v < 0] * 2^31) / 2^(31+r))`.
/// `[v < 0]` may be replaced by `[x < 0]`: they differ only when `v = 0`, where both give
/// the same result. So the nudge `2^30 + 2^(30+r) + z * 2^(31+r)` is a per-channel
/// constant (the sum cannot overflow for `r <= 23`: `|x * m| < 2^62`, the nudge is below
/// `2^62`), the sign term one more multiply (`SMLAL` of `x >> 31` by `i32::MIN` on
/// Cortex-M) and the division the high word shifted by `r - 1`.
// `repr(C)`: the conv channel loop's asm reads the fields at fixed offsets. Compiled
// with the conv and fully connected kernels on every target: their prepared tables
// carry one per output channel (`conv2d_wide_weights`, `fc_wide_weights`), which host
// tools write.
#[cfg(any(
    test,
    feature = "fully-connected",
    all(target_arch = "arm", edgekd_dsp)
))]
#[derive(Clone, Copy)]
#[repr(C)]
pub(crate) struct RoundingRq {
    pub(crate) multiplier: i32,
    /// `2^30 + 2^(30+r)`, low and high words.
    pub(crate) nudge_lo: u32,
    pub(crate) nudge_hi: i32,
    /// `r - 1`.
    pub(crate) shift: u32,
}

#[cfg(any(
    test,
    feature = "fully-connected",
    all(target_arch = "arm", edgekd_dsp)
))]
impl RoundingRq {
    /// Prepares `multiplier * 2^shift / 2^31` plus `zero_point`; `None` unless
    /// `-23 <= shift < 0`, `multiplier >= 0` and `|zero_point| <= 128`.
    #[inline(always)]
    pub(crate) fn new(multiplier: i32, shift: i32, zero_point: i32) -> Option<Self> {
        if !single_step_fits(multiplier, shift, zero_point) {
            return None;
        }
        // In 32-bit halves (64-bit shifts cost a dozen instructions on Cortex-M): with
        // `1 <= r <= 23`, `2^(30+r)` is bit 31 of the low word (r = 1) or a bit of the
        // high word, and `z * 2^(31+r)` lies entirely in the high word.
        let r = shift.unsigned_abs();
        let (lo_bit, hi_bit) = if r == 1 {
            (1u32 << 31, 0)
        } else {
            (0, 1i32 << (r - 2))
        };
        Some(RoundingRq {
            multiplier,
            nudge_lo: (1 << 30) | lo_bit,
            nudge_hi: hi_bit + (zero_point << (r - 1)),
            shift: r - 1,
        })
    }

    /// The four fields as words, in `repr(C)` order (a table's entry).
    #[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
    pub(crate) fn words(&self) -> [i32; 4] {
        let shift = self.shift as i32; // at most 22
        [self.multiplier, self.nudge_lo as i32, self.nudge_hi, shift]
    }

    /// [`multiply_by_quantized_multiplier`]`(x, multiplier, shift) + zero_point`.
    // Host test builds compile the type for its test only.
    #[cfg_attr(not(all(target_arch = "arm", edgekd_dsp)), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn apply(&self, x: i32) -> i32 {
        #[cfg(all(target_arch = "arm", edgekd_dsp))]
        {
            crate::arm::requant_rounding(x, self)
        }
        #[cfg(not(all(target_arch = "arm", edgekd_dsp)))]
        {
            self.apply_portable(x)
        }
    }

    /// [`Self::apply`] in plain Rust (the definition the Cortex-M version follows).
    #[cfg_attr(all(target_arch = "arm", edgekd_dsp), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn apply_portable(&self, x: i32) -> i32 {
        let nudge = (i64::from(self.nudge_hi) << 32) | i64::from(self.nudge_lo);
        let sign = if x < 0 { 1i64 << 31 } else { 0 };
        let sum = i64::from(x) * i64::from(self.multiplier) + nudge - sign;
        ((sum >> 32) as i32) >> self.shift
    }

    /// The requantized, offset and clamped output.
    #[cfg_attr(not(all(target_arch = "arm", edgekd_dsp)), allow(dead_code))]
    #[inline(always)]
    pub(crate) fn output(&self, acc: i32, lo: i32, hi: i32) -> i8 {
        clamp_to_i8(self.apply(acc), lo, hi)
    }
}

/// `acc / n` rounded half away from zero, as the TFLite reference writes it
/// (`acc > 0 ? (acc + n/2) / n : (acc - n/2) / n`), wrapping instead of UB.
#[inline]
pub(crate) fn rounded_div(acc: i32, n: i32) -> i32 {
    if acc > 0 {
        acc.wrapping_add(n / 2).wrapping_div(n)
    } else {
        acc.wrapping_sub(n / 2).wrapping_div(n)
    }
}

/// Requantizes an accumulator and clamps it the way the TFLite reference
/// kernels do (`max` with the lower bound first, then `min` with the upper).
#[inline(always)]
pub(crate) fn requantize(
    acc: i32,
    multiplier: i32,
    shift: i32,
    out_zp: i32,
    lo: i32,
    hi: i32,
) -> i8 {
    let v = multiply_by_quantized_multiplier(acc, multiplier, shift).wrapping_add(out_zp);
    clamp_to_i8(v, lo, hi)
}

/// `min(max(v, lo), hi)` narrowed to i8; `lo`/`hi` come from a [`crate::Clamp`]
/// so the result is always in i8 range, even if `lo > hi`.
#[inline(always)]
pub(crate) fn clamp_to_i8(v: i32, lo: i32, hi: i32) -> i8 {
    v.max(lo).min(hi) as i8
}

/// Fused activation of a quantized output (TFLite `CalculateActivationRangeQuantized`).
#[cfg(feature = "std")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// No activation: `[-128, 127]`.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
}

/// Splits a finite nonzero `x` into `(q, e)` with `x = q * 2^e`, `0.5 <= |q| < 1`
/// (C `frexp`).
#[cfg(feature = "std")]
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let mut bits = x.to_bits();
    let mut exp = ((bits >> 52) & 0x7ff) as i32;
    let mut bias_fix = 0;
    if exp == 0 {
        // Subnormal: scale up by 2^64 first.
        bits = (x * f64::from_bits(0x43f0_0000_0000_0000)).to_bits();
        exp = ((bits >> 52) & 0x7ff) as i32;
        bias_fix = -64;
    }
    let q = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (q, exp - 1022 + bias_fix)
}

/// TFLite `QuantizeMultiplier`: `real ~= multiplier * 2^(shift - 31)` with the
/// multiplier in `[2^30, 2^31)`. Returns `(multiplier, shift)`; `(0, 0)` for 0,
/// for multipliers below about `2^-32` (shift < -31) and for non-finite input.
/// Shifts above 31 (multipliers of `2^31` and more) are capped at 31: such a
/// multiplier is useless for int8 kernels anyway.
#[cfg(feature = "std")]
pub fn quantize_multiplier(real: f64) -> (i32, i32) {
    if real == 0.0 || !real.is_finite() {
        return (0, 0);
    }
    let (q, mut shift) = frexp(real);
    let mut q_fixed = (q * (1u64 << 31) as f64).round() as i64;
    if q_fixed.abs() == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        return (0, 0);
    }
    if shift > 31 {
        return (if q_fixed < 0 { i32::MIN } else { i32::MAX }, 31);
    }
    (q_fixed as i32, shift)
}

/// TFLite `CalculateActivationRangeQuantized` for an int8 output.
#[cfg(feature = "std")]
pub fn activation_clamp(act: Activation, scale: f32, zero_point: i32) -> Clamp {
    let quantize = |f: f32| -> i32 { zero_point.saturating_add((f / scale).round() as i32) };
    let (lo, hi) = match act {
        Activation::None => (-128, 127),
        Activation::Relu => (quantize(0.0).max(-128), 127),
        Activation::Relu6 => (quantize(0.0).max(-128), quantize(6.0).min(127)),
    };
    Clamp {
        min: lo.clamp(-128, 127) as i8,
        max: hi.clamp(-128, 127) as i8,
    }
}

/// TFLite int8 ADD preparation (`left_shift = 20`, both inputs rescaled to
/// `2 * max(in1_scale, in2_scale)`).
#[cfg(feature = "std")]
#[allow(clippy::too_many_arguments)]
pub fn add_params(
    in1_scale: f32,
    in1_zp: i32,
    in2_scale: f32,
    in2_zp: i32,
    out_scale: f32,
    out_zp: i32,
    clamp: Clamp,
) -> AddParams {
    const LEFT_SHIFT: i32 = 20;
    let twice_max_input_scale = 2.0 * f64::from(in1_scale.max(in2_scale));
    let real_in1 = f64::from(in1_scale) / twice_max_input_scale;
    let real_in2 = f64::from(in2_scale) / twice_max_input_scale;
    let real_out = twice_max_input_scale / (f64::from((1i32 << LEFT_SHIFT) as f32 * out_scale));
    let (input1_multiplier, input1_shift) = quantize_multiplier(real_in1);
    let (input2_multiplier, input2_shift) = quantize_multiplier(real_in2);
    let (output_multiplier, output_shift) = quantize_multiplier(real_out);
    AddParams {
        input1_zero_point: in1_zp,
        input2_zero_point: in2_zp,
        output_zero_point: out_zp,
        left_shift: LEFT_SHIFT,
        input1_multiplier,
        input1_shift,
        input2_multiplier,
        input2_shift,
        output_multiplier,
        output_shift,
        clamp,
    }
}

/// TFLite softmax preparation: `PreprocessSoftmaxScaling(beta, input_scale, 5)`
/// (double-rounding variant, real multiplier capped at `2^31 - 1`) and
/// `diff_min = -CalculateInputRadius(5, left_shift)`.
///
/// TFLite requires `beta * input_scale * 2^26 > 1`; below that (an input scale
/// under about `1.5e-8`) this returns the nearest usable parameters (left
/// shift 0, multiplier shifted right) instead of failing.
#[cfg(feature = "std")]
pub fn softmax_params(input_scale: f32, beta: f32) -> SoftmaxParams {
    const INPUT_INTEGER_BITS: i32 = 5;
    let max_real_multiplier = (1i64 << 31) as f64 - 1.0;
    let real =
        (f64::from(beta) * f64::from(input_scale) * (1i64 << (31 - INPUT_INTEGER_BITS)) as f64)
            .min(max_real_multiplier);
    let (mut multiplier, mut left_shift) = quantize_multiplier(real);
    if left_shift < 0 {
        multiplier = rounding_divide_by_pot(multiplier, -left_shift);
        left_shift = 0;
    }
    // CalculateInputRadius(5, left_shift, 31).
    let max_input_rescaled = ((1i64 << INPUT_INTEGER_BITS) - 1) as f64
        * (1i64 << (31 - INPUT_INTEGER_BITS)) as f64
        / (1i64 << left_shift) as f64;
    let radius = max_input_rescaled.floor() as i32;
    SoftmaxParams {
        input_multiplier: multiplier,
        input_left_shift: left_shift,
        diff_min: -radius,
    }
}

/// Parameters of the TFLite int8 MEAN over H and W: the multiplier of
/// `in_scale / out_scale` (TFLite `QuantizeMultiplier`).
#[cfg(feature = "std")]
pub fn mean_params(
    in_scale: f32,
    in_zp: i32,
    out_scale: f32,
    out_zp: i32,
    clamp: Clamp,
) -> MeanParams {
    let (multiplier, shift) = quantize_multiplier(f64::from(in_scale) / f64::from(out_scale));
    MeanParams {
        input_zero_point: in_zp,
        output_zero_point: out_zp,
        multiplier,
        shift,
        clamp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accumulator edge values for the requantization tests.
    const EDGE_ACCS: [i32; 19] = [
        i32::MIN,
        i32::MIN + 1,
        -(1 << 30) - 1,
        -(1 << 30),
        -65537,
        -32768,
        -255,
        -3,
        -2,
        -1,
        0,
        1,
        2,
        3,
        255,
        32767,
        1 << 30,
        i32::MAX - 1,
        i32::MAX,
    ];

    /// A seeded xorshift generator.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    /// Accumulator-sized values most of the time, any i32 sometimes.
    fn random_acc(r: u64) -> i32 {
        if r % 4 == 0 {
            r as i32
        } else {
            (r as i32) >> (r % 20)
        }
    }

    #[test]
    fn rounding_rq_equals_multiply_by_quantized_multiplier() {
        let xs = EDGE_ACCS;
        let ms = [
            0,
            1,
            2,
            (1 << 30) - 1,
            1 << 30,
            (1 << 30) + 1,
            1_500_000_000,
            i32::MAX,
        ];
        let mut next = xorshift(0x1234_5678_9abc_def0);
        for shift in -40..=3 {
            for &m in &ms {
                for zp in [-128, -127, -1, 0, 1, 5, 127, 128] {
                    let Some(rq) = RoundingRq::new(m, shift, zp) else {
                        assert!(!(-23..0).contains(&shift), "shift {shift} m {m} refused");
                        continue;
                    };
                    let want = |x: i32, m: i32| {
                        multiply_by_quantized_multiplier(x, m, shift).wrapping_add(zp)
                    };
                    for &x in &xs {
                        assert_eq!(
                            rq.apply_portable(x),
                            want(x, m),
                            "x={x} m={m} shift={shift}"
                        );
                    }
                    for _ in 0..500 {
                        let x = random_acc(next());
                        let m = if m == i32::MAX {
                            (next() >> 33) as i32
                        } else {
                            m
                        };
                        let rq = RoundingRq::new(m, shift, zp).unwrap_or(rq);
                        let got = rq.apply_portable(x);
                        assert_eq!(got, want(x, rq.multiplier), "x={x} m={m} shift={shift}");
                    }
                }
            }
        }
        assert!(RoundingRq::new(-1, -3, 0).is_none());
        assert!(RoundingRq::new(1 << 30, 0, 0).is_none());
        assert!(RoundingRq::new(1 << 30, -24, 0).is_none());
        assert!(RoundingRq::new(1 << 30, -3, 129).is_none());
    }

    /// Every `d` in -255..=255 against the reference, for edge and random multipliers,
    /// every shift and left shift the rescaling takes; and what it refuses.
    #[cfg(feature = "add")]
    #[test]
    fn input_rescale_equals_multiply_by_quantized_multiplier() {
        let mut next = xorshift(0x5eed_0add_1234_5678);
        let mut checked = 0u32;
        for left_shift in 0..=31 {
            for shift in -32..=2 {
                let mut ms = [
                    0,
                    1,
                    (1 << 30) - 1,
                    1 << 30,
                    (1 << 30) + 1,
                    i32::MAX,
                    0,
                    0,
                    0,
                    0,
                ];
                for m in &mut ms[6..] {
                    *m = (next() >> 33) as i32;
                }
                for m in ms {
                    let Some(rs) = InputRescale::new(m, shift, left_shift) else {
                        let q = 31 - left_shift;
                        assert!(
                            !(9..=22).contains(&left_shift) || shift > 0 || q - shift > 30,
                            "refused m={m} shift={shift} left_shift={left_shift}"
                        );
                        continue;
                    };
                    for d in -255..=255 {
                        let want = multiply_by_quantized_multiplier(d << left_shift, m, shift);
                        assert_eq!(
                            rs.apply(d),
                            want,
                            "d={d} m={m} shift={shift} left_shift={left_shift}"
                        );
                    }
                    checked += 1;
                }
            }
        }
        // TFLite's own parameters (left shift 20, input shifts 0 and below) all run here.
        assert!(checked > 1000, "{checked}");
        assert!(InputRescale::new(-1, -1, 20).is_none());
        assert!(InputRescale::new(1 << 30, 1, 20).is_none());
        assert!(InputRescale::new(1 << 30, -20, 20).is_none());
        assert!(InputRescale::new(1 << 30, -19, 20).is_some());
    }

    #[test]
    fn rounding_shift_equals_multiply_by_quantized_multiplier() {
        let mut next = xorshift(0x0fed_cba9_8765_4321);
        for shift in -40..=3 {
            for m in [
                0,
                1,
                (1 << 30) - 1,
                1 << 30,
                1_500_000_000,
                i32::MAX,
                -1,
                i32::MIN,
            ] {
                if !rounding_shift_fits(m, shift) {
                    assert!(m < 0 || !(-23..=-2).contains(&shift), "m {m} shift {shift}");
                    continue;
                }
                for zp in [-128, -1, 0, 3, 127] {
                    let want = |x: i32, m: i32| multiply_by_quantized_multiplier(x, m, shift) + zp;
                    for &x in &EDGE_ACCS {
                        assert_eq!(
                            rounding_shift(x, m, shift, zp),
                            want(x, m),
                            "x={x} m={m} s={shift} zp={zp}"
                        );
                    }
                    for _ in 0..500 {
                        let x = random_acc(next());
                        let m = (next() >> 33) as i32;
                        assert_eq!(
                            rounding_shift(x, m, shift, zp),
                            want(x, m),
                            "x={x} m={m} s={shift} zp={zp}"
                        );
                    }
                }
            }
        }
        assert!(!rounding_shift_fits(1 << 30, -1));
        assert!(!rounding_shift_fits(1 << 30, -24));
        assert!(rounding_shift_fits(0, -23) && rounding_shift_fits(i32::MAX, -2));
    }

    #[test]
    fn srdhm_basics() {
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN),
            i32::MAX
        );
        assert_eq!(
            saturating_rounding_doubling_high_mul(1 << 30, 1 << 30),
            1 << 29
        );
        // 3 * 2^30 / 2^31 = 1.5 -> 2, but -1.5 -> -1: gemmlowp rounds ties upward.
        assert_eq!(saturating_rounding_doubling_high_mul(3, 1 << 30), 2);
        assert_eq!(saturating_rounding_doubling_high_mul(-3, 1 << 30), -1);
        assert_eq!(
            saturating_rounding_doubling_high_mul(i32::MIN, i32::MAX),
            -i32::MAX
        );
    }

    #[test]
    fn srdhm_halves_equals_srdhm() {
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -(1 << 30) - 1,
            -(1 << 30),
            -65537,
            -65536,
            -65535,
            -32768,
            -3,
            -1,
            0,
            1,
            3,
            32767,
            65535,
            65536,
            1 << 30,
            i32::MAX - 1,
            i32::MAX,
        ];
        for &a in &edges {
            for &b in &edges {
                assert_eq!(
                    srdhm_halves(a, b),
                    saturating_rounding_doubling_high_mul(a, b),
                    "{a} {b}"
                );
            }
        }
        let mut r: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..2_000_000 {
            r ^= r << 13;
            r ^= r >> 7;
            r ^= r << 17;
            let (a, b) = (r as i32, (r >> 32) as i32);
            // Small accumulators too, as conv outputs are.
            let a = if r & 0x100 != 0 { a >> (r >> 59) } else { a };
            assert_eq!(
                srdhm_halves(a, b),
                saturating_rounding_doubling_high_mul(a, b),
                "{a} {b}"
            );
        }
    }

    #[test]
    fn exp_and_reciprocal_accuracy() {
        // exp over (-32, 0] in Q5.26.
        let mut a = 0i32;
        while a > -(31 << 26) {
            let got = exp_on_negative_values_q5(a) as f64 / 2f64.powi(31);
            let want = (a as f64 / 2f64.powi(26)).exp();
            // A 4th-order Taylor polynomial on [-1/4, 0): error about 1e-7.
            assert!((got - want).abs() < 3e-7, "a={a} got={got} want={want}");
            a -= 12_345_677;
        }
        assert_eq!(exp_on_negative_values_q5(0), i32::MAX);
        // 1/(1+x) for x in [0, 1).
        let mut x = 0i32;
        while x < i32::MAX - 10_000_000 {
            let got = one_over_one_plus_x_for_x_in_0_1(x) as f64 / 2f64.powi(31);
            let want = 1.0 / (1.0 + x as f64 / 2f64.powi(31));
            assert!((got - want).abs() < 1e-8, "x={x} got={got} want={want}");
            x += 7_654_321;
        }
    }

    /// Regression pin of the raw fixed-point bits (FNV-1a over a grid). The f64
    /// accuracy test above cannot see a 1e-5 change in a barrel-shifter constant.
    #[test]
    fn fixed_point_bits_pinned() {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut feed = |v: i32| {
            for b in v.to_le_bytes() {
                h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
            }
        };
        let mut a = 0i32;
        while a > i32::MIN + 98_765 {
            feed(exp_on_negative_values_q5(a));
            a -= 98_765;
        }
        let mut x = 0i32;
        while x < i32::MAX - 200_000 {
            feed(one_over_one_plus_x_for_x_in_0_1(x));
            x += 198_765;
        }
        assert_eq!(h, 0x2c2d_a8cb_3192_a034, "fixed-point bits changed: {h:#x}");
    }

    #[test]
    fn get_reciprocal_scale() {
        // sum = 3.0 in Q12.19.
        let (r, n) = get_reciprocal(3 << 19, 12);
        let got = r as f64 / 2f64.powi(31) / 2f64.powi(n);
        assert!((got - 1.0 / 3.0).abs() < 1e-8, "{got} {n}");
        // sum = 0 must not panic.
        let _ = get_reciprocal(0, 12);
        let _ = get_reciprocal(-5, 12);
    }
}
