//! End-to-end throughput against the raw Kafka consume floor, through a
//! real broker.
//!
//! ```text
//! cargo build --release --bin custos --example e2e_bench
//! target/release/examples/e2e_bench --brokers 127.0.0.1:9092 --events 5000000
//! target/release/examples/e2e_bench --events 1000000,2000000,5000000 --repeat 3
//! ```
//!
//! For each size N it pre-loads a topic (`bench-e2e-…`, 6 partitions,
//! keyed by actor, lz4 batches as a producer would send them) with N events
//! of the synthetic hospital workload (`custos synth`'s generator: 80 %
//! access, 15 % inference with 30 features or a fingerprint, 5 % lineage,
//! 0.2 % malformed, injected anomalies), then measures on that topic, in
//! the same run:
//!
//! - the **floor**: a minimal rdkafka consumer (a child process of this
//!   program) that assigns itself every partition and only reads and
//!   counts the messages;
//! - **custos** end to end: `custos run` as a child process with every
//!   detector type on (the default set) and the SQL detectors, fsync on,
//!   checkpoints signed, until the consumer group's committed offsets reach
//!   the end of every partition (so everything is durable in the ledger and
//!   committed).
//!
//! Both are timed from the first message consumed (custos's group join and
//! chain opening are not counted; the floor's assign takes no join) to the
//! last message counted (floor) or the last offset committed (custos). CPU
//! seconds are the process's user + system time over the same span (from
//! `/proc`); peak RSS is the process's `VmHWM` when the last offset is
//! committed, and again once it has stopped (the stop writes every
//! chain's final snapshot, read until the process exits); bytes on disk are every
//! file of the store (segments, tree strata, manifests, checkpoints,
//! snapshots, the incidents chain and the outbox) over N.
//!
//! Event times advance by `--event-rate` events per second (default
//! 50,000, a large network's peak): a loaded topic is that many seconds of
//! peak traffic, and detectors that run on event time (the SQL detectors,
//! every 30 s of it) run as often as they would live. (At `custos synth`'s
//! 2,000 events/s, a backlog read at 300,000 events/s would run them 150
//! times as often as live traffic does.)
//!
//! `e2e_bench cleanup [BROKERS]` deletes the `bench-e2e-*` and
//! `bench-latency-*` topics interrupted runs left behind.
//!
//! `--actors N` sets the number of clinicians in the workload (default
//! 200), for the detector-state memory figure at many distinct actors.
//! `--topic T` reuses a loaded topic (`--keep` leaves the topic in place
//! at the end; topics are deleted otherwise). `--custos BIN` measures
//! another build; `--set key=value` passes settings to it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use custos::source::synth::{Workload, WorkloadConfig};

struct Args {
    brokers: String,
    sizes: Vec<u64>,
    partitions: i32,
    actors: usize,
    repeat: usize,
    topic: Option<String>,
    keep: bool,
    set: Vec<String>,
    custos: Option<PathBuf>,
    event_rate: u64,
}

fn args() -> Args {
    let mut a = Args {
        brokers: "127.0.0.1:9092".into(),
        sizes: vec![5_000_000],
        partitions: 6,
        actors: 200,
        repeat: 1,
        topic: None,
        keep: false,
        set: Vec::new(),
        custos: None,
        event_rate: 50_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--brokers" => a.brokers = value(),
            "--events" => {
                a.sizes = value()
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .replace('_', "")
                            .parse()
                            .expect("--events N[,N...]")
                    })
                    .collect()
            }
            "--partitions" => a.partitions = value().parse().expect("--partitions N"),
            "--event-rate" => a.event_rate = value().parse().expect("--event-rate N"),
            "--actors" => a.actors = value().parse().expect("--actors N"),
            "--repeat" => a.repeat = value().parse().expect("--repeat N"),
            "--topic" => a.topic = Some(value()),
            "--keep" => a.keep = true,
            // Extra custos settings, `key.path=value` (as `custos --set`).
            "--set" => a.set.push(value()),
            // Another custos binary (to compare builds).
            "--custos" => a.custos = Some(value().into()),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The custos binary: `--custos`, or the one next to this example
/// (`target/release/custos`).
fn custos_bin(a: &Args) -> PathBuf {
    if let Some(bin) = &a.custos {
        return bin.clone();
    }
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap();
    let bin = release.join("custos");
    assert!(
        bin.exists(),
        "build it first: cargo build --release --bin custos"
    );
    bin
}

