//! The curation stage: read every source, run the passes in order, and commit the result as an immutable
//! dataset version (Parquet object + lineage + quarantine + audit entry). Keyed by the hash of the source
//! files, the policy and hone's version, so an unchanged project is `cached`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use hone_core::config::{BadRecordPolicy, SourceRole};
use hone_core::hash::KeyHasher;
use hone_core::{Action, Error, LineageEntry, Quarantined, Record, Result};
use hone_data::near_dup::NearDupConfig;
use hone_data::passes::{self, Pass, PassReport};
use hone_data::pii::{PiiDetector, PiiKind};
use hone_data::readers::{ReadOptions, read_source};
use hone_store::{NewVersion, Store, VersionRow};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::project::Project;

/// Progress events for the terminal (the library never prints).
pub enum Progress<'a> {
    Reading {
        source: &'a str,
        index: usize,
        total: usize,
    },
    Pass {
        name: &'a str,
        index: usize,
        total: usize,
    },
    Writing,
    /// The learned PII tagger is being trained (first use on this machine; then cached).
    TrainingTagger,
}

/// Per-source counts and notes, stored with every version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceSummary {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub role: SourceRole,
    #[serde(default)]
    pub license: Option<String>,
    #[serde(default)]
    pub collected: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    pub file_hash: String,
    #[serde(default)]
    pub as_of: String,
    pub n_rows: u64,
    pub n_quarantined: u64,
    pub n_kept: u64,
}

/// A version's counts: kept records per label and per topic, PII values masked per type (every type,
/// zeros included), lineage entries per `action:rule`, and the object holding the removed records.
/// Stored as the version's `summary` JSON (keys in this layout; nothing hashes it into an id).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionSummary {
    #[serde(default)]
    pub by_label: BTreeMap<String, u64>,
    #[serde(default)]
    pub by_topic: BTreeMap<String, u64>,
    #[serde(default)]
    pub pii: BTreeMap<String, u64>,
    #[serde(default)]
    pub by_rule: BTreeMap<String, u64>,
    /// The learned PII tagger that masked names, addresses, places and organisations
    /// (`hone-ner <fingerprint prefix>`); absent when `pii_types` names none of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pii_tagger: Option<String>,
    /// Hash of the Parquet object with the removed (masked) records; set when the version is committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_object: Option<String>,
}

/// A stored version's passes, sources and summary, read back into their types.
#[derive(Debug, Clone)]
pub struct VersionInfo {
    pub passes: Vec<PassReport>,
    pub sources: Vec<SourceSummary>,
    pub summary: VersionSummary,
}

/// One stored JSON value of a version as its type (`Error::Store` naming the version if it does not read).
fn stored<T: serde::de::DeserializeOwned>(
    v: &VersionRow,
    what: &str,
    value: &serde_json::Value,
) -> Result<T> {
    T::deserialize(value).map_err(|e| {
        Error::Store(format!(
            "dataset version {}: the stored {what} do not read: {e}",
            hone_core::hash::short(&v.id)
        ))
    })
}

/// The typed passes, sources and summary of a stored version.
pub fn version_info(v: &VersionRow) -> Result<VersionInfo> {
    Ok(VersionInfo {
        passes: stored(v, "passes", &v.passes)?,
        sources: stored(v, "sources", &v.sources)?,
        summary: version_summary(v)?,
    })
}

/// The typed summary of a stored version.
pub fn version_summary(v: &VersionRow) -> Result<VersionSummary> {
    stored(v, "summary", &v.summary)
}

/// What one curation produced (whether newly made or cached).
#[derive(Debug)]
pub struct CurateOutcome {
    pub version: VersionRow,
    pub cached: bool,
    /// The version existed but its objects had vanished or were corrupt: they were rebuilt.
    pub restored: bool,
}

/// A curation computed in memory (used by `data check` without writing, and by `data clean`).
pub struct Curation {
    pub id: String,
    pub records: Vec<Record>,
    pub removed: Vec<Record>,
    pub lineage: Vec<LineageEntry>,
    pub quarantined: Vec<Quarantined>,
    pub reports: Vec<PassReport>,
    pub sources: Vec<SourceSummary>,
    pub n_input: u64,
    pub policy: serde_json::Value,
}

fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

/// The learned tagger a policy's PII pass uses, if any (none when no learned type is named).
fn pii_tagger(p: &hone_core::config::PolicyConfig) -> Option<String> {
    hone_data::pii::tagger_id(&p.pii_types)
}

