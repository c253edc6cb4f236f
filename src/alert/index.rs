//! The latest durable revision of recent incidents, for the HTTP API
//! (`/v1/incidents`, `/v1/incidents/{id}`: where alerts' links point).
//!
//! Process-wide, like the metrics: the outbox writer updates it after each
//! append (so it shows only revisions on disk) and the HTTP server reads
//! it. Open incidents are always held; at most [`KEEP_RESOLVED`] resolved
//! ones are kept, the oldest forgotten first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use super::incident::{Incident, State};

/// Resolved incidents kept for lookups.
pub const KEEP_RESOLVED: usize = 10_000;

#[derive(Default)]
struct Inner {
    latest: HashMap<String, Incident>,
    resolved: VecDeque<String>,
}

#[derive(Default)]
pub struct IncidentIndex {
    inner: Mutex<Inner>,
}

pub fn incident_index() -> &'static IncidentIndex {
    static INDEX: OnceLock<IncidentIndex> = OnceLock::new();
    INDEX.get_or_init(IncidentIndex::default)
}

impl IncidentIndex {
    pub fn record<'a>(&self, revisions: impl IntoIterator<Item = &'a Incident>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for r in revisions {
            if inner
                .latest
                .get(&r.id)
                .is_some_and(|held| held.revision > r.revision)
            {
                continue;
            }
            if r.state == State::Resolved {
                inner.resolved.push_back(r.id.clone());
                while inner.resolved.len() > KEEP_RESOLVED {
                    if let Some(old) = inner.resolved.pop_front() {
                        inner.latest.remove(&old);
                    }
                }
            }
            inner.latest.insert(r.id.clone(), r.clone());
        }
    }

    pub fn get(&self, id: &str) -> Option<Incident> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.latest.get(id).cloned()
    }

    /// The open incidents, most severe and most recent first.
    pub fn open(&self) -> Vec<Incident> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut open: Vec<Incident> = inner
            .latest
            .values()
            .filter(|i| i.state != State::Resolved)
            .cloned()
            .collect();
        open.sort_by(|a, b| {
            (b.severity, b.last_seen, &b.id).cmp(&(a.severity, a.last_seen, &a.id))
        });
        open
    }
}
