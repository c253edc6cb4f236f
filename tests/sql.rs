//! The SQL surfaces over a real store: the catalog and `custos query`
//! (files, parameters, formats), the read-only guard, the time limit on an
//! explosive join, `POST /v1/sql` with tokens and roles on every `/v1`
//! route, and the PostgreSQL endpoint with the real `psql`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const AUDITOR_TOKEN: &str = "auditor-token-5f0c7d1a9e";
const ANALYST_TOKEN: &str = "analyst-token-77e2b4c0d3";
const AUDITOR_PASSWORD: &str = "pw-ann-correct horse";
const ANALYST_PASSWORD: &str = "pw-bob-battery staple";

fn examples() -> String {
    repo()
        .join("tests/data/events-v1.jsonl")
        .display()
        .to_string()
}

/// A store holding the example events (12 events: 7 access, 2 inference,
/// 3 lineage), signed by a checkpoint key (`signer`, `verifier` beside
/// it).
fn ingested() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let signer = dir.path().join("signer");
    let verifier = keygen_checkpoint(signer.to_str().unwrap());
    std::fs::write(dir.path().join("verifier"), verifier).unwrap();
    let set = format!("store.path={}", store.display());
    let run = run(
        &["ingest", "--set", &set, &examples()],
        &[("CUSTOS_CHECKPOINTS_KEY_FILE", signer.to_str().unwrap())],
    );
    assert_eq!(run.code, 0, "{}", run.err);
    (dir, store)
}

