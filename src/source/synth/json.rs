//! Hand-written JSON: string literals (escaped), numbers, the pieces of
//! events the workload writes often, and RFC 3339 timestamps, appended
//! straight to a byte buffer without `serde_json`.
//!
//! Nothing here writes a newline byte: strings escape control characters.

use super::MINUTE;

/// Bytes that cannot appear raw inside a JSON string.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Writes a JSON string literal, escaping `"`, `\` and control characters.
pub(crate) fn push_str(b: &mut Vec<u8>, s: &str) {
    b.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&c| NEEDS_ESCAPE[c as usize]) {
        b.extend_from_slice(bytes);
    } else {
        for &c in bytes {
            match c {
                b'"' => b.extend_from_slice(b"\\\""),
                b'\\' => b.extend_from_slice(b"\\\\"),
                b'\n' => b.extend_from_slice(b"\\n"),
                b'\r' => b.extend_from_slice(b"\\r"),
                b'\t' => b.extend_from_slice(b"\\t"),
                0x08 => b.extend_from_slice(b"\\b"),
                0x0c => b.extend_from_slice(b"\\f"),
                c if c < 0x20 => {
                    b.extend_from_slice(b"\\u00");
                    push_hex(b, u64::from(c), 2);
                }
                c => b.push(c),
            }
        }
    }
    b.push(b'"');
}

/// Writes a string literal that needs no escaping (identifiers and
/// vocabulary this module produces itself).
#[inline]
pub(crate) fn push_plain(b: &mut Vec<u8>, s: &str) {
    debug_assert!(s.bytes().all(|c| !NEEDS_ESCAPE[c as usize]), "{s:?}");
    b.push(b'"');
    b.extend_from_slice(s.as_bytes());
    b.push(b'"');
}

/// Writes `,"name":"value"` for a value that needs no escaping.
#[inline]
pub(crate) fn push_field_str(b: &mut Vec<u8>, name: &str, value: &str) {
    b.extend_from_slice(b",\"");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\":");
    push_plain(b, value);
}

/// Writes `,"actor":{…}`.
pub(crate) fn write_actor(
    b: &mut Vec<u8>,
    id: &str,
    role: Option<&str>,
    dept: Option<&str>,
    ip: Option<&str>,
    session: Option<&str>,
) {
    b.extend_from_slice(b",\"actor\":{\"id\":");
    push_plain(b, id);
    if let Some(v) = role {
        push_field_str(b, "role", v);
    }
    if let Some(v) = dept {
        push_field_str(b, "dept", v);
    }
    if let Some(v) = ip {
        push_field_str(b, "ip", v);
    }
    if let Some(v) = session {
        push_field_str(b, "session", v);
    }
    b.push(b'}');
}

/// The decimal digits of `n`, written at the end of `tmp`.
#[inline]
pub(crate) fn digits(tmp: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &tmp[i..]
}

#[inline]
pub(crate) fn push_u64(b: &mut Vec<u8>, n: u64) {
    let mut tmp = [0u8; 20];
    b.extend_from_slice(digits(&mut tmp, n));
}