/// User + system CPU seconds of a process, from `/proc/PID/stat`.
fn cpu_secs(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// Peak resident set size of a process in bytes (`VmHWM`).
fn peak_rss(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn dir_bytes(dir: &Path) -> (u64, u64) {
    let (mut all, mut parquet) = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            let (a, p) = dir_bytes(&e.path());
            all += a;
            parquet += p;
        } else {
            all += meta.len();
            if e.path().extension().is_some_and(|x| x == "parquet") {
                parquet += meta.len();
            }
        }
    }
    (all, parquet)
}

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap()
}

/// Creates `topic` and loads it with `n` synthetic events keyed by actor.
fn load(a: &Args, topic: &str, n: u64) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    for r in rt
        .block_on(admin(&a.brokers).create_topics(
            &[NewTopic::new(
                topic,
                a.partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        ))
        .unwrap()
    {
        r.unwrap();
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("compression.type", "lz4")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()
        .unwrap();
    let mut workload = Workload::new(WorkloadConfig {
        seed: 11,
        clinicians: a.actors,
        ..WorkloadConfig::default()
    });
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T06:00:00Z")
        .unwrap()
        .to_utc();
    let began = Instant::now();
    let (mut bytes, mut skipped) = (0u64, 0u64);
    let mut i = 0;
    while i < n {
        let t = start + chrono::Duration::microseconds((i * 1_000_000 / a.event_rate) as i64);
        let m = workload.next_message(t);
        if m.payload.len() > MAX_MESSAGE {
            // The rare oversize message of the workload: over the broker's
            // limit, it never reaches a consumer.
            skipped += 1;
            continue;
        }
        i += 1;
        bytes += m.payload.len() as u64;
        let mut record = BaseRecord::to(topic).key(&m.key).payload(&m.payload);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((e, r)) => {
                    assert!(
                        matches!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "produce: {e}"
                    );
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    println!(
        "loaded {topic}: {n} events ({:.0} bytes on average, {skipped} over the broker's limit skipped), \
         {} partitions, {} clinicians, {} events/s of event time, in {:.1} s",
        bytes as f64 / n as f64,
        a.partitions,
        a.actors,
        a.event_rate,
        began.elapsed().as_secs_f64()
    );
}

/// Messages larger than this are not produced (the broker's default
/// limit is 1 MiB per batch).
const MAX_MESSAGE: usize = 900_000;

/// Deletes every topic whose name starts with `bench-e2e-` or
/// `bench-latency-` (left by interrupted runs).
fn cleanup(brokers: &str) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let md = c.fetch_metadata(None, Duration::from_secs(10)).unwrap();
    let names: Vec<String> = md
        .topics()
        .iter()
        .map(|t| t.name().to_owned())
        .filter(|n| n.starts_with("bench-e2e-") || n.starts_with("bench-latency-"))
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    if !refs.is_empty() {
        delete_topics(brokers, &refs);
    }
    println!("deleted {} topic(s): {}", refs.len(), refs.join(" "));
}

fn delete_topics(brokers: &str, topics: &[&str]) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _ = rt.block_on(admin(brokers).delete_topics(topics, &AdminOptions::new()));
}

/// The end of every partition of `topic`: (partition, high watermark).
fn ends(brokers: &str, topic: &str, partitions: i32) -> Vec<(i32, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            let (_, high) = c
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            (p, high)
        })
        .collect()
}

/// What one measured process did.
#[derive(Debug, Clone, Copy)]
struct Measure {
    secs: f64,
    cpu: f64,
    rss: u64,
}

/// The floor, run as a child process: reads `--events` messages from every
/// partition of `--topic` and prints `secs cpu rss`.
fn floor_child() {
    let mut it = std::env::args().skip(2);
    let (mut brokers, mut topic, mut events, mut partitions) =
        (String::new(), String::new(), 0u64, 0i32);
    while let Some(flag) = it.next() {
        let v = it.next().expect("value");
        match flag.as_str() {
            "--brokers" => brokers = v,
            "--topic" => topic = v,
            "--events" => events = v.parse().unwrap(),
            "--partitions" => partitions = v.parse().unwrap(),
            _ => panic!("unknown argument {flag}"),
        }
    }
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("{topic}-floor"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&topic, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let me = std::process::id().to_string();
    let (mut n, mut bytes) = (0u64, 0u64);
    let mut first = None;
    while n < events {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if first.is_none() {
                    first = Some((Instant::now(), cpu_secs(&me).unwrap_or(0.0)));
                }
                n += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
            }
            Some(Err(e)) => panic!("consume: {e}"),
            None => {}
        }
    }
    let (t0, cpu0) = first.unwrap();
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs(&me).unwrap_or(0.0) - cpu0;
    std::hint::black_box(bytes);
    println!("{secs} {cpu} {}", peak_rss(&me).unwrap_or(0));
}

