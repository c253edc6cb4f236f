//! Flushes: a chain's buffer made durable on a blocking thread, then its
//! offsets committed.
//!
//! A flush the buffer's size or age asks for runs in the background: the
//! loop goes on decoding, detecting and buffering the other chains' messages
//! meanwhile (Parquet encoding, hashing and fsync take the second core).
//! The chain's own messages that arrive meanwhile are held, in order, and
//! taken up when its writer is back; when a full buffer's worth is held the
//! loop waits for that flush. A flush on a revoke or at shutdown (`sync`)
//! is waited for. Invariants kept:
//! - one flush per chain at a time, and a chain's messages are buffered in
//!   offset order (held ones before anything later);
//! - the commit after a flush happens only once the flush returned;
//! - the detector snapshot a flush writes is taken when the flush starts,
//!   while the detectors have seen exactly the buffered events.

use std::time::Instant;

use chrono::Utc;
use tokio::task::JoinHandle;

use super::{
    Ingested, PRUNE_EVERY, Pipeline, PipelineError, apply_retention, chain_state, note_checkpoints,
    write_snapshot,
};
use crate::ledger::{ChainId, ChainWriter, FlushStats, LedgerError};
use crate::metrics::metrics;

/// What a flush's blocking task hands back: the writer, and what it made
/// durable with the number of checkpoints it signed.
type Flushed = (
    ChainWriter,
    Result<(Option<FlushStats>, usize), LedgerError>,
);

/// A flush running on a blocking thread.
pub(super) struct InFlight {
    task: JoinHandle<Flushed>,
    sync: bool,
    started: Instant,
}

impl Pipeline {
    pub(super) async fn flush_due(&mut self) -> Result<(), PipelineError> {
        self.reap().await?;
        let due: Vec<ChainId> = self
            .chains
            .iter()
            .filter(|(_, s)| {
                s.oldest.is_some_and(|t| t.elapsed() >= self.policy.max_age)
                    || (self.continuity.retention.is_some() && s.pruned.elapsed() >= PRUNE_EVERY)
            })
            .map(|(c, _)| c.clone())
            .collect();
        for chain in due {
            self.flush(&chain, false).await?;
        }
        Ok(())
    }

    pub(super) async fn flush_all(&mut self) -> Result<(), PipelineError> {
        let all: Vec<ChainId> = self.chains.keys().cloned().collect();
        for chain in all {
            self.flush(&chain, true).await?;
        }
        Ok(())
    }

    /// Takes back the writers of finished flushes (committing past them),
    /// and waits for the flush of any chain that holds a full buffer's
    /// worth of messages.
    pub(super) async fn reap(&mut self) -> Result<(), PipelineError> {
        let ready: Vec<ChainId> = self
            .chains
            .iter()
            .filter(|(_, s)| {
                s.flushing.as_ref().is_some_and(|f| f.task.is_finished())
                    || s.held.len() >= self.policy.max_rows
            })
            .map(|(c, _)| c.clone())
            .collect();
        for chain in ready {
            self.settle(&chain).await?;
            let full = self
                .chains
                .get(&chain)
                .and_then(|s| s.writer.as_ref())
                .is_some_and(|w| w.buffered() >= self.policy.max_rows);
            if full {
                self.flush(&chain, false).await?;
            }
        }
        Ok(())
    }

