//! Host placement: pick a host with room for a flavor.

use serde::{Deserialize, Serialize};

/// Resources a server needs or a host offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub ram_mb: u64,
    /// Disk in GiB.
    pub disk_gb: u64,
}

impl Resources {
    /// Whether `need` fits in `self`.
    pub fn fits(&self, need: &Resources) -> bool {
        self.vcpus >= need.vcpus && self.ram_mb >= need.ram_mb && self.disk_gb >= need.disk_gb
    }
    /// `self - other`, saturating.
    pub fn minus(&self, o: &Resources) -> Resources {
        Resources {
            vcpus: self.vcpus.saturating_sub(o.vcpus),
            ram_mb: self.ram_mb.saturating_sub(o.ram_mb),
            disk_gb: self.disk_gb.saturating_sub(o.disk_gb),
        }
    }
    /// `self + other`.
    pub fn plus(&self, o: &Resources) -> Resources {
        Resources {
            vcpus: self.vcpus + o.vcpus,
            ram_mb: self.ram_mb + o.ram_mb,
            disk_gb: self.disk_gb + o.disk_gb,
        }
    }
}

/// A candidate host as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCandidate {
    /// Host name.
    pub name: String,
    /// Availability zone of the host.
    pub availability_zone: String,
    /// Whether the host is up and enabled.
    pub up: bool,
    /// Capacity after allocation ratios.
    pub capacity: Resources,
    /// Sum of what is allocated to servers on it.
    pub used: Resources,
}

/// Picks the enabled host with room for `need` that has the most free RAM
/// (ties: most free vCPUs, then name). `az` restricts to one zone; `exclude`
/// removes a host (the source of a migration).
pub fn pick_host<'a>(
    hosts: &'a [HostCandidate],
    need: &Resources,
    az: Option<&str>,
    exclude: Option<&str>,
) -> Option<&'a HostCandidate> {
    hosts
        .iter()
        .filter(|h| h.up)
        .filter(|h| az.is_none_or(|z| h.availability_zone == z))
        .filter(|h| exclude != Some(h.name.as_str()))
        .filter(|h| h.capacity.minus(&h.used).fits(need))
        .max_by(|a, b| {
            let fa = a.capacity.minus(&a.used);
            let fb = b.capacity.minus(&b.used);
            fa.ram_mb
                .cmp(&fb.ram_mb)
                .then(fa.vcpus.cmp(&fb.vcpus))
                .then(b.name.cmp(&a.name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, cap: (u32, u64, u64), used: (u32, u64, u64), up: bool) -> HostCandidate {
        HostCandidate {
            name: name.into(),
            availability_zone: "nova".into(),
            up,
            capacity: Resources {
                vcpus: cap.0,
                ram_mb: cap.1,
                disk_gb: cap.2,
            },
            used: Resources {
                vcpus: used.0,
                ram_mb: used.1,
                disk_gb: used.2,
            },
        }
    }

    #[test]
    fn picks_most_free_ram_that_fits() {
        let hosts = vec![
            h("a", (8, 4096, 100), (0, 3000, 0), true),
            h("b", (8, 4096, 100), (0, 1000, 0), true),
            h("c", (8, 8192, 100), (0, 0, 0), false),
        ];
        let need = Resources {
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
        };
        assert_eq!(pick_host(&hosts, &need, None, None).unwrap().name, "b");
        assert_eq!(pick_host(&hosts, &need, None, Some("b")).unwrap().name, "a");
        let big = Resources {
            vcpus: 1,
            ram_mb: 4000,
            disk_gb: 1,
        };
        assert!(pick_host(&hosts, &big, None, None).is_none());
        assert!(pick_host(&hosts, &need, Some("other"), None).is_none());
    }
}
