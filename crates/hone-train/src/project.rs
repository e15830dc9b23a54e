//! A hone project on disk: the directory holding `hone.toml`, its parsed and fully validated config (every
//! `[[model]]` as a typed spec, every path resolved against the root), and who is acting.

use std::path::{Path, PathBuf};

use hone_core::{Config, Error, Result};

use crate::models::{self, ModelEntry};

/// A loaded project.
pub struct Project {
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
    /// The `[[model]]`s of `config`, validated and typed, in `hone.toml` order (the majority baseline is
    /// not among them: see [`ModelEntry::majority`]).
    pub models: Vec<ModelEntry>,
}

impl Project {
    /// Find `hone.toml` by searching upward from `start` and load it. The whole config is validated here
    /// (syntax, keys, values, model kinds and parameters, and that every path exists relative to the
    /// project root), so a bad `hone.toml` fails every command before any work starts.
    pub fn discover(start: &Path) -> Result<Project> {
        let config_path = Config::find(start).ok_or_else(|| Error::NotFound {
            what: "hone.toml",
            name: format!("in {} or any parent directory", start.display()),
            hint: "run `hone init` to create a project, or pass -C DIR".into(),
        })?;
        let root = config_path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let config = Config::parse(&text, &config_path)?;
        config.check_paths(&text, &config_path, &root)?;
        let models = models::validate(&config, &text, &config_path, &root)?;
        Ok(Project {
            root,
            config_path,
            config,
            models,
        })
    }
}

/// Who is acting, for the audit log: `HONE_USER`, else the OS user, else `unknown`.
pub fn who() -> String {
    let name = ["HONE_USER", "USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_string());
    // A newline in HONE_USER must not forge a line in `hone audit log`.
    name.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}
