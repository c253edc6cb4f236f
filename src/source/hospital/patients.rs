//! Patients, their flags and research consent, and their encounters.
//!
//! * About 1% of patients are flagged in `vip.csv` (40% `vip`, 35%
//!   `restricted`, 25% `employee`).
//! * Research consent (`HRESCH`): about 38% granted before the run (7% of
//!   them withdrawn since, half of those during the run), 3% granted during
//!   the run, the rest never asked (absent).
//! * Encounters are generated hour by hour from 12 days before the run (so
//!   the wards are full when it starts) to its end. Emergency arrivals
//!   follow a diurnal curve (busiest late morning to evening, quietest
//!   around 04:00, slightly busier at weekends); ward admissions are
//!   elective, in daytime on weekdays (a third of that at weekends), plus
//!   transfers of about 24% of emergency patients to a ward at the end of
//!   their emergency stay. Each day has its own volume factor (log-normal,
//!   σ = 0.12). Stays are log-normal around the ward's median (σ = 0.6);
//!   emergency stays 1–24 h. A patient is in one encounter at a time; one
//!   arrival in five is a frequent patient (the first 1/15 of a shuffled
//!   population); flagged patients are admitted somewhat more often than
//!   average so that care-team reads of them occur in every run.

use super::model::{DAY, Dept, Encounter, Flag, HOUR, MINUTE, WARD_SPECS};
use super::staff::weekday;
use super::{ConsentAt, Gen};
use crate::source::hospital::model::ConsentRow;

/// Emergency arrivals by hour of day, relative (mean about 1).
const ED_CURVE: [f64; 24] = [
    0.7, 0.6, 0.5, 0.45, 0.4, 0.45, 0.6, 0.85, 1.1, 1.3, 1.4, 1.4, 1.35, 1.3, 1.3, 1.3, 1.3, 1.3,
    1.25, 1.2, 1.1, 1.0, 0.9, 0.8,
];

impl Gen {
    pub(super) fn build_patients(&mut self) {
        let n = self.cfg.patients.max(100);
        self.flags = vec![None; n];
        let flagged = (n / 100).max(3);
        let mut k = 0;
        while k < flagged {
            let p = self.rng.index(n);
            if self.flags[p].is_some() {
                continue;
            }
            let r = self.rng.below(100);
            self.flags[p] = Some(if r < 40 {
                Flag::Vip
            } else if r < 75 {
                Flag::Restricted
            } else {
                Flag::Employee
            });
            k += 1;
        }
        let span = self.end - self.start;
        self.consent_times = vec![(i64::MAX, i64::MAX); n];
        for p in 0..n {
            let r = self.rng.unit();
            let (granted, withdrawn) = if r < 0.38 {
                let g = self.start - self.rng.between(1, 1000) as i64 * DAY
                    + self.rng.below(DAY as u64) as i64;
                let w = if self.rng.chance(0.07) {
                    if self.rng.chance(0.5) {
                        self.within(g + DAY, self.start)
                    } else {
                        self.within(self.start, self.end)
                    }
                } else {
                    i64::MAX
                };
                (g, w)
            } else if r < 0.41 {
                (self.start + self.rng.below(span as u64) as i64, i64::MAX)
            } else {
                continue;
            };
            self.consent_times[p] = (granted, withdrawn);
            self.consent.push(ConsentRow {
                patient: p as u32,
                granted: true,
                time: granted,
            });
            if withdrawn != i64::MAX {
                self.consent.push(ConsentRow {
                    patient: p as u32,
                    granted: false,
                    time: withdrawn,
                });
            }
        }
    }

