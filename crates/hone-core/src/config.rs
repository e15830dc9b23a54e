//! The `hone.toml` schema (DESIGN §2), its defaults, and validation with errors that point at the key and
//! line and suggest the closest known key. Key names are a contract: add keys freely, rename none.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use toml::de::{DeTable, DeValue};

use crate::error::{Error, Result};

/// The whole project configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub task: TaskConfig,
    #[serde(default)]
    pub success: BTreeMap<String, String>,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default, rename = "source")]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub split: SplitConfig,
    #[serde(default, rename = "model")]
    pub models: Vec<ModelConfig>,
    #[serde(default)]
    pub costs: CostsConfig,
    #[serde(default)]
    pub monitor: MonitorConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Classify,
    Generate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub name: String,
    pub kind: TaskKind,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// What the model is for, in the team's words (the model card's "Intended use").
    #[serde(default)]
    pub intended_use: Option<String>,
    /// Uses it must not be put to (the model card's "Out-of-scope uses").
    #[serde(default)]
    pub out_of_scope: Option<String>,
    /// The trained model's license, as an SPDX id (`apache-2.0`) or `other` (the card's `license`).
    #[serde(default)]
    pub license: Option<String>,
    /// Generate tasks: the dev metric that chooses among the models, `dev_rouge_l` (the default) or a
    /// grader's `grader_NAME_pass_rate` / `grader_NAME_mean` (see [`SelectBy`]).
    #[serde(default)]
    pub select_by: Option<String>,
}

/// What the chosen-model rule ranks a generate task's models by on dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectBy {
    /// ROUGE-L against the dev references (the default).
    RougeL,
    /// A grader's pass rate (`mean: false`) or mean reward on the dev answers.
    Grader { name: String, mean: bool },
}

impl SelectBy {
    /// Parses `select_by`: `dev_rouge_l`, `grader_NAME_pass_rate` or `grader_NAME_mean`.
    pub fn parse(s: &str) -> Option<SelectBy> {
        if s == "dev_rouge_l" {
            return Some(SelectBy::RougeL);
        }
        grader_gate(s).map(|(name, what)| SelectBy::Grader {
            name: name.to_string(),
            mean: what == "mean",
        })
    }
}

impl TaskConfig {
    /// The generate task's selection metric (validated at load; `dev_rouge_l` when unset).
    pub fn select_by(&self) -> SelectBy {
        self.select_by
            .as_deref()
            .and_then(SelectBy::parse)
            .unwrap_or(SelectBy::RougeL)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PiiPolicy {
    /// Replace each detected value by a typed placeholder such as `<EMAIL>`.
    #[default]
    Mask,
    /// Drop records that contain any PII.
    Drop,
    /// Stop with an error naming the record.
    Fail,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NearDuplicatePolicy {
    /// Keep one record per near-duplicate cluster (the first), drop the rest.
    Drop,
    /// Keep all; every record still carries its cluster id (the split keeps a cluster on one side).
    /// The default, by measurement: on BANKING77, TREC and SMS Spam dropping lost test accuracy
    /// (ARCHITECTURE.md, "Defaults chosen by measurement").
    #[default]
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LabelConflictPolicy {
    /// Keep the records carrying the majority label; a tie drops all of them.
    #[default]
    KeepMajority,
    /// Drop every record of a conflicting group.
    Drop,
    /// Keep all, flagged for review.
    Review,
}

/// What `hone data scan` does with suspected label errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LabelIssuePolicy {
    /// List them for `hone review`.
    #[default]
    Flag,
    /// Record a `drop` decision for each (reviewer: the policy).
    Drop,
    /// Record a `relabel` decision to the suggested label.
    Relabel,
}

/// What hone does with a grader the adversarial check can game.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GraderPolicy {
    #[default]
    Warn,
    Fail,
}

/// What `hone data scan` does with suspected poisoned records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PoisoningPolicy {
    #[default]
    Flag,
    Drop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ContaminationPolicy {
    #[default]
    Fail,
    DropTrain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordPolicy {
    /// Set the record aside with file:line:field:reason and go on.
    #[default]
    Quarantine,
    /// Stop at the first bad record.
    Fail,
}

/// One type of personal data, by its placeholder (`[policy] pii_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PiiType {
    Person,
    Address,
    Location,
    Org,
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    Ip,
    Secret,
    Url,
}

impl PiiType {
    /// The types masked by default: all but `LOCATION` and `ORG`, which are opt-in (masking "Apple
    /// Pay", "Visa" or country names would damage intent data, and a city or an employer alone rarely
    /// identifies a person).
    pub const DEFAULT: [PiiType; 10] = [
        PiiType::Email,
        PiiType::Phone,
        PiiType::Card,
        PiiType::Iban,
        PiiType::Ssn,
        PiiType::Ip,
        PiiType::Secret,
        PiiType::Url,
        PiiType::Person,
        PiiType::Address,
    ];
}

fn default_pii_types() -> Vec<PiiType> {
    PiiType::DEFAULT.to_vec()
}

/// `[policy]`: what curation does. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub pii: PiiPolicy,
    /// Which types `pii` masks (or drops, or fails on), by placeholder; default every type except
    /// `LOCATION` and `ORG` (opt-in).
    /// Predict and suites prepare their texts under the same list as the data the model learned from.
    #[serde(default = "default_pii_types")]
    pub pii_types: Vec<PiiType>,
    /// When true, records without an explicit opt-in never reach training (default false).
    pub require_consent: bool,
    /// Records older than this many days (counted back from `as_of`) are dropped as outdated.
    pub max_age_days: Option<u32>,
    /// `YYYY-MM-DD`; default: the source's `collected` date, else the day the version is made.
    pub as_of: Option<String>,
    /// Jaccard threshold on word shingles for near-duplicates (default 0.8).
    pub near_duplicate_jaccard: f64,
    pub near_duplicates: NearDuplicatePolicy,
    pub label_conflicts: LabelConflictPolicy,
    pub contamination: ContaminationPolicy,
    pub on_bad_record: BadRecordPolicy,
    /// `hone data scan`: flag suspected label errors for review (default), or drop / relabel them.
    pub label_issues: LabelIssuePolicy,
    /// `hone data scan`: flag suspected poisoned records for review (default), or drop them.
    pub poisoning: PoisoningPolicy,
    /// `hone data scan`: a Hugging Face encoder directory whose frozen embeddings feed the label-issue
    /// finder (out-of-fold linear heads) and the spectral check, instead of the `ngram` features
    /// (default: none). Relative to the project root.
    pub scan_encoder: Option<String>,
    /// Word shingle size for MinHash (default 5).
    pub shingle_words: usize,
    /// MinHash permutations (default 128).
    pub minhash_permutations: usize,
    /// Texts with fewer words than this also match by containment (default 20).
    pub short_text_words: usize,
    /// Containment threshold for short texts: share of the smaller word-bigram set found in the larger (0.9).
    pub short_text_containment: f64,
    /// Token n-gram length of the contamination overlap check (default 13).
    pub contamination_ngram: usize,
    /// Share of a test text's n-grams that one training text must contain to count as a leak (default 0.5).
    pub contamination_ngram_share: f64,
    /// Leak check `typo` rule: character edits allowed per character of the longer text (default 0.05:
    /// one edit below 40 characters, two from 40, three from 60; 0 turns the rule off).
    pub contamination_edit_share: f64,
    /// Texts with fewer characters (after normalising) are dropped as too short (default 2).
    pub min_chars: usize,
    /// Texts with more characters are dropped as too long (default 10000).
    pub max_chars: usize,
    /// A grader that the adversarial check finds exploitable: `warn` (default; exit 0) or `fail`
    /// (`hone grade validate` exits 3, `hone run` stops before training). Not part of curation: never
    /// serialised, so the policy that keys curation is the same whatever this says.
    #[serde(skip_serializing)]
    pub exploitable_graders: GraderPolicy,
    /// Run `command` graders without namespaces where the machine cannot isolate them (default
    /// false: hone refuses them there). They keep their time and memory limits but can reach the
    /// network and write to the project. Not part of curation: never serialised.
    #[serde(skip_serializing)]
    pub allow_unisolated_commands: bool,
    /// Let `score_model` / `label_model` judges run on another machine (default false: only a
    /// loopback endpoint is used, since a judge reads the items and the model's answers). Not part
    /// of curation: never serialised.
    #[serde(skip_serializing)]
    pub allow_remote_judges: bool,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            pii: PiiPolicy::Mask,
            pii_types: default_pii_types(),
            require_consent: false,
            max_age_days: None,
            as_of: None,
            near_duplicate_jaccard: 0.8,
            near_duplicates: NearDuplicatePolicy::Keep,
            label_conflicts: LabelConflictPolicy::KeepMajority,
            contamination: ContaminationPolicy::Fail,
            on_bad_record: BadRecordPolicy::Quarantine,
            label_issues: LabelIssuePolicy::Flag,
            poisoning: PoisoningPolicy::Flag,
            scan_encoder: None,
            shingle_words: 5,
            minhash_permutations: 128,
            short_text_words: 20,
            short_text_containment: 0.9,
            contamination_ngram: 13,
            contamination_ngram_share: 0.5,
            contamination_edit_share: 0.05,
            min_chars: 2,
            max_chars: 10_000,
            exploitable_graders: GraderPolicy::Warn,
            allow_unisolated_commands: false,
            allow_remote_judges: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceRole {
    #[default]
    Train,
    /// An official test split: normalised and masked, never loses a record, frozen as the test set.
    Test,
    /// Corrections sent to `hone serve` (`POST /v1/feedback`): a source hone adds to every version
    /// itself, never a `[[source]]` table.
    Feedback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    Jsonl,
    Csv,
    Parquet,
}

impl SourceFormat {
    /// Infer the format from a file extension.
    pub fn from_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Some(SourceFormat::Jsonl),
            "csv" | "tsv" | "txt" => Some(SourceFormat::Csv),
            "parquet" | "pq" => Some(SourceFormat::Parquet),
            _ => None,
        }
    }
}

