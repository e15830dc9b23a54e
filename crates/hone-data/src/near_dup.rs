//! Near-duplicate detection for text corpora: MinHash + LSH over word shingles with every
//! candidate verified by exact Jaccard, plus a containment path for short texts, joined by
//! union-find into clusters.
//!
//! Pipeline of [`find_near_duplicates`] (single thread; std plus hone-core's seeded generator):
//!
//! 1. Tokenize every text into lowercased Unicode alphanumeric words (see [`tokenize`]) and
//!    hash each word to 64 bits without allocating. Word `k`-shingles (`k = shingle_words`)
//!    are hashed to 64 bits, sorted and deduplicated into one flat arena. A text with fewer
//!    than `k` words yields a single shingle: its whole token sequence (an empty text yields
//!    the shingle of the empty sequence, so all word-less texts form one cluster).
//! 2. Texts with identical shingle sets are merged up front (Jaccard 1.0); only one
//!    representative per identical set goes on to the later stages.
//! 3. MinHash: `num_perm` hash functions `h_i(x) = (x ^ s_i) * m_i (mod 2^32)` over the
//!    32 high bits of each shingle hash, computed in a branch-free loop that autovectorises
//!    (AVX2 is used when the CPU has it). LSH banding `(bands, rows)` minimises
//!    `0.1 * false-positive area + 0.9 * false-negative area` at `threshold`, like
//!    datasketch's `_optimal_param` but weighted towards recall, since every candidate is
//!    verified exactly. Buckets are found by sorting `(band key, doc)` per band; each doc is
//!    verified against the earlier members of its bucket that are not already in its
//!    cluster, and merged when the exact Jaccard of the shingle-hash sets is `>= threshold`.
//! 4. Short texts (both texts with fewer than `short_text_words` words): sets of word
//!    bigrams (a one-word text uses its single word, which only matches the same one-word
//!    text). An inverted index with prefix filtering by global bigram frequency (rarest
//!    first) finds every pair whose containment `|x ∩ y| / min(|x|, |y|)` is
//!    `>= short_containment` (bigrams are compared by a hash prefix of at least 32 bits,
//!    46 for 100k+ short texts); such pairs are merged too. A 64-bit bloom filter per text
//!    rejects most candidates before the exact check.
//!
//! The output is deterministic for a given config (no randomised hashing, all grouping is
//! done by sorting) and no input makes it panic.

use hone_core::rng::SeededRng;

/// Settings of [`find_near_duplicates`].
#[derive(Debug, Clone, PartialEq)]
pub struct NearDupConfig {
    /// Words per shingle for MinHash and Jaccard (0 is treated as 1).
    pub shingle_words: usize,
    /// Number of MinHash permutations (capped at 1024; 0 disables the MinHash path).
    pub num_perm: usize,
    /// Jaccard threshold on the shingle sets; the LSH banding is tuned for it and every
    /// candidate is verified by true Jaccard.
    pub threshold: f64,
    /// A pair where both texts have fewer words than this is also a near-duplicate when its
    /// bigram containment reaches `short_containment` (0 disables the short-text path).
    pub short_text_words: usize,
    /// Minimum fraction of the smaller bigram set that must lie in the larger one.
    pub short_containment: f64,
    /// Seeds the permutations; the same seed gives the same result.
    pub seed: u64,
}

impl Default for NearDupConfig {
    fn default() -> Self {
        Self {
            shingle_words: 5,
            num_perm: 128,
            threshold: 0.8,
            short_text_words: 20,
            short_containment: 0.9,
            seed: 1,
        }
    }
}

/// Which test made a pair near-duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    /// Exact Jaccard of the word-shingle sets reached `threshold`.
    Jaccard,
    /// Both texts are short and their bigram containment reached `short_containment`.
    Containment,
}

/// A verified pair that merged two clusters.
#[derive(Debug, Clone, PartialEq)]
pub struct NearDupPair {
    /// Smaller document index.
    pub a: u32,
    /// Larger document index.
    pub b: u32,
    /// Jaccard or containment, depending on `kind`.
    pub similarity: f64,
    /// Which test matched.
    pub kind: MatchKind,
}

/// Output of [`find_near_duplicates`].
#[derive(Debug, Clone, PartialEq)]
pub struct NearDupResult {
    /// Per document: its cluster id, the smallest document index in its cluster.
    pub cluster_of: Vec<u32>,
    /// The verified pairs that caused a union, sorted by `(a, b)`: a spanning forest of the
    /// clusters.
    pub pairs: Vec<NearDupPair>,
    /// Candidate pairs verified exactly: identical-set checks, LSH bucket mates, and
    /// short-text candidates that passed the cheap size and bloom-filter tests.
    pub n_candidates: u64,
}

/// Documents beyond this index cannot be named by a `u32` cluster id and are not processed.
const MAX_DOCS: usize = u32::MAX as usize;
/// Upper bound on `num_perm`.
const MAX_PERM: usize = 1024;
/// Weights of the false-positive and false-negative areas when choosing the banding.
const FP_WEIGHT: f64 = 0.1;
const FN_WEIGHT: f64 = 0.9;
/// At most this many exact verifications per (document, band) bucket visit, so a bucket
/// of many mutually dissimilar documents cannot make the pass quadratic.
const MAX_CHECKS_PER_BUCKET: usize = 256;
/// Permutations are computed in register-sized chunks of this many lanes.
const CHUNK: usize = 32;

const K1: u64 = 0x9E37_79B9_7F4A_7C15;
const K2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const WORD_SEED: u64 = 0x243F_6A88_85A3_08D3;
const SHINGLE_SEED: u64 = 0x1319_8A2E_0370_7344;
const BIGRAM_SEED: u64 = 0xA409_3822_299F_31D0;
const UNIGRAM_SEED: u64 = 0x082E_FA98_EC4E_6C89;
const SET_SEED: u64 = 0x4528_21E6_38D0_1377;

#[inline]
fn fmix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    x = x.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
    x ^ (x >> 33)
}

// ---------------------------------------------------------------------------------------
// Tokenization
// ---------------------------------------------------------------------------------------

/// Receives the lowercased characters of each word, then the end of the word.
trait WordSink {
    fn byte(&mut self, b: u8);
    fn ch(&mut self, c: char);
    fn end(&mut self);
}

