//! The split stage: split a dataset version into train/dev/test with the frozen test set, run the
//! contamination check against the test set and every suite, and record the split (cached by hash).

use std::collections::BTreeMap;

use hone_core::config::{ContaminationPolicy, SourceRole};
use hone_core::hash::KeyHasher;
use hone_core::{Error, Record, Result};
use hone_data::contamination::{ContaminationConfig, ContaminationPair, Item, check};
use hone_data::split::{FrozenRecord, Part, SplitSpec, frozen_hash, split};
use hone_store::{SplitDrop, SplitRow, Store, VersionRow};

use crate::project::{Project, who};
use crate::suites::SuiteCase;

/// A split ready for training.
/// What a split stores as its summary (the `splits.summary` column).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplitSummary {
    /// Records per part (`train`, `dev`, `test`).
    pub counts: BTreeMap<String, u64>,
    /// Records per part and label.
    #[serde(default)]
    pub by_label: BTreeMap<String, BTreeMap<String, u64>>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub contamination: Vec<ContaminationPair>,
    /// Training records the contamination remedy removed.
    #[serde(default)]
    pub dropped_train: usize,
    pub spec: SplitSpec,
}

impl SplitSummary {
    pub fn count(&self, part: &str) -> u64 {
        self.counts.get(part).copied().unwrap_or(0)
    }
}

pub struct SplitOutcome {
    pub row: SplitRow,
    pub summary: SplitSummary,
    pub assignment: BTreeMap<String, Part>,
    /// Contaminated pairs found (empty when clean; with `drop_train` they were removed from train/dev).
    pub contamination: Vec<ContaminationPair>,
    pub warnings: Vec<String>,
    pub cached: bool,
    /// A new frozen test set was pinned by this call.
    pub froze: bool,
}

/// The ids in the frozen test set (none frozen yet: empty).
pub fn frozen_ids(store: &Store) -> Result<std::collections::HashSet<String>> {
    Ok(match store.frozen_test()? {
        Some(f) => serde_json::from_value::<Vec<FrozenRecord>>(f.records)
            .map_err(|e| Error::Store(format!("frozen test set is unreadable: {e}")))?
            .into_iter()
            .map(|r| r.id)
            .collect(),
        None => Default::default(),
    })
}

impl SplitOutcome {
    /// One line for the terminal: the split, its part sizes and the frozen test set it uses.
    pub fn summary_line(&self) -> String {
        let c = &self.summary;
        format!(
            "split {}{}: train {}, dev {}, test {} (frozen test set #{}{})",
            hone_core::hash::short(&self.row.id),
            if self.cached { " (cached)" } else { "" },
            c.count("train"),
            c.count("dev"),
            c.count("test"),
            self.row.frozen_seq,
            if self.froze { ", newly pinned" } else { "" }
        )
    }
}

/// Labels that are one class written several ways (`Spam`/`SPAM`/`spam`, `1`/`true`/`yes`) become
/// separate classes; say so, since nothing else will.
fn label_spelling_warnings(records: &[Record]) -> Vec<String> {
    let mut by_key: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for l in records.iter().filter_map(|r| r.label.as_deref()) {
        let lower = l.trim().to_lowercase();
        let key = match lower.as_str() {
            "1" | "1.0" | "true" | "yes" | "y" => "(true)".to_string(),
            "0" | "0.0" | "false" | "no" | "n" => "(false)".to_string(),
            _ => lower,
        };
        by_key.entry(key).or_default().insert(l);
    }
    by_key
        .values()
        .filter(|spellings| spellings.len() > 1)
        .map(|spellings| {
            let names: Vec<String> = spellings.iter().map(|l| format!("`{l}`")).collect();
            format!(
                "labels {} look like one class written {} ways; they are trained as separate classes (map them to one label in the source, or relabel with `hone review --from`)",
                names.join(", "),
                names.len()
            )
        })
        .collect()
}

/// A label needs this many train/dev records before its absence from the test set is worth a warning:
/// fewer, and a stratified (or grouped) split may rightly keep them all in training.
const MIN_RECORDS_FOR_A_TEST_EXAMPLE: usize = 10;

