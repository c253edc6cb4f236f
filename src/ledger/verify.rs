//! `verify`: recomputes every hash of a store and checks every stored fact
//! against it, reporting problems instead of stopping at the first one.
//!
//! Order of the report: the marker; every chain's manifest-level problems
//! (lines that do not parse, amendment lines inside a flush or that do not
//! apply, torn or incomplete tails); external
//! checkpoints that do not parse; then chain by chain: its stored
//! checkpoint lines that do not parse, then its segments in manifest order
//! (the line's own facts, the file, its rows in order, then what its rows
//! mean for the tree), the strata's tails, and the checkpoints checked
//! against the recomputed trees; last, stray files. So the first row-level
//! problem of a chain names its first bad record.
//!
//! Segments are read and their rows checked in parallel; the trees are then
//! fed in order. Each table keeps two trees: one over the leaves recomputed
//! from the rows (the truth), one over the leaves as stored in the tree
//! strata (what proofs are made from). Where they differ, the manifest's
//! root at the end of the segment tells which side was changed.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use super::ChainId;
use super::checkpoint::{Checkpoint, NoteVerifier, unverified_text};
use super::checkpoints::{self, CheckpointLine};
use super::error::{IoContext, LedgerError};
use super::hash::{Hash, parse_hash};
use super::manifest::{self, Entry, Groups, ManifestLine, Table};
use super::merkle::HashAlg;
use super::segment::{parse_segment_file_name, segment_rel_path};
use super::storage::Storage;
use super::store::{
    MARKER_FILE, checkpoint_rel_path, is_tmp, list_chains, parse_marker, tree_rel_dir,
};
use super::tree::{Frontier, STRIDE};

mod scan;
mod strata;
mod view;

use scan::{Disagreement, EventIds, SegmentScan, scan_segment};
use strata::Strata;

/// At most this many row problems are listed per segment file.
const MAX_ROW_PROBLEMS_PER_FILE: usize = 100;

/// What to verify beyond the store's own content.
#[derive(Default)]
pub struct VerifyOptions<'a> {
    /// The key checkpoints must be signed with. Without it, checkpoint
    /// signatures are not checked (and the report says so).
    pub verifier: Option<NoteVerifier>,
    /// Signed checkpoints kept outside the store (an auditor's copies): the
    /// store must contain the trees they commit to. A store rolled back or
    /// rewritten behind them fails.
    pub external: Vec<String>,
    /// Called now and then with (rows checked, rows in the store).
    pub progress: Option<&'a (dyn Fn(u64, u64) + Sync)>,
    /// Segments read at once; 0 = one per core.
    pub threads: usize,
    /// The key encrypted segments are decrypted with. Without it their
    /// rows cannot be checked (a problem names each such segment).
    pub key: Option<super::SegmentKey>,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    pub chains: usize,
    pub segments: usize,
    /// Rows read from `events` segments.
    pub events: u64,
    /// Rows read from `rejects` segments.
    pub rejects: u64,
    /// Rows read from `incidents` segments.
    pub incidents: u64,
    /// Rows read from `query_log` segments.
    pub queries: u64,
    /// Rows read that are tombstones of erased rows (both tables).
    pub erased: u64,
    /// Rows of pruned segments, checked through their leaf hashes only.
    pub pruned: u64,
    /// Checkpoints checked (stored and external).
    pub checkpoints: usize,
    /// Whether checkpoint signatures were checked (a verifier key was given).
    pub signatures_checked: bool,
    /// The tree head of every log, as recomputed from its rows.
    pub heads: Vec<LogHead>,
    pub problems: Vec<Problem>,
}

/// The recomputed tree of one log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHead {
    pub chain: ChainId,
    pub table: Table,
    pub size: u64,
    pub root: Hash,
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
    /// The event's id as stored, for a row of an `events` segment.
    pub event_id: Option<String>,
    pub what: String,
}

impl Problem {
    pub(crate) fn file(file: impl Into<String>, what: impl Into<String>) -> Self {
        Problem {
            file: file.into(),
            row: None,
            seq: None,
            event_id: None,
            what: what.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(row) = self.row {
            write!(f, " row {row}")?;
        }
        let mut notes = Vec::new();
        if let Some(seq) = self.seq {
            notes.push(format!("seq {seq}"));
        }
        if let Some(id) = &self.event_id {
            notes.push(format!("event {id}"));
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join(", "))?;
        }
        write!(f, ": {}", self.what)
    }
}

