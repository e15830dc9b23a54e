//! SQLite schema and forward-only migrations, keyed by `PRAGMA user_version`.

use hone_core::Result;
use rusqlite::Connection;

use crate::db_err;

/// Each entry migrates from version `i` to `i + 1`. Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: objects, dataset versions, lineage, quarantine, audit.
    r#"
    CREATE TABLE objects (
        hash TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE versions (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        parent TEXT REFERENCES versions(id),
        object TEXT NOT NULL REFERENCES objects(hash),
        n_input INTEGER NOT NULL,
        n_records INTEGER NOT NULL,
        n_quarantined INTEGER NOT NULL,
        passes TEXT NOT NULL,
        sources TEXT NOT NULL,
        policy TEXT NOT NULL,
        summary TEXT NOT NULL,
        hone_version TEXT NOT NULL
    );
    CREATE TABLE lineage (
        version TEXT NOT NULL REFERENCES versions(id),
        seq INTEGER NOT NULL,
        record_id TEXT NOT NULL,
        source TEXT NOT NULL,
        pass TEXT NOT NULL,
        action TEXT NOT NULL,
        rule TEXT NOT NULL,
        reason TEXT NOT NULL,
        related_id TEXT,
        before_hash TEXT,
        diff TEXT,
        PRIMARY KEY (version, seq)
    );
    CREATE INDEX lineage_record ON lineage(record_id);
    CREATE TABLE quarantine (
        version TEXT NOT NULL REFERENCES versions(id),
        id TEXT NOT NULL,
        source TEXT NOT NULL,
        file TEXT NOT NULL,
        line INTEGER NOT NULL,
        field TEXT NOT NULL,
        reason TEXT NOT NULL,
        excerpt TEXT NOT NULL,
        PRIMARY KEY (version, id)
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        command TEXT NOT NULL,
        inputs TEXT NOT NULL,
        outputs TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    "#,
    // 2: frozen test sets, splits and their lineage, runs.
    r#"
    CREATE TABLE frozen_tests (
        seq INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        hash TEXT NOT NULL,
        records TEXT NOT NULL,
        reason TEXT NOT NULL,
        who TEXT NOT NULL
    );
    CREATE TABLE splits (
        id TEXT PRIMARY KEY,
        version TEXT NOT NULL REFERENCES versions(id),
        created_at TEXT NOT NULL,
        frozen_seq INTEGER NOT NULL REFERENCES frozen_tests(seq),
        assignment TEXT NOT NULL REFERENCES objects(hash),
        summary TEXT NOT NULL
    );
    CREATE TABLE split_lineage (
        split TEXT NOT NULL REFERENCES splits(id),
        seq INTEGER NOT NULL,
        record_id TEXT NOT NULL,
        rule TEXT NOT NULL,
        reason TEXT NOT NULL,
        related_id TEXT,
        PRIMARY KEY (split, seq)
    );
    CREATE INDEX split_lineage_record ON split_lineage(record_id);
    CREATE TABLE runs (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        model TEXT NOT NULL,
        kind TEXT NOT NULL,
        version TEXT NOT NULL REFERENCES versions(id),
        split TEXT NOT NULL REFERENCES splits(id),
        seed INTEGER NOT NULL,
        config TEXT NOT NULL,
        hone_version TEXT NOT NULL,
        record TEXT NOT NULL
    );
    "#,
    // 3: scans (label issues, poisoning) and review decisions.
    r#"
    CREATE TABLE scans (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        version TEXT NOT NULL REFERENCES versions(id),
        created_at TEXT NOT NULL,
        object TEXT NOT NULL REFERENCES objects(hash),
        summary TEXT NOT NULL
    );
    CREATE TABLE review_decisions (
        seq INTEGER PRIMARY KEY,
        record_id TEXT NOT NULL,
        decision TEXT NOT NULL,
        label TEXT,
        reviewer TEXT NOT NULL,
        at TEXT NOT NULL,
        note TEXT NOT NULL
    );
    CREATE INDEX review_decisions_record ON review_decisions(record_id);
    "#,
    // 4: the embedding cache: one vector per (model + settings, text), content-addressed by that key.
    r#"
    CREATE TABLE embeddings (
        key TEXT PRIMARY KEY,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL
    );
    "#,
    // 5: the chosen model of each `hone run` (one rule, applied once; predict/export/reports read it back).
    r#"
    CREATE TABLE choices (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        split TEXT NOT NULL,
        run TEXT NOT NULL,
        candidates TEXT NOT NULL,
        rule TEXT NOT NULL
    );
    "#,
    // 6: answer reviews of generate runs: each import is one row pointing at the object that holds
    // the reviewer's ratings and marks.
    r#"
    CREATE TABLE answer_reviews (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        run TEXT NOT NULL,
        object TEXT NOT NULL REFERENCES objects(hash)
    );
    "#,
    // 7: approvals of runs for release (and their revocations), with the checklist hone computed.
    r#"
    CREATE TABLE approvals (
        seq INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        who TEXT NOT NULL,
        run TEXT NOT NULL REFERENCES runs(id),
        action TEXT NOT NULL CHECK (action IN ('approve', 'revoke')),
        reason TEXT NOT NULL,
        checklist TEXT NOT NULL
    );
    "#,
    // 8: access tokens for `hone serve`: only a hash of each token is kept.
    r#"
    CREATE TABLE tokens (
        hash TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('predict', 'feedback', 'review', 'admin')),
        created_at TEXT NOT NULL,
        created_by TEXT NOT NULL,
        expires_at TEXT,
        revoked_at TEXT
    );
    CREATE UNIQUE INDEX tokens_live_name ON tokens(name) WHERE revoked_at IS NULL;
    "#,
    // 9: what `hone serve` answered (inputs PII-masked, or withheld without consent) and the feedback
    // on it; every feedback row is written with its audit entry.
    r#"
    CREATE TABLE predictions (
        id TEXT PRIMARY KEY,
        at TEXT NOT NULL,
        run TEXT NOT NULL,
        model TEXT NOT NULL,
        token TEXT NOT NULL,
        consent INTEGER NOT NULL,
        input TEXT,
        output TEXT NOT NULL,
        probability REAL,
        latency_us INTEGER NOT NULL
    );
    CREATE INDEX predictions_at ON predictions(at);
    CREATE TABLE feedback (
        seq INTEGER PRIMARY KEY,
        prediction_id TEXT NOT NULL REFERENCES predictions(id),
        at TEXT NOT NULL,
        token TEXT NOT NULL,
        consent INTEGER NOT NULL,
        label TEXT,
        rating REAL,
        comment TEXT
    );
    CREATE INDEX feedback_prediction ON feedback(prediction_id);
    -- Token checks read the token's creation and revocation entries; the audit grows with every
    -- feedback entry, so these lookups are indexed.
    CREATE INDEX audit_token_hash ON audit(json_extract(outputs, '$.token_hash')) WHERE json_valid(outputs);
    CREATE INDEX audit_revoke_token ON audit(json_extract(inputs, '$.revoke_token')) WHERE json_valid(inputs);
    "#,
    // 10: the input's length in characters, kept with or without consent (a length is not
    // content), so drift can watch input length on every answer.
    r#"
    ALTER TABLE predictions ADD COLUMN input_chars INTEGER;
    "#,
];

/// The schema version this hone writes and reads.
pub(crate) const LATEST: usize = MIGRATIONS.len();

pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map_err(db_err)? as usize;
    if current > MIGRATIONS.len() {
        return Err(hone_core::Error::Store(format!(
            "this store was written by a newer hone (schema {current}, this hone knows {}); upgrade hone",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)?;
        // Another process may have migrated since `current` was read: re-read under the write lock.
        let now: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db_err)?;
        if now as usize > i {
            continue;
        }
        tx.execute_batch(sql).map_err(db_err)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
    }
    Ok(())
}
