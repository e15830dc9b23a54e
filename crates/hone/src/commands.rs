//! One function per command: load the project, call the libraries, render tables or JSON.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use hone_core::Error;
use hone_store::Store;
use hone_train::curate::{self, Progress};
use hone_train::project::Project;
use serde_json::json;

use crate::ui::{Context, clip, print_json, table};

/// The command line as the audit log records it (masked: a `--reason` may hold personal data).
fn command_line() -> String {
    hone_train::input::free_text(&std::env::args().collect::<Vec<_>>().join(" "))
}

/// What the progress line says while the learned PII tagger trains (first use on this machine).
pub const TRAINING_TAGGER: &str = "training the PII tagger for names and addresses (first use on this machine, about 8 s; cached after)";

fn progress_printer(pb: &crate::ui::Spinner) -> impl FnMut(Progress) + '_ {
    move |p| match p {
        Progress::Reading {
            source,
            index,
            total,
        } => pb.set_message(format!("reading source {}/{total}: {source}", index + 1)),
        Progress::Pass { name, index, total } => {
            pb.set_message(format!("pass {}/{total}: {name}", index + 1))
        }
        Progress::Writing => pb.set_message("writing the dataset version"),
        Progress::TrainingTagger => pb.set_message(TRAINING_TAGGER),
    }
}

pub fn init(ctx: &Context, dir: Option<PathBuf>, force: bool) -> Result<u8> {
    let dir = dir.unwrap_or_else(|| ctx.start.clone());
    let toml_path = hone_train::project::init(&dir, force)?;
    if ctx.json {
        print_json(&json!({"project": dir, "config": toml_path}));
    } else {
        println!(
            "Created {} with data/, suites/ and reports/.\nNext: put your data in data/, describe it in hone.toml ([[source]]), then run `hone data clean`.",
            toml_path.display()
        );
    }
    Ok(0)
}

fn open_project(ctx: &Context) -> Result<Project> {
    Ok(Project::discover(&ctx.start)?)
}

pub fn data_check(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut pb = ctx.spinner("checking");
    let (decisions, feedback) = if project.root.join(".hone/hone.db").is_file() {
        let store = Store::open_existing(&project.root)?;
        (
            curate::load_decisions(&store)?,
            hone_train::feedback::load(&store)?,
        )
    } else {
        Default::default()
    };
    let cur = curate::compute(&project, &decisions, &feedback, &mut progress_printer(&pb))?;
    let example = hone_train::generate_stage::preview(&project, &cur.records)?;
    pb.finish_and_clear();
    if ctx.json {
        print_json(
            &json!({"version": cur.id, "n_input": cur.n_input, "n_quarantined": cur.quarantined.len(), "n_records": cur.records.len(), "passes": cur.reports, "sources": cur.sources, "quarantined": cur.quarantined, "example": example}),
        );
    } else {
        println!(
            "{} rows read, {} quarantined, {} records would be kept (nothing written).\n",
            cur.n_input,
            cur.quarantined.len(),
            cur.records.len()
        );
        print!("{}", hone_train::reports::funnel_table(&cur.reports));
        for q in cur.quarantined.iter().take(20) {
            println!(
                "quarantine {}:{}: field `{}`: {}",
                q.file, q.line, q.field, q.reason
            );
        }
        if cur.quarantined.len() > 20 {
            println!("… and {} more quarantined rows", cur.quarantined.len() - 20);
        }
        if let Some(e) = &example {
            println!(
                "\nexample {} as `{}` trains on it ([[…]] is what the loss sees; {} of {} examples cut to max_length):\n{}",
                e.id, e.model, e.truncated, e.n, e.text
            );
        }
    }
    Ok(0)
}

