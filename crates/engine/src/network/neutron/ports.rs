//! The networking service's ports (their views, fixed IPs and address picking).

use super::*;

impl Engine {
    pub(super) fn subnet_of(subnets: &[Subnet], ip: &str) -> Option<String> {
        let (a, v) = ip_num(ip)?;
        subnets
            .iter()
            .find(|s| parse_cidr(&s.cidr).is_ok_and(|c| c.version == v && c.contains(a)))
            .map(|s| s.id.clone())
    }

    pub(super) async fn port_view_with(&self, p: Port, subnets: &[Subnet]) -> NetResult<PortView> {
        let attrs = match self.inner.store.get::<PortAttrs>(&p.id).await? {
            Some(a) => a,
            None => PortAttrs {
                id: p.id.clone(),
                name: String::new(),
                description: String::new(),
                admin_state_up: true,
                device_owner: String::new(),
                device_id: String::new(),
                extra_ips: vec![],
                security_groups: vec![],
                allowed_address_pairs: vec![],
                port_security_enabled: true,
                created_at: Time::UNIX_EPOCH,
                updated_at: Time::UNIX_EPOCH,
                revision_number: 1,
            },
        };
        let mut fixed_ips = vec![];
        if !p.fixed_ip.is_empty() {
            fixed_ips.push(FixedIp {
                subnet_id: Self::subnet_of(subnets, &p.fixed_ip).unwrap_or_default(),
                ip_address: p.fixed_ip.clone(),
            });
        }
        fixed_ips.extend(attrs.extra_ips.iter().cloned());
        let (device_id, device_owner) = match &p.server_id {
            Some(s) => (
                s.clone(),
                if attrs.device_owner.starts_with("compute:") {
                    attrs.device_owner.clone()
                } else {
                    self.compute_owner(s).await?
                },
            ),
            None => (attrs.device_id.clone(), attrs.device_owner.clone()),
        };
        let status = if !device_id.is_empty() && attrs.admin_state_up {
            "ACTIVE"
        } else {
            "DOWN"
        };
        let host_id = match &p.server_id {
            Some(sid) => self
                .inner
                .store
                .get_server(sid)
                .await?
                .and_then(|s| s.host)
                .unwrap_or_default(),
            None => String::new(),
        };
        Ok(PortView {
            port: p,
            attrs,
            fixed_ips,
            device_id,
            device_owner,
            status,
            host_id,
        })
    }

    pub(super) async fn ports_on_network(&self, net_id: &str) -> NetResult<Vec<PortView>> {
        let subnets: Vec<Subnet> = self.inner.store.list_by_owner(net_id).await?;
        let ports: Vec<Port> = self.inner.store.list_by_owner(net_id).await?;
        let mut out = vec![];
        for p in ports {
            out.push(self.port_view_with(p, &subnets).await?);
        }
        Ok(out)
    }

    /// A port visible to the actor.
    pub async fn port_get(&self, actor: &Actor, id: &str) -> NetResult<PortView> {
        let nf = || NetError::not_found("PortNotFound", format!("Port {id} could not be found."));
        let p: Port = self.inner.store.get(id).await?.ok_or_else(nf)?;
        if !actor.can_see(&p.project_id) {
            return Err(nf());
        }
        let subnets: Vec<Subnet> = self.inner.store.list_by_owner(&p.network_id).await?;
        self.port_view_with(p, &subnets).await
    }

    /// Ports visible to the actor.
    pub async fn port_list(&self, actor: &Actor) -> NetResult<Vec<PortView>> {
        let all: Vec<Port> = self.inner.store.list().await?;
        let all_subnets: Vec<Subnet> = self.inner.store.list().await?;
        let mut by_net: HashMap<String, Vec<Subnet>> = HashMap::new();
        for s in all_subnets {
            by_net.entry(s.network_id.clone()).or_default().push(s);
        }
        let mut out = vec![];
        for p in all {
            if actor.can_see(&p.project_id) {
                let subs = by_net.get(&p.network_id).cloned().unwrap_or_default();
                out.push(self.port_view_with(p, &subs).await?);
            }
        }
        Ok(out)
    }

