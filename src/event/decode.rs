//! Decoding and validation of native JSON events (contract v1).
//!
//! Every check names the field it concerns. Details never quote values that
//! could be patient identifiers; they quote only field names, kinds and
//! enumerations the contract defines.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::sketch::{Sketcher, sketch_unscaled};
use super::strict_json::{DUPLICATE_KEY, Json, Object};
use super::{
    Access, Actor, Body, Event, Inference, Lineage, Pseudonymizer, Reject, RejectReason as R,
};
use chrono::DateTime;

/// Messages larger than this are refused before parsing.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;
const MAX_ID_CHARS: usize = 128;
const MAX_TEXT_BYTES: usize = 4096;
const MAX_FEATURES: usize = 4096;
const MAX_REFERENCES: usize = 10_000;

const ACTIONS: &[&str] = &[
    "read", "create", "update", "delete", "search", "export", "print", "login",
];
/// Actions on one patient's record, which must name the patient.
const PATIENT_REQUIRED: &[&str] = &["read", "create", "update", "delete"];
const OUTCOMES: &[&str] = &["success", "denied", "error"];
const LINEAGE_OPS: &[&str] = &["derive", "train", "deploy", "delete", "erase"];

/// Fields the contract defines at the top level, for every kind; anything
/// else is kept under `extra`.
const KNOWN_FIELDS: &[&str] = &[
    "id",
    "time",
    "kind",
    "actor",
    "source",
    "attrs",
    "action",
    "outcome",
    "patient",
    "resource",
    "purpose",
    "records",
    "destination",
    "model",
    "input",
    "output",
    "op",
    "inputs",
    "outputs",
    "job",
    "run",
];

/// Field names inside `actor`, `model`, `input`, `output`, `resource`.
const ACTOR_FIELDS: &[&str] = &[
    "role",
    "dept",
    "ip",
    "session",
    "org",
    "version",
    "features",
    "fingerprint",
    "label",
    "score",
    "scores_returned",
    "type",
];

/// An event parsed and validated, its feature vector (if any) not yet
/// sketched into its fingerprint.
#[derive(Debug)]
pub struct Parsed {
    event: Event,
    features: Option<Vec<f64>>,
}

impl Parsed {
    /// The event, when it is complete: it had no feature vector to sketch.
    pub fn ready(&self) -> Option<&Event> {
        self.features.is_none().then_some(&self.event)
    }
}

/// Turns message bytes into accepted events or precise rejections.
#[derive(Debug, Clone)]
pub struct Decoder {
    pseudonymizer: Pseudonymizer,
    max_future: Option<chrono::Duration>,
    /// Decoding `event` objects of ledger records: identifiers are already
    /// pseudonyms and the input already a fingerprint, so they are kept.
    stored: bool,
    /// Declared input lengths by `id@version`.
    models: Arc<HashMap<String, usize>>,
}

impl Decoder {
    pub fn new(pseudonymizer: Pseudonymizer) -> Self {
        Decoder {
            pseudonymizer,
            max_future: None,
            stored: false,
            models: Arc::default(),
        }
    }

    /// Decodes the `event` object of a ledger record (canonical JSON, see
    /// `docs/ledger-format.md`) back into the [`Event`] that was stored, for
    /// state rebuilt from the ledger (detector replay). Patient identifiers
    /// in a record are pseudonyms already and are kept as they are.
    pub fn decode_stored(record: &str) -> Result<Event, Reject> {
        static STORED: std::sync::OnceLock<Decoder> = std::sync::OnceLock::new();
        let decoder = STORED.get_or_init(|| Decoder {
            pseudonymizer: Pseudonymizer::new(&crate::event::PseudonymKey::from_bytes([0; 32])),
            max_future: None,
            stored: true,
            models: Arc::default(),
        });
        let Json::Object(mut obj) = serde_json::from_str(record)
            .map_err(|_| Reject::new(R::InvalidJson, "the record is not JSON"))?
        else {
            return Err(Reject::new(R::NotObject, "the record is not an object"));
        };
        match obj.remove("event") {
            Some(Json::Object(event)) => decoder.finish(decoder.event(event)?, None),
            _ => Err(Reject::new(
                R::MissingField,
                "the record has no `event` object",
            )),
        }
    }

