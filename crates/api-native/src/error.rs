use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use lifeboat_engine::{Class, ComputeError, Reason, Resource};
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
    /// forbidden, unauthorized, no_valid_host, over_limit, failed (an
    /// operation failed; the message says which), internal.
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
            ComputeError::Denied(ActionDenied::HostUp { .. }) => {
                (StatusCode::BAD_REQUEST, "bad_request")
            }
            ComputeError::Denied(_) => (StatusCode::CONFLICT, "invalid_state"),
            // A body naming what does not exist (a flavor, image, key pair,
            // zone, host or server group) is a 404 here, as the native
            // networking bodies answer (`no network with id or name ...`);
            // the OpenStack front keeps Nova's 400.
            ComputeError::Rejected(
                Reason::BadReference { .. } | Reason::BadKeyName | Reason::NoSuchZone,
            ) => (StatusCode::NOT_FOUND, "not_found"),
            // The network exists; the deployment's state refuses it.
            ComputeError::Rejected(Reason::NetworkWithoutSubnet { .. }) => {
                (StatusCode::CONFLICT, "conflict")
            }
            ComputeError::Rejected(r) => match r.class() {
                Class::Invalid => (StatusCode::BAD_REQUEST, "bad_request"),
                Class::Conflict => (StatusCode::CONFLICT, "conflict"),
            },
            ComputeError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ComputeError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ComputeError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ComputeError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ComputeError::NoValidHost { .. } => (StatusCode::CONFLICT, "no_valid_host"),
            ComputeError::QuotaExceeded(_) | ComputeError::OverLimit(_) => {
                (StatusCode::FORBIDDEN, "over_limit")
            }
            ComputeError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
            ComputeError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {e}");
        }
        let message = match &e {
            ComputeError::Denied(d) => denied_message(d),
            ComputeError::Rejected(Reason::BadReference {
                kind: Resource::ServerGroup,
                id,
            }) => {
                // The native API's words for a group named in a hint, as
                // its clients have matched them since server groups came.
                format!("Instance group {id} could not be found.")
            }
            e => e.to_string(),
        };
        ApiError {
            status,
            code,
            message,
        }
    }
}

/// The native API's sentence for a refused action, in Lifeboat's own action
/// names (`reboot_soft`, `force_delete`, ...).
pub fn denied_message(d: &lifeboat_core::ActionDenied) -> String {
    use lifeboat_core::{actions::state_value, ActionDenied as D, Permission as P};
    match d {
        D::WrongState {
            action,
            server_id,
            attr,
            vm_state,
            task_state,
        } => format!(
            "Cannot '{action}' instance {server_id} while it is in {attr} {}",
            state_value(*attr, *vm_state, *task_state)
        ),
        D::Locked { server_id } => format!("Instance {server_id} is locked"),
        D::NotRunning { server_id } => format!("Instance {server_id} is not running."),
        D::NotLaunched { action, server_id } => {
            format!("Instance {server_id} is in an invalid state for '{action}'")
        }
        D::NoHost { server_id } => format!("Instance {server_id} has no host assigned"),
        D::NotReady { server_id } => format!("Instance {server_id} is not ready"),
        D::Forbidden { permission } => {
            let what = match permission {
                P::Action(a) => format!("servers:{a}"),
                P::UnlockOverride => "servers:unlock:override".into(),
                P::CreateForcedHost => "servers:create:forced_host".into(),
                P::CreateRequestedDestination => "servers:create:requested_destination".into(),
                P::UnshelveToHost => "servers:unshelve:to_host".into(),
                P::FlavorCreate => "flavors:create".into(),
                P::FlavorDelete => "flavors:delete".into(),
                P::FlavorAccessList => "flavors:access:list".into(),
                P::FlavorAccessAdd => "flavors:access:add".into(),
                P::FlavorAccessRemove => "flavors:access:remove".into(),
                P::QuotaShow => "quotas:show".into(),
                P::QuotaUpdate => "quotas:update".into(),
                P::QuotaClassUpdate => "quota_classes:update".into(),
                P::QuotaDelete => "quotas:delete".into(),
            };
            format!("Policy doesn't allow {what} to be performed.")
        }
        D::HostUp { host } => format!("Compute service of {host} is still in use."),
        D::Restoring { action, server_id } => format!(
            "Cannot '{action}' instance {server_id} until its instant restore has copied its disk from the snapshot store; its progress is the server's restore field"
        ),
        D::NotOffloaded {
            server_id,
            vm_state,
        } => format!(
            "Instance {server_id} is in vm_state {vm_state}: only a shelved_offloaded server can be unshelved to a host or zone"
        ),
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
