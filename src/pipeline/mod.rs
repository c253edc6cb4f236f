//! The pipeline loop: source events in, ledger appends, detection, alerts,
//! commits out.
//!
//! One task owns every assigned chain's writer and handles source events
//! strictly in order (a large batch's chains are handled on two threads,
//! `lanes`, each chain's messages in order). Ahead of it, the prepare stage (`prepare`, its own
//! thread) parses each message and, where no chain state is needed,
//! encodes and hashes its ledger row; it forwards the source's events in
//! the source's order. Invariants:
//! - a message is buffered in its chain's writer before anything later in
//!   that chain; an offset below the chain's next expected offset is a
//!   redelivery of something already held and is skipped (counted);
//! - offsets are committed only after `ChainWriter::flush` returned, and
//!   after the dead-letter copies of the flushed rejects were acknowledged;
//! - a chain's rows are flushed only after every incident revision raised
//!   so far is recorded (`Alerter::sync`), so stored events never outlive
//!   the revisions they caused;
//! - on an assignment, each chain is opened (recovering from any crash),
//!   its detector state restored from the chain's snapshot and the ledger
//!   rows after it, its event-id window rebuilt from the ledger; then the
//!   source is told where each chain's stored history ends and resumes
//!   there;
//! - an event whose id the chain's window already holds (a producer retry)
//!   is stored as a `duplicate_id` reject, not as a second event;
//! - on a revoke, the revoked chains are flushed, committed and
//!   snapshotted synchronously before the source is told to go on;
//! - a ledger error stops the pipeline (returned to the caller): nothing
//!   after it is committed, so a restart re-reads it;
//! - with a checkpoint signer, a chain whose trees grew gets a signed
//!   checkpoint at most every interval, and always when it is revoked or
//!   the pipeline stops.

mod background;
mod dedup;
mod lanes;
mod prepare;
mod seal;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use self::dedup::IdWindow;
use self::prepare::{Prepared, Staged};
use crate::alert::{Alert, Alerter};
use crate::detect::reference::{ReferenceWatch, tables as reference_tables};
use crate::detect::sql::{SqlDetectors, SqlReport};
use crate::detect::{DetectorConfig, DetectorSetup, Detectors, Reference};
use crate::event::sketch::Sketcher;
use crate::event::{Decoder, Kind, RejectReason, RejectSealer, SealError};
use crate::failpoint;
use crate::ledger::checkpoint::NoteSigner;
use crate::ledger::{
    ChainId, ChainWriter, LedgerError, SNAPSHOT_VERSION, Snapshot, StateWriter, Store, Table,
    WrittenFlush,
};
use crate::metrics::metrics;
use crate::source::kafka::DeadLetters;
use crate::source::{Committer, SourceEvent};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("internal: a blocking ledger task failed: {0}")]
    Internal(String),
    #[error("cannot seal a rejected message")]
    Seal(#[from] SealError),
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
    /// Events dropped as copies of an id already stored (kept as rejects).
    pub duplicates: u64,
    pub alerts: u64,
}

/// What a chain carries from one owner to the next besides its rows.
#[derive(Debug, Clone, Copy)]
pub struct Continuity {
    /// Event-time span of the event-id window (zero: no id deduplication).
    pub dedup_window: Duration,
    /// Ids held per chain at most.
    pub dedup_max_ids: usize,
    /// How often a chain's detector state is snapshotted after a flush
    /// (also on every revoke and at shutdown).
    pub snapshot_interval: Duration,
    /// Stored events replayed into the detectors at most, when a chain is
    /// opened without a usable snapshot (or with an old one): the newest
    /// ones. Bounds the time a takeover can take.
    pub replay_max_events: u64,
    /// How long a flush's segments are kept after its newest event
    /// (`None`: forever). The owner prunes a chain when it opens it and
    /// then every [`PRUNE_EVERY`] after a flush.
    pub retention: Option<Duration>,
}

/// How often the owner of a chain applies the retention period.
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Default for Continuity {
    fn default() -> Self {
        Continuity {
            dedup_window: Duration::from_secs(600),
            dedup_max_ids: 200_000,
            snapshot_interval: Duration::from_secs(60),
            replay_max_events: 1_000_000,
            retention: None,
        }
    }
}

/// Signed checkpoints: who signs, how often.
#[derive(Clone)]
pub struct CheckpointPolicy {
    pub signer: Arc<NoteSigner>,
    pub interval: Duration,
}

struct ChainState {
    /// `None` only while a blocking thread holds it (a flush's commit, a
    /// checkpoint, a head check).
    writer: Option<ChainWriter>,
    /// The flush whose segment files are being written, if any.
    inflight: Option<InFlight>,
    /// When the chain was last checkpointed (or opened), and whether its
    /// trees may have grown since.
    checkpointed: Instant,
    unsigned: bool,
    next_offset: i64,
    oldest: Option<Instant>,
    warned_skip: bool,
    detectors: Detectors,
    /// Model input normalizations (saved with the detector state).
    sketcher: Sketcher,
    ids: IdWindow,
    /// When the detector state was last snapshotted, and whether it has
    /// seen events since.
    snapshotted: Instant,
    observed: bool,
    /// When the retention period was last applied.
    pruned: Instant,
    /// The last snapshot, encoded and written on the snapshot thread after
    /// its flush committed.
    snapshot_task: Option<SnapshotTask>,
}

