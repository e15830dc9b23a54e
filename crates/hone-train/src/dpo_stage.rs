//! `method = "dpo"` in `hone run`: preference training of a language model on a JSONL file of pairs
//! (`{"prompt", "chosen", "rejected"}`, TRL's preference format), each rendered with the run's chat
//! template as SFT renders an example. A pair whose prompt is a dev or test record's prompt is
//! dropped (counted): training on it would leak into the evaluation. A share of the pairs, chosen by
//! prompt, is held out to measure preference accuracy and to choose the weights kept.

use std::collections::BTreeSet;

use hone_core::{Error, Result};
use hone_lm::dpo::{self, DpoConfig, DpoStep, Pair, PairScore};
use hone_lm::{Lm, LoraConfig};
use serde::{Deserialize, Serialize};

use crate::curate::Progress;
use crate::generate_stage::{GenContext, encode_turns};
use crate::models::LmSpec;

/// What DPO did, for the run record and the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DpoReport {
    /// The pairs file as written in hone.toml.
    pub preferences: String,
    pub start_from: Option<String>,
    pub beta: f64,
    /// Lines read, pairs trained on and held out.
    pub pairs_read: usize,
    pub pairs_train: usize,
    pub pairs_heldout: usize,
    /// Pairs dropped because their prompt is a dev or test record's prompt.
    pub dropped_eval_prompts: usize,
    /// Pairs dropped because the prompt and an answer do not fit `max_length` (cutting them would
    /// train on a prompt the answer does not follow), or both answers are the same text.
    pub dropped_unusable: usize,
    /// Held-out preference accuracy, margin and loss at the start (the reference) and for the
    /// weights kept (none without held-out pairs).
    pub before: Option<PairScore>,
    pub after: Option<PairScore>,
    /// Held-out scores after each epoch.
    pub heldout: Vec<PairScore>,
    pub steps: Vec<DpoStep>,
}

/// One line of the pairs file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    id: Option<String>,
    prompt: String,
    chosen: String,
    rejected: String,
}

/// Read the pairs file: every line a pair, errors naming the line.
fn read_pairs(path: &std::path::Path) -> Result<Vec<(String, Line)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(l).map_err(|e| Error::Data {
            message: format!("{}:{}: {e}", path.display(), i + 1),
            hint: "each line is {\"prompt\": ..., \"chosen\": ..., \"rejected\": ...} (and optionally \"id\")".into(),
        })?;
        let id = line.id.clone().unwrap_or_else(|| format!("line-{}", i + 1));
        out.push((id, line));
    }
    if out.is_empty() {
        return Err(Error::Data {
            message: format!("{}: no preference pairs", path.display()),
            hint: "write one {\"prompt\", \"chosen\", \"rejected\"} object per line".into(),
        });
    }
    Ok(out)
}

fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether a pair's prompt is held out: by a hash of the prompt, so every pair on one prompt lands
/// on the same side.
fn held_out(prompt: &str, share: f64, seed: u64) -> bool {
    let h = blake3::hash(format!("{seed}:{}", normalise(prompt)).as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(b) as f64 / u64::MAX as f64) < share
}

