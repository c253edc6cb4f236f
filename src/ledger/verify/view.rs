//! Reading the fields `verify` checks out of a record, fast.
//!
//! Records are canonical JSON (`docs/ledger-format.md`, section 3). `verify`
//! compares a few of their fields with the typed columns of every row, and
//! at ten million rows a general-purpose deserializer was the largest cost
//! of a verification. This scanner walks the text once, picks the named
//! members out of the objects it needs and skips every other value without
//! allocating (a string with escapes is decoded by `serde_json`). It accepts
//! any JSON, not only canonical text, and refuses malformed text; what a
//! record proves rests on its hash, not on this parse.

use std::borrow::Cow;

use crate::ledger::record::{ColumnsView, RECORD_VERSION};

type Text<'a> = Cow<'a, str>;

/// A record's fields that columns are checked against.
#[derive(Debug, Default)]
pub(crate) struct RecordView<'a> {
    pub event: Option<EventView<'a>>,
    pub src: Option<SrcView<'a>>,
    pub v: Option<u64>,
    pub reason: Option<Text<'a>>,
    pub detail: Option<Text<'a>>,
    pub payload_blake3: Option<Text<'a>>,
    pub payload_len: Option<u64>,
    pub key_blake3: Option<Text<'a>>,
    pub key_len: Option<u64>,
    pub payload_sealed: Option<Text<'a>>,
    pub key_sealed: Option<Text<'a>>,
    /// A tombstone's leaf hash of the erased row.
    pub erased: Option<Text<'a>>,
}

/// The `src` object of a record.
#[derive(Debug, Default)]
pub(crate) struct SrcView<'a> {
    pub stream: Option<Text<'a>>,
    pub partition: Option<i64>,
    pub offset: Option<i64>,
}

#[derive(Debug, Default)]
pub(crate) struct EventView<'a> {
    id: Option<Text<'a>>,
    time: Option<Text<'a>>,
    kind: Option<Text<'a>>,
    actor: Option<(Option<Text<'a>>, Option<Text<'a>>, Option<Text<'a>>)>,
    action: Option<Text<'a>>,
    op: Option<Text<'a>>,
    patient: Option<Text<'a>>,
    purpose: Option<Text<'a>>,
    outcome: Option<Text<'a>>,
    records: Option<u64>,
    model: Option<(Option<Text<'a>>, Option<Text<'a>>)>,
}

/// Parses a record: a JSON object with `v` = 1 and a complete `src`.
pub(crate) fn parse_record(text: &str) -> Result<(RecordView<'_>, Src<'_>), String> {
    let mut s = Scanner::new(text);
    let mut view = RecordView::default();
    s.object(|s, key| {
        match key.as_ref() {
            "event" => view.event = Some(event(s)?),
            "src" => view.src = Some(src(s)?),
            "v" => view.v = Some(s.number()?),
            "reason" => view.reason = Some(s.string()?),
            "detail" => view.detail = Some(s.string()?),
            "payload_blake3" => view.payload_blake3 = Some(s.string()?),
            "payload_len" => view.payload_len = Some(s.number()?),
            "key_blake3" => view.key_blake3 = Some(s.string()?),
            "key_len" => view.key_len = Some(s.number()?),
            "payload_sealed" => view.payload_sealed = Some(s.string()?),
            "key_sealed" => view.key_sealed = Some(s.string()?),
            "erased" => view.erased = Some(s.string()?),
            _ => s.skip_value()?,
        }
        Ok(())
    })
    .and_then(|()| s.end())
    .map_err(|e| format!("record does not parse: {e}"))?;
    if view.v != Some(RECORD_VERSION) {
        return Err(format!("record version is not {RECORD_VERSION}"));
    }
    let src = view.src.as_ref().ok_or("record lacks `src`")?;
    let src = Src {
        stream: src.stream.clone().ok_or("record lacks `src.stream`")?,
        partition: src.partition.ok_or("record lacks `src.partition`")?,
        offset: src.offset.ok_or("record lacks `src.offset`")?,
    };
    Ok((view, src))
}

/// The complete `src` of a record.
#[derive(Debug)]
pub(crate) struct Src<'a> {
    pub stream: Text<'a>,
    pub partition: i64,
    pub offset: i64,
}

