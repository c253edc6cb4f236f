//! Chain manifests: `manifests/<stream>/<partition>.jsonl`, one JSON line per
//! durable segment, appended and fsynced after the segment file itself.
//!
//! The lines of one flush form a group (same `flush` number, `flush_segments`
//! lines). A flush is committed when the last line of its group is complete
//! (newline-terminated) on disk. Parsing here is shared by the writer, which
//! repairs a crashed tail, and by `verify`, which reports it.

use serde::{Deserialize, Serialize};

/// The tables of a chain: a source chain holds `events` and `rejects`, the
/// alert stage's chain ([`super::INCIDENTS_STREAM`]) holds `incidents`, a
/// query surface's chain ([`super::QUERIES_STREAM`]) holds `query_log`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Table {
    Events,
    Rejects,
    Incidents,
    QueryLog,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Events,
        Table::Rejects,
        Table::Incidents,
        Table::QueryLog,
    ];

    /// The table name, also its top-level folder in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Rejects => "rejects",
            Table::Incidents => "incidents",
            Table::QueryLog => "query_log",
        }
    }

    /// The stream of the chains that hold this table, when it has chains
    /// of its own (`incidents`, `query_log`); `None` for the source
    /// chains' tables.
    pub fn own_stream(self) -> Option<&'static str> {
        match self {
            Table::Events | Table::Rejects => None,
            Table::Incidents => Some(super::INCIDENTS_STREAM),
            Table::QueryLog => Some(super::QUERIES_STREAM),
        }
    }

    /// Whether a chain of `stream` may hold this table.
    pub fn held_by(self, stream: &str) -> bool {
        match self.own_stream() {
            Some(own) => stream == own,
            None => Table::ALL.iter().all(|t| t.own_stream() != Some(stream)),
        }
    }

    /// The table of a name (`events`, `rejects`, `incidents`, `query_log`).
    pub fn parse(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// One manifest line: a durable segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLine {
    pub table: Table,
    /// Path of the segment relative to the store root, `/`-separated.
    pub file: String,
    pub first_seq: u64,
    pub rows: u64,
    pub first_offset: i64,
    pub last_offset: i64,
    /// Merkle root (hex) of the table's tree of `first_seq + rows` leaves:
    /// every row of the table up to and including this segment.
    pub root: String,
    /// BLAKE3 of the whole segment file (hex).
    pub file_blake3: String,
    pub bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_time_us: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_time_us: Option<i64>,
    /// Number of the flush that wrote this segment (0, 1, 2, … per chain).
    pub flush: u64,
    /// How many segments (lines) that flush wrote.
    pub flush_segments: u32,
    /// The id of the key the segment is encrypted with (`sk1-…`); absent
    /// for a plaintext segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// What later amendment lines did to the segment (never written in
    /// the line itself: [`apply_amendment`] sets it).
    #[serde(skip)]
    pub amended: Amended,
}

impl ManifestLine {
    /// The seq after this segment's last row.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + self.rows
    }

    /// Whether the segment's file is gone (pruned by retention): its rows
    /// survive only as leaf hashes in the tree strata.
    pub fn is_pruned(&self) -> bool {
        self.amended.pruned
    }

    /// The segment file's generation: 0 as flushed, +1 per erasure that
    /// rewrote it.
    pub fn generation(&self) -> u32 {
        self.amended.generation
    }
}

/// The state of a segment after the manifest's amendment lines (all
/// zero/false/empty: as flushed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Amended {
    /// Erasures that rewrote it: the file in the line is this generation.
    pub generation: u32,
    /// Rows of that file that are tombstones.
    pub erased_rows: u64,
    /// Deleted by retention (after any erasures).
    pub pruned: bool,
    /// The `reason` and `time` of each erase amendment, in order: every
    /// tombstone of the file carries one of them.
    pub erasures: Vec<ErasureNote>,
}

/// Why and when an erase amendment erased rows, as its line and its
/// tombstones state it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureNote {
    pub reason: String,
    pub time: String,
}

/// An amendment line: a later change to an earlier segment line, appended
/// to the manifest (which stays append-only) and committed like a flush.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Amendment {
    /// `erase` or `prune`.
    pub amend: AmendKind,
    /// The segment amended: its table and first seq.
    pub table: Table,
    pub first_seq: u64,
    /// erase only: the rewritten file, its digest and size, and how many
    /// of its rows are now erased (all erasures so far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_blake3: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub erased_rows: Option<u64>,
    /// erase only: the id of the key the rewritten file is encrypted with;
    /// absent for a plaintext file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// When, UTC, RFC 3339 to the second.
    pub time: String,
    /// Why: the erasure request's reference, or `retention`.
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmendKind {
    Erase,
    Prune,
}

/// One line of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Segment(ManifestLine),
    Amend(Amendment),
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = serde_json::Value::deserialize(d)?;
        if value.get("amend").is_some() {
            serde_json::from_value(value).map(Entry::Amend)
        } else {
            serde_json::from_value(value).map(Entry::Segment)
        }
        .map_err(D::Error::custom)
    }
}

