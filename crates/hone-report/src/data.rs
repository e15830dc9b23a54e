//! The data report of one dataset version: funnel of records through the passes, label distribution,
//! tables per source and per topic, PII counts by type, and masked examples of each kind of removal.

use std::collections::BTreeMap;

use crate::svg::hbars;
use crate::{STYLE, esc, md};

/// One example of a removal or change, with masked text.
pub struct Example {
    pub pass: String,
    pub rule: String,
    pub record_id: String,
    pub source: String,
    pub reason: String,
    /// Masked text of the record (or a masked diff for changes).
    pub text: String,
}

/// One curation pass of the funnel: its counts and its rule counts (`stats`; zeros are not shown).
#[derive(Debug, Clone, Default)]
pub struct PassLine {
    pub pass: String,
    pub n_in: u64,
    pub n_kept: u64,
    pub n_dropped: u64,
    pub n_changed: u64,
    pub n_flagged: u64,
    pub stats: BTreeMap<String, u64>,
}

/// One source of the version: where it came from, its data card fields and its counts.
#[derive(Debug, Clone, Default)]
pub struct SourceLine {
    pub name: String,
    pub path: String,
    /// `train` or `test`.
    pub role: String,
    pub license: Option<String>,
    pub collected: Option<String>,
    pub as_of: String,
    pub owner: Option<String>,
    pub n_rows: u64,
    pub n_quarantined: u64,
    pub n_kept: u64,
    pub notes: Option<String>,
}

