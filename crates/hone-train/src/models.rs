//! The registry of model kinds: what a `[[model]]` in `hone.toml` may be, each kind's typed parameters,
//! and their validation when the project is loaded, so that an unknown kind, method or parameter, a wrong
//! type, a bad value or a missing path fails every command with `hone.toml:LINE:COL` and a hint before any
//! work starts.
//!
//! Kinds: `ngram` (the built-in n-gram linear model, optionally distilled from an earlier model) and
//! `encoder` (a Hugging Face encoder: frozen, fine-tuned or SetFit). `majority` is the built-in baseline:
//! it is never listed in `hone.toml` and runs beside every model ([`ModelEntry::majority`]). A new kind
//! adds a [`ModelKind`] variant, a [`ModelSpec`] variant with its typed parameters, and a branch in
//! [`validate`].

use std::path::{Path, PathBuf};

use hone_core::config::{Seg, Spans, closest, config_error, hint_for, resolve_path};
use hone_core::{Config, Error, Result};
use hone_encoder::Pooling;
use hone_encoder::finetune::{ContrastiveConfig, FinetuneConfig};
use hone_encoder::model::{EncoderParams, Method, parse_pooling};
use hone_model::NgramConfig;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The name of the built-in baseline (reserved: no `[[model]]` may use it).
pub const MAJORITY: &str = "majority";

/// A kind of model hone can train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelKind {
    /// The built-in baseline that always answers the most frequent training label; runs beside every
    /// model and is never listed in `hone.toml`.
    Majority,
    /// The built-in hashed n-gram linear model (`hone_model::NgramModel`).
    Ngram,
    /// A pretrained Hugging Face encoder (`hone_encoder::EncoderModel`).
    Encoder,
    /// A local causal language model (`hone_lm`), for `generate` tasks.
    Lm,
}

impl ModelKind {
    /// Every kind.
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Majority,
        ModelKind::Ngram,
        ModelKind::Encoder,
        ModelKind::Lm,
    ];
    /// The kinds a `[[model]]` may name.
    pub const LISTED: [ModelKind; 3] = [ModelKind::Ngram, ModelKind::Encoder, ModelKind::Lm];

    /// The kind's name in `hone.toml` and in run rows.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Majority => MAJORITY,
            ModelKind::Ngram => "ngram",
            ModelKind::Encoder => "encoder",
            ModelKind::Lm => "lm",
        }
    }

    /// The kind called `name`, listed or not.
    pub fn from_name(name: &str) -> Option<ModelKind> {
        ModelKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The keys `[model.params]` accepts for this kind.
    pub fn param_names(self) -> Vec<&'static str> {
        match self {
            ModelKind::Majority => Vec::new(),
            ModelKind::Ngram => NGRAM_PARAMS.iter().chain(DISTILL_PARAMS).copied().collect(),
            ModelKind::Encoder => ENCODER_PARAMS.to_vec(),
            ModelKind::Lm => LM_PARAMS.to_vec(),
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The keys of [`NgramConfig`] (checked against serde in the tests).
pub const NGRAM_PARAMS: &[&str] = &[
    "buckets",
    "word_ngrams",
    "char_ngrams",
    "char_within_words",
    "lowercase",
    "sublinear_tf",
    "idf",
    "max_epochs",
    "patience",
    "min_delta",
    "l2_grid",
    "dev_fraction",
    "refit",
    "refit_epochs",
    "seed",
    "threads",
];

/// The distillation keys of an `ngram` model's params.
pub const DISTILL_PARAMS: &[&str] = &[
    "distill_from",
    "distill_temperature",
    "distill_epochs",
    "distill_lr",
    "distill_l2",
    "distill_alpha",
    "distill_unlabelled",
];

/// The keys of [`EncoderParams`].
pub const ENCODER_PARAMS: &[&str] = &[
    "max_length",
    "batch",
    "c_grid",
    "normalize",
    "finetune",
    "contrastive",
    "checkpoint_dir",
    "device",
];

/// The keys of `[model.params.finetune]` ([`FinetuneConfig`]).
pub const FINETUNE_PARAMS: &[&str] = &[
    "epochs",
    "batch_size",
    "grad_accum",
    "lr",
    "head_lr",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "dropout",
    "patience",
    "seed",
    "eval_batch",
    "probe_init",
];

/// The keys of `[model.params.contrastive]` ([`ContrastiveConfig`]).
pub const CONTRASTIVE_PARAMS: &[&str] = &[
    "iterations",
    "epochs",
    "batch_size",
    "lr",
    "warmup_ratio",
    "seed",
];

/// The keys of [`LmParams`].
pub const LM_PARAMS: &[&str] = &[
    "epochs",
    "lr",
    "batch_size",
    "grad_accum",
    "warmup_ratio",
    "weight_decay",
    "max_grad_norm",
    "max_length",
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "lora_rank",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "system",
    "eval_batch",
    "device",
    "hidden",
    "layers",
    "heads",
    "kv_heads",
    "ffn",
    "vocab_size",
    "patience",
    "checkpoint_every",
    "checkpoint_dir",
    "micro_batch",
    "reward",
    "start_from",
    "steps",
    "prompts_per_step",
    "num_generations",
    "max_completion_length",
    "rollout_temperature",
    "beta",
    "epsilon",
    "epsilon_high",
    "num_iterations",
    "loss_type",
    "mask_truncated",
    "eval_every",
    "stop_truncated",
    "stop_zero_std",
    "stop_patience",
    "preferences",
    "preference_holdout",
    "distill_from",
    "distill_temperature",
    "distill_alpha",
];

/// A language model's `method` values.
pub const LM_METHODS: &[&str] = &["none", "lora", "sft", "pretrain", "grpo", "dpo"];

/// The name of the base model every generate run is compared with (method `none` on the first `lm`
/// model's path), added unless a `[[model]]` already is that.
pub const BASE: &str = "base";

/// How a language model is trained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LmMethod {
    /// The model as it is: the baseline of every generate run.
    None,
    /// Low-rank adapters on `target_modules`; the base weights stay frozen.
    Lora,
    /// Every weight trains.
    Sft,
    /// A small decoder from scratch, with a tokenizer trained on the project's training texts.
    Pretrain,
    /// Reward training with a grader: on fresh LoRA adapters, or continuing the `start_from` model.
    Grpo,
    /// Preference training on pairs of a preferred and a rejected answer (`preferences`), on fresh
    /// LoRA adapters or continuing the `start_from` model.
    Dpo,
}

impl LmMethod {
    pub fn name(self) -> &'static str {
        match self {
            LmMethod::None => "none",
            LmMethod::Lora => "lora",
            LmMethod::Sft => "sft",
            LmMethod::Pretrain => "pretrain",
            LmMethod::Grpo => "grpo",
            LmMethod::Dpo => "dpo",
        }
    }
}

