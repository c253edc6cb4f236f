//! Nothing lost, nothing doubled, against the real broker.
//!
//! - custos runs as a child process while a producer keeps writing; it is
//!   aborted once at every step of the write protocol (`CUSTOS_CRASH_AT`:
//!   between segment write and rename, after the rename, after the tree
//!   strata, in the middle of the manifest append, after it, around the
//!   offset commit, after a snapshot and after a checkpoint) and SIGKILLed
//!   at 20 random moments (startup and recovery included), restarted each
//!   time;
//! - the broker itself is stopped and started again in the middle of
//!   ingest (a broker of the test's own, on other ports, so the shared
//!   test broker and the other tests are not disturbed).
//!
//! After each: every produced event is stored exactly once, every
//! partition's offsets are stored without a gap, `custos verify` passes
//! with the checkpoint signatures checked, and the group's committed
//! offsets reach the end of every partition.

mod common;

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat};
use common::*;
use custos::ledger::checkpoint::NoteSigner;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// A single-node broker of one test's own (`scripts/kafka.sh` with its own
/// folder and ports; the jars of the shared test broker when it has them).
struct OwnBroker {
    dir: tempfile::TempDir,
    port: String,
    controller_port: String,
    brokers: String,
}

impl OwnBroker {
    fn start() -> OwnBroker {
        let port = |a: String| a.rsplit(':').next().unwrap().to_owned();
        let (port, controller_port) = (port(free_addr()), port(free_addr()));
        let broker = OwnBroker {
            dir: tempfile::tempdir().unwrap(),
            brokers: format!("127.0.0.1:{port}"),
            port,
            controller_port,
        };
        assert!(broker.run("start"), "cannot start the test's own broker");
        broker
    }

    /// `scripts/kafka.sh <what>` for this broker; true on success.
    fn run(&self, what: &str) -> bool {
        let mut cmd = Command::new(repo().join("scripts/kafka.sh"));
        cmd.arg(what)
            .env("CUSTOS_TEST_KAFKA_DIR", self.dir.path())
            .env("CUSTOS_TEST_KAFKA_PORT", &self.port)
            .env("CUSTOS_TEST_KAFKA_CONTROLLER_PORT", &self.controller_port);
        let shared = repo().join(".kafka/libs");
        if shared.join(".complete").exists() {
            cmd.env("CUSTOS_TEST_KAFKA_LIBS", shared);
        }
        cmd.status().unwrap().success()
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.run("stop");
    }
}

const PARTITIONS: i32 = 6;
const BASE_MS: i64 = 1_772_438_400_000; // 2026-03-02T08:00:00Z

/// Event `i`: an access by one of 37 actors (the message key), 50 ms of
/// event time after event `i - 1`.
fn event(i: u64) -> (String, Vec<u8>) {
    let actor = format!("emp-{:03}", i % 37);
    let t = DateTime::from_timestamp_millis(BASE_MS + i as i64 * 50).unwrap();
    let payload = format!(
        r#"{{"id":"ev-{i}","time":"{}","kind":"access","actor":{{"id":"{actor}","role":"nurse","dept":"icu"}},"action":"read","patient":"MRN-{}","purpose":"TREAT"}}"#,
        t.to_rfc3339_opts(SecondsFormat::Millis, true),
        100_000 + i % 5000
    );
    (actor, payload.into_bytes())
}

/// A test's store, config and signing key.
struct Setup {
    brokers: String,
    _dir: tempfile::TempDir,
    store: PathBuf,
    config: PathBuf,
    verifier: PathBuf,
    topic: String,
    group: String,
}

fn setup(name: &str, brokers: &str, static_member: bool) -> Setup {
    setup_at(name, brokers, static_member, None)
}

