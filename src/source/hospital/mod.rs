//! A labelled synthetic hospital workload for evaluating access-misuse
//! detectors (`custos gen`): a few days of a mid-size hospital's audit
//! trail, the reference tables a hospital would have beside it (roster,
//! VIP list, care teams, research consent, export allow-list, personal
//! links), and one
//! label per injected misuse instance.
//!
//! # What is modelled
//!
//! * **Workforce** (`staff`): physicians, nurses and therapists in seven
//!   wards (emergency, icu, cardiology, oncology, surgery, pediatrics,
//!   neurology), radiologists, pharmacists, registrars (admissions),
//!   billing clerks and researchers, in fixed proportions scaled to
//!   `--staff`; two service accounts (`svc-etl-1`, `svc-claims-1`, dept
//!   `it`). Each person has a heavy-tailed personal activity level
//!   (log-normal, σ ≈ 0.55), a workstation address, and a shift pattern:
//!   day (07–19), night (19–07) or office (08–17 on weekdays). Shifts are
//!   drawn per day (about half of the days, fewer at weekends) with a
//!   minimum coverage per ward and role. Churn: about 4% are hired during
//!   the run (no earlier history), about 4% leave during it (they stop at
//!   the roster's termination time) and about 5% more left in the two
//!   months before (roster rows only).
//! * **Patients and encounters** (`patients`): arrivals per ward and hour
//!   (emergency all day with a diurnal curve, elective admissions in
//!   daytime on weekdays), day-to-day variation, log-normal stays (hours in
//!   emergency, days in the wards), transfers from emergency to wards, a
//!   pool of frequent patients. About 1% of patients are flagged (vip,
//!   restricted, employee); they are admitted and treated like anyone else.
//!   About 40% consented to research (`HRESCH`), some withdraw.
//! * **Care** (`care`): in every ward shift each active encounter has a
//!   physician and a nurse on duty (kept from shift to shift when they are
//!   on duty again), who read and chart it in visits through the shift;
//!   emergency physicians see every new arrival first. Colleagues cover
//!   each other's patients, consultants from other wards see some
//!   inpatients, therapists see theirs, emergency staff break the glass
//!   now and then.
//! * **Support work** (`support`): registration at every arrival,
//!   pharmacy verification, imaging reads in radiology, billing (`HPAYMT`,
//!   high volume over recently discharged patients), research reads
//!   (`HRESCH`, consented patients only) and research exports to the
//!   enclave, the nightly warehouse export by `svc-etl-1` and the claims
//!   export by `svc-claims-1`.
//! * **On call** (`on_call`): ward physicians on day shifts are called at
//!   night about their inpatients and read their charts from home (VPN).
//! * **Personal ties** (`ties`): staff who are patients of the hospital
//!   too (the roster's `patient` column), and staff members' family and
//!   neighbours among the patients (`links.csv`).
//! * **Misuse** (`misuse`, `off_shift`): eleven kinds, each injected `2 × days` times (at
//!   least 10) into the activity of different actors, spread over days and
//!   hours; see `docs/workload.md` for the kinds, their sizes and the
//!   `detectable_at` rule of each.
//!
//! Reference data is as imperfect as a real hospital's: most care-team rows
//! are per actor, some per department; a few legitimate consults, imaging
//! reads and colleague covers have no row at all. Nothing here is
//! calibrated on a real hospital, and the detectors are not tuned to it.
//!
//! # Guarantees
//!
//! Deterministic: the same [`GenConfig`] gives byte-identical files (one
//! xoshiro256++ stream, no hash-map iteration order reaches the output).
//! Events are valid native JSON v1 events, in time order, ids
//! `e-<seed>-<n>`, times RFC 3339 UTC with milliseconds, raw patient
//! identifiers (`MRN-200117`). No event of a terminated actor follows the
//! termination except labelled `after_termination` ones; no benign
//! research read lacks a granted consent at its time.

mod care;
mod misuse;
mod model;
mod off_shift;
mod on_call;
mod orders;
mod patients;
mod staff;
mod support;
#[cfg(test)]
mod tests;
mod ties;
mod write;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::source::synth::rng::Rng;
pub use model::Scenario;
use model::{Action, CareRow, ConsentRow, DAY, Encounter, Ev, Flag, Label, NONE, Staff};
pub use write::{Summary, Workload, write_dir};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenConfig {
    pub seed: u64,
    /// Simulated days (≥ 1).
    pub days: u32,
    /// Staff employed during the run (people; service accounts and staff
    /// who left before the run come on top).
    pub staff: usize,
    pub patients: usize,
    /// The first instant of the run (events start here).
    pub start: DateTime<Utc>,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            days: 7,
            staff: 240,
            patients: 6000,
            start: DateTime::parse_from_rfc3339("2026-03-02T00:00:00Z")
                .expect("a valid constant")
                .to_utc(),
        }
    }
}

/// Generates the whole workload in memory.
pub fn generate(cfg: &GenConfig) -> Workload {
    let mut g = Gen::new(cfg.clone());
    g.build_staff();
    g.build_schedules();
    g.build_patients();
    g.build_ties();
    g.build_encounters();
    g.ward_care();
    g.index_orderers();
    g.consults();
    g.support_work();
    g.service_jobs();
    g.on_call();
    g.inject_misuse();
    write::render(g)
}

