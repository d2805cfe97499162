//! Cross-layer equalization: the float function is unchanged, each equalized pair ends with
//! matching per-channel weight ranges, and it removes the per-tensor PTQ loss of an MLP
//! whose hidden unit was rescaled (the case it exists for).

mod quant_common;

use edgekd::quant::equalize::equalize;
use edgekd::quant::float::{argmax, FloatModel, Layer};
use edgekd::quant::ptq::BiasCorrection;
use edgekd::quant::{quantize, CalibSet, Calibration, Method, PtqOptions, QatMode, QatOptions};
use quant_common::{cnn_bytes, mlp_bytes_rescaled, signals};
use std::path::Path;

fn max_abs(v: impl Iterator<Item = f32>) -> f32 {
    v.fold(0f32, |m, x| m.max(x.abs()))
}

#[test]
fn equalization_keeps_the_function_and_balances_each_pair() {
    let original = FloatModel::from_bytes(&cnn_bytes(11), Path::new("cnn")).unwrap();
    let mut m = original.clone();
    // conv -> depthwise is skipped (the depthwise output would have to be rescaled too);
    // conv(ReLU) -> avgpool -> dropout -> dense is the one pair.
    assert_eq!(equalize(&mut m).pairs, 1);
    for r in signals(30, 4).chunks_exact(40) {
        let (a, b) = (original.logits(r), m.logits(r));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + x.abs()), "{a:?} vs {b:?}");
        }
    }
    let (Layer::Conv { w: w3, out_c, .. }, Layer::Dense { w: w6, .. }) =
        (&m.layers[3], &m.layers[6])
    else {
        panic!("unexpected layers");
    };
    let fan = w3.len() / out_c;
    for c in 0..*out_c {
        let r1 = max_abs(w3[c * fan..(c + 1) * fan].iter().copied());
        let r2 = max_abs(w6.iter().skip(c).step_by(*out_c).copied());
        assert!((r1 - r2).abs() <= 1e-5 * r1, "channel {c}: {r1} vs {r2}");
    }
}

#[test]
fn equalization_removes_the_per_tensor_loss_of_a_rescaled_unit() {
    let balanced = FloatModel::from_bytes(&mlp_bytes_rescaled(3, 1.0), Path::new("m")).unwrap();
    let skewed = FloatModel::from_bytes(&mlp_bytes_rescaled(3, 128.0), Path::new("m")).unwrap();
    let x = signals(400, 2);
    let labels = x
        .chunks_exact(40)
        .map(|r| argmax(&balanced.logits(r)) as u32)
        .collect();
    let data = CalibSet {
        x,
        labels: Some(labels),
    };
    let metric = |model: &FloatModel, equalize: bool| {
        let mut o = PtqOptions {
            calibration: Calibration::Fixed(Method::Mse),
            bias_correction: BiasCorrection::Off,
            qat: QatOptions {
                mode: QatMode::Off,
                ..Default::default()
            },
            equalize,
            ..Default::default()
        };
        o.build.per_tensor_weights = true;
        let out = quantize(model, &data, &o).unwrap();
        if equalize {
            let step = &out.steps[0];
            assert_eq!(step.name, "cross-layer equalization", "{step:?}");
            assert!(step.note.starts_with("1 layer pair"), "{step:?}");
        }
        out.int8_metric
    };
    let (plain, eq, reference) = (
        metric(&skewed, false),
        metric(&skewed, true),
        metric(&balanced, false),
    );
    eprintln!("per-tensor PTQ agreement: rescaled {plain:.1} %, equalized {eq:.1} %, original {reference:.1} %");
    assert!(plain < 80.0, "{plain}");
    assert!(eq > plain + 15.0, "{eq} vs {plain}");
    assert!(eq >= reference - 3.0, "{eq} vs {reference}");
}
