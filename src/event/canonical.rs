//! The canonical encoding: JSON with object keys sorted by their UTF-8
//! bytes at every level, no whitespace, strings escaped minimally (`"`, `\`
//! and control characters; everything else as raw UTF-8), integers in
//! decimal and other numbers in shortest round-trip form. `docs/format.md`
//! gives the full rules; the ledger hashes these bytes.
//!
//! The keys are sorted here explicitly rather than relying on the JSON
//! library's map type, whose order can change with a feature flag set by
//! any other crate in the build.

use chrono::SecondsFormat;
use serde_json::{Map, Value};

use super::{Body, Event};

/// Appends the canonical encoding of `value` to `out`.
pub fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => out.extend_from_slice(n.to_string().as_bytes()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => delimited(out, b'[', b']', items, canonical_json),
        Value::Object(map) => canonical_map(map, out),
    }
}

fn canonical_map(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    delimited(out, b'{', b'}', keys, |key, out| {
        write_str(key, out);
        out.push(b':');
        canonical_json(&map[key], out);
    });
}

/// Writes `open`, each item separated by `,`, then `close`.
fn delimited<I: IntoIterator>(
    out: &mut Vec<u8>,
    open: u8,
    close: u8,
    items: I,
    mut each: impl FnMut(I::Item, &mut Vec<u8>),
) {
    out.push(open);
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        each(item, out);
    }
    out.push(close);
}

