//! Support departments and scheduled jobs.
//!
//! * **Registration**: a registrar on duty registers every arrival and
//!   transfer (3–7 events around the start of the encounter); a
//!   department-wide `admissions` care-team row covers the first day.
//!   Registrars also read a few current patients for bed management
//!   (`HOPERAT`) each shift.
//! * **Pharmacy**: a pharmacist on duty verifies each encounter's
//!   medication orders soon after arrival and then daily (2–5 events),
//!   each time after a medication order by the care team (`orders`); a
//!   `pharmacy` row covers the stay in 95% of encounters.
//! * **Radiology**: about 55% of emergency encounters and 25% of inpatients
//!   a day get an imaging order (an order event, `orders`); a radiologist
//!   on duty reads it within the hour (3–6 events); a `radiology` row
//!   covers the order for two days in 95% of cases.
//! * **Billing** (`HPAYMT`): on office days each clerk works about 70
//!   accounts × their activity (so some clerks touch well over a hundred
//!   patients a day), 2–6 events each, for patients discharged in the past
//!   two weeks or (one in four) older accounts.
//! * **Research** (`HRESCH`): on office days each researcher reads about 40
//!   × their activity patients whose research consent is granted at that
//!   moment, with searches; on about one day in seven a researcher exports
//!   a cohort (50–2,500 records) to the research enclave (allowed).
//! * **Service accounts**: `svc-etl-1` exports the day's data to the
//!   warehouse every night around 01:30 (3–6 exports, 3,000–40,000 records
//!   each, allowed) and records a lineage `derive`; `svc-claims-1` sends
//!   claims to the clearinghouse on weekday evenings (allowed).

use super::Gen;
use super::model::{Action, CareRow, DAY, Dept, HOUR, MINUTE, NONE, Purpose, Role, ShiftKind, res};
use super::orders::Ask;
use super::staff::weekday;

/// Allowed export destinations (`export_allow.csv`).
pub(super) const EXPORT_ALLOW: [&str; 5] = [
    "sftp://warehouse.hospital.internal/*",
    "sftp://research-enclave.hospital.internal/*",
    "sftp://edi.clearinghouse.example.org/inbound/*",
    "printer:hospital/*",
    "s3://hospital-archive/*",
];

impl Gen {
    pub(super) fn support_work(&mut self) {
        for e in 0..self.encounters.len() {
            let x = self.encounters[e];
            if x.end <= self.start || x.start >= self.end {
                continue;
            }
            // Registration.
            if x.start >= self.start {
                if let Some((actor, shift)) =
                    self.on_duty_role(Dept::Admissions, Role::Registrar, x.start)
                {
                    let t = x.start + (self.rng.below(15) as i64 - 5) * MINUTE;
                    let n = self.rng.between(3, 7) as u32;
                    self.support_visit(
                        actor,
                        shift,
                        x.patient,
                        t,
                        n,
                        &[res::PATIENT, res::COVERAGE, res::ENCOUNTER],
                    );
                }
                self.care.push(CareRow {
                    patient: x.patient,
                    actor: NONE,
                    dept: Dept::Admissions,
                    start: x.start - HOUR,
                    end: x.start + DAY,
                });
            }
            // Pharmacy verification, on arrival then daily.
            if self.rng.chance(0.95) {
                self.care.push(CareRow {
                    patient: x.patient,
                    actor: NONE,
                    dept: Dept::Pharmacy,
                    start: x.start,
                    end: x.end + 12 * HOUR,
                });
            } else {
                self.count("pharmacy_reads_without_care_row", 1);
            }
            let mut t = x.start + (self.rng.exp() * 40.0) as i64 * MINUTE;
            while t < x.end.min(self.end) {
                // Verification follows the medication order.
                let at = if t >= self.start {
                    let ask = Ask {
                        patient: x.patient,
                        ward: x.dept,
                        to: Dept::Pharmacy,
                        resource: res::MED_REQUEST,
                    };
                    self.order_first(ask, t, 30 * MINUTE, 20 * MINUTE)
                } else {
                    t
                };
                if t >= self.start
                    && let Some((actor, shift)) =
                        self.on_duty_role(Dept::Pharmacy, Role::Pharmacist, at)
                {
                    let n = self.rng.between(2, 5) as u32;
                    self.support_visit(
                        actor,
                        shift,
                        x.patient,
                        at,
                        n,
                        &[res::MED_REQUEST, res::MED_REQUEST, res::OBSERVATION],
                    );
                }
                t += DAY + (self.rng.normal() * 2.0 * HOUR as f64) as i64;
            }
            // Imaging orders read by radiology.
            let mut orders = Vec::new();
            if x.dept == Dept::Emergency {
                if self.rng.chance(0.55) {
                    orders.push(x.start + (self.rng.exp() * 60.0) as i64 * MINUTE);
                }
            } else {
                let mut d = x.start.max(self.start - DAY);
                while d < x.end.min(self.end) {
                    if self.rng.chance(0.25) {
                        orders.push(d + self.rng.below(12 * HOUR as u64) as i64);
                    }
                    d += DAY;
                }
            }
            for order in orders {
                let read = order + (self.rng.exp() * 45.0) as i64 * MINUTE + MINUTE;
                if order >= x.end || read < self.start {
                    continue;
                }
                if self.rng.chance(0.95) {
                    self.care.push(CareRow {
                        patient: x.patient,
                        actor: NONE,
                        dept: Dept::Radiology,
                        start: order,
                        end: order + 2 * DAY,
                    });
                } else {
                    self.count("imaging_reads_without_care_row", 1);
                }
                // The image is taken, and read, after it is ordered.
                let ask = Ask {
                    patient: x.patient,
                    ward: x.dept,
                    to: Dept::Radiology,
                    resource: res::ORDER,
                };
                let read = self.order_first(ask, read, read - order, 20 * MINUTE);
                if let Some((actor, shift)) =
                    self.on_duty_role(Dept::Radiology, Role::Physician, read)
                {
                    let n = self.rng.between(3, 6) as u32;
                    self.support_visit(
                        actor,
                        shift,
                        x.patient,
                        read,
                        n,
                        &[res::IMAGING, res::REPORT, res::REPORT],
                    );
                }
            }
        }
        self.registrar_bed_management();
        self.billing();
        self.research();
    }

