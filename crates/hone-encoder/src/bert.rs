//! A trainable BERT encoder on differentiable candle ops, with Hugging Face tensor names in a `VarMap`.
//!
//! Unlike candle-transformers' `BertModel` (inference only: its fused LayerNorm and softmax have no
//! backward pass, its dropout is a no-op), every op here has a backward pass: LayerNorm is written out as
//! mean/variance, softmax as max-subtracted `exp / sum`, GELU is candle's `gelu_erf` (exact, as Hugging
//! Face's `"gelu"`) or `gelu` (tanh approximation, for `"gelu_new"`), dropout is a real seeded op.

use std::path::Path;

use candle_core::{D, DType, Device, Tensor};
use candle_nn::VarMap;
use hone_core::{Error, Result};

use crate::config::{Activation, BertConfig};

pub(crate) use hone_neural::candle_err;
/// Seeded dropout and randomness, from `hone-neural` (re-exported under their old paths).
pub use hone_neural::{Dropout, SeededRng};

type CResult<T> = candle_core::Result<T>;

/// How token states become one vector per input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the token states under the attention mask (sentence-transformers' default).
    Mean,
    /// The state of the first token (`[CLS]`).
    Cls,
}

fn maybe_dropout(d: Option<&mut Dropout>, x: Tensor, p: f64) -> CResult<Tensor> {
    match d {
        Some(d) => d.apply(&x, p),
        None => Ok(x),
    }
}

/// `dropout(x) + residual` in training mode, `x + residual` in eval mode.
fn maybe_dropout_add(
    d: Option<&mut Dropout>,
    x: Tensor,
    p: f64,
    residual: &Tensor,
) -> CResult<Tensor> {
    match d {
        Some(d) => d.apply_add(&x, p, residual),
        None => x + residual,
    }
}

struct Linear {
    weight: Tensor, // (out, in), as in PyTorch
    bias: Tensor,   // (out,)
}

impl Linear {
    fn forward(&self, x: &Tensor) -> CResult<Tensor> {
        if crate::fused::applies(x) && !crate::fused::disabled() {
            return crate::fused::linear(x, &self.weight, &self.bias);
        }
        let dims = x.dims().to_vec();
        let (last, lead) = dims
            .split_last()
            .ok_or_else(|| candle_core::Error::Msg("rank 0".into()))?;
        let rows: usize = lead.iter().product();
        let y = x
            .reshape((rows, *last))?
            .matmul(&self.weight.t()?)?
            .broadcast_add(&self.bias)?;
        let mut out = lead.to_vec();
        out.push(self.bias.dim(0)?);
        y.reshape(out)
    }
}

struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// `(x - mean) / sqrt(var + eps) * weight + bias` over the last dimension, from differentiable ops.
    fn forward(&self, x: &Tensor, fast: bool) -> CResult<Tensor> {
        if fast && x.dtype() == DType::F32 {
            // candle's fused kernel: faster, but no backward pass (inference only).
            return candle_nn::ops::layer_norm(
                &x.contiguous()?,
                &self.weight,
                &self.bias,
                self.eps as f32,
            );
        }
        if crate::fused::applies(x) && !crate::fused::disabled() {
            // One pass forward and one backward (tests/fused.rs checks it against the ops below).
            return crate::fused::layer_norm(x, &self.weight, &self.bias, self.eps);
        }
        let mean = x.mean_keepdim(D::Minus1)?;
        let centered = x.broadcast_sub(&mean)?;
        let var = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)
    }
}

/// Softmax over the last dimension as `exp(x - max) / sum`; the max is a constant shift (detached).
fn softmax_last_dim(x: &Tensor) -> CResult<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    let sum = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&sum)
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_ln: LayerNorm,
}

/// A BERT encoder whose parameters live in a [`VarMap`] under Hugging Face names
/// (`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`, ...).
/// The pooler and pre-training heads are not part of it.
pub struct BertEncoder {
    config: BertConfig,
    varmap: VarMap,
    device: Device,
    dtype: DType,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    /// Run only real tokens through the position-wise layers ([`Packing`]); on unless `HONE_PADDED=1`.
    packing: bool,
}

