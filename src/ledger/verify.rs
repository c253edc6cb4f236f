//! `verify`: recomputes every hash of a store and checks every stored fact
//! against it, reporting problems instead of stopping at the first one.
//!
//! Order of the report: chains in order; within a chain, manifest problems
//! and segments in manifest order; within a segment, file-level problems,
//! then rows in order. So the first problem of each chain/table names its
//! first bad record. After a bad row the check continues from the row's
//! stored hash, so one edited row yields one problem, not one per later row.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::path::Path;

use super::ChainId;
use super::error::{IoContext, LedgerError};
use super::fsutil::list_dir;
use super::hash::{ChainState, Hash, parse_hash};
use super::manifest::{self, Groups, ManifestLine, Table};
use super::segment::{parse_segment_file_name, segment_rel_path};
use super::store::{MARKER_FILE, STORE_FORMAT, STORE_VERSION, is_tmp, list_chains};

mod rows;

/// At most this many row problems are listed per segment file.
const MAX_ROW_PROBLEMS_PER_FILE: usize = 100;

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    pub chains: usize,
    pub segments: usize,
    /// Rows read from `events` segments.
    pub events: u64,
    /// Rows read from `rejects` segments.
    pub rejects: u64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One thing that is wrong, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path relative to the store root, `/`-separated.
    pub file: String,
    /// 0-based row within the segment file, when a row is at fault.
    pub row: Option<u64>,
    /// The row's `seq` as stored, when it could be read.
    pub seq: Option<u64>,
    pub what: String,
}

