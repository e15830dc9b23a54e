//! Text generation with a KV cache: greedy or seeded sampling (temperature, top-k, top-p), stopping
//! at the end-of-sequence token, at a stop string or after `max_new_tokens`.

use std::path::Path;

use candle_core::quantized::gguf_file::{self, Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;
use tokenizers::Tokenizer;

use crate::chat::{ChatTemplate, Message};
use crate::gguf::{LmFile, LmInfo};
use crate::{LmError, Result};

/// How to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    pub max_new_tokens: usize,
    /// 0 is greedy (the most likely token every step); above 0, seeded sampling.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
    /// Generation stops at the first of these strings, which is not part of the answer.
    pub stop: Vec<String>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_new_tokens: 256,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
            stop: Vec::new(),
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced its end-of-sequence token.
    Eos,
    /// One of the stop strings appeared.
    Stop(String),
    /// `max_new_tokens` were generated.
    Length,
}

/// A completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    pub text: String,
    /// The generated token ids (without the prompt; the end-of-sequence token excluded).
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    pub stop: StopReason,
}

/// The file's tensors dequantized to f32, as an in-memory GGUF file. candle 0.11's quantized CPU
/// matmul gives wrong logits on SmolLM2's Q4_1 blocks (greedy decoding answers "What is the capital
/// of France?" with garbled French), while the same weights dequantized answer "The capital of
/// France is Paris." and stop; training starts from f32 weights anyway (DESIGN §8b).
fn dequantized(
    path: &Path,
    content: &Content,
    reader: &mut std::fs::File,
) -> Result<(Content, std::io::Cursor<Vec<u8>>)> {
    let cpu = Device::Cpu;
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors = Vec::with_capacity(names.len());
    for n in names {
        let t = content
            .tensor(reader, n, &cpu)
            .map_err(|e| LmError::Format {
                path: path.to_path_buf(),
                what: format!(
                    "tensor `{n}` cannot be read (a truncated or damaged file?): {}",
                    crate::candle_message(e)
                ),
            })?
            .dequantize(&cpu)?;
        tensors.push((n.as_str(), QTensor::quantize(&t, GgmlDType::F32)?));
    }
    let metadata: Vec<(&str, &Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (*n, q)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &metadata, &refs)?;
    drop(tensors);
    buf.set_position(0);
    let content = Content::read(&mut buf)?;
    Ok((content, buf))
}

/// A causal language model loaded for inference (weights in f32), with its tokenizer and chat
/// template.
pub struct Lm {
    model: ModelWeights,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    info: LmInfo,
    device: Device,
}

impl Lm {
    /// Loads the GGUF file at `path` on the CPU, its weights dequantized to f32. Architectures:
    /// `llama` (Llama, SmolLM, TinyLlama, Mistral).
    pub fn load(path: &Path) -> Result<Lm> {
        let file = LmFile::open(path)?;
        if file.info.architecture != "llama" {
            return Err(LmError::Format {
                path: path.to_path_buf(),
                what: format!(
                    "architecture `{}` is not supported yet (supported: llama)",
                    file.info.architecture
                ),
            });
        }
        let tokenizer = file.tokenizer()?;
        let token = |id: Option<u32>| {
            id.and_then(|i| tokenizer.id_to_token(i))
                .unwrap_or_default()
        };
        let template = match &file.info.chat_template {
            Some(src) => Some(ChatTemplate::new(
                src,
                &token(file.info.bos),
                &token(Some(file.info.eos)),
            )?),
            None => None,
        };
        let device = Device::Cpu;
        let mut reader = std::fs::File::open(path).map_err(|source| LmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let LmFile { info, content, .. } = file;
        let (content, mut weights) = dequantized(path, &content, &mut reader)?;
        let model = ModelWeights::from_gguf(content, &mut weights, &device)?;
        Ok(Lm {
            model,
            tokenizer,
            template,
            info,
            device,
        })
    }

    pub fn info(&self) -> &LmInfo {
        &self.info
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The prompt the model's chat template builds for `messages`, ending where the answer starts.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<String> {
        self.template
            .as_ref()
            .ok_or_else(|| LmError::Template("the model file has no chat template".into()))?
            .render(messages, true)
    }

    /// Token ids of `text` as the model reads a prompt (special tokens in it recognised; BOS first
    /// when the model adds one).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| LmError::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.info.add_bos
            && let Some(b) = self.info.bos
        {
            ids.push(b);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| LmError::Tokenizer(e.to_string()))
    }

    /// Feeds `ids` at position `pos` of the sequence (`pos == 0` starts a new one, clearing the KV
    /// cache) and returns the next-token logits.
    pub fn forward(&mut self, ids: &[u32], pos: usize) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(LmError::Tokenizer("no tokens to feed".into()));
        }
        if pos == 0 {
            self.model.clear_kv_cache();
        }
        let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        Ok(self
            .model
            .forward(&input, pos)?
            .squeeze(0)?
            .to_vec1::<f32>()?)
    }

    /// Continues `prompt` (already rendered: see [`Lm::chat_prompt`]).
    pub fn generate(&mut self, prompt: &str, cfg: &GenerateConfig) -> Result<Generation> {
        let prompt_ids = self.encode(prompt)?;
        self.generate_ids(&prompt_ids, cfg)
    }

    /// Continues the token ids `prompt_ids`.
    pub fn generate_ids(&mut self, prompt_ids: &[u32], cfg: &GenerateConfig) -> Result<Generation> {
        if prompt_ids.is_empty() {
            return Err(LmError::Tokenizer("the prompt has no tokens".into()));
        }
        let budget = prompt_ids.len() + cfg.max_new_tokens;
        if budget > self.info.context {
            return Err(LmError::Model(format!(
                "the prompt ({} tokens) plus max_new_tokens ({}) exceed the model's context ({})",
                prompt_ids.len(),
                cfg.max_new_tokens,
                self.info.context
            )));
        }
        let sampling = if cfg.temperature <= 0.0 {
            Sampling::ArgMax
        } else {
            let temperature = cfg.temperature;
            match (cfg.top_k, cfg.top_p) {
                (None, None) => Sampling::All { temperature },
                (Some(k), None) => Sampling::TopK { k, temperature },
                (None, Some(p)) => Sampling::TopP { p, temperature },
                (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
            }
        };
        let mut sampler = LogitsProcessor::from_sampling(cfg.seed, sampling);
        self.model.clear_kv_cache();
        let mut out: Vec<u32> = Vec::new();
        let mut input = Tensor::new(prompt_ids, &self.device)?.unsqueeze(0)?;
        let mut pos = 0;
        let mut stop = StopReason::Length;
        let mut text = String::new();
        for _ in 0..cfg.max_new_tokens {
            let logits = self.model.forward(&input, pos)?.squeeze(0)?;
            pos += input.dim(1)?;
            let next = sampler.sample(&logits)?;
            if next == self.info.eos {
                stop = StopReason::Eos;
                break;
            }
            out.push(next);
            text = self.decode(&out)?;
            if let Some((at, s)) = cfg
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
                .min_by_key(|(at, _)| *at)
            {
                stop = StopReason::Stop(s.clone());
                text.truncate(at);
                break;
            }
            input = Tensor::new(&[next], &self.device)?.unsqueeze(0)?;
        }
        Ok(Generation {
            text,
            tokens: out,
            prompt_tokens: prompt_ids.len(),
            stop,
        })
    }
}
