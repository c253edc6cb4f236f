//! The hospital's vocabulary and the compact records the generator works
//! with: departments and their wards, roles, shift kinds, actions, purposes
//! of use, resources, staff, patients, encounters, care-team and consent
//! rows, events and labels.
//!
//! Events are kept as small fixed-size [`Ev`] records (indices, not
//! strings) so that a week of a mid-size hospital (a few hundred thousand
//! events) is generated, sorted and written in a second or two.

/// One minute, hour and day in milliseconds.
pub(super) const MINUTE: i64 = 60_000;
pub(super) const HOUR: i64 = 60 * MINUTE;
pub(super) const DAY: i64 = 24 * HOUR;

/// "No patient", "no label", "no actor" (a department-wide care-team row).
pub(super) const NONE: u32 = u32::MAX;

/// First medical record number; patient `i` is `MRN-{MRN_BASE + i}`.
pub(super) const MRN_BASE: u32 = 200_001;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Dept {
    Emergency,
    Icu,
    Cardiology,
    Oncology,
    Surgery,
    Pediatrics,
    Neurology,
    Radiology,
    Pharmacy,
    Admissions,
    Billing,
    Research,
    It,
}

impl Dept {
    /// Departments with beds (encounters are admitted to these).
    pub(super) const WARDS: [Dept; 7] = [
        Dept::Emergency,
        Dept::Icu,
        Dept::Cardiology,
        Dept::Oncology,
        Dept::Surgery,
        Dept::Pediatrics,
        Dept::Neurology,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Dept::Emergency => "emergency",
            Dept::Icu => "icu",
            Dept::Cardiology => "cardiology",
            Dept::Oncology => "oncology",
            Dept::Surgery => "surgery",
            Dept::Pediatrics => "pediatrics",
            Dept::Neurology => "neurology",
            Dept::Radiology => "radiology",
            Dept::Pharmacy => "pharmacy",
            Dept::Admissions => "admissions",
            Dept::Billing => "billing",
            Dept::Research => "research",
            Dept::It => "it",
        }
    }

    pub(super) fn is_ward(self) -> bool {
        (self as usize) < Dept::WARDS.len()
    }
}

/// How a ward admits and how hard its staff work its charts.
#[derive(Debug, Clone, Copy)]
pub(super) struct WardSpec {
    pub dept: Dept,
    /// Own arrivals per day at 240 staff (elective or walk-in; emergency
    /// transfers come on top).
    pub arrivals_per_day: f64,
    /// Median length of stay, hours (log-normal, σ = 0.6).
    pub los_hours: f64,
    /// Share of encounters that also get a department-wide care-team row.
    pub dept_row: f64,
    /// Chart events per patient-hour for the assigned nurse and physician.
    pub nurse_rate: f64,
    pub physician_rate: f64,
    /// Share of emergency encounters admitted here afterwards.
    pub from_emergency: f64,
    /// Patients per shift a nurse and a physician can chart at the full
    /// rate; beyond that, each patient gets proportionally less.
    pub nurse_cap: f64,
    pub physician_cap: f64,
}

/// (dept, arrivals/day, median stay h, dept-row share, (nurse, physician)
/// events per patient-hour, share from emergency, (nurse, physician) cap).
#[rustfmt::skip]
pub(super) const WARD_SPECS: [WardSpec; 7] = [
    ward(Dept::Emergency, 150.0, 4.0, 1.0, (6.0, 5.0), 0.0, (15.0, 25.0)),
    ward(Dept::Icu, 3.0, 70.0, 1.0, (12.0, 3.5), 0.03, (3.0, 10.0)),
    ward(Dept::Cardiology, 8.0, 60.0, 0.3, (6.0, 2.0), 0.06, (7.0, 14.0)),
    ward(Dept::Oncology, 6.0, 96.0, 0.3, (5.0, 1.6), 0.02, (7.0, 14.0)),
    ward(Dept::Surgery, 10.0, 48.0, 0.3, (6.0, 2.0), 0.05, (7.0, 14.0)),
    ward(Dept::Pediatrics, 5.0, 40.0, 0.4, (6.0, 1.8), 0.04, (6.0, 12.0)),
    ward(Dept::Neurology, 5.0, 72.0, 0.3, (5.0, 1.7), 0.04, (7.0, 14.0)),
];

