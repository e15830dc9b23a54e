//! `hone predict`: batch predictions from a run's model with the same normalising and PII masking the
//! training data went through (train/serve parity), one JSON line per input, in input order.

use std::io::{BufRead, Write};

use hone_core::{Error, Result};
use hone_data::passes::Normalise;
use hone_data::pii::PiiDetector;
use serde_json::json;

use crate::run_stage::Trained;

/// One input to predict.
pub struct Input {
    pub id: String,
    pub text: String,
}

/// Read inputs: JSONL (`text`, optional `id`), CSV/TSV with a `text` column, or plain lines. `name` is the
/// file name (for the format and for messages); `-` is stdin, sniffed (JSONL when a line starts with `{`).
pub fn read_inputs(name: &str, reader: impl BufRead) -> Result<Vec<Input>> {
    let lines: Vec<String> = reader
        .lines()
        .collect::<std::io::Result<_>>()
        .map_err(|e| Error::io(name, e))?;
    let first = lines
        .iter()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim_start().to_string())
        .unwrap_or_default();
    let is_csv = name.ends_with(".csv") || name.ends_with(".tsv");
    let is_jsonl = name.ends_with(".jsonl") || (name == "-" && first.starts_with('{'));
    let mut out = Vec::new();
    if is_csv {
        let delim = if name.ends_with(".tsv") { b'\t' } else { b',' };
        let text = lines.join("\n");
        let mut rdr = csv::ReaderBuilder::new()
            .delimiter(delim)
            .from_reader(text.as_bytes());
        let headers = rdr
            .headers()
            .map_err(|e| Error::BadRecord {
                file: name.into(),
                line: 1,
                field: "(header)".into(),
                reason: e.to_string(),
                hint: String::new(),
            })?
            .clone();
        let col = headers
            .iter()
            .position(|h| h == "text")
            .ok_or_else(|| Error::BadRecord {
                file: name.into(),
                line: 1,
                field: "text".into(),
                reason: "no `text` column".into(),
                hint: "name the input column `text`".into(),
            })?;
        let id_col = headers.iter().position(|h| h == "id");
        for (i, row) in rdr.records().enumerate() {
            let row = row.map_err(|e| Error::BadRecord {
                file: name.into(),
                line: i as u64 + 2,
                field: "(row)".into(),
                reason: e.to_string(),
                hint: String::new(),
            })?;
            out.push(Input {
                id: id_col
                    .and_then(|c| row.get(c))
                    .map(String::from)
                    .unwrap_or_else(|| (i + 1).to_string()),
                text: row.get(col).unwrap_or("").to_string(),
            });
        }
    } else if is_jsonl {
        for (i, l) in lines.iter().enumerate() {
            if l.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| Error::BadRecord {
                file: name.into(),
                line: i as u64 + 1,
                field: "text".into(),
                reason,
                hint: "each line is {\"id\": ..., \"text\": ...}".into(),
            };
            let v: serde_json::Value =
                serde_json::from_str(l).map_err(|e| bad(format!("invalid JSON: {e}")))?;
            let text = v
                .get("text")
                .and_then(|t| t.as_str())
                .ok_or_else(|| bad("missing text".into()))?;
            let id = v
                .get("id")
                .map(|x| x.as_str().map_or_else(|| x.to_string(), String::from))
                .unwrap_or_else(|| (i + 1).to_string());
            out.push(Input {
                id,
                text: text.to_string(),
            });
        }
    } else {
        for (i, l) in lines.iter().enumerate() {
            out.push(Input {
                id: (i + 1).to_string(),
                text: l.clone(),
            });
        }
    }
    Ok(out)
}

/// How the run decides, read from its record: abstention below a confidence, or a two-class threshold.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecisionRule {
    pub abstain_below: Option<f64>,
    /// `(positive class index, threshold)`.
    pub binary: Option<(usize, f64)>,
}

impl DecisionRule {
    pub fn of_run(record: &serde_json::Value) -> DecisionRule {
        let t = &record["test"]["threshold"];
        DecisionRule {
            abstain_below: record["abstain"]["threshold"].as_f64(),
            binary: (t["applied"] == true).then(|| {
                (
                    t["positive_index"].as_u64().unwrap_or(1) as usize,
                    t["chosen_on_dev"].as_f64().unwrap_or(0.5),
                )
            }),
        }
    }
}

/// Predict and write one JSON line per input: `{"id", "label", "probability", "top_k"}`, deciding as the
/// run did on its test set (abstention below its threshold; the dev-chosen threshold for two classes).
pub fn predict(
    model: &Trained,
    inputs: &[Input],
    top_k: usize,
    rule: DecisionRule,
    out: &mut dyn Write,
) -> Result<()> {
    let detector = PiiDetector::new();
    let norm = Normalise {
        mask: std::sync::Arc::new(|s: &str| s.to_string()),
        keep_newlines: false,
    };
    let prepared: Vec<String> = inputs
        .iter()
        .map(|i| detector.mask(&norm.apply(&i.text).0).text)
        .collect();
    let labels = model.labels();
    for (chunk_in, chunk_text) in inputs.chunks(4096).zip(prepared.chunks(4096)) {
        let texts: Vec<&str> = chunk_text.iter().map(String::as_str).collect();
        let probs = model.proba_batch(&texts)?;
        for (input, p) in chunk_in.iter().zip(probs) {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let mut best = order.first().copied().unwrap_or(0);
            if let Some((positive, t)) = rule.binary {
                best = if p.get(positive).copied().unwrap_or(0.0) as f64 >= t {
                    positive
                } else {
                    1 - positive.min(1)
                };
            }
            let top: Vec<serde_json::Value> = order
                .iter()
                .take(top_k)
                .map(|&i| json!({"label": labels.get(i), "probability": p[i]}))
                .collect();
            let confident = rule
                .abstain_below
                .is_none_or(|t| p.get(best).copied().unwrap_or(0.0) as f64 >= t);
            let label = if confident {
                labels.get(best).map(String::as_str)
            } else {
                Some(crate::run_stage::ABSTAIN)
            };
            let line =
                json!({"id": input.id, "label": label, "probability": p.get(best), "top_k": top});
            writeln!(out, "{line}").map_err(|e| Error::io("stdout", e))?;
        }
    }
    Ok(())
}
