//! Benchmark driver for the label-issue finder: flips a seeded fraction of the training labels of a JSONL
//! file ("id", "text", "label") to another label, computes hone's out-of-fold n-gram probabilities, finds
//! label issues with confident learning, scores them against the flipped ids, and trains the n-gram model
//! on clean, noisy, noisy-minus-flagged and noisy-with-flagged-relabelled labels to measure test accuracy.
//!
//! Writes into `--work`: `noisy.json` (label names, clean and noisy label indices, ids, flipped indices
//! and ids), `oof.npy` (float32, n x classes, the out-of-fold probabilities used) and `hone_issues.json`;
//! prints one JSON object with the figures.
//!
//! usage: label_bench --train F --test F --work DIR [--noise 0.1] [--noise-seed 1] [--folds 5]
//!        [--rounds 2] [--seeds 2] [--method rank_by_joint] [--ranking normalized_margin]
//!        [--count-scale 1.0] [--threads 0] [--no-accuracy]

use hone_core::rng::SeededRng;
use hone_defend::label_issues::{
    LabelIssueConfig, OofConfig, average_proba, confident_joint, estimate_noise_rate,
    find_label_issues, out_of_fold_proba, refined_out_of_fold_proba,
};
use hone_model::metrics::{accuracy, argmax};
use hone_model::{NgramConfig, NgramModel};
use std::collections::HashSet;
use std::io::Write;
use std::time::Instant;

struct Row {
    id: String,
    text: String,
    label: String,
}

fn load(path: &str) -> Result<Vec<Row>, String> {
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
            (Some(text), Some(label)) => out.push(Row {
                id: field("id").unwrap_or_else(|| format!("row-{i}")),
                text,
                label,
            }),
            _ => return Err(format!("{path}:{}: needs \"text\" and \"label\"", i + 1)),
        }
    }
    Ok(out)
}

fn write_npy(path: &std::path::Path, rows: &[Vec<f32>], k: usize) -> Result<(), String> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        rows.len(),
        k
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut buf = Vec::with_capacity(10 + header.len() + rows.len() * k * 4);
    buf.extend_from_slice(b"\x93NUMPY\x01\x00");
    buf.extend_from_slice(&(header.len() as u16).to_le_bytes());
    buf.extend_from_slice(header.as_bytes());
    for r in rows {
        for j in 0..k {
            buf.extend_from_slice(&r.get(j).copied().unwrap_or(0.0).to_le_bytes());
        }
    }
    std::fs::write(path, buf).map_err(|e| format!("{}: {e}", path.display()))
}

fn test_accuracy(
    tx: &[&str],
    ty: &[u32],
    names: &[String],
    cfg: &NgramConfig,
    ex: &[&str],
    ey: &[u32],
) -> Result<f64, String> {
    let (m, _) =
        NgramModel::fit(tx, ty, names, None, cfg, &mut |_| {}).map_err(|e| e.to_string())?;
    let pred: Vec<u32> = m
        .predict_proba_batch(ex)
        .iter()
        .map(|p| argmax(p) as u32)
        .collect();
    Ok(accuracy(ey, &pred))
}

