//! Scale-out in one consumer group, against the real broker: two custos
//! processes share a 6-partition topic and one store; partitions move
//! between them when the second joins, and again when the first is
//! SIGKILLed mid-stream and the second takes its partitions over,
//! continuing their chains and restoring their detector state from the
//! snapshots written with the ledger. Every event is stored once, every
//! chain verifies, and the set of alerts raised by the pair is the set a
//! single process raises on the same input (same ids, same counts, same
//! baselines to the bit). Replay without a snapshot is bounded far below a
//! partition's history (`store.replay_max_events = 1000`), so only a
//! snapshot that works gives the pair the single process's baselines.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat};
use common::*;

const PARTITIONS: i32 = 6;
const BASE_MS: i64 = 1_772_438_400_000; // 2026-03-02T08:00:00Z
const ACTORS: u64 = 40;
const MINUTES: u64 = 90;

/// 40 actors reading about 6 charts a minute each for 90 minutes of event
/// time (a small deterministic jitter per actor and minute), in time order;
/// eight of them read 80 charts within one minute, each in another minute
/// after the detectors' warm-up.
fn workload() -> Vec<(String, Vec<u8>)> {
    let mut events = Vec::new();
    for minute in 0..MINUTES {
        for actor in 0..ACTORS {
            let burst = actor < 8 && minute == 20 + actor * 8;
            let n = if burst {
                80
            } else {
                4 + (actor * 7 + minute * 13) % 5
            };
            for k in 0..n {
                let ms = (minute * 60_000 + (k * 59_000) / n + actor * 17) as i64;
                events.push((ms, actor, k, minute));
            }
        }
    }
    events.sort();
    events
        .into_iter()
        .map(|(ms, actor, k, minute)| {
            let name = format!("emp-{actor:03}");
            let t = DateTime::from_timestamp_millis(BASE_MS + ms).unwrap();
            let payload = format!(
                r#"{{"id":"s-{actor}-{minute}-{k}","time":"{}","kind":"access","actor":{{"id":"{name}","role":"nurse","dept":"icu"}},"action":"read","patient":"MRN-{}","purpose":"TREAT"}}"#,
                t.to_rfc3339_opts(SecondsFormat::Millis, true),
                1000 + (actor * 31 + k) % 700
            );
            (name, payload.into_bytes())
        })
        .collect()
}

fn config(dir: &Path, store: &Path, group: &str, topic: &str, alerts: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    write_config(
        dir,
        store,
        &format!(
            r#"
[store]
flush_rows = 1000
flush_interval_ms = 200
snapshot_interval_secs = 1
replay_max_events = 1000
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
dead_letter_topic = ""
[kafka.client]
"session.timeout.ms" = "6000"
[http]
enabled = false
[outbox]
dir = "{outbox}"
[[detectors]]
type = "access_rate"
[[sinks]]
type = "jsonl"
path = "{alerts}"
"#,
            brokers = kafka(),
            alerts = alerts.display(),
            // One each: the outbox is the process's own (it is locked).
            outbox = dir.join("outbox").display(),
        ),
    )
}

/// Each alert as (id, count observed, baseline mean): equal only when the
/// detector state behind it was the same.
fn alerts(paths: &[&Path]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for path in paths {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        for line in text.lines() {
            let r: serde_json::Value = serde_json::from_str(line).unwrap();
            // An incident revision; the finding that made it, if any.
            let Some(a) = r.get("finding") else { continue };
            out.insert((
                a["id"].as_str().unwrap().to_owned(),
                a["observed"].to_string(),
                a["expected"].to_string(),
            ));
        }
    }
    out
}

fn run_until_stored(custos: Custos, store: &Path, total: u64) {
    let done = wait_until(Duration::from_secs(120), || {
        stored(store).is_some_and(|(n, _)| n >= total)
    });
    let status = custos.terminate();
    assert!(done, "not every event was stored: {:?}", stored(store));
    assert!(status.success(), "custos did not stop cleanly: {status:?}");
}

#[test]
fn two_processes_share_a_topic_and_one_takes_over_when_the_other_dies() {
    let topic = unique("custos-it-scale");
    create_topics(kafka(), &[&topic], PARTITIONS);
    let events = workload();
    let total = events.len() as u64;
    let dir = tempfile::tempdir().unwrap();

    // The pair: one group, one store.
    let store = dir.path().join("store");
    let group = unique("custos-it-scale-group");
    let (alerts_a, alerts_b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    let config_a = config(&dir.path().join("a"), &store, &group, &topic, &alerts_a);
    let config_b = config(&dir.path().join("b"), &store, &group, &topic, &alerts_b);

    // About 12 s of traffic.
    let producer = produce_paced(kafka(), &topic, events, 2000);
    let mut a = Custos::start(&["run"], &config_a);
    assert!(
        wait_until(Duration::from_secs(60), || stored(&store)
            .is_some_and(|(n, _)| n > 1000)),
        "the first process stored nothing"
    );
    // The second joins: some partitions move from A to B.
    let b = Custos::start(&["run"], &config_b);
    let before_kill = {
        let seen = stored(&store).map_or(0, |(n, _)| n);
        assert!(
            wait_until(Duration::from_secs(60), || stored(&store)
                .is_some_and(|(n, _)| n > seen + 3000)),
            "ingest stalled after the second process joined"
        );
        stored(&store).map_or(0, |(n, _)| n)
    };
    sigkill(&mut a);
    assert!(before_kill < total, "the kill came after the end of ingest");
    producer.join().unwrap();
    run_until_stored(b, &store, total);

    // Every event once; every chain continues and verifies.
    assert_eq!(stored(&store), Some((total, total)));
    let chains = query(
        &store,
        "select partition, count(*) as n, max(\"offset\") + 1 as next from events group by partition",
    );
    assert_eq!(chains.len(), PARTITIONS as usize);
    for c in &chains {
        assert_eq!(c["n"], c["next"], "partition offsets without a gap: {c}");
    }
    let report = custos::ledger::verify(&store).unwrap();
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert!(report.ok(), "verify: {problems:?}");

    // The same input through one process, from scratch.
    let single_store = dir.path().join("single-store");
    let alerts_single = dir.path().join("single.jsonl");
    let config_single = config(
        &dir.path().join("single"),
        &single_store,
        &unique("custos-it-scale-single"),
        &topic,
        &alerts_single,
    );
    run_until_stored(
        Custos::start(&["run"], &config_single),
        &single_store,
        total,
    );

    let expected = alerts(&[&alerts_single]);
    let actual = alerts(&[&alerts_a, &alerts_b]);
    assert!(
        expected.len() >= 8,
        "the eight bursts should alert in the single process: {expected:?}"
    );
    assert_eq!(
        actual, expected,
        "the pair raised other alerts than a single process"
    );
}
