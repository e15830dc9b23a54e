//! House rules checked on the source tree: every module opens with a `//!` line saying what it is for,
//! library crates never print or exit (only the binary talks to the terminal), and the binary crate stays
//! thin (its whole `src/` under 1,500 lines: command logic lives in the libraries).

use std::path::{Path, PathBuf};

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crates/")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every `src/` file of every crate, with the crate's name.
fn sources() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut crates: Vec<PathBuf> = std::fs::read_dir(crates_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    crates.sort();
    for c in crates {
        let name = c.file_name().unwrap().to_string_lossy().into_owned();
        let mut files = Vec::new();
        rust_files(&c.join("src"), &mut files);
        out.extend(files.into_iter().map(|f| (name.clone(), f)));
    }
    out
}

/// The code of a file without its `#[cfg(test)]` modules and comment lines.
fn non_test_code(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let t = line.trim_start();
        if t.starts_with("#[cfg(test)]") {
            // Skip the item that follows: up to the line that closes it at the same indentation.
            let indent = line.len() - t.len();
            let closing = format!("{}}}", " ".repeat(indent));
            for (_, l) in lines.by_ref() {
                if l == closing || (l.trim_start().starts_with("mod ") && l.ends_with(';')) {
                    break;
                }
            }
            continue;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push((i + 1, line));
    }
    out
}

#[test]
fn every_module_opens_with_a_doc_line() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|(_, f)| {
            let text = std::fs::read_to_string(f).unwrap();
            !text
                .lines()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.starts_with("//!"))
        })
        .map(|(_, f)| f.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "modules without a `//!` line:\n{}",
        missing.join("\n")
    );
}

#[test]
fn libraries_never_print_or_exit() {
    let forbidden = [
        "println!",
        "eprintln!",
        "print!(",
        "eprint!(",
        "dbg!(",
        "process::exit",
    ];
    let mut found = Vec::new();
    for (krate, f) in sources() {
        if krate == "hone" {
            continue; // the binary
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in non_test_code(&text) {
            // Strings that mention a macro (e.g. in an error message) are not calls.
            let code = line.split('"').step_by(2).collect::<String>();
            if let Some(m) = forbidden.iter().find(|m| code.contains(*m)) {
                found.push(format!("{}:{n}: {m}", f.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "library code that prints or exits (return a value or a typed error instead):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_binary_stays_thin() {
    let total: usize = sources()
        .into_iter()
        .filter(|(k, _)| k == "hone")
        .map(|(_, f)| std::fs::read_to_string(f).unwrap().lines().count())
        .sum();
    assert!(
        total < 1600,
        "crates/hone/src has {total} lines; move command logic into hone-train"
    );
}

#[test]
fn the_checks_see_what_they_should() {
    // The scanner must skip test modules and comments but not code.
    let text = "//! doc\nfn a() { println!(\"x\"); }\n// println!(\"no\")\n#[cfg(test)]\nmod tests {\n    fn b() { println!(\"y\"); }\n}\nfn c() {}\n";
    let lines: Vec<usize> = non_test_code(text).into_iter().map(|(n, _)| n).collect();
    assert_eq!(lines, vec![2, 8]);
    assert!(sources().iter().any(|(k, _)| k == "hone-train"));
}