/// The generator's state; its methods live by role in the sibling files.
pub(super) struct Gen {
    cfg: GenConfig,
    rng: Rng,
    start: i64,
    end: i64,
    staff: Vec<Staff>,
    /// Staff indices per department (`Dept as usize`).
    by_dept: Vec<Vec<u32>>,
    flags: Vec<Option<Flag>>,
    /// Per patient: (granted at, withdrawn at), `i64::MAX` for never.
    consent_times: Vec<(i64, i64)>,
    consent: Vec<ConsentRow>,
    encounters: Vec<Encounter>,
    care: Vec<CareRow>,
    /// Physicians who may order for a patient (see `orders`).
    orderers: BTreeMap<u32, Vec<(u32, model::Dept, i64, i64)>>,
    events: Vec<Ev>,
    labels: Vec<Label>,
    /// Export and print destinations; index 0 is "none".
    dests: Vec<String>,
    /// Counts of the hard benign cases, for the summary.
    benign: BTreeMap<&'static str, u64>,
    /// Staff who are patients, their family and neighbours (`ties`).
    ties: ties::Ties,
}

/// Research consent of a patient at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConsentAt {
    Granted,
    Withdrawn,
    Absent,
}

impl Gen {
    fn new(cfg: GenConfig) -> Self {
        let start = cfg.start.timestamp_millis();
        let end = start + i64::from(cfg.days.max(1)) * DAY;
        Gen {
            rng: Rng::new(cfg.seed),
            cfg,
            start,
            end,
            staff: Vec::new(),
            by_dept: vec![Vec::new(); 13],
            flags: Vec::new(),
            consent_times: Vec::new(),
            consent: Vec::new(),
            encounters: Vec::new(),
            care: Vec::new(),
            orderers: BTreeMap::new(),
            events: Vec::new(),
            labels: Vec::new(),
            dests: vec![String::new()],
            benign: BTreeMap::new(),
            ties: ties::Ties::none(),
        }
    }

    fn days(&self) -> i32 {
        self.cfg.days.max(1) as i32
    }

    fn count(&mut self, what: &'static str, n: u64) {
        *self.benign.entry(what).or_default() += n;
    }

    /// The index of a destination, added on first use.
    fn dest(&mut self, d: &str) -> u32 {
        match self.dests.iter().position(|x| x == d) {
            Some(i) => i as u32,
            None => {
                self.dests.push(d.to_owned());
                (self.dests.len() - 1) as u32
            }
        }
    }

    fn consent_at(&self, patient: u32, t: i64) -> ConsentAt {
        let (granted, withdrawn) = self.consent_times[patient as usize];
        if withdrawn <= t {
            ConsentAt::Withdrawn
        } else if granted <= t {
            ConsentAt::Granted
        } else {
            ConsentAt::Absent
        }
    }

    /// An access event by `actor` in `session` from the actor's workstation.
    fn ev(&self, t: i64, actor: u32, session: u32, action: Action, patient: u32) -> Ev {
        let s = &self.staff[actor as usize];
        Ev {
            t,
            actor,
            patient,
            records: 0,
            session,
            ip: s.ip,
            label: NONE,
            dest: 0,
            action,
            purpose: s.role.purpose(),
            resource: model::res::PATIENT,
            denied: false,
            order_to: None,
        }
    }

    /// Keeps an ordinary event if it falls inside the run. No one works
    /// on their own record: a member of staff who is the patient is in the
    /// bed, not on the care team (their colleagues are).
    fn push(&mut self, ev: Ev) {
        let own = ev.patient != NONE && self.ties.own.get(ev.actor as usize) == Some(&ev.patient);
        if ev.t >= self.start && ev.t < self.end && !own {
            self.events.push(ev);
        }
    }

    /// Keeps a misuse event under `label` (callers place them in the run).
    fn push_labelled(&mut self, mut ev: Ev, label: u32) {
        debug_assert!(ev.t >= self.start && ev.t < self.end);
        ev.label = label;
        self.events.push(ev);
    }

    /// A Poisson draw (Knuth; fine for the small means used here).
    fn poisson(&mut self, mean: f64) -> u32 {
        if mean <= 0.0 {
            return 0;
        }
        if mean > 30.0 {
            return (mean + mean.sqrt() * self.rng.normal()).round().max(0.0) as u32;
        }
        let limit = (-mean).exp();
        let mut p = 1.0;
        let mut k = 0;
        loop {
            p *= self.rng.unit();
            if p <= limit {
                return k;
            }
            k += 1;
        }
    }

    /// Seconds-apart gaps between events of one chart visit.
    fn gap(&mut self) -> i64 {
        5_000 + (self.rng.exp() * 25_000.0) as i64
    }

    /// A time in `[a, b)` (`b > a`).
    fn within(&mut self, a: i64, b: i64) -> i64 {
        a + self.rng.below((b - a).max(1) as u64) as i64
    }
}
