//! Injected misuse. Each kind is injected `max(10, 2 × days)` times; the
//! i-th instance of a kind falls on day `i × days / n` (so every day gets
//! some), at a random time in one of the chosen actor's real shifts (or at
//! night, for `off_hours`; after termination for `after_termination`), and
//! no actor is used twice for one kind while others are eligible. Sizes
//! vary per instance; `docs/workload.md` lists them with the rule that
//! sets each label's `detectable_at` (see `write::detectable_at`). The two
//! kinds that happen outside the actor's shifts are in `off_shift`.
//!
//! Misuse is added to the actor's ordinary work, never replacing it: a
//! snooper keeps treating their own patients around the charts they open.
//! "No relationship" (unrelated_charts, snooping, vip_curiosity,
//! break_glass_habit) means:
//! the actor never touched the patient in ordinary work, has no care-team
//! row for them, and the patient was never in an encounter or a
//! department-wide row of the actor's department, nor ordered to it.

use std::collections::{BTreeSet, HashSet};

use super::ConsentAt;
use super::Gen;
use super::model::{
    Action, Dept, HOUR, Label, MINUTE, NONE, Purpose, Role, Scenario, Shift, ShiftKind, Staff, res,
};

/// Destinations no allow-list entry matches.
const OUTSIDE: [&str; 7] = [
    "mailto:private.inbox@gmail.com",
    "usb:removable",
    "https://drive.google.com/drive/my-drive",
    "https://www.dropbox.com/home/upload",
    "sftp://203.0.113.45/upload",
    "https://wetransfer.com/",
    "ipp://192.168.1.20/printers/home",
];

/// Who has touched whom, for choosing targets without a relationship.
struct Relations {
    actor_patient: HashSet<(u32, u32)>,
    dept_patient: HashSet<(Dept, u32)>,
}

impl Gen {
    pub(super) fn inject_misuse(&mut self) {
        let mut rel = Relations {
            actor_patient: HashSet::new(),
            dept_patient: HashSet::new(),
        };
        for ev in &self.events {
            if ev.patient != NONE {
                rel.actor_patient.insert((ev.actor, ev.patient));
                if let Some(to) = ev.order_to {
                    rel.dept_patient.insert((to, ev.patient));
                }
            }
        }
        for row in &self.care {
            if row.actor == NONE {
                rel.dept_patient.insert((row.dept, row.patient));
            } else {
                rel.actor_patient.insert((row.actor, row.patient));
            }
        }
        for x in &self.encounters {
            rel.dept_patient.insert((x.dept, x.patient));
        }
        let n = (2 * self.days() as usize).max(10);
        for scenario in Scenario::ALL {
            let mut used = BTreeSet::new();
            for i in 0..n {
                let day = (i * self.days() as usize / n) as i32;
                self.inject(scenario, i, day, &mut used, &rel);
            }
        }
    }