/// Scans `text` for maximal runs of alphanumeric characters (Unicode `char::is_alphanumeric`)
/// and feeds them lowercased to `sink`; everything else separates words.
#[inline]
fn scan_words<S: WordSink>(text: &str, sink: &mut S) {
    let bytes = text.as_bytes();
    let mut in_word = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            if b.is_ascii_alphanumeric() {
                sink.byte(b.to_ascii_lowercase());
                in_word = true;
            } else if in_word {
                sink.end();
                in_word = false;
            }
            i += 1;
        } else {
            let Some(c) = text.get(i..).and_then(|s| s.chars().next()) else {
                break;
            };
            if c.is_alphanumeric() {
                for lc in c.to_lowercase() {
                    sink.ch(lc);
                }
                in_word = true;
            } else if in_word {
                sink.end();
                in_word = false;
            }
            i += c.len_utf8();
        }
    }
    if in_word {
        sink.end();
    }
}

struct StringSink {
    cur: String,
    out: Vec<String>,
}

impl WordSink for StringSink {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.cur.push(char::from(b));
    }
    #[inline]
    fn ch(&mut self, c: char) {
        self.cur.push(c);
    }
    #[inline]
    fn end(&mut self) {
        self.out.push(std::mem::take(&mut self.cur));
    }
}

/// Hashes each word's lowercased UTF-8 bytes to 64 bits, eight bytes per mixing step.
struct HashSink<'a> {
    out: &'a mut Vec<u64>,
    h: u64,
    buf: u64,
    nbuf: u32,
    len: u64,
}

impl<'a> HashSink<'a> {
    fn new(out: &'a mut Vec<u64>) -> Self {
        Self {
            out,
            h: WORD_SEED,
            buf: 0,
            nbuf: 0,
            len: 0,
        }
    }
}

impl WordSink for HashSink<'_> {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.buf |= u64::from(b) << (self.nbuf * 8);
        self.nbuf += 1;
        self.len += 1;
        if self.nbuf == 8 {
            self.h = (self.h ^ self.buf).wrapping_mul(K1).rotate_left(27);
            self.buf = 0;
            self.nbuf = 0;
        }
    }
    #[inline]
    fn ch(&mut self, c: char) {
        let mut tmp = [0u8; 4];
        for &b in c.encode_utf8(&mut tmp).as_bytes() {
            self.byte(b);
        }
    }
    #[inline]
    fn end(&mut self) {
        self.out
            .push(fmix64((self.h ^ self.buf).wrapping_mul(K2) ^ self.len));
        self.h = WORD_SEED;
        self.buf = 0;
        self.nbuf = 0;
        self.len = 0;
    }
}

/// Splits `text` into lowercased word tokens: maximal runs of Unicode alphanumeric
/// characters; punctuation, symbols and whitespace separate words and are dropped
/// (`"Refund please, thanks!"` → `["refund", "please", "thanks"]`).
pub fn tokenize(text: &str) -> Vec<String> {
    let mut sink = StringSink {
        cur: String::new(),
        out: Vec::new(),
    };
    scan_words(text, &mut sink);
    sink.out
}

/// Hash of a word of ASCII alphanumeric bytes; equal to what [`HashSink`] computes for the
/// lowercased bytes (`b | 0x20` lowercases ASCII letters and keeps digits).
#[inline]
fn ascii_word_hash(w: &[u8]) -> u64 {
    let mut h = WORD_SEED;
    let mut chunks = w.chunks_exact(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        let v = u64::from_le_bytes(a) | 0x2020_2020_2020_2020;
        h = (h ^ v).wrapping_mul(K1).rotate_left(27);
    }
    let mut buf = 0u64;
    for (i, &b) in chunks.remainder().iter().enumerate() {
        buf |= u64::from(b | 0x20) << (8 * i);
    }
    fmix64((h ^ buf).wrapping_mul(K2) ^ w.len() as u64)
}

/// Hashes the word starting at byte `start` (which may contain non-ASCII characters) and
/// returns the byte index after it; a separator at `start` is skipped.
#[cold]
fn slow_word(text: &str, start: usize, out: &mut Vec<u64>) -> usize {
    let mut sink = HashSink::new(out);
    let mut any = false;
    let mut i = start;
    for c in text.get(start..).unwrap_or("").chars() {
        let alnum = if c.is_ascii() {
            c.is_ascii_alphanumeric()
        } else {
            c.is_alphanumeric()
        };
        if !alnum {
            if !any {
                i += c.len_utf8();
            }
            break;
        }
        if c.is_ascii() {
            sink.byte((c as u8).to_ascii_lowercase());
        } else {
            for lc in c.to_lowercase() {
                sink.ch(lc);
            }
        }
        any = true;
        i += c.len_utf8();
    }
    if any {
        sink.end();
    }
    i.max(start + 1)
}

