//! Restoring a chain's state from the ledger: snapshots, their fallbacks,
//! the replay bound and the event-id window.

use super::*;
use crate::event::{PseudonymKey, Pseudonymizer};
use crate::ledger::{Origin, StoreOptions};
use crate::source::SourceMessage;

fn chain() -> ChainId {
    ChainId {
        stream: "t".into(),
        partition: 0,
    }
}

/// 600 accesses by 6 actors over 20 minutes, one flush per 100 events.
fn store_with_events(dir: &std::path::Path) -> (Store, Vec<crate::event::Event>) {
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
    let mut writer = store.chain_writer(&chain()).unwrap();
    let mut events = Vec::new();
    for i in 0..600i64 {
        let t = chrono::DateTime::from_timestamp(1_772_438_400 + i * 2, 0).unwrap();
        let json = format!(
            r#"{{"id":"e-{i}","time":"{}","kind":"access","actor":{{"id":"emp-{}"}},"action":"read","patient":"MRN-{i}"}}"#,
            t.to_rfc3339(),
            i % 6
        );
        let event = decoder.decode(json.as_bytes()).unwrap();
        let origin = Origin {
            offset: i,
            file: None,
            line: None,
        };
        writer.push_event(origin, &event);
        events.push(event);
        if i % 100 == 99 {
            writer.flush().unwrap();
        }
    }
    (store, events)
}

/// Every detector type, so snapshots and replays cover all their states.
fn setup() -> DetectorSetup {
    let mut configs = DetectorConfig::access_defaults();
    configs.push(DetectorConfig::default());
    configs.push(DetectorConfig::ModelAbuse(Default::default()));
    DetectorSetup::new(configs)
}

/// The state detectors reach on `events`, saved.
fn state_after(events: &[crate::event::Event]) -> Vec<u8> {
    let mut d = setup().build();
    for e in events {
        d.replay(e);
    }
    d.save()
}

fn snapshot(store: &Store, next_offset: i64, state: Vec<u8>) {
    store
        .write_snapshot_text(
            &chain(),
            &Snapshot {
                v: SNAPSHOT_VERSION,
                next_offset,
                events: 0,
                written: Utc::now(),
            },
            &state,
        )
        .unwrap();
}

fn restored(store: &Store, continuity: Continuity) -> Opened {
    open_chain(store, &chain(), &setup(), sketcher(), continuity).unwrap()
}

fn sketcher() -> Sketcher {
    Decoder::new(Pseudonymizer::new(&PseudonymKey::demo())).sketcher()
}

#[test]
fn model_normalizations_come_back_with_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = store_with_events(dir.path());
    let mut live = sketcher();
    let input = |i: u32| -> Vec<f64> {
        (0..30)
            .map(|f| f64::from(f + 1) * (1.0 + f64::from((i * 7 + f) % 13) / 10.0))
            .collect()
    };
    for i in 0..100 {
        live.sketch("m@1", &input(i)).unwrap();
    }
    let mut detectors = setup().build();
    for e in &events {
        detectors.replay(e);
    }
    snapshot(&store, 600, ChainSnapshot::of(&detectors, &live).encode());
    let mut opened = restored(&store, Continuity::default());
    assert_eq!(opened.sketcher.models(), 1);
    assert_eq!(
        opened.sketcher.sketch("m@1", &input(500)).unwrap(),
        live.sketch("m@1", &input(500)).unwrap()
    );
    // Without a snapshot, normalization starts afresh.
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_events(dir.path());
    assert_eq!(restored(&store, Continuity::default()).sketcher.models(), 0);
}

/// A snapshot is copied at a flush and encoded later, while the loop's
/// detectors go on: the text is that of the state at the copy.
#[test]
fn a_copied_snapshot_encodes_the_state_at_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, events) = store_with_events(dir.path());
    let mut detectors = setup().build();
    for e in &events[..300] {
        detectors.replay(e);
    }
    let copy = ChainSnapshot::of(&detectors, &sketcher());
    for e in &events[300..] {
        detectors.replay(e);
    }
    let at_copy = state_after(&events[..300]);
    let encoded = copy.encode();
    let parsed: serde_json::Value = serde_json::from_slice(&encoded).unwrap();
    let expected: serde_json::Value = serde_json::from_slice(&at_copy).unwrap();
    assert_eq!(parsed["detectors"], expected["detectors"]);
    assert_eq!(parsed["relations"], expected["relations"]);
    assert_ne!(
        parsed["detectors"],
        serde_json::from_slice::<serde_json::Value>(&detectors.save()).unwrap()["detectors"],
        "the later events changed the live state"
    );
    // It loads as any snapshot does.
    let mut fresh = setup().build();
    fresh.load(&encoded).unwrap();
    assert_eq!(fresh.save(), at_copy);
}

