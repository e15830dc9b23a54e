//! Exact duplicates and label conflicts. A conflict (the same or a near-duplicate text under different
//! labels) is not a duplicate: it is resolved by policy before duplicates are removed.

use std::collections::{BTreeMap, HashMap};

use hone_core::config::LabelConflictPolicy;
use hone_core::{Action, LineageEntry, Record, Result};

use super::{Pass, PassOutput};

/// Exact duplicates on the normalised text and label: keep the first, drop the rest with `duplicate_of`.
/// Copies under different labels are left to [`LabelConflicts`] (which runs first).
pub struct ExactDuplicates;

impl Pass for ExactDuplicates {
    fn name(&self) -> &'static str {
        "exact_duplicates"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({"key": ["text", "label"]})
    }
    fn run(&self, records: Vec<Record>) -> Result<PassOutput> {
        let mut out = PassOutput::default();
        let mut first: HashMap<(String, Option<String>), String> =
            HashMap::with_capacity(records.len());
        for r in records {
            let key = (r.text.clone(), r.label.clone());
            match first.get(&key) {
                Some(orig) => {
                    let e = LineageEntry::new(
                        &r,
                        self.name(),
                        Action::Drop,
                        "exact_duplicate",
                        format!("same text and label as {orig}"),
                    )
                    .related(orig.clone());
                    out.lineage.push(e);
                }
                None => {
                    first.insert(key, r.id.clone());
                    out.kept.push(r);
                }
            }
        }
        out.stats
            .insert("exact_duplicate".into(), out.lineage.len() as u64);
        Ok(out)
    }
}

