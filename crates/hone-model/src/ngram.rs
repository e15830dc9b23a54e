//! The `ngram` text classifier: hashed word and character n-grams with sublinear TF-IDF weights, each block
//! L2-normalised (as scikit-learn's `FeatureUnion` of two `TfidfVectorizer`s), and a one-vs-rest linear SVM
//! (squared hinge, L2, liblinear's dual coordinate descent) whose scores become probabilities through a
//! softmax with a temperature fitted on the dev set.
//!
//! Only the hash buckets seen in training get a weight row: the model keeps a `bucket -> row` table (4 bytes
//! per bucket) and `rows x classes` f32 weights laid out `[row][class]`, so a feature touches one contiguous
//! class row. Features absent from training are dropped before normalisation (like a fitted
//! `TfidfVectorizer` vocabulary).

use crate::features::{Featurizer, Scratch, counts};
use crate::metrics::{accuracy, argmax, macro_f1};
use crate::store;
use hone_core::rng::SeededRng;
use hone_core::{Error, Result};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Mixed into every seed before it reaches [`SeededRng`], so streams (fold shuffles, dev carving,
/// distillation order) stay what they have always been for a given config seed.
const SEED_MIX: u64 = 0x9E37_79B9_7F4A_7C15;

const FORMAT: &str = "hone-ngram";
const FORMAT_VERSION: u32 = 1;
const WEIGHTS_FILE: &str = "model.safetensors";
const META_FILE: &str = "model.json";
const NO_ROW: u32 = u32::MAX;

/// Settings of [`NgramModel::fit`]. Every field has a default (see [`NgramConfig::default`]); a JSON
/// object with only some fields deserialises with the defaults for the rest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NgramConfig {
    /// Hashed feature space size (default 2^20). Memory is 4 bytes per bucket for the bucket → row table
    /// plus `rows_seen_in_training × classes × 4` bytes of weights, so large values are cheap.
    pub buckets: usize,
    /// Word n-gram orders, inclusive (default (1, 2)); words are maximal alphanumeric runs. (0, 0) disables.
    pub word_ngrams: (usize, usize),
    /// Character n-gram orders, inclusive (default (2, 5)). (0, 0) disables.
    pub char_ngrams: (usize, usize),
    /// Char n-grams inside space-padded whitespace tokens, like scikit-learn's `char_wb` (default true);
    /// false takes them over the whole whitespace-normalised text.
    pub char_within_words: bool,
    /// Lowercase the text first (default true).
    pub lowercase: bool,
    /// Term frequency as `1 + ln(tf)` (default true).
    pub sublinear_tf: bool,
    /// Multiply by the smoothed training idf `ln((1 + n) / (1 + df)) + 1` (default true).
    pub idf: bool,
    /// Maximum passes of dual coordinate descent per `l2` value (default 12).
    pub max_epochs: usize,
    /// Stop after this many epochs without a dev macro-F1 gain above `min_delta` (default 1: on
    /// banking77 patience 2 cost 40% more training time for no accuracy gain).
    pub patience: usize,
    /// Minimum dev macro-F1 gain that counts as an improvement (default 1e-4).
    pub min_delta: f64,
    /// Candidate regularisation strengths `l2 = 1 / C` in liblinear's objective
    /// `0.5·|w|² + C·Σ squared-hinge` (scikit-learn `LinearSVC()` is l2 = 1). The best dev macro-F1 wins;
    /// ties go to the earlier value. Default [0.5, 1.0].
    pub l2_grid: Vec<f32>,
    /// Fraction of train carved (seeded, stratified) as the dev set when `fit` gets no dev set
    /// (default 0.1).
    pub dev_fraction: f64,
    /// When the dev set was carved from train: retrain on all of train with the chosen `l2` for the best
    /// number of epochs (default true).
    pub refit: bool,
    /// Epochs of the refit, warm-started from the selected model's dual variables (the carved dev
    /// examples start at zero); 0 = retrain from scratch for the selected number of epochs (default 2).
    pub refit_epochs: usize,
    /// Seed of the dev carve and of the per-epoch example order (default 42).
    pub seed: u64,
    /// Worker threads for featurisation, training and batch prediction; 0 = `RAYON_NUM_THREADS` when set
    /// (`hone --threads N` sets it), else all cores (default 0).
    /// Training is deterministic for a seed whatever this is: threads split the one-vs-rest classes, and
    /// every class sees the same example order, so the weights are bit-identical for any thread count.
    pub threads: usize,
}

impl Default for NgramConfig {
    fn default() -> Self {
        NgramConfig {
            buckets: 1 << 20,
            word_ngrams: (1, 2),
            char_ngrams: (2, 5),
            char_within_words: true,
            lowercase: true,
            sublinear_tf: true,
            idf: true,
            max_epochs: 12,
            patience: 1,
            min_delta: 1e-4,
            l2_grid: vec![0.5, 1.0],
            dev_fraction: 0.1,
            refit: true,
            refit_epochs: 2,
            seed: 42,
            threads: 0,
        }
    }
}

impl NgramConfig {
    /// Checks every field; the message names the field and the accepted range.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Usage(format!("ngram config: {m}")));
        if self.buckets == 0 || self.buckets > 1 << 30 {
            return bad(format!("buckets must be in 1..=2^30, got {}", self.buckets));
        }
        for (name, (lo, hi), max) in [
            ("word_ngrams", self.word_ngrams, 8),
            ("char_ngrams", self.char_ngrams, 16),
        ] {
            if !((lo == 0 && hi == 0) || (1 <= lo && lo <= hi && hi <= max)) {
                return bad(format!(
                    "{name} must be (0, 0) or (lo, hi) with 1 <= lo <= hi <= {max}, got ({lo}, {hi})"
                ));
            }
        }
        if self.word_ngrams.0 == 0 && self.char_ngrams.0 == 0 {
            return bad("word_ngrams and char_ngrams are both disabled".into());
        }
        if self.max_epochs == 0 {
            return bad("max_epochs must be at least 1".into());
        }
        if !self.min_delta.is_finite() || self.min_delta < 0.0 {
            return bad(format!(
                "min_delta must be a finite number >= 0, got {}",
                self.min_delta
            ));
        }
        if self.l2_grid.is_empty() || self.l2_grid.iter().any(|&l| !(l.is_finite() && l > 0.0)) {
            return bad(format!(
                "l2_grid must be a non-empty list of positive numbers, got {:?}",
                self.l2_grid
            ));
        }
        if !(self.dev_fraction > 0.0 && self.dev_fraction < 1.0) {
            return bad(format!(
                "dev_fraction must be in (0, 1), got {}",
                self.dev_fraction
            ));
        }
        Ok(())
    }

    fn featurizer(&self) -> Featurizer {
        Featurizer {
            buckets: self.buckets as u64,
            word: self.word_ngrams,
            chars: self.char_ngrams,
            char_within_words: self.char_within_words,
            lowercase: self.lowercase,
        }
    }

    fn n_threads(&self) -> usize {
        if self.threads == 0 {
            // `hone --threads N` sets RAYON_NUM_THREADS, which candle's kernels also follow.
            std::env::var("RAYON_NUM_THREADS")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|&n| n > 0)
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        } else {
            self.threads
        }
    }
}

