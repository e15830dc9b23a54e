//! hone-store: the project's store under `.hone/` — SQLite (`hone.db`, migrations, WAL) for versions,
//! lineage, quarantine and the hash-chained audit log, plus content-addressed immutable objects (blake3,
//! written to a temp file and renamed). Every write is a transaction; `kill -9` at any point leaves a
//! store that opens and reads.

mod audit;
mod embeddings;
mod objects;
mod review;
mod runs;
mod schema;
mod versions;

pub use audit::{AuditEntry, AuditProblem, AuditReport};
pub use review::{Decision, ScanRow};
pub use runs::{ChoiceRow, FrozenTest, RunRow, SplitDrop, SplitRow};
pub use versions::{NewVersion, VersionRow};

use std::path::{Path, PathBuf};

use hone_core::{Error, Result};
use rusqlite::Connection;

/// An open store.
pub struct Store {
    dir: PathBuf,
    conn: Connection,
}

pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    Error::Store(e.to_string())
}

impl Store {
    /// Open (creating if needed) the store in `<project>/.hone`.
    pub fn open(project_root: &Path) -> Result<Store> {
        let dir = project_root.join(".hone");
        for sub in ["objects", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| Error::io(dir.join(sub), e))?;
        }
        // Temp files left by a killed writer are never referenced: clear them.
        if let Ok(entries) = std::fs::read_dir(dir.join("tmp")) {
            for e in entries.flatten() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        let db = dir.join("hone.db");
        let conn =
            Connection::open(&db).map_err(|e| Error::Store(format!("{}: {e}", db.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        let mut store = Store { dir, conn };
        schema::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// Open an existing store; an error when the project has none yet.
    pub fn open_existing(project_root: &Path) -> Result<Store> {
        if !project_root.join(".hone").join("hone.db").is_file() {
            return Err(Error::NotFound {
                what: "store",
                name: project_root.join(".hone").display().to_string(),
                hint: "run `hone data clean` first".into(),
            });
        }
        Store::open(project_root)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Direct read access for tests and tools that inspect the store.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}
