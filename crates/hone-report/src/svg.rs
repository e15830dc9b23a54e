//! Small inline SVG charts (horizontal bars) for reports.

use crate::esc;

/// A horizontal bar chart of `(label, value)` rows.
pub fn hbars(rows: &[(String, f64)], color: &str) -> String {
    let width = 720.0;
    let label_w = 230.0;
    let row_h = 20.0;
    let max = rows.iter().map(|r| r.1).fold(0.0f64, f64::max).max(1e-9);
    let height = row_h * rows.len() as f64 + 10.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\">"
    );
    for (i, (label, v)) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 5.0;
        let w = (width - label_w - 70.0) * v / max;
        let shown: String = label.chars().take(32).collect();
        s.push_str(&format!(
            "<text x=\"{lx}\" y=\"{ty}\" font-size=\"12\" text-anchor=\"end\">{l}</text><rect x=\"{x}\" y=\"{y}\" width=\"{w:.1}\" height=\"{h}\" fill=\"{color}\"><title>{l}: {v}</title></rect><text x=\"{vx:.1}\" y=\"{ty}\" font-size=\"12\">{v}</text>",
            lx = label_w - 6.0,
            ty = y + 13.0,
            l = esc(&shown),
            x = label_w,
            h = row_h - 4.0,
            vx = label_w + w + 4.0,
        ));
    }
    s.push_str("</svg>");
    s
}

/// A confusion-matrix heat map (rows: true label, columns: predicted), cells shaded by row share.
pub fn heatmap(matrix: &[Vec<u64>], labels: &[String]) -> String {
    let n = matrix.len().min(labels.len());
    if n == 0 {
        return String::new();
    }
    let cell = (560.0 / n as f64).clamp(6.0, 40.0);
    let left = 170.0;
    let top = 20.0;
    let size = cell * n as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\" role=\"img\">",
        left + size + 10.0,
        top + size + 10.0
    );
    for (i, row) in matrix.iter().take(n).enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        if cell >= 10.0 {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{:.0}\" text-anchor=\"end\">{}</text>",
                left - 4.0,
                top + (i as f64 + 0.7) * cell,
                (cell * 0.6).min(12.0),
                esc(&labels[i].chars().take(28).collect::<String>())
            ));
        }
        for (j, &v) in row.iter().take(n).enumerate() {
            let share = v as f64 / total as f64;
            let (r, g, b) = if i == j {
                (40.0, 120.0, 80.0)
            } else {
                (200.0, 60.0, 50.0)
            };
            let mix = |c: f64| (255.0 - (255.0 - c) * share.sqrt()) as u8;
            s.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"rgb({},{},{})\" stroke=\"#eee\"><title>true {} → predicted {}: {v}</title></rect>",
                left + j as f64 * cell,
                top + i as f64 * cell,
                cell,
                cell,
                mix(r),
                mix(g),
                mix(b),
                esc(&labels[i]),
                esc(&labels[j])
            ));
        }
    }
    s.push_str("</svg>");
    s
}

/// A line chart of named series over x = 1.. (e.g. dev macro-F1 per epoch), y in [0, 1]; `x_label`
/// names the x axis ("epoch", "step"). The legend sits right of the plot, clear of the lines.
pub fn lines(series: &[(String, Vec<f64>)], x_label: &str) -> String {
    let (w, h, left, bottom, legend) = (760.0, 240.0, 40.0, 24.0, 120.0);
    let max_len = series.iter().map(|s| s.1.len()).max().unwrap_or(0).max(2);
    let lo = series
        .iter()
        .flat_map(|s| s.1.iter().copied())
        .fold(1.0f64, f64::min)
        .clamp(0.0, 1.0);
    let lo = (lo * 10.0).floor() / 10.0;
    let x = |i: usize| left + (w - left - legend - 10.0) * i as f64 / (max_len - 1) as f64;
    let y = |v: f64| {
        (h - bottom) - (h - bottom - 10.0) * ((v - lo) / (1.0 - lo).max(1e-9)).clamp(0.0, 1.0)
    };
    let colors = ["#4a7bd0", "#d0704a", "#3b9c6e", "#9c3b8e", "#8e8e3b"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\">"
    );
    s.push_str(&format!("<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/><text x=\"4\" y=\"14\" font-size=\"11\">1.0</text><text x=\"4\" y=\"{}\" font-size=\"11\">{lo:.1}</text>", h - bottom, w - legend - 10.0, h - bottom, h - bottom));
    for (k, (name, ys)) in series.iter().enumerate() {
        let c = colors[k % colors.len()];
        let pts: Vec<String> = ys
            .iter()
            .enumerate()
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        s.push_str(&format!("<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>", pts.join(" "), esc(name)));
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{c}\">{}</text>",
            w - legend + 4.0,
            16.0 + 13.0 * k as f64,
            esc(name)
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text></svg>",
        (w - legend) / 2.0,
        h - 4.0,
        esc(x_label)
    ));
    s
}

/// A reliability diagram: accuracy against mean confidence per bin, with the diagonal.
pub fn reliability(bins: &[(f64, f64, u64)]) -> String {
    let (w, h, pad) = (260.0, 260.0, 30.0);
    let p = |v: f64| pad + (w - 2.0 * pad) * v.clamp(0.0, 1.0);
    let q = |v: f64| h - pad - (h - 2.0 * pad) * v.clamp(0.0, 1.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\"><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#bbb\" stroke-dasharray=\"4\"/>",
        p(0.0),
        q(0.0),
        p(1.0),
        q(1.0)
    );
    for &(conf, acc, n) in bins.iter().filter(|b| b.2 > 0) {
        s.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{:.1}\" fill=\"#4a7bd0\"><title>confidence {conf:.2}, accuracy {acc:.2}, n {n}</title></circle>", p(conf), q(acc), 2.0 + (n as f64).ln().max(0.0)));
    }
    s.push_str(&format!("<text x=\"{}\" y=\"{}\" font-size=\"11\">confidence</text><text x=\"2\" y=\"14\" font-size=\"11\">accuracy</text></svg>", w / 2.0 - 25.0, h - 6.0));
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn bars_scale_to_the_largest_and_escape_labels() {
        let s = super::hbars(&[("a<b".into(), 10.0), ("c".into(), 5.0)], "#48c");
        assert!(s.starts_with("<svg") && s.ends_with("</svg>"));
        assert!(s.contains("a&lt;b"));
        assert!(
            s.contains("width=\"420.0\"") && s.contains("width=\"210.0\""),
            "{s}"
        );
    }
}
