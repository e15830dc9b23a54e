//! The seeded generator of the training path (dropout masks, random initialisation, shuffles): hone-core's
//! [`SeededRng`](hone_core::rng::SeededRng), re-exported so `hone_neural::SeededRng` keeps working.

pub use hone_core::rng::SeededRng;
