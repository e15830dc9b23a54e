//! `hone review`: the checks every review decision passes (the record exists, is not in the frozen test
//! set, a relabel names a known label), decision files, the queue of suspects still to review, and
//! recording decisions, which makes a new dataset version. The interactive prompt is the binary's.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use hone_core::{Error, Record, Result};
use hone_store::{Decision, ScanRow, Store};
use serde::Deserialize;

use crate::curate::{self, CurateOutcome};
use crate::input::read_jsonl;
use crate::project::Project;
use crate::scan::Suspect;

/// What decisions are checked against: the latest version's records and the frozen test ids.
pub struct ReviewContext {
    records: Vec<Record>,
    /// Record id → position in `records`.
    index: HashMap<String, usize>,
    frozen: HashSet<String>,
}

impl ReviewContext {
    pub fn load(store: &Store) -> Result<ReviewContext> {
        let v = store.resolve_version(None)?;
        let records = curate::load_records(store, &v)?;
        let frozen = crate::split_stage::frozen_ids(store)?;
        let index = records
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        Ok(ReviewContext {
            records,
            index,
            frozen,
        })
    }

    pub fn record(&self, id: &str) -> Option<&Record> {
        self.index.get(id).map(|&i| &self.records[i])
    }

    /// Every label of the latest version.
    pub fn labels(&self) -> BTreeSet<&str> {
        self.records
            .iter()
            .filter_map(|r| r.label.as_deref())
            .collect()
    }

    /// Why a decision cannot be recorded, if it cannot.
    pub fn check(&self, d: &Decision) -> std::result::Result<(), String> {
        if self.record(&d.record_id).is_none() {
            return Err(format!(
                "record `{}` is not in the latest dataset version",
                d.record_id
            ));
        }
        if self.frozen.contains(&d.record_id) {
            return Err(format!(
                "record `{}` is in the frozen test set; it changes only with `hone split --refreeze --reason`",
                d.record_id
            ));
        }
        match d.decision.as_str() {
            "accept" | "drop" | "skip" => Ok(()),
            "relabel" => {
                let labels = self.labels();
                match d.label.as_deref() {
                    Some(l) if labels.contains(l) => Ok(()),
                    Some(l) => Err(format!(
                        "unknown label `{l}` (known: {})",
                        labels.iter().copied().collect::<Vec<_>>().join(", ")
                    )),
                    None => Err("`relabel` needs a \"label\"".into()),
                }
            }
            other => Err(format!(
                "unknown decision `{other}` (accept, relabel, drop or skip)"
            )),
        }
    }
}

/// One line of a decisions file.
#[derive(Deserialize)]
struct DecisionLine {
    id: String,
    decision: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    note: String,
}

const DECISION_HINT: &str = "each line is {\"id\": ..., \"decision\": \"accept\" | \"relabel\" | \"drop\" | \"skip\", \"label\": ..., \"note\": ...}";

/// Read and check a decisions file (JSONL); the first bad line stops it with file, line and reason.
pub fn read_decisions(
    path: &Path,
    ctx: &ReviewContext,
    reviewer: &str,
    at: &str,
) -> Result<Vec<Decision>> {
    let mut out = Vec::new();
    for (n, l) in read_jsonl::<DecisionLine>(path, DECISION_HINT)? {
        let d = Decision {
            record_id: l.id,
            decision: l.decision,
            label: l.label,
            reviewer: reviewer.to_string(),
            at: at.to_string(),
            note: l.note,
        };
        ctx.check(&d).map_err(|reason| Error::BadRecord {
            file: path.to_path_buf(),
            line: n,
            field: "decision".into(),
            reason,
            hint: DECISION_HINT.into(),
        })?;
        out.push(d);
    }
    Ok(out)
}

/// The suspects still to review, that have no decision yet and are in the latest version: the
/// latest scan's, and the records a feedback correction contradicts (`feedback_conflict`).
pub fn queue(store: &Store, ctx: &ReviewContext) -> Result<(Option<ScanRow>, Vec<Suspect>)> {
    let scan = store.latest_scan()?;
    let conflicts = crate::feedback::conflicts(store)?;
    if scan.is_none() && conflicts.is_empty() {
        return Err(Error::NotFound {
            what: "scan",
            name: "(latest)".into(),
            hint: "run `hone data scan` first, or pass --from FILE".into(),
        });
    }
    let decided: HashSet<String> = store
        .decisions()?
        .into_iter()
        .map(|d| d.record_id)
        .collect();
    let mut suspects = match &scan {
        Some(s) => crate::scan::load_suspects(store, s)?,
        None => Vec::new(),
    };
    suspects.extend(conflicts.into_iter().map(|mut s| {
        s.label = ctx
            .record(&s.id)
            .and_then(|r| r.label.clone())
            .unwrap_or_default();
        s
    }));
    let suspects = suspects
        .into_iter()
        .filter(|s| !decided.contains(&s.id) && ctx.record(&s.id).is_some())
        .collect();
    Ok((scan, suspects))
}

/// One queued suspect as `hone review` shows it: position, id, kind, label, suggestion, text.
pub fn describe(n: usize, total: usize, s: &Suspect, r: &Record) -> String {
    format!(
        "\n[{}/{}] {} ({}) label `{}`, suggested `{}`, score {:.3}\n  {}\n  evidence: {}",
        n + 1,
        total,
        s.id,
        s.kind,
        r.label.as_deref().unwrap_or(""),
        s.suggested_label.as_deref().unwrap_or("-"),
        s.score,
        crate::reports::clip(&r.text, 200),
        s.evidence
    )
}

/// The line `hone review` ends with: how many decisions of each kind, by whom, in which version.
pub fn summary(counts: &BTreeMap<String, u64>, n: usize, reviewer: &str, version: &str) -> String {
    format!(
        "recorded {n} decision(s) by {reviewer} ({}); dataset version {} applies them.",
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        hone_core::hash::short(version)
    )
}

/// Record decisions (audited) and make the dataset version that applies them. Returns the count per
/// decision and the curation outcome.
pub fn apply(
    project: &Project,
    store: &mut Store,
    decisions: &[Decision],
    reviewer: &str,
    command: &str,
) -> Result<(BTreeMap<String, u64>, CurateOutcome)> {
    // Notes are typed by people: masked before they are stored.
    let decisions: Vec<Decision> = decisions
        .iter()
        .map(|d| Decision {
            note: crate::input::free_text(&d.note),
            ..d.clone()
        })
        .collect();
    let decisions = &decisions[..];
    store.put_decisions(decisions, reviewer, command)?;
    let out = curate::clean(project, store, command, &mut |_| {})?;
    let mut counts = BTreeMap::new();
    for d in decisions {
        *counts.entry(d.decision.clone()).or_default() += 1;
    }
    Ok((counts, out))
}
