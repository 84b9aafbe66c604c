//! The networking service's routers (gateways and interfaces).

use super::*;

impl Engine {
    /// A router visible to the actor.
    pub async fn router_get(&self, actor: &Actor, id: &str) -> NetResult<Router> {
        let nf =
            || NetError::not_found("RouterNotFound", format!("Router {id} could not be found"));
        let r: Router = self.inner.store.get(id).await?.ok_or_else(nf)?;
        if !actor.can_see(&r.project_id) {
            return Err(nf());
        }
        Ok(r)
    }

    /// Routers visible to the actor.
    pub async fn router_list(&self, actor: &Actor) -> NetResult<Vec<Router>> {
        let all: Vec<Router> = self.inner.store.list().await?;
        Ok(all
            .into_iter()
            .filter(|r| actor.can_see(&r.project_id))
            .collect())
    }

    pub(super) async fn set_gateway(
        &self,
        actor: &Actor,
        r: &mut Router,
        g: Option<GatewayReq>,
    ) -> NetResult<()> {
        // drop the old gateway port
        let gw_ports: Vec<Port> = match &r.external_gateway_info {
            Some(old) => self.inner.store.list_by_owner(&old.network_id).await?,
            None => vec![],
        };
        for p in gw_ports {
            if let Some(a) = self.inner.store.get::<PortAttrs>(&p.id).await? {
                if a.device_owner == OWNER_ROUTER_GATEWAY && a.device_id == r.id {
                    self.inner.store.delete::<Port>(&p.id).await?;
                    self.inner.store.delete::<PortAttrs>(&p.id).await?;
                }
            }
        }
        r.external_gateway_info = None;
        if let Some(g) = g {
            let v = self.net_get(actor, &g.network_id).await?;
            if !v.network.external {
                return Err(NetError::bad_request(format!(
                    "Bad router request: Network {} is not an external network.",
                    g.network_id
                )));
            }
            let admin = Actor {
                role: Role::Admin,
                ..actor.clone()
            };
            let port = self
                .port_create(
                    &admin,
                    PortReq {
                        network_id: Some(g.network_id.clone()),
                        device_owner: Some(OWNER_ROUTER_GATEWAY.into()),
                        device_id: Some(r.id.clone()),
                        project_id: Some(String::new()),
                        security_groups: Some(vec![]),
                        ..Default::default()
                    },
                )
                .await?;
            r.external_gateway_info = Some(GatewayInfo {
                network_id: g.network_id,
                enable_snat: g.enable_snat.unwrap_or(true),
                external_fixed_ips: port.fixed_ips,
            });
        }
        Ok(())
    }

    /// Creates a router.
    pub async fn router_create(&self, actor: &Actor, req: RouterReq) -> NetResult<Router> {
        Self::require_member(actor, "create_router")?;
        let project = Self::owner_for(actor, &req.project_id, "create_router")?;
        let t = now();
        let mut r = Router {
            id: ids::uuid(),
            project_id: project,
            name: req.name.unwrap_or_default(),
            description: req.description.unwrap_or_default(),
            admin_state_up: req.admin_state_up.unwrap_or(true),
            external_gateway_info: None,
            created_at: t,
            updated_at: t,
            revision_number: 1,
        };
        if let Some(Some(g)) = req.external_gateway_info {
            self.set_gateway(actor, &mut r, Some(g)).await?;
        }
        self.inner.store.insert(&r).await?;
        Ok(r)
    }

    /// Updates a router (name, state, gateway).
    pub async fn router_update(
        &self,
        actor: &Actor,
        id: &str,
        req: RouterReq,
    ) -> NetResult<Router> {
        let mut r = self.router_get(actor, id).await?;
        Self::may_modify(actor, &r.project_id, "update_router")?;
        if let Some(x) = req.name {
            r.name = x;
        }
        if let Some(x) = req.description {
            r.description = x;
        }
        if let Some(x) = req.admin_state_up {
            r.admin_state_up = x;
        }
        if let Some(g) = req.external_gateway_info {
            self.set_gateway(actor, &mut r, g).await?;
        }
        r.updated_at = now();
        r.revision_number += 1;
        self.inner.store.put(&r).await?;
        Ok(r)
    }

    /// The interface ports of a router the actor can see.
    pub async fn router_interfaces(&self, actor: &Actor, id: &str) -> NetResult<Vec<PortView>> {
        self.router_get(actor, id).await?;
        self.router_ports(id).await
    }

    pub(super) async fn router_ports(&self, id: &str) -> NetResult<Vec<PortView>> {
        let attrs: Vec<PortAttrs> = self.inner.store.list().await?;
        let mut out = vec![];
        for a in attrs {
            if a.device_id == id && a.device_owner == OWNER_ROUTER_INTERFACE {
                if let Some(p) = self.inner.store.get::<Port>(&a.id).await? {
                    let subs: Vec<Subnet> = self.inner.store.list_by_owner(&p.network_id).await?;
                    out.push(self.port_view_with(p, &subs).await?);
                }
            }
        }
        Ok(out)
    }