/// Everything the data report shows.
pub struct DataReport<'a> {
    pub task: &'a str,
    pub version_id: &'a str,
    pub created_at: &'a str,
    pub parent: Option<&'a str>,
    pub n_input: u64,
    pub n_records: u64,
    pub n_quarantined: u64,
    pub passes: Vec<PassLine>,
    pub sources: Vec<SourceLine>,
    /// Kept records per label.
    pub by_label: BTreeMap<String, u64>,
    /// Kept records per topic.
    pub by_topic: BTreeMap<String, u64>,
    /// PII values masked, per type.
    pub pii: BTreeMap<String, u64>,
    pub examples: Vec<Example>,
    pub quarantine: Vec<Example>,
    /// Suspects of the latest `hone data scan` of this version (label issues, poisoning), if any.
    pub suspects: Vec<Example>,
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// A count table's rows, largest first then by name (values as `f64` for the bar chart).
fn map_rows(m: &BTreeMap<String, u64>) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = m.iter().map(|(k, v)| (k.clone(), *v as f64)).collect();
    rows.sort_by(|a, b| {
        b.1.partial_cmp(&a.1)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    rows
}

impl DataReport<'_> {
    /// The funnel: records entering each pass, then the kept records.
    fn funnel(&self) -> Vec<(String, f64)> {
        let mut rows = vec![
            ("rows read".to_string(), self.n_input as f64),
            ("quarantined".to_string(), self.n_quarantined as f64),
        ];
        for p in &self.passes {
            rows.push((format!("after {}", p.pass), p.n_kept as f64));
        }
        rows
    }

    /// The self-contained HTML report.
    pub fn html(&self) -> String {
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hone data report — {}</title><style>{STYLE}</style></head><body>{}</body></html>\n",
            esc(self.task),
            self.body()
        )
    }

    /// The report's body, without the page around it (the dashboard shows it in its own page).
    pub fn body(&self) -> String {
        let mut h = String::new();
        h.push_str(&format!(
            "<h1>Data report: {}</h1><p class=\"muted\">version <code>{}</code>, made {}{}</p>",
            esc(self.task),
            esc(self.version_id),
            esc(self.created_at),
            self.parent
                .map(|p| format!(", parent <code>{}</code>", esc(p)))
                .unwrap_or_default()
        ));
        h.push_str(&format!(
            "<p><b>{}</b> rows read → <b>{}</b> quarantined → <b>{}</b> records kept.</p>",
            self.n_input, self.n_quarantined, self.n_records
        ));
        h.push_str("<h2>Funnel</h2>");
        let funnel: Vec<(String, f64)> = self
            .funnel()
            .into_iter()
            .filter(|(l, _)| l != "quarantined")
            .collect();
        h.push_str(&hbars(&funnel, "#4a7bd0"));
        h.push_str("<table><tr><th>pass</th><th>in</th><th>kept</th><th>dropped</th><th>changed</th><th>flagged</th><th>details</th></tr>");
        for p in &self.passes {
            let stats = p
                .stats
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            h.push_str(&format!("<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>", esc(&p.pass), p.n_in, p.n_kept, p.n_dropped, p.n_changed, p.n_flagged, esc(&stats)));
        }
        h.push_str("</table>");
        h.push_str("<h2>Sources</h2><table><tr><th>source</th><th>role</th><th>license</th><th>collected</th><th>as of</th><th>owner</th><th>rows</th><th>quarantined</th><th>kept</th><th>notes</th></tr>");
        for src in &self.sources {
            h.push_str(&format!(
                "<tr><td>{}<br><span class=muted>{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
                esc(&src.name), esc(&src.path), esc(&src.role), esc(opt(&src.license)), esc(opt(&src.collected)), esc(&src.as_of), esc(opt(&src.owner)), src.n_rows, src.n_quarantined, src.n_kept, esc(opt(&src.notes))
            ));
        }
        h.push_str("</table>");
        h.push_str("<h2>Labels</h2>");
        h.push_str(&hbars(&map_rows(&self.by_label), "#3b9c6e"));
        h.push_str("<h2>Topics</h2><table><tr><th>topic</th><th>records</th></tr>");
        for (t, n) in map_rows(&self.by_topic) {
            h.push_str(&format!(
                "<tr><td>{}</td><td class=n>{n}</td></tr>",
                esc(&t)
            ));
        }
        h.push_str("</table><h2>Personal data found (by type)</h2><table><tr><th>type</th><th>values</th></tr>");
        for (t, n) in map_rows(&self.pii) {
            h.push_str(&format!(
                "<tr><td>{}</td><td class=n>{n}</td></tr>",
                esc(&t)
            ));
        }
        h.push_str("</table><h2>Examples of each kind of removal or change</h2><p class=muted>Texts are shown after PII masking.</p><table><tr><th>pass</th><th>rule</th><th>record</th><th>reason</th><th>text</th></tr>");
        for e in &self.examples {
            h.push_str(&format!("<tr><td>{}</td><td>{}</td><td>{}<br><span class=muted>{}</span></td><td>{}</td><td>{}</td></tr>", esc(&e.pass), esc(&e.rule), esc(&e.record_id), esc(&e.source), esc(&e.reason), esc(&e.text)));
        }
        h.push_str("</table><h2>Quarantined rows</h2><table><tr><th>row</th><th>field</th><th>reason</th><th>excerpt</th></tr>");
        for e in &self.quarantine {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&e.record_id),
                esc(&e.rule),
                esc(&e.reason),
                esc(&e.text)
            ));
        }
        h.push_str("</table>");
        if !self.suspects.is_empty() {
            h.push_str("<h2>Suspects from the latest scan</h2><p class=muted>Label issues and poisoning suspects in train/dev; `hone review` decides each.</p><table><tr><th>record</th><th>kind</th><th>label → suggested</th><th>evidence</th><th>text</th></tr>");
            for e in &self.suspects {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&e.record_id),
                    esc(&e.pass),
                    esc(&e.rule),
                    esc(&e.reason),
                    esc(&e.text)
                ));
            }
            h.push_str("</table>");
        }
        h
    }

    /// A Markdown summary (printed on the terminal and written beside the HTML).
    pub fn markdown(&self) -> String {
        let mut m = format!(
            "# Data report: {}\n\nVersion `{}` ({}): {} rows read, {} quarantined, {} records kept.\n\n",
            self.task,
            self.version_id,
            self.created_at,
            self.n_input,
            self.n_quarantined,
            self.n_records
        );
        m.push_str(
            "| pass | in | kept | dropped | changed | flagged |\n|---|---:|---:|---:|---:|---:|\n",
        );
        for p in &self.passes {
            m.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                md(&p.pass),
                p.n_in,
                p.n_kept,
                p.n_dropped,
                p.n_changed,
                p.n_flagged
            ));
        }
        m.push_str(
            "\n| source | license | rows | quarantined | kept |\n|---|---|---:|---:|---:|\n",
        );
        for src in &self.sources {
            m.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                md(&src.name),
                md(opt(&src.license)),
                src.n_rows,
                src.n_quarantined,
                src.n_kept
            ));
        }
        let pii: Vec<String> = map_rows(&self.pii)
            .into_iter()
            .filter(|(_, n)| *n > 0.0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        m.push_str(&format!(
            "\nPII masked: {}\n",
            if pii.is_empty() {
                "none".to_string()
            } else {
                pii.join(", ")
            }
        ));
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_shows_funnel_sources_and_examples() {
        let counts = |kv: &[(&str, u64)]| -> BTreeMap<String, u64> {
            kv.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let passes = vec![PassLine {
            pass: "exact_duplicates".into(),
            n_in: 10,
            n_kept: 8,
            n_dropped: 2,
            stats: counts(&[("exact_duplicate", 2), ("unused", 0)]),
            ..Default::default()
        }];
        let sources = vec![SourceLine {
            name: "helpdesk".into(),
            path: "data/h.csv".into(),
            role: "train".into(),
            license: Some("internal".into()),
            n_rows: 11,
            n_quarantined: 1,
            n_kept: 8,
            ..Default::default()
        }];
        let r = DataReport {
            task: "t",
            version_id: "abc",
            created_at: "now",
            parent: None,
            n_input: 11,
            n_records: 8,
            n_quarantined: 1,
            passes,
            sources,
            by_label: counts(&[("a", 5), ("b", 3)]),
            by_topic: counts(&[("cards", 8)]),
            pii: counts(&[("email", 2), ("ssn", 0)]),
            examples: vec![Example {
                pass: "pii".into(),
                rule: "pii_mask".into(),
                record_id: "r1".into(),
                source: "helpdesk".into(),
                reason: "masked 1 email".into(),
                text: "mail <EMAIL>".into(),
            }],
            quarantine: vec![],
            suspects: vec![Example {
                pass: "label_issue".into(),
                rule: "a → b".into(),
                record_id: "r7".into(),
                source: "helpdesk".into(),
                reason: "out-of-fold p = 0.02".into(),
                text: "some text".into(),
            }],
        };
        let html = r.html();
        assert!(html.contains("Suspects from the latest scan") && html.contains("a → b"));
        assert!(
            html.contains("<svg")
                && html.contains("after exact_duplicates")
                && html.contains("mail &lt;EMAIL&gt;")
        );
        assert!(
            !html.contains("<script") && !html.contains(" src=") && !html.contains("<link"),
            "self-contained: no external resources"
        );
        let md = r.markdown();
        assert!(
            md.contains("| exact_duplicates | 10 | 8 | 2 | 0 | 0 |"),
            "{md}"
        );
        assert!(md.contains("PII masked: email 2"), "{md}");
        assert!(md.contains("| helpdesk | internal | 11 | 1 | 8 |"), "{md}");
        assert!(
            html.contains("<td>exact_duplicate: 2</td>") && !html.contains("unused"),
            "zero counts are not shown"
        );
        assert!(html.contains(
            "helpdesk<br><span class=muted>data/h.csv</span></td><td>train</td><td>internal</td>"
        ));
    }
}