/// A language model's `[model.params]`, flat, with documented defaults. The LoRA defaults (rank 16,
/// alpha 32, lr 2e-4 on the attention projections, 3 epochs) are the common first-run recipe for a
/// small set: enough capacity for tone and format, few enough parameters not to overfit a thousand
/// examples. Full SFT defaults to lr 2e-5 (every weight moves; a LoRA rate would wreck the model).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmParams {
    pub epochs: usize,
    /// Peak learning rate; default 2e-4 for `lora`, 2e-5 for `sft`.
    pub lr: Option<f64>,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Longest training sequence in tokens; longer examples lose the start of their prompt.
    pub max_length: usize,
    pub max_new_tokens: usize,
    /// 0 decodes greedily (evaluation default); above 0 samples with `seed`.
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<usize>,
    pub seed: u64,
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lora_dropout: f64,
    pub target_modules: Vec<String>,
    /// A system message put before every prompt (the model template's own default otherwise).
    pub system: Option<String>,
    /// Prompts generated together in evaluation and prediction.
    pub eval_batch: usize,
    pub device: String,
    /// `pretrain`: the decoder's shape and the tokenizer's size (about 4M parameters by default).
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub vocab_size: usize,
    /// With several epochs and a dev set, dev ROUGE-L is measured after each epoch and the best
    /// epoch's weights are kept; this many epochs without a better score stop training. Default 0
    /// (never stop early): a model that has not started to answer scores 0 for several epochs, and
    /// a default patience stopped such runs before they learned (the tiny test decoder, 60 epochs).
    pub patience: usize,
    /// A resumable checkpoint after every this many optimiser steps (and at each epoch's end).
    pub checkpoint_every: usize,
    /// Where checkpoints go (resolved against the project root, kept after the run); by default a
    /// directory under `.hone/checkpoints/` that hone removes once the run is stored.
    pub checkpoint_dir: Option<PathBuf>,
    /// Sequences run through the model at once; a batch is split into micro-batches of this size
    /// with the same gradient. 0 (default): the largest whose activations fit 2 GiB
    /// (`hone_lm::sft::ACTIVATION_BUDGET`).
    pub micro_batch: usize,
    /// `grpo`: the grader (in `graders/`) whose reward trains the model.
    pub reward: Option<String>,
    /// `grpo`: a `lora` or `sft` [[model]] listed before this one whose trained weights GRPO starts
    /// from (its LoRA settings, system message and max_length are used); without it GRPO trains
    /// fresh LoRA adapters on the base model.
    pub start_from: Option<String>,
    /// `grpo`: optimiser steps (each samples `prompts_per_step` × `num_generations` completions).
    pub steps: usize,
    pub prompts_per_step: usize,
    pub num_generations: usize,
    /// `grpo`: completions are cut at this many tokens (and counted as truncated).
    pub max_completion_length: usize,
    /// `grpo`: the sampling temperature of training completions (`temperature` is evaluation's).
    pub rollout_temperature: f64,
    /// `grpo`: KL penalty to the starting weights (0: none). `dpo`: how far the model may move
    /// from the weights it starts from (default 0.1 there, TRL's).
    pub beta: f64,
    pub epsilon: f64,
    pub epsilon_high: f64,
    pub num_iterations: usize,
    /// `grpo`: `dapo` (default), `grpo` or `dr_grpo`.
    pub loss_type: String,
    pub mask_truncated: bool,
    /// `grpo`: the dev grader score every this many steps keeps the best weights.
    pub eval_every: usize,
    /// `grpo`: stop after `stop_patience` steps in a row with at least this share of completions
    /// truncated, or of groups without reward variance.
    pub stop_truncated: f64,
    pub stop_zero_std: f64,
    pub stop_patience: usize,
    /// `dpo`: a JSONL file of preference pairs, `{"prompt", "chosen", "rejected"}` (and `id`),
    /// relative to the project root.
    pub preferences: Option<String>,
    /// `dpo`: the share of pairs (by prompt) held out to measure preference accuracy and choose the
    /// weights kept.
    pub preference_holdout: f64,
    /// `lora`, `sft`, `pretrain`: a language model listed before this one to learn from. With the
    /// same tokenizer the student learns the teacher's token distributions (token-level KL at
    /// `distill_temperature`, weighted against the targets' cross-entropy by `distill_alpha`);
    /// otherwise it trains on the teacher's answers to the training prompts (sequence-level).
    pub distill_from: Option<String>,
    pub distill_temperature: f64,
    /// The weight of the targets' cross-entropy (0: the teacher alone).
    pub distill_alpha: f64,
}

impl Default for LmParams {
    fn default() -> Self {
        LmParams {
            epochs: 3,
            lr: None,
            batch_size: 8,
            grad_accum: 1,
            warmup_ratio: 0.03,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            max_length: 256,
            max_new_tokens: 128,
            temperature: 0.0,
            top_p: None,
            top_k: None,
            seed: 0,
            lora_rank: 16,
            lora_alpha: 32.0,
            lora_dropout: 0.05,
            target_modules: ["q_proj", "k_proj", "v_proj", "o_proj"]
                .map(String::from)
                .to_vec(),
            system: None,
            eval_batch: 8,
            device: "cpu".into(),
            hidden: 256,
            layers: 4,
            heads: 4,
            kv_heads: 2,
            ffn: 688,
            vocab_size: 4096,
            patience: 0,
            checkpoint_every: 50,
            checkpoint_dir: None,
            micro_batch: 0,
            reward: None,
            start_from: None,
            steps: 100,
            prompts_per_step: 4,
            num_generations: 4,
            max_completion_length: 96,
            rollout_temperature: 1.0,
            beta: 0.0,
            epsilon: 0.2,
            epsilon_high: 0.2,
            num_iterations: 1,
            loss_type: "dapo".into(),
            mask_truncated: false,
            eval_every: 25,
            stop_truncated: 0.9,
            stop_zero_std: 0.95,
            stop_patience: 10,
            preferences: None,
            preference_holdout: 0.2,
            distill_from: None,
            distill_temperature: 2.0,
            distill_alpha: 0.5,
        }
    }
}

/// An `lm` model's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct LmSpec {
    /// A GGUF file, or a directory holding exactly one; resolved against the project root.
    pub path: PathBuf,
    pub path_as_written: String,
    pub method: LmMethod,
    pub params: LmParams,
    /// `[model.params]` sets `seed`; otherwise the run uses the project seed.
    pub seed_set: bool,
    /// `dpo`: the `preferences` file resolved against the project root.
    pub preferences_file: Option<PathBuf>,
}

impl LmSpec {
    /// The learning rate to train with.
    pub fn lr(&self) -> f64 {
        self.params.lr.unwrap_or(match self.method {
            LmMethod::Sft => 2e-5,
            LmMethod::Pretrain => 1e-3,
            LmMethod::Grpo => 1e-5,
            LmMethod::Dpo => 5e-6,
            _ => 2e-4,
        })
    }
    /// The seed to train and sample with: the project seed unless the params set their own.
    pub fn seed(&self, project_seed: u64) -> u64 {
        if self.seed_set {
            self.params.seed
        } else {
            project_seed
        }
    }
}

/// The model `path` names: a GGUF file, a Hugging Face directory (it has `config.json`), or the one
/// `.gguf` file in a directory.
pub fn model_path(path: &Path) -> std::result::Result<PathBuf, String> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(format!("{} does not exist", path.display()));
    }
    if hone_lm::hf::is_hf_dir(path) {
        return Ok(path.to_path_buf());
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(format!(
            "{} holds no .gguf file and no config.json (a Hugging Face model directory)",
            path.display()
        )),
        n => Err(format!(
            "{} holds {n} .gguf files; name one of them as the path",
            path.display()
        )),
    }
}

/// The `[[model]]` keys that only an `encoder` takes.
pub const ENCODER_KEYS: &[&str] = &["path", "method", "pooling"];

/// An encoder's `method` values.
pub const METHODS: &[&str] = &["frozen", "finetune", "setfit"];

/// An encoder's `pooling` values.
pub const POOLINGS: &[&str] = &["mean", "cls"];

/// The default encoder method and pooling (when `hone.toml` sets none).
pub const DEFAULT_METHOD: &str = "frozen";
pub const DEFAULT_POOLING: &str = "mean";

/// One model to train: a validated `[[model]]`, or the majority baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    pub name: String,
    /// Abstain below a dev-chosen confidence threshold (`abstain = true`).
    pub abstain: bool,
    pub spec: ModelSpec,
}

