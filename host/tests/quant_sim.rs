//! The int8 accuracy measured with `edgekd-runtime` equals that of a separate simulation of
//! the same integer arithmetic, written here from the TFLite int8 spec without calling
//! `edgekd-kernels`: 128-bit integer accumulation and requantization (gemmlowp's rounding
//! doubling high multiply then rounding right shift). They agree bit for bit on every op of
//! every sample, so the accuracies are equal exactly, not within rounding.
//!
//! A second simulation with the ideal real multiplier (`in_scale * w_scale / out_scale`,
//! rounded once) shows what "within rounding" means: given the same int8 input, each op's
//! output differs from the runtime by at most 1 LSB, on a small fraction of values.

mod quant_common;

use edgekd::quant::build::BuildOptions;
use edgekd::quant::float::FloatModel;
use edgekd::quant::ptq::BiasCorrection;
use edgekd::quant::{quantize, CalibSet, Calibration, Method, PtqOptions, QatMode, QatOptions};
use edgekd_runtime::format::OpParams;
use edgekd_runtime::{Interpreter, Model, OpCode, Profiler};
use quant_common::{cnn_bytes, mlp_bytes, signals};
use std::path::Path;

/// Records every op's int8 output.
struct Tap(Vec<Vec<i8>>);

impl Profiler for Tap {
    fn begin(&mut self, _: usize, _: OpCode) {}
    fn end(&mut self, _: usize, _: OpCode) {}
    fn wants_outputs(&self) -> bool {
        true
    }
    fn observe(&mut self, _: usize, out: &[i8]) {
        self.0.push(out.to_vec());
    }
}

fn round_half_away_div(num: i128, den: i128) -> i128 {
    let q = num.abs() * 2 + den;
    let r = q / (2 * den);
    if num < 0 {
        -r
    } else {
        r
    }
}

/// gemmlowp requantization in 128-bit integers: `x * 2^left`, then `round(x * m / 2^31)`,
/// then `round(. / 2^right)`, both rounding ties away from zero.
fn requant_exact(acc: i64, m: i32, shift: i32) -> i64 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    let x = i128::from(acc as i32).wrapping_shl(left as u32) as i32; // C wraps in int32
    let high = round_half_away_div(i128::from(x) * i128::from(m), 1i128 << 31);
    round_half_away_div(high, 1i128 << right) as i64
}

/// The ideal real multiplier, rounded once.
fn requant_real(acc: i64, real: f64) -> i64 {
    let v = acc as f64 * real;
    (if v >= 0.0 { v + 0.5 } else { v - 0.5 }).trunc() as i64
}

#[derive(Clone, Copy)]
enum Mode {
    Exact,
    Real,
}

