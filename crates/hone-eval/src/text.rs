//! Reference metrics for generated text: exact match and token F1 (SQuAD's answer normalisation),
//! ROUGE-L (as the `rouge-score` package computes it, no stemming) and chrF (as `sacrebleu`'s
//! default `CHRF()`: character 1- to 6-grams, β = 2, whitespace ignored). Scores are in [0, 1]
//! (chrF is sacrebleu's score / 100).
//!
//! A corpus's chrF pools the n-gram statistics of every example before scoring, as sacrebleu's
//! `corpus_score` does ([`chrf_corpus`]); ROUGE-L, exact match and token F1 are means over examples.

use std::collections::HashMap;

/// Character n-gram orders of chrF.
pub const CHRF_ORDER: usize = 6;
const CHRF_BETA: f64 = 2.0;

/// chrF's statistics of one (hypothesis, reference) pair: for each order 1..=6 the hypothesis's
/// n-gram count, the reference's and the matches (`[hyp, ref, match]` × 6).
pub type ChrfStats = [u64; 3 * CHRF_ORDER];

/// Python's `str.split()` whitespace: Unicode White_Space plus the four ASCII separators
/// U+001C..U+001F, which Python also counts.
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// SQuAD's `normalize_answer`: lower case, ASCII punctuation removed, the articles a/an/the
/// removed, whitespace collapsed. Returns the words.
pub fn squad_words(s: &str) -> Vec<String> {
    let lower = s.to_lowercase();
    let no_punct: String = lower
        .chars()
        .filter(|c| !c.is_ascii_punctuation())
        .collect();
    no_punct
        .split(py_space)
        .filter(|w| !w.is_empty() && !matches!(*w, "a" | "an" | "the"))
        .map(str::to_string)
        .collect()
}

/// 1 when the normalised answers are equal, else 0.
pub fn exact_match(prediction: &str, reference: &str) -> f64 {
    f64::from(u8::from(squad_words(prediction) == squad_words(reference)))
}

