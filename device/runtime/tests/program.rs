//! A [`Program`] built ahead of time from [`OpParts`] (what firmware build scripts do
//! through `codegen`) runs exactly like the interpreter, and its public constructors
//! refuse what the kernels could not run instead of running it.
#![cfg(feature = "std")]

mod common;
use common::*;
use edgekd_runtime::format::OpParams;
use edgekd_runtime::kernels::Requant;
use edgekd_runtime::{codegen, Error, Executor, Model, OpCode, OpParts, Program, Step};

const MAX_OPS: usize = 32;

/// Every op's parts, decoded from the model.
fn parts_of<'m>(model: &Model<'m>) -> Vec<OpParts<'m>> {
    model
        .ops()
        .map(|op| OpParts::decode(model, &op.unwrap()).unwrap())
        .collect()
}

/// The constants of one op, copied out of the model (as generated code holds them in
/// its own statics).
struct Owned {
    weights: Vec<i8>,
    bias: Option<Vec<i32>>,
    multiplier: Vec<i32>,
    shift: Vec<i32>,
}

fn owned(parts: &OpParts<'_>) -> Owned {
    let rq = match &parts.params {
        OpParams::FullyConnected(_, rq) | OpParams::Conv2d(_, rq) => Some(rq),
        OpParams::DepthwiseConv2d(_, rq) => Some(rq),
        _ => None,
    };
    Owned {
        weights: parts.weights.to_vec(),
        bias: parts.bias.map(<[i32]>::to_vec),
        multiplier: rq.map(|r| r.multiplier.to_vec()).unwrap_or_default(),
        shift: rq.map(|r| r.shift.to_vec()).unwrap_or_default(),
    }
}

/// `parts` pointing at `data` instead of the model's bytes.
fn rebased<'d>(parts: &OpParts<'d>, data: &'d Owned) -> OpParts<'d> {
    let rq = Requant {
        multiplier: &data.multiplier,
        shift: &data.shift,
    };
    let params = match parts.params {
        OpParams::FullyConnected(p, _) => OpParams::FullyConnected(p, rq),
        OpParams::Conv2d(p, _) => OpParams::Conv2d(p, rq),
        OpParams::DepthwiseConv2d(p, _) => OpParams::DepthwiseConv2d(p, rq),
        other => other,
    };
    OpParts {
        params,
        weights: &data.weights,
        bias: data.bias.as_deref(),
        ..parts.clone()
    }
}

#[test]
fn program_built_from_copied_parts_equals_the_golden_outputs() {
    for (name, bytes, input, expected) in REFERENCE {
        let bytes = aligned(bytes);
        let model = Model::parse(bytes.as_bytes()).unwrap();
        let parts = parts_of(&model);
        let data: Vec<Owned> = parts.iter().map(owned).collect();
        let (io_in, io_out) = (model.input(0).unwrap(), model.output(0).unwrap());
        let mut program =
            Program::<MAX_OPS>::new(model.arena_size(), io_in.range(), io_out.range());
        for (p, d) in parts.iter().zip(&data) {
            program.push(Step::new(rebased(p, d)).unwrap()).unwrap();
        }
        let codes: Vec<OpCode> = program.steps().iter().map(Step::code).collect();
        let model_codes: Vec<OpCode> = model.ops().map(|op| op.unwrap().code).collect();
        assert_eq!(codes, model_codes, "{name}");

        assert_golden_outputs(program, input, expected, name);
    }
}

/// Runs `program` on every golden input (`.npy` bytes) and compares each output with
/// the golden one.
fn assert_golden_outputs<const N: usize>(
    program: Program<'_, N>,
    input: &[u8],
    expected: &[u8],
    name: &str,
) {
    let mut arena = vec![0u8; program.arena_size()];
    let mut exec = Executor::new(program, &mut arena).unwrap();
    let (rows, cols, inputs) = npy_i8(input);
    let (_, out_cols, golden) = npy_i8(expected);
    for r in 0..rows {
        exec.input_mut()
            .unwrap()
            .copy_from_slice(&inputs[r * cols..][..cols]);
        exec.invoke().unwrap();
        assert_eq!(
            exec.output().unwrap(),
            &golden[r * out_cols..][..out_cols],
            "{name} sample {r}"
        );
    }
    assert_eq!(exec.invocations(), rows as u32);
}

#[test]
fn step_new_refuses_layers_their_kernels_cannot_run() {
    let bytes = aligned(REFERENCE[0].1);
    let model = Model::parse(bytes.as_bytes()).unwrap();
    let parts = parts_of(&model);
    let conv = parts.iter().find(|p| p.code() == OpCode::Conv2d).unwrap();
    let short = OpParts {
        weights: &conv.weights[1..],
        ..conv.clone()
    };
    assert_eq!(Step::new(short).unwrap_err(), Error::ShapeMismatch);
    let no_stride = match conv.params {
        OpParams::Conv2d(mut p, rq) => {
            p.stride_w = 0;
            OpParams::Conv2d(p, rq)
        }
        _ => unreachable!(),
    };
    let bad = OpParts {
        params: no_stride,
        ..conv.clone()
    };
    assert_eq!(Step::new(bad).unwrap_err(), Error::UnsupportedParams);

    let fc = parts
        .iter()
        .find(|p| p.code() == OpCode::FullyConnected)
        .unwrap();
    let mut shape = fc.weight_shape;
    shape.h = 2;
    let rank3 = OpParts {
        weight_shape: shape,
        ..fc.clone()
    };
    assert_eq!(Step::new(rank3).unwrap_err(), Error::ShapeMismatch);
}

