//! Who asked what: the one place every query surface reports a statement
//! to, whatever its outcome (answered, refused, forbidden, over a limit).
//!
//! Each statement becomes one row of the ledger's `query_log` table
//! ([`QueryLog`]), a structured log line (target `custos::query_log`) and
//! a count in `custos_queries_total`. The row is durable before the
//! answer leaves custos: when it cannot be written, the statement is not
//! answered ([`super::QueryError::Unrecorded`]).
//!
//! The statement is kept as custos parsed it, re-rendered, with each
//! `pseudonym('…')` of a literal replaced by the pseudonym it stands for
//! ([`loggable_sql`]), so raw patient identifiers never reach the ledger or
//! the log; comments are dropped with the rest of the original layout.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Value, visit_expressions_mut,
};

use super::Role;
use crate::event::Pseudonymizer;
use crate::ledger::checkpoint::NoteSigner;
use crate::ledger::{ChainId, ChainWriter, LedgerError, Origin, QUERIES_STREAM, Store};
use crate::metrics::{metrics, query_metrics};

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
    /// When the statement was received.
    pub at: DateTime<Utc>,
    /// The authenticated user (`cli` users are the local account:
    /// `$USER`, or `local`).
    pub who: &'a str,
    pub role: Option<Role>,
    pub surface: Surface,
    /// The statement as it may be kept ([`loggable_sql`]).
    pub sql: &'a str,
    /// Rows answered, when it was answered.
    pub rows: Option<u64>,
    /// `ok`, or the class of failure (see [`super::QueryError::outcome`]).
    pub outcome: &'static str,
    /// The failure's message, when it failed (as it may be kept).
    pub error: Option<&'a str>,
    pub elapsed: Duration,
}

impl QueryRecord<'_> {
    /// The entry's members in the ledger (`docs/ledger-format.md`, "The
    /// query log"). Absent values are left out.
    pub fn entry(&self) -> serde_json::Value {
        let mut entry = serde_json::json!({
            "at": self.at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "who": self.who,
            "surface": self.surface.as_str(),
            "sql": self.sql,
            "outcome": self.outcome,
            "elapsed_ms": self.elapsed.as_millis() as u64,
        });
        if let Some(role) = self.role {
            entry["role"] = role.as_str().into();
        }
        if let Some(rows) = self.rows {
            entry["rows"] = rows.into();
        }
        if let Some(error) = self.error {
            entry["error"] = error.into();
        }
        entry
    }
}

/// Counts and logs one statement (the metrics and the `custos::query_log`
/// line); [`QueryLog::append`] records its [`QueryRecord::entry`] in the
/// ledger.
pub fn report_query(record: &QueryRecord<'_>) {
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

/// Counts and logs a connection or request that failed authentication
/// (no statement is run or recorded): `user` as claimed, if any.
pub fn report_unauthenticated(surface: Surface, user: Option<&str>) {
    query_metrics()
        .queries
        .with_label_values(&[surface.as_str(), "unauthenticated"])
        .inc();
    tracing::warn!(
        target: "custos::query_log",
        surface = surface.as_str(),
        user = user.unwrap_or("-"),
        "authentication failed"
    );
}

/// A statement as the query log may keep it.
#[derive(Debug, Clone)]
pub struct Loggable<'p> {
    /// The statements as parsed, each `pseudonym('<raw>')` of a string
    /// literal replaced by the literal pseudonym (or `'<withheld>'`
    /// without the pseudonym key), joined by `; `. Text that does not
    /// parse is not kept, only its length and BLAKE3: nothing can tell
    /// what in it is an identifier.
    pub sql: String,
    /// The raw identifiers it named.
    raw: Vec<String>,
    parsed: bool,
    pseudonyms: Option<&'p Pseudonymizer>,
}

