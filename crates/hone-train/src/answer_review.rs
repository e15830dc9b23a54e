//! Answer review for generate tasks: a sheet of a run's answers (several per prompt) for reviewers
//! to rate on a rubric (tone, accuracy, safety, usefulness, 1–5) and mark strong or weak; imported
//! sheets kept in the store with the reviewer in the audit chain; preference pairs (a strong and a
//! weak answer to the same prompt) for `method = "dpo"`; and agreement between reviewers (Cohen's κ
//! on the items two of them reviewed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hone_core::{Error, Record, Result};
use hone_data::split::Part;
use hone_store::Store;
use serde::{Deserialize, Serialize};

use crate::curate::Progress;
use crate::project::Project;
use crate::record::Run;

/// The rubric's dimensions, in sheet order.
pub const RUBRIC: [&str; 4] = ["tone", "accuracy", "safety", "usefulness"];

/// A reviewer's verdict on one answer relative to the others for the same prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Strong,
    Weak,
}

/// One line of a review sheet: an answer, and what the reviewer fills in (ratings 1–5, a mark).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SheetLine {
    /// `ITEM#k`: the k-th answer to the item's prompt.
    pub answer_id: String,
    pub item: String,
    pub run: String,
    pub prompt: String,
    /// The record's reference answer, for the reviewer's eyes.
    #[serde(default)]
    pub reference: Option<String>,
    pub answer: String,
    #[serde(default)]
    pub tone: Option<u8>,
    #[serde(default)]
    pub accuracy: Option<u8>,
    #[serde(default)]
    pub safety: Option<u8>,
    #[serde(default)]
    pub usefulness: Option<u8>,
    #[serde(default)]
    pub mark: Option<Mark>,
    #[serde(default)]
    pub note: String,
}

impl SheetLine {
    fn ratings(&self) -> [Option<u8>; 4] {
        [self.tone, self.accuracy, self.safety, self.usefulness]
    }

    /// Whether the reviewer filled anything in (a rating or a mark).
    pub fn reviewed(&self) -> bool {
        self.mark.is_some() || self.ratings().iter().any(Option::is_some)
    }
}

/// What `hone review answers` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct SheetWritten {
    pub path: PathBuf,
    pub prompts: usize,
    pub answers: usize,
    pub run: String,
}

