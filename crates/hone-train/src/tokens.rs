//! Access tokens for `hone serve`: created with a role and an optional expiry and shown once (the
//! store keeps only a blake3 hash), listed, revoked, and checked on every request (`authenticate`:
//! unknown, revoked, expired or under-privileged tokens are refused with the reason).

use hone_core::{Error, Result};
use hone_store::{Store, TokenRow};
use serde::{Deserialize, Serialize};

use crate::project::who;

/// What a token may do. Each role includes the ones before it: `predict` (predictions and chat),
/// `feedback` (and feedback on predictions), `review` (and the review queue and data views),
/// `admin` (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Predict,
    Feedback,
    Review,
    Admin,
}

impl Role {
    pub const NAMES: [&'static str; 4] = ["predict", "feedback", "review", "admin"];

    pub fn as_str(self) -> &'static str {
        Role::NAMES[self as usize]
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::Predict, Role::Feedback, Role::Review, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }

    /// Whether a token of this role may do what `needed` allows.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

/// A new token: the secret, shown once, and its stored row.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub token: String,
    pub name: String,
    pub role: Role,
    pub expires_at: Option<String>,
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Create a token named `name` with `role`, valid for `expires_days` days (none: until revoked).
pub fn create(
    store: &mut Store,
    name: &str,
    role: Role,
    expires_days: Option<u32>,
    command: &str,
) -> Result<Created> {
    let ok_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok_name {
        return Err(Error::Usage(format!(
            "token name `{name}`: use 1-64 letters, digits, `-`, `_` or `.`"
        )));
    }
    if expires_days.is_some_and(|d| d == 0 || d > 3650) {
        return Err(Error::Usage("--expires takes 1 to 3650 days".into()));
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| Error::Internal(format!("no randomness for a token: {e}")))?;
    let token = format!(
        "hone_{}",
        secret
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let now = chrono::Utc::now();
    let expires_at =
        expires_days.map(|d| (now + chrono::Duration::days(i64::from(d))).to_rfc3339());
    store.put_token(
        &TokenRow {
            hash: hash(&token),
            name: name.to_string(),
            role: role.as_str().to_string(),
            created_at: now.to_rfc3339(),
            created_by: who(),
            expires_at: expires_at.clone(),
            revoked_at: None,
        },
        command,
    )?;
    Ok(Created {
        token,
        name: name.to_string(),
        role,
        expires_at,
    })
}

/// Revoke the live token named `name`.
pub fn revoke(store: &mut Store, name: &str, command: &str) -> Result<()> {
    let at = chrono::Utc::now().to_rfc3339();
    if store.revoke_token(name, &who(), &at, command)? {
        Ok(())
    } else {
        Err(Error::NotFound {
            what: "live token",
            name: name.to_string(),
            hint: "`hone token list` shows the tokens and which are revoked".into(),
        })
    }
}

/// The table `hone token list` prints.
pub fn table(rows: &[TokenRow]) -> String {
    let now = chrono::Utc::now().to_rfc3339();
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|t| {
            let state = match (&t.revoked_at, &t.expires_at) {
                (Some(at), _) => format!("revoked {}", &at[..at.len().min(19)]),
                (None, Some(e)) if e.as_str() <= now.as_str() => "expired".into(),
                _ => "live".into(),
            };
            vec![
                t.name.clone(),
                t.role.clone(),
                t.created_at[..t.created_at.len().min(19)].to_string(),
                t.created_by.clone(),
                t.expires_at
                    .as_deref()
                    .map_or("never".into(), |e| e[..e.len().min(19)].to_string()),
                state,
            ]
        })
        .collect();
    crate::reports::table(
        &["name", "role", "created", "by", "expires", "state"],
        &rows,
    )
}

/// Why a request's token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header (HTTP 401).
    Missing,
    /// A token hone never issued (401).
    Unknown,
    Revoked {
        name: String,
    },
    Expired {
        name: String,
    },
    /// A valid token whose role does not allow this (HTTP 403).
    Forbidden {
        name: String,
        role: String,
        needed: Role,
    },
}

impl Denied {
    /// The HTTP status a server answers with.
    pub fn status(&self) -> u16 {
        match self {
            Denied::Forbidden { .. } => 403,
            _ => 401,
        }
    }
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Missing => write!(f, "missing `Authorization: Bearer TOKEN`"),
            Denied::Unknown => write!(f, "unknown token"),
            Denied::Revoked { name } => write!(f, "token `{name}` was revoked"),
            Denied::Expired { name } => write!(f, "token `{name}` has expired"),
            Denied::Forbidden { name, role, needed } => write!(
                f,
                "token `{name}` has role `{role}`; this needs `{}` or above",
                needed.as_str()
            ),
        }
    }
}

