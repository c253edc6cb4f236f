//! Who asked what: the one place every query surface reports a statement
//! to, whatever its outcome (answered, refused, forbidden, over a limit).
//!
//! For now a statement becomes one structured log line (target
//! `custos::query_log`) and a count in `custos_queries_total`. The
//! `query_log` ledger table will be written from [`record_query`] too, so
//! every surface gains it at once.

use std::time::Duration;

use super::Role;
use crate::metrics::query_metrics;

/// Where a statement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    Cli,
    Http,
    Postgres,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Cli => "cli",
            Surface::Http => "http",
            Surface::Postgres => "postgres",
        }
    }
}

/// One statement as received, and what became of it.
#[derive(Debug, Clone)]
pub struct QueryRecord<'a> {
    /// The authenticated user (`cli` users are the local account:
    /// `$USER`, or `local`).
    pub who: &'a str,
    pub role: Option<Role>,
    pub surface: Surface,
    pub sql: &'a str,
    /// Rows answered, when it was answered.
    pub rows: Option<u64>,
    /// `ok`, or the class of failure (see [`super::QueryError::outcome`]).
    pub outcome: &'static str,
    /// The failure's message, when it failed.
    pub error: Option<&'a str>,
    pub elapsed: Duration,
}

/// Records one statement. Every query surface calls this, once per
/// statement.
pub fn record_query(record: &QueryRecord<'_>) {
    let m = query_metrics();
    let surface = record.surface.as_str();
    m.queries
        .with_label_values(&[surface, record.outcome])
        .inc();
    m.query_seconds
        .with_label_values(&[surface])
        .observe(record.elapsed.as_secs_f64());
    tracing::info!(
        target: "custos::query_log",
        who = record.who,
        role = record.role.map(Role::as_str).unwrap_or("-"),
        surface,
        sql = record.sql,
        rows = record.rows,
        outcome = record.outcome,
        error = record.error,
        elapsed_ms = record.elapsed.as_millis() as u64,
        "query"
    );
}
