//! hone's pretrained-encoder layer: BERT config, a trainable BERT encoder on differentiable candle ops,
//! safetensors loading with Hugging Face names, tokenisation, embeddings, a linear head, fine-tuning
//! (early stopping, resumable checkpoints, SetFit-style contrastive training) and export back to Hugging
//! Face. The model-agnostic training machinery (fused kernels, AdamW, schedules, devices) lives in
//! `hone-neural` and is re-exported here under its old paths.

pub mod bert;
pub mod config;
pub mod embed;
pub mod export;
pub mod finetune;
pub mod head;
pub mod model;
pub mod testing;
pub mod tokenize;

pub use hone_neural::{device, fused, max_abs_diff, optim};

pub use bert::{BertEncoder, Dropout, Pooling, l2_normalize, pool};
pub use config::{Activation, BertConfig};
pub use embed::{Embedded, Pretrained, embed};
pub use finetune::{Classifier, FinetuneConfig, FinetuneReport};
pub use head::{LinearHead, Rows, Targets};
pub use model::{EmbeddingCache, EncoderModel, EncoderParams, Method};
