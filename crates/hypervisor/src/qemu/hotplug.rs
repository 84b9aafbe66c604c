//! NIC hot-plug (Nova's os-interface): a running VM gets a new `virtio-net-pci` on a free PCI
//! slot of the `pc` machine's bus (ACPI PCI hot-plug, which the guest kernel handles), backed
//! by a queue of the port's tap in the host's data-plane namespace handed to qemu over QMP
//! (`getfd` with SCM_RIGHTS, then `netdev_add type=tap,fd=<name>`); a stopped VM gets it at its
//! next boot. Unplugging is `device_del`, which completes when the guest released the device
//! (`DEVICE_DELETED`), then `netdev_del`.
//!
//! Slots: NICs defined at create are placed by qemu in command-line order (low slots);
//! hot-plugged ones take the first free slot from 0x10 up. After any change the slot of every
//! NIC is written into the spec ([`crate::Nic::pci_slot`]) and returned to the manager, which
//! keeps them with the ports: a migration target or the next boot then builds exactly the same
//! device layout (a migration stream names devices by their PCI address).

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::time::Duration;

use serde_json::{json, Value};

use super::net::NicBackend;
use super::qmp::{Qmp, QmpError};
use super::{qmp_err, QemuDriver};
use crate::{HvError, HvResult, Nic, NicSlot, VmSpec};

/// First and last PCI slot for hot-plugged NICs.
const FIRST_SLOT: u8 = 0x10;
const LAST_SLOT: u8 = 0x1f;
/// How long the guest may take to release an unplugged NIC (TCG guests are slow).
const UNPLUG_WAIT: Duration = Duration::from_secs(60);

/// A virtio NIC of a running qemu.
#[derive(Debug, Clone)]
struct LiveNic {
    /// QOM path (`/machine/peripheral/<id>` or `/machine/peripheral-anon/device[N]`).
    path: String,
    mac: String,
    slot: u8,
    netdev: String,
}

/// The virtio NICs of the running qemu, from QOM (works for NICs given on the command line
/// without an id and for hot-plugged ones alike).
async fn live_nics(q: &mut Qmp) -> Result<Vec<LiveNic>, QmpError> {
    let mut out = vec![];
    for base in ["/machine/peripheral", "/machine/peripheral-anon"] {
        let children = q.execute("qom-list", Some(json!({ "path": base }))).await?;
        for c in children.as_array().into_iter().flatten() {
            if c["type"] != "child<virtio-net-pci>" {
                continue;
            }
            let path = format!("{base}/{}", c["name"].as_str().unwrap_or_default());
            let get = |prop: &str| json!({"path": path, "property": prop});
            let mac = q.execute("qom-get", Some(get("mac"))).await?;
            let devfn = q.execute("qom-get", Some(get("addr"))).await?;
            let netdev = q.execute("qom-get", Some(get("netdev"))).await?;
            out.push(LiveNic {
                path: path.clone(),
                mac: mac.as_str().unwrap_or_default().to_ascii_lowercase(),
                slot: (devfn.as_u64().unwrap_or(0) >> 3) as u8,
                netdev: netdev.as_str().unwrap_or_default().to_string(),
            });
        }
    }
    Ok(out)
}

/// Slots in use on bus 0 (every device, not only NICs).
async fn used_slots(q: &mut Qmp) -> Result<BTreeSet<u8>, QmpError> {
    let r = q.execute("query-pci", None).await?;
    Ok(r.as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["bus"] == 0)
        .flat_map(|b| b["devices"].as_array().cloned().unwrap_or_default())
        .filter_map(|d| d["slot"].as_u64().map(|s| s as u8))
        .collect())
}

/// Copies the live slots into the spec's NICs (by MAC) and returns every known slot.
fn record_slots(spec: &mut VmSpec, live: Option<&[LiveNic]>) -> Vec<NicSlot> {
    for n in &mut spec.nics {
        if let Some(l) = live
            .into_iter()
            .flatten()
            .find(|l| l.mac.eq_ignore_ascii_case(&n.mac))
        {
            n.pci_slot = Some(l.slot);
        }
    }
    spec.nics
        .iter()
        .filter_map(|n| {
            n.pci_slot.map(|slot| NicSlot {
                port_id: n.port_id.clone(),
                slot,
            })
        })
        .collect()
}

fn ids(port_id: &str) -> (String, String) {
    let short: String = port_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    (format!("hnet-{short}"), format!("hnic-{short}"))
}

/// Whether a process runs the VM and in which run state; refuses states a NIC cannot change in.
async fn running(d: &QemuDriver, name: &str, st: &mut super::DriverState) -> HvResult<bool> {
    if st.suspended {
        return Err(super::invalid(
            name,
            "suspended",
            "change its network interfaces",
        ));
    }
    if st.incoming.is_some() {
        return Err(super::invalid(
            name,
            "waiting for a migration",
            "change its network interfaces",
        ));
    }
    Ok(d.live_state(name, st).await?.is_some())
}