/// How far into its first snapshot interval a chain opens: the golden
/// ratio's fraction of the interval per partition number, so the chains
/// of a process come due spread over the interval rather than all at once
/// (each snapshot is a JSON text of the whole state, held in memory while
/// it is written: with a million actors, about 130 MB per chain).
fn snapshot_phase(partition: i32, interval: Duration) -> Duration {
    let fraction = (f64::from(partition.unsigned_abs()) * 0.618_033_988_749_895).fract();
    interval.mul_f64(fraction)
}

impl ChainState {
    fn new(opened: Opened, next_offset: i64, snapshot_phase: Duration) -> Self {
        ChainState {
            writer: Some(opened.writer),
            inflight: None,
            checkpointed: Instant::now(),
            // It may hold rows no checkpoint covers yet.
            unsigned: true,
            next_offset,
            oldest: None,
            warned_skip: false,
            detectors: opened.detectors,
            sketcher: opened.sketcher,
            ids: opened.ids,
            snapshotted: Instant::now()
                .checked_sub(snapshot_phase)
                .unwrap_or_else(Instant::now),
            observed: false,
            pruned: Instant::now(),
            snapshot_task: None,
        }
    }
}

/// A sealed flush of a chain, its segment files being written on the
/// segment thread while the loop goes on; committed by `Pipeline::settle`.
struct InFlight {
    /// The segment files being written (`None`: the writing panicked).
    task: tokio::task::JoinHandle<Option<Result<WrittenFlush, LedgerError>>>,
    after: AfterFlush,
}

/// What a flush does once its rows are committed, decided when it was
/// sealed.
struct AfterFlush {
    /// The detector state as of the flush's last event, copied; encoded
    /// and written once the flush is committed.
    snapshot: Option<ChainSnapshot>,
    signer: Option<Arc<NoteSigner>>,
    prune: Option<Duration>,
    /// A revoke or the shutdown: commit offsets synchronously.
    sync: bool,
    started: Instant,
}

pub struct Pipeline {
    decoder: Decoder,
    store: Store,
    chains: HashMap<ChainId, ChainState>,
    detectors: DetectorSetup,
    continuity: Continuity,
    alerter: Alerter,
    dead_letters: Option<DeadLetters>,
    committer: Arc<dyn Committer>,
    policy: FlushPolicy,
    checkpoints: Option<CheckpointPolicy>,
    /// Seals rejected messages before they are stored (see `with_sealer`).
    sealer: Option<RejectSealer>,
    summary: Summary,
    /// `custos_events_accepted_total` by kind, looked up once.
    accepted: [prometheus::IntCounter; 3],
    /// Reloads the reference tables when their files change.
    reference: Option<ReferenceWatch>,
    /// The reference tables as Arrow batches, for the SQL detectors.
    reference_tables: Vec<(&'static str, arrow::record_batch::RecordBatch)>,
    /// The SQL detectors: one window of recent events for the process
    /// (fed by every chain), run on their own task.
    sql: Option<SqlDetectors>,
    sql_reports: (mpsc::Sender<SqlReport>, Option<mpsc::Receiver<SqlReport>>),
    /// SQL runs started whose report has not been handled yet.
    sql_unreported: usize,
    /// When the owned chains' heads were last checked.
    head_checked: Instant,
}

impl Pipeline {
    pub fn new(
        decoder: Decoder,
        store: Store,
        detectors: Vec<DetectorConfig>,
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
            detectors: DetectorSetup::new(detectors),
            continuity: Continuity::default(),
            alerter,
            dead_letters,
            committer,
            policy,
            checkpoints: None,
            sealer: None,
            summary: Summary::default(),
            accepted: Kind::ALL.map(|k| m.events_accepted.with_label_values(&[k.as_str()])),
            reference: None,
            reference_tables: Vec::new(),
            sql: None,
            sql_reports: {
                let (tx, rx) = mpsc::channel(4);
                (tx, Some(rx))
            },
            sql_unreported: 0,
            head_checked: Instant::now(),
        }
    }

    /// Judges events against the reference tables `watch` holds, and
    /// reloads them when their files change (checked every
    /// `reference.reload_secs`; a reload that fails keeps the tables in
    /// force).
    pub fn with_reference(mut self, watch: ReferenceWatch) -> Self {
        self.set_reference(watch.current());
        self.reference = Some(watch);
        self
    }

    /// Runs these SQL detectors over the events of every chain.
    pub fn with_sql_detectors(mut self, sql: SqlDetectors) -> Self {
        self.sql = Some(sql);
        self
    }

    /// Swaps in reference tables for every chain and the SQL detectors.
    fn set_reference(&mut self, reference: Arc<Reference>) {
        for state in self.chains.values_mut() {
            state.detectors.set_reference(reference.clone());
        }
        self.reference_tables = reference_tables(&reference);
        self.detectors.reference = reference;
    }

