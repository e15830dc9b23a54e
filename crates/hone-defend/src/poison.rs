//! Training-data poisoning scan: insertion triggers (rare terms whose carriers are pure in one label but
//! read as other labels without the term) and spectral signatures (Tran et al. 2018), plus a test-time
//! check for tokens whose removal flips a model's prediction.
//!
//! **Trigger terms.** Every word unigram and bigram (words from [`hone_data::near_dup::tokenize`]) that
//! occurs in at least `min_support` and at most `max_df_fraction` of the texts, with at least `min_purity`
//! of its texts in one label `L` and a lift (purity / base rate of `L`) of at least `min_lift`, is a
//! candidate. Natural keywords pass that test too ("disposable" is nearly always
//! `get_disposable_virtual_card`), so each candidate is checked by its *context*: every carrier in `L` is
//! re-vectorised without the term and classified by the nearest class centroid (TF-IDF, cosine; the
//! candidate's carriers are left out of the centroids). A trigger was inserted into texts of other
//! labels, so most of its carriers read as *some other label* (`min_mismatch`) and those labels are
//! *diverse* (`min_context_labels`, the effective number exp(entropy) of the labels they read as); a
//! keyword separating two sibling labels reads as one sibling. All carriers of a trigger in `L` are flagged.
//!
//! **Spectral signatures.** Per label, the TF-IDF vectors are centred, the top singular vector is found by
//! power iteration and each text is projected on it. Clean labels have a unimodal projection; a planted
//! sub-population sharing features separates. The projections are split in two by Otsu's criterion; when
//! the split explains at least `spectral_min_separation` of the variance and the smaller side holds between
//! `spectral_min_group` texts and `spectral_max_fraction` of the label, the smaller side is flagged with the
//! squared projection (about the label's median projection) as score.
//!
//! Deterministic (hash maps are only used for lookups; sums run in a fixed order), never panics,
//! never prints.

use hone_core::rng::SeededRng;
use hone_data::near_dup::tokenize;
use hone_model::NgramModel;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// One training record the scan suspects of being poisoned.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PoisonSuspect {
    /// Index into the `texts` given to [`scan`].
    pub index: usize,
    /// `"trigger_token"` or `"spectral_outlier"`.
    pub kind: String,
    /// Higher is more suspicious; trigger scores are in (0, 1] (purity × context mismatch), spectral scores
    /// are squared projections divided by the label's median squared projection.
    pub score: f64,
    /// Human-readable reason naming the term or the label.
    pub evidence: String,
}

/// Thresholds of [`scan`]. Defaults were measured on BANKING77 (clean, and with 1% of the training texts
/// carrying an inserted trigger relabelled to one intent); see `bench/defences`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PoisonConfig {
    /// Minimum texts carrying a term for it to be a trigger candidate (default 5).
    pub min_support: usize,
    /// Minimum share of a candidate's texts in its majority label (default 0.9).
    pub min_purity: f64,
    /// Maximum share of all texts carrying a term: triggers are rare (default 0.05).
    pub max_df_fraction: f64,
    /// Minimum purity / base rate of the majority label (default 5); with few labels, where that is out
    /// of reach, a purity half-way from the base rate to 1 suffices.
    pub min_lift: f64,
    /// Minimum share of carriers in the label that read as another label without the term (default 0.6).
    pub min_mismatch: f64,
    /// Minimum effective number (exp of the entropy) of the other labels the carriers read as, capped at
    /// half the other labels (default 8).
    pub min_context_labels: f64,
    /// Maximum mean affinity of the carriers' contexts to the label: cos(context, label centroid) / best
    /// cos(context, any centroid) (default 0.4).
    pub max_label_affinity: f64,
    /// Run the spectral-signature check (default true).
    pub spectral: bool,
    /// Labels with fewer texts are skipped by the spectral check (default 30).
    pub spectral_min_class: usize,
    /// Minimum Otsu separation (between-group / total variance of the projections) to flag (default 0.95;
    /// clean BANKING77 labels reach 0.91).
    pub spectral_min_separation: f64,
    /// Minimum texts on the flagged side (default 5).
    pub spectral_min_group: usize,
    /// Maximum share of a label the flagged side may hold (default 0.5).
    pub spectral_max_fraction: f64,
    /// Power-iteration steps (default 60).
    pub power_iters: usize,
    /// Seed of the power iteration's start vector (default 42).
    pub seed: u64,
}

