//! Nova's os-interface: ports plugged into and out of a server while it exists.
//!
//! Attach (as Nova's `attach_interface`, synchronous): the port (brought, or made on the
//! requested network, or on the project's only network) is bound to the server, the server's
//! host gets its tap (`net_sync`, also the DHCP host entry), then the host agent plugs the NIC
//! (`attach_nic`: PCI hot-plug into a running VM, the spec of a stopped one). A failed plug
//! undoes the binding (Nova's `_deallocate_port_for_instance`). Detach unplugs first
//! (`detach_nic`, idempotent), then deletes a port the attach made or unbinds a brought one
//! (which keeps its floating IP, as a Neutron port does), then pushes the host again.
//!
//! [`ServerNic`] remembers, per port, whether the user brought it and the PCI slot the VM's NIC
//! has, so that migrations and later boots rebuild the same device layout.

use lifeboat_core::{Actor, FloatingIp, Network, Port, Server};
use lifeboat_hypervisor::{Nic, NicSlot};
use lifeboat_store::Record;
use serde::{Deserialize, Serialize};

use super::neutron::{NetworkAttrs, PortAttrs};
use crate::{ComputeError, Engine};

/// A port's place on its server: who made it and its NIC's PCI slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerNic {
    /// Port id.
    pub id: String,
    /// The server it is plugged into.
    pub server_id: String,
    /// The user brought the port (unbound, not deleted, when it leaves the server); None: as
    /// the server's create request says.
    #[serde(default)]
    pub brought: Option<bool>,
    /// PCI slot of its NIC, once known (see `lifeboat_hypervisor::Nic::pci_slot`).
    #[serde(default)]
    pub slot: Option<u8>,
}

impl Record for ServerNic {
    const KIND: &'static str = "server_nic";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// What an attach asks for (Nova's `interfaceAttachment`).
#[derive(Debug, Clone, Default)]
pub(crate) struct AttachRequest {
    pub network_id: Option<String>,
    pub port_id: Option<String>,
    pub fixed_ip: Option<String>,
}

impl Engine {
    /// The NIC slot recorded for `port_id` on `server_id`.
    pub(crate) async fn nic_slot(
        &self,
        server_id: &str,
        port_id: &str,
    ) -> Result<Option<u8>, ComputeError> {
        Ok(self
            .inner
            .store
            .get::<ServerNic>(port_id)
            .await?
            .filter(|r| r.server_id == server_id)
            .and_then(|r| r.slot))
    }

    /// Whether the user brought `port_id` to the server (per its [`ServerNic`] record).
    pub(crate) async fn brought_by_attach(&self, server_id: &str, port_id: &str) -> bool {
        matches!(
            self.inner.store.get::<ServerNic>(port_id).await,
            Ok(Some(r)) if r.server_id == server_id && r.brought == Some(true)
        )
    }

    /// Stores the NIC slots a host agent reported for the server's ports.
    async fn save_slots(&self, server_id: &str, slots: &[NicSlot]) -> Result<(), ComputeError> {
        for sl in slots {
            let mut r = match self.inner.store.get::<ServerNic>(&sl.port_id).await? {
                Some(r) if r.server_id == server_id => r,
                _ => ServerNic {
                    id: sl.port_id.clone(),
                    server_id: server_id.to_string(),
                    brought: None,
                    slot: None,
                },
            };
            if r.slot != Some(sl.slot) {
                r.slot = Some(sl.slot);
                self.inner.store.put(&r).await?;
            }
        }
        Ok(())
    }

    /// The driver's NIC of a port.
    pub(crate) async fn nic_of(&self, server_id: &str, p: &Port) -> Result<Nic, ComputeError> {
        let net: Network = self.inner.store.must_get(&p.network_id).await?;
        let prefix = lifeboat_core::parse_cidr(&net.cidr)
            .map(|c| c.1)
            .unwrap_or(24);
        Ok(Nic {
            port_id: p.id.clone(),
            mac: p.mac_address.clone(),
            ip: p.fixed_ip.clone(),
            prefix,
            gateway: net.gateway,
            pci_slot: self.nic_slot(server_id, &p.id).await?,
        })
    }