/// One op in simulation, from the parsed model's stored parameters.
#[allow(clippy::needless_range_loop)]
fn simulate_op(model: &Model<'_>, index: usize, input: &[i8], mode: Mode) -> Vec<i8> {
    let op = model.ops().nth(index).unwrap().unwrap();
    let in_t = model.tensor(op.input(0).unwrap()).unwrap();
    let out_t = model.tensor(op.output()).unwrap();
    let (ins, outs) = (in_t.shape(), out_t.shape());
    let (in_s, _) = in_t.scale_zero_point().unwrap();
    let (out_s, _) = out_t.scale_zero_point().unwrap();
    let params = op.params(model).unwrap();
    let clamp = |v: i64, lo: i8, hi: i8| v.clamp(i64::from(lo), i64::from(hi)) as i8;
    let w_scales = |i: usize| -> Vec<f32> {
        match model.tensor(i).unwrap().quant {
            edgekd_runtime::Quant::PerChannel { scales, .. } => scales.to_vec(),
            edgekd_runtime::Quant::PerTensor { scale, .. } => vec![scale],
            _ => panic!("weights without scales"),
        }
    };
    let rq = |acc: i64, c: usize, m: &[i32], s: &[i32], ws: &[f32]| -> i64 {
        let k = if m.len() == 1 { 0 } else { c };
        match mode {
            Mode::Exact => requant_exact(acc, m[k], s[k]),
            Mode::Real => requant_real(
                acc,
                f64::from(in_s) * f64::from(ws[if ws.len() == 1 { 0 } else { c }])
                    / f64::from(out_s),
            ),
        }
    };
    match params {
        OpParams::Conv2d(p, r) | OpParams::DepthwiseConv2d(p, r) => {
            let depthwise = op.code == OpCode::DepthwiseConv2d;
            let w_i = op.input(1).unwrap();
            let wt = model.tensor(w_i).unwrap();
            let w = wt.const_i8().unwrap();
            let d = wt.dims();
            let (kh, kw) = (d[1], d[2]);
            let b = model
                .tensor(op.input(2).unwrap())
                .unwrap()
                .const_i32()
                .unwrap();
            let ws = w_scales(w_i);
            let mut out = Vec::new();
            for oy in 0..outs.h {
                for ox in 0..outs.w {
                    for o in 0..outs.c {
                        let mut acc = i64::from(b[o]);
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * p.stride_h + ky) as i64 - p.pad_top as i64;
                                let ix = (ox * p.stride_w + kx) as i64 - p.pad_left as i64;
                                if iy < 0 || ix < 0 || iy >= ins.h as i64 || ix >= ins.w as i64 {
                                    continue;
                                }
                                let at = (iy as usize * ins.w + ix as usize) * ins.c;
                                let channels: Vec<(usize, usize)> = if depthwise {
                                    vec![(o, (ky * kw + kx) * outs.c + o)]
                                } else {
                                    (0..ins.c)
                                        .map(|c| (c, ((o * kh + ky) * kw + kx) * ins.c + c))
                                        .collect()
                                };
                                for (c, wi) in channels {
                                    let xv =
                                        i64::from(input[at + c]) - i64::from(p.input_zero_point);
                                    acc += xv * i64::from(w[wi]);
                                }
                            }
                        }
                        let v =
                            rq(acc, o, r.multiplier, r.shift, &ws) + i64::from(p.output_zero_point);
                        out.push(clamp(v, p.clamp.min, p.clamp.max));
                    }
                }
            }
            out
        }
        OpParams::FullyConnected(p, r) => {
            let w_i = op.input(1).unwrap();
            let wt = model.tensor(w_i).unwrap();
            let (o_n, i_n) = (wt.dims()[0], wt.dims()[1]);
            let w = wt.const_i8().unwrap();
            let b = model
                .tensor(op.input(2).unwrap())
                .unwrap()
                .const_i32()
                .unwrap();
            let ws = w_scales(w_i);
            (0..o_n)
                .map(|o| {
                    let acc: i64 = i64::from(b[o])
                        + (0..i_n)
                            .map(|i| {
                                (i64::from(input[i]) - i64::from(p.input_zero_point))
                                    * i64::from(w[o * i_n + i])
                            })
                            .sum::<i64>();
                    let v = rq(acc, o, r.multiplier, r.shift, &ws) + i64::from(p.output_zero_point);
                    clamp(v, p.clamp.min, p.clamp.max)
                })
                .collect()
        }
        OpParams::MaxPool2d(p) | OpParams::AvgPool2d(p) => {
            let max = op.code == OpCode::MaxPool2d;
            let mut out = Vec::new();
            for oy in 0..outs.h {
                for ox in 0..outs.w {
                    for c in 0..outs.c {
                        let mut vals = Vec::new();
                        for ky in 0..p.filter_h {
                            for kx in 0..p.filter_w {
                                let (iy, ix) = (oy * p.stride_h + ky, ox * p.stride_w + kx);
                                vals.push(i64::from(input[(iy * ins.w + ix) * ins.c + c]));
                            }
                        }
                        let v = if max {
                            *vals.iter().max().unwrap()
                        } else {
                            round_half_away_div(vals.iter().sum::<i64>().into(), vals.len() as i128)
                                as i64
                        };
                        out.push(clamp(v, p.clamp.min, p.clamp.max));
                    }
                }
            }
            out
        }
        OpParams::Reshape => input.to_vec(),
        other => panic!("op {other:?} is not simulated"),
    }
}

