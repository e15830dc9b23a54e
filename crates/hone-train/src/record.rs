//! The run record: the typed, versioned account of one model run (metrics with CIs, the decision rule,
//! slices, suites, latency, cost, training report, artifacts), and the typed predictions object.
//!
//! The store keeps both as JSON and knows nothing of their insides; this module is the one place that
//! writes and reads them. Version 2 is written today. Version 1 rows (hone before the typed pipeline) are
//! read by [`from_row`], which upgrades them in memory; the upgrade is tested on a stored v1 record.
//! Non-finite numbers (an ECE of an empty set, a cost per useful answer with none right) are `null`.

use std::collections::BTreeMap;

use hone_core::{Error, Result};
use hone_eval::{ClassMetrics, ReliabilityBin};
use hone_store::{RunRow, Store};
use serde::{Deserialize, Serialize};

use hone_core::decide::{Candidate, DecisionRule, choose};

/// The version [`RunRecord`] is written in.
pub const RUN_RECORD_VERSION: u32 = 2;

/// A metric on the full set and its 95% bootstrap interval; `lo`/`hi` are absent where no interval was
/// computed (dev metrics of v1 records).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Estimate {
    pub estimate: Option<f64>,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
}

impl Estimate {
    pub fn of(c: &hone_eval::Ci) -> Estimate {
        Estimate {
            estimate: finite(c.estimate),
            lo: finite(c.lo),
            hi: finite(c.hi),
        }
    }
}

/// `Some(x)` when `x` is finite.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Example counts per part.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Counts {
    pub train: usize,
    pub dev: usize,
    pub test: usize,
    pub suites: usize,
}

/// Dev metrics under the run's decision rule (the chosen-model rule ranks on `macro_f1`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct DevMetrics {
    pub accuracy: Estimate,
    pub macro_f1: Estimate,
}

/// The two-class threshold chosen on dev (max F1 of the positive class).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    pub positive_label: String,
    pub positive_index: usize,
    pub chosen_on_dev: Option<f64>,
    pub dev_f1: Option<f64>,
    /// Whether the decision rule uses it (it does unless the model abstains).
    pub applied: bool,
}

/// A distilled student's accuracy next to its teacher's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distillation {
    pub teacher: String,
    pub teacher_run: String,
    pub teacher_accuracy: Option<f64>,
    pub student_accuracy: Option<f64>,
    pub retention: Option<f64>,
    pub teacher_throughput_per_s: Option<f64>,
    pub n_texts: usize,
    pub n_unlabelled: usize,
    pub temperature: f64,
    pub alpha: f32,
}

/// Metrics on the frozen test set under the run's decision rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TestMetrics {
    pub n: usize,
    pub accuracy: Estimate,
    pub macro_f1: Estimate,
    pub ece: Option<f64>,
    pub reliability: Vec<ReliabilityBin>,
    pub per_class: Vec<ClassMetrics>,
    /// Rows are gold, columns predicted, in [`RunRecord::labels`] order.
    pub confusion: Vec<Vec<u64>>,
    /// Two-class tasks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_auc: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distillation: Option<Distillation>,
}

/// Abstention: the dev-chosen confidence threshold and what it costs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Abstention {
    pub threshold: f64,
    pub dev_accuracy_without: f64,
    pub test_coverage: f64,
}

/// Accuracy on one slice of examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SliceAccuracy {
    pub n: u64,
    pub accuracy: f64,
}

pub type SliceTable = BTreeMap<String, SliceAccuracy>;

/// Test accuracy by record source, topic and tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Slices {
    pub source: SliceTable,
    pub topic: SliceTable,
    pub tag: SliceTable,
}

/// Suite accuracy by suite file and by case tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SuiteMetrics {
    pub by_suite: SliceTable,
    pub by_tag: SliceTable,
    pub n: usize,
}

/// Single-example latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Latency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
    pub mean: Option<f64>,
}

/// Money, from measured time and the `[costs]` prices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct Cost {
    pub train_usd: Option<f64>,
    pub per_1k_predictions_usd: Option<f64>,
    pub per_useful_answer_usd: Option<f64>,
}

