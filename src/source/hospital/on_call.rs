//! On call: a hard benign case for `off_hours`. Ward physicians on day
//! shifts (cardiology, oncology, surgery, pediatrics, neurology) are on
//! call after about one day shift in four; on about 70% of those nights
//! they are called, one to three times between 20:00 and 06:00, and look
//! at 1–3
//! of their inpatients (those with a care-team row naming them at the
//! time), 1–3 reads each (results and observations, seconds apart), after
//! a login from home over the VPN (`172.16.x.y`).
//!
//! Drawn from a stream of its own (the seed with a salt), so the
//! workload's other draws are as they would be without it.

use std::collections::BTreeMap;

use super::Gen;
use super::model::{Action, Dept, HOUR, MINUTE, Role, ShiftKind, res};
use crate::source::synth::rng::Rng;

const SALT: u64 = 0x6f6e_6361_6c6c_0001;

const WARDS: [Dept; 5] = [
    Dept::Cardiology,
    Dept::Oncology,
    Dept::Surgery,
    Dept::Pediatrics,
    Dept::Neurology,
];

impl Gen {
    pub(super) fn on_call(&mut self) {
        let mut rng = Rng::new(self.cfg.seed ^ SALT);
        let mut rows: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (i, r) in self.care.iter().enumerate() {
            rows.entry(r.actor).or_default().push(i);
        }
        let (mut nights, mut calls) = (0, 0);
        for actor in 0..self.staff.len() as u32 {
            let s = &self.staff[actor as usize];
            if s.role != Role::Physician || s.kind != ShiftKind::Day || !WARDS.contains(&s.dept) {
                continue;
            }
            let shifts: Vec<i64> = s.shifts.iter().map(|sh| sh.end).collect();
            for end in shifts {
                if !rng.chance(0.25) {
                    continue;
                }
                nights += 1;
                if !rng.chance(0.7) {
                    continue;
                }
                // The shift ends at 19:00 (plus overtime); calls come from
                // 20:00 to 06:00.
                let night = end - end.rem_euclid(HOUR) + HOUR;
                for _ in 0..rng.between(1, 3) {
                    let t = night + rng.below((10 * HOUR) as u64) as i64;
                    let mine: Vec<u32> = rows
                        .get(&actor)
                        .into_iter()
                        .flatten()
                        .map(|&i| &self.care[i])
                        .filter(|r| r.start <= t && t < r.end)
                        .map(|r| r.patient)
                        .collect();
                    let s = &self.staff[actor as usize];
                    if mine.is_empty() || !s.employed_at(t) || !s.employed_at(t + HOUR) {
                        continue;
                    }
                    calls += 1;
                    let session = rng.next_u64() as u32;
                    let ip = super::off_shift::vpn_ip(&mut rng);
                    let mut ev = self.ev(t, actor, session, Action::Login, super::model::NONE);
                    ev.ip = ip;
                    self.push(ev);
                    let mut at = t + rng.between(20, 90) as i64 * 1000;
                    for _ in 0..rng.between(1, 3) {
                        let p = mine[rng.index(mine.len())];
                        for _ in 0..rng.between(1, 3) {
                            let mut ev = self.ev(at, actor, session, Action::Read, p);
                            ev.ip = ip;
                            ev.resource = *rng.pick(&[res::REPORT, res::OBSERVATION]);
                            self.push(ev);
                            at += rng.between(10, 60) as i64 * 1000;
                        }
                        at += rng.between(1, 5) as i64 * MINUTE;
                    }
                }
            }
        }
        self.count("on_call_nights", nights);
        self.count("on_call_calls", calls);
    }
}
