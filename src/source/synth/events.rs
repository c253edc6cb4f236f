//! Writing well-formed events: the common head (`id`, `time`, `kind`,
//! `actor`) and the bodies of access and inference events, straight into
//! the payload buffer.
//!
//! Ids are `<prefix>-<seed>-<counter>`: unique within a stream, and
//! different for different seeds. About 8% of events carry a non-`Z` UTC
//! offset and whole seconds; the instant is always `now`.

use super::json::{
    digits, push_field_str, push_fixed, push_hex, push_mrn, push_plain, push_str, push_u64,
    write_actor, write_time,
};
use super::population::{DEPTS, ServiceKind};
use super::vocab::{Action, FEATURES, MODELS, Res, SEARCH_QUERIES, draw_feature};
use super::{SynthMessage, Truth, Workload};

/// The actor of an event: an index into the clinicians or the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Who {
    Clinician(usize),
    Service(usize),
}

/// An access event body (everything after `source`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Access {
    pub(super) action: Action,
    pub(super) outcome: Option<&'static str>,
    pub(super) patient: Option<u32>,
    pub(super) resource: Option<(Res, u32)>,
    pub(super) purpose: Option<&'static str>,
    pub(super) records: Option<u64>,
    pub(super) destination: Option<&'static str>,
    pub(super) query: Option<&'static str>,
}

impl Access {
    pub(super) fn new(action: Action) -> Self {
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
pub(super) enum Input<'a> {
    Sampled,
    Probe {
        base: &'a [f64; 30],
        sweep: usize,
        frac: f64,
    },
    Fingerprint,
}

impl SynthMessage {
    /// A well-formed event.
    pub(super) fn event(key: String, payload: Vec<u8>, truth: Truth, id: String) -> Self {
        Self {
            key,
            payload,
            truth,
            id: Some(id),
            defect: None,
        }
    }
}

impl Workload {
    /// A resource of type `res` with a random id.
    pub(super) fn resource_ref(&mut self, res: Res) -> (Res, u32) {
        (res, self.rng.below(1_000_000) as u32)
    }

    /// A read of one of `patient`'s resources, of a type clinician `ci` reads.
    pub(super) fn read_of(&mut self, ci: usize, patient: u32) -> Access {
        let mut ev = Access::new(Action::Read);
        ev.patient = Some(patient);
        let res = self.rng.choose(self.clinicians[ci].resources());
        ev.resource = Some(self.resource_ref(res));
        ev
    }

    /// A patient search with one of the usual queries.
    pub(super) fn search(&mut self) -> Access {
        let mut ev = Access::new(Action::Search);
        ev.query = Some(*self.rng.pick(SEARCH_QUERIES));
        ev
    }

    pub(super) fn next_id(&mut self, prefix: &str) -> String {
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
    pub(super) fn begin(&mut self, b: &mut Vec<u8>, prefix: &str, kind: &str, ms: i64) -> String {
        let id = self.next_id(prefix);
        b.extend_from_slice(b"{\"id\":");
        push_plain(b, &id);
        b.extend_from_slice(b",\"time\":\"");
        if self.rng.permille(920) {
            self.utc_time.write(b, ms);
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

    pub(super) fn emit_access(
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
            b.extend_from_slice(b",\"patient\":");
            push_mrn(&mut b, "", p);
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
        SynthMessage::event(key, b, truth, id)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit_inference(
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
            b.extend_from_slice(b",\"patient\":");
            push_mrn(&mut b, "", p);
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
        SynthMessage::event(key, b, truth, id)
    }

    // -- malformed ----------------------------------------------------------
}
