//! hone-serve: `hone serve` — the released run's model over HTTP (axum on tokio), every route but
//! health behind a token and a role, answers decided by the run's own decision rule, every answer
//! logged PII-masked, feedback durable before it is acknowledged, and Prometheus metrics.
//!
//! Which run is served: the one `--run` names, else the released run (the latest approval not
//! revoked, as the audit chain records it). A run without an approval is refused unless the caller
//! passes `allow_unapproved`, which the server then reports on every health answer.

mod api;
mod auth;
mod chat;
mod log;
mod metrics;
mod ui;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hone_core::{Error, Result};
use hone_store::Store;
use hone_train::input::TextPrep;
use hone_train::project::Project;
use hone_train::record::Run;
use hone_train::run_stage::Trained;

/// How `hone serve` runs. The defaults are generous enough for interactive and batch use.
#[derive(Debug, Clone)]
pub struct Options {
    pub addr: SocketAddr,
    /// Serve this run (number or id prefix) instead of the released one.
    pub run: Option<String>,
    /// Serve a run that was never approved (development only; reported on every health answer).
    pub allow_unapproved: bool,
    /// Requests per second per token, sustained (bursts of twice as many pass); 0 turns it off.
    pub rate_limit: f64,
    /// The largest request body, in bytes (413 above it).
    pub max_body: usize,
    /// The most texts in one predict request.
    pub max_batch: usize,
    /// A request not answered within this time gets 503 (a slow client sending its body, or a
    /// busy model); a slow client's headers are cut off after 10 s.
    pub timeout: Duration,
    /// Logged predictions without feedback are purged after this many days.
    pub retention_days: u32,
    /// Answers waiting to be written to the store, in bytes, past which predict and chat requests
    /// get 503 with `Retry-After` until the writer catches up (a disk slower than the traffic).
    pub log_queue_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            run: None,
            allow_unapproved: false,
            rate_limit: 1000.0,
            max_body: 1 << 20,
            max_batch: 1024,
            timeout: Duration::from_secs(60),
            retention_days: 30,
            log_queue_bytes: 64 << 20,
        }
    }
}

/// The model being served.
pub(crate) enum Served {
    Classify(Box<Trained>),
    /// One generation at a time (the model keeps one KV cache); requests queue on the lock.
    Generate(Box<std::sync::Mutex<Generator>>),
}

/// A generate run's model with the decoding settings it was evaluated with.
pub(crate) struct Generator {
    pub lm: hone_lm::Lm,
    pub system: Option<String>,
    pub cfg: hone_lm::GenerateConfig,
}

/// Everything a request handler reads.
pub(crate) struct App {
    pub run: Run,
    pub approved: bool,
    pub model: Served,
    pub prep: TextPrep,
    pub require_consent: bool,
    pub opts: Options,
    pub auth: Arc<auth::Auth>,
    /// The dashboard at `/`.
    pub ui: Arc<ui::Ui>,
    pub log: log::Logger,
    pub metrics: metrics::Metrics,
    pub draining: AtomicBool,
    /// Generate requests running or queued for the model (more are answered 503).
    pub generate_slots: Arc<tokio::sync::Semaphore>,
    /// Predict batches computed at once: two per core. One per clients starved the log writer (one
    /// runnable thread among as many as there are clients; the log queue grew until requests got
    /// 503); one per core left a core idle between batches (bench/serve, ARCHITECTURE.md).
    pub compute: tokio::sync::Semaphore,
    /// The permits `compute` was made with.
    pub compute_slots: usize,
    /// The project folder (the drift check opens its own store connection).
    pub root: PathBuf,
    /// `[monitor]`: drift thresholds and how often `/metrics`' drift statistics are refreshed.
    pub monitor: hone_core::config::MonitorConfig,
}

impl App {
    /// Predict batches being computed now (a caller holding a permit counts itself).
    pub(crate) fn computing(&self) -> usize {
        self.compute_slots - self.compute.available_permits()
    }

    /// Recompute the served run's drift statistics for `/metrics`; blocking. No answers yet is not
    /// an error (the gauges stay empty); a failure is counted.
    fn check_drift(&self) {
        let outcome = Project::discover(&self.root).and_then(|project| {
            let store = Store::open_existing(&self.root)?;
            hone_train::drift::check(&project, &store, Some(&self.run), self.monitor)
        });
        match outcome {
            Ok(report) => self.metrics.drift(Some(&report)),
            Err(Error::NotFound { .. }) => self.metrics.drift(None),
            Err(_) => self.metrics.drift_failed(),
        }
    }

