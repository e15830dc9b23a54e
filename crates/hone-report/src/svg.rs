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
