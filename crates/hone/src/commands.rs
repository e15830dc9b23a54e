//! One function per command: load the project, call the libraries, render tables or JSON.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use hone::curate::{self, Progress};
use hone::project::Project;
use hone_core::{Action, Error};
use hone_store::{Store, VersionRow};
use serde_json::json;

use crate::ui::{Context, clip, print_json, table};

const INIT_TOML: &str = include_str!("init_template.toml");

fn command_line() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}

fn progress_printer(pb: &indicatif::ProgressBar) -> impl FnMut(Progress) + '_ {
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
    }
}

pub fn init(ctx: &Context, dir: Option<PathBuf>, force: bool) -> Result<u8> {
    let dir = dir.unwrap_or_else(|| ctx.start.clone());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let toml_path = dir.join("hone.toml");
    if toml_path.exists() && !force {
        return Err(Error::Usage(format!(
            "{} already exists; pass --force to overwrite it",
            toml_path.display()
        ))
        .into());
    }
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "my-task".into());
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    for sub in ["data", "suites", "reports"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("creating {}", dir.join(sub).display()))?;
    }
    let text = INIT_TOML.replace("{{name}}", &slug);
    // Write atomically: a partial hone.toml is worse than none.
    let tmp = dir.join(".hone.toml.tmp");
    std::fs::write(&tmp, &text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &toml_path)
        .with_context(|| format!("writing {}", toml_path.display()))?;
    let sample = dir.join("data/examples.jsonl");
    if !sample.exists() {
        std::fs::write(&sample, "{\"id\": \"ex-1\", \"text\": \"where is my refund?\", \"label\": \"refund_status\"}\n{\"id\": \"ex-2\", \"text\": \"I lost my card yesterday\", \"label\": \"card_lost\"}\n").with_context(|| format!("writing {}", sample.display()))?;
    }
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

fn funnel_rows(passes: &serde_json::Value) -> Vec<Vec<String>> {
    passes
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let g = |k: &str| p.get(k).and_then(|v| v.as_u64()).unwrap_or(0).to_string();
            let stats = p
                .get("stats")
                .and_then(|s| s.as_object())
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| v.as_u64() != Some(0))
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            vec![
                p.get("pass")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string(),
                g("n_in"),
                g("n_kept"),
                g("n_dropped"),
                g("n_changed"),
                g("n_flagged"),
                clip(&stats, 70),
            ]
        })
        .collect()
}

const FUNNEL_HEADERS: [&str; 7] = [
    "pass", "in", "kept", "dropped", "changed", "flagged", "details",
];

pub fn data_check(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let pb = ctx.spinner("checking");
    let decisions = if project.root.join(".hone/hone.db").is_file() {
        curate::load_decisions(&Store::open_existing(&project.root)?)?
    } else {
        Default::default()
    };
    let cur = curate::compute(&project, &decisions, &mut progress_printer(&pb))?;
    pb.finish_and_clear();
    let passes = serde_json::to_value(&cur.reports)?;
    if ctx.json {
        print_json(
            &json!({"version": cur.id, "n_input": cur.n_input, "n_quarantined": cur.quarantined.len(), "n_records": cur.records.len(), "passes": passes, "sources": cur.sources, "quarantined": cur.quarantined}),
        );
    } else {
        println!(
            "{} rows read, {} quarantined, {} records would be kept (nothing written).\n",
            cur.n_input,
            cur.quarantined.len(),
            cur.records.len()
        );
        print!("{}", table(&FUNNEL_HEADERS, &funnel_rows(&passes)));
        for q in cur.quarantined.iter().take(20) {
            println!(
                "quarantine {}:{}: field `{}`: {}",
                q.file, q.line, q.field, q.reason
            );
        }
        if cur.quarantined.len() > 20 {
            println!("… and {} more quarantined rows", cur.quarantined.len() - 20);
        }
    }
    Ok(0)
}

