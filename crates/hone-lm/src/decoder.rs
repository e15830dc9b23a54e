//! hone's own Llama-family decoder on differentiable candle ops (RMSNorm, rotary embeddings in the
//! Hugging Face half-split layout, grouped-query attention, SwiGLU, tied or separate output), with
//! Hugging Face tensor names in a `VarMap`: one model for training, evaluation and KV-cache generation.
//!
//! candle-transformers' Llama models are inference only (their RMSNorm and rotary kernels have no
//! backward pass); they are this module's numerical reference in tests.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Content;
use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::VarMap;

use crate::gguf::LmInfo;
use crate::{LmError, Result};

type CResult<T> = candle_core::Result<T>;

/// The shape of a Llama-family decoder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DecoderConfig {
    pub vocab: usize,
    pub hidden: usize,
    /// The SwiGLU inner size.
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub rope_theta: f64,
    pub rms_eps: f64,
    /// The output projection is the embedding matrix (no `lm_head.weight`).
    pub tied: bool,
    /// The longest sequence the rotary tables cover.
    pub context: usize,
    /// The query, key and value projections carry biases (Qwen2).
    #[serde(default)]
    pub attn_bias: bool,
}

impl DecoderConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    pub fn from_info(info: &LmInfo, tied: bool) -> DecoderConfig {
        DecoderConfig {
            vocab: info.vocab,
            hidden: info.hidden,
            ffn: info.ffn,
            layers: info.layers,
            heads: info.heads,
            kv_heads: info.kv_heads,
            rope_theta: info.rope_theta,
            rms_eps: info.rms_eps,
            tied,
            context: info.context,
            attn_bias: info.architecture == "qwen2",
        }
    }

    /// The number of trainable parameters.
    pub fn parameters(&self) -> usize {
        let hd = self.head_dim();
        let attn = self.hidden * self.heads * hd * 2 + self.hidden * self.kv_heads * hd * 2;
        let mlp = 3 * self.hidden * self.ffn;
        let per_layer = attn + mlp + 2 * self.hidden;
        let out = if self.tied {
            0
        } else {
            self.vocab * self.hidden
        };
        self.vocab * self.hidden + self.layers * per_layer + self.hidden + out
    }

    /// Checks the shape is one this decoder can run.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.heads == 0 || self.kv_heads == 0 || self.layers == 0 || self.vocab == 0 {
            return Err(format!("an empty model: {self:?}"));
        }
        if !self.hidden.is_multiple_of(self.heads) || !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "hidden size {} is not an even head size times {} heads",
                self.hidden, self.heads
            ));
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "{} attention heads are not a multiple of {} key/value heads",
                self.heads, self.kv_heads
            ));
        }
        Ok(())
    }
}

/// Hugging Face names of every tensor, in a fixed order (the order of `Decoder::vars`).
pub fn tensor_names(cfg: &DecoderConfig) -> Vec<String> {
    let mut names = vec!["model.embed_tokens.weight".to_string()];
    for i in 0..cfg.layers {
        for part in [
            "input_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "post_attention_layernorm",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            names.push(format!("model.layers.{i}.{part}.weight"));
        }
        if cfg.attn_bias {
            for part in BIASED {
                names.push(format!("model.layers.{i}.{part}.bias"));
            }
        }
    }
    names.push("model.norm.weight".into());
    if !cfg.tied {
        names.push("lm_head.weight".into());
    }
    names
}

/// The projections that carry a bias when [`DecoderConfig::attn_bias`] is set.
const BIASED: [&str; 3] = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"];

fn shape_of(cfg: &DecoderConfig, name: &str) -> Vec<usize> {
    let hd = cfg.head_dim();
    let (h, f) = (cfg.hidden, cfg.ffn);
    if let Some(part) = name.strip_suffix(".bias") {
        return match part.rsplit('.').next().unwrap_or_default() {
            "q_proj" => vec![cfg.heads * hd],
            "k_proj" | "v_proj" => vec![cfg.kv_heads * hd],
            _ => vec![],
        };
    }
    let part = name.rsplit_once(".weight").map_or(name, |(p, _)| p);
    match part.rsplit('.').next().unwrap_or_default() {
        "embed_tokens" | "lm_head" => vec![cfg.vocab, h],
        "input_layernorm" | "post_attention_layernorm" | "norm" => vec![h],
        "q_proj" => vec![cfg.heads * hd, h],
        "k_proj" | "v_proj" => vec![cfg.kv_heads * hd, h],
        "o_proj" => vec![h, cfg.heads * hd],
        "gate_proj" | "up_proj" => vec![f, h],
        "down_proj" => vec![h, f],
        _ => vec![],
    }
}