    /// Purge logged predictions past the retention period (kept: those with feedback); blocking.
    fn purge(&self) -> Result<usize> {
        let days = i64::from(self.opts.retention_days);
        self.log
            .purge((chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339())
    }
}

/// What `prepare` found to serve, for the binary to print before listening.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ready {
    pub run: String,
    pub run_seq: i64,
    pub model: String,
    pub kind: String,
    pub approved: bool,
    pub purged: usize,
}

/// A server ready to listen: the run chosen, its model loaded, the log writer started.
pub struct Server {
    app: Arc<App>,
    log_thread: std::thread::JoinHandle<()>,
}

impl Server {
    /// Choose the run, load its model and open the store; no socket yet.
    pub fn prepare(project: &Project, opts: Options) -> Result<Server> {
        let root = project.root.clone();
        let store = Store::open_existing(&root)?;
        let released = store.approved_run()?;
        let run = match (&opts.run, &released) {
            (Some(key), _) => hone_train::record::resolve(&store, key)?,
            (None, Some(a)) => hone_train::record::resolve(&store, &a.run)?,
            // Development: the run `hone predict` uses, the one the latest `hone run` chose.
            (None, None) if opts.allow_unapproved => hone_train::record::chosen_run(&store)?,
            (None, None) => {
                return Err(Error::Usage(
                    "no run is approved for release: `hone approve RUN --reason TEXT` first, or name one with --run (and --allow-unapproved, for development only)".into(),
                ));
            }
        };
        let approved = released.as_ref().is_some_and(|a| a.run == run.id);
        if !approved && !opts.allow_unapproved {
            return Err(Error::Usage(format!(
                "run #{} ({}) is not the approved release: approve it (`hone approve {} --reason TEXT`), or pass --allow-unapproved for development",
                run.seq, run.model, run.seq
            )));
        }
        let prep = hone_train::curate::text_prep_of(&store, &run.version)?;
        let (model, prep) = if run.kind == "lm" {
            let (lm, params) =
                hone_train::generate_stage::load_run_lm(&store, &project.root, &run)?;
            let cfg = hone_train::generate_stage::generate_config(&params, run.seed as u64);
            let generator = Generator {
                lm,
                system: params.system.clone(),
                cfg,
            };
            // Prompts keep their line breaks, as `hone predict` prepares them.
            (
                Served::Generate(Box::new(std::sync::Mutex::new(generator))),
                prep.keeping_newlines(),
            )
        } else {
            (
                Served::Classify(Box::new(hone_train::run_stage::load_model(&store, &run)?)),
                prep,
            )
        };
        drop(store);
        let (log, log_thread) = log::Logger::start(&root, opts.log_queue_bytes)?;
        let auth = Arc::new(auth::Auth::new(&root, opts.rate_limit)?);
        let compute_slots = std::thread::available_parallelism().map_or(2, usize::from) * 2;
        let app = App {
            ui: Arc::new(ui::Ui::new(
                root.clone(),
                auth.clone(),
                Some(run.id.clone()),
            )),
            auth,
            run,
            approved,
            model,
            prep,
            require_consent: project.config.policy.require_consent,
            opts,
            log,
            metrics: metrics::Metrics::default(),
            draining: AtomicBool::new(false),
            generate_slots: Arc::new(tokio::sync::Semaphore::new(GENERATE_QUEUE)),
            compute: tokio::sync::Semaphore::new(compute_slots),
            compute_slots,
            root: root.clone(),
            monitor: project.config.monitor,
        };
        Ok(Server {
            app: Arc::new(app),
            log_thread,
        })
    }

    /// The run being served.
    pub fn ready(&self, purged: usize) -> Ready {
        let a = &self.app;
        Ready {
            run: a.run.id.clone(),
            run_seq: a.run.seq,
            model: a.run.model.clone(),
            kind: a.run.kind.clone(),
            approved: a.approved,
            purged,
        }
    }

    /// Purge logged predictions past the retention period (kept: those with feedback).
    pub fn purge(&self) -> Result<usize> {
        self.app.purge()
    }

