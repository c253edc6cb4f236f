//! Incident revisions recorded in the ledger before any sink sees them.
//!
//! The alert stage owns one chain of the store, `+incidents/<n>`
//! (`incidents.chain`), whose `incidents` table holds every revision the
//! outbox holds, at the same number: the row at offset `n` is outbox entry
//! `n`. The writer task records a group of revisions (push, flush: fsync
//! of segment, tree and manifest) and only then appends them to the
//! outbox, so every alert a receiver got has an inclusion proof, signed
//! checkpoints cover the revisions like events, and `verify` checks them.
//!
//! After a crash between the two, the ledger is ahead of the outbox: at
//! start the revisions it holds past the outbox's end are appended to the
//! outbox ([`IncidentRecorder::open`]), so they are delivered too.
//!
//! A chain belongs to one outbox for good: without `incidents.chain`, a
//! process takes the lowest-numbered `+incidents/<n>` that holds nothing and
//! no other process holds, and writes its name to the outbox folder
//! (`incidents-chain`), where every later start finds it. So the processes
//! of a group that share a store need no configuration for it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ledger::checkpoint::NoteSigner;
use crate::ledger::{ChainId, ChainWriter, INCIDENTS_STREAM, LedgerError, Origin, Store, Table};
use crate::metrics::metrics;

use super::Incident;

/// Where and how incident revisions are recorded.
#[derive(Clone)]
pub struct IncidentLedger {
    pub store: Store,
    /// `incidents.chain`: the partition of `+incidents/<n>`; `None` binds
    /// one to the outbox (see the module doc).
    pub chain: Option<u32>,
    /// Signs a checkpoint of the chain at most every interval (and at
    /// shutdown), like the source chains.
    pub checkpoints: Option<(Arc<NoteSigner>, Duration)>,
}

/// The open `incidents` chain, owned by the outbox writer task.
pub(super) struct IncidentRecorder {
    ledger: IncidentLedger,
    chain: ChainId,
    /// `None` after a failed flush, until reopened.
    writer: Option<ChainWriter>,
    signed: Instant,
    /// Rows recorded since the last checkpoint.
    unsigned: bool,
}

impl IncidentRecorder {
    /// Opens the outbox's chain (repairing a crashed flush) and returns
    /// the revisions it holds at offsets `outbox_next` and later, in
    /// order: those the outbox lacks.
    pub fn open(
        ledger: IncidentLedger,
        outbox_dir: &Path,
        outbox_next: u64,
    ) -> Result<(IncidentRecorder, Vec<Incident>), LedgerError> {
        let (chain, writer) = bind(&ledger, outbox_dir)?;
        let mut missing = Vec::new();
        let recorded = writer.last_offset();
        let next = outbox_next as i64;
        if recorded.is_some_and(|last| last >= next) {
            let mut problem = None;
            ledger
                .store
                .replay(&chain, Table::Incidents, next, |offset, record| {
                    let parsed = serde_json::from_str::<serde_json::Value>(record)
                        .ok()
                        .and_then(|v| {
                            serde_json::from_value::<Incident>(v["incident"].clone()).ok()
                        });
                    match parsed {
                        Some(inc) if offset == next + missing.len() as i64 => missing.push(inc),
                        _ => {
                            problem.get_or_insert(offset);
                        }
                    }
                })?;
            if let Some(offset) = problem {
                return Err(LedgerError::Internal(format!(
                    "the incidents chain {} holds an unreadable or out-of-order revision at offset {offset}",
                    chain
                )));
            }
            tracing::warn!(chain = %chain, revisions = missing.len(),
                "the ledger holds incident revisions the outbox lacks (a crash between the two); they go to the outbox now");
        } else if recorded.is_some_and(|last| last + 1 < next) {
            tracing::warn!(chain = %chain, recorded = ?recorded, outbox_next,
                "the outbox holds incident revisions the ledger never recorded (an outbox older than the ledger's incidents table); recording continues from the outbox's end");
        }
        Ok((
            IncidentRecorder {
                ledger,
                chain,
                writer: Some(writer),
                signed: Instant::now(),
                unsigned: true,
            },
            missing,
        ))
    }

    /// Records `revisions` as outbox entries `first..`, durably. Blocking.
    /// Entries the chain already holds (a flush that failed after its
    /// commit point) are not recorded twice. On an error the chain is
    /// reopened at the next call.
    pub fn record(&mut self, first: u64, revisions: &[Incident]) -> Result<(), LedgerError> {
        let mut writer = match self.writer.take() {
            Some(w) => w,
            None => self.ledger.store.chain_writer(&self.chain)?,
        };
        let held = writer.last_offset();
        for (i, inc) in revisions.iter().enumerate() {
            let offset = (first + i as u64) as i64;
            if held.is_some_and(|last| offset <= last) {
                continue;
            }
            let doc = serde_json::to_value(inc)
                .map_err(|e| LedgerError::Internal(format!("incident revision: {e}")))?;
            writer.push_incident(Origin::kafka(offset), &doc)?;
        }
        let stats = writer.flush()?;
        crate::failpoint::hit("incidents.recorded");
        if let Some(stats) = stats {
            metrics().note_flush("incidents", stats.incidents, stats.segments, stats.bytes);
            self.unsigned = true;
        }
        self.writer = Some(writer);
        self.checkpoint(false)
    }

