//! A synthetic hospital workload: a deterministic stream of Kafka-like
//! messages (key = actor id, value = native JSON v1 event) for `custos demo`,
//! `custos synth` and tests.
//!
//! # What it models
//!
//! * **Clinicians** (`emp-0042`) with a role (physician, nurse, pharmacist,
//!   registrar, therapist), a department (cardiology, emergency, oncology,
//!   icu, radiology, pediatrics, surgery, neurology, admissions, pharmacy,
//!   rehabilitation), a day or night shift, a workstation IP, a session that
//!   changes at each login, and a care panel of patients (`MRN-200117`) drawn
//!   from their department's share of the patient population. Most accesses
//!   read the actor's own panel; some touch other patients of the department
//!   or of the hospital. Activity is heavy-tailed: each clinician's weight is
//!   log-normal (σ = 1), multiplied by a shift factor of the hour of `now`.
//!   The hospital clock is UTC; about 8% of events are written with another
//!   UTC offset (`+01:00`, `+05:30`, …) and whole seconds, like producers
//!   that log local time — the instant is the same.
//! * **Services** (`svc-scoring-1`, `svc-etl-1`, `svc-train-1`,
//!   `svc-deploy-1`, …): batch scoring through the model gateway, ETL jobs
//!   (lineage `derive`/`delete`/`erase`, large internal exports), training
//!   and deployment.
//! * **Mix** of well-formed normal events: 80% `access`, 15% `inference`
//!   (models `sepsis-risk@3.1.0`, `readmission@2.0.1`,
//!   `deterioration@1.4.0`, 30 features in clinical units — vital signs,
//!   labs, age, weight —, or a precomputed fingerprint; sometimes
//!   `output.scores_returned`), 5% `lineage` (`dataset:`, `patient:MRN-…`,
//!   `model:name@ver` references).
//! * **Malformed messages** at `malformed_per_million`, drawn from the defect
//!   classes of the shared examples (missing id/time/actor/patient/model,
//!   bad time, time without offset, unknown kind/action/op, empty actor id,
//!   records < 1, non-numbers or `"NaN"` among features, actor not an
//!   object, truncated JSON, not an object, invalid UTF-8, duplicated keys,
//!   wrong types, over-long id, too many features, deep nesting, and — rarely
//!   — a message over 1 MiB). No payload ever contains a newline byte, so
//!   every message fits on one line of a JSON-lines file. Empty messages are
//!   not generated (a JSON-lines reader could not tell them from a blank
//!   line).
//! * **Anomalies** (when `anomalies` is true), scheduled in event time from
//!   the seed:
//!   - [`Truth::RateBurst`], about three per hour, the first 3–10 minutes
//!     after the first message: one active, on-shift clinician's share of
//!     the stream rises so that their rate is 20–50× their own normal rate
//!     at that hour, for 2–6 minutes (reads of patients outside their panel
//!     and searches, one session). The multiplier is relative to whatever
//!     message rate the caller drives, so a per-actor rate detector with a
//!     60 s window sees it at any pace. A burst takes at most 80% of the
//!     stream, so when the clinician already sends a few percent of all
//!     messages (a small population, or the night shift when the caller
//!     keeps a flat rate) the multiplier is lower, typically 15–20×.
//!   - [`Truth::BulkExport`], about one per hour: a clinician searches, then
//!     exports 1 000–20 000 records (one to three times) to an external
//!     destination (`dropbox.com`, `usb:removable`, …). Large exports to
//!     internal destinations by ETL services are normal traffic.
//!   - [`Truth::OffHours`], about once an hour between 23:00 and 05:00 UTC: a
//!     day-shift clinician logs in (often over VPN) and reads 5–30 records.
//!   - [`Truth::ModelProbe`], every one to three hours: a service or
//!     clinician account sends 200–800 inference queries to one model within
//!     3–10 minutes, without patients, sweeping one feature and asking for
//!     the full score vector (model extraction / membership probing).
//!
//! # Guarantees
//!
//! * Deterministic: the same [`WorkloadConfig`] and the same sequence of
//!   `now` values give byte-identical messages. The generator has its own
//!   xoshiro256++ generator, so streams do not change with `rand` versions;
//!   a few draws go through `exp`/`ln`, so bit-for-bit equality across
//!   different platforms' math libraries is likely but not promised.
//!   Different seeds give different populations and streams, and different
//!   event ids (`a-<seed>-<counter>`, `i-…`, `l-…`; unique within a stream).
//! * Every message whose truth is not [`Truth::Malformed`] is a valid v1
//!   event whose `actor.id` equals the message key; its `time` is `now`
//!   (to the millisecond, or to the second for events with a non-`Z`
//!   offset).
//! * Time is driven by the caller; the generator never reads a clock and does
//!   no I/O. The caller decides the message rate; [`Workload::intensity`]
//!   gives the diurnal volume curve for callers that want one.
//! * Cheap: no `serde_json::Value`, JSON is written by hand (strings escaped)
//!   straight into the payload buffer; a few million messages per second on
//!   one core in release builds.
//!
//! This is a workload for demos, benchmarks and tests. Its numbers are
//! plausible, not calibrated: it is not a model of any real hospital, and
//! detectors must not be tuned to it.

use chrono::{DateTime, Utc};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Seed of every random choice (population and stream).
    pub seed: u64,
    /// Number of clinicians (human actors), default 200.
    pub clinicians: usize,
    /// Number of patients, default 5000.
    pub patients: usize,
    /// Model-gateway callers, ETL, training and deployment services, default 5.
    pub services: usize,
    /// Rate of deliberately malformed messages per million, default 2000 (0.2%).
    pub malformed_per_million: u32,
    /// Inject anomalies (see the module documentation), default true.
    pub anomalies: bool,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            clinicians: 200,
            patients: 5000,
            services: 5,
            malformed_per_million: 2000,
            anomalies: true,
        }
    }
}

/// Ground truth of one message, for evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truth {
    /// Ordinary traffic.
    Normal,
    /// Deliberately invalid; must be rejected (see [`SynthMessage::defect`]).
    Malformed,
    /// Part of one actor's rate burst (20–50× their normal rate).
    RateBurst,
    /// Part of a bulk export of thousands of records to an external destination.
    BulkExport,
    /// Access by a day-shift clinician in the middle of the night.
    OffHours,
    /// Part of a burst of inference queries probing one model.
    ModelProbe,
}

impl Truth {
    /// A stable snake_case label (`normal`, `malformed`, `rate_burst`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Truth::Normal => "normal",
            Truth::Malformed => "malformed",
            Truth::RateBurst => "rate_burst",
            Truth::BulkExport => "bulk_export",
            Truth::OffHours => "off_hours",
            Truth::ModelProbe => "model_probe",
        }
    }

    /// True for the injected anomalies (not for normal or malformed messages).
    pub fn is_anomaly(self) -> bool {
        !matches!(self, Truth::Normal | Truth::Malformed)
    }
}

/// One generated message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthMessage {
    /// Kafka key: the actor id.
    pub key: String,
    /// Message value: JSON bytes, or garbage when malformed.
    pub payload: Vec<u8>,
    /// What the message is.
    pub truth: Truth,
    /// The event id when the message is well-formed.
    pub id: Option<String>,
    /// For malformed messages, the defect class (`missing_id`, `bad_time`,
    /// `truncated_json`, `invalid_utf8`, `oversize`, …); `None` otherwise.
    pub defect: Option<&'static str>,
}

// ---------------------------------------------------------------------------
// Random numbers: xoshiro256++ seeded with SplitMix64, fixed here so that a
// seed keeps meaning the same workload whatever `rand` does.

#[derive(Debug, Clone)]
struct Rng {
    s: [u64; 4],
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed ^ 0x6375_7374_6f73_2121;
        let mut s = [0u64; 4];
        for v in &mut s {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *v = z ^ (z >> 31);
        }
        Self { s }
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `0..n` (`n > 0`; multiply-shift, bias below 2^-40 here).
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    #[inline]
    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// Uniform in `[0, 1)`.
    #[inline]
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    #[inline]
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Per mille.
    #[inline]
    fn permille(&mut self, p: u64) -> bool {
        self.below(1000) < p
    }

    /// Standard normal (Box–Muller), for setup.
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Approximately standard normal (Irwin–Hall, 4 terms from one draw), cheap.
    #[inline]
    fn approx_normal(&mut self) -> f64 {
        let x = self.next_u64();
        let s = (x & 0xFFFF) + ((x >> 16) & 0xFFFF) + ((x >> 32) & 0xFFFF) + (x >> 48);
        (s as f64 / 65_535.0 - 2.0) * 1.732_050_807_568_877_2
    }

    /// Exponential with mean 1.
    #[inline]
    fn exp(&mut self) -> f64 {
        -(1.0 - self.unit()).ln()
    }

    #[inline]
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.index(xs.len())]
    }

    fn choose<T: Copy>(&mut self, table: &[(T, u32)]) -> T {
        let total: u64 = table.iter().map(|&(_, w)| u64::from(w)).sum();
        let mut r = self.below(total);
        for &(v, w) in table {
            if r < u64::from(w) {
                return v;
            }
            r -= u64::from(w);
        }
        table[table.len() - 1].0
    }
}

// ---------------------------------------------------------------------------
// The hospital.

const MINUTE: i64 = 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Physician,
    Nurse,
    Pharmacist,
    Registrar,
    Therapist,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Physician => "physician",
            Role::Nurse => "nurse",
            Role::Pharmacist => "pharmacist",
            Role::Registrar => "registrar",
            Role::Therapist => "therapist",
        }
    }

    fn uses_models(self) -> bool {
        matches!(self, Role::Physician | Role::Nurse)
    }
}

const ROLES: &[(Role, u32)] = &[
    (Role::Nurse, 40),
    (Role::Physician, 28),
    (Role::Registrar, 12),
    (Role::Pharmacist, 8),
    (Role::Therapist, 12),
];

const DEPTS: [&str; 11] = [
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
const CLINICAL_DEPTS: usize = 8;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
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
    fn as_str(self) -> &'static str {
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

const PHYSICIAN_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 700),
    (Action::Update, 100),
    (Action::Create, 50),
    (Action::Search, 60),
    (Action::Print, 25),
    (Action::Login, 55),
    (Action::Export, 5),
    (Action::Delete, 5),
];
const NURSE_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 660),
    (Action::Update, 190),
    (Action::Create, 30),
    (Action::Search, 30),
    (Action::Print, 25),
    (Action::Login, 60),
    (Action::Export, 2),
    (Action::Delete, 3),
];
const PHARMACIST_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 680),
    (Action::Update, 160),
    (Action::Create, 2),
    (Action::Search, 80),
    (Action::Print, 20),
    (Action::Login, 55),
    (Action::Export, 3),
];
const REGISTRAR_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 430),
    (Action::Update, 160),
    (Action::Create, 90),
    (Action::Search, 250),
    (Action::Print, 30),
    (Action::Login, 40),
];
const THERAPIST_ACTIONS: &[(Action, u32)] = &[
    (Action::Read, 680),
    (Action::Update, 150),
    (Action::Create, 50),
    (Action::Search, 30),
    (Action::Print, 20),
    (Action::Login, 70),
];