/// Appends `s` as a canonical JSON string.
pub(crate) fn write_str(s: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The canonical encoding of an accepted event, written straight from the
/// typed event: each object's members are collected, sorted by key bytes
/// and written, without building a JSON tree. (`event_tree` builds the same
/// thing as a tree; the tests hold the two equal.)
pub(super) fn encode_event(event: &Event) -> Vec<u8> {
    let mut out = Vec::with_capacity(384);
    event_object(event).write(&mut out);
    out
}

/// A JSON value borrowed from the event.
enum Member<'a> {
    Str(&'a str),
    Owned(String),
    U64(u64),
    F64(serde_json::Number),
    Bool(bool),
    Obj(Obj<'a>),
    Strs(&'a [String]),
    Attrs(&'a std::collections::BTreeMap<String, String>),
    Map(&'a Map<String, Value>),
}

/// An object whose members are written sorted by key bytes.
struct Obj<'a>(Vec<(&'static str, Member<'a>)>);

impl<'a> Obj<'a> {
    fn new() -> Self {
        Obj(Vec::with_capacity(12))
    }

    fn put(&mut self, key: &'static str, value: Member<'a>) {
        self.0.push((key, value));
    }

    fn opt(&mut self, key: &'static str, value: Option<&'a String>) {
        if let Some(v) = value {
            self.put(key, Member::Str(v));
        }
    }

    fn write(mut self, out: &mut Vec<u8>) {
        self.0
            .sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        delimited(out, b'{', b'}', self.0, |(key, value), out| {
            write_str(key, out);
            out.push(b':');
            value.write(out);
        });
    }
}

impl Member<'_> {
    fn write(self, out: &mut Vec<u8>) {
        match self {
            Member::Str(s) => write_str(s, out),
            Member::Owned(s) => write_str(&s, out),
            Member::U64(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Member::F64(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Member::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            Member::Obj(o) => o.write(out),
            Member::Strs(items) => delimited(out, b'[', b']', items, |s, out| write_str(s, out)),
            // A BTreeMap of Strings iterates in byte order already.
            Member::Attrs(map) => delimited(out, b'{', b'}', map, |(k, v), out| {
                write_str(k, out);
                out.push(b':');
                write_str(v, out);
            }),
            Member::Map(map) => canonical_map(map, out),
        }
    }
}

fn event_object(event: &Event) -> Obj<'_> {
    let mut m = Obj::new();
    m.put("id", Member::Str(&event.id));
    m.put(
        "time",
        Member::Owned(event.time.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    );
    m.put("kind", Member::Str(event.kind().as_str()));
    let a = &event.actor;
    let mut actor = Obj::new();
    actor.put("id", Member::Str(&a.id));
    actor.opt("role", a.role.as_ref());
    actor.opt("dept", a.dept.as_ref());
    actor.opt("ip", a.ip.as_ref());
    actor.opt("session", a.session.as_ref());
    actor.opt("org", a.org.as_ref());
    m.put("actor", Member::Obj(actor));
    m.opt("source", event.source.as_ref());
    if !event.attrs.is_empty() {
        m.put("attrs", Member::Attrs(&event.attrs));
    }
    match &event.body {
        Body::Access(x) => {
            m.put("action", Member::Str(&x.action));
            m.put("outcome", Member::Str(&x.outcome));
            m.opt("patient", x.patient.as_ref());
            if x.resource_type.is_some() || x.resource_id.is_some() {
                let mut r = Obj::new();
                r.opt("type", x.resource_type.as_ref());
                r.opt("id", x.resource_id.as_ref());
                m.put("resource", Member::Obj(r));
            }
            m.opt("purpose", x.purpose.as_ref());
            m.put("records", Member::U64(x.records));
            m.opt("destination", x.destination.as_ref());
        }
        Body::Inference(x) => {
            let mut model = Obj::new();
            model.put("id", Member::Str(&x.model_id));
            model.put("version", Member::Str(&x.model_version));
            m.put("model", Member::Obj(model));
            m.opt("patient", x.patient.as_ref());
            let mut input = Obj::new();
            input.opt("fingerprint", x.fingerprint.as_ref());
            if let Some(n) = x.feature_count {
                input.put("features_n", Member::U64(n.into()));
            }
            if !input.0.is_empty() {
                m.put("input", Member::Obj(input));
            }
            let mut output = Obj::new();
            output.opt("label", x.output_label.as_ref());
            if let Some(score) = x.output_score.and_then(serde_json::Number::from_f64) {
                output.put("score", Member::F64(score));
            }
            if let Some(b) = x.scores_returned {
                output.put("scores_returned", Member::Bool(b));
            }
            if !output.0.is_empty() {
                m.put("output", Member::Obj(output));
            }
            m.opt("purpose", x.purpose.as_ref());
        }
        Body::Lineage(x) => {
            m.put("op", Member::Str(&x.op));
            m.put("inputs", Member::Strs(&x.inputs));
            m.put("outputs", Member::Strs(&x.outputs));
            m.opt("job", x.job.as_ref());
            m.opt("run", x.run.as_ref());
            m.opt("patient", x.patient.as_ref());
        }
    }
    if !event.extra.is_empty() {
        m.put("extra", Member::Map(&event.extra));
    }
    m
}

#[cfg(test)]
fn put(map: &mut Map<String, Value>, key: &str, value: Option<&String>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), Value::String(v.clone()));
    }
}

#[cfg(test)]
fn str_value(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// The normalized event as a JSON tree: only fields that are present, with
/// defaults (`outcome`, `records`) made explicit. The reference the direct
/// encoder is tested against.
#[cfg(test)]
fn event_tree(event: &Event) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), str_value(&event.id));
    m.insert(
        "time".into(),
        Value::String(event.time.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    );
    m.insert("kind".into(), str_value(event.kind().as_str()));

    let a = &event.actor;
    let mut actor = Map::new();
    actor.insert("id".into(), str_value(&a.id));
    put(&mut actor, "role", a.role.as_ref());
    put(&mut actor, "dept", a.dept.as_ref());
    put(&mut actor, "ip", a.ip.as_ref());
    put(&mut actor, "session", a.session.as_ref());
    put(&mut actor, "org", a.org.as_ref());
    m.insert("actor".into(), Value::Object(actor));

    put(&mut m, "source", event.source.as_ref());
    if !event.attrs.is_empty() {
        let attrs = event
            .attrs
            .iter()
            .map(|(k, v)| (k.clone(), str_value(v)))
            .collect();
        m.insert("attrs".into(), Value::Object(attrs));
    }

    match &event.body {
        Body::Access(x) => {
            m.insert("action".into(), str_value(&x.action));
            m.insert("outcome".into(), str_value(&x.outcome));
            put(&mut m, "patient", x.patient.as_ref());
            if x.resource_type.is_some() || x.resource_id.is_some() {
                let mut r = Map::new();
                put(&mut r, "type", x.resource_type.as_ref());
                put(&mut r, "id", x.resource_id.as_ref());
                m.insert("resource".into(), Value::Object(r));
            }
            put(&mut m, "purpose", x.purpose.as_ref());
            m.insert("records".into(), Value::from(x.records));
            put(&mut m, "destination", x.destination.as_ref());
        }
        Body::Inference(x) => {
            let mut model = Map::new();
            model.insert("id".into(), str_value(&x.model_id));
            model.insert("version".into(), str_value(&x.model_version));
            m.insert("model".into(), Value::Object(model));
            put(&mut m, "patient", x.patient.as_ref());
            let mut input = Map::new();
            put(&mut input, "fingerprint", x.fingerprint.as_ref());
            if let Some(n) = x.feature_count {
                input.insert("features_n".into(), Value::from(n));
            }
            if !input.is_empty() {
                m.insert("input".into(), Value::Object(input));
            }
            let mut output = Map::new();
            put(&mut output, "label", x.output_label.as_ref());
            if let Some(score) = x.output_score.and_then(serde_json::Number::from_f64) {
                output.insert("score".into(), Value::Number(score));
            }
            if let Some(b) = x.scores_returned {
                output.insert("scores_returned".into(), Value::Bool(b));
            }
            if !output.is_empty() {
                m.insert("output".into(), Value::Object(output));
            }
            put(&mut m, "purpose", x.purpose.as_ref());
        }
        Body::Lineage(x) => {
            m.insert("op".into(), str_value(&x.op));
            let refs = |v: &Vec<String>| Value::Array(v.iter().map(|s| str_value(s)).collect());
            m.insert("inputs".into(), refs(&x.inputs));
            m.insert("outputs".into(), refs(&x.outputs));
            put(&mut m, "job", x.job.as_ref());
            put(&mut m, "run", x.run.as_ref());
            put(&mut m, "patient", x.patient.as_ref());
        }
    }
    if !event.extra.is_empty() {
        m.insert("extra".into(), Value::Object(event.extra.clone()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(v: &Value) -> String {
        let mut out = Vec::new();
        canonical_json(v, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn keys_are_sorted_by_bytes_at_every_level() {
        let v: Value =
            serde_json::from_str(r#"{"b":1,"a":{"z":true,"Z":null},"é":2,"A":[3]}"#).unwrap();
        assert_eq!(
            encode(&v),
            r#"{"A":[3],"a":{"Z":null,"z":true},"b":1,"é":2}"#
        );
    }

    #[test]
    fn strings_escape_only_what_json_requires() {
        let v = Value::String("q\"b\\n\n\u{1}ü/".into());
        assert_eq!(encode(&v), "\"q\\\"b\\\\n\\n\\u0001ü/\"");
    }

    #[test]
    fn the_direct_encoder_matches_the_tree_encoder() {
        use crate::event::{Decoder, PseudonymKey, Pseudonymizer};
        use crate::source::synth::{Workload, WorkloadConfig};
        let d = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
        let examples = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/events-v1.jsonl"
        ))
        .unwrap();
        let mut payloads: Vec<Vec<u8>> = examples.lines().map(|l| l.as_bytes().to_vec()).collect();
        payloads.push(
            br#"{"id":"x","time":"2026-03-02T09:14:03.5-05:00","kind":"access","actor":{"id":"a\n\u0001"},"action":"login","attrs":{"b":"1","a":"\"q\""},"zeta":[1,{"y":null,"x":2.5}],"Alpha":true}"#.to_vec(),
        );
        let mut w = Workload::new(WorkloadConfig::default());
        let t0 = chrono::DateTime::from_timestamp(1_772_438_400, 0).unwrap();
        for i in 0..20_000 {
            payloads.push(
                w.next_message(t0 + chrono::Duration::milliseconds(i * 50))
                    .payload,
            );
        }
        let mut checked = 0;
        for p in &payloads {
            if let Ok(e) = d.decode(p) {
                let mut tree = Vec::new();
                canonical_json(&event_tree(&e), &mut tree);
                assert_eq!(encode_event(&e), tree, "{}", String::from_utf8_lossy(p));
                checked += 1;
            }
        }
        assert!(checked > 19_000);
    }

    #[test]
    fn numbers_have_one_form() {
        let v: Value = serde_json::from_str(r#"[1, -2, 0.5, 1.0, 1e-7, 12345678901234]"#).unwrap();
        assert_eq!(encode(&v), "[1,-2,0.5,1.0,1e-7,12345678901234]");
    }
}
