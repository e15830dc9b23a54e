//! Content-addressed, immutable objects: `objects/<2 hex>/<rest of the blake3 hex>`, written to a temp file,
//! synced and renamed into place so a reader never sees a partial object.

use std::io::Write;
use std::path::PathBuf;

use hone_core::{Error, Result};

use crate::{Store, db_err};

impl Store {
    fn object_path(&self, hash: &str) -> PathBuf {
        self.dir.join("objects").join(&hash[..2]).join(&hash[2..])
    }

    /// Store bytes; returns their blake3 hex. Idempotent.
    pub fn put_object(&self, bytes: &[u8], kind: &str) -> Result<String> {
        let hash = hone_core::hash::hash_bytes(bytes);
        let path = self.object_path(&hash);
        if !path.is_file() {
            let parent = path
                .parent()
                .ok_or_else(|| Error::Internal("object path without parent".into()))?;
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            let tmp = self
                .dir
                .join("tmp")
                .join(format!("{hash}.{}", std::process::id()));
            {
                let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
                f.write_all(bytes).map_err(|e| Error::io(&tmp, e))?;
                f.sync_all().map_err(|e| Error::io(&tmp, e))?;
            }
            std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        }
        self.conn
            .execute(
                "INSERT OR IGNORE INTO objects(hash, kind, size, created_at) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![hash, kind, bytes.len() as i64, chrono::Utc::now().to_rfc3339()],
            )
            .map_err(db_err)?;
        Ok(hash)
    }

    /// Every object the store has recorded: `(hash, kind)`, in hash order.
    pub fn objects(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT hash, kind FROM objects ORDER BY hash")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db_err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(db_err)
    }

    /// Whether an object's file is there (without reading it: see [`Store::object_status`]).
    pub fn has_object_file(&self, hash: &str) -> bool {
        hash.len() >= 3 && self.object_path(hash).is_file()
    }

    /// Whether an object's file is there and still has its hash (reads and hashes it).
    pub fn object_status(&self, hash: &str) -> ObjectStatus {
        match self.get_object(hash) {
            Ok(_) => ObjectStatus::Ok,
            Err(Error::Io { .. }) => ObjectStatus::Missing,
            Err(_) => ObjectStatus::Corrupt,
        }
    }

    /// Read an object and check its hash.
    pub fn get_object(&self, hash: &str) -> Result<Vec<u8>> {
        if hash.len() < 3 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::Store(format!("bad object hash {hash:?}")));
        }
        let path = self.object_path(hash);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if hone_core::hash::hash_bytes(&bytes) != hash {
            return Err(Error::Store(format!(
                "object {hash} is corrupt (its content no longer matches its hash): {}",
                path.display()
            )));
        }
        Ok(bytes)
    }
}

/// The state of one object file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectStatus {
    Ok,
    Missing,
    Corrupt,
}

impl ObjectStatus {
    pub fn name(self) -> &'static str {
        match self {
            ObjectStatus::Ok => "ok",
            ObjectStatus::Missing => "missing",
            ObjectStatus::Corrupt => "corrupt",
        }
    }
}
