//! Graders built from their definitions (templates parsed, patterns and schemas compiled, formulas
//! parsed, variables checked) and scoring one sample against one item.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use minijinja::{Environment, UndefinedBehavior};
use regex::{Regex, RegexBuilder};
use serde_json::Value;

use crate::command::{CommandEnv, Program};
use crate::error::{GradeError, Result};
use crate::formula::{self, Expr};
use crate::judge::{Answer, Ask, Judge, JudgeEnv, Settings};
use crate::metrics;
use crate::spec::{self, DEFAULT_INPUT, FieldOp, GraderSpec, Metric, Pick, StringOp};

/// Sentence embeddings for `cosine` (the pipeline supplies a local encoder): one L2-normalised
/// vector per text.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    fn embed(&self, texts: &[&str]) -> std::result::Result<Vec<Vec<f32>>, String>;
}

/// Finds the embedder a `cosine` grader names (`encoder`, as written).
pub type EmbedderFor<'a> =
    dyn FnMut(Option<&str>) -> std::result::Result<std::sync::Arc<dyn Embedder>, String> + 'a;

/// One grader's verdict on one sample.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Grade {
    pub reward: f64,
    pub passed: bool,
    /// Every sub-grader's reward by name (nested ones as `outer.inner`); empty unless `multi`.
    pub sub_rewards: BTreeMap<String, f64>,
}

/// A grader ready to score.
#[derive(Debug)]
pub struct Grader {
    pub name: String,
    pub type_name: &'static str,
    pass_threshold: f64,
    kind: Kind,
    spec: GraderSpec,
}

#[derive(Debug)]
enum Kind {
    StringCheck(Tpl, Tpl, StringOp),
    TextSimilarity(Tpl, Tpl, Metric),
    Cosine(Tpl, Tpl, std::sync::Arc<dyn Embedder>),
    Numeric {
        input: Tpl,
        reference: Tpl,
        abs_tol: f64,
        rel_tol: f64,
        pick: Pick,
    },
    Regex(Tpl, Regex, bool),
    Length(Tpl, spec::Length),
    JsonSchema(Tpl, Box<jsonschema::Validator>),
    JsonFields(Tpl, Vec<Field>),
    Command(Box<Program>),
    /// A judge and its prompt: (role, content template) per message.
    Judge(Box<Judge>, Vec<(String, Tpl)>),
    Multi(Vec<(String, Grader)>, Expr),
}

#[derive(Debug)]
struct Field {
    path: String,
    op: FieldOp,
    value: Option<Tpl>,
    pattern: Option<Regex>,
    tolerance: f64,
}

/// A template: its source, the item fields it reads, and whether it reads `sample.output_json`.
#[derive(Debug, Clone)]
struct Tpl {
    src: String,
    item_fields: BTreeSet<String>,
    reads_json: bool,
}

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env
});

const VARIABLES_HINT: &str =
    "; templates read item.FIELD, sample.output_text and sample.output_json.PATH";

impl Tpl {
    fn new(grader: &str, src: &str) -> Result<Tpl> {
        let t = ENV.template_from_str(src).map_err(|e| GradeError::Spec {
            grader: grader.to_string(),
            msg: format!("template `{src}` does not parse: {e}"),
        })?;
        let mut item_fields = BTreeSet::new();
        let mut reads_json = false;
        for v in t.undeclared_variables(true) {
            let mut parts = v.splitn(3, '.');
            match (parts.next(), parts.next()) {
                (Some("item"), Some(f)) => {
                    item_fields.insert(f.to_string());
                }
                (Some("sample"), Some("output_text")) => {}
                (Some("sample"), Some("output_json")) => reads_json = true,
                _ => {
                    return Err(GradeError::InvalidVariable {
                        grader: grader.to_string(),
                        name: v,
                        hint: VARIABLES_HINT.into(),
                    });
                }
            }
        }
        Ok(Tpl {
            src: src.to_string(),
            item_fields,
            reads_json,
        })
    }