pub fn data_clean(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open(&project.root)?;
    let mut pb = ctx.spinner("cleaning");
    let out = curate::clean(
        &project,
        &mut store,
        &command_line(),
        &mut progress_printer(&pb),
    )?;
    pb.finish_and_clear();
    let v = &out.version;
    let passes = curate::version_info(v)?.passes;
    if ctx.json {
        print_json(
            &json!({"version": v.id, "cached": out.cached, "n_input": v.n_input, "n_quarantined": v.n_quarantined, "n_records": v.n_records, "passes": passes}),
        );
    } else {
        if out.restored {
            println!(
                "dataset version {} had lost its objects; curated again from its sources and restored ({} records).",
                short(&v.id),
                v.n_records
            );
        } else if out.cached {
            println!(
                "cached: dataset version {} is up to date ({} records).",
                short(&v.id),
                v.n_records
            );
        } else {
            println!(
                "dataset version {}: {} rows read, {} quarantined, {} records kept.\n",
                short(&v.id),
                v.n_input,
                v.n_quarantined,
                v.n_records
            );
            print!("{}", hone_train::reports::funnel_table(&passes));
        }
        println!(
            "\nNext: `hone data report` for the HTML report, `hone data why ID` for one record."
        );
    }
    Ok(0)
}

fn short(id: &str) -> &str {
    hone_core::hash::short(id)
}

pub fn data_log(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let versions = store.versions()?;
    if ctx.json {
        print_json(&serde_json::to_value(&versions)?);
        return Ok(0);
    }
    if versions.is_empty() {
        println!("no dataset versions yet: run `hone data clean`.");
        return Ok(0);
    }
    let (header, rows) = curate::log_table(&versions)?;
    print!("{}", table(&header, &rows));
    Ok(0)
}

pub fn data_why(ctx: &Context, id: &str, version: Option<&str>) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let h = hone_train::why::history(&store, id, version)?;
    if ctx.json {
        print_json(&serde_json::to_value(&h)?);
    } else {
        println!("{}", h.render());
    }
    Ok(0)
}

pub fn data_show(ctx: &Context, version: Option<&str>, limit: usize) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let v = store.resolve_version(version)?;
    let records = curate::load_records(&store, &v)?;
    if ctx.json {
        let arr: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                let mut o = serde_json::to_value(r).unwrap_or_default();
                if let Some(m) = o.get_mut("meta") {
                    *m = serde_json::from_str(m.as_str().unwrap_or("{}")).unwrap_or_default();
                }
                o
            })
            .collect();
        println!("{}", serde_json::to_string(&arr)?);
        return Ok(0);
    }
    let generate = project.config.task.kind == hone_core::config::TaskKind::Generate;
    let (header, rows) = curate::show_table(&records, limit, generate);
    println!(
        "dataset version {} — {} records{}",
        short(&v.id),
        records.len(),
        if records.len() > limit {
            format!(" (first {limit}; --limit N for more, --json for all)")
        } else {
            String::new()
        }
    );
    print!("{}", table(&header, &rows));
    Ok(0)
}

pub fn data_report(ctx: &Context, version: Option<&str>, out: Option<PathBuf>) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let v = store.resolve_version(version)?;
    let (path, md) = hone_train::reports::write_data_report(&project, &store, &v, out)?;
    if ctx.json {
        print_json(&json!({"version": v.id, "html": path, "markdown": path.with_extension("md")}));
    } else {
        println!("{md}\nHTML report: {}", path.display());
    }
    Ok(0)
}

pub fn doctor(ctx: &Context, repair: bool) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open_existing(&project.root)?;
    let report = if repair {
        hone_train::doctor::repair(&project, &mut store, &command_line())?
    } else {
        hone_train::doctor::check(&store)?
    };
    if ctx.json {
        print_json(&serde_json::to_value(&report)?);
    } else {
        print!("{}", report.text());
    }
    Ok(if report.ok() { 0 } else { 1 })
}

