//! Typed errors shared by hone's libraries. Every error that comes from user input names the file, the
//! line, the field and what to do; the binary maps [`Error::exit_code`] to the process exit code.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `hone.toml` (or another config file) is invalid: a syntax error, an unknown key, a bad value.
    #[error("{}:{line}:{col}: {message}{}", path.display(), hint_suffix(hint))]
    Config {
        path: PathBuf,
        line: usize,
        col: usize,
        message: String,
        hint: String,
    },

    /// A data record cannot be read (and the policy says `on_bad_record = "fail"`), or a record breaks a
    /// policy that is set to fail (e.g. `pii = "fail"`). Text quoted here is already PII-masked.
    #[error("{}:{line}: field `{field}`: {reason}{}", file.display(), hint_suffix(hint))]
    BadRecord {
        file: PathBuf,
        line: u64,
        field: String,
        reason: String,
        hint: String,
    },

    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// The store (`.hone/`) failed or is inconsistent.
    #[error("store: {0}")]
    Store(String),

    /// Something the user asked for does not exist (a version, a record id, a run).
    #[error("{what} not found: {name}{}", hint_suffix(hint))]
    NotFound {
        what: &'static str,
        name: String,
        hint: String,
    },

    /// The data cannot support what was asked: a single label, an empty training or test set, too few
    /// examples for a method. The fix is in the data (or the split), not in the command.
    #[error("{message}{}", hint_suffix(hint))]
    Data { message: String, hint: String },

    /// A usage error that is not tied to a file (e.g. conflicting options).
    #[error("{0}")]
    Usage(String),

    /// The test set (or a suite) leaks into the training data and the policy says `contamination = "fail"`.
    #[error(
        "contamination: {pairs} test/train pair(s) leak\n{report}{}",
        hint_suffix(hint)
    )]
    Contamination {
        pairs: usize,
        report: String,
        hint: String,
        /// Every pair (the message shows the first 25).
        all: Vec<crate::record::LeakPair>,
    },

    /// The frozen test set no longer matches the data: records changed or vanished since it was pinned.
    /// Nothing trains until the user restores them or refreezes (`--refreeze --reason`, audited).
    #[error("the frozen test set changed: {detail}{}", hint_suffix(hint))]
    FrozenTestChanged {
        changed: usize,
        vanished: usize,
        detail: String,
        hint: String,
    },

    /// A model directory or file the config points at is missing or incomplete (`config.json`,
    /// `tokenizer.json`, `model.safetensors`, a saved run's artifacts).
    #[error("{}: {reason}{}", path.display(), hint_suffix(hint))]
    ModelFiles {
        path: PathBuf,
        reason: String,
        hint: String,
    },

    /// Model weights exist but cannot be used: truncated or corrupt safetensors, wrong shapes or dtypes.
    #[error("{}: corrupt or incompatible weights: {reason}{}", path.display(), hint_suffix(hint))]
    CorruptWeights {
        path: PathBuf,
        reason: String,
        hint: String,
    },

    /// A tensor or buffer could not be allocated.
    #[error("out of memory while {what}{}", hint_suffix(hint))]
    OutOfMemory { what: String, hint: String },

    /// An internal invariant was broken (a bug in hone).
    #[error("internal error: {0}")]
    Internal(String),
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("\n  hint: {hint}")
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The process exit code for this error (DESIGN §7.6): 1 error, 2 usage or config, 4 contamination.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config { .. }
            | Error::Usage(_)
            | Error::FrozenTestChanged { .. }
            | Error::Data { .. }
            | Error::ModelFiles { .. } => 2,
            Error::Contamination { .. } => 4,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_line_and_hint() {
        let e = Error::BadRecord {
            file: "data/a.csv".into(),
            line: 7,
            field: "label".into(),
            reason: "missing".into(),
            hint: "fill it or map another column".into(),
        };
        let s = e.to_string();
        assert!(s.starts_with("data/a.csv:7: field `label`: missing"), "{s}");
        assert!(s.contains("hint: fill it"), "{s}");
        assert_eq!(e.exit_code(), 1);
        let c = Error::Config {
            path: "hone.toml".into(),
            line: 3,
            col: 1,
            message: "x".into(),
            hint: String::new(),
        };
        assert_eq!(c.exit_code(), 2);
        assert_eq!(c.to_string(), "hone.toml:3:1: x");
    }

    #[test]
    fn each_kind_of_failure_names_what_to_do_and_has_its_exit_code() {
        let cases = [
            (
                Error::FrozenTestChanged {
                    changed: 1,
                    vanished: 0,
                    detail: "1 frozen test record(s) changed".into(),
                    hint: "refreeze".into(),
                },
                2,
                "the frozen test set changed",
            ),
            (
                Error::ModelFiles {
                    path: "models/m/tokenizer.json".into(),
                    reason: "missing".into(),
                    hint: String::new(),
                },
                2,
                "models/m/tokenizer.json: missing",
            ),
            (
                Error::CorruptWeights {
                    path: "m.safetensors".into(),
                    reason: "truncated".into(),
                    hint: String::new(),
                },
                1,
                "m.safetensors: corrupt or incompatible weights: truncated",
            ),
            (
                Error::OutOfMemory {
                    what: "fine-tuning".into(),
                    hint: "lower batch".into(),
                },
                1,
                "out of memory while fine-tuning",
            ),
            (
                Error::Data {
                    message: "one label".into(),
                    hint: "add another".into(),
                },
                2,
                "one label\n  hint: add another",
            ),
        ];
        for (e, code, text) in cases {
            assert_eq!(e.exit_code(), code, "{e}");
            assert!(e.to_string().starts_with(text), "{e}");
        }
    }
}
