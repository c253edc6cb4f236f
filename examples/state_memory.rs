//! Detector state memory at many distinct actors, without Kafka or the
//! ledger: the synthetic workload of `e2e_bench` (same seed and event
//! time) is generated, decoded and fed, event by event, to the detectors
//! of `--chains` chains (6, like `e2e_bench`'s partitions; actors spread
//! by their message key), and the growth of the process's resident memory is reported,
//! for the default set and for each detector alone (the learned
//! relationships are in every set; `relations` is them alone).
//!
//! ```text
//! cargo build --release --example state_memory
//! target/release/examples/state_memory --events 2000000 --actors 1000000
//! ```
//!
//! The allocator is custos's (mimalloc), so the figures are what the
//! service would hold. Each set is measured in a child process of its own
//! (`--only NAME`), so what one set freed does not hide what the next
//! takes.

use std::process::Command;
use std::time::Instant;

use custos::detect::{DetectorConfig, DetectorSetup};
use custos::event::{Decoder, PseudonymKey, Pseudonymizer};
use custos::source::synth::{Workload, WorkloadConfig};

// (The binary's allocator, as the `custos` binary has it.)
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    events: u64,
    actors: usize,
    event_rate: u64,
    chains: usize,
    only: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        events: 2_000_000,
        actors: 1_000_000,
        event_rate: 50_000,
        chains: 6,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--events" => a.events = value().parse().expect("--events N"),
            "--actors" => a.actors = value().parse().expect("--actors N"),
            "--event-rate" => a.event_rate = value().parse().expect("--event-rate N"),
            "--chains" => a.chains = value().parse().expect("--chains N"),
            "--only" => a.only = Some(value()),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// Resident memory of this process in bytes (`VmRSS`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS in /proc/self/status")
        * 1024
}

/// The sets measured: every default detector together, then each alone,
/// then the relationships alone.
fn sets() -> Vec<(String, Vec<DetectorConfig>)> {
    let mut sets = vec![("all".to_owned(), DetectorConfig::access_defaults())];
    for c in DetectorConfig::access_defaults() {
        sets.push((c.build().name().to_owned(), vec![c]));
    }
    sets.push(("relations".to_owned(), Vec::new()));
    sets
}

/// Feeds the workload to `configs` and prints the memory it took.
fn measure(a: &Args, name: &str, configs: Vec<DetectorConfig>) {
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
    let mut workload = Workload::new(WorkloadConfig {
        seed: 11,
        clinicians: a.actors,
        ..WorkloadConfig::default()
    });
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T06:00:00Z")
        .expect("a time")
        .to_utc();
    let setup = DetectorSetup::new(configs);
    let mut chains: Vec<_> = (0..a.chains.max(1)).map(|_| setup.build()).collect();
    let before = rss();
    let began = Instant::now();
    let (mut fed, mut findings) = (0u64, 0usize);
    for i in 0..a.events {
        let t = start + chrono::Duration::microseconds((i * 1_000_000 / a.event_rate) as i64);
        let m = workload.next_message(t);
        if let Ok(event) = decoder.decode(&m.payload) {
            // By the message key, as Kafka's partitioner spreads actors.
            let mut h = std::hash::DefaultHasher::new();
            std::hash::Hash::hash(&m.key, &mut h);
            let chain = std::hash::Hasher::finish(&h) as usize % chains.len();
            findings += chains[chain].observe(&event).count();
            fed += 1;
        }
    }
    let secs = began.elapsed().as_secs_f64();
    let grown = rss().saturating_sub(before);
    // What a flush's snapshot costs the loop: the copy of a chain's state
    // (`Detectors::snapshot`), the slowest chain's, at the first copy and
    // (the fastest of three more) once the allocator has memory to reuse.
    let (mut first_ms, mut copy_ms) = (0.0f64, 0.0f64);
    for d in &chains {
        let mut times = (0..4).map(|_| {
            let t = Instant::now();
            let copy = d.snapshot();
            let ms = t.elapsed().as_secs_f64() * 1e3;
            drop(copy);
            ms
        });
        first_ms = first_ms.max(times.next().unwrap_or_default());
        copy_ms = copy_ms.max(times.fold(f64::MAX, f64::min));
    }
    let keys: usize = chains
        .iter_mut()
        .map(|d| d.report().iter().map(|(_, k)| *k).max().unwrap_or(0))
        .sum();
    println!(
        "{name:>16}: {:>8.1} MB, {:>7.0} B per actor, keys held {keys:>9} (largest detector, over chains), {fed} events, {findings} findings, {secs:.1} s, snapshot copy {first_ms:.1} ms first, {copy_ms:.1} ms after (slowest chain)",
        grown as f64 / 1e6,
        grown as f64 / a.actors as f64,
    );
    drop(chains);
}

fn main() {
    let a = args();
    if let Some(name) = &a.only {
        let configs = sets()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no set {name}"))
            .1;
        measure(&a, name, configs);
        return;
    }
    println!(
        "detector state: {} events, {} actors, {} events/s of event time (resident memory grown while feeding)",
        a.events, a.actors, a.event_rate
    );
    let me = std::env::current_exe().expect("this program's path");
    for (name, _) in sets() {
        let status = Command::new(&me)
            .args(["--events", &a.events.to_string()])
            .args(["--actors", &a.actors.to_string()])
            .args(["--event-rate", &a.event_rate.to_string()])
            .args(["--chains", &a.chains.to_string()])
            .args(["--only", &name])
            .status()
            .expect("the measuring child starts");
        assert!(status.success(), "{name}: {status}");
    }
}
