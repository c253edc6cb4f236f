//! The embedded demo: librdkafka's in-process mock cluster and a producer
//! that feeds it the synthetic hospital workload.
//!
//! The mock cluster speaks the Kafka protocol on a loopback port, so the
//! demo runs the same consumer-group source as production, and a user can
//! send their own events to the printed bootstrap address with kcat. It is
//! for demos and fast tests only: its throughput says nothing about a real
//! broker's.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};

use super::synth::{Workload, WorkloadConfig};

/// A running mock cluster. Not `Send`: keep it on the task that made it,
/// and drop it after every client attached to it.
pub struct DemoCluster {
    _cluster: MockCluster<'static, DefaultProducerContext>,
    bootstrap: String,
}

impl DemoCluster {
    /// One mock broker with `topics`, each with `partitions` partitions.
    pub fn start(topics: &[&str], partitions: i32) -> rdkafka::error::KafkaResult<DemoCluster> {
        let cluster = MockCluster::new(1)?;
        for t in topics {
            cluster.create_topic(t, partitions, 1)?;
        }
        let bootstrap = cluster.bootstrap_servers();
        Ok(DemoCluster {
            _cluster: cluster,
            bootstrap,
        })
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

/// Settings of the workload producer.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub bootstrap: String,
    pub topic: String,
    /// Messages per second once live.
    pub rate: u64,
    /// Seconds of history produced first, as fast as possible, with event
    /// times in the past (so baselines exist when the live part starts).
    pub history_secs: u64,
    pub workload: WorkloadConfig,
}

/// The producer thread; stops when asked or when its stop flag is set.
pub struct WorkloadProducer {
    stop: Arc<AtomicBool>,
    pub produced: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl WorkloadProducer {
    pub fn start(settings: ProducerSettings) -> rdkafka::error::KafkaResult<WorkloadProducer> {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.bootstrap)
            // Large batches: the mock broker serves about one produced batch
            // per partition per fetch and scans its log linearly, so many
            // small batches starve the consumer and slow the broker down.
            .set("linger.ms", "100")
            .set("batch.num.messages", "10000")
            .set("batch.size", "8000000")
            .set("queue.buffering.max.messages", "1000000")
            .create()?;
        let stop = Arc::new(AtomicBool::new(false));
        let produced = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, produced) = (stop.clone(), produced.clone());
            std::thread::Builder::new()
                .name("custos-demo-producer".into())
                .spawn(move || produce(producer, settings, &stop, &produced))
                .expect("spawn the demo producer")
        };
        Ok(WorkloadProducer {
            stop,
            produced,
            thread: Some(thread),
        })
    }

    /// Stops producing and waits until what was produced is delivered.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends one message, waiting while the queue is full; gives up (false)
/// when told to stop: the mock broker slows down as its log grows, and a
/// stop must not wait for it.
fn send(
    producer: &BaseProducer,
    stop: &AtomicBool,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> bool {
    let mut record = BaseRecord::to(topic).key(key).payload(payload);
    loop {
        match producer.send(record) {
            Ok(()) => return true,
            Err((e, r)) => {
                if stop.load(Ordering::Relaxed) {
                    return false;
                }
                // Queue full: serve delivery reports, then try again.
                tracing::trace!(error = %e, "demo producer queue full");
                producer.poll(Duration::from_millis(10));
                record = r;
            }
        }
    }
}

fn produce(producer: BaseProducer, s: ProducerSettings, stop: &AtomicBool, produced: &AtomicU64) {
    let mut workload = Workload::new(s.workload.clone());
    // History: event times from `history_secs` ago up to now, at the live rate.
    let start = Utc::now() - chrono::Duration::seconds(s.history_secs as i64);
    let history = s.history_secs * s.rate;
    for i in 0..history {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let t = start + chrono::Duration::microseconds((i * 1_000_000 / s.rate.max(1)) as i64);
        let m = workload.next_message(t);
        if send(&producer, stop, &s.topic, &m.key, &m.payload) {
            produced.fetch_add(1, Ordering::Relaxed);
        }
        producer.poll(Duration::ZERO);
    }
    // Live: `rate` per second, in 10 ms steps, with event time = now.
    let began = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let due = (began.elapsed().as_secs_f64() * s.rate as f64) as u64;
        while sent < due {
            let m = workload.next_message(Utc::now());
            sent += 1;
            if send(&producer, stop, &s.topic, &m.key, &m.payload) {
                produced.fetch_add(1, Ordering::Relaxed);
            }
        }
        producer.poll(Duration::from_millis(10));
    }
    let _ = producer.flush(Duration::from_secs(10));
}
