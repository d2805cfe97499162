//! `edgekd-kernels`: int8 kernels and fixed-point arithmetic for `edgekd-runtime`.
//!
//! Portable kernels follow the TFLite int8 spec and are bit-exact with CMSIS-NN
//! requantization ([`quant`]).
//!
//! Layout is NHWC everywhere; a 1-D signal is `H = 1`. Every kernel checks that the
//! slice lengths match the shapes it is given and returns [`KernelError::ShapeMismatch`]
//! otherwise, so no index inside a kernel can go out of bounds. The portable kernels
//! always compile and are the reference that any architecture-specific kernel is
//! tested against.
//!
//! Conventions shared by all kernels:
//! - `*_zero_point` are the tensors' zero points as stored (real = scale * (q - zp)).
//! - A [`Requant`] holds Q31 multipliers and exponents (`shift > 0` shifts left,
//!   `shift < 0` shifts right), one per output channel or a single per-tensor pair.
//! - The fused activation is an output clamp ([`Clamp`]).
//! - Sliding-window kernels (conv, depthwise, pooling) take the output shape from the
//!   caller and check it: kernel, stride and dilation must be `>= 1` and top/left
//!   padding smaller than the dilated kernel ([`KernelError::UnsupportedParams`]
//!   otherwise); the last window must start inside the input and one more window
//!   must not fit without bottom/right padding ([`KernelError::ShapeMismatch`]
//!   otherwise). This accepts every TFLite SAME/VALID and ONNX explicit-padding
//!   geometry; bottom/right padding is implied by the output size.
//! - All i32 arithmetic wraps where the C reference would overflow, so no input can
//!   make a kernel panic, even with overflow checks on.

#![no_std]
#![deny(missing_docs)]
// With some kernels compiled out (cargo features), helpers only they use are dead code.
#![cfg_attr(
    not(all(
        edgekd_conv2d,
        edgekd_depthwise,
        feature = "fully-connected",
        feature = "pool",
        feature = "mean",
        feature = "add",
        feature = "softmax"
    )),
    allow(dead_code, unused_imports)
)]

#[cfg(any(feature = "std", test))]
extern crate std;

#[cfg(feature = "add")]
mod add;
#[cfg(all(target_arch = "arm", edgekd_dsp))]
mod arm;
#[cfg(edgekd_conv2d)]
mod conv;
#[cfg(edgekd_depthwise)]
mod depthwise;
#[cfg(feature = "fully-connected")]
mod fully_connected;
#[cfg(any(edgekd_conv2d, feature = "fully-connected", edgekd_depthwise))]
mod matvec;
#[cfg(feature = "mean")]
mod mean;
#[cfg(feature = "pool")]
mod pool;
pub mod quant;
#[cfg(feature = "selftest")]
pub mod selftest;
#[cfg(feature = "softmax")]
mod softmax;

#[cfg(feature = "add")]
pub use add::{add, add_in, add_tables, check_add_table, ADD_TABLE_LEN};
#[cfg(edgekd_conv2d)]
pub use conv::{
    conv2d, conv2d_in, conv2d_needs_fallback, conv2d_wide_len, conv2d_wide_weights, ConvLayer,
};
#[cfg(edgekd_depthwise)]
pub use depthwise::{depthwise_conv2d, depthwise_conv2d_in};
#[cfg(feature = "fully-connected")]
pub use fully_connected::{
    fc_wide_len, fc_wide_weights, fully_connected, fully_connected_in,
    fully_connected_needs_fallback, FcLayer,
};
#[cfg(edgekd_conv2d)]
pub use matvec::conv2d_scratch_columns;
#[cfg(feature = "fully-connected")]
pub use matvec::fully_connected_scratch_columns;
#[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
pub use matvec::DEFAULT_MAX_COLS;

/// Whether this build's fully connected layers run faster from the filter widened to
/// 16 bits (`fc_wide_weights`, `FcLayer::with_wide_weights`): DSP cores with the fast
/// kernels. Elsewhere a widened filter is checked, then ignored.
pub const FC_USES_WIDE_WEIGHTS: bool = cfg!(all(
    target_arch = "arm",
    edgekd_dsp,
    not(edgekd_small_kernels)
));

