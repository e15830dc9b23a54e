//! Small inline SVG charts for reports: horizontal bars, the confusion heat map, learning curves and
//! the reliability diagram, each with axis titles, ticks and the values a reader needs.

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
        // Counts print whole; measurements with the report's 4 decimals.
        let v = if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{v:.0}")
        } else {
            format!("{v:.4}")
        };
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

/// A confusion-matrix heat map (rows: true label, columns: predicted), cells shaded by row share,
/// with axis titles, row and column labels and each cell's count (when cells are large enough to
/// read; every cell also carries its count as a tooltip).
pub fn heatmap(matrix: &[Vec<u64>], labels: &[String]) -> String {
    let n = matrix.len().min(labels.len());
    if n == 0 {
        return String::new();
    }
    let cell = (560.0 / n as f64).clamp(6.0, 40.0);
    let show_labels = cell >= 10.0;
    let left = if show_labels { 190.0 } else { 30.0 };
    let top = if show_labels { 150.0 } else { 30.0 };
    let size = cell * n as f64;
    let font = (cell * 0.6).min(12.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\" role=\"img\">",
        // Room on the right for the rotated labels of the last columns.
        left + size + if show_labels { 110.0 } else { 10.0 },
        top + size + 10.0
    );
    // Axis titles: predicted along the top, true down the left.
    s.push_str(&format!(
        "<text x=\"{:.1}\" y=\"14\" font-size=\"12\" font-weight=\"bold\" text-anchor=\"middle\">predicted label</text><text x=\"12\" y=\"{:.1}\" font-size=\"12\" font-weight=\"bold\" text-anchor=\"middle\" transform=\"rotate(-90 12 {:.1})\">true label</text>",
        left + size / 2.0,
        top + size / 2.0,
        top + size / 2.0
    ));
    for (i, row) in matrix.iter().take(n).enumerate() {
        let total: u64 = row.iter().sum::<u64>().max(1);
        if show_labels {
            let name = esc(&labels[i].chars().take(28).collect::<String>());
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{font:.0}\" text-anchor=\"end\">{name}</text>",
                left - 4.0,
                top + (i as f64 + 0.7) * cell,
            ));
            // The column label, rotated up from the top edge of column i.
            let (cx, cy) = (left + (i as f64 + 0.7) * cell, top - 4.0);
            s.push_str(&format!(
                "<text x=\"{cx:.1}\" y=\"{cy:.1}\" font-size=\"{font:.0}\" transform=\"rotate(-60 {cx:.1} {cy:.1})\">{name}</text>"
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
            let (x, y) = (left + j as f64 * cell, top + i as f64 * cell);
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell:.1}\" height=\"{cell:.1}\" fill=\"rgb({},{},{})\" stroke=\"#eee\"><title>true {} → predicted {}: {v}</title></rect>",
                mix(r),
                mix(g),
                mix(b),
                esc(&labels[i]),
                esc(&labels[j])
            ));
            if cell >= 16.0 && v > 0 {
                s.push_str(&format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{:.0}\" text-anchor=\"middle\" fill=\"{}\">{v}</text>",
                    x + cell / 2.0,
                    y + cell * 0.65,
                    (cell * 0.4).min(12.0),
                    if share > 0.5 { "#fff" } else { "#222" }
                ));
            }
        }
    }
    s.push_str("</svg>");
    s
}

