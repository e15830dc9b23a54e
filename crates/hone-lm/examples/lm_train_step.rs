//! Times language-model training steps and reads the peak resident memory: STEPS optimiser steps of
//! LoRA (or full) SFT on BATCH synthetic sequences of LENGTH tokens, the second half of each trainable
//! (a prompt and its answer). Prints one JSON line: seconds per step (each, min, median), peak RSS
//! (`VmHWM`) and the micro-batch used. Threads follow `RAYON_NUM_THREADS`. MODEL may be a Hugging Face
//! directory (`hone export` of a pre-trained run); `LM_STEP_TRAIN_ALL=1` trains every token. For bench/lm and for sizing
//! the memory estimate; `hone run` is the product path.
//!
//! ```text
//! cargo run --release -p hone-lm --example lm_train_step -- MODEL.gguf 8 256 3 lora [MICRO]
//! ```

use std::time::Instant;

use hone_lm::sft::{self, Example, SftConfig};
use hone_lm::{Lm, LoraConfig};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, batch, length, steps, method) = match args.as_slice() {
        [m, b, l, s, meth, ..] => (
            m,
            b.parse::<usize>()?,
            l.parse::<usize>()?,
            s.parse::<usize>()?,
            meth,
        ),
        _ => return Err("usage: lm_train_step MODEL BATCH LENGTH STEPS lora|full [MICRO]".into()),
    };
    let micro: usize = args.get(5).map(|m| m.parse()).transpose()?.unwrap_or(0);
    let mut lm = Lm::load(std::path::Path::new(model))?;
    let loaded_kib = vm_hwm_kib();
    if method == "lora" {
        lm.decoder_mut().add_lora(
            LoraConfig {
                rank: 16,
                alpha: 32.0,
                dropout: std::env::var("LORA_DROPOUT")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.05),
                // LORA_TARGETS=q_proj,k_proj,v_proj,o_proj (hone's default); every projection otherwise.
                targets: match std::env::var("LORA_TARGETS") {
                    Ok(t) => t.split(',').map(str::to_string).collect(),
                    Err(_) => LoraConfig::targets()
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                },
            },
            0,
        )?;
    }
    let vocab = lm.info().vocab as u64;
    // LM_STEP_TRAIN_ALL=1: every token but the first trained, as in pre-training.
    let from = if std::env::var_os("LM_STEP_TRAIN_ALL").is_some() {
        1
    } else {
        length / 2
    };
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let examples: Vec<Example> = (0..batch * steps)
        .map(|i| {
            let ids = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state % vocab) as u32
                })
                .collect();
            let train = (0..length).map(|j| j >= from).collect();
            Example {
                id: format!("x{i}"),
                ids,
                train,
            }
        })
        .collect();
    if std::env::var_os("LM_STEP_PHASES").is_some() {
        // Peak memory after the forward pass alone, then after backward, for one batch.
        let batch: Vec<&Example> = examples.iter().take(batch).collect();
        let mut dropout = hone_neural::Dropout::new(1);
        let (loss, _) = sft::batch_loss(&lm, &batch, Some(&mut dropout))?;
        let fwd = vm_hwm_kib() / 1024;
        let loss_value = loss.to_scalar::<f32>()?;
        let grads = loss.backward()?;
        let bwd = vm_hwm_kib() / 1024;
        let ids: Vec<_> = grads.get_ids().copied().collect();
        let kept: usize = ids
            .iter()
            .filter_map(|&id| grads.get_id(id))
            .map(|t| t.elem_count())
            .sum();
        eprintln!(
            "gradients kept: {} tensors, {} MiB",
            ids.len(),
            (kept * 4) >> 20
        );
        drop(grads);
        println!(
            "{}",
            serde_json::json!({"loss": loss_value, "forward_peak_mib": fwd, "backward_peak_mib": bwd, "loaded_mib": loaded_kib / 1024})
        );
        return Ok(());
    }
    let cfg = SftConfig {
        epochs: 1,
        lr: 1e-4,
        batch_size: batch,
        micro_batch: micro,
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut last = Instant::now();
    let log = sft::train_with(
        &mut lm,
        &examples,
        &cfg,
        sft::Control::default(),
        &mut |_s| {
            times.push(last.elapsed().as_secs_f64());
            last = Instant::now();
        },
    )?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let out = serde_json::json!({
        "method": method,
        "batch": batch,
        "length": length,
        "micro_batch": log.micro_batch,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "step_seconds": times,
        "min": sorted.first(),
        "median": sorted.get(sorted.len() / 2),
        "loaded_rss_mib": loaded_kib / 1024,
        "peak_rss_mib": vm_hwm_kib() / 1024,
        "loss": log.steps.iter().map(|s| s.loss).collect::<Vec<_>>(),
    });
    println!("{out}");
    Ok(())
}