/// Verifies the store at `root` with default options: no verifier key, no
/// external checkpoints.
pub fn verify(root: &Path) -> Result<VerifyReport, LedgerError> {
    verify_with(root, &VerifyOptions::default())
}

/// Verifies the store at `root`. `Err` only when the root itself cannot be
/// read; every problem with its content is in the report.
pub fn verify_with(root: &Path, opts: &VerifyOptions<'_>) -> Result<VerifyReport, LedgerError> {
    let storage = super::store::storage_at(root, super::StoreOptions::default().lease)?;
    if storage.as_bucket().is_none() {
        std::fs::read_dir(root).at(root)?;
    }
    let shared = storage.clone();
    let storage = storage.as_ref();
    let mut report = VerifyReport {
        signatures_checked: opts.verifier.is_some(),
        ..VerifyReport::default()
    };
    let (alg, origin) = check_marker(storage, &mut report);

    let chains = match list_chains(storage) {
        Ok(chains) => chains,
        Err(e) => {
            report
                .problems
                .push(Problem::file("manifests", format!("cannot list: {e}")));
            Vec::new()
        }
    };
    let manifests: Vec<(ChainId, Option<Manifest>)> = chains
        .into_iter()
        .map(|chain| {
            let manifest = read_manifest(storage, &chain, &mut report);
            (chain, manifest)
        })
        .collect();
    let external = parse_external(&opts.external, opts.verifier.as_ref(), &mut report);
    let mut progress = Progress {
        done: 0,
        total: manifests
            .iter()
            .flat_map(|(_, m)| m.iter().flat_map(|m| &m.lines))
            .map(|(_, l)| l.rows)
            .sum(),
        report: opts.progress,
    };
    let threads = match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let ctx = ChainCtx {
        storage: shared,
        alg,
        origin: origin.as_deref(),
        verifier: opts.verifier.as_ref(),
        threads,
        key: opts.key.as_ref(),
    };
    let mut referenced = HashSet::new();
    let mut matched_external = HashSet::new();
    for (chain, manifest) in &manifests {
        report.chains += 1;
        let Some(manifest) = manifest else { continue };
        verify_chain(
            &ctx,
            chain,
            manifest,
            &external,
            &mut matched_external,
            &mut report,
            &mut referenced,
            &mut progress,
        );
    }
    for (i, cp) in external.iter().enumerate() {
        if !matched_external.contains(&i) {
            report.problems.push(Problem::file(
                "checkpoints",
                format!(
                    "external checkpoint {} is for log {:?}, which this store does not hold",
                    i + 1,
                    cp.origin
                ),
            ));
        }
    }
    for table in Table::ALL {
        find_strays(storage, table, &referenced, &mut report);
    }
    Ok(report)
}

struct Progress<'a> {
    done: u64,
    total: u64,
    report: Option<&'a (dyn Fn(u64, u64) + Sync)>,
}

impl Progress<'_> {
    fn add(&mut self, rows: u64) {
        self.done += rows;
        if let Some(report) = self.report {
            report(self.done, self.total);
        }
    }
}

/// Checks the marker; returns the store's hash function (BLAKE3 if the
/// marker is unreadable, so the rest can still be checked) and origin.
fn check_marker(storage: &dyn Storage, report: &mut VerifyReport) -> (HashAlg, Option<String>) {
    let path = storage.describe(MARKER_FILE);
    let problem = match storage.read(MARKER_FILE) {
        Err(e) => format!("cannot read: {e}"),
        Ok(None) => "cannot read: it is missing".to_owned(),
        Ok(Some(bytes)) => match parse_marker(&path, &bytes) {
            Ok((marker, alg)) => return (alg, Some(marker.origin)),
            Err(LedgerError::NotAStore { what, .. }) => what,
            Err(e) => e.to_string(),
        },
    };
    report.problems.push(Problem::file(MARKER_FILE, problem));
    (HashAlg::Blake3, None)
}

