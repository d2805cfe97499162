//! Random bit-exactness check of the fast kernels against [`crate::reference`], usable
//! without `std`: the host test suite runs it for the portable fast paths (im2col) and
//! the firmware's `selftest` feature runs it in QEMU for the Cortex-M DSP kernels.
//!
//! Shapes, strides, dilations, paddings, zero points, clamps and per-tensor or
//! per-channel requantization are drawn from a seeded generator; each case must give
//! the same `Result` and the same output bytes from both implementations.

#[cfg(feature = "add")]
use crate::{add, AddParams};
#[cfg(feature = "pool")]
use crate::{avg_pool2d, max_pool2d, PoolParams};
use crate::{
    conv2d, conv2d_wide_len, depthwise_conv2d, fc_wide_len, fully_connected, reference, Clamp,
    ConvLayer, ConvParams, FcLayer, FcParams, KernelError, Requant, Scratch, Shape,
};
#[cfg(feature = "mean")]
use crate::{global_avg_pool, MeanParams};

// Small enough for the stack of a 16 KB Cortex-M0.
const MAX_IN: usize = 1024;
const MAX_FILTER: usize = 2048;
const MAX_OUT: usize = 1024;
const MAX_CH: usize = 64;
const MAX_WIDE: usize = 1024;

/// A widened filter, aligned as `FcLayer::with_wide_weights` and
/// `ConvLayer::with_wide_weights` need.
#[repr(C, align(4))]
struct Wide([i16; MAX_WIDE]);

// An Add layer's prepared table fits the same buffer.
#[cfg(feature = "add")]
const _: () = assert!(MAX_WIDE >= crate::ADD_TABLE_LEN);

/// Which kernel a case exercised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    /// [`conv2d`].
    Conv2d,
    /// [`depthwise_conv2d`].
    DepthwiseConv2d,
    /// [`fully_connected`].
    FullyConnected,
}

/// Counts for one kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Cases run (both implementations accepted or both refused the shapes).
    pub cases: u32,
    /// Cases where the implementations disagreed.
    pub mismatches: u32,
    /// Multiply-accumulates covered by the accepted cases.
    pub macs: u64,
    /// Of the cases, those run a second time from the prepared table
    /// (`FcLayer::with_wide_weights`, `ConvLayer::with_wide_weights`, `add_in`).
    pub wide: u32,
    /// Of the conv cases run from the table, those DSP builds run on the dense
    /// paired-pixel path (`ConvLayer::runs_dense`); of the depthwise and pooling cases,
    /// those with whole one-row windows, which DSP builds run in one asm block per row.
    pub dense: u32,
}

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    /// A generator for `seed` (odd, so the state never sticks at zero).
    fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + (self.next() % ((hi - lo + 1) as u64)) as i32
    }
    fn usize(&mut self, lo: usize, hi: usize) -> usize {
        self.range(lo as i32, hi as i32) as usize
    }
    /// A random clamp half the time (its bounds in either order), else none.
    fn clamp(&mut self) -> Clamp {
        if self.range(0, 2) != 0 {
            return Clamp::NONE;
        }
        let (x, y) = (self.range(-128, 127), self.range(-128, 127));
        Clamp {
            min: x.min(y) as i8,
            max: x.max(y) as i8,
        }
    }
    fn fill(&mut self, buf: &mut [i8], lo: i32, hi: i32) {
        for v in buf {
            *v = self.range(lo, hi) as i8;
        }
    }
}

/// Random requantization, bias, zero points and clamp shared by all kernels.
struct Common {
    mult: [i32; MAX_CH],
    shift: [i32; MAX_CH],
    bias: [i32; MAX_CH],
    channels: usize,
    per_tensor: bool,
    has_bias: bool,
    in_zp: i32,
    out_zp: i32,
    clamp: Clamp,
}

