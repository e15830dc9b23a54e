//! End-to-end curation tests on the seeded messy fixture: every planted defect is caught, every record is
//! accounted for, no planted PII value reaches any file hone writes, and the store survives `kill -9`.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::{hone, stderr, stdout};
use hone_core::Action;
use hone_store::Store;
use hone_train::curate;
use hone_train::demo::{Manifest, write_project};
use hone_train::project::Project;

fn fixture(n_base: usize) -> (tempfile::TempDir, Manifest) {
    let dir = tempfile::tempdir().unwrap();
    let m = write_project(dir.path(), 7, n_base).unwrap();
    (dir, m)
}

#[test]
fn every_planted_defect_is_caught_and_every_record_accounted_for() {
    let (dir, manifest) = fixture(1200);
    let project = Project::discover(dir.path()).unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let out = curate::clean(&project, &mut store, "test", &mut |_| {}).unwrap();
    assert!(!out.cached);
    let v = &out.version;
    let lineage = store.lineage(&v.id).unwrap();
    let quarantine = store.quarantine(&v.id).unwrap();
    let mut rules_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for l in &lineage {
        rules_of
            .entry(l.record_id.as_str())
            .or_default()
            .push(l.rule.as_str());
    }
    let mut missed = Vec::new();
    for p in &manifest.planted {
        let caught = match p.rule {
            "quarantine" => quarantine.iter().any(|q| q.id == p.id),
            "normalise" => lineage
                .iter()
                .any(|l| l.record_id == p.id && l.pass == "normalise"),
            r if r.starts_with("label_conflict") => rules_of
                .get(p.id.as_str())
                .is_some_and(|rs| rs.iter().any(|x| x.starts_with("label_conflict"))),
            r => rules_of
                .get(p.id.as_str())
                .is_some_and(|rs| rs.contains(&r)),
        };
        if !caught {
            missed.push(format!(
                "{} ({}) -> {:?}",
                p.id,
                p.rule,
                rules_of.get(p.id.as_str())
            ));
        }
    }
    assert!(missed.is_empty(), "planted defects not caught: {missed:#?}");
    // Every row read is a record, a quarantined row, or a dropped record: nothing is lost.
    let rows: u64 = manifest.rows.values().sum();
    assert_eq!(v.n_input, rows);
    let dropped = lineage.iter().filter(|l| l.action == Action::Drop).count() as u64;
    assert_eq!(
        v.n_input,
        v.n_records + v.n_quarantined + dropped,
        "kept + removed + quarantined = input"
    );
    let passes = curate::version_info(v).unwrap().passes;
    assert!(!passes.is_empty());
    for p in &passes {
        assert_eq!(p.n_in, p.n_kept + p.n_dropped, "{p:?}");
    }
    // A dropped record is dropped once, by one pass.
    let mut drops: HashMap<&str, usize> = HashMap::new();
    for l in lineage.iter().filter(|l| l.action == Action::Drop) {
        *drops.entry(&l.record_id).or_default() += 1;
    }
    assert!(drops.values().all(|&n| n == 1));
    let records = curate::load_records(&store, v).unwrap();
    assert_eq!(records.len() as u64, v.n_records);
    assert!(
        records
            .iter()
            .filter(|r| r.source != "official-test")
            .all(|r| r.cluster.is_some()),
        "every kept training record carries its cluster id (test-role records are only normalised and masked)"
    );
}

#[test]
fn rerun_is_cached_and_json_says_so() {
    let (dir, _) = fixture(300);
    let first = hone(dir.path(), &["--json", "data", "clean"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let a: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert_eq!(a["cached"], false);
    let second = hone(dir.path(), &["--json", "data", "clean"]);
    let b: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(b["cached"], true);
    assert_eq!(a["version"], b["version"]);
    // Changing the policy makes a new version whose parent is the first.
    let toml = std::fs::read_to_string(dir.path().join("hone.toml"))
        .unwrap()
        .replace("near_duplicates = \"drop\"", "near_duplicates = \"keep\"");
    std::fs::write(dir.path().join("hone.toml"), toml).unwrap();
    let third: serde_json::Value =
        serde_json::from_slice(&hone(dir.path(), &["--json", "data", "clean"]).stdout).unwrap();
    assert_eq!(third["cached"], false);
    assert!(third["n_records"].as_u64() > a["n_records"].as_u64());
    let log: serde_json::Value =
        serde_json::from_slice(&hone(dir.path(), &["--json", "data", "log"]).stdout).unwrap();
    assert_eq!(log.as_array().unwrap().len(), 2);
    assert_eq!(log[1]["parent"], a["version"]);
}

/// All bytes of every file under `dir` (recursively).
fn all_files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
        }
    }
}