/// How a source's columns map onto the record's fields. Unset fields use the column of the same name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct FieldMap {
    pub id: Option<String>,
    pub text: Option<String>,
    pub label: Option<String>,
    pub prompt: Option<String>,
    pub target: Option<String>,
    /// A generate source's column holding a conversation: a list of `{role, content}` (roles
    /// `system`, `user`, `assistant`); the last user message is the prompt and the answer to it the
    /// target, the turns before them its context. Instead of `prompt`/`target`.
    pub messages: Option<String>,
    pub date: Option<String>,
    pub valid_until: Option<String>,
    pub consent: Option<String>,
    pub topic: Option<String>,
    pub tags: Option<String>,
    pub group: Option<String>,
}

/// `[[source]]`: one input file with its source notes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    pub path: String,
    #[serde(default)]
    pub format: Option<SourceFormat>,
    #[serde(default)]
    pub role: SourceRole,
    #[serde(default)]
    pub license: Option<String>,
    /// `YYYY-MM-DD`: when the data was collected (also the default `as_of` for outdated records).
    #[serde(default)]
    pub collected: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
    /// CSV delimiter, one character (default `,`; `\t` for `.tsv`).
    #[serde(default)]
    pub delimiter: Option<String>,
    #[serde(default)]
    pub fields: FieldMap,
}

impl SourceConfig {
    pub fn format(&self) -> Option<SourceFormat> {
        self.format
            .or_else(|| SourceFormat::from_path(Path::new(&self.path)))
    }
    /// The column that holds the record's text (`fields.text`, else `fields.prompt`, else `text`).
    pub fn text_column(&self, kind: TaskKind) -> String {
        let default = if kind == TaskKind::Generate {
            "prompt"
        } else {
            "text"
        };
        let mapped = match kind {
            TaskKind::Classify => self.fields.text.clone(),
            TaskKind::Generate => self
                .fields
                .prompt
                .clone()
                .or_else(|| self.fields.text.clone()),
        };
        mapped.unwrap_or_else(|| default.to_string())
    }
    pub fn label_column(&self, kind: TaskKind) -> String {
        let default = if kind == TaskKind::Generate {
            "target"
        } else {
            "label"
        };
        let mapped = match kind {
            TaskKind::Classify => self.fields.label.clone(),
            TaskKind::Generate => self
                .fields
                .target
                .clone()
                .or_else(|| self.fields.label.clone()),
        };
        mapped.unwrap_or_else(|| default.to_string())
    }
}

/// `[split]` (used from the splitting issue on; accepted and validated now).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    pub test: f64,
    pub dev: f64,
    pub seed: u64,
    pub group_by: Option<String>,
    /// Refit the final model on train + dev after dev has ranked it and chosen its decision rule
    /// (`ngram`, `majority` and a frozen encoder's head; fine-tuned encoders keep their train-only fit). Default true, by measurement
    /// (ARCHITECTURE.md, "Defaults chosen by measurement"). Not part of the split's id: it changes the
    /// runs (their ids include it), not the split.
    #[serde(skip_serializing)]
    pub fold_dev: bool,
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            test: 0.2,
            dev: 0.1,
            seed: 7,
            group_by: None,
            fold_dev: true,
        }
    }
}

/// `[[model]]`: a candidate to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub pooling: Option<String>,
    /// Refuse to answer (label `abstain`) below a confidence threshold chosen on dev for at most one
    /// point of dev accuracy lost (default false).
    #[serde(default)]
    pub abstain: bool,
    #[serde(default)]
    pub params: BTreeMap<String, toml::Value>,
}