/// The snapshot thread writes the state into the file's text as it
/// encodes it: the file holds exactly the state's text, and reads back as
/// it.
#[test]
fn a_snapshot_file_holds_the_state_text_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = store_with_events(dir.path());
    let mut detectors = setup().build();
    for e in &events {
        detectors.replay(e);
    }
    let copy = ChainSnapshot::of(&detectors, &sketcher());
    let at = SnapshotAt {
        chain: chain(),
        next_offset: 600,
        events: 600,
    };
    // Twice: the second time with the first one's size as its hint.
    for _ in 0..2 {
        write_snapshot(&store, &at, &copy).unwrap();
        let stored = store.read_snapshot(&chain()).unwrap().unwrap();
        assert_eq!(stored.snapshot.next_offset, 600);
        assert_eq!(stored.snapshot.events, 600);
        assert_eq!(stored.state(), &copy.encode()[..]);
    }
    let n = copy.encode().len();
    assert_eq!(copy.size_hint(), n + n / 8);
    let stored = store.read_snapshot(&chain()).unwrap().unwrap();
    let mut fresh = setup().build();
    fresh.load(stored.state()).unwrap();
    // A restored state's first snapshot is sized from the one it came from.
    let n = stored.state().len();
    assert_eq!(fresh.snapshot().size_hint(), n + n / 8);
    assert_eq!(fresh.save(), detectors.save());
}

#[test]
fn without_a_snapshot_the_whole_chain_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = store_with_events(dir.path());
    let opened = restored(&store, Continuity::default());
    assert_eq!(opened.detectors.save(), state_after(&events));
}

#[test]
fn a_snapshot_is_topped_up_with_the_events_stored_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = store_with_events(dir.path());
    snapshot(&store, 250, state_after(&events[..250]));
    let opened = restored(&store, Continuity::default());
    assert_eq!(opened.detectors.save(), state_after(&events));
}

#[test]
fn the_snapshot_is_what_is_restored_not_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = store_with_events(dir.path());
    // A snapshot at the end that differs from a replay (it saw only the
    // first half): restoring must take it as it is.
    let state = state_after(&events[..300]);
    snapshot(&store, 600, state.clone());
    let opened = restored(&store, Continuity::default());
    assert_eq!(opened.detectors.save(), state);
    assert_ne!(state, state_after(&events));
}

#[test]
fn unusable_snapshots_fall_back_to_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = store_with_events(dir.path());
    let full = state_after(&events);
    // Ahead of the ledger (it would claim events the store lacks).
    snapshot(&store, 700, state_after(&events[..10]));
    assert_eq!(
        restored(&store, Continuity::default()).detectors.save(),
        full
    );
    // Saved under another detector configuration.
    let other = vec![DetectorConfig::AccessRate(crate::detect::RateConfig {
        window_secs: 30,
        ..Default::default()
    })];
    let mut d = DetectorSetup::new(other).build();
    d.replay(&events[0]);
    snapshot(&store, 600, d.save());
    assert_eq!(
        restored(&store, Continuity::default()).detectors.save(),
        full
    );
    // A damaged file.
    let path = dir.path().join("snapshots/t/0.json");
    std::fs::write(&path, b"{\"v\":1,\"next_off").unwrap();
    assert_eq!(
        restored(&store, Continuity::default()).detectors.save(),
        full
    );
}

#[test]
fn the_replay_bound_replays_only_the_newest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = store_with_events(dir.path());
    let continuity = Continuity {
        replay_max_events: 150,
        ..Continuity::default()
    };
    // Whole segments of 100: the newest two cover 150.
    let opened = restored(&store, continuity);
    assert_eq!(opened.detectors.save(), state_after(&events[400..]));
}

#[test]
fn the_id_window_is_rebuilt_from_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_events(dir.path());
    // 600 events 2 s apart: a 5-minute window holds the newest 151.
    let continuity = Continuity {
        dedup_window: Duration::from_secs(300),
        ..Continuity::default()
    };
    let mut opened = restored(&store, continuity);
    let t = |i: i64| (1_772_438_400 + i * 2) * 1_000_000;
    assert_eq!(opened.ids.insert("e-599", t(599), 1000), Some(599));
    assert_eq!(opened.ids.insert("e-450", t(450), 1001), Some(450));
    assert_eq!(
        opened.ids.insert("e-10", t(10), 1002),
        None,
        "older than the window"
    );
}