/// How an `ngram` student was distilled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistillReport {
    pub teacher: String,
    pub teacher_run: String,
    pub temperature: f64,
    pub alpha: f32,
    pub epochs: usize,
    pub n_texts: usize,
    pub n_unlabelled: usize,
    pub losses: Vec<f64>,
}

/// What training did, by model kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum TrainReport {
    /// The `majority` baseline has nothing to report.
    #[default]
    Majority,
    Ngram {
        #[serde(flatten)]
        fit: hone_model::TrainReport,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        distillation: Option<DistillReport>,
    },
    Encoder {
        #[serde(flatten)]
        fit: hone_encoder::model::FitReport,
        /// Test texts longer than `max_length` tokens (cut before the model saw them).
        test_truncated: usize,
    },
    /// A language model (`none`, `lora` or `sft`).
    Lm(LmTrainReport),
}

/// What training a language model did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LmTrainReport {
    pub method: String,
    /// Optimiser steps and the loss (mean per trainable token) at each.
    pub steps: usize,
    pub losses: Vec<f64>,
    /// Parameters that trained (adapters only for `lora`).
    pub trainable_params: usize,
    pub trainable_tokens: usize,
    /// Training examples longer than `max_length`, cut from the prompt's start.
    pub truncated: usize,
    /// Training records with no target (they cannot train a generator and were left out).
    #[serde(default)]
    pub without_target: usize,
    /// blake3 of the chat template every prompt was rendered with (training, evaluation, predict).
    pub template_hash: Option<String>,
    /// The estimate: training FLOPs (6 per parameter per trained token) and wall seconds as shown
    /// after the first five steps (their time plus the remaining padded tokens at the pace of steps
    /// 2-5), beside the measured seconds of the training loop.
    #[serde(default)]
    pub flops: Option<f64>,
    #[serde(default)]
    pub estimated_seconds: Option<f64>,
    #[serde(default)]
    pub train_loop_seconds: Option<f64>,
    /// Why training ended: every epoch ran, early stopping, or the `[costs]` budget.
    #[serde(default)]
    pub ended: Option<hone_lm::sft::Ended>,
    /// Dev ROUGE-L after each epoch (and where a budget stopped one), when there are several.
    #[serde(default)]
    pub dev_by_epoch: Vec<hone_lm::sft::DevScore>,
    /// The dev measurement whose weights the run kept (`None`: the last weights).
    #[serde(default)]
    pub kept: Option<hone_lm::sft::DevScore>,
    /// The optimiser step a checkpoint was resumed at, when the run was resumed.
    #[serde(default)]
    pub resumed_at_step: Option<u64>,
    /// Sequences run through the model at once, and the estimated activation memory that kept
    /// for backward (bytes), from `hone_lm::sft::activation_bytes`.
    #[serde(default)]
    pub micro_batch: usize,
    #[serde(default)]
    pub activation_bytes: u64,
    /// `grpo`: the reward grader, the settings and every step's signals.
    #[serde(default)]
    pub grpo: Option<crate::grpo_stage::GrpoReport>,
    /// `dpo`: the pairs, the held-out preference accuracy before and after, every step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpo: Option<Box<crate::dpo_stage::DpoReport>>,
    /// `distill_from`: the teacher, how the student learned from it, and what it kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<Box<LmDistill>>,
}

/// A language model student's distillation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LmDistill {
    pub teacher: String,
    pub teacher_run: String,
    /// `token` (the tokenizers match: KL to the teacher's distributions) or `sequence` (trained on
    /// the teacher's answers to the training prompts).
    pub mode: String,
    pub temperature: f64,
    pub alpha: f64,
    /// Sequence-level: seconds the teacher took to answer the training prompts.
    pub teacher_answer_seconds: Option<f64>,
    /// Student test ROUGE-L / teacher test ROUGE-L.
    pub retention: Option<f64>,
    /// Student generated tokens/s / teacher generated tokens/s (test set, batched the same way).
    pub speedup: Option<f64>,
}

