use super::*;
use crate::event::{Kind, PseudonymKey, RejectReason};

fn decoder() -> Decoder {
    Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()))
}

fn examples(name: &str) -> Vec<String> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_valid_example_is_accepted_and_pseudonymized() {
    let d = decoder();
    for line in examples("events-v1.jsonl") {
        let event = d
            .decode(line.as_bytes())
            .unwrap_or_else(|r| panic!("{r}: {line}"));
        let canonical = String::from_utf8(event.canonical()).unwrap();
        assert!(!canonical.contains("MRN-"), "raw MRN stored: {canonical}");
        if let Some(p) = event.patient() {
            assert!(p.starts_with("pt_"));
        }
    }
}

#[test]
fn every_invalid_example_is_refused_with_the_defect_named() {
    let expected: [(RejectReason, &str); 16] = [
        (RejectReason::MissingField, "`id`"),
        (RejectReason::MissingField, "`time`"),
        (RejectReason::InvalidTime, "`time`"),
        (RejectReason::InvalidTime, "`time`"),
        (RejectReason::UnknownKind, "`kind`"),
        (RejectReason::MissingField, "`actor`"),
        (RejectReason::InvalidValue, "`actor.id`"),
        (RejectReason::InvalidValue, "`action`"),
        (RejectReason::MissingField, "`patient`"),
        (RejectReason::InvalidValue, "`records`"),
        (RejectReason::MissingField, "`model`"),
        (RejectReason::WrongType, "`input.features[1]`"),
        (RejectReason::InvalidValue, "`op`"),
        (RejectReason::WrongType, "`actor`"),
        (RejectReason::InvalidJson, "end of input"),
        (RejectReason::NotObject, "array"),
    ];
    let d = decoder();
    let lines = examples("events-invalid.jsonl");
    assert_eq!(lines.len(), expected.len());
    for (line, (reason, needle)) in lines.iter().zip(expected) {
        let reject = d.decode(line.as_bytes()).expect_err(line);
        assert_eq!(reject.reason, reason, "{line}: {reject}");
        assert!(reject.detail.contains(needle), "{line}: {reject}");
        assert!(
            !reject.detail.contains("MRN-"),
            "detail leaks an identifier"
        );
    }
}

#[test]
fn hostile_inputs_are_refused_not_fatal() {
    let d = decoder();
    let reason = |bytes: &[u8]| d.decode(bytes).unwrap_err().reason;
    assert_eq!(reason(b""), RejectReason::InvalidJson);
    assert_eq!(reason(b"\xff\xfe{}"), RejectReason::InvalidUtf8);
    assert_eq!(
        reason(&vec![b' '; MAX_MESSAGE_BYTES + 1]),
        RejectReason::Oversize
    );
    assert_eq!(
        reason(&"[".repeat(100_000).into_bytes()),
        RejectReason::InvalidJson
    );
    let dup = br#"{"id":"1","id":"2","time":"2026-03-02T09:14:03Z","kind":"access","actor":{"id":"a"},"action":"login"}"#;
    assert_eq!(reason(dup), RejectReason::DuplicateKey);
    let nan = br#"{"id":"1","time":"2026-03-02T09:14:03Z","kind":"inference","actor":{"id":"a"},"model":{"id":"m","version":"1"},"input":{"features":[1,"NaN"]}}"#;
    assert_eq!(reason(nan), RejectReason::WrongType);
    let bare_nan = br#"{"id":"1","time":"2026-03-02T09:14:03Z","kind":"inference","actor":{"id":"a"},"model":{"id":"m","version":"1"},"input":{"features":[NaN]}}"#;
    assert_eq!(reason(bare_nan), RejectReason::InvalidJson);
    let long_id = format!(
        r#"{{"id":"{}","time":"2026-03-02T09:14:03Z","kind":"access","actor":{{"id":"a"}},"action":"login"}}"#,
        "x".repeat(129)
    );
    assert_eq!(reason(long_id.as_bytes()), RejectReason::InvalidValue);
}

