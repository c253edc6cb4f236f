//! The Kafka source: one consumer-group member.
//!
//! A dedicated thread polls an rdkafka `BaseConsumer`. Messages, and the
//! rebalance callbacks librdkafka runs inside `poll`, become
//! [`SourceEvent`]s on one bounded channel, so the pipeline sees them in
//! the order they happened. On an assignment the callback blocks until the
//! pipeline has opened the chains and says where each one's stored history
//! ends; the consumer starts there (the ledger, not the committed offset,
//! is the truth: nothing it holds is read twice, nothing it lacks is
//! skipped). On a revoke the callback blocks until the
//! pipeline has flushed and committed the revoked partitions, so the next
//! owner starts exactly where this one stopped. Offsets are committed only
//! through [`KafkaCommitter`], which the pipeline calls after a durable
//! flush; auto-commit and auto offset store are off.
//!
//! Rejected messages can also be copied to a dead-letter topic
//! ([`DeadLetters`]), with the reason and the original coordinates in
//! headers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::sync::{mpsc, oneshot};

use super::{Committer, SourceEvent, SourceMessage};
use crate::event::Reject;
use crate::ledger::ChainId;
use crate::metrics::metrics;

#[derive(Debug, thiserror::Error)]
pub enum KafkaSourceError {
    /// Never carries a property's value: it may be a password.
    #[error("librdkafka refused property `{key}`: {reason}")]
    Property { key: String, reason: String },
    #[error("kafka client: {0}")]
    Client(rdkafka::error::KafkaError),
    #[error("cannot start the consumer thread: {0}")]
    Thread(std::io::Error),
}

impl From<rdkafka::error::KafkaError> for KafkaSourceError {
    fn from(e: rdkafka::error::KafkaError) -> Self {
        use rdkafka::error::KafkaError;
        match e {
            // Its Display repeats the value, which may be a secret.
            KafkaError::ClientConfig(code, _, key, _) => KafkaSourceError::Property {
                key,
                reason: format!("{code:?}"),
            },
            other => KafkaSourceError::Client(other),
        }
    }
}

/// librdkafka properties custos sets itself: the commit protocol depends on
/// them, so configuration may not override them.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

/// What the consumer needs to know.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    pub group_id: String,
    pub topics: Vec<String>,
    pub channel_capacity: usize,
    /// Extra librdkafka properties (override the defaults below).
    pub client: BTreeMap<String, String>,
}

struct Context {
    tx: mpsc::Sender<SourceEvent>,
    /// Messages polled but not yet sent. Kept here, not in the poll loop,
    /// so a revoke callback (which runs inside `poll`) can send them ahead
    /// of the `Revoked` event and the pipeline sees everything in order.
    pending: Mutex<Vec<SourceMessage>>,
    /// Set when a rebalance could not be applied: the poll loop stops.
    failed: Mutex<Option<String>>,
}

impl Context {
    /// Sends the pending batch; false when the pipeline has gone.
    fn send_pending(&self) -> bool {
        let batch = std::mem::take(&mut *self.pending.lock().expect("not poisoned"));
        if batch.is_empty() {
            return true;
        }
        let m = metrics();
        m.messages_consumed
            .with_label_values(&["kafka"])
            .inc_by(batch.len() as u64);
        // One counter update per run of messages from one partition.
        for run in batch.chunk_by(|a, b| a.chain == b.chain) {
            m.partition_messages
                .with_label_values(&[&run[0].chain.stream, &run[0].chain.partition.to_string()])
                .inc_by(run.len() as u64);
        }
        self.tx.blocking_send(SourceEvent::Messages(batch)).is_ok()
    }
}

impl ClientContext for Context {
    fn stats(&self, stats: Statistics) {
        let lag = &metrics().consumer_lag;
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if *p >= 0 && part.consumer_lag >= 0 {
                    lag.with_label_values(&[topic.as_str(), &p.to_string()])
                        .set(part.consumer_lag);
                }
            }
        }
    }
}

