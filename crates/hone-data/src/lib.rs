//! hone-data: reading sources into records, curation passes with lineage, and dataset (Parquet) encoding.
//! Nothing here knows about the store or the terminal: passes take records and return kept records plus
//! lineage (DESIGN §4).

pub mod contamination;
pub mod dataset;
pub mod near_dup;
pub mod passes;
pub mod pii;
pub mod readers;
pub mod split;
pub mod textdiff;