impl Default for PoisonConfig {
    fn default() -> Self {
        PoisonConfig {
            min_support: 5,
            min_purity: 0.9,
            max_df_fraction: 0.05,
            min_lift: 5.0,
            min_mismatch: 0.6,
            min_context_labels: 8.0,
            max_label_affinity: 0.4,
            spectral: true,
            spectral_min_class: 30,
            spectral_min_separation: 0.95,
            spectral_min_group: 5,
            spectral_max_fraction: 0.5,
            power_iters: 60,
            seed: 42,
        }
    }
}

/// Statistics of one trigger candidate (a term that passed support, purity and lift).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TermStat {
    pub term: String,
    pub label: u32,
    /// Texts carrying the term.
    pub support: usize,
    pub purity: f64,
    pub base_rate: f64,
    /// Share of carriers in `label` whose text without the term reads as another label.
    pub mismatch: f64,
    /// exp(entropy) of the labels the mismatched carriers read as.
    pub context_labels: f64,
    /// Mean over carriers of cos(context, label centroid) / max over labels of cos(context, centroid):
    /// low when the texts without the term have nothing of the label.
    pub label_affinity: f64,
    /// Whether the term is judged a trigger under the config.
    pub trigger: bool,
}

/// Unigram + bigram TF-IDF (sublinear tf, smoothed idf, L2-normalised) over an exact vocabulary.
struct Features {
    vocab: HashMap<String, u32>,
    idf: Vec<f32>,
}

type SparseVec = Vec<(u32, f32)>;

fn terms_of(tokens: &[String]) -> Vec<String> {
    let mut out: Vec<String> = tokens.to_vec();
    out.extend(tokens.windows(2).map(|w| format!("{} {}", w[0], w[1])));
    out
}

impl Features {
    /// Builds the vocabulary over all texts; returns it with each text's distinct term ids.
    fn fit(tokens: &[Vec<String>]) -> (Features, Vec<Vec<u32>>) {
        let mut vocab: HashMap<String, u32> = HashMap::new();
        let mut df: Vec<u32> = Vec::new();
        let mut doc_terms = Vec::with_capacity(tokens.len());
        for toks in tokens {
            let mut ids: Vec<u32> = terms_of(toks)
                .into_iter()
                .map(|t| {
                    let next = vocab.len() as u32;
                    *vocab.entry(t).or_insert(next)
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            df.resize(vocab.len(), 0);
            for &i in &ids {
                if let Some(d) = df.get_mut(i as usize) {
                    *d += 1;
                }
            }
            doc_terms.push(ids);
        }
        let n = tokens.len() as f32;
        let idf = df
            .iter()
            .map(|&d| ((1.0 + n) / (1.0 + d as f32)).ln() + 1.0)
            .collect();
        (Features { vocab, idf }, doc_terms)
    }

    fn vectorize(&self, tokens: &[String]) -> SparseVec {
        let mut ids: Vec<u32> = terms_of(tokens)
            .iter()
            .filter_map(|t| self.vocab.get(t).copied())
            .collect();
        ids.sort_unstable();
        let mut out: SparseVec = Vec::new();
        for id in ids {
            match out.last_mut() {
                Some(last) if last.0 == id => last.1 += 1.0,
                _ => out.push((id, 1.0)),
            }
        }
        let mut norm = 0.0f32;
        for p in &mut out {
            let idf = self.idf.get(p.0 as usize).copied().unwrap_or(1.0);
            p.1 = (1.0 + p.1.ln()) * idf;
            norm += p.1 * p.1;
        }
        if norm > 0.0 {
            let inv = 1.0 / norm.sqrt();
            for p in &mut out {
                p.1 *= inv;
            }
        }
        out
    }
}

/// Removes every occurrence of `term` (one token, or two tokens separated by a space) from `tokens`.
fn without_term(tokens: &[String], term: &str) -> Vec<String> {
    let mut parts = term.split(' ');
    let a = parts.next().unwrap_or("");
    let b = parts.next();
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        match b {
            None if t == a => i += 1,
            Some(b) if t == a && tokens.get(i + 1).is_some_and(|u| u == b) => i += 2,
            _ => {
                out.push(t.clone());
                i += 1;
            }
        }
    }
    out
}

/// Per-class centroid sums `[term][class]` and their squared norms.
struct Centroids {
    c: usize,
    sums: Vec<f32>,
    sqnorm: Vec<f64>,
}

impl Centroids {
    fn new(vecs: &[SparseVec], labels: &[u32], n_terms: usize, c: usize) -> Centroids {
        let mut sums = vec![0f32; n_terms * c];
        for (v, &y) in vecs.iter().zip(labels) {
            for &(t, x) in v {
                if let Some(s) = sums.get_mut(t as usize * c + y as usize) {
                    *s += x;
                }
            }
        }
        let mut sqnorm = vec![0f64; c];
        for row in sums.chunks_exact(c) {
            for (n, &s) in sqnorm.iter_mut().zip(row) {
                *n += f64::from(s) * f64::from(s);
            }
        }
        Centroids { c, sums, sqnorm }
    }

