//! The broker's share of detection latency: how long an event takes from
//! the producer to a bare consumer on this machine, with no custos in
//! between, at a fixed rate. `alert_latency` measures producer -> incident
//! in the sink; this is the part of it that Kafka alone takes.
//!
//! The producer is configured as `alert_latency`'s (linger 1 ms), the
//! consumer as custos's (`fetch.wait.max.ms` 50, `queued.min.messages`
//! 20,000). Each message carries its send time; the consumer records
//! receive time minus send time.
//!
//! ```text
//! cargo build --release --example kafka_latency
//! target/release/examples/kafka_latency --brokers 127.0.0.1:9092 --rate 50000 --secs 20
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseProducer;

#[path = "common/paced.rs"]
mod paced;

fn micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn main() {
    let (mut brokers, mut rate, mut secs, mut partitions) =
        ("127.0.0.1:9092".to_owned(), 50_000u64, 20u64, 6i32);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--brokers" => brokers = value,
            "--rate" => rate = value.parse().expect("--rate N"),
            "--secs" => secs = value.parse().expect("--secs N"),
            "--partitions" => partitions = value.parse().expect("--partitions N"),
            other => panic!("unknown argument {other}"),
        }
    }
    let topic = format!("bench-kafka-latency-{}", micros_now());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for r in rt
        .block_on(admin.create_topics(
            &[NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        ))
        .unwrap()
    {
        r.unwrap();
    }

    let total = rate * secs;
    let consumer = {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        std::thread::spawn(move || {
            let c: BaseConsumer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("group.id", format!("{topic}-group"))
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("fetch.wait.max.ms", "50")
                .set("queued.min.messages", "20000")
                .create()
                .unwrap();
            c.subscribe(&[&topic]).unwrap();
            let mut ms = Vec::with_capacity(total as usize);
            let deadline = Instant::now() + Duration::from_secs(secs + 60);
            while (ms.len() as u64) < total && Instant::now() < deadline {
                if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
                    let sent: i64 = m
                        .payload()
                        .and_then(|p| std::str::from_utf8(&p[..16.min(p.len())]).ok())
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                    ms.push((micros_now() - sent) as f64 / 1000.0);
                }
            }
            ms
        })
    };
    // Let the consumer join its group before the load starts.
    std::thread::sleep(Duration::from_secs(5));

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let filler = "x".repeat(200);
    let offered = paced::produce(&producer, &topic, rate, total, |n| {
        (
            format!("emp-{:05}", n % 20_000),
            format!("{:016}{filler}", micros_now()),
        )
    });
    let mut ms = consumer.join().unwrap();
    let _ = rt.block_on(admin.delete_topics(&[&topic], &AdminOptions::new()));
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "kafka alone: {}/{} messages at {offered:.0} messages/s; producer -> consumer p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms",
        ms.len(),
        total,
        q(0.5),
        q(0.99),
        q(0.999),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}
