//! Incidents through the binary to real receivers: Debian's Prometheus
//! Alertmanager (started here on a free port, stopped for a minute while
//! incidents are raised), a signing webhook receiver across a restart of
//! custos, and OCSF Detection Findings on a real Kafka topic.
//!
//! Findings come from the `termination` detector (any event by an actor
//! after their roster termination: one critical finding per actor and
//! hour), so each actor below is exactly one incident.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// A real Alertmanager on `addr`, killed when dropped.
struct Alertmanager {
    child: Child,
    addr: String,
}

impl Alertmanager {
    fn start(dir: &Path, addr: &str) -> Alertmanager {
        assert!(
            Path::new(ALERTMANAGER).exists(),
            "install Debian's prometheus-alertmanager (scripts/test does)"
        );
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: \"null\"\n  group_wait: 1s\nreceivers:\n  - name: \"null\"\n",
        )
        .unwrap();
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start alertmanager");
        let am = Alertmanager {
            child,
            addr: addr.to_owned(),
        };
        assert!(
            wait_until(Duration::from_secs(30), || http_get(addr, "/-/ready")
                .is_some()),
            "alertmanager did not become ready on {addr}"
        );
        am
    }

    /// The alerts Alertmanager holds (active ones).
    fn alerts(&self) -> Vec<Value> {
        http_get(&self.addr, "/api/v2/alerts")
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn roster(dir: &Path, actors: usize) -> PathBuf {
    let mut text = String::from("actor,role,dept,hired,terminated\n");
    for i in 0..actors {
        text.push_str(&format!(
            "gone-{i:02},nurse,icu,2019-01-01T00:00:00Z,2020-01-01T00:00:00Z\n"
        ));
    }
    let path = dir.join("roster.csv");
    std::fs::write(&path, text).unwrap();
    path
}

fn event(actor: usize, n: usize) -> Vec<u8> {
    json!({
        "id": format!("ev-{actor}-{n}"),
        "time": chrono::Utc::now().to_rfc3339(),
        "kind": "access",
        "actor": {"id": format!("gone-{actor:02}")},
        "action": "read",
        "patient": format!("MRN-{actor}"),
    })
    .to_string()
    .into_bytes()
}

/// The value of the first `/metrics` line starting with `series`.
fn metric(http: &str, series: &str) -> Option<f64> {
    let text = http_get(http, "/metrics")?;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn actors_in(alerts: &[Value]) -> std::collections::BTreeSet<String> {
    alerts
        .iter()
        .filter_map(|a| a["labels"]["actor"].as_str().map(str::to_owned))
        .collect()
}

fn config_body(
    brokers: &str,
    group: &str,
    topic: &str,
    http: &str,
    roster: &Path,
    sinks: &str,
) -> String {
    format!(
        r#"
[store]
flush_interval_ms = 200
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{topic}"]
dead_letter_topic = ""
[http]
listen = "{http}"
[reference]
roster = "{roster}"
[sql_detectors]
enabled = false
[outbox]
close_wait_secs = 2
[[detectors]]
type = "termination"
{sinks}
"#,
        roster = roster.display(),
    )
}

#[test]
fn incidents_reach_alertmanager_and_survive_a_minute_of_outage() {
    let started = Instant::now();
    let brokers = kafka();
    let topic = unique("custos-it-alerting");
    let group = unique("custos-it-alerting-group");
    create_topics(brokers, &[&topic], 1);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let am_addr = free_addr();
    let am = Alertmanager::start(dir.path(), &am_addr);
    let http = free_addr();
    let log = dir.path().join("incidents.jsonl");
    let sinks = format!(
        r#"
[[sinks]]
type = "alertmanager"
name = "am"
url = "http://{am_addr}"
resend_secs = 2
initial_backoff_ms = 100
max_backoff_ms = 1000
labels = {{ team = "privacy" }}
[[sinks]]
type = "jsonl"
name = "log"
path = "{log}"
"#,
        log = log.display()
    );
    let config = write_config(
        dir.path(),
        &store,
        &config_body(
            brokers,
            &group,
            &topic,
            &http,
            &roster(dir.path(), 15),
            &sinks,
        ),
    );
    let custos_run = Custos::start(&["run"], &config);
    assert!(wait_until(Duration::from_secs(60), || ready(&http)));

    // (a) Five incidents arrive with the labels a responder routes on.
    let first: Vec<(String, Vec<u8>)> = (0..5)
        .map(|a| (format!("gone-{a:02}"), event(a, 0)))
        .collect();
    produce(brokers, &topic, &first);
    assert!(
        wait_until(Duration::from_secs(60), || actors_in(&am.alerts()).len()
            == 5),
        "alertmanager holds {:?}",
        am.alerts()
    );
    let alerts = am.alerts();
    for a in &alerts {
        let labels = &a["labels"];
        assert_eq!(labels["alertname"], "CustosIncident", "{a}");
        assert_eq!(labels["severity"], "critical", "{a}");
        assert_eq!(labels["detector"], "termination", "{a}");
        assert_eq!(labels["team"], "privacy", "{a}");
        assert!(
            labels["actor"].as_str().unwrap().starts_with("gone-"),
            "{a}"
        );
        let patient = labels["patient"].as_str().unwrap();
        assert!(
            patient.starts_with("pt_"),
            "a pseudonym, never the MRN: {a}"
        );
        let id = labels["incident_id"].as_str().unwrap();
        assert_eq!(id.len(), 32, "{a}");
        assert!(
            a["generatorURL"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/v1/incidents/{id}")),
            "{a}"
        );
        assert!(
            a["annotations"]["summary"]
                .as_str()
                .unwrap()
                .contains("termination"),
            "{a}"
        );
        assert!(
            a["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("terminated"),
            "{a}"
        );
        assert!(
            a["annotations"]["evidence"]
                .as_str()
                .unwrap()
                .starts_with("ev-"),
            "{a}"
        );
        assert_eq!(a["status"]["state"], "active", "{a}");
        // The link leads to the incident and its evidence's proofs.
        let doc: Value = serde_json::from_str(
            &http_get(&http, &format!("/v1/incidents/{id}")).expect("the generatorURL answers"),
        )
        .unwrap();
        assert_eq!(doc["id"], id);
        assert!(
            doc["evidence_proofs"][0]
                .as_str()
                .unwrap()
                .starts_with("/v1/proof/ev-")
        );
    }

    // (b) Alertmanager down for 60 s while ten more incidents are raised.
    drop(am);
    let down = Instant::now();
    for a in 5..15 {
        produce(brokers, &topic, &[(format!("gone-{a:02}"), event(a, 0))]);
        std::thread::sleep(Duration::from_secs(4));
    }
    let depth = r#"custos_outbox_depth{sink="am"}"#;
    assert!(
        wait_until(Duration::from_secs(20), || metric(&http, depth)
            == Some(10.0)),
        "the ten revisions wait in the outbox: depth {:?}",
        metric(&http, depth)
    );
    assert_eq!(
        metric(&http, r#"custos_outbox_depth{sink="log"}"#),
        Some(0.0)
    );
    let failures = metric(
        &http,
        r#"custos_alert_delivery_failures_total{kind="unavailable",sink="am"}"#,
    )
    .unwrap_or(0.0);
    assert!(failures >= 5.0, "retried while down: {failures} failures");
    if let Some(rest) = Duration::from_secs(60).checked_sub(down.elapsed()) {
        std::thread::sleep(rest);
    }
    // From the restart, not from ready: custos retries while it starts.
    let back = Instant::now();
    let am = Alertmanager::start(dir.path(), &am_addr);
    assert!(
        wait_until(Duration::from_secs(30), || actors_in(&am.alerts()).len()
            == 15),
        "after the outage alertmanager holds {:?}",
        actors_in(&am.alerts())
    );
    let caught_up = back.elapsed();
    // Exactly once in the outbox's accounting: 15 revisions appended, each
    // delivered once to each sink, nothing left.
    assert!(wait_until(Duration::from_secs(10), || metric(&http, depth)
        == Some(0.0)));
    assert_eq!(metric(&http, "custos_outbox_appended_total"), Some(15.0));
    assert_eq!(
        metric(&http, r#"custos_outbox_delivered_total{sink="am"}"#),
        Some(15.0)
    );
    assert_eq!(
        metric(&http, r#"custos_outbox_delivered_total{sink="log"}"#),
        Some(15.0)
    );
    assert_eq!(metric(&http, "custos_incidents_open"), Some(15.0));
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(
        (lines.len(), ids.len()),
        (15, 15),
        "one revision per incident"
    );
    let status = custos_run.terminate();
    assert!(status.success());
    eprintln!(
        "alertmanager outage test: caught up {:.1}s after the restart; {:.0}s in all",
        caught_up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// The `q` quantile of histogram `name{sink=...}` on `/metrics`, by linear
/// interpolation inside its bucket (as PromQL's `histogram_quantile`).
fn histogram_quantile(http: &str, name: &str, sink: &str, q: f64) -> Option<f64> {
    let text = http_get(http, "/metrics")?;
    let prefix = format!("{name}_bucket{{");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&format!("sink=\"{sink}\"")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            return Some(lower + (le - lower) * (rank - below) / (count - below).max(1.0));
        }
        (lower, below) = (le, count);
    }
    None
}

/// 300 incidents, one event each, produced one by one at 50 per second to
/// `custos run` with a live Alertmanager: every one must arrive. Prints
/// the figures (`cargo test --release --test alerting -- --nocapture
/// delivery_latency`), not checked against any time: per incident, the
/// time from producing its event to
/// Alertmanager receiving its alert (Alertmanager's `updatedAt`: Kafka,
/// decode, detection, correlation, outbox fsync and the POST), and custos's
/// own histogram of revision made → delivered.
#[test]
fn alertmanager_delivery_latency_figures() {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    const INCIDENTS: usize = 300;
    const PER_SEC: u64 = 50;
    let brokers = kafka();
    let topic = unique("custos-it-alert-latency");
    let group = unique("custos-it-alert-latency-group");
    create_topics(brokers, &[&topic], 1);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let am_addr = free_addr();
    let am = Alertmanager::start(dir.path(), &am_addr);
    let http = free_addr();
    // resend_secs far beyond the run: each alert is posted once, so its
    // `updatedAt` is when Alertmanager first got it.
    let sinks = format!(
        "[[sinks]]\ntype = \"alertmanager\"\nname = \"am\"\nurl = \"http://{am_addr}\"\nresend_secs = 600\n"
    );
    let config = write_config(
        dir.path(),
        &store,
        &config_body(
            brokers,
            &group,
            &topic,
            &http,
            &roster(dir.path(), INCIDENTS),
            &sinks,
        ),
    );
    let custos_run = Custos::start(&["run"], &config);
    assert!(wait_until(Duration::from_secs(60), || ready(&http)));
    // Let the consumer's assignment settle before the clock starts.
    std::thread::sleep(Duration::from_secs(2));

    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut sent = std::collections::HashMap::new();
    rt.block_on(async {
        let start = tokio::time::Instant::now();
        let mut pending = Vec::new();
        for a in 0..INCIDENTS {
            tokio::time::sleep_until(start + Duration::from_millis(a as u64 * 1000 / PER_SEC))
                .await;
            let key = format!("gone-{a:02}");
            let payload = event(a, 0);
            sent.insert(key.clone(), chrono::Utc::now());
            let record = FutureRecord::to(&topic).key(&key).payload(&payload);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for p in pending {
            p.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    });
    assert!(
        wait_until(Duration::from_secs(60), || actors_in(&am.alerts()).len()
            == INCIDENTS),
        "alertmanager holds {} of {INCIDENTS}",
        actors_in(&am.alerts()).len()
    );
    let mut ms: Vec<f64> = am
        .alerts()
        .iter()
        .map(|a| {
            let actor = a["labels"]["actor"].as_str().unwrap();
            let got = chrono::DateTime::parse_from_rfc3339(a["updatedAt"].as_str().unwrap())
                .unwrap()
                .to_utc();
            (got - sent[actor]).num_microseconds().unwrap() as f64 / 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let hist =
        |q| histogram_quantile(&http, "custos_alert_delivery_seconds", "am", q).unwrap() * 1e3;
    eprintln!(
        "alert latency, {INCIDENTS} incidents at {PER_SEC}/s: event produced -> alert in alertmanager: \
         p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; custos_alert_delivery_seconds{{sink=\"am\"}} \
         (revision made -> delivered, bucket-interpolated): p50 {:.1} ms, p99 {:.1} ms",
        at(0.5),
        at(0.99),
        ms[ms.len() - 1],
        hist(0.5),
        hist(0.99),
    );
    assert!(custos_run.terminate().success());
}

/// One request the receiver took: the `x-custos-incident`, signature and
/// authorization headers, and the body.
type Received = (String, Option<String>, Option<String>, Vec<u8>);

/// A webhook receiver that records each body with its signature header,
/// and answers 503 while `down`.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    down: Arc<AtomicBool>,
    _runtime: tokio::runtime::Runtime,
}

impl Receiver {
    fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let down = Arc::new(AtomicBool::new(true));
        let (store, is_down) = (got.clone(), down.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(
                move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let (store, is_down) = (store.clone(), is_down.clone());
                    async move {
                        if is_down.load(Ordering::SeqCst) {
                            return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let h = |n: &str| {
                            headers
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned)
                        };
                        store.lock().unwrap().push((
                            h("x-custos-incident").unwrap_or_default(),
                            h("x-custos-signature"),
                            h("authorization"),
                            body.to_vec(),
                        ));
                        axum::http::StatusCode::NO_CONTENT
                    }
                },
            ),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}/hook"),
            got,
            down,
            _runtime: runtime,
        }
    }
}

fn ingest(config: &Path, input: &Path, env: &[(&str, &str)]) -> Run {
    run(
        &[
            "ingest",
            "--config",
            config.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
        env,
    )
}

#[test]
fn undelivered_outbox_entries_are_delivered_signed_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let receiver = Receiver::start();
    let secret = "s3cr3t-for-the-test";
    let config = write_config(
        dir.path(),
        &store,
        &format!(
            r#"
[http]
enabled = false
[reference]
roster = "{roster}"
[sql_detectors]
enabled = false
[outbox]
close_wait_secs = 1
[[detectors]]
type = "termination"
[[sinks]]
type = "webhook"
url = "{url}"
secret_env = "IT_WEBHOOK_SECRET"
initial_backoff_ms = 50
max_backoff_ms = 200
headers = {{ authorization = "Bearer it-token" }}
"#,
            roster = roster(dir.path(), 4).display(),
            url = receiver.url,
        ),
    );
    let input = dir.path().join("events.jsonl");
    let mut text = String::new();
    for a in 0..4 {
        text.push_str(std::str::from_utf8(&event(a, 0)).unwrap());
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let env = [("IT_WEBHOOK_SECRET", secret)];

    // The receiver is down: the run ends with four undelivered entries.
    let first = ingest(&config, &input, &env);
    assert_eq!(first.code, 0, "{}", first.err);
    assert!(receiver.got.lock().unwrap().is_empty());
    let entries = std::fs::read_dir(store.join("outbox/entries"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    assert_eq!(entries.lines().count(), 4, "four revisions in the outbox");
    assert!(
        !entries.contains("MRN-"),
        "no raw patient identifier reaches the outbox"
    );

    // Up again; a run with nothing new delivers what the outbox holds.
    receiver.down.store(false, Ordering::SeqCst);
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let second = ingest(&config, &empty, &env);
    assert_eq!(second.code, 0, "{}", second.err);
    let got = receiver.got.lock().unwrap().clone();
    assert_eq!(got.len(), 4, "each entry once");
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(ids.len(), 4);
    for (id, signature, auth, body) in &got {
        let expected = format!(
            "sha256={}",
            hex::encode(custos::alert::hmac_sha256(secret.as_bytes(), body))
        );
        assert_eq!(
            signature.as_deref(),
            Some(expected.as_str()),
            "signature over the exact body"
        );
        assert_eq!(auth.as_deref(), Some("Bearer it-token"));
        let doc: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(doc["id"], id.as_str());
        assert_eq!(doc["state"], "open");
        assert_eq!(doc["severity"], "critical");
        assert_eq!(doc["finding"]["detector"], "termination");
        assert!(doc["evidence"][0].as_str().unwrap().starts_with("ev-"));
    }
    let cursor: Value = serde_json::from_str(
        &std::fs::read_to_string(store.join("outbox/cursors/webhook.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cursor["next"], 4);

    // A third run delivers nothing again.
    let third = ingest(&config, &empty, &env);
    assert_eq!(third.code, 0, "{}", third.err);
    assert_eq!(
        receiver.got.lock().unwrap().len(),
        4,
        "nothing delivered twice"
    );
}

#[test]
fn incidents_reach_kafka_as_ocsf_detection_findings() {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let brokers = kafka();
    let topic = unique("custos-it-ocsf");
    create_topics(brokers, &[&topic], 1);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let config = write_config(
        dir.path(),
        &store,
        &format!(
            r#"
[http]
enabled = false
[kafka]
brokers = "{brokers}"
[reference]
roster = "{roster}"
[sql_detectors]
enabled = false
[[detectors]]
type = "termination"
[[detectors]]
type = "access_rate"
[[sinks]]
type = "kafka"
topic = "{topic}"
"#,
            roster = roster(dir.path(), 2).display(),
        ),
    );
    let input = dir.path().join("events.jsonl");
    let text: String = (0..2)
        .map(|a| String::from_utf8(event(a, 0)).unwrap() + "\n")
        .collect();
    std::fs::write(&input, text).unwrap();
    let r = ingest(&config, &input, &[]);
    assert_eq!(r.code, 0, "{}", r.err);

    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("custos-it-ocsf-reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while records.len() < 2 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            let v: Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(
                m.key(),
                v["finding_info"]["uid"].as_str().map(str::as_bytes)
            );
            records.push(v);
        }
    }
    assert_eq!(records.len(), 2, "one Detection Finding per incident");
    for r in &records {
        // Required attributes of the Detection Finding class.
        assert_eq!(r["class_uid"], 2004, "{r}");
        assert_eq!(r["category_uid"], 2, "{r}");
        assert_eq!(r["activity_id"], 1, "{r}");
        assert_eq!(r["type_uid"], 200401, "{r}");
        assert_eq!(r["severity_id"], 5, "critical: {r}");
        assert!(r["time"].as_i64().unwrap() > 1_700_000_000_000, "{r}");
        assert_eq!(r["metadata"]["product"]["name"], "custos");
        assert!(r["metadata"]["version"].as_str().unwrap().starts_with("1."));
        assert!(r["metadata"]["product"]["version"].is_string());
        let info = &r["finding_info"];
        assert_eq!(info["uid"].as_str().unwrap().len(), 32, "{r}");
        assert!(info["title"].as_str().unwrap().contains("gone-"), "{r}");
        assert_eq!(info["analytic"]["name"], "termination");
        assert_eq!(info["analytic"]["type_id"], 1, "a rule: {r}");
        assert!(info["analytic"]["uid"].is_string());
        let evidence = &r["evidences"][0];
        assert!(
            evidence["actor"]["user"]["uid"]
                .as_str()
                .unwrap()
                .starts_with("gone-")
        );
        assert!(
            evidence["data"]["evidence_event_ids"][0]
                .as_str()
                .unwrap()
                .starts_with("ev-")
        );
        assert_eq!(r["resources"][0]["type"], "Patient");
        assert!(
            r["resources"][0]["uid"]
                .as_str()
                .unwrap()
                .starts_with("pt_")
        );
        assert!(!r.to_string().contains("MRN-"), "no raw identifier: {r}");
        assert!(
            r.get("anomaly_analyses").is_none(),
            "a rule has no baseline: {r}"
        );
    }
}

#[test]
fn incident_revisions_are_in_the_ledger_before_any_sink_and_survive_a_crash_between() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let log = dir.path().join("incidents.jsonl");
    let signer = dir.path().join("signer.key");
    let verifier = keygen_checkpoint(signer.to_str().unwrap());
    let verifier_file = dir.path().join("verifier.key");
    std::fs::write(&verifier_file, &verifier).unwrap();
    let config = write_config(
        dir.path(),
        &store,
        &format!(
            r#"
[reference]
roster = "{roster}"
[sql_detectors]
enabled = false
[outbox]
close_wait_secs = 2
[[detectors]]
type = "termination"
[[sinks]]
type = "jsonl"
name = "log"
path = "{log}"
"#,
            roster = roster(dir.path(), 4).display(),
            log = log.display()
        ),
    );
    let input = dir.path().join("events.jsonl");
    let mut text = String::new();
    for a in 0..4 {
        text.push_str(std::str::from_utf8(&event(a, 0)).unwrap());
        text.push('\n');
    }
    std::fs::write(&input, text).unwrap();
    let env = [
        ("CUSTOS_CHECKPOINTS_KEY_FILE", signer.to_str().unwrap()),
        ("CUSTOS_CRASH_AT", "incidents.recorded:1"),
    ];

    // The process dies right after the first revisions are recorded in the
    // ledger, before the outbox (and so any sink) has them.
    let crashed = ingest(&config, &input, &env);
    assert_ne!(
        crashed.code, 0,
        "the crash point was reached: {}",
        crashed.err
    );
    assert!(
        crashed.err.contains("incidents.recorded"),
        "{}",
        crashed.err
    );
    let delivered = |path: &Path| -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    assert!(delivered(&log).is_empty(), "nothing reached a sink");
    let recorded = query(&store, "SELECT id FROM incidents");
    assert!(!recorded.is_empty(), "the ledger holds the revisions");

    // The restart appends what the ledger holds to the outbox, and the
    // replayed input makes the rest: each actor's incident once.
    let again = ingest(&config, &input, &env[..1]);
    assert_eq!(again.code, 0, "{}", again.err);
    let got = delivered(&log);
    let ids: std::collections::BTreeSet<&str> =
        got.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(got.len(), 4, "four revisions delivered: {got:?}");
    assert_eq!(ids.len(), 4, "none twice");

    // Ledger and outbox agree, row for row: outbox entry n is incidents
    // offset n, with the very document the sink got.
    let rows = query(
        &store,
        "SELECT \"offset\", id, revision, state, severity, detector, record FROM incidents ORDER BY \"offset\"",
    );
    assert_eq!(rows.len(), 4);
    for (n, row) in rows.iter().enumerate() {
        assert_eq!(row["offset"], n as i64);
        let record: Value = serde_json::from_str(row["record"].as_str().unwrap()).unwrap();
        assert_eq!(record["incident"], got[n], "row {n} is what the sink got");
        assert_eq!(row["id"], got[n]["id"]);
        assert_eq!(row["state"], "open");
        assert_eq!(row["severity"], "critical");
        assert_eq!(row["detector"], "termination");
        assert!(!row["record"].as_str().unwrap().contains("MRN-"));
    }

    // Verified and signed like events; a delivered revision is provable
    // offline.
    let verify = run(
        &[
            "verify",
            store.to_str().unwrap(),
            "--key",
            verifier_file.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_eq!(verify.code, 0, "{}{}", verify.out, verify.err);
    let report: Value = serde_json::from_str(&verify.out).unwrap();
    assert_eq!(report["incidents"], 4);
    assert_eq!(report["events"], 4);
    assert!(
        report["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["table"] == "incidents" && l["size"] == 4),
        "{report}"
    );
    let proof = run(
        &[
            "prove",
            "--store",
            store.to_str().unwrap(),
            "--table",
            "incidents",
            "--seq",
            "2",
        ],
        &[],
    );
    assert_eq!(proof.code, 0, "{}", proof.err);
    assert!(proof.out.contains(got[2]["id"].as_str().unwrap()));
    let proof_file = dir.path().join("proof.json");
    std::fs::write(&proof_file, &proof.out).unwrap();
    let checked = run(
        &[
            "verify-proof",
            proof_file.to_str().unwrap(),
            "--key",
            verifier_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(checked.code, 0, "{}{}", checked.out, checked.err);
    assert!(
        checked.out.starts_with("inclusion proof OK"),
        "{}",
        checked.out
    );

    // A changed revision in the ledger is named by verify.
    tamper_and_expect_verify_to_name(&store, "incidents/+incidents/0");
}
