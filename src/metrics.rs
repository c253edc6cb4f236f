//! Every metric custos exports, defined in one place.
//!
//! Names carry the `custos_` prefix; label values come from closed sets
//! (event kinds, reject reasons, detector and sink names, table names,
//! assigned partitions), so the series count stays bounded. No label or
//! value ever carries an identifier of a person or a secret.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::detect::Severity;

/// What [`Metrics::ledger_verify_failures`] counts: the checks custos makes
/// of the chains it owns (see docs/operations.md, "Verification status").
pub const VERIFY_CHECKS: [&str; 3] = ["open", "head", "replay"];

pub struct Metrics {
    pub registry: Registry,
    pub messages_consumed: IntCounterVec,
    pub events_accepted: IntCounterVec,
    pub events_rejected: IntCounterVec,
    pub ledger_records: IntCounterVec,
    pub ledger_segments: IntCounter,
    pub ledger_pruned_rows: IntCounterVec,
    pub ledger_bytes: IntCounter,
    pub checkpoints_written: IntCounter,
    pub checkpoint_last_seconds: Gauge,
    pub checkpoint_interval_seconds: Gauge,
    pub start_time_seconds: Gauge,
    pub ledger_rows: IntGaugeVec,
    pub ledger_verify_ok: Gauge,
    pub ledger_verify_last_seconds: Gauge,
    pub ledger_verify_failures: IntCounterVec,
    pub chains_owned: IntGauge,
    pub dedup_ids: IntGauge,
    pub ledger_flush_seconds: Histogram,
    pub offsets_committed: IntCounter,
    pub messages_skipped: IntCounter,
    pub alerts_dropped: IntCounterVec,
    pub dead_letter_failures: IntCounter,
    pub consumer_lag: IntGaugeVec,
    pub partition_messages: IntCounterVec,
    pub findings: IntCounterVec,
    pub detection_latency: HistogramVec,
    pub alerts: IntCounterVec,
    pub alert_deliveries: IntCounterVec,
    pub detector_keys: IntGaugeVec,
    pub detector_evictions: IntCounterVec,
    pub sql_detector_failures: IntCounterVec,
    pub sql_window_rows: Gauge,
    pub sql_window_dropped: IntCounter,
    pub dead_letters_produced: IntCounter,
    pub pipeline_ready: Gauge,
    pub event_time_lag_seconds: Gauge,
    pub reference_rows: IntGaugeVec,
    pub reference_row_problems: IntCounterVec,
    pub reference_reload_failures: IntCounter,
}

