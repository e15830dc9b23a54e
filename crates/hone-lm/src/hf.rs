//! Hugging Face model directories: `config.json` (Llama, Mistral, Qwen2), `tokenizer.json`,
//! `tokenizer_config.json` (special tokens and the chat template) and the weights in `*.safetensors`
//! (one file or shards), read into hone's decoder in f32.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::decoder::{Decoder, DecoderConfig};
use crate::generate::Lm;
use crate::gguf::LmInfo;
use crate::{LmError, Result};

/// The `config.json` keys hone reads.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: String,
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default = "default_context")]
    max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f64,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
    #[serde(default)]
    attention_bias: Option<bool>,
    #[serde(default)]
    rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    bos_token_id: Option<OneOrMany>,
    #[serde(default)]
    eos_token_id: Option<OneOrMany>,
    #[serde(default)]
    pad_token_id: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(u32),
    Many(Vec<u32>),
}

impl OneOrMany {
    fn first(&self) -> Option<u32> {
        match self {
            OneOrMany::One(x) => Some(*x),
            OneOrMany::Many(v) => v.first().copied(),
        }
    }
}

fn default_context() -> usize {
    2048
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}

/// The `tokenizer_config.json` keys hone reads.
#[derive(Debug, Default, Deserialize)]
struct TokenizerConfig {
    #[serde(default)]
    chat_template: Option<TemplateField>,
    #[serde(default)]
    bos_token: Option<TokenField>,
    #[serde(default)]
    eos_token: Option<TokenField>,
    #[serde(default)]
    pad_token: Option<TokenField>,
    #[serde(default)]
    add_bos_token: Option<bool>,
}

/// A template as a string, or a list of named templates (the one named `default` is used).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TemplateField {
    One(String),
    Named(Vec<NamedTemplate>),
}

#[derive(Debug, Deserialize)]
struct NamedTemplate {
    name: String,
    template: String,
}

/// A special token as its text or as an `AddedToken` object.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TokenField {
    Text(String),
    Added { content: String },
}

impl TokenField {
    fn text(&self) -> &str {
        match self {
            TokenField::Text(s) => s,
            TokenField::Added { content } => content,
        }
    }
}

/// Whether `dir` looks like a Hugging Face model directory (it has a `config.json`).
pub fn is_hf_dir(dir: &Path) -> bool {
    dir.join("config.json").is_file()
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| LmError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| LmError::Format {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

/// The weight files of `dir`: every `*.safetensors` (a single file or the shards of an index).
fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| LmError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(LmError::Format {
            path: dir.to_path_buf(),
            what: "no *.safetensors weights in the directory".into(),
        });
    }
    Ok(files)
}

