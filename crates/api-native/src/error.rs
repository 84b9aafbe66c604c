use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lifeboat_engine::ComputeError;
use serde::Serialize;
use utoipa::ToSchema;

/// Error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable code and a human message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine code: not_found, conflict, locked, bad_request,
    /// forbidden, unauthorized, no_valid_host, over_limit, internal.
    pub code: String,
    /// Message.
    pub message: String,
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Message.
    pub message: String,
}

impl ApiError {
    /// A 400.
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: m.into(),
        }
    }
}

impl From<ComputeError> for ApiError {
    fn from(e: ComputeError) -> Self {
        use lifeboat_core::ActionDenied;
        let (status, code) = match &e {
            ComputeError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ComputeError::Denied(ActionDenied::Forbidden { .. }) => {
                (StatusCode::FORBIDDEN, "forbidden")
            }
            ComputeError::Denied(ActionDenied::Locked { .. }) => (StatusCode::CONFLICT, "locked"),
            ComputeError::Denied(_) => (StatusCode::CONFLICT, "invalid_state"),
            ComputeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ComputeError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ComputeError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ComputeError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ComputeError::NoValidHost(_) => (StatusCode::CONFLICT, "no_valid_host"),
            ComputeError::OverLimit(_) => (StatusCode::FORBIDDEN, "over_limit"),
            ComputeError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {e}");
        }
        ApiError {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: self.code.into(),
                    message: self.message,
                },
            }),
        )
            .into_response()
    }
}

/// The native 404 as a response (for a listener's fallback).
pub fn not_found_response() -> axum::response::Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such route".into(),
    }
    .into_response()
}

/// Unknown routes.
pub async fn not_found() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: "no such route".into(),
    }
}
