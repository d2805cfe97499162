//! `edgekd run`: the whole chain in one command, from a recipe to a measured int8 model.
//!
//! Stages, each skipped when its inputs did not change ([`stages`]):
//! 1. check: recipe, data, teacher file, student architecture, predicted int8 size against
//!    every board's RAM and flash, tools for every target — before any training;
//! 2. teacher: trained here, or an ONNX / edgekd file;
//! 3. student: distilled from the teacher (`train::run` with the teacher);
//! 4. quantize: int8 per the TFLite spec (`quant::quantize`), `student.ekd`;
//! 5. export: ONNX, C header, Rust source;
//! 6. eval: teacher f32 / student f32 / student int8 on the test split (`eval::evaluate`);
//! 7. targets: host (edgekd-runtime + tract), QEMU boards, aarch64, probe-rs chips;
//!
//! then `report.json`, `report.md` and one table ([`report`]).

pub mod recipe;
pub mod report;
pub mod stages;
pub mod targets;

use crate::data::Splits;
use crate::eval::{self, plot, TestSet};
use crate::io::{self, Matrix};
use crate::nn::{store, Net};
use crate::quant::build::{build, groups, BuildOptions};
use crate::quant::int8::Int8Model;
use crate::quant::{quantize, CalibSet, Calibration, FloatModel, Method, PtqOptions};
use crate::teacher::{self, LoadOptions};
use crate::train::{self, RunConfig, Summary};
use anyhow::{bail, ensure, Context, Result};
use candle_core::DType;
use edgekd_runtime::Interpreter;
use recipe::{CalibrationName, Pipeline};
use report::{ModelRow, RunReport};
use serde::{Deserialize, Serialize};
use stages::{Key, Stages};
use std::path::{Path, PathBuf};
use std::time::Instant;
use targets::{BoardMemory, Probe, TargetResult, TargetSpec};

/// How to run a pipeline.
#[derive(Debug, Clone)]
pub struct Options {
    /// Output folder.
    pub out: PathBuf,
    /// Redo every stage.
    pub force: bool,
    /// Progress bars and stage lines.
    pub progress: bool,
}

/// What the teacher stage leaves for the later ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TeacherFacts {
    /// The file the student is distilled from.
    path: PathBuf,
    /// Description.
    describe: String,
    /// Test accuracy, %.
    accuracy: f64,
    /// Parameters, when known.
    params: Option<usize>,
    /// MACs per inference, when known.
    macs: Option<u64>,
    /// Bytes of the teacher file.
    file_bytes: u64,
}

/// Prints stage progress.
struct Log {
    on: bool,
    start: Instant,
}

impl Log {
    fn stage(&self, n: usize, name: &str, cached: bool) {
        if self.on {
            eprintln!(
                "[{n}/7] {name}{} ({:.1} s)",
                if cached { ": unchanged, skipped" } else { "" },
                self.start.elapsed().as_secs_f64()
            );
        }
    }
}

