//! `hone run` for `generate` tasks: the base model (method `none`) and every `[[model]] kind = "lm"`
//! are trained (LoRA or full SFT on the training split), then generate answers for dev and test with
//! the one chat template of the run; answers are masked by the PII masker and scored (ROUGE-L, chrF,
//! exact match, token F1 with bootstrap intervals); the best dev ROUGE-L is chosen.
//!
//! The chat template a run used is one of its artifacts: `predict` renders prompts with those bytes,
//! not with whatever the model file carries later.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use hone_core::config::SelectBy;
use hone_core::decide::{CHOICE_RULE_GENERATE, Candidate, DecisionRule, choose};
use hone_core::hash::KeyHasher;
use hone_core::record::Turn;
use hone_core::{Error, Record, Result};
use hone_lm::sft::{self, Example, SftConfig};
use hone_lm::{ChatTemplate, GenerateConfig, Lm, LoraConfig, Message, StopReason};
use hone_store::Store;
use serde_json::json;

use crate::curate::Progress;
use crate::models::{BASE, LmMethod, LmParams, LmSpec, ModelEntry, ModelSpec};
use crate::project::{Project, who};
use crate::record::{
    self, Counts, Estimate, GeneratedPrediction, GenerationMetrics, LmTrainReport, Predictions,
    RUN_RECORD_VERSION, Run, RunConfig, RunRecord, SliceAccuracy, SliceTable, Slices, TextScores,
    TrainInfo, TrainReport, finite,
};
use crate::run_stage::{Choice, ModelRun, cpu_seconds};

/// The artifact holding a run's chat template.
pub const TEMPLATE_ARTIFACT: &str = "chat_template.jinja";
/// The artifact holding a LoRA run's adapters (PEFT names).
pub const ADAPTER_ARTIFACT: &str = "adapter_model.safetensors";
/// The artifact holding a LoRA run's adapter settings (PEFT `adapter_config.json`).
pub const ADAPTER_CONFIG_ARTIFACT: &str = "adapter_config.json";
/// The artifact holding a full fine-tune's weights (Hugging Face names).
pub const WEIGHTS_ARTIFACT: &str = "model.safetensors";
/// A pre-trained model's tokenizer (Hugging Face `tokenizer.json`).
pub const TOKENIZER_ARTIFACT: &str = "tokenizer.json";
/// A pre-trained model's shape ([`hone_lm::DecoderConfig`] as JSON).
pub const SHAPE_ARTIFACT: &str = "decoder.json";

const BOOT_REPS: usize = 1000;

