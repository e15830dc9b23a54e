//! `hone run`: curate → split (frozen test, contamination check) → train every `[[model]]` plus the
//! `majority` baseline → evaluate on the frozen test set and the suites (metrics with bootstrap CIs,
//! calibration, slices, latency, cost) → choose the best model on dev → check the `[success]` gates.
//! Each model run is keyed by the hash of its config, data version, split, seed and hone version, so an
//! unchanged run is `cached`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use hone_core::config::{ModelConfig, SuccessRule};

use crate::models::{DistillSpec, EncoderSpec, ModelEntry, ModelKind, ModelSpec};
use hone_core::hash::KeyHasher;
use hone_core::{Error, Record, Result};
use hone_data::split::Part;
use hone_encoder::model::FitReport;
use hone_encoder::model::{EmbeddingCache, EncoderModel};
use hone_model::{MajorityModel, NgramModel};
use hone_store::Store;
use serde_json::{Value, json};

use crate::record::{
    self, Abstention, Cost, Counts, DevMetrics, DistillReport, Distillation, Estimate, Latency,
    Predictions, RUN_RECORD_VERSION, Run, RunConfig, RunRecord, SliceAccuracy, SliceTable, Slices,
    SuiteMetrics, SuitePrediction, TestMetrics, TestPrediction, Threshold, TrainInfo, TrainReport,
    finite,
};
use hone_core::decide::{ABSTAIN, CHOICE_RULE, Candidate, DecisionRule, choose};

use crate::curate::{self, Progress};
use crate::input::parse_jsonl;
use crate::project::{Project, who};
use crate::split_stage::{self, SplitOutcome};
use crate::suites::{self, SuiteCase};

/// A trained model of any kind.
pub enum Trained {
    Ngram(Box<NgramModel>),
    Majority(MajorityModel),
    Encoder(Box<EncoderModel>),
}

impl Trained {
    pub fn labels(&self) -> &[String] {
        match self {
            Trained::Ngram(m) => m.labels(),
            Trained::Majority(m) => m.labels(),
            Trained::Encoder(m) => m.labels(),
        }
    }
    pub fn proba(&self, text: &str) -> Result<Vec<f32>> {
        match self {
            Trained::Ngram(m) => Ok(m.predict_proba(text)),
            Trained::Majority(m) => Ok(m.predict_proba(text)),
            Trained::Encoder(m) => Ok(m.predict_proba_batch(&[text])?.pop().unwrap_or_default()),
        }
    }
    pub fn proba_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        match self {
            Trained::Ngram(m) => Ok(m.predict_proba_batch(texts)),
            Trained::Majority(m) => Ok(m.predict_proba_batch(texts)),
            Trained::Encoder(m) => m.predict_proba_batch(texts),
        }
    }
    pub fn save(&self, dir: &Path) -> Result<()> {
        match self {
            Trained::Ngram(m) => m.save(dir),
            Trained::Majority(m) => m.save(dir),
            Trained::Encoder(m) => m.save(dir),
        }
    }
    pub fn load(kind: &str, dir: &Path) -> Result<Trained> {
        match ModelKind::from_name(kind) {
            Some(ModelKind::Ngram) => Ok(Trained::Ngram(Box::new(NgramModel::load(dir)?))),
            Some(ModelKind::Majority) => Ok(Trained::Majority(MajorityModel::load(dir)?)),
            Some(ModelKind::Encoder) => Ok(Trained::Encoder(Box::new(EncoderModel::load(dir)?))),
            Some(ModelKind::Lm) => Err(Error::Usage(
                "a language model run generates text; it has no class probabilities".into(),
            )),
            None => Err(Error::Store(format!(
                "a stored run has model kind `{kind}`, which this hone does not know"
            ))),
        }
    }
}

/// One model's run (new or cached).
pub struct ModelRun {
    pub run: Run,
    pub cached: bool,
}

/// A gate: one `[success]` rule checked on the chosen model.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gate {
    pub metric: String,
    pub rule: String,
    pub value: Option<f64>,
    pub pass: bool,
    pub note: String,
}

pub struct RunOutcome {
    pub version_id: String,
    pub version_cached: bool,
    pub split: SplitOutcome,
    /// `majority` first, then the `[[model]]`s in config order.
    pub runs: Vec<ModelRun>,
    /// Index into `runs` of the chosen model ([`hone_core::decide::choose`]).
    pub chosen: usize,
    /// The rule that chose it, the dev metric ranked and every run's dev score under it.
    pub choice: Choice,
    pub gates: Vec<Gate>,
    /// Generate tasks with graders: per run (as `runs`), each grader's scores on the test answers
    /// (see [`crate::graders::grade_run`]); empty otherwise.
    pub graders: Vec<BTreeMap<String, crate::graders::GraderScores>>,
}

/// Which model the chosen-model rule chose, by which dev metric, and every model's dev score under it
/// (classification: dev macro-F1; generate: ROUGE-L or the grader `[task] select_by` names).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Choice {
    /// Index into the runs.
    pub chosen: usize,
    /// The rule in words, as recorded with the choice.
    pub rule: String,
    /// The dev metric ranked (`dev_rouge_l`, `dev grader_NAME_pass_rate`, ...).
    pub metric: String,
    /// Each run's dev score under `metric` (`None`: not measured).
    pub dev: Vec<Option<f64>>,
    /// The grader that ranked the models (`[task] select_by`), if one did.
    #[serde(skip)]
    pub grader: Option<String>,
}

impl RunOutcome {
    pub fn gates_pass(&self) -> bool {
        self.gates.iter().all(|g| g.pass)
    }
    pub fn chosen(&self) -> &Run {
        &self.runs[self.chosen].run
    }
}

/// User + system CPU seconds of this process so far.
pub fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut u) != 0 {
            return 0.0;
        }
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    }
}

/// Everything the evaluation needs about one model's predictions on a set of examples.
struct Scored {
    gold: Vec<u32>,
    pred: Vec<u32>,
    conf: Vec<f64>,
    proba: Vec<Vec<f32>>,
}

impl Scored {
    fn correct(&self) -> Vec<bool> {
        self.gold
            .iter()
            .zip(&self.pred)
            .map(|(g, p)| g == p)
            .collect()
    }
}

