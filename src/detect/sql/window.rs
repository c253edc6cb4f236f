//! The `recent` table: a sliding window of access and inference events.
//!
//! Rows are appended to column builders; every [`SEAL_ROWS`] rows (or when
//! a run takes a snapshot) the builders are sealed into one immutable
//! `RecordBatch`, so a push is a handful of appends and a run shares the
//! sealed batches by reference. Events may come slightly out of time order:
//! a batch is dropped whole once its newest row is older than the window,
//! and filtered row by row only when it straddles the window's start.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;

use crate::event::{Body, Event};

/// Rows per sealed batch (fewer when `max_rows` is smaller).
pub(super) const SEAL_ROWS: usize = 4096;

pub(super) fn schema() -> SchemaRef {
    let s = |n: &str, nullable: bool| Field::new(n, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        s("id", false),
        Field::new("time", super::utc_micros(), false),
        s("kind", false),
        s("actor", false),
        s("role", true),
        s("dept", true),
        s("session", true),
        s("ip", true),
        s("patient", true),
        s("action", true),
        s("outcome", true),
        s("purpose", true),
        Field::new("records", DataType::Int64, true),
        s("destination", true),
        s("resource_type", true),
        s("model", true),
    ]))
}

/// The column builders of the open (unsealed) rows, in schema order.
#[derive(Default)]
struct Open {
    id: StringBuilder,
    time: TimestampMicrosecondBuilder,
    kind: StringBuilder,
    actor: StringBuilder,
    role: StringBuilder,
    dept: StringBuilder,
    session: StringBuilder,
    ip: StringBuilder,
    patient: StringBuilder,
    action: StringBuilder,
    outcome: StringBuilder,
    purpose: StringBuilder,
    records: Int64Builder,
    destination: StringBuilder,
    resource_type: StringBuilder,
    model: StringBuilder,
    rows: usize,
    min: i64,
    max: i64,
}

/// A sealed batch and the range of its times (µs).
struct Sealed {
    batch: RecordBatch,
    min: i64,
    max: i64,
}

pub(super) struct Window {
    schema: SchemaRef,
    open: Open,
    sealed: VecDeque<Sealed>,
    sealed_rows: usize,
    seal_rows: usize,
    max_rows: usize,
    newest: Option<i64>,
    dropped: u64,
}

impl Window {
    pub(super) fn new(max_rows: usize) -> Self {
        Window {
            schema: schema(),
            open: Open::default(),
            sealed: VecDeque::new(),
            sealed_rows: 0,
            seal_rows: SEAL_ROWS.min(max_rows.max(1)),
            max_rows: max_rows.max(1),
            newest: None,
            dropped: 0,
        }
    }

    pub(super) fn push(&mut self, event: &Event) -> bool {
        let o = &mut self.open;
        let t = event.time_micros();
        match &event.body {
            Body::Access(a) => {
                o.kind.append_value("access");
                o.patient.append_option(a.patient.as_deref());
                o.action.append_value(&a.action);
                o.outcome.append_value(&a.outcome);
                o.purpose.append_option(a.purpose.as_deref());
                o.records
                    .append_value(i64::try_from(a.records).unwrap_or(i64::MAX));
                o.destination.append_option(a.destination.as_deref());
                o.resource_type.append_option(a.resource_type.as_deref());
                o.model.append_null();
            }
            Body::Inference(i) => {
                o.kind.append_value("inference");
                o.patient.append_option(i.patient.as_deref());
                o.action.append_null();
                o.outcome.append_null();
                o.purpose.append_option(i.purpose.as_deref());
                o.records.append_null();
                o.destination.append_null();
                o.resource_type.append_null();
                o.model.append_value(&i.model_id);
            }
            Body::Lineage(_) => return false,
        }
        o.id.append_value(&event.id);
        o.time.append_value(t);
        o.actor.append_value(&event.actor.id);
        o.role.append_option(event.actor.role.as_deref());
        o.dept.append_option(event.actor.dept.as_deref());
        o.session.append_option(event.actor.session.as_deref());
        o.ip.append_option(event.actor.ip.as_deref());
        if o.rows == 0 {
            (o.min, o.max) = (t, t);
        } else {
            (o.min, o.max) = (o.min.min(t), o.max.max(t));
        }
        o.rows += 1;
        self.newest = Some(self.newest.map_or(t, |n| n.max(t)));
        if o.rows >= self.seal_rows {
            self.seal();
        }
        true
    }

