//! A batch's per-chain work: the chain-dependent end of decoding (the
//! feature sketch), the event-id window, the ledger append and the
//! detectors. Chains share nothing here, so the chains of a large batch
//! are split into two lanes handled on two threads at once: each lane
//! owns its chains' state for the batch, and a chain's messages stay in
//! order within it. What crosses chains (the SQL window, alerts, dead
//! letters, flushes) is done by the loop afterwards, from the lanes'
//! [`Handled`].

use chrono::{DateTime, Utc};

use super::prepare::Prepared;
use super::{ChainState, PipelineError, Summary, seal};
use crate::alert::Alert;
use crate::event::{Decoder, Reject, RejectReason, RejectSealer};
use crate::ledger::{ChainId, Origin};
use crate::metrics::metrics;
use crate::source::SourceMessage;

/// Messages a batch must hold for its chains to be split over two
/// threads: below it, starting a thread costs more than it saves.
const SPLIT_MIN: usize = 128;

/// What every lane reads.
pub(super) struct Shared<'a> {
    pub decoder: &'a Decoder,
    pub sealer: Option<&'a RejectSealer>,
    /// `custos_events_accepted_total` by kind.
    pub accepted: &'a [prometheus::IntCounter; 3],
    /// A chain with this many rows buffered is due for a flush.
    pub max_rows: usize,
    /// One wall-clock read per batch: its alerts share it.
    pub raised_at: DateTime<Utc>,
    /// Whether rejects are copied to a dead-letter topic.
    pub dead_letters: bool,
}

/// A batch's messages and events once handled, to be freed off the loop.
#[derive(Default)]
pub(super) struct Spent {
    pub messages: Vec<SourceMessage>,
    pub events: Vec<crate::event::Event>,
}

/// What a lane leaves for the loop.
#[derive(Default)]
pub(super) struct Handled {
    pub alerts: Vec<Alert>,
    /// Its accepted events are the SQL window's input, in chain order.
    pub spent: Spent,
    /// Chains with `max_rows` buffered.
    pub full: Vec<ChainId>,
    /// Newest event time seen, microseconds.
    pub newest: Option<i64>,
    pub counts: Summary,
    /// Rejected messages for the dead-letter topic.
    pub dead: Vec<(SourceMessage, Reject)>,
    /// Threads the batch was handled on.
    pub lanes: usize,
}

impl Handled {
    fn absorb(&mut self, other: Handled) {
        self.alerts.extend(other.alerts);
        self.spent.messages.extend(other.spent.messages);
        self.spent.events.extend(other.spent.events);
        self.full.extend(other.full);
        self.newest = self.newest.max(other.newest);
        let (a, b) = (&mut self.counts, other.counts);
        a.accepted += b.accepted;
        a.rejected += b.rejected;
        a.redelivered += b.redelivered;
        a.duplicates += b.duplicates;
        self.dead.extend(other.dead);
    }
}

/// One chain's messages of the batch, in order, with the chain's state.
pub(super) type Work<'c> = (&'c ChainId, &'c mut ChainState, Vec<Prepared>);

/// Handles `work` (disjoint chains), on two threads when the batch is
/// large and spans more than one chain: the chains are dealt to the two
/// lanes largest first, each to the lane with fewer messages.
pub(super) fn handle(shared: &Shared, mut work: Vec<Work>) -> Result<Handled, PipelineError> {
    let total: usize = work.iter().map(|w| w.2.len()).sum();
    if work.len() < 2 || total < SPLIT_MIN {
        return lane(shared, work);
    }
    work.sort_by_key(|w| std::cmp::Reverse(w.2.len()));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let (mut na, mut nb) = (0, 0);
    for w in work {
        if na <= nb {
            na += w.2.len();
            a.push(w);
        } else {
            nb += w.2.len();
            b.push(w);
        }
    }
    let (ha, hb) = std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("custos-lane".into())
            .spawn_scoped(s, || lane(shared, b));
        let ha = lane(shared, a);
        (ha, other.map(|t| t.join()))
    });
    let mut ha = ha?;
    let hb = match hb {
        Ok(Ok(hb)) => hb?,
        Ok(Err(_)) => return Err(PipelineError::Internal("a batch lane panicked".into())),
        Err(e) => {
            return Err(PipelineError::Internal(format!(
                "cannot start a batch lane: {e}"
            )));
        }
    };
    ha.absorb(hb);
    ha.lanes = 2;
    Ok(ha)
}

