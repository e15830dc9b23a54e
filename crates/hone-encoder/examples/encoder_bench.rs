//! Benchmark driver for hone's encoder methods on a local Hugging Face model; prints one JSON line.
//!
//! usage: encoder_bench MODE --model DIR [--threads N] ...
//!   frozen    --train F --test F [--batch 64] [--max-length 128]      frozen mean+normalised embeddings + L-BFGS head (C on a 10% dev carve, refit on all train); embedding throughput
//!   finetune  --train F --test F [--epochs 3] [--lr 5e-5] [--batch 32] [--max-length 64] [--pooling cls|mean] [--warmup 0] [--head-lr X] [--limit N]
//!   steptime  --train F [--steps 10] [--warmup-steps 2] [--batch 32] [--length 64]   seconds per full training step (fwd, bwd, clip, AdamW)
//!   setfit    --sample F --test F [--iterations 20] [--epochs 1] [--lr 2e-5]        contrastive phase + head; also the frozen head on the same sample
//!   export    --train F --test F --out DIR --kind cls|mean [--limit 400] [--n 64]   writes an export and DIR/expected.jsonl for bench/export/check.py
//!   poison    --dump DIR --test F [--seeds 1,2,3] [--c 10]   frozen-MiniLM head on poison_bench's poisoned training sets: ASR and
//!             clean accuracy without defence and after dropping the scan's suspects (`flagged` in the dump)
//!
//! Threads: `--threads N` sets RAYON_NUM_THREADS before any work (candle's matmul threads follow it).

use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{Device, Tensor};
use hone_encoder::finetune::{ContrastiveConfig, contrastive, finetune};
use hone_encoder::optim::{AdamWConfig, FusedAdamW, clip_factor, grad_norm};
use hone_encoder::{
    BertEncoder, Classifier, FinetuneConfig, LinearHead, Pooling, Pretrained, Rows, Targets, embed,
};
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

type Res<T> = std::result::Result<T, String>;

fn load(path: &str) -> Res<Vec<(String, String)>> {
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

struct Args(Vec<String>);
impl Args {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1))
            .cloned()
    }
    fn req(&self, name: &str) -> Res<String> {
        self.get(name).ok_or_else(|| format!("{name} is required"))
    }
    fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T> {
        match self.get(name) {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| format!("{name}: cannot parse {s}")),
        }
    }
}

fn e2s(e: hone_core::Error) -> String {
    e.to_string()
}

fn labels_of(train: &[(String, String)]) -> (Vec<String>, BTreeMap<String, u32>) {
    let set: std::collections::BTreeSet<&String> = train.iter().map(|(_, l)| l).collect();
    let labels: Vec<String> = set.into_iter().cloned().collect();
    let index = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i as u32))
        .collect();
    (labels, index)
}

fn xy<'a>(d: &'a [(String, String)], index: &BTreeMap<String, u32>) -> (Vec<&'a str>, Vec<u32>) {
    (
        d.iter().map(|(t, _)| t.as_str()).collect(),
        d.iter()
            .map(|(_, l)| index.get(l).copied().unwrap_or(u32::MAX))
            .collect(),
    )
}

fn acc_of(pred: &[u32], gold: &[u32]) -> f64 {
    pred.iter().zip(gold).filter(|(a, b)| a == b).count() as f64 / gold.len().max(1) as f64
}

fn stats(xs: &[f64]) -> (f64, f64) {
    let mut s = xs.to_vec();
    s.sort_by(f64::total_cmp);
    (s[0], s[s.len() / 2])
}

/// 90/10 seeded carve of train into (fit, dev) indices.
fn carve(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let order = hone_encoder::finetune::epoch_order(n, seed, 0);
    let n_dev = n / 10;
    let mut dev = order[..n_dev].to_vec();
    let mut fit = order[n_dev..].to_vec();
    dev.sort_unstable();
    fit.sort_unstable();
    (fit, dev)
}

/// mimalloc's `mi_option_purge_delay` (index 15 in mimalloc.h, v2 and v3).
const MI_OPTION_PURGE_DELAY: i32 = 15;