pub fn data_clean(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open(&project.root)?;
    let pb = ctx.spinner("cleaning");
    let out = curate::clean(
        &project,
        &mut store,
        &command_line(),
        &mut progress_printer(&pb),
    )?;
    pb.finish_and_clear();
    let v = &out.version;
    if ctx.json {
        print_json(
            &json!({"version": v.id, "cached": out.cached, "n_input": v.n_input, "n_quarantined": v.n_quarantined, "n_records": v.n_records, "passes": v.passes}),
        );
    } else {
        if out.cached {
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
            print!("{}", table(&FUNNEL_HEADERS, &funnel_rows(&v.passes)));
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
    let rows: Vec<Vec<String>> = versions
        .iter()
        .rev()
        .map(|v| {
            let dropped: Vec<String> = v
                .passes
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["n_dropped"].as_u64().unwrap_or(0) > 0)
                .map(|p| format!("{} -{}", p["pass"].as_str().unwrap_or(""), p["n_dropped"]))
                .collect();
            vec![
                v.seq.to_string(),
                short(&v.id).to_string(),
                v.created_at.chars().take(19).collect(),
                v.parent.as_deref().map(short).unwrap_or("-").to_string(),
                v.n_input.to_string(),
                v.n_quarantined.to_string(),
                v.n_records.to_string(),
                clip(&dropped.join(", "), 80),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "#",
                "version",
                "created",
                "parent",
                "rows",
                "quarantined",
                "records",
                "dropped by pass"
            ],
            &rows
        )
    );
    Ok(0)
}

pub fn data_why(ctx: &Context, id: &str, version: Option<&str>) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let v = store.resolve_version(version)?;
    let lineage = store.lineage_of(&v.id, id)?;
    let quarantine: Vec<_> = store
        .quarantine(&v.id)?
        .into_iter()
        .filter(|q| q.id == id)
        .collect();
    let records = curate::load_records(&store, &v)?;
    let kept = records.iter().find(|r| r.id == id);
    let removed = curate::load_removed(&store, &v)?
        .into_iter()
        .find(|r| r.id == id);
    let split_drops = store.split_lineage_of(id)?;
    if lineage.is_empty() && quarantine.is_empty() && kept.is_none() {
        return Err(Error::NotFound { what: "record", name: format!("{id} in version {}", short(&v.id)), hint: "ids are the source's id column, else <source>-<line>; `hone data show` lists kept records".into() }.into());
    }
    let status = if kept.is_some() {
        "kept"
    } else if !quarantine.is_empty() {
        "quarantined"
    } else {
        "dropped"
    };
    if ctx.json {
        print_json(
            &json!({"id": id, "version": v.id, "status": status, "record": kept.or(removed.as_ref()), "lineage": lineage, "quarantine": quarantine}),
        );
        return Ok(0);
    }
    println!("{id} in dataset version {}: {status}", short(&v.id));
    if let Some(r) = kept.or(removed.as_ref()) {
        println!(
            "  source {} line {}, label {}",
            r.source,
            r.line,
            r.label.as_deref().unwrap_or("-")
        );
        println!("  text: {}", clip(&r.text, 200));
        if let Some(c) = &r.cluster
            && c != &r.id
        {
            println!("  near-duplicate cluster: {c}");
        }
    }
    for q in &quarantine {
        println!(
            "  quarantined at {}:{}: field `{}`: {}\n  row: {}",
            q.file, q.line, q.field, q.reason, q.excerpt
        );
    }
    for l in &lineage {
        let verb = match l.action {
            Action::Drop => "dropped",
            Action::Change => "changed",
            Action::Quarantine => "quarantined",
            Action::Flag => "flagged",
        };
        println!(
            "  {verb} by pass `{}` (rule {}): {}",
            l.pass, l.rule, l.reason
        );
        if let Some(rel) = &l.related_id {
            println!("    related record: {rel}");
        }
        if let Some(d) = &l.diff {
            println!("    diff: {}", clip(d, 200));
        }
    }
    for (split, rule, reason, related) in &split_drops {
        println!(
            "  dropped from training by split {} (rule {rule}): {reason}",
            short(split)
        );
        if let Some(rel) = related {
            println!("    related record: {rel}");
        }
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
    let rows: Vec<Vec<String>> = records
        .iter()
        .take(limit)
        .map(|r| {
            vec![
                r.id.clone(),
                r.label.clone().unwrap_or_default(),
                r.source.clone(),
                clip(&r.text, 90),
            ]
        })
        .collect();
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
    print!("{}", table(&["id", "label", "source", "text"], &rows));
    Ok(0)
}

/// Build and write the data report of a version; returns the HTML path and the Markdown.
pub fn write_data_report(
    project: &Project,
    store: &Store,
    v: &VersionRow,
    out: Option<PathBuf>,
) -> Result<(PathBuf, String)> {
    use hone_report::data::{DataReport, Example};
    let lineage = store.lineage(&v.id)?;
    let removed = curate::load_removed(store, v)?;
    let removed_text: std::collections::HashMap<&str, &str> = removed
        .iter()
        .map(|r| (r.id.as_str(), r.text.as_str()))
        .collect();
    let mut examples = Vec::new();
    let mut per_rule: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for l in &lineage {
        let n = per_rule
            .entry((l.pass.clone(), l.rule.clone()))
            .or_default();
        if *n >= 3 {
            continue;
        }
        *n += 1;
        let text = l
            .diff
            .clone()
            .or_else(|| {
                removed_text
                    .get(l.record_id.as_str())
                    .map(|s| s.to_string())
            })
            .unwrap_or_default();
        examples.push(Example {
            pass: l.pass.clone(),
            rule: l.rule.clone(),
            record_id: l.record_id.clone(),
            source: l.source.clone(),
            reason: l.reason.clone(),
            text: clip(&text, 240),
        });
    }
    let quarantine = store
        .quarantine(&v.id)?
        .into_iter()
        .take(50)
        .map(|q| Example {
            pass: "read".into(),
            rule: q.field.clone(),
            record_id: format!("{}:{}", q.file, q.line),
            source: q.source.clone(),
            reason: q.reason.clone(),
            text: q.excerpt.clone(),
        })
        .collect();
    let suspects = match store.latest_scan()? {
        Some(scan) if scan.version == v.id => {
            let list: Vec<serde_json::Value> =
                serde_json::from_slice(&store.get_object(&scan.object)?).unwrap_or_default();
            let text_of: std::collections::HashMap<String, String> =
                curate::load_records(store, v)?
                    .into_iter()
                    .map(|r| (r.id, r.text))
                    .collect();
            list.iter()
                .take(50)
                .map(|x| {
                    let id = x["id"].as_str().unwrap_or("").to_string();
                    Example {
                        pass: x["kind"].as_str().unwrap_or("").into(),
                        rule: format!(
                            "{} → {}",
                            x["label"].as_str().unwrap_or(""),
                            x["suggested_label"].as_str().unwrap_or("-")
                        ),
                        source: String::new(),
                        reason: x["evidence"].as_str().unwrap_or("").into(),
                        text: clip(text_of.get(&id).map(String::as_str).unwrap_or(""), 200),
                        record_id: id,
                    }
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let report = DataReport {
        task: &project.config.task.name,
        version_id: &v.id,
        created_at: &v.created_at,
        parent: v.parent.as_deref(),
        n_input: v.n_input,
        n_records: v.n_records,
        n_quarantined: v.n_quarantined,
        passes: &v.passes,
        sources: &v.sources,
        summary: &v.summary,
        examples,
        quarantine,
        suspects,
    };
    let html_path = out.unwrap_or_else(|| {
        project
            .root
            .join("reports")
            .join(format!("data-{}.html", short(&v.id)))
    });
    if let Some(dir) = html_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let md = report.markdown();
    write_atomic(&html_path, report.html().as_bytes())?;
    write_atomic(&html_path.with_extension("md"), md.as_bytes())?;
    Ok((html_path, md))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn data_report(ctx: &Context, version: Option<&str>, out: Option<PathBuf>) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let v = store.resolve_version(version)?;
    let (path, md) = write_data_report(&project, &store, &v, out)?;
    if ctx.json {
        print_json(&json!({"version": v.id, "html": path, "markdown": path.with_extension("md")}));
    } else {
        println!("{md}\nHTML report: {}", path.display());
    }
    Ok(0)
}

pub fn audit_verify(ctx: &Context) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let report = store.verify_audit()?;
    if ctx.json {
        print_json(&serde_json::to_value(&report)?);
    } else if report.ok() {
        println!(
            "audit log intact: {} entries, hash chain verified.",
            report.n_entries
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
    let pb = ctx.spinner("generating the demo project");
    let manifest = hone::demo::write_project(&dir, seed, 1200)?;
    let mut project = Project::discover(&dir)?;
    let mut store = Store::open(&project.root)?;
    let cleaned = curate::clean(
        &project,
        &mut store,
        "hone demo",
        &mut progress_printer(&pb),
    )?;
    let (data_report, data_md) = write_data_report(&project, &store, &cleaned.version, None)?;
    // 1. The first run must stop: the helpdesk export contains edited copies of official test records.
    let leak = match hone::run_stage::run(
        &project,
        &mut store,
        None,
        "hone demo",
        &mut progress_printer(&pb),
    ) {
        Err(Error::Contamination { pairs, report, .. }) => (pairs, report),
        Err(e) => return Err(e.into()),
        Ok(_) => bail!("the demo's planted test-set leak was not caught (a bug in hone)"),
    };
    // 2. The fix: drop the contaminated training records (recorded; the test set is never edited).
    let toml = std::fs::read_to_string(&project.config_path)?.replace(
        "on_bad_record = \"quarantine\"",
        "on_bad_record = \"quarantine\"\ncontamination = \"drop_train\"",
    );
    std::fs::write(&project.config_path, toml)?;
    project = Project::discover(&dir)?;
    let out = hone::run_stage::run(
        &project,
        &mut store,
        None,
        "hone demo",
        &mut progress_printer(&pb),
    )?;
    let (run_report, run_md) = write_run_report(&project, &store, &out)?;
    let chosen = &out.runs[out.chosen].row;
    pb.finish_and_clear();
    let v = &cleaned.version;
    let caught: usize = manifest
        .leaks
        .iter()
        .filter(|(train, test)| {
            out.split
                .contamination
                .iter()
                .any(|p| &p.train_id == train && &p.test_id == test)
        })
        .count();
    if ctx.json {
        print_json(
            &json!({"project": dir, "version": v.id, "n_input": v.n_input, "n_quarantined": v.n_quarantined, "n_records": v.n_records, "planted": manifest.planted.len(), "leak_pairs": leak.0, "planted_leaks": manifest.leaks.len(), "planted_leaks_caught": caught, "chosen_run": chosen.id, "gates": out.gates, "gates_pass": out.gates_pass(), "data_report": data_report, "run_report": run_report, "seconds": started.elapsed().as_secs_f64()}),
        );
    } else {
        println!(
            "hone demo: a messy support-ticket project with {} planted defects and a planted test-set leak, in {}\n",
            manifest.planted.len(),
            dir.display()
        );
        println!(
            "1. Curation ({} rows read, {} quarantined, {} records kept):\n",
            v.n_input, v.n_quarantined, v.n_records
        );
        print!("{}", table(&FUNNEL_HEADERS, &funnel_rows(&v.passes)));
        println!("\n{data_md}");
        println!(
            "2. First `hone run` stopped (exit code 4): {} test/train pair(s) leak, {} of the {} planted leaks among them:\n{}\n",
            leak.0,
            caught,
            manifest.leaks.len(),
            leak.1
        );
        println!(
            "3. Fixed with [policy] contamination = \"drop_train\" (the leaked training records are dropped and recorded) and run again:\n"
        );
        println!("{}\n{run_md}", split_summary_line(&out.split));
        println!(
            "Reports:\n  data: {}\n  run:  {}",
            data_report.display(),
            run_report.display()
        );
        println!(
            "Try:  hone -C {d} runs  |  hone -C {d} data why {}  |  echo \"where is my refund\" | hone -C {d} predict -  |  hone -C {d} audit verify",
            manifest
                .leaks
                .first()
                .map(|l| l.0.as_str())
                .unwrap_or("T00001"),
            d = dir.display()
        );
        println!("(done in {:.1} s)", started.elapsed().as_secs_f64());
    }
    Ok(if out.gates_pass() { 0 } else { 3 })
}

fn split_summary_line(s: &hone::split_stage::SplitOutcome) -> String {
    let c = &s.row.summary["counts"];
    format!(
        "split {}{}: train {}, dev {}, test {} (frozen test set #{}{})",
        short(&s.row.id),
        if s.cached { " (cached)" } else { "" },
        c["train"].as_u64().unwrap_or(0),
        c["dev"].as_u64().unwrap_or(0),
        c["test"].as_u64().unwrap_or(0),
        s.row.frozen_seq,
        if s.froze { ", newly pinned" } else { "" }
    )
}

pub fn split(ctx: &Context, refreeze: Option<String>) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open(&project.root)?;
    let pb = ctx.spinner("splitting");
    let cur = curate::clean(
        &project,
        &mut store,
        &command_line(),
        &mut progress_printer(&pb),
    )?;
    let records = curate::load_records(&store, &cur.version)?;
    let suites = hone::suites::load(
        &project.root.join("suites"),
        &hone_data::pii::PiiDetector::new(),
    )?;
    let s = hone::split_stage::run(
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
            &json!({"split": s.row.id, "cached": s.cached, "froze": s.froze, "summary": s.row.summary}),
        );
    } else {
        println!("{}", split_summary_line(&s));
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
                    "  test {} ~ train {}: {} (jaccard {:.2})",
                    p.test_id, p.train_id, p.kind, p.similarity
                );
            }
        }
    }
    Ok(0)
}

/// Paired comparison lines for the report and terminal: each model vs majority, and vs its previous run.
fn comparisons(
    store: &Store,
    out: &hone::run_stage::RunOutcome,
) -> Result<Vec<hone_report::run::ComparisonLine>> {
    let mut lines = Vec::new();
    let all = store.runs()?;
    for r in out.runs.iter().skip(1) {
        let c = hone::compare::compare(store, &out.runs[0].row, &r.row, 7)?;
        lines.push(hone_report::run::ComparisonLine {
            what: format!("{} vs majority", r.row.model),
            delta: c.accuracy.delta,
            lo: c.accuracy.lo,
            hi: c.accuracy.hi,
            p_value: c.mcnemar.p_value,
            verdict: c.verdict_text().into(),
        });
        if let Some(prev) = all
            .iter()
            .rfind(|x| x.model == r.row.model && x.seq < r.row.seq)
            && let Ok(c) = hone::compare::compare(store, prev, &r.row, 7)
        {
            lines.push(hone_report::run::ComparisonLine {
                what: format!("{} vs its previous run #{}", r.row.model, prev.seq),
                delta: c.accuracy.delta,
                lo: c.accuracy.lo,
                hi: c.accuracy.hi,
                p_value: c.mcnemar.p_value,
                verdict: c.verdict_text().into(),
            });
        }
    }
    Ok(lines)
}

/// Write the HTML and Markdown run report of `out`; returns the HTML path and the Markdown.
fn write_run_report(
    project: &Project,
    store: &Store,
    out: &hone::run_stage::RunOutcome,
) -> Result<(PathBuf, String)> {
    let report = hone_report::run::RunReport {
        task: &project.config.task.name,
        runs: out
            .runs
            .iter()
            .map(|r| (r.row.id.as_str(), r.row.model.as_str(), &r.row.record))
            .collect(),
        chosen: out.chosen,
        gates: out
            .gates
            .iter()
            .map(|g| {
                (
                    g.metric.clone(),
                    g.rule.clone(),
                    g.value,
                    g.pass,
                    g.note.clone(),
                )
            })
            .collect(),
        comparisons: comparisons(store, out)?,
        split_summary: &out.split.row.summary,
    };
    let chosen = &out.runs[out.chosen].row;
    let html_path = project
        .root
        .join("reports")
        .join(format!("run-{}.html", short(&chosen.id)));
    std::fs::create_dir_all(project.root.join("reports")).with_context(|| "creating reports/")?;
    write_atomic(&html_path, report.html().as_bytes())?;
    let md = report.markdown();
    write_atomic(&html_path.with_extension("md"), md.as_bytes())?;
    Ok((html_path, md))
}

pub fn run(ctx: &Context, refreeze: Option<String>) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open(&project.root)?;
    let pb = ctx.spinner("running");
    let out = hone::run_stage::run(
        &project,
        &mut store,
        refreeze.as_deref(),
        &command_line(),
        &mut progress_printer(&pb),
    )?;
    let (html_path, md) = write_run_report(&project, &store, &out)?;
    let chosen = &out.runs[out.chosen].row;
    pb.finish_and_clear();
    let code = if out.gates_pass() { 0 } else { 3 };
    if ctx.json {
        let runs: Vec<serde_json::Value> = out.runs.iter().map(|r| json!({"run": r.row.id, "seq": r.row.seq, "model": r.row.model, "cached": r.cached, "test": {"accuracy": r.row.record["test"]["accuracy"], "macro_f1": r.row.record["test"]["macro_f1"]}, "dev": r.row.record["dev"]})).collect();
        print_json(
            &json!({"version": out.version_id, "split": out.split.row.id, "chosen": chosen.id, "runs": runs, "metrics": chosen.record["test"], "gates": out.gates, "gates_pass": out.gates_pass(), "report": html_path}),
        );
    } else {
        println!(
            "dataset version {}{}",
            short(&out.version_id),
            if out.version_cached { " (cached)" } else { "" }
        );
        println!("{}", split_summary_line(&out.split));
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
            println!(
                "  run #{} {:<12} {}",
                r.row.seq,
                r.row.model,
                if r.cached { "cached" } else { "trained" }
            );
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
    let runs = store.runs()?;
    if ctx.json {
        print_json(&serde_json::to_value(&runs)?);
        return Ok(0);
    }
    let f = |v: &serde_json::Value| v.as_f64().map_or("–".into(), |x| format!("{x:.4}"));
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                short(&r.id).to_string(),
                r.created_at.chars().take(19).collect(),
                r.model.clone(),
                r.kind.clone(),
                short(&r.version).to_string(),
                f(&r.record["test"]["accuracy"]["estimate"]),
                f(&r.record["test"]["macro_f1"]["estimate"]),
                f(&r.record["dev"]["macro_f1"]),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "#",
                "run",
                "created",
                "model",
                "kind",
                "data",
                "test acc",
                "test macro-F1",
                "dev macro-F1"
            ],
            &rows
        )
    );
    Ok(0)
}