/// GGUF tensor names and their Hugging Face names: whole-model tensors, then the parts of layer `i`
/// (`blk.{i}.PART.weight` ↔ `model.layers.{i}.PART.weight`).
const WHOLE_NAMES: [(&str, &str); 3] = [
    ("token_embd.weight", "model.embed_tokens.weight"),
    ("output_norm.weight", "model.norm.weight"),
    ("output.weight", "lm_head.weight"),
];
const LAYER_NAMES: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// One tensor name in the other convention: `from`/`to` pick the side of the tables (0 = GGUF,
/// 1 = Hugging Face).
fn rename(name: &str, from: usize, to: usize) -> Option<String> {
    let pick = |p: &(&'static str, &'static str), side: usize| if side == 0 { p.0 } else { p.1 };
    if let Some(w) = WHOLE_NAMES.iter().find(|w| pick(w, from) == name) {
        return Some(pick(w, to).to_string());
    }
    let prefix = ["blk.", "model.layers."];
    let rest = name.strip_prefix(prefix[from])?;
    let (rest, kind) = match rest.strip_suffix(".weight") {
        Some(r) => (r, "weight"),
        None => (rest.strip_suffix(".bias")?, "bias"),
    };
    let (i, part) = rest.split_once('.')?;
    let i: usize = i.parse().ok()?;
    let l = LAYER_NAMES.iter().find(|l| pick(l, from) == part)?;
    Some(format!("{}{i}.{}.{kind}", prefix[to], pick(l, to)))
}

/// GGUF tensor name → Hugging Face name.
fn hf_name(gguf: &str) -> Option<String> {
    rename(gguf, 0, 1)
}

/// Hugging Face name → GGUF tensor name (for writing GGUF files).
pub fn gguf_name(hf: &str) -> Option<String> {
    rename(hf, 1, 0)
}

/// llama.cpp's converter reorders the rows of each head of Q and K so that rotary embeddings apply to
/// interleaved pairs (`permute` in `convert_hf_to_gguf.py`). `unpermute` restores the Hugging Face
/// order, in which pairs are the two halves of a head; `permute` does the converter's step.
pub fn unpermute(w: &Tensor, heads: usize) -> CResult<Tensor> {
    let (rows, cols) = w.dims2()?;
    let hd = rows / heads;
    w.reshape((heads, hd / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// The converter's reordering (the inverse of [`unpermute`]).
pub fn permute(w: &Tensor, heads: usize) -> CResult<Tensor> {
    let (rows, cols) = w.dims2()?;
    let hd = rows / heads;
    w.reshape((heads, 2, hd / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))
}

/// One layer's keys and values: buffers `(batch, kv_heads, capacity, head_dim)` of which the first
/// `len` positions are filled. Appending writes in place; the buffers double when full, so a
/// generation step copies only the new position instead of the whole history.
struct LayerCache {
    k: Tensor,
    v: Tensor,
    len: usize,
}

impl LayerCache {
    fn append(slot: &mut Option<LayerCache>, k: &Tensor, v: &Tensor) -> CResult<(Tensor, Tensor)> {
        let (b, kv, t, d) = k.dims4()?;
        let len = slot.as_ref().map_or(0, |c| c.len);
        let cap = slot.as_ref().map_or(0, |c| c.k.dim(2).unwrap_or(0));
        if len + t > cap {
            let new_cap = (len + t).max(2 * cap).max(64);
            let grow = |old: Option<&Tensor>| -> CResult<Tensor> {
                let buf = Tensor::zeros((b, kv, new_cap, d), k.dtype(), k.device())?;
                if let Some(o) = old
                    && len > 0
                {
                    buf.slice_set(&o.narrow(2, 0, len)?.contiguous()?, 2, 0)?;
                }
                Ok(buf)
            };
            let (nk, nv) = (
                grow(slot.as_ref().map(|c| &c.k))?,
                grow(slot.as_ref().map(|c| &c.v))?,
            );
            *slot = Some(LayerCache { k: nk, v: nv, len });
        }
        let c = slot
            .as_mut()
            .ok_or_else(|| candle_core::Error::Msg("cache slot".into()))?;
        c.k.slice_set(&k.contiguous()?, 2, c.len)?;
        c.v.slice_set(&v.contiguous()?, 2, c.len)?;
        c.len += t;
        Ok((c.k.narrow(2, 0, c.len)?, c.v.narrow(2, 0, c.len)?))
    }
}

/// Key and value states of every layer for the positions fed so far.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<LayerCache>>,
}

impl KvCache {
    pub fn new() -> KvCache {
        KvCache::default()
    }
    /// How many positions are cached.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map_or(0, |c| c.len)
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The projections of a layer, in the order of [`PROJECTIONS`].
const Q: usize = 0;
const K: usize = 1;
const V: usize = 2;
const O: usize = 3;
const GATE: usize = 4;
const UP: usize = 5;
const DOWN: usize = 6;

/// The linear layers LoRA can adapt (Hugging Face module names), indexed by `Q`…`DOWN`.
pub const PROJECTIONS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

struct Layer {
    attn_norm: Tensor,
    mlp_norm: Tensor,
    proj: [Tensor; 7],
    /// Biases of the query, key and value projections (Qwen2).
    bias: [Option<Tensor>; 3],
    /// LoRA adapters `(A (r, in), B (out, r))` per projection.
    lora: [Option<(Tensor, Tensor)>; 7],
}

/// LoRA settings: adapters of rank `rank` on the `targets` projections, scaled by `alpha / rank`.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Short module names (`q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
    /// `down_proj`).
    pub targets: Vec<String>,
}

impl LoraConfig {
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank.max(1) as f64
    }
    fn index(name: &str) -> Option<usize> {
        Self::targets().iter().position(|p| *p == name)
    }

    /// The module names `targets` may hold (`q_proj` … `down_proj`).
    pub fn targets() -> Vec<&'static str> {
        PROJECTIONS
            .iter()
            .filter_map(|p| p.rsplit('.').next())
            .collect()
    }
}