#[test]
fn stored_records_decode_to_the_events_that_were_stored() {
    use crate::source::synth::{Workload, WorkloadConfig};
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
    let mut workload = Workload::new(WorkloadConfig {
        seed: 3,
        ..WorkloadConfig::default()
    });
    let start = chrono::DateTime::from_timestamp(1_772_438_400, 0).unwrap();
    let mut kinds = std::collections::HashSet::new();
    for i in 0..5000i64 {
        let m = workload.next_message(start + chrono::Duration::milliseconds(i * 10));
        let Ok(event) = decoder.decode(&m.payload) else {
            continue;
        };
        let origin = Origin {
            offset: i,
            file: None,
            line: None,
        };
        let record = crate::ledger::event_record(&chain(), &origin, &event);
        let back = Decoder::decode_stored(std::str::from_utf8(&record).unwrap()).unwrap();
        assert_eq!(back, event, "record {}", String::from_utf8_lossy(&record));
        kinds.insert(event.kind());
    }
    assert_eq!(kinds.len(), 3, "every kind was covered");
}

#[test]
fn a_new_owner_waits_for_the_previous_owners_lock() {
    let dir = tempfile::tempdir().unwrap();
    let (store, events) = store_with_events(dir.path());
    let held = store.chain_writer(&chain()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let opener = {
        let store = store.clone();
        std::thread::spawn(move || tx.send(restored(&store, Continuity::default())).unwrap())
    };
    // Not opened while the lock is held…
    std::thread::sleep(Duration::from_millis(200));
    assert!(rx.try_recv().is_err(), "opened beside the previous owner");
    // …and opened once it is released.
    drop(held);
    let opened = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(opened.detectors.save(), state_after(&events));
    opener.join().unwrap();
}

/// Three chains' messages in one batch, with a malformed message, a
/// producer retry and an export that raises a finding in each: handled on
/// two lanes, every chain ends exactly as when each is handled alone.
#[test]
fn a_batch_split_over_two_lanes_leaves_each_chain_as_handling_it_alone_does() {
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
    let chains: Vec<ChainId> = (0..3)
        .map(|partition| ChainId {
            stream: "t".into(),
            partition,
        })
        .collect();
    let messages = |store: &Store, chain: &ChainId| -> Vec<Prepared> {
        let p = chain.partition;
        (0..120i64)
            .map(|i| {
                let t = chrono::DateTime::from_timestamp(1_772_438_400 + i * 5, 0).unwrap();
                // 40: malformed; 41: a retry of 39; 60: an export off any
                // allow-list, large enough for a finding.
                let id = if i == 41 { 39 } else { i };
                let payload = match i {
                    40 => b"{\"id\":\"broken\"".to_vec(),
                    60 => format!(
                        r#"{{"id":"x-{p}-{i}","time":"{}","kind":"access","actor":{{"id":"emp-{p}"}},"action":"export","patient":"MRN-{i}","records":500,"destination":"https://paste.example/{p}"}}"#,
                        t.to_rfc3339()
                    )
                    .into_bytes(),
                    _ => format!(
                        r#"{{"id":"x-{p}-{id}","time":"{}","kind":"access","actor":{{"id":"emp-{}"}},"action":"read","patient":"MRN-{}"}}"#,
                        t.to_rfc3339(),
                        i % 4,
                        i % 17
                    )
                    .into_bytes(),
                };
                prepare::prepare(
                    &decoder,
                    store.alg(),
                    crate::source::SourceMessage {
                        chain: chain.clone(),
                        offset: Some(i),
                        file: None,
                        key: None,
                        payload,
                        arrived: std::time::Instant::now(),
                    },
                )
            })
            .collect()
    };
    let accepted = Kind::ALL.map(|k| metrics().events_accepted.with_label_values(&[k.as_str()]));
    let shared = lanes::Shared {
        decoder: &decoder,
        sealer: None,
        accepted: &accepted,
        max_rows: 100,
        raised_at: Utc::now(),
        dead_letters: true,
    };
    let run = |split: bool| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let mut states: Vec<(ChainId, ChainState)> = chains
            .iter()
            .map(|c| {
                let opened = open_chain(&store, c, &setup(), sketcher(), Continuity::default());
                (
                    c.clone(),
                    ChainState::new(opened.unwrap(), 0, Duration::ZERO),
                )
            })
            .collect();
        let mut handled = Vec::new();
        if split {
            let work = states
                .iter_mut()
                .map(|(c, s)| (&*c, s, messages(&store, c)))
                .collect();
            handled.push(lanes::handle(&shared, work).unwrap());
        } else {
            for (c, s) in &mut states {
                let work = vec![(&*c, s, messages(&store, c))];
                handled.push(lanes::handle(&shared, work).unwrap());
            }
        }
        let lanes: Vec<usize> = handled.iter().map(|h| h.lanes).collect();
        let mut alerts: Vec<String> = handled
            .iter()
            .flat_map(|h| h.alerts.iter().map(|a| a.id.clone()))
            .collect();
        alerts.sort();
        let counts: Vec<(u64, u64, u64)> = handled
            .iter()
            .map(|h| (h.counts.accepted, h.counts.rejected, h.counts.duplicates))
            .collect();
        let (accepted, rejected, duplicates) = counts
            .iter()
            .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
        let mut full: Vec<ChainId> = handled.iter().flat_map(|h| h.full.clone()).collect();
        full.sort_by_key(|c| c.partition);
        let dead = handled.iter().map(|h| h.dead.len()).sum::<usize>();
        let chains: Vec<_> = states
            .iter_mut()
            .map(|(_, s)| {
                let writer = s.writer.as_mut().unwrap();
                writer.flush().unwrap();
                (
                    writer.tree_head(Table::Events),
                    writer.tree_head(Table::Rejects),
                    s.next_offset,
                    s.detectors.save(),
                )
            })
            .collect();
        let summary = (alerts, (accepted, rejected, duplicates), full, dead, chains);
        (lanes, summary)
    };
    let (split_lanes, split) = run(true);
    let (alone_lanes, alone) = run(false);
    assert_eq!(split_lanes, vec![2]);
    assert_eq!(alone_lanes, vec![1, 1, 1]);
    // One export finding per chain; 118 events, a reject and a retry each.
    assert_eq!(split.0.len(), 3, "{:?}", split.0);
    assert_eq!(split.1, (354, 3, 3));
    assert_eq!(split.2, chains, "each chain has 100 rows buffered");
    assert_eq!(split.3, 3);
    assert_eq!(split, alone);
}

