//! PII scan throughput (MB/s, one thread): real support, SMS and question texts from the shared datasets,
//! and the PII-dense fixture. Prints one JSON object with min and median over repeated runs.
//!
//! ```text
//! pii_throughput --shared ../shared [--reps 5]
//! ```

use std::time::Instant;

use hone_data::pii::{PiiDetector, fixture};

fn texts_from(path: &std::path::Path, field: &str) -> Vec<String> {
    let Ok(s) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    s.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get(field).and_then(|t| t.as_str()).map(String::from))
        .collect()
}

fn measure(det: &PiiDetector, corpus: &[String], reps: usize) -> serde_json::Value {
    let bytes: usize = corpus.iter().map(String::len).sum();
    let mut rates = Vec::new();
    let mut spans = 0;
    for _ in 0..reps {
        let t = Instant::now();
        spans = 0;
        for m in corpus {
            spans += det.mask(m).spans.len();
        }
        rates.push(bytes as f64 / 1e6 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    serde_json::json!({"texts": corpus.len(), "mb": bytes as f64 / 1e6, "mb_per_s_min": rates[0], "mb_per_s_median": rates[rates.len() / 2], "spans": spans})
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let shared = std::path::PathBuf::from(arg("--shared").unwrap_or_else(|| "../shared".into()));
    let reps: usize = arg("--reps")
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    let det = PiiDetector::new();
    let d = shared.join("datasets");
    let mut real: Vec<String> = Vec::new();
    for (file, field) in [
        ("banking77/train.jsonl", "text"),
        ("sms_spam/all.jsonl", "text"),
        ("bitext_customer_support/train.jsonl", "text"),
        ("trec/train.jsonl", "text"),
        ("gsm8k/train.jsonl", "question"),
    ] {
        real.extend(texts_from(&d.join(file), field));
    }
    let fx: Vec<String> = fixture::generate(42, 5000)
        .into_iter()
        .map(|c| c.text)
        .collect();
    let out = serde_json::json!({
        "threads": 1,
        "real_texts": if real.is_empty() { serde_json::Value::Null } else { measure(&det, &real, reps) },
        "fixture_all_pii": measure(&det, &fx, reps),
    });
    println!("{out}");
}
