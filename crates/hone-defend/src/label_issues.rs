//! Label-issue finder: out-of-fold class probabilities from hone's n-gram model and confident learning
//! (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels", JAIR 2021).
//!
//! The pipeline is
//! 1. [`out_of_fold_proba`]: K stratified, seeded folds; each example's probabilities come from an
//!    [`NgramModel`] trained on the other folds only, so a wrong label cannot be memorised.
//! 2. [`confident_joint`]: per-class thresholds `t_j` = mean `p_j` over the examples labelled `j`; an
//!    example labelled `i` is counted in cell `(i, j)` when `j` is the most probable of the classes whose
//!    probability reaches their threshold. The counts are then *calibrated*: each row is rescaled to the
//!    number of examples labelled `i` and rounded preserving the row totals, so the matrix sums to the
//!    number of (valid) examples and its off-diagonal mass estimates how many labels are wrong.
//! 3. [`find_label_issues`]: pruning. [`Method::PruneByNoiseRate`] is cleanlab's default (for every cell
//!    `(i, j)`, the `C[i][j]` examples labelled `i` with the largest margin `p_j - p_i`);
//!    [`Method::RankByJoint`] ranks every example by one score and flags as many as the calibrated joint's
//!    off-diagonal mass says are wrong. Examples whose most probable class is their given label are never
//!    flagged (as in cleanlab).
//!
//! Invalid input never panics: rows whose length differs from `n_classes`, or whose label is out of
//! range, are ignored (not counted, never flagged); non-finite probabilities count as 0.

use hone_core::rng::SeededRng;
use hone_core::{Error, Result};
use hone_model::{NgramConfig, NgramModel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Settings of [`out_of_fold_proba`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OofConfig {
    /// Number of folds K (default 5); each fold model trains on (K-1)/K of the data.
    pub folds: usize,
    /// Seed of the stratified fold assignment (default 42).
    pub seed: u64,
    /// The n-gram model trained on every fold.
    pub model: NgramConfig,
}

impl Default for OofConfig {
    fn default() -> Self {
        OofConfig {
            folds: 5,
            seed: 42,
            model: NgramConfig::default(),
        }
    }
}

/// One suspected label error.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LabelIssue {
    /// Position of the example in the input.
    pub index: usize,
    /// The label it has.
    pub given: u32,
    /// The most probable other label.
    pub suggested: u32,
    /// Higher = more likely wrong (see [`Ranking`]).
    pub score: f64,
    /// Out-of-fold probability of the given label.
    pub self_confidence: f64,
    /// Out-of-fold probability of the suggested label.
    pub suggested_confidence: f64,
}

/// How [`find_label_issues`] chooses the flagged set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// cleanlab's default: for every off-diagonal cell `(i, j)` of the calibrated confident joint, flag
    /// the `C[i][j]` examples labelled `i` with the largest `p_j - p_i`.
    PruneByNoiseRate,
    /// For every given class `i`, flag the `Σ_{j≠i} C[i][j]` examples labelled `i` with the highest score.
    PruneByClass,
    /// Flag the `count_scale · Σ_{i≠j} C[i][j]` examples with the highest score over the whole set.
    RankByJoint,
    /// Bayes: the given label is evidence too. With a noise rate `ρ` spread evenly over the other classes
    /// (estimated by EM from the data, started at the calibrated joint's off-diagonal fraction), the
    /// probability that label `y` is right is `(1-ρ)p_y / ((1-ρ)p_y + ρ/(K-1)·(1-p_y))`; flag when it is
    /// below `1 - posterior_threshold`. Needs probabilities calibrated against the true labels (see
    /// [`refined_out_of_fold_proba`]); with soft probabilities it flags few.
    Posterior,
}

/// The score suspects are ranked by (higher = more likely wrong).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ranking {
    /// `1 - p_given`.
    SelfConfidence,
    /// `max_{j≠given} p_j - p_given`, in [-1, 1].
    NormalizedMargin,
}

/// Settings of [`find_label_issues`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelIssueConfig {
    /// How the flagged set is chosen (default [`Method::Posterior`]).
    pub method: Method,
    /// Score used to rank (and, for `RankByJoint` / `PruneByClass`, to select) suspects (default
    /// [`Ranking::SelfConfidence`]).
    pub ranking: Ranking,
    /// Multiplies the number of examples flagged (default 1.0 = the calibrated joint's estimate).
    pub count_scale: f64,
    /// Never flag so many examples of a given class that fewer than this many are left (default 1).
    pub min_examples_per_class: usize,
    /// [`Method::Posterior`]: flag when the posterior probability that the label is wrong exceeds this
    /// (default 0.5).
    pub posterior_threshold: f64,
}

