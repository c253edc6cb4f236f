//! Sources: where messages come from, turned into one ordered stream of
//! [`SourceEvent`]s for the pipeline.
//!
//! - [`kafka`]: a consumer-group member (rdkafka). Its poll thread turns
//!   messages and rebalance callbacks into events on one channel, in order;
//!   a revoke waits until the pipeline has made the revoked partitions
//!   durable and committed them.
//! - [`file`]: JSON lines from files or stdin, for backfills and replays.
//! - [`demo`]: librdkafka's in-process mock cluster fed by [`synth`], the
//!   synthetic hospital workload.
//! - [`hospital`]: a labelled multi-day hospital workload with reference
//!   tables and injected misuse, written to files by `custos gen` for
//!   evaluating detectors.
//!
//! A source never decodes or stores anything: it hands bytes and their
//! coordinates to the pipeline and commits only what the pipeline says is
//! durable.

pub mod demo;
pub mod file;
pub mod hospital;
pub mod kafka;
pub mod synth;

use tokio::sync::oneshot;

use crate::ledger::ChainId;

/// One message as read, before decoding.
#[derive(Debug, Clone)]
pub struct SourceMessage {
    pub chain: ChainId,
    /// The source's own offset (Kafka); `None` for sources without offsets
    /// (files, stdin), for which the pipeline numbers messages on.
    pub offset: Option<i64>,
    /// File name and line number, for file input.
    pub file: Option<(String, u64)>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// When custos received it (polled from Kafka, read from the file):
    /// where its detection latency starts.
    pub arrived: std::time::Instant,
}

/// What a source tells the pipeline, in order.
#[derive(Debug)]
pub enum SourceEvent {
    /// These chains now belong to this process. A source that can seek
    /// waits for the reply: where each chain's stored history ends (the
    /// next offset to read), so reading resumes from the ledger itself,
    /// whatever the committed offsets say.
    Assigned(Vec<ChainId>, Option<oneshot::Sender<Vec<(ChainId, i64)>>>),
    /// A batch of messages, in offset order per chain.
    Messages(Vec<SourceMessage>),
    /// These chains are being taken away: make them durable, commit, then
    /// answer on `done`.
    Revoked(Vec<ChainId>, oneshot::Sender<()>),
    /// The source has nothing more (end of files, or shut down).
    End,
}

/// Commits source positions once the pipeline has made them durable.
pub trait Committer: Send + Sync {
    /// Everything before `next_offset` in `chain` is durable. `sync` asks to
    /// wait until the commit is acknowledged (before a revoke completes).
    fn commit(&self, chain: &ChainId, next_offset: i64, sync: bool);
}

/// For sources whose position lives in the ledger alone (files).
pub struct NoCommit;

impl Committer for NoCommit {
    fn commit(&self, _: &ChainId, _: i64, _: bool) {}
}