impl LmTrainReport {
    /// A sentence on how training ended when it did not simply run every epoch, or resumed.
    pub fn ending(&self) -> Option<String> {
        use hone_lm::sft::Ended;
        let metric = match &self.grpo {
            Some(g) => format!("dev `{}` mean reward", g.reward),
            None => "dev ROUGE-L".to_string(),
        };
        let kept = self
            .kept
            .map(|k| {
                format!(
                    "; kept the weights of step {} ({metric} {:.4})",
                    k.step, k.score
                )
            })
            .unwrap_or_default();
        let resumed = self
            .resumed_at_step
            .map(|s| format!(", resumed from the checkpoint at step {s}"))
            .unwrap_or_default();
        let why = match self.ended? {
            Ended::Finished if resumed.is_empty() && self.kept.is_none() => return None,
            Ended::Finished if self.grpo.is_some() => "ran every step",
            Ended::Finished => "ran every epoch",
            Ended::EarlyStop => "stopped early (patience ran out)",
            Ended::Budget => "stopped by the [costs] budget",
            Ended::Interrupted => "was interrupted",
            Ended::NotLearning => {
                "stopped: GRPO was not learning (the advice below says what to change)"
            }
        };
        Some(format!("{why} after {} step(s){resumed}{kept}", self.steps))
    }
}

/// Reference metrics of generated answers on one set, with 95% bootstrap intervals. ROUGE-L, exact
/// match and token F1 are means over examples; chrF pools n-gram statistics (sacrebleu's corpus
/// chrF) and is in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct TextScores {
    pub n: usize,
    pub rouge_l: Estimate,
    pub chrf: Estimate,
    pub exact_match: Estimate,
    pub token_f1: Estimate,
    /// Mean generated tokens per answer, and the share that ended at EOS (not the length cap).
    pub mean_new_tokens: Option<f64>,
    pub stopped_share: Option<f64>,
}

/// A generate run's evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GenerationMetrics {
    /// The dev metric the chosen-model rule ranks by (`rouge_l`).
    pub select_by: String,
    pub dev: TextScores,
    pub test: TextScores,
    /// Test ROUGE-L by record source, topic and tag (`accuracy` holds the mean ROUGE-L).
    pub slices: Slices,
    /// Generated tokens per second over the test set (batched as configured).
    pub tokens_per_s: Option<f64>,
}

/// Training time and report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainInfo {
    /// Whether the model that answers on test was refitted on train + dev (`[split] fold_dev`) after
    /// dev ranked it and chose its decision rule; the dev metrics are the train-only fit's.
    #[serde(default)]
    pub dev_folded: bool,
    pub wall_seconds: f64,
    pub cpu_seconds: f64,
    /// `ngram` selection epochs (every `l2` value), for the learning curve.
    pub epochs: Vec<hone_model::EpochStats>,
    pub report: TrainReport,
}

/// Everything one model run measured. Field by field, this is the schema `hone runs --json` prints under
/// `record` (see ARCHITECTURE.md, "The run record").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunRecord {
    /// [`RUN_RECORD_VERSION`] when written.
    pub v: u32,
    pub name: String,
    /// Class names in index order; `abstain` last when the model abstains.
    pub labels: Vec<String>,
    pub n: Counts,
    pub dev: DevMetrics,
    /// How this run's probabilities become answers, on dev, test, suites and in `predict`.
    pub decision: DecisionRule,
    pub abstain: Option<Abstention>,
    pub test: TestMetrics,
    pub slices: Slices,
    pub suites: SuiteMetrics,
    pub latency_us: Latency,
    pub throughput_per_s: Option<f64>,
    pub train: TrainInfo,
    pub cost: Cost,
    /// Artifact file name → object hash.
    pub artifacts: BTreeMap<String, String>,
    /// Object hash of the [`Predictions`].
    pub predictions: String,
    /// Generate tasks: text metrics (the classification fields above are empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<GenerationMetrics>,
}

impl RunRecord {
    /// The dev score the chosen-model rule ranks by: macro-F1 for classification, ROUGE-L for generate
    /// runs (unless `[task] select_by` names a grader: see `generate_stage::choose_model`).
    pub fn dev_score(&self) -> Option<f64> {
        match &self.generation {
            Some(g) => g.dev.rouge_l.estimate,
            None => self.dev.macro_f1.estimate,
        }
    }
}