    /// The network an attach without a network or port goes to: the only one the project can
    /// use (its own networks and the shared ones), as Nova picks it.
    async fn only_network(&self, actor: &Actor, s: &Server) -> Result<Network, ComputeError> {
        let _ = actor;
        let mut usable = self.usable_networks(&s.project_id).await?;
        match usable.len() {
            0 => Err(ComputeError::BadRequest(format!(
                "No specific network was requested and none are available for project '{}'.",
                s.project_id
            ))),
            1 => Ok(usable.remove(0)),
            _ => Err(ComputeError::BadRequest(
                "Multiple possible networks found, use a Network ID to be more specific.".into(),
            )),
        }
    }

    /// The networks project `project` can boot on without naming one, as Nova's
    /// `_get_available_networks` lists them: its own (not external) and the shared ones.
    pub(crate) async fn usable_networks(
        &self,
        project: &str,
    ) -> Result<Vec<Network>, ComputeError> {
        let all: Vec<Network> = self.inner.store.list().await?;
        let mut usable = vec![];
        for n in all {
            let attrs: Option<NetworkAttrs> = self.inner.store.get(&n.id).await?;
            let shared = match &attrs {
                Some(a) => a.shared,
                // A network without Neutron attributes and without an owner is one of the
                // bootstrap networks: `private` is shared, `public` is external.
                None => n.project_id.is_none() && !n.external,
            };
            let own = n.project_id.as_deref() == Some(project);
            if shared || (own && !n.external) {
                usable.push(n);
            }
        }
        usable.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(usable)
    }

    /// Attaches an interface to a server the action table admitted (see the module docs);
    /// returns the port id.
    pub(crate) async fn attach_interface(
        &self,
        actor: &Actor,
        s: &Server,
        req: AttachRequest,
    ) -> Result<String, ComputeError> {
        if req.network_id.is_some() && req.port_id.is_some() {
            return Err(ComputeError::BadRequest(
                "Must not input both network_id and port_id".into(),
            ));
        }
        if req.fixed_ip.is_some() && req.network_id.is_none() {
            return Err(ComputeError::BadRequest(
                "Must input network_id when request IP address".into(),
            ));
        }
        let (port, brought) = match &req.port_id {
            Some(pid) => {
                let nf = || ComputeError::NotFound {
                    kind: "Port id",
                    id: pid.clone(),
                };
                let mut p: Port = self.inner.store.get(pid).await?.ok_or_else(nf)?;
                if !actor.can_see(&p.project_id) {
                    return Err(nf());
                }
                let attrs: Option<PortAttrs> = self.inner.store.get(pid).await?;
                let other_device = attrs.as_ref().is_some_and(|a| !a.device_id.is_empty());
                if p.server_id.is_some() || other_device {
                    return Err(ComputeError::Conflict(format!(
                        "Port {pid} is still in use."
                    )));
                }
                p.server_id = Some(s.id.clone());
                self.inner.store.put(&p).await?;
                (p, true)
            }
            None => {
                let net = match &req.network_id {
                    Some(n) => {
                        let net: Option<Network> = self.inner.store.get(n).await?;
                        let net = net
                            .filter(|x| x.project_id.as_ref().is_none_or(|p| actor.can_see(p)))
                            .ok_or_else(|| ComputeError::NotFound {
                                kind: "Network",
                                id: n.clone(),
                            })?;
                        if net.external && !actor.is_admin() {
                            return Err(ComputeError::Forbidden(format!(
                                "It is not allowed to create an interface on external network {n}"
                            )));
                        }
                        net
                    }
                    None => self.only_network(actor, s).await?,
                };
                if net.cidr.is_empty() {
                    return Err(ComputeError::BadRequest(format!(
                        "Network {} requires a subnet in order to boot instances on.",
                        net.id
                    )));
                }
                let p = match self.new_port(&net, s, req.fixed_ip.as_deref()).await {
                    Ok(p) => p,
                    Err(ComputeError::Conflict(m)) if m.starts_with("Fixed IP") => {
                        return Err(ComputeError::Conflict(format!(
                            "Fixed IP address {} is already in use on instance {}.",
                            req.fixed_ip.as_deref().unwrap_or_default(),
                            s.id
                        )))
                    }
                    Err(ComputeError::Conflict(m)) if m.starts_with("No more IP") => {
                        return Err(ComputeError::BadRequest(format!(
                            "No fixed IP addresses available for network: {}",
                            net.id
                        )))
                    }
                    Err(e) => return Err(e),
                };
                (p, false)
            }
        };
        self.inner
            .store
            .put(&ServerNic {
                id: port.id.clone(),
                server_id: s.id.clone(),
                brought: Some(brought),
                slot: None,
            })
            .await?;
        match self.plug(s, &port).await {
            Ok(()) => {
                self.refresh_attachments(&s.id).await?;
                Ok(port.id)
            }
            Err(e) => {
                tracing::warn!(server = %s.id, port = %port.id, "attach interface failed: {e}");
                self.unbind(s, &port, brought).await?;
                self.dataplane_best_effort().await;
                Err(ComputeError::Internal(format!(
                    "Failed to attach network adapter device to {}: {e}",
                    s.id
                )))
            }
        }
    }