impl<'p> Loggable<'p> {
    pub fn new(sql: &str, pseudonyms: Option<&'p Pseudonymizer>) -> Loggable<'p> {
        let Ok(statements) = DFParser::parse_sql(sql) else {
            return Loggable {
                sql: format!(
                    "-- unparsable statement withheld: {} bytes, blake3 {}",
                    sql.len(),
                    blake3::hash(sql.as_bytes()).to_hex()
                ),
                raw: Vec::new(),
                parsed: false,
                pseudonyms,
            };
        };
        let mut raw = Vec::new();
        let rendered: Vec<String> = statements
            .into_iter()
            .map(|mut s| {
                replace_pseudonym_calls(&mut s, pseudonyms, &mut raw);
                s.to_string()
            })
            .collect();
        Loggable {
            sql: rendered.join("; "),
            raw,
            parsed: true,
            pseudonyms,
        }
    }

    /// An error message about the statement as it may be kept: each raw
    /// identifier the statement named replaced as in the statement; a
    /// parser's message (which may quote the text) withheld.
    pub fn error(&self, error: &str) -> String {
        if !self.parsed {
            return "the statement does not parse (the parser's message quotes it and is withheld)"
                .into();
        }
        let mut out = error.to_owned();
        for r in self.raw.iter().filter(|r| !r.is_empty()) {
            out = out.replace(r.as_str(), &stand_in(r, self.pseudonyms));
        }
        out
    }
}

fn stand_in(raw: &str, pseudonyms: Option<&Pseudonymizer>) -> String {
    match pseudonyms {
        Some(p) => p.patient(raw),
        None => "<withheld>".into(),
    }
}

fn replace_pseudonym_calls(
    statement: &mut Statement,
    pseudonyms: Option<&Pseudonymizer>,
    raw: &mut Vec<String>,
) {
    match statement {
        Statement::Statement(s) => {
            let _ = visit_expressions_mut(s.as_mut(), |expr| {
                if let Some(literal) = pseudonym_literal(expr) {
                    let value = stand_in(&literal, pseudonyms);
                    raw.push(literal);
                    *expr = Expr::value(Value::SingleQuotedString(value));
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        Statement::Explain(e) => replace_pseudonym_calls(&mut e.statement, pseudonyms, raw),
        // DataFusion's own statements (CREATE EXTERNAL TABLE, COPY, …)
        // are refused before they run; they are kept as written.
        _ => {}
    }
}

/// The raw identifier of `pseudonym('<raw>')`, if `expr` is one.
fn pseudonym_literal(expr: &Expr) -> Option<String> {
    let Expr::Function(f) = expr else {
        return None;
    };
    if !f.name.to_string().eq_ignore_ascii_case("pseudonym") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))] = list.args.as_slice() else {
        return None;
    };
    v.clone().into_string()
}

/// The ledger's `query_log`: the chain `+queries/<n>` this process appends
/// to. A process takes the lowest-numbered chain no other process holds
/// (one at a time holds a chain, by its lock), so a group of processes
/// sharing a store, and every `custos query` run, need no setting.
pub struct QueryLog {
    store: Store,
    /// Signs a checkpoint of the chain at most every interval (and when
    /// the log is dropped or reopened).
    checkpoints: Option<(Arc<NoteSigner>, Duration)>,
    state: Mutex<LogState>,
}

struct LogState {
    /// `None` before the first statement, and after a failed append,
    /// until reopened.
    writer: Option<ChainWriter>,
    /// The chain taken (at the first statement).
    chain: Option<ChainId>,
    signed: Instant,
    unsigned: bool,
}

impl std::fmt::Debug for QueryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryLog")
            .field("chain", &self.chain())
            .finish_non_exhaustive()
    }
}

impl QueryLog {
    /// The query log of `store`. A `+queries/<n>` chain is taken (and a
    /// crashed append repaired) at the first statement, so a process that
    /// answers none adds no chain; the first entry's checkpoint also signs
    /// what an earlier holder of the chain left unsigned.
    pub fn open(store: Store, checkpoints: Option<(Arc<NoteSigner>, Duration)>) -> QueryLog {
        QueryLog {
            store,
            checkpoints,
            state: Mutex::new(LogState {
                writer: None,
                chain: None,
                signed: Instant::now(),
                unsigned: true,
            }),
        }
    }