/// One generated test answer (masked by the PII masker before it is stored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedPrediction {
    pub id: String,
    pub reference: Option<String>,
    pub completion: String,
    /// `eos`, `length` or `stop`.
    pub stop: String,
}

/// One test prediction (v1 stored these as `[id, gold, predicted, confidence]`, which reads the same).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestPrediction {
    pub id: String,
    pub gold: Option<String>,
    pub predicted: String,
    pub confidence: f64,
}

/// One suite prediction (v1: `[id, gold, predicted]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuitePrediction {
    pub id: String,
    /// The expected label, or a generate case's expectations in one line.
    pub gold: String,
    /// The predicted label, or the generated answer (masked).
    pub predicted: String,
    /// Why a generate case failed (empty: it passed, or a classification case).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<String>,
}

/// A run's predictions on the test set and the suites (an object in the store).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Predictions {
    pub labels: Vec<String>,
    pub test: Vec<TestPrediction>,
    pub suites: Vec<SuitePrediction>,
    /// Generate runs: the test answers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generated: Vec<GeneratedPrediction>,
    /// Generate runs: the dev answers, which a grader ranks when `[task] select_by` names one (runs
    /// stored before these were kept have none; the choice then generates them again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dev_generated: Vec<GeneratedPrediction>,
}

impl Predictions {
    pub fn load(store: &Store, run: &Run) -> Result<Predictions> {
        serde_json::from_slice(&store.get_object(&run.record.predictions)?)
            .map_err(|e| Error::Store(format!("predictions of run {} unreadable: {e}", run.id)))
    }
}

/// The settings a run was trained with, as stored beside its record (an echo of `[[model]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct RunConfig {
    pub kind: String,
    pub name: String,
    /// The model's params as keyed (with `path`, `method`, `pooling` and the base model fingerprint for
    /// encoders, `teacher_run` for distilled students).
    pub params: serde_json::Map<String, serde_json::Value>,
    pub abstain: bool,
}

/// One stored run: the row's facts and its typed config and record.
pub type Run = RunRow<RunConfig, RunRecord>;

/// Read a stored row, upgrading a v1 record.
pub fn from_row(row: RunRow) -> Result<Run> {
    let (id, model, kind) = (row.id.clone(), row.model.clone(), row.kind.clone());
    let bad = |what: &str, e: serde_json::Error| {
        Error::Store(format!(
            "run {id} ({model}): its {what} does not read as a run {what}: {e}"
        ))
    };
    row.try_map(
        |c| serde_json::from_value::<RunConfig>(c).map_err(|e| bad("config", e)),
        |mut raw| {
            if raw.get("v").is_none() {
                upgrade_v1(&mut raw, &kind);
            }
            serde_json::from_value::<RunRecord>(raw).map_err(|e| bad("record", e))
        },
    )
}

/// The row to store.
pub fn to_row(run: &Run) -> Result<RunRow> {
    let json = |e: serde_json::Error| Error::Internal(e.to_string());
    run.clone().try_map(
        |c| serde_json::to_value(c).map_err(json),
        |r| serde_json::to_value(r).map_err(json),
    )
}

/// v1 → v2 in place: dev metrics were bare numbers; the training report had no `kind` tag (the run's kind
/// says which it is); the decision rule was implied by `abstain.threshold` and `test.threshold.applied`.
fn upgrade_v1(raw: &mut serde_json::Value, kind: &str) {
    use serde_json::{Value, json};
    raw["v"] = json!(1);
    let t = &raw["test"]["threshold"];
    raw["decision"] = if let Some(below) = raw["abstain"]["threshold"].as_f64() {
        json!({"rule": "abstain", "below": below})
    } else if t["applied"] == true {
        json!({"rule": "binary", "positive": t["positive_index"], "threshold": t["chosen_on_dev"]})
    } else {
        json!({"rule": "argmax"})
    };
    for m in ["accuracy", "macro_f1"] {
        let x = raw["dev"][m].clone();
        if !x.is_object() {
            raw["dev"][m] = json!({"estimate": x, "lo": null, "hi": null});
        }
    }
    let report = &mut raw["train"]["report"];
    if report.is_null() {
        *report = json!({});
    }
    if let Value::Object(o) = report {
        o.insert("kind".into(), json!(kind));
    }
    if raw["train"]["epochs"].is_null() {
        raw["train"]["epochs"] = json!([]);
    }
}

