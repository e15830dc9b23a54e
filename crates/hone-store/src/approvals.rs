//! Approvals of runs for release and their revocations: who, when, why, and the checklist hone
//! computed at that moment, each row written with its audit entry in one transaction. The released
//! run is the one approved most recently and not revoked since (rollback = approving an earlier run).

use std::collections::BTreeMap;

use hone_core::Result;
use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::{Store, db_err};

/// One approval or revocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRow {
    pub seq: i64,
    pub at: String,
    pub who: String,
    pub run: String,
    /// `approve` or `revoke`.
    pub action: String,
    pub reason: String,
    /// The checklist as JSON, as hone computed it.
    pub checklist: serde_json::Value,
}

impl Store {
    /// Record an approval (`revoke` false) or a revocation of `run`, atomically with its audit
    /// entry.
    #[allow(clippy::too_many_arguments)]
    pub fn put_approval(
        &mut self,
        run: &str,
        revoke: bool,
        who: &str,
        at: &str,
        reason: &str,
        checklist: &serde_json::Value,
        command: &str,
    ) -> Result<i64> {
        let action = if revoke { "revoke" } else { "approve" };
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO approvals(at, who, run, action, reason, checklist) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![at, who, run, action, reason, checklist.to_string()],
        )
        .map_err(db_err)?;
        let seq = tx.last_insert_rowid();
        crate::audit::append(
            &tx,
            who,
            command,
            &serde_json::json!({"approval": {"run": run, "action": action, "reason": reason}}),
            &serde_json::json!({"row": seq, "checklist": checklist}),
        )?;
        tx.commit().map_err(db_err)?;
        self.anchor_audit()?;
        Ok(seq)
    }

    /// Every approval and revocation, oldest first.
    pub fn approvals(&self) -> Result<Vec<ApprovalRow>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, at, who, run, action, reason, checklist FROM approvals ORDER BY seq",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                let checklist: String = r.get(6)?;
                Ok(ApprovalRow {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    who: r.get(2)?,
                    run: r.get(3)?,
                    action: r.get(4)?,
                    reason: r.get(5)?,
                    checklist: serde_json::from_str(&checklist)
                        .unwrap_or(serde_json::Value::String(checklist)),
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// The run to release: approved most recently and not revoked since; `None` when no run is.
    /// The audit chain decides, not the table: a row written into the table by hand (no entry in
    /// the chain) releases nothing, and a revocation whose row was deleted still holds; `hone audit
    /// verify` names both.
    pub fn approved_run(&self) -> Result<Option<ApprovalRow>> {
        let table: BTreeMap<i64, ApprovalRow> =
            self.approvals()?.into_iter().map(|r| (r.seq, r)).collect();
        // In audit order: a row number SQLite reused after a deletion does not hide the entry
        // that first wrote it.
        let rows = self
            .approval_entries()?
            .into_iter()
            .map(|(seq, e)| match table.get(&seq) {
                Some(r) if vouches(Some(&e), r) => r.clone(),
                _ => ApprovalRow {
                    seq,
                    at: String::new(),
                    who: e.who,
                    run: e.run,
                    action: e.action,
                    reason: e.reason,
                    checklist: serde_json::Value::Null,
                },
            })
            .collect();
        Ok(released(rows))
    }

    /// The approval audit entries in audit order, with the approvals row each wrote.
    pub(crate) fn approval_entries(&self) -> Result<Vec<(i64, ApprovalEntry)>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, who, json_extract(inputs, '$.approval.run'), json_extract(inputs, '$.approval.action'), \
                 json_extract(inputs, '$.approval.reason'), json_extract(outputs, '$.row') \
                 FROM audit WHERE json_valid(inputs) AND json_extract(inputs, '$.approval') IS NOT NULL ORDER BY seq",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, Option<i64>>(5)?,
                    ApprovalEntry {
                        entry: r.get(0)?,
                        who: r.get(1)?,
                        run: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        action: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        reason: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    },
                ))
            })
            .map_err(db_err)?;
        let mut out = Vec::new();
        for r in rows {
            if let (Some(row), e) = r.map_err(db_err)? {
                out.push((row, e));
            }
        }
        Ok(out)
    }

    /// Approvals rows that no audit entry vouches for, or that differ from their entry, and
    /// entries whose row is gone, as problems for `verify_audit`.
    pub(crate) fn approval_problems(&self) -> Result<Vec<(i64, String)>> {
        let entries = self.approval_entries()?;
        // The entry each row number should match now: the latest that wrote it.
        let latest: BTreeMap<i64, &ApprovalEntry> =
            entries.iter().map(|(row, e)| (*row, e)).collect();
        let table = self.approvals()?;
        let mut out = Vec::new();
        for r in &table {
            match latest.get(&r.seq) {
                None => out.push((0, format!(
                    "approvals row {} ({} of run {} by {}) has no audit entry: it was written outside hone and releases nothing",
                    r.seq, r.action, r.run, r.who
                ))),
                Some(e) if !vouches(Some(e), r) => out.push((e.entry, format!(
                    "approvals row {} differs from audit entry {} that wrote it (run, action, reason or who was edited): the entry holds",
                    r.seq, e.entry
                ))),
                Some(_) => {}
            }
        }
        let rows: std::collections::BTreeSet<i64> = table.iter().map(|r| r.seq).collect();
        for (row, e) in &entries {
            let current = latest.get(row).is_some_and(|l| l.entry == e.entry);
            if !rows.contains(row) || !current {
                out.push((e.entry, format!(
                    "approvals row {row} ({} of run {}, entry {}) was deleted from the approvals table: the entry still holds",
                    e.action, e.run, e.entry
                )));
            }
        }
        Ok(out)
    }
}

