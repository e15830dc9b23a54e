//! Benchmark driver for `near_dup`: builds an edited-copies corpus from the shared datasets
//! and times `find_near_duplicates` end to end, with recall against exact Jaccard.
//!
//! ```text
//! neardup_bench gen --shared DIR --out corpus.jsonl [--n 200000] [--seed 7]
//! neardup_bench run --corpus corpus.jsonl [--no-short] [--sample 2000] [--seed 7]
//! ```
use hone_core::rng::SeededRng;
use hone_data::near_dup::*;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::time::Instant;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn die(msg: &str) -> ! {
    eprintln!("neardup_bench: {msg}");
    std::process::exit(2)
}

fn read_field(path: &str, field: &str) -> Vec<String> {
    let f = std::fs::File::open(path).unwrap_or_else(|e| die(&format!("{path}: {e}")));
    BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| {
            let v: serde_json::Value = serde_json::from_str(&l).ok()?;
            Some(v.get(field)?.as_str()?.to_string())
        })
        .collect()
}

const PUNCT: [&str; 6] = ["!", "?", ",", ".", "...", "!!"];

fn edit(rng: &mut SeededRng, words: &mut Vec<String>, vocab: &[String], n_edits: usize) {
    for _ in 0..n_edits {
        let len = words.len();
        if len < 2 {
            words.push(vocab[rng.below_mod(vocab.len())].clone());
            continue;
        }
        let at = rng.below_mod(len);
        match rng.below_mod(4) {
            0 => words[at] = vocab[rng.below_mod(vocab.len())].clone(),
            1 => {
                words.remove(at);
            }
            2 => words.insert(at, vocab[rng.below_mod(vocab.len())].clone()),
            _ => words.swap(at, (at + 1) % len),
        }
    }
}

fn noise(rng: &mut SeededRng, words: &mut [String]) {
    for w in words.iter_mut() {
        if rng.chance(0.05) {
            *w = w.to_uppercase();
        } else if rng.chance(0.05) {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                *w = f.to_uppercase().chain(c).collect();
            }
        }
        if rng.chance(0.05) {
            w.push_str(PUNCT[rng.below_mod(PUNCT.len())]);
        }
    }
}

fn generate(args: &[String]) {
    let shared = arg(args, "--shared").unwrap_or_else(|| die("gen needs --shared DIR"));
    let out = arg(args, "--out").unwrap_or_else(|| die("gen needs --out FILE"));
    let n: usize = arg(args, "--n").map_or(200_000, |s| s.parse().unwrap_or(200_000));
    let seed: u64 = arg(args, "--seed").map_or(7, |s| s.parse().unwrap_or(7));
    let d = format!("{shared}/datasets");
    let mut base = Vec::new();
    for (f, field) in [
        ("banking77/train.jsonl", "text"),
        ("banking77/test.jsonl", "text"),
        ("sms_spam/all.jsonl", "text"),
        ("trec/train.jsonl", "text"),
        ("bitext_customer_support/train.jsonl", "text"),
        ("gsm8k/train.jsonl", "question"),
    ] {
        base.extend(read_field(&format!("{d}/{f}"), field));
    }
    if base.is_empty() {
        die("no base texts found");
    }
    let split: Vec<Vec<String>> = base
        .iter()
        .map(|t| t.split_whitespace().map(str::to_string).collect())
        .collect();
    let mut vocab: Vec<String> = split.iter().flatten().cloned().collect();
    vocab.sort_unstable();
    vocab.dedup();
    let mut rng = SeededRng::new(seed);
    let f = std::fs::File::create(&out).unwrap_or_else(|e| die(&format!("{out}: {e}")));
    let mut w = BufWriter::new(f);
    for i in 0..n {
        let a = &split[rng.below_mod(split.len())];
        let mut words: Vec<String> = if rng.chance(0.25) {
            // A new text: first half of one base, second half of another.
            let b = &split[rng.below_mod(split.len())];
            a[..a.len() / 2]
                .iter()
                .chain(&b[b.len() / 2..])
                .cloned()
                .collect()
        } else {
            a.clone()
        };
        let kind = rng.below_mod(100);
        if kind < 35 {
            // exact copy of the (possibly spliced) text
        } else if kind < 50 {
            noise(&mut rng, &mut words);
        } else if kind < 85 {
            let k = 1 + rng.below_mod(3);
            edit(&mut rng, &mut words, &vocab, k);
            if rng.chance(0.5) {
                noise(&mut rng, &mut words);
            }
        } else {
            let k = 1 + words.len() * 3 / 10;
            edit(&mut rng, &mut words, &vocab, k);
            noise(&mut rng, &mut words);
        }
        let text = words.join(" ");
        let line = serde_json::json!({"id": i, "text": text});
        writeln!(w, "{line}").unwrap_or_else(|e| die(&format!("write: {e}")));
    }
    w.flush().unwrap_or_else(|e| die(&format!("write: {e}")));
    eprintln!("wrote {n} docs from {} base texts to {out}", base.len());
}

