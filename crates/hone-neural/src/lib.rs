//! hone's shared neural machinery, model-agnostic and reused by the encoder (`hone-encoder`) and the
//! causal LM (`hone-lm`): fused CPU kernels with their own backward passes (`fused`), the few-row
//! product of generation steps (`skinny`), the fused in-place AdamW with warmup + decay, clipping and
//! gradient accumulation (`optim`), seeded randomness and dropout (`rng`, `dropout`), resumable
//! checkpoints (`checkpoint`) and device selection (`device`; `cuda` feature).

pub mod checkpoint;
pub mod device;
pub mod dropout;
pub mod fused;
pub mod optim;
pub mod rng;
pub mod skinny;

pub use dropout::Dropout;
pub use rng::SeededRng;

use hone_core::Error;

/// The largest absolute difference between two f32 tensors of one shape: the measure every numerical
/// check in hone uses (fused kernels against written-out ops, encoders against references, optimisers).
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> hone_core::Result<f32> {
    (a - b)
        .and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>())
        .map_err(candle_err)
}

/// candle's error without the backtrace candle attaches when `RUST_BACKTRACE` is set.
fn strip_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => strip_backtrace(*inner),
        e => e,
    }
}

/// A candle error as hone's error (without candle's backtrace): an allocation failure (a CUDA or
/// Metal out-of-memory) is [`Error::OutOfMemory`]; anything else is internal, since the callers map
/// errors about the user's files (weights, tokenizer, config) themselves.
pub fn candle_err(e: candle_core::Error) -> Error {
    let e = strip_backtrace(e);
    let msg = e.to_string();
    let lower = msg.to_lowercase();
    if lower.contains("out of memory")
        || lower.contains("out_of_memory")
        || lower.contains("alloc") && lower.contains("fail")
    {
        return Error::OutOfMemory {
            what: format!("computing with candle ({msg})"),
            hint: "lower `batch` (or `max_length`) under [model.params], or use a device with more memory".into(),
        };
    }
    Error::Internal(format!("candle: {msg}"))
}

/// The number of threads candle's kernels use when `RAYON_NUM_THREADS` is unset (the physical
/// cores, counted by reading `/proc/cpuinfo`, which candle does again on every matmul).
pub fn default_threads() -> usize {
    candle_core::utils::get_num_threads()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_failures_are_out_of_memory_and_the_rest_internal() {
        let oom = candle_err(candle_core::Error::Msg(
            "CUDA_ERROR_OUT_OF_MEMORY: out of memory".into(),
        ));
        assert!(matches!(oom, Error::OutOfMemory { .. }), "{oom:?}");
        assert!(oom.to_string().contains("lower `batch`"), "{oom}");
        let other = candle_err(candle_core::Error::Msg("shape mismatch".into()));
        assert!(matches!(other, Error::Internal(_)), "{other:?}");
    }
}
