//! A local Hugging Face encoder directory (config, tokenizer, weights, optional pooler) and batched
//! sentence embeddings from it, with inputs grouped by length so that padding stays short.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use hone_core::{Error, Result};

use crate::bert::{BertEncoder, Pooling, candle_err, l2_normalize, pool};
use crate::config::BertConfig;
use crate::tokenize::TextTokenizer;

/// A BERT-family model loaded from a Hugging Face directory.
pub struct Pretrained {
    pub dir: PathBuf,
    pub config: BertConfig,
    pub encoder: BertEncoder,
    pub tokenizer: TextTokenizer,
    /// blake3 over config.json, tokenizer.json and model.safetensors: names the model in cache keys.
    pub fingerprint: String,
    /// `pooler.dense.{weight,bias}` when the checkpoint has them (used by `cls` classification heads).
    pub pooler: Option<(Tensor, Tensor)>,
}

impl Pretrained {
    /// Loads `dir/config.json`, `dir/tokenizer.json` and `dir/model.safetensors`.
    pub fn load(dir: &Path, max_length: usize) -> Result<Self> {
        let file = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            if p.is_file() {
                Ok(p)
            } else {
                Err(Error::ModelFiles {
                    path: p,
                    reason: "missing".into(),
                    hint: format!(
                        "{} must be a Hugging Face model directory with config.json, tokenizer.json and model.safetensors (scripts/get-minilm fetches all-MiniLM-L6-v2)",
                        dir.display()
                    ),
                })
            }
        };
        let (cfg_p, tok_p, w_p) = (
            file("config.json")?,
            file("tokenizer.json")?,
            file("model.safetensors")?,
        );
        let config = BertConfig::from_file(&cfg_p)?;
        if max_length > config.max_position_embeddings {
            return Err(Error::Usage(format!(
                "max_length {max_length} exceeds the model's max_position_embeddings {}",
                config.max_position_embeddings
            )));
        }
        let tokenizer = TextTokenizer::from_file(&tok_p, max_length)?;
        let encoder = BertEncoder::load(&config, &w_p, &Device::Cpu)?;
        let tensors = candle_core::safetensors::load(&w_p, &Device::Cpu).map_err(|e| {
            Error::CorruptWeights {
                path: w_p.clone(),
                reason: crate::bert::candle_err(e).to_string(),
                hint: String::new(),
            }
        })?;
        let find = |n: &str| {
            tensors
                .get(n)
                .or_else(|| tensors.get(&format!("bert.{n}")))
                .cloned()
        };
        let pooler = match (find("pooler.dense.weight"), find("pooler.dense.bias")) {
            (Some(w), Some(b)) => Some((
                w.to_dtype(DType::F32).map_err(candle_err)?,
                b.to_dtype(DType::F32).map_err(candle_err)?,
            )),
            _ => None,
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            encoder,
            tokenizer,
            fingerprint: fingerprint(dir)?,
            pooler,
        })
    }
}

/// blake3 over a model directory's config.json, tokenizer.json and model.safetensors.
pub fn fingerprint(dir: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    for name in ["config.json", "tokenizer.json", "model.safetensors"] {
        let p = dir.join(name);
        let bytes = std::fs::read(&p).map_err(|e| {
            Error::ModelFiles {
                path: p.clone(),
                reason: format!("cannot be read: {e}"),
                hint: "an encoder path must be a Hugging Face model directory with config.json, tokenizer.json and model.safetensors (scripts/get-minilm fetches all-MiniLM-L6-v2)".into(),
            }
        })?;
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(&bytes);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Row-major embeddings and how many inputs were truncated.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub data: Vec<f32>,
    pub dim: usize,
    pub truncated: usize,
}

/// Indices of `texts` ordered by length (longest first), so a batch pads to similar lengths.
pub fn length_order(texts: &[&str]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(texts[i].len()), i));
    order
}

/// Embeds `texts` in eval mode through the fused inference path: pooled, optionally L2-normalised.
/// `progress(done, total)` is called after every batch.
pub fn embed(
    encoder: &BertEncoder,
    tokenizer: &TextTokenizer,
    texts: &[&str],
    pooling: Pooling,
    normalize: bool,
    batch_size: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Embedded> {
    let dim = encoder.config().hidden_size;
    let mut data = vec![0.0f32; texts.len() * dim];
    let mut truncated = 0;
    let order = length_order(texts);
    let mut done = 0;
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
        let tb = tokenizer.encode_batch(&batch)?;
        truncated += tb.truncated;
        let (ids, types, mask) = tb.to_tensors(encoder.device())?;
        let hidden = encoder.forward_inference(&ids, Some(&types), Some(&mask))?;
        let mut pooled = pool(&hidden, &mask, pooling)?;
        if normalize {
            pooled = l2_normalize(&pooled)?;
        }
        let rows = pooled
            .to_dtype(DType::F32)
            .and_then(|t| t.to_vec2::<f32>())
            .map_err(candle_err)?;
        for (&i, row) in chunk.iter().zip(rows) {
            data[i * dim..(i + 1) * dim].copy_from_slice(&row);
        }
        done += chunk.len();
        progress(done, texts.len());
    }
    Ok(Embedded {
        data,
        dim,
        truncated,
    })
}
