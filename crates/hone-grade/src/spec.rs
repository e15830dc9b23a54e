//! Grader definitions as users write them: `graders/NAME.toml`, `[[grader]]` in `hone.toml`, or
//! OpenAI grader JSON as it is. The shape follows OpenAI's public grader spec (`type`, `name`,
//! `input`, `reference`, `operation`, `evaluation_metric`, `pass_threshold`, `graders`,
//! `calculate_output`, `model`, `range`, `labels`, `passing_labels`, `sampling_params`); `numeric`,
//! `regex`, `length`, `json_schema`, `json_fields` and `command` are hone's own, as are a judge's
//! `endpoint`, `api_key_env`, `timeout_seconds` and `structured_output`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The text a grader reads when `input` is not given: the model's answer.
pub const DEFAULT_INPUT: &str = "{{ sample.output_text }}";

fn default_input() -> String {
    DEFAULT_INPUT.to_string()
}

/// One grader definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GraderSpec {
    StringCheck(StringCheck),
    TextSimilarity(TextSimilarity),
    Numeric(Numeric),
    Regex(RegexCheck),
    Length(Length),
    JsonSchema(JsonSchema),
    JsonFields(JsonFields),
    Command(CommandSpec),
    ScoreModel(ScoreModel),
    LabelModel(LabelModel),
    Multi(Multi),
}

impl GraderSpec {
    pub fn name(&self) -> &str {
        match self {
            GraderSpec::StringCheck(g) => &g.name,
            GraderSpec::TextSimilarity(g) => &g.name,
            GraderSpec::Numeric(g) => &g.name,
            GraderSpec::Regex(g) => &g.name,
            GraderSpec::Length(g) => &g.name,
            GraderSpec::JsonSchema(g) => &g.name,
            GraderSpec::JsonFields(g) => &g.name,
            GraderSpec::Command(g) => &g.name,
            GraderSpec::ScoreModel(g) => &g.name,
            GraderSpec::LabelModel(g) => &g.name,
            GraderSpec::Multi(g) => &g.name,
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            GraderSpec::StringCheck(_) => "string_check",
            GraderSpec::TextSimilarity(_) => "text_similarity",
            GraderSpec::Numeric(_) => "numeric",
            GraderSpec::Regex(_) => "regex",
            GraderSpec::Length(_) => "length",
            GraderSpec::JsonSchema(_) => "json_schema",
            GraderSpec::JsonFields(_) => "json_fields",
            GraderSpec::Command(_) => "command",
            GraderSpec::ScoreModel(_) => "score_model",
            GraderSpec::LabelModel(_) => "label_model",
            GraderSpec::Multi(_) => "multi",
        }
    }

    /// Give an unnamed grader `name` (a file's stem, a sub-grader's key).
    pub fn name_if_unnamed(&mut self, name: &str) {
        let slot = match self {
            GraderSpec::StringCheck(g) => &mut g.name,
            GraderSpec::TextSimilarity(g) => &mut g.name,
            GraderSpec::Numeric(g) => &mut g.name,
            GraderSpec::Regex(g) => &mut g.name,
            GraderSpec::Length(g) => &mut g.name,
            GraderSpec::JsonSchema(g) => &mut g.name,
            GraderSpec::JsonFields(g) => &mut g.name,
            GraderSpec::Command(g) => &mut g.name,
            GraderSpec::ScoreModel(g) => &mut g.name,
            GraderSpec::LabelModel(g) => &mut g.name,
            GraderSpec::Multi(g) => &mut g.name,
        };
        if slot.is_empty() {
            *slot = name.to_string();
        }
    }
}

/// `string_check`: 1 when the comparison holds, else 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringCheck {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_input")]
    pub input: String,
    pub reference: String,
    pub operation: StringOp,
}

/// `eq`/`ne`: equal or not, byte for byte; `like`: `input` contains `reference`; `ilike`: the same
/// ignoring case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StringOp {
    Eq,
    Ne,
    Like,
    Ilike,
}

/// `text_similarity`: the metric's score in [0, 1] (cosine: [-1, 1]); passes at `pass_threshold`
/// (default 1: OpenAI's reward-training graders leave it out).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSimilarity {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_input")]
    pub input: String,
    pub reference: String,
    pub evaluation_metric: Metric,
    #[serde(default)]
    pub pass_threshold: Option<f64>,
    /// For `cosine`: a local sentence-embedding model directory (e.g. `models/all-MiniLM-L6-v2`
    /// from `scripts/get-minilm`), relative to the project. hone's own field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    FuzzyMatch,
    Bleu,
    Gleu,
    Meteor,
    Cosine,
    #[serde(rename = "rouge_1")]
    Rouge1,
    #[serde(rename = "rouge_2")]
    Rouge2,
    #[serde(rename = "rouge_3")]
    Rouge3,
    #[serde(rename = "rouge_4")]
    Rouge4,
    #[serde(rename = "rouge_5")]
    Rouge5,
    RougeL,
    Chrf,
}

/// `numeric`: a number read from `input` (the last one, or the first with `pick = "first"`;
/// thousands commas allowed) against the number in `reference`; 1 when `|x - ref| <= abs_tol +
/// rel_tol * |ref|` (numpy's `isclose`), else 0. No number in the input scores 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Numeric {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_input")]
    pub input: String,
    pub reference: String,
    #[serde(default)]
    pub abs_tol: f64,
    #[serde(default)]
    pub rel_tol: f64,
    #[serde(default)]
    pub pick: Pick,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pick {
    First,
    #[default]
    Last,
}

