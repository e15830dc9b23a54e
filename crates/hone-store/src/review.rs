//! Scans (the label-issue and poisoning finders' suspects, as an object) and review decisions (accept,
//! relabel, drop, skip), each batch written with its audit entry in one transaction. The latest decision
//! per record is the one curation applies. Answer reviews (ratings and strong/weak marks of generated
//! answers) are stored the same way: one row and one audit entry per imported sheet.

use hone_core::Result;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, db_err};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRow {
    pub id: String,
    pub seq: i64,
    pub version: String,
    pub created_at: String,
    /// Object holding the JSON list of suspects.
    pub object: String,
    pub summary: serde_json::Value,
}

/// One imported sheet of answer reviews: who, when, about which run, and the object holding them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerReviewRow {
    pub seq: i64,
    pub at: String,
    pub reviewer: String,
    pub run: String,
    pub object: String,
}

/// A reviewer's decision about one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub record_id: String,
    /// `accept` (the label is right), `relabel`, `drop` or `skip`.
    pub decision: String,
    /// The new label, for `relabel`.
    pub label: Option<String>,
    pub reviewer: String,
    pub at: String,
    pub note: String,
}

/// One `review_decisions` row selected as `record_id, decision, label, reviewer, at, note`.
fn row_to_decision(r: &rusqlite::Row) -> rusqlite::Result<Decision> {
    Ok(Decision {
        record_id: r.get(0)?,
        decision: r.get(1)?,
        label: r.get(2)?,
        reviewer: r.get(3)?,
        at: r.get(4)?,
        note: r.get(5)?,
    })
}

/// The hash of a batch of decisions as the audit chain holds it.
pub(crate) fn decisions_hash(decisions: &[Decision]) -> String {
    hone_core::hash::hash_bytes(&serde_json::to_vec(decisions).unwrap_or_default())
}

