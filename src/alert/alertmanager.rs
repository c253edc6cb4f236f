//! The Prometheus Alertmanager sink (API v2, `POST /api/v2/alerts`).
//!
//! Each incident is one alert. Its labels are what a responder routes on
//! and never change while the incident lives, except `severity` on
//! escalation (then the alert of the old severity is resolved in the same
//! post): `alertname` (`CustosIncident`, or the configured one),
//! `severity`, `detector` (the one that opened it), `actor`, `patient`
//! (pseudonym, when the incident is about one), `incident_id`, plus the
//! configured static `labels`. Annotations carry the title, every
//! detector's reason with its numbers, the evidence event ids and the
//! revision; `generatorURL` links to the incident (with its evidence) in
//! custos's HTTP API.
//!
//! Alertmanager forgets an alert whose `endsAt` passed, so open incidents
//! are posted with `endsAt` = now + 4 × `resend_secs` and re-posted every
//! `resend_secs` while custos runs; a resolved incident is posted with
//! `endsAt` = now.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::incident::{Incident, State, severity_name};
use super::outbox::Entry;
use super::sink::{BuildContext, Failure, Retry, Sink, SinkError, check_url, http_outcome};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertmanagerConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Alertmanager's base URL, e.g. `http://alertmanager:9093`.
    pub url: String,
    #[serde(default = "default_alertname")]
    pub alertname: String,
    /// Static labels added to every alert (e.g. `team = "privacy"`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "default_resend")]
    pub resend_secs: u64,
    #[serde(default = "super::sink::default_timeout")]
    pub timeout_ms: u64,
    /// Extra headers (e.g. an authorization token for a proxy).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(flatten)]
    pub retry: Retry,
}

fn default_alertname() -> String {
    "CustosIncident".into()
}
fn default_resend() -> u64 {
    60
}

impl AlertmanagerConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        check_url(&self.url, &format!("{at}.url"), problems);
        if self.resend_secs == 0 {
            problems.push(format!("{at}.resend_secs must be at least 1"));
        }
        if self.timeout_ms == 0 {
            problems.push(format!("{at}.timeout_ms must be at least 1"));
        }
        let valid = |k: &str| {
            !k.is_empty()
                && !k.starts_with(|c: char| c.is_ascii_digit())
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        for k in self.labels.keys() {
            if !valid(k) {
                problems.push(format!("{at}.labels: `{k}` is not a Prometheus label name"));
            }
        }
    }
}

pub(super) struct AlertmanagerSink {
    client: reqwest::Client,
    endpoint: String,
    config: AlertmanagerConfig,
    external_url: String,
    /// Open incidents delivered, to re-post.
    firing: HashMap<String, Incident>,
}

