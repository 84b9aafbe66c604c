use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use crate::placement::Resources;

/// A flavor: the size of a server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Flavor {
    /// Flavor id (string, as in Nova).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub ram: u64,
    /// Root disk in GiB.
    pub disk: u64,
    /// Ephemeral disk in GiB.
    pub ephemeral: u64,
    /// Swap in MiB (0 = none).
    pub swap: u64,
    /// RX/TX factor.
    pub rxtx_factor: f64,
    /// Visible to every project.
    pub is_public: bool,
    /// Disabled flavors cannot be used for new servers.
    pub disabled: bool,
    /// Free-form description (microversion 2.55).
    pub description: Option<String>,
    /// Extra specs.
    pub extra_specs: BTreeMap<String, String>,
}

impl Flavor {
    /// Resources a server of this flavor takes on a host.
    pub fn resources(&self) -> Resources {
        Resources {
            vcpus: self.vcpus,
            ram_mb: self.ram,
            disk_gb: self.disk + self.ephemeral + self.swap.div_ceil(1024),
        }
    }

    /// The built-in flavors of a new installation (sized for tiny test guests).
    pub fn defaults() -> Vec<Flavor> {
        let mk = |id: &str, name: &str, vcpus, ram, disk| Flavor {
            id: id.into(),
            name: name.into(),
            vcpus,
            ram,
            disk,
            ephemeral: 0,
            swap: 0,
            rxtx_factor: 1.0,
            is_public: true,
            disabled: false,
            description: None,
            extra_specs: BTreeMap::new(),
        };
        vec![
            mk("1", "m1.nano", 1, 128, 1),
            mk("2", "m1.micro", 1, 192, 1),
            mk("3", "m1.tiny", 1, 256, 1),
            mk("4", "m1.small", 1, 512, 2),
            mk("5", "m1.medium", 2, 1024, 4),
            mk("6", "m1.large", 2, 2048, 8),
        ]
    }
}

/// The flavor as embedded in a server (Nova's instance flavor snapshot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlavorSnapshot {
    /// Id of the flavor at the time of create/resize.
    pub id: String,
    /// Name of the flavor (`original_name` in 2.47+).
    pub original_name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub ram: u64,
    /// Root disk in GiB.
    pub disk: u64,
    /// Ephemeral disk in GiB.
    pub ephemeral: u64,
    /// Swap in MiB.
    pub swap: u64,
    /// Extra specs.
    pub extra_specs: BTreeMap<String, String>,
}

impl From<&Flavor> for FlavorSnapshot {
    fn from(f: &Flavor) -> Self {
        FlavorSnapshot {
            id: f.id.clone(),
            original_name: f.name.clone(),
            vcpus: f.vcpus,
            ram: f.ram,
            disk: f.disk,
            ephemeral: f.ephemeral,
            swap: f.swap,
            extra_specs: f.extra_specs.clone(),
        }
    }
}

impl FlavorSnapshot {
    /// Resources on a host.
    pub fn resources(&self) -> Resources {
        Resources {
            vcpus: self.vcpus,
            ram_mb: self.ram,
            disk_gb: self.disk + self.ephemeral + self.swap.div_ceil(1024),
        }
    }
}