/// Bit `k` set when byte `k` of the little-endian chunk `x` (all bytes ASCII) is an ASCII
/// letter or digit.
#[inline]
fn alnum_bits(x: u64) -> u64 {
    const H: u64 = 0x8080_8080_8080_8080;
    const L: u64 = 0x0101_0101_0101_0101;
    // High bit of each byte set when that byte is >= c (valid for bytes < 0x80).
    let ge = |v: u64, c: u8| ((v | H) - L * u64::from(c)) & H;
    let digit = ge(x, b'0') & !ge(x, b'9' + 1);
    let y = x | (L * 0x20);
    let letter = ge(y, b'a') & !ge(y, b'z' + 1);
    (((digit | letter) & H) >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Reusable buffers of [`word_hashes`].
#[derive(Default)]
struct Scratch {
    /// The text, zero-padded to a multiple of 64 bytes plus 8.
    pad: Vec<u8>,
    /// Bit per byte of `pad`: ASCII alphanumeric.
    mask: Vec<u64>,
}

#[inline]
fn load8(p: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = p.get(at..at + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// Position of the first bit at or after `p` equal to `want` (`mask.len() * 64` if none).
#[inline]
fn next_bit(mask: &[u64], p: usize, want: bool) -> usize {
    let mut wi = p / 64;
    let flip = if want { 0 } else { u64::MAX };
    let Some(&first) = mask.get(wi) else {
        return mask.len() * 64;
    };
    let mut m = (first ^ flip) >> (p % 64);
    if m != 0 {
        return p + m.trailing_zeros() as usize;
    }
    loop {
        wi += 1;
        let Some(&w) = mask.get(wi) else {
            return mask.len() * 64;
        };
        m = w ^ flip;
        if m != 0 {
            return wi * 64 + m.trailing_zeros() as usize;
        }
    }
}

/// The hashes of [`tokenize`]'s tokens, without allocating. Pure-ASCII texts are
/// classified eight bytes at a time and each word hashed eight bytes at a time.
#[inline]
fn word_hashes(text: &str, out: &mut Vec<u64>, sc: &mut Scratch) {
    out.clear();
    let bytes = text.as_bytes();
    if !bytes.is_ascii() {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if b.is_ascii_alphanumeric() {
                let mut j = i + 1;
                while j < bytes.len() && bytes[j].is_ascii_alphanumeric() {
                    j += 1;
                }
                if j < bytes.len() && bytes[j] >= 0x80 {
                    i = slow_word(text, i, out);
                } else {
                    out.push(ascii_word_hash(&bytes[i..j]));
                    i = j;
                }
            } else if b < 0x80 {
                i += 1;
            } else {
                i = slow_word(text, i, out);
            }
        }
        return;
    }
    let n = bytes.len();
    let padded = n.div_ceil(64) * 64;
    sc.pad.clear();
    sc.pad.extend_from_slice(bytes);
    sc.pad.resize(padded + 8, 0);
    sc.mask.clear();
    for block in sc.pad[..padded].chunks_exact(64) {
        let mut m = 0u64;
        for (i, c) in block.chunks_exact(8).enumerate() {
            m |= alnum_bits(load8(c, 0)) << (8 * i);
        }
        sc.mask.push(m);
    }
    let (pad, mask) = (&sc.pad, &sc.mask);
    let mut p = 0;
    loop {
        let s = next_bit(mask, p, true);
        if s >= n {
            break;
        }
        let e = next_bit(mask, s, false).min(n);
        let mut h = WORD_SEED;
        let mut q = s;
        while q + 8 <= e {
            let v = load8(pad, q) | 0x2020_2020_2020_2020;
            h = (h ^ v).wrapping_mul(K1).rotate_left(27);
            q += 8;
        }
        let low = (1u64 << (8 * (e - q))) - 1;
        let buf = (load8(pad, q) | 0x2020_2020_2020_2020) & low;
        out.push(fmix64((h ^ buf).wrapping_mul(K2) ^ (e - s) as u64));
        p = e;
    }
}

#[inline]
fn shingle_hash(words: &[u64]) -> u64 {
    let mut h = SHINGLE_SEED ^ (words.len() as u64);
    for &w in words {
        h = (h ^ w).wrapping_mul(K1).rotate_left(31);
    }
    fmix64(h)
}

/// Sorted, deduplicated shingle hashes of a word-hash sequence into `out` (cleared first).
#[inline]
fn shingle_set(words: &[u64], k: usize, out: &mut Vec<u64>) {
    out.clear();
    if words.len() < k {
        out.push(shingle_hash(words));
    } else {
        out.extend(words.windows(k).map(shingle_hash));
        out.sort_unstable();
        out.dedup();
    }
}

/// Appends the bigram hashes of a text (the single word's hash for a one-word text), in
/// text order and possibly repeated: the short-text index sorts and deduplicates globally.
#[inline]
fn push_bigrams(words: &[u64], out: &mut Vec<u64>) {
    if let [w] = words {
        out.push(fmix64(*w ^ UNIGRAM_SEED));
    } else {
        out.extend(
            words
                .windows(2)
                .map(|p| fmix64((BIGRAM_SEED ^ p[0]).wrapping_mul(K1).rotate_left(31) ^ p[1])),
        );
    }
}

/// Sorts `v` into `Ord` order, given that `top(x)` is non-decreasing in that order and its
/// high bits are roughly uniform (hashes): one counting pass on the top bits, then small
/// sorts inside each bucket. `tmp` is scratch space.
fn bucket_sort<T: Copy + Ord>(v: &mut [T], tmp: &mut Vec<T>, top: impl Fn(&T) -> u64) {
    let n = v.len();
    if n < 4096 {
        v.sort_unstable();
        return;
    }
    let bits = (usize::BITS - n.leading_zeros())
        .saturating_sub(2)
        .clamp(8, 18);
    let shift = 64 - bits;
    let mut starts = vec![0usize; (1usize << bits) + 1];
    for x in v.iter() {
        starts[(top(x) >> shift) as usize + 1] += 1;
    }
    let mut acc = 0;
    for c in starts.iter_mut() {
        acc += *c;
        *c = acc;
    }
    tmp.clear();
    tmp.extend_from_slice(v);
    let mut pos = starts.clone();
    for x in tmp.iter() {
        let b = (top(x) >> shift) as usize;
        v[pos[b]] = *x;
        pos[b] += 1;
    }
    for w in starts.windows(2) {
        v[w[0]..w[1]].sort_unstable();
    }
}

/// Size of the intersection of two sorted, deduplicated slices.
#[inline]
pub(crate) fn intersect_count<T: Ord>(a: &[T], b: &[T]) -> usize {
    let (mut i, mut j, mut c) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                c += 1;
                i += 1;
                j += 1;
            }
        }
    }
    c
}

#[inline]
fn jaccard_sets(a: &[u64], b: &[u64]) -> f64 {
    let inter = intersect_count(a, b);
    let union = a.len() + b.len() - inter;
    if union == 0 {
        1.0
    } else {
        inter as f64 / union as f64
    }
}

/// Exact Jaccard similarity of the word `shingle_words`-shingle sets of two texts (with the
/// same tokenization and short-text rule as [`find_near_duplicates`]; shingles are compared
/// by 64-bit hash).
pub fn jaccard(a: &str, b: &str, shingle_words: usize) -> f64 {
    let k = shingle_words.max(1);
    let mut words = Vec::new();
    let mut sc = Scratch::default();
    let (mut sa, mut sb) = (Vec::new(), Vec::new());
    word_hashes(a, &mut words, &mut sc);
    shingle_set(&words, k, &mut sa);
    word_hashes(b, &mut words, &mut sc);
    shingle_set(&words, k, &mut sb);
    jaccard_sets(&sa, &sb)
}

// ---------------------------------------------------------------------------------------
// Union-find
// ---------------------------------------------------------------------------------------