    pub(super) fn build_encounters(&mut self) {
        let n = self.flags.len();
        let scale = self.cfg.staff.max(20) as f64 / 240.0;
        let mut order: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = self.rng.index(i + 1);
            order.swap(i, j);
        }
        let frequent = &order[..(n / 15).max(1)].to_vec();
        let vips: Vec<u32> = (0..n as u32)
            .filter(|&p| self.flags[p as usize].is_some())
            .collect();
        let mut busy = vec![i64::MIN; n];
        let from = self.start - 12 * DAY;
        let hours = (self.end - from) / HOUR;
        let mut day_factor = 1.0;
        let transfer_total: f64 = WARD_SPECS.iter().map(|w| w.from_emergency).sum();
        for h in 0..hours {
            let t0 = from + h * HOUR;
            let hour = (t0.rem_euclid(DAY) / HOUR) as usize;
            if hour == 0 || h == 0 {
                day_factor = (0.12 * self.rng.normal()).exp();
            }
            let weekend = weekday(t0) >= 5;
            for spec in WARD_SPECS {
                let shape = if spec.dept == Dept::Emergency {
                    ED_CURVE[hour] * if weekend { 1.08 } else { 1.0 }
                } else if (7..18).contains(&hour) {
                    (24.0 / 11.0) * if weekend { 0.33 } else { 1.0 }
                } else {
                    0.0
                };
                let mean = spec.arrivals_per_day / 24.0 * shape * day_factor * scale;
                for _ in 0..self.poisson(mean) {
                    let t = t0 + self.rng.below(HOUR as u64) as i64;
                    let Some(p) = self.pick_patient(t, frequent, &vips, &busy) else {
                        continue;
                    };
                    let mut end = t + self.stay(spec.los_hours, spec.dept == Dept::Emergency);
                    self.admit(p, spec.dept, t, end, spec.dept_row);
                    if spec.dept == Dept::Emergency && self.rng.chance(transfer_total) {
                        let mut r = self.rng.unit() * transfer_total;
                        let ward = WARD_SPECS
                            .iter()
                            .skip(1)
                            .find(|w| {
                                r -= w.from_emergency;
                                r < 0.0
                            })
                            .unwrap_or(&WARD_SPECS[2]);
                        let start = end;
                        end = start + self.stay(ward.los_hours, false);
                        self.admit(p, ward.dept, start, end, ward.dept_row);
                    }
                    busy[p as usize] = end;
                }
            }
        }
        let in_run: Vec<&Encounter> = self
            .encounters
            .iter()
            .filter(|e| e.end > self.start && e.start < self.end)
            .collect();
        let vip_encounters = in_run
            .iter()
            .filter(|e| self.flags[e.patient as usize].is_some())
            .count();
        let n_in_run = in_run.len() as u64;
        self.count("encounters", n_in_run);
        self.count("vip_encounters", vip_encounters as u64);
    }

    fn admit(&mut self, patient: u32, dept: Dept, start: i64, end: i64, dept_row_share: f64) {
        let dept_row = self.rng.chance(dept_row_share);
        self.encounters.push(Encounter {
            patient,
            dept,
            start,
            end,
            dept_row,
        });
    }

    /// A length of stay in milliseconds.
    fn stay(&mut self, median_hours: f64, emergency: bool) -> i64 {
        let h = median_hours * (0.6 * self.rng.normal()).exp();
        let h = if emergency {
            h.clamp(1.0, 24.0)
        } else {
            h.clamp(6.0, 30.0 * 24.0)
        };
        (h * 60.0) as i64 * MINUTE + self.rng.below(MINUTE as u64) as i64
    }

    fn pick_patient(
        &mut self,
        t: i64,
        frequent: &[u32],
        vips: &[u32],
        busy: &[i64],
    ) -> Option<u32> {
        for _ in 0..30 {
            let r = self.rng.below(1000);
            let p = if r < 200 {
                frequent[self.rng.index(frequent.len())]
            } else if r < 215 && !vips.is_empty() {
                vips[self.rng.index(vips.len())]
            } else {
                self.rng.index(busy.len()) as u32
            };
            if busy[p as usize] < t {
                return Some(p);
            }
        }
        None
    }

    /// A patient whose research consent is granted at `t` (up to 40 tries).
    pub(super) fn consented_patient(&mut self, t: i64) -> Option<u32> {
        let n = self.consent_times.len();
        for _ in 0..40 {
            let p = self.rng.index(n) as u32;
            if self.consent_at(p, t) == ConsentAt::Granted {
                return Some(p);
            }
        }
        None
    }
}
