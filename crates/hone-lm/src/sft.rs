//! Supervised fine-tuning: examples encoded with assistant-only loss masks (found by rendering
//! growing prefixes of each conversation and comparing token ids, never by searching for the answer
//! string), truncation from the prompt's start, and the training loop (AdamW, warmup and linear
//! decay, clipping, gradient accumulation, seeded order).
//!
//! Padding uses the pad token, which for many models is the EOS token; which tokens train is the
//! example's own mask, never "is not padding", so a final EOS stays trainable and the model learns to
//! stop.

use std::path::PathBuf;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::chat::Message;
use crate::generate::Lm;
use crate::{LmError, Result};

/// One training sequence: token ids and, per token, whether the loss predicts it.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub ids: Vec<u32>,
    pub train: Vec<bool>,
}

impl Example {
    /// How many tokens the loss predicts.
    pub fn trainable(&self) -> usize {
        self.train.iter().filter(|&&t| t).count()
    }
}

/// An encoded example and whether it was cut to fit `max_length`.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub example: Example,
    pub truncated: bool,
}

/// The conversation of a prompt/target pair: an optional system turn, the prompt as the user's turn
/// and the target as the assistant's.
pub fn pair_messages(system: Option<&str>, prompt: &str, target: &str) -> Vec<Message> {
    let mut m = Vec::with_capacity(3);
    if let Some(s) = system {
        m.push(Message::new("system", s));
    }
    m.push(Message::new("user", prompt));
    m.push(Message::new("assistant", target));
    m
}

fn zero_trainable(id: &str) -> LmError {
    LmError::Data(format!(
        "example `{id}` has no trainable tokens: its assistant turns render to nothing (a template that drops them?) or were cut away by max_length"
    ))
}

/// Encodes a conversation with the model's chat template. The tokens of assistant turn `i` are those
/// that rendering `messages[..=i]` adds to rendering `messages[..i]` with the generation prompt, up to
/// and including the EOS token (what follows EOS inside the turn, such as a newline, does not train).
/// Longer than `max_length`: tokens are cut from the start, so the last answer and its EOS stay.
pub fn encode_chat(lm: &Lm, id: &str, messages: &[Message], max_length: usize) -> Result<Encoded> {
    let template = lm
        .template()
        .ok_or_else(|| LmError::Template("the model has no chat template".into()))?;
    let full = lm.encode(&template.render(messages, false)?)?;
    let mut train = vec![false; full.len()];
    let eos = lm.info().eos;
    for (i, m) in messages.iter().enumerate() {
        if m.role != "assistant" {
            continue;
        }
        let before = lm.encode(&template.render(&messages[..i], true)?)?;
        let upto = lm.encode(&template.render(&messages[..=i], false)?)?;
        let prefix_ok = |a: &[u32], b: &[u32]| a.len() <= b.len() && b[..a.len()] == *a;
        if !prefix_ok(&before, &upto) || !prefix_ok(&upto, &full) {
            return Err(LmError::Data(format!(
                "example `{id}`: the chat template's rendering of turn {} is not a token prefix of the whole conversation, so its answer cannot be located by token ids",
                i + 1
            )));
        }
        let span = &upto[before.len()..];
        let end = span
            .iter()
            .position(|&t| t == eos)
            .map_or(span.len(), |p| p + 1);
        for t in &mut train[before.len()..before.len() + end] {
            *t = true;
        }
    }
    finish(id, full, train, max_length)
}

/// Encodes a prompt and its target without a chat template: the prompt's tokens, then the target's
/// and EOS, which train.
pub fn encode_plain(
    lm: &Lm,
    id: &str,
    prompt: &str,
    target: &str,
    max_length: usize,
) -> Result<Encoded> {
    let mut ids = lm.encode(prompt)?;
    let n_prompt = ids.len();
    let enc = lm
        .tokenizer()
        .encode(target, false)
        .map_err(|e| LmError::Tokenizer(e.to_string()))?;
    ids.extend_from_slice(enc.get_ids());
    ids.push(lm.info().eos);
    let train = (0..ids.len()).map(|j| j >= n_prompt).collect();
    finish(id, ids, train, max_length)
}

fn finish(id: &str, mut ids: Vec<u32>, mut train: Vec<bool>, max_length: usize) -> Result<Encoded> {
    let max_length = max_length.max(2);
    let truncated = ids.len() > max_length;
    if truncated {
        let cut = ids.len() - max_length;
        ids.drain(..cut);
        train.drain(..cut);
    }
    // The first token is never predicted (nothing comes before it).
    if let Some(t) = train.first_mut() {
        *t = false;
    }
    let example = Example {
        id: id.to_string(),
        ids,
        train,
    };
    if example.trainable() == 0 {
        return Err(zero_trainable(id));
    }
    Ok(Encoded { example, truncated })
}

/// The encoded example with its trainable spans marked `[[…]]`, decoded (for `hone data check`).
pub fn show(lm: &Lm, ex: &Example) -> Result<String> {
    let mut out = String::new();
    let mut j = 0;
    while j < ex.ids.len() {
        let on = ex.train[j];
        let start = j;
        while j < ex.ids.len() && ex.train[j] == on {
            j += 1;
        }
        let text = lm
            .tokenizer()
            .decode(&ex.ids[start..j], false)
            .map_err(|e| LmError::Tokenizer(e.to_string()))?;
        if on {
            out.push_str("[[");
            out.push_str(&text);
            out.push_str("]]");
        } else {
            out.push_str(&text);
        }
    }
    Ok(out)
}

/// Training settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SftConfig {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    /// Gradients are scaled to at most this global norm (0: no clipping).
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Sequences run through the model at once, a batch being split into micro-batches of this
    /// size with the same gradient (0: the largest that fits [`ACTIVATION_BUDGET`]).
    pub micro_batch: usize,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            epochs: 3,
            lr: 2e-4,
            batch_size: 8,
            grad_accum: 1,
            warmup_ratio: 0.03,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            seed: 0,
            micro_batch: 0,
        }
    }
}