    fn render(&self, grader: &str, s: &SampleView, item: &Value) -> Result<String> {
        if self.src.trim() == DEFAULT_INPUT {
            return Ok(s.text.to_string());
        }
        let json = if self.reads_json {
            Some(s.json().ok_or_else(|| GradeError::SampleParse {
                grader: grader.to_string(),
                msg: "the answer is not JSON, and the grader reads sample.output_json".into(),
            })?)
        } else {
            None
        };
        let ctx = serde_json::json!({
            "item": item,
            "sample": {"output_text": s.text, "output_json": json},
        });
        ENV.render_str(&self.src, ctx).map_err(|e| {
            let item_complete = self.item_fields.iter().all(|f| item.get(f).is_some());
            if e.kind() == minijinja::ErrorKind::UndefinedError && self.reads_json && item_complete
            {
                // Every item field is there: what is missing is in the answer's JSON.
                GradeError::SampleParse {
                    grader: grader.to_string(),
                    msg: format!("the answer's JSON lacks what `{}` reads: {e}", self.src),
                }
            } else if e.kind() == minijinja::ErrorKind::UndefinedError {
                GradeError::InvalidVariable {
                    grader: grader.to_string(),
                    name: self.src.clone(),
                    hint: format!(": {e}"),
                }
            } else {
                GradeError::Runtime {
                    grader: grader.to_string(),
                    msg: format!("template `{}`: {e}", self.src),
                }
            }
        })
    }
}

/// The sample as graders read it; its JSON parsed once, on first use.
struct SampleView<'a> {
    text: &'a str,
    json: std::cell::OnceCell<Option<Value>>,
}

impl SampleView<'_> {
    fn json(&self) -> Option<&Value> {
        self.json
            .get_or_init(|| serde_json::from_str(self.text.trim()).ok())
            .as_ref()
    }
}

static NUMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?").expect("number")
});

/// The first or last number written in `text` (thousands commas allowed).
pub fn find_number(text: &str, pick: Pick) -> Option<f64> {
    let mut it = NUMBER.find_iter(text);
    let m = match pick {
        Pick::First => it.next(),
        Pick::Last => it.last(),
    }?;
    m.as_str().replace(',', "").parse().ok()
}

fn spec_err(grader: &str, msg: impl Into<String>) -> GradeError {
    GradeError::Spec {
        grader: grader.to_string(),
        msg: msg.into(),
    }
}