impl Default for LabelIssueConfig {
    fn default() -> Self {
        LabelIssueConfig {
            method: Method::Posterior,
            ranking: Ranking::SelfConfidence,
            count_scale: 1.0,
            min_examples_per_class: 1,
            posterior_threshold: 0.5,
        }
    }
}

/// Seeded stratified fold of every example, in `0..folds`: each class's examples are shuffled and dealt
/// round-robin, continuing from where the previous class stopped, so folds differ in size by at most one
/// and every class is spread as evenly as it can be. `folds == 0` puts everything in fold 0.
pub fn stratified_folds(labels: &[u32], folds: usize, seed: u64) -> Vec<usize> {
    let folds = folds.max(1);
    let mut by_class: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, &y) in labels.iter().enumerate() {
        by_class.entry(y).or_default().push(i);
    }
    let mut rng = SeededRng::new(seed ^ 0x6C61_6265_6C5F_6F6F);
    let mut out = vec![0usize; labels.len()];
    let mut next = rng.below(folds);
    for idx in by_class.values_mut() {
        rng.shuffle(idx);
        for &i in idx.iter() {
            out[i] = next;
            next = (next + 1) % folds;
        }
    }
    out
}

/// K-fold out-of-fold probabilities (stratified, seeded folds): each example's probabilities come from a
/// model that never saw it. Row `i` has one probability per label name and sums to 1.
///
/// Empty input gives an empty result. Errors: fewer than 2 folds or more folds than examples, mismatched
/// lengths, a label out of range, or a fold whose training part cannot train a model (e.g. one class).
pub fn out_of_fold_proba(
    texts: &[&str],
    labels: &[u32],
    label_names: &[String],
    cfg: &OofConfig,
) -> Result<Vec<Vec<f32>>> {
    out_of_fold_proba_masked(texts, labels, label_names, cfg, None)
}

/// [`out_of_fold_proba`] where the fold models train only on the examples with `train_on[i] == true`;
/// every example (also the excluded ones) is still predicted by the model of its own fold, which never
/// saw it. Used for a second, cleaner round: exclude the suspects of a first round so that the fold
/// models learn from fewer wrong labels.
pub fn out_of_fold_proba_masked(
    texts: &[&str],
    labels: &[u32],
    label_names: &[String],
    cfg: &OofConfig,
    train_on: Option<&[bool]>,
) -> Result<Vec<Vec<f32>>> {
    let n = texts.len();
    if n != labels.len() {
        return Err(Error::Usage(format!(
            "out-of-fold: {n} texts but {} labels",
            labels.len()
        )));
    }
    if let Some(m) = train_on
        && m.len() != n
    {
        return Err(Error::Usage(format!(
            "out-of-fold: {n} texts but a training mask of {}",
            m.len()
        )));
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    if cfg.folds < 2 || cfg.folds > n {
        return Err(Error::Usage(format!(
            "out-of-fold: folds must be in 2..={n} (the number of examples), got {}",
            cfg.folds
        )));
    }
    if let Some(&bad) = labels.iter().find(|&&y| y as usize >= label_names.len()) {
        return Err(Error::Usage(format!(
            "out-of-fold: label index {bad} but only {} label names",
            label_names.len()
        )));
    }
    let fold = stratified_folds(labels, cfg.folds, cfg.seed);
    let mut out: Vec<Vec<f32>> = vec![Vec::new(); n];
    for f in 0..cfg.folds {
        let held: Vec<usize> = (0..n).filter(|&i| fold[i] == f).collect();
        if held.is_empty() {
            continue;
        }
        let train: Vec<usize> = (0..n)
            .filter(|&i| fold[i] != f && train_on.is_none_or(|m| m[i]))
            .collect();
        let tx: Vec<&str> = train.iter().map(|&i| texts[i]).collect();
        let ty: Vec<u32> = train.iter().map(|&i| labels[i]).collect();
        let (model, _) = NgramModel::fit(&tx, &ty, label_names, None, &cfg.model, &mut |_| {})
            .map_err(|e| Error::Usage(format!("out-of-fold: fold {}: {e}", f + 1)))?;
        let hx: Vec<&str> = held.iter().map(|&i| texts[i]).collect();
        for (&i, p) in held.iter().zip(model.predict_proba_batch(&hx)) {
            out[i] = p;
        }
    }
    Ok(out)
}

/// Element-wise mean of several probability matrices of the same shape (e.g. out-of-fold runs with
/// other seeds or features). Rows whose length differs from the first run's are taken from the runs
/// that have the right length; an empty list gives an empty result.
pub fn average_proba(runs: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let k = row.len();
            let mut acc = vec![0f64; k];
            let mut m = 0usize;
            for run in runs {
                if let Some(r) = run.get(i).filter(|r| r.len() == k) {
                    for (a, &v) in acc.iter_mut().zip(r) {
                        *a += clean(v);
                    }
                    m += 1;
                }
            }
            acc.iter().map(|&a| (a / m.max(1) as f64) as f32).collect()
        })
        .collect()
}