#[test]
fn executor_checks_the_arena() {
    let bytes = aligned(REFERENCE[1].1);
    let model = Model::parse(bytes.as_bytes()).unwrap();
    let program = Program::<MAX_OPS>::decode(&model).unwrap();
    let needed = program.arena_size();
    let mut small = vec![0u8; needed - 1];
    assert_eq!(
        Executor::new(program.clone(), &mut small).err(),
        Some(Error::ArenaTooSmall { needed })
    );

    // An op whose output lies past the arena fails when it runs.
    let mut parts = parts_of(&model);
    let last = parts.last_mut().unwrap();
    last.output = needed..needed + last.output.len();
    let mut outside = Program::<MAX_OPS>::new(needed, 0..1, 0..1);
    for p in parts {
        outside.push(Step::new(p).unwrap()).unwrap();
    }
    let mut arena = vec![0u8; needed];
    let mut exec = Executor::new(outside, &mut arena).unwrap();
    assert_eq!(exec.invoke(), Err(Error::OutOfBounds));

    // More ops than the program holds.
    let mut tiny = Program::<1>::new(needed, 0..1, 0..1);
    let steps = Program::<MAX_OPS>::decode(&model).unwrap();
    tiny.push(steps.steps()[0]).unwrap();
    assert_eq!(tiny.push(steps.steps()[1]), Err(Error::CapacityExceeded));
}

#[test]
fn program_source_writes_every_op_and_each_constant_once() {
    for (name, bytes, _, _) in REFERENCE {
        let bytes = aligned(bytes);
        let model = Model::parse(bytes.as_bytes()).unwrap();
        let src = codegen::program_source(&model, "program").unwrap();
        let ops = model.op_count();
        assert!(
            src.contains(&format!("pub const OPS: usize = {ops};")),
            "{name}"
        );
        assert!(src.contains(&format!(
            "pub const ARENA_SIZE: usize = {};",
            model.arena_size()
        )));
        assert_eq!(src.matches("OpParts { params: ").count(), ops, "{name}");
        // Each static's length equals the values it lists, and every constant the ops
        // hold is written out in full.
        let (mut values, mut table_values) = (0, 0);
        for line in src
            .lines()
            .filter(|l| l.trim_start().starts_with("static "))
        {
            let len: usize = line
                .split("; ")
                .nth(1)
                .unwrap()
                .split(']')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let list = line.rsplit_once('[').unwrap().1;
            let listed = list
                .split(',')
                .filter(|v| !v.trim().trim_end_matches([']', ')', ';']).is_empty())
                .count();
            assert_eq!(len, listed, "{name}: {line:.60}");
            if line.contains("_TABLE: Table<") {
                table_values += len;
            } else {
                values += len;
            }
        }
        // ... and every prepared table the DSP kernels read.
        let tables: usize = model
            .ops()
            .filter_map(|op| op.unwrap().wide_weights(&model).unwrap())
            .map(Iterator::count)
            .sum();
        assert!(tables > 0, "{name}");
        assert_eq!(table_values, tables, "{name}");
        let expected: usize = parts_of(&model)
            .iter()
            .map(|p| {
                let o = owned(p);
                o.weights.len() + o.bias.map_or(0, |b| b.len()) + o.multiplier.len() + o.shift.len()
            })
            .sum();
        assert_eq!(values, expected, "{name}");
    }
}

/// `codegen`'s output for tiny_cnn, checked in so this test compiles it: regenerate with
/// `EDGEKD_BLESS=1 cargo test -p edgekd-runtime --features std --test program`.
mod generated {
    include!("data/tiny_cnn_program.rs");
}

const TINY_CNN_PROGRAM: &str = include_str!("data/tiny_cnn_program.rs");

#[test]
fn generated_program_compiles_and_equals_the_golden_outputs() {
    let (_, bytes, input, expected) = REFERENCE[0];
    let bytes = aligned(bytes);
    let model = Model::parse(bytes.as_bytes()).unwrap();
    let src = codegen::program_source(&model, "tiny_cnn").unwrap();
    if std::env::var_os("EDGEKD_BLESS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/tiny_cnn_program.rs"
        );
        std::fs::write(path, &src).unwrap();
    }
    assert!(
        src == TINY_CNN_PROGRAM,
        "tests/data/tiny_cnn_program.rs is stale: regenerate it with \
         EDGEKD_BLESS=1 cargo test -p edgekd-runtime --features std --test program"
    );

    let program = generated::tiny_cnn::build().unwrap();
    assert_eq!(program.steps().len(), generated::tiny_cnn::OPS);
    assert_eq!(program.arena_size(), generated::tiny_cnn::ARENA_SIZE);
    assert_golden_outputs(program, input, expected, "generated tiny_cnn");
}
