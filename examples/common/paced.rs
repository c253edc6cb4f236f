//! Producing at a fixed rate, for the latency benchmarks
//! (`alert_latency`, `kafka_latency`): `rate / 1000` messages each
//! millisecond, waiting out librdkafka's full queue rather than failing.

use std::time::{Duration, Instant};

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Sends `total` messages to `topic` at `rate` a second; `message(n)`
/// makes the n-th (key, payload) just before it is sent. Returns the rate
/// offered, once every message is acknowledged.
pub fn produce(
    producer: &BaseProducer,
    topic: &str,
    rate: u64,
    total: u64,
    mut message: impl FnMut(u64) -> (String, String),
) -> f64 {
    let started = Instant::now();
    let per_tick = (rate / 1000).max(1);
    let mut next = started;
    let mut n = 0u64;
    while n < total {
        for _ in 0..per_tick.min(total - n) {
            let (key, payload) = message(n);
            while let Err((e, _)) = producer.send(BaseRecord::to(topic).key(&key).payload(&payload))
            {
                assert!(
                    matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ),
                    "produce: {e}"
                );
                producer.poll(Duration::from_millis(1));
            }
            n += 1;
        }
        producer.poll(Duration::ZERO);
        next += Duration::from_millis(1);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    total as f64 / started.elapsed().as_secs_f64()
}