impl ModelEntry {
    /// The majority baseline, trained beside every `[[model]]`.
    pub fn majority() -> ModelEntry {
        ModelEntry {
            name: MAJORITY.into(),
            abstain: false,
            spec: ModelSpec::Majority,
        }
    }

    pub fn kind(&self) -> ModelKind {
        self.spec.kind()
    }
}

/// A model's kind with its typed parameters.
#[derive(Debug, Clone, PartialEq)]
// A handful per project, built once at load: boxing the language model's params would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum ModelSpec {
    Majority,
    Ngram(NgramSpec),
    Encoder(EncoderSpec),
    Lm(LmSpec),
}

impl ModelSpec {
    pub fn kind(&self) -> ModelKind {
        match self {
            ModelSpec::Majority => ModelKind::Majority,
            ModelSpec::Ngram(_) => ModelKind::Ngram,
            ModelSpec::Encoder(_) => ModelKind::Encoder,
            ModelSpec::Lm(_) => ModelKind::Lm,
        }
    }
}

/// An `ngram` model's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct NgramSpec {
    /// The n-gram settings from `[model.params]` (serde defaults for the rest).
    pub config: NgramConfig,
    /// `[model.params]` sets `seed`; otherwise the run uses the project's `[split] seed`.
    pub seed_set: bool,
    /// `distill_from` and its settings.
    pub distill: Option<DistillSpec>,
}

impl NgramSpec {
    /// The config to train with: the project seed unless the params set their own.
    pub fn seeded(&self, project_seed: u64) -> NgramConfig {
        let mut c = self.config.clone();
        if !self.seed_set {
            c.seed = project_seed;
        }
        c
    }
}

/// Distillation of an `ngram` student from a teacher's temperature-softened probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct DistillSpec {
    /// The teacher: a `[[model]]` listed before the student.
    pub from: String,
    /// Softening temperature (default 2.0).
    pub temperature: f64,
    /// Epochs of SGD on the soft targets (default 10).
    pub epochs: usize,
    /// SGD learning rate (default 0.5).
    pub lr: f32,
    /// L2 strength (default 1e-6).
    pub l2: f32,
    /// Weight of the gold label in each labelled text's target, in [0, 1] (default 0: the teacher alone).
    pub alpha: f32,
    /// Extra unlabelled texts for the teacher to label, resolved against the project root.
    pub unlabelled: Option<PathBuf>,
}

impl DistillSpec {
    pub const DEFAULT_TEMPERATURE: f64 = 2.0;
    pub const DEFAULT_EPOCHS: usize = 10;
    pub const DEFAULT_LR: f32 = 0.5;
    pub const DEFAULT_L2: f32 = 1e-6;
    pub const DEFAULT_ALPHA: f32 = 0.0;
}

/// The distillation keys as serde reads them (every one optional; defaults applied afterwards).
#[derive(Debug, Default, serde::Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
struct DistillParams {
    distill_from: Option<String>,
    distill_temperature: Option<f64>,
    distill_epochs: Option<usize>,
    distill_lr: Option<f32>,
    distill_l2: Option<f32>,
    distill_alpha: Option<f32>,
    distill_unlabelled: Option<String>,
}

/// An `encoder` model's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSpec {
    /// The Hugging Face model directory, resolved against the project root.
    pub path: PathBuf,
    /// `path` as written in `hone.toml` (part of the run key, so a moved project keeps its runs).
    pub path_as_written: String,
    pub method: Method,
    pub pooling: Pooling,
    /// `[model.params]`; `checkpoint_dir` is resolved against the project root.
    pub params: EncoderParams,
    /// `[model.params.finetune]` sets `seed`; otherwise the run uses the project seed.
    pub finetune_seed_set: bool,
    /// `[model.params.contrastive]` sets `seed`; otherwise the run uses the project seed.
    pub contrastive_seed_set: bool,
}

impl EncoderSpec {
    /// The params to train with: the project seed wherever the params set none.
    pub fn seeded_params(&self, project_seed: u64) -> EncoderParams {
        let mut p = self.params.clone();
        if !self.finetune_seed_set {
            p.finetune.seed = project_seed;
        }
        if !self.contrastive_seed_set {
            p.contrastive.seed = project_seed;
        }
        p
    }
}

/// Validates every `[[model]]` of `config` and returns their typed specs in `hone.toml` order (without
/// the majority baseline). `text` is the config's text and `path` its file, for errors that point at
/// the offending key or value (`Error::Config` with line, column and a hint); `root` is the project
/// root, against which every path resolves.
pub fn validate(config: &Config, text: &str, path: &Path, root: &Path) -> Result<Vec<ModelEntry>> {
    let spans = Spans::new(text);
    let mut out: Vec<ModelEntry> = Vec::new();
    for (index, m) in config.models.iter().enumerate() {
        let at = At {
            spans: &spans,
            path,
            index,
            name: &m.name,
        };
        if m.name.trim().is_empty() {
            return Err(at.value(
                &["name"],
                "a [[model]] has an empty name".into(),
                "give each [[model]] a short name, e.g. name = \"baseline\"",
            ));
        }
        if m.name == MAJORITY {
            return Err(at.value(
                &["name"],
                "the name `majority` is reserved for the built-in baseline".into(),
                "the majority baseline runs beside every model; give this [[model]] another name",
            ));
        }
        if out.iter().any(|e| e.name == m.name) {
            return Err(at.value(
                &["name"],
                format!("model name `{}` is used twice", m.name),
                "give each [[model]] its own name",
            ));
        }
        let listed: Vec<&str> = ModelKind::LISTED.iter().map(|k| k.name()).collect();
        let kind = match ModelKind::from_name(&m.kind) {
            Some(k) if ModelKind::LISTED.contains(&k) => k,
            Some(_) => {
                return Err(at.value(
                    &["kind"],
                    format!("[[model]] `{}`: kind = \"{}\" is the built-in baseline", m.name, m.kind),
                    "the majority baseline runs beside every model without being listed; remove this [[model]]",
                ));
            }
            None => {
                let hint = match closest(&m.kind, &listed) {
                    Some(best) => format!("did you mean `{best}`?"),
                    None => format!(
                        "known kinds: {} (`majority` runs beside every model)",
                        listed.join(", ")
                    ),
                };
                return Err(at.value(
                    &["kind"],
                    format!("[[model]] `{}`: unknown model kind `{}`", m.name, m.kind),
                    &hint,
                ));
            }
        };
        let generate = config.task.kind == hone_core::config::TaskKind::Generate;
        if generate != (kind == ModelKind::Lm) {
            return Err(at.value(
                &["kind"],
                format!(
                    "[[model]] `{}`: kind = \"{}\" does not fit a {} task",
                    m.name,
                    kind.name(),
                    if generate { "generate" } else { "classify" }
                ),
                if generate {
                    "a generate task trains kind = \"lm\" models"
                } else {
                    "kind = \"lm\" models generate text: set [task] kind = \"generate\", or use kind = \"ngram\" or \"encoder\""
                },
            ));
        }
        if generate && m.name == BASE {
            let base_like = m.method.as_deref() == Some("none");
            if !base_like {
                return Err(at.value(
                    &["name"],
                    "the name `base` is reserved for the base model (method = \"none\")".into(),
                    "give this [[model]] another name",
                ));
            }
        }
        let spec = match kind {
            ModelKind::Ngram => ModelSpec::Ngram(ngram_spec(&at, m, &out, config, root)?),
            ModelKind::Encoder => ModelSpec::Encoder(encoder_spec(&at, m, root)?),
            ModelKind::Lm => {
                let spec = start_from(&at, lm_spec(&at, m, root)?, &out)?;
                lm_teacher(&at, &spec, &out)?;
                ModelSpec::Lm(spec)
            }
            ModelKind::Majority => ModelSpec::Majority,
        };
        out.push(ModelEntry {
            name: m.name.clone(),
            abstain: m.abstain,
            spec,
        });
    }
    Ok(out)
}