    fn inject(
        &mut self,
        scenario: Scenario,
        i: usize,
        day: i32,
        used: &mut BTreeSet<u32>,
        rel: &Relations,
    ) {
        use Role::*;
        let clinical = |s: &Staff| {
            matches!(
                s.role,
                Physician | Nurse | Therapist | Registrar | Pharmacist
            )
        };
        let spot = match scenario {
            Scenario::VolumeBurst => self.spot(day, used, |s| {
                matches!(
                    s.role,
                    Physician | Nurse | Registrar | Pharmacist | BillingClerk
                )
            }),
            Scenario::Breadth => self.spot(day, used, |s| {
                matches!(s.role, Physician | Nurse | Pharmacist | Therapist)
                    && s.dept != Dept::Emergency
            }),
            Scenario::UnrelatedCharts | Scenario::Snooping | Scenario::VipCuriosity => {
                self.spot(day, used, clinical)
            }
            Scenario::BulkExport => self.spot(day, used, |s| {
                matches!(
                    s.role,
                    Physician | Nurse | Registrar | BillingClerk | Researcher
                )
            }),
            Scenario::DeniedProbing => self.spot(day, used, |s| {
                matches!(
                    s.role,
                    Physician | Nurse | Registrar | BillingClerk | Pharmacist
                )
            }),
            Scenario::BreakGlassHabit => {
                let ed = i.is_multiple_of(3);
                self.spot(day, used, |s| {
                    matches!(s.role, Physician | Nurse) && (s.dept == Dept::Emergency) == ed
                })
            }
            Scenario::ConsentViolation => self.spot(day, used, |s| {
                s.role == Researcher
                    || s.role == Physician
                        && s.kind == ShiftKind::Day
                        && matches!(s.dept, Dept::Oncology | Dept::Neurology)
            }),
            Scenario::AfterTermination => return self.after_termination(i, day, used),
            Scenario::OffHours => return self.off_hours(day, used),
        };
        let Some((actor, shift)) = spot else {
            return;
        };
        let a = shift.start.max(self.start);
        let b = shift.end.min(self.end);
        let label = self.labels.len() as u32;
        self.labels.push(Label {
            scenario,
            actor,
            patient: NONE,
        });
        let dept = self.staff[actor as usize].dept;
        match scenario {
            Scenario::VolumeBurst => {
                let minutes = self.rng.between(3, 10) as i64;
                let n = minutes * self.rng.between(10, 30) as i64;
                let t0 = self.within(a + HOUR, b - 20 * MINUTE);
                let pool = self.current_patients(Some(dept), t0, 40);
                for k in 0..n {
                    let t = t0 + k * minutes * MINUTE / n + self.rng.below(1500) as i64;
                    let (action, p) = if self.rng.chance(0.15) || pool.is_empty() {
                        (Action::Search, NONE)
                    } else {
                        (Action::Read, pool[self.rng.index(pool.len())])
                    };
                    let mut ev = self.ev(t, actor, shift.session, action, p);
                    ev.resource = *self.rng.pick(&[
                        res::PATIENT,
                        res::OBSERVATION,
                        res::DOCUMENT,
                        res::REPORT,
                    ]);
                    self.push_labelled(ev, label);
                }
            }
            Scenario::Breadth => {
                let minutes = self.rng.between(30, 60) as i64;
                let k = self.rng.between(30, 120) as i64;
                let t0 = self.within(a + HOUR, b - 70 * MINUTE);
                let mut seen = BTreeSet::new();
                for j in 0..k {
                    let p = if self.rng.chance(0.6) {
                        self.current_patients(None, t0, 1)
                            .first()
                            .copied()
                            .unwrap_or(0)
                    } else {
                        self.rng.index(self.flags.len()) as u32
                    };
                    if !seen.insert(p) {
                        continue;
                    }
                    let t = t0 + j * minutes * MINUTE / k;
                    let n = self.rng.between(1, 2) as u32;
                    self.labelled_reads(label, actor, shift.session, p, t, n, Purpose::Treat);
                }
            }
            Scenario::UnrelatedCharts => {
                let k = self.rng.between(3, 15);
                let span =
                    self.rng.between(60, ((b - a) / MINUTE - 60).max(61) as u64) as i64 * MINUTE;
                let t0 = self.within(a + 30 * MINUTE, (b - span).max(a + 31 * MINUTE));
                let mut targets = BTreeSet::new();
                for _ in 0..200 {
                    if targets.len() as u64 >= k {
                        break;
                    }
                    let p = if self.rng.chance(0.5) {
                        self.current_patients(None, t0, 1)
                            .first()
                            .copied()
                            .unwrap_or(0)
                    } else {
                        self.rng.index(self.flags.len()) as u32
                    };
                    if self.unrelated(rel, actor, p) && self.flags[p as usize].is_none() {
                        targets.insert(p);
                    }
                }
                for p in targets {
                    let t = self.within(t0, (t0 + span).min(b - 5 * MINUTE));
                    let n = self.rng.between(1, 3) as u32;
                    self.labelled_reads(label, actor, shift.session, p, t, n, Purpose::Treat);
                }
            }
            Scenario::Snooping => {
                // 1–3 people the actor knows, perhaps amid a stranger or
                // two, over ten minutes to four hours of a shift.
                let span = self.rng.between(10, 240) as i64 * MINUTE;
                let span = span.min((b - a - 60 * MINUTE).max(MINUTE));
                let t0 = self.within(
                    a + 20 * MINUTE,
                    (b - span - 10 * MINUTE).max(a + 21 * MINUTE),
                );
                let known = self.rng.between(1, 3);
                let mut targets = self.acquaintances(rel, actor, known);
                if targets.is_empty() {
                    return;
                }
                for _ in 0..self.rng.between(0, 2) {
                    let p = self.rng.index(self.flags.len()) as u32;
                    if self.unrelated(rel, actor, p) && self.flags[p as usize].is_none() {
                        targets.insert(p);
                    }
                }
                for p in targets {
                    let t = self.within(t0, t0 + span);
                    let n = self.rng.between(1, 3) as u32;
                    self.labelled_reads(label, actor, shift.session, p, t, n, Purpose::Treat);
                }
            }
            Scenario::VipCuriosity => {
                let t0 = self.within(a + 20 * MINUTE, b - 40 * MINUTE);
                let vips: Vec<u32> = (0..self.flags.len() as u32)
                    .filter(|&p| self.flags[p as usize].is_some() && self.unrelated(rel, actor, p))
                    .collect();
                let admitted: Vec<u32> = vips
                    .iter()
                    .copied()
                    .filter(|&p| {
                        self.encounters
                            .iter()
                            .any(|x| x.patient == p && x.start <= t0 && t0 < x.end)
                    })
                    .collect();
                let from = if !admitted.is_empty() && self.rng.chance(0.7) {
                    admitted
                } else {
                    vips
                };
                if let Some(&p) = from.get(self.rng.index(from.len().max(1))) {
                    self.labels[label as usize].patient = p;
                    let mut t = t0;
                    for _ in 0..self.rng.between(1, 3) {
                        self.labelled_reads(label, actor, shift.session, p, t, 1, Purpose::Treat);
                        t += self.rng.between(1, 8) as i64 * MINUTE;
                    }
                }
            }
            Scenario::BulkExport => {
                let total = (500f64.ln() + self.rng.unit() * (20_000f64.ln() - 500f64.ln())).exp();
                let parts = self.rng.between(1, 4);
                let weights: Vec<f64> = (0..parts).map(|_| 0.3 + self.rng.unit()).collect();
                let sum: f64 = weights.iter().sum();
                let dest = *self.rng.pick(&OUTSIDE);
                let dest = self.dest(dest);
                let mut t = self.within(a + 30 * MINUTE, b - HOUR);
                for _ in 0..self.rng.between(1, 3) {
                    let ev = self.ev(t, actor, shift.session, Action::Search, NONE);
                    self.push_labelled(ev, label);
                    t += self.rng.between(20, 120) as i64 * 1000;
                }
                for w in weights {
                    let mut ev = self.ev(t, actor, shift.session, Action::Export, NONE);
                    if self.dests[dest as usize].starts_with("ipp:") {
                        ev.action = Action::Print;
                    }
                    ev.resource = res::BUNDLE;
                    ev.records = ((total * w / sum).round() as u32).max(100);
                    ev.dest = dest;
                    self.push_labelled(ev, label);
                    t += self.rng.between(1, 10) as i64 * MINUTE;
                }
            }
            Scenario::DeniedProbing => {
                let k = self.rng.between(8, 40) as i64;
                let span = self.rng.between(2, 10) as i64 * MINUTE;
                let t0 = self.within(a + 30 * MINUTE, b - 20 * MINUTE);
                let flagged: Vec<u32> = (0..self.flags.len() as u32)
                    .filter(|&p| self.flags[p as usize].is_some())
                    .collect();
                for j in 0..k {
                    let p = if self.rng.chance(0.3) {
                        flagged[self.rng.index(flagged.len())]
                    } else {
                        self.rng.index(self.flags.len()) as u32
                    };
                    let mut ev = self.ev(t0 + j * span / k, actor, shift.session, Action::Read, p);
                    ev.resource = *self.rng.pick(&[res::PATIENT, res::DOCUMENT, res::REPORT]);
                    ev.denied = true;
                    self.push_labelled(ev, label);
                }
            }
            Scenario::BreakGlassHabit => {
                let uses = self.rng.between(4, 15);
                for _ in 0..uses {
                    let t = self.within(a + 30 * MINUTE, b - 10 * MINUTE);
                    let mut p = NONE;
                    for _ in 0..50 {
                        let q = self
                            .current_patients(None, t, 1)
                            .first()
                            .copied()
                            .unwrap_or(0);
                        if self.unrelated(rel, actor, q) {
                            p = q;
                            break;
                        }
                    }
                    if p != NONE {
                        let n = self.rng.between(1, 2) as u32;
                        self.labelled_reads(label, actor, shift.session, p, t, n, Purpose::Etreat);
                    }
                }
            }
            Scenario::ConsentViolation => {
                let k = self.rng.between(1, 12);
                let span = self.rng.between(1, 4) as i64 * HOUR;
                let t0 = self.within(a + 15 * MINUTE, (b - span).max(a + 16 * MINUTE));
                let mut targets = Vec::new();
                for _ in 0..400 {
                    if targets.len() as u64 >= k {
                        break;
                    }
                    let p = self.rng.index(self.flags.len()) as u32;
                    let want = if targets.len() % 2 == 0 {
                        ConsentAt::Withdrawn
                    } else {
                        ConsentAt::Absent
                    };
                    if self.consent_at(p, t0) == want && self.consent_at(p, t0 + span) == want {
                        targets.push(p);
                    }
                }
                if targets.len() == 1 {
                    self.labels[label as usize].patient = targets[0];
                }
                for p in targets {
                    let t = self.within(t0, (t0 + span).min(b - 5 * MINUTE));
                    let n = self.rng.between(1, 3) as u32;
                    self.labelled_reads(label, actor, shift.session, p, t, n, Purpose::Hresch);
                }
            }
            Scenario::AfterTermination | Scenario::OffHours => unreachable!("handled above"),
        }
    }

