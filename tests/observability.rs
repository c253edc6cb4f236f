//! custos's own observability, checked with the real tools: its `/metrics`
//! passes `promtool check metrics` and is scraped by a real Prometheus
//! (Debian's `prometheus`, started here on a free port), which answers
//! the number of accepted events; every dashboard expression runs on that
//! Prometheus, and every metric the dashboards and rules name is one
//! custos exports; the rules pass `promtool check rules` and their unit
//! tests; and compose.yaml's stack is consistent (mounted files exist, the
//! configs name services and ports that exist, custos's configuration
//! passes `custos check-config`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

const DASHBOARDS: [&str; 4] = [
    "soc-overview.json",
    "access-anomalies.json",
    "model-security.json",
    "pipeline-health.json",
];

fn tool(path: &str) -> &str {
    assert!(
        Path::new(path).exists(),
        "install Debian's prometheus package (scripts/test does): {path} is missing"
    );
    path
}

/// A real Prometheus scraping `target` every second, killed when dropped.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: custos\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let addr = free_addr();
        let child = Command::new(tool(PROMETHEUS))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let p = Prometheus { child, addr };
        assert!(
            wait_until(Duration::from_secs(30), || http_get(&p.addr, "/-/ready")
                .is_some()),
            "prometheus did not become ready on {}",
            p.addr
        );
        p
    }

    /// `GET /api/v1/query` with `query`: the JSON answer.
    fn query(&self, query: &str) -> Value {
        let path = format!("/api/v1/query?query={}", encode(query));
        http_get(&self.addr, &path)
            .and_then(|b| serde_json::from_str(&b).ok())
            .unwrap_or(Value::Null)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `promtool args…` in `dir`: (success, stdout + stderr).
fn promtool(dir: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = Command::new(tool(PROMTOOL))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The sum of every sample of `name` in an exposition.
fn sum_of(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Metric names an exposition declares (`# TYPE` lines), with the series
/// names a histogram or summary adds.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" || kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// Every custos metric or recording-rule name a PromQL expression uses.
fn names_in(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if ident(bytes[i]) && (i == 0 || !ident(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("custos_") || word.starts_with("custos:") {
                names.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    names
}

fn dashboard(name: &str) -> Value {
    let path = repo().join("dashboards/grafana").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel of a dashboard (rows' nested panels included).
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// (dashboard, panel title, expression) of every query of every dashboard.
fn dashboard_exprs() -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or_default();
                out.push((
                    name.to_owned(),
                    p["title"].as_str().unwrap_or_default().to_owned(),
                    expr.to_owned(),
                ));
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(q) = v["query"]["query"].as_str() {
                out.push((name.to_owned(), format!("variable {}", v["name"]), q.into()));
            }
        }
    }
    out
}

fn yaml(path: &Path) -> serde_norway::Value {
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// (recorded names, every rule expression) of dashboards/rules.yaml.
fn rules() -> (BTreeSet<String>, Vec<(String, String)>) {
    let doc = yaml(&repo().join("dashboards/rules.yaml"));
    let mut recorded = BTreeSet::new();
    let mut exprs = Vec::new();
    for group in doc["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let expr = rule["expr"].as_str().unwrap().to_owned();
            if let Some(record) = rule["record"].as_str() {
                recorded.insert(record.to_owned());
                exprs.push((record.to_owned(), expr));
            } else {
                exprs.push((rule["alert"].as_str().unwrap().to_owned(), expr));
            }
        }
    }
    (recorded, exprs)
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

/// Access events by actors (three of them terminated: one finding each),
/// and a few messages custos must reject.
fn workload(events: usize) -> (Vec<(String, Vec<u8>)>, usize) {
    let mut messages = Vec::new();
    for n in 0..events {
        let actor = if n < 3 {
            format!("gone-{n:02}")
        } else {
            format!("emp-{:03}", n % 40)
        };
        let event = json!({
            "id": format!("obs-{n}"),
            "time": chrono::Utc::now().to_rfc3339(),
            "kind": "access",
            "actor": {"id": actor},
            "action": "read",
            "patient": format!("MRN-{}", n % 97),
        });
        messages.push((actor, event.to_string().into_bytes()));
    }
    for n in 0..4 {
        messages.push((format!("bad-{n}"), b"{not json".to_vec()));
    }
    (messages, events)
}

#[test]
fn metrics_pass_promtool_reach_prometheus_and_cover_dashboards_and_rules() {
    let brokers = kafka();
    let topic = unique("custos-it-observability");
    let group = unique("custos-it-observability-group");
    create_topics(brokers, &[&topic], 2);
    let dir = tempfile::tempdir().unwrap();
    let http = free_addr();
    let config = write_config(
        dir.path(),
        &dir.path().join("store"),
        &format!(
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
dir = "{queries}"
[[detectors]]
type = "termination"
[[detectors]]
type = "access_rate"
[[detectors]]
type = "model_abuse"
[[sinks]]
type = "jsonl"
name = "log"
path = "{log}"
"#,
            roster = roster(dir.path(), 3).display(),
            queries = repo().join("queries/detectors").display(),
            log = dir.path().join("incidents.jsonl").display(),
        ),
    );
    let _custos = Custos::start(&["run"], &config);
    assert!(
        wait_until(Duration::from_secs(60), || ready(&http)),
        "custos did not become ready on {http}"
    );
    let (messages, accepted) = workload(200);
    produce(brokers, &topic, &messages);

    // Everything consumed, the three findings made, per-partition lag
    // reported (librdkafka statistics come every 5 s).
    let scrape = || http_get(&http, "/metrics").unwrap_or_default();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let m = scrape();
            sum_of(&m, "custos_events_accepted_total") == accepted as f64
                && sum_of(&m, "custos_events_rejected_total") == 4.0
                && sum_of(&m, "custos_findings_total") >= 3.0
                && m.contains("custos_consumer_lag{")
                && m.contains("custos_detection_latency_seconds_count{detector=\"termination\"} 3")
        }),
        "custos did not report the workload: {}",
        scrape()
    );
    let text = scrape();
    assert_eq!(sum_of(&text, "custos_partition_messages_total"), 204.0);
    assert_eq!(sum_of(&text, "custos_chains_owned"), 2.0);
    assert_eq!(sum_of(&text, "custos_ledger_verify_ok"), 1.0);
    assert!(
        text.contains("custos_findings_total{detector=\"termination\",severity=\"critical\"} 3"),
        "{text}"
    );

    // (a) The exposition passes promtool's checks (format and lint).
    let (ok, out) = promtool(dir.path(), &["check", "metrics"], Some(&text));
    assert!(ok, "promtool check metrics failed:\n{out}");
    assert!(
        out.trim().is_empty(),
        "promtool check metrics reported problems:\n{out}"
    );

    // (b) A real Prometheus scrapes it and answers the count of accepted
    // events through its HTTP API.
    let prometheus = Prometheus::start(dir.path(), &http);
    let answer = || {
        let v = prometheus.query("sum(custos_events_accepted_total{job=\"custos\"})");
        v["data"]["result"][0]["value"][1]
            .as_str()
            .and_then(|s| s.parse::<f64>().ok())
    };
    assert!(
        wait_until(Duration::from_secs(30), || answer()
            == Some(accepted as f64)),
        "prometheus answers {:?}, custos accepted {accepted}",
        prometheus.query("sum(custos_events_accepted_total)")
    );
    let up = prometheus.query("up{job=\"custos\"}");
    assert_eq!(up["data"]["result"][0]["value"][1], "1", "{up}");

    // (c) Every dashboard query runs on that Prometheus (Grafana's
    // variables replaced by what "All" and the rate interval give).
    for (dash, panel, expr) in dashboard_exprs() {
        if expr.starts_with("label_values(") {
            continue;
        }
        let q = expr
            .replace("$__rate_interval", "1m")
            .replace("\"$job\"", "\".*\"")
            .replace("\"$instance\"", "\".*\"")
            .replace("\"$detector\"", "\".*\"");
        assert!(
            !q.contains('$'),
            "{dash} / {panel}: unreplaced variable in {q}"
        );
        let v = prometheus.query(&q);
        assert_eq!(
            v["status"], "success",
            "{dash} / {panel}: Prometheus refuses {q}: {v}"
        );
    }
    // The SOC overview's headline numbers are real series.
    let findings = prometheus.query("sum(custos_findings_total{severity=\"critical\"})");
    let critical = findings["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok());
    assert!(critical.unwrap_or(0.0) >= 3.0, "{findings}");

    // (d) Every metric a dashboard or rule names is exported by custos or
    // recorded by a rule.
    let exported = exported_names(&text);
    let (recorded, rule_exprs) = rules();
    let mut missing = BTreeMap::new();
    let mut used = BTreeSet::new();
    let exprs = dashboard_exprs()
        .into_iter()
        .map(|(d, p, e)| (format!("{d} / {p}"), e))
        .chain(
            rule_exprs
                .into_iter()
                .map(|(r, e)| (format!("rule {r}"), e)),
        );
    for (place, expr) in exprs {
        for name in names_in(&expr) {
            if !exported.contains(&name) && !recorded.contains(&name) {
                missing.insert(name.clone(), place.clone());
            }
            used.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "dashboards or rules use metrics custos does not export: {missing:#?}"
    );
    // The cross-check saw what it checks: the issue's questions are on a
    // dashboard.
    for name in [
        "custos_partition_messages_total",
        "custos_consumer_lag",
        "custos_events_rejected_total",
        "custos_detection_latency_seconds_bucket",
        "custos_alert_delivery_seconds_bucket",
        "custos_findings_total",
        "custos_incidents_open",
        "custos_outbox_depth",
        "custos_alert_delivery_failures_total",
        "custos_ledger_rows",
        "custos:checkpoint_age_seconds",
        "custos_ledger_verify_ok",
        "custos_detector_keys",
        "custos_dedup_ids",
    ] {
        assert!(used.contains(name), "no dashboard or rule shows {name}");
    }
    // And the names check would catch a missing one.
    assert!(!exported.contains("custos_no_such_metric_total"));
}

#[test]
fn rules_pass_promtool_and_their_unit_tests() {
    let dir = repo().join("dashboards");
    let (ok, out) = promtool(&dir, &["check", "rules", "rules.yaml"], None);
    assert!(ok, "promtool check rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    let (ok, out) = promtool(&dir, &["test", "rules", "rules.test.yaml"], None);
    assert!(ok, "promtool test rules failed:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");

    // Each custos self-alert of the issue is tested firing and silent.
    let tests = std::fs::read_to_string(dir.join("rules.test.yaml")).unwrap();
    let (_, rule_exprs) = rules();
    for alert in [
        "CustosConsumerLagGrowing",
        "CustosOutboxStuck",
        "CustosCheckpointStale",
        "CustosLedgerVerificationFailed",
    ] {
        assert!(
            rule_exprs.iter().any(|(name, _)| name == alert),
            "rules.yaml has no {alert}"
        );
        let mentions = tests.matches(&format!("alertname: {alert}\n")).count();
        assert!(
            mentions >= 2,
            "rules.test.yaml tests {alert} {mentions} time(s); it needs a firing and a silent case"
        );
    }
}

#[test]
fn dashboards_use_a_datasource_variable_everywhere() {
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let d = dashboard(name);
        assert!(
            uids.insert(d["uid"].as_str().unwrap().to_owned()),
            "{name}: uid reused"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let ds = vars
            .iter()
            .find(|v| v["name"] == "datasource")
            .unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(ds["type"], "datasource", "{name}");
        assert_eq!(ds["query"], "prometheus", "{name}");
        let mut queries = 0;
        for p in panels(&d) {
            if p["type"] == "row" {
                continue;
            }
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{name} / {}: the panel does not use the datasource variable",
                p["title"]
            );
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{name} / {}: no query", p["title"]);
            for t in targets {
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}");
                assert!(!t["expr"].as_str().unwrap().is_empty(), "{name}");
                queries += 1;
            }
        }
        for v in vars.iter().filter(|v| v["type"] == "query") {
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        }
        assert!(queries >= 8, "{name}: only {queries} queries");
    }
}

/// (host, port) of `http://host:port/…` or `host:port`.
fn host_port(s: &str) -> (String, u16) {
    let s = s.split_once("://").map_or(s, |(_, rest)| rest);
    let s = s.split('/').next().unwrap();
    let (host, port) = s.rsplit_once(':').unwrap_or_else(|| panic!("{s}: no port"));
    (host.to_owned(), port.parse().unwrap())
}

#[test]
fn compose_stack_is_consistent() {
    let root = repo();
    let mut compose = yaml(&root.join("compose.yaml"));
    // `<<: *anchor` as Compose reads it.
    compose.apply_merge().unwrap();
    let services = compose["services"].as_mapping().unwrap();
    let service = |name: &str| -> &serde_norway::Value {
        services
            .get(name)
            .unwrap_or_else(|| panic!("compose.yaml has no service {name}"))
    };
    // What the issue asks for is there.
    for name in [
        "kafka",
        "custos",
        "workload",
        "prometheus",
        "alertmanager",
        "grafana",
        "minio",
    ] {
        service(name);
    }
    assert!(
        service("kafka")["image"]
            .as_str()
            .unwrap()
            .starts_with("apache/kafka:"),
        "Kafka is the official Apache image"
    );
    let env = |svc: &str, key: &str| -> String {
        service(svc)["environment"][key]
            .as_str()
            .map(str::to_owned)
            .or_else(|| {
                service(svc)["environment"][key]
                    .as_u64()
                    .map(|n| n.to_string())
            })
            .unwrap_or_else(|| panic!("{svc} has no environment {key}"))
    };
    assert!(
        env("kafka", "KAFKA_PROCESS_ROLES").contains("controller"),
        "KRaft"
    );

    // Ports each service declares it listens on.
    let mut listens: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap().to_owned();
        let ports = svc["expose"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|p| p.as_str().unwrap().parse::<u16>().unwrap())
            .collect();
        listens.insert(name, ports);
    }
    let reaches = |what: &str, target: &str| {
        let (host, port) = host_port(target);
        let ports = listens
            .get(&host)
            .unwrap_or_else(|| panic!("{what}: {target} names no compose service"));
        assert!(
            ports.contains(&port),
            "{what}: {target}, but {host} listens on {ports:?}"
        );
    };

    // Each service's own configuration agrees with its `expose`.
    for listener in env("kafka", "KAFKA_LISTENERS").split(',') {
        let port = listener.rsplit(':').next().unwrap();
        reaches("kafka listener", &format!("kafka:{port}"));
    }
    for advertised in env("kafka", "KAFKA_ADVERTISED_LISTENERS").split(',') {
        let (host, port) = host_port(advertised);
        if host == "kafka" {
            reaches("kafka advertised listener", &format!("{host}:{port}"));
        }
    }
    let args = |svc: &str| -> Vec<String> {
        service(svc)["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect()
    };
    let minio = args("minio");
    let at = minio.iter().position(|a| a == "--address").unwrap();
    reaches("minio --address", &format!("minio{}", minio[at + 1]));
    for svc in ["prometheus", "alertmanager"] {
        let listen = args(svc)
            .into_iter()
            .find_map(|a| a.strip_prefix("--web.listen-address=").map(str::to_owned))
            .unwrap_or_else(|| panic!("{svc} sets no --web.listen-address"));
        reaches(svc, &format!("{svc}{listen}"));
    }
    reaches(
        "grafana",
        &format!("grafana:{}", env("grafana", "GF_SERVER_HTTP_PORT")),
    );

    // Every host file or folder mounted exists in the repository; every
    // named volume is declared; every dependency is a service.
    let volumes = compose["volumes"].as_mapping().unwrap();
    let mut mounts: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        for v in svc["volumes"].as_sequence().into_iter().flatten() {
            let spec = v.as_str().unwrap();
            let mut parts = spec.split(':');
            let (source, target) = (parts.next().unwrap(), parts.next().unwrap());
            if source.starts_with("./") || source.starts_with('/') {
                assert!(
                    root.join(source).exists(),
                    "{name} mounts {source}, which is not in the repository"
                );
            } else {
                assert!(
                    volumes.contains_key(source),
                    "{name} mounts volume {source}, which is not declared"
                );
            }
            mounts
                .entry(name.to_owned())
                .or_default()
                .push((source.to_owned(), target.to_owned()));
        }
        let deps: Vec<String> = match &svc["depends_on"] {
            serde_norway::Value::Sequence(s) => {
                s.iter().map(|d| d.as_str().unwrap().to_owned()).collect()
            }
            serde_norway::Value::Mapping(m) => {
                m.keys().map(|d| d.as_str().unwrap().to_owned()).collect()
            }
            _ => Vec::new(),
        };
        for dep in deps {
            assert!(
                listens.contains_key(&dep),
                "{name} depends on unknown {dep}"
            );
        }
        if let serde_norway::Value::Mapping(build) = &svc["build"]
            && let Some(target) = build
                .get("target")
                .and_then(|t: &serde_norway::Value| t.as_str())
        {
            let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
            assert!(
                dockerfile.contains(&format!(" AS {target}\n")),
                "{name} builds Dockerfile target {target}, which does not exist"
            );
        }
    }
    let configs = compose["configs"].as_mapping().unwrap();
    for (name, c) in configs {
        if let Some(file) = c["file"].as_str() {
            assert!(
                root.join(file).exists(),
                "config {name:?}: {file} is missing"
            );
        }
    }
    let mounted_at = |svc: &str, path: &str| -> Option<String> {
        mounts
            .get(svc)
            .into_iter()
            .flatten()
            .find_map(|(source, target)| {
                path.strip_prefix(target.as_str())
                    .filter(|rest| rest.is_empty() || rest.starts_with('/'))
                    .map(|rest| format!("{source}{rest}"))
            })
    };
    let content = |name: &str| -> String {
        configs
            .get(name)
            .and_then(|c| c["content"].as_str())
            .unwrap_or_else(|| panic!("config {name} has no content"))
            .to_owned()
    };

    // Prometheus: scrape targets, Alertmanager, rule files.
    let prom: serde_norway::Value = serde_norway::from_str(&content("prometheus_config")).unwrap();
    let mut scraped = BTreeSet::new();
    for job in prom["scrape_configs"].as_sequence().unwrap() {
        for sc in job["static_configs"].as_sequence().unwrap() {
            for t in sc["targets"].as_sequence().unwrap() {
                let t = t.as_str().unwrap();
                reaches("prometheus scrape target", t);
                scraped.insert(host_port(t).0);
            }
        }
    }
    assert!(
        scraped.contains("custos"),
        "prometheus does not scrape custos"
    );
    for am in prom["alerting"]["alertmanagers"].as_sequence().unwrap() {
        for sc in am["static_configs"].as_sequence().unwrap() {
            for t in sc["targets"].as_sequence().unwrap() {
                reaches("prometheus alertmanager", t.as_str().unwrap());
            }
        }
    }
    for f in prom["rule_files"].as_sequence().unwrap() {
        let f = f.as_str().unwrap();
        let source = mounted_at("prometheus", f)
            .unwrap_or_else(|| panic!("prometheus rule file {f} is not mounted"));
        assert_eq!(source, "./dashboards/rules.yaml");
    }

    // Grafana: provisioning mounted, the data source reaches Prometheus,
    // the dashboard provider's folder holds the four dashboards.
    let provisioning = root.join("dashboards/provisioning");
    let mut datasources = 0;
    for entry in std::fs::read_dir(provisioning.join("datasources")).unwrap() {
        let doc = yaml(&entry.unwrap().path());
        for ds in doc["datasources"].as_sequence().unwrap() {
            assert_eq!(ds["type"], "prometheus");
            reaches("grafana datasource", ds["url"].as_str().unwrap());
            datasources += 1;
        }
    }
    assert_eq!(datasources, 1);
    assert_eq!(
        mounted_at("grafana", "/etc/grafana/provisioning/datasources").as_deref(),
        Some("./dashboards/provisioning/datasources")
    );
    assert_eq!(
        mounted_at("grafana", "/etc/grafana/provisioning/dashboards").as_deref(),
        Some("./dashboards/provisioning/dashboards")
    );
    let providers = yaml(&provisioning.join("dashboards/custos.yaml"));
    for p in providers["providers"].as_sequence().unwrap() {
        let path = p["options"]["path"].as_str().unwrap();
        let source = mounted_at("grafana", path)
            .unwrap_or_else(|| panic!("grafana provider path {path} is not mounted"));
        for d in DASHBOARDS {
            assert!(
                root.join(&source).join(d).exists(),
                "{source}/{d} is missing"
            );
        }
    }
    let home = env("grafana", "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH");
    let home = mounted_at("grafana", &home).unwrap_or_else(|| panic!("{home} is not mounted"));
    assert!(root.join(home).exists());

    // custos: Kafka, the bucket's endpoint, its sinks, its listen port,
    // and the files its configuration names are mounted.
    let custos_toml = content("custos_config");
    let custos: toml::Value = toml::from_str(&custos_toml).unwrap();
    for broker in custos["kafka"]["brokers"].as_str().unwrap().split(',') {
        reaches("custos kafka.brokers", broker);
    }
    let listen = custos["http"]["listen"].as_str().unwrap();
    reaches(
        "custos http.listen",
        &format!("custos:{}", host_port(listen).1),
    );
    assert!(
        custos["store"]["path"]
            .as_str()
            .unwrap()
            .starts_with("s3://"),
        "the compose stack keeps the ledger in S3-compatible storage"
    );
    reaches(
        "custos AWS_ENDPOINT_URL",
        &env("custos", "AWS_ENDPOINT_URL"),
    );
    let bucket = custos["store"]["path"].as_str().unwrap()[5..]
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let init = service("minio-init")["command"][0].as_str().unwrap();
    assert!(
        init.contains(&format!("/{bucket}")),
        "minio-init does not create {bucket}"
    );
    for sink in custos["sinks"].as_array().unwrap() {
        if let Some(url) = sink.get("url").and_then(|u| u.as_str()) {
            reaches("custos sink", url);
        }
    }
    let mut named_files = vec![
        custos["privacy"]["pseudonym_key_file"]
            .as_str()
            .unwrap()
            .to_owned(),
        custos["checkpoints"]["key_file"]
            .as_str()
            .unwrap()
            .to_owned(),
        custos["outbox"]["dir"].as_str().unwrap().to_owned(),
    ];
    for t in custos["reference"].as_table().unwrap().values() {
        named_files.push(t.as_str().unwrap().to_owned());
    }
    for f in &named_files {
        assert!(
            mounted_at("custos", f).is_some(),
            "custos's configuration names {f}, which no volume of the custos service holds"
        );
    }
    let sql_dir = custos["sql_detectors"]["dir"].as_str().unwrap();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    let shipped = sql_dir.strip_suffix("/detectors").unwrap();
    assert!(
        dockerfile.contains(&format!("COPY queries {shipped}\n")),
        "the image does not ship {sql_dir}"
    );
    // The workload reaches Kafka and the topic custos reads.
    let produce = service("workload")["command"][0].as_str().unwrap();
    let topic = custos["kafka"]["topics"][0].as_str().unwrap();
    assert!(produce.contains("-b kafka:9092") && produce.contains(&format!("-t {topic}")));

    // custos accepts its configuration, with the key and workload files
    // the one-shot jobs make (made here the same way).
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let key = run(&["keygen"], &[]);
    assert_eq!(key.code, 0, "{}", key.err);
    std::fs::write(keys.join("pseudonym.key"), key.out.trim()).unwrap();
    keygen_checkpoint(keys.join("checkpoint.key").to_str().unwrap());
    let workload = dir.path().join("workload");
    let generated = run(
        &["gen", "--out", workload.to_str().unwrap(), "--days", "1"],
        &[],
    );
    assert_eq!(generated.code, 0, "{}", generated.err);
    let local = custos_toml
        .replace("/run/custos-keys/", &format!("{}/", keys.display()))
        .replace("/workload/", &format!("{}/", workload.display()))
        .replace("/var/lib/custos/", &format!("{}/", dir.path().display()))
        .replace(
            "/usr/share/custos/queries",
            &root.join("queries").display().to_string(),
        );
    let config = dir.path().join("custos.toml");
    std::fs::write(&config, local).unwrap();
    // Without the tests' key in the environment: the file is the key.
    let check = Command::new(bin())
        .args(["check-config", "--config", config.to_str().unwrap()])
        .env_remove("CUSTOS_PRIVACY_PSEUDONYM_KEY")
        .env("CUSTOS_LOG", "warn")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "custos check-config: {out}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(out.contains("8 detector(s), 2 sink(s)"), "{out}");
}

/// The value of the first `/metrics` line starting with `series`.
fn metric(http: &str, series: &str) -> Option<f64> {
    let text = http_get(http, "/metrics")?;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_manifest_changed_under_a_running_writer_fails_the_ledger_check() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let http = free_addr();
    let config = write_config(
        dir.path(),
        &store,
        &format!(
            "[store]\nflush_interval_ms = 100\n[http]\nlisten = \"{http}\"\n[sql_detectors]\nenabled = false\n"
        ),
    );
    // Input on stdin, kept open: the process keeps running.
    let mut child = Command::new(bin())
        .args(["ingest", "--config", config.to_str().unwrap(), "-"])
        .env("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)
        .env("CUSTOS_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The file source hands lines on in batches of 2,048 (or at the end).
    for (_, payload) in workload(2048).0.iter().take(2048) {
        input.write_all(payload).unwrap();
        input.write_all(b"\n").unwrap();
    }
    input.flush().unwrap();
    let verified = || {
        metric(&http, "custos_ledger_verify_last_timestamp_seconds").unwrap_or(0.0) > 0.0
            && metric(&http, "custos_ledger_rows{table=\"events\"}") == Some(2048.0)
    };
    let passed = wait_until(Duration::from_secs(40), verified);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(
            passed,
            "no head check passed: {:?}",
            http_get(&http, "/metrics")
        );
        assert_eq!(metric(&http, "custos_ledger_verify_ok"), Some(1.0));

        // Someone appends a line to the manifest behind the writer's back.
        let manifest = files_under(&store.join("manifests"))
            .into_iter()
            .next()
            .expect("a manifest");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let last = text.lines().last().unwrap().to_owned();
        std::fs::write(&manifest, format!("{text}{last}\n")).unwrap();

        assert!(
            wait_until(Duration::from_secs(30), || metric(
                &http,
                "custos_ledger_verify_ok"
            ) == Some(0.0)),
            "the changed manifest went unnoticed"
        );
        // One failure per check round since the change (a round every 15 s).
        let failures = metric(&http, "custos_ledger_verify_failures_total{check=\"head\"}");
        assert!(failures.unwrap_or(0.0) >= 1.0, "{failures:?}");
        assert_eq!(
            metric(&http, "custos_ledger_verify_failures_total{check=\"open\"}"),
            Some(0.0)
        );
    }));
    drop(input);
    let _ = child.kill();
    let _ = child.wait();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