fn lane(shared: &Shared, work: Vec<Work>) -> Result<Handled, PipelineError> {
    let mut out = Handled {
        lanes: 1,
        ..Handled::default()
    };
    for (chain, state, msgs) in work {
        chain_messages(shared, chain, state, msgs, &mut out)?;
    }
    Ok(out)
}

/// One chain's messages: each is skipped (a redelivery), rejected (kept
/// in the rejects table) or accepted (appended and judged), in order.
fn chain_messages(
    shared: &Shared,
    chain: &ChainId,
    state: &mut ChainState,
    msgs: Vec<Prepared>,
    out: &mut Handled,
) -> Result<(), PipelineError> {
    for Prepared { msg, parsed, row } in msgs {
        let offset = match msg.offset {
            Some(o) if o < state.next_offset => {
                // Already held (a redelivery after a restart or a
                // rebalance). Counted: an operator must see it if a
                // recreated topic reuses offsets.
                out.counts.redelivered += 1;
                metrics().messages_skipped.inc();
                if !state.warned_skip {
                    state.warned_skip = true;
                    tracing::warn!(stream = %chain.stream, partition = chain.partition,
                        offset = o, next_offset = state.next_offset,
                        "skipping messages the ledger already holds");
                }
                continue;
            }
            Some(o) => o,
            None => state.next_offset,
        };
        state.next_offset = offset + 1;
        state.oldest.get_or_insert_with(std::time::Instant::now);
        let Some(writer) = state.writer.as_mut() else {
            return Err(PipelineError::Internal(
                "a chain lost its writer in an earlier failed flush".into(),
            ));
        };
        let (file, line) = match &msg.file {
            Some((f, l)) => (Some(f.clone()), Some(*l)),
            None => (None, None),
        };
        let origin = Origin { offset, file, line };
        let decoded = parsed
            .and_then(|parsed| shared.decoder.finish(parsed, Some(&mut state.sketcher)))
            .and_then(
                |event| match state.ids.insert(&event.id, event.time_micros(), offset) {
                    None => Ok(event),
                    Some(first) => Err(Reject::new(
                        RejectReason::DuplicateId,
                        format!("event id already stored from offset {first} (a producer retry)"),
                    )),
                },
            );
        match decoded {
            Ok(event) => {
                out.counts.accepted += 1;
                shared.accepted[event.kind() as usize].inc();
                match row {
                    Some(row) => writer.push_prepared(row),
                    None => writer.push_event(origin, &event),
                }
                out.newest = out.newest.max(Some(event.time_micros()));
                state.observed = true;
                out.alerts.extend(
                    state
                        .detectors
                        .observe(&event)
                        .map(|f| Alert::from_finding(f, shared.raised_at).arrived_at(msg.arrived)),
                );
                out.spent.events.push(event);
            }
            Err(reject) => {
                metrics()
                    .events_rejected
                    .with_label_values(&[reject.reason.as_str()])
                    .inc();
                let stored = seal::seal(shared.sealer, msg.key.as_deref(), &msg.payload)?;
                writer.push_reject(origin, stored.bytes(), &reject);
                if reject.reason == RejectReason::DuplicateId {
                    // Not bad input: kept in the rejects table for the
                    // record, not copied to the dead-letter topic.
                    out.counts.duplicates += 1;
                } else {
                    out.counts.rejected += 1;
                    tracing::debug!(stream = %chain.stream, partition = chain.partition,
                        offset, reason = reject.reason.as_str(), detail = %reject.detail, "rejected");
                    if shared.dead_letters {
                        out.dead.push((msg.clone(), reject));
                    }
                }
            }
        }
        if writer.buffered() >= shared.max_rows && !out.full.contains(chain) {
            out.full.push(chain.clone());
        }
        out.spent.messages.push(msg);
    }
    Ok(())
}
