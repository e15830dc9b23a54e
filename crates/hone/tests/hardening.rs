//! Regression tests for the hardening findings (issue "Nothing silent"), one per finding, named after it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{hone, stderr};

fn cleaned_demo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 300).unwrap();
    let o = hone(dir.path(), &["data", "clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
    dir
}

/// Finding 6: `hone data show | head -1` and `hone runs > /dev/full` ended with exit 101 and a backtrace.
#[test]
fn finding_6_a_closed_or_full_stdout_is_not_a_panic() {
    let dir = cleaned_demo();
    // A reader that takes one line and goes away, as `head -1` does.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hone"))
        .arg("-C")
        .arg(dir.path())
        .args(["data", "show", "--limit", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("dataset version"), "{first}");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    if std::path::Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_hone"))
            .arg("-C")
            .arg(dir.path())
            .args(["data", "log"])
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: cannot write the output"), "{err}");
    }
}

/// Finding 7 (gates): a gate typo (`acuracy`) or an impossible rule (`>= 1.5`) was found only after
/// training (exit 3).
#[test]
fn finding_7_gate_typos_and_impossible_rules_fail_at_load() {
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 60).unwrap();
    let p = dir.path().join("hone.toml");
    let toml = std::fs::read_to_string(&p).unwrap();
    assert!(toml.contains("accuracy = \">= 0.85\""));
    for (rule, expect) in [
        ("acuracy = \">= 0.85\"", "did you mean `accuracy`"),
        ("accuracy = \">= 1.5\"", "can never hold"),
        ("accuracy = \">= 85\"", "fractions"),
    ] {
        std::fs::write(&p, toml.replace("accuracy = \">= 0.85\"", rule)).unwrap();
        let o = hone(dir.path(), &["run"]);
        assert_eq!(o.status.code(), Some(2), "{rule}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{rule}: {}", stderr(&o));
        assert!(stderr(&o).contains("hone.toml:"), "{rule}: {}", stderr(&o));
        assert!(!dir.path().join(".hone").exists(), "{rule}: nothing ran");
    }
}

/// Finding 7 (suites): a suite case whose label the task does not have was accepted and could never pass.
#[test]
fn finding_7_a_suite_with_an_unknown_label_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 300).unwrap();
    common::set_policy(dir.path(), "contamination = \"drop_train\"");
    let suite = dir.path().join("suites/safety.jsonl");
    let mut text = std::fs::read_to_string(&suite).unwrap();
    let n = text.lines().count() + 1;
    text.push_str(
        "{\"id\": \"typo-1\", \"text\": \"where is my refund\", \"label\": \"refund_stauts\"}\n",
    );
    std::fs::write(&suite, text).unwrap();
    let o = hone(dir.path(), &["run"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(&format!("safety.jsonl:{n}: field `label`")),
        "{e}"
    );
    assert!(e.contains("refund_stauts"), "{e}");
}

