//! Train/dev/test splitting: stratified by label, seeded, and grouped so that no `group_by` value and no
//! near-duplicate cluster spans two splits. A frozen test set (pinned ids + content hashes) is kept as is:
//! later data adds records to train/dev only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hone_core::Record;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Part {
    Train,
    Dev,
    Test,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Dev => "dev",
            Part::Test => "test",
        }
    }
}

/// One frozen test record: its id and the hash of its curated content (text + label).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct FrozenRecord {
    pub id: String,
    pub content_hash: String,
}

/// The hash of a record's curated content, pinned for frozen test records.
pub fn content_hash(r: &Record) -> String {
    hone_core::hash::KeyHasher::new()
        .part("text", r.text.as_bytes())
        .part("label", r.label.as_deref().unwrap_or("").as_bytes())
        .finish()
}

/// The identity of a frozen test set: hash of its sorted (id, content hash) list.
pub fn frozen_hash(frozen: &[FrozenRecord]) -> String {
    let mut sorted = frozen.to_vec();
    sorted.sort();
    let mut h = hone_core::hash::KeyHasher::new();
    for f in &sorted {
        h.part(&f.id, f.content_hash.as_bytes());
    }
    h.finish()
}

/// How to split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    pub test: f64,
    pub dev: f64,
    pub seed: u64,
    /// A record field (`group`, `topic`, `source`) or a `meta` column whose records stay together.
    pub group_by: Option<String>,
    /// Sources whose records are the test set (`role = "test"`).
    pub test_sources: BTreeSet<String>,
    /// Stratify by label (classification). Generation targets are free text: one stratum.
    #[serde(default = "yes")]
    pub stratify: bool,
}

fn yes() -> bool {
    true
}

/// The stratum and count key of a record: its label, or `all` when not stratifying.
fn stratum<'a>(spec: &SplitSpec, r: &'a Record) -> &'a str {
    if spec.stratify {
        r.label.as_deref().unwrap_or("")
    } else {
        "all"
    }
}

/// Why a frozen test set cannot be kept as it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenDrift {
    pub id: String,
    /// `changed` (curated text or label differs) or `missing` (no longer in the dataset).
    pub kind: String,
}

/// The result of splitting.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SplitResult {
    /// Part per record id.
    pub assignment: BTreeMap<String, Part>,
    /// The frozen test set this split uses (new or carried over).
    pub frozen: Vec<FrozenRecord>,
    /// Frozen records whose content changed or that disappeared (the caller stops until `--refreeze`).
    pub drift: Vec<FrozenDrift>,
    pub warnings: Vec<String>,
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
}

/// Find set with path halving.
fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn group_value(r: &Record, field: &str) -> Option<String> {
    match field {
        "group" => r.group.clone(),
        "topic" => r.topic.clone(),
        "source" => Some(r.source.clone()),
        other => serde_json::from_str::<serde_json::Value>(&r.meta)
            .ok()
            .and_then(|m| {
                m.get(other)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), String::from))
            }),
    }
}

fn mix(seed: u64, s: &str) -> u64 {
    let h = blake3::hash(format!("{seed}:{s}").as_bytes());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap_or([0; 8]))
}

