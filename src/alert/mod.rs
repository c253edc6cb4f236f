//! The alert stage: findings correlated into incidents, every incident
//! revision written to a durable outbox, and the outbox delivered to every
//! configured sink.
//!
//! ```text
//! pipeline ──Alert──► Correlator ──revisions──► outbox writer ──fsync──► entries/
//!   (send, advance)    (incident.rs)              (one task)               │
//!                                                                  one task per sink:
//!                                               batch from its cursor ► deliver ► cursor fsync
//! ```
//!
//! Guarantees:
//! - every revision is on disk (fsynced) before any sink sees it, and every
//!   sink delivers every revision at least once, in order, across sink
//!   outages and restarts of custos (see [`outbox`]);
//! - a sink that is down never stalls detection: its task retries with
//!   capped exponential backoff while the others go on; the pipeline waits
//!   only for the outbox's disk (bounded channel);
//! - revisions are made in event time (see [`incident`]); the wall clock
//!   only stamps them and times deliveries;
//! - what reaches a sink is pseudonymized: actors as sent, patients as
//!   pseudonyms, evidence as event ids.
//!
//! At shutdown ([`Alerter::close`]) the outbox is written through, the
//! open incidents snapshotted, and the sinks get `outbox.close_wait_secs`
//! to deliver what is left; whatever they do not deliver stays in the
//! outbox for the next start.

mod alertmanager;
mod hmac;
pub mod incident;
mod index;
pub mod ocsf;
pub mod outbox;
mod record;
mod sink;

pub use alertmanager::AlertmanagerConfig;
pub use hmac::sha256 as hmac_sha256;
pub use incident::{Correlator, Incident, IncidentConfig, State};
pub use index::{IncidentIndex, incident_index};
pub use ocsf::{KafkaSinkConfig, detection_finding};
pub use record::IncidentLedger;
pub use sink::{
    BuildContext, JsonlConfig, Retry, SinkConfig, SinkError, WebhookConfig, WebhookFormat,
    slack_text,
};

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::detect::Finding;
use crate::metrics::{alert_metrics, metrics};
use outbox::{Outbox, OutboxError};
use sink::{Failure, Sink};

/// One finding handed to the alert stage, with the wall-clock time the
/// pipeline saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The finding's stable id (detector, actor, window start).
    pub id: String,
    #[serde(flatten)]
    pub finding: Finding,
    #[serde(with = "crate::event::rfc3339")]
    pub raised_at: DateTime<Utc>,
    /// When the message whose event completed the finding arrived at
    /// custos (`None` for SQL detectors' findings, which come from a
    /// window): the start of `custos_incident_latency_seconds`.
    #[serde(skip)]
    pub arrived: Option<Instant>,
}

impl Alert {
    pub fn from_finding(finding: Finding, raised_at: DateTime<Utc>) -> Alert {
        Alert {
            id: incident::finding_id(&finding),
            finding,
            raised_at,
            arrived: None,
        }
    }

    /// The same, for a finding completed by the event of a message that
    /// arrived at `arrived`.
    pub fn arrived_at(self, arrived: Instant) -> Alert {
        Alert {
            arrived: Some(arrived),
            ..self
        }
    }
}

/// `[outbox]`: where and how much.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// The outbox folder; default `outbox` inside a local store. Required
    /// for a store in a bucket. One process per folder (it is locked).
    pub dir: Option<PathBuf>,
    /// Entries per file; a file is deleted once every sink delivered it.
    pub segment_entries: u64,
    /// A sink more than this many entries behind loses its oldest ones
    /// (counted in `custos_alerts_dropped_total{sink}`).
    pub max_entries: u64,
    /// Seconds the sinks get at shutdown to deliver what is left.
    pub close_wait_secs: u64,
    /// Seconds between snapshots of the open incidents (also at shutdown).
    pub snapshot_secs: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            dir: None,
            segment_entries: 10_000,
            max_entries: 100_000,
            close_wait_secs: 10,
            snapshot_secs: 5,
        }
    }
}

