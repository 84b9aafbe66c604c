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
    /// A quota would be exceeded.
    #[error("{0}")]
    QuotaExceeded(QuotaExceeded),
    /// A size limit (not a quota) would be exceeded.
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

/// A quota a request would exceed, in Lifeboat's terms; each front words
/// it in its vendor's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaExceeded {
    /// Counted resources over their limits, in the order of their names.
    Resources(Vec<OverQuota>),
    /// More metadata items than the limit allows.
    MetadataItems {
        /// The limit.
        limit: i64,
    },
    /// One more key pair than the limit allows.
    KeyPairs,
    /// One more server group than the limit allows.
    ServerGroups,
    /// More servers in a group than the limit allows.
    GroupMembers,
}

/// One resource over its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverQuota {
    /// The quota's name (`instances`, `cores`, `ram`, `metadata_items`).
    pub resource: &'static str,
    /// What was asked (a count, or a range `min-max` of servers).
    pub requested: String,
    /// Already used.
    pub used: i64,
    /// The limit.
    pub limit: i64,
}

impl std::fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuotaExceeded::Resources(v) => {
                f.write_str("quota exceeded:")?;
                for (i, o) in v.iter().enumerate() {
                    let sep = if i == 0 { " " } else { "; " };
                    write!(
                        f,
                        "{sep}{} (requested {}, used {} of {})",
                        o.resource, o.requested, o.used, o.limit
                    )?;
                }
                Ok(())
            }
            QuotaExceeded::MetadataItems { limit } => {
                write!(f, "quota exceeded: more than {limit} metadata items")
            }
            QuotaExceeded::KeyPairs => f.write_str("quota exceeded: key pairs"),
            QuotaExceeded::ServerGroups => f.write_str("quota exceeded: server groups"),
            QuotaExceeded::GroupMembers => f.write_str("quota exceeded: servers in the group"),
        }
    }
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

impl From<lifeboat_core::workflows::ParamsError> for ComputeError {
    fn from(e: lifeboat_core::workflows::ParamsError) -> Self {
        ComputeError::Internal(e.to_string())
    }
}

/// The caller lacks `permission`.
pub(crate) fn forbidden(permission: Permission) -> ComputeError {
    ComputeError::Denied(ActionDenied::Forbidden { permission })
}