    /// An actor of the required kind and one of their shifts of `day` (any
    /// day if none), at least 4 h inside the run, well before any
    /// termination; actors in `used` only when nobody else is left.
    fn spot(
        &mut self,
        day: i32,
        used: &mut BTreeSet<u32>,
        ok: impl Fn(&Staff) -> bool,
    ) -> Option<(u32, Shift)> {
        for (same_day, fresh) in [(true, true), (false, true), (true, false), (false, false)] {
            let mut found = Vec::new();
            for (i, s) in self.staff.iter().enumerate() {
                if s.former || !s.is_human() || !ok(s) || fresh && used.contains(&(i as u32)) {
                    continue;
                }
                for sh in &s.shifts {
                    let len = sh.end.min(self.end) - sh.start.max(self.start);
                    if (!same_day || sh.day == day)
                        && len >= 4 * HOUR
                        && s.terminated.is_none_or(|t| t > sh.end + 6 * HOUR)
                    {
                        found.push((i as u32, *sh));
                    }
                }
            }
            if !found.is_empty() {
                let pick = found[self.rng.index(found.len())];
                used.insert(pick.0);
                return Some(pick);
            }
        }
        None
    }

    fn unrelated(&self, rel: &Relations, actor: u32, patient: u32) -> bool {
        let dept = self.staff[actor as usize].dept;
        !rel.actor_patient.contains(&(actor, patient))
            && !rel.dept_patient.contains(&(dept, patient))
    }