impl OutboxConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.segment_entries == 0 {
            problems.push(format!("{at}.segment_entries must be at least 1"));
        }
        if self.max_entries == 0 {
            problems.push(format!("{at}.max_entries must be at least 1"));
        }
        if self.snapshot_secs == 0 {
            problems.push(format!("{at}.snapshot_secs must be at least 1"));
        }
    }
}

/// Everything the alert stage is built from.
#[derive(Debug, Clone)]
pub struct AlertSetup {
    pub incidents: IncidentConfig,
    pub outbox: OutboxConfig,
    /// The outbox folder (resolved from `outbox.dir` and the store).
    pub outbox_dir: PathBuf,
    pub sinks: Vec<SinkConfig>,
    pub context: BuildContext,
}

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("two sinks are named `{0}`: give each a distinct `name`")]
    DuplicateName(String),
    #[error("the incidents chain: {0}")]
    Ledger(#[from] crate::ledger::LedgerError),
}

/// Revisions in flight between the pipeline and the outbox writer.
const WRITER_QUEUE: usize = 256;

/// What the pipeline hands the writer: revisions, the arrival of the
/// message that caused them (if one did), and who waits until they (and
/// everything before) are recorded.
type ToWriter = (Vec<Incident>, Option<Instant>, Option<oneshot::Sender<()>>);

/// The alert stage's entry point, owned by the pipeline.
pub struct Alerter {
    correlator: Correlator,
    tx: mpsc::Sender<ToWriter>,
    writer: JoinHandle<()>,
    sinks: Vec<JoinHandle<()>>,
    closing: watch::Sender<bool>,
    close_wait: Duration,
}