/// [`setup`] with the store at `store` (an `s3://` URL) instead of a
/// folder.
fn setup_at(name: &str, brokers: &str, static_member: bool, store: Option<String>) -> Setup {
    let topic = unique(&format!("custos-it-{name}"));
    let group = unique(&format!("custos-it-{name}-group"));
    create_topics(brokers, &[&topic], PARTITIONS);
    let dir = tempfile::tempdir().unwrap();
    // In a bucket a dead writer's lease must expire before a restart can
    // take its chains: short here, so the restarts below are quick.
    let lease = if store.is_some() {
        "lease_secs = 2\n"
    } else {
        ""
    };
    let store = store.map_or_else(|| dir.path().join("store"), PathBuf::from);
    let signer = NoteSigner::from_seed("custos-crash-test", rand::random()).unwrap();
    let key = dir.path().join("signer.key");
    std::fs::write(&key, signer.to_text()).unwrap();
    let verifier = dir.path().join("verifier.key");
    std::fs::write(&verifier, signer.verifier().to_text()).unwrap();
    // Small, frequent flushes, snapshots and checkpoints, so kills land in
    // every phase. Static membership (for the kill test): a restarted
    // process takes its partitions back at once instead of waiting out the
    // dead one's session.
    let membership = if static_member {
        "\"group.instance.id\" = \"custos-crash-test\"\n"
    } else {
        ""
    };
    let config = write_config(
        dir.path(),
        &store,
        &format!(
            r#"
[store]
flush_rows = 500
flush_interval_ms = 100
snapshot_interval_secs = 1
{lease}[checkpoints]
interval_secs = 1
key_file = "{key}"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
dead_letter_topic = ""
[kafka.client]
{membership}"session.timeout.ms" = "6000"
[http]
enabled = false
# The write protocol is under test, not detection: one light detector, so
# restarts and the 1 s snapshots stay quick.
[sql_detectors]
enabled = false
[[detectors]]
type = "access_rate"
"#,
            key = key.display(),
        ),
    );
    Setup {
        brokers: brokers.to_owned(),
        _dir: dir,
        store,
        config,
        verifier,
        topic,
        group,
    }
}

/// Starts `custos run`, with `CUSTOS_CRASH_AT` set when given.
fn start(setup: &Setup, crash_at: Option<&str>) -> Custos {
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .arg("--config")
        .arg(&setup.config)
        .env("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)
        .env("CUSTOS_LOG", "warn")
        .envs(child_env())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if let Some(point) = crash_at {
        cmd.env("CUSTOS_CRASH_AT", point);
    }
    Custos {
        child: cmd.spawn().expect("start custos"),
    }
}

/// Runs custos until the store holds `total` events, then stops it cleanly
/// and checks everything the test promises.
fn finish_and_check(setup: &Setup, total: u64) {
    let custos = start(setup, None);
    let done = wait_until(Duration::from_secs(120), || {
        stored(&setup.store).is_some_and(|(n, _)| n >= total)
    });
    let status = custos.terminate();
    assert!(status.success(), "custos did not stop cleanly: {status:?}");
    assert!(
        done,
        "not every event was stored: {:?}",
        stored(&setup.store)
    );

    // Exactly once: every id, once; no duplicate-id or other rejects.
    let (n, ids) = stored(&setup.store).unwrap();
    assert_eq!((n, ids), (total, total), "(events, distinct ids)");
    let ids = query(
        &setup.store,
        "select min(cast(substr(id, 4) as bigint)) as lo, max(cast(substr(id, 4) as bigint)) as hi from events",
    );
    assert_eq!(ids[0]["lo"], 0);
    assert_eq!(ids[0]["hi"], total - 1);
    let rejects = query(&setup.store, "select count(*) as n from rejects");
    assert_eq!(rejects[0]["n"], 0, "no message was rejected");

    // No gap: each partition's offsets are 0..end, end = high watermark.
    let per_partition = query(
        &setup.store,
        "select partition, count(*) as n, min(\"offset\") as lo, max(\"offset\") as hi \
         from events group by partition order by partition",
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.brokers)
        .set("group.id", &setup.group)
        .create()
        .unwrap();
    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (_, high) = consumer
            .fetch_watermarks(&setup.topic, p, Duration::from_secs(10))
            .unwrap();
        ends.insert(p, high);
    }
    assert_eq!(
        per_partition.len(),
        PARTITIONS as usize,
        "{per_partition:?}"
    );
    for row in &per_partition {
        let p = row["partition"].as_i64().unwrap() as i32;
        let (count, lo, hi) = (
            row["n"].as_i64().unwrap(),
            row["lo"].as_i64().unwrap(),
            row["hi"].as_i64().unwrap(),
        );
        assert_eq!(
            (lo, hi + 1, count),
            (0, ends[&p], ends[&p]),
            "partition {p}"
        );
    }

    // The ledger verifies, signatures included.
    let out = Command::new(bin())
        .args(["verify", setup.store.to_str().unwrap(), "--key"])
        .arg(&setup.verifier)
        .envs(child_env())
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "verify failed: {report}");

    // Committed offsets reach the end of every partition.
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&setup.topic, p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    for e in committed.elements() {
        assert_eq!(
            e.offset(),
            Offset::Offset(ends[&e.partition()]),
            "committed offset of partition {}",
            e.partition()
        );
    }
}

