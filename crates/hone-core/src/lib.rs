//! hone-core: the shared vocabulary of hone — records, lineage entries, the `hone.toml` schema, ids and
//! hashing, the decision rules (how probabilities become answers, which model is chosen), the seeded
//! generator, and typed errors. No I/O beyond reading the config file.

pub mod config;
pub mod decide;
pub mod error;
pub mod hash;
pub mod record;
pub mod rng;

pub use config::Config;
pub use error::{Error, Result};
pub use record::{Action, LineageEntry, Quarantined, Record};

/// hone's version; part of every cache key and run identity.
pub const HONE_VERSION: &str = env!("CARGO_PKG_VERSION");
