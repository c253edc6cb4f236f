//! The prepare stage: the work on each message that needs no chain state,
//! done on its own thread ahead of the pipeline loop.
//!
//! Parsing, validation and pseudonyms (`Decoder::parse`), and for an
//! event whose record depends on nothing the chain holds (no feature
//! vector to sketch with the chain's learned normalization, a source
//! offset already known) its ledger record, leaf hash and typed columns
//! ([`PreparedEvent`]). The loop is left with what needs a chain's state:
//! the sketch, the event-id window, the Merkle append, the detectors.
//!
//! The stage forwards the source's events one by one, in order, so
//! assignments, revokes and the end reach the loop exactly where the
//! source put them among the messages. It stops when the source ends or
//! the loop has gone (which the source then sees in turn).

use tokio::sync::{mpsc, oneshot};

use crate::event::{Decoder, Parsed, Reject};
use crate::ledger::{ChainId, HashAlg, Origin, PreparedEvent};
use crate::source::{SourceEvent, SourceMessage};

/// A source event with its messages prepared.
pub(super) enum Staged {
    Assigned(Vec<ChainId>, Option<oneshot::Sender<Vec<(ChainId, i64)>>>),
    Messages(Vec<Prepared>),
    Revoked(Vec<ChainId>, oneshot::Sender<()>),
    End,
}

/// One message and what the stage made of it.
pub(super) struct Prepared {
    pub msg: SourceMessage,
    pub parsed: Result<Parsed, Reject>,
    /// The ledger row of the event, when it could be made ahead (see the
    /// module). `None` leaves it to the loop.
    pub row: Option<PreparedEvent>,
}

/// Batches the stage may hold prepared for the loop (32 gave no gain
/// beyond the run-to-run spread and 200 MB more peak RSS,
/// docs/performance.md).
const AHEAD: usize = 4;

/// Starts the stage between `source` and the loop.
pub(super) fn spawn(
    mut source: mpsc::Receiver<SourceEvent>,
    decoder: Decoder,
    alg: HashAlg,
) -> std::io::Result<mpsc::Receiver<Staged>> {
    // Room for the stage to run ahead while the loop waits on a flush.
    let (tx, rx) = mpsc::channel(AHEAD);
    std::thread::Builder::new()
        .name("custos-prepare".into())
        .spawn(move || {
            while let Some(event) = source.blocking_recv() {
                let staged = match event {
                    SourceEvent::Assigned(chains, reply) => Staged::Assigned(chains, reply),
                    SourceEvent::Messages(batch) => Staged::Messages(
                        batch
                            .into_iter()
                            .map(|msg| prepare(&decoder, alg, msg))
                            .collect(),
                    ),
                    SourceEvent::Revoked(chains, done) => Staged::Revoked(chains, done),
                    SourceEvent::End => Staged::End,
                };
                let end = matches!(staged, Staged::End);
                if tx.blocking_send(staged).is_err() || end {
                    break;
                }
            }
        })?;
    Ok(rx)
}

pub(super) fn prepare(decoder: &Decoder, alg: HashAlg, msg: SourceMessage) -> Prepared {
    let parsed = decoder.parse(&msg.payload);
    let row = match (&parsed, msg.offset) {
        (Ok(parsed), Some(offset)) => parsed.ready().map(|event| {
            let origin = Origin {
                offset,
                file: msg.file.as_ref().map(|(f, _)| f.clone()),
                line: msg.file.as_ref().map(|(_, l)| *l),
            };
            PreparedEvent::new(alg, &msg.chain, origin, event)
        }),
        _ => None,
    };
    Prepared { msg, parsed, row }
}
