//! The run report: success gates, metrics with confidence intervals for every model next to the majority
//! baseline, the chosen model's confusion heat map, learning curve, reliability diagram and slices, and
//! comparisons with the baseline and the previous run.

use std::collections::BTreeMap;

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

/// A metric and its 95% interval (`None` where not measured).
#[derive(Debug, Clone, Copy, Default)]
pub struct Interval {
    pub estimate: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

/// One model's row in the comparison table.
#[derive(Clone)]
pub struct ModelLine<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub accuracy: Interval,
    pub macro_f1: Interval,
    pub ece: Option<f64>,
    pub dev_macro_f1: Option<f64>,
    pub p95_latency_us: Option<f64>,
    pub train_seconds: Option<f64>,
    pub cost_per_1k_usd: Option<f64>,
    /// Refitted on train + dev after dev ranked it (`[split] fold_dev`): marked `†` in the table.
    pub dev_folded: bool,
}

/// What `†` means under the models table.
const NO_DEV_NOTE: &str = "No model has a dev score (the split has no dev set), so the chosen model is simply the earliest listed: hone never chooses on the test set. Give `[split] dev` a share to rank the models.";
const FOLDED_NOTE: &str = "† refitted on train + dev after dev ranked it ([split] fold_dev); its dev macro-F1 is the train-only fit's, its test figures the refit's.";

/// The chosen model's charts and slices.
#[derive(Default)]
pub struct ChosenDetail {
    pub labels: Vec<String>,
    /// Gold rows × predicted columns.
    pub confusion: Vec<Vec<u64>>,
    /// Named learning curves (dev macro-F1 per epoch).
    pub curves: Vec<(String, Vec<f64>)>,
    pub ece: Option<f64>,
    /// `(mean confidence, accuracy, count)` per reliability bin.
    pub reliability: Vec<(f64, f64, u64)>,
    /// `(slice kind, value, n, accuracy)`: source, topic and tag slices, then suites and suite tags.
    pub slices: Vec<(String, String, u64, f64)>,
}

/// One `[success]` gate as checked.
pub struct GateLine {
    pub metric: String,
    pub rule: String,
    pub value: Option<f64>,
    pub pass: bool,
    pub note: String,
}

/// The names of the report's metric columns: classification or generation.
#[derive(Debug, Clone, Copy)]
pub struct MetricNames {
    /// The first metric column (`accuracy` or `ROUGE-L`).
    pub primary: &'static str,
    /// The second (`macro-F1` or `chrF`).
    pub secondary: &'static str,
    /// The third (`ECE` or `exact match`).
    pub third: &'static str,
    /// The dev ranking metric.
    pub dev: &'static str,
    /// How comparisons are tested.
    pub comparison: &'static str,
    /// The confusion matrix and reliability plot only apply to classification.
    pub classification: bool,
}

impl MetricNames {
    pub const CLASSIFY: MetricNames = MetricNames {
        primary: "accuracy",
        secondary: "macro-F1",
        third: "ECE",
        dev: "dev macro-F1",
        comparison: "paired bootstrap on accuracy + McNemar",
        classification: true,
    };
    pub const GENERATE: MetricNames = MetricNames {
        primary: "ROUGE-L",
        secondary: "chrF",
        third: "exact match",
        dev: "dev ROUGE-L",
        comparison: "paired bootstrap on ROUGE-L",
        classification: false,
    };
}

pub struct RunReport<'a> {
    pub task: &'a str,
    pub names: MetricNames,
    /// One line per model; `chosen` indexes it.
    pub runs: Vec<ModelLine<'a>>,
    pub chosen: usize,
    pub detail: ChosenDetail,
    pub gates: Vec<GateLine>,
    pub comparisons: Vec<ComparisonLine>,
    /// Generate tasks with graders: each model's grader scores on the test answers.
    pub graders: Vec<GraderLine>,
    /// GRPO models: their reward curves and the signals of every step.
    pub reward_training: Vec<RewardCurve>,
    /// DPO models: their pairs and held-out preference accuracy before and after.
    pub preference_training: Vec<PreferenceLine>,
    /// Distilled language models: one sentence each (teacher, mode, retention, speed-up).
    pub distillation: Vec<String>,
    /// Records per part of the split.
    pub split_counts: BTreeMap<String, u64>,
    /// How the chosen model was chosen, when the rule ranks by a dev score the table does not show
    /// (a generate task's `[task] select_by` naming a grader): the rule and every model's score.
    pub chosen_by: Option<String>,
}

