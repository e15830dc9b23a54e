//! `hone predict`: batch predictions from a run's model with the same normalising and PII masking the
//! training data went through (train/serve parity), one JSON line per input, in input order.

use std::io::{BufRead, Write};

use std::path::Path;

use hone_core::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::input::{TextPrep, lenient_id, parse_jsonl};

use crate::run_stage::Trained;
use hone_core::decide::{ABSTAIN, DecisionRule, argmax};

/// One JSONL input line.
#[derive(Deserialize)]
struct InputLine {
    #[serde(default, deserialize_with = "lenient_id")]
    id: Option<String>,
    /// `prompt` for generate projects.
    #[serde(alias = "prompt", default)]
    text: Option<String>,
    /// A generate project's conversation, answered at its last user message.
    #[serde(default)]
    messages: Option<Vec<hone_core::record::Turn>>,
}

/// One input to predict.
pub struct Input {
    pub id: String,
    pub text: String,
    /// A conversation's turns before `text` (generate projects).
    pub turns: Vec<hone_core::record::Turn>,
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
                turns: Vec::new(),
            });
        }
    } else if is_jsonl {
        let rows: Vec<(u64, InputLine)> = parse_jsonl(
            Path::new(name),
            &lines.join("\n"),
            "each line is {\"id\": ..., \"text\": ...} (or \"prompt\" or \"messages\" for a generate project)",
        )?;
        for (n, l) in rows {
            let bad = |field: &str, reason: String| {
                Error::BadRecord {
                file: name.into(),
                line: n,
                field: field.into(),
                reason,
                hint: "each line has \"text\" (or \"prompt\"), or \"messages\": [{\"role\": \"user\", \"content\": ...}]".into(),
            }
            };
            let (turns, text) = match (l.text, l.messages) {
                (Some(t), None) => (Vec::new(), t),
                (None, Some(m)) => match hone_core::record::split_conversation(m) {
                    Ok((turns, prompt, None)) => (turns, prompt),
                    Ok((_, _, Some(_))) => {
                        return Err(bad(
                            "messages",
                            "the conversation ends with an assistant message; predict answers the last user message".into(),
                        ));
                    }
                    Err(e) => return Err(bad("messages", e)),
                },
                (Some(_), Some(_)) => {
                    return Err(bad("messages", "has both a text and messages".into()));
                }
                (None, None) => return Err(bad("text", "missing text".into())),
            };
            out.push(Input {
                id: l.id.unwrap_or_else(|| n.to_string()),
                text,
                turns,
            });
        }
    } else {
        for (i, l) in lines.iter().enumerate() {
            out.push(Input {
                id: (i + 1).to_string(),
                text: l.clone(),
                turns: Vec::new(),
            });
        }
    }
    Ok(out)
}

/// One label and its probability in a top-k list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    pub label: String,
    pub probability: f32,
}

/// What the model answered for one text, decided by the run's [`DecisionRule`]: the label (or
/// `abstain`), the probability of the label the rule picked (of the top one on abstention), and the
/// `top_k` labels by probability. `hone predict` and `hone serve` both answer with this.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decided {
    pub label: String,
    pub probability: f32,
    pub abstained: bool,
    pub top_k: Vec<Scored>,
}

/// Decide one probability vector (in `labels` order) under `rule`.
pub fn decide(labels: &[String], p: &[f32], top_k: usize, rule: DecisionRule) -> Decided {
    // Most probable first, ties by class index: a total order, so selecting the first `top_k` and
    // sorting only those gives what sorting every class would.
    let by = |a: &usize, b: &usize| p[*b].total_cmp(&p[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..p.len()).collect();
    if top_k > 0 && top_k < order.len() {
        order.select_nth_unstable_by(top_k - 1, by);
        order.truncate(top_k);
    }
    order.sort_unstable_by(by);
    let top_k = order
        .iter()
        .take(top_k)
        .map(|&i| Scored {
            label: labels.get(i).cloned().unwrap_or_default(),
            probability: p[i],
        })
        .collect();
    let decided = rule.decide(p);
    let best = decided.unwrap_or_else(|| argmax(p));
    Decided {
        label: match decided {
            Some(i) => labels.get(i).cloned().unwrap_or_default(),
            None => ABSTAIN.to_string(),
        },
        probability: p.get(best).copied().unwrap_or(0.0),
        abstained: decided.is_none(),
        top_k,
    }
}

/// One line of `hone predict`'s output.
#[derive(Serialize)]
struct PredictedLine<'a> {
    id: &'a str,
    label: &'a str,
    probability: f32,
    top_k: &'a [Scored],
}

