//! The record every step passes along (DESIGN §3) and the lineage entry every step writes when it drops,
//! changes, quarantines or flags a record.

use serde::{Deserialize, Serialize};

/// One example. For `classify` tasks `text` is the input and `label` the class; for `generate` tasks
/// `text` holds the prompt and `label` the reference target (if any).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Record {
    /// Stable id: the source's id column verbatim, else `<source>-<line>`.
    pub id: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Name of the `[[source]]` the record came from.
    pub source: String,
    /// 1-based line (JSONL, CSV physical line of the row start) or row number (Parquet) in the source file.
    pub line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Near-duplicate cluster id: the id of the cluster's first record (set by the near-duplicate pass).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Free metadata: the source's other columns, as a JSON object string ("{}" when empty).
    #[serde(default = "empty_meta", skip_serializing_if = "is_empty_meta")]
    pub meta: String,
    /// A chat record's turns before its last user message (`text`) and the answer to it (`label`):
    /// a system message, earlier questions and answers. Empty for prompt/target records.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<Turn>,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: String,
    pub content: String,
}

/// A conversation cut the one way every reader cuts it: the turns before the last user message, that
/// message (the prompt) and the assistant's answer to it when the conversation ends with one (the
/// target). Roles are `system` (first only), `user` and `assistant`; the answer must follow a user
/// message. The error says which message is wrong and why.
pub fn split_conversation(
    mut turns: Vec<Turn>,
) -> std::result::Result<(Vec<Turn>, String, Option<String>), String> {
    for (i, t) in turns.iter().enumerate() {
        match t.role.as_str() {
            "user" | "assistant" => {}
            "system" if i == 0 => {}
            "system" => {
                return Err(format!(
                    "message {}: a system message must come first",
                    i + 1
                ));
            }
            other => {
                return Err(format!(
                    "message {}: role {other:?} is not system, user or assistant",
                    i + 1
                ));
            }
        }
    }
    let target = match turns.last() {
        Some(t) if t.role == "assistant" => turns.pop().map(|t| t.content),
        Some(_) => None,
        None => return Err("the conversation has no messages".into()),
    };
    match turns.pop() {
        Some(t) if t.role == "user" => Ok((turns, t.content, target)),
        _ => Err(format!(
            "message {}: the last answer must follow a user message",
            turns.len() + 2
        )),
    }
}

impl Record {
    /// A generation example's prompt and target as one text (the prompt alone when there is no
    /// target): what duplicates and leaks are judged on for `generate` tasks.
    pub fn prompt_and_target(&self) -> String {
        let mut s = String::new();
        for t in &self.turns {
            s.push_str(&t.content);
            s.push('\n');
        }
        s.push_str(&self.text);
        if let Some(t) = &self.label {
            s.push('\n');
            s.push_str(t);
        }
        s
    }
}

fn empty_meta() -> String {
    "{}".to_string()
}
fn is_empty_meta(m: &String) -> bool {
    m.is_empty() || m == "{}"
}

/// What a step did to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Removed from the dataset by a rule.
    Drop,
    /// Kept, with its text or fields changed.
    Change,
    /// Could not be read as a record; kept aside with the reason.
    Quarantine,
    /// Kept, but marked for human review.
    Flag,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Drop => "drop",
            Action::Change => "change",
            Action::Quarantine => "quarantine",
            Action::Flag => "flag",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "drop" => Action::Drop,
            "change" => Action::Change,
            "quarantine" => Action::Quarantine,
            "flag" => Action::Flag,
            _ => return None,
        })
    }
}

/// One line of lineage: which pass did what to which record, by which rule, and why.
/// Text in `reason` and `diff` is PII-masked; the text before a change is kept only as `before_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageEntry {
    pub record_id: String,
    pub source: String,
    pub pass: String,
    pub action: Action,
    pub rule: String,
    pub reason: String,
    /// The other record involved (e.g. `duplicate_of`, the cluster representative, the majority label's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_id: Option<String>,
    /// blake3 of the text before the change (for `change`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_hash: Option<String>,
    /// A masked diff of the change (for `change`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

impl LineageEntry {
    pub fn new(
        record: &Record,
        pass: &str,
        action: Action,
        rule: &str,
        reason: impl Into<String>,
    ) -> Self {
        LineageEntry {
            record_id: record.id.clone(),
            source: record.source.clone(),
            pass: pass.to_string(),
            action,
            rule: rule.to_string(),
            reason: reason.into(),
            related_id: None,
            before_hash: None,
            diff: None,
        }
    }
    pub fn related(mut self, id: impl Into<String>) -> Self {
        self.related_id = Some(id.into());
        self
    }
}

/// A row that could not be read as a record, with where and why. `excerpt` is PII-masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    /// `<source>-<line>` (the row's id is not trusted when the row is malformed).
    pub id: String,
    pub source: String,
    pub file: String,
    pub line: u64,
    pub field: String,
    pub reason: String,
    pub excerpt: String,
}

/// One leaked (test, train) pair found by the leak check: the rule that fired and that rule's own
/// similarity. Defined here so that an error can carry every pair (`hone split --json` lists them all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakPair {
    pub test_id: String,
    pub train_id: String,
    /// The rule that fired: `shared_id`, `exact`, `numbers_differ`, `typo`, `words_differ`, `contained`
    /// or `ngram_overlap` (splits made before rules version 2 also hold `near_duplicate`).
    pub kind: String,
    /// That rule's own similarity; 1.0 for `shared_id` and `exact`.
    pub similarity: f64,
}