/// The `[[model]]`s of a generate run: the base model first (method `none` on the first model's
/// path, unless a `[[model]]` already is that), then every `[[model]]` in `hone.toml` order.
/// The base keeps the first model's decoding settings and nothing else.
pub fn entries(project: &Project) -> Vec<ModelEntry> {
    let lms: Vec<&LmSpec> = project
        .models
        .iter()
        .filter_map(|e| match &e.spec {
            ModelSpec::Lm(s) => Some(s),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    if let Some(first) = lms.iter().find(|s| !s.path_as_written.is_empty()) {
        let has_base = lms
            .iter()
            .any(|s| s.method == LmMethod::None && s.path == first.path);
        if !has_base {
            // The base takes only the settings that change its answers (decoding, prompt, device),
            // so tuning a training setting does not evaluate the base again.
            let p = &first.params;
            let params = LmParams {
                max_new_tokens: p.max_new_tokens,
                temperature: p.temperature,
                top_p: p.top_p,
                top_k: p.top_k,
                seed: p.seed,
                system: p.system.clone(),
                eval_batch: p.eval_batch,
                device: p.device.clone(),
                ..LmParams::default()
            };
            out.push(ModelEntry {
                name: BASE.into(),
                abstain: false,
                spec: ModelSpec::Lm(LmSpec {
                    method: LmMethod::None,
                    params,
                    ..(*first).clone()
                }),
            });
        }
    }
    out.extend(project.models.iter().cloned());
    out
}

/// The conversation up to one example's prompt: the `system` message (unless the record's own turns
/// open with one), the record's earlier turns, and the prompt as the user's turn.
pub fn prompt_messages(system: Option<&str>, turns: &[Turn], prompt: &str) -> Vec<Message> {
    let mut m = Vec::with_capacity(turns.len() + 2);
    if let Some(s) = system
        && turns.first().is_none_or(|t| t.role != "system")
    {
        m.push(Message::new("system", s));
    }
    m.extend(turns.iter().map(|t| Message::new(&t.role, &t.content)));
    m.push(Message::new("user", prompt));
    m
}

/// The prompt of a model without a chat template (one pre-trained from scratch): the earlier turns'
/// texts and the prompt, one per line.
pub fn plain_prompt(turns: &[Turn], prompt: &str) -> String {
    let mut s = String::new();
    for t in turns {
        s.push_str(&t.content);
        s.push('\n');
    }
    s.push_str(prompt);
    s
}

/// The prompt text for one example: rendered by the chat template when there is one (with the
/// `system` message if set), else [`plain_prompt`].
pub fn render_prompt(
    template: Option<&ChatTemplate>,
    system: Option<&str>,
    turns: &[Turn],
    prompt: &str,
) -> Result<String> {
    match template {
        Some(t) => Ok(t.render(&prompt_messages(system, turns, prompt), true)?),
        None => Ok(plain_prompt(turns, prompt)),
    }
}

/// One training record encoded for the model: its conversation through the chat template (every
/// assistant turn trains), or prompt and target as plain text for a model without one.
fn encode_record(lm: &Lm, spec: &LmSpec, r: &Record, target: &str) -> Result<sft::Encoded> {
    encode_turns(lm, spec, &r.id, &r.turns, &r.text, target)
}

/// One training example as SFT (and DPO) sees it: the conversation rendered with the run's
/// template (or plain text without one), the target's tokens trainable.
pub fn encode_turns(
    lm: &Lm,
    spec: &LmSpec,
    id: &str,
    turns: &[Turn],
    prompt: &str,
    target: &str,
) -> Result<sft::Encoded> {
    let max = spec.params.max_length;
    Ok(if lm.template().is_some() {
        let mut m = prompt_messages(spec.params.system.as_deref(), turns, prompt);
        m.push(Message::new("assistant", target));
        sft::encode_chat(lm, id, &m, max)?
    } else {
        sft::encode_plain(lm, id, &plain_prompt(turns, prompt), target, max)?
    })
}

/// A language model loaded for a run: the base file, the run's template, and its adapters or
/// weights when it trained.
pub fn load_lm(spec: &LmSpec) -> Result<Lm> {
    Ok(Lm::load(&spec.path)?)
}

/// The seed a stored run answers with when asked again: its own `seed` when it set one, else the
/// project's split seed (what `hone run` used).
pub fn run_seed(project: &Project, run: &crate::record::Run, params: &LmParams) -> u64 {
    if run.config.params.contains_key("seed") {
        params.seed
    } else {
        project.config.split.seed
    }
}

/// `records` answered now by a stored run, the way its evaluation answered: its weights, template and
/// decoding settings, seeded by the run and each record's id (dev grading, dev ranking).
pub fn answer_with_run(
    project: &Project,
    store: &Store,
    run: &Run,
    records: &[&Record],
    label: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<String>> {
    let (mut lm, params) = load_run_lm(store, &project.root, run)?;
    let cfg = generate_config(&params, run_seed(project, run, &params));
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    answer_records(
        project, &mut lm, &params, &cfg, records, &ids, label, progress,
    )
}

/// `records` answered by `lm` with its template and system prompt under `cfg`, PII masked by the
/// project's policy, in input order; `ids` seed each answer (see [`generate_all`]). The one path
/// by which a stored run answers prompts after training (dev grading, review sheets, a teacher).
#[allow(clippy::too_many_arguments)]
pub fn answer_records(
    project: &Project,
    lm: &mut Lm,
    params: &LmParams,
    cfg: &GenerateConfig,
    records: &[&Record],
    ids: &[&str],
    label: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<String>> {
    let prompts: Vec<String> = records
        .iter()
        .map(|r| render_prompt(lm.template(), params.system.as_deref(), &r.turns, &r.text))
        .collect::<Result<_>>()?;
    let gens = generate_all(lm, &prompts, ids, cfg, params.eval_batch, &mut |d, n| {
        progress(Progress::Pass {
            name: &format!("{label}: {d}/{n}"),
            index: d.saturating_sub(1),
            total: n,
        })
    })?;
    let masker = crate::input::TextPrep::for_policy(&project.config.policy);
    Ok(gens.iter().map(|g| masker.mask(&g.text)).collect())
}

/// Generates answers for `prompts` (already rendered), batched by token length so that padding
/// stays small; the answers come back in input order. Row `i` samples with a seed derived from
/// `ids[i]`, so an answer does not depend on what it was batched with.
pub fn generate_all(
    lm: &mut Lm,
    prompts: &[String],
    ids: &[&str],
    cfg: &GenerateConfig,
    batch: usize,
    on_batch: &mut dyn FnMut(usize, usize),
) -> Result<Vec<hone_lm::Generation>> {
    let mut encoded = Vec::with_capacity(prompts.len());
    for p in prompts {
        encoded.push(lm.encode(p)?);
    }
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    order.sort_by_key(|&i| (encoded[i].len(), i));
    let mut out: Vec<Option<hone_lm::Generation>> = vec![None; prompts.len()];
    let mut done = 0;
    for chunk in order.chunks(batch.max(1)) {
        let ps: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].clone()).collect();
        let seeds: Vec<u64> = chunk.iter().map(|&i| row_seed(cfg.seed, ids[i])).collect();
        let gens = lm.generate_batch(&ps, &seeds, cfg)?;
        for (&i, g) in chunk.iter().zip(gens) {
            out[i] = Some(g);
        }
        done += chunk.len();
        on_batch(done, prompts.len());
    }
    out.into_iter()
        .map(|g| g.ok_or_else(|| Error::Internal("an answer went missing".into())))
        .collect()
}

/// The sampling seed of the answer to the input `id`: the run's seed mixed with the id, so that an
/// answer does not depend on what it was batched with.
pub fn row_seed(seed: u64, id: &str) -> u64 {
    let h = blake3::hash(id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    seed ^ u64::from_le_bytes(b)
}

/// The generation settings of a model's params.
pub fn generate_config(p: &LmParams, seed: u64) -> GenerateConfig {
    GenerateConfig {
        max_new_tokens: p.max_new_tokens,
        temperature: p.temperature,
        top_k: p.top_k,
        top_p: p.top_p,
        seed,
        stop: Vec::new(),
    }
}

fn stop_name(s: &StopReason) -> &'static str {
    match s {
        StopReason::Eos => "eos",
        StopReason::Stop(_) => "stop",
        StopReason::Length => "length",
    }
}

/// Text metrics of `answers` against the records' targets, with 95% bootstrap intervals.
pub fn score_texts(
    answers: &[String],
    refs: &[&str],
    gens_tokens: &[usize],
    eos: &[bool],
    seed: u64,
) -> TextScores {
    let n = answers.len();
    if n == 0 {
        return TextScores::default();
    }
    let rouge: Vec<f64> = answers
        .iter()
        .zip(refs)
        .map(|(a, r)| hone_eval::text::rouge_l(a, r))
        .collect();
    let em: Vec<f64> = answers
        .iter()
        .zip(refs)
        .map(|(a, r)| hone_eval::text::exact_match(a, r))
        .collect();
    let f1: Vec<f64> = answers
        .iter()
        .zip(refs)
        .map(|(a, r)| hone_eval::text::token_f1(a, r))
        .collect();
    let stats: Vec<hone_eval::text::ChrfStats> = answers
        .iter()
        .zip(refs)
        .map(|(a, r)| hone_eval::text::chrf_stats(a, r))
        .collect();
    fn mean(v: &[f64], ix: &[usize]) -> f64 {
        ix.iter().map(|&i| v[i]).sum::<f64>() / ix.len().max(1) as f64
    }
    let ci = |f: &dyn Fn(&[usize]) -> f64| {
        Estimate::of(&hone_eval::bootstrap_ci(n, f, BOOT_REPS, seed, 0.95))
    };
    TextScores {
        n,
        rouge_l: ci(&|ix: &[usize]| mean(&rouge, ix)),
        chrf: ci(&|ix: &[usize]| hone_eval::text::chrf_corpus(&stats, ix)),
        exact_match: ci(&|ix: &[usize]| mean(&em, ix)),
        token_f1: ci(&|ix: &[usize]| mean(&f1, ix)),
        mean_new_tokens: finite(gens_tokens.iter().sum::<usize>() as f64 / n as f64),
        stopped_share: finite(eos.iter().filter(|&&e| e).count() as f64 / n as f64),
    }
}

/// Per-example ROUGE-L (the paired comparisons and slices use it).
pub fn rouge_per_example(answers: &[String], refs: &[&str]) -> Vec<f64> {
    answers
        .iter()
        .zip(refs)
        .map(|(a, r)| hone_eval::text::rouge_l(a, r))
        .collect()
}

/// Per-slice means of a per-example score (ROUGE-L, or 1/0 for a passed suite case).
fn slice_rouge(keys: &[Vec<String>], rouge: &[f64]) -> SliceTable {
    let mut acc: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for (ks, &r) in keys.iter().zip(rouge) {
        for k in ks {
            let e = acc.entry(k.as_str()).or_default();
            e.0 += 1;
            e.1 += r;
        }
    }
    acc.into_iter()
        .map(|(k, (n, s))| {
            (
                k.to_string(),
                SliceAccuracy {
                    n,
                    accuracy: s / n as f64,
                },
            )
        })
        .collect()
}

/// Everything one generate run needs from the pipeline.
pub struct GenContext<'a> {
    pub project: &'a Project,
    pub train: &'a [&'a Record],
    pub dev: &'a [&'a Record],
    pub test: &'a [&'a Record],
    pub split_id: &'a str,
    pub version_id: &'a str,
    pub seed: u64,
    pub command: &'a str,
    /// The project's suites: every model answers them and is scored on their expectations.
    pub suites: &'a [crate::suites::SuiteCase],
    /// The project's graders (a `grpo` model trains on one of them).
    pub graders: &'a [crate::graders::ProjectGrader],
}