/// A line chart of named series over x = 1.. (e.g. dev macro-F1 per epoch), y in [0, 1]; `x_label`
/// names the x axis ("epoch", "step"). The legend sits right of the plot, clear of the lines.
pub fn lines(series: &[(String, Vec<f64>)], x_label: &str) -> String {
    let (w, h, left, bottom, legend) = (860.0, 240.0, 40.0, 24.0, 220.0);
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
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\" role=\"img\">",
        h + 14.0
    );
    // y ticks every 0.1 (every 0.2 on a tall range) with light grid lines; x ticks at most ~10.
    let range = 1.0 - lo;
    let step = if range > 0.5 {
        0.2
    } else if range > 0.2 {
        0.1
    } else {
        0.02
    };
    let mut t = lo;
    while t <= 1.0 + 1e-9 {
        s.push_str(&format!("<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{t:.prec$}</text>", w - legend - 10.0, left - 4.0, y(t) + 3.0, y = y(t), prec = if step < 0.1 { 2 } else { 1 }));
        t += step;
    }
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>",
        h - bottom,
        w - legend - 10.0,
        h - bottom
    ));
    let every = max_len.div_ceil(10).max(1);
    for i in (0..max_len).step_by(every) {
        s.push_str(&format!("<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#999\"/><text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{}</text>", h - bottom, h - bottom + 4.0, h - bottom + 13.0, i + 1, x = x(i)));
    }
    for (k, (name, ys)) in series.iter().enumerate() {
        let c = colors[k % colors.len()];
        let pts: Vec<String> = ys
            .iter()
            .enumerate()
            .map(|(i, &v)| format!("{:.1},{:.1}", x(i), y(v)))
            .collect();
        s.push_str(&format!("<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"><title>{}</title></polyline>", pts.join(" "), esc(name)));
        // The best point of each series (what choosing on dev picks) is marked and labelled.
        if let Some((i, &v)) = ys
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0)))
        {
            s.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"{c}\"><title>{}: best {v:.4} at {x_label} {}</title></circle><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"{c}\" text-anchor=\"middle\">{v:.3}</text>", x(i), y(v), esc(name), i + 1, x(i), y(v) - 7.0));
        }
        s.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{c}\">{}</text>",
            w - legend + 4.0,
            16.0 + 13.0 * k as f64,
            esc(name)
        ));
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">{}</text></svg>",
        (w - legend) / 2.0,
        h + 10.0,
        esc(x_label)
    ));
    s
}

/// A reliability diagram: accuracy against mean confidence per bin, with the diagonal.
pub fn reliability(bins: &[(f64, f64, u64)]) -> String {
    let (w, h, pad) = (300.0, 280.0, 34.0);
    let p = |v: f64| pad + (w - 2.0 * pad) * v.clamp(0.0, 1.0);
    let q = |v: f64| h - pad - (h - 2.0 * pad) * v.clamp(0.0, 1.0);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" role=\"img\"><line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#bbb\" stroke-dasharray=\"4\"/>",
        p(0.0),
        q(0.0),
        p(1.0),
        q(1.0)
    );
    for k in 0..=5 {
        let t = k as f64 / 5.0;
        s.push_str(&format!("<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"middle\">{t:.1}</text><line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#999\"/><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\" text-anchor=\"end\">{t:.1}</text>", p(t), q(0.0), p(t), q(0.0) + 4.0, p(t), q(0.0) + 13.0, p(0.0) - 4.0, q(t), p(0.0), q(t), p(0.0) - 6.0, q(t) + 3.0));
    }
    for &(conf, acc, n) in bins.iter().filter(|b| b.2 > 0) {
        s.push_str(&format!("<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{:.1}\" fill=\"#4a7bd0\"><title>confidence {conf:.2}, accuracy {acc:.2}, n {n}</title></circle>", p(conf), q(acc), 2.0 + (n as f64).ln().max(0.0)));
        // Each bin's accuracy and size, written beside its point.
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"8\" fill=\"#345\" text-anchor=\"{}\">{acc:.2} (n {n})</text>",
            // Left of points near the right edge, so the text stays inside the chart.
            if conf > 0.7 { p(conf) - 6.0 } else { p(conf) + 6.0 },
            q(acc) - 4.0,
            if conf > 0.7 { "end" } else { "start" }
        ));
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

    #[test]
    fn the_heat_map_names_its_axes_and_writes_counts_in_cells() {
        let labels = vec!["card".to_string(), "refund".to_string()];
        let s = super::heatmap(&[vec![9, 1], vec![2, 8]], &labels);
        assert!(s.contains("predicted label") && s.contains("true label"));
        assert!(s.contains(">9</text>") && s.contains(">2</text>"), "{s}");
        // Both row and column labels.
        assert_eq!(s.matches(">refund</text>").count(), 2, "{s}");
    }

    #[test]
    fn curves_have_ticks_and_mark_their_best_point() {
        let s = super::lines(&[("dev".into(), vec![0.5, 0.8, 0.7])], "epoch");
        assert!(
            s.contains(">0.6</text>") && s.contains(">1.0</text>"),
            "{s}"
        );
        assert!(s.contains("best 0.8000 at epoch 2"), "{s}");
        assert!(s.contains(">3</text>"), "x ticks: {s}");
    }

    #[test]
    fn the_reliability_diagram_has_ticks_and_bin_values() {
        let s = super::reliability(&[(0.35, 0.3, 12), (0.9, 0.85, 40)]);
        assert!(
            s.contains(">0.4</text>") && s.contains(">1.0</text>"),
            "{s}"
        );
        assert!(s.contains("0.85 (n 40)"), "{s}");
    }
}