/// The key of a curation: source files, the whole policy and task kind, resolved `as_of` dates, hone's version.
fn version_key(
    project: &Project,
    file_hashes: &[String],
    as_of: &BTreeMap<String, NaiveDate>,
    decisions: &Decisions,
    feedback: &crate::feedback::FeedbackData,
) -> Result<String> {
    let c = &project.config;
    let mut h = KeyHasher::new();
    if !feedback.records.is_empty() {
        h.part("feedback", feedback.key().as_bytes());
    }
    if !decisions.is_empty() {
        h.part(
            "review",
            serde_json::to_string(decisions)
                .map_err(|e| Error::Internal(e.to_string()))?
                .as_bytes(),
        );
    }
    h.part("hone", hone_core::HONE_VERSION.as_bytes());
    // Another tagger masks other spans: its fingerprint is part of what the data is.
    if let Some(t) = pii_tagger(&c.policy) {
        h.part("pii-tagger", t.as_bytes());
    }
    h.part("kind", format!("{:?}", c.task.kind).as_bytes());
    h.part(
        "policy",
        serde_json::to_string(&c.policy)
            .map_err(|e| Error::Internal(e.to_string()))?
            .as_bytes(),
    );
    for (s, fh) in c.sources.iter().zip(file_hashes) {
        h.part(
            "source",
            serde_json::to_string(s)
                .map_err(|e| Error::Internal(e.to_string()))?
                .as_bytes(),
        );
        h.part("file", fh.as_bytes());
    }
    for (k, v) in as_of {
        h.part(k, v.to_string().as_bytes());
    }
    Ok(h.finish())
}

/// Resolve each source's `as_of`: the policy's date, else the source's `collected`, else today.
fn resolve_as_of(project: &Project) -> BTreeMap<String, NaiveDate> {
    let policy = project
        .config
        .policy
        .as_of
        .as_deref()
        .and_then(hone_core::config::parse_date);
    project
        .config
        .sources
        .iter()
        .map(|s| {
            let d = policy
                .or_else(|| {
                    s.collected
                        .as_deref()
                        .and_then(hone_core::config::parse_date)
                })
                .unwrap_or_else(today);
            (s.name.clone(), d)
        })
        .collect()
}

/// The version id this project's current inputs would produce (hashes the source files only).
pub fn current_key(
    project: &Project,
    decisions: &Decisions,
    feedback: &crate::feedback::FeedbackData,
) -> Result<String> {
    let mut hashes = Vec::new();
    for s in &project.config.sources {
        let path = project.root.join(&s.path);
        let mut h = blake3::Hasher::new();
        let f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        h.update_reader(f).map_err(|e| Error::io(&path, e))?;
        hashes.push(h.finalize().to_hex().to_string());
    }
    version_key(
        project,
        &hashes,
        &resolve_as_of(project),
        decisions,
        feedback,
    )
}

/// The near-duplicate settings of a policy (used by curation and by the contamination check alike).
pub fn near_dup_config(p: &hone_core::config::PolicyConfig) -> NearDupConfig {
    NearDupConfig {
        shingle_words: p.shingle_words,
        num_perm: p.minhash_permutations,
        threshold: p.near_duplicate_jaccard,
        short_text_words: p.short_text_words,
        short_containment: p.short_text_containment,
        seed: 1,
    }
}

/// Build the passes for a project's policy.
pub fn build_passes(
    project: &Project,
    detector: Arc<PiiDetector>,
    as_of: BTreeMap<String, NaiveDate>,
    decisions: Decisions,
) -> Vec<Box<dyn Pass>> {
    let p = &project.config.policy;
    let mask_detector = detector.clone();
    let masker: passes::Masker = Arc::new(move |s: &str| mask_detector.mask(s).text);
    let generate = project.config.task.kind == hone_core::config::TaskKind::Generate;
    let mut passes: Vec<Box<dyn Pass>> = vec![
        Box::new(passes::Normalise {
            mask: masker,
            keep_newlines: generate,
            normalise_target: generate,
        }),
        // The pass masks the policy's types; messages, excerpts and removed records (stored on the
        // side) keep the full detector: masking more there costs nothing.
        Box::new(passes::PiiMask {
            policy: p.pii,
            detector: Arc::new(detector.for_types(&p.pii_types)),
        }),
        Box::new(passes::Length {
            min_chars: p.min_chars,
            max_chars: p.max_chars,
        }),
        Box::new(passes::Consent {
            require_consent: p.require_consent,
        }),
        Box::new(passes::Outdated {
            max_age_days: p.max_age_days,
            as_of,
        }),
        Box::new(passes::Review { decisions }),
        Box::new(passes::NearDuplicateClusters {
            config: near_dup_config(p),
            with_target: generate,
        }),
    ];
    // A prompt with several targets is several good answers, not a conflict.
    if !generate {
        passes.push(Box::new(passes::LabelConflicts {
            policy: p.label_conflicts,
        }));
    }
    passes.push(Box::new(passes::ExactDuplicates));
    passes.push(Box::new(passes::NearDuplicateDrop {
        policy: p.near_duplicates,
    }));
    passes
}

