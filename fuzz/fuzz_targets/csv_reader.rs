//! Fuzz the CSV reader: any bytes give records, quarantined rows or a header error (never a panic), and
//! every row is accounted for on a physical line of its own.
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
        // Every row starts on its own physical line after the header, and no two rows share one: a
        // broken quote may not fold rows into each other.
        // Line ends: `\n`, `\r\n`, or a lone `\r`.
        let ends = (0..data.len())
            .filter(|&i| data[i] == b'\n' || (data[i] == b'\r' && data.get(i + 1) != Some(&b'\n')))
            .count();
        let physical = ends as u64 + 1;
        let mut lines: Vec<u64> = out
            .records
            .iter()
            .map(|r| r.line)
            .chain(out.quarantined.iter().map(|q| q.line))
            .collect();
        lines.sort_unstable();
        assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
        assert!(lines.iter().all(|&l| (1..=physical).contains(&l)), "{lines:?} of {physical}");
    }
});
