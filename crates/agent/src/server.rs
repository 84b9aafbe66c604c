use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::header::{CONNECTION, UPGRADE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use lifeboat_hypervisor::{HvError, HvResult, Hypervisor, Lend};
use serde::Serialize;

use crate::protocol::{AgentRequest, AgentResponse};

fn json<T: Serialize>(r: HvResult<T>) -> AgentResponse {
    match r {
        Ok(v) => AgentResponse::Ok(serde_json::to_value(v).expect("serialisable")),
        Err(e) => AgentResponse::Err(e),
    }
}

/// Generates [`dispatch`] from [`lifeboat_hypervisor::host_primitives!`].
macro_rules! define_dispatch {
    ($( $(#[doc = $doc:literal])* $variant:ident => fn $method:ident( $( $arg:ident : $bty:ty as $oty:ty ),* ) -> $ret:ty; )*) => {
        /// Runs one request on a driver.
        pub async fn dispatch(hv: &dyn Hypervisor, req: AgentRequest) -> AgentResponse {
            match req {
                $(
                    AgentRequest::$variant { $( $arg ),* } => {
                        json(hv.$method($( Lend::lend(&$arg) ),*).await)
                    }
                )*
            }
        }
    };
}

lifeboat_hypervisor::host_primitives!(define_dispatch);

#[derive(Clone)]
struct AgentState {
    hv: Arc<dyn Hypervisor>,
    token: Arc<String>,
}

/// The agent's HTTP service: `POST /v1/rpc` (bearer token),
/// `GET /v1/console/{name}` (bearer token, upgraded to the VM's serial console
/// stream) and `GET /v1/health`. An empty `token` admits nobody.
pub fn router(hv: Arc<dyn Hypervisor>, token: String) -> Router {
    Router::new()
        .route("/v1/rpc", post(rpc))
        .route("/v1/console/:name", get(console))
        .route("/v1/health", get(|| async { "ok" }))
        .with_state(AgentState {
            hv,
            token: Arc::new(token),
        })
}

/// Whether `headers` carry `Authorization: Bearer <token>`, compared in
/// constant time. An empty expected token matches nothing.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    if token.is_empty() {
        return false;
    }
    let Some(given) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

/// The token is checked before the body is parsed.
async fn rpc(
    State(st): State<AgentState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AgentResponse>, (StatusCode, String)> {
    if !authorized(&headers, &st.token) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "bad or missing agent token".into(),
        ));
    }
    let req: AgentRequest = serde_json::from_slice(&body)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("bad agent request: {e}")))?;
    Ok(Json(dispatch(st.hv.as_ref(), req).await))
}

/// The `Upgrade` protocol of the console stream.
pub(crate) const CONSOLE_UPGRADE: &str = "lifeboat-console";

/// Bridges an upgraded connection to the VM's console (opened before the
/// `101`, so a missing VM or console is a JSON driver error instead).
async fn console(
    State(st): State<AgentState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    mut req: Request,
) -> Response {
    if !authorized(&headers, &st.token) {
        return (StatusCode::UNAUTHORIZED, "bad or missing agent token").into_response();
    }
    let wants_upgrade = headers
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(CONSOLE_UPGRADE));
    if !wants_upgrade {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(UPGRADE, CONSOLE_UPGRADE)],
            "the console needs Upgrade: lifeboat-console",
        )
            .into_response();
    }
    let mut vm = match st.hv.open_console(&name).await {
        Ok(s) => s,
        Err(e) => {
            let status = match e {
                HvError::NotFound(_) => StatusCode::NOT_FOUND,
                ref e if e.refuses_state() => StatusCode::CONFLICT,
                _ => StatusCode::BAD_GATEWAY,
            };
            return (status, Json(AgentResponse::Err(e))).into_response();
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let mut up = hyper_util::rt::TokioIo::new(up);
                let _ = tokio::io::copy_bidirectional(&mut up, &mut vm).await;
            }
            Err(e) => tracing::warn!(vm = name, "console upgrade failed: {e}"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, CONSOLE_UPGRADE)
        .body(Body::empty())
        .expect("static response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn bearer(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn empty_token_admits_nobody() {
        assert!(!authorized(&bearer("Bearer "), ""));
        assert!(!authorized(&bearer("Bearer"), ""));
        assert!(!authorized(&HeaderMap::new(), ""));
        assert!(authorized(&bearer("Bearer s3"), "s3"));
        assert!(!authorized(&bearer("Bearer s4"), "s3"));
        assert!(!authorized(&bearer("Bearer s3x"), "s3"));
        assert!(!authorized(&bearer("Basic s3"), "s3"));
    }
}