fn chains(tpl: &TopicPartitionList) -> Vec<ChainId> {
    tpl.elements()
        .iter()
        .map(|e| ChainId {
            stream: e.topic().to_owned(),
            partition: e.partition(),
        })
        .collect()
}

impl Context {
    /// Hands the assigned chains to the pipeline and sets each one's start
    /// to where its stored history ends.
    fn on_assign(&self, tpl: &mut TopicPartitionList) {
        let assigned = chains(tpl);
        tracing::info!(partitions = assigned.len(), "partitions assigned");
        let (reply, wait) = oneshot::channel();
        if self
            .tx
            .blocking_send(SourceEvent::Assigned(assigned, Some(reply)))
            .is_err()
        {
            return;
        }
        // Returns when the pipeline has opened the chains, or has gone.
        let Ok(positions) = wait.blocking_recv() else {
            return;
        };
        for (chain, next) in positions {
            if let Err(e) =
                tpl.set_partition_offset(&chain.stream, chain.partition, Offset::Offset(next))
            {
                tracing::error!(error = %e, chain = %chain, "cannot set the start offset");
            }
        }
    }

    fn on_revoke(&self, tpl: &TopicPartitionList) {
        let (done, wait) = oneshot::channel();
        let revoked = chains(tpl);
        tracing::info!(partitions = revoked.len(), "partitions revoked");
        if self.send_pending()
            && self
                .tx
                .blocking_send(SourceEvent::Revoked(revoked, done))
                .is_ok()
        {
            // Returns when the pipeline has committed, or has gone.
            let _ = wait.blocking_recv();
        }
    }
}

impl ConsumerContext for Context {
    /// Replaces rdkafka's default handling to set start offsets before
    /// the assignment takes effect (a seek after it would race the first
    /// fetch). Both rebalance protocols are served.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(tpl);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; dropping the assignment");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            // The pipeline holds chains nobody would read: stop instead of
            // stalling those partitions silently.
            tracing::error!(error = %e, "cannot apply the rebalance; stopping");
            if let Ok(mut failed) = self.failed.lock() {
                *failed = Some(format!("cannot apply the rebalance: {e}"));
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        match result {
            Ok(()) => metrics().offsets_committed.inc(),
            Err(e) => tracing::warn!(error = %e, "offset commit failed; a later commit covers it"),
        }
    }
}

/// A running consumer: its event stream, its committer and its stop switch.
pub struct KafkaSource {
    pub events: mpsc::Receiver<SourceEvent>,
    pub committer: KafkaCommitter,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<String>>>,
}

impl KafkaSource {
    pub fn start(settings: &KafkaSettings) -> Result<KafkaSource, KafkaSourceError> {
        // The channel carries batches of up to BATCH messages.
        let (tx, events) = mpsc::channel(settings.channel_capacity.div_ceil(BATCH).max(2));
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &settings.brokers)
            .set("group.id", &settings.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("statistics.interval.ms", "5000")
            .set("fetch.wait.max.ms", "50")
            .set("queued.min.messages", "20000")
            // librdkafka postpones a partition's next fetch by this much
            // once its local queue is past `queued.min.messages`; at the
            // default (1 s) a partition read faster than it is fetched
            // waits a whole second each time, which capped each partition
            // near 12,000 events/s and put a second into the latency of
            // every backlog. See docs/performance.md.
            .set("fetch.queue.backoff.ms", "10")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        for (k, v) in &settings.client {
            config.set(k, v);
        }
        let consumer: BaseConsumer<Context> = config.create_with_context(Context {
            tx: tx.clone(),
            pending: Mutex::new(Vec::with_capacity(BATCH)),
            failed: Mutex::new(None),
        })?;
        let topics: Vec<&str> = settings.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        let consumer = Arc::new(consumer);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (consumer, stop) = (consumer.clone(), stop.clone());
            std::thread::Builder::new()
                .name("custos-kafka-poll".into())
                .spawn(move || poll_loop(consumer, tx, stop))
                .map_err(KafkaSourceError::Thread)?
        };
        Ok(KafkaSource {
            events,
            committer: KafkaCommitter { consumer },
            stop,
            thread: Some(thread),
        })
    }

    /// Asks the poll thread to leave the group. The pipeline must keep
    /// reading `events` until `End`: leaving revokes the partitions, which
    /// waits for the pipeline's commit.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.stop.clone())
    }

    /// Waits for the poll thread after `End` was received; `Err` when the
    /// consumer stopped on a fatal error (e.g. fenced by another member
    /// with the same `group.instance.id`) rather than because it was asked
    /// to: the process should then exit non-zero and be restarted.
    pub fn join(mut self) -> Result<(), String> {
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Some(fatal))) => Err(fatal),
            Some(Err(_)) => Err("the consumer thread panicked".into()),
            _ => Ok(()),
        }
    }
}

