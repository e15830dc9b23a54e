//! Frozen test sets, splits (with the training records the contamination remedy removed) and runs.
//! Payloads are JSON: the store keeps them whole and atomically, and knows nothing of their insides.

use hone_core::{Error, Result};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, db_err};

/// A frozen test set: the pinned (id, content hash) list, as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenTest {
    pub seq: i64,
    pub created_at: String,
    pub hash: String,
    pub records: serde_json::Value,
    pub reason: String,
    pub who: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitRow {
    pub id: String,
    pub version: String,
    pub created_at: String,
    pub frozen_seq: i64,
    /// Object holding the JSON assignment (record id → part).
    pub assignment: String,
    pub summary: serde_json::Value,
}

/// A stored run. The store keeps `config` and `record` as JSON and knows nothing of their insides; the
/// pipeline reads them as typed values (`RunRow<RunConfig, RunRecord>` in hone-train).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow<C = serde_json::Value, R = serde_json::Value> {
    pub id: String,
    pub seq: i64,
    pub created_at: String,
    pub model: String,
    pub kind: String,
    pub version: String,
    pub split: String,
    pub seed: i64,
    pub config: C,
    pub hone_version: String,
    /// Metrics, per-epoch curves, times, cost, gates, artifact hashes.
    pub record: R,
}

impl<C, R> RunRow<C, R> {
    /// The same row with its payloads converted (e.g. parsed into typed values).
    pub fn try_map<C2, R2, E>(
        self,
        config: impl FnOnce(C) -> std::result::Result<C2, E>,
        record: impl FnOnce(R) -> std::result::Result<R2, E>,
    ) -> std::result::Result<RunRow<C2, R2>, E> {
        Ok(RunRow {
            config: config(self.config)?,
            record: record(self.record)?,
            id: self.id,
            seq: self.seq,
            created_at: self.created_at,
            model: self.model,
            kind: self.kind,
            version: self.version,
            split: self.split,
            seed: self.seed,
            hone_version: self.hone_version,
        })
    }
}

/// The hash the audit log keeps of a run's stored record, so that an edited record is found.
pub(crate) fn record_hash(stored: &str) -> String {
    blake3::hash(stored.as_bytes()).to_hex().to_string()
}

/// The model one `hone run` chose among its candidates, and by which rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChoiceRow {
    pub seq: i64,
    pub at: String,
    pub split: String,
    pub run: String,
    /// Every candidate run id, in the order the rule saw them.
    pub candidates: Vec<String>,
    pub rule: String,
}

/// A training record a split removed (the contamination remedy), with the rule, the reason and the test
/// record it leaked into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitDrop {
    pub split: String,
    pub record_id: String,
    pub rule: String,
    pub reason: String,
    pub related_id: Option<String>,
}

fn json(s: String) -> serde_json::Value {
    serde_json::from_str(&s).unwrap_or(serde_json::Value::Null)
}

const RUN_COLS: &str =
    "id, seq, created_at, model, kind, version, split, seed, config, hone_version, record";

fn row_to_run(r: &rusqlite::Row) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        seq: r.get(1)?,
        created_at: r.get(2)?,
        model: r.get(3)?,
        kind: r.get(4)?,
        version: r.get(5)?,
        split: r.get(6)?,
        seed: r.get(7)?,
        config: json(r.get(8)?),
        hone_version: r.get(9)?,
        record: json(r.get(10)?),
    })
}

impl Store {
    /// The current frozen test set (the latest one), if any.
    pub fn frozen_test(&self) -> Result<Option<FrozenTest>> {
        self.conn
            .query_row("SELECT seq, created_at, hash, records, reason, who FROM frozen_tests ORDER BY seq DESC LIMIT 1", [], |r| {
                Ok(FrozenTest { seq: r.get(0)?, created_at: r.get(1)?, hash: r.get(2)?, records: json(r.get(3)?), reason: r.get(4)?, who: r.get(5)? })
            })
            .optional()
            .map_err(db_err)
    }