/// Predict and write one JSON line per input: `{"id", "label", "probability", "top_k"}`, deciding by the
/// run's own [`DecisionRule`] (the one its test metrics were measured under).
pub fn predict(
    model: &Trained,
    inputs: &[Input],
    top_k: usize,
    rule: DecisionRule,
    prep: &TextPrep,
    out: &mut dyn Write,
) -> Result<()> {
    let prepared: Vec<String> = inputs.iter().map(|i| prep.apply(&i.text)).collect();
    let labels = model.labels();
    for (chunk_in, chunk_text) in inputs.chunks(4096).zip(prepared.chunks(4096)) {
        let texts: Vec<&str> = chunk_text.iter().map(String::as_str).collect();
        let probs = model.proba_batch(&texts)?;
        for (input, p) in chunk_in.iter().zip(probs) {
            let d = decide(labels, &p, top_k, rule);
            // Typed, as `hone serve` answers: probabilities print as the f32 they are.
            let line = PredictedLine {
                id: &input.id,
                label: &d.label,
                probability: d.probability,
                top_k: &d.top_k,
            };
            let line = serde_json::to_string(&line).map_err(|e| Error::Internal(e.to_string()))?;
            writeln!(out, "{line}").map_err(|e| Error::io("stdout", e))?;
        }
    }
    Ok(())
}

/// A generate run's prompt for a conversation, as `hone predict` and `hone serve` both build it:
/// every turn and the question prepared like the training prompts were, rendered with the run's
/// chat template and system prompt.
pub fn generate_prompt(
    template: Option<&hone_lm::chat::ChatTemplate>,
    system: Option<&str>,
    prep: &TextPrep,
    turns: &[hone_core::record::Turn],
    text: &str,
) -> Result<String> {
    let turns: Vec<hone_core::record::Turn> = turns
        .iter()
        .map(|t| hone_core::record::Turn {
            role: t.role.clone(),
            content: prep.apply(&t.content),
        })
        .collect();
    crate::generate_stage::render_prompt(template, system, &turns, &prep.apply(text))
}

/// What `hone predict` may change about a generate run's decoding.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenOverrides {
    pub max_new_tokens: Option<usize>,
    pub temperature: Option<f64>,
    pub seed: Option<u64>,
}

/// Generate and write one JSON line per input, `{"id", "completion"}`, in input order. Prompts are
/// prepared as the run's training prompts were (normalised with line breaks kept, PII masked under
/// its dataset version's policy) and rendered with the run's stored chat template; answers pass
/// through the PII masker, under the same policy, before they are written (a type the data keeps,
/// such as places by default, is kept in answers too).
pub fn predict_generate(
    store: &hone_store::Store,
    project_root: &Path,
    run: &crate::record::Run,
    inputs: &[Input],
    over: GenOverrides,
    prep: &TextPrep,
    out: &mut dyn Write,
) -> Result<()> {
    use crate::generate_stage::{generate_all, generate_config, load_run_lm};
    let (mut lm, params) = load_run_lm(store, project_root, run)?;
    let mut cfg = generate_config(&params, run.seed as u64);
    if let Some(n) = over.max_new_tokens {
        cfg.max_new_tokens = n;
    }
    if let Some(t) = over.temperature {
        if !(t.is_finite() && t >= 0.0) {
            return Err(Error::Usage(format!(
                "--temperature must be a number >= 0 (0 is greedy), not {t}"
            )));
        }
        cfg.temperature = t;
    }
    if let Some(s) = over.seed {
        cfg.seed = s;
    }
    let prompts: Vec<String> = inputs
        .iter()
        .map(|i| {
            generate_prompt(
                lm.template(),
                params.system.as_deref(),
                prep,
                &i.turns,
                &i.text,
            )
        })
        .collect::<Result<_>>()?;
    let ids: Vec<&str> = inputs.iter().map(|i| i.id.as_str()).collect();
    let gens = generate_all(
        &mut lm,
        &prompts,
        &ids,
        &cfg,
        params.eval_batch,
        &mut |_, _| {},
    )?;
    for (input, g) in inputs.iter().zip(gens) {
        let line = json!({"id": input.id, "completion": prep.mask(&g.text)});
        writeln!(out, "{line}").map_err(|e| Error::io("stdout", e))?;
    }
    Ok(())
}
