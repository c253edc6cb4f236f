//! Ward care: who treats which patient in each shift, and the chart work
//! that follows.
//!
//! For every ward and every day and night shift, each active encounter gets
//! a physician and a nurse among those on duty: the same ones as in the
//! previous shift when they are on duty again, else the least loaded. The
//! pair goes into the care-team table (per actor, from the first shift
//! they treat the patient until 12 h after discharge); encounters whose
//! ward shares the patient (all emergency and icu stays, a third of the
//! others) also get a department-wide row.
//!
//! Chart work comes in visits: a handful of events seconds apart (a read of
//! the patient or encounter first, then observations, medications, notes,
//! orders, depending on the role), visits spread over the overlap of the
//! shift and the stay. The expected number of events is the ward's rate
//! per patient-hour × the person's activity × a shift factor (log-normal,
//! σ = 0.3), higher in the first hours of a stay; new arrivals are seen
//! within minutes (emergency physicians see many new patients a shift).
//!
//! Around that: colleagues cover a patient of another nurse or physician of
//! their ward now and then (about one such visit every 8 hours), therapists
//! see a round of patients on day shifts, emergency staff break the glass
//! (`ETREAT`) on about one shift in five (icu: one in twenty), a few
//! accesses are denied (a sensitive note, about 1 in 1,000 reads), and
//! consultants from other wards see about 12% of inpatients a day.

use std::collections::BTreeMap;

use super::model::{
    Action, CareRow, DAY, Dept, HOUR, MINUTE, NONE, Purpose, Role, Shift, ShiftKind, WARD_SPECS,
    res,
};
use super::orders::Ask;
use super::{Gen, model::Encounter};

/// (actor, their shift) on duty in one ward shift.
type Duty = (u32, Shift);

impl Gen {
    pub(super) fn ward_care(&mut self) {
        let mut first_seen: BTreeMap<(u32, u32), i64> = BTreeMap::new();
        let mut sticky = vec![[NONE; 2]; self.encounters.len()];
        for spec in WARD_SPECS {
            let dept = spec.dept;
            let mut encs: Vec<u32> = (0..self.encounters.len() as u32)
                .filter(|&e| {
                    let x = &self.encounters[e as usize];
                    x.dept == dept && x.end > self.start && x.start < self.end
                })
                .collect();
            encs.sort_by_key(|&e| self.encounters[e as usize].start);
            for day in -1..self.days() {
                for kind in [ShiftKind::Day, ShiftKind::Night] {
                    let ws = self.start
                        + i64::from(day) * DAY
                        + if kind == ShiftKind::Day { 7 } else { 19 } * HOUR;
                    let we = ws + 12 * HOUR;
                    let active: Vec<u32> = encs
                        .iter()
                        .copied()
                        .filter(|&e| {
                            let x = &self.encounters[e as usize];
                            x.start < we && x.end > ws
                        })
                        .collect();
                    let duty = |role| self.duty(dept, role, kind, day);
                    let teams = [duty(Role::Physician), duty(Role::Nurse)];
                    let therapists = duty(Role::Therapist);
                    for (r, team) in teams.iter().enumerate() {
                        if team.is_empty() {
                            continue;
                        }
                        // Assign first, then chart: a person's load sets
                        // how much each of their patients gets.
                        let mut load = vec![0u32; team.len()];
                        let mut assigned = Vec::with_capacity(active.len());
                        for &e in &active {
                            let prev = sticky[e as usize][r];
                            let k = match team.iter().position(|d| d.0 == prev) {
                                Some(k) => k,
                                None => {
                                    let min = *load.iter().min().unwrap_or(&0);
                                    let least: Vec<usize> =
                                        (0..team.len()).filter(|&k| load[k] == min).collect();
                                    least[self.rng.index(least.len())]
                                }
                            };
                            load[k] += 1;
                            sticky[e as usize][r] = team[k].0;
                            assigned.push((e, k));
                        }
                        let (rate, cap) = if r == 0 {
                            (spec.physician_rate, spec.physician_cap)
                        } else {
                            (spec.nurse_rate, spec.nurse_cap)
                        };
                        let night = match (kind, dept) {
                            (ShiftKind::Day, _) => 1.0,
                            (_, Dept::Emergency) => 0.85,
                            _ => 0.65,
                        };
                        let factors: Vec<f64> = load
                            .iter()
                            .map(|&l| {
                                let share = (cap / f64::from(l.max(1))).min(1.0);
                                rate * night * share * (0.3 * self.rng.normal()).exp()
                            })
                            .collect();
                        for (e, k) in assigned {
                            if let Some(a) = self.treat(team[k], e, factors[k]) {
                                first_seen.entry((e, team[k].0)).or_insert(a);
                            }
                        }
                        for &d in team {
                            self.shift_extras(d, dept, &active, &sticky, r);
                        }
                    }
                    if !active.is_empty() {
                        for &d in &therapists {
                            for _ in 0..self.rng.between(4, 9) {
                                let e = active[self.rng.index(active.len())];
                                if let Some(a) = self.treat(d, e, 0.0) {
                                    first_seen.entry((e, d.0)).or_insert(a);
                                }
                            }
                        }
                    }
                }
            }
        }
        for ((e, actor), start) in first_seen {
            let x = self.encounters[e as usize];
            self.care.push(CareRow {
                patient: x.patient,
                actor,
                dept: x.dept,
                start,
                end: x.end + 12 * HOUR,
            });
        }
        for x in self.encounters.clone() {
            if x.dept_row && x.end > self.start - DAY && x.start < self.end {
                self.care.push(CareRow {
                    patient: x.patient,
                    actor: NONE,
                    dept: x.dept,
                    start: x.start,
                    end: x.end + 12 * HOUR,
                });
            }
        }
    }

