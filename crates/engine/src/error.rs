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
        /// Resource kind, in Lifeboat's terms (fronts name it in theirs).
        kind: Resource,
        /// The id asked for.
        id: String,
    },
    /// The action table refused the action.
    #[error(transparent)]
    Denied(#[from] ActionDenied),
    /// Refused for a typed reason of the engine's own (not the action
    /// table's); [`Reason::class`] says whether the input is invalid, in
    /// conflict with what exists, or forbidden.
    #[error("{0}")]
    Rejected(Reason),
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
    /// No host can take the server (the host asked for, or none has room).
    #[error("{}", lifeboat_core::FaultReason::NoValidHost { host: host.clone() })]
    NoValidHost {
        /// The host asked for that cannot take it (None: no host has room).
        host: Option<String>,
    },
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

/// A kind of resource, as the engine names it in [`ComputeError::NotFound`].
/// Its `Display` is Lifeboat's name; each front names it in its vendor's
/// words (Nova's `Instance`, Keystone's `user`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A server.
    Server,
    /// A flavor.
    Flavor,
    /// The access list of a flavor (a public flavor has none).
    FlavorAccessList,
    /// A project's access to a private flavor.
    FlavorAccess,
    /// An image.
    Image,
    /// A key pair.
    KeyPair,
    /// A compute host named as a destination.
    ComputeHost,
    /// A host of the registry.
    Host,
    /// A server group.
    ServerGroup,
    /// A server's tag.
    Tag,
    /// A server's metadata item.
    MetadataItem,
    /// A user.
    User,
    /// A project.
    Project,
    /// An access key.
    AccessKey,
    /// A token.
    Token,
    /// A network.
    Network,
    /// A floating IP, by id or address.
    FloatingIp,
    /// A floating IP named by address for a server.
    FloatingIpAddress,
    /// A port.
    Port,
    /// A workflow.
    Workflow,
    /// A snapshot in the snapshot store.
    Snapshot,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Resource::Server => "Server",
            Resource::Flavor => "Flavor",
            Resource::FlavorAccessList => "Access list of flavor",
            Resource::FlavorAccess => "Flavor access",
            Resource::Image => "Image",
            Resource::KeyPair => "Key pair",
            Resource::ComputeHost | Resource::Host => "Host",
            Resource::ServerGroup => "Server group",
            Resource::Tag => "Tag",
            Resource::MetadataItem => "Metadata item",
            Resource::User => "User",
            Resource::Project => "Project",
            Resource::AccessKey => "Access key",
            Resource::Token => "Token",
            Resource::Network => "Network",
            Resource::FloatingIp => "Floating IP",
            Resource::FloatingIpAddress => "Floating IP address",
            Resource::Port => "Port",
            Resource::Workflow => "Workflow",
            Resource::Snapshot => "Snapshot",
        })
    }
}

/// A request field the engine checks itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A server's name.
    Name,
    /// A server's metadata.
    Metadata,
    /// An admin password.
    AdminPass,
    /// A console log's length.
    Length,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Field::Name => "name",
            Field::Metadata => "metadata",
            Field::AdminPass => "admin password",
            Field::Length => "length",
        })
    }
}

/// How a front answers a [`Reason`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The input is invalid (HTTP 400).
    Invalid,
    /// It conflicts with what exists (HTTP 409).
    Conflict,
}