fn score(
    model: &Trained,
    texts: &[&str],
    gold_labels: &[&str],
    rule: DecisionRule,
) -> Result<Scored> {
    let labels = model.labels();
    let mut index: BTreeMap<&str, u32> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    index.entry(ABSTAIN).or_insert(labels.len() as u32);
    let proba = model.proba_batch(texts)?;
    let conf: Vec<f64> = proba
        .iter()
        .map(|p| p.iter().copied().fold(0.0f32, f32::max) as f64)
        .collect();
    let pred: Vec<u32> = proba
        .iter()
        .map(|p| rule.decide(p).map_or(labels.len() as u32, |i| i as u32))
        .collect();
    // A gold label the model never saw gets an index no prediction can match.
    let gold = gold_labels
        .iter()
        .map(|l| index.get(l).copied().unwrap_or(labels.len() as u32 + 1))
        .collect();
    Ok(Scored {
        gold,
        pred,
        conf,
        proba,
    })
}

const BOOT_REPS: usize = 1000;

/// The largest confidence threshold whose abstentions (counted as errors) cost at most `max_loss` of
/// accuracy on the given (dev) predictions; `None` when there are none. Abstain when confidence < threshold.
pub fn choose_abstain_threshold(conf: &[f64], correct: &[bool], max_loss: f64) -> Option<f64> {
    let n = conf.len().min(correct.len());
    if n == 0 {
        return None;
    }
    // Abstaining below a threshold removes the least confident answers first; walk them in that order
    // and stop before the correct answers given up exceed the budget.
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| conf[a].total_cmp(&conf[b]));
    let budget = (max_loss * n as f64 + 1e-9).floor() as usize;
    let mut lost = 0usize;
    let mut best = 0.0;
    for (k, &i) in order.iter().enumerate() {
        lost += usize::from(correct[i]);
        if lost > budget {
            break;
        }
        // Only a cut between two distinct confidences can be expressed as a threshold.
        let next = order.get(k + 1).map_or(conf[i] + 1e-6, |&j| conf[j]);
        if next > conf[i] {
            best = (conf[i] + next) / 2.0;
        }
    }
    Some(best)
}

/// Accuracy and macro-F1 with 95% bootstrap CIs.
fn headline(s: &Scored, n_classes: usize, seed: u64) -> (Estimate, Estimate) {
    let n = s.gold.len();
    let acc = hone_eval::bootstrap_ci(
        n,
        &|ix: &[usize]| {
            ix.iter().filter(|&&i| s.gold[i] == s.pred[i]).count() as f64 / ix.len().max(1) as f64
        },
        BOOT_REPS,
        seed,
        0.95,
    );
    let f1 = hone_eval::bootstrap_ci(
        n,
        &|ix: &[usize]| {
            let g: Vec<u32> = ix.iter().map(|&i| s.gold[i]).collect();
            let p: Vec<u32> = ix.iter().map(|&i| s.pred[i]).collect();
            hone_eval::macro_f1(&g, &p, n_classes)
        },
        BOOT_REPS,
        seed,
        0.95,
    );
    (Estimate::of(&acc), Estimate::of(&f1))
}

/// Metrics on one scored set: accuracy and macro-F1 with 95% bootstrap CIs, per class, confusion,
/// calibration; for two classes also PR-AUC.
fn metrics(s: &Scored, n_classes: usize, seed: u64) -> TestMetrics {
    let (accuracy, macro_f1) = headline(s, n_classes, seed);
    let (ece, reliability) = hone_eval::calibration(&s.conf, &s.correct(), 10);
    let pr_auc = (n_classes == 2).then(|| {
        let pos: Vec<bool> = s.gold.iter().map(|&g| g == 1).collect();
        let scores: Vec<f64> = s
            .proba
            .iter()
            .map(|p| p.get(1).copied().unwrap_or(0.0) as f64)
            .collect();
        finite(hone_eval::average_precision(&scores, &pos))
    });
    TestMetrics {
        n: s.gold.len(),
        accuracy,
        macro_f1,
        ece: finite(ece),
        reliability,
        per_class: hone_eval::per_class(&s.gold, &s.pred, n_classes),
        confusion: hone_eval::confusion(&s.gold, &s.pred, n_classes),
        pr_auc: pr_auc.flatten(),
        threshold: None,
        distillation: None,
    }
}

fn slice_accuracy(keys: &[Vec<String>], correct: &[bool]) -> SliceTable {
    let mut acc: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for (ks, &c) in keys.iter().zip(correct) {
        for k in ks {
            let e = acc.entry(k.as_str()).or_default();
            e.0 += 1;
            e.1 += u64::from(c);
        }
    }
    acc.into_iter()
        .map(|(k, (n, ok))| {
            (
                k.to_string(),
                SliceAccuracy {
                    n,
                    accuracy: ok as f64 / n as f64,
                },
            )
        })
        .collect()
}

struct Data<'a> {
    train: Vec<&'a Record>,
    dev: Vec<&'a Record>,
    test: Vec<&'a Record>,
    labels: Vec<String>,
}

fn texts<'a>(rs: &[&'a Record]) -> Vec<&'a str> {
    rs.iter().map(|r| r.text.as_str()).collect()
}
fn golds<'a>(rs: &[&'a Record]) -> Vec<&'a str> {
    rs.iter()
        .map(|r| r.label.as_deref().unwrap_or(""))
        .collect()
}

/// A model's params as stored with its run and hashed into its key: the `[model.params]` as written
/// (so a run id does not change when defaults do). For `encoder` models they also carry `path` (as
/// written), `method`, `pooling` and the base model's fingerprint, so that new weights under the same path
/// are a new run.
fn model_params(entry: &ModelEntry, raw: Option<&ModelConfig>) -> Result<Value> {
    let mut v = match raw {
        Some(m) => serde_json::to_value(&m.params).map_err(|e| Error::Internal(e.to_string()))?,
        None => json!({}),
    };
    if let ModelSpec::Encoder(e) = &entry.spec {
        v["path"] = json!(e.path_as_written);
        v["method"] = json!(e.method);
        v["pooling"] = json!(hone_encoder::model::pooling_name(e.pooling));
        v["base_fingerprint"] = json!(hone_encoder::embed::fingerprint(&e.path)?);
    }
    Ok(v)
}

