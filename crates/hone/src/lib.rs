//! The `hone` crate: pipeline stages (curation, with caching by content hash), project discovery and the
//! demo generator, used by the `hone` binary (`main.rs`), which alone talks to the terminal.

pub mod compare;
pub mod curate;
pub mod demo;
pub mod predict;
pub mod project;
pub mod run_stage;
pub mod scan;
pub mod split_stage;
pub mod suites;