/// The run key parts of a language model entry (its params as written, plus the base file's hash).
pub fn run_params(spec: &LmSpec) -> Result<serde_json::Value> {
    let mut p = serde_json::to_value(&spec.params).map_err(|e| Error::Internal(e.to_string()))?;
    p["method"] = json!(spec.method.name());
    p["lr"] = json!(spec.lr());
    if !spec.path_as_written.is_empty() {
        p["path"] = json!(spec.path_as_written);
        p["base_fingerprint"] = json!(hone_lm::model_fingerprint(&spec.path)?);
    }
    // Changed preference pairs retrain a DPO model.
    if let Some(f) = &spec.preferences_file {
        let bytes = std::fs::read(f).map_err(|e| Error::io(f, e))?;
        p["preferences_hash"] = json!(hone_core::hash::hash_bytes(&bytes));
    }
    Ok(p)
}

/// Steps after the first whose pace makes the recorded training-time estimate.
const ESTIMATE_STEPS: usize = 4;

/// The decoder shape a `pretrain` model asks for (its vocabulary is the trained tokenizer's).
pub fn pretrain_shape(p: &LmParams) -> hone_lm::DecoderConfig {
    hone_lm::DecoderConfig {
        vocab: p.vocab_size,
        hidden: p.hidden,
        ffn: p.ffn,
        layers: p.layers,
        heads: p.heads,
        kv_heads: p.kv_heads,
        rope_theta: 10_000.0,
        rms_eps: 1e-5,
        tied: true,
        context: (p.max_length + p.max_new_tokens).max(512),
        attn_bias: false,
    }
}

/// An encoded example as `spec`'s method trains on it: pre-training is language modelling, so every
/// token is predicted (the first has nothing before it); the other methods train the answer only.
fn as_trained(spec: &LmSpec, mut ex: Example) -> Example {
    if spec.method == LmMethod::Pretrain {
        ex.train.iter_mut().skip(1).for_each(|t| *t = true);
    }
    ex
}

/// The texts a `pretrain` model's tokenizer learns from: each training example as the model will
/// read it (prompt, line break, target).
fn pretrain_texts(train: &[&Record]) -> Vec<String> {
    train
        .iter()
        .map(|r| {
            format!(
                "{}\n{}",
                plain_prompt(&r.turns, &r.text),
                r.label.as_deref().unwrap_or_default()
            )
        })
        .collect()
}