impl Common {
    fn new(rng: &mut Rng, channels: usize) -> Self {
        let mut c = Common {
            mult: [0; MAX_CH],
            shift: [0; MAX_CH],
            bias: [0; MAX_CH],
            channels,
            per_tensor: rng.range(0, 3) == 0,
            has_bias: rng.range(0, 4) != 0,
            in_zp: rng.range(-128, 127),
            out_zp: rng.range(-128, 127),
            clamp: Clamp::NONE,
        };
        // Mostly realistic (dividing) exponents, which DSP builds requantize in one
        // rounding step; one layer in eight draws from the whole range (left shifts
        // and 0 too), which sends DSP builds to the reference path.
        let wide = rng.range(0, 8) == 0;
        for i in 0..channels {
            c.mult[i] = rng.range(1 << 30, i32::MAX);
            c.shift[i] = if wide {
                rng.range(-31, 3)
            } else {
                rng.range(-14, -1)
            };
            c.bias[i] = rng.range(-40_000, 40_000);
        }
        if rng.range(0, 2) == 0 {
            let a = rng.range(-128, 127);
            let b = rng.range(-128, 127);
            c.clamp = Clamp {
                min: a.min(b) as i8,
                max: a.max(b) as i8,
            };
        }
        c
    }
    fn rq(&self) -> Requant<'_> {
        let n = if self.per_tensor { 1 } else { self.channels };
        Requant {
            multiplier: &self.mult[..n],
            shift: &self.shift[..n],
        }
    }
    fn bias(&self) -> Option<&[i32]> {
        self.has_bias.then_some(&self.bias[..self.channels])
    }
}

/// TFLite output size and top/left padding of one axis (`None` if VALID cannot fit).
fn out_and_pad(
    input: usize,
    k: usize,
    stride: usize,
    dil: usize,
    same: bool,
) -> Option<(usize, usize)> {
    let eff = (k - 1) * dil + 1;
    if same {
        let out = input.div_ceil(stride);
        let total = ((out - 1) * stride + eff).saturating_sub(input);
        Some((out, total / 2))
    } else if input >= eff {
        Some(((input - eff) / stride + 1, 0))
    } else {
        None
    }
}

fn compare(
    fast: Result<(), KernelError>,
    reference: Result<(), KernelError>,
    a: &[i8],
    b: &[i8],
    macs: u64,
    t: &mut Tally,
) {
    t.cases += 1;
    if fast != reference || a != b {
        t.mismatches += 1;
    } else if fast.is_ok() {
        t.macs += macs;
    }
}

