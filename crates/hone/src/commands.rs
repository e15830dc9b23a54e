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
    let cur = curate::compute(&project, &mut progress_printer(&pb))?;
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
        // Kept after the command ends so the report can be opened.
        None => tempfile::Builder::new()
            .prefix("hone-demo-")
            .tempdir()?
            .keep(),
    };
    let pb = ctx.spinner("generating the demo project");
    let manifest = hone::demo::write_project(&dir, seed, 1200)?;
    let project = Project::discover(&dir)?;
    let mut store = Store::open(&project.root)?;
    let out = curate::clean(
        &project,
        &mut store,
        "hone demo",
        &mut progress_printer(&pb),
    )?;
    let (report, md) = write_data_report(&project, &store, &out.version, None)?;
    pb.finish_and_clear();
    let v = &out.version;
    if ctx.json {
        print_json(
            &json!({"project": dir, "version": v.id, "n_input": v.n_input, "n_quarantined": v.n_quarantined, "n_records": v.n_records, "planted": manifest.planted.len(), "report": report, "seconds": started.elapsed().as_secs_f64()}),
        );
    } else {
        println!(
            "hone demo: a messy support-ticket project with {} planted defects, written to {}\n",
            manifest.planted.len(),
            dir.display()
        );
        print!("{}", table(&FUNNEL_HEADERS, &funnel_rows(&v.passes)));
        println!("\n{md}");
        println!(
            "Data report: {}\nTry: hone -C {} data why {}   |   hone -C {} data log   |   hone -C {} audit verify",
            report.display(),
            dir.display(),
            manifest
                .planted
                .first()
                .map(|p| p.id.as_str())
                .unwrap_or("T00001"),
            dir.display(),
            dir.display()
        );
        println!("(done in {:.1} s)", started.elapsed().as_secs_f64());
    }
    Ok(0)
}
