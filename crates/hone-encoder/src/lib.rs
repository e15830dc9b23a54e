//! hone's pretrained-encoder foundation: BERT config, a trainable BERT encoder on differentiable candle
//! ops, safetensors loading with Hugging Face names, pooling, and tokenisation.

pub mod bert;
pub mod config;
pub mod tokenize;

pub use bert::{BertEncoder, Dropout, Pooling, l2_normalize, pool};
pub use config::{Activation, BertConfig};