/// Every parameter name and shape of a BERT encoder with this configuration.
pub fn parameter_shapes(cfg: &BertConfig) -> Vec<(String, Vec<usize>)> {
    let h = cfg.hidden_size;
    let i = cfg.intermediate_size;
    let mut v = vec![
        (
            "embeddings.word_embeddings.weight".to_string(),
            vec![cfg.vocab_size, h],
        ),
        (
            "embeddings.position_embeddings.weight".to_string(),
            vec![cfg.max_position_embeddings, h],
        ),
        (
            "embeddings.token_type_embeddings.weight".to_string(),
            vec![cfg.type_vocab_size, h],
        ),
        ("embeddings.LayerNorm.weight".to_string(), vec![h]),
        ("embeddings.LayerNorm.bias".to_string(), vec![h]),
    ];
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (name, out, inp) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", i, h),
            ("output.dense", h, i),
        ] {
            v.push((format!("{p}.{name}.weight"), vec![out, inp]));
            v.push((format!("{p}.{name}.bias"), vec![out]));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            v.push((format!("{p}.{ln}.weight"), vec![h]));
            v.push((format!("{p}.{ln}.bias"), vec![h]));
        }
    }
    v
}

impl BertEncoder {
    /// A freshly initialised encoder (Hugging Face's scheme: weights and embeddings ~ N(0, initializer_range),
    /// biases 0, LayerNorm weight 1), reproducible from `seed`.
    pub fn new_random(config: &BertConfig, device: &Device, seed: u64) -> Result<Self> {
        Self::build(config, device, DType::F32, Some(&mut SeededRng::new(seed)))
    }

    /// Creates every parameter; weights are random with `rng`, zeros without (to be loaded).
    fn build(
        config: &BertConfig,
        device: &Device,
        dtype: DType,
        mut rng: Option<&mut SeededRng>,
    ) -> Result<Self> {
        let varmap = VarMap::new();
        for (name, shape) in parameter_shapes(config) {
            let t = if name.ends_with("LayerNorm.weight") {
                Tensor::ones(shape, DType::F32, device)
            } else if name.ends_with(".bias") {
                Tensor::zeros(shape, DType::F32, device)
            } else if let Some(rng) = rng.as_deref_mut() {
                let n: usize = shape.iter().product();
                let vals: Vec<f32> = (0..n)
                    .map(|_| (rng.normal() * config.initializer_range) as f32)
                    .collect();
                Tensor::from_vec(vals, shape, device)
            } else {
                Tensor::zeros(shape, DType::F32, device)
            }
            .and_then(|t| t.to_dtype(dtype))
            .map_err(candle_err)?;
            let var = candle_core::Var::from_tensor(&t).map_err(candle_err)?;
            varmap
                .data()
                .lock()
                .map_err(|_| Error::Internal("varmap lock poisoned".into()))?
                .insert(name, var);
        }
        Self::from_varmap(config, varmap, device, dtype)
    }

    /// Loads the encoder from a Hugging Face `model.safetensors` (tensor names with or without the
    /// `bert.` prefix; other tensors such as the pooler are ignored; f16/bf16 weights become f32).
    pub fn load(config: &BertConfig, weights: &Path, device: &Device) -> Result<Self> {
        Self::load_with_dtype(config, weights, device, DType::F32)
    }

    /// [`BertEncoder::load`] with parameters and computation in `dtype` (`F64` serves as a numerical
    /// reference; training and inference use `F32`).
    pub fn load_with_dtype(
        config: &BertConfig,
        weights: &Path,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        if !matches!(dtype, DType::F32 | DType::F64) {
            return Err(Error::Usage(format!(
                "unsupported dtype {dtype:?} (use f32 or f64)"
            )));
        }
        let enc = Self::build(config, device, dtype, None)?;
        enc.load_weights(weights)?;
        Ok(enc)
    }

