//! Nova's fault envelope: `{"<faultName>": {"code": N, "message": "..."}}`,
//! and the translation of engine errors into it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lifeboat_core::ActionDenied;
use lifeboat_engine::{Class, ComputeError};
use serde_json::json;

/// A Nova fault response.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// HTTP status.
    pub status: StatusCode,
    /// Explanation.
    pub message: String,
}

/// Result of a compute handler.
pub type R<T> = Result<T, Fault>;

impl Fault {
    /// A fault with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Fault {
        Fault {
            status,
            message: message.into(),
        }
    }
    /// 400 badRequest.
    pub fn bad_request(m: impl Into<String>) -> Fault {
        Fault::new(StatusCode::BAD_REQUEST, m)
    }
    /// 404 itemNotFound.
    pub fn not_found(m: impl Into<String>) -> Fault {
        Fault::new(StatusCode::NOT_FOUND, m)
    }
    /// 403 forbidden.
    pub fn forbidden(m: impl Into<String>) -> Fault {
        Fault::new(StatusCode::FORBIDDEN, m)
    }
    /// 409 conflictingRequest.
    pub fn conflict(m: impl Into<String>) -> Fault {
        Fault::new(StatusCode::CONFLICT, m)
    }
    /// Nova's 404 for an API method absent at the requested microversion.
    pub fn version_not_found() -> Fault {
        Fault::not_found("The resource could not be found.")
    }

    /// Nova's `Fault._fault_names`.
    pub fn fault_name(status: StatusCode) -> &'static str {
        match status.as_u16() {
            400 => "badRequest",
            401 => "unauthorized",
            403 => "forbidden",
            404 => "itemNotFound",
            405 => "badMethod",
            409 => "conflictingRequest",
            413 => "overLimit",
            415 => "badMediaType",
            429 => "overLimit",
            501 => "notImplemented",
            503 => "serviceUnavailable",
            _ => "computeFault",
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({ Self::fault_name(self.status): {
            "code": self.status.as_u16(),
            "message": self.message,
        }})
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<ComputeError> for Fault {
    fn from(e: ComputeError) -> Self {
        match &e {
            ComputeError::NotFound { kind, id } => {
                Fault::not_found(crate::nova::not_found_message(*kind, id))
            }
            ComputeError::Denied(d) => match d {
                ActionDenied::Forbidden { .. } => Fault::forbidden(crate::nova::denied_message(d)),
                ActionDenied::HostUp { .. } => Fault::bad_request(crate::nova::denied_message(d)),
                _ => Fault::conflict(crate::nova::denied_message(d)),
            },
            ComputeError::Rejected(r) => {
                let m = crate::nova::reason_message(r);
                match r.class() {
                    Class::Invalid => Fault::bad_request(m),
                    Class::Conflict => Fault::conflict(m),
                }
            }
            ComputeError::BadRequest(m) => Fault::bad_request(m.clone()),
            ComputeError::Forbidden(m) => Fault::forbidden(m.clone()),
            ComputeError::Unauthorized(m) => Fault::new(StatusCode::UNAUTHORIZED, m.clone()),
            ComputeError::Conflict(m) => Fault::conflict(m.clone()),
            // Synchronous NoValidHost (migrate/unshelve to a host) is a 400 in Nova.
            ComputeError::NoValidHost { host } => {
                Fault::bad_request(crate::nova::no_valid_host_message(host.as_deref()))
            }
            // Nova maps quota errors to 403.
            ComputeError::QuotaExceeded(q) => Fault::forbidden(crate::nova::quota_message(q)),
            ComputeError::OverLimit(m) => Fault::forbidden(m.clone()),
            ComputeError::Failed(m) => {
                tracing::warn!("operation failed: {m}");
                Fault::new(StatusCode::INTERNAL_SERVER_ERROR, m.clone())
            }
            ComputeError::Internal(m) => {
                tracing::error!("internal error: {m}");
                Fault::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach the Nova API log if possible.\n<class 'nova.exception.NovaException'>",
                )
            }
        }
    }
}

/// Unknown routes under the compute API.
pub async fn not_found() -> Fault {
    Fault::not_found("The resource could not be found.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope() {
        let f: Fault = ComputeError::Denied(ActionDenied::Locked {
            server_id: "abc".into(),
        })
        .into();
        assert_eq!(
            f.body(),
            json!({"conflictingRequest": {"code": 409, "message": "Instance abc is locked"}})
        );
        let f: Fault = ComputeError::NotFound {
            kind: lifeboat_engine::Resource::Server,
            id: "x".into(),
        }
        .into();
        assert_eq!(
            f.body(),
            json!({"itemNotFound": {"code": 404, "message": "Instance x could not be found."}})
        );
        let f: Fault = ComputeError::Denied(ActionDenied::Forbidden {
            permission: lifeboat_core::Permission::Action(lifeboat_core::Action::Migrate),
        })
        .into();
        assert_eq!(f.status, StatusCode::FORBIDDEN);
        assert_eq!(
            f.body()["forbidden"]["message"],
            "Policy doesn't allow os_compute_api:os-migrate-server:migrate to be performed."
        );
        assert_eq!(
            Fault::fault_name(StatusCode::NOT_ACCEPTABLE),
            "computeFault"
        );
    }
}
