//! Reading grader files: `graders/NAME.toml` or `graders/NAME.json` (OpenAI grader JSON as it is).
//! A file's stem names an unnamed grader; errors name the file, line and column.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::spec::GraderSpec;

/// A grader file that cannot be read or parsed.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("{}:{line}:{col}: {msg}", path.display())]
pub struct LoadError {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Where an unknown field is written. Graders are a tagged enum, so the parser reports such an
/// error against the whole table; the key's first occurrence is a better place to point at.
fn key_place(text: &str, msg: &str, json: bool) -> Option<(usize, usize)> {
    let key = msg.split("unknown field `").nth(1)?.split('`').next()?;
    let needle = if json {
        format!("\"{key}\"")
    } else {
        key.to_string()
    };
    text.lines().enumerate().find_map(|(i, l)| {
        let at = l.find(&needle)?;
        let rest = l[at + needle.len()..].trim_start();
        let is_key = if json {
            rest.starts_with(':')
        } else {
            rest.starts_with('=') && l[..at].trim().is_empty()
        };
        is_key.then(|| (i + 1, l[..at].chars().count() + 1))
    })
}

/// Parse one grader definition from `text`; `path` decides the format (`.json` or TOML) and names
/// errors.
pub fn parse(path: &Path, text: &str) -> Result<GraderSpec, LoadError> {
    let err = |line, col, msg: String| LoadError {
        path: path.to_path_buf(),
        line,
        col,
        msg,
    };
    let mut spec: GraderSpec = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(text).map_err(|e| {
            let msg = e.to_string();
            let (line, col) = key_place(text, &msg, true).unwrap_or((e.line(), e.column()));
            err(line, col, msg)
        })?
    } else {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().to_string();
            let (line, col) = key_place(text, &msg, false)
                .unwrap_or_else(|| e.span().map_or((1, 1), |s| line_col(text, s.start)));
            err(line, col, msg)
        })?
    };
    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
        spec.name_if_unnamed(stem);
    }
    Ok(spec)
}

/// Every grader in `dir` (`*.toml`, `*.json`), sorted by file name; no directory means none. Two
/// graders with one name are an error naming the second file.
pub fn load_dir(dir: &Path) -> Result<Vec<(PathBuf, GraderSpec)>, LoadError> {
    let io = |p: &Path, e: std::io::Error| LoadError {
        path: p.to_path_buf(),
        line: 0,
        col: 0,
        msg: e.to_string(),
    };
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml" || e == "json"))
        .collect();
    paths.sort();
    let mut out: Vec<(PathBuf, GraderSpec)> = Vec::new();
    for p in paths {
        let text = std::fs::read_to_string(&p).map_err(|e| io(&p, e))?;
        let spec = parse(&p, &text)?;
        if let Some((first, _)) = out.iter().find(|(_, s)| s.name() == spec.name()) {
            return Err(LoadError {
                path: p.clone(),
                line: 1,
                col: 1,
                msg: format!(
                    "grader name `{}` is also used by {}; names must be unique",
                    spec.name(),
                    first.display()
                ),
            });
        }
        out.push((p, spec));
    }
    Ok(out)
}