fn main() {
    // Training frees and re-allocates the same large tensors every step; returning them to the OS makes
    // every step page-fault them back in (measured: 4.75 -> 3.07 s per MiniLM step at one thread).
    // SAFETY: sets a process-wide mimalloc option; no concurrent allocator configuration.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    let all: Vec<String> = std::env::args().skip(1).collect();
    let args = Args(all.clone());
    if let Some(t) = args.get("--threads") {
        // SAFETY: set before any thread is spawned.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", &t) };
    }
    let r = match all.first().map(String::as_str) {
        Some("frozen") => frozen(&args),
        Some("finetune") => run_finetune(&args),
        Some("steptime") => steptime(&args),
        Some("setfit") => setfit(&args),
        Some("export") => export(&args),
        Some("poison") => poison(&args),
        _ => Err(
            "usage: encoder_bench frozen|finetune|steptime|setfit|export --model DIR ...".into(),
        ),
    };
    match r {
        Ok(v) => println!("{v}"),
        Err(e) => {
            eprintln!("encoder_bench: {e}");
            std::process::exit(2);
        }
    }
}

fn model_dir(a: &Args) -> String {
    a.get("--model")
        .unwrap_or_else(|| "models/all-MiniLM-L6-v2".into())
}

fn frozen(a: &Args) -> Res<serde_json::Value> {
    let max_len = a.num("--max-length", 128usize)?;
    let batch = a.num("--batch", 64usize)?;
    let p = Pretrained::load(std::path::Path::new(&model_dir(a)), max_len).map_err(e2s)?;
    let train = load(&a.req("--train")?)?;
    let test = load(&a.req("--test")?)?;
    let (labels, index) = labels_of(&train);
    let (tx, ty) = xy(&train, &index);
    let (sx, sy) = xy(&test, &index);
    let t0 = Instant::now();
    let e = embed(
        &p.encoder,
        &p.tokenizer,
        &tx,
        Pooling::Mean,
        true,
        batch,
        &mut |_, _| {},
    )
    .map_err(e2s)?;
    let train_embed_s = t0.elapsed().as_secs_f64();
    let mut times = Vec::new();
    let mut te = None;
    for _ in 0..a.num("--reps", 3usize)? {
        let t = Instant::now();
        te = Some(
            embed(
                &p.encoder,
                &p.tokenizer,
                &sx,
                Pooling::Mean,
                true,
                batch,
                &mut |_, _| {},
            )
            .map_err(e2s)?,
        );
        times.push(t.elapsed().as_secs_f64());
    }
    let te = te.ok_or("--reps must be > 0")?;
    let d = e.dim;
    let (fit, dev) = carve(tx.len(), 0);
    let rows = |idx: &[usize]| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| e.data[i * d..(i + 1) * d].to_vec())
            .collect()
    };
    let (fx, dx) = (rows(&fit), rows(&dev));
    let fy: Vec<u32> = fit.iter().map(|&i| ty[i]).collect();
    let dy: Vec<u32> = dev.iter().map(|&i| ty[i]).collect();
    let grid = [1.0, 10.0, 100.0, 1000.0];
    let t = Instant::now();
    let (_, rep) = LinearHead::fit_select(
        Rows { data: &fx, dim: d },
        Targets::Hard(&fy),
        labels.len(),
        Some((Rows { data: &dx, dim: d }, &dy)),
        &grid,
    )
    .map_err(e2s)?;
    let (h, iters) = LinearHead::fit(
        Rows {
            data: &e.data,
            dim: d,
        },
        Targets::Hard(&ty),
        labels.len(),
        rep.chosen_c,
        1000,
        None,
    )
    .map_err(e2s)?;
    let head_s = t.elapsed().as_secs_f64();
    let pred = h
        .predict(Rows {
            data: &te.data,
            dim: d,
        })
        .map_err(e2s)?;
    let per_c: Vec<_> = grid
        .iter()
        .map(|&c| {
            let (hc, _) = LinearHead::fit(Rows { data: &e.data, dim: d }, Targets::Hard(&ty), labels.len(), c, 1000, None).unwrap();
            json!({"C": c, "test_accuracy": acc_of(&hc.predict(Rows { data: &te.data, dim: d }).unwrap(), &sy)})
        })
        .collect();
    let (tmin, tmed) = stats(&times);
    Ok(json!({
        "side": "hone_frozen", "accuracy": acc_of(&pred, &sy), "chosen_c": rep.chosen_c, "dev_tried": rep.tried,
        "lbfgs_iterations": iters, "head_seconds": head_s, "train_embed_seconds": train_embed_s,
        "embed_texts_per_s_median": sx.len() as f64 / tmed, "embed_texts_per_s_best": sx.len() as f64 / tmin,
        "truncated_train": e.truncated, "truncated_test": te.truncated, "test_accuracy_by_c": per_c,
        "threads": std::env::var("RAYON_NUM_THREADS").ok(),
    }))
}

