//! `hone data why`: everything hone knows about one record in one dataset version, gathered into one
//! value: kept, dropped or quarantined; by which pass and rule; and whether a split dropped it from
//! training. The binary prints it as JSON or as [`RecordHistory::render`].

use hone_core::{Action, Error, LineageEntry, Quarantined, Record, Result};
use hone_store::{SplitDrop, Store};
use serde::Serialize;

use crate::curate;
use crate::reports::clip;
use hone_core::hash::short;

/// What became of a record in a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Kept,
    Quarantined,
    Dropped,
}

/// One record's history in one dataset version.
#[derive(Debug, Clone, Serialize)]
pub struct RecordHistory {
    pub id: String,
    pub version: String,
    pub status: Status,
    /// The record as kept, or as it was when a pass removed it.
    pub record: Option<Record>,
    pub lineage: Vec<LineageEntry>,
    pub quarantine: Vec<Quarantined>,
    /// Splits (of any version) that kept this record out of training.
    pub split_drops: Vec<SplitDrop>,
}

/// Gather the history of record `id` in `version` (default: the latest); an unknown id is
/// [`Error::NotFound`].
pub fn history(store: &Store, id: &str, version: Option<&str>) -> Result<RecordHistory> {
    let v = store.resolve_version(version)?;
    let lineage = store.lineage_of(&v.id, id)?;
    let quarantine: Vec<Quarantined> = store
        .quarantine(&v.id)?
        .into_iter()
        .filter(|q| q.id == id)
        .collect();
    let kept = curate::load_records(store, &v)?
        .into_iter()
        .find(|r| r.id == id);
    if lineage.is_empty() && quarantine.is_empty() && kept.is_none() {
        return Err(Error::NotFound {
            what: "record",
            name: format!("{id} in version {}", short(&v.id)),
            hint: "ids are the source's id column, else <source>-<line>; `hone data show` lists kept records".into(),
        });
    }
    let status = if kept.is_some() {
        Status::Kept
    } else if !quarantine.is_empty() {
        Status::Quarantined
    } else {
        Status::Dropped
    };
    let record = match kept {
        Some(r) => Some(r),
        None => curate::load_removed(store, &v)?
            .into_iter()
            .find(|r| r.id == id),
    };
    Ok(RecordHistory {
        id: id.to_string(),
        version: v.id,
        status,
        record,
        lineage,
        quarantine,
        split_drops: store.split_lineage_of(id)?,
    })
}

impl RecordHistory {
    /// The history as the terminal shows it.
    pub fn render(&self) -> String {
        let status = match self.status {
            Status::Kept => "kept",
            Status::Quarantined => "quarantined",
            Status::Dropped => "dropped",
        };
        let mut out = vec![format!(
            "{} in dataset version {}: {status}",
            self.id,
            short(&self.version)
        )];
        if let Some(r) = &self.record {
            out.push(format!(
                "  source {} line {}, label {}",
                r.source,
                r.line,
                r.label.as_deref().unwrap_or("-")
            ));
            out.push(format!("  text: {}", clip(&r.text, 200)));
            if let Some(c) = &r.cluster
                && c != &r.id
            {
                out.push(format!("  near-duplicate cluster: {c}"));
            }
        }
        for q in &self.quarantine {
            out.push(format!(
                "  quarantined at {}:{}: field `{}`: {}\n  row: {}",
                q.file, q.line, q.field, q.reason, q.excerpt
            ));
        }
        for l in &self.lineage {
            let verb = match l.action {
                Action::Drop => "dropped",
                Action::Change => "changed",
                Action::Quarantine => "quarantined",
                Action::Flag => "flagged",
            };
            out.push(format!(
                "  {verb} by pass `{}` (rule {}): {}",
                l.pass, l.rule, l.reason
            ));
            if let Some(rel) = &l.related_id {
                out.push(format!("    related record: {rel}"));
            }
            if let Some(d) = &l.diff {
                out.push(format!("    diff: {}", clip(d, 200)));
            }
        }
        for d in &self.split_drops {
            out.push(format!(
                "  dropped from training by split {} (rule {}): {}",
                short(&d.split),
                d.rule,
                d.reason
            ));
            if let Some(rel) = &d.related_id {
                out.push(format!("    related record: {rel}"));
            }
        }
        out.join("\n")
    }
}