fn floor(a: &Args, topic: &str, n: u64) -> Measure {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["floor", "--brokers", &a.brokers, "--topic", topic])
        .args(["--events", &n.to_string()])
        .args(["--partitions", &a.partitions.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "floor consumer failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let f: Vec<&str> = text.split_whitespace().collect();
    Measure {
        secs: f[0].parse().unwrap(),
        cpu: f[1].parse().unwrap(),
        rss: f[2].parse().unwrap(),
    }
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())
}

/// Sum of a metric's samples in custos's `/metrics`.
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What custos did besides its `Measure`.
struct CustosRun {
    m: Measure,
    /// Peak RSS including the stop (the final snapshots), bytes.
    rss_stop: u64,
    store_bytes: u64,
    parquet_bytes: u64,
    accepted: f64,
    rejected: f64,
    findings: f64,
}

fn custos(a: &Args, topic: &str, n: u64, round: usize) -> CustosRun {
    let dir = tempfile::Builder::new()
        .prefix("custos-e2e-")
        .tempdir_in("/tmp")
        .unwrap();
    let http = free_addr();
    let group = format!(
        "{topic}-custos-{}-{round}",
        chrono::Utc::now().timestamp_millis()
    );
    let key = dir.path().join("checkpoint.key");
    let keygen = Command::new(custos_bin(a))
        .args(["keygen", "--checkpoint", "bench", "--out"])
        .arg(&key)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(keygen.success(), "custos keygen failed");
    let config = dir.path().join("custos.toml");
    let store = dir.path().join("store");
    std::fs::write(
        &config,
        format!(
            r#"[store]
path = "{store}"
[checkpoints]
key_file = "{key}"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
dead_letter_topic = ""
[http]
listen = "{http}"
[sql_detectors]
dir = "{sql}"
[[sinks]]
type = "jsonl"
name = "log"
path = "{sink}"
"#,
            store = store.display(),
            key = key.display(),
            brokers = a.brokers,
            sql = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("queries/detectors")
                .display(),
            sink = dir.path().join("incidents.jsonl").display(),
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("custos.log")).unwrap();
    let mut cmd = Command::new(custos_bin(a));
    cmd.args(["run", "--config", config.to_str().unwrap()]);
    for s in &a.set {
        cmd.args(["--set", s]);
    }
    let mut child = cmd
        .env("CUSTOS_PRIVACY_DEMO_KEY", "true")
        .env("CUSTOS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id().to_string();

    let ends = ends(&a.brokers, topic, a.partitions);
    let end_total: i64 = ends.iter().map(|(_, h)| h).sum();
    let watcher: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for (p, _) in &ends {
        tpl.add_partition(topic, *p);
    }
    let deadline = Instant::now() + Duration::from_secs(60 + n / 10_000);
    let mut first = None;
    let mut last_check = Instant::now();
    let (t1, cpu1) = loop {
        assert!(Instant::now() < deadline, "custos did not finish in time");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("custos exited early ({status}); see its log");
        }
        if first.is_none() {
            let consumed = http_get(&http, "/metrics")
                .map_or(0.0, |t| metric(&t, "custos_messages_consumed_total"));
            if consumed > 0.0 {
                first = Some((Instant::now(), cpu_secs(&pid).unwrap_or(0.0)));
            }
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        if last_check.elapsed() >= Duration::from_millis(50) {
            last_check = Instant::now();
            let committed: i64 = watcher
                .committed_offsets(tpl.clone(), Duration::from_secs(5))
                .map(|c| {
                    c.elements()
                        .iter()
                        .map(|e| match e.offset() {
                            Offset::Offset(o) => o,
                            _ => 0,
                        })
                        .sum()
                })
                .unwrap_or(0);
            if committed >= end_total {
                break (Instant::now(), cpu_secs(&pid).unwrap_or(0.0));
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let (t0, cpu0) = first.unwrap();
    let rss = peak_rss(&pid).unwrap_or(0);
    let text = http_get(&http, "/metrics").unwrap_or_default();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    // The stop writes every chain's final snapshot: the peak with it is
    // the last high-water mark read before the process is gone.
    let mut rss_stop = rss;
    while matches!(child.try_wait(), Ok(None)) {
        rss_stop = rss_stop.max(peak_rss(&pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(10));
    }
    let (store_bytes, parquet_bytes) = dir_bytes(dir.path());
    let mut parts: Vec<(String, u64)> = std::fs::read_dir(dir.path().join("store"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let bytes = if e.path().is_dir() {
                dir_bytes(&e.path()).0
            } else {
                e.metadata().map_or(0, |m| m.len())
            };
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.1));
    let outside = store_bytes - parts.iter().map(|p| p.1).sum::<u64>();
    println!(
        "  bytes on disk by store folder: {}; outside the store {outside}",
        parts
            .iter()
            .map(|(name, b)| format!("{name} {b}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    CustosRun {
        m: Measure {
            secs: t1.duration_since(t0).as_secs_f64(),
            cpu: cpu1 - cpu0,
            rss,
        },
        rss_stop,
        store_bytes,
        parquet_bytes,
        accepted: metric(&text, "custos_events_accepted_total"),
        rejected: metric(&text, "custos_events_rejected_total"),
        findings: metric(&text, "custos_findings_total"),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("floor") => return floor_child(),
        Some("cleanup") => {
            let brokers = std::env::args().nth(2);
            return cleanup(brokers.as_deref().unwrap_or("127.0.0.1:9092"));
        }
        _ => {}
    }
    let a = args();
    println!(
        "custos end to end against the bare-consumer floor ({} cores, {} partitions, {} run(s) per size)",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        a.partitions,
        a.repeat
    );
    let mut curve = Vec::new();
    for &n in &a.sizes {
        let stamp = chrono::Utc::now().timestamp_millis();
        let topic = a
            .topic
            .clone()
            .unwrap_or_else(|| format!("bench-e2e-{n}-{stamp}"));
        if a.topic.is_none() {
            load(&a, &topic, n);
        }
        let (mut floors, mut customs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..a.repeat {
            let f = floor(&a, &topic, n);
            let c = custos(&a, &topic, n, round);
            let (fr, cr) = (n as f64 / f.secs, n as f64 / c.m.secs);
            println!(
                "N={n} run {}: floor {:.0} events/s ({:.2} s, {:.2} CPU s/M events, peak RSS {:.0} MB) | \
                 custos {:.0} events/s ({:.2} s, {:.2} CPU s/M events, peak RSS {:.0} MB ({:.0} MB with the stop), \
                 {:.1} bytes/event on disk, {:.1} of them Parquet; {} accepted, {} rejected, {} findings) | ratio {:.3}",
                round + 1,
                fr,
                f.secs,
                f.cpu / n as f64 * 1e6,
                f.rss as f64 / 1e6,
                cr,
                c.m.secs,
                c.m.cpu / n as f64 * 1e6,
                c.m.rss as f64 / 1e6,
                c.rss_stop as f64 / 1e6,
                c.store_bytes as f64 / n as f64,
                c.parquet_bytes as f64 / n as f64,
                c.accepted,
                c.rejected,
                c.findings,
                cr / fr
            );
            floors.push(fr);
            customs.push(cr);
            ratios.push(cr / fr);
        }
        let (fm, cm, rm) = (
            median(&mut floors),
            median(&mut customs),
            median(&mut ratios),
        );
        println!("N={n} median: floor {fm:.0} events/s, custos {cm:.0} events/s, ratio {rm:.3}");
        curve.push((n, cm));
        if a.topic.is_none() && !a.keep {
            delete_topics(&a.brokers, &[&topic]);
        } else {
            println!("topic {topic} kept");
        }
    }
    if curve.len() > 1 {
        let base = curve[0].1;
        let points: Vec<String> = curve
            .iter()
            .map(|(n, r)| format!("{n}: {r:.0} ({:+.1} %)", (r / base - 1.0) * 100.0))
            .collect();
        println!("curve (custos events/s by N): {}", points.join(", "));
    }
}