/// Trains (unless the method is `none`) and evaluates one language model.
#[allow(clippy::too_many_arguments)]
pub fn train_and_evaluate(
    ctx: &GenContext<'_>,
    store: &Store,
    entry: &ModelEntry,
    spec: &LmSpec,
    params: &serde_json::Value,
    run_id: &str,
    (start, teacher): (Option<&Run>, Option<&Run>),
    progress: &mut dyn FnMut(Progress),
) -> Result<Run> {
    let name = entry.name.as_str();
    let seed = spec.seed(ctx.seed);
    let wall = Instant::now();
    let cpu0 = cpu_seconds();
    let mut lm = if spec.method == LmMethod::Pretrain {
        progress(Progress::Pass {
            name: &format!("train {name}: tokenizer"),
            index: 0,
            total: 1,
        });
        let tok =
            hone_lm::pretrain::train_tokenizer(&pretrain_texts(ctx.train), spec.params.vocab_size)?;
        hone_lm::pretrain::fresh(pretrain_shape(&spec.params), tok, seed)?
    } else if let Some(start) = start {
        // GRPO and DPO continue the `start_from` model's adapters or weights.
        load_run_lm(store, &ctx.project.root, start)?.0
    } else {
        load_lm(spec)?
    };
    let template = lm.template().map(|t| t.source.clone());
    let system = spec.params.system.as_deref();
    let mut report = LmTrainReport {
        method: spec.method.name().into(),
        template_hash: template.as_deref().map(hone_core::hash::hash_str),
        ..Default::default()
    };
    let mut artifacts: BTreeMap<String, String> = BTreeMap::new();
    if let Some(t) = &template {
        artifacts.insert(
            TEMPLATE_ARTIFACT.into(),
            store.put_object(t.as_bytes(), "artifact")?,
        );
    }
    if spec.method != LmMethod::None && ctx.train.is_empty() {
        return Err(Error::Data {
            message: format!("[[model]] `{name}` has no training examples: the training split is empty"),
            hint: "with [policy] contamination = \"drop_train\" the leak check may have dropped every training record (`hone split` lists the pairs); add data, or check the [split] fractions".into(),
        });
    }
    let mut owned_checkpoints = None;
    if spec.method == LmMethod::Grpo {
        let (grpo, log, owned) = crate::grpo_stage::train(
            ctx,
            store,
            name,
            spec,
            &mut lm,
            start.is_none(),
            seed,
            run_id,
            progress,
        )?;
        owned_checkpoints = owned;
        if log.ended == sft::Ended::Interrupted {
            return Err(Error::Internal("training was interrupted".into()));
        }
        report.trainable_params = trainable_params(&lm);
        report.micro_batch = log.micro_batch;
        report.activation_bytes = grpo.activation_bytes;
        report.steps = log.steps.len();
        report.losses = log.steps.iter().map(|s| s.loss).collect();
        report.train_loop_seconds = Some(log.seconds);
        report.ended = Some(log.ended);
        report.dev_by_epoch = log.dev.clone();
        report.kept = log.best;
        report.resumed_at_step = log.resumed_at;
        report.grpo = Some(grpo);
        store_weights(store, &lm, spec, &mut artifacts)?;
    }
    if spec.method == LmMethod::Dpo {
        let (dpo, log) =
            crate::dpo_stage::train(ctx, name, spec, &mut lm, start.is_none(), seed, progress)?;
        report.trainable_params = trainable_params(&lm);
        report.steps = log.steps.len();
        report.losses = log.steps.iter().map(|s| s.loss).collect();
        report.train_loop_seconds = Some(log.seconds);
        report.dpo = Some(Box::new(dpo));
        store_weights(store, &lm, spec, &mut artifacts)?;
    }
    if matches!(
        spec.method,
        LmMethod::Lora | LmMethod::Sft | LmMethod::Pretrain
    ) {
        // A teacher: its token distributions when the tokenizers match, else its answers.
        let mut teacher_lm = match teacher {
            Some(t) => Some((load_run_lm(store, &ctx.project.root, t)?, t)),
            None => None,
        };
        let token_level = teacher_lm
            .as_ref()
            .is_some_and(|((t, _), _)| lm.shares_tokenizer(t));
        let mut teacher_answers: BTreeMap<&str, String> = BTreeMap::new();
        if let Some(((tlm, tparams), trun)) = teacher_lm.as_mut() {
            let mut d = record::LmDistill {
                teacher: trun.model.clone(),
                teacher_run: trun.id.clone(),
                mode: if token_level { "token" } else { "sequence" }.into(),
                temperature: spec.params.distill_temperature,
                alpha: spec.params.distill_alpha,
                ..Default::default()
            };
            if !token_level {
                let t0 = Instant::now();
                let ids: Vec<&str> = ctx.train.iter().map(|r| r.id.as_str()).collect();
                let answers = answer_records(
                    ctx.project,
                    tlm,
                    tparams,
                    &generate_config(tparams, seed),
                    ctx.train,
                    &ids,
                    &format!("{name}: the teacher answers the training prompts"),
                    progress,
                )?;
                teacher_answers.extend(ids.iter().copied().zip(answers));
                d.teacher_answer_seconds = Some(t0.elapsed().as_secs_f64());
            }
            report.distill = Some(Box::new(d));
        }
        if !token_level {
            // The teacher has answered; its memory is the student's now.
            teacher_lm = None;
        }
        // Examples: the prompt as the user's turn, the target as the assistant's (the teacher's
        // answer in sequence-level distillation).
        let mut examples: Vec<Example> = Vec::with_capacity(ctx.train.len());
        for r in ctx.train {
            let target = match teacher_answers.get(r.id.as_str()) {
                Some(a) => Some(a.as_str()),
                None => r.label.as_deref(),
            };
            let Some(target) = target else {
                report.without_target += 1;
                continue;
            };
            let enc = encode_record(&lm, spec, r, target)?;
            report.truncated += usize::from(enc.truncated);
            let ex = as_trained(spec, enc.example);
            report.trainable_tokens += ex.trainable();
            examples.push(ex);
        }
        if examples.is_empty() {
            return Err(Error::Data {
                message: "no training example has a target".into(),
                hint: "map the reply column with fields = { prompt = \"...\", target = \"...\" }"
                    .into(),
            });
        }
        if spec.method == LmMethod::Lora {
            lm.decoder_mut().add_lora(
                LoraConfig {
                    rank: spec.params.lora_rank,
                    alpha: spec.params.lora_alpha,
                    dropout: spec.params.lora_dropout,
                    targets: spec.params.target_modules.clone(),
                },
                seed,
            )?;
        }
        report.trainable_params = trainable_params(&lm);
        let cfg = SftConfig {
            epochs: spec.params.epochs,
            lr: spec.lr(),
            batch_size: spec.params.batch_size,
            grad_accum: spec.params.grad_accum,
            warmup_ratio: spec.params.warmup_ratio,
            weight_decay: spec.params.weight_decay,
            max_grad_norm: spec.params.max_grad_norm,
            seed,
            micro_batch: spec.params.micro_batch,
        };
        let micro = sft::micro_batch(&lm, &examples, &cfg);
        let longest = examples.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        report.micro_batch = micro;
        report.activation_bytes = micro as u64
            * sft::activation_bytes(
                lm.decoder().config(),
                longest,
                lm.decoder().lora().is_some(),
            );
        let label = format!(
            "train {name} (micro-batch {micro}, ~{:.1} GiB of activations)",
            report.activation_bytes as f64 / (1u64 << 30) as f64
        );
        // The estimate: 6 FLOPs per parameter per trained token (forward and backward), and the
        // wall time of the first step times the number of steps, priced by [costs].
        let params_total: usize = lm
            .decoder()
            .vars()
            .iter()
            .map(|(_, v)| v.as_tensor().elem_count())
            .sum();
        let tokens_per_epoch: usize = examples.iter().map(|e| e.ids.len()).sum();
        report.flops = Some(6.0 * params_total as f64 * (tokens_per_epoch * cfg.epochs) as f64);
        let started = Instant::now();
        let price = ctx.project.config.costs.cpu_hour_usd;
        let (checkpoints, hone_owned) =
            checkpoint_place(store, entry, spec, params, &cfg, &examples, &lm)?;
        // Dev ROUGE-L after every epoch (when there are several and a dev set): the best epoch's
        // weights are kept, and `patience` epochs without a better score stop training.
        let dev_prompts: Vec<String> = ctx
            .dev
            .iter()
            .map(|r| render_prompt(lm.template(), system, &r.turns, &r.text))
            .collect::<Result<_>>()?;
        let dev_ids: Vec<&str> = ctx.dev.iter().map(|r| r.id.as_str()).collect();
        let dev_refs: Vec<String> = ctx
            .dev
            .iter()
            .map(|r| r.label.clone().unwrap_or_default())
            .collect();
        let gen_cfg = generate_config(&spec.params, seed);
        let masker = crate::input::TextPrep::for_policy(&ctx.project.config.policy);
        let cell = std::cell::RefCell::new(&mut *progress);
        let mut dev_rouge = |lm: &mut Lm| -> hone_lm::Result<f64> {
            let label = format!("{label}: dev ROUGE-L");
            let gens = generate_all(
                lm,
                &dev_prompts,
                &dev_ids,
                &gen_cfg,
                spec.params.eval_batch,
                &mut |d, n| {
                    (cell.borrow_mut())(Progress::Pass {
                        name: &format!("{label}: {d}/{n}"),
                        index: d.saturating_sub(1),
                        total: n,
                    })
                },
            )
            .map_err(|e| hone_lm::LmError::Caller(Box::new(e)))?;
            let answers: Vec<String> = gens.iter().map(|g| masker.mask(&g.text)).collect();
            let r = rouge_per_example(&answers, &strs(&dev_refs));
            Ok(r.iter().sum::<f64>() / r.len().max(1) as f64)
        };
        let control = sft::Control {
            checkpoints: Some(checkpoints.clone()),
            dev_score: (cfg.epochs > 1 && !ctx.dev.is_empty())
                .then_some(&mut dev_rouge as &mut dyn FnMut(&mut Lm) -> hone_lm::Result<f64>),
            patience: spec.params.patience,
            max_seconds: ctx
                .project
                .config
                .costs
                .budget_seconds(spec.params.device == "cuda"),
            teacher: teacher_lm
                .as_ref()
                .filter(|_| token_level)
                .map(|((t, _), _)| sft::Teacher {
                    lm: t,
                    temperature: spec.params.distill_temperature,
                    alpha: spec.params.distill_alpha,
                }),
        };
        // The estimate: the time so far plus the remaining padded tokens (`sft::step_work`) at the
        // rate of the steps after the first one seen (the first pays for allocations the others
        // reuse). The one recorded is the estimate shown after ESTIMATE_STEPS steps.
        let work = sft::step_work(&examples, &cfg, micro);
        let mut after = vec![0u64; work.len() + 1];
        for (i, w) in work.iter().enumerate().rev() {
            after[i] = after[i + 1] + w;
        }
        let (mut estimate, mut seen): (Option<f64>, Option<(usize, f64)>) = (None, None);
        let trained = sft::train_with(&mut lm, &examples, &cfg, control, &mut |s| {
            let now = started.elapsed().as_secs_f64();
            let step = s.step as usize;
            let left = after.get(step + 1).copied().unwrap_or(0) as f64;
            let secs = match seen {
                None => {
                    seen = Some((step, now));
                    now + now / work.get(step).copied().unwrap_or(1).max(1) as f64 * left
                }
                Some((first, t)) => {
                    let done = (after[first + 1] - after[step + 1]).max(1) as f64;
                    now + (now - t) / done * left
                }
            };
            if seen.is_some_and(|(first, _)| step == first + ESTIMATE_STEPS)
                || (estimate.is_none() && step + 1 == work.len())
            {
                estimate = Some(secs);
            }
            (cell.borrow_mut())(Progress::Pass {
                name: &format!(
                    "{label}: step {}/{} loss {:.3} (estimate {secs:.0} s, ${:.4})",
                    s.step + 1,
                    s.total,
                    s.loss,
                    secs / 3600.0 * price
                ),
                index: s.step as usize,
                total: s.total as usize,
            });
        })?;
        report.estimated_seconds = estimate;
        report.train_loop_seconds = Some(trained.seconds);
        report.ended = Some(trained.ended);
        report.dev_by_epoch = trained.dev.clone();
        report.kept = trained.best;
        report.resumed_at_step = trained.resumed_at;
        let log = trained.steps;
        if hone_owned {
            owned_checkpoints = Some(checkpoints.dir.clone());
        }
        if trained.ended == sft::Ended::Interrupted {
            return Err(Error::Internal("training was interrupted".into()));
        }
        report.steps = log.len();
        report.losses = log.iter().map(|s| s.loss).collect();
        store_weights(store, &lm, spec, &mut artifacts)?;
    }
    if let Some(dir) = &owned_checkpoints {
        // The weights are in the store now; the checkpoint has served its purpose.
        std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let train_wall = wall.elapsed().as_secs_f64();
    let train_cpu = cpu_seconds() - cpu0;

    // Evaluation: dev (for the choice) and test, with the same rendering.
    let gen_cfg = generate_config(&spec.params, seed);
    // Answers are masked under the data's policy: the types the training targets had masked.
    let masker = crate::input::TextPrep::for_policy(&ctx.project.config.policy);
    let mut answer = |set: &[&Record],
                      what: &str,
                      progress: &mut dyn FnMut(Progress)|
     -> Result<(Vec<String>, Vec<hone_lm::Generation>, f64)> {
        let prompts: Vec<String> = set
            .iter()
            .map(|r| render_prompt(lm.template(), system, &r.turns, &r.text))
            .collect::<Result<_>>()?;
        let ids: Vec<&str> = set.iter().map(|r| r.id.as_str()).collect();
        let t = Instant::now();
        let label = format!("evaluate {name} on {what}");
        let gens = generate_all(
            &mut lm,
            &prompts,
            &ids,
            &gen_cfg,
            spec.params.eval_batch,
            &mut |d, n| {
                progress(Progress::Pass {
                    name: &format!("{label}: {d}/{n}"),
                    index: d.saturating_sub(1),
                    total: n,
                });
            },
        )?;
        let secs = t.elapsed().as_secs_f64();
        let masked = gens.iter().map(|g| masker.mask(&g.text)).collect();
        Ok((masked, gens, secs))
    };
    let refs = |set: &[&Record]| -> Vec<String> {
        set.iter()
            .map(|r| r.label.clone().unwrap_or_default())
            .collect()
    };
    let (dev_answers, dev_gens, _) = answer(ctx.dev, "dev", progress)?;
    let (test_answers, test_gens, test_secs) = answer(ctx.test, "test", progress)?;
    let (suite_metrics, suite_predictions) = answer_suites(
        ctx,
        &mut lm,
        system,
        &gen_cfg,
        spec.params.eval_batch,
        &masker,
        progress,
    )?;
    let dev_refs = refs(ctx.dev);
    let test_refs = refs(ctx.test);
    let tokens = |g: &[hone_lm::Generation]| g.iter().map(|g| g.tokens.len()).collect::<Vec<_>>();
    let eos = |g: &[hone_lm::Generation]| {
        g.iter()
            .map(|g| g.stop == StopReason::Eos)
            .collect::<Vec<_>>()
    };
    let dev_scores = score_texts(
        &dev_answers,
        &strs(&dev_refs),
        &tokens(&dev_gens),
        &eos(&dev_gens),
        ctx.seed,
    );
    let test_scores = score_texts(
        &test_answers,
        &strs(&test_refs),
        &tokens(&test_gens),
        &eos(&test_gens),
        ctx.seed,
    );
    let rouge = rouge_per_example(&test_answers, &strs(&test_refs));
    let generated_tokens: usize = test_gens.iter().map(|g| g.tokens.len()).sum();
    let tokens_per_s = finite(generated_tokens as f64 / test_secs);
    // Retention and speed-up against the teacher's own test figures.
    if let (Some(d), Some(t)) = (report.distill.as_mut(), teacher) {
        let tg = t.record.generation.as_ref();
        d.retention = match (
            test_scores.rouge_l.estimate,
            tg.and_then(|g| g.test.rouge_l.estimate),
        ) {
            (Some(s), Some(t)) if t > 0.0 => Some(s / t),
            _ => None,
        };
        d.speedup = match (tokens_per_s, tg.and_then(|g| g.tokens_per_s)) {
            (Some(s), Some(t)) if t > 0.0 => Some(s / t),
            _ => None,
        };
    }
    let keys = |f: &dyn Fn(&Record) -> Vec<String>| -> Vec<Vec<String>> {
        ctx.test.iter().map(|r| f(r)).collect()
    };
    let slices = Slices {
        source: slice_rouge(&keys(&|r| vec![r.source.clone()]), &rouge),
        topic: slice_rouge(&keys(&|r| r.topic.iter().cloned().collect()), &rouge),
        tag: slice_rouge(&keys(&|r| r.tags.clone()), &rouge),
    };
    let kept = |set: &[&Record], answers: &[String], gens: &[hone_lm::Generation]| {
        set.iter()
            .zip(answers)
            .zip(gens)
            .map(|((r, a), g)| GeneratedPrediction {
                id: r.id.clone(),
                reference: r.label.clone(),
                completion: a.clone(),
                stop: stop_name(&g.stop).into(),
            })
            .collect()
    };
    let predictions = Predictions {
        labels: Vec::new(),
        test: Vec::new(),
        suites: suite_predictions,
        generated: kept(ctx.test, &test_answers, &test_gens),
        dev_generated: kept(ctx.dev, &dev_answers, &dev_gens),
    };
    let predictions_obj = store.put_object(
        &serde_json::to_vec(&predictions).map_err(|e| Error::Internal(e.to_string()))?,
        "predictions",
    )?;
    let per_example_us = test_secs * 1e6 / ctx.test.len().max(1) as f64;
    let record = RunRecord {
        v: RUN_RECORD_VERSION,
        name: name.to_string(),
        labels: Vec::new(),
        n: Counts {
            train: ctx.train.len(),
            dev: ctx.dev.len(),
            test: ctx.test.len(),
            suites: ctx.suites.len(),
        },
        decision: DecisionRule::Argmax,
        latency_us: record::Latency {
            mean: finite(per_example_us),
            ..Default::default()
        },
        throughput_per_s: finite(ctx.test.len() as f64 / test_secs),
        train: TrainInfo {
            dev_folded: false,
            wall_seconds: train_wall,
            cpu_seconds: train_cpu,
            epochs: Vec::new(),
            report: TrainReport::Lm(report),
        },
        cost: record::Cost {
            train_usd: finite(train_wall / 3600.0 * ctx.project.config.costs.cpu_hour_usd),
            per_1k_predictions_usd: finite(
                per_example_us * 1e-6 * 1000.0 / 3600.0 * ctx.project.config.costs.cpu_hour_usd,
            ),
            per_useful_answer_usd: None,
        },
        artifacts,
        predictions: predictions_obj,
        suites: suite_metrics,
        generation: Some(GenerationMetrics {
            select_by: "rouge_l".into(),
            dev: dev_scores,
            test: test_scores,
            slices,
            tokens_per_s,
        }),
        ..Default::default()
    };
    let kind = entry.kind().name();
    Ok(Run {
        id: run_id.to_string(),
        seq: 0,
        created_at: String::new(),
        model: name.to_string(),
        kind: kind.to_string(),
        version: ctx.version_id.to_string(),
        split: ctx.split_id.to_string(),
        seed: seed as i64,
        hone_version: hone_core::HONE_VERSION.to_string(),
        config: RunConfig {
            kind: kind.to_string(),
            name: name.to_string(),
            params: params.as_object().cloned().unwrap_or_default(),
            abstain: false,
        },
        record,
    })
}

/// Every suite case answered and checked: pass rates by suite file and by tag, and per case the
/// expectations, the masked answer and why it failed ([`crate::suites::check`]).
fn answer_suites(
    ctx: &GenContext<'_>,
    lm: &mut Lm,
    system: Option<&str>,
    cfg: &GenerateConfig,
    batch: usize,
    masker: &crate::input::TextPrep,
    progress: &mut dyn FnMut(Progress),
) -> Result<(record::SuiteMetrics, Vec<record::SuitePrediction>)> {
    if ctx.suites.is_empty() {
        return Ok(Default::default());
    }
    let prompts: Vec<String> = ctx
        .suites
        .iter()
        .map(|c| render_prompt(lm.template(), system, &c.turns, &c.text))
        .collect::<Result<_>>()?;
    let ids: Vec<&str> = ctx.suites.iter().map(|c| c.id.as_str()).collect();
    let gens = generate_all(lm, &prompts, &ids, cfg, batch, &mut |d, n| {
        progress(Progress::Pass {
            name: &format!("suites: {d}/{n}"),
            index: d.saturating_sub(1),
            total: n,
        })
    })?;
    let mut passed = Vec::with_capacity(gens.len());
    let mut predictions = Vec::with_capacity(gens.len());
    let pii = crate::input::TextPrep::new();
    for (c, g) in ctx.suites.iter().zip(&gens) {
        let p = crate::suites::check(c, &g.text, masker, &pii)?;
        passed.push(if p.failures.is_empty() { 1.0 } else { 0.0 });
        predictions.push(p);
    }
    let keys = |f: &dyn Fn(&crate::suites::SuiteCase) -> Vec<String>| -> Vec<Vec<String>> {
        ctx.suites.iter().map(f).collect()
    };
    Ok((
        record::SuiteMetrics {
            by_suite: slice_rouge(&keys(&|c| vec![c.suite.clone()]), &passed),
            by_tag: slice_rouge(&keys(&|c| c.tags.clone()), &passed),
            n: ctx.suites.len(),
        },
        predictions,
    ))
}

/// Where a training run's checkpoints go, and whether hone owns the directory: `checkpoint_dir` when
/// the params name one (kept after the run; one made with other settings is refused), otherwise
/// `.hone/checkpoints/NAME-KEY`, keyed by everything the run depends on, so that a rerun after an
/// interruption resumes it and a run with other settings starts its own; hone removes it once the
/// run's weights are in the store.
fn checkpoint_place(
    store: &Store,
    entry: &ModelEntry,
    spec: &LmSpec,
    params: &serde_json::Value,
    cfg: &SftConfig,
    examples: &[Example],
    lm: &Lm,
) -> Result<(sft::Checkpoints, bool)> {
    // The base model by path and size (a file swapped at the same path changes its size or is
    // caught by the trainable shapes in the fingerprint).
    let base_len = if spec.method == LmMethod::Pretrain {
        0
    } else {
        std::fs::metadata(&spec.path).map(|m| m.len()).unwrap_or(0)
    };
    let key = format!("{}|{}|{base_len}|{params}", entry.name, spec.path.display());
    let print = sft::fingerprint(&key, cfg, examples, &lm.decoder().trainable());
    let (dir, owned) = match &spec.params.checkpoint_dir {
        Some(d) => (d.clone(), false),
        None => (
            store
                .dir()
                .join("checkpoints")
                .join(format!("{}-{}", entry.name, &print[..16])),
            true,
        ),
    };
    Ok((
        sft::Checkpoints {
            dir,
            key,
            every: spec.params.checkpoint_every.max(1) as u64,
            stop_after: None,
        },
        owned,
    ))
}

/// Parameters that train (the adapters alone for LoRA).
fn trainable_params(lm: &Lm) -> usize {
    lm.decoder()
        .trainable()
        .iter()
        .map(|(_, v)| v.as_tensor().elem_count())
        .sum()
}

/// Puts a trained model's weights in the store as run artifacts: its adapters (PEFT names and
/// config) when it has LoRA adapters, every weight otherwise, and a pre-trained model's tokenizer
/// and shape.
fn store_weights(
    store: &Store,
    lm: &Lm,
    spec: &LmSpec,
    artifacts: &mut BTreeMap<String, String>,
) -> Result<()> {
    let save =
        |tensors: std::collections::HashMap<String, candle_core::Tensor>| -> Result<Vec<u8>> {
            let tmp =
                tempfile::NamedTempFile::new().map_err(|e| Error::io(std::env::temp_dir(), e))?;
            candle_core::safetensors::save(&tensors, tmp.path())
                .map_err(|e| Error::Internal(format!("saving weights: {e}")))?;
            std::fs::read(tmp.path()).map_err(|e| Error::io(tmp.path(), e))
        };
    if lm.decoder().lora().is_some() {
        let adapters = lm
            .decoder()
            .lora_vars()
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        artifacts.insert(
            ADAPTER_ARTIFACT.into(),
            store.put_object(&save(adapters)?, "artifact")?,
        );
        let config = adapter_config(&spec.params, &spec.path_as_written);
        artifacts.insert(
            ADAPTER_CONFIG_ARTIFACT.into(),
            store.put_object(config.to_string().as_bytes(), "artifact")?,
        );
    } else {
        artifacts.insert(
            WEIGHTS_ARTIFACT.into(),
            store.put_object(&save(lm.decoder().tensors()?)?, "artifact")?,
        );
    }
    if spec.path_as_written.is_empty() {
        // No base file: the tokenizer and the shape travel with the weights.
        let tok = lm
            .tokenizer()
            .to_string(false)
            .map_err(|e| Error::Internal(format!("saving the tokenizer: {e}")))?;
        artifacts.insert(
            TOKENIZER_ARTIFACT.into(),
            store.put_object(tok.as_bytes(), "artifact")?,
        );
        let shape = serde_json::to_vec(lm.decoder().config())
            .map_err(|e| Error::Internal(e.to_string()))?;
        artifacts.insert(SHAPE_ARTIFACT.into(), store.put_object(&shape, "artifact")?);
    }
    Ok(())
}

/// PEFT's `adapter_config.json` for the run's adapters.
pub fn adapter_config(p: &LmParams, base: &str) -> serde_json::Value {
    json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base,
        "r": p.lora_rank,
        "lora_alpha": p.lora_alpha,
        "lora_dropout": p.lora_dropout,
        "target_modules": p.target_modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
    })
}