/// Loads the model in the Hugging Face directory `dir` on the CPU, in f32. Architectures: `llama`
/// and `mistral` (hone's Llama decoder), `qwen2` (the same with query/key/value biases).
pub fn load_dir(dir: &Path) -> Result<Lm> {
    let cfg_path = dir.join("config.json");
    let hc: HfConfig = read_json(&cfg_path)?;
    let format = |what: String| LmError::Format {
        path: cfg_path.clone(),
        what,
    };
    let attn_bias = match hc.model_type.as_str() {
        "llama" | "mistral" => hc.attention_bias.unwrap_or(false),
        "qwen2" => true,
        other => {
            return Err(format(format!(
                "model_type `{other}` is not supported (supported: llama, mistral, qwen2)"
            )));
        }
    };
    if let Some(s) = hc.rope_scaling.as_ref().filter(|s| !s.is_null()) {
        return Err(format(format!(
            "rope_scaling {s} is not supported: hone's rotary embeddings are unscaled"
        )));
    }
    let heads = hc.num_attention_heads;
    if hc.head_dim.is_some_and(|d| d * heads != hc.hidden_size) {
        return Err(format(format!(
            "head_dim × num_attention_heads ({} × {heads}) differs from hidden_size {}; hone's decoder needs them equal",
            hc.head_dim.unwrap_or_default(),
            hc.hidden_size
        )));
    }
    let cpu = candle_core::Device::Cpu;
    let mut tensors: HashMap<String, candle_core::Tensor> = HashMap::new();
    for f in weight_files(dir)? {
        let loaded = candle_core::safetensors::load(&f, &cpu).map_err(|e| LmError::Format {
            path: f.clone(),
            what: format!(
                "cannot read the weights (a truncated or damaged file?): {}",
                crate::candle_message(e)
            ),
        })?;
        tensors.extend(loaded);
    }
    let tied = hc
        .tie_word_embeddings
        .unwrap_or(!tensors.contains_key("lm_head.weight"));
    if tied {
        tensors.remove("lm_head.weight");
    }
    let dcfg = DecoderConfig {
        vocab: hc.vocab_size,
        hidden: hc.hidden_size,
        ffn: hc.intermediate_size,
        layers: hc.num_hidden_layers,
        heads,
        kv_heads: hc.num_key_value_heads.unwrap_or(heads),
        rope_theta: hc.rope_theta,
        rms_eps: hc.rms_norm_eps,
        tied,
        context: hc.max_position_embeddings,
        attn_bias,
    };
    let decoder = Decoder::from_tensors(dcfg.clone(), tensors, &cpu).map_err(|e| match e {
        LmError::Model(what) => LmError::Format {
            path: dir.to_path_buf(),
            what,
        },
        other => other,
    })?;

    let tok_path = dir.join("tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
        .map_err(|e| LmError::Tokenizer(format!("{}: {e}", tok_path.display())))?;
    let tc_path = dir.join("tokenizer_config.json");
    let tc: TokenizerConfig = if tc_path.is_file() {
        read_json(&tc_path)?
    } else {
        TokenizerConfig::default()
    };
    let id_of = |t: &Option<TokenField>| t.as_ref().and_then(|t| tokenizer.token_to_id(t.text()));
    let eos = hc
        .eos_token_id
        .as_ref()
        .and_then(OneOrMany::first)
        .or_else(|| id_of(&tc.eos_token))
        .ok_or_else(|| {
            format("no end-of-sequence token: neither config.json's eos_token_id nor tokenizer_config.json's eos_token".into())
        })?;
    let bos = hc
        .bos_token_id
        .as_ref()
        .and_then(OneOrMany::first)
        .or_else(|| id_of(&tc.bos_token));
    let template = match tc.chat_template {
        Some(TemplateField::One(s)) => Some(s),
        Some(TemplateField::Named(v)) => v
            .into_iter()
            .find(|t| t.name == "default")
            .map(|t| t.template),
        None => None,
    };
    let info = LmInfo {
        architecture: hc.model_type.clone(),
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()),
        license: None,
        layers: dcfg.layers,
        hidden: dcfg.hidden,
        heads: dcfg.heads,
        kv_heads: dcfg.kv_heads,
        ffn: dcfg.ffn,
        context: dcfg.context,
        rope_theta: dcfg.rope_theta,
        rms_eps: dcfg.rms_eps,
        vocab: dcfg.vocab,
        bos,
        eos,
        pad: hc.pad_token_id.or_else(|| id_of(&tc.pad_token)),
        add_bos: tc.add_bos_token.unwrap_or(false),
        chat_template: template.clone(),
    };
    let mut lm = Lm::from_parts(decoder, tokenizer, None, info);
    if let Some(src) = template {
        lm.set_template_source(&src)?;
    }
    Ok(lm)
}

