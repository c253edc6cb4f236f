//! `POST /v1/sql`: one read-only statement, as the bearer token's user.
//!
//! The body is `{"sql": "..."}` (JSON) or the statement itself (any other
//! content type). The answer is JSON,
//! `{"columns":[{"name":…,"type":…}],"rows":[{…}],"row_count":N}`, or with
//! `Accept: application/vnd.apache.arrow.stream`, an Arrow IPC stream.
//! Errors are `{"error": "..."}`: 400 (not a query, or bad SQL), 403 (the
//! role may not read it), 422 (over a time, memory or row limit), 500.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::query::{Answer, Caller, QueryEngine, QueryError, Surface};

/// The media type of an Arrow IPC stream.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

pub async fn sql(
    State(engine): State<QueryEngine>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    let statement = if json_body {
        match serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("sql")?.as_str().map(str::to_owned))
        {
            Some(s) => s,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "expected a JSON body {\"sql\": \"...\"}",
                );
            }
        }
    } else {
        match String::from_utf8(body.to_vec()) {
            Ok(s) => s,
            Err(_) => return error(StatusCode::BAD_REQUEST, "the statement is not UTF-8"),
        }
    };
    let arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(ARROW_STREAM));
    match engine.execute(&caller, Surface::Http, &statement).await {
        Ok(answer) => {
            let encoded = if arrow {
                arrow_stream(&answer).map(|b| (ARROW_STREAM, b))
            } else {
                json(&answer).map(|b| ("application/json", b))
            };
            match encoded {
                Ok((kind, bytes)) => ([(header::CONTENT_TYPE, kind)], bytes).into_response(),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        Err(e) => error(status_of(&e), &e.to_string()),
    }
}

fn status_of(e: &QueryError) -> StatusCode {
    match e {
        QueryError::Forbidden(_) => StatusCode::FORBIDDEN,
        QueryError::TimeLimit(_) | QueryError::MemoryLimit(_) | QueryError::TooManyRows(_) => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        e if e.is_bad_statement() => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error(status: StatusCode, text: &str) -> Response {
    (status, Json(serde_json::json!({ "error": text }))).into_response()
}

fn arrow_stream(answer: &Answer) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &answer.schema)?;
    for b in &answer.batches {
        w.write(b)?;
    }
    w.into_inner()
}

fn json(answer: &Answer) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let columns: Vec<serde_json::Value> = answer
        .schema
        .fields()
        .iter()
        .map(|f| serde_json::json!({ "name": f.name(), "type": f.data_type().to_string() }))
        .collect();
    let mut rows = Vec::new();
    {
        let mut w = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut rows);
        for b in &answer.batches {
            w.write(b)?;
        }
        w.finish()?;
    }
    if rows.is_empty() {
        rows.extend_from_slice(b"[]");
    }
    let mut out = Vec::with_capacity(rows.len() + 256);
    out.extend_from_slice(b"{\"columns\":");
    out.extend_from_slice(
        serde_json::to_string(&columns)
            .unwrap_or_default()
            .as_bytes(),
    );
    out.extend_from_slice(b",\"rows\":");
    out.extend_from_slice(&rows);
    out.extend_from_slice(format!(",\"row_count\":{}}}", answer.rows()).as_bytes());
    Ok(out)
}