/// Runs `cases` random cases of each kernel from `seed` and returns the tallies of
/// conv, depthwise and fully connected, in that order.
pub fn run(seed: u64, cases: u32) -> [(Kernel, Tally); 3] {
    let mut rng = Rng::seeded(seed);
    let mut input = [0i8; MAX_IN];
    let mut filter = [0i8; MAX_FILTER];
    let mut out_a = [0i8; MAX_OUT];
    let mut out_b = [0i8; MAX_OUT];
    let mut wide_buf = Wide([0; MAX_WIDE]);
    let mut tallies = [
        (Kernel::Conv2d, Tally::default()),
        (Kernel::DepthwiseConv2d, Tally::default()),
        (Kernel::FullyConnected, Tally::default()),
    ];
    for _ in 0..cases {
        for (kernel, tally) in tallies.iter_mut() {
            let depthwise = *kernel == Kernel::DepthwiseConv2d;
            if *kernel == Kernel::FullyConnected {
                // Up to 300 inputs: beyond the im2col column limit too.
                let in_f = rng.usize(1, 300);
                // Sometimes more outputs than one block of prepared channels.
                let wide = if rng.range(0, 4) == 0 { 64 } else { 13 };
                let out_f = rng.usize(1, (MAX_FILTER / in_f).min(wide));
                let batch = rng.usize(1, 3);
                let c = Common::new(&mut rng, out_f);
                let (x, w) = (&mut input[..batch * in_f], &mut filter[..out_f * in_f]);
                rng.fill(x, -128, 127);
                rng.fill(w, -127, 127);
                let p = FcParams {
                    input_zero_point: c.in_zp,
                    output_zero_point: c.out_zp,
                    clamp: c.clamp,
                };
                let n = batch * out_f;
                let fa = fully_connected(&p, c.rq(), x, in_f, w, c.bias(), out_f, &mut out_a[..n]);
                let fb = reference::fully_connected(
                    &p,
                    c.rq(),
                    x,
                    in_f,
                    w,
                    c.bias(),
                    out_f,
                    &mut out_b[..n],
                );
                let macs = (batch * in_f * out_f) as u64;
                compare(fa, fb, &out_a[..n], &out_b[..n], macs, tally);
                // The same layer from its widened filter (a second case).
                // (layers with a channel outside the single-step form take no table.)
                let len = fc_wide_len(in_f, out_f);
                let (x, w, bias) = (&*x, &*w, c.bias());
                let layer = FcLayer::new(&p, c.rq(), in_f, w, bias, out_f, x.len(), n);
                if let Ok(layer) = layer.as_ref().copied() {
                    if layer.reads_wide_weights() && len <= MAX_WIDE {
                        let wide = &mut wide_buf.0[..len];
                        for (d, v) in wide.iter_mut().zip(layer.wide_weights()) {
                            *d = v;
                        }
                        let fw = layer
                            .with_wide_weights(wide)
                            .and_then(|layer| layer.run(&mut Scratch::new(), x, &mut out_a[..n]));
                        compare(fw, fb, &out_a[..n], &out_b[..n], macs, tally);
                        tally.wide += 1;
                    }
                }
                continue;
            }
            // One case in two is a 1-D signal, VALID or SAME: conv layers with a table
            // take the dense paired-pixel path (padded ones through a copy of their
            // edge pixels' windows), depthwise ones the asm one-row window path.
            let one_d = rng.range(0, 2) == 0;
            let (n, h, w) = (rng.usize(1, 2), rng.usize(1, 5), rng.usize(1, 24));
            let h = if one_d { 1 } else { h };
            let in_c = rng.usize(1, if depthwise { 20 } else { 12 });
            // Half the depthwise cases have whole groups of four channels and depth
            // multiplier 1, the layers the DSP kernel's asm row block takes.
            let grouped = depthwise && rng.range(0, 2) == 0;
            let in_c = if grouped {
                in_c.next_multiple_of(4)
            } else {
                in_c
            };
            let dm = if depthwise && !grouped {
                rng.usize(1, 3)
            } else {
                1
            };
            let out_c = if depthwise {
                in_c * dm
            } else if rng.range(0, 5) == 0 {
                // More output channels than one block of prepared channels.
                rng.usize(30, 48)
            } else {
                rng.usize(1, 9)
            };
            let (kh, kw) = (rng.usize(1, 3), rng.usize(1, 5));
            let kh = if one_d { 1 } else { kh };
            let (sh, sw) = (rng.usize(1, 2), rng.usize(1, 3));
            let dil = rng.range(0, 4) == 0;
            let (dh, dw) = if dil {
                (rng.usize(1, 2), rng.usize(1, 2))
            } else {
                (1, 1)
            };
            let same = !one_d || rng.range(0, 2) == 0;
            let (Some((oh, pt)), Some((ow, pl))) = (
                out_and_pad(h, kh, sh, dh, same),
                out_and_pad(w, kw, sw, dw, same),
            ) else {
                continue;
            };
            let in_shape = Shape::new(n, h, w, in_c);
            let f_shape = if depthwise {
                Shape::new(1, kh, kw, out_c)
            } else {
                Shape::new(out_c, kh, kw, in_c)
            };
            let out_shape = Shape::new(n, oh, ow, out_c);
            let (Some(ni), Some(nf), Some(no)) = (
                in_shape.elements(),
                f_shape.elements(),
                out_shape.elements(),
            ) else {
                continue;
            };
            if ni > MAX_IN || nf > MAX_FILTER || no > MAX_OUT || out_c > MAX_CH {
                continue;
            }
            let c = Common::new(&mut rng, out_c);
            rng.fill(&mut input[..ni], -128, 127);
            rng.fill(&mut filter[..nf], -127, 127);
            let p = ConvParams {
                stride_h: sh,
                stride_w: sw,
                dilation_h: dh,
                dilation_w: dw,
                pad_top: pt,
                pad_left: pl,
                depth_multiplier: dm,
                input_zero_point: c.in_zp,
                output_zero_point: c.out_zp,
                clamp: c.clamp,
            };
            let (x, f) = (&input[..ni], &filter[..nf]);
            let (fa, fb) = if depthwise {
                (
                    depthwise_conv2d(
                        &p,
                        c.rq(),
                        in_shape,
                        x,
                        f_shape,
                        f,
                        c.bias(),
                        out_shape,
                        &mut out_a[..no],
                    ),
                    reference::depthwise_conv2d(
                        &p,
                        c.rq(),
                        in_shape,
                        x,
                        f_shape,
                        f,
                        c.bias(),
                        out_shape,
                        &mut out_b[..no],
                    ),
                )
            } else {
                (
                    conv2d(
                        &p,
                        c.rq(),
                        in_shape,
                        x,
                        f_shape,
                        f,
                        c.bias(),
                        out_shape,
                        &mut out_a[..no],
                    ),
                    reference::conv2d(
                        &p,
                        c.rq(),
                        in_shape,
                        x,
                        f_shape,
                        f,
                        c.bias(),
                        out_shape,
                        &mut out_b[..no],
                    ),
                )
            };
            let per_out = if depthwise { kh * kw } else { kh * kw * in_c };
            let macs = (no * per_out) as u64;
            compare(fa, fb, &out_a[..no], &out_b[..no], macs, tally);
            if depthwise {
                // Cases DSP builds with the fast kernels run partly in the asm block
                // of one-row windows (`window4_run`): depth multiplier 1, one-row
                // windows without dilation, the whole int8 range, whole groups of four
                // channels, whole windows in the row, every channel in the single-step
                // requantization.
                let (lo, hi) = crate::whole_windows(w, kw, sw, pl, ow);
                let runs = dm == 1 && kh == 1 && dw == 1 && out_c % 4 == 0 && lo < hi;
                let single = crate::quant::all_single_step(&c.rq(), c.out_zp);
                tally.dense += u32::from(fa.is_ok() && runs && c.clamp == Clamp::NONE && single);
                continue;
            }
            // The same layer from its widened filter (a second case) where the DSP
            // kernel reads one.
            let len = conv2d_wide_len(kh * kw * in_c, out_c);
            let layer = ConvLayer::new(&p, c.rq(), in_shape, f_shape, f, c.bias(), out_shape)
                .ok()
                .filter(ConvLayer::reads_wide_weights);
            if let Some(layer) = layer {
                if len <= MAX_WIDE {
                    let wide = &mut wide_buf.0[..len];
                    for (d, v) in wide.iter_mut().zip(layer.wide_weights()) {
                        *d = v;
                    }
                    let layer = layer.with_wide_weights(wide);
                    tally.dense += u32::from(layer.is_ok_and(|l| l.runs_dense()));
                    let fw = layer.and_then(|l| l.run(&mut Scratch::new(), x, &mut out_a[..no]));
                    compare(fw, fb, &out_a[..no], &out_b[..no], macs, tally);
                    tally.wide += 1;
                }
            }
        }
    }
    // The prepared per-channel requantization the fast kernels use (SMLAL/QADD on DSP
    // cores) against the reference on edge values; mismatches count as fully connected.
    let edges = [
        i32::MIN,
        i32::MIN + 1,
        -(1 << 30),
        -1,
        0,
        1,
        1 << 30,
        i32::MAX,
    ];
    for _ in 0..cases {
        let acc = if rng.range(0, 2) == 0 {
            edges[rng.usize(0, edges.len() - 1)]
        } else {
            rng.next() as i32
        };
        let m = if rng.range(0, 4) == 0 {
            edges[rng.usize(0, edges.len() - 1)]
        } else {
            (rng.next() >> 33) as i32
        };
        let shift = rng.range(-40, 40);
        let fast = crate::quant::ChannelRq::new(m, shift).apply(acc);
        let want = crate::quant::multiply_by_quantized_multiplier(acc, m, shift);
        tallies[2].1.mismatches += u32::from(fast != want);
    }
    tallies
}

