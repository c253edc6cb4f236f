//! Normal traffic: clinicians reading and writing records of their
//! patients, ETL services exporting in bulk to internal destinations, and
//! model-gateway inference by clinicians and scoring services. (Lineage
//! events, the rest of the mix, are in `lineage`.)
//!
//! Who acts follows the hour: clinicians are drawn by activity weight times
//! their shift factor, so the night shift dominates at night.

use super::events::{Access, Input, Who};
use super::population::{Role, ServiceKind, session_id};
use super::vocab::{
    Action, INTERNAL_BULK_DESTINATIONS, MODEL_MIX, NORMAL_EXPORT_DESTINATIONS, RES_BUNDLE,
    RES_DOCUMENT, SEARCH_QUERIES,
};
use super::{SynthMessage, Truth, Workload};

// Stream composition.
pub(super) const ACCESS_PERMILLE: u64 = 800;
pub(super) const INFERENCE_PERMILLE: u64 = 150;
/// Share of access messages that are internal bulk exports by ETL services,
/// per 10 000.
pub(super) const SERVICE_EXPORT_PER_10K: u64 = 40;
/// Share of inference requests made by clinicians (the rest: scoring services).
pub(super) const CLINICIAN_INFERENCE_PERMILLE: u64 = 600;

impl Workload {
    /// A normal message: 80% access, 15% inference, 5% lineage.
    pub(super) fn normal(&mut self, ms: i64, hour: usize) -> SynthMessage {
        let r = self.rng.below(1000);
        if r < ACCESS_PERMILLE {
            if self.rng.below(10_000) < SERVICE_EXPORT_PER_10K {
                self.service_export(ms)
            } else {
                self.clinician_access(ms, hour)
            }
        } else if r < ACCESS_PERMILLE + INFERENCE_PERMILLE {
            self.normal_inference(ms, hour)
        } else {
            self.normal_lineage(ms)
        }
    }

    fn clinician_access(&mut self, ms: i64, hour: usize) -> SynthMessage {
        let ci = self.access_pick.sample(&mut self.rng, hour).unwrap_or(0);
        let role = self.clinicians[ci].role;
        let action = self.rng.choose(role.actions());
        if action == Action::Login {
            self.clinicians[ci].session = session_id(&mut self.rng);
        }
        let mut ev = Access::new(action);
        let mut far = false;
        match action {
            Action::Login => {}
            Action::Search => ev.query = Some(*self.rng.pick(SEARCH_QUERIES)),
            _ => {
                let (p, f) = self.pick_patient(ci);
                far = f;
                ev.patient = Some(p);
                let res = match action {
                    Action::Print => Some(RES_DOCUMENT),
                    Action::Read if self.rng.permille(100) => None,
                    _ => Some(self.rng.choose(self.clinicians[ci].resources())),
                };
                ev.resource = res.map(|r| self.resource_ref(r));
                if action == Action::Export {
                    ev.records = Some(self.rng.between(1, 40));
                    ev.destination = Some(*self.rng.pick(NORMAL_EXPORT_DESTINATIONS));
                }
            }
        }
        if action != Action::Login && self.rng.permille(950) {
            ev.purpose = Some(match role {
                Role::Registrar => {
                    if self.rng.permille(700) {
                        "HOPERAT"
                    } else {
                        "HPAYMT"
                    }
                }
                _ if far && self.rng.permille(100) => "ETREAT",
                _ if self.rng.permille(20) => "HOPERAT",
                _ => "TREAT",
            });
        }
        let denied = if far { 80 } else { 10 };
        let r = self.rng.below(1000);
        ev.outcome = if r < denied {
            Some("denied")
        } else if r < denied + 3 {
            Some("error")
        } else if r < 500 {
            Some("success")
        } else {
            None
        };
        let source = self.clinicians[ci].access_source(&mut self.rng);
        self.emit_access(ms, Who::Clinician(ci), None, &ev, source, Truth::Normal)
    }

    fn service_export(&mut self, ms: i64) -> SynthMessage {
        let si = self.service_of(ServiceKind::Etl);
        let mut ev = Access::new(Action::Export);
        ev.records = Some(self.rng.between(5_000, 80_000));
        ev.destination = Some(*self.rng.pick(INTERNAL_BULK_DESTINATIONS));
        ev.purpose = Some(if self.rng.permille(800) {
            "HOPERAT"
        } else {
            "HRESCH"
        });
        ev.resource = Some(self.resource_ref(RES_BUNDLE));
        self.emit_access(
            ms,
            Who::Service(si),
            None,
            &ev,
            Some("ehr-prod"),
            Truth::Normal,
        )
    }

    /// A service of `kind`, or any service when there is none of that kind.
    pub(super) fn service_of(&mut self, kind: ServiceKind) -> usize {
        let of_kind = &self.services_by_kind[kind as usize];
        if of_kind.is_empty() {
            self.rng.index(self.services.len())
        } else {
            of_kind[self.rng.index(of_kind.len())]
        }
    }

    fn normal_inference(&mut self, ms: i64, hour: usize) -> SynthMessage {
        let model = self.rng.choose(MODEL_MIX);
        let by_clinician = self.rng.below(1000) < CLINICIAN_INFERENCE_PERMILLE;
        let user = if by_clinician {
            self.model_user_pick.sample(&mut self.rng, hour)
        } else {
            None
        };
        // Clinicians ask about one of their patients; scoring services run
        // batches, sometimes without a patient, and ask for scores more often.
        // Per mille: sampled features, scores returned, purpose given.
        let (who, patient, (sampled, scores, purpose)) = match user {
            Some(ci) => {
                let (patient, _) = self.pick_patient(ci);
                (Who::Clinician(ci), Some(patient), (950, 30, 900))
            }
            None => {
                let si = self.service_of(ServiceKind::Scoring);
                let patient = self.rng.permille(800).then(|| self.any_patient());
                (Who::Service(si), patient, (750, 300, 500))
            }
        };
        let input = if self.rng.permille(sampled) {
            Input::Sampled
        } else {
            Input::Fingerprint
        };
        let scores = self.rng.permille(scores);
        let purpose = self.rng.permille(purpose).then_some("TREAT");
        self.emit_inference(
            ms,
            who,
            model,
            patient,
            input,
            scores,
            purpose,
            Truth::Normal,
        )
    }
}
