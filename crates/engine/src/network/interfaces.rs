//! Nova's os-interface: ports plugged into and out of a server while it exists.
//!
//! Attach (as Nova's `attach_interface`, synchronous): the port (brought, or made on the
//! requested network, or on the project's only network) is bound to the server, the server's
//! host gets its tap (`net_sync`, also the DHCP host entry), then the host agent plugs the NIC
//! (`attach_nic`: PCI hot-plug into a running VM, the spec of a stopped one). A failed plug
//! undoes the binding (Nova's `_deallocate_port_for_instance`) and answers Nova's
//! `InterfaceAttachFailed`. Detach unplugs first (`detach_nic`, idempotent), then deletes a
//! port the attach made or unbinds a brought one (which keeps its floating IP, as a Neutron
//! port does), then pushes the host again; a failed unplug changes nothing and is recorded as
//! the instance action's error (Nova's detach is a cast: its caller has its 202).
//!
//! Crash safety: each change writes an [`InterfaceOp`] before its first side effect and
//! removes it after its last. At the next start (and with the periodic task while the host is
//! unreachable) an interrupted attach is undone (port released first, so no later boot brings
//! the NIC back; then unplugged) and an interrupted detach is finished.
//!
//! [`ServerNic`] remembers, per port, whether the user brought it and the PCI slot the VM's NIC
//! has, so that migrations and later boots rebuild the same device layout.

use lifeboat_core::{ids, Actor, FloatingIp, Network, Port, Server};
use lifeboat_hypervisor::{Nic, NicSlot};
use lifeboat_store::Record;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::neutron::{NetworkAttrs, PortAttrs};
use crate::{ComputeError, Engine, Resource};

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
    /// Its place in the server's create request (the NICs follow it: eth0 is the first);
    /// None for a port attached later (after those, by PCI slot).
    #[serde(default)]
    pub order: Option<u32>,
}

impl Record for ServerNic {
    const KIND: &'static str = "server_nic";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// An attach or detach under way, written before its first side effect and removed after
/// its last: what a crash in between left is settled at the next start
/// (`Engine::settle_interface_ops`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceOp {
    /// Port id.
    pub id: String,
    /// The server.
    pub server_id: String,
    /// Attach or detach.
    pub op: OpKind,
    /// Lifeboat made the port for the server (deleted when it leaves), else the user
    /// brought it (unbound, kept).
    pub made: bool,
}