/// See [`crate::Hypervisor::attach_nic`].
pub(super) async fn attach(d: &QemuDriver, name: &str, nic: &Nic) -> HvResult<Vec<NicSlot>> {
    let lock = d.op_lock(name);
    let _g = lock.lock().await;
    let (mut spec, mut st) = d.load(name)?;
    if st.offloaded {
        return Err(super::invalid(name, "offloaded", "attach an interface"));
    }
    let live = running(d, name, &mut st).await?;
    let mac = nic.mac.to_ascii_lowercase();
    if !live {
        if !spec.nics.iter().any(|n| n.port_id == nic.port_id) {
            let taken: BTreeSet<u8> = spec.nics.iter().filter_map(|n| n.pci_slot).collect();
            let slot = (FIRST_SLOT..=LAST_SLOT)
                .find(|s| !taken.contains(s))
                .ok_or_else(|| HvError::Other(format!("{name}: no free PCI slot for a NIC")))?;
            let mut n = nic.clone();
            n.pci_slot = Some(slot);
            spec.nics.push(n);
            d.save_spec(&spec)?;
        }
        return Ok(record_slots(&mut spec, None));
    }
    let mut q = d.qmp(name).await?;
    let nics = live_nics(&mut q).await.map_err(|e| qmp_err(name, e))?;
    if !nics.iter().any(|l| l.mac == mac) {
        let used = used_slots(&mut q).await.map_err(|e| qmp_err(name, e))?;
        let taken: BTreeSet<u8> = spec.nics.iter().filter_map(|n| n.pci_slot).collect();
        let slot = (FIRST_SLOT..=LAST_SLOT)
            .find(|s| !used.contains(s) && !taken.contains(s))
            .ok_or_else(|| HvError::Other(format!("{name}: no free PCI slot for a NIC")))?;
        plug(d, &mut q, name, nic, slot).await?;
    }
    let nics = live_nics(&mut q).await.map_err(|e| qmp_err(name, e))?;
    if !spec.nics.iter().any(|n| n.port_id == nic.port_id) {
        spec.nics.push(nic.clone());
    }
    let slots = record_slots(&mut spec, Some(&nics));
    d.save_spec(&spec)?;
    tracing::info!(vm = %name, port = %nic.port_id, "nic attached");
    Ok(slots)
}

async fn plug(d: &QemuDriver, q: &mut Qmp, name: &str, nic: &Nic, slot: u8) -> HvResult<()> {
    let (netdev, dev) = ids(&nic.port_id);
    // A netdev left by an earlier attempt that never got its device.
    let _ = q.execute("netdev_del", Some(json!({ "id": netdev }))).await;
    let backend = d.inner.net.backends(std::slice::from_ref(nic));
    let args: Value = match &backend[0] {
        NicBackend::User { .. } => json!({"type": "user", "id": netdev, "restrict": true}),
        NicBackend::Tap { ns, tap, .. } => {
            let fd = lifeboat_hostnet::tap::open_queue(ns, tap).map_err(|e| {
                HvError::Other(format!(
                    "port tap {tap} in {ns} (is the port plugged on this host?): {e}"
                ))
            })?;
            let fdname = format!("fd-{netdev}");
            q.send_fd(&fdname, fd.as_fd())
                .await
                .map_err(|e| qmp_err(name, e))?;
            json!({"type": "tap", "id": netdev, "fd": fdname})
        }
    };
    q.execute("netdev_add", Some(args))
        .await
        .map_err(|e| qmp_err(name, e))?;
    let dev_args = json!({
        "driver": "virtio-net-pci",
        "id": dev,
        "netdev": netdev,
        "mac": nic.mac,
        "bus": "pci.0",
        "addr": format!("0x{slot:x}"),
    });
    if let Err(e) = q.execute("device_add", Some(dev_args)).await {
        let _ = q.execute("netdev_del", Some(json!({ "id": netdev }))).await;
        return Err(qmp_err(name, e));
    }
    Ok(())
}

/// See [`crate::Hypervisor::detach_nic`].
pub(super) async fn detach(d: &QemuDriver, name: &str, port_id: &str) -> HvResult<Vec<NicSlot>> {
    let lock = d.op_lock(name);
    let _g = lock.lock().await;
    let (mut spec, mut st) = d.load(name)?;
    let Some(idx) = spec.nics.iter().position(|n| n.port_id == port_id) else {
        return Ok(record_slots(&mut spec, None));
    };
    let mac = spec.nics[idx].mac.to_ascii_lowercase();
    if st.offloaded || !running(d, name, &mut st).await? {
        spec.nics.remove(idx);
        d.save_spec(&spec)?;
        return Ok(record_slots(&mut spec, None));
    }
    let mut q = d.qmp(name).await?;
    let nics = live_nics(&mut q).await.map_err(|e| qmp_err(name, e))?;
    if let Some(l) = nics.iter().find(|l| l.mac == mac) {
        q.execute("device_del", Some(json!({ "id": l.path })))
            .await
            .map_err(|e| qmp_err(name, e))?;
        let path = l.path.clone();
        q.wait_event("DEVICE_DELETED", UNPLUG_WAIT, |ev| {
            ev["data"]["path"].as_str() == Some(path.as_str())
        })
        .await
        .map_err(|e| match e {
            QmpError::Timeout(_) => HvError::Timeout(format!(
                "{name}: the guest did not release the NIC of port {port_id} within {UNPLUG_WAIT:?}"
            )),
            e => qmp_err(name, e),
        })?;
        let _ = q
            .execute("netdev_del", Some(json!({ "id": l.netdev })))
            .await;
    }
    let nics = live_nics(&mut q).await.map_err(|e| qmp_err(name, e))?;
    spec.nics.remove(idx);
    let slots = record_slots(&mut spec, Some(&nics));
    d.save_spec(&spec)?;
    tracing::info!(vm = %name, port = %port_id, "nic detached");
    Ok(slots)
}
