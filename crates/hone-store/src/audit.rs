//! The audit log: every command that changes the store appends who, when, the command and its input and
//! output hashes to a hash-chained table; [`Store::verify_audit`] finds an edited, deleted or reordered
//! entry and names it. The chain's head (last sequence number and hash) is anchored in a file outside
//! the database, `.hone/audit-head`, rewritten after every committed append, so that cutting the end of
//! the chain, deleting every entry or replacing the database is found too.
//!
//! What the anchor cannot do: someone who can write both the database and the anchor file can rewrite
//! both consistently, and deleting the anchor leaves a store that reads as "not anchored". Copy the
//! anchor line somewhere you control (a commit, a ticket) to pin the history at that point.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use crate::{Store, db_err};
use hone_core::Result;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: String,
    pub who: String,
    pub command: String,
    pub inputs: serde_json::Value,
    pub outputs: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// What `verify` found wrong with one entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditProblem {
    pub seq: i64,
    pub problem: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    pub n_entries: usize,
    pub problems: Vec<AuditProblem>,
    /// The anchored head `(seq, hash)`, when `.hone/audit-head` exists.
    pub anchor: Option<(i64, String)>,
}

impl AuditReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The file outside the database that holds the chain's head: `SEQ HASH`.
pub(crate) const ANCHOR_FILE: &str = "audit-head";

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn entry_hash(
    seq: i64,
    at: &str,
    who: &str,
    command: &str,
    inputs: &str,
    outputs: &str,
    prev: &str,
) -> String {
    hone_core::hash::KeyHasher::new()
        .part("seq", &seq.to_le_bytes())
        .part("at", at.as_bytes())
        .part("who", who.as_bytes())
        .part("command", command.as_bytes())
        .part("inputs", inputs.as_bytes())
        .part("outputs", outputs.as_bytes())
        .part("prev", prev.as_bytes())
        .finish()
}

pub(crate) fn append(
    conn: &rusqlite::Connection,
    who: &str,
    command: &str,
    inputs: &serde_json::Value,
    outputs: &serde_json::Value,
) -> Result<AuditEntry> {
    let last: Option<(i64, String)> = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok();
    let (seq, prev_hash) = match last {
        Some((s, h)) => (s + 1, h),
        None => (1, GENESIS.to_string()),
    };
    let at = chrono::Utc::now().to_rfc3339();
    let (inputs_s, outputs_s) = (inputs.to_string(), outputs.to_string());
    let hash = entry_hash(seq, &at, who, command, &inputs_s, &outputs_s, &prev_hash);
    conn.execute("INSERT INTO audit(seq, at, who, command, inputs, outputs, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", params![seq, at, who, command, inputs_s, outputs_s, prev_hash, hash]).map_err(db_err)?;
    Ok(AuditEntry {
        seq,
        at,
        who: who.into(),
        command: command.into(),
        inputs: inputs.clone(),
        outputs: outputs.clone(),
        prev_hash,
        hash,
    })
}

impl Store {
    /// Append an audit entry on its own (for commands that change the store without a new version).
    pub fn append_audit(
        &self,
        who: &str,
        command: &str,
        inputs: serde_json::Value,
        outputs: serde_json::Value,
    ) -> Result<AuditEntry> {
        // Reading the head and appending are one write transaction, so two processes cannot both
        // take the same sequence number.
        self.conn.execute_batch("BEGIN IMMEDIATE").map_err(db_err)?;
        let entry = match append(&self.conn, who, command, &inputs, &outputs) {
            Ok(e) => e,
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        };
        self.conn.execute_batch("COMMIT").map_err(db_err)?;
        self.anchor_audit()?;
        Ok(entry)
    }

    /// Rewrite `.hone/audit-head` with the chain's committed head (through a temp file and a rename).
    /// Called after every commit that appended entries; a crash between the commit and this write
    /// leaves the anchor one entry behind, which `verify_audit` accepts.
    pub(crate) fn anchor_audit(&self) -> Result<()> {
        let head: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        let Some((seq, hash)) = head else {
            return Ok(());
        };
        let path = self.dir.join(ANCHOR_FILE);
        // A name of its own, so that two processes anchoring at once never share a temp file.
        let tmp = self.dir.join("tmp").join(format!(
            "{ANCHOR_FILE}.{}.{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{seq} {hash}")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| hone_core::Error::io(&path, e))
    }

