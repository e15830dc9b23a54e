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