    /// Pin a new frozen test set (the first split, or `--refreeze`), with its audit entry, atomically.
    /// `replacing` is the frozen set the caller split against (`None` for the first); if another
    /// command froze one meanwhile, nothing is written and `None` comes back (split again against the
    /// new one), so that concurrent first runs leave one frozen set, never two.
    pub fn freeze_test(
        &mut self,
        replacing: Option<i64>,
        hash: &str,
        records: &serde_json::Value,
        reason: &str,
        who: &str,
        command: &str,
    ) -> Result<Option<i64>> {
        // IMMEDIATE: the check below and the insert are one write transaction; a concurrent writer
        // waits (busy timeout) instead of interleaving.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)?;
        let current: Option<i64> = tx
            .query_row("SELECT MAX(seq) FROM frozen_tests", [], |r| r.get(0))
            .map_err(db_err)?;
        if current != replacing {
            return Ok(None);
        }
        let seq = current.unwrap_or(0) + 1;
        let records = records.to_string();
        tx.execute("INSERT INTO frozen_tests(seq, created_at, hash, records, reason, who) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", params![seq, chrono::Utc::now().to_rfc3339(), hash, records, reason, who]).map_err(db_err)?;
        // The stored record list's hash goes into the chain, so that `audit verify` finds an edited
        // frozen set (a test record swapped out, a label changed) as it finds an edited run.
        crate::audit::append(
            &tx,
            who,
            command,
            &serde_json::json!({"reason": reason}),
            &serde_json::json!({"frozen_test": hash, "seq": seq, "records": record_hash(&records)}),
        )?;
        tx.commit().map_err(db_err)?;
        self.anchor_audit()?;
        Ok(Some(seq))
    }

