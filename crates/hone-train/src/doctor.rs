//! `hone doctor`: checks every object of the store against its hash and every reference to one
//! (dataset versions, removed records, run models and predictions, split assignments, scans, answer
//! reviews), names
//! what is missing or corrupt and what depends on it, and repairs what can be rebuilt: a dataset version
//! whose objects vanished is curated again from its sources when they still give the same version.

use std::collections::BTreeMap;

use hone_core::Result;
use hone_store::{ObjectStatus, Store};
use serde::Serialize;

use crate::curate;
use crate::project::Project;
use crate::record;

/// One object that is not as the store recorded it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObjectProblem {
    pub hash: String,
    pub status: ObjectStatus,
    /// What refers to it (`dataset of version 1a2b…`, `model of run #3 (fast)`, …).
    pub used_by: Vec<String>,
    /// What to do about it.
    pub remedy: String,
}

/// What `hone doctor` found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DoctorReport {
    pub objects_checked: usize,
    pub problems: Vec<ObjectProblem>,
    /// Versions whose objects were rebuilt by this call (with `--repair`).
    pub repaired: Vec<String>,
}

impl DoctorReport {
    /// What `hone doctor` prints: repairs, then either "intact" or every problem with its remedy.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for v in &self.repaired {
            out.push_str(&format!(
                "repaired: dataset version {} curated again from its sources\n",
                hone_core::hash::short(v)
            ));
        }
        if self.ok() {
            out.push_str(&format!(
                "store intact: {} objects checked against their hashes and references.\n",
                self.objects_checked
            ));
        }
        for p in &self.problems {
            out.push_str(&format!(
                "object {} is {}: {}\n  used by: {}\n  remedy: {}\n",
                hone_core::hash::short(&p.hash),
                p.status.name(),
                if p.used_by.is_empty() {
                    "(nothing)".to_string()
                } else {
                    p.used_by.len().to_string() + " reference(s)"
                },
                p.used_by.join("; "),
                p.remedy
            ));
        }
        out
    }

    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Every object reference the store holds, with what it is for.
fn references(store: &Store) -> Result<BTreeMap<String, Vec<String>>> {
    let mut refs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut add = |hash: &str, what: String| refs.entry(hash.to_string()).or_default().push(what);
    for v in store.versions()? {
        let short = hone_core::hash::short(&v.id).to_string();
        add(&v.object, format!("dataset of version {short}"));
        if let Some(removed) = curate::version_summary(&v)?.removed_object {
            add(&removed, format!("removed records of version {short}"));
        }
    }
    for r in record::all(store)? {
        for (name, hash) in &r.record.artifacts {
            add(
                hash,
                format!("model file {name} of run #{} ({})", r.seq, r.model),
            );
        }
        add(
            &r.record.predictions,
            format!("predictions of run #{} ({})", r.seq, r.model),
        );
    }
    for s in store.splits()? {
        add(
            &s.assignment,
            format!("assignment of split {}", hone_core::hash::short(&s.id)),
        );
    }
    for s in store.scans()? {
        add(
            &s.object,
            format!("suspects of scan {}", hone_core::hash::short(&s.id)),
        );
    }
    for a in store.answer_reviews()? {
        add(
            &a.object,
            format!("answer reviews #{} by {}", a.seq, a.reviewer),
        );
    }
    Ok(refs)
}

/// Check every recorded and referenced object.
pub fn check(store: &Store) -> Result<DoctorReport> {
    let mut refs = references(store)?;
    for (hash, _) in store.objects()? {
        refs.entry(hash).or_default();
    }
    let mut problems = Vec::new();
    for (hash, used_by) in &refs {
        let status = store.object_status(hash);
        if status == ObjectStatus::Ok {
            continue;
        }
        let remedy = if used_by.iter().any(|u| u.contains("of version")) {
            "`hone doctor --repair` (or `hone data clean`) curates the version again from its sources"
        } else if used_by.iter().any(|u| u.contains("of run")) {
            "the run cannot be rebuilt from the store; train it again under another name or seed"
        } else if used_by.is_empty() {
            "nothing refers to it; it can be ignored"
        } else {
            "run the command that made it again (`hone split`, `hone data scan`)"
        };
        problems.push(ObjectProblem {
            hash: hash.clone(),
            status,
            used_by: used_by.clone(),
            remedy: remedy.into(),
        });
    }
    Ok(DoctorReport {
        objects_checked: refs.len(),
        problems,
        repaired: Vec::new(),
    })
}

/// Rebuild what can be rebuilt (the current dataset version's objects, by curating again), then check
/// again.
pub fn repair(project: &Project, store: &mut Store, command: &str) -> Result<DoctorReport> {
    let before = check(store)?;
    let mut repaired = Vec::new();
    if before
        .problems
        .iter()
        .any(|p| p.used_by.iter().any(|u| u.contains("of version")))
    {
        let out = curate::clean_with(project, store, command, &mut |_| {}, true)?;
        if out.restored {
            repaired.push(out.version.id);
        }
    }
    Ok(DoctorReport {
        repaired,
        ..check(store)?
    })
}