/// Exact shingle set, hashed independently of the module (SipHash of the token strings).
fn exact_set(text: &str, k: usize) -> Vec<u64> {
    let toks = tokenize(text);
    let h = |ws: &[String]| {
        let mut s = DefaultHasher::new();
        ws.hash(&mut s);
        s.finish()
    };
    let mut v: Vec<u64> = if toks.len() < k {
        vec![h(&toks)]
    } else {
        toks.windows(k).map(h).collect()
    };
    v.sort_unstable();
    v.dedup();
    v
}

fn exact_jaccard(a: &[u64], b: &[u64]) -> f64 {
    let (mut i, mut j, mut c) = (0, 0, 0usize);
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
    c as f64 / (a.len() + b.len() - c) as f64
}

fn run(args: &[String]) {
    let corpus = arg(args, "--corpus").unwrap_or_else(|| die("run needs --corpus FILE"));
    let no_short = args.iter().any(|a| a == "--no-short");
    let n_sample: usize = arg(args, "--sample").map_or(2000, |s| s.parse().unwrap_or(2000));
    let seed: u64 = arg(args, "--seed").map_or(7, |s| s.parse().unwrap_or(7));
    let texts = read_field(&corpus, "text");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mut cfg = NearDupConfig::default();
    if no_short {
        cfg.short_text_words = 0;
    }
    let t0 = Instant::now();
    let res = find_near_duplicates(&refs, &cfg);
    let secs = t0.elapsed().as_secs_f64();

    let n = refs.len();
    let mut size = vec![0u32; n];
    for &c in &res.cluster_of {
        size[c as usize] += 1;
    }
    let n_clusters = size.iter().filter(|&&s| s > 0).count();
    let n_dup_docs = n - n_clusters;

    // Recall on a sample: all docs with exact Jaccard >= threshold, via an inverted index
    // restricted to the sampled docs' shingles (exact: a pair with Jaccard > 0 shares one).
    let t1 = Instant::now();
    let k = cfg.shingle_words;
    let sets: Vec<Vec<u64>> = if n_sample == 0 {
        Vec::new()
    } else {
        refs.iter().map(|t| exact_set(t, k)).collect()
    };
    let mut rng = SeededRng::new(seed ^ 0xABCD);
    let mut sample: Vec<usize> = (0..n_sample.min(n)).map(|_| rng.below_mod(n)).collect();
    sample.sort_unstable();
    sample.dedup();
    let mut post: HashMap<u64, Vec<u32>> = HashMap::new();
    for &s in &sample {
        for &h in &sets[s] {
            post.entry(h).or_default();
        }
    }
    for (d, set) in sets.iter().enumerate() {
        for h in set {
            if let Some(p) = post.get_mut(h) {
                p.push(d as u32);
            }
        }
    }
    let (mut total, mut found) = (0u64, 0u64);
    let mut cand = Vec::new();
    for &s in &sample {
        cand.clear();
        for h in &sets[s] {
            cand.extend_from_slice(&post[h]);
        }
        cand.sort_unstable();
        cand.dedup();
        for &d in &cand {
            let d = d as usize;
            if d != s && exact_jaccard(&sets[s], &sets[d]) >= cfg.threshold {
                total += 1;
                found += u64::from(res.cluster_of[s] == res.cluster_of[d]);
            }
        }
    }
    let recall = if total == 0 {
        1.0
    } else {
        found as f64 / total as f64
    };
    let n_containment = res
        .pairs
        .iter()
        .filter(|p| p.kind == MatchKind::Containment)
        .count();
    let out = serde_json::json!({
        "mode": if no_short { "minhash_only" } else { "full" },
        "n_docs": n,
        "seconds": secs,
        "docs_per_sec": n as f64 / secs,
        "n_clusters": n_clusters,
        "n_dup_docs": n_dup_docs,
        "n_candidates": res.n_candidates,
        "n_pairs": res.pairs.len(),
        "n_containment_pairs": n_containment,
        "recall_sample_docs": sample.len(),
        "recall_true_pairs": total,
        "recall_found_pairs": found,
        "recall": recall,
        "recall_seconds": t1.elapsed().as_secs_f64(),
    });
    println!("{out}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("gen") => generate(&args),
        Some("run") => run(&args),
        _ => die(
            "usage: neardup_bench gen --shared DIR --out FILE [--n N] [--seed S] | run --corpus FILE [--no-short] [--sample N]",
        ),
    }
}