/// Runs every stage of `p` into `opts.out`.
pub fn run(p: &Pipeline, opts: &Options) -> Result<RunReport> {
    let start = Instant::now();
    let log = Log {
        on: opts.progress,
        start,
    };
    // 1. Everything that can be checked before training.
    log.stage(1, "check recipe, data, models and targets", false);
    let student_recipe = p.student_recipe()?;
    let teacher_recipe = p.teacher_recipe()?;
    let splits = train::load_splits(&student_recipe)?;
    check_student_fits(p, &splits)?;
    if let Some(t) = &teacher_recipe {
        Net::new(
            &t.recipe.model.layers,
            t.recipe.data.shape,
            t.recipe.data.classes,
            splits.norm.clone(),
            0,
            DType::F32,
        )
        .context("teacher.model")?;
    }
    let load_opts = LoadOptions {
        input_shape: p.recipe.teacher.input_shape.clone(),
        output: recipe::output_kind(&p.recipe.teacher.output)?,
        features: splits.train.features(),
        classes: p.recipe.data.classes,
    };
    if let Some(file) = p.teacher_file() {
        teacher::load(&file, &load_opts).with_context(|| format!("teacher {}", file.display()))?;
    }
    for t in &p.targets {
        t.check_tools()?;
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("cannot create {}", opts.out.display()))?;
    let mut stages = Stages::open(&opts.out);
    let data_key = data_key(p)?;

    // 2. Teacher.
    let teacher_key = {
        let k = Key::new("teacher")
            .add("data", data_key.as_bytes())
            .add_json("teacher", &p.recipe.teacher)?;
        match p.teacher_file() {
            Some(f) => k.add_file("teacher file", &f)?,
            None => k.add_json("augment", &p.recipe.augment)?,
        }
        .finish()
    };
    let teacher_dir = opts.out.join("teacher");
    let facts_path = teacher_dir.join("teacher.json");
    let cached =
        !opts.force && stages.is_fresh("teacher", &teacher_key, std::slice::from_ref(&facts_path));
    log.stage(2, "teacher", cached);
    let teacher_facts: TeacherFacts = if cached {
        read_json(&facts_path)?
    } else {
        let resume = stages.start("teacher", &teacher_key)? && !opts.force;
        let facts = match &teacher_recipe {
            Some(t) => {
                let summary = train::run(RunConfig {
                    recipe: t,
                    out: teacher_dir.clone(),
                    seed: t.recipe.train.seed,
                    resume,
                    halt_after: None,
                    teachers: Vec::new(),
                    cache_dir: None,
                    progress: opts.progress,
                    export_onnx: true,
                    splits: splits.clone(),
                })?;
                let path = teacher_dir.join("model.safetensors");
                TeacherFacts {
                    describe: format!("{} (trained here)", t.recipe.name),
                    accuracy: 100.0 * summary.test_acc,
                    params: Some(summary.params),
                    macs: Some(summary.macs as u64),
                    file_bytes: std::fs::metadata(&path)?.len(),
                    path,
                }
            }
            None => {
                let path = p.teacher_file().context("the recipe names no teacher")?;
                let mut t = teacher::load(&path, &load_opts)?;
                let lp = t.log_probs(&splits.test.x, splits.test.len())?;
                let accuracy =
                    100.0 * teacher::accuracy(&lp, &splits.test.y, p.recipe.data.classes);
                let sample_dims = p
                    .recipe
                    .teacher
                    .input_shape
                    .clone()
                    .unwrap_or_else(|| vec![splits.train.features()]);
                let (params, macs) = teacher_size(&path, &sample_dims)?;
                TeacherFacts {
                    describe: t.describe(),
                    accuracy,
                    params,
                    macs,
                    file_bytes: std::fs::metadata(&path)?.len(),
                    path,
                }
            }
        };
        write_json(&facts_path, &facts)?;
        stages.finish("teacher", &teacher_key)?;
        facts
    };

    // 3. Student, distilled from the teacher.
    let student_key = Key::new("student")
        .add("data", data_key.as_bytes())
        .add("teacher", teacher_key.as_bytes())
        .add_json("augment", &p.recipe.augment)?
        .add_json("student", &p.recipe.student)?
        .add_json("distill", &p.recipe.distill)?
        .finish();
    let student_dir = opts.out.join("student");
    let student_path = student_dir.join("model.safetensors");
    let summary_path = student_dir.join("summary.json");
    let cached = !opts.force
        && stages.is_fresh(
            "student",
            &student_key,
            &[student_path.clone(), summary_path.clone()],
        );
    log.stage(3, "student (distillation)", cached);
    let student_summary: Summary = if cached {
        read_json(&summary_path)?
    } else {
        let resume = stages.start("student", &student_key)? && !opts.force;
        let teacher = teacher::load(&teacher_facts.path, &load_opts)
            .with_context(|| format!("teacher {}", teacher_facts.path.display()))?;
        let s = train::run(RunConfig {
            recipe: &student_recipe,
            out: student_dir.clone(),
            seed: student_recipe.recipe.train.seed,
            resume,
            halt_after: None,
            teachers: vec![teacher],
            cache_dir: Some(opts.out.join("teacher_cache")),
            progress: opts.progress,
            export_onnx: false,
            splits: splits.clone(),
        })?;
        stages.finish("student", &student_key)?;
        s
    };
    let student = FloatModel::load(&student_path)?;

    // 4. Quantize.
    let q = &p.recipe.quantize;
    let ekd_path = opts.out.join("student.ekd");
    let quant_report_path = opts.out.join("student.quant.json");
    let quant_key = Key::new("quantize")
        .add_file("student", &student_path)?
        .add("data", data_key.as_bytes())
        .add_json("quantize", q)?
        .add("name", p.recipe.name.as_bytes())
        .finish();
    let cached = !opts.force
        && stages.is_fresh(
            "quantize",
            &quant_key,
            &[ekd_path.clone(), quant_report_path.clone()],
        );
    log.stage(4, "quantize (int8)", cached);
    let quant_json: serde_json::Value = if cached {
        read_json(&quant_report_path)?
    } else {
        stages.start("quantize", &quant_key)?;
        let json = quantize_stage(p, &student, &splits, &ekd_path)?;
        write_json(&quant_report_path, &json)?;
        stages.finish("quantize", &quant_key)?;
        json
    };
    let ekd_bytes = io::read_model(&ekd_path)?;
    let int8 = Int8Model::new(ekd_bytes.as_bytes())?;

    // 5. Export.
    let export_key = Key::new("export")
        .add_file("ekd", &ekd_path)?
        .add_json("export", &p.recipe.export)?
        .finish();
    let exported: Vec<PathBuf> = p
        .recipe
        .export
        .formats
        .iter()
        .filter(|f| f.as_str() != "ekd")
        .map(|f| opts.out.join(export_name(f)))
        .collect();
    let cached = !opts.force && stages.is_fresh("export", &export_key, &exported);
    log.stage(5, "export", cached);
    if !cached {
        stages.start("export", &export_key)?;
        for f in p
            .recipe
            .export
            .formats
            .iter()
            .filter(|f| f.as_str() != "ekd")
        {
            let format = export_format(f)?;
            let bytes = crate::export::export(
                ekd_bytes.as_bytes(),
                format,
                &crate::export::identifier(&p.recipe.name),
                "student.ekd",
            )?;
            io::write_atomic(&opts.out.join(export_name(f)), &bytes)?;
        }
        stages.finish("export", &export_key)?;
    }

    // 6. Evaluate on the test split.
    log.stage(6, "evaluate on the test split", false);
    let test = TestSet {
        x: splits.test.x.clone(),
        y: splits.test.y.clone(),
    };
    // Per-layer SQNR compares against the float model the int8 file was built from.
    let equalized;
    let reference = if p.recipe.quantize.equalize {
        let mut m = student.clone();
        crate::quant::equalize::equalize(&mut m);
        equalized = m;
        &equalized
    } else {
        &student
    };
    let eval = eval::evaluate(&int8, Some(reference), None, &test)?;
    let eval_dir = opts.out.join("eval");
    io::write_atomic(
        &eval_dir.join("report.json"),
        serde_json::to_string_pretty(&eval)?.as_bytes(),
    )?;
    io::write_atomic(&eval_dir.join("summary.md"), eval.summary().as_bytes())?;
    io::write_atomic(
        &eval_dir.join("confusion.svg"),
        plot::confusion(
            &format!("{} (int8) confusion matrix", eval.model),
            &eval.confusion,
            &eval.labels,
        )
        .as_bytes(),
    )?;
    let rows = eval.sqnr_rows();
    if !rows.is_empty() {
        io::write_atomic(
            &eval_dir.join("sqnr.svg"),
            plot::sqnr_bars(&format!("{}: float vs int8 SQNR per op", eval.model), &rows)
                .as_bytes(),
        )?;
    }
    let int8_teacher_agreement = {
        let mut t = teacher::load(&teacher_facts.path, &load_opts)?;
        let lp = t.log_probs(&splits.test.x, splits.test.len())?;
        let k = p.recipe.data.classes;
        let tp: Vec<usize> = lp
            .chunks_exact(k)
            .map(crate::quant::float::argmax)
            .collect();
        let ip = int8
            .outputs(&splits.test.x, splits.test.features())?
            .predictions;
        100.0 * crate::quant::int8::agreement(&tp, &ip)
    };

    // 7. Targets.
    let (inputs, expected) = quantized_test_inputs(&int8, &splits)?;
    let inputs_path = opts.out.join("measure").join("test_inputs.npy");
    io::write_atomic(&inputs_path, &io::npy_bytes(&inputs)?)?;
    io::write_atomic(
        &opts.out.join("measure").join("test_expected.npy"),
        &io::npy_bytes(&expected)?,
    )?;
    let probe = Probe {
        model_path: &ekd_path,
        inputs: &inputs,
        expected: &expected,
        inputs_path: &inputs_path,
        samples: p.recipe.measure.samples,
        runs: p.recipe.measure.runs,
        warmup: p.recipe.measure.warmup,
        firmware: p.recipe.measure.firmware_build()?,
    };
    let mut target_results: Vec<TargetResult> = Vec::new();
    for t in &p.targets {
        log.stage(7, &format!("target {}", t.name()), false);
        let r = targets::measure(t, &probe).with_context(|| format!("target {}", t.name()))?;
        target_results.push(r);
    }

    // Report.
    let summary = int8.model();
    let sizes = &eval.sizes;
    let report = RunReport {
        name: p.recipe.name.clone(),
        recipe: p.text.clone(),
        out: opts.out.display().to_string(),
        test_samples: splits.test.len(),
        teacher: ModelRow {
            model: "teacher (f32)".into(),
            accuracy: Some(teacher_facts.accuracy),
            params: teacher_facts.params,
            flash_bytes: Some(teacher_facts.file_bytes),
            arena_bytes: None,
            macs: teacher_facts.macs,
        },
        student_f32: ModelRow {
            model: "student (f32)".into(),
            accuracy: eval.student_f32,
            params: Some(student_summary.params),
            flash_bytes: sizes.float_weight_bytes.map(|b| b as u64),
            arena_bytes: None,
            macs: Some(student_summary.macs as u64),
        },
        student_int8: ModelRow {
            model: "student (int8)".into(),
            accuracy: Some(eval.student_int8),
            params: Some(sizes.params),
            flash_bytes: Some(sizes.flash_bytes as u64),
            arena_bytes: Some(summary.arena_size() as u64),
            macs: Some(sizes.macs),
        },
        teacher_describe: teacher_facts.describe.clone(),
        agreement_int8_f32: eval.agreement_int8_f32,
        agreement_int8_teacher: Some(int8_teacher_agreement),
        quantization: quant_json,
        targets: target_results,
        files: output_files(&opts.out)?,
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    io::write_atomic(
        &opts.out.join("report.json"),
        serde_json::to_string_pretty(&report)?.as_bytes(),
    )?;
    io::write_atomic(&opts.out.join("report.md"), report.markdown().as_bytes())?;
    Ok(report)
}

/// Hash of every data file the recipe reads (and the data section itself).
fn data_key(p: &Pipeline) -> Result<String> {
    let d = &p.recipe.data;
    let mut k = Key::new("data").add_json("data", d)?;
    for f in [
        Some(&d.train),
        d.train_labels.as_ref(),
        d.test.as_ref(),
        d.test_labels.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        k = k.add_file(&f.display().to_string(), &p.base.join(f))?;
    }
    Ok(k.finish())
}

/// Quantizes the student built with the recipe's weights-independent options and checks
/// the size against every board — with untrained weights, before training: the int8 file
/// and arena depend on the architecture only.
fn check_student_fits(p: &Pipeline, splits: &Splits) -> Result<()> {
    let r = &p.recipe;
    let net = Net::new(
        &r.student.model.layers,
        r.data.shape,
        r.data.classes,
        splits.norm.clone(),
        0,
        DType::F32,
    )
    .context("student.model")?;
    let bytes = store::to_bytes(&net, &r.name, "")?;
    let float = FloatModel::from_bytes(&bytes, Path::new("student.model"))?;
    let n_groups = groups(&float).iter().max().map_or(0, |g| g + 1);
    let built = build(
        &float,
        &vec![(-1.0, 1.0); n_groups],
        &BuildOptions {
            name: r.name.clone(),
            per_tensor_weights: r.quantize.per_tensor_weights,
            softmax: r.quantize.softmax,
        },
    )
    .context("student.model cannot be quantized for edgekd-runtime")?;
    let int8 = Int8Model::new(&built.bytes)?;
    let model = int8.model();
    let mcu: Vec<&TargetSpec> = p
        .targets
        .iter()
        .filter(|t| matches!(t, TargetSpec::Qemu(_) | TargetSpec::ProbeRs(_)))
        .collect();
    if mcu.is_empty() {
        return Ok(());
    }
    let fw = crate::cmd::bench::FirmwareDir::find(None)?;
    for t in mcu {
        let board = t.board()?.context("a microcontroller target has a board")?;
        BoardMemory::of(&fw, board)?.check_fits(
            &format!("target {} ({})", t.name(), board.feature()),
            model.arena_size() as u64,
            built.bytes.len() as u64,
        )?;
    }
    Ok(())
}

fn quantize_stage(
    p: &Pipeline,
    student: &FloatModel,
    splits: &Splits,
    out: &Path,
) -> Result<serde_json::Value> {
    let q = &p.recipe.quantize;
    let train = &splits.train;
    let keep = train.len().min(q.calib_size);
    ensure!(
        keep > 0,
        "the training split is empty: nothing to calibrate on"
    );
    let data = CalibSet {
        x: train.x[..keep * train.features()].to_vec(),
        labels: Some(train.y[..keep].to_vec()),
    };
    let calibration = match q.calibration {
        CalibrationName::Minmax => Calibration::Fixed(Method::MinMax),
        CalibrationName::Percentile => Calibration::Fixed(Method::Percentile(q.percentile)),
        CalibrationName::Mse => Calibration::Fixed(Method::Mse),
        CalibrationName::Auto => Calibration::Auto {
            percentile: q.percentile,
        },
    };
    let outcome = quantize(
        student,
        &data,
        &PtqOptions {
            calibration,
            build: BuildOptions {
                name: p.recipe.name.clone(),
                per_tensor_weights: q.per_tensor_weights,
                softmax: q.softmax,
            },
            max_drop: q.max_drop,
            bias_correction: q.bias_correction,
            search_samples: q.search_samples,
            // QAT + KD when the drop exceeds the budget after bias correction.
            qat: crate::quant::QatOptions::default(),
            equalize: q.equalize,
        },
    )?;
    for w in &outcome.warnings {
        eprintln!("warning: {w}");
    }
    io::write_atomic(out, &outcome.built.bytes)?;
    Ok(serde_json::json!({
        "calibration": q.calibration,
        "calib_samples": keep,
        "float_accuracy_calib": outcome.float_metric,
        "int8_accuracy_calib": outcome.int8_metric,
        "logits_sqnr_db": if outcome.logits_sqnr_db.is_finite() { Some(outcome.logits_sqnr_db) } else { None },
        "max_drop": q.max_drop,
        "steps": outcome.steps,
        "warnings": outcome.warnings,
        "per_layer": outcome.report,
    }))
}

fn export_name(format: &str) -> String {
    match format {
        "onnx" => "student.onnx",
        "c" => "student.h",
        "rust" => "student.rs",
        "rust-program" => "student_program.rs",
        _ => "student.ekd",
    }
    .into()
}

fn export_format(format: &str) -> Result<crate::export::Format> {
    use crate::export::Format;
    Ok(match format {
        "onnx" => Format::Onnx,
        "c" => Format::C,
        "rust" => Format::Rust,
        "rust-program" => Format::RustProgram,
        "ekd" => Format::Ekd,
        other => bail!("export.formats: unknown format `{other}`"),
    })
}

/// The test split quantized exactly as the device quantizes it (the runtime's own
/// `set_input_f32`), and the host runtime's outputs for it.
fn quantized_test_inputs(int8: &Int8Model, splits: &Splits) -> Result<(Matrix<i8>, Matrix<i8>)> {
    let model = int8.model();
    let mut arena = vec![0u8; model.arena_size()];
    let mut interp = Interpreter::new(model, &mut arena)?;
    let cols = model.input(0)?.elements();
    let mut data = Vec::with_capacity(splits.test.len() * cols);
    for i in 0..splits.test.len() {
        interp
            .set_input_f32(0, splits.test.row(i))
            .with_context(|| format!("test sample {i}"))?;
        data.extend_from_slice(interp.input_mut(0)?);
    }
    let inputs = Matrix {
        rows: splits.test.len(),
        cols,
        data,
    };
    let expected = crate::cmd::infer::run_batch(model, Some(&inputs), None)?.int8;
    Ok((inputs, expected))
}

/// Parameters and MACs of a teacher file: read from an edgekd model; for ONNX, parameters
/// are the elements of its floating-point initializers (normalization constants included)
/// and MACs come from tract's cost model.
fn teacher_size(path: &Path, sample_dims: &[usize]) -> Result<(Option<usize>, Option<u64>)> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
    {
        let bytes = std::fs::read(path)?;
        let proto = <tract_onnx::pb::ModelProto as prost::Message>::decode(bytes.as_slice())
            .with_context(|| format!("{} is not a valid ONNX model", path.display()))?;
        let float = [
            tract_onnx::pb::tensor_proto::DataType::Float as i32,
            tract_onnx::pb::tensor_proto::DataType::Float16 as i32,
            tract_onnx::pb::tensor_proto::DataType::Double as i32,
        ];
        let params = proto.graph.as_ref().map(|g| {
            g.initializer
                .iter()
                .filter(|t| float.contains(&t.data_type))
                .map(|t| t.dims.iter().product::<i64>().max(0) as usize)
                .sum()
        });
        // An ONNX graph tract cannot cost (symbolic shapes) just leaves MACs out.
        let macs = teacher::onnx::macs_per_sample(path, sample_dims).ok();
        Ok((params, macs))
    } else {
        let (net, _) = store::load(path)?;
        let macs: usize = net.summary().iter().map(|l| l.macs).sum();
        Ok((Some(net.param_count()), Some(macs as u64)))
    }
}

fn output_files(out: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(out)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    files.sort();
    Ok(files)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is malformed", path.display()))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    io::write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}
