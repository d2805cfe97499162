//! The two tract ops this crate adds.
//!
//! tract's own quantized ops requantize with a float scale (`Scaler`, rounding half to
//! even) instead of the Q31 multiplier and shift stored in the `.ekd` file (gemmlowp's
//! double rounding), so their outputs can differ from `edgekd-runtime` by 1 LSB. To be
//! bit-exact, convolutions and matmuls run as tract integer ops into i32 accumulators
//! (the MAC-heavy part, on tract's int8 kernels) and [`FixedPointRequant`] finishes them
//! with the file's own multipliers. The elementwise and pooling ops whose TFLite
//! rounding tract does not reproduce run the reference int8 kernels inside a tract
//! node ([`EkdKernel`]): they are a tiny share of the work.

use edgekd_kernels::quant::multiply_by_quantized_multiplier;
use edgekd_kernels::{self as k, AddParams, MeanParams, PoolParams, Shape, SoftmaxParams};
use tract_core::internal::*;

/// i32 accumulators to int8: gemmlowp double-rounding requantization per channel (the
/// last axis), plus output zero point and activation clamp.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FixedPointRequant {
    /// Q31 multipliers, one per channel or one for all.
    pub multiplier: Vec<i32>,
    /// Shifts matching `multiplier`.
    pub shift: Vec<i32>,
    /// Output zero point.
    pub zero_point: i32,
    /// Lower clamp (fused activation), in the output's quantized domain.
    pub min: i8,
    /// Upper clamp.
    pub max: i8,
    /// Output datum type: `QI8` with the output tensor's scale and zero point.
    pub out_dt: DatumType,
}

impl Op for FixedPointRequant {
    fn name(&self) -> StaticName {
        "FixedPointRequant".into()
    }

    op_as_typed_op!();
}

impl EvalOp for FixedPointRequant {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let channels = *input.shape().last().context("requant input is a scalar")?;
        ensure!(
            self.multiplier.len() == 1 || self.multiplier.len() == channels,
            "requant has {} multipliers for {channels} channels",
            self.multiplier.len()
        );
        ensure!(
            self.min <= self.max,
            "requant clamp [{}, {}] is empty",
            self.min,
            self.max
        );
        let acc = input.try_as_plain_ram()?;
        let acc = acc.as_slice::<i32>()?;
        let mut out = Tensor::zero_dt(self.out_dt, input.shape())?;
        {
            let mut view = out.try_as_plain_ram_mut()?;
            let dst = view.as_slice_mut::<i8>()?;
            let (lo, hi) = (i32::from(self.min), i32::from(self.max));
            let per_tensor = self.multiplier.len() == 1;
            for (src, dst) in acc
                .chunks_exact(channels)
                .zip(dst.chunks_exact_mut(channels))
            {
                for (c, (a, d)) in src.iter().zip(dst.iter_mut()).enumerate() {
                    let c = if per_tensor { 0 } else { c };
                    let v = multiply_by_quantized_multiplier(*a, self.multiplier[c], self.shift[c])
                        .wrapping_add(self.zero_point);
                    // Checked above: min <= max, so `clamp` cannot panic.
                    *d = v.clamp(lo, hi) as i8;
                }
            }
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for FixedPointRequant {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs[0].datum_type == i32::datum_type());
        Ok(tvec!(self.out_dt.fact(inputs[0].shape.clone())))
    }

    as_op!();
}

/// An `edgekd-kernels` int8 kernel run as a tract node.
#[derive(Debug, Clone)]
pub enum Kernel {
    /// TFLite int8 ADD.
    Add(AddParams),
    /// Average pooling (rounds half away from zero, unlike tract's SumPool).
    AvgPool(PoolParams),
    /// Max pooling with a fused clamp tract's MaxPool has no place for.
    MaxPool(PoolParams),
    /// TFLite MEAN over H and W with its fixed-point multiplier.
    Mean(MeanParams),
    /// TFLite int8 softmax (gemmlowp fixed-point exp), output scale 1/256.
    Softmax(SoftmaxParams),
}

/// A node running one [`Kernel`] of `.ekd` op `op_index`.
#[derive(Debug, Clone)]
pub struct EkdKernel {
    /// Index of the op in the `.ekd` file (keeps distinct ops distinct for tract's
    /// common-subexpression pass).
    pub op_index: usize,
    /// What to run.
    pub kernel: Kernel,
    /// Input as NHWC.
    pub input_shape: Shape,
    /// Output as NHWC.
    pub output_shape: Shape,
    /// Output dims as the model declares them.
    pub output_dims: TVec<usize>,
    /// Output datum type (`QI8` with the output tensor's parameters).
    pub out_dt: DatumType,
}

// The kernel parameter types do not implement `Eq`; their `Debug` output lists every
// field, so equal renderings mean equal ops.
impl PartialEq for EkdKernel {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
    }
}
impl Eq for EkdKernel {}

impl Op for EkdKernel {
    fn name(&self) -> StaticName {
        match self.kernel {
            Kernel::Add(_) => "EkdAdd",
            Kernel::AvgPool(_) => "EkdAvgPool",
            Kernel::MaxPool(_) => "EkdMaxPool",
            Kernel::Mean(_) => "EkdMean",
            Kernel::Softmax(_) => "EkdSoftmax",
        }
        .into()
    }

    op_as_typed_op!();
}

impl EvalOp for EkdKernel {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let a = inputs
            .first()
            .context("missing input")?
            .try_as_plain_ram()?;
        let a = a.as_slice::<i8>()?;
        let mut out = Tensor::zero_dt(self.out_dt, &self.output_dims)?;
        {
            let mut view = out.try_as_plain_ram_mut()?;
            let o = view.as_slice_mut::<i8>()?;
            let (ins, outs) = (self.input_shape, self.output_shape);
            let result = match &self.kernel {
                Kernel::Add(p) => {
                    let b = inputs
                        .get(1)
                        .context("add needs two inputs")?
                        .try_as_plain_ram()?;
                    k::add(p, a, b.as_slice::<i8>()?, o)
                }
                Kernel::AvgPool(p) => k::avg_pool2d(p, ins, a, outs, o),
                Kernel::MaxPool(p) => k::max_pool2d(p, ins, a, outs, o),
                Kernel::Mean(p) => k::global_avg_pool(p, ins, a, o),
                Kernel::Softmax(p) => k::softmax(p, outs.c, a, o),
            };
            result.map_err(|e| format_err!("{} kernel failed: {e:?}", self.name()))?;
        }
        Ok(tvec!(out.into_tvalue()))
    }
}

impl TypedOp for EkdKernel {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        for input in inputs {
            ensure!(input.datum_type.unquantized() == i8::datum_type());
        }
        Ok(tvec!(self.out_dt.fact(&*self.output_dims)))
    }

    as_op!();
}
