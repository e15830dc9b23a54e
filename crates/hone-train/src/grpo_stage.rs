//! `method = "grpo"` in `hone run`: reward training of a language model with one of the project's
//! graders. The prompts are the training split's, rendered with the run's chat template; each
//! completion is scored by the `reward` grader against its record (a grader error is reward 0,
//! counted); the dev split's greedy answers, scored by the same grader, choose the weights kept.

use std::time::Instant;

use hone_core::{Error, Record, Result};
use hone_lm::grpo::{self, GrpoConfig, GrpoStep, Limit, LossType, Signal};
use hone_lm::{Lm, LoraConfig};
use hone_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::curate::Progress;
use crate::generate_stage::{GenContext, generate_all, generate_config, render_prompt};
use crate::graders::{ProjectGrader, item};
use crate::models::{LmParams, LmSpec};

/// What GRPO did, for the run record and the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GrpoReport {
    /// The grader whose reward trained the model.
    pub reward: String,
    /// The model GRPO started from (fresh LoRA adapters on the base otherwise).
    pub start_from: Option<String>,
    pub prompts_per_step: usize,
    pub num_generations: usize,
    pub max_completion_length: usize,
    pub loss_type: String,
    pub beta: f64,
    /// Every step's signals.
    pub steps: Vec<GrpoStep>,
    /// The signal that stopped training, and what to change.
    pub stopped_by: Option<Signal>,
    /// One line per signal that reached its warning level, with the advice.
    pub warnings: Vec<String>,
    /// Completions the reward grader could not score (reward 0).
    pub reward_errors: usize,
    /// Estimated activation memory of a training pass (bytes) and the micro-batch.
    pub activation_bytes: u64,
}

/// The GRPO settings of `p` (with the run's seed).
pub fn config(p: &LmParams, lr: f64, seed: u64) -> GrpoConfig {
    let defaults = GrpoConfig::default();
    GrpoConfig {
        steps: p.steps as u64,
        prompts_per_step: p.prompts_per_step,
        num_generations: p.num_generations,
        max_completion_length: p.max_completion_length,
        temperature: p.rollout_temperature,
        top_p: p.top_p,
        top_k: p.top_k,
        lr,
        warmup_ratio: p.warmup_ratio,
        weight_decay: p.weight_decay,
        max_grad_norm: p.max_grad_norm,
        beta: p.beta,
        epsilon: p.epsilon,
        epsilon_high: p.epsilon_high,
        num_iterations: p.num_iterations,
        loss_type: match p.loss_type.as_str() {
            "grpo" => LossType::Grpo,
            "dr_grpo" => LossType::DrGrpo,
            _ => LossType::Dapo,
        },
        mask_truncated: p.mask_truncated,
        truncation: Limit {
            stop: p.stop_truncated,
            patience: p.stop_patience,
            ..defaults.truncation
        },
        zero_std: Limit {
            stop: p.stop_zero_std,
            patience: p.stop_patience,
            ..defaults.zero_std
        },
        seed,
        micro_batch: p.micro_batch,
    }
}