fn event<'a>(s: &mut Scanner<'a>) -> Result<EventView<'a>, String> {
    let mut e = EventView::default();
    s.object(|s, key| {
        match key.as_ref() {
            "id" => e.id = Some(s.string()?),
            "time" => e.time = Some(s.string()?),
            "kind" => e.kind = Some(s.string()?),
            "action" => e.action = Some(s.string()?),
            "op" => e.op = Some(s.string()?),
            "patient" => e.patient = Some(s.string()?),
            "purpose" => e.purpose = Some(s.string()?),
            "outcome" => e.outcome = Some(s.string()?),
            "records" => e.records = Some(s.number()?),
            "actor" => {
                let (mut id, mut role, mut dept) = (None, None, None);
                s.object(|s, key| {
                    match key.as_ref() {
                        "id" => id = Some(s.string()?),
                        "role" => role = Some(s.string()?),
                        "dept" => dept = Some(s.string()?),
                        _ => s.skip_value()?,
                    }
                    Ok(())
                })?;
                e.actor = Some((id, role, dept));
            }
            "model" => {
                let (mut id, mut version) = (None, None);
                s.object(|s, key| {
                    match key.as_ref() {
                        "id" => id = Some(s.string()?),
                        "version" => version = Some(s.string()?),
                        _ => s.skip_value()?,
                    }
                    Ok(())
                })?;
                e.model = Some((id, version));
            }
            _ => s.skip_value()?,
        }
        Ok(())
    })?;
    Ok(e)
}

fn src<'a>(s: &mut Scanner<'a>) -> Result<SrcView<'a>, String> {
    let mut src = SrcView::default();
    s.object(|s, key| {
        match key.as_ref() {
            "stream" => src.stream = Some(s.string()?),
            "partition" => src.partition = Some(s.number()?),
            "offset" => src.offset = Some(s.number()?),
            _ => s.skip_value()?,
        }
        Ok(())
    })?;
    Ok(src)
}

impl EventView<'_> {
    /// The columns as an independent verifier derives them from the
    /// `event` object of a record (rules in `docs/ledger-format.md`).
    pub fn columns(&self) -> Result<ColumnsView<'_>, String> {
        let need = |v: &Option<Text<'_>>, name: &str| -> Result<(), String> {
            v.as_ref()
                .map(|_| ())
                .ok_or_else(|| format!("record lacks `{name}`"))
        };
        need(&self.id, "id")?;
        need(&self.time, "time")?;
        need(&self.kind, "kind")?;
        let (Some(actor_id), role, dept) = self
            .actor
            .as_ref()
            .map(|(id, role, dept)| (id.as_deref(), role.as_deref(), dept.as_deref()))
            .ok_or("record lacks `actor`")?
        else {
            return Err("record lacks `actor.id`".into());
        };
        let time = self.time.as_deref().unwrap_or_default();
        let time_us = match rfc3339_micros(time) {
            Some(us) => us,
            None => chrono::DateTime::parse_from_rfc3339(time)
                .map_err(|_| "record `time` is not RFC 3339".to_owned())?
                .timestamp_micros(),
        };
        let kind = self.kind.as_deref().unwrap_or_default();
        let action = match kind {
            "lineage" => self.op.as_deref(),
            _ => self.action.as_deref(),
        };
        let model = match &self.model {
            None => None,
            Some((Some(id), Some(version))) => Some(Cow::Owned(format!("{id}@{version}"))),
            Some(_) => return Err("record `model` lacks `id` or `version`".into()),
        };
        Ok(ColumnsView {
            id: self.id.as_deref().unwrap_or_default(),
            time_us,
            kind,
            actor_id,
            actor_role: role,
            actor_dept: dept,
            patient: self.patient.as_deref(),
            action,
            purpose: self.purpose.as_deref(),
            outcome: self.outcome.as_deref(),
            records: self.records.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            model,
        })
    }
}

/// Microseconds since the epoch of a time in the canonical form
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`; `None` for anything else
/// (which the caller hands to a general RFC 3339 parser). Sub-microsecond
/// digits are truncated, as `timestamp_micros` does.
fn rfc3339_micros(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month)
        || day < 1
        || day > month_days[(month - 1) as usize]
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let mut i = 19;
    let mut micros = 0i64;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = i - start;
        if digits == 0 || digits > 9 {
            return None;
        }
        let frac = num(start, digits.min(6))?;
        micros = frac * 10i64.pow(6 - digits.min(6) as u32);
    }
    let offset_secs = match b.get(i..)? {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    // Days from 1970-01-01 to the civil date (H. Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// Flags (high bits) on the bytes of `w` that are `"`, `\` or below 0x20,
/// zero when there is none. SWAR: `(x - 0x01…) & !x & 0x80…` flags a zero
/// byte; a borrow can also flag a byte above a flagged one, never below,
/// so the lowest flag marks the first special byte exactly.
fn special(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let quote = zero(w ^ (ONES * u64::from(b'"')));
    let backslash = zero(w ^ (ONES * u64::from(b'\\')));
    // Bytes below 0x20: subtracting 0x20 borrows into the high bit, for
    // bytes without their own high bit set.
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    quote | backslash | control
}