    fn row(&self, t: u32) -> &[f32] {
        self.sums
            .get(t as usize * self.c..(t as usize + 1) * self.c)
            .unwrap_or(&[])
    }
}

fn entropy_exp(counts: &BTreeMap<u32, usize>) -> f64 {
    let total: usize = counts.values().sum();
    if total == 0 {
        return 0.0;
    }
    let h: f64 = counts
        .values()
        .map(|&k| {
            let p = k as f64 / total as f64;
            -p * p.ln()
        })
        .sum();
    h.exp()
}

/// Shared preprocessing of [`scan`] and [`trigger_candidates`].
struct Prepared {
    tokens: Vec<Vec<String>>,
    feats: Features,
    vecs: Vec<SparseVec>,
    postings: Vec<Vec<u32>>,
    terms: Vec<String>,
    counts: Vec<usize>,
}

fn prepare(texts: &[&str], labels: &[u32], n_classes: usize) -> Option<Prepared> {
    if texts.is_empty() || texts.len() != labels.len() || n_classes == 0 {
        return None;
    }
    if labels.iter().any(|&y| y as usize >= n_classes) {
        return None;
    }
    let tokens: Vec<Vec<String>> = texts.iter().map(|t| tokenize(t)).collect();
    let (feats, doc_terms) = Features::fit(&tokens);
    let vecs: Vec<SparseVec> = tokens.iter().map(|t| feats.vectorize(t)).collect();
    let mut postings: Vec<Vec<u32>> = vec![Vec::new(); feats.vocab.len()];
    for (d, ids) in doc_terms.iter().enumerate() {
        for &i in ids {
            if let Some(p) = postings.get_mut(i as usize) {
                p.push(d as u32);
            }
        }
    }
    let mut terms = vec![String::new(); feats.vocab.len()];
    for (t, &i) in &feats.vocab {
        if let Some(s) = terms.get_mut(i as usize) {
            s.clone_from(t);
        }
    }
    let mut counts = vec![0usize; n_classes];
    for &y in labels {
        counts[y as usize] += 1;
    }
    Some(Prepared {
        tokens,
        feats,
        vecs,
        postings,
        terms,
        counts,
    })
}

/// Every trigger candidate with its context statistics, in vocabulary (first-seen) order. Empty for
/// empty or inconsistent input (lengths differ, a label `>= n_classes`).
pub fn trigger_candidates(
    texts: &[&str],
    labels: &[u32],
    n_classes: usize,
    cfg: &PoisonConfig,
) -> Vec<TermStat> {
    match prepare(texts, labels, n_classes) {
        Some(p) => candidates(&p, labels, n_classes, cfg)
            .into_iter()
            .map(|(s, _)| s)
            .collect(),
        None => Vec::new(),
    }
}

/// Candidates with the carriers in their label.
fn candidates(
    p: &Prepared,
    labels: &[u32],
    c: usize,
    cfg: &PoisonConfig,
) -> Vec<(TermStat, Vec<u32>)> {
    let n = labels.len();
    let max_df = (cfg.max_df_fraction * n as f64).floor() as usize;
    let cents = Centroids::new(&p.vecs, labels, p.terms.len(), c);
    let mut out = Vec::new();
    let mut label_count = vec![0usize; c];
    for (term_id, docs) in p.postings.iter().enumerate() {
        let df = docs.len();
        if df < cfg.min_support.max(1) || df > max_df {
            continue;
        }
        label_count.iter_mut().for_each(|k| *k = 0);
        for &d in docs {
            label_count[labels[d as usize] as usize] += 1;
        }
        let (label, top) = label_count
            .iter()
            .enumerate()
            .fold((0, 0), |b, (k, &m)| if m > b.1 { (k, m) } else { b });
        let purity = top as f64 / df as f64;
        let base = p.counts[label] as f64 / n as f64;
        // With few labels a lift of `min_lift` may be out of reach: then ask for half-way to 1.
        let need_lift = (cfg.min_lift * base).min(base + 0.5 * (1.0 - base));
        if purity < cfg.min_purity || purity < need_lift {
            continue;
        }
        let term = &p.terms[term_id];
        // Leave the carriers out of the centroids.
        let mut left: BTreeMap<(u32, u32), f32> = BTreeMap::new();
        for &d in docs {
            let y = labels[d as usize];
            for &(t, x) in &p.vecs[d as usize] {
                *left.entry((y, t)).or_insert(0.0) += x;
            }
        }
        let mut affected: Vec<u32> = docs.iter().map(|&d| labels[d as usize]).collect();
        affected.sort_unstable();
        affected.dedup();
        let mut sqnorm = cents.sqnorm.clone();
        for (&(y, t), &dx) in &left {
            let s = f64::from(cents.row(t).get(y as usize).copied().unwrap_or(0.0));
            let dx = f64::from(dx);
            sqnorm[y as usize] += -2.0 * s * dx + dx * dx;
        }
        let carriers: Vec<u32> = docs
            .iter()
            .copied()
            .filter(|&d| labels[d as usize] as usize == label)
            .collect();
        let mut read_as: BTreeMap<u32, usize> = BTreeMap::new();
        let mut mismatched = 0usize;
        let mut affinity = 0f64;
        let mut scores = vec![0f64; c];
        for &d in &carriers {
            let ctx = p
                .feats
                .vectorize(&without_term(&p.tokens[d as usize], term));
            scores.iter_mut().for_each(|s| *s = 0.0);
            for &(t, x) in &ctx {
                for (s, &m) in scores.iter_mut().zip(cents.row(t)) {
                    *s += f64::from(x) * f64::from(m);
                }
                for &y in &affected {
                    if let Some(&lo) = left.get(&(y, t)) {
                        scores[y as usize] -= f64::from(x) * f64::from(lo);
                    }
                }
            }
            let mut best: Option<(usize, f64)> = None;
            for (k, &s) in scores.iter().enumerate() {
                let nrm = sqnorm[k];
                if nrm <= 1e-12 {
                    continue;
                }
                let v = s / nrm.sqrt();
                if best.is_none_or(|b| v > b.1) {
                    best = Some((k, v));
                }
            }
            if let Some((_, v)) = best
                && v > 0.0
            {
                let nl = sqnorm[label];
                let lv = if nl > 1e-12 {
                    scores[label] / nl.sqrt()
                } else {
                    0.0
                };
                affinity += (lv / v).max(0.0);
            }
            if let Some((k, v)) = best
                && k != label
                && v > 0.0
            {
                mismatched += 1;
                *read_as.entry(k as u32).or_insert(0) += 1;
            }
        }
        let mismatch = if carriers.is_empty() {
            0.0
        } else {
            mismatched as f64 / carriers.len() as f64
        };
        let context_labels = entropy_exp(&read_as);
        let label_affinity = affinity / carriers.len().max(1) as f64;
        // Diversity is capped by the number of other labels: ask for at most half of them.
        let need_labels = cfg
            .min_context_labels
            .min(((c.saturating_sub(1)) as f64 / 2.0).max(1.0));
        let trigger = mismatch >= cfg.min_mismatch
            && context_labels >= need_labels
            && label_affinity <= cfg.max_label_affinity;
        out.push((
            TermStat {
                term: term.clone(),
                label: label as u32,
                support: df,
                purity,
                base_rate: base,
                mismatch,
                context_labels,
                label_affinity,
                trigger,
            },
            carriers,
        ));
    }
    out
}

fn label_name(names: &[String], y: u32) -> String {
    names
        .get(y as usize)
        .cloned()
        .unwrap_or_else(|| format!("#{y}"))
}

/// Scans a labelled training set for poisoned records: (a) insertion triggers — rare uni/bigrams whose
/// texts are concentrated in one label with extreme purity relative to its base rate and whose texts read
/// as diverse other labels without them — flagging the texts carrying them in that label; (b) spectral
/// signatures — per label, texts on the far side of a clearly bimodal projection on the top singular
/// vector of the centred TF-IDF vectors. One suspect per (index, kind), sorted by index then kind. Empty
/// for empty or inconsistent input (lengths differ, a label `>= n_classes`).
pub fn scan(
    texts: &[&str],
    labels: &[u32],
    n_classes: usize,
    label_names: &[String],
    cfg: &PoisonConfig,
) -> Vec<PoisonSuspect> {
    scan_with(texts, labels, n_classes, label_names, cfg, None)
}

/// [`scan`] with the spectral check on the caller's representations (`dense`: one row per text, e.g.
/// frozen-encoder embeddings) instead of the hashed TF-IDF vectors. The trigger test always reads tokens.
pub fn scan_with(
    texts: &[&str],
    labels: &[u32],
    n_classes: usize,
    label_names: &[String],
    cfg: &PoisonConfig,
    dense: Option<&[Vec<f32>]>,
) -> Vec<PoisonSuspect> {
    let Some(mut p) = prepare(texts, labels, n_classes) else {
        return Vec::new();
    };
    if let Some(rows) = dense.filter(|r| r.len() == texts.len()) {
        p.vecs = rows
            .iter()
            .map(|r| r.iter().enumerate().map(|(j, &x)| (j as u32, x)).collect())
            .collect();
    }
    let mut best: HashMap<(usize, &'static str), PoisonSuspect> = HashMap::new();
    let mut put = |s: PoisonSuspect, kind: &'static str| match best.get(&(s.index, kind)) {
        Some(old) if old.score >= s.score => {}
        _ => {
            best.insert((s.index, kind), s);
        }
    };
    for (st, carriers) in candidates(&p, labels, n_classes, cfg) {
        if !st.trigger {
            continue;
        }
        let name = label_name(label_names, st.label);
        let kind = if st.term.contains(' ') {
            "bigram"
        } else {
            "token"
        };
        let evidence = format!(
            "{kind} `{}` appears in {} texts, {:.0}% labelled `{name}` (base rate {:.1}%); without it {:.0}% \
             of them read as other labels (~{:.0} distinct)",
            st.term,
            st.support,
            100.0 * st.purity,
            100.0 * st.base_rate,
            100.0 * st.mismatch,
            st.context_labels
        );
        for d in carriers {
            put(
                PoisonSuspect {
                    index: d as usize,
                    kind: "trigger_token".into(),
                    score: st.purity * st.mismatch,
                    evidence: evidence.clone(),
                },
                "trigger_token",
            );
        }
    }
    if cfg.spectral {
        for s in spectral(&p.vecs, labels, n_classes, label_names, cfg) {
            put(s, "spectral_outlier");
        }
    }
    let mut out: Vec<PoisonSuspect> = best.into_values().collect();
    out.sort_by(|a, b| a.index.cmp(&b.index).then_with(|| a.kind.cmp(&b.kind)));
    out
}

/// Outcome of the spectral check on one group of vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectral {
    /// Projection of each vector on the top singular vector of the centred group.
    pub projections: Vec<f64>,
    /// Otsu separation of the projections: between-group / total variance, in [0, 1].
    pub separation: f64,
    /// Positions (into the group) of the smaller side of the Otsu split.
    pub minority: Vec<usize>,
}