/// Whether a split can support evaluation, checked before a test set is frozen so that a run that
/// cannot evaluate never pins one: two labels to train on and a non-empty test set, else an error. A
/// label with training records but none in the test set is an error only when the test set was frozen
/// earlier and a fresh split would now give that label test examples (`fresh_test_labels`): then the
/// frozen set predates the label, and a refreeze is the remedy. Otherwise it is a warning (returned).
fn supports_evaluation(
    records: &[Record],
    assignment: &BTreeMap<String, Part>,
    frozen_earlier: bool,
    fresh_test_labels: impl FnOnce() -> std::collections::BTreeSet<String>,
) -> Result<Vec<String>> {
    let mut train: BTreeMap<&str, usize> = BTreeMap::new();
    let mut test: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        let Some(label) = r.label.as_deref() else {
            continue;
        };
        match assignment.get(&r.id) {
            Some(Part::Test) => *test.entry(label).or_default() += 1,
            Some(_) => *train.entry(label).or_default() += 1,
            None => {}
        }
    }
    let refreeze = "the frozen test set was pinned from earlier data; after fixing the data, pin a new one with `hone split --refreeze --reason \"...\"` (audited)";
    if train.len() < 2 {
        return Err(Error::Data {
            message: format!(
                "training needs at least two labels in train/dev; found {}",
                train.len()
            ),
            hint: if frozen_earlier {
                refreeze.into()
            } else {
                "add examples of another label to the sources (no test set was frozen)".into()
            },
        });
    }
    if test.is_empty() {
        return Err(Error::Data {
            message: format!(
                "the test split is empty ({} labelled records in train/dev)",
                train.values().sum::<usize>()
            ),
            hint: if frozen_earlier {
                refreeze.into()
            } else {
                "add data (a few dozen records per label), set [split] test > 0, or declare a role = \"test\" source; no test set was frozen"
                    .into()
            },
        });
    }
    let missing: Vec<(&str, usize)> = train
        .iter()
        .filter(|(l, _)| !test.contains_key(*l))
        .map(|(l, n)| (*l, *n))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let named = |ls: &[(&str, usize)]| {
        ls.iter()
            .map(|(l, n)| format!("`{l}` ({n} in train/dev)"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if frozen_earlier {
        let fresh = fresh_test_labels();
        let fixable: Vec<(&str, usize)> = missing
            .iter()
            .filter(|(l, _)| fresh.contains(*l))
            .copied()
            .collect();
        if !fixable.is_empty() {
            return Err(Error::Data {
                message: format!(
                    "the frozen test set has no example of {}, though a new split would: its metrics would say nothing about {}",
                    named(&fixable),
                    if fixable.len() == 1 { "it" } else { "them" }
                ),
                hint: "pin a new test set with `hone split --refreeze --reason \"...\"` (audited)"
                    .into(),
            });
        }
    }
    let worth: Vec<(&str, usize)> = missing
        .into_iter()
        .filter(|(_, n)| *n >= MIN_RECORDS_FOR_A_TEST_EXAMPLE)
        .collect();
    Ok(if worth.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "the test set has no example of {}: test metrics say nothing about {}",
            named(&worth),
            if worth.len() == 1 { "it" } else { "them" }
        )]
    })
}

/// `refreeze`: `Some(reason)` pins a new frozen test set from this version.
pub fn run(
    project: &Project,
    store: &mut Store,
    version: &VersionRow,
    records: &[Record],
    suites: &[SuiteCase],
    refreeze: Option<&str>,
    command: &str,
) -> Result<SplitOutcome> {
    // A first split that lost the race to freeze (another command froze a test set meanwhile) splits
    // again, against that set.
    for _ in 0..2 {
        if let Some(out) = run_once(project, store, version, records, suites, refreeze, command)? {
            return Ok(out);
        }
    }
    Err(Error::Usage(
        "other hone commands keep freezing test sets in this project; run this command again"
            .into(),
    ))
}

