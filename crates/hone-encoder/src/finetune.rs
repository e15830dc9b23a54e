//! Fine-tuning a BERT encoder with a classification head: the training loop (fused AdamW, warmup + linear
//! decay, gradient clipping, dropout and gradient accumulation from `hone-neural`), early stopping on dev,
//! and resumable checkpoints (`hone_neural::checkpoint`); plus the SetFit-style contrastive phase for
//! few-shot data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Tensor, Var};
use hone_core::{Error, Result};
use hone_neural::checkpoint;
use serde::{Deserialize, Serialize};

use crate::bert::{BertEncoder, Dropout, Pooling, SeededRng, candle_err, pool};
use crate::embed::length_order;
use crate::optim::{AdamWConfig, FusedAdamW, accumulate, clip_factor, grad_norm, linear_schedule};
use crate::tokenize::TextTokenizer;

/// An encoder with a classification head. With `cls` pooling the head is Hugging Face's
/// `BertForSequenceClassification` head (pooler dense + tanh, dropout, linear); with `mean` it is
/// dropout + linear on the masked mean of the token states.
pub struct Classifier {
    pub encoder: BertEncoder,
    pub pooling: Pooling,
    /// `(weight (h, h), bias (h))`, `cls` pooling only.
    pub pooler: Option<(Var, Var)>,
    pub weight: Var, // (classes, h)
    pub bias: Var,   // (classes)
}

impl Classifier {
    /// A new head on `encoder`: classifier weights ~ N(0, initializer_range) from `seed`; with `cls`
    /// pooling, the pooler from `pooler` (the checkpoint's) or freshly initialised.
    pub fn new(
        encoder: BertEncoder,
        pooling: Pooling,
        pooler: Option<(Tensor, Tensor)>,
        classes: usize,
        seed: u64,
    ) -> Result<Self> {
        let h = encoder.config().hidden_size;
        let std = encoder.config().initializer_range;
        let mut rng = SeededRng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
        let mut normal =
            |n: usize| -> Vec<f32> { (0..n).map(|_| (rng.normal() * std) as f32).collect() };
        let dev = encoder.device().clone();
        let var = |v: Vec<f32>, shape: &[usize]| -> Result<Var> {
            Var::from_vec(v, shape, &dev).map_err(candle_err)
        };
        let pooler = match pooling {
            Pooling::Mean => None,
            Pooling::Cls => Some(match pooler {
                Some((w, b)) => (
                    Var::from_tensor(&w.to_device(&dev).map_err(candle_err)?)
                        .map_err(candle_err)?,
                    Var::from_tensor(&b.to_device(&dev).map_err(candle_err)?)
                        .map_err(candle_err)?,
                ),
                None => (var(normal(h * h), &[h, h])?, var(vec![0.0; h], &[h])?),
            }),
        };
        Ok(Self {
            weight: var(normal(classes * h), &[classes, h])?,
            bias: var(vec![0.0; classes], &[classes])?,
            encoder,
            pooling,
            pooler,
        })
    }

    pub fn classes(&self) -> usize {
        self.bias.dim(0).unwrap_or(0)
    }