/// What an approval's audit entry says it wrote.
#[derive(Debug, Clone)]
pub(crate) struct ApprovalEntry {
    entry: i64,
    who: String,
    run: String,
    action: String,
    reason: String,
}

fn vouches(e: Option<&ApprovalEntry>, r: &ApprovalRow) -> bool {
    e.is_some_and(|e| {
        e.run == r.run && e.action == r.action && e.reason == r.reason && e.who == r.who
    })
}

/// The latest approval whose run has not been revoked after it.
fn released(rows: Vec<ApprovalRow>) -> Option<ApprovalRow> {
    let mut live: Vec<ApprovalRow> = Vec::new();
    for r in rows {
        live.retain(|a| a.run != r.run);
        if r.action == "approve" {
            live.push(r);
        }
    }
    live.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, run: &str, action: &str) -> ApprovalRow {
        ApprovalRow {
            seq,
            at: String::new(),
            who: "a".into(),
            run: run.into(),
            action: action.into(),
            reason: String::new(),
            checklist: serde_json::Value::Null,
        }
    }

    #[test]
    fn the_latest_unrevoked_approval_is_released() {
        let run = |rows: Vec<ApprovalRow>| released(rows).map(|r| r.run);
        assert_eq!(run(vec![]), None);
        assert_eq!(run(vec![row(1, "a", "approve")]), Some("a".into()));
        assert_eq!(
            run(vec![row(1, "a", "approve"), row(2, "b", "approve")]),
            Some("b".into())
        );
        // Revoking the newest rolls back to the one before.
        assert_eq!(
            run(vec![
                row(1, "a", "approve"),
                row(2, "b", "approve"),
                row(3, "b", "revoke")
            ]),
            Some("a".into())
        );
        // Approving an earlier run again releases it (rollback).
        assert_eq!(
            run(vec![
                row(1, "a", "approve"),
                row(2, "b", "approve"),
                row(3, "a", "approve")
            ]),
            Some("a".into())
        );
        assert_eq!(
            run(vec![row(1, "a", "approve"), row(2, "a", "revoke")]),
            None
        );
    }

    #[test]
    fn rows_written_outside_hone_release_nothing_and_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        // Runs are not the point here.
        let no_fk = |s: &Store| {
            s.connection()
                .execute_batch("PRAGMA foreign_keys = OFF")
                .unwrap()
        };
        no_fk(&store);
        let list = serde_json::json!([]);
        store
            .put_approval("run-a", false, "ana", "t1", "ok", &list, "test")
            .unwrap();
        assert!(store.verify_audit().unwrap().ok());
        // A forged approval of another run, inserted straight into the table.
        store
            .connection()
            .execute(
                "INSERT INTO approvals(at, who, run, action, reason, checklist) VALUES ('t2', 'ana', 'run-evil', 'approve', 'x', '[]')",
                [],
            )
            .unwrap();
        assert_eq!(store.approved_run().unwrap().unwrap().run, "run-a");
        let report = store.verify_audit().unwrap();
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.problem.contains("run-evil")),
            "{:?}",
            report.problems
        );
        // A revocation deleted from the table still holds.
        store
            .put_approval("run-a", true, "ana", "t3", "bad", &list, "test")
            .unwrap();
        store
            .connection()
            .execute("DELETE FROM approvals WHERE action = 'revoke'", [])
            .unwrap();
        assert_eq!(store.approved_run().unwrap(), None);
        assert!(
            store
                .verify_audit()
                .unwrap()
                .problems
                .iter()
                .any(|p| p.problem.contains("was deleted"))
        );
        // An approval whose run was edited in the table no longer counts as that run.
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        no_fk(&store);
        store
            .put_approval("run-a", false, "ana", "t1", "ok", &list, "test")
            .unwrap();
        store
            .connection()
            .execute("UPDATE approvals SET run = 'run-evil'", [])
            .unwrap();
        assert_eq!(store.approved_run().unwrap().unwrap().run, "run-a");
        assert!(!store.verify_audit().unwrap().ok());
        // A deleted revocation whose row number SQLite reuses for the next approval still holds.
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        no_fk(&store);
        store
            .put_approval("run-a", false, "ana", "t1", "ok", &list, "test")
            .unwrap();
        store
            .put_approval("run-a", true, "ana", "t2", "bad", &list, "test")
            .unwrap();
        store
            .connection()
            .execute("DELETE FROM approvals WHERE action = 'revoke'", [])
            .unwrap();
        let b = store
            .put_approval("run-b", false, "ana", "t3", "ok", &list, "test")
            .unwrap();
        assert_eq!(b, 2, "the row number was reused");
        store
            .put_approval("run-b", true, "ana", "t4", "bad", &list, "test")
            .unwrap();
        assert_eq!(store.approved_run().unwrap(), None);
        let problems = store.verify_audit().unwrap().problems;
        assert!(
            problems.iter().any(|p| p.problem.contains("was deleted")),
            "{problems:?}"
        );
    }
}
