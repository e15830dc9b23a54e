//! Benchmark driver for the poisoning scan: inserts a trigger word into a seeded share of the training
//! texts (at a random word position) and relabels them to one seeded target label, trains hone's `ngram`
//! model, measures clean test accuracy and attack success rate (ASR: share of non-target test texts with
//! the trigger inserted that are predicted as the target), then removes the scan's suspects, retrains and
//! measures again. Also scans the clean training set. Prints one JSON object.
//!
//! usage: poison_bench --train F --test F [--seeds 1,2,3] [--rate 0.01] [--trigger cf] [--threads N]
//!        [--config JSON (PoisonConfig)] [--dump DIR (poisoned train/test + suspects for a peer)]
//!        [--diag (candidate terms to stderr)]

use hone_core::rng::SeededRng;
use hone_defend::poison::{PoisonConfig, scan, spectral_separations, trigger_candidates};
use hone_model::metrics::argmax;
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
        match (v["text"].as_str(), v["label"].as_str()) {
            (Some(t), Some(l)) => out.push((t.to_string(), l.to_string())),
            _ => return Err(format!("{path}:{}: needs \"text\" and \"label\"", i + 1)),
        }
    }
    Ok(out)
}

fn insert(text: &str, word: &str, rng: &mut SeededRng) -> String {
    let mut w: Vec<&str> = text.split_whitespace().collect();
    let at = rng.below_mod(w.len() + 1);
    w.insert(at, word);
    w.join(" ")
}

struct Eval {
    accuracy: f64,
    asr: f64,
    train_s: f64,
}

