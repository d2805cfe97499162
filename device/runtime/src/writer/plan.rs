//! Static memory planning: every arena tensor gets an offset so that tensors whose
//! lifetimes overlap never share bytes, and the arena is as small as a greedy
//! best-fit-by-size placement (TFLite Micro's GreedyMemoryPlanner strategy) makes it.

use std::string::String;
use std::vec::Vec;

/// Alignment of every arena tensor.
pub const ARENA_ALIGN: usize = 4;

/// A buffer of the plan: one or more tensors sharing bytes (a reshape output shares its
/// input's buffer), live from op `first` to op `last` inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Buffer {
    /// Tensor indices stored in this buffer.
    pub tensors: Vec<usize>,
    /// Size in bytes.
    pub size: usize,
    /// First op index at which the buffer is live.
    pub first: usize,
    /// Last op index at which the buffer is live.
    pub last: usize,
    /// Arena offset.
    pub offset: usize,
}

/// The result of planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaPlan {
    /// Offset of every tensor (0 for constants).
    pub offsets: Vec<usize>,
    /// Total arena bytes.
    pub arena_size: usize,
    /// The buffers, in placement order.
    pub buffers: Vec<Buffer>,
}

/// Plans the arena.
///
/// - `sizes[t]`: bytes of tensor `t`; `in_arena[t]`: whether it lives in the arena.
/// - `ops`: `(inputs, output, is_reshape)` in execution order.
/// - Model inputs are live from before the first op; outputs until after the last.
pub fn plan_arena(
    sizes: &[usize],
    in_arena: &[bool],
    ops: &[(Vec<usize>, usize, bool)],
    inputs: &[usize],
    outputs: &[usize],
) -> Result<ArenaPlan, String> {
    let n = sizes.len();
    // Union-find over tensors: a reshape's output shares its input's bytes.
    let mut parent: Vec<usize> = (0..n).collect();
    fn root(parent: &mut [usize], mut t: usize) -> usize {
        while parent[t] != t {
            parent[t] = parent[parent[t]];
            t = parent[t];
        }
        t
    }
    for (ins, out, reshape) in ops {
        if *reshape {
            let a = root(&mut parent, ins[0]);
            let b = root(&mut parent, *out);
            parent[b] = a;
        }
    }
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    let mut written = vec![false; n];
    for &t in inputs {
        written[t] = true;
        first[t] = 0;
    }
    for (step, (ins, out, _)) in ops.iter().enumerate() {
        for &t in ins {
            if t >= n || *out >= n {
                return Err(format!("op {step} refers to a tensor that does not exist"));
            }
            if in_arena[t] && !written[t] {
                return Err(format!(
                    "op {step} reads tensor {t} before anything writes it"
                ));
            }
            last[t] = last[t].max(step);
        }
        if !in_arena[*out] {
            return Err(format!("op {step} writes constant tensor {out}"));
        }
        if written[*out] {
            return Err(format!("tensor {out} is written twice (op {step})"));
        }
        written[*out] = true;
        first[*out] = first[*out].min(step);
        last[*out] = last[*out].max(step);
    }
    for &t in outputs {
        if !written[t] {
            return Err(format!("model output {t} is never written"));
        }
        last[t] = ops.len();
    }
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut buffer_of = vec![usize::MAX; n];
    for t in 0..n {
        if !in_arena[t] {
            continue;
        }
        let r = root(&mut parent, t);
        if buffer_of[r] == usize::MAX {
            buffer_of[r] = buffers.len();
            buffers.push(Buffer {
                tensors: Vec::new(),
                size: 0,
                first: usize::MAX,
                last: 0,
                offset: 0,
            });
        }
        let b = &mut buffers[buffer_of[r]];
        b.tensors.push(t);
        b.size = b.size.max(sizes[t].div_ceil(ARENA_ALIGN) * ARENA_ALIGN);
        b.first = b.first.min(first[t]);
        b.last = b.last.max(last[t]);
    }
    // Unused arena tensors still get (non-overlapping) space so every offset is valid.
    for b in &mut buffers {
        if b.first == usize::MAX {
            b.first = 0;
            b.last = ops.len();
        }
    }
    buffers.sort_by(|a, b| b.size.cmp(&a.size).then(a.first.cmp(&b.first)));
    let mut placed: Vec<usize> = Vec::new();
    for i in 0..buffers.len() {
        let mut conflicts: Vec<(usize, usize)> = placed
            .iter()
            .map(|&j| &buffers[j])
            .filter(|o| o.first <= buffers[i].last && buffers[i].first <= o.last)
            .map(|o| (o.offset, o.offset + o.size))
            .collect();
        conflicts.sort();
        let mut offset = 0;
        for (start, end) in conflicts {
            if offset + buffers[i].size <= start {
                break;
            }
            offset = offset.max(end);
        }
        buffers[i].offset = offset;
        placed.push(i);
    }
    let mut offsets = vec![0usize; n];
    for b in &buffers {
        for &t in &b.tensors {
            offsets[t] = b.offset;
        }
    }
    let arena_size = buffers.iter().map(|b| b.offset + b.size).max().unwrap_or(0);
    Ok(ArenaPlan {
        offsets,
        arena_size,
        buffers,
    })
}
