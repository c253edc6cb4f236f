//! The canonical record bytes that the Merkle tree leaves cover (see
//! `docs/ledger-format.md`, "Records"), and their parsing back for verification.
//!
//! Records are canonical JSON (`crate::event::canonical_json`): keys sorted
//! by UTF-8 bytes, no whitespace. The typed Parquet columns are derived from
//! the same data, and [`verify`](super::verify) checks that they agree with
//! the record, so the record alone is the evidence.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{ChainId, Origin};
use crate::event::{Body, Event, Reject, canonical_json};

/// The `v` of every record this build writes.
pub const RECORD_VERSION: u64 = 1;

/// How every tombstone custos writes begins (canonical JSON puts `erased`,
/// the least key, first).
const TOMBSTONE_PREFIX: &str = r#"{"erased":""#;

/// Whether a stored record is a tombstone (custos's own, canonical ones).
pub(crate) fn is_tombstone(record: &str) -> bool {
    record.starts_with(TOMBSTONE_PREFIX)
}

/// The record that replaces an erased row's record: the row's leaf hash
/// (so the tree still holds), why and when it was erased, and the row's
/// `src` (its Kafka coordinates), from the record it replaces:
/// `{"erased":"<leaf hex>","erasure":{"reason":…,"time":…},"src":{…},"v":1}`.
pub(crate) fn tombstone_record(
    leaf: &super::Hash,
    reason: &str,
    time: &str,
    original: &str,
) -> Result<String, String> {
    let parsed: Value =
        serde_json::from_str(original).map_err(|e| format!("record does not parse: {e}"))?;
    let src = parsed
        .get("src")
        .filter(|s| s.is_object())
        .ok_or("record lacks `src`")?;
    let mut erasure = Map::new();
    erasure.insert("reason".into(), Value::from(reason));
    erasure.insert("time".into(), Value::from(time));
    let mut tomb = Map::new();
    tomb.insert("erased".into(), Value::from(hex::encode(leaf)));
    tomb.insert("erasure".into(), Value::Object(erasure));
    tomb.insert("src".into(), src.clone());
    tomb.insert("v".into(), Value::from(RECORD_VERSION));
    let mut out = Vec::with_capacity(256);
    canonical_json(&Value::Object(tomb), &mut out);
    String::from_utf8(out).map_err(|_| "canonical JSON is UTF-8".to_owned())
}

