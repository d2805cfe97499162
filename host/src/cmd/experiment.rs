//! `edgekd experiment`: run a study (several recipes x seeds, teachers feeding students) and
//! write its results table into a README.
//!
//! Each run is a child `edgekd train|distill` process (so one run's failure or kill does not
//! take the study down), logging to `<out>/<run>/s<seed>/log.txt`. Finished runs (with a
//! `summary.json`) are skipped and killed ones resume from their checkpoint, so re-running the
//! command after an interruption continues the study. The table is rewritten after every run.

use anyhow::{bail, ensure, Context, Result};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Arguments of `edgekd experiment`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Study file (TOML).
    pub study: PathBuf,
    /// Output directory (overrides the study's `out`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only print the commands.
    #[arg(long)]
    pub dry_run: bool,
    /// Only rewrite the README table from finished runs.
    #[arg(long)]
    pub table_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Study {
    title: String,
    seeds: Vec<u64>,
    out: PathBuf,
    readme: PathBuf,
    #[serde(default)]
    epochs: Option<usize>,
    #[serde(default)]
    notes: String,
    run: Vec<RunSpec>,
    #[serde(default)]
    gap: Vec<GapSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSpec {
    name: String,
    recipe: PathBuf,
    #[serde(default)]
    about: String,
    #[serde(default)]
    teachers: Vec<String>,
    #[serde(default)]
    onnx: bool,
    #[serde(default)]
    args: Vec<String>,
    /// Overrides the study's epoch count for this run (e.g. equal optimizer steps on a
    /// smaller labelled set).
    #[serde(default)]
    epochs: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GapSpec {
    label: String,
    teacher: String,
    baseline: String,
    student: String,
}

const BEGIN: &str = "<!-- edgekd-study:begin -->";
const END: &str = "<!-- edgekd-study:end -->";

fn run_dir(out: &Path, run: &str, seed: u64) -> PathBuf {
    out.join(run).join(format!("s{seed}"))
}

/// Runs the command.
pub fn run(args: Args) -> Result<()> {
    let text = std::fs::read_to_string(&args.study)
        .with_context(|| format!("cannot read study {}", args.study.display()))?;
    let study: Study =
        toml::from_str(&text).with_context(|| format!("invalid study {}", args.study.display()))?;
    let base = args.study.parent().unwrap_or(Path::new(".")).to_path_buf();
    let out = args.out.clone().unwrap_or_else(|| base.join(&study.out));
    let readme = base.join(&study.readme);
    ensure!(!study.seeds.is_empty(), "the study lists no seeds");
    let mut seen: Vec<&str> = Vec::new();
    for r in &study.run {
        ensure!(
            !seen.contains(&r.name.as_str()),
            "run `{}` is declared twice",
            r.name
        );
        for t in &r.teachers {
            ensure!(
                seen.contains(&t.as_str()),
                "run `{}` uses teacher `{t}`, which must be declared before it",
                r.name
            );
        }
        ensure!(
            base.join(&r.recipe).exists(),
            "run `{}`: recipe {} not found",
            r.name,
            base.join(&r.recipe).display()
        );
        seen.push(&r.name);
    }
    for g in &study.gap {
        for n in [&g.teacher, &g.baseline, &g.student] {
            ensure!(
                seen.contains(&n.as_str()),
                "gap `{}` names unknown run `{n}`",
                g.label
            );
        }
    }
    let exe = std::env::current_exe().context("cannot locate the edgekd binary")?;
    if !args.table_only {
        // Runs outer, seeds inner: the main comparisons complete (all seeds) before the extras.
        for r in &study.run {
            for &seed in &study.seeds {
                let dir = run_dir(&out, &r.name, seed);
                if dir.join("summary.json").exists() {
                    continue;
                }
                let mut cmd = Command::new(&exe);
                cmd.arg(if r.teachers.is_empty() {
                    "train"
                } else {
                    "distill"
                });
                cmd.arg("--recipe").arg(base.join(&r.recipe));
                cmd.arg("--out").arg(&dir);
                cmd.arg("--seed").arg(seed.to_string());
                cmd.arg("--quiet").arg("--resume");
                if let Some(e) = r.epochs.or(study.epochs) {
                    cmd.arg("--epochs").arg(e.to_string());
                }
                if r.onnx {
                    cmd.arg("--onnx");
                }
                for t in &r.teachers {
                    cmd.arg("--teacher")
                        .arg(run_dir(&out, t, seed).join("model.safetensors"));
                }
                if !r.teachers.is_empty() {
                    cmd.arg("--cache-dir").arg(out.join("teacher-cache"));
                }
                cmd.args(&r.args);
                cmd.env("RAYON_NUM_THREADS", "1");
                eprintln!("[{} s{seed}] {:?}", r.name, cmd);
                if args.dry_run {
                    continue;
                }
                std::fs::create_dir_all(&dir)?;
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join("log.txt"))?;
                let status = cmd
                    .stdout(Stdio::from(log.try_clone()?))
                    .stderr(Stdio::from(log))
                    .status()
                    .with_context(|| format!("cannot start {}", exe.display()))?;
                if !status.success() {
                    bail!(
                        "run `{}` seed {seed} failed ({status}); see {}",
                        r.name,
                        dir.join("log.txt").display()
                    );
                }
                write_table(&study, &out, &readme)?;
            }
        }
    }
    write_table(&study, &out, &readme)?;
    eprintln!("results table written to {}", readme.display());
    Ok(())
}

#[derive(Debug, Clone, Deserialize)]
struct Done {
    test_acc: f64,
    params: usize,
    macs: usize,
    seconds: f64,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n.max(1.0);
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

fn collect(study: &Study, out: &Path) -> HashMap<String, Vec<(u64, Done)>> {
    let mut res = HashMap::new();
    for r in &study.run {
        let mut v = Vec::new();
        for &s in &study.seeds {
            let p = run_dir(out, &r.name, s).join("summary.json");
            if let Some(d) = std::fs::read_to_string(&p)
                .ok()
                .and_then(|t| serde_json::from_str::<Done>(&t).ok())
            {
                v.push((s, d));
            }
        }
        res.insert(r.name.clone(), v);
    }
    res
}

/// The markdown table of a study's finished runs.
fn table(study: &Study, out: &Path) -> String {
    let res = collect(study, out);
    let mut s = format!("### {}\n\n", study.title);
    s.push_str(&format!(
        "Seeds {:?}{}; test accuracy mean ± sample std over the seeds that finished. Wall time is per run on one core (`RAYON_NUM_THREADS=1`) of the shared 2-core machine.\n\n",
        study.seeds,
        study.epochs.map(|e| format!(", {e} epochs per run")).unwrap_or_default()
    ));
    s.push_str("| run | what | test accuracy | seeds done | params | MACs | wall time / run |\n|---|---|---|---|---|---|---|\n");
    for r in &study.run {
        let v = &res[&r.name];
        if v.is_empty() {
            s.push_str(&format!(
                "| {} | {} | (not run yet) | 0/{} | | | |\n",
                r.name,
                r.about,
                study.seeds.len()
            ));
            continue;
        }
        let accs: Vec<f64> = v.iter().map(|(_, d)| 100.0 * d.test_acc).collect();
        let (m, sd) = mean_std(&accs);
        let secs = v.iter().map(|(_, d)| d.seconds).sum::<f64>() / v.len() as f64;
        s.push_str(&format!(
            "| {} | {} | {m:.2} ± {sd:.2} % | {}/{} | {} | {} | {secs:.0} s |\n",
            r.name,
            r.about,
            v.len(),
            study.seeds.len(),
            v[0].1.params,
            v[0].1.macs
        ));
    }
    if !study.gap.is_empty() {
        s.push_str("\nGap closed = (acc_student − acc_baseline) / (acc_teacher − acc_baseline), from the means:\n\n| comparison | teacher | baseline | student | gain | gap closed |\n|---|---|---|---|---|---|\n");
        for g in &study.gap {
            let mean = |n: &str| {
                let v = &res[n];
                (!v.is_empty()).then(|| {
                    mean_std(
                        &v.iter()
                            .map(|(_, d)| 100.0 * d.test_acc)
                            .collect::<Vec<_>>(),
                    )
                    .0
                })
            };
            match (mean(&g.teacher), mean(&g.baseline), mean(&g.student)) {
                (Some(t), Some(b), Some(c)) => s.push_str(&format!(
                    "| {} | {t:.2} % | {b:.2} % | {c:.2} % | {:+.2} pts | {:.0} % |\n",
                    g.label,
                    c - b,
                    if (t - b).abs() > 1e-9 {
                        100.0 * (c - b) / (t - b)
                    } else {
                        0.0
                    }
                )),
                _ => s.push_str(&format!("| {} | | | | (waiting for runs) | |\n", g.label)),
            }
        }
    }
    if !study.notes.is_empty() {
        s.push('\n');
        s.push_str(study.notes.trim());
        s.push('\n');
    }
    s
}

fn write_table(study: &Study, out: &Path, readme: &Path) -> Result<()> {
    let body = table(study, out);
    let old = std::fs::read_to_string(readme).unwrap_or_default();
    let block_begin = format!("{BEGIN} {}", study.title);
    let new = match (old.find(&block_begin), old.find(END)) {
        (Some(b), Some(_)) => {
            let e = old[b..].find(END).map(|e| b + e).unwrap_or(old.len());
            format!("{}{block_begin}\n{body}{}", &old[..b], &old[e..])
        }
        _ => format!("{old}\n{block_begin}\n{body}{END}\n"),
    };
    crate::io::write_atomic(readme, new.as_bytes())
}