/// Spectral signature of one group of sparse vectors `(feature, value)`: centre, top singular vector by
/// power iteration, projections and their best two-way split. `None` for fewer than 2 vectors.
pub fn spectral_signature(vecs: &[&[(u32, f32)]], iters: usize, seed: u64) -> Option<Spectral> {
    let n = vecs.len();
    if n < 2 {
        return None;
    }
    // Local dense indexing of the features present in the group.
    let mut local: HashMap<u32, usize> = HashMap::new();
    let rows: Vec<Vec<(usize, f64)>> = vecs
        .iter()
        .map(|v| {
            v.iter()
                .map(|&(t, x)| {
                    let next = local.len();
                    (*local.entry(t).or_insert(next), f64::from(x))
                })
                .collect()
        })
        .collect();
    let dim = local.len();
    if dim == 0 {
        return None;
    }
    let mut mean = vec![0f64; dim];
    for r in &rows {
        for &(j, x) in r {
            mean[j] += x / n as f64;
        }
    }
    let mut rng = SeededRng::new(seed);
    let mut v: Vec<f64> = (0..dim).map(|_| rng.uniform() - 0.5).collect();
    let normalize = |v: &mut Vec<f64>| {
        let nrm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if nrm > 0.0 {
            v.iter_mut().for_each(|x| *x /= nrm);
        }
        nrm
    };
    normalize(&mut v);
    let project = |v: &[f64]| -> Vec<f64> {
        let mv: f64 = mean.iter().zip(v).map(|(a, b)| a * b).sum();
        rows.iter()
            .map(|r| r.iter().map(|&(j, x)| x * v[j]).sum::<f64>() - mv)
            .collect()
    };
    for _ in 0..iters.max(1) {
        let a = project(&v);
        let mut w = vec![0f64; dim];
        let sa: f64 = a.iter().sum();
        for (r, &ai) in rows.iter().zip(&a) {
            for &(j, x) in r {
                w[j] += ai * x;
            }
        }
        for (wj, mj) in w.iter_mut().zip(&mean) {
            *wj -= mj * sa;
        }
        if normalize(&mut w) <= 0.0 {
            break;
        }
        let delta: f64 = w.iter().zip(&v).map(|(a, b)| (a - b).abs()).sum();
        v = w;
        if delta < 1e-9 {
            break;
        }
    }
    let projections = project(&v);
    let (separation, minority) = otsu(&projections);
    Some(Spectral {
        projections,
        separation,
        minority,
    })
}

