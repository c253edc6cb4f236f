//! Incidents as OCSF Detection Findings (class 2004, schema 1.5), and the
//! Kafka sink that produces them.
//!
//! One record per incident revision: `activity_id` 1 (create) for the
//! first, 2 (update) for later ones, 3 (close) for the resolution, so
//! `type_uid` = 200401, 200402, 200403. `finding_info.uid` is the
//! incident id (stable), `finding_info.analytic` names the detector that
//! opened it, `evidences` carries the evidence event ids and the actor,
//! `resources` the patient pseudonym, and `anomaly_analyses` each
//! statistical detector's observed value against its baseline. The Kafka
//! message key is the incident id, so every revision of one incident lands
//! in one partition, in order.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::incident::{Contribution, Incident, State, severity_name};
use super::outbox::Entry;
use super::sink::{BuildContext, Failure, Retry, Sink, SinkError};
use crate::detect::Severity;

/// The OCSF schema version the records follow.
pub const OCSF_VERSION: &str = "1.5.0";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KafkaSinkConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub topic: String,
    /// Bootstrap servers; default `kafka.brokers`.
    #[serde(default)]
    pub brokers: Option<String>,
    /// librdkafka properties; default `kafka.client` (e.g. SASL settings).
    #[serde(default)]
    pub client: Option<BTreeMap<String, String>>,
    #[serde(default = "super::sink::default_timeout")]
    pub timeout_ms: u64,
    #[serde(flatten)]
    pub retry: Retry,
}

impl KafkaSinkConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.topic.is_empty()
            || self.topic.len() > 249
            || !self
                .topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            problems.push(format!("{at}.topic must be a Kafka topic name"));
        }
        if self.timeout_ms == 0 {
            problems.push(format!("{at}.timeout_ms must be at least 1"));
        }
    }
}

fn severity_id(s: Severity) -> u8 {
    match s {
        Severity::Low => 2,
        Severity::Medium => 3,
        Severity::High => 4,
        Severity::Critical => 5,
    }
}

/// OCSF analytic type: 1 rule, 2 behavioral, 3 statistical.
fn analytic_type(detector: &str) -> (u8, &'static str) {
    match detector {
        "access_rate" | "volume" | "pace" | "breadth" | "no_relationship" | "denied_burst"
        | "break_glass" => (3, "Statistical"),
        "off_hours" => (2, "Behavioral"),
        _ => (1, "Rule"),
    }
}

fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

fn analysis(inc: &Incident, c: &Contribution) -> Value {
    json!({
        "analysis_targets": [{"name": inc.actor, "type": "User"}],
        "anomalies": [{
            "observation_parameter": c.detector,
            "observation_type": "Volume Analysis",
            "observations": [{"value": c.observed.to_string()}],
            "observed_pattern": c.summary,
        }],
        "baselines": [{
            "observation_parameter": c.detector,
            "observation_type": "Volume Analysis",
            "observations": [{"value": c.expected.to_string()}],
        }],
    })
}

/// The Detection Finding for one incident revision.
pub fn detection_finding(inc: &Incident, external_url: &str) -> Value {
    let (activity_id, activity_name) = match inc.state {
        State::Open => (1, "Create"),
        State::Updated => (2, "Update"),
        State::Resolved => (3, "Close"),
    };
    let (status_id, status) = match inc.state {
        State::Open => (1, "New"),
        State::Updated => (2, "In Progress"),
        State::Resolved => (4, "Resolved"),
    };
    let (type_id, type_name) = analytic_type(&inc.detector);
    let evidences: Vec<Value> = std::iter::once(json!({
        "actor": {"user": {"uid": inc.actor, "name": inc.actor}},
        "data": {
            "evidence_event_ids": inc.evidence,
            "evidence_total": inc.evidence_total,
        },
    }))
    .collect();
    let mut resources = Vec::new();
    if let Some(p) = &inc.patient {
        resources.push(json!({"type": "Patient", "uid": p, "labels": ["pseudonym"]}));
    }
    let anomalies: Vec<Value> = inc
        .detectors
        .iter()
        .filter(|c| analytic_type(&c.detector).0 == 3 && c.expected > 0.0)
        .map(|c| analysis(inc, c))
        .collect();
    let severity = severity_name(inc.severity);
    let mut record = json!({
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": 200400 + activity_id,
        "type_name": format!("Detection Finding: {activity_name}"),
        "severity_id": severity_id(inc.severity),
        "severity": severity[..1].to_uppercase() + &severity[1..],
        "status_id": status_id,
        "status": status,
        "is_alert": inc.state != State::Resolved,
        "time": millis(inc.raised_at),
        "message": inc.title,
        "count": inc.findings,
        "start_time": millis(inc.first_seen),
        "end_time": millis(inc.last_seen),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {
                "name": "custos",
                "vendor_name": "custos",
                "version": env!("CARGO_PKG_VERSION"),
            },
            "uid": format!("{}-{}", inc.id, inc.revision),
            "correlation_uid": inc.id,
            "log_name": "incidents",
        },
        "finding_info": {
            "uid": inc.id,
            "title": inc.title,
            "desc": inc.detectors.iter().map(|c| format!("{}: {}", c.detector, c.summary)).collect::<Vec<_>>().join("\n"),
            "analytic": {
                "name": inc.detector,
                "uid": inc.detector,
                "type_id": type_id,
                "type": type_name,
            },
            "related_analytics": inc.detectors.iter().map(|c| {
                let (type_id, type_name) = analytic_type(&c.detector);
                json!({"name": c.detector, "uid": c.detector, "type_id": type_id, "type": type_name})
            }).collect::<Vec<_>>(),
            "types": inc.detectors.iter().map(|c| c.detector.clone()).collect::<Vec<_>>(),
            "first_seen_time": millis(inc.first_seen),
            "last_seen_time": millis(inc.last_seen),
            "src_url": format!("{}/v1/incidents/{}", external_url.trim_end_matches('/'), inc.id),
        },
        "evidences": evidences,
        "unmapped": {"revision": inc.revision, "state": inc.state.as_str()},
    });
    if !resources.is_empty() {
        record["resources"] = json!(resources);
    }
    if !anomalies.is_empty() {
        record["anomaly_analyses"] = json!(anomalies);
    }
    if let Some(at) = inc.resolved_at {
        record["unmapped"]["resolved_at"] = json!(millis(at));
    }
    record
}

