//! The leak check between the frozen test set (and every suite) and the training data. A leak is the
//! same item seen in training: a copy with small edits, not a paraphrase that shares a phrase. Every rule
//! below encodes one kind of small edit, and each flagged pair carries the rule that fired and that
//! rule's own similarity:
//!
//! | rule | what it is | similarity |
//! |---|---|---|
//! | `shared_id` | the same record id on both sides | 1 |
//! | `exact` | equal after normalising (case, punctuation, spacing) | 1 |
//! | `numbers_differ` | equal once every digit run is replaced (an order number swapped) | 1 − edits / length |
//! | `typo` | character edit distance (insert, delete, substitute, swap two neighbours): one edit in texts of 10–39 characters, one more per 20 characters (`edit_share` 0.05), both ways | 1 − edits / length |
//! | `words_differ` | texts of ≥ 10 words, one a copy of the other with ≤ 1 word added or removed per 10 words | shared words / longer's words |
//! | `contained` | the shorter text (≥ 3 words) appears whole inside the longer, and every word the longer adds is a courtesy word (a greeting, a sign-off, a plea: `COURTESY`) | shorter's words / longer's words |
//! | `ngram_overlap` | at least `ngram_share` of the test text's distinct `ngram`-token runs occur in one training text (long documents) | that share |
//!
//! In `words_differ` and `contained`, a PII placeholder stands for any one word of the other text
//! (in texts of at least six other words; at most two placeholders per pair, or one per five words): the masker decides from context, so a
//! test item and its copy can be masked differently ("…to <PERSON>" / "…to Gdańsk asap"), and a
//! swapped name is a small edit like a swapped number (rules version 4).
//!
//! Personal data is masked before the check (the types `[policy] pii_types` names, all but
//! `LOCATION` and `ORG` by default), so a copy with a swapped name is `exact` here when the masker finds the name. Curation's near-duplicate pass uses a looser rule (MinHash Jaccard + short-text
//! containment): there a false match only drops a redundant training copy, here it would accuse a test
//! item and remove training data, so every rule is symmetric in length or bounds what the longer text
//! may add. Training refuses to start on any finding unless the policy drops the leaked training
//! records (DESIGN §7.2).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::near_dup::{intersect_count, tokenize};
use crate::pii::PiiKind;

/// One side of the check: an id and its text.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub id: &'a str,
    pub text: &'a str,
}

/// The version of the leak rules, part of a split's id: a split computed under other rules is recomputed.
pub const LEAK_RULES_VERSION: u32 = 4;

#[derive(Debug, Clone, PartialEq)]
pub struct ContaminationConfig {
    /// Token n-gram length for the overlap check (default 13).
    pub ngram: usize,
    /// A (test, train) pair leaks by n-gram overlap when at least this share of the test text's distinct
    /// n-grams occur in the training text (default 0.5), so shared boilerplate alone does not count.
    pub ngram_share: f64,
    /// `typo`: character edits allowed per character of the longer normalised text (default 0.05: one
    /// edit up to 39 characters, two from 40, three from 60; texts under 10 characters must match).
    pub edit_share: f64,
}

impl Default for ContaminationConfig {
    fn default() -> Self {
        ContaminationConfig {
            ngram: 13,
            ngram_share: 0.5,
            edit_share: 0.05,
        }
    }
}

/// One contaminated pair (the type lives in hone-core so that errors can carry it).
pub use hone_core::record::LeakPair as ContaminationPair;

/// The rules, strongest first (a pair is reported under the strongest that fires).
pub const RULES: [&str; 7] = [
    "shared_id",
    "exact",
    "numbers_differ",
    "typo",
    "words_differ",
    "contained",
    "ngram_overlap",
];

/// Texts of at least this many words may differ by added or removed words (`words_differ`).
const WORD_EDIT_MIN_WORDS: usize = 10;
/// A placeholder stands for a word only in texts with at least this many words of their own: "Who
/// was <PERSON>?" is not a copy of "Who was Darius?".
const LOOSE_MIN_WORDS: usize = 6;
/// `contained` needs a copy of at least this many words.
const CONTAINED_MIN_WORDS: usize = 3;

fn ngram_hashes(toks: &[String], n: usize) -> Vec<u64> {
    if n == 0 || toks.len() < n {
        return Vec::new();
    }
    toks.windows(n)
        .map(|w| {
            u64::from_le_bytes(
                blake3::hash(w.join(" ").as_bytes()).as_bytes()[..8]
                    .try_into()
                    .unwrap_or([0; 8]),
            )
        })
        .collect()
}

/// Whether a normalised key has a number and a word that is not only digits.
fn has_numbers_and_words(key: &str) -> bool {
    key.bytes().any(|b| b.is_ascii_digit())
        && key
            .split(' ')
            .any(|w| !w.is_empty() && !w.bytes().all(|b| b.is_ascii_digit()))
}