    /// Overwrites every parameter with the tensor of the same name in `weights`.
    pub fn load_weights(&self, weights: &Path) -> Result<()> {
        std::fs::metadata(weights).map_err(|e| Error::io(weights, e))?;
        let tensors = candle_core::safetensors::load(weights, &self.device).map_err(|e| {
            Error::CorruptWeights {
                path: weights.to_path_buf(),
                reason: format!("not a readable safetensors file: {e}"),
                hint: "download the weights again (scripts/get-minilm fetches all-MiniLM-L6-v2)"
                    .into(),
            }
        })?;
        let data = self
            .varmap
            .data()
            .lock()
            .map_err(|_| Error::Internal("varmap lock poisoned".into()))?;
        let mut names: Vec<&String> = data.keys().collect();
        names.sort();
        for name in names {
            let var = &data[name];
            let t = tensors
                .get(name.as_str())
                .or_else(|| tensors.get(&format!("bert.{name}")))
                .ok_or_else(|| Error::NotFound {
                    what: "tensor",
                    name: format!("{name} in {}", weights.display()),
                    hint: "the weights do not match this config.json (is it a BERT checkpoint?)"
                        .into(),
                })?;
            if t.dims() != var.dims() {
                return Err(Error::Config {
                    path: weights.to_path_buf(),
                    line: 0,
                    col: 0,
                    message: format!(
                        "tensor {name} has shape {:?}, config.json implies {:?}",
                        t.dims(),
                        var.dims()
                    ),
                    hint: "use the config.json that came with these weights".into(),
                });
            }
            let t = t.to_dtype(self.dtype).map_err(candle_err)?;
            var.set(&t).map_err(candle_err)?;
        }
        Ok(())
    }

    /// Writes every parameter to a safetensors file under its Hugging Face name.
    pub fn save_weights(&self, path: &Path) -> Result<()> {
        self.varmap.save(path).map_err(|e| {
            Error::io(
                path,
                std::io::Error::other(format!("cannot write safetensors: {e}")),
            )
        })
    }

