//! Runs int8 models with `edgekd-runtime` itself (the code the firmware runs) and compares
//! every op's int8 output with the float model through the runtime's [`Profiler`] hook.

use super::build::OpPoint;
use super::calib::{representable, sqnr_db};
use super::float::{argmax, softmax, FloatModel};
use anyhow::{Context, Result};
use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::{Interpreter, Model, OpCode, Profiler};

/// An int8 model held in an aligned buffer.
#[derive(Debug, Clone)]
pub struct Int8Model {
    bytes: AlignedBytes,
}

/// Dequantized outputs of a batch and their predicted classes.
#[derive(Debug, Clone, Default)]
pub struct Int8Outputs {
    /// `n * outputs` dequantized values.
    pub values: Vec<f32>,
    /// Predicted class per sample (the runtime's `argmax`).
    pub predictions: Vec<usize>,
}

impl Int8Model {
    /// Validates `bytes` with the runtime's parser.
    pub fn new(bytes: &[u8]) -> Result<Int8Model> {
        let bytes = AlignedBytes::copy_from(bytes);
        Model::parse(bytes.as_bytes()).context("not a valid .ekd model")?;
        Ok(Int8Model { bytes })
    }

    /// The parsed model.
    pub fn model(&self) -> Model<'_> {
        Model::parse(self.bytes.as_bytes()).expect("validated in new")
    }

    /// The file bytes.
    pub fn bytes(&self) -> &[u8] {
        self.bytes.as_bytes()
    }

    /// Runs every raw sample of `x` (`features` values each) through the interpreter;
    /// `probe` sees every op of every run, `before(s)` is called before sample `s`.
    pub fn run<P: Profiler>(
        &self,
        x: &[f32],
        features: usize,
        probe: &mut P,
        mut before: impl FnMut(usize, &mut P),
    ) -> Result<Int8Outputs> {
        let model = self.model();
        let mut arena = vec![0u8; model.arena_size()];
        let mut interp = Interpreter::new(model, &mut arena)?;
        let out_len = model.output(0)?.elements();
        let mut out = Int8Outputs::default();
        let mut buf = vec![0f32; out_len];
        for (s, row) in x.chunks_exact(features).enumerate() {
            before(s, probe);
            interp
                .set_input_f32(0, row)
                .with_context(|| format!("sample {s}"))?;
            interp.invoke_profiled(probe)?;
            interp.output_f32(0, &mut buf)?;
            out.values.extend_from_slice(&buf);
            out.predictions.push(interp.argmax(0)?);
        }
        Ok(out)
    }

    /// Runs without probing.
    pub fn outputs(&self, x: &[f32], features: usize) -> Result<Int8Outputs> {
        self.run(x, features, &mut NoProbe, |_, _| {})
    }
}

/// A [`Profiler`] that records nothing.
pub struct NoProbe;

impl Profiler for NoProbe {
    fn begin(&mut self, _: usize, _: OpCode) {}
    fn end(&mut self, _: usize, _: OpCode) {}
}

/// Accumulates, per op, the float-vs-int8 signal and noise power and how many float values
/// fall outside the op output's representable range.
pub struct SqnrProbe {
    points: Vec<OpPoint>,
    quant: Vec<(f32, i32)>,
    /// Float tensors of the current sample: points `0..=L`, then the softmax.
    pub current: Vec<Vec<f32>>,
    /// Per op: sum of float squares.
    pub signal: Vec<f64>,
    /// Per op: sum of squared errors.
    pub noise: Vec<f64>,
    /// Per op: float values outside the representable range.
    pub clipped: Vec<u64>,
    /// Per op: values compared.
    pub count: Vec<u64>,
    /// Per op: the last int8 output seen.
    pub last: Vec<Vec<i8>>,
}

impl SqnrProbe {
    /// A probe for `model`, whose op `i` approximates float tensor `points[i]`.
    pub fn new(model: &Model<'_>, points: &[OpPoint]) -> Result<SqnrProbe> {
        let mut quant = Vec::new();
        for op in model.ops() {
            let op = op?;
            quant.push(model.tensor(op.output())?.scale_zero_point()?);
        }
        let n = quant.len();
        anyhow::ensure!(n == points.len(), "{n} ops but {} op points", points.len());
        Ok(SqnrProbe {
            points: points.to_vec(),
            quant,
            current: Vec::new(),
            signal: vec![0.0; n],
            noise: vec![0.0; n],
            clipped: vec![0; n],
            count: vec![0; n],
            last: vec![Vec::new(); n],
        })
    }

    /// Computes the float tensors of one raw sample.
    pub fn load_sample(&mut self, model: &FloatModel, raw: &[f32]) {
        let mut cur = Vec::with_capacity(model.layers.len() + 2);
        let logits = model.forward(raw, |_, v| cur.push(v.to_vec()));
        cur.push(softmax(&logits));
        self.current = cur;
    }

    /// SQNR of op `i` in dB.
    pub fn sqnr_db(&self, i: usize) -> f64 {
        sqnr_db(self.signal[i], self.noise[i])
    }

    /// Percentage of float values op `i`'s output range clips.
    pub fn clip_pct(&self, i: usize) -> f64 {
        100.0 * self.clipped[i] as f64 / self.count[i].max(1) as f64
    }
}

impl Profiler for SqnrProbe {
    fn begin(&mut self, _: usize, _: OpCode) {}
    fn end(&mut self, _: usize, _: OpCode) {}
    fn wants_outputs(&self) -> bool {
        true
    }
    fn observe(&mut self, index: usize, output: &[i8]) {
        let Some(point) = self.points.get(index) else {
            return;
        };
        let reference = match point {
            OpPoint::Point(p) => self.current.get(*p),
            OpPoint::Softmax => self.current.last(),
        };
        let Some(reference) = reference else {
            return;
        };
        let (scale, zp) = self.quant[index];
        let (lo, hi) = representable(scale, zp);
        let half = 0.5 * f64::from(scale);
        for (&q, &f) in output.iter().zip(reference) {
            let d = f64::from(scale) * f64::from(i32::from(q) - zp);
            let f = f64::from(f);
            self.signal[index] += f * f;
            self.noise[index] += (f - d) * (f - d);
            if f < lo - half || f > hi + half {
                self.clipped[index] += 1;
            }
        }
        self.count[index] += output.len() as u64;
        self.last[index].clear();
        self.last[index].extend_from_slice(output);
    }
}

/// Fraction of samples where both prediction lists agree.
pub fn agreement(a: &[usize], b: &[usize]) -> f64 {
    if a.is_empty() {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// Accuracy of predictions against labels.
pub fn accuracy(pred: &[usize], labels: &[u32]) -> f64 {
    if pred.is_empty() {
        return 0.0;
    }
    pred.iter()
        .zip(labels)
        .filter(|(p, y)| **p == **y as usize)
        .count() as f64
        / pred.len() as f64
}

/// Predictions of the float model.
pub fn float_predictions(model: &FloatModel, x: &[f32]) -> (Vec<f32>, Vec<usize>) {
    let f = model.features();
    let mut logits = Vec::with_capacity(x.len() / f * model.classes());
    let mut pred = Vec::with_capacity(x.len() / f);
    for row in x.chunks_exact(f) {
        let l = model.logits(row);
        pred.push(argmax(&l));
        logits.extend(l);
    }
    (logits, pred)
}