fn classifier(p: &Pretrained, pooling: Pooling, classes: usize, seed: u64) -> Res<Classifier> {
    let enc = BertEncoder::load(&p.config, &p.dir.join("model.safetensors"), &Device::Cpu)
        .map_err(e2s)?;
    Classifier::new(enc, pooling, p.pooler.clone(), classes, seed).map_err(e2s)
}

fn pooling(a: &Args) -> Res<Pooling> {
    match a.get("--pooling").as_deref() {
        None | Some("cls") => Ok(Pooling::Cls),
        Some("mean") => Ok(Pooling::Mean),
        Some(o) => Err(format!("--pooling {o}: use cls or mean")),
    }
}

fn run_finetune(a: &Args) -> Res<serde_json::Value> {
    let max_len = a.num("--max-length", 64usize)?;
    let p = Pretrained::load(std::path::Path::new(&model_dir(a)), max_len).map_err(e2s)?;
    let mut train = load(&a.req("--train")?)?;
    let test = load(&a.req("--test")?)?;
    if let Some(n) = a.get("--limit") {
        let n: usize = n.parse().map_err(|_| "--limit")?;
        let order = hone_encoder::finetune::epoch_order(train.len(), 7, 0);
        train = order.iter().take(n).map(|&i| train[i].clone()).collect();
    }
    let (labels, index) = labels_of(&train);
    let (tx, ty) = xy(&train, &index);
    let (sx, sy) = xy(&test, &index);
    let cfg = FinetuneConfig {
        epochs: a.num("--epochs", 3usize)?,
        batch_size: a.num("--batch", 32usize)?,
        lr: a.num("--lr", 5e-5f64)?,
        head_lr: a.get("--head-lr").map(|s| s.parse().unwrap_or(5e-5)),
        warmup_ratio: a.num("--warmup", 0.0f64)?,
        weight_decay: a.num("--weight-decay", 0.01f64)?,
        patience: 0,
        seed: a.num("--seed", 0u64)?,
        probe_init: match a.get("--probe-init") {
            Some(c) => Some(
                c.parse()
                    .map_err(|_| format!("--probe-init {c}: a C value"))?,
            ),
            None => None,
        },
        ..FinetuneConfig::default()
    };
    let m = classifier(&p, pooling(a)?, labels.len(), cfg.seed)?;
    let mut per_epoch = Vec::new();
    let t0 = Instant::now();
    // The test set stands in for dev here so that each epoch's test accuracy is reported, as the peer does;
    // with patience 0 it never changes what is trained, and the final model is the best epoch's.
    let rep = finetune(
        &m,
        &p.tokenizer,
        &tx,
        &ty,
        Some((&sx, &sy)),
        &cfg,
        None,
        &mut |s, t| {
            if s % 50 == 0 {
                eprintln!(
                    "finetune: step {s}/{t} ({:.0} s)",
                    t0.elapsed().as_secs_f64()
                );
            }
        },
        &mut |l| {
            eprintln!(
                "finetune: epoch {} loss {:.4} test acc {:?} ({:.0} s)",
                l.epoch, l.train_loss, l.dev_accuracy, l.seconds
            );
            per_epoch.push(l.dev_accuracy);
        },
    )
    .map_err(e2s)?;
    let secs = t0.elapsed().as_secs_f64();
    let mut out = json!({
        "side": "hone_finetune", "accuracy_per_epoch": per_epoch,
        "accuracy": per_epoch.last().cloned().flatten(), "train_seconds": secs, "steps": rep.steps,
        "seconds_per_step": rep.seconds_per_step, "truncated_train": rep.train_truncated,
        "config": cfg, "pooling": a.get("--pooling").unwrap_or_else(|| "cls".into()),
        "probe": rep.probe,
    });
    if a.0.iter().any(|x| x == "--distill") {
        out["distillation"] = distill(
            &m,
            &p,
            &labels,
            &tx,
            &ty,
            &sx,
            &sy,
            a.num("--distill-temperature", 2.0f32)?,
            &a.get("--distill-alpha")
                .unwrap_or_else(|| "0".into())
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f32>()
                        .map_err(|_| format!("--distill-alpha {v}"))
                })
                .collect::<Res<Vec<f32>>>()?,
        )?;
    }
    Ok(out)
}