/// Produces events `0..total` to the setup's topic at 600 a second.
fn traffic(setup: &Setup, total: u64) -> std::thread::JoinHandle<()> {
    produce_paced(
        &setup.brokers,
        &setup.topic,
        (0..total).map(event).collect(),
        600,
    )
}

/// Runs custos once per step of the write protocol, aborting it there
/// (`CUSTOS_CRASH_AT`; the count after the colon lets a few rounds pass
/// first, so the crash lands mid-stream).
fn crash_at_every_point(setup: &Setup) {
    for point in custos::failpoint::POINTS {
        let mut custos = start(setup, Some(&format!("{point}:2")));
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = custos.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "crash point {point} was never reached (store {})",
                setup.store.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(
            status.signal(),
            Some(6),
            "custos should have aborted at {point}, but exited with {status:?}"
        );
    }
}

#[test]
fn killed_at_every_protocol_step_and_at_random_stores_each_event_once() {
    let setup = setup("crash", kafka(), true);
    const TOTAL: u64 = 30_000;
    // About 50 s of traffic: the kills below all happen while it flows.
    let t0 = Instant::now();
    let producer = traffic(&setup, TOTAL);

    crash_at_every_point(&setup);

    eprintln!("{:?}: crash points done", t0.elapsed());
    // Twenty SIGKILLs at random moments, startup and recovery included.
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261128);
    let mut progress = Vec::new();
    for _ in 0..20 {
        let mut custos = start(&setup, None);
        std::thread::sleep(Duration::from_millis(rng.random_range(200..2500)));
        sigkill(&mut custos);
        progress.push(stored(&setup.store).map_or(0, |(n, _)| n));
    }
    assert!(
        progress.windows(2).any(|w| w[1] > w[0]),
        "ingest made progress between kills: {progress:?}"
    );
    eprintln!("{:?}: kills done", t0.elapsed());
    producer.join().unwrap();
    eprintln!("{:?}: producer done", t0.elapsed());
    finish_and_check(&setup, TOTAL);
    eprintln!("{:?}: checked", t0.elapsed());
}

/// The same protocol with the store in an S3-compatible bucket (moto's
/// server): segments and every append are conditional `PUT`s, so a crash
/// at each step of the protocol, and SIGKILLs at random moments, still
/// leave every event stored exactly once and a store that verifies.
#[test]
fn a_store_in_a_bucket_survives_a_crash_at_every_protocol_step() {
    moto();
    let store = format!("s3://{BUCKET}/{}", unique("crash"));
    let setup = setup_at("bucket-crash", kafka(), true, Some(store));
    // About 60 s of traffic, so every crash point is reached while it
    // flows (restarts wait out the dead writer's 2 s lease).
    const TOTAL: u64 = 36_000;
    let producer = traffic(&setup, TOTAL);
    crash_at_every_point(&setup);
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261129);
    for _ in 0..5 {
        let mut custos = start(&setup, None);
        std::thread::sleep(Duration::from_millis(rng.random_range(500..3000)));
        sigkill(&mut custos);
    }
    producer.join().unwrap();
    finish_and_check(&setup, TOTAL);
}

#[test]
fn a_broker_restart_in_the_middle_of_ingest_loses_and_doubles_nothing() {
    let broker = OwnBroker::start();
    let setup = setup("broker-restart", &broker.brokers, false);
    const TOTAL: u64 = 30_000;
    // About 20 s of traffic; the producer retries through the restart.
    let producer = produce_paced(
        &setup.brokers,
        &setup.topic,
        (0..TOTAL).map(event).collect(),
        1500,
    );

    let custos = start(&setup, None);
    assert!(
        wait_until(Duration::from_secs(60), || stored(&setup.store)
            .is_some_and(|(n, _)| n > 2000)),
        "custos stored nothing"
    );
    assert!(broker.run("stop"), "scripts/kafka.sh stop failed");
    assert!(!broker.run("status"), "the broker still answers after stop");
    let during = stored(&setup.store).map_or(0, |(n, _)| n);
    std::thread::sleep(Duration::from_secs(5));
    assert!(broker.run("start"), "scripts/kafka.sh start failed");
    producer.join().unwrap();
    assert!(during < TOTAL, "the restart came after the end of ingest");

    // The same process goes on once the broker is back.
    let caught_up = wait_until(Duration::from_secs(120), || {
        stored(&setup.store).is_some_and(|(n, _)| n >= TOTAL)
    });
    let status = custos.terminate();
    assert!(
        caught_up,
        "the running process did not catch up: {:?}",
        stored(&setup.store)
    );
    assert!(status.success(), "custos did not stop cleanly: {status:?}");
    finish_and_check(&setup, TOTAL);
}
