//! The networking service's subnets (their pools, gateways and the bootstrap of the default ones).

use super::*;

impl Engine {
    pub(super) async fn subnet_visible(&self, actor: &Actor, s: &Subnet) -> NetResult<bool> {
        if actor.is_admin() || s.project_id == actor.project_id {
            return Ok(true);
        }
        Ok(
            match self.inner.store.get::<Network>(&s.network_id).await? {
                Some(n) => {
                    let a = self.network_attrs(&n).await?;
                    Self::net_visible(actor, &n, &a)
                }
                None => false,
            },
        )
    }

    /// A subnet visible to the actor.
    pub async fn subnet_get(&self, actor: &Actor, id: &str) -> NetResult<Subnet> {
        let nf =
            || NetError::not_found("SubnetNotFound", format!("Subnet {id} could not be found."));
        let s: Subnet = self.inner.store.get(id).await?.ok_or_else(nf)?;
        if !self.subnet_visible(actor, &s).await? {
            return Err(nf());
        }
        Ok(s)
    }

    /// Subnets visible to the actor.
    pub async fn subnet_list(&self, actor: &Actor) -> NetResult<Vec<Subnet>> {
        let all: Vec<Subnet> = self.inner.store.list().await?;
        let mut out = vec![];
        for s in all {
            if self.subnet_visible(actor, &s).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Creates a subnet, validated as Neutron does.
    pub async fn subnet_create(&self, actor: &Actor, r: SubnetReq) -> NetResult<Subnet> {
        Self::require_member(actor, "create_subnet")?;
        let net_id = r.network_id.clone().ok_or_else(|| {
            NetError::bad_request(
                "Failed to parse request. Required attribute 'network_id' not specified",
            )
        })?;
        let ipv = r.ip_version.ok_or_else(|| {
            NetError::bad_request(
                "Failed to parse request. Required attribute 'ip_version' not specified",
            )
        })?;
        if ipv != 4 && ipv != 6 {
            return Err(NetError::invalid_attr(
                "ip_version",
                format!("'{ipv}' is not in [4, 6]"),
            ));
        }
        let cidr_s = r.cidr.clone().ok_or_else(|| {
            NetError::bad_request(
                "Bad subnets request: a subnetpool must be specified in the absence of a cidr.",
            )
        })?;
        let c = parse_cidr(&cidr_s).map_err(|m| NetError::invalid_attr("cidr", m))?;
        if c.version != ipv {
            return Err(NetError::invalid_input(format!(
                "Cidr {cidr_s} does not match the ip_version {ipv}"
            )));
        }
        if c.version == 4 && c.len > 30 || c.version == 6 && c.len > 126 {
            return Err(NetError::invalid_input(format!(
                "Invalid CIDR {cidr_s} for IPv{ipv} subnet"
            )));
        }
        let v = self.net_get(actor, &net_id).await?;
        if !actor.is_admin() && v.project_id() != actor.project_id {
            return Err(NetError::policy("create_subnet"));
        }
        let project = Self::owner_for(actor, &r.project_id, "create_subnet")?;
        let existing: Vec<Subnet> = self.inner.store.list_by_owner(&net_id).await?;
        for e in &existing {
            if let Ok(ec) = parse_cidr(&e.cidr) {
                if ec.overlaps(c) {
                    return Err(NetError::invalid_input(format!(
                        "Requested subnet with cidr: {cidr_s} for network: {net_id} overlaps with another subnet"
                    )));
                }
            }
        }
        let gateway = match &r.gateway_ip {
            Some(None) => None,
            Some(Some(g)) => {
                let (ga, gv) = ip_num(g).ok_or_else(|| {
                    NetError::invalid_attr("gateway_ip", format!("'{g}' is not a valid IP address"))
                })?;
                if gv != ipv {
                    return Err(NetError::invalid_input(format!(
                        "gateway_ip '{g}' does not match the ip_version '{ipv}'"
                    )));
                }
                if !c.contains(ga) || (ipv == 4 && (ga == c.net || ga == c.last())) {
                    return Err(NetError::invalid_input("Gateway is not valid on subnet"));
                }
                Some(ga)
            }
            None => Some(c.net + 1),
        };
        let pools = match &r.allocation_pools {
            Some(p) => {
                let ranges = parse_pools(c, p)?;
                if let Some(g) = gateway {
                    for (i, (s, e)) in ranges.iter().enumerate() {
                        if g >= *s && g <= *e {
                            return Err(NetError::conflict(
                                "GatewayConflictWithAllocationPools",
                                format!(
                                    "Gateway ip {} conflicts with allocation pool {}.",
                                    c.addr(g),
                                    pool_str(&p[i])
                                ),
                            ));
                        }
                    }
                }
                p.iter()
                    .zip(ranges)
                    .map(|(_, (s, e))| AllocationPool {
                        start: c.addr(s),
                        end: c.addr(e),
                    })
                    .collect()
            }
            None => default_pools(c, gateway),
        };
        let dns = r.dns_nameservers.clone().unwrap_or_default();
        for d in &dns {
            if ip_num(d).is_none() {
                return Err(NetError::invalid_attr(
                    "dns_nameservers",
                    format!("'{d}' is not a valid nameserver"),
                ));
            }
        }
        for m in [&r.ipv6_ra_mode, &r.ipv6_address_mode]
            .into_iter()
            .flatten()
        {
            if ipv == 4 {
                return Err(NetError::invalid_input(
                    "ipv6_ra_mode or ipv6_address_mode cannot be set when enable_dhcp is set to False",
                ));
            }
            if !["slaac", "dhcpv6-stateful", "dhcpv6-stateless"].contains(&m.as_str()) {
                return Err(NetError::invalid_attr(
                    "ipv6_address_mode",
                    format!("'{m}' is not in ['dhcpv6-stateful', 'dhcpv6-stateless', 'slaac']"),
                ));
            }
        }
        let t = now();
        let s = Subnet {
            id: ids::uuid(),
            network_id: net_id.clone(),
            project_id: project,
            name: r.name.unwrap_or_default(),
            description: r.description.unwrap_or_default(),
            ip_version: ipv,
            cidr: c.to_string(),
            gateway_ip: gateway.map(|g| c.addr(g)),
            allocation_pools: pools,
            dns_nameservers: dns,
            host_routes: r.host_routes.unwrap_or_default(),
            enable_dhcp: r.enable_dhcp.unwrap_or(true),
            ipv6_ra_mode: r.ipv6_ra_mode,
            ipv6_address_mode: r.ipv6_address_mode,
            created_at: t,
            updated_at: t,
            revision_number: 1,
        };
        self.inner.store.insert(&s).await?;
        self.ensure_dhcp_port(&s).await?;
        // Nova's port allocation uses the network's first IPv4 range.
        let mut n = v.network;
        if ipv == 4 && n.cidr.is_empty() {
            n.cidr = s.cidr.clone();
            n.gateway = s.gateway_ip.clone().unwrap_or_default();
            self.inner.store.put(&n).await?;
        }
        Ok(s)
    }

    /// Updates a subnet's mutable attributes.
    pub async fn subnet_update(&self, actor: &Actor, id: &str, r: SubnetReq) -> NetResult<Subnet> {
        let mut s = self.subnet_get(actor, id).await?;
        Self::may_modify(actor, &s.project_id, "update_subnet")?;
        if r.cidr.is_some() || r.ip_version.is_some() || r.network_id.is_some() {
            return Err(NetError::bad_request(
                "Cannot update read-only attribute cidr",
            ));
        }
        let c = parse_cidr(&s.cidr).map_err(NetError::bad_request)?;
        if let Some(x) = r.name {
            s.name = x;
        }
        if let Some(x) = r.description {
            s.description = x;
        }
        if let Some(g) = r.gateway_ip {
            s.gateway_ip = match g {
                None => None,
                Some(g) => match ip_num(&g) {
                    Some((a, v)) if v == s.ip_version && c.contains(a) => Some(c.addr(a)),
                    _ => return Err(NetError::invalid_input("Gateway is not valid on subnet")),
                },
            };
        }
        if let Some(p) = r.allocation_pools {
            parse_pools(c, &p)?;
            s.allocation_pools = p;
        }
        if let Some(x) = r.dns_nameservers {
            s.dns_nameservers = x;
        }
        if let Some(x) = r.host_routes {
            s.host_routes = x;
        }
        if let Some(x) = r.enable_dhcp {
            s.enable_dhcp = x;
        }
        s.updated_at = now();
        s.revision_number += 1;
        self.inner.store.put(&s).await?;
        self.ensure_dhcp_port(&s).await?;
        Ok(s)
    }

    /// Deletes a subnet (refused while ports hold addresses from it, other
    /// than router interfaces).
    pub async fn subnet_delete(&self, actor: &Actor, id: &str) -> NetResult<()> {
        let s = self.subnet_get(actor, id).await?;
        Self::may_modify(actor, &s.project_id, "delete_subnet")?;
        let ports = self.ports_on_network(&s.network_id).await?;
        let dhcp = dhcp_port_id(id);
        if ports
            .iter()
            .filter(|p| p.port.id != dhcp)
            .any(|p| p.fixed_ips.iter().any(|f| f.subnet_id == id))
        {
            return Err(NetError::conflict(
                "SubnetInUse",
                format!(
                    "Unable to complete operation on subnet {id}: One or more ports have an IP allocation from this subnet."
                ),
            ));
        }
        self.drop_dhcp_port(id).await?;
        self.inner.store.delete::<Subnet>(id).await?;
        self.inner.store.delete::<Tags>(id).await?;
        if let Some(mut n) = self.inner.store.get::<Network>(&s.network_id).await? {
            if n.cidr == s.cidr {
                let rest: Vec<Subnet> = self.inner.store.list_by_owner(&n.id).await?;
                match rest.iter().find(|x| x.ip_version == 4) {
                    Some(x) => {
                        n.cidr = x.cidr.clone();
                        n.gateway = x.gateway_ip.clone().unwrap_or_default();
                    }
                    None => {
                        n.cidr.clear();
                        n.gateway.clear();
                    }
                }
                self.inner.store.put(&n).await?;
            }
        }
        Ok(())
    }
}
