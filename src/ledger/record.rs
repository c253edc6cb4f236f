//! The canonical record bytes that the hash chain covers (see
//! `docs/format.md`, "Records"), and their parsing back for verification.
//!
//! Records are canonical JSON (`crate::event::canonical_json`): keys sorted
//! by UTF-8 bytes, no whitespace. The typed Parquet columns are derived from
//! the same data, and [`verify`](super::verify) checks that they agree with
//! the record, so the record alone is the evidence.

use serde_json::{Map, Value};

use super::{ChainId, Origin};
use crate::event::{Body, Event, Reject, canonical_json};

/// The `v` of every record this build writes.
pub const RECORD_VERSION: u64 = 1;

/// Record bytes of an accepted event:
/// `{"event":<Event::canonical()>,"src":{…},"v":1}`.
pub fn event_record(chain: &ChainId, origin: &Origin, event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(br#"{"event":"#);
    out.extend_from_slice(&event.canonical());
    out.extend_from_slice(br#","src":"#);
    canonical_json(&src_value(chain, origin), &mut out);
    out.extend_from_slice(br#","v":1}"#);
    out
}

/// Record bytes of a rejected message: the reason, the detail, and the
/// BLAKE3 and length of the original bytes (and of the Kafka key, if any).
pub fn reject_record(
    chain: &ChainId,
    origin: &Origin,
    key: Option<&[u8]>,
    payload: &[u8],
    reject: &Reject,
) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("detail".into(), Value::String(reject.detail.clone()));
    if let Some(key) = key {
        m.insert("key_blake3".into(), Value::String(blake3_hex(key)));
        m.insert("key_len".into(), Value::from(key.len() as u64));
    }
    m.insert("payload_blake3".into(), Value::String(blake3_hex(payload)));
    m.insert("payload_len".into(), Value::from(payload.len() as u64));
    m.insert(
        "reason".into(),
        Value::String(reject.reason.as_str().into()),
    );
    m.insert("src".into(), src_value(chain, origin));
    m.insert("v".into(), Value::from(RECORD_VERSION));
    let mut out = Vec::with_capacity(256);
    canonical_json(&Value::Object(m), &mut out);
    out
}

pub(crate) fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

fn src_value(chain: &ChainId, origin: &Origin) -> Value {
    let mut m = Map::new();
    if let Some(file) = &origin.file {
        m.insert("file".into(), Value::String(file.clone()));
    }
    if let Some(line) = origin.line {
        m.insert("line".into(), Value::from(line));
    }
    m.insert("offset".into(), Value::from(origin.offset));
    m.insert("partition".into(), Value::from(chain.partition));
    m.insert("stream".into(), Value::String(chain.stream.clone()));
    Value::Object(m)
}

/// The typed columns of an `events` row other than seq/src/record/hash.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventColumns {
    pub id: String,
    pub time_us: i64,
    pub kind: String,
    pub actor_id: String,
    pub actor_role: Option<String>,
    pub actor_dept: Option<String>,
    pub patient: Option<String>,
    pub action: Option<String>,
    pub purpose: Option<String>,
    pub outcome: Option<String>,
    pub records: Option<i64>,
    pub model: Option<String>,
}

impl EventColumns {
    pub fn from_event(e: &Event) -> Self {
        let (outcome, records, model) = match &e.body {
            Body::Access(a) => (Some(a.outcome.clone()), Some(clamp_i64(a.records)), None),
            Body::Inference(i) => (
                None,
                None,
                Some(format!("{}@{}", i.model_id, i.model_version)),
            ),
            Body::Lineage(_) => (None, None, None),
        };
        EventColumns {
            id: e.id.clone(),
            time_us: e.time_micros(),
            kind: e.kind().as_str().to_owned(),
            actor_id: e.actor.id.clone(),
            actor_role: e.actor.role.clone(),
            actor_dept: e.actor.dept.clone(),
            patient: e.patient().map(str::to_owned),
            action: e.action().map(str::to_owned),
            purpose: e.purpose().map(str::to_owned),
            outcome,
            records,
            model,
        }
    }

    /// The columns as an independent verifier derives them from the
    /// `event` object of a record (rules in `docs/format.md`).
    pub fn from_record(ev: &Value) -> Result<Self, String> {
        let text = |v: &Value, name: &str| -> Result<Option<String>, String> {
            match v.get(name) {
                None => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("record field `{name}` is not a string")),
            }
        };
        let required = |v: &Value, name: &str| -> Result<String, String> {
            text(v, name)?.ok_or_else(|| format!("record lacks `{name}`"))
        };
        let time = required(ev, "time")?;
        let time_us = chrono::DateTime::parse_from_rfc3339(&time)
            .map_err(|_| "record `time` is not RFC 3339".to_owned())?
            .timestamp_micros();
        let kind = required(ev, "kind")?;
        let actor = ev.get("actor").ok_or("record lacks `actor`")?;
        let action = match kind.as_str() {
            "lineage" => text(ev, "op")?,
            _ => text(ev, "action")?,
        };
        let records = match ev.get("records") {
            None => None,
            Some(v) => Some(clamp_i64(
                v.as_u64().ok_or("record `records` is not an integer")?,
            )),
        };
        let model = match ev.get("model") {
            None => None,
            Some(m) => Some(format!(
                "{}@{}",
                required(m, "id")?,
                required(m, "version")?
            )),
        };
        Ok(EventColumns {
            id: required(ev, "id")?,
            time_us,
            kind,
            actor_id: required(actor, "id")?,
            actor_role: text(actor, "role")?,
            actor_dept: text(actor, "dept")?,
            patient: text(ev, "patient")?,
            action,
            purpose: text(ev, "purpose")?,
            outcome: text(ev, "outcome")?,
            records,
            model,
        })
    }
}