impl Alerter {
    /// Opens the outbox (rebuilding the open incidents from it) and, with
    /// a `ledger`, the incidents chain (appending to the outbox what the
    /// ledger holds beyond it), and starts the writer and one task per
    /// sink. Must be called inside a tokio runtime.
    pub fn start(setup: AlertSetup, ledger: Option<IncidentLedger>) -> Result<Alerter, AlertError> {
        let names: Vec<String> = setup.sinks.iter().map(SinkConfig::name).collect();
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(AlertError::DuplicateName(n.clone()));
            }
        }
        let mut built = Vec::new();
        for config in &setup.sinks {
            built.push(config.build(&setup.context)?);
        }
        let recovered = Outbox::open(
            &setup.outbox_dir,
            &names,
            setup.outbox.segment_entries,
            setup.outbox.max_entries,
        )?;
        let mut outbox = recovered.outbox;
        let (recorder, missing) = match ledger {
            Some(ledger) => {
                let (recorder, missing) =
                    record::IncidentRecorder::open(ledger, &setup.outbox_dir, outbox.next())?;
                (Some(recorder), missing)
            }
            None => (None, Vec::new()),
        };
        if !missing.is_empty() {
            outbox.append(missing.clone())?;
        }
        let mut correlator = Correlator::new(setup.incidents.clone());
        correlator.restore(recovered.revisions.into_iter().chain(missing));
        let open: Vec<Incident> = correlator.incidents().cloned().collect();
        incident_index().record(&open);
        let m = alert_metrics();
        m.incidents_open.set(open.len() as i64);
        m.outbox_bytes.set(outbox.bytes() as i64);
        let end = outbox.next();
        for (i, name) in names.iter().enumerate() {
            m.outbox_depth
                .with_label_values(&[name])
                .set((end - outbox.cursor(i)) as i64);
            m.outbox_delivered.with_label_values(&[name]);
            m.outbox_refused.with_label_values(&[name]);
            m.delivery_seconds.with_label_values(&[name]);
            for kind in ["unavailable", "refused"] {
                m.delivery_failures.with_label_values(&[name, kind]);
            }
            metrics().alerts_dropped.with_label_values(&[name]);
            for outcome in ["ok", "retry", "failed"] {
                metrics()
                    .alert_deliveries
                    .with_label_values(&[name, outcome]);
            }
        }
        if end > 0 {
            tracing::info!(
                dir = %setup.outbox_dir.display(),
                entries = end,
                open = open.len(),
                "outbox opened"
            );
        }
        let shared = Arc::new(Mutex::new(outbox));
        let (end_tx, end_rx) = watch::channel(end);
        let (closing, closing_rx) = watch::channel(false);
        let mut sinks = Vec::new();
        for (i, (mut sink, config)) in built.into_iter().zip(&setup.sinks).enumerate() {
            sink.seed(&open);
            sinks.push(tokio::spawn(run_sink(SinkTask {
                index: i,
                name: names[i].clone(),
                retry: config.retry(),
                sink,
                outbox: shared.clone(),
                end: end_rx.clone(),
                closing: closing_rx.clone(),
            })));
        }
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer = tokio::spawn(run_writer(
            rx,
            shared,
            recorder,
            end_tx,
            open,
            Duration::from_secs(setup.outbox.snapshot_secs.max(1)),
        ));
        Ok(Alerter {
            correlator,
            tx,
            writer,
            sinks,
            closing,
            close_wait: Duration::from_secs(setup.outbox.close_wait_secs),
        })
    }

    /// Folds a finding into its incident; the revision it causes (if any)
    /// goes to the outbox. Waits only when the outbox writer is behind.
    pub async fn send(&mut self, alert: Alert) {
        let arrived = alert.arrived;
        let revisions = self.correlate(alert);
        self.publish(revisions, arrived).await;
    }

    /// [`Alerter::send`] for many alerts at once (a SQL detector run's
    /// findings): their revisions reach the outbox writer together, one
    /// group commit, instead of one hand-over each while the loop waits.
    pub async fn send_all(&mut self, alerts: impl IntoIterator<Item = Alert>) {
        let mut revisions = Vec::new();
        let mut arrived = None;
        for alert in alerts {
            arrived = arrived.or(alert.arrived);
            revisions.extend(self.correlate(alert));
        }
        self.publish(revisions, arrived).await;
    }

    fn correlate(&mut self, alert: Alert) -> Vec<Incident> {
        metrics()
            .alerts
            .with_label_values(&[&alert.finding.detector])
            .inc();
        let before = self.correlator.duplicates();
        let revisions = self.correlator.observe(alert.finding, alert.raised_at);
        alert_metrics()
            .findings_duplicate
            .inc_by(self.correlator.duplicates() - before);
        revisions
    }

    /// Tells the stage how far event time has got (microseconds since the
    /// epoch, the newest event of a batch): incidents quiet for the quiet
    /// period are resolved.
    pub async fn advance(&mut self, event_time_us: i64) {
        let Some(now) = DateTime::from_timestamp_micros(event_time_us) else {
            return;
        };
        let revisions = self.correlator.advance(now, Utc::now());
        self.publish(revisions, None).await;
    }

    async fn publish(&mut self, revisions: Vec<Incident>, arrived: Option<Instant>) {
        if revisions.is_empty() {
            return;
        }
        let m = alert_metrics();
        for r in &revisions {
            m.incident_updates
                .with_label_values(&[r.state.as_str(), incident::severity_name(r.severity)])
                .inc();
        }
        m.incidents_open.set(self.correlator.open() as i64);
        if self.tx.send((revisions, arrived, None)).await.is_err() {
            tracing::error!("the outbox writer stopped; incident revisions are not recorded");
        }
    }

    /// Waits until every revision handed over so far is recorded (ledger
    /// and outbox). The pipeline calls it before it makes events durable,
    /// so events never outlive the revisions they caused in a crash.
    pub async fn sync(&mut self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send((Vec::new(), None, Some(done))).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// The open incidents, for the HTTP API and tests.
    pub fn open_incidents(&self) -> Vec<Incident> {
        self.correlator.incidents().cloned().collect()
    }

    /// Writes the outbox through, snapshots the open incidents, and gives
    /// the sinks `outbox.close_wait_secs` to deliver what is left (the rest
    /// stays in the outbox for the next start).
    pub async fn close(self) {
        drop(self.tx);
        if let Err(e) = self.writer.await {
            tracing::error!(error = %e, "the outbox writer failed");
        }
        let _ = self.closing.send(true);
        let deadline = tokio::time::Instant::now() + self.close_wait;
        for mut t in self.sinks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!(
                    "a sink did not deliver everything before shutdown; the rest stays in the outbox for the next start"
                );
                t.abort();
            }
        }
    }
}