/// A Llama-family decoder whose weights are `Var`s (trainable in place).
pub struct Decoder {
    cfg: DecoderConfig,
    vars: VarMap,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Option<Tensor>,
    cos: Tensor,
    sin: Tensor,
    device: Device,
    lora: Option<LoraConfig>,
    /// The adapters' variables by PEFT name, in a fixed order.
    lora_vars: Vec<(String, Var)>,
}

/// Up to this many rows, the unfused [`linear`] multiplies from the weight's side.
const SMALL_ROWS: usize = 16;

/// `x · wᵀ` over the last dimension, `w` as PyTorch stores it `(out, in)`. `step` marks a generation
/// step, whose few rows go through the few-row product (`hone_neural::skinny`); training keeps gemm
/// whatever its row count, so that a micro-batch's numbers do not depend on its size.
fn linear(x: &Tensor, w: &Tensor, step: bool) -> CResult<Tensor> {
    let dims = x.dims().to_vec();
    let (last, lead) = dims
        .split_last()
        .ok_or_else(|| candle_core::Error::Msg("rank 0".into()))?;
    let rows: usize = lead.iter().product();
    let x2 = x.reshape((rows, *last))?;
    // Unfused, W · xᵀ reads the weight in its stored row-major order; the product x · Wᵀ would have
    // gemm repack the whole transposed weight on every call (the output projection alone is
    // 49,152 × 576 for SmolLM2).
    let fused = hone_neural::fused::applies(&x2) && !hone_neural::fused::disabled();
    let y = if fused && step {
        hone_neural::fused::linear_few_rows(&x2, w)?
    } else if fused {
        hone_neural::fused::linear_no_bias(&x2, w)?
    } else if rows <= SMALL_ROWS {
        w.matmul(&x2.t()?)?.t()?.contiguous()?
    } else {
        x2.matmul(&w.t()?)?
    };
    let mut out = lead.to_vec();
    out.push(w.dim(0)?);
    y.reshape(out)
}

fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> CResult<Tensor> {
    if hone_neural::fused::applies(x) && !hone_neural::fused::disabled() {
        return hone_neural::fused::rms_norm(x, w, eps);
    }
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

/// `softmax(scale · scores + mask)`, scores `(b, heads, t, total)`, mask `(b | 1, 1, t, total)`: one
/// fused op (the mask gets no gradient) or, for f64 and under `HONE_UNFUSED`, the written-out ops.
fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> CResult<Tensor> {
    if hone_neural::fused::applies(scores) && !hone_neural::fused::disabled() {
        return hone_neural::fused::masked_softmax(scores, &mask.squeeze(1)?, scale);
    }
    let x = (scores * scale)?.broadcast_add(mask)?;
    let m = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&m)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}

fn rotate_half(x: &Tensor) -> CResult<Tensor> {
    let d = x.dim(D::Minus1)?;
    let a = x.narrow(D::Minus1, 0, d / 2)?;
    let b = x.narrow(D::Minus1, d / 2, d / 2)?;
    Tensor::cat(&[&b.neg()?, &a], D::Minus1)
}

/// Rotary embedding in the half-split layout: `x (b, h, t, d)`, `cos`/`sin` `(b or 1, 1, t, d)`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> CResult<Tensor> {
    if hone_neural::fused::applies(x) && !hone_neural::fused::disabled() {
        return hone_neural::fused::rope(x, cos, sin);
    }
    x.broadcast_mul(cos)? + rotate_half(x)?.broadcast_mul(sin)?
}

const MASKED: f32 = -1e9;

