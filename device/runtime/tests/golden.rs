//! The shipped reference models reproduce their golden vectors bit for bit.
#![cfg(feature = "std")]

mod common;
use common::*;
use edgekd_runtime::{Interpreter, Model};

#[test]
fn reference_models_match_golden_outputs() {
    for (name, model_bytes, input, expected) in REFERENCE {
        let buf = aligned(model_bytes);
        let model = Model::parse(buf.as_bytes()).unwrap();
        let (rows, cols, x) = npy_i8(input);
        let (erows, ecols, y) = npy_i8(expected);
        assert_eq!((rows, erows), (16, 16), "{name}");
        let mut arena = vec![0u8; model.arena_size()];
        let mut interp = Interpreter::new(model, &mut arena).unwrap();
        // Miri interprets every instruction: two samples per model still cover every op.
        let samples = if cfg!(miri) { 2 } else { rows };
        for r in 0..samples {
            interp
                .input_mut(0)
                .unwrap()
                .copy_from_slice(&x[r * cols..(r + 1) * cols]);
            interp.invoke().unwrap();
            assert_eq!(
                interp.output(0).unwrap(),
                &y[r * ecols..(r + 1) * ecols],
                "{name} sample {r}"
            );
        }
        // Not degenerate: the golden outputs use a real part of the int8 range and
        // the predicted class varies across samples.
        let distinct: std::collections::BTreeSet<i8> = y.iter().copied().collect();
        assert!(
            distinct.len() > 8,
            "{name}: outputs barely vary: {distinct:?}"
        );
    }
}

#[test]
fn shipped_models_declare_what_their_ops_need() {
    let expected_macs = [("tiny_cnn", 5072), ("mlp", 1600), ("ds_cnn", 4560)];
    for ((name, bytes, _, _), (n, macs)) in REFERENCE.iter().zip(expected_macs) {
        assert_eq!(*name, n);
        let buf = aligned(bytes);
        let model = Model::parse(buf.as_bytes()).unwrap();
        assert_eq!(model.macs(), macs, "{name}");
        // Every layer fits the kernels' fast paths (firmware leaves the fallbacks out),
        // and on DSP cores every conv layer runs dense and every fully connected layer
        // reads its table (firmware with the fast kernels leaves the general conv loop
        // and the plain fully connected rows out).
        for op in model.ops() {
            let op = op.unwrap();
            assert!(!op.needs_fallback(&model).unwrap(), "{name}");
            assert!(!op.needs_conv_general(&model).unwrap(), "{name}");
            assert!(!op.needs_fc_plain(&model).unwrap(), "{name}");
        }
        let meta = model.metadata().unwrap();
        assert_eq!(meta.name, *name);
        assert_eq!(meta.labels.len(), 10);
    }
}

#[test]
fn arena_too_small_is_an_error_naming_the_size() {
    let buf = aligned(REFERENCE[0].1);
    let model = Model::parse(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size() - 1];
    let err = Interpreter::new(model, &mut arena).err().unwrap();
    assert_eq!(
        err,
        edgekd_runtime::Error::ArenaTooSmall {
            needed: model.arena_size()
        }
    );
}

#[test]
fn op_table_capacity_is_exact_and_checked() {
    // tiny_cnn has 4 ops: a table of 4 runs it bit-exactly, a table of 3 is refused.
    let (name, bytes, input, expected) = REFERENCE[0];
    let buf = aligned(bytes);
    let model = Model::parse(buf.as_bytes()).unwrap();
    assert_eq!(model.op_count(), 4, "{name}");
    let mut arena = vec![0u8; model.arena_size()];
    let err = Interpreter::<'_, '_, 3>::with_max_ops(model, &mut arena).err();
    assert_eq!(err, Some(edgekd_runtime::Error::CapacityExceeded));
    let mut interp = Interpreter::<'_, '_, 4>::with_max_ops(model, &mut arena).unwrap();
    let ((_, cols, x), (_, ecols, y)) = (npy_i8(input), npy_i8(expected));
    interp.input_mut(0).unwrap().copy_from_slice(&x[..cols]);
    interp.invoke().unwrap();
    assert_eq!(interp.output(0).unwrap(), &y[..ecols]);
}

