//! Dataset versions with their lineage and quarantine rows, committed in one transaction together with
//! the audit entry of the command that made them.

use hone_core::{Action, Error, LineageEntry, Quarantined, Result};
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::audit::AuditEntry;
use crate::{Store, db_err};

/// A dataset version to commit. JSON fields are opaque to the store.
#[derive(Debug, Clone)]
pub struct NewVersion {
    pub id: String,
    pub parent: Option<String>,
    pub object: String,
    pub n_input: u64,
    pub n_records: u64,
    pub n_quarantined: u64,
    pub passes: serde_json::Value,
    pub sources: serde_json::Value,
    pub policy: serde_json::Value,
    pub summary: serde_json::Value,
}

/// A committed dataset version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRow {
    pub id: String,
    pub seq: i64,
    pub created_at: String,
    pub parent: Option<String>,
    pub object: String,
    pub n_input: u64,
    pub n_records: u64,
    pub n_quarantined: u64,
    pub passes: serde_json::Value,
    pub sources: serde_json::Value,
    pub policy: serde_json::Value,
    pub summary: serde_json::Value,
    pub hone_version: String,
}

const VERSION_COLS: &str = "id, seq, created_at, parent, object, n_input, n_records, n_quarantined, passes, sources, policy, summary, hone_version";

fn row_to_version(r: &rusqlite::Row) -> rusqlite::Result<VersionRow> {
    let json = |i: usize| -> rusqlite::Result<serde_json::Value> {
        let s: String = r.get(i)?;
        Ok(serde_json::from_str(&s).unwrap_or(serde_json::Value::Null))
    };
    Ok(VersionRow {
        id: r.get(0)?,
        seq: r.get(1)?,
        created_at: r.get(2)?,
        parent: r.get(3)?,
        object: r.get(4)?,
        n_input: r.get::<_, i64>(5)? as u64,
        n_records: r.get::<_, i64>(6)? as u64,
        n_quarantined: r.get::<_, i64>(7)? as u64,
        passes: json(8)?,
        sources: json(9)?,
        policy: json(10)?,
        summary: json(11)?,
        hone_version: r.get(12)?,
    })
}

