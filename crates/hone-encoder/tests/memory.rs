//! Peak memory stays flat across fine-tuning epochs (its own test binary, so no other test shares the
//! process whose peak RSS is read).

use candle_core::Device;
use hone_encoder::finetune::{finetune, peak_rss_bytes};
use hone_encoder::{Classifier, FinetuneConfig, Pooling, Pretrained};

#[test]
fn peak_rss_does_not_grow_after_the_first_epochs() {
    let Some(_) = peak_rss_bytes() else {
        eprintln!("skipped: /proc/self/status not readable");
        return;
    };
    let dir = std::env::temp_dir().join(format!("hone-mem-{}", std::process::id()));
    hone_encoder::testing::write_tiny_model(&dir, 3).unwrap();
    let p = Pretrained::load(&dir, 32).unwrap();
    let words = hone_encoder::testing::TINY_WORDS;
    let x: Vec<String> = (0..400)
        .map(|i| {
            (0..(4 + i % 20))
                .map(|j| words[(i * 7 + j * 13) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let y: Vec<u32> = (0..400).map(|i| (i % 3) as u32).collect();
    let xs: Vec<&str> = x.iter().map(String::as_str).collect();
    let enc =
        hone_encoder::BertEncoder::load(&p.config, &dir.join("model.safetensors"), &Device::Cpu)
            .unwrap();
    let m = Classifier::new(enc, Pooling::Cls, p.pooler.clone(), 3, 1).unwrap();
    let cfg = FinetuneConfig {
        epochs: 8,
        batch_size: 16,
        lr: 1e-3,
        patience: 0,
        ..FinetuneConfig::default()
    };
    let mut peaks = Vec::new();
    finetune(
        &m,
        &p.tokenizer,
        &xs,
        &y,
        Some((&xs[..60], &y[..60])),
        &cfg,
        None,
        &mut |_, _| {},
        &mut |_| {
            peaks.push(peak_rss_bytes().unwrap_or(0));
        },
    )
    .unwrap();
    assert_eq!(peaks.len(), 8);
    let after2 = peaks[1];
    let last = *peaks.last().unwrap();
    let growth = last.saturating_sub(after2);
    eprintln!(
        "peak RSS by epoch (MiB): {:?}",
        peaks.iter().map(|p| p / (1 << 20)).collect::<Vec<_>>()
    );
    // Six more epochs of the same work must not raise the peak by more than 8 MiB.
    assert!(
        growth < 8 << 20,
        "peak RSS grew by {} KiB over epochs 2..8",
        growth / 1024
    );
}
