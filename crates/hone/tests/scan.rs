//! `hone data scan` on the demo project: the planted label noise is found, nothing from the frozen test
//! set is scanned, and `label_issues = "drop"` turns suspects into audited decisions the next version applies.

mod common;

use std::collections::HashSet;

use common::{hone, stderr};

#[test]
fn scan_finds_planted_label_noise_and_policies_act_through_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let m = hone_train::demo::write_project(dir.path(), 7, 1200).unwrap();
    let toml = std::fs::read_to_string(dir.path().join("hone.toml"))
        .unwrap()
        .replace(
            "on_bad_record = \"quarantine\"",
            "on_bad_record = \"quarantine\"\ncontamination = \"drop_train\"",
        );
    std::fs::write(dir.path().join("hone.toml"), &toml).unwrap();
    let o = hone(dir.path(), &["--json", "data", "scan"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let suspects: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    let flagged: HashSet<&str> = suspects
        .iter()
        .filter(|s| s["kind"] == "label_issue")
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        suspects
            .iter()
            .all(|s| !s["id"].as_str().unwrap().starts_with("test-")),
        "the frozen test set is never scanned"
    );
    // Planted noise that survived curation (some noisy rows are dropped as duplicates or conflicts first).
    let show: Vec<serde_json::Value> =
        serde_json::from_slice(&hone(dir.path(), &["--json", "data", "show"]).stdout).unwrap();
    let kept: HashSet<&str> = show.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let planted: HashSet<&str> = m
        .label_noise
        .iter()
        .map(String::as_str)
        .filter(|id| kept.contains(id))
        .collect();
    assert!(
        planted.len() >= 5,
        "the fixture must plant enough noise to measure ({})",
        planted.len()
    );
    let hit = flagged.intersection(&planted).count();
    let (precision, recall) = (
        hit as f64 / flagged.len().max(1) as f64,
        hit as f64 / planted.len() as f64,
    );
    eprintln!(
        "demo label noise: planted {} (kept), flagged {}, precision {precision:.2}, recall {recall:.2}",
        planted.len(),
        flagged.len()
    );
    assert!(
        recall >= 0.6 && precision >= 0.6,
        "precision {precision:.2}, recall {recall:.2}"
    );
    for s in suspects.iter().filter(|s| s["kind"] == "label_issue") {
        assert!(
            s["suggested_label"].is_string()
                && s["evidence"].as_str().unwrap().contains("out-of-fold")
        );
    }
    // Policy drop: the scan records decisions, the next version drops the suspects with lineage.
    std::fs::write(
        dir.path().join("hone.toml"),
        toml.replace(
            "label_conflicts = \"keep_majority\"",
            "label_conflicts = \"keep_majority\"\nlabel_issues = \"drop\"",
        ),
    )
    .unwrap();
    assert!(hone(dir.path(), &["data", "scan"]).status.success());
    assert!(hone(dir.path(), &["data", "clean"]).status.success());
    let first = flagged.iter().next().unwrap();
    let why = common::stdout(&hone(dir.path(), &["data", "why", first]));
    assert!(
        why.contains("review_drop") && why.contains("hone data scan (policy)"),
        "{why}"
    );
    assert!(hone(dir.path(), &["audit", "verify"]).status.success());
}