    /// The anchored head, if the anchor file exists; an unreadable anchor is a problem in itself.
    fn read_anchor(&self) -> std::result::Result<Option<(i64, String)>, String> {
        let path = self.dir.join(ANCHOR_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let mut it = text.split_whitespace();
        match (it.next().and_then(|s| s.parse::<i64>().ok()), it.next()) {
            (Some(seq), Some(hash)) if hash.len() == 64 => Ok(Some((seq, hash.to_string()))),
            _ => Err(format!("{} does not read as `SEQ HASH`", path.display())),
        }
    }

    /// All audit entries in sequence order.
    pub fn audit_entries(&self) -> Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare("SELECT seq, at, who, command, inputs, outputs, prev_hash, hash FROM audit ORDER BY seq").map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| {
                let j =
                    |s: String| serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s));
                Ok(AuditEntry {
                    seq: r.get(0)?,
                    at: r.get(1)?,
                    who: r.get(2)?,
                    command: r.get(3)?,
                    inputs: j(r.get(4)?),
                    outputs: j(r.get(5)?),
                    prev_hash: r.get(6)?,
                    hash: r.get(7)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Walk the chain: an entry whose content no longer gives its hash was edited; an entry whose
    /// `prev_hash` is not its predecessor's hash follows a deletion or a reordering.
    pub fn verify_audit(&self) -> Result<AuditReport> {
        let mut stmt = self.conn.prepare("SELECT seq, at, who, command, inputs, outputs, prev_hash, hash FROM audit ORDER BY seq").map_err(db_err)?;
        type Row = (i64, String, String, String, String, String, String, String);
        let rows: Vec<Row> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                ))
            })
            .map_err(db_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db_err)?;
        let mut problems = Vec::new();
        let mut expected_prev = GENESIS.to_string();
        let mut expected_seq = 1;
        for (seq, at, who, command, inputs, outputs, prev, hash) in &rows {
            if entry_hash(*seq, at, who, command, inputs, outputs, prev) != *hash {
                problems.push(AuditProblem { seq: *seq, problem: format!("entry {seq} ({command}, {at}) was edited: its content no longer matches its hash") });
            }
            if *prev != expected_prev {
                let what = if *seq != expected_seq {
                    format!(
                        "entries {expected_seq}..{} are missing (deleted) before entry {seq} ({command})",
                        seq - 1
                    )
                } else {
                    format!(
                        "entry {seq} ({command}, {at}) does not follow entry {} in the chain: entries were deleted, reordered or replaced",
                        seq - 1
                    )
                };
                problems.push(AuditProblem {
                    seq: *seq,
                    problem: what,
                });
            }
            expected_prev = hash.clone();
            expected_seq = seq + 1;
        }
        // Run records, frozen test sets, review decisions and dataset versions are covered by the
        // chain: each one's audit entry holds its hash, checked here against what the tables hold now.
        for (seq, _, _, command, inputs, outputs, _, _) in &rows {
            let (Ok(inp), Ok(out)) = (
                serde_json::from_str::<serde_json::Value>(inputs),
                serde_json::from_str::<serde_json::Value>(outputs),
            ) else {
                continue;
            };
            if let Some(problem) = self.cross_check(*seq, command, &inp, &out)? {
                problems.push(AuditProblem { seq: *seq, problem });
            }
        }
        // Approvals and tokens decide what is released and who may call the server: rows the chain
        // does not vouch for are named (and ignored by `approved_run` and `token_vouched`).
        for (seq, problem) in self
            .approval_problems()?
            .into_iter()
            .chain(self.token_problems()?)
        {
            problems.push(AuditProblem { seq, problem });
        }
        let anchor = match self.read_anchor() {
            Ok(a) => a,
            Err(problem) => {
                problems.push(AuditProblem { seq: 0, problem });
                None
            }
        };
        if let Some((aseq, ahash)) = &anchor {
            let last = rows.last().map_or(0, |r| r.0);
            match rows.iter().find(|r| r.0 == *aseq) {
                None => problems.push(AuditProblem {
                    seq: *aseq,
                    problem: format!(
                        "the log was anchored at entry {aseq} but {}: entries were deleted or the database was replaced",
                        if rows.is_empty() { "is empty".to_string() } else { format!("ends at entry {last}") }
                    ),
                }),
                Some(r) if r.7 != *ahash => problems.push(AuditProblem {
                    seq: *aseq,
                    problem: format!(
                        "entry {aseq} is not the anchored one (hash {} vs anchored {}): the database was replaced or rewritten",
                        &r.7[..12],
                        &ahash[..12]
                    ),
                }),
                Some(_) if last > aseq + 1 => problems.push(AuditProblem {
                    seq: aseq + 1,
                    problem: format!(
                        "entries {}..{last} come after the anchored head (entry {aseq}) but were never anchored: written outside hone, or the anchor was rolled back",
                        aseq + 1
                    ),
                }),
                Some(_) => {}
            }
        }
        Ok(AuditReport {
            n_entries: rows.len(),
            problems,
            anchor,
        })
    }
}

