//! Sinks: where incident revisions go. Each configured sink (`[[sinks]]`,
//! `type = ...`) is built into a [`Sink`] that delivers batches of outbox
//! entries and says whether a failure is worth retrying.
//!
//! Types: `jsonl` (stdout or a file), `webhook` (JSON, HMAC-signed,
//! optionally Slack-compatible text), `alertmanager` (API v2) and `kafka`
//! (OCSF Detection Finding). A sink never loses an entry on its own: the
//! task that drives it ([`super::run_sink`]) retries with capped backoff,
//! and only a refusal (4xx) repeated `max_attempts` times sets an entry
//! aside in the outbox's `refused/` folder.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::alertmanager::{AlertmanagerConfig, AlertmanagerSink};
use super::ocsf::{KafkaSink, KafkaSinkConfig};
use super::outbox::Entry;

/// The closed list of sink types the configuration may name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// One incident revision per line; `path = "-"` is standard output.
    Jsonl(JsonlConfig),
    Webhook(WebhookConfig),
    Alertmanager(AlertmanagerConfig),
    Kafka(KafkaSinkConfig),
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig::Jsonl(JsonlConfig::default())
    }
}

/// Retry policy shared by every sink type.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retry {
    /// First wait after a failed delivery; doubles up to `max_backoff_ms`.
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
    /// A delivery the receiver refuses (4xx other than 408 and 429) is
    /// tried this many times, then set aside in the outbox's `refused/`
    /// folder. Unreachable receivers and 5xx are retried without limit.
    pub max_attempts: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial_backoff_ms: 200,
            max_backoff_ms: 30_000,
            max_attempts: 8,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonlConfig {
    /// The sink's name (metric label, cursor file); default `jsonl`.
    pub name: Option<String>,
    pub path: String,
    #[serde(flatten)]
    pub retry: Retry,
}

impl Default for JsonlConfig {
    fn default() -> Self {
        JsonlConfig {
            name: None,
            path: "-".into(),
            retry: Retry::default(),
        }
    }
}

/// How a webhook body is shaped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The incident revision as JSON.
    #[default]
    Json,
    /// `{"text": "..."}`, which Slack (and Mattermost, Teams' Slack
    /// connector) incoming webhooks take.
    Slack,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WebhookConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Extra headers (e.g. an authorization token).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The HMAC-SHA256 key of `X-Custos-Signature: sha256=<hex>` over the
    /// body; or `secret_file` (a file holding it) or `secret_env` (the name
    /// of an environment variable holding it). None: no signature.
    #[serde(default)]
    pub secret: Option<crate::config::Secret>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
    #[serde(flatten)]
    pub retry: Retry,
}

pub(super) fn default_timeout() -> u64 {
    5_000
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open alert file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sink {sink}: {what}")]
    Build { sink: String, what: String },
}

impl SinkConfig {
    /// The sink's name: its `name`, else its type.
    pub fn name(&self) -> String {
        let (name, kind) = match self {
            SinkConfig::Jsonl(c) => (&c.name, "jsonl"),
            SinkConfig::Webhook(c) => (&c.name, "webhook"),
            SinkConfig::Alertmanager(c) => (&c.name, "alertmanager"),
            SinkConfig::Kafka(c) => (&c.name, "kafka"),
        };
        name.clone().unwrap_or_else(|| kind.to_owned())
    }

