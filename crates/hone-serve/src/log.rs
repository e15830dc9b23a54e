//! The store writer of `hone serve`: one thread with its own connection takes prediction logs and
//! feedback in arrival order, commits predictions in groups (one transaction per wake-up, not one per
//! request) and commits each feedback entry, with its audit entry, before its request is answered.
//! The answers waiting to be written are bounded: past the limit, predict requests get 503 until the
//! writer catches up, so a disk slower than the traffic costs answers, never memory or log rows.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use hone_core::{Error, Result};
use hone_store::{FeedbackRow, PredictionRow, Store};
use tokio::sync::oneshot;

enum Msg {
    /// Rows and their size as counted in [`Logger::queued_bytes`].
    Predictions(Vec<PredictionRow>, u64),
    Feedback(FeedbackRow, bool, oneshot::Sender<Result<i64>>),
    Purge(String, oneshot::Sender<Result<usize>>),
}

/// The sending side; cloned into every handler through the app state.
pub(crate) struct Logger {
    tx: mpsc::Sender<Msg>,
    /// Bytes of prediction rows sent and not yet committed (or counted lost).
    queued: Arc<AtomicU64>,
    /// Past this many queued bytes, [`Logger::behind`] says so.
    limit: u64,
}

/// The size a row counts for in the queue: its strings plus a fixed part.
fn row_bytes(r: &PredictionRow) -> u64 {
    (r.id.len()
        + r.at.len()
        + r.run.len()
        + r.model.len()
        + r.token.len()
        + r.output.len()
        + r.input.as_ref().map_or(0, String::len)
        + 64) as u64
}

/// The most predictions committed in one transaction.
const GROUP: usize = 4096;

impl Logger {
    /// Open the store for writing on a new thread. The thread ends, after committing what it was
    /// sent, when the last `Logger` is dropped.
    pub fn start(root: &Path, limit: u64) -> Result<(Logger, std::thread::JoinHandle<()>)> {
        let mut store = Store::open_existing(root)?;
        // Under load the writer appends tens of MB/s: checkpointing every 4 MB (SQLite's default)
        // spent its time in the database file's fsync. Every 64 MB instead; readers still see
        // every commit (WAL).
        store
            .connection()
            .pragma_update(None, "wal_autocheckpoint", 16384)
            .map_err(|e| Error::Store(format!("the log writer's connection: {e}")))?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let queued = Arc::new(AtomicU64::new(0));
        let written = queued.clone();
        let handle = std::thread::Builder::new()
            .name("hone-serve-log".into())
            .spawn(move || {
                let mut pending: Vec<PredictionRow> = Vec::new();
                let mut pending_bytes = 0u64;
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Predictions(rows, bytes) => {
                                pending.extend(rows);
                                pending_bytes += bytes;
                            }
                            Msg::Feedback(row, any, reply) => {
                                // The prediction it names was sent before it: commit those first.
                                commit(&mut store, &mut pending, &mut pending_bytes, &written);
                                let _ = reply.send(store.put_feedback(
                                    &row,
                                    any,
                                    "serve: POST /v1/feedback",
                                ));
                            }
                            Msg::Purge(before, reply) => {
                                commit(&mut store, &mut pending, &mut pending_bytes, &written);
                                let _ = reply.send(store.purge_predictions(
                                    &before,
                                    &hone_train::project::who(),
                                    "serve: purge past retention",
                                ));
                            }
                        }
                        if pending.len() < GROUP {
                            next = rx.try_recv().ok();
                        }
                    }
                    commit(&mut store, &mut pending, &mut pending_bytes, &written);
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the log writer: {e}")))?;
        Ok((Logger { tx, queued, limit }, handle))
    }

    /// Queue answers for logging (committed within one wake-up of the writer).
    pub fn predictions(&self, rows: Vec<PredictionRow>) {
        let bytes: u64 = rows.iter().map(row_bytes).sum();
        self.queued.fetch_add(bytes, Ordering::Relaxed);
        if self.tx.send(Msg::Predictions(rows, bytes)).is_err() {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
        }
    }