/// Every digit run replaced by `#`.
fn mask_digits(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_digits = false;
    for c in key.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// Optimal-string-alignment distance (Levenshtein plus swaps of two neighbours), or `None` once it
/// must exceed `max`.
pub fn osa_distance(a: &[char], b: &[char], max: usize) -> Option<usize> {
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > max {
        return None;
    }
    let mut prev2 = vec![0usize; m + 1];
    let mut prev: Vec<usize> = (0..=m).collect();
    let mut cur = vec![0usize; m + 1];
    for i in 1..=n {
        cur[0] = i;
        let mut row_min = cur[0];
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
            row_min = row_min.min(v);
        }
        if row_min > max {
            return None;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    Some(prev[m]).filter(|&d| d <= max)
}

/// Length of the longest common subsequence of two word sequences.
fn lcs(a: &[u32], b: &[u32], loose: bool) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for &x in a {
        for (j, &y) in b.iter().enumerate() {
            cur[j + 1] = if same_word(x, y, loose) {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Where `short` first occurs as a contiguous run inside `long`.
fn find_run(long: &[u32], short: &[u32], loose: bool) -> Option<usize> {
    if short.is_empty() {
        return None;
    }
    long.windows(short.len())
        .position(|w| w.iter().zip(short).all(|(&a, &b)| same_word(a, b, loose)))
}

/// One text, prepared once.
struct Prepared {
    key: String,
    chars: Vec<char>,
    /// Distinct padded character trigrams.
    trigrams: Vec<u64>,
    words: Vec<u32>,
    distinct_words: Vec<u32>,
    /// One bit per distinct word (by a hash of its id): `a.sig & !b.sig` has a bit set for at least
    /// one word of `a` that `b` lacks, so its popcount bounds the missing words from below; a
    /// one-instruction filter before the exact count.
    sig: u64,
    tokens: Vec<String>,
}

/// How many of `a`'s words `b` lacks, at least.
fn missing_at_least(a: &Prepared, b: &Prepared) -> usize {
    (a.sig & !b.sig).count_ones() as usize
}

fn trigram_hashes(chars: &[char]) -> Vec<u64> {
    let mut padded = Vec::with_capacity(chars.len() + 4);
    padded.extend(['\u{2}', '\u{2}']);
    padded.extend_from_slice(chars);
    padded.extend(['\u{3}', '\u{3}']);
    let mut out: Vec<u64> = padded
        .windows(3)
        .map(|w| {
            (u64::from(w[0] as u32) << 42) ^ (u64::from(w[1] as u32) << 21) ^ u64::from(w[2] as u32)
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The word a PII placeholder becomes in the check (`<PERSON>` → `piiperson`): one token, which
/// [`same_word`] lets stand for any single word of the other text. The masker decides from context,
/// so a copied test item can be masked in one place and not in its copy ("…to <PERSON>" / "…to
/// Gdańsk asap"); a swapped name is a small edit like a swapped number.
fn placeholder_word(k: PiiKind) -> String {
    format!(
        "pii{}",
        k.placeholder().trim_matches(['<', '>']).to_lowercase()
    )
}

/// A vocabulary whose first ids are the placeholder words (see [`is_placeholder`]).
fn new_vocab() -> HashMap<String, u32> {
    PiiKind::ALL
        .iter()
        .enumerate()
        .map(|(i, &k)| (placeholder_word(k), i as u32))
        .collect()
}

fn is_placeholder(w: u32) -> bool {
    (w as usize) < PiiKind::ALL.len()
}

/// Equal words, or (when `loose`) a placeholder against any word.
fn same_word(a: u32, b: u32, loose: bool) -> bool {
    a == b || (loose && (is_placeholder(a) || is_placeholder(b)))
}

fn prepare(text: &str, vocab: &mut HashMap<String, u32>) -> Prepared {
    let mut text = std::borrow::Cow::Borrowed(text);
    if text.contains('<') {
        for k in PiiKind::ALL {
            if text.contains(k.placeholder()) {
                let w = format!(" {} ", placeholder_word(k));
                text = std::borrow::Cow::Owned(text.replace(k.placeholder(), &w));
            }
        }
    }
    let tokens = tokenize(&text);
    let key = tokens.join(" ");
    let chars: Vec<char> = key.chars().collect();
    let words: Vec<u32> = tokens
        .iter()
        .map(|t| {
            let n = vocab.len() as u32;
            *vocab.entry(t.clone()).or_insert(n)
        })
        .collect();
    // Placeholders are no word of their own: they never make a candidate and never count missing.
    let mut distinct_words: Vec<u32> = words
        .iter()
        .copied()
        .filter(|&w| !is_placeholder(w))
        .collect();
    distinct_words.sort_unstable();
    distinct_words.dedup();
    let sig = distinct_words.iter().fold(0u64, |m, &w| {
        m | 1u64 << (u64::from(w).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
    });
    Prepared {
        sig,
        trigrams: trigram_hashes(&chars),
        key,
        chars,
        words,
        distinct_words,
        tokens,
    }
}

/// The most character edits `typo` allows between texts of these lengths: one from 10 characters,
/// two from 2 / `share` (40 at the default 0.05), then one more per 1 / `share`; none under 10.
fn max_edits(la: usize, lb: usize, share: f64) -> usize {
    let l = la.max(lb);
    if l < 10 || share <= 0.0 {
        0
    } else {
        ((share * l as f64).floor() as usize).max(1)
    }
}

/// Sorted (binary search). Words a greeting, a sign-off, a plea or a chaser (`any news?`) adds around a message without changing what it asks
/// (`contained` allows only these around a copy). `piiperson`, `piiemail` and `piiphone` are the
/// masked placeholders (`Hi <PERSON>,`, see [`placeholder_word`]); `s`, `m`, `re`, `ll`, `ve`, `d`
/// are contraction tails.
const COURTESY: &[&str] = &[
    "a",
    "advance",
    "advise",
    "afternoon",
    "again",
    "all",
    "am",
    "and",
    "any",
    "anyone",
    "appreciate",
    "appreciated",
    "are",
    "as",
    "asap",
    "be",
    "best",
    "bother",
    "cheers",
    "d",
    "day",
    "dear",
    "doing",
    "email",
    "evening",
    "everyone",
    "excuse",
    "folks",
    "for",
    "friend",
    "good",
    "great",
    "greetings",
    "guys",
    "hello",
    "help",
    "helping",
    "hey",
    "hi",
    "hiya",
    "hope",
    "i",
    "in",
    "is",
    "it",
    "just",
    "kind",
    "kindly",
    "ll",
    "lot",
    "m",
    "madam",
    "many",
    "me",
    "morning",
    "much",
    "my",
    "news",
    "night",
    "now",
    "oh",
    "ok",
    "okay",
    "phone",
    "piiemail",
    "piiperson",
    "piiphone",
    "please",
    "pls",
    "plz",
    "question",
    "quick",
    "quickly",
    "re",
    "regards",
    "s",
    "sincerely",
    "sir",
    "so",
    "soon",
    "sorry",
    "support",
    "team",
    "thank",
    "thanks",
    "that",
    "the",
    "there",
    "thx",
    "to",
    "today",
    "ty",
    "update",
    "updates",
    "urgent",
    "urgently",
    "ve",
    "very",
    "well",
    "wondering",
    "would",
    "yo",
    "you",
    "your",
    "yours",
];

/// The most added or removed words `words_differ` allows when the longer text has `n` words.
fn max_word_edits(n: usize) -> usize {
    if n < WORD_EDIT_MIN_WORDS {
        0
    } else {
        n / WORD_EDIT_MIN_WORDS
    }
}

/// `typo` for one pair: its similarity, when the pair is within the allowed character edits.
fn typo_rule(t: &Prepared, r: &Prepared, cfg: &ContaminationConfig) -> Option<f64> {
    let (lt, lr) = (t.chars.len(), r.chars.len());
    let k = max_edits(lt, lr, cfg.edit_share);
    if k == 0
        || lt.min(lr) < 10
        || lt.abs_diff(lr) > k
        || missing_at_least(t, r) > 2 * k
        || missing_at_least(r, t) > 2 * k
        || intersect_count(&t.trigrams, &r.trigrams)
            < t.trigrams.len().max(r.trigrams.len()).saturating_sub(4 * k)
        || t.key == r.key
    {
        return None;
    }
    let d = osa_distance(&t.chars, &r.chars, k)?;
    Some(1.0 - d as f64 / lt.max(lr) as f64)
}

/// `words_differ` or `contained` for one pair: rank, rule and similarity.
fn word_rules(t: &Prepared, r: &Prepared) -> Option<(u8, &'static str, f64)> {
    let (short, long) = if t.words.len() <= r.words.len() {
        (t, r)
    } else {
        (r, t)
    };
    let (ns, nl) = (short.words.len(), long.words.len());
    // A placeholder may stand for one word of the other text, a few times per pair (a text of
    // placeholders matches nothing by them); past that, placeholders only match their own kind.
    let wild = |p: &Prepared| p.words.iter().filter(|&&w| is_placeholder(w)).count();
    let (wild_short, wild_long) = (wild(short), wild(long));
    let loose = ns - wild_short >= LOOSE_MIN_WORDS && wild_short + wild_long <= 2.max(ns / 5);
    let kw = max_word_edits(nl);
    let missing = missing_at_least(short, long);
    let word_rule = kw > 0 && nl - ns <= kw && missing <= kw;
    let own_words = if loose { ns - wild_short } else { ns };
    let contained_rule = own_words >= CONTAINED_MIN_WORDS && nl > ns && missing == 0;
    if !word_rule && !contained_rule {
        return None;
    }
    let shared = intersect_count(&t.distinct_words, &r.distinct_words);
    if word_rule && shared + kw >= short.distinct_words.len() && t.key != r.key {
        let common = lcs(&short.words, &long.words, loose);
        if ns + nl - 2 * common <= kw {
            return Some((4, "words_differ", common as f64 / nl as f64));
        }
    }
    if contained_rule
        && shared == short.distinct_words.len()
        && let Some(at) = find_run(&long.words, &short.words, loose)
        && long.tokens[..at]
            .iter()
            .chain(&long.tokens[at + ns..])
            .all(|w| COURTESY.binary_search(&w.as_str()).is_ok())
    {
        return Some((5, "contained", ns as f64 / nl as f64));
    }
    None
}

/// Every rule from `exact` to `contained` for one pair, without candidate filtering: the strongest
/// that fires. The reference `check` is tested against.
#[cfg(test)]
fn pair_rules(t: &Prepared, r: &Prepared, cfg: &ContaminationConfig) -> Option<(u8, &'static str)> {
    if t.key.is_empty() || r.key.is_empty() {
        return None;
    }
    if t.key == r.key {
        return Some((1, "exact"));
    }
    if has_numbers_and_words(&t.key) && mask_digits(&t.key) == mask_digits(&r.key) {
        return Some((2, "numbers_differ"));
    }
    if typo_rule(t, r, cfg).is_some() {
        return Some((3, "typo"));
    }
    word_rules(t, r).map(|(rank, kind, _)| (rank, kind))
}

/// Find every (test, train) pair that leaks. Pairs are sorted and each (test, train) pair appears once,
/// under its strongest rule (shared id > exact > numbers_differ > typo > words_differ > contained >
/// n-gram overlap).
pub fn check(test: &[Item], train: &[Item], cfg: &ContaminationConfig) -> Vec<ContaminationPair> {
    let mut found: BTreeMap<(String, String), (u8, &'static str, f64)> = BTreeMap::new();
    let mut add = |t: &str, r: &str, rank: u8, kind: &'static str, sim: f64| {
        let e = found
            .entry((t.to_string(), r.to_string()))
            .or_insert((u8::MAX, "", sim));
        if rank < e.0 {
            *e = (rank, kind, sim);
        }
    };
    let test_ids: HashSet<&str> = test.iter().map(|t| t.id).collect();
    for r in train {
        if test_ids.contains(r.id) {
            add(r.id, r.id, 0, "shared_id", 1.0);
        }
    }
    let mut vocab = new_vocab();
    let tp: Vec<Prepared> = test.iter().map(|t| prepare(t.text, &mut vocab)).collect();
    let rp: Vec<Prepared> = train.iter().map(|r| prepare(r.text, &mut vocab)).collect();

    // exact and numbers_differ: hash lookups.
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut by_masked: HashMap<String, Vec<usize>> = HashMap::new();
    // A text with no word (emoji, punctuation) has an empty key: it matches nothing, not every other
    // such text. `numbers_differ` needs words besides the numbers.
    for (i, t) in tp.iter().enumerate() {
        if t.key.is_empty() {
            continue;
        }
        by_key.entry(t.key.as_str()).or_default().push(i);
        if has_numbers_and_words(&t.key) {
            by_masked.entry(mask_digits(&t.key)).or_default().push(i);
        }
    }
    for (j, r) in rp.iter().enumerate() {
        if r.key.is_empty() {
            continue;
        }
        for &i in by_key.get(r.key.as_str()).into_iter().flatten() {
            add(test[i].id, train[j].id, 1, "exact", 1.0);
        }
        if has_numbers_and_words(&r.key) {
            for &i in by_masked.get(&mask_digits(&r.key)).into_iter().flatten() {
                if tp[i].key != r.key {
                    let l = tp[i].chars.len().max(r.chars.len()).max(1);
                    let d = osa_distance(&tp[i].chars, &r.chars, l).unwrap_or(l);
                    add(
                        test[i].id,
                        train[j].id,
                        2,
                        "numbers_differ",
                        1.0 - d as f64 / l as f64,
                    );
                }
            }
        }
    }

    // Candidates come from prefix filtering: a pair within the allowed edits must share at least one
    // of the shorter side's rarest words, so only those posting lists are walked, never
    // the long lists of common words; the exact overlap is then counted by merging sorted lists.
    let mut word_df: HashMap<u32, u32> = HashMap::new();
    for x in tp.iter().chain(&rp) {
        for &w in &x.distinct_words {
            *word_df.entry(w).or_default() += 1;
        }
    }
    let rarest_words = |x: &Prepared, p: usize| -> Vec<u32> {
        let mut v = x.distinct_words.clone();
        v.sort_by_key(|w| (word_df.get(w).copied().unwrap_or(0), *w));
        v.truncate(p);
        v
    };
    // The most words `words_differ` may miss from a shorter text of `n` words (its partner has at most
    // n + n/9 + 1 words), plus one: a candidate shares at least one of that many rarest words. Below 9
    // words only `contained` can fire, which needs every word: the rarest one is enough.
    let word_prefix = |n: usize| if n < 9 { 1 } else { n / 9 + 2 };
    let mut tri_index: HashMap<u64, Vec<u32>> = HashMap::new();
    let mut word_index: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut word_prefix_index: HashMap<u32, Vec<u32>> = HashMap::new();
    for (j, r) in rp.iter().enumerate() {
        for &g in &r.trigrams {
            tri_index.entry(g).or_default().push(j as u32);
        }
        for &w in &r.distinct_words {
            word_index.entry(w).or_default().push(j as u32);
        }
        for w in rarest_words(r, word_prefix(r.words.len())) {
            word_prefix_index.entry(w).or_default().push(j as u32);
        }
    }
    let mut seen = vec![false; rp.len()];
    let mut cands: Vec<u32> = Vec::new();
    let take = |list: Option<&Vec<u32>>, seen: &mut Vec<bool>, cands: &mut Vec<u32>| {
        for &j in list.into_iter().flatten() {
            if !seen[j as usize] {
                seen[j as usize] = true;
                cands.push(j);
            }
        }
    };
    for (i, t) in tp.iter().enumerate() {
        // typo: one character edit changes at most two words (a space typed or lost joins or splits
        // them), so a partner within k edits shares one of the test text's 2k + 1 rarest words; k is
        // bounded by the longest partner that could match. Then at most 4 distinct trigrams differ per
        // edit (a cheap count filter) before the edit distance decides.
        let l = t.chars.len();
        let k_bound = max_edits(l + l / 19 + 1, 0, cfg.edit_share);
        if l >= 10 && k_bound > 0 {
            for w in rarest_words(t, 2 * k_bound + 1) {
                take(word_index.get(&w), &mut seen, &mut cands);
            }
            // With at most 2k distinct words, one edit can change them all ("cardblocked" / "card
            // blocked"): those texts take their candidates from the trigram index instead.
            if t.distinct_words.len() <= 2 * k_bound {
                let mut rare = t.trigrams.clone();
                rare.sort_by_key(|g| (tri_index.get(g).map_or(0, Vec::len), *g));
                rare.truncate(4 * k_bound + 1);
                for g in &rare {
                    take(tri_index.get(g), &mut seen, &mut cands);
                }
            }
            for &j in &cands {
                if let Some(sim) = typo_rule(t, &rp[j as usize], cfg) {
                    add(test[i].id, train[j as usize].id, 3, "typo", sim);
                }
            }
            for j in cands.drain(..) {
                seen[j as usize] = false;
            }
        }
        // words_differ and contained: the shorter side's words are (nearly) all in the longer. Test
        // shorter: walk the postings of its rarest words; train shorter: the train texts indexed under
        // one of their own rarest words that the test text has.
        for w in rarest_words(t, word_prefix(t.words.len())) {
            take(word_index.get(&w), &mut seen, &mut cands);
        }
        for w in &t.distinct_words {
            take(word_prefix_index.get(w), &mut seen, &mut cands);
        }
        for &j in &cands {
            if let Some((rank, kind, sim)) = word_rules(t, &rp[j as usize]) {
                add(test[i].id, train[j as usize].id, rank, kind, sim);
            }
        }
        for j in cands.drain(..) {
            seen[j as usize] = false;
        }
    }

    // Long n-gram overlap: the share of a test text's distinct n-grams found in one training text.
    let mut grams: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut n_grams = vec![0usize; test.len()];
    for (i, t) in tp.iter().enumerate() {
        let mut seen = HashSet::new();
        for h in ngram_hashes(&t.tokens, cfg.ngram) {
            if seen.insert(h) {
                grams.entry(h).or_default().push(i);
            }
        }
        n_grams[i] = seen.len();
    }
    if !grams.is_empty() {
        for (j, r) in rp.iter().enumerate() {
            let mut shared: HashMap<usize, usize> = HashMap::new();
            let mut seen = HashSet::new();
            for h in ngram_hashes(&r.tokens, cfg.ngram) {
                if seen.insert(h) {
                    for &t in grams.get(&h).into_iter().flatten() {
                        *shared.entry(t).or_default() += 1;
                    }
                }
            }
            for (t, k) in shared {
                let share = k as f64 / n_grams[t] as f64;
                if share >= cfg.ngram_share {
                    add(test[t].id, train[j].id, 6, "ngram_overlap", share);
                }
            }
        }
    }
    found
        .into_iter()
        .map(
            |((test_id, train_id), (_, kind, similarity))| ContaminationPair {
                test_id,
                train_id,
                kind: kind.to_string(),
                similarity,
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items<'a>(v: &'a [(&'a str, &'a str)]) -> Vec<Item<'a>> {
        v.iter().map(|(id, text)| Item { id, text }).collect()
    }

    #[test]
    fn finds_each_kind_of_leak_and_nothing_else() {
        let long = "the quick brown fox jumps over the lazy dog while the farmer watches from the old red barn at dawn";
        let test = [
            ("t1", "Where is my refund?"),
            ("t2", "my card was stolen at the station yesterday evening"),
            ("t3", long),
            ("t4", "completely unrelated question about exchange rates"),
            ("t5", "same id"),
        ];
        let leaked_long = format!(
            "prefix words here {} and more words after it to make it different",
            &long[..85]
        );
        let train = [
            ("r1", "where is my REFUND"),
            (
                "r2",
                "my card was stolen at the station yesterday evening please help",
            ),
            ("r3", leaked_long.as_str()),
            ("r4", "how do I top up my account by bank transfer"),
            ("t5", "another text"),
        ];
        let pairs = check(
            &items(&test),
            &items(&train),
            &ContaminationConfig::default(),
        );
        let got: Vec<(&str, &str, &str)> = pairs
            .iter()
            .map(|p| (p.test_id.as_str(), p.train_id.as_str(), p.kind.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("t1", "r1", "exact"),
                ("t2", "r2", "contained"),
                ("t3", "r3", "ngram_overlap"),
                ("t5", "t5", "shared_id")
            ]
        );
    }

    #[test]
    fn a_placeholder_stands_for_one_word_in_longer_texts_only() {
        let test = [
            (
                "t1",
                "help! please change the delivery address on my account to <PERSON>",
            ),
            ("t2", "Who was <PERSON> ?"),
            (
                "t3",
                "<PERSON> <PERSON> <PERSON> please change the delivery address on my account",
            ),
        ];
        let train = [
            (
                "r1",
                "help! please change the delivery address on my account to Gdańsk asap",
            ),
            ("r2", "Who was Darius the Great ?"),
            (
                "r3",
                "Anna Maria Smith please change the delivery address on my account",
            ),
            // Without the placeholder the word must match: a different city is another item.
            (
                "r4",
                "help! please change the delivery address on my card to Leeds asap",
            ),
        ];
        let pairs = check(
            &items(&test),
            &items(&train),
            &ContaminationConfig::default(),
        );
        let got: Vec<(&str, &str, &str)> = pairs
            .iter()
            .map(|p| (p.test_id.as_str(), p.train_id.as_str(), p.kind.as_str()))
            .collect();
        // t2 is too short for a placeholder to stand for a word; t3 has too many placeholders.
        assert_eq!(got, vec![("t1", "r1", "words_differ")]);
    }

    #[test]
    fn shared_boilerplate_below_the_share_is_not_a_leak() {
        let boiler = "thank you for contacting our support team we will get back to you within two working days";
        let t = format!(
            "my card was declined at the supermarket this morning and again at the pharmacy {boiler}"
        );
        let r = format!(
            "I would like to change the address on my account to my new flat in the city {boiler}"
        );
        let test = [("t1", t.as_str())];
        let train = [("r1", r.as_str())];
        let cfg = ContaminationConfig::default();
        assert!(check(&items(&test), &items(&train), &cfg).is_empty());
        let strict = ContaminationConfig {
            ngram_share: 0.01,
            ..cfg
        };
        assert_eq!(
            check(&items(&test), &items(&train), &strict)[0].kind,
            "ngram_overlap"
        );
    }

    #[test]
    fn clean_sides_give_no_pairs() {
        let test = [("t1", "what is the exchange rate for euros")];
        let train = [("r1", "I lost my card on the bus")];
        assert!(
            check(
                &items(&test),
                &items(&train),
                &ContaminationConfig::default()
            )
            .is_empty()
        );
    }

    #[test]
    fn a_paraphrase_that_shares_a_phrase_is_not_a_leak() {
        // The false alarms: short questions inside longer, different ones.
        let test = [
            ("t1", "Where do I change my PIN?"),
            ("t2", "I lost my phone!"),
            ("t3", "I need to verify my identity"),
            ("t4", "Can I top up with Apple Pay?"),
        ];
        let train = [
            ("r1", "Can I change my PIN on my phone?"),
            ("r2", "I'm panicking! I lost my card! Help!"),
            ("r3", "Why do I need to verify my identity?"),
            ("r4", "can I top up with google pay"),
        ];
        let pairs = check(
            &items(&test),
            &items(&train),
            &ContaminationConfig::default(),
        );
        assert!(pairs.is_empty(), "{pairs:?}");
    }

    #[test]
    fn osa_distance_counts_a_swap_of_neighbours_as_one_edit() {
        let c = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(osa_distance(&c("refund"), &c("rfeund"), 3), Some(1));
        assert_eq!(osa_distance(&c("refund"), &c("refunds"), 3), Some(1));
        assert_eq!(osa_distance(&c("kitten"), &c("sitting"), 3), Some(3));
        assert_eq!(osa_distance(&c("kitten"), &c("sitting"), 2), None);
        assert_eq!(osa_distance(&c(""), &c("ab"), 2), Some(2));
    }

    /// Planted leaks of every kind the module names, made from handwritten sentences with seeded edits:
    /// each must be found (under its own rule, or a stronger one: a short removed word is also a typo).
    #[test]
    fn planted_leaks_of_every_kind_are_found() {
        let base = [
            "I ordered a new card last week and it still has not arrived at my home address",
            "my transfer to my landlord was declined this morning and I do not know why it happened",
            "can you tell me how long a bank transfer from Germany usually takes to reach my account",
            "the cash machine kept my card after I typed the wrong code three times in a row",
            "I was charged twice for the same coffee at the station yesterday and want one refunded",
            "how do I change the address on my account now that I have moved to a new flat",
            "there is a payment on my statement that I do not recognise and I think it is fraud",
            "why is my top up still pending after two days when it usually takes a few minutes",
            "please close my account and send the remaining balance to my other bank as soon as possible",
            "I would like to know which countries I can use my card in without paying extra fees",
            "my phone was stolen on the train and the banking app is still logged in on it",
            "is there a limit on how much money I can exchange into euros in a single month",
        ];
        let greet = [
            ("Hi there, ", ""),
            ("Hello! ", " Thanks."),
            ("Good morning, ", ""),
            ("", " Thank you!"),
            ("Dear support team, ", " Kind regards"),
            ("", " Please help, it's urgent."),
            ("Hi, hope you're well. ", ""),
            ("", " Many thanks in advance!"),
        ];
        let mut rng = hone_core::rng::SeededRng::new(11);
        let mut kinds: Vec<(&str, &str, String, String)> = Vec::new();
        for (b, text) in base.iter().enumerate() {
            let words: Vec<&str> = text.split(' ').collect();
            // casing and punctuation
            kinds.push(("casing", "exact", text.to_string(), text.to_uppercase()));
            kinds.push((
                "punctuation",
                "exact",
                text.to_string(),
                format!("{}?!", text.replace(' ', " , ")),
            ));
            // a swapped pair of letters in a word of 4+ letters
            let long_words: Vec<usize> =
                (0..words.len()).filter(|&i| words[i].len() >= 4).collect();
            let wi = long_words[rng.below(long_words.len())];
            let mut w: Vec<char> = words[wi].chars().collect();
            let at = rng.below(w.len() - 1);
            w.swap(at, at + 1);
            let mut typo = words.clone();
            let swapped: String = w.into_iter().collect();
            typo[wi] = &swapped;
            kinds.push(("typo", "typo", text.to_string(), typo.join(" ")));
            // one word removed, one word added (texts of 10+ words)
            let mut removed = words.clone();
            removed.remove(rng.below(words.len()));
            kinds.push((
                "word_removed",
                "words_differ",
                text.to_string(),
                removed.join(" "),
            ));
            let mut added = words.clone();
            added.insert(
                rng.below(words.len() + 1),
                ["really", "also", "again", "today"][rng.below(4)],
            );
            kinds.push((
                "word_added",
                "words_differ",
                text.to_string(),
                added.join(" "),
            ));
            // a greeting or sign-off around a verbatim copy
            let (pre, post) = greet[b % greet.len()];
            kinds.push((
                "greeting",
                "contained",
                text.to_string(),
                format!("{pre}{text}{post}"),
            ));
            // a swapped number
            kinds.push((
                "number",
                "numbers_differ",
                format!("{text} order 58213"),
                format!("{text} order 9120"),
            ));
        }
        let mut per_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut wrong = Vec::new();
        for (i, (kind, rule, t, r)) in kinds.iter().enumerate() {
            let (tid, rid) = (format!("t{i}"), format!("r{i}"));
            let pairs = check(
                &[Item { id: &tid, text: t }],
                &[Item { id: &rid, text: r }],
                &ContaminationConfig::default(),
            );
            let e = per_kind.entry(kind).or_default();
            e.1 += 1;
            let rank = |k: &str| RULES.iter().position(|&x| x == k);
            match pairs.first() {
                Some(p) if rank(&p.kind) <= rank(rule) => e.0 += 1,
                other => wrong.push(format!("{kind}: {t:?} ~ {r:?}: {other:?}")),
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
        for (kind, (found, n)) in per_kind {
            assert_eq!(found, n, "{kind}");
        }
    }

    /// The candidate filters (rarest-word prefixes, signatures, trigram counts) never lose a pair:
    /// `check` equals every pair tested without them, on texts built to sit at the rules' edges.
    #[test]
    fn candidate_filtering_finds_exactly_what_brute_force_finds() {
        let vocab = [
            "my",
            "card",
            "was",
            "declined",
            "refund",
            "where",
            "is",
            "the",
            "transfer",
            "pending",
            "hi",
            "thanks",
            "please",
            "help",
            "top",
            "up",
            "account",
            "cardblocked",
            "pin",
            "order",
            "arrived",
            "still",
            "not",
            "why",
            "fee",
            "12",
            "3456",
        ];
        // Plus 80 rarer words, so that long texts rarely repeat a word.
        let extra: Vec<String> = (0..80).map(|i| format!("word{i}")).collect();
        let mut rng = hone_core::rng::SeededRng::new(5);
        let sentence = |rng: &mut hone_core::rng::SeededRng| -> String {
            let n = 1 + rng.below(24);
            (0..n)
                .map(|_| {
                    if rng.below(2) == 0 {
                        rng.pick(&vocab).to_string()
                    } else {
                        rng.pick(&extra).clone()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let tests: Vec<String> = (0..80).map(|_| sentence(&mut rng)).collect();
        let mut trains: Vec<String> = Vec::new();
        for _ in 0..300 {
            let base = tests[rng.below(tests.len())].clone();
            let mut w: Vec<String> = base.split(' ').map(String::from).collect();
            match rng.below(7) {
                0 => {
                    let i = rng.below(w.len());
                    let mut c: Vec<char> = w[i].chars().collect();
                    if c.len() > 1 {
                        let a = rng.below(c.len() - 1);
                        c.swap(a, a + 1);
                    }
                    w[i] = c.into_iter().collect();
                }
                1 if w.len() > 1 => {
                    w.remove(rng.below(w.len()));
                }
                2 => w.insert(
                    rng.below(w.len() + 1),
                    vocab[rng.below(vocab.len())].to_string(),
                ),
                3 => {
                    w.insert(0, "hi".into());
                    w.push("thanks".into());
                }
                4 => {
                    let n = format!("{}", rng.below(1000));
                    match w.iter().position(|x| x.bytes().all(|b| b.is_ascii_digit())) {
                        Some(i) => w[i] = n,
                        None => w.push(n),
                    }
                }
                5 => {
                    // a space lost between two words
                    if w.len() > 1 {
                        let i = rng.below(w.len() - 1);
                        let joined = format!("{}{}", w[i], w[i + 1]);
                        w[i] = joined;
                        w.remove(i + 1);
                    }
                }
                _ => w = sentence(&mut rng).split(' ').map(String::from).collect(),
            }
            trains.push(w.join(" "));
        }
        let t_ids: Vec<String> = (0..tests.len()).map(|i| format!("t{i}")).collect();
        let r_ids: Vec<String> = (0..trains.len()).map(|i| format!("r{i}")).collect();
        let ti: Vec<Item> = tests
            .iter()
            .zip(&t_ids)
            .map(|(text, id)| Item { id, text })
            .collect();
        let ri: Vec<Item> = trains
            .iter()
            .zip(&r_ids)
            .map(|(text, id)| Item { id, text })
            .collect();
        let cfg = ContaminationConfig::default();
        let got: BTreeMap<(String, String), String> = check(&ti, &ri, &cfg)
            .into_iter()
            .filter(|p| p.kind != "ngram_overlap" && p.kind != "shared_id")
            .map(|p| ((p.test_id, p.train_id), p.kind))
            .collect();
        let mut vocab_ids = new_vocab();
        let tp: Vec<Prepared> = tests.iter().map(|t| prepare(t, &mut vocab_ids)).collect();
        let rp: Vec<Prepared> = trains.iter().map(|t| prepare(t, &mut vocab_ids)).collect();
        let mut want = BTreeMap::new();
        for (i, t) in tp.iter().enumerate() {
            for (j, r) in rp.iter().enumerate() {
                if let Some((_, kind)) = pair_rules(t, r, &cfg) {
                    want.insert((t_ids[i].clone(), r_ids[j].clone()), kind.to_string());
                }
            }
        }
        assert!(
            want.len() > 100,
            "the fixture should leak a lot: {}",
            want.len()
        );
        let kinds: std::collections::BTreeSet<&str> = want.values().map(String::as_str).collect();
        assert!(kinds.len() >= 5, "{kinds:?}");
        assert_eq!(got, want);
    }

    #[test]
    fn texts_without_words_or_with_only_numbers_are_not_leaks_of_one_another() {
        let test = [("t1", "🙏🙏"), ("t2", "12"), ("t3", "order 12 please")];
        let train = [("r1", "👍👍"), ("r2", "3456"), ("r3", "order 9 please")];
        let got: Vec<(String, String)> = check(
            &items(&test),
            &items(&train),
            &ContaminationConfig::default(),
        )
        .into_iter()
        .map(|p| (p.test_id, p.kind))
        .collect();
        assert_eq!(got, vec![("t3".to_string(), "numbers_differ".to_string())]);
    }
}