/// One epoch of one `l2` value during selection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    pub l2: f32,
    /// 1-based.
    pub epoch: usize,
    /// Mean over training examples of the summed one-vs-rest squared hinge loss, measured during the pass.
    pub train_loss: f64,
    pub dev_macro_f1: f64,
    pub dev_accuracy: f64,
}

/// What [`NgramModel::fit`] did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainReport {
    /// Every selection epoch, in order (all `l2` values).
    pub epochs: Vec<EpochStats>,
    pub chosen_l2: f32,
    /// Epoch (1-based) of the best dev macro-F1 for `chosen_l2`.
    pub best_epoch: usize,
    pub best_dev_macro_f1: f64,
    /// Whether any `l2` run stopped before `max_epochs` on patience.
    pub stopped_early: bool,
    /// Weight rows (hash buckets seen in training).
    pub n_features_nonzero: usize,
    /// Epochs of the final refit on all of train (0 if no refit).
    pub refit_epochs: usize,
    /// Softmax temperature fitted on dev (minimum dev log-loss).
    pub temperature: f32,
    pub n_train: usize,
    /// Dev examples used for selection; `dev_carved` says whether they came out of train.
    pub n_dev: usize,
    pub dev_carved: bool,
    pub wall_seconds: f64,
}

/// Per-model file metadata (`model.json`).
#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    format_version: u32,
    solver: String,
    labels: Vec<String>,
    temperature: f32,
    n_rows: usize,
    config: NgramConfig,
}

/// Bucket → row table and per-row idf: turns hashed ids into normalised sparse vectors.
#[derive(Clone, Debug, PartialEq)]
struct Vocab {
    map: Vec<u32>,
    idf: Vec<f32>,
    sublinear: bool,
}

/// Reusable per-thread buffers for vectorising.
#[derive(Default)]
struct Work {
    scratch: Scratch,
    tmp: Vec<(u32, u32)>,
    vec: Vec<(u32, f32)>,
}

impl Vocab {
    /// Appends the L2-normalised word block and char block of the last extracted text to `w.vec`.
    fn vectorize(&self, w: &mut Work) {
        w.vec.clear();
        for block in [&w.scratch.word_ids, &w.scratch.char_ids] {
            counts(block, &mut w.tmp);
            let start = w.vec.len();
            let mut norm = 0.0f32;
            for (i, &(id, tf)) in w.tmp.iter().enumerate() {
                // The bucket table is larger than the cache too (see `add_rows_avx2`).
                if let Some(&(ahead, _)) = w.tmp.get(i + PREFETCH_AHEAD) {
                    prefetch(&self.map, ahead as usize);
                }
                let row = self.map.get(id as usize).copied().unwrap_or(NO_ROW);
                let Some(&idf) = self.idf.get(row as usize) else {
                    continue;
                };
                let tf = if tf == 1 {
                    1.0
                } else if self.sublinear {
                    1.0 + (tf as f32).ln()
                } else {
                    tf as f32
                };
                let v = tf * idf;
                norm += v * v;
                w.vec.push((row, v));
            }
            if norm > 0.0 {
                let inv = 1.0 / norm.sqrt();
                for p in &mut w.vec[start..] {
                    p.1 *= inv;
                }
            }
        }
    }
}

/// `out += v · weights[row]` for every `(row, v)`: the scoring loop of every prediction. Compiled
/// twice, with AVX2 where the CPU has it: the same multiplications and additions in the same order
/// (no fused multiply-add), so both give the same bits.
fn add_rows(out: &mut [f32], weights: &[f32], c: usize, vec: &[(u32, f32)]) {
    #[cfg(target_arch = "x86_64")]
    {
        static AVX2: std::sync::LazyLock<bool> =
            std::sync::LazyLock::new(|| std::arch::is_x86_feature_detected!("avx2"));
        if *AVX2 {
            // SAFETY: the CPU has AVX2 (checked above).
            unsafe { add_rows_avx2(out, weights, c, vec) };
            return;
        }
    }
    add_rows_plain(out, weights, c, vec);
}

#[inline(always)]
fn add_rows_plain(out: &mut [f32], weights: &[f32], c: usize, vec: &[(u32, f32)]) {
    for &(r, v) in vec {
        if let Some(row) = weights.get(r as usize * c..(r as usize + 1) * c) {
            for (s, x) in out.iter_mut().zip(row) {
                *s += v * x;
            }
        }
    }
}

/// How many features ahead of the one being scored the scoring loops ask the cache for.
const PREFETCH_AHEAD: usize = 8;