/// A chain's manifest lines that parsed, with their line numbers.
struct Manifest {
    rel: String,
    lines: Vec<(usize, ManifestLine)>,
    /// Whether some line did not parse (then lines may be missing).
    unparsed: bool,
}

fn read_manifest(
    storage: &dyn Storage,
    chain: &ChainId,
    report: &mut VerifyReport,
) -> Option<Manifest> {
    let rel = manifest::manifest_rel_path(chain);
    let bytes = match storage.read(&rel) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            report
                .problems
                .push(Problem::file(&rel, "cannot read: it is missing"));
            return None;
        }
        Err(e) => {
            report
                .problems
                .push(Problem::file(&rel, format!("cannot read: {e}")));
            return None;
        }
    };
    let parsed = manifest::parse(&bytes);
    let mut lines: Vec<(usize, ManifestLine)> = Vec::new();
    // (line number, amendment, segment lines before it)
    let mut amendments = Vec::new();
    let mut unparsed = false;
    for (no, _, entry) in parsed.lines {
        match entry {
            Ok(Entry::Segment(line)) => lines.push((no, line)),
            Ok(Entry::Amend(amendment)) => amendments.push((no, amendment, lines.len())),
            Err(what) => {
                unparsed = true;
                report.problems.push(Problem::file(&rel, what));
            }
        }
    }
    // Where the amendments sit among the flush groups (before applying
    // them, which changes the lines).
    let inside: Vec<Option<u64>> = {
        let refs: Vec<&ManifestLine> = lines.iter().map(|(_, l)| l).collect();
        amendments
            .iter()
            .map(|(_, _, before)| {
                manifest::inside_group(&refs, *before).then(|| refs[*before - 1].flush)
            })
            .collect()
    };
    for ((no, amendment, before), inside) in amendments.iter().zip(&inside) {
        if let Some(flush) = inside {
            report.problems.push(Problem::file(
                &rel,
                format!(
                    "manifest line {no}: an amendment line inside flush {flush} (the lines of one flush are consecutive)"
                ),
            ));
        }
        let earlier = lines[..*before].iter_mut().map(|(_, l)| l);
        if let Err(what) = manifest::apply_amendment(earlier, amendment, chain) {
            report
                .problems
                .push(Problem::file(&rel, format!("manifest line {no}: {what}")));
        }
    }

    if parsed.torn_tail {
        report
            .problems
            .push(Problem::file(&rel, manifest::TORN_TAIL));
    }
    // The writer repairs a crashed last flush only in a manifest whose
    // every line parses and whose amendments sit between flushes; it
    // refuses any other.
    let repairable = !unparsed && inside.iter().all(Option::is_none);
    let refs: Vec<&ManifestLine> = lines.iter().map(|(_, l)| l).collect();
    match manifest::check_groups(&refs) {
        Ok(Groups::Complete { .. }) => {}
        Ok(Groups::IncompleteTail { .. }) if repairable => report.problems.push(Problem::file(
            &rel,
            "last flush is incomplete (a crash during append; opening the chain for writing repairs it)",
        )),
        Ok(Groups::IncompleteTail { lines: n, .. }) => {
            let head = refs[refs.len() - n];
            report.problems.push(Problem::file(
                &rel,
                format!(
                    "last flush {} has {n} of {} lines",
                    head.flush, head.flush_segments
                ),
            ));
        }
        Err((i, what)) => report
            .problems
            .push(Problem::file(&rel, format!("manifest line {}: {what}", lines[i].0))),
    }
    Some(Manifest {
        rel,
        lines,
        unparsed,
    })
}

/// An external checkpoint, parsed (and opened, if a key was given).
struct External {
    origin: String,
    checkpoint: Checkpoint,
}

fn parse_external(
    notes: &[String],
    verifier: Option<&NoteVerifier>,
    report: &mut VerifyReport,
) -> Vec<External> {
    let mut out = Vec::new();
    for (i, note) in notes.iter().enumerate() {
        let opened = match verifier {
            Some(v) => v.open(note),
            None => unverified_text(note),
        };
        match opened.and_then(Checkpoint::parse) {
            Ok(checkpoint) => out.push(External {
                origin: checkpoint.origin.clone(),
                checkpoint,
            }),
            Err(e) => report.problems.push(Problem::file(
                "checkpoints",
                format!("external checkpoint {}: {e}", i + 1),
            )),
        }
    }
    out
}

