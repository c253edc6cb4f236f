//! SQL detectors: every `.sql` file under a folder is a detector, run by
//! DataFusion on an event-time schedule over a sliding window of recent
//! events joined with the reference tables (`docs/sql-detectors.md`).
//!
//! Guarantees:
//! - [`SqlDetectors::push`] is cheap: it appends one row to column builders
//!   (sealed into a `RecordBatch` every few thousand rows) and never runs
//!   DataFusion; lineage events are not kept.
//! - Event time drives everything: the window is the last `window_secs`
//!   before the newest event time seen, a run is due every `interval_secs`
//!   of event time; the wall clock is read only for the per-query timeout.
//! - The window holds at most `max_rows` rows when a run starts (the oldest
//!   are dropped first and counted, [`SqlDetectors::dropped`]); between runs
//!   it may exceed that by at most one open batch.
//! - [`SqlDetectors::tick`] never blocks on DataFusion: it hands back a
//!   [`SqlRun`] (the window's batches are shared, not copied) for the
//!   caller to spawn; at most one run is in flight, a due run waits for the
//!   previous one to finish.
//! - A file that does not plan, is not a query (DDL, DML, `SET`, …) or
//!   lacks a required output column is an [`SqlProblem`] at load, naming
//!   its path; the other files still load and run. A query that fails at
//!   run time is reported in [`SqlReport::failures`] and the others' findings
//!   still come back.
//! - A finding is raised once per detector and key (actor and patient, or
//!   the query's `dedup_key`) while its evidence is in the window, unless
//!   its severity rises; the memory of fired keys is bounded.

mod load;
mod output;
mod run;
mod window;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use run::{SqlFailure, SqlReport, SqlRun};

use self::load::Query;
use self::run::Fired;
use self::window::Window;
use crate::event::Event;

/// The `[sql_detectors]` configuration section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SqlDetectorsConfig {
    /// Folder of `.sql` files, one detector each.
    pub dir: PathBuf,
    /// Event-time seconds between runs.
    pub interval_secs: u64,
    /// Event-time seconds of history in the `recent` table.
    pub window_secs: u64,
    /// Rows the window holds at most (the oldest are dropped first).
    pub max_rows: usize,
    /// Evidence event ids kept per finding.
    pub max_evidence: usize,
    pub enabled: bool,
}

impl Default for SqlDetectorsConfig {
    fn default() -> Self {
        SqlDetectorsConfig {
            dir: PathBuf::from("queries/detectors"),
            interval_secs: 30,
            window_secs: 3600,
            max_rows: 500_000,
            max_evidence: 20,
            enabled: true,
        }
    }
}

impl SqlDetectorsConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.enabled && self.dir.as_os_str().is_empty() {
            problems.push(format!("{at}.dir must not be empty"));
        }
        if self.interval_secs == 0 || self.interval_secs > 86_400 {
            problems.push(format!("{at}.interval_secs must be between 1 and 86400"));
        }
        if self.window_secs == 0 || self.window_secs > 7 * 86_400 {
            problems.push(format!("{at}.window_secs must be between 1 and 604800"));
        }
        if self.max_rows == 0 {
            problems.push(format!("{at}.max_rows must be at least 1"));
        }
        if self.max_evidence == 0 {
            problems.push(format!("{at}.max_evidence must be at least 1"));
        }
    }
}

/// Why a detector file was left out, or a query failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    #[error("{0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("the output has no column `{0}` (required: actor, severity, title, evidence)")]
    MissingColumn(&'static str),
    #[error("the output column `{column}` is {found}, expected {expected}")]
    ColumnType {
        column: &'static str,
        found: DataType,
        expected: &'static str,
    },
    #[error("the query ran longer than {0} s and was stopped")]
    Timeout(u64),
    #[error("the run stopped: {0}")]
    Aborted(String),
}

/// A detector file that does not load: `path: error`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {error}", path.display())]
pub struct SqlProblem {
    pub path: PathBuf,
    pub error: SqlError,
}

/// The reference tables a query may join, by name.
pub const REFERENCE_TABLES: [&str; 6] = [
    "ref_vip",
    "ref_roster",
    "ref_care_team",
    "ref_consent",
    "ref_export_allow",
    "ref_links",
];

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The schema of a reference table (all strings except times), or `None`
/// for a name not in [`REFERENCE_TABLES`].
pub fn reference_schema(name: &str) -> Option<SchemaRef> {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let t = |n: &str| Field::new(n, utc_micros(), true);
    let fields = match name {
        "ref_vip" => vec![s("patient"), s("category")],
        "ref_roster" => vec![
            s("actor"),
            s("role"),
            s("dept"),
            t("hired"),
            t("terminated"),
            s("patient"),
        ],
        "ref_care_team" => vec![s("patient"), s("actor"), s("dept"), t("start"), t("end")],
        "ref_consent" => vec![s("patient"), s("purpose"), s("status"), t("time")],
        "ref_export_allow" => vec![s("destination")],
        "ref_links" => vec![s("actor"), s("patient"), s("relation")],
        _ => return None,
    };
    Some(Arc::new(Schema::new(fields)))
}

