use super::*;
use crate::event::{Decoder, PseudonymKey, Pseudonymizer, Reject, RejectReason};
use crate::ledger::record::{EventColumns, RejectBytes, event_record, reject_record};
use crate::ledger::{ChainId, Origin};
use crate::source::synth::{Workload, WorkloadConfig};

fn decoder() -> Decoder {
    Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()))
}

/// The columns the scanner reads from a record are the ones the writer
/// derived from the event, for every example and 5,000 synthetic events of
/// every kind.
#[test]
fn columns_from_the_record_match_the_event() {
    let d = decoder();
    let examples = include_str!("../../../../tests/data/events-v1.jsonl");
    let mut events: Vec<_> = examples
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| d.decode(l.as_bytes()).unwrap())
        .collect();
    let mut workload = Workload::new(WorkloadConfig::default());
    let t = chrono::DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
        .unwrap()
        .to_utc();
    events.extend((0..5000).filter_map(|_| d.decode(&workload.next_message(t).payload).ok()));
    for (n, e) in events.iter().enumerate() {
        let origin = Origin {
            offset: n as i64,
            file: Some("in \"x\".jsonl".into()),
            line: Some(3),
        };
        let rec = String::from_utf8(event_record(&ChainId::new("t-1", 4), &origin, e)).unwrap();
        let (view, src) = parse_record(&rec).unwrap();
        assert_eq!(
            (src.stream.as_ref(), src.partition, src.offset),
            ("t-1", 4, n as i64)
        );
        assert_eq!(
            view.event.unwrap().columns().unwrap(),
            EventColumns::from_event(e).as_view(),
            "{rec}"
        );
    }
}

#[test]
fn reject_fields_and_escaped_strings_are_read() {
    let reject = Reject::new(RejectReason::MissingField, "missing `id` in \"a\"\n\u{e9}");
    let rec = reject_record(
        &ChainId::new("t", 0),
        &Origin::kafka(5),
        &RejectBytes::received(Some(b"k"), b"{}"),
        &reject,
    );
    let rec = String::from_utf8(rec).unwrap();
    let (view, src) = parse_record(&rec).unwrap();
    assert_eq!(src.offset, 5);
    assert_eq!(
        view.detail.as_deref(),
        Some("missing `id` in \"a\"\n\u{e9}")
    );
    assert_eq!(view.reason.as_deref(), Some("missing_field"));
    assert_eq!((view.key_len, view.payload_len), (Some(1), Some(2)));
    assert_eq!((view.payload_sealed, view.key_sealed), (None, None));

    let label = "xchacha20poly1305:rk1-0a1b2c3d";
    let rec = reject_record(
        &ChainId::new("t", 0),
        &Origin::kafka(6),
        &RejectBytes::sealed(label, Some(b"k"), b"{}"),
        &reject,
    );
    let rec = String::from_utf8(rec).unwrap();
    let (view, _) = parse_record(&rec).unwrap();
    assert_eq!(view.payload_sealed.as_deref(), Some(label));
    assert_eq!(view.key_sealed.as_deref(), Some(label));
}

#[test]
fn malformed_records_are_errors() {
    for bad in [
        "",
        "{",
        "[]",
        r#"{"src":{"stream":"t","partition":0,"offset":1},"v":2}"#,
        r#"{"src":{"stream":"t","partition":0},"v":1}"#,
        r#"{"src":{"stream":"t","partition":0,"offset":1},"v":1} x"#,
        r#"{"src":{"stream":"t","partition":0,"offset":"1"},"v":1}"#,
        r#"{"src":{"stream":"t","partition":0,"offset":1},"v":1,"x":[1,2}"#,
        r#"{"src":{"stream":"t","partition":0,"offset":1},"v":1,"x":tru}"#,
        r#"{"src":{"stream":"t\u","partition":0,"offset":1},"v":1}"#,
        "{\"src\":{\"stream\":\"t\tx\",\"partition\":0,\"offset\":1},\"v\":1}",
        r#"{"event":{"records":-1},"src":{"stream":"t","partition":0,"offset":1},"v":1}"#,
    ] {
        assert!(parse_record(bad).is_err(), "accepted {bad:?}");
    }
    let ok = r#"{"x":{"a":["}",{"b":"\"]"}]},"src":{"stream":"t","partition":0,"offset":1},"v":1}"#;
    assert!(parse_record(ok).is_ok());
}