/// Checks a prepared table handed in for a layer: 4-byte aligned (the DSP kernels load
/// it a word at a time) and equal to the layer's own, `expected`, entry for entry (so a
/// stale or foreign table is refused rather than computed with).
#[cfg(any(edgekd_conv2d, feature = "fully-connected", feature = "add"))]
pub(crate) fn check_table(
    table: &[i16],
    expected: impl Iterator<Item = i16>,
) -> Result<(), KernelError> {
    if table.as_ptr() as usize % 4 != 0 || !table.iter().copied().eq(expected) {
        return Err(KernelError::ShapeMismatch);
    }
    Ok(())
}

/// [`FC_USES_WIDE_WEIGHTS`] for Add layers (`add_tables`, `add_in`): the same builds.
pub const ADD_USES_TABLES: bool = FC_USES_WIDE_WEIGHTS;

/// [`FC_USES_WIDE_WEIGHTS`] for conv layers (`conv2d_wide_weights`,
/// `ConvLayer::with_wide_weights`): the same builds.
pub const CONV_USES_WIDE_WEIGHTS: bool = FC_USES_WIDE_WEIGHTS;
#[cfg(feature = "mean")]
pub use mean::global_avg_pool;
#[cfg(feature = "pool")]
pub use pool::{avg_pool2d, max_pool2d};
#[cfg(feature = "softmax")]
pub use softmax::softmax;

/// The portable reference versions of the kernels that have faster variants (im2col,
/// Cortex-M DSP): same contracts, same bits, the plainest code. Tests and the firmware
/// self-test compare the fast kernels against these.
pub mod reference {
    #[cfg(feature = "add")]
    pub use crate::add::add_reference as add;
    #[cfg(edgekd_conv2d)]
    pub use crate::conv::conv2d_reference as conv2d;
    #[cfg(edgekd_depthwise)]
    pub use crate::depthwise::depthwise_conv2d_reference as depthwise_conv2d;
    #[cfg(feature = "fully-connected")]
    pub use crate::fully_connected::fully_connected_reference as fully_connected;
    #[cfg(feature = "mean")]
    pub use crate::mean::global_avg_pool_reference as global_avg_pool;
    #[cfg(feature = "pool")]
    pub use crate::pool::{avg_pool2d_reference as avg_pool2d, max_pool2d_reference as max_pool2d};
}

/// Working memory of the im2col [`conv2d`], [`fully_connected`] and (DSP)
/// [`depthwise_conv2d`] kernels: an input column (512 bytes) and a block of prepared
/// per-channel requantization parameters (a 320-byte table on DSP cores, where fully
/// connected layers do without it; 256 bytes elsewhere). Firmware sizes the column to
/// its model (`EDGEKD_MAX_COLS`, see `conv2d_scratch_columns`). Those make a fresh one per call; a caller
/// running many layers (the interpreter) keeps one and passes it to `conv2d_in`,
/// `fully_connected_in` or `depthwise_conv2d_in`, which saves zeroing it for every
/// layer. What it holds between calls does not matter.
pub struct Scratch {
    #[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
    pub(crate) cols: matvec::Cols,
    #[cfg(all(
        any(edgekd_conv2d, feature = "fully-connected"),
        not(all(target_arch = "arm", edgekd_dsp))
    ))]
    pub(crate) chans: matvec::Chans,
    #[cfg(all(
        target_arch = "arm",
        edgekd_dsp,
        any(edgekd_conv2d, edgekd_depthwise),
        not(edgekd_no_channel_table)
    ))]
    pub(crate) layer: arm::table::Chans,
}

impl Scratch {
    /// Zeroed working memory.
    pub const fn new() -> Self {
        Scratch {
            #[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
            cols: matvec::Cols::new(),
            #[cfg(all(
                any(edgekd_conv2d, feature = "fully-connected"),
                not(all(target_arch = "arm", edgekd_dsp))
            ))]
            chans: matvec::Chans::new(),
            #[cfg(all(
                target_arch = "arm",
                edgekd_dsp,
                any(edgekd_conv2d, edgekd_depthwise),
                not(edgekd_no_channel_table)
            ))]
            layer: arm::table::Chans::new(),
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether this build uses the Cortex-M DSP (`SXTB16`/`SMLAD`) kernels.
pub const DSP_KERNELS: bool = cfg!(all(target_arch = "arm", edgekd_dsp));

