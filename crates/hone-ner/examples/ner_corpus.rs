//! Prints generated training examples with their spans marked, for reading what the tagger learns from.
//!
//! ```text
//! cargo run --release -p hone-ner --example ner_corpus -- 20
//! ```

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    for ex in hone_ner::generate::corpus(hone_ner::model::TrainConfig::DEFAULT.seed, n) {
        let mut out = String::new();
        let mut last = 0;
        for &(s, e, k) in &ex.spans {
            out.push_str(&ex.text[last..s]);
            out.push_str(&format!("[{}|{:?}]", &ex.text[s..e], k));
            last = e;
        }
        out.push_str(&ex.text[last..]);
        println!("{}\n---", out);
    }
}
