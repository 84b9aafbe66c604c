//! Networks, ports and floating IPs. A port outlives the VM it is bound
//! to: restore and recovery bind the same port to the new VM, which is how
//! a server keeps its fixed IP, MAC and floating IP.

use lifeboat_core::{
    gateway_of, host_count, ids, nth_host, Actor, Attachment, FloatingIp, Network, Port, Server,
    Workflow,
};
use lifeboat_store::StoreError;

pub mod dataplane;
pub mod dhcp_ports;
pub mod interfaces;
pub mod neutron;

use crate::requests::NetworkRequest;
use crate::{ComputeError, Engine, Resource};

/// Name of the default tenant network.
pub const DEFAULT_NETWORK: &str = "private";
/// Name of the external network floating IPs come from.
pub const PUBLIC_NETWORK: &str = "public";

impl Engine {
    /// Creates the default shared networks on first start.
    pub(crate) async fn bootstrap_networks(&self) -> Result<(), ComputeError> {
        let nets: Vec<Network> = self.inner.store.list().await?;
        if nets.is_empty() {
            for (name, cidr, external) in [
                (DEFAULT_NETWORK, "10.0.0.0/16", false),
                (PUBLIC_NETWORK, "172.24.4.0/24", true),
            ] {
                self.inner
                    .store
                    .put(&Network {
                        id: ids::uuid(),
                        name: name.into(),
                        project_id: None,
                        cidr: cidr.into(),
                        gateway: gateway_of(cidr).unwrap_or_default(),
                        external,
                    })
                    .await?;
            }
        }
        self.bootstrap_subnets().await?;
        self.ensure_dhcp_ports()
            .await
            .map_err(|e| ComputeError::Internal(e.message))
    }

    /// Networks visible to the actor.
    pub async fn networks(&self, actor: &Actor) -> Result<Vec<Network>, ComputeError> {
        let all: Vec<Network> = self.inner.store.list().await?;
        Ok(all
            .into_iter()
            .filter(|n| n.project_id.as_ref().is_none_or(|p| actor.can_see(p)))
            .collect())
    }

