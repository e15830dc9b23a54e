//! Behavioural tests of the `ngram` classifier: learning, probabilities, persistence, batching,
//! determinism, early stopping and error handling.

use hone_model::{MajorityModel, NgramConfig, NgramModel};

/// Tiny deterministic generator for the toy corpora.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

const FILLER: &[&str] = &[
    "the", "a", "is", "very", "quite", "today", "my", "some", "and", "then", "what", "how",
];
const KEYS: &[&[&str]] = &[
    &["apple", "banana", "cherry"],
    &["truck", "car", "bicycle"],
    &["red", "blue", "green"],
];

fn names(k: usize) -> Vec<String> {
    (0..k).map(|i| format!("class{i}")).collect()
}

/// Separable: each text has one keyword of its class among filler words.
fn toy(n_per_class: usize, seed: u64) -> (Vec<String>, Vec<u32>) {
    let mut r = Lcg(seed);
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for _ in 0..n_per_class {
        for (c, keys) in KEYS.iter().enumerate() {
            let mut words: Vec<&str> = (0..4).map(|_| FILLER[r.next(FILLER.len())]).collect();
            words.insert(r.next(5), keys[r.next(keys.len())]);
            xs.push(words.join(" "));
            ys.push(c as u32);
        }
    }
    (xs, ys)
}

fn small_cfg() -> NgramConfig {
    NgramConfig {
        buckets: 1 << 16,
        threads: 1,
        ..NgramConfig::default()
    }
}

fn fit(xs: &[String], ys: &[u32], cfg: &NgramConfig) -> NgramModel {
    let x: Vec<&str> = xs.iter().map(|s| s.as_str()).collect();
    NgramModel::fit(&x, ys, &names(3), None, cfg, &mut |_| {})
        .unwrap()
        .0
}

