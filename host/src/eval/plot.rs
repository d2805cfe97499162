//! Two small hand-written SVG charts (per-layer SQNR bars, confusion matrix): a few dozen
//! lines each, where a plotting crate would pull in font rendering for nothing.

use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Horizontal bars of SQNR (dB) per labelled tensor; `None` (exact) is drawn as a full bar.
pub fn sqnr_bars(title: &str, rows: &[(String, Option<f64>)]) -> String {
    let (label_w, bar_w, row_h) = (230.0, 420.0, 22.0);
    let max = rows
        .iter()
        .filter_map(|r| r.1)
        .fold(10.0f64, f64::max)
        .ceil();
    let h = 50.0 + row_h * rows.len() as f64 + 30.0;
    let w = label_w + bar_w + 80.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        esc(title)
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = 40.0 + row_h * i as f64;
        let val = v.unwrap_or(max).max(0.0);
        let len = bar_w * val / max;
        let colour = match v {
            None => "#999999",
            Some(d) if *d < 20.0 => "#d62728",
            Some(d) if *d < 30.0 => "#ff7f0e",
            _ => "#2ca02c",
        };
        let text = v.map_or("exact".to_string(), |d| format!("{d:.1} dB"));
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{len:.1}\" height=\"{}\" fill=\"{colour}\"/>\
             <text x=\"{}\" y=\"{}\">{text}</text>",
            label_w - 6.0,
            y + 14.0,
            esc(label),
            y + 3.0,
            row_h - 6.0,
            label_w + len + 4.0,
            y + 14.0
        );
    }
    let axis_y = 40.0 + row_h * rows.len() as f64 + 5.0;
    let _ = writeln!(
        s,
        "<line x1=\"{label_w}\" y1=\"{axis_y}\" x2=\"{}\" y2=\"{axis_y}\" stroke=\"black\"/>\
         <text x=\"{label_w}\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{max} dB</text>",
        label_w + bar_w,
        axis_y + 15.0,
        label_w + bar_w,
        axis_y + 15.0
    );
    s.push_str("</svg>\n");
    s
}

/// A confusion matrix heat map: rows true class, columns predicted class.
pub fn confusion(title: &str, m: &[Vec<u64>], labels: &[String]) -> String {
    let n = m.len();
    let cell = 36.0;
    let (x0, y0) = (70.0, 60.0);
    let w = x0 + cell * n as f64 + 20.0;
    let h = y0 + cell * n as f64 + 40.0;
    let max = m.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\" font-weight=\"bold\">{}</text>\n\
         <text x=\"{}\" y=\"40\" text-anchor=\"middle\">predicted</text>\n\
         <text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\" text-anchor=\"middle\">true</text>\n",
        esc(title),
        x0 + cell * n as f64 / 2.0,
        y0 + cell * n as f64 / 2.0,
        y0 + cell * n as f64 / 2.0
    );
    for (i, row) in m.iter().enumerate() {
        let label = labels.get(i).cloned().unwrap_or_else(|| i.to_string());
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            x0 - 6.0,
            y0 + cell * i as f64 + cell / 2.0 + 4.0,
            esc(&label),
            x0 + cell * i as f64 + cell / 2.0,
            y0 - 6.0,
            esc(&label)
        );
        for (j, &v) in row.iter().enumerate() {
            let t = v as f64 / max;
            let shade = (255.0 * (1.0 - t)) as u8;
            let fill = format!("rgb({shade},{shade},255)");
            let text_colour = if t > 0.5 { "white" } else { "black" };
            let _ = writeln!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\" stroke=\"#ccc\"/>\
                 <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" fill=\"{text_colour}\">{v}</text>",
                x0 + cell * j as f64,
                y0 + cell * i as f64,
                x0 + cell * j as f64 + cell / 2.0,
                y0 + cell * i as f64 + cell / 2.0 + 4.0
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
