//! SmolLM2-135M-Instruct from its GGUF file (`scripts/get-smollm2`): metadata, the rebuilt tokenizer,
//! the chat template and greedy generation. Skips when the file is absent, unless
//! `HONE_REQUIRE_SMOLLM2=1` (CI fetches it).

use std::path::PathBuf;

use hone_lm::{GenerateConfig, Lm, Message, StopReason};

fn model_path() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if p.is_file() {
        return Some(p);
    }
    if std::env::var("HONE_REQUIRE_SMOLLM2").is_ok_and(|v| v == "1") {
        panic!("{} is missing (run scripts/get-smollm2)", p.display());
    }
    eprintln!(
        "skipping: {} is missing (run scripts/get-smollm2)",
        p.display()
    );
    None
}

#[test]
fn smollm2_loads_tokenizes_and_answers_the_capital_of_france() {
    let Some(path) = model_path() else { return };
    let mut lm = Lm::load(&path).unwrap();
    let i = lm.info().clone();
    assert_eq!(
        (
            i.architecture.as_str(),
            i.layers,
            i.hidden,
            i.heads,
            i.kv_heads,
            i.ffn
        ),
        ("llama", 30, 576, 9, 3, 1536)
    );
    assert_eq!(
        (i.vocab, i.bos, i.eos, i.pad, i.add_bos),
        (49152, Some(1), 2, Some(2), false)
    );
    assert_eq!(i.context, 8192);

    // Digits one by one; the chat markers are single control tokens; decoding gives the text back.
    let ids = lm.encode("Order 1234 arrived.").unwrap();
    let pieces: Vec<String> = ids
        .iter()
        .map(|&t| lm.tokenizer().id_to_token(t).unwrap())
        .collect();
    assert!(
        pieces
            .windows(4)
            .any(|w| w == ["Ġ", "1", "2", "3"] || w == ["1", "2", "3", "4"]),
        "{pieces:?}"
    );
    assert_eq!(lm.encode("<|im_start|>").unwrap(), vec![1]);

    let prompt = lm
        .chat_prompt(&[Message::new("user", "What is the capital of France?")])
        .unwrap();
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt:?}");
    let g = lm
        .generate(
            &prompt,
            &GenerateConfig {
                max_new_tokens: 24,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(g.text.contains("Paris"), "{g:?}");
    // The logits of a fresh forward pass pick the same first token.
    let ids = lm.encode(&prompt).unwrap();
    let logits = lm.forward(&ids, 0).unwrap();
    assert_eq!(logits.len(), 49152);
    let argmax = (0..logits.len())
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap();
    assert_eq!(argmax as u32, g.tokens[0]);

    // Stop strings end generation and are not part of the answer; seeded sampling repeats itself.
    let stopped = lm
        .generate(
            &prompt,
            &GenerateConfig {
                max_new_tokens: 24,
                stop: vec!["Paris".into()],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(stopped.stop, StopReason::Stop("Paris".into()));
    assert!(!stopped.text.contains("Paris") && g.text.starts_with(&stopped.text));
    let mut sampled = |seed| {
        let cfg = GenerateConfig {
            max_new_tokens: 12,
            temperature: 0.8,
            top_p: Some(0.9),
            seed,
            ..Default::default()
        };
        lm.generate(&prompt, &cfg).unwrap().tokens
    };
    let (a, b) = (sampled(7), sampled(7));
    assert_eq!(a, b);

    // A truncated copy is a format error naming the file and the tensor, without a backtrace.
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.gguf");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&cut, &bytes[..5_000_000]).unwrap();
    let e = Lm::load(&cut).err().unwrap().to_string();
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
    assert!(!e.contains("backtrace") && !e.contains("at /"), "{e}");
}
