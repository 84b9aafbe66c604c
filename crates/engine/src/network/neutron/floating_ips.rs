//! The networking service's floating IPs.

use super::*;

impl Engine {
    pub(super) async fn fip_view(&self, f: FloatingIp) -> NetResult<FloatingIpView> {
        let attrs = match self.inner.store.get::<FloatingIpAttrs>(&f.id).await? {
            Some(a) => a,
            None => FloatingIpAttrs {
                id: f.id.clone(),
                description: String::new(),
                fixed_ip_address: None,
                created_at: Time::UNIX_EPOCH,
                updated_at: Time::UNIX_EPOCH,
                revision_number: 0,
            },
        };
        let mut fixed = None;
        let mut router_id = None;
        if let Some(pid) = &f.port_id {
            if let Some(p) = self.inner.store.get::<Port>(pid).await? {
                fixed = attrs
                    .fixed_ip_address
                    .clone()
                    .or_else(|| (!p.fixed_ip.is_empty()).then(|| p.fixed_ip.clone()));
                router_id = self
                    .router_for_network(&p.network_id, &f.network_id)
                    .await?;
            }
        }
        let status = if f.port_id.is_some() {
            "ACTIVE"
        } else {
            "DOWN"
        };
        Ok(FloatingIpView {
            fip: f,
            attrs,
            fixed_ip_address: fixed,
            router_id,
            status,
        })
    }

    /// The router joining an internal network to an external one.
    pub(super) async fn router_for_network(
        &self,
        net: &str,
        ext: &str,
    ) -> NetResult<Option<String>> {
        let routers: Vec<Router> = self.inner.store.list().await?;
        let ports = self.ports_on_network(net).await?;
        Ok(routers
            .into_iter()
            .find(|r| {
                r.external_gateway_info
                    .as_ref()
                    .is_some_and(|g| g.network_id == ext)
                    && ports
                        .iter()
                        .any(|p| p.device_owner == OWNER_ROUTER_INTERFACE && p.device_id == r.id)
            })
            .map(|r| r.id))
    }

    /// A floating IP visible to the actor.
    pub async fn fip_get(&self, actor: &Actor, id: &str) -> NetResult<FloatingIpView> {
        let nf = || {
            NetError::not_found(
                "FloatingIPNotFound",
                format!("Floating IP {id} could not be found"),
            )
        };
        let f: FloatingIp = self.inner.store.get(id).await?.ok_or_else(nf)?;
        if !actor.can_see(&f.project_id) {
            return Err(nf());
        }
        self.fip_view(f).await
    }

    /// Floating IPs visible to the actor.
    pub async fn fip_list(&self, actor: &Actor) -> NetResult<Vec<FloatingIpView>> {
        let all: Vec<FloatingIp> = self.inner.store.list().await?;
        let mut out = vec![];
        for f in all {
            if actor.can_see(&f.project_id) {
                out.push(self.fip_view(f).await?);
            }
        }
        Ok(out)
    }

    pub(super) async fn check_fip_port(
        &self,
        actor: &Actor,
        f: &FloatingIp,
        port_id: &str,
        fixed: &Option<String>,
    ) -> NetResult<PortView> {
        let p = self.port_get(actor, port_id).await?;
        if p.fixed_ips.is_empty() {
            return Err(NetError::bad_request(format!(
                "Bad floatingip request: Port {port_id} does not have any fixed IP addresses."
            )));
        }
        if let Some(ip) = fixed {
            if !p.fixed_ips.iter().any(|x| &x.ip_address == ip) {
                return Err(NetError::bad_request(format!(
                    "Bad floatingip request: Port {port_id} does not have fixed ip {ip}."
                )));
            }
        }
        let others: Vec<FloatingIp> = self.inner.store.list_by_ref(port_id).await?;
        if let Some(o) = others
            .iter()
            .find(|o| o.id != f.id && o.network_id == f.network_id)
        {
            let ip = fixed.clone().unwrap_or_else(|| p.port.fixed_ip.clone());
            return Err(NetError::conflict(
                "FloatingIPPortAlreadyAssociated",
                format!(
                    "Cannot associate floating IP {} ({}) with port {port_id} using fixed IP {ip}, as that fixed IP already has a floating IP on external network {}.",
                    f.address, f.id, o.network_id
                ),
            ));
        }
        Ok(p)
    }

