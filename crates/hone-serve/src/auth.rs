//! Who may call what: the route → role table, token checks (through `hone_train::tokens`, against
//! what the audit chain records) cached for one second, and a per-token rate limit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hone_core::{Error, Result};
use hone_store::{Store, TokenRow};
use hone_train::tokens::{Denied, Role};

/// The role a route needs; `None` for the health checks, which need no token.
pub(crate) fn needed(path: &str) -> Option<Role> {
    match path {
        "/healthz" | "/readyz" => None,
        // The dashboard checks its own sessions (a browser sends a cookie, not a bearer token).
        "/" => None,
        p if p.starts_with("/ui/") => None,
        "/v1/feedback" => Some(Role::Feedback),
        // Predictions, completions and metrics (aggregate counts, no data): any valid token. Unknown
        // paths too, so that a caller without a token learns nothing about which routes exist.
        _ => Some(Role::Predict),
    }
}

/// How long a token check is reused: a revocation or expiry takes effect within this time.
const CACHE_FOR: Duration = Duration::from_secs(1);

/// A token check's outcome: the token's row, or why it was refused.
type Checked = std::result::Result<TokenRow, Denied>;

pub(crate) struct Auth {
    store: Mutex<Store>,
    cache: Mutex<HashMap<String, (Instant, Checked)>>,
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// The caller of an authenticated request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub name: String,
    pub role: Role,
}

impl Auth {
    pub fn new(root: &Path, rate: f64) -> Result<Auth> {
        Ok(Auth {
            store: Mutex::new(Store::open_existing(root)?),
            cache: Mutex::new(HashMap::new()),
            rate,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    /// Check the `Authorization` header for `role`.
    pub fn check(
        &self,
        header: Option<&str>,
        role: Role,
    ) -> Result<std::result::Result<Caller, Denied>> {
        let key = header.map(hone_train::tokens::hash).unwrap_or_default();
        let now = Instant::now();
        let cached = {
            let cache = self.cache.lock().map_err(poisoned)?;
            cache
                .get(&key)
                .filter(|(at, _)| now.duration_since(*at) < CACHE_FOR)
                .map(|(_, r)| r.clone())
        };
        let found = match cached {
            Some(r) => r,
            None => {
                let r = {
                    let store = self.store.lock().map_err(poisoned)?;
                    // Checked for the lowest role; the route's role is checked below, per request.
                    hone_train::tokens::authenticate(
                        &store,
                        header,
                        Role::Predict,
                        &chrono::Utc::now().to_rfc3339(),
                    )?
                };
                let mut cache = self.cache.lock().map_err(poisoned)?;
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(key, (now, r.clone()));
                r
            }
        };
        Ok(found.and_then(|row| {
            let has = Role::parse(&row.role).unwrap_or(Role::Predict);
            if has.allows(role) {
                Ok(Caller {
                    name: row.name,
                    role: has,
                })
            } else {
                Err(Denied::Forbidden {
                    name: row.name,
                    role: row.role,
                    needed: role,
                })
            }
        }))
    }

    /// Take one request from `name`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn take(&self, name: &str) -> Result<std::result::Result<(), f64>> {
        if self.rate <= 0.0 {
            return Ok(Ok(()));
        }
        let burst = (2.0 * self.rate).max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().map_err(poisoned)?;
        let (level, at) = buckets.entry(name.to_string()).or_insert((burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.rate).min(burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(Ok(()))
        } else {
            Ok(Err((1.0 - *level) / self.rate))
        }
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("a server lock was poisoned by a panicked request".into())
}
