//! Feedback as data: the corrections users sent to `hone serve` become records of hone's own
//! `feedback` source in the next dataset version (the text the model saw, PII-masked, with the
//! corrected label), through the same passes and lineage as every source. Only feedback with
//! consent on both the prediction and the correction is used; a correction that contradicts the
//! label of a record already in the data is withheld (lineage rule `feedback_conflict`) and queued
//! for `hone review` instead of silently winning.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hone_core::{Action, LineageEntry, Record, Result};
use hone_store::Store;
use serde::{Deserialize, Serialize};

use crate::input::TextPrep;

/// The source name feedback records carry.
pub const SOURCE: &str = "feedback";
/// The lineage rule of a withheld, contradicting correction.
pub const CONFLICT_RULE: &str = "feedback_conflict";

/// The feedback usable as data, and what was left out and why.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeedbackData {
    pub records: Vec<Record>,
    /// Predictions with feedback but no correction (ratings and comments only).
    pub without_label: usize,
    /// Corrections without consent (on the prediction or the feedback), or whose input was not kept.
    pub without_consent: usize,
    /// The tokens that sent the corrections used.
    pub tokens: BTreeSet<String>,
    pub first_at: Option<String>,
    pub last_at: Option<String>,
}

impl FeedbackData {
    /// The source notes hone writes for the feedback source.
    pub fn notes(&self) -> String {
        format!(
            "corrections sent to `hone serve` (POST /v1/feedback) from {} to {} by token(s) {}; the latest correction per prediction counts; not used: {} without consent, {} without a label",
            self.first_at.as_deref().unwrap_or("-"),
            self.last_at.as_deref().unwrap_or("-"),
            self.tokens.iter().cloned().collect::<Vec<_>>().join(", "),
            self.without_consent,
            self.without_label
        )
    }

    /// A stable hash of the records, for the version key.
    pub fn key(&self) -> String {
        let mut h = hone_core::hash::KeyHasher::new();
        for r in &self.records {
            h.part("id", r.id.as_bytes());
            h.part("text", r.text.as_bytes());
            h.part("label", r.label.as_deref().unwrap_or("").as_bytes());
        }
        h.finish()
    }
}

/// The feedback in the store as records: per prediction, its latest correction (feedback with a
/// label); for a generate model the label is the corrected answer.
pub fn load(store: &Store) -> Result<FeedbackData> {
    let mut out = FeedbackData::default();
    let mut latest: BTreeMap<String, hone_store::FeedbackRow> = BTreeMap::new();
    let mut rated: BTreeSet<String> = BTreeSet::new();
    for f in store.feedback()? {
        rated.insert(f.prediction_id.clone());
        if f.label.is_some() {
            latest.insert(f.prediction_id.clone(), f);
        }
    }
    out.without_label = rated.len() - latest.len();
    for (pid, f) in latest {
        let Some(p) = store.prediction(&pid)? else {
            continue;
        };
        let (Some(text), true, true) = (p.input, p.consent, f.consent) else {
            out.without_consent += 1;
            continue;
        };
        out.tokens.insert(f.token.clone());
        if out.first_at.as_ref().is_none_or(|a| f.at < *a) {
            out.first_at = Some(f.at.clone());
        }
        if out.last_at.as_ref().is_none_or(|a| f.at > *a) {
            out.last_at = Some(f.at.clone());
        }
        out.records.push(Record {
            id: format!("{SOURCE}-{pid}"),
            text,
            label: f.label,
            source: SOURCE.into(),
            line: f.seq as u64,
            date: Some(f.at[..f.at.len().min(10)].to_string()),
            consent: Some(true),
            meta: serde_json::json!({"prediction_id": pid, "run": p.run, "token": f.token, "model_said": p.output})
                .to_string(),
            ..Record::default()
        });
    }
    Ok(out)
}

/// Split feedback records into those that join the data and those withheld because a record of
/// `records` with the same text (as the server prepared it) has another label; the withheld come
/// with their lineage entries, which name the contradicted record.
pub fn sort_out(
    feedback: Vec<Record>,
    records: &[Record],
    prep: &TextPrep,
) -> (Vec<Record>, Vec<(Record, LineageEntry)>) {
    if feedback.is_empty() {
        return (feedback, Vec::new());
    }
    let wanted: BTreeSet<&str> = feedback.iter().map(|r| r.text.as_str()).collect();
    let mut by_text: HashMap<String, &Record> = HashMap::new();
    for r in records {
        let k = prep.apply(&r.text);
        if wanted.contains(k.as_str()) {
            by_text.entry(k).or_insert(r);
        }
    }
    let (mut keep, mut withheld) = (Vec::new(), Vec::new());
    for f in feedback {
        match by_text.get(&f.text) {
            Some(r) if r.label != f.label => {
                let e = LineageEntry::new(
                    &f,
                    "feedback",
                    Action::Drop,
                    CONFLICT_RULE,
                    format!(
                        "the correction `{}` contradicts label `{}` of record {}: sent to review (`hone review`) instead of replacing it",
                        f.label.as_deref().unwrap_or(""),
                        r.label.as_deref().unwrap_or(""),
                        r.id
                    ),
                )
                .related(r.id.clone());
                withheld.push((f, e));
            }
            _ => keep.push(f),
        }
    }
    (keep, withheld)
}

/// The corrections the latest version withheld as contradicting a record, as review suspects of
/// that record (its label against the correction's).
pub fn conflicts(store: &Store) -> Result<Vec<crate::scan::Suspect>> {
    let Some(version) = store.versions()?.pop() else {
        return Ok(Vec::new());
    };
    let entries: Vec<LineageEntry> = store
        .lineage(&version.id)?
        .into_iter()
        .filter(|e| e.rule == CONFLICT_RULE)
        .collect();
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let removed: HashMap<String, Record> = crate::curate::load_removed(store, &version)?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let target = e.related_id.clone()?;
            let correction = removed.get(&e.record_id)?;
            Some(crate::scan::Suspect {
                id: target,
                kind: CONFLICT_RULE.into(),
                label: String::new(),
                suggested_label: correction.label.clone(),
                score: 1.0,
                evidence: e.reason,
            })
        })
        .collect())
}