/// SQuAD's token F1 over normalised words (1 when both are empty, 0 when only one is).
pub fn token_f1(prediction: &str, reference: &str) -> f64 {
    let p = squad_words(prediction);
    let r = squad_words(reference);
    if p.is_empty() || r.is_empty() {
        return f64::from(u8::from(p.is_empty() && r.is_empty()));
    }
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for w in &r {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0i64;
    for w in &p {
        if let Some(c) = counts.get_mut(w.as_str())
            && *c > 0
        {
            *c -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / p.len() as f64;
    let recall = common as f64 / r.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// `rouge-score`'s tokenizer without a stemmer: lower case, every run of characters outside
/// `[a-z0-9]` is a separator (so letters outside ASCII are dropped, as there).
pub fn rouge_tokens(s: &str) -> Vec<String> {
    s.to_lowercase()
        .split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit()))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// Length of the longest common subsequence of two sequences (ROUGE-L's tokens, fuzzy match's
/// characters).
pub fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev = vec![0usize; b.len() + 1];
    let mut cur = vec![0usize; b.len() + 1];
    for x in a {
        for (j, y) in b.iter().enumerate() {
            cur[j + 1] = if x == y {
                prev[j] + 1
            } else {
                prev[j + 1].max(cur[j])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// ROUGE-L F-measure (`rouge_scorer.RougeScorer(["rougeL"])`'s `fmeasure`); 0 when either side has
/// no tokens.
pub fn rouge_l(prediction: &str, reference: &str) -> f64 {
    let p = rouge_tokens(prediction);
    let r = rouge_tokens(reference);
    if p.is_empty() || r.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&r, &p) as f64;
    let precision = lcs / p.len() as f64;
    let recall = lcs / r.len() as f64;
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

fn char_ngrams(chars: &[char], n: usize) -> HashMap<&[char], u64> {
    let mut m = HashMap::new();
    if chars.len() >= n {
        for w in chars.windows(n) {
            *m.entry(w).or_default() += 1;
        }
    }
    m
}

/// chrF's n-gram statistics of `hypothesis` against `reference`.
pub fn chrf_stats(hypothesis: &str, reference: &str) -> ChrfStats {
    let h: Vec<char> = hypothesis.chars().filter(|c| !py_space(*c)).collect();
    let r: Vec<char> = reference.chars().filter(|c| !py_space(*c)).collect();
    let mut out = [0u64; 3 * CHRF_ORDER];
    for n in 1..=CHRF_ORDER {
        let hn = char_ngrams(&h, n);
        let rn = char_ngrams(&r, n);
        let matches: u64 = hn
            .iter()
            .map(|(g, c)| (*c).min(rn.get(g).copied().unwrap_or(0)))
            .sum();
        let i = 3 * (n - 1);
        let n_ref = r.len().saturating_sub(n - 1) as u64;
        // As sacrebleu: a hypothesis's n-grams are not counted where the reference has none of
        // that order (it changes pooled corpus scores, not sentence scores).
        out[i] = if n_ref > 0 {
            h.len().saturating_sub(n - 1) as u64
        } else {
            0
        };
        out[i + 1] = n_ref;
        out[i + 2] = matches;
    }
    out
}

/// chrF in [0, 1] from (summed) statistics: sacrebleu 2's `_compute_f_score` without epsilon
/// smoothing (precision and recall averaged over the orders both sides have, then F-β).
pub fn chrf_score(stats: &ChrfStats) -> f64 {
    let factor = CHRF_BETA * CHRF_BETA;
    let (mut avg_p, mut avg_r, mut orders) = (0.0, 0.0, 0usize);
    for i in 0..CHRF_ORDER {
        let (n_hyp, n_ref, n_match) = (stats[3 * i], stats[3 * i + 1], stats[3 * i + 2]);
        if n_hyp > 0 && n_ref > 0 {
            avg_p += n_match as f64 / n_hyp as f64;
            avg_r += n_match as f64 / n_ref as f64;
            orders += 1;
        }
    }
    if orders == 0 {
        return 0.0;
    }
    avg_p /= orders as f64;
    avg_r /= orders as f64;
    if avg_p + avg_r > 0.0 {
        (1.0 + factor) * avg_p * avg_r / (factor * avg_p + avg_r)
    } else {
        0.0
    }
}

/// Sentence-level chrF in [0, 1] (sacrebleu's `sentence_score(...).score / 100`).
pub fn chrf(hypothesis: &str, reference: &str) -> f64 {
    chrf_score(&chrf_stats(hypothesis, reference))
}

/// Corpus chrF of the examples `idx` (statistics pooled, as sacrebleu's `corpus_score`); `NaN` for
/// no examples. The form [`crate::bootstrap::bootstrap_ci`] resamples.
pub fn chrf_corpus(stats: &[ChrfStats], idx: &[usize]) -> f64 {
    if idx.is_empty() {
        return f64::NAN;
    }
    let mut sum = [0u64; 3 * CHRF_ORDER];
    for &i in idx {
        if let Some(s) = stats.get(i) {
            for (a, b) in sum.iter_mut().zip(s) {
                *a += b;
            }
        }
    }
    chrf_score(&sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squad_normalisation_and_token_f1() {
        assert_eq!(exact_match("The Eiffel Tower!", "eiffel   tower"), 1.0);
        assert_eq!(exact_match("Paris", "Lyon"), 0.0);
        // 2 common words of 3 predicted and 4 reference words.
        let f = token_f1("refund sent today", "your refund was sent");
        assert!((f - 2.0 * (2.0 / 3.0) * 0.5 / (2.0 / 3.0 + 0.5)).abs() < 1e-12);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("a the", "x"), 0.0);
    }

    #[test]
    fn rouge_l_uses_the_longest_common_subsequence_of_ascii_tokens() {
        assert_eq!(
            rouge_tokens("Hello, World! Café 42"),
            ["hello", "world", "caf", "42"]
        );
        // LCS("a b c d", "a c d e") = 3.
        assert!((rouge_l("a c d e", "a b c d") - 0.75).abs() < 1e-12);
        assert_eq!(rouge_l("", "x"), 0.0);
        assert_eq!(rouge_l("!!!", "x"), 0.0);
    }

    #[test]
    fn chrf_of_identical_and_disjoint_texts() {
        assert!((chrf("the same text", "the same text") - 1.0).abs() < 1e-12);
        assert_eq!(chrf("xyz", "abc"), 0.0);
        assert_eq!(chrf("", "abc"), 0.0);
        // Whitespace is ignored.
        assert!((chrf("ab cd", "abcd") - 1.0).abs() < 1e-12);
        let stats = [chrf_stats("abc", "abc"), chrf_stats("xyz", "abd")];
        let pooled = chrf_corpus(&stats, &[0, 1]);
        assert!(pooled > 0.0 && pooled < 1.0);
        assert!(chrf_corpus(&stats, &[]).is_nan());
    }
}
