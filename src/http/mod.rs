//! The HTTP surface: `/metrics` (Prometheus text format), `/healthz`
//! (the process is alive), `/readyz` (the pipeline is consuming) and, with
//! a store, the ledger's checkpoints and proofs under `/v1` ([`ledger`]);
//! `/v1/incidents` (open incidents) and `/v1/incidents/{id}` (an incident's
//! latest revision with links to its evidence's inclusion proofs), where
//! alerts link to; `POST /v1/sql` ([`sql`]), with a query engine.
//!
//! `/v1` needs a bearer token and a role allowed for the route
//! ([`auth`]); `/metrics`, `/healthz` and `/readyz` are open.
//!
//! Read-only: no route changes any state.

mod auth;
mod ledger;
mod sql;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::ledger::Store;
use crate::metrics::metrics;
use crate::query::{QueryEngine, Users};

pub use sql::ARROW_STREAM;

/// Who may call `/v1`, and the engine `/v1/sql` runs statements on.
#[derive(Clone, Default)]
pub struct Api {
    pub users: Arc<Users>,
    /// `None`: no `/v1/sql` route.
    pub engine: Option<QueryEngine>,
}

pub fn router(store: Option<Store>, api: Api) -> Router {
    let mut base = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/v1/incidents", get(open_incidents))
        .route("/v1/incidents/{id}", get(incident));
    if let Some(engine) = api.engine {
        base = base.merge(
            Router::new()
                .route("/v1/sql", post(sql::sql))
                .with_state(engine),
        );
    }
    if let Some(store) = store {
        base = base.merge(ledger::router(store));
    }
    base.layer(axum::middleware::from_fn_with_state(
        api.users,
        auth::authorize,
    ))
}

async fn metrics_text() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics().render(),
    )
}

async fn open_incidents() -> impl IntoResponse {
    axum::Json(crate::alert::incident_index().open())
}

async fn incident(
    axum::extract::Path(id): axum::extract::Path<String>,
) -> axum::response::Response {
    match crate::alert::incident_index().get(&id) {
        Some(inc) => {
            let proofs: Vec<String> = inc
                .evidence
                .iter()
                .map(|e| format!("/v1/proof/{}", path_segment(e)))
                .collect();
            let mut doc = serde_json::to_value(&inc).unwrap_or_default();
            doc["evidence_proofs"] = serde_json::json!(proofs);
            axum::Json(doc).into_response()
        }
        None => (StatusCode::NOT_FOUND, "no such incident (or not recent)\n").into_response(),
    }
}

/// `text` percent-encoded as one URL path segment.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn ready() -> impl IntoResponse {
    if metrics().pipeline_ready.get() >= 1.0 {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `addr` and serves in a background task; returns the bound address
/// (useful with port 0).
/// With `tls`, every route is served over TLS only.
pub async fn serve(
    addr: SocketAddr,
    store: Option<Store>,
    api: Api,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(store, api);
    match tls {
        Some(acceptor) => {
            let listener = crate::tls::TlsListener::new(listener, acceptor)?;
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "https server stopped");
                }
            });
        }
        None => {
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!(error = %e, "http server stopped");
                }
            });
        }
    }
    Ok(bound)
}
