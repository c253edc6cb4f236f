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
//! latest to have joined the care team when several qualify). When no such
//! physician is on shift before the service (a verbal or protocol order
//! entered later, say), no order event is written and the service goes
//! ahead without one; `orders_missing` counts those.
//!
//! Placing an order draws nothing from the generator's random stream, so
//! adding orders leaves the rest of the workload as it was.

use super::Gen;
use super::model::{Action, Dept, MINUTE, Purpose, Role};

impl Gen {
    /// Per patient, the per-actor care-team rows of physicians, as
    /// (actor, ward, start, end); built once after ward care.
    pub(super) fn index_orderers(&mut self) {
        self.orderers.clear();
        for row in &self.care {
            if row.actor == super::NONE
                || self.staff[row.actor as usize].role != Role::Physician
                || self.staff[row.actor as usize].dept != row.dept
            {
                continue;
            }
            self.orderers.entry(row.patient).or_default().push((
                row.actor,
                row.dept,
                row.start,
                row.end,
            ));
        }
    }

    /// Writes an order of `resource` for `patient` to department `to`, by a
    /// physician of `ward` treating the patient, at `lead` before `service`
    /// (or as soon as the physician has seen the patient, if later), at
    /// least a minute before `service`. Returns whether one was written.
    pub(super) fn place_order(
        &mut self,
        patient: u32,
        ward: Dept,
        service: i64,
        lead: i64,
        to: Dept,
        resource: u8,
    ) -> bool {
        let mut best: Option<(i64, u32, i64, u32)> = None;
        for &(actor, dept, start, end) in self.orderers.get(&patient).into_iter().flatten() {
            let t = (service - lead).max(start + MINUTE);
            if dept != ward || t > service - MINUTE || end <= t {
                continue;
            }
            let Some(shift) = self.staff[actor as usize]
                .shifts
                .iter()
                .find(|sh| sh.start <= t && t < sh.end)
            else {
                continue;
            };
            if best.is_none_or(|b| start > b.0) {
                best = Some((start, actor, t, shift.session));
            }
        }
        let Some((_, actor, t, session)) = best else {
            self.count("orders_missing", 1);
            return false;
        };
        let mut ev = self.ev(t, actor, session, Action::Create, patient);
        ev.purpose = Purpose::Treat;
        ev.resource = resource;
        ev.order_to = Some(to);
        self.push(ev);
        self.count("orders", 1);
        true
    }
}