/// Read all sources and run the passes, in memory.
/// Reviewers' decisions, the latest per record id.
pub type Decisions = BTreeMap<String, passes::ReviewDecision>;

/// The decisions recorded in the store (empty when there is no store yet).
pub fn load_decisions(store: &Store) -> Result<Decisions> {
    Ok(store
        .decisions()?
        .into_iter()
        .map(|d| {
            (
                d.record_id,
                passes::ReviewDecision {
                    decision: d.decision,
                    label: d.label,
                    reviewer: d.reviewer,
                    note: d.note,
                },
            )
        })
        .collect())
}

/// A source that yields no record is a mistake to report, not an empty success: an empty file, or every
/// row quarantined (a wrong `fields` mapping, another delimiter, a binary file).
fn check_source_yield(
    project: &Project,
    s: &hone_core::config::SourceConfig,
    out: &hone_data::readers::ReadOutcome,
) -> Result<()> {
    let path = project.root.join(&s.path);
    if out.n_rows == 0 {
        return Err(Error::Data {
            message: format!("{}: source `{}` has no rows", path.display(), s.name),
            hint: "put data in the file, or remove the [[source]] from hone.toml".into(),
        });
    }
    if !out.records.is_empty() {
        return Ok(());
    }
    let first = out.quarantined.first();
    // What the file looks like: its first line (the header, for CSV), and whether it is text at all.
    let head: Vec<u8> = std::fs::read(&path)
        .map(|b| b.into_iter().take(4096).collect())
        .unwrap_or_default();
    let header = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    let binary = head.contains(&0);
    let is_csv = matches!(s.format(), Some(hone_core::config::SourceFormat::Csv));
    let delimiter = match s.delimiter.as_deref() {
        Some(d) => d,
        None if s.path.ends_with(".tsv") => "\t",
        None => ",",
    };
    let guess = [";", "\t", "|", ","]
        .into_iter()
        .map(|d| (d, header.matches(d).count()))
        .filter(|&(d, n)| n > 0 && d != delimiter)
        .max_by_key(|&(_, n)| n);
    // The first line may be a data row: masked before it is shown.
    let shown = crate::input::free_text(&crate::reports::clip(&header, 120));
    let hint = if binary {
        "the file is not text: point path at the exported data (JSONL, CSV or Parquet)".to_string()
    } else if let (true, Some((d, _)), false) = (is_csv, guess, header.contains(delimiter)) {
        format!(
            "the header `{shown}` has no `{}`: if the file is {}-separated, set delimiter = \"{}\" on the source",
            delimiter.escape_default(),
            d.escape_default(),
            d.escape_default()
        )
    } else {
        format!(
            "check the field mapping (fields = {{ text = \"…\", label = \"…\" }}); the first line reads `{shown}`"
        )
    };
    Err(Error::BadRecord {
        file: path,
        line: first.map_or(0, |q| q.line),
        field: first.map_or_else(|| "(row)".into(), |q| q.field.clone()),
        reason: format!(
            "every one of the {} rows was quarantined; the first: {}",
            out.n_rows,
            first.map_or("", |q| q.reason.as_str())
        ),
        hint,
    })
}