/// A GRPO model's `start_from`: a `lora` or `sft` [[model]] listed before it on the same base file,
/// or a `pretrain` one (the GRPO model then names no path).
/// GRPO continues that model's adapters (or weights), so it takes the settings that shape them (LoRA
/// rank, alpha, dropout and targets, the system message, max_length).
fn start_from(at: &At<'_>, mut spec: LmSpec, before: &[ModelEntry]) -> Result<LmSpec> {
    let Some(from) = spec.params.start_from.clone() else {
        return Ok(spec);
    };
    let key = ["params", "start_from"];
    let lms: Vec<(&str, &LmSpec)> = before
        .iter()
        .filter_map(|e| match &e.spec {
            ModelSpec::Lm(s) => Some((e.name.as_str(), s)),
            _ => None,
        })
        .collect();
    let Some((_, start)) = lms.iter().find(|(n, _)| *n == from) else {
        let names: Vec<&str> = lms.iter().map(|(n, _)| *n).collect();
        return Err(at.value(
            &key,
            format!(
                "[[model]] `{}`: start_from = \"{from}\" names no language model listed before it",
                at.name
            ),
            &closest(&from, &names)
                .map(|b| format!("did you mean `{b}`?"))
                .unwrap_or_else(|| {
                    "list the lora or sft [[model]] to start from above this one".into()
                }),
        ));
    };
    let same_base = match start.method {
        LmMethod::Lora | LmMethod::Sft => start.path == spec.path,
        LmMethod::Pretrain => spec.path_as_written.is_empty(),
        _ => false,
    };
    if !same_base {
        return Err(at.value(
            &key,
            format!(
                "[[model]] `{}`: start_from = \"{from}\" must be a lora or sft model on the same path, or a pretrain model (then give no path)",
                at.name
            ),
            "GRPO and DPO continue a model trained before them in this project",
        ));
    }
    let p = &start.params;
    spec.params.lora_rank = p.lora_rank;
    spec.params.lora_alpha = p.lora_alpha;
    spec.params.lora_dropout = p.lora_dropout;
    spec.params.target_modules = p.target_modules.clone();
    spec.params.system = p.system.clone();
    spec.params.max_length = p.max_length;
    Ok(spec)
}

/// A language model's `distill_from` names a language model listed before it.
fn lm_teacher(at: &At<'_>, spec: &LmSpec, before: &[ModelEntry]) -> Result<()> {
    let Some(from) = &spec.params.distill_from else {
        return Ok(());
    };
    let lms: Vec<&str> = before
        .iter()
        .filter(|e| matches!(e.spec, ModelSpec::Lm(_)))
        .map(|e| e.name.as_str())
        .collect();
    if lms.contains(&from.as_str()) {
        return Ok(());
    }
    Err(at.value(
        &["params", "distill_from"],
        format!(
            "[[model]] `{}`: distill_from = \"{from}\" names no language model listed before it",
            at.name
        ),
        &closest(from, &lms)
            .map(|b| format!("did you mean `{b}`?"))
            .unwrap_or_else(|| "list the teacher [[model]] above its student".into()),
    ))
}

/// Where errors about one `[[model]]` point.
struct At<'a> {
    spans: &'a Spans<'a>,
    path: &'a Path,
    index: usize,
    name: &'a str,
}

impl At<'_> {
    fn segs<'k>(&self, keys: &[&'k str]) -> Vec<Seg<'k>> {
        let mut segs = vec![Seg::Key("model"), Seg::Index(self.index)];
        segs.extend(keys.iter().map(|k| Seg::Key(k)));
        segs
    }
    /// An error at the key `keys` (below this `[[model]]`), or its nearest enclosing key.
    fn key(&self, keys: &[&str], message: String, hint: &str) -> Error {
        config_error(
            self.path,
            self.spans.key_or_parent(&self.segs(keys)),
            message,
            hint,
        )
    }
    /// An error at the value of `keys`, or its nearest enclosing key.
    fn value(&self, keys: &[&str], message: String, hint: &str) -> Error {
        config_error(
            self.path,
            self.spans.value_or_parent(&self.segs(keys)),
            message,
            hint,
        )
    }
    fn has(&self, keys: &[&str]) -> bool {
        self.spans.has(&self.segs(keys))
    }
    fn offset(&self, keys: &[&str]) -> usize {
        self.spans.offset(&self.segs(keys)).unwrap_or(usize::MAX)
    }
    /// The keys of `table` in reading order.
    fn in_order<'t>(&self, prefix: &[&str], table: &'t toml::Table) -> Vec<&'t str> {
        let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
        keys.sort_by_key(|k| {
            let mut p = prefix.to_vec();
            p.push(k);
            self.offset(&p)
        });
        keys
    }
    /// `params.finetune.lr` for `["params", "finetune", "lr"]`.
    fn dotted(keys: &[&str]) -> String {
        keys.join(".")
    }
}