/// `records` is unsigned in the contract; the column is Int64.
fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The `src` object of a record.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Src {
    pub stream: String,
    pub partition: i64,
    pub offset: i64,
}

/// The fields of a reject record that columns are checked against.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RejectFields {
    pub reason: String,
    pub detail: String,
    pub payload_blake3: String,
    pub payload_len: u64,
    pub key_blake3: Option<String>,
    pub key_len: Option<u64>,
}

/// Parses a record: it must be a JSON object with `v` = 1 and a `src`.
pub(crate) fn parse_record(bytes: &[u8]) -> Result<(Value, Src), String> {
    let value: Value =
        serde_json::from_slice(bytes).map_err(|_| "record is not valid JSON".to_owned())?;
    if value.get("v").and_then(Value::as_u64) != Some(RECORD_VERSION) {
        return Err(format!("record version is not {RECORD_VERSION}"));
    }
    let src = value.get("src").ok_or("record lacks `src`")?;
    let src = Src {
        stream: src
            .get("stream")
            .and_then(Value::as_str)
            .ok_or("record lacks `src.stream`")?
            .to_owned(),
        partition: src
            .get("partition")
            .and_then(Value::as_i64)
            .ok_or("record lacks `src.partition`")?,
        offset: src
            .get("offset")
            .and_then(Value::as_i64)
            .ok_or("record lacks `src.offset`")?,
    };
    Ok((value, src))
}

pub(crate) fn reject_fields(record: &Value) -> Result<RejectFields, String> {
    let s = |name: &str| -> Result<String, String> {
        record
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("record lacks `{name}`"))
    };
    let n = |name: &str| -> Result<u64, String> {
        record
            .get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("record lacks `{name}`"))
    };
    let key_blake3 = record
        .get("key_blake3")
        .map(|_| s("key_blake3"))
        .transpose()?;
    let key_len = record.get("key_len").map(|_| n("key_len")).transpose()?;
    Ok(RejectFields {
        reason: s("reason")?,
        detail: s("detail")?,
        payload_blake3: s("payload_blake3")?,
        payload_len: n("payload_len")?,
        key_blake3,
        key_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Decoder, PseudonymKey, Pseudonymizer, RejectReason};

    fn decode(json: &str) -> Event {
        Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()))
            .decode(json.as_bytes())
            .unwrap()
    }

    #[test]
    fn event_record_wraps_the_canonical_event() {
        let e = decode(
            r#"{"id":"a-1","time":"2026-03-02T09:15:11+01:00","kind":"access","actor":{"id":"emp-1"},"action":"login"}"#,
        );
        let rec = event_record(&ChainId::new("audit", 2), &Origin::kafka(41), &e);
        let want = format!(
            r#"{{"event":{},"src":{{"offset":41,"partition":2,"stream":"audit"}},"v":1}}"#,
            String::from_utf8(e.canonical()).unwrap()
        );
        assert_eq!(String::from_utf8(rec.clone()).unwrap(), want);

        let file = Origin {
            offset: 7,
            file: Some("in/a.jsonl".into()),
            line: Some(8),
        };
        let rec = event_record(&ChainId::file(), &file, &e);
        let text = String::from_utf8(rec.clone()).unwrap();
        assert!(text.ends_with(
            r#""src":{"file":"in/a.jsonl","line":8,"offset":7,"partition":0,"stream":"+file"},"v":1}"#
        ));
        let (value, src) = parse_record(&rec).unwrap();
        assert_eq!(src.offset, 7);
        assert_eq!(
            EventColumns::from_record(&value["event"]).unwrap(),
            EventColumns::from_event(&e)
        );
    }

    #[test]
    fn reject_record_has_sorted_keys_and_digests() {
        let reject = Reject::new(RejectReason::MissingField, "missing `id`");
        let rec = reject_record(
            &ChainId::new("t", 0),
            &Origin::kafka(5),
            Some(b"k"),
            b"{}",
            &reject,
        );
        let want = format!(
            r#"{{"detail":"missing `id`","key_blake3":"{}","key_len":1,"payload_blake3":"{}","payload_len":2,"reason":"missing_field","src":{{"offset":5,"partition":0,"stream":"t"}},"v":1}}"#,
            blake3_hex(b"k"),
            blake3_hex(b"{}")
        );
        assert_eq!(String::from_utf8(rec.clone()).unwrap(), want);
        let (value, _) = parse_record(&rec).unwrap();
        let fields = reject_fields(&value).unwrap();
        assert_eq!(fields.key_len, Some(1));
        assert_eq!(fields.reason, "missing_field");

        let rec = reject_record(&ChainId::new("t", 0), &Origin::kafka(5), None, b"", &reject);
        assert!(!String::from_utf8(rec).unwrap().contains("key_"));
    }

    #[test]
    fn columns_from_the_record_match_columns_from_the_event_for_every_example() {
        let examples = include_str!("../../tests/data/events-v1.jsonl");
        let mut n = 0;
        for line in examples.lines().filter(|l| !l.trim().is_empty()) {
            let e = decode(line);
            let rec = event_record(&ChainId::new("t", 0), &Origin::kafka(n), &e);
            let (value, _) = parse_record(&rec).unwrap();
            assert_eq!(
                EventColumns::from_record(&value["event"]).unwrap(),
                EventColumns::from_event(&e),
                "{line}"
            );
            n += 1;
        }
        assert!(n >= 10);
    }
}
