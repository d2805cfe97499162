//! Finite-difference checks: every layer type's parameter gradients and the KD losses'
//! logit gradients against central differences in f64; temperature and alpha edge cases.

use candle_core::{DType, Device, Tensor, Var};
use edgekd::data::Normalization;
use edgekd::nn::{LayerSpec, Mode, Net};
use edgekd::train::loss;
use edgekd::train::recipe::DistillSpec;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

fn layers(toml_text: &str) -> Vec<LayerSpec> {
    #[derive(serde::Deserialize)]
    struct M {
        layers: Vec<LayerSpec>,
    }
    toml::from_str::<M>(toml_text).unwrap().layers
}

/// Loss = sum(logits * r) for a fixed random r: every logit's gradient matters.
fn objective(net: &mut Net, x: &Tensor, r: &Tensor) -> Tensor {
    let mut rng = Pcg64::seed_from_u64(99);
    let y = net.forward(x, Mode::Train(&mut rng)).unwrap();
    (y * r).unwrap().sum_all().unwrap()
}

fn check_layers(name: &str, spec: &str, input: [usize; 3]) {
    let classes = 3;
    let mut net = Net::new(
        &layers(spec),
        input,
        classes,
        Normalization {
            mean: vec![0.1; input[2]],
            std: vec![0.9; input[2]],
        },
        5,
        DType::F64,
    )
    .unwrap();
    let n = 4;
    let mut rng = Pcg64::seed_from_u64(1);
    let f: usize = input.iter().product();
    let xv: Vec<f32> = (0..n * f).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = net.input_tensor(&xv, n).unwrap();
    let rv: Vec<f64> = (0..n * classes)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let r = Tensor::from_vec(rv, (n, classes), &Device::Cpu).unwrap();
    let grads = objective(&mut net, &x, &r).backward().unwrap();
    let params = net.params.clone();
    let eps = 1e-6;
    let mut checked = 0;
    for p in &params {
        let g: Vec<f64> = grads
            .get(&p.var)
            .unwrap_or_else(|| panic!("{name}: no gradient for {}", p.name))
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let orig = p.var.as_tensor().copy().unwrap();
        let base: Vec<f64> = orig.flatten_all().unwrap().to_vec1().unwrap();
        for i in 0..base.len() {
            let mut eval = |d: f64| {
                let mut v = base.clone();
                v[i] += d;
                p.var
                    .set(&Tensor::from_vec(v, orig.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                objective(&mut net, &x, &r).to_scalar::<f64>().unwrap()
            };
            let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
            p.var.set(&orig).unwrap();
            let err = (fd - g[i]).abs();
            assert!(
                err <= 1e-5 * (1.0 + fd.abs()),
                "{name}: {}[{i}] analytic {} vs finite difference {fd}",
                p.name,
                g[i]
            );
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn conv_valid_1d() {
    check_layers(
        "conv",
        r#"
[[layers]]
type = "conv"
filters = 3
kernel = 3
act = "relu"
[[layers]]
type = "dense"
units = 3
"#,
        [1, 9, 2],
    );
}

#[test]
fn conv_same_strided_2d() {
    check_layers(
        "conv same s2",
        r#"
[[layers]]
type = "conv"
filters = 2
kernel = [3, 2]
stride = [2, 2]
padding = "same"
[[layers]]
type = "dense"
units = 3
"#,
        [5, 6, 2],
    );
}

#[test]
fn depthwise_conv() {
    check_layers(
        "dwconv",
        r#"
[[layers]]
type = "dwconv"
kernel = 3
stride = 2
padding = "same"
act = "relu6"
[[layers]]
type = "dense"
units = 3
"#,
        [4, 5, 3],
    );
}

#[test]
fn batchnorm_conv_and_dense() {
    check_layers(
        "batchnorm",
        r#"
[[layers]]
type = "conv"
filters = 3
kernel = 2
batchnorm = true
act = "relu"
[[layers]]
type = "dense"
units = 4
batchnorm = true
[[layers]]
type = "dense"
units = 3
"#,
        [1, 6, 2],
    );
}

#[test]
fn pools_gap_flatten_dropout() {
    check_layers(
        "pools",
        r#"
[[layers]]
type = "conv"
filters = 2
kernel = 1
[[layers]]
type = "maxpool"
size = 2
[[layers]]
type = "avgpool"
size = [1, 2]
[[layers]]
type = "flatten"
[[layers]]
type = "dropout"
rate = 0.3
[[layers]]
type = "dense"
units = 3
"#,
        [4, 8, 2],
    );
    check_layers(
        "gap",
        r#"
[[layers]]
type = "dense"
units = 5
act = "relu"
[[layers]]
type = "dense"
units = 3
"#,
        [1, 4, 1],
    );
    check_layers(
        "gap",
        r#"
[[layers]]
type = "conv"
filters = 4
kernel = 2
[[layers]]
type = "gap"
[[layers]]
type = "dense"
units = 3
"#,
        [3, 3, 2],
    );
}

/// Gradient of `f(logits)` against central differences.
fn check_loss(name: &str, f: &dyn Fn(&Tensor) -> Tensor, z: &[f64], n: usize, k: usize) {
    let v = Var::from_tensor(&Tensor::from_vec(z.to_vec(), (n, k), &Device::Cpu).unwrap()).unwrap();
    let g: Vec<f64> = f(v.as_tensor())
        .backward()
        .unwrap()
        .get(&v)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let eps = 1e-6;
    for i in 0..z.len() {
        let at = |d: f64| {
            let mut w = z.to_vec();
            w[i] += d;
            f(&Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap())
                .to_scalar::<f64>()
                .unwrap()
        };
        let fd = (at(eps) - at(-eps)) / (2.0 * eps);
        assert!(
            (fd - g[i]).abs() <= 1e-6 * (1.0 + fd.abs()),
            "{name}: d/dz[{i}] analytic {} vs finite difference {fd}",
            g[i]
        );
    }
}

fn random(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    let mut rng = Pcg64::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-scale..scale)).collect()
}

fn teacher_probs(n: usize, k: usize, t: f64) -> Vec<f32> {
    let logits: Vec<f32> = random(n * k, 7, 3.0).iter().map(|&v| v as f32).collect();
    loss::temper(&logits, k, t)
}

#[test]
fn hinton_kd_gradient_and_value() {
    let (n, k) = (3, 5);
    for t in [0.5, 1.0, 4.0, 20.0] {
        let p = teacher_probs(n, k, t);
        let z = random(n * k, 3, 2.0);
        check_loss(
            &format!("hinton T={t}"),
            &|l| loss::hinton_kd(l, &p, t).unwrap(),
            &z,
            n,
            k,
        );
        // KL >= 0.
        let v = loss::hinton_kd(
            &Tensor::from_vec(z.clone(), (n, k), &Device::Cpu).unwrap(),
            &p,
            t,
        )
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
        assert!(v > 0.0);
    }
    // A student equal to the teacher has zero loss, at any temperature.
    let logits = random(n * k, 7, 3.0);
    let lf: Vec<f32> = logits.iter().map(|&v| v as f32).collect();
    for t in [0.3, 1.0, 8.0] {
        let p = loss::temper(&lf, k, t);
        let z = Tensor::from_vec(logits.clone(), (n, k), &Device::Cpu).unwrap();
        let v = loss::hinton_kd(&z, &p, t)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(v.abs() < 1e-6, "T={t}: loss {v}");
    }
}

#[test]
fn high_temperature_is_logit_matching() {
    // Hinton et al.: as T grows, T^2 * KL's gradient tends to (z_s - z_t) / (n * K) for
    // zero-mean logits.
    let (n, k) = (2, 4);
    let center = |v: Vec<f64>| -> Vec<f64> {
        v.chunks(k)
            .flat_map(|r| {
                let m = r.iter().sum::<f64>() / k as f64;
                r.iter().map(move |x| x - m).collect::<Vec<_>>()
            })
            .collect()
    };
    let zt = center(random(n * k, 11, 1.0));
    let zs = center(random(n * k, 12, 1.0));
    let t = 1000.0;
    let p = loss::temper(&zt.iter().map(|&v| v as f32).collect::<Vec<_>>(), k, t);
    let v = Var::from_tensor(&Tensor::from_vec(zs.clone(), (n, k), &Device::Cpu).unwrap()).unwrap();
    let g: Vec<f64> = loss::hinton_kd(v.as_tensor(), &p, t)
        .unwrap()
        .backward()
        .unwrap()
        .get(&v)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    for i in 0..n * k {
        let want = (zs[i] - zt[i]) / (n * k) as f64;
        // f32 teacher probabilities limit the precision at this temperature.
        assert!((g[i] - want).abs() < 2e-3, "[{i}] {} vs {want}", g[i]);
    }
}

#[test]
fn dkd_and_cross_entropy_gradients() {
    let (n, k) = (3, 4);
    let target = [0u32, 3, 1];
    for t in [1.0, 4.0] {
        let p = teacher_probs(n, k, t);
        let z = random(n * k, 5, 2.0);
        check_loss(
            &format!("dkd T={t}"),
            &|l| loss::dkd(l, &p, &target, t, 1.0, 8.0).unwrap(),
            &z,
            n,
            k,
        );
    }
    // DKD with a = b = 1 equals T^2 * KL when the teacher's non-target split matches: check
    // it is non-negative and zero at the teacher.
    let logits = random(n * k, 7, 3.0);
    let p = loss::temper(
        &logits.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        k,
        2.0,
    );
    let z = Tensor::from_vec(logits, (n, k), &Device::Cpu).unwrap();
    let v = loss::dkd(&z, &p, &target, 2.0, 1.0, 8.0)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(v.abs() < 1e-5, "dkd at the teacher: {v}");

    // Soft cross-entropy ignores masked rows and averages over the rest.
    let targets: Vec<f64> = vec![1., 0., 0., 0., 0., 0., 0., 1., 0.5, 0.5, 0., 0.];
    let tt = Tensor::from_vec(targets, (n, k), &Device::Cpu).unwrap();
    let mask = Tensor::from_vec(vec![1.0f64, 0.0, 1.0], n, &Device::Cpu).unwrap();
    let z = random(n * k, 9, 2.0);
    check_loss(
        "soft CE",
        &|l| loss::soft_cross_entropy(l, &tt, &mask).unwrap(),
        &z,
        n,
        k,
    );
    let zt = Tensor::from_vec(z.clone(), (n, k), &Device::Cpu).unwrap();
    let ce = loss::soft_cross_entropy(&zt, &tt, &mask)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    let lse = |r: &[f64]| r.iter().map(|v| v.exp()).sum::<f64>().ln();
    let want = ((lse(&z[0..4]) - z[0]) + (lse(&z[8..12]) - 0.5 * z[8] - 0.5 * z[9])) / 2.0;
    assert!((ce - want).abs() < 1e-9, "{ce} vs {want}");
}

#[test]
fn ensemble_averages_probabilities_not_logits() {
    let k = 2;
    let a = vec![0.0f32.ln(), 1.0f32.ln()]; // one-hot on class 1 (log 0 = -inf)
    let b = vec![(0.5f32).ln(), (0.5f32).ln()];
    let p = loss::ensemble(&[a, b], k, 1.0);
    assert!(
        (p[0] - 0.25).abs() < 1e-6 && (p[1] - 0.75).abs() < 1e-6,
        "{p:?}"
    );
}

#[test]
fn temperature_and_alpha_ranges() {
    let ok = DistillSpec::default();
    assert!(ok.validate().is_ok());
    for (t, a) in [
        (0.0, 0.5),
        (-1.0, 0.5),
        (f64::NAN, 0.5),
        (1.0, -0.1),
        (1.0, 1.5),
    ] {
        let s = DistillSpec {
            temperature: t,
            alpha: a,
            ..DistillSpec::default()
        };
        let e = s.validate().unwrap_err().to_string();
        assert!(e.contains("temperature") || e.contains("alpha"), "{e}");
    }
    for (t, a) in [(1e-3, 0.0), (1e-3, 1.0), (100.0, 1.0)] {
        let s = DistillSpec {
            temperature: t,
            alpha: a,
            ..DistillSpec::default()
        };
        assert!(s.validate().is_ok());
    }
    // A tiny temperature stays finite (log-space throughout).
    let z = Tensor::from_vec(
        vec![1.0f64, 2.0, 3.0, 30.0, -30.0, 0.0],
        (2, 3),
        &Device::Cpu,
    )
    .unwrap();
    let p = loss::temper(&[3.0, 2.0, 1.0, 0.0, 0.0, 50.0], 3, 1e-3);
    let v = loss::hinton_kd(&z, &p, 1e-3)
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert!(v.is_finite());
}