    fn pseudonym(&self, raw: &str) -> String {
        if self.stored {
            raw.to_owned()
        } else {
            self.pseudonymizer.patient(raw)
        }
    }

    /// Refuses events timed more than `limit` after the wall clock at
    /// decoding: a producer's clock may drift, but an event from 2099 is an
    /// error, and left in it would move every event-time window it touches.
    pub fn with_max_future(mut self, limit: chrono::Duration) -> Self {
        self.max_future = Some(limit);
        self
    }

    pub fn pseudonymizer(&self) -> &Pseudonymizer {
        &self.pseudonymizer
    }

    /// Decodes one message value. Feature vectors are sketched in raw
    /// units (no learned normalization): for tools and tests; the pipeline
    /// uses [`Decoder::decode_with`].
    pub fn decode(&self, bytes: &[u8]) -> Result<Event, Reject> {
        self.decode_with(bytes, None)
    }

    /// A sketcher for one chain: the keys of this decoder's secret and the
    /// model input lengths declared with [`Decoder::with_models`].
    pub fn sketcher(&self) -> Sketcher {
        Sketcher::new(self.pseudonymizer.sketch_keys(), self.models.clone())
    }

    /// Declares models' input lengths (`id@version` → number of features);
    /// other models' lengths are learned from their first input.
    pub fn with_models(mut self, models: HashMap<String, usize>) -> Self {
        self.models = Arc::new(models);
        self
    }

    /// Decodes one message value, sketching feature vectors with the
    /// chain's learned normalization (`sketcher`), which refuses vectors
    /// of the wrong length for their model.
    pub fn decode_with(
        &self,
        bytes: &[u8],
        sketcher: Option<&mut Sketcher>,
    ) -> Result<Event, Reject> {
        self.finish(self.parse(bytes)?, sketcher)
    }