/// Reads `table` (at `prefix` below the `[[model]]`) as `T`: an unknown key fails at the key with the
/// closest of `known`; a wrong type or value fails at that key's value, saying what the key takes and
/// its default.
fn typed<T: DeserializeOwned + Serialize + Default>(
    at: &At<'_>,
    prefix: &[&str],
    table: &toml::Table,
    known: &[&str],
    hint_unknown: &dyn Fn(&str) -> Option<String>,
) -> Result<T> {
    for key in at.in_order(prefix, table) {
        if !known.contains(&key) {
            let mut keys = prefix.to_vec();
            keys.push(key);
            let hint = hint_unknown(key)
                .or_else(|| closest(key, known).map(|b| format!("did you mean `{b}`?")))
                .unwrap_or_else(|| format!("known keys here: {}", known.join(", ")));
            return Err(at.key(
                &keys,
                format!(
                    "[[model]] `{}`: unknown parameter `{}`",
                    at.name,
                    At::dotted(&keys)
                ),
                &hint,
            ));
        }
    }
    let whole = toml::Value::Table(table.clone()).try_into::<T>();
    let err = match whole {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    // Find the key that fails on its own (the others take their defaults), in reading order.
    for key in at.in_order(prefix, table) {
        let mut one = toml::Table::new();
        one.insert(key.to_string(), table[key].clone());
        if let Err(e) = toml::Value::Table(one).try_into::<T>() {
            let mut keys = prefix.to_vec();
            keys.push(key);
            let msg = e.message().trim().to_string();
            let mut hint = hint_for(&msg, known);
            if let Some(d) = default_of::<T>(key) {
                if !hint.is_empty() {
                    hint.push_str("; ");
                }
                hint.push_str(&format!("the default is {d}"));
            }
            return Err(at.value(
                &keys,
                format!("[[model]] `{}`: `{}`: {msg}", at.name, At::dotted(&keys)),
                &hint,
            ));
        }
    }
    let msg = err.message().trim().to_string();
    Err(at.key(
        prefix,
        format!("[[model]] `{}`: bad parameters: {msg}", at.name),
        &hint_for(&msg, known),
    ))
}

/// `T::default()`'s value of `key`, as TOML.
fn default_of<T: Serialize + Default>(key: &str) -> Option<String> {
    let v = toml::Value::try_from(T::default()).ok()?;
    v.get(key).map(ToString::to_string)
}

fn params_table(m: &hone_core::config::ModelConfig) -> toml::Table {
    m.params
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn ngram_spec(
    at: &At<'_>,
    m: &hone_core::config::ModelConfig,
    before: &[ModelEntry],
    config: &Config,
    root: &Path,
) -> Result<NgramSpec> {
    for key in ENCODER_KEYS {
        if at.has(&[key]) {
            return Err(at.key(
                &[key],
                format!(
                    "[[model]] `{}`: `{key}` applies to kind = \"encoder\" only",
                    m.name
                ),
                "remove it, or set kind = \"encoder\"",
            ));
        }
    }
    let table = params_table(m);
    let known: Vec<&str> = ModelKind::Ngram.param_names();
    let not_here = |key: &str| -> Option<String> {
        if ENCODER_PARAMS.contains(&key) {
            Some(format!(
                "`{key}` is an encoder parameter; this model is kind = \"ngram\""
            ))
        } else {
            None
        }
    };
    let (distill_t, plain_t): (toml::Table, toml::Table) = table
        .clone()
        .into_iter()
        .partition(|(k, _)| DISTILL_PARAMS.contains(&k.as_str()));
    // Unknown keys first, against both lists.
    for key in at.in_order(&["params"], &table) {
        if !known.contains(&key) {
            let hint = not_here(key)
                .or_else(|| closest(key, &known).map(|b| format!("did you mean `{b}`?")))
                .unwrap_or_else(|| format!("known parameters: {}", known.join(", ")));
            return Err(at.key(
                &["params", key],
                format!(
                    "[[model]] `{}`: unknown parameter `params.{key}` for kind = \"ngram\"",
                    m.name
                ),
                &hint,
            ));
        }
    }
    let ngram: NgramConfig = typed(at, &["params"], &plain_t, NGRAM_PARAMS, &not_here)?;
    if let Err(e) = ngram.validate() {
        let msg = e.to_string();
        let msg = msg
            .strip_prefix("ngram config: ")
            .unwrap_or(&msg)
            .to_string();
        let field = msg.split_whitespace().next().unwrap_or("");
        let field = NGRAM_PARAMS
            .iter()
            .find(|k| **k == field)
            .copied()
            .or_else(|| {
                ["word_ngrams", "char_ngrams"]
                    .into_iter()
                    .find(|k| msg.contains(k) && at.has(&["params", k]))
            });
        let hint = match field.and_then(default_of::<NgramConfig>) {
            Some(d) => format!("the default is {d}"),
            None => "see hone_model::NgramConfig for the accepted ranges".into(),
        };
        let keys: Vec<&str> = match field {
            Some(f) => vec!["params", f],
            None => vec!["params"],
        };
        return Err(at.value(&keys, format!("[[model]] `{}`: {msg}", m.name), &hint));
    }
    let d: DistillParams = typed(at, &["params"], &distill_t, DISTILL_PARAMS, &not_here)?;
    let distill = match d.distill_from.clone() {
        None => {
            if let Some(key) = at.in_order(&["params"], &distill_t).first() {
                return Err(at.key(
                    &["params", key],
                    format!(
                        "[[model]] `{}`: `{key}` needs distill_from = \"TEACHER\"",
                        m.name
                    ),
                    "name the teacher with distill_from (a [[model]] listed before this one), or remove the distill_* keys",
                ));
            }
            None
        }
        Some(from) => Some(distill_spec(at, &d, from, before, config, root)?),
    };
    Ok(NgramSpec {
        config: ngram,
        seed_set: table.contains_key("seed"),
        distill,
    })
}

fn distill_spec(
    at: &At<'_>,
    d: &DistillParams,
    from: String,
    before: &[ModelEntry],
    config: &Config,
    root: &Path,
) -> Result<DistillSpec> {
    let from_key = ["params", "distill_from"];
    if from == at.name {
        return Err(at.value(
            &from_key,
            format!("[[model]] `{}` cannot distill from itself", at.name),
            "name another [[model]] listed before this one as the teacher",
        ));
    }
    if !before.iter().any(|e| e.name == from) {
        let earlier: Vec<&str> = before.iter().map(|e| e.name.as_str()).collect();
        let later = config
            .models
            .iter()
            .skip(at.index + 1)
            .any(|m| m.name == from);
        let hint = if later {
            format!(
                "move the [[model]] `{from}` above `{}`: the teacher trains first",
                at.name
            )
        } else if let Some(best) = closest(&from, &earlier) {
            format!("did you mean `{best}`?")
        } else if from == MAJORITY {
            "the teacher must be a [[model]] (the majority baseline has nothing to teach)".into()
        } else if earlier.is_empty() {
            "list the teacher [[model]] above this one".into()
        } else {
            format!("models listed before this one: {}", earlier.join(", "))
        };
        return Err(at.value(
            &from_key,
            format!(
                "[[model]] `{}`: distill_from = \"{from}\" names no [[model]] listed before it",
                at.name
            ),
            &hint,
        ));
    }
    let temperature = d
        .distill_temperature
        .unwrap_or(DistillSpec::DEFAULT_TEMPERATURE);
    let epochs = d.distill_epochs.unwrap_or(DistillSpec::DEFAULT_EPOCHS);
    let lr = d.distill_lr.unwrap_or(DistillSpec::DEFAULT_LR);
    let l2 = d.distill_l2.unwrap_or(DistillSpec::DEFAULT_L2);
    let alpha = d.distill_alpha.unwrap_or(DistillSpec::DEFAULT_ALPHA);
    let range = |ok: bool, key: &str, what: &str, hint: &str| -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(at.value(
                &["params", key],
                format!("[[model]] `{}`: `{key}` must be {what}", at.name),
                hint,
            ))
        }
    };
    range(
        temperature.is_finite() && temperature > 0.0,
        "distill_temperature",
        &format!("a number > 0 (got {temperature})"),
        "the default is 2.0; higher values soften the teacher's probabilities",
    )?;
    range(
        epochs >= 1,
        "distill_epochs",
        "at least 1",
        "the default is 10",
    )?;
    range(
        lr.is_finite() && lr > 0.0,
        "distill_lr",
        &format!("a number > 0 (got {lr})"),
        "the default is 0.5",
    )?;
    range(
        l2.is_finite() && l2 >= 0.0,
        "distill_l2",
        &format!("a number >= 0 (got {l2})"),
        "the default is 1e-6",
    )?;
    range(
        (0.0..=1.0).contains(&alpha),
        "distill_alpha",
        &format!("between 0 and 1 (got {alpha})"),
        "0 learns from the teacher alone (the default), 1 from the gold labels alone",
    )?;
    let unlabelled = match &d.distill_unlabelled {
        None => None,
        Some(p) => {
            let full = resolve_path(root, p);
            if !full.is_file() {
                return Err(at.value(
                    &["params", "distill_unlabelled"],
                    format!(
                        "[[model]] `{}`: distill_unlabelled = \"{p}\" does not exist (looked for {})",
                        at.name,
                        full.display()
                    ),
                    "give a text file (one text per line, or JSONL with a text field) relative to the project root",
                ));
            }
            Some(full)
        }
    };
    Ok(DistillSpec {
        from,
        temperature,
        epochs,
        lr,
        l2,
        alpha,
        unlabelled,
    })
}

