//! Group relative policy optimisation (GRPO) for a causal LM: each step samples `num_generations`
//! completions per prompt, scores them with a caller's reward (hone's graders), turns rewards into
//! group-normalised advantages, and takes one clipped policy-gradient step, optionally with a KL
//! penalty to the frozen starting weights. Every step reports the signals that show when GRPO has
//! stopped learning (completions cut at the length cap, groups whose rewards do not vary), and
//! training stops, saying which setting to change, when they persist.
//!
//! The recipe follows TRL's `GRPOTrainer` (advantages `(r - mean) / (std + 1e-4)` with the group's
//! unbiased std; the `grpo`, `dr_grpo` and `dapo` loss aggregations; the k3 KL estimator), so a
//! run here and one there are comparable step for step.

use std::collections::HashMap;
use std::time::Instant;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::sft::{ACTIVATION_BUDGET, Checkpoints, DevScore, Ended, activation_bytes, snapshot};
use crate::{Lm, LmError, Result, StopReason};

/// How per-token losses become the step's loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// Mean over each completion's tokens, then over completions (the GRPO paper; long completions
    /// weigh less per token).
    Grpo,
    /// Sum over every token divided by completions × `max_completion_length` (Dr. GRPO: no length
    /// bias); advantages are not divided by the group's std.
    DrGrpo,
    /// Sum over every token divided by the step's token count (DAPO; TRL's default).
    #[default]
    Dapo,
}

impl LossType {
    pub fn name(self) -> &'static str {
        match self {
            LossType::Grpo => "grpo",
            LossType::DrGrpo => "dr_grpo",
            LossType::Dapo => "dapo",
        }
    }
}

/// When a signal that GRPO is not learning is warned about and when it stops training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limit {
    /// A step at or above this fraction is warned about.
    pub warn: f64,
    /// `patience` steps in a row at or above this fraction stop training.
    pub stop: f64,
    pub patience: usize,
}

/// GRPO settings (defaults sized for a 135M model on two CPU cores).
#[derive(Debug, Clone, PartialEq)]
pub struct GrpoConfig {
    /// Optimiser steps.
    pub steps: u64,
    /// Prompts per step; each is sampled `num_generations` times.
    pub prompts_per_step: usize,
    pub num_generations: usize,
    /// Completions longer than this are cut (and counted in `clipped_ratio`).
    pub max_completion_length: usize,
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// KL penalty to the starting weights (0: none, and no reference pass).
    pub beta: f64,
    /// The policy ratio is clipped to `[1 - epsilon, 1 + epsilon_high]`.
    pub epsilon: f64,
    pub epsilon_high: f64,
    /// Optimiser steps on each batch of completions (1: the ratio is 1 and clipping never binds).
    pub num_iterations: usize,
    pub loss_type: LossType,
    /// Completions cut at the length cap get no loss (DAPO's overlong filtering).
    pub mask_truncated: bool,
    /// Completions cut at the length cap: share of a step's completions.
    pub truncation: Limit,
    /// Groups whose completions all got the same reward: share of a step's groups.
    pub zero_std: Limit,
    pub seed: u64,
    /// Sequences run through the model at once (0: the largest under [`ACTIVATION_BUDGET`]).
    pub micro_batch: usize,
}

impl Default for GrpoConfig {
    fn default() -> Self {
        GrpoConfig {
            steps: 100,
            prompts_per_step: 4,
            num_generations: 4,
            max_completion_length: 96,
            temperature: 1.0,
            top_p: None,
            top_k: None,
            lr: 1e-5,
            warmup_ratio: 0.0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            beta: 0.0,
            epsilon: 0.2,
            epsilon_high: 0.2,
            num_iterations: 1,
            loss_type: LossType::Dapo,
            mask_truncated: false,
            truncation: Limit {
                warn: 0.5,
                stop: 0.9,
                patience: 5,
            },
            zero_std: Limit {
                warn: 0.5,
                stop: 0.95,
                patience: 10,
            },
            seed: 0,
            micro_batch: 0,
        }
    }
}

impl GrpoConfig {
    /// Settings that cannot train, named.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.num_generations < 2 {
            return Err(format!(
                "num_generations = {}: a group needs at least 2 completions to have an advantage",
                self.num_generations
            ));
        }
        if self.prompts_per_step == 0 || self.steps == 0 || self.max_completion_length == 0 {
            return Err("prompts_per_step, steps and max_completion_length must be > 0".into());
        }
        if self.temperature <= 0.0 {
            return Err(format!(
                "temperature = {}: GRPO samples, so it must be > 0 (1.0 is the usual choice)",
                self.temperature
            ));
        }
        if self.num_iterations == 0 {
            return Err("num_iterations must be >= 1".into());
        }
        if !(self.epsilon >= 0.0 && self.epsilon_high >= 0.0 && self.beta >= 0.0) {
            return Err("epsilon, epsilon_high and beta must be >= 0".into());
        }
        Ok(())
    }
}