const fn ward(
    dept: Dept,
    arrivals_per_day: f64,
    los_hours: f64,
    dept_row: f64,
    (nurse_rate, physician_rate): (f64, f64),
    from_emergency: f64,
    (nurse_cap, physician_cap): (f64, f64),
) -> WardSpec {
    WardSpec {
        dept,
        arrivals_per_day,
        los_hours,
        dept_row,
        nurse_rate,
        physician_rate,
        from_emergency,
        nurse_cap,
        physician_cap,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Role {
    Physician,
    Nurse,
    Pharmacist,
    Registrar,
    Therapist,
    BillingClerk,
    Researcher,
    Service,
}

impl Role {
    pub(super) fn name(self) -> &'static str {
        match self {
            Role::Physician => "physician",
            Role::Nurse => "nurse",
            Role::Pharmacist => "pharmacist",
            Role::Registrar => "registrar",
            Role::Therapist => "therapist",
            Role::BillingClerk => "billing_clerk",
            Role::Researcher => "researcher",
            Role::Service => "service",
        }
    }

    /// The purpose of use this role's ordinary work carries.
    pub(super) fn purpose(self) -> Purpose {
        match self {
            Role::BillingClerk => Purpose::Hpaymt,
            Role::Researcher => Purpose::Hresch,
            Role::Service => Purpose::Hoperat,
            _ => Purpose::Treat,
        }
    }
}

/// The workforce, in relative head counts per (department, role, shift
/// pattern); scaled to `--staff`.
pub(super) const COMPOSITION: &[(Dept, Role, u32)] = &[
    (Dept::Emergency, Role::Physician, 9),
    (Dept::Emergency, Role::Nurse, 14),
    (Dept::Icu, Role::Physician, 5),
    (Dept::Icu, Role::Nurse, 14),
    (Dept::Cardiology, Role::Physician, 5),
    (Dept::Cardiology, Role::Nurse, 8),
    (Dept::Cardiology, Role::Therapist, 1),
    (Dept::Oncology, Role::Physician, 4),
    (Dept::Oncology, Role::Nurse, 7),
    (Dept::Surgery, Role::Physician, 6),
    (Dept::Surgery, Role::Nurse, 9),
    (Dept::Surgery, Role::Therapist, 1),
    (Dept::Pediatrics, Role::Physician, 4),
    (Dept::Pediatrics, Role::Nurse, 7),
    (Dept::Neurology, Role::Physician, 4),
    (Dept::Neurology, Role::Nurse, 5),
    (Dept::Neurology, Role::Therapist, 2),
    (Dept::Radiology, Role::Physician, 5),
    (Dept::Pharmacy, Role::Pharmacist, 6),
    (Dept::Admissions, Role::Registrar, 7),
    (Dept::Billing, Role::BillingClerk, 7),
    (Dept::Research, Role::Researcher, 5),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum ShiftKind {
    /// 07:00–19:00.
    Day,
    /// 19:00–07:00.
    Night,
    /// 08:00–17:00 on weekdays (billing, research).
    Office,
    /// Service accounts: no shifts, scheduled jobs.
    Batch,
}

/// One worked shift of one actor (already clipped to hire and termination).
#[derive(Debug, Clone, Copy)]
pub(super) struct Shift {
    pub start: i64,
    pub end: i64,
    /// Day number from the start of the run (the night of day -1 ends at
    /// 07:00 on day 0).
    pub day: i32,
    pub session: u32,
}

#[derive(Debug, Clone)]
pub(super) struct Staff {
    pub id: String,
    pub role: Role,
    pub dept: Dept,
    pub kind: ShiftKind,
    pub hired: i64,
    pub terminated: Option<i64>,
    /// Left before the run started (roster only; no ordinary activity).
    pub former: bool,
    /// Personal activity multiplier (log-normal, heavy-tailed).
    pub activity: f64,
    /// Workstation address (IPv4 as a number).
    pub ip: u32,
    pub shifts: Vec<Shift>,
}

impl Staff {
    pub(super) fn employed_at(&self, t: i64) -> bool {
        self.hired <= t && self.terminated.is_none_or(|x| t < x)
    }

    pub(super) fn is_human(&self) -> bool {
        self.role != Role::Service
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flag {
    Vip,
    Restricted,
    Employee,
}

impl Flag {
    pub(super) fn name(self) -> &'static str {
        match self {
            Flag::Vip => "vip",
            Flag::Restricted => "restricted",
            Flag::Employee => "employee",
        }
    }
}

/// One stay of one patient in one ward.
#[derive(Debug, Clone, Copy)]
pub(super) struct Encounter {
    pub patient: u32,
    pub dept: Dept,
    pub start: i64,
    pub end: i64,
    /// Also assigned to the whole department in the care-team table.
    pub dept_row: bool,
}

/// One `care_team.csv` row; `actor == NONE` for a department-wide row.
#[derive(Debug, Clone, Copy)]
pub(super) struct CareRow {
    pub patient: u32,
    pub actor: u32,
    pub dept: Dept,
    pub start: i64,
    pub end: i64,
}

/// One `consent.csv` row (purpose `HRESCH`).
#[derive(Debug, Clone, Copy)]
pub(super) struct ConsentRow {
    pub patient: u32,
    pub granted: bool,
    pub time: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Read,
    Create,
    Update,
    Search,
    Export,
    Print,
    Login,
    /// A lineage `derive` event (the nightly warehouse load).
    Derive,
}

impl Action {
    pub(super) fn name(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Update => "update",
            Action::Search => "search",
            Action::Export => "export",
            Action::Print => "print",
            Action::Login => "login",
            Action::Derive => "derive",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    Treat,
    Etreat,
    Hpaymt,
    Hoperat,
    Hresch,
}

impl Purpose {
    pub(super) fn code(self) -> &'static str {
        match self {
            Purpose::Treat => "TREAT",
            Purpose::Etreat => "ETREAT",
            Purpose::Hpaymt => "HPAYMT",
            Purpose::Hoperat => "HOPERAT",
            Purpose::Hresch => "HRESCH",
        }
    }
}

/// FHIR resource types the events name.
pub(super) const RESOURCES: [&str; 13] = [
    "Patient",
    "Encounter",
    "Observation",
    "MedicationRequest",
    "MedicationAdministration",
    "DocumentReference",
    "DiagnosticReport",
    "ImagingStudy",
    "ServiceRequest",
    "Claim",
    "Account",
    "Coverage",
    "Bundle",
];

/// Indices into [`RESOURCES`].
pub(super) mod res {
    pub const PATIENT: u8 = 0;
    pub const ENCOUNTER: u8 = 1;
    pub const OBSERVATION: u8 = 2;
    pub const MED_REQUEST: u8 = 3;
    pub const MED_ADMIN: u8 = 4;
    pub const DOCUMENT: u8 = 5;
    pub const REPORT: u8 = 6;
    pub const IMAGING: u8 = 7;
    pub const ORDER: u8 = 8;
    pub const CLAIM: u8 = 9;
    pub const ACCOUNT: u8 = 10;
    pub const COVERAGE: u8 = 11;
    pub const BUNDLE: u8 = 12;
}

/// One event before it is written. `dest` indexes the generator's
/// destination table (0 = none); `label` indexes the labels.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ev {
    pub t: i64,
    pub actor: u32,
    pub patient: u32,
    pub records: u32,
    pub session: u32,
    pub ip: u32,
    pub label: u32,
    pub dest: u32,
    pub action: Action,
    pub purpose: Purpose,
    pub resource: u8,
    pub denied: bool,
    /// For an order: the department asked to perform it
    /// (`attrs.performer_dept`).
    pub order_to: Option<Dept>,
}

/// The kinds of injected misuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    VolumeBurst,
    Breadth,
    UnrelatedCharts,
    VipCuriosity,
    AfterTermination,
    BulkExport,
    OffHours,
    DeniedProbing,
    BreakGlassHabit,
    ConsentViolation,
    Snooping,
}

impl Scenario {
    /// In the order they are injected (a kind added later comes last, so
    /// the others' instances stay as they were).
    pub const ALL: [Scenario; 11] = [
        Scenario::VolumeBurst,
        Scenario::Breadth,
        Scenario::UnrelatedCharts,
        Scenario::VipCuriosity,
        Scenario::AfterTermination,
        Scenario::BulkExport,
        Scenario::OffHours,
        Scenario::DeniedProbing,
        Scenario::BreakGlassHabit,
        Scenario::ConsentViolation,
        Scenario::Snooping,
    ];

    /// The label's `scenario` value.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::VolumeBurst => "volume_burst",
            Scenario::Breadth => "breadth",
            Scenario::UnrelatedCharts => "unrelated_charts",
            Scenario::Snooping => "snooping",
            Scenario::VipCuriosity => "vip_curiosity",
            Scenario::AfterTermination => "after_termination",
            Scenario::BulkExport => "bulk_export",
            Scenario::OffHours => "off_hours",
            Scenario::DeniedProbing => "denied_probing",
            Scenario::BreakGlassHabit => "break_glass_habit",
            Scenario::ConsentViolation => "consent_violation",
        }
    }
}

/// One injected misuse instance; its events carry its index.
#[derive(Debug, Clone)]
pub(super) struct Label {
    pub scenario: Scenario,
    pub actor: u32,
    /// The one patient concerned, or [`NONE`] when several (or none) are.
    pub patient: u32,
}