/// Split `records`. `frozen` is the current frozen test set, if any (then the test part is exactly the
/// frozen records still present, and only train/dev are drawn for the rest).
pub fn split(records: &[Record], spec: &SplitSpec, frozen: Option<&[FrozenRecord]>) -> SplitResult {
    let n = records.len();
    let mut out = SplitResult::default();
    // Units: records joined by near-duplicate cluster and by group value.
    let mut parent: Vec<usize> = (0..n).collect();
    let mut first_of: HashMap<String, usize> = HashMap::new();
    for (i, r) in records.iter().enumerate() {
        let mut keys = Vec::new();
        if let Some(c) = &r.cluster {
            keys.push(format!("c:{c}"));
        }
        if let Some(g) = spec.group_by.as_deref().and_then(|f| group_value(r, f)) {
            keys.push(format!("g:{g}"));
        }
        for k in keys {
            match first_of.get(&k) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
                None => {
                    first_of.insert(k, i);
                }
            }
        }
    }
    let mut units: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..n {
        let root = find(&mut parent, i);
        units.entry(root).or_default().push(i);
    }
    let by_id: HashMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();

    // The test part: frozen records, else test-role sources, else drawn below.
    let mut fixed_test: BTreeSet<usize> = BTreeSet::new();
    if let Some(frozen) = frozen {
        for f in frozen {
            match by_id.get(f.id.as_str()) {
                Some(&i) if content_hash(&records[i]) == f.content_hash => {
                    fixed_test.insert(i);
                }
                Some(_) => out.drift.push(FrozenDrift {
                    id: f.id.clone(),
                    kind: "changed".into(),
                }),
                None => out.drift.push(FrozenDrift {
                    id: f.id.clone(),
                    kind: "missing".into(),
                }),
            }
        }
    } else {
        fixed_test.extend(
            records
                .iter()
                .enumerate()
                .filter(|(_, r)| spec.test_sources.contains(&r.source))
                .map(|(i, _)| i),
        );
    }
    let draw_test = frozen.is_none() && fixed_test.is_empty();

    // Stratify: units are grouped under their majority label, shuffled by seed, and dealt to parts until
    // each part's share of that label is reached.
    let mut by_label: BTreeMap<String, Vec<(u64, Vec<usize>)>> = BTreeMap::new();
    for (root, members) in units {
        let free: Vec<usize> = members
            .iter()
            .copied()
            .filter(|i| !fixed_test.contains(i))
            .collect();
        if free.is_empty() {
            continue;
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for &i in &free {
            *counts.entry(stratum(spec, &records[i])).or_default() += 1;
        }
        let label = counts
            .iter()
            .max_by_key(|(l, c)| (**c, std::cmp::Reverse(*l)))
            .map(|(l, _)| l.to_string())
            .unwrap_or_default();
        by_label
            .entry(label)
            .or_default()
            .push((mix(spec.seed, &records[root].id), free));
    }
    let mut assign = vec![Part::Train; n];
    for &i in &fixed_test {
        assign[i] = Part::Test;
    }
    let (test_frac, dev_frac) = if draw_test {
        (spec.test, spec.dev)
    } else {
        (0.0, spec.dev / (1.0 - spec.test).max(1e-9))
    };
    for (label, mut list) in by_label {
        list.sort();
        let total: usize = list.iter().map(|(_, m)| m.len()).sum();
        let want_test = (test_frac * total as f64).round() as usize;
        let want_dev = (dev_frac * total as f64).round() as usize;
        if total < 3 && (test_frac > 0.0 || dev_frac > 0.0) {
            out.warnings.push(if spec.stratify {
                format!("label `{label}` has only {total} record(s) (in groups); too few to split, all kept in train")
            } else {
                format!("only {total} record(s) (in groups); too few to split, all kept in train")
            });
            continue;
        }
        let (mut n_test, mut n_dev) = (0usize, 0usize);
        for (_, members) in list {
            let part = if n_test < want_test.max(usize::from(test_frac > 0.0)) {
                n_test += members.len();
                Part::Test
            } else if n_dev < want_dev.max(usize::from(dev_frac > 0.0)) {
                n_dev += members.len();
                Part::Dev
            } else {
                Part::Train
            };
            for i in members {
                assign[i] = part;
            }
        }
    }
    for (i, r) in records.iter().enumerate() {
        out.assignment.insert(r.id.clone(), assign[i]);
        *out.counts
            .entry(assign[i].as_str().to_string())
            .or_default()
            .entry(stratum(spec, r).to_string())
            .or_default() += 1;
    }
    out.frozen = match frozen {
        Some(f) => f
            .iter()
            .filter(|f| out.drift.iter().all(|d| d.id != f.id))
            .cloned()
            .collect(),
        None => records
            .iter()
            .enumerate()
            .filter(|(i, _)| assign[*i] == Part::Test)
            .map(|(_, r)| FrozenRecord {
                id: r.id.clone(),
                content_hash: content_hash(r),
            })
            .collect(),
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: usize, label: &str) -> Record {
        Record {
            id: format!("r{id}"),
            text: format!("text {id}"),
            label: Some(label.into()),
            source: "s".into(),
            meta: "{}".into(),
            ..Default::default()
        }
    }

    fn spec() -> SplitSpec {
        SplitSpec {
            test: 0.2,
            dev: 0.1,
            seed: 7,
            group_by: Some("group".into()),
            test_sources: BTreeSet::new(),
            stratify: true,
        }
    }

    #[test]
    fn stratified_seeded_and_grouped() {
        let mut recs: Vec<Record> = (0..300).map(|i| rec(i, ["a", "b", "c"][i % 3])).collect();
        for (i, r) in recs.iter_mut().enumerate() {
            r.group = Some(format!("cust{}", i / 4));
            if i % 10 == 0 {
                r.cluster = Some(format!("r{}", i + 1));
            }
        }
        let s = split(&recs, &spec(), None);
        for label in ["a", "b", "c"] {
            let t = s.counts["test"][label];
            assert!((15..=25).contains(&t), "label {label}: {t} in test");
        }
        let mut part_of_group: HashMap<String, Part> = HashMap::new();
        for r in &recs {
            let p = s.assignment[&r.id];
            assert_eq!(
                *part_of_group.entry(r.group.clone().unwrap()).or_insert(p),
                p,
                "a group spans two parts"
            );
        }
        assert_eq!(
            split(&recs, &spec(), None).assignment,
            s.assignment,
            "seeded"
        );
        let other = split(&recs, &SplitSpec { seed: 8, ..spec() }, None);
        assert_ne!(other.assignment, s.assignment);
        assert_eq!(
            s.frozen.len() as u64,
            s.counts["test"].values().sum::<u64>()
        );
    }

    #[test]
    fn frozen_test_is_kept_and_drift_reported() {
        let recs: Vec<Record> = (0..100).map(|i| rec(i, ["a", "b"][i % 2])).collect();
        let first = split(&recs, &spec(), None);
        let mut more: Vec<Record> = recs.clone();
        more.extend((100..200).map(|i| rec(i, ["a", "b"][i % 2])));
        let second = split(&more, &spec(), Some(&first.frozen));
        assert!(second.drift.is_empty());
        for f in &first.frozen {
            assert_eq!(second.assignment[&f.id], Part::Test);
        }
        assert!(
            (100..200).all(|i| second.assignment[&format!("r{i}")] != Part::Test),
            "new records never join a frozen test set"
        );
        let mut changed = more.clone();
        let victim = first.frozen[0].id.clone();
        changed
            .iter_mut()
            .find(|r| r.id == victim)
            .unwrap()
            .text
            .push_str(" edited");
        let third = split(&changed, &spec(), Some(&first.frozen));
        assert_eq!(
            third.drift,
            vec![FrozenDrift {
                id: victim,
                kind: "changed".into()
            }]
        );
    }

    #[test]
    fn test_role_sources_are_the_test_set_and_tiny_classes_warn() {
        let mut recs: Vec<Record> = (0..50).map(|i| rec(i, "a")).collect();
        for r in recs.iter_mut().take(10) {
            r.source = "official-test".into();
        }
        recs.push(rec(99, "rare"));
        let s = split(
            &recs,
            &SplitSpec {
                test_sources: ["official-test".to_string()].into(),
                ..spec()
            },
            None,
        );
        assert_eq!(s.frozen.len(), 10);
        assert!(
            recs.iter()
                .take(10)
                .all(|r| s.assignment[&r.id] == Part::Test)
        );
        assert!(s.warnings.iter().any(|w| w.contains("`rare`")));
        assert_eq!(s.assignment["r99"], Part::Train);
    }
}
