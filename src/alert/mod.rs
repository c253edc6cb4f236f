//! Alerts: findings turned into messages for responders, and the sinks that
//! deliver them.
//!
//! Every configured sink gets every alert, through its own bounded queue
//! and task, so a slow sink delays only itself until its queue is full;
//! then [`Alerter::send`] waits (back-pressure, visible as
//! `custos_alert_deliveries_total{outcome="retry"}` and a stalled pipeline
//! in the metrics) rather than dropping an alert. The webhook sink retries
//! with exponential backoff. A durable outbox is not part of this stage yet:
//! alerts pending in memory at a crash are lost (the events are not; they
//! are in the ledger and detection can be replayed with `custos ingest`).

mod sink;

pub use sink::{SinkConfig, WebhookConfig};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::detect::{Finding, Severity};
use crate::metrics::metrics;

/// One alert, as the sinks send it (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id: the same detector, actor and window give the same id, so
    /// receivers can deduplicate replays.
    pub id: String,
    pub detector: String,
    pub severity: Severity,
    pub actor: String,
    #[serde(with = "crate::event::rfc3339")]
    pub window_start: DateTime<Utc>,
    #[serde(with = "crate::event::rfc3339")]
    pub window_end: DateTime<Utc>,
    pub score: f64,
    pub observed: f64,
    pub expected: f64,
    pub summary: String,
    pub evidence: Vec<String>,
    pub evidence_total: u64,
    /// Wall-clock time custos raised it.
    #[serde(with = "crate::event::rfc3339")]
    pub raised_at: DateTime<Utc>,
}

impl Alert {
    pub fn from_finding(f: Finding, raised_at: DateTime<Utc>) -> Alert {
        let mut h = blake3::Hasher::new();
        for part in [
            f.detector.as_bytes(),
            f.actor.as_bytes(),
            &f.window_start.timestamp().to_be_bytes(),
        ] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Alert {
            id: hex::encode(&h.finalize().as_bytes()[..16]),
            detector: f.detector,
            severity: f.severity,
            actor: f.actor,
            window_start: f.window_start,
            window_end: f.window_end,
            score: f.score,
            observed: f.observed,
            expected: f.expected,
            summary: f.summary,
            evidence: f.evidence,
            evidence_total: f.evidence_total,
            raised_at,
        }
    }
}

/// Fans alerts out to the sinks.
pub struct Alerter {
    queues: Vec<mpsc::Sender<Alert>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Alerter {
    /// Starts one task per sink. Must be called inside a tokio runtime.
    pub fn start(configs: &[SinkConfig]) -> Result<Alerter, sink::SinkError> {
        let mut queues = Vec::new();
        let mut tasks = Vec::new();
        for config in configs {
            let (tx, rx) = mpsc::channel(1024);
            tasks.push(tokio::spawn(sink::run(config.build()?, rx)));
            queues.push(tx);
        }
        Ok(Alerter { queues, tasks })
    }

    /// Hands `alert` to every sink; waits while a sink's queue is full.
    pub async fn send(&self, alert: Alert) {
        metrics().alerts.with_label_values(&[&alert.detector]).inc();
        for q in &self.queues {
            // A closed queue means its task ended; that was logged there.
            let _ = q.send(alert.clone()).await;
        }
    }

    /// Delivers what is queued (retries included) and stops the sinks.
    pub async fn close(self) {
        drop(self.queues);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}
