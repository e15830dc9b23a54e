//! Benchmark driver for the `ngram` classifier: trains on a JSONL file ("text", "label"), evaluates on
//! another and prints one JSON object (accuracy, macro-F1, train seconds and prediction throughput as
//! min/median over `--reps`, single-thread latency p50/p95, chosen l2 and epochs).
//!
//! usage: ngram_bench --train F --test F [--threads N] [--reps K] [--config JSON]

use hone_model::metrics::{accuracy, argmax, macro_f1};
use hone_model::{NgramConfig, NgramModel};
use std::time::Instant;

fn load(path: &str) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{path}:{}: {e}", i + 1))?;
        let field = |k: &str| match &v[k] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Null => None,
            other => Some(other.to_string()),
        };
        match (field("text"), field("label")) {
            (Some(t), Some(l)) => out.push((t, l)),
            _ => return Err(format!("{path}:{}: needs \"text\" and \"label\"", i + 1)),
        }
    }
    Ok(out)
}

fn stats(xs: &[f64]) -> (f64, f64) {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    (s[0], s[s.len() / 2])
}

fn main() {
    if let Err(e) = run() {
        eprintln!("ngram_bench: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let train_path = arg("--train").ok_or("--train F is required")?;
    let test_path = arg("--test").ok_or("--test F is required")?;
    let threads: usize = arg("--threads")
        .map_or(Ok(0), |s| s.parse())
        .map_err(|e| format!("--threads: {e}"))?;
    let reps: usize = arg("--reps")
        .map_or(Ok(3), |s| s.parse())
        .map_err(|e| format!("--reps: {e}"))?;
    let mut cfg: NgramConfig = match arg("--config") {
        Some(j) => serde_json::from_str(&j).map_err(|e| format!("--config: {e}"))?,
        None => NgramConfig::default(),
    };
    cfg.threads = threads;
    let train = load(&train_path)?;
    let test = load(&test_path)?;
    let mut names: Vec<String> = train.iter().map(|r| r.1.clone()).collect();
    names.sort();
    names.dedup();
    let index = |l: &str| {
        names
            .binary_search_by(|n| n.as_str().cmp(l))
            .map_or(u32::MAX, |i| i as u32)
    };
    let tr_x: Vec<&str> = train.iter().map(|r| r.0.as_str()).collect();
    let tr_y: Vec<u32> = train.iter().map(|r| index(&r.1)).collect();
    let te_x: Vec<&str> = test.iter().map(|r| r.0.as_str()).collect();
    let te_y: Vec<u32> = test.iter().map(|r| index(&r.1)).collect();

    let (mut train_s, mut pred_tps) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let (mut model, report) = NgramModel::fit(&tr_x, &tr_y, &names, None, &cfg, &mut |_| {})
            .map_err(|e| e.to_string())?;
        train_s.push(t0.elapsed().as_secs_f64());
        model.set_threads(threads);
        // Repeat whole-test-set passes for at least 0.3 s so small test sets are not timed in a few ms.
        let t0 = Instant::now();
        let mut probs = model.predict_proba_batch(&te_x);
        let mut n_pred = te_x.len();
        while t0.elapsed().as_secs_f64() < 0.3 {
            probs = std::hint::black_box(model.predict_proba_batch(&te_x));
            n_pred += te_x.len();
        }
        pred_tps.push(n_pred as f64 / t0.elapsed().as_secs_f64());
        last = Some((model, report, probs));
    }
    let Some((model, report, probs)) = last else {
        return Err("no repetition ran".into());
    };
    let pred: Vec<u32> = probs.iter().map(|p| argmax(p) as u32).collect();
    let mut lat: Vec<f64> = Vec::new();
    for t in te_x.iter().take(1000) {
        let t0 = Instant::now();
        std::hint::black_box(model.predict_proba(t));
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
            .copied()
    };
    let (tmin, tmed) = stats(&train_s);
    let (pmin, pmed) = stats(&pred_tps);
    let out = serde_json::json!({
        "threads": threads,
        "reps": reps.max(1),
        "n_train": tr_x.len(),
        "n_test": te_x.len(),
        "accuracy": accuracy(&te_y, &pred),
        "macro_f1": macro_f1(&te_y, &pred),
        "train_seconds_min": tmin,
        "train_seconds_median": tmed,
        "train_seconds": train_s,
        "predict_texts_per_s_min": pmin,
        "predict_texts_per_s_median": pmed,
        "predict_texts_per_s": pred_tps,
        "latency_us_p50": pct(0.5),
        "latency_us_p95": pct(0.95),
        "chosen_l2": report.chosen_l2,
        "best_epoch": report.best_epoch,
        "best_dev_macro_f1": report.best_dev_macro_f1,
        "refit_epochs": report.refit_epochs,
        "selection_epochs": report.epochs.len(),
        "stopped_early": report.stopped_early,
        "n_features_nonzero": report.n_features_nonzero,
        "temperature": report.temperature,
        "fit_wall_seconds": report.wall_seconds,
        "config": model.config(),
    });
    println!("{out}");
    Ok(())
}