/// The fine-tuned teacher labels the training texts with temperature-softened probabilities; hone's
/// `ngram` model (default settings, trained on the gold labels for its vocabulary) is retrained on them by
/// soft cross-entropy. Accuracy, retention and throughput of both on the test set.
#[allow(clippy::too_many_arguments)]
fn distill(
    m: &Classifier,
    p: &Pretrained,
    labels: &[String],
    tx: &[&str],
    ty: &[u32],
    sx: &[&str],
    sy: &[u32],
    temperature: f32,
    alphas: &[f32],
) -> Res<serde_json::Value> {
    let k = labels.len();
    let t0 = Instant::now();
    let (logits, _) = m.predict_logits(&p.tokenizer, tx, 64).map_err(e2s)?;
    let label_s = t0.elapsed().as_secs_f64();
    let mut soft = logits.clone();
    for row in soft.chunks_mut(k) {
        for v in row.iter_mut() {
            *v /= temperature;
        }
        hone_encoder::head::softmax_in_place(row);
    }
    let t = Instant::now();
    let (teacher_logits, _) = m.predict_logits(&p.tokenizer, sx, 64).map_err(e2s)?;
    let teacher_s = t.elapsed().as_secs_f64();
    let teacher_pred: Vec<u32> = teacher_logits
        .chunks(k)
        .map(hone_encoder::head::argmax)
        .collect();
    let cfg = hone_model::NgramConfig::default();
    let t = Instant::now();
    let (base, _) =
        hone_model::NgramModel::fit(tx, ty, labels, None, &cfg, &mut |_| {}).map_err(e2s)?;
    let base_s = t.elapsed().as_secs_f64();
    // One student per alpha (weight of the gold label in each target); the first is reported as "the"
    // student, the rest under "students".
    let mut students = Vec::new();
    let mut first = None;
    for &alpha in alphas {
        let t = Instant::now();
        let mut q = soft.clone();
        for (row, &y) in q.chunks_mut(k).zip(ty) {
            row.iter_mut().for_each(|v| *v *= 1.0 - alpha);
            row[y as usize] += alpha;
        }
        let (st, losses) = base.distill(tx, &q, None, 10, 0.5, 1e-6, 0).map_err(e2s)?;
        let secs = base_s + t.elapsed().as_secs_f64();
        let pred: Vec<u32> = st
            .predict_proba_batch(sx)
            .iter()
            .map(|r| hone_encoder::head::argmax(r))
            .collect();
        students.push(json!({"alpha": alpha, "accuracy": acc_of(&pred, sy)}));
        if first.is_none() {
            first = Some((st, losses, secs, alpha));
        }
    }
    let (student, losses, student_train_s, alpha0) = first.ok_or("--distill-alpha: no values")?;
    let mut times = Vec::new();
    let mut probs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        probs = student.predict_proba_batch(sx);
        times.push(t.elapsed().as_secs_f64());
    }
    let (smin, _) = stats(&times);
    let student_pred: Vec<u32> = probs
        .iter()
        .map(|r| hone_encoder::head::argmax(r))
        .collect();
    let base_pred: Vec<u32> = sx.iter().map(|t| base.predict(t)).collect();
    let (ta, sa) = (acc_of(&teacher_pred, sy), acc_of(&student_pred, sy));
    Ok(json!({
        "temperature": temperature, "alpha": alpha0, "students": students,
        "teacher_accuracy": ta, "student_accuracy": sa,
        "retention": sa / ta.max(1e-9), "ngram_on_gold_labels_accuracy": acc_of(&base_pred, sy),
        "teacher_texts_per_s": sx.len() as f64 / teacher_s, "student_texts_per_s": sx.len() as f64 / smin,
        "speedup": teacher_s / smin, "teacher_labelling_seconds": label_s,
        "student_train_seconds": student_train_s, "distill_losses": losses,
    }))
}