/// Write a review sheet of `run`'s answers to `n` prompts of `split` (train by default: pairs on
/// dev or test prompts could not train anyway), `samples` answers each: the run's own decoding
/// first, then samples at temperature 0.8, identical answers kept once.
pub fn write_sheet(
    project: &Project,
    store: &Store,
    run: &Run,
    split: Part,
    n: usize,
    samples: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<SheetWritten> {
    use crate::generate_stage::{answer_records, generate_config, load_run_lm, run_seed};
    if run.record.generation.is_none() {
        return Err(Error::Usage(format!(
            "run #{} ({}) is not a generate run: only generated answers are reviewed",
            run.seq, run.model
        )));
    }
    let version = store.resolve_version(Some(&run.version))?;
    let records = crate::curate::load_records(store, &version)?;
    let assignment = crate::split_stage::assignment(store, &run.split)?;
    // A stable, spread-out choice of prompts: by the hash of the record id.
    let mut chosen: Vec<&Record> = records
        .iter()
        .filter(|r| assignment.get(&r.id) == Some(&split))
        .collect();
    chosen.sort_by_key(|r| hone_core::hash::hash_str(&r.id));
    chosen.truncate(n);
    if chosen.is_empty() {
        return Err(Error::Usage(format!(
            "the run's split has no {split:?} records to review"
        )));
    }
    let (mut lm, params) = load_run_lm(store, &project.root, run)?;
    let seed = run_seed(project, run, &params);
    let masker = crate::input::TextPrep::for_policy(&project.config.policy);
    let mut answers: Vec<Vec<String>> = vec![Vec::new(); chosen.len()];
    for k in 0..samples.max(1) {
        let mut cfg = generate_config(&params, seed.wrapping_add(k as u64));
        if k > 0 {
            cfg.temperature = 0.8;
        }
        let ids: Vec<String> = chosen.iter().map(|r| format!("{}#{k}", r.id)).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let label = format!(
            "answer {} prompts, sample {}/{}",
            chosen.len(),
            k + 1,
            samples.max(1)
        );
        let texts = answer_records(
            project, &mut lm, &params, &cfg, &chosen, &id_refs, &label, progress,
        )?;
        for (i, text) in texts.into_iter().enumerate() {
            if !answers[i].contains(&text) {
                answers[i].push(text);
            }
        }
    }
    let mut out = String::new();
    let mut count = 0;
    for (r, list) in chosen.iter().zip(&answers) {
        for (k, a) in list.iter().enumerate() {
            let line = SheetLine {
                answer_id: format!("{}#{k}", r.id),
                item: r.id.clone(),
                run: run.id.clone(),
                prompt: masker.mask(&r.text),
                reference: r.label.clone(),
                answer: a.clone(),
                tone: None,
                accuracy: None,
                safety: None,
                usefulness: None,
                mark: None,
                note: String::new(),
            };
            out.push_str(
                &serde_json::to_string(&line).map_err(|e| Error::Internal(e.to_string()))?,
            );
            out.push('\n');
            count += 1;
        }
    }
    let path = project.root.join("reviews").join(format!(
        "answers-{}-{}.jsonl",
        hone_core::hash::short(&run.id),
        match split {
            Part::Train => "train",
            Part::Dev => "dev",
            Part::Test => "test",
        }
    ));
    crate::reports::write_atomic(&path, out.as_bytes())?;
    Ok(SheetWritten {
        path,
        prompts: chosen.len(),
        answers: count,
        run: run.id.clone(),
    })
}

/// Read a filled sheet: every line parsed and checked (ratings 1–5, one run per sheet), errors
/// naming the file and line. Lines nobody filled in are left out (and counted).
pub fn read_sheet(path: &Path) -> Result<(String, Vec<SheetLine>, usize)> {
    let (run, all) = sheet_lines(path)?;
    let total = all.len();
    let lines: Vec<SheetLine> = all.into_iter().filter(SheetLine::reviewed).collect();
    let untouched = total - lines.len();
    Ok((run, lines, untouched))
}

/// The review sheets `hone review answers` wrote (`reviews/answers-*.jsonl`), by file name.
pub fn sheets(project: &Project) -> Result<Vec<String>> {
    let dir = project.root.join("reviews");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| is_sheet_name(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Whether `name` is a sheet's plain file name (no folder, no `..`): what a web form may name.
pub fn is_sheet_name(name: &str) -> bool {
    name.starts_with("answers-")
        && name.ends_with(".jsonl")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !name.contains("..")
}

/// Every line of a sheet, filled in or not, checked as [`read_sheet`] checks them; and its run.
pub fn sheet_lines(path: &Path) -> Result<(String, Vec<SheetLine>)> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |line: usize, message: String| {
        Error::Data {
        message: format!("{}:{line}: {message}", path.display()),
        hint: "rate tone, accuracy, safety and usefulness from 1 to 5 (or leave null), and mark an answer \"strong\" or \"weak\" (or leave null)".into(),
    }
    };
    let (mut run, mut lines) = (None::<String>, Vec::new());
    let mut seen = BTreeSet::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let s: SheetLine = serde_json::from_str(l).map_err(|e| bad(i + 1, e.to_string()))?;
        if let Some((k, v)) = RUBRIC
            .iter()
            .zip(s.ratings())
            .find(|(_, v)| v.is_some_and(|v| !(1..=5).contains(&v)))
        {
            return Err(bad(
                i + 1,
                format!("`{k}` is {}, not 1 to 5", v.unwrap_or(0)),
            ));
        }
        if run.get_or_insert_with(|| s.run.clone()) != &s.run {
            return Err(bad(
                i + 1,
                "a sheet reviews one run; this line names another".into(),
            ));
        }
        if !seen.insert(s.answer_id.clone()) {
            return Err(bad(
                i + 1,
                format!("answer `{}` appears twice", s.answer_id),
            ));
        }
        lines.push(s);
    }
    let run = run.ok_or_else(|| bad(1, "the sheet is empty".into()))?;
    Ok((run, lines))
}

/// What `hone review import` recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    pub reviewer: String,
    pub run: String,
    pub reviewed: usize,
    pub untouched: usize,
    pub strong: usize,
    pub weak: usize,
    pub object: String,
}

