//! hone-model: hone's built-in text classifiers — the hashed n-gram linear model ([`NgramModel`]) and the
//! majority-class baseline ([`MajorityModel`]) — with evaluation helpers shared by the benchmarks.
//!
//! The library never prints and never panics on user input: invalid arguments and unreadable model files
//! come back as [`hone_core::Error`].

mod features;
mod majority;
pub mod metrics;
mod ngram;
mod store;

pub use majority::MajorityModel;
pub use ngram::{EpochStats, NgramConfig, NgramModel, TrainReport};
