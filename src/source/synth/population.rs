//! The hospital's population: clinicians with a role, a department, a shift,
//! a workstation and a care panel; the services; the wards that split the
//! patients among the clinical departments; and how activity follows the
//! hour of the day.
//!
//! Building the population draws from the workload's [`Rng`] in a fixed
//! order (clinician by clinician), so a seed always gives the same hospital.

use super::Workload;
use super::rng::{HourlyPick, Rng};
use super::vocab::{
    Action, NURSE_ACTIONS, PHARMACIST_ACTIONS, PHYSICIAN_ACTIONS, REGISTRAR_ACTIONS, RES_GENERAL,
    RES_PHARMACY, RES_RADIOLOGY, RES_REGISTRAR, RES_THERAPY, Res, THERAPIST_ACTIONS,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Physician,
    Nurse,
    Pharmacist,
    Registrar,
    Therapist,
}

impl Role {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Role::Physician => "physician",
            Role::Nurse => "nurse",
            Role::Pharmacist => "pharmacist",
            Role::Registrar => "registrar",
            Role::Therapist => "therapist",
        }
    }

    pub(super) fn uses_models(self) -> bool {
        matches!(self, Role::Physician | Role::Nurse)
    }

    /// The access actions of the role, weighted.
    pub(super) fn actions(self) -> &'static [(Action, u32)] {
        match self {
            Role::Physician => PHYSICIAN_ACTIONS,
            Role::Nurse => NURSE_ACTIONS,
            Role::Pharmacist => PHARMACIST_ACTIONS,
            Role::Registrar => REGISTRAR_ACTIONS,
            Role::Therapist => THERAPIST_ACTIONS,
        }
    }
}

const ROLES: &[(Role, u32)] = &[
    (Role::Nurse, 40),
    (Role::Physician, 28),
    (Role::Registrar, 12),
    (Role::Pharmacist, 8),
    (Role::Therapist, 12),
];

pub(super) const DEPTS: [&str; 11] = [
    "cardiology",
    "emergency",
    "oncology",
    "icu",
    "radiology",
    "pediatrics",
    "surgery",
    "neurology",
    "admissions",
    "pharmacy",
    "rehabilitation",
];
/// The first eight departments have wards (patients of their own).
pub(super) const CLINICAL_DEPTS: usize = 8;
const CLINICAL_DEPT_WEIGHTS: &[(usize, u32); CLINICAL_DEPTS] = &[
    (0, 14),
    (1, 16),
    (2, 12),
    (3, 12),
    (4, 8),
    (5, 10),
    (6, 16),
    (7, 8),
];
const ADMISSIONS: usize = 8;
const PHARMACY: usize = 9;
const REHABILITATION: usize = 10;
/// Share of each department's staff working nights.
const NIGHT_SHARE: [f64; 11] = [0.2, 0.45, 0.1, 0.45, 0.2, 0.25, 0.2, 0.15, 0.2, 0.25, 0.0];

/// Activity of a shift at an hour of the (UTC) day.
pub(super) fn shift_factor(night: bool, hour: usize) -> f64 {
    if night {
        match hour {
            19..=23 | 0..=6 => 1.0,
            7 | 18 => 0.35,
            8 | 17 => 0.05,
            _ => 0.0005,
        }
    } else {
        match hour {
            7..=18 => 1.0,
            6 | 19 => 0.35,
            20 | 21 => 0.05,
            _ => 0.0005,
        }
    }
}

pub(super) fn hour_of(ms: i64) -> usize {
    ms.div_euclid(3_600_000).rem_euclid(24) as usize
}

pub(super) fn is_night(hour: usize) -> bool {
    !(5..23).contains(&hour)
}

#[derive(Debug, Clone)]
pub(super) struct Clinician {
    pub(super) id: String,
    pub(super) role: Role,
    pub(super) dept: usize,
    pub(super) night: bool,
    /// Log-normal activity weight (σ = 1).
    pub(super) weight: f64,
    pub(super) ip: String,
    /// Changes at each login.
    pub(super) session: String,
    pub(super) panel: Vec<u32>,
}

impl Clinician {
    /// Relative activity at `hour`: the weight times the shift factor.
    pub(super) fn activity(&self, hour: usize) -> f64 {
        self.weight * shift_factor(self.night, hour)
    }

    fn in_radiology(&self) -> bool {
        DEPTS[self.dept] == "radiology"
    }

