//! Approvals of runs for release and their revocations: who, when, why, and the checklist hone
//! computed at that moment, each row written with its audit entry in one transaction. The released
//! run is the one approved most recently and not revoked since (rollback = approving an earlier run).

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
    pub fn approved_run(&self) -> Result<Option<ApprovalRow>> {
        Ok(released(self.approvals()?))
    }
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
}