    fn from_varmap(
        config: &BertConfig,
        varmap: VarMap,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let get = |name: &str| -> Result<Tensor> {
            let data = varmap
                .data()
                .lock()
                .map_err(|_| Error::Internal("varmap lock poisoned".into()))?;
            data.get(name)
                .map(|v| v.as_tensor().clone())
                .ok_or_else(|| Error::Internal(format!("parameter {name} missing from the varmap")))
        };
        let linear = |p: &str| -> Result<Linear> {
            Ok(Linear {
                weight: get(&format!("{p}.weight"))?,
                bias: get(&format!("{p}.bias"))?,
            })
        };
        let ln = |p: &str| -> Result<LayerNorm> {
            Ok(LayerNorm {
                weight: get(&format!("{p}.weight"))?,
                bias: get(&format!("{p}.bias"))?,
                eps: config.layer_norm_eps,
            })
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            layers.push(Layer {
                query: linear(&format!("{p}.attention.self.query"))?,
                key: linear(&format!("{p}.attention.self.key"))?,
                value: linear(&format!("{p}.attention.self.value"))?,
                attn_out: linear(&format!("{p}.attention.output.dense"))?,
                attn_ln: ln(&format!("{p}.attention.output.LayerNorm"))?,
                intermediate: linear(&format!("{p}.intermediate.dense"))?,
                output: linear(&format!("{p}.output.dense"))?,
                out_ln: ln(&format!("{p}.output.LayerNorm"))?,
            });
        }
        Ok(Self {
            word: get("embeddings.word_embeddings.weight")?,
            position: get("embeddings.position_embeddings.weight")?,
            token_type: get("embeddings.token_type_embeddings.weight")?,
            emb_ln: ln("embeddings.LayerNorm")?,
            layers,
            config: config.clone(),
            varmap,
            device: device.clone(),
            dtype,
            packing: !unpad_disabled(),
        })
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Turns [`Packing`] on or off (on by default): off, every position of a padded batch goes
    /// through every layer, as a padded implementation does (for comparing the two).
    pub fn set_packing(&mut self, on: bool) {
        self.packing = on;
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The parameters (for an optimizer: `AdamW::new(enc.varmap().all_vars(), ..)`).
    pub fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    /// Last hidden states `(batch, seq, hidden)`, differentiable end to end; zero at padding positions.
    ///
    /// `input_ids` `(batch, seq)` u32; `token_type_ids` defaults to zeros; `attention_mask` `(batch, seq)`
    /// (1 = token, 0 = padding; any dtype) defaults to all ones. `dropout`: `Some` = training mode.
    /// Only real tokens go through the embeddings, linear layers, LayerNorms and GELUs (see [`Packing`]).
    pub fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        self.check_inputs(input_ids, token_type_ids, attention_mask)?;
        self.forward_inner(
            input_ids,
            token_type_ids,
            attention_mask,
            &mut dropout,
            false,
        )
        .map_err(candle_err)
    }

    /// Eval-mode last hidden states through candle's fused LayerNorm and softmax (~1.4x faster on CPU).
    /// No gradient reaches the encoder through this path: use it for embeddings of a frozen encoder
    /// and for evaluation, never for fine-tuning. Agrees with [`BertEncoder::forward`] to f32 rounding.
    pub fn forward_inference(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.check_inputs(input_ids, token_type_ids, attention_mask)?;
        self.forward_inner(input_ids, token_type_ids, attention_mask, &mut None, true)
            .map(|t| t.detach())
            .map_err(candle_err)
    }

    fn check_inputs(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
    ) -> Result<()> {
        let (b, s) = input_ids
            .dims2()
            .map_err(|e| Error::Usage(format!("input_ids must be (batch, seq): {e}")))?;
        if s > self.config.max_position_embeddings {
            return Err(Error::Usage(format!(
                "sequence length {s} exceeds max_position_embeddings {}",
                self.config.max_position_embeddings
            )));
        }
        for (what, t) in [
            ("token_type_ids", token_type_ids),
            ("attention_mask", attention_mask),
        ] {
            if let Some(t) = t
                && t.dims() != [b, s]
            {
                return Err(Error::Usage(format!(
                    "{what} has shape {:?}, input_ids has [{b}, {s}]",
                    t.dims()
                )));
            }
        }
        let max_id = |t: &Tensor| -> Result<u32> {
            if t.elem_count() == 0 {
                return Ok(0);
            }
            t.to_dtype(DType::U32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.max(0))
                .and_then(|t| t.to_scalar::<u32>())
                .map_err(candle_err)
        };
        let id = max_id(input_ids)?;
        if id as usize >= self.config.vocab_size {
            return Err(Error::Usage(format!(
                "token id {id} is outside the vocabulary ({} ids)",
                self.config.vocab_size
            )));
        }
        if let Some(t) = token_type_ids {
            let id = max_id(t)?;
            if id as usize >= self.config.type_vocab_size {
                return Err(Error::Usage(format!(
                    "token type id {id} is outside type_vocab_size {}",
                    self.config.type_vocab_size
                )));
            }
        }
        Ok(())
    }

    fn forward_inner(
        &self,
        input_ids: &Tensor,
        token_type_ids: Option<&Tensor>,
        attention_mask: Option<&Tensor>,
        dropout: &mut Option<&mut Dropout>,
        fast: bool,
    ) -> CResult<Tensor> {
        let cfg = &self.config;
        let (b, s) = input_ids.dims2()?;
        let h = cfg.hidden_size;
        let ids = input_ids.to_dtype(DType::U32)?;
        let types = match token_type_ids {
            Some(t) => t.to_dtype(DType::U32)?,
            None => Tensor::zeros((b, s), DType::U32, &self.device)?,
        };
        let packing = match attention_mask {
            Some(m) if self.packing => Packing::of(m)?,
            _ => None,
        };
        let x = match &packing {
            // (tokens, hidden): the same sum as below, row for row.
            Some(p) => {
                let words = self.word.index_select(&p.unpad_ids(&ids)?, 0)?;
                let types = self.token_type.index_select(&p.unpad_ids(&types)?, 0)?;
                let pos = self.position.index_select(&p.positions, 0)?;
                ((words + types)? + pos)?
            }
            None => {
                let words = self
                    .word
                    .index_select(&ids.flatten_all()?, 0)?
                    .reshape((b, s, h))?;
                let types = self
                    .token_type
                    .index_select(&types.flatten_all()?, 0)?
                    .reshape((b, s, h))?;
                let pos = self.position.narrow(0, 0, s)?;
                (words + types)?.broadcast_add(&pos)?
            }
        };
        let x = self.emb_ln.forward(&x, fast)?;
        let mut x = maybe_dropout(dropout.as_deref_mut(), x, cfg.hidden_dropout_prob)?;

        // Additive mask (batch, 1, 1, seq): 0 for tokens, f32::MIN for padding (as Hugging Face).
        let mask = match attention_mask {
            Some(m) => m.to_dtype(self.dtype)?,
            None => Tensor::ones((b, s), self.dtype, &self.device)?,
        };
        let additive = ((1.0 - mask)? * f64::from(f32::MIN))?;
        // The fused path: one op per linear layer, head split/merge and masked softmax (fused.rs).
        let fused = crate::fused::applies(&x) && !crate::fused::disabled();
        let additive4 = additive.reshape((b, 1, 1, s))?;

        let nh = cfg.num_attention_heads;
        let hd = cfg.head_size();
        let scale = 1.0 / (hd as f64).sqrt();
        for layer in &self.layers {
            let heads = |t: Tensor| -> CResult<Tensor> {
                if fused {
                    return crate::fused::split_heads(&t, nh);
                }
                t.reshape((b, s, nh, hd))?.transpose(1, 2)?.contiguous()
            };
            let (q, k, v) = (
                layer.query.forward(&x)?,
                layer.key.forward(&x)?,
                layer.value.forward(&x)?,
            );
            let ctx = match &packing {
                // Eval on a packed batch: attention sequence by sequence, no grid at all.
                Some(p) if fast && fused => {
                    crate::fused::packed_attention(&q, &k, &v, p.starts.clone(), nh, scale)?
                }
                // The (batch, seq) grid: packed q, k and v are padded with zero rows for it and the
                // result gathered back.
                _ => {
                    let grid = |t: Tensor| -> CResult<Tensor> {
                        match &packing {
                            Some(p) => p.pad(&t),
                            None => Ok(t),
                        }
                    };
                    let q = heads(grid(q)?)?;
                    let k = heads(grid(k)?)?;
                    let v = heads(grid(v)?)?;
                    let probs = if fused {
                        crate::fused::masked_softmax(&q.matmul(&k.t()?)?, &additive, scale)?
                    } else {
                        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(&additive4)?;
                        if fast {
                            candle_nn::ops::softmax_last_dim(&scores)?
                        } else {
                            softmax_last_dim(&scores)?
                        }
                    };
                    let probs = maybe_dropout(
                        dropout.as_deref_mut(),
                        probs,
                        cfg.attention_probs_dropout_prob,
                    )?;
                    let ctx = if fused {
                        crate::fused::merge_heads(&probs.matmul(&v)?, nh)?
                    } else {
                        probs
                            .matmul(&v)?
                            .transpose(1, 2)?
                            .contiguous()?
                            .reshape((b, s, h))?
                    };
                    match &packing {
                        Some(p) => p.unpad(&ctx)?,
                        None => ctx,
                    }
                }
            };
            let a = layer.attn_out.forward(&ctx)?;
            let a = maybe_dropout_add(dropout.as_deref_mut(), a, cfg.hidden_dropout_prob, &x)?;
            let a = layer.attn_ln.forward(&a, fast)?;
            let f = layer.intermediate.forward(&a)?;
            let f = match cfg.hidden_act {
                // The fused GELU on the eval path too: candle's calls libm's scalar erf (~10% of embedding).
                Activation::GeluErf if crate::fused::applies(&f) && !crate::fused::disabled() => {
                    crate::fused::gelu_erf(&f)?
                }
                Activation::GeluErf => f.gelu_erf()?,
                Activation::GeluTanh => f.gelu()?,
                Activation::Relu => f.relu()?,
            };
            let f = layer.output.forward(&f)?;
            let f = maybe_dropout_add(dropout.as_deref_mut(), f, cfg.hidden_dropout_prob, &a)?;
            x = layer.out_ln.forward(&f, fast)?;
        }
        match &packing {
            Some(p) => p.pad(&x),
            None => Ok(x),
        }
    }
}

/// `HONE_PADDED=1` runs every position of a padded batch through the encoder, as before packing: the
/// A/B switch for measuring [`Packing`] and for comparing kernels with a peer on the same shapes.
fn unpad_disabled() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var_os("HONE_PADDED").is_some_and(|v| v != "0"))
}