fn steptime(a: &Args) -> Res<serde_json::Value> {
    let len = a.num("--length", 64usize)?;
    let batch = a.num("--batch", 32usize)?;
    let p = Pretrained::load(std::path::Path::new(&model_dir(a)), len).map_err(e2s)?;
    let train = load(&a.req("--train")?)?;
    let (labels, index) = labels_of(&train);
    let (tx, ty) = xy(&train, &index);
    let m = classifier(&p, Pooling::Cls, labels.len(), 0)?;
    let named = m.named_vars().map_err(e2s)?;
    let vars: Vec<_> = named.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = FusedAdamW::new(named, AdamWConfig::default()).map_err(e2s)?;
    // A fixed batch padded (or cut) to exactly `len` tokens, as the peer's padding="max_length".
    let texts: Vec<&str> = tx[..batch].to_vec();
    let tb = p.tokenizer.encode_batch(&texts).map_err(e2s)?;
    let (b, s) = (tb.batch, tb.seq_len.min(len));
    let mut ids = vec![0u32; b * len];
    let mut mask = vec![0u32; b * len];
    for r in 0..b {
        for c in 0..s {
            ids[r * len + c] = tb.ids[r * tb.seq_len + c];
            mask[r * len + c] = tb.attention_mask[r * tb.seq_len + c];
        }
    }
    let dev = Device::Cpu;
    let ids = Tensor::from_vec(ids, (b, len), &dev).map_err(|e| e.to_string())?;
    let mask = Tensor::from_vec(mask, (b, len), &dev).map_err(|e| e.to_string())?;
    let types = ids.zeros_like().map_err(|e| e.to_string())?;
    let yt = Tensor::new(&ty[..batch], &dev).map_err(|e| e.to_string())?;
    let mut dropout = hone_encoder::Dropout::new(1);
    let (steps, warm) = (a.num("--steps", 10usize)?, a.num("--warmup-steps", 2usize)?);
    let mut times = Vec::new();
    let mut parts = Vec::new();
    for i in 0..steps + warm {
        let t = Instant::now();
        let logits = m
            .logits(&ids, &types, &mask, true, Some(&mut dropout))
            .map_err(e2s)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &yt).map_err(|e| e.to_string())?;
        let t_fwd = t.elapsed().as_secs_f64();
        let g = loss.backward().map_err(|e| e.to_string())?;
        let t_bwd = t.elapsed().as_secs_f64();
        let scale = clip_factor(grad_norm(&g, &vars).map_err(e2s)?, 1.0);
        opt.step(&g, 5e-5, scale).map_err(e2s)?;
        if i >= warm {
            let total = t.elapsed().as_secs_f64();
            times.push(total);
            parts.push([t_fwd, t_bwd - t_fwd, total - t_bwd]);
        }
    }
    let (min, med) = stats(&times);
    Ok(
        json!({"side": "hone_steptime", "batch": batch, "length": len, "seconds_per_step_min": min,
              "seconds_per_step_median": med, "times": times, "forward_backward_update": parts,
              "threads": std::env::var("RAYON_NUM_THREADS").ok()}),
    )
}