    /// Picks fixed IPs for a port on `net_id` from the requests (or one
    /// address of the first subnet of each IP version when none is asked).
    pub(crate) async fn pick_ips(
        &self,
        net_id: &str,
        reqs: Option<&[FixedIpReq]>,
        except_port: Option<&str>,
    ) -> NetResult<Vec<FixedIp>> {
        let mut subnets: Vec<Subnet> = self.inner.store.list_by_owner(net_id).await?;
        subnets.sort_by_key(|s| (s.ip_version, s.created_at));
        let used: HashSet<String> = self
            .ports_on_network(net_id)
            .await?
            .into_iter()
            .filter(|p| Some(p.port.id.as_str()) != except_port)
            .flat_map(|p| p.fixed_ips.into_iter().map(|f| f.ip_address))
            .collect();
        let fips: Vec<FloatingIp> = self.inner.store.list().await?;
        let used: HashSet<String> = used
            .into_iter()
            .chain(
                fips.into_iter()
                    .filter(|f| f.network_id == net_id)
                    .map(|f| f.address),
            )
            .collect();
        let reqs: Vec<FixedIpReq> = match reqs {
            Some(r) => r.to_vec(),
            None => {
                let mut seen = HashSet::new();
                subnets
                    .iter()
                    .filter(|s| seen.insert(s.ip_version))
                    .map(|s| FixedIpReq {
                        subnet_id: Some(s.id.clone()),
                        ip_address: None,
                    })
                    .collect()
            }
        };
        let mut out: Vec<FixedIp> = vec![];
        for r in reqs {
            let subnet = match (&r.subnet_id, &r.ip_address) {
                (Some(sid), _) => subnets.iter().find(|s| &s.id == sid).ok_or_else(|| {
                    NetError::not_found(
                        "SubnetNotFound",
                        format!("Subnet {sid} could not be found."),
                    )
                })?,
                (None, Some(ip)) => {
                    let sid = Self::subnet_of(&subnets, ip).ok_or_else(|| {
                        NetError::bad_request(format!(
                            "IP address {ip} is not a valid IP for any of the subnets on the specified network."
                        ))
                    })?;
                    subnets.iter().find(|s| s.id == sid).expect("found above")
                }
                (None, None) => {
                    return Err(NetError::bad_request(
                        "Invalid input for fixed_ips. Reason: Exactly one of 'subnet_id' or 'ip_address' must be specified.",
                    ))
                }
            };
            let c = parse_cidr(&subnet.cidr).map_err(NetError::bad_request)?;
            let ip = match &r.ip_address {
                Some(ip) => {
                    let a = ip_num(ip)
                        .filter(|(a, v)| *v == c.version && c.contains(*a))
                        .ok_or_else(|| {
                            NetError::bad_request(format!(
                                "IP address {ip} is not a valid IP for the specified subnet."
                            ))
                        })?
                        .0;
                    let ip = c.addr(a);
                    if used.contains(&ip) || out.iter().any(|f| f.ip_address == ip) {
                        return Err(NetError::conflict(
                            "IpAddressAlreadyAllocated",
                            format!("IP address {ip} already allocated in subnet {}", subnet.id),
                        ));
                    }
                    ip
                }
                None => {
                    let pools = parse_pools(c, &subnet.allocation_pools)?;
                    let mut found = None;
                    'pools: for (s, e) in pools {
                        let mut a = s;
                        // bounded scan: at most 65536 candidates per pool
                        let mut n = 0u32;
                        while a <= e && n < 65536 {
                            let ip = c.addr(a);
                            if !used.contains(&ip) && !out.iter().any(|f| f.ip_address == ip) {
                                found = Some(ip);
                                break 'pools;
                            }
                            a += 1;
                            n += 1;
                        }
                    }
                    found.ok_or_else(|| {
                        NetError::conflict(
                            "IpAddressGenerationFailure",
                            format!("No more IP addresses available on network {net_id}."),
                        )
                    })?
                }
            };
            out.push(FixedIp {
                subnet_id: subnet.id.clone(),
                ip_address: ip,
            });
        }
        Ok(out)
    }

    pub(super) async fn check_groups(
        &self,
        actor: &Actor,
        project: &str,
        groups: &[String],
    ) -> NetResult<()> {
        for g in groups {
            let sg: Option<SecurityGroup> = self.inner.store.get(g).await?;
            if !sg.is_some_and(|s| s.project_id == project || actor.is_admin()) {
                return Err(NetError::not_found(
                    "SecurityGroupNotFound",
                    format!("Security group {g} does not exist"),
                ));
            }
        }
        Ok(())
    }

    /// The next address from the pools of `net_id`'s first subnet (IPv4
    /// first), for Nova's port allocation; None if the network has no
    /// subnet records. Candidates come from a per-subnet counter walking
    /// the pools round-robin, so concurrent builds get different addresses
    /// without reading every port of the network (which made each create
    /// O(ports) reads and retried on every race). The port records' unique
    /// index on (network, fixed IP) settles the rest: the caller asks again
    /// on a duplicate. Addresses no such index covers (extra fixed IPs of
    /// Neutron ports, floating IPs) are skipped here.
    pub(crate) async fn next_pool_address(
        &self,
        net_id: &str,
    ) -> Result<Option<String>, ComputeError> {
        let mut subnets: Vec<Subnet> = self.inner.store.list_by_owner(net_id).await?;
        subnets.sort_by_key(|s| s.ip_version);
        let Some(first) = subnets.first() else {
            return Ok(None);
        };
        let c = parse_cidr(&first.cidr).map_err(ComputeError::Conflict)?;
        let pools = parse_pools(c, &first.allocation_pools)
            .map_err(|e| ComputeError::Conflict(e.message))?;
        let size: u128 = pools.iter().map(|(s, e)| e - s + 1).sum();
        let attrs: Vec<PortAttrs> = self.inner.store.list().await?;
        let fips: Vec<FloatingIp> = self.inner.store.list().await?;
        let taken: HashSet<String> = attrs
            .into_iter()
            .flat_map(|a| a.extra_ips.into_iter().map(|f| f.ip_address))
            .chain(
                fips.into_iter()
                    .filter(|f| f.network_id == net_id)
                    .map(|f| f.address),
            )
            .collect();
        for _ in 0..size.min(65536) {
            let k = self
                .inner
                .store
                .next_counter(&format!("pool:{}", first.id))
                .await? as u128;
            let mut i = (k - 1) % size;
            let mut ip = None;
            for (s, e) in &pools {
                if i <= e - s {
                    ip = Some(c.addr(s + i));
                    break;
                }
                i -= e - s + 1;
            }
            match ip {
                Some(ip) if !taken.contains(&ip) => return Ok(Some(ip)),
                _ => continue,
            }
        }
        Err(ComputeError::Conflict(format!(
            "No more IP addresses available on network {net_id}."
        )))
    }

    /// Creates a port.
    pub async fn port_create(&self, actor: &Actor, r: PortReq) -> NetResult<PortView> {
        Self::require_member(actor, "create_port")?;
        let net_id = r.network_id.clone().ok_or_else(|| {
            NetError::bad_request(
                "Failed to parse request. Required attribute 'network_id' not specified",
            )
        })?;
        let v = self.net_get(actor, &net_id).await?;
        let project = Self::owner_for(actor, &r.project_id, "create_port")?;
        let mac = match &r.mac_address {
            Some(m) => {
                let m = m.to_ascii_lowercase();
                if !validate_mac(&m) {
                    return Err(NetError::invalid_attr(
                        "mac_address",
                        format!("'{m}' is not a valid MAC address"),
                    ));
                }
                let ports: Vec<Port> = self.inner.store.list_by_owner(&net_id).await?;
                if ports.iter().any(|p| p.mac_address == m) {
                    return Err(NetError::conflict(
                        "MacAddressInUse",
                        format!(
                            "Unable to complete operation for network {net_id}. The mac address {m} is in use."
                        ),
                    ));
                }
                m
            }
            None => ids::mac(),
        };
        for pair in r.allowed_address_pairs.iter().flatten() {
            if parse_cidr(&pair.ip_address).is_err() && ip_num(&pair.ip_address).is_none() {
                return Err(NetError::invalid_attr(
                    "allowed_address_pairs",
                    format!("'{}' is not a valid IP address", pair.ip_address),
                ));
            }
        }
        let port_security = r
            .port_security_enabled
            .unwrap_or(v.attrs.port_security_enabled);
        let groups = match &r.security_groups {
            Some(g) => g.clone(),
            None if port_security
                && !r
                    .device_owner
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("network:") =>
            {
                vec![self.default_security_group(&project).await?.id]
            }
            None => vec![],
        };
        if !port_security && !groups.is_empty() {
            return Err(NetError::conflict(
                "PortSecurityAndIPRequiredForSecurityGroups",
                "Port security must be enabled and port must have an IP address in order to use security groups.",
            ));
        }
        self.check_groups(actor, &project, &groups).await?;
        // A concurrent create may take the same address: the unique index
        // on (network, first address) refuses it and we pick again.
        for attempt in 0..8 {
            let ips = self.pick_ips(&net_id, r.fixed_ips.as_deref(), None).await?;
            let t = now();
            let id = ids::uuid();
            let p = Port {
                id: id.clone(),
                network_id: net_id.clone(),
                server_id: None,
                mac_address: mac.clone(),
                fixed_ip: ips
                    .first()
                    .map(|f| f.ip_address.clone())
                    .unwrap_or_default(),
                project_id: project.clone(),
            };
            let a = PortAttrs {
                id: id.clone(),
                name: r.name.clone().unwrap_or_default(),
                description: r.description.clone().unwrap_or_default(),
                admin_state_up: r.admin_state_up.unwrap_or(true),
                device_owner: r.device_owner.clone().unwrap_or_default(),
                device_id: r.device_id.clone().unwrap_or_default(),
                extra_ips: ips.iter().skip(1).cloned().collect(),
                security_groups: groups.clone(),
                allowed_address_pairs: r.allowed_address_pairs.clone().unwrap_or_default(),
                port_security_enabled: port_security,
                created_at: t,
                updated_at: t,
                revision_number: 1,
            };
            self.inner.store.put(&a).await?;
            match self.inner.store.insert(&p).await {
                Ok(()) => return self.port_get(actor, &id).await,
                Err(StoreError::Duplicate(_)) if attempt < 7 => {
                    self.inner.store.delete::<PortAttrs>(&id).await?;
                    continue;
                }
                Err(e) => {
                    self.inner.store.delete::<PortAttrs>(&id).await?;
                    return Err(e.into());
                }
            }
        }
        Err(NetError::conflict(
            "IpAddressGenerationFailure",
            format!("No more IP addresses available on network {net_id}."),
        ))
    }

    /// Updates a port.
    pub async fn port_update(&self, actor: &Actor, id: &str, r: PortReq) -> NetResult<PortView> {
        let v = self.port_get(actor, id).await?;
        Self::may_modify(actor, &v.port.project_id, "update_port")?;
        if r.network_id.is_some() {
            return Err(NetError::bad_request(
                "Cannot update read-only attribute network_id",
            ));
        }
        let mut p = v.port;
        let mut a = v.attrs;
        if let Some(ips) = &r.fixed_ips {
            let ips = self
                .pick_ips(&p.network_id, Some(ips.as_slice()), Some(id))
                .await?;
            p.fixed_ip = ips
                .first()
                .map(|f| f.ip_address.clone())
                .unwrap_or_default();
            a.extra_ips = ips.into_iter().skip(1).collect();
        }
        if let Some(m) = &r.mac_address {
            let m = m.to_ascii_lowercase();
            if m != p.mac_address {
                if p.server_id.is_some() {
                    return Err(NetError::conflict(
                        "PortBound",
                        format!("Unable to complete operation on port {id}, port is already bound, port type: ovs, old_mac {}, new_mac {m}.", p.mac_address),
                    ));
                }
                if !validate_mac(&m) {
                    return Err(NetError::invalid_attr(
                        "mac_address",
                        format!("'{m}' is not a valid MAC address"),
                    ));
                }
                p.mac_address = m;
            }
        }
        if let Some(x) = r.name {
            a.name = x;
        }
        if let Some(x) = r.description {
            a.description = x;
        }
        if let Some(x) = r.admin_state_up {
            a.admin_state_up = x;
        }
        if let Some(x) = r.device_owner {
            a.device_owner = x;
        }
        if let Some(x) = r.device_id {
            if x.is_empty() && p.server_id.is_some() {
                // Nova's detach clears device_id: unbind from the server.
                p.server_id = None;
            }
            a.device_id = x;
        }
        if let Some(x) = r.port_security_enabled {
            a.port_security_enabled = x;
        }
        if let Some(g) = r.security_groups {
            self.check_groups(actor, &p.project_id, &g).await?;
            a.security_groups = g;
        }
        if let Some(x) = r.allowed_address_pairs {
            a.allowed_address_pairs = x;
        }
        if !a.port_security_enabled && !a.security_groups.is_empty() {
            return Err(NetError::conflict(
                "PortSecurityAndIPRequiredForSecurityGroups",
                "Port security must be enabled and port must have an IP address in order to use security groups.",
            ));
        }
        a.updated_at = now();
        a.revision_number += 1;
        let server = p.server_id.clone();
        self.inner.store.put(&p).await.map_err(|e| match e {
            StoreError::Duplicate(_) => NetError::conflict(
                "IpAddressAlreadyAllocated",
                format!("IP address {} already allocated in subnet", p.fixed_ip),
            ),
            e => e.into(),
        })?;
        self.inner.store.put(&a).await?;
        if let Some(s) = server {
            let _ = self.refresh_attachments(&s).await;
        }
        self.port_get(actor, id).await
    }

    /// Deletes a port (its floating IPs are disassociated).
    pub async fn port_delete(&self, actor: &Actor, id: &str) -> NetResult<()> {
        let v = self.port_get(actor, id).await?;
        Self::may_modify(actor, &v.port.project_id, "delete_port")?;
        if v.device_owner == OWNER_ROUTER_INTERFACE && !actor.is_admin() {
            return Err(NetError::conflict(
                "PortInUse",
                format!(
                    "Unable to complete operation on port {id} for network {}. Port already has an attached device {}.",
                    v.port.network_id, v.device_id
                ),
            ));
        }
        for mut f in self.inner.store.list_by_ref::<FloatingIp>(id).await? {
            f.port_id = None;
            self.inner.store.put(&f).await?;
        }
        self.inner.store.delete::<Port>(id).await?;
        self.inner.store.delete::<PortAttrs>(id).await?;
        self.inner.store.delete::<Tags>(id).await?;
        if let Some(s) = v.port.server_id {
            let _ = self.refresh_attachments(&s).await;
        }
        Ok(())
    }
}