pub fn audit_verify(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let report = store.verify_audit()?;
    if ctx.json {
        print_json(&serde_json::to_value(&report)?);
    } else if report.ok() {
        println!(
            "audit log intact: {} entries, hash chain verified, {}.",
            report.n_entries,
            match &report.anchor {
                Some((seq, hash)) => format!("head anchored at entry {seq} ({})", short(hash)),
                None => "no anchored head yet (the next change writes .hone/audit-head)".into(),
            }
        );
    } else {
        for p in &report.problems {
            println!("{}", p.problem);
        }
    }
    if report.ok() {
        Ok(0)
    } else {
        bail!(
            "the audit log was tampered with ({} problem(s) above)",
            report.problems.len()
        )
    }
}

pub fn grade_validate(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let v = hone_train::graders::validate(&project, &Store::open_existing(&project.root)?)?;
    let code = if v.failed() { 3 } else { 0 };
    if ctx.json {
        print_json(&serde_json::to_value(&v)?);
        return Ok(code);
    }
    let (header, rows) = v.table();
    print!("{}", table(&header, &rows));
    println!(
        "adversarial answers tried on {} training items of version {}",
        v.items,
        short(&v.version)
    );
    for line in v.problems() {
        eprintln!("warning: {line}");
    }
    if code != 0 {
        eprintln!(
            "grader check failed (exit code 3): fix the fields or the grader, or set [policy] exploitable_graders = \"warn\""
        );
    }
    Ok(code)
}

pub fn grade_run(ctx: &Context, run: Option<&str>, model: Option<&str>, dev: bool) -> Result<u8> {
    use hone_train::grade_split::GradeSplit;
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let r = hone_train::record::named_or_chosen(&store, run, model)?;
    let split = if dev {
        GradeSplit::Dev
    } else {
        GradeSplit::Test
    };
    let mut pb = ctx.spinner("grading");
    let g = hone_train::grade_split::grade_run(
        &project,
        &store,
        &r,
        split,
        &mut progress_printer(&pb),
    )?;
    pb.finish_and_clear();
    if ctx.json {
        print_json(&serde_json::to_value(&g)?);
    } else {
        print!("{}", g.text());
    }
    Ok(0)
}

pub fn card(ctx: &Context, run: Option<&str>, model: Option<&str>) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let r = hone_train::record::named_or_chosen(&store, run, model)?;
    let w = hone_train::card::write(&project, &store, &r)?;
    if ctx.json {
        print_json(&serde_json::to_value(&w)?);
    } else {
        println!(
            "model card for run #{} ({}): {} and {}",
            r.seq,
            r.model,
            w.markdown.display(),
            w.html.display()
        );
    }
    Ok(0)
}

pub fn approve(ctx: &Context, run: &str, reason: &str, revoke: bool) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open_existing(&project.root)?;
    let r = hone_train::record::resolve(&store, run)?;
    let a =
        hone_train::approval::approve(&project, &mut store, &r, reason, revoke, &command_line())?;
    if ctx.json {
        print_json(&serde_json::to_value(&a)?);
    } else {
        print!("{}", a.text());
    }
    Ok(if a.refused { 3 } else { 0 })
}

pub fn token(ctx: &Context, cmd: crate::TokenCommand) -> Result<u8> {
    use hone_train::tokens::{self, Role};
    let project = open_project(ctx)?;
    let mut store = Store::open(&project.root)?;
    match cmd {
        crate::TokenCommand::Create {
            role,
            name,
            expires,
        } => {
            let role = Role::parse(&role).ok_or_else(|| Error::Usage(format!("role `{role}`")))?;
            let t = tokens::create(&mut store, &name, role, expires, &command_line())?;
            if ctx.json {
                print_json(&serde_json::to_value(&t)?);
            } else {
                println!(
                    "{}\n(token `{name}`, role {}: shown once, only its hash is stored)",
                    t.token,
                    role.as_str()
                );
            }
        }
        crate::TokenCommand::List if ctx.json => {
            print_json(&serde_json::to_value(store.tokens()?)?)
        }
        crate::TokenCommand::List => print!("{}", tokens::table(&store.tokens()?)),
        crate::TokenCommand::Revoke { name } => {
            tokens::revoke(&mut store, &name, &command_line())?;
            println!("token `{name}` revoked");
        }
    }
    Ok(0)
}

