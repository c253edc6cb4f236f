//! Orders: how a treating physician asks another department to act for a
//! patient. Imaging studies (`ServiceRequest` to radiology), medications
//! (`MedicationRequest`, verified by pharmacy) and consults
//! (`ServiceRequest` to another ward) are ordered in the EHR before the
//! department that serves them opens the chart, and the order entry is in
//! the audit trail: a `create` by the ordering physician, purpose `TREAT`,
//! with the department asked to perform it in `attrs.performer_dept`.
//!
//! The orderer is a physician of the patient's ward with a per-actor
//! care-team row for the patient, on shift when the order is placed (the
//! latest to have joined the care team when several qualify), else a nurse
//! of the team (protocol orders at triage, verbal orders entered by the
//! nurse). Medication verification and imaging reads cannot precede their
//! order: when nobody could have ordered in time, they wait for the first
//! who can. When nobody on the team is on shift at all, no order event is
//! written and the service goes ahead without one (a paper or downtime
//! order); `orders_missing` counts those.
//!
//! Placing an order draws nothing from the generator's random stream, so
//! adding orders leaves the rest of the workload as it was.

use super::Gen;
use super::model::{Action, Dept, MINUTE, Purpose, Role};

/// What is ordered: for `patient` of `ward`, of department `to`, as a
/// `resource` (an index into `RESOURCES`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask {
    pub patient: u32,
    pub ward: Dept,
    pub to: Dept,
    pub resource: u8,
}

/// Who orders, when, in which session: (actor, time, session).
type Orderer = (u32, i64, u32);

impl Gen {
    /// Per patient, the per-actor care-team rows of the physicians and
    /// nurses of the patient's ward, as (actor, ward, start, end); built
    /// once after ward care.
    pub(super) fn index_orderers(&mut self) {
        self.orderers.clear();
        for row in &self.care {
            if row.actor == super::NONE {
                continue;
            }
            let s = &self.staff[row.actor as usize];
            if !matches!(s.role, Role::Physician | Role::Nurse) || s.dept != row.dept {
                continue;
            }
            self.orderers
                .entry(row.patient)
                .or_default()
                .push((row.actor, row.dept, row.start, row.end));
        }
    }

    /// Who can order for `patient` at the time `when(start)` gives for a
    /// care-team row starting at `start`: a physician or nurse of `ward`
    /// on the patient's care team and on shift then, physicians first,
    /// then the latest (`latest`) or earliest to have joined the team.
    /// Returns (actor, time, session).
    fn orderer(
        &self,
        patient: u32,
        ward: Dept,
        when: impl Fn(i64) -> Option<i64>,
        latest: bool,
    ) -> Option<Orderer> {
        let mut best: Option<((bool, i64), Orderer)> = None;
        for &(actor, dept, start, end) in self.orderers.get(&patient).into_iter().flatten() {
            let Some(t) = when(start) else { continue };
            if dept != ward || end <= t {
                continue;
            }
            let s = &self.staff[actor as usize];
            let Some(shift) = s.shifts.iter().find(|sh| sh.start <= t && t < sh.end) else {
                continue;
            };
            let rank = (
                s.role == Role::Physician,
                if latest { start } else { -start },
            );
            if best.is_none_or(|b| rank > b.0) {
                best = Some((rank, (actor, t, shift.session)));
            }
        }
        best.map(|b| b.1)
    }

    fn write_order(&mut self, (actor, t, session): Orderer, ask: Ask) {
        let mut ev = self.ev(t, actor, session, Action::Create, ask.patient);
        ev.purpose = Purpose::Treat;
        ev.resource = ask.resource;
        ev.order_to = Some(ask.to);
        self.push(ev);
        self.count("orders", 1);
    }

    /// Writes the order `ask` by someone treating the patient in its ward,
    /// `lead` before `service` (or as soon as they have seen the patient,
    /// if later), at least a minute before `service`. Returns whether one
    /// was written.
    pub(super) fn place_order(&mut self, ask: Ask, service: i64, lead: i64) -> bool {
        let found = self.orderer(
            ask.patient,
            ask.ward,
            |start| Some((service - lead).max(start + MINUTE)).filter(|&t| t <= service - MINUTE),
            true,
        );
        match found {
            Some(o) => {
                self.write_order(o, ask);
                true
            }
            None => {
                self.count("orders_missing", 1);
                false
            }
        }
    }

    /// Like [`Gen::place_order`], for a service that cannot come before its
    /// order (a pharmacist verifies what was ordered; a radiologist reads
    /// an image taken on order): when nobody could have ordered by
    /// `service`, the first who can orders, and the service follows
    /// `after` later. Returns the service's time.
    pub(super) fn order_first(&mut self, ask: Ask, service: i64, lead: i64, after: i64) -> i64 {
        if self.place_order(ask, service, lead) {
            return service;
        }
        let found = self.orderer(ask.patient, ask.ward, |start| Some(start + MINUTE), false);
        match found {
            Some(o) if o.1 + after < self.end => {
                *self.benign.entry("orders_missing").or_default() -= 1;
                self.write_order(o, ask);
                o.1 + after
            }
            _ => service,
        }
    }
}