/// Where the real tokens of a padded `(batch, seq)` batch are, for running only them through the
/// position-wise parts of the encoder (embeddings, linear layers, LayerNorm, GELU, dropout: all but a
/// few percent of its work), as `(tokens, hidden)` rows. Attention works on the padded grid; q, k and v
/// are scattered into it with zero rows at padding, its output gathered back. Real tokens get the same
/// values as in the padded computation (padding never reaches them: it is masked out of attention) and
/// gradients flow through both moves (`index_select`'s backward is `index_add`). Batches padded to their
/// longest input are mostly padding on short texts: a BANKING77 batch of 32 is 35% real tokens, a
/// SetFit-style half-batch of 16 is 42%.
struct Packing {
    /// Flat `(batch · seq)` index of each real token, in order: `(tokens,)` u32.
    real: Tensor,
    /// For each flat position, its row among the real tokens, or `tokens` (a zero row) for padding.
    back: Tensor,
    /// Position id of each real token.
    positions: Tensor,
    /// Row of each sequence's first real token, and `tokens` at the end (`batch + 1` entries).
    starts: std::sync::Arc<Vec<usize>>,
    tokens: usize,
    batch: usize,
    seq: usize,
}

impl Packing {
    /// `None` when nothing is padding (then the grid is the packing).
    fn of(mask: &Tensor) -> CResult<Option<Self>> {
        let (batch, seq) = mask.dims2()?;
        let m = mask.to_dtype(DType::U32)?.flatten_all()?.to_vec1::<u32>()?;
        let tokens = m.iter().filter(|&&v| v != 0).count();
        if tokens == m.len() {
            return Ok(None);
        }
        let (mut real, mut back, mut positions) = (
            Vec::with_capacity(tokens),
            Vec::with_capacity(m.len()),
            Vec::with_capacity(tokens),
        );
        let mut starts = Vec::with_capacity(batch + 1);
        for (i, &v) in m.iter().enumerate() {
            if i % seq == 0 {
                starts.push(real.len());
            }
            if v != 0 {
                back.push(real.len() as u32);
                real.push(i as u32);
                positions.push((i % seq) as u32);
            } else {
                back.push(tokens as u32);
            }
        }
        let dev = mask.device();
        Ok(Some(Self {
            real: Tensor::from_vec(real, tokens, dev)?,
            back: Tensor::from_vec(back, batch * seq, dev)?,
            positions: Tensor::from_vec(positions, tokens, dev)?,
            starts: std::sync::Arc::new({
                starts.push(tokens);
                starts
            }),
            tokens,
            batch,
            seq,
        }))
    }