/// `[costs]`: prices used to turn measured time into money, and budgets that stop a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostsConfig {
    pub cpu_hour_usd: f64,
    pub gpu_hour_usd: f64,
    /// The most one model's training may cost (its wall time at the hour price); a language model's
    /// training stops cleanly there, keeping its best weights so far.
    pub max_usd: Option<f64>,
    /// The most wall-clock minutes one model's training may take, likewise.
    pub max_minutes: Option<f64>,
}

impl CostsConfig {
    /// The training seconds the budgets allow on `device` (`None`: no budget), the tighter of
    /// `max_minutes` and what `max_usd` buys at the device's hour price.
    pub fn budget_seconds(&self, gpu: bool) -> Option<f64> {
        let price = if gpu {
            self.gpu_hour_usd
        } else {
            self.cpu_hour_usd
        };
        let by_cost = self
            .max_usd
            .filter(|_| price > 0.0)
            .map(|usd| usd / price * 3600.0);
        let by_time = self.max_minutes.map(|m| m * 60.0);
        match (by_cost, by_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Default for CostsConfig {
    fn default() -> Self {
        CostsConfig {
            cpu_hour_usd: 0.05,
            gpu_hour_usd: 2.50,
            max_usd: None,
            max_minutes: None,
        }
    }
}

/// `[monitor]`: when a served model's drift alarms (`hone drift`, `/metrics`, the dashboard). A
/// feature alarms only with at least `min_samples` live answers, a test that rejects at `alpha`
/// (split over the features) and a PSI at least `psi_floor` above its noise level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// The most recent answers compared (500).
    pub window: usize,
    /// Fewer live answers than this never alarm (100).
    pub min_samples: usize,
    /// The family-wise false-alarm rate of one check (0.01).
    pub alpha: f64,
    /// How far above its noise level (the PSI two same-distribution samples of these sizes reach
    /// one time in twenty) a PSI must be to alarm (0.1).
    pub psi_floor: f64,
    /// How often `hone serve` recomputes the drift statistics it exports on `/metrics` (60).
    pub refresh_seconds: u64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            window: 500,
            min_samples: 100,
            alpha: 0.01,
            psi_floor: 0.1,
            refresh_seconds: 60,
        }
    }
}

/// A parsed success rule such as `">= 0.90"`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SuccessRule {
    pub op: CmpOp,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Ge,
    Le,
    Gt,
    Lt,
    Eq,
}

impl SuccessRule {
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let (op, rest) = [
            (">=", CmpOp::Ge),
            ("<=", CmpOp::Le),
            ("==", CmpOp::Eq),
            (">", CmpOp::Gt),
            ("<", CmpOp::Lt),
        ]
        .iter()
        .find_map(|(p, op)| s.strip_prefix(p).map(|r| (*op, r)))?;
        let value: f64 = rest.trim().parse().ok()?;
        value.is_finite().then_some(SuccessRule { op, value })
    }
    /// Whether some value in `[lo, hi]` satisfies the rule.
    pub fn satisfiable(&self, lo: f64, hi: f64) -> bool {
        let v = self.value;
        match self.op {
            CmpOp::Ge => v <= hi,
            CmpOp::Gt => v < hi,
            CmpOp::Le => v >= lo,
            CmpOp::Lt => v > lo,
            CmpOp::Eq => (lo..=hi).contains(&v),
        }
    }

    pub fn holds(&self, x: f64) -> bool {
        match self.op {
            CmpOp::Ge => x >= self.value,
            CmpOp::Le => x <= self.value,
            CmpOp::Gt => x > self.value,
            CmpOp::Lt => x < self.value,
            CmpOp::Eq => (x - self.value).abs() < 1e-12,
        }
    }
}

/// Parse a `YYYY-MM-DD` date.
pub fn parse_date(s: &str) -> Option<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

