//! Embeds the BANKING77 test texts with all-MiniLM-L6-v2 (mean pooling + L2 normalisation), prints texts/s.
//!
//! `cargo run --release --example embed -- [MODEL_DIR] [JSONL] [BATCH]`; threads follow `RAYON_NUM_THREADS`.
//! `HONE_EMBED_REFERENCE=1` runs candle-transformers' inference-only `BertModel` instead (speed baseline);
//! `HONE_EMBED_DIFFERENTIABLE=1` uses the training path (`forward`) instead of `forward_inference`;
//! `HONE_EMBED_SORT=1` batches texts sorted by length (less padding).

use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Device;
use hone_encoder::tokenize::TextTokenizer;
use hone_encoder::{BertConfig, BertEncoder, Pooling, l2_normalize, pool};

fn main() -> hone_core::Result<()> {
    let mut args = std::env::args().skip(1);
    let model = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "models/all-MiniLM-L6-v2".into()),
    );
    let data = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "../shared/datasets/banking77/test.jsonl".into()),
    );
    let batch: usize = args.next().and_then(|b| b.parse().ok()).unwrap_or(32);

    let file = std::fs::File::open(&data).map_err(|e| hone_core::Error::io(&data, e))?;
    let mut texts = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|e| hone_core::Error::io(&data, e))?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| hone_core::Error::Usage(format!("{}: {e}", data.display())))?;
        if let Some(t) = v.get("text").and_then(|t| t.as_str()) {
            texts.push(t.to_string());
        }
    }

    let dev = Device::Cpu;
    let cfg = BertConfig::from_file(&model.join("config.json"))?;
    let enc = BertEncoder::load(&cfg, &model.join("model.safetensors"), &dev)?;
    let tok = TextTokenizer::from_file(&model.join("tokenizer.json"), 128)?;
    let use_reference = std::env::var_os("HONE_EMBED_REFERENCE").is_some();
    let reference = if use_reference {
        let text = std::fs::read_to_string(model.join("config.json"))
            .map_err(|e| hone_core::Error::io(model.join("config.json"), e))?;
        let ct: candle_transformers::models::bert::Config =
            serde_json::from_str(&text).map_err(|e| hone_core::Error::Usage(e.to_string()))?;
        let vb = unsafe {
            candle_nn::VarBuilder::from_mmaped_safetensors(
                &[model.join("model.safetensors")],
                candle_core::DType::F32,
                &dev,
            )
        }
        .map_err(|e| hone_core::Error::Internal(e.to_string()))?;
        Some(
            candle_transformers::models::bert::BertModel::load(vb, &ct)
                .map_err(|e| hone_core::Error::Internal(e.to_string()))?,
        )
    } else {
        None
    };
    let differentiable = std::env::var_os("HONE_EMBED_DIFFERENTIABLE").is_some();
    if std::env::var_os("HONE_EMBED_SORT").is_some() {
        texts.sort_by_key(|t| t.len());
    }

    let start = Instant::now();
    let mut truncated = 0;
    let mut n = 0;
    let mut first = None;
    for chunk in texts.chunks(batch) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let b = tok.encode_batch(&refs)?;
        truncated += b.truncated;
        let (ids, types, mask) = b.to_tensors(&dev)?;
        let h = match &reference {
            Some(r) => r
                .forward(&ids, &types, Some(&mask))
                .map_err(|e| hone_core::Error::Internal(e.to_string()))?,
            None if differentiable => enc.forward(&ids, Some(&types), Some(&mask), None)?,
            None => enc.forward_inference(&ids, Some(&types), Some(&mask))?,
        };
        let e = l2_normalize(&pool(&h, &mask, Pooling::Mean)?)?;
        if first.is_none() {
            first = Some(
                e.get(0)
                    .and_then(|r| r.narrow(0, 0, 4))
                    .and_then(|r| r.to_vec1::<f32>())
                    .map_err(|e| hone_core::Error::Internal(e.to_string()))?,
            );
        }
        n += chunk.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{}: {n} texts in {secs:.2} s = {:.1} texts/s (threads {}, batch {batch}, {truncated} truncated at 128); first embedding starts {:?}",
        if use_reference {
            "candle-transformers"
        } else if differentiable {
            "hone forward"
        } else {
            "hone forward_inference"
        },
        n as f64 / secs,
        candle_core::utils::get_num_threads(),
        first.unwrap_or_default()
    );
    Ok(())
}