    /// Every trainable parameter under its Hugging Face name (`BertForSequenceClassification` naming
    /// without the `bert.` prefix: encoder names, `pooler.dense.*`, `classifier.*`).
    pub fn named_vars(&self) -> Result<Vec<(String, Var)>> {
        let data = self
            .encoder
            .varmap()
            .data()
            .lock()
            .map_err(|_| Error::Internal("varmap lock poisoned".into()))?;
        let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        drop(data);
        if let Some((w, b)) = &self.pooler {
            v.push(("pooler.dense.weight".into(), w.clone()));
            v.push(("pooler.dense.bias".into(), b.clone()));
        }
        v.push(("classifier.weight".into(), self.weight.clone()));
        v.push(("classifier.bias".into(), self.bias.clone()));
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    /// Head inputs `(batch, h)`: the pooled vectors, through the pooler (dense + tanh) with `cls`
    /// pooling; what the classifier layer sees (before the head's dropout).
    fn features(
        &self,
        ids: &Tensor,
        types: &Tensor,
        mask: &Tensor,
        dropout: Option<&mut Dropout>,
        train: bool,
    ) -> Result<Tensor> {
        let hidden = if train {
            self.encoder
                .forward(ids, Some(types), Some(mask), dropout)?
        } else {
            self.encoder
                .forward_inference(ids, Some(types), Some(mask))?
        };
        let x = pool(&hidden, mask, self.pooling)?;
        match &self.pooler {
            Some((w, b)) => x
                .matmul(&w.as_tensor().t().map_err(candle_err)?)
                .and_then(|x| x.broadcast_add(b.as_tensor()))
                .and_then(|x| x.tanh())
                .map_err(candle_err),
            None => Ok(x),
        }
    }

    /// Logits `(batch, classes)`. `train`: differentiable path (gradients reach the encoder);
    /// `dropout`: training-mode dropout (needs `train`).
    pub fn logits(
        &self,
        ids: &Tensor,
        types: &Tensor,
        mask: &Tensor,
        train: bool,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let mut x = self.features(ids, types, mask, dropout.as_deref_mut(), train)?;
        let p = self.encoder.config().hidden_dropout_prob;
        (|| {
            if let Some(d) = dropout {
                x = d.apply(&x, p)?;
            }
            x.matmul(&self.weight.as_tensor().t()?)?
                .broadcast_add(self.bias.as_tensor())
        })()
        .map_err(candle_err)
    }

    /// Eval-mode rows of `width` for `texts` from `f(ids, types, mask)`, batched by length; rows in
    /// input order, plus how many inputs were truncated.
    fn eval_rows(
        &self,
        tokenizer: &TextTokenizer,
        texts: &[&str],
        batch_size: usize,
        width: usize,
        f: &dyn Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<(Vec<f32>, usize)> {
        let mut out = vec![0.0f32; texts.len() * width];
        let mut truncated = 0;
        let order = length_order(texts);
        for chunk in order.chunks(batch_size.max(1)) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i]).collect();
            let tb = tokenizer.encode_batch(&batch)?;
            truncated += tb.truncated;
            let (ids, types, mask) = tb.to_tensors(self.encoder.device())?;
            let rows = f(&ids, &types, &mask)?
                .to_vec2::<f32>()
                .map_err(candle_err)?;
            for (&i, row) in chunk.iter().zip(rows) {
                out[i * width..(i + 1) * width].copy_from_slice(&row);
            }
        }
        Ok((out, truncated))
    }

    /// Eval-mode logits for `texts`, batched by length; rows in input order. Counts truncated inputs.
    pub fn predict_logits(
        &self,
        tokenizer: &TextTokenizer,
        texts: &[&str],
        batch_size: usize,
    ) -> Result<(Vec<f32>, usize)> {
        self.eval_rows(tokenizer, texts, batch_size, self.classes(), &|i, t, m| {
            self.logits(i, t, m, false, None)
        })
    }

    /// Eval-mode head inputs `(n, h)` row-major, rows in input order: the pooled vectors, passed through
    /// the pooler (dense + tanh) with `cls` pooling. This is what the classifier layer sees at eval time.
    pub fn head_features(
        &self,
        tokenizer: &TextTokenizer,
        texts: &[&str],
        batch_size: usize,
    ) -> Result<Vec<f32>> {
        let h = self.encoder.config().hidden_size;
        let (rows, _) = self.eval_rows(tokenizer, texts, batch_size, h, &|i, t, m| {
            self.features(i, t, m, None, false)
        })?;
        Ok(rows)
    }

    /// Sets the classifier layer to a fitted linear head over [`Classifier::head_features`].
    pub fn set_head(&self, head: &crate::head::LinearHead) -> Result<()> {
        let (k, h) = (self.classes(), self.encoder.config().hidden_size);
        if head.classes != k || head.dim != h {
            return Err(Error::Internal(format!(
                "head is {}×{}, classifier is {k}×{h}",
                head.classes, head.dim
            )));
        }
        self.weight
            .set(
                &Tensor::from_slice(&head.weight, (k, h), self.encoder.device())
                    .map_err(candle_err)?,
            )
            .map_err(candle_err)?;
        self.bias
            .set(&Tensor::from_slice(&head.bias, k, self.encoder.device()).map_err(candle_err)?)
            .map_err(candle_err)
    }

    /// Eval-mode pooled embeddings (no pooler, no head), rows in input order.
    pub fn embed(
        &self,
        tokenizer: &TextTokenizer,
        texts: &[&str],
        batch: usize,
    ) -> Result<Vec<f32>> {
        Ok(crate::embed::embed(
            &self.encoder,
            tokenizer,
            texts,
            self.pooling,
            false,
            batch,
            &mut |_, _| {},
        )?
        .data)
    }

    /// Writes every parameter (HF names) to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let named = self.named_vars()?;
        let map: HashMap<String, Tensor> = named
            .into_iter()
            .map(|(k, v)| (k, v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&map, path).map_err(|e| {
            Error::io(
                path,
                std::io::Error::other(format!("cannot write safetensors: {e}")),
            )
        })
    }

    /// Loads parameters written by [`Classifier::save`] (shapes must match).
    pub fn load_params(&self, get: &dyn Fn(&str) -> Option<Tensor>) -> Result<()> {
        for (name, var) in self.named_vars()? {
            let t = get(&name)
                .ok_or_else(|| Error::Internal(format!("checkpoint has no parameter {name}")))?;
            var.set(&t).map_err(candle_err)?;
        }
        Ok(())
    }

    fn snapshot(&self) -> Result<Vec<(String, Tensor)>> {
        self.named_vars()?
            .into_iter()
            .map(|(n, v)| Ok((n, v.as_tensor().copy().map_err(candle_err)?)))
            .collect()
    }
}