/// Trains `lm` with DPO on the project's pairs (continuing its adapters or weights when it was
/// loaded from `start_from`, else on fresh LoRA adapters).
pub fn train(
    ctx: &GenContext<'_>,
    name: &str,
    spec: &LmSpec,
    lm: &mut Lm,
    fresh_adapters: bool,
    seed: u64,
    progress: &mut dyn FnMut(Progress),
) -> Result<(DpoReport, dpo::DpoLog)> {
    let p = &spec.params;
    let file = spec
        .preferences_file
        .as_deref()
        .ok_or_else(|| Error::Internal("a dpo model without a preferences file".into()))?;
    let lines = read_pairs(file)?;
    let eval_prompts: BTreeSet<String> = ctx
        .dev
        .iter()
        .chain(ctx.test)
        .map(|r| normalise(&r.text))
        .collect();
    let mut report = DpoReport {
        preferences: p.preferences.clone().unwrap_or_default(),
        start_from: p.start_from.clone(),
        beta: p.beta,
        pairs_read: lines.len(),
        ..Default::default()
    };
    let (mut train_pairs, mut heldout) = (Vec::new(), Vec::new());
    for (id, l) in &lines {
        if eval_prompts.contains(&normalise(&l.prompt)) {
            report.dropped_eval_prompts += 1;
            continue;
        }
        let enc = |answer: &str| encode_turns(lm, spec, id, &[], &l.prompt, answer);
        let (c, r) = match (enc(&l.chosen), enc(&l.rejected)) {
            (Ok(c), Ok(r)) if !c.truncated && !r.truncated => (c.example, r.example),
            // Cut to fit, or cut to nothing: the answer would follow a prompt it was not given.
            (Ok(_), Ok(_)) | (Err(Error::Data { .. }), _) | (_, Err(Error::Data { .. })) => {
                report.dropped_unusable += 1;
                continue;
            }
            (Err(e), _) | (_, Err(e)) => return Err(e),
        };
        let split = |e: &hone_lm::sft::Example| -> (Vec<u32>, Vec<u32>) {
            let first = e.train.iter().position(|&t| t).unwrap_or(e.ids.len());
            let last = e.train.iter().rposition(|&t| t).map_or(first, |i| i + 1);
            (e.ids[..first].to_vec(), e.ids[first..last].to_vec())
        };
        let ((prompt, chosen), (prompt_r, rejected)) = (split(&c), split(&r));
        if chosen.is_empty() || rejected.is_empty() || chosen == rejected || prompt != prompt_r {
            report.dropped_unusable += 1;
            continue;
        }
        let pair = Pair {
            id: id.clone(),
            prompt,
            chosen,
            rejected,
        };
        if held_out(&l.prompt, p.preference_holdout, seed) {
            heldout.push(pair);
        } else {
            train_pairs.push(pair);
        }
    }
    report.pairs_train = train_pairs.len();
    report.pairs_heldout = heldout.len();
    if train_pairs.is_empty() {
        return Err(Error::Data {
            message: format!(
                "[[model]] `{name}`: no usable preference pairs to train on ({} read, {} on dev or test prompts, {} unusable, {} held out)",
                report.pairs_read,
                report.dropped_eval_prompts,
                report.dropped_unusable,
                report.pairs_heldout
            ),
            hint: "pairs on dev or test prompts are dropped so the evaluation stays clean; add pairs on training prompts".into(),
        });
    }
    if fresh_adapters {
        lm.decoder_mut().add_lora(
            LoraConfig {
                rank: p.lora_rank,
                alpha: p.lora_alpha,
                dropout: p.lora_dropout,
                targets: p.target_modules.clone(),
            },
            seed,
        )?;
    }
    let cfg = DpoConfig {
        epochs: p.epochs,
        lr: spec.lr(),
        batch_size: p.batch_size,
        beta: p.beta,
        warmup_ratio: p.warmup_ratio,
        weight_decay: p.weight_decay,
        max_grad_norm: p.max_grad_norm,
        seed,
        micro_batch: p.micro_batch,
    };
    let total = train_pairs.len().div_ceil(cfg.batch_size.max(1)) * cfg.epochs.max(1);
    let log = dpo::train(lm, &train_pairs, &heldout, &cfg, &mut |s| {
        progress(Progress::Pass {
            name: &format!(
                "train {name} (dpo): step {}/{total}, loss {:.4}, accuracy {:.2}",
                s.step + 1,
                s.loss,
                s.accuracy
            ),
            index: s.step as usize,
            total,
        })
    })?;
    report.before = log.heldout.first().copied();
    report.after = log.heldout.get(log.kept).copied();
    report.heldout = log.heldout.clone();
    report.steps = log.steps.clone();
    Ok((report, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_out_pairs_follow_the_prompt_and_the_share() {
        let prompts: Vec<String> = (0..2000).map(|i| format!("Where is order {i}?")).collect();
        let out = prompts.iter().filter(|p| held_out(p, 0.2, 7)).count();
        assert!((350..450).contains(&out), "{out}");
        // The same prompt, written with other spacing or case, lands on the same side.
        for p in &prompts[..50] {
            let shouted = format!("  {}  ", p.to_uppercase());
            assert_eq!(held_out(p, 0.2, 7), held_out(&shouted, 0.2, 7));
        }
        assert!(!prompts.iter().any(|p| held_out(p, 0.0, 7)));
    }

    #[test]
    fn a_bad_line_is_named_with_its_number() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pairs.jsonl");
        std::fs::write(
            &f,
            "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n\n{\"prompt\": \"a\", \"chosen\": \"b\"}\n",
        )
        .unwrap();
        let e = read_pairs(&f).unwrap_err().to_string();
        assert!(e.contains("pairs.jsonl:3") && e.contains("rejected"), "{e}");
    }
}
