//! hone-report: self-contained HTML reports (inline SVG, no network) and Markdown summaries. Inputs are
//! plain data; this crate does no I/O.

pub mod card;
pub mod data;
pub mod run;
pub mod svg;

/// Escape text for HTML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escape text for a Markdown table cell.
pub fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The one stylesheet of every page hone renders (reports, cards, the dashboard).
pub const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2433}h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #dde;padding-bottom:.2em}table{border-collapse:collapse;margin:.5em 0;font-size:.92em}td,th{border:1px solid #dde;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f5fa}td.n{text-align:right;font-variant-numeric:tabular-nums}.muted{color:#667}code{background:#f3f5fa;padding:0 .2em}svg text{font-family:inherit}";

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(
            super::esc("<a href=\"x\">&</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(super::md("a|b\nc"), "a\\|b c");
    }
}