fn hf_config(lm: &Lm) -> serde_json::Value {
    let c = lm.decoder().config();
    let i = lm.info();
    let (arch, model_type) = if c.attn_bias {
        ("Qwen2ForCausalLM", "qwen2")
    } else {
        ("LlamaForCausalLM", "llama")
    };
    serde_json::json!({
        "architectures": [arch],
        "model_type": model_type,
        "vocab_size": c.vocab,
        "hidden_size": c.hidden,
        "intermediate_size": c.ffn,
        "num_hidden_layers": c.layers,
        "num_attention_heads": c.heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.head_dim(),
        "max_position_embeddings": c.context,
        "rms_norm_eps": c.rms_eps,
        "rope_theta": c.rope_theta,
        "tie_word_embeddings": c.tied,
        "hidden_act": "silu",
        "attention_bias": c.attn_bias,
        "mlp_bias": false,
        "bos_token_id": i.bos,
        "eos_token_id": i.eos,
        "pad_token_id": i.pad,
        "torch_dtype": "float32",
    })
}

/// Writes `lm` (LoRA adapters folded in) as a Hugging Face model directory that `transformers` and
/// [`load_dir`] read: `config.json`, `generation_config.json`, `model.safetensors`,
/// `tokenizer.json` and `tokenizer_config.json` with the chat template.
pub fn save_dir(lm: &Lm, dir: &Path) -> Result<()> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| LmError::Io { path: p, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let write = |name: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(io(&p))
    };
    let pretty = |v: &serde_json::Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    write("config.json", &pretty(&hf_config(lm)))?;
    let i = lm.info();
    write(
        "generation_config.json",
        &pretty(
            &serde_json::json!({"bos_token_id": i.bos, "eos_token_id": i.eos, "pad_token_id": i.pad}),
        ),
    )?;
    let tensors = lm.decoder().merged_tensors()?;
    let wp = dir.join("model.safetensors");
    candle_core::safetensors::save(&tensors, &wp).map_err(|e| LmError::Io {
        path: wp.clone(),
        source: std::io::Error::other(crate::candle_message(e)),
    })?;
    let tok = lm.tokenizer();
    let json = tok
        .to_string(true)
        .map_err(|e| LmError::Tokenizer(format!("writing tokenizer.json: {e}")))?;
    write("tokenizer.json", json.as_bytes())?;
    let name = |id: Option<u32>| id.and_then(|x| tok.id_to_token(x));
    write(
        "tokenizer_config.json",
        &pretty(&serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": name(i.bos),
            "eos_token": name(Some(i.eos)),
            "pad_token": name(i.pad),
            "add_bos_token": i.add_bos,
            "model_max_length": lm.decoder().config().context,
            "chat_template": lm.template().map(|t| t.source.clone()),
        })),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;
    use crate::testing::max_diff;
    use candle_core::{Device, Tensor};

    /// A tiny model with the given attention biases, weights sharpened so logits are not flat.
    fn tiny(dir: &Path, attn_bias: bool, tied: bool) -> Lm {
        let gguf = dir.join("tiny.gguf");
        testing::tiny_gguf(&gguf, 3).unwrap();
        let mut lm = Lm::load(&gguf).unwrap();
        let cfg = DecoderConfig {
            attn_bias,
            tied,
            ..testing::tiny_config()
        };
        let d = Decoder::random(cfg.clone(), 9, &Device::Cpu).unwrap();
        let d =
            Decoder::from_tensors(cfg, testing::scaled(&d, 5.0).unwrap(), &Device::Cpu).unwrap();
        lm.replace_decoder(d);
        lm
    }

    /// Written as a Hugging Face directory and read back: the same logits, tokens, template and
    /// special tokens, for a Llama-shaped and a Qwen2-shaped (biased) decoder.
    #[test]
    fn a_saved_directory_loads_back_with_the_same_logits_tokens_and_template() {
        for (bias, tied) in [(false, true), (true, false)] {
            let dir = tempfile::tempdir().unwrap();
            let lm = tiny(dir.path(), bias, tied);
            let out = dir.path().join("hf");
            save_dir(&lm, &out).unwrap();
            let back = Lm::load(&out).unwrap();
            assert_eq!(
                back.info().architecture,
                if bias { "qwen2" } else { "llama" }
            );
            assert_eq!(back.decoder().config(), lm.decoder().config());
            assert_eq!(
                (back.info().eos, back.info().bos),
                (lm.info().eos, lm.info().bos)
            );
            assert_eq!(
                back.template().map(|t| t.source.clone()),
                lm.template().map(|t| t.source.clone())
            );
            let text = "<|im_start|>user\nwhere is my parcel?<|im_end|>\n";
            assert_eq!(back.encode(text).unwrap(), lm.encode(text).unwrap());
            let ids = Tensor::new(&[[5u32, 80, 81, 82, 9, 10, 200]], &Device::Cpu).unwrap();
            let (a, b) = (
                lm.decoder().forward(&ids).unwrap(),
                back.decoder().forward(&ids).unwrap(),
            );
            assert_eq!(max_diff(&a, &b), 0.0);
        }
    }

    /// The Qwen2 path (query/key/value biases) against candle-transformers' Qwen2 on the same
    /// weights: the last-position logits of every prefix agree.
    #[test]
    fn qwen2_matches_candle_transformers_on_the_same_weights() {
        use candle_transformers::models::qwen2;
        let dir = tempfile::tempdir().unwrap();
        let lm = tiny(dir.path(), true, true);
        let c = lm.decoder().config().clone();
        let tensors = lm.decoder().tensors().unwrap();
        let vb =
            candle_nn::VarBuilder::from_tensors(tensors, candle_core::DType::F32, &Device::Cpu);
        let qc = qwen2::Config {
            vocab_size: c.vocab,
            hidden_size: c.hidden,
            intermediate_size: c.ffn,
            num_hidden_layers: c.layers,
            num_attention_heads: c.heads,
            num_key_value_heads: c.kv_heads,
            max_position_embeddings: c.context,
            sliding_window: c.context,
            max_window_layers: c.layers,
            tie_word_embeddings: c.tied,
            rope_theta: c.rope_theta,
            rms_norm_eps: c.rms_eps,
            use_sliding_window: false,
            hidden_act: candle_nn::Activation::Silu,
        };
        let mut reference = qwen2::ModelForCausalLM::new(&qc, vb).unwrap();
        let ids: Vec<u32> = (0..12).map(|i| (i * 37 + 5) % 259).collect();
        let full = lm
            .decoder()
            .forward(
                &Tensor::new(ids.as_slice(), &Device::Cpu)
                    .unwrap()
                    .unsqueeze(0)
                    .unwrap(),
            )
            .unwrap()
            .squeeze(0)
            .unwrap();
        for n in 1..=ids.len() {
            reference.clear_kv_cache();
            let x = Tensor::new(&ids[..n], &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap();
            let r = reference
                .forward(&x, 0)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .squeeze(0)
                .unwrap();
            let o = full.get(n - 1).unwrap();
            assert!(max_diff(&r, &o) < 1e-4, "prefix {n}: {}", max_diff(&r, &o));
        }
    }

    #[test]
    fn unsupported_configs_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let lm = tiny(dir.path(), false, true);
        let out = dir.path().join("hf");
        save_dir(&lm, &out).unwrap();
        let cfg_path = out.join("config.json");
        let mut v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
        v["model_type"] = "gpt_neox".into();
        std::fs::write(&cfg_path, v.to_string()).unwrap();
        let e = Lm::load(&out).err().unwrap().to_string();
        assert!(e.contains("gpt_neox") && e.contains("config.json"), "{e}");
        v["model_type"] = "llama".into();
        v["rope_scaling"] = serde_json::json!({"type": "linear", "factor": 2.0});
        std::fs::write(&cfg_path, v.to_string()).unwrap();
        let e = Lm::load(&out).err().unwrap().to_string();
        assert!(e.contains("rope_scaling"), "{e}");
    }
}