/// What every chain's check needs.
struct ChainCtx<'a> {
    storage: Arc<dyn Storage>,
    alg: HashAlg,
    origin: Option<&'a str>,
    verifier: Option<&'a NoteVerifier>,
    threads: usize,
    key: Option<&'a super::SegmentKey>,
}

/// Per-table state while walking a chain's manifest.
struct TableWalk {
    next_seq: u64,
    /// Highest offset seen in this table so far.
    last_offset: Option<i64>,
    /// The tree of the leaves recomputed from the rows.
    rows: Frontier,
    /// The tree of the leaves as the strata hold them, once it differs
    /// from `rows` (`None` while they agree: one tree is fed, not two).
    stored: Option<Frontier>,
    strata: Strata,
    /// Whether the previous segment's manifest root was already wrong (so
    /// later ones, which cover it, are not reported again).
    root_diverged: bool,
    /// Rows that differ from the stored tree but were not listed.
    unlisted: u64,
    /// Sizes at which checkpoints need the rows' root, and those roots.
    wanted: BTreeSet<u64>,
    roots: HashMap<u64, Hash>,
}

impl TableWalk {
    fn new(storage: &Arc<dyn Storage>, alg: HashAlg, chain: &ChainId, table: Table) -> Self {
        TableWalk {
            next_seq: 0,
            last_offset: None,
            rows: Frontier::new(alg),
            stored: None,
            strata: Strata::new(storage.clone(), tree_rel_dir(table, chain)),
            root_diverged: false,
            unlisted: 0,
            wanted: BTreeSet::new(),
            roots: HashMap::new(),
        }
    }
}

/// A checkpoint to check against a log, and where it came from.
struct Claim {
    table: Table,
    checkpoint: Checkpoint,
    /// `file` and what to call it in problems.
    file: String,
    label: String,
}