    /// A visit with the first event a read and then reads or updates of
    /// the given resources, cut at the end of the shift.
    fn support_visit(
        &mut self,
        actor: u32,
        shift: super::model::Shift,
        patient: u32,
        t: i64,
        n: u32,
        kinds: &[u8],
    ) {
        let mut t = t;
        for i in 0..n {
            if t >= shift.end {
                break;
            }
            let mut ev = self.ev(t, actor, shift.session, Action::Read, patient);
            ev.resource = kinds[self.rng.index(kinds.len())];
            if i > 0 && self.rng.chance(0.3) {
                ev.action = Action::Update;
            }
            if i == 0 && ev.resource == res::PATIENT && self.rng.chance(0.3) {
                ev.action = Action::Create;
            }
            self.push(ev);
            t += self.gap();
        }
    }

    fn registrar_bed_management(&mut self) {
        for actor in self.by_dept[Dept::Admissions as usize].clone() {
            for shift in self.staff[actor as usize].shifts.clone() {
                let login = self.ev(
                    shift.start + 2 * MINUTE,
                    actor,
                    shift.session,
                    Action::Login,
                    NONE,
                );
                self.push(login);
                for _ in 0..self.poisson(4.0) {
                    let t = self.within(shift.start, shift.end);
                    let current: Vec<u32> = (0..40)
                        .map(|_| self.rng.index(self.encounters.len()))
                        .filter(|&e| self.encounters[e].start <= t && t < self.encounters[e].end)
                        .map(|e| self.encounters[e].patient)
                        .collect();
                    if let Some(&p) = current.first() {
                        let mut ev = self.ev(t, actor, shift.session, Action::Read, p);
                        ev.purpose = Purpose::Hoperat;
                        ev.resource = res::ENCOUNTER;
                        self.push(ev);
                        self.count("bed_management_reads", 1);
                    }
                }
            }
        }
    }

    fn billing(&mut self) {
        let mut discharged: Vec<(i64, u32)> =
            self.encounters.iter().map(|x| (x.end, x.patient)).collect();
        discharged.sort_unstable();
        for actor in self.by_dept[Dept::Billing as usize].clone() {
            let activity = self.staff[actor as usize].activity;
            for shift in self.staff[actor as usize].shifts.clone() {
                let login = self.ev(shift.start, actor, shift.session, Action::Login, NONE);
                self.push(login);
                let lo = discharged.partition_point(|d| d.0 < shift.start - 14 * DAY);
                let hi = discharged.partition_point(|d| d.0 < shift.start);
                let accounts = (70.0 * activity * (0.25 * self.rng.normal()).exp()).round() as u32;
                for _ in 0..accounts {
                    let p = if hi > lo && self.rng.chance(0.75) {
                        discharged[lo + self.rng.index(hi - lo)].1
                    } else {
                        self.rng.index(self.flags.len()) as u32
                    };
                    let t = self.within(shift.start, shift.end);
                    let n = self.rng.between(2, 6) as u32;
                    self.support_visit(
                        actor,
                        shift,
                        p,
                        t,
                        n,
                        &[res::ACCOUNT, res::CLAIM, res::ENCOUNTER, res::COVERAGE],
                    );
                    self.count("billing_accounts", 1);
                }
            }
        }
    }