#[test]
fn defaults_are_explicit_and_unknown_fields_are_kept_aside() {
    let d = decoder();
    let e = d
        .decode(br#"{"id":"a","time":"2026-03-02T09:15:11.5+01:00","kind":"access","actor":{"id":"emp-1"},"action":"read","patient":"MRN-1","ward":"4B"}"#)
        .unwrap();
    assert_eq!(e.kind(), Kind::Access);
    let Body::Access(a) = &e.body else { panic!() };
    assert_eq!((a.outcome.as_str(), a.records), ("success", 1));
    assert_eq!(
        e.extra.get("ward"),
        Some(&serde_json::Value::String("4B".into()))
    );
    let text = String::from_utf8(e.canonical()).unwrap();
    assert!(text.contains(r#""extra":{"ward":"4B"}"#), "{text}");
    assert!(
        text.contains(r#""time":"2026-03-02T09:15:11.500+01:00""#),
        "{text}"
    );
}

#[test]
fn features_become_a_fingerprint_and_the_vector_is_dropped() {
    let d = decoder();
    let e = d
        .decode(br#"{"id":"i","time":"2026-03-02T09:14:03Z","kind":"inference","actor":{"id":"dr"},"model":{"id":"m","version":"1"},"patient":"MRN-7","input":{"features":[38.9,112,22]},"output":{"score":0.91,"scores_returned":true}}"#)
        .unwrap();
    let Body::Inference(i) = &e.body else {
        panic!()
    };
    assert_eq!(i.feature_count, Some(3));
    assert!(i.fingerprint.as_deref().unwrap().starts_with("qs1:"));
    let text = String::from_utf8(e.canonical()).unwrap();
    assert!(!text.contains("38.9") && !text.contains("112"), "{text}");
}

#[test]
fn canonical_bytes_do_not_depend_on_key_order_or_whitespace() {
    let d = decoder();
    let a = d
        .decode(br#"{"id":"a","time":"2026-03-02T09:14:03Z","kind":"access","actor":{"id":"e","role":"nurse"},"action":"read","patient":"P"}"#)
        .unwrap();
    let b = d
        .decode(br#" { "patient" : "P", "action":"read", "actor":{"role":"nurse","id":"e"}, "kind":"access","time":"2026-03-02T09:14:03Z","id":"a" } "#)
        .unwrap();
    assert_eq!(a.canonical(), b.canonical());
}

#[test]
fn details_never_name_free_form_keys_and_patient_resources_are_pseudonymized() {
    let d = decoder();
    let dup = br#"{"id":"1","time":"2026-03-02T09:14:03Z","kind":"access","actor":{"id":"a"},"action":"login","attrs":{"MRN-777":"x","MRN-777":"y"}}"#;
    let r = d.decode(dup).unwrap_err();
    assert_eq!(r.reason, RejectReason::DuplicateKey);
    assert!(!r.detail.contains("MRN"), "{r}");
    let e = d
        .decode(br#"{"id":"2","time":"2026-03-02T09:14:03Z","kind":"access","actor":{"id":"a"},"action":"read","patient":"MRN-9","resource":{"type":"Patient","id":"MRN-9"}}"#)
        .unwrap();
    assert!(!String::from_utf8(e.canonical()).unwrap().contains("MRN-9"));
}

#[test]
fn far_future_times_are_refused_when_a_limit_is_set() {
    let d = decoder().with_max_future(chrono::Duration::hours(24));
    let future = br#"{"id":"f","time":"2099-01-01T00:00:00Z","kind":"access","actor":{"id":"a"},"action":"login"}"#;
    let r = d.decode(future).unwrap_err();
    assert_eq!(r.reason, RejectReason::InvalidTime);
    assert!(r.detail.contains("future"), "{r}");
    assert!(decoder().decode(future).is_ok(), "no limit, no refusal");
}

#[test]
fn a_chain_sketcher_refuses_vectors_of_another_length_than_the_models() {
    let d = decoder().with_models(std::collections::HashMap::from([("m@1".to_owned(), 3)]));
    let mut sketcher = d.sketcher();
    let event = |features: &str| {
        format!(
            r#"{{"id":"i","time":"2026-03-02T09:14:03Z","kind":"inference","actor":{{"id":"dr"}},"model":{{"id":"m","version":"1"}},"input":{{"features":[{features}]}}}}"#
        )
    };
    assert!(
        d.decode_with(event("1,2,3").as_bytes(), Some(&mut sketcher))
            .is_ok()
    );
    let e = d
        .decode_with(event("1,2").as_bytes(), Some(&mut sketcher))
        .unwrap_err();
    assert_eq!(e.reason, RejectReason::InvalidValue);
    assert!(
        e.detail.contains("has 2 numbers; model `m@1` takes 3"),
        "{}",
        e.detail
    );
    // Another version of the model learns its own length.
    let other = event("1,2").replace(r#""version":"1""#, r#""version":"2""#);
    assert!(d.decode_with(other.as_bytes(), Some(&mut sketcher)).is_ok());
    let e = d
        .decode_with(
            other.replace("1,2", "1,2,3,4").as_bytes(),
            Some(&mut sketcher),
        )
        .unwrap_err();
    assert!(
        e.detail.contains("learned from its first input"),
        "{}",
        e.detail
    );
}