fn run_once(
    project: &Project,
    store: &mut Store,
    version: &VersionRow,
    records: &[Record],
    suites: &[SuiteCase],
    refreeze: Option<&str>,
    command: &str,
) -> Result<Option<SplitOutcome>> {
    let c = &project.config;
    let generate = c.task.kind == hone_core::config::TaskKind::Generate;
    let spec = SplitSpec {
        stratify: !generate,
        test: c.split.test,
        dev: c.split.dev,
        seed: c.split.seed,
        group_by: c.split.group_by.clone(),
        test_sources: c
            .sources
            .iter()
            .filter(|s| s.role == SourceRole::Test)
            .map(|s| s.name.clone())
            .collect(),
    };
    let current = store.frozen_test()?;
    let frozen: Option<Vec<FrozenRecord>> = match (&current, refreeze) {
        (Some(f), None) => Some(
            serde_json::from_value(f.records.clone())
                .map_err(|e| Error::Store(format!("frozen test set is unreadable: {e}")))?,
        ),
        _ => None,
    };
    let mut result = split(records, &spec, frozen.as_deref());
    if !generate {
        result.warnings.extend(label_spelling_warnings(records));
    }
    if !result.drift.is_empty() {
        let shown: Vec<String> = result
            .drift
            .iter()
            .take(10)
            .map(|d| format!("{} ({})", d.id, d.kind))
            .collect();
        let changed = result.drift.iter().filter(|d| d.kind == "changed").count();
        return Err(Error::FrozenTestChanged {
            changed,
            vanished: result.drift.len() - changed,
            detail: format!(
                "{} frozen test record(s) changed or disappeared in dataset version {}: {}{}",
                result.drift.len(),
                hone_core::hash::short(&version.id),
                shown.join(", "),
                if result.drift.len() > 10 { ", …" } else { "" }
            ),
            hint: "the test set is frozen; restore the records, or if the change is intended run `hone split --refreeze --reason \"...\"` (audited)".into(),
        });
    }
    let lacking = if generate {
        Vec::new()
    } else {
        supports_evaluation(
            records,
            &result.assignment,
            current.is_some() && refreeze.is_none(),
            || {
                let fresh = split(records, &spec, None);
                records
                    .iter()
                    .filter(|r| fresh.assignment.get(&r.id) == Some(&Part::Test))
                    .filter_map(|r| r.label.clone())
                    .collect()
            },
        )?
    };
    result.warnings.extend(lacking);
    let (frozen_seq, froze) = match (&current, refreeze) {
        (Some(f), None) => (f.seq, false),
        _ => {
            let records =
                serde_json::to_value(&result.frozen).map_err(|e| Error::Internal(e.to_string()))?;
            let reason = crate::input::free_text(refreeze.unwrap_or("first split"));
            match store.freeze_test(
                current.as_ref().map(|f| f.seq),
                &frozen_hash(&result.frozen),
                &records,
                &reason,
                &who(),
                command,
            )? {
                Some(seq) => (seq, true),
                None if refreeze.is_none() => return Ok(None),
                None => {
                    return Err(Error::Usage(
                        "another hone command froze a test set while this one was refreezing; run it again".into(),
                    ));
                }
            }
        }
    };
    let p = &c.policy;
    let cfg = ContaminationConfig {
        ngram: p.contamination_ngram,
        ngram_share: p.contamination_ngram_share,
        edit_share: p.contamination_edit_share,
    };
    let suites_hash = {
        let mut h = KeyHasher::new();
        for s in suites {
            h.part(&s.id, s.text.as_bytes());
        }
        h.finish()
    };
    let id = KeyHasher::new()
        .part("version", version.id.as_bytes())
        .part(
            "split",
            serde_json::to_string(&c.split)
                .unwrap_or_default()
                .as_bytes(),
        )
        .part("frozen", frozen_seq.to_le_bytes().as_slice())
        .part(
            "contamination",
            format!(
                "{:?} {} {} {} v{}",
                p.contamination,
                p.contamination_ngram,
                p.contamination_ngram_share,
                p.contamination_edit_share,
                hone_data::contamination::LEAK_RULES_VERSION
            )
            .as_bytes(),
        )
        .part("suites", suites_hash.as_bytes())
        .part("hone", hone_core::HONE_VERSION.as_bytes())
        .finish();
    if let Some(row) = store.split(&id)? {
        let assignment = read_assignment(store, &row)?;
        let summary: SplitSummary = serde_json::from_value(row.summary.clone())
            .map_err(|e| Error::Store(format!("split {} summary unreadable: {e}", row.id)))?;
        return Ok(Some(SplitOutcome {
            row,
            assignment,
            contamination: summary.contamination.clone(),
            warnings: summary.warnings.clone(),
            summary,
            cached: true,
            froze,
        }));
    }
    let mut assignment = result.assignment;
    // Generation examples leak when prompt and target together nearly match a training example.
    let content: Vec<String> = if generate {
        records.iter().map(Record::prompt_and_target).collect()
    } else {
        Vec::new()
    };
    let text_of = |i: usize| -> &str {
        if generate {
            &content[i]
        } else {
            &records[i].text
        }
    };
    let items = |test: bool, whole: bool| -> Vec<Item> {
        records
            .iter()
            .enumerate()
            .filter(|(_, r)| (assignment.get(&r.id) == Some(&Part::Test)) == test)
            .map(|(i, r)| Item {
                id: &r.id,
                text: if whole { text_of(i) } else { &r.text },
            })
            .collect()
    };
    let mut test_items = items(true, true);
    test_items.extend(suites.iter().map(|s| Item {
        id: &s.id,
        text: &s.text,
    }));
    let train_items = items(false, true);
    let pairs = check(&test_items, &train_items, &cfg);
    if generate {
        // Templated prompts: the same prompt with another target is reported, not a leak.
        let leaked: std::collections::BTreeSet<&str> =
            pairs.iter().map(|q| q.test_id.as_str()).collect();
        let templated: std::collections::BTreeSet<String> =
            check(&items(true, false), &items(false, false), &cfg)
                .into_iter()
                .filter(|q| !leaked.contains(q.test_id.as_str()))
                .map(|q| q.test_id)
                .collect();
        if !templated.is_empty() {
            let shown: Vec<&str> = templated.iter().take(5).map(String::as_str).collect();
            result.warnings.push(format!(
                "{} test prompt(s) nearly match a training prompt with a different target (templated prompts; not leaks): {}{}",
                templated.len(),
                shown.join(", "),
                if templated.len() > 5 { ", …" } else { "" }
            ));
        }
    }
    let mut removed = Vec::new();
    if !pairs.is_empty() {
        match p.contamination {
            ContaminationPolicy::Fail => {
                let report = pairs
                    .iter()
                    .take(25)
                    .map(|q| {
                        format!(
                            "  test {} ~ train {}: {} (similarity {:.2})",
                            q.test_id, q.train_id, q.kind, q.similarity
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                let more = if pairs.len() > 25 {
                    format!("\n  … and {} more", pairs.len() - 25)
                } else {
                    String::new()
                };
                return Err(Error::Contamination {
                    pairs: pairs.len(),
                    report: report + &more,
                    all: pairs.clone(),
                    hint: "remove the leaked records from the training sources, or set [policy] contamination = \"drop_train\" to drop them from training (recorded; the test set is never edited)".into(),
                });
            }
            ContaminationPolicy::DropTrain => {
                let mut seen = std::collections::BTreeSet::new();
                for q in &pairs {
                    if seen.insert(q.train_id.clone()) {
                        assignment.remove(&q.train_id);
                        removed.push(SplitDrop {
                            split: id.clone(),
                            record_id: q.train_id.clone(),
                            rule: format!("contamination_{}", q.kind),
                            reason: format!("{} of test record {} (similarity {:.2}); dropped from training by [policy] contamination = \"drop_train\"", q.kind.replace('_', " "), q.test_id, q.similarity),
                            related_id: Some(q.test_id.clone()),
                        });
                    }
                }
            }
        }
    }
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for p in assignment.values() {
        *counts.entry(p.as_str().to_string()).or_default() += 1;
    }
    let assignment_obj = store.put_object(
        &serde_json::to_vec(&assignment).map_err(|e| Error::Internal(e.to_string()))?,
        "split",
    )?;
    let row = SplitRow {
        id: id.clone(),
        version: version.id.clone(),
        created_at: chrono::Utc::now().to_rfc3339(),
        frozen_seq,
        assignment: assignment_obj,
        summary: serde_json::Value::Null,
    };
    let summary = SplitSummary {
        counts,
        by_label: result.counts,
        warnings: result.warnings.clone(),
        contamination: pairs.clone(),
        dropped_train: removed.len(),
        spec: spec.clone(),
    };
    let row = SplitRow {
        summary: serde_json::to_value(&summary).map_err(|e| Error::Internal(e.to_string()))?,
        ..row
    };
    store.put_split(&row, &removed)?;
    Ok(Some(SplitOutcome {
        row,
        summary,
        assignment,
        contamination: pairs,
        warnings: result.warnings,
        cached: false,
        froze,
    }))
}

/// A stored split's record ids and the part each is in.
fn read_assignment(store: &Store, row: &SplitRow) -> Result<BTreeMap<String, Part>> {
    serde_json::from_slice(&store.get_object(&row.assignment)?)
        .map_err(|e| Error::Store(format!("split {} assignment unreadable: {e}", row.id)))
}

/// The stored summary of the split `id` (counts, leak pairs, the remedy).
pub fn summary(store: &Store, id: &str) -> Result<SplitSummary> {
    let row = store
        .split(id)?
        .ok_or_else(|| Error::Store(format!("split {id} is missing from the store")))?;
    serde_json::from_value(row.summary.clone())
        .map_err(|e| Error::Store(format!("split {} summary unreadable: {e}", row.id)))
}

/// The assignment of the split `id` (a run's `split`): every record id and its part.
pub fn assignment(store: &Store, id: &str) -> Result<BTreeMap<String, Part>> {
    let row = store
        .split(id)?
        .ok_or_else(|| Error::Store(format!("split {id} is missing from the store")))?;
    read_assignment(store, &row)
}
