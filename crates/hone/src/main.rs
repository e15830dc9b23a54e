//! The `hone` binary: parses the command line, calls the libraries, renders results for a terminal or as
//! JSON (`--json`), shows progress, and maps errors to exit codes. Only this file talks to the terminal.
//!
//! Exit codes (DESIGN §7.6): 0 ok, 1 error, 2 usage or config, 3 a success gate failed, 4 contamination.

mod commands;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hone_train::answer_review::Action;

#[derive(Parser)]
#[command(
    name = "hone",
    version,
    about = "Train small, task-specific models the careful way.",
    long_about = None,
    after_help = "Exit codes: 0 ok, 1 error, 2 usage or config error, 3 a success gate failed, 4 contamination found.\nStart with `hone demo`, or `hone init DIR` for your own project."
)]
struct Cli {
    /// Run as if started in DIR (hone.toml is searched upward from there).
    #[arg(short = 'C', long = "project", global = true, value_name = "DIR")]
    project: Option<PathBuf>,
    /// Print machine-readable JSON on stdout instead of tables; no progress bars.
    #[arg(long, global = true)]
    json: bool,
    /// CPU threads for training and inference (default: every core; also RAYON_NUM_THREADS).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a project: a commented hone.toml, data/ and suites/.
    ///
    /// Example: `hone init support-intents`
    Init {
        /// Directory to create the project in (default: the current directory).
        dir: Option<PathBuf>,
        /// Overwrite an existing hone.toml.
        #[arg(long)]
        force: bool,
    },
    /// Curate, split, train every [[model]] (plus a majority baseline), evaluate, check the success gates.
    ///
    /// Example: `hone run` (exit code 3 when a gate fails, 4 on contamination)
    Run {
        /// Pin a new frozen test set from the current data (needs --reason; audited).
        #[arg(long, requires = "reason")]
        refreeze: bool,
        /// Why the test set is refrozen.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Split the latest dataset version into train/dev/test (frozen test) and check contamination.
    ///
    /// Example: `hone split`, `hone split --refreeze --reason "relabelled 12 test records"`
    Split {
        /// Pin a new frozen test set from the current data (needs --reason; audited).
        #[arg(long, requires = "reason")]
        refreeze: bool,
        /// Why the test set is refrozen.
        #[arg(long)]
        reason: Option<String>,
    },
    /// List every recorded run.
    ///
    /// Example: `hone runs --json`
    Runs,
    /// Compare two runs on their shared test examples: deltas with paired bootstrap CIs and McNemar's test.
    ///
    /// Example: `hone compare 3 5` (run numbers from `hone runs`, or id prefixes)
    Compare {
        /// The baseline run.
        a: String,
        /// The run compared against it.
        b: String,
    },
    /// Write a model card from a run's measurements: reports/card-RUN.md (Hugging Face format) and .html.
    ///
    /// Example: `hone card` (the chosen model's latest run), `hone card 3`, `hone card --model lora`
    Card {
        run: Option<String>,
        #[arg(long)]
        model: Option<String>,
    },
    /// Approve a run for release after hone's checklist (gates, card, leak check, suites), or revoke it.
    ///
    /// Example: `hone approve 3 --reason "beats v2 on refunds"`; rollback = approving an earlier run
    Approve {
        run: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        revoke: bool,
    },
    /// Predict labels for texts (JSONL with `text`, CSV with a `text` column, or plain lines; `-` = stdin).
    ///
    /// Example: `hone predict inbox.jsonl > predictions.jsonl`, `echo "where is my card" | hone predict -`
    Predict {
        /// Input file, or `-` for stdin.
        input: String,
        /// Use this run (number or id prefix; default: the latest run's best model on dev, never majority).
        #[arg(long)]
        run: Option<String>,
        /// Use the latest run of this [[model]] name.
        #[arg(long, conflicts_with = "run")]
        model: Option<String>,
        /// How many top labels to list per input.
        #[arg(long, default_value_t = 3)]
        top_k: usize,
        /// Generate projects: at most this many new tokens per answer (default: the run's).
        #[arg(long)]
        max_new_tokens: Option<usize>,
        /// Generate projects: sampling temperature, 0 for greedy (default: the run's).
        #[arg(long)]
        temperature: Option<f64>,
        /// Generate projects: the sampling seed (default: the run's).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Export an encoder model for Python: a Hugging Face `BertForSequenceClassification` directory
    /// (fine-tuned, `cls` pooling) or a sentence-transformers directory plus the head (`mean` pooling).
    ///
    /// Example: `hone export --model minilm --out export/minilm` (default: the model `hone run` chose)
    Export {
        /// The run to export (number or id prefix).
        #[arg(long)]
        run: Option<String>,
        /// Export the latest run of this [[model]] name.
        #[arg(long, conflicts_with = "run")]
        model: Option<String>,
        /// The directory to create.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Review flagged records (from `hone data scan`): accept, relabel, drop or skip; or apply a decisions file.
    /// Decisions are audited with the reviewer's identity and applied as a new dataset version.
    ///
    /// Example: `hone review`, `hone review --from decisions.jsonl` (lines: {"id", "decision", "label", "note"})
    #[command(args_conflicts_with_subcommands = true)]
    Review {
        /// Apply the decisions in this JSONL file instead of asking on the terminal.
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        #[command(subcommand)]
        answers: Option<ReviewCommand>,
    },
    /// Data: check, clean, inspect and report on dataset versions.
    #[command(subcommand)]
    Data(DataCommand),
    /// The audit log of every command that changed the store.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Access tokens for `hone serve` (only their hashes are stored).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Compare what a served run answered lately with its test set: label mix, confidence, length.
    ///
    /// Exit 3 when a feature alarms. Example: `hone drift --window 500`
    Drift {
        /// The run (default: the run of the latest logged answer).
        #[arg(long)]
        run: Option<String>,
        /// How many of the latest answers to compare (default: `[monitor] window`, 500).
        #[arg(long)]
        window: Option<usize>,
        /// Fewer live answers than this never alarm (default: `[monitor] min_samples`, 100).
        #[arg(long)]
        min_samples: Option<usize>,
    },
    /// Serve the released run over HTTP: POST /v1/predict, POST /v1/feedback, GET /metrics, /healthz, /readyz.
    ///
    /// Every route but health needs `Authorization: Bearer TOKEN` (`hone token create`). Stops on SIGTERM
    /// or Ctrl-C after answering the requests in flight. Example: `hone serve --addr 127.0.0.1:8080`
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Serve this run (number or id prefix) instead of the released one (`hone approve`).
        #[arg(long)]
        run: Option<String>,
        /// Serve a run that is not the approved release (development only; every health answer says so).
        #[arg(long)]
        allow_unapproved: bool,
        /// Requests per second per token, sustained (bursts of twice as many pass); 0 turns it off.
        #[arg(long, default_value_t = 1000.0)]
        rate_limit: f64,
        /// The largest request body, in bytes (413 above it).
        #[arg(long, default_value_t = 1 << 20)]
        max_body: usize,
        /// Logged predictions without feedback are purged after this many days.
        #[arg(long, default_value_t = 30)]
        retention_days: u32,
    },
    /// The dashboard alone (no model): runs, cards, data, the review queue, drift. `hone serve` has it at /.
    Ui {
        #[arg(long, default_value = "127.0.0.1:8081")]
        addr: std::net::SocketAddr,
    },
    /// Graders (graders/*.toml or OpenAI grader JSON): check grading rules before they judge anything.
    #[command(subcommand)]
    Grade(GradeCommand),
    /// Check every object of the store against its hash and every reference to it; exit 1 on a problem.
    ///
    /// Example: `hone doctor --repair` (rebuilds a dataset version whose objects vanished)
    Doctor {
        /// Rebuild what can be rebuilt from the sources.
        #[arg(long)]
        repair: bool,
    },
    /// Generate a messy example project in a temporary directory and run the loop on it.
    ///
    /// Example: `hone demo` (or `hone demo --dir /tmp/demo` to choose where)
    Demo {
        /// Write the project here instead of a new temporary directory (must be empty or absent).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seed of the generator.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

#[derive(Subcommand)]
enum GradeCommand {
    /// Check every grader: the fields it reads exist on every record, and answers that must not pass
    /// (empty, the prompt echoed, the reference's format with wrong content, the JSON schema itself, a
    /// very long answer) fail on the first 50 training items, whose references it also scores. Exit 3
    /// when a field is missing, when a grader cannot score most references (broken), or when a
    /// grader is exploitable under `[policy] exploitable_graders = "fail"` (default: a warning).
    ///
    /// Example: `hone grade validate`
    Validate,
    /// Score a run's answers with every grader (test: the answers the run stored; dev: generated
    /// now, as the run would) and keep each item's rewards in the store and `reports/`.
    ///
    /// Example: `hone grade run --model lora --split dev`
    Run {
        /// Run number or id prefix (default: the chosen run).
        #[arg(long, conflicts_with = "model")]
        run: Option<String>,
        /// The latest run of this `[[model]]`.
        #[arg(long)]
        model: Option<String>,
        #[arg(long, value_parser = ["test", "dev"], default_value = "test")]
        split: String,
    },
}

/// Answer review for generate tasks: rate and mark a run's answers, then train on the marks.
#[derive(Subcommand)]
pub enum ReviewCommand {
    /// Write a sheet of a run's answers (several per prompt) to rate 1-5 on tone, accuracy, safety
    /// and usefulness and mark "strong" or "weak". Example: `hone review answers --model lora`
    Answers {
        #[arg(long, conflicts_with = "model")]
        run: Option<String>,
        #[arg(long)]
        model: Option<String>,
        #[arg(long, value_parser = ["train", "dev"], default_value = "train")]
        split: String,
        /// Prompts on the sheet, and answers per prompt (the run's own, then samples at 0.8).
        #[arg(long, default_value_t = 20)]
        n: usize,
        #[arg(long, default_value_t = 2)]
        samples: usize,
    },
    /// Record a filled sheet under your name (in the audit chain).
    Import { file: PathBuf },
    /// DPO pairs (strong vs weak answers to one prompt) and reviewers' agreement (Cohen's κ).
    Pairs {
        #[arg(long, default_value = "data/pairs.jsonl")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Read every source and run the curation passes without writing anything; print the funnel.
    ///
    /// Example: `hone data check`
    Check,
    /// Curate the sources into a new dataset version (or report `cached` if nothing changed).
    ///
    /// Example: `hone data clean --json`
    Clean,
    /// The change log: every dataset version with its parent and counts.
    ///
    /// Example: `hone data log`
    Log,
    /// Where one record went and why (kept, changed, dropped or quarantined).
    ///
    /// Example: `hone data why T00042`
    Why {
        /// The record id (or `<source>-<line>` for a quarantined row).
        id: String,
        /// Dataset version (id or prefix; default: the latest).
        #[arg(long)]
        version: Option<String>,
    },
    /// Print the records of a dataset version.
    ///
    /// Example: `hone data show --limit 20`, `hone data show --json > records.json`
    Show {
        /// Dataset version (id or prefix; default: the latest).
        version: Option<String>,
        /// Show at most N records (table output only).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Find suspected label errors and poisoned records in train/dev (never the frozen test set).
    ///
    /// Example: `hone data scan`, `hone data scan --json > suspects.json`, then `hone review`
    Scan {
        /// Show at most N suspects (table output only).
        #[arg(long, default_value_t = 30)]
        limit: usize,
    },
    /// Write the HTML data report (and Markdown) of a dataset version; print the Markdown summary.
    ///
    /// Example: `hone data report` (writes reports/data-<version>.html)
    Report {
        /// Dataset version (id or prefix; default: the latest).
        version: Option<String>,
        /// Output file for the HTML report (default: reports/data-<version>.html).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; name every edited, deleted or reordered entry.
    ///
    /// Example: `hone audit verify`
    Verify,
    /// List the audit entries.
    ///
    /// Example: `hone audit log --json`
    Log,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once. Example: `hone token create --role predict --name app --expires 90`
    Create {
        #[arg(long, value_parser = hone_train::tokens::Role::NAMES)]
        role: String,
        #[arg(long)]
        name: String,
        /// Days until it expires (default: until revoked).
        #[arg(long)]
        expires: Option<u32>,
    },
    /// List the tokens: name, role, who created them, expiry, state.
    List,
    /// Revoke a token by name. Example: `hone token revoke app`
    Revoke { name: String },
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (index 15 in mimalloc.h, v2 and v3).
const MI_OPTION_PURGE_DELAY: i32 = 15;

/// Output that cannot be written is not a crash. A closed pipe (`hone data show | head -1`) ends the
/// process by SIGPIPE, as it does for every Unix filter (Rust ignores SIGPIPE, so each write would
/// fail instead); a full disk or device (`hone runs > /dev/full`) ends it with one line and exit 1
/// instead of a panic and a backtrace.
fn quiet_on_closed_output() {
    // SAFETY: restores the default disposition of one signal before any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to std") {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "error: cannot write the output ({msg})");
            std::process::exit(1);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    // Training frees and re-allocates the same large tensors every step; handing them back to the OS
    // makes each step page-fault them in again (MiniLM step at one thread: 4.75 s -> 3.07 s without it).
    // SAFETY: a process-wide allocator option, set before any other thread exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    quiet_on_closed_output();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if n == 0 {
            eprintln!("error: --threads must be at least 1");
            return ExitCode::from(2);
        }
        // SAFETY: no other thread has been started yet; candle and the ngram model read it later.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    } else if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // candle counts physical cores by reading /proc/cpuinfo on every matmul unless this is set:
        // 14% of a SmolLM2 generation step went there. Count once.
        let n = hone_train::default_threads();
        // SAFETY: as above, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    let ctx = ui::Context {
        json: cli.json,
        start: cli.project.clone().unwrap_or_else(|| PathBuf::from(".")),
    };
    // The learned PII tagger trains on first use on this machine and masks even the command line in
    // the audit log, before any command has a progress line: train it here, said. `init` masks
    // nothing.
    if !matches!(cli.command, Command::Init { .. }) && hone_data::pii::tagger_needs_training() {
        let mut pb = ctx.spinner(commands::TRAINING_TAGGER);
        hone_data::pii::prepare_tagger();
        pb.finish_and_clear();
    }
    let result = match cli.command {
        Command::Init { dir, force } => commands::init(&ctx, dir, force),
        Command::Demo { dir, seed } => commands::demo(&ctx, dir, seed),
        Command::Run { refreeze, reason } => {
            commands::run(&ctx, refreeze.then_some(reason).flatten())
        }
        Command::Split { refreeze, reason } => {
            commands::split(&ctx, refreeze.then_some(reason).flatten())
        }
        Command::Runs => commands::runs(&ctx),
        Command::Review { from, answers } => match answers {
            None => commands::review(&ctx, from),
            Some(cmd) => commands::review_answers(
                &ctx,
                match cmd {
                    ReviewCommand::Answers {
                        run,
                        model,
                        split,
                        n,
                        samples,
                    } => Action::Sheet {
                        run,
                        model,
                        dev: split == "dev",
                        n,
                        samples,
                    },
                    ReviewCommand::Import { file } => Action::Import(file),
                    ReviewCommand::Pairs { out } => Action::Pairs(out),
                },
            ),
        },
        Command::Compare { a, b } => commands::compare(&ctx, &a, &b),
        Command::Approve {
            run,
            reason,
            revoke,
        } => commands::approve(&ctx, &run, &reason, revoke),
        Command::Card { run, model } => commands::card(&ctx, run.as_deref(), model.as_deref()),
        Command::Export { run, model, out } => {
            commands::export(&ctx, run.as_deref(), model.as_deref(), &out)
        }
        Command::Predict {
            input,
            run,
            model,
            top_k,
            max_new_tokens,
            temperature,
            seed,
        } => {
            let gen_over = hone_train::predict::GenOverrides {
                max_new_tokens,
                temperature,
                seed,
            };
            commands::predict(
                &ctx,
                &input,
                (run.as_deref(), model.as_deref()),
                top_k,
                gen_over,
            )
        }
        Command::Data(DataCommand::Check) => commands::data_check(&ctx),
        Command::Data(DataCommand::Clean) => commands::data_clean(&ctx),
        Command::Data(DataCommand::Log) => commands::data_log(&ctx),
        Command::Data(DataCommand::Why { id, version }) => {
            commands::data_why(&ctx, &id, version.as_deref())
        }
        Command::Data(DataCommand::Show { version, limit }) => {
            commands::data_show(&ctx, version.as_deref(), limit)
        }
        Command::Data(DataCommand::Scan { limit }) => commands::data_scan(&ctx, limit),
        Command::Data(DataCommand::Report { version, out }) => {
            commands::data_report(&ctx, version.as_deref(), out)
        }
        Command::Doctor { repair } => commands::doctor(&ctx, repair),
        Command::Audit(AuditCommand::Verify) => commands::audit_verify(&ctx),
        Command::Audit(AuditCommand::Log) => commands::audit_log(&ctx),
        Command::Token(t) => commands::token(&ctx, t),
        Command::Drift {
            run,
            window,
            min_samples,
        } => commands::drift(&ctx, run.as_deref(), window, min_samples),
        Command::Serve {
            addr,
            run,
            allow_unapproved,
            rate_limit,
            max_body,
            retention_days,
        } => commands::serve(
            &ctx,
            hone_serve::Options {
                addr,
                run,
                allow_unapproved,
                rate_limit,
                max_body,
                retention_days,
                ..Default::default()
            },
        ),
        Command::Ui { addr } => commands::ui(&ctx, addr),
        Command::Grade(GradeCommand::Validate) => commands::grade_validate(&ctx),
        Command::Grade(GradeCommand::Run { run, model, split }) => {
            commands::grade_run(&ctx, run.as_deref(), model.as_deref(), split == "dev")
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // The chain down to hone's own error, whose message already includes its cause (an
            // I/O error's text would otherwise print twice).
            let mut parts = Vec::new();
            for cause in e.chain() {
                parts.push(cause.to_string());
                if cause.downcast_ref::<hone_core::Error>().is_some() {
                    break;
                }
            }
            eprintln!("error: {}", parts.join(": "));
            // Scripts get every leaked pair, not the message's first 25.
            if let (true, Some(hone_core::Error::Contamination { all, .. })) =
                (cli.json, e.downcast_ref::<hone_core::Error>())
            {
                ui::print_json(
                    &serde_json::json!({"error": "contamination", "contamination": all}),
                );
            }
            // One place maps library errors to exit codes: config and usage errors are 2, the rest 1.
            let code = e
                .downcast_ref::<hone_core::Error>()
                .map_or(1, hone_core::Error::exit_code);
            ExitCode::from(code as u8)
        }
    }
}
