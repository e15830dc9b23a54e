//! Helpers shared by the integration tests: run the `hone` binary, find the shared datasets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn hone(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hone"))
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("HONE_USER", "test-user")
        .output()
        .expect("run hone")
}

/// Add a line under `[policy]` of a demo project's `hone.toml`.
pub fn set_policy(dir: &Path, line: &str) {
    let p = dir.join("hone.toml");
    let t = std::fs::read_to_string(&p).unwrap().replace(
        "on_bad_record = \"quarantine\"",
        &format!("on_bad_record = \"quarantine\"\n{line}"),
    );
    std::fs::write(p, t).unwrap();
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The shared datasets folder: `HONE_SHARED`, else `../shared` beside the workspace root. `None` (skip)
/// when absent, except under `CI=true`, where a missing folder fails the test.
pub fn shared_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HONE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    if dir.join("datasets").is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "shared datasets not found at {} (set HONE_SHARED); required under CI=true",
            dir.display()
        );
    }
    eprintln!("skipping: shared datasets not found at {}", dir.display());
    None
}