pub fn drift(ctx: &Context, run: Option<&str>, w: Option<usize>, m: Option<usize>) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let run = run
        .map(|r| hone_train::record::resolve(&store, r))
        .transpose()?;
    let t = hone_train::drift::thresholds(&project, w, m);
    let report = hone_train::drift::check(&project, &store, run.as_ref(), t)?;
    match ctx.json {
        true => print_json(&serde_json::to_value(&report)?),
        false => print!("{}", report.text()),
    }
    Ok(if report.alarms > 0 { 3 } else { 0 })
}

pub fn serve(ctx: &Context, opts: hone_serve::Options) -> Result<u8> {
    let project = open_project(ctx)?;
    let server = hone_serve::Server::prepare(&project, opts)?;
    let ready = server.ready(server.purge()?);
    if !ready.approved {
        eprintln!(
            "WARNING: serving run #{} ({}), which is NOT the approved release (--allow-unapproved)",
            ready.run_seq, ready.model
        );
    }
    server.run(hone_serve::termination(), |addr| match ctx.json {
        // One line, so that a script can read it and go on.
        true => println!("{}", json!({"listening": addr.to_string(), "serving": ready})),
        false => eprintln!(
            "serving run #{} `{}` ({}) on http://{addr} ({} old prediction logs purged); Ctrl-C stops",
            ready.run_seq,
            ready.model,
            short(&ready.run),
            ready.purged
        ),
    })?;
    Ok(0)
}

pub fn ui(ctx: &Context, addr: std::net::SocketAddr) -> Result<u8> {
    let dash = hone_serve::Dashboard::prepare(&open_project(ctx)?, addr)?;
    dash.run(hone_serve::termination(), |addr| match ctx.json {
        true => println!("{}", json!({"listening": addr.to_string()})),
        false => {
            eprintln!("dashboard on http://{addr}/ (log in with a review token); Ctrl-C stops")
        }
    })?;
    Ok(0)
}

pub fn audit_log(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let entries = store.audit_entries()?;
    if ctx.json {
        print_json(&serde_json::to_value(&entries)?);
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.seq.to_string(),
                e.at.chars().take(19).collect(),
                e.who.clone(),
                clip(&e.command, 50),
                clip(&e.outputs.to_string(), 60),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["#", "at", "who", "command", "outputs"], &rows)
    );
    Ok(0)
}

pub fn demo(ctx: &Context, dir: Option<PathBuf>, seed: u64) -> Result<u8> {
    let started = std::time::Instant::now();
    let dir = match dir {
        Some(d) => {
            if d.exists()
                && std::fs::read_dir(&d)
                    .map(|mut it| it.next().is_some())
                    .unwrap_or(false)
            {
                return Err(Error::Usage(format!(
                    "{} is not empty; choose an empty or new directory",
                    d.display()
                ))
                .into());
            }
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            d
        }
        // Kept after the command ends so the reports can be opened.
        None => tempfile::Builder::new()
            .prefix("hone-demo-")
            .tempdir()?
            .keep(),
    };
    let mut pb = ctx.spinner("generating the demo project");
    let d = hone_train::demo::run_demo(&dir, seed, &mut progress_printer(&pb))?;
    let g = hone_train::demo::run_generate_demo(&dir, seed, &mut progress_printer(&pb))?;
    pb.finish_and_clear();
    let gen_ok = g.outcome.gates_pass();
    let (v, out, manifest) = (&d.version, &d.outcome, &d.manifest);
    let (data_report, run_report) = (&d.data_report.0, &d.run_report.0);
    if ctx.json {
        print_json(
            &json!({"project": dir, "version": v.id, "n_input": v.n_input, "n_quarantined": v.n_quarantined, "n_records": v.n_records, "planted": manifest.planted.len(), "leak_pairs": d.leak.0, "planted_leaks": manifest.leaks.len(), "planted_leaks_caught": d.caught, "chosen_run": out.chosen().id, "gates": out.gates, "gates_pass": out.gates_pass(), "data_report": data_report, "run_report": run_report, "card": d.card, "generate": {"project": g.dir, "rows": g.n_rows, "leaks_dropped": g.outcome.split.contamination.len(), "chosen_run": g.outcome.chosen().id, "gates_pass": gen_ok, "run_report": g.run_report.0, "sample": g.sample, "reward": g.reward}, "seconds": started.elapsed().as_secs_f64()}),
        );
    } else {
        print!(
            "{}",
            hone_train::demo::render(&d, &g, &dir, started.elapsed().as_secs_f64())?
        );
    }
    Ok(if out.gates_pass() && gen_ok { 0 } else { 3 })
}

