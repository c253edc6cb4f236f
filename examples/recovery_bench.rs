//! Recovery at start, for `docs/performance.md`: how long a process takes
//! to open every chain of a store after a crash, repairs included, with its
//! detector state restored and its event-id window rebuilt, i.e. what
//! `custos run` does for each partition it is assigned before it consumes.
//!
//! ```text
//! cargo build --release --example ledger_bench --example recovery_bench
//! target/release/examples/ledger_bench verify --events 10000000 --store /tmp/bench-store
//! target/release/examples/recovery_bench /tmp/bench-store [ROUNDS]
//! ```
//!
//! Each round damages every chain as a crash in the middle of a flush
//! leaves it (half a manifest line, an orphan `.parquet.tmp`, a segment no
//! manifest line names, tree strata ahead of the manifest) and writes a
//! detector snapshot one segment behind the end (so the newest segment is
//! replayed, as after a crash between snapshots), then times
//! `pipeline::open_chains` over all chains (as an assignment does). A last round times the same
//! without snapshots (replay bounded by `store.replay_max_events`).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};

use custos::detect::{DetectorConfig, DetectorSetup};
use custos::ledger::{ChainId, SNAPSHOT_VERSION, Snapshot, Store, Table};
use custos::pipeline::{Continuity, open_chains};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let root = Path::new(args.get(1).map_or("/tmp/bench-store", String::as_str)).to_path_buf();
    let rounds: usize = match args.get(2) {
        Some(r) => r
            .parse()
            .with_context(|| format!("ROUNDS {r:?} is not a number"))?,
        None => 3,
    };
    let store = Store::open_existing(&root)
        .with_context(|| format!("cannot open the store {}", root.display()))?;
    let chains = store.chains()?;
    let configs = DetectorSetup::new(vec![DetectorConfig::default()]);
    let sketcher = custos::event::Decoder::new(custos::event::Pseudonymizer::new(
        &custos::event::PseudonymKey::demo(),
    ))
    .sketcher();
    let mut events = 0u64;
    for chain in &chains {
        events += store.tree_size(chain, Table::Events)?;
    }
    println!(
        "store {}: {} chains, {events} events",
        root.display(),
        chains.len()
    );
    for round in 1..=rounds + 1 {
        let with_snapshots = round <= rounds;
        for chain in &chains {
            damage(&store, chain)?;
            let snapshot = root.join(format!(
                "snapshots/{}/{}.json",
                chain.stream, chain.partition
            ));
            if with_snapshots {
                snapshot_one_segment_behind(&store, chain, &configs)?;
            } else {
                let _ = std::fs::remove_file(&snapshot);
            }
        }
        let started = Instant::now();
        for opened in open_chains(&store, &chains, &configs, &sketcher, Continuity::default()) {
            opened.context("a chain did not recover")?;
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "round {round} ({}): all chains opened in {secs:.3} s",
            if with_snapshots {
                "snapshot one segment behind"
            } else {
                "no snapshot, replay bounded by replay_max_events"
            }
        );
    }
    Ok(())
}

/// Leaves a chain as a crash in the middle of a flush does.
fn damage(store: &Store, chain: &ChainId) -> Result<()> {
    let root = store.root();
    let lines = store.manifest(chain)?;
    let last = lines
        .last()
        .with_context(|| format!("chain {chain} is empty"))?;
    let next = last.first_seq + last.rows;
    let seg_dir = root.join(format!("events/{}/{}", chain.stream, chain.partition));
    // A segment written and renamed, a later one still temporary.
    std::fs::copy(
        root.join(&last.file),
        seg_dir.join(format!("{next:020}.parquet")),
    )
    .context("copy a segment")?;
    std::fs::write(
        seg_dir.join(format!("{:020}.parquet.tmp", next + 1)),
        b"partial",
    )
    .context("write a temporary segment")?;
    // Tree strata appended, manifest line torn.
    let mut stratum = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join(format!(
            "tree/events/{}/{}/0.hashes",
            chain.stream, chain.partition
        )))
        .context("open stratum 0")?;
    stratum
        .write_all(&[7u8; 32 * 100])
        .context("extend stratum 0")?;
    let mut manifest = std::fs::OpenOptions::new()
        .append(true)
        .open(root.join(format!(
            "manifests/{}/{}.jsonl",
            chain.stream, chain.partition
        )))
        .context("open the manifest")?;
    manifest
        .write_all(br#"{"table":"events","file":"events/x","first_seq":"#)
        .context("tear the manifest")?;
    Ok(())
}

/// A snapshot as of the chain's second-to-last segment.
fn snapshot_one_segment_behind(
    store: &Store,
    chain: &ChainId,
    configs: &DetectorSetup,
) -> Result<()> {
    let lines = store.manifest(chain)?;
    let last = lines
        .last()
        .with_context(|| format!("chain {chain} is empty"))?;
    store
        .write_snapshot_text(
            chain,
            &Snapshot {
                v: SNAPSHOT_VERSION,
                next_offset: last.first_offset,
                events: last.first_seq,
                written: chrono::Utc::now(),
            },
            &configs.build().save(),
        )
        .context("write a snapshot")
}