impl AlertmanagerSink {
    pub(super) fn new(
        name: String,
        config: &AlertmanagerConfig,
        ctx: &BuildContext,
    ) -> Result<Self, SinkError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .build()
            .map_err(|e| SinkError::Build {
                sink: name,
                what: e.to_string(),
            })?;
        Ok(AlertmanagerSink {
            client,
            endpoint: format!("{}/api/v2/alerts", config.url.trim_end_matches('/')),
            config: config.clone(),
            external_url: ctx.external_url.trim_end_matches('/').to_owned(),
            firing: HashMap::new(),
        })
    }

    async fn post(&self, alerts: Vec<Value>) -> Result<(), Failure> {
        let mut req = self.client.post(&self.endpoint).json(&alerts);
        for (k, v) in &self.config.headers {
            req = req.header(k, v);
        }
        http_outcome(req.send().await)
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The alerts that state `inc` (the resolved alert of a previous severity
/// first, when it changed).
pub fn alerts_of(
    inc: &Incident,
    config: &AlertmanagerConfig,
    external_url: &str,
    now: DateTime<Utc>,
) -> Vec<Value> {
    let labels = |severity| {
        let mut l = serde_json::Map::new();
        for (k, v) in &config.labels {
            l.insert(k.clone(), json!(v));
        }
        l.insert("alertname".into(), json!(config.alertname));
        l.insert("severity".into(), json!(severity_name(severity)));
        l.insert("detector".into(), json!(inc.detector));
        l.insert("actor".into(), json!(inc.actor));
        if let Some(p) = &inc.patient {
            l.insert("patient".into(), json!(p));
        }
        l.insert("incident_id".into(), json!(inc.id));
        Value::Object(l)
    };
    let mut description = String::new();
    for c in &inc.detectors {
        description.push_str(&format!(
            "{} ({}, {} finding{}): {}\n",
            c.detector,
            severity_name(c.severity),
            c.findings,
            if c.findings == 1 { "" } else { "s" },
            c.summary
        ));
    }
    let evidence: Vec<&str> = inc.evidence.iter().take(20).map(String::as_str).collect();
    let annotations = json!({
        "summary": inc.title,
        "description": description.trim_end(),
        "detectors": inc.detectors.iter().map(|c| c.detector.as_str()).collect::<Vec<_>>().join(","),
        "evidence": evidence.join(","),
        "evidence_total": inc.evidence_total.to_string(),
        "revision": inc.revision.to_string(),
        "state": inc.state.as_str(),
        "first_seen": time(inc.first_seen),
        "last_seen": time(inc.last_seen),
    });
    let starts = inc.first_seen.min(now);
    let ends = match inc.state {
        State::Resolved => now.max(starts + chrono::Duration::seconds(1)),
        _ => now + chrono::Duration::seconds(4 * config.resend_secs as i64),
    };
    let generator = format!("{external_url}/v1/incidents/{}", inc.id);
    let mut out = Vec::new();
    if let Some(old) = inc
        .previous_severity
        .filter(|_| inc.state != State::Resolved)
    {
        out.push(json!({
            "labels": labels(old),
            "annotations": annotations,
            "startsAt": time(starts),
            "endsAt": time(now.max(starts + chrono::Duration::seconds(1))),
            "generatorURL": generator,
        }));
    }
    out.push(json!({
        "labels": labels(inc.severity),
        "annotations": annotations,
        "startsAt": time(starts),
        "endsAt": time(ends),
        "generatorURL": generator,
    }));
    out
}

impl Sink for AlertmanagerSink {
    fn max_batch(&self) -> usize {
        64
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Entry>]) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let now = Utc::now();
            let alerts: Vec<Value> = batch
                .iter()
                .flat_map(|e| alerts_of(&e.incident, &self.config, &self.external_url, now))
                .collect();
            self.post(alerts).await?;
            for e in batch {
                match e.incident.state {
                    State::Resolved => self.firing.remove(&e.incident.id),
                    _ => self
                        .firing
                        .insert(e.incident.id.clone(), e.incident.clone()),
                };
            }
            Ok(())
        })
    }

    fn seed(&mut self, open: &[Incident]) {
        for inc in open {
            self.firing.insert(inc.id.clone(), inc.clone());
        }
    }

    fn refresh(&mut self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async move {
            if self.firing.is_empty() {
                return Ok(());
            }
            let now = Utc::now();
            let alerts: Vec<Value> = self
                .firing
                .values()
                .flat_map(|inc| {
                    let mut inc = inc.clone();
                    inc.previous_severity = None;
                    alerts_of(&inc, &self.config, &self.external_url, now)
                })
                .collect();
            self.post(alerts).await
        })
    }

    fn refresh_every(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.config.resend_secs))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::alert::incident::{Correlator, IncidentConfig};
    use crate::detect::{Finding, Severity};

    fn finding(detector: &str) -> Finding {
        let t = Utc::now() - chrono::Duration::minutes(5);
        Finding {
            detector: detector.into(),
            severity: Severity::Medium,
            actor: "emp-1".into(),
            patient: Some("pt_1".into()),
            model: None,
            window_start: t,
            window_end: t,
            score: 9.0,
            observed: 41.0,
            expected: 6.0,
            summary: "why".into(),
            evidence: vec!["ev-1".into()],
            evidence_total: 1,
        }
    }

    fn config() -> AlertmanagerConfig {
        serde_json::from_value(serde_json::json!({"url": "http://am:9093"})).unwrap()
    }

    #[test]
    fn an_escalation_resolves_the_alert_of_the_old_severity() {
        let mut c = Correlator::new(IncidentConfig::default());
        let now = Utc::now();
        let open = c.observe(finding("volume"), now).remove(0);
        let alerts = alerts_of(&open, &config(), "http://custos", now);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0]["labels"]["severity"], "medium");
        assert_eq!(alerts[0]["labels"]["patient"], "pt_1");
        let ends = DateTime::parse_from_rfc3339(alerts[0]["endsAt"].as_str().unwrap()).unwrap();
        assert!(ends > now, "open: ends in the future");
        let up = c.observe(finding("vip"), now).remove(0);
        let alerts = alerts_of(&up, &config(), "http://custos", now);
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0]["labels"]["severity"], "medium");
        let ends = DateTime::parse_from_rfc3339(alerts[0]["endsAt"].as_str().unwrap()).unwrap();
        assert!(
            ends <= now + chrono::Duration::seconds(1),
            "the old one resolved"
        );
        assert_eq!(alerts[1]["labels"]["severity"], "high");
        assert_eq!(
            alerts[1]["labels"]["detector"], "volume",
            "the opener stays the label"
        );
        assert_eq!(
            alerts[0]["labels"]["incident_id"],
            alerts[1]["labels"]["incident_id"]
        );
    }
}
