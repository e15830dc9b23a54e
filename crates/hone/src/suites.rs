//! Evaluation suites: `suites/*.jsonl`, one case per line (`id`, `text`, `label`, `tags`), loaded with the
//! same normalising and PII masking as training data so a private-data trap never reaches any output.

use std::path::Path;

use hone_core::{Error, Result};
use hone_data::pii::PiiDetector;
use serde::{Deserialize, Serialize};

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
}

/// Load every `*.jsonl` under `dir` (sorted by file name). A missing directory means no suites.
pub fn load(dir: &Path, detector: &PiiDetector) -> Result<Vec<SuiteCase>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let norm = hone_data::passes::Normalise {
        mask: std::sync::Arc::new(|s: &str| s.to_string()),
        keep_newlines: false,
    };
    let mut out = Vec::new();
    for f in files {
        let suite = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&f).map_err(|e| Error::io(&f, e))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |field: &str, reason: String| Error::BadRecord {
                file: f.clone(),
                line: i as u64 + 1,
                field: field.into(),
                reason,
                hint: "each suite line is {\"text\": ..., \"label\": ..., \"tags\": [...]}".into(),
            };
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| bad("(line)", format!("invalid JSON: {e}")))?;
            let text = v
                .get("text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| bad("text", "missing text".into()))?;
            let label = v
                .get("label")
                .and_then(|t| t.as_str())
                .ok_or_else(|| bad("label", "missing label (the expected answer)".into()))?;
            let tags = v
                .get("tags")
                .and_then(|t| t.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let id = v
                .get("id")
                .and_then(|t| t.as_str())
                .map(String::from)
                .unwrap_or_else(|| format!("{suite}-{}", i + 1));
            let (normalised, _) = norm.apply(text);
            out.push(SuiteCase {
                suite: suite.clone(),
                id,
                text: detector.mask(&normalised).text,
                label: label.to_string(),
                tags,
            });
        }
    }
    Ok(out)
}