/// Runs `cases` random elementwise [`add`]s from `seed` against [`reference::add`]
/// (lengths up to 1024, random zero points, multipliers, shifts — sometimes left
/// shifts or out-of-range left_shift — and clamps); `macs` counts output elements.
#[cfg(feature = "add")]
pub fn run_add(seed: u64, cases: u32) -> Tally {
    let mut rng = Rng::seeded(seed);
    let mut a = [0i8; MAX_IN];
    let mut b = [0i8; MAX_IN];
    let mut out_a = [0i8; MAX_OUT];
    let mut out_b = [0i8; MAX_OUT];
    let mut tally = Tally::default();
    let mut tables = Wide([0; MAX_WIDE]);
    let edges = [i32::MIN, i32::MIN + 1, -1, 0, 1, 1 << 30, i32::MAX];
    for _ in 0..cases {
        let len = rng.usize(0, MAX_OUT);
        let mult = |rng: &mut Rng| -> (i32, i32) {
            let m = if rng.range(0, 8) == 0 {
                edges[rng.usize(0, edges.len() - 1)]
            } else {
                rng.range(1 << 30, i32::MAX)
            };
            let s = if rng.range(0, 8) == 0 {
                rng.range(-40, 40)
            } else {
                rng.range(-20, 1)
            };
            (m, s)
        };
        let (m1, s1) = mult(&mut rng);
        let (m2, s2) = mult(&mut rng);
        let (mo, so) = mult(&mut rng);
        let left_shift = match rng.range(0, 10) {
            0 => rng.range(-2, 33),
            _ => 20,
        };
        let clamp = rng.clamp();
        let p = AddParams {
            input1_zero_point: rng.range(-128, 127),
            input2_zero_point: rng.range(-128, 127),
            output_zero_point: rng.range(-128, 127),
            left_shift,
            input1_multiplier: m1,
            input1_shift: s1,
            input2_multiplier: m2,
            input2_shift: s2,
            output_multiplier: mo,
            output_shift: so,
            clamp,
        };
        rng.fill(&mut a[..len], -128, 127);
        rng.fill(&mut b[..len], -128, 127);
        // Now and then a length mismatch: both must refuse it.
        let len_b = if rng.range(0, 20) == 0 {
            rng.usize(0, MAX_IN)
        } else {
            len
        };
        let fa = add(&p, &a[..len], &b[..len_b], &mut out_a[..len]);
        let fb = reference::add(&p, &a[..len], &b[..len_b], &mut out_b[..len]);
        compare(fa, fb, &out_a[..len], &out_b[..len], len as u64, &mut tally);
        // The same case from the prepared table (a second case) where there is one.
        if let Some(table) = crate::add_tables(&p) {
            for (d, v) in tables.0.iter_mut().zip(table) {
                *d = v;
            }
            let table = Some(&tables.0[..crate::ADD_TABLE_LEN]);
            let fa = crate::add_in(&p, table, &a[..len], &b[..len_b], &mut out_a[..len]);
            compare(fa, fb, &out_a[..len], &out_b[..len], len as u64, &mut tally);
            tally.wide += 1;
        }
    }
    tally
}

