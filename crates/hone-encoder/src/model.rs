//! The `encoder` model kind as hone runs it: fit by one of three methods (`frozen`, `finetune`, `setfit`),
//! probabilities through a dev-fitted temperature, save/load as artifacts, and a cache for frozen embeddings.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use hone_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::bert::{BertEncoder, Pooling, candle_err};
use crate::embed::{Pretrained, embed};
use crate::finetune::{Classifier, ContrastiveConfig, FinetuneConfig, contrastive, finetune};
use crate::head::{LinearHead, Rows, Targets, argmax, softmax_in_place};
use crate::tokenize::TextTokenizer;

/// How the encoder becomes a classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Frozen encoder, cached embeddings, linear head with C chosen on dev.
    Frozen,
    /// Full fine-tuning with a classification head.
    Finetune,
    /// SetFit-style contrastive fine-tuning of the encoder, then a linear head.
    Setfit,
}

impl std::str::FromStr for Method {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "frozen" => Ok(Method::Frozen),
            "finetune" => Ok(Method::Finetune),
            "setfit" => Ok(Method::Setfit),
            o => Err(Error::Usage(format!(
                "unknown encoder method `{o}` (use frozen, finetune or setfit)"
            ))),
        }
    }
}

pub fn parse_pooling(s: &str) -> Result<Pooling> {
    match s {
        "mean" => Ok(Pooling::Mean),
        "cls" => Ok(Pooling::Cls),
        o => Err(Error::Usage(format!(
            "unknown pooling `{o}` (use mean or cls)"
        ))),
    }
}

/// The name `hone.toml` uses for a pooling.
pub fn pooling_name(p: Pooling) -> &'static str {
    match p {
        Pooling::Mean => "mean",
        Pooling::Cls => "cls",
    }
}

/// Settings of one `encoder` model (`[[model]]` `path`, `method`, `pooling` and `params`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncoderParams {
    /// Tokens per input, special tokens included; longer inputs are cut (and counted).
    pub max_length: usize,
    /// Inputs per forward pass when embedding or predicting.
    pub batch: usize,
    /// The C grid for linear heads (scikit-learn's inverse L2 strength), chosen on dev.
    pub c_grid: Vec<f64>,
    /// L2-normalise embeddings before a linear head (frozen and setfit).
    pub normalize: bool,
    pub finetune: FinetuneConfig,
    pub contrastive: ContrastiveConfig,
    /// A checkpoint directory for fine-tuning (resumes when a checkpoint is there).
    pub checkpoint_dir: Option<PathBuf>,
    /// Where training and embedding run: `cpu` (default), `cuda` or `cuda:N` (needs a build with
    /// `--features cuda`). The trained model is saved the same either way and loads on the CPU.
    pub device: String,
}

impl Default for EncoderParams {
    fn default() -> Self {
        Self {
            max_length: 128,
            batch: 64,
            c_grid: vec![1.0, 10.0, 100.0, 1000.0],
            normalize: true,
            finetune: FinetuneConfig::default(),
            contrastive: ContrastiveConfig::default(),
            checkpoint_dir: None,
            device: "cpu".into(),
        }
    }
}

/// A store of embeddings by key (hone keeps them in its SQLite store).
pub trait EmbeddingCache {
    fn get(&mut self, keys: &[String]) -> Result<HashMap<String, Vec<f32>>>;
    fn put(&mut self, rows: &[(String, Vec<f32>)]) -> Result<()>;
}

/// No caching.
pub struct NoCache;
impl EmbeddingCache for NoCache {
    fn get(&mut self, _: &[String]) -> Result<HashMap<String, Vec<f32>>> {
        Ok(HashMap::new())
    }
    fn put(&mut self, _: &[(String, Vec<f32>)]) -> Result<()> {
        Ok(())
    }
}

/// Progress of a long step: `(what, done, total)`.
pub type ProgressFn<'a> = dyn FnMut(&str, u64, u64) + 'a;

