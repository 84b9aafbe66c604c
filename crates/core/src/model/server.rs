use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::{FlavorSnapshot, Time};
use crate::states::{status_from_state, PowerState, Status, TaskState, VmState};

/// Who locked a server (admins bypass and can unlock any lock; an owner
/// cannot remove an admin's lock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LockedBy {
    /// The owning project.
    Owner,
    /// An administrator.
    Admin,
}

/// A fault recorded when a server goes to ERROR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Fault {
    /// HTTP-style code (500 for internal errors).
    pub code: u16,
    /// Short message.
    pub message: String,
    /// Details (shown to admins only).
    pub details: Option<String>,
    /// When.
    #[schema(value_type = String)]
    pub created: Time,
    /// Why, when a front words the fault itself (`message` is Lifeboat's
    /// sentence; absent in faults recorded before reasons were typed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FaultReason>,
}

/// A typed reason of a fault, which each front words in its vendor's terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultReason {
    /// No host could take the server.
    NoValidHost {
        /// The host that was asked for and cannot take it (None: no host
        /// of the pool has room).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
}

impl std::fmt::Display for FaultReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FaultReason::NoValidHost { host: Some(h) } => {
                write!(
                    f,
                    "no host can take the server: host {h} has no room for it"
                )
            }
            FaultReason::NoValidHost { host: None } => {
                f.write_str("no host can take the server: none has room for it")
            }
        }
    }
}

/// One network attachment of a server, denormalised from its port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attachment {
    /// Port id.
    pub port_id: String,
    /// Network id.
    pub network_id: String,
    /// Network name (key of `addresses`).
    pub network_name: String,
    /// MAC address.
    pub mac_address: String,
    /// Fixed IPv4.
    pub fixed_ip: String,
    /// The port's other fixed IPs (addFixedIp, a second subnet), in the port's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_fixed_ips: Vec<String>,
    /// Floating IPs associated with this port.
    pub floating_ips: Vec<String>,
}

/// A server: every attribute of OpenStack's `Server` resource that Lifeboat
/// keeps, plus what Lifeboat needs to manage it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Server {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description (2.19+).
    pub description: Option<String>,
    /// Owning project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// Flavor snapshot.
    pub flavor: FlavorSnapshot,
    /// Flavor before a resize, until confirm/revert.
    pub old_flavor: Option<FlavorSnapshot>,
    /// Image booted from.
    pub image_id: Option<String>,
    /// vm_state.
    pub vm_state: VmState,
    /// task_state (None when idle).
    pub task_state: Option<TaskState>,
    /// power_state.
    pub power_state: PowerState,
    /// vm_state to return to after a transient stable state (resize revert,
    /// unrescue, unshelve), Nova's `old_vm_state`.
    pub old_vm_state: Option<VmState>,
    /// Build progress 0–100.
    pub progress: u8,
    /// Host (compute host name).
    pub host: Option<String>,
    /// Hypervisor hostname (node).
    pub node: Option<String>,
    /// Host a migration/resize came from, until confirm/revert.
    pub source_host: Option<String>,
    /// Hypervisor instance name, `instance-%08x`.
    pub instance_name: String,
    /// Guest hostname.
    pub hostname: String,
    /// Availability zone the server is in.
    pub availability_zone: Option<String>,
    /// Zone requested at create (pinned).
    pub pinned_availability_zone: Option<String>,
    /// Config drive requested.
    pub config_drive: bool,
    /// Key pair name.
    pub key_name: Option<String>,
    /// Public key data copied from the key pair.
    pub key_data: Option<String>,
    /// Index in a multiple create.
    pub launch_index: u32,
    /// Reservation id of the create request.
    pub reservation_id: String,
    /// Locked.
    pub locked: bool,
    /// Who locked it.
    pub locked_by: Option<LockedBy>,
    /// Lock reason (2.73+).
    pub locked_reason: Option<String>,
    /// Metadata key/values.
    pub metadata: BTreeMap<String, String>,
    /// Tags (2.26+).
    pub tags: Vec<String>,
    /// Fault when in ERROR.
    pub fault: Option<Fault>,
    /// Base64 user data.
    pub user_data: Option<String>,
    /// accessIPv4.
    pub access_ipv4: String,
    /// accessIPv6.
    pub access_ipv6: String,
    /// AUTO or MANUAL.
    pub disk_config: String,
    /// Security group names.
    pub security_groups: Vec<String>,
    /// Network attachments.
    pub attachments: Vec<Attachment>,
    /// Server groups (at most one).
    pub server_groups: Vec<String>,
    /// Scheduler hints given at create.
    pub scheduler_hints: BTreeMap<String, serde_json::Value>,
    /// Root device name.
    pub root_device_name: String,
    /// Kernel image id, if any.
    pub kernel_id: Option<String>,
    /// Ramdisk image id, if any.
    pub ramdisk_id: Option<String>,
    /// Trusted certificate ids.
    pub trusted_image_certificates: Option<Vec<String>>,
    /// Whether an admin password was set at create/rebuild/changePassword
    /// (the password itself is never stored on the server).
    pub admin_password_set: bool,
    /// Created.
    #[schema(value_type = String)]
    pub created_at: Time,
    /// Updated.
    #[schema(value_type = String)]
    pub updated_at: Time,
    /// Launched.
    #[schema(value_type = Option<String>)]
    pub launched_at: Option<Time>,
    /// Terminated.
    #[schema(value_type = Option<String>)]
    pub terminated_at: Option<Time>,
    /// Soft-deleted at (for reclaim).
    #[schema(value_type = Option<String>)]
    pub deleted_at: Option<Time>,
    /// The workflow that owns the current task, if any.
    #[serde(default)]
    pub task_workflow: Option<String>,
    /// Row version for compare-and-set.
    pub version: i64,
}

