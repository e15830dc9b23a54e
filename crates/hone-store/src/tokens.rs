//! Access tokens for `hone serve`: a name, a role, an optional expiry and a revocation time per
//! token, keyed by a hash of the token (the token itself is never stored); creating and revoking
//! are written with their audit entries in one transaction.

use hone_core::Result;
use rusqlite::{OptionalExtension, params};
use serde::{Deserialize, Serialize};

use crate::{Store, db_err};

/// One stored token (without the token).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRow {
    /// blake3 of the token, hex.
    pub hash: String,
    pub name: String,
    /// `predict`, `feedback`, `review` or `admin`.
    pub role: String,
    pub created_at: String,
    pub created_by: String,
    pub expires_at: Option<String>,
    pub revoked_at: Option<String>,
}

fn row(r: &rusqlite::Row) -> rusqlite::Result<TokenRow> {
    Ok(TokenRow {
        hash: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        created_at: r.get(3)?,
        created_by: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

const COLUMNS: &str = "hash, name, role, created_at, created_by, expires_at, revoked_at";

impl Store {
    /// Store a new token's row with its audit entry. A live token of the same name is an error.
    pub fn put_token(&mut self, t: &TokenRow, command: &str) -> Result<()> {
        let tx = self.write_tx()?;
        let clash: Option<String> = tx
            .query_row(
                "SELECT name FROM tokens WHERE name = ?1 AND revoked_at IS NULL",
                params![t.name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        if clash.is_some() {
            return Err(hone_core::Error::Usage(format!(
                "a live token is already named `{}`; revoke it first (`hone token revoke {}`) or choose another name",
                t.name, t.name
            )));
        }
        tx.execute(
            &format!("INSERT INTO tokens({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
            params![
                t.hash,
                t.name,
                t.role,
                t.created_at,
                t.created_by,
                t.expires_at,
                t.revoked_at
            ],
        )
        .map_err(db_err)?;
        crate::audit::append(
            &tx,
            &t.created_by,
            command,
            &serde_json::json!({"token": {"name": t.name, "role": t.role, "expires_at": t.expires_at}}),
            &serde_json::json!({"token_hash": t.hash}),
        )?;
        tx.commit().map_err(db_err)?;
        self.anchor_audit()
    }

    /// Revoke the live token named `name`; `false` when there is none.
    pub fn revoke_token(&mut self, name: &str, who: &str, at: &str, command: &str) -> Result<bool> {
        let tx = self.write_tx()?;
        let n = tx
            .execute(
                "UPDATE tokens SET revoked_at = ?1 WHERE name = ?2 AND revoked_at IS NULL",
                params![at, name],
            )
            .map_err(db_err)?;
        if n == 0 {
            return Ok(false);
        }
        crate::audit::append(
            &tx,
            who,
            command,
            &serde_json::json!({"revoke_token": name}),
            &serde_json::json!({"revoked_at": at}),
        )?;
        tx.commit().map_err(db_err)?;
        self.anchor_audit()?;
        Ok(true)
    }

    /// Every token row, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenRow>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM tokens ORDER BY created_at, name"
            ))
            .map_err(db_err)?;
        let rows = stmt.query_map([], row).map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// The token with this hash as the audit chain records it: `None` when no entry created it (a
    /// row written into the table by hand); its name, role and expiry from its creation entry and
    /// revoked when either its row or a later revocation entry says so (so a revocation cannot be
    /// undone by editing the table). Unknown hashes are `None`.
    pub fn token_vouched(&self, hash: &str) -> Result<Option<TokenRow>> {
        let Some(row) = self.token_by_hash(hash)? else {
            return Ok(None);
        };
        type Created = (i64, Option<String>, Option<String>, Option<String>);
        let created: Option<Created> = self
            .conn
            .query_row(
                "SELECT seq, json_extract(inputs, '$.token.name'), json_extract(inputs, '$.token.role'), \
                 json_extract(inputs, '$.token.expires_at') FROM audit \
                 WHERE json_valid(outputs) AND json_extract(outputs, '$.token_hash') = ?1 ORDER BY seq LIMIT 1",
                params![hash],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()
            .map_err(db_err)?;
        let Some((entry, Some(name), Some(role), expires_at)) = created else {
            return Ok(None);
        };
        let revoked: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT json_extract(outputs, '$.revoked_at') FROM audit WHERE json_valid(inputs) \
                 AND json_extract(inputs, '$.revoke_token') = ?1 AND seq > ?2 ORDER BY seq LIMIT 1",
                params![name, entry],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
        Ok(Some(TokenRow {
            revoked_at: row
                .revoked_at
                .clone()
                .or(revoked.map(|at| at.unwrap_or_else(|| "(in the audit chain)".into()))),
            hash: row.hash,
            name,
            role,
            expires_at,
            created_at: row.created_at,
            created_by: row.created_by,
        }))
    }

    /// Token rows that differ from what the audit chain recorded, as problems for `verify_audit`:
    /// rows no entry created, and name, role, expiry or revocation edited since.
    pub(crate) fn token_problems(&self) -> Result<Vec<(i64, String)>> {
        let mut out = Vec::new();
        for row in self.tokens()? {
            match self.token_vouched(&row.hash)? {
                None => out.push((0, format!(
                    "token `{}` ({}) has no audit entry that created it: it was written outside hone and is refused",
                    row.name, row.role
                ))),
                Some(v) if v.name != row.name || v.role != row.role || v.expires_at != row.expires_at => {
                    out.push((0, format!(
                        "token `{}` was edited outside hone (its audit entry says `{}`, role `{}`, expiry {}); the audited values hold",
                        row.name, v.name, v.role, v.expires_at.as_deref().unwrap_or("never")
                    )))
                }
                Some(v) if v.revoked_at.is_some() && row.revoked_at.is_none() => out.push((0, format!(
                    "token `{}` was revoked in the audit chain but its row was un-revoked outside hone; it stays revoked",
                    row.name
                ))),
                Some(_) => {}
            }
        }
        Ok(out)
    }

    /// The row of the token with this hash, revoked or not.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRow>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM tokens WHERE hash = ?1"),
                params![hash],
                row,
            )
            .optional()
            .map_err(db_err)
    }
}
