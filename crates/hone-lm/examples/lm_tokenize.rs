//! Token ids of every text in a JSONL file (`{"id", "text"}`) with the tokenizer rebuilt from a GGUF
//! file's metadata, as JSONL `{"id", "ids"}` (bench/lm checks them against `transformers`).
//!
//! ```text
//! cargo run --release -p hone-lm --example lm_tokenize -- MODEL.gguf texts.jsonl > ids.jsonl
//! ```

use std::io::{BufRead, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(model), Some(texts)) = (args.next(), args.next()) else {
        return Err("usage: lm_tokenize MODEL.gguf texts.jsonl".into());
    };
    let tok = hone_lm::LmFile::open(std::path::Path::new(&model))?.tokenizer()?;
    let out = std::io::stdout();
    let mut out = out.lock();
    for line in std::io::BufReader::new(std::fs::File::open(&texts)?).lines() {
        let r: serde_json::Value = serde_json::from_str(&line?)?;
        let (Some(id), Some(text)) = (r["id"].as_str(), r["text"].as_str()) else {
            return Err(format!("{texts}: every line needs string fields id and text").into());
        };
        let ids = tok.encode(text, false).map_err(|e| e.to_string())?;
        writeln!(
            out,
            "{}",
            serde_json::json!({"id": id, "ids": ids.get_ids()})
        )?;
    }
    Ok(())
}