#[test]
fn the_chains_of_a_process_come_due_for_snapshots_spread_over_the_interval() {
    let interval = Duration::from_secs(60);
    let mut phases: Vec<Duration> = (0..12).map(|p| snapshot_phase(p, interval)).collect();
    assert_eq!(phases[0], Duration::ZERO);
    assert!(phases.iter().all(|&p| p < interval), "{phases:?}");
    phases.sort();
    // Twelve chains of a 60-s interval: no two within 3 s of each other
    // (the golden ratio's gaps: 3.3, 5.4 and 8.7 s), so their snapshot
    // texts are not held at once.
    for pair in phases.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(3), "{phases:?}");
    }
}

/// Records each commit, and whether the source had been asked to stop
/// (to leave its consumer group) when it was made.
#[derive(Default)]
struct Commits {
    stopping: std::sync::atomic::AtomicBool,
    made: std::sync::Mutex<Vec<(ChainId, i64, bool, bool)>>,
}

struct Recorder(Arc<Commits>);

impl Committer for Recorder {
    fn commit(&self, chain: &ChainId, next_offset: i64, sync: bool) {
        let stopping = self.0.stopping.load(std::sync::atomic::Ordering::SeqCst);
        self.0
            .made
            .lock()
            .unwrap()
            .push((chain.clone(), next_offset, sync, stopping));
    }
}

/// A pipeline on `dir`'s store with the access detectors and no sinks,
/// flushing a chain at `max_rows` messages or when its oldest has waited
/// `max_age`, committing to `commits`.
fn pipeline(
    dir: &std::path::Path,
    commits: &Arc<Commits>,
    max_rows: usize,
    max_age: Duration,
) -> Pipeline {
    let mut config = crate::config::Config::default();
    config.store.path = dir.to_owned();
    config.sinks.clear();
    // The store first: it takes only an empty folder or a store.
    let store = Store::open(dir, StoreOptions::default()).unwrap();
    let alerter = crate::alert::Alerter::start(config.alert_setup(), None).unwrap();
    Pipeline::new(
        Decoder::new(Pseudonymizer::new(&PseudonymKey::demo())),
        store,
        DetectorConfig::access_defaults(),
        alerter,
        None,
        Arc::new(Recorder(commits.clone())),
        FlushPolicy { max_rows, max_age },
    )
}

