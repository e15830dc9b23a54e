//! Fine-tuning on tiny random BERTs: gradient accumulation is exact, checkpoints resume exactly, training
//! learns, the frozen head and the contrastive phase work, and exports carry Hugging Face names.

use std::path::PathBuf;

use candle_core::Device;
use hone_encoder::bert::SeededRng;
use hone_encoder::finetune::{
    Checkpoints, ContrastiveConfig, batch_gradients, contrastive, contrastive_pairs, finetune,
};
use hone_encoder::{
    Classifier, FinetuneConfig, LinearHead, Pooling, Pretrained, Rows, Targets, embed,
};

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hone-ft-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tiny(name: &str, seed: u64) -> Pretrained {
    let d = scratch(name);
    hone_encoder::testing::write_tiny_model(&d, seed).unwrap();
    Pretrained::load(&d, 16).unwrap()
}

/// Three classes with their own words, mixed with shared filler; seeded.
fn task(n: usize, seed: u64) -> (Vec<String>, Vec<u32>) {
    let pools: [&[&str]; 3] = [
        &["card", "lost", "pin", "blocked"],
        &["refund", "money", "transfer", "failed", "fee"],
        &["win", "prize", "free", "cash", "call"],
    ];
    let filler = [
        "my", "the", "please", "i", "want", "to", "now", "help", "me",
    ];
    let mut rng = SeededRng::new(seed);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for i in 0..n {
        let c = i % 3;
        let len = 3 + (rng.next_u64() % 5) as usize;
        let words: Vec<&str> = (0..len)
            .map(|_| {
                if rng.uniform() < 0.5 {
                    pools[c][(rng.next_u64() % pools[c].len() as u64) as usize]
                } else {
                    filler[(rng.next_u64() % filler.len() as u64) as usize]
                }
            })
            .collect();
        x.push(words.join(" "));
        y.push(c as u32);
    }
    (x, y)
}

