//! A project's graders (`graders/*.toml`, `graders/*.json`): loaded and built with file:line errors,
//! the dataset item each record becomes for grading (one rule, [`item`]), and `hone grade validate`:
//! every grader's fields checked against the data and the adversarial check run on training items.

use std::collections::BTreeMap;
use std::path::PathBuf;

use hone_core::config::{GraderPolicy, TaskKind};
use hone_core::{Error, Record, Result};
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

/// A grader that parses but cannot be built (a bad pattern, schema, formula or variable): the file
/// and the grader's own message, which names the grader (no line: the fault is in a value).
fn grade_err(path: &std::path::Path, e: GradeError) -> Error {
    Error::Usage(format!(
        "{}: {e}\n  hint: the grader types and their fields are in the README (Graders)",
        path.display()
    ))
}

/// A local sentence encoder for `cosine` graders: mean-pooled, L2-normalised embeddings (the
/// sentence-transformers recipe of all-MiniLM-L6-v2), inputs up to 256 tokens. Embeddings are
/// remembered by text (up to [`CACHE_TEXTS`]): a grader compares many answers with the same
/// reference (every attack of `validate`, every completion of a GRPO group), and the reference's
/// embedding is the same each time.
struct LocalEncoder {
    model: hone_encoder::Pretrained,
    cache: std::sync::Mutex<std::collections::HashMap<String, Vec<f32>>>,
}

/// Texts a [`LocalEncoder`] remembers before it starts over.
const CACHE_TEXTS: usize = 20_000;

impl std::fmt::Debug for LocalEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalEncoder({})", self.model.dir.display())
    }
}

impl hone_grade::grader::Embedder for LocalEncoder {
    fn embed(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, String> {
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| "embedding cache poisoned".to_string())?;
        if cache.len() + texts.len() > CACHE_TEXTS {
            cache.clear();
        }
        let mut todo: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !cache.contains_key(*t))
            .collect();
        todo.sort_unstable();
        todo.dedup();
        if !todo.is_empty() {
            let e = hone_encoder::embed(
                &self.model.encoder,
                &self.model.tokenizer,
                &todo,
                hone_encoder::Pooling::Mean,
                true,
                32,
                &mut |_, _| {},
            )
            .map_err(|e| e.to_string())?;
            for (t, v) in todo.iter().zip(e.data.chunks(e.dim)) {
                cache.insert((*t).to_string(), v.to_vec());
            }
        }
        texts
            .iter()
            .map(|t| {
                cache
                    .get(*t)
                    .cloned()
                    .ok_or_else(|| "embedding cache lost a text".to_string())
            })
            .collect()
    }
}

