//! Asks a local chat model one question (greedy) and prints the answer with tokens/s.
//!
//! ```text
//! scripts/get-smollm2
//! cargo run --release -p hone-lm --example lm_chat -- models/SmolLM2-135M-Instruct.Q4_1.gguf "What is the capital of France?"
//! ```

use std::time::Instant;

use hone_lm::{GenerateConfig, Lm, Message};

fn main() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // As the `hone` binary does: candle recounts cores from /proc/cpuinfo on every matmul.
        let n = hone_neural::default_threads();
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
    }
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: lm_chat MODEL.gguf QUESTION")?;
    let question = args.next().ok_or("usage: lm_chat MODEL.gguf QUESTION")?;
    let t = Instant::now();
    let mut lm = Lm::load(std::path::Path::new(&path))?;
    eprintln!("loaded in {:.2} s", t.elapsed().as_secs_f64());
    let prompt = lm.chat_prompt(&[Message::new("user", &question)])?;
    let t = Instant::now();
    let g = lm.generate(&prompt, &GenerateConfig::default())?;
    let secs = t.elapsed().as_secs_f64();
    println!("{}", g.text);
    eprintln!(
        "{} prompt tokens, {} generated ({:?}) in {secs:.2} s: {:.1} tokens/s",
        g.prompt_tokens,
        g.tokens.len(),
        g.stop,
        g.tokens.len() as f64 / secs
    );
    Ok(())
}
