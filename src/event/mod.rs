//! The event model (contract v1), its decoder and its canonical encoding.
//!
//! Guarantees:
//! - [`Decoder::decode`] accepts a message only when it satisfies the
//!   contract in `DESIGN.md`; every refusal is a [`Reject`] naming the field
//!   and what was wrong with it, with a bounded [`RejectReason`] for metrics.
//! - An accepted [`Event`] never holds a raw patient identifier or a raw
//!   feature vector: the decoder pseudonymizes patients (keyed BLAKE3) and
//!   replaces `input.features` by a keyed sketch ([`sketch`]) before it
//!   returns.
//! - A refused message's bytes can be sealed ([`RejectSealer`]) under a key
//!   derived from the same secret, so they are stored only encrypted.
//! - [`Event::canonical`] is deterministic: the same event always encodes to
//!   the same bytes (documented in `docs/format.md`); the ledger hashes them.
//!
//! This module does no I/O and knows nothing of Kafka or the ledger.

mod canonical;
mod decode;
mod pseudonym;
pub mod rfc3339;
mod seal;
pub mod sketch;
mod strict_json;

pub use canonical::canonical_json;
pub(crate) use canonical::write_str as write_json_str;
pub use decode::{Decoder, MAX_MESSAGE_BYTES, Parsed};
pub(crate) use pseudonym::key_id;
pub use pseudonym::{PseudonymKey, Pseudonymizer};
pub use seal::{RejectSealer, SEAL_OVERHEAD, SEAL_SCHEME, SealError, SealedPart};

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, FixedOffset};

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Access,
    Inference,
    Lineage,
}

impl Kind {
    /// Every kind, in declaration order (so `kind as usize` indexes it).
    pub const ALL: [Kind; 3] = [Kind::Access, Kind::Inference, Kind::Lineage];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Access => "access",
            Kind::Inference => "inference",
            Kind::Lineage => "lineage",
        }
    }
}

/// Who did it: a user, a service or an API client.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Actor {
    pub id: String,
    pub role: Option<String>,
    pub dept: Option<String>,
    pub ip: Option<String>,
    pub session: Option<String>,
    pub org: Option<String>,
}

/// An access to patient data.
#[derive(Debug, Clone, PartialEq)]
pub struct Access {
    pub action: String,
    pub outcome: String,
    /// Pseudonym of the patient (never the raw identifier).
    pub patient: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub purpose: Option<String>,
    pub records: u64,
    pub destination: Option<String>,
}

/// A call to a clinical model.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    pub model_id: String,
    pub model_version: String,
    pub patient: Option<String>,
    /// Keyed fingerprint of the input (derived from `input.features`, or the
    /// producer's precomputed `input.fingerprint`).
    pub fingerprint: Option<String>,
    /// Number of features the raw vector had (the vector itself is dropped).
    pub feature_count: Option<u32>,
    pub output_label: Option<String>,
    pub output_score: Option<f64>,
    pub scores_returned: Option<bool>,
    pub purpose: Option<String>,
}

/// Datasets derived, models trained, deployed or erased.
#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    pub op: String,
    /// References (`dataset:…`, `model:name@version`, `patient:<pseudonym>`).
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub job: Option<String>,
    pub run: Option<String>,
    pub patient: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Access(Access),
    Inference(Inference),
    Lineage(Lineage),
}

/// An accepted, validated and pseudonymized event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: String,
    /// When it happened, with the producer's UTC offset kept.
    pub time: DateTime<FixedOffset>,
    pub actor: Actor,
    pub source: Option<String>,
    pub attrs: BTreeMap<String, String>,
    pub body: Body,
    /// Top-level fields the contract does not know: kept, never trusted.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Event {
    pub fn kind(&self) -> Kind {
        match self.body {
            Body::Access(_) => Kind::Access,
            Body::Inference(_) => Kind::Inference,
            Body::Lineage(_) => Kind::Lineage,
        }
    }

    /// Event time in microseconds since the Unix epoch (UTC).
    pub fn time_micros(&self) -> i64 {
        self.time.timestamp_micros()
    }

    /// The patient pseudonym this event is about, if any.
    pub fn patient(&self) -> Option<&str> {
        match &self.body {
            Body::Access(a) => a.patient.as_deref(),
            Body::Inference(i) => i.patient.as_deref(),
            Body::Lineage(l) => l.patient.as_deref(),
        }
    }

    /// The access action or lineage operation, if any.
    pub fn action(&self) -> Option<&str> {
        match &self.body {
            Body::Access(a) => Some(&a.action),
            Body::Inference(_) => None,
            Body::Lineage(l) => Some(&l.op),
        }
    }

    pub fn purpose(&self) -> Option<&str> {
        match &self.body {
            Body::Access(a) => a.purpose.as_deref(),
            Body::Inference(i) => i.purpose.as_deref(),
            Body::Lineage(_) => None,
        }
    }

    /// The canonical encoding of this event (see `docs/format.md`).
    pub fn canonical(&self) -> Vec<u8> {
        canonical::encode_event(self)
    }
}

/// Why a message was refused; a small closed set, used as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    Oversize,
    InvalidUtf8,
    InvalidJson,
    NotObject,
    DuplicateKey,
    MissingField,
    WrongType,
    InvalidValue,
    UnknownKind,
    InvalidTime,
    /// A valid event whose `id` the chain already stored recently (a
    /// producer retry); set by the pipeline, never by the decoder.
    DuplicateId,
}

impl RejectReason {
    pub const ALL: [RejectReason; 11] = [
        RejectReason::Oversize,
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::NotObject,
        RejectReason::DuplicateKey,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::InvalidValue,
        RejectReason::UnknownKind,
        RejectReason::InvalidTime,
        RejectReason::DuplicateId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Oversize => "oversize",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotObject => "not_object",
            RejectReason::DuplicateKey => "duplicate_key",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::UnknownKind => "unknown_kind",
            RejectReason::InvalidTime => "invalid_time",
            RejectReason::DuplicateId => "duplicate_id",
        }
    }
}

/// A refused message: the reason class and a precise, human-readable detail
/// (which field, what was wrong). The detail never echoes field values that
/// could carry patient identifiers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.as_str())]
pub struct Reject {
    pub reason: RejectReason,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        Reject {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