/// Store a filled sheet under `reviewer`, with its audit entry. The run must exist in this store.
pub fn import(
    store: &mut Store,
    path: &Path,
    reviewer: &str,
    at: &str,
    command: &str,
) -> Result<Imported> {
    let (run, lines, untouched) = read_sheet(path)?;
    record(
        store,
        &format!("{}", path.display()),
        &run,
        lines,
        untouched,
        (reviewer, at, command),
    )
}

/// Store reviewed sheet lines of `run` under the reviewer, with the audit entry (`who`: reviewer,
/// time, command); `source` names where they came from in errors. What `import` does once the
/// file is read, and what the dashboard does with a filled form.
pub fn record(
    store: &mut Store,
    source: &str,
    run: &str,
    lines: Vec<SheetLine>,
    untouched: usize,
    who: (&str, &str, &str),
) -> Result<Imported> {
    let (reviewer, at, command) = who;
    let in_range = |l: &SheetLine| l.ratings().iter().flatten().all(|v| (1..=5).contains(v));
    if let Some(l) = lines
        .iter()
        .find(|l| !l.reviewed() || l.run != run || !in_range(l))
    {
        return Err(Error::Data {
            message: format!("{source}: answer `{}` is not a reviewed answer of run {run}", l.answer_id),
            hint: "rate at least one of tone, accuracy, safety, usefulness (1 to 5) or mark the answer".into(),
        });
    }
    let known = crate::record::get(store, run)?.ok_or_else(|| Error::Data {
        message: format!("{source}: run {run} is not in this store"),
        hint: "import the sheet into the project whose run wrote it".into(),
    })?;
    let bytes = serde_json::to_vec(&lines).map_err(|e| Error::Internal(e.to_string()))?;
    let object = store.put_object(&bytes, "answer_reviews")?;
    store.put_answer_reviews(reviewer, &known.id, &object, at, command)?;
    let count = |m: Mark| lines.iter().filter(|l| l.mark == Some(m)).count();
    Ok(Imported {
        reviewer: reviewer.to_string(),
        run: known.id,
        reviewed: lines.len(),
        untouched,
        strong: count(Mark::Strong),
        weak: count(Mark::Weak),
        object,
    })
}

/// Agreement of two reviewers on one dimension, over the answers both reviewed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    pub reviewers: (String, String),
    /// `mark` (strong / weak / unmarked) or a rubric dimension.
    pub on: String,
    pub n: usize,
    /// Cohen's κ; `None` when undefined (one label everywhere on both sides).
    pub kappa: Option<f64>,
}

/// One preference pair, in the format `method = "dpo"` reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreferencePair {
    pub id: String,
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// Pairs and agreement from every imported review.
#[derive(Debug, Clone, Serialize)]
pub struct Pairs {
    pub pairs: Vec<PreferencePair>,
    pub reviewers: Vec<String>,
    /// Answers reviewed (by anyone), and those whose marks conflict between reviewers (one said
    /// strong, another weak): left out of every pair.
    pub answers: usize,
    pub conflicting: usize,
    pub agreement: Vec<Agreement>,
}

/// An answer across sheets: `ITEM#k` repeats from run to run, so the run is part of its identity.
fn answer_key(l: &SheetLine) -> String {
    format!("{}:{}", l.run, l.answer_id)
}

/// Each reviewer's latest review of each answer (by run and answer id), from every imported sheet.
fn latest(store: &Store) -> Result<BTreeMap<(String, String), SheetLine>> {
    let mut out = BTreeMap::new();
    for row in store.answer_reviews()? {
        let lines: Vec<SheetLine> = serde_json::from_slice(&store.get_object(&row.object)?)
            .map_err(|e| Error::Store(format!("answer reviews #{}: {e}", row.seq)))?;
        for l in lines {
            out.insert((row.reviewer.clone(), answer_key(&l)), l);
        }
    }
    Ok(out)
}