/// Check the `Authorization` header of a request that needs `needed`, at time `now` (RFC 3339).
/// The token is looked up by its hash, so no stored secret is ever compared.
pub fn authenticate(
    store: &Store,
    header: Option<&str>,
    needed: Role,
    now: &str,
) -> Result<std::result::Result<TokenRow, Denied>> {
    // The scheme is case-insensitive (RFC 7235): `Bearer`, `bearer`, `BEARER`.
    let Some(token) = header
        .map(str::trim)
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .filter(|t| !t.is_empty())
    else {
        return Ok(Err(Denied::Missing));
    };
    // As the audit chain records it: a row forged into the table is unknown, an edited role or
    // expiry does not hold, and a revocation cannot be undone by editing the row.
    let Some(row) = store.token_vouched(&hash(token))? else {
        return Ok(Err(Denied::Unknown));
    };
    if row.revoked_at.is_some() {
        return Ok(Err(Denied::Revoked { name: row.name }));
    }
    let expired = row.expires_at.as_deref().is_some_and(|e| {
        match (
            chrono::DateTime::parse_from_rfc3339(e),
            chrono::DateTime::parse_from_rfc3339(now),
        ) {
            (Ok(e), Ok(n)) => e <= n,
            _ => true,
        }
    });
    if expired {
        return Ok(Err(Denied::Expired { name: row.name }));
    }
    let role = Role::parse(&row.role).ok_or_else(|| {
        Error::Store(format!(
            "token `{}` has an unknown role `{}`",
            row.name, row.role
        ))
    })?;
    if !role.allows(needed) {
        return Ok(Err(Denied::Forbidden {
            name: row.name,
            role: row.role,
            needed,
        }));
    }
    Ok(Ok(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_shown_once_stored_as_hashes_and_checked_by_role_expiry_and_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path()).unwrap();
        let p = create(&mut store, "app", Role::Predict, None, "test").unwrap();
        let a = create(&mut store, "ops", Role::Admin, Some(30), "test").unwrap();
        assert!(p.token.starts_with("hone_") && p.token.len() == 69);
        assert_ne!(p.token, a.token);
        // Only the hash is stored.
        let rows = store.tokens().unwrap();
        assert!(rows.iter().all(|r| r.hash != p.token && r.hash != a.token));
        let now = chrono::Utc::now().to_rfc3339();
        let auth =
            |store: &Store, h: Option<&str>, needed| authenticate(store, h, needed, &now).unwrap();
        let bearer = |t: &str| format!("Bearer {t}");
        assert!(auth(&store, Some(&bearer(&p.token)), Role::Predict).is_ok());
        assert!(auth(&store, Some(&format!("bearer {}", p.token)), Role::Predict).is_ok());
        assert_eq!(
            auth(&store, Some(&format!("Basic {}", p.token)), Role::Predict),
            Err(Denied::Missing)
        );
        assert_eq!(
            auth(&store, Some(&bearer(&p.token)), Role::Feedback)
                .unwrap_err()
                .status(),
            403
        );
        assert!(auth(&store, Some(&bearer(&a.token)), Role::Review).is_ok());
        assert_eq!(auth(&store, None, Role::Predict), Err(Denied::Missing));
        assert_eq!(
            auth(&store, Some(&bearer("hone_guess")), Role::Predict),
            Err(Denied::Unknown)
        );
        assert_eq!(
            auth(&store, Some(&p.token), Role::Predict),
            Err(Denied::Missing),
            "a token without the Bearer scheme"
        );
        // Expired: checked against the time given.
        let later = (chrono::Utc::now() + chrono::Duration::days(31)).to_rfc3339();
        assert_eq!(
            authenticate(&store, Some(&bearer(&a.token)), Role::Predict, &later).unwrap(),
            Err(Denied::Expired { name: "ops".into() })
        );
        // Revoked; the name is free again, and a second revoke finds nothing.
        assert!(create(&mut store, "app", Role::Review, None, "test").is_err());
        revoke(&mut store, "app", "test").unwrap();
        assert_eq!(
            auth(&store, Some(&bearer(&p.token)), Role::Predict),
            Err(Denied::Revoked { name: "app".into() })
        );
        assert!(revoke(&mut store, "app", "test").is_err());
        create(&mut store, "app", Role::Feedback, None, "test").unwrap();
        // Bad names and expiries are usage errors.
        assert!(create(&mut store, "a b", Role::Predict, None, "test").is_err());
        assert!(create(&mut store, "x", Role::Predict, Some(0), "test").is_err());
        // Every creation and revocation is in the audit chain.
        assert!(store.verify_audit().unwrap().ok());
        // Rows edited outside hone: an un-revoked token stays revoked, a raised role does not hold,
        // a forged row is unknown; `audit verify` names each.
        let old = create(&mut store, "old", Role::Predict, None, "test").unwrap();
        revoke(&mut store, "old", "test").unwrap();
        store
            .connection()
            .execute(
                "UPDATE tokens SET revoked_at = NULL WHERE hash = ?1",
                [hash(&old.token)],
            )
            .unwrap();
        assert_eq!(
            auth(&store, Some(&bearer(&old.token)), Role::Predict),
            Err(Denied::Revoked { name: "old".into() })
        );
        let f = create(&mut store, "feed", Role::Feedback, None, "test").unwrap();
        store
            .connection()
            .execute("UPDATE tokens SET role = 'admin' WHERE name = 'feed'", [])
            .unwrap();
        assert_eq!(
            auth(&store, Some(&bearer(&f.token)), Role::Admin)
                .unwrap_err()
                .status(),
            403
        );
        store
            .connection()
            .execute(
                "INSERT INTO tokens(hash, name, role, created_at, created_by) VALUES (?1, 'evil', 'admin', 'x', 'x')",
                [hash("hone_forged")],
            )
            .unwrap();
        assert_eq!(
            auth(&store, Some(&bearer("hone_forged")), Role::Predict),
            Err(Denied::Unknown)
        );
        let problems: Vec<String> = store
            .verify_audit()
            .unwrap()
            .problems
            .into_iter()
            .map(|p| p.problem)
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("`evil`")));
        assert!(problems.iter().any(|p| p.contains("un-revoked")));
        assert!(problems.iter().any(|p| p.contains("`feed` was edited")));
    }
}
