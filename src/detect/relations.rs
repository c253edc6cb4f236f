//! Treatment relationships learned from the stream: which actors and which
//! departments have treated which patients, and which patients the
//! hospital has seen at all.
//!
//! A relationship is learned from a successful access for treatment
//! (purpose `TREAT`, `ETREAT` or none): the actor, and the actor's
//! department, then have it. Secondary uses (billing, research, …) do not
//! create one, and neither does a read of a patient the hospital knows but
//! the actor and their department do not treat (an `Unrelated` read): only
//! care written for the patient (`create`, `update`) starts a relationship
//! there. A department's relationship lapses [`DEPT_EPISODE_SECS`] after
//! it last treated the patient; an actor's own does not. The care-team
//! table, when loaded, is consulted as well (see [`Relations::classify`]).
//!
//! Orders are relationships too: ancillary departments (imaging, pharmacy,
//! the lab) and consultants serve orders from the treating team. An order
//! is a successful `create` for treatment that names the department asked
//! to perform it in `attrs.performer_dept` ([`PERFORMER_ATTR`]); when its
//! author has a treatment relationship to the patient (not a consult of a
//! colleague, not a stranger: an order cannot open a chart its author
//! could not), the performing department has one, as if two of its
//! members had treated the patient then (it lapses like any department's).
//!
//! Each chain learns from its own partition's events; a department's
//! relationships learned in another partition are not seen here, which is
//! why the care-team table (shared by all) is the better source when a
//! hospital has one.
//!
//! Bounded: at most `MAX_PAIRS` actor/department–patient pairs and
//! `MAX_PATIENTS` patients per chain, the least recently used forgotten.

use crate::ledger::StateWriter;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::memory::{Keys, Map, RecentSet, RecentStamps, key_hash, mix};
use super::reference::Reference;
use crate::event::{Body, Event};

const MAX_PAIRS: usize = 1_000_000;

/// How long a department's relationship with a patient lasts after the
/// department last treated them: an episode of care and its aftermath
/// (results, letters, a handover), not every later visit of the patient
/// to anyone in it. An emergency department sees most of a city's patients
/// in time; the ones it treated last month are not its patients today.
/// An actor's own relationship does not lapse (one's own patients stay
/// one's own), within the bound on pairs.
pub const DEPT_EPISODE_SECS: i64 = 7 * 86_400;

/// The `attrs` key of an order event naming the department asked to
/// perform it (FHIR `ServiceRequest.performerType`, as a department name
/// like `actor.dept`).
pub const PERFORMER_ATTR: &str = "performer_dept";
const MAX_PATIENTS: usize = 500_000;

/// Actions that record care for a patient (a note, an order, a result),
/// as opposed to reading what is there.
const WRITES: [&str; 2] = ["create", "update"];

/// How an event's actor stands to its patient, just before the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// The event is about no patient (or is not an access).
    NoPatient,
    /// On the care team, or treated by the actor before, or by the actor's
    /// department (at least two of its members) within
    /// [`DEPT_EPISODE_SECS`].
    Treating,
    /// Treated within [`DEPT_EPISODE_SECS`] by one other member of the
    /// actor's department only (a consult, say), not by the actor, and on
    /// no care team of theirs:
    /// close enough for routine work, not a relationship to a flagged
    /// patient.
    Consulted,
    /// Known to the hospital (treated by others, by the department in an
    /// earlier episode, or under someone else's care), but not by this
    /// actor or department now.
    Unrelated,
    /// Never seen before, and not on any care team: a new patient.
    FirstSeen,
}

/// Salt of the derived key that marks a department's relationship as
/// confirmed by a second member.
const SHARED: u64 = 0x5348_4152_4544_0001;

#[derive(Clone)]
pub struct Relations {
    /// Actor–patient and department–patient pairs, with when the actor or
    /// department last treated the patient.
    pairs: RecentStamps,
    patients: RecentSet,
    purposes: Purposes,
}

impl Default for Relations {
    fn default() -> Self {
        Relations {
            pairs: RecentStamps::new(MAX_PAIRS),
            patients: RecentSet::new(MAX_PATIENTS),
            purposes: Purposes::default(),
        }
    }
}

/// Whether a purpose of use is treatment (which needs a treatment
/// relationship) rather than a job function such as billing or research.
pub fn is_treatment(purpose: Option<&str>) -> bool {
    matches!(purpose, None | Some("TREAT" | "ETREAT"))
}

/// The purposes of use an actor, and their peer group, work under: a
/// billing clerk reads charts for `HPAYMT` all day, a researcher for
/// `HRESCH`. Counts are halved whenever a key's total reaches 1,000, so
/// the habit follows the recent past. At most `MAX_HABITS` keys; the least
/// recently seen tenth is dropped when full.
#[derive(Default, Clone)]
struct Purposes {
    map: Map<u64, Habit>,
    forgotten: u64,
}