/// Every run, oldest first.
pub fn all(store: &Store) -> Result<Vec<Run>> {
    store.runs()?.into_iter().map(from_row).collect()
}

/// A run by id, if stored.
pub fn get(store: &Store, id: &str) -> Result<Option<Run>> {
    store.run(id)?.map(from_row).transpose()
}

/// A run by number or id prefix.
pub fn resolve(store: &Store, key: &str) -> Result<Run> {
    from_row(store.resolve_run(key)?)
}

/// The run `predict`, `export` and reports use when none is named: the one the latest `hone run` chose.
/// Stores from before choices were recorded fall back to [`choose`] over the runs of the latest split.
pub fn chosen_run(store: &Store) -> Result<Run> {
    if let Some(c) = store.latest_choice()? {
        return get(store, &c.run)?.ok_or_else(|| {
            Error::Store(format!(
                "the chosen run {} is missing from the store",
                c.run
            ))
        });
    }
    let runs = all(store)?;
    if runs.is_empty() {
        return Err(Error::NotFound {
            what: "run",
            name: "(any)".into(),
            hint: "run `hone run` first".into(),
        });
    }
    fallback_choice(&runs)
        .map(|i| runs[i].clone())
        .ok_or_else(|| Error::NotFound {
            what: "trained model",
            name: "(latest run)".into(),
            hint: "add a [[model]] and run `hone run`".into(),
        })
}

/// For stores from before choices were recorded: [`choose`] over the runs of the latest split, never
/// `majority`. An index into `runs`.
fn fallback_choice(runs: &[Run]) -> Option<usize> {
    let last_split = &runs.last()?.split;
    let of_split: Vec<usize> = (0..runs.len())
        .filter(|&i| &runs[i].split == last_split)
        .collect();
    let candidates: Vec<Candidate> = of_split
        .iter()
        .map(|&i| Candidate {
            baseline: runs[i].kind == crate::models::MAJORITY,
            dev_score: runs[i].record.dev_score(),
        })
        .collect();
    choose(&candidates)
        .map(|k| of_split[k])
        .filter(|&i| runs[i].kind != crate::models::MAJORITY)
}

/// The run named by `--run` (number or id prefix) or `--model` (its latest run), else the chosen one.
pub fn named_or_chosen(store: &Store, run: Option<&str>, model: Option<&str>) -> Result<Run> {
    match (run, model) {
        (Some(r), _) => resolve(store, r),
        (None, Some(m)) => all(store)?
            .into_iter()
            .rfind(|r| r.model == m)
            .ok_or_else(|| Error::NotFound {
                what: "run of model",
                name: m.to_string(),
                hint: "`hone runs` lists runs".into(),
            }),
        (None, None) => chosen_run(store),
    }
}

/// Accuracy and macro-F1 with their intervals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Headline {
    pub accuracy: Estimate,
    pub macro_f1: Estimate,
}

/// One element of `hone runs --json`: the run (id, seq, created_at, model, kind, version, split, seed,
/// hone_version, config, record) plus `chosen` (the latest `hone run` chose it) and the headline `test`
/// and `dev` metrics as `{estimate, lo, hi}` objects.
#[derive(Debug, Clone, Serialize)]
pub struct RunListing {
    #[serde(flatten)]
    pub run: Run,
    pub chosen: bool,
    pub test: Headline,
    pub dev: Headline,
}