    /// Allocates a floating IP on an external network, optionally
    /// associated with a port.
    pub async fn fip_create(&self, actor: &Actor, r: FloatingIpReq) -> NetResult<FloatingIpView> {
        Self::require_member(actor, "create_floatingip")?;
        let net_id = r.floating_network_id.clone().ok_or_else(|| {
            NetError::bad_request(
                "Failed to parse request. Required attribute 'floating_network_id' not specified",
            )
        })?;
        let project = Self::owner_for(actor, &r.project_id, "create_floatingip")?;
        let v = self.net_get(actor, &net_id).await?;
        if !v.network.external {
            return Err(NetError::bad_request(format!(
                "Bad floatingip request: Network {net_id} is not a valid external network."
            )));
        }
        let want: Option<Vec<FixedIpReq>> = r.floating_ip_address.as_ref().map(|a| {
            vec![FixedIpReq {
                subnet_id: None,
                ip_address: Some(a.clone()),
            }]
        });
        let t = now();
        for attempt in 0..8 {
            let ip = self
                .pick_ips(&net_id, want.as_deref(), None)
                .await?
                .into_iter()
                .next()
                .ok_or_else(|| {
                    NetError::conflict(
                        "ExternalIpAddressExhausted",
                        format!("Unable to find any IP address on external network {net_id}."),
                    )
                })?;
            let mut f = FloatingIp {
                id: ids::uuid(),
                address: ip.ip_address,
                network_id: net_id.clone(),
                port_id: None,
                project_id: project.clone(),
            };
            let mut fixed = None;
            if let Some(Some(pid)) = &r.port_id {
                let p = self
                    .check_fip_port(actor, &f, pid, &r.fixed_ip_address)
                    .await?;
                f.port_id = Some(pid.clone());
                fixed = r.fixed_ip_address.clone().or(Some(p.port.fixed_ip.clone()));
            }
            match self.inner.store.insert(&f).await {
                Ok(()) => {}
                Err(StoreError::Duplicate(_)) if attempt < 7 && want.is_none() => continue,
                Err(StoreError::Duplicate(_)) => {
                    return Err(NetError::conflict(
                        "IpAddressAlreadyAllocated",
                        format!("IP address {} already allocated in subnet", f.address),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
            self.inner
                .store
                .put(&FloatingIpAttrs {
                    id: f.id.clone(),
                    description: r.description.clone().unwrap_or_default(),
                    fixed_ip_address: fixed,
                    created_at: t,
                    updated_at: t,
                    revision_number: 0,
                })
                .await?;
            if let Some(pid) = &f.port_id {
                self.refresh_port_server(pid).await?;
            }
            return self.fip_view(f).await;
        }
        Err(NetError::conflict(
            "ExternalIpAddressExhausted",
            format!("Unable to find any IP address on external network {net_id}."),
        ))
    }

    pub(super) async fn refresh_port_server(&self, port_id: &str) -> NetResult<()> {
        if let Some(p) = self.inner.store.get::<Port>(port_id).await? {
            if let Some(s) = p.server_id {
                let _ = self.refresh_attachments(&s).await;
            }
        }
        Ok(())
    }

    /// Associates (port_id) or disassociates (port_id null) a floating IP.
    pub async fn fip_update(
        &self,
        actor: &Actor,
        id: &str,
        r: FloatingIpReq,
    ) -> NetResult<FloatingIpView> {
        let v = self.fip_get(actor, id).await?;
        Self::may_modify(actor, &v.fip.project_id, "update_floatingip")?;
        let mut f = v.fip;
        let mut a = v.attrs;
        let previous = f.port_id.clone();
        if let Some(port) = &r.port_id {
            match port {
                Some(pid) => {
                    let p = self
                        .check_fip_port(actor, &f, pid, &r.fixed_ip_address)
                        .await?;
                    f.port_id = Some(pid.clone());
                    a.fixed_ip_address = r.fixed_ip_address.clone().or(Some(p.port.fixed_ip));
                }
                None => {
                    f.port_id = None;
                    a.fixed_ip_address = None;
                }
            }
        }
        if let Some(d) = r.description {
            a.description = d;
        }
        a.updated_at = now();
        a.revision_number += 1;
        self.inner.store.put(&f).await?;
        self.inner.store.put(&a).await?;
        for p in [previous, f.port_id.clone()].into_iter().flatten() {
            self.refresh_port_server(&p).await?;
        }
        self.fip_view(f).await
    }

    /// Releases a floating IP.
    pub async fn fip_delete(&self, actor: &Actor, id: &str) -> NetResult<()> {
        let v = self.fip_get(actor, id).await?;
        Self::may_modify(actor, &v.fip.project_id, "delete_floatingip")?;
        self.inner.store.delete::<FloatingIp>(id).await?;
        self.inner.store.delete::<FloatingIpAttrs>(id).await?;
        self.inner.store.delete::<Tags>(id).await?;
        if let Some(p) = v.fip.port_id {
            self.refresh_port_server(&p).await?;
        }
        Ok(())
    }
}
