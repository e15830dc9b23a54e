//! Abstention benchmark: BANKING77 as the in-scope task, out-of-scope inputs from TREC questions and
//! GSM8K problems. hone's `ngram` model picks its confidence threshold on a dev split (≤ 1 point of dev
//! accuracy lost); we report the share of out-of-scope inputs refused and the in-scope accuracy cost.
//!
//! usage: abstain_bench --shared ../shared [--seed 7]

use hone_model::{NgramConfig, NgramModel};

fn read(path: &std::path::Path, field: &str, label: bool) -> Vec<(String, String)> {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    s.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            Some((
                v.get(field)?.as_str()?.to_string(),
                if label {
                    v.get("label")?.as_str()?.to_string()
                } else {
                    String::new()
                },
            ))
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |n: &str| {
        args.iter()
            .position(|a| a == n)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let shared = std::path::PathBuf::from(arg("--shared").unwrap_or_else(|| "../shared".into()))
        .join("datasets");
    let seed: u64 = arg("--seed").and_then(|s| s.parse().ok()).unwrap_or(7);
    let train = read(&shared.join("banking77/train.jsonl"), "text", true);
    let test = read(&shared.join("banking77/test.jsonl"), "text", true);
    let mut oos: Vec<String> = read(&shared.join("trec/test.jsonl"), "text", false)
        .into_iter()
        .map(|x| x.0)
        .collect();
    oos.extend(
        read(&shared.join("gsm8k/test.jsonl"), "question", false)
            .into_iter()
            .take(500)
            .map(|x| x.0),
    );
    if train.is_empty() || oos.is_empty() {
        eprintln!(
            "abstain_bench: shared datasets not found under {}",
            shared.display()
        );
        std::process::exit(2);
    }
    let mut names: Vec<String> = train.iter().map(|x| x.1.clone()).collect();
    names.sort();
    names.dedup();
    let idx = |l: &str| names.binary_search_by(|n| n.as_str().cmp(l)).unwrap_or(0) as u32;
    // Dev: every 10th training example (seeded offset), train on the rest.
    let off = (seed % 10) as usize;
    let (mut tr, mut dv) = (Vec::new(), Vec::new());
    for (i, x) in train.iter().enumerate() {
        if i % 10 == off {
            dv.push(x)
        } else {
            tr.push(x)
        }
    }
    let tr_x: Vec<&str> = tr.iter().map(|x| x.0.as_str()).collect();
    let tr_y: Vec<u32> = tr.iter().map(|x| idx(&x.1)).collect();
    let dv_x: Vec<&str> = dv.iter().map(|x| x.0.as_str()).collect();
    let dv_y: Vec<u32> = dv.iter().map(|x| idx(&x.1)).collect();
    let cfg = NgramConfig {
        seed,
        ..NgramConfig::default()
    };
    let (model, _) = NgramModel::fit(
        &tr_x,
        &tr_y,
        &names,
        Some((&dv_x, &dv_y)),
        &cfg,
        &mut |_| {},
    )
    .expect("fit");
    let conf_pred = |texts: &[&str]| -> Vec<(f64, u32)> {
        model
            .predict_proba_batch(texts)
            .iter()
            .map(|p| {
                let (i, c) = p
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::MIN),
                        |(bi, bv), (i, &v)| if v > bv { (i, v) } else { (bi, bv) },
                    );
                (c as f64, i as u32)
            })
            .collect()
    };
    let dev = conf_pred(&dv_x);
    let dev_conf: Vec<f64> = dev.iter().map(|x| x.0).collect();
    let dev_ok: Vec<bool> = dev.iter().zip(&dv_y).map(|(x, y)| x.1 == *y).collect();
    let t =
        hone_train::run_stage::choose_abstain_threshold(&dev_conf, &dev_ok, 0.01).unwrap_or(0.0);
    let te_x: Vec<&str> = test.iter().map(|x| x.0.as_str()).collect();
    let te_y: Vec<u32> = test.iter().map(|x| idx(&x.1)).collect();
    let te = conf_pred(&te_x);
    let acc_plain =
        te.iter().zip(&te_y).filter(|(x, y)| x.1 == **y).count() as f64 / te.len() as f64;
    let acc_abstain = te
        .iter()
        .zip(&te_y)
        .filter(|(x, y)| x.0 >= t && x.1 == **y)
        .count() as f64
        / te.len() as f64;
    let refused_in = te.iter().filter(|x| x.0 < t).count() as f64 / te.len() as f64;
    let oos_x: Vec<&str> = oos.iter().map(String::as_str).collect();
    let refused_oos =
        conf_pred(&oos_x).iter().filter(|x| x.0 < t).count() as f64 / oos.len() as f64;
    println!(
        "{}",
        serde_json::json!({"seed": seed, "threshold": t, "in_scope_accuracy": acc_plain, "in_scope_accuracy_with_abstention": acc_abstain, "accuracy_cost_points": (acc_plain - acc_abstain) * 100.0, "in_scope_refused": refused_in, "out_of_scope_n": oos.len(), "out_of_scope_refused": refused_oos})
    );
}