fn setfit(a: &Args) -> Res<serde_json::Value> {
    let p = Pretrained::load(
        std::path::Path::new(&model_dir(a)),
        a.num("--max-length", 64usize)?,
    )
    .map_err(e2s)?;
    let sample = load(&a.req("--sample")?)?;
    let test = load(&a.req("--test")?)?;
    let (labels, index) = labels_of(&sample);
    let (x, y) = xy(&sample, &index);
    let (sx, sy) = xy(&test, &index);
    let d = p.config.hidden_size;
    let emb = |enc: &BertEncoder, t: &[&str]| {
        embed(
            enc,
            &p.tokenizer,
            t,
            Pooling::Mean,
            true,
            64,
            &mut |_, _| {},
        )
        .map_err(e2s)
    };
    // The frozen baseline on the same sample.
    let te0 = emb(&p.encoder, &sx)?;
    let e0 = emb(&p.encoder, &x)?;
    let c = a.num("--c", 100.0f64)?;
    let (h0, _) = LinearHead::fit(
        Rows {
            data: &e0.data,
            dim: d,
        },
        Targets::Hard(&y),
        labels.len(),
        c,
        1000,
        None,
    )
    .map_err(e2s)?;
    let frozen_acc = acc_of(
        &h0.predict(Rows {
            data: &te0.data,
            dim: d,
        })
        .map_err(e2s)?,
        &sy,
    );
    let cfg = ContrastiveConfig {
        iterations: a.num("--iterations", 20usize)?,
        epochs: a.num("--epochs", 1usize)?,
        batch_size: a.num("--batch", 16usize)?,
        lr: a.num("--lr", 2e-5f64)?,
        seed: a.num("--seed", 0u64)?,
        ..ContrastiveConfig::default()
    };
    let steps = hone_encoder::finetune::contrastive_pairs(&y, cfg.iterations, cfg.seed)
        .len()
        .div_ceil(cfg.batch_size.max(1))
        * cfg.epochs;
    let t0 = Instant::now();
    let losses = contrastive(
        &p.encoder,
        Pooling::Mean,
        &p.tokenizer,
        &x,
        &y,
        &cfg,
        &mut |s, t| {
            if s % 25 == 0 {
                eprintln!(
                    "setfit: step {s}/{t}, {:.3} s/step",
                    t0.elapsed().as_secs_f64() / s as f64
                );
            }
        },
    )
    .map_err(e2s)?;
    let contrastive_s = t0.elapsed().as_secs_f64();
    let e1 = emb(&p.encoder, &x)?;
    let (h1, _) = LinearHead::fit(
        Rows {
            data: &e1.data,
            dim: d,
        },
        Targets::Hard(&y),
        labels.len(),
        c,
        1000,
        None,
    )
    .map_err(e2s)?;
    let train_s = t0.elapsed().as_secs_f64();
    let te1 = emb(&p.encoder, &sx)?;
    let acc = acc_of(
        &h1.predict(Rows {
            data: &te1.data,
            dim: d,
        })
        .map_err(e2s)?,
        &sy,
    );
    Ok(
        json!({"side": "hone_setfit", "n_sample": x.len(), "accuracy": acc, "frozen_head_accuracy": frozen_acc,
              "contrastive_losses": losses, "train_seconds": train_s, "contrastive_seconds": contrastive_s,
              "steps": steps, "config": cfg, "head_c": c}),
    )
}