/// Named copies of every parameter.
type Snapshot = Vec<(String, Tensor)>;

/// Fine-tuning hyper-parameters. `batch_size` examples make one optimiser step, computed as
/// `grad_accum` micro-batches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FinetuneConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub lr: f64,
    /// Learning rate of the head (pooler + classifier); defaults to `lr`.
    pub head_lr: Option<f64>,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    /// Dropout during training (the model's own probabilities); off for exactness tests.
    pub dropout: bool,
    /// Stop after this many epochs without a better dev accuracy (0 = never stop early).
    pub patience: usize,
    pub seed: u64,
    pub eval_batch: usize,
    /// Linear-probe initialisation (LP-FT, Kumar et al. 2022): before the first epoch, the classifier
    /// layer is fitted by L-BFGS on the frozen model's head features with this C, instead of starting
    /// from random weights, so fine-tuning starts from the frozen model's solution. `None`: random head.
    pub probe_init: Option<f64>,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 32,
            grad_accum: 1,
            lr: 5e-5,
            head_lr: None,
            warmup_ratio: 0.0,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            dropout: true,
            patience: 2,
            seed: 0,
            eval_batch: 64,
            probe_init: None,
        }
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EpochLog {
    pub epoch: usize,
    pub steps: u64,
    pub train_loss: f64,
    pub dev_accuracy: Option<f64>,
    pub seconds: f64,
    pub lr_end: f64,
}

/// What a fine-tuning run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinetuneReport {
    pub epochs: Vec<EpochLog>,
    pub best_epoch: Option<usize>,
    pub stopped_early: bool,
    pub steps: u64,
    pub train_truncated: usize,
    pub resumed_from_epoch: Option<usize>,
    pub seconds_per_step: f64,
    /// The linear-probe initialisation, when `probe_init` was set: `(C, L-BFGS iterations, train
    /// accuracy of the probe, seconds)`.
    pub probe: Option<ProbeReport>,
}

/// What the linear-probe initialisation did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub c: f64,
    pub iterations: usize,
    pub train_accuracy: f64,
    pub dev_accuracy: Option<f64>,
    pub seconds: f64,
}

/// The data order of an epoch: a seeded shuffle that depends only on `(seed, epoch)`, so that a resumed
/// run sees exactly the batches an uninterrupted one would.
pub fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut rng = SeededRng::new(seed ^ (epoch as u64).wrapping_mul(0xa076_1d64_78bd_642f));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

fn cross_entropy_sum(logits: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    logp.gather(&y.unsqueeze(1)?, 1)?.sum_all()?.neg()
}