impl Problem {
    pub(crate) fn file(file: impl Into<String>, what: impl Into<String>) -> Self {
        Problem {
            file: file.into(),
            row: None,
            seq: None,
            what: what.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        match (self.row, self.seq) {
            (Some(row), Some(seq)) => write!(f, " row {row} (seq {seq})")?,
            (Some(row), None) => write!(f, " row {row}")?,
            (None, Some(seq)) => write!(f, " (seq {seq})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.what)
    }
}

/// Verifies the store at `root`. `Err` only when the root itself cannot be
/// read; every problem with its content is in the report.
pub fn verify(root: &Path) -> Result<VerifyReport, LedgerError> {
    fs::read_dir(root).at(root)?;
    let mut report = VerifyReport::default();
    check_marker(root, &mut report);

    let chains = match list_chains(root) {
        Ok(chains) => chains,
        Err(e) => {
            report
                .problems
                .push(Problem::file("manifests", format!("cannot list: {e}")));
            Vec::new()
        }
    };
    let mut referenced = HashSet::new();
    for chain in &chains {
        report.chains += 1;
        verify_chain(root, chain, &mut report, &mut referenced);
    }
    for table in Table::ALL {
        find_strays(root, table, &referenced, &mut report);
    }
    Ok(report)
}

fn check_marker(root: &Path, report: &mut VerifyReport) {
    let problem = match fs::read(root.join(MARKER_FILE)) {
        Err(e) => format!("cannot read: {e}"),
        Ok(bytes) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Err(_) => "does not parse".to_owned(),
            Ok(v)
                if v["format"] == STORE_FORMAT
                    && v["version"] == STORE_VERSION
                    && v["hash"] == "blake3" =>
            {
                return;
            }
            Ok(_) => format!(
                "is not {{\"format\":\"{STORE_FORMAT}\",\"version\":{STORE_VERSION},\"hash\":\"blake3\"}}"
            ),
        },
    };
    report.problems.push(Problem::file(MARKER_FILE, problem));
}

/// Per-table running state while walking a chain's manifest.
#[derive(Default, Clone, Copy)]
pub(crate) struct TableWalk {
    pub chain: ChainState,
    /// Highest offset seen in this table so far.
    pub last_offset: Option<i64>,
}

fn verify_chain(
    root: &Path,
    chain: &ChainId,
    report: &mut VerifyReport,
    referenced: &mut HashSet<String>,
) {
    let rel = manifest::manifest_rel_path(chain);
    let bytes = match fs::read(root.join(&rel)) {
        Ok(bytes) => bytes,
        Err(e) => {
            report
                .problems
                .push(Problem::file(&rel, format!("cannot read: {e}")));
            return;
        }
    };
    let parsed = manifest::parse(&bytes);
    let mut lines: Vec<(usize, ManifestLine)> = Vec::new();
    for (no, _, line) in parsed.lines {
        match line {
            Ok(line) => lines.push((no, line)),
            Err(what) => report.problems.push(Problem::file(&rel, what)),
        }
    }
    if parsed.torn_tail {
        report.problems.push(Problem::file(
            &rel,
            "last line is incomplete (a crash during append; opening the chain for writing repairs it)",
        ));
    }
    let refs: Vec<&ManifestLine> = lines.iter().map(|(_, l)| l).collect();
    match manifest::check_groups(&refs) {
        Ok(Groups::Complete { .. }) => {}
        Ok(Groups::IncompleteTail { .. }) => report.problems.push(Problem::file(
            &rel,
            "last flush is incomplete (a crash during append; opening the chain for writing repairs it)",
        )),
        Err((i, what)) => report
            .problems
            .push(Problem::file(&rel, format!("manifest line {}: {what}", lines[i].0))),
    }

    let mut walks = [TableWalk::default(); 2];
    // Offsets of the current flush group, and the highest offset of all
    // earlier groups: a message is stored once, in one table.
    let mut group: Option<u64> = None;
    let mut group_offsets: Vec<(Table, Vec<i64>)> = Vec::new();
    let mut before_group: Option<i64> = None;
    for (no, line) in &lines {
        if group != Some(line.flush) {
            close_group(&group_offsets, &rel, &mut before_group, report);
            group_offsets.clear();
            group = Some(line.flush);
        }
        let walk = &mut walks[line.table as usize];
        check_line(&rel, *no, chain, line, walk, report);
        referenced.insert(line.file.clone());
        report.segments += 1;
        let offsets = rows::verify_segment(root, chain, line, walk, report);
        match line.table {
            Table::Events => report.events += offsets.len() as u64,
            Table::Rejects => report.rejects += offsets.len() as u64,
        }
        group_offsets.push((line.table, offsets));
        // Continue from what the manifest claims, so one bad segment does
        // not make every later one look bad too.
        if let Some(head) = parse_hash(&line.head) {
            walk.chain.head = head;
        }
        walk.chain.next_seq = line.end_seq();
    }
    close_group(&group_offsets, &rel, &mut before_group, report);
}

/// Manifest-level checks of one line against the walk so far.
fn check_line(
    rel: &str,
    no: usize,
    chain: &ChainId,
    line: &ManifestLine,
    walk: &TableWalk,
    report: &mut VerifyReport,
) {
    let mut bad = |what: String| {
        report
            .problems
            .push(Problem::file(rel, format!("manifest line {no}: {what}")));
    };
    let expected = segment_rel_path(line.table, chain, line.first_seq);
    if line.file != expected {
        bad(format!(
            "names file {:?}; a segment of this chain at this seq is {expected:?}",
            line.file
        ));
    }
    if line.first_seq != walk.chain.next_seq {
        bad(format!(
            "{} segment starts at seq {}, expected seq {}",
            line.table.as_str(),
            line.first_seq,
            walk.chain.next_seq
        ));
    }
    match parse_hash(&line.prev_head) {
        Some(prev) if prev == walk.chain.head => {}
        Some(_) => bad("prev_head is not the head of the previous segment".into()),
        None => bad("prev_head is not a 64-digit hex hash".into()),
    }
    if parse_hash(&line.head).is_none() {
        bad("head is not a 64-digit hex hash".into());
    }
    if line.rows == 0 {
        bad("segment has 0 rows".into());
    }
    if line.first_offset > line.last_offset {
        bad("first_offset is above last_offset".into());
    }
    if walk
        .last_offset
        .is_some_and(|last| line.first_offset <= last)
    {
        bad("first_offset is not above the previous segment's offsets".into());
    }
    if line.table == Table::Rejects && (line.min_time_us.is_some() || line.max_time_us.is_some()) {
        bad("a rejects segment has time fields".into());
    }
}

fn close_group(
    group: &[(Table, Vec<i64>)],
    rel: &str,
    before: &mut Option<i64>,
    report: &mut VerifyReport,
) {
    let mut all: Vec<i64> = group.iter().flat_map(|(_, o)| o.iter().copied()).collect();
    all.sort_unstable();
    if let (Some(first), Some(prev)) = (all.first(), *before)
        && *first <= prev
    {
        report.problems.push(Problem::file(
            rel,
            format!("a flush stores offset {first}, not above the earlier flushes' {prev}"),
        ));
    }
    if let Some(dup) = all.windows(2).find(|w| w[0] == w[1]) {
        report.problems.push(Problem::file(
            rel,
            format!("offset {} is stored twice in one flush", dup[0]),
        ));
    }
    *before = (*before).max(all.last().copied());
}

/// Files under `<table>/` that no manifest line names.
fn find_strays(root: &Path, table: Table, referenced: &HashSet<String>, report: &mut VerifyReport) {
    let top = root.join(table.as_str());
    let walk = |rel: String, report: &mut VerifyReport| -> Result<Vec<String>, ()> {
        let dir = root.join(&rel);
        if !dir.is_dir() {
            report
                .problems
                .push(Problem::file(&rel, "unexpected file in a segment folder"));
            return Err(());
        }
        list_dir(&dir).map_err(|e| {
            report
                .problems
                .push(Problem::file(&rel, format!("cannot list: {e}")));
        })
    };
    if !top.is_dir() {
        return;
    }
    let Ok(streams) = walk(table.as_str().to_owned(), report) else {
        return;
    };
    for stream in streams {
        let stream_rel = format!("{}/{stream}", table.as_str());
        let Ok(partitions) = walk(stream_rel.clone(), report) else {
            continue;
        };
        for partition in partitions {
            let dir_rel = format!("{stream_rel}/{partition}");
            let Ok(files) = walk(dir_rel.clone(), report) else {
                continue;
            };
            for name in files {
                let rel = format!("{dir_rel}/{name}");
                if referenced.contains(&rel) || is_tmp(&name) {
                    continue;
                }
                let what = if parse_segment_file_name(&name).is_some() {
                    "file not in manifest"
                } else {
                    "unexpected file in a segment folder"
                };
                report.problems.push(Problem::file(rel, what));
            }
        }
    }
}

/// BLAKE3 and length of a file.
pub(crate) fn file_digest(path: &Path) -> std::io::Result<(Hash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let mut file = fs::File::open(path)?;
    let n = std::io::copy(&mut file, &mut hasher)?;
    Ok((*hasher.finalize().as_bytes(), n))
}
