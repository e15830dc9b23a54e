//! Text-similarity scores of `text_similarity` graders that hone-eval does not already have, each in
//! [0, 1]: `fuzzy_match` (rapidfuzz's `fuzz.ratio` / 100: 2·LCS / (|a| + |b|) over characters),
//! `rouge_1`…`rouge_5` (the `rouge-score` package's ROUGE-N F-measure, no stemming) and `bleu`
//! (sacrebleu's `sentence_bleu` / 100: 13a tokens, exponential smoothing, effective order).

use std::collections::HashMap;
use std::sync::LazyLock;

use hone_eval::text::rouge_tokens;
use regex::Regex;

/// rapidfuzz's `fuzz.ratio(a, b) / 100`: the Indel similarity of the two character sequences
/// (1 for two empty strings).
pub fn fuzzy_ratio(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    2.0 * hone_eval::text::lcs_len(&a, &b) as f64 / (a.len() + b.len()) as f64
}

fn ngrams<T: AsRef<str>>(tokens: &[T], n: usize) -> HashMap<Vec<&str>, usize> {
    let mut m = HashMap::new();
    if tokens.len() >= n {
        for w in tokens.windows(n) {
            *m.entry(w.iter().map(AsRef::as_ref).collect()).or_default() += 1;
        }
    }
    m
}

fn overlap(a: &HashMap<Vec<&str>, usize>, b: &HashMap<Vec<&str>, usize>) -> usize {
    a.iter()
        .map(|(k, c)| (*c).min(*b.get(k).unwrap_or(&0)))
        .sum()
}

/// ROUGE-N F-measure (`rouge_scorer.RougeScorer(["rougeN"])`'s `fmeasure`).
pub fn rouge_n(prediction: &str, reference: &str, n: usize) -> f64 {
    let (pt, rt) = (rouge_tokens(prediction), rouge_tokens(reference));
    let (p, r) = (ngrams(&pt, n), ngrams(&rt, n));
    let common = overlap(&p, &r) as f64;
    let precision = common / p.values().sum::<usize>().max(1) as f64;
    let recall = common / r.values().sum::<usize>().max(1) as f64;
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

static BLEU_RULES: LazyLock<[(Regex, &str); 4]> = LazyLock::new(|| {
    let r = |p: &str| Regex::new(p).expect("13a pattern");
    [
        // Punctuation and symbols except `.` `,` `'` and `-` become tokens of their own.
        (
            r(r"([\x7B-\x7E\x5B-\x60\x20-\x26\x28-\x2B\x3A-\x40\x2F])"),
            " $1 ",
        ),
        // Period and comma, unless preceded by a digit …
        (r(r"([^0-9])([.,])"), "$1 $2 "),
        // … or followed by one.
        (r(r"([.,])([^0-9])"), " $1 $2"),
        // A dash after a digit.
        (r(r"([0-9])(-)"), "$1 $2 "),
    ]
});

/// sacrebleu's `13a` tokenizer (mteval-v13a).
pub fn tokens_13a(line: &str) -> Vec<String> {
    let mut s = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if s.contains('&') {
        s = s
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut s = format!(" {s} ");
    for (re, rep) in BLEU_RULES.iter() {
        s = re.replace_all(&s, *rep).into_owned();
    }
    // Python's `str.split()`: Unicode whitespace plus U+001C..U+001F.
    s.split(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// sacrebleu's `sentence_bleu(hypothesis, [reference]).score / 100`.
pub fn bleu(hypothesis: &str, reference: &str) -> f64 {
    let h = tokens_13a(hypothesis);
    let r = tokens_13a(reference);
    let (sys_len, ref_len) = (h.len() as f64, r.len() as f64);
    let bp = if sys_len < ref_len {
        if sys_len > 0.0 {
            (1.0 - ref_len / sys_len).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut correct = [0usize; 4];
    let mut total = [0usize; 4];
    for n in 1..=4 {
        let hn = ngrams(&h, n);
        correct[n - 1] = overlap(&hn, &ngrams(&r, n));
        total[n - 1] = hn.values().sum();
    }
    if correct.iter().all(|c| *c == 0) {
        return 0.0;
    }
    let mut precisions = [0.0f64; 4];
    let mut smooth = 1.0;
    let mut order = 4;
    for n in 1..=4 {
        if total[n - 1] == 0 {
            break;
        }
        order = n;
        precisions[n - 1] = if correct[n - 1] == 0 {
            smooth *= 2.0;
            1.0 / (smooth * total[n - 1] as f64)
        } else {
            correct[n - 1] as f64 / total[n - 1] as f64
        };
    }
    bp * (precisions[..order].iter().map(|p| p.ln()).sum::<f64>() / order as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzzy_ratio_is_rapidfuzz_ratio() {
        // rapidfuzz: fuzz.ratio("this is a test", "this is a test!") == 96.55172413793103
        assert!(
            (fuzzy_ratio("this is a test", "this is a test!") - 0.9655172413793103).abs() < 1e-12
        );
        assert_eq!(fuzzy_ratio("", ""), 1.0);
        assert_eq!(fuzzy_ratio("abc", ""), 0.0);
        assert_eq!(fuzzy_ratio("abc", "abc"), 1.0);
    }

    #[test]
    fn tokens_13a_split_punctuation_but_not_numbers() {
        assert_eq!(
            tokens_13a("Hello, world! It costs $3.50 (tax-free)."),
            [
                "Hello", ",", "world", "!", "It", "costs", "$", "3.50", "(", "tax-free", ")", "."
            ]
        );
    }
}
