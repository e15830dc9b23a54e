//! The store writer of `hone serve`: one thread with its own connection takes prediction logs and
//! feedback in arrival order, commits predictions in groups (one transaction per wake-up, not one per
//! request) and commits each feedback entry, with its audit entry, before its request is answered.

use std::path::Path;
use std::sync::mpsc;

use hone_core::{Error, Result};
use hone_store::{FeedbackRow, PredictionRow, Store};
use tokio::sync::oneshot;

enum Msg {
    Predictions(Vec<PredictionRow>),
    Feedback(FeedbackRow, bool, oneshot::Sender<Result<i64>>),
    Purge(String, oneshot::Sender<Result<usize>>),
}

/// The sending side; cloned into every handler through the app state.
pub(crate) struct Logger {
    tx: mpsc::Sender<Msg>,
}

/// The most predictions committed in one transaction.
const GROUP: usize = 4096;

impl Logger {
    /// Open the store for writing on a new thread. The thread ends, after committing what it was
    /// sent, when the last `Logger` is dropped.
    pub fn start(root: &Path) -> Result<(Logger, std::thread::JoinHandle<()>)> {
        let mut store = Store::open_existing(root)?;
        let (tx, rx) = mpsc::channel::<Msg>();
        let handle = std::thread::Builder::new()
            .name("hone-serve-log".into())
            .spawn(move || {
                let mut pending: Vec<PredictionRow> = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(msg) = next.take() {
                        match msg {
                            Msg::Predictions(rows) => pending.extend(rows),
                            Msg::Feedback(row, any, reply) => {
                                // The prediction it names was sent before it: commit those first.
                                flush(&mut store, &mut pending);
                                let _ = reply.send(store.put_feedback(
                                    &row,
                                    any,
                                    "serve: POST /v1/feedback",
                                ));
                            }
                            Msg::Purge(before, reply) => {
                                flush(&mut store, &mut pending);
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
                    flush(&mut store, &mut pending);
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the log writer: {e}")))?;
        Ok((Logger { tx }, handle))
    }

    /// Queue answers for logging (committed within one wake-up of the writer).
    pub fn predictions(&self, rows: Vec<PredictionRow>) {
        let _ = self.tx.send(Msg::Predictions(rows));
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
