//! A project's graders (`graders/*.toml`, `graders/*.json`): loaded and built with file:line errors,
//! the dataset item each record becomes for grading (one rule, [`item`]), and `hone grade validate`:
//! every grader's fields checked against the data and the adversarial check run on training items.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use hone_core::config::{GraderPolicy, TaskKind};
use hone_core::{Error, Record, Result};
use hone_data::split::FrozenRecord;
use hone_grade::adversarial::{Probe, probe};
use hone_grade::{GradeError, Grader};
use hone_store::Store;
use serde::Serialize;
use serde_json::{Value, json};

use crate::curate;
use crate::project::Project;

/// The fields every item has; a record's other source columns (`meta`) come after them.
pub const ITEM_FIELDS: [&str; 5] = ["id", "prompt", "reference", "target", "topic"];

/// How many training items the adversarial check tries (the first by id).
pub const PROBE_ITEMS: usize = 50;

/// A record as graders see it: `item.prompt`, `item.reference` (also `item.target`, the name
/// `hone.toml`'s `fields` uses), `item.id`, `item.topic`, and every other source column by its name.
pub fn item(r: &Record) -> Value {
    let mut m = match serde_json::from_str::<Value>(&r.meta) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let reference = r.label.clone().map_or(Value::Null, Value::String);
    m.insert("id".into(), json!(r.id));
    m.insert("prompt".into(), json!(r.text));
    m.insert("reference".into(), reference.clone());
    m.insert("target".into(), reference);
    m.insert(
        "topic".into(),
        r.topic.clone().map_or(Value::Null, Value::String),
    );
    Value::Object(m)
}

/// One built grader and the file it came from.
pub struct ProjectGrader {
    pub path: PathBuf,
    pub grader: Grader,
}

fn grade_err(path: &std::path::Path, e: GradeError) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        line: 1,
        col: 1,
        message: e.to_string(),
        hint: "see `hone grade validate` and the grader types in the README".into(),
    }
}

/// Load and build every grader under `graders/` (none: an empty list).
pub fn load(project: &Project) -> Result<Vec<ProjectGrader>> {
    let specs = hone_grade::load::load_dir(&project.root.join("graders")).map_err(|e| {
        Error::Config {
            path: e.path.clone(),
            line: e.line,
            col: e.col,
            message: e.msg.clone(),
            hint: "a grader file holds one grader: `type = \"string_check\"`, `\"text_similarity\"`, `\"numeric\"`, `\"regex\"`, `\"length\"`, `\"json_schema\"`, `\"json_fields\"` or `\"multi\"`".into(),
        }
    })?;
    specs
        .into_iter()
        .map(|(path, spec)| {
            let grader = Grader::new(&spec).map_err(|e| grade_err(&path, e))?;
            Ok(ProjectGrader { path, grader })
        })
        .collect()
}

/// One grader's validation.
#[derive(Debug, Clone, Serialize)]
pub struct GraderCheck {
    pub name: String,
    pub type_name: &'static str,
    pub path: PathBuf,
    /// The item fields its templates read.
    pub fields: Vec<String>,
    /// Fields it reads that some records lack, with how many lack each.
    pub missing_fields: BTreeMap<String, usize>,
    pub probe: Probe,
}

impl GraderCheck {
    pub fn exploitable(&self) -> bool {
        self.probe.exploitable()
    }
}

/// `hone grade validate`'s result.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub version: String,
    /// Training items the adversarial check ran on.
    pub items: usize,
    pub graders: Vec<GraderCheck>,
    pub policy: GraderPolicy,
}

impl Validation {
    /// Whether the command fails: a field some records lack, or an exploitable grader under
    /// `exploitable_graders = "fail"`.
    pub fn failed(&self) -> bool {
        self.graders.iter().any(|g| {
            !g.missing_fields.is_empty() || (g.exploitable() && self.policy == GraderPolicy::Fail)
        })
    }
}

/// Check every grader against the latest dataset version: the fields it reads exist on every
/// record, and no attack answer passes on the first [`PROBE_ITEMS`] training items (the frozen test
/// set is never used).
pub fn validate(project: &Project, store: &Store) -> Result<Validation> {
    if project.config.task.kind != TaskKind::Generate {
        return Err(Error::Usage(
            "graders score generated text: this project's task.kind is not \"generate\"".into(),
        ));
    }
    let graders = load(project)?;
    if graders.is_empty() {
        return Err(Error::NotFound {
            what: "graders",
            name: format!("in {}", project.root.join("graders").display()),
            hint: "write one grader per file, e.g. graders/mentions_order.toml with `type = \"string_check\"`".into(),
        });
    }
    let v = store.resolve_version(None)?;
    let records = curate::load_records(store, &v)?;
    let frozen: HashSet<String> = match store.frozen_test()? {
        Some(f) => serde_json::from_value::<Vec<FrozenRecord>>(f.records)
            .map_err(|e| Error::Store(format!("frozen test set is unreadable: {e}")))?
            .into_iter()
            .map(|r| r.id)
            .collect(),
        None => HashSet::new(),
    };
    let items: Vec<Value> = records.iter().map(item).collect();
    let mut train: Vec<(&Record, &Value)> = records
        .iter()
        .zip(&items)
        .filter(|(r, _)| !frozen.contains(&r.id) && r.label.is_some())
        .collect();
    train.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let probe_items: Vec<Value> = train
        .iter()
        .take(PROBE_ITEMS)
        .map(|(_, i)| (*i).clone())
        .collect();
    let mut checks = Vec::new();
    for g in &graders {
        let fields: Vec<String> = g.grader.item_fields().into_iter().collect();
        let mut missing_fields = BTreeMap::new();
        for f in &fields {
            let n = items
                .iter()
                .filter(|i| i.get(f).is_none_or(Value::is_null))
                .count();
            if n > 0 {
                missing_fields.insert(f.clone(), n);
            }
        }
        checks.push(GraderCheck {
            name: g.grader.name.clone(),
            type_name: g.grader.type_name,
            path: g.path.clone(),
            fields,
            missing_fields,
            probe: probe(&g.grader, &probe_items, "prompt", "reference"),
        });
    }
    Ok(Validation {
        version: v.id,
        items: probe_items.len(),
        graders: checks,
        policy: project.config.policy.exploitable_graders,
    })
}
