//! Pre-training a small decoder from scratch: a byte-level BPE tokenizer trained on the project's own
//! texts (the `tokenizers` crate's trainer), a fresh decoder of a given shape, and the plain prompt
//! format such a model reads (`prompt`, a line break, the answer, EOS; no chat turns).

use candle_core::Device;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, DecoderWrapper, Tokenizer};

use crate::decoder::{Decoder, DecoderConfig};
use crate::generate::Lm;
use crate::gguf::LmInfo;
use crate::{LmError, Result};

/// The special tokens of a pre-trained tokenizer, ids 0, 1, 2 (BOS `<|im_start|>`, EOS = pad
/// `<|im_end|>`, as SmolLM2).
pub const SPECIAL: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// The prompt format of a pre-trained model: the prompt and a line break; the answer follows and
/// ends with EOS. A template like any other, so training, evaluation and prediction share it.
pub const PLAIN_TEMPLATE: &str = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}\n{% elif m['role'] == 'assistant' %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}";

/// Trains a byte-level BPE tokenizer of at most `vocab` tokens on `texts` (merges seen at least
/// twice), with [`SPECIAL`] first.
pub fn train_tokenizer<S: AsRef<str> + Sync>(texts: &[S], vocab: usize) -> Result<Tokenizer> {
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(DecoderWrapper::from(ByteLevelDecoder::default())));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(SPECIAL.iter().map(|s| AddedToken::from(*s, true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tok.train(&mut trainer, texts.iter().map(|t| t.as_ref()))
        .map_err(|e| LmError::Tokenizer(format!("training the tokenizer: {e}")))?;
    for (i, s) in SPECIAL.iter().enumerate() {
        if tok.token_to_id(s) != Some(i as u32) {
            return Err(LmError::Tokenizer(format!(
                "the trained tokenizer put `{s}` at {:?}, not {i}",
                tok.token_to_id(s)
            )));
        }
    }
    Ok(tok)
}

/// The metadata of a model hone pre-trained.
pub fn info(cfg: &DecoderConfig) -> LmInfo {
    LmInfo {
        architecture: "llama".into(),
        name: Some("hone pre-trained decoder".into()),
        license: None,
        layers: cfg.layers,
        hidden: cfg.hidden,
        heads: cfg.heads,
        kv_heads: cfg.kv_heads,
        ffn: cfg.ffn,
        context: cfg.context,
        rope_theta: cfg.rope_theta,
        rms_eps: cfg.rms_eps,
        vocab: cfg.vocab,
        bos: Some(1),
        eos: 2,
        pad: Some(2),
        add_bos: false,
        chat_template: Some(PLAIN_TEMPLATE.into()),
    }
}

/// A model from its parts: a decoder, the tokenizer it reads and the plain template.
pub fn assemble(decoder: Decoder, tokenizer: Tokenizer) -> Result<Lm> {
    if tokenizer.get_vocab_size(true) > decoder.config().vocab {
        return Err(LmError::Model(format!(
            "the tokenizer has {} tokens, the decoder {}",
            tokenizer.get_vocab_size(true),
            decoder.config().vocab
        )));
    }
    let info = info(decoder.config());
    let mut lm = Lm::from_parts(decoder, tokenizer, None, info);
    lm.set_template_source(PLAIN_TEMPLATE)?;
    Ok(lm)
}

/// A fresh model of shape `cfg` (its `vocab` is the tokenizer's size) with seeded random weights.
pub fn fresh(mut cfg: DecoderConfig, tokenizer: Tokenizer, seed: u64) -> Result<Lm> {
    cfg.vocab = tokenizer.get_vocab_size(true);
    let d = Decoder::random(cfg, seed, &Device::Cpu)?;
    assemble(d, tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sft::{self, SftConfig};
    use crate::{GenerateConfig, Message, StopReason};

    #[test]
    fn a_tokenizer_trained_on_the_texts_round_trips_and_a_fresh_decoder_learns_them() {
        let texts: Vec<String> = (0..40)
            .map(|i| format!("order {i} ships on monday\nyour order is on its way"))
            .collect();
        let tok = train_tokenizer(&texts, 300).unwrap();
        let enc = tok.encode("your order is on its way", false).unwrap();
        assert!(
            enc.get_ids().len() < 10,
            "merges learnt: {:?}",
            enc.get_tokens()
        );
        assert_eq!(
            tok.decode(enc.get_ids(), false).unwrap(),
            "your order is on its way"
        );
        assert_eq!(tok.encode("<|im_end|>", false).unwrap().get_ids(), [2]);
        let cfg = DecoderConfig {
            vocab: 0,
            hidden: 32,
            ffn: 64,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            rope_theta: 10_000.0,
            rms_eps: 1e-5,
            tied: true,
            context: 128,
            attn_bias: false,
        };
        let mut lm = fresh(cfg, tok, 3).unwrap();
        let ex = sft::encode_chat(
            &lm,
            "x",
            &sft::pair_messages(None, "where is my order", "your order is on its way"),
            64,
        )
        .unwrap();
        assert_eq!(
            sft::show(&lm, &ex.example).unwrap(),
            "where is my order\n[[your order is on its way<|im_end|>]]"
        );
        let log = sft::train(
            &mut lm,
            &[ex.example],
            &SftConfig {
                epochs: 80,
                lr: 1e-2,
                batch_size: 1,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
        assert!(log.last().unwrap().loss < 0.1, "{:?}", log.last());
        let prompt = lm
            .chat_prompt(&[Message::new("user", "where is my order")])
            .unwrap();
        assert_eq!(prompt, "where is my order\n");
        let g = lm
            .generate(
                &prompt,
                &GenerateConfig {
                    max_new_tokens: 20,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(
            (g.text.as_str(), g.stop),
            ("your order is on its way", StopReason::Eos)
        );
    }
}
