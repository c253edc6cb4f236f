//! One scheduled run of every SQL detector, and the memory of what fired.
//!
//! A [`SqlRun`] owns everything it needs (the window's batches, shared with
//! the window; the reference batches; the loaded queries), so the caller
//! can move it to its own task. Queries run one after the other in one
//! session; each is limited in time ([`QUERY_TIMEOUT_SECS`], wall clock:
//! a resource limit, not a window) and in memory (the session's pool).
//!
//! Dedup: a row's key is (detector, `dedup_key`) or (detector, actor,
//! patient). A key that fired is remembered with the end of the fired
//! finding's window and its severity; while that end is inside the window
//! (the evidence has not left it) the key is suppressed, unless the new
//! row's severity is higher. At most [`MAX_FIRED`] keys are remembered; at
//! the cap the tenth whose evidence ended earliest is forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow::record_batch::RecordBatch;
use futures::StreamExt;

use super::SqlError;
use super::load::{Query, read_only, session};
use super::output::{self, Row};
use crate::detect::{Finding, Severity};

/// Wall-clock seconds one query may run.
pub const QUERY_TIMEOUT_SECS: u64 = 60;
/// Rows one query may return per run; the rest are counted as skipped.
pub const MAX_ROWS_PER_QUERY: usize = 10_000;
/// Fired keys remembered at most.
pub const MAX_FIRED: usize = 100_000;

/// A query that failed at run time.
#[derive(Debug, thiserror::Error)]
#[error("{detector}: {error}")]
pub struct SqlFailure {
    pub detector: String,
    pub error: SqlError,
}

/// What a run found.
#[derive(Debug, Default)]
pub struct SqlReport {
    /// New findings (already deduplicated against earlier runs).
    pub findings: Vec<Finding>,
    pub failures: Vec<SqlFailure>,
    /// Rows left out: bad severity, null actor or title, over the row cap.
    pub skipped_rows: u64,
    /// Rows that matched a finding already raised.
    pub suppressed: u64,
    /// Rows in the window the run saw.
    pub window_rows: usize,
}

impl SqlReport {
    /// The report of a run that stopped before any query ran (logged and
    /// counted with the other failures when the loop reads it).
    pub fn aborted(why: String) -> SqlReport {
        SqlReport {
            failures: vec![SqlFailure {
                detector: "sql".into(),
                error: SqlError::Aborted(why),
            }],
            ..SqlReport::default()
        }
    }
}

pub(super) struct RunInput {
    pub(super) queries: Arc<[Query]>,
    pub(super) window: Vec<RecordBatch>,
    pub(super) reference: Vec<(String, RecordBatch)>,
    /// The window's bounds, event time in µs.
    pub(super) from: i64,
    pub(super) to: i64,
    pub(super) max_evidence: usize,
    pub(super) fired: Arc<Mutex<Fired>>,
    /// Held while the run exists, so the next one waits for it.
    pub(super) _running: Arc<()>,
}

/// A due run, ready to execute: `tokio::spawn(run.execute())`.
pub struct SqlRun {
    input: RunInput,
}

impl SqlRun {
    pub(super) fn new(input: RunInput) -> Self {
        SqlRun { input }
    }

    /// Runs every detector and returns their new findings.
    pub async fn execute(self) -> SqlReport {
        let input = self.input;
        let mut report = SqlReport {
            window_rows: input.window.iter().map(RecordBatch::num_rows).sum(),
            ..SqlReport::default()
        };
        let ctx = match session(input.window, &input.reference) {
            Ok(ctx) => ctx,
            Err(error) => {
                report.failures.push(SqlFailure {
                    detector: "sql".into(),
                    error,
                });
                return report;
            }
        };
        let mut rows = Vec::new();
        for q in input.queries.iter() {
            let cx = output::Context {
                detector: &q.name,
                from: input.from,
                to: input.to,
                max_evidence: input.max_evidence,
            };
            let limit = Duration::from_secs(QUERY_TIMEOUT_SECS);
            let outcome = tokio::time::timeout(limit, run_one(&ctx, q, &cx, &mut rows))
                .await
                .unwrap_or(Err(SqlError::Timeout(QUERY_TIMEOUT_SECS)));
            match outcome {
                Ok(skipped) => report.skipped_rows += skipped,
                Err(error) => {
                    tracing::warn!(detector = %q.name, path = %q.path.display(), %error,
                        "SQL detector failed");
                    report.failures.push(SqlFailure {
                        detector: q.name.clone(),
                        error,
                    });
                }
            }
        }
        let mut fired = input.fired.lock().unwrap_or_else(|p| p.into_inner());
        fired.forget_before(input.from);
        for row in rows {
            if fired.admit(&row) {
                report.findings.push(row.finding);
            } else {
                report.suppressed += 1;
            }
        }
        report
    }
}

/// Runs one query, appending its rows; returns the rows skipped.
async fn run_one(
    ctx: &datafusion::execution::context::SessionContext,
    q: &Query,
    cx: &output::Context<'_>,
    rows: &mut Vec<Row>,
) -> Result<u64, SqlError> {
    let df = ctx.sql_with_options(&q.sql, read_only()).await?;
    let mut stream = df.execute_stream().await?;
    let mut skipped = 0;
    let mut taken = 0;
    let mut mine = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if taken >= MAX_ROWS_PER_QUERY {
            skipped += batch.num_rows() as u64;
            continue;
        }
        let batch = batch.slice(0, batch.num_rows().min(MAX_ROWS_PER_QUERY - taken));
        taken += batch.num_rows();
        skipped += output::rows(cx, &batch, &mut mine)?;
    }
    rows.append(&mut mine);
    Ok(skipped)
}

/// The keys that fired, with the end of their finding's window (µs) and
/// severity.
#[derive(Debug, Default)]
pub(super) struct Fired {
    keys: HashMap<String, (i64, Severity)>,
}

impl Fired {
    /// Forgets keys whose evidence has left the window starting at `from`.
    pub(super) fn forget_before(&mut self, from: i64) {
        self.keys.retain(|_, (end, _)| *end >= from);
    }

    /// Whether `row` is a new finding; remembers it if so.
    pub(super) fn admit(&mut self, row: &Row) -> bool {
        let key = format!("{}\u{1e}{}", row.finding.detector, row.key);
        let end = row.finding.window_end.timestamp_micros();
        if let Some(&(_, severity)) = self.keys.get(&key)
            && row.finding.severity <= severity
        {
            return false;
        }
        if self.keys.len() >= MAX_FIRED && !self.keys.contains_key(&key) {
            self.evict();
        }
        self.keys.insert(key, (end, row.finding.severity));
        true
    }

    /// Forgets the tenth of the keys whose evidence ended earliest.
    fn evict(&mut self) {
        let mut ends: Vec<i64> = self.keys.values().map(|(end, _)| *end).collect();
        let k = (ends.len() / 10).max(1);
        let (_, &mut cut, _) = ends.select_nth_unstable(k - 1);
        let mut left = k;
        self.keys.retain(|_, (end, _)| {
            let drop = *end <= cut && left > 0;
            left -= usize::from(drop);
            !drop
        });
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }
}
