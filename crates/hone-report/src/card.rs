//! Model cards: Hugging Face's format (YAML metadata with `license`, `base_model`, `datasets`,
//! `metrics` and `model-index`, then Markdown) with the sections of Mitchell et al. 2019, from plain
//! data the caller measured; and the same card as one self-contained HTML page (no external
//! resources; raw HTML in any text is shown as text, never run).

use crate::{STYLE, esc, md};

/// One headline metric, on the test set.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// As shown: `accuracy`, `macro-F1`, `ROUGE-L`.
    pub name: String,
    /// Hugging Face's metric id: `accuracy`, `f1`, `rouge`, `chrf`, `exact_match`.
    pub hf_type: String,
    pub value: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

/// A data source as the card lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    pub name: String,
    pub role: String,
    pub license: Option<String>,
    pub collected: Option<String>,
    pub rows: usize,
    /// Rows set aside unread (bad JSON, a missing field), each recorded with its reason.
    pub quarantined: usize,
    pub kept: usize,
}

/// Everything a card says; every number comes from a run record or the store.
#[derive(Debug, Clone, Default)]
pub struct Card {
    pub task: String,
    /// Hugging Face pipeline tag: `text-classification` or `text-generation`.
    pub pipeline: String,
    pub model: String,
    pub run: String,
    pub run_seq: i64,
    pub created_at: String,
    pub hone_version: String,
    pub method: String,
    pub base_model: Option<String>,
    pub license: Option<String>,
    pub owner: Option<String>,
    pub description: Option<String>,
    pub intended_use: Option<String>,
    pub out_of_scope: Option<String>,
    pub data_version: String,
    pub split: String,
    /// Records in train, dev, test and the suites.
    pub counts: [usize; 4],
    pub sources: Vec<Source>,
    /// What the project's policy says about consent and personal data.
    pub consent: String,
    /// `[pass, in, kept, dropped, changed, flagged]` per curation pass.
    pub funnel: Vec<Vec<String>>,
    pub leak_check: String,
    pub metrics: Vec<Metric>,
    /// How scores become answers (the run's decision rule, in words).
    pub decision: String,
    /// `[label, precision, recall, F1, support]`, worst F1 first.
    pub per_class: Vec<Vec<String>>,
    /// `[factor, value, n, score]`, worst first.
    pub slices: Vec<Vec<String>>,
    /// `[suite or tag, n, score]`.
    pub suites: Vec<Vec<String>>,
    /// Limits, each a sentence written from a measurement.
    pub limits: Vec<String>,
    /// Header, then rows: test failures, text masked.
    pub failures: (Vec<String>, Vec<Vec<String>>),
    /// `(what, value)`.
    pub cost: Vec<(String, String)>,
    pub reproduce: Vec<String>,
}

