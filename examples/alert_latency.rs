//! Detection latency at a fixed load, through a real Kafka broker: the time
//! from producing an event to its incident reaching a sink, at `--rate`
//! events/s, with every detector on (the default set), the ledger durable
//! and committed, and incident revisions recorded in the ledger before the
//! outbox. Then the same run with a second sink that is down (an
//! Alertmanager URL nobody listens on), to show that a dead sink does not
//! slow ingest.
//!
//! ```text
//! cargo build --release --bin custos --example alert_latency
//! target/release/examples/alert_latency --brokers 127.0.0.1:9092 --rate 50000 --secs 30
//! ```
//!
//! `ALERT_LATENCY_KEEP=<dir>` keeps each run's `/metrics` and sink file
//! there. `--configs dead,live` runs the two configurations in another order (or
//! one alone: `--configs dead`).
//!
//! One event in `--every` comes from a different terminated workforce
//! member (the roster says so): the `termination` detector raises one
//! critical finding for it, so each such event opens exactly one incident.
//! The latency of an incident is from the moment the producer handed its
//! event to librdkafka to the moment its revision line appears in the
//! JSON-lines sink file (polled every millisecond), so it includes
//! producing, the broker, consuming, decoding, the ledger's buffer, every
//! detector, correlation, the incidents chain's flush, the outbox's fsync
//! and the sink's write. The ingest rate is events accepted per second
//! while the load runs (from custos's `/metrics`).
//!
//! The second figure is the issue's definition, from custos's own
//! `custos_incident_latency_seconds` histogram: from the message's arrival
//! at custos (polled from the consumer) to the revision durable in the
//! outbox (quantiles interpolated within buckets, as `histogram_quantile`).
//! The difference is Kafka and the sink: `kafka_latency` measures the
//! broker alone. `ALERT_LATENCY_TRACE=1` prints each incident (its event's
//! time into the load, produced -> sink, produced -> the loop's batch) and
//! shows custos's log.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::BaseProducer;

#[path = "common/paced.rs"]
mod paced;

/// Clinicians of the load besides the terminated ones.
const LOAD_ACTORS: u64 = 20_000;

struct Args {
    brokers: String,
    rate: u64,
    secs: u64,
    every: u64,
    partitions: i32,
    /// The configurations to run, in order: `live` (the JSON-lines sink
    /// alone) and `dead` (the same plus a sink nobody listens on).
    configs: Vec<bool>,
}

