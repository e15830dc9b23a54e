//! Times the shared tagger on every line of stdin (min and median of 5 passes, texts/s) and prints a
//! digest of every span it found, so that a speed change can be shown to change no output.
//!
//! ```text
//! cargo run --release -p hone-ner --example ner_speed < texts.txt
//! ```

use std::io::BufRead;
use std::time::Instant;

fn main() {
    // TRAIN_EXAMPLES=N: also train a small tagger and print the digest of its weights (training must
    // stay bit-for-bit what it was).
    if let Some(n) = std::env::var("TRAIN_EXAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        let cfg = hone_ner::model::TrainConfig {
            examples: n,
            ..hone_ner::model::TrainConfig::DEFAULT
        };
        let corpus = hone_ner::generate::corpus(cfg.seed, cfg.examples);
        let w = hone_ner::model::train(&corpus, &cfg);
        println!(
            "trained weights digest {}",
            &blake3::hash(&w.to_bytes()).to_hex()[..16]
        );
    }
    let texts: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .collect();
    let tagger = hone_ner::shared();
    let mut digest = blake3::Hasher::new();
    let mut found = 0usize;
    for t in &texts {
        for (s, e, k) in tagger.spans(t) {
            digest.update(format!("{s} {e} {k:?};").as_bytes());
            found += 1;
        }
        digest.update(b"\n");
    }
    let mut secs: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            for t in &texts {
                std::hint::black_box(tagger.spans(t));
            }
            t0.elapsed().as_secs_f64()
        })
        .collect();
    secs.sort_by(f64::total_cmp);
    let n = texts.len() as f64;
    println!(
        "{} features; {} texts, {found} spans, digest {}\ntexts/s: best {:.0}, median {:.0}",
        tagger.features(),
        texts.len(),
        &digest.finalize().to_hex()[..16],
        n / secs[0],
        n / secs[2]
    );
}