    /// Everything of decoding that needs no chain state: parsing,
    /// validation, pseudonyms. A feature vector waits in the result for
    /// [`Decoder::finish`], which sketches it with the chain's learned
    /// normalization; the two together are [`Decoder::decode_with`].
    pub fn parse(&self, bytes: &[u8]) -> Result<Parsed, Reject> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(Reject::new(
                R::Oversize,
                format!(
                    "message is {} bytes; the limit is {MAX_MESSAGE_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Reject::new(
                R::InvalidUtf8,
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            )
        })?;
        if text.trim().is_empty() {
            return Err(Reject::new(R::InvalidJson, "empty message"));
        }
        let value: Json = serde_json::from_str(text).map_err(|e| {
            let msg = e.to_string();
            if msg.contains(DUPLICATE_KEY) {
                // Name the key only when the contract defines it: free-form
                // keys (attrs, unknown fields) could be identifiers.
                let name = msg.split('`').nth(1).unwrap_or("");
                let detail = if KNOWN_FIELDS.contains(&name) || ACTOR_FIELDS.contains(&name) {
                    format!("duplicate key `{name}`")
                } else {
                    "duplicate key (a free-form key; name withheld)".to_owned()
                };
                Reject::new(R::DuplicateKey, detail)
            } else {
                Reject::new(
                    R::InvalidJson,
                    format!(
                        "invalid JSON at line {} column {}: {}",
                        e.line(),
                        e.column(),
                        json_error_class(&e)
                    ),
                )
            }
        })?;
        let Json::Object(obj) = value else {
            return Err(Reject::new(
                R::NotObject,
                format!("message is a JSON {}, not an object", type_name(&value)),
            ));
        };
        self.event(obj)
    }

    /// Sketches a parsed event's feature vector (if it has one) into its
    /// fingerprint: with `sketcher`, the chain's learned normalization,
    /// which refuses vectors of the wrong length for their model; without,
    /// in raw units.
    pub fn finish(&self, parsed: Parsed, sketcher: Option<&mut Sketcher>) -> Result<Event, Reject> {
        let Parsed {
            mut event,
            features,
        } = parsed;
        if let (Some(features), Body::Inference(inference)) = (features, &mut event.body) {
            let sketch = match sketcher {
                Some(s) => s.sketch(
                    &format!("{}@{}", inference.model_id, inference.model_version),
                    &features,
                )?,
                None => sketch_unscaled(&self.pseudonymizer.sketch_keys(), &features),
            };
            inference.fingerprint = Some(sketch.encode());
        }
        Ok(event)
    }

    fn event(&self, obj: Object<'_>) -> Result<Parsed, Reject> {
        let id = required_str(&obj, "id", "id")?;
        if id.chars().count() > MAX_ID_CHARS {
            return Err(Reject::new(
                R::InvalidValue,
                format!("`id` is longer than {MAX_ID_CHARS} characters"),
            ));
        }
        let time_text = required_str(&obj, "time", "time")?;
        let time = DateTime::parse_from_rfc3339(time_text).map_err(|_| {
            Reject::new(
                R::InvalidTime,
                "`time` is not an RFC 3339 timestamp with a UTC offset",
            )
        })?;
        if let Some(limit) = self.max_future
            && time.to_utc() > chrono::Utc::now() + limit
        {
            return Err(Reject::new(
                R::InvalidTime,
                format!("`time` is more than {}s in the future", limit.num_seconds()),
            ));
        }
        let kind = required_str(&obj, "kind", "kind")?;
        let actor = actor(obj.get("actor"))?;
        let source = optional_string(&obj, "source", "source")?;
        let attrs = attrs(obj.get("attrs"))?;

        let mut features = None;
        let body = match kind {
            "access" => Body::Access(self.access(&obj)?),
            "inference" => {
                let (inference, vector) = self.inference(&obj)?;
                features = vector;
                Body::Inference(inference)
            }
            "lineage" => Body::Lineage(self.lineage(&obj)?),
            _ => {
                return Err(Reject::new(
                    R::UnknownKind,
                    "`kind` must be one of access, inference, lineage",
                ));
            }
        };
        Ok(Parsed {
            event: Event {
                id: id.to_owned(),
                time,
                actor,
                source,
                attrs,
                body,
                extra: obj.into_map(|k| !KNOWN_FIELDS.contains(&k)),
            },
            features,
        })
    }

    fn patient(&self, obj: &Object<'_>) -> Result<Option<String>, Reject> {
        Ok(optional_str(obj, "patient", "patient")?.map(|raw| self.pseudonym(raw)))
    }

    fn access(&self, obj: &Object<'_>) -> Result<Access, Reject> {
        let action = required_str(obj, "action", "action")?;
        one_of("action", action, ACTIONS)?;
        let outcome = optional_str(obj, "outcome", "outcome")?.unwrap_or("success");
        one_of("outcome", outcome, OUTCOMES)?;
        let patient = self.patient(obj)?;
        // A bulk export or print covers many patients; search and login none.
        if patient.is_none() && PATIENT_REQUIRED.contains(&action) {
            return Err(Reject::new(
                R::MissingField,
                format!("`patient` is required for action `{action}`"),
            ));
        }
        let (resource_type, resource_id) = match obj.get("resource") {
            None | Some(Json::Null) => (None, None),
            Some(Json::Object(r)) => {
                let rtype = optional_str(r, "type", "resource.type")?;
                let rid = optional_str(r, "id", "resource.id")?;
                // A Patient resource's id is the patient's identifier.
                let rid = match rtype {
                    Some("Patient") => rid.map(|id| self.pseudonym(id)),
                    _ => rid.map(str::to_owned),
                };
                (rtype.map(str::to_owned), rid)
            }
            Some(other) => return Err(wrong_type("resource", "an object", other)),
        };
        let records = match obj.get("records") {
            None | Some(Json::Null) => 1,
            Some(Json::Number(n)) => match n.as_u64() {
                Some(r) if r >= 1 => r,
                _ => {
                    return Err(Reject::new(
                        R::InvalidValue,
                        "`records` must be an integer >= 1",
                    ));
                }
            },
            Some(other) => return Err(wrong_type("records", "an integer", other)),
        };
        Ok(Access {
            action: action.to_owned(),
            outcome: outcome.to_owned(),
            patient,
            resource_type,
            resource_id,
            purpose: optional_string(obj, "purpose", "purpose")?,
            records,
            destination: optional_string(obj, "destination", "destination")?,
        })
    }

    /// The inference, and its feature vector when it carries one (the
    /// fingerprint is made from it by [`Decoder::finish`]).
    fn inference(&self, obj: &Object<'_>) -> Result<(Inference, Option<Vec<f64>>), Reject> {
        let model = match obj.get("model") {
            None | Some(Json::Null) => {
                return Err(Reject::new(
                    R::MissingField,
                    "`model` is required for an inference",
                ));
            }
            Some(Json::Object(m)) => m,
            Some(other) => return Err(wrong_type("model", "an object", other)),
        };
        let model_id = required_str(model, "id", "model.id")?;
        let model_version = required_str(model, "version", "model.version")?;

        let (mut fingerprint, mut feature_count, mut vector) = (None, None, None);
        match obj.get("input") {
            None | Some(Json::Null) => {}
            Some(Json::Object(input)) => {
                match input.get("features") {
                    None | Some(Json::Null) => {}
                    Some(Json::Array(items)) => {
                        let features = features(items)?;
                        feature_count = Some(features.len() as u32);
                        vector = Some(features);
                    }
                    Some(other) => {
                        return Err(wrong_type("input.features", "an array of numbers", other));
                    }
                }
                // A vector's own fingerprint replaces a given one.
                if let Some(fp) = optional_str(input, "fingerprint", "input.fingerprint")?
                    && vector.is_none()
                {
                    fingerprint = Some(fp.to_owned());
                }
                if self.stored
                    && let Some(Json::Number(n)) = input.get("features_n")
                {
                    feature_count = n.as_u64().and_then(|n| u32::try_from(n).ok());
                }
            }
            Some(other) => return Err(wrong_type("input", "an object", other)),
        }

        let (mut output_label, mut output_score, mut scores_returned) = (None, None, None);
        match obj.get("output") {
            None | Some(Json::Null) => {}
            Some(Json::Object(out)) => {
                output_label = optional_string(out, "label", "output.label")?;
                output_score = match out.get("score") {
                    None | Some(Json::Null) => None,
                    Some(Json::Number(n)) => n.as_f64(),
                    Some(other) => return Err(wrong_type("output.score", "a number", other)),
                };
                scores_returned = match out.get("scores_returned") {
                    None | Some(Json::Null) => None,
                    Some(Json::Bool(b)) => Some(*b),
                    Some(other) => {
                        return Err(wrong_type("output.scores_returned", "a boolean", other));
                    }
                };
            }
            Some(other) => return Err(wrong_type("output", "an object", other)),
        }
        let inference = Inference {
            model_id: model_id.to_owned(),
            model_version: model_version.to_owned(),
            patient: self.patient(obj)?,
            fingerprint,
            feature_count,
            output_label,
            output_score,
            scores_returned,
            purpose: optional_string(obj, "purpose", "purpose")?,
        };
        Ok((inference, vector))
    }

    fn lineage(&self, obj: &Object<'_>) -> Result<Lineage, Reject> {
        let op = required_str(obj, "op", "op")?;
        one_of("op", op, LINEAGE_OPS)?;
        Ok(Lineage {
            op: op.to_owned(),
            inputs: self.references(obj, "inputs")?,
            outputs: self.references(obj, "outputs")?,
            job: optional_string(obj, "job", "job")?,
            run: optional_string(obj, "run", "run")?,
            patient: self.patient(obj)?,
        })
    }

    fn references(&self, obj: &Object<'_>, field: &str) -> Result<Vec<String>, Reject> {
        let items = match obj.get(field) {
            None | Some(Json::Null) => return Ok(Vec::new()),
            Some(Json::Array(items)) => items,
            Some(other) => return Err(wrong_type(field, "an array of strings", other)),
        };
        if items.len() > MAX_REFERENCES {
            return Err(Reject::new(
                R::InvalidValue,
                format!("`{field}` has more than {MAX_REFERENCES} references"),
            ));
        }
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Json::String(s) if !s.is_empty() && s.len() <= MAX_TEXT_BYTES => {
                    Ok(if self.stored {
                        s.to_string()
                    } else {
                        self.pseudonymizer.reference(s)
                    })
                }
                Json::String(_) => Err(Reject::new(
                    R::InvalidValue,
                    format!("`{field}[{i}]` must be 1 to {MAX_TEXT_BYTES} bytes"),
                )),
                other => Err(wrong_type(&format!("{field}[{i}]"), "a string", other)),
            })
            .collect()
    }
}

