//! Text featurisation: optional lowercasing, word n-grams over alphanumeric tokens and character n-grams
//! (inside space-padded whitespace tokens like scikit-learn's `char_wb`, or over the whole text), each
//! hashed with a deterministic FNV-1a/murmur-finaliser hash into `0..buckets`.

/// FNV-1a 64-bit prime.
const PRIME: u64 = 0x0000_0100_0000_01B3;
/// Distinct starting states so that a word unigram and a char n-gram with the same bytes differ.
const SEED_CHAR: u64 = 0xCBF2_9CE4_8422_2325;
const SEED_WORD: u64 = 0x84222325_CBF29CE4;
const SEED_WORD_NGRAM: u64 = 0x2545_F491_4F6C_DD1D;

/// The murmur3 64-bit finaliser: spreads FNV's weak high bits before range reduction.
#[inline]
fn fmix(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    h ^= h >> 33;
    h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    h ^ (h >> 33)
}

#[inline]
fn fnv_bytes(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(PRIME);
    }
    h
}

/// Which n-grams to extract and into how many buckets.
#[derive(Clone, Debug)]
pub(crate) struct Featurizer {
    pub buckets: u64,
    pub word: (usize, usize),
    pub chars: (usize, usize),
    pub char_within_words: bool,
    pub lowercase: bool,
}

/// Reusable buffers (one per thread) so that featurising a text allocates nothing in the steady state.
#[derive(Default)]
pub(crate) struct Scratch {
    lower: String,
    padded: Vec<u8>,
    bounds: Vec<usize>,
    word_hashes: Vec<u64>,
    /// Sorted bucket ids of the word n-grams of the last text (with repeats).
    pub word_ids: Vec<u32>,
    /// Sorted bucket ids of the char n-grams of the last text (with repeats).
    pub char_ids: Vec<u32>,
}

impl Featurizer {
    #[inline]
    fn bucket(&self, h: u64) -> u32 {
        ((fmix(h) as u128 * self.buckets as u128) >> 64) as u32
    }

    /// Fills `s.word_ids` and `s.char_ids` (each sorted, repeats kept) for `text`.
    pub(crate) fn extract(&self, text: &str, s: &mut Scratch) {
        s.word_ids.clear();
        s.char_ids.clear();
        let mut lower = std::mem::take(&mut s.lower);
        lower.clear();
        let text: &str = if self.lowercase {
            if text.is_ascii() {
                lower.push_str(text);
                lower.make_ascii_lowercase();
            } else {
                for c in text.chars() {
                    lower.extend(c.to_lowercase());
                }
            }
            &lower
        } else {
            text
        };
        if self.word.0 > 0 {
            self.words(text, s);
        }
        if self.chars.0 > 0 {
            if self.char_within_words {
                for tok in text.split_whitespace() {
                    self.char_ngrams(tok, s);
                }
            } else {
                // Whole text with whitespace runs collapsed to one space.
                let mut joined = String::with_capacity(text.len());
                for (i, tok) in text.split_whitespace().enumerate() {
                    if i > 0 {
                        joined.push(' ');
                    }
                    joined.push_str(tok);
                }
                if !joined.is_empty() {
                    self.char_ngrams(&joined, s);
                }
            }
        }
        s.word_ids.sort_unstable();
        s.char_ids.sort_unstable();
        s.lower = lower;
    }

    fn words(&self, text: &str, s: &mut Scratch) {
        s.word_hashes.clear();
        for tok in text.split(|c: char| !c.is_alphanumeric()) {
            if !tok.is_empty() {
                s.word_hashes.push(fnv_bytes(SEED_WORD, tok.as_bytes()));
            }
        }
        let (lo, hi) = self.word;
        let m = s.word_hashes.len();
        for i in 0..m {
            let mut h = SEED_WORD_NGRAM;
            for n in 1..=hi {
                if i + n > m {
                    break;
                }
                h = (h ^ s.word_hashes[i + n - 1])
                    .wrapping_mul(PRIME)
                    .rotate_left(29);
                if n >= lo {
                    s.word_ids.push(self.bucket(h ^ n as u64));
                }
            }
        }
    }

    /// Char n-grams of `" " + tok + " "` (n counted in Unicode scalar values).
    fn char_ngrams(&self, tok: &str, s: &mut Scratch) {
        s.padded.clear();
        s.padded.push(b' ');
        s.padded.extend_from_slice(tok.as_bytes());
        s.padded.push(b' ');
        s.bounds.clear();
        for (i, &b) in s.padded.iter().enumerate() {
            if b & 0xC0 != 0x80 {
                s.bounds.push(i);
            }
        }
        s.bounds.push(s.padded.len());
        let nchars = s.bounds.len() - 1;
        let (lo, hi) = self.chars;
        for i in 0..nchars {
            let mut h = SEED_CHAR;
            for n in 1..=hi {
                if i + n > nchars {
                    break;
                }
                let piece = &s.padded[s.bounds[i + n - 1]..s.bounds[i + n]];
                h = fnv_bytes(h, piece);
                if n >= lo {
                    s.char_ids.push(self.bucket(h));
                }
            }
        }
    }
}

/// Collapses a sorted id list into `(id, count)` pairs.
pub(crate) fn counts(sorted: &[u32], out: &mut Vec<(u32, u32)>) {
    out.clear();
    for &id in sorted {
        match out.last_mut() {
            Some((last, n)) if *last == id => *n += 1,
            _ => out.push((id, 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> Featurizer {
        Featurizer {
            buckets: 1 << 20,
            word: (1, 2),
            chars: (2, 3),
            char_within_words: true,
            lowercase: true,
        }
    }

    #[test]
    fn counts_and_determinism() {
        let mut s = Scratch::default();
        f().extract("Hello World hello", &mut s);
        // words: hello world hello -> 3 unigrams + 2 bigrams
        assert_eq!(s.word_ids.len(), 5);
        // " hello " = 7 chars: 6 bigrams + 5 trigrams; " world " same; x2 hello
        assert_eq!(s.char_ids.len(), 33);
        let first = (s.word_ids.clone(), s.char_ids.clone());
        f().extract("hello world HELLO", &mut s);
        assert_eq!(first.0, s.word_ids);
        let mut c = Vec::new();
        counts(&[1, 1, 2, 5, 5, 5], &mut c);
        assert_eq!(c, vec![(1, 2), (2, 1), (5, 3)]);
    }

    #[test]
    fn unicode_and_empty() {
        let mut s = Scratch::default();
        f().extract("", &mut s);
        assert!(s.word_ids.is_empty() && s.char_ids.is_empty());
        f().extract("Ünïcödé ✓ 日本語", &mut s);
        assert!(!s.char_ids.is_empty());
        assert!(
            s.word_ids
                .iter()
                .chain(&s.char_ids)
                .all(|&b| (b as u64) < (1 << 20))
        );
        let whole = Featurizer {
            char_within_words: false,
            ..f()
        };
        whole.extract("a b", &mut s);
        // " a b " = 5 chars: 4 bigrams + 3 trigrams
        assert_eq!(s.char_ids.len(), 7);
    }
}