    /// The FHIR resources the clinician reads and writes, weighted.
    pub(super) fn resources(&self) -> &'static [(Res, u32)] {
        match self.role {
            Role::Pharmacist => RES_PHARMACY,
            Role::Registrar => RES_REGISTRAR,
            Role::Therapist => RES_THERAPY,
            _ if self.in_radiology() => RES_RADIOLOGY,
            _ => RES_GENERAL,
        }
    }

    /// The source system of one access (sometimes none).
    pub(super) fn access_source(&self, rng: &mut Rng) -> Option<&'static str> {
        let r = rng.below(1000);
        if r < 30 {
            None
        } else if self.in_radiology() && r < 500 {
            Some("pacs-prod")
        } else if self.role == Role::Pharmacist && r < 600 {
            Some("pharmacy-prod")
        } else if self.role == Role::Nurse && r < 100 {
            Some("ehr-mobile")
        } else {
            Some("ehr-prod")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ServiceKind {
    Scoring = 0,
    Etl = 1,
    Training = 2,
    Deploy = 3,
}

#[derive(Debug, Clone)]
pub(super) struct Service {
    pub(super) id: String,
    pub(super) kind: ServiceKind,
    pub(super) ip: String,
}

/// A new login session id.
pub(super) fn session_id(rng: &mut Rng) -> String {
    format!("s-{:08x}", rng.next_u64() as u32)
}

/// Patient index range of each clinical department's ward, by department
/// weight; every ward is the whole hospital when there are fewer patients
/// than departments.
pub(super) fn wards(patients: u32) -> [(u32, u32); CLINICAL_DEPTS] {
    let mut wards = [(0u32, patients); CLINICAL_DEPTS];
    if patients as usize >= CLINICAL_DEPTS {
        let total_w: u64 = CLINICAL_DEPT_WEIGHTS
            .iter()
            .map(|&(_, w)| u64::from(w))
            .sum();
        let mut start = 0u64;
        let mut acc = 0u64;
        for (d, &(_, w)) in CLINICAL_DEPT_WEIGHTS.iter().enumerate() {
            acc += u64::from(w);
            let end = u64::from(patients) * acc / total_w;
            wards[d] = (start as u32, end as u32);
            start = end;
        }
    }
    wards
}

/// `n` clinicians `emp-0001`…, with panels drawn from their ward.
pub(super) fn clinicians(
    rng: &mut Rng,
    n: usize,
    patients: u32,
    wards: &[(u32, u32); CLINICAL_DEPTS],
) -> Vec<Clinician> {
    (0..n)
        .map(|i| {
            let role = rng.choose(ROLES);
            let dept = match role {
                Role::Registrar => ADMISSIONS,
                Role::Pharmacist => PHARMACY,
                Role::Therapist => REHABILITATION,
                Role::Physician | Role::Nurse => rng.choose(CLINICAL_DEPT_WEIGHTS),
            };
            let night = rng.chance(NIGHT_SHARE[dept]);
            let weight = (rng.normal()).exp();
            let ip = format!(
                "10.{}.{}.{}",
                20 + dept,
                rng.between(0, 15),
                rng.between(2, 254)
            );
            let session = session_id(rng);
            let (lo, hi) = if dept < CLINICAL_DEPTS {
                wards[dept]
            } else {
                (0, patients)
            };
            let span = u64::from(hi - lo).max(1);
            let size = match role {
                Role::Physician => rng.between(15, 60),
                Role::Nurse => rng.between(8, 25),
                Role::Pharmacist => rng.between(150, 400),
                Role::Registrar => rng.between(200, 600),
                Role::Therapist => rng.between(10, 35),
            }
            .min(span);
            let panel = (0..size).map(|_| lo + rng.below(span) as u32).collect();
            Clinician {
                id: format!("emp-{:04}", i + 1),
                role,
                dept,
                night,
                weight,
                ip,
                session,
                panel,
            }
        })
        .collect()
}

/// `n` services, the kinds in turn: `svc-scoring-1`, `svc-etl-1`, ….
pub(super) fn services(n: usize) -> Vec<Service> {
    let kinds = [
        ServiceKind::Scoring,
        ServiceKind::Etl,
        ServiceKind::Training,
        ServiceKind::Deploy,
    ];
    let mut per_kind = [0usize; 4];
    (0..n)
        .map(|i| {
            let k = i % kinds.len();
            per_kind[k] += 1;
            let name = match kinds[k] {
                ServiceKind::Scoring => "scoring",
                ServiceKind::Etl => "etl",
                ServiceKind::Training => "train",
                ServiceKind::Deploy => "deploy",
            };
            Service {
                id: format!("svc-{name}-{}", per_kind[k]),
                kind: kinds[k],
                ip: format!("10.90.{}.{}", i / 250, i % 250 + 2),
            }
        })
        .collect()
}

/// Indices of the services of each [`ServiceKind`].
pub(super) fn services_by_kind(services: &[Service]) -> [Vec<usize>; 4] {
    let mut by_kind: [Vec<usize>; 4] = Default::default();
    for (i, s) in services.iter().enumerate() {
        by_kind[s.kind as usize].push(i);
    }
    by_kind
}

/// Draws among the clinicians that pass `filter`, by activity at the hour.
pub(super) fn hourly_pick(
    clinicians: &[Clinician],
    filter: impl Fn(&Clinician) -> bool,
) -> HourlyPick {
    let members = (0..clinicians.len() as u32)
        .filter(|&i| filter(&clinicians[i as usize]))
        .collect();
    HourlyPick::new(members, |i, hour| clinicians[i].activity(hour))
}

impl Workload {
    /// Any patient of the hospital.
    pub(super) fn any_patient(&mut self) -> u32 {
        self.rng.below(u64::from(self.patients)) as u32
    }

    /// A patient for clinician `ci` to touch: mostly from their panel, else
    /// from their ward, else anywhere (then `far` is true).
    pub(super) fn pick_patient(&mut self, ci: usize) -> (u32, bool) {
        let c = &self.clinicians[ci];
        let r = self.rng.below(1000);
        if r < 880 && !c.panel.is_empty() {
            (*self.rng.pick(&c.panel), false)
        } else if r < 970 && c.dept < CLINICAL_DEPTS {
            let (lo, hi) = self.wards[c.dept];
            let span = u64::from(hi - lo).max(1);
            (lo + self.rng.below(span) as u32, false)
        } else {
            (self.any_patient(), true)
        }
    }
}