#[allow(clippy::too_many_arguments)]
fn verify_chain(
    ctx: &ChainCtx<'_>,
    chain: &ChainId,
    manifest: &Manifest,
    external: &[External],
    matched_external: &mut HashSet<usize>,
    report: &mut VerifyReport,
    referenced: &mut HashSet<String>,
    progress: &mut Progress<'_>,
) {
    let rel = manifest.rel.as_str();
    let mut walks = Table::ALL.map(|t| TableWalk::new(&ctx.storage, ctx.alg, chain, t));

    let mut claims = read_checkpoints(ctx, chain, report);
    if let Some(origin) = ctx.origin {
        for table in Table::ALL {
            let log = super::log_origin(origin, chain, table);
            for (i, ext) in external.iter().enumerate() {
                if ext.origin == log {
                    matched_external.insert(i);
                    claims.push(Claim {
                        table,
                        checkpoint: ext.checkpoint.clone(),
                        file: "checkpoints".into(),
                        label: format!("external checkpoint {}", i + 1),
                    });
                }
            }
        }
    }
    for claim in &claims {
        walks[claim.table as usize]
            .wanted
            .insert(claim.checkpoint.size);
    }

    // Offsets of the current flush group, and the highest offset of all
    // earlier groups: a message is stored once, in one table.
    let mut group: Option<u64> = None;
    let mut group_offsets: Vec<(Table, Vec<i64>)> = Vec::new();
    let mut before_group: Option<i64> = None;
    scan_in_order(ctx, chain, &manifest.lines, |i, scan| {
        let (no, line) = &manifest.lines[i];
        if group != Some(line.flush) {
            close_group(&group_offsets, rel, &mut before_group, report);
            group_offsets.clear();
            group = Some(line.flush);
        }
        let walk = &mut walks[line.table as usize];
        check_line(rel, *no, chain, line, walk, report);
        // After a seq break (reported), the line is still walked at its own
        // seq, so one line left out does not shift every later row off its
        // stored leaf: seqs that no line lists are taken from the strata,
        // and a line whose seqs the trees already hold is not fed to them.
        let placed = line.first_seq >= walk.next_seq;
        if line.is_pruned() {
            // (A pruned file still present is reported by its scan.)
            report.pruned += line.rows;
        }
        referenced.insert(line.file.clone());
        report.segments += 1;
        report.erased += scan.erased;
        let read = scan.leaves.len() as u64;
        match line.table {
            Table::Events => report.events += read,
            Table::Rejects => report.rejects += read,
            Table::Incidents => report.incidents += read,
            Table::QueryLog => report.queries += read,
        }
        progress.add(line.rows);
        let SegmentScan {
            leaves,
            offsets,
            problems,
            disagreements,
            ids,
            ..
        } = scan;
        report.problems.extend(problems);
        let (rows_ok, tree_only) = if placed {
            fill_gap(walk, line.first_seq, report);
            feed_tree(rel, *no, line, &leaves, &ids, walk, report)
        } else {
            (false, 0)
        };
        // A line whose rows hash to its root while neither its file nor
        // the tree holds some of them counts rows that never were.
        let line_changed = rows_ok && tree_only == 0;
        blame_disagreements(
            rel,
            *no,
            line,
            &disagreements,
            rows_ok,
            line_changed,
            report,
        );
        group_offsets.push((line.table, offsets));
        if placed {
            walk.next_seq = line.end_seq();
        }
        walk.last_offset = walk.last_offset.max(Some(line.last_offset));
    });
    close_group(&group_offsets, rel, &mut before_group, report);

    for (table, walk) in Table::ALL.into_iter().zip(&mut walks) {
        let covered = claims
            .iter()
            .filter(|c| c.table == table)
            .map(|c| c.checkpoint.size)
            .max()
            .unwrap_or(0);
        let size = walk.rows.size();
        if covered > size {
            report.problems.push(Problem::file(
                rel,
                format!(
                    "the {} log ends at {size} rows but a checkpoint covers {covered}: manifest lines or rows were removed (or the store was rolled back)",
                    table.as_str()
                ),
            ));
        }
        if walk.unlisted > 0 {
            report.problems.push(Problem::file(
                rel,
                format!(
                    "{} more {} rows differ from the stored tree after the problems above (not listed)",
                    walk.unlisted,
                    table.as_str()
                ),
            ));
        }
        // Extra hashes are a crash's leftovers only where nothing else
        // explains them.
        let why = if covered > size {
            "a checkpoint covers more, so the manifest lost lines"
        } else if manifest.unparsed {
            "a manifest line that does not parse may list them"
        } else {
            "a crash before the manifest append; opening the chain for writing repairs it"
        };
        walk.strata.finish(size, why, report);
        report.heads.push(LogHead {
            chain: chain.clone(),
            table,
            size: walk.rows.size(),
            root: walk.rows.root(),
        });
    }
    for claim in claims {
        report.checkpoints += 1;
        check_claim(&claim, &walks[claim.table as usize], report);
    }
}

