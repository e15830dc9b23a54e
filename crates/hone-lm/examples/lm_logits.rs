//! For bench/lm stage 2: for every prompt of a JSONL file (`{"id", "text"}`, rendered with the model's
//! chat template), the prompt's token ids, the next-token logits, and a greedy continuation of up to
//! 64 tokens (KV cache) with the gap between the two best logits at each step, as JSONL.
//!
//! ```text
//! cargo run --release -p hone-lm --example lm_logits -- MODEL.gguf prompts.jsonl > hone.jsonl
//! ```

use std::io::{BufRead, Write};

use hone_lm::{Lm, Message};

fn top2_gap(logits: &[f32]) -> (u32, f32) {
    let (mut best, mut second) = ((0usize, f32::NEG_INFINITY), f32::NEG_INFINITY);
    for (i, &x) in logits.iter().enumerate() {
        if x > best.1 {
            second = best.1;
            best = (i, x);
        } else if x > second {
            second = x;
        }
    }
    (best.0 as u32, best.1 - second)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(prompts)) = (args.next(), args.next()) else {
        return Err("usage: lm_logits MODEL.gguf prompts.jsonl".into());
    };
    let mut lm = Lm::load(std::path::Path::new(&model))?;
    let eos = lm.info().eos;
    let out = std::io::stdout();
    let mut out = out.lock();
    for line in std::io::BufReader::new(std::fs::File::open(&prompts)?).lines() {
        let r: serde_json::Value = serde_json::from_str(&line?)?;
        let (Some(id), Some(text)) = (r["id"].as_str(), r["text"].as_str()) else {
            return Err(format!("{prompts}: every line needs string fields id and text").into());
        };
        let prompt = lm.chat_prompt(&[Message::new("user", text)])?;
        let ids = lm.encode(&prompt)?;
        let logits = lm.forward(&ids, 0)?;
        // Greedy with the KV cache, keeping the gap between the two best logits at every step.
        let (mut greedy, mut gaps) = (Vec::new(), Vec::new());
        let mut step = logits.clone();
        for pos in ids.len()..ids.len() + 64 {
            let (next, gap) = top2_gap(&step);
            gaps.push(gap);
            if next == eos {
                break;
            }
            greedy.push(next);
            step = lm.forward(&[next], pos)?;
        }
        let rounded: Vec<f64> = logits
            .iter()
            .map(|&x| (f64::from(x) * 1e5).round() / 1e5)
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::json!({"id": id, "ids": ids, "logits": rounded, "greedy": greedy, "gaps": gaps})
        )?;
    }
    Ok(())
}