struct UnionFind {
    parent: Vec<u32>,
    rank: Vec<u8>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            rank: vec![0; n],
        }
    }

    #[inline]
    fn find(&mut self, mut x: u32) -> u32 {
        loop {
            let p = self.parent[x as usize];
            if p == x {
                return x;
            }
            let gp = self.parent[p as usize];
            self.parent[x as usize] = gp;
            x = gp;
        }
    }

    /// Merges the sets of two roots.
    #[inline]
    fn union_roots(&mut self, ra: u32, rb: u32) {
        let (ka, kb) = (self.rank[ra as usize], self.rank[rb as usize]);
        if ka < kb {
            self.parent[ra as usize] = rb;
        } else {
            self.parent[rb as usize] = ra;
            if ka == kb {
                self.rank[ra as usize] = ka.saturating_add(1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// LSH parameters
// ---------------------------------------------------------------------------------------

fn integrate(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    const STEPS: usize = 200;
    let h = (hi - lo) / STEPS as f64;
    (0..STEPS)
        .map(|i| f(lo + (i as f64 + 0.5) * h))
        .sum::<f64>()
        * h
}

/// `(bands, rows)` with `bands * rows <= num_perm` minimising the weighted false-positive
/// plus false-negative area of the banding's S-curve at `threshold`.
fn optimal_bands(threshold: f64, num_perm: usize) -> (usize, usize) {
    let t = if threshold.is_nan() {
        0.99
    } else {
        threshold.clamp(0.01, 0.99)
    };
    let mut best = (f64::INFINITY, 1, num_perm);
    for b in 1..=num_perm {
        for r in 1..=num_perm / b {
            let (bi, ri) = (b as i32, r as i32);
            let fp = integrate(|s| 1.0 - (1.0 - s.powi(ri)).powi(bi), 0.0, t);
            let fneg = integrate(|s| (1.0 - s.powi(ri)).powi(bi), t, 1.0);
            let err = FP_WEIGHT * fp + FN_WEIGHT * fneg;
            if err < best.0 {
                best = (err, b, r);
            }
        }
    }
    (best.1, best.2)
}

// ---------------------------------------------------------------------------------------
// MinHash signatures and band keys
// ---------------------------------------------------------------------------------------

/// Min over the shingles of `(x ^ s_i) * m_i` for each permutation lane, chunk by chunk so
/// the accumulators stay in vector registers.
#[inline(always)]
fn signature_kernel(
    shingles: &[u64],
    xs: &[[u32; CHUNK]],
    ms: &[[u32; CHUNK]],
    out: &mut [[u32; CHUNK]],
) {
    for ((x, m), o) in xs.iter().zip(ms).zip(out.iter_mut()) {
        let mut acc = [u32::MAX; CHUNK];
        for &s in shingles {
            let v = (s >> 32) as u32;
            for ((a, &xi), &mi) in acc.iter_mut().zip(x).zip(m) {
                *a = (*a).min((v ^ xi).wrapping_mul(mi));
            }
        }
        *o = acc;
    }
}

#[inline]
fn band_key(vals: &[u32]) -> u64 {
    let mut h = K2;
    let mut pairs = vals.chunks_exact(2);
    for p in &mut pairs {
        let v = u64::from(p[0]) | (u64::from(p[1]) << 32);
        h = (h ^ v).wrapping_mul(K1).rotate_left(29);
    }
    for &v in pairs.remainder() {
        h = (h ^ u64::from(v)).wrapping_mul(K1).rotate_left(29);
    }
    fmix64(h)
}

struct Lsh<'a> {
    xs: &'a [[u32; CHUNK]],
    ms: &'a [[u32; CHUNK]],
    bands: usize,
    rows: usize,
}

/// Fills `keys[band * reps.len() + j]` with the 32-bit key of band `band` of `reps[j]` in
/// the high half and `reps[j]` in the low half.
#[inline(always)]
fn band_keys_generic(lsh: &Lsh<'_>, reps: &[u32], sh: &[u64], sh_off: &[usize], keys: &mut [u64]) {
    let nr = reps.len();
    let mut sig = vec![[0u32; CHUNK]; lsh.xs.len()];
    for (j, &d) in reps.iter().enumerate() {
        let set = &sh[sh_off[d as usize]..sh_off[d as usize + 1]];
        signature_kernel(set, lsh.xs, lsh.ms, &mut sig);
        let flat = sig.as_flattened();
        for (band, vals) in flat.chunks_exact(lsh.rows).take(lsh.bands).enumerate() {
            keys[band * nr + j] = (band_key(vals) & 0xFFFF_FFFF_0000_0000) | u64::from(d);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn band_keys_avx2(lsh: &Lsh<'_>, reps: &[u32], sh: &[u64], sh_off: &[usize], keys: &mut [u64]) {
    band_keys_generic(lsh, reps, sh, sh_off, keys);
}

fn band_keys(lsh: &Lsh<'_>, reps: &[u32], sh: &[u64], sh_off: &[usize], keys: &mut [u64]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the running CPU supports AVX2, checked just above.
            unsafe { band_keys_avx2(lsh, reps, sh, sh_off, keys) };
            return;
        }
    }
    band_keys_generic(lsh, reps, sh, sh_off, keys);
}

// ---------------------------------------------------------------------------------------
// Driver
// ---------------------------------------------------------------------------------------

struct Merger {
    uf: UnionFind,
    pairs: Vec<NearDupPair>,
    n_candidates: u64,
}

impl Merger {
    #[inline]
    fn merge(&mut self, ra: u32, rb: u32, x: u32, y: u32, similarity: f64, kind: MatchKind) {
        self.uf.union_roots(ra, rb);
        self.pairs.push(NearDupPair {
            a: x.min(y),
            b: x.max(y),
            similarity,
            kind,
        });
    }
}

/// A posting-list entry of the short-text index.
struct Post {
    /// 64-bit bloom filter of the document's bigrams.
    bloom: u64,
    /// Index among the short documents.
    si: u32,
    /// Number of distinct bigrams.
    n: u32,
}

/// Smallest overlap `t` with `t / n >= c` (computed with the same float test as the final
/// verification), at least 1; `n + 1` when no overlap can reach `c`.
fn required_overlap(c: f64, n: usize) -> usize {
    let nf = n as f64;
    let mut t = if c.is_nan() {
        n + 1
    } else {
        ((c * nf).ceil().clamp(1.0, nf + 1.0)) as usize
    };
    while t > 1 && (t - 1) as f64 / nf >= c {
        t -= 1;
    }
    while t <= n && (t as f64 / nf) < c {
        t += 1;
    }
    t
}

/// Clusters near-duplicate texts; see the module documentation for the method.
pub fn find_near_duplicates(texts: &[&str], cfg: &NearDupConfig) -> NearDupResult {
    let texts = &texts[..texts.len().min(MAX_DOCS)];
    let n = texts.len();
    let k = cfg.shingle_words.max(1);
    let threshold = cfg.threshold;
    let short_words = cfg.short_text_words;

    // 1. Shingle sets (and bigram sets of short texts) into flat arenas.
    let mut sh: Vec<u64> = Vec::with_capacity(n * 16);
    let mut sh_off: Vec<usize> = Vec::with_capacity(n + 1);
    let mut bg: Vec<u64> = Vec::new();
    let mut bg_off: Vec<usize> = Vec::with_capacity(n + 1);
    sh_off.push(0);
    bg_off.push(0);
    let mut words = Vec::with_capacity(64);
    let mut tmp = Vec::with_capacity(64);
    let mut sc = Scratch::default();
    for text in texts {
        word_hashes(text, &mut words, &mut sc);
        shingle_set(&words, k, &mut tmp);
        sh.extend_from_slice(&tmp);
        sh_off.push(sh.len());
        if !words.is_empty() && words.len() < short_words {
            push_bigrams(&words, &mut bg);
        }
        bg_off.push(bg.len());
    }
    let set_of = |d: u32| &sh[sh_off[d as usize]..sh_off[d as usize + 1]];

    let mut m = Merger {
        uf: UnionFind::new(n),
        pairs: Vec::new(),
        n_candidates: 0,
    };

    // 2. Identical shingle sets: merge, keep the first as representative.
    let mut is_rep = vec![true; n];
    if 1.0 >= threshold {
        let mut fps: Vec<(u64, u32)> = (0..n as u32)
            .map(|d| {
                let set = set_of(d);
                let mut h = SET_SEED ^ set.len() as u64;
                for &x in set {
                    h = (h ^ x).wrapping_mul(K1).rotate_left(31);
                }
                (fmix64(h), d)
            })
            .collect();
        fps.sort_unstable();
        let mut s = 0;
        while s < fps.len() {
            let mut e = s + 1;
            while e < fps.len() && fps[e].0 == fps[s].0 {
                e += 1;
            }
            let rep = fps[s].1;
            for &(_, d) in &fps[s + 1..e] {
                m.n_candidates += 1;
                if set_of(rep) == set_of(d) {
                    let (ra, rb) = (m.uf.find(rep), m.uf.find(d));
                    if ra != rb {
                        m.merge(ra, rb, rep, d, 1.0, MatchKind::Jaccard);
                    }
                    is_rep[d as usize] = false;
                }
            }
            s = e;
        }
    }
    let reps: Vec<u32> = (0..n as u32).filter(|&d| is_rep[d as usize]).collect();

    // 3. MinHash LSH over the representatives.
    let num_perm = cfg.num_perm.min(MAX_PERM);
    if num_perm > 0 && reps.len() > 1 && 1.0 >= threshold {
        let (bands, rows) = optimal_bands(threshold, num_perm);
        let n_chunks = (bands * rows).div_ceil(CHUNK);
        let mut rng = SeededRng::new(cfg.seed ^ 0x5851_F42D_4C95_7F2D);
        let mut xs = vec![[0u32; CHUNK]; n_chunks];
        let mut ms = vec![[0u32; CHUNK]; n_chunks];
        for (x, mm) in xs.iter_mut().zip(ms.iter_mut()) {
            for (xi, mi) in x.iter_mut().zip(mm.iter_mut()) {
                let r = rng.next_u64();
                *xi = r as u32;
                *mi = ((r >> 32) as u32) | 1;
            }
        }
        let lsh = Lsh {
            xs: &xs,
            ms: &ms,
            bands,
            rows,
        };
        let nr = reps.len();
        let mut keys = vec![0u64; bands * nr];
        band_keys(&lsh, &reps, &sh, &sh_off, &mut keys);
        let mut tmp_keys = Vec::with_capacity(nr);
        for band in keys.chunks_exact_mut(nr) {
            bucket_sort(band, &mut tmp_keys, |&x| x);
            let mut s = 0;
            while s < band.len() {
                let mut e = s + 1;
                while e < band.len() && band[e] >> 32 == band[s] >> 32 {
                    e += 1;
                }
                for j in s + 1..e {
                    let dj = band[j] as u32;
                    let mut checks = 0;
                    for &key in &band[s..j] {
                        let di = key as u32;
                        let (ri, rj) = (m.uf.find(di), m.uf.find(dj));
                        if ri == rj {
                            continue;
                        }
                        if checks == MAX_CHECKS_PER_BUCKET {
                            break;
                        }
                        checks += 1;
                        m.n_candidates += 1;
                        let sim = jaccard_sets(set_of(di), set_of(dj));
                        if sim >= threshold {
                            m.merge(ri, rj, di, dj, sim, MatchKind::Jaccard);
                        }
                    }
                }
                s = e;
            }
        }
    }

    // 4. Short texts: bigram containment with a prefix-filtered inverted index.
    let c = cfg.short_containment;
    let short: Vec<u32> = reps
        .iter()
        .copied()
        .filter(|&d| bg_off[d as usize + 1] > bg_off[d as usize])
        .collect();
    if short.len() > 1 && c <= 1.0 {
        // Entries `bigram id << si_bits | short index`, where the bigram id is the top
        // `64 - si_bits` bits of its hash. Sorted, runs of one id are posting lists ordered
        // by document.
        let si_bits = (u64::BITS - ((short.len() - 1) as u64).leading_zeros()).max(1);
        let mut entries: Vec<u64> = Vec::with_capacity(bg.len());
        let mut bloom = vec![0u64; short.len()];
        for (si, &d) in short.iter().enumerate() {
            let bgs = &bg[bg_off[d as usize]..bg_off[d as usize + 1]];
            for &h in bgs {
                entries.push(((h >> si_bits) << si_bits) | si as u64);
                bloom[si] |= 1 << (h & 63);
            }
        }
        bucket_sort(&mut entries, &mut Vec::new(), |&e| e);
        entries.dedup();
        let si_mask = (1u64 << si_bits) - 1;
        // Runs of one bigram: (frequency, start, end), in id order.
        let mut runs: Vec<(u32, usize, usize)> = Vec::new();
        let mut s = 0;
        while s < entries.len() {
            let id = entries[s] >> si_bits;
            let mut e = s + 1;
            while e < entries.len() && entries[e] >> si_bits == id {
                e += 1;
            }
            runs.push(((e - s) as u32, s, e));
            s = e;
        }
        // Rank = position in (frequency, id) order, rank 0 the rarest: a counting sort by
        // frequency keeps id order within a frequency.
        let max_f = runs.iter().map(|r| r.0 as usize).max().unwrap_or(0);
        let mut fstart = vec![0usize; max_f + 2];
        for r in &runs {
            fstart[r.0 as usize + 1] += 1;
        }
        let mut acc = 0;
        for f in fstart.iter_mut() {
            acc += *f;
            *f = acc;
        }
        let mut order = vec![0u32; runs.len()];
        for (i, r) in runs.iter().enumerate() {
            let slot = &mut fstart[r.0 as usize];
            order[*slot] = i as u32;
            *slot += 1;
        }
        // Per short doc: its distinct bigrams as ranks, ascending (rarest first).
        let mut off = vec![0usize; short.len() + 1];
        for &v in &entries {
            off[(v & si_mask) as usize + 1] += 1;
        }
        let mut acc = 0;
        for o in off.iter_mut() {
            acc += *o;
            *o = acc;
        }
        let mut ranks = vec![0u32; entries.len()];
        let mut fill: Vec<usize> = off[..short.len()].to_vec();
        let mut post: Vec<(usize, usize)> = Vec::with_capacity(runs.len());
        for (rank, &ri) in order.iter().enumerate() {
            let (_, rs, re) = runs[ri as usize];
            post.push((rs, re));
            for &v in &entries[rs..re] {
                let si = (v & si_mask) as usize;
                ranks[fill[si]] = rank as u32;
                fill[si] += 1;
            }
        }
        // Ranks were filled in increasing rank order, so each doc's slice is sorted.
        drop(fill);
        drop(runs);
        drop(order);
        // Posting entries carry what the filters need, so rejected candidates cost no
        // random access.
        let posts: Vec<Post> = entries
            .into_iter()
            .map(|v| {
                let si = (v & si_mask) as usize;
                Post {
                    bloom: bloom[si],
                    si: si as u32,
                    n: (off[si + 1] - off[si]) as u32,
                }
            })
            .collect();
        let mut stamp = vec![u32::MAX; short.len()];
        for x in 0..short.len() {
            let rx = &ranks[off[x]..off[x + 1]];
            let nx = rx.len();
            let alpha = required_overlap(c, nx);
            if alpha > nx {
                continue;
            }
            // At most `slack` elements of x may be missing from y; each missing element
            // accounts for at most one bloom bit of x that y lacks.
            let slack = nx - alpha;
            let (dx, bx) = (short[x], bloom[x]);
            for &rank in &rx[..slack + 1] {
                let (ps, pe) = post[rank as usize];
                for py in &posts[ps..pe] {
                    let (yu, ny) = (py.si as usize, py.n as usize);
                    // Verify each pair once, from its smaller side (ties: lower index).
                    if (ny, yu) <= (nx, x)
                        || (bx & !py.bloom).count_ones() as usize > slack
                        || stamp[yu] == x as u32
                    {
                        continue;
                    }
                    stamp[yu] = x as u32;
                    let dy = short[yu];
                    let (ra, rb) = (m.uf.find(dx), m.uf.find(dy));
                    if ra == rb {
                        continue;
                    }
                    m.n_candidates += 1;
                    let inter = intersect_count(rx, &ranks[off[yu]..off[yu + 1]]);
                    let sim = inter as f64 / nx as f64;
                    if sim >= c {
                        m.merge(ra, rb, dx, dy, sim, MatchKind::Containment);
                    }
                }
            }
        }
    }

    // 5. Cluster ids: the smallest index of each set.
    let mut min_of = vec![u32::MAX; n];
    let mut root_of = Vec::with_capacity(n);
    for d in 0..n as u32 {
        let r = m.uf.find(d);
        root_of.push(r);
        let slot = &mut min_of[r as usize];
        *slot = (*slot).min(d);
    }
    let cluster_of = root_of.iter().map(|&r| min_of[r as usize]).collect();
    m.pairs.sort_unstable_by_key(|p| (p.a, p.b));
    NearDupResult {
        cluster_of,
        pairs: m.pairs,
        n_candidates: m.n_candidates,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(r: &NearDupResult, a: usize, b: usize) -> bool {
        r.cluster_of[a] == r.cluster_of[b]
    }

    fn run(texts: &[&str]) -> NearDupResult {
        find_near_duplicates(texts, &NearDupConfig::default())
    }

    /// Small deterministic generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const BASE30: &str = "the quarterly report shows that revenue grew in every region \
        while costs stayed flat so the board approved a new budget for hiring engineers \
        and expanding the support team spring";

    #[test]
    fn tokenize_drops_punctuation_and_lowercases() {
        assert_eq!(
            tokenize("Refund please, thanks!"),
            ["refund", "please", "thanks"]
        );
        assert_eq!(
            tokenize("Wo ist meine Rückerstattung?"),
            ["wo", "ist", "meine", "rückerstattung"]
        );
        assert_eq!(tokenize("ÉCOLE d'été 2024"), ["école", "d", "été", "2024"]);
        assert!(tokenize("  ...!? ").is_empty());
        assert!(tokenize("").is_empty());
    }

    #[test]
    fn fast_word_hashes_match_tokenize() {
        let texts = [
            "Refund please, thanks!",
            "Wo ist meine Rückerstattung? ÄÖÜ straße",
            "abcdefgh ABCDEFGHIJ 0123456789abcdef x y7 __a__b-c",
            "mixedÉword caféau ünïcödé at the end é",
            "exactly8 chars16charslong!! 1234567",
            "   leading and trailing   ",
            "Ĳ İstanbul ǅ ﬁne 北京 市 ١٢٣",
            "",
            "a",
        ];
        let long: String = (0..50).map(|i| format!("word{i}XY, ")).collect();
        for t in texts.iter().copied().chain([long.as_str()]) {
            let mut fast = Vec::new();
            word_hashes(t, &mut fast, &mut Scratch::default());
            let mut slow = Vec::new();
            scan_words(t, &mut HashSink::new(&mut slow));
            assert_eq!(fast, slow, "{t}");
            let toks = tokenize(t);
            assert_eq!(toks.len(), fast.len(), "{t}");
            for (tok, h) in toks.iter().zip(&fast) {
                // Hash the token's own characters (re-tokenizing is not idempotent:
                // 'İ' lowercases to 'i' + a combining dot, which is not alphanumeric).
                let mut one = Vec::new();
                let mut sink = HashSink::new(&mut one);
                for c in tok.chars() {
                    sink.ch(c);
                }
                sink.end();
                assert_eq!(one, [*h], "{tok}");
                if tok.is_ascii() {
                    assert_eq!(ascii_word_hash(tok.as_bytes()), *h);
                }
            }
        }
    }

    #[test]
    fn refund_pair_merges_by_containment() {
        let texts = [
            "where is my refund",
            "Where is my refund please, thanks!",
            "I lost my card",
            "how do I order a new card",
        ];
        let r = run(&texts);
        assert!(same(&r, 0, 1));
        assert!(!same(&r, 2, 3));
        assert!(!same(&r, 0, 2) && !same(&r, 0, 3));
        assert_eq!(r.cluster_of, [0, 0, 2, 3]);
        assert_eq!(r.pairs.len(), 1);
        let p = &r.pairs[0];
        assert_eq!((p.a, p.b, p.kind), (0, 1, MatchKind::Containment));
        assert!((p.similarity - 1.0).abs() < 1e-12);
        // The MinHash path alone cannot see it: Jaccard of 5-shingles is 0.
        assert_eq!(jaccard(texts[0], texts[1], 5), 0.0);
        let no_short = NearDupConfig {
            short_text_words: 0,
            ..NearDupConfig::default()
        };
        let r = find_near_duplicates(&texts, &no_short);
        assert_eq!(r.cluster_of, [0, 1, 2, 3]);
    }

    #[test]
    fn edited_copies_of_long_text_merge() {
        let words: Vec<&str> = BASE30.split(' ').collect();
        assert_eq!(words.len(), 30);
        let edit = |i: usize, w: &str| {
            let mut v = words.clone();
            v[i] = w;
            v.join(" ")
        };
        let end_edit = edit(29, "autumn");
        let start_edit = edit(0, "a");
        let mid_edit = edit(15, "a");
        let unrelated = "my cat refuses to eat the dry food we bought yesterday so we \
            went back to the shop and asked for a refund which they gave us without \
            any questions at all";
        let texts = [BASE30, &end_edit, &start_edit, unrelated, &mid_edit];
        let r = run(&texts);
        assert!(same(&r, 0, 1) && same(&r, 0, 2));
        assert!(!same(&r, 0, 3));
        // One substitution mid-text removes 5 of 26 shingles: Jaccard 21/31 < 0.8.
        assert!((jaccard(BASE30, &mid_edit, 5) - 21.0 / 31.0).abs() < 1e-12);
        assert!(!same(&r, 0, 4));
        // With 3-word shingles the same edit is 25/31 >= 0.8 and merges.
        let cfg3 = NearDupConfig {
            shingle_words: 3,
            ..NearDupConfig::default()
        };
        let r3 = find_near_duplicates(&texts, &cfg3);
        assert!(same(&r3, 0, 4) && !same(&r3, 0, 3));
        // A 60-word text tolerates a mid-text substitution with the defaults.
        let long = format!("{BASE30} {unrelated}");
        let mut lw: Vec<&str> = long.split(' ').collect();
        lw[20] = "changed";
        let long_edit = lw.join(" ");
        let r = run(&[&long, &long_edit, BASE30]);
        assert!(same(&r, 0, 1) && !same(&r, 0, 2));
        assert_eq!(r.pairs[0].kind, MatchKind::Jaccard);
        assert!(r.pairs[0].similarity >= 0.8);
    }

    #[test]
    fn unrelated_texts_stay_apart() {
        let texts = [
            "How do I activate my new card before travelling abroad next week",
            "What is the exchange rate for sending money to Spain from my account",
            "Why was I charged twice for the same purchase at the supermarket",
            "Can I get a refund for a ticket that was cancelled by the airline",
            "hello",
            "thanks",
            "I lost my card",
            "how do I order a new card",
        ];
        let r = run(&texts);
        let expect: Vec<u32> = (0..texts.len() as u32).collect();
        assert_eq!(r.cluster_of, expect);
        assert!(r.pairs.is_empty());
    }

    #[test]
    fn exact_duplicates_cluster() {
        let texts = [BASE30, "something else entirely here", BASE30, BASE30];
        let r = run(&texts);
        assert_eq!(r.cluster_of, [0, 1, 0, 0]);
        assert_eq!(r.pairs.len(), 2);
        assert!(r.pairs.iter().all(|p| p.similarity == 1.0 && p.a == 0));
    }

    #[test]
    fn deterministic_across_calls_and_seeds() {
        let mut rng = Rng(99);
        let docs = generate(&mut rng, 300, 60);
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let cfg = NearDupConfig::default();
        let a = find_near_duplicates(&refs, &cfg);
        let b = find_near_duplicates(&refs, &cfg);
        assert_eq!(a, b);
        let reversed: Vec<&str> = refs.iter().rev().copied().collect();
        let c = find_near_duplicates(&reversed, &cfg);
        // Same partition when the input order is reversed.
        let n = refs.len();
        for i in 0..n {
            for j in (i + 1)..n.min(i + 40) {
                assert_eq!(
                    same(&a, i, j),
                    same(&c, n - 1 - i, n - 1 - j),
                    "pair {i},{j}"
                );
            }
        }
        let other_seed = NearDupConfig {
            seed: 12345,
            ..NearDupConfig::default()
        };
        let d1 = find_near_duplicates(&refs, &other_seed);
        let d2 = find_near_duplicates(&refs, &other_seed);
        assert_eq!(d1, d2);
    }

    #[test]
    fn empty_and_single_word_texts() {
        let texts = [
            "",
            "hello",
            "",
            "Hello!",
            "world",
            "!!! ...",
            "refund",
            "where is my refund",
        ];
        let r = run(&texts);
        // Word-less texts share the empty-sequence shingle and cluster together.
        assert!(same(&r, 0, 2) && same(&r, 0, 5));
        assert!(same(&r, 1, 3));
        assert!(!same(&r, 1, 4) && !same(&r, 0, 1));
        // A one-word text only matches the same single word, not texts containing it.
        assert!(!same(&r, 6, 7));
        assert_eq!(r.cluster_of[4], 4);
        assert_eq!(
            find_near_duplicates(&[], &NearDupConfig::default()).cluster_of,
            Vec::<u32>::new()
        );
        assert_eq!(run(&["solo"]).cluster_of, [0]);
        assert_eq!(jaccard("", "", 5), 1.0);
        assert_eq!(jaccard("a", "b", 5), 0.0);
    }

    #[test]
    fn non_ascii_texts() {
        let texts = [
            "Wo ist meine Rückerstattung?",
            "wo ist meine RÜCKERSTATTUNG bitte",
            "Где мой возврат денег?",
            "где мой возврат денег, спасибо",
            "我的退款在哪里",
            "Wo ist meine Karte?",
        ];
        let r = run(&texts);
        assert!(same(&r, 0, 1));
        assert!(same(&r, 2, 3));
        assert!(!same(&r, 0, 2) && !same(&r, 0, 4) && !same(&r, 2, 4));
        assert!(!same(&r, 0, 5));
    }

    #[test]
    fn odd_configs_do_not_panic() {
        let texts = [
            "a b c d e f g",
            "a b c d e f h",
            "",
            "x",
            "where is my refund",
            "x",
        ];
        let cfgs = [
            NearDupConfig {
                shingle_words: 0,
                ..NearDupConfig::default()
            },
            NearDupConfig {
                num_perm: 0,
                ..NearDupConfig::default()
            },
            NearDupConfig {
                num_perm: 1,
                threshold: 0.0,
                short_containment: 0.0,
                ..NearDupConfig::default()
            },
            NearDupConfig {
                num_perm: usize::MAX,
                shingle_words: usize::MAX,
                short_text_words: usize::MAX,
                ..NearDupConfig::default()
            },
            NearDupConfig {
                threshold: f64::NAN,
                short_containment: f64::NAN,
                ..NearDupConfig::default()
            },
            NearDupConfig {
                threshold: 2.0,
                short_containment: -1.0,
                ..NearDupConfig::default()
            },
            NearDupConfig {
                threshold: f64::NEG_INFINITY,
                short_containment: f64::INFINITY,
                ..NearDupConfig::default()
            },
        ];
        for cfg in &cfgs {
            let r = find_near_duplicates(&texts, cfg);
            assert_eq!(r.cluster_of.len(), texts.len());
            for (i, &c) in r.cluster_of.iter().enumerate() {
                assert!(c as usize <= i);
                assert_eq!(r.cluster_of[c as usize], c);
            }
        }
        // threshold > 1: nothing can merge, not even identical texts.
        let r = find_near_duplicates(&texts, &cfgs[4]);
        assert!(!same(&r, 3, 5));
    }

    #[test]
    fn lsh_parameters_and_overlap() {
        assert_eq!(optimal_bands(0.8, 128), (14, 9));
        let (b, r) = optimal_bands(0.5, 64);
        assert!(b * r <= 64 && b > 0 && r > 0);
        assert_eq!(required_overlap(0.9, 3), 3);
        assert_eq!(required_overlap(0.9, 10), 9);
        assert_eq!(required_overlap(0.9, 11), 10);
        assert_eq!(required_overlap(0.5, 4), 2);
        assert_eq!(required_overlap(0.0, 4), 1);
        assert_eq!(required_overlap(1.5, 4), 5);
    }

    fn generate(rng: &mut Rng, n_docs: usize, n_bases: usize) -> Vec<String> {
        let vocab: Vec<String> = (0..3000)
            .map(|_| {
                let len = 2 + rng.below(7);
                (0..len)
                    .map(|_| char::from(b'a' + rng.below(26) as u8))
                    .collect()
            })
            .collect();
        let bases: Vec<Vec<usize>> = (0..n_bases)
            .map(|_| {
                let len = 15 + rng.below(90);
                (0..len).map(|_| rng.below(vocab.len())).collect()
            })
            .collect();
        (0..n_docs)
            .map(|_| {
                let mut doc = bases[rng.below(bases.len())].clone();
                let edits = [0, 0, 1, 1, 2, 3, 5, 12][rng.below(8)];
                for _ in 0..edits {
                    let len = doc.len();
                    if len < 2 {
                        break;
                    }
                    let at = rng.below(len);
                    match rng.below(4) {
                        0 => doc[at] = rng.below(vocab.len()),
                        1 => {
                            doc.remove(at);
                        }
                        2 => doc.insert(at, rng.below(vocab.len())),
                        _ => doc.swap(at, (at + 1) % len),
                    }
                }
                let mut s = String::new();
                for (i, &w) in doc.iter().enumerate() {
                    if i > 0 {
                        s.push_str(if rng.below(10) == 0 { ", " } else { " " });
                    }
                    if rng.below(15) == 0 {
                        s.push_str(&vocab[w].to_uppercase());
                    } else {
                        s.push_str(&vocab[w]);
                    }
                }
                s
            })
            .collect()
    }

    #[test]
    fn recall_against_brute_force() {
        let mut rng = Rng(0x1234_5678);
        let docs = generate(&mut rng, 2000, 400);
        let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
        let r = find_near_duplicates(&refs, &NearDupConfig::default());
        let mut words = Vec::new();
        let sets: Vec<Vec<u64>> = refs
            .iter()
            .map(|t| {
                let mut s = Vec::new();
                word_hashes(t, &mut words, &mut Scratch::default());
                shingle_set(&words, 5, &mut s);
                s
            })
            .collect();
        let (mut total, mut found) = (0usize, 0usize);
        for i in 0..sets.len() {
            for j in (i + 1)..sets.len() {
                if jaccard_sets(&sets[i], &sets[j]) >= 0.85 {
                    total += 1;
                    found += usize::from(same(&r, i, j));
                }
            }
        }
        assert!(total > 300, "too few true pairs: {total}");
        let recall = found as f64 / total as f64;
        assert!(recall >= 0.95, "recall {recall} ({found}/{total})");
        // The MinHash path alone (short-text path off) must reach the same recall.
        let minhash_only = NearDupConfig {
            short_text_words: 0,
            ..NearDupConfig::default()
        };
        let r2 = find_near_duplicates(&refs, &minhash_only);
        let mut found2 = 0usize;
        for i in 0..sets.len() {
            for j in (i + 1)..sets.len() {
                if jaccard_sets(&sets[i], &sets[j]) >= 0.85 && same(&r2, i, j) {
                    found2 += 1;
                }
            }
        }
        let recall2 = found2 as f64 / total as f64;
        assert!(
            recall2 >= 0.95,
            "MinHash-only recall {recall2} ({found2}/{total})"
        );
        assert!(r2.pairs.iter().all(|p| p.kind == MatchKind::Jaccard));
        // Every reported pair is a verified one.
        for p in &r.pairs {
            assert!(p.a < p.b);
            if p.kind == MatchKind::Jaccard {
                assert!(p.similarity >= 0.8);
                let exact = jaccard_sets(&sets[p.a as usize], &sets[p.b as usize]);
                assert!((exact - p.similarity).abs() < 1e-12);
            } else {
                assert!(p.similarity >= 0.9);
                assert!(tokenize(refs[p.a as usize]).len() < 20);
                assert!(tokenize(refs[p.b as usize]).len() < 20);
            }
        }
        assert!(
            r.pairs
                .windows(2)
                .all(|w| (w[0].a, w[0].b) < (w[1].a, w[1].b))
        );
    }
}
