//! The networking service's networks (and the checks every resource shares: membership, ownership).

use super::*;

impl Engine {
    pub(super) fn require_member(actor: &Actor, rule: &str) -> NetResult<()> {
        if actor.role < Role::Member {
            return Err(NetError::policy(rule));
        }
        Ok(())
    }

    /// The owner a create request ends up with (admin may name another).
    pub(super) fn owner_for(
        actor: &Actor,
        requested: &Option<String>,
        rule: &str,
    ) -> NetResult<String> {
        match requested {
            Some(p) if p != &actor.project_id => {
                if actor.is_admin() {
                    Ok(p.clone())
                } else {
                    Err(NetError::policy(rule))
                }
            }
            _ => Ok(actor.project_id.clone()),
        }
    }

    pub(super) async fn network_attrs(&self, n: &Network) -> NetResult<NetworkAttrs> {
        if let Some(a) = self.inner.store.get::<NetworkAttrs>(&n.id).await? {
            return Ok(a);
        }
        // Networks made before the networking API (bootstrap): defaults.
        Ok(NetworkAttrs {
            id: n.id.clone(),
            project_id: n.project_id.clone().unwrap_or_default(),
            admin_state_up: true,
            shared: n.project_id.is_none() && !n.external,
            mtu: DEFAULT_MTU,
            description: String::new(),
            port_security_enabled: true,
            created_at: Time::UNIX_EPOCH,
            updated_at: Time::UNIX_EPOCH,
            revision_number: 1,
        })
    }

    pub(super) fn net_visible(actor: &Actor, n: &Network, a: &NetworkAttrs) -> bool {
        actor.is_admin()
            || n.project_id.is_none()
            || a.shared
            || n.external
            || a.project_id == actor.project_id
    }

    pub(super) async fn network_view(&self, n: Network) -> NetResult<NetworkView> {
        let attrs = self.network_attrs(&n).await?;
        let subnets: Vec<Subnet> = self.inner.store.list_by_owner(&n.id).await?;
        Ok(NetworkView {
            network: n,
            attrs,
            subnets: subnets.into_iter().map(|s| s.id).collect(),
        })
    }