    /// Bytes of answers waiting to be written.
    pub fn queued_bytes(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// The queued bytes, when they are past the limit: the writer is behind and new answers would
    /// only queue up further.
    pub fn behind(&self) -> Option<u64> {
        let q = self.queued_bytes();
        (q > self.limit).then_some(q)
    }

    /// Record feedback (on any prediction, or only on the token's own); resolves once it is
    /// committed, or refused (an unknown prediction, or another token's).
    pub async fn feedback(&self, row: FeedbackRow, any: bool) -> Result<i64> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Msg::Feedback(row, any, reply))
            .map_err(|_| Error::Internal("the log writer has stopped".into()))?;
        wait.await
            .map_err(|_| Error::Internal("the log writer has stopped".into()))?
    }

    /// Purge predictions logged before `before` that carry no feedback (blocking).
    pub fn purge(&self, before: String) -> Result<usize> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send(Msg::Purge(before, reply))
            .map_err(|_| Error::Internal("the log writer has stopped".into()))?;
        wait.blocking_recv()
            .map_err(|_| Error::Internal("the log writer has stopped".into()))?
    }
}

/// [`flush`], then the committed (or lost) rows leave the queue count.
fn commit(
    store: &mut Store,
    pending: &mut Vec<PredictionRow>,
    bytes: &mut u64,
    queued: &AtomicU64,
) {
    flush(store, pending);
    queued.fetch_sub(std::mem::take(bytes), Ordering::Relaxed);
}

/// Commit the queued predictions. A failed commit cannot be answered to anyone (the requests were
/// answered already): it is retried once, then the rows are counted as lost in `/metrics` and the
/// error is shown by `/readyz`, which then answers 503.
fn flush(store: &mut Store, pending: &mut Vec<PredictionRow>) {
    if pending.is_empty() {
        return;
    }
    if store.put_predictions(pending).is_err() {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if let Err(e) = store.put_predictions(pending) {
            LOST.fetch_add(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
            LAST_ERROR.lock().map(|mut l| *l = Some(e.to_string())).ok();
            pending.clear();
            return;
        }
    }
    // Written: a past failure no longer holds readiness down.
    if let Ok(mut l) = LAST_ERROR.lock() {
        *l = None;
    }
    pending.clear();
}

/// Prediction logs that could not be committed (shown in `/metrics`).
pub(crate) static LOST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The last commit error, for `/readyz`.
pub(crate) static LAST_ERROR: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: usize) -> PredictionRow {
        PredictionRow {
            id: format!("pred_{n:04}"),
            at: "2026-12-03T00:00:00+00:00".into(),
            run: "r".into(),
            model: "m".into(),
            token: "t".into(),
            consent: true,
            input: Some("x".repeat(100)),
            input_chars: Some(100),
            output: "card_arrival".into(),
            probability: Some(0.5),
            latency_us: 1,
        }
    }

    #[test]
    fn a_writer_held_up_by_a_lock_is_behind_past_its_limit_then_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        let (log, thread) = Logger::start(dir.path(), 1_000).unwrap();
        // Another connection holds the write lock: the writer waits (busy timeout) with rows queued.
        let other = Store::open(dir.path()).unwrap();
        other.connection().execute_batch("BEGIN IMMEDIATE").unwrap();
        log.predictions((0..4).map(row).collect());
        assert_eq!(log.behind(), None, "four rows are under 1,000 bytes");
        log.predictions((4..12).map(row).collect());
        let queued = log.behind().expect("twelve rows are past the limit");
        assert_eq!(queued, (0..12).map(|n| row_bytes(&row(n))).sum::<u64>());
        other.connection().execute_batch("COMMIT").unwrap();
        let drained = (0..300).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            log.queued_bytes() == 0
        });
        assert!(drained, "{} bytes still queued", log.queued_bytes());
        assert_eq!(log.behind(), None);
        drop(log);
        thread.join().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for n in 0..12 {
            assert!(store.prediction(&row(n).id).unwrap().is_some(), "row {n}");
        }
    }
}