/// Ask the cache for `v[i]` (nothing when `i` is out of range, or off x86-64).
#[inline(always)]
fn prefetch<T>(v: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(x) = v.get(i) {
        // SAFETY: SSE is part of x86-64; the address is an element of `v` (a prefetch never faults).
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                std::ptr::from_ref(x).cast::<i8>(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (v, i);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn add_rows_avx2(out: &mut [f32], weights: &[f32], c: usize, vec: &[(u32, f32)]) {
    // A text's rows are scattered over a weight matrix larger than the cache: each row's load waited
    // on memory. Asking for the rows a few features ahead overlaps those waits; prefetching changes
    // no arithmetic, so the bits are the plain loop's.
    for (i, &(r, v)) in vec.iter().enumerate() {
        if let Some(&(ahead, _)) = vec.get(i + PREFETCH_AHEAD) {
            // One request per 64-byte line of the row.
            for k in (0..c).step_by(16) {
                prefetch(weights, ahead as usize * c + k);
            }
        }
        add_rows_plain(out, weights, c, &[(r, v)]);
    }
}

/// Sparse rows (CSR) of vectorised texts.
#[derive(Default)]
struct Csr {
    ptr: Vec<usize>,
    idx: Vec<u32>,
    val: Vec<f32>,
}

impl Csr {
    fn new() -> Self {
        Csr {
            ptr: vec![0],
            ..Default::default()
        }
    }
    fn len(&self) -> usize {
        self.ptr.len() - 1
    }
    fn push(&mut self, row: &[(u32, f32)]) {
        self.idx.extend(row.iter().map(|p| p.0));
        self.val.extend(row.iter().map(|p| p.1));
        self.ptr.push(self.idx.len());
    }
    fn row(&self, i: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.ptr[i], self.ptr[i + 1]);
        (&self.idx[a..b], &self.val[a..b])
    }
    fn append(&mut self, other: Csr) {
        let base = self.idx.len();
        self.idx.extend(other.idx);
        self.val.extend(other.val);
        self.ptr.extend(other.ptr[1..].iter().map(|p| p + base));
    }
}

/// Runs `f` on contiguous chunks of `0..n` on up to `threads` threads; results in chunk order.
fn par_chunks<T: Send>(
    n: usize,
    threads: usize,
    f: impl Fn(std::ops::Range<usize>) -> T + Sync,
) -> Result<Vec<T>> {
    let t = threads.clamp(1, n.max(1));
    let step = n.div_ceil(t).max(1);
    let ranges: Vec<_> = (0..t)
        .map(|i| (i * step).min(n)..((i + 1) * step).min(n))
        .collect();
    if t == 1 {
        return Ok(ranges.into_iter().map(&f).collect());
    }
    std::thread::scope(|s| {
        let f = &f;
        let handles: Vec<_> = ranges[1..]
            .iter()
            .cloned()
            .map(|r| s.spawn(move || f(r)))
            .collect();
        let mut out = vec![f(ranges[0].clone())];
        for h in handles {
            out.push(
                h.join()
                    .map_err(|_| Error::Internal("ngram: a worker thread panicked".into()))?,
            );
        }
        Ok(out)
    })
}

/// One thread's share of the one-vs-rest problems: classes `m0..m0 + nm` of the binary models.
struct Block {
    m0: usize,
    nm: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    alpha: Vec<f32>,
}

/// What the selection loop needs from the dataset.
struct Problem<'a> {
    x: &'a Csr,
    y: &'a [u32],
    /// Rows of `x` to train on.
    train: &'a [u32],
    sqnorm: Vec<f32>,
    n_rows: usize,
    /// Binary models (1 for two classes, else the number of classes).
    n_models: usize,
    binary: bool,
}

impl Problem<'_> {
    #[inline]
    fn positive(&self, m: usize, y: u32) -> bool {
        if self.binary { y == 1 } else { y as usize == m }
    }
}

/// One pass of dual coordinate descent (squared hinge, no upper bound) over `order` for one block.
fn block_epoch(p: &Problem, blk: &mut Block, order: &[u32], d: f32) -> f64 {
    let nm = blk.nm;
    let mut scores = vec![0f32; nm];
    let mut delta = vec![0f32; nm];
    let mut changed: Vec<usize> = Vec::with_capacity(nm);
    let mut loss = 0f64;
    for &k in order {
        let k = k as usize;
        let i = p.train[k] as usize;
        let (idx, val) = p.x.row(i);
        let y = p.y[i];
        scores.copy_from_slice(&blk.b);
        for (&r, &v) in idx.iter().zip(val) {
            let row = &blk.w[r as usize * nm..][..nm];
            for (s, w) in scores.iter_mut().zip(row) {
                *s += v * w;
            }
        }
        let q = p.sqnorm[i] + 1.0 + d;
        let alpha = &mut blk.alpha[k * nm..][..nm];
        changed.clear();
        for c in 0..nm {
            let yc = if p.positive(blk.m0 + c, y) {
                1.0f32
            } else {
                -1.0
            };
            let margin = 1.0 - yc * scores[c];
            if margin > 0.0 {
                loss += (margin * margin) as f64;
            }
            let g = -margin + d * alpha[c];
            let pg = if alpha[c] == 0.0 { g.min(0.0) } else { g };
            if pg.abs() > 1e-12 {
                let old = alpha[c];
                let new = (old - g / q).max(0.0);
                alpha[c] = new;
                delta[c] = (new - old) * yc;
                changed.push(c);
            }
        }
        if changed.is_empty() {
            continue;
        }
        for &c in &changed {
            blk.b[c] += delta[c];
        }
        if changed.len() * 4 < nm {
            for (&r, &v) in idx.iter().zip(val) {
                let row = &mut blk.w[r as usize * nm..][..nm];
                for &c in &changed {
                    row[c] += v * delta[c];
                }
            }
        } else {
            // `delta` is zero for the unchanged models.
            for (&r, &v) in idx.iter().zip(val) {
                let row = &mut blk.w[r as usize * nm..][..nm];
                for (w, dl) in row.iter_mut().zip(&delta) {
                    *w += v * dl;
                }
            }
        }
        for &c in &changed {
            delta[c] = 0.0;
        }
    }
    loss
}

/// Scores of the block's models for every row of `x`: `out[j * nm + c]`.
fn block_scores(blk: &Block, x: &Csr, rows: &[u32]) -> Vec<f32> {
    let nm = blk.nm;
    let mut out = vec![0f32; rows.len() * nm];
    for (j, &i) in rows.iter().enumerate() {
        let s = &mut out[j * nm..][..nm];
        s.copy_from_slice(&blk.b);
        let (idx, val) = x.row(i as usize);
        for (&r, &v) in idx.iter().zip(val) {
            for (s, w) in s.iter_mut().zip(&blk.w[r as usize * nm..][..nm]) {
                *s += v * w;
            }
        }
    }
    out
}

/// Full per-class scores `[example][class]` from the blocks' model scores.
fn class_scores(
    p: &Problem,
    parts: &[(usize, usize, Vec<f32>)],
    n: usize,
    n_classes: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; n * n_classes];
    for (m0, nm, s) in parts {
        for j in 0..n {
            for c in 0..*nm {
                let v = s[j * nm + c];
                if p.binary {
                    out[j * 2] = -v;
                    out[j * 2 + 1] = v;
                } else {
                    out[j * n_classes + m0 + c] = v;
                }
            }
        }
    }
    out
}

fn predictions(scores: &[f32], n_classes: usize) -> Vec<u32> {
    scores.chunks(n_classes).map(|s| argmax(s) as u32).collect()
}

struct RunResult {
    best_f1: f64,
    best_epoch: usize,
    stopped_early: bool,
    /// Weights `[row][model]` and bias of the best epoch, and the dev scores then.
    w: Vec<f32>,
    b: Vec<f32>,
    /// Dual variables `[position in p.train][model]` matching `w` and `b`.
    alpha: Vec<f32>,
    dev_scores: Vec<f32>,
}

/// A starting point for [`run`]: merged weights `[row][model]`, bias, and duals `[position][model]`.
struct Init<'a> {
    w: &'a [f32],
    b: &'a [f32],
    alpha: &'a [f32],
}

