//! Tiny random BERT model directories written in code, for tests here and in the `hone` crate
//! (no downloaded weights needed).

use std::path::Path;

use candle_core::Device;
use hone_core::{Error, Result};

use crate::bert::BertEncoder;
use crate::config::BertConfig;

/// Words of the tiny WordPiece vocabulary (after the special tokens).
pub const TINY_WORDS: &[&str] = &[
    "my", "card", "is", "lost", "hello", "where", "the", "money", "refund", "please", "thanks",
    "account", "closed", "open", "transfer", "failed", "pin", "blocked", "new", "fee", "why",
    "how", "i", "want", "to", "a", "what", "do", "can", "you", "help", "me", "order", "late", "it",
    "not", "work", "app", "login", "password", "reset", "change", "address", "delivery", "cancel",
    "spam", "win", "prize", "free", "call", "now", "cash", "##s", "##ed", "##ing",
];

/// The tiny config: 2 layers, hidden 32, 4 heads, max 64 positions.
pub fn tiny_config_json(vocab: usize) -> String {
    format!(
        r#"{{
  "model_type": "bert", "vocab_size": {vocab}, "hidden_size": 32, "num_hidden_layers": 2,
  "num_attention_heads": 4, "intermediate_size": 64, "hidden_act": "gelu",
  "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 64,
  "type_vocab_size": 2, "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0
}}"#
    )
}

/// A WordPiece `tokenizer.json` over [`TINY_WORDS`] (lowercasing BERT normaliser, `[CLS] .. [SEP]`).
pub fn tiny_tokenizer_json() -> String {
    let mut vocab = vec![
        "\"[PAD]\": 0".to_string(),
        "\"[UNK]\": 1".into(),
        "\"[CLS]\": 2".into(),
        "\"[SEP]\": 3".into(),
        "\"[MASK]\": 4".into(),
    ];
    for (i, w) in TINY_WORDS.iter().enumerate() {
        vocab.push(format!("\"{w}\": {}", i + 5));
    }
    format!(
        r###"{{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [
    {{"id": 0, "content": "[PAD]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}},
    {{"id": 1, "content": "[UNK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}},
    {{"id": 2, "content": "[CLS]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}},
    {{"id": 3, "content": "[SEP]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}},
    {{"id": 4, "content": "[MASK]", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}}
  ],
  "normalizer": {{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                 "strip_accents": null, "lowercase": true}},
  "pre_tokenizer": {{"type": "BertPreTokenizer"}},
  "post_processor": {{"type": "TemplateProcessing",
    "single": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}}, {{"Sequence": {{"id": "A", "type_id": 0}}}}, {{"SpecialToken": {{"id": "[SEP]", "type_id": 0}}}}],
    "pair": [{{"SpecialToken": {{"id": "[CLS]", "type_id": 0}}}}, {{"Sequence": {{"id": "A", "type_id": 0}}}}, {{"SpecialToken": {{"id": "[SEP]", "type_id": 0}}}}, {{"Sequence": {{"id": "B", "type_id": 1}}}}, {{"SpecialToken": {{"id": "[SEP]", "type_id": 1}}}}],
    "special_tokens": {{"[CLS]": {{"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}}, "[SEP]": {{"id": "[SEP]", "ids": [3], "tokens": ["[SEP]"]}}}}}},
  "decoder": {{"type": "WordPiece", "prefix": "##", "cleanup": true}},
  "model": {{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100, "vocab": {{{}}}}}
}}"###,
        vocab.join(", ")
    )
}

/// Writes `config.json`, `tokenizer.json` and `model.safetensors` (random weights from `seed`) into `dir`.
pub fn write_tiny_model(dir: &Path, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let vocab = TINY_WORDS.len() + 5;
    let cfg_json = tiny_config_json(vocab);
    let p = dir.join("config.json");
    std::fs::write(&p, &cfg_json).map_err(|e| Error::io(&p, e))?;
    let p = dir.join("tokenizer.json");
    std::fs::write(&p, tiny_tokenizer_json()).map_err(|e| Error::io(&p, e))?;
    let cfg = BertConfig::from_json_str(&cfg_json, &dir.join("config.json"))?;
    let mut c = cfg.clone();
    // Larger initial weights than BERT's 0.02 so that a random tiny model already separates inputs.
    c.initializer_range = 0.2;
    let enc = BertEncoder::new_random(&c, &Device::Cpu, seed)?;
    enc.save_weights(&dir.join("model.safetensors"))
}
