//! PII scan throughput (MB/s, one thread) on support-style messages with and without personal data.
use hone_data::pii::{PiiDetector, fixture};
use std::time::Instant;

const MSGS: &[&str] = &[
    "Hi, I ordered a blue jacket last week and it still hasn't arrived. Can you check the status please?",
    "The app keeps crashing when I try to upload a photo from my gallery. I'm on the latest version.",
    "Thanks for the quick reply! The refund showed up in my account this morning.",
    "I was charged twice for my subscription this month, could you look into it and reverse one charge?",
    "How do I change the delivery address on an order that has already been placed?",
    "My password reset email never arrives. I checked the spam folder as well, nothing there.",
    "Is there a way to export all my invoices as a single PDF? I need them for my accountant.",
    "The discount code SPRING20 doesn't work at checkout, it says the code is invalid or expired.",
    "Hello, the package arrived damaged, the box was crushed and two glasses are broken. What now?",
    "Can I upgrade my plan in the middle of the billing cycle, and will it be prorated?",
    "I'd like to cancel my account and have all my data deleted, please confirm when done.",
    "Your website is very slow today, pages take more than 10 seconds to load on my laptop.",
];

fn main() {
    let det = PiiDetector::new();
    let mut plain: Vec<String> = Vec::new();
    let mut total = 0usize;
    let mut i = 0usize;
    while total < 8_000_000 {
        let m = MSGS[i % MSGS.len()].to_string();
        total += m.len();
        plain.push(m);
        i += 1;
    }
    let fx: Vec<String> = fixture::generate(42, 2000)
        .into_iter()
        .map(|c| c.text)
        .collect();
    let mut mixed: Vec<String> = Vec::new();
    let mut total_mixed = 0usize;
    let mut j = 0usize;
    while total_mixed < 8_000_000 {
        // ~10% of messages carry PII
        let m = if j.is_multiple_of(10) {
            fx[(j / 10) % fx.len()].clone()
        } else {
            MSGS[j % MSGS.len()].to_string()
        };
        total_mixed += m.len();
        mixed.push(m);
        j += 1;
    }
    let pii_only_bytes: usize = fx.iter().map(String::len).sum();
    for (name, corpus, bytes, reps) in [
        ("plain support messages", &plain, total, 3),
        ("90% plain + 10% fixture", &mixed, total_mixed, 3),
        ("fixture only (all PII)", &fx, pii_only_bytes, 30),
    ] {
        let mut best = f64::MAX;
        let mut n = 0;
        for _ in 0..reps {
            let t = Instant::now();
            n = 0;
            for m in corpus.iter() {
                n += det.mask(m).spans.len();
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        let mb = bytes as f64 / 1e6;
        println!(
            "{name:<26} {:>6} msgs {:>7.2} MB  {:>7.1} MB/s  ({} spans)",
            corpus.len(),
            mb,
            mb / best,
            n
        );
    }
}
