use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Time;
use crate::placement::Resources;

/// A compute host: one host agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Host {
    /// Unique host name.
    pub name: String,
    /// Agent endpoint: `local` for the in-process agent, or `http://127.0.0.x:port`.
    pub endpoint: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Hypervisor driver name (qemu, fake).
    pub driver: String,
    /// Accelerator in use (kvm, tcg, none).
    #[serde(default)]
    pub accelerator: String,
    /// Whether the scheduler may place servers here.
    pub enabled: bool,
    /// Capacity offered.
    #[schema(value_type = Object)]
    pub capacity: Resources,
    /// Last heartbeat.
    pub last_seen: Option<Time>,
}
