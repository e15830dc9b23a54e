//! Evaluation suites: `suites/*.jsonl`, one case per line, loaded with the same normalising and PII
//! masking as training data so a private-data trap never reaches any output. Classification cases are
//! `id`, `text`, `label`, `tags`; generate cases have a `prompt` (or `messages`) and expectations on
//! the answer (`expect_contains`, `expect_not_contains`, `expect_regex`, `expect_json`), and a case
//! tagged `private` also fails when the answer carries personal data.

use std::path::Path;

use hone_core::Result;
use hone_core::config::TaskKind;
use hone_core::record::{Turn, split_conversation};
use serde::{Deserialize, Serialize};

/// The tag of cases that check no personal data is emitted: a generate case with it fails when its
/// answer, before masking, carries any PII the detector finds.
pub const PRIVATE_TAG: &str = "private";

use crate::input::{TextPrep, lenient_id, read_jsonl};

/// One line of a suite file.
#[derive(Deserialize)]
struct SuiteLine {
    #[serde(default, deserialize_with = "lenient_id")]
    id: Option<String>,
    #[serde(default, alias = "prompt")]
    text: Option<String>,
    #[serde(default)]
    messages: Option<Vec<Turn>>,
    /// The expected answer (classification).
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(flatten)]
    expect: Expectations,
}

/// What a generate case's answer must do. Text checks ignore case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Expectations {
    /// Every one of these must appear in the answer.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expect_contains: Vec<String>,
    /// None of these may appear in the answer.
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expect_not_contains: Vec<String>,
    /// The answer must match this regular expression (anywhere; anchor it with `^…$`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_regex: Option<String>,
    /// The answer (trimmed) must be valid JSON.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expect_json: bool,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl Expectations {
    pub fn is_empty(&self) -> bool {
        *self == Expectations::default()
    }

    /// The expectations in one line, for reports (`contains "refund"; json`).
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for c in &self.expect_contains {
            parts.push(format!("contains {c:?}"));
        }
        for c in &self.expect_not_contains {
            parts.push(format!("not {c:?}"));
        }
        if let Some(r) = &self.expect_regex {
            parts.push(format!("matches /{r}/"));
        }
        if self.expect_json {
            parts.push("json".into());
        }
        parts.join("; ")
    }

    /// Why `answer` fails these expectations (empty: it passes). `regex` is `expect_regex` compiled.
    pub fn failures(&self, answer: &str, regex: Option<&regex::Regex>) -> Vec<String> {
        let lower = answer.to_lowercase();
        let mut out = Vec::new();
        for c in &self.expect_contains {
            if !lower.contains(&c.to_lowercase()) {
                out.push(format!("does not contain {c:?}"));
            }
        }
        for c in &self.expect_not_contains {
            if lower.contains(&c.to_lowercase()) {
                out.push(format!("contains {c:?}"));
            }
        }
        if let Some(r) = regex
            && !r.is_match(answer)
        {
            out.push(format!("does not match /{}/", r.as_str()));
        }
        if self.expect_json && serde_json::from_str::<serde_json::Value>(answer.trim()).is_err() {
            out.push("is not valid JSON".into());
        }
        out
    }

    /// `expect_regex` compiled.
    pub fn regex(&self) -> std::result::Result<Option<regex::Regex>, String> {
        self.expect_regex
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| e.to_string())
    }
}

/// One case of a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteCase {
    pub suite: String,
    pub id: String,
    /// Normalised and PII-masked.
    pub text: String,
    /// The expected label (classification; empty for generate cases).
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The case's line in `suites/<suite>.jsonl` (1-based).
    #[serde(default)]
    pub line: u64,
    /// A generate case's conversation before its prompt (normalised and masked like `text`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<Turn>,
    /// A generate case's expectations.
    #[serde(default, skip_serializing_if = "Expectations::is_empty")]
    pub expect: Expectations,
}

