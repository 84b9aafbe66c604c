//! The networking service's security groups and their rules.

use super::*;

impl Engine {
    /// The project's `default` group, created with Neutron's default rules
    /// on first use (id derived from the project, so concurrent calls agree).
    pub async fn default_security_group(&self, project: &str) -> NetResult<SecurityGroup> {
        let id = derived_id(project, "default-security-group");
        if let Some(g) = self.inner.store.get::<SecurityGroup>(&id).await? {
            return Ok(g);
        }
        let t = now();
        let g = SecurityGroup {
            id: id.clone(),
            project_id: project.into(),
            name: "default".into(),
            description: "Default security group".into(),
            stateful: true,
            created_at: t,
            updated_at: t,
            revision_number: 1,
        };
        match self.inner.store.insert(&g).await {
            Ok(()) => {}
            Err(StoreError::Duplicate(_)) => return Ok(self.inner.store.must_get(&id).await?),
            Err(e) => return Err(e.into()),
        }
        for (dir, eth, remote) in [
            ("egress", "IPv4", None),
            ("egress", "IPv6", None),
            ("ingress", "IPv4", Some(id.clone())),
            ("ingress", "IPv6", Some(id.clone())),
        ] {
            self.inner
                .store
                .put(&SecurityGroupRule {
                    id: derived_id(&id, &format!("{dir}-{eth}")),
                    security_group_id: id.clone(),
                    project_id: project.into(),
                    direction: dir.into(),
                    ethertype: eth.into(),
                    protocol: None,
                    port_range_min: None,
                    port_range_max: None,
                    remote_ip_prefix: None,
                    remote_group_id: remote,
                    description: String::new(),
                    created_at: t,
                    updated_at: t,
                    revision_number: 0,
                })
                .await?;
        }
        Ok(g)
    }

    /// A security group visible to the actor.
    pub async fn sg_get(&self, actor: &Actor, id: &str) -> NetResult<SecurityGroup> {
        let nf = || {
            NetError::not_found(
                "SecurityGroupNotFound",
                format!("Security group {id} does not exist"),
            )
        };
        let g: SecurityGroup = self.inner.store.get(id).await?.ok_or_else(nf)?;
        if !actor.can_see(&g.project_id) {
            return Err(nf());
        }
        Ok(g)
    }

    /// Security groups visible to the actor (the actor's default group is
    /// made on first listing, as Neutron does).
    pub async fn sg_list(&self, actor: &Actor) -> NetResult<Vec<SecurityGroup>> {
        self.default_security_group(&actor.project_id).await?;
        let all: Vec<SecurityGroup> = self.inner.store.list().await?;
        Ok(all
            .into_iter()
            .filter(|g| actor.can_see(&g.project_id))
            .collect())
    }

    /// Rules of a group.
    pub async fn sg_rules_of(&self, id: &str) -> NetResult<Vec<SecurityGroupRule>> {
        Ok(self.inner.store.list_by_owner(id).await?)
    }

    /// Creates a security group (with the two egress rules Neutron adds).
    pub async fn sg_create(
        &self,
        actor: &Actor,
        name: String,
        description: String,
        project: Option<String>,
    ) -> NetResult<SecurityGroup> {
        Self::require_member(actor, "create_security_group")?;
        let project = Self::owner_for(actor, &project, "create_security_group")?;
        self.default_security_group(&project).await?;
        if name == "default" {
            return Err(NetError::conflict(
                "SecurityGroupDefaultAlreadyExists",
                "Default security group already exists.",
            ));
        }
        let t = now();
        let g = SecurityGroup {
            id: ids::uuid(),
            project_id: project.clone(),
            name,
            description,
            stateful: true,
            created_at: t,
            updated_at: t,
            revision_number: 1,
        };
        self.inner.store.insert(&g).await?;
        for eth in ["IPv4", "IPv6"] {
            self.inner
                .store
                .put(&SecurityGroupRule {
                    id: ids::uuid(),
                    security_group_id: g.id.clone(),
                    project_id: project.clone(),
                    direction: "egress".into(),
                    ethertype: eth.into(),
                    protocol: None,
                    port_range_min: None,
                    port_range_max: None,
                    remote_ip_prefix: None,
                    remote_group_id: None,
                    description: String::new(),
                    created_at: t,
                    updated_at: t,
                    revision_number: 0,
                })
                .await?;
        }
        Ok(g)
    }