/// Dev data for early stopping: vectors, their rows in them, gold labels, patience, min_delta.
type DevEval<'a> = (&'a Csr, &'a [u32], &'a [u32], usize, f64);

/// Trains one `l2` value: `epochs` passes, or early stopping on dev if `dev` is given.
#[allow(clippy::too_many_arguments)]
fn run(
    p: &Problem,
    n_classes: usize,
    l2: f32,
    epochs: usize,
    dev: Option<DevEval>,
    seed: u64,
    threads: usize,
    init: Option<Init>,
    log: &mut Vec<EpochStats>,
    on_epoch: &mut dyn FnMut(&EpochStats),
) -> Result<RunResult> {
    let n_tr = p.train.len();
    let t = threads.clamp(1, p.n_models);
    let step = p.n_models.div_ceil(t);
    let mut blocks: Vec<Block> = (0..t)
        .map(|i| {
            let m0 = (i * step).min(p.n_models);
            let nm = ((i + 1) * step).min(p.n_models) - m0;
            Block {
                m0,
                nm,
                w: vec![0.0; p.n_rows * nm],
                b: vec![0.0; nm],
                alpha: vec![0.0; n_tr * nm],
            }
        })
        .filter(|b| b.nm > 0)
        .collect();
    if let Some(init) = init {
        let nm_all = p.n_models;
        if init.w.len() != p.n_rows * nm_all
            || init.b.len() != nm_all
            || init.alpha.len() != n_tr * nm_all
        {
            return Err(Error::Internal(
                "ngram: warm start of the wrong shape".into(),
            ));
        }
        for blk in &mut blocks {
            let (m0, nm) = (blk.m0, blk.nm);
            for r in 0..p.n_rows {
                blk.w[r * nm..][..nm].copy_from_slice(&init.w[r * nm_all + m0..][..nm]);
            }
            for k in 0..n_tr {
                blk.alpha[k * nm..][..nm].copy_from_slice(&init.alpha[k * nm_all + m0..][..nm]);
            }
            blk.b.copy_from_slice(&init.b[m0..m0 + nm]);
        }
    }
    let d = 0.5 * l2; // D_ii = 1 / (2C), C = 1 / l2
    let mut order: Vec<u32> = (0..n_tr as u32).collect();
    let mut rng = SeededRng::new(seed ^ SEED_MIX);
    let mut best = RunResult {
        best_f1: -1.0,
        best_epoch: 0,
        stopped_early: false,
        w: vec![],
        b: vec![],
        alpha: vec![],
        dev_scores: vec![],
    };
    let mut bad = 0;
    for epoch in 1..=epochs {
        rng.shuffle(&mut order);
        let order = &order;
        let dev_rows = dev.map(|(x, rows, _, _, _)| (x, rows));
        let work = |blk: &mut Block| {
            let loss = block_epoch(p, blk, order, d);
            let s = dev_rows
                .map(|(x, rows)| block_scores(blk, x, rows))
                .unwrap_or_default();
            (blk.m0, blk.nm, loss, s)
        };
        let results: Vec<(usize, usize, f64, Vec<f32>)> = if blocks.len() == 1 {
            blocks.iter_mut().map(work).collect()
        } else {
            std::thread::scope(|s| {
                let work = &work;
                let (first, rest) = blocks.split_at_mut(1);
                let handles: Vec<_> = rest.iter_mut().map(|b| s.spawn(move || work(b))).collect();
                let mut out = vec![work(&mut first[0])];
                for h in handles {
                    out.push(h.join().map_err(|_| {
                        Error::Internal("ngram: a training thread panicked".into())
                    })?);
                }
                Ok::<_, Error>(out)
            })?
        };
        let train_loss = results.iter().map(|r| r.2).sum::<f64>() / n_tr.max(1) as f64;
        let Some((_, rows, gold, patience, min_delta)) = dev else {
            continue;
        };
        let parts: Vec<_> = results
            .into_iter()
            .map(|(m0, nm, _, s)| (m0, nm, s))
            .collect();
        let scores = class_scores(p, &parts, rows.len(), n_classes);
        let pred = predictions(&scores, n_classes);
        let st = EpochStats {
            l2,
            epoch,
            train_loss,
            dev_macro_f1: macro_f1(gold, &pred),
            dev_accuracy: accuracy(gold, &pred),
        };
        on_epoch(&st);
        log.push(st.clone());
        if st.dev_macro_f1 > best.best_f1 + min_delta || best.best_epoch == 0 {
            best.best_f1 = st.dev_macro_f1;
            best.best_epoch = epoch;
            best.dev_scores = scores;
            best.w.clear();
            best.b.clear();
            best.alpha.clear();
            bad = 0;
            if epoch < epochs {
                // Snapshot only when another epoch may follow; the last one is taken below.
                best.w = merge(p.n_rows, p.n_models, &blocks, |b| &b.w);
                best.b = merge_bias(&blocks);
                best.alpha = merge(n_tr, p.n_models, &blocks, |b| &b.alpha);
            }
        } else {
            bad += 1;
            if bad >= patience.max(1) && epoch < epochs {
                best.stopped_early = true;
                break;
            }
        }
    }
    if best.w.is_empty() {
        best.w = merge(p.n_rows, p.n_models, &blocks, |b| &b.w);
        best.b = merge_bias(&blocks);
        best.alpha = merge(n_tr, p.n_models, &blocks, |b| &b.alpha);
        if dev.is_none() {
            best.best_epoch = epochs;
        }
    }
    Ok(best)
}

/// Interleaves the blocks' `[row][block model]` arrays into `[row][model]`.
fn merge(
    n_rows: usize,
    nm_all: usize,
    blocks: &[Block],
    get: impl Fn(&Block) -> &Vec<f32>,
) -> Vec<f32> {
    let mut w = vec![0f32; n_rows * nm_all];
    for blk in blocks {
        let src = get(blk);
        for r in 0..n_rows {
            w[r * nm_all + blk.m0..][..blk.nm].copy_from_slice(&src[r * blk.nm..][..blk.nm]);
        }
    }
    w
}

fn merge_bias(blocks: &[Block]) -> Vec<f32> {
    blocks.iter().flat_map(|b| b.b.iter().copied()).collect()
}

/// Softmax of `s / t` in place.
fn softmax(s: &mut [f32], t: f32) {
    let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for v in s.iter_mut() {
        *v = ((*v - max) / t).exp();
        sum += *v;
    }
    if sum > 0.0 && sum.is_finite() {
        for v in s.iter_mut() {
            *v /= sum;
        }
    } else {
        let u = 1.0 / s.len().max(1) as f32;
        s.iter_mut().for_each(|v| *v = u);
    }
}

