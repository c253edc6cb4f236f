//! The catalog over the ledger, on top of the `events` and `rejects`
//! tables: views for each event kind, the lineage graph's edges, the
//! aggregate views an analyst may read, the store's checkpoints, and the
//! SQL functions `pseudonym()`, `lineage_inputs()` and `lineage_outputs()`.
//! Schemas and examples: `docs/sql.md`.
//!
//! Views are plans over the tables' providers, so once built they no
//! longer need the base tables to be registered: an analyst's session
//! keeps the aggregate views and drops everything patient-level
//! ([`restrict_to`]).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int32Array, ListBuilder, StringArray, StringBuilder,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};

use super::QueryError;
use crate::event::Pseudonymizer;
use crate::ledger::Store;

/// The views over `events`, by name, in the order they are built.
const VIEWS: &[(&str, &str)] = &[
    (
        "access",
        "SELECT seq, stream, \"partition\", \"offset\", id, time, actor_id, actor_role, actor_dept, \
         patient, action, purpose, outcome, records, record \
         FROM events WHERE kind = 'access'",
    ),
    (
        "inference",
        "SELECT seq, stream, \"partition\", \"offset\", id, time, actor_id, actor_role, actor_dept, \
         patient, model, purpose, record \
         FROM events WHERE kind = 'inference'",
    ),
    (
        "lineage",
        "SELECT seq, stream, \"partition\", \"offset\", id, time, actor_id, actor_role, \
         action AS op, patient, lineage_inputs(record) AS inputs, \
         lineage_outputs(record) AS outputs, record \
         FROM events WHERE kind = 'lineage'",
    ),
    (
        "lineage_edges",
        "WITH edges AS (\
           SELECT unnest(lineage_inputs(record)) AS input, lineage_outputs(record) AS outs, \
                  action AS op, time, id AS event_id, actor_id \
           FROM events WHERE kind = 'lineage') \
         SELECT input AS \"from\", unnest(outs) AS \"to\", op, time, event_id, actor_id FROM edges",
    ),
    (
        "access_daily",
        "SELECT date_trunc('day', time) AS day, actor_dept, actor_role, action, purpose, outcome, \
                count(*) AS events, count(DISTINCT patient) AS patients, \
                count(DISTINCT actor_id) AS actors, sum(records) AS records \
         FROM events WHERE kind = 'access' \
         GROUP BY 1, actor_dept, actor_role, action, purpose, outcome",
    ),
    (
        "inference_daily",
        "SELECT date_trunc('day', time) AS day, model, purpose, count(*) AS events, \
                count(DISTINCT patient) AS patients, count(DISTINCT actor_id) AS callers \
         FROM events WHERE kind = 'inference' GROUP BY 1, model, purpose",
    ),
    (
        "lineage_daily",
        "SELECT date_trunc('day', time) AS day, action AS op, count(*) AS events \
         FROM events WHERE kind = 'lineage' GROUP BY 1, action",
    ),
    (
        "rejects_daily",
        "SELECT stream, reason, count(*) AS rejects FROM rejects GROUP BY stream, reason",
    ),
];

/// What an analyst's session holds: aggregates, the checkpoints and the
/// incidents.
pub const ANALYST_TABLES: &[&str] = &[
    "access_daily",
    "inference_daily",
    "lineage_daily",
    "rejects_daily",
    "checkpoints",
    // What was alerted: the analyst's own work (patients as pseudonyms,
    // as `/v1/incidents` shows them too).
    "incidents",
];

/// Registers the functions, the `checkpoints` table and the views on a
/// session that has `events` and `rejects`. `pseudonyms` makes
/// `pseudonym()` answer; without it, `pseudonym()` fails saying the key is
/// not configured.
pub async fn register(
    ctx: &SessionContext,
    store: &Store,
    pseudonyms: Option<&Pseudonymizer>,
) -> Result<(), QueryError> {
    ctx.register_udf(pseudonym_udf(pseudonyms.cloned()));
    ctx.register_udf(lineage_udf("lineage_inputs", "inputs"));
    ctx.register_udf(lineage_udf("lineage_outputs", "outputs"));
    register_checkpoints(ctx, store)?;
    for (name, sql) in VIEWS {
        let view = ctx.sql(sql).await?.into_view();
        ctx.register_table(*name, view)?;
    }
    Ok(())
}

/// Drops every table not in `keep`.
pub fn restrict_to(ctx: &SessionContext, keep: &[&str]) -> Result<(), QueryError> {
    for name in table_names(ctx) {
        if !keep.contains(&name.as_str()) {
            ctx.deregister_table(name.as_str())?;
        }
    }
    Ok(())
}