    async fn network_by_id_or_name(&self, key: &str) -> Result<Network, ComputeError> {
        let all: Vec<Network> = self.inner.store.list().await?;
        all.into_iter()
            .find(|n| n.id == key || n.name == key)
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::Network,
                id: key.into(),
            })
    }

    /// The networks a create asks for, as Nova settles them before accepting it: the given
    /// ones (checked), none (`networks: "none"`), or, when none are given (`"auto"`, or no
    /// `networks` before 2.37), the one network the project can use: several are ambiguous
    /// (409), none fail an `"auto"` request (Nova cannot auto-allocate one here) and boot a
    /// server without a network otherwise.
    pub(crate) async fn resolve_networks(
        &self,
        actor: &Actor,
        req: &crate::requests::CreateServer,
    ) -> Result<(Vec<NetworkRequest>, bool), ComputeError> {
        if req.no_network {
            return Ok((vec![], true));
        }
        if !req.networks.is_empty() {
            self.validate_networks(&req.networks).await?;
            return Ok((req.networks.clone(), false));
        }
        let mut usable = self.usable_networks(&actor.project_id).await?;
        match usable.len() {
            0 if req.auto_network => Err(ComputeError::BadRequest(format!(
                "Unable to automatically allocate a network for project {}",
                actor.project_id
            ))),
            0 => Ok((vec![], true)),
            1 => Ok((
                vec![NetworkRequest {
                    network_id: Some(usable.remove(0).id),
                    ..Default::default()
                }],
                false,
            )),
            _ => Err(ComputeError::Conflict(
                "Multiple possible networks found, use a Network ID to be more specific.".into(),
            )),
        }
    }

    /// Checks a create request's networks before the server is accepted.
    pub(crate) async fn validate_networks(
        &self,
        reqs: &[NetworkRequest],
    ) -> Result<(), ComputeError> {
        for r in reqs {
            if let Some(n) = &r.network_id {
                let net = self.network_by_id_or_name(n).await.map_err(|_| {
                    crate::Reason::BadReference {
                        kind: Resource::Network,
                        id: n.clone(),
                    }
                })?;
                if net.cidr.is_empty() {
                    return Err(crate::Reason::NetworkWithoutSubnet { network: n.clone() }.into());
                }
                if net.external {
                    return Err(ComputeError::BadRequest(format!(
                        "Network {n} is external and cannot be attached directly."
                    )));
                }
                if let Some(ip) = &r.fixed_ip {
                    if let Some(device) = self.device_with_ip(&net.id, ip).await? {
                        return Err(ComputeError::BadRequest(format!(
                            "Fixed IP address {ip} is already in use on instance {device}."
                        )));
                    }
                }
            }
            if let Some(p) = &r.port_id {
                let port: Option<Port> = self.inner.store.get(p).await?;
                match port {
                    None => {
                        return Err(ComputeError::BadRequest(format!(
                            "Port id {p} could not be found."
                        )))
                    }
                    Some(pt) if pt.server_id.is_some() => {
                        return Err(ComputeError::Conflict(format!("Port {p} is still in use.")))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn new_port_with_id(
        &self,
        net: &Network,
        server: &Server,
        fixed: Option<&str>,
        id: &str,
    ) -> Result<Port, ComputeError> {
        if let Some(f) = fixed {
            self.check_fixed_ip(net, f).await?;
        }
        // Addresses come from a per-network counter; the unique index on
        // (network, address) settles races and skips addresses in use.
        for _ in 0..host_count(&net.cidr).clamp(1, 4096) {
            let ip = match fixed {
                Some(f) => f.to_string(),
                None => match self.next_pool_address(&net.id).await? {
                    Some(ip) => ip,
                    None => self.next_address(net).await?,
                },
            };
            let port = Port {
                id: id.to_string(),
                network_id: net.id.clone(),
                server_id: Some(server.id.clone()),
                mac_address: ids::mac(),
                fixed_ip: ip.clone(),
                project_id: server.project_id.clone(),
            };
            match self.inner.store.insert(&port).await {
                Ok(()) => return Ok(port),
                Err(StoreError::Duplicate(_)) if fixed.is_some() => {
                    return Err(ComputeError::Conflict(format!(
                        "Fixed IP address {ip} is already in use on instance."
                    )))
                }
                Err(StoreError::Duplicate(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ComputeError::Conflict(format!(
            "No more IP addresses available on network {}.",
            net.id
        )))
    }

    /// The device (server id, or the port's Neutron device) of the port on `net_id` that has
    /// `ip`, if one has it (its first or a further fixed IP).
    async fn device_with_ip(&self, net_id: &str, ip: &str) -> Result<Option<String>, ComputeError> {
        let ports: Vec<Port> = self.inner.store.list_by_owner(net_id).await?;
        for p in ports {
            let attrs: Option<neutron::PortAttrs> = self.inner.store.get(&p.id).await?;
            let extra = attrs
                .as_ref()
                .is_some_and(|a| a.extra_ips.iter().any(|f| f.ip_address == ip));
            if p.fixed_ip == ip || extra {
                let device = p
                    .server_id
                    .clone()
                    .or_else(|| attrs.map(|a| a.device_id))
                    .unwrap_or_default();
                return Ok(Some(device));
            }
        }
        Ok(None)
    }

    /// A requested fixed IP must be a host address of one of the network's subnets (its
    /// core CIDR when it has no Neutron subnet); else Nova's answer to Neutron's
    /// `InvalidIpForNetwork` (`InvalidInput`, 400).
    async fn check_fixed_ip(&self, net: &Network, ip: &str) -> Result<(), ComputeError> {
        let subnets: Vec<neutron::Subnet> = self.inner.store.list_by_owner(&net.id).await?;
        let mut cidrs: Vec<String> = subnets.into_iter().map(|s| s.cidr).collect();
        if cidrs.is_empty() {
            cidrs.push(net.cidr.clone());
        }
        let host_of = |c: &str| {
            let c = neutron::parse_cidr(c).ok()?;
            let (a, v) = neutron::ip_num(ip)?;
            let edge = c.version == 4 && c.len < 31 && (a == c.net || a == c.last());
            (v == c.version && c.contains(a) && !edge).then_some(())
        };
        if cidrs.iter().any(|c| host_of(c).is_some()) {
            return Ok(());
        }
        Err(ComputeError::BadRequest(format!(
            "Invalid input received: Fixed IP {ip} is not a valid ip address for network {}.",
            net.id
        )))
    }

    async fn next_address(&self, net: &Network) -> Result<String, ComputeError> {
        let k = self
            .inner
            .store
            .next_counter(&format!("ip:{}", net.id))
            .await?;
        nth_host(&net.cidr, (k - 1) as u64).ok_or_else(|| {
            ComputeError::Internal(format!("network {} has an invalid CIDR", net.id))
        })
    }

    fn attachment(net: &Network, p: &Port, extra: Vec<String>, fips: Vec<String>) -> Attachment {
        Attachment {
            port_id: p.id.clone(),
            network_id: net.id.clone(),
            network_name: net.name.clone(),
            mac_address: p.mac_address.clone(),
            fixed_ip: p.fixed_ip.clone(),
            extra_fixed_ips: extra,
            floating_ips: fips,
        }
    }

    /// Rebuilds `server.attachments` from the ports bound to it, in NIC order.
    pub(crate) async fn refresh_attachments(
        &self,
        server_id: &str,
    ) -> Result<Server, ComputeError> {
        let ports = self.ports_in_order(server_id).await?;
        let mut atts = vec![];
        for p in &ports {
            let net: Network = self.inner.store.must_get(&p.network_id).await?;
            let fips: Vec<FloatingIp> = self.inner.store.list_by_ref(&p.id).await?;
            let extra = self
                .inner
                .store
                .get::<neutron::PortAttrs>(&p.id)
                .await?
                .map(|a| a.extra_ips.into_iter().map(|f| f.ip_address).collect())
                .unwrap_or_default();
            atts.push(Self::attachment(
                &net,
                p,
                extra,
                fips.into_iter().map(|f| f.address).collect(),
            ));
        }
        self.mutate_server(server_id, |s| {
            s.attachments = atts.clone();
            Ok(())
        })
        .await
    }

    /// Create step: allocates or binds the requested ports (idempotent).
    pub(crate) async fn allocate_ports(&self, wf: &Workflow) -> Result<(), ComputeError> {
        let sid = wf.server_id.clone().unwrap_or_default();
        let server =
            self.inner
                .store
                .get_server(&sid)
                .await?
                .ok_or_else(|| ComputeError::NotFound {
                    kind: Resource::Server,
                    id: sid.clone(),
                })?;
        let crate::compute::workflows::WorkflowKind::Create(p) =
            crate::compute::workflows::WorkflowKind::load(&wf.kind, &wf.params)?
        else {
            return Err(ComputeError::Internal(format!(
                "{} does not allocate ports",
                wf.kind
            )));
        };
        if !p.no_network {
            let reqs: Vec<NetworkRequest> = p.networks;
            let reqs = if reqs.is_empty() {
                vec![NetworkRequest {
                    network_id: Some(DEFAULT_NETWORK.into()),
                    ..Default::default()
                }]
            } else {
                reqs
            };
            // Each request is checked on its own (a re-run after a crash
            // finds the ports already made): a brought port is bound once,
            // a new port has an id derived from (workflow, request index).
            // The NICs follow the request's order (the guest's eth0 is the first network
            // asked for): each port's place is kept in its ServerNic record.
            for (i, r) in reqs.iter().enumerate() {
                let pid = match &r.port_id {
                    Some(pid) => {
                        let mut p: Port = self.inner.store.must_get(pid).await?;
                        if p.server_id.as_deref() != Some(sid.as_str()) {
                            p.server_id = Some(sid.clone());
                            self.inner.store.put(&p).await?;
                        }
                        pid.clone()
                    }
                    None => {
                        let id = request_port_id(&wf.id, i);
                        if self.inner.store.get::<Port>(&id).await?.is_none() {
                            let net = self
                                .network_by_id_or_name(
                                    r.network_id.as_deref().unwrap_or(DEFAULT_NETWORK),
                                )
                                .await?;
                            self.new_port_with_id(&net, &server, r.fixed_ip.as_deref(), &id)
                                .await?;
                        }
                        id
                    }
                };
                let order = u32::try_from(i).unwrap_or(u32::MAX);
                let nic = self.inner.store.get::<interfaces::ServerNic>(&pid).await?;
                if !nic
                    .as_ref()
                    .is_some_and(|n| n.server_id == sid && n.order == Some(order))
                {
                    self.inner
                        .store
                        .put(&interfaces::ServerNic {
                            id: pid.clone(),
                            server_id: sid.clone(),
                            brought: nic.filter(|n| n.server_id == sid).and_then(|n| n.brought),
                            slot: None,
                            order: Some(order),
                        })
                        .await?;
                }
                // test hook `create:network#<i>:after`: killed between ports
                self.hang_after(wf, &format!("network#{i}")).await;
            }
        }
        self.refresh_attachments(&sid).await?;
        Ok(())
    }

    /// Releases a server's ports: ports Lifeboat created are deleted (their
    /// floating IPs disassociated), ports the user brought are unbound and
    /// keep their floating IPs, as in Neutron: the endpoint (MAC, fixed
    /// IP, floating IP) outlives the server and goes to the next one.
    pub(crate) async fn release_ports(&self, s: &Server, _undo: bool) -> Result<(), ComputeError> {
        let ports: Vec<Port> = self.inner.store.list_by_ref(&s.id).await?;
        let brought: Vec<String> = self.brought_ports(s).await.unwrap_or_default();
        for p in ports {
            let attached_brought = self.brought_by_attach(&s.id, &p.id).await;
            if let Some(r) = self.inner.store.get::<interfaces::ServerNic>(&p.id).await? {
                if r.server_id == s.id {
                    self.inner
                        .store
                        .delete::<interfaces::ServerNic>(&p.id)
                        .await?;
                }
            }
            if brought.contains(&p.id) || attached_brought {
                let mut p = p;
                p.server_id = None;
                self.inner.store.put(&p).await?;
                continue;
            }
            let fips: Vec<FloatingIp> = self.inner.store.list_by_ref(&p.id).await?;
            for mut f in fips {
                f.port_id = None;
                self.inner.store.put(&f).await?;
            }
            self.inner.store.delete::<Port>(&p.id).await?;
        }
        match self.refresh_attachments(&s.id).await {
            Ok(_) | Err(ComputeError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The ports the user brought to the server's create (`networks: [{port}]`), read from its
    /// create workflow's typed params.
    pub(crate) async fn brought_ports(&self, s: &Server) -> Result<Vec<String>, ComputeError> {
        use crate::compute::workflows::WorkflowKind;
        let wfs = self.inner.store.list_workflows(Some(&s.id), 1000).await?;
        let mut out = vec![];
        for w in wfs.iter().filter(|w| w.kind == "create") {
            let WorkflowKind::Create(p) = WorkflowKind::load(&w.kind, &w.params)? else {
                continue;
            };
            out.extend(p.networks.into_iter().filter_map(|r| r.port_id));
        }
        Ok(out)
    }

    /// Allocates a floating IP from the public network to the actor's project.
    pub async fn allocate_floating_ip(&self, actor: &Actor) -> Result<FloatingIp, ComputeError> {
        if actor.role < lifeboat_core::Role::Member {
            return Err(ComputeError::Forbidden(
                "readers cannot allocate floating IPs".into(),
            ));
        }
        let net = self.network_by_id_or_name(PUBLIC_NETWORK).await?;
        for _ in 0..host_count(&net.cidr).clamp(1, 4096) {
            let addr = self.next_address(&net).await?;
            let f = FloatingIp {
                id: ids::uuid(),
                address: addr,
                network_id: net.id.clone(),
                port_id: None,
                project_id: actor.project_id.clone(),
            };
            match self.inner.store.insert(&f).await {
                Ok(()) => return Ok(f),
                Err(StoreError::Duplicate(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ComputeError::Conflict(
            "No more floating IP addresses available.".into(),
        ))
    }

    /// Floating IPs visible to the actor.
    pub async fn floating_ips(&self, actor: &Actor) -> Result<Vec<FloatingIp>, ComputeError> {
        let all: Vec<FloatingIp> = self.inner.store.list().await?;
        Ok(all
            .into_iter()
            .filter(|f| actor.can_see(&f.project_id))
            .collect())
    }

    /// Releases a floating IP.
    pub async fn release_floating_ip(&self, actor: &Actor, id: &str) -> Result<(), ComputeError> {
        let f = self.visible_fip(actor, id).await?;
        // Neutron's delete_floatingip: admin or project member.
        if actor.role < lifeboat_core::Role::Member {
            return Err(ComputeError::Forbidden(
                "readers cannot release floating IPs".into(),
            ));
        }
        if let Some(pid) = &f.port_id {
            let p: Option<Port> = self.inner.store.get(pid).await?;
            self.inner.store.delete::<FloatingIp>(&f.id).await?;
            if let Some(sid) = p.and_then(|p| p.server_id) {
                self.refresh_attachments(&sid).await?;
            }
        } else {
            self.inner.store.delete::<FloatingIp>(&f.id).await?;
        }
        Ok(())
    }

    async fn visible_fip(&self, actor: &Actor, key: &str) -> Result<FloatingIp, ComputeError> {
        let all: Vec<FloatingIp> = self.inner.store.list().await?;
        all.into_iter()
            .find(|f| (f.id == key || f.address == key) && actor.can_see(&f.project_id))
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::FloatingIp,
                id: key.into(),
            })
    }

    /// addFloatingIp: associates `address` with the server's port (the one
    /// holding `fixed_address`, or the first).
    pub(crate) async fn associate_fip(
        &self,
        actor: &Actor,
        s: &Server,
        address: &str,
        fixed: Option<&str>,
    ) -> Result<(), ComputeError> {
        let mut f = self
            .visible_fip(actor, address)
            .await
            .map_err(|_| ComputeError::NotFound {
                kind: Resource::FloatingIpAddress,
                id: address.into(),
            })?;
        let ports: Vec<Port> = self.inner.store.list_by_ref(&s.id).await?;
        let port = match fixed {
            Some(ip) => ports.iter().find(|p| p.fixed_ip == ip).ok_or_else(|| {
                ComputeError::BadRequest(format!(
                    "Specified Fixed IP '{ip}' not found for instance {}",
                    s.id
                ))
            })?,
            None => ports.first().ok_or_else(|| {
                ComputeError::BadRequest("No nw_info cache associated with instance".into())
            })?,
        };
        let previous = f.port_id.clone();
        f.port_id = Some(port.id.clone());
        self.inner.store.put(&f).await?;
        if let Some(prev) = previous {
            if prev != port.id {
                if let Some(p) = self.inner.store.get::<Port>(&prev).await? {
                    if let Some(other) = p.server_id {
                        self.refresh_attachments(&other).await?;
                    }
                }
            }
        }
        self.refresh_attachments(&s.id).await?;
        Ok(())
    }

    /// removeFloatingIp.
    pub(crate) async fn disassociate_fip(
        &self,
        actor: &Actor,
        s: &Server,
        address: &str,
    ) -> Result<(), ComputeError> {
        let mut f = self.visible_fip(actor, address).await?;
        let ports: Vec<Port> = self.inner.store.list_by_ref(&s.id).await?;
        if !f
            .port_id
            .as_ref()
            .is_some_and(|p| ports.iter().any(|x| &x.id == p))
        {
            return Err(ComputeError::Conflict(format!(
                "Floating IP {address} is not associated with instance {}.",
                s.id
            )));
        }
        f.port_id = None;
        self.inner.store.put(&f).await?;
        self.refresh_attachments(&s.id).await?;
        Ok(())
    }

    /// addFixedIp as Nova's `add_fixed_ip_to_instance` does it on Neutron: the server's
    /// first port on `network` gets one more address, from the first of the network's subnets
    /// that has one free (a Neutron port update appending `{"subnet_id"}` to its
    /// `fixed_ips`). The data plane follows: the DHCP host entry, the port's anti-spoofing
    /// set and its security groups' member sets carry the new address. Synchronous here;
    /// the errors are the ones Nova's compute manager raises, as its multinic controller's
    /// 400.
    pub(crate) async fn add_fixed_ip(
        &self,
        actor: &Actor,
        s: &Server,
        network: &str,
    ) -> Result<(), ComputeError> {
        let nf = || {
            ComputeError::BadRequest(format!("Network could not be found for instance {}.", s.id))
        };
        let net = self
            .network_by_id_or_name(network)
            .await
            .map_err(|_| nf())?;
        let mut subnets: Vec<neutron::Subnet> = self.inner.store.list_by_owner(&net.id).await?;
        subnets.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        if subnets.is_empty() {
            return Err(nf());
        }
        let ports: Vec<Port> = self.inner.store.list_by_ref(&s.id).await?;
        for p in ports.iter().filter(|p| p.network_id == net.id) {
            for sub in &subnets {
                let mut want = self.fixed_ip_reqs(actor, &p.id).await?;
                want.push(neutron::FixedIpReq {
                    subnet_id: Some(sub.id.clone()),
                    ip_address: None,
                });
                match self.update_port_ips(actor, p, want).await {
                    Ok(()) => return Ok(()),
                    Err(e) => tracing::debug!(
                        port = %p.id, subnet = %sub.id,
                        "Unable to update port {} on subnet {}: {}", p.id, sub.id, e.message
                    ),
                }
            }
        }
        Err(nf())
    }

    /// removeFixedIp as Nova's `remove_fixed_ip_from_instance`: the server's port holding
    /// `address` keeps its other addresses (a Neutron port update without it); the port, its
    /// MAC and floating IPs stay.
    pub(crate) async fn remove_fixed_ip(
        &self,
        actor: &Actor,
        s: &Server,
        address: &str,
    ) -> Result<(), ComputeError> {
        let ports: Vec<Port> = self.inner.store.list_by_ref(&s.id).await?;
        for p in &ports {
            let have = self.fixed_ip_reqs(actor, &p.id).await?;
            if !have
                .iter()
                .any(|f| f.ip_address.as_deref() == Some(address))
            {
                continue;
            }
            let keep = have
                .into_iter()
                .filter(|f| f.ip_address.as_deref() != Some(address))
                .collect();
            return self
                .update_port_ips(actor, p, keep)
                .await
                .map_err(|e| ComputeError::BadRequest(e.message));
        }
        // Nova's FixedIpNotFoundForSpecificInstance.
        Err(ComputeError::BadRequest(format!(
            "Instance {} doesn't have fixed IP '{address}'.",
            s.id
        )))
    }

    /// A port's fixed IPs as the requests that keep them.
    async fn fixed_ip_reqs(
        &self,
        actor: &Actor,
        port_id: &str,
    ) -> Result<Vec<neutron::FixedIpReq>, ComputeError> {
        let v = self
            .port_get(&Self::acting_admin(actor), port_id)
            .await
            .map_err(|e| ComputeError::Internal(e.message))?;
        Ok(v.fixed_ips
            .into_iter()
            .map(|f| neutron::FixedIpReq {
                subnet_id: (!f.subnet_id.is_empty()).then_some(f.subnet_id),
                ip_address: Some(f.ip_address),
            })
            .collect())
    }

    /// The device owner of a server's port: `compute:` and the server's
    /// availability zone (before it has one, the first zone of the hosts).
    pub(crate) async fn compute_owner(&self, server_id: &str) -> Result<String, ComputeError> {
        let zone = match self
            .inner
            .store
            .get_server(server_id)
            .await?
            .and_then(|s| s.availability_zone)
        {
            Some(z) => z,
            None => self
                .inner
                .hosts
                .read()
                .await
                .values()
                .map(|h| h.host.availability_zone.clone())
                .min()
                .unwrap_or_default(),
        };
        Ok(format!("compute:{zone}"))
    }

    /// Sets a server's port's fixed IPs through the networking service (its checks and
    /// allocation), then the server's addresses and its host's data plane.
    async fn update_port_ips(
        &self,
        actor: &Actor,
        p: &Port,
        fixed_ips: Vec<neutron::FixedIpReq>,
    ) -> Result<(), neutron::NetError> {
        // A port Nova's create made has no networking attributes yet: it is in its
        // project's default group (as the data plane treats it), which they must keep.
        if self
            .inner
            .store
            .get::<neutron::PortAttrs>(&p.id)
            .await?
            .is_none()
        {
            let g = self.default_security_group(&p.project_id).await?.id;
            let t = chrono::Utc::now();
            self.inner
                .store
                .put(&neutron::PortAttrs {
                    id: p.id.clone(),
                    name: String::new(),
                    description: String::new(),
                    admin_state_up: true,
                    device_owner: match &p.server_id {
                        Some(sid) => self.compute_owner(sid).await?,
                        None => String::new(),
                    },
                    device_id: String::new(),
                    extra_ips: vec![],
                    security_groups: vec![g],
                    allowed_address_pairs: vec![],
                    port_security_enabled: true,
                    created_at: t,
                    updated_at: t,
                    revision_number: 1,
                })
                .await?;
        }
        self.port_update(
            &Self::acting_admin(actor),
            &p.id,
            neutron::PortReq {
                fixed_ips: Some(fixed_ips),
                ..Default::default()
            },
        )
        .await?;
        if let Some(sid) = &p.server_id {
            self.refresh_attachments(sid).await?;
            if let Some(host) = self.inner.store.get_server(sid).await?.and_then(|s| s.host) {
                if let Err(e) = self.sync_dataplane_for(&host, None).await {
                    tracing::warn!(host = %host, "data plane not pushed yet: {e}");
                }
            }
        }
        Ok(())
    }

    /// The actor Nova's own calls to the networking service act as: its service user, here
    /// an administrator of the caller's project (the server's policy was checked already).
    fn acting_admin(actor: &Actor) -> Actor {
        Actor {
            role: lifeboat_core::Role::Admin,
            ..actor.clone()
        }
    }
}

/// The id of the port made for request `index` of workflow `workflow_id`:
/// a UUID derived from both, so that a re-run finds it.
fn request_port_id(workflow_id: &str, index: usize) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{workflow_id}/port/{index}").as_bytes());
    let mut b: [u8; 16] = h[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x50; // version 5 style (name-based)
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let x = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &x[..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..]
    )
}