    /// Renames or re-describes a group.
    pub async fn sg_update(
        &self,
        actor: &Actor,
        id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> NetResult<SecurityGroup> {
        let mut g = self.sg_get(actor, id).await?;
        Self::may_modify(actor, &g.project_id, "update_security_group")?;
        if let Some(n) = name {
            if g.name == "default" && n != "default" {
                return Err(NetError::conflict(
                    "SecurityGroupCannotUpdateDefault",
                    "Updating default security group not allowed.",
                ));
            }
            g.name = n;
        }
        if let Some(d) = description {
            g.description = d;
        }
        g.updated_at = now();
        g.revision_number += 1;
        self.inner.store.put(&g).await?;
        Ok(g)
    }

    /// Deletes a group (not the default one, nor one ports use).
    pub async fn sg_delete(&self, actor: &Actor, id: &str) -> NetResult<()> {
        let g = self.sg_get(actor, id).await?;
        Self::may_modify(actor, &g.project_id, "delete_security_group")?;
        if g.name == "default" && !actor.is_admin() {
            return Err(NetError::conflict(
                "SecurityGroupCannotRemoveDefault",
                "Insufficient rights for removing default security group.",
            ));
        }
        let attrs: Vec<PortAttrs> = self.inner.store.list().await?;
        if attrs
            .iter()
            .any(|a| a.security_groups.iter().any(|s| s == id))
        {
            return Err(NetError::conflict(
                "SecurityGroupInUse",
                format!("Security Group {id} in use."),
            ));
        }
        for r in self.sg_rules_of(id).await? {
            self.inner.store.delete::<SecurityGroupRule>(&r.id).await?;
        }
        self.inner.store.delete::<SecurityGroup>(id).await?;
        self.inner.store.delete::<Tags>(id).await?;
        Ok(())
    }

    /// A rule visible to the actor.
    pub async fn sg_rule_get(&self, actor: &Actor, id: &str) -> NetResult<SecurityGroupRule> {
        let nf = || {
            NetError::not_found(
                "SecurityGroupRuleNotFound",
                format!("Security group rule {id} does not exist"),
            )
        };
        let r: SecurityGroupRule = self.inner.store.get(id).await?.ok_or_else(nf)?;
        if !actor.can_see(&r.project_id) {
            return Err(nf());
        }
        Ok(r)
    }

    /// Rules visible to the actor.
    pub async fn sg_rule_list(&self, actor: &Actor) -> NetResult<Vec<SecurityGroupRule>> {
        self.default_security_group(&actor.project_id).await?;
        let all: Vec<SecurityGroupRule> = self.inner.store.list().await?;
        Ok(all
            .into_iter()
            .filter(|r| actor.can_see(&r.project_id))
            .collect())
    }

    /// Creates a rule, validated as Neutron does.
    pub async fn sg_rule_create(&self, actor: &Actor, r: RuleReq) -> NetResult<SecurityGroupRule> {
        Self::require_member(actor, "create_security_group_rule")?;
        let gid = r.security_group_id.clone().ok_or_else(|| {
            NetError::bad_request(
                "Failed to parse request. Required attribute 'security_group_id' not specified",
            )
        })?;
        let g = self.sg_get(actor, &gid).await?;
        Self::may_modify(actor, &g.project_id, "create_security_group_rule")?;
        let direction = r.direction.clone().ok_or_else(|| {
            NetError::bad_request(
                "Failed to parse request. Required attribute 'direction' not specified",
            )
        })?;
        if direction != "ingress" && direction != "egress" {
            return Err(NetError::invalid_attr(
                "direction",
                format!("'{direction}' is not in ['ingress', 'egress']"),
            ));
        }
        let ethertype = r.ethertype.clone().unwrap_or_else(|| "IPv4".into());
        let ethertype = match ethertype.to_ascii_lowercase().as_str() {
            "ipv4" => "IPv4".to_string(),
            "ipv6" => "IPv6".to_string(),
            _ => {
                return Err(NetError::invalid_attr(
                    "ethertype",
                    format!("'{ethertype}' is not in ['IPv4', 'IPv6']"),
                ))
            }
        };
        let protocol = r.protocol.clone().filter(|p| !p.is_empty() && p != "any");
        if let Some(p) = &protocol {
            let known = [
                "ah",
                "dccp",
                "egp",
                "esp",
                "gre",
                "hopopt",
                "icmp",
                "igmp",
                "ip",
                "ipip",
                "ipv6-encap",
                "ipv6-frag",
                "ipv6-icmp",
                "icmpv6",
                "ipv6-nonxt",
                "ipv6-opts",
                "ipv6-route",
                "ospf",
                "pgm",
                "rsvp",
                "sctp",
                "tcp",
                "udp",
                "udplite",
                "vrrp",
            ];
            if !known.contains(&p.as_str()) && p.parse::<u8>().is_err() {
                return Err(NetError::new(
                    NetErrorKind::BadRequest,
                    "SecurityGroupRuleInvalidProtocol",
                    format!(
                        "Security group rule protocol {p} not supported. Only protocol values [None, {}] and integer representations [0 to 255] are supported.",
                        known.join(", ")
                    ),
                ));
            }
        }
        let (min, max) = (r.port_range_min, r.port_range_max);
        if min.is_some() || max.is_some() {
            match protocol.as_deref() {
                Some("tcp") | Some("udp") | Some("sctp") | Some("dccp") | Some("udplite") => {
                    let (a, b) = (min.unwrap_or(0), max.unwrap_or(0));
                    if min.is_none() || max.is_none() || a > b || a == 0 || b > 65535 {
                        return Err(NetError::new(
                            NetErrorKind::BadRequest,
                            "SecurityGroupInvalidPortRange",
                            "For TCP/UDP protocols, port_range_min must be <= port_range_max",
                        ));
                    }
                }
                Some("icmp") | Some("ipv6-icmp") | Some("icmpv6")
                    if min.is_some_and(|v| v > 255) =>
                {
                    return Err(NetError::new(
                        NetErrorKind::BadRequest,
                        "SecurityGroupInvalidIcmpValue",
                        format!(
                            "Invalid value for ICMP port_range_min: {}",
                            min.unwrap_or(0)
                        ),
                    ));
                }
                None => {
                    return Err(NetError::new(
                        NetErrorKind::BadRequest,
                        "SecurityGroupProtocolRequiredWithPorts",
                        "Must also specify protocol if port range is given.",
                    ))
                }
                _ => {}
            }
        }
        if r.remote_ip_prefix.is_some() && r.remote_group_id.is_some() {
            return Err(NetError::new(
                NetErrorKind::BadRequest,
                "SecurityGroupRemoteGroupAndRemoteIpPrefix",
                "Only remote_ip_prefix or remote_group_id may be provided.",
            ));
        }
        let prefix = match &r.remote_ip_prefix {
            Some(p) => {
                let c = match parse_cidr(p) {
                    Ok(c) => c,
                    Err(_) => {
                        // Neutron normalises a host address or a non-network CIDR.
                        let (ip, len) = p.split_once('/').unwrap_or((p, ""));
                        let (a, v) = ip_num(ip).ok_or_else(|| {
                            NetError::invalid_attr(
                                "remote_ip_prefix",
                                format!("'{p}' is not a valid IP subnet"),
                            )
                        })?;
                        let bits = if v == 4 { 32 } else { 128 };
                        let len = if len.is_empty() {
                            bits
                        } else {
                            len.parse().unwrap_or(255)
                        };
                        parse_cidr(&format!("{}/{len}", to_ip(a, v))).or_else(|_| {
                            let s = parse_cidr(&format!("{}/{bits}", to_ip(a, v)))
                                .map_err(|m| NetError::invalid_attr("remote_ip_prefix", m))?;
                            if len > bits {
                                return Err(NetError::invalid_attr(
                                    "remote_ip_prefix",
                                    format!("'{p}' is not a valid IP subnet"),
                                ));
                            }
                            let mask = if len == 0 {
                                0
                            } else {
                                (u128::MAX << (128 - len as u32)) >> (128 - bits as u32)
                            };
                            Ok(Cidr {
                                net: s.net & mask,
                                len,
                                version: v,
                            })
                        })?
                    }
                };
                if (c.version == 4) != (ethertype == "IPv4") {
                    return Err(NetError::new(
                        NetErrorKind::BadRequest,
                        "SecurityGroupRuleParameterConflict",
                        format!("Conflicting value ethertype {ethertype} for CIDR {p}"),
                    ));
                }
                Some(c.to_string())
            }
            None => None,
        };
        if let Some(rg) = &r.remote_group_id {
            self.sg_get(actor, rg).await?;
        }
        let t = now();
        let rule = SecurityGroupRule {
            id: ids::uuid(),
            security_group_id: gid.clone(),
            project_id: g.project_id.clone(),
            direction,
            ethertype,
            protocol,
            port_range_min: min,
            port_range_max: max,
            remote_ip_prefix: prefix,
            remote_group_id: r.remote_group_id.clone(),
            description: r.description.clone().unwrap_or_default(),
            created_at: t,
            updated_at: t,
            revision_number: 0,
        };
        for e in self.sg_rules_of(&gid).await? {
            if e.direction == rule.direction
                && e.ethertype == rule.ethertype
                && e.protocol == rule.protocol
                && e.port_range_min == rule.port_range_min
                && e.port_range_max == rule.port_range_max
                && e.remote_ip_prefix == rule.remote_ip_prefix
                && e.remote_group_id == rule.remote_group_id
            {
                return Err(NetError::conflict(
                    "SecurityGroupRuleExists",
                    format!("Security group rule already exists. Rule id is {}.", e.id),
                ));
            }
        }
        self.inner.store.insert(&rule).await?;
        Ok(rule)
    }

    /// Deletes a rule.
    pub async fn sg_rule_delete(&self, actor: &Actor, id: &str) -> NetResult<()> {
        let r = self.sg_rule_get(actor, id).await?;
        Self::may_modify(actor, &r.project_id, "delete_security_group_rule")?;
        self.inner.store.delete::<SecurityGroupRule>(id).await?;
        Ok(())
    }
}