    /// The chain this process appends to, once it has taken one.
    pub fn chain(&self) -> Option<ChainId> {
        self.lock().chain.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one statement durably (segment, tree and manifest synced)
    /// as the chain's next entry. Blocking. After a failure the chain is
    /// reopened (or another one taken) at the next call.
    pub fn append(&self, entry: &serde_json::Value) -> Result<(), LedgerError> {
        let mut state = self.lock();
        let mut writer = match (state.writer.take(), &state.chain) {
            (Some(w), _) => w,
            (None, Some(chain)) => match self.store.chain_writer(chain) {
                Ok(w) => w,
                Err(LedgerError::Locked { .. }) => bind(&self.store)?,
                Err(e) => return Err(e),
            },
            (None, None) => bind(&self.store)?,
        };
        state.chain = Some(writer.chain().clone());
        let offset = writer.last_offset().map_or(0, |last| last + 1);
        writer.push_query(Origin::kafka(offset), entry)?;
        let stats = writer.flush()?;
        if let Some(stats) = stats {
            metrics().note_flush("query_log", stats.queries, stats.segments, stats.bytes);
            state.unsigned = true;
        }
        state.writer = Some(writer);
        drop(state);
        self.checkpoint(false)
    }

    /// Signs a checkpoint when entries were recorded since the last one
    /// and the interval passed (or `now`). Blocking.
    pub fn checkpoint(&self, now: bool) -> Result<(), LedgerError> {
        let Some((signer, every)) = &self.checkpoints else {
            return Ok(());
        };
        let mut state = self.lock();
        if !state.unsigned || (!now && state.signed.elapsed() < *every) {
            return Ok(());
        }
        let Some(writer) = state.writer.as_mut() else {
            return Ok(());
        };
        let written = writer.checkpoint(signer, Utc::now())?;
        state.signed = Instant::now();
        state.unsigned = false;
        metrics().note_checkpoints(written.len());
        Ok(())
    }
}

impl Drop for QueryLog {
    fn drop(&mut self) {
        if let Err(e) = self.checkpoint(true) {
            tracing::warn!(error = %e, "cannot sign the query log's last entries; the next start signs them");
        }
    }
}

/// The lowest-numbered `+queries/<n>` chain no other process holds,
/// opened.
fn bind(store: &Store) -> Result<ChainWriter, LedgerError> {
    for n in 0..=i32::from(u16::MAX) {
        match store.chain_writer(&ChainId::new(QUERIES_STREAM, n)) {
            Ok(w) => return Ok(w),
            Err(LedgerError::Locked { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(LedgerError::InvalidOptions(
        "no free query log chain".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::PseudonymKey;

    fn pseudonyms() -> Pseudonymizer {
        Pseudonymizer::new(&PseudonymKey::from_hex(&"11".repeat(32)).unwrap())
    }

    #[test]
    fn raw_identifiers_in_pseudonym_calls_are_replaced_by_their_pseudonyms() {
        let p = pseudonyms();
        let logged = Loggable::new(
            "select * from access -- who opened MRN-7?\n where patient = PSEUDONYM('MRN-7') or patient in (select pseudonym('MRN-8'))",
            Some(&p),
        );
        let sql = &logged.sql;
        assert!(!sql.contains("MRN-"), "{sql}");
        assert!(sql.contains(&format!("'{}'", p.patient("MRN-7"))), "{sql}");
        assert!(sql.contains(&format!("'{}'", p.patient("MRN-8"))), "{sql}");
        assert_eq!(logged.raw, ["MRN-7", "MRN-8"]);
        let error = logged.error("cannot cast 'MRN-7' to Int64");
        assert_eq!(
            error,
            format!("cannot cast '{}' to Int64", p.patient("MRN-7"))
        );
        // A call on a column is kept: it names no identifier.
        let logged = Loggable::new("SELECT pseudonym(actor_id) FROM access", Some(&p));
        assert!(logged.sql.contains("pseudonym(actor_id)"), "{}", logged.sql);
        assert!(logged.raw.is_empty());
    }

    #[test]
    fn without_the_key_the_identifier_is_withheld_and_unparsable_text_is_not_kept() {
        let logged = Loggable::new("EXPLAIN SELECT pseudonym('MRN-9')", None);
        assert!(
            !logged.sql.contains("MRN-9") && logged.sql.contains("'<withheld>'"),
            "{}",
            logged.sql
        );
        let text = "SELEC pseudonym('MRN-9'";
        let logged = Loggable::new(text, None);
        assert!(
            !logged.sql.contains("MRN-9") && logged.sql.contains("unparsable"),
            "{}",
            logged.sql
        );
        assert!(
            logged
                .sql
                .contains(&blake3::hash(text.as_bytes()).to_hex().to_string())
        );
        let error = logged.error("sql parser error: Expected: an expression, found: 'MRN-9'");
        assert!(!error.contains("MRN-9"), "{error}");
    }
}