/// Finding 3: records of a `role = "test"` source were quarantined when their ids collided with
/// training ids (60 of 62 test records gone, exit 0, no warning).
#[test]
fn finding_3_test_records_keep_their_ids_and_the_training_side_gives_way() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("hone.toml"),
        "[task]\nname = \"clash\"\nkind = \"classify\"\n\n[[source]]\nname = \"train\"\npath = \"data/train.jsonl\"\n\n[[source]]\nname = \"official\"\npath = \"data/test.jsonl\"\nrole = \"test\"\n",
    )
    .unwrap();
    let line = |i: usize, what: &str| {
        let label = if i.is_multiple_of(2) {
            "refund"
        } else {
            "card"
        };
        format!(
            "{{\"id\": \"{i}\", \"text\": \"{what} message number {i} about my {label}\", \"label\": \"{label}\"}}\n"
        )
    };
    let train: String = (1..=80).map(|i| line(i, "training")).collect();
    let test: String = (1..=62).map(|i| line(i, "held out")).collect();
    std::fs::write(root.join("data/train.jsonl"), train).unwrap();
    std::fs::write(root.join("data/test.jsonl"), test).unwrap();
    let o = hone(root, &["--json", "data", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let q = v["quarantined"].as_array().unwrap();
    assert_eq!(q.len(), 62, "{v}");
    assert!(q.iter().all(|x| x["source"] == "train"), "{v}");
    assert!(
        q[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the test record is kept")
    );
    let official = v["sources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "official")
        .unwrap();
    assert_eq!(official["n_quarantined"], 0, "{official}");
}

/// Finding 1: a failed first run froze a wrong test set (only `ham`); after `spam` rows were added the
/// run passed with a test set of 58 ham and 0 spam, and both models scored 1.0000.
#[test]
fn finding_1_a_run_that_cannot_evaluate_freezes_nothing_and_a_one_sided_test_set_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("hone.toml"),
        "[task]\nname = \"spam\"\nkind = \"classify\"\n\n[policy]\ncontamination = \"drop_train\"\n\n[[source]]\nname = \"sms\"\npath = \"data/sms.jsonl\"\n\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n",
    )
    .unwrap();
    // Varied texts, so that no two are near-duplicates (or leaks of each other).
    let words = [
        "dinner", "garden", "river", "train", "office", "kitchen", "market", "concert", "school",
        "beach", "cinema", "library", "station", "museum", "bakery", "harbour", "forest", "bridge",
    ];
    let pick = |i: usize, k: usize| words[(i * (2 * k + 1) + k * k) % words.len()];
    let row = |i: usize, label: &str| {
        let text = if label == "ham" {
            format!(
                "meet me near the {} after the {}, then we walk to the {} and the {}",
                pick(i, 1),
                pick(i, 2),
                pick(i, 3),
                pick(i / 3, 4)
            )
        } else {
            format!(
                "WIN a free {} voucher for the {} now, txt {} to claim your {} prize",
                pick(i, 5),
                pick(i, 6),
                pick(i / 2, 7),
                pick(i, 8)
            )
        };
        format!("{{\"id\": \"{label}{i}\", \"text\": \"{text}\", \"label\": \"{label}\"}}\n")
    };
    let ham: String = (0..290).map(|i| row(i, "ham")).collect();
    std::fs::write(root.join("data/sms.jsonl"), &ham).unwrap();
    let o = hone(root, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("at least two labels"), "{}", stderr(&o));
    // Off a terminal (here a pipe) progress is plain lines with the time since the start, so a
    // log shows what ran before the error; `--json` (below) keeps stderr free of them.
    assert!(stderr(&o).contains("[ 0:00] running\n"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no test set was frozen"),
        "{}",
        stderr(&o)
    );
    // With spam added, the first real split freezes a test set holding both labels.
    let spam: String = (0..60).map(|i| row(i, "spam")).collect();
    std::fs::write(root.join("data/sms.jsonl"), format!("{ham}{spam}")).unwrap();
    let o = hone(root, &["--json", "run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("[ 0:0"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let labels = v["metrics"]["per_class"].as_array().unwrap();
    assert_eq!(labels.len(), 2);
    assert!(
        labels.iter().all(|c| c["support"].as_u64().unwrap() > 0),
        "{v}"
    );
}

/// Finding 1, second half: a test set frozen while a label was rare (all its records kept in training)
/// cannot judge that label once it is common; the run stops and names the remedy, a refreeze.
#[test]
fn finding_1_a_frozen_test_set_without_a_now_common_label_stops_the_run_until_refreeze() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("hone.toml"),
        "[task]\nname = \"t\"\nkind = \"classify\"\n\n[policy]\ncontamination = \"drop_train\"\n\n[[source]]\nname = \"a\"\npath = \"data/a.jsonl\"\n\n[[model]]\nname = \"fast\"\nkind = \"ngram\"\n",
    )
    .unwrap();
    // Texts that differ in words, not only in numbers (copies that differ only in their numbers are
    // leaks of one another: `numbers_differ`).
    const W: [&str; 12] = [
        "river", "garden", "yellow", "window", "planet", "silver", "forest", "pocket", "candle",
        "mirror", "basket", "rocket",
    ];
    let row = |id: String, i: usize, label: &str| {
        format!(
            "{{\"id\": \"{id}\", \"text\": \"{label} request about the {} {} and the {}\", \"label\": \"{label}\"}}\n",
            W[i % 12],
            W[(i / 12 + 5) % 12],
            W[(i * 7 + 3) % 12]
        )
    };
    let mut data: String = (0..40)
        .map(|i| row(format!("a{i}"), i, "billing"))
        .collect();
    data += &(0..40)
        .map(|i| row(format!("b{i}"), i, "login"))
        .collect::<String>();
    // Two refund records: too few for the split to put one in test.
    data += &(0..2)
        .map(|i| row(format!("c{i}"), i, "refund"))
        .collect::<String>();
    std::fs::write(root.join("data/a.jsonl"), &data).unwrap();
    let o = hone(root, &["run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Refund grows in the data; the frozen test set has none of it (new records go to train/dev).
    data += &(2..30)
        .map(|i| row(format!("c{i}"), i, "refund"))
        .collect::<String>();
    std::fs::write(root.join("data/a.jsonl"), &data).unwrap();
    let o = hone(root, &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("no example of `refund`"), "{e}");
    assert!(e.contains("--refreeze"), "{e}");
    // The remedy works: a new test set draws refund examples too.
    let o = hone(
        root,
        &[
            "split",
            "--refreeze",
            "--reason",
            "refund is a real class now",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = hone(root, &["run"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Finding 5 (free text) and 4 (identity): a `--reason` with personal data was stored unmasked in
/// `hone.db` and the audit inputs; a newline in `HONE_USER` forged an extra line in `hone audit log`.
#[test]
fn finding_5_typed_reasons_are_masked_and_finding_4_a_user_name_cannot_forge_audit_lines() {
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 300).unwrap();
    common::set_policy(dir.path(), "contamination = \"drop_train\"");
    let o = hone(dir.path(), &["run"]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    let email = "jane.doe@example.com";
    let o = Command::new(env!("CARGO_BIN_EXE_hone"))
        .arg("-C")
        .arg(dir.path())
        .args([
            "split",
            "--refreeze",
            "--reason",
            &format!("relabelled by {email}"),
        ])
        .env("HONE_USER", "eve\nforged entry")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mut bytes = Vec::new();
    for f in ["hone.db", "hone.db-wal"] {
        bytes.extend(std::fs::read(dir.path().join(".hone").join(f)).unwrap_or_default());
    }
    assert!(
        !bytes.windows(email.len()).any(|w| w == email.as_bytes()),
        "the reason's e-mail address reached the store"
    );
    let log = common::stdout(&hone(dir.path(), &["audit", "log"]));
    assert!(log.contains("eve\\nforged entry"), "{log}");
    // The OS account stands beside the declared name: HONE_USER alone cannot put a change on
    // someone else's name.
    let os = hone_train::project::os_account();
    assert!(
        log.contains(&format!("eve\\nforged entry (os: {os})")),
        "{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.trim_start().starts_with("forged entry")),
        "{log}"
    );
    let o = hone(dir.path(), &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Finding 4: the audit chain could be cut at its end (`delete from audit where seq >= 7` → "intact"),
/// and run metrics edited in the `runs` table passed `audit verify`; so would an edited frozen set.
#[test]
fn finding_4_a_cut_chain_and_an_edited_run_record_fail_audit_verify() {
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 300).unwrap();
    common::set_policy(dir.path(), "contamination = \"drop_train\"");
    let o = hone(dir.path(), &["run"]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    let o = hone(dir.path(), &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(common::stdout(&o).contains("head anchored at entry"));

    let store = hone_store::Store::open(dir.path()).unwrap();
    store
        .connection()
        .execute(
            "UPDATE runs SET record = json_set(record, '$.test.accuracy.estimate', 0.9999) WHERE seq = 2",
            [],
        )
        .unwrap();
    let o = hone(dir.path(), &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stdout(&o).contains("record was edited"),
        "{}",
        common::stdout(&o)
    );

    // A test record taken out of the frozen set (to hide a failure, say) is found too.
    store
        .connection()
        .execute(
            "UPDATE frozen_tests SET records = json_remove(records, '$[0]')",
            [],
        )
        .unwrap();
    let o = hone(dir.path(), &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stdout(&o).contains("frozen test set 1's records were edited"),
        "{}",
        common::stdout(&o)
    );

    let n: i64 = store
        .connection()
        .query_row("SELECT MAX(seq) FROM audit", [], |r| r.get(0))
        .unwrap();
    store
        .connection()
        .execute("DELETE FROM audit WHERE seq >= ?1", [n - 1])
        .unwrap();
    let o = hone(dir.path(), &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        common::stdout(&o).contains(&format!("anchored at entry {n}")),
        "{}",
        common::stdout(&o)
    );
}

/// Finding 7 (silent successes): 100% of rows quarantined (a semicolon CSV without `delimiter`, a wrong
/// `fields` mapping) or an empty or binary data file exited 0 with no diagnosis.
#[test]
fn finding_7_a_source_that_yields_nothing_is_an_error_with_a_diagnosis() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    let toml = |path: &str, extra: &str| {
        format!(
            "[task]\nname = \"t\"\nkind = \"classify\"\n\n[[source]]\nname = \"s\"\npath = \"{path}\"\n{extra}"
        )
    };
    let check = |path: &str, extra: &str, expect: &[&str]| {
        std::fs::write(root.join("hone.toml"), toml(path, extra)).unwrap();
        let o = hone(root, &["data", "clean"]);
        let e = stderr(&o);
        assert!(matches!(o.status.code(), Some(1 | 2)), "{path}: {e}");
        for x in expect {
            assert!(e.contains(x), "{path}: expected `{x}` in {e}");
        }
    };
    std::fs::write(
        root.join("data/semi.csv"),
        "text;label\nwhere is my refund;refund\nmy card is lost;card\n",
    )
    .unwrap();
    check(
        "data/semi.csv",
        "",
        &["every one of the 2 rows", "delimiter = \";\""],
    );
    std::fs::write(
        root.join("data/a.jsonl"),
        "{\"body\": \"where is my refund\", \"intent\": \"refund\"}\n",
    )
    .unwrap();
    check("data/a.jsonl", "", &["every one of the 1 rows", "fields ="]);
    std::fs::write(root.join("data/empty.jsonl"), "").unwrap();
    check("data/empty.jsonl", "", &["has no rows"]);
    std::fs::write(
        root.join("data/blob.csv"),
        [0u8, 159, 146, 150, 0, 10, 1, 2, 0, 10],
    )
    .unwrap();
    check("data/blob.csv", "", &["not text"]);
}

/// Finding 7 (labels): `Spam`/`SPAM`/`1`/`true` became separate classes without a word.
#[test]
fn finding_7_labels_that_differ_only_by_case_or_truth_spelling_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("hone.toml"),
        "[task]\nname = \"t\"\nkind = \"classify\"\n\n[policy]\ncontamination = \"drop_train\"\n\n[[source]]\nname = \"s\"\npath = \"data/s.jsonl\"\n",
    )
    .unwrap();
    let labels = ["spam", "Spam", "ham", "true", "1"];
    let rows: String = (0..200)
        .map(|i| {
            format!(
                "{{\"id\": \"r{i}\", \"text\": \"message {i} number {} says {}\", \"label\": \"{}\"}}\n",
                i * 7919 % 10007,
                i * 31 % 97,
                labels[i % labels.len()]
            )
        })
        .collect();
    std::fs::write(root.join("data/s.jsonl"), rows).unwrap();
    let o = hone(root, &["split"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = common::stdout(&o);
    assert!(
        out.contains("labels `Spam`, `spam` look like one class"),
        "{out}"
    );
    assert!(
        out.contains("labels `1`, `true` look like one class"),
        "{out}"
    );
}

/// Finding 1 (concurrency): two first runs at once created two frozen test sets (2 of 6 tries).
/// `HONE_CONCURRENCY_TRIES` sets the number of tries (default 4).
#[test]
fn finding_1_concurrent_first_runs_leave_one_frozen_test_set_and_no_raw_sql_error() {
    let tries: usize = std::env::var("HONE_CONCURRENCY_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let mut retried = 0;
    for t in 0..tries {
        let dir = tempfile::tempdir().unwrap();
        hone_train::demo::write_project(dir.path(), 7 + t as u64, 200).unwrap();
        common::set_policy(dir.path(), "contamination = \"drop_train\"");
        let spawn = || {
            Command::new(env!("CARGO_BIN_EXE_hone"))
                .arg("-C")
                .arg(dir.path())
                .args(["--json", "run"])
                .env("HONE_USER", "test-user")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        for out in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
            let err = String::from_utf8_lossy(&out.stderr);
            for raw in ["database is locked", "UNIQUE constraint", "SQLITE_BUSY"] {
                assert!(!err.contains(raw), "try {t}: raw SQL error: {err}");
            }
            match out.status.code() {
                Some(0 | 3) => {}
                Some(2) if err.contains("run this command again") => retried += 1,
                other => panic!("try {t}: exit {other:?}: {err}"),
            }
        }
        let store = hone_store::Store::open(dir.path()).unwrap();
        let n: i64 = store
            .connection()
            .query_row("SELECT COUNT(*) FROM frozen_tests", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "try {t}: {n} frozen test sets");
        assert!(store.verify_audit().unwrap().ok(), "try {t}");
    }
    eprintln!("{tries} tries, {retried} command(s) told to run again");
}

/// Finding 8: a deleted object left `data clean` saying "cached: up to date" and `predict` failing
/// forever; nothing checked the store.
#[test]
fn finding_8_doctor_names_lost_objects_and_a_lost_dataset_version_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 300).unwrap();
    common::set_policy(dir.path(), "contamination = \"drop_train\"");
    let o = hone(dir.path(), &["run"]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    let o = hone(dir.path(), &["doctor"]);
    assert!(o.status.success(), "{}", common::stdout(&o));
    let store = hone_store::Store::open(dir.path()).unwrap();
    let v = store.resolve_version(None).unwrap();
    let path = |h: &str| dir.path().join(".hone/objects").join(&h[..2]).join(&h[2..]);
    std::fs::remove_file(path(&v.object)).unwrap();
    let runs = hone_train::record::all(&store).unwrap();
    let model = runs[1].record.artifacts.values().next().unwrap().clone();
    std::fs::write(path(&model), b"rotted").unwrap();
    let o = hone(dir.path(), &["doctor"]);
    assert_eq!(o.status.code(), Some(1));
    let out = common::stdout(&o);
    assert!(
        out.contains("is missing") && out.contains("dataset of version"),
        "{out}"
    );
    assert!(
        out.contains("is corrupt") && out.contains("of run #2"),
        "{out}"
    );
    // `data clean` no longer calls a version with a lost object "up to date": it rebuilds it.
    let o = hone(dir.path(), &["data", "clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        common::stdout(&o).contains("restored"),
        "{}",
        common::stdout(&o)
    );
    assert_eq!(store.object_status(&v.object), hone_store::ObjectStatus::Ok);
    // What cannot be rebuilt is still named.
    let o = hone(dir.path(), &["doctor", "--repair"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!common::stdout(&o).contains("dataset of version"));
}

/// Finding 2: a CSV row with an unclosed quote swallowed the rows after it (a3 and a4 became part of
/// a2's text, a2 took a4's label, "8 rows read" for 10 lines, nothing quarantined).
#[test]
fn finding_2_an_unclosed_csv_quote_is_quarantined_alone_and_never_merges_rows() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    std::fs::write(
        root.join("hone.toml"),
        "[task]\nname = \"t\"\nkind = \"classify\"\n\n[[source]]\nname = \"sms\"\npath = \"data/sms.csv\"\n",
    )
    .unwrap();
    let mut csv = String::from("id,text,label\na1,free entry to win a prize,spam\n");
    csv += "a2,\"unterminated quote, win a prize now,spam\n";
    csv += "a3,see you at eight tonight,ham\n";
    csv += "a4,\"ok, call me when you land\",ham\n";
    for i in 5..=10 {
        csv += &format!("a{i},message number {i} about dinner,ham\n");
    }
    std::fs::write(root.join("data/sms.csv"), csv).unwrap();
    let o = hone(root, &["--json", "data", "check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n_input"], 10, "{v}");
    let q = v["quarantined"].as_array().unwrap();
    assert_eq!(q.len(), 1, "{v}");
    assert_eq!(q[0]["line"], 3, "{v}");
    assert_eq!(q[0]["id"], "sms-3", "{v}");
}

/// Finding 8 (read-only): a read-only store could not even run `runs`, `predict` or `audit verify`
/// ("attempt to write a readonly database"). Tests run as root here, which ignores file modes, so the
/// commands run as `nobody` through `setpriv` when that is available; as another user, directly.
#[test]
fn finding_8_read_only_commands_work_on_a_read_only_store() {
    use std::os::unix::fs::PermissionsExt;
    let is_root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    let setpriv = ["/usr/bin/setpriv", "/bin/setpriv"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    if is_root && setpriv.is_none() {
        eprintln!("skipped: running as root without setpriv, file modes cannot be tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 300).unwrap();
    common::set_policy(dir.path(), "contamination = \"drop_train\"");
    let o = hone(dir.path(), &["run"]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    std::fs::write(
        dir.path().join("in.jsonl"),
        "{\"text\": \"where is my refund\"}\n",
    )
    .unwrap();
    let set_modes = |readonly: bool| {
        for e in walk(dir.path()) {
            let m = std::fs::metadata(&e).unwrap();
            let mode = match (m.is_dir(), readonly) {
                (true, true) => 0o555,
                (false, true) => 0o444,
                (true, false) => 0o755,
                (false, false) => 0o644,
            };
            std::fs::set_permissions(&e, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    set_modes(true);
    let run = |args: &[&str]| {
        let mut c = match setpriv.filter(|_| is_root) {
            Some(sp) => {
                let mut c = Command::new(sp);
                c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .arg(env!("CARGO_BIN_EXE_hone"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_hone")),
        };
        c.arg("-C")
            .arg(dir.path())
            .args(args)
            .env("HONE_USER", "test-user");
        c.output().unwrap()
    };
    for args in [
        &["runs"][..],
        &["audit", "verify"],
        &["audit", "log"],
        &["data", "show"],
        &["doctor"],
        &["compare", "1", "2"],
    ] {
        let o = run(args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
    }
    let input = dir.path().join("in.jsonl");
    let o = run(&["predict", input.to_str().unwrap()]);
    assert!(o.status.success(), "predict: {}", stderr(&o));
    // A command that writes says why it cannot, in one line.
    let o = run(&["split", "--refreeze", "--reason", "try"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("the store is read-only"),
        "{}",
        stderr(&o)
    );
    set_modes(false);
    // The store was not touched by any of it.
    let o = hone(dir.path(), &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// Every path under `root`, the root included.
fn walk(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![root.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir()
            && let Ok(rd) = std::fs::read_dir(&out[i])
        {
            out.extend(rd.flatten().map(|e| e.path()));
        }
        i += 1;
    }
    out
}