/// FHIR resource type and id prefix.
type Res = (&'static str, &'static str);
const RES_GENERAL: &[(Res, u32)] = &[
    (("Observation", "obs"), 30),
    (("MedicationRequest", "mr"), 15),
    (("DiagnosticReport", "dr"), 15),
    (("Encounter", "enc"), 10),
    (("Condition", "cond"), 10),
    (("DocumentReference", "doc"), 10),
    (("AllergyIntolerance", "ai"), 5),
    (("Procedure", "proc"), 5),
];
const RES_RADIOLOGY: &[(Res, u32)] = &[
    (("ImagingStudy", "img"), 50),
    (("DiagnosticReport", "dr"), 40),
    (("Observation", "obs"), 10),
];
const RES_PHARMACY: &[(Res, u32)] = &[
    (("MedicationRequest", "mr"), 60),
    (("MedicationAdministration", "ma"), 20),
    (("AllergyIntolerance", "ai"), 10),
    (("Observation", "obs"), 10),
];
const RES_REGISTRAR: &[(Res, u32)] = &[
    (("Patient", "pat"), 50),
    (("Encounter", "enc"), 30),
    (("Coverage", "cov"), 20),
];
const RES_THERAPY: &[(Res, u32)] = &[
    (("CarePlan", "cp"), 40),
    (("Procedure", "proc"), 20),
    (("Observation", "obs"), 40),
];
const RES_DOCUMENT: Res = ("DocumentReference", "doc");
const RES_BUNDLE: Res = ("Bundle", "bundle");