    pub fn retry(&self) -> Retry {
        match self {
            SinkConfig::Jsonl(c) => c.retry,
            SinkConfig::Webhook(c) => c.retry,
            SinkConfig::Alertmanager(c) => c.retry,
            SinkConfig::Kafka(c) => c.retry,
        }
    }

    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        let name = self.name();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            problems.push(format!(
                "{at}.name `{name}` must be 1 to 64 characters of A-Z a-z 0-9 _ -"
            ));
        }
        let r = self.retry();
        if r.max_attempts == 0 {
            problems.push(format!("{at}.max_attempts must be at least 1"));
        }
        if r.initial_backoff_ms == 0 || r.max_backoff_ms < r.initial_backoff_ms {
            problems.push(format!(
                "{at}: initial_backoff_ms must be at least 1 and at most max_backoff_ms"
            ));
        }
        match self {
            SinkConfig::Jsonl(c) if c.path.is_empty() => problems.push(format!(
                "{at}.path must not be empty (use \"-\" for stdout)"
            )),
            SinkConfig::Jsonl(_) => {}
            SinkConfig::Webhook(w) => {
                check_url(&w.url, &format!("{at}.url"), problems);
                if w.timeout_ms == 0 {
                    problems.push(format!("{at}.timeout_ms must be at least 1"));
                }
                if let Err(e) = w.secret() {
                    problems.push(format!("{at}: {e}"));
                }
                for k in w.headers.keys() {
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                        problems.push(format!("{at}.headers: `{k}` is not a header name"));
                    }
                }
            }
            SinkConfig::Alertmanager(c) => c.validate(at, problems),
            SinkConfig::Kafka(c) => c.validate(at, problems),
        }
    }

    /// Builds the sink. `kafka` gives the `[kafka]` brokers and client
    /// properties a `kafka` sink defaults to.
    pub(super) fn build(&self, ctx: &BuildContext) -> Result<Box<dyn Sink>, SinkError> {
        let name = self.name();
        Ok(match self {
            SinkConfig::Jsonl(c) => {
                let out: Box<dyn Write + Send> = if c.path == "-" {
                    Box::new(std::io::stdout())
                } else {
                    Box::new(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&c.path)
                            .map_err(|source| SinkError::Open {
                                path: c.path.clone().into(),
                                source,
                            })?,
                    )
                };
                Box::new(JsonlSink { out })
            }
            SinkConfig::Webhook(w) => Box::new(WebhookSink::new(name, w)?),
            SinkConfig::Alertmanager(c) => Box::new(AlertmanagerSink::new(name, c, ctx)?),
            SinkConfig::Kafka(c) => Box::new(KafkaSink::new(name, c, ctx)?),
        })
    }
}

/// What sinks may need from the rest of the configuration.
#[derive(Debug, Clone, Default)]
pub struct BuildContext {
    /// `[kafka]` brokers and client properties.
    pub kafka_brokers: String,
    pub kafka_client: BTreeMap<String, String>,
    /// Base URL of custos's HTTP API, for links to the evidence.
    pub external_url: String,
}

pub(super) fn check_url(url: &str, at: &str, problems: &mut Vec<String>) {
    match reqwest::Url::parse(url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
        // Never echo the URL: it may carry a token.
        _ => problems.push(format!("{at} must be an http(s) URL with a host")),
    }
}

impl WebhookConfig {
    /// The signing secret, from whichever place configures it.
    pub fn secret(&self) -> Result<Option<Vec<u8>>, String> {
        match (&self.secret, &self.secret_file, &self.secret_env) {
            (None, None, None) => Ok(None),
            (Some(s), None, None) => Ok(Some(s.0.as_bytes().to_vec())),
            (None, Some(p), None) => std::fs::read_to_string(p)
                .map(|s| Some(s.trim_end().as_bytes().to_vec()))
                .map_err(|e| format!("secret_file {}: {e}", p.display())),
            (None, None, Some(var)) => match std::env::var(var) {
                Ok(s) if !s.is_empty() => Ok(Some(s.into_bytes())),
                _ => Err(format!("secret_env: the variable `{var}` is not set")),
            },
            _ => Err("set only one of secret, secret_file and secret_env".into()),
        }
    }
}

/// Why a delivery failed.
#[derive(Debug)]
pub enum Failure {
    /// Worth retrying as it is: unreachable, timeout, 5xx, 408, 429.
    Retry(String),
    /// The receiver refused it (4xx): retried `max_attempts` times.
    Refused(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Retry(e) | Failure::Refused(e) => f.write_str(e),
        }
    }
}

