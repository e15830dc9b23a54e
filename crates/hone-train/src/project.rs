//! A hone project on disk: the directory holding `hone.toml`, its parsed config, and who is acting.

use std::path::{Path, PathBuf};

use hone_core::{Config, Error, Result};

/// A loaded project.
pub struct Project {
    pub root: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
}

impl Project {
    /// Find `hone.toml` by searching upward from `start` and load it.
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
        let config = Config::load(&config_path)?;
        Ok(Project {
            root,
            config_path,
            config,
        })
    }
}

/// Who is acting, for the audit log: `HONE_USER`, else the OS user, else `unknown`.
pub fn who() -> String {
    ["HONE_USER", "USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".to_string())
}
