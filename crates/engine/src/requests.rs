//! Requests the fronts send to the engine, and what comes back.

use std::collections::BTreeMap;

use lifeboat_core::{Status, Time};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A network request at create: a network, a port, or a fixed IP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkRequest {
    /// Network UUID.
    pub network_id: Option<String>,
    /// Existing port UUID.
    pub port_id: Option<String>,
    /// Fixed IPv4 address wanted.
    pub fixed_ip: Option<String>,
}

/// Create one or more servers.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct CreateServer {
    /// Name (with `max_count` > 1 a `-N` suffix is added).
    pub name: String,
    /// Flavor id or name.
    pub flavor: String,
    /// Image id or name (None: the default image).
    pub image: Option<String>,
    /// Networks; empty = the default network; `Some("none")`-style auto/none
    /// is expressed by `no_network`.
    pub networks: Vec<NetworkRequest>,
    /// No network at all (`networks: "none"`).
    pub no_network: bool,
    /// Key pair name.
    pub key_name: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// Base64 user data.
    pub user_data: Option<String>,
    /// Availability zone (`zone` or `zone:host` for admins).
    pub availability_zone: Option<String>,
    /// Admin password (generated when None).
    pub admin_pass: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Minimum number of servers.
    pub min_count: u32,
    /// Maximum number of servers.
    pub max_count: u32,
    /// Config drive.
    pub config_drive: bool,
    /// Security group names.
    pub security_groups: Vec<String>,
    /// Hostname (2.90+).
    pub hostname: Option<String>,
    /// Scheduler hints.
    #[schema(value_type = Object)]
    pub scheduler_hints: BTreeMap<String, serde_json::Value>,
    /// Requested host (admin only).
    pub host: Option<String>,
    /// accessIPv4.
    pub access_ipv4: Option<String>,
    /// accessIPv6.
    pub access_ipv6: Option<String>,
    /// AUTO or MANUAL.
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

/// A server action with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "action", rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ServerAction {
    Reboot {
        hard: bool,
    },
    Rebuild {
        image: String,
        name: Option<String>,
        admin_pass: Option<String>,
        metadata: Option<BTreeMap<String, String>>,
        description: Option<Option<String>>,
        key_name: Option<Option<String>>,
        user_data: Option<Option<String>>,
        #[serde(default)]
        preserve_ephemeral: bool,
        hostname: Option<String>,
    },
    Resize {
        flavor: String,
    },
    ConfirmResize,
    RevertResize,
    CreateImage {
        name: String,
        #[serde(default)]
        metadata: BTreeMap<String, String>,
    },
    CreateBackup {
        name: String,
        backup_type: String,
        rotation: u32,
        #[serde(default)]
        metadata: BTreeMap<String, String>,
    },
    ChangePassword {
        admin_pass: String,
    },
    ResetState {
        state: String,
    },
    Pause,
    Unpause,
    Suspend,
    Resume,
    Lock {
        reason: Option<String>,
    },
    Unlock,
    Rescue {
        admin_pass: Option<String>,
        image: Option<String>,
    },
    Unrescue,
    Evacuate {
        host: Option<String>,
        admin_pass: Option<String>,
    },
    Start,
    Stop,
    Shelve,
    ShelveOffload,
    Unshelve {
        availability_zone: Option<Option<String>>,
        host: Option<String>,
    },
    Migrate {
        host: Option<String>,
    },
    LiveMigrate {
        host: Option<String>,
    },
    TriggerCrashDump,
    ConsoleOutput {
        length: Option<i64>,
    },
    RemoteConsole {
        protocol: String,
        console_type: String,
    },
    AddSecurityGroup {
        name: String,
    },
    RemoveSecurityGroup {
        name: String,
    },
    AddFixedIp {
        network_id: String,
    },
    RemoveFixedIp {
        address: String,
    },
    AddFloatingIp {
        address: String,
        fixed_address: Option<String>,
    },
    RemoveFloatingIp {
        address: String,
    },
    Delete,
    ForceDelete,
    Restore,
    /// Runs the guest's maintenance procedure `procedure` (a script of the
    /// guest image's `/etc/lifeboat/maintenance.d`).
    RunMaintenance {
        procedure: String,
    },
}

impl ServerAction {
    /// What the request asks beyond its action, for the table's guards
    /// (a destination host, a zone).
    pub fn ask(&self) -> lifeboat_core::actions::Ask<'static> {
        let mut ask = lifeboat_core::actions::Ask::default();
        match self {
            ServerAction::Unshelve {
                availability_zone,
                host,
            } => {
                ask.host = host.is_some();
                ask.zone = availability_zone.is_some();
            }
            ServerAction::Evacuate { host, .. }
            | ServerAction::Migrate { host }
            | ServerAction::LiveMigrate { host } => ask.host = host.is_some(),
            _ => {}
        }
        ask
    }

    /// The action-table entry this request is checked against.
    pub fn kind(&self) -> lifeboat_core::Action {
        use lifeboat_core::Action as A;
        match self {
            ServerAction::Reboot { hard: false } => A::RebootSoft,
            ServerAction::Reboot { hard: true } => A::RebootHard,
            ServerAction::Rebuild { .. } => A::Rebuild,
            ServerAction::Resize { .. } => A::Resize,
            ServerAction::ConfirmResize => A::ConfirmResize,
            ServerAction::RevertResize => A::RevertResize,
            ServerAction::CreateImage { .. } => A::CreateImage,
            ServerAction::CreateBackup { .. } => A::CreateBackup,
            ServerAction::ChangePassword { .. } => A::ChangePassword,
            ServerAction::ResetState { .. } => A::ResetState,
            ServerAction::Pause => A::Pause,
            ServerAction::Unpause => A::Unpause,
            ServerAction::Suspend => A::Suspend,
            ServerAction::Resume => A::Resume,
            ServerAction::Lock { .. } => A::Lock,
            ServerAction::Unlock => A::Unlock,
            ServerAction::Rescue { .. } => A::Rescue,
            ServerAction::Unrescue => A::Unrescue,
            ServerAction::Evacuate { .. } => A::Evacuate,
            ServerAction::Start => A::Start,
            ServerAction::Stop => A::Stop,
            ServerAction::Shelve => A::Shelve,
            ServerAction::ShelveOffload => A::ShelveOffload,
            ServerAction::Unshelve { .. } => A::Unshelve,
            ServerAction::Migrate { .. } => A::Migrate,
            ServerAction::LiveMigrate { .. } => A::LiveMigrate,
            ServerAction::TriggerCrashDump => A::TriggerCrashDump,
            ServerAction::ConsoleOutput { .. } => A::ConsoleOutput,
            ServerAction::RemoteConsole { .. } => A::RemoteConsole,
            ServerAction::AddSecurityGroup { .. } => A::AddSecurityGroup,
            ServerAction::RemoveSecurityGroup { .. } => A::RemoveSecurityGroup,
            ServerAction::AddFixedIp { .. } => A::AddFixedIp,
            ServerAction::RemoveFixedIp { .. } => A::RemoveFixedIp,
            ServerAction::AddFloatingIp { .. } => A::AddFloatingIp,
            ServerAction::RemoveFloatingIp { .. } => A::RemoveFloatingIp,
            ServerAction::Delete => A::Delete,
            ServerAction::ForceDelete => A::ForceDelete,
            ServerAction::Restore => A::Restore,
            ServerAction::RunMaintenance { .. } => A::RunMaintenance,
        }
    }
}

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
}