impl Decoder {
    /// A decoder with the given weights (Hugging Face names; every name of [`tensor_names`] must be
    /// present with its shape). `lm_head.weight` present in a tied config is ignored.
    pub fn from_tensors(
        cfg: DecoderConfig,
        mut tensors: HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Decoder> {
        cfg.validate().map_err(LmError::Model)?;
        let vars = VarMap::new();
        {
            let mut data = vars.data().lock().map_err(|_| {
                LmError::Model("the weight map's lock was poisoned by an earlier panic".into())
            })?;
            for name in tensor_names(&cfg) {
                let t = tensors
                    .remove(&name)
                    .ok_or_else(|| LmError::Model(format!("tensor `{name}` is missing")))?;
                let want = shape_of(&cfg, &name);
                if t.dims() != want.as_slice() {
                    return Err(LmError::Model(format!(
                        "tensor `{name}` has shape {:?}, the config says {want:?}",
                        t.dims()
                    )));
                }
                let t = t.to_dtype(DType::F32)?.to_device(device)?;
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        Self::from_vars(cfg, vars, device)
    }

    fn from_vars(cfg: DecoderConfig, vars: VarMap, device: &Device) -> Result<Decoder> {
        let get = |name: &str| -> Result<Tensor> {
            vars.data()
                .lock()
                .map_err(|_| LmError::Model("the weight map's lock was poisoned".into()))?
                .get(name)
                .map(|v| v.as_tensor().clone())
                .ok_or_else(|| LmError::Model(format!("tensor `{name}` is missing")))
        };
        let mut layers = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let p = |s: &str| format!("model.layers.{i}.{s}.weight");
            layers.push(Layer {
                attn_norm: get(&p("input_layernorm"))?,
                mlp_norm: get(&p("post_attention_layernorm"))?,
                proj: [
                    get(&p(PROJECTIONS[Q]))?,
                    get(&p(PROJECTIONS[K]))?,
                    get(&p(PROJECTIONS[V]))?,
                    get(&p(PROJECTIONS[O]))?,
                    get(&p(PROJECTIONS[GATE]))?,
                    get(&p(PROJECTIONS[UP]))?,
                    get(&p(PROJECTIONS[DOWN]))?,
                ],
                bias: if cfg.attn_bias {
                    let b = |s: &str| get(&format!("model.layers.{i}.{s}.bias")).map(Some);
                    [b(BIASED[0])?, b(BIASED[1])?, b(BIASED[2])?]
                } else {
                    Default::default()
                },
                lora: Default::default(),
            });
        }
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(Decoder {
            embed: get("model.embed_tokens.weight")?,
            norm: get("model.norm.weight")?,
            lm_head: if cfg.tied {
                None
            } else {
                Some(get("lm_head.weight")?)
            },
            layers,
            cos,
            sin,
            device: device.clone(),
            vars,
            cfg,
            lora: None,
            lora_vars: Vec::new(),
        })
    }

    /// A decoder with seeded random weights (normal, std 0.02; norms at 1): for pre-training and tests.
    pub fn random(cfg: DecoderConfig, seed: u64, device: &Device) -> Result<Decoder> {
        cfg.validate().map_err(LmError::Model)?;
        let mut rng = hone_neural::SeededRng::new(seed);
        let mut tensors = HashMap::new();
        for name in tensor_names(&cfg) {
            let shape = shape_of(&cfg, &name);
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if shape.len() == 1 && !name.ends_with(".bias") {
                vec![1.0; n]
            } else {
                (0..n).map(|_| rng.normal() as f32 * 0.02).collect()
            };
            tensors.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
        }
        Self::from_tensors(cfg, tensors, device)
    }

    /// The decoder stored in a GGUF file, every tensor dequantized to f32 and Q/K rows restored to
    /// the Hugging Face order.
    pub fn from_gguf(path: &Path, content: &Content, info: &LmInfo) -> Result<Decoder> {
        let cpu = Device::Cpu;
        let mut reader = std::fs::File::open(path).map_err(|source| LmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut tensors = HashMap::new();
        for name in content.tensor_infos.keys() {
            let Some(hf) = hf_name(name) else { continue };
            let t = content
                .tensor(&mut reader, name, &cpu)
                .map_err(|e| LmError::Format {
                    path: path.to_path_buf(),
                    what: format!(
                        "tensor `{name}` cannot be read (a truncated or damaged file?): {}",
                        crate::candle_message(e)
                    ),
                })?
                .dequantize(&cpu)?;
            let t = if name.ends_with("attn_q.weight") {
                unpermute(&t, info.heads)?
            } else if name.ends_with("attn_k.weight") {
                unpermute(&t, info.kv_heads)?
            } else {
                t
            };
            tensors.insert(hf, t);
        }
        let tied = !tensors.contains_key("lm_head.weight");
        let cfg = DecoderConfig::from_info(info, tied);
        Self::from_tensors(cfg, tensors, &cpu).map_err(|e| match e {
            LmError::Model(what) => LmError::Format {
                path: path.to_path_buf(),
                what,
            },
            other => other,
        })
    }

    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Adds LoRA adapters (PEFT's initialisation: A uniform in ±1/√in, B zero, so the model is
    /// unchanged until it trains) and freezes every base weight: from now on only the adapters train.
    pub fn add_lora(&mut self, cfg: LoraConfig, seed: u64) -> Result<()> {
        if self.lora.is_some() {
            return Err(LmError::Model("the model already has LoRA adapters".into()));
        }
        if cfg.rank == 0 {
            return Err(LmError::Model("lora_rank must be at least 1".into()));
        }
        let mut which = Vec::new();
        for t in &cfg.targets {
            which.push(LoraConfig::index(t).ok_or_else(|| {
                LmError::Model(format!(
                    "unknown target module `{t}` (known: {})",
                    LoraConfig::targets().join(", ")
                ))
            })?);
        }
        if which.is_empty() {
            return Err(LmError::Model(
                "LoRA needs at least one target module".into(),
            ));
        }
        which.sort_unstable();
        which.dedup();
        let mut rng = hone_neural::SeededRng::new(seed);
        let mut tensors = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            for &j in &which {
                let (out, inp) = layer.proj[j].dims2()?;
                let bound = 1.0 / (inp as f64).sqrt();
                let a: Vec<f32> = (0..cfg.rank * inp)
                    .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                let a = Tensor::from_vec(a, (cfg.rank, inp), &Device::Cpu)?;
                let b = Tensor::zeros((out, cfg.rank), DType::F32, &Device::Cpu)?;
                tensors.push((i, j, a, b));
            }
        }
        self.set_adapters(cfg, tensors)
    }

    /// Installs adapters `(layer, projection, A, B)` and freezes the base weights.
    fn set_adapters(
        &mut self,
        cfg: LoraConfig,
        tensors: Vec<(usize, usize, Tensor, Tensor)>,
    ) -> Result<()> {
        let mut vars = Vec::new();
        for (i, j, a, b) in tensors {
            let a = Var::from_tensor(&a.to_device(&self.device)?)?;
            let b = Var::from_tensor(&b.to_device(&self.device)?)?;
            let base = format!("base_model.model.model.layers.{i}.{}", PROJECTIONS[j]);
            vars.push((format!("{base}.lora_A.weight"), a.clone()));
            vars.push((format!("{base}.lora_B.weight"), b.clone()));
            let layer = self.layers.get_mut(i).ok_or_else(|| {
                LmError::Model(format!("adapter for layer {i}, which does not exist"))
            })?;
            layer.lora[j] = Some((a.as_tensor().clone(), b.as_tensor().clone()));
        }
        // Frozen: the same storage, outside the gradient graph.
        self.embed = self.embed.detach();
        self.norm = self.norm.detach();
        self.lm_head = self.lm_head.as_ref().map(Tensor::detach);
        for l in &mut self.layers {
            l.attn_norm = l.attn_norm.detach();
            l.mlp_norm = l.mlp_norm.detach();
            for p in &mut l.proj {
                *p = p.detach();
            }
        }
        self.lora = Some(cfg);
        self.lora_vars = vars;
        Ok(())
    }

    /// Installs adapters saved under PEFT names (`…layers.{i}.{module}.lora_A.weight`).
    pub fn load_lora(&mut self, cfg: LoraConfig, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let mut out = Vec::new();
        for (name, a) in tensors {
            let Some(prefix) = name.strip_suffix(".lora_A.weight") else {
                continue;
            };
            let b = tensors
                .get(&format!("{prefix}.lora_B.weight"))
                .ok_or_else(|| LmError::Model(format!("`{prefix}.lora_B.weight` is missing")))?;
            let rest = prefix
                .split_once("layers.")
                .map(|(_, r)| r)
                .ok_or_else(|| LmError::Model(format!("`{name}` names no layer")))?;
            let (i, module) = rest
                .split_once('.')
                .ok_or_else(|| LmError::Model(format!("`{name}` names no module")))?;
            let i: usize = i
                .parse()
                .map_err(|_| LmError::Model(format!("`{name}`: bad layer number")))?;
            let j = PROJECTIONS
                .iter()
                .position(|p| *p == module)
                .ok_or_else(|| LmError::Model(format!("`{name}`: unknown module")))?;
            out.push((i, j, a.clone(), b.clone()));
        }
        if out.is_empty() {
            return Err(LmError::Model("no LoRA adapters in the file".into()));
        }
        self.set_adapters(cfg, out)
    }

    pub fn lora(&self) -> Option<&LoraConfig> {
        self.lora.as_ref()
    }

    /// The adapters by PEFT name (empty without LoRA).
    pub fn lora_vars(&self) -> &[(String, Var)] {
        &self.lora_vars
    }

    /// What trains: the adapters when there are any, else every weight.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        if self.lora.is_some() {
            self.lora_vars.clone()
        } else {
            self.vars()
        }
    }

    /// Every weight by Hugging Face name with the adapters folded in (`W + scale · B A`).
    pub fn merged_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = self.tensors()?;
        if let Some(cfg) = &self.lora {
            for (i, l) in self.layers.iter().enumerate() {
                for (j, ad) in l.lora.iter().enumerate() {
                    if let Some((a, b)) = ad {
                        let name = format!("model.layers.{i}.{}.weight", PROJECTIONS[j]);
                        let w = out
                            .get(&name)
                            .ok_or_else(|| LmError::Model(format!("`{name}` is missing")))?;
                        let merged = (w + (b.matmul(a)? * cfg.scale())?)?;
                        out.insert(name, merged);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The trainable weights, in the order of [`tensor_names`].
    pub fn vars(&self) -> Vec<(String, Var)> {
        let data = self.vars.data().lock().unwrap_or_else(|e| e.into_inner());
        tensor_names(&self.cfg)
            .into_iter()
            .filter_map(|n| data.get(&n).cloned().map(|v| (n, v)))
            .collect()
    }

    /// Copies of every weight by Hugging Face name (for saving).
    pub fn tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (n, v) in self.vars() {
            out.insert(n, v.as_tensor().copy()?);
        }
        Ok(out)
    }

    /// Logits `(batch, seq, vocab)` for right-padded (or unpadded) token ids `(batch, seq)`, every
    /// position attending to itself and the positions before it. Differentiable.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_train(ids, None)
    }

    /// [`Decoder::forward`] in training mode when `dropout` is given (LoRA dropout on the adapters'
    /// inputs; the base model has none).
    pub fn forward_train(
        &self,
        ids: &Tensor,
        dropout: Option<&mut hone_neural::Dropout>,
    ) -> Result<Tensor> {
        self.logits(&self.hidden_train(ids, dropout)?)
    }

    /// Feeds `ids (batch, t)` after what `cache` holds and returns the logits of the last position
    /// `(batch, vocab)`. `pads[b]` is the number of left-padding tokens of row `b` (their keys are
    /// masked and positions count from the first real token).
    pub fn forward_cached(
        &self,
        ids: &Tensor,
        pads: &[usize],
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if pads.len() != b {
            return Err(LmError::Model(format!(
                "{} padding counts for {b} rows",
                pads.len()
            )));
        }
        let past = cache.len();
        if past + t > self.cfg.context {
            return Err(LmError::Context(format!(
                "{} tokens exceed the model's context of {}",
                past + t,
                self.cfg.context
            )));
        }
        let mut positions = Vec::with_capacity(b * t);
        for &p in pads {
            for j in 0..t {
                positions.push((past + j).saturating_sub(p) as u32);
            }
        }
        let pos = Tensor::from_vec(positions, (b, t), &self.device)?;
        let mask = causal_mask(pads, t, past, &self.device)?;
        if cache.layers.len() != self.cfg.layers {
            cache.layers = (0..self.cfg.layers).map(|_| None).collect();
        }
        let mut c = Some(&mut cache.layers);
        let logits = self.run(ids, &pos, &mask, &mut c, None)?;
        Ok(logits.squeeze(1)?)
    }

    /// `x · Wᵀ` for projection `which` of layer `l`, plus its LoRA update `scale · B A dropout(x)`;
    /// `step`: a generation step (see [`linear`]).
    fn project(
        &self,
        l: &Layer,
        which: usize,
        x: &Tensor,
        dropout: Option<&mut hone_neural::Dropout>,
        step: bool,
    ) -> CResult<Tensor> {
        let mut y = linear(x, &l.proj[which], step)?;
        if let Some(Some(bias)) = l.bias.get(which) {
            y = y.broadcast_add(bias)?;
        }
        let (Some((a, b)), Some(cfg)) = (&l.lora[which], &self.lora) else {
            return Ok(y);
        };
        let xin = match dropout {
            Some(d) => d.apply(x, cfg.dropout)?,
            None => x.clone(),
        };
        // Scaling the rank-sized middle keeps one output-sized buffer per projection out of backward.
        y + linear(&(linear(&xin, a, step)? * cfg.scale())?, b, step)?
    }

    fn run(
        &self,
        ids: &Tensor,
        pos: &Tensor,
        mask: &Tensor,
        cache: &mut Option<&mut Vec<Option<LayerCache>>>,
        dropout: Option<&mut hone_neural::Dropout>,
    ) -> CResult<Tensor> {
        let t = ids.dim(1)?;
        let x = self.run_layers(ids, pos, mask, cache, dropout)?;
        // Generation needs the last position's logits only: the output projection of every
        // prompt position would cost more than the rest of a prefill.
        let x = if cache.is_some() && t > 1 {
            x.narrow(1, t - 1, 1)?
        } else {
            x
        };
        self.head(&x, cache.is_some())
    }

    /// The final norm and output projection: logits for hidden states `(…, hidden)`.
    fn head(&self, x: &Tensor, step: bool) -> CResult<Tensor> {
        let x = rms_norm(x, &self.norm, self.cfg.rms_eps)?;
        linear(&x, self.lm_head.as_ref().unwrap_or(&self.embed), step)
    }

    /// The hidden states after the last layer `(batch, seq, hidden)`, before the final norm, in
    /// training mode when `dropout` is given. With [`Decoder::logits`] on the rows that matter, a
    /// loss need not project every position onto the vocabulary. Differentiable.
    pub fn hidden_train(
        &self,
        ids: &Tensor,
        dropout: Option<&mut hone_neural::Dropout>,
    ) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let positions: Vec<u32> = (0..t as u32).collect();
        let pos = Tensor::new(positions.as_slice(), &self.device)?.unsqueeze(0)?;
        let mask = causal_mask(&[0], t, 0, &self.device)?;
        Ok(self.run_layers(ids, &pos, &mask, &mut None, dropout)?)
    }

    /// Logits for hidden states as [`Decoder::hidden_train`] returns them (any leading shape).
    /// Differentiable.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.head(hidden, false)?)
    }

    fn run_layers(
        &self,
        ids: &Tensor,
        pos: &Tensor,
        mask: &Tensor,
        cache: &mut Option<&mut Vec<Option<LayerCache>>>,
        mut dropout: Option<&mut hone_neural::Dropout>,
    ) -> CResult<Tensor> {
        let cfg = &self.cfg;
        let (b, t) = ids.dims2()?;
        // Generation (a cache is fed): its products have one row per sequence after the prompt.
        let step = cache.is_some();
        let hd = cfg.head_dim();
        let rows = pos.dim(0)?;
        let flat = pos.flatten_all()?;
        let cos = self.cos.index_select(&flat, 0)?.reshape((rows, 1, t, hd))?;
        let sin = self.sin.index_select(&flat, 0)?.reshape((rows, 1, t, hd))?;
        let mut x = self
            .embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, cfg.hidden))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let rep = cfg.heads / cfg.kv_heads;
        for (i, l) in self.layers.iter().enumerate() {
            let h = rms_norm(&x, &l.attn_norm, cfg.rms_eps)?;
            let mut heads = |which: usize, n: usize| -> CResult<Tensor> {
                self.project(l, which, &h, dropout.as_deref_mut(), step)?
                    .reshape((b, t, n, hd))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = rope(&heads(Q, cfg.heads)?, &cos, &sin)?;
            let mut k = rope(&heads(K, cfg.kv_heads)?, &cos, &sin)?;
            let mut v = heads(V, cfg.kv_heads)?;
            if let Some(c) = cache.as_deref_mut() {
                (k, v) = LayerCache::append(&mut c[i], &k, &v)?;
            }
            // Grouped-query attention without copying keys and values: the `rep` query heads of
            // each key/value head are stacked along the query axis.
            let total = k.dim(2)?;
            let qg = q.reshape((b, cfg.kv_heads, rep * t, hd))?;
            let scores = qg.matmul(&k.t()?)?.reshape((b, cfg.heads, t, total))?;
            let p =
                masked_softmax(&scores, mask, scale)?.reshape((b, cfg.kv_heads, rep * t, total))?;
            let att = p
                .matmul(&v)?
                .reshape((b, cfg.heads, t, hd))?
                .transpose(1, 2)?
                .reshape((b, t, cfg.heads * hd))?;
            x = (x + self.project(l, O, &att, dropout.as_deref_mut(), step)?)?;
            let h = rms_norm(&x, &l.mlp_norm, cfg.rms_eps)?;
            let g = self.project(l, GATE, &h, dropout.as_deref_mut(), step)?;
            let u = self.project(l, UP, &h, dropout.as_deref_mut(), step)?;
            let m = if hone_neural::fused::applies(&g) && !hone_neural::fused::disabled() {
                hone_neural::fused::silu_mul(&g, &u)?
            } else {
                (g.silu()? * u)?
            };
            x = (x + self.project(l, DOWN, &m, dropout.as_deref_mut(), step)?)?;
        }
        Ok(x)
    }
}