/// Embeds `texts` with a frozen model, reading and filling `cache`. Returns rows and the truncation count
/// of the texts that had to be embedded.
#[allow(clippy::too_many_arguments)]
pub fn embed_cached(
    encoder: &BertEncoder,
    tokenizer: &TextTokenizer,
    model_key: &str,
    texts: &[&str],
    pooling: Pooling,
    normalize: bool,
    batch: usize,
    cache: &mut dyn EmbeddingCache,
    progress: &mut ProgressFn<'_>,
) -> Result<(Vec<f32>, usize, usize)> {
    let dim = encoder.config().hidden_size;
    let setting = format!(
        "{model_key}|{}|{}|{}",
        pooling_name(pooling),
        tokenizer.max_length(),
        normalize
    );
    let keys: Vec<String> = texts
        .iter()
        .map(|t| {
            let mut h = blake3::Hasher::new();
            h.update(setting.as_bytes());
            h.update(&[0]);
            h.update(t.as_bytes());
            h.finalize().to_hex().to_string()
        })
        .collect();
    let mut unique: Vec<String> = keys.clone();
    unique.sort();
    unique.dedup();
    let found = cache.get(&unique)?;
    let mut todo: Vec<usize> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, k) in keys.iter().enumerate() {
        if !found.contains_key(k) && seen.insert(k.clone()) {
            todo.push(i);
        }
    }
    let todo_texts: Vec<&str> = todo.iter().map(|&i| texts[i]).collect();
    let n_todo = todo_texts.len() as u64;
    let fresh = embed(
        encoder,
        tokenizer,
        &todo_texts,
        pooling,
        normalize,
        batch,
        &mut |d, _| progress("embed", d as u64, n_todo),
    )?;
    let new_rows: Vec<(String, Vec<f32>)> = todo
        .iter()
        .enumerate()
        .map(|(j, &i)| (keys[i].clone(), fresh.data[j * dim..(j + 1) * dim].to_vec()))
        .collect();
    cache.put(&new_rows)?;
    let fresh_map: HashMap<&str, &[f32]> = new_rows
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    let mut out = Vec::with_capacity(texts.len() * dim);
    for k in &keys {
        match found.get(k) {
            Some(v) if v.len() == dim => out.extend_from_slice(v),
            _ => out.extend_from_slice(
                fresh_map
                    .get(k.as_str())
                    .ok_or_else(|| Error::Internal("embedding missing after compute".into()))?,
            ),
        }
    }
    Ok((out, fresh.truncated, todo.len()))
}

enum Body {
    /// An encoder (the base one, or contrastively tuned) and a linear head on its embeddings.
    Embed {
        encoder: BertEncoder,
        head: LinearHead,
        tuned: bool,
    },
    /// A fine-tuned encoder with its classification head.
    Tuned(Classifier),
}

/// Saved settings of an encoder model (`encoder.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    method: Method,
    pooling: String,
    max_length: usize,
    batch: usize,
    normalize: bool,
    labels: Vec<String>,
    temperature: f32,
    base_dir: PathBuf,
    base_fingerprint: String,
}

/// A trained `encoder` model.
pub struct EncoderModel {
    meta: Meta,
    tokenizer: TextTokenizer,
    body: Body,
}

/// The temperature that minimises the negative log-likelihood of `gold` under `softmax(logits / T)`
/// (golden-section search on log T in [-3, 3]); 1 without dev data.
pub fn fit_temperature(logits: &[f32], k: usize, gold: &[u32]) -> f32 {
    if gold.is_empty() || k == 0 {
        return 1.0;
    }
    let nll = |log_t: f64| -> f64 {
        let t = log_t.exp() as f32;
        let mut s = 0.0f64;
        for (row, &g) in logits.chunks(k).zip(gold) {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let lse: f32 = row.iter().map(|v| ((v - m) / t).exp()).sum::<f32>().ln();
            s -= ((row[g as usize] - m) / t - lse) as f64;
        }
        s
    };
    let (mut a, mut b) = (-3.0f64, 3.0f64);
    let r = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..60 {
        let c = b - r * (b - a);
        let d = a + r * (b - a);
        if nll(c) < nll(d) {
            b = d;
        } else {
            a = c;
        }
    }
    ((a + b) / 2.0).exp() as f32
}

fn read_safetensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| {
        Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        )
    })
}

fn head_tensors(h: &LinearHead) -> Result<HashMap<String, Tensor>> {
    let dev = Device::Cpu;
    Ok([
        (
            "weight".to_string(),
            Tensor::from_slice(&h.weight, (h.classes, h.dim), &dev).map_err(candle_err)?,
        ),
        (
            "bias".to_string(),
            Tensor::from_slice(&h.bias, h.classes, &dev).map_err(candle_err)?,
        ),
    ]
    .into())
}

/// What [`EncoderModel::fit`] did: method, truncation counts, caching, the head choice or the
/// fine-tuning log, the dev temperature. Optional fields belong to some methods only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    pub method: Method,
    pub pooling: String,
    pub max_length: usize,
    pub device: String,
    /// Training texts longer than `max_length` tokens.
    pub train_truncated: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_truncated: Option<usize>,
    /// Training texts embedded in this run, and those read from the embedding cache (frozen, setfit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<usize>,
    /// Mean cosine loss per contrastive epoch (setfit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contrastive_losses: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<crate::head::HeadReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<crate::finetune::FinetuneReport>,
    /// Softmax temperature fitted on dev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
}