pub fn compute(
    project: &Project,
    decisions: &Decisions,
    feedback: &crate::feedback::FeedbackData,
    progress: &mut dyn FnMut(Progress),
) -> Result<Curation> {
    let c = &project.config;
    // Messages, excerpts and removed records are masked with every type, so curation always uses the
    // tagger: train it up front, said, instead of as an unexplained pause inside a pass.
    if hone_data::pii::tagger_needs_training() {
        progress(Progress::TrainingTagger);
        hone_data::pii::prepare_tagger();
    }
    let detector = Arc::new(PiiDetector::new());
    let mask_detector = detector.clone();
    let mask = move |s: &str| mask_detector.mask(s).text;
    let opts = ReadOptions {
        kind: c.task.kind,
        on_bad_record: c.policy.on_bad_record,
        mask: &mask,
    };
    let as_of = resolve_as_of(project);
    let mut records = Vec::new();
    let mut quarantined = Vec::new();
    let mut sources = Vec::new();
    let mut file_hashes = Vec::new();
    let mut n_input = 0u64;
    let mut test_sources = std::collections::BTreeSet::new();
    // Every source is read before ids are claimed, so that the records of test sources own their ids:
    // a training record that reuses a test record's id is the one quarantined (test records are never
    // lost). Among the rest, the first record in read order keeps its id.
    let mut outs = Vec::with_capacity(c.sources.len());
    for (i, s) in c.sources.iter().enumerate() {
        progress(Progress::Reading {
            source: &s.name,
            index: i,
            total: c.sources.len(),
        });
        let out = read_source(&project.root, s, &opts)?;
        check_source_yield(project, s, &out)?;
        outs.push(out);
    }
    let mut id_owner: HashMap<String, (String, u64)> = HashMap::new();
    for (s, out) in c.sources.iter().zip(&outs) {
        if s.role == SourceRole::Test {
            for r in &out.records {
                id_owner
                    .entry(r.id.clone())
                    .or_insert((s.name.clone(), r.line));
            }
        }
    }
    for (s, out) in c.sources.iter().zip(outs) {
        n_input += out.n_rows;
        let is_test = s.role == SourceRole::Test;
        if is_test {
            test_sources.insert(s.name.clone());
        }
        let mut n_q = out.quarantined.len() as u64;
        quarantined.extend(out.quarantined);
        for r in out.records {
            let clash = match id_owner.get(&r.id) {
                // A test record meets its own claim (made above) the first time.
                Some((src, line)) if is_test && src == &s.name && *line == r.line => None,
                Some((src, line)) => Some((src.clone(), *line)),
                None => None,
            };
            if let Some((src, line)) = clash {
                let owner_is_test = c
                    .sources
                    .iter()
                    .any(|x| x.name == src && x.role == SourceRole::Test);
                let reason = if owner_is_test && !is_test {
                    format!(
                        "id `{}` is the id of test record {src} line {line}; the test record is kept and this training record is set aside",
                        mask(&r.id)
                    )
                } else {
                    format!("id `{}` is already used by {src} line {line}", mask(&r.id))
                };
                if c.policy.on_bad_record == BadRecordPolicy::Fail {
                    return Err(Error::BadRecord { file: project.root.join(&s.path), line: r.line, field: "id".into(), reason, hint: "ids must be unique across sources: fix the id column or map another one with fields.id".into() });
                }
                n_q += 1;
                quarantined.push(Quarantined {
                    id: format!("{}-{}", s.name, r.line),
                    source: s.name.clone(),
                    file: s.path.clone(),
                    line: r.line,
                    field: "id".into(),
                    reason,
                    excerpt: mask(&r.text).chars().take(200).collect(),
                });
                continue;
            }
            id_owner.insert(r.id.clone(), (s.name.clone(), r.line));
            records.push(r);
        }
        file_hashes.push(out.file_hash.clone());
        sources.push(SourceSummary {
            name: s.name.clone(),
            path: s.path.clone(),
            role: s.role,
            license: s.license.clone(),
            collected: s.collected.clone(),
            owner: s.owner.clone(),
            notes: s.notes.clone(),
            file_hash: out.file_hash,
            as_of: as_of[&s.name].to_string(),
            n_rows: out.n_rows,
            n_quarantined: n_q,
            n_kept: 0,
        });
    }
    // Feedback from `hone serve`: hone's own source, after the configured ones. Corrections that
    // contradict a record's label are withheld (and queued for review), the rest join the data.
    let mut withheld = Vec::new();
    if !feedback.records.is_empty() {
        // As the server prepared its inputs: generate prompts keep their line breaks.
        let prep = match c.task.kind {
            hone_core::config::TaskKind::Generate => {
                crate::input::TextPrep::for_policy(&c.policy).keeping_newlines()
            }
            hone_core::config::TaskKind::Classify => crate::input::TextPrep::for_policy(&c.policy),
        };
        let (keep, held) = crate::feedback::sort_out(feedback.records.clone(), &records, &prep);
        n_input += feedback.records.len() as u64;
        for r in keep {
            if id_owner.contains_key(&r.id) {
                continue;
            }
            id_owner.insert(r.id.clone(), (r.source.clone(), r.line));
            records.push(r);
        }
        withheld = held;
        sources.push(SourceSummary {
            name: crate::feedback::SOURCE.into(),
            path: "(hone serve: POST /v1/feedback)".into(),
            role: SourceRole::Feedback,
            license: None,
            collected: feedback.last_at.clone(),
            owner: None,
            notes: Some(feedback.notes()),
            file_hash: feedback.key(),
            as_of: String::new(),
            n_rows: feedback.records.len() as u64,
            n_quarantined: 0,
            n_kept: 0,
        });
    }
    let id = version_key(project, &file_hashes, &as_of, decisions, feedback)?;
    let passes = build_passes(project, detector.clone(), as_of, decisions.clone());
    let by_id: HashMap<String, Record> =
        records.iter().map(|r| (r.id.clone(), r.clone())).collect();
    let outcome = passes::run_passes(
        &passes,
        records,
        &|r: &Record| test_sources.contains(&r.source),
        &mut |name, index, total| progress(Progress::Pass { name, index, total }),
    )?;
    for s in &mut sources {
        s.n_kept = outcome
            .records
            .iter()
            .filter(|r| r.source == s.name)
            .count() as u64;
    }
    // Keep the removed records (their text masked) so reports and `data why` can show them.
    let dropped: std::collections::HashSet<&str> = outcome
        .lineage
        .iter()
        .filter(|l| l.action == Action::Drop)
        .map(|l| l.record_id.as_str())
        .collect();
    let mut removed: Vec<Record> = by_id
        .into_iter()
        .filter(|(id, _)| dropped.contains(id.as_str()))
        .map(|(_, mut r)| {
            r.text = detector.mask(&r.text).text;
            r.meta = "{}".into();
            r
        })
        .collect();
    let mut lineage = outcome.lineage;
    for (r, e) in withheld {
        removed.push(r);
        lineage.push(e);
    }
    removed.sort_by(|a, b| (&a.source, a.line).cmp(&(&b.source, b.line)));
    let policy = serde_json::to_value(&c.policy).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Curation {
        id,
        records: outcome.records,
        removed,
        lineage,
        quarantined,
        reports: outcome.reports,
        sources,
        n_input,
        policy,
    })
}