/// One grader on one model's test answers.
#[derive(Debug, Clone)]
pub struct GraderLine {
    pub model: String,
    pub grader: String,
    pub pass_rate: Interval,
    pub mean: Interval,
    /// Answers the grader could not score (counted as not passing).
    pub errors: usize,
}

/// One GRPO model's training, step by step.
#[derive(Debug, Clone, Default)]
pub struct RewardCurve {
    pub model: String,
    /// The grader whose reward trained it.
    pub reward: String,
    pub steps: Vec<RewardPoint>,
    /// How training ended, and the advice for each signal that reached its warning level.
    pub notes: Vec<String>,
}

/// One DPO model's pairs and how it ranks the held-out ones.
#[derive(Debug, Clone, Default)]
pub struct PreferenceLine {
    pub model: String,
    /// Where the pairs came from and how many were used, dropped and held out.
    pub summary: String,
    /// Held-out pairs: (accuracy, mean β·margin, loss) at the start and for the weights kept
    /// (`None`: no pairs were held out).
    pub before: Option<(f64, f64, f64)>,
    pub after: Option<(f64, f64, f64)>,
}

const PREFERENCE_HEAD: [&str; 4] = ["held-out pairs", "accuracy", "margin", "loss"];

impl PreferenceLine {
    fn rows(&self) -> [[String; 4]; 2] {
        let row = |what: &str, v: Option<(f64, f64, f64)>| match v {
            Some((a, m, l)) => [
                what.to_string(),
                format!("{a:.4}"),
                format!("{m:.4}"),
                format!("{l:.4}"),
            ],
            None => [what.to_string(), "–".into(), "–".into(), "–".into()],
        };
        [
            row("before (the start model)", self.before),
            row("after (weights kept)", self.after),
        ]
    }
}

/// One GRPO step's signals.
#[derive(Debug, Clone, Copy, Default)]
pub struct RewardPoint {
    pub reward_mean: f64,
    pub reward_std: f64,
    pub frac_reward_zero_std: f64,
    pub clipped_ratio: f64,
    pub kl: Option<f64>,
    pub completion_length: f64,
    /// Generation, reward and training seconds of the step.
    pub seconds: f64,
}

impl RewardCurve {
    /// At most 12 evenly spaced steps (the first and last always), as table rows.
    fn rows(&self) -> Vec<Vec<String>> {
        let n = self.steps.len();
        let every = n.div_ceil(12).max(1);
        (0..n)
            .filter(|i| i % every == 0 || i + 1 == n)
            .map(|i| {
                let p = &self.steps[i];
                vec![
                    (i + 1).to_string(),
                    format!("{:.4}", p.reward_mean),
                    format!("{:.4}", p.reward_std),
                    format!("{:.2}", p.frac_reward_zero_std),
                    format!("{:.2}", p.clipped_ratio),
                    p.kl.map_or("-".into(), |k| format!("{k:.4}")),
                    format!("{:.1}", p.completion_length),
                    format!("{:.2}", p.seconds),
                ]
            })
            .collect()
    }

    fn summary(&self) -> String {
        let n = self.steps.len().max(1) as f64;
        let secs: Vec<f64> = self.steps.iter().map(|p| p.seconds).collect();
        let mut sorted = secs.clone();
        sorted.sort_by(f64::total_cmp);
        format!(
            "{} steps on grader `{}`; {:.2} s per step (median {:.2} s)",
            self.steps.len(),
            self.reward,
            secs.iter().sum::<f64>() / n,
            sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
        )
    }
}

const REWARD_HEAD: [&str; 8] = [
    "step",
    "reward mean",
    "reward std",
    "zero-std groups",
    "truncated",
    "KL",
    "tokens",
    "seconds",
];

const GRADERS_NOTE: &str = "Graders score the stored test answers with the grader files as they are now; an answer a grader cannot score counts as not passing and as reward 0 in the mean.";

