//! Hugging Face BERT `config.json` (BERT, MiniLM): parsing and validation into a [`BertConfig`].

use std::path::{Path, PathBuf};

use hone_core::{Error, Result};
use serde::Deserialize;

/// The activation of the feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `"gelu"`: exact GELU, `x/2 * (1 + erf(x/√2))` (candle's `gelu_erf`, as in Hugging Face).
    GeluErf,
    /// `"gelu_new"`, `"gelu_pytorch_tanh"`: the tanh approximation (max abs error vs exact ≈ 4.7e-4).
    GeluTanh,
    /// `"relu"`.
    Relu,
}

/// A validated BERT encoder configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: Activation,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    /// Dropout after embeddings, attention output and feed-forward output (training only).
    pub hidden_dropout_prob: f64,
    /// Dropout on the attention probabilities (training only).
    pub attention_probs_dropout_prob: f64,
    /// Standard deviation of the normal initialisation of weights in [`crate::bert::BertEncoder::new_random`].
    pub initializer_range: f64,
    pub pad_token_id: u32,
}

#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<String>,
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default = "default_act")]
    hidden_act: String,
    #[serde(default = "default_max_pos")]
    max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    type_vocab_size: usize,
    #[serde(default = "default_eps")]
    layer_norm_eps: f64,
    #[serde(default = "default_dropout")]
    hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    attention_probs_dropout_prob: f64,
    #[serde(default = "default_init")]
    initializer_range: f64,
    #[serde(default)]
    pad_token_id: u32,
    position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_dropout() -> f64 {
    0.1
}
fn default_init() -> f64 {
    0.02
}

fn config_error(path: &Path, line: usize, col: usize, message: String, hint: &str) -> Error {
    Error::Config {
        path: PathBuf::from(path),
        line,
        col,
        message,
        hint: hint.to_string(),
    }
}

impl BertConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json_str(&text, path)
    }

    /// Parses and validates the text of a `config.json`; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| {
            config_error(
                path,
                e.line(),
                e.column(),
                e.to_string(),
                "expected a Hugging Face BERT config.json",
            )
        })?;
        let bad = |message: String, hint: &str| config_error(path, 0, 0, message, hint);
        match raw.model_type.as_deref() {
            None | Some("bert") => {}
            Some(other) => {
                return Err(bad(
                    format!("unsupported model_type `{other}`"),
                    "hone's encoder supports BERT-family models (model_type \"bert\", e.g. bert-base, all-MiniLM-L6-v2)",
                ));
            }
        }
        if let Some(p) = raw.position_embedding_type.as_deref()
            && p != "absolute"
        {
            return Err(bad(
                format!("unsupported position_embedding_type `{p}`"),
                "only \"absolute\" is supported",
            ));
        }
        let hidden_act = match raw.hidden_act.as_str() {
            "gelu" => Activation::GeluErf,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            other => {
                return Err(bad(
                    format!("unsupported hidden_act `{other}`"),
                    "supported: gelu, gelu_new, gelu_pytorch_tanh, relu",
                ));
            }
        };
        for (name, v) in [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", raw.num_attention_heads),
            ("intermediate_size", raw.intermediate_size),
            ("max_position_embeddings", raw.max_position_embeddings),
            ("type_vocab_size", raw.type_vocab_size),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} must be positive"), ""));
            }
        }
        if !raw.hidden_size.is_multiple_of(raw.num_attention_heads) {
            return Err(bad(
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    raw.hidden_size, raw.num_attention_heads
                ),
                "",
            ));
        }
        if !(raw.layer_norm_eps > 0.0 && raw.layer_norm_eps.is_finite()) {
            return Err(bad(
                format!(
                    "layer_norm_eps must be positive, got {}",
                    raw.layer_norm_eps
                ),
                "",
            ));
        }
        for (name, p) in [
            ("hidden_dropout_prob", raw.hidden_dropout_prob),
            (
                "attention_probs_dropout_prob",
                raw.attention_probs_dropout_prob,
            ),
        ] {
            if !(0.0..1.0).contains(&p) {
                return Err(bad(format!("{name} must be in [0, 1), got {p}"), ""));
            }
        }
        if raw.pad_token_id as usize >= raw.vocab_size {
            return Err(bad(
                format!(
                    "pad_token_id {} is outside the vocabulary ({})",
                    raw.pad_token_id, raw.vocab_size
                ),
                "",
            ));
        }
        Ok(BertConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            intermediate_size: raw.intermediate_size,
            hidden_act,
            max_position_embeddings: raw.max_position_embeddings,
            type_vocab_size: raw.type_vocab_size,
            layer_norm_eps: raw.layer_norm_eps,
            hidden_dropout_prob: raw.hidden_dropout_prob,
            attention_probs_dropout_prob: raw.attention_probs_dropout_prob,
            initializer_range: raw.initializer_range,
            pad_token_id: raw.pad_token_id,
        })
    }

    /// Size of one attention head.
    pub fn head_size(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINILM: &str = r#"{
      "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
      "architectures": ["BertModel"],
      "attention_probs_dropout_prob": 0.1,
      "gradient_checkpointing": false,
      "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1,
      "hidden_size": 384,
      "initializer_range": 0.02,
      "intermediate_size": 1536,
      "layer_norm_eps": 1e-12,
      "max_position_embeddings": 512,
      "model_type": "bert",
      "num_attention_heads": 12,
      "num_hidden_layers": 6,
      "pad_token_id": 0,
      "position_embedding_type": "absolute",
      "transformers_version": "4.8.2",
      "type_vocab_size": 2,
      "use_cache": true,
      "vocab_size": 30522
    }"#;

    fn parse(s: &str) -> Result<BertConfig> {
        BertConfig::from_json_str(s, Path::new("config.json"))
    }

    #[test]
    fn parses_minilm() {
        let c = parse(MINILM).unwrap();
        assert_eq!(c.hidden_size, 384);
        assert_eq!(c.num_hidden_layers, 6);
        assert_eq!(c.head_size(), 32);
        assert_eq!(c.hidden_act, Activation::GeluErf);
        assert_eq!(c.layer_norm_eps, 1e-12);
    }

    #[test]
    fn rejects_other_model_types_and_bad_values_with_config_errors() {
        let cases = [
            (
                MINILM.replace("\"bert\"", "\"gpt2\""),
                "unsupported model_type `gpt2`",
            ),
            (
                MINILM.replace("\"gelu\"", "\"swish\""),
                "unsupported hidden_act",
            ),
            (
                MINILM.replace("\"hidden_size\": 384", "\"hidden_size\": 380"),
                "not a multiple",
            ),
            (
                MINILM.replace("\"vocab_size\": 30522", "\"vocab_size\": 0"),
                "vocab_size must be positive",
            ),
            (
                MINILM.replace("\"num_hidden_layers\": 6,", ""),
                "missing field `num_hidden_layers`",
            ),
            ("{ not json".to_string(), "key must be a string"),
        ];
        for (text, want) in cases {
            let e = parse(&text).unwrap_err();
            assert!(matches!(e, Error::Config { .. }), "{e:?}");
            assert!(e.to_string().contains(want), "{e} should contain {want}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn missing_file_is_an_io_error() {
        let e = BertConfig::from_file(Path::new("/nonexistent/config.json")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }));
    }
}