pub fn split(ctx: &Context, refreeze: Option<String>) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open(&project.root)?;
    let mut pb = ctx.spinner("splitting");
    let cur = curate::clean(
        &project,
        &mut store,
        &command_line(),
        &mut progress_printer(&pb),
    )?;
    let records = curate::load_records(&store, &cur.version)?;
    let suites = hone_train::suites::load_project(&project)?;
    let s = hone_train::split_stage::run(
        &project,
        &mut store,
        &cur.version,
        &records,
        &suites,
        refreeze.as_deref(),
        &command_line(),
    )?;
    pb.finish_and_clear();
    if ctx.json {
        print_json(
            &json!({"split": s.row.id, "cached": s.cached, "froze": s.froze, "summary": s.summary}),
        );
    } else {
        println!("{}", s.summary_line());
        for w in &s.warnings {
            println!("warning: {w}");
        }
        if !s.contamination.is_empty() {
            println!(
                "contamination: {} pair(s); their training records were dropped (policy drop_train):",
                s.contamination.len()
            );
            for p in s.contamination.iter().take(20) {
                println!(
                    "  test {} ~ train {}: {} (similarity {:.2})",
                    p.test_id, p.train_id, p.kind, p.similarity
                );
            }
        }
    }
    Ok(0)
}

pub fn run(ctx: &Context, refreeze: Option<String>) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open(&project.root)?;
    let mut pb = ctx.spinner("running");
    let out = hone_train::run_stage::run(
        &project,
        &mut store,
        refreeze.as_deref(),
        &command_line(),
        &mut progress_printer(&pb),
    )?;
    let (html_path, md) = hone_train::reports::write_run_report(&project, &store, &out)?;
    let chosen = out.chosen();
    pb.finish_and_clear();
    let code = if out.gates_pass() { 0 } else { 3 };
    if ctx.json {
        let runs: Vec<serde_json::Value> = out.runs.iter().enumerate().map(|(i, r)| json!({"graders": out.graders.get(i), "run": r.run.id, "seq": r.run.seq, "model": r.run.model, "cached": r.cached, "chosen": r.run.id == chosen.id, "test": {"accuracy": r.run.record.test.accuracy, "macro_f1": r.run.record.test.macro_f1}, "dev": r.run.record.dev, "generation": r.run.record.generation})).collect();
        print_json(
            &json!({"version": out.version_id, "split": out.split.row.id, "chosen": chosen.id, "choice": out.choice, "runs": runs, "metrics": chosen.record.test, "gates": out.gates, "gates_pass": out.gates_pass(), "report": html_path}),
        );
    } else {
        println!(
            "dataset version {}{}",
            short(&out.version_id),
            if out.version_cached { " (cached)" } else { "" }
        );
        println!("{}", out.split.summary_line());
        for w in &out.split.warnings {
            println!("warning: {w}");
        }
        if !out.split.contamination.is_empty() {
            println!(
                "contamination: {} pair(s) found; their training records were dropped (policy drop_train)",
                out.split.contamination.len()
            );
        }
        for r in &out.runs {
            let ending = match &r.run.record.train.report {
                hone_train::record::TrainReport::Lm(l) if !r.cached => l.ending(),
                _ => None,
            };
            let ending = ending.map(|e| format!(": {e}")).unwrap_or_default();
            let what = if r.cached { "cached" } else { "trained" };
            println!("  run #{} {:<12} {what}{ending}", r.run.seq, r.run.model);
        }
        println!("\n{md}");
        println!("Run report: {}", html_path.display());
        if code == 3 {
            eprintln!("a success gate failed (exit code 3)");
        }
    }
    Ok(code)
}