/// Applies an amendment to the segment lines before it. Errors say why it
/// does not fit them.
pub(crate) fn apply_amendment<'a>(
    lines: impl IntoIterator<Item = &'a mut ManifestLine>,
    amendment: &Amendment,
    chain: &super::ChainId,
) -> Result<(), String> {
    let Some(line) = lines
        .into_iter()
        .find(|l| l.table == amendment.table && l.first_seq == amendment.first_seq)
    else {
        return Err(format!(
            "amends the {} segment at seq {}, which no earlier line lists",
            amendment.table.as_str(),
            amendment.first_seq
        ));
    };
    if line.is_pruned() {
        return Err("amends a segment that was pruned".into());
    }
    match amendment.amend {
        AmendKind::Prune => {
            let extra = amendment.file.is_some()
                || amendment.file_blake3.is_some()
                || amendment.bytes.is_some()
                || amendment.erased_rows.is_some()
                || amendment.key_id.is_some();
            if extra {
                return Err("a prune amendment names a file".into());
            }
            line.amended.pruned = true;
        }
        AmendKind::Erase => {
            let (Some(file), Some(digest), Some(bytes), Some(rows)) = (
                &amendment.file,
                &amendment.file_blake3,
                amendment.bytes,
                amendment.erased_rows,
            ) else {
                return Err(
                    "an erase amendment lacks file, file_blake3, bytes or erased_rows".into(),
                );
            };
            let generation = line.generation() + 1;
            let expected =
                super::segment::segment_rel_path(line.table, chain, line.first_seq, generation);
            if *file != expected {
                return Err(format!(
                    "names file {file:?}; the next generation is {expected:?}"
                ));
            }
            let before = line.amended.erased_rows;
            if rows <= before || rows > line.rows {
                return Err(format!(
                    "erased_rows is {rows}: must be above the {before} erased before and at most the segment's {} rows",
                    line.rows
                ));
            }
            line.file = file.clone();
            line.file_blake3 = digest.clone();
            line.bytes = bytes;
            line.key_id = amendment.key_id.clone();
            line.amended.generation = generation;
            line.amended.erased_rows = rows;
            line.amended.erasures.push(ErasureNote {
                reason: amendment.reason.clone(),
                time: amendment.time.clone(),
            });
        }
    }
    Ok(())
}

/// An append-only JSON-lines file (a manifest or a checkpoint file) as
/// found on disk.
#[derive(Debug)]
pub(crate) struct ParsedLines<T> {
    /// Complete (newline-terminated) lines: 1-based line number, byte
    /// offset just past the line's newline, and the parse result.
    pub lines: Vec<(usize, u64, Result<T, String>)>,
    /// Bytes after the last newline (a torn append), if any.
    pub torn_tail: bool,
}

/// What verify says of a torn last line.
pub(crate) const TORN_TAIL: &str =
    "last line is incomplete (a crash during append; opening the chain for writing repairs it)";

/// Splits JSON lines; `what` names them in errors ("manifest line 3 …").
pub(crate) fn parse_lines<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> ParsedLines<T> {
    let mut lines = Vec::new();
    let mut torn_tail = false;
    let mut start = 0usize;
    for (no, chunk) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let end = start + chunk.len();
        match chunk.strip_suffix(b"\n") {
            Some(line) => {
                let parsed = serde_json::from_slice::<T>(line)
                    .map_err(|e| format!("{what} line {} does not parse: {e}", no + 1));
                lines.push((no + 1, end as u64, parsed));
            }
            None => torn_tail = true,
        }
        start = end;
    }
    ParsedLines { lines, torn_tail }
}

/// A manifest's lines.
pub(crate) fn parse(bytes: &[u8]) -> ParsedLines<Entry> {
    parse_lines(bytes, "manifest")
}

/// How the flush groups of a list of good lines end.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Groups {
    /// Every group is complete; the next flush number.
    Complete { next_flush: u64 },
    /// The last `lines` lines are an incomplete group (crash mid-append).
    IncompleteTail { lines: usize, next_flush: u64 },
}

/// The most segments one flush writes: a chain holds `events` and
/// `rejects` (a source chain) or one other table, and a flush writes one
/// segment per table it has rows of.
pub(crate) const MAX_FLUSH_SEGMENTS: u32 = 2;