/// Trains and evaluates every entry of a generate project (cached by run key); returns the runs
/// and the index of the chosen one.
pub fn run_models(
    ctx: &GenContext<'_>,
    store: &mut Store,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Vec<ModelRun>, Choice)> {
    let entries = entries(ctx.project);
    if entries.is_empty() {
        return Err(Error::Data {
            message: "a generate task needs a language model".into(),
            hint: "add [[model]] kind = \"lm\" with path = \"models/SmolLM2-135M-Instruct.Q4_1.gguf\" (scripts/get-smollm2)".into(),
        });
    }
    if ctx.test.is_empty() {
        return Err(Error::Data {
            message: "the test split is empty".into(),
            hint: "set [split] test > 0 or declare a role = \"test\" source".into(),
        });
    }
    let mut runs: Vec<ModelRun> = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let ModelSpec::Lm(spec) = &entry.spec else {
            return Err(Error::Internal(format!(
                "[[model]] `{}` is not a language model, yet passed validation for a generate task",
                entry.name
            )));
        };
        progress(Progress::Pass {
            name: &format!("train {}", entry.name),
            index: i,
            total: entries.len(),
        });
        let mut params = run_params(spec)?;
        // GRPO from another model depends on that model's run: a new one retrains it.
        let start = match &spec.params.start_from {
            Some(from) => {
                let k = by_name.get(from).copied().ok_or_else(|| {
                    Error::Internal(format!("start_from `{from}` was not trained before"))
                })?;
                params["start_from_run"] = json!(runs[k].run.id);
                Some(&runs[k].run)
            }
            None => None,
        };
        // A student depends on its teacher's run the same way.
        let teacher = match &spec.params.distill_from {
            Some(from) => {
                let k = by_name.get(from).copied().ok_or_else(|| {
                    Error::Internal(format!("distill_from `{from}` was not trained before"))
                })?;
                params["teacher_run"] = json!(runs[k].run.id);
                Some(&runs[k].run)
            }
            None => None,
        };
        let run_id = KeyHasher::new()
            .part("kind", b"lm")
            .part("name", entry.name.as_bytes())
            .part("params", params.to_string().as_bytes())
            .part("version", ctx.version_id.as_bytes())
            .part("split", ctx.split_id.as_bytes())
            .part("seed", &spec.seed(ctx.seed).to_le_bytes())
            .part(
                "suites",
                serde_json::to_string(ctx.suites)
                    .map_err(|e| Error::Internal(e.to_string()))?
                    .as_bytes(),
            )
            .part("hone", hone_core::HONE_VERSION.as_bytes())
            .finish();
        by_name.insert(entry.name.clone(), runs.len());
        if let Some(run) = record::get(store, &run_id)? {
            runs.push(ModelRun { run, cached: true });
            continue;
        }
        let (start, teacher) = (start.cloned(), teacher.cloned());
        let run = train_and_evaluate(
            ctx,
            store,
            entry,
            spec,
            &params,
            &run_id,
            (start.as_ref(), teacher.as_ref()),
            progress,
        )?;
        let row = store.put_run(&record::to_row(&run)?, &who(), ctx.command)?;
        runs.push(ModelRun {
            run: record::from_row(row)?,
            cached: false,
        });
    }
    let choice = choose_model(ctx, store, &runs, progress)?;
    let names: Vec<String> = runs.iter().map(|r| r.run.id.clone()).collect();
    store.put_choice(
        ctx.split_id,
        &runs[choice.chosen].run.id,
        &names,
        &choice.rule,
    )?;
    Ok((runs, choice))
}