pub fn runs(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let runs = hone_train::record::listing(&store)?;
    if ctx.json {
        print_json(&serde_json::to_value(&runs)?);
        return Ok(0);
    }
    let (headers, rows) = hone_train::record::listing_table(&runs);
    print!("{}", table(&headers, &rows));
    if runs.iter().any(|l| l.chosen) {
        println!("* the model the latest `hone run` chose (predict and export use it)");
    }
    Ok(0)
}

pub fn compare(ctx: &Context, a: &str, b: &str) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let (ra, rb) = (
        hone_train::record::resolve(&store, a)?,
        hone_train::record::resolve(&store, b)?,
    );
    let c = hone_train::compare::compare_runs(&project, &store, &ra, &rb)?;
    match ctx.json {
        true => print_json(&c.json),
        false => print!("{}", c.text),
    }
    Ok(0)
}

pub fn export(
    ctx: &Context,
    run: Option<&str>,
    model: Option<&str>,
    out: &std::path::Path,
) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let chosen = hone_train::record::named_or_chosen(&store, run, model)?;
    let what = hone_train::run_stage::export_model(&store, &project.root, &chosen, out)?;
    if ctx.json {
        print_json(&json!({"run": chosen.id, "model": chosen.model, "format": what, "dir": out}));
    } else {
        println!(
            "exported {} (run {}) as {what} to {}",
            chosen.model,
            hone_core::hash::short(&chosen.id),
            out.display()
        );
    }
    Ok(0)
}

pub fn predict(
    ctx: &Context,
    input: &str,
    (run, model): (Option<&str>, Option<&str>),
    top_k: usize,
    gen_over: hone_train::predict::GenOverrides,
) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let named = run.is_some() || model.is_some();
    let chosen = hone_train::record::named_or_chosen(&store, run, model)?;
    let model = (chosen.kind != "lm")
        .then(|| hone_train::run_stage::load_model(&store, &chosen))
        .transpose()?;
    // stdout is the predictions; which model made them goes to stderr.
    eprintln!(
        "predicting with run #{} `{}` ({}){}",
        chosen.seq,
        chosen.model,
        short(&chosen.id),
        if named {
            ""
        } else {
            ", the model the latest `hone run` chose"
        }
    );
    let inputs = if input == "-" {
        hone_train::predict::read_inputs("-", std::io::stdin().lock())?
    } else {
        let f = std::fs::File::open(input).map_err(|e| Error::io(input, e))?;
        hone_train::predict::read_inputs(input, std::io::BufReader::new(f))?
    };
    if inputs.is_empty() {
        let name = if input == "-" { "stdin" } else { input };
        eprintln!(
            "{name}: no input lines; nothing to predict (one text, JSON object or chat per line)"
        );
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    // Inputs are prepared as the run's training data was: the policy of its dataset version.
    let prep = hone_train::curate::text_prep_of(&store, &chosen.version)?;
    let Some(model) = model else {
        let (root, prep) = (&project.root, prep.keeping_newlines());
        hone_train::predict::predict_generate(
            &store, root, &chosen, &inputs, gen_over, &prep, &mut w,
        )?;
        use std::io::Write;
        w.flush()?;
        return Ok(0);
    };
    hone_train::predict::predict(
        &model,
        &inputs,
        top_k.max(1),
        chosen.record.decision,
        &prep,
        &mut w,
    )?;
    use std::io::Write;
    w.flush()?;
    Ok(0)
}