    /// Up to `n` people `actor` knows (`ties`), none flagged or related
    /// to the actor or their department: each a relative or neighbour
    /// (60%, when the actor has one left) or a coworker who is a patient.
    fn acquaintances(&mut self, rel: &Relations, actor: u32, n: u64) -> BTreeSet<u32> {
        let free = |g: &Gen, pool: Vec<u32>| -> Vec<u32> {
            pool.into_iter()
                .filter(|&p| g.flags[p as usize].is_none() && g.unrelated(rel, actor, p))
                .collect()
        };
        let relatives = free(self, self.relatives(actor));
        let coworkers = free(self, self.coworker_records(actor));
        let mut out = BTreeSet::new();
        for _ in 0..n {
            let left = |pool: &[u32]| pool.iter().any(|p| !out.contains(p));
            let pool = if self.rng.chance(0.6) && left(&relatives) || !left(&coworkers) {
                &relatives
            } else {
                &coworkers
            };
            let left: Vec<u32> = pool.iter().copied().filter(|p| !out.contains(p)).collect();
            if !left.is_empty() {
                out.insert(left[self.rng.index(left.len())]);
            }
        }
        out
    }

    /// Up to `n` patients in an encounter at `t` (of `dept`, or anywhere),
    /// drawn at random.
    pub(super) fn current_patients(&mut self, dept: Option<Dept>, t: i64, n: usize) -> Vec<u32> {
        let all: Vec<u32> = self
            .encounters
            .iter()
            .filter(|x| x.start <= t && t < x.end && dept.is_none_or(|d| d == x.dept))
            .map(|x| x.patient)
            .collect();
        (0..n.min(all.len()))
            .map(|_| all[self.rng.index(all.len())])
            .collect()
    }

    /// `n` reads seconds apart, labelled.
    #[allow(clippy::too_many_arguments)]
    fn labelled_reads(
        &mut self,
        label: u32,
        actor: u32,
        session: u32,
        p: u32,
        t: i64,
        n: u32,
        purpose: Purpose,
    ) {
        let mut t = t;
        for _ in 0..n {
            let mut ev = self.ev(t, actor, session, Action::Read, p);
            ev.purpose = purpose;
            ev.resource =
                *self
                    .rng
                    .pick(&[res::PATIENT, res::DOCUMENT, res::OBSERVATION, res::REPORT]);
            if t < self.end {
                self.push_labelled(ev, label);
            }
            t += self.gap();
        }
    }
}