/// What happens to one record of a conflicting group: action, rule, reason, related record.
type Verdict = (Action, &'static str, String, Option<String>);

/// Records whose text is the same after normalising (case, punctuation, spacing) but whose labels
/// differ. Not near-duplicate clusters: those join paraphrases ("I need to verify my identity" / "Why do
/// I need to verify my identity?"), which in intent data often carry different labels rightly, and
/// dropping the minority there threw away 178 good BANKING77 training records (see ARCHITECTURE.md).
pub struct LabelConflicts {
    pub policy: LabelConflictPolicy,
}

impl Pass for LabelConflicts {
    fn name(&self) -> &'static str {
        "label_conflicts"
    }
    fn config(&self) -> serde_json::Value {
        serde_json::json!({"label_conflicts": self.policy, "group": "same text after normalising"})
    }
    fn run(&self, records: Vec<Record>) -> Result<PassOutput> {
        let mut out = PassOutput::default();
        let key = |r: &Record| crate::near_dup::tokenize(&r.text).join(" ");
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            groups.entry(key(r)).or_default().push(i);
        }
        let mut verdict: Vec<Option<Verdict>> = vec![None; records.len()];
        let mut n_groups = 0u64;
        for members in groups.values() {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for &i in members {
                *counts
                    .entry(records[i].label.as_deref().unwrap_or(""))
                    .or_default() += 1;
            }
            if counts.len() < 2 {
                continue;
            }
            n_groups += 1;
            let max = *counts.values().max().unwrap_or(&0);
            let leaders: Vec<&str> = counts
                .iter()
                .filter(|(_, c)| **c == max)
                .map(|(l, _)| *l)
                .collect();
            let summary = counts
                .iter()
                .map(|(l, c)| format!("{l}: {c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let first_of = |label: &str| {
                members
                    .iter()
                    .map(|&i| &records[i])
                    .find(|r| r.label.as_deref().unwrap_or("") == label)
                    .map(|r| r.id.clone())
            };
            for &i in members {
                let label = records[i].label.as_deref().unwrap_or("");
                verdict[i] = match self.policy {
                    LabelConflictPolicy::Review => Some((
                        Action::Flag,
                        "label_conflict",
                        format!(
                            "the same text carries different labels ({summary}); flagged for review"
                        ),
                        None,
                    )),
                    LabelConflictPolicy::Drop => Some((
                        Action::Drop,
                        "label_conflict",
                        format!("the same text carries different labels ({summary})"),
                        None,
                    )),
                    LabelConflictPolicy::KeepMajority if leaders.len() > 1 => Some((
                        Action::Drop,
                        "label_conflict_tie",
                        format!("labels tie ({summary}); all copies dropped"),
                        None,
                    )),
                    LabelConflictPolicy::KeepMajority if label == leaders[0] => None,
                    LabelConflictPolicy::KeepMajority => Some((
                        Action::Drop,
                        "label_conflict_minority",
                        format!(
                            "label `{label}` is outvoted by `{}` ({summary})",
                            leaders[0]
                        ),
                        first_of(leaders[0]),
                    )),
                };
            }
        }
        out.stats.insert("conflict_groups".into(), n_groups);
        for (r, v) in records.into_iter().zip(verdict) {
            match v {
                None => out.kept.push(r),
                Some((action, rule, reason, related)) => {
                    let mut e = LineageEntry::new(&r, self.name(), action, rule, reason);
                    e.related_id = related;
                    out.lineage.push(e);
                    if action == Action::Flag {
                        out.kept.push(r);
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, text: &str, label: &str) -> Record {
        Record {
            id: id.into(),
            text: text.into(),
            label: Some(label.into()),
            source: "s".into(),
            meta: "{}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn exact_duplicates_keep_first_and_name_it() {
        let out = ExactDuplicates
            .run(vec![
                rec("1", "a", "x"),
                rec("2", "a", "x"),
                rec("3", "b", "x"),
                rec("4", "a", "y"),
            ])
            .unwrap();
        assert_eq!(
            out.kept.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["1", "3", "4"]
        );
        assert_eq!(out.lineage[0].related_id.as_deref(), Some("1"));
    }

    #[test]
    fn conflicts_keep_majority_drop_ties_and_flag_for_review() {
        let recs = || {
            vec![
                rec("1", "t", "a"),
                rec("2", "t", "a"),
                rec("3", "t", "b"),
                rec("4", "u", "a"),
                rec("5", "u", "b"),
                rec("6", "v", "a"),
            ]
        };
        let out = LabelConflicts {
            policy: LabelConflictPolicy::KeepMajority,
        }
        .run(recs())
        .unwrap();
        assert_eq!(
            out.kept.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            vec!["1", "2", "6"]
        );
        let by_id: BTreeMap<_, _> = out
            .lineage
            .iter()
            .map(|l| (l.record_id.as_str(), l))
            .collect();
        assert_eq!(by_id["3"].rule, "label_conflict_minority");
        assert_eq!(by_id["3"].related_id.as_deref(), Some("1"));
        assert_eq!(by_id["4"].rule, "label_conflict_tie");
        let out = LabelConflicts {
            policy: LabelConflictPolicy::Review,
        }
        .run(recs())
        .unwrap();
        assert_eq!(out.kept.len(), 6);
        assert_eq!(
            out.lineage
                .iter()
                .filter(|l| l.action == Action::Flag)
                .count(),
            5
        );
        let out = LabelConflicts {
            policy: LabelConflictPolicy::Drop,
        }
        .run(recs())
        .unwrap();
        assert_eq!(out.kept.len(), 1);
    }

    #[test]
    fn conflicts_are_the_same_text_not_a_near_duplicate_cluster() {
        let mut a = rec("1", "Where is my refund?", "refund");
        a.cluster = Some("1".into());
        let mut b = rec("2", "where is my refund", "refund");
        b.cluster = Some("1".into());
        let mut c = rec("3", "WHERE IS MY REFUND!!", "card");
        c.cluster = Some("1".into());
        // A paraphrase in the same cluster with another label is another intent, not a conflict.
        let mut d = rec("4", "why is my refund where it is", "card");
        d.cluster = Some("1".into());
        let out = LabelConflicts {
            policy: LabelConflictPolicy::KeepMajority,
        }
        .run(vec![a, b, c, d])
        .unwrap();
        assert_eq!(out.kept.len(), 3);
        assert_eq!(out.lineage.len(), 1);
        assert_eq!(out.lineage[0].record_id, "3");
    }
}
