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

/// candle-transformers' quantized Llama, every tensor dequantized to f32 first (its Q4_1 CPU
/// matmul gives wrong logits on this file), fed `ids` at once: the logits of the last position.
fn reference_logits(path: &std::path::Path, ids: &[u32]) -> Vec<f32> {
    use candle_core::quantized::gguf_file::{self, Content};
    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};
    let cpu = Device::Cpu;
    let mut f = std::fs::File::open(path).unwrap();
    let content = Content::read(&mut f).unwrap();
    let mut tensors = Vec::new();
    for name in content.tensor_infos.keys() {
        let t = content
            .tensor(&mut f, name, &cpu)
            .unwrap()
            .dequantize(&cpu)
            .unwrap();
        tensors.push((name.clone(), QTensor::quantize(&t, GgmlDType::F32).unwrap()));
    }
    let md: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, q)| (n.as_str(), q)).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &md, &refs).unwrap();
    drop(tensors);
    buf.set_position(0);
    let content = Content::read(&mut buf).unwrap();
    let mut model = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content, &mut buf, &cpu,
    )
    .unwrap();
    let input = Tensor::new(ids, &cpu).unwrap().unsqueeze(0).unwrap();
    model
        .forward(&input, 0)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap()
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
    // hone's decoder (Q/K rows restored to the Hugging Face order, half-split rotary) against
    // candle-transformers' quantized Llama on the same weights dequantized to f32.
    let reference = reference_logits(&path, &ids);
    let diff = reference
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-3, "max |Δlogit| = {diff}");

    // Batched prompts of different lengths give each prompt's own greedy answer.
    let other = lm
        .chat_prompt(&[Message::new("user", "Name a colour.")])
        .unwrap();
    let cfg = GenerateConfig {
        max_new_tokens: 16,
        ..Default::default()
    };
    let alone: Vec<Vec<u32>> = [&prompt, &other]
        .iter()
        .map(|p| lm.generate(p, &cfg).unwrap().tokens)
        .collect();
    let batch = lm
        .generate_batch(
            &[lm.encode(&prompt).unwrap(), lm.encode(&other).unwrap()],
            &[0, 0],
            &cfg,
        )
        .unwrap();
    assert_eq!(batch[0].tokens, alone[0]);
    assert_eq!(batch[1].tokens, alone[1]);

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