/// `regex`: 1 when `pattern` (Rust `regex` syntax) matches somewhere in `input`; with `negate`,
/// 1 when it matches nowhere (a rule such as "promises no refund").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegexCheck {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_input")]
    pub input: String,
    pub pattern: String,
    #[serde(default)]
    pub case_insensitive: bool,
    #[serde(default)]
    pub negate: bool,
}

/// `length`: 1 when the input's word count (Unicode whitespace-separated) and character count lie
/// within the bounds given, else 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Length {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_input")]
    pub input: String,
    pub min_words: Option<usize>,
    pub max_words: Option<usize>,
    pub min_chars: Option<usize>,
    pub max_chars: Option<usize>,
}

/// `json_schema`: 1 when `input` is JSON that validates against `schema` (JSON Schema, any draft
/// the `jsonschema` crate detects; a string holding JSON is accepted for TOML files), else 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchema {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_input")]
    pub input: String,
    pub schema: serde_json::Value,
}

/// `json_fields`: `input` parsed as JSON; each entry of `fields` (a dotted path such as
/// `order.id`, array elements by index) is checked; the reward is the share of checks that hold
/// (invalid JSON: 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFields {
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_input")]
    pub input: String,
    pub fields: BTreeMap<String, FieldCheck>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldCheck {
    pub operation: FieldOp,
    /// A template, compared with the field's value as text (strings unquoted).
    #[serde(default)]
    pub value: Option<String>,
    /// For `number`: `|x - value| <= tolerance`.
    #[serde(default)]
    pub tolerance: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldOp {
    Exists,
    Eq,
    Ne,
    Like,
    Ilike,
    Regex,
    Number,
}

/// `command`: an external program scores the sample. It reads `{"sample": {"output_text",
/// "output_json"}, "item": {...}}` as one JSON document on stdin and prints its score on stdout (a
/// number, or `{"reward": x}`); it runs in the project directory, seen read-only, without network,
/// with a clean environment, under `timeout_seconds` and `memory_mb` (see [`crate::command`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    #[serde(default)]
    pub name: String,
    /// The program and its arguments, no shell: `["python3", "graders/check.py"]`. A program
    /// written with a `/` is relative to the project; otherwise it is looked up on `PATH`.
    pub command: Vec<String>,
    /// Wall-clock limit per sample (default 10 s).
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Address-space limit (default 1024 MiB).
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
    /// The reward at or above which a sample passes (default 1).
    #[serde(default)]
    pub pass_threshold: Option<f64>,
}

fn default_timeout() -> f64 {
    10.0
}

fn default_memory() -> u64 {
    1024
}

/// One chat message of a judge's prompt; `content` is a template (`{{ item.question }}`,
/// `{{ sample.output_text }}`). OpenAI's `"type": "message"` is accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: String,
    pub content: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// Sampling settings sent to a judge as they are; `temperature` defaults to 0, so the same answer
/// gets the same grade wherever the server is deterministic.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completions_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
}

/// How a judge is held to its answer's shape: `json_schema` sends OpenAI's `response_format`
/// (the server constrains the reply); `prompt` only describes the shape in the prompt, for servers
/// that reject `response_format`. Either way the reply is parsed and checked the same way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    #[default]
    JsonSchema,
    Prompt,
}

fn default_judge_timeout() -> f64 {
    60.0
}

/// `score_model`: a judge reads `input` (chat messages, templates rendered) and answers a number in
/// `range` (default [0, 1]), which is the reward; passes at `pass_threshold` (default: the top of
/// the range, like every other grader's full marks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreModel {
    #[serde(default)]
    pub name: String,
    pub model: String,
    pub input: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[f64; 2]>,
    #[serde(default)]
    pub pass_threshold: Option<f64>,
    #[serde(default)]
    pub sampling_params: SamplingParams,
    /// An OpenAI-compatible base URL (`http://127.0.0.1:8081/v1`: llama.cpp's server, vLLM, or
    /// `hone serve`); requests go to `ENDPOINT/chat/completions`. Unset: `HONE_JUDGE_ENDPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The environment variable holding the server's API key, sent as a bearer token (the key is
    /// never written in a grader file). Unset: `HONE_JUDGE_API_KEY` if that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Limit per request (default 60 s).
    #[serde(default = "default_judge_timeout")]
    pub timeout_seconds: f64,
    #[serde(default)]
    pub structured_output: StructuredOutput,
}

/// `label_model`: a judge picks one of `labels`; the reward is 1 when it is one of
/// `passing_labels`, else 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelModel {
    #[serde(default)]
    pub name: String,
    pub model: String,
    pub input: Vec<Message>,
    pub labels: Vec<String>,
    pub passing_labels: Vec<String>,
    #[serde(default)]
    pub sampling_params: SamplingParams,
    /// An OpenAI-compatible base URL (`http://127.0.0.1:8081/v1`: llama.cpp's server, vLLM, or
    /// `hone serve`); requests go to `ENDPOINT/chat/completions`. Unset: `HONE_JUDGE_ENDPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The environment variable holding the server's API key, sent as a bearer token (the key is
    /// never written in a grader file). Unset: `HONE_JUDGE_API_KEY` if that is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Limit per request (default 60 s).
    #[serde(default = "default_judge_timeout")]
    pub timeout_seconds: f64,
    #[serde(default)]
    pub structured_output: StructuredOutput,
}

/// `multi`: sub-graders by name, combined by `calculate_output` (see [`crate::formula`]); passes
/// at `pass_threshold` (default 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Multi {
    #[serde(default)]
    pub name: String,
    pub graders: BTreeMap<String, GraderSpec>,
    pub calculate_output: String,
    #[serde(default)]
    pub pass_threshold: Option<f64>,
}
