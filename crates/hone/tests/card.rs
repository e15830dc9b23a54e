//! `hone card` on the demo project: every figure in the card is the run record's (metrics and their
//! intervals, per-class scores, counts, the curation funnel), the `[task]` text is the only typed
//! text, personal data stays masked, and the HTML page loads nothing from elsewhere.

mod common;

use common::{hone, set_policy, stderr};
use hone_train::demo::write_project;
use serde_json::Value;

#[test]
fn every_number_in_the_card_is_the_run_records() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_project(d, 11, 300).unwrap();
    set_policy(d, "contamination = \"drop_train\"");
    let toml = std::fs::read_to_string(d.join("hone.toml")).unwrap();
    let toml = toml.replacen(
        "[task]\n",
        "[task]\nintended_use = \"Routing support messages to a queue.\"\nlicense = \"apache-2.0\"\n",
        1,
    );
    std::fs::write(d.join("hone.toml"), toml).unwrap();
    let o = hone(d, &["--json", "run"]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));

    let o = hone(d, &["--json", "card"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let w: Value = serde_json::from_slice(&o.stdout).unwrap();
    let card = std::fs::read_to_string(d.join(w["markdown"].as_str().unwrap())).unwrap();
    let html = std::fs::read_to_string(d.join(w["html"].as_str().unwrap())).unwrap();

    let o = hone(d, &["--json", "runs"]);
    let runs: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let run = runs
        .iter()
        .find(|r| r["id"] == w["run"])
        .expect("the card's run");
    let rec = &run["record"];
    let f4 = |v: &Value| format!("{:.4}", v.as_f64().unwrap());

    // Metadata and the metrics table.
    assert!(card.starts_with("---\nlicense: \"apache-2.0\"\n"), "{card}");
    for (name, key) in [("accuracy", "accuracy"), ("macro-F1", "macro_f1")] {
        let e = &rec["test"][key];
        assert!(
            card.contains(&format!("      value: {}\n", f4(&e["estimate"]))),
            "{card}"
        );
        let row = format!(
            "| {name} | {} | [{}, {}] |",
            f4(&e["estimate"]),
            f4(&e["lo"]),
            f4(&e["hi"])
        );
        assert!(card.contains(&row), "missing {row}\n{card}");
        assert!(html.contains(&f4(&e["estimate"])));
    }
    // Per class, every label with support, as recorded.
    let labels = rec["labels"].as_array().unwrap();
    for (l, c) in labels
        .iter()
        .zip(rec["test"]["per_class"].as_array().unwrap())
    {
        if c["support"].as_u64().unwrap() == 0 {
            continue;
        }
        let row = format!(
            "| {} | {} | {} | {} | {} |",
            l.as_str().unwrap(),
            f4(&c["precision"]),
            f4(&c["recall"]),
            f4(&c["f1"]),
            c["support"]
        );
        assert!(card.contains(&row), "missing {row}");
    }
    // Counts, the decision rule, and the task text typed by hand.
    assert!(card.contains(&format!(
        "A frozen test set of {} records",
        rec["n"]["test"]
    )));
    assert!(card.contains(&format!(
        "{} training and {} dev records",
        rec["n"]["train"], rec["n"]["dev"]
    )));
    assert!(card.contains("Routing support messages to a queue."));
    assert!(card.contains("_Not stated: write it as `out_of_scope`"));
    // The funnel is the version's: the first pass reads every source row not quarantined.
    let rows: u64 = card
        .lines()
        .skip_while(|l| !l.starts_with("| source | role"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let n = |i: usize| l.split('|').nth(i).unwrap().trim().parse::<u64>().unwrap();
            n(5) - n(6)
        })
        .sum();
    let first_pass = card
        .lines()
        .skip_while(|l| !l.starts_with("| pass | in"))
        .nth(2)
        .unwrap();
    assert!(
        first_pass.starts_with(&format!("| normalise | {rows} |")),
        "{first_pass} vs {rows} source rows"
    );
    // Personal data stays masked (the demo plants e-mail addresses in its sources).
    let email = regex::Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}").unwrap();
    let leaked: Vec<&str> = email
        .find_iter(&card)
        .map(|m| m.as_str())
        .filter(|m| !m.ends_with("example.com")) // the demo's owner address, from [task]
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    // A self-contained page.
    assert!(!html.contains("src=") && !html.contains("href=\"http"));
}

