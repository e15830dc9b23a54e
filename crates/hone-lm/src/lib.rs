//! Local causal language models: reading a GGUF file (hyperparameters, weights, the tokenizer and the
//! chat template from its metadata), hone's own trainable Llama-family decoder (`decoder.rs`),
//! rendering chat templates, and generating text with a KV cache, one prompt or a left-padded batch
//! (greedy or seeded sampling, stop strings, end of sequence). Tiny random models for tests are
//! written by `testing.rs`.

pub mod chat;
pub mod decoder;
pub mod dpo;
pub mod generate;
pub mod gguf;
pub mod grpo;
pub mod hf;
pub mod pretrain;
pub mod sft;
pub mod testing;

pub use chat::{ChatTemplate, Message};
pub use decoder::{Decoder, DecoderConfig, KvCache, LoraConfig};
pub use generate::{GenerateConfig, Generation, Lm, StopReason};
pub use gguf::{LmFile, LmInfo};
pub use tokenizers::Tokenizer;

/// What can go wrong reading or running a language model.
#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// The file is not what it should be (not GGUF, a metadata key missing or of the wrong type).
    #[error("{path}: {what}")]
    Format {
        path: std::path::PathBuf,
        what: String,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("model: {0}")]
    Model(String),
    /// Training data that cannot train (an example with no trainable tokens, an empty set).
    #[error("{0}")]
    Data(String),
    /// A prompt plus the tokens asked for do not fit the model's context.
    #[error("{0}")]
    Context(String),
    /// An error from a caller's callback (a dev scorer), passed through as it was.
    #[error(transparent)]
    Caller(Box<hone_core::Error>),
}

impl From<candle_core::Error> for LmError {
    fn from(e: candle_core::Error) -> Self {
        LmError::Model(candle_message(e))
    }
}

/// A candle error's message without the backtrace candle attaches when `RUST_BACKTRACE` is set.
pub(crate) fn candle_message(e: candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(*inner),
        other => other.to_string(),
    }
}

pub type Result<T> = std::result::Result<T, LmError>;

/// A digest of the model at `path`: a GGUF file's bytes, or a Hugging Face directory's config,
/// tokenizer files and weights (names and bytes, in name order).
pub fn model_fingerprint(path: &std::path::Path) -> Result<String> {
    let io = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |source| LmError::Io { path: p, source }
    };
    if !path.is_dir() {
        let bytes = std::fs::read(path).map_err(io(path))?;
        return Ok(blake3::hash(&bytes).to_hex().to_string());
    }
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)
        .map_err(io(path))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.ends_with(".safetensors")
                || ["config.json", "tokenizer.json", "tokenizer_config.json"]
                    .contains(&name.as_str())
        })
        .collect();
    files.sort();
    let mut h = blake3::Hasher::new();
    for f in files {
        let bytes = std::fs::read(&f).map_err(io(&f))?;
        h.update(
            f.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update(blake3::hash(&bytes).as_bytes());
    }
    Ok(h.finalize().to_hex().to_string())
}

impl From<LmError> for hone_core::Error {
    fn from(e: LmError) -> Self {
        match e {
            LmError::Io { path, source } => hone_core::Error::io(path, source),
            LmError::Format { path, what } => hone_core::Error::ModelFiles {
                path,
                reason: what,
                hint: "scripts/get-smollm2 fetches a known-good SmolLM2-135M-Instruct GGUF file"
                    .into(),
            },
            LmError::Data(message) => hone_core::Error::Data {
                message,
                hint: "fix the examples named, or raise max_length".into(),
            },
            LmError::Context(message) => hone_core::Error::Data {
                message,
                hint: "lower max_new_tokens (or --max-new-tokens), or shorten the prompt".into(),
            },
            LmError::Tokenizer(m) | LmError::Template(m) => hone_core::Error::Data {
                message: m,
                hint: String::new(),
            },
            LmError::Caller(e) => *e,
            LmError::Model(m) if m.contains("out of memory") || m.contains("alloc") => {
                hone_core::Error::OutOfMemory {
                    what: m,
                    hint: "lower batch_size or max_length".into(),
                }
            }
            LmError::Model(m) => hone_core::Error::Internal(format!("language model: {m}")),
        }
    }
}