impl Server {
    /// A new server record: BUILD (scheduling), no host, no ports, every
    /// optional attribute empty. Callers fill in what the request gives.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        project_id: impl Into<String>,
        user_id: impl Into<String>,
        flavor: &super::Flavor,
        now: Time,
    ) -> Server {
        let name = name.into();
        Server {
            id: id.into(),
            hostname: name.clone(),
            name,
            description: None,
            project_id: project_id.into(),
            user_id: user_id.into(),
            flavor: flavor.into(),
            old_flavor: None,
            image_id: None,
            vm_state: VmState::Building,
            task_state: Some(TaskState::Scheduling),
            power_state: PowerState::NoState,
            old_vm_state: None,
            progress: 0,
            host: None,
            node: None,
            source_host: None,
            instance_name: String::new(),
            availability_zone: None,
            pinned_availability_zone: None,
            config_drive: false,
            key_name: None,
            key_data: None,
            launch_index: 0,
            reservation_id: String::new(),
            locked: false,
            locked_by: None,
            locked_reason: None,
            metadata: BTreeMap::new(),
            tags: vec![],
            fault: None,
            user_data: None,
            access_ipv4: String::new(),
            access_ipv6: String::new(),
            disk_config: "MANUAL".into(),
            security_groups: vec!["default".into()],
            attachments: vec![],
            server_groups: vec![],
            scheduler_hints: BTreeMap::new(),
            root_device_name: "/dev/vda".into(),
            kernel_id: None,
            ramdisk_id: None,
            trusted_image_certificates: None,
            admin_password_set: false,
            created_at: now,
            updated_at: now,
            launched_at: None,
            terminated_at: None,
            deleted_at: None,
            task_workflow: None,
            version: 0,
        }
    }

    /// The API status.
    pub fn status(&self) -> Status {
        status_from_state(self.vm_state, self.task_state)
    }

    /// Addresses grouped by network name: `{net: [(addr, type)]}` with
    /// type `fixed` or `floating`.
    pub fn addresses(&self) -> BTreeMap<String, Vec<(String, &'static str, String)>> {
        let mut out: BTreeMap<String, Vec<(String, &'static str, String)>> = BTreeMap::new();
        for a in &self.attachments {
            let e = out.entry(a.network_name.clone()).or_default();
            e.push((a.fixed_ip.clone(), "fixed", a.mac_address.clone()));
            for x in &a.extra_fixed_ips {
                e.push((x.clone(), "fixed", a.mac_address.clone()));
            }
            for f in &a.floating_ips {
                e.push((f.clone(), "floating", a.mac_address.clone()));
            }
        }
        out
    }

    /// Nova's `hostId`: sha224(project_id + host) hex, empty without a host.
    pub fn host_id(&self) -> String {
        match &self.host {
            Some(h) => {
                use sha2::{Digest, Sha224};
                hex::encode(Sha224::digest(format!("{}{}", self.project_id, h)))
            }
            None => String::new(),
        }
    }
}
