//! Alert sinks: JSON lines to stdout or a file, and a webhook.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Alert;
use crate::metrics::metrics;

/// The closed list of sink types the configuration may name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// One JSON object per line; `path = "-"` is standard output.
    Jsonl {
        #[serde(default = "stdout_path")]
        path: String,
    },
    Webhook(WebhookConfig),
}

fn stdout_path() -> String {
    "-".into()
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig::Jsonl {
            path: stdout_path(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// Attempts per alert before it is counted as failed.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    #[serde(default = "default_backoff")]
    pub initial_backoff_ms: u64,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Extra headers (e.g. an authorization token).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_attempts() -> u32 {
    8
}
fn default_backoff() -> u64 {
    200
}
fn default_timeout() -> u64 {
    5_000
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open alert file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build the webhook client: {0}")]
    Client(String),
}

impl SinkConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        match self {
            SinkConfig::Jsonl { path } if path.is_empty() => problems.push(format!(
                "{at}.path must not be empty (use \"-\" for stdout)"
            )),
            SinkConfig::Jsonl { .. } => {}
            SinkConfig::Webhook(w) => {
                match reqwest::Url::parse(&w.url) {
                    Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                    _ => problems.push(format!("{at}.url must be an http(s) URL")),
                }
                if w.max_attempts == 0 {
                    problems.push(format!("{at}.max_attempts must be at least 1"));
                }
                if w.timeout_ms == 0 {
                    problems.push(format!("{at}.timeout_ms must be at least 1"));
                }
            }
        }
    }

    /// The sink's type, as a metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Jsonl { .. } => "jsonl",
            SinkConfig::Webhook(_) => "webhook",
        }
    }

    pub(super) fn build(&self) -> Result<Sink, SinkError> {
        Ok(match self {
            SinkConfig::Jsonl { path } if path == "-" => Sink::Jsonl {
                name: "jsonl",
                out: Box::new(std::io::stdout()),
            },
            SinkConfig::Jsonl { path } => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| SinkError::Open {
                        path: path.into(),
                        source,
                    })?;
                Sink::Jsonl {
                    name: "jsonl",
                    out: Box::new(file),
                }
            }
            SinkConfig::Webhook(w) => {
                let client = reqwest::Client::builder()
                    .timeout(Duration::from_millis(w.timeout_ms))
                    .build()
                    .map_err(|e| SinkError::Client(e.to_string()))?;
                Sink::Webhook {
                    client,
                    config: w.clone(),
                }
            }
        })
    }
}

pub(super) enum Sink {
    Jsonl {
        name: &'static str,
        out: Box<dyn Write + Send>,
    },
    Webhook {
        client: reqwest::Client,
        config: WebhookConfig,
    },
}

/// Delivers every alert from `rx` until the queue closes.
pub(super) async fn run(mut sink: Sink, mut rx: mpsc::Receiver<Alert>) {
    while let Some(alert) = rx.recv().await {
        match &mut sink {
            Sink::Jsonl { name, out } => {
                let mut line = serde_json::to_vec(&alert).expect("alerts serialize");
                line.push(b'\n');
                let outcome = match out.write_all(&line).and_then(|_| out.flush()) {
                    Ok(()) => "ok",
                    Err(e) => {
                        tracing::error!(sink = *name, error = %e, "cannot write alert");
                        "failed"
                    }
                };
                count(name, outcome);
            }
            Sink::Webhook { client, config } => deliver(client, config, &alert).await,
        }
    }
}

fn count(sink: &str, outcome: &str) {
    metrics()
        .alert_deliveries
        .with_label_values(&[sink, outcome])
        .inc();
}

async fn deliver(client: &reqwest::Client, config: &WebhookConfig, alert: &Alert) {
    let body = serde_json::to_vec(alert).expect("alerts serialize");
    let mut backoff = Duration::from_millis(config.initial_backoff_ms);
    for attempt in 1..=config.max_attempts {
        let mut req = client
            .post(&config.url)
            .header("content-type", "application/json")
            .header("x-custos-alert-id", &alert.id)
            .body(body.clone());
        for (k, v) in &config.headers {
            req = req.header(k, v);
        }
        let error = match req.send().await {
            Ok(resp) if resp.status().is_success() => {
                count("webhook", "ok");
                return;
            }
            Ok(resp) => format!("status {}", resp.status().as_u16()),
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
                text
            }
        };
        if attempt == config.max_attempts {
            count("webhook", "failed");
            tracing::error!(alert = %alert.id, attempts = attempt, %error, "webhook delivery failed");
            return;
        }
        count("webhook", "retry");
        tracing::warn!(alert = %alert.id, attempt, %error, "webhook delivery failed; retrying");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}