impl Default for FitReport {
    fn default() -> Self {
        FitReport {
            method: Method::Frozen,
            pooling: "mean".into(),
            max_length: 0,
            device: "cpu".into(),
            train_truncated: 0,
            dev_truncated: None,
            embedded: None,
            cached: None,
            contrastive_losses: None,
            head: None,
            finetune: None,
            temperature: None,
        }
    }
}

impl EncoderModel {
    /// The softmax temperature applied to the logits (fitted on dev; 1 without one).
    pub fn temperature(&self) -> f32 {
        self.meta.temperature
    }

    /// Replaces the temperature, for a refit whose own fit had no held-out data to fit it on (the
    /// pipeline's `fold_dev` keeps the one the train-only fit found on dev).
    pub fn set_temperature(&mut self, temperature: f32) {
        self.meta.temperature = temperature;
    }

    /// Trains by `method` on `(x, y)`; `dev` chooses C / the best epoch and fits the temperature.
    /// Returns the model and what training did.
    #[allow(clippy::too_many_arguments)]
    pub fn fit(
        base: Pretrained,
        method: Method,
        pooling: Pooling,
        params: &EncoderParams,
        labels: &[String],
        x: &[&str],
        y: &[u32],
        dev: Option<(&[&str], &[u32])>,
        cache: &mut dyn EmbeddingCache,
        progress: &mut ProgressFn<'_>,
    ) -> Result<(EncoderModel, FitReport)> {
        let k = labels.len();
        let d = base.config.hidden_size;
        let Pretrained {
            dir,
            config,
            encoder,
            tokenizer,
            fingerprint,
            pooler,
        } = base;
        let device = crate::device::parse(&params.device)?;
        let encoder = if device.is_cpu() {
            encoder
        } else {
            BertEncoder::load(&config, &dir.join("model.safetensors"), &device)?
        };
        let mut report = FitReport {
            method,
            pooling: pooling_name(pooling).into(),
            max_length: params.max_length,
            device: params.device.clone(),
            ..FitReport::default()
        };
        let dev = dev.filter(|(dx, _)| !dx.is_empty());
        let body = match method {
            Method::Frozen | Method::Setfit => {
                let mut tuned = false;
                if method == Method::Setfit {
                    let losses = contrastive(
                        &encoder,
                        pooling,
                        &tokenizer,
                        x,
                        y,
                        &params.contrastive,
                        &mut |s, t| progress("contrastive", s, t),
                    )?;
                    report.contrastive_losses = Some(losses);
                    tuned = true;
                }
                // Only the base model's embeddings are worth caching across runs.
                let mut none = NoCache;
                let cache: &mut dyn EmbeddingCache = if tuned { &mut none } else { cache };
                let (tx, trunc, computed) = embed_cached(
                    &encoder,
                    &tokenizer,
                    &fingerprint,
                    x,
                    pooling,
                    params.normalize,
                    params.batch,
                    cache,
                    progress,
                )?;
                report.train_truncated = trunc;
                report.embedded = Some(computed);
                report.cached = Some(x.len() - computed);
                let dev_rows = match dev {
                    Some((dx, dy)) => {
                        let (v, t, _) = embed_cached(
                            &encoder,
                            &tokenizer,
                            &fingerprint,
                            dx,
                            pooling,
                            params.normalize,
                            params.batch,
                            cache,
                            progress,
                        )?;
                        report.dev_truncated = Some(t);
                        Some((v, dy))
                    }
                    None => None,
                };
                let (head, rep) = LinearHead::fit_select(
                    Rows { data: &tx, dim: d },
                    Targets::Hard(y),
                    k,
                    dev_rows
                        .as_ref()
                        .map(|(v, dy)| (Rows { data: v, dim: d }, *dy)),
                    &params.c_grid,
                )?;
                report.head = Some(rep);
                Body::Embed {
                    encoder,
                    head,
                    tuned,
                }
            }
            Method::Finetune => {
                let model = Classifier::new(encoder, pooling, pooler, k, params.finetune.seed)?;
                let ck = params
                    .checkpoint_dir
                    .as_ref()
                    .map(|dir| crate::finetune::Checkpoints {
                        dir: dir.clone(),
                        stop_after_epoch: None,
                    });
                let rep = finetune(
                    &model,
                    &tokenizer,
                    x,
                    y,
                    dev,
                    &params.finetune,
                    ck.as_ref(),
                    &mut |s, t| progress("fine-tune", s, t),
                    &mut |_| {},
                )?;
                report.train_truncated = rep.train_truncated;
                report.finetune = Some(rep);
                Body::Tuned(model)
            }
        };
        let _ = config;
        let mut m = EncoderModel {
            meta: Meta {
                method,
                pooling: pooling_name(pooling).into(),
                max_length: params.max_length,
                batch: params.batch,
                normalize: params.normalize,
                labels: labels.to_vec(),
                temperature: 1.0,
                base_dir: dir,
                base_fingerprint: fingerprint,
            },
            tokenizer,
            body,
        };
        if let Some((dx, dy)) = dev {
            let (logits, _) = m.logits(dx)?;
            m.meta.temperature = fit_temperature(&logits, k, dy);
            report.temperature = Some(m.meta.temperature);
        }
        Ok((m, report))
    }