/// One optimiser step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub step: u64,
    pub total: u64,
    pub epoch: usize,
    /// Mean loss per trainable token over the step's micro-batches.
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens: usize,
}

/// The mean cross-entropy of the trainable tokens of `batch` (right-padded with `pad`), and their
/// count. Differentiable.
pub fn batch_loss(
    lm: &Lm,
    batch: &[&Example],
    dropout: Option<&mut hone_neural::Dropout>,
) -> Result<(Tensor, usize)> {
    let n: usize = batch.iter().map(|e| trainable_targets(e)).sum();
    Ok((summed_loss(lm, batch, dropout, n, None)?, n))
}

/// The tokens of `e` the loss predicts from the one before (the first token has none before it).
fn trainable_targets(e: &Example) -> usize {
    e.train.iter().skip(1).filter(|&&t| t).count()
}

/// The cross-entropy of `batch`'s trainable tokens summed and divided by `denominator`: a batch's
/// micro-batches, each divided by the whole batch's count, add up to the batch's mean. The hidden
/// states of the trainable positions alone reach the output projection, and the log-probability of
/// each target is one fused op: at SmolLM2's 49,152-token vocabulary the logits of a batch of 8 × 256
/// are 400 MB per buffer, and prompt and padding positions need none.
fn summed_loss(
    lm: &Lm,
    batch: &[&Example],
    dropout: Option<&mut hone_neural::Dropout>,
    denominator: usize,
    teacher: Option<&Teacher<'_>>,
) -> Result<Tensor> {
    let longest = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    if longest < 2 {
        return Err(LmError::Data(
            "a batch of sequences shorter than two tokens".into(),
        ));
    }
    let pad = lm.info().pad.unwrap_or(lm.info().eos);
    let t = longest - 1;
    let mut inputs = Vec::with_capacity(batch.len() * t);
    let (mut rows, mut targets) = (Vec::new(), Vec::new());
    for (r, e) in batch.iter().enumerate() {
        for j in 0..t {
            inputs.push(e.ids.get(j).copied().unwrap_or(pad));
            if e.train.get(j + 1).copied().unwrap_or(false) {
                rows.push((r * t + j) as u32);
                targets.push(e.ids[j + 1]);
            }
        }
    }
    let dev = lm.decoder().device();
    let inputs = Tensor::from_vec(inputs, (batch.len(), t), dev)?;
    let hidden = lm.decoder().hidden_train(&inputs, dropout)?;
    if rows.is_empty() {
        // Nothing to predict: a zero that still depends on the weights (gradients of zero).
        return Ok((hidden.sum_all()? * 0.0)?);
    }
    let h = hidden.dim(2)?;
    let n = rows.len();
    let rows = Tensor::from_vec(rows, n, dev)?;
    let picked_rows = hidden
        .reshape((batch.len() * t, h))?
        .index_select(&rows, 0)?;
    let logits = lm.decoder().logits(&picked_rows)?;
    let logp = hone_neural::fused::picked_log_softmax(&logits, &targets)?;
    let ce = (logp.sum_all()? * (-1.0 / denominator.max(1) as f64))?;
    let Some(teacher) = teacher else {
        return Ok(ce);
    };
    // The teacher reads the same tokens; its distribution at the same positions is a constant.
    // Its hidden size is its own (a larger teacher with the same tokenizer is the usual case).
    let t_hidden = teacher.lm.decoder().hidden_train(&inputs, None)?;
    let th = t_hidden.dim(2)?;
    let t_rows = t_hidden
        .reshape((batch.len() * t, th))?
        .index_select(&rows, 0)?;
    let t_logits = teacher.lm.decoder().logits(&t_rows)?.detach();
    let kd =
        (distill_kl(&logits, &t_logits, teacher.temperature)? * (1.0 / denominator.max(1) as f64))?;
    Ok(((ce * teacher.alpha)? + (kd * (1.0 - teacher.alpha))?)?)
}

/// `T² · Σ_positions KL(softmax(teacher / T) ‖ softmax(student / T))` (Hinton et al.'s scaling, so
/// the gradient's size does not shrink with T). Differentiable in `student`.
pub fn distill_kl(student: &Tensor, teacher: &Tensor, temperature: f64) -> Result<Tensor> {
    let log_softmax = |x: &Tensor| -> Result<Tensor> {
        let x = (x / temperature)?;
        Ok(candle_nn::ops::log_softmax(&x, candle_core::D::Minus1)?)
    };
    let ls = log_softmax(student)?;
    let lt = log_softmax(teacher)?;
    let pt = lt.exp()?;
    let kl = (pt * (lt - ls)?)?.sum_all()?;
    Ok((kl * (temperature * temperature))?)
}

/// A frozen teacher whose token distributions a student learns (the tokenizers must match):
/// the loss is `alpha · cross-entropy + (1 − alpha) · T² · KL`.
pub struct Teacher<'a> {
    pub lm: &'a Lm,
    pub temperature: f64,
    pub alpha: f64,
}

/// The activation memory an automatic micro-batch stays under (2 GiB): a batch of 8 × 256 tokens of
/// SmolLM2-135M keeps far more than that for backward, and on a laptop memory runs out long before
/// the smaller matrix products cost measurable time.
pub const ACTIVATION_BUDGET: u64 = 2 << 30;

/// Bytes of activations a training pass keeps for backward per sequence of `len` tokens, from the
/// buffers the decoder's forward pass allocates per layer (calibrated against measured peak RSS on
/// SmolLM2-135M, see `examples/lm_train_step.rs`).
pub fn activation_bytes(cfg: &crate::DecoderConfig, len: usize, lora: bool) -> u64 {
    let (h, i, kv) = (
        cfg.hidden as u64,
        cfg.ffn as u64,
        (cfg.kv_heads * cfg.head_dim()) as u64,
    );
    let len = len as u64;
    // Per token and layer: the hidden-sized buffers (norms, rotary, residuals, projections), the
    // key/value ones, the MLP's, and the attention matrix per head (its scores, mask and softmax).
    let mut per_token = HIDDEN_BUFFERS * h + KV_BUFFERS * kv + MLP_BUFFERS * i;
    if lora {
        per_token += LORA_BUFFERS * h + LORA_MLP_BUFFERS * i;
    }
    let attention = ATTENTION_BUFFERS * cfg.heads as u64 * len;
    4 * cfg.layers as u64 * len * (per_token + attention)
}

