//! The vocabulary of the events: access actions and how often each role uses
//! them, FHIR resources, search queries, export destinations, models,
//! datasets, and the 30 model input features in clinical units.

use super::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Read,
    Create,
    Update,
    Delete,
    Search,
    Export,
    Print,
    Login,
}

impl Action {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Search => "search",
            Action::Export => "export",
            Action::Print => "print",
            Action::Login => "login",
        }
    }
}

// The access actions of each role, weighted (see `Role::actions`).
pub(super) const PHYSICIAN_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 700),
    (Action::Update, 100),
    (Action::Create, 50),
    (Action::Search, 60),
    (Action::Print, 25),
    (Action::Login, 55),
    (Action::Export, 5),
    (Action::Delete, 5),
];
pub(super) const NURSE_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 660),
    (Action::Update, 190),
    (Action::Create, 30),
    (Action::Search, 30),
    (Action::Print, 25),
    (Action::Login, 60),
    (Action::Export, 2),
    (Action::Delete, 3),
];
pub(super) const PHARMACIST_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 680),
    (Action::Update, 160),
    (Action::Create, 2),
    (Action::Search, 80),
    (Action::Print, 20),
    (Action::Login, 55),
    (Action::Export, 3),
];
pub(super) const REGISTRAR_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 430),
    (Action::Update, 160),
    (Action::Create, 90),
    (Action::Search, 250),
    (Action::Print, 30),
    (Action::Login, 40),
];
pub(super) const THERAPIST_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 680),
    (Action::Update, 150),
    (Action::Create, 50),
    (Action::Search, 30),
    (Action::Print, 20),
    (Action::Login, 70),
];

/// FHIR resource type and id prefix.
pub(super) type Res = (&'static str, &'static str);
pub(super) const RES_GENERAL: &[(Res, u32)] = &[
    (("Observation", "obs"), 30),
    (("MedicationRequest", "mr"), 15),
    (("DiagnosticReport", "dr"), 15),
    (("Encounter", "enc"), 10),
    (("Condition", "cond"), 10),
    (("DocumentReference", "doc"), 10),
    (("AllergyIntolerance", "ai"), 5),
    (("Procedure", "proc"), 5),
];
pub(super) const RES_RADIOLOGY: &[(Res, u32)] = &[
    (("ImagingStudy", "img"), 50),
    (("DiagnosticReport", "dr"), 40),
    (("Observation", "obs"), 10),
];
pub(super) const RES_PHARMACY: &[(Res, u32)] = &[
    (("MedicationRequest", "mr"), 60),
    (("MedicationAdministration", "ma"), 20),
    (("AllergyIntolerance", "ai"), 10),
    (("Observation", "obs"), 10),
];
pub(super) const RES_REGISTRAR: &[(Res, u32)] = &[
    (("Patient", "pat"), 50),
    (("Encounter", "enc"), 30),
    (("Coverage", "cov"), 20),
];
pub(super) const RES_THERAPY: &[(Res, u32)] = &[
    (("CarePlan", "cp"), 40),
    (("Procedure", "proc"), 20),
    (("Observation", "obs"), 40),
];
pub(super) const RES_DOCUMENT: Res = ("DocumentReference", "doc");
pub(super) const RES_BUNDLE: Res = ("Bundle", "bundle");

pub(super) const SEARCH_QUERIES: &[&str] = &[
    "family=Smith",
    "family=Jones&given=Mary",
    "family=Müller",
    "family=O'Brien",
    "family=Nguyễn&given=Anh",
    "name=\"van der Berg\"",
    "birthdate=1956-04-12",
    "identifier=MRN-2001*",
    "phone=555-0142",
    "address-postalcode=SW1A",
];

pub(super) const NORMAL_EXPORT_DESTINATIONS: &[&str] = &[
    "patient-portal",
    "referral.partner-hospital.org",
    "tumor-board.internal",
    "registry.internal",
];
pub(super) const INTERNAL_BULK_DESTINATIONS: &[&str] = &[
    "warehouse.internal",
    "registry.internal",
    "research-enclave.internal",
];
pub(super) const EXTERNAL_DESTINATIONS: &[&str] = &[
    "personal-gmail.com",
    "dropbox.com",
    "usb:removable",
    "transfer.sh",
    "mega.nz",
    "203.0.113.45:443",
];

pub(super) const MODELS: [(&str, &str); 3] = [
    ("sepsis-risk", "3.1.0"),
    ("readmission", "2.0.1"),
    ("deterioration", "1.4.0"),
];
pub(super) const MODEL_MIX: &[(usize, u32)] = &[(0, 50), (1, 30), (2, 20)];

