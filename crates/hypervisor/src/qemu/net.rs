//! The VMs' NICs on the host's network data plane (`lifeboat-hostnet`).
//!
//! With a data plane ([`DataplaneConfig`], `--dataplane NAME` on `serve`/`agent`) the driver owns
//! the namespace `lbh-<NAME>`: the manager pushes the host's whole desired network state with
//! [`crate::Hypervisor::net_sync`] (bridges, one tap per port with the port's MAC, security
//! groups, the DHCP/metadata services and routers of the networks this host serves), and each
//! NIC of a VM is `-netdev tap,fd=N` on its port's tap: the driver opens a queue of the tap in
//! the namespace and hands the fd to qemu, which itself stays in the root namespace (so QMP,
//! NBD and migration addresses on 127.0.0.x keep working). The guest is told
//! `lifeboat.ip=dhcp` and gets its fixed IP from the network's dnsmasq.
//!
//! Without a data plane (a host agent started without `--dataplane`, e.g. unprivileged or in
//! tests that need no network) `net_sync` does nothing and every NIC falls back to
//! `-netdev user,restrict=on`: the guest has a NIC with the port's MAC but no network.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use lifeboat_hostnet::metadata::StaticMetadata;
use lifeboat_hostnet::{names, Fabric, HostNetwork, HostOptions};
use tokio::sync::OnceCell;

use crate::{HostNetState, HvError, HvResult, Nic};

/// The data plane of a qemu host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Name of the host's network namespace (`lbh-<name>`).
    pub name: String,
    /// Fabric joining the host agents of this machine (`lbf-<fabric>`); VXLAN between them.
    pub fabric: Option<String>,
}

/// How one NIC is backed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicBackend {
    /// `-netdev user,restrict=on` (no data plane on this host).
    User {
        /// Guest MAC.
        mac: String,
    },
    /// A tap of the port in the host's namespace.
    Tap {
        /// Guest MAC (the port's).
        mac: String,
        /// Namespace holding the tap.
        ns: String,
        /// Tap name.
        tap: String,
    },
}

impl NicBackend {
    /// The guest MAC.
    pub fn mac(&self) -> &str {
        match self {
            NicBackend::User { mac } | NicBackend::Tap { mac, .. } => mac,
        }
    }
}

/// The host's data plane, opened on first use.
pub(crate) struct NetPlane {
    cfg: Option<DataplaneConfig>,
    cell: OnceCell<Arc<Opened>>,
}

pub(crate) struct Opened {
    pub hn: HostNetwork,
    metadata: Arc<StaticMetadata>,
}

impl NetPlane {
    pub fn new(cfg: Option<DataplaneConfig>) -> NetPlane {
        NetPlane {
            cfg,
            cell: OnceCell::new(),
        }
    }

    async fn open(&self) -> HvResult<Option<Arc<Opened>>> {
        let Some(cfg) = &self.cfg else {
            return Ok(None);
        };
        let o = self
            .cell
            .get_or_try_init(|| async {
                let metadata = Arc::new(StaticMetadata::default());
                let hn = HostNetwork::open(
                    &cfg.name,
                    HostOptions {
                        run_dir: None,
                        metadata: Some(metadata.clone()),
                    },
                )
                .await
                .map_err(|e| HvError::Other(format!("network data plane {}: {e}", cfg.name)))?;
                if let Some(f) = &cfg.fabric {
                    let fabric = Fabric::open(f)
                        .await
                        .map_err(|e| HvError::Other(format!("fabric {f}: {e}")))?;
                    hn.join_fabric(&fabric)
                        .await
                        .map_err(|e| HvError::Other(format!("joining fabric {f}: {e}")))?;
                }
                Ok::<_, HvError>(Arc::new(Opened { hn, metadata }))
            })
            .await?;
        Ok(Some(o.clone()))
    }

    /// Applies the manager's desired state; false when this host has no data plane.
    pub async fn sync(&self, state: &HostNetState) -> HvResult<bool> {
        let Some(o) = self.open().await? else {
            return Ok(false);
        };
        *o.metadata.entries.lock().unwrap() = state
            .metadata
            .iter()
            .map(|m| (m.network_id.clone(), m.ip, m.instance.clone()))
            .collect();
        o.hn.sync(&state.desired)
            .await
            .map_err(|e| HvError::Other(format!("network sync: {e}")))?;
        Ok(true)
    }