/// Build preference pairs (every strong answer against every weak answer to the same prompt, from
/// any run: the prompt is the record's) and the reviewers' agreement. An answer marked strong by
/// one reviewer and weak by another is in no pair; two answers with the same text are never paired.
pub fn pairs(store: &Store) -> Result<Pairs> {
    let reviews = latest(store)?;
    if reviews.is_empty() {
        return Err(Error::Usage(
            "no answer reviews imported yet: `hone review answers` writes a sheet, `hone review import FILE` records it".into(),
        ));
    }
    let reviewers: Vec<String> = reviews
        .keys()
        .map(|(r, _)| r.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut marks: BTreeMap<&str, BTreeSet<Mark>> = BTreeMap::new();
    let mut answer: BTreeMap<&str, &SheetLine> = BTreeMap::new();
    for ((_, id), l) in &reviews {
        answer.insert(id, l);
        if let Some(m) = l.mark {
            marks.entry(id).or_default().insert(m);
        }
    }
    let conflicting = marks.values().filter(|m| m.len() > 1).count();
    let mut by_item: BTreeMap<&str, (Vec<&SheetLine>, Vec<&SheetLine>)> = BTreeMap::new();
    for (id, m) in &marks {
        if m.len() != 1 {
            continue;
        }
        let l = answer[id];
        let e = by_item.entry(&l.item).or_default();
        match m.first() {
            Some(Mark::Strong) => e.0.push(l),
            _ => e.1.push(l),
        }
    }
    let mut out = Vec::new();
    for (strong, weak) in by_item.values() {
        for s in strong {
            for w in weak.iter().filter(|w| w.answer != s.answer) {
                out.push(PreferencePair {
                    // Short run ids: readable, and unique enough within one project.
                    id: format!(
                        "{}:{}>{}:{}",
                        hone_core::hash::short(&s.run),
                        s.answer_id,
                        hone_core::hash::short(&w.run),
                        w.answer_id
                    ),
                    prompt: s.prompt.clone(),
                    chosen: s.answer.clone(),
                    rejected: w.answer.clone(),
                });
            }
        }
    }
    let mut agreement = Vec::new();
    for (i, a) in reviewers.iter().enumerate() {
        for b in &reviewers[i + 1..] {
            let both: Vec<(&SheetLine, &SheetLine)> = reviews
                .iter()
                .filter(|((r, _), _)| r == a)
                .filter_map(|((_, id), la)| {
                    reviews.get(&(b.clone(), id.clone())).map(|lb| (la, lb))
                })
                .collect();
            if both.is_empty() {
                continue;
            }
            let marks_a: Vec<Option<Mark>> = both.iter().map(|(x, _)| x.mark).collect();
            let marks_b: Vec<Option<Mark>> = both.iter().map(|(_, y)| y.mark).collect();
            agreement.push(Agreement {
                reviewers: (a.clone(), b.clone()),
                on: "mark".into(),
                n: both.len(),
                kappa: hone_eval::cohen_kappa(&marks_a, &marks_b),
            });
            for (k, dim) in RUBRIC.iter().enumerate() {
                let rated: Vec<(u8, u8)> = both
                    .iter()
                    .filter_map(|(x, y)| Some((x.ratings()[k]?, y.ratings()[k]?)))
                    .collect();
                if rated.is_empty() {
                    continue;
                }
                let (ra, rb): (Vec<u8>, Vec<u8>) = rated.into_iter().unzip();
                agreement.push(Agreement {
                    reviewers: (a.clone(), b.clone()),
                    on: (*dim).into(),
                    n: ra.len(),
                    kappa: hone_eval::cohen_kappa(&ra, &rb),
                });
            }
        }
    }
    Ok(Pairs {
        pairs: out,
        reviewers,
        answers: answer.len(),
        conflicting,
        agreement,
    })
}

/// Write `pairs` as JSONL (the `preferences` file of a `dpo` model).
pub fn write_pairs(pairs: &[PreferencePair], path: &Path) -> Result<()> {
    let mut out = String::new();
    for p in pairs {
        out.push_str(&serde_json::to_string(p).map_err(|e| Error::Internal(e.to_string()))?);
        out.push('\n');
    }
    crate::reports::write_atomic(path, out.as_bytes())
}

impl Pairs {
    /// The summary `hone review pairs` prints.
    pub fn text(&self, path: &Path) -> String {
        use std::fmt::Write;
        let mut s = format!(
            "{} preference pair(s) from {} reviewed answer(s) by {} reviewer(s) → {}\n",
            self.pairs.len(),
            self.answers,
            self.reviewers.len(),
            path.display()
        );
        if self.conflicting > 0 {
            let _ = writeln!(
                s,
                "{} answer(s) marked strong by one reviewer and weak by another: left out",
                self.conflicting
            );
        }
        for a in &self.agreement {
            let _ = writeln!(
                s,
                "agreement {} / {} on {}: κ {} over {} answer(s)",
                a.reviewers.0,
                a.reviewers.1,
                a.on,
                a.kappa
                    .map_or("undefined (one label everywhere)".into(), |k| format!(
                        "{k:.4}"
                    )),
                a.n
            );
        }
        s
    }
}

/// One `hone review` action on answers.
#[derive(Debug, Clone)]
pub enum Action {
    /// Write a sheet: the run (`--run`, else the latest of `--model`, else the chosen one), train or
    /// dev prompts, how many prompts and answers per prompt.
    Sheet {
        run: Option<String>,
        model: Option<String>,
        dev: bool,
        n: usize,
        samples: usize,
    },
    /// Import a filled sheet.
    Import(PathBuf),
    /// Write preference pairs to this file (relative to the project root).
    Pairs(PathBuf),
}

/// What an [`Action`] did.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Sheet(SheetWritten),
    Imported(Imported),
    Pairs { path: PathBuf, pairs: Pairs },
}