const MAX_HABITS: usize = 400_000;
/// Events of a key's history before its habit counts, and the share of
/// them a purpose needs to be routine.
const HABIT_MIN_EVENTS: f32 = 30.0;
const HABIT_MIN_SHARE: f32 = 0.2;
/// Uses of a purpose in a key's remembered history (at most 1,000 events,
/// recent ones weighing more) that make it a regular part of the work,
/// if not the main part: a registrar's few bed-management reads a shift.
const HABIT_REGULAR_USES: f32 = 5.0;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Habit {
    total: f32,
    /// (purpose, count), at most 8 purposes.
    counts: Vec<(String, f32)>,
    last: i64,
}

impl Purposes {
    fn learn(&mut self, key: u64, purpose: &str, secs: i64) {
        if !self.map.contains_key(&key) && self.map.len() >= MAX_HABITS {
            let mut order: Vec<(i64, u64)> = self.map.iter().map(|(k, h)| (h.last, *k)).collect();
            let n = order.len() / 10 + 1;
            order.select_nth_unstable(n - 1);
            for (_, k) in &order[..n] {
                self.map.remove(k);
            }
            self.forgotten += n as u64;
        }
        let h = self.map.entry(key).or_default();
        h.last = secs;
        h.total += 1.0;
        match h.counts.iter().position(|(p, _)| p == purpose) {
            Some(i) => h.counts[i].1 += 1.0,
            None if h.counts.len() < 8 => h.counts.push((purpose.to_owned(), 1.0)),
            None => {}
        }
        if h.total >= 1000.0 {
            h.total /= 2.0;
            for (_, c) in &mut h.counts {
                *c /= 2.0;
            }
        }
    }

    fn regular(&self, key: u64, purpose: &str) -> bool {
        self.map.get(&key).is_some_and(|h| {
            h.counts
                .iter()
                .any(|(p, c)| p == purpose && *c >= HABIT_REGULAR_USES)
        })
    }

    fn routine(&self, key: u64, purpose: &str) -> bool {
        self.map.get(&key).is_some_and(|h| {
            h.total >= HABIT_MIN_EVENTS
                && h.counts
                    .iter()
                    .any(|(p, c)| p == purpose && *c >= HABIT_MIN_SHARE * h.total)
        })
    }
}

impl Relations {
    ///
    /// The flag says whether the relationship is the actor's own: they
    /// treated the patient before, or a care-team row names them (not
    /// only their department). It implies [`Relation::Treating`].
    pub fn classify(
        &self,
        event: &Event,
        keys: &Keys,
        dept: Option<&str>,
        reference: &Reference,
        at: chrono::DateTime<chrono::Utc>,
    ) -> (Relation, bool) {
        let (Body::Access(_), Some(patient), Some(p)) =
            (&event.body, event.patient(), keys.patient)
        else {
            return (Relation::NoPatient, false);
        };
        let now = at.timestamp();
        let dept_has = |key: u64| self.pairs.seen_since(key, now, DEPT_EPISODE_SECS);
        if self.pairs.get(mix(keys.actor, p)).is_some() {
            return (Relation::Treating, true);
        }
        let care = reference.care_cover(patient, &event.actor.id, dept, at);
        if care.is_some() || keys.dept.is_some_and(|d| dept_has(mix(d ^ SHARED, p))) {
            return (Relation::Treating, care == Some(true));
        }
        let relation = if keys.dept.is_some_and(|d| dept_has(mix(d, p))) {
            Relation::Consulted
        } else if self.patients.contains(p) || reference.has_care(patient) {
            Relation::Unrelated
        } else {
            Relation::FirstSeen
        };
        (relation, false)
    }

    /// Whether the event's purpose of use is a job function (not
    /// treatment) that the actor, or their peer group, routinely works
    /// under.
    pub fn routine_purpose(&self, event: &Event, keys: &Keys) -> bool {
        self.purpose_habit(event, keys, Purposes::routine)
    }

    /// Whether the event's purpose of use is a job function (not
    /// treatment) that the actor, or their peer group, works under
    /// regularly — a few times a shift — if not routinely.
    pub fn regular_purpose(&self, event: &Event, keys: &Keys) -> bool {
        self.purpose_habit(event, keys, Purposes::regular)
    }