/// Records what the pipeline hands over in the ledger (with a recorder),
/// then appends it to the outbox, in order; snapshots the open incidents
/// and signs the incidents chain now and then.
async fn run_writer(
    mut rx: mpsc::Receiver<ToWriter>,
    outbox: Arc<Mutex<Outbox>>,
    mut recorder: Option<record::IncidentRecorder>,
    end: watch::Sender<u64>,
    open: Vec<Incident>,
    snapshot_every: Duration,
) {
    let mut open: std::collections::HashMap<String, Incident> =
        open.into_iter().map(|i| (i.id.clone(), i)).collect();
    let mut changed = false;
    let mut tick = tokio::time::interval(snapshot_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let batch = tokio::select! {
            b = rx.recv() => b,
            _ = tick.tick() => {
                if changed {
                    changed = false;
                    snapshot(&outbox, &open).await;
                }
                recorder = sign(recorder, false).await;
                continue;
            }
        };
        let Some((mut batch, arrived, done)) = batch else {
            break;
        };
        let mut waiting: Vec<oneshot::Sender<()>> = done.into_iter().collect();
        let mut arrivals: Vec<Instant> = arrived.into_iter().collect();
        // Group commit: whatever else is queued goes in the same fsync.
        while let Ok((more, arrived, done)) = rx.try_recv() {
            batch.extend(more);
            arrivals.extend(arrived);
            waiting.extend(done);
        }
        if batch.is_empty() {
            for w in waiting {
                let _ = w.send(());
            }
            continue;
        }
        for inc in &batch {
            if inc.state == State::Resolved {
                open.remove(&inc.id);
            } else {
                open.insert(inc.id.clone(), inc.clone());
            }
        }
        changed = true;
        let n = batch.len() as u64;
        let batch = Arc::new(batch);
        let mut wait = Duration::from_millis(100);
        // First the ledger: only the writer appends, so the outbox's end
        // is the number the first revision gets.
        while let Some(mut rec) = recorder.take() {
            let first = outbox.lock().unwrap_or_else(|p| p.into_inner()).next();
            let revisions = batch.clone();
            let recorded = tokio::task::spawn_blocking(move || {
                let r = rec.record(first, &revisions);
                (rec, r)
            })
            .await;
            match recorded {
                Ok((rec, Ok(()))) => {
                    recorder = Some(rec);
                    break;
                }
                // Retried, never skipped: the pipeline waits on the full
                // queue meanwhile.
                Ok((rec, Err(e))) => {
                    tracing::error!(error = %e, revisions = n, "cannot record incident revisions in the ledger; retrying");
                    recorder = Some(rec);
                }
                Err(e) => {
                    tracing::error!(error = %e, "the incident ledger task failed; incident revisions are no longer recorded in the ledger");
                    break;
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
        let mut wait = Duration::from_millis(100);
        loop {
            let (ob, revisions) = (outbox.clone(), batch.clone());
            let appended = tokio::task::spawn_blocking(move || {
                let mut ob = ob.lock().unwrap_or_else(|p| p.into_inner());
                ob.append(revisions.to_vec())
                    .map(|_| (ob.next(), ob.bytes()))
            })
            .await;
            match appended {
                Ok(Ok((next, bytes))) => {
                    incident_index().record(batch.iter());
                    let m = alert_metrics();
                    m.outbox_appended.inc_by(n);
                    m.outbox_bytes.set(bytes as i64);
                    for at in arrivals.drain(..) {
                        m.incident_latency.observe(at.elapsed().as_secs_f64());
                    }
                    let _ = end.send(next);
                    for w in waiting.drain(..) {
                        let _ = w.send(());
                    }
                    break;
                }
                // Retried, never dropped: meanwhile the pipeline waits on
                // the full queue, so nothing after these is committed.
                Ok(Err(e)) => {
                    tracing::error!(error = %e, revisions = n, "cannot append to the outbox; retrying")
                }
                Err(e) => tracing::error!(error = %e, "the outbox append task failed; retrying"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }
    snapshot(&outbox, &open).await;
    sign(recorder, true).await;
}

/// Signs the incidents chain if due (or `now`), on a blocking thread.
async fn sign(
    recorder: Option<record::IncidentRecorder>,
    now: bool,
) -> Option<record::IncidentRecorder> {
    let mut rec = recorder?;
    match tokio::task::spawn_blocking(move || {
        let r = rec.checkpoint(now);
        (rec, r)
    })
    .await
    {
        Ok((rec, r)) => {
            if let Err(e) = r {
                tracing::error!(error = %e, "cannot sign a checkpoint of the incidents chain");
            }
            Some(rec)
        }
        Err(e) => {
            tracing::error!(error = %e, "the incident checkpoint task failed");
            None
        }
    }
}

async fn snapshot(outbox: &Arc<Mutex<Outbox>>, open: &std::collections::HashMap<String, Incident>) {
    let ob = outbox.clone();
    let open: Vec<Incident> = open.values().cloned().collect();
    let r = tokio::task::spawn_blocking(move || {
        let mut ob = ob.lock().unwrap_or_else(|p| p.into_inner());
        ob.snapshot(open.iter())?;
        Ok::<_, OutboxError>(ob.bytes())
    })
    .await;
    match r {
        Ok(Ok(bytes)) => alert_metrics().outbox_bytes.set(bytes as i64),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot snapshot the open incidents"),
        Err(e) => tracing::error!(error = %e, "the outbox snapshot task failed"),
    }
}

/// What the cursor helpers need of a sink task (`Sync`, unlike the sink).
struct Cursor<'a> {
    index: usize,
    name: &'a str,
    outbox: &'a Arc<Mutex<Outbox>>,
}

struct SinkTask {
    index: usize,
    name: String,
    retry: Retry,
    sink: Box<dyn Sink>,
    outbox: Arc<Mutex<Outbox>>,
    end: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
}

impl SinkTask {
    fn cursor(&self) -> Cursor<'_> {
        Cursor {
            index: self.index,
            name: &self.name,
            outbox: &self.outbox,
        }
    }
}

/// Delivers the outbox to one sink, from its cursor, until shutdown.
async fn run_sink(mut t: SinkTask) {
    let m = alert_metrics();
    let label = [t.name.as_str()];
    let initial = Duration::from_millis(t.retry.initial_backoff_ms.max(1));
    let max_backoff = Duration::from_millis(t.retry.max_backoff_ms.max(1));
    let mut backoff = initial;
    let mut refusals = 0u32;
    let refresh_every = t.sink.refresh_every();
    let mut refreshed = tokio::time::Instant::now();
    loop {
        // Read (and mark seen) before taking the batch, so an append after
        // this wakes the wait below.
        let end = *t.end.borrow_and_update();
        let closing = *t.closing.borrow_and_update();
        let (batch, dropped, cursor) = {
            let mut ob = t.outbox.lock().unwrap_or_else(|p| p.into_inner());
            let (batch, dropped) = ob.batch(t.index, t.sink.max_batch());
            (batch, dropped, ob.cursor(t.index))
        };
        m.outbox_depth
            .with_label_values(&label)
            .set(end.saturating_sub(cursor) as i64);
        if dropped > 0 {
            metrics()
                .alerts_dropped
                .with_label_values(&label)
                .inc_by(dropped);
            tracing::error!(sink = %t.name, entries = dropped, "the sink is more than outbox.max_entries behind: its oldest entries are dropped");
        }
        if batch.is_empty() {
            if closing && end <= cursor {
                return;
            }
            let wait = refresh_every
                .map(|e| (refreshed + e).saturating_duration_since(tokio::time::Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = t.end.changed() => {}
                _ = t.closing.changed() => {}
                _ = tokio::time::sleep(wait) => {
                    refreshed = tokio::time::Instant::now();
                    if let Err(e) = t.sink.refresh().await {
                        tracing::warn!(sink = %t.name, error = %e, "cannot refresh the sink's firing alerts");
                    }
                }
            }
            continue;
        }
        match t.sink.deliver(&batch).await {
            Ok(()) => {
                backoff = initial;
                refusals = 0;
                let next = batch.last().map_or(cursor, |e| e.n + 1);
                persist_cursor(&t.cursor(), next).await;
                let now = Utc::now();
                for e in &batch {
                    let secs =
                        (now - e.incident.raised_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                    m.delivery_seconds
                        .with_label_values(&label)
                        .observe(secs.max(0.0));
                }
                m.outbox_delivered
                    .with_label_values(&label)
                    .inc_by(batch.len() as u64);
                metrics()
                    .alert_deliveries
                    .with_label_values(&[&t.name, "ok"])
                    .inc_by(batch.len() as u64);
            }
            Err(failure) => {
                let kind = match &failure {
                    Failure::Retry(_) => "unavailable",
                    Failure::Refused(_) => "refused",
                };
                m.delivery_failures
                    .with_label_values(&[&t.name, kind])
                    .inc();
                if let Failure::Refused(why) = &failure {
                    refusals += 1;
                    if refusals >= t.retry.max_attempts {
                        set_aside(&t.cursor(), &batch, why).await;
                        refusals = 0;
                        backoff = initial;
                        continue;
                    }
                }
                metrics()
                    .alert_deliveries
                    .with_label_values(&[&t.name, "retry"])
                    .inc();
                tracing::warn!(sink = %t.name, error = %failure, entries = batch.len(),
                    retry_in_ms = backoff.as_millis() as u64, "delivery failed; retrying");
                // A stop does not cut the wait short: the close deadline
                // bounds it, and what is left stays in the outbox.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

async fn persist_cursor(t: &Cursor<'_>, next: u64) {
    let ob = t.outbox.clone();
    let i = t.index;
    let r = tokio::task::spawn_blocking(move || {
        let mut ob = ob.lock().unwrap_or_else(|p| p.into_inner());
        ob.delivered(i, next)?;
        Ok::<_, OutboxError>(ob.bytes())
    })
    .await;
    match r {
        Ok(Ok(bytes)) => alert_metrics().outbox_bytes.set(bytes as i64),
        Ok(Err(e)) => {
            tracing::error!(sink = %t.name, error = %e, "cannot persist the sink's cursor; its last batch may be delivered again after a restart")
        }
        Err(e) => tracing::error!(error = %e, "the cursor task failed"),
    }
}

async fn set_aside(t: &Cursor<'_>, batch: &[Arc<outbox::Entry>], why: &str) {
    tracing::error!(sink = %t.name, entries = batch.len(), reason = why,
        "the sink refused these incident revisions after every attempt; they are kept in the outbox's refused/ folder");
    {
        let ob = t.outbox.lock().unwrap_or_else(|p| p.into_inner());
        for e in batch {
            if let Err(e) = ob.set_aside(t.name, e, why) {
                tracing::error!(sink = %t.name, error = %e, "cannot keep a refused entry");
            }
        }
    }
    alert_metrics()
        .outbox_refused
        .with_label_values(&[&t.name])
        .inc_by(batch.len() as u64);
    metrics()
        .alert_deliveries
        .with_label_values(&[t.name, "failed"])
        .inc_by(batch.len() as u64);
    if let Some(last) = batch.last() {
        persist_cursor(t, last.n + 1).await;
    }
}