fn message(chain: &ChainId, offset: i64) -> SourceMessage {
    let json = format!(
        r#"{{"id":"m-{}-{offset}","time":"2026-03-02T08:00:{:02}Z","kind":"access","actor":{{"id":"emp-1"}},"action":"read","patient":"MRN-{offset}"}}"#,
        chain.partition,
        offset % 60
    );
    SourceMessage {
        chain: chain.clone(),
        offset: Some(offset),
        file: None,
        key: None,
        payload: json.into_bytes(),
        arrived: std::time::Instant::now(),
    }
}

/// A Kafka source stops heartbeating as soon as it starts to leave its
/// group, so what a stop commits after that may be refused: every chain's
/// messages are made durable and committed, synchronously, before the
/// source is asked to stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_every_chain_is_committed_before_the_source_is_asked_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    let commits = Arc::new(Commits::default());
    let chains: Vec<ChainId> = (0..3)
        .map(|partition| ChainId {
            stream: "t".into(),
            partition,
        })
        .collect();
    let (tx, rx) = mpsc::channel(64);
    tx.send(SourceEvent::Assigned(chains.clone(), None))
        .await
        .unwrap();
    // 25 messages a chain, flushed every 10 (or 100 ms).
    for offset in 0..25 {
        let batch = chains.iter().map(|c| message(c, offset)).collect();
        tx.send(SourceEvent::Messages(batch)).await.unwrap();
    }
    // The stop comes once every message is stored and committed (by the
    // flushes of 10 and the one of the rest after 100 ms): what the stop
    // commits then is a re-commit, the one that a group whose session has
    // lapsed refuses.
    let shutdown = {
        let commits = commits.clone();
        async move {
            // Bounded, so a pipeline that never commits fails the
            // assertions below instead of hanging the test.
            for _ in 0..1000 {
                if chains_at(&commits.made.lock().unwrap(), 25) == 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let on_stop = {
        let commits = commits.clone();
        let tx = tx.clone();
        move || {
            commits
                .stopping
                .store(true, std::sync::atomic::Ordering::SeqCst);
            tx.try_send(SourceEvent::End).unwrap();
        }
    };
    let summary = pipeline(dir.path(), &commits, 10, Duration::from_millis(100))
        .run(rx, shutdown, on_stop)
        .await
        .unwrap();
    assert_eq!(summary.accepted, 75);
    let made = commits.made.lock().unwrap().clone();
    for chain in &chains {
        assert!(
            made.iter()
                .any(|(c, next, sync, stopping)| c == chain && *next == 25 && *sync && !*stopping),
            "{chain:?}'s end was not committed before the stop: {made:?}"
        );
    }
}

/// How many distinct chains of `made` have a commit at `next` or beyond.
fn chains_at(made: &[(ChainId, i64, bool, bool)], next: i64) -> usize {
    let chains: std::collections::BTreeSet<i32> = made
        .iter()
        .filter(|(_, n, _, _)| *n >= next)
        .map(|(c, _, _, _)| c.partition)
        .collect();
    chains.len()
}

/// An owner that stopped between a flush and its commit leaves the
/// group's offset behind what the store holds; the next owner commits
/// the store's end on assignment, new messages or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_with_history_is_committed_to_its_stored_end_when_assigned() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = store_with_events(dir.path());
    drop(store);
    let commits = Arc::new(Commits::default());
    let (tx, rx) = mpsc::channel(4);
    let (reply, positions) = oneshot::channel();
    tx.send(SourceEvent::Assigned(vec![chain()], Some(reply)))
        .await
        .unwrap();
    tx.send(SourceEvent::End).await.unwrap();
    pipeline(dir.path(), &commits, 100, Duration::from_secs(3600))
        .run(rx, std::future::pending(), || {})
        .await
        .unwrap();
    assert_eq!(positions.await.unwrap(), vec![(chain(), 600)]);
    let made = commits.made.lock().unwrap().clone();
    assert_eq!(
        made.first(),
        Some(&(chain(), 600, false, false)),
        "{made:?}"
    );
}