/// Temperature minimising the dev log-loss (golden-section search on log T in [1e-3, 1e2]).
fn fit_temperature(scores: &[f32], gold: &[u32], n_classes: usize) -> f32 {
    if gold.is_empty() {
        return 1.0;
    }
    let nll = |log_t: f64| -> f64 {
        let t = log_t.exp() as f32;
        let mut buf = vec![0f32; n_classes];
        let mut total = 0.0f64;
        for (s, &g) in scores.chunks(n_classes).zip(gold) {
            buf.copy_from_slice(s);
            softmax(&mut buf, t);
            total -= (buf[g as usize].max(1e-12) as f64).ln();
        }
        total
    };
    let (mut a, mut b) = ((1e-3f64).ln(), (1e2f64).ln());
    let r = (5f64.sqrt() - 1.0) / 2.0;
    let (mut x1, mut x2) = (b - r * (b - a), a + r * (b - a));
    let (mut f1, mut f2) = (nll(x1), nll(x2));
    for _ in 0..30 {
        if f1 < f2 {
            b = x2;
            x2 = x1;
            f2 = f1;
            x1 = b - r * (b - a);
            f1 = nll(x1);
        } else {
            a = x1;
            x1 = x2;
            f1 = f2;
            x2 = a + r * (b - a);
            f2 = nll(x2);
        }
    }
    (((a + b) / 2.0).exp()) as f32
}

/// Seeded stratified split of `0..labels.len()`: about `frac` of each class with at least two examples
/// goes to dev (at least one, never all). Returns (train, dev), each ascending.
fn carve(labels: &[u32], n_classes: usize, frac: f64, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut by_class: Vec<Vec<u32>> = vec![Vec::new(); n_classes];
    for (i, &y) in labels.iter().enumerate() {
        by_class[y as usize].push(i as u32);
    }
    let mut rng = SeededRng::new(seed ^ 0xD1CE ^ SEED_MIX);
    let mut is_dev = vec![false; labels.len()];
    for idx in &mut by_class {
        if idx.len() < 2 {
            continue;
        }
        rng.shuffle(idx);
        let k = ((idx.len() as f64 * frac).round() as usize).clamp(1, idx.len() - 1);
        for &i in &idx[..k] {
            is_dev[i as usize] = true;
        }
    }
    let (mut tr, mut dv) = (Vec::new(), Vec::new());
    for (i, &d) in is_dev.iter().enumerate() {
        if d {
            dv.push(i as u32)
        } else {
            tr.push(i as u32)
        }
    }
    (tr, dv)
}

fn check_labels(what: &str, labels: &[u32], n_classes: usize) -> Result<()> {
    if let Some((i, &y)) = labels
        .iter()
        .enumerate()
        .find(|&(_, &y)| y as usize >= n_classes)
    {
        return Err(Error::Usage(format!(
            "ngram: {what} label {y} at position {i} is out of range (there are {n_classes} label names)"
        )));
    }
    Ok(())
}

/// The hashed n-gram linear classifier (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct NgramModel {
    config: NgramConfig,
    labels: Vec<String>,
    temperature: f32,
    /// Bucket id of each weight row.
    rows: Vec<u32>,
    vocab: Vocab,
    /// `[row][class]`.
    weights: Vec<f32>,
    bias: Vec<f32>,
}

