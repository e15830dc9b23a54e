//! Report assembly: the data report of a version and the run report of a `hone run`, built from typed
//! records and written atomically into `reports/` (rendering itself is `hone-report`'s).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use hone_core::{Error, Result};
use hone_report::run::{ChosenDetail, ComparisonLine, GateLine, Interval, ModelLine, RunReport};
use hone_store::{Store, VersionRow};

use crate::curate;
use crate::project::Project;
use crate::record::{self, Estimate, Run};
use crate::run_stage::RunOutcome;
use crate::scan::Suspect;

/// Render rows as an aligned plain-text table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    out.push_str(&line(widths.iter().map(|w| "-".repeat(*w)).collect()));
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn funnel_rows(passes: &[hone_data::passes::PassReport]) -> Vec<Vec<String>> {
    passes
        .iter()
        .map(|p| {
            let stats = p
                .stats
                .iter()
                .filter(|(_, v)| **v != 0)
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            let mut row = funnel_counts(p);
            row.push(clip(&stats, 70));
            row
        })
        .collect()
}

/// One pass's counts as table cells: pass, in, kept, dropped, changed, flagged (the data report's
/// funnel and the model card's).
pub fn funnel_counts(p: &hone_data::passes::PassReport) -> Vec<String> {
    vec![
        p.pass.clone(),
        p.n_in.to_string(),
        p.n_kept.to_string(),
        p.n_dropped.to_string(),
        p.n_changed.to_string(),
        p.n_flagged.to_string(),
    ]
}

const FUNNEL_HEADERS: [&str; 7] = [
    "pass", "in", "kept", "dropped", "changed", "flagged", "details",
];

/// The curation funnel (one row per pass: in, kept, dropped, changed, flagged, its counts) as a table.
pub fn funnel_table(passes: &[hone_data::passes::PassReport]) -> String {
    table(&FUNNEL_HEADERS, &funnel_rows(passes))
}

/// At most `n` characters of `s`, with `…` when cut.
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n.saturating_sub(1)).collect::<String>() + "…"
    }
}

/// Write through a temporary file and a rename, so a reader never sees half a report.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    // A name of its own: two commands may write the same report at once.
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// The data report of a version, rendered: the HTML page, its body alone (for the dashboard) and
/// the Markdown.
pub struct DataReportPages {
    pub html: String,
    pub body: String,
    pub markdown: String,
}

/// Build and write the data report of a version (HTML at `out`, else `reports/data-ID.html`, plus
/// Markdown beside it); returns the HTML path and the Markdown.
pub fn write_data_report(
    project: &Project,
    store: &Store,
    v: &VersionRow,
    out: Option<PathBuf>,
) -> Result<(PathBuf, String)> {
    let pages = data_report(project, store, v)?;
    let html_path = out.unwrap_or_else(|| {
        project
            .root
            .join("reports")
            .join(format!("data-{}.html", hone_core::hash::short(&v.id)))
    });
    write_atomic(&html_path, pages.html.as_bytes())?;
    write_atomic(&html_path.with_extension("md"), pages.markdown.as_bytes())?;
    Ok((html_path, pages.markdown))
}

