//! Deliberately malformed messages, one defect class each, drawn from the
//! shared examples of what the v1 decoder must reject: missing or invalid
//! fields, unknown vocabulary, broken JSON, invalid UTF-8, duplicated keys,
//! limits exceeded (id length, feature count, nesting, message size).
//!
//! No payload contains a newline byte, and none is empty.

use super::json::{push_fixed, push_mrn, push_str, write_time};
use super::vocab::draw_feature;
use super::{SynthMessage, Truth, Workload};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Defect {
    MissingId,
    MissingTime,
    BadTime,
    TimeWithoutOffset,
    UnknownKind,
    MissingActor,
    EmptyActorId,
    UnknownAction,
    MissingPatient,
    RecordsBelowOne,
    MissingModel,
    NonNumberFeature,
    NanFeature,
    UnknownOp,
    ActorNotObject,
    TruncatedJson,
    NotObject,
    InvalidUtf8,
    DuplicateKey,
    WrongTypeId,
    IdTooLong,
    TooManyFeatures,
    DeepNesting,
    Oversize,
}

impl Defect {
    pub(super) fn name(self) -> &'static str {
        match self {
            Defect::MissingId => "missing_id",
            Defect::MissingTime => "missing_time",
            Defect::BadTime => "bad_time",
            Defect::TimeWithoutOffset => "time_without_offset",
            Defect::UnknownKind => "unknown_kind",
            Defect::MissingActor => "missing_actor",
            Defect::EmptyActorId => "empty_actor_id",
            Defect::UnknownAction => "unknown_action",
            Defect::MissingPatient => "missing_patient",
            Defect::RecordsBelowOne => "records_below_1",
            Defect::MissingModel => "missing_model",
            Defect::NonNumberFeature => "non_number_feature",
            Defect::NanFeature => "nan_feature",
            Defect::UnknownOp => "unknown_op",
            Defect::ActorNotObject => "actor_not_object",
            Defect::TruncatedJson => "truncated_json",
            Defect::NotObject => "not_object",
            Defect::InvalidUtf8 => "invalid_utf8",
            Defect::DuplicateKey => "duplicate_key",
            Defect::WrongTypeId => "wrong_type_id",
            Defect::IdTooLong => "id_too_long",
            Defect::TooManyFeatures => "too_many_features",
            Defect::DeepNesting => "deep_nesting",
            Defect::Oversize => "oversize",
        }
    }
}

/// Weights: oversize messages (1 MiB each) are one malformed message in a
/// thousand, so that a million-message benchmark carries a couple of them.
pub(super) const DEFECTS: &[(Defect, u32)] = &[
    (Defect::MissingId, 80),
    (Defect::MissingTime, 60),
    (Defect::BadTime, 80),
    (Defect::TimeWithoutOffset, 80),
    (Defect::UnknownKind, 60),
    (Defect::MissingActor, 50),
    (Defect::EmptyActorId, 50),
    (Defect::UnknownAction, 50),
    (Defect::MissingPatient, 50),
    (Defect::RecordsBelowOne, 40),
    (Defect::MissingModel, 40),
    (Defect::NonNumberFeature, 40),
    (Defect::NanFeature, 30),
    (Defect::UnknownOp, 40),
    (Defect::ActorNotObject, 40),
    (Defect::TruncatedJson, 100),
    (Defect::NotObject, 50),
    (Defect::InvalidUtf8, 80),
    (Defect::DuplicateKey, 40),
    (Defect::WrongTypeId, 30),
    (Defect::IdTooLong, 20),
    (Defect::TooManyFeatures, 5),
    (Defect::DeepNesting, 5),
    (Defect::Oversize, 1),
];

