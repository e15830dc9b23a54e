//! hone-store: the project's store under `.hone/` — SQLite (`hone.db`, migrations, WAL) for versions,
//! lineage, quarantine and the hash-chained audit log, plus content-addressed immutable objects (blake3,
//! written to a temp file and renamed). Every write is a transaction; `kill -9` at any point leaves a
//! store that opens and reads.

mod approvals;
mod audit;
mod embeddings;
mod objects;
mod review;
mod runs;
mod schema;
mod served;
mod tokens;
mod versions;

pub use approvals::ApprovalRow;
pub use audit::{AuditEntry, AuditProblem, AuditReport};
pub use objects::ObjectStatus;
pub use review::{AnswerReviewRow, Decision, ScanRow};
pub use runs::{ChoiceRow, FrozenTest, RunRow, SplitDrop, SplitRow};
pub use served::{FeedbackRow, PredictionRow};
pub use tokens::TokenRow;
pub use versions::{NewVersion, VersionRow};

use std::path::{Path, PathBuf};

use hone_core::{Error, Result};
use rusqlite::Connection;

/// Whether this process may write the store: the directory (SQLite creates its `-wal`/`-shm` files
/// there) and the database file. Asked of the OS (`access(2)` semantics through a real open), so that
/// root, ACLs and read-only mounts all answer truthfully.
fn writable(dir: &Path, db: &Path) -> bool {
    let file_ok = std::fs::OpenOptions::new().append(true).open(db).is_ok();
    let probe = dir.join(format!(".write-probe-{}", std::process::id()));
    let dir_ok = std::fs::File::create(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    file_ok && dir_ok
}

/// Temp files older than this are a killed writer's leftovers.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// An open store.
pub struct Store {
    dir: PathBuf,
    conn: Connection,
}

pub(crate) fn db_err(e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ReadOnly => {
            Error::Store(format!(
                "{e}: the store is read-only (file permissions or a read-only mount), and this command writes to it; read-only commands (runs, data show, audit verify, doctor, predict) still work"
            ))
        }
        _ => Error::Store(e.to_string()),
    }
}

impl Store {
    /// Open (creating if needed) the store in `<project>/.hone`.
    ///
    /// A store this process cannot write (permissions, a read-only mount) opens read-only: every read
    /// works and the first write fails with a message that says so.
    pub fn open(project_root: &Path) -> Result<Store> {
        let dir = project_root.join(".hone");
        let db = dir.join("hone.db");
        if db.is_file() && !writable(&dir, &db) {
            return Store::open_read_only(dir, db);
        }
        for sub in ["objects", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| Error::io(dir.join(sub), e))?;
        }
        // Temp files left by a killed writer are never referenced: clear them. Only old ones: a recent
        // file may belong to another hone process writing into this store right now.
        if let Ok(entries) = std::fs::read_dir(dir.join("tmp")) {
            let now = std::time::SystemTime::now();
            for e in entries.flatten() {
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_none_or(|age| age > STALE_TEMP);
                if stale {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let conn =
            Connection::open(&db).map_err(|e| Error::Store(format!("{}: {e}", db.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        // Switching a new database to WAL needs an exclusive lock, and SQLite does not wait for it
        // (no busy handler): when another hone opens the same new store at once, try again.
        let mut tries = 0;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 100 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(db_err(e)),
            }
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err)?;
        let mut store = Store { dir, conn };
        schema::migrate(&mut store.conn)?;
        Ok(store)
    }

    /// Open without writing anything: no temp cleanup, no WAL switch, no migration (a store that needs
    /// one says so).
    fn open_read_only(dir: PathBuf, db: PathBuf) -> Result<Store> {
        use rusqlite::OpenFlags;
        // A plain read-only open first: it sees a writer that shares the store (another account). A WAL
        // database needs its `-shm` file, which a read-only directory cannot get, so that fails there;
        // then, with no `-wal` left behind (everything is in the main file), open it immutable (no locks,
        // no shared memory). With a `-wal` left behind its pages matter and the error says so.
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let readable = |c: &Connection| {
            c.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
                .is_ok()
        };
        let wal = dir.join("hone.db-wal");
        let has_wal = std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
        let plain = Connection::open_with_flags(&db, flags)
            .ok()
            .filter(readable);
        let conn = match plain {
            Some(c) => c,
            None if !has_wal => {
                // SQLite reads `?`, `#` and `%` in a URI: escape them in the path.
                let path = db
                    .display()
                    .to_string()
                    .replace('%', "%25")
                    .replace('?', "%3f")
                    .replace('#', "%23");
                Connection::open_with_flags(
                    format!("file:{path}?immutable=1"),
                    flags | OpenFlags::SQLITE_OPEN_URI,
                )
                .map_err(|e| Error::Store(format!("{}: {e}", db.display())))?
            }
            None => {
                return Err(Error::Store(format!(
                    "{}: the store is read-only and a write-ahead log was left behind: make it writable and run any hone command once",
                    db.display()
                )));
            }
        };
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| Error::Store(format!("{}: {e}", db.display())))?;
        if version as usize != schema::LATEST {
            return Err(Error::Store(format!(
                "{} is read-only and has schema {version}, but this hone reads schema {}: {}",
                db.display(),
                schema::LATEST,
                if (version as usize) < schema::LATEST {
                    "make it writable and run any hone command once to migrate it"
                } else {
                    "it was written by a newer hone; upgrade hone"
                }
            )));
        }
        Ok(Store { dir, conn })
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

    /// A write transaction that takes the write lock up front (IMMEDIATE): a concurrent writer waits for
    /// it (busy timeout) instead of failing with "database is locked" when a read turns into a write.
    pub(crate) fn write_tx(&mut self) -> Result<rusqlite::Transaction<'_>> {
        self.conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db_err)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Direct read access for tests and tools that inspect the store.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}
