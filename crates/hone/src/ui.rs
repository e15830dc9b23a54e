//! Terminal helpers: output mode, progress (a spinner on a terminal, plain lines in logs, none with
//! `--json`), tables.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Context {
    pub json: bool,
    pub start: PathBuf,
}

impl Context {
    /// Progress on stderr for work that may take over a second: a spinner on a terminal; off a
    /// terminal (CI logs, `nohup`, a pipe) a plain line now and then (see [`Spinner`]); nothing with
    /// `--json`.
    pub fn spinner(&self, msg: &str) -> Spinner {
        let s = if self.json {
            Spinner::Hidden
        } else if std::io::stderr().is_terminal() {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>3} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb.enable_steady_tick(Duration::from_millis(120));
            Spinner::Bar(pb)
        } else {
            return Spinner::Lines(Lines::start(msg));
        };
        s.set_message(msg);
        s
    }
}

/// Where progress goes. A log has no spinner to redraw, and a line per training step would bury the
/// results, so off a terminal a thread prints the latest message when it has changed, at most once
/// per [`LINE_EVERY`], with the time since the command began: a long `hone run` in CI or under
/// `nohup` shows it is alive and how far it got.
pub enum Spinner {
    Hidden,
    Bar(ProgressBar),
    Lines(Lines),
}

pub struct Lines {
    state: Arc<Mutex<LineState>>,
    ticker: Option<JoinHandle<()>>,
}

struct LineState {
    msg: String,
    printed: bool,
    done: bool,
}

/// The least time between two plain progress lines.
pub const LINE_EVERY: Duration = Duration::from_secs(15);

impl Lines {
    /// Print `msg` at once (so even a command that fails at once leaves a line), then start the ticker.
    fn start(msg: &str) -> Lines {
        eprintln!("[ 0:00] {msg}");
        let state = Arc::new(Mutex::new(LineState {
            msg: msg.to_string(),
            printed: true,
            done: false,
        }));
        let shared = Arc::clone(&state);
        let start = Instant::now();
        let ticker = std::thread::spawn(move || {
            let mut last = Some(start);
            loop {
                let now = Instant::now();
                // Take the message under the lock, print after releasing it: a stderr that blocks
                // must not block the work that sets messages.
                let line = {
                    let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                    let due = s.done || last.is_none_or(|t| now.duration_since(t) >= LINE_EVERY);
                    let line = (!s.printed && due).then(|| s.msg.clone());
                    s.printed |= line.is_some();
                    (line, s.done)
                };
                if let Some(msg) = line.0 {
                    let secs = now.duration_since(start).as_secs();
                    eprintln!("[{:>2}:{:02}] {msg}", secs / 60, secs % 60);
                    last = Some(now);
                }
                // On stop, the last message is printed even if it came within LINE_EVERY: a log
                // must show the phase a failing command was in.
                if line.1 {
                    return;
                }
                std::thread::park_timeout(Duration::from_millis(250));
            }
        });
        Lines {
            state,
            ticker: Some(ticker),
        }
    }

    fn stop(&mut self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).done = true;
        if let Some(t) = self.ticker.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Spinner {
    pub fn set_message(&self, msg: impl Into<String>) {
        match self {
            Spinner::Hidden => {}
            Spinner::Bar(pb) => pb.set_message(msg.into()),
            Spinner::Lines(l) => {
                let mut s = l.state.lock().unwrap_or_else(|e| e.into_inner());
                s.msg = msg.into();
                s.printed = false;
            }
        }
    }

    pub fn finish_and_clear(&mut self) {
        match self {
            Spinner::Hidden => {}
            Spinner::Bar(pb) => pb.finish_and_clear(),
            Spinner::Lines(l) => l.stop(),
        }
    }
}

/// Print a JSON value on stdout.
pub fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

/// Shorten text for a table cell.
pub use hone_train::reports::{clip, table};
