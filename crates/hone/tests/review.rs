//! `hone review --from FILE`: decisions are checked against the latest version, audited with the reviewer,
//! and applied as a new dataset version with lineage; the frozen test set cannot be edited this way.

mod common;

use common::{hone, stderr, stdout};

#[test]
fn decisions_file_makes_a_new_audited_version_and_spares_the_frozen_test() {
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 300).unwrap();
    let toml = std::fs::read_to_string(dir.path().join("hone.toml"))
        .unwrap()
        .replace(
            "on_bad_record = \"quarantine\"",
            "on_bad_record = \"quarantine\"\ncontamination = \"drop_train\"",
        );
    std::fs::write(dir.path().join("hone.toml"), toml).unwrap();
    assert!(matches!(
        hone(dir.path(), &["run"]).status.code(),
        Some(0) | Some(3)
    ));
    let show: serde_json::Value =
        serde_json::from_slice(&hone(dir.path(), &["--json", "data", "show"]).stdout).unwrap();
    let helpdesk: Vec<&serde_json::Value> = show
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["source"] == "helpdesk")
        .collect();
    let (a, b) = (
        helpdesk[0]["id"].as_str().unwrap(),
        helpdesk[1]["id"].as_str().unwrap(),
    );
    let new_label = if helpdesk[1]["label"] == "escalate" {
        "card_lost"
    } else {
        "escalate"
    };
    let file = dir.path().join("decisions.jsonl");
    std::fs::write(&file, format!("{{\"id\": \"{a}\", \"decision\": \"drop\", \"note\": \"spam\"}}\n{{\"id\": \"{b}\", \"decision\": \"relabel\", \"label\": \"{new_label}\"}}\n")).unwrap();
    let o = hone(
        dir.path(),
        &["--json", "review", "--from", file.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["reviewer"], "test-user");
    assert_eq!(v["cached"], false);
    let why_a = stdout(&hone(dir.path(), &["data", "why", a]));
    assert!(
        why_a.contains("review_drop") && why_a.contains("reviewer test-user: spam"),
        "{why_a}"
    );
    let why_b = stdout(&hone(dir.path(), &["data", "why", b]));
    assert!(
        why_b.contains("review_relabel") && why_b.contains(new_label),
        "{why_b}"
    );
    let audit: serde_json::Value =
        serde_json::from_slice(&hone(dir.path(), &["--json", "audit", "log"]).stdout).unwrap();
    assert!(
        audit.as_array().unwrap().iter().any(|e| e["who"]
            .as_str()
            .unwrap()
            .starts_with("test-user")
            && e["command"].as_str().unwrap().contains("review"))
    );
    // The frozen test set is out of reach of review; the error names the file and line.
    std::fs::write(&file, "{\"id\": \"test-00005\", \"decision\": \"drop\"}\n").unwrap();
    let o = hone(dir.path(), &["review", "--from", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("decisions.jsonl:1:") && stderr(&o).contains("frozen test set"),
        "{}",
        stderr(&o)
    );
    // A relabel to an unknown label is refused too.
    std::fs::write(
        &file,
        format!("{{\"id\": \"{b}\", \"decision\": \"relabel\", \"label\": \"nonsense\"}}\n"),
    )
    .unwrap();
    assert!(
        stderr(&hone(
            dir.path(),
            &["review", "--from", file.to_str().unwrap()]
        ))
        .contains("unknown label `nonsense`")
    );
}

#[test]
fn interactive_review_reads_answers_from_stdin() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    hone_train::demo::write_project(dir.path(), 7, 1200).unwrap();
    let toml = std::fs::read_to_string(dir.path().join("hone.toml"))
        .unwrap()
        .replace(
            "on_bad_record = \"quarantine\"",
            "on_bad_record = \"quarantine\"\ncontamination = \"drop_train\"",
        );
    std::fs::write(dir.path().join("hone.toml"), toml).unwrap();
    let scan: Vec<serde_json::Value> =
        serde_json::from_slice(&hone(dir.path(), &["--json", "data", "scan"]).stdout).unwrap();
    assert!(scan.len() >= 2, "the demo has suspects to review");
    // Answer: drop the first, relabel the second to its suggestion (empty answer), then quit.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hone"))
        .arg("-C")
        .arg(dir.path())
        .arg("review")
        .env("HONE_USER", "reviewer-1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let second_is_label_issue = scan[1]["kind"] == "label_issue";
    let answers = if second_is_label_issue {
        "d\nr\n\nq\n"
    } else {
        "d\nd\nq\n"
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answers.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("recorded 2 decision(s) by reviewer-1"),
        "{}",
        stdout(&o)
    );
    let why = stdout(&hone(
        dir.path(),
        &["data", "why", scan[0]["id"].as_str().unwrap()],
    ));
    assert!(
        why.contains("review_drop") && why.contains("reviewer-1"),
        "{why}"
    );
    // A second session starts after the decided ones.
    let again = std::process::Command::new(env!("CARGO_BIN_EXE_hone"))
        .arg("-C")
        .arg(dir.path())
        .arg("review")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let decided = [
        scan[0]["id"].as_str().unwrap(),
        scan[1]["id"].as_str().unwrap(),
    ];
    let left = scan
        .iter()
        .filter(|s| !decided.contains(&s["id"].as_str().unwrap()))
        .count();
    assert!(
        stdout(&again).contains(&format!("{left} flagged record(s) to review")),
        "{}",
        stdout(&again)
    );
}
