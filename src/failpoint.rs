//! Crash points for the crash tests.
//!
//! `CUSTOS_CRASH_AT=<point>:<n>` makes the process abort (no unwinding, no
//! destructors, no buffered output flushed: the same as a SIGKILL) the
//! `n`-th time execution reaches `<point>`. The points sit between the
//! steps of the write protocol (`docs/ledger-format.md`, section on
//! crashes), so a test can crash between any two of them on purpose
//! instead of hoping a random SIGKILL lands there. Without the variable a
//! point costs one load of an initialized `OnceLock`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// Every crash point of a flush, in protocol order.
pub const POINTS: &[&str] = &[
    "segment.written",
    "segment.renamed",
    "tree.written",
    "manifest.torn",
    "manifest.written",
    "snapshot.written",
    "checkpoint.written",
    "commit.before",
    "commit.after",
];

/// The crash points of an erasure or pruning (`custos erase`, `custos
/// prune`, retention in the pipeline), in protocol order.
pub const AMEND_POINTS: &[&str] = &["erase.written", "amend.written"];

/// The crash point of the alert stage: incident revisions recorded in the
/// ledger, not yet in the outbox.
pub const ALERT_POINTS: &[&str] = &["incidents.recorded"];

struct Armed {
    point: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var("CUSTOS_CRASH_AT").ok()?;
            let (point, at) = spec.split_once(':').unwrap_or((spec.as_str(), "1"));
            let at = at.parse().ok().filter(|&n| n > 0)?;
            let known = POINTS.contains(&point)
                || AMEND_POINTS.contains(&point)
                || ALERT_POINTS.contains(&point);
            known.then(|| Armed {
                point: point.to_owned(),
                at,
                hits: AtomicU64::new(0),
            })
        })
        .as_ref()
}

/// Whether this hit of `point` is the one to crash at.
pub fn due(point: &'static str) -> bool {
    armed().is_some_and(|a| a.point == point && a.hits.fetch_add(1, Ordering::SeqCst) + 1 == a.at)
}

/// Aborts the process if this hit of `point` is the armed one.
pub fn hit(point: &'static str) {
    if due(point) {
        crash(point);
    }
}

/// Aborts now (after one line on stderr, unbuffered).
pub fn crash(point: &str) -> ! {
    eprintln!("custos: crash point `{point}` reached (CUSTOS_CRASH_AT)");
    std::process::abort()
}
