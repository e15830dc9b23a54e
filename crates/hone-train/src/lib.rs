//! hone's pipeline library: curation (cached by content hash), split, training, evaluation, gates,
//! compare, predict, review and reports. The `hone` binary parses arguments and renders what these return.

pub mod answer_review;
pub mod approval;
pub mod card;
pub mod compare;
pub mod curate;
pub mod demo;
pub mod doctor;
pub mod dpo_stage;
pub mod drift;
pub mod feedback;
pub mod generate_stage;
pub mod grade_split;
pub mod graders;
pub mod grpo_stage;
pub mod input;
pub mod models;
pub mod predict;
pub mod project;
pub mod record;
pub mod reports;
pub mod review;
pub mod run_stage;
pub mod scan;
pub mod split_stage;
pub mod suites;
pub mod tokens;
pub mod why;

/// The number of threads candle's kernels use when `RAYON_NUM_THREADS` is unset (physical cores).
/// The binary sets `RAYON_NUM_THREADS` to it once: candle otherwise recounts on every matmul.
pub fn default_threads() -> usize {
    hone_neural::default_threads()
}