    /// Listen on `opts.addr` and serve until `shutdown` resolves (the binary passes SIGTERM or
    /// Ctrl-C), then stop accepting, drain the requests in flight and flush the log. `on_listen`
    /// gets the bound address (port 0 picks a free one).
    pub fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        on_listen: impl FnOnce(SocketAddr),
    ) -> Result<()> {
        let rt = runtime()?;
        let app = self.app.clone();
        let result = rt.block_on(async move {
            let listener = listen(app.opts.addr, on_listen).await?;
            // Logs past the retention period go while the server runs, not only at start.
            let purger = app.clone();
            tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(3600));
                every.tick().await;
                loop {
                    every.tick().await;
                    let a = purger.clone();
                    let _ = tokio::task::spawn_blocking(move || a.purge()).await;
                }
            });
            // Drift statistics for `/metrics`, every `[monitor] refresh_seconds`.
            let watcher = app.clone();
            tokio::spawn(async move {
                let period = Duration::from_secs(watcher.monitor.refresh_seconds.max(1));
                let mut every = tokio::time::interval(period);
                loop {
                    every.tick().await;
                    let a = watcher.clone();
                    let _ = tokio::task::spawn_blocking(move || a.check_drift()).await;
                }
            });
            let router = api::router(app.clone());
            let drain = app.clone();
            accept_loop(
                listener,
                router,
                shutdown,
                move || drain.draining.store(true, Ordering::SeqCst),
                app.opts.timeout + Duration::from_secs(5),
            )
            .await
        });
        // Generations still running past the drain are not waited for without end.
        rt.shutdown_timeout(Duration::from_secs(10));
        // Every handler has finished: the last logs reach the store before the process ends.
        let Server { app, log_thread } = self;
        drop(app);
        let _ = log_thread.join();
        result
    }
}

/// Generate requests that may run or wait for the model at once.
const GENERATE_QUEUE: usize = 8;

/// How long a client may take to send its request line and headers (slow-loris clients are cut off).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept connections until `shutdown`, each served by hyper with a header-read deadline (which
/// `axum::serve` does not set), then call `on_drain`, stop accepting and wait up to `drain` for
/// the connections in flight.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    on_drain: impl FnOnce(),
    drain: Duration,
) -> Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    // Out of file descriptors and the like: wait, do not spin or die.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let service = hyper_util::service::TowerToHyperService::new(router.clone());
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT)
                    // A request line and headers beyond 64 KiB are refused (431).
                    .max_header_size(64 * 1024)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    on_drain();
    drop(listener);
    // In-flight requests finish; idle keep-alive connections close.
    let _ = tokio::time::timeout(drain, graceful.shutdown()).await;
    Ok(())
}

/// `hone ui`: the dashboard alone, without a model.
pub struct Dashboard {
    ui: Arc<ui::Ui>,
    addr: SocketAddr,
}

impl Dashboard {
    /// Open the project's store (it must exist) for the dashboard on `addr`.
    pub fn prepare(project: &Project, addr: SocketAddr) -> Result<Dashboard> {
        // Fails early on a project without a store.
        drop(Store::open_existing(&project.root)?);
        let auth = Arc::new(auth::Auth::new(&project.root, 0.0)?);
        Ok(Dashboard {
            ui: Arc::new(ui::Ui::new(project.root.clone(), auth, None)),
            addr,
        })
    }

    /// Listen and serve the dashboard until `shutdown`; `on_listen` gets the bound address.
    pub fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
        on_listen: impl FnOnce(SocketAddr),
    ) -> Result<()> {
        let rt = runtime()?;
        let addr = self.addr;
        let router = ui::router(self.ui).fallback(|| async {
            (
                axum::http::StatusCode::NOT_FOUND,
                "no such page: the dashboard is at /",
            )
        });
        let result = rt.block_on(async move {
            let listener = listen(addr, on_listen).await?;
            accept_loop(listener, router, shutdown, || {}, Duration::from_secs(30)).await
        });
        rt.shutdown_timeout(Duration::from_secs(10));
        result
    }
}

/// The multi-threaded runtime both servers run on.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Internal(format!("cannot start the async runtime: {e}")))
}

/// Bind `addr` and tell `on_listen` the address bound (port 0 picks one).
async fn listen(
    addr: SocketAddr,
    on_listen: impl FnOnce(SocketAddr),
) -> Result<tokio::net::TcpListener> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    on_listen(local);
    Ok(listener)
}

/// SIGTERM or Ctrl-C, whichever comes first.
pub async fn termination() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
