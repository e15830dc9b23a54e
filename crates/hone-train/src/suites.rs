//! Evaluation suites: `suites/*.jsonl`, one case per line (`id`, `text`, `label`, `tags`), loaded with the
//! same normalising and PII masking as training data so a private-data trap never reaches any output.

use std::path::Path;

use hone_core::Result;
use serde::{Deserialize, Serialize};

use crate::input::{TextPrep, lenient_id, read_jsonl};

/// One line of a suite file.
#[derive(Deserialize)]
struct SuiteLine {
    #[serde(default, deserialize_with = "lenient_id")]
    id: Option<String>,
    text: String,
    /// The expected answer.
    label: String,
    #[serde(default)]
    tags: Vec<String>,
}

/// One case of a suite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteCase {
    pub suite: String,
    pub id: String,
    /// Normalised and PII-masked.
    pub text: String,
    pub label: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The case's line in `suites/<suite>.jsonl` (1-based).
    #[serde(default)]
    pub line: u64,
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

/// Load every `*.jsonl` under `dir` (sorted by file name). A missing directory means no suites.
pub fn load(dir: &Path, prep: &TextPrep) -> Result<Vec<SuiteCase>> {
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
        let lines: Vec<(u64, SuiteLine)> = read_jsonl(
            &f,
            "each suite line is {\"text\": ..., \"label\": ..., \"tags\": [...]}",
        )?;
        for (n, line) in lines {
            out.push(SuiteCase {
                id: line.id.unwrap_or_else(|| format!("{suite}-{n}")),
                suite: suite.clone(),
                text: prep.apply(&line.text),
                label: line.label,
                tags: line.tags,
                line: n,
            });
        }
    }
    Ok(out)
}
