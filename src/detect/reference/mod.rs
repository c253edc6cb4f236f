//! Reference tables: what the hospital knows besides the event stream.
//!
//! - `vip`: flagged patients (VIPs, restricted records, employees as
//!   patients), with a category;
//! - `roster`: the workforce (actor, role, department, hire and
//!   termination times, and the staff member's own patient record if the
//!   hospital has one);
//! - `care_team`: who is assigned to treat whom (an actor or a whole
//!   department, optionally within a time range);
//! - `consent`: patients' consent decisions per purpose of use, in time;
//! - `export_allow`: destinations exports may go to;
//! - `links`: personal ties between staff and patients (family, household,
//!   neighbour, …), as the hospital's identity matching finds them.
//!
//! A [`Reference`] is one immutable snapshot of all six; detectors read it
//! through an `Arc` and never see a half-loaded table. Patient identifiers
//! in it are pseudonyms, made by the same [`crate::event::Pseudonymizer`]
//! as the events' (the files hold raw identifiers; they are pseudonymized
//! on load and the raw values are dropped).
//!
//! Every lookup is answered "as of" an event time, so a replayed or late
//! event is judged by the roster and consents in force when it happened.
//!
//! The tables come from files ([`load()`], CSV or Parquet), are kept
//! current by a [`ReferenceWatch`], and are offered to SQL as `ref_*`
//! tables ([`tables()`]).

mod file;
pub mod load;
pub mod tables;
pub mod watch;

pub use load::{ReferenceConfig, ReferenceError, RowProblem, TABLES, load};
pub use tables::tables;
pub use watch::ReferenceWatch;

use super::memory::Map;

use chrono::{DateTime, Utc};

/// One member of the workforce.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Staff {
    pub role: Option<String>,
    pub dept: Option<String>,
    pub hired: Option<DateTime<Utc>>,
    pub terminated: Option<DateTime<Utc>>,
    /// The staff member's own patient record (a pseudonym), when they are
    /// a patient of the hospital too.
    pub patient: Option<String>,
}

/// How an actor is tied to a patient outside of work
/// ([`Reference::tie`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tie<'a> {
    /// The patient is the actor: their own record (roster `patient`).
    Own,
    /// A row of the links table: the relation as written there (`family`,
    /// `household`, `neighbour`, …).
    Linked(&'a str),
    /// The patient is another member of the actor's department (roster
    /// `patient` and `dept`): someone they work with. Staff of other
    /// departments are strangers to most (in a large hospital, thousands
    /// of staff are patients too); flag them in the VIP table (category
    /// `employee`) to watch every employee's record.
    Coworker,
}

/// One care-team assignment: an actor, or every member of a department,
/// treats the patient from `start` (or always) until `end` (or for good).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CareAssignment {
    pub actor: Option<String>,
    pub dept: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

impl CareAssignment {
    fn covers(&self, actor: &str, dept: Option<&str>, at: DateTime<Utc>) -> bool {
        let who = match (&self.actor, &self.dept) {
            (Some(a), _) if a == actor => true,
            (None, Some(d)) => dept == Some(d.as_str()),
            _ => false,
        };
        who && self.start.is_none_or(|s| s <= at) && self.end.is_none_or(|e| at < e)
    }
}

/// A patient's consent decision for one purpose of use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    Granted,
    Withdrawn,
}

impl ConsentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentStatus::Granted => "granted",
            ConsentStatus::Withdrawn => "withdrawn",
        }
    }
}

/// What the consent table says about a patient and purpose at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// The newest decision at that time is a grant.
    Granted,
    /// The newest decision at that time is a withdrawal.
    Withdrawn,
    /// No decision recorded for that patient and purpose before that time.
    Absent,
}

/// One patient's decisions for one purpose, oldest first.
type Decisions = Vec<(DateTime<Utc>, ConsentStatus)>;

/// One snapshot of every reference table. Empty tables answer as if the
/// table were not configured; `has_*` tells the two apart where a detector
/// must (a missing consent table is not a missing consent).
#[derive(Debug, Clone, Default)]
pub struct Reference {
    vip: Map<String, String>,
    roster: Map<String, Staff>,
    care: Map<String, Vec<CareAssignment>>,
    /// (patient, purpose) → decisions sorted by time.
    consent: Map<(String, String), Decisions>,
    /// Exact destinations, and prefixes (entries that ended in `*`).
    allow_exact: std::collections::HashSet<String>,
    allow_prefix: Vec<String>,
    /// Patient → the staff members whose own record it is (roster
    /// `patient`): one, unless the roster names it twice.
    employees: Map<String, Vec<String>>,
    /// Patient → (actor, relation) rows of the links table.
    links: Map<String, Vec<(String, String)>>,
    loaded: Loaded,
}

