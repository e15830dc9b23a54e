//! `hone card`: a model card assembled from one run's record, its dataset version, split and stored
//! predictions (nothing typed by hand but the `[task]` text), written as `reports/card-RUN.md` and a
//! self-contained `reports/card-RUN.html`.

use std::collections::HashMap;
use std::path::PathBuf;

use hone_core::Result;
use hone_core::decide::DecisionRule;
use hone_report::card::{Card, Metric, Source, f4};
use hone_store::Store;
use serde::Serialize;

use crate::project::Project;
use crate::record::{Estimate, Predictions, Run, SliceTable};
use crate::reports::clip;

/// Where `hone card` wrote the card.
#[derive(Debug, Clone, Serialize)]
pub struct CardWritten {
    pub run: String,
    pub markdown: PathBuf,
    pub html: PathBuf,
}

fn metric(name: &str, hf: &str, e: &Estimate) -> Option<Metric> {
    Some(Metric {
        name: name.into(),
        hf_type: hf.into(),
        value: e.estimate?,
        lo: e.lo,
        hi: e.hi,
    })
}

/// `[factor, value, n, score]` rows of the slice tables, weakest first.
fn slice_rows(tables: &[(&str, &SliceTable)]) -> Vec<Vec<String>> {
    let mut rows: Vec<(f64, Vec<String>)> = Vec::new();
    for (factor, t) in tables {
        for (value, s) in t.iter() {
            rows.push((
                s.accuracy,
                vec![
                    factor.to_string(),
                    value.clone(),
                    s.n.to_string(),
                    f4(s.accuracy),
                ],
            ));
        }
    }
    rows.sort_by(|a, b| a.0.total_cmp(&b.0));
    rows.into_iter().map(|(_, r)| r).collect()
}

fn decision_text(rule: &DecisionRule, labels: &[String]) -> String {
    match *rule {
        DecisionRule::Argmax => "the most probable label; the model never abstains.".into(),
        DecisionRule::Abstain { below } => format!(
            "the most probable label, or `abstain` when its probability is below {} (chosen on dev).",
            f4(below)
        ),
        DecisionRule::Binary {
            positive,
            threshold,
        } => format!(
            "`{}` when its probability reaches {} (chosen on dev), else the other label.",
            labels.get(positive).map_or("?", String::as_str),
            f4(threshold)
        ),
    }
}