/// A latency in the unit that reads best: µs under a millisecond, ms under 0.1 s, then seconds.
fn latency(us: f64) -> String {
    if us >= 1e5 {
        format!("{:.2} s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{us:.1} µs")
    }
}

fn f(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.4}"))
}
fn ci(v: &Interval) -> String {
    match (v.estimate, v.lo, v.hi) {
        (Some(e), Some(l), Some(h)) => format!("{e:.4} [{l:.4}, {h:.4}]"),
        _ => "–".into(),
    }
}

impl RunReport<'_> {
    /// Several models and not one dev score: the choice fell to the order of the list.
    fn no_dev_scores(&self) -> bool {
        self.runs.len() > 1 && self.runs.iter().all(|r| r.dev_macro_f1.is_none())
    }

    fn model_rows(&self) -> Vec<[String; 9]> {
        self.runs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                [
                    format!(
                        "{}{}{}",
                        r.name,
                        if r.dev_folded { " †" } else { "" },
                        if i == self.chosen { " (chosen)" } else { "" }
                    ),
                    r.id.chars().take(12).collect(),
                    ci(&r.accuracy),
                    ci(&r.macro_f1),
                    f(r.ece),
                    f(r.dev_macro_f1),
                    r.p95_latency_us.map_or("–".into(), latency),
                    r.train_seconds.map_or("–".into(), |x| format!("{x:.2} s")),
                    r.cost_per_1k_usd
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
        let pass = self.gates.iter().all(|g| g.pass);
        h.push_str(&format!("<h2>Success gates: {}</h2><table><tr><th>metric</th><th>rule</th><th>value</th><th>result</th></tr>", if pass { "all pass" } else { "FAILED" }));
        for g in &self.gates {
            h.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&g.metric),
                esc(&g.rule),
                g.value.map_or_else(|| esc(&g.note), |x| format!("{x:.4}")),
                if g.pass { "pass" } else { "<b>fail</b>" }
            ));
        }
        h.push_str("</table><h2>Models on the frozen test set</h2><p class=muted>95% bootstrap confidence intervals in brackets.</p><table><tr><th>model</th><th>run</th>");
        let n = &self.names;
        h.push_str(&format!("<th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>training</th><th>per 1k predictions</th></tr>", n.primary, n.secondary, n.third, n.dev, if n.classification { "p95 latency" } else { "mean latency" }));
        for row in self.model_rows() {
            h.push_str("<tr>");
            for c in row {
                h.push_str(&format!("<td>{}</td>", esc(&c)));
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        if self.runs.iter().any(|r| r.dev_folded) {
            h.push_str(&format!("<p class=muted>{}</p>", esc(FOLDED_NOTE)));
        }
        if self.no_dev_scores() {
            h.push_str(&format!("<p class=muted>{}</p>", esc(NO_DEV_NOTE)));
        }
        if let Some(c) = &self.chosen_by {
            h.push_str(&format!("<p>{}</p>", esc(c)));
        }
        if !self.graders.is_empty() {
            h.push_str(&format!("<h2>Graders on the test answers</h2><p class=muted>{}</p><table><tr><th>model</th><th>grader</th><th>pass rate [95% CI]</th><th>mean reward [95% CI]</th><th>errors</th></tr>", esc(GRADERS_NOTE)));
            for g in &self.graders {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=n>{}</td></tr>",
                    esc(&g.model),
                    esc(&g.grader),
                    ci(&g.pass_rate),
                    ci(&g.mean),
                    g.errors
                ));
            }
            h.push_str("</table>");
        }
        if !self.distillation.is_empty() {
            h.push_str("<h2>Distillation</h2><ul>");
            for d in &self.distillation {
                h.push_str(&format!("<li>{}</li>", esc(d)));
            }
            h.push_str("</ul>");
        }
        for p in &self.preference_training {
            h.push_str(&format!(
                "<h2>Preference training: {}</h2><p class=muted>{}</p><table><tr>",
                esc(&p.model),
                esc(&p.summary)
            ));
            for head in PREFERENCE_HEAD {
                h.push_str(&format!("<th>{head}</th>"));
            }
            h.push_str("</tr>");
            for row in p.rows() {
                h.push_str(&format!(
                    "<tr><td>{}</td><td class=n>{}</td><td class=n>{}</td><td class=n>{}</td></tr>",
                    esc(&row[0]),
                    row[1],
                    row[2],
                    row[3]
                ));
            }
            h.push_str("</table>");
        }
        for c in &self.reward_training {
            h.push_str(&format!(
                "<h2>Reward training: {}</h2><p class=muted>{}</p>",
                esc(&c.model),
                esc(&c.summary())
            ));
            let series =
                |f: &dyn Fn(&RewardPoint) -> f64| c.steps.iter().map(f).collect::<Vec<_>>();
            h.push_str(&lines(
                &[
                    ("reward mean".into(), series(&|p| p.reward_mean)),
                    (
                        "zero-std groups".into(),
                        series(&|p| p.frac_reward_zero_std),
                    ),
                    ("truncated".into(), series(&|p| p.clipped_ratio)),
                ],
                "step",
            ));
            h.push_str("<table><tr>");
            for head in REWARD_HEAD {
                h.push_str(&format!("<th>{head}</th>"));
            }
            h.push_str("</tr>");
            for row in c.rows() {
                h.push_str("<tr>");
                for cell in row {
                    h.push_str(&format!("<td class=n>{}</td>", esc(&cell)));
                }
                h.push_str("</tr>");
            }
            h.push_str("</table>");
            for note in &c.notes {
                h.push_str(&format!("<p>{}</p>", esc(note)));
            }
        }
        if !self.comparisons.is_empty() {
            h.push_str(&format!("<h2>Comparisons ({})</h2><table><tr><th>comparison</th><th>Δ {}</th><th>95% CI</th><th>p</th><th>verdict</th></tr>", self.names.comparison, self.names.primary));
            for c in &self.comparisons {
                h.push_str(&format!("<tr><td>{}</td><td>{:+.4}</td><td>[{:+.4}, {:+.4}]</td><td>{:.4}</td><td>{}</td></tr>", esc(&c.what), c.delta, c.lo, c.hi, c.p_value, esc(&c.verdict)));
            }
            h.push_str("</table>");
        }
        if let Some(r) = self.runs.get(self.chosen) {
            let d = &self.detail;
            if self.names.classification {
                h.push_str(&format!("<h2>Confusion ({})</h2>", esc(r.name)));
                h.push_str(&heatmap(&d.confusion, &d.labels));
                h.push_str(&format!("<h2>Per class ({}), weakest F1 first</h2><table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>", esc(r.name)));
                for (l, p, rc, f1, n) in d.per_class() {
                    h.push_str(&format!("<tr><td>{}</td><td class=n>{p:.4}</td><td class=n>{rc:.4}</td><td class=n>{f1:.4}</td><td class=n>{n}</td></tr>", esc(&l)));
                }
                h.push_str("</table>");
            }
            if !d.curves.is_empty() {
                h.push_str("<h2>Learning curve</h2>");
                h.push_str(&lines(&d.curves, "epoch"));
            }
            if self.names.classification {
                h.push_str(&format!("<h2>Reliability (ECE {})</h2>", f(d.ece)));
                h.push_str(&reliability(&d.reliability));
            }
            h.push_str(&format!("<h2>Slices ({}, {})</h2><table><tr><th>slice</th><th>value</th><th>n</th><th>{}</th></tr>", esc(r.name), self.names.primary, self.names.primary));
            for (kind, k, n, acc) in &d.slices {
                h.push_str(&format!(
                    "<tr><td>{}</td><td>{}</td><td class=n>{n}</td><td class=n>{}</td></tr>",
                    esc(kind),
                    esc(k),
                    f(Some(*acc))
                ));
            }
            h.push_str("</table>");
        }
        // The split as a table of parts in their natural order, not raw JSON.
        h.push_str("<h2>Split</h2><table><tr><th>part</th><th>records</th></tr>");
        let order = |k: &str| {
            ["train", "dev", "test"]
                .iter()
                .position(|p| *p == k)
                .unwrap_or(3)
        };
        let mut parts: Vec<(&String, &u64)> = self.split_counts.iter().collect();
        parts.sort_by_key(|(k, _)| order(k));
        for (k, v) in parts {
            h.push_str(&format!("<tr><td>{}</td><td class=n>{v}</td></tr>", esc(k)));
        }
        h.push_str("</table></body></html>\n");
        h
    }

    pub fn markdown(&self) -> String {
        let mut m = format!(
            "# Run report: {}\n\n| gate | rule | value | result |\n|---|---|---:|---|\n",
            self.task
        );
        for g in &self.gates {
            m.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                md(&g.metric),
                md(&g.rule),
                g.value.map_or_else(|| md(&g.note), |x| format!("{x:.4}")),
                if g.pass { "pass" } else { "**fail**" }
            ));
        }
        let n = &self.names;
        m.push_str(&format!("\n| model | run | {} [95% CI] | {} [95% CI] | {} | {} | {} | training | per 1k predictions |\n|---|---|---|---|---:|---:|---:|---:|---:|\n", n.primary, n.secondary, n.third, n.dev, if n.classification { "p95 latency" } else { "mean latency" }));
        for row in self.model_rows() {
            m.push_str(&format!(
                "| {} |\n",
                row.iter().map(|c| md(c)).collect::<Vec<_>>().join(" | ")
            ));
        }
        if self.runs.iter().any(|r| r.dev_folded) {
            m.push_str(&format!("\n{}\n", md(FOLDED_NOTE)));
        }
        if self.no_dev_scores() {
            m.push_str(&format!("\n{}\n", md(NO_DEV_NOTE)));
        }
        if let Some(c) = &self.chosen_by {
            m.push_str(&format!("\n{}\n", md(c)));
        }
        if !self.graders.is_empty() {
            m.push_str("\n| model | grader | pass rate [95% CI] | mean reward [95% CI] | errors |\n|---|---|---|---|---:|\n");
            for g in &self.graders {
                m.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    md(&g.model),
                    md(&g.grader),
                    ci(&g.pass_rate),
                    ci(&g.mean),
                    g.errors
                ));
            }
            m.push_str(&format!("\n{}\n", md(GRADERS_NOTE)));
        }
        if !self.distillation.is_empty() {
            m.push_str("\n## Distillation\n\n");
            for d in &self.distillation {
                m.push_str(&format!("- {}\n", md(d)));
            }
        }
        for p in &self.preference_training {
            m.push_str(&format!(
                "\n## Preference training: {}\n\n{}\n\n| {} |\n|---|{}\n",
                md(&p.model),
                md(&p.summary),
                PREFERENCE_HEAD.join(" | "),
                "---:|".repeat(PREFERENCE_HEAD.len() - 1)
            ));
            for row in p.rows() {
                m.push_str(&format!("| {} |\n", row.join(" | ")));
            }
        }
        for c in &self.reward_training {
            m.push_str(&format!(
                "\n## Reward training: {}\n\n{}\n\n| {} |\n|{}\n",
                md(&c.model),
                md(&c.summary()),
                REWARD_HEAD.join(" | "),
                "---:|".repeat(REWARD_HEAD.len())
            ));
            for row in c.rows() {
                m.push_str(&format!("| {} |\n", row.join(" | ")));
            }
            for note in &c.notes {
                m.push_str(&format!("\n{}\n", md(note)));
            }
        }
        for c in &self.comparisons {
            m.push_str(&format!(
                "\n{}: Δ {} {:+.4} [{:+.4}, {:+.4}], p = {:.4} → **{}**",
                c.what, self.names.primary, c.delta, c.lo, c.hi, c.p_value, c.verdict
            ));
        }
        m.push('\n');
        let classes = self.detail.per_class();
        if !classes.is_empty() {
            let name = self.runs.get(self.chosen).map_or("chosen", |r| r.name);
            m.push_str(&format!(
                "\n## Per class ({name}), weakest F1 first\n\n| class | precision | recall | F1 | support |\n|---|---:|---:|---:|---:|\n"
            ));
            for (l, p, r, f, n) in classes.iter().take(PER_CLASS_SHOWN) {
                m.push_str(&format!("| {} | {p:.4} | {r:.4} | {f:.4} | {n} |\n", md(l)));
            }
            if classes.len() > PER_CLASS_SHOWN {
                m.push_str(&format!(
                    "\n({} more classes in the HTML report.)\n",
                    classes.len() - PER_CLASS_SHOWN
                ));
            }
        }
        let suites: Vec<&(String, String, u64, f64)> = self
            .detail
            .slices
            .iter()
            .filter(|s| s.0.starts_with("suite"))
            .collect();
        if !suites.is_empty() {
            m.push_str(
                "\n## Suites\n\n| suite or tag | value | n | score |\n|---|---|---:|---:|\n",
            );
            for (k, v, n, a) in suites {
                m.push_str(&format!("| {} | {} | {n} | {a:.4} |\n", md(k), md(v)));
            }
        }
        m
    }
}

