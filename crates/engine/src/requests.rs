//! Requests the fronts send to the engine, and what comes back.

use std::collections::BTreeMap;

use lifeboat_core::{Status, Time};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A network request at create (a network, a port, or a fixed IP).
pub use lifeboat_core::NetworkRequest;

/// Create one or more servers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServer {
    /// Name (with `max_count` > 1 a `-N` suffix is added).
    #[schema(required = true, min_length = 1, max_length = 255, pattern = "\\S")]
    pub name: String,
    /// Flavor id or name.
    #[schema(required = true, min_length = 1, example = "m1.nano")]
    pub flavor: String,
    /// Image id or name (None: the default image).
    #[serde(default)]
    pub image: Option<String>,
    /// Networks; empty = the default network; `Some("none")`-style auto/none
    /// is expressed by `no_network`.
    #[serde(default)]
    pub networks: Vec<NetworkRequest>,
    /// No network at all (`networks: "none"`).
    #[serde(default)]
    pub no_network: bool,
    /// `networks: "auto"` (2.37+): with no network usable by the project, the create fails
    /// (Nova cannot auto-allocate one here) instead of booting without a network.
    #[serde(default)]
    pub auto_network: bool,
    /// Key pair name.
    #[serde(default)]
    pub key_name: Option<String>,
    /// Metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Base64 user data.
    #[serde(default)]
    pub user_data: Option<String>,
    /// Availability zone (`zone` or `zone:host` for admins).
    #[serde(default)]
    pub availability_zone: Option<String>,
    /// Admin password (generated when None).
    #[serde(default)]
    pub admin_pass: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Minimum number of servers.
    #[serde(default)]
    pub min_count: u32,
    /// Maximum number of servers.
    #[serde(default)]
    pub max_count: u32,
    /// Config drive.
    #[serde(default)]
    pub config_drive: bool,
    /// Security group names.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Hostname (2.90+).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Scheduler hints.
    #[schema(value_type = Object)]
    #[serde(default)]
    pub scheduler_hints: BTreeMap<String, serde_json::Value>,
    /// Requested host (admin only).
    #[serde(default)]
    pub host: Option<String>,
    /// accessIPv4.
    #[serde(default)]
    pub access_ipv4: Option<String>,
    /// accessIPv6.
    #[serde(default)]
    pub access_ipv6: Option<String>,
    /// AUTO or MANUAL.
    #[serde(default)]
    pub disk_config: Option<String>,
}

/// A created server and its admin password (shown once).
#[derive(Debug, Clone)]
pub struct Created {
    /// The server as stored (BUILD).
    pub server: lifeboat_core::Server,
    /// The admin password.
    pub admin_pass: String,
    /// The create workflow.
    pub workflow_id: String,
}

/// Listing filters (already authorised by the front).
#[derive(Debug, Clone, Default)]
pub struct ListServers {
    /// Admin: list every project (`all_tenants`).
    pub all_projects: bool,
    /// Admin: only this project.
    pub project_id: Option<String>,
    /// Status filter.
    pub status: Option<Vec<Status>>,
    /// Name substring.
    pub name: Option<String>,
    /// Host filter (admin).
    pub host: Option<String>,
    /// Include deleted servers (admin).
    pub deleted: bool,
    /// Changed since.
    pub changes_since: Option<Time>,
    /// Page size.
    pub limit: Option<i64>,
    /// Last id of the previous page.
    pub marker: Option<String>,
    /// Only servers having all these tags.
    pub tags: Vec<String>,
    /// Image id.
    pub image: Option<String>,
    /// Flavor id.
    pub flavor: Option<String>,
    /// Locked state.
    pub locked: Option<bool>,
}

/// Fields of a server update.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct UpdateServer {
    /// New name.
    pub name: Option<String>,
    /// New description (Some(None) clears it).
    pub description: Option<Option<String>>,
    /// accessIPv4.
    pub access_ipv4: Option<String>,
    /// accessIPv6.
    pub access_ipv6: Option<String>,
    /// Hostname.
    pub hostname: Option<String>,
    /// AUTO or MANUAL.
    pub disk_config: Option<String>,
}

/// A server action with its parameters: declared with its row of the
/// action table (`lifeboat_core::server_actions!`).
pub use lifeboat_core::ServerAction;

/// What an action returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ActionOutcome {
    /// A workflow was started.
    Accepted {
        /// Workflow id.
        workflow_id: String,
        /// Image created (createImage/createBackup).
        image_id: Option<String>,
        /// Admin password (rebuild/rescue/evacuate).
        admin_pass: Option<String>,
    },
    /// Done at once.
    Done,
    /// Console text.
    ConsoleOutput {
        /// The text.
        output: String,
    },
    /// A remote console.
    RemoteConsole {
        /// Protocol.
        protocol: String,
        /// Type.
        console_type: String,
        /// URL.
        url: String,
    },
    /// An interface was attached.
    InterfaceAttached {
        /// Its port.
        port_id: String,
    },
}

/// The outcome of an accepted workflow.
pub(crate) fn accepted(wf: lifeboat_core::Workflow) -> ActionOutcome {
    ActionOutcome::Accepted {
        workflow_id: wf.id,
        image_id: None,
        admin_pass: None,
    }
}