    /// Signs a checkpoint when rows were recorded since the last one and
    /// the interval passed (or `now`). Blocking.
    pub fn checkpoint(&mut self, now: bool) -> Result<(), LedgerError> {
        let Some((signer, every)) = &self.ledger.checkpoints else {
            return Ok(());
        };
        if !self.unsigned || (!now && self.signed.elapsed() < *every) {
            return Ok(());
        }
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        let written = writer.checkpoint(signer, chrono::Utc::now())?;
        self.signed = Instant::now();
        self.unsigned = false;
        metrics().note_checkpoints(written.len());
        Ok(())
    }
}

/// The file in the outbox folder naming its incidents chain.
const BINDING: &str = "incidents-chain";

/// The outbox's incidents chain, opened: the configured one, the one the
/// outbox names, or the lowest-numbered empty one no other process holds
/// (then named in the outbox).
fn bind(ledger: &IncidentLedger, outbox_dir: &Path) -> Result<(ChainId, ChainWriter), LedgerError> {
    let chain = |n: u32| ChainId::new(INCIDENTS_STREAM, i32::try_from(n).unwrap_or(i32::MAX));
    let file = outbox_dir.join(BINDING);
    let named =
        match std::fs::read_to_string(&file) {
            Ok(text) => Some(text.trim().parse::<u32>().map_err(|_| {
                LedgerError::corrupt(&file, "does not hold an incidents chain number")
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(LedgerError::io(&file, e)),
        };
    if let (Some(configured), Some(named)) = (ledger.chain, named)
        && configured != named
    {
        return Err(LedgerError::InvalidOptions(format!(
            "incidents.chain is {configured} but the outbox {} records into +incidents/{named}; \
             an outbox keeps its chain for good",
            outbox_dir.display()
        )));
    }
    let (chain, writer) = match ledger.chain.or(named) {
        // A crashed predecessor's lock (a lease, in a bucket) may still
        // stand: wait it out as the event chains do.
        Some(n) => (
            chain(n),
            ledger
                .store
                .chain_writer_waiting(&chain(n), ledger.store.takeover_wait())?,
        ),
        None => {
            let mut taken = None;
            for n in 0..=u32::from(u16::MAX) {
                let c = chain(n);
                if !ledger.store.manifest(&c)?.is_empty() {
                    continue;
                }
                match ledger.store.chain_writer(&c) {
                    // Empty under its lock too: nobody took it meanwhile.
                    Ok(w) if w.last_offset().is_none() => {
                        taken = Some((c, w));
                        break;
                    }
                    Ok(_) | Err(LedgerError::Locked { .. }) => continue,
                    Err(e) => return Err(e),
                }
            }
            taken.ok_or_else(|| LedgerError::InvalidOptions("no free incidents chain".into()))?
        }
    };
    if named.is_none() {
        write_synced(&file, &format!("{}\n", chain.partition))?;
        tracing::info!(%chain, outbox = %outbox_dir.display(), "incident revisions are recorded in this chain");
    }
    Ok((chain, writer))
}

/// Writes `text` to `path` durably (temporary file, fsync, rename, fsync
/// of the folder).
fn write_synced(path: &Path, text: &str) -> Result<(), LedgerError> {
    let tmp = path.with_extension("tmp");
    let io = |p: &Path| {
        let p = p.to_owned();
        move |e| LedgerError::io(&p, e)
    };
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(text.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io(dir))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::StoreOptions;

    /// A restart whose outbox names a chain that a crashed predecessor
    /// still holds (a lease in a bucket runs on for a while) waits for it
    /// rather than failing to start.
    #[test]
    fn a_restart_waits_for_the_previous_owners_lock_on_the_named_chain() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), StoreOptions::default()).unwrap();
        let outbox = dir.path().join("outbox");
        std::fs::create_dir_all(&outbox).unwrap();
        std::fs::write(outbox.join(BINDING), "0\n").unwrap();
        let held = store
            .chain_writer(&ChainId::new(INCIDENTS_STREAM, 0))
            .unwrap();
        let ledger = IncidentLedger {
            store,
            chain: None,
            checkpoints: None,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let opener = std::thread::spawn(move || {
            tx.send(IncidentRecorder::open(ledger, &outbox, 0).map(|(r, _)| r.chain))
                .unwrap()
        });
        // Not opened while the lock is held…
        std::thread::sleep(Duration::from_millis(200));
        assert!(rx.try_recv().is_err(), "opened beside the previous owner");
        // …and opened, on the chain the outbox names, once it is released.
        drop(held);
        let chain = rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(chain, ChainId::new(INCIDENTS_STREAM, 0));
        opener.join().unwrap();
    }
}
