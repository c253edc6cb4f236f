//! The ledger's commands: `verify`, `prove`, `consistency`, `verify-proof`
//! and `keygen --checkpoint`. Wiring only; the formats and checks live in
//! `custos::ledger`.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use custos::ledger::checkpoint::{self, Checkpoint, NoteSigner, NoteVerifier};
use custos::ledger::proof::{self, MAX_DOCUMENT_BYTES};
use custos::ledger::{ChainId, Store, Table, VerifyOptions, VerifyReport, verify_with};

/// The environment variable that may hold the verifier key text.
pub const VERIFIER_KEY_ENV: &str = "CUSTOS_VERIFIER_KEY";

/// Makes a new checkpoint signer; the secret goes to `out` (created 0600,
/// never overwritten) or to stdout, the verifier key to whichever stream
/// the secret does not use.
pub fn keygen_checkpoint(name: &str, out: Option<&Path>) -> Result<i32> {
    use rand::{RngCore, SeedableRng};
    let mut seed = [0u8; 32];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut seed);
    let signer = NoteSigner::from_seed(name, seed)
        .with_context(|| format!("cannot use {name:?} as a key name"))?;
    let verifier = signer.verifier().to_text();
    match out {
        Some(path) => {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path).with_context(|| {
                format!("cannot create {} (it is never overwritten)", path.display())
            })?;
            writeln!(file, "{}", signer.to_text())?;
            file.sync_all()?;
            eprintln!(
                "signer key written to {}; verifier key (share it):",
                path.display()
            );
            println!("{verifier}");
        }
        None => {
            println!("{}", signer.to_text());
            eprintln!("verifier key (share it): {verifier}");
        }
    }
    Ok(0)
}

/// Checks a proof document (`-` for stdin): 0 and the summary on stdout if
/// it holds, 1 and the reason on stderr if not. A missing or malformed key
/// is an error (exit 2), not a verdict.
pub fn verify_proof(file: &Path, key: Option<&Path>) -> Result<i32> {
    let verifier = verifier_key(key)?;
    let mut bytes = Vec::new();
    // One byte over the limit is enough for the check to refuse it.
    let limit = MAX_DOCUMENT_BYTES as u64 + 1;
    if file.as_os_str() == "-" {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(file).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    }
    .with_context(|| format!("cannot read {}", file.display()))?;
    let verdict = match String::from_utf8(bytes) {
        Ok(text) => proof::check(&text, verifier.as_ref()).map_err(|e| e.to_string()),
        Err(_) => Err("the document is not UTF-8 text".to_owned()),
    };
    match verdict {
        Ok(summary) => {
            println!("{summary}");
            if verifier.is_none() {
                eprintln!(
                    "warning: no verifier key (--key or {VERIFIER_KEY_ENV}): checkpoint signatures were not checked"
                );
            }
            Ok(0)
        }
        Err(reason) => {
            eprintln!("proof INVALID: {reason}");
            Ok(1)
        }
    }
}

/// The verifier key from `--key FILE`, else from the environment, else none.
fn verifier_key(key: Option<&Path>) -> Result<Option<NoteVerifier>> {
    let (text, from) = match key {
        Some(path) => (
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the key file {}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var(VERIFIER_KEY_ENV) {
            Ok(text) => (text, VERIFIER_KEY_ENV.to_owned()),
            Err(_) => return Ok(None),
        },
    };
    if text.trim_start().starts_with("PRIVATE+KEY+") {
        bail!("{from} holds a signer (private) key; give the verifier key");
    }
    NoteVerifier::parse(&text)
        .map(Some)
        .with_context(|| format!("{from} is not a verifier key"))
}

/// Names one log of a store: its chain and table. Both may be left out
/// when the store has only one chain.
#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// The chain's stream (Kafka topic, or `+file`).
    #[arg(long)]
    pub stream: Option<String>,
    #[arg(long)]
    pub partition: Option<i32>,
    /// `events`, `rejects`, `incidents` or `query_log`.
    #[arg(long, default_value = "events")]
    pub table: String,
}

impl LogArgs {
    fn table(&self) -> Result<Table> {
        match Table::parse(&self.table) {
            Some(table) => Ok(table),
            None => bail!(
                "--table must be events, rejects, incidents or query_log, not {:?}",
                self.table
            ),
        }
    }