fn train_eval(
    x: &[&str],
    y: &[u32],
    names: &[String],
    cfg: &NgramConfig,
    test: (&[&str], &[u32]),
    triggered: &[&str],
    target: u32,
) -> Result<Eval, String> {
    let t0 = Instant::now();
    let (model, _) =
        NgramModel::fit(x, y, names, None, cfg, &mut |_| {}).map_err(|e| e.to_string())?;
    let train_s = t0.elapsed().as_secs_f64();
    let pred = |xs: &[&str]| -> Vec<u32> {
        model
            .predict_proba_batch(xs)
            .iter()
            .map(|p| argmax(p) as u32)
            .collect()
    };
    let p = pred(test.0);
    let accuracy =
        p.iter().zip(test.1).filter(|(a, b)| a == b).count() as f64 / test.1.len().max(1) as f64;
    let pt = pred(triggered);
    let asr = pt.iter().filter(|&&k| k == target).count() as f64 / pt.len().max(1) as f64;
    Ok(Eval {
        accuracy,
        asr,
        train_s,
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("poison_bench: {e}");
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
    let train = load(&arg("--train").ok_or("--train F is required")?)?;
    let test = load(&arg("--test").ok_or("--test F is required")?)?;
    let seeds: Vec<u64> = arg("--seeds")
        .unwrap_or_else(|| "1,2,3".into())
        .split(',')
        .map(|s| s.trim().parse().map_err(|e| format!("--seeds: {e}")))
        .collect::<Result<_, _>>()?;
    let rate: f64 = arg("--rate")
        .map_or(Ok(0.01), |s| s.parse())
        .map_err(|e| format!("--rate: {e}"))?;
    let trigger = arg("--trigger").unwrap_or_else(|| "cf".into());
    let threads: usize = arg("--threads")
        .map_or(Ok(2), |s| s.parse())
        .map_err(|e| format!("--threads: {e}"))?;
    let pcfg: PoisonConfig = match arg("--config") {
        Some(j) => serde_json::from_str(&j).map_err(|e| format!("--config: {e}"))?,
        None => PoisonConfig::default(),
    };
    let dump = arg("--dump");
    let diag = args.iter().any(|a| a == "--diag");
    let mcfg = NgramConfig {
        threads,
        ..NgramConfig::default()
    };

    let mut names: Vec<String> = train.iter().map(|r| r.1.clone()).collect();
    names.sort();
    names.dedup();
    let index = |l: &str| names.binary_search_by(|n| n.as_str().cmp(l)).ok();
    let tr_x: Vec<&str> = train.iter().map(|r| r.0.as_str()).collect();
    let tr_y: Vec<u32> = train
        .iter()
        .map(|r| index(&r.1).map(|i| i as u32).ok_or("label"))
        .collect::<Result<_, _>>()?;
    let (te_x, te_y): (Vec<&str>, Vec<u32>) = test
        .iter()
        .filter_map(|r| index(&r.1).map(|i| (r.0.as_str(), i as u32)))
        .unzip();
    let c = names.len();

    // Clean-data scan (false positives).
    let t0 = Instant::now();
    let clean = scan(&tr_x, &tr_y, c, &names, &pcfg);
    let clean_scan_s = t0.elapsed().as_secs_f64();
    let clean_by_kind = |k: &str| clean.iter().filter(|s| s.kind == k).count();
    if diag {
        for s in trigger_candidates(&tr_x, &tr_y, c, &pcfg) {
            if s.mismatch >= 0.4 {
                eprintln!(
                    "clean cand {}",
                    serde_json::to_string(&s).unwrap_or_default()
                );
            }
        }
        for (k, n, sep, m) in spectral_separations(&tr_x, &tr_y, c, &pcfg) {
            eprintln!("clean spectral {} {n} {sep:.3} {m}", names[k as usize]);
        }
        for s in &clean {
            eprintln!(
                "clean flag {}",
                serde_json::to_string(s).unwrap_or_default()
            );
        }
    }

    let mut runs = Vec::new();
    for &seed in &seeds {
        let mut rng = SeededRng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xDEF);
        let target = rng.below_mod(c) as u32;
        let mut pool: Vec<usize> = (0..tr_x.len()).filter(|&i| tr_y[i] != target).collect();
        let n_poison = ((rate * tr_x.len() as f64).round() as usize).min(pool.len());
        for k in 0..n_poison {
            let j = k + rng.below_mod(pool.len() - k);
            pool.swap(k, j);
        }
        let mut poisoned: Vec<usize> = pool[..n_poison].to_vec();
        poisoned.sort_unstable();
        let mut px: Vec<String> = tr_x.iter().map(|s| s.to_string()).collect();
        let mut py = tr_y.clone();
        for &i in &poisoned {
            px[i] = insert(&px[i], &trigger, &mut rng);
            py[i] = target;
        }
        let triggered: Vec<String> = te_x
            .iter()
            .zip(&te_y)
            .filter(|(_, y)| **y != target)
            .map(|(t, _)| insert(t, &trigger, &mut rng))
            .collect();
        let trig_refs: Vec<&str> = triggered.iter().map(String::as_str).collect();
        let px_refs: Vec<&str> = px.iter().map(String::as_str).collect();
        let test_pair = (te_x.as_slice(), te_y.as_slice());

        let base = train_eval(&tr_x, &tr_y, &names, &mcfg, test_pair, &trig_refs, target)?;
        let attacked = train_eval(&px_refs, &py, &names, &mcfg, test_pair, &trig_refs, target)?;
        let t0 = Instant::now();
        let suspects = scan(&px_refs, &py, c, &names, &pcfg);
        let scan_s = t0.elapsed().as_secs_f64();
        let mut flagged: Vec<usize> = suspects.iter().map(|s| s.index).collect();
        flagged.dedup();
        let is_poison = |i: &usize| poisoned.binary_search(i).is_ok();
        let tp = flagged.iter().filter(|i| is_poison(i)).count();
        let keep: Vec<usize> = (0..px.len())
            .filter(|i| flagged.binary_search(i).is_err())
            .collect();
        let kx: Vec<&str> = keep.iter().map(|&i| px_refs[i]).collect();
        let ky: Vec<u32> = keep.iter().map(|&i| py[i]).collect();
        let defended = train_eval(&kx, &ky, &names, &mcfg, test_pair, &trig_refs, target)?;
        if diag {
            for s in trigger_candidates(&px_refs, &py, c, &pcfg) {
                if s.trigger || s.term == trigger {
                    eprintln!(
                        "seed {seed} cand {}",
                        serde_json::to_string(&s).unwrap_or_default()
                    );
                }
            }
            for (k, n, sep, m) in spectral_separations(&px_refs, &py, c, &pcfg) {
                if k == target {
                    eprintln!(
                        "seed {seed} target spectral {} {n} {sep:.3} {m}",
                        names[k as usize]
                    );
                }
            }
        }
        if let Some(dir) = &dump {
            let w = |name: &str, rows: Vec<serde_json::Value>| -> Result<(), String> {
                let body: String = rows.iter().map(|r| format!("{r}\n")).collect();
                std::fs::write(format!("{dir}/seed{seed}_{name}.jsonl"), body)
                    .map_err(|e| format!("{dir}: {e}"))
            };
            w(
                "train",
                (0..px.len())
                    .map(|i| {
                        serde_json::json!({"text": px[i], "label": names[py[i] as usize],
                        "poisoned": is_poison(&i), "flagged": flagged.binary_search(&i).is_ok()})
                    })
                    .collect(),
            )?;
            w(
                "triggered",
                triggered
                    .iter()
                    .map(|t| serde_json::json!({"text": t, "label": names[target as usize]}))
                    .collect(),
            )?;
        }
        let by_kind = |k: &str| suspects.iter().filter(|s| s.kind == k).count();
        let example = suspects
            .iter()
            .find(|s| s.kind == "trigger_token")
            .map(|s| s.evidence.clone());
        runs.push(serde_json::json!({
            "seed": seed, "target": names[target as usize], "n_poison": n_poison,
            "n_train": px.len(), "n_triggered_test": triggered.len(),
            "clean_model": {"accuracy": base.accuracy, "asr": base.asr},
            "no_defence": {"accuracy": attacked.accuracy, "asr": attacked.asr, "train_s": attacked.train_s},
            "defended": {"accuracy": defended.accuracy, "asr": defended.asr, "n_train": kx.len()},
            "scan": {"flagged": flagged.len(), "true_pos": tp, "clean_removed": flagged.len() - tp,
                     "precision": if flagged.is_empty() { 1.0 } else { tp as f64 / flagged.len() as f64 },
                     "recall": if n_poison == 0 { 1.0 } else { tp as f64 / n_poison as f64 },
                     "trigger_token": by_kind("trigger_token"), "spectral_outlier": by_kind("spectral_outlier"),
                     "seconds": scan_s, "evidence_example": example},
        }));
    }
    let out = serde_json::json!({
        "trigger": trigger, "rate": rate, "threads": threads, "poison_config": pcfg,
        "clean_scan": {"n_train": tr_x.len(), "flagged": clean.len(),
                       "trigger_token": clean_by_kind("trigger_token"),
                       "spectral_outlier": clean_by_kind("spectral_outlier"), "seconds": clean_scan_s,
                       "examples": clean.iter().take(5).map(|s| &s.evidence).collect::<Vec<_>>()},
        "runs": runs,
    });
    println!("{out}");
    Ok(())
}
