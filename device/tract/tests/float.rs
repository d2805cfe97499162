//! The float twin of a model (dequantized weights on tract's float ops) computes what
//! the int8 model approximates: its outputs stay within the int8 quantization error.

use edgekd_runtime::writer::AlignedBytes;
use edgekd_runtime::Model;
use edgekd_tract::float::{dequantize, into_runnable, lower_f32};
use edgekd_tract::{argmax, Options, TractModel};
use std::path::PathBuf;
use tract_core::internal::*;

#[test]
fn float_twin_tracks_the_int8_model() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/reference");
    for name in ["tiny_cnn", "mlp", "ds_cnn"] {
        let raw = std::fs::read(dir.join(format!("{name}.ekd"))).unwrap();
        let aligned = AlignedBytes::copy_from(&raw);
        let model = Model::parse(aligned.as_bytes()).unwrap();
        let out = model.output(0).unwrap();
        let (out_scale, out_zp) = out.scale_zero_point().unwrap();
        let npy = std::fs::read(dir.join(format!("{name}.input.npy"))).unwrap();
        let inputs: Vec<i8> = npyz::NpyFile::new(&npy[..]).unwrap().into_vec().unwrap();

        let lowered = lower_f32(&model).unwrap();
        let info = lowered.inputs[0].clone();
        let float = into_runnable(lowered).unwrap();
        let mut int8 = TractModel::from_model(&model, &Options::default()).unwrap();
        let (mut argmax_equal, mut clear) = (0, 0);
        let mut worst = 0f32;
        let samples = inputs.len() / info.elements();
        for x in inputs.chunks(info.elements()) {
            let y = float
                .run(tvec!(dequantize(&info, x).unwrap().into_tvalue()))
                .unwrap();
            let y: Vec<f32> = y[0]
                .try_as_plain_ram()
                .unwrap()
                .as_slice::<f32>()
                .unwrap()
                .to_vec();
            let q = int8.run(&[x]).unwrap().remove(0);
            if std::env::var_os("DEBUG_FLOAT").is_some() {
                eprintln!("{name}: float {y:?}\n  int8 {q:?}");
            }
            for (f, &q) in y.iter().zip(&q) {
                let deq = out_scale * (i32::from(q) - out_zp) as f32;
                worst = worst.max((f - deq).abs() / out_scale);
            }
            let float_best = (0..y.len()).fold(0, |b, i| if y[i] > y[b] { i } else { b });
            let runner_up = (0..y.len())
                .filter(|&i| i != float_best)
                .map(|i| y[i])
                .fold(f32::MIN, f32::max);
            // Near-ties may flip under int8 rounding; clear winners must not.
            if y[float_best] - runner_up > 3.0 * out_scale {
                clear += 1;
                argmax_equal += usize::from(float_best == argmax(&q));
            }
        }
        // Rounding at every layer compounds; a handful of output steps is expected,
        // a float model computing something else would be off by far more.
        assert!(
            worst < 3.0,
            "{name}: float vs int8 differ by {worst} output steps"
        );
        assert_eq!(
            argmax_equal, clear,
            "{name}: argmax differs on a clear winner"
        );
        assert!(clear > 0, "{name}: no clear winner among {samples} samples");
        eprintln!("{name}: worst {worst:.2} output steps, {clear}/{samples} clear winners");
    }
}