/// Why a kernel refused to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KernelError {
    /// Slice lengths do not match the shapes, or the shapes do not fit together.
    ShapeMismatch,
    /// A parameter is outside what the kernel supports (zero stride, ...).
    UnsupportedParams,
}

/// An NHWC tensor shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Batch.
    pub n: usize,
    /// Height (1 for 1-D signals).
    pub h: usize,
    /// Width (the time axis for 1-D signals).
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Shape {
    /// Builds a shape.
    pub const fn new(n: usize, h: usize, w: usize, c: usize) -> Self {
        Shape { n, h, w, c }
    }

    /// Number of elements, or `None` on overflow.
    pub fn elements(&self) -> Option<usize> {
        self.n
            .checked_mul(self.h)?
            .checked_mul(self.w)?
            .checked_mul(self.c)
    }
}

/// Fused activation as an output clamp, in the output's quantized domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clamp {
    /// Lowest output value.
    pub min: i8,
    /// Highest output value.
    pub max: i8,
}

impl Clamp {
    /// No activation: the full int8 range.
    pub const NONE: Clamp = Clamp {
        min: i8::MIN,
        max: i8::MAX,
    };
}

/// Per-channel (or per-tensor, with one entry) requantization parameters.
#[derive(Debug, Clone, Copy)]
pub struct Requant<'a> {
    /// Q31 multipliers in `[2^30, 2^31)` (or 0).
    pub multiplier: &'a [i32],
    /// Exponents: positive shifts left, negative shifts right.
    pub shift: &'a [i32],
}

/// Parameters of [`conv2d`] and [`depthwise_conv2d`].
#[derive(Debug, Clone, Copy)]
pub struct ConvParams {
    /// Vertical stride (>= 1).
    pub stride_h: usize,
    /// Horizontal stride (>= 1).
    pub stride_w: usize,
    /// Vertical dilation (>= 1).
    pub dilation_h: usize,
    /// Horizontal dilation (>= 1).
    pub dilation_w: usize,
    /// Zero rows added above the input (bottom padding follows from the output shape).
    pub pad_top: usize,
    /// Zero columns added left of the input.
    pub pad_left: usize,
    /// Output channels per input channel (depthwise only; 1 for plain conv).
    pub depth_multiplier: usize,
    /// Input zero point.
    pub input_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
    /// Fused activation.
    pub clamp: Clamp,
}

/// Parameters of [`fully_connected`].
#[derive(Debug, Clone, Copy)]
pub struct FcParams {
    /// Input zero point.
    pub input_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
    /// Fused activation.
    pub clamp: Clamp,
}

/// Parameters of [`max_pool2d`] and [`avg_pool2d`]; input and output share quantization.
#[derive(Debug, Clone, Copy)]
pub struct PoolParams {
    /// Window height.
    pub filter_h: usize,
    /// Window width.
    pub filter_w: usize,
    /// Vertical stride.
    pub stride_h: usize,
    /// Horizontal stride.
    pub stride_w: usize,
    /// Rows of padding above (padded cells are ignored, not zeros).
    pub pad_top: usize,
    /// Columns of padding left.
    pub pad_left: usize,
    /// Fused activation.
    pub clamp: Clamp,
}

/// Parameters of [`global_avg_pool`] (TFLite MEAN over H and W).
#[derive(Debug, Clone, Copy)]
pub struct MeanParams {
    /// Input zero point.
    pub input_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
    /// Q31 multiplier of `input_scale / output_scale`.
    pub multiplier: i32,
    /// Exponent of that multiplier.
    pub shift: i32,
    /// Fused activation.
    pub clamp: Clamp,
}