/// Record bytes of an accepted event:
/// `{"event":<Event::canonical()>,"src":{…},"v":1}`.
pub fn event_record(chain: &ChainId, origin: &Origin, event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(br#"{"event":"#);
    out.extend_from_slice(&event.canonical());
    out.extend_from_slice(br#","src":"#);
    write_src(chain, origin, &mut out);
    out.extend_from_slice(br#","v":1}"#);
    out
}

/// Record bytes of an incident revision:
/// `{"incident":<the revision>,"src":{…},"v":1}`, the revision being the
/// JSON document every sink receives (`docs/alerting.md`), in canonical
/// form. `origin.offset` is the revision's number in the outbox.
pub fn incident_record(chain: &ChainId, origin: &Origin, revision: &Value) -> Vec<u8> {
    document_record("incident", chain, origin, revision)
}

/// Record bytes of a statement in the query log:
/// `{"query":<the entry>,"src":{…},"v":1}`, the entry in canonical form
/// (members in [`QueryColumns::of`]). `origin.offset` is the entry's
/// number in its chain.
pub fn query_record(chain: &ChainId, origin: &Origin, entry: &Value) -> Vec<u8> {
    document_record("query", chain, origin, entry)
}

/// `{"<member>":<doc>,"src":{…},"v":1}` in canonical form (members sorted:
/// `incident` and `query` both sort before `src`).
fn document_record(member: &str, chain: &ChainId, origin: &Origin, doc: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.push(b'{');
    canonical_json(&Value::String(member.to_owned()), &mut out);
    out.push(b':');
    canonical_json(doc, &mut out);
    out.extend_from_slice(br#","src":"#);
    canonical_json(&src_value(chain, origin), &mut out);
    out.extend_from_slice(br#","v":1}"#);
    out
}

/// The typed columns of a `query_log` row, derived from the entry (so
/// `verify` derives them from the record the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct QueryColumns {
    /// `at`: when the statement was received (wall clock), µs.
    pub at_us: i64,
    pub who: String,
    pub role: Option<String>,
    pub surface: String,
    pub sql: String,
    pub rows: Option<u64>,
    pub outcome: String,
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

impl QueryColumns {
    /// The columns of a query log entry, or what it lacks.
    pub fn of(entry: &Value) -> Result<QueryColumns, String> {
        let text = |key: &str| -> Result<String, String> {
            entry[key]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("the query log entry lacks `{key}`"))
        };
        let optional = |key: &str| entry[key].as_str().map(str::to_owned);
        let at = text("at")?;
        let at_us = chrono::DateTime::parse_from_rfc3339(&at)
            .map_err(|e| format!("the query log entry's `at` is not RFC 3339: {e}"))?
            .timestamp_micros();
        Ok(QueryColumns {
            at_us,
            who: text("who")?,
            role: optional("role"),
            surface: text("surface")?,
            sql: text("sql")?,
            rows: entry["rows"].as_u64(),
            outcome: text("outcome")?,
            error: optional("error"),
            elapsed_ms: entry["elapsed_ms"]
                .as_u64()
                .ok_or("the query log entry lacks `elapsed_ms`")?,
        })
    }
}

/// The typed columns of an `incidents` row, derived from the revision (so
/// `verify` derives them from the record the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentColumns {
    pub id: String,
    pub revision: u64,
    pub state: String,
    pub severity: String,
    pub actor: String,
    pub patient: Option<String>,
    pub detector: String,
    /// `raised_at`: when custos made the revision (wall clock), µs.
    pub raised_at_us: i64,
}

impl IncidentColumns {
    /// The columns of a revision document, or what it lacks.
    pub fn of(revision: &Value) -> Result<IncidentColumns, String> {
        let text = |key: &str| -> Result<String, String> {
            revision[key]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("the incident revision lacks `{key}`"))
        };
        let raised_at = text("raised_at")?;
        let raised_at_us = chrono::DateTime::parse_from_rfc3339(&raised_at)
            .map_err(|e| format!("the incident's `raised_at` is not RFC 3339: {e}"))?
            .timestamp_micros();
        Ok(IncidentColumns {
            id: text("id")?,
            revision: revision["revision"]
                .as_u64()
                .ok_or("the incident revision lacks `revision`")?,
            state: text("state")?,
            severity: text("severity")?,
            actor: text("actor")?,
            patient: revision["patient"].as_str().map(str::to_owned),
            detector: text("detector")?,
            raised_at_us,
        })
    }
}

/// The bytes of a rejected message as the ledger stores them: either as
/// received, or sealed by the caller. The ledger never looks inside; it
/// stores them in the `key`/`payload` columns and binds them to the record
/// by their BLAKE3 and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectBytes<'a> {
    /// The Kafka message key, if the message had one.
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// How `key` and `payload` were sealed (e.g.
    /// `xchacha20poly1305:rk1-0a1b2c3d`), recorded as `payload_sealed` (and
    /// `key_sealed` with a key); `None` when they are the bytes as received.
    pub sealed: Option<&'a str>,
}

impl<'a> RejectBytes<'a> {
    /// Bytes as received, unsealed.
    pub fn received(key: Option<&'a [u8]>, payload: &'a [u8]) -> Self {
        RejectBytes {
            key,
            payload,
            sealed: None,
        }
    }

    /// Bytes the caller sealed as `label` says.
    pub fn sealed(label: &'a str, key: Option<&'a [u8]>, payload: &'a [u8]) -> Self {
        RejectBytes {
            key,
            payload,
            sealed: Some(label),
        }
    }
}

/// The sealing schemes the format knows, with the least number of bytes
/// their sealed output has (`docs/ledger-format.md`, "Sealed bytes").
pub(crate) const SEAL_SCHEMES: &[(&str, u64)] = &[("xchacha20poly1305", 40)];

/// Record bytes of a rejected message: the reason, the detail, the BLAKE3
/// and length of the stored bytes of the message (and of its Kafka key, if
/// any), and how they were sealed, if they were.
pub fn reject_record(
    chain: &ChainId,
    origin: &Origin,
    bytes: &RejectBytes<'_>,
    reject: &Reject,
) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("detail".into(), Value::String(reject.detail.clone()));
    if let Some(key) = bytes.key {
        m.insert("key_blake3".into(), Value::String(blake3_hex(key)));
        m.insert("key_len".into(), Value::from(key.len() as u64));
        if let Some(label) = bytes.sealed {
            m.insert("key_sealed".into(), Value::String(label.to_owned()));
        }
    }
    m.insert(
        "payload_blake3".into(),
        Value::String(blake3_hex(bytes.payload)),
    );
    m.insert(
        "payload_len".into(),
        Value::from(bytes.payload.len() as u64),
    );
    if let Some(label) = bytes.sealed {
        m.insert("payload_sealed".into(), Value::String(label.to_owned()));
    }
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

/// Appends the canonical encoding of [`src_value`] without building it
/// (once per stored event): members in key order `file`, `line`,
/// `offset`, `partition`, `stream`.
fn write_src(chain: &ChainId, origin: &Origin, out: &mut Vec<u8>) {
    use std::io::Write;
    out.push(b'{');
    if let Some(file) = &origin.file {
        out.extend_from_slice(br#""file":"#);
        crate::event::write_json_str(file, out);
        out.push(b',');
    }
    if let Some(line) = origin.line {
        let _ = write!(out, r#""line":{line},"#);
    }
    let _ = write!(
        out,
        r#""offset":{},"partition":{},"stream":"#,
        origin.offset, chain.partition
    );
    crate::event::write_json_str(&chain.stream, out);
    out.push(b'}');
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
///
/// The text values share one buffer: a row costs one allocation (and one
/// free on the segment thread) rather than one a value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EventColumns {
    pub time_us: i64,
    pub kind: &'static str,
    pub records: Option<i64>,
    text: String,
    /// Where each [`Text`] value ends in `text` (it starts where the one
    /// before it ends).
    ends: [u32; TEXTS],
    /// Bit `i` set: the value of [`Text`] `i` is present.
    present: u16,
}

/// The text columns of [`EventColumns`], in the order of their values in
/// its buffer.
#[derive(Clone, Copy)]
enum Text {
    Id,
    ActorId,
    ActorRole,
    ActorDept,
    Patient,
    Action,
    Purpose,
    Outcome,
    Model,
}
const TEXTS: usize = Text::Model as usize + 1;

impl EventColumns {
    pub fn from_event(e: &Event) -> Self {
        let (outcome, records, model) = match &e.body {
            Body::Access(a) => (Some(a.outcome.as_str()), Some(clamp_i64(a.records)), None),
            Body::Inference(i) => (
                None,
                None,
                Some([i.model_id.as_str(), "@", i.model_version.as_str()]),
            ),
            Body::Lineage(_) => (None, None, None),
        };
        let values: [Option<[&str; 3]>; TEXTS] = [
            Some([&e.id, "", ""]),
            Some([&e.actor.id, "", ""]),
            e.actor.role.as_deref().map(|v| [v, "", ""]),
            e.actor.dept.as_deref().map(|v| [v, "", ""]),
            e.patient().map(|v| [v, "", ""]),
            e.action().map(|v| [v, "", ""]),
            e.purpose().map(|v| [v, "", ""]),
            outcome.map(|v| [v, "", ""]),
            model,
        ];
        let len = values.iter().flatten().flatten().map(|p| p.len()).sum();
        let mut text = String::with_capacity(len);
        let (mut ends, mut present) = ([0u32; TEXTS], 0u16);
        for (i, value) in values.iter().enumerate() {
            if let Some(parts) = value {
                present |= 1 << i;
                parts.iter().for_each(|p| text.push_str(p));
            }
            // Values are bounded (4 KiB each, a message 1 MiB): fits u32.
            ends[i] = text.len() as u32;
        }
        EventColumns {
            time_us: e.time_micros(),
            kind: e.kind().as_str(),
            records,
            text,
            ends,
            present,
        }
    }

    fn text(&self, field: Text) -> Option<&str> {
        let i = field as usize;
        if self.present & (1 << i) == 0 {
            return None;
        }
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.text[start..self.ends[i] as usize])
    }

    pub fn id(&self) -> &str {
        self.text(Text::Id).unwrap_or_default()
    }

    pub fn actor_id(&self) -> &str {
        self.text(Text::ActorId).unwrap_or_default()
    }

    pub fn actor_role(&self) -> Option<&str> {
        self.text(Text::ActorRole)
    }

    pub fn actor_dept(&self) -> Option<&str> {
        self.text(Text::ActorDept)
    }

    pub fn patient(&self) -> Option<&str> {
        self.text(Text::Patient)
    }

    pub fn action(&self) -> Option<&str> {
        self.text(Text::Action)
    }

    pub fn purpose(&self) -> Option<&str> {
        self.text(Text::Purpose)
    }

    pub fn outcome(&self) -> Option<&str> {
        self.text(Text::Outcome)
    }

    /// `id@version` of an inference's model.
    pub fn model(&self) -> Option<&str> {
        self.text(Text::Model)
    }

    /// The same columns, borrowed, for comparing with a view.
    #[cfg(test)]
    pub fn as_view(&self) -> ColumnsView<'_> {
        ColumnsView {
            id: self.id(),
            time_us: self.time_us,
            kind: self.kind,
            actor_id: self.actor_id(),
            actor_role: self.actor_role(),
            actor_dept: self.actor_dept(),
            patient: self.patient(),
            action: self.action(),
            purpose: self.purpose(),
            outcome: self.outcome(),
            records: self.records,
            model: self.model().map(Cow::Borrowed),
        }
    }
}

/// The typed columns of an `events` row, borrowed (from a row or from a
/// record), for comparison without copying.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ColumnsView<'a> {
    pub id: &'a str,
    pub time_us: i64,
    pub kind: &'a str,
    pub actor_id: &'a str,
    pub actor_role: Option<&'a str>,
    pub actor_dept: Option<&'a str>,
    pub patient: Option<&'a str>,
    pub action: Option<&'a str>,
    pub purpose: Option<&'a str>,
    pub outcome: Option<&'a str>,
    pub records: Option<i64>,
    pub model: Option<Cow<'a, str>>,
}

