//! The review pass: applies reviewers' decisions (from `hone review` or a decisions file) to the records
//! they name — `drop` removes, `relabel` changes the label, `accept` keeps as is — each with a lineage
//! entry naming the reviewer.

use std::collections::BTreeMap;

use hone_core::{Action, LineageEntry, Record, Result};
use serde::{Deserialize, Serialize};

use super::{Pass, PassOutput};

/// One reviewer decision about one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewDecision {
    /// `accept`, `relabel` or `drop`.
    pub decision: String,
    pub label: Option<String>,
    pub reviewer: String,
    pub note: String,
}

pub struct Review {
    /// The latest decision per record id.
    pub decisions: BTreeMap<String, ReviewDecision>,
}

impl Pass for Review {
    fn name(&self) -> &'static str {
        "review"
    }
    fn config(&self) -> serde_json::Value {
        let counts = self
            .decisions
            .values()
            .fold(BTreeMap::<&str, u64>::new(), |mut m, d| {
                *m.entry(d.decision.as_str()).or_default() += 1;
                m
            });
        serde_json::json!({"decisions": counts})
    }
    fn run(&self, records: Vec<Record>) -> Result<PassOutput> {
        let mut out = PassOutput::default();
        for mut r in records {
            let Some(d) = self.decisions.get(&r.id) else {
                out.kept.push(r);
                continue;
            };
            let note = if d.note.is_empty() {
                String::new()
            } else {
                format!(": {}", d.note)
            };
            match (d.decision.as_str(), &d.label) {
                ("drop", _) => out.keep_or_drop(
                    r,
                    self.name(),
                    Some((
                        "review_drop",
                        format!("dropped by reviewer {}{note}", d.reviewer),
                    )),
                ),
                ("relabel", Some(new)) if r.label.as_deref() != Some(new.as_str()) => {
                    let old = r.label.clone().unwrap_or_default();
                    let e = LineageEntry::new(
                        &r,
                        self.name(),
                        Action::Change,
                        "review_relabel",
                        format!("label `{old}` → `{new}` by reviewer {}{note}", d.reviewer),
                    );
                    out.lineage.push(e);
                    *out.stats.entry("review_relabel".into()).or_default() += 1;
                    r.label = Some(new.clone());
                    out.kept.push(r);
                }
                _ => {
                    *out.stats.entry("review_accept".into()).or_default() +=
                        u64::from(d.decision == "accept");
                    out.kept.push(r);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, label: &str) -> Record {
        Record {
            id: id.into(),
            text: "t".into(),
            label: Some(label.into()),
            source: "s".into(),
            meta: "{}".into(),
            ..Default::default()
        }
    }

    #[test]
    fn applies_drop_relabel_and_accept_with_the_reviewer_named() {
        let d = |decision: &str, label: Option<&str>| ReviewDecision {
            decision: decision.into(),
            label: label.map(String::from),
            reviewer: "ana".into(),
            note: "checked".into(),
        };
        let review = Review {
            decisions: BTreeMap::from([
                ("a".to_string(), d("drop", None)),
                ("b".to_string(), d("relabel", Some("y"))),
                ("c".to_string(), d("accept", None)),
            ]),
        };
        let out = review
            .run(vec![
                rec("a", "x"),
                rec("b", "x"),
                rec("c", "x"),
                rec("d", "x"),
            ])
            .unwrap();
        assert_eq!(
            out.kept
                .iter()
                .map(|r| (r.id.as_str(), r.label.as_deref().unwrap()))
                .collect::<Vec<_>>(),
            vec![("b", "y"), ("c", "x"), ("d", "x")]
        );
        assert_eq!(out.lineage.len(), 2);
        assert!(
            out.lineage
                .iter()
                .all(|l| l.reason.contains("reviewer ana: checked"))
        );
        assert_eq!(out.lineage[1].action, Action::Change);
    }
}
