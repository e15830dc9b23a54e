//! hone's ROUGE-L and chrF against the reference packages (`rouge-score`, `sacrebleu`) on a shared
//! table of pairs written by `bench/lm/text_metrics_table.py`.

use hone_eval::text::{chrf, chrf_corpus, chrf_stats, rouge_l};

#[derive(serde::Deserialize)]
struct Pair {
    prediction: String,
    reference: String,
    rouge_l: f64,
    chrf: f64,
}

#[derive(serde::Deserialize)]
struct Table {
    pairs: Vec<Pair>,
    corpus_chrf: f64,
}

#[test]
fn rouge_l_and_chrf_match_the_reference_packages() {
    let table: Table =
        serde_json::from_str(include_str!("data/text_metrics.json")).expect("table parses");
    assert!(table.pairs.len() >= 20);
    for p in &table.pairs {
        let r = rouge_l(&p.prediction, &p.reference);
        assert!(
            (r - p.rouge_l).abs() < 1e-12,
            "ROUGE-L {:?} vs {:?}: hone {r}, rouge-score {}",
            p.prediction,
            p.reference,
            p.rouge_l
        );
        let c = chrf(&p.prediction, &p.reference);
        assert!(
            (c - p.chrf).abs() < 1e-12,
            "chrF {:?} vs {:?}: hone {c}, sacrebleu {}",
            p.prediction,
            p.reference,
            p.chrf
        );
    }
    let stats: Vec<_> = table
        .pairs
        .iter()
        .map(|p| chrf_stats(&p.prediction, &p.reference))
        .collect();
    let idx: Vec<usize> = (0..stats.len()).collect();
    let pooled = chrf_corpus(&stats, &idx);
    assert!(
        (pooled - table.corpus_chrf).abs() < 1e-12,
        "{pooled} vs {}",
        table.corpus_chrf
    );
}