fn actor(value: Option<&Json<'_>>) -> Result<Actor, Reject> {
    let obj = match value {
        None | Some(Json::Null) => {
            return Err(Reject::new(R::MissingField, "`actor` is missing"));
        }
        Some(Json::Object(obj)) => obj,
        Some(other) => return Err(wrong_type("actor", "an object", other)),
    };
    Ok(Actor {
        id: required_str(obj, "id", "actor.id")?.to_owned(),
        role: optional_string(obj, "role", "actor.role")?,
        dept: optional_string(obj, "dept", "actor.dept")?,
        ip: optional_string(obj, "ip", "actor.ip")?,
        session: optional_string(obj, "session", "actor.session")?,
        org: optional_string(obj, "org", "actor.org")?,
    })
}

fn attrs(value: Option<&Json<'_>>) -> Result<BTreeMap<String, String>, Reject> {
    let obj = match value {
        None | Some(Json::Null) => return Ok(BTreeMap::new()),
        Some(Json::Object(obj)) => obj,
        Some(other) => return Err(wrong_type("attrs", "an object of strings", other)),
    };
    obj.iter()
        .map(|(k, v)| match v {
            _ if k.len() > MAX_TEXT_BYTES => Err(Reject::new(
                R::InvalidValue,
                format!("an `attrs` key is longer than {MAX_TEXT_BYTES} bytes"),
            )),
            Json::String(s) if s.len() <= MAX_TEXT_BYTES => Ok((k.to_owned(), s.to_string())),
            // Free-form keys are not named: they could be identifiers.
            Json::String(_) => Err(Reject::new(
                R::InvalidValue,
                format!("an `attrs` value is longer than {MAX_TEXT_BYTES} bytes"),
            )),
            other => Err(wrong_type("attrs.<key>", "a string", other)),
        })
        .collect()
}

