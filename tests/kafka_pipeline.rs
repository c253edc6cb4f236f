//! The walking skeleton end to end against a real Kafka broker: a real
//! producer writes events (and malformed messages) to a 3-partition topic;
//! `custos run` consumes them; the test checks the ledger holds each
//! message exactly once, the chain verifies, the injected rate anomaly
//! reached a webhook, and every malformed message is in the dead-letter
//! table and topic with its reason.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use common::*;
use custos::ledger::checkpoint::{NoteSigner, NoteVerifier};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::TopicPartitionList;

/// (key, payload) pairs of a workload.
fn keyed(messages: &[(String, Vec<u8>, Option<&'static str>)]) -> Vec<(String, Vec<u8>)> {
    messages
        .iter()
        .map(|(k, p, _)| (k.clone(), p.clone()))
        .collect()
}

const BASE: i64 = 1_772_438_400; // 2026-03-02T08:00:00Z

fn access(id: &str, actor: &str, secs: i64, patient: u32) -> String {
    let t = chrono::DateTime::from_timestamp(BASE + secs, 0).unwrap();
    format!(
        r#"{{"id":"{id}","time":"{}","kind":"access","actor":{{"id":"{actor}","role":"nurse","dept":"icu"}},"action":"read","patient":"MRN-{patient}","purpose":"TREAT"}}"#,
        t.to_rfc3339()
    )
}

/// (key, payload, expected reject reason) in production order.
fn workload() -> Vec<(String, Vec<u8>, Option<&'static str>)> {
    let mut out = Vec::new();
    // 30 actors, ~5 reads a minute each for 20 minutes; `emp-burst` then
    // reads 150 charts in one minute.
    for minute in 0..20i64 {
        for a in 0..30 {
            let actor = if a == 0 {
                "emp-burst".to_string()
            } else {
                format!("emp-{a:03}")
            };
            for k in 0..5 {
                let id = format!("ev-{minute}-{a}-{k}");
                let secs = minute * 60 + (a * 2 + k * 11) % 60;
                out.push((
                    actor.clone(),
                    access(&id, &actor, secs, 1000 + (a * 7 + k) as u32).into_bytes(),
                    None,
                ));
            }
        }
    }
    for k in 0..150 {
        let id = format!("burst-{k}");
        out.push((
            "emp-burst".into(),
            access(&id, "emp-burst", 20 * 60 + k % 60, 5000 + k as u32).into_bytes(),
            None,
        ));
    }
    let bad: [(&[u8], &str); 6] = [
        (b"\xff\xfe not utf-8", "invalid_utf8"),
        (b"{\"id\":\"x\",", "invalid_json"),
        (br#"{"time":"2026-03-02T09:14:03Z","kind":"access","actor":{"id":"emp-001"},"action":"read","patient":"MRN-1"}"#, "missing_field"),
        (br#"{"id":"bad-t","time":"yesterday","kind":"access","actor":{"id":"emp-001"},"action":"read","patient":"MRN-1"}"#, "invalid_time"),
        (br#"{"id":"bad-k","time":"2026-03-02T09:14:03Z","kind":"telemetry","actor":{"id":"emp-001"}}"#, "unknown_kind"),
        (br#"[1,2,3]"#, "not_object"),
    ];
    // Interleave the malformed messages among the valid ones, on several keys.
    for (i, (payload, reason)) in bad.iter().enumerate() {
        let at = 500 + i * 400;
        out.insert(
            at,
            (format!("emp-{:03}", i + 1), payload.to_vec(), Some(*reason)),
        );
    }
    out
}

/// While custos runs: signed checkpoints cover every accepted event, and
/// the proofs served over HTTP check out offline against the verifier key.
fn check_proofs_over_http(http: &str, verifier: &NoteVerifier, good: usize) {
    let latest = || -> Vec<serde_json::Value> {
        http_get(http, "/v1/checkpoint")
            .and_then(|body| serde_json::from_str(&body).ok())
            .unwrap_or_default()
    };
    let covered = || -> usize {
        latest()
            .iter()
            .filter(|c| c["table"] == "events")
            .map(|c| c["size"].as_u64().unwrap() as usize)
            .sum()
    };
    assert!(
        wait_until(Duration::from_secs(30), || covered() == good),
        "checkpoints cover {} of {good} events",
        covered()
    );
    for c in latest() {
        let note = c["note"].as_str().unwrap();
        assert!(verifier.open(note).is_ok(), "checkpoint not signed: {c}");
        // One log's latest checkpoint as text, as transparency clients read it.
        let path = format!(
            "/v1/checkpoint?stream={}&partition={}&table={}",
            c["stream"].as_str().unwrap(),
            c["partition"],
            c["table"].as_str().unwrap()
        );
        let text = http_get(http, &path).expect("a log's checkpoint");
        let body = verifier.open(&text).expect("signed");
        assert!(body.starts_with(c["log"].as_str().unwrap()), "{body}");
    }
    // Every stored checkpoint, oldest first per log, sizes never shrinking.
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&http_get(http, "/v1/checkpoints?table=events").unwrap()).unwrap();
    assert!(all.len() >= latest().iter().filter(|c| c["table"] == "events").count());
    let mut last: HashMap<String, u64> = HashMap::new();
    for c in &all {
        assert_eq!(c["table"], "events");
        let size = c["size"].as_u64().unwrap();
        let prev = last.insert(c["log"].as_str().unwrap().to_owned(), size);
        assert!(prev.is_none_or(|p| p < size), "sizes shrink: {all:?}");
    }

    let proof = http_get(http, "/v1/proof/ev-7-3-2").expect("a proof");
    let summary = custos::ledger::proof::check(&proof, Some(verifier)).unwrap();
    assert_eq!(summary.event_id.as_deref(), Some("ev-7-3-2"));
    assert!(summary.record_checked && summary.signatures_checked);
    let doc: serde_json::Value = serde_json::from_str(&proof).unwrap();
    assert!(
        !doc["record"].as_str().unwrap().contains("MRN-"),
        "the proof's record must carry the pseudonym, not the identifier"
    );
    assert!(http_get(http, "/v1/proof/no-such-event").is_none());

    // The log only grew: from an early size to the latest checkpoint.
    let (stream, partition) = (
        doc["stream"].as_str().unwrap(),
        doc["partition"].as_i64().unwrap(),
    );
    let size = doc["tree_size"].as_u64().unwrap();
    let path = format!("/v1/consistency?stream={stream}&partition={partition}&from=3&to={size}");
    let consistency = http_get(http, &path).expect("a consistency proof");
    let summary = custos::ledger::proof::check(&consistency, None).unwrap();
    assert_eq!((summary.old_size, summary.tree_size), (Some(3), size));
    let doc: serde_json::Value = serde_json::from_str(&consistency).unwrap();
    let checkpoint = custos::ledger::checkpoint::Checkpoint::parse(
        verifier
            .open(
                doc["new_checkpoint"]
                    .as_str()
                    .expect("the latest is signed"),
            )
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        hex::encode(checkpoint.root),
        doc["new_root"].as_str().unwrap()
    );
}

/// The store's verification report, asserting it found no problem.
fn verified(store: &std::path::Path) -> custos::ledger::VerifyReport {
    let report = custos::ledger::verify(store).unwrap();
    let problems: Vec<String> = report.problems.iter().map(ToString::to_string).collect();
    assert!(report.ok(), "verify: {problems:?}");
    report
}

#[test]
fn kafka_to_ledger_to_webhook_exactly_once() {
    let brokers = kafka();
    let topic = unique("custos-it-events");
    let dlq = unique("custos-it-dlq");
    let group = unique("custos-it-group");
    create_topics(brokers, &[&topic, &dlq], 3);
    let messages = workload();
    let bad = messages.iter().filter(|m| m.2.is_some()).count();
    let good = messages.len() - bad;
    produce(brokers, &topic, &keyed(&messages));

    // The webhook refuses the first two deliveries: custos must retry.
    let webhook = Webhook::failing_first(2);
    let http = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let signer = NoteSigner::from_seed("it.example/custos", [3; 32]).unwrap();
    let verifier = signer.verifier();
    let verifier_file = dir.path().join("verifier.key");
    std::fs::write(&verifier_file, verifier.to_text()).unwrap();
    let config = write_config(
        dir.path(),
        &store,
        &format!(
            r#"
[store]
flush_interval_ms = 200
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
dead_letter_topic = "{dlq}"
[http]
listen = "{http}"
[checkpoints]
interval_secs = 1
key = "{key}"
[[detectors]]
type = "access_rate"
[[sinks]]
type = "webhook"
url = "{url}"
"#,
            url = webhook.url,
            key = signer.to_text(),
        ),
    );

    let custos_run = Custos::start(&["run"], &config);
    let stored = || {
        custos::ledger::verify(&store)
            .map(|r| r.events + r.rejects)
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(90), || stored() as usize
            >= messages.len()),
        "only {} of {} messages reached the ledger",
        stored(),
        messages.len()
    );
    // The metrics a SOC dashboard reads agree with what was produced.
    let metrics = http_get(&http, "/metrics").expect("/metrics answers");
    let value = |line_start: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{line_start}` in /metrics"))
    };
    assert_eq!(
        value(r#"custos_events_accepted_total{kind="access"}"#) as usize,
        good
    );
    assert_eq!(
        value(r#"custos_events_rejected_total{reason="invalid_utf8"}"#),
        1.0
    );
    assert_eq!(
        value(r#"custos_events_rejected_total{reason="invalid_time"}"#),
        1.0
    );
    assert_eq!(
        value(r#"custos_messages_consumed_total{source="kafka"}"#) as usize,
        messages.len()
    );
    assert!(wait_until(Duration::from_secs(30), || !webhook
        .bodies
        .lock()
        .unwrap()
        .is_empty()));
    let metrics = http_get(&http, "/metrics").unwrap();
    assert!(
        metrics.contains(r#"custos_alert_deliveries_total{outcome="retry",sink="webhook"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"custos_alert_deliveries_total{outcome="ok",sink="webhook"} 1"#));
    assert_eq!(http_get(&http, "/healthz").as_deref(), Some("ok\n"));
    check_proofs_over_http(&http, &verifier, good);
    let status = custos_run.terminate();
    assert!(status.success(), "custos exited with {status}");

    // Exactly once, and the chain verifies.
    let report = verified(&store);
    assert_eq!(report.events as usize, good);
    assert_eq!(report.rejects as usize, bad);
    assert_eq!(
        report.chains, 4,
        "one chain per partition, and the incidents chain"
    );
    let (code, out) = custos(&[
        "verify",
        store.to_str().unwrap(),
        "--key",
        verifier_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    // Shutdown signed the final state of every log.
    let signed = custos::ledger::verify_with(
        &store,
        &custos::ledger::VerifyOptions {
            verifier: Some(verifier.clone()),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(signed.ok() && signed.signatures_checked);
    let logs = signed.heads.iter().filter(|h| h.size > 0).count();
    assert!(
        signed.checkpoints >= logs,
        "{} checkpoints for {logs} logs",
        signed.checkpoints
    );

    let dupes = query(
        &store,
        "SELECT id, count(*) AS n FROM events GROUP BY id HAVING count(*) > 1",
    );
    assert!(dupes.is_empty(), "duplicated: {dupes:?}");
    let distinct = query(&store, "SELECT count(DISTINCT id) AS n FROM events");
    assert_eq!(distinct[0]["n"].as_u64().unwrap() as usize, good);
    let raw = query(
        &store,
        "SELECT count(*) AS n FROM events WHERE record LIKE '%MRN-%'",
    );
    assert_eq!(raw[0]["n"], 0, "raw patient identifiers reached the ledger");

    // Every malformed message is in the rejects table with its reason.
    let rejects = query(
        &store,
        "SELECT reason, count(*) AS n FROM rejects GROUP BY reason",
    );
    let by_reason: BTreeMap<String, u64> = rejects
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap().to_owned(),
                r["n"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: BTreeMap<String, u64> = messages
        .iter()
        .filter_map(|m| m.2)
        .map(|r| (r.to_owned(), 1))
        .collect();
    assert_eq!(by_reason, expected);

    // ... and in the dead-letter topic, with the reason in a header.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("dlq-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&dlq]).unwrap();
    let mut dead: Vec<String> = Vec::new();
    wait_until(Duration::from_secs(30), || {
        while let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m.headers().unwrap();
            let reason = headers
                .iter()
                .find(|h| h.key == "custos.reason")
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap();
            dead.push(reason);
        }
        dead.len() >= bad
    });
    dead.sort();
    let mut want: Vec<String> = expected.keys().cloned().collect();
    want.sort();
    assert_eq!(dead, want);

    // The burst, and only the burst, alerted, with evidence.
    let alerts: Vec<serde_json::Value> = webhook
        .bodies
        .lock()
        .unwrap()
        .iter()
        .filter_map(|r| r.get("finding").cloned())
        .collect();
    let actors: HashMap<String, usize> = alerts.iter().fold(HashMap::new(), |mut m, a| {
        *m.entry(a["actor"].as_str().unwrap().to_owned())
            .or_default() += 1;
        m
    });
    assert_eq!(actors.get("emp-burst"), Some(&1), "alerts: {alerts:?}");
    assert_eq!(actors.len(), 1, "unexpected alerts: {alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["detector"], "access_rate");
    assert!(
        alert["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e.as_str().unwrap().starts_with("burst-"))
    );
    assert!(alert["score"].as_f64().unwrap() >= 6.0);

    // Offsets are committed to the end of every partition.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition(&topic, p);
    }
    let committed = probe
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    for e in committed.elements() {
        let (_, high) = probe
            .fetch_watermarks(&topic, e.partition(), Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            e.offset().to_raw(),
            Some(high),
            "partition {} not committed to its end",
            e.partition()
        );
    }
}

/// A SIGKILL in the middle of consuming, then a restart, and a clean stop
/// and restart with more input in between: every message is in the ledger
/// once and the chains verify.
#[test]
fn restarts_and_kills_store_each_message_once() {
    let brokers = kafka();
    let topic = unique("custos-it-restart");
    let group = unique("custos-it-restart-group");
    create_topics(brokers, &[&topic], 3);
    let messages = workload();
    let (first, second) = messages.split_at(messages.len() / 2);
    produce(brokers, &topic, &keyed(first));

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let http = free_addr();
    let config = write_config(
        dir.path(),
        &store,
        &format!(
            r#"
[store]
flush_rows = 300
flush_interval_ms = 100
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
dead_letter_topic = ""
[http]
listen = "{http}"
[[sinks]]
type = "jsonl"
path = "{alerts}"
"#,
            alerts = dir.path().join("alerts.jsonl").display(),
        ),
    );
    let stored = || {
        custos::ledger::verify(&store)
            .map(|r| r.events + r.rejects)
            .unwrap_or(0) as usize
    };

    // Killed as soon as some of the input is durable, before the rest is.
    let mut run = Custos::start(&["run"], &config);
    assert!(wait_until(Duration::from_secs(60), || stored() > 0));
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    drop(run);

    // Restarted: catches up on the first half, then stops cleanly.
    let run = Custos::start(&["run"], &config);
    assert!(wait_until(Duration::from_secs(60), || ready(&http)));
    assert!(wait_until(Duration::from_secs(60), || stored() >= first.len()));
    assert!(run.terminate().success());

    // More input while stopped; a third run takes it all.
    produce(brokers, &topic, &keyed(second));
    let run = Custos::start(&["run"], &config);
    assert!(wait_until(Duration::from_secs(60), || ready(&http)));
    assert!(
        wait_until(Duration::from_secs(60), || stored() >= messages.len()),
        "only {} of {} stored",
        stored(),
        messages.len()
    );
    assert!(run.terminate().success());

    let report = verified(&store);
    assert_eq!((report.events + report.rejects) as usize, messages.len());
    let dupes = query(
        &store,
        "SELECT id FROM events GROUP BY id HAVING count(*) > 1",
    );
    assert!(dupes.is_empty(), "stored twice: {dupes:?}");
}
