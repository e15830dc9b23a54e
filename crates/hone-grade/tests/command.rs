//! `command` graders against real programs: the score a program prints, typed errors for a crash,
//! a timeout, a memory blow-up and output that is not a score, and the isolation (no network, the
//! project read-only) or, where this machine cannot isolate, the refusal unless the project opts in.

use std::time::Instant;

use hone_grade::command::{CommandEnv, isolation};
use hone_grade::{GradeError, Grader, GraderSpec};
use serde_json::json;

fn spec(command: &[&str], extra: serde_json::Value) -> GraderSpec {
    let mut v = json!({"type": "command", "name": "prog", "command": command});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::from_value(v).unwrap()
}

fn build(dir: &std::path::Path, spec: &GraderSpec, allow: bool) -> hone_grade::Result<Grader> {
    let env = CommandEnv {
        project_dir: dir.to_path_buf(),
        allow_unisolated: allow,
    };
    Grader::with_resources(spec, &mut |_| Err("no encoder".into()), Some(&env), None)
}

/// Built as the project would build it: isolated where the machine can, else with the opt-in.
fn grader(dir: &std::path::Path, command: &[&str], extra: serde_json::Value) -> Grader {
    build(dir, &spec(command, extra), true).unwrap()
}

#[test]
fn the_program_reads_sample_and_item_and_its_printed_score_is_the_reward() {
    let dir = tempfile::tempdir().unwrap();
    // Passes when the answer names the item's order number.
    let script = "read -r doc; case \"$doc\" in *'\"order\":\"42\"'*) ;; *) echo 0; exit;; esac; \
                  case \"$doc\" in *'\"output_text\":\"order 42'*) echo 1;; *) echo '{\"reward\": 0.25}';; esac";
    let g = grader(dir.path(), &["sh", "-c", script], json!({}));
    let item = json!({"order": "42"});
    let good = g.grade("order 42 is on its way", &item).unwrap();
    assert_eq!((good.reward, good.passed), (1.0, true));
    let bad = g.grade("we are on it", &item).unwrap();
    assert_eq!((bad.reward, bad.passed), (0.25, false));
    // A program needs no `item.FIELD` declared: it reads the whole item.
    assert!(g.item_fields().is_empty());
}