/// The chosen-model rule for generate tasks: [`choose`] over every language model's dev score, which
/// is ROUGE-L unless `[task] select_by` names a grader; then the grader scores the dev answers each
/// run stored (answered again for runs stored before dev answers were kept).
pub fn choose_model(
    ctx: &GenContext<'_>,
    store: &Store,
    runs: &[ModelRun],
    progress: &mut dyn FnMut(Progress),
) -> Result<Choice> {
    let select = ctx.project.config.task.select_by();
    let (rule, metric, dev) = match &select {
        SelectBy::RougeL => (
            CHOICE_RULE_GENERATE.to_string(),
            "dev_rouge_l".to_string(),
            runs.iter().map(|r| r.run.record.dev_score()).collect(),
        ),
        SelectBy::Grader { name, mean } => {
            let grader = crate::grpo_stage::reward_grader(ctx.graders, name)?;
            let what = if *mean { "mean reward" } else { "pass rate" };
            let dev = runs
                .iter()
                .map(|r| dev_grader_score(ctx, store, &r.run, grader, *mean, progress))
                .collect::<Result<Vec<_>>>()?;
            (
                format!(
                    "best dev {what} of grader `{name}` among the language models, the base model included; the earliest listed wins a tie"
                ),
                format!(
                    "dev grader_{name}_{}",
                    if *mean { "mean" } else { "pass_rate" }
                ),
                dev,
            )
        }
    };
    let candidates: Vec<Candidate> = dev
        .iter()
        .map(|&dev_score| Candidate {
            baseline: false,
            dev_score,
        })
        .collect();
    Ok(Choice {
        chosen: choose(&candidates).unwrap_or(0),
        rule,
        metric,
        dev,
        grader: match select {
            SelectBy::Grader { name, .. } => Some(name),
            SelectBy::RougeL => None,
        },
    })
}

