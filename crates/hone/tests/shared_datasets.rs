//! Curation on the real public datasets in ../shared (skipped when absent, required under CI=true):
//! SMS Spam's 403 exact duplicates and HTML entities, TREC's 71 duplicate questions.

mod common;

use std::path::Path;

use hone_core::config::{BadRecordPolicy, SourceConfig, TaskKind};
use hone_data::passes::{ExactDuplicates, Normalise, Pass};
use hone_data::readers::{ReadOptions, read_source};

fn read(path: &Path) -> Vec<hone_core::Record> {
    let src: SourceConfig = toml::from_str(&format!(
        "name = \"s\"\npath = {:?}\n",
        path.display().to_string()
    ))
    .unwrap();
    let identity = |s: &str| s.to_string();
    let out = read_source(
        Path::new("/"),
        &src,
        &ReadOptions {
            kind: TaskKind::Classify,
            on_bad_record: BadRecordPolicy::Quarantine,
            mask: &identity,
        },
    )
    .unwrap();
    assert!(out.quarantined.is_empty(), "{:?}", out.quarantined.first());
    out.records
}

fn normalise() -> Normalise {
    Normalise {
        mask: std::sync::Arc::new(|s: &str| s.to_string()),
        keep_newlines: false,
        normalise_target: false,
    }
}

#[test]
fn sms_spam_duplicates_and_html_entities() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let records = read(&shared.join("datasets/sms_spam/all.jsonl"));
    assert_eq!(records.len(), 5574);
    let with_entities = records
        .iter()
        .filter(|r| {
            regex::Regex::new(r"&(amp|lt|gt);")
                .unwrap()
                .is_match(&r.text)
        })
        .count();
    let raw_dups = ExactDuplicates.run(records.clone()).unwrap().lineage.len();
    assert_eq!(raw_dups, 403, "SOURCE.md: 403 rows repeat an earlier text");
    let normalised = normalise().run(records).unwrap();
    assert_eq!(
        normalised.stats.get("html_entities").copied().unwrap_or(0) as usize,
        with_entities,
        "every text with an entity is decoded"
    );
    assert!(
        normalised
            .kept
            .iter()
            .all(|r| !r.text.contains("&lt;") && !r.text.contains("&amp;"))
    );
    let norm_dups = ExactDuplicates.run(normalised.kept).unwrap().lineage.len();
    eprintln!(
        "sms_spam: {raw_dups} exact duplicates on raw text, {norm_dups} after normalising; {with_entities} texts with HTML entities"
    );
    assert!(norm_dups > raw_dups);
}

#[test]
fn trec_duplicates() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let records = read(&shared.join("datasets/trec/train.jsonl"));
    assert_eq!(records.len(), 5452);
    let dups = ExactDuplicates.run(records.clone()).unwrap().lineage.len();
    assert_eq!(dups, 71, "SOURCE.md: 71 exact duplicates in train");
    let norm_dups = ExactDuplicates
        .run(normalise().run(records).unwrap().kept)
        .unwrap()
        .lineage
        .len();
    eprintln!("trec: {dups} exact duplicates on raw text, {norm_dups} after normalising");
}