/// Writes a fixed-point decimal number with `decimals` digits after the point.
#[inline]
pub(crate) fn push_fixed(b: &mut Vec<u8>, v: f64, decimals: u32) {
    const SCALES: [u64; 5] = [1, 10, 100, 1000, 10_000];
    let scale = SCALES[decimals.min(4) as usize];
    let decimals = decimals.min(4);
    // Round half away from zero; `as` saturates and maps NaN to 0.
    let x = v * scale as f64;
    let mut n = if x >= 0.0 {
        (x + 0.5) as i64
    } else {
        (x - 0.5) as i64
    };
    if n < 0 {
        b.push(b'-');
        n = -n;
    }
    let n = n as u64;
    push_u64(b, n / scale);
    if decimals > 0 {
        b.push(b'.');
        let mut frac = n % scale;
        let mut digits = [b'0'; 20];
        for i in (0..decimals as usize).rev() {
            digits[i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        b.extend_from_slice(&digits[..decimals as usize]);
    }
}

pub(crate) fn push_hex(b: &mut Vec<u8>, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        b.push(b"0123456789abcdef"[((v >> (i * 4)) & 0xF) as usize]);
    }
}

/// Writes `"<prefix>MRN-…"`: the medical record number of `patient` as a
/// JSON string, after `prefix` (which needs no escaping).
#[inline]
pub(crate) fn push_mrn(b: &mut Vec<u8>, prefix: &str, patient: u32) {
    b.push(b'"');
    b.extend_from_slice(prefix.as_bytes());
    b.extend_from_slice(b"MRN-");
    push_u64(b, 200_000 + u64::from(patient));
    b.push(b'"');
}

/// Writes `name` with `-` replaced by `_`.
pub(crate) fn push_snake(b: &mut Vec<u8>, name: &str) {
    b.extend(name.bytes().map(|c| if c == b'-' { b'_' } else { c }));
}

pub(crate) fn push_cohort(b: &mut Vec<u8>, n: u64) {
    b.extend_from_slice(b"\"dataset:cohort-");
    push_u64(b, n);
    b.push(b'"');
}

pub(crate) fn push_model_ref(b: &mut Vec<u8>, name: &str, version: &str) {
    b.extend_from_slice(b"\"model:");
    b.extend_from_slice(name.as_bytes());
    b.push(b'@');
    b.extend_from_slice(version.as_bytes());
    b.push(b'"');
}

#[inline]
fn push_2(b: &mut Vec<u8>, v: u32) {
    b.push(b'0' + (v / 10) as u8);
    b.push(b'0' + (v % 10) as u8);
}

/// Writes `.mmm`.
#[inline]
fn push_millis(b: &mut Vec<u8>, millis: u32) {
    b.push(b'.');
    b.push(b'0' + (millis / 100) as u8);
    push_2(b, millis % 100);
}

/// Days since 1970-01-01 → (year, month, day) (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes an RFC 3339 timestamp (without quotes) for the instant `ms` (Unix
/// milliseconds) shown at UTC offset `offset_min` minutes (`Some(0)` → `Z`,
/// `None` → no offset at all, which is invalid), with milliseconds or whole
/// seconds.
pub(crate) fn write_time(b: &mut Vec<u8>, ms: i64, offset_min: Option<i32>, millis: bool) {
    let off = offset_min.unwrap_or(0);
    let local = ms + i64::from(off) * MINUTE;
    let days = local.div_euclid(86_400_000);
    let rem = local.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    push_2(b, y / 100);
    push_2(b, y % 100);
    b.push(b'-');
    push_2(b, mo);
    b.push(b'-');
    push_2(b, d);
    b.push(b'T');
    let secs = (rem / 1000) as u32;
    push_2(b, secs / 3600);
    b.push(b':');
    push_2(b, secs / 60 % 60);
    b.push(b':');
    push_2(b, secs % 60);
    if millis {
        push_millis(b, (rem % 1000) as u32);
    }
    match offset_min {
        None => {}
        Some(0) => b.push(b'Z'),
        Some(o) => {
            b.push(if o < 0 { b'-' } else { b'+' });
            let a = o.unsigned_abs();
            push_2(b, a / 60);
            b.push(b':');
            push_2(b, a % 60);
        }
    }
}

/// Writes UTC timestamps with milliseconds (`write_time(b, ms, Some(0),
/// true)`), remembering the `YYYY-MM-DDTHH:MM:SS` of the last second
/// written: consecutive events mostly fall in the same second.
#[derive(Debug, Clone)]
pub(crate) struct UtcTimeWriter {
    sec: i64,
    text: [u8; 19],
}

impl UtcTimeWriter {
    pub(crate) fn new() -> Self {
        Self {
            sec: i64::MIN,
            text: [0; 19],
        }
    }

    pub(crate) fn write(&mut self, b: &mut Vec<u8>, ms: i64) {
        let sec = ms.div_euclid(1000);
        if self.sec != sec {
            let mut t = Vec::with_capacity(24);
            write_time(&mut t, sec * 1000, None, false);
            self.text.copy_from_slice(&t[..19]);
            self.sec = sec;
        }
        b.extend_from_slice(&self.text);
        push_millis(b, ms.rem_euclid(1000) as u32);
        b.push(b'Z');
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::Rng;
    use super::*;
    use chrono::DateTime;

    #[test]
    fn time_writer_matches_chrono() {
        let mut rng = Rng::new(1);
        for _ in 0..20_000 {
            let ms = rng.below(4_102_444_800_000) as i64; // 1970..2100
            let t = DateTime::from_timestamp_millis(ms).unwrap();
            let mut b = Vec::new();
            write_time(&mut b, ms, Some(0), true);
            assert_eq!(
                String::from_utf8(b).unwrap(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
            for off in [60, -300, 330] {
                let mut b = Vec::new();
                write_time(&mut b, ms, Some(off), false);
                let tz = chrono::FixedOffset::east_opt(off * 60).unwrap();
                assert_eq!(
                    String::from_utf8(b).unwrap(),
                    t.with_timezone(&tz)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
        }
    }

    #[test]
    fn strings_are_escaped() {
        for s in [
            "plain",
            "a\"b",
            "back\\slash",
            "nl\nx",
            "tab\t",
            "\u{1}",
            "Müller",
            "Nguyễn",
        ] {
            let mut b = Vec::new();
            push_str(&mut b, s);
            let back: String = serde_json::from_slice(&b).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn fixed_point_numbers() {
        for (v, d, want) in [
            (38.94, 1, "38.9"),
            (0.0, 2, "0.00"),
            (-0.004, 2, "0.00"),
            (-1.25, 1, "-1.3"),
            (7.399, 2, "7.40"),
            (112.0, 0, "112"),
            (0.05, 3, "0.050"),
        ] {
            let mut b = Vec::new();
            push_fixed(&mut b, v, d);
            assert_eq!(String::from_utf8(b).unwrap(), want, "{v}");
        }
    }

    #[test]
    fn cached_utc_writer_matches_write_time() {
        let mut rng = Rng::new(2);
        let mut w = UtcTimeWriter::new();
        let mut ms = 1_772_438_400_000i64;
        for _ in 0..20_000 {
            // Mostly within the same second, sometimes a jump back or ahead.
            ms += match rng.below(10) {
                0 => -(rng.below(10_000_000) as i64),
                1 => rng.below(100_000_000) as i64,
                _ => rng.below(300) as i64,
            };
            let (mut got, mut want) = (Vec::new(), Vec::new());
            w.write(&mut got, ms);
            write_time(&mut want, ms, Some(0), true);
            assert_eq!(got, want);
        }
    }
}
