//! The run report: success gates, metrics with confidence intervals for every model next to the majority
//! baseline, the chosen model's confusion heat map, learning curve, reliability diagram and slices, and
//! comparisons with the baseline and the previous run.

use serde_json::Value;

use crate::svg::{heatmap, lines, reliability};
use crate::{STYLE, esc, md};

/// One comparison line (computed by the caller with a paired test).
pub struct ComparisonLine {
    pub what: String,
    pub delta: f64,
    pub lo: f64,
    pub hi: f64,
    pub p_value: f64,
    pub verdict: String,
}

pub struct RunReport<'a> {
    pub task: &'a str,
    /// `(run id, model name, record)` per model; `chosen` indexes it.
    pub runs: Vec<(&'a str, &'a str, &'a Value)>,
    pub chosen: usize,
    /// `(metric, rule, value, pass, note)`.
    pub gates: Vec<(String, String, Option<f64>, bool, String)>,
    pub comparisons: Vec<ComparisonLine>,
    pub split_summary: &'a Value,
}

fn f(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.4}"))
}
fn ci(v: &Value) -> String {
    match (v["estimate"].as_f64(), v["lo"].as_f64(), v["hi"].as_f64()) {
        (Some(e), Some(l), Some(h)) => format!("{e:.4} [{l:.4}, {h:.4}]"),
        _ => "–".into(),
    }
}

