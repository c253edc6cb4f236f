//! `[api]`: who may use the query surfaces (`/v1` over HTTP, the
//! PostgreSQL endpoint) and the limits every query runs under.
//!
//! Secrets are never stored: a user has the SHA-256 of a bearer token
//! and/or of a salted password (`custos hash-secret` prints both forms).
//! Tokens are random and long, so an unsalted hash is enough for them;
//! passwords are chosen by people, so theirs carry a salt.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The PostgreSQL wire endpoint (`host:port`, port 0 picks one);
    /// empty: none.
    pub pg_listen: String,
    /// Seconds a query may run before it is cancelled.
    pub query_timeout_secs: u64,
    /// Memory a query may hold (joins, sorts, aggregates), in MiB.
    pub query_memory_mb: u64,
    /// Queries running at once; more wait their turn.
    pub query_concurrency: usize,
    /// Threads of the runtime queries run on (apart from ingest's).
    pub query_threads: usize,
    /// Rows an answer may hold at most (more: the query fails and says so).
    pub max_rows: usize,
    /// A PEM certificate chain (leaf first) and its PEM private key: the
    /// HTTP API and the PostgreSQL endpoint then serve TLS only. Both or
    /// neither; empty: no TLS.
    pub tls_cert: String,
    pub tls_key: String,
    pub users: Vec<ApiUser>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            pg_listen: String::new(),
            query_timeout_secs: 30,
            query_memory_mb: 512,
            query_concurrency: 4,
            query_threads: 2,
            max_rows: 1_000_000,
            tls_cert: String::new(),
            tls_key: String::new(),
            users: Vec::new(),
        }
    }
}

/// One user of the API: a name, a role, and how they prove who they are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiUser {
    pub name: String,
    /// `auditor`, `analyst` or `admin` (see `docs/sql.md`).
    pub role: String,
    /// 64 hex digits: SHA-256 of the bearer token (HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// `<salt>:<64 hex digits>`: SHA-256 of the salt's bytes followed by
    /// the password's (PostgreSQL endpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_sha256: Option<String>,
}

impl ApiConfig {
    /// The TLS acceptor of `tls_cert` and `tls_key`, if they are set.
    pub fn tls(&self) -> Result<Option<tokio_rustls::TlsAcceptor>, crate::tls::TlsError> {
        if self.tls_cert.is_empty() || self.tls_key.is_empty() {
            return Ok(None);
        }
        crate::tls::acceptor(self.tls_cert.as_ref(), self.tls_key.as_ref()).map(Some)
    }

    pub(super) fn validate(&self, problems: &mut Vec<String>) {
        if !self.pg_listen.is_empty() && self.pg_listen.parse::<std::net::SocketAddr>().is_err() {
            problems.push(format!(
                "api.pg_listen `{}` is not an address like 127.0.0.1:5433",
                self.pg_listen
            ));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            problems.push("api.tls_cert and api.tls_key go together: give both, or neither".into());
        } else if let Err(e) = self.tls() {
            problems.push(format!("api.tls_cert/api.tls_key: {e}"));
        }
        if self.query_timeout_secs == 0 {
            problems.push("api.query_timeout_secs must be at least 1".into());
        }
        if self.query_memory_mb == 0 {
            problems.push("api.query_memory_mb must be at least 1".into());
        }
        if self.query_concurrency == 0 || self.query_threads == 0 || self.max_rows == 0 {
            problems.push(
                "api.query_concurrency, api.query_threads and api.max_rows must be at least 1"
                    .into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            let at = format!("api.users[{i}]");
            if u.name.trim().is_empty() {
                problems.push(format!("{at}.name must not be empty"));
            } else if !names.insert(u.name.as_str()) {
                problems.push(format!("{at}: user `{}` is listed twice", u.name));
            }
            if !matches!(u.role.as_str(), "auditor" | "analyst" | "admin") {
                problems.push(format!(
                    "{at}.role `{}` must be auditor, analyst or admin",
                    u.role
                ));
            }
            if u.token_sha256.is_none() && u.password_sha256.is_none() {
                problems.push(format!(
                    "{at} needs token_sha256 or password_sha256 (see `custos hash-secret`)"
                ));
            }
            if let Some(h) = &u.token_sha256
                && !is_sha256_hex(h)
            {
                problems.push(format!("{at}.token_sha256 must be 64 hex digits"));
            }
            if let Some(h) = &u.password_sha256
                && !h.split_once(':').is_some_and(|(_, d)| is_sha256_hex(d))
            {
                problems.push(format!(
                    "{at}.password_sha256 must be <salt>:<64 hex digits>"
                ));
            }
        }
    }
}

fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}