fn clean(v: f32) -> f64 {
    if v.is_finite() { v as f64 } else { 0.0 }
}

/// Whether row `i` takes part: right length and a label in range.
fn valid(proba: &[Vec<f32>], labels: &[u32], n_classes: usize, i: usize) -> bool {
    proba[i].len() == n_classes && (labels[i] as usize) < n_classes
}

/// Per-class thresholds `t_j` = mean `p_j` over the valid examples labelled `j` (infinite for a class
/// nobody is labelled with, so it is never "confident").
pub fn class_thresholds(proba: &[Vec<f32>], labels: &[u32], n_classes: usize) -> Vec<f64> {
    let n = proba.len().min(labels.len());
    let mut sum = vec![0f64; n_classes];
    let mut cnt = vec![0u64; n_classes];
    for i in (0..n).filter(|&i| valid(proba, labels, n_classes, i)) {
        let y = labels[i] as usize;
        sum[y] += clean(proba[i][y]);
        cnt[y] += 1;
    }
    sum.iter()
        .zip(&cnt)
        .map(|(&s, &c)| if c > 0 { s / c as f64 } else { f64::INFINITY })
        .collect()
}

/// The confident joint before calibration: `C[i][j]` counts the examples labelled `i` whose most probable
/// class among those reaching their threshold (`p_j >= t_j - 1e-6`) is `j`; examples with no such class
/// are not counted.
pub fn raw_confident_joint(proba: &[Vec<f32>], labels: &[u32], n_classes: usize) -> Vec<Vec<u64>> {
    let n = proba.len().min(labels.len());
    let t = class_thresholds(proba, labels, n_classes);
    let mut cj = vec![vec![0u64; n_classes]; n_classes];
    for i in (0..n).filter(|&i| valid(proba, labels, n_classes, i)) {
        let mut best: Option<(usize, f64)> = None;
        for (j, &p) in proba[i].iter().enumerate() {
            let p = clean(p);
            if p >= t[j] - 1e-6 && best.is_none_or(|(_, b)| p > b) {
                best = Some((j, p));
            }
        }
        if let Some((j, _)) = best {
            cj[labels[i] as usize][j] += 1;
        }
    }
    cj
}

/// The estimated joint distribution of (given, true) labels, for the report: the calibrated confident
/// joint, rows = given label, columns = estimated true label, in example counts.
///
/// Calibration (as in the paper and cleanlab): row `i` of the raw joint is rescaled so that it sums to
/// the number of valid examples labelled `i` (a row with no confident example puts them all on the
/// diagonal) and rounded preserving that total (largest remainders). So the matrix sums to the number of
/// valid examples exactly, and its off-diagonal sum estimates the number of wrong labels.
pub fn confident_joint(proba: &[Vec<f32>], labels: &[u32], n_classes: usize) -> Vec<Vec<u64>> {
    let n = proba.len().min(labels.len());
    let raw = raw_confident_joint(proba, labels, n_classes);
    let mut counts = vec![0u64; n_classes];
    for i in (0..n).filter(|&i| valid(proba, labels, n_classes, i)) {
        counts[labels[i] as usize] += 1;
    }
    raw.iter()
        .enumerate()
        .map(|(i, row)| {
            let total: u64 = row.iter().sum();
            if total == 0 {
                let mut r = vec![0u64; n_classes];
                r[i] = counts[i];
                return r;
            }
            let target = counts[i];
            let exact: Vec<f64> = row
                .iter()
                .map(|&c| c as f64 * target as f64 / total as f64)
                .collect();
            let mut r: Vec<u64> = exact.iter().map(|&x| x.floor() as u64).collect();
            let short = target.saturating_sub(r.iter().sum());
            let mut order: Vec<usize> = (0..n_classes).collect();
            order.sort_by(|&a, &b| {
                let fa = exact[a] - exact[a].floor();
                let fb = exact[b] - exact[b].floor();
                fb.total_cmp(&fa).then(a.cmp(&b))
            });
            for &j in order.iter().take(short as usize) {
                r[j] += 1;
            }
            r
        })
        .collect()
}