/// Scans segments on `ctx.threads` threads, a few ahead of the caller,
/// and hands each scan to `consume` on the calling thread, in order, so the
/// trees are fed while later segments are read.
fn scan_in_order(
    ctx: &ChainCtx<'_>,
    chain: &ChainId,
    lines: &[(usize, ManifestLine)],
    mut consume: impl FnMut(usize, SegmentScan),
) {
    use std::sync::{Condvar, Mutex, mpsc};
    if ctx.threads <= 1 || lines.len() <= 1 {
        for (i, (_, line)) in lines.iter().enumerate() {
            consume(
                i,
                scan_segment(ctx.storage.as_ref(), chain, line, ctx.alg, ctx.key),
            );
        }
        return;
    }
    let lookahead = ctx.threads * 2;
    // (next index to hand out, scans consumed so far)
    let state = Mutex::new((0usize, 0usize));
    let room = Condvar::new();
    let (tx, rx) = mpsc::channel::<(usize, SegmentScan)>();
    std::thread::scope(|s| {
        for _ in 0..ctx.threads {
            let tx = tx.clone();
            let (state, room) = (&state, &room);
            s.spawn(move || {
                loop {
                    let i = {
                        let Ok(mut st) = state.lock() else { return };
                        while st.0 < lines.len() && st.0 >= st.1 + lookahead {
                            st = match room.wait(st) {
                                Ok(st) => st,
                                Err(_) => return,
                            };
                        }
                        if st.0 >= lines.len() {
                            return;
                        }
                        st.0 += 1;
                        st.0 - 1
                    };
                    // scan_segment catches the readers' panics.
                    let scan =
                        scan_segment(ctx.storage.as_ref(), chain, &lines[i].1, ctx.alg, ctx.key);
                    if tx.send((i, scan)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = std::collections::BTreeMap::new();
        let mut next = 0;
        for (i, scan) in rx.iter() {
            pending.insert(i, scan);
            while let Some(scan) = pending.remove(&next) {
                consume(next, scan);
                next += 1;
                if let Ok(mut st) = state.lock() {
                    st.1 = next;
                }
                room.notify_all();
            }
        }
        // A worker that died (a bug) leaves segments unscanned: say so.
        for (i, (_, line)) in lines.iter().enumerate().skip(next) {
            let mut scan = SegmentScan::default();
            scan.problems.push(Problem::file(
                &line.file,
                "the segment check failed internally",
            ));
            consume(i, scan);
        }
    });
}

/// Pushes a row's leaf on the rows tree and the stored leaf on the strata
/// tree (one tree while they agree), checking the strata's hashes above
/// and keeping the rows tree's root at the sizes claims need.
fn push_leaf(walk: &mut TableWalk, leaf: Hash, stored: Hash, report: &mut VerifyReport) {
    let strata = &mut walk.strata;
    let mut check = |height: u32, index: u64, hash: &Hash| {
        if height >= STRIDE {
            strata.check(height, index, hash, report);
        }
    };
    match &mut walk.stored {
        None => walk.rows.push(leaf, &mut check),
        Some(tree) => {
            walk.rows.push(leaf, |_, _, _| {});
            tree.push(stored, &mut check);
        }
    }
    if !walk.wanted.is_empty() && walk.wanted.contains(&walk.rows.size()) {
        walk.roots.insert(walk.rows.size(), walk.rows.root());
    }
}

/// Feeds both trees of a log the stored leaves of the seqs below `to` that
/// no manifest line lists (a line left out: the seq break was reported),
/// so the next line's rows meet the leaves of their own seqs, as for a
/// pruned segment. Stops where the strata end (reported there).
fn fill_gap(walk: &mut TableWalk, to: u64, report: &mut VerifyReport) {
    while walk.rows.size() < to {
        let Some(leaf) = walk.strata.leaf(walk.rows.size(), report) else {
            return;
        };
        push_leaf(walk, leaf, leaf, report);
    }
}

/// Feeds a segment's leaves to both trees of its table and checks the
/// manifest's root at the segment's end; true when the rows hash to it,
/// with the number of rows the file lacks that the tree supplied.
fn feed_tree(
    rel: &str,
    no: usize,
    line: &ManifestLine,
    leaves: &[Hash],
    ids: &EventIds,
    walk: &mut TableWalk,
    report: &mut VerifyReport,
) -> (bool, u64) {
    // Rows that differ from the stored leaf: (row in file, leaf index).
    let mut differing: Vec<(u64, u64)> = Vec::new();
    // Rows the file lacks that the tree holds.
    let mut tree_only = 0u64;
    for row in 0..line.rows {
        let index = walk.rows.size();
        let stored = walk.strata.leaf(index, report);
        // A row the file could not give (reported already) counts as the
        // stored leaf, so one unreadable file does not spoil the rest.
        let leaf = match leaves.get(row as usize).copied() {
            Some(leaf) => leaf,
            None => match stored {
                Some(leaf) => {
                    tree_only += 1;
                    leaf
                }
                None => continue,
            },
        };
        if stored.is_some_and(|s| s != leaf) {
            differing.push((row, index));
            if walk.stored.is_none() {
                walk.stored = Some(walk.rows.clone());
            }
        }
        push_leaf(walk, leaf, stored.unwrap_or(leaf), report);
    }

    let claimed = parse_hash(&line.root);
    let rows_root = walk.rows.root();
    if claimed == Some(rows_root) {
        // The rows are what the manifest says: differing leaves are damage
        // to the tree file.
        for &(_, index) in differing.iter().take(MAX_ROW_PROBLEMS_PER_FILE) {
            report.problems.push(Problem::file(
                walk.strata.file(0),
                format!(
                    "leaf {index} is not the hash of the stored row (the tree file was changed)"
                ),
            ));
        }
        walk.root_diverged = false;
        return (true, tree_only);
    }
    let stored_root = walk.stored.as_ref().map_or(rows_root, Frontier::root);
    let stored_ok = claimed == Some(stored_root);
    if walk.root_diverged {
        // Everything after a break differs; the break was reported.
        walk.unlisted += differing.len() as u64;
    } else {
        for &(row, index) in differing.iter().take(MAX_ROW_PROBLEMS_PER_FILE) {
            report.problems.push(Problem {
                file: line.file.clone(),
                row: Some(row),
                seq: None,
                event_id: ids.id(row),
                what: format!(
                    "the record does not hash to leaf {index} of the log (the row was changed, added, removed or moved)"
                ),
            });
        }
        walk.unlisted += differing.len().saturating_sub(MAX_ROW_PROBLEMS_PER_FILE) as u64;
    }
    if stored_ok {
        // The tree and the manifest agree: carry on from them, so later
        // segments are judged on their own.
        if let Some(tree) = walk.stored.take() {
            walk.rows = tree;
        }
        walk.root_diverged = false;
        return (false, tree_only);
    }
    if !walk.root_diverged {
        report.problems.push(Problem::file(
            rel,
            format!(
                "manifest line {no}: root is not the Merkle root of the {} rows up to {} (rows, tree and manifest disagree)",
                line.table.as_str(),
                line.file
            ),
        ));
    }
    walk.root_diverged = true;
    (false, tree_only)
}
/// Reports where a segment and its manifest line disagree on offsets, times,
/// length or digest. Rows that hash to the manifest's root are authentic,
/// so then a differing offset or time span is the line's fault; a differing
/// digest or length may be either side's.
fn blame_disagreements(
    rel: &str,
    no: usize,
    line: &ManifestLine,
    disagreements: &[Disagreement],
    rows_ok: bool,
    line_changed: bool,
    report: &mut VerifyReport,
) {
    for d in disagreements {
        match (d, rows_ok) {
            (Disagreement::Span, true) => report.problems.push(Problem::file(
                rel,
                format!(
                    "manifest line {no}: first/last offset or min/max time is not what the rows of {} hold (the line was changed)",
                    line.file
                ),
            )),
            (Disagreement::Span, false) => report.problems.push(Problem::file(
                &line.file,
                "first/last row offsets or min/max time do not match the manifest",
            )),
            (Disagreement::Short { read }, _) if line_changed => report.problems.push(Problem::file(
                rel,
                format!(
                    "manifest line {no}: rows is {} but {} holds {read} rows, which hash to the line's root, and the tree holds no more (the line was changed)",
                    line.rows, line.file
                ),
            )),
            (Disagreement::Short { read }, _) => report.problems.push(Problem {
                // Name the first missing row: where the file ends early.
                file: line.file.clone(),
                row: Some(*read),
                seq: Some(line.first_seq + read),
                event_id: None,
                what: format!(
                    "row is missing: the file has {read} rows, the manifest says {}",
                    line.rows
                ),
            }),
            (Disagreement::Digest, _) => report.problems.push(Problem::file(
                rel,
                format!(
                    "manifest line {no}: file_blake3/bytes do not match {} (the line or the file was changed)",
                    line.file
                ),
            )),
        }
    }
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
    if !line.table.held_by(&chain.stream) {
        bad(format!(
            "a chain of stream {:?} holds no {} segments",
            chain.stream,
            line.table.as_str()
        ));
    }
    let expected = segment_rel_path(line.table, chain, line.first_seq, line.generation());
    if line.file != expected {
        bad(format!(
            "names file {:?}; a segment of this chain at this seq is {expected:?}",
            line.file
        ));
    }
    if line.first_seq != walk.next_seq {
        bad(format!(
            "{} segment starts at seq {}, expected seq {}",
            line.table.as_str(),
            line.first_seq,
            walk.next_seq
        ));
    }
    if parse_hash(&line.root).is_none() {
        bad("root is not a 64-digit hex hash".into());
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
    match (
        line.table,
        line.min_time_us.is_some(),
        line.max_time_us.is_some(),
    ) {
        (Table::Events, true, true) => {}
        (Table::Events, _, _) => bad("an events segment lacks min_time_us or max_time_us".into()),
        (_, false, false) => {}
        (table, _, _) => bad(format!("a {} segment has time fields", table.as_str())),
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

/// The checkpoints stored for a chain, parsed (and opened with the
/// verifier key if there is one); problems for lines that do not parse.
fn read_checkpoints(ctx: &ChainCtx<'_>, chain: &ChainId, report: &mut VerifyReport) -> Vec<Claim> {
    let rel = checkpoint_rel_path(chain);
    let bytes = match ctx.storage.read(&rel) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Vec::new(),
        Err(e) => {
            report
                .problems
                .push(Problem::file(&rel, format!("cannot read: {e}")));
            return Vec::new();
        }
    };
    let parsed = checkpoints::parse(&bytes);
    if parsed.torn_tail {
        report
            .problems
            .push(Problem::file(&rel, manifest::TORN_TAIL));
    }
    let mut claims = Vec::new();
    let mut last_size: HashMap<Table, u64> = HashMap::new();
    for (no, _, line) in parsed.lines {
        let label = format!("checkpoint line {no}");
        let mut bad = |what: String| {
            report
                .problems
                .push(Problem::file(&rel, format!("{label}: {what}")));
        };
        let line: CheckpointLine = match line {
            Ok(line) => line,
            Err(what) => {
                report.problems.push(Problem::file(&rel, what));
                continue;
            }
        };
        let opened = match ctx.verifier {
            Some(v) => v.open(&line.note),
            None => unverified_text(&line.note),
        };
        let checkpoint = match opened.and_then(Checkpoint::parse) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                bad(format!("{e} (a forged or damaged checkpoint)"));
                continue;
            }
        };
        if let Some(origin) = ctx.origin {
            let log = super::log_origin(origin, chain, line.table);
            if checkpoint.origin != log {
                bad(format!("is for log {:?}, not {log:?}", checkpoint.origin));
                continue;
            }
        }
        let last = last_size.entry(line.table).or_default();
        if checkpoint.size < *last {
            bad(format!(
                "size {} is below the earlier checkpoint's {} (the log was rolled back)",
                checkpoint.size, *last
            ));
        }
        *last = (*last).max(checkpoint.size);
        claims.push(Claim {
            table: line.table,
            checkpoint,
            file: rel.clone(),
            label,
        });
    }
    claims
}

/// Checks one checkpoint against the recomputed tree of its log.
fn check_claim(claim: &Claim, walk: &TableWalk, report: &mut VerifyReport) {
    let cp = &claim.checkpoint;
    let mut bad = |what: String| {
        report.problems.push(Problem::file(
            &claim.file,
            format!("{}: {what}", claim.label),
        ));
    };
    let size = walk.rows.size();
    if cp.size > size {
        bad(format!(
            "covers {} {} rows but the log holds {size} (rows were removed: the log was truncated or rolled back)",
            cp.size,
            claim.table.as_str()
        ));
        return;
    }
    let root = if cp.size == 0 {
        Some(walk.rows.alg().empty_root())
    } else {
        walk.roots.get(&cp.size).copied()
    };
    if root != Some(cp.root) {
        bad(format!(
            "its root for size {} is not the root of the stored rows (history before it was changed, or the checkpoint is forged)",
            cp.size
        ));
    }
}

/// Files under `<table>/` that no manifest line names.
fn find_strays(
    storage: &dyn Storage,
    table: Table,
    referenced: &HashSet<String>,
    report: &mut VerifyReport,
) {
    let walk = |rel: String, report: &mut VerifyReport| -> Result<Vec<String>, ()> {
        if let Ok(Some(_)) = storage.len(&rel) {
            report
                .problems
                .push(Problem::file(&rel, "unexpected file in a segment folder"));
            return Err(());
        }
        storage.list(&rel).map_err(|e| {
            report
                .problems
                .push(Problem::file(&rel, format!("cannot list: {e}")));
        })
    };
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
