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