impl NgramModel {
    /// Trains on `train_texts` with class indices `train_labels` into `label_names`.
    ///
    /// `dev` chooses `l2` (best dev macro-F1) and the epoch (early stopping). Without it, a seeded
    /// stratified `cfg.dev_fraction` (10%) of train is carved off for that, and with `cfg.refit` the final
    /// model is retrained on all of train with the chosen `l2` for the best number of epochs; its
    /// temperature is the one fitted on the carved dev set. (If every class has a single example nothing
    /// can be carved; then train doubles as dev.) `on_epoch` sees every selection epoch.
    pub fn fit(
        train_texts: &[&str],
        train_labels: &[u32],
        label_names: &[String],
        dev: Option<(&[&str], &[u32])>,
        cfg: &NgramConfig,
        on_epoch: &mut dyn FnMut(&EpochStats),
    ) -> Result<(NgramModel, TrainReport)> {
        let t0 = Instant::now();
        cfg.validate()?;
        let n_classes = label_names.len();
        if train_texts.is_empty() {
            return Err(Error::Usage("ngram: the training set is empty".into()));
        }
        if train_texts.len() != train_labels.len() {
            return Err(Error::Usage(format!(
                "ngram: {} training texts but {} labels",
                train_texts.len(),
                train_labels.len()
            )));
        }
        if n_classes < 2 {
            return Err(Error::Usage(format!(
                "ngram: need at least two label names, got {n_classes}"
            )));
        }
        check_labels("training", train_labels, n_classes)?;
        let first = train_labels[0];
        if train_labels.iter().all(|&y| y == first) {
            return Err(Error::Data {
                message: format!(
                    "ngram: every training example has the label `{}`; a classifier needs at least two classes",
                    label_names[first as usize]
                ),
                hint: "add examples of another label".into(),
            });
        }
        if let Some((dx, dy)) = dev {
            if dx.len() != dy.len() {
                return Err(Error::Usage(format!(
                    "ngram: {} dev texts but {} dev labels",
                    dx.len(),
                    dy.len()
                )));
            }
            if dx.is_empty() {
                return Err(Error::Usage("ngram: the dev set is empty".into()));
            }
            check_labels("dev", dy, n_classes)?;
        }
        let threads = cfg.n_threads();
        let feat = cfg.featurizer();

        // 1. Hash every training text: per text the sorted (bucket, tf) pairs of both blocks.
        type Bags = (Vec<usize>, Vec<(u32, u32)>);
        let chunks: Vec<Bags> = par_chunks(train_texts.len(), threads, |r| {
            let mut s = Scratch::default();
            let mut tmp = Vec::new();
            let (mut ptr, mut pairs) = (Vec::with_capacity(r.len() * 2), Vec::new());
            for t in &train_texts[r] {
                feat.extract(t, &mut s);
                counts(&s.word_ids, &mut tmp);
                pairs.extend_from_slice(&tmp);
                ptr.push(pairs.len());
                counts(&s.char_ids, &mut tmp);
                pairs.extend_from_slice(&tmp);
                ptr.push(pairs.len());
            }
            (ptr, pairs)
        })?;

        // 2. Document frequencies, rows for the buckets seen (most frequent first), idf.
        let mut df = vec![0u32; cfg.buckets];
        for (_, pairs) in &chunks {
            for &(id, _) in pairs {
                df[id as usize] += 1;
            }
        }
        let mut seen: Vec<u32> = (0..cfg.buckets as u32)
            .filter(|&b| df[b as usize] > 0)
            .collect();
        seen.sort_by_key(|&b| std::cmp::Reverse(df[b as usize]));
        let n = train_texts.len() as f32;
        let mut map = vec![NO_ROW; cfg.buckets];
        let mut idf = Vec::with_capacity(seen.len());
        for (r, &b) in seen.iter().enumerate() {
            map[b as usize] = r as u32;
            let d = df[b as usize].min(train_texts.len() as u32) as f32;
            idf.push(if cfg.idf {
                ((1.0 + n) / (1.0 + d)).ln() + 1.0
            } else {
                1.0
            });
        }
        drop(df);
        let vocab = Vocab {
            map,
            idf,
            sublinear: cfg.sublinear_tf,
        };
        let n_rows = seen.len();

        // 3. Vectorise train (from the stored pairs) and dev.
        let mut x = Csr::new();
        {
            let mut w = Work::default();
            for (ptr, pairs) in &chunks {
                let mut start = 0;
                for two in ptr.chunks(2) {
                    if let [mid, end] = *two {
                        w.scratch.word_ids.clear();
                        w.scratch.char_ids.clear();
                        for &(id, tf) in &pairs[start..mid] {
                            w.scratch
                                .word_ids
                                .extend(std::iter::repeat_n(id, tf as usize));
                        }
                        for &(id, tf) in &pairs[mid..end] {
                            w.scratch
                                .char_ids
                                .extend(std::iter::repeat_n(id, tf as usize));
                        }
                        vocab.vectorize(&mut w);
                        x.push(&w.vec);
                        start = end;
                    }
                }
            }
        }
        drop(chunks);
        let mut labels_all: Vec<u32> = train_labels.to_vec();
        let n_train_total = train_texts.len();
        let (train_idx, dev_idx, carved) = match dev {
            Some((dx, dy)) => {
                let parts = par_chunks(dx.len(), threads, |r| {
                    let mut w = Work::default();
                    let mut c = Csr::new();
                    for t in &dx[r] {
                        feat.extract(t, &mut w.scratch);
                        vocab.vectorize(&mut w);
                        c.push(&w.vec);
                    }
                    c
                })?;
                for part in parts {
                    x.append(part);
                }
                labels_all.extend_from_slice(dy);
                let tr: Vec<u32> = (0..n_train_total as u32).collect();
                let dv: Vec<u32> =
                    (n_train_total as u32..(n_train_total + dx.len()) as u32).collect();
                (tr, dv, false)
            }
            None => {
                let (tr, dv) = carve(train_labels, n_classes, cfg.dev_fraction, cfg.seed);
                if dv.is_empty() {
                    (tr.clone(), tr, true)
                } else {
                    (tr, dv, true)
                }
            }
        };
        let sqnorm: Vec<f32> = (0..x.len())
            .map(|i| x.row(i).1.iter().map(|v| v * v).sum())
            .collect();
        let binary = n_classes == 2;
        let n_models = if binary { 1 } else { n_classes };
        let dev_gold: Vec<u32> = dev_idx.iter().map(|&i| labels_all[i as usize]).collect();

        // 4. Selection: every l2 with early stopping on dev macro-F1.
        let p = Problem {
            x: &x,
            y: &labels_all,
            train: &train_idx,
            sqnorm,
            n_rows,
            n_models,
            binary,
        };
        let mut log = Vec::new();
        let mut best: Option<(f32, RunResult)> = None;
        let mut stopped_early = false;
        for &l2 in &cfg.l2_grid {
            let r = run(
                &p,
                n_classes,
                l2,
                cfg.max_epochs,
                Some((&x, &dev_idx, &dev_gold, cfg.patience, cfg.min_delta)),
                cfg.seed,
                threads,
                None,
                &mut log,
                on_epoch,
            )?;
            stopped_early |= r.stopped_early;
            if best.as_ref().is_none_or(|(_, b)| r.best_f1 > b.best_f1) {
                best = Some((l2, r));
            }
        }
        let Some((chosen_l2, sel)) = best else {
            return Err(Error::Internal(
                "ngram: empty l2 grid after validation".into(),
            ));
        };
        let temperature = fit_temperature(&sel.dev_scores, &dev_gold, n_classes);

        // 5. Optional refit on all of train.
        let refit_epochs = if cfg.refit_epochs == 0 {
            sel.best_epoch
        } else {
            cfg.refit_epochs
        };
        let (w, b, refit_epochs) = if carved && cfg.refit && train_idx.len() < n_train_total {
            let all: Vec<u32> = (0..n_train_total as u32).collect();
            // Warm start: the selected duals for the train part, zero for the carved dev examples.
            let mut alpha = vec![0f32; n_train_total * n_models];
            for (k, &i) in train_idx.iter().enumerate() {
                alpha[i as usize * n_models..][..n_models]
                    .copy_from_slice(&sel.alpha[k * n_models..][..n_models]);
            }
            let init = (cfg.refit_epochs > 0).then_some(Init {
                w: &sel.w,
                b: &sel.b,
                alpha: &alpha,
            });
            let p_all = Problem { train: &all, ..p };
            let r = run(
                &p_all,
                n_classes,
                chosen_l2,
                refit_epochs,
                None,
                cfg.seed,
                threads,
                init,
                &mut Vec::new(),
                &mut |_| {},
            )?;
            (r.w, r.b, refit_epochs)
        } else {
            (sel.w, sel.b, 0)
        };
        let (weights, bias) = if binary {
            let mut wf = Vec::with_capacity(w.len() * 2);
            for &v in &w {
                wf.extend([-v, v]);
            }
            let b1 = b.first().copied().unwrap_or(0.0);
            (wf, vec![-b1, b1])
        } else {
            (w, b)
        };
        let model = NgramModel::assemble(
            cfg.clone(),
            label_names.to_vec(),
            temperature,
            seen,
            vocab,
            weights,
            bias,
        );
        let report = TrainReport {
            epochs: log,
            chosen_l2,
            best_epoch: sel.best_epoch,
            best_dev_macro_f1: sel.best_f1,
            stopped_early,
            n_features_nonzero: n_rows,
            refit_epochs,
            temperature,
            n_train: if refit_epochs > 0 {
                n_train_total
            } else {
                train_idx.len()
            },
            n_dev: dev_idx.len(),
            dev_carved: carved,
            wall_seconds: t0.elapsed().as_secs_f64(),
        };
        Ok((model, report))
    }