/// One configured destination.
pub trait Sink: Send {
    /// Entries handed to one `deliver` at most.
    fn max_batch(&self) -> usize;
    /// Delivers `batch` (all or nothing, as far as the cursor goes).
    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Entry>]) -> BoxFuture<'a, Result<(), Failure>>;
    /// Called when idle for [`Sink::refresh_every`]: an Alertmanager sink
    /// re-posts its firing alerts so they do not time out there.
    fn refresh(&mut self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }
    /// The incidents open at start (delivered before a restart), for sinks
    /// that keep state about them.
    fn seed(&mut self, _open: &[super::Incident]) {}
    fn refresh_every(&self) -> Option<Duration> {
        None
    }
}

/// Classifies an HTTP outcome.
pub(super) fn http_outcome(
    result: Result<reqwest::Response, reqwest::Error>,
) -> Result<(), Failure> {
    match result {
        Ok(resp) if resp.status().is_success() => Ok(()),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let what = format!("status {status}");
            if resp.status().is_client_error() && status != 408 && status != 429 {
                Err(Failure::Refused(what))
            } else {
                Err(Failure::Retry(what))
            }
        }
        // Without the URL: it may carry a token.
        Err(e) => {
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            Err(Failure::Retry(text))
        }
    }
}

struct JsonlSink {
    out: Box<dyn Write + Send>,
}

impl Sink for JsonlSink {
    fn max_batch(&self) -> usize {
        256
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Entry>]) -> BoxFuture<'a, Result<(), Failure>> {
        let mut text = Vec::new();
        for e in batch {
            serde_json::to_writer(&mut text, &e.incident).expect("incidents serialize");
            text.push(b'\n');
        }
        let r = self
            .out
            .write_all(&text)
            .and_then(|_| self.out.flush())
            .map_err(|e| Failure::Retry(e.to_string()));
        Box::pin(async move { r })
    }
}

struct WebhookSink {
    client: reqwest::Client,
    config: WebhookConfig,
    secret: Option<Vec<u8>>,
}

impl WebhookSink {
    fn new(name: String, config: &WebhookConfig) -> Result<Self, SinkError> {
        let build = |what: String| SinkError::Build {
            sink: name.clone(),
            what,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| build(e.to_string()))?;
        Ok(WebhookSink {
            client,
            secret: config.secret().map_err(build)?,
            config: config.clone(),
        })
    }
}

/// The text a Slack-compatible webhook shows.
pub fn slack_text(inc: &super::Incident) -> String {
    let mut text = format!(
        "*[{}] {}* — {}\nincident `{}` revision {}",
        super::incident::severity_name(inc.severity).to_uppercase(),
        inc.state.as_str(),
        inc.title,
        inc.id,
        inc.revision
    );
    for c in &inc.detectors {
        text.push_str(&format!("\n• {}: {}", c.detector, c.summary));
    }
    text
}

impl Sink for WebhookSink {
    fn max_batch(&self) -> usize {
        1
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Entry>]) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            for entry in batch {
                let inc = &entry.incident;
                let body = match self.config.format {
                    WebhookFormat::Json => serde_json::to_vec(inc),
                    WebhookFormat::Slack => {
                        serde_json::to_vec(&serde_json::json!({ "text": slack_text(inc) }))
                    }
                }
                .expect("incidents serialize");
                let mut req = self
                    .client
                    .post(&self.config.url)
                    .header("content-type", "application/json")
                    .header("x-custos-incident", &inc.id)
                    .header("x-custos-revision", inc.revision.to_string())
                    .header("x-custos-delivery", entry.n.to_string());
                if let Some(key) = &self.secret {
                    req = req.header(
                        "x-custos-signature",
                        format!("sha256={}", hex::encode(super::hmac::sha256(key, &body))),
                    );
                }
                for (k, v) in &self.config.headers {
                    req = req.header(k, v);
                }
                http_outcome(req.body(body).send().await)?;
            }
            Ok(())
        })
    }
}