/// The card for `run`, every figure read from what hone stored.
pub fn build(project: &Project, store: &Store, run: &Run) -> Result<Card> {
    let task = &project.config.task;
    let rec = &run.record;
    let params = &run.config.params;
    let text = |k: &str| params.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let version = store.resolve_version(Some(&run.version))?;
    let info = crate::curate::version_info(&version)?;
    let split = crate::split_stage::summary(store, &run.split)?;
    let masker = crate::input::TextPrep::for_policy(&project.config.policy);
    let records = crate::curate::load_records(store, &version)?;
    let by_id: HashMap<&str, &hone_core::Record> =
        records.iter().map(|r| (r.id.as_str(), r)).collect();
    let predictions = Predictions::load(store, run)?;

    let mut card = Card {
        task: task.name.clone(),
        model: run.model.clone(),
        run: run.id.clone(),
        run_seq: run.seq,
        created_at: run.created_at.clone(),
        hone_version: run.hone_version.clone(),
        method: text("method").map_or_else(
            || run.config.kind.clone(),
            |m| format!("{} ({m})", run.config.kind),
        ),
        base_model: text("path").map(|p| {
            let p = std::path::Path::new(&p);
            p.file_stem()
                .map_or_else(|| p.display().to_string(), |s| s.to_string_lossy().into())
        }),
        license: task.license.clone(),
        owner: task.owner.clone(),
        description: task.description.clone(),
        intended_use: task.intended_use.clone(),
        out_of_scope: task.out_of_scope.clone(),
        data_version: version.id.clone(),
        split: run.split.clone(),
        counts: [rec.n.train, rec.n.dev, rec.n.test, rec.n.suites],
        ..Default::default()
    };
    card.sources = info
        .sources
        .iter()
        .map(|s| Source {
            name: s.name.clone(),
            role: format!("{:?}", s.role).to_lowercase(),
            license: s.license.clone(),
            collected: s.collected.clone(),
            rows: s.n_rows as usize,
            quarantined: s.n_quarantined as usize,
            kept: s.n_kept as usize,
        })
        .collect();
    let policy = &project.config.policy;
    card.consent = format!(
        "Personal data: {} ({}); consent {}.",
        match policy.pii {
            hone_core::config::PiiPolicy::Mask => "detected values masked with typed placeholders",
            hone_core::config::PiiPolicy::Drop => "records with detected values dropped",
            hone_core::config::PiiPolicy::Fail => "curation stops on any detected value",
        },
        policy
            .pii_types
            .iter()
            .map(|t| serde_json::to_value(t)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("{t:?}")))
            .collect::<Vec<_>>()
            .join(", "),
        if policy.require_consent {
            "required: records without it are removed"
        } else {
            "not required by the project's policy"
        }
    );
    card.funnel = info
        .passes
        .iter()
        .map(crate::reports::funnel_counts)
        .collect();
    card.leak_check = if split.contamination.is_empty() {
        "clean: no test record matches a training record (exact text, near duplicate or shared long n-grams).".into()
    } else {
        format!(
            "{} test/train pair(s) found; {} training record(s) removed as the remedy.",
            split.contamination.len(),
            split.dropped_train
        )
    };
    card.suites = rec
        .suites
        .by_suite
        .iter()
        .map(|(k, s)| (format!("suite {k}"), s))
        .chain(
            rec.suites
                .by_tag
                .iter()
                .map(|(k, s)| (format!("tag {k}"), s)),
        )
        .map(|(k, s)| vec![k, s.n.to_string(), f4(s.accuracy)])
        .collect();
    let w = &rec.train;
    card.cost = vec![
        (
            "training wall time".into(),
            format!("{:.1} s", w.wall_seconds),
        ),
        (
            "training CPU time".into(),
            format!("{:.1} s", w.cpu_seconds),
        ),
    ];
    // Small amounts in scientific notation, as the run report shows them, never as $0.0000.
    let usd = |x: f64| {
        if x != 0.0 && x.abs() < 1e-4 {
            format!("${x:.2e}")
        } else {
            format!("${x:.4}")
        }
    };
    if let Some(x) = rec.cost.train_usd {
        card.cost.push(("training cost".into(), usd(x)));
    }
    if let Some(x) = rec.cost.per_1k_predictions_usd {
        card.cost.push(("per 1,000 predictions".into(), usd(x)));
    }
    for (name, v) in [
        ("latency p50", rec.latency_us.p50),
        ("latency p95", rec.latency_us.p95),
        ("latency mean", rec.latency_us.mean),
    ] {
        if let Some(us) = v {
            let shown = if us < 1000.0 {
                format!("{us:.1} µs")
            } else {
                format!("{:.1} ms", us / 1000.0)
            };
            card.cost.push((name.into(), shown));
        }
    }
    let short = hone_core::hash::short(&run.id).to_string();
    card.reproduce = vec![
        format!(
            "hone data clean   # dataset version {}",
            hone_core::hash::short(&version.id)
        ),
        format!(
            "hone split        # split {}",
            hone_core::hash::short(&run.split)
        ),
        format!(
            "hone run          # `{}` as run {short} (cached while nothing changed)",
            run.model
        ),
        format!("hone card {short}"),
    ];
    match &rec.generation {
        None => classification(&mut card, run, &predictions, &by_id, &masker),
        Some(g) => {
            card.pipeline = "text-generation".into();
            card.metrics = [
                metric("ROUGE-L", "rouge", &g.test.rouge_l),
                metric("chrF", "chrf", &g.test.chrf),
                metric("exact match", "exact_match", &g.test.exact_match),
            ]
            .into_iter()
            .flatten()
            .collect();
            card.decision = format!(
                "generated text under the run's chat template and generation settings; models are ranked by {}.",
                match task.select_by() {
                    hone_core::config::SelectBy::RougeL => "dev ROUGE-L".to_string(),
                    hone_core::config::SelectBy::Grader { name, mean } => format!(
                        "grader `{name}`'s dev {} (`[task] select_by`)",
                        if mean { "mean reward" } else { "pass rate" }
                    ),
                }
            );
            card.slices = slice_rows(&[
                ("source", &g.slices.source),
                ("topic", &g.slices.topic),
                ("tag", &g.slices.tag),
            ]);
            if let Some(s) = g.test.stopped_share {
                card.limits.push(format!(
                    "{} of test answers ended on their own; the rest were cut at the token limit.",
                    f4(s)
                ));
            }
            interval_limit(&mut card, g.test.n, "prompts", "ROUGE-L", &g.test.rouge_l);
            weakest_slice(&mut card);
            let mut scored: Vec<(f64, &crate::record::GeneratedPrediction)> = predictions
                .generated
                .iter()
                .filter_map(|p| {
                    let r = p.reference.as_deref()?;
                    Some((hone_eval::text::rouge_l(&p.completion, r), p))
                })
                .collect();
            scored.sort_by(|a, b| a.0.total_cmp(&b.0));
            card.failures.0 = ["id", "prompt", "reference", "answer", "ROUGE-L"]
                .map(String::from)
                .to_vec();
            card.failures.1 = scored
                .iter()
                .take(3)
                .map(|(s, p)| {
                    let prompt = by_id.get(p.id.as_str()).map_or("", |r| r.text.as_str());
                    vec![
                        p.id.clone(),
                        clip(&masker.mask(prompt), 160),
                        clip(&masker.mask(p.reference.as_deref().unwrap_or("")), 160),
                        clip(&masker.mask(&p.completion), 160),
                        f4(*s),
                    ]
                })
                .collect();
        }
    }
    Ok(card)
}

/// How well the test set pins the headline metric down, as a limit.
fn interval_limit(card: &mut Card, n: usize, items: &str, metric: &str, e: &Estimate) {
    if let (Some(l), Some(h)) = (e.lo, e.hi) {
        card.limits.push(format!(
            "With {n} test {items}, test {metric} is known to within [{}, {}].",
            f4(l),
            f4(h)
        ));
    }
}

