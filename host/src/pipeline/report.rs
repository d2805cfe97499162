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

/// Columns of the model table: header and width (negative: left-aligned).
const MODEL_COLUMNS: [(&str, i32); 6] = [
    ("model", -16),
    ("accuracy", 9),
    ("params", 9),
    ("flash B", 11),
    ("arena B", 9),
    ("MACs", 10),
];

/// Columns of the target table (Markdown adds a `note` column).
const TARGET_COLUMNS: [(&str, i32); 9] = [
    ("target", -10),
    ("platform", -20),
    ("bit-exact", 11),
    ("edgekd µs", 10),
    ("tract µs", 9),
    ("instr/inf", 11),
    ("instr/MAC", 9),
    ("flash B", 9),
    ("RAM B", 8),
];

fn model_cells(r: &ModelRow) -> Vec<String> {
    vec![
        r.model.clone(),
        r.accuracy.map_or("-".into(), |a| format!("{a:.2} %")),
        opt(r.params.map(|v| thousands(v as u64))),
        opt(r.flash_bytes.map(thousands)),
        opt(r.arena_bytes.map(thousands)),
        opt(r.macs.map(thousands)),
    ]
}

fn target_cells(t: &TargetResult) -> Vec<String> {
    let tract = if t.tract_agrees == Some(false) {
        " (tract differs)"
    } else {
        ""
    };
    vec![
        t.target.clone(),
        t.platform.clone(),
        format!("{}/{}{tract}", t.samples - t.mismatches, t.samples),
        opt(t.edgekd_us.map(|v| format!("{v:.1}"))),
        opt(t.tract_us.map(|v| format!("{v:.1}"))),
        opt(t.instructions.map(thousands)),
        opt(t.instructions_per_mac.map(|v| format!("{v:.2}"))),
        opt(t.flash_bytes.map(thousands)),
        opt(t.ram_bytes.map(thousands)),
    ]
}

/// One fixed-width terminal line.
fn fixed_row(s: &mut String, columns: &[(&str, i32)], cells: &[String]) {
    let parts: Vec<String> = columns
        .iter()
        .zip(cells)
        .map(|(&(_, w), c)| {
            let width = w.unsigned_abs() as usize;
            if w < 0 {
                format!("{c:<width$}")
            } else {
                format!("{c:>width$}")
            }
        })
        .collect();
    let _ = writeln!(s, "{}", parts.join(" ").trim_end());
}

/// One Markdown table line.
fn markdown_row(s: &mut String, cells: &[String]) {
    let _ = writeln!(s, "| {} |", cells.join(" | "));
}

/// A Markdown header: names, then right-aligned numeric columns (the first `text` are text).
fn markdown_header(s: &mut String, names: &[&str], text: usize) {
    markdown_row(s, &names.iter().map(|n| n.to_string()).collect::<Vec<_>>());
    let rule: Vec<String> = (0..names.len())
        .map(|i| if i < text { "---" } else { "---:" }.to_string())
        .collect();
    markdown_row(s, &rule);
}

impl RunReport {
    fn model_rows(&self) -> [&ModelRow; 3] {
        [&self.teacher, &self.student_f32, &self.student_int8]
    }

    fn agreement(&self) -> Option<String> {
        let (a, t) = (self.agreement_int8_f32?, self.agreement_int8_teacher?);
        Some(format!(
            "int8 student agrees with the f32 student on {a:.2} % and with the teacher on {t:.2} % of the test samples"
        ))
    }

    /// The table printed at the end of `edgekd run`.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n{}: {} test samples; teacher {}",
            self.name, self.test_samples, self.teacher_describe
        );
        let heads = |c: &[(&str, i32)]| c.iter().map(|h| h.0.to_string()).collect::<Vec<_>>();
        fixed_row(&mut s, &MODEL_COLUMNS, &heads(&MODEL_COLUMNS));
        for r in self.model_rows() {
            fixed_row(&mut s, &MODEL_COLUMNS, &model_cells(r));
        }
        if let Some(a) = self.agreement() {
            let _ = writeln!(s, "{a}");
        }
        s.push('\n');
        fixed_row(&mut s, &TARGET_COLUMNS, &heads(&TARGET_COLUMNS));
        for t in &self.targets {
            fixed_row(&mut s, &TARGET_COLUMNS, &target_cells(t));
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
        markdown_header(&mut s, &MODEL_COLUMNS.map(|c| c.0), 1);
        for r in self.model_rows() {
            markdown_row(&mut s, &model_cells(r));
        }
        let _ = writeln!(
            s,
            "\nFlash bytes: the teacher's file, 4 bytes per f32 weight, the `.ekd` file. \
             The int8 accuracy is edgekd-runtime's on the host, the code the firmware runs.\n"
        );
        if let Some(a) = self.agreement() {
            let _ = writeln!(s, "The {a}.\n");
        }
        let mut names = TARGET_COLUMNS.map(|c| c.0).to_vec();
        names.push("note");
        markdown_header(&mut s, &names, 2);
        for t in &self.targets {
            let mut cells = target_cells(t);
            cells.push(t.note.clone());
            markdown_row(&mut s, &cells);
        }
        let _ = writeln!(
            s,
            "\nbit-exact: samples whose outputs equal the host runtime's. QEMU counts \
             instructions (`-icount`), not cycles: a real core stalls on flash wait states and \
             multi-cycle instructions. Host and tract latencies are medians on this machine; \
             emulated aarch64 timings are not reported.\n"
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