impl Store {
    /// The decision rows `first..=last` in sequence order, as stored (for `audit verify`).
    pub(crate) fn decision_rows(&self, first: i64, last: i64) -> Result<Vec<Decision>> {
        let mut stmt = self
            .conn
            .prepare("SELECT record_id, decision, label, reviewer, at, note FROM review_decisions WHERE seq BETWEEN ?1 AND ?2 ORDER BY seq")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([first, last], row_to_decision)
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Record a scan and its audit entry.
    pub fn put_scan(
        &mut self,
        id: &str,
        version: &str,
        object: &str,
        summary: &serde_json::Value,
        who: &str,
        command: &str,
    ) -> Result<ScanRow> {
        let tx = self.write_tx()?;
        let exists = tx
            .query_row("SELECT 1 FROM scans WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map_err(db_err)?
            .is_some();
        if !exists {
            let seq: i64 = tx
                .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM scans", [], |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            tx.execute("INSERT INTO scans(id, seq, version, created_at, object, summary) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", params![id, seq, version, chrono::Utc::now().to_rfc3339(), object, summary.to_string()]).map_err(db_err)?;
            crate::audit::append(
                &tx,
                who,
                command,
                &serde_json::json!({"version": version}),
                &serde_json::json!({"scan": id, "object": object}),
            )?;
        }
        tx.commit().map_err(db_err)?;
        self.anchor_audit()?;
        self.latest_scan()?
            .ok_or_else(|| hone_core::Error::Internal("scan vanished after commit".into()))
    }

    /// Every scan, oldest first.
    pub fn scans(&self) -> Result<Vec<ScanRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, seq, version, created_at, object, summary FROM scans ORDER BY seq")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                let summary: String = r.get(5)?;
                Ok(ScanRow {
                    id: r.get(0)?,
                    seq: r.get(1)?,
                    version: r.get(2)?,
                    created_at: r.get(3)?,
                    object: r.get(4)?,
                    summary: serde_json::from_str(&summary).unwrap_or_default(),
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// The most recent scan, if any.
    pub fn latest_scan(&self) -> Result<Option<ScanRow>> {
        self.conn
            .query_row("SELECT id, seq, version, created_at, object, summary FROM scans ORDER BY seq DESC LIMIT 1", [], |r| {
                let summary: String = r.get(5)?;
                Ok(ScanRow { id: r.get(0)?, seq: r.get(1)?, version: r.get(2)?, created_at: r.get(3)?, object: r.get(4)?, summary: serde_json::from_str(&summary).unwrap_or_default() })
            })
            .optional()
            .map_err(db_err)
    }

    /// Record a batch of decisions with one audit entry naming the reviewer, atomically.
    pub fn put_decisions(
        &mut self,
        decisions: &[Decision],
        who: &str,
        command: &str,
    ) -> Result<()> {
        let tx = self.write_tx()?;
        let mut rows: Option<(i64, i64)> = None;
        for d in decisions {
            tx.execute("INSERT INTO review_decisions(record_id, decision, label, reviewer, at, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", params![d.record_id, d.decision, d.label, d.reviewer, d.at, d.note]).map_err(db_err)?;
            let seq = tx.last_insert_rowid();
            rows = Some(rows.map_or((seq, seq), |(first, _)| (first, seq)));
        }
        let counts = decisions.iter().fold(
            std::collections::BTreeMap::<&str, u64>::new(),
            |mut m, d| {
                *m.entry(d.decision.as_str()).or_default() += 1;
                m
            },
        );
        // The batch's hash and its row range go into the chain: `audit verify` reads the rows back and
        // re-hashes them, so an edited, added or deleted decision is found.
        crate::audit::append(
            &tx,
            who,
            command,
            &serde_json::json!({"decisions": decisions_hash(decisions)}),
            &serde_json::json!({"counts": counts, "rows": rows}),
        )?;
        tx.commit().map_err(db_err)?;
        self.anchor_audit()
    }

    /// Record one sheet of answer reviews (already stored as `object`) with its audit entry,
    /// atomically.
    pub fn put_answer_reviews(
        &mut self,
        reviewer: &str,
        run: &str,
        object: &str,
        at: &str,
        command: &str,
    ) -> Result<i64> {
        let tx = self.write_tx()?;
        tx.execute(
            "INSERT INTO answer_reviews(at, reviewer, run, object) VALUES (?1, ?2, ?3, ?4)",
            params![at, reviewer, run, object],
        )
        .map_err(db_err)?;
        let seq = tx.last_insert_rowid();
        crate::audit::append(
            &tx,
            reviewer,
            command,
            &serde_json::json!({"answer_reviews": object, "run": run}),
            &serde_json::json!({"row": seq}),
        )?;
        tx.commit().map_err(db_err)?;
        self.anchor_audit()?;
        Ok(seq)
    }

    /// Every imported sheet of answer reviews, oldest first.
    pub fn answer_reviews(&self) -> Result<Vec<AnswerReviewRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, at, reviewer, run, object FROM answer_reviews ORDER BY seq")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AnswerReviewRow {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    reviewer: r.get(2)?,
                    run: r.get(3)?,
                    object: r.get(4)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// The latest decision per record (skips excluded), in record-id order.
    pub fn decisions(&self) -> Result<Vec<Decision>> {
        let mut stmt = self
            .conn
            .prepare("SELECT record_id, decision, label, reviewer, at, note FROM review_decisions d WHERE seq = (SELECT MAX(seq) FROM review_decisions e WHERE e.record_id = d.record_id) AND decision != 'skip' ORDER BY record_id")
            .map_err(db_err)?;
        let rows = stmt.query_map([], row_to_decision).map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::Decision;
    use crate::Store;

    fn d(id: &str, decision: &str, label: Option<&str>) -> Decision {
        Decision {
            record_id: id.into(),
            decision: decision.into(),
            label: label.map(String::from),
            reviewer: "ana".into(),
            at: "2026-11-24".into(),
            note: String::new(),
        }
    }

    #[test]
    fn the_latest_decision_per_record_wins_and_is_audited() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.put_decisions(
            &[d("a", "drop", None), d("b", "relabel", Some("x"))],
            "ana",
            "hone review",
        )
        .unwrap();
        s.put_decisions(
            &[d("a", "accept", None), d("c", "skip", None)],
            "bo",
            "hone review",
        )
        .unwrap();
        let got = s.decisions().unwrap();
        assert_eq!(
            got.iter()
                .map(|x| (x.record_id.as_str(), x.decision.as_str()))
                .collect::<Vec<_>>(),
            vec![("a", "accept"), ("b", "relabel")]
        );
        let audit = s.audit_entries().unwrap();
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[1].who, "bo");
        assert!(s.verify_audit().unwrap().ok());
    }
}
