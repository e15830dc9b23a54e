//! What `hone serve` answered and what users said about it: one `predictions` row per answer (the
//! input PII-masked, or withheld when the request gave no consent under `require_consent`), and
//! `feedback` rows on them, each committed with its audit entry before the server acknowledges it.

use hone_core::{Error, Result};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, db_err};

/// One answer the server gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRow {
    pub id: String,
    pub at: String,
    pub run: String,
    pub model: String,
    /// The name of the token that asked.
    pub token: String,
    pub consent: bool,
    /// The input as the model saw it (normalised, PII masked); `None` without consent.
    pub input: Option<String>,
    /// The input's length in characters, kept with or without consent (a length is not content);
    /// `None` on rows written before hone kept it.
    pub input_chars: Option<i64>,
    /// The label (or `abstain`), or a generated answer (PII masked).
    pub output: String,
    pub probability: Option<f64>,
    pub latency_us: i64,
}

/// One feedback entry on a prediction (several may exist; the latest counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedbackRow {
    pub seq: i64,
    pub prediction_id: String,
    pub at: String,
    pub token: String,
    pub consent: bool,
    pub label: Option<String>,
    pub rating: Option<f64>,
    pub comment: Option<String>,
}

const PRED_COLUMNS: &str =
    "id, at, run, model, token, consent, input, output, probability, latency_us, input_chars";

fn pred_row(r: &rusqlite::Row) -> rusqlite::Result<PredictionRow> {
    Ok(PredictionRow {
        id: r.get(0)?,
        at: r.get(1)?,
        run: r.get(2)?,
        model: r.get(3)?,
        token: r.get(4)?,
        consent: r.get(5)?,
        input: r.get(6)?,
        output: r.get(7)?,
        probability: r.get(8)?,
        latency_us: r.get(9)?,
        input_chars: r.get(10)?,
    })
}

