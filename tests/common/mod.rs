//! Shared fixtures for the integration tests: the real Kafka broker, the
//! custos binary, a webhook receiver.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const KEY: &str = "7f3c1d2e4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_custos")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The broker's address. `scripts/test` starts a broker and sets
/// `CUSTOS_TEST_KAFKA_BROKERS`; under a bare `cargo test` the broker is
/// started here (and left running) when none answers.
pub fn kafka() -> &'static str {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS.get_or_init(|| {
        let brokers =
            std::env::var("CUSTOS_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
        let addr: SocketAddr = brokers
            .parse()
            .expect("CUSTOS_TEST_KAFKA_BROKERS is host:port");
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
            let status = Command::new(repo().join("scripts/kafka.sh"))
                .arg("start")
                .status()
                .expect("run scripts/kafka.sh");
            assert!(status.success(), "scripts/kafka.sh start failed");
        }
        brokers
    })
}

/// Environment every custos child of this test binary gets on top (the
/// S3 endpoint of [`moto`], once started).
pub fn child_env() -> Vec<(String, String)> {
    MOTO.get().map(|m| m.env.clone()).unwrap_or_default()
}

/// An S3-compatible server for the tests: moto's standalone server (PyPI
/// `moto[server]`), on a free port, with bucket [`BUCKET`] created. It is
/// stopped when the test binary exits.
pub struct Moto {
    pub endpoint: String,
    /// `AWS_*` variables that point a client at it.
    pub env: Vec<(String, String)>,
}

pub const BUCKET: &str = "custos-test";
static MOTO: OnceLock<Moto> = OnceLock::new();

pub fn moto() -> &'static Moto {
    MOTO.get_or_init(|| {
        // A port picked free may be taken again before moto binds it (other
        // tests start servers too), so a start that never answers like moto
        // is retried on a fresh port.
        let mut failures = Vec::new();
        let addr = (0..3)
            .find_map(|_| match start_moto() {
                Ok(addr) => Some(addr),
                Err(e) => {
                    failures.push(e);
                    None
                }
            })
            .unwrap_or_else(|| {
                panic!(
                    "moto's S3 server did not start (install it with `pip install 'moto[server]'`): {}",
                    failures.join("; ")
                )
            });
        let endpoint = format!("http://{addr}");
        let env = [
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Moto { endpoint, env }
    })
}