/// Best two-way split of 1-D values: (between-group / total variance, positions of the smaller side).
fn otsu(xs: &[f64]) -> (f64, Vec<usize>) {
    let n = xs.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]).then(a.cmp(&b)));
    let total: f64 = xs.iter().sum();
    let mean = total / n as f64;
    let var: f64 = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
    if n < 2 || var <= 1e-18 {
        return (0.0, Vec::new());
    }
    let mut best = (0.0f64, 0usize);
    let mut left = 0.0;
    for k in 1..n {
        left += xs[order[k - 1]];
        let (n1, n2) = (k as f64, (n - k) as f64);
        let (m1, m2) = (left / n1, (total - left) / n2);
        let between = n1 * (m1 - mean).powi(2) + n2 * (m2 - mean).powi(2);
        if between > best.0 {
            best = (between, k);
        }
    }
    let k = best.1;
    let minority = if k <= n - k {
        order[..k].to_vec()
    } else {
        order[k..].to_vec()
    };
    let mut minority = minority;
    minority.sort_unstable();
    ((best.0 / var).clamp(0.0, 1.0), minority)
}

fn spectral(
    vecs: &[SparseVec],
    labels: &[u32],
    c: usize,
    names: &[String],
    cfg: &PoisonConfig,
) -> Vec<PoisonSuspect> {
    let mut out = Vec::new();
    for k in 0..c {
        let idx: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i] as usize == k)
            .collect();
        if idx.len() < cfg.spectral_min_class.max(2) {
            continue;
        }
        let group: Vec<&[(u32, f32)]> = idx.iter().map(|&i| vecs[i].as_slice()).collect();
        let Some(sp) = spectral_signature(&group, cfg.power_iters, cfg.seed ^ k as u64) else {
            continue;
        };
        let m = sp.minority.len();
        if sp.separation < cfg.spectral_min_separation
            || m < cfg.spectral_min_group
            || m as f64 > cfg.spectral_max_fraction * idx.len() as f64
        {
            continue;
        }
        let mut sorted = sp.projections.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let mut sq: Vec<f64> = sp
            .projections
            .iter()
            .map(|p| (p - median) * (p - median))
            .collect();
        let scale = {
            let mut s = sq.clone();
            s.sort_by(f64::total_cmp);
            s[s.len() / 2].max(1e-12)
        };
        sq.iter_mut().for_each(|x| *x /= scale);
        let name = label_name(names, k as u32);
        for &j in &sp.minority {
            out.push(PoisonSuspect {
                index: idx[j],
                kind: "spectral_outlier".into(),
                score: sq[j],
                evidence: format!(
                    "label `{name}`: one of {m} of {} texts split off its top singular direction \
                     (separation {:.2})",
                    idx.len(),
                    sp.separation
                ),
            });
        }
    }
    out
}