impl Outcome {
    /// What the terminal shows.
    pub fn text(&self) -> String {
        let short = hone_core::hash::short;
        match self {
            Outcome::Sheet(w) => format!(
                "{} answers to {} prompts of run {} → {}\nfill in tone, accuracy, safety, usefulness (1-5) and mark (\"strong\" or \"weak\"), then `hone review import FILE`",
                w.answers,
                w.prompts,
                short(&w.run),
                w.path.display()
            ),
            Outcome::Imported(i) => format!(
                "recorded {} reviewed answer(s) by {} ({} strong, {} weak; {} left blank) for run {}",
                i.reviewed,
                i.reviewer,
                i.strong,
                i.weak,
                i.untouched,
                short(&i.run)
            ),
            Outcome::Pairs { path, pairs } => pairs.text(path),
        }
    }
}

/// Run `action`; `who`, `at` and `command` go into the audit chain of an import.
pub fn execute(
    project: &Project,
    store: &mut Store,
    action: Action,
    (who, at, command): (&str, &str, &str),
    progress: &mut dyn FnMut(Progress),
) -> Result<Outcome> {
    Ok(match action {
        Action::Sheet {
            run,
            model,
            dev,
            n,
            samples,
        } => {
            let r = crate::record::named_or_chosen(store, run.as_deref(), model.as_deref())?;
            let part = if dev { Part::Dev } else { Part::Train };
            Outcome::Sheet(write_sheet(project, store, &r, part, n, samples, progress)?)
        }
        Action::Import(file) => Outcome::Imported(import(store, &file, who, at, command)?),
        Action::Pairs(out) => {
            let p = pairs(store)?;
            let path = project.root.join(out);
            write_pairs(&p.pairs, &path)?;
            Outcome::Pairs { path, pairs: p }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::is_sheet_name;

    #[test]
    fn only_plain_sheet_file_names_are_sheet_names() {
        assert!(is_sheet_name("answers-0a1b2c3d4e5f-train.jsonl"));
        for bad in [
            "../hone.toml",
            "answers-../../x.jsonl",
            "answers-x/../../y.jsonl",
            "pairs.jsonl",
            "answers-x.json",
            "/etc/answers-x.jsonl",
            "answers-x\\y.jsonl",
        ] {
            assert!(!is_sheet_name(bad), "{bad}");
        }
    }
}