fn main() {
    if let Err(e) = run() {
        eprintln!("label_bench: {e}");
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
    let flag = |name: &str| args.iter().any(|a| a == name);
    fn num<T: std::str::FromStr>(v: Option<String>, d: T, name: &str) -> Result<T, String> {
        match v {
            None => Ok(d),
            Some(s) => s.parse().map_err(|_| format!("{name}: cannot parse {s:?}")),
        }
    }
    let train_path = arg("--train").ok_or("--train F is required")?;
    let test_path = arg("--test").ok_or("--test F is required")?;
    let work = std::path::PathBuf::from(arg("--work").ok_or("--work DIR is required")?);
    let noise: f64 = num(arg("--noise"), 0.1, "--noise")?;
    let noise_seed: u64 = num(arg("--noise-seed"), 1, "--noise-seed")?;
    let folds: usize = num(arg("--folds"), 5, "--folds")?;
    let rounds: usize = num(arg("--rounds"), 2, "--rounds")?;
    let seeds: u64 = num(arg("--seeds"), 2, "--seeds")?;
    let threads: usize = num(arg("--threads"), 0, "--threads")?;
    let count_scale: f64 = num(arg("--count-scale"), 1.0, "--count-scale")?;
    let mut icfg = LabelIssueConfig {
        count_scale,
        ..LabelIssueConfig::default()
    };
    if let Some(m) = arg("--method") {
        icfg.method = serde_json::from_value(serde_json::Value::String(m.clone()))
            .map_err(|e| format!("--method {m}: {e}"))?;
    }
    if let Some(r) = arg("--ranking") {
        icfg.ranking = serde_json::from_value(serde_json::Value::String(r.clone()))
            .map_err(|e| format!("--ranking {r}: {e}"))?;
    }
    let model = NgramConfig {
        threads,
        ..NgramConfig::default()
    };
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    let train = load(&train_path)?;
    let test = load(&test_path)?;
    let mut names: Vec<String> = train.iter().map(|r| r.label.clone()).collect();
    names.sort();
    names.dedup();
    let k = names.len();
    let index = |l: &str| {
        names
            .binary_search_by(|n| n.as_str().cmp(l))
            .map_or(u32::MAX, |i| i as u32)
    };
    let tx: Vec<&str> = train.iter().map(|r| r.text.as_str()).collect();
    let clean: Vec<u32> = train.iter().map(|r| index(&r.label)).collect();
    let ex: Vec<&str> = test.iter().map(|r| r.text.as_str()).collect();
    let ey: Vec<u32> = test.iter().map(|r| index(&r.label)).collect();

    // Flip round(noise * n) labels, chosen by a seeded shuffle, each to a uniformly drawn other label.
    let n = tx.len();
    let mut rng = SeededRng::new(noise_seed);
    let mut perm: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut perm);
    let m = ((noise * n as f64).round() as usize).min(n);
    let mut flipped: Vec<usize> = perm[..m].to_vec();
    flipped.sort_unstable();
    let mut noisy = clean.clone();
    for &i in &flipped {
        let r = rng.below(k - 1) as u32;
        noisy[i] = if r >= clean[i] { r + 1 } else { r };
    }
    let flipped_set: HashSet<usize> = flipped.iter().copied().collect();

    // Out-of-fold probabilities, `seeds` fold assignments averaged; with 2 rounds the fold models of
    // round 2 train without round 1's suspects.
    let t0 = Instant::now();
    let ocfg = OofConfig {
        folds,
        seed: 42,
        model: model.clone(),
    };
    let proba = if rounds >= 2 {
        refined_out_of_fold_proba(&tx, &noisy, &names, &ocfg, seeds as usize)
    } else {
        let mut runs = Vec::new();
        for s in 0..seeds.max(1) {
            let c = OofConfig {
                folds,
                seed: 42 + s,
                model: NgramConfig {
                    seed: 42 + s,
                    ..model.clone()
                },
            };
            runs.push(out_of_fold_proba(&tx, &noisy, &names, &c).map_err(|e| e.to_string())?);
        }
        Ok(average_proba(&runs))
    }
    .map_err(|e| e.to_string())?;
    let oof_seconds = t0.elapsed().as_secs_f64();
    let issues = find_label_issues(&proba, &noisy, k, &icfg);
    let rho = estimate_noise_rate(&proba, &noisy, k);
    let total_seconds = t0.elapsed().as_secs_f64();
    let cj = confident_joint(&proba, &noisy, k);
    let off: u64 = (0..k).map(|i| cj[i].iter().sum::<u64>() - cj[i][i]).sum();
    let hits = issues
        .iter()
        .filter(|x| flipped_set.contains(&x.index))
        .count();
    let suggested_right = issues
        .iter()
        .filter(|x| flipped_set.contains(&x.index) && x.suggested == clean[x.index])
        .count();
    let precision = hits as f64 / issues.len().max(1) as f64;
    let recall = hits as f64 / flipped.len().max(1) as f64;

    // Write the shared files for the Python side.
    write_npy(&work.join("oof.npy"), &proba, k)?;
    let noisy_json = serde_json::json!({
        "label_names": names, "clean": clean, "noisy": noisy, "ids": train.iter().map(|r| &r.id).collect::<Vec<_>>(),
        "flipped": flipped, "flipped_ids": flipped.iter().map(|&i| &train[i].id).collect::<Vec<_>>(),
        "noise": noise, "noise_seed": noise_seed,
    });
    std::fs::write(work.join("noisy.json"), noisy_json.to_string()).map_err(|e| e.to_string())?;
    std::fs::write(
        work.join("hone_issues.json"),
        serde_json::to_string(&issues).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;

    // Test accuracy of the n-gram model on clean / noisy / removed / relabelled training labels.
    let mut acc = serde_json::Map::new();
    if !flag("--no-accuracy") {
        let flagged: HashSet<usize> = issues.iter().map(|x| x.index).collect();
        acc.insert(
            "clean".into(),
            test_accuracy(&tx, &clean, &names, &model, &ex, &ey)?.into(),
        );
        acc.insert(
            "noisy".into(),
            test_accuracy(&tx, &noisy, &names, &model, &ex, &ey)?.into(),
        );
        let keep: Vec<usize> = (0..n).filter(|i| !flagged.contains(i)).collect();
        let rx: Vec<&str> = keep.iter().map(|&i| tx[i]).collect();
        let ry: Vec<u32> = keep.iter().map(|&i| noisy[i]).collect();
        acc.insert(
            "removed".into(),
            test_accuracy(&rx, &ry, &names, &model, &ex, &ey)?.into(),
        );
        let mut relabel = noisy.clone();
        for x in &issues {
            relabel[x.index] = x.suggested;
        }
        acc.insert(
            "relabelled".into(),
            test_accuracy(&tx, &relabel, &names, &model, &ex, &ey)?.into(),
        );
    }
    let out = serde_json::json!({
        "n_train": n, "n_test": ex.len(), "classes": k, "flipped": flipped.len(),
        "flagged": issues.len(), "hits": hits, "precision": precision, "recall": recall,
        "suggested_true_label_of_hits": suggested_right as f64 / hits.max(1) as f64,
        "joint_off_diagonal": off, "noise_rate_estimate": rho, "oof_seconds": oof_seconds, "total_seconds": total_seconds,
        "config": {"folds": folds, "rounds": rounds, "seeds": seeds, "threads": threads, "issues": icfg},
        "accuracy": acc,
    });
    let mut so = std::io::stdout().lock();
    writeln!(so, "{out}").map_err(|e| e.to_string())?;
    Ok(())
}