fn args() -> Args {
    let mut a = Args {
        brokers: "127.0.0.1:9092".into(),
        rate: 50_000,
        secs: 30,
        every: 1000,
        partitions: 6,
        configs: vec![false, true],
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--brokers" => a.brokers = value(),
            "--rate" => a.rate = value().parse().expect("--rate N"),
            "--secs" => a.secs = value().parse().expect("--secs N"),
            "--every" => a.every = value().parse().expect("--every N"),
            "--partitions" => a.partitions = value().parse().expect("--partitions N"),
            "--configs" => {
                a.configs = value()
                    .split(',')
                    .map(|c| match c {
                        "live" => false,
                        "dead" => true,
                        other => panic!("--configs takes live and dead, not {other}"),
                    })
                    .collect()
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The custos binary next to this example (`target/release/custos`).
fn custos_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap();
    let bin = release.join("custos");
    assert!(
        bin.exists(),
        "build it first: cargo build --release --bin custos"
    );
    bin
}

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn http_get(addr: &str, path: &str) -> Option<String> {
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

fn accepted(addr: &str) -> f64 {
    http_get(addr, "/metrics")
        .map(|t| {
            t.lines()
                .filter(|l| l.starts_with("custos_events_accepted_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
        .unwrap_or(0.0)
}

/// Quantiles of custos's `custos_incident_latency_seconds` histogram, in
/// milliseconds, interpolated linearly within a bucket as Prometheus's
/// `histogram_quantile` does: `(count, [p50, p99, p99.9])`.
fn incident_latency(addr: &str) -> (f64, [f64; 3]) {
    let text = http_get(addr, "/metrics").unwrap_or_default();
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("custos_incident_latency_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once('"')?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    let q = |p: f64| {
        let rank = p * total;
        let (mut lo, mut below) = (0.0, 0.0);
        for &(le, count) in &buckets {
            if count >= rank {
                if le.is_infinite() {
                    return lo * 1000.0;
                }
                let within = (rank - below) / (count - below).max(1.0);
                return (lo + (le - lo) * within) * 1000.0;
            }
            (lo, below) = (le, count);
        }
        f64::NAN
    };
    (total, [q(0.5), q(0.99), q(0.999)])
}

/// The figures of one run.
struct Figures {
    incidents: usize,
    expected: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    ingest_rate: f64,
    offered_rate: f64,
    /// Arrival at custos -> revision durable in the outbox, from custos's
    /// own histogram: (incidents, [p50, p99, p99.9] ms).
    inside: (f64, [f64; 3]),
}

fn run(a: &Args, dead_sink: bool) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let stamp = chrono::Utc::now().timestamp_micros();
    let topic = format!("bench-latency-{stamp}");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    for r in rt
        .block_on(admin.create_topics(
            &[NewTopic::new(
                &topic,
                a.partitions,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new(),
        ))
        .unwrap()
    {
        r.unwrap();
    }

    let terminated = (a.rate * a.secs / a.every + 1) as usize;
    let mut roster = String::from("actor,role,dept,hired,terminated\n");
    for i in 0..terminated {
        roster.push_str(&format!(
            "gone-{i:06},nurse,icu,2019-01-01T00:00:00Z,2020-01-01T00:00:00Z\n"
        ));
    }
    // The load's other actors are current staff, so the roster check
    // (`sql:roster_mismatch`) stays silent about them: the figure is that
    // of the intended incidents, not of 20,000 unrostered accounts.
    for i in 0..LOAD_ACTORS {
        roster.push_str(&format!("emp-{i:05},nurse,icu,2019-01-01T00:00:00Z,\n"));
    }
    std::fs::write(dir.path().join("roster.csv"), roster).unwrap();
    let http = free_addr();
    let sink_file = dir.path().join("incidents.jsonl");
    let dead = if dead_sink {
        // Nobody listens there: every delivery fails and is retried.
        format!(
            "[[sinks]]\ntype = \"alertmanager\"\nname = \"dead\"\nurl = \"http://{}\"\n",
            free_addr()
        )
    } else {
        String::new()
    };
    let config = dir.path().join("custos.toml");
    std::fs::write(
        &config,
        format!(
            r#"[store]
path = "{store}"
[kafka]
brokers = "{brokers}"
group_id = "{topic}-group"
topics = ["{topic}"]
dead_letter_topic = ""
[http]
listen = "{http}"
[reference]
roster = "{roster}"
[outbox]
close_wait_secs = 2
[[sinks]]
type = "jsonl"
name = "log"
path = "{sink}"
{dead}"#,
            store = dir.path().join("store").display(),
            brokers = a.brokers,
            roster = dir.path().join("roster.csv").display(),
            sink = sink_file.display(),
        ),
    )
    .unwrap();
    let mut custos: Child = Command::new(custos_bin())
        .args(["run", "--config", config.to_str().unwrap()])
        .env("CUSTOS_PRIVACY_DEMO_KEY", "true")
        .env("CUSTOS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(if std::env::var_os("ALERT_LATENCY_TRACE").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(&http, "/readyz").is_none_or(|b| !b.starts_with("ready")) {
        assert!(Instant::now() < deadline, "custos did not get ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The sink file's tail, polled every millisecond.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen: Arc<Mutex<Vec<f64>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let tail = {
        let (sent, seen, stop, path) =
            (sent.clone(), seen.clone(), stop.clone(), sink_file.clone());
        let trace = std::env::var_os("ALERT_LATENCY_TRACE").is_some();
        let t0 = Instant::now();
        std::thread::spawn(move || {
            let mut pos = 0u64;
            let mut partial = String::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(mut f) = std::fs::File::open(&path) {
                    f.seek(std::io::SeekFrom::Start(pos)).unwrap();
                    let mut r = BufReader::new(f);
                    let mut line = String::new();
                    while r.read_line(&mut line).unwrap_or(0) > 0 {
                        pos += line.len() as u64;
                        partial.push_str(&line);
                        line.clear();
                        if !partial.ends_with('\n') {
                            continue;
                        }
                        let now = Instant::now();
                        if let Ok(doc) = serde_json::from_str::<serde_json::Value>(&partial)
                            && doc["revision"] == 1
                            && let Some(id) = doc["evidence"][0].as_str()
                            // The first incident citing the event counts;
                            // a later one (a SQL detector's, every
                            // `interval_secs`) is another subject's.
                            && let Some(at) = sent.lock().unwrap().remove(id)
                        {
                            let ms = now.duration_since(at).as_secs_f64() * 1000.0;
                            if trace {
                                // The incident's time line: when its event
                                // was produced (s into the load), produced
                                // -> sink (ms), and produced -> the loop's
                                // batch that raised it (`raised_at` minus
                                // the event's time, ms).
                                let at_ms = |k: &str| {
                                    doc[k]
                                        .as_str()
                                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                                        .map(|t| t.timestamp_micros() as f64 / 1000.0)
                                };
                                let loop_ms = at_ms("raised_at")
                                    .zip(at_ms("first_seen"))
                                    .map_or(f64::NAN, |(r, f)| r - f);
                                eprintln!(
                                    "trace {:.3} {ms:.1} {loop_ms:.1}",
                                    at.duration_since(t0).as_secs_f64()
                                );
                            }
                            seen.lock().unwrap().push(ms);
                        }
                        partial.clear();
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };

    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &a.brokers)
        .set("linger.ms", "1")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let accepted_before = accepted(&http);
    let started = Instant::now();
    let total = a.rate * a.secs;
    let mut gone = 0usize;
    let offered = paced::produce(&producer, &topic, a.rate, total, |n| {
        let (actor, id) = if n % a.every == a.every / 2 {
            gone += 1;
            (format!("gone-{:06}", gone - 1), format!("ev-gone-{n}"))
        } else {
            (format!("emp-{:05}", n % LOAD_ACTORS), format!("ev-{n}"))
        };
        let body = format!(
            r#"{{"id":"{id}","time":"{time}","kind":"access","actor":{{"id":"{actor}","role":"nurse","dept":"icu"}},"action":"read","purpose":"TREAT","patient":"MRN-{p}"}}"#,
            time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            p = (n * 7919) % 200_000,
        );
        if id.starts_with("ev-gone") {
            sent.lock().unwrap().insert(id, Instant::now());
        }
        (actor, body)
    });
    let load_end = Instant::now();
    // Wait for custos to catch up, and for the last incidents.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut caught_up = None;
    while Instant::now() < deadline {
        let got = accepted(&http) - accepted_before;
        if caught_up.is_none() && got >= total as f64 {
            caught_up = Some(Instant::now());
        }
        if caught_up.is_some() && seen.lock().unwrap().len() >= gone {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let ingest_secs = caught_up
        .unwrap_or(Instant::now())
        .duration_since(started)
        .as_secs_f64();
    let _ = load_end;
    let inside = incident_latency(&http);
    if let Some(keep) = std::env::var_os("ALERT_LATENCY_KEEP") {
        // The run's metrics and sink file, for a closer look.
        let keep = PathBuf::from(keep);
        std::fs::create_dir_all(&keep).unwrap();
        let tag = if dead_sink { "dead" } else { "live" };
        std::fs::write(
            keep.join(format!("metrics-{tag}.txt")),
            http_get(&http, "/metrics").unwrap_or_default(),
        )
        .unwrap();
        let _ = std::fs::copy(&sink_file, keep.join(format!("incidents-{tag}.jsonl")));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    tail.join().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &custos.id().to_string()])
        .status();
    let _ = custos.wait();
    let _ = rt.block_on(admin.delete_topics(&[&topic], &AdminOptions::new()));

    let mut ms = seen.lock().unwrap().clone();
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if ms.is_empty() {
            f64::NAN
        } else {
            ms[((ms.len() as f64 - 1.0) * p).round() as usize]
        }
    };
    Figures {
        incidents: ms.len(),
        expected: gone,
        p50: q(0.50),
        p99: q(0.99),
        p999: q(0.999),
        max: ms.last().copied().unwrap_or(f64::NAN),
        ingest_rate: total as f64 / ingest_secs,
        offered_rate: offered,
        inside,
    }
}

fn main() {
    let a = args();
    println!(
        "alert latency: {} events/s offered for {} s, 1 incident per {} events, {} partitions",
        a.rate, a.secs, a.every, a.partitions
    );
    for &dead in &a.configs {
        let name = if dead {
            "live + dead sink"
        } else {
            "live sink"
        };
        let f = run(&a, dead);
        println!(
            "{name:>17}: {}/{} incidents; event produced -> incident in the sink p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms; offered {:.0} events/s, ingested {:.0} events/s",
            f.incidents, f.expected, f.p50, f.p99, f.p999, f.max, f.offered_rate, f.ingest_rate
        );
        let (n, [p50, p99, p999]) = f.inside;
        println!(
            "{:>17}  arrival at custos -> incident durable in the outbox ({n} incidents, custos_incident_latency_seconds): p50 {p50:.1} ms, p99 {p99:.1} ms, p99.9 {p999:.1} ms",
            ""
        );
    }
}