fn export(a: &Args) -> Res<serde_json::Value> {
    let max_len = a.num("--max-length", 64usize)?;
    let base = std::path::PathBuf::from(model_dir(a));
    let p = Pretrained::load(&base, max_len).map_err(e2s)?;
    let train = load(&a.req("--train")?)?;
    let test = load(&a.req("--test")?)?;
    let out = std::path::PathBuf::from(a.req("--out")?);
    let kind = a.req("--kind")?;
    let limit = a.num("--limit", 400usize)?;
    let n = a.num("--n", 64usize)?;
    let sub: Vec<(String, String)> = hone_encoder::finetune::epoch_order(train.len(), 3, 0)
        .into_iter()
        .take(limit)
        .map(|i| train[i].clone())
        .collect();
    let (labels, index) = labels_of(&train);
    let (x, y) = xy(&sub, &index);
    let probe: Vec<&str> = test.iter().take(n).map(|(t, _)| t.as_str()).collect();
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let mut lines = Vec::new();
    match kind.as_str() {
        "cls" => {
            let m = classifier(&p, Pooling::Cls, labels.len(), 0)?;
            let cfg = FinetuneConfig {
                epochs: 1,
                batch_size: 16,
                lr: 5e-5,
                patience: 0,
                ..FinetuneConfig::default()
            };
            finetune(
                &m,
                &p.tokenizer,
                &x,
                &y,
                None,
                &cfg,
                None,
                &mut |_, _| {},
                &mut |_| {},
            )
            .map_err(e2s)?;
            let (pw, pb) = m.pooler.as_ref().ok_or("no pooler")?;
            hone_encoder::export::export_classifier(
                &m.encoder,
                (pw.as_tensor(), pb.as_tensor()),
                (m.weight.as_tensor(), m.bias.as_tensor()),
                &labels,
                &base,
                max_len,
                &out,
            )
            .map_err(e2s)?;
            // One text at a time, as the checker does.
            for t in &probe {
                let (l, _) = m.predict_logits(&p.tokenizer, &[t], 1).map_err(e2s)?;
                lines.push(json!({"text": t, "logits": l}).to_string());
            }
        }
        "mean" => {
            let m = classifier(&p, Pooling::Mean, labels.len(), 0)?;
            let cfg = FinetuneConfig {
                epochs: 1,
                batch_size: 16,
                lr: 5e-5,
                patience: 0,
                ..FinetuneConfig::default()
            };
            finetune(
                &m,
                &p.tokenizer,
                &x,
                &y,
                None,
                &cfg,
                None,
                &mut |_, _| {},
                &mut |_| {},
            )
            .map_err(e2s)?;
            let head = LinearHead {
                classes: labels.len(),
                dim: p.config.hidden_size,
                weight: m
                    .weight
                    .as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1())
                    .map_err(|e| e.to_string())?,
                bias: m.bias.as_tensor().to_vec1().map_err(|e| e.to_string())?,
                c: 0.0,
            };
            hone_encoder::export::export_sentence_transformer(
                &m.encoder,
                p.pooler.as_ref().map(|(w, b)| (w, b)),
                false,
                Some((&head, &labels)),
                &base,
                max_len,
                &out,
            )
            .map_err(e2s)?;
            for t in &probe {
                let e = embed(
                    &m.encoder,
                    &p.tokenizer,
                    &[t],
                    Pooling::Mean,
                    false,
                    1,
                    &mut |_, _| {},
                )
                .map_err(e2s)?;
                lines.push(json!({"text": t, "embedding": e.data}).to_string());
            }
        }
        o => return Err(format!("--kind {o}: use cls or mean")),
    }
    let exp = out.join("expected.jsonl");
    std::fs::write(&exp, lines.join("\n") + "\n").map_err(|e| e.to_string())?;
    Ok(json!({"side": "hone_export", "kind": kind, "dir": out, "expected": exp, "n": probe.len()}))
}

/// Reads poison_bench's `seedN_train.jsonl` (text, label, poisoned, flagged) and `seedN_triggered.jsonl`.
fn load_dump(path: &str) -> Res<Vec<(String, String, bool, bool)>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{path}:{}: {e}", i + 1))?;
        out.push((
            v["text"]
                .as_str()
                .ok_or(format!("{path}:{}: text", i + 1))?
                .to_string(),
            v["label"]
                .as_str()
                .ok_or(format!("{path}:{}: label", i + 1))?
                .to_string(),
            v["poisoned"].as_bool().unwrap_or(false),
            v["flagged"].as_bool().unwrap_or(false),
        ));
    }
    Ok(out)
}