impl Config {
    /// Parse and validate a `hone.toml` text. `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
        config.validate(text, path)?;
        Ok(config)
    }

    /// Read, parse and validate a `hone.toml` file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Config::parse(&text, path)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<()> {
        let spans = Spans::new(text);
        // Errors about a key's name point at the key; errors about its value point at the value.
        let at_key = |keys: &[Seg<'_>], message: String, hint: &str| {
            config_error(path, spans.key_or_parent(keys), message, hint)
        };
        let at_value = |keys: &[Seg<'_>], message: String, hint: &str| {
            config_error(path, spans.value_or_parent(keys), message, hint)
        };
        use Seg::{Index, Key};
        if self.task.name.trim().is_empty() {
            return Err(at_value(
                &[Key("task"), Key("name")],
                "`task.name` is empty".into(),
                "give the task a short name",
            ));
        }
        if let Some(sel) = &self.task.select_by {
            if self.task.kind == TaskKind::Classify {
                return Err(at_key(
                    &[Key("task"), Key("select_by")],
                    "`select_by` is for generate tasks".into(),
                    "classification models are always chosen by dev macro-F1; remove the key",
                ));
            }
            if SelectBy::parse(sel).is_none() {
                return Err(at_value(
                    &[Key("task"), Key("select_by")],
                    format!("`select_by = \"{sel}\"` is not a dev metric hone ranks by"),
                    "use \"dev_rouge_l\" (the default), \"grader_NAME_pass_rate\" or \"grader_NAME_mean\" (NAME a grader in graders/)",
                ));
            }
        }
        for (metric, rule) in &self.success {
            if let Err(hint) = check_gate_metric(metric) {
                return Err(at_key(
                    &[Key("success"), Key(metric)],
                    format!("`[success]` names an unknown metric `{metric}`"),
                    &hint,
                ));
            }
            let (mine, other) = match self.task.kind {
                TaskKind::Classify => (CLASSIFY_METRICS, GENERATE_METRICS),
                TaskKind::Generate => (GENERATE_METRICS, CLASSIFY_METRICS),
            };
            let grader_on_classify =
                grader_gate(metric).is_some() && self.task.kind == TaskKind::Classify;
            if other.contains(&metric.as_str()) || grader_on_classify {
                return Err(at_key(
                    &[Key("success"), Key(metric)],
                    format!(
                        "`[success]` names `{metric}`, which a {} task does not measure",
                        match self.task.kind {
                            TaskKind::Classify => "classify",
                            TaskKind::Generate => "generate",
                        }
                    ),
                    &format!("metrics of this task: {}", mine.join(", ")),
                ));
            }
            let Some(parsed) = SuccessRule::parse(rule) else {
                return Err(at_value(
                    &[Key("success"), Key(metric)],
                    format!("success rule `{metric} = \"{rule}\"` is not a comparison"),
                    "write it as an operator and a number, e.g. \">= 0.90\" or \"<= 5\"",
                ));
            };
            let (lo, hi) = gate_metric_range(metric);
            if !parsed.satisfiable(lo, hi) {
                let range = if hi.is_finite() {
                    format!("[{lo}, {hi}]")
                } else {
                    format!("[{lo}, ∞)")
                };
                return Err(at_value(
                    &[Key("success"), Key(metric)],
                    format!(
                        "success rule `{metric} = \"{rule}\"` can never hold: `{metric}` lies in {range}"
                    ),
                    "a gate that no model can pass fails every run; rates and scores are fractions (0.9, not 90)",
                ));
            }
        }
        let p = &self.policy;
        let policy = |k| [Key("policy"), Key(k)];
        if !(0.0..=1.0).contains(&p.near_duplicate_jaccard) || p.near_duplicate_jaccard == 0.0 {
            return Err(at_value(
                &policy("near_duplicate_jaccard"),
                format!(
                    "`near_duplicate_jaccard = {}` is outside (0, 1]",
                    p.near_duplicate_jaccard
                ),
                "0.8 is a good default",
            ));
        }
        if !(0.0..=1.0).contains(&p.short_text_containment) || p.short_text_containment == 0.0 {
            return Err(at_value(
                &policy("short_text_containment"),
                format!(
                    "`short_text_containment = {}` is outside (0, 1]",
                    p.short_text_containment
                ),
                "0.9 is the default",
            ));
        }
        if p.shingle_words == 0 || p.minhash_permutations < 8 || p.minhash_permutations > 1024 {
            return Err(at_value(
                &policy(if p.shingle_words == 0 {
                    "shingle_words"
                } else {
                    "minhash_permutations"
                }),
                "near-duplicate settings out of range".into(),
                "shingle_words >= 1 and 8 <= minhash_permutations <= 1024",
            ));
        }
        if p.contamination_ngram == 0 {
            return Err(at_value(
                &policy("contamination_ngram"),
                "`contamination_ngram = 0`: the overlap check needs n-grams of at least one token"
                    .into(),
                "13 is the default",
            ));
        }
        if !(p.contamination_ngram_share > 0.0 && p.contamination_ngram_share <= 1.0) {
            return Err(at_value(
                &policy("contamination_ngram_share"),
                format!(
                    "`contamination_ngram_share = {}` is outside (0, 1]",
                    p.contamination_ngram_share
                ),
                "0.5 is the default",
            ));
        }
        if !(0.0..0.5).contains(&p.contamination_edit_share) {
            return Err(at_value(
                &policy("contamination_edit_share"),
                format!(
                    "`contamination_edit_share = {}` is outside [0, 0.5): at half the characters changed, any two texts of a length match",
                    p.contamination_edit_share
                ),
                "0.05 is the default (one edit per 20 characters); 0 turns the typo rule off",
            ));
        }
        if p.min_chars > p.max_chars {
            return Err(at_value(
                &policy("min_chars"),
                format!(
                    "`min_chars = {}` is larger than `max_chars = {}`",
                    p.min_chars, p.max_chars
                ),
                "min_chars must not exceed max_chars (defaults: 2 and 10000)",
            ));
        }
        if let Some(as_of) = &p.as_of
            && parse_date(as_of).is_none()
        {
            return Err(at_value(
                &policy("as_of"),
                format!("`as_of = \"{as_of}\"` is not a date"),
                "write it as YYYY-MM-DD",
            ));
        }
        if let Some(enc) = &p.scan_encoder
            && enc.trim().is_empty()
        {
            return Err(at_value(
                &policy("scan_encoder"),
                "`scan_encoder` is empty".into(),
                "name a Hugging Face model directory relative to the project root, or remove the key",
            ));
        }
        let sp = &self.split;
        for (key, v) in [("test", sp.test), ("dev", sp.dev)] {
            if !(0.0..1.0).contains(&v) {
                return Err(at_value(
                    &[Key("split"), Key(key)],
                    format!("`split.{key} = {v}` is outside [0, 1)"),
                    "split fractions are shares of the data, e.g. test = 0.2, dev = 0.1",
                ));
            }
        }
        if sp.test + sp.dev >= 1.0 {
            return Err(at_value(
                &[
                    Key("split"),
                    Key(if spans.has(&[Key("split"), Key("dev")]) {
                        "dev"
                    } else {
                        "test"
                    }),
                ],
                format!(
                    "split fractions test = {} and dev = {} leave nothing for training",
                    sp.test, sp.dev
                ),
                "keep test + dev below 1, e.g. test = 0.2, dev = 0.1",
            ));
        }
        for (key, v) in [
            ("cpu_hour_usd", self.costs.cpu_hour_usd),
            ("gpu_hour_usd", self.costs.gpu_hour_usd),
            ("max_usd", self.costs.max_usd.unwrap_or(0.0)),
            ("max_minutes", self.costs.max_minutes.unwrap_or(0.0)),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(at_value(
                    &[Key("costs"), Key(key)],
                    format!("`costs.{key} = {v}` is not a number >= 0"),
                    "prices are numbers >= 0 in US dollars per hour; budgets (max_usd, max_minutes) numbers >= 0",
                ));
            }
        }
        let m = &self.monitor;
        for (key, ok, hint) in [
            (
                "window",
                m.window >= 1,
                "a whole number of answers >= 1 (default 500)",
            ),
            (
                "min_samples",
                m.min_samples >= 1,
                "a whole number of answers >= 1 (default 100)",
            ),
            (
                "alpha",
                m.alpha > 0.0 && m.alpha < 1.0,
                "a false-alarm rate between 0 and 1 (default 0.01)",
            ),
            (
                "psi_floor",
                m.psi_floor.is_finite() && m.psi_floor >= 0.0,
                "a PSI >= 0 (default 0.1)",
            ),
            (
                "refresh_seconds",
                m.refresh_seconds >= 1,
                "a whole number of seconds >= 1 (default 60)",
            ),
        ] {
            if !ok {
                return Err(at_value(
                    &[Key("monitor"), Key(key)],
                    format!("`monitor.{key}` is out of range"),
                    hint,
                ));
            }
        }
        if self.sources.is_empty() {
            let (line, col) = (1, 1);
            return Err(Error::Config {
                path: path.to_path_buf(),
                line,
                col,
                message: "no [[source]] is declared".into(),
                hint: "add a [[source]] with a name and a path under data/".into(),
            });
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let source = |k| [Key("source"), Index(i), Key(k)];
            if !names.insert(s.name.as_str()) {
                return Err(at_value(
                    &source("name"),
                    format!("source name `{}` is used twice", s.name),
                    "give each [[source]] its own name",
                ));
            }
            if s.name.trim().is_empty() || s.name.contains(char::is_whitespace) {
                return Err(at_value(
                    &source("name"),
                    format!("source name `{}` is empty or has spaces", s.name),
                    "use a short slug such as helpdesk-2025",
                ));
            }
            if s.path.trim().is_empty() {
                return Err(at_value(
                    &source("path"),
                    format!("source `{}` has an empty path", s.name),
                    "give the data file's path relative to the project root, e.g. data/tickets.jsonl",
                ));
            }
            if s.format().is_none() {
                return Err(at_value(
                    &source("path"),
                    format!("cannot tell the format of `{}` from its extension", s.path),
                    "name it .jsonl, .csv, .tsv or .parquet, or set format = \"jsonl\" | \"csv\" | \"parquet\"",
                ));
            }
            if let Some(c) = &s.collected
                && parse_date(c).is_none()
            {
                return Err(at_value(
                    &source("collected"),
                    format!("`collected = \"{c}\"` is not a date"),
                    "write it as YYYY-MM-DD",
                ));
            }
            if let Some(d) = &s.delimiter
                && delimiter_byte(d).is_none()
            {
                return Err(at_value(
                    &source("delimiter"),
                    format!("delimiter `{d}` is not a single ASCII character"),
                    "use \",\", \";\", \"|\" or \"\\t\"",
                ));
            }
            if s.fields.messages.is_some() {
                let f = &s.fields;
                if self.task.kind != TaskKind::Generate {
                    return Err(at_value(
                        &[Key("source"), Index(i), Key("fields")],
                        format!(
                            "source `{}`: `messages` needs [task] kind = \"generate\"",
                            s.name
                        ),
                        "a classify source maps text and label",
                    ));
                }
                if f.prompt.is_some() || f.target.is_some() || f.text.is_some() || f.label.is_some()
                {
                    return Err(at_value(
                        &[Key("source"), Index(i), Key("fields")],
                        format!(
                            "source `{}` maps both `messages` and a prompt/target (or text/label) column",
                            s.name
                        ),
                        "a conversation carries its own prompt and target: keep `messages` or the pair, not both",
                    ));
                }
            }
            if s.role == SourceRole::Feedback {
                return Err(at_key(
                    &source("role"),
                    format!("source `{}` has role = \"feedback\"", s.name),
                    "the feedback source is hone's own (corrections sent to `hone serve`, added to every version); a [[source]] is \"train\" or \"test\"",
                ));
            }
            if p.require_consent && s.role == SourceRole::Train && s.fields.consent.is_none() {
                return Err(at_key(
                    &source("name"),
                    format!(
                        "source `{}` has no consent field but [policy] require_consent = true",
                        s.name
                    ),
                    "map the opt-in column with fields = { consent = \"opt_in\" }, or set require_consent = false",
                ));
            }
        }
        let mut model_names = std::collections::BTreeSet::new();
        for (i, m) in self.models.iter().enumerate() {
            if !model_names.insert(m.name.as_str()) {
                return Err(at_value(
                    &[Key("model"), Index(i), Key("name")],
                    format!("model name `{}` is used twice", m.name),
                    "give each [[model]] its own name",
                ));
            }
        }
        Ok(())
    }

    /// Checks that every path in the config exists, resolved against the project `root` (the directory
    /// holding `hone.toml`): each `[[source]]` file and `[policy] scan_encoder` (a Hugging Face model
    /// directory). `text` and `path` are the config's text and file name, for the error position.
    /// Model paths are checked by the model registry.
    pub fn check_paths(&self, text: &str, path: &Path, root: &Path) -> Result<()> {
        let spans = Spans::new(text);
        for (i, s) in self.sources.iter().enumerate() {
            let full = resolve_path(root, &s.path);
            if !full.is_file() {
                let what = if full.is_dir() {
                    "is a directory, not a data file"
                } else {
                    "does not exist"
                };
                return Err(config_error(
                    path,
                    spans.value_or_parent(&[Seg::Key("source"), Seg::Index(i), Seg::Key("path")]),
                    format!(
                        "source `{}`: `{}` {what} (looked for {})",
                        s.name,
                        s.path,
                        full.display()
                    ),
                    "paths in hone.toml are relative to the project root, the directory holding hone.toml",
                ));
            }
        }
        if let Some(enc) = &self.policy.scan_encoder {
            let dir = resolve_path(root, enc);
            if let Some(missing) = missing_model_file(&dir) {
                return Err(config_error(
                    path,
                    spans.value_or_parent(&[Seg::Key("policy"), Seg::Key("scan_encoder")]),
                    format!(
                        "`scan_encoder = \"{enc}\"` is not a Hugging Face model directory ({} is missing)",
                        dir.join(missing).display()
                    ),
                    "the path is relative to the project root; scripts/get-minilm fetches all-MiniLM-L6-v2 into models/all-MiniLM-L6-v2",
                ));
            }
        }
        Ok(())
    }

    /// Find `hone.toml` by searching upward from `start`.
    pub fn find(start: &Path) -> Option<PathBuf> {
        let mut dir = Some(start);
        while let Some(d) = dir {
            let candidate = d.join("hone.toml");
            if candidate.is_file() {
                return Some(candidate);
            }
            dir = d.parent();
        }
        None
    }
}

