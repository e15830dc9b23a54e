//! Side inputs read outside the curation pipeline (suites, `predict` inputs, review decision files,
//! distillation texts): one JSONL reader that types every line and names file, line and field on error,
//! and one text preparation (normalise + PII mask) so that every text a model sees went through the same
//! steps as its training data (train/serve parity).

use std::path::Path;

use hone_core::{Error, Result};
use hone_data::passes::Normalise;
use hone_data::pii::PiiDetector;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// Normalising and PII masking exactly as the curation passes do them for training text.
pub struct TextPrep {
    detector: PiiDetector,
    norm: Normalise,
}

impl Default for TextPrep {
    fn default() -> Self {
        TextPrep::new()
    }
}

impl TextPrep {
    /// The preparation of a version made under `policy`: the same `pii_types` masked as in its data.
    pub fn for_policy(policy: &hone_core::config::PolicyConfig) -> TextPrep {
        let all = TextPrep::new();
        TextPrep {
            detector: all.detector.for_types(&policy.pii_types),
            ..all
        }
    }

    /// `text` with this preparation's PII types masked, not normalised (generated answers).
    pub fn mask(&self, text: &str) -> String {
        self.detector.mask(text).text
    }

    /// The same preparation keeping line breaks, as curation does for generation prompts.
    pub fn keeping_newlines(mut self) -> TextPrep {
        self.norm.keep_newlines = true;
        self
    }

    pub fn new() -> TextPrep {
        TextPrep {
            detector: PiiDetector::new(),
            norm: Normalise {
                mask: std::sync::Arc::new(|s: &str| s.to_string()),
                keep_newlines: false,
                normalise_target: false,
            },
        }
    }

    /// The text a model is given for `raw`.
    pub fn apply(&self, raw: &str) -> String {
        self.detector.mask(&self.norm.apply(raw).0).text
    }

    pub fn detector(&self) -> &PiiDetector {
        &self.detector
    }
}

/// Text a person typed (a `--reason`, a review note, the command line that holds them) as it may be
/// stored: PII masked, control characters escaped so that it cannot forge lines in a log.
pub fn free_text(raw: &str) -> String {
    // One detector for the process: compiling its regexes per note would dominate a decisions file.
    static DETECTOR: std::sync::OnceLock<PiiDetector> = std::sync::OnceLock::new();
    escape_controls(&DETECTOR.get_or_init(PiiDetector::new).mask(raw).text)
}

/// `s` with control characters (newlines, escapes) written as `\n`, `\u{1b}`…, so that it stays on
/// one line of a log.
pub fn escape_controls(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Parse every non-blank line of `text` (read from `file`) as a `T`. A line that is not JSON, or not a
/// `T`, is an [`Error::BadRecord`] naming the file, the 1-based line, the field serde complained about
/// (or `(line)`), and `hint` (the expected shape of a line).
pub fn parse_jsonl<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    hint: &str,
) -> Result<Vec<(u64, T)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let n = i as u64 + 1;
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| Error::BadRecord {
                file: file.to_path_buf(),
                line: n,
                field: "(line)".into(),
                reason: format!("invalid JSON: {e}"),
                hint: hint.into(),
            })?;
        let item = T::deserialize(value).map_err(|e| {
            let msg = e.to_string();
            let field = msg
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
                .unwrap_or("(line)")
                .to_string();
            Error::BadRecord {
                file: file.to_path_buf(),
                line: n,
                field,
                reason: msg,
                hint: hint.into(),
            }
        })?;
        out.push((n, item));
    }
    Ok(out)
}

/// Read `path` and [`parse_jsonl`] it.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, hint: &str) -> Result<Vec<(u64, T)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse_jsonl(path, &text, hint)
}

/// An optional id that may be written as a string or a number.
pub fn lenient_id<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        S(String),
        N(serde_json::Number),
    }
    Ok(Option::<Id>::deserialize(d)?.map(|id| match id {
        Id::S(s) => s,
        Id::N(n) => n.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Line {
        #[serde(default, deserialize_with = "lenient_id")]
        id: Option<String>,
        text: String,
    }

    #[test]
    fn lines_are_typed_and_errors_name_line_and_field() {
        let f = Path::new("in.jsonl");
        let ok: Vec<(u64, Line)> = parse_jsonl(
            f,
            "{\"id\": 7, \"text\": \"a\"}\n\n{\"text\": \"b\"}\n",
            "h",
        )
        .unwrap();
        assert_eq!(ok[0].0, 1);
        assert_eq!(ok[0].1.id.as_deref(), Some("7"));
        assert_eq!((ok[1].0, ok[1].1.id.is_none()), (3, true));
        let e = parse_jsonl::<Line>(
            f,
            "{\"text\": \"a\"}\n{\"id\": \"x\"}\n",
            "each line is {text}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("in.jsonl:2: field `text`: missing field `text`"),
            "{e}"
        );
        assert!(e.contains("each line is {text}"), "{e}");
        let e = parse_jsonl::<Line>(f, "{oops\n", "h")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("in.jsonl:1: field `(line)`: invalid JSON"),
            "{e}"
        );
    }

    #[test]
    fn free_text_is_masked_and_cannot_forge_lines() {
        let t = free_text("moved test rows, ask jane.doe@example.com\nforged line");
        assert!(!t.contains("jane.doe@example.com"), "{t}");
        assert!(!t.contains('\n') && t.contains("\\nforged"), "{t}");
    }

    #[test]
    fn text_prep_normalises_and_masks() {
        let p = TextPrep::new();
        let out = p.apply("  Mail  me at jane.doe@example.com ");
        assert!(!out.contains("jane.doe@example.com"), "{out}");
        assert!(!out.starts_with(' '), "{out}");
    }
}