/// The gradients of the mean cross-entropy over `batch` (indices into `x`/`y`), computed as micro-batches
/// of `micro` examples whose gradients are summed: each micro-batch's loss is its summed cross-entropy
/// divided by the whole batch size, so the sum equals the gradient of one pass over the batch.
/// Returns the gradients, the batch's mean loss and how many texts were truncated.
#[allow(clippy::too_many_arguments)]
pub fn batch_gradients(
    model: &Classifier,
    tok: &TextTokenizer,
    x: &[&str],
    y: &[u32],
    batch: &[usize],
    micro: usize,
    mut dropout: Option<&mut Dropout>,
    vars: &[Var],
) -> Result<(candle_core::backprop::GradStore, f64, usize)> {
    let mut acc = None;
    let (mut loss_sum, mut truncated) = (0.0, 0);
    for mb in batch.chunks(micro.max(1)) {
        let texts: Vec<&str> = mb.iter().map(|&i| x[i]).collect();
        let labels: Vec<u32> = mb.iter().map(|&i| y[i]).collect();
        let tb = tok.encode_batch(&texts)?;
        truncated += tb.truncated;
        let (ids, types, mask) = tb.to_tensors(model.encoder.device())?;
        let logits = model.logits(&ids, &types, &mask, true, dropout.as_deref_mut())?;
        let yt = Tensor::new(labels.as_slice(), model.encoder.device()).map_err(candle_err)?;
        let loss = cross_entropy_sum(&logits, &yt)
            .and_then(|l| l / batch.len() as f64)
            .map_err(candle_err)?;
        loss_sum += loss
            .to_dtype(DType::F64)
            .and_then(|l| l.to_scalar::<f64>())
            .map_err(candle_err)?;
        let grads = loss.backward().map_err(candle_err)?;
        accumulate(&mut acc, grads, vars)?;
    }
    let grads = acc.ok_or_else(|| Error::Internal("empty batch".into()))?;
    Ok((grads, loss_sum, truncated))
}

/// Dev accuracy of `model` on tokenised texts.
fn accuracy(
    model: &Classifier,
    tok: &TextTokenizer,
    x: &[&str],
    y: &[u32],
    batch: usize,
) -> Result<f64> {
    let (logits, _) = model.predict_logits(tok, x, batch)?;
    let k = model.classes();
    let correct = logits
        .chunks(k)
        .zip(y)
        .filter(|(row, g)| crate::head::argmax(row) == **g)
        .count();
    Ok(correct as f64 / y.len().max(1) as f64)
}

