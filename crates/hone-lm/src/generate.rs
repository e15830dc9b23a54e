//! Text generation with a KV cache: greedy or seeded sampling (temperature, top-k, top-p), stopping
//! at the end-of-sequence token, at a stop string or after `max_new_tokens`.

use std::path::Path;

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use tokenizers::Tokenizer;

use crate::chat::{ChatTemplate, Message};
use crate::decoder::{Decoder, KvCache};
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

/// A causal language model loaded for inference (hone's [`Decoder`], weights in f32), with its
/// tokenizer and chat template. candle 0.11's quantized CPU matmul gives wrong logits on SmolLM2's
/// Q4_1 blocks (greedy decoding answers "What is the capital of France?" with garbled French), so
/// weights are dequantized on load; training needs f32 weights anyway (DESIGN §8b).
pub struct Lm {
    model: Decoder,
    cache: KvCache,
    tokenizer: Tokenizer,
    template: Option<ChatTemplate>,
    info: LmInfo,
    device: Device,
}

impl Lm {
    /// Loads the GGUF file at `path` on the CPU, its weights dequantized to f32 (architecture
    /// `llama`: Llama, SmolLM, TinyLlama, Mistral), or the Hugging Face directory at `path`
    /// ([`crate::hf::load_dir`]: Llama, Mistral, Qwen2).
    pub fn load(path: &Path) -> Result<Lm> {
        if path.is_dir() && crate::hf::is_hf_dir(path) {
            return crate::hf::load_dir(path);
        }
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
        let model = Decoder::from_gguf(path, &file.content, &file.info)?;
        let source = file.info.chat_template.clone();
        let mut lm = Lm::from_parts(model, tokenizer, None, file.info);
        if let Some(src) = source {
            lm.set_template_source(&src)?;
        }
        Ok(lm)
    }

    /// A model from its parts (a decoder hone trained, its tokenizer, template and metadata).
    pub fn from_parts(
        model: Decoder,
        tokenizer: Tokenizer,
        template: Option<ChatTemplate>,
        info: LmInfo,
    ) -> Lm {
        Lm {
            device: model.device().clone(),
            model,
            cache: KvCache::new(),
            tokenizer,
            template,
            info,
        }
    }