/// One grader's pass rate or mean reward on a run's dev answers; `None` without a dev set.
fn dev_grader_score(
    ctx: &GenContext<'_>,
    store: &Store,
    run: &Run,
    grader: &crate::graders::ProjectGrader,
    mean: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Option<f64>> {
    if ctx.dev.is_empty() {
        return Ok(None);
    }
    let stored: BTreeMap<String, String> = Predictions::load(store, run)?
        .dev_generated
        .into_iter()
        .map(|g| (g.id, g.completion))
        .collect();
    let answers: Vec<String> = if ctx.dev.iter().all(|r| stored.contains_key(&r.id)) {
        ctx.dev.iter().map(|r| stored[&r.id].clone()).collect()
    } else {
        let label = format!(
            "answer dev with run #{} ({}) to rank it",
            run.seq, run.model
        );
        answer_with_run(ctx.project, store, run, ctx.dev, &label, progress)?
    };
    let items: Vec<serde_json::Value> = ctx.dev.iter().map(|r| crate::graders::item(r)).collect();
    let texts: Vec<&str> = answers.iter().map(String::as_str).collect();
    let verdicts =
        crate::graders::grade_answers(std::slice::from_ref(grader), &items, &texts, ctx.seed);
    Ok(verdicts.into_values().next().and_then(|v| {
        if mean {
            v.scores.mean.estimate
        } else {
            v.scores.pass_rate.estimate
        }
    }))
}

/// Loads a generate run's model for prediction: the base file named in its config, the template it
/// was evaluated with, and its adapters or weights.
pub fn load_run_lm(store: &Store, project_root: &Path, run: &Run) -> Result<(Lm, LmParams)> {
    let cfg = &run.config.params;
    // A model pre-trained in the project (or trained further from one) carries its own shape.
    if run.record.artifacts.contains_key(SHAPE_ARTIFACT) {
        return load_pretrained(store, run);
    }
    let path_as_written = cfg
        .get("path")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::Store(format!("run {} has no model path", run.id)))?;
    let params = lm_params_of(run)?;
    let path = crate::models::model_path(&hone_core::config::resolve_path(
        project_root,
        path_as_written,
    ))
    .map_err(|e| Error::ModelFiles {
        path: project_root.join(path_as_written),
        reason: e,
        hint: "the run's base model must stay where it was trained from".into(),
    })?;
    let want = cfg.get("base_fingerprint").and_then(|v| v.as_str());
    let have = hone_lm::model_fingerprint(&path)?;
    if want.is_some_and(|w| w != have) {
        return Err(Error::ModelFiles {
            path,
            reason: "the base model file changed since the run trained on it".into(),
            hint: "restore the file the run used, or run `hone run` again".into(),
        });
    }
    let mut lm = Lm::load(&path)?;
    let art = |name: &str| -> Result<Option<Vec<u8>>> {
        run.record
            .artifacts
            .get(name)
            .map(|h| store.get_object(h))
            .transpose()
    };
    if let Some(t) = art(TEMPLATE_ARTIFACT)? {
        let src = String::from_utf8(t).map_err(|_| Error::Store("template is not UTF-8".into()))?;
        lm.set_template_source(&src)?;
    }
    let load_tensors =
        |bytes: Vec<u8>| -> Result<std::collections::HashMap<String, candle_core::Tensor>> {
            candle_core::safetensors::load_buffer(&bytes, &candle_core::Device::Cpu).map_err(|e| {
                Error::CorruptWeights {
                    path: path.clone(),
                    reason: e.to_string(),
                    hint: "the stored run's weights are damaged; run `hone run` again".into(),
                }
            })
        };
    if let Some(a) = art(ADAPTER_ARTIFACT)? {
        let tensors = load_tensors(a)?;
        lm.decoder_mut().load_lora(
            LoraConfig {
                rank: params.lora_rank,
                alpha: params.lora_alpha,
                dropout: params.lora_dropout,
                targets: params.target_modules.clone(),
            },
            &tensors,
        )?;
    } else if let Some(w) = art(WEIGHTS_ARTIFACT)? {
        let tensors = load_tensors(w)?;
        let cfg = lm.decoder().config().clone();
        let d = hone_lm::Decoder::from_tensors(cfg, tensors, &candle_core::Device::Cpu)?;
        lm.replace_decoder(d);
    }
    Ok((lm, params))
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// What `hone data check` shows of a generate project: one training example decoded as the first
/// language model sees it, its trainable spans marked `[[…]]`, and how many records `max_length`
/// would cut.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Preview {
    pub model: String,
    pub id: String,
    pub text: String,
    pub truncated: usize,
    pub n: usize,
}