#[test]
fn float_inputs_are_checked() {
    let buf = aligned(REFERENCE[0].1);
    let model = Model::parse(buf.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena).unwrap();
    let mut x = vec![0.5f32; 40];
    assert_eq!(
        interp.set_input_f32(0, &x[..39]),
        Err(edgekd_runtime::Error::LengthMismatch {
            expected: 40,
            got: 39
        })
    );
    x[7] = f32::NAN;
    assert_eq!(
        interp.set_input_f32(0, &x),
        Err(edgekd_runtime::Error::NonFinite)
    );
    // (0.5 - 0.1) * 0.8 / (5/255) = 16.32 -> 16
    x[7] = 0.5;
    interp.set_input_f32(0, &x).unwrap();
    assert!(interp.input_mut(0).unwrap().iter().all(|&q| q == 16));
}

/// Widened filters are checked against the model: each FC op takes its own, other ops
/// and other tables are refused, and the outputs stay the golden ones.
#[test]
fn wide_weights_are_checked_per_op() {
    use edgekd_runtime::{Error, OpCode};
    let (_, model_bytes, input, expected) = REFERENCE
        .iter()
        .find(|r| r.0 == "mlp")
        .expect("the mlp reference model");
    let buf = aligned(model_bytes);
    let model = Model::parse(buf.as_bytes()).unwrap();
    // Each table in its own u32 buffer: 4-byte aligned.
    let mut tables: Vec<(usize, Vec<u32>, usize)> = Vec::new();
    for (index, op) in model.ops().enumerate() {
        let op = op.unwrap();
        if op.code != OpCode::FullyConnected {
            continue;
        }
        let wide: Vec<i16> = op.wide_weights(&model).unwrap().unwrap().collect();
        let mut words = vec![0u32; wide.len().div_ceil(2)];
        bytemuck_i16(&mut words)[..wide.len()].copy_from_slice(&wide);
        tables.push((index, words, wide.len()));
    }
    assert_eq!(tables.len(), 2);
    let views: Vec<(usize, &[i16])> = tables
        .iter_mut()
        .map(|(i, words, len)| (*i, &bytemuck_i16(words)[..*len]))
        .collect();
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena).unwrap();
    let [(fc1, w1), (fc2, w2)] = views[..] else {
        panic!()
    };
    assert_eq!(interp.set_wide_weights(fc1, w2), Err(Error::ShapeMismatch));
    assert_eq!(interp.set_wide_weights(0, w1), Err(Error::InvalidValue));
    assert_eq!(interp.set_wide_weights(99, w1), Err(Error::BadIndex));
    interp.set_wide_weights(fc1, w1).unwrap();
    interp.set_wide_weights(fc2, w2).unwrap();
    let (_, cols, x) = npy_i8(input);
    let (_, ecols, y) = npy_i8(expected);
    interp.input_mut(0).unwrap().copy_from_slice(&x[..cols]);
    interp.invoke().unwrap();
    assert_eq!(interp.output(0).unwrap(), &y[..ecols]);
}

/// Every op of tiny_cnn that DSP kernels read a widened filter for (both convs and the
/// fully connected layer) takes its table, refuses another op's, and the outputs stay
/// the golden ones.
#[test]
fn conv_and_fc_take_their_widened_filters() {
    use edgekd_runtime::{conv2d_wide_len, fc_wide_len, Error, OpCode};
    let (_, model_bytes, input, expected) = REFERENCE
        .iter()
        .find(|r| r.0 == "tiny_cnn")
        .expect("the tiny_cnn reference model");
    let buf = aligned(model_bytes);
    let model = Model::parse(buf.as_bytes()).unwrap();
    let mut tables: Vec<(usize, Vec<u32>, usize)> = Vec::new();
    for (index, op) in model.ops().enumerate() {
        let op = op.unwrap();
        let Some(wide) = op.wide_weights(&model).unwrap() else {
            assert!(!op.reads_wide_weights(&model).unwrap());
            continue;
        };
        assert!(op.reads_wide_weights(&model).unwrap());
        let wide: Vec<i16> = wide.collect();
        // The tables are the kernels' layouts of the op's own tensors.
        let w = model.tensor(op.input(1).unwrap()).unwrap();
        let s = w.shape();
        match op.code {
            OpCode::Conv2d => assert_eq!(wide.len(), conv2d_wide_len(s.h * s.w * s.c, s.n)),
            OpCode::FullyConnected => assert_eq!(wide.len(), fc_wide_len(s.c, s.w)),
            other => panic!("{other:?} reads no widened filter"),
        }
        let mut words = vec![0u32; wide.len().div_ceil(2)];
        bytemuck_i16(&mut words)[..wide.len()].copy_from_slice(&wide);
        tables.push((index, words, wide.len()));
    }
    let codes: Vec<OpCode> = tables
        .iter()
        .map(|t| model.ops().nth(t.0).unwrap().unwrap().code)
        .collect();
    assert_eq!(
        codes,
        [OpCode::Conv2d, OpCode::Conv2d, OpCode::FullyConnected]
    );
    let views: Vec<(usize, &[i16])> = tables
        .iter_mut()
        .map(|(i, words, len)| (*i, &bytemuck_i16(words)[..*len]))
        .collect();
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena).unwrap();
    let [(c0, w0), (c1, w1), (fc, wf)] = views[..] else {
        panic!()
    };
    assert_eq!(interp.set_wide_weights(c0, w1), Err(Error::ShapeMismatch));
    assert_eq!(interp.set_wide_weights(c1, wf), Err(Error::ShapeMismatch));
    interp.set_wide_weights(c0, w0).unwrap();
    interp.set_wide_weights(c1, w1).unwrap();
    interp.set_wide_weights(fc, wf).unwrap();
    let (rows, cols, x) = npy_i8(input);
    let (_, ecols, y) = npy_i8(expected);
    for r in 0..rows {
        interp
            .input_mut(0)
            .unwrap()
            .copy_from_slice(&x[r * cols..][..cols]);
        interp.invoke().unwrap();
        assert_eq!(
            interp.output(0).unwrap(),
            &y[r * ecols..][..ecols],
            "row {r}"
        );
    }
}

