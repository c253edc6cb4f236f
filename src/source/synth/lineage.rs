//! Lineage events from the data platform, all normal traffic: ETL jobs
//! deriving cohorts from patients and datasets, deleting and erasing,
//! training models on cohorts, and deploying them to the model gateway.

use super::json::{
    push_cohort, push_field_str, push_hex, push_model_ref, push_mrn, push_snake, push_str,
    push_u64, write_actor,
};
use super::population::ServiceKind;
use super::vocab::{DATASETS, MODEL_MIX, MODELS};
use super::{SynthMessage, Truth, Workload};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Derive,
    Train,
    Deploy,
    Delete,
    Erase,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Derive => "derive",
            Op::Train => "train",
            Op::Deploy => "deploy",
            Op::Delete => "delete",
            Op::Erase => "erase",
        }
    }
}

const OPS: &[(Op, u32)] = &[
    (Op::Derive, 55),
    (Op::Train, 20),
    (Op::Deploy, 10),
    (Op::Delete, 10),
    (Op::Erase, 5),
];

impl Workload {
    pub(super) fn normal_lineage(&mut self, ms: i64) -> SynthMessage {
        let op = self.rng.choose(OPS);
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
        push_field_str(&mut b, "op", op.as_str());
        b.extend_from_slice(b",\"inputs\":[");
        match op {
            Op::Derive => {
                let n = self.rng.between(1, 6);
                for i in 0..n {
                    if i > 0 {
                        b.push(b',');
                    }
                    push_mrn(&mut b, "patient:", self.any_patient());
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
            Op::Erase => push_mrn(&mut b, "patient:", self.any_patient()),
        }
        b.push(b']');
        // Derivations and erasures output a cohort; a deletion has no output.
        if op != Op::Delete {
            b.extend_from_slice(b",\"outputs\":[");
            match op {
                Op::Train => push_model_ref(&mut b, mname, mver),
                Op::Deploy => {
                    b.extend_from_slice(b"\"endpoint:model-gateway/");
                    b.extend_from_slice(mname.as_bytes());
                    b.push(b'"');
                }
                _ => push_cohort(&mut b, cohort),
            }
            b.push(b']');
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
        push_run_id(&mut b, self.rng.next_u64(), self.rng.next_u64());
        b.extend_from_slice(b"\"}");
        SynthMessage::event(key, b, Truth::Normal, id)
    }
}

/// Writes a UUIDv7-shaped run id from two random words.
fn push_run_id(b: &mut Vec<u8>, hi: u64, lo: u64) {
    push_hex(b, hi >> 32, 8);
    b.push(b'-');
    push_hex(b, (hi >> 16) & 0xFFFF, 4);
    b.push(b'-');
    push_hex(b, 0x7000 | (hi & 0x0FFF), 4);
    b.push(b'-');
    push_hex(b, 0x8000 | ((lo >> 48) & 0x3FFF), 4);
    b.push(b'-');
    push_hex(b, lo & 0xFFFF_FFFF_FFFF, 12);
}
