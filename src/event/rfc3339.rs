//! Serde support for `DateTime<Utc>` as RFC 3339 text (`2026-03-02T09:14:03Z`,
//! fractional seconds only when non-zero), for findings and alerts.
//! (chrono's own `serde` feature would rebuild every crate that depends on
//! chrono, Arrow and DataFusion included, for this one conversion.)

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(d)?;
    DateTime::parse_from_rfc3339(&text)
        .map(|t| t.to_utc())
        .map_err(serde::de::Error::custom)
}
