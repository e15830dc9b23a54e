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

/// The commented `hone.toml` that `hone init` writes (`{{name}}` becomes the project's name).
pub const INIT_TOML: &str = include_str!("init_template.toml");

/// `hone init`: a commented `hone.toml`, `data/` (with two example rows), `suites/` and `reports/` in
/// `dir`. Refuses to overwrite an existing `hone.toml` unless `force`. Returns the config's path.
pub fn init(dir: &Path, force: bool) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let toml_path = dir.join("hone.toml");
    if toml_path.exists() && !force {
        return Err(Error::Usage(format!(
            "{} already exists; pass --force to overwrite it",
            toml_path.display()
        )));
    }
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "my-task".into());
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    for sub in ["data", "suites", "reports"] {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
    }
    // Write atomically: a partial hone.toml is worse than none.
    let tmp = dir.join(".hone.toml.tmp");
    std::fs::write(&tmp, INIT_TOML.replace("{{name}}", &slug)).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &toml_path).map_err(|e| Error::io(&toml_path, e))?;
    let sample = dir.join("data/examples.jsonl");
    if !sample.exists() {
        std::fs::write(&sample, "{\"id\": \"ex-1\", \"text\": \"where is my refund?\", \"label\": \"refund_status\"}\n{\"id\": \"ex-2\", \"text\": \"I lost my card yesterday\", \"label\": \"card_lost\"}\n").map_err(|e| Error::io(&sample, e))?;
    }
    Ok(toml_path)
}

/// The name the acting person goes by: `HONE_USER` when set, else the OS account. Control
/// characters are escaped (a newline in `HONE_USER` must not forge a line in `hone audit log`).
pub fn user_name() -> String {
    declared_user().unwrap_or_else(os_account)
}

/// `HONE_USER`, when set, with control characters escaped.
fn declared_user() -> Option<String> {
    std::env::var("HONE_USER")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| crate::input::escape_controls(&v))
}

/// The OS account this process runs as (from the user database, not from `$USER`, which anyone can
/// set); `unknown` where the platform cannot say.
pub fn os_account() -> String {
    whoami::fallible::username()
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            ["USER", "USERNAME", "LOGNAME"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        })
        .map_or_else(
            || "unknown".to_string(),
            |n| crate::input::escape_controls(&n),
        )
}

/// Who is acting, for the audit log: the declared name and, when it differs, the OS account beside
/// it (`ana (os: build)`), so that `HONE_USER` alone cannot put a change on someone else's name.
pub fn who() -> String {
    let os = os_account();
    match declared_user() {
        Some(name) if name != os => format!("{name} (os: {os})"),
        _ => os,
    }
}
