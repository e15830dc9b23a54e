//! hone's pretrained-encoder layer: BERT config, a trainable BERT encoder on differentiable candle ops,
//! safetensors loading with Hugging Face names, tokenisation, embeddings, a linear head, fine-tuning
//! (fused AdamW, schedules, checkpoints, SetFit-style contrastive training) and export back to Hugging Face.

pub mod bert;
pub mod config;
pub mod device;
pub mod embed;
pub mod export;
pub mod finetune;
pub mod fused;
pub mod head;
pub mod model;
pub mod optim;
pub mod testing;
pub mod tokenize;

pub use bert::{BertEncoder, Dropout, Pooling, l2_normalize, pool};
pub use config::{Activation, BertConfig};
pub use embed::{Embedded, Pretrained, embed};
pub use finetune::{Classifier, FinetuneConfig, FinetuneReport};
pub use head::{LinearHead, Rows, Targets};
pub use model::{EmbeddingCache, EncoderModel, EncoderParams, Method};