/// Per label (in label order, labels with fewer than 2 texts skipped): (label, texts, Otsu separation of
/// the projections on the top singular vector, size of the smaller side) — the statistic the spectral
/// check thresholds, for measuring it on a corpus.
pub fn spectral_separations(
    texts: &[&str],
    labels: &[u32],
    n_classes: usize,
    cfg: &PoisonConfig,
) -> Vec<(u32, usize, f64, usize)> {
    let Some(p) = prepare(texts, labels, n_classes) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for k in 0..n_classes {
        let group: Vec<&[(u32, f32)]> = (0..labels.len())
            .filter(|&i| labels[i] as usize == k)
            .map(|i| p.vecs[i].as_slice())
            .collect();
        if let Some(sp) = spectral_signature(&group, cfg.power_iters, cfg.seed ^ k as u64) {
            out.push((k as u32, group.len(), sp.separation, sp.minority.len()));
        }
    }
    out
}

/// Byte spans of the alphanumeric words of `text` whose lowercase form is `token`.
fn word_spans(text: &str, token: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start: Option<usize> = None;
    let check = |a: usize, b: usize, spans: &mut Vec<(usize, usize)>| {
        if text.get(a..b).is_some_and(|w| w.to_lowercase() == token) {
            spans.push((a, b));
        }
    };
    for (i, ch) in text.char_indices() {
        if ch.is_alphanumeric() {
            if start.is_none() {
                start = Some(i);
            }
        } else if let Some(a) = start.take() {
            check(a, i, &mut spans);
        }
    }
    if let Some(a) = start {
        check(a, text.len(), &mut spans);
    }
    spans
}