    fn research(&mut self) {
        for actor in self.by_dept[Dept::Research as usize].clone() {
            let activity = self.staff[actor as usize].activity;
            for shift in self.staff[actor as usize].shifts.clone() {
                let login = self.ev(shift.start, actor, shift.session, Action::Login, NONE);
                self.push(login);
                for _ in 0..self.rng.between(3, 10) {
                    let t = self.within(shift.start, shift.end);
                    let ev = self.ev(t, actor, shift.session, Action::Search, NONE);
                    self.push(ev);
                }
                let patients = (40.0 * activity * (0.3 * self.rng.normal()).exp()).round() as u32;
                for _ in 0..patients {
                    let t = self.within(shift.start, shift.end);
                    let Some(p) = self.consented_patient(t) else {
                        continue;
                    };
                    let mut t = t;
                    for _ in 0..self.rng.between(1, 4) {
                        if t >= shift.end {
                            break;
                        }
                        let mut ev = self.ev(t, actor, shift.session, Action::Read, p);
                        ev.resource =
                            *self
                                .rng
                                .pick(&[res::OBSERVATION, res::REPORT, res::DOCUMENT]);
                        // The consent must hold at every read, not only the first.
                        if self.consent_at(p, t) == super::ConsentAt::Granted {
                            self.push(ev);
                            self.count("research_consented_reads", 1);
                        }
                        t += self.gap();
                    }
                }
                if self.rng.chance(1.0 / 7.0) {
                    let t = self.within(shift.start + HOUR, shift.end);
                    let d = format!(
                        "sftp://research-enclave.hospital.internal/projects/p-{}",
                        100 + self.rng.below(40)
                    );
                    let mut ev = self.ev(t, actor, shift.session, Action::Export, NONE);
                    ev.resource = res::BUNDLE;
                    ev.records = self.rng.between(50, 2500) as u32;
                    ev.dest = self.dest(&d);
                    self.push(ev);
                    self.count("research_exports", 1);
                }
            }
        }
    }

    /// The nightly warehouse export and the weekday claims export.
    pub(super) fn service_jobs(&mut self) {
        let etl = self
            .staff
            .iter()
            .position(|s| s.id == "svc-etl-1")
            .unwrap_or(0) as u32;
        let claims = self
            .staff
            .iter()
            .position(|s| s.id == "svc-claims-1")
            .unwrap_or(0) as u32;
        debug_assert_eq!(self.staff[etl as usize].kind, ShiftKind::Batch);
        for day in 0..self.days() {
            let day0 = self.start + i64::from(day) * DAY;
            let session = self.rng.next_u64() as u32;
            let mut t = day0 + 90 * MINUTE + self.rng.below(10 * MINUTE as u64) as i64;
            let login = self.ev(t, etl, session, Action::Login, NONE);
            self.push(login);
            let mut date = Vec::new();
            crate::source::synth::json::write_time(&mut date, day0 - DAY, None, false);
            let date = String::from_utf8_lossy(&date[..10]).into_owned();
            for table in [
                "encounters",
                "observations",
                "medications",
                "notes",
                "orders",
                "billing",
            ]
            .iter()
            .take(self.rng.between(3, 6) as usize)
            {
                t += (2.0 + self.rng.exp() * 3.0) as i64 * MINUTE;
                let d = format!("sftp://warehouse.hospital.internal/nightly/{date}/{table}");
                let mut ev = self.ev(t, etl, session, Action::Export, NONE);
                ev.resource = res::BUNDLE;
                ev.records = self.rng.between(3000, 40_000) as u32;
                ev.dest = self.dest(&d);
                self.push(ev);
                self.count("nightly_exports", 1);
            }
            let mut lineage = self.ev(t + MINUTE, etl, session, Action::Derive, NONE);
            lineage.dest = self.dest(&format!("dataset:warehouse-{date}"));
            self.push(lineage);
            if weekday(day0) < 5 {
                let t = day0 + 22 * HOUR + self.rng.below(20 * MINUTE as u64) as i64;
                let session = self.rng.next_u64() as u32;
                let d = format!(
                    "sftp://edi.clearinghouse.example.org/inbound/batch-{}",
                    5000 + day
                );
                let mut ev = self.ev(t, claims, session, Action::Export, NONE);
                ev.purpose = Purpose::Hpaymt;
                ev.resource = res::CLAIM;
                ev.records = self.rng.between(200, 1500) as u32;
                ev.dest = self.dest(&d);
                self.push(ev);
                self.count("claims_exports", 1);
            }
        }
    }
}