impl ColumnsView<'_> {
    /// Names of the columns that differ.
    pub fn differing(&self, other: &ColumnsView<'_>) -> Vec<&'static str> {
        [
            ("id", self.id != other.id),
            ("time", self.time_us != other.time_us),
            ("kind", self.kind != other.kind),
            ("actor_id", self.actor_id != other.actor_id),
            ("actor_role", self.actor_role != other.actor_role),
            ("actor_dept", self.actor_dept != other.actor_dept),
            ("patient", self.patient != other.patient),
            ("action", self.action != other.action),
            ("purpose", self.purpose != other.purpose),
            ("outcome", self.outcome != other.outcome),
            ("records", self.records != other.records),
            ("model", self.model != other.model),
        ]
        .into_iter()
        .filter_map(|(name, differs)| differs.then_some(name))
        .collect()
    }
}

/// `records` is unsigned in the contract; the column is Int64.
fn clamp_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Decoder, PseudonymKey, Pseudonymizer, RejectReason};

    #[test]
    fn event_columns_keep_each_value_in_its_place_when_some_are_absent() {
        let d = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
        let access = d
            .decode(br#"{"id":"e1","time":"2026-03-02T09:00:00Z","kind":"access","actor":{"id":"dr-1","dept":"ED"},"action":"search","outcome":"denied","records":3}"#)
            .unwrap();
        let c = EventColumns::from_event(&access);
        assert_eq!((c.id(), c.actor_id(), c.kind), ("e1", "dr-1", "access"));
        assert_eq!((c.actor_role(), c.actor_dept()), (None, Some("ED")));
        assert_eq!(
            (c.patient(), c.action(), c.purpose()),
            (None, Some("search"), None)
        );
        assert_eq!(
            (c.outcome(), c.records, c.model()),
            (Some("denied"), Some(3), None)
        );

        let inference = d
            .decode(br#"{"id":"i1","time":"2026-03-02T09:00:00Z","kind":"inference","actor":{"id":"svc","role":"service"},"model":{"id":"sepsis","version":"4"},"patient":"MRN-1","purpose":"TREAT"}"#)
            .unwrap();
        let c = EventColumns::from_event(&inference);
        assert_eq!((c.id(), c.actor_id(), c.kind), ("i1", "svc", "inference"));
        assert_eq!((c.actor_role(), c.actor_dept()), (Some("service"), None));
        assert_eq!(c.patient(), inference.patient());
        assert_eq!(
            (c.action(), c.purpose(), c.outcome()),
            (None, Some("TREAT"), None)
        );
        assert_eq!((c.records, c.model()), (None, Some("sepsis@4")));
    }

    #[test]
    fn the_src_writer_equals_the_canonical_encoding_of_src() {
        let origins = [
            Origin::kafka(0),
            Origin::kafka(i64::MAX),
            Origin {
                offset: -1,
                file: Some("in/\"odd\"\u{1}é.jsonl".into()),
                line: Some(u64::MAX),
            },
            Origin {
                offset: 7,
                file: None,
                line: Some(8),
            },
        ];
        for chain in [ChainId::new("audit", 2), ChainId::new("t\\\"x\n", -3)] {
            for origin in &origins {
                let mut want = Vec::new();
                canonical_json(&src_value(&chain, origin), &mut want);
                let mut got = Vec::new();
                write_src(&chain, origin, &mut got);
                assert_eq!(
                    String::from_utf8(got).unwrap(),
                    String::from_utf8(want).unwrap()
                );
            }
        }
    }

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
        assert!(text.contains(r#""offset":7"#));
    }

    #[test]
    fn reject_record_has_sorted_keys_and_digests() {
        let reject = Reject::new(RejectReason::MissingField, "missing `id`");
        let rec = reject_record(
            &ChainId::new("t", 0),
            &Origin::kafka(5),
            &RejectBytes::received(Some(b"k"), b"{}"),
            &reject,
        );
        let want = format!(
            r#"{{"detail":"missing `id`","key_blake3":"{}","key_len":1,"payload_blake3":"{}","payload_len":2,"reason":"missing_field","src":{{"offset":5,"partition":0,"stream":"t"}},"v":1}}"#,
            blake3_hex(b"k"),
            blake3_hex(b"{}")
        );
        assert_eq!(String::from_utf8(rec.clone()).unwrap(), want);

        let rec = reject_record(
            &ChainId::new("t", 0),
            &Origin::kafka(5),
            &RejectBytes::received(None, b""),
            &reject,
        );
        assert!(!String::from_utf8(rec).unwrap().contains("key_"));
    }

    #[test]
    fn sealed_rejects_say_how_in_the_record() {
        let reject = Reject::new(RejectReason::InvalidJson, "empty message");
        let label = "xchacha20poly1305:rk1-0a1b2c3d";
        let rec = reject_record(
            &ChainId::new("t", 0),
            &Origin::kafka(5),
            &RejectBytes::sealed(label, Some(b"sealed-key"), b"sealed-payload"),
            &reject,
        );
        let want = format!(
            r#"{{"detail":"empty message","key_blake3":"{}","key_len":10,"key_sealed":"{label}","payload_blake3":"{}","payload_len":14,"payload_sealed":"{label}","reason":"invalid_json","src":{{"offset":5,"partition":0,"stream":"t"}},"v":1}}"#,
            blake3_hex(b"sealed-key"),
            blake3_hex(b"sealed-payload")
        );
        assert_eq!(String::from_utf8(rec).unwrap(), want);

        let rec = reject_record(
            &ChainId::new("t", 0),
            &Origin::kafka(5),
            &RejectBytes::sealed(label, None, b"sealed-payload"),
            &reject,
        );
        let text = String::from_utf8(rec).unwrap();
        assert!(text.contains(r#""payload_sealed""#) && !text.contains("key_"));
    }
}
