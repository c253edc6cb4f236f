//! Alerts: findings turned into messages for responders, and the sinks that
//! deliver them.
//!
//! Every configured sink gets every alert, through its own bounded queue
//! (1024 alerts) and task, so a slow sink delays only itself. When a sink's
//! queue is full, [`Alerter::send`] waits at most [`SEND_DEADLINE`] for room
//! (back-pressure on the pipeline), then drops the alert *for that sink*,
//! counts it in `custos_alerts_dropped_total{sink}` and logs an error, so
//! a dead sink can neither stall ingestion for long nor lose alerts
//! silently. The webhook sink retries with exponential backoff. A durable
//! outbox is not part of this stage yet: alerts pending in memory at a crash
//! are lost (the events are not; they are in the ledger and detection can be
//! replayed with `custos ingest`).

mod sink;

pub use sink::{SinkConfig, WebhookConfig};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::detect::Finding;
use crate::metrics::metrics;

/// One alert, as the sinks send it: the finding's fields, flattened, plus
/// an id and the time custos raised it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable id: the same detector, actor and window give the same id, so
    /// receivers can deduplicate replays.
    pub id: String,
    #[serde(flatten)]
    pub finding: Finding,
    /// Wall-clock time custos raised it.
    #[serde(with = "crate::event::rfc3339")]
    pub raised_at: DateTime<Utc>,
}

impl Alert {
    pub fn from_finding(finding: Finding, raised_at: DateTime<Utc>) -> Alert {
        let mut h = blake3::Hasher::new();
        for part in [
            finding.detector.as_bytes(),
            finding.actor.as_bytes(),
            &finding.window_start.timestamp().to_be_bytes(),
        ] {
            h.update(&(part.len() as u64).to_be_bytes());
            h.update(part);
        }
        Alert {
            id: hex::encode(&h.finalize().as_bytes()[..16]),
            finding,
            raised_at,
        }
    }
}

/// How long `send` waits for room in a full sink queue.
pub const SEND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);
/// How long `close` waits for the sinks to deliver what is queued.
pub const CLOSE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Fans alerts out to the sinks.
pub struct Alerter {
    queues: Vec<(&'static str, mpsc::Sender<Alert>)>,
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
            queues.push((config.kind(), tx));
        }
        Ok(Alerter { queues, tasks })
    }

    /// Hands `alert` to every sink (see the module doc for a full queue).
    pub async fn send(&self, alert: Alert) {
        metrics()
            .alerts
            .with_label_values(&[&alert.finding.detector])
            .inc();
        for (kind, q) in &self.queues {
            let sent = match q.try_send(alert.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(a)) => {
                    q.send_timeout(a, SEND_DEADLINE).await.is_ok()
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
            if !sent {
                metrics().alerts_dropped.with_label_values(&[kind]).inc();
                tracing::error!(sink = kind, alert = %alert.id, "alert dropped: the sink's queue stayed full");
            }
        }
    }

    /// Delivers what is queued (retries included), waiting at most
    /// [`CLOSE_DEADLINE`], and stops the sinks.
    pub async fn close(self) {
        drop(self.queues);
        let deadline = tokio::time::Instant::now() + CLOSE_DEADLINE;
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::error!("an alert sink did not finish in time; its queued alerts are lost");
                t.abort();
            }
        }
    }
}