/// Which tables were configured and loaded (even if empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loaded {
    pub vip: bool,
    pub roster: bool,
    pub care_team: bool,
    pub consent: bool,
    pub export_allow: bool,
    pub links: bool,
}

impl Reference {
    /// Which tables are configured.
    pub fn loaded(&self) -> Loaded {
        self.loaded
    }

    pub fn mark_loaded(&mut self, loaded: Loaded) {
        self.loaded = loaded;
    }

    // ---- building (the loader and tests) ----

    pub fn add_vip(&mut self, patient: String, category: String) {
        self.vip.insert(patient, category);
    }

    /// A staff member's record; replaces an earlier one of the same actor
    /// (and the own-record entry that came with it). A patient record the
    /// roster gives to two actors is each one's own: the answer does not
    /// depend on the rows' order.
    pub fn add_staff(&mut self, actor: String, staff: Staff) {
        if let Some(old) = self.roster.get(&actor).and_then(|s| s.patient.as_ref())
            && let Some(owners) = self.employees.get_mut(old)
        {
            owners.retain(|a| *a != actor);
            if owners.is_empty() {
                self.employees.remove(old);
            }
        }
        if let Some(patient) = &staff.patient {
            self.employees
                .entry(patient.clone())
                .or_default()
                .push(actor.clone());
        }
        self.roster.insert(actor, staff);
    }

    /// A personal tie of `actor` to `patient`; replaces an earlier row of
    /// the same pair.
    pub fn add_link(&mut self, actor: String, patient: String, relation: String) {
        let rows = self.links.entry(patient).or_default();
        match rows.iter_mut().find(|(a, _)| *a == actor) {
            Some(row) => row.1 = relation,
            None => rows.push((actor, relation)),
        }
    }

    pub fn add_care(&mut self, patient: String, assignment: CareAssignment) {
        self.care.entry(patient).or_default().push(assignment);
    }

    pub fn add_consent(
        &mut self,
        patient: String,
        purpose: String,
        at: DateTime<Utc>,
        status: ConsentStatus,
    ) {
        let list = self.consent.entry((patient, purpose)).or_default();
        let i = list.partition_point(|(t, _)| *t <= at);
        list.insert(i, (at, status));
    }

    /// An allowed export destination; an entry ending in `*` allows every
    /// destination that starts with the text before it.
    pub fn add_export_allow(&mut self, entry: String) {
        match entry.strip_suffix('*') {
            Some(prefix) => self.allow_prefix.push(prefix.to_owned()),
            None => {
                self.allow_exact.insert(entry);
            }
        }
    }

    // ---- lookups ----

    /// The flag category of a patient (`vip`, `restricted`, …), if flagged.
    pub fn vip(&self, patient: &str) -> Option<&str> {
        self.vip.get(patient).map(String::as_str)
    }

    pub fn staff(&self, actor: &str) -> Option<&Staff> {
        self.roster.get(actor)
    }