    /// Makes sure the bootstrapped networks (which have a CIDR but no
    /// subnet record) have their subnet, with an id derived from the network.
    pub(crate) async fn bootstrap_subnets(&self) -> Result<(), ComputeError> {
        let nets: Vec<Network> = self.inner.store.list().await?;
        for n in nets {
            if n.cidr.is_empty() {
                continue;
            }
            let subs: Vec<Subnet> = self.inner.store.list_by_owner(&n.id).await?;
            if !subs.is_empty() {
                continue;
            }
            let Ok(c) = parse_cidr(&n.cidr) else { continue };
            let gw = ip_num(&n.gateway).map(|g| g.0);
            let s = Subnet {
                id: derived_id(&n.id, "subnet"),
                network_id: n.id.clone(),
                project_id: n.project_id.clone().unwrap_or_default(),
                name: format!("{}-subnet", n.name),
                description: String::new(),
                ip_version: c.version,
                cidr: c.to_string(),
                gateway_ip: gw.map(|g| c.addr(g)),
                allocation_pools: default_pools(c, gw),
                dns_nameservers: vec![],
                host_routes: vec![],
                enable_dhcp: true,
                ipv6_ra_mode: None,
                ipv6_address_mode: None,
                created_at: Time::UNIX_EPOCH,
                updated_at: Time::UNIX_EPOCH,
                revision_number: 1,
            };
            match self.inner.store.insert(&s).await {
                Ok(()) | Err(StoreError::Duplicate(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// A network visible to the actor, by id.
    pub async fn net_get(&self, actor: &Actor, id: &str) -> NetResult<NetworkView> {
        let nf = || {
            NetError::not_found(
                "NetworkNotFound",
                format!("Network {id} could not be found."),
            )
        };
        let n: Network = self.inner.store.get(id).await?.ok_or_else(nf)?;
        let v = self.network_view(n).await?;
        if !Self::net_visible(actor, &v.network, &v.attrs) {
            return Err(nf());
        }
        Ok(v)
    }

    /// Networks visible to the actor.
    pub async fn net_list(&self, actor: &Actor) -> NetResult<Vec<NetworkView>> {
        let all: Vec<Network> = self.inner.store.list().await?;
        let mut out = vec![];
        for n in all {
            let v = self.network_view(n).await?;
            if Self::net_visible(actor, &v.network, &v.attrs) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Creates a network.
    pub async fn net_create(&self, actor: &Actor, r: NetworkReq) -> NetResult<NetworkView> {
        Self::require_member(actor, "create_network")?;
        let project = Self::owner_for(actor, &r.project_id, "create_network")?;
        let shared = r.shared.unwrap_or(false);
        let external = r.external.unwrap_or(false);
        if (shared || external) && !actor.is_admin() {
            return Err(NetError::policy(if shared {
                "create_network:shared"
            } else {
                "create_network:router:external"
            }));
        }
        let mtu = r.mtu.unwrap_or(DEFAULT_MTU);
        if !(68..=9000).contains(&mtu) {
            return Err(NetError::invalid_attr(
                "mtu",
                format!("'{mtu}' is not in range 68 through 9000"),
            ));
        }
        let t = now();
        let n = Network {
            id: ids::uuid(),
            name: r.name.unwrap_or_default(),
            project_id: (!shared && !external).then(|| project.clone()),
            cidr: String::new(),
            gateway: String::new(),
            external,
        };
        let a = NetworkAttrs {
            id: n.id.clone(),
            project_id: project,
            admin_state_up: r.admin_state_up.unwrap_or(true),
            shared,
            mtu,
            description: r.description.unwrap_or_default(),
            port_security_enabled: r.port_security_enabled.unwrap_or(true),
            created_at: t,
            updated_at: t,
            revision_number: 1,
        };
        self.inner.store.put(&a).await?;
        self.inner.store.insert(&n).await?;
        self.network_view(n).await
    }

    pub(super) fn may_modify(actor: &Actor, owner: &str, rule: &str) -> NetResult<()> {
        if actor.is_admin() || (actor.role >= Role::Member && actor.project_id == owner) {
            Ok(())
        } else {
            Err(NetError::policy(rule))
        }
    }

    /// Updates a network.
    pub async fn net_update(
        &self,
        actor: &Actor,
        id: &str,
        r: NetworkReq,
    ) -> NetResult<NetworkView> {
        let v = self.net_get(actor, id).await?;
        Self::may_modify(actor, v.project_id(), "update_network")?;
        if (r.shared.is_some() || r.external.is_some()) && !actor.is_admin() {
            return Err(NetError::policy("update_network:shared"));
        }
        let mut n = v.network;
        let mut a = v.attrs;
        if let Some(x) = r.name {
            n.name = x;
        }
        if let Some(x) = r.external {
            n.external = x;
        }
        if let Some(x) = r.shared {
            a.shared = x;
        }
        n.project_id = (!a.shared && !n.external).then(|| a.project_id.clone());
        if let Some(x) = r.description {
            a.description = x;
        }
        if let Some(x) = r.admin_state_up {
            a.admin_state_up = x;
        }
        if let Some(x) = r.mtu {
            a.mtu = x;
        }
        if let Some(x) = r.port_security_enabled {
            a.port_security_enabled = x;
        }
        a.updated_at = now();
        a.revision_number += 1;
        self.inner.store.put(&n).await?;
        self.inner.store.put(&a).await?;
        self.network_view(n).await
    }

    /// Deletes a network (refused while ports other than DHCP/router
    /// interfaces are on it).
    pub async fn net_delete(&self, actor: &Actor, id: &str) -> NetResult<()> {
        let v = self.net_get(actor, id).await?;
        Self::may_modify(actor, v.project_id(), "delete_network")?;
        let ports: Vec<Port> = self.inner.store.list_by_owner(id).await?;
        let dhcp: Vec<String> = self
            .inner
            .store
            .list_by_owner::<Subnet>(id)
            .await?
            .iter()
            .map(|s| dhcp_port_id(&s.id))
            .collect();
        if ports.iter().any(|p| !dhcp.contains(&p.id)) {
            return Err(NetError::conflict(
                "NetworkInUse",
                format!(
                    "Unable to complete operation on network {id}. There are one or more ports still in use on the network."
                ),
            ));
        }
        for s in self.inner.store.list_by_owner::<Subnet>(id).await? {
            self.drop_dhcp_port(&s.id).await?;
            self.inner.store.delete::<Subnet>(&s.id).await?;
            self.inner.store.delete::<Tags>(&s.id).await?;
        }
        self.inner.store.delete::<Network>(id).await?;
        self.inner.store.delete::<NetworkAttrs>(id).await?;
        self.inner.store.delete::<Tags>(id).await?;
        Ok(())
    }
}