    /// The real tokens' entries of a `(batch, seq)` id tensor.
    fn unpad_ids(&self, ids: &Tensor) -> CResult<Tensor> {
        ids.flatten_all()?.index_select(&self.real, 0)
    }

    /// `(batch, seq, hidden)` → `(tokens, hidden)`.
    fn unpad(&self, x: &Tensor) -> CResult<Tensor> {
        let h = x.dim(D::Minus1)?;
        x.reshape((self.batch * self.seq, h))?
            .index_select(&self.real, 0)
    }

    /// `(tokens, hidden)` → `(batch, seq, hidden)`, zero at padding.
    fn pad(&self, x: &Tensor) -> CResult<Tensor> {
        let h = x.dim(D::Minus1)?;
        debug_assert_eq!(x.dim(0)?, self.tokens);
        let zero = Tensor::zeros((1, h), x.dtype(), x.device())?;
        Tensor::cat(&[x, &zero], 0)?
            .index_select(&self.back, 0)?
            .reshape((self.batch, self.seq, h))
    }
}

/// One vector per input `(batch, hidden)` from last hidden states `(batch, seq, hidden)`.
/// `attention_mask` `(batch, seq)` (any dtype) is required for [`Pooling::Mean`].
pub fn pool(hidden: &Tensor, attention_mask: &Tensor, pooling: Pooling) -> Result<Tensor> {
    let r = match pooling {
        Pooling::Cls => hidden.narrow(1, 0, 1).and_then(|t| t.squeeze(1)),
        Pooling::Mean => (|| {
            let m = attention_mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
            let sum = hidden.broadcast_mul(&m)?.sum(1)?;
            let count = m.sum(1)?.clamp(1e-9, f64::INFINITY)?;
            sum.broadcast_div(&count)
        })(),
    };
    r.map_err(candle_err)
}

/// Divides each row by its L2 norm (rows of zeros stay zero).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    (|| {
        let norm = x
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::INFINITY)?;
        x.broadcast_div(&norm)
    })()
    .map_err(candle_err)
}
