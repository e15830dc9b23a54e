//! A GGUF file read once: its hyperparameters ([`LmInfo`]), the tokenizer rebuilt from its metadata
//! (BPE vocabulary and merges, control tokens, the named pre-tokenizer) and its chat template.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{Content, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, DecoderWrapper, PreTokenizerWrapper, Tokenizer};

use crate::{LmError, Result};

/// What a GGUF file says about its model.
#[derive(Debug, Clone, PartialEq)]
pub struct LmInfo {
    /// `general.architecture` (`llama`, `qwen2`, …).
    pub architecture: String,
    pub name: Option<String>,
    pub license: Option<String>,
    pub layers: usize,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub context: usize,
    pub rope_theta: f64,
    /// RMSNorm's epsilon (`<arch>.attention.layer_norm_rms_epsilon`, default 1e-5).
    pub rms_eps: f64,
    pub vocab: usize,
    pub bos: Option<u32>,
    pub eos: u32,
    pub pad: Option<u32>,
    /// Whether prompts start with the BOS token (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    /// The Jinja chat template (`tokenizer.chat_template`), if the file has one.
    pub chat_template: Option<String>,
}

/// An opened GGUF file: its metadata and tensor index (the weights are read when a model is built).
pub struct LmFile {
    pub path: PathBuf,
    pub info: LmInfo,
    pub(crate) content: Content,
}

fn format_err(path: &Path, what: impl Into<String>) -> LmError {
    LmError::Format {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

impl LmFile {
    /// Reads the header and metadata of the GGUF file at `path`.
    pub fn open(path: &Path) -> Result<LmFile> {
        let mut f = std::fs::File::open(path).map_err(|source| LmError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let content = Content::read(&mut f).map_err(|e| {
            format_err(
                path,
                format!("not a readable GGUF file: {}", crate::candle_message(e)),
            )
        })?;
        let info = info(path, &content.metadata)?;
        Ok(LmFile {
            path: path.to_path_buf(),
            info,
            content,
        })
    }

    /// The tokenizer the file describes (GGUF `gpt2`-type BPE), rebuilt from its metadata.
    pub fn tokenizer(&self) -> Result<Tokenizer> {
        tokenizer_from_metadata(&self.content.metadata)
            .map_err(|e| format_err(&self.path, format!("tokenizer: {e}")))
    }
}

fn get<'a>(path: &Path, md: &'a HashMap<String, Value>, key: &str) -> Result<&'a Value> {
    md.get(key)
        .ok_or_else(|| format_err(path, format!("metadata key `{key}` is missing")))
}

fn get_usize(path: &Path, md: &HashMap<String, Value>, key: &str) -> Result<usize> {
    let v = get(path, md, key)?;
    v.to_u64()
        .map(|x| x as usize)
        .or_else(|_| v.to_u32().map(|x| x as usize))
        .map_err(|_| format_err(path, format!("metadata key `{key}` is not an integer")))
}

fn opt_u32(md: &HashMap<String, Value>, key: &str) -> Option<u32> {
    md.get(key).and_then(|v| v.to_u32().ok())
}

fn opt_string(md: &HashMap<String, Value>, key: &str) -> Option<String> {
    md.get(key).and_then(|v| v.to_string().ok()).cloned()
}

fn info(path: &Path, md: &HashMap<String, Value>) -> Result<LmInfo> {
    let arch = opt_string(md, "general.architecture")
        .ok_or_else(|| format_err(path, "metadata key `general.architecture` is missing"))?;
    let key = |k: &str| format!("{arch}.{k}");
    let vocab = match md.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => get_usize(path, md, &key("vocab_size"))?,
    };
    Ok(LmInfo {
        name: opt_string(md, "general.name"),
        license: opt_string(md, "general.license"),
        layers: get_usize(path, md, &key("block_count"))?,
        hidden: get_usize(path, md, &key("embedding_length"))?,
        heads: get_usize(path, md, &key("attention.head_count"))?,
        kv_heads: get_usize(path, md, &key("attention.head_count_kv"))?,
        ffn: get_usize(path, md, &key("feed_forward_length"))?,
        context: get_usize(path, md, &key("context_length"))?,
        rope_theta: md
            .get(&key("rope.freq_base"))
            .and_then(|v| v.to_f32().ok())
            .map_or(10_000.0, f64::from),
        rms_eps: md
            .get(&key("attention.layer_norm_rms_epsilon"))
            .and_then(|v| v.to_f32().ok())
            .map_or(1e-5, f64::from),
        vocab,
        bos: opt_u32(md, "tokenizer.ggml.bos_token_id"),
        eos: opt_u32(md, "tokenizer.ggml.eos_token_id").ok_or_else(|| {
            format_err(
                path,
                "metadata key `tokenizer.ggml.eos_token_id` is missing",
            )
        })?,
        pad: opt_u32(md, "tokenizer.ggml.padding_token_id"),
        add_bos: md
            .get("tokenizer.ggml.add_bos_token")
            .and_then(|v| v.to_bool().ok())
            .unwrap_or(false),
        chat_template: opt_string(md, "tokenizer.chat_template"),
        architecture: arch,
    })
}