fn lm_spec(at: &At<'_>, m: &hone_core::config::ModelConfig, root: &Path) -> Result<LmSpec> {
    let get = "scripts/get-smollm2 fetches SmolLM2-135M-Instruct into models/; paths are relative to the project root";
    if m.pooling.is_some() {
        return Err(at.key(
            &["pooling"],
            format!(
                "[[model]] `{}`: `pooling` applies to kind = \"encoder\" only",
                m.name
            ),
            "remove it",
        ));
    }
    if m.abstain {
        return Err(at.key(
            &["abstain"],
            format!("[[model]] `{}`: a language model does not abstain", m.name),
            "remove `abstain`",
        ));
    }
    let method_name = m.method.as_deref().unwrap_or("lora");
    let method = match method_name {
        "none" => LmMethod::None,
        "lora" => LmMethod::Lora,
        "sft" => LmMethod::Sft,
        "pretrain" => LmMethod::Pretrain,
        "grpo" => LmMethod::Grpo,
        "dpo" => LmMethod::Dpo,
        other => {
            return Err(at.value(
                &["method"],
                format!(
                    "[[model]] `{}`: unknown language model method `{other}`",
                    m.name
                ),
                &choice_hint(other, LM_METHODS),
            ));
        }
    };
    let (path_as_written, file) = match (m.path.as_deref(), method) {
        (Some(p), LmMethod::Pretrain) => {
            return Err(at.value(
                &["path"],
                format!("[[model]] `{}`: method = \"pretrain\" starts from nothing; `{p}` would be ignored", m.name),
                "remove `path`, or choose method = \"lora\" or \"sft\" to start from that model",
            ));
        }
        (None, LmMethod::Pretrain) => (String::new(), PathBuf::new()),
        // GRPO on a model pre-trained in this project: its weights come from that run.
        (None, LmMethod::Grpo | LmMethod::Dpo) if params_table(m).contains_key("start_from") => {
            (String::new(), PathBuf::new())
        }
        (Some(p), _) if !p.trim().is_empty() => {
            let path = resolve_path(root, p);
            let file = model_path(&path)
                .map_err(|e| at.value(&["path"], format!("[[model]] `{}`: {e}", m.name), get))?;
            (p.to_string(), file)
        }
        _ => {
            return Err(at.value(
                &["kind"],
                format!(
                    "[[model]] `{}`: kind = \"lm\" needs path = \"FILE.gguf\" (or a Hugging Face model directory, or a directory with one GGUF file), or method = \"pretrain\"",
                    m.name
                ),
                get,
            ));
        }
    };
    let table = params_table(m);
    let not_here = |key: &str| -> Option<String> {
        if ENCODER_KEYS.contains(&key) {
            Some(format!(
                "`{key}` belongs in the [[model]] table itself, not under params"
            ))
        } else {
            None
        }
    };
    let mut params: LmParams = typed(at, &["params"], &table, LM_PARAMS, &not_here)?;
    let check = |ok: bool, key: &str, what: &str| -> Result<()> {
        if ok {
            Ok(())
        } else {
            Err(at.value(
                &["params", key],
                format!("[[model]] `{}`: `{key}` must be {what}", m.name),
                &default_of::<LmParams>(key)
                    .map(|d| format!("the default is {d}"))
                    .unwrap_or_default(),
            ))
        }
    };
    check(params.epochs >= 1, "epochs", "at least 1")?;
    check(
        params.lr.is_none_or(|x| x.is_finite() && x > 0.0),
        "lr",
        "a number > 0",
    )?;
    check(params.batch_size >= 1, "batch_size", "at least 1")?;
    check(params.grad_accum >= 1, "grad_accum", "at least 1")?;
    check(
        (0.0..1.0).contains(&params.warmup_ratio),
        "warmup_ratio",
        "in [0, 1)",
    )?;
    check(params.max_length >= 8, "max_length", "at least 8 tokens")?;
    check(params.max_new_tokens >= 1, "max_new_tokens", "at least 1")?;
    check(
        params.temperature >= 0.0 && params.temperature.is_finite(),
        "temperature",
        "a number >= 0",
    )?;
    check(
        params.top_p.is_none_or(|p| p > 0.0 && p <= 1.0),
        "top_p",
        "in (0, 1]",
    )?;
    check(params.lora_rank >= 1, "lora_rank", "at least 1")?;
    check(params.lora_alpha > 0.0, "lora_alpha", "a number > 0")?;
    check(
        (0.0..1.0).contains(&params.lora_dropout),
        "lora_dropout",
        "in [0, 1)",
    )?;
    check(params.eval_batch >= 1, "eval_batch", "at least 1")?;
    check(
        params.checkpoint_every >= 1,
        "checkpoint_every",
        "at least 1",
    )?;
    params.checkpoint_dir = checkpoint_dir(at, m, root, params.checkpoint_dir.take())?;
    check(
        params.vocab_size >= 300,
        "vocab_size",
        "at least 300 (256 bytes and the special tokens)",
    )?;
    check(params.layers >= 1, "layers", "at least 1")?;
    check(
        params.heads >= 1
            && params.hidden.is_multiple_of(params.heads)
            && (params.hidden / params.heads).is_multiple_of(2),
        "heads",
        "a divisor of `hidden` that leaves an even head size",
    )?;
    check(
        params.kv_heads >= 1 && params.heads.is_multiple_of(params.kv_heads),
        "kv_heads",
        "a divisor of `heads`",
    )?;
    check(params.ffn >= 1, "ffn", "at least 1")?;
    if method == LmMethod::Grpo {
        check(
            params
                .reward
                .as_deref()
                .is_some_and(|r| !r.trim().is_empty()),
            "reward",
            "the name of a grader in graders/ (GRPO trains on its reward)",
        )?;
        check(params.steps >= 1, "steps", "at least 1")?;
        check(
            params.prompts_per_step >= 1,
            "prompts_per_step",
            "at least 1",
        )?;
        check(
            params.num_generations >= 2,
            "num_generations",
            "at least 2 (a group of one has no advantage)",
        )?;
        check(
            params.max_completion_length >= 1,
            "max_completion_length",
            "at least 1",
        )?;
        check(
            params.rollout_temperature > 0.0 && params.rollout_temperature.is_finite(),
            "rollout_temperature",
            "a number > 0 (GRPO samples)",
        )?;
        check(params.beta >= 0.0, "beta", "a number >= 0")?;
        check(
            params.epsilon >= 0.0 && params.epsilon_high >= 0.0,
            "epsilon",
            "a number >= 0",
        )?;
        check(params.num_iterations >= 1, "num_iterations", "at least 1")?;
        check(
            ["dapo", "grpo", "dr_grpo"].contains(&params.loss_type.as_str()),
            "loss_type",
            "one of \"dapo\", \"grpo\", \"dr_grpo\"",
        )?;
        check(
            (0.0..=1.0).contains(&params.stop_truncated)
                && (0.0..=1.0).contains(&params.stop_zero_std),
            "stop_truncated",
            "in [0, 1] (as is stop_zero_std)",
        )?;
    } else if table.contains_key("reward") {
        return Err(at.value(
            &["params", "reward"],
            format!("[[model]] `{}`: `reward` is a GRPO setting", m.name),
            "set method = \"grpo\", or remove the key",
        ));
    }
    if method == LmMethod::Dpo {
        if !table.contains_key("beta") {
            params.beta = 0.1;
        }
        check(
            params.beta > 0.0 && params.beta.is_finite(),
            "beta",
            "a number > 0 for DPO (0.1 by default)",
        )?;
        check(
            (0.0..1.0).contains(&params.preference_holdout),
            "preference_holdout",
            "in [0, 1)",
        )?;
        match params.preferences.as_deref() {
            Some(p) if resolve_path(root, p).is_file() => {}
            Some(p) => {
                return Err(at.value(
                    &["params", "preferences"],
                    format!("[[model]] `{}`: preferences file `{p}` not found", m.name),
                    "a JSONL file of {\"prompt\", \"chosen\", \"rejected\"} lines, relative to the project root",
                ));
            }
            None => check(
                false,
                "preferences",
                "a JSONL file of preference pairs ({\"prompt\", \"chosen\", \"rejected\"}) for DPO",
            )?,
        }
    } else if table.contains_key("preferences") {
        return Err(at.value(
            &["params", "preferences"],
            format!("[[model]] `{}`: `preferences` is a DPO setting", m.name),
            "set method = \"dpo\", or remove the key",
        ));
    }
    if params.distill_from.is_some() {
        check(
            matches!(method, LmMethod::Lora | LmMethod::Sft | LmMethod::Pretrain),
            "distill_from",
            "on a lora, sft or pretrain model (the student)",
        )?;
        check(
            params.distill_temperature > 0.0 && params.distill_temperature.is_finite(),
            "distill_temperature",
            "a number > 0",
        )?;
        check(
            (0.0..=1.0).contains(&params.distill_alpha),
            "distill_alpha",
            "in [0, 1]",
        )?;
    }
    if !matches!(method, LmMethod::Grpo | LmMethod::Dpo) && table.contains_key("start_from") {
        return Err(at.value(
            &["params", "start_from"],
            format!(
                "[[model]] `{}`: `start_from` is a GRPO or DPO setting",
                m.name
            ),
            "set method = \"grpo\" or \"dpo\", or remove the key",
        ));
    }
    let known = hone_lm::LoraConfig::targets();
    for t in &params.target_modules {
        if !known.contains(&t.as_str()) {
            return Err(at.value(
                &["params", "target_modules"],
                format!("[[model]] `{}`: unknown target module `{t}`", m.name),
                &format!("known modules: {}", known.join(", ")),
            ));
        }
    }
    check(
        !params.target_modules.is_empty(),
        "target_modules",
        "a non-empty list",
    )?;
    if params.device != "cpu" {
        hone_neural::device::parse(&params.device).map_err(|e| {
            at.value(
                &["params", "device"],
                format!("[[model]] `{}`: {e}", m.name),
                "use \"cpu\"",
            )
        })?;
    }
    Ok(LmSpec {
        path: file,
        path_as_written,
        method,
        preferences_file: params.preferences.as_deref().map(|p| resolve_path(root, p)),
        params,
        seed_set: table.contains_key("seed"),
    })
}

