//! `hone approve`: the checklist hone computes before a run is released (success gates, model card,
//! leak check, suites), the refusal when a gate failed or a leak was left unremedied, and the
//! approval or revocation recorded with who, when and why in the audit chain.

use std::collections::BTreeMap;

use hone_core::{Error, Result};
use hone_store::Store;
use serde::Serialize;

use crate::project::{Project, who};
use crate::record::Run;
use hone_data::split::Part;

/// One checklist item.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// A failed blocking item refuses the approval; the rest are warnings.
    pub blocking: bool,
    pub detail: String,
}

/// What `hone approve` did.
#[derive(Debug, Clone, Serialize)]
pub struct Approval {
    pub run: String,
    pub model: String,
    pub revoke: bool,
    pub checklist: Vec<Check>,
    /// Refused: a blocking item failed; nothing was recorded.
    pub refused: bool,
    /// The store row, when recorded.
    pub seq: Option<i64>,
    pub who: String,
}

impl Approval {
    /// The checklist and the outcome, as `hone approve` prints them.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checklist {
            let mark = match (c.ok, c.blocking) {
                (true, _) => "ok     ",
                (false, true) => "FAILED ",
                (false, false) => "warning",
            };
            out.push_str(&format!("{mark}  {}: {}\n", c.name, c.detail));
        }
        let short = hone_core::hash::short(&self.run);
        out.push_str(&if self.refused {
            format!(
                "\nnot approved: run {short} ({}) fails a blocking check above.\n",
                self.model
            )
        } else if self.revoke {
            format!(
                "\napproval of run {short} ({}) revoked by {}.\n",
                self.model, self.who
            )
        } else {
            format!(
                "\nrun {short} ({}) approved by {}: it is now the released run (the latest approval not revoked).\n",
                self.model, self.who
            )
        });
        out
    }
}

/// The success gates as they hold for `run` now (generate runs: graded from its stored answers).
pub fn run_gates(
    project: &Project,
    store: &Store,
    run: &Run,
) -> Result<Vec<crate::run_stage::Gate>> {
    let mut graded: BTreeMap<String, crate::graders::GraderScores> = BTreeMap::new();
    if run.record.generation.is_some() && !project.config.success.is_empty() {
        let version = store.resolve_version(Some(&run.version))?;
        let records = crate::curate::load_records(store, &version)?;
        let parts = crate::split_stage::assignment(store, &run.split)?;
        let test: Vec<&hone_core::Record> = records
            .iter()
            .filter(|r| parts.get(&r.id) == Some(&Part::Test))
            .collect();
        let graders = crate::graders::load(project)?;
        graded = crate::graders::grade_run(&graders, store, run, &test, project.config.split.seed)?
            .into_iter()
            .map(|(k, v)| (k, v.scores))
            .collect();
    }
    Ok(crate::run_stage::gates(project, &run.record, &graded))
}

/// The checklist for releasing `run`.
pub fn checklist(project: &Project, store: &Store, run: &Run) -> Result<Vec<Check>> {
    let mut out = Vec::new();
    let gates = run_gates(project, store, run)?;
    if gates.is_empty() {
        out.push(Check {
            name: "success gates".into(),
            ok: false,
            blocking: false,
            detail: "none defined: add a [success] table so release has a bar to clear".into(),
        });
    }
    for g in gates {
        out.push(Check {
            name: format!("gate {}", g.metric),
            ok: g.pass,
            blocking: true,
            detail: match g.value {
                Some(v) => format!("{v:.4} (rule {})", g.rule),
                None => format!("{} (rule {})", g.note, g.rule),
            },
        });
    }
    let short = hone_core::hash::short(&run.id);
    let card = project
        .root
        .join("reports")
        .join(format!("card-{short}.md"));
    out.push(Check {
        name: "model card".into(),
        ok: card.exists(),
        blocking: false,
        detail: if card.exists() {
            card.display().to_string()
        } else {
            format!("not written: run `hone card {short}`")
        },
    });
    let split = crate::split_stage::summary(store, &run.split)?;
    let leaks = split.contamination.len();
    out.push(Check {
        name: "leak check".into(),
        ok: leaks == 0 || split.dropped_train > 0,
        blocking: true,
        detail: match (leaks, split.dropped_train) {
            (0, _) => "clean".into(),
            (n, 0) => format!(
                "{n} test/train pair(s) found and left in place: set `contamination = \"drop_train\"` under [policy] and run again"
            ),
            (n, d) => format!("{n} pair(s) found, remedied: {d} training record(s) removed"),
        },
    });
    out.push(Check {
        name: "suites".into(),
        ok: run.record.n.suites > 0,
        blocking: false,
        detail: if run.record.n.suites > 0 {
            format!("{} case(s) run", run.record.n.suites)
        } else {
            "none: add suites/*.jsonl (easy, hard, strange, unsafe, private-trap cases)".into()
        },
    });
    Ok(out)
}

/// Approve `run` for release (or revoke its approval), recording who, when, why and the checklist.
/// An approval is refused, and nothing recorded, when a blocking check fails; a revocation never is.
pub fn approve(
    project: &Project,
    store: &mut Store,
    run: &Run,
    reason: &str,
    revoke: bool,
    command: &str,
) -> Result<Approval> {
    if reason.trim().is_empty() {
        return Err(Error::Usage(
            "--reason is empty: say why (it is kept in the audit chain)".into(),
        ));
    }
    let checklist = checklist(project, store, run)?;
    let refused = !revoke && checklist.iter().any(|c| c.blocking && !c.ok);
    let who = who();
    let seq = if refused {
        None
    } else {
        let at = chrono::Utc::now().to_rfc3339();
        let json = serde_json::to_value(&checklist).map_err(|e| Error::Internal(e.to_string()))?;
        Some(store.put_approval(&run.id, revoke, &who, &at, reason, &json, command)?)
    };
    Ok(Approval {
        run: run.id.clone(),
        model: run.model.clone(),
        revoke,
        checklist,
        refused,
        seq,
        who,
    })
}