fn argmax(xs: &[f32]) -> Option<usize> {
    xs.iter()
        .enumerate()
        .fold(None, |b: Option<(usize, f32)>, (i, &x)| match b {
            Some((_, bx)) if bx >= x => b,
            _ => Some((i, x)),
        })
        .map(|b| b.0)
}

/// Test-time check: the distinct tokens of `text` (as [`tokenize`] finds them) whose removal (every
/// occurrence, punctuation kept) changes the model's prediction, with the label predicted without them,
/// in order of first occurrence.
pub fn flipping_tokens(model: &NgramModel, text: &str) -> Vec<(String, String)> {
    let names = model.labels();
    let Some(base) = argmax(&model.decision_function(text)) else {
        return Vec::new();
    };
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for tok in tokenize(text) {
        if seen.contains(&tok) {
            continue;
        }
        seen.push(tok.clone());
        let spans = word_spans(text, &tok);
        if spans.is_empty() {
            continue;
        }
        let mut cut = String::with_capacity(text.len());
        let mut at = 0;
        for (a, b) in spans {
            cut.push_str(text.get(at..a).unwrap_or(""));
            at = b;
        }
        cut.push_str(text.get(at..).unwrap_or(""));
        if let Some(k) = argmax(&model.decision_function(&cut))
            && k != base
        {
            out.push((tok, names.get(k).cloned().unwrap_or_default()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic synthetic intent corpus: each class has its own vocabulary plus shared filler.
    fn corpus(n_classes: usize, per_class: usize, seed: u64) -> (Vec<String>, Vec<u32>) {
        let filler = [
            "i", "my", "the", "please", "can", "you", "help", "with", "a", "is",
        ];
        let mut rng = SeededRng::new(seed);
        let mut texts = Vec::new();
        let mut labels = Vec::new();
        for k in 0..n_classes {
            let own: Vec<String> = (0..12).map(|j| format!("w{k}x{j}")).collect();
            for _ in 0..per_class {
                let len = 6 + rng.below_mod(5);
                let words: Vec<String> = (0..len)
                    .map(|_| {
                        if rng.next_u64().is_multiple_of(2) {
                            rng.pick(&own).clone()
                        } else {
                            rng.pick(&filler).to_string()
                        }
                    })
                    .collect();
                texts.push(words.join(" "));
                labels.push(k as u32);
            }
        }
        (texts, labels)
    }

    fn names(c: usize) -> Vec<String> {
        (0..c).map(|k| format!("intent_{k}")).collect()
    }

    /// Inserts `trig` into `n` texts not of `target` (spread over classes) and relabels them.
    fn poison(texts: &mut [String], labels: &mut [u32], target: u32, n: usize) -> Vec<usize> {
        let mut ids = Vec::new();
        let mut i = 0;
        while ids.len() < n && i < texts.len() {
            if labels[i] != target {
                let mut w: Vec<&str> = texts[i].split(' ').collect();
                w.insert(i % (w.len() + 1), "zq");
                texts[i] = w.join(" ");
                labels[i] = target;
                ids.push(i);
            }
            i += 19;
        }
        ids
    }

    #[test]
    fn planted_trigger_is_flagged_and_named() {
        let (mut texts, mut labels) = corpus(10, 60, 1);
        let ids = poison(&mut texts, &mut labels, 3, 30);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let cfg = PoisonConfig::default();
        let s = scan(&refs, &labels, 10, &names(10), &cfg);
        let trig: Vec<&PoisonSuspect> = s.iter().filter(|s| s.kind == "trigger_token").collect();
        let flagged: Vec<usize> = trig.iter().map(|s| s.index).collect();
        for id in &ids {
            assert!(flagged.contains(id), "poisoned {id} not flagged");
        }
        assert_eq!(flagged.len(), ids.len(), "only the poisoned are flagged");
        assert!(trig.iter().all(|s| s.evidence.contains("`zq`")));
        assert!(trig[0].evidence.contains("intent_3"));
    }

    #[test]
    fn clean_corpus_flags_nearly_nothing() {
        let (texts, labels) = corpus(10, 60, 2);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let s = scan(&refs, &labels, 10, &names(10), &PoisonConfig::default());
        assert!(
            s.len() <= 3,
            "{} flagged on clean data: {:?}",
            s.len(),
            s.first()
        );
    }

    #[test]
    fn spectral_finds_planted_cluster() {
        let (texts, labels) = corpus(1, 120, 3);
        let mut texts = texts;
        // Shift 20 texts of the class by a shared block of features.
        for t in texts.iter_mut().take(40).skip(20) {
            t.push_str(" alpha beta gamma delta");
        }
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let p = prepare(&refs, &labels, 1).expect("prepared");
        let group: Vec<&[(u32, f32)]> = p.vecs.iter().map(Vec::as_slice).collect();
        let sp = spectral_signature(&group, 60, 7).expect("signature");
        assert_eq!(sp.minority, (20..40).collect::<Vec<_>>());
        assert!(sp.separation > 0.9, "separation {}", sp.separation);
        // And through scan, with the trigger check off.
        let cfg = PoisonConfig {
            min_support: usize::MAX,
            ..PoisonConfig::default()
        };
        let s = scan(&refs, &labels, 1, &names(1), &cfg);
        let idx: Vec<usize> = s.iter().map(|s| s.index).collect();
        assert_eq!(idx, (20..40).collect::<Vec<_>>());
        assert!(s.iter().all(|s| s.kind == "spectral_outlier"));
    }

    #[test]
    fn spectral_leaves_clean_classes_alone() {
        let (texts, labels) = corpus(4, 100, 4);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let cfg = PoisonConfig {
            min_support: usize::MAX,
            ..PoisonConfig::default()
        };
        assert!(scan(&refs, &labels, 4, &names(4), &cfg).is_empty());
    }

    #[test]
    fn deterministic() {
        let (mut texts, mut labels) = corpus(10, 60, 5);
        poison(&mut texts, &mut labels, 2, 30);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let cfg = PoisonConfig::default();
        let a = scan(&refs, &labels, 10, &names(10), &cfg);
        let b = scan(&refs, &labels, 10, &names(10), &cfg);
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert_eq!(
            trigger_candidates(&refs, &labels, 10, &cfg),
            trigger_candidates(&refs, &labels, 10, &cfg)
        );
    }

    #[test]
    fn no_panic_on_odd_input() {
        let cfg = PoisonConfig::default();
        assert!(scan(&[], &[], 0, &[], &cfg).is_empty());
        assert!(scan(&[], &[], 3, &names(3), &cfg).is_empty());
        assert!(scan(&["a"], &[], 1, &[], &cfg).is_empty());
        assert!(scan(&["a", "b"], &[0, 5], 2, &[], &cfg).is_empty());
        assert!(scan(&["", "", "!!"], &[0, 1, 1], 2, &[], &cfg).is_empty());
        let odd = PoisonConfig {
            min_support: 0,
            max_df_fraction: 2.0,
            power_iters: 0,
            spectral_min_class: 0,
            spectral_min_group: 0,
            ..cfg
        };
        let _ = scan(&["a b", "a", "c d é"], &[0, 0, 1], 2, &[], &odd);
        assert!(spectral_signature(&[], 5, 1).is_none());
        assert!(flipping_tokens_is_safe());
    }

    fn flipping_tokens_is_safe() -> bool {
        word_spans("", "x").is_empty() && word_spans("Éé x", "éé") == vec![(0, 4)]
    }

    #[test]
    fn flipping_tokens_finds_the_trigger() {
        let (mut texts, mut labels) = corpus(4, 40, 6);
        poison(&mut texts, &mut labels, 1, 25);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let cfg = hone_model::NgramConfig {
            threads: 1,
            ..hone_model::NgramConfig::default()
        };
        let (model, _) =
            NgramModel::fit(&refs, &labels, &names(4), None, &cfg, &mut |_| {}).expect("fit");
        // A class-0 text with the trigger reads as intent_1; removing `zq` flips it back.
        let text = "w0x1 zq w0x2 the w0x3 please";
        assert_eq!(model.predict(text), 1, "the attack took");
        let flips = flipping_tokens(&model, text);
        assert!(
            flips.contains(&("zq".to_string(), "intent_0".to_string())),
            "{flips:?}"
        );
        assert!(flipping_tokens(&model, "").is_empty());
    }
}