    /// Deletes a router without interfaces.
    pub async fn router_delete(&self, actor: &Actor, id: &str) -> NetResult<()> {
        let mut r = self.router_get(actor, id).await?;
        Self::may_modify(actor, &r.project_id, "delete_router")?;
        if !self.router_ports(id).await?.is_empty() {
            return Err(NetError::conflict(
                "RouterInUse",
                format!("Router {id} still has ports"),
            ));
        }
        self.set_gateway(actor, &mut r, None).await?;
        self.inner.store.delete::<Router>(id).await?;
        self.inner.store.delete::<Tags>(id).await?;
        Ok(())
    }

    /// add_router_interface by subnet (a port with the subnet's gateway
    /// address) or by an existing port.
    pub async fn router_add_interface(
        &self,
        actor: &Actor,
        id: &str,
        subnet_id: Option<String>,
        port_id: Option<String>,
    ) -> NetResult<RouterInterface> {
        let r = self.router_get(actor, id).await?;
        Self::may_modify(actor, &r.project_id, "add_router_interface")?;
        let port = match (subnet_id, port_id) {
            (Some(_), Some(_)) => {
                return Err(NetError::bad_request(
                    "Bad router request: Cannot specify both subnet-id and port-id.",
                ))
            }
            (None, None) => {
                return Err(NetError::bad_request(
                    "Bad router request: Either subnet_id or port_id must be specified.",
                ))
            }
            (Some(sid), None) => {
                let s = self.subnet_get(actor, &sid).await?;
                let gw = s.gateway_ip.clone().ok_or_else(|| {
                    NetError::bad_request(format!(
                        "Bad router request: Subnet {sid} does not have a gateway IP."
                    ))
                })?;
                for p in self.router_ports(id).await? {
                    if p.fixed_ips.iter().any(|f| f.subnet_id == sid) {
                        return Err(NetError::bad_request(format!(
                            "Bad router request: Router already has a port on subnet {sid}."
                        )));
                    }
                }
                self.port_create(
                    actor,
                    PortReq {
                        network_id: Some(s.network_id.clone()),
                        fixed_ips: Some(vec![FixedIpReq {
                            subnet_id: Some(sid.clone()),
                            ip_address: Some(gw),
                        }]),
                        device_owner: Some(OWNER_ROUTER_INTERFACE.into()),
                        device_id: Some(id.into()),
                        project_id: Some(r.project_id.clone()),
                        security_groups: Some(vec![]),
                        ..Default::default()
                    },
                )
                .await?
            }
            (None, Some(pid)) => {
                let p = self.port_get(actor, &pid).await?;
                if !p.device_id.is_empty() {
                    return Err(NetError::conflict(
                        "PortInUse",
                        format!(
                            "Unable to complete operation on port {pid} for network {}. Port already has an attached device {}.",
                            p.port.network_id, p.device_id
                        ),
                    ));
                }
                let mut a = p.attrs;
                a.device_id = id.into();
                a.device_owner = OWNER_ROUTER_INTERFACE.into();
                a.security_groups.clear();
                a.updated_at = now();
                a.revision_number += 1;
                self.inner.store.put(&a).await?;
                self.port_get(actor, &pid).await?
            }
        };
        let subnet_ids: Vec<String> = port.fixed_ips.iter().map(|f| f.subnet_id.clone()).collect();
        Ok(RouterInterface {
            id: id.into(),
            project_id: r.project_id,
            port_id: port.port.id,
            network_id: port.port.network_id,
            subnet_id: subnet_ids.first().cloned().unwrap_or_default(),
            subnet_ids,
        })
    }

    /// remove_router_interface by subnet or port.
    pub async fn router_remove_interface(
        &self,
        actor: &Actor,
        id: &str,
        subnet_id: Option<String>,
        port_id: Option<String>,
    ) -> NetResult<RouterInterface> {
        let r = self.router_get(actor, id).await?;
        Self::may_modify(actor, &r.project_id, "remove_router_interface")?;
        let ports = self.router_ports(id).await?;
        let port = match (&subnet_id, &port_id) {
            (_, Some(pid)) => ports
                .into_iter()
                .find(|p| &p.port.id == pid)
                .ok_or_else(|| {
                    NetError::not_found(
                        "RouterInterfaceNotFound",
                        format!("Router {id} does not have an interface with id {pid}"),
                    )
                })?,
            (Some(sid), None) => ports
                .into_iter()
                .find(|p| p.fixed_ips.iter().any(|f| &f.subnet_id == sid))
                .ok_or_else(|| {
                    NetError::not_found(
                        "RouterInterfaceNotFoundForSubnet",
                        format!("Router {id} has no interface on subnet {sid}"),
                    )
                })?,
            (None, None) => {
                return Err(NetError::bad_request(
                    "Bad router request: Either subnet_id or port_id must be specified.",
                ))
            }
        };
        self.inner.store.delete::<Port>(&port.port.id).await?;
        self.inner.store.delete::<PortAttrs>(&port.port.id).await?;
        let subnet_ids: Vec<String> = port.fixed_ips.iter().map(|f| f.subnet_id.clone()).collect();
        Ok(RouterInterface {
            id: id.into(),
            project_id: r.project_id,
            port_id: port.port.id,
            network_id: port.port.network_id,
            subnet_id: subnet_ids.first().cloned().unwrap_or_default(),
            subnet_ids,
        })
    }
}