    /// How each NIC is backed on this host.
    pub fn backends(&self, nics: &[Nic]) -> Vec<NicBackend> {
        nics.iter()
            .map(|n| match &self.cfg {
                Some(c) => NicBackend::Tap {
                    mac: n.mac.clone(),
                    ns: names::host_ns(&c.name),
                    tap: names::tap(&n.port_id),
                },
                None => NicBackend::User { mac: n.mac.clone() },
            })
            .collect()
    }
}

/// Opens one queue of every tap NIC (in the same order as `nics`; None for user NICs).
pub fn open_taps(nics: &[NicBackend]) -> HvResult<Vec<Option<OwnedFd>>> {
    nics.iter()
        .map(|n| match n {
            NicBackend::User { .. } => Ok(None),
            NicBackend::Tap { ns, tap, .. } => lifeboat_hostnet::tap::open_queue(ns, tap)
                .map(Some)
                .map_err(|e| {
                    HvError::Other(format!(
                        "port tap {tap} in {ns} (is the port plugged on this host?): {e}"
                    ))
                }),
        })
        .collect()
}

/// The `-netdev`/`-device` arguments of the NICs; `fds` from [`open_taps`], `slots` the PCI
/// slots fixed by hot-plugs (None: the next free one, in command-line order).
pub fn nic_args(nics: &[NicBackend], fds: &[Option<OwnedFd>], slots: &[Option<u8>]) -> Vec<String> {
    let mut a = Vec::new();
    for (i, n) in nics.iter().enumerate() {
        let netdev = match (n, fds.get(i).and_then(|f| f.as_ref())) {
            (NicBackend::Tap { .. }, Some(fd)) => {
                format!("tap,id=net{i},fd={}", fd.as_raw_fd())
            }
            // Rendering without fds (logs): the fd is filled in at spawn.
            (NicBackend::Tap { tap, .. }, None) => format!("tap,id=net{i},fd=<{tap}>"),
            (NicBackend::User { .. }, _) => format!("user,id=net{i},restrict=on"),
        };
        a.push("-netdev".to_string());
        a.push(netdev);
        a.push("-device".to_string());
        let addr = match slots.get(i).copied().flatten() {
            Some(slot) => format!(",addr=0x{slot:x}"),
            None => String::new(),
        };
        a.push(format!(
            "virtio-net-pci,netdev=net{i},mac={}{addr}",
            n.mac()
        ));
    }
    a
}

/// The kernel command line addition: DHCP on eth0 when the first NIC is on the data plane.
pub fn cmdline(nics: &[NicBackend]) -> &'static str {
    match nics.first() {
        Some(NicBackend::Tap { .. }) => " lifeboat.ip=dhcp",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_without_a_data_plane_are_user_mode() {
        let nics = vec![NicBackend::User {
            mac: "fa:16:3e:00:00:01".into(),
        }];
        assert_eq!(
            nic_args(&nics, &[None], &[]),
            vec![
                "-netdev",
                "user,id=net0,restrict=on",
                "-device",
                "virtio-net-pci,netdev=net0,mac=fa:16:3e:00:00:01"
            ]
        );
        assert_eq!(cmdline(&nics), "");
        let plane = NetPlane::new(Some(DataplaneConfig {
            name: "h1".into(),
            fabric: None,
        }));
        let b = plane.backends(&[Nic {
            port_id: "0123456789abcdef".into(),
            mac: "fa:16:3e:00:00:02".into(),
            ip: "10.0.0.2".into(),
            prefix: 24,
            gateway: "10.0.0.1".into(),
            pci_slot: None,
        }]);
        assert_eq!(
            b,
            vec![NicBackend::Tap {
                mac: "fa:16:3e:00:00:02".into(),
                ns: "lbh-h1".into(),
                tap: names::tap("0123456789abcdef"),
            }]
        );
        assert_eq!(cmdline(&b), " lifeboat.ip=dhcp");
    }
}