    /// `habit` of the actor's or the peer group's history holds for the
    /// event's purpose of use, when it is not treatment.
    fn purpose_habit(
        &self,
        event: &Event,
        keys: &Keys,
        habit: fn(&Purposes, u64, &str) -> bool,
    ) -> bool {
        let Some(purpose) = event.purpose().filter(|p| !is_treatment(Some(p))) else {
            return false;
        };
        habit(&self.purposes, keys.actor, purpose)
            || keys
                .group
                .is_some_and(|g| habit(&self.purposes, g, purpose))
    }

    /// Learns from `event` (after the detectors have seen it), which
    /// [`Relations::classify`] placed in `relation`.
    pub fn learn(&mut self, event: &Event, keys: &Keys, relation: Relation) {
        let Body::Access(a) = &event.body else { return };
        let secs = event.time.timestamp();
        let purpose = a.purpose.as_deref().unwrap_or("");
        self.purposes.learn(keys.actor, purpose, secs);
        if let Some(g) = keys.group {
            self.purposes.learn(g, purpose, secs);
        }
        let Some(p) = keys.patient else {
            return;
        };
        self.patients.insert(p);
        if a.outcome != "success" || !is_treatment(a.purpose.as_deref()) {
            return;
        }
        if relation == Relation::Treating
            && a.action == "create"
            && let Some(to) = event
                .attrs
                .get(PERFORMER_ATTR)
                .map(|d| d.trim())
                .filter(|d| !d.is_empty())
        {
            let d = key_hash(&["d", to]);
            self.pairs.insert(mix(d, p), secs);
            self.pairs.insert(mix(d ^ SHARED, p), secs);
        }
        // Reading the chart of a patient the hospital knows but neither the
        // actor nor their department treats is what curiosity looks like
        // from the outside; it teaches no relationship, or the snooper's
        // first look would explain the next one, and a colleague's. Care
        // does: a note, an order or a result written for the patient, the
        // first contact with a new patient, work within a relationship.
        if relation == Relation::Unrelated && !WRITES.contains(&a.action.as_str()) {
            return;
        }
        let before = self.pairs.insert(mix(keys.actor, p), secs);
        if let Some(d) = keys.dept {
            // A second member treating the patient in the department's
            // current episode makes it the department's patient; while it
            // is, every member's care carries the episode on.
            let shared = mix(d ^ SHARED, p);
            let new_member = before.is_none_or(|t| t < secs.saturating_sub(DEPT_EPISODE_SECS));
            if self.pairs.seen_since(shared, secs, DEPT_EPISODE_SECS)
                || new_member && self.pairs.seen_since(mix(d, p), secs, DEPT_EPISODE_SECS)
            {
                self.pairs.insert(shared, secs);
            }
            self.pairs.insert(mix(d, p), secs);
        }
    }

    pub fn keys(&self) -> usize {
        self.pairs.len() + self.patients.len() + self.purposes.map.len()
    }

    pub fn forgotten(&self) -> u64 {
        self.pairs.forgotten() + self.patients.forgotten() + self.purposes.forgotten
    }

    pub fn save(&self) -> Vec<u8> {
        let habits: std::collections::BTreeMap<String, &Habit> = self
            .purposes
            .map
            .iter()
            .map(|(k, h)| (k.to_string(), h))
            .collect();
        let purposes = StateWriter::new()
            .field("forgotten", &self.purposes.forgotten)
            .field("habits", &habits)
            .finish();
        StateWriter::new()
            .raw("pairs", &self.pairs.save())
            .raw("patients", &self.patients.save())
            .raw("purposes", &purposes)
            .finish()
    }

    pub fn load(&mut self, state: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct SavedPurposes {
            habits: std::collections::HashMap<u64, Habit>,
            forgotten: u64,
        }
        #[derive(Deserialize)]
        struct Saved<'a> {
            #[serde(borrow)]
            pairs: Option<&'a RawValue>,
            #[serde(borrow)]
            patients: Option<&'a RawValue>,
            purposes: Option<SavedPurposes>,
        }
        let m: Saved<'_> = serde_json::from_slice(state)
            .map_err(|e| format!("the saved relations do not parse: {e}"))?;
        let mut fresh = Relations::default();
        fresh
            .pairs
            .load(raw_text(m.pairs))
            .map_err(|e| format!("relations: {e}"))?;
        fresh
            .patients
            .load(raw_text(m.patients))
            .map_err(|e| format!("relations: {e}"))?;
        let saved = m
            .purposes
            .ok_or_else(|| "relations: no purposes".to_owned())?;
        fresh.purposes.map.extend(saved.habits);
        fresh.purposes.forgotten = saved.forgotten;
        *self = fresh;
        Ok(())
    }
}

/// A saved member's JSON text (`null` when it is missing, which its
/// reader refuses).
fn raw_text(member: Option<&RawValue>) -> &[u8] {
    member.map_or(b"null", |r| r.get().as_bytes())
}