/// The worst slice with at least 10 records, against the overall score, as a limit.
fn weakest_slice(card: &mut Card) {
    let overall = card.metrics.first().map(|m| m.value);
    if let (Some(row), Some(all)) = (
        card.slices
            .iter()
            .find(|r| r[2].parse::<u64>().is_ok_and(|n| n >= 10)),
        overall,
    ) && row[3].parse::<f64>().ok() < f4(all).parse::<f64>().ok()
    {
        card.limits.push(format!(
            "Weakest slice with at least 10 test records: {} `{}` scores {} on {} records, against {} overall.",
            row[0],
            row[1],
            row[3],
            row[2],
            f4(all)
        ));
    }
}

fn classification(
    card: &mut Card,
    run: &Run,
    predictions: &Predictions,
    by_id: &HashMap<&str, &hone_core::Record>,
    masker: &crate::input::TextPrep,
) {
    let rec = &run.record;
    card.pipeline = "text-classification".into();
    card.metrics = [
        metric("accuracy", "accuracy", &rec.test.accuracy),
        metric("macro-F1", "f1", &rec.test.macro_f1),
    ]
    .into_iter()
    .flatten()
    .collect();
    card.decision = decision_text(&rec.decision, &rec.labels);
    let mut classes: Vec<(f64, Vec<String>)> = rec
        .test
        .per_class
        .iter()
        .zip(&rec.labels)
        .filter(|(c, _)| c.support > 0)
        .map(|(c, l)| {
            (
                c.f1,
                vec![
                    l.clone(),
                    f4(c.precision),
                    f4(c.recall),
                    f4(c.f1),
                    c.support.to_string(),
                ],
            )
        })
        .collect();
    classes.sort_by(|a, b| a.0.total_cmp(&b.0));
    if classes.iter().all(|(f1, _)| *f1 >= 1.0) {
        let support: Vec<u64> = classes
            .iter()
            .filter_map(|(_, r)| r[4].parse().ok())
            .collect();
        card.limits.push(format!(
            "No test error in any class; with {} to {} test records per class, rarer inputs are untested.",
            support.iter().min().unwrap_or(&0),
            support.iter().max().unwrap_or(&0),
        ));
    } else if !classes.is_empty() {
        let weakest: Vec<String> = classes
            .iter()
            .filter(|(f1, _)| *f1 < 1.0)
            .take(3)
            .map(|(_, r)| format!("`{}` (F1 {}, {} test records)", r[0], r[3], r[4]))
            .collect();
        card.limits
            .push(format!("Weakest classes: {}.", weakest.join(", ")));
    }
    card.per_class = classes.into_iter().map(|(_, r)| r).collect();
    card.slices = slice_rows(&[
        ("source", &rec.slices.source),
        ("topic", &rec.slices.topic),
        ("tag", &rec.slices.tag),
    ]);
    weakest_slice(card);
    if let Some(e) = rec.test.ece {
        card.limits.push(format!(
            "Calibration: expected calibration error {} on the test set (0 = confidences match accuracy).",
            f4(e)
        ));
    }
    card.limits.push(match &rec.abstain {
        Some(a) => format!(
            "Abstains below confidence {}: it answers {} of test inputs and returns `abstain` for the rest.",
            f4(a.threshold),
            f4(a.test_coverage)
        ),
        None => "Never abstains: every input gets one of the trained labels, including inputs unlike anything it was trained on.".into(),
    });
    interval_limit(card, rec.test.n, "records", "accuracy", &rec.test.accuracy);
    let mut wrong: Vec<&crate::record::TestPrediction> = predictions
        .test
        .iter()
        .filter(|p| p.gold.as_deref().is_some_and(|g| g != p.predicted))
        .collect();
    // The most confident mistakes first: what a user would trust and should not.
    wrong.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    card.failures.0 = ["id", "text", "label", "predicted", "confidence"]
        .map(String::from)
        .to_vec();
    card.failures.1 = wrong
        .iter()
        .take(5)
        .map(|p| {
            let text = by_id.get(p.id.as_str()).map_or("", |r| r.text.as_str());
            vec![
                p.id.clone(),
                clip(&masker.mask(text), 160),
                p.gold.clone().unwrap_or_default(),
                p.predicted.clone(),
                f4(p.confidence),
            ]
        })
        .collect();
}

/// Build the card and write `reports/card-RUN.md` and `reports/card-RUN.html` (RUN: the short run
/// id), atomically.
pub fn write(project: &Project, store: &Store, run: &Run) -> Result<CardWritten> {
    let card = build(project, store, run)?;
    let dir = project.root.join("reports");
    let short = hone_core::hash::short(&run.id);
    let markdown = dir.join(format!("card-{short}.md"));
    let html = dir.join(format!("card-{short}.html"));
    crate::reports::write_atomic(&markdown, card.markdown().as_bytes())?;
    crate::reports::write_atomic(&html, card.html().as_bytes())?;
    Ok(CardWritten {
        run: run.id.clone(),
        markdown,
        html,
    })
}