fn params(m: &Classifier) -> Vec<(String, Vec<f32>)> {
    m.named_vars()
        .unwrap()
        .into_iter()
        .map(|(n, v)| {
            (
                n,
                v.as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect()
}

fn max_diff(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> f32 {
    let mut d = 0.0f32;
    for ((na, va), (nb, vb)) in a.iter().zip(b) {
        assert_eq!(na, nb);
        for (x, y) in va.iter().zip(vb) {
            d = d.max((x - y).abs());
        }
    }
    d
}

fn classifier(p: &Pretrained, pooling: Pooling, seed: u64) -> Classifier {
    let enc =
        hone_encoder::BertEncoder::load(&p.config, &p.dir.join("model.safetensors"), &Device::Cpu)
            .unwrap();
    Classifier::new(enc, pooling, p.pooler.clone(), 3, seed).unwrap()
}

#[test]
fn accumulated_micro_batches_give_the_update_of_one_batch() {
    let p = tiny("accum", 1);
    let (x, y) = task(8, 2);
    let xs: Vec<&str> = x.iter().map(String::as_str).collect();
    let base = FinetuneConfig {
        epochs: 1,
        batch_size: 8,
        grad_accum: 1,
        lr: 1e-3,
        dropout: false,
        patience: 0,
        max_grad_norm: 1.0,
        ..FinetuneConfig::default()
    };
    let one = classifier(&p, Pooling::Cls, 3);
    finetune(
        &one,
        &p.tokenizer,
        &xs,
        &y,
        None,
        &base,
        None,
        &mut |_, _| {},
        &mut |_| {},
    )
    .unwrap();
    let four = classifier(&p, Pooling::Cls, 3);
    let acc = FinetuneConfig {
        grad_accum: 4,
        ..base.clone()
    };
    finetune(
        &four,
        &p.tokenizer,
        &xs,
        &y,
        None,
        &acc,
        None,
        &mut |_, _| {},
        &mut |_| {},
    )
    .unwrap();
    let start = params(&classifier(&p, Pooling::Cls, 3));
    let (a, b) = (params(&one), params(&four));
    let moved = max_diff(&start, &a);
    assert!(moved > 1e-4, "the step did not move the weights ({moved})");
    let d = max_diff(&a, &b);
    assert!(
        d < 2e-6,
        "4 accumulated micro-batches of 2 differ from one batch of 8 by {d}"
    );
    // The gradients themselves, for eight micro-batches of one (mean pooling, so padding matters):
    // Adam's sign-like first step would amplify float noise in near-zero gradients, the gradients do not.
    let m = classifier(&p, Pooling::Mean, 3);
    let vars: Vec<_> = m
        .named_vars()
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    let all: Vec<usize> = (0..8).collect();
    let (g1, l1, _) = batch_gradients(&m, &p.tokenizer, &xs, &y, &all, 8, None, &vars).unwrap();
    let (g8, l8, _) = batch_gradients(&m, &p.tokenizer, &xs, &y, &all, 1, None, &vars).unwrap();
    assert!((l1 - l8).abs() < 1e-6, "losses {l1} vs {l8}");
    let (mut worst, mut scale) = (0.0f32, 0.0f32);
    for v in &vars {
        let a = g1
            .get(v.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let b = g8
            .get(v.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            worst = worst.max((x - y).abs());
            scale = scale.max(x.abs());
        }
    }
    assert!(scale > 1e-3, "gradients are not trivially zero");
    assert!(
        worst <= 1e-5 * scale,
        "gradients differ by {worst} (largest {scale})"
    );
}

#[test]
fn fine_tuning_learns_and_keeps_the_best_dev_epoch() {
    let p = tiny("learn", 4);
    let (x, y) = task(90, 5);
    let (dx, dy) = task(30, 6);
    let xs: Vec<&str> = x.iter().map(String::as_str).collect();
    let dxs: Vec<&str> = dx.iter().map(String::as_str).collect();
    let m = classifier(&p, Pooling::Cls, 7);
    let cfg = FinetuneConfig {
        epochs: 6,
        batch_size: 10,
        lr: 3e-3,
        warmup_ratio: 0.1,
        patience: 3,
        ..FinetuneConfig::default()
    };
    let mut logs = Vec::new();
    let rep = finetune(
        &m,
        &p.tokenizer,
        &xs,
        &y,
        Some((&dxs, &dy)),
        &cfg,
        None,
        &mut |_, _| {},
        &mut |l| logs.push(l.clone()),
    )
    .unwrap();
    assert_eq!(logs.len(), rep.epochs.len());
    let first = rep.epochs[0].train_loss;
    let last = rep.epochs.last().unwrap().train_loss;
    assert!(last < first * 0.7, "loss {first} -> {last}");
    let best = rep
        .epochs
        .iter()
        .filter_map(|e| e.dev_accuracy)
        .fold(0.0, f64::max);
    assert!(best >= 0.8, "dev accuracy {best} (chance is 0.33)");
    // The model in hand is the best epoch's.
    let (logits, _) = m.predict_logits(&p.tokenizer, &dxs, 16).unwrap();
    let acc = logits
        .chunks(3)
        .zip(&dy)
        .filter(|(r, g)| hone_encoder::head::argmax(r) == **g)
        .count() as f64
        / dy.len() as f64;
    assert!((acc - best).abs() < 1e-9, "kept {acc}, best was {best}");
}

#[test]
fn a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one() {
    let p = tiny("resume", 8);
    let (x, y) = task(24, 9);
    let (dx, dy) = task(9, 10);
    let xs: Vec<&str> = x.iter().map(String::as_str).collect();
    let dxs: Vec<&str> = dx.iter().map(String::as_str).collect();
    let cfg = FinetuneConfig {
        epochs: 3,
        batch_size: 8,
        lr: 2e-3,
        warmup_ratio: 0.2,
        patience: 0,
        ..FinetuneConfig::default()
    };
    let straight = classifier(&p, Pooling::Cls, 11);
    finetune(
        &straight,
        &p.tokenizer,
        &xs,
        &y,
        Some((&dxs, &dy)),
        &cfg,
        None,
        &mut |_, _| {},
        &mut |_| {},
    )
    .unwrap();
    let dir = scratch("resume-ck");
    let first = classifier(&p, Pooling::Cls, 11);
    let ck = Checkpoints {
        dir: dir.clone(),
        stop_after_epoch: Some(0),
    };
    let r1 = finetune(
        &first,
        &p.tokenizer,
        &xs,
        &y,
        Some((&dxs, &dy)),
        &cfg,
        Some(&ck),
        &mut |_, _| {},
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(r1.epochs.len(), 1, "interrupted after the first epoch");
    assert!(dir.join("checkpoint.safetensors").is_file());
    // A fresh process would start from the base weights: the checkpoint restores everything.
    let resumed = classifier(&p, Pooling::Cls, 99);
    let ck = Checkpoints {
        dir,
        stop_after_epoch: None,
    };
    let r2 = finetune(
        &resumed,
        &p.tokenizer,
        &xs,
        &y,
        Some((&dxs, &dy)),
        &cfg,
        Some(&ck),
        &mut |_, _| {},
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(r2.resumed_from_epoch, Some(0));
    assert_eq!(r2.epochs.len(), 3);
    let d = max_diff(&params(&straight), &params(&resumed));
    assert!(d == 0.0, "resumed weights differ by {d}");
    // Other settings against the same checkpoint are refused.
    let other = FinetuneConfig { lr: 1e-3, ..cfg };
    let err = finetune(
        &resumed,
        &p.tokenizer,
        &xs,
        &y,
        None,
        &other,
        Some(&ck),
        &mut |_, _| {},
        &mut |_| {},
    );
    assert!(err.is_err());
}

#[test]
fn frozen_embeddings_with_a_head_and_contrastive_training_work() {
    let p = tiny("frozen", 12);
    let (x, y) = task(60, 13);
    let (tx, ty) = task(30, 14);
    let xs: Vec<&str> = x.iter().map(String::as_str).collect();
    let txs: Vec<&str> = tx.iter().map(String::as_str).collect();
    let e = embed(
        &p.encoder,
        &p.tokenizer,
        &xs,
        Pooling::Mean,
        true,
        7,
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(e.data.len(), 60 * 32);
    // Length-grouped batching gives the same vectors as one text at a time.
    let single = embed(
        &p.encoder,
        &p.tokenizer,
        &xs[5..6],
        Pooling::Mean,
        true,
        1,
        &mut |_, _| {},
    )
    .unwrap();
    for (a, b) in single.data.iter().zip(&e.data[5 * 32..6 * 32]) {
        assert!((a - b).abs() < 1e-5);
    }
    let te = embed(
        &p.encoder,
        &p.tokenizer,
        &txs,
        Pooling::Mean,
        true,
        16,
        &mut |_, _| {},
    )
    .unwrap();
    let (h, rep) = LinearHead::fit_select(
        Rows {
            data: &e.data,
            dim: 32,
        },
        Targets::Hard(&y),
        3,
        Some((
            Rows {
                data: &te.data,
                dim: 32,
            },
            &ty,
        )),
        &[1.0, 100.0, 10000.0],
    )
    .unwrap();
    assert_eq!(rep.tried.len(), 3);
    let acc = h
        .predict(Rows {
            data: &te.data,
            dim: 32,
        })
        .unwrap()
        .iter()
        .zip(&ty)
        .filter(|(a, b)| a == b)
        .count() as f64
        / ty.len() as f64;
    assert!(acc > 0.5, "frozen head accuracy {acc} (chance is 0.33)");

    let pairs = contrastive_pairs(&y, 2, 1);
    assert_eq!(pairs.len(), 2 * 2 * y.len());
    assert!(
        pairs
            .iter()
            .all(|&(i, j, t)| (y[i] == y[j]) == (t == 1.0) && i != j)
    );
    let cfg = ContrastiveConfig {
        iterations: 4,
        epochs: 3,
        batch_size: 16,
        lr: 2e-3,
        ..ContrastiveConfig::default()
    };
    let losses = contrastive(
        &p.encoder,
        Pooling::Mean,
        &p.tokenizer,
        &xs,
        &y,
        &cfg,
        &mut |_, _| {},
    )
    .unwrap();
    assert!(losses[2] < losses[0] * 0.8, "contrastive loss {losses:?}");
}

#[test]
fn exports_carry_hugging_face_names_and_labels() {
    let p = tiny("export", 15);
    let m = classifier(&p, Pooling::Cls, 16);
    let out = scratch("export-out");
    let (pw, pb) = m.pooler.as_ref().unwrap();
    let labels: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
    hone_encoder::export::export_classifier(
        &m.encoder,
        (pw.as_tensor(), pb.as_tensor()),
        (m.weight.as_tensor(), m.bias.as_tensor()),
        &labels,
        &p.dir,
        16,
        &out,
    )
    .unwrap();
    let t = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
    for name in [
        "bert.embeddings.word_embeddings.weight",
        "bert.encoder.layer.1.output.LayerNorm.bias",
        "bert.pooler.dense.weight",
        "classifier.weight",
        "classifier.bias",
    ] {
        assert!(t.contains_key(name), "{name} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["id2label"]["2"], "c");
    assert_eq!(cfg["label2id"]["b"], 1);
    let tok: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("tokenizer.json")).unwrap())
            .unwrap();
    assert_eq!(tok["truncation"]["max_length"], 16);
    assert!(tok["padding"].is_null());
    // The exported weights reload into the same logits.
    let back = Pretrained::load(&out, 16);
    assert!(
        back.is_ok(),
        "bert.-prefixed weights load back: {:?}",
        back.err()
    );

    let st = scratch("export-st");
    hone_encoder::export::export_sentence_transformer(
        &p.encoder, None, true, None, &p.dir, 16, &st,
    )
    .unwrap();
    for f in [
        "modules.json",
        "1_Pooling/config.json",
        "sentence_bert_config.json",
        "model.safetensors",
    ] {
        assert!(st.join(f).is_file(), "{f} missing");
    }
}

#[test]
fn linear_probe_initialisation_installs_the_frozen_solution() {
    let p = tiny("probe", 11);
    let (x, y) = task(90, 12);
    let xs: Vec<&str> = x.iter().map(String::as_str).collect();
    for pooling in [Pooling::Mean, Pooling::Cls] {
        let m = classifier(&p, pooling, 5);
        let random_logits = m.predict_logits(&p.tokenizer, &xs, 16).unwrap().0;
        let cfg = FinetuneConfig {
            epochs: 0,
            probe_init: Some(10.0),
            ..FinetuneConfig::default()
        };
        let rep = finetune(
            &m,
            &p.tokenizer,
            &xs,
            &y,
            Some((&xs, &y)),
            &cfg,
            None,
            &mut |_, _| {},
            &mut |_| {},
        )
        .unwrap();
        let probe = rep.probe.expect("probe report");
        // The installed classifier computes exactly the probe: its eval-mode accuracy is the probe's.
        assert_eq!(
            probe.dev_accuracy,
            Some(probe.train_accuracy),
            "{pooling:?}"
        );
        // The probe's head is the L-BFGS fit on the head features, not the random start.
        let feats = m.head_features(&p.tokenizer, &xs, 16).unwrap();
        let h = p.config.hidden_size;
        let (head, _) = LinearHead::fit(
            Rows {
                data: &feats,
                dim: h,
            },
            Targets::Hard(&y),
            3,
            10.0,
            500,
            None,
        )
        .unwrap();
        let want = head
            .logits(Rows {
                data: &feats,
                dim: h,
            })
            .unwrap();
        let got = m.predict_logits(&p.tokenizer, &xs, 16).unwrap().0;
        let d = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-3, "{pooling:?}: installed head differs by {d}");
        let moved = random_logits
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            moved > 0.1,
            "{pooling:?}: the head did not change ({moved})"
        );
        // The words separate the classes; the probe on frozen random features finds most of it.
        assert!(
            probe.train_accuracy > 0.6,
            "{pooling:?}: {}",
            probe.train_accuracy
        );
    }
    let m = classifier(&p, Pooling::Mean, 5);
    let bad = FinetuneConfig {
        epochs: 0,
        probe_init: Some(0.0),
        ..FinetuneConfig::default()
    };
    let err = finetune(
        &m,
        &p.tokenizer,
        &xs,
        &y,
        None,
        &bad,
        None,
        &mut |_, _| {},
        &mut |_| {},
    )
    .expect_err("C = 0 is refused");
    assert!(err.to_string().contains("probe_init"), "{err}");
}