/// A YAML scalar: JSON's double-quoted string is valid YAML.
fn y(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A metric value as every hone report prints it.
pub fn f4(x: f64) -> String {
    format!("{x:.4}")
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    out.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    for r in rows {
        let cells: Vec<String> = r.iter().map(|c| md(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
}

fn stated(out: &mut String, text: &Option<String>, key: &str) {
    match text {
        Some(t) if !t.trim().is_empty() => out.push_str(&format!("{}\n\n", t.trim())),
        _ => out.push_str(&format!(
            "_Not stated: write it as `{key}` under `[task]` in hone.toml._\n\n"
        )),
    }
}

impl Card {
    /// The YAML metadata block, between `---` lines.
    pub fn metadata(&self) -> String {
        let mut m = String::from("---\n");
        m.push_str(&format!(
            "license: {}\n",
            y(self.license.as_deref().unwrap_or("other"))
        ));
        if let Some(b) = &self.base_model {
            m.push_str(&format!("base_model: {}\n", y(b)));
        }
        m.push_str(&format!("pipeline_tag: {}\n", y(&self.pipeline)));
        m.push_str("library_name: \"hone\"\ndatasets:\n");
        for s in &self.sources {
            m.push_str(&format!("- {}\n", y(&s.name)));
        }
        m.push_str("metrics:\n");
        for x in &self.metrics {
            m.push_str(&format!("- {}\n", y(&x.hf_type)));
        }
        m.push_str(&format!(
            "model-index:\n- name: {}\n  results:\n  - task:\n      type: {}\n    dataset:\n      name: {}\n      type: {}\n      split: \"test\"\n    metrics:\n",
            y(&format!("{}-{}", self.task, self.model)),
            y(&self.pipeline),
            y(&format!("{} frozen test set", self.task)),
            y(&self.data_version),
        ));
        for x in &self.metrics {
            m.push_str(&format!(
                "    - type: {}\n      name: {}\n      value: {}\n",
                y(&x.hf_type),
                y(&format!("test {}", x.name)),
                f4(x.value)
            ));
        }
        m.push_str("---\n");
        m
    }

    /// The card as Markdown: metadata, then the sections.
    pub fn markdown(&self) -> String {
        let mut o = self.metadata();
        o.push_str(&format!(
            "\n# {}: model card for `{}` (run #{})\n\n",
            self.task, self.model, self.run_seq
        ));
        o.push_str("Written by `hone card` from the run's measurements; only the `[task]` text was typed by hand.\n\n");
        if let Some(d) = self.description.as_deref().filter(|d| !d.trim().is_empty()) {
            o.push_str(&format!("{}\n\n", d.trim()));
        }
        o.push_str("## Model details\n\n");
        let mut details = vec![
            vec!["run".into(), format!("`{}`", self.run)],
            vec!["created".into(), self.created_at.clone()],
            vec!["method".into(), self.method.clone()],
            vec![
                "base model".into(),
                self.base_model
                    .clone()
                    .unwrap_or_else(|| "none (trained from scratch)".into()),
            ],
            vec!["dataset version".into(), format!("`{}`", self.data_version)],
            vec!["split".into(), format!("`{}`", self.split)],
            vec!["hone".into(), self.hone_version.clone()],
        ];
        if let Some(owner) = &self.owner {
            details.push(vec!["owner".into(), owner.clone()]);
        }
        table(&mut o, &["field", "value"], &details);
        o.push_str("## Intended use\n\n");
        stated(&mut o, &self.intended_use, "intended_use");
        o.push_str("## Out-of-scope uses\n\n");
        stated(&mut o, &self.out_of_scope, "out_of_scope");
        o.push_str("## Factors\n\nResults are broken down by record source, topic and tag (the slices under Quantitative analyses) and by test suite (easy, hard, strange, unsafe, private-trap cases as tagged).\n\n");
        o.push_str("## Metrics\n\n95% bootstrap confidence intervals on the frozen test set.\n\n");
        let rows: Vec<Vec<String>> = self
            .metrics
            .iter()
            .map(|x| {
                vec![
                    x.name.clone(),
                    f4(x.value),
                    match (x.lo, x.hi) {
                        (Some(l), Some(h)) => format!("[{}, {}]", f4(l), f4(h)),
                        _ => "-".into(),
                    },
                ]
            })
            .collect();
        table(&mut o, &["metric", "test", "95% CI"], &rows);
        o.push_str(&format!("Decision rule: {}\n\n", self.decision));
        o.push_str(&format!(
            "## Evaluation data\n\nA frozen test set of {} records (split `{}`), held out before any training and never used to choose a model; {} suite cases. Leak check: {}\n\n",
            self.counts[2], self.split, self.counts[3], self.leak_check
        ));
        o.push_str(&format!(
            "## Training data\n\n{} training and {} dev records from dataset version `{}`.\n\n",
            self.counts[0], self.counts[1], self.data_version
        ));
        let rows: Vec<Vec<String>> = self
            .sources
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    s.role.clone(),
                    s.license.clone().unwrap_or_else(|| "not stated".into()),
                    s.collected.clone().unwrap_or_else(|| "-".into()),
                    s.rows.to_string(),
                    s.quarantined.to_string(),
                    s.kept.to_string(),
                ]
            })
            .collect();
        table(
            &mut o,
            &[
                "source",
                "role",
                "license",
                "collected",
                "rows",
                "quarantined",
                "kept",
            ],
            &rows,
        );
        o.push_str(&format!("{}\n\nCuration funnel:\n\n", self.consent));
        table(
            &mut o,
            &["pass", "in", "kept", "dropped", "changed", "flagged"],
            &self.funnel,
        );
        o.push_str("## Quantitative analyses\n\n");
        if !self.per_class.is_empty() {
            o.push_str("Per class, weakest first:\n\n");
            table(
                &mut o,
                &["class", "precision", "recall", "F1", "support"],
                &self.per_class,
            );
        }
        if !self.slices.is_empty() {
            o.push_str("By slice, weakest first:\n\n");
            table(&mut o, &["factor", "value", "n", "score"], &self.slices);
        }
        if !self.suites.is_empty() {
            o.push_str("Suites:\n\n");
            table(&mut o, &["suite or tag", "n", "score"], &self.suites);
        }
        o.push_str("## Limits\n\n");
        for l in &self.limits {
            o.push_str(&format!("- {l}\n"));
        }
        o.push('\n');
        if !self.failures.1.is_empty() {
            o.push_str("Test failures (personal data masked):\n\n");
            let header: Vec<&str> = self.failures.0.iter().map(String::as_str).collect();
            table(&mut o, &header, &self.failures.1);
        }
        o.push_str("## Cost\n\n");
        let rows: Vec<Vec<String>> = self
            .cost
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect();
        table(&mut o, &["what", "value"], &rows);
        o.push_str("## How to reproduce\n\n```sh\n");
        for c in &self.reproduce {
            o.push_str(c);
            o.push('\n');
        }
        o.push_str("```\n");
        o
    }

    /// The card as one HTML page: the Markdown body rendered, the metadata shown as a block, raw
    /// HTML in any text escaped.
    pub fn html(&self) -> String {
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Model card: {} / {}</title><style>{STYLE}</style></head><body>{}</body></html>",
            esc(&self.task),
            esc(&self.model),
            self.body()
        )
    }

    /// The card's body, without the page around it (the dashboard shows it in its own page).
    pub fn body(&self) -> String {
        use pulldown_cmark::{Event, Options, Parser};
        let full = self.markdown();
        let meta = self.metadata();
        let body = full.strip_prefix(&meta).unwrap_or(&full);
        let events = Parser::new_ext(body, Options::ENABLE_TABLES).map(|e| match e {
            Event::Html(t) | Event::InlineHtml(t) => Event::Text(t),
            other => other,
        });
        let mut html = String::new();
        pulldown_cmark::html::push_html(&mut html, events);
        format!("{html}<h2>Metadata</h2><pre>{}</pre>", esc(&meta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card() -> Card {
        Card {
            task: "tickets".into(),
            pipeline: "text-classification".into(),
            model: "ngram".into(),
            run: "abc".into(),
            description: Some("Routes <script>alert(1)</script> tickets".into()),
            metrics: vec![Metric {
                name: "accuracy".into(),
                hf_type: "accuracy".into(),
                value: 0.912_345,
                lo: Some(0.9),
                hi: Some(0.93),
            }],
            sources: vec![Source {
                name: "tickets \"2024\"".into(),
                role: "train".into(),
                license: None,
                collected: None,
                rows: 10,
                quarantined: 0,
                kept: 9,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn metadata_is_yaml_with_four_decimals_and_quoted_strings() {
        let m = card().metadata();
        assert!(m.starts_with("---\nlicense: \"other\"\n"), "{m}");
        assert!(m.contains("- \"tickets \\\"2024\\\"\"\n"), "{m}");
        assert!(m.contains("      value: 0.9123\n"), "{m}");
        assert!(m.ends_with("---\n"));
    }

    #[test]
    fn html_shows_raw_html_as_text_and_loads_nothing() {
        let h = card().html();
        assert!(!h.contains("<script>"), "{h}");
        assert!(h.contains("&lt;script&gt;"));
        assert!(!h.contains("src=") && !h.contains("href=\"http"));
        assert!(h.contains("<table>"));
    }

    #[test]
    fn unstated_task_text_says_which_key_to_write() {
        let md = card().markdown();
        assert!(md.contains("`intended_use` under `[task]`"));
        assert!(md.contains("`out_of_scope` under `[task]`"));
    }
}
