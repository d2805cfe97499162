//! The memory plan stored in a model is safe (tensors that are live at the same time
//! never share bytes, except a reshape and its input) and, for the reference models,
//! optimal (equal to the largest sum of live tensor sizes at any step).
#![cfg(feature = "std")]

mod common;
use common::*;
use edgekd_runtime::format::Storage;
use edgekd_runtime::{Model, OpCode};

/// `(first, last)` op step at which each arena tensor is live.
fn lifetimes(m: &Model<'_>) -> Vec<Option<(usize, usize)>> {
    let n_ops = m.op_count();
    let mut life: Vec<Option<(usize, usize)>> = vec![None; m.tensor_count()];
    let mut touch = |t: usize, step: usize| {
        let e = life[t].get_or_insert((step, step));
        e.0 = e.0.min(step);
        e.1 = e.1.max(step);
    };
    for i in 0..m.input_count() {
        touch(m.input_index(i).unwrap(), 0);
    }
    for (step, op) in m.ops().enumerate() {
        let op = op.unwrap();
        for i in 0..op.input_count() {
            if let Some(t) = op.input(i) {
                if m.tensor(t).unwrap().storage == Storage::Arena {
                    touch(t, step);
                }
            }
        }
        touch(op.output(), step);
    }
    for i in 0..m.output_count() {
        touch(m.output_index(i).unwrap(), n_ops);
    }
    life
}

#[test]
fn live_tensors_never_share_bytes() {
    for (name, bytes, _, _) in REFERENCE {
        let buf = aligned(bytes);
        let m = Model::parse(buf.as_bytes()).unwrap();
        let life = lifetimes(&m);
        let aliases: Vec<(usize, usize)> = m
            .ops()
            .map(|o| o.unwrap())
            .filter(|o| o.code == OpCode::Reshape)
            .map(|o| (o.input(0).unwrap(), o.output()))
            .collect();
        for a in 0..life.len() {
            for b in a + 1..life.len() {
                let (Some(la), Some(lb)) = (life[a], life[b]) else {
                    continue;
                };
                if la.0 > lb.1
                    || lb.0 > la.1
                    || aliases.contains(&(a, b))
                    || aliases.contains(&(b, a))
                {
                    continue;
                }
                let (ra, rb) = (m.tensor(a).unwrap().range(), m.tensor(b).unwrap().range());
                assert!(
                    ra.end <= rb.start || rb.end <= ra.start,
                    "{name}: tensors {a} {ra:?} and {b} {rb:?} overlap while live"
                );
            }
        }
    }
}

#[test]
fn reference_arenas_are_optimal() {
    for (name, bytes, _, _) in REFERENCE {
        let buf = aligned(bytes);
        let m = Model::parse(buf.as_bytes()).unwrap();
        let life = lifetimes(&m);
        let lower_bound = (0..=m.op_count())
            .map(|step| {
                let mut seen = std::collections::BTreeSet::new();
                life.iter()
                    .enumerate()
                    .filter(|(_, l)| l.is_some_and(|(a, b)| a <= step && step <= b))
                    // Aliased tensors occupy the same range: count each range once.
                    .filter(|(t, _)| seen.insert(m.tensor(*t).unwrap().range().start))
                    .map(|(t, _)| m.tensor(t).unwrap().byte_len().div_ceil(4) * 4)
                    .sum::<usize>()
            })
            .max()
            .unwrap();
        assert_eq!(m.arena_size(), lower_bound, "{name}");
    }
}