/// A prompt to sample from: its id (for the reward) and its tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub id: String,
    pub ids: Vec<u32>,
}

/// One sampled completion, as the reward sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Index into the prompts given to [`train`].
    pub prompt: usize,
    pub text: String,
    /// Its tokens, the end-of-sequence token included when the model produced it.
    pub tokens: Vec<u32>,
    /// Cut at `max_completion_length`.
    pub truncated: bool,
}

/// A signal that training has stopped learning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// Most completions hit `max_completion_length`.
    Truncation,
    /// Most groups got the same reward for every completion (no advantage, no gradient).
    ZeroStd,
}

impl Signal {
    /// What to change.
    pub fn advice(self, cfg: &GrpoConfig) -> String {
        match self {
            Signal::Truncation => format!(
                "completions are cut at max_completion_length = {}: raise it, or lower max_new_tokens of the model trained before, or reward shorter answers",
                cfg.max_completion_length
            ),
            Signal::ZeroStd => format!(
                "every completion of a prompt gets the same reward, so there is nothing to learn: raise num_generations (now {}) or temperature (now {}), or use a grader with partial credit (a multi formula or a similarity score instead of pass/fail)",
                cfg.num_generations, cfg.temperature
            ),
        }
    }
}

/// One optimiser step's signals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoStep {
    pub step: u64,
    pub total: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub reward_mean: f64,
    pub reward_std: f64,
    /// Share of groups whose rewards are all equal.
    pub frac_reward_zero_std: f64,
    /// Share of completions cut at `max_completion_length` (TRL's `completions/clipped_ratio`).
    pub clipped_ratio: f64,
    /// Share of completion tokens whose policy ratio was clipped (0 with one iteration).
    pub clip_fraction: f64,
    /// Mean per-token KL to the starting weights (with `beta` > 0).
    pub kl: Option<f64>,
    pub completion_length: f64,
    pub generate_seconds: f64,
    pub reward_seconds: f64,
    pub train_seconds: f64,
    /// Signals at or above their warning level this step.
    pub warnings: Vec<Signal>,
}

/// What a GRPO run did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GrpoLog {
    pub steps: Vec<GrpoStep>,
    pub dev: Vec<DevScore>,
    pub best: Option<DevScore>,
    pub ended: Ended,
    /// The signal that stopped training (with [`Ended::NotLearning`]).
    pub stopped_by: Option<Signal>,
    pub resumed_at: Option<u64>,
    pub seconds: f64,
    pub micro_batch: usize,
}

/// Rewards for a step's completions, in order: one number per completion (higher is better).
pub type Reward<'a> = &'a mut dyn FnMut(&[Completion]) -> Result<Vec<f64>>;

/// What else a run watches.
#[derive(Default)]
pub struct Control<'a> {
    pub checkpoints: Option<Checkpoints>,
    /// Scored every `eval_every` steps and at the end; the best-scoring weights are kept.
    #[allow(clippy::type_complexity)]
    pub dev_score: Option<&'a mut dyn FnMut(&mut Lm) -> Result<f64>>,
    pub eval_every: u64,
    pub max_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    fingerprint: String,
    step: u64,
    steps: Vec<GrpoStep>,
    dev: Vec<DevScore>,
    best: Option<DevScore>,
    seconds: f64,
    streaks: [usize; 2],
}

/// Bytes one training pass keeps per sequence, and the micro-batch that fits the budget, for
/// prompts of up to `longest_prompt` tokens.
pub fn memory_estimate(lm: &Lm, cfg: &GrpoConfig, longest_prompt: usize) -> (usize, u64) {
    let len = longest_prompt + cfg.max_completion_length + 1;
    let per = activation_bytes(lm.decoder().config(), len, lm.decoder().lora().is_some()).max(1);
    let batch = cfg.prompts_per_step * cfg.num_generations;
    let micro = if cfg.micro_batch > 0 {
        cfg.micro_batch.min(batch)
    } else {
        ((ACTIVATION_BUDGET / per) as usize).clamp(1, batch)
    };
    (micro, per * micro as u64)
}