#[test]
fn crashes_timeouts_memory_and_non_scores_are_typed_errors_never_rewards() {
    let dir = tempfile::tempdir().unwrap();
    let crash = grader(
        dir.path(),
        &["sh", "-c", "echo 'boom at line 3' >&2; exit 3"],
        json!({}),
    );
    match crash.grade("x", &json!({})) {
        Err(GradeError::Runtime { msg, .. }) => {
            assert!(
                msg.contains("code 3") && msg.contains("boom at line 3"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
    let chatty = grader(dir.path(), &["sh", "-c", "echo looks good"], json!({}));
    match chatty.grade("x", &json!({})) {
        Err(GradeError::Runtime { msg, .. }) => assert!(msg.contains("not a score"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // The sleeping grandchild goes with the group: the call returns at the limit, not after 30 s.
    let slow = grader(
        dir.path(),
        &["sh", "-c", "sleep 30 & sleep 30; echo 1"],
        json!({"timeout_seconds": 0.3}),
    );
    let t = Instant::now();
    match slow.grade("x", &json!({})) {
        Err(GradeError::Timeout { seconds, .. }) => assert_eq!(seconds, 0.3),
        other => panic!("{other:?}"),
    }
    assert!(t.elapsed().as_secs_f64() < 10.0, "{:?}", t.elapsed());
    // A string doubled past 64 MiB hits the address-space limit.
    let greedy = grader(
        dir.path(),
        &[
            "awk",
            "BEGIN { s = \"a\"; while (length(s) < 400000000) s = s s; print 1 }",
        ],
        json!({"memory_mb": 64}),
    );
    assert!(
        matches!(
            greedy.grade("x", &json!({})),
            Err(GradeError::Runtime { .. })
        ),
        "a 400 MB string under a 64 MiB limit must fail"
    );
    // The same program with room passes: the limit, not the program, failed it.
    let roomy = grader(
        dir.path(),
        &[
            "awk",
            "BEGIN { s = \"a\"; while (length(s) < 1000) s = s s; print 1 }",
        ],
        json!({"memory_mb": 64}),
    );
    assert_eq!(roomy.grade("x", &json!({})).unwrap().reward, 1.0);
}

#[test]
fn definitions_are_checked_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let err = |command: &[&str], extra| build(dir.path(), &spec(command, extra), true).unwrap_err();
    assert!(
        err(&[], json!({}))
            .to_string()
            .contains("`command` is empty")
    );
    assert!(
        err(&["graders/missing.py"], json!({}))
            .to_string()
            .contains("not found")
    );
    assert!(
        err(&["no-such-program-anywhere"], json!({}))
            .to_string()
            .contains("PATH")
    );
    assert!(
        err(&["sh"], json!({"timeout_seconds": 0}))
            .to_string()
            .contains("timeout")
    );
    // A caller that provides no program environment refuses command graders outright.
    assert!(matches!(
        Grader::new(&spec(&["sh"], json!({}))),
        Err(GradeError::Spec { .. })
    ));
}

#[test]
fn isolated_programs_reach_no_network_and_cannot_write_the_project() {
    let dir = tempfile::tempdir().unwrap();
    let write = spec(
        &["sh", "-c", "touch written 2>/dev/null && echo 1 || echo 0"],
        json!({}),
    );
    match isolation() {
        Ok(()) => {
            let g = build(dir.path(), &write, false).unwrap();
            assert!(!g.runs_unisolated());
            assert_eq!(g.grade("x", &json!({})).unwrap().reward, 0.0);
            assert!(!dir.path().join("written").exists());

            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let connect = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo 1 || echo 0");
            let g = build(
                dir.path(),
                &spec(&["bash", "-c", &connect], json!({})),
                false,
            )
            .unwrap();
            assert_eq!(g.grade("x", &json!({})).unwrap().reward, 0.0);
            assert!(
                listener.accept().is_err(),
                "the grader reached the host's loopback"
            );
            // Outside the grader the same connection works: the test can tell the difference.
            assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
        }
        Err(why) => {
            eprintln!("no namespaces here ({why}): checking the refusal instead");
            match build(dir.path(), &write, false) {
                Err(GradeError::NoIsolation { why: w, .. }) => assert_eq!(w, why),
                other => panic!("{other:?}"),
            }
            let g = build(dir.path(), &write, true).unwrap();
            assert!(g.runs_unisolated());
        }
    }
}

#[test]
fn a_relative_project_path_and_a_process_that_keeps_the_output_open_are_handled() {
    // `hone -C sub/project` gives a relative root: the program is still found.
    let dir = tempfile::tempdir_in(".").unwrap();
    std::fs::create_dir_all(dir.path().join("graders")).unwrap();
    let script = dir.path().join("graders/ok.sh");
    std::fs::write(&script, "#!/bin/sh\ncat > /dev/null\necho 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let relative = std::path::PathBuf::from(dir.path().file_name().unwrap());
    let g = build(&relative, &spec(&["graders/ok.sh"], json!({})), true).unwrap();
    assert_eq!(g.grade("x", &json!({})).unwrap().reward, 1.0);
    // A process that leaves the group and holds stdout: an error within the deadline and a
    // second of grace, not a hang.
    let g = grader(
        dir.path(),
        // (The pause lets the background process leave the group before the shell exits.)
        &["sh", "-c", "setsid sleep 5 & sleep 0.3; echo 1"],
        json!({"timeout_seconds": 1}),
    );
    let t = Instant::now();
    match g.grade("x", &json!({})) {
        Err(GradeError::Runtime { msg, .. }) => assert!(msg.contains("holds its output"), "{msg}"),
        other => panic!("{other:?} after {:?}", t.elapsed()),
    }
    assert!(t.elapsed().as_secs_f64() < 4.5, "{:?}", t.elapsed());
    // Limits a grader file cannot exceed are refused, not a panic.
    for extra in [
        json!({"timeout_seconds": 1e30}),
        json!({"memory_mb": 1u64 << 50}),
    ] {
        assert!(matches!(
            build(dir.path(), &spec(&["sh"], extra), true),
            Err(GradeError::Spec { .. })
        ));
    }
}