#[test]
fn no_planted_pii_value_appears_in_any_output() {
    let (dir, manifest) = fixture(400);
    let d = dir.path();
    // Names and street addresses, found by the learned tagger (the fixture's own values are found by
    // validators and cue rules): appended as chat records in the fixture's own shape.
    let chat = d.join("data/chat.jsonl");
    let first: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&chat)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let text_key = ["text", "message", "body", "content"]
        .into_iter()
        .find(|k| first.get(*k).is_some_and(|v| v.is_string()))
        .expect("a text field in the chat fixture");
    let id_key = ["id", "ticket", "msg_id"]
        .into_iter()
        .find(|k| first.get(*k).is_some())
        .expect("an id field in the chat fixture");
    let named = [
        (
            "Hi, my name is Margaret Thompson and my card was declined.",
            "Margaret Thompson",
        ),
        (
            "Please send the replacement card to 27 Willow Lane, Manchester.",
            "27 Willow Lane",
        ),
        (
            "I spoke to Daniel Hughes yesterday about the refund.",
            "Daniel Hughes",
        ),
        (
            "Ship it to 118 Station Road, the parcel is urgent.",
            "118 Station Road",
        ),
        (
            "The card never came. Thanks,\nEleanor Whitfield",
            "Eleanor Whitfield",
        ),
        (
            "Bitte an Lindenstraße 14 schicken, danke.",
            "Lindenstraße 14",
        ),
    ];
    let mut lines = String::new();
    for (i, (text, _)) in named.iter().enumerate() {
        let mut r = first.clone();
        r[text_key] = serde_json::Value::from(*text);
        r[id_key] = serde_json::Value::from(format!("named-{i}"));
        lines.push_str(&serde_json::to_string(&r).unwrap());
        lines.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&chat)
        .unwrap();
    std::io::Write::write_all(&mut f, lines.as_bytes()).unwrap();
    let mut outputs = Vec::new();
    for args in [
        vec!["data", "clean"],
        vec!["data", "report"],
        vec!["--json", "data", "show"],
        vec!["data", "show", "--limit", "10000"],
        vec!["--json", "audit", "log"],
        vec!["data", "log"],
        vec!["data", "check"],
        vec!["--json", "data", "check"],
    ] {
        let o = hone(d, &args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        outputs.push((format!("stdout of {args:?}"), o.stdout.clone()));
        outputs.push((format!("stderr of {args:?}"), o.stderr.clone()));
    }
    for p in manifest
        .planted
        .iter()
        .filter(|p| p.value.is_some())
        .take(30)
    {
        let o = hone(d, &["data", "why", &p.id]);
        assert!(o.status.success(), "why {}: {}", p.id, stderr(&o));
        assert!(
            stdout(&o).contains("pii"),
            "why {} should mention the pii pass: {}",
            p.id,
            stdout(&o)
        );
        outputs.push((format!("why {}", p.id), o.stdout));
        let o = hone(d, &["--json", "data", "why", &p.id]);
        outputs.push((format!("why --json {}", p.id), o.stdout));
    }
    // Everything hone wrote: the store (SQLite + WAL + objects), reports.
    all_files(&d.join(".hone"), &mut outputs);
    all_files(&d.join("reports"), &mut outputs);
    // Parquet objects are compressed: decode them too.
    let store = Store::open_existing(d).unwrap();
    let objects: Vec<String> = store
        .connection()
        .prepare("SELECT hash FROM objects")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(objects.len() >= 2);
    for h in objects {
        let recs = hone_data::dataset::decode(&store.get_object(&h).unwrap()).unwrap();
        outputs.push((
            format!("decoded object {h}"),
            serde_json::to_vec(&recs).unwrap(),
        ));
    }
    let mut values = manifest.pii_values();
    assert_eq!(values.len(), 60);
    values.extend(named.iter().map(|(_, v)| *v));
    let mut leaks = Vec::new();
    for v in &values {
        let compact: String = v.chars().filter(|c| !c.is_whitespace()).collect();
        for (name, bytes) in &outputs {
            let hay = String::from_utf8_lossy(bytes);
            // JSON output escapes non-ASCII; compare on the unescaped form as well.
            let unescaped = hay.replace("\\u00", "");
            if hay.contains(v) || hay.contains(&compact) || unescaped.contains(v) {
                leaks.push(format!("{v} in {name}"));
            }
        }
    }
    assert!(leaks.is_empty(), "planted PII leaked: {leaks:#?}");
    // And the raw input still has them (the test would be vacuous otherwise).
    let raw = String::from_utf8_lossy(&std::fs::read(d.join("data/helpdesk.csv")).unwrap())
        .into_owned()
        + &std::fs::read_to_string(d.join("data/chat.jsonl")).unwrap();
    let missing: Vec<&&str> = values.iter().filter(|v| !raw.contains(**v)).collect();
    assert!(
        missing.is_empty(),
        "planted values missing from the raw input: {missing:?}"
    );
}

