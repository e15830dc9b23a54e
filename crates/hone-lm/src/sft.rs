//! Supervised fine-tuning: examples encoded with assistant-only loss masks (found by rendering
//! growing prefixes of each conversation and comparing token ids, never by searching for the answer
//! string), truncation from the prompt's start, and the training loop (AdamW, warmup and linear
//! decay, clipping, gradient accumulation, seeded order).
//!
//! Padding uses the pad token, which for many models is the EOS token; which tokens train is the
//! example's own mask, never "is not padding", so a final EOS stays trainable and the model learns to
//! stop.

use candle_core::{D, Tensor};

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
    let longest = batch.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    if longest < 2 {
        return Err(LmError::Data(
            "a batch of sequences shorter than two tokens".into(),
        ));
    }
    let pad = lm.info().pad.unwrap_or(lm.info().eos);
    let t = longest - 1;
    let (mut inputs, mut targets, mut weights) = (
        Vec::with_capacity(batch.len() * t),
        Vec::with_capacity(batch.len() * t),
        Vec::with_capacity(batch.len() * t),
    );
    let mut n = 0usize;
    for e in batch {
        for j in 0..t {
            inputs.push(e.ids.get(j).copied().unwrap_or(pad));
            targets.push(e.ids.get(j + 1).copied().unwrap_or(pad));
            let w = e.train.get(j + 1).copied().unwrap_or(false);
            n += usize::from(w);
            weights.push(if w { 1f32 } else { 0.0 });
        }
    }
    let dev = lm.decoder().device();
    let b = batch.len();
    let inputs = Tensor::from_vec(inputs, (b, t), dev)?;
    let targets = Tensor::from_vec(targets, (b * t, 1), dev)?;
    let weights = Tensor::from_vec(weights, b * t, dev)?;
    let logits = lm
        .decoder()
        .forward_train(&inputs, dropout)?
        .flatten_to(1)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = logp.gather(&targets, 1)?.squeeze(1)?;
    let loss = ((picked * weights)?.sum_all()? * (-1.0 / n.max(1) as f64))?;
    Ok((loss, n))
}

/// Fine-tunes every weight of `lm`'s decoder on `examples`. `on_step` sees every optimiser step.
pub fn train(
    lm: &Lm,
    examples: &[Example],
    cfg: &SftConfig,
    on_step: &mut dyn FnMut(&Step),
) -> Result<Vec<Step>> {
    if examples.is_empty() {
        return Err(LmError::Data("no training examples".into()));
    }
    let vars = lm.decoder().trainable();
    let var_list: Vec<candle_core::Var> = vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = hone_neural::optim::FusedAdamW::new(
        vars,
        hone_neural::optim::AdamWConfig {
            lr: cfg.lr,
            weight_decay: cfg.weight_decay,
            ..Default::default()
        },
    )
    .map_err(|e| LmError::Model(e.to_string()))?;
    let bs = cfg.batch_size.max(1);
    let accum = cfg.grad_accum.max(1);
    let batches_per_epoch = examples.len().div_ceil(bs);
    let steps_per_epoch = batches_per_epoch.div_ceil(accum) as u64;
    let total = steps_per_epoch * cfg.epochs as u64;
    let warmup = (cfg.warmup_ratio * total as f64).round() as u64;
    let mut rng = hone_neural::SeededRng::new(cfg.seed);
    // LoRA dropout draws from its own stream, so the example order does not depend on it.
    let mut dropout = hone_neural::Dropout::new(cfg.seed ^ 0x4c6f_5241);
    let mut log = Vec::new();
    let mut step = 0u64;
    let nerr = |e: hone_core::Error| LmError::Model(e.to_string());
    for epoch in 0..cfg.epochs {
        let mut order: Vec<usize> = (0..examples.len()).collect();
        rng.shuffle(&mut order);
        let batches: Vec<Vec<&Example>> = order
            .chunks(bs)
            .map(|c| c.iter().map(|&i| &examples[i]).collect())
            .collect();
        for group in batches.chunks(accum) {
            let mut acc = None;
            let (mut loss_sum, mut tokens) = (0.0, 0usize);
            for batch in group {
                let (loss, n) = batch_loss(lm, batch, Some(&mut dropout))?;
                loss_sum += loss.to_scalar::<f32>()? as f64;
                tokens += n;
                let grads = loss.backward()?;
                hone_neural::optim::accumulate(&mut acc, grads, &var_list).map_err(nerr)?;
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
            log.push(s);
            step += 1;
        }
    }
    Ok(log)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GenerateConfig, StopReason, testing};

    /// A tiny model with weights ×10 (random weights at std 0.02 give flat logits that low-rank
    /// adapters barely move).
    fn sharp_lm(dir: &std::path::Path) -> Lm {
        let path = dir.join("sharp.gguf");
        let d =
            crate::Decoder::random(testing::tiny_config(), 11, &candle_core::Device::Cpu).unwrap();
        let d = crate::Decoder::from_tensors(
            testing::tiny_config(),
            testing::scaled(&d, 5.0).unwrap(),
            &candle_core::Device::Cpu,
        )
        .unwrap();
        testing::write_gguf(&d, &path).unwrap();
        Lm::load(&path).unwrap()
    }

    fn tiny_lm(dir: &std::path::Path) -> Lm {
        let path = dir.join("tiny.gguf");
        testing::tiny_gguf(&path, 11).unwrap();
        Lm::load(&path).unwrap()
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
            &lm,
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
        let lm = tiny_lm(dir.path());
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
        let log = train(&lm, &examples, &cfg, &mut |s| {
            first.get_or_insert(s.loss);
        })
        .unwrap();
        let last = log.last().unwrap().loss;
        assert!(
            last < 0.05 && last < first.unwrap() / 20.0,
            "{first:?} -> {last}"
        );
        let mut lm = lm;
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
}
