use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use lifeboat_hypervisor::{HvResult, Hypervisor, Lend};
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

/// The agent's HTTP service: `POST /v1/rpc` (bearer token) and `GET /v1/health`.
/// An empty `token` admits nobody.
pub fn router(hv: Arc<dyn Hypervisor>, token: String) -> Router {
    Router::new()
        .route("/v1/rpc", post(rpc))
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