    /// The newest event time pushed (µs).
    pub(super) fn newest(&self) -> Option<i64> {
        self.newest
    }

    pub(super) fn rows(&self) -> usize {
        self.sealed_rows + self.open.rows
    }

    pub(super) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Seals the open rows, drops rows older than `from` (µs) and returns
    /// the window's batches (shared buffers, no copy).
    pub(super) fn snapshot(&mut self, from: i64) -> Vec<RecordBatch> {
        self.seal();
        let mut kept = VecDeque::with_capacity(self.sealed.len());
        self.sealed_rows = 0;
        for s in self.sealed.drain(..) {
            if s.max < from {
                continue;
            }
            let s = if s.min < from { keep_from(s, from) } else { s };
            self.sealed_rows += s.batch.num_rows();
            kept.push_back(s);
        }
        self.sealed = kept;
        self.sealed.iter().map(|s| s.batch.clone()).collect()
    }

    fn seal(&mut self) {
        if self.open.rows == 0 {
            return;
        }
        let o = std::mem::take(&mut self.open);
        let columns: Vec<ArrayRef> = vec![
            Arc::new({ o.id }.finish()),
            Arc::new({ o.time }.finish().with_timezone("UTC")),
            Arc::new({ o.kind }.finish()),
            Arc::new({ o.actor }.finish()),
            Arc::new({ o.role }.finish()),
            Arc::new({ o.dept }.finish()),
            Arc::new({ o.session }.finish()),
            Arc::new({ o.ip }.finish()),
            Arc::new({ o.patient }.finish()),
            Arc::new({ o.action }.finish()),
            Arc::new({ o.outcome }.finish()),
            Arc::new({ o.purpose }.finish()),
            Arc::new({ o.records }.finish()),
            Arc::new({ o.destination }.finish()),
            Arc::new({ o.resource_type }.finish()),
            Arc::new({ o.model }.finish()),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .expect("the builders follow the window schema");
        self.sealed_rows += batch.num_rows();
        self.sealed.push_back(Sealed {
            batch,
            min: o.min,
            max: o.max,
        });
        self.enforce_cap();
    }

    /// Drops the oldest sealed rows until at most `max_rows` remain.
    fn enforce_cap(&mut self) {
        while self.sealed_rows > self.max_rows {
            let excess = self.sealed_rows - self.max_rows;
            let Some(front) = self.sealed.front_mut() else {
                break;
            };
            let n = front.batch.num_rows();
            if n <= excess {
                self.sealed.pop_front();
                self.sealed_rows -= n;
                self.dropped += n as u64;
            } else {
                // The slice shares the batch's buffers, which are freed
                // when the rest of the batch leaves the window.
                front.batch = front.batch.slice(excess, n - excess);
                self.sealed_rows -= excess;
                self.dropped += excess as u64;
            }
        }
        debug_assert!(self.sealed_rows <= self.max_rows);
    }
}

/// The rows of `s` at or after `from`.
fn keep_from(s: Sealed, from: i64) -> Sealed {
    let times = s.batch.column(1).as_primitive::<TimestampMicrosecondType>();
    let mask: BooleanArray = times.values().iter().map(|&t| Some(t >= from)).collect();
    let batch = filter_record_batch(&s.batch, &mask).expect("the mask has the batch's length");
    let min = batch
        .column(1)
        .as_primitive::<TimestampMicrosecondType>()
        .values()
        .iter()
        .copied()
        .min()
        .unwrap_or(from);
    debug_assert!(batch.column(1).null_count() == 0);
    Sealed {
        batch,
        min,
        max: s.max,
    }
}
