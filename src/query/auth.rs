//! Who is asking: the users of `[api]`, found by bearer token (HTTP) or by
//! name and password (PostgreSQL).
//!
//! Only hashes are kept: a token's SHA-256 (`token_sha256`, 64 hex
//! digits), a password's salted SHA-256 (`password_sha256`,
//! `<salt>:<hex of SHA-256(salt ‖ password)>`). `custos hash-secret`
//! prints both.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{Caller, Role};
use crate::config::ApiConfig;

/// The configured users.
#[derive(Debug, Clone, Default)]
pub struct Users {
    /// By the hex SHA-256 of their token.
    tokens: HashMap<String, Caller>,
    /// By name: the caller and their `(salt, hex digest)`.
    passwords: HashMap<String, (Caller, String, String)>,
}

impl Users {
    /// The users of a validated configuration (entries with an unknown
    /// role are left out; validation reports them).
    pub fn from_config(api: &ApiConfig) -> Users {
        let mut users = Users::default();
        for u in &api.users {
            let Some(role) = Role::parse(&u.role) else {
                continue;
            };
            let caller = Caller {
                name: u.name.clone(),
                role,
            };
            if let Some(h) = &u.token_sha256 {
                users.tokens.insert(h.to_ascii_lowercase(), caller.clone());
            }
            if let Some((salt, digest)) =
                u.password_sha256.as_deref().and_then(|p| p.split_once(':'))
            {
                users.passwords.insert(
                    u.name.clone(),
                    (caller, salt.to_owned(), digest.to_ascii_lowercase()),
                );
            }
        }
        users
    }

    /// The user whose bearer token this is.
    pub fn by_token(&self, token: &str) -> Option<&Caller> {
        // Looked up by hash: timing reveals at most something of a hash.
        self.tokens.get(&hash_token(token))
    }

    /// The user `name`, if `password` is theirs.
    pub fn by_password(&self, name: &str, password: &str) -> Option<&Caller> {
        let (caller, salt, digest) = self.passwords.get(name)?;
        let given = salted_digest(salt, password);
        constant_time_eq(given.as_bytes(), digest.as_bytes()).then_some(caller)
    }
}

/// The hex SHA-256 of a token (`token_sha256`).
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `<salt>:<hex SHA-256(salt ‖ password)>` (`password_sha256`).
pub fn hash_password(salt: &str, password: &str) -> String {
    format!("{salt}:{}", salted_digest(salt, password))
}

fn salted_digest(salt: &str, password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(password.as_bytes());
    hex::encode(h.finalize())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiUser;

    #[test]
    fn tokens_and_passwords_find_their_user_only() {
        let api = ApiConfig {
            users: vec![
                ApiUser {
                    name: "ann".into(),
                    role: "auditor".into(),
                    token_sha256: Some(hash_token("t-ann")),
                    password_sha256: Some(hash_password("s4lt", "pw-ann")),
                },
                ApiUser {
                    name: "bob".into(),
                    role: "analyst".into(),
                    token_sha256: Some(hash_token("t-bob")),
                    password_sha256: None,
                },
            ],
            ..ApiConfig::default()
        };
        let users = Users::from_config(&api);
        assert_eq!(users.by_token("t-ann").unwrap().role, Role::Auditor);
        assert_eq!(users.by_token("t-bob").unwrap().name, "bob");
        assert!(users.by_token("t-carol").is_none());
        assert_eq!(users.by_password("ann", "pw-ann").unwrap().name, "ann");
        assert!(users.by_password("ann", "pw-bob").is_none());
        assert!(users.by_password("bob", "").is_none());
        assert_ne!(hash_password("a", "pw"), hash_password("b", "pw"));
    }
}
