//! Tiny random language models written in code, for tests here and in the pipeline: a GGUF file laid
//! out as llama.cpp writes one (Q/K rows permuted, byte-level BPE tokenizer and a ChatML template in
//! the metadata), so the whole loading path runs without a download.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::decoder::{Decoder, DecoderConfig, gguf_name, permute};
use crate::{LmError, Result};

/// SmolLM2's chat template, shortened to its ChatML core.
pub const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The special tokens, ids 0, 1, 2 (as in SmolLM2: BOS `<|im_start|>`, EOS = pad `<|im_end|>`).
pub use crate::pretrain::SPECIAL;

/// GPT-2's byte → printable character map, in byte order.
pub fn byte_chars() -> Vec<char> {
    let printable = |b: u32| {
        (u32::from('!')..=u32::from('~')).contains(&b)
            || (0xA1..=0xAC).contains(&b)
            || (0xAE..=0xFF).contains(&b)
    };
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                let c = char::from_u32(next).unwrap_or('?');
                next += 1;
                c
            }
        })
        .collect()
}

/// The vocabulary of [`tiny_config`]: the special tokens, then one token per byte.
pub fn tiny_vocab() -> Vec<String> {
    SPECIAL
        .iter()
        .map(|s| s.to_string())
        .chain(byte_chars().into_iter().map(String::from))
        .collect()
}

/// A 2-layer decoder over [`tiny_vocab`] (259 tokens), with grouped-query attention (4 heads, 2
/// key/value heads) and tied embeddings.
pub fn tiny_config() -> DecoderConfig {
    DecoderConfig {
        vocab: tiny_vocab().len(),
        hidden: 32,
        ffn: 64,
        layers: 2,
        heads: 4,
        kv_heads: 2,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        tied: true,
        context: 512,
        attn_bias: false,
    }
}

/// Writes `decoder` to `path` as a GGUF file with [`tiny_vocab`]'s tokenizer and the ChatML
/// template, weights in f32 and Q/K rows permuted as llama.cpp's converter does.
pub fn write_gguf(decoder: &Decoder, path: &Path) -> Result<()> {
    let cfg = decoder.config();
    let tokens = tiny_vocab();
    let u32v = |x: usize| Value::U32(x as u32);
    let mut md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        (
            "general.name",
            Value::String("hone tiny test decoder".into()),
        ),
        ("llama.block_count", u32v(cfg.layers)),
        ("llama.embedding_length", u32v(cfg.hidden)),
        ("llama.feed_forward_length", u32v(cfg.ffn)),
        ("llama.attention.head_count", u32v(cfg.heads)),
        ("llama.attention.head_count_kv", u32v(cfg.kv_heads)),
        ("llama.context_length", u32v(cfg.context)),
        ("llama.rope.freq_base", Value::F32(cfg.rope_theta as f32)),
        (
            "llama.attention.layer_norm_rms_epsilon",
            Value::F32(cfg.rms_eps as f32),
        ),
        ("llama.rope.dimension_count", u32v(cfg.hidden / cfg.heads)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        (
            "tokenizer.ggml.tokens",
            Value::Array(tokens.iter().map(|t| Value::String(t.clone())).collect()),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(
                (0..tokens.len())
                    .map(|i| Value::I32(if i < SPECIAL.len() { 3 } else { 1 }))
                    .collect(),
            ),
        ),
        ("tokenizer.ggml.merges", Value::Array(Vec::new())),
        ("tokenizer.ggml.bos_token_id", Value::U32(1)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.padding_token_id", Value::U32(2)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.chat_template", Value::String(CHATML.into())),
    ];
    md.sort_by(|a, b| a.0.cmp(b.0));
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut by_name: Vec<(String, Tensor)> = decoder.tensors()?.into_iter().collect();
    by_name.sort_by(|a, b| a.0.cmp(&b.0));
    for (hf, t) in by_name {
        let name =
            gguf_name(&hf).ok_or_else(|| LmError::Model(format!("no GGUF name for `{hf}`")))?;
        let t = t.to_device(&Device::Cpu)?;
        let t = if hf.ends_with("q_proj.weight") {
            permute(&t, cfg.heads)?
        } else if hf.ends_with("k_proj.weight") {
            permute(&t, cfg.kv_heads)?
        } else {
            t
        };
        tensors.push((name, QTensor::quantize(&t, GgmlDType::F32)?));
    }
    let mut file = std::fs::File::create(path).map_err(|source| LmError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    gguf_file::write(&mut file, &md_refs, &t_refs)?;
    Ok(())
}

/// A tiny random decoder ([`tiny_config`], weights from `seed`) written to `path` as GGUF.
pub fn tiny_gguf(path: &Path, seed: u64) -> Result<Decoder> {
    let d = Decoder::random(tiny_config(), seed, &Device::Cpu)?;
    write_gguf(&d, path)?;
    Ok(d)
}

/// The weights of `d` with every value scaled, as a new map (tests that need sharper logits).
pub fn scaled(d: &Decoder, factor: f64) -> Result<HashMap<String, Tensor>> {
    let mut out = HashMap::new();
    for (n, t) in d.tensors()? {
        let t = if t.rank() == 1 { t } else { (t * factor)? };
        out.insert(n, t);
    }
    Ok(out)
}

/// The largest absolute difference between two tensors of the same shape (for tests).
pub fn max_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar::<f32>())
        .unwrap_or(f32::INFINITY)
}

/// A tiny model with weights ×5 (random weights at std 0.02 give flat logits that low-rank adapters
/// barely move, and completions sampled from them all alike), written to `dir/sharp.gguf` and loaded.
pub fn sharp_lm(dir: &Path) -> Result<crate::Lm> {
    let path = dir.join("sharp.gguf");
    let d = Decoder::random(tiny_config(), 11, &Device::Cpu)?;
    let d = Decoder::from_tensors(tiny_config(), scaled(&d, 5.0)?, &Device::Cpu)?;
    write_gguf(&d, &path)?;
    crate::Lm::load(&path)
}