    /// The port's tap on the server's host, then its NIC in the VM.
    async fn plug(&self, s: &Server, port: &Port) -> Result<(), ComputeError> {
        let host = s.host.clone().unwrap_or_default();
        self.refresh_attachments(&s.id).await?;
        self.sync_dataplane_for(&host, None).await?;
        let nic = self.nic_of(&s.id, port).await?;
        let slots = self
            .agent_for(&host)
            .await?
            .attach_nic(&s.instance_name, &nic)
            .await?;
        self.save_slots(&s.id, &slots).await
    }

    /// A port leaves a server: a port Lifeboat made is deleted (with its floating IPs'
    /// association), a brought one is unbound and keeps its floating IP.
    async fn unbind(&self, s: &Server, port: &Port, brought: bool) -> Result<(), ComputeError> {
        if brought {
            if let Some(mut p) = self.inner.store.get::<Port>(&port.id).await? {
                if p.server_id.as_deref() == Some(s.id.as_str()) {
                    p.server_id = None;
                    self.inner.store.put(&p).await?;
                }
            }
        } else {
            for mut f in self.inner.store.list_by_ref::<FloatingIp>(&port.id).await? {
                f.port_id = None;
                self.inner.store.put(&f).await?;
            }
            self.inner.store.delete::<Port>(&port.id).await?;
        }
        if let Some(r) = self.inner.store.get::<ServerNic>(&port.id).await? {
            if r.server_id == s.id {
                self.inner.store.delete::<ServerNic>(&port.id).await?;
            }
        }
        match self.refresh_attachments(&s.id).await {
            Ok(_) | Err(ComputeError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Detaches port `port_id` from a server the action table admitted (see the module docs).
    pub(crate) async fn detach_interface(
        &self,
        s: &Server,
        port_id: &str,
    ) -> Result<(), ComputeError> {
        let ports: Vec<Port> = self.inner.store.list_by_ref(&s.id).await?;
        let port =
            ports
                .into_iter()
                .find(|p| p.id == port_id)
                .ok_or_else(|| ComputeError::NotFound {
                    kind: "Port id",
                    id: port_id.to_string(),
                })?;
        let host = s.host.clone().unwrap_or_default();
        let slots = self
            .agent_for(&host)
            .await?
            .detach_nic(&s.instance_name, port_id)
            .await
            .map_err(|e| {
                tracing::warn!(server = %s.id, port = %port_id, "detach interface failed: {e}");
                ComputeError::Internal(format!(
                    "Failed to detach network adapter device from {}: {e}",
                    s.id
                ))
            })?;
        let brought = self.brought_ports(s).await?.contains(&port.id)
            || self.brought_by_attach(&s.id, &port.id).await;
        self.unbind(s, &port, brought).await?;
        self.save_slots(&s.id, &slots).await?;
        self.dataplane_best_effort().await;
        Ok(())
    }
}

/// The `AttachInterface` request's handler (see `lifeboat_core::server_actions!`).
pub(crate) async fn attach(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: lifeboat_core::Action,
    network_id: Option<String>,
    port_id: Option<String>,
    fixed_ip: Option<String>,
) -> Result<crate::ActionOutcome, ComputeError> {
    let req = AttachRequest {
        network_id,
        port_id,
        fixed_ip,
    };
    let port_id = e.attach_interface(actor, &s, req).await?;
    e.log_short(
        actor,
        &s,
        "attach_interface",
        &format!("port {port_id} attached"),
    )
    .await;
    Ok(crate::ActionOutcome::InterfaceAttached { port_id })
}

/// The `DetachInterface` request's handler.
pub(crate) async fn detach(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: lifeboat_core::Action,
    port_id: String,
) -> Result<crate::ActionOutcome, ComputeError> {
    e.detach_interface(&s, &port_id).await?;
    e.log_short(
        actor,
        &s,
        "detach_interface",
        &format!("port {port_id} detached"),
    )
    .await;
    Ok(crate::ActionOutcome::Done)
}