/// Truncations and byte changes of real records never panic.
#[test]
fn mutations_never_panic() {
    let d = decoder();
    let mut workload = Workload::new(WorkloadConfig::default());
    let t = chrono::DateTime::parse_from_rfc3339("2026-03-02T08:00:00Z")
        .unwrap()
        .to_utc();
    let mut seed = 1u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..300 {
        let Ok(e) = d.decode(&workload.next_message(t).payload) else {
            continue;
        };
        let rec = event_record(&ChainId::new("t", 0), &Origin::kafka(1), &e);
        for _ in 0..20 {
            let mut bytes = rec.clone();
            let at = (next() as usize) % bytes.len();
            match next() % 3 {
                0 => bytes.truncate(at),
                1 => bytes[at] = b"{}[]\",:\\0a"[(next() % 10) as usize],
                _ => {
                    bytes.remove(at);
                }
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                let _ = parse_record(text).map(|(v, _)| v.event.map(|e| e.columns().is_ok()));
            }
        }
    }
}

/// The fast path for canonical times agrees with chrono, and leaves
/// everything else to it.
#[test]
fn canonical_times_are_read_as_chrono_reads_them() {
    let mut seed = 7u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let fractions = [
        "",
        ".1",
        ".120",
        ".000500",
        ".123456",
        ".000000007",
        ".999999999",
    ];
    let offsets = ["Z", "+01:00", "-05:30", "+14:00", "-00:00", "+00:00"];
    for _ in 0..20_000 {
        let secs = (next() % 8_000_000_000) as i64 - 2_000_000_000;
        let t = chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .naive_utc();
        let text = format!(
            "{}{}{}",
            t.format("%Y-%m-%dT%H:%M:%S"),
            fractions[(next() % fractions.len() as u64) as usize],
            offsets[(next() % offsets.len() as u64) as usize]
        );
        let want = chrono::DateTime::parse_from_rfc3339(&text)
            .unwrap()
            .timestamp_micros();
        assert_eq!(rfc3339_micros(&text), Some(want), "{text}");
    }
    for other in [
        "2026-02-29T00:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-03-02T24:00:00Z",
        "2026-03-02T10:00:60Z",
        "2026-03-02 10:00:00Z",
        "2026-03-02T10:00:00",
        "2026-03-02T10:00:00.Z",
        "2026-03-02T10:00:00+0100",
        "2026-03-02t10:00:00z",
        "2026-03-02T10:00:00.1234567890Z",
    ] {
        assert_eq!(rfc3339_micros(other), None, "{other}");
    }
    assert_eq!(
        rfc3339_micros("2024-02-29T23:59:59.999999Z"),
        Some(1_709_251_199_999_999)
    );
}

#[test]
fn the_word_test_finds_every_special_byte() {
    let naive = |w: u64| {
        w.to_le_bytes()
            .iter()
            .any(|&b| b == b'"' || b == b'\\' || b < 0x20)
    };
    let mut seed = 99u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..200_000 {
        let mut bytes = next().to_le_bytes();
        // Mostly printable bytes, sometimes one special or high byte.
        for b in &mut bytes {
            *b = 0x20 + (*b % 0x5f);
        }
        let at = (next() % 8) as usize;
        bytes[at] = match next() % 6 {
            0 => b'"',
            1 => b'\\',
            2 => (next() % 0x20) as u8,
            3 => 0x80 | (next() as u8),
            _ => bytes[at],
        };
        let w = u64::from_le_bytes(bytes);
        assert_eq!(special(w) != 0, naive(w), "{bytes:?}");
        if let Some(first) = bytes
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        {
            assert_eq!(special(w).trailing_zeros() / 8, first as u32, "{bytes:?}");
        }
    }
}

#[test]
fn numbers_are_checked_as_json_defines_them() {
    for good in [
        "0",
        "-0",
        "7",
        "-12",
        "0.5",
        "1e9",
        "1E+9",
        "2.5e-3",
        "123456789012345678901234567890",
    ] {
        assert!(json_number(good), "{good}");
        assert!(
            serde_json::from_str::<serde_json::Number>(good).is_ok(),
            "{good}"
        );
    }
    for bad in [
        "", "-", "01", "+1", "1.", ".5", "1e", "1e+", "0x10", "1.2.3", "--1", "NaN",
    ] {
        assert!(!json_number(bad), "{bad}");
    }
}