/// A pooling kernel's signature.
#[cfg(feature = "pool")]
type PoolFn = fn(&PoolParams, Shape, &[i8], Shape, &mut [i8]) -> Result<(), KernelError>;

/// Runs `cases` random [`max_pool2d`]s from `seed` against [`reference::max_pool2d`]
/// (channel counts with and without a multiple of four, windows, strides, SAME or VALID
/// padding, clamps); `macs` counts output elements.
#[cfg(feature = "pool")]
pub fn run_max_pool(seed: u64, cases: u32) -> Tally {
    run_pool(seed, cases, max_pool2d, reference::max_pool2d)
}

/// [`run_max_pool`] for [`avg_pool2d`] against [`reference::avg_pool2d`].
#[cfg(feature = "pool")]
pub fn run_avg_pool(seed: u64, cases: u32) -> Tally {
    run_pool(seed, cases, avg_pool2d, reference::avg_pool2d)
}

/// Runs `cases` random [`global_avg_pool`]s from `seed` against
/// [`reference::global_avg_pool`] (channel counts with and without a multiple of four,
/// up to 20 x 20 cells, zero points, rescaling, clamps); `macs` counts input elements.
#[cfg(feature = "mean")]
pub fn run_global_avg_pool(seed: u64, cases: u32) -> Tally {
    let mut rng = Rng::seeded(seed);
    let mut input = [0i8; MAX_IN];
    let mut out_a = [0i8; MAX_OUT];
    let mut out_b = [0i8; MAX_OUT];
    let mut tally = Tally::default();
    for _ in 0..cases {
        let c = if rng.range(0, 3) == 0 {
            rng.usize(1, 20)
        } else {
            4 * rng.usize(1, 4)
        };
        // Up to 20 x 20 cells, as many as the input buffer holds.
        let n = rng.usize(1, 2);
        let cap = MAX_IN / (n * c);
        let h = rng.usize(1, cap.min(20));
        let w = rng.usize(1, (cap / h).min(20));
        let ni = n * h * w * c;
        let clamp = rng.clamp();
        let p = MeanParams {
            input_zero_point: rng.range(-128, 127),
            output_zero_point: rng.range(-128, 127),
            multiplier: rng.range(1 << 30, i32::MAX),
            shift: rng.range(-8, 1),
            clamp,
        };
        rng.fill(&mut input[..ni], -128, 127);
        let (si, no) = (Shape::new(n, h, w, c), n * c);
        let fa = global_avg_pool(&p, si, &input[..ni], &mut out_a[..no]);
        let fb = reference::global_avg_pool(&p, si, &input[..ni], &mut out_b[..no]);
        compare(fa, fb, &out_a[..no], &out_b[..no], ni as u64, &mut tally);
    }
    tally
}