/// Build the data report of a version from what the store recorded.
pub fn data_report(project: &Project, store: &Store, v: &VersionRow) -> Result<DataReportPages> {
    use hone_core::config::SourceRole;
    use hone_report::data::{DataReport, Example, PassLine, SourceLine};
    let info = curate::version_info(v)?;
    let passes = info
        .passes
        .into_iter()
        .map(|p| PassLine {
            pass: p.pass,
            n_in: p.n_in,
            n_kept: p.n_kept,
            n_dropped: p.n_dropped,
            n_changed: p.n_changed,
            n_flagged: p.n_flagged,
            stats: p.stats,
        })
        .collect();
    let sources = info
        .sources
        .into_iter()
        .map(|s| SourceLine {
            role: match s.role {
                SourceRole::Train => "train",
                SourceRole::Test => "test",
                SourceRole::Feedback => "feedback",
            }
            .into(),
            name: s.name,
            path: s.path,
            license: s.license,
            collected: s.collected,
            as_of: s.as_of,
            owner: s.owner,
            n_rows: s.n_rows,
            n_quarantined: s.n_quarantined,
            n_kept: s.n_kept,
            notes: s.notes,
        })
        .collect();
    let lineage = store.lineage(&v.id)?;
    let removed = curate::load_removed(store, v)?;
    let removed_text: HashMap<&str, &str> = removed
        .iter()
        .map(|r| (r.id.as_str(), r.text.as_str()))
        .collect();
    let mut examples = Vec::new();
    let mut per_rule: BTreeMap<(String, String), usize> = BTreeMap::new();
    for l in &lineage {
        let n = per_rule
            .entry((l.pass.clone(), l.rule.clone()))
            .or_default();
        if *n >= 3 {
            continue;
        }
        *n += 1;
        let text = l
            .diff
            .clone()
            .or_else(|| {
                removed_text
                    .get(l.record_id.as_str())
                    .map(|s| s.to_string())
            })
            .unwrap_or_default();
        examples.push(Example {
            pass: l.pass.clone(),
            rule: l.rule.clone(),
            record_id: l.record_id.clone(),
            source: l.source.clone(),
            reason: l.reason.clone(),
            text: clip(&text, 240),
        });
    }
    let quarantine = store
        .quarantine(&v.id)?
        .into_iter()
        .take(50)
        .map(|q| Example {
            pass: "read".into(),
            rule: q.field.clone(),
            record_id: format!("{}:{}", q.file, q.line),
            source: q.source.clone(),
            reason: q.reason.clone(),
            text: q.excerpt.clone(),
        })
        .collect();
    let suspects = match store.latest_scan()? {
        Some(scan) if scan.version == v.id => {
            let list: Vec<Suspect> = crate::scan::load_suspects(store, &scan)?;
            let text_of: HashMap<String, String> = curate::load_records(store, v)?
                .into_iter()
                .map(|r| (r.id, r.text))
                .collect();
            list.into_iter()
                .take(50)
                .map(|x| Example {
                    pass: x.kind.clone(),
                    rule: format!(
                        "{} → {}",
                        x.label,
                        x.suggested_label.as_deref().unwrap_or("-")
                    ),
                    source: String::new(),
                    reason: x.evidence.clone(),
                    text: clip(text_of.get(&x.id).map(String::as_str).unwrap_or(""), 200),
                    record_id: x.id,
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let report = DataReport {
        task: &project.config.task.name,
        version_id: &v.id,
        created_at: &v.created_at,
        parent: v.parent.as_deref(),
        n_input: v.n_input,
        n_records: v.n_records,
        n_quarantined: v.n_quarantined,
        passes,
        sources,
        by_label: info.summary.by_label,
        by_topic: info.summary.by_topic,
        pii: info.summary.pii,
        examples,
        quarantine,
        suspects,
    };
    Ok(DataReportPages {
        html: report.html(),
        body: report.body(),
        markdown: report.markdown(),
    })
}

fn comparison_line(what: String, c: &crate::compare::Comparison) -> ComparisonLine {
    ComparisonLine {
        what,
        delta: c.accuracy.delta,
        lo: c.accuracy.lo,
        hi: c.accuracy.hi,
        p_value: c.mcnemar.p_value,
        verdict: c.verdict_text().into(),
    }
}

/// Paired comparisons for the report: each model vs majority, and vs its previous run.
pub fn comparisons(store: &Store, out: &RunOutcome) -> Result<Vec<ComparisonLine>> {
    let mut lines = Vec::new();
    let all = record::all(store)?;
    let baseline = &out.runs[0].run;
    if baseline.record.generation.is_some() {
        let line = |what: String, c: &crate::compare::TextComparison| ComparisonLine {
            what,
            delta: c.rouge_l.delta,
            lo: c.rouge_l.lo,
            hi: c.rouge_l.hi,
            p_value: c.rouge_l.p_value,
            verdict: c.verdict_text().into(),
        };
        for r in out.runs.iter().skip(1).map(|m| &m.run) {
            let c = crate::compare::compare_texts(store, baseline, r, 7, &[])?;
            lines.push(line(format!("{} vs {}", r.model, baseline.model), &c));
            if let Some(prev) = all.iter().rfind(|x| x.model == r.model && x.seq < r.seq)
                && let Ok(c) = crate::compare::compare_texts(store, prev, r, 7, &[])
            {
                lines.push(line(
                    format!("{} vs its previous run #{}", r.model, prev.seq),
                    &c,
                ));
            }
        }
        return Ok(lines);
    }
    for r in out.runs.iter().skip(1).map(|m| &m.run) {
        let c = crate::compare::compare(store, baseline, r, 7)?;
        lines.push(comparison_line(format!("{} vs majority", r.model), &c));
        if let Some(prev) = all.iter().rfind(|x| x.model == r.model && x.seq < r.seq)
            && let Ok(c) = crate::compare::compare(store, prev, r, 7)
        {
            lines.push(comparison_line(
                format!("{} vs its previous run #{}", r.model, prev.seq),
                &c,
            ));
        }
    }
    Ok(lines)
}

fn interval(e: &Estimate) -> Interval {
    Interval {
        estimate: e.estimate,
        lo: e.lo,
        hi: e.hi,
    }
}

fn model_line(r: &Run) -> ModelLine<'_> {
    let rec = &r.record;
    if let Some(g) = &rec.generation {
        return ModelLine {
            id: &r.id,
            name: &r.model,
            accuracy: interval(&g.test.rouge_l),
            macro_f1: interval(&g.test.chrf),
            ece: g.test.exact_match.estimate,
            dev_macro_f1: g.dev.rouge_l.estimate,
            p95_latency_us: rec.latency_us.mean,
            train_seconds: Some(rec.train.wall_seconds),
            cost_per_1k_usd: rec.cost.per_1k_predictions_usd,
            dev_folded: false,
        };
    }
    ModelLine {
        id: &r.id,
        name: &r.model,
        accuracy: interval(&rec.test.accuracy),
        macro_f1: interval(&rec.test.macro_f1),
        ece: rec.test.ece,
        dev_macro_f1: rec.dev.macro_f1.estimate,
        p95_latency_us: rec.latency_us.p95,
        train_seconds: Some(rec.train.wall_seconds),
        cost_per_1k_usd: rec.cost.per_1k_predictions_usd,
        dev_folded: rec.train.dev_folded,
    }
}

/// The chosen model's confusion, learning curves, reliability and slices.
fn chosen_detail(r: &Run) -> ChosenDetail {
    let rec = &r.record;
    let mut curves: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for e in &rec.train.epochs {
        let l2 = serde_json::to_string(&e.l2).unwrap_or_default();
        curves
            .entry(format!("dev macro-F1, l2={l2}"))
            .or_default()
            .push(e.dev_macro_f1);
    }
    let mut slices = Vec::new();
    let own = rec.generation.as_ref().map_or(&rec.slices, |g| &g.slices);
    for (kind, table) in [
        ("source", &own.source),
        ("topic", &own.topic),
        ("tag", &own.tag),
        ("suite", &rec.suites.by_suite),
        ("suite tag", &rec.suites.by_tag),
    ] {
        for (k, v) in table {
            slices.push((kind.to_string(), k.clone(), v.n, v.accuracy));
        }
    }
    ChosenDetail {
        labels: rec.labels.clone(),
        confusion: rec.test.confusion.clone(),
        curves: curves.into_iter().collect(),
        ece: rec.test.ece,
        reliability: rec
            .test
            .reliability
            .iter()
            .map(|b| (b.mean_confidence, b.accuracy, b.count))
            .collect(),
        slices,
    }
}

/// Write the HTML and Markdown run report of `out` (`reports/run-ID.html`, ID of the chosen run);
/// returns the HTML path and the Markdown.
/// A GRPO run's reward curve for the report.
fn reward_curve(run: &crate::record::Run) -> Option<hone_report::run::RewardCurve> {
    let crate::record::TrainReport::Lm(l) = &run.record.train.report else {
        return None;
    };
    let g = l.grpo.as_ref()?;
    let mut notes: Vec<String> = l.ending().into_iter().collect();
    notes.extend(g.warnings.iter().cloned());
    if g.reward_errors > 0 {
        notes.push(format!(
            "{} completion(s) the grader could not score got reward 0",
            g.reward_errors
        ));
    }
    Some(hone_report::run::RewardCurve {
        model: run.model.clone(),
        reward: g.reward.clone(),
        steps: g
            .steps
            .iter()
            .map(|s| hone_report::run::RewardPoint {
                reward_mean: s.reward_mean,
                reward_std: s.reward_std,
                frac_reward_zero_std: s.frac_reward_zero_std,
                clipped_ratio: s.clipped_ratio,
                kl: s.kl,
                completion_length: s.completion_length,
                seconds: s.generate_seconds + s.reward_seconds + s.train_seconds,
            })
            .collect(),
        notes,
    })
}

/// A distilled language model in one sentence.
fn distillation_line(out: &RunOutcome, i: usize) -> Option<String> {
    let run = &out.runs[i].run;
    let crate::record::TrainReport::Lm(l) = &run.record.train.report else {
        return None;
    };
    let d = l.distill.as_ref()?;
    let f = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.4}"));
    // ROUGE-L can keep a teacher's phrasing while losing what a grader asks for (a reward-trained
    // teacher's goal): the same ratio on every grader's test pass rate.
    let teacher = out.runs.iter().rposition(|m| m.run.model == d.teacher);
    let graded: Vec<String> = match (out.graders.get(i), teacher.and_then(|t| out.graders.get(t))) {
        (Some(s), Some(t)) => s
            .iter()
            .filter_map(|(name, g)| {
                let (gs, gt) = (g.pass_rate.estimate?, t.get(name)?.pass_rate.estimate?);
                Some(format!(
                    "grader `{name}` pass rate {} ({gs:.4} / {gt:.4})",
                    f((gt > 0.0).then(|| gs / gt))
                ))
            })
            .collect(),
        _ => Vec::new(),
    };
    let graded = if graded.is_empty() {
        String::new()
    } else {
        format!("; retention of {}", graded.join(", "))
    };
    Some(format!(
        "`{}` learned from `{}` ({}): retention {} (test ROUGE-L, student / teacher){graded}, speed-up {}× (generated tokens/s){}",
        run.model,
        d.teacher,
        if d.mode == "token" {
            format!("token-level KL at T = {}, alpha {}", d.temperature, d.alpha)
        } else {
            "sequence-level: trained on the teacher's answers to the training prompts".to_string()
        },
        f(d.retention),
        f(d.speedup),
        d.teacher_answer_seconds
            .map(|s| format!("; the teacher answered in {s:.1} s"))
            .unwrap_or_default()
    ))
}

/// A DPO run's pairs and held-out preference accuracy for the report.
fn preference_line(run: &crate::record::Run) -> Option<hone_report::run::PreferenceLine> {
    let crate::record::TrainReport::Lm(l) = &run.record.train.report else {
        return None;
    };
    let d = l.dpo.as_ref()?;
    let triple = |s: &Option<hone_lm::dpo::PairScore>| s.map(|s| (s.accuracy, s.margin, s.loss));
    Some(hone_report::run::PreferenceLine {
        model: run.model.clone(),
        summary: format!(
            "{} pairs from `{}`: {} trained on, {} held out, {} dropped (prompt in dev or test), {} unusable; beta {}; {} steps{}",
            d.pairs_read,
            d.preferences,
            d.pairs_train,
            d.pairs_heldout,
            d.dropped_eval_prompts,
            d.dropped_unusable,
            d.beta,
            d.steps.len(),
            d.start_from
                .as_deref()
                .map(|s| format!(", continuing `{s}`"))
                .unwrap_or_default()
        ),
        before: triple(&d.before),
        after: triple(&d.after),
    })
}

pub fn write_run_report(
    project: &Project,
    store: &Store,
    out: &RunOutcome,
) -> Result<(PathBuf, String)> {
    let chosen = out.chosen();
    let generate = chosen.record.generation.is_some();
    let report = RunReport {
        task: &project.config.task.name,
        names: if generate {
            hone_report::run::MetricNames::GENERATE
        } else {
            hone_report::run::MetricNames::CLASSIFY
        },
        runs: out.runs.iter().map(|m| model_line(&m.run)).collect(),
        chosen: out.chosen,
        detail: chosen_detail(chosen),
        gates: out
            .gates
            .iter()
            .map(|g| GateLine {
                metric: g.metric.clone(),
                rule: g.rule.clone(),
                value: g.value,
                pass: g.pass,
                note: g.note.clone(),
            })
            .collect(),
        comparisons: comparisons(store, out)?,
        reward_training: out
            .runs
            .iter()
            .filter_map(|m| reward_curve(&m.run))
            .collect(),
        preference_training: out
            .runs
            .iter()
            .filter_map(|m| preference_line(&m.run))
            .collect(),
        distillation: out
            .runs
            .iter()
            .enumerate()
            .filter_map(|(i, _)| distillation_line(out, i))
            .collect(),
        graders: out
            .runs
            .iter()
            .zip(&out.graders)
            .flat_map(|(r, gs)| {
                gs.iter().map(|(name, g)| hone_report::run::GraderLine {
                    model: r.run.model.clone(),
                    grader: name.clone(),
                    pass_rate: interval(&g.pass_rate),
                    mean: interval(&g.mean),
                    errors: g.errors,
                })
            })
            .collect(),
        split_counts: out.split.summary.counts.clone(),
        chosen_by: out.choice.grader.is_some().then(|| {
            let scores: Vec<String> = out
                .runs
                .iter()
                .zip(&out.choice.dev)
                .map(|(r, s)| match s {
                    Some(s) => format!("{} {s:.4}", r.run.model),
                    None => format!("{} –", r.run.model),
                })
                .collect();
            format!(
                "Chosen by `[task] select_by`: {}. Dev scores: {}.",
                out.choice.rule,
                scores.join(", ")
            )
        }),
    };
    let html_path = project
        .root
        .join("reports")
        .join(format!("run-{}.html", hone_core::hash::short(&chosen.id)));
    write_atomic(&html_path, report.html().as_bytes())?;
    let md = report.markdown();
    write_atomic(&html_path.with_extension("md"), md.as_bytes())?;
    Ok((html_path, md))
}