/// The byte a delimiter setting stands for (`"\t"` and `"tab"` mean tab).
pub fn delimiter_byte(d: &str) -> Option<u8> {
    match d {
        "\\t" | "\t" | "tab" => Some(b'\t'),
        s if s.len() == 1 && s.is_ascii() => Some(s.as_bytes()[0]),
        _ => None,
    }
}

/// A path from `hone.toml`, resolved against the project root (absolute paths stay as they are).
pub fn resolve_path(root: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}

/// The files a Hugging Face encoder directory must hold.
pub const MODEL_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The first of [`MODEL_FILES`] missing from `dir`, if any.
pub fn missing_model_file(dir: &Path) -> Option<&'static str> {
    MODEL_FILES.into_iter().find(|f| !dir.join(f).is_file())
}

/// The gate metrics `[success]` knows by name; `<tag>_pass_rate` and `<tag>_accuracy` name suite tags.
pub const GATE_METRICS: &[&str] = &[
    "accuracy",
    "macro_f1",
    "ece",
    "pr_auc",
    "p50_latency_ms",
    "p95_latency_ms",
    "p99_latency_ms",
    "throughput_per_s",
    "cost_per_1k_usd",
    "dev_accuracy",
    "dev_macro_f1",
    "rouge_l",
    "chrf",
    "exact_match",
    "token_f1",
    "dev_rouge_l",
    "dev_chrf",
];

/// The gate metrics only classification measures.
pub const CLASSIFY_METRICS: &[&str] = &[
    "accuracy",
    "macro_f1",
    "ece",
    "pr_auc",
    "dev_accuracy",
    "dev_macro_f1",
];

