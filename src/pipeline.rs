//! The pipeline loop: source events in, ledger appends, detection, alerts,
//! commits out.
//!
//! One task owns every assigned chain's writer and handles source events
//! strictly in order. Invariants:
//! - a message is buffered in its chain's writer before anything later in
//!   that chain; an offset below the chain's next expected offset is a
//!   redelivery of something already held and is skipped (counted);
//! - offsets are committed only after `ChainWriter::flush` returned, and
//!   after the dead-letter copies of the flushed rejects were acknowledged;
//! - on a revoke, the revoked chains are flushed and committed
//!   synchronously before the source is told to go on;
//! - a ledger error stops the pipeline (returned to the caller): nothing
//!   after it is committed, so a restart re-reads it;
//! - with a checkpoint signer, a chain whose trees grew gets a signed
//!   checkpoint at most every interval, and always when it is revoked or
//!   the pipeline stops.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::mpsc;

use crate::alert::{Alert, Alerter};
use crate::detect::Detectors;
use crate::event::{Decoder, Kind, RejectReason};
use crate::ledger::checkpoint::NoteSigner;
use crate::ledger::{ChainId, ChainWriter, LedgerError, Origin, Store};
use crate::metrics::metrics;
use crate::source::kafka::DeadLetters;
use crate::source::{Committer, SourceEvent, SourceMessage};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("ledger")]
    Ledger(#[from] LedgerError),
    #[error("internal: a blocking ledger task failed: {0}")]
    Internal(String),
}

/// Flush policy.
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    pub max_rows: usize,
    pub max_age: Duration,
}

/// Counts for the caller's summary line.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub accepted: u64,
    pub rejected: u64,
    pub redelivered: u64,
    pub alerts: u64,
}

/// Signed checkpoints: who signs, how often.
#[derive(Clone)]
pub struct CheckpointPolicy {
    pub signer: Arc<NoteSigner>,
    pub interval: Duration,
}

struct ChainState {
    /// `None` only while a flush runs on a blocking thread.
    writer: Option<ChainWriter>,
    /// When the chain was last checkpointed (or opened), and whether its
    /// trees may have grown since.
    checkpointed: Instant,
    unsigned: bool,
    next_offset: i64,
    oldest: Option<Instant>,
    warned_skip: bool,
}

pub struct Pipeline {
    decoder: Decoder,
    store: Store,
    chains: HashMap<ChainId, ChainState>,
    detectors: Detectors,
    alerter: Alerter,
    dead_letters: Option<DeadLetters>,
    committer: Arc<dyn Committer>,
    policy: FlushPolicy,
    checkpoints: Option<CheckpointPolicy>,
    summary: Summary,
    /// `custos_events_accepted_total` by kind, looked up once.
    accepted: [prometheus::IntCounter; 3],
}

impl Pipeline {
    pub fn new(
        decoder: Decoder,
        store: Store,
        detectors: Detectors,
        alerter: Alerter,
        dead_letters: Option<DeadLetters>,
        committer: Arc<dyn Committer>,
        policy: FlushPolicy,
    ) -> Self {
        let m = metrics();
        for r in RejectReason::ALL {
            m.events_rejected.with_label_values(&[r.as_str()]);
        }
        Pipeline {
            decoder,
            store,
            chains: HashMap::new(),
            detectors,
            alerter,
            dead_letters,
            committer,
            policy,
            checkpoints: None,
            summary: Summary::default(),
            accepted: Kind::ALL.map(|k| m.events_accepted.with_label_values(&[k.as_str()])),
        }
    }

    /// Signs checkpoints with this policy.
    pub fn with_checkpoints(mut self, policy: Option<CheckpointPolicy>) -> Self {
        self.checkpoints = policy;
        self
    }