/// The schema of the `recent` table.
pub fn window_schema() -> SchemaRef {
    window::schema()
}

/// One partition's (or one process's) SQL detectors and their window.
pub struct SqlDetectors {
    cfg: SqlDetectorsConfig,
    queries: Arc<[Query]>,
    window: Window,
    fired: Arc<Mutex<Fired>>,
    /// Cloned into each run; more than one holder means a run is in flight.
    running: Arc<()>,
    /// Event time (µs) at which the next run is due; `None`: at the next tick.
    next_run: Option<i64>,
    deferred: u64,
}

impl SqlDetectors {
    /// Loads every `*.sql` file of `cfg.dir`, in name order. Files that do
    /// not load are returned as problems and left out.
    pub async fn load(cfg: SqlDetectorsConfig) -> (SqlDetectors, Vec<SqlProblem>) {
        let (queries, problems) = if cfg.enabled {
            load::load_dir(&cfg.dir).await
        } else {
            (Vec::new(), Vec::new())
        };
        let m = crate::metrics::metrics();
        for q in &queries {
            m.declare_detector(&q.name);
            m.sql_detector_failures.with_label_values(&[&q.name]);
        }
        let detectors = SqlDetectors {
            window: Window::new(cfg.max_rows),
            fired: Arc::new(Mutex::new(Fired::default())),
            cfg,
            queries: queries.into(),
            running: Arc::new(()),
            next_run: None,
            deferred: 0,
        };
        (detectors, problems)
    }

    /// The loaded detectors' names (`sql:<file stem>`), in run order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.queries.iter().map(|q| q.name.as_str())
    }

    /// Adds an accepted event to the window (access and inference events;
    /// others are ignored). Returns whether it was kept.
    pub fn push(&mut self, event: &Event) -> bool {
        self.cfg.enabled && !self.queries.is_empty() && self.window.push(event)
    }

    /// Called with the current event time; when a run is due (and none is
    /// in flight) evicts rows older than the window and returns the run,
    /// which the caller executes, preferably on its own task.
    pub fn tick(
        &mut self,
        event_time: DateTime<Utc>,
        reference: &[(&str, RecordBatch)],
    ) -> Option<SqlRun> {
        if !self.cfg.enabled || self.queries.is_empty() {
            return None;
        }
        let now = event_time
            .timestamp_micros()
            .max(self.window.newest().unwrap_or(i64::MIN));
        if self.next_run.is_some_and(|due| now < due) {
            return None;
        }
        if Arc::strong_count(&self.running) > 1 {
            self.deferred += 1;
            return None;
        }
        let interval = secs_to_micros(self.cfg.interval_secs);
        self.next_run = Some(now.saturating_add(interval));
        let from = now.saturating_sub(secs_to_micros(self.cfg.window_secs));
        let batches = self.window.snapshot(from);
        Some(SqlRun::new(run::RunInput {
            queries: self.queries.clone(),
            window: batches,
            reference: reference
                .iter()
                .map(|(n, b)| ((*n).to_owned(), b.clone()))
                .collect(),
            from,
            to: now,
            max_evidence: self.cfg.max_evidence,
            fired: self.fired.clone(),
            _running: self.running.clone(),
        }))
    }

    /// Whether a run handed out by [`SqlDetectors::tick`] is still going.
    pub fn in_flight(&self) -> bool {
        Arc::strong_count(&self.running) > 1
    }

    /// A run over the window as it is now, whether or not one is due (at
    /// the end of the input); `None` while a run is in flight or with no
    /// events.
    pub fn finish(&mut self, reference: &[(&str, RecordBatch)]) -> Option<SqlRun> {
        let newest = self.window.newest()?;
        self.next_run = None;
        self.tick(DateTime::from_timestamp_micros(newest)?, reference)
    }

    /// Rows in the window (sealed and open).
    pub fn rows(&self) -> usize {
        self.window.rows()
    }

    /// Rows dropped so far to keep the window within `max_rows`.
    pub fn dropped(&self) -> u64 {
        self.window.dropped()
    }

    /// Due runs put off because the previous one was still in flight.
    pub fn deferred(&self) -> u64 {
        self.deferred
    }
}

fn secs_to_micros(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000)
}