    fn chain(&self, store: &Store) -> Result<ChainId> {
        match (&self.stream, self.partition) {
            (Some(stream), Some(partition)) => Ok(ChainId::new(stream.clone(), partition)),
            (None, None) => match store.chains_with(self.table()?)?.as_slice() {
                [only] => Ok(only.clone()),
                chains => bail!(
                    "the store has {} chains of {}: name one with --stream and --partition",
                    chains.len(),
                    self.table
                ),
            },
            _ => bail!("give both --stream and --partition, or neither"),
        }
    }
}

fn open_store(path: &Path) -> Result<Store> {
    let key = crate::segment_key_from_env()?;
    Store::open_existing_with(path, key)
        .with_context(|| format!("cannot open the store {}", path.display()))
}

/// `custos prove`: prints an inclusion proof as JSON.
pub fn prove(
    store: &Path,
    event_id: Option<&str>,
    log: &LogArgs,
    seq: Option<u64>,
    at: Option<u64>,
) -> Result<i32> {
    let store = open_store(store)?;
    let (chain, table, seq) = match (event_id, seq) {
        (Some(id), None) => {
            let found = store.locate_event(id)?;
            match found.as_slice() {
                [] => bail!("no event with id {id:?} is stored"),
                [one] => (one.chain.clone(), Table::Events, one.seq),
                many => bail!(
                    "event id {id:?} is stored {} times (the producer reused it): {}; prove one with --stream, --partition and --seq",
                    many.len(),
                    many.iter()
                        .map(|l| format!("{} seq {}", l.chain, l.seq))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
        (None, Some(seq)) => (log.chain(&store)?, log.table()?, seq),
        _ => bail!("give an event id, or --seq (with --stream/--partition/--table)"),
    };
    let proof = store.prove_inclusion(&chain, table, seq, at)?;
    print_doc(&proof.to_json_pretty())?;
    Ok(0)
}

/// One side of `custos consistency`: a tree size, or a checkpoint file.
fn size_or_checkpoint(arg: &str) -> Result<(u64, Option<Checkpoint>)> {
    if let Ok(size) = arg.parse::<u64>() {
        return Ok((size, None));
    }
    let note = std::fs::read_to_string(arg)
        .with_context(|| format!("{arg:?} is neither a tree size nor a readable file"))?;
    let checkpoint = checkpoint::unverified_text(&note)
        .and_then(Checkpoint::parse)
        .with_context(|| format!("{arg} does not hold a signed checkpoint"))?;
    Ok((checkpoint.size, Some(checkpoint)))
}

/// `custos consistency`: prints a consistency proof as JSON.
pub fn consistency(store: &Path, old: &str, new: &str, log: &LogArgs) -> Result<i32> {
    let store = open_store(store)?;
    let (old, old_cp) = size_or_checkpoint(old)?;
    let (new, new_cp) = size_or_checkpoint(new)?;
    // A checkpoint names its log; otherwise the flags do.
    let named = old_cp
        .iter()
        .chain(&new_cp)
        .next()
        .map(|c| c.origin.clone());
    let (chain, table) = match named {
        Some(origin) => find_log(&store, &origin)?,
        None => (log.chain(&store)?, log.table()?),
    };
    for cp in old_cp.iter().chain(&new_cp) {
        let expected = custos::ledger::log_origin(store.origin(), &chain, table);
        if cp.origin != expected {
            bail!(
                "the checkpoints are of different logs ({} and {expected})",
                cp.origin
            );
        }
    }
    let proof = store.prove_consistency(&chain, table, old, new)?;
    for (cp, root) in [(&old_cp, proof.old_root), (&new_cp, proof.new_root)] {
        if let Some(cp) = cp
            && cp.root != root
        {
            bail!(
                "the checkpoint of size {} does not match this store's tree: its history differs",
                cp.size
            );
        }
    }
    print_doc(&proof.to_json_pretty())?;
    Ok(0)
}

/// The chain and table whose log origin is `origin`.
fn find_log(store: &Store, origin: &str) -> Result<(ChainId, Table)> {
    for chain in store.chains()? {
        for table in Table::ALL {
            if custos::ledger::log_origin(store.origin(), &chain, table) == origin {
                return Ok((chain, table));
            }
        }
    }
    bail!("this store (origin {}) has no log {origin}", store.origin())
}

/// `custos verify`: the full check, with a progress bar on a terminal.
pub async fn verify(
    store: PathBuf,
    key: Option<PathBuf>,
    checkpoints: Vec<PathBuf>,
    json: bool,
) -> Result<i32> {
    let verifier = verifier_key(key.as_deref())?;
    let segment_key = crate::segment_key_from_env()?;
    let external = checkpoints
        .iter()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let show_progress = std::io::stderr().is_terminal();
    let report = tokio::task::spawn_blocking(move || {
        let bar = ProgressBar::default();
        let progress = |done: u64, total: u64| bar.show(done, total);
        let opts = VerifyOptions {
            verifier,
            external,
            progress: show_progress.then_some(&progress as &(dyn Fn(u64, u64) + Sync)),
            threads: 0,
            key: segment_key,
        };
        let started = std::time::Instant::now();
        let report = verify_with(&store, &opts);
        bar.finish();
        report.map(|r| (r, started.elapsed()))
    })
    .await??;
    let (report, took) = report;
    if json {
        println!("{}", report_json(&report));
    } else {
        for p in &report.problems {
            println!("BAD {p}");
        }
        let rows = report.events + report.rejects + report.incidents + report.queries;
        println!(
            "{}: {} chain(s), {} segment(s), {} event(s), {} reject(s), {} incident revision(s), {} logged query(ies), {} checkpoint(s) in {:.2}s ({:.0} rows/s)",
            if report.ok() { "ok" } else { "FAILED" },
            report.chains,
            report.segments,
            report.events,
            report.rejects,
            report.incidents,
            report.queries,
            report.checkpoints,
            took.as_secs_f64(),
            rows as f64 / took.as_secs_f64().max(1e-9)
        );
        if report.erased > 0 || report.pruned > 0 {
            println!(
                "{} of those rows are tombstones of erased rows (checked by their leaf hashes); {} more row(s) were pruned (checked by the tree's leaf hashes)",
                report.erased, report.pruned
            );
        }
    }
    if report.checkpoints > 0 && !report.signatures_checked {
        eprintln!(
            "warning: checkpoint signatures were NOT checked (give --key or {VERIFIER_KEY_ENV}); \
             only their roots were compared with the store"
        );
    }
    Ok(if report.ok() { 0 } else { 1 })
}

fn report_json(report: &VerifyReport) -> String {
    let heads: Vec<serde_json::Value> = report
        .heads
        .iter()
        .map(|h| {
            serde_json::json!({
                "stream": h.chain.stream,
                "partition": h.chain.partition,
                "table": h.table.as_str(),
                "size": h.size,
                "root": hex::encode(h.root),
            })
        })
        .collect();
    let problems: Vec<serde_json::Value> = report
        .problems
        .iter()
        .map(|p| {
            serde_json::json!({
                "file": p.file,
                "row": p.row,
                "seq": p.seq,
                "event_id": p.event_id,
                "what": p.what,
            })
        })
        .collect();
    serde_json::json!({
        "ok": report.ok(),
        "chains": report.chains,
        "segments": report.segments,
        "events": report.events,
        "rejects": report.rejects,
        "incidents": report.incidents,
        "queries": report.queries,
        "erased": report.erased,
        "pruned": report.pruned,
        "checkpoints": report.checkpoints,
        "signatures_checked": report.signatures_checked,
        "logs": heads,
        "problems": problems,
    })
    .to_string()
}

/// A one-line progress bar on stderr, redrawn at most ten times a second.
#[derive(Default)]
struct ProgressBar {
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl ProgressBar {
    fn show(&self, done: u64, total: u64) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        if last.is_some_and(|t| t.elapsed().as_millis() < 100) && done < total {
            return;
        }
        *last = Some(std::time::Instant::now());
        let frac = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        let filled = (frac * 30.0).round() as usize;
        eprint!(
            "\r[{}{}] {:5.1}% {done}/{total} rows",
            "#".repeat(filled.min(30)),
            " ".repeat(30 - filled.min(30)),
            frac * 100.0
        );
    }

    fn finish(&self) {
        if self.last.lock().is_ok_and(|l| l.is_some()) {
            eprintln!();
        }
    }
}

/// Prints a document on stdout; a closed pipe (`| head`) is not an error.
fn print_doc(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_is_not_one_is_refused_naming_all_four() {
        let log = |table: &str| LogArgs {
            stream: None,
            partition: None,
            table: table.to_owned(),
        };
        let what = log("audit").table().unwrap_err().to_string();
        for table in Table::ALL {
            assert!(what.contains(table.as_str()), "{what}");
        }
        assert_eq!(log("query_log").table().unwrap(), Table::QueryLog);
    }
}