#[test]
fn approval_follows_the_checklist_and_rollback_is_approving_an_earlier_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_project(d, 5, 300).unwrap();
    set_policy(d, "contamination = \"drop_train\"");
    let o = hone(d, &["--json", "run"]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    let o = hone(d, &["--json", "runs"]);
    let runs: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<String> = runs
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.len() >= 2);
    let released = || {
        hone_store::Store::open_existing(d)
            .unwrap()
            .approved_run()
            .unwrap()
            .map(|a| a.run)
    };

    // A gate nobody can pass refuses the approval, and nothing is recorded.
    let toml = std::fs::read_to_string(d.join("hone.toml")).unwrap();
    std::fs::write(
        d.join("hone.toml"),
        toml.replacen(
            "accuracy = \">= 0.85\"",
            "p50_latency_ms = \"<= 0.000001\"",
            1,
        ),
    )
    .unwrap();
    let toml_bad = std::fs::read_to_string(d.join("hone.toml")).unwrap();
    assert!(toml_bad.contains("p50_latency_ms"));
    let o = hone(d, &["approve", &ids[0], "--reason", "try"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}\n{}",
        common::stdout(&o),
        stderr(&o)
    );
    assert!(
        common::stdout(&o).contains("FAILED"),
        "{}",
        common::stdout(&o)
    );
    assert_eq!(released(), None);
    // Without gates (a warning), any run can be approved: the majority baseline included.
    let no_gates: String = toml
        .lines()
        .filter(|l| {
            !l.starts_with("accuracy =")
                && !l.starts_with("macro_f1 =")
                && !l.contains("_pass_rate =")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(d.join("hone.toml"), no_gates).unwrap();

    // Without a card or suites the approval goes through with warnings; who and why are kept.
    let o = hone(
        d,
        &["--json", "approve", &ids[0], "--reason", "first release"],
    );
    let a: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", stderr(&o)));
    assert_eq!(o.status.code(), Some(0), "{a}");
    let card = a["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "model card")
        .unwrap()
        .clone();
    assert_eq!(
        (card["ok"].as_bool(), card["blocking"].as_bool()),
        (Some(false), Some(false))
    );
    assert_eq!(released(), Some(ids[0].clone()));
    // A newer approval releases the newer run; revoking it rolls back to the earlier one.
    hone(d, &["card", &ids[1]]);
    let o = hone(
        d,
        &[
            "--json",
            "approve",
            &ids[1],
            "--reason",
            "better on refunds",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let a: Value = serde_json::from_slice(&o.stdout).unwrap();
    let card = a["checklist"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "model card")
        .unwrap()
        .clone();
    assert_eq!(card["ok"], true, "{a}");
    assert_eq!(released(), Some(ids[1].clone()));
    let o = hone(
        d,
        &["approve", &ids[1], "--revoke", "--reason", "complaints"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(released(), Some(ids[0].clone()));
    // Every approval is in the audit chain, and the chain still verifies.
    let log = common::stdout(&hone(d, &["--json", "audit", "log"]));
    assert!(
        log.contains("first release") && log.contains("complaints"),
        "{log}"
    );
    assert_eq!(hone(d, &["audit", "verify"]).status.code(), Some(0));
    // An empty reason is refused.
    assert_eq!(
        hone(d, &["approve", &ids[0], "--reason", " "])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn tokens_are_printed_once_listed_without_their_secret_and_revoked_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_project(d, 3, 100).unwrap();
    let o = hone(
        d,
        &[
            "--json",
            "token",
            "create",
            "--role",
            "predict",
            "--name",
            "app",
            "--expires",
            "30",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let t: Value = serde_json::from_slice(&o.stdout).unwrap();
    let token = t["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("hone_"));
    let o = hone(d, &["token", "list"]);
    let list = common::stdout(&o);
    assert!(
        list.contains("app") && list.contains("predict") && list.contains("live"),
        "{list}"
    );
    assert!(!list.contains(&token[5..]), "the list shows no secret");
    // A role hone does not know is a usage error; a second live `app` is refused.
    assert_eq!(
        hone(d, &["token", "create", "--role", "root", "--name", "x"])
            .status
            .code(),
        Some(2)
    );
    assert_ne!(
        hone(d, &["token", "create", "--role", "admin", "--name", "app"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(hone(d, &["token", "revoke", "app"]).status.code(), Some(0));
    assert!(common::stdout(&hone(d, &["token", "list"])).contains("revoked"));
    assert_ne!(hone(d, &["token", "revoke", "app"]).status.code(), Some(0));
    // The secret is nowhere in the store.
    for f in std::fs::read_dir(d.join(".hone")).unwrap().flatten() {
        if f.path().is_file() {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(
                !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                "{:?}",
                f.path()
            );
        }
    }
}