    /// Runs until the source sends `End` (or closes). When `shutdown`
    /// completes, `on_shutdown` is called once to ask the source to stop;
    /// the loop goes on until the source's `End`, so a Kafka source can
    /// revoke and commit cleanly.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SourceEvent>,
        shutdown: impl Future<Output = ()>,
        on_shutdown: impl FnOnce(),
    ) -> Result<Summary, PipelineError> {
        let mut tick =
            tokio::time::interval(self.policy.max_age.max(Duration::from_millis(20)) / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut on_shutdown = Some(on_shutdown);
        metrics().pipeline_ready.set(1.0);
        let result = loop {
            tokio::select! {
                biased;
                _ = &mut shutdown, if on_shutdown.is_some() => {
                    tracing::info!("stopping: draining the source");
                    if let Some(f) = on_shutdown.take() { f(); }
                }
                event = events.recv() => match event {
                    None | Some(SourceEvent::End) => break Ok(()),
                    Some(SourceEvent::Assigned(chains)) => {
                        if let Err(e) = self.assign(chains).await { break Err(e); }
                    }
                    Some(SourceEvent::Messages(batch)) => {
                        if let Err(e) = self.handle_batch(batch).await { break Err(e); }
                        // The tick branch may starve while messages keep
                        // coming; age-based flushes must not wait for a lull.
                        if let Err(e) = self.flush_due().await { break Err(e); }
                        if let Err(e) = self.checkpoint_due().await { break Err(e); }
                    }
                    Some(SourceEvent::Revoked(chains, done)) => {
                        let r = self.revoke(chains).await;
                        let _ = done.send(());
                        if let Err(e) = r { break Err(e); }
                    }
                },
                _ = tick.tick() => {
                    if let Err(e) = self.flush_due().await { break Err(e); }
                    if let Err(e) = self.checkpoint_due().await { break Err(e); }
                }
            }
        };
        metrics().pipeline_ready.set(0.0);
        if let Err(e) = &result {
            tracing::error!(error = %e, "pipeline stopped on an error; nothing after the last commit is acknowledged");
        }
        // Stop the source in every case, errors included, so it does not
        // keep a consumer-group membership nobody serves.
        if let Some(f) = on_shutdown.take() {
            f();
        }
        drop(events);
        let flushed = self.flush_all().await;
        self.detectors.report();
        self.alerter.close().await;
        result.and(flushed).map(|()| self.summary)
    }

    async fn assign(&mut self, chains: Vec<ChainId>) -> Result<(), PipelineError> {
        for chain in chains {
            if self.chains.contains_key(&chain) {
                continue;
            }
            let store = self.store.clone();
            let c = chain.clone();
            let writer = tokio::task::spawn_blocking(move || store.chain_writer(&c))
                .await
                .map_err(|e| PipelineError::Internal(e.to_string()))??;
            let next_offset = writer.last_offset().map_or(0, |o| o + 1);
            tracing::info!(stream = %chain.stream, partition = chain.partition, next_offset, "chain opened");
            self.chains.insert(
                chain,
                ChainState {
                    writer: Some(writer),
                    checkpointed: Instant::now(),
                    // It may hold rows no checkpoint covers yet.
                    unsigned: true,
                    next_offset,
                    oldest: None,
                    warned_skip: false,
                },
            );
        }
        Ok(())
    }

    async fn revoke(&mut self, chains: Vec<ChainId>) -> Result<(), PipelineError> {
        for chain in chains {
            self.flush(&chain, true).await?;
            self.chains.remove(&chain);
        }
        Ok(())
    }

    async fn handle_batch(&mut self, batch: Vec<SourceMessage>) -> Result<(), PipelineError> {
        let mut alerts = Vec::new();
        // One wall-clock read per batch: alerts of one batch share it.
        let raised_at = Utc::now();
        let mut full = Vec::new();
        let mut newest = None;
        for msg in batch {
            let Some(state) = self.chains.get_mut(&msg.chain) else {
                // Not (or no longer) ours: not committed, the owner reads it.
                continue;
            };
            let offset = match msg.offset {
                Some(o) if o < state.next_offset => {
                    // Already held (a redelivery after a restart or a
                    // rebalance). Counted: an operator must see it if a
                    // recreated topic reuses offsets.
                    self.summary.redelivered += 1;
                    metrics().messages_skipped.inc();
                    if !state.warned_skip {
                        state.warned_skip = true;
                        tracing::warn!(stream = %msg.chain.stream, partition = msg.chain.partition,
                            offset = o, next_offset = state.next_offset,
                            "skipping messages the ledger already holds");
                    }
                    continue;
                }
                Some(o) => o,
                None => state.next_offset,
            };
            state.next_offset = offset + 1;
            state.oldest.get_or_insert_with(Instant::now);
            let Some(writer) = state.writer.as_mut() else {
                return Err(PipelineError::Internal(
                    "a chain lost its writer in an earlier failed flush".into(),
                ));
            };
            let (file, line) = match &msg.file {
                Some((f, l)) => (Some(f.clone()), Some(*l)),
                None => (None, None),
            };
            let origin = Origin { offset, file, line };
            match self.decoder.decode(&msg.payload) {
                Ok(event) => {
                    self.summary.accepted += 1;
                    self.accepted[event.kind() as usize].inc();
                    writer.push_event(origin, &event);
                    newest = newest.max(Some(event.time_micros()));
                    alerts.extend(
                        self.detectors
                            .observe(&event)
                            .map(|f| Alert::from_finding(f, raised_at)),
                    );
                }
                Err(reject) => {
                    self.summary.rejected += 1;
                    metrics()
                        .events_rejected
                        .with_label_values(&[reject.reason.as_str()])
                        .inc();
                    tracing::debug!(stream = %msg.chain.stream, partition = msg.chain.partition,
                        offset, reason = reject.reason.as_str(), detail = %reject.detail, "rejected");
                    writer.push_reject(origin, msg.key.as_deref(), &msg.payload, &reject);
                    if let Some(dl) = &mut self.dead_letters {
                        dl.send(&msg, &reject);
                    }
                }
            }
            if writer.buffered() >= self.policy.max_rows && !full.contains(&msg.chain) {
                full.push(msg.chain.clone());
            }
        }
        if let Some(t) = newest {
            let lag = (Utc::now().timestamp_micros() - t) as f64 / 1e6;
            metrics().event_time_lag_seconds.set(lag);
        }
        for alert in alerts {
            self.summary.alerts += 1;
            self.alerter.send(alert).await;
        }
        for chain in full {
            self.flush(&chain, false).await?;
        }
        Ok(())
    }

    async fn flush_due(&mut self) -> Result<(), PipelineError> {
        let due: Vec<ChainId> = self
            .chains
            .iter()
            .filter(|(_, s)| s.oldest.is_some_and(|t| t.elapsed() >= self.policy.max_age))
            .map(|(c, _)| c.clone())
            .collect();
        for chain in due {
            self.flush(&chain, false).await?;
        }
        Ok(())
    }

    async fn flush_all(&mut self) -> Result<(), PipelineError> {
        let all: Vec<ChainId> = self.chains.keys().cloned().collect();
        for chain in all {
            self.flush(&chain, true).await?;
        }
        Ok(())
    }

    /// Makes `chain`'s buffer durable, then commits past it.
    async fn flush(&mut self, chain: &ChainId, sync: bool) -> Result<(), PipelineError> {
        let Some(state) = self.chains.get_mut(chain) else {
            return Ok(());
        };
        state.oldest = None;
        let Some(mut writer) = state.writer.take() else {
            return Err(PipelineError::Internal(
                "a chain lost its writer in an earlier failed flush".into(),
            ));
        };
        // On a revoke or at shutdown, checkpoint what is durable.
        let grows = state.unsigned || writer.buffered() > 0;
        let signer = match (&self.checkpoints, sync && grows) {
            (Some(policy), true) => Some(policy.signer.clone()),
            _ => None,
        };
        if writer.buffered() == 0 && signer.is_none() {
            // Nothing new; still re-commit on a revoke or at shutdown, in
            // case an earlier asynchronous commit failed.
            if let (true, Some(last)) = (sync, writer.last_offset()) {
                self.committer.commit(chain, last + 1, true);
            }
            state.writer = Some(writer);
            return Ok(());
        }
        if writer.buffered() > 0
            && let Some(dl) = &mut self.dead_letters
        {
            dl.settle().await;
        }
        let started = Instant::now();
        let (writer, result) = tokio::task::spawn_blocking(move || {
            let flushed = writer.flush();
            let r = match (flushed, signer) {
                (Ok(stats), Some(signer)) => writer
                    .checkpoint(&signer, Utc::now())
                    .map(|written| (stats, written.len())),
                (flushed, _) => flushed.map(|stats| (stats, 0)),
            };
            (writer, r)
        })
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
        if let Some(state) = self.chains.get_mut(chain) {
            state.writer = Some(writer);
        }
        let (stats, signed) = result?;
        if let Some(state) = self.chains.get_mut(chain) {
            if stats.is_some() {
                state.unsigned = true;
            }
            if sync && self.checkpoints.is_some() {
                state.unsigned = false;
                state.checkpointed = Instant::now();
            }
        }
        note_checkpoints(signed);
        let Some(stats) = stats else {
            if let (true, Some(last)) = (sync, self.last_offset(chain)) {
                self.committer.commit(chain, last + 1, true);
            }
            return Ok(());
        };
        let m = metrics();
        m.ledger_flush_seconds
            .observe(started.elapsed().as_secs_f64());
        m.ledger_records
            .with_label_values(&["events"])
            .inc_by(stats.events as u64);
        m.ledger_records
            .with_label_values(&["rejects"])
            .inc_by(stats.rejects as u64);
        m.ledger_segments.inc_by(stats.segments as u64);
        m.ledger_bytes.inc_by(stats.bytes);
        self.committer.commit(chain, stats.last_offset + 1, sync);
        Ok(())
    }

    fn last_offset(&self, chain: &ChainId) -> Option<i64> {
        self.chains
            .get(chain)
            .and_then(|s| s.writer.as_ref())
            .and_then(ChainWriter::last_offset)
    }

    /// Checkpoints every chain whose trees grew and whose last checkpoint
    /// is older than the interval.
    async fn checkpoint_due(&mut self) -> Result<(), PipelineError> {
        let Some(policy) = &self.checkpoints else {
            return Ok(());
        };
        let due: Vec<ChainId> = self
            .chains
            .iter()
            .filter(|(_, s)| s.unsigned && s.checkpointed.elapsed() >= policy.interval)
            .map(|(c, _)| c.clone())
            .collect();
        for chain in due {
            let signer = policy.signer.clone();
            let Some(state) = self.chains.get_mut(&chain) else {
                continue;
            };
            let Some(mut writer) = state.writer.take() else {
                return Err(PipelineError::Internal(
                    "a chain lost its writer in an earlier failed flush".into(),
                ));
            };
            let (writer, result) = tokio::task::spawn_blocking(move || {
                let r = writer.checkpoint(&signer, Utc::now());
                (writer, r)
            })
            .await
            .map_err(|e| PipelineError::Internal(e.to_string()))?;
            state.writer = Some(writer);
            let written = result?;
            state.unsigned = false;
            state.checkpointed = Instant::now();
            note_checkpoints(written.len());
        }
        Ok(())
    }
}

fn note_checkpoints(written: usize) {
    if written > 0 {
        let m = metrics();
        m.checkpoints_written.inc_by(written as u64);
        m.checkpoint_last_seconds
            .set(Utc::now().timestamp_millis() as f64 / 1000.0);
    }
}
