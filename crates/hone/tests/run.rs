//! End-to-end tests of `hone run` on the generated demo project: a planted test-set leak stops training
//! (exit 4), identical inputs give identical metrics, `kill -9` and a rerun give the uninterrupted result,
//! `compare` tells seeds apart from real gains, gates fail with exit 3, the frozen test set holds.

mod common;

use std::path::Path;

use common::{hone, set_policy, stderr, stdout};
use hone_train::demo::write_project;

fn project(n_base: usize) -> (tempfile::TempDir, hone_train::demo::Manifest) {
    let dir = tempfile::tempdir().unwrap();
    let m = write_project(dir.path(), 7, n_base).unwrap();
    (dir, m)
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p))
        } else {
            out.push(p)
        }
    }
    out
}

fn run_json(dir: &Path) -> serde_json::Value {
    let o = hone(dir, &["--json", "run"]);
    assert!(
        matches!(o.status.code(), Some(0) | Some(3)),
        "exit {:?}: {}",
        o.status.code(),
        stderr(&o)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn planted_leak_stops_training_with_a_clear_report() {
    let (dir, m) = project(600);
    let o = hone(dir.path(), &["run"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "contamination exits 4: {}",
        stderr(&o)
    );
    let err = stderr(&o);
    for (train, test) in &m.leaks {
        assert!(
            err.contains(&format!("test {test} ~ train {train}")),
            "leak {train} ~ {test} not reported:\n{err}"
        );
    }
    assert!(
        err.contains("drop_train"),
        "the hint names the remedy: {err}"
    );
    // Scripts get every pair, with its rule and that rule's similarity, not the message's first 25.
    let o = hone(dir.path(), &["--json", "split"]);
    assert_eq!(o.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let pairs = v["contamination"].as_array().unwrap();
    let n: usize = stderr(&o)
        .split("contamination: ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert_eq!(pairs.len(), n);
    for (train, test) in &m.leaks {
        let p = pairs
            .iter()
            .find(|p| p["test_id"] == *test && p["train_id"] == *train)
            .unwrap_or_else(|| panic!("{train} ~ {test} missing from --json"));
        assert!(hone_data::contamination::RULES.contains(&p["kind"].as_str().unwrap()));
        assert!(p["similarity"].as_f64().unwrap() > 0.0);
    }
    let runs = hone(dir.path(), &["--json", "runs"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&runs.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        0,
        "nothing trained"
    );
    // The remedy drops the leaked training records, records why, and never touches the test set.
    set_policy(dir.path(), "contamination = \"drop_train\"");
    let v = run_json(dir.path());
    assert!(v["chosen"].is_string());
    // The suite's private-data traps (a card number and an e-mail) never reach the store or a report.
    for trap in [
        "4111 1111 1111 1111",
        "4111111111111111",
        "jane.doe@example.com",
    ] {
        for sub in [".hone", "reports"] {
            for entry in walk(&dir.path().join(sub)) {
                let bytes = std::fs::read(&entry).unwrap();
                assert!(
                    !String::from_utf8_lossy(&bytes).contains(trap),
                    "{trap} leaked into {}",
                    entry.display()
                );
            }
        }
    }
    for (train, test) in &m.leaks {
        let why = stdout(&hone(dir.path(), &["data", "why", train]));
        assert!(
            why.contains("contamination_") && why.contains(test.as_str()),
            "{why}"
        );
    }
}

#[test]
fn same_inputs_give_identical_metrics_and_a_rerun_is_cached() {
    let (a, _) = project(500);
    let (b, _) = project(500);
    set_policy(a.path(), "contamination = \"drop_train\"");
    set_policy(b.path(), "contamination = \"drop_train\"");
    let ra = run_json(a.path());
    let rb = run_json(b.path());
    assert_eq!(
        ra["metrics"], rb["metrics"],
        "metrics differ between identical runs"
    );
    assert_eq!(ra["chosen"], rb["chosen"], "run ids are content hashes");
    let again = run_json(a.path());
    assert!(
        again["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["cached"] == true)
    );
}

#[test]
fn kill_9_during_run_then_rerun_matches_an_uninterrupted_run() {
    let (reference_dir, _) = project(1200);
    set_policy(reference_dir.path(), "contamination = \"drop_train\"");
    let reference = run_json(reference_dir.path());
    let mut killed_mid_run = 0;
    for delay_ms in [10u64, 40, 80, 150, 250, 400] {
        let (dir, _) = project(1200);
        set_policy(dir.path(), "contamination = \"drop_train\"");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hone"))
            .arg("-C")
            .arg(dir.path())
            .arg("run")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().ok();
        child.wait().unwrap();
        let v = run_json(dir.path());
        assert_eq!(
            v["metrics"], reference["metrics"],
            "after kill at {delay_ms} ms"
        );
        assert_eq!(v["chosen"], reference["chosen"]);
        assert!(hone(dir.path(), &["audit", "verify"]).status.success());
    }
    assert!(
        killed_mid_run >= 2,
        "at least two kills must land mid-run (got {killed_mid_run})"
    );
}

#[test]
fn compare_says_indistinguishable_for_seeds_and_better_against_majority() {
    let (dir, _) = project(1200);
    set_policy(dir.path(), "contamination = \"drop_train\"");
    let p = dir.path().join("hone.toml");
    let t = std::fs::read_to_string(&p).unwrap().replace("[[model]]\nname = \"baseline\"\nkind = \"ngram\"", "[[model]]\nname = \"seed-a\"\nkind = \"ngram\"\nparams = { seed = 1 }\n\n[[model]]\nname = \"seed-b\"\nkind = \"ngram\"\nparams = { seed = 2 }");
    std::fs::write(&p, t).unwrap();
    let v = run_json(dir.path());
    let seqs: Vec<i64> = v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 3);
    let cmp = |a: i64, b: i64| -> serde_json::Value {
        let o = hone(
            dir.path(),
            &["--json", "compare", &a.to_string(), &b.to_string()],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let seeds = cmp(seqs[1], seqs[2]);
    assert_eq!(seeds["verdict_text"], "indistinguishable", "{seeds}");
    assert!(
        seeds["config_diff"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d[0].as_str().unwrap().contains("seed")),
        "{seeds}"
    );
    let vs_majority = cmp(seqs[0], seqs[1]);
    assert_eq!(
        vs_majority["verdict_text"], "significantly better",
        "{vs_majority}"
    );
    let text = stdout(&hone(
        dir.path(),
        &["compare", &seqs[0].to_string(), &seqs[1].to_string()],
    ));
    assert!(text.contains("B is significantly better than A."), "{text}");
}

#[test]
fn failed_gate_exits_3_and_unknown_metrics_are_named() {
    let (dir, _) = project(400);
    set_policy(dir.path(), "contamination = \"drop_train\"");
    let p = dir.path().join("hone.toml");
    let t = std::fs::read_to_string(&p).unwrap().replace(
        "accuracy = \">= 0.85\"",
        // Possible in principle (so it passes the check at load), out of reach in practice.
        "p50_latency_ms = \"<= 0.0000001\"\nstrange_pass_rate = \">= 0.5\"",
    );
    std::fs::write(&p, t).unwrap();
    let o = hone(dir.path(), &["--json", "run"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let gates = v["gates"].as_array().unwrap();
    let latency = gates
        .iter()
        .find(|g| g["metric"] == "p50_latency_ms")
        .unwrap();
    assert_eq!(latency["pass"], false);
    let strange = gates
        .iter()
        .find(|g| g["metric"] == "strange_pass_rate")
        .unwrap();
    assert_eq!(strange["pass"], false);
    assert!(
        strange["note"]
            .as_str()
            .unwrap()
            .contains("no suite case is tagged `strange`")
    );
    assert!(
        gates
            .iter()
            .any(|g| g["metric"] == "unsafe_pass_rate" && g["value"].is_number())
    );
}

#[test]
fn predict_keeps_input_order_and_never_uses_majority() {
    let (dir, _) = project(400);
    set_policy(dir.path(), "contamination = \"drop_train\"");
    run_json(dir.path());
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, "{\"id\": \"a\", \"text\": \"I forgot my password and the reset link expired\"}\n{\"id\": \"b\", \"text\": \"my debit card was stolen on the bus, mail me at bob@example.com\"}\n{\"id\": \"c\", \"text\": \"cancel my family subscription please\"}\n").unwrap();
    let o = hone(dir.path(), &["predict", input.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["id"].as_str().unwrap())
            .collect::<Vec<_>>(),
        vec!["a", "b", "c"]
    );
    assert_eq!(lines[0]["label"], "password_reset");
    assert_eq!(lines[1]["label"], "card_lost");
    assert_eq!(lines[2]["label"], "cancel_subscription");
    assert_eq!(lines[0]["top_k"].as_array().unwrap().len(), 3);
    assert!(!stdout(&o).contains("bob@example.com"));
}

#[test]
fn a_changed_frozen_test_record_stops_the_run_until_refreeze() {
    let (dir, _) = project(400);
    set_policy(dir.path(), "contamination = \"drop_train\"");
    run_json(dir.path());
    let p = dir.path().join("data/test.jsonl");
    let text = std::fs::read_to_string(&p).unwrap();
    let first = text.lines().next().unwrap().to_string();
    let mut v: serde_json::Value = serde_json::from_str(&first).unwrap();
    v["label"] = "escalate".into();
    std::fs::write(&p, text.replacen(&first, &v.to_string(), 1)).unwrap();
    let o = hone(dir.path(), &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--refreeze"), "{}", stderr(&o));
    let o = hone(
        dir.path(),
        &[
            "split",
            "--refreeze",
            "--reason",
            "relabelled one test record",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("newly pinned"), "{}", stdout(&o));
    let audit = stdout(&hone(dir.path(), &["--json", "audit", "log"]));
    assert!(audit.contains("relabelled one test record"));
    assert!(matches!(
        hone(dir.path(), &["run"]).status.code(),
        Some(0) | Some(3)
    ));
}

#[test]
fn binary_tasks_choose_and_apply_a_threshold_on_dev() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        hone(
            dir.path(),
            &["init", dir.path().to_str().unwrap(), "--force"]
        )
        .status
        .success()
    );
    // Seed 3 mixed with the golden-ratio constant, modulo draws: the messages this test was tuned on.
    let mut rng = hone_core::rng::SeededRng::new(3 ^ 0x9E37_79B9_7F4A_7C15);
    let ham = [
        "see you at lunch",
        "can you call me later",
        "the meeting moved to friday",
        "thanks for the photos",
        "running late again",
        "what time is dinner",
        "happy birthday to your mum",
        "did you get my message",
    ];
    let spam = [
        "win a free cruise now",
        "claim your prize call now",
        "free entry txt win to",
        "urgent your account won cash",
        "cheap loans text yes now",
    ];
    let mut lines = String::new();
    for i in 0..600 {
        let is_spam = rng.chance(0.2);
        let base = if is_spam {
            *rng.pick(&spam)
        } else {
            *rng.pick(&ham)
        };
        // A tag per message that differs from every other tag in at least two letters (a number, or
        // one letter, would make the messages leaks of one another: `numbers_differ`, `typo`).
        const SYL: [&str; 10] = ["ka", "lo", "mu", "ni", "pe", "ry", "sv", "tx", "wz", "qj"];
        let tag: String = format!("{i:03}")
            .bytes()
            .map(|d| SYL[(d - b'0') as usize])
            .collect();
        let text = format!(
            "{base} {} {tag}",
            ["ok", "pls", "today", "x", "now", "lol", "soon"][rng.below_mod(7)],
        );
        lines.push_str(&serde_json::json!({"id": format!("m{i}"), "text": text, "label": if is_spam { "spam" } else { "ham" }}).to_string());
        lines.push('\n');
    }
    std::fs::write(dir.path().join("data/examples.jsonl"), lines).unwrap();
    let v = run_json(dir.path());
    let t = &v["metrics"]["threshold"];
    assert_eq!(
        t["positive_label"], "spam",
        "the rarer class is positive: {t}"
    );
    assert_eq!(t["applied"], true);
    let thr = t["chosen_on_dev"].as_f64().unwrap();
    assert!(v["metrics"]["pr_auc"].as_f64().unwrap() > 0.9);
    let input = dir.path().join("in.txt");
    std::fs::write(
        &input,
        "claim your free prize now\nsee you at lunch tomorrow\n",
    )
    .unwrap();
    let out: Vec<serde_json::Value> =
        stdout(&hone(dir.path(), &["predict", input.to_str().unwrap()]))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    assert_eq!(out[0]["label"], "spam");
    assert_eq!(out[1]["label"], "ham");
    // The answer follows the threshold, not the argmax: the label is spam exactly when p(spam) >= threshold.
    for o in &out {
        let p_spam = o["top_k"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["label"] == "spam")
            .unwrap()["probability"]
            .as_f64()
            .unwrap();
        assert_eq!(
            o["label"] == "spam",
            p_spam >= thr,
            "{o} vs threshold {thr}"
        );
    }
}

/// The run id `hone predict` reports on stderr.
fn predict_run(dir: &Path) -> String {
    let input = dir.join("in.txt");
    std::fs::write(&input, "where is my refund\n").unwrap();
    let o = hone(dir, &["predict", input.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    let id = e.split('(').nth(1).and_then(|s| s.split(')').next());
    id.unwrap_or_else(|| panic!("no run id in {e}")).to_string()
}

#[test]
fn predict_uses_the_model_run_chose_on_ties_and_after_it_leaves_hone_toml() {
    let (dir, _) = project(300);
    set_policy(dir.path(), "contamination = \"drop_train\"");
    // A twin of `baseline`: same kind and params, so the same dev macro-F1 — a tie the earliest wins.
    let p = dir.path().join("hone.toml");
    let toml = std::fs::read_to_string(&p).unwrap();
    let with_twin = toml.replace(
        "[costs]",
        "[[model]]\nname = \"twin\"\nkind = \"ngram\"\n\n[costs]",
    );
    assert_ne!(toml, with_twin);
    std::fs::write(&p, &with_twin).unwrap();
    let out = run_json(dir.path());
    let runs = out["runs"].as_array().unwrap();
    let f1 = |i: usize| runs[i]["dev"]["macro_f1"]["estimate"].as_f64().unwrap();
    assert_eq!(runs[1]["model"], "baseline");
    assert_eq!(f1(1), f1(2), "the twins tie on dev");
    let chosen = out["chosen"].as_str().unwrap().to_string();
    assert_eq!(chosen, runs[1]["run"].as_str().unwrap());
    assert!(chosen.starts_with(&predict_run(dir.path())));

    // `hone runs --json`: oldest first, the choice marked, headline metrics as {estimate, lo, hi}.
    let o = hone(dir.path(), &["--json", "runs"]);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .windows(2)
            .all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64())
    );
    for r in &listed {
        assert_eq!(
            r["chosen"],
            r["id"].as_str() == Some(chosen.as_str()),
            "{r}"
        );
        for part in ["test", "dev"] {
            for k in ["estimate", "lo", "hi"] {
                assert!(
                    r[part]["accuracy"][k].is_number(),
                    "{part}.accuracy.{k}: {r}"
                );
            }
        }
        assert!(r["kind"].is_string() && r["model"].is_string());
    }

    // `baseline` leaves hone.toml: until the next `hone run`, predict keeps the recorded choice.
    std::fs::write(
        &p,
        with_twin.replace("[[model]]\nname = \"baseline\"\nkind = \"ngram\"\n", ""),
    )
    .unwrap();
    assert!(chosen.starts_with(&predict_run(dir.path())));
    let out = run_json(dir.path());
    let twin = out["chosen"].as_str().unwrap();
    assert_ne!(twin, chosen);
    assert!(twin.starts_with(&predict_run(dir.path())));
}

#[test]
fn a_broken_hone_toml_stops_every_command_before_any_work() {
    let (dir, _) = project(60);
    let p = dir.path().join("hone.toml");
    let toml = std::fs::read_to_string(&p).unwrap();
    // A typo in a model kind, far down the file.
    let broken = toml.replace("kind = \"ngram\"", "kind = \"ngramm\"");
    assert_ne!(toml, broken);
    std::fs::write(&p, &broken).unwrap();
    let line = broken.lines().position(|l| l.contains("ngramm")).unwrap() + 1;
    for args in [
        &["run"][..],
        &["data", "clean"],
        &["split"],
        &["data", "scan"],
    ] {
        let o = hone(dir.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(&format!("hone.toml:{line}:8")), "{args:?}: {e}");
        assert!(e.contains("did you mean `ngram`"), "{args:?}: {e}");
    }
    assert!(
        !dir.path().join(".hone").exists(),
        "no store is created before the config is valid"
    );
}

/// `[split] fold_dev = true` (the default): dev ranks the model and picks its decision rule on the train-only fit,
/// then the model that answers is refitted on train + dev. The run says so, its id differs, its dev
/// metrics are the train-only fit's, and the refit saw the dev records.
#[test]
fn fold_dev_refits_the_answering_model_on_train_and_dev() {
    let (dir, _) = project(400);
    set_policy(dir.path(), "contamination = \"drop_train\"");
    let runs = |dir: &Path| -> Vec<serde_json::Value> {
        serde_json::from_slice::<serde_json::Value>(&hone(dir, &["--json", "runs"]).stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let toml = dir.path().join("hone.toml");
    let t = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        t.replace("seed = 7\n", "seed = 7\nfold_dev = false\n"),
    )
    .unwrap();
    let plain = run_json(dir.path());
    let before = runs(dir.path());
    // The default folds dev back in.
    std::fs::write(&toml, &t).unwrap();
    let folded = run_json(dir.path());
    assert_eq!(plain["split"], folded["split"], "the split does not change");
    assert_ne!(
        plain["chosen"], folded["chosen"],
        "a folded run is another run"
    );
    let after = runs(dir.path());
    let find = |rs: &[serde_json::Value], id: &serde_json::Value| {
        rs.iter().find(|r| r["id"] == *id).unwrap().clone()
    };
    let p = find(&before, &plain["chosen"]);
    let f = find(&after, &folded["chosen"]);
    assert_eq!(p["record"]["train"]["dev_folded"], false);
    assert_eq!(f["record"]["train"]["dev_folded"], true);
    assert_eq!(
        p["record"]["dev"], f["record"]["dev"],
        "dev metrics come from the train-only fit"
    );
    let n_dev = p["record"]["n"]["dev"].as_u64().unwrap();
    assert!(n_dev > 0);
    let n_fit = |r: &serde_json::Value| r["record"]["train"]["report"]["n_train"].as_u64().unwrap();
    assert_eq!(
        n_fit(&f),
        n_fit(&p) + n_dev,
        "the refit trained on train + dev"
    );
}