    pub fn labels(&self) -> &[String] {
        &self.meta.labels
    }

    /// How many of `texts` are longer than `max_length` tokens and would be cut.
    pub fn count_truncated(&self, texts: &[&str]) -> Result<usize> {
        let mut n = 0;
        for chunk in texts.chunks(256) {
            n += self.tokenizer.encode_batch(chunk)?.truncated;
        }
        Ok(n)
    }

    pub fn method(&self) -> Method {
        self.meta.method
    }

    /// Raw logits `(n, classes)` row-major and how many inputs were truncated.
    pub fn logits(&self, texts: &[&str]) -> Result<(Vec<f32>, usize)> {
        let pooling = parse_pooling(&self.meta.pooling)?;
        match &self.body {
            Body::Embed { encoder, head, .. } => {
                let e = embed(
                    encoder,
                    &self.tokenizer,
                    texts,
                    pooling,
                    self.meta.normalize,
                    self.meta.batch,
                    &mut |_, _| {},
                )?;
                Ok((
                    head.logits(Rows {
                        data: &e.data,
                        dim: e.dim,
                    })?,
                    e.truncated,
                ))
            }
            Body::Tuned(c) => c.predict_logits(&self.tokenizer, texts, self.meta.batch),
        }
    }

    /// Calibrated probabilities, one row per text.
    pub fn predict_proba_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let k = self.meta.labels.len();
        let (logits, _) = self.logits(texts)?;
        let t = self.meta.temperature.max(1e-3);
        Ok(logits
            .chunks(k)
            .map(|row| {
                let mut r: Vec<f32> = row.iter().map(|v| v / t).collect();
                softmax_in_place(&mut r);
                r
            })
            .collect())
    }

    pub fn predict(&self, texts: &[&str]) -> Result<Vec<u32>> {
        let k = self.meta.labels.len();
        Ok(self.logits(texts)?.0.chunks(k).map(argmax).collect())
    }

    /// Exports for Python into `out`: a `BertForSequenceClassification` directory for a fine-tuned model
    /// with `cls` pooling, otherwise a sentence-transformers directory plus the head (`head.safetensors`,
    /// `head.json`). `artifacts` is the directory [`EncoderModel::save`] wrote (config and tokenizer).
    /// Returns what was written: `"hf-classifier"` or `"sentence-transformers"`.
    pub fn export(&self, artifacts: &Path, out: &Path) -> Result<&'static str> {
        let labels = &self.meta.labels;
        match &self.body {
            Body::Tuned(c) => match &c.pooler {
                Some((pw, pb)) => {
                    crate::export::export_classifier(
                        &c.encoder,
                        (pw.as_tensor(), pb.as_tensor()),
                        (c.weight.as_tensor(), c.bias.as_tensor()),
                        labels,
                        artifacts,
                        self.meta.max_length,
                        out,
                    )?;
                    Ok("hf-classifier")
                }
                None => {
                    let head = LinearHead {
                        classes: labels.len(),
                        dim: c.encoder.config().hidden_size,
                        weight: c
                            .weight
                            .as_tensor()
                            .flatten_all()
                            .and_then(|t| t.to_vec1())
                            .map_err(candle_err)?,
                        bias: c.bias.as_tensor().to_vec1().map_err(candle_err)?,
                        c: 0.0,
                    };
                    crate::export::export_sentence_transformer(
                        &c.encoder,
                        None,
                        false,
                        Some((&head, labels)),
                        artifacts,
                        self.meta.max_length,
                        out,
                    )?;
                    Ok("sentence-transformers")
                }
            },
            Body::Embed { encoder, head, .. } => {
                if self.meta.pooling != "mean" {
                    return Err(Error::Usage(
                        "only mean pooling exports as sentence-transformers; a frozen cls model has no Hugging Face classifier head (fine-tune it with pooling = \"cls\")".into(),
                    ));
                }
                crate::export::export_sentence_transformer(
                    encoder,
                    None,
                    self.meta.normalize,
                    Some((head, labels)),
                    artifacts,
                    self.meta.max_length,
                    out,
                )?;
                Ok("sentence-transformers")
            }
        }
    }

    /// Writes `encoder.json`, the tokenizer and config, and the weights that differ from the base model
    /// (`head.safetensors` for a frozen head; `model.safetensors` for tuned encoders).
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let p = dir.join("encoder.json");
        let bytes =
            serde_json::to_vec_pretty(&self.meta).map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))?;
        for f in ["config.json", "tokenizer.json"] {
            let src = self.meta.base_dir.join(f);
            let dst = dir.join(f);
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&src, e))?;
        }
        let save = |map: &HashMap<String, Tensor>, path: &Path| {
            candle_core::safetensors::save(map, path)
                .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
        };
        match &self.body {
            Body::Embed {
                encoder,
                head,
                tuned,
            } => {
                save(&head_tensors(head)?, &dir.join("head.safetensors"))?;
                if *tuned {
                    encoder.save_weights(&dir.join("model.safetensors"))?;
                }
            }
            Body::Tuned(c) => c.save(&dir.join("model.safetensors"))?,
        }
        Ok(())
    }

    /// Loads what [`EncoderModel::save`] wrote. A frozen model reads the base weights from the base
    /// directory and refuses them if they changed since training.
    pub fn load(dir: &Path) -> Result<EncoderModel> {
        let p = dir.join("encoder.json");
        let meta: Meta = serde_json::from_slice(&std::fs::read(&p).map_err(|e| Error::io(&p, e))?)
            .map_err(|e| Error::ModelFiles {
                path: p.clone(),
                reason: format!("unreadable: {e}"),
                hint: "the saved model is damaged; train it again with `hone run`".into(),
            })?;
        let config = crate::config::BertConfig::from_file(&dir.join("config.json"))?;
        let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"), meta.max_length)?;
        let pooling = parse_pooling(&meta.pooling)?;
        let k = meta.labels.len();
        let head_of = |t: &HashMap<String, Tensor>| -> Result<LinearHead> {
            let get = |n: &str| {
                t.get(n)
                    .ok_or_else(|| Error::Internal(format!("head.safetensors has no {n}")))
            };
            let w = get("weight")?;
            let (classes, dim) = w.dims2().map_err(candle_err)?;
            Ok(LinearHead {
                classes,
                dim,
                weight: w
                    .flatten_all()
                    .and_then(|t| t.to_vec1())
                    .map_err(candle_err)?,
                bias: get("bias")?.to_vec1().map_err(candle_err)?,
                c: 0.0,
            })
        };
        let body = match meta.method {
            Method::Frozen => {
                let base = Pretrained::load(&meta.base_dir, meta.max_length)?;
                if base.fingerprint != meta.base_fingerprint {
                    return Err(Error::ModelFiles {
                        path: meta.base_dir.clone(),
                        reason: "the base model changed since this model was trained".into(),
                        hint: "run `hone run` again to train on the new weights".into(),
                    });
                }
                Body::Embed {
                    encoder: base.encoder,
                    head: head_of(&read_safetensors(&dir.join("head.safetensors"))?)?,
                    tuned: false,
                }
            }
            Method::Setfit => Body::Embed {
                encoder: BertEncoder::load(&config, &dir.join("model.safetensors"), &Device::Cpu)?,
                head: head_of(&read_safetensors(&dir.join("head.safetensors"))?)?,
                tuned: true,
            },
            Method::Finetune => {
                let t = read_safetensors(&dir.join("model.safetensors"))?;
                let encoder =
                    BertEncoder::load(&config, &dir.join("model.safetensors"), &Device::Cpu)?;
                let pooler = match (t.get("pooler.dense.weight"), t.get("pooler.dense.bias")) {
                    (Some(w), Some(b)) => Some((w.clone(), b.clone())),
                    _ => None,
                };
                let c = Classifier::new(encoder, pooling, pooler, k, 0)?;
                c.load_params(&|n| t.get(n).cloned())?;
                Body::Tuned(c)
            }
        };
        Ok(EncoderModel {
            meta,
            tokenizer,
            body,
        })
    }
}