/// The preview for `records` (curated, masked), or `None` without a language model or a record
/// with a target.
pub fn preview(project: &Project, records: &[Record]) -> Result<Option<Preview>> {
    let Some((name, spec)) = project.models.iter().find_map(|e| match &e.spec {
        ModelSpec::Lm(s) => Some((e.name.clone(), s)),
        _ => None,
    }) else {
        return Ok(None);
    };
    let with_target: Vec<&Record> = records.iter().filter(|r| r.label.is_some()).collect();
    let Some(first) = with_target.first() else {
        return Ok(None);
    };
    // A model pre-trained from scratch has no file yet: its tokenizer is trained here, as `hone
    // run` would train it (on these records rather than the training split alone).
    let lm = if spec.method == LmMethod::Pretrain {
        let tok = hone_lm::pretrain::train_tokenizer(
            &pretrain_texts(&with_target),
            spec.params.vocab_size,
        )?;
        hone_lm::pretrain::fresh(pretrain_shape(&spec.params), tok, 0)?
    } else {
        load_lm(spec)?
    };
    let encode = |r: &Record| encode_record(&lm, spec, r, r.label.as_deref().unwrap_or_default());
    let mut truncated = 0;
    for r in &with_target {
        truncated += usize::from(encode(r)?.truncated);
    }
    let shown = as_trained(spec, encode(first)?.example);
    Ok(Some(Preview {
        model: name,
        id: first.id.clone(),
        text: sft::show(&lm, &shown)?,
        truncated,
        n: with_target.len(),
    }))
}

/// A `pretrain` run's model from its artifacts: shape, tokenizer and weights.
fn load_pretrained(store: &Store, run: &Run) -> Result<(Lm, LmParams)> {
    let params: LmParams = lm_params_of(run)?;
    let art = |name: &str| -> Result<Vec<u8>> {
        let h = run
            .record
            .artifacts
            .get(name)
            .ok_or_else(|| Error::Store(format!("run {} has no `{name}` artifact", run.id)))?;
        store.get_object(h)
    };
    let bad =
        |what: &str, e: String| Error::Store(format!("run {}: {what} unreadable: {e}", run.id));
    let shape: hone_lm::DecoderConfig = serde_json::from_slice(&art(SHAPE_ARTIFACT)?)
        .map_err(|e| bad("decoder shape", e.to_string()))?;
    let tok = hone_lm::Tokenizer::from_bytes(art(TOKENIZER_ARTIFACT)?)
        .map_err(|e| bad("tokenizer", e.to_string()))?;
    let tensors =
        candle_core::safetensors::load_buffer(&art(WEIGHTS_ARTIFACT)?, &candle_core::Device::Cpu)
            .map_err(|e| bad("weights", e.to_string()))?;
    let d = hone_lm::Decoder::from_tensors(shape, tensors, &candle_core::Device::Cpu)?;
    Ok((hone_lm::pretrain::assemble(d, tok)?, params))
}

/// The `LmParams` stored in a run's config.
fn lm_params_of(run: &Run) -> Result<LmParams> {
    serde_json::from_value(serde_json::Value::Object(
        run.config
            .params
            .iter()
            .filter(|(k, _)| crate::models::LM_PARAMS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
    .map_err(|e| Error::Store(format!("run {}: params unreadable: {e}", run.id)))
}

/// `hone export` of a language model run into `out` (empty): a LoRA run writes `adapter/` (PEFT:
/// `adapter_config.json`, `adapter_model.safetensors`) and `merged/` (the base with the adapters
/// folded in, a Hugging Face directory); other runs write the model directory itself.
pub fn export_lm(store: &Store, root: &Path, run: &Run, out: &Path) -> Result<&'static str> {
    let (lm, _) = load_run_lm(store, root, run)?;
    if lm.decoder().lora().is_some() {
        let adapter = out.join("adapter");
        std::fs::create_dir_all(&adapter).map_err(|e| Error::io(&adapter, e))?;
        for name in [ADAPTER_ARTIFACT, ADAPTER_CONFIG_ARTIFACT] {
            let h = run
                .record
                .artifacts
                .get(name)
                .ok_or_else(|| Error::Store(format!("run {} has no `{name}`", run.id)))?;
            let p = adapter.join(name);
            std::fs::write(&p, store.get_object(h)?).map_err(|e| Error::io(&p, e))?;
        }
        hone_lm::hf::save_dir(&lm, &out.join("merged"))?;
        return Ok(
            "PEFT LoRA adapter (adapter/) and merged Hugging Face LlamaForCausalLM (merged/)",
        );
    }
    hone_lm::hf::save_dir(&lm, out)?;
    Ok("Hugging Face LlamaForCausalLM directory")
}
