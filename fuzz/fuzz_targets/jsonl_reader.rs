//! Fuzz the JSONL reader: any bytes give records or quarantined rows (never a panic), and every row is
//! accounted for.
#![no_main]

use hone_core::config::{BadRecordPolicy, SourceConfig, TaskKind};
use hone_data::readers::{ReadOptions, read_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let src: SourceConfig = toml::from_str("name = \"f\"\npath = \"f.jsonl\"\nfields = { date = \"date\", consent = \"consent\", tags = \"tags\" }").unwrap();
    let mask = |s: &str| s.to_string();
    let opts = ReadOptions { kind: TaskKind::Classify, on_bad_record: BadRecordPolicy::Quarantine, mask: &mask };
    let out = read_bytes(data, &src, &opts).expect("quarantine policy never fails on content");
    assert_eq!(out.records.len() + out.quarantined.len(), out.n_rows as usize);
});
