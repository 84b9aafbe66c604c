//! Request-body extraction with the documented error shape, and a layer
//! that gives every other error (axum's own rejections: 405, 413, bad
//! query strings, ...) the same `{"error": {"code", "message"}}` body.

use axum::async_trait;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Largest request body the native API reads.
pub const MAX_BODY: usize = 1024 * 1024;

/// A JSON object body deserialised into `T`: 415 without a JSON content
/// type, 400 (`bad_request`) for malformed JSON, JSON that is not an
/// object or does not fit `T`, 413 past [`MAX_BODY`].
pub struct Body<T>(pub T);

fn err(status: StatusCode, code: &'static str, message: String) -> ApiError {
    ApiError {
        status,
        code,
        message,
    }
}

#[async_trait]
impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json {
            return Err(err(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a body with Content-Type: application/json".into(),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                err(StatusCode::BAD_REQUEST, "bad_request", e.body_text())
            }
        })?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("malformed JSON: {e}"),
            )
        })?;
        if !v.is_object() {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be a JSON object".into(),
            ));
        }
        serde_json::from_value(v).map(Body).map_err(|e| {
            err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("invalid body: {e}"),
            )
        })
    }
}

fn too_large() -> ApiError {
    err(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the request body exceeds {MAX_BODY} bytes"),
    )
}

/// The stable code of a status, for errors made outside the handlers.
pub fn code_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable_entity",
        _ if status.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// Rewrites every error response that is not JSON into the error shape.
pub async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let resp = next.run(req).await;
    let st = resp.status();
    let is_json = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    if !(st.is_client_error() || st.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = match st.as_u16() {
        405 => format!("method {method} is not allowed here"),
        413 => too_large().message,
        _ if !text.is_empty() => text,
        _ => st.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut out = err(st, code_of(st), message).into_response();
    for (k, v) in parts.headers.iter() {
        if k != CONTENT_TYPE && k != CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}