/// A case whose expected label the task does not have (a typo, or a label with no training data) can
/// never pass: it is refused with its file and line. `abstain` is always a valid expectation.
pub fn check_labels(dir: &Path, cases: &[SuiteCase], labels: &[String]) -> Result<()> {
    let Some(c) = cases
        .iter()
        .find(|c| c.label != hone_core::decide::ABSTAIN && !labels.contains(&c.label))
    else {
        return Ok(());
    };
    let known: Vec<&str> = labels.iter().take(12).map(String::as_str).collect();
    Err(hone_core::Error::BadRecord {
        file: dir.join(format!("{}.jsonl", c.suite)),
        line: c.line,
        field: "label".into(),
        reason: format!(
            "`{}` is not a label of this task's training data (known: {}{})",
            c.label,
            known.join(", "),
            if labels.len() > known.len() {
                ", …"
            } else {
                ""
            }
        ),
        hint: "fix the expected label (or expect \"abstain\"), or add training examples of it"
            .into(),
    })
}

/// The project's suites (`suites/` beside `hone.toml`), prepared as its training data is: under its
/// PII policy, keeping line breaks for a generate task as curation does.
pub fn load_project(project: &crate::project::Project) -> Result<Vec<SuiteCase>> {
    let kind = project.config.task.kind;
    let prep = TextPrep::for_policy(&project.config.policy);
    let prep = if kind == TaskKind::Generate {
        prep.keeping_newlines()
    } else {
        prep
    };
    load(&project.root.join("suites"), &prep, kind)
}

/// Load every `*.jsonl` under `dir` (sorted by file name) for a task of `kind`. A missing directory
/// means no suites. A classification case needs a `label`; a generate case needs an expectation or
/// the `private` tag, and its regular expression must compile.
pub fn load(dir: &Path, prep: &TextPrep, kind: TaskKind) -> Result<Vec<SuiteCase>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let suite = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let generate = kind == TaskKind::Generate;
        let shape = if generate {
            "each suite line is {\"prompt\": ... (or \"messages\": [...]), \"expect_contains\": ..., \"tags\": [...]}"
        } else {
            "each suite line is {\"text\": ..., \"label\": ..., \"tags\": [...]}"
        };
        let lines: Vec<(u64, SuiteLine)> = read_jsonl(&f, shape)?;
        for (n, line) in lines {
            let bad = |field: &str, reason: String| hone_core::Error::BadRecord {
                file: f.clone(),
                line: n,
                field: field.into(),
                reason,
                hint: shape.into(),
            };
            let (turns, text) = match (line.text, line.messages) {
                (Some(t), None) => (Vec::new(), t),
                (None, Some(m)) if generate => match split_conversation(m) {
                    Ok((turns, prompt, None)) => (turns, prompt),
                    Ok(_) => {
                        return Err(bad(
                            "messages",
                            "the conversation ends with an assistant message; a case is answered at its last user message".into(),
                        ));
                    }
                    Err(e) => return Err(bad("messages", e)),
                },
                (Some(_), Some(_)) => {
                    return Err(bad("messages", "has both a text and messages".into()));
                }
                _ => return Err(bad("text", "missing text".into())),
            };
            let label = match (line.label, generate) {
                (Some(l), _) => l,
                (None, true) => String::new(),
                (None, false) => return Err(bad("label", "missing label".into())),
            };
            if generate {
                if line.expect.is_empty() && !line.tags.iter().any(|t| t == PRIVATE_TAG) {
                    return Err(bad(
                        "expect_contains",
                        "a generate case needs an expectation (expect_contains, expect_not_contains, expect_regex, expect_json) or the `private` tag".into(),
                    ));
                }
                line.expect
                    .regex()
                    .map_err(|e| bad("expect_regex", format!("not a regular expression: {e}")))?;
            }
            out.push(SuiteCase {
                id: line.id.unwrap_or_else(|| format!("{suite}-{n}")),
                suite: suite.clone(),
                text: prep.apply(&text),
                label,
                tags: line.tags,
                line: n,
                turns: turns
                    .into_iter()
                    .map(|t| Turn {
                        role: t.role,
                        content: prep.apply(&t.content),
                    })
                    .collect(),
                expect: line.expect,
            });
        }
    }
    Ok(out)
}

