//! Fuzz the CSV reader: any bytes give records, quarantined rows or a header error (never a panic).
#![no_main]

use hone_core::config::{BadRecordPolicy, SourceConfig, TaskKind};
use hone_data::readers::{ReadOptions, read_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let delimiter = if data.first().is_some_and(|b| b % 2 == 0) { "," } else { ";" };
    let src: SourceConfig = toml::from_str(&format!("name = \"f\"\npath = \"f.csv\"\ndelimiter = \"{delimiter}\"")).unwrap();
    let mask = |s: &str| s.to_string();
    let opts = ReadOptions { kind: TaskKind::Classify, on_bad_record: BadRecordPolicy::Quarantine, mask: &mask };
    if let Ok(out) = read_bytes(data, &src, &opts) {
        assert_eq!(out.records.len() + out.quarantined.len(), out.n_rows as usize);
    }
});