    /// How `actor` (of department `dept`) is tied to `patient` outside of
    /// work, if at all: their own record first, then a row of the links
    /// table, then the record of a coworker of the same department. Two
    /// lookups by the patient pseudonym; nothing when neither table has
    /// patients.
    pub fn tie(&self, actor: &str, dept: Option<&str>, patient: &str) -> Option<Tie<'_>> {
        let owners = self.employees.get(patient);
        if owners.is_some_and(|o| o.iter().any(|a| a == actor)) {
            return Some(Tie::Own);
        }
        if let Some(rows) = self.links.get(patient)
            && let Some((_, relation)) = rows.iter().find(|(a, _)| a == actor)
        {
            return Some(Tie::Linked(relation));
        }
        let dept = dept?;
        owners?
            .iter()
            .any(|o| self.roster.get(o).and_then(|s| s.dept.as_deref()) == Some(dept))
            .then_some(Tie::Coworker)
    }

    /// Whether the care-team table assigns the patient to the actor, or to
    /// the actor's department, at `at`.
    pub fn on_care_team(
        &self,
        patient: &str,
        actor: &str,
        dept: Option<&str>,
        at: DateTime<Utc>,
    ) -> bool {
        self.care_cover(patient, actor, dept, at).is_some()
    }

    /// How the care-team table covers the actor at `at`, in one pass over
    /// the patient's rows: `Some(true)` when a row names the actor,
    /// `Some(false)` when only their department's rows do, `None` when none.
    pub fn care_cover(
        &self,
        patient: &str,
        actor: &str,
        dept: Option<&str>,
        at: DateTime<Utc>,
    ) -> Option<bool> {
        let mut cover = None;
        for a in self
            .care
            .get(patient)?
            .iter()
            .filter(|a| a.covers(actor, dept, at))
        {
            if a.actor.is_some() {
                return Some(true);
            }
            cover = Some(false);
        }
        cover
    }

    /// Whether the care-team table assigns the patient to anyone at `at`:
    /// the patient is in the hospital's care then (admitted, say).
    pub fn in_care(&self, patient: &str, at: DateTime<Utc>) -> bool {
        self.care.get(patient).is_some_and(|list| {
            list.iter()
                .any(|a| a.start.is_none_or(|s| s <= at) && a.end.is_none_or(|e| at < e))
        })
    }

    /// Whether the care-team table assigns the patient to anyone, ever.
    pub fn has_care(&self, patient: &str) -> bool {
        self.care.contains_key(patient)
    }

    /// The consent in force for a patient and purpose at `at`.
    pub fn consent(&self, patient: &str, purpose: &str, at: DateTime<Utc>) -> Consent {
        let key = (patient.to_owned(), purpose.to_owned());
        let Some(list) = self.consent.get(&key) else {
            return Consent::Absent;
        };
        let i = list.partition_point(|(t, _)| *t <= at);
        match i.checked_sub(1).map(|i| list[i].1) {
            Some(ConsentStatus::Granted) => Consent::Granted,
            Some(ConsentStatus::Withdrawn) => Consent::Withdrawn,
            None => Consent::Absent,
        }
    }

    /// Whether exports to `destination` are allowed.
    pub fn export_allowed(&self, destination: &str) -> bool {
        self.allow_exact.contains(destination)
            || self
                .allow_prefix
                .iter()
                .any(|p| destination.starts_with(p.as_str()))
    }

    // ---- whole tables (for SQL) ----

    /// Rows held per table, in the order of [`TABLES`].
    pub fn row_counts(&self) -> [(&'static str, usize); 6] {
        let [vip, roster, care_team, consent, export_allow, links] = TABLES;
        [
            (vip, self.vip.len()),
            (roster, self.roster.len()),
            (care_team, self.care.values().map(Vec::len).sum()),
            (consent, self.consent.values().map(Vec::len).sum()),
            (
                export_allow,
                self.allow_exact.len() + self.allow_prefix.len(),
            ),
            (links, self.links.values().map(Vec::len).sum()),
        ]
    }

    pub fn vip_rows(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vip.iter().map(|(p, c)| (p.as_str(), c.as_str()))
    }

    pub fn roster_rows(&self) -> impl Iterator<Item = (&str, &Staff)> {
        self.roster.iter().map(|(a, s)| (a.as_str(), s))
    }

    pub fn care_rows(&self) -> impl Iterator<Item = (&str, &CareAssignment)> {
        self.care
            .iter()
            .flat_map(|(p, l)| l.iter().map(move |a| (p.as_str(), a)))
    }

    pub fn consent_rows(&self) -> impl Iterator<Item = (&str, &str, DateTime<Utc>, ConsentStatus)> {
        self.consent.iter().flat_map(|((p, purpose), l)| {
            l.iter()
                .map(move |(t, s)| (p.as_str(), purpose.as_str(), *t, *s))
        })
    }

    pub fn export_allow_rows(&self) -> impl Iterator<Item = String> + '_ {
        self.allow_exact
            .iter()
            .cloned()
            .chain(self.allow_prefix.iter().map(|p| format!("{p}*")))
    }

    /// (actor, patient, relation) rows of the links table.
    pub fn link_rows(&self) -> impl Iterator<Item = (&str, &str, &str)> {
        self.links.iter().flat_map(|(p, rows)| {
            rows.iter()
                .map(move |(a, r)| (a.as_str(), p.as_str(), r.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn consent_is_the_newest_decision_at_the_time() {
        let mut r = Reference::default();
        r.add_consent(
            "p".into(),
            "HRESCH".into(),
            t("2026-01-02T00:00:00Z"),
            ConsentStatus::Withdrawn,
        );
        r.add_consent(
            "p".into(),
            "HRESCH".into(),
            t("2026-01-01T00:00:00Z"),
            ConsentStatus::Granted,
        );
        assert_eq!(
            r.consent("p", "HRESCH", t("2025-12-31T00:00:00Z")),
            Consent::Absent
        );
        assert_eq!(
            r.consent("p", "HRESCH", t("2026-01-01T12:00:00Z")),
            Consent::Granted
        );
        assert_eq!(
            r.consent("p", "HRESCH", t("2026-01-03T00:00:00Z")),
            Consent::Withdrawn
        );
        assert_eq!(
            r.consent("p", "PUBHLTH", t("2026-01-03T00:00:00Z")),
            Consent::Absent
        );
    }

    #[test]
    fn care_team_covers_actor_or_department_within_its_range() {
        let mut r = Reference::default();
        r.add_care(
            "p".into(),
            CareAssignment {
                actor: Some("a".into()),
                dept: None,
                start: None,
                end: Some(t("2026-01-02T00:00:00Z")),
            },
        );
        r.add_care(
            "p".into(),
            CareAssignment {
                actor: None,
                dept: Some("icu".into()),
                ..Default::default()
            },
        );
        let before = t("2026-01-01T00:00:00Z");
        let after = t("2026-01-03T00:00:00Z");
        assert!(r.on_care_team("p", "a", None, before));
        assert!(!r.on_care_team("p", "a", None, after));
        assert!(r.on_care_team("p", "b", Some("icu"), after));
        assert!(!r.on_care_team("p", "b", Some("er"), after));
        assert!(!r.on_care_team("q", "a", None, before));
        assert_eq!(r.care_cover("p", "a", Some("icu"), before), Some(true));
        assert_eq!(r.care_cover("p", "a", Some("icu"), after), Some(false));
        assert_eq!(r.care_cover("p", "a", Some("er"), after), None);
    }

    fn staff(dept: &str, patient: Option<&str>) -> Staff {
        Staff {
            dept: Some(dept.into()),
            patient: patient.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn ties_are_own_record_then_links_then_coworkers() {
        let mut r = Reference::default();
        assert_eq!(r.tie("a", Some("icu"), "p"), None, "empty tables");
        r.add_staff("a".into(), staff("icu", Some("pa")));
        r.add_staff("b".into(), staff("icu", Some("pb")));
        r.add_staff("c".into(), staff("er", Some("pc")));
        r.add_link("a".into(), "pb".into(), "family".into());
        r.add_link("a".into(), "pn".into(), "neighbour".into());
        assert_eq!(r.tie("a", Some("icu"), "pa"), Some(Tie::Own));
        assert_eq!(r.tie("a", Some("icu"), "pb"), Some(Tie::Linked("family")));
        assert_eq!(
            r.tie("a", Some("icu"), "pn"),
            Some(Tie::Linked("neighbour"))
        );
        assert_eq!(r.tie("c", Some("er"), "pb"), None, "another department's");
        assert_eq!(r.tie("b", Some("icu"), "pa"), Some(Tie::Coworker));
        assert_eq!(
            r.tie("b", None, "pa"),
            None,
            "an unknown department is not the same one"
        );
        assert_eq!(r.tie("b", Some("icu"), "pn"), None, "another's neighbour");
        assert_eq!(r.tie("a", Some("icu"), "px"), None);
        // One's own record first, even when a link names it too.
        r.add_link("a".into(), "pa".into(), "household".into());
        assert_eq!(r.tie("a", Some("icu"), "pa"), Some(Tie::Own));
        // A later row replaces: the relation, and a staff member's record.
        r.add_link("a".into(), "pn".into(), "household".into());
        assert_eq!(
            r.tie("a", Some("icu"), "pn"),
            Some(Tie::Linked("household"))
        );
        r.add_staff("b".into(), staff("icu", Some("pb2")));
        assert_eq!(r.tie("a", Some("icu"), "pb2"), Some(Tie::Coworker));
        assert_eq!(r.tie("c", Some("icu"), "pb"), None, "pb is no longer b's");
        assert_eq!(r.tie("b", Some("icu"), "pb2"), Some(Tie::Own));
        assert_eq!(r.link_rows().count(), 3);
        // A record the roster gives to two actors is each one's own, in
        // either order, until one of them is given another.
        for order in [["d", "e"], ["e", "d"]] {
            let mut r = Reference::default();
            for who in order {
                r.add_staff(who.into(), staff("er", Some("shared")));
            }
            assert_eq!(r.tie("d", Some("er"), "shared"), Some(Tie::Own));
            assert_eq!(r.tie("e", Some("er"), "shared"), Some(Tie::Own));
            assert_eq!(r.tie("f", Some("er"), "shared"), Some(Tie::Coworker));
            r.add_staff("e".into(), staff("er", None));
            assert_eq!(r.tie("d", Some("er"), "shared"), Some(Tie::Own));
            assert_eq!(r.tie("e", Some("er"), "shared"), Some(Tie::Coworker));
        }
    }

    #[test]
    fn export_allow_list_matches_exactly_or_by_prefix() {
        let mut r = Reference::default();
        r.add_export_allow("sftp://research.local/".into());
        r.add_export_allow("s3://hospital-archive/*".into());
        assert!(r.export_allowed("sftp://research.local/"));
        assert!(!r.export_allowed("sftp://research.local/x"));
        assert!(r.export_allowed("s3://hospital-archive/2026/x.csv"));
        assert!(!r.export_allowed("dropbox.com"));
    }
}
