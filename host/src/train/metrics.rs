//! Per-epoch metrics (JSON lines) and loss/accuracy curves as a small SVG.
//!
//! The SVG is written by hand: two polylines per panel need ~60 lines, where a plotting crate
//! would add a font stack to the build for no gain.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::Path;

/// One epoch's record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    /// 1-based epoch.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Training accuracy on the labelled samples of the (augmented) pool.
    pub train_acc: f64,
    /// Test accuracy, when evaluated this epoch.
    pub test_acc: Option<f64>,
    /// Validation accuracy, when there is a validation split and it was evaluated.
    pub val_acc: Option<f64>,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
}

/// Reads a metrics file, keeping records up to and including `upto` epochs.
pub fn read(path: &Path, upto: usize) -> Result<Vec<EpochMetrics>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let m: EpochMetrics = serde_json::from_str(line)
            .with_context(|| format!("{}: malformed line", path.display()))?;
        if m.epoch <= upto {
            out.push(m);
        }
    }
    Ok(out)
}

/// Writes all records as JSON lines (atomically).
pub fn write(path: &Path, records: &[EpochMetrics]) -> Result<()> {
    let mut s = String::new();
    for r in records {
        s.push_str(&serde_json::to_string(r)?);
        s.push('\n');
    }
    crate::io::write_atomic(path, s.as_bytes())
}

/// A plot area: origin, size, and the data range it shows.
struct Panel {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
    xmax: f64,
    ymin: f64,
    ymax: f64,
}

fn polyline(points: &[(f64, f64)], p: &Panel, color: &str) -> String {
    let Panel {
        x0,
        y0,
        w,
        h,
        xmax,
        ymin,
        ymax,
    } = *p;
    let span = (ymax - ymin).max(1e-9);
    let pts: Vec<String> = points
        .iter()
        .map(|&(x, y)| {
            format!(
                "{:.1},{:.1}",
                x0 + w * x / xmax.max(1.0),
                y0 + h - h * ((y - ymin) / span).clamp(0.0, 1.0)
            )
        })
        .collect();
    format!(
        "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{}\"/>\n",
        pts.join(" ")
    )
}

/// Loss (left) and accuracy (right) curves as an SVG document.
pub fn svg(records: &[EpochMetrics], title: &str) -> String {
    let (pw, ph, m) = (360.0, 240.0, 40.0);
    let xmax = records.last().map_or(1.0, |r| r.epoch as f64);
    let loss: Vec<(f64, f64)> = records.iter().map(|r| (r.epoch as f64, r.loss)).collect();
    let lmax = loss.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-6);
    let train: Vec<(f64, f64)> = records
        .iter()
        .map(|r| (r.epoch as f64, r.train_acc))
        .collect();
    let test: Vec<(f64, f64)> = records
        .iter()
        .filter_map(|r| r.test_acc.map(|a| (r.epoch as f64, a)))
        .collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" font-family=\"sans-serif\" font-size=\"11\">",
        2.0 * pw + 3.0 * m,
        ph + 2.0 * m
    );
    let _ = writeln!(s, "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>");
    let _ = writeln!(
        s,
        "<text x=\"{m}\" y=\"16\" font-size=\"13\">{}</text>",
        escape(title)
    );
    for (px, label, lo, hi) in [
        (m, "training loss", 0.0, lmax),
        (2.0 * m + pw, "accuracy (train blue, test red)", 0.0, 1.0),
    ] {
        let _ = writeln!(
            s,
            "<rect x=\"{px}\" y=\"{m}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>"
        );
        let _ = writeln!(s, "<text x=\"{px}\" y=\"{}\">{label}</text>", m - 4.0);
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{hi:.2}</text>",
            px - 3.0,
            m + 10.0
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{lo:.2}</text>",
            px - 3.0,
            m + ph
        );
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">epoch {xmax}</text>",
            px + pw,
            m + ph + 14.0
        );
    }
    let left = Panel {
        x0: m,
        y0: m,
        w: pw,
        h: ph,
        xmax,
        ymin: 0.0,
        ymax: lmax,
    };
    let right = Panel {
        x0: 2.0 * m + pw,
        ymax: 1.0,
        ..left
    };
    s.push_str(&polyline(&loss, &left, "#333"));
    s.push_str(&polyline(&train, &right, "#1f77b4"));
    s.push_str(&polyline(&test, &right, "#d62728"));
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