/// `cases` random pooling layers from `seed` through `fast` and `reference`.
#[cfg(feature = "pool")]
fn run_pool(seed: u64, cases: u32, fast: PoolFn, reference: PoolFn) -> Tally {
    let mut rng = Rng::seeded(seed);
    let mut input = [0i8; MAX_IN];
    let mut out_a = [0i8; MAX_OUT];
    let mut out_b = [0i8; MAX_OUT];
    let mut tally = Tally::default();
    for _ in 0..cases {
        let (n, h, w) = (rng.usize(1, 2), rng.usize(1, 6), rng.usize(1, 12));
        let c = if rng.range(0, 3) == 0 {
            rng.usize(1, 20)
        } else {
            4 * rng.usize(1, 5)
        };
        let (kh, kw) = (rng.usize(1, 3), rng.usize(1, 3));
        let (sh, sw) = (rng.usize(1, 3), rng.usize(1, 3));
        let same = rng.range(0, 1) == 0;
        let (Some((oh, pt)), Some((ow, pl))) = (
            out_and_pad(h, kh, sh, 1, same),
            out_and_pad(w, kw, sw, 1, same),
        ) else {
            continue;
        };
        let (ni, no) = (n * h * w * c, n * oh * ow * c);
        if ni > MAX_IN || no > MAX_OUT {
            continue;
        }
        let clamp = rng.clamp();
        let p = PoolParams {
            filter_h: kh,
            filter_w: kw,
            stride_h: sh,
            stride_w: sw,
            pad_top: pt,
            pad_left: pl,
            clamp,
        };
        rng.fill(&mut input[..ni], -128, 127);
        let (si, so) = (Shape::new(n, h, w, c), Shape::new(n, oh, ow, c));
        let fa = fast(&p, si, &input[..ni], so, &mut out_a[..no]);
        let fb = reference(&p, si, &input[..ni], so, &mut out_b[..no]);
        compare(fa, fb, &out_a[..no], &out_b[..no], no as u64, &mut tally);
        // Cases whose rows have one-row windows with whole ones among them: DSP builds
        // (with the fast kernels) run those pixels in one asm block.
        let (lo, hi) = crate::whole_windows(w, kw, sw, pl, ow);
        let one_row = kh == 1 || h == 1;
        tally.dense += u32::from(fa.is_ok() && c % 4 == 0 && one_row && lo < hi);
    }
    tally
}