/// The gate metrics only generation measures (text metrics in [0, 1]; chrF is sacrebleu's / 100).
pub const GENERATE_METRICS: &[&str] = &[
    "rouge_l",
    "chrf",
    "exact_match",
    "token_f1",
    "dev_rouge_l",
    "dev_chrf",
];

/// The values a gate metric can take: fractions in [0, 1] for rates and scores, [0, ∞) for latency,
/// throughput and cost.
pub fn gate_metric_range(metric: &str) -> (f64, f64) {
    match metric {
        "p50_latency_ms" | "p95_latency_ms" | "p99_latency_ms" | "throughput_per_s"
        | "cost_per_1k_usd" => (0.0, f64::INFINITY),
        // A multi grader's formula may score outside [0, 1].
        m if grader_gate(m).is_some_and(|(_, w)| w == "mean") => (f64::NEG_INFINITY, f64::INFINITY),
        _ => (0.0, 1.0),
    }
}

/// A grader gate, `grader_NAME_pass_rate` or `grader_NAME_mean`: `(NAME, "pass_rate" | "mean")`.
pub fn grader_gate(metric: &str) -> Option<(&str, &'static str)> {
    let rest = metric.strip_prefix("grader_")?;
    let (name, what) = match rest.strip_suffix("_pass_rate") {
        Some(n) => (n, "pass_rate"),
        None => (rest.strip_suffix("_mean")?, "mean"),
    };
    (!name.is_empty()).then_some((name, what))
}

/// Whether `[success]` can gate on `metric`; the error is a hint naming the closest metric.
pub fn check_gate_metric(metric: &str) -> std::result::Result<(), String> {
    if GATE_METRICS.contains(&metric) || grader_gate(metric).is_some() {
        return Ok(());
    }
    let tag = metric
        .strip_suffix("_pass_rate")
        .or_else(|| metric.strip_suffix("_accuracy"));
    if let Some(t) = tag
        && !t.is_empty()
        && !t.contains(char::is_whitespace)
    {
        return Ok(());
    }
    Err(match closest(metric, GATE_METRICS) {
        Some(best) => format!("did you mean `{best}`?"),
        None => format!(
            "known metrics: {}, <tag>_pass_rate for a suite tag, or grader_NAME_pass_rate / grader_NAME_mean",
            GATE_METRICS.join(", ")
        ),
    })
}

/// Builds a config error at a line and column.
pub fn config_error(
    path: &Path,
    (line, col): (usize, usize),
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Error {
    Error::Config {
        path: path.to_path_buf(),
        line,
        col,
        message: message.into(),
        hint: hint.into(),
    }
}

/// One step of a path into the `hone.toml` document: a key, or an array element (`[[model]]` number
/// 2 is `[Seg::Key("model"), Seg::Index(2)]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Exact positions of the keys and values of a `hone.toml` text (from toml's spanned parse), so that a
/// validation error points at the offending key or value.
pub struct Spans<'a> {
    text: &'a str,
    doc: Option<toml::Spanned<DeTable<'a>>>,
}

impl<'a> Spans<'a> {
    /// Parses `text`; a text that is not TOML has no positions (every lookup gives line 1).
    pub fn new(text: &'a str) -> Self {
        Spans {
            text,
            doc: DeTable::parse(text).ok(),
        }
    }