    /// Reloads the reference tables if their reload period has passed and
    /// a file changed. The files are small tables read in place.
    fn reference_due(&mut self) {
        let Some(watch) = &mut self.reference else {
            return;
        };
        if !watch.due(Instant::now()) {
            return;
        }
        match watch.reload_if_changed() {
            None | Some(Err(_)) => {}
            Some(Ok(_)) => {
                let current = watch.current();
                self.set_reference(current);
            }
        }
    }

    /// Raises the findings of a finished SQL detector run.
    async fn sql_report(&mut self, report: SqlReport) {
        self.sql_unreported = self.sql_unreported.saturating_sub(1);
        let m = metrics();
        for failure in &report.failures {
            m.sql_detector_failures
                .with_label_values(&[&failure.detector])
                .inc();
            tracing::error!(error = %failure, "a SQL detector failed");
        }
        if report.skipped_rows > 0 {
            tracing::warn!(
                rows = report.skipped_rows,
                "SQL detector result rows without a valid actor or severity were skipped"
            );
        }
        let raised_at = Utc::now();
        for finding in &report.findings {
            m.finding(&finding.detector, finding.severity, finding.window_end);
        }
        self.summary.alerts += report.findings.len() as u64;
        self.alerter
            .send_all(
                report
                    .findings
                    .into_iter()
                    .map(|f| Alert::from_finding(f, raised_at)),
            )
            .await;
    }

    /// At the end of the input: waits for the run in flight, then runs the
    /// SQL detectors once more over the window as it ends, so the events
    /// after the last scheduled run are judged too.
    async fn finish_sql(&mut self, reports: Option<&mut mpsc::Receiver<SqlReport>>) {
        let (true, Some(rx)) = (self.sql.is_some(), reports) else {
            return;
        };
        // Every run started has its report read first: a report still in
        // the channel when the last run was started, or a run still going,
        // would otherwise make the final run wait (and be skipped).
        while self.sql_unreported > 0 {
            let Some(report) = rx.recv().await else { break };
            self.sql_report(report).await;
        }
        let Some(sql) = &mut self.sql else { return };
        if let Some(run) = sql.finish(&self.reference_tables) {
            let report = run.execute().await;
            self.sql_report(report).await;
        }
    }