struct Compared {
    int8_correct: usize,
    sim_correct: usize,
    ops_compared: usize,
    real_off_by_one: usize,
    values: usize,
}

fn compare(float_bytes: &[u8], seed: u64) -> Compared {
    let float = FloatModel::from_bytes(float_bytes, Path::new("handmade")).unwrap();
    let calib = signals(300, seed);
    let opts = PtqOptions {
        calibration: Calibration::Fixed(Method::Mse),
        build: BuildOptions {
            name: "sim".into(),
            per_tensor_weights: false,
            softmax: false,
        },
        max_drop: 0.5,
        bias_correction: BiasCorrection::Off,
        search_samples: 100,
        qat: QatOptions {
            mode: QatMode::Off,
            ..Default::default()
        },
        ..Default::default()
    };
    let out = quantize(
        &float,
        &CalibSet {
            x: calib,
            labels: None,
        },
        &opts,
    )
    .unwrap();
    let aligned = edgekd_runtime::writer::AlignedBytes::copy_from(&out.built.bytes);
    let model = Model::parse(aligned.as_bytes()).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena).unwrap();
    // Test data labelled by the float model, so accuracy means agreement with float.
    let test = signals(400, seed + 1);
    let mut c = Compared {
        int8_correct: 0,
        sim_correct: 0,
        ops_compared: 0,
        real_off_by_one: 0,
        values: 0,
    };
    for row in test.chunks_exact(40) {
        let label = edgekd::quant::float::argmax(&float.logits(row));
        interp.set_input_f32(0, row).unwrap();
        let input: Vec<i8> = interp.input_mut(0).unwrap().to_vec();
        let mut tap = Tap(Vec::new());
        interp.invoke_profiled(&mut tap).unwrap();
        let runtime_out = interp.output(0).unwrap().to_vec();
        let mut x = input.clone();
        for i in 0..model.op_count() {
            // Chained: the exact simulation runs on its own outputs end to end.
            x = simulate_op(&model, i, &x, Mode::Exact);
            assert_eq!(
                x, tap.0[i],
                "op {i}: exact simulation differs from the runtime"
            );
            // Layer by layer: the real-multiplier simulation on the runtime's own input.
            let prev = if i == 0 { &input } else { &tap.0[i - 1] };
            let real = simulate_op(&model, i, prev, Mode::Real);
            for (a, b) in real.iter().zip(&tap.0[i]) {
                let d = (i16::from(*a) - i16::from(*b)).abs();
                assert!(d <= 1, "op {i}: real-multiplier simulation is {d} LSB off");
                c.real_off_by_one += usize::from(d == 1);
                c.values += 1;
            }
            c.ops_compared += 1;
        }
        let argmax = |v: &[i8]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
        c.int8_correct += usize::from(argmax(&runtime_out) == label);
        c.sim_correct += usize::from(argmax(&x) == label);
    }
    c
}

#[test]
fn runtime_accuracy_equals_integer_simulation_cnn() {
    let c = compare(&cnn_bytes(7), 11);
    assert_eq!(c.int8_correct, c.sim_correct);
    assert_eq!(
        c.ops_compared,
        400 * 7,
        "conv, dwconv, maxpool, conv, avgpool, reshape, fc"
    );
    // The int8 model is a good approximation of the float one ...
    assert!(
        c.int8_correct >= 360,
        "int8 agrees with float on {} / 400",
        c.int8_correct
    );
    // ... and the real-multiplier simulation is off by one LSB only occasionally.
    assert!(
        c.real_off_by_one * 100 < c.values,
        "{} of {}",
        c.real_off_by_one,
        c.values
    );
}

#[test]
fn runtime_accuracy_equals_integer_simulation_mlp() {
    let c = compare(&mlp_bytes(3), 5);
    assert_eq!(c.int8_correct, c.sim_correct);
    assert!(
        c.int8_correct >= 370,
        "int8 agrees with float on {} / 400",
        c.int8_correct
    );
}
