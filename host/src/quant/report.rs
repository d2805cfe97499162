//! The per-layer quantization report: float vs int8 SQNR of every op's output, clipping
//! ratio and range of every activation, and the per-channel weight ranges and scales.

use super::build::{Built, OpPoint};
use super::calib::{representable, sqnr_db};
use super::float::FloatModel;
use super::int8::{Int8Model, SqnrProbe};
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write as _;

/// One op's output tensor.
#[derive(Debug, Clone, Serialize)]
pub struct TensorRow {
    /// Op index in the `.ekd` file.
    pub op: usize,
    /// Op type.
    pub op_type: String,
    /// Float layer it comes from (`None`: appended softmax).
    pub layer: Option<usize>,
    /// Output dims.
    pub shape: Vec<usize>,
    /// Output scale.
    pub scale: f32,
    /// Output zero point.
    pub zero_point: i32,
    /// Real range the int8 output represents.
    pub range: [f64; 2],
    /// Calibration method that chose the range (`None` where the range is inherited or fixed).
    pub method: Option<String>,
    /// Percentage of float values outside the range.
    pub clip_pct: f64,
    /// Float vs int8 SQNR in dB (`None`: identical).
    pub sqnr_db: Option<f64>,
}

/// One weighted layer.
#[derive(Debug, Clone, Serialize)]
pub struct WeightRow {
    /// Layer index.
    pub layer: usize,
    /// Per output channel: float minimum.
    pub min: Vec<f32>,
    /// Per output channel: float maximum.
    pub max: Vec<f32>,
    /// Per output channel: int8 scale.
    pub scale: Vec<f32>,
    /// Float vs dequantized weights SQNR in dB.
    pub sqnr_db: Option<f64>,
}

/// The per-layer report.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// Samples the SQNR was measured on.
    pub samples: usize,
    /// Every op's output.
    pub tensors: Vec<TensorRow>,
    /// Every weighted layer.
    pub weights: Vec<WeightRow>,
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Measures the report on raw samples `x`; `methods[g]` names the method of group `g`.
pub fn measure(
    float: &FloatModel,
    built: &Built,
    methods: &[String],
    x: &[f32],
) -> Result<LayerReport> {
    let int8 = Int8Model::new(&built.bytes)?;
    let model = int8.model();
    let mut probe = SqnrProbe::new(&model, &built.op_points)?;
    let features = float.features();
    int8.run(x, features, &mut probe, |s, p| {
        p.load_sample(float, &x[s * features..(s + 1) * features])
    })?;
    let groups = super::build::groups(float);
    let mut tensors = Vec::new();
    for (i, op) in model.ops().enumerate() {
        let op = op?;
        let t = model.tensor(op.output())?;
        let (scale, zero_point) = t.scale_zero_point()?;
        let (lo, hi) = representable(scale, zero_point);
        use edgekd_runtime::OpCode::{Conv2d, DepthwiseConv2d, FullyConnected, GlobalAvgPool};
        let method = match (built.op_points[i], op.code) {
            (OpPoint::Point(p), Conv2d | DepthwiseConv2d | FullyConnected | GlobalAvgPool) => {
                methods.get(groups[p]).cloned()
            }
            _ => None,
        };
        tensors.push(TensorRow {
            op: i,
            op_type: format!("{:?}", op.code),
            layer: built.op_layers[i],
            shape: t.dims().to_vec(),
            scale,
            zero_point,
            range: [lo, hi],
            method,
            clip_pct: probe.clip_pct(i),
            sqnr_db: finite(probe.sqnr_db(i)),
        });
    }
    let weights = built
        .weights
        .iter()
        .map(|qw| {
            let layer = &float.layers[qw.layer];
            let (w, _) = layer.weights().expect("weighted layer");
            let c = layer.out_channels();
            let (mut min, mut max) = (vec![f32::INFINITY; c], vec![f32::NEG_INFINITY; c]);
            let (mut sig, mut noise) = (0f64, 0f64);
            for (i, (&v, &q)) in w.iter().zip(&qw.q).enumerate() {
                let ch = layer.weight_channel(i);
                min[ch] = min[ch].min(v);
                max[ch] = max[ch].max(v);
                let d = f64::from(q) * f64::from(qw.scales[ch]);
                sig += f64::from(v) * f64::from(v);
                noise += (f64::from(v) - d).powi(2);
            }
            WeightRow {
                layer: qw.layer,
                min,
                max,
                scale: qw.scales.clone(),
                sqnr_db: finite(sqnr_db(sig, noise)),
            }
        })
        .collect();
    Ok(LayerReport {
        samples: x.len() / features,
        tensors,
        weights,
    })
}

fn db(v: Option<f64>) -> String {
    v.map_or("exact".into(), |v| format!("{v:.1}"))
}

impl LayerReport {
    /// The report as aligned text tables.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:>3}  {:<16} {:>5}  {:<14} {:>10} {:>5}  {:<19} {:<16} {:>7} {:>9}",
            "op", "type", "layer", "shape", "scale", "zp", "range", "method", "clip%", "SQNR dB"
        );
        for t in &self.tensors {
            let _ = writeln!(
                s,
                "{:>3}  {:<16} {:>5}  {:<14} {:>10.6} {:>5}  {:<19} {:<16} {:>7.3} {:>9}",
                t.op,
                t.op_type,
                t.layer.map_or("-".into(), |l| l.to_string()),
                format!("{:?}", t.shape),
                t.scale,
                t.zero_point,
                format!("[{:.3}, {:.3}]", t.range[0], t.range[1]),
                t.method.as_deref().unwrap_or("-"),
                t.clip_pct,
                db(t.sqnr_db)
            );
        }
        let _ = writeln!(s, "\nweights (per output channel):");
        let _ = writeln!(
            s,
            "{:>5}  {:>4}  {:<21} {:<21} {:>9}",
            "layer", "ch", "min..max (all ch)", "scale min..max", "SQNR dB"
        );
        for w in &self.weights {
            let fold = |v: &[f32], f: fn(f32, f32) -> f32, init| v.iter().cloned().fold(init, f);
            let _ = writeln!(
                s,
                "{:>5}  {:>4}  {:<21} {:<21} {:>9}",
                w.layer,
                w.scale.len(),
                format!(
                    "[{:.4}, {:.4}]",
                    fold(&w.min, f32::min, f32::INFINITY),
                    fold(&w.max, f32::max, f32::NEG_INFINITY)
                ),
                format!(
                    "[{:.2e}, {:.2e}]",
                    fold(&w.scale, f32::min, f32::INFINITY),
                    fold(&w.scale, f32::max, f32::NEG_INFINITY)
                ),
                db(w.sqnr_db)
            );
        }
        s
    }
}