/// The `hone runs` table: headers and one row per run. Classification runs show test accuracy, test
/// macro-F1 and dev macro-F1; generate runs test ROUGE-L, test chrF and dev ROUGE-L.
pub fn listing_table(runs: &[RunListing]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let f = |v: Option<f64>| v.map_or("–".into(), |x| format!("{x:.4}"));
    let generate = runs.iter().any(|l| l.run.record.generation.is_some());
    let rows = runs
        .iter()
        .map(|l| {
            let r = &l.run;
            let (a, b, c) = match &r.record.generation {
                Some(g) => (g.test.rouge_l, g.test.chrf, g.dev.rouge_l),
                None => (l.test.accuracy, l.test.macro_f1, l.dev.macro_f1),
            };
            vec![
                format!("{}{}", r.seq, if l.chosen { "*" } else { "" }),
                hone_core::hash::short(&r.id).to_string(),
                r.created_at.chars().take(19).collect(),
                r.model.clone(),
                r.kind.clone(),
                hone_core::hash::short(&r.version).to_string(),
                f(a.estimate),
                f(b.estimate),
                f(c.estimate),
            ]
        })
        .collect();
    let metrics = if generate {
        ["test ROUGE-L", "test chrF", "dev ROUGE-L"]
    } else {
        ["test acc", "test macro-F1", "dev macro-F1"]
    };
    let mut headers = vec!["#", "run", "created", "model", "kind", "data"];
    headers.extend(metrics);
    (headers, rows)
}