/// Distillation of an `ngram` student ([`DistillSpec`]): labels the training texts (and the unlabelled
/// ones) with the teacher, softened by the temperature, and retrains `base`'s weights on them with soft
/// cross-entropy.
#[allow(clippy::too_many_arguments)]
fn distill(
    spec: &DistillSpec,
    store: &Store,
    teacher_row: &Run,
    base: &NgramModel,
    train_x: &[&str],
    train_y: &[u32],
    dev: Option<(&[&str], &[u32])>,
    labels: &[String],
    seed: u64,
) -> Result<(NgramModel, DistillReport)> {
    let teacher = load_model(store, teacher_row)?;
    if teacher.labels() != labels {
        return Err(Error::Data {
            message: format!(
                "the teacher `{}` was trained on other labels than its student",
                teacher_row.model
            ),
            hint: "rerun the teacher on this data first".into(),
        });
    }
    let extra = match &spec.unlabelled {
        Some(p) => read_unlabelled(p)?,
        None => Vec::new(),
    };
    let mut texts: Vec<&str> = train_x.to_vec();
    texts.extend(extra.iter().map(String::as_str));
    let probs = teacher.proba_batch(&texts)?;
    // p^(1/T), renormalised = softmax(logits / (T_dev * T)).
    let inv = (1.0 / spec.temperature.max(1e-3)) as f32;
    let mut soft = Vec::with_capacity(texts.len() * labels.len());
    for row in &probs {
        let r: Vec<f32> = row.iter().map(|p| p.max(1e-30).powf(inv)).collect();
        let z: f32 = r.iter().sum();
        soft.extend(r.iter().map(|v| v / z.max(1e-30)));
    }
    let k = labels.len();
    if spec.alpha > 0.0 {
        for (row, &y) in soft.chunks_mut(k).zip(train_y) {
            row.iter_mut().for_each(|v| *v *= 1.0 - spec.alpha);
            row[y as usize] += spec.alpha;
        }
    }
    let (student, losses) =
        base.distill(&texts, &soft, dev, spec.epochs, spec.lr, spec.l2, seed)?;
    Ok((
        student,
        DistillReport {
            teacher: teacher_row.model.clone(),
            teacher_run: teacher_row.id.clone(),
            temperature: spec.temperature,
            alpha: spec.alpha,
            epochs: spec.epochs,
            n_texts: texts.len(),
            n_unlabelled: extra.len(),
            losses,
        },
    ))
}

/// Unlabelled texts for a teacher: plain lines, or JSONL with a `text` field when the first line is JSON.
fn read_unlabelled(p: &Path) -> Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Line {
        text: String,
    }
    let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
    if text.trim_start().starts_with('{') {
        let hint = "give plain lines, or JSONL with a \"text\" field on every line";
        return Ok(parse_jsonl::<Line>(p, &text, hint)?
            .into_iter()
            .map(|(_, l)| l.text)
            .collect());
    }
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// The embedding cache kept in the store.
pub(crate) struct StoreCache<'a>(pub(crate) &'a Store);

impl EmbeddingCache for StoreCache<'_> {
    fn get(&mut self, keys: &[String]) -> Result<std::collections::HashMap<String, Vec<f32>>> {
        self.0.get_embeddings(keys)
    }
    fn put(&mut self, rows: &[(String, Vec<f32>)]) -> Result<()> {
        self.0.put_embeddings(rows)
    }
}