    pub fn info(&self) -> &LmInfo {
        &self.info
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Whether `other` tokenizes text into the same ids (the same vocabulary, added tokens included,
    /// and the same output size): then one model's token distributions can teach the other.
    pub fn shares_tokenizer(&self, other: &Lm) -> bool {
        self.decoder().config().vocab == other.decoder().config().vocab
            && self.tokenizer().get_vocab(true) == other.tokenizer().get_vocab(true)
    }

    /// The chat template, if the model has one.
    pub fn template(&self) -> Option<&ChatTemplate> {
        self.template.as_ref()
    }

    /// Compiles `source` as the chat template, its `bos_token` and `eos_token` this model's (a run
    /// renders with the template it stored, a project may bring its own).
    pub fn set_template_source(&mut self, source: &str) -> Result<()> {
        let name = |id: Option<u32>| {
            id.and_then(|i| self.tokenizer.id_to_token(i))
                .unwrap_or_default()
        };
        let template = ChatTemplate::new(source, &name(self.info.bos), &name(Some(self.info.eos)))?;
        self.template = Some(template);
        Ok(())
    }

    /// The decoder (its weights train in place).
    pub fn decoder(&self) -> &Decoder {
        &self.model
    }

    /// Replaces the weights (a fine-tuned copy of the same shape and tokenizer).
    pub fn replace_decoder(&mut self, decoder: Decoder) {
        self.model = decoder;
        self.cache = KvCache::new();
    }

    /// The decoder, to add or load LoRA adapters.
    pub fn decoder_mut(&mut self) -> &mut Decoder {
        &mut self.model
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
            self.cache = KvCache::new();
        }
        if pos != self.cache.len() {
            return Err(LmError::Model(format!(
                "position {pos} does not follow the {} tokens fed so far",
                self.cache.len()
            )));
        }
        let input = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        Ok(self
            .model
            .forward_cached(&input, &[0], &mut self.cache)?
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
        let mut out = self.generate_batch(&[prompt_ids.to_vec()], &[cfg.seed], cfg)?;
        out.pop()
            .ok_or_else(|| LmError::Model("no generation".into()))
    }

    /// Continues several prompts at once (left-padded to the longest, one KV cache). Row `i` samples
    /// with `seeds[i]`, so a prompt's completion does not depend on what it is batched with.
    pub fn generate_batch(
        &mut self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        cfg: &GenerateConfig,
    ) -> Result<Vec<Generation>> {
        self.generate_batch_with(prompts, seeds, cfg, &mut |_, _| {})
    }

    /// [`Lm::generate_batch`], calling `on_token(row, token)` as each answer token is sampled (the
    /// end-of-sequence token excluded): what a streaming server sends from.
    pub fn generate_batch_with(
        &mut self,
        prompts: &[Vec<u32>],
        seeds: &[u64],
        cfg: &GenerateConfig,
        on_token: &mut dyn FnMut(usize, u32),
    ) -> Result<Vec<Generation>> {
        if prompts.len() != seeds.len() {
            return Err(LmError::Model(format!(
                "{} prompts with {} seeds",
                prompts.len(),
                seeds.len()
            )));
        }
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        if prompts.iter().any(Vec::is_empty) {
            return Err(LmError::Tokenizer("a prompt has no tokens".into()));
        }
        let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
        if longest + cfg.max_new_tokens > self.info.context {
            return Err(LmError::Context(format!(
                "the prompt ({longest} tokens) plus max_new_tokens ({}) exceed the model's context ({})",
                cfg.max_new_tokens, self.info.context
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
        let n = prompts.len();
        let mut samplers: Vec<LogitsProcessor> = seeds
            .iter()
            .map(|&s| LogitsProcessor::from_sampling(s, sampling.clone()))
            .collect();
        let pad_id = self.info.pad.unwrap_or(self.info.eos);
        let pads: Vec<usize> = prompts.iter().map(|p| longest - p.len()).collect();
        let mut flat = Vec::with_capacity(n * longest);
        for (p, &k) in prompts.iter().zip(&pads) {
            flat.extend(std::iter::repeat_n(pad_id, k));
            flat.extend_from_slice(p);
        }
        self.cache = KvCache::new();
        let mut input = Tensor::from_vec(flat, (n, longest), &self.device)?;
        let mut outs: Vec<Vec<u32>> = vec![Vec::new(); n];
        let mut texts = vec![String::new(); n];
        let mut stops: Vec<Option<StopReason>> = vec![None; n];
        for _ in 0..cfg.max_new_tokens {
            let logits = self.model.forward_cached(&input, &pads, &mut self.cache)?;
            let mut next = Vec::with_capacity(n);
            for i in 0..n {
                if stops[i].is_some() {
                    next.push(pad_id);
                    continue;
                }
                let t = samplers[i].sample(&logits.get(i)?)?;
                next.push(t);
                if t == self.info.eos {
                    stops[i] = Some(StopReason::Eos);
                    continue;
                }
                outs[i].push(t);
                on_token(i, t);
                if cfg.stop.is_empty() {
                    // Decoded once at the end: without stop strings nothing needs the text now.
                    continue;
                }
                let text = self.decode(&outs[i])?;
                if let Some((at, s)) = cfg
                    .stop
                    .iter()
                    .filter_map(|s| text.find(s.as_str()).map(|at| (at, s)))
                    .min_by_key(|(at, _)| *at)
                {
                    stops[i] = Some(StopReason::Stop(s.clone()));
                    texts[i] = text[..at].to_string();
                } else {
                    texts[i] = text;
                }
            }
            if stops.iter().all(Option::is_some) {
                break;
            }
            input = Tensor::from_vec(next, (n, 1), &self.device)?;
        }
        if cfg.stop.is_empty() {
            for (t, o) in texts.iter_mut().zip(&outs) {
                *t = self.decode(o)?;
            }
        }
        Ok(outs
            .into_iter()
            .zip(texts)
            .zip(stops)
            .zip(prompts)
            .map(|(((tokens, text), stop), p)| Generation {
                text,
                tokens,
                prompt_tokens: p.len(),
                stop: stop.unwrap_or(StopReason::Length),
            })
            .collect())
    }
}