/// Parameters of [`add`] (TFLite int8 ADD).
#[derive(Debug, Clone, Copy)]
pub struct AddParams {
    /// Zero point of the first input.
    pub input1_zero_point: i32,
    /// Zero point of the second input.
    pub input2_zero_point: i32,
    /// Output zero point.
    pub output_zero_point: i32,
    /// Left shift applied to both inputs before rescaling (TFLite uses 20 for int8).
    pub left_shift: i32,
    /// Multiplier of `input1_scale / (2 * max_input_scale)`.
    pub input1_multiplier: i32,
    /// Its exponent.
    pub input1_shift: i32,
    /// Multiplier of `input2_scale / (2 * max_input_scale)`.
    pub input2_multiplier: i32,
    /// Its exponent.
    pub input2_shift: i32,
    /// Multiplier of `2 * max_input_scale / (2^left_shift * output_scale)`.
    pub output_multiplier: i32,
    /// Its exponent.
    pub output_shift: i32,
    /// Fused activation.
    pub clamp: Clamp,
}

/// Parameters of [`softmax`] (TFLite int8 softmax, output scale 1/256, zero point -128).
#[derive(Debug, Clone, Copy)]
pub struct SoftmaxParams {
    /// Multiplier of `beta * input_scale * 2^(31 - 5)` (a "greater than one" multiplier).
    pub input_multiplier: i32,
    /// Its left shift.
    pub input_left_shift: i32,
    /// Differences from the row maximum below this give an output of -128.
    pub diff_min: i32,
}

/// Checks that a slice has exactly the length a shape implies.
pub(crate) fn check_len(len: usize, shape: Shape) -> Result<(), KernelError> {
    match shape.elements() {
        Some(n) if n == len => Ok(()),
        _ => Err(KernelError::ShapeMismatch),
    }
}

/// The activation lengths a checked layer (`ConvLayer`, `FcLayer`) was made for.
#[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
#[derive(Debug, Clone, Copy)]
pub(crate) struct Activations {
    pub(crate) input: usize,
    pub(crate) output: usize,
}

#[cfg(any(edgekd_conv2d, feature = "fully-connected"))]
impl Activations {
    /// [`KernelError::ShapeMismatch`] unless `input` and `output` have these lengths.
    #[inline(always)]
    pub(crate) fn check(self, input: &[i8], output: &[i8]) -> Result<(), KernelError> {
        if input.len() == self.input && output.len() == self.output {
            Ok(())
        } else {
            Err(KernelError::ShapeMismatch)
        }
    }
}

/// Checks that a [`Requant`] has one entry (per tensor) or exactly one per output
/// channel, with as many shifts as multipliers.
pub(crate) fn check_requant(rq: &Requant<'_>, channels: usize) -> Result<(), KernelError> {
    let n = rq.multiplier.len();
    if n == rq.shift.len() && (n == 1 || n == channels) {
        Ok(())
    } else {
        Err(KernelError::ShapeMismatch)
    }
}

/// Checks that an optional bias has one entry per output channel.
pub(crate) fn check_bias(bias: Option<&[i32]>, channels: usize) -> Result<(), KernelError> {
    match bias {
        Some(b) if b.len() != channels => Err(KernelError::ShapeMismatch),
        _ => Ok(()),
    }
}

/// `acc + sum((x - zp) * w)` in wrapping i32 arithmetic (exact modulo 2^32, so any
/// summation order gives the same bits as the C reference).
#[inline(always)]
pub(crate) fn dot(mut acc: i32, x: &[i8], w: &[i8], zp: i32) -> i32 {
    for (&a, &b) in x.iter().zip(w) {
        acc = acc.wrapping_add(i32::from(a).wrapping_sub(zp).wrapping_mul(i32::from(b)));
    }
    acc
}

/// One validated spatial axis of a sliding-window kernel (conv, depthwise, pool).
///
/// Accepted geometry (everything TFLite's SAME/VALID and ONNX explicit padding
/// produce): kernel, stride and dilation `>= 1`, `pad < effective kernel`
/// (`(k - 1) * dilation + 1`), the last window starts inside the input
/// (`(out - 1) * stride < in + pad`), and one more output would not fit without
/// bottom padding (`out * stride + eff > in + pad`). Zero
/// kernel/stride/dilation or too much padding is [`KernelError::UnsupportedParams`];
/// an output size outside those bounds is [`KernelError::ShapeMismatch`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Axis {
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
}

