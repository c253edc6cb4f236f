//! Bearer tokens and roles on `/v1`.
//!
//! `/metrics`, `/healthz` and `/readyz` stay open (Prometheus and the
//! orchestrator call them without credentials). Every `/v1` route needs
//! `Authorization: Bearer <token>` of a user in `[api.users]`: without one,
//! or with an unknown one, 401 (`WWW-Authenticate: Bearer`). Then the
//! role: `auditor` and `admin` may call every route; `analyst` only
//! `/v1/sql` (whose catalog is then the aggregate views, see
//! `crate::query::guard`) and `/v1/incidents…`; any other route is 403
//! with the reason. The caller is put in the request's extensions for the
//! handlers.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::query::{Role, Users};

/// Checks credentials and role on `/v1` routes.
pub async fn authorize(State(users): State<Arc<Users>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    if !path.starts_with("/v1/") && path != "/v1" {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let Some(caller) = token.and_then(|t| users.by_token(t)).cloned() else {
        if path == "/v1/sql" {
            crate::query::audit::report_unauthenticated(crate::query::Surface::Http, None);
        }
        let reason = if token.is_some() {
            "unknown bearer token"
        } else {
            "credentials required: Authorization: Bearer <token>"
        };
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"custos\"")],
            axum::Json(serde_json::json!({ "error": reason })),
        )
            .into_response();
    };
    if let Err(reason) = allowed(&path, caller.role) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(serde_json::json!({ "error": reason })),
        )
            .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// Whether `role` may call `path`, and if not, why.
pub fn allowed(path: &str, role: Role) -> Result<(), String> {
    if role.patient_level() {
        return Ok(());
    }
    let open_to_analysts =
        path == "/v1/sql" || path == "/v1/incidents" || path.starts_with("/v1/incidents/");
    if open_to_analysts {
        Ok(())
    } else {
        Err(format!(
            "the {} role may read incidents and aggregate views only; {path} serves \
             patient-level evidence (auditor or admin)",
            role.as_str()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analysts_reach_sql_and_incidents_only() {
        for path in ["/v1/sql", "/v1/incidents", "/v1/incidents/abc"] {
            assert!(allowed(path, Role::Analyst).is_ok(), "{path}");
        }
        for path in ["/v1/proof/x", "/v1/checkpoints", "/v1/consistency"] {
            let reason = allowed(path, Role::Analyst).unwrap_err();
            assert!(
                reason.contains("analyst") && reason.contains(path),
                "{reason}"
            );
            assert!(allowed(path, Role::Auditor).is_ok());
            assert!(allowed(path, Role::Admin).is_ok());
        }
    }
}