const HIDDEN_BUFFERS: u64 = 5;
const KV_BUFFERS: u64 = 12;
const MLP_BUFFERS: u64 = 6;
const LORA_BUFFERS: u64 = 10;
const LORA_MLP_BUFFERS: u64 = 3;
const ATTENTION_BUFFERS: u64 = 4;

/// The micro-batch `cfg` asks for, or the largest (up to the batch size) whose longest sequences'
/// activations fit [`ACTIVATION_BUDGET`].
pub fn micro_batch(lm: &Lm, examples: &[Example], cfg: &SftConfig) -> usize {
    let bs = cfg.batch_size.max(1);
    if cfg.micro_batch > 0 {
        return cfg.micro_batch.min(bs);
    }
    let longest = examples.iter().map(|e| e.ids.len()).max().unwrap_or(1);
    let per = activation_bytes(
        lm.decoder().config(),
        longest,
        lm.decoder().lora().is_some(),
    )
    .max(1);
    ((ACTIVATION_BUDGET / per) as usize).clamp(1, bs)
}

/// The padded tokens each optimiser step of [`train_with`] runs through the model (per micro-batch,
/// its rows times its longest sequence), in training order over every epoch: what a step's time
/// follows, for estimates made from the first steps.
pub fn step_work(examples: &[Example], cfg: &SftConfig, micro: usize) -> Vec<u64> {
    let (bs, accum, micro) = (cfg.batch_size.max(1), cfg.grad_accum.max(1), micro.max(1));
    let mut out = Vec::new();
    for epoch in 0..cfg.epochs {
        let order = epoch_order(examples.len(), cfg.seed, epoch);
        let batches: Vec<&[usize]> = order.chunks(bs).collect();
        for group in batches.chunks(accum) {
            let work = group
                .iter()
                .flat_map(|b| b.chunks(micro))
                .map(|part| {
                    let longest = part.iter().map(|&i| examples[i].ids.len()).max();
                    (part.len() * longest.unwrap_or(0)) as u64
                })
                .sum();
            out.push(work);
        }
    }
    out
}

/// Where training checkpoints go and how often they are written.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoints {
    pub dir: PathBuf,
    /// What else the run depends on (the base model, adapter settings): a checkpoint made with
    /// another key, like one made with other settings or examples, is refused.
    pub key: String,
    /// A checkpoint after every this many optimiser steps (and at every epoch's end).
    pub every: u64,
    /// Return right after the checkpoint of this step (an interruption, for tests).
    pub stop_after: Option<u64>,
}

/// What can end training before its last epoch, and what it watches.
#[derive(Default)]
pub struct Control<'a> {
    /// Resumable checkpoints; a checkpoint in the directory made with the same settings and
    /// examples is resumed exactly, one made with others is refused.
    pub checkpoints: Option<Checkpoints>,
    /// Scores the model on dev after every epoch (higher is better); with it the best epoch's
    /// weights are the ones kept.
    #[allow(clippy::type_complexity)]
    pub dev_score: Option<&'a mut dyn FnMut(&mut Lm) -> Result<f64>>,
    /// Stop after this many epochs without a better dev score (0: never stop early).
    pub patience: usize,
    /// Stop cleanly once training has run this long, counting the time before a resume.
    pub max_seconds: Option<f64>,
    /// Learn a teacher's token distributions besides the targets (token-level distillation).
    pub teacher: Option<Teacher<'a>>,
}

/// Why training ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Ended {
    /// Every epoch ran.
    #[default]
    Finished,
    /// The dev score stopped improving for `patience` epochs.
    EarlyStop,
    /// The time (or cost) budget ran out.
    Budget,
    /// [`Checkpoints::stop_after`] was reached.
    Interrupted,
    /// GRPO: a signal that nothing is being learned (most completions truncated, most groups
    /// without reward variance) persisted past its limit.
    NotLearning,
}