    /// Staff of a ward role working the `kind` shift of `day`.
    fn duty(&self, dept: Dept, role: Role, kind: ShiftKind, day: i32) -> Vec<Duty> {
        self.by_dept[dept as usize]
            .iter()
            .filter(|&&i| {
                let s = &self.staff[i as usize];
                s.role == role
                    && (s.kind == kind || role == Role::Therapist && kind == ShiftKind::Day)
            })
            .filter_map(|&i| {
                let s = &self.staff[i as usize];
                s.shifts.iter().find(|sh| sh.day == day).map(|sh| (i, *sh))
            })
            .collect()
    }

    /// Chart work of one actor on one encounter during their shift, at
    /// `rate` events per hour (0: one therapy session). Returns when the
    /// work starts, if the shift and the stay overlap.
    fn treat(&mut self, (actor, shift): Duty, e: u32, rate: f64) -> Option<i64> {
        let x: Encounter = self.encounters[e as usize];
        let a = x.start.max(shift.start).max(self.start);
        let b = x.end.min(shift.end).min(self.end);
        if b - a < 5 * MINUTE {
            return None;
        }
        let hours = (b - a) as f64 / HOUR as f64;
        let new = x.start >= shift.start;
        if rate == 0.0 {
            let t = self.within(a, b);
            let n = self.rng.between(3, 8) as u32;
            self.visit(actor, shift, x.patient, t, n, Purpose::Treat);
            return Some(t);
        }
        let activity = self.staff[actor as usize].activity;
        let boost = if new { 1.4 } else { 1.0 };
        let n = self.poisson(rate * hours * activity * boost).max(1);
        let mut left = n;
        let mut first = i64::MAX;
        while left > 0 {
            let k = left.min(self.rng.between(2, 8) as u32);
            let t = if first == i64::MAX && new {
                // New arrivals are seen first, within minutes.
                (a + (self.rng.exp() * 12.0 * MINUTE as f64) as i64).min(b - MINUTE)
            } else {
                self.within(a, b)
            };
            first = first.min(t);
            self.visit(actor, shift, x.patient, t, k, Purpose::Treat);
            left -= k;
        }
        Some(first)
    }

    /// One chart visit: `n` events seconds apart from `t`, cut at the end
    /// of the shift.
    pub(super) fn visit(
        &mut self,
        actor: u32,
        shift: Shift,
        patient: u32,
        t: i64,
        n: u32,
        purpose: Purpose,
    ) {
        let role = self.staff[actor as usize].role;
        let mut t = t;
        for i in 0..n {
            if t >= shift.end {
                break;
            }
            let mut ev = self.ev(t, actor, shift.session, Action::Read, patient);
            ev.purpose = purpose;
            let (action, resource) = if i == 0 {
                (
                    Action::Read,
                    *self.rng.pick(&[res::PATIENT, res::ENCOUNTER]),
                )
            } else {
                self.chart_action(role)
            };
            ev.action = action;
            ev.resource = resource;
            if action == Action::Read && self.rng.permille(1) {
                ev.denied = true;
                self.count("denied_benign", 1);
            } else if self.rng.below(400) == 0 {
                let dept = self.staff[actor as usize].dept.name();
                let d = format!("printer:hospital/{dept}-{}", 1 + self.rng.below(3));
                ev.action = Action::Print;
                ev.resource = res::DOCUMENT;
                ev.records = self.rng.between(1, 12) as u32;
                ev.dest = self.dest(&d);
            }
            self.push(ev);
            t += self.gap();
        }
    }

    fn chart_action(&mut self, role: Role) -> (Action, u8) {
        use Action::{Create, Read, Update};
        let table: &[((Action, u8), u32)] = match role {
            Role::Nurse => &[
                ((Read, res::OBSERVATION), 30),
                ((Update, res::OBSERVATION), 20),
                ((Read, res::MED_ADMIN), 10),
                ((Create, res::MED_ADMIN), 12),
                ((Read, res::DOCUMENT), 10),
                ((Create, res::DOCUMENT), 5),
                ((Read, res::MED_REQUEST), 8),
                ((Read, res::REPORT), 5),
            ],
            Role::Physician => &[
                ((Read, res::REPORT), 20),
                ((Read, res::OBSERVATION), 20),
                ((Read, res::DOCUMENT), 15),
                ((Create, res::DOCUMENT), 10),
                ((Create, res::ORDER), 10),
                ((Create, res::MED_REQUEST), 8),
                ((Update, res::MED_REQUEST), 5),
                ((Read, res::IMAGING), 5),
                ((Read, res::PATIENT), 7),
            ],
            _ => &[
                ((Read, res::DOCUMENT), 40),
                ((Create, res::DOCUMENT), 25),
                ((Read, res::OBSERVATION), 35),
            ],
        };
        self.rng.choose(table)
    }