/// Counts for the version summary: per source, per topic, per label, PII found per type.
pub fn summarise(cur: &Curation) -> VersionSummary {
    let mut by_label: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_topic: BTreeMap<String, u64> = BTreeMap::new();
    for r in &cur.records {
        *by_label
            .entry(r.label.clone().unwrap_or_default())
            .or_default() += 1;
        *by_topic
            .entry(r.topic.clone().unwrap_or_else(|| "(none)".into()))
            .or_default() += 1;
    }
    let pii: BTreeMap<String, u64> = cur
        .reports
        .iter()
        .find(|r| r.pass == "pii")
        .map(|r| {
            PiiKind::ALL
                .iter()
                .map(|k| {
                    (
                        k.name().to_string(),
                        r.stats.get(k.name()).copied().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let mut by_rule: BTreeMap<String, u64> = BTreeMap::new();
    for l in &cur.lineage {
        *by_rule
            .entry(format!("{}:{}", l.action.as_str(), l.rule))
            .or_default() += 1;
    }
    VersionSummary {
        by_label,
        by_topic,
        pii,
        by_rule,
        pii_tagger: None,
        removed_object: None,
    }
}

/// Curate and commit a new version, unless one with the same key exists (then `cached`).
pub fn clean(
    project: &Project,
    store: &mut Store,
    command: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<CurateOutcome> {
    clean_with(project, store, command, progress, false)
}

/// [`clean`], with `verify_objects` rehashing a cached version's objects (not only checking that they
/// exist), so that a corrupt one is rebuilt too (`hone doctor --repair`).
pub fn clean_with(
    project: &Project,
    store: &mut Store,
    command: &str,
    progress: &mut dyn FnMut(Progress),
    verify_objects: bool,
) -> Result<CurateOutcome> {
    let decisions = load_decisions(store)?;
    let feedback = crate::feedback::load(store)?;
    let key = current_key(project, &decisions, &feedback)?;
    let existing = if store.has_version(&key)? {
        Some(store.resolve_version(Some(&key))?)
    } else {
        None
    };
    if let Some(v) = &existing {
        // Every command passes here: only a cheap presence check, unless asked to verify hashes.
        let ok = |h: &str| {
            if verify_objects {
                store.object_status(h) == hone_store::ObjectStatus::Ok
            } else {
                store.has_object_file(h)
            }
        };
        let intact = ok(&v.object) && version_summary(v)?.removed_object.is_none_or(|h| ok(&h));
        if intact {
            return Ok(CurateOutcome {
                version: v.clone(),
                cached: true,
                restored: false,
            });
        }
    }
    let cur = compute(project, &decisions, &feedback, progress)?;
    progress(Progress::Writing);
    let object = store.put_object(&hone_data::dataset::encode(&cur.records)?, "dataset")?;
    let removed_object = store.put_object(&hone_data::dataset::encode(&cur.removed)?, "removed")?;
    if let Some(v) = existing {
        // The version's objects had vanished (or rotted): the same inputs give them back, byte for byte.
        let removed_ok = version_summary(&v)?
            .removed_object
            .is_none_or(|h| h == removed_object);
        if v.object != object || !removed_ok {
            return Err(Error::Store(format!(
                "dataset version {} lost its objects, and curating its sources again gives different ones; it cannot be restored",
                hone_core::hash::short(&v.id)
            )));
        }
        return Ok(CurateOutcome {
            version: v,
            cached: true,
            restored: true,
        });
    }
    let parent = store.versions()?.last().map(|v| v.id.clone());
    let summary = VersionSummary {
        removed_object: Some(removed_object.clone()),
        pii_tagger: pii_tagger(&project.config.policy),
        ..summarise(&cur)
    };
    let v = NewVersion {
        id: cur.id.clone(),
        parent,
        object: object.clone(),
        n_input: cur.n_input,
        n_records: cur.records.len() as u64,
        n_quarantined: cur.quarantined.len() as u64,
        passes: serde_json::to_value(&cur.reports).map_err(|e| Error::Internal(e.to_string()))?,
        sources: serde_json::to_value(&cur.sources).map_err(|e| Error::Internal(e.to_string()))?,
        policy: cur.policy.clone(),
        summary: serde_json::to_value(&summary).map_err(|e| Error::Internal(e.to_string()))?,
    };
    let inputs = json!({"config": hone_core::hash::hash_bytes(&std::fs::read(&project.config_path).map_err(|e| Error::io(&project.config_path, e))?), "sources": cur.sources.iter().map(|s| json!({"name": s.name, "hash": s.file_hash})).collect::<Vec<_>>()});
    let outputs = json!({"version": cur.id, "object": object, "removed_object": removed_object});
    let made = store.commit_version(
        &v,
        &cur.lineage,
        &cur.quarantined,
        (&crate::project::who(), command, inputs, outputs),
    )?;
    Ok(CurateOutcome {
        version: store.resolve_version(Some(&cur.id))?,
        // `None`: a concurrent command committed this very version first.
        cached: made.is_none(),
        restored: false,
    })
}

/// The table `hone data show` prints: the first `limit` records (a generate task's columns are
/// named target and prompt).
pub fn show_table(
    records: &[Record],
    limit: usize,
    generate: bool,
) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let clip = crate::reports::clip;
    let rows = records
        .iter()
        .take(limit)
        .map(|r| {
            vec![
                r.id.clone(),
                clip(&r.label.clone().unwrap_or_default(), 40),
                r.source.clone(),
                match r.turns.len() {
                    0 => clip(&r.text, 90),
                    n => clip(&format!("[{n} earlier turns] {}", r.text), 90),
                },
            ]
        })
        .collect();
    let header = if generate {
        vec!["id", "target", "source", "prompt"]
    } else {
        vec!["id", "label", "source", "text"]
    };
    (header, rows)
}

/// The table `hone data log` prints: newest version first, with what each pass dropped.
pub fn log_table(versions: &[VersionRow]) -> Result<(Vec<&'static str>, Vec<Vec<String>>)> {
    let short = hone_core::hash::short;
    let rows = versions
        .iter()
        .rev()
        .map(|v| {
            let dropped: Vec<String> = version_info(v)?
                .passes
                .iter()
                .filter(|p| p.n_dropped > 0)
                .map(|p| format!("{} -{}", p.pass, p.n_dropped))
                .collect();
            Ok(vec![
                v.seq.to_string(),
                short(&v.id).to_string(),
                v.created_at.chars().take(19).collect(),
                v.parent.as_deref().map(short).unwrap_or("-").to_string(),
                v.n_input.to_string(),
                v.n_quarantined.to_string(),
                v.n_records.to_string(),
                crate::reports::clip(&dropped.join(", "), 80),
            ])
        })
        .collect::<Result<Vec<Vec<String>>>>()?;
    let header = vec![
        "#",
        "version",
        "created",
        "parent",
        "rows",
        "quarantined",
        "records",
        "dropped by pass",
    ];
    Ok((header, rows))
}

/// Load the records of a version.
pub fn load_records(store: &Store, version: &VersionRow) -> Result<Vec<Record>> {
    hone_data::dataset::decode(&store.get_object(&version.object)?)
}

/// Load the removed (masked) records of a version.
pub fn load_removed(store: &Store, version: &VersionRow) -> Result<Vec<Record>> {
    match version_summary(version)?.removed_object {
        Some(h) => hone_data::dataset::decode(&store.get_object(&h)?),
        None => Ok(Vec::new()),
    }
}

/// The text preparation a dataset version's records went through (its `[policy] pii_types`), for
/// inputs that a model trained on it will see.
pub fn text_prep_of(store: &Store, version: &str) -> Result<crate::input::TextPrep> {
    let v = store.resolve_version(Some(version))?;
    let policy: hone_core::config::PolicyConfig = serde_json::from_value(v.policy.clone())
        .map_err(|e| Error::Store(format!("dataset version {version}: policy unreadable: {e}")))?;
    Ok(crate::input::TextPrep::for_policy(&policy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        passes: serde_json::Value,
        sources: serde_json::Value,
        summary: serde_json::Value,
    ) -> VersionRow {
        VersionRow {
            id: "0123456789abcdef".into(),
            seq: 1,
            created_at: "2025-06-30T00:00:00Z".into(),
            parent: None,
            object: "obj".into(),
            n_input: 3,
            n_records: 2,
            n_quarantined: 0,
            passes,
            sources,
            policy: json!({}),
            summary,
            hone_version: "0.1.0".into(),
        }
    }

    #[test]
    fn stored_values_read_back_typed_and_the_summary_keeps_its_json_layout() {
        let summary = json!({"by_label": {"a": 2}, "by_rule": {"drop:empty": 1}, "by_topic": {"(none)": 2}, "pii": {"email": 0}, "removed_object": "abc"});
        let v = row(
            json!([{"pass": "length", "config": {"min_chars": 2}, "n_in": 3, "n_kept": 2, "n_dropped": 1, "n_changed": 0, "n_flagged": 0, "stats": {"empty": 1}}]),
            json!([{"name": "s", "path": "d.jsonl", "role": "test", "license": null, "collected": null, "owner": null, "notes": null, "file_hash": "h", "as_of": "2025-06-30", "n_rows": 3, "n_quarantined": 0, "n_kept": 2}]),
            summary.clone(),
        );
        let info = version_info(&v).unwrap();
        assert_eq!(info.passes[0].stats["empty"], 1);
        assert_eq!(info.sources[0].role, SourceRole::Test);
        assert_eq!(info.summary.by_label["a"], 2);
        assert_eq!(info.summary.removed_object.as_deref(), Some("abc"));
        // Written back, the summary is the same JSON (stored versions and new ones agree byte for byte).
        assert_eq!(
            serde_json::to_value(&info.summary).unwrap().to_string(),
            summary.to_string()
        );
        let fresh = VersionSummary::default();
        assert_eq!(
            serde_json::to_value(&fresh).unwrap(),
            json!({"by_label": {}, "by_topic": {}, "pii": {}, "by_rule": {}})
        );
    }

    #[test]
    fn a_stored_value_that_does_not_read_is_a_store_error_naming_the_version() {
        let v = row(json!([{"pass": 3}]), json!([]), json!({}));
        match version_info(&v) {
            Err(Error::Store(m)) => {
                assert!(m.contains("0123456789ab") && m.contains("passes"), "{m}")
            }
            other => panic!("expected a store error, got {other:?}"),
        }
    }
}
