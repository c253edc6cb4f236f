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
//!
//! # Layout
//!
//! [`Workload`] is built here; its methods live by role: `population`
//! (clinicians, services, wards, shifts), `normal` and `lineage` (normal
//! traffic), `anomalies`, `defects` (malformed messages), `events` (the
//! shared event head and access/inference bodies), `vocab` (actions,
//! resources, models, features), `json` (the JSON and time writer) and `rng`
//! (the generator's own random numbers).

use chrono::{DateTime, Utc};

mod anomalies;
mod defects;
mod events;
pub(crate) mod json;
mod lineage;
mod normal;
mod population;
pub(crate) mod rng;
#[cfg(test)]
mod tests;
mod vocab;

use anomalies::{Burst, Episode};
use json::UtcTimeWriter;
use population::{CLINICAL_DEPTS, Clinician, Service, hour_of};
use rng::{HourlyPick, Rng};

/// One minute in milliseconds.
const MINUTE: i64 = 60_000;

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

/// The generator. See the module documentation.
#[derive(Debug, Clone)]
pub struct Workload {
    cfg: WorkloadConfig,
    rng: Rng,
    seed_text: String,
    counter: u64,
    clinicians: Vec<Clinician>,
    services: Vec<Service>,
    /// Indices of the services of each `ServiceKind`.
    services_by_kind: [Vec<usize>; 4],
    patients: u32,
    /// Patient index range of each clinical department's ward.
    wards: [(u32, u32); CLINICAL_DEPTS],
    access_pick: HourlyPick,
    model_user_pick: HourlyPick,
    max_total: f64,
    /// When each anomaly of `anomalies::SCHEDULE` is next due; `None`
    /// before the first message.
    next_anomaly: Option<[i64; 4]>,
    burst: Option<Burst>,
    episodes: Vec<Episode>,
    utc_time: UtcTimeWriter,
}

impl Workload {
    /// Builds the population (clinicians, panels, services) from the seed.
    pub fn new(cfg: WorkloadConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let patients = cfg.patients.clamp(1, u32::MAX as usize / 2) as u32;
        let wards = population::wards(patients);
        let clinicians = population::clinicians(&mut rng, cfg.clinicians.max(1), patients, &wards);
        let services = population::services(cfg.services.max(1));
        let services_by_kind = population::services_by_kind(&services);
        let access_pick = population::hourly_pick(&clinicians, |_| true);
        let model_user_pick = population::hourly_pick(&clinicians, |c| c.role.uses_models());
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
            next_anomaly: None,
            burst: None,
            episodes: Vec::new(),
            utc_time: UtcTimeWriter::new(),
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
}