fn features(items: &[Json<'_>]) -> Result<Vec<f64>, Reject> {
    if items.len() > MAX_FEATURES {
        return Err(Reject::new(
            R::InvalidValue,
            format!("`input.features` has more than {MAX_FEATURES} numbers"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(wrong_type(
                &format!("input.features[{i}]"),
                "a finite number",
                item,
            )),
        })
        .collect()
}

/// A required, non-empty string of bounded length.
fn required_str<'o>(obj: &'o Object<'_>, key: &str, path: &str) -> Result<&'o str, Reject> {
    match optional_str(obj, key, path)? {
        Some(s) => Ok(s),
        None => Err(Reject::new(R::MissingField, format!("`{path}` is missing"))),
    }
}

/// An optional string: absent or null is `None`; present must be a
/// non-empty string of at most `MAX_TEXT_BYTES`.
fn optional_str<'o>(obj: &'o Object<'_>, key: &str, path: &str) -> Result<Option<&'o str>, Reject> {
    match obj.get(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) if s.is_empty() => Err(Reject::new(
            R::InvalidValue,
            format!("`{path}` must not be empty"),
        )),
        Some(Json::String(s)) if s.len() > MAX_TEXT_BYTES => Err(Reject::new(
            R::InvalidValue,
            format!("`{path}` is longer than {MAX_TEXT_BYTES} bytes"),
        )),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(path, "a string", other)),
    }
}

/// [`optional_str`], owned.
fn optional_string(obj: &Object<'_>, key: &str, path: &str) -> Result<Option<String>, Reject> {
    Ok(optional_str(obj, key, path)?.map(str::to_owned))
}

fn one_of(path: &str, value: &str, allowed: &[&str]) -> Result<(), Reject> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(Reject::new(
            R::InvalidValue,
            format!("`{path}` must be one of {}", allowed.join(", ")),
        ))
    }
}

fn wrong_type(path: &str, expected: &str, got: &Json<'_>) -> Reject {
    Reject::new(
        R::WrongType,
        format!("`{path}` must be {expected}, not {}", type_name(got)),
    )
}

fn type_name(v: &Json<'_>) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn json_error_class(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Eof => "unexpected end of input",
        Category::Syntax => "syntax error",
        Category::Data => "unsupported value",
        Category::Io => "read error",
    }
}

#[cfg(test)]
mod tests;