impl Record for InterfaceOp {
    const KIND: &'static str = "interface_op";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// Marks an [`InterfaceOp`] as in flight in this process (in the runner's set of running
/// work, under `interface_op:<port>`), so the periodic settling leaves it alone.
struct InFlight {
    engine: Engine,
    key: String,
}

impl InFlight {
    fn new(engine: &Engine, port_id: &str) -> InFlight {
        let key = format!("interface_op:{port_id}");
        engine.inner.running.lock().unwrap().insert(key.clone());
        InFlight {
            engine: engine.clone(),
            key,
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.engine.inner.running.lock().unwrap().remove(&self.key);
    }
}

/// Which change an [`InterfaceOp`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// os-interface create.
    Attach,
    /// os-interface delete.
    Detach,
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
                    order: None,
                },
            };
            if r.slot != Some(sl.slot) {
                r.slot = Some(sl.slot);
                self.inner.store.put(&r).await?;
            }
        }
        Ok(())
    }

    /// The server's ports in NIC order: those of its create request as it listed them,
    /// then those attached later by PCI slot.
    pub(crate) async fn ports_in_order(&self, server_id: &str) -> Result<Vec<Port>, ComputeError> {
        let ports: Vec<Port> = self.inner.store.list_by_ref(server_id).await?;
        let mut keyed = Vec::with_capacity(ports.len());
        for (i, p) in ports.into_iter().enumerate() {
            let nic = self
                .inner
                .store
                .get::<ServerNic>(&p.id)
                .await?
                .filter(|r| r.server_id == server_id);
            let order = nic.as_ref().and_then(|n| n.order).unwrap_or(u32::MAX);
            let slot = nic.as_ref().and_then(|n| n.slot).unwrap_or(u8::MAX);
            keyed.push(((order, slot, i), p));
        }
        keyed.sort_by_key(|(k, _)| *k);
        Ok(keyed.into_iter().map(|(_, p)| p).collect())
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
    /// returns the port id. Nova's errors: 400 for a port of another project
    /// (`PortNotUsable`), 404 for a missing port or network, 409 for a port in use or an
    /// address taken, and `InterfaceAttachFailed` (500, "Failed to attach network adapter
    /// device to ...") when the plug fails, after the port is released again.
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
        // What the attach will do, checked before anything is written.
        enum Plan {
            Bring(Port),
            Make(Network),
        }
        let plan = match &req.port_id {
            Some(pid) => {
                let nf = || ComputeError::NotFound {
                    kind: Resource::Port,
                    id: pid.clone(),
                };
                let p: Port = self.inner.store.get(pid).await?.ok_or_else(nf)?;
                if !actor.can_see(&p.project_id) {
                    return Err(nf());
                }
                if p.project_id != s.project_id {
                    return Err(ComputeError::BadRequest(format!(
                        "Port {pid} not usable for instance {}.",
                        s.id
                    )));
                }
                let attrs: Option<PortAttrs> = self.inner.store.get(pid).await?;
                let other_device = attrs.as_ref().is_some_and(|a| !a.device_id.is_empty());
                if p.server_id.is_some() || other_device || self.op_pending(pid).await? {
                    return Err(ComputeError::Conflict(format!(
                        "Port {pid} is still in use."
                    )));
                }
                if p.fixed_ip.is_empty() {
                    return Err(ComputeError::BadRequest(format!(
                        "Port {pid} requires a FixedIP in order to be used."
                    )));
                }
                Plan::Bring(p)
            }
            None => {
                let net = match &req.network_id {
                    Some(n) => {
                        let net: Option<Network> = self.inner.store.get(n).await?;
                        let net = net
                            .filter(|x| x.project_id.as_ref().is_none_or(|p| actor.can_see(p)))
                            .ok_or_else(|| ComputeError::NotFound {
                                kind: Resource::Network,
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
                Plan::Make(net)
            }
        };
        // The intent first: a crash from here on is undone at the next start.
        let op = InterfaceOp {
            id: match &plan {
                Plan::Bring(p) => p.id.clone(),
                Plan::Make(_) => ids::uuid(),
            },
            server_id: s.id.clone(),
            op: OpKind::Attach,
            made: matches!(plan, Plan::Make(_)),
        };
        let _in_flight = InFlight::new(self, &op.id);
        self.inner.store.put(&op).await?;
        let port = match plan {
            Plan::Bring(mut p) => {
                p.server_id = Some(s.id.clone());
                if let Err(e) = self.inner.store.put(&p).await {
                    self.inner.store.delete::<InterfaceOp>(&op.id).await?;
                    return Err(e.into());
                }
                p
            }
            Plan::Make(net) => {
                let made = self
                    .new_port_with_id(&net, s, req.fixed_ip.as_deref(), &op.id)
                    .await;
                match made {
                    Ok(p) => p,
                    Err(e) => {
                        self.inner.store.delete::<InterfaceOp>(&op.id).await?;
                        return Err(match e {
                            ComputeError::Conflict(m) if m.starts_with("Fixed IP") => {
                                ComputeError::Conflict(format!(
                                    "Fixed IP address {} is already in use on instance {}.",
                                    req.fixed_ip.as_deref().unwrap_or_default(),
                                    s.id
                                ))
                            }
                            ComputeError::Conflict(m) if m.starts_with("No more IP") => {
                                ComputeError::BadRequest(format!(
                                    "No fixed IP addresses available for network: {}",
                                    net.id
                                ))
                            }
                            e => e,
                        });
                    }
                }
            }
        };
        self.inner
            .store
            .put(&ServerNic {
                id: port.id.clone(),
                server_id: s.id.clone(),
                brought: Some(!op.made),
                slot: None,
                order: None,
            })
            .await?;
        self.hang_at("attach_interface:bound").await;
        match self.plug(s, &port).await {
            Ok(()) => {
                self.hang_at("attach_interface:plugged").await;
                self.refresh_attachments(&s.id).await?;
                self.inner.store.delete::<InterfaceOp>(&op.id).await?;
                Ok(port.id)
            }
            Err(e) => {
                tracing::warn!(server = %s.id, port = %port.id, "attach interface failed: {e}");
                if let Err(u) = self.undo_attach(&op).await {
                    tracing::warn!(port = %port.id, "undo of the failed attach, retried later: {u}");
                }
                self.log_failed(
                    actor,
                    s,
                    "attach_interface",
                    &format!("port {} not attached: {e}", port.id),
                )
                .await;
                Err(ComputeError::Failed(format!(
                    "Failed to attach network adapter device to {}",
                    s.id
                )))
            }
        }
    }

    /// Whether an attach or detach of `port_id` is under way (or was interrupted and is
    /// not settled yet).
    async fn op_pending(&self, port_id: &str) -> Result<bool, ComputeError> {
        Ok(self
            .inner
            .store
            .get::<InterfaceOp>(port_id)
            .await?
            .is_some())
    }

    /// Test hook `attach_interface:bound`, ...: parks for good once the named side effect
    /// is durable, so that a SIGKILL there proves the recovery (`LIFEBOAT-HANG <point>`).
    async fn hang_at(&self, point: &str) {
        if self.inner.cfg.hang_at.as_deref() == Some(&format!("{point}:after")) {
            eprintln!("LIFEBOAT-HANG {point}:after");
            std::future::pending::<()>().await;
        }
    }

    /// Records a short action that failed (an instance action with an error, and an error
    /// event), as Nova's `wrap_instance_event` does.
    async fn log_failed(&self, actor: &Actor, s: &Server, kind: &str, message: &str) {
        let mut wf = match self.new_workflow(kind, Some(s), Some(&actor.user_id), json!({})) {
            Ok(wf) => wf,
            Err(e) => {
                tracing::warn!("no record of {kind}: {e}");
                return;
            }
        };
        wf.state = lifeboat_core::WorkflowState::Failed;
        wf.error = Some(message.to_string());
        let _ = self.inner.store.put_workflow(&wf).await;
        self.event(lifeboat_core::NewEvent {
            level: lifeboat_core::Level::Error,
            server_id: Some(s.id.clone()),
            project_id: Some(s.project_id.clone()),
            workflow_id: Some(wf.id),
            step: None,
            message: format!("{kind}: {message}"),
        })
        .await;
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
    /// association), a brought one is unbound and keeps its floating IP. Idempotent.
    async fn unbind(
        &self,
        server_id: &str,
        port_id: &str,
        brought: bool,
    ) -> Result<(), ComputeError> {
        if let Some(mut p) = self.inner.store.get::<Port>(port_id).await? {
            if p.server_id.as_deref() == Some(server_id) {
                if brought {
                    p.server_id = None;
                    self.inner.store.put(&p).await?;
                } else {
                    for mut f in self.inner.store.list_by_ref::<FloatingIp>(port_id).await? {
                        f.port_id = None;
                        self.inner.store.put(&f).await?;
                    }
                    self.inner.store.delete::<Port>(port_id).await?;
                }
            }
        }
        if let Some(r) = self.inner.store.get::<ServerNic>(port_id).await? {
            if r.server_id == server_id {
                self.inner.store.delete::<ServerNic>(port_id).await?;
            }
        }
        match self.refresh_attachments(server_id).await {
            Ok(_) | Err(ComputeError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Unplugs `port_id` from the server's VM (idempotent: a NIC or VM that is not there is
    /// fine); the slots left, if the VM is there.
    async fn unplug(&self, s: &Server, port_id: &str) -> Result<Vec<NicSlot>, ComputeError> {
        let Some(host) = s.host.clone() else {
            return Ok(vec![]);
        };
        let agent = self.agent_for(&host).await?;
        match agent.detach_nic(&s.instance_name, port_id).await {
            Ok(slots) => Ok(slots),
            Err(lifeboat_hypervisor::HvError::NotFound(_)) => Ok(vec![]),
            Err(e) => Err(e.into()),
        }
    }

    /// Undoes an attach: the port is released first (so no later boot brings its NIC
    /// back), then unplugged from the VM, then the intent is forgotten. Idempotent; an error
    /// (the host unreachable) leaves the intent for the next try.
    async fn undo_attach(&self, op: &InterfaceOp) -> Result<(), ComputeError> {
        self.unbind(&op.server_id, &op.id, !op.made).await?;
        if let Some(s) = self.inner.store.get_server(&op.server_id).await? {
            self.unplug(&s, &op.id).await?;
        }
        self.dataplane_best_effort().await;
        self.inner.store.delete::<InterfaceOp>(&op.id).await?;
        Ok(())
    }

    /// Detaches port `port_id` from a server the action table admitted (see the module docs).
    /// As Nova's (whose detach is a cast to the compute host), a failure to unplug answers
    /// nothing to the caller: the interface stays, and the instance action records the
    /// error.
    pub(crate) async fn detach_interface(
        &self,
        actor: &Actor,
        s: &Server,
        port_id: &str,
    ) -> Result<bool, ComputeError> {
        let ports: Vec<Port> = self.inner.store.list_by_ref(&s.id).await?;
        let port =
            ports
                .into_iter()
                .find(|p| p.id == port_id)
                .ok_or_else(|| ComputeError::NotFound {
                    kind: Resource::Port,
                    id: port_id.to_string(),
                })?;
        if self.op_pending(port_id).await? {
            return Err(ComputeError::Conflict(format!(
                "Port {port_id} is still in use."
            )));
        }
        let brought = self.brought_ports(s).await?.contains(&port.id)
            || self.brought_by_attach(&s.id, &port.id).await;
        let op = InterfaceOp {
            id: port.id.clone(),
            server_id: s.id.clone(),
            op: OpKind::Detach,
            made: !brought,
        };
        let _in_flight = InFlight::new(self, &op.id);
        self.inner.store.put(&op).await?;
        let slots = match self.unplug(s, port_id).await {
            Ok(slots) => slots,
            Err(e) => {
                tracing::warn!(server = %s.id, port = %port_id, "detach interface failed: {e}");
                self.inner.store.delete::<InterfaceOp>(&op.id).await?;
                self.log_failed(
                    actor,
                    s,
                    "detach_interface",
                    &format!("Failed to detach network adapter device from {}: {e}", s.id),
                )
                .await;
                return Ok(false);
            }
        };
        self.hang_at("detach_interface:unplugged").await;
        self.finish_detach(&op, &slots).await?;
        Ok(true)
    }

    /// The rest of a detach once the NIC is out: the port is released, the slots kept,
    /// the host's data plane pushed, the intent forgotten. Idempotent.
    async fn finish_detach(&self, op: &InterfaceOp, slots: &[NicSlot]) -> Result<(), ComputeError> {
        self.unbind(&op.server_id, &op.id, !op.made).await?;
        self.save_slots(&op.server_id, slots).await?;
        self.dataplane_best_effort().await;
        self.inner.store.delete::<InterfaceOp>(&op.id).await?;
        Ok(())
    }

    /// Settles the attaches and detaches a crash interrupted (at start, then with the
    /// periodic task while a host is unreachable): an attach is undone (the caller never
    /// got its answer), a detach whose caller was answered 202 is finished.
    pub(crate) async fn settle_interface_ops(&self) -> Result<(), ComputeError> {
        let ops: Vec<InterfaceOp> = self.inner.store.list().await?;
        for op in ops {
            // In flight here: not interrupted. Checked before the record is read again, as
            // a change removes its record before it leaves the running set.
            if self.is_running(&format!("interface_op:{}", op.id)) {
                continue;
            }
            if self.inner.store.get::<InterfaceOp>(&op.id).await?.as_ref() != Some(&op) {
                continue;
            }
            let server = self.inner.store.get_server(&op.server_id).await?;
            let res = match op.op {
                OpKind::Attach => self.undo_attach(&op).await,
                OpKind::Detach => match &server {
                    Some(s) => match self.unplug(s, &op.id).await {
                        Ok(slots) => self.finish_detach(&op, &slots).await,
                        Err(e) => Err(e),
                    },
                    None => self.finish_detach(&op, &[]).await,
                },
            };
            match res {
                Ok(()) => {
                    let what = match op.op {
                        OpKind::Attach => "attach_interface interrupted: undone",
                        OpKind::Detach => "detach_interface interrupted: finished",
                    };
                    tracing::warn!(server = %op.server_id, port = %op.id, "{what}");
                    self.event(lifeboat_core::NewEvent {
                        level: lifeboat_core::Level::Warn,
                        server_id: Some(op.server_id.clone()),
                        project_id: server.as_ref().map(|s| s.project_id.clone()),
                        workflow_id: None,
                        step: None,
                        message: format!("{what} (port {})", op.id),
                    })
                    .await;
                }
                Err(e) => {
                    tracing::warn!(port = %op.id, "interrupted interface change not settled yet: {e}")
                }
            }
        }
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
    if e.detach_interface(actor, &s, &port_id).await? {
        e.log_short(
            actor,
            &s,
            "detach_interface",
            &format!("port {port_id} detached"),
        )
        .await;
    }
    Ok(crate::ActionOutcome::Done)
}