/// Rotary tables `(context, head_dim)` with each frequency repeated for both halves.
fn rope_tables(cfg: &DecoderConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let hd = cfg.head_dim();
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / cfg.rope_theta.powf(2.0 * i as f64 / hd as f64) as f32)
        .collect();
    let n = cfg.context.max(1);
    let mut cos = Vec::with_capacity(n * hd);
    let mut sin = Vec::with_capacity(n * hd);
    for p in 0..n {
        // Each frequency serves both halves of a head (the half-split layout).
        for f in inv.iter().chain(&inv) {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, hd), device)?,
        Tensor::from_vec(sin, (n, hd), device)?,
    ))
}

/// Additive mask `(rows, 1, t, past + t)`: query `j` (at absolute index `past + j`) sees keys up to
/// its own index, except row `r`'s first `pads[r]` keys (left padding).
fn causal_mask(pads: &[usize], t: usize, past: usize, device: &Device) -> CResult<Tensor> {
    let total = past + t;
    let mut m = Vec::with_capacity(pads.len() * t * total);
    for &p in pads {
        for j in 0..t {
            for k in 0..total {
                let visible = k <= past + j && k >= p;
                m.push(if visible { 0.0 } else { MASKED });
            }
        }
    }
    Tensor::from_vec(m, (pads.len(), 1, t, total), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use crate::testing::max_diff;
    use candle_transformers::models::quantized_llama::ModelWeights;

    fn sharp_tiny(seed: u64) -> Decoder {
        let d = Decoder::random(testing::tiny_config(), seed, &Device::Cpu).unwrap();
        let w = testing::scaled(&d, 10.0).unwrap();
        Decoder::from_tensors(testing::tiny_config(), w, &Device::Cpu).unwrap()
    }

    #[test]
    fn tensor_names_map_both_ways() {
        let cfg = testing::tiny_config();
        for name in tensor_names(&DecoderConfig { tied: false, ..cfg }) {
            let g = gguf_name(&name).unwrap();
            assert_eq!(hf_name(&g).as_deref(), Some(name.as_str()), "{g}");
        }
        assert_eq!(
            gguf_name("model.layers.3.mlp.up_proj.weight").as_deref(),
            Some("blk.3.ffn_up.weight")
        );
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn permute_and_unpermute_are_inverse() {
        let w = Tensor::arange(0f32, 64.0, &Device::Cpu)
            .unwrap()
            .reshape((8, 8))
            .unwrap();
        let p = permute(&w, 2).unwrap();
        assert!(max_diff(&p, &w) > 0.0);
        assert_eq!(max_diff(&unpermute(&p, 2).unwrap(), &w), 0.0);
    }

    /// The decoder read back from a llama.cpp-layout GGUF file gives candle-transformers' logits at
    /// every position: the Q/K reordering is undone and the half-split rotary matches the
    /// interleaved one on the permuted weights.
    #[test]
    fn matches_candle_transformers_on_the_same_gguf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiny.gguf");
        testing::write_gguf(&sharp_tiny(3), &path).unwrap();
        let file = crate::LmFile::open(&path).unwrap();
        let ours = Decoder::from_gguf(&path, &file.content, &file.info).unwrap();
        let mut f = std::fs::File::open(&path).unwrap();
        let content = Content::read(&mut f).unwrap();
        let mut reference = ModelWeights::from_gguf(content, &mut f, &Device::Cpu).unwrap();
        let ids: Vec<u32> = (0..24).map(|i| (i * 37 + 5) % 259).collect();
        let full = ours
            .forward(
                &Tensor::new(ids.as_slice(), &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
            )
            .unwrap()
            .squeeze(0)
            .unwrap();
        let spread = full
            .abs()
            .unwrap()
            .max_keepdim(1)
            .unwrap()
            .mean_all()
            .unwrap();
        assert!(
            spread.to_scalar::<f32>().unwrap() > 0.5,
            "logits too flat to test"
        );
        for (pos, &id) in ids.iter().enumerate() {
            let x = Tensor::new(&[id], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let r = reference.forward(&x, pos).unwrap().squeeze(0).unwrap();
            let o = full.get(pos).unwrap();
            assert!(
                max_diff(&r, &o) < 1e-4,
                "position {pos}: {}",
                max_diff(&r, &o)
            );
        }
    }

    #[test]
    fn cached_and_batched_left_padded_logits_equal_full_forward() {
        let d = sharp_tiny(5);
        let rows: [&[u32]; 3] = [&[7, 8, 9, 10, 11, 12], &[40, 41], &[100, 3, 200, 4]];
        let longest = rows.iter().map(|r| r.len()).max().unwrap();
        let pads: Vec<usize> = rows.iter().map(|r| longest - r.len()).collect();
        let mut flat = Vec::new();
        for (r, &p) in rows.iter().zip(&pads) {
            flat.extend(std::iter::repeat_n(2u32, p));
            flat.extend_from_slice(r);
        }
        let ids = Tensor::from_vec(flat, (3, longest), &Device::Cpu).unwrap();
        let mut cache = KvCache::new();
        let first = d.forward_cached(&ids, &pads, &mut cache).unwrap();
        // One more token per row through the cache.
        let next = Tensor::new(&[[50u32], [51], [52]], &Device::Cpu).unwrap();
        let second = d.forward_cached(&next, &pads, &mut cache).unwrap();
        assert_eq!(cache.len(), longest + 1);
        for (i, r) in rows.iter().enumerate() {
            let mut seq = r.to_vec();
            let alone = d
                .forward(
                    &Tensor::new(seq.as_slice(), &Device::Cpu)
                        .unwrap()
                        .unsqueeze(0)
                        .unwrap(),
                )
                .unwrap();
            let last = alone.get(0).unwrap().get(seq.len() - 1).unwrap();
            assert!(max_diff(&last, &first.get(i).unwrap()) < 1e-4, "row {i}");
            seq.push(50 + i as u32);
            let alone = d
                .forward(
                    &Tensor::new(seq.as_slice(), &Device::Cpu)
                        .unwrap()
                        .unsqueeze(0)
                        .unwrap(),
                )
                .unwrap();
            let last = alone.get(0).unwrap().get(seq.len() - 1).unwrap();
            assert!(
                max_diff(&last, &second.get(i).unwrap()) < 1e-4,
                "row {i} step 2"
            );
        }
    }

    #[test]
    fn every_parameter_receives_a_gradient() {
        for tied in [true, false] {
            let cfg = DecoderConfig {
                tied,
                ..testing::tiny_config()
            };
            let d = Decoder::random(cfg, 9, &Device::Cpu).unwrap();
            let ids =
                Tensor::new(&[[5u32, 6, 7, 8, 9], [10, 11, 12, 13, 14]], &Device::Cpu).unwrap();
            let logits = d.forward(&ids).unwrap();
            let targets = Tensor::new(&[[6u32, 7, 8, 9, 10], [11, 12, 13, 14, 15]], &Device::Cpu)
                .unwrap()
                .flatten_all()
                .unwrap();
            let loss =
                candle_nn::loss::cross_entropy(&logits.flatten_to(1).unwrap(), &targets).unwrap();
            let grads = loss.backward().unwrap();
            let vars = d.vars();
            assert_eq!(vars.len(), tensor_names(d.config()).len());
            for (name, v) in vars {
                let g = grads
                    .get(v.as_tensor())
                    .unwrap_or_else(|| panic!("no gradient for {name}"));
                let n = g
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(n > 0.0 && n.is_finite(), "{name}: |g|² = {n}");
            }
        }
    }

    #[test]
    fn parameter_count_matches_the_tensors() {
        for tied in [true, false] {
            let cfg = DecoderConfig {
                tied,
                ..testing::tiny_config()
            };
            let d = Decoder::random(cfg.clone(), 1, &Device::Cpu).unwrap();
            let n: usize = d
                .vars()
                .iter()
                .map(|(_, v)| v.as_tensor().elem_count())
                .sum();
            assert_eq!(n, cfg.parameters());
        }
    }
}