impl RunReport<'_> {
    fn model_rows(&self) -> Vec<[String; 9]> {
        self.runs
            .iter()
            .enumerate()
            .map(|(i, (id, name, r))| {
                [
                    format!(
                        "{}{}",
                        name,
                        if i == self.chosen { " (chosen)" } else { "" }
                    ),
                    id.chars().take(12).collect(),
                    ci(&r["test"]["accuracy"]),
                    ci(&r["test"]["macro_f1"]),
                    f(&r["test"]["ece"]),
                    f(&r["dev"]["macro_f1"]),
                    r["latency_us"]["p95"]
                        .as_f64()
                        .map_or("–".into(), |x| format!("{:.1} µs", x)),
                    r["train"]["wall_seconds"]
                        .as_f64()
                        .map_or("–".into(), |x| format!("{x:.2} s")),
                    r["cost"]["per_1k_predictions_usd"]
                        .as_f64()
                        .map_or("–".into(), |x| format!("${x:.2e}")),
                ]
            })
            .collect()
    }

    pub fn html(&self) -> String {
        let mut h = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>hone run report — {}</title><style>{STYLE}</style></head><body>",
            esc(self.task)
        );
        h.push_str(&format!("<h1>Run report: {}</h1>", esc(self.task)));
        let pass = self.gates.iter().all(|g| g.3);
        h.push_str(&format!("<h2>Success gates: {}</h2><table><tr><th>metric</th><th>rule</th><th>value</th><th>result</th></tr>", if pass { "all pass" } else { "FAILED" }));
        for (m, rule, v, ok, note) in &self.gates {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(m),
                esc(rule),
                v.map_or_else(|| esc(note), |x| format!("{x:.4}")),
                if *ok { "pass" } else { "<b>fail</b>" }
            ));
        }
        h.push_str("</table><h2>Models on the frozen test set</h2><p class=muted>95% bootstrap confidence intervals in brackets.</p><table><tr><th>model</th><th>run</th><th>accuracy</th><th>macro-F1</th><th>ECE</th><th>dev macro-F1</th><th>p95 latency</th><th>training</th><th>per 1k predictions</th></tr>");
        for row in self.model_rows() {
            h.push_str("<tr>");
            for c in row {
                h.push_str(&format!("<td>{}</td>", esc(&c)));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        if !self.comparisons.is_empty() {
            h.push_str("<h2>Comparisons (paired bootstrap on accuracy + McNemar)</h2><table><tr><th>comparison</th><th>Δ accuracy</th><th>95% CI</th><th>p</th><th>verdict</th></tr>");
            for c in &self.comparisons {
                h.push_str(&format!("<tr><td>{}</td><td>{:+.4}</td><td>[{:+.4}, {:+.4}]</td><td>{:.4}</td><td>{}</td></tr>", esc(&c.what), c.delta, c.lo, c.hi, c.p_value, esc(&c.verdict)));
            }
            h.push_str("</table>");
        }
        if let Some((_, name, r)) = self.runs.get(self.chosen) {
            let labels: Vec<String> = r["labels"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let matrix: Vec<Vec<u64>> =
                serde_json::from_value(r["test"]["confusion"].clone()).unwrap_or_default();
            h.push_str(&format!("<h2>Confusion ({})</h2>", esc(name)));
            h.push_str(&heatmap(&matrix, &labels));
            let mut series: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
            for e in r["train"]["epochs"].as_array().into_iter().flatten() {
                series
                    .entry(format!("dev macro-F1, l2={}", e["l2"]))
                    .or_default()
                    .push(e["dev_macro_f1"].as_f64().unwrap_or(0.0));
            }
            if !series.is_empty() {
                h.push_str("<h2>Learning curve</h2>");
                h.push_str(&lines(&series.into_iter().collect::<Vec<_>>()));
            }
            let bins: Vec<(f64, f64, u64)> = r["test"]["reliability"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|b| {
                    (
                        b["mean_confidence"].as_f64().unwrap_or(0.0),
                        b["accuracy"].as_f64().unwrap_or(0.0),
                        b["count"].as_u64().unwrap_or(0),
                    )
                })
                .collect();
            h.push_str(&format!(
                "<h2>Reliability (ECE {})</h2>",
                f(&r["test"]["ece"])
            ));
            h.push_str(&reliability(&bins));
            h.push_str("<h2>Slices</h2><table><tr><th>slice</th><th>value</th><th>n</th><th>accuracy</th></tr>");
            for kind in ["source", "topic", "tag"] {
                for (k, v) in r["slices"][kind].as_object().into_iter().flatten() {
                    h.push_str(&format!(
                        "<tr><td>{kind}</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                        esc(k),
                        v["n"],
                        f(&v["accuracy"])
                    ));
                }
            }
            for (k, v) in r["suites"]["by_suite"].as_object().into_iter().flatten() {
                h.push_str(&format!(
                    "<tr><td>suite</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                    esc(k),
                    v["n"],
                    f(&v["accuracy"])
                ));
            }
            for (k, v) in r["suites"]["by_tag"].as_object().into_iter().flatten() {
                h.push_str(&format!(
                    "<tr><td>suite tag</td><td>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                    esc(k),
                    v["n"],
                    f(&v["accuracy"])
                ));
            }
            h.push_str("</table>");
        }
        h.push_str(&format!(
            "<h2>Split</h2><pre>{}</pre></body></html>\n",
            esc(&serde_json::to_string_pretty(&self.split_summary["counts"]).unwrap_or_default())
        ));
        h
    }

    pub fn markdown(&self) -> String {
        let mut m = format!(
            "# Run report: {}\n\n| gate | rule | value | result |\n|---|---|---:|---|\n",
            self.task
        );
        for (metric, rule, v, ok, note) in &self.gates {
            m.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                md(metric),
                md(rule),
                v.map_or_else(|| md(note), |x| format!("{x:.4}")),
                if *ok { "pass" } else { "**fail**" }
            ));
        }
        m.push_str("\n| model | run | accuracy [95% CI] | macro-F1 [95% CI] | ECE | dev macro-F1 | p95 latency | training | per 1k predictions |\n|---|---|---|---|---:|---:|---:|---:|---:|\n");
        for row in self.model_rows() {
            m.push_str(&format!(
                "| {} |\n",
                row.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | ")
            ));
        }
        for c in &self.comparisons {
            m.push_str(&format!(
                "\n{}: Δ accuracy {:+.4} [{:+.4}, {:+.4}], p = {:.4} → **{}**",
                c.what, c.delta, c.lo, c.hi, c.p_value, c.verdict
            ));
        }
        m.push('\n');
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn run_report_has_gates_models_and_charts() {
        let rec = json!({
            "labels": ["a", "b"],
            "test": {"accuracy": {"estimate": 0.9, "lo": 0.85, "hi": 0.95}, "macro_f1": {"estimate": 0.8, "lo": 0.7, "hi": 0.9}, "ece": 0.05, "confusion": [[9, 1], [1, 9]], "reliability": [{"mean_confidence": 0.9, "accuracy": 0.88, "count": 10}]},
            "dev": {"macro_f1": 0.81},
            "train": {"wall_seconds": 0.5, "epochs": [{"l2": 1.0, "dev_macro_f1": 0.7}, {"l2": 1.0, "dev_macro_f1": 0.8}]},
            "latency_us": {"p95": 12.0},
            "slices": {"source": {"s": {"n": 20, "accuracy": 0.9}}},
            "suites": {"by_tag": {"unsafe": {"n": 3, "accuracy": 1.0}}},
        });
        let split = json!({"counts": {"train": 70}});
        let r = RunReport {
            task: "t",
            runs: vec![("abc", "ngram", &rec)],
            chosen: 0,
            gates: vec![(
                "accuracy".into(),
                ">= 0.95".into(),
                Some(0.9),
                false,
                String::new(),
            )],
            comparisons: vec![ComparisonLine {
                what: "ngram vs majority".into(),
                delta: 0.4,
                lo: 0.3,
                hi: 0.5,
                p_value: 0.001,
                verdict: "significantly better".into(),
            }],
            split_summary: &split,
        };
        let html = r.html();
        assert!(
            html.contains("FAILED")
                && html.contains("0.9000 [0.8500, 0.9500]")
                && html.matches("<svg").count() == 3,
            "{html}"
        );
        assert!(html.contains("unsafe"));
        let md = r.markdown();
        assert!(
            md.contains("| accuracy | >= 0.95 | 0.9000 | **fail** |"),
            "{md}"
        );
        assert!(md.contains("significantly better"));
    }
}