    fn assemble(
        config: NgramConfig,
        labels: Vec<String>,
        temperature: f32,
        rows: Vec<u32>,
        vocab: Vocab,
        weights: Vec<f32>,
        bias: Vec<f32>,
    ) -> NgramModel {
        NgramModel {
            config,
            labels,
            temperature,
            rows,
            vocab,
            weights,
            bias,
        }
    }

    fn featurizer(&self) -> Featurizer {
        self.config.featurizer()
    }

    /// Raw one-vs-rest scores into `out` (length = classes).
    fn scores_into(&self, feat: &Featurizer, text: &str, w: &mut Work, out: &mut Vec<f32>) {
        let c = self.labels.len();
        out.clear();
        out.extend_from_slice(&self.bias);
        feat.extract(text, &mut w.scratch);
        self.vocab.vectorize(w);
        add_rows(out, &self.weights, c, &w.vec);
    }

    /// Raw one-vs-rest SVM scores (margins), one per class.
    pub fn decision_function(&self, text: &str) -> Vec<f32> {
        let mut out = Vec::new();
        self.scores_into(&self.featurizer(), text, &mut Work::default(), &mut out);
        out
    }

    /// Class probabilities: softmax of the scores divided by the dev-fitted temperature; sums to 1.
    pub fn predict_proba(&self, text: &str) -> Vec<f32> {
        let mut out = self.decision_function(text);
        softmax(&mut out, self.temperature);
        out
    }

    /// The most probable class index.
    pub fn predict(&self, text: &str) -> u32 {
        argmax(&self.decision_function(text)) as u32
    }

    /// [`NgramModel::predict_proba`] for many texts on `config.threads` threads (0 = all cores);
    /// identical to calling it text by text.
    pub fn predict_proba_batch(&self, texts: &[&str]) -> Vec<Vec<f32>> {
        let threads = if texts.len() < 64 {
            1
        } else {
            self.config.n_threads()
        };
        let feat = self.featurizer();
        let chunk = |r: std::ops::Range<usize>| {
            let mut w = Work::default();
            texts[r]
                .iter()
                .map(|t| {
                    let mut out = Vec::with_capacity(self.labels.len());
                    self.scores_into(&feat, t, &mut w, &mut out);
                    softmax(&mut out, self.temperature);
                    out
                })
                .collect::<Vec<_>>()
        };
        match par_chunks(texts.len(), threads, chunk) {
            Ok(parts) => parts.into_iter().flatten().collect(),
            // A worker panic cannot happen (no indexing can fail); fall back to one thread anyway.
            Err(_) => chunk(0..texts.len()),
        }
    }

    /// Distillation: a copy of this model (same features and vocabulary) whose weights are retrained with
    /// soft cross-entropy on `targets` (one probability row per text, e.g. a teacher's temperature-softened
    /// predictions): multinomial logistic regression by seeded SGD with a decaying step, starting from
    /// zero. `dev` (gold labels) refits the temperature. Returns the student and its per-epoch mean loss.
    #[allow(clippy::too_many_arguments)]
    pub fn distill(
        &self,
        texts: &[&str],
        targets: &[f32],
        dev: Option<(&[&str], &[u32])>,
        epochs: usize,
        lr: f32,
        l2: f32,
        seed: u64,
    ) -> Result<(NgramModel, Vec<f64>)> {
        let k = self.labels.len();
        if targets.len() != texts.len() * k || texts.is_empty() {
            return Err(Error::Usage(format!(
                "distillation needs one {k}-class probability row per text ({} texts, {} values)",
                texts.len(),
                targets.len()
            )));
        }
        let feat = self.featurizer();
        let mut w = Work::default();
        let mut csr = Csr::new();
        for t in texts {
            feat.extract(t, &mut w.scratch);
            self.vocab.vectorize(&mut w);
            csr.push(&w.vec);
        }
        let n_rows = self.weights.len() / k.max(1);
        let mut weights = vec![0.0f32; n_rows * k];
        let mut bias = vec![0.0f32; k];
        let mut rng = SeededRng::new(seed ^ SEED_MIX);
        let mut order: Vec<usize> = (0..texts.len()).collect();
        let mut losses = Vec::with_capacity(epochs);
        let mut logits = vec![0.0f32; k];
        let mut t = 0usize;
        for _ in 0..epochs {
            for i in (1..order.len()).rev() {
                let j = rng.below_mod(i + 1);
                order.swap(i, j);
            }
            let mut loss = 0.0f64;
            for &i in &order {
                let eta = lr / (1.0 + t as f32 / texts.len() as f32);
                t += 1;
                let (idx, val) = csr.row(i);
                logits.copy_from_slice(&bias);
                for (&r, &v) in idx.iter().zip(val) {
                    let row = &weights[r as usize * k..(r as usize + 1) * k];
                    for (s, x) in logits.iter_mut().zip(row) {
                        *s += v * x;
                    }
                }
                softmax(&mut logits, 1.0);
                let q = &targets[i * k..(i + 1) * k];
                for (p, &qi) in logits.iter().zip(q) {
                    if qi > 0.0 {
                        loss -= qi as f64 * (p.max(1e-12) as f64).ln();
                    }
                }
                // Gradient of the soft cross-entropy: p - q.
                for c in 0..k {
                    logits[c] -= q[c];
                }
                for (r, &v) in idx.iter().zip(val) {
                    let row = &mut weights[*r as usize * k..(*r as usize + 1) * k];
                    for (x, g) in row.iter_mut().zip(&logits) {
                        *x -= eta * (v * g + l2 * *x);
                    }
                }
                for (b, g) in bias.iter_mut().zip(&logits) {
                    *b -= eta * g;
                }
            }
            losses.push(loss / texts.len() as f64);
        }
        let mut student = NgramModel::assemble(
            self.config.clone(),
            self.labels.clone(),
            1.0,
            self.rows.clone(),
            self.vocab.clone(),
            weights,
            bias,
        );
        if let Some((dx, dy)) = dev.filter(|(dx, _)| !dx.is_empty()) {
            let scores: Vec<f32> = dx
                .iter()
                .flat_map(|t| student.decision_function(t))
                .collect();
            student.temperature = fit_temperature(&scores, dy, k);
        }
        Ok((student, losses))
    }

    /// Label names, indexed by class.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The training configuration.
    pub fn config(&self) -> &NgramConfig {
        &self.config
    }

    /// The softmax temperature applied to the scores.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// Replaces the softmax temperature, for a refit whose own fit saw the data a temperature should be
    /// fitted on (the pipeline's `fold_dev` keeps the one fitted on dev by the train-only fit).
    pub fn set_temperature(&mut self, temperature: f32) {
        self.temperature = temperature;
    }