fn json_path<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |cur, key| match cur {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn string_op(op: StringOp, input: &str, reference: &str) -> bool {
    match op {
        StringOp::Eq => input == reference,
        StringOp::Ne => input != reference,
        StringOp::Like => input.contains(reference),
        StringOp::Ilike => input.to_lowercase().contains(&reference.to_lowercase()),
    }
}

fn bool_reward(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// A judge's kind: its prompt's templates checked, then the judge itself (probed).
fn judge_kind(
    n: &str,
    input: &[spec::Message],
    settings: Settings,
    judges: Option<&JudgeEnv>,
) -> Result<Kind> {
    if input.is_empty() {
        return Err(spec_err(n, "`input` is empty: a judge needs its prompt"));
    }
    let mut messages = Vec::new();
    for m in input {
        if !matches!(
            m.role.as_str(),
            "system" | "developer" | "user" | "assistant"
        ) {
            return Err(spec_err(
                n,
                format!(
                    "message role `{}`: use system, developer, user or assistant",
                    m.role
                ),
            ));
        }
        messages.push((m.role.clone(), Tpl::new(n, &m.content)?));
    }
    let env = judges.ok_or_else(|| {
        spec_err(
            n,
            "this caller calls no judge, so `score_model` and `label_model` graders are refused",
        )
    })?;
    Ok(Kind::Judge(
        Box::new(Judge::new(n, settings, env)?),
        messages,
    ))
}

impl Grader {
    /// Build a grader; every definition error is found here, before anything is scored. A `cosine`
    /// grader needs [`Grader::with_embedder`].
    pub fn new(spec: &GraderSpec) -> Result<Grader> {
        Grader::with_embedder(spec, &mut |_| {
            Err("cosine needs a local sentence encoder, which this caller does not provide".into())
        })
    }

    /// [`Grader::new`], with `embedder` resolving the `encoder` of `cosine` graders.
    pub fn with_embedder(spec: &GraderSpec, embedder: &mut EmbedderFor) -> Result<Grader> {
        Grader::with_resources(spec, embedder, None, None)
    }

    /// [`Grader::with_embedder`], `commands` for `command` graders and `judges` for
    /// `score_model` / `label_model` (without them those graders are refused: the caller runs no
    /// programs, or calls no judge). A judge is probed here, before it grades anything.
    pub fn with_resources(
        spec: &GraderSpec,
        embedder: &mut EmbedderFor,
        commands: Option<&CommandEnv>,
        judges: Option<&JudgeEnv>,
    ) -> Result<Grader> {
        let name = spec.name().to_string();
        if name.is_empty() {
            return Err(spec_err(
                "?",
                format!("a `{}` grader has no name", spec.type_name()),
            ));
        }
        let n = name.as_str();
        let tpl = |src: &str| Tpl::new(n, src);
        let mut pass_threshold = 1.0;
        let kind = match spec {
            GraderSpec::StringCheck(g) => {
                Kind::StringCheck(tpl(&g.input)?, tpl(&g.reference)?, g.operation)
            }
            GraderSpec::TextSimilarity(g) if g.evaluation_metric == Metric::Cosine => {
                let t = g.pass_threshold.unwrap_or(1.0);
                if !(-1.0..=1.0).contains(&t) {
                    return Err(spec_err(
                        n,
                        "pass_threshold must lie in [-1, 1] (cosine does)",
                    ));
                }
                let e = embedder(g.encoder.as_deref()).map_err(|e| spec_err(n, e))?;
                pass_threshold = t;
                Kind::Cosine(tpl(&g.input)?, tpl(&g.reference)?, e)
            }
            GraderSpec::TextSimilarity(g) => {
                if matches!(g.evaluation_metric, Metric::Gleu | Metric::Meteor) {
                    return Err(spec_err(
                        n,
                        format!(
                            "evaluation_metric `{}` is not supported yet; use fuzzy_match, bleu, rouge_1..rouge_5, rouge_l, chrf or cosine",
                            serde_json::to_value(g.evaluation_metric)
                                .map(|v| as_text(&v))
                                .unwrap_or_default()
                        ),
                    ));
                }
                let t = g.pass_threshold.unwrap_or(1.0);
                if !(0.0..=1.0).contains(&t) {
                    return Err(spec_err(n, "pass_threshold must lie in [0, 1] (scores do)"));
                }
                pass_threshold = t;
                Kind::TextSimilarity(tpl(&g.input)?, tpl(&g.reference)?, g.evaluation_metric)
            }
            GraderSpec::Numeric(g) => {
                if g.abs_tol < 0.0
                    || g.rel_tol < 0.0
                    || !g.abs_tol.is_finite()
                    || !g.rel_tol.is_finite()
                {
                    return Err(spec_err(n, "abs_tol and rel_tol must be finite and >= 0"));
                }
                Kind::Numeric {
                    input: tpl(&g.input)?,
                    reference: tpl(&g.reference)?,
                    abs_tol: g.abs_tol,
                    rel_tol: g.rel_tol,
                    pick: g.pick,
                }
            }
            GraderSpec::Regex(g) => {
                let re = RegexBuilder::new(&g.pattern)
                    .case_insensitive(g.case_insensitive)
                    .build()
                    .map_err(|e| {
                        spec_err(n, format!("pattern is not a regular expression: {e}"))
                    })?;
                Kind::Regex(tpl(&g.input)?, re, g.negate)
            }
            GraderSpec::Length(g) => {
                if [g.min_words, g.max_words, g.min_chars, g.max_chars]
                    .iter()
                    .all(Option::is_none)
                {
                    return Err(spec_err(
                        n,
                        "a length grader needs min_words, max_words, min_chars or max_chars",
                    ));
                }
                Kind::Length(tpl(&g.input)?, g.clone())
            }
            GraderSpec::JsonSchema(g) => {
                let schema = match &g.schema {
                    Value::String(s) => serde_json::from_str(s).map_err(|e| {
                        spec_err(n, format!("schema is a string but not JSON: {e}"))
                    })?,
                    v => v.clone(),
                };
                let v = jsonschema::validator_for(&schema)
                    .map_err(|e| spec_err(n, format!("schema is not a valid JSON Schema: {e}")))?;
                Kind::JsonSchema(tpl(&g.input)?, Box::new(v))
            }
            GraderSpec::JsonFields(g) => {
                if g.fields.is_empty() {
                    return Err(spec_err(
                        n,
                        "json_fields needs at least one entry under `fields`",
                    ));
                }
                let mut fields = Vec::new();
                for (path, c) in &g.fields {
                    let needs_value = !matches!(c.operation, FieldOp::Exists);
                    if needs_value && c.value.is_none() {
                        return Err(spec_err(
                            n,
                            format!("field `{path}`: operation needs a `value`"),
                        ));
                    }
                    let pattern = match (c.operation, &c.value) {
                        (FieldOp::Regex, Some(p)) => Some(Regex::new(p).map_err(|e| {
                            spec_err(n, format!("field `{path}`: not a regular expression: {e}"))
                        })?),
                        _ => None,
                    };
                    let value = match (c.operation, &c.value) {
                        (FieldOp::Regex | FieldOp::Exists, _) | (_, None) => None,
                        (_, Some(v)) => Some(tpl(v)?),
                    };
                    fields.push(Field {
                        path: path.clone(),
                        op: c.operation,
                        value,
                        pattern,
                        tolerance: c.tolerance,
                    });
                }
                Kind::JsonFields(tpl(&g.input)?, fields)
            }
            GraderSpec::Command(g) => {
                let env = commands.ok_or_else(|| {
                    spec_err(
                        n,
                        "this caller runs no programs, so `command` graders are refused",
                    )
                })?;
                if let Some(t) = g.pass_threshold {
                    pass_threshold = t;
                }
                Kind::Command(Box::new(Program::new(n, g, env)?))
            }
            GraderSpec::ScoreModel(g) => {
                let [lo, hi] = g.range.unwrap_or([0.0, 1.0]);
                let t = g.pass_threshold.unwrap_or(hi);
                if !(lo..=hi).contains(&t) {
                    return Err(spec_err(n, "pass_threshold must lie in the range"));
                }
                pass_threshold = t;
                let settings = Settings {
                    endpoint: g.endpoint.as_deref(),
                    api_key_env: g.api_key_env.as_deref(),
                    timeout_seconds: g.timeout_seconds,
                    mode: g.structured_output,
                    model: &g.model,
                    sampling: &g.sampling_params,
                    ask: Ask::Score { lo, hi },
                };
                judge_kind(n, &g.input, settings, judges)?
            }
            GraderSpec::LabelModel(g) => {
                if let Some(p) = g.passing_labels.iter().find(|p| !g.labels.contains(p)) {
                    return Err(spec_err(
                        n,
                        format!("passing label `{p}` is not one of `labels`"),
                    ));
                }
                if g.passing_labels.is_empty() {
                    return Err(spec_err(n, "passing_labels is empty: nothing could pass"));
                }
                let settings = Settings {
                    endpoint: g.endpoint.as_deref(),
                    api_key_env: g.api_key_env.as_deref(),
                    timeout_seconds: g.timeout_seconds,
                    mode: g.structured_output,
                    model: &g.model,
                    sampling: &g.sampling_params,
                    ask: Ask::Label(g.labels.clone()),
                };
                judge_kind(n, &g.input, settings, judges)?
            }
            GraderSpec::Multi(g) => {
                let formula =
                    formula::parse(&g.calculate_output).map_err(|e| GradeError::FormulaParse {
                        grader: name.clone(),
                        at: e.at,
                        msg: e.msg,
                    })?;
                let mut subs = Vec::new();
                for (key, sub) in &g.graders {
                    let mut sub = sub.clone();
                    sub.name_if_unnamed(key);
                    subs.push((
                        key.clone(),
                        Grader::with_resources(&sub, embedder, commands, judges)?,
                    ));
                }
                for v in formula.variables() {
                    if !subs.iter().any(|(k, _)| k == v) {
                        return Err(GradeError::InvalidVariable {
                            grader: name.clone(),
                            name: v.to_string(),
                            hint: format!(
                                "; the formula can read the sub-graders {}",
                                subs.iter()
                                    .map(|(k, _)| format!("`{k}`"))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                    }
                }
                if let Some(t) = g.pass_threshold {
                    pass_threshold = t;
                }
                Kind::Multi(subs, formula)
            }
        };
        Ok(Grader {
            name,
            type_name: spec.type_name(),
            pass_threshold,
            kind,
            spec: spec.clone(),
        })
    }

    /// The definition this grader was built from.
    pub fn spec(&self) -> &GraderSpec {
        &self.spec
    }

    /// Whether a `command` grader (this one or a sub-grader) runs without namespaces, because the
    /// machine cannot isolate it and the project allowed that.
    pub fn runs_unisolated(&self) -> bool {
        match &self.kind {
            Kind::Command(p) => !p.isolated(),
            Kind::Multi(subs, _) => subs.iter().any(|(_, g)| g.runs_unisolated()),
            _ => false,
        }
    }

    /// The reward at or above which a sample passes.
    pub fn pass_threshold(&self) -> f64 {
        self.pass_threshold
    }

    /// Every `item.FIELD` the grader's templates read (sub-graders included).
    pub fn item_fields(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut add = |t: &Tpl| out.extend(t.item_fields.iter().cloned());
        match &self.kind {
            Kind::StringCheck(a, b, _) | Kind::TextSimilarity(a, b, _) | Kind::Cosine(a, b, _) => {
                add(a);
                add(b);
            }
            Kind::Numeric {
                input, reference, ..
            } => {
                add(input);
                add(reference);
            }
            Kind::Regex(t, ..) | Kind::Length(t, _) | Kind::JsonSchema(t, _) => add(t),
            Kind::JsonFields(t, fields) => {
                add(t);
                fields.iter().filter_map(|f| f.value.as_ref()).for_each(add);
            }
            Kind::Multi(subs, _) => {
                for (_, g) in subs {
                    out.extend(g.item_fields());
                }
            }
            Kind::Judge(_, messages) => messages.iter().for_each(|(_, t)| add(t)),
            // A program reads the whole item; no field is required of it.
            Kind::Command(_) => {}
        }
        out
    }

    /// The JSON schemas this grader checks against (its own and its sub-graders').
    pub fn schemas(&self) -> Vec<Value> {
        match (&self.kind, &self.spec) {
            (Kind::JsonSchema(..), GraderSpec::JsonSchema(g)) => vec![match &g.schema {
                // A schema written as a JSON string (TOML files) is the schema it holds.
                Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| g.schema.clone()),
                v => v.clone(),
            }],
            (Kind::Multi(subs, _), _) => subs.iter().flat_map(|(_, g)| g.schemas()).collect(),
            _ => Vec::new(),
        }
    }

    /// Score `output` (the model's answer) for `item` (the dataset row's fields).
    pub fn grade(&self, output: &str, item: &Value) -> Result<Grade> {
        let s = SampleView {
            text: output,
            json: std::cell::OnceCell::new(),
        };
        self.grade_view(&s, item)
    }

    fn grade_view(&self, s: &SampleView, item: &Value) -> Result<Grade> {
        let n = self.name.as_str();
        let mut sub_rewards = BTreeMap::new();
        let reward = match &self.kind {
            Kind::StringCheck(input, reference, op) => bool_reward(string_op(
                *op,
                &input.render(n, s, item)?,
                &reference.render(n, s, item)?,
            )),
            Kind::TextSimilarity(input, reference, metric) => {
                let (a, b) = (input.render(n, s, item)?, reference.render(n, s, item)?);
                match metric {
                    Metric::FuzzyMatch => metrics::fuzzy_ratio(&a, &b),
                    Metric::Bleu => metrics::bleu(&a, &b),
                    Metric::Rouge1 => metrics::rouge_n(&a, &b, 1),
                    Metric::Rouge2 => metrics::rouge_n(&a, &b, 2),
                    Metric::Rouge3 => metrics::rouge_n(&a, &b, 3),
                    Metric::Rouge4 => metrics::rouge_n(&a, &b, 4),
                    Metric::Rouge5 => metrics::rouge_n(&a, &b, 5),
                    Metric::RougeL => hone_eval::text::rouge_l(&a, &b),
                    Metric::Chrf => hone_eval::text::chrf(&a, &b),
                    Metric::Gleu | Metric::Meteor | Metric::Cosine => {
                        unreachable!("refused, or built as Kind::Cosine, by Grader::with_embedder")
                    }
                }
            }
            Kind::Cosine(input, reference, e) => {
                let (a, b) = (input.render(n, s, item)?, reference.render(n, s, item)?);
                let v = e.embed(&[&a, &b]).map_err(|msg| GradeError::Runtime {
                    grader: n.to_string(),
                    msg: format!("encoder: {msg}"),
                })?;
                match v.as_slice() {
                    [x, y] => x
                        .iter()
                        .zip(y)
                        .map(|(p, q)| f64::from(*p) * f64::from(*q))
                        .sum(),
                    _ => {
                        return Err(GradeError::Runtime {
                            grader: n.to_string(),
                            msg: "the encoder returned the wrong number of vectors".into(),
                        });
                    }
                }
            }
            Kind::Numeric {
                input,
                reference,
                abs_tol,
                rel_tol,
                pick,
            } => {
                let r = reference.render(n, s, item)?;
                let want = find_number(&r, Pick::Last).ok_or_else(|| GradeError::Runtime {
                    grader: n.to_string(),
                    msg: format!("the reference `{r}` holds no number"),
                })?;
                match find_number(&input.render(n, s, item)?, *pick) {
                    Some(x) => bool_reward((x - want).abs() <= abs_tol + rel_tol * want.abs()),
                    None => 0.0,
                }
            }
            Kind::Regex(input, re, negate) => {
                bool_reward(re.is_match(&input.render(n, s, item)?) != *negate)
            }
            Kind::Length(input, b) => {
                let t = input.render(n, s, item)?;
                let (w, c) = (t.split_whitespace().count(), t.chars().count());
                bool_reward(
                    b.min_words.is_none_or(|m| w >= m)
                        && b.max_words.is_none_or(|m| w <= m)
                        && b.min_chars.is_none_or(|m| c >= m)
                        && b.max_chars.is_none_or(|m| c <= m),
                )
            }
            Kind::JsonSchema(input, v) => {
                let t = input.render(n, s, item)?;
                match serde_json::from_str::<Value>(t.trim()) {
                    Ok(j) => bool_reward(v.is_valid(&j)),
                    Err(_) => 0.0,
                }
            }
            Kind::JsonFields(input, fields) => {
                let t = input.render(n, s, item)?;
                match serde_json::from_str::<Value>(t.trim()) {
                    Err(_) => 0.0,
                    Ok(j) => {
                        let mut ok = 0usize;
                        for f in fields {
                            let got = json_path(&j, &f.path);
                            let want =
                                f.value.as_ref().map(|v| v.render(n, s, item)).transpose()?;
                            let want = want.as_deref().unwrap_or("");
                            let hit = match (f.op, got) {
                                (FieldOp::Exists, g) => g.is_some(),
                                (_, None) => false,
                                (FieldOp::Eq, Some(g)) => {
                                    string_op(StringOp::Eq, &as_text(g), want)
                                }
                                (FieldOp::Ne, Some(g)) => {
                                    string_op(StringOp::Ne, &as_text(g), want)
                                }
                                (FieldOp::Like, Some(g)) => {
                                    string_op(StringOp::Like, &as_text(g), want)
                                }
                                (FieldOp::Ilike, Some(g)) => {
                                    string_op(StringOp::Ilike, &as_text(g), want)
                                }
                                (FieldOp::Regex, Some(g)) => {
                                    f.pattern.as_ref().is_some_and(|p| p.is_match(&as_text(g)))
                                }
                                (FieldOp::Number, Some(g)) => {
                                    let x = g.as_f64().or_else(|| as_text(g).trim().parse().ok());
                                    let w: Option<f64> = want.trim().parse().ok();
                                    matches!((x, w), (Some(x), Some(w)) if (x - w).abs() <= f.tolerance)
                                }
                            };
                            ok += usize::from(hit);
                        }
                        ok as f64 / fields.len() as f64
                    }
                }
            }
            Kind::Command(p) => {
                let doc = serde_json::json!({
                    "sample": {"output_text": s.text, "output_json": s.json()},
                    "item": item,
                });
                p.score(n, doc.to_string().as_bytes())?
            }
            Kind::Judge(judge, messages) => {
                let rendered = messages
                    .iter()
                    .map(|(role, t)| Ok((role.clone(), t.render(n, s, item)?)))
                    .collect::<Result<Vec<_>>>()?;
                match (judge.ask(n, &rendered)?, &self.spec) {
                    (Answer::Score(x), _) => x,
                    (Answer::Label(l), GraderSpec::LabelModel(g)) => {
                        bool_reward(g.passing_labels.contains(&l))
                    }
                    (Answer::Label(_), _) => unreachable!("only label_model asks for a label"),
                }
            }
            Kind::Multi(subs, formula) => {
                let mut vars = BTreeMap::new();
                for (key, g) in subs {
                    let r = g.grade_view(s, item)?;
                    for (k, v) in r.sub_rewards {
                        sub_rewards.insert(format!("{key}.{k}"), v);
                    }
                    sub_rewards.insert(key.clone(), r.reward);
                    vars.insert(key.clone(), r.reward);
                }
                formula.eval(&vars).map_err(|msg| GradeError::Runtime {
                    grader: n.to_string(),
                    msg: format!("calculate_output: {msg}"),
                })?
            }
        };
        Ok(Grade {
            reward,
            passed: reward >= self.pass_threshold,
            sub_rewards,
        })
    }
}