    /// The byte ranges of the key and of the value at `path` (for an array element, both are the
    /// element: the `[[table]]` header for an array of tables).
    fn find(&self, path: &[Seg<'_>]) -> Option<(Range<usize>, Range<usize>)> {
        let doc = self.doc.as_ref()?;
        let mut here: Option<&DeValue<'a>> = None;
        let mut found = (doc.span(), doc.span());
        for seg in path {
            match *seg {
                Seg::Key(k) => {
                    let table = match here {
                        None => doc.get_ref(),
                        Some(DeValue::Table(t)) => t,
                        Some(_) => return None,
                    };
                    let (key, value) = table.iter().find(|(key, _)| &**key.get_ref() == k)?;
                    found = (key.span(), value.span());
                    here = Some(value.get_ref());
                }
                Seg::Index(i) => {
                    let Some(DeValue::Array(a)) = here else {
                        return None;
                    };
                    let e = a.get(i)?;
                    found = (e.span(), e.span());
                    here = Some(e.get_ref());
                }
            }
        }
        Some(found)
    }

    /// Whether the document has a key at `path`.
    pub fn has(&self, path: &[Seg<'_>]) -> bool {
        !path.is_empty() && self.find(path).is_some()
    }

    /// Line and column of the key at `path`.
    pub fn key(&self, path: &[Seg<'_>]) -> Option<(usize, usize)> {
        let (k, _) = self.find(path)?;
        Some(line_col(self.text, k.start))
    }

    /// Line and column of the value at `path`.
    pub fn value(&self, path: &[Seg<'_>]) -> Option<(usize, usize)> {
        let (_, v) = self.find(path)?;
        Some(line_col(self.text, v.start))
    }

    /// Byte offset of the key at `path` (to report the first of several problems in reading order).
    pub fn offset(&self, path: &[Seg<'_>]) -> Option<usize> {
        self.find(path).map(|(k, _)| k.start)
    }

    /// The key at `path`, else the nearest enclosing key that exists, else line 1.
    pub fn key_or_parent(&self, path: &[Seg<'_>]) -> (usize, usize) {
        (1..=path.len())
            .rev()
            .find_map(|n| self.key(&path[..n]))
            .unwrap_or((1, 1))
    }

    /// The value at `path`, else the nearest enclosing key that exists, else line 1.
    pub fn value_or_parent(&self, path: &[Seg<'_>]) -> (usize, usize) {
        self.value(path).unwrap_or_else(|| self.key_or_parent(path))
    }
}

const KNOWN_KEYS: &[&str] = &[
    "task",
    "success",
    "policy",
    "source",
    "split",
    "model",
    "costs",
    "monitor",
    "window",
    "min_samples",
    "alpha",
    "psi_floor",
    "refresh_seconds",
    "name",
    "kind",
    "owner",
    "description",
    "intended_use",
    "out_of_scope",
    "select_by",
    "pii",
    "pii_types",
    "require_consent",
    "max_age_days",
    "as_of",
    "near_duplicate_jaccard",
    "near_duplicates",
    "label_conflicts",
    "contamination",
    "on_bad_record",
    "label_issues",
    "poisoning",
    "scan_encoder",
    "shingle_words",
    "minhash_permutations",
    "short_text_words",
    "short_text_containment",
    "contamination_ngram",
    "contamination_ngram_share",
    "contamination_edit_share",
    "min_chars",
    "max_chars",
    "exploitable_graders",
    "allow_unisolated_commands",
    "allow_remote_judges",
    "path",
    "format",
    "role",
    "license",
    "collected",
    "notes",
    "delimiter",
    "fields",
    "id",
    "text",
    "label",
    "prompt",
    "target",
    "messages",
    "date",
    "valid_until",
    "consent",
    "topic",
    "tags",
    "group",
    "test",
    "dev",
    "seed",
    "group_by",
    "fold_dev",
    "method",
    "pooling",
    "params",
    "abstain",
    "cpu_hour_usd",
    "max_usd",
    "max_minutes",
    "gpu_hour_usd",
];

fn toml_error(text: &str, path: &Path, e: &toml::de::Error) -> Error {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let message = e.message().trim().to_string();
    let mut hint = hint_for(&message, KNOWN_KEYS);
    // A rule written as a bare number (`accuracy = 0.9`) is the usual slip in [success].
    if message.starts_with("invalid type")
        && message.ends_with("expected a string")
        && table_at(text, e.span().map_or(0, |s| s.start)) == "success"
    {
        hint = "write the rule as a quoted comparison, e.g. accuracy = \">= 0.90\"".into();
    }
    if hint.is_empty() {
        hint = "check the TOML syntax here: strings in double quotes, one `key = value` per line, each key once per table".into();
    }
    Error::Config {
        path: path.to_path_buf(),
        line,
        col,
        message,
        hint,
    }
}

/// The name of the `[table]` (or `[[table]]`) whose body holds byte `offset`, "" before any header.
fn table_at(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    text[..offset]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
        })
        .unwrap_or("")
}

/// The names serde lists after "expected" in an error message (`expected one of `a`, `b``).
fn expected_names(message: &str) -> Vec<&str> {
    message
        .split_once("expected")
        .map(|(_, rest)| rest.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default()
}

/// A hint for a toml/serde error message: "did you mean" for an unknown field (among the fields serde
/// lists, else `pool`) or an unknown variant, what a key takes for a wrong type or value, what to add
/// for a missing field. Empty when there is nothing useful to say.
pub fn hint_for(message: &str, pool: &[&str]) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        let expected = expected_names(message);
        let candidates: &[&str] = if expected.is_empty() { pool } else { &expected };
        return match closest(field, candidates) {
            Some(best) => format!("did you mean `{best}`?"),
            None if !expected.is_empty() => format!("known keys here: {}", expected.join(", ")),
            None if message.contains("there are no fields") => "this table takes no keys".into(),
            None => String::new(),
        };
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let value = rest.split('`').next().unwrap_or("");
        let expected = expected_names(message);
        return match closest(value, &expected) {
            Some(best) => format!("did you mean `{best}`?"),
            None => format!("allowed values: {}", expected.join(", ")),
        };
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or("");
        return format!("add `{field} = ...` to this table");
    }
    if (message.starts_with("invalid type") || message.starts_with("invalid value"))
        && let Some((_, expected)) = message.rsplit_once(", expected ")
    {
        return format!("this key takes {}", describe_expected(expected));
    }
    if message.starts_with("invalid length") {
        if message.ends_with("fewer elements in array") {
            return "this list has too many values".into();
        }
        if let Some((_, expected)) = message.rsplit_once(", expected ") {
            return format!("this key takes {}", describe_expected(expected));
        }
    }
    String::new()
}

/// Plain words for the type names serde puts in its messages.
fn describe_expected(expected: &str) -> String {
    match expected.trim() {
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number >= 0, e.g. 3".into(),
        "i64" | "i32" => "a whole number, e.g. 3".into(),
        "f64" | "f32" => "a number, e.g. 0.5".into(),
        "a boolean" => "true or false".into(),
        "a string" => "a quoted string".into(),
        "a sequence" => {
            "a list in square brackets, e.g. [1.0, 10.0] or [\"EMAIL\", \"PHONE\"]".into()
        }
        "a tuple of size 2" => "a pair of whole numbers, e.g. [1, 2]".into(),
        other => other.to_string(),
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    (line, col)
}

/// The candidate closest to `word` by edit distance, if close enough to be a plausible typo; else the
/// shortest candidate that starts with `word` (at least three characters), e.g. `distill_temp`.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min()
        .map(|(_, c)| c)
        .or_else(|| {
            (word.chars().count() >= 3)
                .then(|| {
                    candidates
                        .iter()
                        .filter(|c| c.starts_with(word))
                        .min_by_key(|c| c.len())
                        .copied()
                })
                .flatten()
        })
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[task]
name = "t"
kind = "classify"

[[source]]
name = "a"
path = "data/a.jsonl"
"#;

    fn parse(s: &str) -> Result<Config> {
        Config::parse(s, Path::new("hone.toml"))
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.policy.near_duplicate_jaccard, 0.8);
        assert_eq!(c.policy.pii, PiiPolicy::Mask);
        assert!(!c.policy.require_consent);
        assert_eq!(c.sources[0].format(), Some(SourceFormat::Jsonl));
        assert_eq!(c.split.seed, 7);
    }

    #[test]
    fn unknown_key_points_at_line_and_suggests() {
        let text = MINIMAL.replace(
            "[[source]]",
            "[policy]\nnear_duplicate_jacard = 0.7\n\n[[source]]",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("hone.toml:7:"), "{e}");
        assert!(e.contains("did you mean `near_duplicate_jaccard`?"), "{e}");
    }

    #[test]
    fn monitor_thresholds_default_and_a_bad_one_points_at_its_line() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.monitor, MonitorConfig::default());
        assert_eq!((c.monitor.window, c.monitor.min_samples), (500, 100));
        let text = MINIMAL.to_string() + "\n[monitor]\nwindow = 200\nalpha = 1.5\n";
        let lines = text.lines().count();
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with(&format!("hone.toml:{lines}:")), "{e}");
        assert!(e.contains("monitor.alpha"), "{e}");
        let text = MINIMAL.to_string() + "\n[monitor]\nwindow = 200\npsi_floor = 0.2\n";
        let c = parse(&text).unwrap();
        assert_eq!((c.monitor.window, c.monitor.psi_floor), (200, 0.2));
        let text = MINIMAL.to_string() + "\n[monitor]\nwindwo = 200\n";
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("did you mean `window`?"), "{e}");
    }

    #[test]
    fn bad_enum_value_is_a_config_error_with_line() {
        let text = MINIMAL.replace("kind = \"classify\"", "kind = \"clasify\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().starts_with("hone.toml:4:"), "{e}");
    }

    #[test]
    fn require_consent_without_consent_field_names_the_source() {
        let text = MINIMAL.replace(
            "[[source]]",
            "[policy]\nrequire_consent = true\n\n[[source]]",
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("source `a` has no consent field"), "{e}");
        assert!(e.starts_with("hone.toml:10:"), "{e}");
    }

    #[test]
    fn bad_dates_and_rules_are_rejected() {
        let text = MINIMAL.replace(
            "path = \"data/a.jsonl\"",
            "path = \"data/a.jsonl\"\ncollected = \"June 2025\"",
        );
        assert!(parse(&text).unwrap_err().to_string().contains("not a date"));
        let text = MINIMAL.to_string() + "\n[success]\naccuracy = \"at least 0.9\"\n";
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("not a comparison")
        );
        let text = MINIMAL.replace("data/a.jsonl", "data/a.xlsx");
        assert!(
            parse(&text)
                .unwrap_err()
                .to_string()
                .contains("cannot tell the format")
        );
    }

    #[test]
    fn impossible_gates_fail_at_load() {
        let with = |rule: &str| format!("{MINIMAL}\n[success]\n{rule}\n");
        for bad in [
            "accuracy = \">= 1.5\"",
            "ece = \"< 0\"",
            "p95_latency_ms = \"<= -1\"",
        ] {
            let e = parse(&with(bad)).unwrap_err().to_string();
            assert!(e.contains("can never hold"), "{bad}: {e}");
            let col = bad.find('"').unwrap() + 1;
            assert!(
                e.starts_with(&format!("hone.toml:11:{col}: ")),
                "{bad}: {e}"
            );
        }
        for ok in [
            "accuracy = \">= 1\"",
            "billing_pass_rate = \"== 1\"",
            "throughput_per_s = \">= 5000\"",
        ] {
            parse(&with(ok)).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn success_rules_parse_and_hold() {
        let r = SuccessRule::parse(">= 0.90").unwrap();
        assert!(r.holds(0.9) && !r.holds(0.89));
        let r = SuccessRule::parse("<= 5").unwrap();
        assert!(r.holds(5.0) && !r.holds(5.1));
        assert!(SuccessRule::parse("~ 3").is_none());
    }

    #[test]
    fn select_by_names_rouge_l_or_a_grader_and_only_on_generate_tasks() {
        let generate = MINIMAL.replace("kind = \"classify\"", "kind = \"generate\"");
        let with = |base: &str, v: &str| {
            base.replace("[task]\n", &format!("[task]\nselect_by = \"{v}\"\n"))
        };
        assert_eq!(parse(&generate).unwrap().task.select_by(), SelectBy::RougeL);
        let c = parse(&with(&generate, "grader_house_rules_pass_rate")).unwrap();
        assert_eq!(
            c.task.select_by(),
            SelectBy::Grader {
                name: "house_rules".into(),
                mean: false
            }
        );
        let c = parse(&with(&generate, "grader_tone_mean")).unwrap();
        assert_eq!(
            c.task.select_by(),
            SelectBy::Grader {
                name: "tone".into(),
                mean: true
            }
        );
        assert_eq!(
            parse(&with(&generate, "dev_rouge_l"))
                .unwrap()
                .task
                .select_by(),
            SelectBy::RougeL
        );
        // The error points at the value and lists what is accepted.
        let e = parse(&with(&generate, "rouge")).unwrap_err().to_string();
        assert!(
            e.starts_with("hone.toml:3:13: ") && e.contains("grader_NAME_pass_rate"),
            "{e}"
        );
        let e = parse(&with(MINIMAL, "dev_rouge_l"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`select_by` is for generate tasks") && e.contains("macro-F1"),
            "{e}"
        );
    }

    #[test]
    fn generate_is_accepted_and_its_gates_are_text_metrics() {
        let text = MINIMAL.replace("kind = \"classify\"", "kind = \"generate\"");
        parse(&text).unwrap();
        let gated = format!("{text}\n[success]\nrouge_l = \">= 0.3\"\n");
        parse(&gated).unwrap();
        let wrong = format!("{text}\n[success]\naccuracy = \">= 0.9\"\n");
        let e = parse(&wrong).unwrap_err().to_string();
        assert!(
            e.contains("a generate task does not measure") && e.contains("rouge_l"),
            "{e}"
        );
    }

    #[test]
    fn gate_metrics_are_checked_by_name() {
        assert!(check_gate_metric("accuracy").is_ok());
        assert!(check_gate_metric("billing_pass_rate").is_ok());
        assert!(check_gate_metric("refunds_accuracy").is_ok());
        assert!(check_gate_metric("_pass_rate").is_err());
        assert_eq!(
            check_gate_metric("p95_latency").unwrap_err(),
            "did you mean `p95_latency_ms`?"
        );
        let text = MINIMAL.to_string() + "\n[success]\nmacro_f2 = \">= 0.9\"\n";
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.starts_with("hone.toml:11:1: "), "{e}");
        assert!(e.contains("did you mean `macro_f1`?"), "{e}");
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let text = "[task]\nname = \"t\"\n\n[[model]]\nname = \"a\"\n\n[[model]]\nname = \"b\"\nparams = { seed = 1 }\n";
        let s = Spans::new(text);
        let m1 = |k| [Seg::Key("model"), Seg::Index(1), Seg::Key(k)];
        assert_eq!(s.key(&m1("name")), Some((8, 1)));
        assert_eq!(s.value(&m1("name")), Some((8, 8)));
        let seed = [
            Seg::Key("model"),
            Seg::Index(1),
            Seg::Key("params"),
            Seg::Key("seed"),
        ];
        assert_eq!(s.value(&seed), Some((9, 19)));
        // A missing key falls back to its nearest parent: here the second [[model]] header.
        assert_eq!(s.value_or_parent(&m1("kind")), (7, 1));
        assert!(!s.has(&m1("kind")));
    }

    #[test]
    fn hints_for_serde_messages() {
        assert_eq!(
            hint_for("unknown variant `mask_`, expected `mask` or `drop`", &[]),
            "did you mean `mask`?"
        );
        assert_eq!(
            hint_for("invalid type: string \"x\", expected usize", &[]),
            "this key takes a whole number >= 0, e.g. 3"
        );
        assert_eq!(
            hint_for("missing field `name`", &[]),
            "add `name = ...` to this table"
        );
        assert_eq!(
            closest("distill_temp", &["distill_temperature", "distill_epochs"]),
            Some("distill_temperature")
        );
    }

    #[test]
    fn paths_must_exist_under_the_root() {
        let dir = std::env::temp_dir().join(format!("hone-core-paths-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let c = parse(MINIMAL).unwrap();
        let e = c
            .check_paths(MINIMAL, Path::new("hone.toml"), &dir)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("hone.toml:8:8: "), "{e}");
        std::fs::write(dir.join("data/a.jsonl"), "").unwrap();
        c.check_paths(MINIMAL, Path::new("hone.toml"), &dir)
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
    }
}