pub fn compare(ctx: &Context, a: &str, b: &str) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let (ra, rb) = (store.resolve_run(a)?, store.resolve_run(b)?);
    let c = hone::compare::compare(&store, &ra, &rb, 7)?;
    if ctx.json {
        let mut v = serde_json::to_value(&c)?;
        v["verdict_text"] = json!(c.verdict_text());
        print_json(&v);
        return Ok(0);
    }
    println!(
        "A = run #{} {} ({}), B = run #{} {} ({}), {} shared test examples\n",
        ra.seq,
        ra.model,
        short(&ra.id),
        rb.seq,
        rb.model,
        short(&rb.id),
        c.n_shared
    );
    println!(
        "accuracy   A {:.4}  B {:.4}  Δ {:+.4}  95% CI [{:+.4}, {:+.4}]",
        c.accuracy_a, c.accuracy_b, c.accuracy.delta, c.accuracy.lo, c.accuracy.hi
    );
    println!(
        "macro-F1                       Δ {:+.4}  95% CI [{:+.4}, {:+.4}]",
        c.macro_f1.delta, c.macro_f1.lo, c.macro_f1.hi
    );
    println!(
        "McNemar    A right/B wrong {}, A wrong/B right {}, p = {:.4}{}",
        c.mcnemar.b,
        c.mcnemar.c,
        c.mcnemar.p_value,
        if c.mcnemar.exact { " (exact)" } else { "" }
    );
    for (k, va, vb) in &c.config_diff {
        println!("config     {k}: {va} → {vb}");
    }
    for d in &c.data_diff {
        println!("data       {d}");
    }
    if c.config_diff.is_empty() && c.data_diff.is_empty() {
        println!("config and data: identical");
    }
    println!(
        "\nB is {} than A.",
        c.verdict_text().replace(
            "indistinguishable",
            "indistinguishable from (neither better nor worse)"
        )
    );
    Ok(0)
}