#[derive(Clone)]
pub struct StopHandle(Arc<AtomicBool>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

const BATCH: usize = 2048;
/// How long the first message of a batch waits for the rest at most: at
/// 50,000 messages/s a full batch takes 41 ms to arrive, which detection
/// latency would otherwise carry.
const BATCH_AGE: Duration = Duration::from_millis(5);
/// How long leaving the group may take at shutdown.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(30);

fn poll_loop(
    consumer: Arc<BaseConsumer<Context>>,
    tx: mpsc::Sender<SourceEvent>,
    stop: Arc<AtomicBool>,
) -> Option<String> {
    let ctx = consumer.context().clone();
    let mut idle = true;
    let mut fatal = None;
    // When the first message of the pending batch was polled.
    let mut since: Option<Instant> = None;
    // Stop when asked, or when the pipeline has gone (it failed).
    while !stop.load(Ordering::SeqCst) && !tx.is_closed() {
        if let Some(e) = ctx.failed.lock().ok().and_then(|mut f| f.take()) {
            fatal = Some(e);
            break;
        }
        // Block briefly only when nothing waits to be sent.
        let timeout = if idle {
            Duration::from_millis(100)
        } else {
            Duration::ZERO
        };
        let full = match consumer.poll(timeout) {
            Some(Ok(m)) => {
                let mut pending = ctx.pending.lock().expect("not poisoned");
                pending.push(SourceMessage {
                    chain: ChainId {
                        stream: m.topic().to_owned(),
                        partition: m.partition(),
                    },
                    offset: Some(m.offset()),
                    file: None,
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().unwrap_or_default().to_vec(),
                    arrived: Instant::now(),
                });
                idle = false;
                // (The rebalance callbacks may have sent the batch meanwhile.)
                if pending.len() == 1 {
                    since = Some(Instant::now());
                }
                let first = since.unwrap_or_else(Instant::now);
                pending.len() >= BATCH || first.elapsed() >= BATCH_AGE
            }
            Some(Err(e)) => {
                if matches!(e, rdkafka::error::KafkaError::MessageConsumptionFatal(_)) {
                    tracing::error!(error = %e, "fatal kafka consumer error; stopping");
                    fatal = Some(e.to_string());
                    break;
                }
                tracing::warn!(error = %e, "kafka consumer error");
                true
            }
            None => true,
        };
        if full {
            if !ctx.send_pending() {
                return fatal;
            }
            idle = true;
            since = None;
        }
    }
    // Messages polled but not yet handed over are dropped here: they are not
    // committed, so the next owner of their partitions reads them again.
    ctx.pending.lock().expect("not poisoned").clear();
    // Leave the group explicitly: this runs the revoke callback, which waits
    // for the pipeline's final commit.
    if let Err(e) = consumer.close_queue() {
        tracing::warn!(error = %e, "cannot close the consumer queue");
        // Dropping a consumer that cannot close may block forever.
        std::mem::forget(consumer.clone());
    } else {
        let deadline = std::time::Instant::now() + CLOSE_TIMEOUT;
        while !consumer.closed() && std::time::Instant::now() < deadline {
            consumer.poll(Duration::from_millis(100));
        }
        if !consumer.closed() {
            // The broker does not answer. rdkafka's `Drop` would poll until
            // the close completes, possibly forever; leak the handle instead
            // (the process is stopping). Nothing uncommitted is lost: the
            // next owner re-reads it.
            tracing::warn!("the consumer did not leave the group within {CLOSE_TIMEOUT:?}");
            std::mem::forget(consumer.clone());
        }
    }
    let _ = tx.blocking_send(SourceEvent::End);
    fatal
}

/// Commits offsets of a [`KafkaSource`]'s consumer.
#[derive(Clone)]
pub struct KafkaCommitter {
    consumer: Arc<BaseConsumer<Context>>,
}

impl Committer for KafkaCommitter {
    fn commit(&self, chain: &ChainId, next_offset: i64, sync: bool) {
        let mut tpl = TopicPartitionList::new();
        if let Err(e) =
            tpl.add_partition_offset(&chain.stream, chain.partition, Offset::Offset(next_offset))
        {
            tracing::error!(error = %e, "cannot build the commit list");
            return;
        }
        let mode = if sync {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        match self.consumer.commit(&tpl, mode) {
            Ok(()) if sync => metrics().offsets_committed.inc(),
            Ok(()) => {}
            Err(e) => {
                tracing::warn!(error = %e, topic = %chain.stream, partition = chain.partition,
                "offset commit failed; the ledger skips what it already holds on redelivery")
            }
        }
    }
}

/// How long a flush waits for dead-letter acknowledgements.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Copies rejected messages to a dead-letter topic.
pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
    pending: Vec<DeliveryFuture>,
}

impl DeadLetters {
    pub fn new(
        brokers: &str,
        topic: &str,
        client: &BTreeMap<String, String>,
    ) -> Result<Self, KafkaSourceError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("enable.idempotence", "true");
        for (k, v) in client.iter().filter(|(k, _)| !k.starts_with("group.")) {
            config.set(k, v);
        }
        Ok(DeadLetters {
            producer: config.create()?,
            topic: topic.to_owned(),
            pending: Vec::new(),
        })
    }

    /// Queues a copy of `msg` with the reason in headers.
    pub fn send(&mut self, msg: &SourceMessage, reject: &Reject) {
        let offset = msg.offset.unwrap_or(-1).to_string();
        let partition = msg.chain.partition.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "custos.reason",
                value: Some(reject.reason.as_str()),
            })
            .insert(Header {
                key: "custos.detail",
                value: Some(reject.detail.as_str()),
            })
            .insert(Header {
                key: "custos.topic",
                value: Some(msg.chain.stream.as_str()),
            })
            .insert(Header {
                key: "custos.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "custos.offset",
                value: Some(offset.as_str()),
            });
        let mut record = FutureRecord::to(&self.topic)
            .payload(&msg.payload)
            .headers(headers);
        if let Some(key) = &msg.key {
            record = record.key(key);
        }
        match self.producer.send_result(record) {
            Ok(delivery) => self.pending.push(delivery),
            Err((e, _)) => {
                metrics().dead_letter_failures.inc();
                tracing::error!(error = %e, "cannot queue a dead letter");
            }
        }
    }

    /// Waits, at most [`SETTLE_TIMEOUT`] in all, until every queued copy is
    /// acknowledged. A copy that fails or is still pending is counted in
    /// `custos_dead_letter_failures_total` and logged; the original stays in
    /// the ledger's rejects table either way, so a broken dead-letter topic
    /// never holds up the ledger or the commits.
    pub async fn settle(&mut self) {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        for delivery in self.pending.drain(..) {
            match tokio::time::timeout_at(deadline, delivery).await {
                Ok(Ok(Ok(_))) => metrics().dead_letters_produced.inc(),
                Ok(Ok(Err((e, _)))) => {
                    metrics().dead_letter_failures.inc();
                    tracing::error!(error = %e, "dead letter not delivered");
                }
                Ok(Err(_)) | Err(_) => {
                    metrics().dead_letter_failures.inc();
                    tracing::error!("dead letter not acknowledged in time");
                }
            }
        }
    }
}