impl Store {
    /// What the tables hold now against what audit entry `seq` recorded; `None` when they agree or the
    /// entry covers nothing checkable (entries written before a hash was recorded are not checked).
    fn cross_check(
        &self,
        seq: i64,
        command: &str,
        inputs: &serde_json::Value,
        outputs: &serde_json::Value,
    ) -> Result<Option<String>> {
        use rusqlite::OptionalExtension;
        let one = |sql: &str, key: &dyn rusqlite::ToSql| -> Result<Option<(String, String)>> {
            self.conn
                .query_row(sql, [key], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db_err)
        };
        if let (Some(run), Some(want)) = (outputs["run"].as_str(), outputs["record"].as_str()) {
            return Ok(
                match one("SELECT id, record FROM runs WHERE id = ?1", &run)? {
                    None => Some(format!(
                        "run {run} (entry {seq}) is missing from the runs table"
                    )),
                    Some((_, rec)) if crate::runs::record_hash(&rec) != want => Some(format!(
                        "run {run}'s record was edited after entry {seq} stored it: its hash no longer matches"
                    )),
                    Some(_) => None,
                },
            );
        }
        if let (Some(hash), Some(fseq)) = (outputs["frozen_test"].as_str(), outputs["seq"].as_i64())
        {
            return Ok(
                match one(
                    "SELECT hash, records FROM frozen_tests WHERE seq = ?1",
                    &fseq,
                )? {
                    None => Some(format!(
                        "frozen test set {fseq} (entry {seq}) is missing from the frozen_tests table"
                    )),
                    Some((h, _)) if h != hash => Some(format!(
                        "frozen test set {fseq}'s hash was edited after entry {seq} pinned it"
                    )),
                    Some((_, records)) => match outputs["records"].as_str() {
                        Some(want) if crate::runs::record_hash(&records) != want => Some(format!(
                            "frozen test set {fseq}'s records were edited after entry {seq} pinned them: their hash no longer matches"
                        )),
                        _ => None,
                    },
                },
            );
        }
        if let (Some(want), Some(range)) =
            (inputs["decisions"].as_str(), outputs["rows"].as_array())
        {
            let (Some(first), Some(last)) = (
                range.first().and_then(|v| v.as_i64()),
                range.get(1).and_then(|v| v.as_i64()),
            ) else {
                return Ok(None);
            };
            let stored = self.decision_rows(first, last)?;
            return Ok(
                if stored.len() as i64 != last - first + 1
                    || crate::review::decisions_hash(&stored) != want
                {
                    Some(format!(
                        "review decisions {first}..{last} ({command}, entry {seq}) were edited or deleted after they were recorded: their hash no longer matches"
                    ))
                } else {
                    None
                },
            );
        }
        if let (Some(version), Some(object)) =
            (outputs["version"].as_str(), outputs["object"].as_str())
        {
            return Ok(
                match one("SELECT id, object FROM versions WHERE id = ?1", &version)? {
                    None => Some(format!(
                        "dataset version {version} (entry {seq}) is missing from the versions table"
                    )),
                    Some((_, o)) if o != object => Some(format!(
                        "dataset version {version}'s object was changed after entry {seq} recorded it"
                    )),
                    Some(_) => None,
                },
            );
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;
    use serde_json::json;

    fn store_with(n: usize) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..n {
            store
                .append_audit(
                    "ana",
                    &format!("cmd{i}"),
                    json!({"in": i}),
                    json!({"out": i}),
                )
                .unwrap();
        }
        (dir, store)
    }

    #[test]
    fn intact_chain_verifies() {
        let (_d, s) = store_with(4);
        let r = s.verify_audit().unwrap();
        assert_eq!(r.n_entries, 4);
        assert!(r.ok(), "{:?}", r.problems);
    }

    #[test]
    fn edited_entry_is_named() {
        let (_d, s) = store_with(4);
        s.connection()
            .execute("UPDATE audit SET who = 'mallory' WHERE seq = 2", [])
            .unwrap();
        let r = s.verify_audit().unwrap();
        assert_eq!(r.problems.len(), 1);
        assert_eq!(r.problems[0].seq, 2);
        assert!(r.problems[0].problem.contains("edited"));
    }

    #[test]
    fn deleted_entry_is_named() {
        let (_d, s) = store_with(4);
        s.connection()
            .execute("DELETE FROM audit WHERE seq = 3", [])
            .unwrap();
        let r = s.verify_audit().unwrap();
        assert_eq!(r.problems.len(), 1);
        assert_eq!(r.problems[0].seq, 4);
        assert!(
            r.problems[0].problem.contains("3..3 are missing"),
            "{}",
            r.problems[0].problem
        );
    }

    #[test]
    fn cutting_the_end_emptying_or_replacing_the_log_is_found_by_the_anchor() {
        let (d, s) = store_with(7);
        assert_eq!(s.verify_audit().unwrap().anchor.unwrap().0, 7);
        // Cut the end (a removed review decision, say).
        s.connection()
            .execute("DELETE FROM audit WHERE seq >= 6", [])
            .unwrap();
        let r = s.verify_audit().unwrap();
        assert!(!r.ok());
        assert!(
            r.problems[0].problem.contains("anchored at entry 7"),
            "{r:?}"
        );
        // Every entry gone.
        s.connection().execute("DELETE FROM audit", []).unwrap();
        let r = s.verify_audit().unwrap();
        assert!(r.problems[0].problem.contains("is empty"), "{r:?}");
        drop(s);
        // A zero-length database in place of the real one.
        let db = d.path().join(".hone/hone.db");
        for ext in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
        }
        std::fs::write(&db, b"").unwrap();
        let s = Store::open(d.path()).unwrap();
        assert!(!s.verify_audit().unwrap().ok());
    }

