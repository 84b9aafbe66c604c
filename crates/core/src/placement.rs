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
    pick_host_in_group(hosts, need, az, exclude, None)
}

/// A server group's placement policy (Nova's four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GroupPolicy {
    /// All members on one host (a hard filter).
    Affinity,
    /// Members on different hosts, at most `max_server_per_host` each (a hard filter).
    AntiAffinity,
    /// Members preferably on one host (a weigher).
    SoftAffinity,
    /// Members preferably spread (a weigher).
    SoftAntiAffinity,
}

impl GroupPolicy {
    /// Every policy.
    pub const ALL: [GroupPolicy; 4] = [
        GroupPolicy::Affinity,
        GroupPolicy::AntiAffinity,
        GroupPolicy::SoftAffinity,
        GroupPolicy::SoftAntiAffinity,
    ];
    /// The wire name (`anti-affinity`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPolicy::Affinity => "affinity",
            GroupPolicy::AntiAffinity => "anti-affinity",
            GroupPolicy::SoftAffinity => "soft-affinity",
            GroupPolicy::SoftAntiAffinity => "soft-anti-affinity",
        }
    }
    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<GroupPolicy> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The group of the server being placed: its policy and how many of its
/// other members each host holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRule {
    /// The group's policy.
    pub policy: GroupPolicy,
    /// anti-affinity's `max_server_per_host` (1 unless the group's rules say).
    pub max_per_host: u32,
    /// Other members per host name.
    pub members_on: std::collections::BTreeMap<String, u32>,
}

impl GroupRule {
    fn on(&self, host: &str) -> u32 {
        self.members_on.get(host).copied().unwrap_or(0)
    }
    /// Nova's ServerGroupAffinityFilter / ServerGroupAntiAffinityFilter.
    fn passes(&self, host: &str) -> bool {
        match self.policy {
            GroupPolicy::Affinity => self.members_on.is_empty() || self.on(host) > 0,
            GroupPolicy::AntiAffinity => self.on(host) < self.max_per_host.max(1),
            GroupPolicy::SoftAffinity | GroupPolicy::SoftAntiAffinity => true,
        }
    }
    /// The soft weighers: more members is better for soft-affinity, fewer
    /// for soft-anti-affinity; the hard policies weigh nothing.
    fn weight(&self, host: &str) -> i64 {
        match self.policy {
            GroupPolicy::SoftAffinity => self.on(host) as i64,
            GroupPolicy::SoftAntiAffinity => -(self.on(host) as i64),
            _ => 0,
        }
    }
}

/// [`pick_host`] for a member of a server group: hosts the group's hard
/// policy refuses are filtered out, and a soft policy's weight comes before
/// free RAM.
pub fn pick_host_in_group<'a>(
    hosts: &'a [HostCandidate],
    need: &Resources,
    az: Option<&str>,
    exclude: Option<&str>,
    group: Option<&GroupRule>,
) -> Option<&'a HostCandidate> {
    let weight = |h: &HostCandidate| group.map_or(0, |g| g.weight(&h.name));
    hosts
        .iter()
        .filter(|h| h.up)
        .filter(|h| az.is_none_or(|z| h.availability_zone == z))
        .filter(|h| exclude != Some(h.name.as_str()))
        .filter(|h| h.capacity.minus(&h.used).fits(need))
        .filter(|h| group.is_none_or(|g| g.passes(&h.name)))
        .max_by(|a, b| {
            let fa = a.capacity.minus(&a.used);
            let fb = b.capacity.minus(&b.used);
            weight(a)
                .cmp(&weight(b))
                .then(fa.ram_mb.cmp(&fb.ram_mb))
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

    #[test]
    fn group_policies_filter_and_weigh() {
        let hosts = vec![
            h("a", (8, 4096, 100), (0, 0, 0), true),
            h("b", (8, 4096, 100), (0, 1000, 0), true),
        ];
        let need = Resources {
            vcpus: 1,
            ram_mb: 512,
            disk_gb: 1,
        };
        let rule = |policy, max, on: &[(&str, u32)]| GroupRule {
            policy,
            max_per_host: max,
            members_on: on.iter().map(|(h, n)| (h.to_string(), *n)).collect(),
        };
        let pick = |g: &GroupRule| {
            pick_host_in_group(&hosts, &need, None, None, Some(g)).map(|h| h.name.as_str())
        };
        // no members yet: every policy takes the most free RAM
        for p in GroupPolicy::ALL {
            assert_eq!(pick(&rule(p, 1, &[])), Some("a"), "{p:?}");
        }
        assert_eq!(
            pick(&rule(GroupPolicy::Affinity, 1, &[("b", 1)])),
            Some("b")
        );
        assert_eq!(
            pick(&rule(GroupPolicy::AntiAffinity, 1, &[("a", 1)])),
            Some("b")
        );
        assert_eq!(
            pick(&rule(GroupPolicy::AntiAffinity, 1, &[("a", 1), ("b", 1)])),
            None
        );
        assert_eq!(
            pick(&rule(GroupPolicy::AntiAffinity, 2, &[("a", 1), ("b", 1)])),
            Some("a")
        );
        assert_eq!(
            pick(&rule(GroupPolicy::SoftAffinity, 1, &[("b", 1)])),
            Some("b")
        );
        assert_eq!(
            pick(&rule(
                GroupPolicy::SoftAntiAffinity,
                1,
                &[("a", 2), ("b", 1)]
            )),
            Some("b")
        );
        // soft-anti-affinity still places when every host has a member
        assert_eq!(
            pick(&rule(
                GroupPolicy::SoftAntiAffinity,
                1,
                &[("a", 1), ("b", 1)]
            )),
            Some("a")
        );
        // affinity to a host that cannot take it: no host
        assert_eq!(
            pick_host_in_group(
                &hosts,
                &need,
                None,
                Some("b"),
                Some(&rule(GroupPolicy::Affinity, 1, &[("b", 1)]))
            ),
            None
        );
        assert_eq!(
            GroupPolicy::parse("soft-anti-affinity"),
            Some(GroupPolicy::SoftAntiAffinity)
        );
        assert_eq!(GroupPolicy::parse("legacy"), None);
    }
}
