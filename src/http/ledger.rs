//! The ledger's read-only HTTP API: checkpoints and proofs.
//!
//! - `GET /v1/checkpoint`: the latest checkpoint of every log (JSON); with
//!   `?stream=&partition=&table=`, that log's latest signed note as
//!   `text/plain`, as transparency-log clients expect.
//! - `GET /v1/checkpoints`: every stored checkpoint (JSON), optionally
//!   filtered by `stream`, `partition`, `table`.
//! - `GET /v1/proof/{event_id}`: an inclusion proof (see
//!   `docs/ledger-format.md`) against the latest checkpoint, or `?at=SIZE`;
//!   `GET /v1/proof?seq=` (and `stream`, `partition`, `table`) for any row,
//!   rejects included.
//! - `GET /v1/consistency?from=&to=` (and `stream`, `partition`, `table`
//!   when the store has more than one log): a consistency proof.
//!
//! Errors are JSON `{"error": "..."}` with 400 (bad request), 404 (no such
//! event, log or checkpoint), 409 (stored but not yet covered by a
//! checkpoint) or 500.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::ledger::{ChainId, LedgerError, ProveError, Store, StoredCheckpoint, Table};

pub fn router(store: Store) -> Router {
    Router::new()
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/checkpoints", get(checkpoints))
        .route("/v1/proof", get(proof_by_seq))
        .route("/v1/proof/{event_id}", get(proof))
        .route("/v1/consistency", get(consistency))
        .with_state(store)
}

/// Which log(s) a request is about.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    stream: Option<String>,
    partition: Option<i32>,
    table: Option<String>,
    at: Option<u64>,
    seq: Option<u64>,
    from: Option<u64>,
    to: Option<u64>,
}

#[derive(Serialize)]
struct CheckpointJson {
    log: String,
    stream: String,
    partition: i32,
    table: &'static str,
    size: u64,
    root: String,
    time: String,
    note: String,
}

impl From<StoredCheckpoint> for CheckpointJson {
    fn from(c: StoredCheckpoint) -> Self {
        CheckpointJson {
            log: c.checkpoint.origin,
            stream: c.chain.stream,
            partition: c.chain.partition,
            table: c.table.as_str(),
            size: c.checkpoint.size,
            root: hex::encode(c.checkpoint.root),
            time: c.time,
            note: c.note,
        }
    }
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<ProveError> for ApiError {
    fn from(e: ProveError) -> Self {
        let status = match &e {
            ProveError::UnknownEvent(_)
            | ProveError::UnknownSeq { .. }
            | ProveError::NoCheckpoint { .. } => StatusCode::NOT_FOUND,
            ProveError::NotCovered { .. } => StatusCode::CONFLICT,
            ProveError::BadSizes { .. } => StatusCode::BAD_REQUEST,
            ProveError::Ledger(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(status, e.to_string())
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::InvalidChain { .. } => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
            e => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
}

fn bad(what: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, what.into())
}

fn parse_table(name: Option<&str>) -> Result<Table, ApiError> {
    let name = name.unwrap_or("events");
    Table::parse(name).ok_or_else(|| {
        bad(format!(
            "table must be `events`, `rejects`, `incidents` or `query_log`, not {name:?}"
        ))
    })
}

/// A proof document, already JSON text.
fn json_document(text: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], text).into_response()
}

/// Runs blocking store reads off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
}

/// The one log a request names, or the store's only log of that table.
fn one_log(store: &Store, q: &LogQuery) -> Result<(ChainId, Table), ApiError> {
    let table = parse_table(q.table.as_deref())?;
    let chain = match (&q.stream, q.partition) {
        (Some(stream), Some(partition)) => ChainId::new(stream.clone(), partition),
        (None, None) => {
            let chains = store.chains_with(table)?;
            match chains.as_slice() {
                [only] => only.clone(),
                _ => {
                    return Err(bad(format!(
                        "the store has {} chains of {}: name one with stream= and partition=",
                        chains.len(),
                        table.as_str()
                    )));
                }
            }
        }
        _ => return Err(bad("give both stream= and partition=, or neither")),
    };
    chain.validate()?;
    Ok((chain, table))
}

async fn checkpoint(
    State(store): State<Store>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    blocking(move || {
        if q.stream.is_none() && q.partition.is_none() && q.table.is_none() {
            let all: Vec<CheckpointJson> = store
                .latest_checkpoints()?
                .into_iter()
                .map(Into::into)
                .collect();
            return Ok(Json(all).into_response());
        }
        let (chain, table) = one_log(&store, &q)?;
        let latest = store
            .checkpoints(&chain)?
            .into_iter()
            .filter(|c| c.table == table)
            .max_by_key(|c| c.checkpoint.size)
            .ok_or_else(|| {
                ApiError(
                    StatusCode::NOT_FOUND,
                    format!("no checkpoint of {} of {chain} yet", table.as_str()),
                )
            })?;
        Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            latest.note,
        )
            .into_response())
    })
    .await
}

async fn checkpoints(
    State(store): State<Store>,
    Query(q): Query<LogQuery>,
) -> Result<Json<Vec<CheckpointJson>>, ApiError> {
    blocking(move || {
        let table = q
            .table
            .as_deref()
            .map(|t| parse_table(Some(t)))
            .transpose()?;
        let mut out = Vec::new();
        for chain in store.chains()? {
            if q.stream.as_ref().is_some_and(|s| *s != chain.stream)
                || q.partition.is_some_and(|p| p != chain.partition)
            {
                continue;
            }
            for c in store.checkpoints(&chain)? {
                if table.is_none_or(|t| t == c.table) {
                    out.push(c.into());
                }
            }
        }
        Ok(Json(out))
    })
    .await
}

async fn proof(
    State(store): State<Store>,
    Path(event_id): Path<String>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let found = store.locate_event(&event_id)?;
        let Some(first) = found.first() else {
            return Err(ProveError::UnknownEvent(event_id).into());
        };
        if found.len() > 1 {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "event id {event_id:?} is stored {} times (the producer reused it); ask /v1/proof?stream=&partition=&seq=",
                    found.len()
                ),
            ));
        }
        let proof = store.prove_inclusion(&first.chain, Table::Events, first.seq, q.at)?;
        Ok(json_document(proof.to_json_pretty()))
    })
    .await
}

async fn proof_by_seq(
    State(store): State<Store>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let seq = q
            .seq
            .ok_or_else(|| bad("give seq= (or ask /v1/proof/{event_id})"))?;
        let (chain, table) = one_log(&store, &q)?;
        let proof = store.prove_inclusion(&chain, table, seq, q.at)?;
        Ok(json_document(proof.to_json_pretty()))
    })
    .await
}

async fn consistency(
    State(store): State<Store>,
    Query(q): Query<LogQuery>,
) -> Result<Response, ApiError> {
    blocking(move || {
        let (Some(from), Some(to)) = (q.from, q.to) else {
            return Err(bad("give from= and to= (tree sizes)"));
        };
        let (chain, table) = one_log(&store, &q)?;
        let proof = store.prove_consistency(&chain, table, from, to)?;
        Ok(json_document(proof.to_json_pretty()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_is_not_one_is_refused_naming_all_four() {
        let Err(ApiError(status, what)) = parse_table(Some("audit")) else {
            panic!("`audit` was taken for a table");
        };
        assert_eq!(status, StatusCode::BAD_REQUEST);
        for table in Table::ALL {
            assert!(what.contains(&format!("`{}`", table.as_str())), "{what}");
        }
        assert!(matches!(
            parse_table(Some("query_log")),
            Ok(Table::QueryLog)
        ));
    }
}