/// GGUF token types (llama.cpp's `llama_token_type`) that are special, never split by BPE.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// Builds the tokenizer a GGUF file's metadata describes. Supported: `tokenizer.ggml.model = "gpt2"`
/// (byte-level BPE) with the pre-tokenizers `default`, `gpt2` and `smollm` (digits one by one, then
/// byte-level).
pub fn tokenizer_from_metadata(
    md: &HashMap<String, Value>,
) -> std::result::Result<Tokenizer, String> {
    let model = md
        .get("tokenizer.ggml.model")
        .and_then(|v| v.to_string().ok())
        .ok_or("`tokenizer.ggml.model` is missing")?;
    if model != "gpt2" {
        return Err(format!(
            "tokenizer model `{model}` is not supported (only `gpt2`, byte-level BPE)"
        ));
    }
    let strings = |key: &str| -> std::result::Result<Vec<String>, String> {
        match md.get(key) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.to_string().cloned().map_err(|e| format!("`{key}`: {e}")))
                .collect(),
            _ => Err(format!("`{key}` is missing or not a list")),
        }
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;
    let types: Vec<i32> = match md.get("tokenizer.ggml.token_type") {
        Some(Value::Array(a)) => a.iter().map(|v| v.to_i32().unwrap_or(1)).collect(),
        _ => vec![1; tokens.len()],
    };
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let merges: Vec<(String, String)> = merges
        .iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| format!("merge `{m}` is not two tokens"))
        })
        .collect::<std::result::Result<_, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| e.to_string())?;
    let pre = md
        .get("tokenizer.ggml.pre")
        .and_then(|v| v.to_string().ok())
        .map_or("default", String::as_str);
    let byte_level = ByteLevel::new(false, true, true);
    let pre_tokenizer: PreTokenizerWrapper = match pre {
        "default" | "gpt2" => byte_level.into(),
        // Digits one by one, then GPT-2's byte-level split (SmolLM's tokenizer.json).
        "smollm" => Sequence::new(vec![Digits::new(true).into(), byte_level.into()]).into(),
        other => return Err(format!("pre-tokenizer `{other}` is not supported")),
    };
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tokenizer));
    tok.with_decoder(Some(DecoderWrapper::from(ByteLevelDecoder::default())));
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, t)| matches!(**t, CONTROL | USER_DEFINED))
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(special).map_err(|e| e.to_string())?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(xs: &[&str]) -> Value {
        Value::Array(xs.iter().map(|s| Value::String(s.to_string())).collect())
    }

    /// A byte-level BPE of a few tokens: "Ġ" is the byte-level form of a space.
    fn tiny(pre: &str) -> HashMap<String, Value> {
        let tokens = [
            "<|endoftext|>",
            "<|im_start|>",
            "a",
            "b",
            "ab",
            "Ġ",
            "Ġab",
            "1",
            "2",
            "12",
        ];
        let mut md = HashMap::new();
        md.insert("tokenizer.ggml.model".into(), Value::String("gpt2".into()));
        md.insert("tokenizer.ggml.pre".into(), Value::String(pre.into()));
        md.insert("tokenizer.ggml.tokens".into(), strings(&tokens));
        md.insert(
            "tokenizer.ggml.token_type".into(),
            Value::Array(
                tokens
                    .iter()
                    .map(|t| Value::I32(if t.starts_with("<|") { 3 } else { 1 }))
                    .collect(),
            ),
        );
        md.insert(
            "tokenizer.ggml.merges".into(),
            strings(&["a b", "Ġ ab", "1 2"]),
        );
        md
    }

    #[test]
    fn the_tokenizer_is_rebuilt_from_metadata_with_digits_split_and_control_tokens_whole() {
        let tok = tokenizer_from_metadata(&tiny("smollm")).unwrap();
        let enc = tok.encode("<|im_start|>ab ab12", false).unwrap();
        // The control token stays whole; "12" is two digits under `smollm` although a merge exists.
        assert_eq!(enc.get_ids(), &[1, 4, 6, 7, 8]);
        assert_eq!(
            tok.decode(enc.get_ids(), false).unwrap(),
            "<|im_start|>ab ab12"
        );
        assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), "ab ab12");
        // GPT-2's own pre-tokenizer keeps digit runs together, so the merge applies.
        let gpt2 = tokenizer_from_metadata(&tiny("gpt2")).unwrap();
        assert_eq!(gpt2.encode("ab12", false).unwrap().get_ids(), &[4, 9]);
    }

    #[test]
    fn unsupported_tokenizers_are_refused_by_name() {
        let mut md = tiny("smollm");
        md.insert("tokenizer.ggml.model".into(), Value::String("llama".into()));
        let e = tokenizer_from_metadata(&md).unwrap_err();
        assert!(e.contains("`llama`"), "{e}");
        let e = tokenizer_from_metadata(&tiny("falcon")).unwrap_err();
        assert!(e.contains("`falcon`"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_gguf_is_a_format_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.gguf");
        std::fs::write(&p, b"not a model").unwrap();
        let e = LmFile::open(&p).err().unwrap();
        assert!(matches!(e, LmError::Format { .. }), "{e}");
        assert!(e.to_string().contains("model.gguf"), "{e}");
        let missing = LmFile::open(&dir.path().join("absent.gguf")).err().unwrap();
        assert!(matches!(missing, LmError::Io { .. }), "{missing}");
    }
}