const SEARCH_QUERIES: &[&str] = &[
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

const NORMAL_EXPORT_DESTINATIONS: &[&str] = &[
    "patient-portal",
    "referral.partner-hospital.org",
    "tumor-board.internal",
    "registry.internal",
];
const INTERNAL_BULK_DESTINATIONS: &[&str] = &[
    "warehouse.internal",
    "registry.internal",
    "research-enclave.internal",
];
const EXTERNAL_DESTINATIONS: &[&str] = &[
    "personal-gmail.com",
    "dropbox.com",
    "usb:removable",
    "transfer.sh",
    "mega.nz",
    "203.0.113.45:443",
];

const MODELS: [(&str, &str); 3] = [
    ("sepsis-risk", "3.1.0"),
    ("readmission", "2.0.1"),
    ("deterioration", "1.4.0"),
];
const MODEL_MIX: &[(usize, u32)] = &[(0, 50), (1, 30), (2, 20)];

const DATASETS: &[&str] = &[
    "dataset:clarity.pat_enc",
    "dataset:clarity.order_results",
    "dataset:ehr.vitals",
    "dataset:ehr.labs",
    "dataset:ehr.medications",
    "dataset:claims.2025",
];

/// One model input feature: how to draw it and how many decimals to write.
#[derive(Clone, Copy)]
enum Dist {
    /// Normal(mean, sd).
    Normal(f64, f64),
    /// Log-normal(median, sigma of the log).
    LogNormal(f64, f64),
}
/// The 30 features sent to every model, in clinical units.
const FEATURES: [(Dist, f64, f64, u32); 30] = [
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

fn draw_feature(rng: &mut Rng, i: usize) -> f64 {
    let (dist, lo, hi, _) = FEATURES[i];
    let v = match dist {
        Dist::Normal(mean, sd) => mean + sd * rng.approx_normal(),
        Dist::LogNormal(median, sigma) => median * (sigma * rng.approx_normal()).exp(),
    };
    v.clamp(lo, hi)
}

/// Activity of a shift at an hour of the (UTC) day.
fn shift_factor(night: bool, hour: usize) -> f64 {
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

fn hour_of(ms: i64) -> usize {
    ms.div_euclid(3_600_000).rem_euclid(24) as usize
}

fn is_night(hour: usize) -> bool {
    !(5..23).contains(&hour)
}

#[derive(Debug, Clone)]
struct Clinician {
    id: String,
    role: Role,
    dept: usize,
    night: bool,
    weight: f64,
    ip: String,
    session: String,
    panel: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServiceKind {
    Scoring = 0,
    Etl = 1,
    Training = 2,
    Deploy = 3,
}

#[derive(Debug, Clone)]
struct Service {
    id: String,
    kind: ServiceKind,
    ip: String,
}

/// Weighted choice among a subset of clinicians, with weights that depend on
/// the hour: one alias table (Walker/Vose) per hour, O(1) per draw.
#[derive(Debug, Clone)]
struct HourlyPick {
    members: Vec<u32>,
    totals: [f64; 24],
    /// Per hour: (probability of keeping slot i, alias of slot i).
    tables: Vec<Vec<(f64, u32)>>,
}

impl HourlyPick {
    fn new(clinicians: &[Clinician], filter: impl Fn(&Clinician) -> bool) -> Self {
        let members: Vec<u32> = (0..clinicians.len() as u32)
            .filter(|&i| filter(&clinicians[i as usize]))
            .collect();
        let mut totals = [0.0; 24];
        let tables = (0..24)
            .map(|h| {
                let weights: Vec<f64> = members
                    .iter()
                    .map(|&i| {
                        let c = &clinicians[i as usize];
                        c.weight * shift_factor(c.night, h)
                    })
                    .collect();
                totals[h] = weights.iter().sum();
                alias_table(&weights)
            })
            .collect();
        Self {
            members,
            totals,
            tables,
        }
    }

    fn total(&self, hour: usize) -> f64 {
        self.totals[hour]
    }

    fn sample(&self, rng: &mut Rng, hour: usize) -> Option<usize> {
        let table = &self.tables[hour];
        if table.is_empty() {
            return None;
        }
        let x = rng.next_u64();
        let i = ((u128::from(x >> 11) * table.len() as u128) >> 53) as usize;
        let u = (x & 0x7FF) as f64 / 2048.0;
        let (keep, alias) = table[i];
        let slot = if u < keep { i } else { alias as usize };
        Some(self.members[slot] as usize)
    }
}

/// Vose's alias method: slot `i` keeps itself with probability `.0`, else
/// goes to `.1`. Empty for no weights or a zero total.
fn alias_table(weights: &[f64]) -> Vec<(f64, u32)> {
    let n = weights.len();
    let total: f64 = weights.iter().sum();
    if n == 0 || total <= 0.0 {
        return Vec::new();
    }
    let mut scaled: Vec<f64> = weights.iter().map(|w| w * n as f64 / total).collect();
    let mut table: Vec<(f64, u32)> = (0..n as u32).map(|i| (1.0, i)).collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| scaled[i] < 1.0);
    while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
        small.pop();
        table[s] = (scaled[s], l as u32);
        scaled[l] -= 1.0 - scaled[s];
        if scaled[l] < 1.0 {
            large.pop();
            small.push(l);
        }
    }
    table
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Clinician(usize),
    Service(usize),
}

#[derive(Debug, Clone)]
struct Burst {
    clinician: usize,
    until: i64,
    share: f64,
}

#[derive(Debug, Clone)]
enum EpisodeKind {
    OffHours {
        clinician: usize,
        ip: String,
        session: String,
        logged_in: bool,
    },
    BulkExport {
        clinician: usize,
        destination: &'static str,
        searched: bool,
    },
    ModelProbe {
        who: Who,
        model: usize,
        base: Box<[f64; 30]>,
        sweep: usize,
        step: u32,
        steps: u32,
    },
}

#[derive(Debug, Clone)]
struct Episode {
    kind: EpisodeKind,
    next_at: i64,
    remaining: u32,
    mean_gap_ms: f64,
}

/// At most this many scheduled episodes at once (bounded memory even when
/// the caller's clock races ahead of its message rate).
const MAX_EPISODES: usize = 8;

/// An access event body (everything after `source`).
#[derive(Debug, Clone, Copy)]
struct Access {
    action: Action,
    outcome: Option<&'static str>,
    patient: Option<u32>,
    resource: Option<(Res, u32)>,
    purpose: Option<&'static str>,
    records: Option<u64>,
    destination: Option<&'static str>,
    query: Option<&'static str>,
}

impl Access {
    fn new(action: Action) -> Self {
        Self {
            action,
            outcome: None,
            patient: None,
            resource: None,
            purpose: None,
            records: None,
            destination: None,
            query: None,
        }
    }
}

/// How the features of an inference are given.
#[derive(Debug, Clone, Copy)]
enum Input<'a> {
    Sampled,
    Probe {
        base: &'a [f64; 30],
        sweep: usize,
        frac: f64,
    },
    Fingerprint,
}

/// The generator. See the module documentation.
#[derive(Debug, Clone)]
pub struct Workload {
    cfg: WorkloadConfig,
    rng: Rng,
    seed_text: String,
    counter: u64,
    clinicians: Vec<Clinician>,
    services: Vec<Service>,
    /// Indices of the services of each [`ServiceKind`].
    services_by_kind: [Vec<usize>; 4],
    patients: u32,
    /// Patient index range of each clinical department's ward.
    wards: [(u32, u32); CLINICAL_DEPTS],
    access_pick: HourlyPick,
    model_user_pick: HourlyPick,
    max_total: f64,
    started: bool,
    next_burst: i64,
    next_bulk: i64,
    next_off_hours: i64,
    next_probe: i64,
    burst: Option<Burst>,
    episodes: Vec<Episode>,
    /// The `YYYY-MM-DDTHH:MM:SS` of the last UTC second written.
    time_cache: (i64, [u8; 19]),
}

// Stream composition.
const ACCESS_PERMILLE: u64 = 800;
const INFERENCE_PERMILLE: u64 = 150;
/// Share of access messages that are internal bulk exports by ETL services,
/// per 10 000.
const SERVICE_EXPORT_PER_10K: u64 = 40;
/// Share of inference requests made by clinicians (the rest: scoring services).
const CLINICIAN_INFERENCE_PERMILLE: u64 = 600;

impl Workload {
    /// Builds the population (clinicians, panels, services) from the seed.
    pub fn new(cfg: WorkloadConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let n_clin = cfg.clinicians.max(1);
        let patients = cfg.patients.clamp(1, u32::MAX as usize / 2) as u32;
        let n_svc = cfg.services.max(1);

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

        let clinicians: Vec<Clinician> = (0..n_clin)
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
                let session = format!("s-{:08x}", rng.next_u64() as u32);
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
            .collect();

        let kinds = [
            ServiceKind::Scoring,
            ServiceKind::Etl,
            ServiceKind::Training,
            ServiceKind::Deploy,
        ];
        let mut per_kind = [0usize; 4];
        let services: Vec<Service> = (0..n_svc)
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
            .collect();

        let mut services_by_kind: [Vec<usize>; 4] = Default::default();
        for (i, s) in services.iter().enumerate() {
            services_by_kind[s.kind as usize].push(i);
        }
        let access_pick = HourlyPick::new(&clinicians, |_| true);
        let model_user_pick = HourlyPick::new(&clinicians, |c| c.role.uses_models());
        let max_total = (0..24).map(|h| access_pick.total(h)).fold(0.0, f64::max);

        Self {
            seed_text: cfg.seed.to_string(),
            cfg,
            rng,
            counter: 0,
            clinicians,
            services,
            services_by_kind,
            patients,
            wards,
            access_pick,
            model_user_pick,
            max_total,
            started: false,
            next_burst: 0,
            next_bulk: 0,
            next_off_hours: 0,
            next_probe: 0,
            burst: None,
            episodes: Vec::new(),
            time_cache: (i64::MIN, [0; 19]),
        }
    }

    /// The configuration this workload was built from.
    pub fn config(&self) -> &WorkloadConfig {
        &self.cfg
    }

    /// Relative volume of human activity at `now`'s hour, in (0, 1] (1 at
    /// the busiest hour, about 0.3 at night). A caller with a simulated clock
    /// may divide its mean gap between messages by this to get a day/night
    /// volume curve; the composition of the stream follows the hour either way.
    pub fn intensity(&self, now: DateTime<Utc>) -> f64 {
        let h = hour_of(now.timestamp_millis());
        if self.max_total > 0.0 {
            (self.access_pick.total(h) / self.max_total).max(0.01)
        } else {
            1.0
        }
    }

    /// Next message at event time `now` (the caller drives time: the demo
    /// passes the wall clock, `custos synth` a simulated clock).
    pub fn next_message(&mut self, now: DateTime<Utc>) -> SynthMessage {
        let ms = now.timestamp_millis();
        let hour = hour_of(ms);
        if self.cfg.anomalies {
            self.schedule(ms, hour);
        }
        self.counter += 1;
        let rate = u64::from(self.cfg.malformed_per_million.min(1_000_000));
        if rate > 0 && self.rng.below(1_000_000) < rate {
            return self.malformed(ms, hour);
        }
        if self.cfg.anomalies
            && let Some(m) = self.anomalous(ms)
        {
            return m;
        }
        self.normal(ms, hour)
    }

    // -- anomalies ----------------------------------------------------------

    fn schedule(&mut self, ms: i64, hour: usize) {
        if !self.started {
            self.started = true;
            // The first burst comes soon, so that a demo shows one.
            self.next_burst = ms + self.rng.between(3, 10) as i64 * MINUTE;
            self.next_bulk = ms + self.rng.between(10, 90) as i64 * MINUTE;
            self.next_off_hours = ms + self.rng.between(5, 60) as i64 * MINUTE;
            self.next_probe = ms + self.rng.between(20, 150) as i64 * MINUTE;
        }
        if self.burst.as_ref().is_some_and(|b| ms >= b.until) {
            self.burst = None;
        }
        if ms >= self.next_burst {
            if self.burst.is_none() {
                self.start_burst(ms, hour);
            }
            self.next_burst = ms + self.rng.between(8, 30) as i64 * MINUTE;
        }
        if ms >= self.next_bulk {
            if self.episodes.len() < MAX_EPISODES {
                self.start_bulk_export(ms);
            }
            self.next_bulk = ms + self.rng.between(30, 120) as i64 * MINUTE;
        }
        if ms >= self.next_off_hours {
            if is_night(hour) && self.episodes.len() < MAX_EPISODES {
                self.start_off_hours(ms, hour);
            }
            self.next_off_hours = ms + self.rng.between(20, 80) as i64 * MINUTE;
        }
        if ms >= self.next_probe {
            if self.episodes.len() < MAX_EPISODES {
                self.start_probe(ms);
            }
            self.next_probe = ms + self.rng.between(60, 180) as i64 * MINUTE;
        }
    }

    /// Share of all messages that clinician `i` produces at `hour` in normal traffic.
    fn normal_share(&self, i: usize, hour: usize) -> f64 {
        let c = &self.clinicians[i];
        let eff = c.weight * shift_factor(c.night, hour);
        let mut p = 0.0;
        let total = self.access_pick.total(hour);
        if total > 0.0 {
            p += ACCESS_PERMILLE as f64 / 1000.0
                * (1.0 - SERVICE_EXPORT_PER_10K as f64 / 10_000.0)
                * eff
                / total;
        }
        let users = self.model_user_pick.total(hour);
        if c.role.uses_models() && users > 0.0 {
            p += INFERENCE_PERMILLE as f64 / 1000.0 * CLINICIAN_INFERENCE_PERMILLE as f64 / 1000.0
                * eff
                / users;
        }
        p
    }

    fn start_burst(&mut self, ms: i64, hour: usize) {
        // A reasonably active, on-shift clinician: between the median and the
        // 90th percentile of activity among those on shift.
        let mut on: Vec<usize> = (0..self.clinicians.len())
            .filter(|&i| shift_factor(self.clinicians[i].night, hour) >= 0.9)
            .collect();
        if on.is_empty() {
            on = (0..self.clinicians.len()).collect();
        }
        on.sort_by(|&a, &b| {
            self.clinicians[a]
                .weight
                .total_cmp(&self.clinicians[b].weight)
                .then(a.cmp(&b))
        });
        let lo = on.len() / 2;
        let hi = (on.len() * 9 / 10).max(lo + 1).min(on.len());
        let clinician = on[lo + self.rng.index(hi - lo)];
        let p = self.normal_share(clinician, hour).clamp(1e-9, 0.99);
        let k = self.rng.between(20, 50) as f64;
        let share = (p * (k - 1.0) / (1.0 - p)).min(0.8);
        let until = ms + self.rng.between(120, 360) as i64 * 1000;
        self.burst = Some(Burst {
            clinician,
            until,
            share,
        });
    }

    fn start_bulk_export(&mut self, ms: i64) {
        let clinician = self.rng.index(self.clinicians.len());
        let destination = *self.rng.pick(EXTERNAL_DESTINATIONS);
        let exports = self.rng.between(1, 3) as u32;
        self.episodes.push(Episode {
            kind: EpisodeKind::BulkExport {
                clinician,
                destination,
                searched: false,
            },
            next_at: ms,
            remaining: 1 + exports,
            mean_gap_ms: 60_000.0,
        });
    }

    fn start_off_hours(&mut self, ms: i64, hour: usize) {
        let day: Vec<usize> = (0..self.clinicians.len())
            .filter(|&i| {
                let c = &self.clinicians[i];
                !c.night && shift_factor(false, hour) < 0.01
            })
            .collect();
        if day.is_empty() {
            return;
        }
        let clinician = *self.rng.pick(&day);
        let ip = if self.rng.permille(700) {
            format!(
                "10.200.{}.{}",
                self.rng.between(0, 63),
                self.rng.between(2, 254)
            )
        } else {
            self.clinicians[clinician].ip.clone()
        };
        let session = format!("s-{:08x}", self.rng.next_u64() as u32);
        let reads = self.rng.between(5, 30) as u32;
        let duration = self.rng.between(5, 20) as f64 * MINUTE as f64;
        self.episodes.push(Episode {
            kind: EpisodeKind::OffHours {
                clinician,
                ip,
                session,
                logged_in: false,
            },
            next_at: ms,
            remaining: 1 + reads,
            mean_gap_ms: duration / f64::from(1 + reads),
        });
    }

    fn start_probe(&mut self, ms: i64) {
        let scoring = self.services_by_kind[ServiceKind::Scoring as usize].clone();
        let users = &self.model_user_pick.members;
        let who = if !scoring.is_empty() && (users.is_empty() || self.rng.permille(500)) {
            Who::Service(*self.rng.pick(&scoring))
        } else if !users.is_empty() {
            Who::Clinician(users[self.rng.index(users.len())] as usize)
        } else {
            Who::Clinician(self.rng.index(self.clinicians.len()))
        };
        let model = self.rng.choose(MODEL_MIX);
        let mut base = Box::new([0.0; 30]);
        for (i, v) in base.iter_mut().enumerate() {
            *v = draw_feature(&mut self.rng, i);
        }
        let sweep = self.rng.index(30);
        let steps = self.rng.between(200, 800) as u32;
        let duration = self.rng.between(3, 10) as f64 * MINUTE as f64;
        self.episodes.push(Episode {
            kind: EpisodeKind::ModelProbe {
                who,
                model,
                base,
                sweep,
                step: 0,
                steps,
            },
            next_at: ms,
            remaining: steps,
            mean_gap_ms: duration / f64::from(steps),
        });
    }

    fn anomalous(&mut self, ms: i64) -> Option<SynthMessage> {
        if let Some(i) = self.episodes.iter().position(|e| e.next_at <= ms) {
            let mut ep = self.episodes.swap_remove(i);
            let msg = self.episode_message(&mut ep, ms);
            ep.remaining -= 1;
            if ep.remaining > 0 {
                ep.next_at += ((self.rng.exp() * ep.mean_gap_ms) as i64).max(1);
                self.episodes.push(ep);
            }
            return Some(msg);
        }
        let (clinician, share) = match &self.burst {
            Some(b) => (b.clinician, b.share),
            None => return None,
        };
        if !self.rng.chance(share) {
            return None;
        }
        // Reads of patients anywhere in the hospital, and searches.
        let c = &self.clinicians[clinician];
        let mut ev = if self.rng.permille(850) {
            let mut ev = Access::new(Action::Read);
            ev.patient = Some(self.rng.below(u64::from(self.patients)) as u32);
            let res = self.rng.choose(resource_table(c));
            ev.resource = Some((res, self.rng.below(1_000_000) as u32));
            ev
        } else {
            let mut ev = Access::new(Action::Search);
            ev.query = Some(*self.rng.pick(SEARCH_QUERIES));
            ev
        };
        ev.purpose = Some(if c.role == Role::Registrar {
            "HOPERAT"
        } else {
            "TREAT"
        });
        if self.rng.permille(30) {
            ev.outcome = Some("denied");
        }
        let source = access_source(&mut self.rng, c);
        Some(self.emit_access(
            ms,
            Who::Clinician(clinician),
            None,
            &ev,
            source,
            Truth::RateBurst,
        ))
    }

    fn episode_message(&mut self, ep: &mut Episode, ms: i64) -> SynthMessage {
        match &mut ep.kind {
            EpisodeKind::OffHours {
                clinician,
                ip,
                session,
                logged_in,
            } => {
                let ci = *clinician;
                let c = &self.clinicians[ci];
                let ev = if *logged_in {
                    let mut ev = Access::new(Action::Read);
                    let patient = if self.rng.permille(500) && !c.panel.is_empty() {
                        *self.rng.pick(&c.panel)
                    } else {
                        self.rng.below(u64::from(self.patients)) as u32
                    };
                    ev.patient = Some(patient);
                    let res = self.rng.choose(resource_table(c));
                    ev.resource = Some((res, self.rng.below(1_000_000) as u32));
                    ev.purpose = Some("TREAT");
                    ev
                } else {
                    *logged_in = true;
                    Access::new(Action::Login)
                };
                let ctx = Some((ip.as_str(), session.as_str()));
                self.emit_access(
                    ms,
                    Who::Clinician(ci),
                    ctx,
                    &ev,
                    Some("ehr-prod"),
                    Truth::OffHours,
                )
            }
            EpisodeKind::BulkExport {
                clinician,
                destination,
                searched,
            } => {
                let ci = *clinician;
                let ev = if *searched {
                    let mut ev = Access::new(Action::Export);
                    ev.records = Some(self.rng.between(1000, 20_000));
                    ev.destination = Some(destination);
                    ev.resource = Some((RES_BUNDLE, self.rng.below(1_000_000) as u32));
                    if self.rng.permille(600) {
                        ev.purpose = Some("HOPERAT");
                    }
                    ev
                } else {
                    *searched = true;
                    let mut ev = Access::new(Action::Search);
                    ev.query = Some(*self.rng.pick(SEARCH_QUERIES));
                    ev
                };
                self.emit_access(
                    ms,
                    Who::Clinician(ci),
                    None,
                    &ev,
                    Some("ehr-prod"),
                    Truth::BulkExport,
                )
            }
            EpisodeKind::ModelProbe {
                who,
                model,
                base,
                sweep,
                step,
                steps,
            } => {
                let frac = f64::from(*step) / f64::from((*steps).max(2) - 1);
                *step += 1;
                let input = Input::Probe {
                    base,
                    sweep: *sweep,
                    frac,
                };
                let (who, model) = (*who, *model);
                self.emit_inference(ms, who, model, None, input, true, None, Truth::ModelProbe)
            }
        }
    }

    // -- normal traffic -----------------------------------------------------

    fn normal(&mut self, ms: i64, hour: usize) -> SynthMessage {
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

    fn pick_patient(&mut self, ci: usize) -> (u32, bool) {
        let c = &self.clinicians[ci];
        let r = self.rng.below(1000);
        if r < 880 && !c.panel.is_empty() {
            (*self.rng.pick(&c.panel), false)
        } else if r < 970 && c.dept < CLINICAL_DEPTS {
            let (lo, hi) = self.wards[c.dept];
            let span = u64::from(hi - lo).max(1);
            (lo + self.rng.below(span) as u32, false)
        } else {
            (self.rng.below(u64::from(self.patients)) as u32, true)
        }
    }

    fn clinician_access(&mut self, ms: i64, hour: usize) -> SynthMessage {
        let ci = self.access_pick.sample(&mut self.rng, hour).unwrap_or(0);
        let role = self.clinicians[ci].role;
        let action = self.rng.choose(match role {
            Role::Physician => PHYSICIAN_ACTIONS,
            Role::Nurse => NURSE_ACTIONS,
            Role::Pharmacist => PHARMACIST_ACTIONS,
            Role::Registrar => REGISTRAR_ACTIONS,
            Role::Therapist => THERAPIST_ACTIONS,
        });
        if action == Action::Login {
            let s = format!("s-{:08x}", self.rng.next_u64() as u32);
            self.clinicians[ci].session = s;
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
                let c = &self.clinicians[ci];
                let res = match action {
                    Action::Print => Some(RES_DOCUMENT),
                    Action::Read if self.rng.permille(100) => None,
                    _ => Some(self.rng.choose(resource_table(c))),
                };
                ev.resource = res.map(|r| (r, self.rng.below(1_000_000) as u32));
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
        let source = access_source(&mut self.rng, &self.clinicians[ci]);
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
        ev.resource = Some((RES_BUNDLE, self.rng.below(1_000_000) as u32));
        self.emit_access(
            ms,
            Who::Service(si),
            None,
            &ev,
            Some("ehr-prod"),
            Truth::Normal,
        )
    }

    fn service_of(&mut self, kind: ServiceKind) -> usize {
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
        match user {
            Some(ci) => {
                let (patient, _) = self.pick_patient(ci);
                let input = if self.rng.permille(950) {
                    Input::Sampled
                } else {
                    Input::Fingerprint
                };
                let scores = self.rng.permille(30);
                let purpose = if self.rng.permille(900) {
                    Some("TREAT")
                } else {
                    None
                };
                self.emit_inference(
                    ms,
                    Who::Clinician(ci),
                    model,
                    Some(patient),
                    input,
                    scores,
                    purpose,
                    Truth::Normal,
                )
            }
            None => {
                let si = self.service_of(ServiceKind::Scoring);
                let patient = if self.rng.permille(800) {
                    Some(self.rng.below(u64::from(self.patients)) as u32)
                } else {
                    None
                };
                let input = if self.rng.permille(750) {
                    Input::Sampled
                } else {
                    Input::Fingerprint
                };
                let scores = self.rng.permille(300);
                let purpose = if self.rng.permille(500) {
                    Some("TREAT")
                } else {
                    None
                };
                self.emit_inference(
                    ms,
                    Who::Service(si),
                    model,
                    patient,
                    input,
                    scores,
                    purpose,
                    Truth::Normal,
                )
            }
        }
    }

    fn normal_lineage(&mut self, ms: i64) -> SynthMessage {
        #[derive(Clone, Copy, PartialEq, Eq)]
        enum Op {
            Derive,
            Train,
            Deploy,
            Delete,
            Erase,
        }
        let op = self.rng.choose(&[
            (Op::Derive, 55),
            (Op::Train, 20),
            (Op::Deploy, 10),
            (Op::Delete, 10),
            (Op::Erase, 5),
        ]);
        let si = self.service_of(match op {
            Op::Derive | Op::Delete | Op::Erase => ServiceKind::Etl,
            Op::Train => ServiceKind::Training,
            Op::Deploy => ServiceKind::Deploy,
        });
        let mut b = Vec::with_capacity(512);
        let id = self.begin(&mut b, "l", "lineage", ms);
        let s = &self.services[si];
        write_actor(
            &mut b,
            &s.id,
            Some("service"),
            Some("data-platform"),
            Some(&s.ip),
            None,
        );
        let key = s.id.clone();
        push_field_str(&mut b, "source", "lineage-collector");
        let cohort = self.rng.between(1, 200);
        let model = self.rng.choose(MODEL_MIX);
        let (mname, mver) = MODELS[model];
        let op_name = match op {
            Op::Derive => "derive",
            Op::Train => "train",
            Op::Deploy => "deploy",
            Op::Delete => "delete",
            Op::Erase => "erase",
        };
        push_field_str(&mut b, "op", op_name);
        b.extend_from_slice(b",\"inputs\":[");
        match op {
            Op::Derive => {
                let n = self.rng.between(1, 6);
                for i in 0..n {
                    if i > 0 {
                        b.push(b',');
                    }
                    b.extend_from_slice(b"\"patient:");
                    push_mrn(&mut b, self.rng.below(u64::from(self.patients)) as u32);
                    b.push(b'"');
                }
                for _ in 0..self.rng.between(1, 2) {
                    b.push(b',');
                    let d = *self.rng.pick(DATASETS);
                    push_str(&mut b, d);
                }
            }
            Op::Train => {
                for i in 0..self.rng.between(1, 2) {
                    if i > 0 {
                        b.push(b',');
                    }
                    push_cohort(&mut b, cohort + i);
                }
            }
            Op::Deploy => push_model_ref(&mut b, mname, mver),
            Op::Delete => push_cohort(&mut b, cohort),
            Op::Erase => {
                b.extend_from_slice(b"\"patient:");
                push_mrn(&mut b, self.rng.below(u64::from(self.patients)) as u32);
                b.push(b'"');
            }
        }
        b.push(b']');
        match op {
            Op::Derive | Op::Erase => {
                b.extend_from_slice(b",\"outputs\":[");
                push_cohort(&mut b, cohort);
                b.push(b']');
            }
            Op::Train => {
                b.extend_from_slice(b",\"outputs\":[");
                push_model_ref(&mut b, mname, mver);
                b.push(b']');
            }
            Op::Deploy => {
                b.extend_from_slice(b",\"outputs\":[\"endpoint:model-gateway/");
                b.extend_from_slice(mname.as_bytes());
                b.extend_from_slice(b"\"]");
            }
            Op::Delete => {}
        }
        b.extend_from_slice(b",\"job\":\"");
        match op {
            Op::Derive => {
                b.extend_from_slice(b"cohort_export_");
                push_u64(&mut b, cohort);
            }
            Op::Train => {
                b.extend_from_slice(b"train_");
                push_snake(&mut b, mname);
            }
            Op::Deploy => {
                b.extend_from_slice(b"deploy_");
                push_snake(&mut b, mname);
            }
            Op::Delete => b.extend_from_slice(b"retention_purge"),
            Op::Erase => b.extend_from_slice(b"erasure_request"),
        }
        b.push(b'"');
        b.extend_from_slice(b",\"run\":\"");
        let (hi, lo) = (self.rng.next_u64(), self.rng.next_u64());
        push_hex(&mut b, hi >> 32, 8);
        b.push(b'-');
        push_hex(&mut b, (hi >> 16) & 0xFFFF, 4);
        b.push(b'-');
        push_hex(&mut b, 0x7000 | (hi & 0x0FFF), 4);
        b.push(b'-');
        push_hex(&mut b, 0x8000 | ((lo >> 48) & 0x3FFF), 4);
        b.push(b'-');
        push_hex(&mut b, lo & 0xFFFF_FFFF_FFFF, 12);
        b.extend_from_slice(b"\"}");
        SynthMessage {
            key,
            payload: b,
            truth: Truth::Normal,
            id: Some(id),
            defect: None,
        }
    }

    // -- writing ------------------------------------------------------------

    fn next_id(&mut self, prefix: &str) -> String {
        let mut id = String::with_capacity(prefix.len() + self.seed_text.len() + 12);
        id.push_str(prefix);
        id.push('-');
        id.push_str(&self.seed_text);
        id.push('-');
        let mut tmp = [0u8; 20];
        id.extend(
            digits(&mut tmp, self.counter)
                .iter()
                .map(|&d| char::from(d)),
        );
        id
    }

    /// Writes `{"id":…,"time":…,"kind":…` and returns the id.
    fn begin(&mut self, b: &mut Vec<u8>, prefix: &str, kind: &str, ms: i64) -> String {
        let id = self.next_id(prefix);
        b.extend_from_slice(b"{\"id\":");
        push_plain(b, &id);
        b.extend_from_slice(b",\"time\":\"");
        if self.rng.permille(920) {
            // `write_time(b, ms, Some(0), true)`, with the seconds cached.
            let sec = ms.div_euclid(1000);
            if self.time_cache.0 != sec {
                let mut t = Vec::with_capacity(24);
                write_time(&mut t, sec * 1000, None, false);
                self.time_cache.1.copy_from_slice(&t[..19]);
                self.time_cache.0 = sec;
            }
            b.extend_from_slice(&self.time_cache.1);
            let frac = ms.rem_euclid(1000) as u32;
            b.push(b'.');
            b.push(b'0' + (frac / 100) as u8);
            push_2(b, frac % 100);
            b.push(b'Z');
        } else {
            let off = *self.rng.pick(&[60, 120, -300, 330, 540]);
            write_time(b, ms, Some(off), false);
        }
        b.extend_from_slice(b"\",\"kind\":\"");
        b.extend_from_slice(kind.as_bytes());
        b.push(b'"');
        id
    }

    /// Writes the actor of `who`, returns the key.
    fn write_who(&mut self, b: &mut Vec<u8>, who: Who, ctx: Option<(&str, &str)>) -> String {
        let r = self.rng.below(1000);
        let (with_role, with_ip, with_session) =
            (r < 950, r < 900 || ctx.is_some(), r < 880 || ctx.is_some());
        match who {
            Who::Clinician(i) => {
                let c = &self.clinicians[i];
                let (ip, session) = ctx.unwrap_or((c.ip.as_str(), c.session.as_str()));
                write_actor(
                    b,
                    &c.id,
                    with_role.then_some(c.role.as_str()),
                    with_role.then_some(DEPTS[c.dept]),
                    with_ip.then_some(ip),
                    with_session.then_some(session),
                );
                c.id.clone()
            }
            Who::Service(i) => {
                let s = &self.services[i];
                write_actor(
                    b,
                    &s.id,
                    Some("service"),
                    Some(match s.kind {
                        ServiceKind::Scoring => "clinical-ai",
                        _ => "data-platform",
                    }),
                    with_ip.then_some(&s.ip),
                    None,
                );
                s.id.clone()
            }
        }
    }

    fn emit_access(
        &mut self,
        ms: i64,
        who: Who,
        ctx: Option<(&str, &str)>,
        ev: &Access,
        source: Option<&'static str>,
        truth: Truth,
    ) -> SynthMessage {
        let mut b = Vec::with_capacity(400);
        let id = self.begin(&mut b, "a", "access", ms);
        let key = self.write_who(&mut b, who, ctx);
        if let Some(s) = source {
            push_field_str(&mut b, "source", s);
        }
        push_field_str(&mut b, "action", ev.action.as_str());
        if let Some(o) = ev.outcome {
            push_field_str(&mut b, "outcome", o);
        }
        if let Some(p) = ev.patient {
            b.extend_from_slice(b",\"patient\":\"");
            push_mrn(&mut b, p);
            b.push(b'"');
        }
        if let Some(((ty, prefix), n)) = ev.resource {
            b.extend_from_slice(b",\"resource\":{\"type\":\"");
            b.extend_from_slice(ty.as_bytes());
            b.extend_from_slice(b"\",\"id\":\"");
            b.extend_from_slice(prefix.as_bytes());
            b.push(b'-');
            push_u64(&mut b, u64::from(n));
            b.extend_from_slice(b"\"}");
        }
        if let Some(p) = ev.purpose {
            push_field_str(&mut b, "purpose", p);
        }
        if let Some(r) = ev.records {
            b.extend_from_slice(b",\"records\":");
            push_u64(&mut b, r);
        }
        if let Some(d) = ev.destination {
            push_field_str(&mut b, "destination", d);
        }
        if let Some(q) = ev.query {
            b.extend_from_slice(b",\"attrs\":{\"query\":");
            push_str(&mut b, q);
            b.push(b'}');
        }
        b.push(b'}');
        SynthMessage {
            key,
            payload: b,
            truth,
            id: Some(id),
            defect: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn emit_inference(
        &mut self,
        ms: i64,
        who: Who,
        model: usize,
        patient: Option<u32>,
        input: Input<'_>,
        scores_returned: bool,
        purpose: Option<&'static str>,
        truth: Truth,
    ) -> SynthMessage {
        let mut b = Vec::with_capacity(640);
        let id = self.begin(&mut b, "i", "inference", ms);
        let key = self.write_who(&mut b, who, None);
        push_field_str(&mut b, "source", "model-gateway");
        let (mname, mver) = MODELS[model];
        b.extend_from_slice(b",\"model\":{\"id\":\"");
        b.extend_from_slice(mname.as_bytes());
        b.extend_from_slice(b"\",\"version\":\"");
        b.extend_from_slice(mver.as_bytes());
        b.extend_from_slice(b"\"}");
        if let Some(p) = patient {
            b.extend_from_slice(b",\"patient\":\"");
            push_mrn(&mut b, p);
            b.push(b'"');
        }
        // A crude risk: mostly low, rising with fever, tachycardia and lactate.
        let mut risk = -1.6 + 0.9 * self.rng.approx_normal();
        match input {
            Input::Fingerprint => {
                b.extend_from_slice(b",\"input\":{\"fingerprint\":\"b3:");
                push_hex(&mut b, self.rng.next_u64(), 16);
                b.extend_from_slice(b"\"}");
            }
            Input::Sampled | Input::Probe { .. } => {
                b.extend_from_slice(b",\"input\":{\"features\":[");
                for i in 0..FEATURES.len() {
                    if i > 0 {
                        b.push(b',');
                    }
                    let v = match input {
                        Input::Probe { base, sweep, frac } => {
                            if i == sweep {
                                let (_, lo, hi, _) = FEATURES[i];
                                lo + (hi - lo) * frac
                            } else {
                                base[i]
                            }
                        }
                        _ => draw_feature(&mut self.rng, i),
                    };
                    match i {
                        0 => risk += (v - 37.5).max(0.0) * 0.8,
                        1 => risk += (v - 100.0).max(0.0) * 0.03,
                        8 => risk += (v - 2.0).max(0.0) * 0.5,
                        _ => {}
                    }
                    push_fixed(&mut b, v, FEATURES[i].3);
                }
                b.extend_from_slice(b"]}");
            }
        }
        let score = 1.0 / (1.0 + (-risk).exp());
        let label = if score >= 0.7 {
            "high"
        } else if score >= 0.3 {
            "medium"
        } else {
            "low"
        };
        b.extend_from_slice(b",\"output\":{\"label\":\"");
        b.extend_from_slice(label.as_bytes());
        b.extend_from_slice(b"\",\"score\":");
        push_fixed(&mut b, score, 3);
        b.extend_from_slice(if scores_returned {
            b",\"scores_returned\":true}".as_slice()
        } else {
            b",\"scores_returned\":false}".as_slice()
        });
        if let Some(p) = purpose {
            push_field_str(&mut b, "purpose", p);
        }
        b.push(b'}');
        SynthMessage {
            key,
            payload: b,
            truth,
            id: Some(id),
            defect: None,
        }
    }

    // -- malformed ----------------------------------------------------------

    fn malformed(&mut self, ms: i64, hour: usize) -> SynthMessage {
        let defect = self.rng.choose(DEFECTS);
        let ci = self.rng.index(self.clinicians.len());
        let key = self.clinicians[ci].id.clone();
        let patient = self.rng.below(u64::from(self.patients)) as u32;
        let id = self.next_id("a");
        let mut time = Vec::with_capacity(32);
        time.push(b'"');
        write_time(&mut time, ms, Some(0), true);
        time.push(b'"');
        let mut mrn = Vec::with_capacity(16);
        mrn.push(b'"');
        push_mrn(&mut mrn, patient);
        mrn.push(b'"');
        let mut actor = Vec::with_capacity(32);
        actor.extend_from_slice(b"{\"id\":");
        push_str(&mut actor, &key);
        actor.push(b'}');
        let mut idj = Vec::with_capacity(32);
        push_str(&mut idj, &id);
        let model = br#"{"id":"sepsis-risk","version":"3.1.0"}"#.as_slice();

        use V::{R, S};
        let (id_f, time_f, actor_f, mrn_f) = (R(&idj), R(&time), R(&actor), R(&mrn));
        let read = [
            ("id", id_f),
            ("time", time_f),
            ("kind", S("access")),
            ("actor", actor_f),
            ("action", S("read")),
            ("patient", mrn_f),
        ];
        let mut b = Vec::with_capacity(256);
        match defect {
            Defect::MissingId => write_obj(&mut b, &without(&read, "id")),
            Defect::MissingTime => write_obj(&mut b, &without(&read, "time")),
            Defect::BadTime => {
                let t = *self.rng.pick(&[
                    "\"yesterday\"",
                    "\"2026/03/02 09:14:03\"",
                    "\"02.03.2026 09:14\"",
                    "\"2026-13-02T09:14:03Z\"",
                    "\"2026-03-02T25:14:03Z\"",
                    "\"2026-02-30T10:00:00Z\"",
                    "\"1772442843\"",
                ]);
                write_obj(&mut b, &with(&read, "time", R(t.as_bytes())));
            }
            Defect::TimeWithoutOffset => {
                let mut t = vec![b'"'];
                write_time(&mut t, ms, None, self.rng.permille(500));
                t.push(b'"');
                write_obj(&mut b, &with(&read, "time", R(&t)));
            }
            Defect::UnknownKind => {
                let k = *self
                    .rng
                    .pick(&["telemetry", "audit", "heartbeat", "metric"]);
                write_obj(&mut b, &with(&read, "kind", S(k)));
            }
            Defect::MissingActor => write_obj(&mut b, &without(&read, "actor")),
            Defect::EmptyActorId => write_obj(&mut b, &with(&read, "actor", R(br#"{"id":""}"#))),
            Defect::UnknownAction => {
                let a = *self.rng.pick(&["peek", "browse", "copy", "view"]);
                write_obj(&mut b, &with(&read, "action", S(a)));
            }
            Defect::MissingPatient => write_obj(&mut b, &without(&read, "patient")),
            Defect::RecordsBelowOne => {
                let r = *self.rng.pick(&["0", "-3"]);
                let fields = [
                    ("id", id_f),
                    ("time", time_f),
                    ("kind", S("access")),
                    ("actor", actor_f),
                    ("action", S("export")),
                    ("records", R(r.as_bytes())),
                    ("destination", S("registry.internal")),
                ];
                write_obj(&mut b, &fields);
            }
            Defect::MissingModel
            | Defect::NonNumberFeature
            | Defect::NanFeature
            | Defect::TooManyFeatures => {
                let features: Vec<u8> = match defect {
                    Defect::NonNumberFeature => br#"{"features":[38.9,"112",22,0.8]}"#.to_vec(),
                    Defect::NanFeature => {
                        let v = *self.rng.pick(&["\"NaN\"", "\"Infinity\"", "\"-Infinity\""]);
                        format!("{{\"features\":[38.9,{v},22,0.8]}}").into_bytes()
                    }
                    Defect::TooManyFeatures => {
                        let mut f = b"{\"features\":[".to_vec();
                        let n = self.rng.between(4097, 5000);
                        for i in 0..n {
                            if i > 0 {
                                f.push(b',');
                            }
                            push_fixed(&mut f, draw_feature(&mut self.rng, i as usize % 30), 1);
                        }
                        f.extend_from_slice(b"]}");
                        f
                    }
                    _ => br#"{"features":[38.9,112,22,0.8]}"#.to_vec(),
                };
                let mut fields = vec![
                    ("id", id_f),
                    ("time", time_f),
                    ("kind", S("inference")),
                    ("actor", actor_f),
                ];
                if defect != Defect::MissingModel {
                    fields.push(("model", R(model)));
                }
                fields.push(("patient", mrn_f));
                fields.push(("input", R(&features)));
                write_obj(&mut b, &fields);
            }
            Defect::UnknownOp => {
                let op = *self.rng.pick(&["copy", "merge", "publish"]);
                let fields = [
                    ("id", id_f),
                    ("time", time_f),
                    ("kind", S("lineage")),
                    ("actor", R(br#"{"id":"svc-etl-1"}"#)),
                    ("op", S(op)),
                    ("inputs", R(br#"["dataset:ehr.vitals"]"#)),
                    ("outputs", R(br#"["dataset:cohort-7"]"#)),
                ];
                write_obj(&mut b, &fields);
            }
            Defect::ActorNotObject => {
                let mut a = Vec::new();
                push_str(&mut a, &key);
                write_obj(&mut b, &with(&read, "actor", R(&a)));
            }
            Defect::TruncatedJson => {
                let full = self.normal(ms, hour).payload;
                let cut = self.rng.between(1, full.len() as u64 - 1) as usize;
                b.extend_from_slice(&full[..cut]);
            }
            Defect::NotObject => match self.rng.below(4) {
                0 => b.extend_from_slice(b"[1,2,3]"),
                1 => {
                    let full = self.normal(ms, hour).payload;
                    b.push(b'[');
                    b.extend_from_slice(&full);
                    b.push(b']');
                }
                2 => push_str(&mut b, "access"),
                _ => b.extend_from_slice(b"null"),
            },
            Defect::InvalidUtf8 => {
                // Latin-1 text, stray bytes, an overlong encoding, a UTF-16
                // surrogate, a cut multi-byte sequence.
                let options: [&[u8]; 5] = [
                    b"caf\xe9",
                    b"\xff\xfe",
                    b"\xc0\xaf",
                    b"\xed\xa0\x80",
                    b"x\xe2\x82",
                ];
                let bad = options[self.rng.index(options.len())];
                let mut note = b"{\"note\":\"".to_vec();
                note.extend_from_slice(bad);
                note.extend_from_slice(b"\"}");
                let mut fields = read.to_vec();
                fields.push(("attrs", R(&note)));
                write_obj(&mut b, &fields);
            }
            Defect::DuplicateKey => {
                let mut other = Vec::new();
                push_str(&mut other, &format!("{id}-dup"));
                let mut fields = read.to_vec();
                match self.rng.below(3) {
                    0 => fields.push(("id", R(&other))),
                    1 => fields.push(("kind", S("inference"))),
                    _ => fields.insert(1, ("patient", S("MRN-100000"))),
                }
                write_obj(&mut b, &fields);
            }
            Defect::WrongTypeId => {
                let n = self.counter.to_string();
                write_obj(&mut b, &with(&read, "id", R(n.as_bytes())));
            }
            Defect::IdTooLong => {
                let mut long = vec![b'"'];
                let n = self.rng.between(129, 300) as usize;
                long.extend(std::iter::repeat_n(b'x', n));
                long.push(b'"');
                write_obj(&mut b, &with(&read, "id", R(&long)));
            }
            Defect::DeepNesting => {
                let depth = self.rng.between(200, 3000) as usize;
                let mut deep = Vec::with_capacity(depth * 6 + 8);
                for _ in 0..depth {
                    deep.extend_from_slice(b"{\"a\":");
                }
                deep.extend_from_slice(b"\"x\"");
                deep.extend(std::iter::repeat_n(b'}', depth));
                let mut fields = read.to_vec();
                fields.push(("attrs", R(&deep)));
                write_obj(&mut b, &fields);
            }
            Defect::Oversize => {
                let n = (1 << 20) + self.rng.between(1, 65_536) as usize;
                let mut note = Vec::with_capacity(n + 16);
                note.extend_from_slice(b"{\"note\":\"");
                note.extend(std::iter::repeat_n(b'x', n));
                note.extend_from_slice(b"\"}");
                let mut fields = read.to_vec();
                fields.push(("attrs", R(&note)));
                write_obj(&mut b, &fields);
            }
        }
        SynthMessage {
            key,
            payload: b,
            truth: Truth::Malformed,
            id: None,
            defect: Some(defect.name()),
        }
    }
}

fn resource_table(c: &Clinician) -> &'static [(Res, u32)] {
    match c.role {
        Role::Pharmacist => RES_PHARMACY,
        Role::Registrar => RES_REGISTRAR,
        Role::Therapist => RES_THERAPY,
        _ if DEPTS[c.dept] == "radiology" => RES_RADIOLOGY,
        _ => RES_GENERAL,
    }
}

fn access_source(rng: &mut Rng, c: &Clinician) -> Option<&'static str> {
    let r = rng.below(1000);
    if r < 30 {
        None
    } else if DEPTS[c.dept] == "radiology" && r < 500 {
        Some("pacs-prod")
    } else if c.role == Role::Pharmacist && r < 600 {
        Some("pharmacy-prod")
    } else if c.role == Role::Nurse && r < 100 {
        Some("ehr-mobile")
    } else {
        Some("ehr-prod")
    }
}

// ---------------------------------------------------------------------------
// Defect classes of malformed messages.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    MissingId,
    MissingTime,
    BadTime,
    TimeWithoutOffset,
    UnknownKind,
    MissingActor,
    EmptyActorId,
    UnknownAction,
    MissingPatient,
    RecordsBelowOne,
    MissingModel,
    NonNumberFeature,
    NanFeature,
    UnknownOp,
    ActorNotObject,
    TruncatedJson,
    NotObject,
    InvalidUtf8,
    DuplicateKey,
    WrongTypeId,
    IdTooLong,
    TooManyFeatures,
    DeepNesting,
    Oversize,
}

impl Defect {
    fn name(self) -> &'static str {
        match self {
            Defect::MissingId => "missing_id",
            Defect::MissingTime => "missing_time",
            Defect::BadTime => "bad_time",
            Defect::TimeWithoutOffset => "time_without_offset",
            Defect::UnknownKind => "unknown_kind",
            Defect::MissingActor => "missing_actor",
            Defect::EmptyActorId => "empty_actor_id",
            Defect::UnknownAction => "unknown_action",
            Defect::MissingPatient => "missing_patient",
            Defect::RecordsBelowOne => "records_below_1",
            Defect::MissingModel => "missing_model",
            Defect::NonNumberFeature => "non_number_feature",
            Defect::NanFeature => "nan_feature",
            Defect::UnknownOp => "unknown_op",
            Defect::ActorNotObject => "actor_not_object",
            Defect::TruncatedJson => "truncated_json",
            Defect::NotObject => "not_object",
            Defect::InvalidUtf8 => "invalid_utf8",
            Defect::DuplicateKey => "duplicate_key",
            Defect::WrongTypeId => "wrong_type_id",
            Defect::IdTooLong => "id_too_long",
            Defect::TooManyFeatures => "too_many_features",
            Defect::DeepNesting => "deep_nesting",
            Defect::Oversize => "oversize",
        }
    }
}

/// Weights: oversize messages (1 MiB each) are one malformed message in a
/// thousand, so that a million-message benchmark carries a couple of them.
const DEFECTS: &[(Defect, u32)] = &[
    (Defect::MissingId, 80),
    (Defect::MissingTime, 60),
    (Defect::BadTime, 80),
    (Defect::TimeWithoutOffset, 80),
    (Defect::UnknownKind, 60),
    (Defect::MissingActor, 50),
    (Defect::EmptyActorId, 50),
    (Defect::UnknownAction, 50),
    (Defect::MissingPatient, 50),
    (Defect::RecordsBelowOne, 40),
    (Defect::MissingModel, 40),
    (Defect::NonNumberFeature, 40),
    (Defect::NanFeature, 30),
    (Defect::UnknownOp, 40),
    (Defect::ActorNotObject, 40),
    (Defect::TruncatedJson, 100),
    (Defect::NotObject, 50),
    (Defect::InvalidUtf8, 80),
    (Defect::DuplicateKey, 40),
    (Defect::WrongTypeId, 30),
    (Defect::IdTooLong, 20),
    (Defect::TooManyFeatures, 5),
    (Defect::DeepNesting, 5),
    (Defect::Oversize, 1),
];

/// A JSON value for [`write_obj`]: a string to quote, or raw bytes.
#[derive(Debug, Clone, Copy)]
enum V<'a> {
    S(&'a str),
    R(&'a [u8]),
}

fn without<'a>(fields: &[(&'static str, V<'a>)], name: &str) -> Vec<(&'static str, V<'a>)> {
    fields.iter().copied().filter(|&(k, _)| k != name).collect()
}

fn with<'a>(fields: &[(&'static str, V<'a>)], name: &str, v: V<'a>) -> Vec<(&'static str, V<'a>)> {
    fields
        .iter()
        .map(|&(k, old)| (k, if k == name { v } else { old }))
        .collect()
}

fn write_obj(b: &mut Vec<u8>, fields: &[(&str, V<'_>)]) {
    b.push(b'{');
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        push_str(b, k);
        b.push(b':');
        match v {
            V::S(s) => push_str(b, s),
            V::R(r) => b.extend_from_slice(r),
        }
    }
    b.push(b'}');
}

// ---------------------------------------------------------------------------
// JSON writing.

/// Bytes that cannot appear raw inside a JSON string.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Writes a JSON string literal, escaping `"`, `\` and control characters.
fn push_str(b: &mut Vec<u8>, s: &str) {
    b.push(b'"');
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&c| NEEDS_ESCAPE[c as usize]) {
        b.extend_from_slice(bytes);
    } else {
        for &c in bytes {
            match c {
                b'"' => b.extend_from_slice(b"\\\""),
                b'\\' => b.extend_from_slice(b"\\\\"),
                b'\n' => b.extend_from_slice(b"\\n"),
                b'\r' => b.extend_from_slice(b"\\r"),
                b'\t' => b.extend_from_slice(b"\\t"),
                0x08 => b.extend_from_slice(b"\\b"),
                0x0c => b.extend_from_slice(b"\\f"),
                c if c < 0x20 => {
                    b.extend_from_slice(b"\\u00");
                    push_hex(b, u64::from(c), 2);
                }
                c => b.push(c),
            }
        }
    }
    b.push(b'"');
}

/// Writes a string literal that needs no escaping (identifiers and
/// vocabulary this module produces itself).
#[inline]
fn push_plain(b: &mut Vec<u8>, s: &str) {
    debug_assert!(s.bytes().all(|c| !NEEDS_ESCAPE[c as usize]), "{s:?}");
    b.push(b'"');
    b.extend_from_slice(s.as_bytes());
    b.push(b'"');
}

/// Writes `,"name":"value"` for a value that needs no escaping.
#[inline]
fn push_field_str(b: &mut Vec<u8>, name: &str, value: &str) {
    b.extend_from_slice(b",\"");
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(b"\":");
    push_plain(b, value);
}

/// Writes `,"actor":{…}`.
fn write_actor(
    b: &mut Vec<u8>,
    id: &str,
    role: Option<&str>,
    dept: Option<&str>,
    ip: Option<&str>,
    session: Option<&str>,
) {
    b.extend_from_slice(b",\"actor\":{\"id\":");
    push_plain(b, id);
    if let Some(v) = role {
        push_field_str(b, "role", v);
    }
    if let Some(v) = dept {
        push_field_str(b, "dept", v);
    }
    if let Some(v) = ip {
        push_field_str(b, "ip", v);
    }
    if let Some(v) = session {
        push_field_str(b, "session", v);
    }
    b.push(b'}');
}

/// The decimal digits of `n`, written at the end of `tmp`.
#[inline]
fn digits(tmp: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &tmp[i..]
}

#[inline]
fn push_u64(b: &mut Vec<u8>, n: u64) {
    let mut tmp = [0u8; 20];
    b.extend_from_slice(digits(&mut tmp, n));
}

/// Writes a fixed-point decimal number with `decimals` digits after the point.
#[inline]
fn push_fixed(b: &mut Vec<u8>, v: f64, decimals: u32) {
    const SCALES: [u64; 5] = [1, 10, 100, 1000, 10_000];
    let scale = SCALES[decimals.min(4) as usize];
    let decimals = decimals.min(4);
    // Round half away from zero; `as` saturates and maps NaN to 0.
    let x = v * scale as f64;
    let mut n = if x >= 0.0 {
        (x + 0.5) as i64
    } else {
        (x - 0.5) as i64
    };
    if n < 0 {
        b.push(b'-');
        n = -n;
    }
    let n = n as u64;
    push_u64(b, n / scale);
    if decimals > 0 {
        b.push(b'.');
        let mut frac = n % scale;
        let mut digits = [b'0'; 20];
        for i in (0..decimals as usize).rev() {
            digits[i] = b'0' + (frac % 10) as u8;
            frac /= 10;
        }
        b.extend_from_slice(&digits[..decimals as usize]);
    }
}

fn push_hex(b: &mut Vec<u8>, v: u64, digits: u32) {
    for i in (0..digits).rev() {
        b.push(b"0123456789abcdef"[((v >> (i * 4)) & 0xF) as usize]);
    }
}

#[inline]
fn push_mrn(b: &mut Vec<u8>, patient: u32) {
    b.extend_from_slice(b"MRN-");
    push_u64(b, 200_000 + u64::from(patient));
}

/// Writes `name` with `-` replaced by `_`.
fn push_snake(b: &mut Vec<u8>, name: &str) {
    b.extend(name.bytes().map(|c| if c == b'-' { b'_' } else { c }));
}

fn push_cohort(b: &mut Vec<u8>, n: u64) {
    b.extend_from_slice(b"\"dataset:cohort-");
    push_u64(b, n);
    b.push(b'"');
}

fn push_model_ref(b: &mut Vec<u8>, name: &str, version: &str) {
    b.extend_from_slice(b"\"model:");
    b.extend_from_slice(name.as_bytes());
    b.push(b'@');
    b.extend_from_slice(version.as_bytes());
    b.push(b'"');
}

#[inline]
fn push_2(b: &mut Vec<u8>, v: u32) {
    b.push(b'0' + (v / 10) as u8);
    b.push(b'0' + (v % 10) as u8);
}

/// Days since 1970-01-01 → (year, month, day) (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Writes an RFC 3339 timestamp (without quotes) for the instant `ms` (Unix
/// milliseconds) shown at UTC offset `offset_min` minutes (`Some(0)` → `Z`,
/// `None` → no offset at all, which is invalid), with milliseconds or whole
/// seconds.
fn write_time(b: &mut Vec<u8>, ms: i64, offset_min: Option<i32>, millis: bool) {
    let off = offset_min.unwrap_or(0);
    let local = ms + i64::from(off) * MINUTE;
    let days = local.div_euclid(86_400_000);
    let rem = local.rem_euclid(86_400_000);
    let (y, mo, d) = civil_from_days(days);
    let y = y.clamp(0, 9999) as u32;
    push_2(b, y / 100);
    push_2(b, y % 100);
    b.push(b'-');
    push_2(b, mo);
    b.push(b'-');
    push_2(b, d);
    b.push(b'T');
    let secs = (rem / 1000) as u32;
    push_2(b, secs / 3600);
    b.push(b':');
    push_2(b, secs / 60 % 60);
    b.push(b':');
    push_2(b, secs % 60);
    if millis {
        let frac = (rem % 1000) as u32;
        b.push(b'.');
        b.push(b'0' + (frac / 100) as u8);
        push_2(b, frac % 100);
    }
    match offset_min {
        None => {}
        Some(0) => b.push(b'Z'),
        Some(o) => {
            b.push(if o < 0 { b'-' } else { b'+' });
            let a = o.unsigned_abs();
            push_2(b, a / 60);
            b.push(b':');
            push_2(b, a % 60);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use serde_json::Value;
    use std::collections::{HashMap, HashSet};

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
    }

    /// Runs `n` messages at `per_sec` messages per simulated second.
    fn run(cfg: WorkloadConfig, n: usize, per_sec: u32) -> Vec<(DateTime<Utc>, SynthMessage)> {
        let mut w = Workload::new(cfg);
        let t0 = start();
        let step = 1_000_000 / i64::from(per_sec);
        (0..n)
            .map(|i| {
                let now = t0 + Duration::microseconds(step * i as i64);
                (now, w.next_message(now))
            })
            .collect()
    }

    fn cfg(seed: u64) -> WorkloadConfig {
        WorkloadConfig {
            seed,
            ..WorkloadConfig::default()
        }
    }

    fn str_field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
        let mut cur = v;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_str()
    }

    /// A small, independent reading of the v1 contract, for the tests.
    fn check_event(payload: &[u8]) -> Result<Value, String> {
        if payload.len() > 1 << 20 {
            return Err("oversize".into());
        }
        let text = std::str::from_utf8(payload).map_err(|e| format!("utf8: {e}"))?;
        let v: Value = serde_json::from_str(text).map_err(|e| format!("json: {e}"))?;
        let obj = v.as_object().ok_or("not an object")?;
        let id = obj.get("id").and_then(Value::as_str).ok_or("id")?;
        if id.is_empty() || id.chars().count() > 128 {
            return Err("id length".into());
        }
        let time = obj.get("time").and_then(Value::as_str).ok_or("time")?;
        DateTime::parse_from_rfc3339(time).map_err(|e| format!("time {time}: {e}"))?;
        let actor = obj.get("actor").and_then(Value::as_object).ok_or("actor")?;
        let actor_id = actor.get("id").and_then(Value::as_str).ok_or("actor.id")?;
        if actor_id.is_empty() {
            return Err("actor.id empty".into());
        }
        for (k, f) in actor {
            if !f.is_string() {
                return Err(format!("actor.{k} not a string"));
            }
        }
        if let Some(attrs) = obj.get("attrs") {
            let attrs = attrs.as_object().ok_or("attrs")?;
            if attrs.values().any(|a| !a.is_string()) {
                return Err("attrs not strings".into());
            }
        }
        match obj.get("kind").and_then(Value::as_str).ok_or("kind")? {
            "access" => {
                let action = obj.get("action").and_then(Value::as_str).ok_or("action")?;
                let known = [
                    "read", "create", "update", "delete", "search", "export", "print", "login",
                ];
                if !known.contains(&action) {
                    return Err(format!("action {action}"));
                }
                if !matches!(action, "login" | "search" | "export") && !obj.contains_key("patient")
                {
                    return Err("patient".into());
                }
                if let Some(o) = obj.get("outcome")
                    && !matches!(o.as_str(), Some("success" | "denied" | "error"))
                {
                    return Err("outcome".into());
                }
                if let Some(r) = obj.get("records")
                    && r.as_u64().is_none_or(|r| r < 1)
                {
                    return Err("records".into());
                }
            }
            "inference" => {
                str_field(&v, &["model", "id"]).ok_or("model.id")?;
                str_field(&v, &["model", "version"]).ok_or("model.version")?;
                if let Some(f) = v.get("input").and_then(|i| i.get("features")) {
                    let f = f.as_array().ok_or("features")?;
                    if f.len() > 4096 || f.iter().any(|x| !x.is_number()) {
                        return Err("features".into());
                    }
                }
            }
            "lineage" => {
                let op = obj.get("op").and_then(Value::as_str).ok_or("op")?;
                if !["derive", "train", "deploy", "delete", "erase"].contains(&op) {
                    return Err(format!("op {op}"));
                }
                for k in ["inputs", "outputs"] {
                    if let Some(a) = obj.get(k) {
                        let a = a.as_array().ok_or(k)?;
                        if a.iter().any(|x| !x.is_string()) {
                            return Err(k.into());
                        }
                    }
                }
            }
            other => return Err(format!("kind {other}")),
        }
        Ok(v)
    }

    #[test]
    fn same_seed_same_output() {
        let a = run(cfg(7), 20_000, 50);
        let b = run(cfg(7), 20_000, 50);
        assert!(a == b);
    }

    #[test]
    fn different_seeds_differ() {
        let a = run(cfg(1), 1000, 50);
        let b = run(cfg(2), 1000, 50);
        let same = a
            .iter()
            .zip(&b)
            .filter(|(x, y)| x.1.payload == y.1.payload)
            .count();
        assert_eq!(same, 0);
        // Not just the ids: the actors differ too.
        let same_key = a.iter().zip(&b).filter(|(x, y)| x.1.key == y.1.key).count();
        assert!(same_key < 100, "{same_key} of 1000 keys equal");
        let keys_a: HashSet<_> = a.iter().map(|m| &m.1.key).collect();
        let keys_b: HashSet<_> = b.iter().map(|m| &m.1.key).collect();
        assert_ne!(keys_a, keys_b);
    }

    fn kind_shares(msgs: &[(DateTime<Utc>, SynthMessage)]) -> HashMap<String, f64> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut total = 0;
        for (_, m) in msgs {
            if m.truth == Truth::Malformed {
                continue;
            }
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            *counts
                .entry(v["kind"].as_str().unwrap().to_string())
                .or_default() += 1;
            total += 1;
        }
        counts
            .into_iter()
            .map(|(k, c)| (k, c as f64 / total as f64))
            .collect()
    }

    #[test]
    fn kind_mix_is_close_to_target() {
        for (anomalies, tolerance) in [(false, 0.01), (true, 0.04)] {
            let msgs = run(
                WorkloadConfig {
                    seed: 11,
                    anomalies,
                    ..WorkloadConfig::default()
                },
                100_000,
                20,
            );
            let shares = kind_shares(&msgs);
            for (kind, target) in [("access", 0.80), ("inference", 0.15), ("lineage", 0.05)] {
                let got = shares.get(kind).copied().unwrap_or(0.0);
                assert!(
                    (got - target).abs() <= tolerance,
                    "{kind}: {got:.4} vs {target} (anomalies {anomalies})"
                );
            }
        }
    }

    #[test]
    fn malformed_rate_is_close_to_configured() {
        for (rate, n) in [(2000u32, 200_000usize), (50_000, 100_000)] {
            let msgs = run(
                WorkloadConfig {
                    seed: 3,
                    malformed_per_million: rate,
                    ..WorkloadConfig::default()
                },
                n,
                100,
            );
            let bad = msgs
                .iter()
                .filter(|m| m.1.truth == Truth::Malformed)
                .count();
            let expected = n as f64 * f64::from(rate) / 1e6;
            let sd = expected.sqrt();
            assert!(
                (bad as f64 - expected).abs() < 4.0 * sd,
                "{bad} malformed, expected {expected}"
            );
        }
        let none = run(
            WorkloadConfig {
                malformed_per_million: 0,
                ..cfg(3)
            },
            50_000,
            100,
        );
        assert!(none.iter().all(|m| m.1.truth != Truth::Malformed));
    }

    #[test]
    fn well_formed_messages_follow_the_contract() {
        let msgs = run(cfg(5), 100_000, 20);
        let mut ids = HashSet::new();
        let mut non_z = 0;
        for (now, m) in &msgs {
            if m.truth == Truth::Malformed {
                continue;
            }
            let v = check_event(&m.payload)
                .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&m.payload)));
            let id = v["id"].as_str().unwrap();
            assert_eq!(m.id.as_deref(), Some(id));
            assert!(ids.insert(id.to_string()), "duplicate id {id}");
            assert_eq!(v["actor"]["id"].as_str(), Some(m.key.as_str()));
            assert!(m.defect.is_none());
            let t = DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
            let lag = (*now - t.with_timezone(&Utc)).num_milliseconds();
            assert!((0..1000).contains(&lag), "time {t} vs now {now}");
            if !v["time"].as_str().unwrap().ends_with('Z') {
                non_z += 1;
            }
            assert!(!m.payload.contains(&b'\n'));
            if let Some(f) = v["input"]["features"].as_array() {
                assert_eq!(f.len(), 30);
            }
        }
        assert!(non_z > 1000, "some events carry a non-Z offset");
    }

    #[test]
    fn malformed_messages_break_the_contract() {
        let msgs = run(
            WorkloadConfig {
                malformed_per_million: 100_000,
                ..cfg(9)
            },
            100_000,
            100,
        );
        let mut seen = HashSet::new();
        for (_, m) in msgs.iter().filter(|m| m.1.truth == Truth::Malformed) {
            let defect = m.defect.unwrap();
            seen.insert(defect);
            assert!(m.id.is_none());
            assert!(!m.payload.is_empty());
            assert!(!m.payload.contains(&b'\n'), "{defect}");
            if defect == "duplicate_key" {
                // serde_json keeps the last value; check the raw text instead.
                let text = std::str::from_utf8(&m.payload).unwrap();
                let keys: Vec<&str> = ["\"id\":", "\"kind\":", "\"patient\":"]
                    .into_iter()
                    .filter(|k| text.matches(k).count() > 1)
                    .collect();
                assert!(!keys.is_empty(), "{text}");
                continue;
            }
            assert!(
                check_event(&m.payload).is_err(),
                "{defect} accepted: {}",
                String::from_utf8_lossy(&m.payload)
            );
        }
        // Every defect class except the rarest shows up in 10 000 malformed messages.
        for &(d, w) in DEFECTS {
            if w >= 20 {
                assert!(seen.contains(d.name()), "{} never generated", d.name());
            }
        }
    }

    #[test]
    fn rate_burst_within_two_hours_when_on_never_when_off() {
        for seed in 0..5 {
            let msgs = run(cfg(seed), 2 * 3600 * 10, 10);
            assert!(
                msgs.iter().any(|m| m.1.truth == Truth::RateBurst),
                "seed {seed}: no burst in 2 h"
            );
        }
        let off = run(
            WorkloadConfig {
                anomalies: false,
                ..cfg(0)
            },
            2 * 3600 * 10,
            10,
        );
        assert!(
            off.iter()
                .all(|m| matches!(m.1.truth, Truth::Normal | Truth::Malformed))
        );
    }

    #[test]
    fn rate_burst_stands_out_in_a_60s_window() {
        // Daytime, 20 messages/s for 2 hours.
        let msgs = run(cfg(21), 2 * 3600 * 20, 20);
        let bursts: HashSet<&str> = msgs
            .iter()
            .filter(|m| m.1.truth == Truth::RateBurst)
            .map(|m| m.1.key.as_str())
            .collect();
        assert!(!bursts.is_empty());
        let t0 = msgs[0].0;
        for actor in bursts {
            // Messages of this actor per minute, and the minutes of its bursts.
            let mut per_min: HashMap<i64, usize> = HashMap::new();
            let mut burst_min = HashSet::new();
            for (t, m) in &msgs {
                if m.key == actor {
                    let minute = (*t - t0).num_minutes();
                    *per_min.entry(minute).or_default() += 1;
                    if m.truth == Truth::RateBurst {
                        burst_min.insert(minute);
                    }
                }
            }
            let minutes = (msgs.last().unwrap().0 - t0).num_minutes() + 1;
            let normal_total: usize = per_min
                .iter()
                .filter(|(k, _)| !burst_min.contains(k))
                .map(|(_, c)| c)
                .sum();
            let baseline = normal_total as f64 / (minutes - burst_min.len() as i64) as f64;
            let peak = *per_min.values().max().unwrap() as f64;
            assert!(
                peak >= 10.0 * baseline && peak >= 30.0,
                "{actor}: peak {peak}/min vs baseline {baseline:.2}/min"
            );
        }
    }

    #[test]
    fn other_anomalies_appear_over_a_day() {
        let msgs = run(cfg(4), 24 * 3600 * 2, 2);
        let truths: HashSet<Truth> = msgs.iter().map(|m| m.1.truth).collect();
        for t in [Truth::BulkExport, Truth::OffHours, Truth::ModelProbe] {
            assert!(truths.contains(&t), "{t:?} missing");
        }
        for (t, m) in &msgs {
            match m.truth {
                // Episodes start at night and last up to 20 minutes.
                Truth::OffHours => {
                    let h = hour_of(t.timestamp_millis());
                    assert!(is_night(h) || h == 5, "off-hours event at {t}");
                }
                Truth::BulkExport => {
                    let v = check_event(&m.payload).unwrap();
                    if v["action"] == "export" {
                        assert!(v["records"].as_u64().unwrap() >= 1000);
                        let d = v["destination"].as_str().unwrap();
                        assert!(EXTERNAL_DESTINATIONS.contains(&d));
                    }
                }
                Truth::ModelProbe => {
                    let v = check_event(&m.payload).unwrap();
                    assert_eq!(v["kind"], "inference");
                    assert_eq!(v["output"]["scores_returned"], true);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn time_writer_matches_chrono() {
        let mut rng = Rng::new(1);
        for _ in 0..20_000 {
            let ms = rng.below(4_102_444_800_000) as i64; // 1970..2100
            let t = DateTime::from_timestamp_millis(ms).unwrap();
            let mut b = Vec::new();
            write_time(&mut b, ms, Some(0), true);
            assert_eq!(
                String::from_utf8(b).unwrap(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
            for off in [60, -300, 330] {
                let mut b = Vec::new();
                write_time(&mut b, ms, Some(off), false);
                let tz = chrono::FixedOffset::east_opt(off * 60).unwrap();
                assert_eq!(
                    String::from_utf8(b).unwrap(),
                    t.with_timezone(&tz)
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
        }
    }

    #[test]
    fn strings_are_escaped() {
        for s in [
            "plain",
            "a\"b",
            "back\\slash",
            "nl\nx",
            "tab\t",
            "\u{1}",
            "Müller",
            "Nguyễn",
        ] {
            let mut b = Vec::new();
            push_str(&mut b, s);
            let back: String = serde_json::from_slice(&b).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn fixed_point_numbers() {
        for (v, d, want) in [
            (38.94, 1, "38.9"),
            (0.0, 2, "0.00"),
            (-0.004, 2, "0.00"),
            (-1.25, 1, "-1.3"),
            (7.399, 2, "7.40"),
            (112.0, 0, "112"),
            (0.05, 3, "0.050"),
        ] {
            let mut b = Vec::new();
            push_fixed(&mut b, v, d);
            assert_eq!(String::from_utf8(b).unwrap(), want, "{v}");
        }
    }

    #[test]
    fn tiny_and_empty_populations_work() {
        for (clinicians, patients, services) in [(0, 0, 0), (1, 1, 1), (3, 5, 2)] {
            let msgs = run(
                WorkloadConfig {
                    clinicians,
                    patients,
                    services,
                    ..cfg(2)
                },
                30_000,
                5,
            );
            for (_, m) in msgs.iter().filter(|m| m.1.truth != Truth::Malformed) {
                check_event(&m.payload).unwrap();
            }
        }
    }
}