/// Every run, oldest first, marked with the current choice ([`chosen_run`]).
pub fn listing(store: &Store) -> Result<Vec<RunListing>> {
    let runs = all(store)?;
    let chosen = match store.latest_choice()? {
        Some(c) => Some(c.run),
        None => fallback_choice(&runs).map(|i| runs[i].id.clone()),
    };
    Ok(runs
        .into_iter()
        .map(|run| RunListing {
            chosen: chosen.as_deref() == Some(run.id.as_str()),
            test: Headline {
                accuracy: run.record.test.accuracy,
                macro_f1: run.record.test.macro_f1,
            },
            dev: Headline {
                accuracy: run.record.dev.accuracy,
                macro_f1: run.record.dev.macro_f1,
            },
            run,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A run row as hone wrote it before the typed pipeline (record layout v1), field for field.
    fn v1_row(kind: &str, record: serde_json::Value) -> RunRow {
        RunRow {
            id: "r1".into(),
            seq: 1,
            created_at: "2026-11-01T00:00:00Z".into(),
            model: "m".into(),
            kind: kind.into(),
            version: "v".into(),
            split: "s".into(),
            seed: 42,
            config: json!({"kind": kind, "name": "m", "params": {"ngram_max": 2}, "abstain": false}),
            hone_version: "0.1.0".into(),
            record,
        }
    }

    fn v1_common() -> serde_json::Value {
        json!({
            "name": "m", "labels": ["ham", "spam"],
            "n": {"train": 10, "dev": 5, "test": 5, "suites": 1},
            "dev": {"accuracy": 0.8, "macro_f1": 0.75},
            "abstain": null,
            "test": {"n": 5, "accuracy": {"estimate": 0.8, "lo": 0.4, "hi": 1.0},
                     "macro_f1": {"estimate": 0.78, "lo": null, "hi": 1.0}, "ece": null,
                     "reliability": [{"lo": 0.9, "hi": 1.0, "mean_confidence": 0.95, "accuracy": 0.8, "count": 5}],
                     "per_class": [{"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}],
                     "confusion": [[2, 0], [1, 2]], "pr_auc": 0.9,
                     "threshold": {"positive_label": "spam", "positive_index": 1, "chosen_on_dev": 0.35, "dev_f1": 0.8, "applied": true}},
            "slices": {"source": {"a": {"n": 5, "accuracy": 0.8}}, "topic": {"(none)": {"n": 5, "accuracy": 0.8}}, "tag": {}},
            "suites": {"by_suite": {"traps": {"n": 1, "accuracy": 1.0}}, "by_tag": {}, "n": 1},
            "latency_us": {"p50": 10.0, "p95": 20.0, "p99": 30.0, "mean": 12.0},
            "throughput_per_s": 1000.0,
            "train": {"wall_seconds": 0.1, "cpu_seconds": 0.2, "epochs": [], "report": null},
            "cost": {"train_usd": 1e-6, "per_1k_predictions_usd": 2e-7, "per_useful_answer_usd": null},
            "artifacts": {"model.json": "abc"},
            "predictions": "def"
        })
    }

    #[test]
    fn v1_ngram_records_read_with_their_decision_rule() {
        let mut rec = v1_common();
        rec["train"]["epochs"] = json!([{"l2": 1e-6, "epoch": 1, "train_loss": 0.5, "dev_macro_f1": 0.7, "dev_accuracy": 0.8}]);
        rec["train"]["report"] = json!({
            "epochs": [{"l2": 1e-6, "epoch": 1, "train_loss": 0.5, "dev_macro_f1": 0.7, "dev_accuracy": 0.8}],
            "chosen_l2": 1e-6, "best_epoch": 1, "best_dev_macro_f1": 0.7, "stopped_early": false,
            "n_features_nonzero": 100, "refit_epochs": 0, "temperature": 1.2, "n_train": 10, "n_dev": 5,
            "dev_carved": false, "wall_seconds": 0.1,
            "distillation": {"teacher": "enc", "teacher_run": "t1", "temperature": 2.0, "alpha": 0.0,
                             "epochs": 10, "n_texts": 12, "n_unlabelled": 2, "losses": [0.3, 0.2]}
        });
        let run = from_row(v1_row("ngram", rec)).unwrap();
        let r = &run.record;
        assert_eq!(r.v, 1);
        assert_eq!(r.dev.macro_f1.estimate, Some(0.75));
        assert_eq!(r.dev.macro_f1.lo, None);
        assert_eq!(r.test.macro_f1.lo, None);
        assert_eq!(r.test.accuracy.hi, Some(1.0));
        assert_eq!(
            r.decision,
            DecisionRule::Binary {
                positive: 1,
                threshold: 0.35
            }
        );
        match &r.train.report {
            TrainReport::Ngram { fit, distillation } => {
                assert_eq!(fit.n_features_nonzero, 100);
                assert_eq!(distillation.as_ref().unwrap().losses, vec![0.3, 0.2]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(r.train.epochs.len(), 1);
        assert_eq!(r.cost.per_useful_answer_usd, None);
        assert_eq!(run.config.params["ngram_max"], 2);
        // Written back, it is a v1 record in the v2 layout and reads the same.
        let again = from_row(to_row(&run).unwrap()).unwrap();
        assert_eq!(again, run);
    }

    #[test]
    fn v1_majority_and_encoder_records_read() {
        let mut rec = v1_common();
        rec["test"]["threshold"]["applied"] = json!(false);
        rec["abstain"] =
            json!({"threshold": 0.4, "dev_accuracy_without": 0.8, "test_coverage": 0.9});
        let run = from_row(v1_row("majority", rec.clone())).unwrap();
        assert_eq!(run.record.train.report, TrainReport::Majority);
        assert_eq!(run.record.decision, DecisionRule::Abstain { below: 0.4 });
        rec["abstain"] = json!(null);
        rec["train"]["report"] = json!({
            "method": "frozen", "pooling": "mean", "max_length": 128, "device": "cpu",
            "train_truncated": 3, "embedded": 7, "cached": 3, "dev_truncated": 0,
            "head": {"tried": [[1.0, 0.8, 12], [10.0, 0.9, 30]], "chosen_c": 10.0},
            "temperature": 0.8, "test_truncated": 1
        });
        let run = from_row(v1_row("encoder", rec)).unwrap();
        assert_eq!(run.record.decision, DecisionRule::Argmax);
        match &run.record.train.report {
            TrainReport::Encoder {
                fit,
                test_truncated,
            } => {
                assert_eq!((fit.train_truncated, *test_truncated), (3, 1));
                assert_eq!(fit.head.as_ref().unwrap().chosen_c, 10.0);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_record_that_is_not_a_run_record_is_a_store_error_naming_the_run() {
        let mut rec = v1_common();
        rec["test"]["accuracy"] = json!("high");
        let e = from_row(v1_row("ngram", rec)).unwrap_err();
        assert!(matches!(e, Error::Store(_)), "{e:?}");
        assert!(e.to_string().contains("run r1 (m)"), "{e}");
    }

    #[test]
    fn v1_positional_predictions_read() {
        let p: Predictions = serde_json::from_value(json!({
            "labels": ["a", "b"],
            "test": [["t1", "a", "b", 0.7], ["t2", null, "abstain", 0.2]],
            "suites": [["s1", "a", "a"]]
        }))
        .unwrap();
        assert_eq!(p.test[0].predicted, "b");
        assert_eq!(p.test[1].gold, None);
        assert_eq!(p.suites[0].id, "s1");
    }
}
