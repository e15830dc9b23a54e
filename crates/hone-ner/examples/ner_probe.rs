//! Development probe for the tagger: trains the default recipe (timed), scores it on a held-out
//! generated corpus (another seed), then tags every line of stdin and prints the lines where it found
//! something, with tags/s. Real-text false positives are read from its output.
//!
//! ```text
//! cargo run --release -p hone-ner --example ner_probe < texts.txt
//! ```

use hone_ner::{Entity, generate, model};
use std::io::BufRead;
use std::time::Instant;

fn main() {
    // Settings can be varied from the environment for sweeps: WORD_DROPOUT, OTHER_DROPOUT, EXAMPLES,
    // SEED, UNKNOWN_NAME_BIAS.
    let mut cfg = model::TrainConfig::DEFAULT;
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(x) = env("WORD_DROPOUT") {
        cfg.word_dropout = x;
    }
    if let Some(x) = env("OTHER_DROPOUT") {
        cfg.other_dropout = x;
    }
    if let Some(x) = env("EXAMPLES") {
        cfg.examples = x as usize;
    }
    if let Some(x) = env("SEED") {
        cfg.seed = x as u64;
    }
    let t = Instant::now();
    let mut tagger = hone_ner::Tagger::train(&cfg);
    if let Some(b) = env("UNKNOWN_NAME_BIAS") {
        tagger.set_unknown_name_bias(b as f32);
    }
    eprintln!(
        "trained in {:.2} s; fingerprint {}; {} features; unknown-name bias {}",
        t.elapsed().as_secs_f64(),
        &tagger.fingerprint()[..16],
        tagger.features(),
        tagger.unknown_name_bias()
    );
    let held = generate::corpus(cfg.seed ^ 0xdead_beef, 3000);
    let (mut tp, mut fp, mut fneg) = ([0usize; 4], [0usize; 4], [0usize; 4]);
    for ex in &held {
        let got = tagger.spans(&ex.text);
        for k in Entity::ALL {
            let g: Vec<_> = ex.spans.iter().filter(|s| s.2 == k).collect();
            let p: Vec<_> = got.iter().filter(|s| s.2 == k).collect();
            let i = k as usize;
            tp[i] += p
                .iter()
                .filter(|s| g.iter().any(|x| x.0 < s.1 && s.0 < x.1))
                .count();
            fp[i] += p
                .iter()
                .filter(|s| !g.iter().any(|x| x.0 < s.1 && s.0 < x.1))
                .count();
            fneg[i] += g
                .iter()
                .filter(|x| !p.iter().any(|s| x.0 < s.1 && s.0 < x.1))
                .count();
        }
    }
    for k in Entity::ALL {
        let i = k as usize;
        eprintln!("held-out {k:?}: tp {} fp {} fn {}", tp[i], fp[i], fneg[i]);
    }
    if std::env::var_os("EXPLAIN").is_some() {
        for l in std::io::stdin().lock().lines().map_while(Result::ok) {
            for (w, c, sc) in tagger.explain(&l) {
                let s: Vec<String> = sc.iter().map(|x| format!("{x:7.1}")).collect();
                println!("{w:>16} {c} {}", s.join(""));
            }
        }
        return;
    }
    let lines: Vec<String> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .collect();
    let t = Instant::now();
    let mut found = 0;
    let mut out = Vec::new();
    for l in &lines {
        let s = tagger.spans(l);
        if !s.is_empty() {
            found += s.len();
            let shown: Vec<String> = s
                .iter()
                .map(|(a, b, k)| format!("{k:?}[{}]", &l[*a..*b]))
                .collect();
            out.push(format!("{}\t{}", shown.join(" "), l));
        }
    }
    let secs = t.elapsed().as_secs_f64();
    for o in &out {
        println!("{o}");
    }
    eprintln!(
        "{} lines, {found} spans in {} lines, {:.0} lines/s",
        lines.len(),
        out.len(),
        lines.len() as f64 / secs.max(1e-9)
    );
}