/// Why the engine refused a request, in Lifeboat's terms with the data a
/// front needs to word it: `Display` is Lifeboat's sentence (the native
/// API's), the OpenStack front words each in Nova's exact text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    /// A field has a value the engine refuses.
    #[error("invalid {0}")]
    InvalidField(Field),
    /// A server name that is blank or longer than 255 characters.
    #[error("a server name takes 1 to 255 characters, not all blank")]
    BadServerName,
    /// The request names a resource that does not exist or is not visible.
    #[error("{kind} {id} could not be found.")]
    BadReference {
        /// Its kind.
        kind: Resource,
        /// The id or name given.
        id: String,
    },
    /// The image asked for is not active.
    #[error("image {image} is not active")]
    ImageNotActive {
        /// The image.
        image: String,
    },
    /// The flavor has less RAM than the image's minimum.
    #[error("the flavor has less memory than the image needs")]
    FlavorRamTooSmall,
    /// The flavor has a smaller disk than the image's minimum.
    #[error("the flavor has a smaller disk than the image needs")]
    FlavorDiskTooSmall,
    /// The key pair named is not the caller's.
    #[error("no such key pair")]
    BadKeyName,
    /// A network asked for at create has no subnet to take an address from.
    #[error("network {network} has no subnet to boot a server on")]
    NetworkWithoutSubnet {
        /// The network, as given.
        network: String,
    },
    /// No host is in the availability zone asked for.
    #[error("no host is in the availability zone asked for")]
    NoSuchZone,
    /// Several servers asked for with one port or fixed IP.
    #[error("several servers cannot share a port or fixed IP")]
    SharedPort,
    /// A resize to the server's own flavor.
    #[error("a resize must change the flavor")]
    ResizeSameFlavor,
    /// A resize to a smaller disk.
    #[error("a resize cannot shrink the disk")]
    ResizeDiskDown,
    /// A move to the host the server is on.
    #[error("the server is already on that host")]
    SameHost,
    /// A reset to a state other than active or error.
    #[error("cannot reset a server to {value}: only active or error")]
    BadResetState {
        /// The state asked for.
        value: String,
    },
    /// A security group named by an empty name.
    #[error("a security group name cannot be empty")]
    EmptySecurityGroupName,
    /// The security group is already the server's.
    #[error("security group {group} is already on server {server}")]
    SecurityGroupAlreadyAdded {
        /// The group.
        group: String,
        /// The server.
        server: String,
    },
    /// The security group is not the server's.
    #[error("security group {group} is not on server {server}")]
    SecurityGroupNotAdded {
        /// The group.
        group: String,
        /// The server.
        server: String,
    },
    /// A list marker that is not a visible server.
    #[error("marker {marker} not found")]
    MarkerNotFound {
        /// The marker.
        marker: String,
    },
    /// More tags than a server may have.
    #[error("a server has at most {limit} tags")]
    TooManyTags {
        /// The limit.
        limit: usize,
    },
    /// A tag that is empty, too long or holds `/` or `,`.
    #[error("invalid tag {tag}")]
    BadTag {
        /// The tag.
        tag: String,
    },
    /// A quota of no known resource.
    #[error("no quota named {key}")]
    BadQuotaKey {
        /// The name given.
        key: String,
    },
    /// A quota limit below -1 (unlimited).
    #[error("quota limit {limit} for {resource} is below -1")]
    QuotaBelowMinusOne {
        /// The quota.
        resource: String,
        /// The limit asked for.
        limit: i64,
    },
    /// A quota limit below what the project already uses.
    #[error("quota limit {limit} for {resource} is below the {used} in use")]
    QuotaBelowUsage {
        /// The quota.
        resource: String,
        /// The limit asked for.
        limit: i64,
        /// Already used.
        used: i64,
    },
    /// A console type this manager does not serve.
    #[error("console type {console_type} is not available")]
    UnavailableConsole {
        /// The type asked for.
        console_type: String,
    },
    /// Rules given for a policy other than anti-affinity.
    #[error("only the anti-affinity policy takes rules")]
    RulesNeedAntiAffinity,
    /// A key pair name with characters other than letters, digits and ` _-.@`.
    #[error("invalid key pair name: unsafe characters")]
    KeyPairNameUnsafe,
    /// A public key that cannot be parsed.
    #[error("invalid public key: no fingerprint")]
    KeyPairBadKey,
    /// The server's VM is not on its host.
    #[error("server {server} is not on its host")]
    NotOnHost {
        /// The server.
        server: String,
    },
    /// A flavor of that id or name exists.
    #[error("a flavor with id {id} or name {name} exists")]
    FlavorExists {
        /// The id.
        id: String,
        /// The name.
        name: String,
    },
    /// The caller has a key pair of that name.
    #[error("key pair {name} exists")]
    KeyPairExists {
        /// The name.
        name: String,
    },
    /// Another resource of the kind has the name.
    #[error("{kind} {name} exists")]
    NameTaken {
        /// The kind.
        kind: Resource,
        /// The name.
        name: String,
    },
    /// A store snapshot of another server (or of none) asked to restore a server.
    #[error("snapshot {snapshot} is not a snapshot of server {server}")]
    SnapshotOfAnotherServer {
        /// The snapshot.
        snapshot: String,
        /// The server being restored.
        server: String,
    },
    /// A store snapshot that is not a backup or image snapshot with a disk
    /// (a shelved disk, a DR point, an uploaded image).
    #[error("snapshot {snapshot} is not a backup or image snapshot with a disk")]
    SnapshotNotRestorable {
        /// The snapshot (or image) asked for.
        snapshot: String,
    },
    /// A store snapshot whose manifest fails its checks.
    #[error("snapshot {snapshot} is damaged")]
    SnapshotDamaged {
        /// The snapshot.
        snapshot: String,
    },
    /// Access granted to a public flavor.
    #[error("a public flavor takes no access list")]
    FlavorIsPublic,
    /// The project already has access to the flavor.
    #[error("project {project} already has access to flavor {flavor}")]
    FlavorAccessExists {
        /// The flavor.
        flavor: String,
        /// The project.
        project: String,
    },
}

impl Reason {
    /// Whether the input is invalid or conflicts with what exists.
    pub fn class(&self) -> Class {
        match self {
            Reason::NotOnHost { .. }
            | Reason::FlavorExists { .. }
            | Reason::KeyPairExists { .. }
            | Reason::NameTaken { .. }
            | Reason::FlavorIsPublic
            | Reason::FlavorAccessExists { .. }
            | Reason::SnapshotDamaged { .. } => Class::Conflict,
            _ => Class::Invalid,
        }
    }
}

impl From<Reason> for ComputeError {
    fn from(r: Reason) -> Self {
        ComputeError::Rejected(r)
    }
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

impl ComputeError {
    /// The typed reason a server's fault records for this error, when
    /// fronts word it themselves.
    pub fn fault_reason(&self) -> Option<lifeboat_core::FaultReason> {
        match self {
            ComputeError::NoValidHost { host } => {
                Some(lifeboat_core::FaultReason::NoValidHost { host: host.clone() })
            }
            _ => None,
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
