use lifeboat_core::{ActionDenied, Permission};
use lifeboat_hypervisor::HvError;
use lifeboat_store::StoreError;

/// Why a compute call failed. Fronts translate each variant into their
/// vendor's error format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComputeError {
    /// A resource does not exist or is not visible to the caller.
    #[error("{kind} {id} could not be found.")]
    NotFound {
        /// Resource kind (`Instance`, `Flavor`, `Image`, ...).
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The action table refused the action.
    #[error(transparent)]
    Denied(#[from] ActionDenied),
    /// Malformed or invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// Not allowed for this caller.
    #[error("{0}")]
    Forbidden(String),
    /// Not authenticated.
    #[error("{0}")]
    Unauthorized(String),
    /// Conflicts with the current state (other than the action table).
    #[error("{0}")]
    Conflict(String),
    /// No host can take the server.
    #[error("No valid host was found. {0}")]
    NoValidHost(String),
    /// A quota or limit would be exceeded.
    #[error("{0}")]
    OverLimit(String),
    /// An operation failed and the message says so to the caller (Nova's
    /// `HTTPInternalServerError` with an explanation, e.g. `InterfaceAttachFailed`): a 500
    /// whose message is shown, unlike [`ComputeError::Internal`]'s.
    #[error("{0}")]
    Failed(String),
    /// Internal failure (store, agent).
    #[error("{0}")]
    Internal(String),
}

/// Error of a workflow step.
pub(crate) type StepResult<T> = Result<T, ComputeError>;

/// How a lost compare-and-set ends its conflict message.
pub(crate) const CAS_LOST: &str = "was changed by another request; retry";

impl From<StoreError> for ComputeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => ComputeError::Conflict(format!("{what} {CAS_LOST}")),
            StoreError::Duplicate(what) => ComputeError::Conflict(format!("duplicate: {what}")),
            other => ComputeError::Internal(other.to_string()),
        }
    }
}

impl From<HvError> for ComputeError {
    fn from(e: HvError) -> Self {
        ComputeError::Internal(e.to_string())
    }
}

/// The caller lacks `permission`.
pub(crate) fn forbidden(permission: Permission) -> ComputeError {
    ComputeError::Denied(ActionDenied::Forbidden { permission })
}