    /// Sets the number of threads [`NgramModel::predict_proba_batch`] uses (0 = all cores).
    pub fn set_threads(&mut self, threads: usize) {
        self.config.threads = threads;
    }

    /// Weights `[row][class]` (row-major, `n_rows() x labels().len()`).
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Per-class bias.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// Weight rows (hash buckets seen in training).
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// Writes `dir/model.safetensors` (f32 `weights [rows, classes]`, `bias [classes]`, `idf [rows]`, u32
    /// `rows [rows]` = bucket of each row) and `dir/model.json` (format, version, labels, temperature,
    /// config), each through a temp file and a rename; the JSON is written last.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let c = self.labels.len();
        let n = self.rows.len();
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (wb, bb, ib) = (f32s(&self.weights), f32s(&self.bias), f32s(&self.vocab.idf));
        let rb: Vec<u8> = self.rows.iter().flat_map(|x| x.to_le_bytes()).collect();
        let st = |e: safetensors::SafeTensorError| {
            Error::Internal(format!("ngram: serialising tensors: {e}"))
        };
        let tensors = vec![
            (
                "bias",
                TensorView::new(Dtype::F32, vec![c], &bb).map_err(st)?,
            ),
            (
                "idf",
                TensorView::new(Dtype::F32, vec![n], &ib).map_err(st)?,
            ),
            (
                "rows",
                TensorView::new(Dtype::U32, vec![n], &rb).map_err(st)?,
            ),
            (
                "weights",
                TensorView::new(Dtype::F32, vec![n, c], &wb).map_err(st)?,
            ),
        ];
        let bytes = safetensors::serialize(tensors, None).map_err(st)?;
        store::write_atomic(dir, WEIGHTS_FILE, &bytes)?;
        let meta = Meta {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            solver: "ovr-l2svm-dual-cd+temperature-softmax".into(),
            labels: self.labels.clone(),
            temperature: self.temperature,
            n_rows: n,
            config: self.config.clone(),
        };
        let json = serde_json::to_vec_pretty(&meta)
            .map_err(|e| Error::Internal(format!("ngram: serialising meta: {e}")))?;
        store::write_atomic(dir, META_FILE, &json)
    }

    /// Reads a model written by [`NgramModel::save`]. Missing, unreadable or inconsistent files are
    /// `Error::Io` naming the file.
    pub fn load(dir: &Path) -> Result<NgramModel> {
        let (mpath, mbytes) = store::read(dir, META_FILE)?;
        let meta: Meta = serde_json::from_slice(&mbytes).map_err(|e| store::corrupt(&mpath, e))?;
        if meta.format != FORMAT || meta.format_version != FORMAT_VERSION {
            return Err(store::corrupt(
                &mpath,
                format!(
                    "expected format {FORMAT} v{FORMAT_VERSION}, found {} v{}",
                    meta.format, meta.format_version
                ),
            ));
        }
        meta.config
            .validate()
            .map_err(|e| store::corrupt(&mpath, e))?;
        let c = meta.labels.len();
        if c < 2 || !(meta.temperature.is_finite() && meta.temperature > 0.0) {
            return Err(store::corrupt(
                &mpath,
                "needs at least two labels and a positive temperature",
            ));
        }
        let (wpath, wbytes) = store::read(dir, WEIGHTS_FILE)?;
        let st = SafeTensors::deserialize(&wbytes).map_err(|e| store::corrupt(&wpath, e))?;
        let n = meta.n_rows;
        let get = |name: &str, dtype: Dtype, shape: &[usize]| -> Result<Vec<[u8; 4]>> {
            let t = st
                .tensor(name)
                .map_err(|e| store::corrupt(&wpath, format!("tensor `{name}`: {e}")))?;
            if t.dtype() != dtype || t.shape() != shape {
                return Err(store::corrupt(
                    &wpath,
                    format!(
                        "tensor `{name}`: expected {dtype:?} {shape:?}, found {:?} {:?}",
                        t.dtype(),
                        t.shape()
                    ),
                ));
            }
            Ok(t.data()
                .chunks_exact(4)
                .map(|b| [b[0], b[1], b[2], b[3]])
                .collect())
        };
        let weights: Vec<f32> = get("weights", Dtype::F32, &[n, c])?
            .into_iter()
            .map(f32::from_le_bytes)
            .collect();
        let bias: Vec<f32> = get("bias", Dtype::F32, &[c])?
            .into_iter()
            .map(f32::from_le_bytes)
            .collect();
        let idf: Vec<f32> = get("idf", Dtype::F32, &[n])?
            .into_iter()
            .map(f32::from_le_bytes)
            .collect();
        let rows: Vec<u32> = get("rows", Dtype::U32, &[n])?
            .into_iter()
            .map(u32::from_le_bytes)
            .collect();
        if weights.len() != n * c || bias.len() != c || idf.len() != n || rows.len() != n {
            return Err(store::corrupt(
                &wpath,
                "tensor sizes disagree with model.json",
            ));
        }
        let mut map = vec![NO_ROW; meta.config.buckets];
        for (r, &b) in rows.iter().enumerate() {
            match map.get_mut(b as usize) {
                Some(slot) if *slot == NO_ROW => *slot = r as u32,
                _ => {
                    return Err(store::corrupt(
                        &wpath,
                        format!("row {r}: bucket {b} is out of range or repeated"),
                    ));
                }
            }
        }
        let vocab = Vocab {
            map,
            idf,
            sublinear: meta.config.sublinear_tf,
        };
        Ok(NgramModel::assemble(
            meta.config,
            meta.labels,
            meta.temperature,
            rows,
            vocab,
            weights,
            bias,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_scoring_loop_gives_the_plain_loops_bits() {
        // 77 classes (BANKING77's row width, not a multiple of 8), rows past the end skipped, repeats,
        // and texts shorter and longer than the prefetch distance.
        let (c, rows) = (77, 300);
        let mut rng = SeededRng::new(7);
        let weights: Vec<f32> = (0..rows * c)
            .map(|_| rng.uniform() as f32 * 2.0 - 1.0)
            .collect();
        for len in [0, 1, PREFETCH_AHEAD, PREFETCH_AHEAD + 1, 200] {
            let vec: Vec<(u32, f32)> = (0..len)
                .map(|_| {
                    (
                        (rng.next_u64() % (rows as u64 + 20)) as u32,
                        rng.uniform() as f32,
                    )
                })
                .collect();
            let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.01).collect();
            let (mut fast, mut plain) = (bias.clone(), bias.clone());
            add_rows(&mut fast, &weights, c, &vec);
            add_rows_plain(&mut plain, &weights, c, &vec);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&plain), "{len} features");
        }
    }
}