/// The run named by `--run` (number or id prefix) or `--model` (its latest run); `None` when neither is given.
fn named_run(
    store: &Store,
    runs: &[hone_store::RunRow],
    run: Option<&str>,
    model: Option<&str>,
) -> Result<Option<hone_store::RunRow>> {
    Ok(match (run, model) {
        (Some(r), _) => Some(store.resolve_run(r)?),
        (None, Some(m)) => Some(
            runs.iter()
                .rfind(|r| r.model == m)
                .cloned()
                .ok_or_else(|| Error::NotFound {
                    what: "run of model",
                    name: m.to_string(),
                    hint: "`hone runs` lists runs".into(),
                })?,
        ),
        (None, None) => None,
    })
}

pub fn export(
    ctx: &Context,
    run: Option<&str>,
    model: Option<&str>,
    out: &std::path::Path,
) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let chosen = match named_run(&store, &store.runs()?, run, model)? {
        Some(r) => r,
        None => {
            return Err(
                Error::Usage("say which model to export: --model NAME or --run N".into()).into(),
            );
        }
    };
    let what = hone::run_stage::export_model(&store, &chosen, out)?;
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
    run: Option<&str>,
    model: Option<&str>,
    top_k: usize,
) -> Result<u8> {
    let project = open_project(ctx)?;
    let store = Store::open_existing(&project.root)?;
    let runs = store.runs()?;
    let chosen = match named_run(&store, &runs, run, model)? {
        Some(r) => r,
        None => {
            let last_split =
                runs.last()
                    .map(|r| r.split.clone())
                    .ok_or_else(|| Error::NotFound {
                        what: "run",
                        name: "(any)".into(),
                        hint: "run `hone run` first".into(),
                    })?;
            runs.iter()
                .filter(|r| r.split == last_split && r.kind != "majority")
                .max_by(|a, b| {
                    a.record["dev"]["macro_f1"]
                        .as_f64()
                        .unwrap_or(f64::MIN)
                        .total_cmp(&b.record["dev"]["macro_f1"].as_f64().unwrap_or(f64::MIN))
                })
                .cloned()
                .ok_or_else(|| Error::NotFound {
                    what: "trained model",
                    name: "(latest run)".into(),
                    hint: "add a [[model]] and run `hone run`".into(),
                })?
        }
    };
    let model = hone::run_stage::load_model(&store, &chosen)?;
    let inputs = if input == "-" {
        hone::predict::read_inputs("-", std::io::stdin().lock())?
    } else {
        let f = std::fs::File::open(input).map_err(|e| Error::io(input, e))?;
        hone::predict::read_inputs(input, std::io::BufReader::new(f))?
    };
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let rule = hone::predict::DecisionRule::of_run(&chosen.record);
    hone::predict::predict(&model, &inputs, top_k.max(1), rule, &mut w)?;
    use std::io::Write;
    w.flush()?;
    Ok(0)
}