/// The dev score after an epoch (or after the steps a budget left of one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DevScore {
    pub epoch: usize,
    /// Optimiser steps done when it was measured.
    pub step: u64,
    pub score: f64,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainLog {
    pub steps: Vec<Step>,
    pub dev: Vec<DevScore>,
    /// The dev measurement whose weights were kept (`None`: the last weights, no dev scores).
    pub best: Option<DevScore>,
    pub ended: Ended,
    /// The step a checkpoint was resumed at.
    pub resumed_at: Option<u64>,
    /// Training seconds, counting those before a resume.
    pub seconds: f64,
    /// The sequences run through the model at once (see [`micro_batch`]).
    pub micro_batch: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    /// The settings and examples the checkpoint was made with.
    fingerprint: String,
    step: u64,
    steps: Vec<StepMeta>,
    dev: Vec<DevScore>,
    best: Option<DevScore>,
    since_best: usize,
    seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepMeta {
    loss: f64,
    lr: f64,
    grad_norm: f64,
    tokens: usize,
}

/// A digest of what training depends on: `key`, the settings, every example's tokens and mask, and
/// the names and shapes of the trainable weights.
pub fn fingerprint(
    key: &str,
    cfg: &SftConfig,
    examples: &[Example],
    trainable: &[(String, candle_core::Var)],
) -> String {
    let mut h = blake3::Hasher::new();
    h.update(key.as_bytes());
    h.update(format!("{cfg:?}").as_bytes());
    for e in examples {
        h.update(e.id.as_bytes());
        for (&i, &t) in e.ids.iter().zip(&e.train) {
            h.update(&i.to_le_bytes());
            h.update(&[u8::from(t)]);
        }
    }
    for (n, v) in trainable {
        h.update(format!("{n}{:?}", v.shape()).as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// The example order of `epoch`: a shuffle seeded by the run seed and the epoch alone, so a resumed
/// run sees the same order.
pub(crate) fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng =
        hone_neural::SeededRng::new(seed ^ (epoch as u64 + 1).wrapping_mul(0xa076_1d64_78bd_642f));
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut order);
    order
}

/// Copies of `vars`' current values (the best weights so far, a checkpoint's model).
pub(crate) fn snapshot(vars: &[(String, candle_core::Var)]) -> Result<Vec<(String, Tensor)>> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect()
}

fn restore(
    vars: &[(String, candle_core::Var)],
    get: &dyn Fn(&str) -> Option<Tensor>,
) -> Result<()> {
    for (n, v) in vars {
        let t =
            get(n).ok_or_else(|| LmError::Model(format!("the checkpoint has no tensor {n}")))?;
        v.set(&t.to_device(v.device())?)?;
    }
    Ok(())
}

/// The trainable weights of `lm`'s decoder (every weight, or its LoRA adapters) by name, the same
/// as a plain list, and AdamW over them: what every training loop (SFT, GRPO, DPO) starts from.
#[allow(clippy::type_complexity)]
pub(crate) fn optimizer(
    lm: &Lm,
    lr: f64,
    weight_decay: f64,
) -> Result<(
    Vec<(String, candle_core::Var)>,
    Vec<candle_core::Var>,
    hone_neural::optim::FusedAdamW,
)> {
    let vars = lm.decoder().trainable();
    let list = vars.iter().map(|(_, v)| v.clone()).collect();
    let opt = hone_neural::optim::FusedAdamW::new(
        vars.clone(),
        hone_neural::optim::AdamWConfig {
            lr,
            weight_decay,
            ..Default::default()
        },
    )
    .map_err(|e| LmError::Model(e.to_string()))?;
    Ok((vars, list, opt))
}

/// Fine-tunes the trainable weights of `lm`'s decoder (every weight, or its LoRA adapters) on
/// `examples`. `on_step` sees every optimiser step.
pub fn train(
    lm: &mut Lm,
    examples: &[Example],
    cfg: &SftConfig,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Vec<Step>> {
    Ok(train_with(lm, examples, cfg, Control::default(), on_step)?.steps)
}

/// [`train`] with checkpoints, early stopping on a dev score and a time budget. Every random choice
/// (the order of an epoch, the dropout of a step) is seeded by the run seed and the epoch or step
/// alone, so a run resumed from a checkpoint ends bit-identical to one never interrupted.
pub fn train_with(
    lm: &mut Lm,
    examples: &[Example],
    cfg: &SftConfig,
    mut control: Control<'_>,
    on_step: &mut dyn FnMut(&Step),
) -> Result<TrainLog> {
    if examples.is_empty() {
        return Err(LmError::Data("no training examples".into()));
    }
    let nerr = |e: hone_core::Error| LmError::Model(e.to_string());
    let (vars, var_list, mut opt) = optimizer(lm, cfg.lr, cfg.weight_decay)?;
    let bs = cfg.batch_size.max(1);
    let micro = micro_batch(lm, examples, cfg);
    let accum = cfg.grad_accum.max(1);
    let batches_per_epoch = examples.len().div_ceil(bs);
    let steps_per_epoch = batches_per_epoch.div_ceil(accum) as u64;
    let total = steps_per_epoch * cfg.epochs as u64;
    let warmup = (cfg.warmup_ratio * total as f64).round() as u64;
    let key = control.checkpoints.as_ref().map_or("", |c| c.key.as_str());
    let print = fingerprint(key, cfg, examples, &vars);

    let mut log = TrainLog {
        micro_batch: micro,
        ..TrainLog::default()
    };
    let mut since_best = 0usize;
    let mut best_weights: Option<Vec<(String, Tensor)>> = None;
    let mut step = 0u64;
    let mut seconds_before = 0.0;
    if let Some(ck) = &control.checkpoints {
        let found = hone_neural::checkpoint::resume(
            &ck.dir,
            lm.decoder().device(),
            |m: &CheckpointMeta| m.fingerprint == print,
        )
        .map_err(|e| LmError::Caller(Box::new(e)))?;
        if let Some((meta, t)) = found {
            restore(&vars, &|n| t.get("model", n))?;
            opt.load_state(&|n| t.get("opt", n)).map_err(nerr)?;
            if meta.best.is_some() {
                let snap = vars
                    .iter()
                    .map(|(n, _)| {
                        t.get("best", n).map(|x| (n.clone(), x)).ok_or_else(|| {
                            LmError::Model(format!("the checkpoint has no best tensor {n}"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                best_weights = Some(snap);
            }
            step = meta.step;
            log.steps = meta
                .steps
                .iter()
                .enumerate()
                .map(|(i, s)| Step {
                    step: i as u64,
                    total,
                    epoch: (i as u64 / steps_per_epoch) as usize,
                    loss: s.loss,
                    lr: s.lr,
                    grad_norm: s.grad_norm,
                    tokens: s.tokens,
                })
                .collect();
            log.dev = meta.dev;
            log.best = meta.best;
            since_best = meta.since_best;
            seconds_before = meta.seconds;
            log.resumed_at = Some(step);
        }
    }
    let started = std::time::Instant::now();
    let elapsed = |started: &std::time::Instant| seconds_before + started.elapsed().as_secs_f64();
    let write_checkpoint = |ck: &Checkpoints,
                            log: &TrainLog,
                            opt: &hone_neural::optim::FusedAdamW,
                            best_weights: &Option<Vec<(String, Tensor)>>,
                            since_best: usize,
                            step: u64,
                            seconds: f64|
     -> Result<()> {
        let mut tensors = hone_neural::checkpoint::Tensors::default();
        tensors.insert("model", snapshot(&vars)?);
        tensors.insert("opt", opt.state().map_err(nerr)?);
        if let Some(b) = best_weights {
            tensors.insert("best", b.iter().cloned());
        }
        let meta = CheckpointMeta {
            fingerprint: print.clone(),
            step,
            steps: log
                .steps
                .iter()
                .map(|s| StepMeta {
                    loss: s.loss,
                    lr: s.lr,
                    grad_norm: s.grad_norm,
                    tokens: s.tokens,
                })
                .collect(),
            dev: log.dev.clone(),
            best: log.best,
            since_best,
            seconds,
        };
        hone_neural::checkpoint::write(&ck.dir, &tensors, &meta)
            .map_err(|e| LmError::Caller(Box::new(e)))
    };

    let mut dev_score = control.dev_score.take();
    // Scores dev and keeps the weights when they are the best so far; true when patience ran out.
    let mut score_dev = |lm: &mut Lm,
                         log: &mut TrainLog,
                         best_weights: &mut Option<Vec<(String, Tensor)>>,
                         since_best: &mut usize,
                         epoch: usize,
                         step: u64|
     -> Result<bool> {
        let Some(f) = dev_score.as_mut() else {
            return Ok(false);
        };
        let score = f(lm)?;
        let d = DevScore { epoch, step, score };
        log.dev.push(d);
        if log.best.is_none_or(|b| score > b.score) {
            log.best = Some(d);
            *best_weights = Some(snapshot(&vars)?);
            *since_best = 0;
        } else {
            *since_best += 1;
        }
        Ok(control.patience > 0 && *since_best >= control.patience)
    };

    'outer: while step < total {
        let epoch = (step / steps_per_epoch) as usize;
        let order = epoch_order(examples.len(), cfg.seed, epoch);
        let batches: Vec<Vec<&Example>> = order
            .chunks(bs)
            .map(|c| c.iter().map(|&i| &examples[i]).collect())
            .collect();
        let first = (step % steps_per_epoch) as usize;
        for group in batches.chunks(accum).skip(first) {
            // The dropout of a step depends on the seed and the step alone.
            let mut dropout = hone_neural::Dropout::new(
                (cfg.seed ^ 0x4c6f_5241).wrapping_add(step.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            );
            let mut acc = None;
            let (mut loss_sum, mut tokens) = (0.0, 0usize);
            for batch in group {
                // Micro-batches bound the activations kept for backward; each is divided by the
                // whole batch's token count, so their gradients add up to the batch's.
                let n: usize = batch.iter().map(|e| trainable_targets(e)).sum();
                for part in batch.chunks(micro) {
                    let loss =
                        summed_loss(lm, part, Some(&mut dropout), n, control.teacher.as_ref())?;
                    loss_sum += loss.to_scalar::<f32>()? as f64;
                    let grads = loss.backward()?;
                    hone_neural::optim::accumulate(&mut acc, grads, &var_list).map_err(nerr)?;
                }
                tokens += n;
            }
            let Some(grads) = acc else { continue };
            let scale = 1.0 / group.len() as f64;
            let norm = hone_neural::optim::grad_norm(&grads, &var_list).map_err(nerr)? * scale;
            let clip = hone_neural::optim::clip_factor(norm, cfg.max_grad_norm);
            let lr = hone_neural::optim::linear_schedule(cfg.lr, step, warmup, total);
            opt.step(&grads, lr, scale * clip).map_err(nerr)?;
            let s = Step {
                step,
                total,
                epoch,
                loss: loss_sum / group.len() as f64,
                lr,
                grad_norm: norm,
                tokens,
            };
            on_step(&s);
            log.steps.push(s);
            step += 1;
            let epoch_end = step.is_multiple_of(steps_per_epoch);
            let over_budget = control.max_seconds.is_some_and(|m| elapsed(&started) >= m);
            let budget_left = !(over_budget && step < total);
            let patience_out = (epoch_end || !budget_left)
                && score_dev(
                    lm,
                    &mut log,
                    &mut best_weights,
                    &mut since_best,
                    epoch,
                    step,
                )?;
            let stop = if !budget_left {
                Some(Ended::Budget)
            } else if patience_out && step < total {
                Some(Ended::EarlyStop)
            } else {
                None
            };
            if let Some(ck) = &control.checkpoints {
                if epoch_end || step.is_multiple_of(ck.every.max(1)) {
                    write_checkpoint(
                        ck,
                        &log,
                        &opt,
                        &best_weights,
                        since_best,
                        step,
                        elapsed(&started),
                    )?;
                }
                if ck.stop_after == Some(step) {
                    log.ended = Ended::Interrupted;
                    log.seconds = elapsed(&started);
                    return Ok(log);
                }
            }
            if let Some(e) = stop {
                log.ended = e;
                break 'outer;
            }
        }
    }
    // Keep the best dev epoch's weights.
    if let (Some(b), Some(w)) = (log.best, &best_weights)
        && log.dev.last().is_some_and(|last| last.step != b.step)
    {
        let map: std::collections::HashMap<String, Tensor> = w.iter().cloned().collect();
        restore(&vars, &|n| map.get(n).cloned())?;
    }
    log.seconds = elapsed(&started);
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GenerateConfig, StopReason, testing};

    fn sharp_lm(dir: &std::path::Path) -> Lm {
        testing::sharp_lm(dir).unwrap()
    }

    fn tiny_lm(dir: &std::path::Path) -> Lm {
        let path = dir.join("tiny.gguf");
        testing::tiny_gguf(&path, 11).unwrap();
        Lm::load(&path).unwrap()
    }

    #[test]
    fn step_work_counts_each_steps_padded_tokens_in_training_order() {
        let lens = [3usize, 5, 2, 7, 4];
        let examples: Vec<Example> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| Example {
                id: format!("e{i}"),
                ids: vec![1; n],
                train: vec![true; n],
            })
            .collect();
        let cfg = SftConfig {
            epochs: 2,
            batch_size: 2,
            seed: 5,
            ..Default::default()
        };
        // One sequence per pass: each epoch's work is every token once; 3 steps per epoch.
        let w = step_work(&examples, &cfg, 1);
        assert_eq!(w.len(), 6);
        assert_eq!(w[..3].iter().sum::<u64>(), 21);
        assert_eq!(w[3..].iter().sum::<u64>(), 21);
        // Whole batches pad to their longest: the first step's batch is the epoch's first two.
        let order = epoch_order(5, 5, 0);
        let padded = step_work(&examples, &cfg, 2);
        assert_eq!(padded[0], 2 * lens[order[0]].max(lens[order[1]]) as u64);
        assert_eq!(padded[2], lens[order[4]] as u64);
        // Accumulation folds two batches into one step.
        let accum = step_work(
            &examples,
            &SftConfig {
                grad_accum: 2,
                ..cfg
            },
            1,
        );
        assert_eq!((accum.len(), accum[0]), (4, w[0] + w[1]));
    }

    #[test]
    fn the_loss_mask_covers_the_answer_and_its_eos_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let lm = tiny_lm(dir.path());
        let msgs = vec![
            Message::new("user", "hi"),
            Message::new("assistant", "hello"),
            Message::new("user", "bye"),
            Message::new("assistant", "ciao"),
        ];
        let e = encode_chat(&lm, "t1", &msgs, 512).unwrap();
        assert!(!e.truncated);
        assert_eq!(
            show(&lm, &e.example).unwrap(),
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n[[hello<|im_end|>]]\n<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n[[ciao<|im_end|>]]\n"
        );
        // Cut from the start: the last answer and its EOS stay whole.
        let cut = encode_chat(&lm, "t1", &msgs, 12).unwrap();
        assert!(cut.truncated);
        assert_eq!(cut.example.ids.len(), 12);
        assert!(
            show(&lm, &cut.example)
                .unwrap()
                .ends_with("[[ciao<|im_end|>]]\n")
        );
    }

    #[test]
    fn an_example_with_no_trainable_tokens_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = tiny_lm(dir.path());
        // A template that never renders assistant turns.
        lm.set_template_source(
            "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}",
        )
        .unwrap();
        let e = encode_chat(
            &lm,
            "ticket-77",
            &pair_messages(None, "question", "answer"),
            512,
        )
        .unwrap_err();
        assert!(e.to_string().contains("ticket-77"), "{e}");
    }

    /// LoRA: the model is unchanged until it trains; only adapters train and the base weights stay
    /// bit-identical; the merged model gives the adapted model's logits.
    #[test]
    fn lora_trains_only_adapters_and_merges_to_the_same_logits() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = sharp_lm(dir.path());
        let base_before = lm.decoder().tensors().unwrap();
        let ids = Tensor::new(&[[5u32, 80, 81, 82, 9, 10]], &candle_core::Device::Cpu).unwrap();
        let before = lm.decoder().forward(&ids).unwrap();
        let cfg = crate::decoder::LoraConfig {
            rank: 4,
            alpha: 8.0,
            dropout: 0.05,
            targets: vec!["q_proj".into(), "v_proj".into(), "up_proj".into()],
        };
        lm.decoder_mut().add_lora(cfg.clone(), 1).unwrap();
        let unchanged = lm.decoder().forward(&ids).unwrap();
        assert_eq!(
            (&before - &unchanged)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
        // 2 layers × 3 modules × (A, B).
        assert_eq!(lm.decoder().trainable().len(), 12);
        let examples: Vec<Example> = [("ping", "pong"), ("2+2", "4")]
            .iter()
            .enumerate()
            .map(|(i, (p, t))| {
                encode_chat(&lm, &format!("e{i}"), &pair_messages(None, p, t), 128)
                    .unwrap()
                    .example
            })
            .collect();
        let log = train(
            &mut lm,
            &examples,
            &SftConfig {
                epochs: 150,
                lr: 3e-2,
                batch_size: 2,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
        assert!(
            log.last().unwrap().loss < log[0].loss * 0.5,
            "{} -> {}",
            log[0].loss,
            log.last().unwrap().loss
        );
        for (name, t) in lm.decoder().tensors().unwrap() {
            let d = (&t - &base_before[&name])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert_eq!(d.to_scalar::<f32>().unwrap(), 0.0, "{name} changed");
        }
        let adapted = lm.decoder().forward(&ids).unwrap();
        let merged = crate::Decoder::from_tensors(
            lm.decoder().config().clone(),
            lm.decoder().merged_tensors().unwrap(),
            &candle_core::Device::Cpu,
        )
        .unwrap()
        .forward(&ids)
        .unwrap();
        let diff = (&adapted - &merged)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let moved = (&adapted - &before)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            diff < 1e-5 && moved > 1e-2,
            "merged vs adapted {diff}, moved {moved}"
        );
        // Adapters saved under PEFT names load back onto a fresh base.
        let saved: std::collections::HashMap<String, Tensor> = lm
            .decoder()
            .lora_vars()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().copy().unwrap()))
            .collect();
        assert!(
            saved.contains_key("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight")
        );
        let mut fresh = sharp_lm(dir.path());
        fresh.decoder_mut().load_lora(cfg, &saved).unwrap();
        let again = fresh.decoder().forward(&ids).unwrap();
        assert_eq!(
            (&again - &adapted)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap(),
            0.0
        );
    }

    /// Padding is the EOS token here (as in SmolLM2); the final EOS still trains, so after SFT the
    /// model ends its answer by itself.
    #[test]
    fn after_sft_a_tiny_model_answers_and_stops_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = tiny_lm(dir.path());
        assert_eq!(lm.info().pad, Some(lm.info().eos));
        let pairs = [("ping", "pong"), ("color?", "blue sky"), ("2+2", "4")];
        let examples: Vec<Example> = pairs
            .iter()
            .enumerate()
            .map(|(i, (p, t))| {
                encode_chat(&lm, &format!("e{i}"), &pair_messages(None, p, t), 128)
                    .unwrap()
                    .example
            })
            .collect();
        let cfg = SftConfig {
            epochs: 200,
            lr: 1e-2,
            batch_size: 3,
            warmup_ratio: 0.05,
            ..Default::default()
        };
        let mut first = None;
        let log = train(&mut lm, &examples, &cfg, &mut |s| {
            first.get_or_insert(s.loss);
        })
        .unwrap();
        let last = log.last().unwrap().loss;
        assert!(
            last < 0.05 && last < first.unwrap() / 20.0,
            "{first:?} -> {last}"
        );
        for (p, t) in pairs {
            let prompt = lm.chat_prompt(&[Message::new("user", p)]).unwrap();
            let g = lm
                .generate(
                    &prompt,
                    &GenerateConfig {
                        max_new_tokens: 20,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!((g.text.as_str(), &g.stop), (t, &StopReason::Eos));
        }
    }

    fn three_examples(lm: &Lm) -> Vec<Example> {
        [
            ("ping", "pong"),
            ("color?", "blue sky"),
            ("2+2", "4"),
            ("hi", "hello"),
        ]
        .iter()
        .enumerate()
        .map(|(i, (p, t))| {
            encode_chat(lm, &format!("e{i}"), &pair_messages(None, p, t), 128)
                .unwrap()
                .example
        })
        .collect()
    }

    #[test]
    fn distill_kl_is_zero_on_itself_and_matches_the_definition() {
        let dev = candle_core::Device::Cpu;
        let a = Tensor::new(&[[1.0f32, 2.0, 0.5], [0.0, -1.0, 3.0]], &dev).unwrap();
        let b = Tensor::new(&[[0.5f32, 2.5, 0.0], [1.0, -1.0, 2.0]], &dev).unwrap();
        let zero = distill_kl(&a, &a, 2.0).unwrap().to_scalar::<f32>().unwrap();
        assert!(zero.abs() < 1e-6, "{zero}");
        // By hand: T² Σ_rows Σ_v p_t (ln p_t − ln p_s), softmax at T = 2.
        let soft = |r: &[f64]| {
            let z: f64 = r.iter().map(|x| (x / 2.0).exp()).sum();
            r.iter().map(|x| (x / 2.0).exp() / z).collect::<Vec<f64>>()
        };
        let (sa, sb) = (
            [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]],
            [[0.5, 2.5, 0.0], [1.0, -1.0, 2.0]],
        );
        let mut want = 0.0;
        for (ra, rb) in sa.iter().zip(&sb) {
            let (ps, pt) = (soft(ra), soft(rb));
            want += pt
                .iter()
                .zip(&ps)
                .map(|(t, s)| t * (t.ln() - s.ln()))
                .sum::<f64>();
        }
        want *= 4.0;
        let got = distill_kl(&a, &b, 2.0).unwrap().to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// Token-level distillation: with `alpha = 0` the student learns nothing but the teacher's
    /// distributions, and its divergence from them falls.
    #[test]
    fn a_student_distilled_from_a_teacher_moves_toward_its_distributions() {
        let dir = tempfile::tempdir().unwrap();
        // A wider teacher with the same tokenizer (the usual case: a larger sibling model).
        let wide = crate::DecoderConfig {
            hidden: 64,
            ffn: 128,
            ..testing::tiny_config()
        };
        let d = crate::Decoder::random(wide, 5, &candle_core::Device::Cpu).unwrap();
        testing::write_gguf(&d, &dir.path().join("wide.gguf")).unwrap();
        let teacher = Lm::load(&dir.path().join("wide.gguf")).unwrap();
        let mut student = tiny_lm(dir.path());
        let examples = three_examples(&student);
        let batch: Vec<&Example> = examples.iter().collect();
        let n: usize = batch.iter().map(|e| trainable_targets(e)).sum();
        let t = Teacher {
            lm: &teacher,
            temperature: 2.0,
            alpha: 0.0,
        };
        let kl = |s: &Lm| {
            summed_loss(s, &batch, None, n, Some(&t))
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let before = kl(&student);
        let cfg = SftConfig {
            epochs: 60,
            lr: 1e-2,
            batch_size: 4,
            ..Default::default()
        };
        let control = Control {
            teacher: Some(Teacher {
                lm: &teacher,
                temperature: 2.0,
                alpha: 0.0,
            }),
            ..Default::default()
        };
        train_with(&mut student, &examples, &cfg, control, &mut |_| {}).unwrap();
        let after = kl(&student);
        assert!(after < 0.2 * before, "{before} -> {after}");
    }

    /// Splitting a batch into micro-batches changes memory, not the update: each micro-batch's loss
    /// is divided by the whole batch's token count, so the gradients add up to the batch's.
    #[test]
    fn micro_batches_give_the_update_of_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let run = |micro: usize| {
            let mut lm = tiny_lm(dir.path());
            let ex = three_examples(&lm);
            let cfg = SftConfig {
                epochs: 2,
                lr: 1e-2,
                batch_size: 4,
                micro_batch: micro,
                ..Default::default()
            };
            let log = train_with(&mut lm, &ex, &cfg, Control::default(), &mut |_| {}).unwrap();
            assert_eq!(log.micro_batch, micro);
            (
                weights(&lm),
                log.steps.iter().map(|s| s.loss).collect::<Vec<_>>(),
            )
        };
        let (whole, loss_whole) = run(4);
        let (parts, loss_parts) = run(1);
        for (a, b) in loss_whole.iter().zip(&loss_parts) {
            assert!((a - b).abs() < 1e-5, "loss {a} vs {b}");
        }
        let diff = whole
            .iter()
            .zip(&parts)
            .flat_map(|((_, a), (_, b))| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "weights differ by {diff}");
        // The untrained model moved: the comparison is not between two untouched copies.
        let untouched = weights(&tiny_lm(dir.path()));
        assert_ne!(untouched, whole);
    }

    #[test]
    fn the_automatic_micro_batch_keeps_activations_under_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        let lm = tiny_lm(dir.path());
        let ex = three_examples(&lm);
        let cfg = SftConfig {
            batch_size: 8,
            ..Default::default()
        };
        // A tiny model fits the whole batch; SmolLM2-sized sequences of 256 tokens do not.
        assert_eq!(micro_batch(&lm, &ex, &cfg), 8);
        let smol = crate::DecoderConfig {
            vocab: 49152,
            hidden: 576,
            ffn: 1536,
            layers: 30,
            heads: 9,
            kv_heads: 3,
            rope_theta: 1e5,
            rms_eps: 1e-5,
            tied: true,
            context: 8192,
            attn_bias: false,
        };
        let per = activation_bytes(&smol, 256, true);
        assert!(per > 512 << 20 && per < 2 << 30, "{per}");
        let fits = (ACTIVATION_BUDGET / per) as usize;
        assert!((1..8).contains(&fits), "{fits}");
        assert_eq!(
            micro_batch(
                &lm,
                &ex,
                &SftConfig {
                    micro_batch: 3,
                    ..cfg.clone()
                }
            ),
            3
        );
        assert_eq!(
            micro_batch(
                &lm,
                &ex,
                &SftConfig {
                    micro_batch: 30,
                    ..cfg
                }
            ),
            8
        );
    }

    fn weights(lm: &Lm) -> Vec<(String, Vec<f32>)> {
        let mut w: Vec<(String, Vec<f32>)> = lm
            .decoder()
            .tensors()
            .unwrap()
            .into_iter()
            .map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
            .collect();
        w.sort_by(|a, b| a.0.cmp(&b.0));
        w
    }

    /// Interrupted after step 3 (mid-epoch, with dropout on adapters), then resumed: the weights and
    /// losses end bit-identical to a run never interrupted; other settings refuse the checkpoint.
    #[test]
    fn a_resumed_run_ends_bit_identical_to_an_uninterrupted_one() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SftConfig {
            epochs: 3,
            lr: 1e-2,
            batch_size: 1,
            grad_accum: 2,
            ..Default::default()
        };
        let lora = crate::decoder::LoraConfig {
            rank: 2,
            alpha: 4.0,
            dropout: 0.1,
            targets: vec!["q_proj".into(), "v_proj".into()],
        };
        let run = |ck: Option<Checkpoints>| {
            let mut lm = tiny_lm(dir.path());
            lm.decoder_mut().add_lora(lora.clone(), 7).unwrap();
            let ex = three_examples(&lm);
            let control = Control {
                checkpoints: ck,
                ..Default::default()
            };
            let log = train_with(&mut lm, &ex, &cfg, control, &mut |_| {}).unwrap();
            (log, weights(&lm))
        };
        let (whole, w_whole) = run(None);
        assert_eq!(whole.steps.len(), 6);
        let ck = Checkpoints {
            dir: dir.path().join("ck"),
            key: "tiny".into(),
            every: 1,
            stop_after: Some(3),
        };
        let (cut, _) = run(Some(ck.clone()));
        assert_eq!((cut.ended, cut.steps.len()), (Ended::Interrupted, 3));
        let (resumed, w_resumed) = run(Some(Checkpoints {
            stop_after: None,
            ..ck.clone()
        }));
        assert_eq!(resumed.resumed_at, Some(3));
        assert_eq!(resumed.ended, Ended::Finished);
        let losses = |l: &TrainLog| l.steps.iter().map(|s| s.loss.to_bits()).collect::<Vec<_>>();
        assert_eq!(losses(&resumed), losses(&whole));
        assert!(w_resumed == w_whole, "the resumed weights differ");
        // Other settings: refused, not resumed.
        let mut lm = tiny_lm(dir.path());
        lm.decoder_mut().add_lora(lora.clone(), 7).unwrap();
        let ex = three_examples(&lm);
        let other = SftConfig {
            lr: 5e-3,
            ..cfg.clone()
        };
        let control = Control {
            checkpoints: Some(ck),
            ..Default::default()
        };
        let e = train_with(&mut lm, &ex, &other, control, &mut |_| {}).unwrap_err();
        assert!(e.to_string().contains("other settings"), "{e}");
    }

    /// Early stopping keeps the best epoch's weights: with a dev score that peaks at epoch 1 and
    /// patience 2, training stops after epoch 3 and the weights are those of epoch 1.
    #[test]
    fn early_stopping_keeps_the_best_epochs_weights() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SftConfig {
            epochs: 10,
            lr: 1e-2,
            batch_size: 4,
            ..Default::default()
        };
        let mut lm = tiny_lm(dir.path());
        let ex = three_examples(&lm);
        let mut at_epoch: Vec<Vec<(String, Vec<f32>)>> = Vec::new();
        let scores = [0.1, 0.5, 0.4, 0.3, 0.9];
        let mut dev = |lm: &mut Lm| -> Result<f64> {
            at_epoch.push(weights(lm));
            Ok(scores[at_epoch.len() - 1])
        };
        let control = Control {
            dev_score: Some(&mut dev),
            patience: 2,
            ..Default::default()
        };
        let log = train_with(&mut lm, &ex, &cfg, control, &mut |_| {}).unwrap();
        assert_eq!(log.ended, Ended::EarlyStop);
        assert_eq!(log.dev.len(), 4);
        assert_eq!(log.best.map(|b| (b.epoch, b.score)), Some((1, 0.5)));
        assert!(weights(&lm) == at_epoch[1]);
        assert!(weights(&lm) != at_epoch[3]);
    }

    /// A budget of zero seconds stops after the first step, scores dev on what it has, and says so.
    #[test]
    fn a_time_budget_stops_cleanly_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut lm = tiny_lm(dir.path());
        let ex = three_examples(&lm);
        let mut dev = |_: &mut Lm| -> Result<f64> { Ok(0.25) };
        let control = Control {
            dev_score: Some(&mut dev),
            max_seconds: Some(0.0),
            ..Default::default()
        };
        let cfg = SftConfig {
            epochs: 4,
            batch_size: 1,
            ..Default::default()
        };
        let log = train_with(&mut lm, &ex, &cfg, control, &mut |_| {}).unwrap();
        assert_eq!((log.ended, log.steps.len()), (Ended::Budget, 1));
        assert_eq!(log.best.map(|b| (b.epoch, b.step)), Some((0, 1)));
    }
}
