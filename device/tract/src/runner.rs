//! A loaded model ready to run on tract, with an optional per-op profile.

use crate::error::{Error, Result};
use crate::graph::{lower_int8, IoInfo, Lowered};
use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::Model;
use std::time::{Duration, Instant};
use tract_core::internal::*;
use tract_core::plan::SimpleState;

/// How to prepare the tract plan.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Worker threads for tract's matmuls; `None` or `Some(1)` runs single-threaded.
    pub threads: Option<usize>,
}

/// Time spent per `.ekd` op (tract nodes grouped by the op they were lowered from).
#[derive(Debug, Clone, Default)]
pub struct OpProfile {
    /// Accumulated time per op index.
    pub per_op: Vec<Duration>,
    /// Time in nodes that belong to no `.ekd` op (constants, glue).
    pub other: Duration,
}

impl OpProfile {
    fn add(&mut self, op: Option<usize>, d: Duration) {
        match op {
            Some(i) => {
                if self.per_op.len() <= i {
                    self.per_op.resize(i + 1, Duration::ZERO);
                }
                self.per_op[i] += d;
            }
            None => self.other += d,
        }
    }
}

/// An `.ekd` model compiled to an optimized tract plan that computes in int8.
#[derive(Debug)]
pub struct TractModel {
    state: TypedSimpleState,
    inputs: Vec<IoInfo>,
    outputs: Vec<IoInfo>,
    op_names: Vec<&'static str>,
    /// `.ekd` op index of every node of the optimized graph, by node id.
    node_op: Vec<Option<usize>>,
}

/// Which `.ekd` op a tract node name (`op<index>.<...>`) comes from.
fn op_of_node(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("op")?;
    let (digits, _) = rest.split_once('.')?;
    digits.parse().ok()
}

impl TractModel {
    /// Parses `.ekd` bytes (any alignment) and builds the plan.
    pub fn from_ekd_bytes(bytes: &[u8], options: &Options) -> Result<Self> {
        let aligned = AlignedBytes::copy_from(bytes);
        let model = Model::parse(aligned.as_bytes())?;
        Self::from_model(&model, options)
    }

    /// Builds the plan for a parsed model.
    pub fn from_model(model: &Model<'_>, options: &Options) -> Result<Self> {
        Self::from_lowered(lower_int8(model)?, options)
    }

    /// Optimizes a lowered graph and prepares it to run.
    pub fn from_lowered(lowered: Lowered, options: &Options) -> Result<Self> {
        let Lowered {
            model,
            inputs,
            outputs,
            op_names,
        } = lowered;
        let model = model.into_optimized()?;
        let node_op = model.nodes().iter().map(|n| op_of_node(&n.name)).collect();
        let mut run_options = RunOptions::default();
        if let Some(n) = options.threads.filter(|n| *n > 1) {
            run_options.executor = Some(tract_linalg::multithread::Executor::multithread(n));
        }
        let plan = model.into_runnable_with_options(&run_options)?;
        let state = SimpleState::new(&plan)?;
        Ok(TractModel {
            state,
            inputs,
            outputs,
            op_names,
            node_op,
        })
    }

    /// The model inputs.
    pub fn inputs(&self) -> &[IoInfo] {
        &self.inputs
    }

    /// The model outputs.
    pub fn outputs(&self) -> &[IoInfo] {
        &self.outputs
    }

    /// Names of the `.ekd` ops, by index.
    pub fn op_names(&self) -> &[&'static str] {
        &self.op_names
    }

    /// Operators of the optimized tract plan, in execution order (for reports: shows
    /// which tract kernels run).
    pub fn plan_ops(&self) -> Vec<String> {
        let plan = self.state.plan();
        plan.order_without_consts()
            .iter()
            .map(|&n| {
                let node = plan.model().node(n);
                format!("{} ({})", node.name, node.op().name())
            })
            .collect()
    }

    fn input_values(&self, inputs: &[&[i8]]) -> Result<TVec<TValue>> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Input(format!(
                "the model has {} input(s), got {}",
                self.inputs.len(),
                inputs.len()
            )));
        }
        let mut values = TVec::new();
        for (i, (info, data)) in self.inputs.iter().zip(inputs).enumerate() {
            if data.len() != info.elements() {
                return Err(Error::Input(format!(
                    "input {i} needs {} int8 values ({:?}), got {}",
                    info.elements(),
                    info.dims,
                    data.len()
                )));
            }
            let mut t = Tensor::zero_dt(info.datum_type(), &info.dims)?;
            t.try_as_plain_ram_mut()?
                .as_slice_mut::<i8>()?
                .copy_from_slice(data);
            values.push(t.into_tvalue());
        }
        Ok(values)
    }

    fn collect(outputs: TVec<TValue>) -> Result<Vec<Vec<i8>>> {
        outputs
            .iter()
            .map(|t| Ok(t.try_as_plain_ram()?.as_slice::<i8>()?.to_vec()))
            .collect()
    }

    /// Runs the model on int8 inputs (one slice per model input) and returns the int8
    /// outputs.
    pub fn run(&mut self, inputs: &[&[i8]]) -> Result<Vec<Vec<i8>>> {
        let values = self.input_values(inputs)?;
        Self::collect(self.state.run(values)?)
    }

    /// Runs the model like [`TractModel::run`], adding each node's time to `profile`.
    pub fn run_profiled(
        &mut self,
        inputs: &[&[i8]],
        profile: &mut OpProfile,
    ) -> Result<Vec<Vec<i8>>> {
        let values = self.input_values(inputs)?;
        let node_op = &self.node_op;
        let outputs = self
            .state
            .run_plan_with_eval(values, |ctx, state, node, inputs| {
                let start = Instant::now();
                let r = tract_core::plan::eval(ctx, state, node, inputs);
                profile.add(node_op.get(node.id).copied().flatten(), start.elapsed());
                r
            })?;
        Self::collect(outputs)
    }
}

/// Index of the largest value; ties go to the lowest index (as `edgekd-runtime`).
pub fn argmax(values: &[i8]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_map_to_ops() {
        assert_eq!(op_of_node("op12.Conv2D.conv.im2col"), Some(12));
        assert_eq!(op_of_node("op0.Add"), Some(0));
        assert_eq!(op_of_node("op0.Add.x"), Some(0));
        assert_eq!(op_of_node("input0"), None);
        assert_eq!(op_of_node("opx.y"), None);
    }

    #[test]
    fn argmax_takes_the_first_maximum() {
        assert_eq!(argmax(&[1, 5, 5, -3]), 1);
        assert_eq!(argmax(&[-128]), 0);
    }
}