impl Workload {
    /// A malformed message of a random defect class, keyed by a clinician.
    pub(super) fn malformed(&mut self, ms: i64, hour: usize) -> SynthMessage {
        let defect = self.rng.choose(DEFECTS);
        let ci = self.rng.index(self.clinicians.len());
        let key = self.clinicians[ci].id.clone();
        let patient = self.any_patient();
        let id = self.next_id("a");
        let time = quoted_time(ms, Some(0), true);
        let mut mrn = Vec::with_capacity(16);
        push_mrn(&mut mrn, "", patient);
        let mut actor = Vec::with_capacity(32);
        actor.extend_from_slice(b"{\"id\":");
        push_str(&mut actor, &key);
        actor.push(b'}');
        let idj = json_string(&id);
        let model = br#"{"id":"sepsis-risk","version":"3.1.0"}"#.as_slice();

        use V::{R, S};
        let (id_f, time_f, actor_f, mrn_f) = (R(&idj), R(&time), R(&actor), R(&mrn));
        let head = |kind| {
            vec![
                ("id", id_f),
                ("time", time_f),
                ("kind", S(kind)),
                ("actor", actor_f),
            ]
        };
        let read = [
            head("access"),
            vec![("action", S("read")), ("patient", mrn_f)],
        ]
        .concat();
        let mut b = Vec::with_capacity(256);
        match defect {
            Defect::MissingId => write_obj(&mut b, &without(&read, "id")),
            Defect::MissingTime => write_obj(&mut b, &without(&read, "time")),
            Defect::BadTime => {
                let t = *self.rng.pick(&[
                    "\"yesterday\"",
                    "\"2026/03/02 09:14:03\"",
                    "\"02.03.2026 09:14\"",
                    "\"2026-13-02T09:14:03Z\"",
                    "\"2026-03-02T25:14:03Z\"",
                    "\"2026-02-30T10:00:00Z\"",
                    "\"1772442843\"",
                ]);
                write_obj(&mut b, &with(&read, "time", R(t.as_bytes())));
            }
            Defect::TimeWithoutOffset => {
                let t = quoted_time(ms, None, self.rng.permille(500));
                write_obj(&mut b, &with(&read, "time", R(&t)));
            }
            Defect::UnknownKind => {
                let k = *self
                    .rng
                    .pick(&["telemetry", "audit", "heartbeat", "metric"]);
                write_obj(&mut b, &with(&read, "kind", S(k)));
            }
            Defect::MissingActor => write_obj(&mut b, &without(&read, "actor")),
            Defect::EmptyActorId => write_obj(&mut b, &with(&read, "actor", R(br#"{"id":""}"#))),
            Defect::UnknownAction => {
                let a = *self.rng.pick(&["peek", "browse", "copy", "view"]);
                write_obj(&mut b, &with(&read, "action", S(a)));
            }
            Defect::MissingPatient => write_obj(&mut b, &without(&read, "patient")),
            Defect::RecordsBelowOne => {
                let r = *self.rng.pick(&["0", "-3"]);
                let mut fields = head("access");
                fields.extend([
                    ("action", S("export")),
                    ("records", R(r.as_bytes())),
                    ("destination", S("registry.internal")),
                ]);
                write_obj(&mut b, &fields);
            }
            Defect::MissingModel
            | Defect::NonNumberFeature
            | Defect::NanFeature
            | Defect::TooManyFeatures => {
                let input = self.malformed_input(defect);
                let mut fields = head("inference");
                if defect != Defect::MissingModel {
                    fields.push(("model", R(model)));
                }
                fields.push(("patient", mrn_f));
                fields.push(("input", R(&input)));
                write_obj(&mut b, &fields);
            }
            Defect::UnknownOp => {
                let op = *self.rng.pick(&["copy", "merge", "publish"]);
                let mut fields = head("lineage");
                fields.extend([
                    ("op", S(op)),
                    ("inputs", R(br#"["dataset:ehr.vitals"]"#)),
                    ("outputs", R(br#"["dataset:cohort-7"]"#)),
                ]);
                let fields = with(&fields, "actor", R(br#"{"id":"svc-etl-1"}"#));
                write_obj(&mut b, &fields);
            }
            Defect::ActorNotObject => {
                let a = json_string(&key);
                write_obj(&mut b, &with(&read, "actor", R(&a)));
            }
            Defect::TruncatedJson => {
                let full = self.normal(ms, hour).payload;
                let cut = self.rng.between(1, full.len() as u64 - 1) as usize;
                b.extend_from_slice(&full[..cut]);
            }
            Defect::NotObject => match self.rng.below(4) {
                0 => b.extend_from_slice(b"[1,2,3]"),
                1 => {
                    let full = self.normal(ms, hour).payload;
                    b.push(b'[');
                    b.extend_from_slice(&full);
                    b.push(b']');
                }
                2 => push_str(&mut b, "access"),
                _ => b.extend_from_slice(b"null"),
            },
            Defect::InvalidUtf8 => {
                // Latin-1 text, stray bytes, an overlong encoding, a UTF-16
                // surrogate, a cut multi-byte sequence.
                let options: [&[u8]; 5] = [
                    b"caf\xe9",
                    b"\xff\xfe",
                    b"\xc0\xaf",
                    b"\xed\xa0\x80",
                    b"x\xe2\x82",
                ];
                let bad = note(options[self.rng.index(options.len())]);
                write_obj(&mut b, &plus(&read, "attrs", R(&bad)));
            }
            Defect::DuplicateKey => {
                let other = json_string(&format!("{id}-dup"));
                let fields = match self.rng.below(3) {
                    0 => plus(&read, "id", R(&other)),
                    1 => plus(&read, "kind", S("inference")),
                    _ => {
                        let mut fields = read.to_vec();
                        fields.insert(1, ("patient", S("MRN-100000")));
                        fields
                    }
                };
                write_obj(&mut b, &fields);
            }
            Defect::WrongTypeId => {
                let n = self.counter.to_string();
                write_obj(&mut b, &with(&read, "id", R(n.as_bytes())));
            }
            Defect::IdTooLong => {
                let n = self.rng.between(129, 300) as usize;
                let long = json_string(&"x".repeat(n));
                write_obj(&mut b, &with(&read, "id", R(&long)));
            }
            Defect::DeepNesting => {
                let depth = self.rng.between(200, 3000) as usize;
                let mut deep = Vec::with_capacity(depth * 6 + 8);
                for _ in 0..depth {
                    deep.extend_from_slice(b"{\"a\":");
                }
                deep.extend_from_slice(b"\"x\"");
                deep.extend(std::iter::repeat_n(b'}', depth));
                write_obj(&mut b, &plus(&read, "attrs", R(&deep)));
            }
            Defect::Oversize => {
                let n = (1 << 20) + self.rng.between(1, 65_536) as usize;
                let big = note(&vec![b'x'; n]);
                write_obj(&mut b, &plus(&read, "attrs", R(&big)));
            }
        }
        SynthMessage {
            key,
            payload: b,
            truth: Truth::Malformed,
            id: None,
            defect: Some(defect.name()),
        }
    }

    /// The `input` object of an inference with a feature defect.
    fn malformed_input(&mut self, defect: Defect) -> Vec<u8> {
        match defect {
            Defect::NonNumberFeature => br#"{"features":[38.9,"112",22,0.8]}"#.to_vec(),
            Defect::NanFeature => {
                let v = *self.rng.pick(&["\"NaN\"", "\"Infinity\"", "\"-Infinity\""]);
                format!("{{\"features\":[38.9,{v},22,0.8]}}").into_bytes()
            }
            Defect::TooManyFeatures => {
                let mut f = b"{\"features\":[".to_vec();
                let n = self.rng.between(4097, 5000);
                for i in 0..n {
                    if i > 0 {
                        f.push(b',');
                    }
                    push_fixed(&mut f, draw_feature(&mut self.rng, i as usize % 30), 1);
                }
                f.extend_from_slice(b"]}");
                f
            }
            _ => br#"{"features":[38.9,112,22,0.8]}"#.to_vec(),
        }
    }
}

/// A JSON value for [`write_obj`]: a string to quote, or raw bytes.
#[derive(Debug, Clone, Copy)]
enum V<'a> {
    S(&'a str),
    R(&'a [u8]),
}

type Fields<'a> = Vec<(&'static str, V<'a>)>;

fn without<'a>(fields: &[(&'static str, V<'a>)], name: &str) -> Fields<'a> {
    fields.iter().copied().filter(|&(k, _)| k != name).collect()
}

fn with<'a>(fields: &[(&'static str, V<'a>)], name: &str, v: V<'a>) -> Fields<'a> {
    fields
        .iter()
        .map(|&(k, old)| (k, if k == name { v } else { old }))
        .collect()
}

/// The fields and one more at the end (possibly a second `name`).
fn plus<'a>(fields: &[(&'static str, V<'a>)], name: &'static str, v: V<'a>) -> Fields<'a> {
    let mut all = fields.to_vec();
    all.push((name, v));
    all
}

fn write_obj(b: &mut Vec<u8>, fields: &[(&str, V<'_>)]) {
    b.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        push_str(b, k);
        b.push(b':');
        match v {
            V::S(s) => push_str(b, s),
            V::R(r) => b.extend_from_slice(r),
        }
    }
    b.push(b'}');
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(s.len() + 2);
    push_str(&mut b, s);
    b
}

/// `{"note":"<text>"}`, with `text` written as is (it may be invalid).
fn note(text: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(text.len() + 12);
    b.extend_from_slice(b"{\"note\":\"");
    b.extend_from_slice(text);
    b.extend_from_slice(b"\"}");
    b
}

/// A timestamp in quotes (see [`write_time`]).
fn quoted_time(ms: i64, offset_min: Option<i32>, millis: bool) -> Vec<u8> {
    let mut t = Vec::with_capacity(32);
    t.push(b'"');
    write_time(&mut t, ms, offset_min, millis);
    t.push(b'"');
    t
}
