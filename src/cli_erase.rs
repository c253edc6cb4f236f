//! `custos erase` and `custos prune`: removing rows from a store without
//! breaking its proofs (`docs/ledger-format.md`, section 16). Wiring only:
//! the ledger amends segments (`ChainWriter::erase`, `ChainWriter::prune`),
//! `Pseudonymizer` and `RejectSealer` say which rows hold a patient.
//!
//! Both take each chain's write lock, so they run while no custos process
//! owns the chain; a chain that stays locked is reported and skipped, and
//! the command exits 1 so the request can be run again.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use custos::event::{Pseudonymizer, RejectSealer, SealedPart};
use custos::ledger::{AmendStats, ChainWriter, Erasure, LedgerError, Store, StoredRow, Table};

#[derive(clap::Args)]
pub struct EraseArgs {
    #[command(flatten)]
    config: crate::ConfigArgs,
    /// The store folder (default: the configuration's `store.path`).
    #[arg(long)]
    store: Option<PathBuf>,
    /// A raw patient identifier (e.g. an MRN) whose rows are erased
    /// (repeatable). Never written anywhere: events are found by its
    /// pseudonym, rejected messages by unsealing them.
    #[arg(long = "patient", required = true, value_name = "ID")]
    patients: Vec<String>,
    /// The request's reference (e.g. the data-subject request id), kept in
    /// every tombstone and amendment. Not the patient's identifier.
    #[arg(long, value_name = "TEXT")]
    reason: String,
    /// Seconds to wait for a chain that a running custos holds.
    #[arg(long, default_value_t = 0)]
    wait: u64,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    config: crate::ConfigArgs,
    /// The store folder (default: the configuration's `store.path`).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Prune flushes whose events are all older than this many days
    /// (default: the configuration's `store.retention_days`).
    #[arg(long, value_name = "DAYS", conflicts_with = "before")]
    older_than: Option<u64>,
    /// Prune flushes whose events are all before this RFC 3339 time.
    #[arg(long, value_name = "TIME")]
    before: Option<String>,
    /// Seconds to wait for a chain that a running custos holds.
    #[arg(long, default_value_t = 0)]
    wait: u64,
}

pub fn erase(args: EraseArgs) -> Result<i32> {
    let config = crate::load(&args.config)?;
    let key = config.privacy.key().map_err(anyhow::Error::msg)?;
    let pseudonyms: Vec<String> = {
        let p = Pseudonymizer::new(&key);
        args.patients.iter().map(|id| p.patient(id)).collect()
    };
    if args.patients.iter().any(|id| id.is_empty()) {
        bail!("--patient must not be empty");
    }
    if args.reason.trim().is_empty() {
        bail!("--reason must name the request");
    }
    let sealer = RejectSealer::new(&key);
    // Sealed rejects that do not open under this key (sealed under an
    // earlier one): not checked, so reported.
    let unopened = std::cell::Cell::new(0u64);
    let erasure = Erasure {
        reason: args.reason.clone(),
        time: Utc::now(),
    };
    let mut select = |table: Table, row: StoredRow<'_>| match (table, row) {
        (_, StoredRow::Event { record }) => pseudonyms.iter().any(|p| record.contains(p.as_str())),
        (
            _,
            StoredRow::Reject {
                record,
                key,
                payload,
            },
        ) => {
            let sealed = record.contains("\"payload_sealed\":");
            let open = |part: SealedPart, bytes: &[u8]| -> Option<Vec<u8>> {
                if !sealed {
                    return Some(bytes.to_vec());
                }
                let opened = sealed_label(record).and_then(|l| sealer.open(&l, part, bytes).ok());
                if opened.is_none() {
                    unopened.set(unopened.get() + 1);
                }
                opened
            };
            let plain = [
                open(SealedPart::Payload, payload),
                key.and_then(|k| open(SealedPart::Key, k)),
            ];
            plain.iter().flatten().any(|bytes| {
                args.patients
                    .iter()
                    .any(|id| holds_token(bytes, id.as_bytes()))
            })
        }
    };
    let path = args.store.unwrap_or_else(|| config.store.path.clone());
    let segment_key = config.store.segment_key().map_err(anyhow::Error::msg)?;
    let code = each_chain(&path, segment_key, args.wait, "erased", |writer| {
        writer.erase(&erasure, &mut select)
    })?;
    if unopened.get() > 0 {
        eprintln!(
            "error: {} sealed rejected message part(s) do not open under the configured pseudonym key \
             (sealed under another key: see their segments' custos.pseudonym_key_id) and were not checked; \
             run again with that key",
            unopened.get()
        );
        return Ok(1);
    }
    Ok(code)
}