/// Score of one valid row (higher = more likely wrong), the best other class and its probability.
fn score_row(p: &[f32], given: usize, ranking: Ranking) -> (f64, usize, f64) {
    let pg = clean(p[given]);
    let mut sug = usize::MAX;
    let mut ps = f64::NEG_INFINITY;
    for (j, &v) in p.iter().enumerate() {
        let v = clean(v);
        if j != given && v > ps {
            sug = j;
            ps = v;
        }
    }
    if sug == usize::MAX {
        return (f64::NEG_INFINITY, given, 0.0);
    }
    let score = match ranking {
        Ranking::SelfConfidence => 1.0 - pg,
        Ranking::NormalizedMargin => ps - pg,
    };
    (score, sug, ps)
}

/// Confident learning (Northcutt et al. 2021): per-class thresholds, the calibrated confident joint, then
/// pruning by `cfg.method`. Returns the suspects ranked by `score`, highest first (ties by index).
/// Examples whose most probable class is their given label are never returned.
pub fn find_label_issues(
    proba: &[Vec<f32>],
    labels: &[u32],
    n_classes: usize,
    cfg: &LabelIssueConfig,
) -> Vec<LabelIssue> {
    let n = proba.len().min(labels.len());
    if n == 0 || n_classes < 2 {
        return Vec::new();
    }
    let cj = confident_joint(proba, labels, n_classes);
    let ok: Vec<usize> = (0..n)
        .filter(|&i| valid(proba, labels, n_classes, i))
        .collect();
    let mut class_count = vec![0usize; n_classes];
    for &i in &ok {
        class_count[labels[i] as usize] += 1;
    }
    let scale = if cfg.count_scale.is_finite() && cfg.count_scale > 0.0 {
        cfg.count_scale
    } else {
        0.0
    };
    let min_keep = cfg.min_examples_per_class;
    // (score, suggested, p_suggested) per valid example, and whether its argmax is the given label.
    let mut info: Vec<Option<(f64, usize, f64)>> = vec![None; n];
    for &i in &ok {
        let g = labels[i] as usize;
        let s = score_row(&proba[i], g, cfg.ranking);
        let argmax_is_given = s.2 <= clean(proba[i][g]);
        if !argmax_is_given {
            info[i] = Some(s);
        }
    }
    let by_score = |a: &usize, b: &usize| {
        let sa = info[*a].map_or(f64::NEG_INFINITY, |s| s.0);
        let sb = info[*b].map_or(f64::NEG_INFINITY, |s| s.0);
        sb.total_cmp(&sa).then(a.cmp(b))
    };
    let mut flagged = vec![false; n];
    match cfg.method {
        Method::PruneByNoiseRate => {
            let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
            for &i in &ok {
                members[labels[i] as usize].push(i);
            }
            for (k, idx) in members.iter().enumerate() {
                if class_count[k] <= min_keep {
                    continue;
                }
                let counts = keep_at_least(&cj[k], k, min_keep as u64, scale);
                for (j, &num) in counts.iter().enumerate() {
                    if j == k || num == 0 {
                        continue;
                    }
                    let mut order = idx.clone();
                    let margin = |i: usize| clean(proba[i][j]) - clean(proba[i][k]);
                    order.sort_by(|&a, &b| margin(b).total_cmp(&margin(a)).then(a.cmp(&b)));
                    for &i in order.iter().take(num as usize) {
                        flagged[i] = true;
                    }
                }
            }
        }
        Method::PruneByClass => {
            let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
            for &i in &ok {
                members[labels[i] as usize].push(i);
            }
            for (k, idx) in members.iter_mut().enumerate() {
                let off: u64 = cj[k]
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != k)
                    .map(|(_, &c)| c)
                    .sum();
                let num = ((off as f64 * scale).round() as usize)
                    .min(class_count[k].saturating_sub(min_keep));
                idx.sort_by(&by_score);
                for &i in idx.iter().take(num) {
                    flagged[i] = true;
                }
            }
        }
        Method::Posterior => {
            let rho = estimate_noise_rate(proba, labels, n_classes);
            let thr = if cfg.posterior_threshold.is_finite() {
                cfg.posterior_threshold
            } else {
                0.5
            };
            let mut order: Vec<usize> = ok.iter().copied().filter(|&i| info[i].is_some()).collect();
            order.sort_by(&by_score);
            let mut left = class_count.clone();
            for &i in &order {
                let g = labels[i] as usize;
                let wrong = 1.0 - posterior_right(clean(proba[i][g]), rho, n_classes);
                if wrong > thr && left[g] > min_keep {
                    left[g] -= 1;
                    flagged[i] = true;
                }
            }
        }
        Method::RankByJoint => {
            let off: u64 = cj
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, &c)| c)
                        .sum::<u64>()
                })
                .sum();
            let want = (off as f64 * scale).round() as usize;
            let mut order: Vec<usize> = ok.iter().copied().filter(|&i| info[i].is_some()).collect();
            order.sort_by(&by_score);
            let mut left = class_count.clone();
            let mut taken = 0;
            for &i in &order {
                if taken >= want {
                    break;
                }
                let g = labels[i] as usize;
                if left[g] > min_keep {
                    left[g] -= 1;
                    flagged[i] = true;
                    taken += 1;
                }
            }
        }
    }
    let mut out: Vec<LabelIssue> = (0..n)
        .filter(|&i| flagged[i])
        .filter_map(|i| {
            info[i].map(|(score, sug, ps)| LabelIssue {
                index: i,
                given: labels[i],
                suggested: sug as u32,
                score,
                self_confidence: clean(proba[i][labels[i] as usize]),
                suggested_confidence: ps,
            })
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
    out
}

/// Probability that a label whose out-of-fold probability is `p` is right, when a fraction `rho` of the
/// labels were moved uniformly to one of the other `k - 1` classes.
fn posterior_right(p: f64, rho: f64, k: usize) -> f64 {
    let p = p.clamp(1e-12, 1.0);
    let right = (1.0 - rho) * p;
    let wrong = rho / (k.max(2) - 1) as f64 * (1.0 - p);
    if right + wrong > 0.0 {
        right / (right + wrong)
    } else {
        1.0
    }
}

/// The fraction of wrong labels under the uniform-noise model of [`Method::Posterior`]: the fixed point
/// of `ρ = mean(1 - P(label right | p, ρ))` (EM), started at the calibrated confident joint's
/// off-diagonal fraction. Invalid rows are ignored; no valid row gives 0.
pub fn estimate_noise_rate(proba: &[Vec<f32>], labels: &[u32], n_classes: usize) -> f64 {
    let n = proba.len().min(labels.len());
    let pg: Vec<f64> = (0..n)
        .filter(|&i| valid(proba, labels, n_classes, i))
        .map(|i| clean(proba[i][labels[i] as usize]))
        .collect();
    if pg.is_empty() || n_classes < 2 {
        return 0.0;
    }
    let cj = confident_joint(proba, labels, n_classes);
    let off: u64 = (0..n_classes)
        .map(|i| cj[i].iter().sum::<u64>() - cj[i][i])
        .sum();
    let mut rho = (off as f64 / pg.len() as f64).clamp(1e-3, 0.9);
    for _ in 0..500 {
        let mean_right = pg
            .iter()
            .map(|&p| posterior_right(p, rho, n_classes))
            .sum::<f64>()
            / pg.len() as f64;
        let next = (1.0 - mean_right).clamp(0.0, 0.999);
        if (next - rho).abs() < 1e-10 {
            rho = next;
            break;
        }
        rho = next;
    }
    rho
}

/// Two rounds of [`out_of_fold_proba`], averaged over `seeds` fold assignments (seeds `cfg.seed`,
/// `cfg.seed + 1`, …; the model seed moves along): the suspects of round 1 ([`Method::RankByJoint`],
/// generous) are left out of the fold models' training in round 2, so those models and their fitted
/// temperatures learn from cleaner labels and their probabilities are calibrated against the true labels
/// rather than the noisy ones. Every example is still predicted by a model that never saw it.
pub fn refined_out_of_fold_proba(
    texts: &[&str],
    labels: &[u32],
    label_names: &[String],
    cfg: &OofConfig,
    seeds: usize,
) -> Result<Vec<Vec<f32>>> {
    let run = |mask: Option<&[bool]>| -> Result<Vec<Vec<f32>>> {
        let mut runs = Vec::new();
        for s in 0..seeds.max(1) as u64 {
            let c = OofConfig {
                folds: cfg.folds,
                seed: cfg.seed.wrapping_add(s),
                model: NgramConfig {
                    seed: cfg.model.seed.wrapping_add(s),
                    ..cfg.model.clone()
                },
            };
            runs.push(out_of_fold_proba_masked(
                texts,
                labels,
                label_names,
                &c,
                mask,
            )?);
        }
        Ok(average_proba(&runs))
    };
    let first = run(None)?;
    if first.is_empty() {
        return Ok(first);
    }
    let generous = LabelIssueConfig {
        method: Method::RankByJoint,
        ..LabelIssueConfig::default()
    };
    let mut keep = vec![true; texts.len()];
    for x in find_label_issues(&first, labels, label_names.len(), &generous) {
        keep[x.index] = false;
    }
    run(Some(&keep))
}

/// cleanlab's `_keep_at_least_n_per_class` for one given class `k` (its joint row `row`): raise the
/// diagonal to at least `n`, take the increase uniformly off the non-zero off-diagonal cells, then scale
/// the off-diagonal cells by `frac` (rounded). Returns the number to prune per true class.
fn keep_at_least(row: &[u64], k: usize, n: u64, frac: f64) -> Vec<u64> {
    let diag = row.get(k).copied().unwrap_or(0);
    let raise = n.saturating_sub(diag) as f64;
    let nonzero_off = row
        .iter()
        .enumerate()
        .filter(|&(j, &c)| j != k && c > 0)
        .count()
        .max(1) as f64;
    row.iter()
        .enumerate()
        .map(|(j, &c)| {
            if j == k {
                0
            } else {
                ((c as f64 - raise / nonzero_off).max(0.0) * frac).round() as u64
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Synthetic probabilities: `n_per` examples per class; the true class gets `conf` (jittered), the
    /// rest spread evenly. Every `flip_every`-th example's label is moved to the next class.
    fn synthetic(
        k: usize,
        n_per: usize,
        conf: f32,
        flip_every: usize,
    ) -> (Vec<Vec<f32>>, Vec<u32>, Vec<usize>) {
        let mut rng = SeededRng::new(7);
        let (mut p, mut y, mut flipped) = (Vec::new(), Vec::new(), Vec::new());
        for c in 0..k {
            for _ in 0..n_per {
                let jitter = (rng.below(1000) as f32 / 1000.0 - 0.5) * 0.1;
                let top = (conf + jitter).clamp(0.05, 0.9999);
                let rest = (1.0 - top) / (k - 1) as f32;
                let mut row = vec![rest; k];
                row[c] = top;
                let i = y.len();
                if flip_every > 0 && i % flip_every == 3 {
                    y.push(((c + 1) % k) as u32);
                    flipped.push(i);
                } else {
                    y.push(c as u32);
                }
                p.push(row);
            }
        }
        (p, y, flipped)
    }

    #[test]
    fn flags_the_flipped_labels_of_a_synthetic_matrix() {
        let (p, y, flipped) = synthetic(10, 40, 0.995, 10);
        for method in [
            Method::Posterior,
            Method::RankByJoint,
            Method::PruneByNoiseRate,
            Method::PruneByClass,
        ] {
            let cfg = LabelIssueConfig {
                method,
                ..LabelIssueConfig::default()
            };
            let issues = find_label_issues(&p, &y, 10, &cfg);
            let mut got: Vec<usize> = issues.iter().map(|x| x.index).collect();
            got.sort_unstable();
            assert_eq!(got, flipped, "{method:?}");
            for x in &issues {
                assert_eq!(x.suggested as usize, (x.given as usize + 9) % 10);
                assert!(x.self_confidence < x.suggested_confidence);
            }
            assert!(issues.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }

    #[test]
    fn noise_rate_estimate_matches_the_flips() {
        let (p, y, flipped) = synthetic(10, 40, 0.995, 10);
        let rho = estimate_noise_rate(&p, &y, 10);
        let truth = flipped.len() as f64 / y.len() as f64;
        assert!((rho - truth).abs() < 0.02, "rho {rho} truth {truth}");
        let (p, y, _) = synthetic(5, 60, 0.9, 0);
        assert!(estimate_noise_rate(&p, &y, 5) < 0.005);
        assert_eq!(estimate_noise_rate(&[], &[], 5), 0.0);
    }

    #[test]
    fn a_clean_matrix_flags_almost_nothing() {
        let (p, y, flipped) = synthetic(6, 50, 0.6, 0);
        assert!(flipped.is_empty());
        for method in [
            Method::Posterior,
            Method::RankByJoint,
            Method::PruneByNoiseRate,
            Method::PruneByClass,
        ] {
            let cfg = LabelIssueConfig {
                method,
                ..LabelIssueConfig::default()
            };
            assert!(find_label_issues(&p, &y, 6, &cfg).is_empty(), "{method:?}");
        }
        let cj = confident_joint(&p, &y, 6);
        let off: u64 = (0..6)
            .flat_map(|i| (0..6).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| cj[i][j])
            .sum();
        assert_eq!(off, 0);
    }

    #[test]
    fn calibrated_joint_sums_to_n_and_rows_to_label_counts() {
        let (mut p, mut y, _) = synthetic(4, 37, 0.5, 7);
        // A row with no confident class, an invalid row and an out-of-range label are handled.
        p.push(vec![0.25; 4]);
        y.push(2);
        p.push(vec![1.0; 3]);
        y.push(1);
        p.push(vec![0.25; 4]);
        y.push(9);
        let cj = confident_joint(&p, &y, 4);
        let total: u64 = cj.iter().flatten().sum();
        assert_eq!(total as usize, p.len() - 2);
        for (c, row) in cj.iter().enumerate() {
            let want = y
                .iter()
                .zip(&p)
                .filter(|&(&l, r)| l as usize == c && r.len() == 4)
                .count();
            assert_eq!(row.iter().sum::<u64>() as usize, want);
        }
        let raw: u64 = raw_confident_joint(&p, &y, 4).iter().flatten().sum();
        assert!(raw <= total);
        // The off-diagonal mass matches the number of flips (every 7th example).
        let off: u64 = (0..4).map(|i| cj[i].iter().sum::<u64>() - cj[i][i]).sum();
        let flips = (0..4 * 37).filter(|i| i % 7 == 3).count() as u64;
        assert!(off.abs_diff(flips) <= 2, "off {off} flips {flips}");
    }

    #[test]
    fn deterministic_and_no_panic_on_odd_input() {
        let (p, y, _) = synthetic(5, 40, 0.7, 9);
        let cfg = LabelIssueConfig::default();
        assert_eq!(
            find_label_issues(&p, &y, 5, &cfg),
            find_label_issues(&p, &y, 5, &cfg)
        );
        assert!(find_label_issues(&[], &[], 5, &cfg).is_empty());
        assert!(find_label_issues(&p, &y, 0, &cfg).is_empty());
        assert!(find_label_issues(&p, &y[..3], 5, &cfg).len() <= 3);
        let weird = vec![
            vec![f32::NAN, f32::INFINITY, -1.0],
            vec![],
            vec![0.5, 0.5, 0.0],
        ];
        let _ = find_label_issues(&weird, &[0, 1, 7], 3, &cfg);
        let _ = confident_joint(&weird, &[0, 1, 7], 3);
        let nan_cfg = LabelIssueConfig {
            count_scale: f64::NAN,
            method: Method::PruneByNoiseRate,
            ..cfg
        };
        let _ = find_label_issues(&p, &y, 5, &nan_cfg);
        assert!(confident_joint(&[], &[], 0).is_empty());
        assert_eq!(
            stratified_folds(&y, 5, 3),
            stratified_folds(&y, 5, 3),
            "folds are seeded"
        );
        let names: Vec<String> = vec!["a".into(), "b".into()];
        assert!(
            out_of_fold_proba(&[], &[], &names, &OofConfig::default())
                .unwrap()
                .is_empty()
        );
        assert!(out_of_fold_proba(&["x"], &[0, 1], &names, &OofConfig::default()).is_err());
        assert!(out_of_fold_proba(&["x", "y"], &[0, 5], &names, &OofConfig::default()).is_err());
    }

    #[test]
    fn folds_are_stratified_and_balanced() {
        let y: Vec<u32> = (0..103).map(|i| (i % 3) as u32).collect();
        let f = stratified_folds(&y, 5, 11);
        for fold in 0..5 {
            let size = f.iter().filter(|&&x| x == fold).count();
            assert!((20..=21).contains(&size), "fold {fold} has {size}");
            for c in 0..3 {
                let m = (0..103).filter(|&i| f[i] == fold && y[i] == c).count();
                assert!((6..=8).contains(&m), "fold {fold} class {c} has {m}");
            }
        }
    }

    fn small_cfg() -> OofConfig {
        OofConfig {
            folds: 4,
            seed: 5,
            model: NgramConfig {
                buckets: 1 << 14,
                char_ngrams: (0, 0),
                threads: 1,
                ..NgramConfig::default()
            },
        }
    }

    #[test]
    fn out_of_fold_never_uses_a_model_that_saw_the_example() {
        // Signal: class word + filler; twins: the same unique text under both labels. A model that saw the
        // example itself would see both copies and sit near 0.5; an out-of-fold model saw only the other
        // copy (when it is in another fold) and leans to the other label.
        let mut texts: Vec<String> = Vec::new();
        let mut labels = Vec::new();
        for i in 0..60 {
            texts.push(format!("alpha red w{i} hello"));
            labels.push(0u32);
            texts.push(format!("beta blue v{i} hello"));
            labels.push(1u32);
        }
        let first_twin = texts.len();
        for k in 0..24 {
            let t = format!("qq{k}x rr{k}y ss{k}z");
            texts.push(t.clone());
            labels.push(0);
            texts.push(t);
            labels.push(1);
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let names: Vec<String> = vec!["a".into(), "b".into()];
        let cfg = small_cfg();
        let p = out_of_fold_proba(&refs, &labels, &names, &cfg).unwrap();
        assert_eq!(p.len(), refs.len());
        let fold = stratified_folds(&labels, cfg.folds, cfg.seed);
        let mut apart = 0;
        for a in (first_twin..refs.len()).step_by(2) {
            if fold[a] != fold[a + 1] {
                apart += 1;
                for i in [a, a + 1] {
                    let own = p[i][labels[i] as usize];
                    assert!(own < 0.5, "twin {i}: self-confidence {own}");
                }
            }
        }
        assert!(apart >= 10, "only {apart} twin pairs in different folds");
        // The signal examples are predicted well.
        let right = (0..first_twin)
            .filter(|&i| p[i][labels[i] as usize] > 0.5)
            .count();
        assert!(right >= first_twin * 9 / 10);
        // Deterministic.
        assert_eq!(p, out_of_fold_proba(&refs, &labels, &names, &cfg).unwrap());
        let r = refined_out_of_fold_proba(&refs, &labels, &names, &cfg, 1).unwrap();
        assert_eq!(r.len(), refs.len());
        assert!(
            r.iter()
                .all(|row| (row.iter().sum::<f32>() - 1.0).abs() < 1e-3)
        );
        // Masked: with the twins excluded from training no copy is seen at all, so a twin's text carries
        // no evidence and its self-confidence (averaged over both copies) is 0.5, above the unmasked one.
        let mask: Vec<bool> = (0..refs.len()).map(|i| i < first_twin).collect();
        let q = out_of_fold_proba_masked(&refs, &labels, &names, &cfg, Some(&mask)).unwrap();
        let mean_self = |p: &[Vec<f32>]| {
            (first_twin..refs.len())
                .map(|i| p[i][labels[i] as usize])
                .sum::<f32>()
                / (refs.len() - first_twin) as f32
        };
        assert!(mean_self(&q) > mean_self(&p) + 0.1);
        assert!((mean_self(&q) - 0.5).abs() < 0.1);
    }

    #[test]
    fn averaging_is_elementwise() {
        let a = vec![vec![0.2f32, 0.8], vec![1.0, 0.0]];
        let b = vec![vec![0.4f32, 0.6], vec![0.0, 1.0]];
        let m = average_proba(&[a, b]);
        assert!((m[0][0] - 0.3).abs() < 1e-6 && (m[1][1] - 0.5).abs() < 1e-6);
        assert!(average_proba(&[]).is_empty());
    }
}