pub(super) const DATASETS: &[&str] = &[
    "dataset:clarity.pat_enc",
    "dataset:clarity.order_results",
    "dataset:ehr.vitals",
    "dataset:ehr.labs",
    "dataset:ehr.medications",
    "dataset:claims.2025",
];

/// One model input feature: how to draw it and how many decimals to write.
#[derive(Clone, Copy)]
pub(super) enum Dist {
    /// Normal(mean, sd).
    Normal(f64, f64),
    /// Log-normal(median, sigma of the log).
    LogNormal(f64, f64),
}
/// The 30 features sent to every model, in clinical units.
pub(super) const FEATURES: [(Dist, f64, f64, u32); 30] = [
    (Dist::Normal(36.9, 0.7), 34.0, 41.5, 1),   // temperature °C
    (Dist::Normal(84.0, 17.0), 35.0, 180.0, 0), // heart rate /min
    (Dist::Normal(18.0, 4.0), 8.0, 40.0, 0),    // respiratory rate /min
    (Dist::Normal(96.0, 2.5), 70.0, 100.0, 0),  // SpO2 %
    (Dist::Normal(122.0, 20.0), 60.0, 220.0, 0), // systolic BP mmHg
    (Dist::Normal(72.0, 12.0), 30.0, 130.0, 0), // diastolic BP mmHg
    (Dist::Normal(14.3, 1.5), 3.0, 15.0, 0),    // Glasgow coma scale
    (Dist::LogNormal(8.5, 0.4), 0.5, 60.0, 1),  // WBC 10^9/L
    (Dist::LogNormal(1.3, 0.45), 0.3, 15.0, 1), // lactate mmol/L
    (Dist::LogNormal(0.95, 0.4), 0.3, 12.0, 2), // creatinine mg/dL
    (Dist::LogNormal(16.0, 0.45), 3.0, 150.0, 0), // urea nitrogen mg/dL
    (Dist::Normal(139.0, 3.8), 115.0, 165.0, 0), // sodium mmol/L
    (Dist::Normal(4.2, 0.5), 2.2, 7.5, 1),      // potassium mmol/L
    (Dist::LogNormal(118.0, 0.3), 40.0, 600.0, 0), // glucose mg/dL
    (Dist::Normal(12.4, 1.9), 5.0, 19.0, 1),    // hemoglobin g/dL
    (Dist::LogNormal(230.0, 0.35), 5.0, 900.0, 0), // platelets 10^9/L
    (Dist::LogNormal(0.7, 0.5), 0.1, 25.0, 1),  // bilirubin mg/dL
    (Dist::LogNormal(8.0, 1.2), 0.1, 400.0, 1), // CRP mg/L
    (Dist::LogNormal(0.12, 1.0), 0.02, 100.0, 2), // procalcitonin ng/mL
    (Dist::LogNormal(1.1, 0.15), 0.8, 8.0, 2),  // INR
    (Dist::Normal(7.39, 0.05), 6.8, 7.7, 2),    // arterial pH
    (Dist::Normal(88.0, 20.0), 35.0, 500.0, 0), // PaO2 mmHg
    (Dist::LogNormal(0.26, 0.3), 0.21, 1.0, 2), // FiO2
    (Dist::Normal(24.0, 3.5), 5.0, 45.0, 0),    // bicarbonate mmol/L
    (Dist::Normal(3.7, 0.6), 1.0, 5.5, 1),      // albumin g/dL
    (Dist::Normal(63.0, 17.0), 18.0, 104.0, 0), // age years
    (Dist::Normal(78.0, 18.0), 30.0, 250.0, 1), // weight kg
    (Dist::Normal(27.0, 5.5), 14.0, 70.0, 1),   // BMI kg/m²
    (Dist::LogNormal(2.0, 0.9), 0.0, 60.0, 0),  // days since admission
    (Dist::LogNormal(1.0, 0.8), 0.0, 20.0, 0),  // admissions in the past year
];

/// Feature `i` drawn from its distribution, clamped to its range.
pub(super) fn draw_feature(rng: &mut Rng, i: usize) -> f64 {
    let (dist, lo, hi, _) = FEATURES[i];
    let v = match dist {
        Dist::Normal(mean, sd) => mean + sd * rng.approx_normal(),
        Dist::LogNormal(median, sigma) => median * (sigma * rng.approx_normal()).exp(),
    };
    v.clamp(lo, hi)
}