#[test]
fn kill_9_during_clean_leaves_a_readable_store_and_rerun_completes() {
    // A reference run on an identical project, uninterrupted.
    let (ref_dir, _) = fixture(3000);
    let reference: serde_json::Value =
        serde_json::from_slice(&hone(ref_dir.path(), &["--json", "data", "clean"]).stdout).unwrap();
    let mut killed_mid_run = 0;
    for delay_ms in [0u64, 5, 15, 30, 60, 100, 150, 250] {
        let (dir, _) = fixture(3000);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hone"))
            .arg("-C")
            .arg(dir.path())
            .args(["data", "clean"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        child.kill().ok(); // SIGKILL on Unix
        child.wait().unwrap();
        if !finished {
            killed_mid_run += 1;
        }
        if dir.path().join(".hone/hone.db").exists() {
            let log = hone(dir.path(), &["--json", "data", "log"]);
            assert!(
                log.status.success(),
                "data log after kill at {delay_ms} ms: {}",
                stderr(&log)
            );
            let audit = hone(dir.path(), &["audit", "verify"]);
            assert!(
                audit.status.success(),
                "audit after kill at {delay_ms} ms: {}",
                stderr(&audit)
            );
        }
        let rerun = hone(dir.path(), &["--json", "data", "clean"]);
        assert!(
            rerun.status.success(),
            "rerun after kill at {delay_ms} ms: {}",
            stderr(&rerun)
        );
        let v: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
        assert_eq!(v["version"], reference["version"]);
        assert_eq!(v["n_records"], reference["n_records"]);
        let log: serde_json::Value =
            serde_json::from_slice(&hone(dir.path(), &["--json", "data", "log"]).stdout).unwrap();
        assert_eq!(
            log.as_array().unwrap().len(),
            1,
            "exactly one version after kill + rerun"
        );
    }
    assert!(
        killed_mid_run >= 2,
        "the test must kill at least two runs before they finish (got {killed_mid_run})"
    );
}

#[test]
fn config_errors_exit_2_with_line_and_suggestion() {
    let (dir, _) = fixture(50);
    let toml = std::fs::read_to_string(dir.path().join("hone.toml"))
        .unwrap()
        .replace(
            "near_duplicate_jaccard = 0.8",
            "near_duplicate_jacard = 0.8",
        );
    std::fs::write(dir.path().join("hone.toml"), &toml).unwrap();
    let o = hone(dir.path(), &["data", "check"]);
    assert_eq!(o.status.code(), Some(2));
    let line = toml
        .lines()
        .position(|l| l.starts_with("near_duplicate_jacard"))
        .unwrap()
        + 1;
    let err = stderr(&o);
    assert!(err.contains(&format!("hone.toml:{line}:")), "{err}");
    assert!(
        err.contains("did you mean `near_duplicate_jaccard`"),
        "{err}"
    );
    // Unknown command-line usage is also exit 2 (clap).
    assert_eq!(
        hone(dir.path(), &["data", "frobnicate"]).status.code(),
        Some(2)
    );
}

#[test]
fn on_bad_record_fail_stops_with_file_line_and_field() {
    let (dir, _) = fixture(100);
    let toml = std::fs::read_to_string(dir.path().join("hone.toml"))
        .unwrap()
        .replace("on_bad_record = \"quarantine\"", "on_bad_record = \"fail\"");
    std::fs::write(dir.path().join("hone.toml"), toml).unwrap();
    let o = hone(dir.path(), &["data", "clean"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("data/helpdesk.csv:") && err.contains("field `"),
        "{err}"
    );
    assert!(
        !dir.path()
            .join(".hone/objects")
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false),
        "no partial write"
    );
}

#[test]
fn audit_verify_names_a_tampered_entry() {
    let (dir, _) = fixture(100);
    assert!(hone(dir.path(), &["data", "clean"]).status.success());
    std::fs::write(
        dir.path().join("hone.toml"),
        std::fs::read_to_string(dir.path().join("hone.toml"))
            .unwrap()
            .replace("max_age_days = 730", "max_age_days = 365"),
    )
    .unwrap();
    assert!(hone(dir.path(), &["data", "clean"]).status.success());
    assert!(hone(dir.path(), &["audit", "verify"]).status.success());
    {
        let store = Store::open_existing(dir.path()).unwrap();
        store
            .connection()
            .execute("UPDATE audit SET who = 'mallory' WHERE seq = 1", [])
            .unwrap();
    }
    let o = hone(dir.path(), &["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("entry 1") && stdout(&o).contains("edited"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn init_writes_a_project_that_cleans() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("support-intents");
    let o = common::hone(dir.path(), &["init", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(p.join("hone.toml").is_file() && p.join("data").is_dir() && p.join("suites").is_dir());
    assert_eq!(
        hone(dir.path(), &["init", p.to_str().unwrap()])
            .status
            .code(),
        Some(2),
        "refuses to overwrite"
    );
    let o = hone(&p, &["--json", "data", "clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n_records"], 2);
    let show: serde_json::Value =
        serde_json::from_slice(&hone(&p, &["--json", "data", "show"]).stdout).unwrap();
    assert_eq!(show[0]["id"], "ex-1");
    assert_eq!(show[0]["label"], "refund_status");
}

#[test]
fn why_explains_kept_dropped_and_quarantined_records() {
    let (dir, manifest) = fixture(200);
    assert!(hone(dir.path(), &["data", "clean"]).status.success());
    let dup = manifest
        .planted
        .iter()
        .find(|p| p.rule == "exact_duplicate")
        .unwrap();
    let o = hone(dir.path(), &["data", "why", &dup.id]);
    let s = stdout(&o);
    assert!(
        s.contains("dropped") && s.contains("exact_duplicate") && s.contains("related record"),
        "{s}"
    );
    let q = manifest
        .planted
        .iter()
        .find(|p| p.rule == "quarantine")
        .unwrap();
    let s = stdout(&hone(dir.path(), &["data", "why", &q.id]));
    assert!(s.contains("quarantined at data/"), "{s}");
    let o = hone(dir.path(), &["data", "why", "no-such-id"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("record not found"));
}

/// `[policy] pii_types` picks what is masked: with only EMAIL, phones stay in the data and a predict
/// input is prepared the same way (the run's version policy), while e-mails are masked in both.
#[test]
fn pii_types_choose_what_is_masked_in_the_data_and_at_predict() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("data")).unwrap();
    // Texts that differ in words, not only in their numbers (else they are leaks of one another).
    const W: [&str; 20] = [
        "river", "garden", "yellow", "window", "planet", "silver", "forest", "pocket", "candle",
        "mirror", "basket", "rocket", "orange", "bridge", "castle", "dragon", "finger", "hammer",
        "jacket", "ladder",
    ];
    let mut rows = String::new();
    for i in 0..40 {
        let (label, text) = if i % 2 == 0 {
            (
                "callback",
                format!(
                    "please call me back on 07700 900{i:03} about the {} {}",
                    W[i / 2],
                    W[(i / 2 + 7) % 20]
                ),
            )
        } else {
            (
                "email",
                format!(
                    "write to user{i}@example.com about the {} {}",
                    W[i / 2],
                    W[(i / 2 + 3) % 20]
                ),
            )
        };
        rows.push_str(
            &serde_json::json!({"id": format!("r{i}"), "text": text, "label": label}).to_string(),
        );
        rows.push('\n');
    }
    std::fs::write(root.join("data/a.jsonl"), rows).unwrap();
    std::fs::write(
        root.join("hone.toml"),
        "[task]\nname = \"t\"\nkind = \"classify\"\n\n[policy]\npii_types = [\"EMAIL\"]\n\n[[source]]\nname = \"a\"\npath = \"data/a.jsonl\"\n\n[[model]]\nname = \"m\"\nkind = \"ngram\"\n",
    )
    .unwrap();
    assert!(hone(root, &["data", "clean"]).status.success());
    let o = hone(root, &["--json", "data", "show"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&o);
    assert!(
        shown.contains("07700 900000"),
        "phones are not in pii_types: {shown}"
    );
    assert!(!shown.contains("@example.com") && shown.contains("<EMAIL>"));
    let project = Project::discover(root).unwrap();
    let prep = hone_train::input::TextPrep::for_policy(&project.config.policy);
    assert_eq!(
        prep.apply("call 07700 900123 or mail a.b@example.com"),
        "call 07700 900123 or mail <EMAIL>"
    );
    // The version remembers its types, so predict prepares inputs as the model's data was.
    let o = hone(root, &["run"]);
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", stderr(&o));
    let store = Store::open(root).unwrap();
    let v = store.resolve_version(None).unwrap();
    let prep = curate::text_prep_of(&store, &v.id).unwrap();
    assert_eq!(
        prep.apply("call 07700 900123 or mail a.b@example.com"),
        "call 07700 900123 or mail <EMAIL>"
    );
    // Every type by default.
    let all = hone_train::input::TextPrep::for_policy(&hone_core::config::PolicyConfig::default());
    assert_eq!(
        all.apply("call 07700 900123 or mail a.b@example.com"),
        "call <PHONE> or mail <EMAIL>"
    );
}