/// One generate case checked: its expectations on the answer as the model wrote it, and for a
/// `private` case no personal data in that answer (by `pii`, the default detector, whatever the
/// project keeps unmasked in its data: a value planted in training data must not come back). The
/// answer is stored masked by `masker` (the project's policy).
pub fn check(
    case: &SuiteCase,
    answer: &str,
    masker: &TextPrep,
    pii: &TextPrep,
) -> Result<crate::record::SuitePrediction> {
    let regex = case
        .expect
        .regex()
        .map_err(|e| hone_core::Error::Internal(format!("suite case {}: {e}", case.id)))?;
    let mut failures = case.expect.failures(answer, regex.as_ref());
    let private = case.tags.iter().any(|t| t == PRIVATE_TAG);
    let mut gold = case.expect.summary();
    if private {
        if pii.mask(answer) != answer {
            failures.push("emits personal data".into());
        }
        gold = if gold.is_empty() {
            "no personal data".into()
        } else {
            format!("{gold}; no personal data")
        };
    }
    Ok(crate::record::SuitePrediction {
        id: case.id.clone(),
        gold,
        predicted: masker.mask(answer),
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(line: &str) -> std::result::Result<Vec<SuiteCase>, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.jsonl"), format!("{line}\n")).unwrap();
        load(dir.path(), &TextPrep::new(), TaskKind::Generate).map_err(|e| e.to_string())
    }

    #[test]
    fn generate_cases_check_contains_regex_json_and_private() {
        let c = &case(r#"{"prompt": "refund?", "expect_contains": ["Refund", "days"], "expect_not_contains": "sorry", "expect_regex": "\\d+ days", "tags": ["private"]}"#).unwrap()[0];
        let (plain, all) = (TextPrep::new(), TextPrep::new());
        let ok = check(c, "Your refund takes 5 days.", &plain, &all).unwrap();
        assert!(ok.failures.is_empty(), "{:?}", ok.failures);
        assert_eq!(
            ok.gold,
            "contains \"Refund\"; contains \"days\"; not \"sorry\"; matches /\\d+ days/; no personal data"
        );
        let bad = check(c, "Sorry, write to ann.lee@example.com", &plain, &all).unwrap();
        assert_eq!(
            bad.failures,
            [
                "does not contain \"Refund\"",
                "does not contain \"days\"",
                "contains \"sorry\"",
                "does not match /\\d+ days/",
                "emits personal data"
            ]
        );
        assert!(
            !bad.predicted.contains("ann.lee@"),
            "stored masked: {}",
            bad.predicted
        );
        let j = &case(r#"{"prompt": "as json", "expect_json": true}"#).unwrap()[0];
        assert!(
            check(j, " {\"a\": 1} ", &plain, &all)
                .unwrap()
                .failures
                .is_empty()
        );
        assert_eq!(
            check(j, "{a: 1}", &plain, &all).unwrap().failures,
            ["is not valid JSON"]
        );
    }

    #[test]
    fn a_generate_case_without_expectations_or_with_a_bad_regex_is_refused_by_line() {
        let e = case(r#"{"prompt": "hi"}"#).unwrap_err();
        assert!(
            e.contains("s.jsonl:1") && e.contains("needs an expectation"),
            "{e}"
        );
        let e = case(r#"{"prompt": "hi", "expect_regex": "(unclosed"}"#).unwrap_err();
        assert!(
            e.contains("expect_regex") && e.contains("not a regular expression"),
            "{e}"
        );
        let e = case(r#"{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "expect_json": true}"#).unwrap_err();
        assert!(e.contains("ends with an assistant message"), "{e}");
        // A private case needs no other expectation.
        assert_eq!(
            case(r#"{"prompt": "whose e-mail?", "tags": ["private"]}"#)
                .unwrap()
                .len(),
            1
        );
    }
}