    /// Waits for the chain's flush in flight, if any, then takes up the
    /// messages held meanwhile. Afterwards the chain's writer is present
    /// (unless an earlier flush failed) and nothing is held.
    pub(super) async fn settle(&mut self, chain: &ChainId) -> Result<(), PipelineError> {
        let Some(state) = self.chains.get_mut(chain) else {
            return Ok(());
        };
        if let Some(flight) = state.flushing.take() {
            self.finish(chain, flight).await?;
        }
        let Some(state) = self.chains.get_mut(chain) else {
            return Ok(());
        };
        if state.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut state.held);
        let mut done = Ingested::default();
        self.ingest(held, &mut done)?;
        // A chain this filled is flushed by the caller or the next batch.
        self.deliver(&mut done).await;
        Ok(())
    }

    /// Makes `chain`'s buffer durable, then commits past it: in the
    /// background, or (`sync`, on a revoke or at shutdown) before
    /// returning.
    pub(super) async fn flush(&mut self, chain: &ChainId, sync: bool) -> Result<(), PipelineError> {
        self.settle(chain).await?;
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
        // Taken now, while every event the detectors saw is buffered: once
        // the flush succeeds the state matches the ledger exactly.
        let snapshot = (state.observed
            && (sync || state.snapshotted.elapsed() >= self.continuity.snapshot_interval))
            .then(|| chain_state(&state.detectors, &state.sketcher));
        let prune = self
            .continuity
            .retention
            .filter(|_| state.pruned.elapsed() >= PRUNE_EVERY);
        if writer.buffered() == 0 && signer.is_none() && snapshot.is_none() && prune.is_none() {
            // Nothing new; still re-commit on a revoke or at shutdown, in
            // case an earlier asynchronous commit failed.
            state.writer = Some(writer);
            if let (true, Some(last)) = (sync, self.last_offset(chain)) {
                self.commit(chain, last + 1, true);
            }
            return Ok(());
        }
        if snapshot.is_some() {
            // Events the detectors see from now on are after the snapshot.
            state.observed = false;
            state.snapshotted = Instant::now();
        }
        if prune.is_some() {
            state.pruned = Instant::now();
        }
        if writer.buffered() > 0
            && let Some(dl) = &mut self.dead_letters
        {
            dl.settle().await;
        }
        if writer.buffered() > 0 {
            // The revisions these events caused are recorded first: a
            // crash after this flush must not leave stored events whose
            // incidents no one recorded (their replay raises nothing).
            self.alerter.sync().await;
        }
        let started = Instant::now();
        let store = self.store.clone();
        let task = tokio::task::spawn_blocking(move || {
            let r = writer.flush().and_then(|stats| {
                if let Some(state) = snapshot {
                    write_snapshot(&store, &writer, state)?;
                }
                if let Some(keep) = prune {
                    apply_retention(&mut writer, keep)?;
                }
                match signer {
                    Some(signer) => {
                        let written = writer.checkpoint(&signer, Utc::now())?;
                        Ok((stats, written.len()))
                    }
                    None => Ok((stats, 0)),
                }
            });
            (writer, r)
        });
        let flight = InFlight {
            task,
            sync,
            started,
        };
        if sync {
            return self.finish(chain, flight).await;
        }
        if let Some(state) = self.chains.get_mut(chain) {
            state.flushing = Some(flight);
        }
        Ok(())
    }

    /// Waits for a flush, gives the writer back to its chain and commits
    /// past what it made durable.
    async fn finish(&mut self, chain: &ChainId, flight: InFlight) -> Result<(), PipelineError> {
        let (writer, result) = flight
            .task
            .await
            .map_err(|e| PipelineError::Internal(e.to_string()))?;
        let sync = flight.sync;
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
        crate::detect::report_keys(self.chains.values_mut().map(|s| &mut s.detectors));
        self.report_state();
        note_checkpoints(signed);
        let Some(stats) = stats else {
            if let (true, Some(last)) = (sync, self.last_offset(chain)) {
                self.commit(chain, last + 1, true);
            }
            return Ok(());
        };
        let m = metrics();
        m.ledger_flush_seconds
            .observe(flight.started.elapsed().as_secs_f64());
        m.ledger_records
            .with_label_values(&["events"])
            .inc_by(stats.events as u64);
        m.ledger_records
            .with_label_values(&["rejects"])
            .inc_by(stats.rejects as u64);
        m.ledger_segments.inc_by(stats.segments as u64);
        m.ledger_bytes.inc_by(stats.bytes);
        self.commit(chain, stats.last_offset + 1, sync);
        Ok(())
    }
}
