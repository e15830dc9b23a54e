//! hone's shared neural training machinery, model-agnostic and reused by the encoder (`hone-encoder`) and
//! the coming causal LM: fused CPU kernels with their own backward passes (`fused`), the fused in-place
//! AdamW with warmup + decay, clipping and gradient accumulation (`optim`), seeded randomness and dropout
//! (`rng`, `dropout`), resumable checkpoints (`checkpoint`) and device selection (`device`; `cuda` feature).

pub mod checkpoint;
pub mod device;
pub mod dropout;
pub mod fused;
pub mod optim;
pub mod rng;

pub use dropout::Dropout;
pub use rng::SeededRng;

use hone_core::Error;

/// candle's error without the backtrace candle attaches when `RUST_BACKTRACE` is set.
fn strip_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => strip_backtrace(*inner),
        e => e,
    }
}

/// A candle error as hone's internal error (without candle's backtrace).
pub fn candle_err(e: candle_core::Error) -> Error {
    Error::Internal(format!("candle: {}", strip_backtrace(e)))
}