fn poison(a: &Args) -> Res<serde_json::Value> {
    let p = Pretrained::load(std::path::Path::new(&model_dir(a)), 128).map_err(e2s)?;
    let dump = a.req("--dump")?;
    let test = load(&a.req("--test")?)?;
    let c = a.num("--c", 10.0f64)?;
    let seeds: Vec<u64> = a
        .get("--seeds")
        .unwrap_or_else(|| "1,2,3".into())
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| format!("--seeds: {s}")))
        .collect::<Res<_>>()?;
    let d = p.config.hidden_size;
    let mut cache: std::collections::HashMap<String, Vec<f32>> = std::collections::HashMap::new();
    let mut embed_all = |texts: &[&str]| -> Res<Vec<f32>> {
        let todo: Vec<&str> = {
            let mut seen = std::collections::HashSet::new();
            texts
                .iter()
                .copied()
                .filter(|t| !cache.contains_key(*t) && seen.insert(*t))
                .collect()
        };
        if !todo.is_empty() {
            eprintln!("poison: embedding {} texts", todo.len());
            let e = embed(
                &p.encoder,
                &p.tokenizer,
                &todo,
                Pooling::Mean,
                true,
                64,
                &mut |_, _| {},
            )
            .map_err(e2s)?;
            for (i, t) in todo.iter().enumerate() {
                cache.insert(t.to_string(), e.data[i * d..(i + 1) * d].to_vec());
            }
        }
        Ok(texts
            .iter()
            .flat_map(|t| cache[*t].iter().copied())
            .collect())
    };
    let mut runs = Vec::new();
    for seed in seeds {
        let train = load_dump(&format!("{dump}/seed{seed}_train.jsonl"))?;
        let trig = load_dump(&format!("{dump}/seed{seed}_triggered.jsonl"))?;
        let pairs: Vec<(String, String)> =
            train.iter().map(|r| (r.0.clone(), r.1.clone())).collect();
        let (labels, index) = labels_of(&pairs);
        let (tx, ty) = xy(&pairs, &index);
        let (sx, sy) = xy(&test, &index);
        let target = trig
            .first()
            .map(|r| index[&r.1])
            .ok_or("empty triggered set")?;
        let trig_x: Vec<&str> = trig.iter().map(|r| r.0.as_str()).collect();
        let ex = embed_all(&tx)?;
        let es = embed_all(&sx)?;
        let et = embed_all(&trig_x)?;
        let eval = |keep: &[usize]| -> Res<(f64, f64)> {
            let xs: Vec<f32> = keep
                .iter()
                .flat_map(|&i| ex[i * d..(i + 1) * d].iter().copied())
                .collect();
            let ys: Vec<u32> = keep.iter().map(|&i| ty[i]).collect();
            let (h, _) = LinearHead::fit(
                Rows { data: &xs, dim: d },
                Targets::Hard(&ys),
                labels.len(),
                c,
                1000,
                None,
            )
            .map_err(e2s)?;
            let acc = acc_of(&h.predict(Rows { data: &es, dim: d }).map_err(e2s)?, &sy);
            let pt = h.predict(Rows { data: &et, dim: d }).map_err(e2s)?;
            let asr = pt.iter().filter(|&&q| q == target).count() as f64 / pt.len().max(1) as f64;
            Ok((acc, asr))
        };
        let all: Vec<usize> = (0..tx.len()).collect();
        let kept: Vec<usize> = (0..tx.len()).filter(|&i| !train[i].3).collect();
        let clean: Vec<usize> = (0..tx.len()).filter(|&i| !train[i].2).collect();
        let (acc0, asr0) = eval(&all)?;
        let (acc1, asr1) = eval(&kept)?;
        let (accc, asrc) = eval(&clean)?;
        let flagged = train.iter().filter(|r| r.3).count();
        let tp = train.iter().filter(|r| r.3 && r.2).count();
        eprintln!(
            "poison: seed {seed}: no defence acc {acc0:.4} ASR {asr0:.4}; defended acc {acc1:.4} ASR {asr1:.4}"
        );
        runs.push(json!({
            "seed": seed, "target": labels[target as usize], "n_train": tx.len(), "n_triggered_test": trig.len(),
            "no_defence": {"accuracy": acc0, "asr": asr0},
            "defended": {"accuracy": acc1, "asr": asr1, "n_train": kept.len()},
            "poison_removed_oracle": {"accuracy": accc, "asr": asrc},
            "scan": {"flagged": flagged, "true_pos": tp},
        }));
    }
    Ok(json!({"side": "hone_frozen_minilm_poison", "c": c, "runs": runs}))
}