/// `custos query --store STORE args…` with the test pseudonym key.
fn query(store: &Path, args: &[&str]) -> Run {
    let mut all = vec!["query", "--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all, &[])
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn the_catalog_answers_the_auditors_questions_from_the_cli() {
    let (dir, store) = ingested();

    // Each kind has its view; checkpoints are a table.
    let r = query(
        &store,
        &[
            "--format",
            "csv",
            "SELECT (SELECT count(*) FROM access) AS a, (SELECT count(*) FROM inference) AS i, \
             (SELECT count(*) FROM lineage) AS l, (SELECT count(*) FROM checkpoints WHERE \"table\" = 'events') AS c",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "a,i,l,c\n7,2,3,1\n");

    // Lineage edges: every input to every output of each lineage event.
    let r = query(
        &store,
        &[
            "--format",
            "json",
            "SELECT \"from\", \"to\", op, event_id FROM lineage_edges ORDER BY event_id, \"from\"",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let edges = json_lines(&r.out);
    assert_eq!(edges.len(), 5, "{edges:?}");
    assert!(
        edges.iter().any(|e| e["from"] == "dataset:cohort-42"
            && e["to"] == "model:sepsis-risk@3.1.0"
            && e["op"] == "train"),
        "{edges:?}"
    );
    // Patients appear pseudonymized, never raw.
    assert!(!r.out.contains("MRN-"), "{}", r.out);

    // pseudonym() gives exactly what ingest stored.
    let r = query(
        &store,
        &[
            "--format",
            "csv",
            "SELECT count(*) AS n FROM access WHERE patient = pseudonym('MRN-200117')",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "n\n2\n");

    // A saved query with parameters.
    let saved = repo().join("queries/audit/who_opened_patient.sql");
    let r = query(
        &store,
        &[
            "-f",
            saved.to_str().unwrap(),
            "--param",
            "patient=MRN-200117",
            "--param",
            "since=2026-01-01",
            "--format",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let rows = json_lines(&r.out);
    let ids: Vec<&str> = rows
        .iter()
        .map(|r| r["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a-0002", "a-0001"]);
    assert_eq!(rows[1]["purpose"], "TREAT");
    let later = query(
        &store,
        &[
            "-f",
            saved.to_str().unwrap(),
            "--param",
            "patient=MRN-200117",
            "--param",
            "since=2027-01-01",
            "--format",
            "csv",
        ],
    );
    assert_eq!(later.code, 0, "{}", later.err);
    assert_eq!(later.out.lines().count(), 1, "header only: {}", later.out);

    // Datasets derived from the patient, models trained on them, callers.
    let saved = repo().join("queries/audit/patient_data_to_models.sql");
    let r = query(
        &store,
        &[
            "-f",
            saved.to_str().unwrap(),
            "--param",
            "patient=MRN-200117",
            "--format",
            "json",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let rows = json_lines(&r.out);
    let callers: Vec<&str> = rows.iter().map(|r| r["caller"].as_str().unwrap()).collect();
    assert_eq!(callers, ["dr-017", "svc-batch-1"], "{rows:?}");
    assert!(rows.iter().all(|r| r["model"] == "model:sepsis-risk@3.1.0"));

    // A missing parameter is an error, not an empty answer.
    let r = query(&store, &["-f", saved.to_str().unwrap()]);
    assert_ne!(r.code, 0);
    assert!(r.err.contains(":patient"), "{}", r.err);

    // Parquet output reads back.
    let out = dir.path().join("answer.parquet");
    let r = query(
        &store,
        &[
            "--format",
            "parquet",
            "--out",
            out.to_str().unwrap(),
            "SELECT id, time FROM events ORDER BY id",
        ],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let file = std::fs::File::open(&out).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 12);
}

#[test]
fn segments_carry_bloom_filters_on_the_lookup_columns() {
    use parquet::file::reader::FileReader;
    // A synthetic workload, in one segment.
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let synth = run(
        &[
            "synth",
            "--events",
            "20000",
            "--out",
            events.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(synth.code, 0, "{}", synth.err);
    let store = dir.path().join("store");
    let set = format!("store.path={}", store.display());
    let ingest = run(
        &[
            "ingest",
            "--set",
            &set,
            "--set",
            "store.flush_rows=100000",
            events.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(ingest.code, 0, "{}", ingest.err);
    let folder = store.join("events/+file/0");
    let segment = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let file_bytes = std::fs::metadata(&segment).unwrap().len();
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&segment).unwrap())
            .unwrap();
    let group = reader.metadata().row_group(0);
    let column = |name: &str| {
        let at = group
            .columns()
            .iter()
            .position(|c| c.column_path().string() == name)
            .unwrap();
        group.column(at)
    };
    let mut bloom_bytes = 0;
    for name in ["id", "actor_id", "patient"] {
        let c = column(name);
        assert!(
            c.bloom_filter_offset().is_some(),
            "no bloom filter on {name}"
        );
        bloom_bytes += c.bloom_filter_length().unwrap_or(0) as u64;
        assert!(c.statistics().is_some(), "no statistics on {name}");
    }
    assert!(column("record").bloom_filter_offset().is_none());
    // Growing integers as deltas; unique columns without a dictionary, the
    // repetitive ones with one (docs/ledger-format.md, section 5).
    use parquet::basic::Encoding;
    let encodings = |name: &str| column(name).encodings().collect::<Vec<Encoding>>();
    for name in ["seq", "offset", "time"] {
        assert!(
            encodings(name).contains(&Encoding::DELTA_BINARY_PACKED),
            "{name}: {:?}",
            encodings(name)
        );
    }
    for name in ["id", "record"] {
        assert!(
            !encodings(name).contains(&Encoding::RLE_DICTIONARY),
            "{name}: {:?}",
            encodings(name)
        );
    }
    assert!(
        encodings("actor_id").contains(&Encoding::RLE_DICTIONARY),
        "{:?}",
        encodings("actor_id")
    );
    // Sized for the row group, not for a million values.
    eprintln!(
        "bloom filters: {bloom_bytes} bytes of a {file_bytes}-byte segment of 20000 events ({:.1}%)",
        100.0 * bloom_bytes as f64 / file_bytes as f64
    );
    assert!(
        bloom_bytes * 10 < file_bytes,
        "{bloom_bytes} of {file_bytes}"
    );
    // The store still verifies, and a lookup by id finds its row.
    assert!(custos::ledger::verify(&store).unwrap().ok());
    let r = query(
        &store,
        &["--format", "csv", "SELECT id FROM events WHERE seq = 777"],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let id = r.out.lines().nth(1).unwrap().to_owned();
    let r = query(
        &store,
        &[
            "--format",
            "csv",
            &format!("SELECT count(*) AS n FROM events WHERE id = '{id}'"),
        ],
    );
    assert_eq!(r.out, "n\n1\n", "{}", r.err);
}

#[test]
fn only_queries_are_allowed_and_each_refusal_says_why() {
    let (_dir, store) = ingested();
    for (statement, named) in [
        ("CREATE TABLE x (a INT)", "CREATE TABLE"),
        ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
        ("INSERT INTO events SELECT * FROM events", "INSERT"),
        ("DELETE FROM events", "DELETE"),
        ("DROP TABLE events", "DROP TABLE"),
        ("COPY events TO '/tmp/custos-copy.csv'", "COPY"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("RESET datafusion.execution.batch_size", "RESET"),
        (
            "CREATE EXTERNAL TABLE y STORED AS CSV LOCATION '/etc/passwd'",
            "CREATE EXTERNAL TABLE",
        ),
        ("SELECT 1; DROP TABLE events", "one statement at a time"),
    ] {
        let r = query(&store, &[statement]);
        assert_ne!(r.code, 0, "accepted: {statement}");
        assert!(
            r.err.contains("refused") && r.err.contains(named),
            "{statement}: {}",
            r.err
        );
    }
    // Files cannot be read by naming them.
    let r = query(&store, &["SELECT * FROM '/etc/passwd'"]);
    assert_ne!(r.code, 0);
    assert!(!r.out.contains("root:"), "{}", r.out);
    assert!(!Path::new("/tmp/custos-copy.csv").exists());
}

#[test]
fn an_explosive_join_stops_at_the_time_limit_and_the_next_query_runs() {
    let (dir, store) = ingested();
    let config = write_config(
        dir.path(),
        &store,
        "[api]\nquery_timeout_secs = 2\nquery_memory_mb = 64\n",
    );
    let config = config.to_str().unwrap();
    let explosive =
        "SELECT count(*) FROM generate_series(1, 300000) a, generate_series(1, 300000) b";
    let started = Instant::now();
    let r = run(&["query", "--config", config, explosive], &[]);
    let took = started.elapsed();
    assert_ne!(r.code, 0, "the cross join finished: {}", r.out);
    assert!(r.err.contains("time limit"), "{}", r.err);
    assert!(
        took < Duration::from_secs(2 + 4),
        "took {took:?} for a 2 s limit"
    );
    eprintln!("explosive cross join stopped after {took:?} (limit 2 s)");

    // Over the memory limit: a clean error naming it.
    let r = run(
        &[
            "query",
            "--config",
            config,
            "SELECT value % 3000000 AS k, array_agg(value) FROM generate_series(1, 30000000) GROUP BY 1 ORDER BY 1 LIMIT 1",
        ],
        &[],
    );
    assert_ne!(r.code, 0, "{}", r.out);
    assert!(
        r.err.contains("memory limit") || r.err.contains("time limit"),
        "{}",
        r.err
    );
    let r = run(
        &[
            "query",
            "--config",
            config,
            "--format",
            "csv",
            "SELECT count(*) AS n FROM events",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    assert_eq!(r.out, "n\n12\n");
}

/// `custos serve` on free ports with an auditor, an analyst (token and
/// password each) and the test admin; killed when dropped.
struct Served {
    child: Child,
    http: String,
    pg: String,
    store: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(timeout_secs: u64) -> Served {
    serve_with(timeout_secs, "")
}

/// `custos serve` with `api` added to its `[api]` section.
fn serve_with(timeout_secs: u64, api: &str) -> Served {
    let (dir, store) = ingested();
    let http = free_addr();
    let pg = free_addr();
    let salt = "0a1b2c3d";
    let pw = |p: &str| format!("{salt}:{}", sha256_hex(&format!("{salt}{p}")));
    let body = format!(
        "[http]\nlisten = \"{http}\"\n[api]\npg_listen = \"{pg}\"\nquery_timeout_secs = {timeout_secs}\n{api}\n\
         [[api.users]]\nname = \"ann\"\nrole = \"auditor\"\ntoken_sha256 = \"{}\"\npassword_sha256 = \"{}\"\n\
         [[api.users]]\nname = \"bob\"\nrole = \"analyst\"\ntoken_sha256 = \"{}\"\npassword_sha256 = \"{}\"\n",
        sha256_hex(AUDITOR_TOKEN),
        pw(AUDITOR_PASSWORD),
        sha256_hex(ANALYST_TOKEN),
        pw(ANALYST_PASSWORD),
    );
    let config = write_config(dir.path(), &store, &body);
    let child = Command::new(bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)
        .env("CUSTOS_CHECKPOINTS_KEY_FILE", dir.path().join("signer"))
        .env("CUSTOS_LOG", "warn")
        .envs(child_env())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let served = Served {
        child,
        http,
        pg,
        store,
        dir,
    };
    let tls = !api.is_empty() && api.contains("tls_cert");
    assert!(
        wait_until(Duration::from_secs(20), || {
            (tls && std::net::TcpStream::connect(&served.http).is_ok()
                || http_get(&served.http, "/healthz").is_some())
                && std::net::TcpStream::connect(&served.pg).is_ok()
        }),
        "custos serve did not start"
    );
    served
}

fn sql(addr: &str, token: Option<&str>, statement: &str) -> HttpAnswer {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut headers = vec!["Content-Type: application/json"];
    if let Some(a) = &auth {
        headers.push(a);
    }
    let body = serde_json::json!({ "sql": statement }).to_string();
    http_request(addr, "POST", "/v1/sql", &headers, body.as_bytes())
}

fn get(addr: &str, token: Option<&str>, path: &str) -> HttpAnswer {
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
    http_request(addr, "GET", path, &headers, b"")
}

#[test]
fn http_sql_needs_a_token_and_a_role_allowed_for_each_route() {
    let s = serve(30);
    let http = s.http.as_str();

    // Open for scrapers and orchestrators.
    assert_eq!(get(http, None, "/metrics").status, 200);
    assert_eq!(get(http, None, "/healthz").status, 200);

    // Every /v1 route: 401 without credentials or with an unknown token.
    let routes = [
        "/v1/incidents",
        "/v1/incidents/none",
        "/v1/checkpoint",
        "/v1/checkpoints",
        "/v1/proof/a-0001",
        "/v1/proof?seq=0",
        "/v1/consistency?from=1&to=2",
    ];
    for path in routes {
        for token in [None, Some("not-a-token")] {
            let a = get(http, token, path);
            assert_eq!(a.status, 401, "{path} {token:?}: {}", a.text());
            assert!(
                a.header("www-authenticate")
                    .is_some_and(|v| v.starts_with("Bearer"))
            );
        }
    }
    for token in [None, Some("not-a-token")] {
        let a = sql(http, token, "SELECT 1");
        assert_eq!(a.status, 401, "{}", a.text());
    }

    // An analyst: incidents and SQL yes, proofs and checkpoints no, with
    // the reason.
    assert_eq!(get(http, Some(ANALYST_TOKEN), "/v1/incidents").status, 200);
    for path in [
        "/v1/checkpoint",
        "/v1/checkpoints",
        "/v1/proof/a-0001",
        "/v1/proof?seq=0",
        "/v1/consistency?from=1&to=2",
    ] {
        let a = get(http, Some(ANALYST_TOKEN), path);
        assert_eq!(a.status, 403, "{path}: {}", a.text());
        assert!(
            a.json()["error"].as_str().unwrap().contains("analyst"),
            "{}",
            a.text()
        );
    }
    // The auditor reaches them.
    assert_eq!(
        get(http, Some(AUDITOR_TOKEN), "/v1/checkpoints").status,
        200
    );
    assert_eq!(
        get(http, Some(AUDITOR_TOKEN), "/v1/proof/a-0001").status,
        200
    );

    // SQL as an auditor: rows as JSON, pseudonym() allowed.
    let a = sql(
        http,
        Some(AUDITOR_TOKEN),
        "SELECT id, purpose FROM access WHERE patient = pseudonym('MRN-200117') ORDER BY id",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let doc = a.json();
    assert_eq!(doc["row_count"], 2);
    assert_eq!(doc["rows"][0]["id"], "a-0001");
    assert_eq!(doc["columns"][1]["name"], "purpose");

    // As an Arrow IPC stream.
    let a = http_request(
        http,
        "POST",
        "/v1/sql",
        &[
            &format!("Authorization: Bearer {AUDITOR_TOKEN}"),
            "Accept: application/vnd.apache.arrow.stream",
        ],
        b"SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(a.body), None).unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let text = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(text.contains("| lineage   | 3 |"), "{text}");

    // An analyst: aggregate views only; patient-level tables and
    // pseudonym() are 403 with the reason.
    let a = sql(
        http,
        Some(ANALYST_TOKEN),
        "SELECT sum(events) AS n FROM access_daily",
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["rows"][0]["n"], 7);
    for statement in [
        "SELECT patient FROM events",
        "SELECT * FROM access",
        "SELECT count(*) FROM lineage_edges",
        "SELECT * FROM rejects",
        "SELECT pseudonym('MRN-200117')",
    ] {
        let a = sql(http, Some(ANALYST_TOKEN), statement);
        assert_eq!(a.status, 403, "{statement}: {}", a.text());
        let error = a.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.contains("analyst") || error.contains("auditor"),
            "{error}"
        );
    }

    // Read-only for everyone, admin included: 400 with the statement named.
    let a = sql(http, Some(ADMIN_TOKEN), "DROP TABLE events");
    assert_eq!(a.status, 400, "{}", a.text());
    assert!(a.json()["error"].as_str().unwrap().contains("DROP TABLE"));

    // Every statement is counted by surface and outcome.
    let metrics = get(http, None, "/metrics").text();
    assert!(
        metrics.contains("custos_queries_total{outcome=\"forbidden\",surface=\"http\"}"),
        "{metrics}"
    );
}

/// Runs `psql -c statement` against the endpoint; (exit code, stdout,
/// stderr).
fn psql(pg: &str, user: &str, password: &str, statement: &str) -> (i32, String, String) {
    let (host, port) = pg.rsplit_once(':').unwrap();
    let out = Command::new("psql")
        .args([
            "-h", host, "-p", port, "-U", user, "-d", "custos", "-X", "-A", "-t", "-c", statement,
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "prefer")
        .output()
        .expect("psql is installed (scripts/test installs postgresql-client)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn psql_connects_with_a_password_and_is_read_only() {
    let s = serve(2);
    let pg = s.pg.as_str();

    let (code, out, err) = psql(pg, "ann", AUDITOR_PASSWORD, "SELECT count(*) FROM events");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "12");

    let (code, out, err) = psql(
        pg,
        "ann",
        AUDITOR_PASSWORD,
        "SELECT id, purpose, time FROM access WHERE patient = pseudonym('MRN-200117') ORDER BY id",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.starts_with("a-0001|TREAT|2026-03-02 09:14:03.120000+00:00"),
        "{out}"
    );

    // Wrong password, unknown user: an authentication error.
    for (user, password) in [("ann", "wrong"), ("nobody", AUDITOR_PASSWORD)] {
        let (code, _, err) = psql(pg, user, password, "SELECT 1");
        assert_ne!(code, 0);
        assert!(err.contains("password authentication failed"), "{err}");
    }

    // Refused statements, with the reason.
    for (statement, named) in [
        ("CREATE TABLE t (a int)", "CREATE TABLE"),
        ("SET datafusion.execution.batch_size = 1", "SET"),
        ("COPY events TO '/tmp/custos-psql-copy.csv'", "COPY"),
        ("DELETE FROM events", "DELETE"),
    ] {
        let (code, _, err) = psql(pg, "ann", AUDITOR_PASSWORD, statement);
        assert_ne!(code, 0, "accepted: {statement}");
        assert!(
            err.contains("not allowed") && err.contains(named),
            "{statement}: {err}"
        );
    }
    // A client setting is acknowledged (and changes nothing).
    let (code, _, err) = psql(pg, "ann", AUDITOR_PASSWORD, "SET application_name = 'bi'");
    assert_eq!(code, 0, "{err}");

    // The analyst: aggregates yes, patient-level rows no.
    let (code, out, err) = psql(
        pg,
        "bob",
        ANALYST_PASSWORD,
        "SELECT sum(events) FROM access_daily",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "7");
    let (code, _, err) = psql(pg, "bob", ANALYST_PASSWORD, "SELECT patient FROM events");
    assert_ne!(code, 0);
    assert!(err.contains("analyst"), "{err}");

    // Over the time limit: an error, and the connection's next query runs.
    let started = Instant::now();
    let (code, _, err) = psql(
        pg,
        "ann",
        AUDITOR_PASSWORD,
        "SELECT count(*) FROM generate_series(1, 300000) a, generate_series(1, 300000) b",
    );
    assert_ne!(code, 0);
    assert!(err.contains("time limit"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let (code, out, err) = psql(pg, "ann", AUDITOR_PASSWORD, "SELECT count(*) FROM lineage");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "3");
}

fn access_event(id: &str, actor: &str, patient: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"{id}","time":"2026-03-02T09:00:00Z","kind":"access","actor":{{"id":"{actor}","role":"nurse"}},"action":"read","patient":"{patient}","purpose":"TREAT"}}"#
    )
    .into_bytes()
}

#[test]
fn ingest_goes_on_while_a_query_is_over_its_limit() {
    let brokers = kafka();
    let topic = unique("sql-load");
    create_topics(brokers, &[&topic], 1);
    let http = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let config = write_config(
        dir.path(),
        &store,
        &format!(
            "[store]\nflush_interval_ms = 100\n[kafka]\nbrokers = \"{brokers}\"\ngroup_id = \"{group}\"\n\
             topics = [\"{topic}\"]\ndead_letter_topic = \"\"\n[http]\nlisten = \"{http}\"\n\
             [api]\nquery_timeout_secs = 4\nquery_threads = 1\n",
            group = unique("sql-load-group"),
        ),
    );
    let batch = |from: usize, n: usize| -> Vec<(String, Vec<u8>)> {
        (from..from + n)
            .map(|i| {
                let actor = format!("emp-{:03}", i % 7);
                let body = access_event(&format!("ev-{i}"), &actor, &format!("MRN-{i}"));
                (actor, body)
            })
            .collect()
    };
    produce(brokers, &topic, &batch(0, 200));
    let _custos = Custos::start(&["run"], &config);
    assert!(
        wait_until(Duration::from_secs(20), || http_get(&http, "/healthz")
            .is_some()),
        "custos run did not start"
    );
    let count = || -> Option<i64> {
        let a = sql(&http, Some(ADMIN_TOKEN), "SELECT count(*) AS n FROM events");
        (a.status == 200)
            .then(|| a.json()["rows"][0]["n"].as_i64())
            .flatten()
    };
    assert!(
        wait_until(Duration::from_secs(40), || count() == Some(200)),
        "the first batch was not stored: {:?}",
        count()
    );

    // An explosive query takes the only query thread for its 4 s…
    let explosive = {
        let http = http.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let a = sql(
                &http,
                Some(ADMIN_TOKEN),
                "SELECT count(*) FROM generate_series(1, 300000) a, generate_series(1, 300000) b",
            );
            (a.status, a.text(), started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    // …while the second batch is consumed and stored.
    produce(brokers, &topic, &batch(200, 200));
    let ingest_started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || {
            custos::ledger::verify(&store).is_ok_and(|r| r.events == 400)
        }),
        "the second batch was not stored while the query ran"
    );
    let ingest_took = ingest_started.elapsed();
    let (status, text, took) = explosive.join().unwrap();
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("time limit"), "{text}");
    assert!(took < Duration::from_secs(4 + 4), "{took:?}");
    assert!(
        ingest_took + Duration::from_millis(500) < took,
        "the second batch took {ingest_took:?}, the query {took:?}: ingest waited for it"
    );
    eprintln!(
        "second batch stored in {ingest_took:?} while the query ran; query stopped after {took:?}"
    );
    // The next statement runs.
    assert_eq!(count(), Some(400));
}

/// Every statement, from every surface and whatever its outcome, is a row
/// of the ledger's `query_log` before its answer leaves: who, role,
/// surface, the statement (raw identifiers replaced by their pseudonyms),
/// rows, outcome. The rows are signed, verified and provable like events.
#[test]
fn every_statement_on_every_surface_is_recorded_in_the_query_log() {
    let mut served = serve(30);
    let store = served.store.clone();
    let signer = served.dir.path().join("signer");
    let signer_env = [("CUSTOS_CHECKPOINTS_KEY_FILE", signer.to_str().unwrap())];
    let cli = |args: &[&str]| {
        let mut all = vec!["query", "--store", store.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&all, &signer_env)
    };

    let answered = sql(
        &served.http,
        Some(AUDITOR_TOKEN),
        "SELECT count(*) AS n FROM access WHERE patient = pseudonym('MRN-200117')",
    );
    assert_eq!(answered.status, 200, "{}", answered.text());
    let forbidden = sql(&served.http, Some(ANALYST_TOKEN), "SELECT * FROM events");
    assert_eq!(forbidden.status, 403, "{}", forbidden.text());
    let (code, out, err) = psql(
        &served.pg,
        "ann",
        AUDITOR_PASSWORD,
        "SELECT count(*) FROM lineage",
    );
    assert_eq!(code, 0, "{out}{err}");
    // The CLI runs while `serve` holds its chain: it takes another.
    let r = cli(&["--format", "csv", "SELECT 1 AS one"]);
    assert_eq!(r.code, 0, "{}", r.err);
    let r = cli(&["DROP TABLE events"]);
    assert_ne!(r.code, 0);

    // A stopped `serve` signs what it recorded.
    let term = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    assert!(
        wait_until(Duration::from_secs(20), || matches!(
            served.child.try_wait(),
            Ok(Some(_))
        )),
        "serve did not stop on SIGTERM"
    );

    let r = cli(&[
        "--format",
        "json",
        "SELECT who, role, surface, sql, \"rows\", outcome, error, \"partition\", record \
         FROM query_log ORDER BY at",
    ]);
    assert_eq!(r.code, 0, "{}", r.err);
    let rows = json_lines(&r.out);
    let summary: Vec<(&str, &str, &str, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["who"].as_str().unwrap(),
                r["surface"].as_str().unwrap(),
                r["outcome"].as_str().unwrap(),
                r["partition"].as_i64().unwrap(),
            )
        })
        .collect();
    let me = std::env::var("USER").unwrap_or_else(|_| "local".into());
    assert_eq!(
        summary,
        [
            ("ann", "http", "ok", 0),
            ("bob", "http", "forbidden", 0),
            ("ann", "postgres", "ok", 0),
            (me.as_str(), "cli", "ok", 1),
            (me.as_str(), "cli", "refused", 1),
        ],
        "{rows:?}"
    );
    assert_eq!(rows[0]["role"], "auditor");
    assert_eq!(rows[0]["rows"], 1);
    assert_eq!(rows[1]["role"], "analyst");
    assert!(rows[1]["rows"].is_null());
    assert!(
        rows[1]["error"].as_str().unwrap().contains("events"),
        "{rows:?}"
    );
    assert!(
        rows[4]["sql"]
            .as_str()
            .unwrap()
            .contains("DROP TABLE events")
    );
    // The raw identifier became its pseudonym in the statement, the
    // record and the error messages.
    assert!(!r.out.contains("MRN-"), "{}", r.out);
    let lookup = cli(&["--format", "csv", "SELECT pseudonym('MRN-200117') AS p"]);
    assert_eq!(lookup.code, 0, "{}", lookup.err);
    let pseudonym = lookup.out.lines().nth(1).unwrap().to_owned();
    let logged = rows[0]["sql"].as_str().unwrap();
    assert!(logged.contains(&format!("'{pseudonym}'")), "{logged}");

    // Signed (serve at its stop, each CLI run at once), verified, provable.
    // `serve` held +queries/0 while the first CLI runs took +queries/1;
    // once it stopped, the CLI took the lowest free chain again.
    let signed = cli(&[
        "--format",
        "csv",
        "SELECT \"partition\", max(size) AS size FROM checkpoints \
         WHERE \"table\" = 'query_log' GROUP BY \"partition\" ORDER BY \"partition\"",
    ]);
    assert_eq!(signed.code, 0, "{}", signed.err);
    assert_eq!(signed.out, "partition,size\n0,5\n1,2\n", "{}", signed.out);
    let verifier = served.dir.path().join("verifier");
    let verify = run(
        &[
            "verify",
            store.to_str().unwrap(),
            "--key",
            verifier.to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert_eq!(verify.code, 0, "{}{}", verify.out, verify.err);
    let report: Value = serde_json::from_str(&verify.out).unwrap();
    assert_eq!(report["queries"], 8, "{report}");
    let proof = run(
        &[
            "prove",
            "--store",
            store.to_str().unwrap(),
            "--table",
            "query_log",
            "--seq",
            "1",
            "--stream",
            "+queries",
            "--partition",
            "0",
        ],
        &[],
    );
    assert_eq!(proof.code, 0, "{}", proof.err);
    let shown: Value = serde_json::from_str(&proof.out).unwrap();
    assert_eq!(shown["table"], "query_log", "{shown}");
    assert!(
        shown["record"]
            .as_str()
            .unwrap()
            .contains("\"who\":\"bob\""),
        "{shown}"
    );
    let proof_file = served.dir.path().join("proof.json");
    std::fs::write(&proof_file, &proof.out).unwrap();
    let checked = run(
        &[
            "verify-proof",
            proof_file.to_str().unwrap(),
            "--key",
            verifier.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(checked.code, 0, "{}{}", checked.out, checked.err);

    // A changed entry is named by verify.
    tamper_and_expect_verify_to_name(&store, "query_log/+queries/0");
}

/// With a certificate configured, the HTTP API and the PostgreSQL endpoint
/// speak TLS only: real clients (curl, psql) that check the certificate
/// get answers; cleartext is refused.
#[test]
fn with_a_certificate_both_endpoints_serve_tls_only() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = (certs.path().join("cert.pem"), certs.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
        ])
        .output()
        .expect("openssl is installed");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let served = serve_with(
        30,
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"",
            cert.display(),
            key.display()
        ),
    );

    // HTTPS, with the certificate checked.
    let curl = |extra: &[&str], url: &str| {
        let body = serde_json::json!({ "sql": "SELECT count(*) AS n FROM access" }).to_string();
        let mut cmd = Command::new("curl");
        cmd.args([
            "-sS",
            "--max-time",
            "20",
            "-H",
            "Content-Type: application/json",
        ])
        .args(["-H", &format!("Authorization: Bearer {AUDITOR_TOKEN}")])
        .args(["--data", &body])
        .args(extra)
        .arg(url);
        cmd.output().expect("curl is installed")
    };
    let https = format!("https://{}/v1/sql", served.http);
    let answered = curl(&["--cacert", cert.to_str().unwrap()], &https);
    assert!(
        answered.status.success(),
        "{}",
        String::from_utf8_lossy(&answered.stderr)
    );
    let v: Value = serde_json::from_slice(&answered.stdout).unwrap();
    assert_eq!(v["rows"][0]["n"], 7, "{v}");
    // Not trusted without the certificate; no answer in cleartext.
    let untrusted = curl(&[], &https);
    assert!(!untrusted.status.success());
    let clear = curl(&[], &format!("http://{}/v1/sql", served.http));
    assert!(
        !clear.status.success() || !String::from_utf8_lossy(&clear.stdout).contains("rows"),
        "{}",
        String::from_utf8_lossy(&clear.stdout)
    );

    // psql over TLS, checking the certificate and the host name.
    let (host, port) = served.pg.rsplit_once(':').unwrap();
    let psql = |mode: &str| {
        Command::new("psql")
            .args([
                "-h", host, "-p", port, "-U", "ann", "-d", "custos", "-X", "-A", "-t",
            ])
            .args(["-c", "SELECT count(*) FROM lineage"])
            .env("PGPASSWORD", AUDITOR_PASSWORD)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGSSLMODE", mode)
            .env("PGSSLROOTCERT", &cert)
            .output()
            .expect("psql is installed")
    };
    let verified = psql("verify-full");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&verified.stdout).trim(), "3");
    let clear = psql("disable");
    assert!(!clear.status.success());
    let why = String::from_utf8_lossy(&clear.stderr);
    assert!(why.contains("requires TLS"), "{why}");
}