/// Starts moto on a free port and creates [`BUCKET`]; the address once a
/// bucket creation has answered 200, else what went wrong.
fn start_moto() -> Result<String, String> {
    use std::io::{Read, Write};
    let addr = free_addr();
    let port = addr.rsplit(':').next().unwrap().to_owned();
    // A watchdog stops the server when this process is gone.
    let script = format!(
        "python3 -m moto.server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
         while kill -0 {pid} 2>/dev/null; do sleep 1; done; kill $m",
        pid = std::process::id()
    );
    // Detached on purpose: the watchdog outlives the handle.
    let watchdog = Command::new("bash")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("start moto: {e}"))?;
    std::mem::forget(watchdog);
    // Create the bucket (moto takes an unsigned PUT), retried while the
    // server is still starting.
    let mut last = String::from("no answer");
    let created = wait_until(Duration::from_secs(30), || {
        let attempt = || -> std::io::Result<String> {
            let mut conn = std::net::TcpStream::connect(&addr)?;
            conn.set_read_timeout(Some(Duration::from_secs(10)))?;
            write!(
                conn,
                "PUT /{BUCKET} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            let mut answer = String::new();
            conn.read_to_string(&mut answer)?;
            Ok(answer)
        };
        match attempt() {
            Ok(answer) if answer.starts_with("HTTP/1.1 200") => true,
            Ok(answer) => {
                last = format!(
                    "create bucket on {addr}: {}",
                    answer.lines().next().unwrap_or("")
                );
                false
            }
            Err(e) => {
                last = format!("create bucket on {addr}: {e}");
                false
            }
        }
    });
    if created { Ok(addr) } else { Err(last) }
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// A custos child process, killed when dropped.
pub struct Custos {
    pub child: Child,
}

impl Custos {
    pub fn start(args: &[&str], config: &Path) -> Custos {
        let child = Command::new(bin())
            .args(args)
            .arg("--config")
            .arg(config)
            .env("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)
            // CUSTOS_TEST_LOG=debug shows a failing test's custos in detail.
            .env(
                "CUSTOS_LOG",
                std::env::var("CUSTOS_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(child_env())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start custos");
        Custos { child }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "custos did not stop within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Custos {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 200 ms until it returns true or `limit` passes.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    check()
}

/// An HTTP receiver that records every JSON body POSTed to it.
pub struct Webhook {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
    /// Requests answered, failures included.
    pub attempts: Arc<std::sync::atomic::AtomicUsize>,
    _runtime: tokio::runtime::Runtime,
}

impl Webhook {
    pub fn start() -> Webhook {
        Webhook::failing_first(0)
    }

    /// A receiver that answers 503 to its first `failures` requests.
    pub fn failing_first(failures: usize) -> Webhook {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(AtomicUsize::new(0));
        let (store, count) = (bodies.clone(), attempts.clone());
        let app = axum::Router::new().route(
            "/alerts",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (store, count) = (store.clone(), count.clone());
                async move {
                    if count.fetch_add(1, Ordering::SeqCst) < failures {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    store.lock().unwrap().push(value);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Webhook {
            url: format!("http://{addr}/alerts"),
            bodies,
            attempts,
            _runtime: runtime,
        }
    }
}

/// Runs the custos binary to completion and returns (exit code, stdout).
pub fn custos(args: &[&str]) -> (i32, String) {
    let out = Command::new(bin())
        .args(args)
        .env("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)
        .env("CUSTOS_LOG", "warn")
        .output()
        .expect("run custos");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// What a finished run of the binary printed.
pub struct Run {
    pub code: i32,
    pub out: String,
    pub err: String,
}

/// Runs the binary to completion with the pseudonym key [`KEY`], HTTP off,
/// `info` logs, no segment key, and `env` on top.
pub fn run(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args)
        .env("CUSTOS_PRIVACY_PSEUDONYM_KEY", KEY)
        .env("CUSTOS_HTTP_ENABLED", "false")
        .env_remove("CUSTOS_STORE_ENCRYPTION_KEY")
        .env_remove("CUSTOS_STORE_ENCRYPTION_KEY_FILE")
        .env("CUSTOS_LOG", "info");
    cmd.envs(child_env());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run custos");
    Run {
        code: out.status.code().unwrap_or(-1),
        out: String::from_utf8_lossy(&out.stdout).into_owned(),
        err: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `custos keygen --checkpoint test.example/custos --out SIGNER`: writes a
/// checkpoint signer key to `signer`, returns the verifier key text.
pub fn keygen_checkpoint(signer: &str) -> String {
    let args = [
        "keygen",
        "--checkpoint",
        "test.example/custos",
        "--out",
        signer,
    ];
    let keygen = run(&args, &[]);
    assert_eq!(keygen.code, 0, "{}", keygen.err);
    keygen.out
}

/// A loopback address with a port free at the time of the call.
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// True once `GET /readyz` on `addr` answers 200.
pub fn ready(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(
        format!("GET /readyz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .is_err()
    {
        return false;
    }
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text.starts_with("HTTP/1.1 200")
}

/// The bearer token of the `test-admin` user [`write_config`] adds to
/// every configuration; [`http_get`] sends it (`/v1` needs one).
pub const ADMIN_TOKEN: &str = "custos-test-admin-token-0123456789abcdef";

/// The body of `GET path` on `addr` (with [`ADMIN_TOKEN`]), if it
/// answered 200.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    if !text.starts_with("HTTP/1.1 200") {
        return None;
    }
    let (head, body) = text.split_once("\r\n\r\n")?;
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    if chunked {
        // Go servers (Alertmanager, Prometheus) stream bodies over ~4 KiB
        // in chunks.
        dechunk(body)
    } else {
        Some(body.to_owned())
    }
}

/// The payload of a chunked HTTP/1.1 body (sizes count bytes, so the
/// chunks are cut as bytes: one may end inside a UTF-8 character).
fn dechunk(body: &str) -> Option<String> {
    String::from_utf8(dechunk_bytes(body.as_bytes())?).ok()
}

/// Creates topics of `partitions` partitions on the broker.
pub fn create_topics(brokers: &str, topics: &[&str], partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = rt
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// Produces (key, payload) messages with an idempotent producer and waits
/// for every acknowledgement.
pub fn produce(brokers: &str, topic: &str, messages: &[(String, Vec<u8>)]) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut pending = Vec::new();
        for (key, payload) in messages {
            let record = FutureRecord::to(topic).key(key).payload(payload);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        for p in pending {
            p.await.unwrap().map_err(|(e, _)| e).unwrap();
        }
    });
}

/// An HTTP/1.1 answer: status, headers (names lowercased), body.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request (`Connection: close`) and reads the whole answer;
/// `headers` are `Name: value` lines.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> HttpAnswer {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk_bytes(&body).expect("a chunked body");
    }
    HttpAnswer {
        status,
        headers,
        body,
    }
}

fn dechunk_bytes(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&body[..line]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        let rest = &body[line + 2..];
        out.extend_from_slice(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

/// The hex SHA-256 of a token, as `token_sha256` holds it.
pub fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Writes `custos.toml` in `dir` from `body`, with `store.path` set to
/// `store` (the body's `[store]` table, if any, must come first), and an
/// `admin` user `test-admin` whose bearer token is [`ADMIN_TOKEN`].
pub fn write_config(dir: &Path, store: &Path, body: &str) -> PathBuf {
    let body = body.replacen("[store]\n", "", 1);
    let mut text = format!(
        "[store]\npath = \"{}\"\n{}",
        store.display(),
        body.trim_start()
    );
    // A store in a bucket keeps its alert outbox in a local folder.
    if store.to_string_lossy().starts_with("s3://") && !text.contains("[outbox]") {
        text.push_str(&format!(
            "\n[outbox]\ndir = \"{}\"\n",
            dir.join("outbox").display()
        ));
    }
    text.push_str(&format!(
        "\n[[api.users]]\nname = \"test-admin\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n",
        sha256_hex(ADMIN_TOKEN)
    ));
    let path = dir.join("custos.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Produces `messages` at about `per_sec` with one idempotent producer, on
/// a background thread (a broker restart only delays it); the thread ends
/// when every message is acknowledged.
pub fn produce_paced(
    brokers: &str,
    topic: &str,
    messages: Vec<(String, Vec<u8>)>,
    per_sec: u64,
) -> std::thread::JoinHandle<()> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let topic = topic.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let chunk = (per_sec / 20).max(1) as usize;
        let started = Instant::now();
        let mut pending = Vec::new();
        for (i, (key, payload)) in messages.iter().enumerate() {
            let record = FutureRecord::to(&topic).key(key).payload(payload);
            pending.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
            if (i + 1) % chunk == 0 {
                let due = Duration::from_secs_f64((i + 1) as f64 / per_sec as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        rt.block_on(async {
            for p in pending {
                p.await.unwrap().map_err(|(e, _)| e).unwrap();
            }
        });
    })
}

/// `custos query --format json SQL` on `store`, run to completion.
fn run_query(store: &Path, sql: &str) -> std::io::Result<std::process::Output> {
    Command::new(bin())
        .args([
            "query",
            "--store",
            store.to_str().unwrap(),
            "--format",
            "json",
            sql,
        ])
        .env("CUSTOS_LOG", "error")
        .envs(child_env())
        .output()
}

/// The rows `custos query --format json` prints for `sql`.
pub fn query(store: &Path, sql: &str) -> Vec<serde_json::Value> {
    let out = run_query(store, sql).unwrap();
    assert!(out.status.success(), "query failed: {sql}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (events stored, distinct event ids); `None` while the store cannot be
/// read (not created yet).
pub fn stored(store: &Path) -> Option<(u64, u64)> {
    let sql = "select count(*) as n, count(distinct id) as ids from events";
    let out = run_query(store, sql).ok()?;
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    Some((row["n"].as_u64()?, row["ids"].as_u64()?))
}

/// SIGKILLs a custos child and reaps it.
pub fn sigkill(custos: &mut Custos) {
    let _ = Command::new("kill")
        .arg("-KILL")
        .arg(custos.child.id().to_string())
        .status();
    custos.child.wait().unwrap();
}

/// Flips one byte in the middle of the first segment of the log folder
/// `log` (relative to `store`, e.g. `incidents/+incidents/0`), then
/// asserts that `custos verify` fails and names that log.
pub fn tamper_and_expect_verify_to_name(store: &Path, log: &str) {
    let segment = std::fs::read_dir(store.join(log))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&segment, bytes).unwrap();
    let tampered = run(&["verify", store.to_str().unwrap(), "--json"], &[]);
    assert_ne!(tampered.code, 0);
    assert!(tampered.out.contains(log), "{}", tampered.out);
}