/// Trains an `encoder` model by its validated spec.
#[allow(clippy::too_many_arguments)]
fn fit_encoder(
    store: &Store,
    name: &str,
    spec: &EncoderSpec,
    data: &Data,
    train_x: &[&str],
    train_y: &[u32],
    dev_x: &[&str],
    dev_y: &[u32],
    seed: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<(EncoderModel, FitReport)> {
    let p = spec.seeded_params(seed);
    let base = hone_encoder::Pretrained::load(&spec.path, p.max_length)?;
    let dev = (!dev_x.is_empty()).then_some((dev_x, dev_y));
    let mut cache = StoreCache(store);
    let label = format!("train {name}");
    EncoderModel::fit(
        base,
        spec.method,
        spec.pooling,
        &p,
        &data.labels,
        train_x,
        train_y,
        dev,
        &mut cache,
        &mut |what, done, total| {
            progress(Progress::Pass {
                name: &format!("{label}: {what} {done}/{total}"),
                index: done as usize,
                total: total as usize,
            })
        },
    )
}

/// Whether `[split] fold_dev` refits this model on train + dev: `ngram` (with its dev-chosen settings
/// re-selected on a carve, its temperature kept from dev), `majority`, and a frozen encoder's linear head
/// (with the C dev chose; its embeddings are cached). Fine-tuned and SetFit encoders keep their
/// train-only fit: early stopping needs dev, and a second fine-tune would double the cost.
fn folds(spec: &ModelSpec) -> bool {
    match spec {
        ModelSpec::Ngram(_) | ModelSpec::Majority => true,
        ModelSpec::Encoder(e) => e.method == hone_encoder::Method::Frozen,
        ModelSpec::Lm(_) => false,
    }
}

/// Whether this run refits its model on train + dev: `[split] fold_dev`, a dev set to fold, a kind
/// that [`folds`], and no later model distilling from it (a student's train-only fit, which dev
/// scores, must learn from a teacher that has not seen dev).
fn refits(project: &Project, entry: &ModelEntry, has_dev: bool) -> bool {
    let is_teacher = project.models.iter().any(|m| {
        matches!(&m.spec, ModelSpec::Ngram(s) if s.distill.as_ref().is_some_and(|d| d.from == entry.name))
    });
    project.config.split.fold_dev && has_dev && folds(&entry.spec) && !is_teacher
}

/// One model fitted on `train_x`/`train_y` (with `dev` for selection and calibration where the kind
/// uses one). Called once, and once more on train + dev when `[split] fold_dev` folds dev back in.
#[allow(clippy::too_many_arguments)]
fn fit_model(
    store: &Store,
    entry: &ModelEntry,
    data: &Data,
    train_x: &[&str],
    train_y: &[u32],
    dev_x: &[&str],
    dev_y: &[u32],
    seed: u64,
    teacher: Option<&Run>,
    epochs: &mut Vec<hone_model::EpochStats>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Trained, TrainReport)> {
    let name = entry.name.as_str();
    Ok(match &entry.spec {
        ModelSpec::Lm(_) => {
            return Err(Error::Internal(format!(
                "[[model]] `{name}` is a language model, which the classification path cannot train"
            )));
        }
        ModelSpec::Majority => (
            Trained::Majority(MajorityModel::fit(train_y, &data.labels)?),
            TrainReport::Majority,
        ),
        ModelSpec::Ngram(spec) => {
            let cfg = spec.seeded(seed);
            let dev = (!dev_x.is_empty()).then_some((dev_x, dev_y));
            let (m, fit) = NgramModel::fit(train_x, train_y, &data.labels, dev, &cfg, &mut |e| {
                epochs.push(e.clone())
            })?;
            match (&spec.distill, teacher) {
                (Some(d), Some(teacher_run)) => {
                    let (student, info) = distill(
                        d,
                        store,
                        teacher_run,
                        &m,
                        train_x,
                        train_y,
                        dev,
                        &data.labels,
                        cfg.seed,
                    )?;
                    (
                        Trained::Ngram(Box::new(student)),
                        TrainReport::Ngram {
                            fit,
                            distillation: Some(info),
                        },
                    )
                }
                (Some(d), None) => {
                    return Err(Error::Internal(format!(
                        "[[model]] `{name}`: the teacher `{}` was not trained first (validation lets only earlier teachers through)",
                        d.from
                    )));
                }
                _ => (
                    Trained::Ngram(Box::new(m)),
                    TrainReport::Ngram {
                        fit,
                        distillation: None,
                    },
                ),
            }
        }
        ModelSpec::Encoder(spec) => {
            let (m, fit) = fit_encoder(
                store, name, spec, data, train_x, train_y, dev_x, dev_y, seed, progress,
            )?;
            let test_truncated = m.count_truncated(&texts(&data.test))?;
            (
                Trained::Encoder(Box::new(m)),
                TrainReport::Encoder {
                    fit,
                    test_truncated,
                },
            )
        }
    })
}

/// Train one model and evaluate it; returns the run to store.
#[allow(clippy::too_many_arguments)]
fn train_and_evaluate(
    store: &Store,
    project: &Project,
    entry: &ModelEntry,
    params: &Value,
    data: &Data,
    suites: &[SuiteCase],
    run_id: &str,
    split_id: &str,
    version_id: &str,
    seed: u64,
    teacher: Option<&Run>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Run> {
    let index: BTreeMap<&str, u32> = data
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let y = |rs: &[&Record]| -> Vec<u32> {
        rs.iter()
            .map(|r| {
                index
                    .get(r.label.as_deref().unwrap_or(""))
                    .copied()
                    .unwrap_or(0)
            })
            .collect()
    };
    let (train_x, train_y, dev_x, dev_y) = (
        texts(&data.train),
        y(&data.train),
        texts(&data.dev),
        y(&data.dev),
    );
    let wall = Instant::now();
    let cpu0 = cpu_seconds();
    let (name, kind, abstain) = (entry.name.as_str(), entry.kind().name(), entry.abstain);
    let mut epochs = Vec::new();
    let (model, train_report) = fit_model(
        store,
        entry,
        data,
        &train_x,
        &train_y,
        &dev_x,
        &dev_y,
        seed,
        teacher,
        &mut epochs,
        progress,
    )?;
    let train_wall = wall.elapsed().as_secs_f64();
    let train_cpu = cpu_seconds() - cpu0;
    let plain_dev = score(&model, &dev_x, &golds(&data.dev), DecisionRule::Argmax)?;
    // Two classes: the rarer one in training is the positive class, and its decision threshold is the one
    // that maximises its F1 on dev (never for the majority baseline, whose probabilities are constant).
    let binary = if data.labels.len() == 2
        && !abstain
        && entry.kind() != ModelKind::Majority
        && !plain_dev.gold.is_empty()
    {
        let n_second = data
            .train
            .iter()
            .filter(|r| r.label.as_deref() == Some(data.labels[1].as_str()))
            .count();
        let positive = if 2 * n_second <= data.train.len() {
            1
        } else {
            0
        };
        let is_pos: Vec<bool> = plain_dev
            .gold
            .iter()
            .map(|&g| g as usize == positive)
            .collect();
        let scores: Vec<f64> = plain_dev
            .proba
            .iter()
            .map(|p| p.get(positive).copied().unwrap_or(0.0) as f64)
            .collect();
        let (t, f1) = hone_eval::best_threshold_f1(&scores, &is_pos);
        t.is_finite().then_some((positive, t, f1))
    } else {
        None
    };
    let rule = match (abstain, binary) {
        (true, _) => choose_abstain_threshold(&plain_dev.conf, &plain_dev.correct(), 0.01)
            .map_or(DecisionRule::Argmax, |below| DecisionRule::Abstain {
                below,
            }),
        (false, Some((positive, threshold, _))) => DecisionRule::Binary {
            positive,
            threshold,
        },
        _ => DecisionRule::Argmax,
    };
    let threshold = rule.abstain_below();
    // With abstention the metrics get one more class, `abstain`, which counts as wrong on in-scope data.
    let n_classes = data.labels.len() + usize::from(threshold.is_some());
    let dev_scored = score(&model, &dev_x, &golds(&data.dev), rule)?;
    // `[split] fold_dev`: after dev has ranked the model and chosen its decision rule, the model that
    // answers on test (and in `predict`) is refitted on train + dev with the same settings and seed.
    // Every refit keeps the temperature the train-only fit found on dev (data that fit never saw), and
    // the decision rule chosen there; see `folds` for which models are refitted.
    let dev_folded = refits(project, entry, !dev_x.is_empty());
    let (model, train_report, train_wall, train_cpu) = if dev_folded {
        let all_x: Vec<&str> = train_x.iter().chain(&dev_x).copied().collect();
        let all_y: Vec<u32> = train_y.iter().chain(&dev_y).copied().collect();
        let (wall, cpu0) = (Instant::now(), cpu_seconds());
        // A frozen encoder's head is refitted with the C that dev chose (its embeddings are cached).
        let refit_entry;
        let entry = match (&entry.spec, &train_report) {
            (ModelSpec::Encoder(spec), TrainReport::Encoder { fit, .. }) => {
                let mut spec = spec.clone();
                if let Some(head) = &fit.head {
                    spec.params.c_grid = vec![head.chosen_c];
                }
                refit_entry = ModelEntry {
                    spec: ModelSpec::Encoder(spec),
                    ..entry.clone()
                };
                &refit_entry
            }
            // The refit keeps the l2 dev chose (and at most its epochs), so that dev's temperature and
            // decision rule apply to scores on the same scale.
            (ModelSpec::Ngram(spec), TrainReport::Ngram { fit, .. }) => {
                let mut spec = spec.clone();
                spec.config.l2_grid = vec![fit.chosen_l2];
                spec.config.max_epochs = fit.best_epoch.max(1);
                refit_entry = ModelEntry {
                    spec: ModelSpec::Ngram(spec),
                    ..entry.clone()
                };
                &refit_entry
            }
            _ => entry,
        };
        let (mut refit, report) = fit_model(
            store,
            entry,
            data,
            &all_x,
            &all_y,
            &[],
            &[],
            seed,
            teacher,
            &mut Vec::new(),
            progress,
        )?;
        // Calibration stays honest: the temperature is the one the train-only fit found on dev, data
        // that fit never trained on (the refit's own temperature comes from a carve of train + dev).
        let report = match (&mut refit, &model) {
            (Trained::Ngram(r), Trained::Ngram(m)) => {
                r.set_temperature(m.temperature());
                report
            }
            // The head was refitted with dev's C: the train-only fit's report (the C grid on dev, the
            // temperature) is what describes the model; `dev_folded` says the head saw dev too.
            (Trained::Encoder(r), Trained::Encoder(m)) => {
                r.set_temperature(m.temperature());
                train_report.clone()
            }
            _ => report,
        };
        (
            refit,
            report,
            train_wall + wall.elapsed().as_secs_f64(),
            train_cpu + cpu_seconds() - cpu0,
        )
    } else {
        (model, train_report, train_wall, train_cpu)
    };
    let test_scored = score(&model, &texts(&data.test), &golds(&data.test), rule)?;
    let mut test_metrics = metrics(&test_scored, n_classes, seed);
    // Point estimates exactly as measured (the chosen-model rule ranks on them); CIs from the bootstrap.
    let (mut dev_accuracy, mut dev_macro_f1) = headline(&dev_scored, n_classes, seed);
    dev_accuracy.estimate = finite(hone_eval::accuracy(&dev_scored.gold, &dev_scored.pred));
    dev_macro_f1.estimate = finite(hone_eval::macro_f1(
        &dev_scored.gold,
        &dev_scored.pred,
        n_classes,
    ));
    if let Some((positive, t, f1)) = binary {
        test_metrics.threshold = Some(Threshold {
            positive_label: data.labels[positive].clone(),
            positive_index: positive,
            chosen_on_dev: finite(t),
            dev_f1: finite(f1),
            applied: rule != DecisionRule::Argmax,
        });
    }
    if let TrainReport::Ngram {
        distillation: Some(info),
        ..
    } = &train_report
        && let Some(t) = teacher
    {
        let teacher_accuracy = t.record.test.accuracy.estimate;
        let student_accuracy = test_metrics.accuracy.estimate;
        test_metrics.distillation = Some(Distillation {
            teacher: t.model.clone(),
            teacher_run: t.id.clone(),
            teacher_accuracy,
            student_accuracy,
            retention: match (student_accuracy, teacher_accuracy) {
                (Some(s), Some(t)) if t > 0.0 => Some(s / t),
                _ => None,
            },
            teacher_throughput_per_s: t.record.throughput_per_s,
            n_texts: info.n_texts,
            n_unlabelled: info.n_unlabelled,
            temperature: info.temperature,
            alpha: info.alpha,
        });
    }
    let correct = test_scored.correct();
    let slices = Slices {
        source: slice_accuracy(
            &data
                .test
                .iter()
                .map(|r| vec![r.source.clone()])
                .collect::<Vec<_>>(),
            &correct,
        ),
        topic: slice_accuracy(
            &data
                .test
                .iter()
                .map(|r| vec![r.topic.clone().unwrap_or_else(|| "(none)".into())])
                .collect::<Vec<_>>(),
            &correct,
        ),
        tag: slice_accuracy(
            &data.test.iter().map(|r| r.tags.clone()).collect::<Vec<_>>(),
            &correct,
        ),
    };
    // Suites: accuracy per suite and per tag.
    let suite_texts: Vec<&str> = suites.iter().map(|c| c.text.as_str()).collect();
    let suite_golds: Vec<&str> = suites.iter().map(|c| c.label.as_str()).collect();
    let suite_scored = score(&model, &suite_texts, &suite_golds, rule)?;
    let suite_correct = suite_scored.correct();
    let suite_metrics = SuiteMetrics {
        by_suite: slice_accuracy(
            &suites
                .iter()
                .map(|c| vec![c.suite.clone()])
                .collect::<Vec<_>>(),
            &suite_correct,
        ),
        by_tag: slice_accuracy(
            &suites.iter().map(|c| c.tags.clone()).collect::<Vec<_>>(),
            &suite_correct,
        ),
        n: suites.len(),
    };
    // Latency: one example at a time, one thread; throughput: the whole test set as a batch.
    let test_x = texts(&data.test);
    let mut lat: Vec<f64> = Vec::new();
    // Up to 500 single-text timings; a small test set is cycled (up to five times) for stable tails.
    let n_probe = (test_x.len() * 5).min(500);
    for t in test_x.iter().cycle().take(n_probe) {
        let s = Instant::now();
        std::hint::black_box(model.proba(t)?);
        lat.push(s.elapsed().as_secs_f64() * 1e6);
    }
    let latency = hone_eval::percentiles(&mut lat);
    let tb = Instant::now();
    std::hint::black_box(model.proba_batch(&test_x)?);
    let batch_s = tb.elapsed().as_secs_f64().max(1e-9);
    let throughput = test_x.len() as f64 / batch_s;
    let costs = &project.config.costs;
    let per_example_s = if test_x.is_empty() {
        0.0
    } else {
        batch_s / test_x.len() as f64
    };
    let n_correct = correct.iter().filter(|&&c| c).count() as u64;
    let cost = hone_eval::cost(
        train_cpu,
        0.0,
        per_example_s,
        n_correct,
        correct.len() as u64,
        costs.cpu_hour_usd,
        costs.gpu_hour_usd,
    );
    // Artifacts into the object store.
    let tmp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    model.save(tmp.path())?;
    let mut artifacts = BTreeMap::new();
    let mut names: Vec<_> = std::fs::read_dir(tmp.path())
        .map_err(|e| Error::io(tmp.path(), e))?
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for p in names {
        let bytes = std::fs::read(&p).map_err(|e| Error::io(&p, e))?;
        artifacts.insert(
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            store.put_object(&bytes, "model")?,
        );
    }
    let label_of = |p: u32| {
        data.labels
            .get(p as usize)
            .map_or(ABSTAIN, String::as_str)
            .to_string()
    };
    let predictions = Predictions {
        labels: data.labels.clone(),
        test: data
            .test
            .iter()
            .zip(&test_scored.pred)
            .zip(&test_scored.conf)
            .map(|((r, &p), &c)| TestPrediction {
                id: r.id.clone(),
                gold: r.label.clone(),
                predicted: label_of(p),
                confidence: c,
            })
            .collect(),
        suites: suites
            .iter()
            .zip(&suite_scored.pred)
            .map(|(c, &p)| SuitePrediction {
                id: c.id.clone(),
                gold: c.label.clone(),
                predicted: label_of(p),
                failures: Vec::new(),
            })
            .collect(),
        generated: Vec::new(),
        dev_generated: Vec::new(),
    };
    let predictions_json =
        serde_json::to_vec(&predictions).map_err(|e| Error::Internal(e.to_string()))?;
    let predictions_obj = store.put_object(&predictions_json, "predictions")?;
    let record = RunRecord {
        v: RUN_RECORD_VERSION,
        name: name.to_string(),
        labels: if threshold.is_some() {
            data.labels
                .iter()
                .cloned()
                .chain([ABSTAIN.to_string()])
                .collect()
        } else {
            data.labels.clone()
        },
        n: Counts {
            train: data.train.len(),
            dev: data.dev.len(),
            test: data.test.len(),
            suites: suites.len(),
        },
        dev: DevMetrics {
            accuracy: dev_accuracy,
            macro_f1: dev_macro_f1,
        },
        decision: rule,
        abstain: threshold.map(|t| Abstention {
            threshold: t,
            dev_accuracy_without: hone_eval::accuracy(&plain_dev.gold, &plain_dev.pred),
            test_coverage: test_scored
                .pred
                .iter()
                .filter(|&&p| (p as usize) < data.labels.len())
                .count() as f64
                / test_scored.pred.len().max(1) as f64,
        }),
        test: test_metrics,
        slices,
        suites: suite_metrics,
        latency_us: Latency {
            p50: finite(latency.p50),
            p95: finite(latency.p95),
            p99: finite(latency.p99),
            mean: finite(latency.mean),
        },
        throughput_per_s: finite(throughput),
        train: TrainInfo {
            dev_folded,
            wall_seconds: train_wall,
            cpu_seconds: train_cpu,
            epochs,
            report: train_report,
        },
        cost: Cost {
            train_usd: finite(cost.train_usd),
            per_1k_predictions_usd: finite(cost.per_1k_predictions_usd),
            per_useful_answer_usd: finite(cost.per_useful_answer_usd),
        },
        artifacts,
        predictions: predictions_obj,
        generation: None,
    };
    Ok(Run {
        id: run_id.to_string(),
        seq: 0,
        created_at: String::new(),
        model: name.to_string(),
        kind: kind.to_string(),
        version: version_id.to_string(),
        split: split_id.to_string(),
        seed: seed as i64,
        hone_version: hone_core::HONE_VERSION.to_string(),
        config: RunConfig {
            kind: kind.to_string(),
            name: name.to_string(),
            params: params.as_object().cloned().unwrap_or_default(),
            abstain,
        },
        record,
    })
}

/// The value of a gate metric in a run record, or why it has none.
pub fn gate_value(
    record: &RunRecord,
    graders: &BTreeMap<String, crate::graders::GraderScores>,
    metric: &str,
) -> std::result::Result<f64, String> {
    let num = |v: Option<f64>| v.ok_or_else(|| format!("`{metric}` was not measured"));
    if let Some((name, what)) = hone_core::config::grader_gate(metric) {
        let g = graders.get(name).ok_or_else(|| {
            format!(
                "no grader named `{name}` scored this run (graders/{name}.toml on a generate task)"
            )
        })?;
        return num(if what == "mean" {
            g.mean.estimate
        } else {
            g.pass_rate.estimate
        });
    }
    match metric {
        "accuracy" => num(record.test.accuracy.estimate),
        "macro_f1" => num(record.test.macro_f1.estimate),
        "ece" => num(record.test.ece),
        "pr_auc" => num(record.test.pr_auc),
        "p50_latency_ms" => num(record.latency_us.p50).map(|us| us / 1000.0),
        "p95_latency_ms" => num(record.latency_us.p95).map(|us| us / 1000.0),
        "p99_latency_ms" => num(record.latency_us.p99).map(|us| us / 1000.0),
        "throughput_per_s" => num(record.throughput_per_s),
        "cost_per_1k_usd" => num(record.cost.per_1k_predictions_usd),
        "dev_accuracy" => num(record.dev.accuracy.estimate),
        "dev_macro_f1" => num(record.dev.macro_f1.estimate),
        "rouge_l" | "chrf" | "exact_match" | "token_f1" | "dev_rouge_l" | "dev_chrf" => {
            let g = record
                .generation
                .as_ref()
                .ok_or_else(|| format!("`{metric}` is measured for generate tasks only"))?;
            num(match metric {
                "rouge_l" => g.test.rouge_l.estimate,
                "chrf" => g.test.chrf.estimate,
                "exact_match" => g.test.exact_match.estimate,
                "token_f1" => g.test.token_f1.estimate,
                "dev_rouge_l" => g.dev.rouge_l.estimate,
                _ => g.dev.chrf.estimate,
            })
        }
        m => {
            let tag = m
                .strip_suffix("_pass_rate")
                .or_else(|| m.strip_suffix("_accuracy"));
            match tag {
                Some(t) => match record
                    .suites
                    .by_tag
                    .get(t)
                    .or_else(|| record.suites.by_suite.get(t))
                {
                    Some(v) => Ok(v.accuracy),
                    None => Err(format!(
                        "no suite case is tagged `{t}` (add cases under suites/ with \"tags\": [\"{t}\"])"
                    )),
                },
                None => Err(format!(
                    "unknown metric `{m}`; known: accuracy, macro_f1, ece, pr_auc, p50/p95/p99_latency_ms, throughput_per_s, cost_per_1k_usd, dev_accuracy, dev_macro_f1, <tag>_pass_rate"
                )),
            }
        }
    }
}

/// Check every `[success]` rule against one run record.
pub fn gates(
    project: &Project,
    record: &RunRecord,
    graders: &BTreeMap<String, crate::graders::GraderScores>,
) -> Vec<Gate> {
    project
        .config
        .success
        .iter()
        .map(|(metric, rule)| {
            let parsed = SuccessRule::parse(rule);
            match (gate_value(record, graders, metric), parsed) {
                (Ok(v), Some(r)) => Gate {
                    metric: metric.clone(),
                    rule: rule.clone(),
                    value: Some(v),
                    pass: r.holds(v),
                    note: String::new(),
                },
                (Err(note), _) => Gate {
                    metric: metric.clone(),
                    rule: rule.clone(),
                    value: None,
                    pass: false,
                    note,
                },
                (Ok(v), None) => Gate {
                    metric: metric.clone(),
                    rule: rule.clone(),
                    value: Some(v),
                    pass: false,
                    note: "rule does not parse".into(),
                },
            }
        })
        .collect()
}

/// `hone grade validate`'s check before anything trains on a generate project with graders: a field
/// the records lack, or an exploitable grader under `exploitable_graders = "fail"`, stops the run;
/// otherwise the exploits found are returned as warnings.
fn check_graders(
    project: &Project,
    store: &Store,
    loaded: &[crate::graders::ProjectGrader],
) -> Result<Vec<String>> {
    // A gate on a grader that does not exist would fail only after every model trained.
    for metric in project.config.success.keys() {
        if let Some((name, _)) = hone_core::config::grader_gate(metric)
            && !loaded.iter().any(|g| g.grader.name == name)
        {
            return Err(Error::Data {
                message: format!(
                    "`[success] {metric}` names grader `{name}`, which graders/ does not hold"
                ),
                hint: format!(
                    "graders: {}",
                    if loaded.is_empty() {
                        "none".to_string()
                    } else {
                        loaded
                            .iter()
                            .map(|g| g.grader.name.clone())
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            });
        }
    }
    // So must the grader `[task] select_by` ranks the models by.
    if let hone_core::config::SelectBy::Grader { name, .. } = project.config.task.select_by() {
        crate::grpo_stage::reward_grader(loaded, &name).map_err(|err| match err {
            Error::Data { hint, .. } => Error::Data {
                message: format!(
                    "`[task] select_by` names grader `{name}`, which graders/ does not hold"
                ),
                hint,
            },
            other => other,
        })?;
    }
    // A GRPO model's reward grader must exist before anything trains.
    for e in &project.models {
        if let crate::models::ModelSpec::Lm(spec) = &e.spec
            && let Some(reward) = &spec.params.reward
        {
            crate::grpo_stage::reward_grader(loaded, reward).map_err(|err| match err {
                Error::Data { message, hint } => Error::Data {
                    message: format!("[[model]] `{}`: {message}", e.name),
                    hint,
                },
                other => other,
            })?;
        }
    }
    if loaded.is_empty() {
        return Ok(Vec::new());
    }
    let v = crate::graders::validate_loaded(project, store, loaded)?;
    let problems = v.problems();
    if v.failed() {
        return Err(Error::Data {
            message: format!("grader check failed:\n  {}", problems.join("\n  ")),
            hint: "`hone grade validate` shows every grader; fix the grader or the data, or set [policy] exploitable_graders = \"warn\"".into(),
        });
    }
    Ok(problems)
}

/// Run the whole loop.
pub fn run(
    project: &Project,
    store: &mut Store,
    refreeze: Option<&str>,
    command: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<RunOutcome> {
    let cur = curate::clean(project, store, command, progress)?;
    let version = cur.version;
    let records = curate::load_records(store, &version)?;
    let suites = crate::suites::load_project(project)?;
    let split = split_stage::run(
        project, store, &version, &records, &suites, refreeze, command,
    )?;
    let part = |r: &&Record| split.assignment.get(&r.id).copied();
    let train: Vec<&Record> = records
        .iter()
        .filter(|r| part(r) == Some(Part::Train))
        .collect();
    let dev: Vec<&Record> = records
        .iter()
        .filter(|r| part(r) == Some(Part::Dev))
        .collect();
    let test: Vec<&Record> = records
        .iter()
        .filter(|r| part(r) == Some(Part::Test))
        .collect();
    if project.config.task.kind == hone_core::config::TaskKind::Generate {
        let mut split = split;
        progress(Progress::Pass {
            name: "checking the graders (fields, adversarial answers)",
            index: 0,
            total: 1,
        });
        let graders = crate::graders::load(project)?;
        split
            .warnings
            .extend(check_graders(project, store, &graders)?);
        let ctx = crate::generate_stage::GenContext {
            project,
            train: &train,
            dev: &dev,
            test: &test,
            split_id: &split.row.id,
            version_id: &version.id,
            seed: project.config.split.seed,
            command,
            suites: &suites,
            graders: &graders,
        };
        let (runs, choice) = crate::generate_stage::run_models(&ctx, store, progress)?;
        let chosen = choice.chosen;
        let graded = runs
            .iter()
            .map(|r| {
                let v = crate::graders::grade_run(&graders, store, &r.run, &test, ctx.seed)?;
                Ok(v.into_iter().map(|(k, v)| (k, v.scores)).collect())
            })
            .collect::<Result<Vec<BTreeMap<_, _>>>>()?;
        let gates = gates(project, &runs[chosen].run.record, &graded[chosen]);
        return Ok(RunOutcome {
            version_id: version.id,
            version_cached: cur.cached,
            split,
            runs,
            chosen,
            choice,
            gates,
            graders: graded,
        });
    }
    let labels: Vec<String> = train
        .iter()
        .chain(&dev)
        .filter_map(|r| r.label.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if labels.len() < 2 {
        return Err(Error::Data {
            message: format!(
                "training needs at least two labels in train/dev; found {}",
                labels.len()
            ),
            hint: "add examples of another label to the sources".into(),
        });
    }
    suites::check_labels(&project.root.join("suites"), &suites, &labels)?;
    if test.is_empty() {
        return Err(Error::Data {
            message: "the test split is empty".into(),
            hint: "set [split] test > 0 or declare a role = \"test\" source".into(),
        });
    }
    let data = Data {
        train,
        dev,
        test,
        labels,
    };
    let seed = project.config.split.seed;
    // The majority baseline first, then every [[model]] in hone.toml order (validated at load).
    let entries: Vec<(ModelEntry, Option<&ModelConfig>)> =
        std::iter::once((ModelEntry::majority(), None))
            .chain(
                project
                    .models
                    .iter()
                    .cloned()
                    .zip(project.config.models.iter().map(Some)),
            )
            .collect();
    let mut runs: Vec<ModelRun> = Vec::new();
    for (entry, raw) in &entries {
        let (kind, name, abstain) = (entry.kind().name(), entry.name.as_str(), entry.abstain);
        let mut params = model_params(entry, *raw)?;
        // A distilled student is keyed by its teacher's run, which must come before it.
        let distill_from = match &entry.spec {
            ModelSpec::Ngram(n) => n.distill.as_ref().map(|d| d.from.as_str()),
            _ => None,
        };
        let teacher = match distill_from {
            Some(from) => {
                let t = runs
                    .iter()
                    .find(|r| r.run.model == from)
                    .map(|r| r.run.clone())
                    .ok_or_else(|| {
                        Error::Internal(format!(
                            "[[model]] `{name}`: distill_from = \"{from}\" names no [[model]] before it, yet passed validation"
                        ))
                    })?;
                params["teacher_run"] = json!(t.id);
                Some(t)
            }
            None => None,
        };
        progress(Progress::Pass {
            name: &format!("train {name}"),
            index: runs.len(),
            total: project.config.models.len() + 1,
        });
        let mut key = KeyHasher::new();
        key.part("kind", kind.as_bytes())
            .part("name", name.as_bytes())
            .part("params", params.to_string().as_bytes())
            .part("abstain", &[u8::from(abstain)])
            .part("version", version.id.as_bytes())
            .part("split", split.row.id.as_bytes())
            .part("seed", &seed.to_le_bytes())
            .part("hone", hone_core::HONE_VERSION.as_bytes());
        // Only where it changes the model (see `train_and_evaluate`), so other runs keep their ids.
        if refits(project, entry, !data.dev.is_empty()) {
            key.part("fold_dev", &[1]);
        }
        let run_id = key.finish();
        if let Some(run) = record::get(store, &run_id)? {
            runs.push(ModelRun { run, cached: true });
            continue;
        }
        let run = train_and_evaluate(
            store,
            project,
            entry,
            &params,
            &data,
            &suites,
            &run_id,
            &split.row.id,
            &version.id,
            seed,
            teacher.as_ref(),
            progress,
        )?;
        let row = store.put_run(&record::to_row(&run)?, &who(), command)?;
        runs.push(ModelRun {
            run: record::from_row(row)?,
            cached: false,
        });
    }
    let candidates: Vec<Candidate> = runs
        .iter()
        .map(|r| Candidate {
            baseline: r.run.kind == crate::models::MAJORITY,
            dev_score: r.run.record.dev_score(),
        })
        .collect();
    let chosen = choose(&candidates).unwrap_or(0);
    let names: Vec<String> = runs.iter().map(|r| r.run.id.clone()).collect();
    store.put_choice(&split.row.id, &runs[chosen].run.id, &names, CHOICE_RULE)?;
    let gates = gates(project, &runs[chosen].run.record, &BTreeMap::new());
    let choice = Choice {
        chosen,
        rule: CHOICE_RULE.into(),
        metric: "dev_macro_f1".into(),
        dev: candidates.iter().map(|c| c.dev_score).collect(),
        grader: None,
    };
    Ok(RunOutcome {
        version_id: version.id,
        version_cached: cur.cached,
        split,
        runs,
        chosen,
        choice,
        gates,
        graders: Vec::new(),
    })
}

/// Materialise a run's model from the object store into a temp dir and load it.
pub fn load_model(store: &Store, run: &Run) -> Result<Trained> {
    let tmp = materialise(store, run)?;
    Trained::load(&run.kind, tmp.path())
}

/// Export an `encoder` run's model for Python into `out` (which must not exist or be empty).
/// Returns what was written (`hf-classifier` or `sentence-transformers`).
pub fn export_model(store: &Store, root: &Path, run: &Run, out: &Path) -> Result<&'static str> {
    let kind = ModelKind::from_name(&run.kind);
    if kind != Some(ModelKind::Encoder) && kind != Some(ModelKind::Lm) {
        return Err(Error::Usage(format!(
            "run {} is a `{}` model; only `encoder` and `lm` models export to Hugging Face",
            run.id, run.kind
        )));
    }
    if out.exists()
        && std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some()
    {
        return Err(Error::Usage(format!(
            "{} exists and is not empty; choose a new directory",
            out.display()
        )));
    }
    // Write beside the target and rename, so a failure leaves no half-written export.
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = tempfile::tempdir_in(parent).map_err(|e| Error::io(parent, e))?;
    let what = if kind == Some(ModelKind::Lm) {
        crate::generate_stage::export_lm(store, root, run, staging.path())?
    } else {
        let tmp = materialise(store, run)?;
        let model = EncoderModel::load(tmp.path())?;
        model.export(tmp.path(), staging.path())?
    };
    if out.exists() {
        std::fs::remove_dir(out).map_err(|e| Error::io(out, e))?;
    }
    let staged = staging.keep();
    std::fs::rename(&staged, out).map_err(|e| Error::io(out, e))?;
    Ok(what)
}

fn materialise(store: &Store, run: &Run) -> Result<tempfile::TempDir> {
    let tmp = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    if run.record.artifacts.is_empty() {
        return Err(Error::Store(format!("run {} has no artifacts", run.id)));
    }
    for (name, hash) in &run.record.artifacts {
        let bytes = store.get_object(hash)?;
        let p = tmp.path().join(name);
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
    }
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::choose_abstain_threshold;

    #[test]
    fn abstention_threshold_spends_at_most_the_budget() {
        // 10 answers; the three least confident are wrong, then a correct one at 0.5.
        let conf = [0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99];
        let correct = [
            false, false, false, true, true, true, true, true, true, true,
        ];
        // No budget: abstain on the three wrong ones only (threshold between 0.3 and 0.5).
        assert_eq!(choose_abstain_threshold(&conf, &correct, 0.0), Some(0.4));
        // A budget of one correct answer in ten: also give up the one at 0.5.
        assert_eq!(choose_abstain_threshold(&conf, &correct, 0.1), Some(0.55));
        // Ties cannot be split: with equal confidences nothing below them is cut.
        assert_eq!(
            choose_abstain_threshold(&[0.5, 0.5], &[false, true], 0.0),
            Some(0.0)
        );
        assert_eq!(choose_abstain_threshold(&[], &[], 0.01), None);
    }
}