pub fn prune(args: PruneArgs) -> Result<i32> {
    let config = crate::load(&args.config)?;
    let before = match (&args.before, args.older_than) {
        (Some(time), _) => chrono::DateTime::parse_from_rfc3339(time)
            .with_context(|| format!("--before {time:?} is not an RFC 3339 time"))?
            .with_timezone(&Utc),
        (None, Some(days)) => Utc::now() - chrono::Duration::days(days as i64),
        (None, None) if config.store.retention_days > 0 => {
            Utc::now() - chrono::Duration::days(config.store.retention_days as i64)
        }
        (None, None) => bail!(
            "give --older-than DAYS or --before TIME (store.retention_days is 0: keep forever)"
        ),
    };
    let now = Utc::now();
    let path = args.store.unwrap_or_else(|| config.store.path.clone());
    let key = config.store.segment_key().map_err(anyhow::Error::msg)?;
    each_chain(&path, key, args.wait, "pruned", |writer| {
        writer.prune(before.timestamp_micros(), now)
    })
}

/// Runs `amend` on every chain of the store, each under its lock; prints
/// what it did per chain and in total. Exit 1 if a chain was skipped.
fn each_chain(
    path: &std::path::Path,
    key: Option<custos::ledger::SegmentKey>,
    wait: u64,
    done: &str,
    mut amend: impl FnMut(&mut ChainWriter) -> Result<AmendStats, LedgerError>,
) -> Result<i32> {
    let store = Store::open_existing_with(path, key)
        .with_context(|| format!("cannot open the store {}", path.display()))?;
    let mut total = AmendStats::default();
    let mut skipped = 0;
    // (Incident revisions are neither erased nor pruned: their chains are
    // the alert stage's.)
    for chain in store.chains_with(Table::Events)? {
        let mut writer = match store.chain_writer_waiting(&chain, Duration::from_secs(wait)) {
            Ok(writer) => writer,
            Err(LedgerError::Locked { .. }) => {
                eprintln!(
                    "error: chain {chain} is held by a running custos: not changed (stop it, or run again with --wait)"
                );
                skipped += 1;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot open chain {chain}")),
        };
        let stats = amend(&mut writer).with_context(|| format!("chain {chain}: not {done}"))?;
        if stats.segments > 0 {
            println!(
                "{chain}: {} events and {} rejects in {} segment(s)",
                stats.events, stats.rejects, stats.segments
            );
        }
        total.segments += stats.segments;
        total.events += stats.events;
        total.rejects += stats.rejects;
    }
    println!(
        "{done} {} events and {} rejects in {} segment(s); {skipped} chain(s) skipped",
        total.events, total.rejects, total.segments
    );
    Ok(if skipped == 0 { 0 } else { 1 })
}

/// The `payload_sealed` label of a reject record.
fn sealed_label(record: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(record).ok()?;
    value.get("payload_sealed")?.as_str().map(str::to_owned)
}

/// Whether `token` occurs in `bytes` as a whole: not inside a longer run
/// of letters, digits, `-`, `_` or `.` (so `MRN-1` is not found in
/// `MRN-10`).
fn holds_token(bytes: &[u8], token: &[u8]) -> bool {
    let part = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    memchr::memmem::find_iter(bytes, token).any(|at| {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(at + token.len()).copied();
        !before.is_some_and(part) && !after.is_some_and(part)
    })
}

#[cfg(test)]
mod tests {
    use super::holds_token;

    #[test]
    fn tokens_are_whole() {
        assert!(holds_token(br#"{"patient":"MRN-1"}"#, b"MRN-1"));
        assert!(holds_token(b"MRN-1", b"MRN-1"));
        assert!(holds_token(br#"patient:MRN-1,"#, b"MRN-1"));
        assert!(!holds_token(br#"{"patient":"MRN-10"}"#, b"MRN-1"));
        assert!(!holds_token(br#"{"patient":"XMRN-1"}"#, b"MRN-1"));
        assert!(!holds_token(br#"{"patient":"MRN-1.5"}"#, b"MRN-1"));
        assert!(holds_token(br#"["MRN-10","MRN-1"]"#, b"MRN-1"));
    }
}