/// Advantages of one step's rewards, groups of `g` in order: `r - mean`, divided by the group's
/// unbiased std + 1e-4 when `scale` (as TRL's `scale_rewards`).
pub fn advantages(rewards: &[f64], g: usize, scale: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(g) {
        let n = group.len() as f64;
        let mean = group.iter().sum::<f64>() / n;
        let std = if group.len() > 1 {
            (group.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        for r in group {
            out.push(if scale {
                (r - mean) / (std + 1e-4)
            } else {
                r - mean
            });
        }
    }
    out
}

/// The prompt order: each pass over the prompts shuffled by the seed and the pass alone.
fn prompt_at(n: usize, seed: u64, k: u64) -> usize {
    let pass = k / n as u64;
    let mut rng =
        hone_neural::SeededRng::new(seed ^ (pass + 1).wrapping_mul(0xa076_1d64_78bd_642f));
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    order[(k % n as u64) as usize]
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut x =
        seed ^ a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 31;
    x.wrapping_mul(0x94d0_49bb_1331_11eb)
}

/// One sequence for the loss: prompt + completion, and the per-token constants.
#[derive(Clone, Copy)]
pub(crate) struct Seq<'a> {
    pub(crate) prompt: &'a [u32],
    pub(crate) completion: &'a [u32],
    /// Each completion token's weight in the step's loss (the loss type's aggregation).
    pub(crate) weight: f64,
    pub(crate) advantage: f64,
}

/// Per-token log-probabilities of each sequence's completion under `lm` (temperature-scaled
/// logits, as sampled), flattened in order. Differentiable.
pub(crate) fn completion_logps(lm: &Lm, seqs: &[Seq<'_>], temperature: f64) -> Result<Tensor> {
    let pad = lm.info().pad.unwrap_or(lm.info().eos);
    let t = seqs
        .iter()
        .map(|s| s.prompt.len() + s.completion.len())
        .max()
        .unwrap_or(0)
        - 1;
    let mut inputs = Vec::with_capacity(seqs.len() * t);
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (r, s) in seqs.iter().enumerate() {
        let full: Vec<u32> = s.prompt.iter().chain(s.completion).copied().collect();
        for j in 0..t {
            inputs.push(full.get(j).copied().unwrap_or(pad));
            if j + 1 >= s.prompt.len() && j + 1 < full.len() {
                rows.push((r * t + j) as u32);
                targets.push(full[j + 1]);
            }
        }
    }
    let dev = lm.decoder().device();
    let inputs = Tensor::from_vec(inputs, (seqs.len(), t), dev)?;
    let hidden = lm.decoder().hidden_train(&inputs, None)?;
    let h = hidden.dim(2)?;
    let n = rows.len();
    let picked = hidden
        .reshape((seqs.len() * t, h))?
        .index_select(&Tensor::from_vec(rows, n, dev)?, 0)?;
    let mut logits = lm.decoder().logits(&picked)?;
    if temperature != 1.0 {
        logits = (logits / temperature)?;
    }
    Ok(hone_neural::fused::picked_log_softmax(&logits, &targets)?)
}

pub(crate) fn restore(vars: &[(String, Var)], from: &[(String, Tensor)]) -> Result<()> {
    let map: HashMap<&str, &Tensor> = from.iter().map(|(n, t)| (n.as_str(), t)).collect();
    for (n, v) in vars {
        let t = map
            .get(n.as_str())
            .ok_or_else(|| LmError::Model(format!("no saved tensor {n}")))?;
        v.set(t)?;
    }
    Ok(())
}

/// A digest of what a run depends on: `key`, the settings, the prompts and the trainable weights'
/// names and shapes.
fn fingerprint(key: &str, cfg: &GrpoConfig, prompts: &[Prompt], vars: &[(String, Var)]) -> String {
    let mut h = blake3::Hasher::new();
    h.update(key.as_bytes());
    h.update(format!("{cfg:?}").as_bytes());
    for p in prompts {
        h.update(p.id.as_bytes());
        for i in &p.ids {
            h.update(&i.to_le_bytes());
        }
    }
    for (n, v) in vars {
        h.update(format!("{n}{:?}", v.shape()).as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Trains `lm`'s trainable weights (its LoRA adapters, or every weight) with GRPO on `prompts`.
/// `reward` scores each step's completions; `on_step` sees every step. Every random choice (the
/// prompts of a step, each completion's sampling) is seeded by the run seed and the step alone, so
/// a run resumed from a checkpoint ends bit-identical to one never interrupted.
pub fn train(
    lm: &mut Lm,
    prompts: &[Prompt],
    cfg: &GrpoConfig,
    reward: Reward<'_>,
    mut control: Control<'_>,
    on_step: &mut dyn FnMut(&GrpoStep),
) -> Result<GrpoLog> {
    cfg.validate().map_err(LmError::Data)?;
    if prompts.is_empty() {
        return Err(LmError::Data("no prompts to train on".into()));
    }
    if let Some(p) = prompts.iter().find(|p| p.ids.is_empty()) {
        return Err(LmError::Data(format!("prompt {} has no tokens", p.id)));
    }
    let nerr = |e: hone_core::Error| LmError::Model(e.to_string());
    let (vars, var_list, mut opt) = crate::sft::optimizer(lm, cfg.lr, cfg.weight_decay)?;
    let longest = prompts.iter().map(|p| p.ids.len()).max().unwrap_or(0);
    let (micro, _) = memory_estimate(lm, cfg, longest);
    let total = cfg.steps;
    let warmup = (cfg.warmup_ratio * total as f64).round() as u64;
    let key = control.checkpoints.as_ref().map_or("", |c| c.key.as_str());
    let print = fingerprint(key, cfg, prompts, &vars);
    // The reference for the KL penalty: the weights training starts from.
    let reference = if cfg.beta > 0.0 {
        Some(snapshot(&vars)?)
    } else {
        None
    };
    let mut log = GrpoLog {
        micro_batch: micro,
        ..GrpoLog::default()
    };
    let mut best_weights: Option<Vec<(String, Tensor)>> = None;
    let mut step = 0u64;
    let mut seconds_before = 0.0;
    let mut streaks = [0usize; 2];
    if let Some(ck) = &control.checkpoints {
        let found = hone_neural::checkpoint::resume(&ck.dir, lm.decoder().device(), |m: &Meta| {
            m.fingerprint == print
        })
        .map_err(|e| LmError::Caller(Box::new(e)))?;
        if let Some((meta, t)) = found {
            let get = |group: &str| -> Result<Vec<(String, Tensor)>> {
                vars.iter()
                    .map(|(n, _)| {
                        t.get(group, n).map(|x| (n.clone(), x)).ok_or_else(|| {
                            LmError::Model(format!("the checkpoint has no {group} tensor {n}"))
                        })
                    })
                    .collect()
            };
            restore(&vars, &get("model")?)?;
            opt.load_state(&|n| t.get("opt", n)).map_err(nerr)?;
            if meta.best.is_some() {
                best_weights = Some(get("best")?);
            }
            step = meta.step;
            log.steps = meta.steps;
            log.dev = meta.dev;
            log.best = meta.best;
            seconds_before = meta.seconds;
            streaks = meta.streaks;
            log.resumed_at = Some(step);
        }
    }
    let started = Instant::now();
    let elapsed = |started: &Instant| seconds_before + started.elapsed().as_secs_f64();
    let write_checkpoint = |ck: &Checkpoints,
                            log: &GrpoLog,
                            opt: &hone_neural::optim::FusedAdamW,
                            best_weights: &Option<Vec<(String, Tensor)>>,
                            step: u64,
                            seconds: f64,
                            streaks: [usize; 2]|
     -> Result<()> {
        let mut tensors = hone_neural::checkpoint::Tensors::default();
        tensors.insert("model", snapshot(&vars)?);
        tensors.insert("opt", opt.state().map_err(nerr)?);
        if let Some(b) = best_weights {
            tensors.insert("best", b.iter().cloned());
        }
        let meta = Meta {
            fingerprint: print.clone(),
            step,
            steps: log.steps.clone(),
            dev: log.dev.clone(),
            best: log.best,
            seconds,
            streaks,
        };
        hone_neural::checkpoint::write(&ck.dir, &tensors, &meta)
            .map_err(|e| LmError::Caller(Box::new(e)))
    };
    let mut dev_score = control.dev_score.take();
    let mut score_dev = |lm: &mut Lm,
                         log: &mut GrpoLog,
                         best_weights: &mut Option<Vec<(String, Tensor)>>,
                         step: u64|
     -> Result<()> {
        let Some(f) = dev_score.as_mut() else {
            return Ok(());
        };
        if log.dev.last().is_some_and(|d| d.step == step) {
            return Ok(());
        }
        let score = f(lm)?;
        let d = DevScore {
            epoch: 0,
            step,
            score,
        };
        log.dev.push(d);
        if log.best.is_none_or(|b| score > b.score) {
            log.best = Some(d);
            *best_weights = Some(snapshot(&vars)?);
        }
        Ok(())
    };
    // The starting weights are a candidate too: GRPO that only makes things worse keeps them.
    if step == 0 {
        score_dev(lm, &mut log, &mut best_weights, 0)?;
    }
    let g = cfg.num_generations;
    let gen_cfg = crate::GenerateConfig {
        max_new_tokens: cfg.max_completion_length,
        temperature: cfg.temperature,
        top_k: cfg.top_k,
        top_p: cfg.top_p,
        seed: 0,
        stop: Vec::new(),
    };
    let eos = lm.info().eos;
    while step < total {
        // Sample: each of the step's prompts `g` times, every row seeded by (seed, step, row).
        let t0 = Instant::now();
        let chosen: Vec<usize> = (0..cfg.prompts_per_step as u64)
            .map(|i| {
                prompt_at(
                    prompts.len(),
                    cfg.seed,
                    step * cfg.prompts_per_step as u64 + i,
                )
            })
            .collect();
        let batch: Vec<Vec<u32>> = chosen
            .iter()
            .flat_map(|&p| std::iter::repeat_n(prompts[p].ids.clone(), g))
            .collect();
        let seeds: Vec<u64> = (0..batch.len() as u64)
            .map(|r| mix(cfg.seed, step + 1, r))
            .collect();
        let gens = lm.generate_batch(&batch, &seeds, &gen_cfg)?;
        let completions: Vec<Completion> = gens
            .into_iter()
            .enumerate()
            .map(|(r, gen_)| {
                let mut tokens = gen_.tokens;
                if gen_.stop == StopReason::Eos {
                    tokens.push(eos);
                }
                Completion {
                    prompt: chosen[r / g],
                    text: gen_.text,
                    tokens,
                    truncated: gen_.stop == StopReason::Length,
                }
            })
            .collect();
        let generate_seconds = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        let rewards = reward(&completions)?;
        if rewards.len() != completions.len() || rewards.iter().any(|r| !r.is_finite()) {
            return Err(LmError::Data(format!(
                "the reward gave {} finite scores for {} completions",
                rewards.iter().filter(|r| r.is_finite()).count(),
                completions.len()
            )));
        }
        let reward_seconds = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let adv = advantages(&rewards, g, cfg.loss_type != LossType::DrGrpo);
        let zero_std = rewards
            .chunks(g)
            .filter(|c| c.iter().all(|r| *r == c[0]))
            .count() as f64
            / chosen.len() as f64;
        let n = completions.len();
        let truncated = completions.iter().filter(|c| c.truncated).count() as f64 / n as f64;
        let live = |c: &Completion| !(c.tokens.is_empty() || (cfg.mask_truncated && c.truncated));
        let live_tokens: usize = completions
            .iter()
            .filter(|c| live(c))
            .map(|c| c.tokens.len())
            .sum();
        let seqs: Vec<Seq<'_>> = completions
            .iter()
            .zip(&adv)
            .map(|(c, &a)| {
                let weight = if !live(c) {
                    0.0
                } else {
                    match cfg.loss_type {
                        LossType::Grpo => 1.0 / (n as f64 * c.tokens.len() as f64),
                        LossType::DrGrpo => 1.0 / (n * cfg.max_completion_length) as f64,
                        LossType::Dapo => 1.0 / live_tokens.max(1) as f64,
                    }
                };
                Seq {
                    prompt: &prompts[c.prompt].ids,
                    completion: &c.tokens,
                    weight,
                    advantage: a,
                }
            })
            .collect();
        let trained: Vec<&Seq<'_>> = seqs.iter().filter(|s| s.weight > 0.0).collect();
        // The log-probabilities the completions were sampled with, and the reference's.
        let per_part = |lm: &Lm, part: &[&Seq<'_>]| -> Result<Vec<f32>> {
            let owned: Vec<Seq<'_>> = part.iter().map(|s| **s).collect();
            Ok(completion_logps(lm, &owned, cfg.temperature)?
                .detach()
                .to_vec1::<f32>()?)
        };
        let parts: Vec<&[&Seq<'_>]> = trained.chunks(micro).collect();
        let old: Vec<Vec<f32>> = if cfg.num_iterations > 1 {
            parts
                .iter()
                .map(|p| per_part(lm, p))
                .collect::<Result<_>>()?
        } else {
            Vec::new()
        };
        let ref_logps: Vec<Vec<f32>> = if let Some(r) = &reference {
            let now = snapshot(&vars)?;
            restore(&vars, r)?;
            let out = parts.iter().map(|p| per_part(lm, p)).collect::<Result<_>>();
            restore(&vars, &now)?;
            out?
        } else {
            Vec::new()
        };
        let (mut loss_sum, mut clipped_tokens, mut kl_sum, mut token_count) =
            (0.0f64, 0usize, 0.0f64, 0usize);
        let mut norm = 0.0;
        let mut lr = cfg.lr;
        for _ in 0..cfg.num_iterations {
            let mut acc = None;
            loss_sum = 0.0;
            clipped_tokens = 0;
            kl_sum = 0.0;
            token_count = 0;
            for (k, part) in parts.iter().enumerate() {
                let owned: Vec<Seq<'_>> = part.iter().map(|s| **s).collect();
                let logp = completion_logps(lm, &owned, cfg.temperature)?;
                let values = logp.to_vec1::<f32>()?;
                let old_values = old.get(k).cloned().unwrap_or_else(|| values.clone());
                // Per token: the ratio's coefficient in the clipped objective (0 where the clipped
                // branch is the minimum and saturated, so no gradient flows, as in PPO).
                let (mut coef, mut w_tok) = (Vec::with_capacity(values.len()), Vec::new());
                let mut i = 0;
                for s in part.iter() {
                    for _ in 0..s.completion.len() {
                        let r = ((values[i] - old_values[i]) as f64).exp();
                        let a = s.advantage;
                        let clipped = r.clamp(1.0 - cfg.epsilon, 1.0 + cfg.epsilon_high);
                        let active = r * a <= clipped * a || (clipped - r).abs() < 1e-12;
                        if !active {
                            clipped_tokens += 1;
                        }
                        loss_sum -= s.weight * (r * a).min(clipped * a);
                        coef.push((if active { -a * s.weight } else { 0.0 }) as f32);
                        w_tok.push(s.weight as f32);
                        i += 1;
                    }
                }
                token_count += values.len();
                let dev = logp.device().clone();
                let old_t = Tensor::from_vec(old_values, values.len(), &dev)?;
                let ratio = (&logp - &old_t)?.exp()?;
                let mut loss = (ratio * Tensor::from_vec(coef, values.len(), &dev)?)?.sum_all()?;
                if let Some(r) = ref_logps.get(k) {
                    let ref_t = Tensor::from_vec(r.clone(), values.len(), &dev)?;
                    let d = (ref_t - &logp)?;
                    let kl = ((d.exp()? - &d)? - 1.0)?;
                    let kl_vals = kl.to_vec1::<f32>()?;
                    kl_sum += kl_vals.iter().map(|&x| x as f64).sum::<f64>();
                    loss_sum += cfg.beta
                        * kl_vals
                            .iter()
                            .zip(&w_tok)
                            .map(|(&x, &w)| x as f64 * w as f64)
                            .sum::<f64>();
                    let w = Tensor::from_vec(w_tok, values.len(), &dev)?;
                    loss = (loss + ((kl * w)?.sum_all()? * cfg.beta)?)?;
                }
                let grads = loss.backward()?;
                hone_neural::optim::accumulate(&mut acc, grads, &var_list).map_err(nerr)?;
            }
            let Some(grads) = acc else { break };
            norm = hone_neural::optim::grad_norm(&grads, &var_list).map_err(nerr)?;
            let clip = hone_neural::optim::clip_factor(norm, cfg.max_grad_norm);
            lr = hone_neural::optim::linear_schedule(cfg.lr, step, warmup, total);
            opt.step(&grads, lr, clip).map_err(nerr)?;
        }
        let mean = rewards.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (rewards.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0)).sqrt()
        } else {
            0.0
        };
        let mut warnings = Vec::new();
        let mut stop = None;
        for (k, (signal, value, limit)) in [
            (Signal::Truncation, truncated, cfg.truncation),
            (Signal::ZeroStd, zero_std, cfg.zero_std),
        ]
        .into_iter()
        .enumerate()
        {
            if value >= limit.warn {
                warnings.push(signal);
            }
            streaks[k] = if value >= limit.stop {
                streaks[k] + 1
            } else {
                0
            };
            if limit.patience > 0 && streaks[k] >= limit.patience && stop.is_none() {
                stop = Some(signal);
            }
        }
        let s = GrpoStep {
            step,
            total,
            loss: loss_sum,
            lr,
            grad_norm: norm,
            reward_mean: mean,
            reward_std: std,
            frac_reward_zero_std: zero_std,
            clipped_ratio: truncated,
            clip_fraction: clipped_tokens as f64 / token_count.max(1) as f64,
            kl: (cfg.beta > 0.0).then(|| kl_sum / token_count.max(1) as f64),
            completion_length: completions.iter().map(|c| c.tokens.len()).sum::<usize>() as f64
                / n as f64,
            generate_seconds,
            reward_seconds,
            train_seconds: t2.elapsed().as_secs_f64(),
            warnings,
        };
        on_step(&s);
        log.steps.push(s);
        step += 1;
        let over_budget = control.max_seconds.is_some_and(|m| elapsed(&started) >= m);
        let eval_now = step == total
            || over_budget
            || stop.is_some()
            || (control.eval_every > 0 && step.is_multiple_of(control.eval_every));
        if eval_now {
            score_dev(lm, &mut log, &mut best_weights, step)?;
        }
        if let Some(ck) = &control.checkpoints {
            if step.is_multiple_of(ck.every.max(1)) || step == total {
                write_checkpoint(
                    ck,
                    &log,
                    &opt,
                    &best_weights,
                    step,
                    elapsed(&started),
                    streaks,
                )?;
            }
            if ck.stop_after == Some(step) {
                log.ended = Ended::Interrupted;
                log.seconds = elapsed(&started);
                return Ok(log);
            }
        }
        if let Some(signal) = stop {
            log.ended = Ended::NotLearning;
            log.stopped_by = Some(signal);
            break;
        }
        if over_budget && step < total {
            log.ended = Ended::Budget;
            break;
        }
    }
    if let (Some(b), Some(w)) = (log.best, &best_weights)
        && log.dev.last().is_some_and(|last| last.step != b.step)
    {
        restore(&vars, w)?;
    }
    log.seconds = elapsed(&started);
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn lm(dir: &std::path::Path) -> Lm {
        testing::sharp_lm(dir).unwrap()
    }

    fn prompts(lm: &Lm) -> Vec<Prompt> {
        [
            "hello",
            "where is my order",
            "refund please",
            "thanks",
            "I need help",
            "ok",
        ]
        .iter()
        .enumerate()
        .map(|(i, p)| Prompt {
            id: format!("p{i}"),
            ids: lm.encode(p).unwrap(),
        })
        .collect()
    }

    /// The share of a completion's tokens that are lowercase letters (ids of bytes a..z).
    fn letters(c: &Completion) -> f64 {
        let lo = u32::from(b'a') + testing::SPECIAL.len() as u32;
        let hi = u32::from(b'z') + testing::SPECIAL.len() as u32;
        c.tokens.iter().filter(|&&t| (lo..=hi).contains(&t)).count() as f64
            / c.tokens.len().max(1) as f64
    }

    fn cfg() -> GrpoConfig {
        GrpoConfig {
            steps: 30,
            max_completion_length: 8,
            lr: 2e-2,
            seed: 3,
            // The tiny model never says EOS within 8 tokens: no truncation stop in these tests.
            truncation: Limit {
                warn: 0.5,
                stop: 1.1,
                patience: 0,
            },
            ..GrpoConfig::default()
        }
    }

    #[test]
    fn advantages_are_group_normalised_and_zero_without_variance() {
        let a = advantages(&[1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.5, 0.5], 4, true);
        // mean 0.5, unbiased std sqrt(1/3).
        let s = (1.0f64 / 3.0).sqrt();
        assert!((a[0] - 0.5 / (s + 1e-4)).abs() < 1e-12);
        assert!((a[1] + 0.5 / (s + 1e-4)).abs() < 1e-12);
        assert!(a[4..].iter().all(|&x| x == 0.0));
        let b = advantages(&[3.0, 1.0], 2, false);
        assert_eq!(b, vec![1.0, -1.0]);
    }

    #[test]
    fn settings_that_cannot_train_are_named() {
        let bad = GrpoConfig {
            num_generations: 1,
            ..GrpoConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("num_generations = 1"));
        let greedy = GrpoConfig {
            temperature: 0.0,
            ..GrpoConfig::default()
        };
        assert!(greedy.validate().unwrap_err().contains("temperature"));
    }

    #[test]
    fn the_reward_goes_up_and_every_step_reports_its_signals() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = lm(dir.path());
        let p = prompts(&lm);
        let mut reward =
            |cs: &[Completion]| -> Result<Vec<f64>> { Ok(cs.iter().map(letters).collect()) };
        let log = train(
            &mut lm,
            &p,
            &cfg(),
            &mut reward,
            Control::default(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(log.steps.len(), 30);
        assert_eq!(log.ended, Ended::Finished);
        let mean = |s: &[GrpoStep]| s.iter().map(|s| s.reward_mean).sum::<f64>() / s.len() as f64;
        let (first, last) = (mean(&log.steps[..5]), mean(&log.steps[25..]));
        // Measured: 0.16 over the first five steps, 0.96 over the last five.
        assert!(last > first + 0.5, "reward {first:.3} -> {last:.3}");
        for s in &log.steps {
            assert!((0.0..=1.0).contains(&s.clipped_ratio));
            assert_eq!(
                s.warnings.contains(&Signal::Truncation),
                s.clipped_ratio >= 0.5
            );
            assert!(s.completion_length > 0.0 && s.completion_length <= 8.0);
            assert_eq!(s.clip_fraction, 0.0, "one iteration never clips");
            assert!(s.kl.is_none());
            assert!(s.generate_seconds > 0.0 && s.train_seconds > 0.0);
            assert!((0.0..=1.0).contains(&s.frac_reward_zero_std));
        }
        assert!(log.steps.iter().any(|s| s.grad_norm > 0.0));
    }

    #[test]
    fn a_constant_reward_stops_training_and_names_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = lm(dir.path());
        let p = prompts(&lm);
        let before = lm.decoder().tensors().unwrap();
        let mut reward = |cs: &[Completion]| -> Result<Vec<f64>> { Ok(vec![1.0; cs.len()]) };
        let log = train(
            &mut lm,
            &p,
            &cfg(),
            &mut reward,
            Control::default(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(log.ended, Ended::NotLearning);
        assert_eq!(log.stopped_by, Some(Signal::ZeroStd));
        assert_eq!(log.steps.len(), cfg().zero_std.patience);
        for s in &log.steps {
            assert_eq!(s.frac_reward_zero_std, 1.0);
            assert_eq!(s.loss, 0.0);
            assert_eq!(s.grad_norm, 0.0);
        }
        // No advantage, no change.
        let after = lm.decoder().tensors().unwrap();
        for (n, t) in &before {
            assert_eq!(testing::max_diff(t, &after[n]), 0.0, "{n}");
        }
        assert!(Signal::ZeroStd.advice(&cfg()).contains("num_generations"));
    }

    #[test]
    fn truncation_past_its_limit_stops_training() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = lm(dir.path());
        let p = prompts(&lm);
        let c = GrpoConfig {
            truncation: Limit {
                warn: 0.5,
                stop: 0.5,
                patience: 3,
            },
            ..cfg()
        };
        let mut reward =
            |cs: &[Completion]| -> Result<Vec<f64>> { Ok(cs.iter().map(letters).collect()) };
        let log = train(
            &mut lm,
            &p,
            &c,
            &mut reward,
            Control::default(),
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(log.ended, Ended::NotLearning);
        assert_eq!(log.stopped_by, Some(Signal::Truncation));
        let n = log.steps.len();
        assert!((3..30).contains(&n), "{n}");
        assert!(log.steps[n - 3..].iter().all(|s| s.clipped_ratio >= 0.5));
        assert!(
            Signal::Truncation
                .advice(&c)
                .contains("max_completion_length = 8")
        );
    }

    #[test]
    fn kl_to_the_start_is_zero_at_first_and_grows() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = lm(dir.path());
        let p = prompts(&lm);
        let c = GrpoConfig {
            beta: 0.04,
            steps: 6,
            num_iterations: 2,
            epsilon: 0.01,
            epsilon_high: 0.01,
            ..cfg()
        };
        let mut reward =
            |cs: &[Completion]| -> Result<Vec<f64>> { Ok(cs.iter().map(letters).collect()) };
        let log = train(
            &mut lm,
            &p,
            &c,
            &mut reward,
            Control::default(),
            &mut |_| {},
        )
        .unwrap();
        // The first step's second iteration already moved: KL is measured before each update.
        assert!(log.steps[0].kl.unwrap() >= 0.0);
        assert!(log.steps[5].kl.unwrap() > 0.0);
        // Two iterations with a tight clip range: the second clips some tokens.
        assert!(log.steps.iter().any(|s| s.clip_fraction > 0.0));
    }

    #[test]
    fn a_resumed_run_ends_bit_identical_and_keeps_the_best_dev_weights() {
        let dir = tempfile::tempdir().unwrap();
        let base = lm(dir.path());
        let p = prompts(&base);
        let c = GrpoConfig { steps: 6, ..cfg() };
        let run = |stop_after: Option<u64>, ck_dir: &std::path::Path| {
            let mut lm = Lm::load(&dir.path().join("sharp.gguf")).unwrap();
            let mut reward =
                |cs: &[Completion]| -> Result<Vec<f64>> { Ok(cs.iter().map(letters).collect()) };
            // The dev score: letters in greedy completions of the prompts.
            let mut dev = |lm: &mut Lm| -> Result<f64> {
                let g = crate::GenerateConfig {
                    max_new_tokens: 8,
                    ..Default::default()
                };
                let mut sum = 0.0;
                for q in &p {
                    let out = lm.generate_ids(&q.ids, &g)?;
                    sum += letters(&Completion {
                        prompt: 0,
                        text: out.text,
                        tokens: out.tokens,
                        truncated: false,
                    });
                }
                Ok(sum)
            };
            let control = Control {
                checkpoints: Some(Checkpoints {
                    dir: ck_dir.to_path_buf(),
                    key: "k".into(),
                    every: 1,
                    stop_after,
                }),
                dev_score: Some(&mut dev),
                eval_every: 2,
                max_seconds: None,
            };
            let log = train(&mut lm, &p, &c, &mut reward, control, &mut |_| {}).unwrap();
            (log, lm.decoder().tensors().unwrap())
        };
        let whole = dir.path().join("whole");
        let (full, w_full) = run(None, &whole);
        assert_eq!(
            full.dev.iter().map(|d| d.step).collect::<Vec<_>>(),
            vec![0, 2, 4, 6]
        );
        let parted = dir.path().join("parted");
        let (first, _) = run(Some(3), &parted);
        assert_eq!(first.ended, Ended::Interrupted);
        let (resumed, w_resumed) = run(None, &parted);
        assert_eq!(resumed.resumed_at, Some(3));
        assert_eq!(full.dev, resumed.dev);
        assert_eq!(full.best, resumed.best);
        assert_eq!(
            full.steps.iter().map(|s| s.reward_mean).collect::<Vec<_>>(),
            resumed
                .steps
                .iter()
                .map(|s| s.reward_mean)
                .collect::<Vec<_>>()
        );
        for (n, t) in &w_full {
            assert_eq!(testing::max_diff(t, &w_resumed[n]), 0.0, "{n}");
        }
    }
}