    /// Per person and shift: a login, patient searches, covering a
    /// colleague's patient, and (emergency, icu) the occasional
    /// break-the-glass.
    fn shift_extras(&mut self, d: Duty, dept: Dept, active: &[u32], sticky: &[[u32; 2]], r: usize) {
        let (actor, shift) = d;
        let t = shift.start + self.rng.below(600_000) as i64;
        let login = self.ev(t, actor, shift.session, Action::Login, NONE);
        self.push(login);
        let hours = (shift.end - shift.start) as f64 / HOUR as f64;
        for _ in 0..self.poisson(0.4 * hours) {
            let t = self.within(shift.start, shift.end);
            let mut ev = self.ev(t, actor, shift.session, Action::Search, NONE);
            ev.resource = res::PATIENT;
            self.push(ev);
        }
        if active.is_empty() {
            return;
        }
        for _ in 0..self.poisson(hours / 8.0) {
            let e = active[self.rng.index(active.len())];
            let x = self.encounters[e as usize];
            if sticky[e as usize][r] == actor {
                continue;
            }
            let a = x.start.max(shift.start);
            let b = x.end.min(shift.end);
            if b - a < 10 * MINUTE {
                continue;
            }
            let t = self.within(a, b);
            let n = self.rng.between(1, 4) as u32;
            self.visit(actor, shift, x.patient, t, n, Purpose::Treat);
            self.count("cover_visits", 1);
            if !x.dept_row {
                self.count("cover_visits_without_care_row", 1);
            }
        }
        let btg = match dept {
            Dept::Emergency => 0.2,
            Dept::Icu => 0.05,
            _ => 0.0,
        };
        if self.rng.chance(btg) {
            let e = active[self.rng.index(active.len())];
            let x = self.encounters[e as usize];
            let a = x.start.max(shift.start);
            let b = x.end.min(shift.end);
            if b > a {
                let t = self.within(a, b);
                let n = self.rng.between(1, 2) as u32;
                self.visit(actor, shift, x.patient, t, n, Purpose::Etreat);
                self.count("break_glass_benign", u64::from(n));
            }
        }
    }

    /// Consults: about 12% of inpatients a day are seen by a physician of
    /// another ward (on a day shift), with a per-actor care-team row nine
    /// times in ten.
    pub(super) fn consults(&mut self) {
        let consulting = [
            (Dept::Cardiology, 30),
            (Dept::Neurology, 25),
            (Dept::Icu, 15),
            (Dept::Oncology, 10),
            (Dept::Surgery, 20),
        ];
        for e in 0..self.encounters.len() {
            let x = self.encounters[e];
            if x.dept == Dept::Emergency || x.end <= self.start || x.start >= self.end {
                continue;
            }
            for day in 0..self.days() {
                let t = self.start
                    + i64::from(day) * DAY
                    + 9 * HOUR
                    + self.rng.below(8 * HOUR as u64) as i64;
                if t < x.start || t >= x.end || !self.rng.chance(0.12) {
                    continue;
                }
                let dept = self.rng.choose(&consulting);
                if dept == x.dept {
                    continue;
                }
                let Some((actor, shift)) = self.on_duty_role(dept, Role::Physician, t) else {
                    continue;
                };
                if self.rng.chance(0.9) {
                    self.care.push(CareRow {
                        patient: x.patient,
                        actor,
                        dept,
                        start: t - 10 * MINUTE,
                        end: x.end + 24 * HOUR,
                    });
                } else {
                    self.count("consults_without_care_row", 1);
                }
                let ask = Ask {
                    patient: x.patient,
                    ward: x.dept,
                    to: dept,
                    resource: res::ORDER,
                };
                self.place_order(ask, t, 2 * HOUR);
                let n = self.rng.between(4, 10) as u32;
                self.visit(actor, shift, x.patient, t, n, Purpose::Treat);
                self.count("consults", 1);
            }
        }
    }

    /// Someone of `role` in `dept` on shift at `t`.
    pub(super) fn on_duty_role(&mut self, dept: Dept, role: Role, t: i64) -> Option<Duty> {
        let found: Vec<Duty> = self.by_dept[dept as usize]
            .iter()
            .filter(|&&i| self.staff[i as usize].role == role)
            .filter_map(|&i| {
                let s = &self.staff[i as usize];
                s.shifts
                    .iter()
                    .find(|sh| sh.start <= t && t < sh.end)
                    .map(|sh| (i, *sh))
            })
            .collect();
        if found.is_empty() {
            None
        } else {
            Some(found[self.rng.index(found.len())])
        }
    }
}
