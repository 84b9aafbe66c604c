//! Token authentication (keystonemiddleware's role): `X-Auth-Token` to an
//! [`Actor`].

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use lifeboat_core::Actor;
use serde_json::json;

use crate::Ctx;

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Actor);

/// keystonemiddleware's 401.
#[derive(Debug)]
pub struct Unauthorized {
    /// Identity URL for `WWW-Authenticate`.
    pub identity: String,
}

impl IntoResponse for Unauthorized {
    fn into_response(self) -> Response {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {
                "code": 401,
                "title": "Unauthorized",
                "message": "The request you have made requires authentication.",
            }})),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("Keystone uri=\"{}\"", self.identity)) {
            r.headers_mut().insert("www-authenticate", v);
        }
        r
    }
}

/// The bearer token of a request.
pub fn token_of(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get("x-auth-token")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[axum::async_trait]
impl FromRequestParts<Ctx> for Caller {
    type Rejection = Unauthorized;

    async fn from_request_parts(parts: &mut Parts, ctx: &Ctx) -> Result<Self, Unauthorized> {
        let unauthorized = || Unauthorized {
            identity: ctx.identity_url(),
        };
        let token = token_of(parts).ok_or_else(unauthorized)?;
        ctx.engine
            .validate_token(&token)
            .await
            .map(|a| Caller(a.actor))
            .map_err(|_| unauthorized())
    }
}