impl Store {
    /// Log answers, in one transaction.
    pub fn put_predictions(&mut self, rows: &[PredictionRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let tx = self.write_tx()?;
        {
            let mut stmt = tx
                .prepare_cached(&format!(
                    "INSERT INTO predictions({PRED_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ))
                .map_err(db_err)?;
            for p in rows {
                stmt.execute(params![
                    p.id,
                    p.at,
                    p.run,
                    p.model,
                    p.token,
                    p.consent,
                    p.input,
                    p.output,
                    p.probability,
                    p.latency_us,
                    p.input_chars
                ])
                .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Record feedback on a logged prediction with its audit entry (who = the token's name); an
    /// unknown prediction id, or (unless `any`) one another token asked for, is `NotFound`.
    /// Returns the feedback row's number.
    pub fn put_feedback(&mut self, f: &FeedbackRow, any: bool, command: &str) -> Result<i64> {
        let tx = self.write_tx()?;
        let asked_by: Option<String> = tx
            .query_row(
                "SELECT token FROM predictions WHERE id = ?1",
                params![f.prediction_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if asked_by.is_none_or(|t| !any && t != f.token) {
            return Err(Error::NotFound {
                what: "prediction",
                name: f.prediction_id.clone(),
                hint: "feedback names a `prediction_id` this server returned (logs older than the retention period are purged)".into(),
            });
        }
        tx.execute(
            "INSERT INTO feedback(prediction_id, at, token, consent, label, rating, comment) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![f.prediction_id, f.at, f.token, f.consent, f.label, f.rating, f.comment],
        )
        .map_err(db_err)?;
        let seq = tx.last_insert_rowid();
        crate::audit::append(
            &tx,
            &f.token,
            command,
            &serde_json::json!({"feedback": {"prediction_id": f.prediction_id, "label": f.label, "rating": f.rating}}),
            &serde_json::json!({"feedback_row": seq}),
        )?;
        tx.commit().map_err(db_err)?;
        self.anchor_audit()?;
        Ok(seq)
    }

    /// A logged prediction by id.
    pub fn prediction(&self, id: &str) -> Result<Option<PredictionRow>> {
        self.conn
            .query_row(
                &format!("SELECT {PRED_COLUMNS} FROM predictions WHERE id = ?1"),
                params![id],
                pred_row,
            )
            .optional()
            .map_err(db_err)
    }

    /// Logged predictions at or after `since` (RFC 3339), oldest first.
    pub fn predictions_since(&self, since: &str) -> Result<Vec<PredictionRow>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {PRED_COLUMNS} FROM predictions WHERE at >= ?1 ORDER BY at, id"
            ))
            .map_err(db_err)?;
        let rows = stmt.query_map(params![since], pred_row).map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// The latest `n` logged predictions of `run` (all runs when `None`), oldest first.
    pub fn recent_predictions(&self, run: Option<&str>, n: usize) -> Result<Vec<PredictionRow>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {PRED_COLUMNS} FROM predictions WHERE (?1 IS NULL OR run = ?1) ORDER BY at DESC, id DESC LIMIT ?2"
            ))
            .map_err(db_err)?;
        let rows = stmt
            .query_map(params![run, n as i64], pred_row)
            .map_err(db_err)?;
        let mut out = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)?;
        out.reverse();
        Ok(out)
    }

    /// Every feedback row, oldest first.
    pub fn feedback(&self) -> Result<Vec<FeedbackRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, prediction_id, at, token, consent, label, rating, comment FROM feedback ORDER BY seq")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(FeedbackRow {
                    seq: r.get(0)?,
                    prediction_id: r.get(1)?,
                    at: r.get(2)?,
                    token: r.get(3)?,
                    consent: r.get(4)?,
                    label: r.get(5)?,
                    rating: r.get(6)?,
                    comment: r.get(7)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Delete logged predictions older than `before` (RFC 3339) that carry no feedback (those with
    /// feedback are kept: they become data). Returns how many were deleted.
    pub fn purge_predictions(&mut self, before: &str, who: &str, command: &str) -> Result<usize> {
        let tx = self.write_tx()?;
        let n = tx
            .execute(
                "DELETE FROM predictions WHERE at < ?1 AND id NOT IN (SELECT prediction_id FROM feedback)",
                params![before],
            )
            .map_err(db_err)?;
        if n > 0 {
            crate::audit::append(
                &tx,
                who,
                command,
                &serde_json::json!({"purge_predictions_before": before}),
                &serde_json::json!({"deleted": n}),
            )?;
        }
        tx.commit().map_err(db_err)?;
        if n > 0 {
            self.anchor_audit()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pred(id: &str, at: &str) -> PredictionRow {
        PredictionRow {
            id: id.into(),
            at: at.into(),
            run: "r".into(),
            model: "m".into(),
            token: "app".into(),
            consent: true,
            input: Some("where is my card".into()),
            input_chars: Some(16),
            output: "card_arrival".into(),
            probability: Some(0.9),
            latency_us: 120,
        }
    }

    #[test]
    fn feedback_needs_a_logged_prediction_is_audited_and_purge_keeps_what_has_feedback() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        store
            .put_predictions(&[
                pred("p1", "2026-01-01T00:00:00Z"),
                pred("p2", "2026-01-02T00:00:00Z"),
            ])
            .unwrap();
        let fb = |id: &str, label: &str| FeedbackRow {
            seq: 0,
            prediction_id: id.into(),
            at: "2026-01-03T00:00:00Z".into(),
            token: "ops".into(),
            consent: true,
            label: Some(label.into()),
            rating: None,
            comment: None,
        };
        assert!(matches!(
            store.put_feedback(&fb("nope", "x"), true, "test"),
            Err(Error::NotFound { .. })
        ));
        let a = store
            .put_feedback(&fb("p1", "lost_card"), true, "test")
            .unwrap();
        // Only the token that asked, unless allowed any.
        assert!(matches!(
            store.put_feedback(&fb("p1", "lost_card"), false, "test"),
            Err(Error::NotFound { .. })
        ));
        let b = store
            .put_feedback(&fb("p1", "card_arrival"), true, "test")
            .unwrap();
        assert!(b > a);
        assert_eq!(store.feedback().unwrap().len(), 2);
        let audit = store.audit_entries().unwrap();
        assert_eq!(audit.len(), 2);
        assert_eq!(audit[0].who, "ops");
        assert!(store.verify_audit().unwrap().ok());
        // p2 has no feedback and is old: purged; p1 is kept.
        assert_eq!(
            store
                .purge_predictions("2026-02-01T00:00:00Z", "ana", "test")
                .unwrap(),
            1
        );
        assert!(store.prediction("p1").unwrap().is_some());
        assert!(store.prediction("p2").unwrap().is_none());
    }
}