/// The grader named by `reward`, or an error listing the project's graders.
pub fn reward_grader<'a>(graders: &'a [ProjectGrader], name: &str) -> Result<&'a ProjectGrader> {
    graders
        .iter()
        .find(|g| g.grader.name == name)
        .ok_or_else(|| Error::Data {
            message: format!("reward = \"{name}\" names no grader in graders/"),
            hint: format!(
                "graders: {}",
                if graders.is_empty() {
                    "none".to_string()
                } else {
                    graders
                        .iter()
                        .map(|g| g.grader.name.clone())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        })
}

/// Trains `lm` (continuing its adapters or weights when it was loaded from `start_from`, else on
/// fresh LoRA adapters) with GRPO on the training prompts.
#[allow(clippy::too_many_arguments)]
pub fn train(
    ctx: &GenContext<'_>,
    store: &Store,
    name: &str,
    spec: &LmSpec,
    lm: &mut Lm,
    fresh_adapters: bool,
    seed: u64,
    run_key: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<(GrpoReport, grpo::GrpoLog, Option<std::path::PathBuf>)> {
    let p = &spec.params;
    let reward_name = p.reward.clone().unwrap_or_default();
    let grader = &reward_grader(ctx.graders, &reward_name)?.grader;
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
    let system = p.system.as_deref();
    let with_target: Vec<&Record> = ctx
        .train
        .iter()
        .copied()
        .filter(|r| r.label.is_some())
        .collect();
    if with_target.is_empty() {
        return Err(Error::Data {
            message: format!("[[model]] `{name}` has no training prompts"),
            hint: "GRPO samples from the training split's prompts; add data or check the [split] fractions".into(),
        });
    }
    let mut prompts = Vec::with_capacity(with_target.len());
    let mut items: Vec<Value> = Vec::with_capacity(with_target.len());
    for r in &with_target {
        let text = render_prompt(lm.template(), system, &r.turns, &r.text)?;
        let mut ids = lm.encode(&text)?;
        // A prompt longer than max_length keeps its end (the question and the assistant's cue).
        if ids.len() > p.max_length {
            ids.drain(..ids.len() - p.max_length);
        }
        prompts.push(grpo::Prompt {
            id: r.id.clone(),
            ids,
        });
        items.push(item(r));
    }
    let cfg = config(p, spec.lr(), seed);
    let longest = prompts.iter().map(|q| q.ids.len()).max().unwrap_or(0);
    let (micro, bytes) = grpo::memory_estimate(lm, &cfg, longest);
    let mut report = GrpoReport {
        reward: reward_name.clone(),
        start_from: p.start_from.clone(),
        prompts_per_step: cfg.prompts_per_step,
        num_generations: cfg.num_generations,
        max_completion_length: cfg.max_completion_length,
        loss_type: cfg.loss_type.name().into(),
        beta: cfg.beta,
        activation_bytes: bytes,
        ..Default::default()
    };
    let label = format!(
        "train {name} (GRPO on `{reward_name}`, {}x{} completions per step, micro-batch {micro}, ~{:.1} GiB of activations)",
        cfg.prompts_per_step,
        cfg.num_generations,
        bytes as f64 / (1u64 << 30) as f64
    );
    let mut errors = 0usize;
    let mut reward = |cs: &[grpo::Completion]| -> hone_lm::Result<Vec<f64>> {
        Ok(cs
            .iter()
            .map(|c| match grader.grade(&c.text, &items[c.prompt]) {
                Ok(g) => g.reward,
                Err(_) => {
                    errors += 1;
                    0.0
                }
            })
            .collect())
    };
    // Dev: greedy answers scored by the reward grader (mean reward); the best weights are kept.
    let dev_prompts: Vec<String> = ctx
        .dev
        .iter()
        .map(|r| render_prompt(lm.template(), system, &r.turns, &r.text))
        .collect::<Result<_>>()?;
    let dev_ids: Vec<&str> = ctx.dev.iter().map(|r| r.id.as_str()).collect();
    let dev_items: Vec<Value> = ctx.dev.iter().map(|r| item(r)).collect();
    let gen_cfg = generate_config(p, seed);
    let cell = std::cell::RefCell::new(&mut *progress);
    let mut dev_score = |lm: &mut Lm| -> hone_lm::Result<f64> {
        let gens = generate_all(
            lm,
            &dev_prompts,
            &dev_ids,
            &gen_cfg,
            p.eval_batch,
            &mut |d, n| {
                (cell.borrow_mut())(Progress::Pass {
                    name: &format!("{label}: dev `{reward_name}`: {d}/{n}"),
                    index: d.saturating_sub(1),
                    total: n,
                })
            },
        )
        .map_err(|e| hone_lm::LmError::Caller(Box::new(e)))?;
        let sum: f64 = gens
            .iter()
            .zip(&dev_items)
            .map(|(g, i)| grader.grade(&g.text, i).map_or(0.0, |x| x.reward))
            .sum();
        Ok(sum / gens.len().max(1) as f64)
    };
    let (dir, owned) = match &p.checkpoint_dir {
        Some(d) => (d.clone(), false),
        None => (
            store
                .dir()
                .join("checkpoints")
                .join(format!("{name}-{}", &run_key[..16.min(run_key.len())])),
            true,
        ),
    };
    let control = grpo::Control {
        checkpoints: Some(hone_lm::sft::Checkpoints {
            dir: dir.clone(),
            key: run_key.to_string(),
            every: p.checkpoint_every.max(1) as u64,
            stop_after: None,
        }),
        dev_score: (!ctx.dev.is_empty())
            .then_some(&mut dev_score as &mut dyn FnMut(&mut Lm) -> hone_lm::Result<f64>),
        eval_every: p.eval_every as u64,
        max_seconds: ctx.project.config.costs.budget_seconds(p.device == "cuda"),
    };
    let started = Instant::now();
    let price = ctx.project.config.costs.cpu_hour_usd;
    let mut warned: Vec<Signal> = Vec::new();
    let log = grpo::train(lm, &prompts, &cfg, &mut reward, control, &mut |s| {
        let now = started.elapsed().as_secs_f64();
        let done = s.step + 1;
        let secs = now / done as f64 * (s.total - s.step - 1) as f64 + now;
        for w in &s.warnings {
            if !warned.contains(w) {
                warned.push(*w);
            }
        }
        (cell.borrow_mut())(Progress::Pass {
            name: &format!(
                "{label}: step {}/{} reward {:.3} (std {:.3}, zero-std groups {:.2}, truncated {:.2}, {:.0} tokens; generate {:.1} s, train {:.1} s; estimate {secs:.0} s, ${:.4})",
                s.step + 1,
                s.total,
                s.reward_mean,
                s.reward_std,
                s.frac_reward_zero_std,
                s.clipped_ratio,
                s.completion_length,
                s.generate_seconds,
                s.train_seconds,
                secs / 3600.0 * price
            ),
            index: s.step as usize,
            total: s.total as usize,
        });
    })?;
    report.steps = log.steps.clone();
    report.stopped_by = log.stopped_by;
    report.warnings = warned.iter().map(|w| w.advice(&cfg)).collect();
    report.reward_errors = errors;
    Ok((report, log, owned.then_some(dir)))
}
