use axum::async_trait;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use lifeboat_core::Actor;
use lifeboat_engine::Engine;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};

use crate::error::ApiError;

/// The authenticated caller, from `X-Auth-Token` or `Authorization: Bearer`.
pub struct Caller(pub Actor);

#[async_trait]
impl FromRequestParts<Engine> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, engine: &Engine) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .or_else(|| {
                parts
                    .headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::to_string)
            });
        let unauthorized = |m: &str| ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: m.into(),
        };
        let Some(token) = token else {
            return Err(unauthorized("authentication required: send X-Auth-Token"));
        };
        engine
            .validate_token(&token)
            .await
            .map(|a| Caller(a.actor))
            .map_err(|_| unauthorized("invalid or expired token"))
    }
}

/// Adds the token scheme to the OpenAPI document.
pub struct SecurityAddon;

impl utoipa::Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Auth-Token"))),
        );
    }
}