/// A `checkpoint_dir` param resolved against the project root (refused when empty).
fn checkpoint_dir(
    at: &At<'_>,
    m: &hone_core::config::ModelConfig,
    root: &Path,
    dir: Option<PathBuf>,
) -> Result<Option<PathBuf>> {
    match dir {
        Some(d) if d.as_os_str().is_empty() => Err(at.value(
            &["params", "checkpoint_dir"],
            format!("[[model]] `{}`: `checkpoint_dir` is empty", m.name),
            "give a directory relative to the project root, or remove the key",
        )),
        d => Ok(d.map(|d| root.join(d))),
    }
}

fn encoder_spec(
    at: &At<'_>,
    m: &hone_core::config::ModelConfig,
    root: &Path,
) -> Result<EncoderSpec> {
    let get_minilm = "scripts/get-minilm fetches all-MiniLM-L6-v2 into models/all-MiniLM-L6-v2; paths are relative to the project root";
    let path_as_written = match m.path.as_deref() {
        Some(p) if !p.trim().is_empty() => p.to_string(),
        Some(_) => {
            return Err(at.value(
                &["path"],
                format!("[[model]] `{}`: `path` is empty", m.name),
                get_minilm,
            ));
        }
        None => {
            return Err(at.value(
                &["kind"],
                format!(
                    "[[model]] `{}`: kind = \"encoder\" needs path = \"DIR\" (a Hugging Face model directory)",
                    m.name
                ),
                get_minilm,
            ));
        }
    };
    let path = resolve_path(root, &path_as_written);
    if let Some(missing) = hone_core::config::missing_model_file(&path) {
        return Err(at.value(
            &["path"],
            format!(
                "[[model]] `{}`: `{path_as_written}` is not a Hugging Face model directory ({} is missing)",
                m.name,
                path.join(missing).display()
            ),
            get_minilm,
        ));
    }
    let method_name = m.method.as_deref().unwrap_or(DEFAULT_METHOD);
    let method: Method = method_name.parse().map_err(|_| {
        at.value(
            &["method"],
            format!(
                "[[model]] `{}`: unknown encoder method `{method_name}`",
                m.name
            ),
            &choice_hint(method_name, METHODS),
        )
    })?;
    let pooling_name = m.pooling.as_deref().unwrap_or(DEFAULT_POOLING);
    let pooling = parse_pooling(pooling_name).map_err(|_| {
        at.value(
            &["pooling"],
            format!("[[model]] `{}`: unknown pooling `{pooling_name}`", m.name),
            &choice_hint(pooling_name, POOLINGS),
        )
    })?;
    let table = params_table(m);
    let not_here = |key: &str| -> Option<String> {
        if ENCODER_KEYS.contains(&key) {
            Some(format!(
                "`{key}` belongs in the [[model]] table itself, not under params"
            ))
        } else if DISTILL_PARAMS.contains(&key) {
            Some("distillation trains an `ngram` student: put distill_from on a kind = \"ngram\" model".into())
        } else if NGRAM_PARAMS.contains(&key) && !FINETUNE_PARAMS.contains(&key) {
            Some(format!(
                "`{key}` is an ngram parameter; this model is kind = \"encoder\""
            ))
        } else {
            None
        }
    };
    // Nested tables first, so that their errors point inside them.
    for (key, known) in [
        ("finetune", FINETUNE_PARAMS),
        ("contrastive", CONTRASTIVE_PARAMS),
    ] {
        if let Some(toml::Value::Table(sub)) = table.get(key) {
            if key == "finetune" {
                typed::<FinetuneConfig>(at, &["params", key], sub, known, &|_| None)?;
            } else {
                typed::<ContrastiveConfig>(at, &["params", key], sub, known, &|_| None)?;
            }
        }
    }
    let mut params: EncoderParams = typed(at, &["params"], &table, ENCODER_PARAMS, &not_here)?;
    check_encoder_ranges(at, &params, &path)?;
    params.checkpoint_dir = checkpoint_dir(at, m, root, params.checkpoint_dir.take())?;
    let seed_in =
        |key: &str| matches!(table.get(key), Some(toml::Value::Table(t)) if t.contains_key("seed"));
    Ok(EncoderSpec {
        path,
        path_as_written,
        method,
        pooling,
        params,
        finetune_seed_set: seed_in("finetune"),
        contrastive_seed_set: seed_in("contrastive"),
    })
}

fn choice_hint(value: &str, allowed: &[&str]) -> String {
    match closest(value, allowed) {
        Some(best) => format!("did you mean `{best}`? (allowed: {})", allowed.join(", ")),
        None => format!("allowed values: {}", allowed.join(", ")),
    }
}

