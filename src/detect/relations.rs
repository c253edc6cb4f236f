//! Treatment relationships learned from the stream: which actors and which
//! departments have treated which patients, and which patients the
//! hospital has seen at all.
//!
//! A relationship is learned from a successful access for treatment
//! (purpose `TREAT`, `ETREAT` or none): the actor, and the actor's
//! department, then have it. Secondary uses (billing, research, …) do not
//! create one. The care-team table, when loaded, is consulted as well (see
//! [`Relations::classify`]).
//!
//! Each chain learns from its own partition's events; a department's
//! relationships learned in another partition are not seen here, which is
//! why the care-team table (shared by all) is the better source when a
//! hospital has one.
//!
//! Bounded: at most `MAX_PAIRS` actor/department–patient pairs and
//! `MAX_PATIENTS` patients per chain, the least recently used forgotten.

use super::memory::{RecentSet, key_hash};
use super::reference::Reference;
use crate::event::{Body, Event};

const MAX_PAIRS: usize = 1_000_000;
const MAX_PATIENTS: usize = 500_000;

/// How an event's actor stands to its patient, just before the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The event is about no patient (or is not an access).
    NoPatient,
    /// On the care team, or treated by the actor or the actor's department
    /// before.
    Treating,
    /// Known to the hospital (treated by others, or under someone else's
    /// care), but not by this actor or department.
    Unrelated,
    /// Never seen before, and not on any care team: a new patient.
    FirstSeen,
}

pub struct Relations {
    pairs: RecentSet,
    patients: RecentSet,
}

impl Default for Relations {
    fn default() -> Self {
        Relations {
            pairs: RecentSet::new(MAX_PAIRS),
            patients: RecentSet::new(MAX_PATIENTS),
        }
    }
}

fn pair(side: &str, who: &str, patient: &str) -> u64 {
    key_hash(&[side, who, patient])
}

impl Relations {
    pub fn classify(
        &self,
        event: &Event,
        dept: Option<&str>,
        reference: &Reference,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Relation {
        let (Body::Access(_), Some(patient)) = (&event.body, event.patient()) else {
            return Relation::NoPatient;
        };
        let actor = event.actor.id.as_str();
        if reference.on_care_team(patient, actor, dept, at)
            || self.pairs.contains(pair("a", actor, patient))
            || dept.is_some_and(|d| self.pairs.contains(pair("d", d, patient)))
        {
            return Relation::Treating;
        }
        if self.patients.contains(key_hash(&[patient])) || reference.has_care(patient) {
            Relation::Unrelated
        } else {
            Relation::FirstSeen
        }
    }

    /// Learns from `event` (after the detectors have seen it).
    pub fn learn(&mut self, event: &Event, dept: Option<&str>) {
        let Body::Access(a) = &event.body else { return };
        let Some(patient) = a.patient.as_deref() else {
            return;
        };
        self.patients.insert(key_hash(&[patient]));
        let treating = matches!(a.purpose.as_deref(), None | Some("TREAT" | "ETREAT"));
        if a.outcome != "success" || !treating {
            return;
        }
        self.pairs.insert(pair("a", &event.actor.id, patient));
        if let Some(d) = dept {
            self.pairs.insert(pair("d", d, patient));
        }
    }

    pub fn keys(&self) -> usize {
        self.pairs.len() + self.patients.len()
    }

    pub fn forgotten(&self) -> u64 {
        self.pairs.forgotten() + self.patients.forgotten()
    }

    pub fn save(&self) -> serde_json::Value {
        serde_json::json!({ "pairs": self.pairs.save(), "patients": self.patients.save() })
    }

    pub fn load(&mut self, state: serde_json::Value) -> Result<(), String> {
        let serde_json::Value::Object(mut m) = state else {
            return Err("the saved relations are not an object".into());
        };
        let mut fresh = Relations::default();
        fresh
            .pairs
            .load(m.remove("pairs").unwrap_or_default())
            .map_err(|e| format!("relations: {e}"))?;
        fresh
            .patients
            .load(m.remove("patients").unwrap_or_default())
            .map_err(|e| format!("relations: {e}"))?;
        *self = fresh;
        Ok(())
    }
}