/// Load and build every grader under `graders/` (none: an empty list). A `cosine` grader's
/// `encoder` is a model directory relative to the project root, loaded once however many graders
/// name it.
pub fn load(project: &Project) -> Result<Vec<ProjectGrader>> {
    let specs = hone_grade::load::load_dir(&project.root.join("graders")).map_err(|e| {
        Error::Config {
            path: e.path.clone(),
            line: e.line,
            col: e.col,
            message: e.msg.clone(),
            hint: "a grader file holds one grader: `type = \"string_check\"`, `\"text_similarity\"`, `\"numeric\"`, `\"regex\"`, `\"length\"`, `\"json_schema\"`, `\"json_fields\"`, `\"command\"`, `\"score_model\"`, `\"label_model\"` or `\"multi\"`".into(),
        }
    })?;
    let mut encoders: BTreeMap<PathBuf, std::sync::Arc<dyn hone_grade::grader::Embedder>> =
        BTreeMap::new();
    let mut resolve = |path: Option<&str>| -> std::result::Result<
        std::sync::Arc<dyn hone_grade::grader::Embedder>,
        String,
    > {
        let path = path.ok_or(
            "cosine needs `encoder = \"PATH\"`: a sentence-embedding model directory (scripts/get-minilm puts all-MiniLM-L6-v2 in models/all-MiniLM-L6-v2)",
        )?;
        let dir = hone_core::config::resolve_path(&project.root, path);
        if let Some(e) = encoders.get(&dir) {
            return Ok(e.clone());
        }
        let max_len = hone_encoder::BertConfig::from_file(&dir.join("config.json"))
            .map(|c| c.max_position_embeddings.min(256))
            .map_err(|e| e.to_string())?;
        let p = hone_encoder::Pretrained::load(&dir, max_len).map_err(|e| e.to_string())?;
        let e: std::sync::Arc<dyn hone_grade::grader::Embedder> =
            std::sync::Arc::new(LocalEncoder {
                model: p,
                cache: Default::default(),
            });
        encoders.insert(dir, e.clone());
        Ok(e)
    };
    let commands = hone_grade::command::CommandEnv {
        project_dir: project.root.clone(),
        allow_unisolated: project.config.policy.allow_unisolated_commands,
    };
    let judges = hone_grade::judge::JudgeEnv {
        allow_remote: project.config.policy.allow_remote_judges,
    };
    specs
        .into_iter()
        .map(|(path, spec)| {
            let grader =
                Grader::with_resources(&spec, &mut resolve, Some(&commands), Some(&judges))
                    .map_err(|e| grade_err(&path, e))?;
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
    /// The grader on the reference answers of the same items: a grader that cannot score most of
    /// them (a formula dividing by zero, a template reading the wrong field) is broken, whatever the
    /// attacks say; how many references pass shows how far the data is from the rule.
    pub references: ReferenceCheck,
    /// A `command` grader running without namespaces (`[policy] allow_unisolated_commands` on a
    /// machine that cannot isolate it): it can reach the network and write to the project.
    pub unisolated: bool,
}

impl GraderCheck {
    pub fn exploitable(&self) -> bool {
        self.probe.exploitable()
    }

    /// More than half of the reference answers raised a typed error instead of a score.
    pub fn broken(&self) -> bool {
        self.references.tried > 0 && 2 * self.references.errors > self.references.tried
    }
}

/// A grader scoring the references themselves.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReferenceCheck {
    pub tried: usize,
    pub passed: usize,
    pub errors: usize,
    /// The first error, with the item's id.
    pub first_error: Option<String>,
}

/// Grades each item's `reference` as the answer.
fn check_references(g: &Grader, items: &[Value]) -> ReferenceCheck {
    let mut c = ReferenceCheck::default();
    for i in items {
        let Some(answer) = i.get("reference").and_then(Value::as_str) else {
            continue;
        };
        c.tried += 1;
        match g.grade(answer, i) {
            Ok(grade) => c.passed += usize::from(grade.passed),
            Err(e) => {
                c.errors += 1;
                if c.first_error.is_none() {
                    let id = i.get("id").and_then(Value::as_str).unwrap_or("?");
                    c.first_error = Some(format!("{id}: {e}"));
                }
            }
        }
    }
    c
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
    /// Whether the command fails: a field some records lack, a grader that errors on most
    /// references, or an exploitable grader under `exploitable_graders = "fail"`.
    pub fn failed(&self) -> bool {
        self.graders.iter().any(|g| {
            !g.missing_fields.is_empty()
                || g.broken()
                || (g.exploitable() && self.policy == GraderPolicy::Fail)
        })
    }

    /// The table `hone grade validate` prints: one row per grader.
    pub fn table(&self) -> (Vec<&'static str>, Vec<Vec<String>>) {
        let header = vec![
            "grader",
            "type",
            "item fields",
            "missing on",
            "references pass",
            "errors",
            "verdict",
        ];
        let rows = self
            .graders
            .iter()
            .map(|g| {
                let missing = g
                    .missing_fields
                    .iter()
                    .map(|(f, n)| format!("{f} ({n} records)"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let verdict = if g.broken() {
                    "BROKEN"
                } else if g.exploitable() {
                    "EXPLOITABLE"
                } else {
                    "ok"
                };
                let r = &g.references;
                vec![
                    g.name.clone(),
                    g.type_name.into(),
                    g.fields.join(", "),
                    missing,
                    format!("{}/{}", r.passed, r.tried),
                    r.errors.to_string(),
                    verdict.into(),
                ]
            })
            .collect();
        (header, rows)
    }

    /// One line per problem found: exploits, fields records lack, graders that cannot score the
    /// references.
    pub fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .graders
            .iter()
            .flat_map(|g| g.probe.exploits())
            .collect();
        for g in &self.graders {
            for (f, n) in &g.missing_fields {
                out.push(format!(
                    "grader `{}` reads item.{f}, which {n} record(s) lack",
                    g.name
                ));
            }
            if g.unisolated {
                out.push(format!(
                    "grader `{}` runs its command without isolation (this machine has no namespaces; allowed by [policy] allow_unisolated_commands): it can reach the network and write to the project",
                    g.name
                ));
            }
            if g.broken() {
                out.push(format!(
                    "grader `{}` cannot score {}/{} reference answers (first: {})",
                    g.name,
                    g.references.errors,
                    g.references.tried,
                    g.references.first_error.as_deref().unwrap_or("?")
                ));
            }
        }
        out
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
    validate_loaded(project, store, &load(project)?)
}

/// [`validate`] with the graders already loaded (a `cosine` grader's encoder loads once per command).
pub fn validate_loaded(
    project: &Project,
    store: &Store,
    graders: &[ProjectGrader],
) -> Result<Validation> {
    if graders.is_empty() {
        return Err(Error::NotFound {
            what: "graders",
            name: format!("in {}", project.root.join("graders").display()),
            hint: "write one grader per file, e.g. graders/mentions_order.toml with `type = \"string_check\"`".into(),
        });
    }
    let v = store.resolve_version(None)?;
    let records = curate::load_records(store, &v)?;
    let frozen = crate::split_stage::frozen_ids(store)?;
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
    for g in graders {
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
            references: check_references(&g.grader, &probe_items),
            unisolated: g.grader.runs_unisolated(),
        });
    }
    Ok(Validation {
        version: v.id,
        items: probe_items.len(),
        graders: checks,
        policy: project.config.policy.exploitable_graders,
    })
}

/// One grader on one set of answers, with 95% bootstrap intervals. An answer the grader cannot score
/// (a typed error) counts as not passing and as reward 0 in the mean (so failing to produce readable
/// output never raises a score); `errors` says how many.
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct GraderScores {
    pub n: usize,
    pub pass_rate: crate::record::Estimate,
    pub mean: crate::record::Estimate,
    pub errors: usize,
    /// The first error, for the report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// One grader's verdict on every answer, in answer order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdicts {
    pub scores: GraderScores,
    /// The reward of each answer (`None`: the grader failed on it).
    pub rewards: Vec<Option<f64>>,
    pub passed: Vec<bool>,
    /// Each answer's sub-grader rewards (`multi` graders; empty otherwise or on an error).
    pub sub_rewards: Vec<BTreeMap<String, f64>>,
}

const BOOT_REPS: usize = 1000;

/// Grade `answers[i]` for `items[i]` with every grader.
pub fn grade_answers(
    graders: &[ProjectGrader],
    items: &[Value],
    answers: &[&str],
    seed: u64,
) -> BTreeMap<String, Verdicts> {
    graders
        .iter()
        .map(|g| {
            let mut v = Verdicts::default();
            for (item, answer) in items.iter().zip(answers) {
                match g.grader.grade(answer, item) {
                    Ok(r) => {
                        v.rewards.push(Some(r.reward));
                        v.passed.push(r.passed);
                        v.sub_rewards.push(r.sub_rewards);
                    }
                    Err(e) => {
                        v.scores.errors += 1;
                        v.scores.first_error.get_or_insert_with(|| e.to_string());
                        v.rewards.push(None);
                        v.passed.push(false);
                        v.sub_rewards.push(BTreeMap::new());
                    }
                }
            }
            let n = answers.len().min(items.len());
            v.scores.n = n;
            if n > 0 {
                let passed = &v.passed;
                let rewards = &v.rewards;
                let rate = |ix: &[usize]| {
                    ix.iter().filter(|&&i| passed[i]).count() as f64 / ix.len().max(1) as f64
                };
                let mean = |ix: &[usize]| {
                    ix.iter().map(|&i| rewards[i].unwrap_or(0.0)).sum::<f64>()
                        / ix.len().max(1) as f64
                };
                let ci = |f: &dyn Fn(&[usize]) -> f64| {
                    crate::record::Estimate::of(&hone_eval::bootstrap_ci(
                        n, f, BOOT_REPS, seed, 0.95,
                    ))
                };
                v.scores.pass_rate = ci(&rate);
                v.scores.mean = ci(&mean);
            }
            (g.grader.name.clone(), v)
        })
        .collect()
}

/// Every grader on a generate run's stored test answers. Grader scores are computed from the
/// answers each time, not frozen into the run record: a grader is a rule under development, and
/// changing it must neither retrain a model nor leave a cached run judged by the old rule.
pub fn grade_run(
    graders: &[ProjectGrader],
    store: &Store,
    run: &crate::record::Run,
    test: &[&Record],
    seed: u64,
) -> Result<BTreeMap<String, Verdicts>> {
    if graders.is_empty() || run.record.generation.is_none() {
        return Ok(BTreeMap::new());
    }
    let p = crate::record::Predictions::load(store, run)?;
    let by_id: std::collections::HashMap<&str, &Record> =
        test.iter().map(|r| (r.id.as_str(), *r)).collect();
    let mut items = Vec::new();
    let mut answers = Vec::new();
    for g in &p.generated {
        if let Some(r) = by_id.get(g.id.as_str()) {
            items.push(item(r));
            answers.push(g.completion.as_str());
        }
    }
    Ok(grade_answers(graders, &items, &answers, seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_the_grader_cannot_read_fails_and_counts_as_zero_in_the_mean() {
        let spec: hone_grade::GraderSpec = serde_json::from_value(json!({"type": "string_check", "name": "j", "input": "{{ sample.output_json.answer }}", "reference": "{{ item.reference }}", "operation": "eq"})).unwrap();
        let graders = [ProjectGrader {
            path: PathBuf::from("graders/j.toml"),
            grader: Grader::new(&spec).unwrap(),
        }];
        let items = vec![json!({"reference": "42"}); 4];
        let answers = [
            r#"{"answer": "42"}"#,
            "42",
            "forty-two",
            r#"{"answer": "41"}"#,
        ];
        let v = &grade_answers(&graders, &items, &answers, 7)["j"];
        assert_eq!(v.passed, [true, false, false, false]);
        assert_eq!(v.rewards, [Some(1.0), None, None, Some(0.0)]);
        assert_eq!(v.scores.errors, 2);
        assert_eq!(v.scores.pass_rate.estimate, Some(0.25));
        // Not 0.5 (the mean of the two it could read): unreadable output never raises a score.
        assert_eq!(v.scores.mean.estimate, Some(0.25));
        // "42" is JSON without the field; "forty-two" is not JSON: both are the sample's fault.
        let first = v.scores.first_error.as_deref().unwrap();
        assert!(first.contains("the sample cannot be read"), "{first}");
    }
}