/// The output columns `lo..hi` whose windows (dilation 1) lie wholly inside a row of
/// `input` entries: from the first past the left padding to the last that ends inside.
#[cfg_attr(
    not(all(
        target_arch = "arm",
        edgekd_dsp,
        not(edgekd_small_kernels),
        any(edgekd_conv2d, edgekd_depthwise, feature = "pool")
    )),
    allow(dead_code)
)]
pub(crate) fn whole_windows(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    output: usize,
) -> (usize, usize) {
    let stride = stride.max(1);
    let lo = pad.div_ceil(stride).min(output);
    let hi = (input + pad)
        .checked_sub(kernel)
        .map_or(0, |room| room / stride + 1)
        .clamp(lo, output);
    (lo, hi)
}

impl Axis {
    pub(crate) fn new(
        input: usize,
        output: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
    ) -> Result<Self, KernelError> {
        if kernel == 0 || stride == 0 || dilation == 0 {
            return Err(KernelError::UnsupportedParams);
        }
        let eff = (kernel - 1)
            .checked_mul(dilation)
            .and_then(|v| v.checked_add(1))
            .ok_or(KernelError::UnsupportedParams)?;
        if pad >= eff {
            return Err(KernelError::UnsupportedParams);
        }
        let span = input.checked_add(pad).ok_or(KernelError::ShapeMismatch)?;
        if output > 0 {
            let last_start = (output - 1)
                .checked_mul(stride)
                .ok_or(KernelError::ShapeMismatch)?;
            if last_start >= span {
                return Err(KernelError::ShapeMismatch);
            }
        }
        // `out * stride + eff > in + pad`; an overflowing left side is "greater".
        let next_end = output.checked_mul(stride).and_then(|v| v.checked_add(eff));
        if matches!(next_end, Some(e) if e <= span) {
            return Err(KernelError::ShapeMismatch);
        }
        Ok(Axis {
            input,
            kernel,
            stride,
            dilation,
            pad,
        })
    }

    /// An axis [`Axis::new`] accepted earlier (same values), rebuilt without repeating
    /// its checks: layers checked once store their shapes, not their axes.
    #[inline(always)]
    pub(crate) fn accepted(
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        pad: usize,
    ) -> Self {
        Axis {
            input,
            kernel,
            stride,
            dilation,
            pad,
        }
    }

    /// The outputs `lo..hi` of `output` whose windows hold the whole kernel, for an
    /// axis without dilation ([`whole_windows`]).
    #[cfg(all(
        target_arch = "arm",
        edgekd_dsp,
        not(edgekd_small_kernels),
        any(edgekd_depthwise, feature = "pool")
    ))]
    pub(crate) fn whole(&self, output: usize) -> (usize, usize) {
        whole_windows(self.input, self.kernel, self.stride, self.pad, output)
    }

    /// For output index `o` (< the validated output size): the kernel taps
    /// `k0..k1` that land inside the input and the input index of tap `k0`.
    /// Returns `(0, 0, 0)` when no tap lands inside (only possible with dilation).
    #[inline]
    pub(crate) fn window(&self, o: usize) -> (usize, usize, usize) {
        // Validation guarantees origin < input + pad, so nothing below overflows.
        let origin = o * self.stride;
        if self.dilation == 1 {
            // The common case, without the two divisions.
            let k0 = self.pad.saturating_sub(origin);
            let k1 = self.kernel.min(self.input + self.pad - origin);
            if k0 >= k1 {
                return (0, 0, 0);
            }
            return (k0, k1, origin + k0 - self.pad);
        }
        let d = self.dilation;
        let k0 = if origin >= self.pad {
            0
        } else {
            (self.pad - origin).div_ceil(d)
        };
        let k1 = self
            .kernel
            .min((self.input + self.pad - origin).div_ceil(d));
        if k0 >= k1 {
            return (0, 0, 0);
        }
        (k0, k1, origin + k0 * d - self.pad)
    }
}