pub fn review_answers(ctx: &Context, action: hone_train::answer_review::Action) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open_existing(&project.root)?;
    let (who, now) = (
        hone_train::project::user_name(),
        chrono::Utc::now().to_rfc3339(),
    );
    let mut pb = ctx.spinner("reviewing");
    let out = hone_train::answer_review::execute(
        &project,
        &mut store,
        action,
        (&who, &now, &command_line()),
        &mut progress_printer(&pb),
    )?;
    pb.finish_and_clear();
    match ctx.json {
        true => print_json(&serde_json::to_value(&out)?),
        false => println!("{}", out.text().trim_end()),
    }
    Ok(0)
}

pub fn review(ctx: &Context, from: Option<PathBuf>) -> Result<u8> {
    use hone_train::review;
    use std::io::{BufRead, Write};
    let project = open_project(ctx)?;
    let mut store = Store::open_existing(&project.root)?;
    let rctx = review::ReviewContext::load(&store)?;
    let reviewer = hone_train::project::user_name();
    let now = chrono::Utc::now().to_rfc3339();
    let mut decisions = Vec::new();
    if let Some(path) = from {
        decisions = review::read_decisions(&path, &rctx, &reviewer, &now)?;
    } else {
        let (scan, queue) = review::queue(&store, &rctx)?;
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let mut out = std::io::stdout();
        println!(
            "{} flagged record(s) to review (a = accept the label, r = relabel, d = drop, s = skip, q = quit)",
            queue.len()
        );
        for (n, s) in queue.iter().enumerate() {
            let Some(r) = rctx.record(&s.id) else {
                continue;
            };
            println!("{}", review::describe(n, queue.len(), s, r));
            let answer = loop {
                print!("  [a/r/d/s/q] > ");
                out.flush()?;
                let Some(line) = lines.next().transpose()? else {
                    break "q".to_string();
                };
                let a = line.trim().to_lowercase();
                if ["a", "r", "d", "s", "q"].contains(&a.as_str()) {
                    break a;
                }
                println!("  please answer a, r, d, s or q");
            };
            let decision = match answer.as_str() {
                "q" => break,
                "a" => ("accept", None),
                "d" => ("drop", None),
                "s" => ("skip", None),
                _ => {
                    let suggested = s.suggested_label.clone().unwrap_or_default();
                    print!("  new label [{suggested}] > ");
                    out.flush()?;
                    let typed = lines
                        .next()
                        .transpose()?
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    (
                        "relabel",
                        Some(if typed.is_empty() { suggested } else { typed }),
                    )
                }
            };
            let d = hone_store::Decision {
                record_id: s.id.clone(),
                decision: decision.0.into(),
                label: decision.1,
                reviewer: reviewer.clone(),
                at: now.clone(),
                note: match &scan {
                    Some(scan) if s.kind != hone_train::feedback::CONFLICT_RULE => {
                        format!("scan {}", short(&scan.id))
                    }
                    _ => s.kind.clone(),
                },
            };
            match rctx.check(&d) {
                Ok(()) => decisions.push(d),
                Err(e) => println!("  not recorded: {e}"),
            }
        }
    }
    if decisions.is_empty() {
        println!("no decisions recorded.");
        return Ok(0);
    }
    let (counts, out) =
        review::apply(&project, &mut store, &decisions, &reviewer, &command_line())?;
    if ctx.json {
        print_json(
            &json!({"decisions": counts, "reviewer": reviewer, "version": out.version.id, "cached": out.cached}),
        );
    } else {
        println!(
            "{}",
            review::summary(&counts, decisions.len(), &reviewer, &out.version.id)
        );
    }
    Ok(0)
}

pub fn data_scan(ctx: &Context, limit: usize) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open(&project.root)?;
    let mut pb = ctx.spinner("scanning");
    let out = hone_train::scan::run(
        &project,
        &mut store,
        &command_line(),
        &mut progress_printer(&pb),
    )?;
    pb.finish_and_clear();
    if ctx.json {
        println!("{}", serde_json::to_string(&out.suspects)?);
        return Ok(0);
    }
    print!("{}", out.text(limit));
    Ok(0)
}