/// Check one decision against the latest version: the record exists, is not in the frozen test set, and
/// a relabel names a known label.
fn check_decision(
    d: &hone_store::Decision,
    known: &std::collections::HashMap<&str, &hone_core::Record>,
    labels: &std::collections::BTreeSet<&str>,
    frozen: &std::collections::HashSet<String>,
) -> std::result::Result<(), String> {
    if !known.contains_key(d.record_id.as_str()) {
        return Err(format!(
            "record `{}` is not in the latest dataset version",
            d.record_id
        ));
    }
    if frozen.contains(&d.record_id) {
        return Err(format!(
            "record `{}` is in the frozen test set; it changes only with `hone split --refreeze --reason`",
            d.record_id
        ));
    }
    match d.decision.as_str() {
        "accept" | "drop" | "skip" => Ok(()),
        "relabel" => match d.label.as_deref() {
            Some(l) if labels.contains(l) => Ok(()),
            Some(l) => Err(format!(
                "unknown label `{l}` (known: {})",
                labels.iter().copied().collect::<Vec<_>>().join(", ")
            )),
            None => Err("`relabel` needs a \"label\"".into()),
        },
        other => Err(format!(
            "unknown decision `{other}` (accept, relabel, drop or skip)"
        )),
    }
}

pub fn review(ctx: &Context, from: Option<PathBuf>) -> Result<u8> {
    use std::io::{BufRead, Write};
    let project = open_project(ctx)?;
    let mut store = Store::open_existing(&project.root)?;
    let v = store.resolve_version(None)?;
    let records = curate::load_records(&store, &v)?;
    let known: std::collections::HashMap<&str, &hone_core::Record> =
        records.iter().map(|r| (r.id.as_str(), r)).collect();
    let labels: std::collections::BTreeSet<&str> =
        records.iter().filter_map(|r| r.label.as_deref()).collect();
    let frozen: std::collections::HashSet<String> = store
        .frozen_test()?
        .and_then(|f| f.records.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r["id"].as_str().map(String::from))
        .collect();
    let reviewer = hone::project::who();
    let now = chrono::Utc::now().to_rfc3339();
    let mut decisions = Vec::new();
    if let Some(path) = from {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let bad = |reason: String| {
                Error::BadRecord { file: path.clone(), line: i as u64 + 1, field: "decision".into(), reason, hint: "each line is {\"id\": ..., \"decision\": \"accept\" | \"relabel\" | \"drop\" | \"skip\", \"label\": ..., \"note\": ...}".into() }
            };
            let j: serde_json::Value =
                serde_json::from_str(line).map_err(|e| bad(format!("invalid JSON: {e}")))?;
            let d = hone_store::Decision {
                record_id: j["id"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("missing \"id\"".into()))?,
                decision: j["decision"]
                    .as_str()
                    .map(String::from)
                    .ok_or_else(|| bad("missing \"decision\"".into()))?,
                label: j["label"].as_str().map(String::from),
                reviewer: reviewer.clone(),
                at: now.clone(),
                note: j["note"].as_str().unwrap_or("").to_string(),
            };
            check_decision(&d, &known, &labels, &frozen).map_err(bad)?;
            decisions.push(d);
        }
    } else {
        let scan = store.latest_scan()?.ok_or_else(|| Error::NotFound {
            what: "scan",
            name: "(latest)".into(),
            hint: "run `hone data scan` first, or pass --from FILE".into(),
        })?;
        let suspects: Vec<serde_json::Value> =
            serde_json::from_slice(&store.get_object(&scan.object)?)
                .map_err(|e| Error::Store(format!("scan unreadable: {e}")))?;
        let decided: std::collections::HashSet<String> = store
            .decisions()?
            .into_iter()
            .map(|d| d.record_id)
            .collect();
        let queue: Vec<&serde_json::Value> = suspects
            .iter()
            .filter(|s| {
                s["id"]
                    .as_str()
                    .is_some_and(|id| !decided.contains(id) && known.contains_key(id))
            })
            .collect();
        let stdin = std::io::stdin();
        let mut lines = stdin.lock().lines();
        let mut out = std::io::stdout();
        println!(
            "{} flagged record(s) to review (a = accept the label, r = relabel, d = drop, s = skip, q = quit)",
            queue.len()
        );
        for (n, s) in queue.iter().enumerate() {
            let id = s["id"].as_str().unwrap_or("");
            let r = known[id];
            println!(
                "\n[{}/{}] {id} ({}) label `{}`, suggested `{}`, score {:.3}\n  {}\n  evidence: {}",
                n + 1,
                queue.len(),
                s["kind"].as_str().unwrap_or(""),
                r.label.as_deref().unwrap_or(""),
                s["suggested_label"].as_str().unwrap_or("-"),
                s["score"].as_f64().unwrap_or(0.0),
                clip(&r.text, 200),
                s["evidence"].as_str().unwrap_or("")
            );
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
                    let suggested = s["suggested_label"].as_str().unwrap_or("").to_string();
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
                record_id: id.to_string(),
                decision: decision.0.into(),
                label: decision.1,
                reviewer: reviewer.clone(),
                at: now.clone(),
                note: format!("scan {}", short(&scan.id)),
            };
            match check_decision(&d, &known, &labels, &frozen) {
                Ok(()) => decisions.push(d),
                Err(e) => println!("  not recorded: {e}"),
            }
        }
    }
    if decisions.is_empty() {
        println!("no decisions recorded.");
        return Ok(0);
    }
    store.put_decisions(&decisions, &reviewer, &command_line())?;
    let out = curate::clean(&project, &mut store, &command_line(), &mut |_| {})?;
    let counts = decisions.iter().fold(
        std::collections::BTreeMap::<&str, u64>::new(),
        |mut m, d| {
            *m.entry(d.decision.as_str()).or_default() += 1;
            m
        },
    );
    if ctx.json {
        print_json(
            &json!({"decisions": counts, "reviewer": reviewer, "version": out.version.id, "cached": out.cached}),
        );
    } else {
        println!(
            "recorded {} decision(s) by {reviewer} ({}); dataset version {} applies them.",
            decisions.len(),
            counts
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", "),
            short(&out.version.id)
        );
    }
    Ok(0)
}

pub fn data_scan(ctx: &Context, limit: usize) -> Result<u8> {
    let project = open_project(ctx)?;
    let mut store = Store::open(&project.root)?;
    let pb = ctx.spinner("scanning");
    let out = hone::scan::run(
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
    println!(
        "scanned {} train/dev records: {} suspect(s) ({}); scan {}",
        out.n_scanned,
        out.suspects.len(),
        out.scan.summary["by_kind"],
        short(&out.scan.id)
    );
    let rows: Vec<Vec<String>> = out
        .suspects
        .iter()
        .take(limit)
        .map(|s| {
            vec![
                s.id.clone(),
                s.kind.clone(),
                s.label.clone(),
                s.suggested_label.clone().unwrap_or_else(|| "-".into()),
                format!("{:.3}", s.score),
                clip(&s.evidence, 90),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["id", "kind", "label", "suggested", "score", "evidence"],
            &rows
        )
    );
    if out.auto_decisions > 0 {
        println!(
            "\nthe policy recorded {} decision(s); `hone data clean` (or `hone run`) applies them.",
            out.auto_decisions
        );
    } else if !out.suspects.is_empty() {
        println!("\nNext: `hone review` to accept, relabel or drop each one.");
    }
    Ok(0)
}