/// Checks that lines form groups `flush` = 0, 1, 2, … of `flush_segments`
/// (1 to [`MAX_FLUSH_SEGMENTS`]) lines each, every table at most once per
/// group. Errors name the 0-based index of the first line that breaks the
/// rule.
pub(crate) fn check_groups(lines: &[&ManifestLine]) -> Result<Groups, (usize, String)> {
    let mut next_flush = 0u64;
    let mut i = 0;
    while i < lines.len() {
        let head = lines[i];
        if head.flush != next_flush {
            return Err((
                i,
                format!("flush {} where flush {next_flush} was expected", head.flush),
            ));
        }
        let want = head.flush_segments as usize;
        if want == 0 || want > MAX_FLUSH_SEGMENTS as usize {
            return Err((
                i,
                format!(
                    "flush_segments is {want}; a flush writes 1 to {MAX_FLUSH_SEGMENTS} segments"
                ),
            ));
        }
        let mut tables = Vec::with_capacity(want);
        let mut n = 0;
        while n < want && i + n < lines.len() {
            let line = lines[i + n];
            if line.flush != head.flush {
                return Err((
                    i + n,
                    format!("flush {} has {n} of {want} lines", head.flush),
                ));
            }
            if line.flush_segments != head.flush_segments {
                return Err((i + n, "flush_segments differs within one flush".into()));
            }
            if tables.contains(&line.table) {
                return Err((i + n, "table appears twice in one flush".into()));
            }
            tables.push(line.table);
            n += 1;
        }
        next_flush += 1;
        if n < want {
            return Ok(Groups::IncompleteTail {
                lines: n,
                next_flush: head.flush,
            });
        }
        i += n;
    }
    Ok(Groups::Complete { next_flush })
}

/// Whether an amendment line that follows the first `before` of `lines`
/// (the segment lines) sits inside a flush group: after some lines of a
/// flush and before the rest of them, or after an incomplete last flush.
/// The lines of one flush are written in one append, and amendments only
/// between flushes, so no writer puts one there.
pub(crate) fn inside_group(lines: &[&ManifestLine], before: usize) -> bool {
    let Some(last) = before.checked_sub(1).and_then(|i| lines.get(i)) else {
        return false;
    };
    let run = lines[..before]
        .iter()
        .rev()
        .take_while(|l| l.flush == last.flush)
        .count();
    run < last.flush_segments as usize || lines.get(before).is_some_and(|l| l.flush == last.flush)
}

/// The manifest path of a chain, relative to the store root.
pub(crate) fn manifest_rel_path(chain: &super::ChainId) -> String {
    format!("manifests/{}/{}.jsonl", chain.stream, chain.partition)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(table: Table, flush: u64, of: u32) -> ManifestLine {
        ManifestLine {
            table,
            file: "events/t/0/00000000000000000000.parquet".into(),
            first_seq: 0,
            rows: 1,
            first_offset: 0,
            last_offset: 0,
            root: "11".repeat(32),
            file_blake3: "22".repeat(32),
            bytes: 10,
            min_time_us: None,
            max_time_us: None,
            flush,
            flush_segments: of,
            key_id: None,
            amended: Amended::default(),
        }
    }

    #[test]
    fn parse_separates_lines_and_torn_tail() {
        let good = serde_json::to_string(&line(Table::Events, 0, 1)).unwrap();
        assert!(!good.contains("amended"));
        let text = format!("{good}\nnot json\n{{\"table\":\"ev");
        let parsed = parse(text.as_bytes());
        assert!(parsed.torn_tail);
        assert_eq!(parsed.lines.len(), 2);
        assert_eq!(parsed.lines[0].1, good.len() as u64 + 1);
        assert!(parsed.lines[0].2.is_ok());
        assert!(parsed.lines[1].2.as_ref().unwrap_err().contains("line 2"));
        assert!(!parse(b"").torn_tail);
    }

    #[test]
    fn groups_are_checked() {
        let (e, r) = (Table::Events, Table::Rejects);
        let check = |ls: &[ManifestLine]| check_groups(&ls.iter().collect::<Vec<_>>());
        assert_eq!(check(&[]), Ok(Groups::Complete { next_flush: 0 }));
        assert_eq!(
            check(&[line(e, 0, 2), line(r, 0, 2), line(r, 1, 1)]),
            Ok(Groups::Complete { next_flush: 2 })
        );
        assert_eq!(
            check(&[line(e, 0, 1), line(e, 1, 2)]),
            Ok(Groups::IncompleteTail {
                lines: 1,
                next_flush: 1
            })
        );
        assert_eq!(check(&[line(e, 1, 1)]).unwrap_err().0, 0);
        assert_eq!(check(&[line(e, 0, 2), line(e, 0, 2)]).unwrap_err().0, 1);
        assert_eq!(check(&[line(e, 0, 2), line(r, 1, 1)]).unwrap_err().0, 1);
        assert_eq!(check(&[line(e, 0, 1), line(e, 2, 1)]).unwrap_err().0, 1);
        // A flush writes at most 2 segments: events and rejects.
        let q = Table::QueryLog;
        assert_eq!(
            check(&[line(e, 0, 3), line(r, 0, 3), line(q, 0, 3)])
                .unwrap_err()
                .0,
            0
        );
    }

    #[test]
    fn amendments_between_the_lines_of_a_flush_are_found() {
        let (e, r) = (Table::Events, Table::Rejects);
        let lines = [line(e, 0, 2), line(r, 0, 2), line(e, 1, 1), line(e, 2, 2)];
        let refs: Vec<&ManifestLine> = lines.iter().collect();
        let inside: Vec<bool> = (0..=lines.len()).map(|b| inside_group(&refs, b)).collect();
        // Before flush 0, inside it, after it, after flush 1, after the
        // incomplete flush 2.
        assert_eq!(inside, [false, true, false, false, true]);
    }
}
