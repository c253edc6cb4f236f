//! Misuse outside the actor's shifts: an account used after its owner left
//! (`after_termination`), and a day-shift or office worker active in the
//! middle of the night (`off_hours`). Both come from a new session, most
//! often from a VPN address (`172.16.x.y`) instead of a workstation.

use std::collections::BTreeSet;

use super::Gen;
use super::model::{Action, DAY, HOUR, Label, MINUTE, NONE, Role, Scenario, ShiftKind, Staff, res};
use crate::source::synth::rng::Rng;

impl Gen {
    /// A terminated account used again: former staff on the target day,
    /// staff who left during the run within three days of leaving.
    pub(super) fn after_termination(&mut self, i: usize, day: i32, used: &mut BTreeSet<u32>) {
        let pool: Vec<u32> = (0..self.staff.len() as u32)
            .filter(|&a| {
                let s = &self.staff[a as usize];
                s.terminated.is_some_and(|t| t < self.end - 6 * HOUR) && !used.contains(&a)
            })
            .collect();
        let pool = if pool.is_empty() {
            (0..self.staff.len() as u32)
                .filter(|&a| self.staff[a as usize].terminated.is_some())
                .collect()
        } else {
            pool
        };
        if pool.is_empty() {
            return;
        }
        let actor = pool[(i * 7919 + self.rng.index(pool.len())) % pool.len()];
        used.insert(actor);
        let term = self.staff[actor as usize].terminated.unwrap_or(self.start);
        let t0 = if term < self.start {
            let day0 = self.start + i64::from(day) * DAY;
            self.within(day0, day0 + DAY)
        } else {
            self.within(term + HOUR, (term + 3 * DAY).min(self.end - 2 * HOUR))
        };
        let label = self.labels.len() as u32;
        self.labels.push(Label {
            scenario: Scenario::AfterTermination,
            actor,
            patient: NONE,
        });
        let session = self.rng.next_u64() as u32;
        let vpn = self.rng.chance(0.7);
        let ip = if vpn {
            vpn_ip(&mut self.rng)
        } else {
            self.staff[actor as usize].ip
        };
        let mut t = t0;
        if self.rng.chance(0.7) {
            let mut ev = self.ev(t, actor, session, Action::Login, NONE);
            ev.ip = ip;
            self.push_labelled(ev, label);
            t += self.rng.between(20, 120) as i64 * 1000;
        }
        let k = self.rng.between(1, 20);
        let p0 = self.rng.index(self.flags.len()) as u32;
        for _ in 0..k {
            let p = if k <= 2 {
                p0
            } else {
                self.rng.index(self.flags.len()) as u32
            };
            if t >= self.end {
                break;
            }
            let mut ev = self.ev(t, actor, session, Action::Read, p);
            ev.ip = ip;
            ev.resource = *self
                .rng
                .pick(&[res::PATIENT, res::DOCUMENT, res::OBSERVATION]);
            self.push_labelled(ev, label);
            t += self.rng.between(20, 300) as i64 * 1000;
        }
        if k <= 2 {
            self.labels[label as usize].patient = p0;
        }
    }

    /// A day-shift or office worker active between 00:00 and 05:00.
    pub(super) fn off_hours(&mut self, day: i32, used: &mut BTreeSet<u32>) {
        let day0 = self.start + i64::from(day) * DAY;
        let t0 = day0 + 5 * MINUTE + self.rng.below(255 * MINUTE as u64) as i64;
        let ok = |s: &Staff| {
            matches!(s.kind, ShiftKind::Day | ShiftKind::Office)
                && matches!(
                    s.role,
                    Role::Physician
                        | Role::Nurse
                        | Role::Therapist
                        | Role::BillingClerk
                        | Role::Registrar
                        | Role::Pharmacist
                )
                && !s.former
                && s.employed_at(t0)
                && s.employed_at(t0 + 3 * HOUR)
                && !s
                    .shifts
                    .iter()
                    .any(|sh| sh.start < t0 + 2 * HOUR && t0 < sh.end)
        };
        let mut pool: Vec<u32> = (0..self.staff.len() as u32)
            .filter(|&a| ok(&self.staff[a as usize]) && !used.contains(&a))
            .collect();
        if pool.is_empty() {
            pool = (0..self.staff.len() as u32)
                .filter(|&a| ok(&self.staff[a as usize]))
                .collect();
        }
        if pool.is_empty() {
            return;
        }
        let actor = pool[self.rng.index(pool.len())];
        used.insert(actor);
        let label = self.labels.len() as u32;
        self.labels.push(Label {
            scenario: Scenario::OffHours,
            actor,
            patient: NONE,
        });
        let session = self.rng.next_u64() as u32;
        let ip = vpn_ip(&mut self.rng);
        let mut ev = self.ev(t0, actor, session, Action::Login, NONE);
        ev.ip = ip;
        self.push_labelled(ev, label);
        let dept = self.staff[actor as usize].dept;
        let own = self.current_patients(Some(dept), t0, 10);
        let mut t = t0 + self.rng.between(30, 180) as i64 * 1000;
        for _ in 0..self.rng.between(5, 30) {
            let p = if !own.is_empty() && self.rng.chance(0.5) {
                own[self.rng.index(own.len())]
            } else {
                self.rng.index(self.flags.len()) as u32
            };
            let mut ev = self.ev(t, actor, session, Action::Read, p);
            ev.ip = ip;
            ev.resource =
                *self
                    .rng
                    .pick(&[res::PATIENT, res::DOCUMENT, res::OBSERVATION, res::REPORT]);
            self.push_labelled(ev, label);
            t += self.rng.between(30, 240) as i64 * 1000;
        }
    }
}

/// An address of the VPN's pool (`172.16.x.y`): staff working from home.
pub(super) fn vpn_ip(rng: &mut Rng) -> u32 {
    (172 << 24) | (16 << 16) | (rng.below(16) as u32) << 8 | (rng.between(2, 250) as u32)
}