    /// Record a split and the training records it removed (rule, reason, related test record).
    pub fn put_split(&mut self, split: &SplitRow, removed: &[SplitDrop]) -> Result<()> {
        let tx = self.write_tx()?;
        let exists: bool = tx
            .query_row(
                "SELECT 1 FROM splits WHERE id = ?1",
                [&split.id],
                |_| Ok(()),
            )
            .optional()
            .map_err(db_err)?
            .is_some();
        if !exists {
            tx.execute(
                "INSERT INTO splits(id, version, created_at, frozen_seq, assignment, summary) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![split.id, split.version, split.created_at, split.frozen_seq, split.assignment, split.summary.to_string()],
            )
            .map_err(db_err)?;
            for (i, d) in removed.iter().enumerate() {
                tx.execute("INSERT INTO split_lineage(split, seq, record_id, rule, reason, related_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)", params![split.id, i as i64, d.record_id, d.rule, d.reason, d.related_id]).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// Every split, in creation order.
    pub fn splits(&self) -> Result<Vec<SplitRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, version, created_at, frozen_seq, assignment, summary FROM splits ORDER BY created_at, id")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                Ok(SplitRow {
                    id: r.get(0)?,
                    version: r.get(1)?,
                    created_at: r.get(2)?,
                    frozen_seq: r.get(3)?,
                    assignment: r.get(4)?,
                    summary: json(r.get(5)?),
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    pub fn split(&self, id: &str) -> Result<Option<SplitRow>> {
        self.conn
            .query_row("SELECT id, version, created_at, frozen_seq, assignment, summary FROM splits WHERE id = ?1", [id], |r| {
                Ok(SplitRow { id: r.get(0)?, version: r.get(1)?, created_at: r.get(2)?, frozen_seq: r.get(3)?, assignment: r.get(4)?, summary: json(r.get(5)?) })
            })
            .optional()
            .map_err(db_err)
    }

    /// Every split's removal of one record.
    pub fn split_lineage_of(&self, record_id: &str) -> Result<Vec<SplitDrop>> {
        let mut stmt = self.conn.prepare("SELECT split, record_id, rule, reason, related_id FROM split_lineage WHERE record_id = ?1 ORDER BY split, seq").map_err(db_err)?;
        let rows = stmt
            .query_map([record_id], |r| {
                Ok(SplitDrop {
                    split: r.get(0)?,
                    record_id: r.get(1)?,
                    rule: r.get(2)?,
                    reason: r.get(3)?,
                    related_id: r.get(4)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Record a run and its audit entry atomically. A run id that exists is left as it is.
    pub fn put_run(&mut self, run: &RunRow, who: &str, command: &str) -> Result<RunRow> {
        let tx = self.write_tx()?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM runs WHERE id = ?1", [&run.id], |_| Ok(()))
            .optional()
            .map_err(db_err)?
            .is_some();
        let record = run.record.to_string();
        if !exists {
            let seq: i64 = tx
                .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs", [], |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            tx.execute(
                &format!("INSERT INTO runs({RUN_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![run.id, seq, chrono::Utc::now().to_rfc3339(), run.model, run.kind, run.version, run.split, run.seed, run.config.to_string(), hone_core::HONE_VERSION, record],
            )
            .map_err(db_err)?;
            crate::audit::append(
                &tx,
                who,
                command,
                &serde_json::json!({"version": run.version, "split": run.split, "model": run.model}),
                &serde_json::json!({"run": run.id, "artifacts": run.record.get("artifacts"), "record": record_hash(&record)}),
            )?;
        }
        tx.commit().map_err(db_err)?;
        self.anchor_audit()?;
        self.run(&run.id)?
            .ok_or_else(|| Error::Internal("run vanished after commit".into()))
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRow>> {
        self.conn
            .query_row(
                &format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"),
                [id],
                row_to_run,
            )
            .optional()
            .map_err(db_err)
    }

    /// All runs, oldest first.
    pub fn runs(&self) -> Result<Vec<RunRow>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {RUN_COLS} FROM runs ORDER BY seq"))
            .map_err(db_err)?;
        let rows = stmt.query_map([], row_to_run).map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Record which run a `hone run` chose (appended; the latest is the current choice).
    pub fn put_choice(
        &mut self,
        split: &str,
        run: &str,
        candidates: &[String],
        rule: &str,
    ) -> Result<()> {
        let candidates =
            serde_json::to_string(candidates).map_err(|e| Error::Internal(e.to_string()))?;
        self.conn
            .execute(
                "INSERT INTO choices(at, split, run, candidates, rule) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    chrono::Utc::now().to_rfc3339(),
                    split,
                    run,
                    candidates,
                    rule
                ],
            )
            .map_err(db_err)?;
        Ok(())
    }

    /// The latest recorded choice, if any `hone run` recorded one.
    pub fn latest_choice(&self) -> Result<Option<ChoiceRow>> {
        self.conn
            .query_row(
                "SELECT seq, at, split, run, candidates, rule FROM choices ORDER BY seq DESC LIMIT 1",
                [],
                |r| {
                    Ok(ChoiceRow {
                        seq: r.get(0)?,
                        at: r.get(1)?,
                        split: r.get(2)?,
                        run: r.get(3)?,
                        candidates: serde_json::from_str(&r.get::<_, String>(4)?)
                            .unwrap_or_default(),
                        rule: r.get(5)?,
                    })
                },
            )
            .optional()
            .map_err(db_err)
    }

    /// A run by id prefix or by its sequence number (`#3` or `3`).
    pub fn resolve_run(&self, which: &str) -> Result<RunRow> {
        let runs = self.runs()?;
        let w = which.trim_start_matches('#');
        if let Ok(seq) = w.parse::<i64>()
            && let Some(r) = runs.iter().find(|r| r.seq == seq)
        {
            return Ok(r.clone());
        }
        let matches: Vec<&RunRow> = runs.iter().filter(|r| r.id.starts_with(w)).collect();
        match matches.len() {
            1 => Ok(matches[0].clone()),
            0 => Err(Error::NotFound {
                what: "run",
                name: which.to_string(),
                hint: "`hone runs` lists runs".into(),
            }),
            n => Err(Error::Usage(format!(
                "run prefix `{which}` is ambiguous ({n} runs match)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use serde_json::json;

    #[test]
    fn frozen_tests_are_versioned_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        assert!(s.frozen_test().unwrap().is_none());
        s.freeze_test(
            None,
            "h1",
            &json!([{"id": "a", "content_hash": "x"}]),
            "first split",
            "ana",
            "hone split",
        )
        .unwrap();
        s.freeze_test(
            Some(1),
            "h2",
            &json!([]),
            "relabelled test",
            "ana",
            "hone split --refreeze",
        )
        .unwrap();
        let f = s.frozen_test().unwrap().unwrap();
        assert_eq!(
            (f.seq, f.hash.as_str(), f.reason.as_str()),
            (2, "h2", "relabelled test")
        );
        assert_eq!(s.audit_entries().unwrap().len(), 2);
        // A writer that split against an older frozen set is refused, and writes nothing.
        let late = s
            .freeze_test(Some(1), "h3", &json!([]), "late", "ana", "hone split")
            .unwrap();
        assert_eq!(late, None);
        assert_eq!(s.frozen_test().unwrap().unwrap().seq, 2);
        assert!(s.verify_audit().unwrap().ok());
    }
}
