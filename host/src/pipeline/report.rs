//! The pipeline's report: `report.json`, `report.md`, and the table printed at the end.

use super::targets::TargetResult;
use serde::Serialize;
use std::fmt::Write as _;

/// One model's row of the summary table.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    /// `teacher (f32)`, `student (f32)`, `student (int8)`.
    pub model: String,
    /// Test accuracy, %.
    pub accuracy: Option<f64>,
    /// Parameters.
    pub params: Option<usize>,
    /// Bytes to store: the teacher file, the f32 weights, the `.ekd` file.
    pub flash_bytes: Option<u64>,
    /// Activation arena (int8 only: the static memory plan).
    pub arena_bytes: Option<u64>,
    /// Multiply-accumulates per inference.
    pub macs: Option<u64>,
}

/// Everything `edgekd run` measured.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// Recipe name.
    pub name: String,
    /// The recipe's text.
    pub recipe: String,
    /// Output folder.
    pub out: String,
    /// Test samples.
    pub test_samples: usize,
    /// Teacher row.
    pub teacher: ModelRow,
    /// Float student row.
    pub student_f32: ModelRow,
    /// int8 student row (edgekd-runtime on the host: the deployed arithmetic).
    pub student_int8: ModelRow,
    /// What the teacher is.
    pub teacher_describe: String,
    /// int8 and f32 student predictions agree, %.
    pub agreement_int8_f32: Option<f64>,
    /// int8 student and teacher predictions agree, %.
    pub agreement_int8_teacher: Option<f64>,
    /// The quantizer's report (calibration, recovery steps, per-layer SQNR).
    pub quantization: serde_json::Value,
    /// Per-target figures.
    pub targets: Vec<TargetResult>,
    /// Files in the output folder.
    pub files: Vec<String>,
    /// Wall time of this invocation, seconds.
    pub wall_seconds: f64,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// `12345` -> `12,345`.
pub fn thousands(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl RunReport {
    fn model_rows(&self) -> [&ModelRow; 3] {
        [&self.teacher, &self.student_f32, &self.student_int8]
    }

    /// The table printed at the end of `edgekd run`.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{}: {} test samples; teacher {}",
            self.name, self.test_samples, self.teacher_describe
        );
        let _ = writeln!(
            s,
            "{:<16} {:>9} {:>9} {:>11} {:>9} {:>10}",
            "model", "accuracy", "params", "flash B", "arena B", "MACs"
        );
        for r in self.model_rows() {
            let _ = writeln!(
                s,
                "{:<16} {:>9} {:>9} {:>11} {:>9} {:>10}",
                r.model,
                r.accuracy.map_or("-".into(), |a| format!("{a:.2} %")),
                opt(r.params.map(|v| thousands(v as u64))),
                opt(r.flash_bytes.map(thousands)),
                opt(r.arena_bytes.map(thousands)),
                opt(r.macs.map(thousands)),
            );
        }
        if let (Some(a), Some(t)) = (self.agreement_int8_f32, self.agreement_int8_teacher) {
            let _ = writeln!(
                s,
                "int8 student agrees with the f32 student on {a:.2} % and with the teacher on {t:.2} % of the test samples"
            );
        }
        let _ = writeln!(
            s,
            "\n{:<10} {:<20} {:>11} {:>10} {:>9} {:>11} {:>9} {:>9} {:>8}",
            "target",
            "platform",
            "bit-exact",
            "edgekd µs",
            "tract µs",
            "instr/inf",
            "instr/MAC",
            "flash B",
            "RAM B"
        );
        for t in &self.targets {
            let exact = format!(
                "{}/{}{}",
                t.samples - t.mismatches,
                t.samples,
                if t.tract_agrees == Some(false) {
                    " (tract differs)"
                } else {
                    ""
                }
            );
            let _ = writeln!(
                s,
                "{:<10} {:<20} {:>11} {:>10} {:>9} {:>11} {:>9} {:>9} {:>8}",
                t.target,
                t.platform,
                exact,
                opt(t.edgekd_us.map(|v| format!("{v:.1}"))),
                opt(t.tract_us.map(|v| format!("{v:.1}"))),
                opt(t.instructions.map(thousands)),
                opt(t.instructions_per_mac.map(|v| format!("{v:.2}"))),
                opt(t.flash_bytes.map(thousands)),
                opt(t.ram_bytes.map(thousands)),
            );
        }
        for t in self.targets.iter().filter(|t| !t.note.is_empty()) {
            let _ = writeln!(s, "  {}: {}", t.target, t.note);
        }
        let _ = writeln!(
            s,
            "\nwall time {:.1} s; everything is in {} (report.md, report.json)",
            self.wall_seconds, self.out
        );
        s
    }

    /// `report.md`.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# edgekd run: {}\n", self.name);
        let _ = writeln!(
            s,
            "Teacher: {}. Test samples: {}. Wall time of the run that wrote this: {:.1} s.\n",
            self.teacher_describe, self.test_samples, self.wall_seconds
        );
        let _ = writeln!(
            s,
            "| model | accuracy | params | flash bytes | arena bytes | MACs |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for r in self.model_rows() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.model,
                r.accuracy.map_or("-".into(), |a| format!("{a:.2} %")),
                opt(r.params),
                opt(r.flash_bytes),
                opt(r.arena_bytes),
                opt(r.macs)
            );
        }
        let _ = writeln!(
            s,
            "\nFlash bytes: the teacher's file, 4 bytes per f32 weight, the `.ekd` file. \
             The int8 accuracy is edgekd-runtime's on the host, the code the firmware runs.\n"
        );
        if let (Some(a), Some(t)) = (self.agreement_int8_f32, self.agreement_int8_teacher) {
            let _ = writeln!(
                s,
                "The int8 student agrees with the f32 student on {a:.2} % and with the teacher on {t:.2} % of the test samples.\n"
            );
        }
        let _ = writeln!(
            s,
            "| target | platform | bit-exact with host runtime | edgekd µs | tract µs | instructions / inference | instructions / MAC | flash bytes | RAM bytes | note |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---|");
        for t in &self.targets {
            let _ = writeln!(
                s,
                "| {} | {} | {}/{} | {} | {} | {} | {} | {} | {} | {} |",
                t.target,
                t.platform,
                t.samples - t.mismatches,
                t.samples,
                opt(t.edgekd_us.map(|v| format!("{v:.1}"))),
                opt(t.tract_us.map(|v| format!("{v:.1}"))),
                opt(t.instructions),
                opt(t.instructions_per_mac.map(|v| format!("{v:.2}"))),
                opt(t.flash_bytes),
                opt(t.ram_bytes),
                t.note
            );
        }
        let _ = writeln!(
            s,
            "\nQEMU counts instructions (`-icount`), not cycles: a real core stalls on flash \
             wait states and multi-cycle instructions. Host and tract latencies are medians on \
             this machine; emulated aarch64 timings are not reported.\n"
        );
        let _ = writeln!(s, "Files: {}\n", self.files.join(", "));
        let _ = writeln!(s, "## Recipe\n\n```toml\n{}```", self.recipe);
        s
    }

    /// Every target matched the host runtime bit for bit.
    pub fn all_bit_exact(&self) -> bool {
        self.targets.iter().all(TargetResult::bit_exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }
}