/// Whether `t` is a JSON number: `-`? int frac? exp? (RFC 8259, 6).
fn json_number(t: &str) -> bool {
    let b = t.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// A cursor over JSON text.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
}

/// Numbers `number()` reads.
trait FromJsonNumber: Sized {
    fn parse(digits: &str) -> Option<Self>;
}

impl FromJsonNumber for u64 {
    fn parse(digits: &str) -> Option<Self> {
        digits.parse().ok()
    }
}

impl FromJsonNumber for i64 {
    fn parse(digits: &str) -> Option<Self> {
        digits.parse().ok()
    }
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner { text, at: 0 }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.bytes().get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> Result<(), String> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!(
                "expected `{}` at byte {}",
                char::from(byte),
                self.at
            ))
        }
    }

    fn end(&mut self) -> Result<(), String> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(format!("trailing text at byte {}", self.at)),
        }
    }

    /// Calls `member(scanner, key)` for each member of the object here;
    /// `member` must consume the value.
    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Text<'a>) -> Result<(), String>,
    ) -> Result<(), String> {
        self.eat(b'{')?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.eat(b':')?;
            member(self, key)?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(format!("expected `,` or `}}` at byte {}", self.at)),
            }
        }
    }

    /// The end (just past the closing quote) of the string starting here,
    /// and whether it holds escapes. A raw control character is an error.
    fn string_end(&self, start: usize) -> Result<(usize, bool), String> {
        let bytes = self.bytes();
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            // Eight bytes at a time while none is `"`, `\` or a control
            // character (the usual case: most of a record is plain text).
            while let Some(word) = bytes.get(i..i + 8) {
                let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                let mask = special(w);
                if mask != 0 {
                    // The lowest flag marks the first special byte exactly.
                    i += (mask.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            let Some(&b) = bytes.get(i) else { break };
            match b {
                b'"' => return Ok((i + 1, escaped)),
                b'\\' => {
                    escaped = true;
                    i += 2;
                }
                0..0x20 => return Err(format!("control character in the string at byte {start}")),
                _ => i += 1,
            }
        }
        Err(format!("unterminated string at byte {start}"))
    }

    fn string(&mut self) -> Result<Text<'a>, String> {
        if self.peek() != Some(b'"') {
            return Err(format!("expected a string at byte {}", self.at));
        }
        let start = self.at;
        let (end, escaped) = self.string_end(start)?;
        self.at = end;
        let raw = &self.text[start..end];
        if escaped {
            serde_json::from_str::<String>(raw)
                .map(Cow::Owned)
                .map_err(|e| format!("bad string at byte {start}: {e}"))
        } else {
            Ok(Cow::Borrowed(&raw[1..raw.len() - 1]))
        }
    }

    fn number<N: FromJsonNumber>(&mut self) -> Result<N, String> {
        self.ws();
        let start = self.at;
        let bytes = self.bytes();
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = bytes.get(self.at) {
            self.at += 1;
        }
        N::parse(&self.text[start..self.at])
            .ok_or_else(|| format!("expected an integer at byte {start}"))
    }

    /// Skips one value of any kind.
    fn skip_value(&mut self) -> Result<(), String> {
        match self.peek() {
            Some(b'"') => {
                self.at = self.string_end(self.at)?.0;
                Ok(())
            }
            Some(b'{' | b'[') => self.skip_container(),
            Some(b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
                let start = self.at;
                let bytes = self.bytes();
                while let Some(b) = bytes.get(self.at) {
                    if matches!(b, b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t') {
                        break;
                    }
                    self.at += 1;
                }
                let token = &self.text[start..self.at];
                let valid = matches!(token, "true" | "false" | "null") || json_number(token);
                if valid {
                    Ok(())
                } else {
                    Err(format!("bad value at byte {start}"))
                }
            }
            _ => Err(format!("expected a value at byte {}", self.at)),
        }
    }

    /// Skips a whole object or array, strings and nesting included. Its
    /// members' syntax is checked only as far as brackets and strings go.
    fn skip_container(&mut self) -> Result<(), String> {
        let bytes = self.bytes();
        let start = self.at;
        let mut stack: Vec<u8> = Vec::new();
        while let Some(&b) = bytes.get(self.at) {
            match b {
                b'"' => {
                    self.at = self.string_end(self.at)?.0;
                    continue;
                }
                b'{' => stack.push(b'}'),
                b'[' => stack.push(b']'),
                b'}' | b']' => {
                    if stack.pop() != Some(b) {
                        return Err(format!(
                            "mismatched `{}` at byte {}",
                            char::from(b),
                            self.at
                        ));
                    }
                    if stack.is_empty() {
                        self.at += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
        Err(format!("unterminated object or array at byte {start}"))
    }
}

#[cfg(test)]
mod tests;