impl Store {
    /// Commit a version, its lineage, its quarantine rows and the audit entry atomically. `None` when the
    /// version already exists (another process committed the same inputs first; a version id is the hash
    /// of its inputs, so its content is the same): nothing is written.
    pub fn commit_version(
        &mut self,
        v: &NewVersion,
        lineage: &[LineageEntry],
        quarantine: &[Quarantined],
        audit: (&str, &str, serde_json::Value, serde_json::Value),
    ) -> Result<Option<AuditEntry>> {
        let tx = self.write_tx()?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM versions WHERE id = ?1", [&v.id], |_| Ok(()))
            .optional()
            .map_err(db_err)?
            .is_some();
        if exists {
            return Ok(None);
        }
        let seq: i64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM versions", [], |r| {
                r.get(0)
            })
            .map_err(db_err)?;
        tx.execute(
            &format!("INSERT INTO versions({VERSION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"),
            params![
                v.id,
                seq,
                chrono::Utc::now().to_rfc3339(),
                v.parent,
                v.object,
                v.n_input as i64,
                v.n_records as i64,
                v.n_quarantined as i64,
                v.passes.to_string(),
                v.sources.to_string(),
                v.policy.to_string(),
                v.summary.to_string(),
                hone_core::HONE_VERSION
            ],
        )
        .map_err(db_err)?;
        {
            let mut stmt = tx.prepare("INSERT INTO lineage(version, seq, record_id, source, pass, action, rule, reason, related_id, before_hash, diff) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)").map_err(db_err)?;
            for (i, l) in lineage.iter().enumerate() {
                stmt.execute(params![
                    v.id,
                    i as i64,
                    l.record_id,
                    l.source,
                    l.pass,
                    l.action.as_str(),
                    l.rule,
                    l.reason,
                    l.related_id,
                    l.before_hash,
                    l.diff
                ])
                .map_err(db_err)?;
            }
            let mut stmt = tx.prepare("INSERT INTO quarantine(version, id, source, file, line, field, reason, excerpt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)").map_err(db_err)?;
            for q in quarantine {
                stmt.execute(params![
                    v.id,
                    q.id,
                    q.source,
                    q.file,
                    q.line as i64,
                    q.field,
                    q.reason,
                    q.excerpt
                ])
                .map_err(db_err)?;
            }
        }
        let (who, command, inputs, outputs) = audit;
        let entry = crate::audit::append(&tx, who, command, &inputs, &outputs)?;
        tx.commit().map_err(db_err)?;
        self.anchor_audit()?;
        Ok(Some(entry))
    }

    /// All versions, oldest first.
    pub fn versions(&self) -> Result<Vec<VersionRow>> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {VERSION_COLS} FROM versions ORDER BY seq"))
            .map_err(db_err)?;
        let rows = stmt.query_map([], row_to_version).map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// A version by id or unique id prefix; `None` means the latest.
    pub fn resolve_version(&self, which: Option<&str>) -> Result<VersionRow> {
        let found = match which {
            None => self
                .conn
                .query_row(
                    &format!("SELECT {VERSION_COLS} FROM versions ORDER BY seq DESC LIMIT 1"),
                    [],
                    row_to_version,
                )
                .optional()
                .map_err(db_err)?,
            Some(p) => {
                let mut stmt = self
                    .conn
                    .prepare(&format!(
                        "SELECT {VERSION_COLS} FROM versions WHERE id LIKE ?1 || '%' ORDER BY seq"
                    ))
                    .map_err(db_err)?;
                let rows: Vec<VersionRow> = stmt
                    .query_map([p], row_to_version)
                    .map_err(db_err)?
                    .collect::<rusqlite::Result<_>>()
                    .map_err(db_err)?;
                if rows.len() > 1 {
                    return Err(Error::Usage(format!(
                        "version prefix `{p}` is ambiguous ({} versions match); give more characters",
                        rows.len()
                    )));
                }
                rows.into_iter().next()
            }
        };
        found.ok_or_else(|| Error::NotFound {
            what: "dataset version",
            name: which.unwrap_or("(latest)").to_string(),
            hint: "`hone data log` lists versions; `hone data clean` makes one".into(),
        })
    }

    /// Whether a version with this exact id exists.
    pub fn has_version(&self, id: &str) -> Result<bool> {
        self.conn
            .query_row("SELECT 1 FROM versions WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map(|o| o.is_some())
            .map_err(db_err)
    }

    /// Lineage entries of one version (in the order the passes wrote them).
    pub fn lineage(&self, version: &str) -> Result<Vec<LineageEntry>> {
        let mut stmt = self.conn.prepare("SELECT record_id, source, pass, action, rule, reason, related_id, before_hash, diff FROM lineage WHERE version = ?1 ORDER BY seq").map_err(db_err)?;
        let rows = stmt.query_map([version], row_to_lineage).map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Lineage entries of one record in one version.
    pub fn lineage_of(&self, version: &str, record_id: &str) -> Result<Vec<LineageEntry>> {
        let mut stmt = self.conn.prepare("SELECT record_id, source, pass, action, rule, reason, related_id, before_hash, diff FROM lineage WHERE version = ?1 AND record_id = ?2 ORDER BY seq").map_err(db_err)?;
        let rows = stmt
            .query_map([version, record_id], row_to_lineage)
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Quarantined rows of one version.
    pub fn quarantine(&self, version: &str) -> Result<Vec<Quarantined>> {
        let mut stmt = self.conn.prepare("SELECT id, source, file, line, field, reason, excerpt FROM quarantine WHERE version = ?1 ORDER BY source, line").map_err(db_err)?;
        let rows = stmt
            .query_map([version], |r| {
                Ok(Quarantined {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    file: r.get(2)?,
                    line: r.get::<_, i64>(3)? as u64,
                    field: r.get(4)?,
                    reason: r.get(5)?,
                    excerpt: r.get(6)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }
}

fn row_to_lineage(r: &rusqlite::Row) -> rusqlite::Result<LineageEntry> {
    let action: String = r.get(3)?;
    Ok(LineageEntry {
        record_id: r.get(0)?,
        source: r.get(1)?,
        pass: r.get(2)?,
        action: Action::parse(&action).unwrap_or(Action::Flag),
        rule: r.get(4)?,
        reason: r.get(5)?,
        related_id: r.get(6)?,
        before_hash: r.get(7)?,
        diff: r.get(8)?,
    })
}