/// The names of the tables and views a session holds.
pub fn table_names(ctx: &SessionContext) -> HashSet<String> {
    let Some(catalog) = ctx.catalog("datafusion") else {
        return HashSet::new();
    };
    let Some(schema) = catalog.schema("public") else {
        return HashSet::new();
    };
    schema.table_names().into_iter().collect()
}

/// `pseudonym(text)`: the pseudonym ingest stores for a raw patient
/// identifier (see [`Pseudonymizer::patient`]).
fn pseudonym_udf(pseudonyms: Option<Pseudonymizer>) -> datafusion::logical_expr::ScalarUDF {
    let fun = Arc::new(move |args: &[ColumnarValue]| {
        let Some(p) = &pseudonyms else {
            return Err(datafusion::error::DataFusionError::Execution(
                "pseudonym() needs the pseudonym key (privacy.pseudonym_key in the configuration)"
                    .into(),
            ));
        };
        match &args[0] {
            ColumnarValue::Scalar(v) => {
                let raw = match v {
                    ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => {
                        s.as_deref()
                    }
                    _ => None,
                };
                Ok(ColumnarValue::Scalar(ScalarValue::Utf8(
                    raw.map(|r| p.patient(r)),
                )))
            }
            ColumnarValue::Array(a) => {
                let strings = string_array(a)?;
                let out: StringArray = strings.iter().map(|s| s.map(|r| p.patient(r))).collect();
                Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
            }
        }
    });
    create_udf(
        "pseudonym",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        fun,
    )
}

/// `lineage_inputs(record)` / `lineage_outputs(record)`: the references a
/// lineage event's stored record lists (patients as `patient:<pseudonym>`).
fn lineage_udf(name: &str, member: &'static str) -> datafusion::logical_expr::ScalarUDF {
    let item = Arc::new(Field::new("item", DataType::Utf8, true));
    let fun = Arc::new(move |args: &[ColumnarValue]| {
        let array = match &args[0] {
            ColumnarValue::Array(a) => a.clone(),
            ColumnarValue::Scalar(s) => s.to_array()?,
        };
        let strings = string_array(&array)?;
        let mut out = ListBuilder::new(StringBuilder::new());
        for record in strings.iter() {
            let refs = record
                .and_then(|r| serde_json::from_str::<serde_json::Value>(r).ok())
                .and_then(|v| v.get("event")?.get(member).cloned());
            match refs {
                Some(serde_json::Value::Array(items)) => {
                    for i in items {
                        out.values().append_option(i.as_str());
                    }
                    out.append(true);
                }
                _ => out.append(false),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    });
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::List(item),
        Volatility::Immutable,
        fun,
    )
}

fn string_array(a: &ArrayRef) -> datafusion::error::Result<StringArray> {
    let cast = arrow::compute::cast(a, &DataType::Utf8)?;
    Ok(cast
        .as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .unwrap_or_else(|| StringArray::from(Vec::<Option<&str>>::new())))
}

/// `checkpoints`: every signed checkpoint the store holds.
fn register_checkpoints(ctx: &SessionContext, store: &Store) -> Result<(), QueryError> {
    let mut stored = Vec::new();
    for chain in store.chains()? {
        stored.extend(store.checkpoints(&chain)?);
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("log", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("table", DataType::Utf8, false),
        Field::new("size", DataType::UInt64, false),
        Field::new("root", DataType::Utf8, false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("note", DataType::Utf8, false),
    ]));
    let time = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .ok()
            .map(|d| d.timestamp_micros())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            stored
                .iter()
                .map(|c| Some(c.checkpoint.origin.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(
            stored
                .iter()
                .map(|c| Some(c.chain.stream.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(Int32Array::from_iter_values(
            stored.iter().map(|c| c.chain.partition),
        )),
        Arc::new(
            stored
                .iter()
                .map(|c| Some(c.table.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(UInt64Array::from_iter_values(
            stored.iter().map(|c| c.checkpoint.size),
        )),
        Arc::new(
            stored
                .iter()
                .map(|c| Some(hex::encode(c.checkpoint.root)))
                .collect::<StringArray>(),
        ),
        Arc::new(
            TimestampMicrosecondArray::from(
                stored.iter().map(|c| time(&c.time)).collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(
            stored
                .iter()
                .map(|c| Some(c.note.as_str()))
                .collect::<StringArray>(),
        ),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    debug_assert_eq!(batch.num_rows(), stored.len());
    let table = MemTable::try_new(schema, vec![vec![batch]])?;
    ctx.register_table("checkpoints", Arc::new(table))?;
    Ok(())
}