/// Classes the terminal summary lists (the HTML report lists all).
const PER_CLASS_SHOWN: usize = 10;

impl ChosenDetail {
    /// `(class, precision, recall, F1, support)` from the confusion matrix, weakest F1 first;
    /// classes without test records are left out.
    pub fn per_class(&self) -> Vec<(String, f64, f64, f64, u64)> {
        let m = &self.confusion;
        let n = m.len().min(self.labels.len());
        let mut out: Vec<(String, f64, f64, f64, u64)> = (0..n)
            .filter_map(|i| {
                let support: u64 = m[i].iter().sum();
                if support == 0 {
                    return None;
                }
                let tp = m[i].get(i).copied().unwrap_or(0) as f64;
                let predicted: u64 = m.iter().map(|row| row.get(i).copied().unwrap_or(0)).sum();
                let p = if predicted == 0 {
                    0.0
                } else {
                    tp / predicted as f64
                };
                let r = tp / support as f64;
                let f = if p + r == 0.0 {
                    0.0
                } else {
                    2.0 * p * r / (p + r)
                };
                Some((self.labels[i].clone(), p, r, f, support))
            })
            .collect();
        out.sort_by(|a, b| a.3.total_cmp(&b.3));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_print_in_the_unit_that_reads_best() {
        assert_eq!(latency(12.0), "12.0 µs");
        assert_eq!(latency(39_471.9), "39.47 ms");
        assert_eq!(latency(890_000.0), "0.89 s");
    }

    #[test]
    fn run_report_has_gates_models_and_charts() {
        let iv = |e, l, h| Interval {
            estimate: Some(e),
            lo: Some(l),
            hi: Some(h),
        };
        let r = RunReport {
            names: MetricNames::CLASSIFY,
            task: "t",
            runs: vec![ModelLine {
                id: "abc",
                name: "ngram",
                accuracy: iv(0.9, 0.85, 0.95),
                macro_f1: iv(0.8, 0.7, 0.9),
                ece: Some(0.05),
                dev_macro_f1: Some(0.81),
                p95_latency_us: Some(12.0),
                train_seconds: Some(0.5),
                cost_per_1k_usd: None,
                dev_folded: true,
            }],
            chosen: 0,
            detail: ChosenDetail {
                labels: vec!["a".into(), "b".into()],
                confusion: vec![vec![9, 1], vec![1, 9]],
                curves: vec![("dev macro-F1, l2=1.0".into(), vec![0.7, 0.8])],
                ece: Some(0.05),
                reliability: vec![(0.9, 0.88, 10)],
                slices: vec![
                    ("source".into(), "s".into(), 20, 0.9),
                    ("suite tag".into(), "unsafe".into(), 3, 1.0),
                ],
            },
            gates: vec![GateLine {
                metric: "accuracy".into(),
                rule: ">= 0.95".into(),
                value: Some(0.9),
                pass: false,
                note: String::new(),
            }],
            comparisons: vec![ComparisonLine {
                what: "ngram vs majority".into(),
                delta: 0.4,
                lo: 0.3,
                hi: 0.5,
                p_value: 0.001,
                verdict: "significantly better".into(),
            }],
            graders: vec![GraderLine {
                model: "lora".into(),
                grader: "house_rules".into(),
                pass_rate: iv(0.5, 0.4, 0.6),
                mean: iv(0.7, 0.65, 0.75),
                errors: 2,
            }],
            split_counts: [("train".to_string(), 70)].into_iter().collect(),
            reward_training: vec![RewardCurve {
                model: "grpo".into(),
                reward: "house_rules".into(),
                steps: (0..30)
                    .map(|i| RewardPoint {
                        reward_mean: i as f64 / 30.0,
                        seconds: 2.0,
                        ..Default::default()
                    })
                    .collect(),
                notes: vec!["ran every step".into()],
            }],
            distillation: vec!["student learned from teacher".into()],
            preference_training: vec![PreferenceLine {
                model: "dpo".into(),
                summary: "40 pairs".into(),
                before: Some((0.5, 0.0, std::f64::consts::LN_2)),
                after: Some((0.875, 0.31, 0.52)),
            }],
            chosen_by: Some("Chosen by `[task] select_by`: best dev pass rate of grader `house_rules`. Dev scores: lora 0.5000.".into()),
        };
        let html = r.html();
        assert!(html.contains("<p>Chosen by `[task] select_by`: best dev pass rate of grader `house_rules`. Dev scores: lora 0.5000.</p>"), "{html}");
        assert!(
            html.contains("FAILED")
                && html.contains("0.9000 [0.8500, 0.9500]")
                && html.matches("<svg").count() == 4,
            "{html}"
        );
        assert!(html.contains("unsafe"));
        let md = r.markdown();
        assert!(
            md.contains("| accuracy | >= 0.95 | 0.9000 | **fail** |"),
            "{md}"
        );
        assert!(md.contains("significantly better"));
        assert!(
            md.contains(
                "| lora | house_rules | 0.5000 [0.4000, 0.6000] | 0.7000 [0.6500, 0.7500] | 2 |"
            ),
            "{md}"
        );
        assert!(html.contains("Graders on the test answers") && html.contains("house_rules"));
        assert!(
            md.contains("## Distillation\n\n- student learned from teacher"),
            "{md}"
        );
        assert!(
            md.contains("## Preference training: dpo")
                && md.contains("| before (the start model) | 0.5000 | 0.0000 | 0.6931 |")
                && md.contains("| after (weights kept) | 0.8750 | 0.3100 | 0.5200 |"),
            "{md}"
        );
        // The reward curve: a chart, at most 12 rows (every third step of 30, and the last), the notes.
        assert!(html.contains("Reward training: grpo") && html.contains("ran every step"));
        assert!(
            md.contains("30 steps on grader `house_rules`; 2.00 s per step"),
            "{md}"
        );
        assert!(
            md.contains("| 1 | 0.0000 |") && md.contains("| 30 | 0.9667 |"),
            "{md}"
        );
        assert_eq!(
            md.matches("| 0.0000 | 0.00 | 0.00 | - | 0.0 | 2.00 |")
                .count(),
            11,
            "{md}"
        );
        assert!(
            md.contains("ngram †") && md.contains("† refitted on train + dev"),
            "{md}"
        );
        assert!(!md.contains("No model has a dev score"), "{md}");
        // Two models without dev scores: the report says the choice was the list's order.
        let mut no_dev = r;
        no_dev.runs[0].dev_macro_f1 = None;
        let mut second = no_dev.runs[0].clone();
        second.name = "lora";
        no_dev.runs.push(second);
        assert!(no_dev.markdown().contains("No model has a dev score"));
        assert!(no_dev.html().contains("No model has a dev score"));
    }

    #[test]
    fn per_class_scores_come_from_the_confusion_matrix_weakest_first() {
        let d = ChosenDetail {
            labels: vec!["a".into(), "b".into(), "c".into()],
            // true a: 8 right, 2 as b; true b: 5 right; c: no test records.
            confusion: vec![vec![8, 2, 0], vec![0, 5, 0], vec![0, 0, 0]],
            ..Default::default()
        };
        let pc = d.per_class();
        assert_eq!(pc.len(), 2);
        // b: precision 5/7, recall 1; a: precision 1, recall 0.8.
        assert_eq!(pc[0].0, "b");
        assert!((pc[0].1 - 5.0 / 7.0).abs() < 1e-12 && pc[0].2 == 1.0);
        assert!((pc[1].3 - 2.0 * 0.8 / 1.8).abs() < 1e-12);
        assert_eq!(pc[1].4, 10);
    }
}