/// Ranges of the encoder settings (what training would refuse later, refused at load).
fn check_encoder_ranges(at: &At<'_>, p: &EncoderParams, dir: &Path) -> Result<()> {
    let fail = |keys: &[&str], what: String, hint: &str| -> Result<()> {
        Err(at.value(
            keys,
            format!("[[model]] `{}`: `{}` {what}", at.name, At::dotted(keys)),
            hint,
        ))
    };
    // The model's own config.json must read (its errors name that file, line and column).
    let max_positions = Some(
        hone_encoder::BertConfig::from_file(&dir.join("config.json"))?.max_position_embeddings,
    );
    if p.max_length < 2 {
        return fail(
            &["params", "max_length"],
            format!("must be at least 2 (got {})", p.max_length),
            "the default is 128 tokens; [CLS] and [SEP] take two",
        );
    }
    if let Some(n) = max_positions
        && p.max_length > n
        && !at.has(&["params", "max_length"])
    {
        return Err(at.value(
            &["params", "max_length"],
            format!(
                "[[model]] `{}`: the model takes at most {n} tokens but max_length defaults to {}",
                at.name, p.max_length
            ),
            &format!("set max_length = {n} (or less) under [model.params]"),
        ));
    }
    if let Some(n) = max_positions
        && p.max_length > n
    {
        return fail(
            &["params", "max_length"],
            format!(
                "= {} exceeds the model's max_position_embeddings {n}",
                p.max_length
            ),
            &format!("use at most {n} (the default is 128)"),
        );
    }
    if p.batch == 0 {
        return fail(
            &["params", "batch"],
            "must be at least 1".into(),
            "the default is 64",
        );
    }
    if p.c_grid.is_empty() || p.c_grid.iter().any(|c| !(c.is_finite() && *c > 0.0)) {
        return fail(
            &["params", "c_grid"],
            format!(
                "must be a non-empty list of numbers > 0 (got {:?})",
                p.c_grid
            ),
            "the default is [1.0, 10.0, 100.0, 1000.0]",
        );
    }
    if !device_syntax_ok(&p.device) {
        return fail(
            &["params", "device"],
            format!("= \"{}\" is not a device", p.device),
            &match closest(&p.device, &["cpu", "cuda", "cuda:0"]) {
                Some(best) => format!("did you mean `{best}`? (allowed: cpu, cuda, cuda:N)"),
                None => "allowed values: cpu, cuda, cuda:N".into(),
            },
        );
    }
    if p.device.trim().starts_with("cuda") && !cfg!(feature = "cuda") {
        return fail(
            &["params", "device"],
            format!(
                "= \"{}\": this hone was built without GPU support (--features cuda)",
                p.device
            ),
            "rebuild with `cargo build --release --features cuda` on a machine with the CUDA toolkit, or use device = \"cpu\"",
        );
    }
    let f = &p.finetune;
    let ft = |k| ["params", "finetune", k];
    let positive = |x: f64| x.is_finite() && x > 0.0;
    let checks: [(bool, [&str; 3], String, &str); 10] = [
        (
            f.epochs >= 1,
            ft("epochs"),
            "must be at least 1".into(),
            "the default is 3",
        ),
        (
            f.batch_size >= 1,
            ft("batch_size"),
            "must be at least 1".into(),
            "the default is 32",
        ),
        (
            f.grad_accum >= 1,
            ft("grad_accum"),
            "must be at least 1".into(),
            "the default is 1",
        ),
        (
            f.grad_accum == 0 || f.batch_size.is_multiple_of(f.grad_accum),
            ft("grad_accum"),
            format!(
                "= {} must divide batch_size = {} (micro-batches of equal size)",
                f.grad_accum, f.batch_size
            ),
            "e.g. batch_size = 32 with grad_accum = 4",
        ),
        (
            positive(f.lr),
            ft("lr"),
            format!("must be a number > 0 (got {})", f.lr),
            "the default is 5e-5",
        ),
        (
            f.head_lr.is_none_or(positive),
            ft("head_lr"),
            "must be a number > 0".into(),
            "remove it to use lr",
        ),
        (
            (0.0..=1.0).contains(&f.warmup_ratio),
            ft("warmup_ratio"),
            format!("must be between 0 and 1 (got {})", f.warmup_ratio),
            "the default is 0.0",
        ),
        (
            f.weight_decay.is_finite() && f.weight_decay >= 0.0,
            ft("weight_decay"),
            format!("must be a number >= 0 (got {})", f.weight_decay),
            "the default is 0.01",
        ),
        (
            f.max_grad_norm.is_finite() && f.max_grad_norm >= 0.0,
            ft("max_grad_norm"),
            format!(
                "must be a number >= 0 (got {}; 0 turns clipping off)",
                f.max_grad_norm
            ),
            "the default is 1.0",
        ),
        (
            f.probe_init.is_none_or(positive) && f.eval_batch >= 1,
            ft(if f.eval_batch == 0 {
                "eval_batch"
            } else {
                "probe_init"
            }),
            "must be > 0".into(),
            "probe_init is the C of the linear probe, e.g. 10.0; eval_batch defaults to 64",
        ),
    ];
    for (ok, keys, what, hint) in checks {
        if !ok {
            return fail(&keys, what, hint);
        }
    }
    let c = &p.contrastive;
    let ct = |k| ["params", "contrastive", k];
    let checks: [(bool, [&str; 3], String, &str); 5] = [
        (
            c.iterations >= 1,
            ct("iterations"),
            "must be at least 1".into(),
            "the default is 20",
        ),
        (
            c.epochs >= 1,
            ct("epochs"),
            "must be at least 1".into(),
            "the default is 1",
        ),
        (
            c.batch_size >= 1,
            ct("batch_size"),
            "must be at least 1".into(),
            "the default is 16",
        ),
        (
            positive(c.lr),
            ct("lr"),
            format!("must be a number > 0 (got {})", c.lr),
            "the default is 2e-5",
        ),
        (
            (0.0..=1.0).contains(&c.warmup_ratio),
            ct("warmup_ratio"),
            format!("must be between 0 and 1 (got {})", c.warmup_ratio),
            "the default is 0.1",
        ),
    ];
    for (ok, keys, what, hint) in checks {
        if !ok {
            return fail(&keys, what, hint);
        }
    }
    Ok(())
}

/// `cpu`, `cuda` or `cuda:N`.
fn device_syntax_ok(spec: &str) -> bool {
    let spec = spec.trim();
    spec.eq_ignore_ascii_case("cpu")
        || match spec.strip_prefix("cuda") {
            Some("") => true,
            Some(n) => n
                .strip_prefix(':')
                .is_some_and(|n| n.parse::<usize>().is_ok()),
            None => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The names serde lists for `T` (from its unknown-field error).
    fn serde_fields<T: DeserializeOwned>() -> BTreeSet<String> {
        let mut t = toml::Table::new();
        t.insert("__no_such_key__".into(), toml::Value::Integer(1));
        let msg = match toml::Value::Table(t).try_into::<T>() {
            Ok(_) => panic!("an unknown key was accepted"),
            Err(e) => e.message().to_string(),
        };
        let rest = msg.split_once("expected").unwrap().1;
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    fn set(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn param_lists_match_what_serde_accepts() {
        assert_eq!(serde_fields::<NgramConfig>(), set(NGRAM_PARAMS));
        assert_eq!(serde_fields::<DistillParams>(), set(DISTILL_PARAMS));
        assert_eq!(serde_fields::<EncoderParams>(), set(ENCODER_PARAMS));
        assert_eq!(serde_fields::<FinetuneConfig>(), set(FINETUNE_PARAMS));
        assert_eq!(serde_fields::<ContrastiveConfig>(), set(CONTRASTIVE_PARAMS));
        for m in METHODS {
            assert!(m.parse::<Method>().is_ok(), "{m}");
        }
        for p in POOLINGS {
            assert!(parse_pooling(p).is_ok(), "{p}");
        }
        assert!("nope".parse::<Method>().is_err() && parse_pooling("nope").is_err());
    }

    #[test]
    fn kinds_round_trip_by_name() {
        for k in ModelKind::ALL {
            assert_eq!(ModelKind::from_name(k.name()), Some(k));
        }
        assert!(!ModelKind::LISTED.contains(&ModelKind::Majority));
        assert_eq!(ModelEntry::majority().kind(), ModelKind::Majority);
    }

    #[test]
    fn device_syntax() {
        for ok in ["cpu", "cuda", "cuda:1", "CPU"] {
            assert!(device_syntax_ok(ok), "{ok}");
        }
        for bad in ["gpu", "cuda:", "cuda:x", "cuda1"] {
            assert!(!device_syntax_ok(bad), "{bad}");
        }
    }

    #[test]
    fn seeds_follow_the_project_unless_set() {
        let s = NgramSpec {
            config: NgramConfig::default(),
            seed_set: false,
            distill: None,
        };
        assert_eq!(s.seeded(9).seed, 9);
        let s = NgramSpec {
            seed_set: true,
            ..s
        };
        assert_eq!(s.seeded(9).seed, NgramConfig::default().seed);
    }
}
