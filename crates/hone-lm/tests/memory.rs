//! Memory stays flat over five SFT epochs of a tiny decoder: resident memory after the fifth epoch is
//! within a small margin of that after the first (a leak of graphs, gradients or optimiser state per
//! step would grow it by the step count). Its own test binary, so no other test shares the process.

#[cfg(target_os = "linux")]
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn memory_stays_flat_over_five_sft_epochs() {
    use hone_lm::sft::{self, SftConfig};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    hone_lm::testing::tiny_gguf(&path, 5).unwrap();
    let mut lm = hone_lm::Lm::load(&path).unwrap();
    let examples: Vec<sft::Example> = (0..48)
        .map(|i| {
            let p = format!("question number {i} about an order");
            let t = format!("answer {i}: it ships on day {}", i % 7);
            sft::encode_chat(&lm, &format!("e{i}"), &sft::pair_messages(None, &p, &t), 96)
                .unwrap()
                .example
        })
        .collect();
    let cfg = SftConfig {
        epochs: 5,
        lr: 1e-3,
        batch_size: 4,
        ..Default::default()
    };
    let per_epoch = 12u64;
    let mut at_epoch_end = Vec::new();
    sft::train(&mut lm, &examples, &cfg, &mut |s| {
        if (s.step + 1) % per_epoch == 0 {
            at_epoch_end.push(rss_kib());
        }
    })
    .unwrap();
    assert_eq!(at_epoch_end.len(), 5);
    let growth = at_epoch_end[4] as i64 - at_epoch_end[0] as i64;
    eprintln!("RSS at each epoch's end (KiB): {at_epoch_end:?}; growth {growth} KiB");
    // 48 steps after the first epoch; a step's logits alone take ~370 KiB (4 × ~90 tokens × 259), so
    // keeping any step's graph alive would pass 4 MiB several times over.
    assert!(growth < 4 * 1024, "RSS grew {growth} KiB: {at_epoch_end:?}");
}