/// Registers `metric` (names are fixed here, so a clash is a bug).
fn register<M: Collector + Clone + 'static>(r: &Registry, metric: M) -> M {
    r.register(Box::new(metric.clone())).expect("unique metric");
    metric
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    register(r, IntCounter::new(name, help).expect("valid metric"))
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        r,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge(r: &Registry, name: &str, help: &str) -> Gauge {
    register(r, Gauge::new(name, help).expect("valid metric"))
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        r,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

impl Metrics {
    /// Counts `written` signed checkpoints, stamped now.
    /// Counts what a flush of `table`'s own chain (`incidents`,
    /// `query_log`) made durable: `rows` rows in `segments` segments of
    /// `bytes` bytes.
    pub fn note_flush(&self, table: &str, rows: usize, segments: usize, bytes: u64) {
        self.ledger_records
            .with_label_values(&[table])
            .inc_by(rows as u64);
        self.ledger_segments.inc_by(segments as u64);
        self.ledger_bytes.inc_by(bytes);
    }

    pub fn note_checkpoints(&self, written: usize) {
        if written > 0 {
            self.checkpoints_written.inc_by(written as u64);
            self.checkpoint_last_seconds
                .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        }
    }

    fn new() -> Metrics {
        let r = Registry::new();
        let messages_consumed = counter_vec(
            &r,
            "custos_messages_consumed_total",
            "Messages read from a source, before decoding.",
            &["source"],
        );
        let events_accepted = counter_vec(
            &r,
            "custos_events_accepted_total",
            "Events that passed validation, by kind.",
            &["kind"],
        );
        let events_rejected = counter_vec(
            &r,
            "custos_events_rejected_total",
            "Messages refused and dead-lettered, by reason.",
            &["reason"],
        );
        let ledger_records = counter_vec(
            &r,
            "custos_ledger_records_total",
            "Records made durable in the ledger, by table.",
            &["table"],
        );
        let ledger_pruned_rows = counter_vec(
            &r,
            "custos_ledger_pruned_rows_total",
            "Rows whose segments were deleted past the retention period (their leaf hashes stay), by table.",
            &["table"],
        );
        let ledger_segments = counter(
            &r,
            "custos_ledger_segments_total",
            "Parquet segments written (both tables).",
        );
        let ledger_bytes = counter(
            &r,
            "custos_ledger_bytes_total",
            "Bytes of Parquet segments written (both tables).",
        );
        let checkpoints_written = counter(
            &r,
            "custos_checkpoints_written_total",
            "Signed checkpoints written (one per log that grew).",
        );
        let checkpoint_last_seconds = gauge(
            &r,
            "custos_checkpoint_last_timestamp_seconds",
            "Unix time of the last signed checkpoint written by this process.",
        );
        let checkpoint_interval_seconds = gauge(
            &r,
            "custos_checkpoint_interval_seconds",
            "Configured seconds between signed checkpoints of a growing log (0: signing is off).",
        );
        let start_time_seconds = gauge(
            &r,
            "custos_start_time_seconds",
            "Unix time this process started (set when its metrics were created).",
        );
        start_time_seconds.set(Utc::now().timestamp_millis() as f64 / 1000.0);
        let ledger_rows = gauge_vec(
            &r,
            "custos_ledger_rows",
            "Rows in the logs of the chains this process owns (tree sizes, pruned and erased rows included), by table.",
            &["table"],
        );
        let ledger_verify_ok = gauge(
            &r,
            "custos_ledger_verify_ok",
            "1 while every check of the chains this process owns has passed; 0 from the first failure until restart.",
        );
        let ledger_verify_last_seconds = gauge(
            &r,
            "custos_ledger_verify_last_timestamp_seconds",
            "Unix time of the last head check of the owned chains that passed.",
        );
        let ledger_verify_failures = counter_vec(
            &r,
            "custos_ledger_verify_failures_total",
            "Failed checks of owned chains, by check (open: a chain refused at opening; head: the stored manifest or checkpoints disagree with the writer; replay: stored records that do not decode).",
            &["check"],
        );
        let chains_owned = register(
            &r,
            IntGauge::new(
                "custos_chains_owned",
                "Chains (topic partitions, or file inputs) this process holds open.",
            )
            .expect("valid metric"),
        );
        let dedup_ids = register(
            &r,
            IntGauge::new(
                "custos_dedup_ids",
                "Event ids held in the deduplication windows of the owned chains.",
            )
            .expect("valid metric"),
        );
        let ledger_flush_seconds = register(
            &r,
            Histogram::with_opts(
                HistogramOpts::new(
                    "custos_ledger_flush_seconds",
                    "Time to make one chain's buffered records durable.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
            )
            .expect("valid metric"),
        );
        let offsets_committed = counter(
            &r,
            "custos_offsets_committed_total",
            "Kafka offset commits made after a durable flush.",
        );
        let messages_skipped = counter(
            &r,
            "custos_messages_skipped_total",
            "Redelivered messages skipped because the ledger already holds their offset.",
        );
        let alerts_dropped = counter_vec(
            &r,
            "custos_alerts_dropped_total",
            "Alerts a sink could not take within its deadline (its queue stayed full).",
            &["sink"],
        );
        let dead_letter_failures = counter(
            &r,
            "custos_dead_letter_failures_total",
            "Rejected messages whose copy to the dead-letter topic failed (they are in the rejects table).",
        );
        let consumer_lag = gauge_vec(
            &r,
            "custos_consumer_lag",
            "Messages between the committed offset and the partition end.",
            &["topic", "partition"],
        );
        let partition_messages = counter_vec(
            &r,
            "custos_partition_messages_total",
            "Messages read from Kafka, by topic and partition (assigned partitions only).",
            &["topic", "partition"],
        );
        let findings = counter_vec(
            &r,
            "custos_findings_total",
            "Findings raised by detectors, by detector and severity.",
            &["detector", "severity"],
        );
        let detection_latency = register(
            &r,
            HistogramVec::new(
                HistogramOpts::new(
                    "custos_detection_latency_seconds",
                    "Seconds from the time of the event that completed a finding (for SQL detectors, the end of the finding's window) to the finding, by detector.",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                    1800.0, 3600.0, 21600.0, 86400.0,
                ]),
                &["detector"],
            )
            .expect("valid metric"),
        );
        let alerts = counter_vec(
            &r,
            "custos_alerts_total",
            "Alerts emitted to the sinks.",
            &["detector"],
        );
        let alert_deliveries = counter_vec(
            &r,
            "custos_alert_deliveries_total",
            "Alert delivery attempts by sink and outcome (ok, retry, failed).",
            &["sink", "outcome"],
        );
        let detector_keys = gauge_vec(
            &r,
            "custos_detector_keys",
            "Keys held in a detector's state.",
            &["detector"],
        );
        let detector_evictions = counter_vec(
            &r,
            "custos_detector_evictions_total",
            "Keys evicted from a detector's state to keep it within its cap.",
            &["detector"],
        );
        let sql_detector_failures = counter_vec(
            &r,
            "custos_sql_detector_failures_total",
            "Runs of a SQL detector that failed (error or time limit).",
            &["detector"],
        );
        let sql_window_rows = gauge(
            &r,
            "custos_sql_window_rows",
            "Rows in the SQL detectors' window of recent events.",
        );
        let sql_window_dropped = counter(
            &r,
            "custos_sql_window_dropped_total",
            "Rows dropped from the SQL detectors' window to stay within sql_detectors.max_rows.",
        );
        let dead_letters_produced = counter(
            &r,
            "custos_dead_letters_produced_total",
            "Rejected messages copied to the dead-letter topic.",
        );
        let pipeline_ready = gauge(
            &r,
            "custos_pipeline_ready",
            "1 while the pipeline consumes and its stages are healthy.",
        );
        let event_time_lag_seconds = gauge(
            &r,
            "custos_event_time_lag_seconds",
            "Wall clock minus the newest event time in the last batch.",
        );
        let reference_rows = gauge_vec(
            &r,
            "custos_reference_rows",
            "Rows in force in a reference table (vip, roster, care_team, consent, export_allow, links).",
            &["table"],
        );
        let reference_row_problems = counter_vec(
            &r,
            "custos_reference_row_problems_total",
            "Reference-file rows skipped as bad, counted at every load, by table.",
            &["table"],
        );
        let reference_reload_failures = counter(
            &r,
            "custos_reference_reload_failures_total",
            "Reference reloads refused (a file unreadable or missing a column); the previous tables stay in force.",
        );
        // Closed label sets are exported from the start, at 0.
        for table in ["events", "rejects"] {
            ledger_records.with_label_values(&[table]);
            ledger_pruned_rows.with_label_values(&[table]);
            ledger_rows.with_label_values(&[table]);
        }
        for check in VERIFY_CHECKS {
            ledger_verify_failures.with_label_values(&[check]);
        }
        // No check has failed yet.
        ledger_verify_ok.set(1.0);
        Metrics {
            registry: r,
            messages_consumed,
            events_accepted,
            events_rejected,
            ledger_records,
            ledger_segments,
            ledger_pruned_rows,
            ledger_bytes,
            checkpoints_written,
            checkpoint_last_seconds,
            checkpoint_interval_seconds,
            start_time_seconds,
            ledger_rows,
            ledger_verify_ok,
            ledger_verify_last_seconds,
            ledger_verify_failures,
            chains_owned,
            dedup_ids,
            ledger_flush_seconds,
            offsets_committed,
            messages_skipped,
            alerts_dropped,
            dead_letter_failures,
            consumer_lag,
            partition_messages,
            findings,
            detection_latency,
            alerts,
            alert_deliveries,
            detector_keys,
            detector_evictions,
            sql_detector_failures,
            sql_window_rows,
            sql_window_dropped,
            dead_letters_produced,
            pipeline_ready,
            event_time_lag_seconds,
            reference_rows,
            reference_row_problems,
            reference_reload_failures,
        }
    }

    /// Exports a detector's series at 0 (its findings by severity, its
    /// detection latency), so dashboards and rules see every configured
    /// detector before its first finding.
    pub fn declare_detector(&self, detector: &str) {
        for severity in Severity::ALL {
            self.findings
                .with_label_values(&[detector, severity.as_str()]);
        }
        self.detection_latency.with_label_values(&[detector]);
    }

    /// Counts a finding and observes its detection latency: wall-clock now
    /// minus `event_time`, the time of the event that completed it (0 if
    /// that event is dated in the future).
    pub fn finding(&self, detector: &str, severity: Severity, event_time: DateTime<Utc>) {
        self.findings
            .with_label_values(&[detector, severity.as_str()])
            .inc();
        let latency = (Utc::now() - event_time).num_milliseconds().max(0) as f64 / 1000.0;
        self.detection_latency
            .with_label_values(&[detector])
            .observe(latency);
    }

    /// Records the outcome of a check of the owned chains (`check` is one
    /// of [`VERIFY_CHECKS`]). A failure sticks until restart: the store
    /// needs `custos verify` and a person.
    pub fn verify_result(&self, check: &str, ok: bool) {
        debug_assert!(VERIFY_CHECKS.contains(&check), "unknown check {check}");
        if ok {
            if check == "head" {
                self.ledger_verify_last_seconds
                    .set(Utc::now().timestamp_millis() as f64 / 1000.0);
            }
        } else {
            self.ledger_verify_failures
                .with_label_values(&[check])
                .inc();
            self.ledger_verify_ok.set(0.0);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("text encoding is UTF-8")
    }
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The alert stage's metrics (incidents, outbox, deliveries), registered in
/// the same registry on first use. Kept apart from [`Metrics`] so the alert
/// stage's definitions stay in one block; sink names are the configured
/// ones (bounded by the configuration).
pub struct AlertMetrics {
    /// Incidents open now.
    pub incidents_open: IntGauge,
    /// Incident revisions made, by state and severity.
    pub incident_updates: IntCounterVec,
    /// Findings folded into nothing (already held).
    pub findings_duplicate: IntCounter,
    /// Entries appended to the outbox.
    pub outbox_appended: IntCounter,
    /// Entries not yet delivered, per sink.
    pub outbox_depth: IntGaugeVec,
    /// Entries a sink delivered (its cursor moved past them), per sink.
    pub outbox_delivered: IntCounterVec,
    /// Entries a sink refused for good (set aside), per sink.
    pub outbox_refused: IntCounterVec,
    /// Bytes the outbox's entry files hold.
    pub outbox_bytes: IntGauge,
    /// Failed delivery attempts, per sink and kind (`unavailable`, `refused`).
    pub delivery_failures: IntCounterVec,
    /// Wall-clock seconds from a revision being made (its finding
    /// correlated) to its delivery, per sink.
    pub delivery_seconds: prometheus::HistogramVec,
    /// Seconds from the arrival of the message whose event completed a
    /// finding to the incident revision it caused being durable in the
    /// outbox.
    pub incident_latency: prometheus::Histogram,
}

pub fn alert_metrics() -> &'static AlertMetrics {
    static METRICS: OnceLock<AlertMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let r = &metrics().registry;
        AlertMetrics {
            incidents_open: register(
                r,
                IntGauge::new("custos_incidents_open", "Incidents open now.").expect("valid metric"),
            ),
            incident_updates: counter_vec(
                r,
                "custos_incident_updates_total",
                "Incident revisions made (open, updated, resolved), by severity.",
                &["state", "severity"],
            ),
            findings_duplicate: counter(
                r,
                "custos_findings_duplicate_total",
                "Findings an open incident already held (no revision raised).",
            ),
            outbox_appended: counter(
                r,
                "custos_outbox_appended_total",
                "Incident revisions written (fsynced) to the outbox.",
            ),
            outbox_depth: gauge_vec(
                r,
                "custos_outbox_depth",
                "Outbox entries a sink has not delivered yet.",
                &["sink"],
            ),
            outbox_delivered: counter_vec(
                r,
                "custos_outbox_delivered_total",
                "Outbox entries a sink delivered (each counted once, when its cursor moves past it).",
                &["sink"],
            ),
            outbox_refused: counter_vec(
                r,
                "custos_outbox_refused_total",
                "Outbox entries a sink refused after every attempt, set aside in the outbox's refused/ folder.",
                &["sink"],
            ),
            outbox_bytes: register(
                r,
                IntGauge::new(
                    "custos_outbox_bytes",
                    "Bytes held by the outbox's entry files.",
                )
                .expect("valid metric"),
            ),
            delivery_failures: counter_vec(
                r,
                "custos_alert_delivery_failures_total",
                "Failed delivery attempts, by sink and kind (unavailable: retried without limit; refused: a 4xx).",
                &["sink", "kind"],
            ),
            delivery_seconds: register(
                r,
                prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "custos_alert_delivery_seconds",
                        "Seconds from an incident revision being made to its delivery, by sink.",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        60.0, 120.0, 300.0,
                    ]),
                    &["sink"],
                )
                .expect("valid metric"),
            ),
            incident_latency: register(
                r,
                prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "custos_incident_latency_seconds",
                        "Seconds from the arrival at custos of the message whose event completed a finding to the incident revision it caused being durable (recorded in the ledger, fsynced in the outbox); SQL detectors' findings are not included.",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04,
                        0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    ]),
                )
                .expect("valid metric"),
            ),
        }
    })
}

/// The query surfaces' metrics (CLI, HTTP, PostgreSQL), registered in the
/// same registry on first use. Labels come from closed sets: never the
/// user or the statement.
pub struct QueryMetrics {
    /// Statements received, by surface and outcome (`ok`, `refused`,
    /// `forbidden`, `unauthenticated`, `time_limit`, `memory_limit`,
    /// `too_many_rows`, `unrecorded`, `error`).
    pub queries: IntCounterVec,
    /// Wall-clock seconds a statement took, by surface.
    pub query_seconds: prometheus::HistogramVec,
}

pub fn query_metrics() -> &'static QueryMetrics {
    static METRICS: OnceLock<QueryMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let r = &metrics().registry;
        QueryMetrics {
            queries: counter_vec(
                r,
                "custos_queries_total",
                "SQL statements received, by surface (cli, http, postgres) and outcome.",
                &["surface", "outcome"],
            ),
            query_seconds: register(
                r,
                prometheus::HistogramVec::new(
                    HistogramOpts::new(
                        "custos_query_seconds",
                        "Seconds a SQL statement took, by surface.",
                    )
                    .buckets(vec![
                        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    ]),
                    &["surface"],
                )
                .expect("valid metric"),
            ),
        }
    })
}
