//! The `hone.toml` schema (DESIGN §2), its defaults, and validation with errors that point at the key and
//! line and suggest the closest known key. Key names are a contract: add keys freely, rename none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    #[default]
    Drop,
    /// Keep all; every record still carries its cluster id.
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

/// `[policy]`: what curation does. Every field has a documented default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    pub pii: PiiPolicy,
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
    /// Texts with fewer characters (after normalising) are dropped as too short (default 2).
    pub min_chars: usize,
    /// Texts with more characters are dropped as too long (default 10000).
    pub max_chars: usize,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            pii: PiiPolicy::Mask,
            require_consent: false,
            max_age_days: None,
            as_of: None,
            near_duplicate_jaccard: 0.8,
            near_duplicates: NearDuplicatePolicy::Drop,
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
            min_chars: 2,
            max_chars: 10_000,
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
}

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            test: 0.2,
            dev: 0.1,
            seed: 7,
            group_by: None,
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

/// `[costs]`: prices used to turn measured time into money.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CostsConfig {
    pub cpu_hour_usd: f64,
    pub gpu_hour_usd: f64,
}

impl Default for CostsConfig {
    fn default() -> Self {
        CostsConfig {
            cpu_hour_usd: 0.05,
            gpu_hour_usd: 2.50,
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
        let err = |table: &str, index: Option<usize>, key: &str, message: String, hint: &str| {
            let (line, col) = locate_key(text, table, index, key);
            Error::Config {
                path: path.to_path_buf(),
                line,
                col,
                message,
                hint: hint.to_string(),
            }
        };
        if self.task.name.trim().is_empty() {
            return Err(err(
                "task",
                None,
                "name",
                "`task.name` is empty".into(),
                "give the task a short name",
            ));
        }
        for (metric, rule) in &self.success {
            if SuccessRule::parse(rule).is_none() {
                return Err(err(
                    "success",
                    None,
                    metric,
                    format!("success rule `{metric} = \"{rule}\"` is not a comparison"),
                    "write it as an operator and a number, e.g. \">= 0.90\" or \"<= 5\"",
                ));
            }
        }
        let p = &self.policy;
        if !(0.0..=1.0).contains(&p.near_duplicate_jaccard) || p.near_duplicate_jaccard == 0.0 {
            return Err(err(
                "policy",
                None,
                "near_duplicate_jaccard",
                format!(
                    "`near_duplicate_jaccard = {}` is outside (0, 1]",
                    p.near_duplicate_jaccard
                ),
                "0.8 is a good default",
            ));
        }
        if !(0.0..=1.0).contains(&p.short_text_containment) || p.short_text_containment == 0.0 {
            return Err(err(
                "policy",
                None,
                "short_text_containment",
                format!(
                    "`short_text_containment = {}` is outside (0, 1]",
                    p.short_text_containment
                ),
                "0.9 is the default",
            ));
        }
        if p.shingle_words == 0 || p.minhash_permutations < 8 || p.minhash_permutations > 1024 {
            return Err(err(
                "policy",
                None,
                if p.shingle_words == 0 {
                    "shingle_words"
                } else {
                    "minhash_permutations"
                },
                "near-duplicate settings out of range".into(),
                "shingle_words >= 1 and 8 <= minhash_permutations <= 1024",
            ));
        }
        if p.min_chars > p.max_chars {
            return Err(err(
                "policy",
                None,
                "min_chars",
                format!(
                    "`min_chars = {}` is larger than `max_chars = {}`",
                    p.min_chars, p.max_chars
                ),
                "",
            ));
        }
        if let Some(as_of) = &p.as_of
            && parse_date(as_of).is_none()
        {
            return Err(err(
                "policy",
                None,
                "as_of",
                format!("`as_of = \"{as_of}\"` is not a date"),
                "write it as YYYY-MM-DD",
            ));
        }
        if !(0.0..1.0).contains(&self.split.test)
            || !(0.0..1.0).contains(&self.split.dev)
            || self.split.test + self.split.dev >= 1.0
        {
            return Err(err(
                "split",
                None,
                "test",
                "split fractions must be in [0, 1) and leave room for training".into(),
                "e.g. test = 0.2, dev = 0.1",
            ));
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
            if !names.insert(s.name.as_str()) {
                return Err(err(
                    "source",
                    Some(i),
                    "name",
                    format!("source name `{}` is used twice", s.name),
                    "give each [[source]] its own name",
                ));
            }
            if s.name.trim().is_empty() || s.name.contains(char::is_whitespace) {
                return Err(err(
                    "source",
                    Some(i),
                    "name",
                    format!("source name `{}` is empty or has spaces", s.name),
                    "use a short slug such as helpdesk-2025",
                ));
            }
            if s.format().is_none() {
                return Err(err(
                    "source",
                    Some(i),
                    "path",
                    format!("cannot tell the format of `{}` from its extension", s.path),
                    "name it .jsonl, .csv, .tsv or .parquet, or set format = \"jsonl\" | \"csv\" | \"parquet\"",
                ));
            }
            if let Some(c) = &s.collected
                && parse_date(c).is_none()
            {
                return Err(err(
                    "source",
                    Some(i),
                    "collected",
                    format!("`collected = \"{c}\"` is not a date"),
                    "write it as YYYY-MM-DD",
                ));
            }
            if let Some(d) = &s.delimiter
                && delimiter_byte(d).is_none()
            {
                return Err(err(
                    "source",
                    Some(i),
                    "delimiter",
                    format!("delimiter `{d}` is not a single ASCII character"),
                    "use \",\", \";\", \"|\" or \"\\t\"",
                ));
            }
            if p.require_consent && s.role == SourceRole::Train && s.fields.consent.is_none() {
                return Err(err(
                    "source",
                    Some(i),
                    "name",
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
                return Err(err(
                    "model",
                    Some(i),
                    "name",
                    format!("model name `{}` is used twice", m.name),
                    "give each [[model]] its own name",
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

const KNOWN_KEYS: &[&str] = &[
    "task",
    "success",
    "policy",
    "source",
    "split",
    "model",
    "costs",
    "name",
    "kind",
    "owner",
    "description",
    "pii",
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
    "min_chars",
    "max_chars",
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
    "method",
    "pooling",
    "params",
    "abstain",
    "cpu_hour_usd",
    "gpu_hour_usd",
];

fn toml_error(text: &str, path: &Path, e: &toml::de::Error) -> Error {
    let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
    let message = e.message().trim().to_string();
    let mut hint = String::new();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or("");
        // Prefer the keys serde says it expected; fall back to every key hone knows.
        let expected: Vec<&str> = message
            .split("expected")
            .nth(1)
            .map(|s| s.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let pool: &[&str] = if expected.is_empty() {
            KNOWN_KEYS
        } else {
            &expected
        };
        if let Some(best) = closest(field, pool) {
            hint = format!("did you mean `{best}`?");
        } else if !expected.is_empty() {
            hint = format!("known keys here: {}", expected.join(", "));
        }
    } else if message.starts_with("unknown variant") {
        hint = "see the comments in the hone.toml written by `hone init` for the allowed values"
            .into();
    }
    Error::Config {
        path: path.to_path_buf(),
        line,
        col,
        message,
        hint,
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

/// Best-effort location of `key` inside `[table]` (or the `index`-th `[[table]]`) for validation errors.
fn locate_key(text: &str, table: &str, index: Option<usize>, key: &str) -> (usize, usize) {
    let mut in_table = false;
    let mut seen = 0usize;
    let mut table_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('[') {
            let name = line
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            in_table = false;
            if name == table {
                if line.starts_with("[[") {
                    let this = seen;
                    seen += 1;
                    in_table = index.is_none_or(|want| want == this);
                } else {
                    in_table = index.is_none();
                }
                if in_table {
                    table_line = Some(i + 1);
                }
            }
            continue;
        }
        if in_table {
            let k = line
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            if k == key {
                return (i + 1, raw.len() - raw.trim_start().len() + 1);
            }
        }
    }
    (table_line.unwrap_or(1), 1)
}

/// The candidate closest to `word` by edit distance, if close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min()
        .map(|(_, c)| c)
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
    fn success_rules_parse_and_hold() {
        let r = SuccessRule::parse(">= 0.90").unwrap();
        assert!(r.holds(0.9) && !r.holds(0.89));
        let r = SuccessRule::parse("<= 5").unwrap();
        assert!(r.holds(5.0) && !r.holds(5.1));
        assert!(SuccessRule::parse("~ 3").is_none());
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncé d", 7), (2, 4));
    }
}