#[test]
fn learns_separable_toy_problem_and_probabilities_sum_to_one() {
    let (xs, ys) = toy(30, 1);
    let m = fit(&xs, &ys, &small_cfg());
    let (tx, ty) = toy(20, 99);
    for (t, &y) in tx.iter().zip(&ty) {
        let p = m.predict_proba(t);
        assert_eq!(p.len(), 3);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{p:?}");
        assert!(p.iter().all(|v| v.is_finite() && *v >= 0.0));
        assert_eq!(m.predict(t), y, "{t}");
    }
    // Empty and odd texts still give a distribution.
    for t in ["", "   ", "☃☃☃ 日本語", "\u{0}"] {
        let p = m.predict_proba(t);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    assert_eq!(m.labels(), names(3).as_slice());
}

#[test]
fn save_load_roundtrip_and_batch_equals_single() {
    let (xs, ys) = toy(20, 2);
    let mut m = fit(&xs, &ys, &small_cfg());
    let dir = std::env::temp_dir().join(format!("hone-ngram-test-{}", std::process::id()));
    m.save(&dir).unwrap();
    let back = NgramModel::load(&dir).unwrap();
    assert_eq!(back, m);
    let (tx, _) = toy(40, 3);
    let texts: Vec<&str> = tx.iter().map(|s| s.as_str()).collect();
    m.set_threads(2);
    let batch = m.predict_proba_batch(&texts);
    assert_eq!(batch.len(), texts.len());
    for (t, p) in texts.iter().zip(&batch) {
        assert_eq!(&m.predict_proba(t), p);
        assert_eq!(&back.predict_proba(t), p);
    }
    // Corrupt and missing files are errors that name the file.
    std::fs::write(dir.join("model.safetensors"), b"garbage").unwrap();
    let e = NgramModel::load(&dir).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    std::fs::write(dir.join("model.json"), b"{\"format\": 1").unwrap();
    let e = NgramModel::load(&dir).unwrap_err().to_string();
    assert!(e.contains("model.json"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    let e = NgramModel::load(&dir).unwrap_err().to_string();
    assert!(e.contains("model.json"), "{e}");
}

#[test]
fn deterministic_for_a_seed_and_across_thread_counts() {
    let (xs, ys) = toy(20, 4);
    let a = fit(&xs, &ys, &small_cfg());
    let b = fit(&xs, &ys, &small_cfg());
    assert_eq!(a.weights(), b.weights());
    assert_eq!(a.bias(), b.bias());
    let c = fit(
        &xs,
        &ys,
        &NgramConfig {
            threads: 2,
            ..small_cfg()
        },
    );
    assert_eq!(a.weights(), c.weights());
    let d = fit(
        &xs,
        &ys,
        &NgramConfig {
            seed: 7,
            ..small_cfg()
        },
    );
    assert_ne!(a.weights(), d.weights());
}

#[test]
fn early_stopping_triggers_on_noise() {
    let mut r = Lcg(5);
    let words = [
        "alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta",
    ];
    let xs: Vec<String> = (0..300)
        .map(|_| {
            (0..5)
                .map(|_| words[r.next(8)])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let ys: Vec<u32> = (0..300).map(|_| r.next(3) as u32).collect();
    let x: Vec<&str> = xs.iter().map(|s| s.as_str()).collect();
    let cfg = NgramConfig {
        max_epochs: 40,
        patience: 2,
        l2_grid: vec![1.0],
        ..small_cfg()
    };
    let mut seen = 0;
    let (_, rep) = NgramModel::fit(&x, &ys, &names(3), None, &cfg, &mut |_| seen += 1).unwrap();
    assert!(rep.stopped_early, "{rep:?}");
    assert!(rep.epochs.len() < 40);
    assert_eq!(seen, rep.epochs.len());
    assert_eq!(rep.epochs.len(), rep.best_epoch + 2);
}

#[test]
fn explicit_dev_set_and_binary() {
    let (xs, ys) = toy(15, 6);
    // Binary: keep classes 0 and 1.
    let (bx, by): (Vec<&str>, Vec<u32>) = xs
        .iter()
        .zip(&ys)
        .filter(|(_, y)| **y < 2)
        .map(|(x, y)| (x.as_str(), *y))
        .unzip();
    let (dx, dy) = (&bx[..10], &by[..10]);
    let (m, rep) = NgramModel::fit(
        &bx,
        &by,
        &names(2),
        Some((dx, dy)),
        &small_cfg(),
        &mut |_| {},
    )
    .unwrap();
    assert!(!rep.dev_carved && rep.refit_epochs == 0 && rep.n_dev == 10);
    for (t, &y) in bx.iter().zip(&by) {
        assert_eq!(m.predict(t), y);
    }
}

#[test]
fn errors_are_returned_not_panics() {
    let n3 = names(3);
    let cfg = small_cfg();
    let run = |x: &[&str], y: &[u32], n: &[String], cfg: &NgramConfig| {
        NgramModel::fit(x, y, n, None, cfg, &mut |_| {}).map(|_| ())
    };
    assert!(run(&[], &[], &n3, &cfg).is_err());
    assert!(run(&["a", "b"], &[0], &n3, &cfg).is_err());
    assert!(run(&["a", "b"], &[0, 0], &n3, &cfg).is_err()); // a single class
    assert!(run(&["a", "b"], &[0, 5], &n3, &cfg).is_err()); // out of range
    assert!(run(&["a", "b"], &[0, 1], &n3[..1], &cfg).is_err());
    assert!(
        run(
            &["a", "b"],
            &[0, 1],
            &n3,
            &NgramConfig {
                buckets: 0,
                ..cfg.clone()
            }
        )
        .is_err()
    );
    assert!(
        run(
            &["a", "b"],
            &[0, 1],
            &n3,
            &NgramConfig {
                l2_grid: vec![],
                ..cfg.clone()
            }
        )
        .is_err()
    );
    assert!(
        run(
            &["a", "b"],
            &[0, 1],
            &n3,
            &NgramConfig {
                char_ngrams: (3, 2),
                ..cfg.clone()
            }
        )
        .is_err()
    );
    let dev = NgramModel::fit(
        &["a", "b"],
        &[0, 1],
        &n3,
        Some((&["x"], &[9])),
        &cfg,
        &mut |_| {},
    );
    assert!(dev.is_err());
    // Tiny but valid: two examples of two classes (nothing to carve: train doubles as dev).
    assert!(run(&["a", "b"], &[0, 1], &n3, &cfg).is_ok());
    assert!(MajorityModel::fit(&[], &n3).is_err());
    let m = MajorityModel::fit(&[2, 2, 1], &n3).unwrap();
    assert_eq!(m.predict("x"), 2);
}

#[test]
fn distillation_follows_the_soft_targets_it_is_given() {
    let (xs, ys) = toy(30, 5);
    let m = fit(&xs, &ys, &small_cfg());
    let x: Vec<&str> = xs.iter().map(|s| s.as_str()).collect();
    // A "teacher" that agrees with the labels, softened: 0.8 on the gold class.
    let soft: Vec<f32> = ys
        .iter()
        .flat_map(|&y| (0..3).map(move |c| if c == y { 0.8 } else { 0.1 }))
        .collect();
    let (tx, ty) = toy(20, 77);
    let t: Vec<&str> = tx.iter().map(|s| s.as_str()).collect();
    let (student, losses) = m
        .distill(&x, &soft, Some((&t, &ty)), 10, 0.5, 1e-6, 3)
        .unwrap();
    assert_eq!(losses.len(), 10);
    assert!(losses[9] < losses[0], "{losses:?}");
    let acc = t
        .iter()
        .zip(&ty)
        .filter(|(s, y)| student.predict(s) == **y)
        .count() as f64
        / ty.len() as f64;
    assert!(acc > 0.95, "student accuracy {acc}");
    // A teacher that swaps classes 0 and 1 is followed: the student learns the teacher, not the labels.
    let swapped: Vec<f32> = ys
        .iter()
        .flat_map(|&y| {
            let y = [1, 0, 2][y as usize];
            (0..3).map(move |c| if c == y { 0.9 } else { 0.05 })
        })
        .collect();
    let (student, _) = m.distill(&x, &swapped, None, 10, 0.5, 1e-6, 3).unwrap();
    let follows = t
        .iter()
        .zip(&ty)
        .filter(|(s, y)| student.predict(s) == [1, 0, 2][**y as usize])
        .count() as f64
        / ty.len() as f64;
    assert!(follows > 0.95, "student follows the teacher on {follows}");
    // Wrong shapes are a usage error, not a panic.
    assert!(m.distill(&x, &soft[..6], None, 1, 0.5, 0.0, 1).is_err());
}
