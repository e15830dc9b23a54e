//! For bench/lm stage 3: greedy generation speed on the prompts' token ids of a JSONL file (`{"id",
//! "ids"}`, as `lm_logits` writes them): up to 64 new tokens each, in batches of BATCH prompts of
//! similar length (left-padded), as the product's evaluation and `predict` batch them. Prints one JSON
//! line: prompts, batch, generated tokens, seconds, tokens/s, and the greedy tokens per prompt.
//! Threads follow `RAYON_NUM_THREADS`.
//!
//! ```text
//! cargo run --release -p hone-lm --example lm_speed -- MODEL.gguf hone-logits.jsonl 8 24
//! ```

use std::io::BufRead;
use std::time::Instant;

use hone_lm::{GenerateConfig, Lm};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, ids_file, batch, n] = args.as_slice() else {
        return Err("usage: lm_speed MODEL.gguf IDS.jsonl BATCH N_PROMPTS".into());
    };
    let (batch, n): (usize, usize) = (batch.parse()?, n.parse()?);
    let mut lm = Lm::load(std::path::Path::new(model))?;
    let mut prompts: Vec<(String, Vec<u32>)> = Vec::new();
    for line in std::io::BufReader::new(std::fs::File::open(ids_file)?)
        .lines()
        .take(n)
    {
        let r: serde_json::Value = serde_json::from_str(&line?)?;
        let ids = r["ids"]
            .as_array()
            .ok_or("every line needs an `ids` array")?
            .iter()
            .map(|v| v.as_u64().map(|x| x as u32).ok_or("ids are integers"))
            .collect::<Result<Vec<u32>, _>>()?;
        prompts.push((r["id"].as_str().unwrap_or_default().to_string(), ids));
    }
    // Batches of similar length, as the product batches them.
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (prompts[i].1.len(), i));
    let cfg = GenerateConfig {
        max_new_tokens: 64,
        ..Default::default()
    };
    let mut greedy = vec![Vec::new(); prompts.len()];
    let t = Instant::now();
    for chunk in order.chunks(batch.max(1)) {
        let ps: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].1.clone()).collect();
        let gens = lm.generate_batch(&ps, &vec![0; ps.len()], &cfg)?;
        for (&i, g) in chunk.iter().zip(gens) {
            greedy[i] = g.tokens;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let tokens: usize = greedy.iter().map(Vec::len).sum();
    let out = serde_json::json!({
        "prompts": prompts.len(),
        "batch": batch,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "tokens": tokens,
        "seconds": secs,
        "tokens_per_s": tokens as f64 / secs,
        "greedy": prompts.iter().zip(&greedy).map(|((id, _), g)| serde_json::json!({"id": id, "tokens": g})).collect::<Vec<_>>(),
    });
    println!("{out}");
    Ok(())
}
