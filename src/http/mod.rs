//! The HTTP surface: `/metrics` (Prometheus text format), `/healthz`
//! (the process is alive), `/readyz` (the pipeline is consuming) and, with
//! a store, the ledger's checkpoints and proofs under `/v1` ([`ledger`]).
//!
//! Read-only: no route changes any state.

mod ledger;

use std::net::SocketAddr;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::ledger::Store;
use crate::metrics::metrics;

pub fn router(store: Option<Store>) -> Router {
    let base = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready));
    match store {
        Some(store) => base.merge(ledger::router(store)),
        None => base,
    }
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

async fn ready() -> impl IntoResponse {
    if metrics().pipeline_ready.get() >= 1.0 {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

/// Binds `addr` and serves in a background task; returns the bound address
/// (useful with port 0).
pub async fn serve(addr: SocketAddr, store: Option<Store>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router(store)).await {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    Ok(bound)
}