/// Fits the classifier layer on the frozen model's head features (L-BFGS, fixed `c`) and installs it.
fn probe_init(
    model: &Classifier,
    tok: &TextTokenizer,
    x: &[&str],
    y: &[u32],
    dev: Option<(&[&str], &[u32])>,
    c: f64,
    batch: usize,
) -> Result<ProbeReport> {
    if !(c.is_finite() && c > 0.0) {
        return Err(Error::Usage(format!(
            "probe_init must be a positive C (got {c})"
        )));
    }
    let t0 = std::time::Instant::now();
    let h = model.encoder.config().hidden_size;
    let feats = model.head_features(tok, x, batch)?;
    let rows = crate::head::Rows {
        data: &feats,
        dim: h,
    };
    let (head, iterations) = crate::head::LinearHead::fit(
        rows,
        crate::head::Targets::Hard(y),
        model.classes(),
        c,
        500,
        None,
    )?;
    model.set_head(&head)?;
    let acc = |pred: Vec<u32>, gold: &[u32]| {
        pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len().max(1) as f64
    };
    let train_accuracy = acc(head.predict(rows)?, y);
    let dev_accuracy = match dev {
        Some((dx, dy)) if !dx.is_empty() => Some(accuracy(model, tok, dx, dy, batch)?),
        _ => None,
    };
    Ok(ProbeReport {
        c,
        iterations,
        train_accuracy,
        dev_accuracy,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// Where checkpoints go: `dir/checkpoint.safetensors` (weights + optimiser) and `dir/checkpoint.json`
/// (written and read by `hone_neural::checkpoint`).
#[derive(Debug, Clone)]
pub struct Checkpoints {
    pub dir: PathBuf,
    /// Stop after this many epochs (simulates an interruption in tests); `None` runs to the end.
    pub stop_after_epoch: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CheckpointMeta {
    epoch: usize,
    step: u64,
    seed: u64,
    best: Option<f64>,
    best_epoch: Option<usize>,
    since_best: usize,
    log: Vec<EpochLog>,
    config: FinetuneConfig,
}

/// Fine-tunes `model` on `(x, y)` with early stopping on `dev`; keeps the best dev epoch's weights.
/// `on_epoch` is called after every epoch (progress and logs).
#[allow(clippy::too_many_arguments)]
pub fn finetune(
    model: &Classifier,
    tok: &TextTokenizer,
    x: &[&str],
    y: &[u32],
    dev: Option<(&[&str], &[u32])>,
    cfg: &FinetuneConfig,
    checkpoints: Option<&Checkpoints>,
    on_step: &mut dyn FnMut(u64, u64),
    on_epoch: &mut dyn FnMut(&EpochLog),
) -> Result<FinetuneReport> {
    if x.len() != y.len() || x.is_empty() {
        return Err(Error::Usage(format!(
            "fine-tuning needs labelled texts ({} texts, {} labels)",
            x.len(),
            y.len()
        )));
    }
    if cfg.batch_size == 0 || cfg.grad_accum == 0 || !cfg.batch_size.is_multiple_of(cfg.grad_accum)
    {
        return Err(Error::Usage(format!(
            "batch_size ({}) must be a positive multiple of grad_accum ({})",
            cfg.batch_size, cfg.grad_accum
        )));
    }
    let named = model.named_vars()?;
    let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
    let adam = AdamWConfig {
        lr: cfg.lr,
        weight_decay: cfg.weight_decay,
        ..AdamWConfig::default()
    };
    let head_names = |n: &str| n.starts_with("classifier.") || n.starts_with("pooler.");
    let (head, body): (Vec<_>, Vec<_>) = named.into_iter().partition(|(n, _)| head_names(n));
    let mut opt_body = FusedAdamW::new(body, adam)?;
    let mut opt_head = FusedAdamW::new(head, adam)?;
    let head_lr = cfg.head_lr.unwrap_or(cfg.lr);
    let steps_per_epoch = x.len().div_ceil(cfg.batch_size) as u64;
    let total = steps_per_epoch * cfg.epochs as u64;
    let warmup = (cfg.warmup_ratio * total as f64).round() as u64;
    let micro = cfg.batch_size / cfg.grad_accum;
    let mut report = FinetuneReport::default();
    let mut best: Option<(f64, usize, Snapshot)> = None;
    let mut since_best = 0usize;
    let mut start_epoch = 0usize;
    let mut step = 0u64;

    // Resume from a checkpoint when one is there.
    if let Some(ck) = checkpoints {
        let found = checkpoint::resume(&ck.dir, model.encoder.device(), |m: &CheckpointMeta| {
            m.config == *cfg
        })?;
        if let Some((meta, t)) = found {
            model.load_params(&|n| t.get("model", n))?;
            opt_body.load_state(&|n| t.get("body", n))?;
            opt_head.load_state(&|n| t.get("head", n))?;
            if let Some(be) = meta.best_epoch {
                let snap = model
                    .named_vars()?
                    .into_iter()
                    .filter_map(|(n, _)| t.get("best", &n).map(|x| (n, x)))
                    .collect();
                best = Some((meta.best.unwrap_or(0.0), be, snap));
            }
            start_epoch = meta.epoch + 1;
            step = meta.step;
            since_best = meta.since_best;
            report.epochs = meta.log;
            report.resumed_from_epoch = Some(meta.epoch);
        }
    }

    if let (Some(c), None) = (cfg.probe_init, report.resumed_from_epoch) {
        report.probe = Some(probe_init(model, tok, x, y, dev, c, cfg.eval_batch)?);
    }
    let started = std::time::Instant::now();
    let mut steps_here = 0u64;
    for epoch in start_epoch..cfg.epochs {
        let t0 = std::time::Instant::now();
        let order = epoch_order(x.len(), cfg.seed, epoch);
        let mut dropout = Dropout::new(cfg.seed.wrapping_add(1 + epoch as u64));
        let (mut loss_sum, mut loss_n) = (0.0f64, 0usize);
        let mut lr_now = 0.0;
        for batch in order.chunks(cfg.batch_size) {
            let drop = cfg.dropout.then_some(&mut dropout);
            let (grads, loss, truncated) =
                batch_gradients(model, tok, x, y, batch, micro, drop, &vars)?;
            if epoch == start_epoch {
                report.train_truncated += truncated;
            }
            loss_sum += loss * batch.len() as f64;
            loss_n += batch.len();
            let scale = clip_factor(grad_norm(&grads, &vars)?, cfg.max_grad_norm);
            lr_now = linear_schedule(cfg.lr, step, warmup, total);
            let head_now = linear_schedule(head_lr, step, warmup, total);
            opt_body.step(&grads, lr_now, scale)?;
            opt_head.step(&grads, head_now, scale)?;
            step += 1;
            steps_here += 1;
            on_step(step, total);
        }
        let dev_accuracy = match dev {
            Some((dx, dy)) if !dx.is_empty() => Some(accuracy(model, tok, dx, dy, cfg.eval_batch)?),
            _ => None,
        };
        let log = EpochLog {
            epoch,
            steps: step,
            train_loss: loss_sum / loss_n.max(1) as f64,
            dev_accuracy,
            seconds: t0.elapsed().as_secs_f64(),
            lr_end: lr_now,
        };
        on_epoch(&log);
        report.epochs.push(log);
        let improved = match (dev_accuracy, &best) {
            (Some(a), Some((b, _, _))) => a > *b,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if improved {
            best = Some((dev_accuracy.unwrap_or(0.0), epoch, model.snapshot()?));
            since_best = 0;
        } else {
            since_best += 1;
        }
        if let Some(ck) = checkpoints {
            let mut tensors = checkpoint::Tensors::default();
            tensors.insert("model", model.snapshot()?);
            tensors.insert("body", opt_body.state()?);
            tensors.insert("head", opt_head.state()?);
            if let Some((_, _, snap)) = &best {
                tensors.insert("best", snap.iter().cloned());
            }
            let meta = CheckpointMeta {
                epoch,
                step,
                seed: cfg.seed,
                best: best.as_ref().map(|b| b.0),
                best_epoch: best.as_ref().map(|b| b.1),
                since_best,
                log: report.epochs.clone(),
                config: cfg.clone(),
            };
            checkpoint::write(&ck.dir, &tensors, &meta)?;
            if ck.stop_after_epoch == Some(epoch) {
                report.steps = step;
                return Ok(report);
            }
        }
        if cfg.patience > 0 && since_best >= cfg.patience && dev_accuracy.is_some() {
            report.stopped_early = epoch + 1 < cfg.epochs;
            break;
        }
    }
    if let Some((_, epoch, snap)) = best {
        let map: HashMap<String, Tensor> = snap.into_iter().collect();
        model.load_params(&|n| map.get(n).cloned())?;
        report.best_epoch = Some(epoch);
    }
    report.steps = step;
    report.seconds_per_step = started.elapsed().as_secs_f64() / steps_here.max(1) as f64;
    Ok(report)
}

/// SetFit-style contrastive phase settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ContrastiveConfig {
    /// Rounds of pair generation: each round gives every example one positive and one negative pair.
    pub iterations: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub seed: u64,
}

impl Default for ContrastiveConfig {
    fn default() -> Self {
        Self {
            iterations: 20,
            epochs: 1,
            batch_size: 16,
            lr: 2e-5,
            warmup_ratio: 0.1,
            seed: 0,
        }
    }
}

/// Sentence pairs `(i, j, target)` with target 1 for the same label and 0 otherwise, as SetFit makes them.
pub fn contrastive_pairs(y: &[u32], iterations: usize, seed: u64) -> Vec<(usize, usize, f32)> {
    let mut rng = SeededRng::new(seed ^ 0x005e_7f17);
    let mut by_label: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, &l) in y.iter().enumerate() {
        by_label.entry(l).or_default().push(i);
    }
    let mut pairs = Vec::new();
    for _ in 0..iterations {
        for (i, &l) in y.iter().enumerate() {
            let same = &by_label[&l];
            if same.len() > 1 {
                let mut j = same[(rng.next_u64() % same.len() as u64) as usize];
                while j == i {
                    j = same[(rng.next_u64() % same.len() as u64) as usize];
                }
                pairs.push((i, j, 1.0));
            }
            if by_label.len() > 1 {
                let mut j = (rng.next_u64() % y.len() as u64) as usize;
                while y[j] == l {
                    j = (rng.next_u64() % y.len() as u64) as usize;
                }
                pairs.push((i, j, 0.0));
            }
        }
    }
    // Shuffle so that batches mix positives and negatives.
    for i in (1..pairs.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        pairs.swap(i, j);
    }
    pairs
}

/// Contrastive fine-tuning of the encoder (SetFit's `CosineSimilarityLoss`: mean squared error between the
/// cosine of the two pooled vectors and the pair's target). Returns the mean loss of each epoch.
pub fn contrastive(
    encoder: &BertEncoder,
    pooling: Pooling,
    tok: &TextTokenizer,
    x: &[&str],
    y: &[u32],
    cfg: &ContrastiveConfig,
    on_step: &mut dyn FnMut(u64, u64),
) -> Result<Vec<f64>> {
    let pairs = contrastive_pairs(y, cfg.iterations, cfg.seed);
    if pairs.is_empty() {
        return Err(Error::Data {
            message:
                "contrastive training needs at least two labels and two examples of some label"
                    .into(),
            hint: "add labelled examples, or use method = \"frozen\"".into(),
        });
    }
    let named: Vec<(String, Var)> = {
        let data = encoder
            .varmap()
            .data()
            .lock()
            .map_err(|_| Error::Internal("varmap lock poisoned".into()))?;
        data.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let vars: Vec<Var> = named.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = FusedAdamW::new(
        named,
        AdamWConfig {
            lr: cfg.lr,
            weight_decay: 0.01,
            ..AdamWConfig::default()
        },
    )?;
    let steps_per_epoch = pairs.len().div_ceil(cfg.batch_size.max(1)) as u64;
    let total = steps_per_epoch * cfg.epochs as u64;
    let warmup = (cfg.warmup_ratio * total as f64).round() as u64;
    let mut step = 0u64;
    let mut losses = Vec::new();
    for epoch in 0..cfg.epochs {
        let mut dropout = Dropout::new(cfg.seed.wrapping_add(100 + epoch as u64));
        let (mut sum, mut n) = (0.0, 0usize);
        for batch in pairs.chunks(cfg.batch_size.max(1)) {
            let a: Vec<&str> = batch.iter().map(|p| x[p.0]).collect();
            let b: Vec<&str> = batch.iter().map(|p| x[p.1]).collect();
            let t: Vec<f32> = batch.iter().map(|p| p.2).collect();
            let embed = |texts: &[&str], d: Option<&mut Dropout>| -> Result<Tensor> {
                let tb = tok.encode_batch(texts)?;
                let (ids, types, mask) = tb.to_tensors(encoder.device())?;
                let h = encoder.forward(&ids, Some(&types), Some(&mask), d)?;
                pool(&h, &mask, pooling)
            };
            let ea = embed(&a, Some(&mut dropout))?;
            let eb = embed(&b, Some(&mut dropout))?;
            let loss = (|| {
                let dot = (&ea * &eb)?.sum(1)?;
                let na = ea.sqr()?.sum(1)?.sqrt()?;
                let nb = eb.sqr()?.sum(1)?.sqrt()?;
                let cos = (dot / (na * nb)?.clamp(1e-8, f64::INFINITY)?)?;
                let tt = Tensor::new(t.as_slice(), encoder.device())?;
                (cos - tt)?.sqr()?.mean_all()
            })()
            .map_err(candle_err)?;
            sum += loss.to_scalar::<f32>().map_err(candle_err)? as f64 * batch.len() as f64;
            n += batch.len();
            let grads = loss.backward().map_err(candle_err)?;
            let scale = clip_factor(grad_norm(&grads, &vars)?, 1.0);
            opt.step(&grads, linear_schedule(cfg.lr, step, warmup, total), scale)?;
            step += 1;
            on_step(step, total);
        }
        losses.push(sum / n.max(1) as f64);
    }
    Ok(losses)
}

/// Peak resident set size of this process in bytes (Linux `VmHWM`), when readable.
pub fn peak_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