pub(super) struct KafkaSink {
    producer: FutureProducer,
    topic: String,
    timeout: Duration,
    external_url: String,
}

impl KafkaSink {
    pub(super) fn new(
        name: String,
        config: &KafkaSinkConfig,
        ctx: &BuildContext,
    ) -> Result<Self, SinkError> {
        let mut client = rdkafka::ClientConfig::new();
        for (k, v) in config.client.as_ref().unwrap_or(&ctx.kafka_client) {
            client.set(k, v);
        }
        client
            .set(
                "bootstrap.servers",
                config.brokers.as_deref().unwrap_or(&ctx.kafka_brokers),
            )
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", config.timeout_ms.to_string());
        let producer = client.create().map_err(|e| SinkError::Build {
            sink: name,
            what: e.to_string(),
        })?;
        Ok(KafkaSink {
            producer,
            topic: config.topic.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            external_url: ctx.external_url.clone(),
        })
    }
}

impl Sink for KafkaSink {
    fn max_batch(&self) -> usize {
        256
    }

    fn deliver<'a>(&'a mut self, batch: &'a [Arc<Entry>]) -> BoxFuture<'a, Result<(), Failure>> {
        Box::pin(async move {
            let mut pending = Vec::with_capacity(batch.len());
            for e in batch {
                let body = serde_json::to_vec(&detection_finding(&e.incident, &self.external_url))
                    .expect("records serialize");
                let record = FutureRecord::to(&self.topic)
                    .key(&e.incident.id)
                    .payload(&body);
                match self.producer.send_result(record) {
                    Ok(f) => pending.push(f),
                    Err((e, _)) => return Err(Failure::Retry(e.to_string())),
                }
            }
            let mut failure = None;
            for p in pending {
                match p.await {
                    Ok(Ok(_)) => {}
                    Ok(Err((e, _))) => failure = Some(e.to_string()),
                    Err(_) => failure = Some("the producer was dropped".into()),
                }
            }
            match failure {
                None => Ok(()),
                Some(e) => {
                    let _ = self.producer.flush(self.timeout);
                    Err(Failure::Retry(e))
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::alert::incident::{Correlator, IncidentConfig};
    use crate::detect::Finding;

    fn finding(detector: &str, expected: f64) -> Finding {
        let t = Utc::now();
        Finding {
            detector: detector.into(),
            severity: Severity::Medium,
            actor: "emp-1".into(),
            patient: None,
            model: None,
            window_start: t,
            window_end: t,
            score: 9.0,
            observed: 41.0,
            expected,
            summary: "41 distinct patients in 1 h".into(),
            evidence: vec!["ev-1".into()],
            evidence_total: 41,
        }
    }

    #[test]
    fn a_baseline_detector_gives_an_anomaly_analysis_and_updates_are_type_200402() {
        let mut c = Correlator::new(IncidentConfig::default());
        let now = Utc::now();
        let open = c.observe(finding("breadth", 6.2), now).remove(0);
        let r = detection_finding(&open, "http://custos:9464");
        assert_eq!(r["type_uid"], 200401);
        assert_eq!(r["finding_info"]["analytic"]["type_id"], 3);
        let a = &r["anomaly_analyses"][0];
        assert_eq!(a["analysis_targets"][0]["name"], "emp-1");
        assert_eq!(a["anomalies"][0]["observation_parameter"], "breadth");
        assert_eq!(a["anomalies"][0]["observations"][0]["value"], "41");
        assert_eq!(a["baselines"][0]["observations"][0]["value"], "6.2");
        assert_eq!(
            r["finding_info"]["src_url"],
            format!("http://custos:9464/v1/incidents/{}", open.id)
        );
        assert!(r.get("resources").is_none(), "no patient, no resource");
        let update = c.observe(finding("vip", 0.0), now).remove(0);
        let r = detection_finding(&update, "http://custos:9464");
        assert_eq!(
            (r["activity_id"].as_u64(), r["type_uid"].as_u64()),
            (Some(2), Some(200402))
        );
        assert_eq!(
            r["severity_id"], 4,
            "two detectors agree: medium becomes high"
        );
        assert_eq!(
            r["anomaly_analyses"].as_array().unwrap().len(),
            1,
            "only the baseline detector"
        );
        let closed = c.advance(now + chrono::Duration::days(1), now).remove(0);
        let r = detection_finding(&closed, "http://custos:9464");
        assert_eq!(
            (r["type_uid"].as_u64(), r["status_id"].as_u64()),
            (Some(200403), Some(4))
        );
        assert_eq!(r["is_alert"], false);
    }
}