fn bytemuck_i16(words: &mut [u32]) -> &mut [i16] {
    bytemuck::cast_slice_mut(words)
}

/// ds_cnn's ops with prepared tables, its Add included, take them (each checked against
/// the model: another op's table or one wrong entry is refused) and the outputs stay
/// the golden ones.
#[test]
fn ds_cnn_takes_its_prepared_tables_add_included() {
    use edgekd_runtime::{Error, OpCode, ADD_TABLE_LEN};
    let (_, model_bytes, input, expected) = REFERENCE
        .iter()
        .find(|r| r.0 == "ds_cnn")
        .expect("the ds_cnn reference model");
    let buf = aligned(model_bytes);
    let model = Model::parse(buf.as_bytes()).unwrap();
    let mut tables: Vec<(usize, OpCode, Vec<u32>, usize)> = Vec::new();
    for (index, op) in model.ops().enumerate() {
        let op = op.unwrap();
        if let Some(table) = op.wide_weights(&model).unwrap() {
            let table: Vec<i16> = table.collect();
            let mut words = vec![0u32; table.len().div_ceil(2)];
            bytemuck_i16(&mut words)[..table.len()].copy_from_slice(&table);
            tables.push((index, op.code, words, table.len()));
        }
    }
    let add = tables
        .iter()
        .position(|t| t.1 == OpCode::Add)
        .expect("ds_cnn's Add has a prepared table");
    assert_eq!(tables[add].3, ADD_TABLE_LEN);
    // Refused: another op's table, and the Add table with one entry off (both in
    // 4-byte aligned buffers, so only their contents can be wrong).
    let other = (add + 1) % tables.len();
    let (add_index, other_len) = (tables[add].0, tables[other].3);
    let mut other_words = tables[other].2.clone();
    let mut wrong = tables[add].2.clone();
    wrong[100] ^= 1;
    let other_view = &bytemuck_i16(&mut other_words)[..other_len];
    let wrong_view = &bytemuck_i16(&mut wrong)[..ADD_TABLE_LEN];
    let views: Vec<(usize, &[i16])> = tables
        .iter_mut()
        .map(|(i, _, words, len)| (*i, &bytemuck_i16(words)[..*len]))
        .collect();
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena).unwrap();
    assert_eq!(
        interp.set_wide_weights(add_index, other_view),
        Err(Error::ShapeMismatch)
    );
    assert_eq!(
        interp.set_wide_weights(add_index, wrong_view),
        Err(Error::ShapeMismatch)
    );
    for (index, table) in views {
        interp.set_wide_weights(index, table).unwrap();
    }
    let (rows, cols, x) = npy_i8(input);
    let (_, ecols, y) = npy_i8(expected);
    for r in 0..rows {
        let sample = &x[r * cols..][..cols];
        interp.input_mut(0).unwrap().copy_from_slice(sample);
        interp.invoke().unwrap();
        let want = &y[r * ecols..][..ecols];
        assert_eq!(interp.output(0).unwrap(), want, "sample {r}");
    }
}