    /// Starts a SQL detector run if one is due at event time `newest_us`.
    fn sql_due(&mut self, newest_us: i64) {
        let Some(sql) = &mut self.sql else { return };
        let Some(now) = chrono::DateTime::from_timestamp_micros(newest_us) else {
            return;
        };
        let dropped = sql.dropped();
        let run = sql.tick(now, &self.reference_tables);
        let m = metrics();
        m.sql_window_rows.set(sql.rows() as f64);
        m.sql_window_dropped
            .inc_by(sql.dropped().saturating_sub(dropped));
        if let Some(run) = run {
            let tx = self.sql_reports.0.clone();
            self.sql_unreported += 1;
            // On a thread of its own at a low priority, on a runtime of
            // its own (DataFusion's tasks run there too).
            let report = background::SQL.spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map(|rt| rt.block_on(run.execute()))
            });
            tokio::spawn(async move {
                // Every run started is reported, a failed one too: the
                // loop counts them.
                let report = match report.await {
                    Ok(Some(Ok(report))) => report,
                    Ok(Some(Err(e))) => SqlReport::aborted(format!("no runtime: {e}")),
                    _ => SqlReport::aborted("it panicked".into()),
                };
                let _ = tx.send(report).await;
            });
        }
    }

    /// Signs checkpoints with this policy.
    pub fn with_checkpoints(mut self, policy: Option<CheckpointPolicy>) -> Self {
        metrics()
            .checkpoint_interval_seconds
            .set(policy.as_ref().map_or(0.0, |p| p.interval.as_secs_f64()));
        self.checkpoints = policy;
        self
    }

    /// Stores rejected messages (payload and Kafka key) sealed by `sealer`
    /// instead of as received, so raw identifiers in malformed messages
    /// never reach disk. The `custos` binary always sets one.
    pub fn with_sealer(mut self, sealer: RejectSealer) -> Self {
        self.sealer = Some(sealer);
        self
    }

    /// Deduplicates and snapshots with this policy.
    pub fn with_continuity(mut self, continuity: Continuity) -> Self {
        self.continuity = continuity;
        self
    }

    /// Runs until the source sends `End` (or closes). When `shutdown`
    /// completes, `on_shutdown` is called once to ask the source to stop;
    /// the loop goes on until the source's `End`, so a Kafka source can
    /// revoke and commit cleanly.
    pub async fn run(
        mut self,
        events: mpsc::Receiver<SourceEvent>,
        shutdown: impl Future<Output = ()>,
        on_shutdown: impl FnOnce(),
    ) -> Result<Summary, PipelineError> {
        let mut events = prepare::spawn(events, self.decoder.clone(), self.store.alg())
            .map_err(|e| PipelineError::Internal(format!("cannot start the prepare stage: {e}")))?;
        let mut tick =
            tokio::time::interval(self.policy.max_age.max(Duration::from_millis(20)) / 2);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        let mut on_shutdown = Some(on_shutdown);
        let mut sql_reports = self.sql_reports.1.take();
        metrics().pipeline_ready.set(1.0);
        let result = loop {
            tokio::select! {
                biased;
                _ = &mut shutdown, if on_shutdown.is_some() => {
                    tracing::info!("stopping: draining the source");
                    // Everything read so far is made durable, checkpointed
                    // and committed while the source still serves its
                    // consumer group: once it starts to leave, the group
                    // gets no heartbeats, and a revoke that writes every
                    // chain's files one after another can outlast the
                    // session, its last commits refused. The revoke that
                    // follows finds each chain flushed and only
                    // re-commits.
                    if let Err(e) = self.flush_all().await { break Err(e); }
                    if let Some(f) = on_shutdown.take() { f(); }
                }
                // Before the messages: while they keep coming, a report
                // would wait for a lull (its findings delayed, and a run
                // finished but unread at the end of the input).
                Some(report) = async { match &mut sql_reports {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                } } => self.sql_report(report).await,
                event = events.recv() => match event {
                    None | Some(Staged::End) => break Ok(()),
                    Some(Staged::Assigned(chains, reply)) => {
                        if let Err(e) = self.assign(chains, reply).await { break Err(e); }
                    }
                    Some(Staged::Messages(batch)) => {
                        if let Err(e) = self.handle_batch(batch).await { break Err(e); }
                        // The tick branch may starve while messages keep
                        // coming; age-based flushes must not wait for a lull.
                        if let Err(e) = self.flush_due().await { break Err(e); }
                        if let Err(e) = self.checkpoint_due().await { break Err(e); }
                        self.check_heads_due().await;
                    }
                    Some(Staged::Revoked(chains, done)) => {
                        let r = self.revoke(chains).await;
                        let _ = done.send(());
                        if let Err(e) = r { break Err(e); }
                    }
                },
                _ = tick.tick() => {
                    self.reference_due();
                    if let Err(e) = self.flush_due().await { break Err(e); }
                    if let Err(e) = self.checkpoint_due().await { break Err(e); }
                    self.check_heads_due().await;
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
        crate::detect::report_keys(self.chains.values_mut().map(|s| &mut s.detectors));
        if result.is_ok() {
            self.finish_sql(sql_reports.as_mut()).await;
        }
        self.alerter.close().await;
        result.and(flushed).map(|()| self.summary)
    }

    /// Opens the chains and restores their state; tells the source (when
    /// it asks) where each chain's stored history ends.
    async fn assign(
        &mut self,
        chains: Vec<ChainId>,
        reply: Option<oneshot::Sender<Vec<(ChainId, i64)>>>,
    ) -> Result<(), PipelineError> {
        let mut positions = Vec::new();
        let mut new = Vec::new();
        for chain in chains {
            match self.chains.get(&chain) {
                Some(state) => positions.push((chain, state.next_offset)),
                None => new.push(chain),
            }
        }
        let (store, configs, continuity, sketcher) = (
            self.store.clone(),
            self.detectors.clone(),
            self.continuity,
            self.decoder.sketcher(),
        );
        let opened = tokio::task::spawn_blocking(move || {
            let opened = open_chains(&store, &new, &configs, &sketcher, continuity);
            new.into_iter().zip(opened).collect::<Vec<_>>()
        })
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
        for (chain, opened) in opened {
            let opened = opened.inspect_err(|e| {
                if matches!(e, LedgerError::Corrupt { .. }) {
                    metrics().verify_result("open", false);
                }
            })?;
            let next_offset = opened.writer.last_offset().map_or(0, |o| o + 1);
            // An empty chain starts at 0 too (the earliest message the
            // topic still holds, if 0 is gone): the store lacks all of it.
            positions.push((chain.clone(), next_offset));
            // What the store holds is committed now: an owner that stopped
            // between a flush and its commit left the group's offset
            // behind, and on a partition with no new messages no later
            // commit would catch it up (its lag would show for good).
            if next_offset > 0 {
                self.committer.commit(&chain, next_offset, false);
            }
            tracing::info!(stream = %chain.stream, partition = chain.partition, next_offset, "chain opened");
            let phase = snapshot_phase(chain.partition, self.continuity.snapshot_interval);
            self.chains
                .insert(chain, ChainState::new(opened, next_offset, phase));
        }
        self.report_state();
        if let Some(reply) = reply {
            let _ = reply.send(positions);
        }
        Ok(())
    }

    async fn revoke(&mut self, chains: Vec<ChainId>) -> Result<(), PipelineError> {
        let mut result = Ok(());
        for chain in &chains {
            if result.is_ok() {
                result = self.flush(chain, true).await;
            }
            // Closed either way: after a failed flush the rest is neither
            // flushed nor committed (the next owner reads it again), and the
            // chains' locks are released for it.
            self.chains.remove(chain);
        }
        self.report_state();
        result
    }

    async fn handle_batch(&mut self, batch: Vec<Prepared>) -> Result<(), PipelineError> {
        // Each chain's messages, in order; messages of chains not (or no
        // longer) ours are not committed: the owner reads them.
        let mut by_chain: HashMap<ChainId, Vec<Prepared>> = HashMap::new();
        for p in batch {
            if let Some(msgs) = by_chain.get_mut(&p.msg.chain) {
                msgs.push(p);
            } else if self.chains.contains_key(&p.msg.chain) {
                by_chain.insert(p.msg.chain.clone(), vec![p]);
            }
        }
        let work: Vec<lanes::Work> = self
            .chains
            .iter_mut()
            .filter_map(|(chain, state)| by_chain.remove(chain).map(|msgs| (chain, state, msgs)))
            .collect();
        let shared = lanes::Shared {
            decoder: &self.decoder,
            sealer: self.sealer.as_ref(),
            accepted: &self.accepted,
            max_rows: self.policy.max_rows,
            raised_at: Utc::now(),
            dead_letters: self.dead_letters.is_some(),
        };
        let handled = lanes::handle(&shared, work)?;
        let lanes::Handled {
            alerts,
            spent,
            full,
            newest,
            counts,
            dead,
            ..
        } = handled;
        self.summary.accepted += counts.accepted;
        self.summary.rejected += counts.rejected;
        self.summary.redelivered += counts.redelivered;
        self.summary.duplicates += counts.duplicates;
        if let Some(dl) = &mut self.dead_letters {
            for (msg, reject) in &dead {
                dl.send(msg, reject);
            }
        }
        if let Some(sql) = &mut self.sql {
            for event in &spent.events {
                sql.push(event);
            }
        }
        // What the batch is done with is freed on a blocking thread: the
        // messages' and events' many small buffers took a seventh of the
        // loop's time to free (docs/performance.md).
        if !spent.messages.is_empty() {
            drop(tokio::task::spawn_blocking(move || drop(spent)));
        }
        if let Some(t) = newest {
            let lag = (Utc::now().timestamp_micros() - t) as f64 / 1e6;
            metrics().event_time_lag_seconds.set(lag);
            self.sql_due(t);
        }
        for alert in alerts {
            self.summary.alerts += 1;
            self.alerter.send(alert).await;
        }
        if let Some(t) = newest {
            // Incidents quiet for their quiet period (in event time) resolve.
            self.alerter.advance(t).await;
        }
        for chain in full {
            self.flush(&chain, false).await?;
        }
        Ok(())
    }

    async fn flush_due(&mut self) -> Result<(), PipelineError> {
        let written: Vec<ChainId> = self
            .chains
            .iter()
            .filter(|(_, s)| s.inflight.as_ref().is_some_and(|f| f.task.is_finished()))
            .map(|(c, _)| c.clone())
            .collect();
        for chain in written {
            self.settle(&chain).await?;
        }
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

    async fn flush_all(&mut self) -> Result<(), PipelineError> {
        let all: Vec<ChainId> = self.chains.keys().cloned().collect();
        for chain in all {
            self.flush(&chain, true).await?;
        }
        Ok(())
    }

    /// Seals `chain`'s buffer as a flush and starts writing its segment
    /// files on the segment thread (`background`); the loop goes on buffering. The flush
    /// in flight before it, if any, is committed first (one at a time per
    /// chain). With `sync` (a revoke, the shutdown) the new flush is
    /// committed before this returns.
    async fn flush(&mut self, chain: &ChainId, sync: bool) -> Result<(), PipelineError> {
        self.settle(chain).await?;
        // A revoke or the shutdown hands on a chain whose snapshot is written.
        if sync
            && let Some(task) = self
                .chains
                .get_mut(chain)
                .and_then(|state| state.snapshot_task.take())
        {
            finished_snapshot(task).await?;
        }
        let Some(state) = self.chains.get_mut(chain) else {
            return Ok(());
        };
        state.oldest = None;
        let Some(writer) = state.writer.as_mut() else {
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
        // Taken now, while every event the detectors saw is in the flush:
        // once it is committed the state matches the ledger exactly.
        let snapshot = (state.observed
            && (sync || state.snapshotted.elapsed() >= self.continuity.snapshot_interval))
            .then(|| ChainSnapshot::of(&state.detectors, &state.sketcher));
        let prune = self
            .continuity
            .retention
            .filter(|_| state.pruned.elapsed() >= PRUNE_EVERY);
        let buffered = writer.buffered() > 0;
        if !buffered && signer.is_none() && snapshot.is_none() && prune.is_none() {
            // Nothing new; still re-commit on a revoke or at shutdown, in
            // case an earlier asynchronous commit failed.
            if let (true, Some(last)) = (sync, self.last_offset(chain)) {
                self.commit(chain, last + 1, true);
            }
            return Ok(());
        }
        if buffered && let Some(dl) = &mut self.dead_letters {
            dl.settle().await;
        }
        if buffered {
            // The revisions these events caused are recorded first: a
            // crash after this flush must not leave stored events whose
            // incidents no one recorded (their replay raises nothing).
            self.alerter.sync().await;
        }
        let after = AfterFlush {
            snapshot,
            signer,
            prune,
            sync,
            started: Instant::now(),
        };
        let Some(state) = self.chains.get_mut(chain) else {
            return Ok(());
        };
        let Some(writer) = state.writer.as_mut() else {
            return Err(PipelineError::Internal(
                "a chain lost its writer in an earlier failed flush".into(),
            ));
        };
        if after.snapshot.is_some() {
            state.observed = false;
        }
        match writer.seal()? {
            None => self.commit_flush(chain, None, after).await,
            Some(sealed) => {
                let task = background::SEGMENTS.spawn(move || sealed.write_segments());
                state.inflight = Some(InFlight { task, after });
                if sync {
                    self.settle(chain).await?;
                }
                Ok(())
            }
        }
    }

    /// Waits for `chain`'s flush in flight, if any, and commits it.
    async fn settle(&mut self, chain: &ChainId) -> Result<(), PipelineError> {
        let Some(inflight) = self
            .chains
            .get_mut(chain)
            .and_then(|state| state.inflight.take())
        else {
            return Ok(());
        };
        let written = inflight
            .task
            .await
            .map_err(|e| PipelineError::Internal(e.to_string()))?
            .ok_or_else(|| {
                PipelineError::Internal("writing a flush's segments panicked".into())
            })??;
        self.commit_flush(chain, Some(written), inflight.after)
            .await
    }

    /// Commits a flush whose segments are written (if any: a flush may be
    /// only a snapshot, a checkpoint or a pruning), then does what it asks
    /// for after, and commits the source's offsets past it.
    async fn commit_flush(
        &mut self,
        chain: &ChainId,
        written: Option<WrittenFlush>,
        after: AfterFlush,
    ) -> Result<(), PipelineError> {
        let Some(state) = self.chains.get_mut(chain) else {
            return Ok(());
        };
        let Some(mut writer) = state.writer.take() else {
            return Err(PipelineError::Internal(
                "a chain lost its writer in an earlier failed flush".into(),
            ));
        };
        let AfterFlush {
            snapshot,
            signer,
            prune,
            sync,
            started,
        } = after;
        let snapshotted = snapshot.is_some();
        // The previous snapshot's outcome, once it is written (and before
        // the next one is): its error is this flush's.
        if let Some(task) = state
            .snapshot_task
            .take_if(|t| snapshotted || t.is_finished())
        {
            finished_snapshot(task).await?;
        }
        let (writer, result) = tokio::task::spawn_blocking(move || {
            let r = written
                .map(|w| writer.commit(w))
                .transpose()
                .and_then(|stats| {
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
        })
        .await
        .map_err(|e| PipelineError::Internal(e.to_string()))?;
        let position = snapshot.as_ref().and_then(|_| SnapshotAt::of(&writer));
        if let Some(state) = self.chains.get_mut(chain) {
            state.writer = Some(writer);
        }
        let (stats, signed) = result?;
        // Encoding a large state takes tens of milliseconds: on a thread
        // of its own, not the loop; waited for only on a revoke or at
        // shutdown, or when the chain's next snapshot is due.
        if let (Some(snapshot), Some(at)) = (snapshot, position) {
            let store = self.store.clone();
            let task = background::SNAPSHOTS.spawn(move || write_snapshot(&store, &at, &snapshot));
            if sync {
                finished_snapshot(task).await?;
            } else if let Some(state) = self.chains.get_mut(chain) {
                state.snapshot_task = Some(task);
            }
        }
        if let Some(state) = self.chains.get_mut(chain) {
            if stats.is_some() {
                state.unsigned = true;
            }
            if sync && self.checkpoints.is_some() {
                state.unsigned = false;
                state.checkpointed = Instant::now();
            }
            if snapshotted {
                state.snapshotted = Instant::now();
            }
            if prune.is_some() {
                state.pruned = Instant::now();
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
            .observe(started.elapsed().as_secs_f64());
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

    fn commit(&self, chain: &ChainId, next_offset: i64, sync: bool) {
        failpoint::hit("commit.before");
        self.committer.commit(chain, next_offset, sync);
        failpoint::hit("commit.after");
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

impl Pipeline {
    /// Publishes the sizes of what the owned chains hold: chains, rows in
    /// their logs, ids in their deduplication windows.
    fn report_state(&self) {
        let m = metrics();
        m.chains_owned.set(self.chains.len() as i64);
        m.dedup_ids
            .set(self.chains.values().map(|s| s.ids.len()).sum::<usize>() as i64);
        for table in Table::ALL {
            let rows: u64 = self
                .chains
                .values()
                .filter_map(|s| s.writer.as_ref())
                .map(|w| w.tree_head(table).0)
                .sum();
            m.ledger_rows
                .with_label_values(&[table.as_str()])
                .set(rows as i64);
        }
    }

    /// Every [`HEAD_CHECK_INTERVAL`], checks each owned chain's stored
    /// manifest and checkpoints against its writer
    /// ([`ChainWriter::check_head`]). A failure is logged and counted
    /// (`custos_ledger_verify_ok` drops to 0); the pipeline goes on: what
    /// it appends next still chains onto what it holds, and `custos
    /// verify` names what was changed.
    async fn check_heads_due(&mut self) {
        if self.head_checked.elapsed() < HEAD_CHECK_INTERVAL {
            return;
        }
        self.head_checked = Instant::now();
        let writers: Vec<ChainWriter> = self
            .chains
            .values_mut()
            .filter_map(|s| s.writer.take())
            .collect();
        let Ok((writers, results)) = tokio::task::spawn_blocking(move || {
            let results: Vec<_> = writers.iter().map(ChainWriter::check_head).collect();
            (writers, results)
        })
        .await
        else {
            // A panic in the check: the writers are gone and the next flush
            // reports it.
            return;
        };
        let mut ok = true;
        for (writer, result) in writers.into_iter().zip(results) {
            if let Err(e) = result {
                ok = false;
                tracing::error!(chain = %writer.chain(), error = %e,
                    "the stored chain disagrees with what this process wrote (run `custos verify`)");
            }
            if let Some(state) = self.chains.get_mut(writer.chain()) {
                state.writer = Some(writer);
            }
        }
        metrics().verify_result("head", ok);
    }
}

/// How often the owned chains' heads are checked.
const HEAD_CHECK_INTERVAL: Duration = Duration::from_secs(15);

fn note_checkpoints(written: usize) {
    metrics().note_checkpoints(written);
}

/// Opens `chains` as [`open_chain`] does, on as many threads as there are
/// cores (a takeover after a crash opens several partitions at once).
pub fn open_chains(
    store: &Store,
    chains: &[ChainId],
    setup: &DetectorSetup,
    sketcher: &Sketcher,
    continuity: Continuity,
) -> Vec<Result<Opened, LedgerError>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(chains.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Result<Opened, LedgerError>>>> =
        chains.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(chain) = chains.get(i) else { return };
                    let opened = open_chain(store, chain, setup, sketcher.clone(), continuity);
                    if let Ok(mut slot) = results[i].lock() {
                        *slot = Some(opened);
                    }
                }
            });
        }
    });
    results
        .into_iter()
        .map(|slot| {
            slot.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(LedgerError::Internal(
                    "a chain failed to open (thread panicked)".into(),
                ))
            })
        })
        .collect()
}

/// A chain opened for appending, with its state rebuilt from the ledger.
pub struct Opened {
    writer: ChainWriter,
    detectors: Detectors,
    sketcher: Sketcher,
    ids: IdWindow,
}

/// Opens a chain (recovering from a crash), restores its detectors from
/// its snapshot plus the stored events after it (without a usable
/// snapshot: from the newest `replay_max_events` stored events), and
/// refills its event-id window from the newest stored events. Blocking;
/// what a process does for each chain it is assigned.
///
/// The model normalizations (`sketcher`) come from the snapshot only:
/// stored events keep sketches, not the vectors they would learn from.
pub fn open_chain(
    store: &Store,
    chain: &ChainId,
    setup: &DetectorSetup,
    mut sketcher: Sketcher,
    continuity: Continuity,
) -> Result<Opened, LedgerError> {
    let started = Instant::now();
    let mut writer = store.chain_writer_waiting(chain, store.takeover_wait())?;
    let next_offset = writer.last_offset().map_or(0, |o| o + 1);
    if let Some(keep) = continuity.retention {
        apply_retention(&mut writer, keep)?;
    }

    let mut detectors = setup.build();
    let mut from = 0;
    match store.read_snapshot(chain) {
        Ok(None) => {}
        Ok(Some(snap)) if snap.snapshot.next_offset > next_offset => tracing::warn!(chain = %chain,
            snapshot = snap.snapshot.next_offset, ledger = next_offset,
            "the detector snapshot is ahead of the ledger; ignoring it and replaying"),
        Ok(Some(snap)) => match sketcher_state(snap.state())
            .and_then(|s| s.map_or(Ok(()), |s| sketcher.load(s.get().as_bytes())))
            .and_then(|()| detectors.load(snap.state()))
        {
            Ok(()) => from = snap.snapshot.next_offset,
            Err(e) => tracing::warn!(chain = %chain, error = %e,
                "the detector snapshot does not apply; replaying the ledger instead"),
        },
        Err(e) => tracing::warn!(chain = %chain, error = %e,
            "cannot read the detector snapshot; replaying the ledger instead"),
    }
    let newest = store.offset_of_newest_events(chain, continuity.replay_max_events)?;
    if newest > from {
        tracing::warn!(chain = %chain, from, newest,
            "the detector state is older than the replay limit (store.replay_max_events): \
             replaying the newest events only, so baselines are rebuilt from part of the history");
        detectors = setup.build();
        from = newest;
    }
    let mut bad = 0u64;
    let replayed = store.replay_events(chain, from, |_, record| {
        match Decoder::decode_stored(record) {
            Ok(event) => detectors.replay(&event),
            Err(_) => bad += 1,
        }
    })?;
    if bad > 0 {
        metrics().verify_result("replay", false);
        tracing::error!(chain = %chain, records = bad,
            "stored records that do not decode were skipped in the detector replay (run `custos verify`)");
    }

    let window_us = i64::try_from(continuity.dedup_window.as_micros()).unwrap_or(i64::MAX);
    let mut ids = IdWindow::new(window_us, continuity.dedup_max_ids);
    if window_us > 0 && continuity.dedup_max_ids > 0 {
        let (newest, recent) = store.recent_event_ids(chain, continuity.dedup_max_ids)?;
        ids.saw_time(newest.unwrap_or(i64::MIN));
        for stored in recent {
            ids.insert(&stored.id, stored.time_us, stored.offset);
        }
    }
    if writer.last_offset().is_some() {
        tracing::info!(chain = %chain, snapshot_offset = from, replayed,
            ids = ids.len(), millis = started.elapsed().as_millis() as u64,
            "chain state restored");
    }
    Ok(Opened {
        writer,
        detectors,
        sketcher,
        ids,
    })
}

/// Prunes the chain's flushes whose events are all older than `keep`
/// (nothing may be buffered).
fn apply_retention(writer: &mut ChainWriter, keep: Duration) -> Result<(), LedgerError> {
    let now = Utc::now();
    let keep_us = i64::try_from(keep.as_micros()).unwrap_or(i64::MAX);
    let before = now.timestamp_micros().saturating_sub(keep_us);
    let stats = writer.prune(before, now)?;
    if stats.segments > 0 {
        tracing::info!(chain = %writer.chain(), events = stats.events, rejects = stats.rejects,
            segments = stats.segments, "pruned segments past the retention period");
        let m = metrics();
        m.ledger_pruned_rows
            .with_label_values(&["events"])
            .inc_by(stats.events);
        m.ledger_pruned_rows
            .with_label_values(&["rejects"])
            .inc_by(stats.rejects);
    }
    Ok(())
}

/// A chain's saved state, its detectors' and its model normalizations,
/// copied at a flush (a few milliseconds on the loop) and encoded to its
/// JSON text later, elsewhere.
struct ChainSnapshot {
    detectors: crate::detect::SavedDetectors,
    sketcher: Sketcher,
}

impl ChainSnapshot {
    fn of(detectors: &Detectors, sketcher: &Sketcher) -> Self {
        ChainSnapshot {
            detectors: detectors.snapshot(),
            sketcher: sketcher.clone(),
        }
    }

    /// Writes, as the `state` member of `w`, the text the originals would
    /// have saved at the copy.
    fn write(&self, w: StateWriter) -> StateWriter {
        let sketcher = self.sketcher.save();
        w.object("state", |s| {
            self.detectors.write(s, &[("sketcher", &sketcher)])
        })
    }

    /// The state's text alone (what [`Self::write`] writes as `state`).
    #[cfg(test)]
    fn encode(&self) -> Vec<u8> {
        self.detectors
            .encode(&[("sketcher", &self.sketcher.save())])
    }

    /// The state's size the last time it was written.
    fn size_hint(&self) -> usize {
        self.detectors.size_hint()
    }
}

/// Where a chain stood when a snapshot's flush committed.
struct SnapshotAt {
    chain: ChainId,
    next_offset: i64,
    events: u64,
}

impl SnapshotAt {
    /// `None` for a chain that holds nothing yet.
    fn of(writer: &ChainWriter) -> Option<Self> {
        Some(SnapshotAt {
            chain: writer.chain().clone(),
            next_offset: writer.last_offset()? + 1,
            events: writer.tree_head(Table::Events).0,
        })
    }
}

/// A snapshot being encoded and written on the snapshot thread (`None`:
/// it panicked).
type SnapshotTask = tokio::task::JoinHandle<Option<Result<(), LedgerError>>>;

/// Waits for a snapshot written on the snapshot thread.
async fn finished_snapshot(task: SnapshotTask) -> Result<(), PipelineError> {
    match task.await {
        Ok(Some(r)) => Ok(r?),
        Ok(None) => Err(PipelineError::Internal(
            "writing a snapshot panicked".into(),
        )),
        Err(e) => Err(PipelineError::Internal(e.to_string())),
    }
}

/// The sketcher's member of a chain's saved state (the rest is the
/// detectors'), as its text.
fn sketcher_state(state: &[u8]) -> Result<Option<&serde_json::value::RawValue>, String> {
    #[derive(serde::Deserialize)]
    struct Saved<'a> {
        #[serde(borrow)]
        sketcher: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Saved<'_>>(state)
        .map(|s| s.sketcher)
        .map_err(|e| format!("the saved state does not parse: {e}"))
}

/// Writes a chain's detector state as of the durable end `at` (taken
/// right after a successful flush).
fn write_snapshot(
    store: &Store,
    at: &SnapshotAt,
    state: &ChainSnapshot,
) -> Result<(), LedgerError> {
    store.write_snapshot_with(
        &at.chain,
        &Snapshot {
            v: SNAPSHOT_VERSION,
            next_offset: at.next_offset,
            events: at.events,
            written: Utc::now(),
        },
        state.size_hint(),
        |w| state.write(w),
    )?;
    failpoint::hit("snapshot.written");
    Ok(())
}

#[cfg(test)]
mod tests;