    #[test]
    fn entries_appended_behind_the_anchors_back_are_found() {
        let (d, s) = store_with(3);
        let anchor = std::fs::read_to_string(d.path().join(".hone/audit-head")).unwrap();
        for i in 0..2 {
            s.append_audit("mallory", &format!("forged{i}"), json!({}), json!({}))
                .unwrap();
        }
        // Roll the anchor back as if the two entries were never anchored.
        std::fs::write(d.path().join(".hone/audit-head"), anchor).unwrap();
        let r = s.verify_audit().unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.problem.contains("never anchored")),
            "{r:?}"
        );
        // One entry past the anchor is the crash window between a commit and the anchor write: accepted.
        let (d, s) = store_with(3);
        let anchor = std::fs::read_to_string(d.path().join(".hone/audit-head")).unwrap();
        s.append_audit("ana", "cmd", json!({}), json!({})).unwrap();
        std::fs::write(d.path().join(".hone/audit-head"), anchor).unwrap();
        assert!(s.verify_audit().unwrap().ok());
    }

    #[test]
    fn edited_or_deleted_review_decisions_and_frozen_sets_are_found() {
        let (_d, mut s) = store_with(0);
        let d = |id: &str, label: &str| crate::Decision {
            record_id: id.into(),
            decision: "relabel".into(),
            label: Some(label.into()),
            reviewer: "ana".into(),
            at: "2026-11-30T00:00:00Z".into(),
            note: String::new(),
        };
        s.put_decisions(&[d("a", "spam"), d("b", "ham")], "ana", "review")
            .unwrap();
        s.put_decisions(&[d("c", "spam")], "ana", "review").unwrap();
        s.freeze_test(
            None,
            "h1",
            &json!([{"id": "t1"}, {"id": "t2"}]),
            "first",
            "ana",
            "split",
        )
        .unwrap();
        assert!(s.verify_audit().unwrap().ok());
        let c = s.connection();
        c.execute(
            "UPDATE review_decisions SET label = 'ham' WHERE record_id = 'a'",
            [],
        )
        .unwrap();
        let r = s.verify_audit().unwrap();
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(
            r.problems[0].problem.contains("review decisions 1..2"),
            "{r:?}"
        );
        c.execute(
            "UPDATE review_decisions SET label = 'spam' WHERE record_id = 'a'",
            [],
        )
        .unwrap();
        assert!(s.verify_audit().unwrap().ok());
        c.execute("DELETE FROM review_decisions WHERE record_id = 'c'", [])
            .unwrap();
        let r = s.verify_audit().unwrap();
        assert!(
            r.problems[0].problem.contains("review decisions 3..3"),
            "{r:?}"
        );
        c.execute("UPDATE frozen_tests SET records = '[{\"id\":\"t1\"}]'", [])
            .unwrap();
        let r = s.verify_audit().unwrap();
        assert!(
            r.problems
                .iter()
                .any(|p| p.problem.contains("frozen test set 1's records")),
            "{r:?}"
        );
    }

    #[test]
    fn reordered_entries_are_named() {
        let (_d, s) = store_with(4);
        // Swap the contents of entries 2 and 3 while keeping their sequence numbers.
        let c = s.connection();
        c.execute_batch("UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = -2;").unwrap();
        let r = s.verify_audit().unwrap();
        assert!(!r.ok());
        assert!(r.problems.iter().any(|p| p.seq == 2));
    }
}
