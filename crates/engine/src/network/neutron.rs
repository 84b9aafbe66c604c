//! The networking service behind the OpenStack Networking (Neutron) API:
//! networks, subnets, ports, floating IPs, security groups and routers.
//!
//! It reuses the records Nova's server create allocates from (the core
//! [`Network`], [`Port`] and [`FloatingIp`]) and keeps the attributes only
//! the networking API has in side records keyed by the same id
//! ([`NetworkAttrs`], [`PortAttrs`]). Subnets, security groups, their rules
//! and routers are records of their own. Errors carry Neutron's exception
//! name ([`NetError::reason`]) so a front can render Neutron's fault body.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use lifeboat_core::{ids, Actor, FloatingIp, Network, Port, Role, Time};
use lifeboat_store::{Record, StoreError};
use serde::{Deserialize, Serialize};

use crate::{ComputeError, Engine};

/// HTTP-ish class of a [`NetError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetErrorKind {
    /// 400.
    BadRequest,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 409.
    Conflict,
    /// 500.
    Internal,
}

/// A networking failure with Neutron's exception name and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct NetError {
    /// Class.
    pub kind: NetErrorKind,
    /// Neutron's exception name (`NetworkNotFound`, `HTTPBadRequest`, ...).
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

impl NetError {
    fn new(kind: NetErrorKind, reason: &'static str, message: impl Into<String>) -> Self {
        NetError {
            kind,
            reason,
            message: message.into(),
        }
    }
    /// A 400 `HTTPBadRequest` (attribute validation).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(NetErrorKind::BadRequest, "HTTPBadRequest", message)
    }
    /// `Invalid input for <attr>. Reason: <reason>.`
    pub fn invalid_attr(attr: &str, reason: impl std::fmt::Display) -> Self {
        Self::bad_request(format!("Invalid input for {attr}. Reason: {reason}."))
    }
    /// Neutron's `InvalidInput`.
    pub fn invalid_input(msg: impl std::fmt::Display) -> Self {
        Self::new(
            NetErrorKind::BadRequest,
            "InvalidInput",
            format!("Invalid input for operation: {msg}."),
        )
    }
    fn not_found(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(NetErrorKind::NotFound, reason, message)
    }
    fn conflict(reason: &'static str, message: impl Into<String>) -> Self {
        Self::new(NetErrorKind::Conflict, reason, message)
    }
    fn policy(rule: &str) -> Self {
        Self::new(
            NetErrorKind::Forbidden,
            "PolicyNotAuthorized",
            format!("rule:{rule} is disallowed by policy"),
        )
    }
}

impl From<StoreError> for NetError {
    fn from(e: StoreError) -> Self {
        ComputeError::from(e).into()
    }
}

impl From<ComputeError> for NetError {
    fn from(e: ComputeError) -> Self {
        let m = e.to_string();
        match e {
            ComputeError::NotFound { .. } => NetError::not_found("NotFound", m),
            ComputeError::BadRequest(_) => NetError::bad_request(m),
            ComputeError::Forbidden(_) | ComputeError::Unauthorized(_) => {
                NetError::new(NetErrorKind::Forbidden, "Forbidden", m)
            }
            ComputeError::Conflict(_) | ComputeError::Denied(_) => {
                NetError::conflict("Conflict", m)
            }
            _ => NetError::new(NetErrorKind::Internal, "HTTPInternalServerError", m),
        }
    }
}

/// Result of the networking service.
pub type NetResult<T> = Result<T, NetError>;

/// Default MTU of a network.
pub const DEFAULT_MTU: u32 = 1500;

fn now() -> Time {
    chrono::Utc::now()
}

/// Attributes of a network only the networking API has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkAttrs {
    /// Network id.
    pub id: String,
    /// Owner project (also for shared networks).
    pub project_id: String,
    /// Administrative state.
    pub admin_state_up: bool,
    /// Shared with every project.
    pub shared: bool,
    /// MTU.
    pub mtu: u32,
    /// Description.
    pub description: String,
    /// Default of its ports' `port_security_enabled`.
    pub port_security_enabled: bool,
    /// Created.
    pub created_at: Time,
    /// Updated.
    pub updated_at: Time,
    /// Revision.
    pub revision_number: u64,
}

impl Record for NetworkAttrs {
    const KIND: &'static str = "net_attrs";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// An allocation pool (inclusive range).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocationPool {
    /// First address.
    pub start: String,
    /// Last address.
    pub end: String,
}

/// A host route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRoute {
    /// Destination CIDR.
    pub destination: String,
    /// Next hop.
    pub nexthop: String,
}

/// A subnet: an IPv4 or IPv6 range of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    /// UUID.
    pub id: String,
    /// Network.
    pub network_id: String,
    /// Owner project.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// 4 or 6.
    pub ip_version: u8,
    /// CIDR.
    pub cidr: String,
    /// Gateway, None for no gateway.
    pub gateway_ip: Option<String>,
    /// Allocation pools.
    pub allocation_pools: Vec<AllocationPool>,
    /// DNS servers.
    pub dns_nameservers: Vec<String>,
    /// Host routes.
    pub host_routes: Vec<HostRoute>,
    /// DHCP on.
    pub enable_dhcp: bool,
    /// IPv6 RA mode.
    pub ipv6_ra_mode: Option<String>,
    /// IPv6 address mode.
    pub ipv6_address_mode: Option<String>,
    /// Created.
    pub created_at: Time,
    /// Updated.
    pub updated_at: Time,
    /// Revision.
    pub revision_number: u64,
}

impl Record for Subnet {
    const KIND: &'static str = "subnet";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn owner(&self) -> String {
        self.network_id.clone()
    }
}

/// One fixed IP of a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedIp {
    /// Subnet.
    pub subnet_id: String,
    /// Address.
    pub ip_address: String,
}

/// An allowed address pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    /// IP or CIDR.
    pub ip_address: String,
    /// MAC.
    pub mac_address: String,
}

/// Attributes of a port only the networking API has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortAttrs {
    /// Port id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Administrative state.
    pub admin_state_up: bool,
    /// Device owner (`compute:nova`, `network:router_interface`, ...).
    pub device_owner: String,
    /// Device id when the device is not a server.
    pub device_id: String,
    /// Fixed IPs beyond the core port's first one.
    pub extra_ips: Vec<FixedIp>,
    /// Security groups.
    pub security_groups: Vec<String>,
    /// Allowed address pairs.
    pub allowed_address_pairs: Vec<AddressPair>,
    /// Port security.
    pub port_security_enabled: bool,
    /// Created.
    pub created_at: Time,
    /// Updated.
    pub updated_at: Time,
    /// Revision.
    pub revision_number: u64,
}

impl Record for PortAttrs {
    const KIND: &'static str = "port_attrs";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// Tags of any networking resource (keyed by the resource's id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tags {
    /// Resource id.
    pub id: String,
    /// Tags.
    pub tags: Vec<String>,
}

impl Record for Tags {
    const KIND: &'static str = "net_tags";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// The networking API's view of a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkView {
    /// Core record.
    pub network: Network,
    /// Side attributes.
    pub attrs: NetworkAttrs,
    /// Subnet ids.
    pub subnets: Vec<String>,
}

impl NetworkView {
    /// Owner project.
    pub fn project_id(&self) -> &str {
        &self.attrs.project_id
    }
}

/// The networking API's view of a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortView {
    /// Core record.
    pub port: Port,
    /// Side attributes.
    pub attrs: PortAttrs,
    /// All fixed IPs.
    pub fixed_ips: Vec<FixedIp>,
    /// Effective device id.
    pub device_id: String,
    /// Effective device owner.
    pub device_owner: String,
    /// `ACTIVE` when bound, else `DOWN`.
    pub status: &'static str,
    /// `binding:host_id`: the host of the server the port is bound to ("" when unbound).
    pub host_id: String,
}

/// A network create or update request (None = unset / unchanged).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NetworkReq {
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Admin state.
    pub admin_state_up: Option<bool>,
    /// Shared.
    pub shared: Option<bool>,
    /// External.
    pub external: Option<bool>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Port security default.
    pub port_security_enabled: Option<bool>,
    /// Owner (admin only).
    pub project_id: Option<String>,
}

/// A subnet create or update request.
#[derive(Debug, Clone, Default)]
pub struct SubnetReq {
    /// Network (create only).
    pub network_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// 4 or 6 (create only).
    pub ip_version: Option<u8>,
    /// CIDR (create only).
    pub cidr: Option<String>,
    /// Gateway: None unchanged/default, Some(None) no gateway.
    pub gateway_ip: Option<Option<String>>,
    /// Pools.
    pub allocation_pools: Option<Vec<AllocationPool>>,
    /// DNS servers.
    pub dns_nameservers: Option<Vec<String>>,
    /// Host routes.
    pub host_routes: Option<Vec<HostRoute>>,
    /// DHCP.
    pub enable_dhcp: Option<bool>,
    /// IPv6 RA mode.
    pub ipv6_ra_mode: Option<String>,
    /// IPv6 address mode.
    pub ipv6_address_mode: Option<String>,
    /// Owner (admin only).
    pub project_id: Option<String>,
}

/// A requested fixed IP: subnet, address or both.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FixedIpReq {
    /// Subnet.
    pub subnet_id: Option<String>,
    /// Address.
    pub ip_address: Option<String>,
}

/// A port create or update request.
#[derive(Debug, Clone, Default)]
pub struct PortReq {
    /// Network (create only).
    pub network_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Admin state.
    pub admin_state_up: Option<bool>,
    /// MAC (create only).
    pub mac_address: Option<String>,
    /// Fixed IPs.
    pub fixed_ips: Option<Vec<FixedIpReq>>,
    /// Device id.
    pub device_id: Option<String>,
    /// Device owner.
    pub device_owner: Option<String>,
    /// Security groups.
    pub security_groups: Option<Vec<String>>,
    /// Allowed address pairs.
    pub allowed_address_pairs: Option<Vec<AddressPair>>,
    /// Port security.
    pub port_security_enabled: Option<bool>,
    /// Owner (admin only).
    pub project_id: Option<String>,
}

/// A security group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// UUID.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Stateful.
    pub stateful: bool,
    /// Created.
    pub created_at: Time,
    /// Updated.
    pub updated_at: Time,
    /// Revision.
    pub revision_number: u64,
}

impl Record for SecurityGroup {
    const KIND: &'static str = "security_group";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn owner(&self) -> String {
        self.project_id.clone()
    }
}

/// A security group rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    /// UUID.
    pub id: String,
    /// Group.
    pub security_group_id: String,
    /// Owner project.
    pub project_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// Protocol name or number.
    pub protocol: Option<String>,
    /// Port range minimum.
    pub port_range_min: Option<u32>,
    /// Port range maximum.
    pub port_range_max: Option<u32>,
    /// Remote prefix.
    pub remote_ip_prefix: Option<String>,
    /// Remote group.
    pub remote_group_id: Option<String>,
    /// Description.
    pub description: String,
    /// Created.
    pub created_at: Time,
    /// Updated.
    pub updated_at: Time,
    /// Revision.
    pub revision_number: u64,
}

impl Record for SecurityGroupRule {
    const KIND: &'static str = "security_group_rule";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn owner(&self) -> String {
        self.security_group_id.clone()
    }
}

/// A security group rule create request.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RuleReq {
    /// Group.
    pub security_group_id: Option<String>,
    /// Direction.
    pub direction: Option<String>,
    /// Ethertype.
    pub ethertype: Option<String>,
    /// Protocol.
    pub protocol: Option<String>,
    /// Min port.
    pub port_range_min: Option<u32>,
    /// Max port.
    pub port_range_max: Option<u32>,
    /// Remote prefix.
    pub remote_ip_prefix: Option<String>,
    /// Remote group.
    pub remote_group_id: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Owner (admin only).
    pub project_id: Option<String>,
}

/// Attributes of a floating IP only the networking API has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIpAttrs {
    /// Floating IP id.
    pub id: String,
    /// Description.
    pub description: String,
    /// Fixed IP of the port it maps to.
    pub fixed_ip_address: Option<String>,
    /// Created.
    pub created_at: Time,
    /// Updated.
    pub updated_at: Time,
    /// Revision.
    pub revision_number: u64,
}

impl Record for FloatingIpAttrs {
    const KIND: &'static str = "fip_attrs";
    fn id(&self) -> String {
        self.id.clone()
    }
}

/// The networking API's view of a floating IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FloatingIpView {
    /// Core record.
    pub fip: FloatingIp,
    /// Side attributes.
    pub attrs: FloatingIpAttrs,
    /// Fixed IP it maps to.
    pub fixed_ip_address: Option<String>,
    /// Router of the port's subnet, if any.
    pub router_id: Option<String>,
    /// `ACTIVE` when associated, else `DOWN`.
    pub status: &'static str,
}

/// A floating IP create/update request.
#[derive(Debug, Clone, Default)]
pub struct FloatingIpReq {
    /// External network (create only).
    pub floating_network_id: Option<String>,
    /// Address (create only).
    pub floating_ip_address: Option<String>,
    /// Port: Some(None) disassociates.
    pub port_id: Option<Option<String>>,
    /// Fixed IP on the port.
    pub fixed_ip_address: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Owner (admin only).
    pub project_id: Option<String>,
}

/// A router's external gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayInfo {
    /// External network.
    pub network_id: String,
    /// SNAT on.
    pub enable_snat: bool,
    /// Addresses on the external network.
    pub external_fixed_ips: Vec<FixedIp>,
}

/// A router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Router {
    /// UUID.
    pub id: String,
    /// Owner project.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Administrative state.
    pub admin_state_up: bool,
    /// Gateway.
    pub external_gateway_info: Option<GatewayInfo>,
    /// Created.
    pub created_at: Time,
    /// Updated.
    pub updated_at: Time,
    /// Revision.
    pub revision_number: u64,
}

impl Record for Router {
    const KIND: &'static str = "router";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn owner(&self) -> String {
        self.project_id.clone()
    }
}

/// A router create/update request.
#[derive(Debug, Clone, Default)]
pub struct RouterReq {
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Admin state.
    pub admin_state_up: Option<bool>,
    /// Gateway: Some(None) clears it.
    pub external_gateway_info: Option<Option<GatewayReq>>,
    /// Owner (admin only).
    pub project_id: Option<String>,
}

/// A requested gateway.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GatewayReq {
    /// External network.
    pub network_id: String,
    /// SNAT (default true).
    pub enable_snat: Option<bool>,
}

/// The answer of add/remove_router_interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RouterInterface {
    /// Router id.
    pub id: String,
    /// Owner.
    pub project_id: String,
    /// Port.
    pub port_id: String,
    /// Network.
    pub network_id: String,
    /// First subnet.
    pub subnet_id: String,
    /// All subnets.
    pub subnet_ids: Vec<String>,
}

/// Device owner of router interface ports.
pub const OWNER_ROUTER_INTERFACE: &str = "network:router_interface";
/// Device owner of router gateway ports.
pub const OWNER_ROUTER_GATEWAY: &str = "network:router_gateway";
/// Device owner of floating IP ports.
pub const OWNER_FLOATINGIP: &str = "network:floatingip";

// ---------------------------------------------------------------- addresses

/// A parsed CIDR (v4 or v6) as (network address, prefix, version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// Network address as an integer.
    pub net: u128,
    /// Prefix length.
    pub len: u8,
    /// 4 or 6.
    pub version: u8,
}

impl Cidr {
    fn bits(self) -> u8 {
        if self.version == 4 {
            32
        } else {
            128
        }
    }
    /// Number of addresses.
    fn size(self) -> u128 {
        let host = (self.bits() - self.len) as u32;
        if host >= 128 {
            u128::MAX
        } else {
            1u128 << host
        }
    }
    /// Last address.
    pub fn last(self) -> u128 {
        self.net.saturating_add(self.size() - 1)
    }
    /// Whether `a` (same version) is inside.
    pub fn contains(self, a: u128) -> bool {
        a >= self.net && a <= self.last()
    }
    /// Renders address `a` of this version.
    pub fn addr(self, a: u128) -> String {
        to_ip(a, self.version).to_string()
    }
    /// Whether two CIDRs overlap.
    pub fn overlaps(self, o: Cidr) -> bool {
        self.version == o.version && self.net <= o.last() && o.net <= self.last()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr(self.net), self.len)
    }
}

fn to_ip(a: u128, version: u8) -> IpAddr {
    if version == 4 {
        IpAddr::V4(std::net::Ipv4Addr::from(a as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(a))
    }
}

/// An address as (integer, version).
pub fn ip_num(s: &str) -> Option<(u128, u8)> {
    match s.trim().parse::<IpAddr>().ok()? {
        IpAddr::V4(a) => Some((u32::from(a) as u128, 4)),
        IpAddr::V6(a) => Some((u128::from(a), 6)),
    }
}

/// Parses a CIDR like Neutron's `validate_subnet`: the error is the reason.
pub fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let bad = || format!("'{s}' is not a valid IP subnet");
    let (ip, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let (a, version) = ip_num(ip).ok_or_else(bad)?;
    let bits = if version == 4 { 32 } else { 128 };
    let len: u8 = match len {
        Some(l) => l.parse().ok().filter(|l| *l <= bits).ok_or_else(bad)?,
        None => bits,
    };
    let mask = if len == 0 {
        0
    } else {
        (u128::MAX << (128 - len as u32)) >> (128 - bits as u32)
    };
    let c = Cidr {
        net: a & mask,
        len,
        version,
    };
    if !s.contains('/') || (version == 4 && c.to_string() != s) {
        return Err(format!(
            "'{s}' isn't a recognized IP subnet cidr, '{c}' is recommended"
        ));
    }
    Ok(c)
}

fn pool_str(p: &AllocationPool) -> String {
    format!("{}-{}", p.start, p.end)
}

/// The default pools of a subnet: the whole range minus the network
/// address, the gateway and (IPv4) the broadcast address.
fn default_pools(c: Cidr, gateway: Option<u128>) -> Vec<AllocationPool> {
    let first = if c.version == 4 && c.len < 31 {
        c.net + 1
    } else {
        c.net + u128::from(c.version == 6)
    };
    let last = if c.version == 4 && c.len < 31 {
        c.last() - 1
    } else {
        c.last()
    };
    let mut pools = vec![];
    let mut push = |a: u128, b: u128| {
        if a <= b {
            pools.push(AllocationPool {
                start: c.addr(a),
                end: c.addr(b),
            })
        }
    };
    match gateway {
        Some(g) if g >= first && g <= last => {
            if g > first {
                push(first, g - 1);
            }
            if g < last {
                push(g + 1, last);
            }
        }
        _ => push(first, last),
    }
    pools
}

fn parse_pools(c: Cidr, pools: &[AllocationPool]) -> NetResult<Vec<(u128, u128)>> {
    let cidr = c.to_string();
    let mut out: Vec<(u128, u128, &AllocationPool)> = vec![];
    for p in pools {
        let (s, e) = match (ip_num(&p.start), ip_num(&p.end)) {
            (Some((s, v1)), Some((e, v2))) if v1 == c.version && v2 == c.version && s <= e => {
                (s, e)
            }
            _ => {
                return Err(NetError::new(
                    NetErrorKind::BadRequest,
                    "InvalidAllocationPool",
                    format!("The allocation pool {} is not valid.", pool_str(p)),
                ))
            }
        };
        if !c.contains(s) || !c.contains(e) {
            return Err(NetError::new(
                NetErrorKind::BadRequest,
                "OutOfBoundsAllocationPool",
                format!(
                    "The allocation pool {} spans beyond the subnet cidr {cidr}.",
                    pool_str(p)
                ),
            ));
        }
        for (os, oe, op) in &out {
            if s <= *oe && *os <= e {
                return Err(NetError::conflict(
                    "OverlappingAllocationPools",
                    format!(
                        "Found overlapping allocation pools: {} {} for subnet {cidr}.",
                        pool_str(op),
                        pool_str(p)
                    ),
                ));
            }
        }
        out.push((s, e, p));
    }
    Ok(out.into_iter().map(|(s, e, _)| (s, e)).collect())
}

fn validate_mac(m: &str) -> bool {
    let parts: Vec<&str> = m.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
        && m != "00:00:00:00:00:00"
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

// ------------------------------------------------------------------ service

impl Engine {
    fn require_member(actor: &Actor, rule: &str) -> NetResult<()> {
        if actor.role < Role::Member {
            return Err(NetError::policy(rule));
        }
        Ok(())
    }

    /// The owner a create request ends up with (admin may name another).
    fn owner_for(actor: &Actor, requested: &Option<String>, rule: &str) -> NetResult<String> {
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

    async fn network_attrs(&self, n: &Network) -> NetResult<NetworkAttrs> {
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

    fn net_visible(actor: &Actor, n: &Network, a: &NetworkAttrs) -> bool {
        actor.is_admin()
            || n.project_id.is_none()
            || a.shared
            || n.external
            || a.project_id == actor.project_id
    }

    async fn network_view(&self, n: Network) -> NetResult<NetworkView> {
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

    fn may_modify(actor: &Actor, owner: &str, rule: &str) -> NetResult<()> {
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

    // ------------------------------------------------------------ subnets

    async fn subnet_visible(&self, actor: &Actor, s: &Subnet) -> NetResult<bool> {
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

    // -------------------------------------------------------------- ports

    fn subnet_of(subnets: &[Subnet], ip: &str) -> Option<String> {
        let (a, v) = ip_num(ip)?;
        subnets
            .iter()
            .find(|s| parse_cidr(&s.cidr).is_ok_and(|c| c.version == v && c.contains(a)))
            .map(|s| s.id.clone())
    }

    async fn port_view_with(&self, p: Port, subnets: &[Subnet]) -> NetResult<PortView> {
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
                    "compute:nova".to_string()
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

    async fn ports_on_network(&self, net_id: &str) -> NetResult<Vec<PortView>> {
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

    async fn check_groups(&self, actor: &Actor, project: &str, groups: &[String]) -> NetResult<()> {
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

    // --------------------------------------------------------------- tags

    /// Tags of a resource.
    pub async fn tags_get(&self, id: &str) -> NetResult<Vec<String>> {
        Ok(self
            .inner
            .store
            .get::<Tags>(id)
            .await?
            .map(|t| t.tags)
            .unwrap_or_default())
    }

    /// All tags by resource id.
    pub async fn tags_all(&self) -> NetResult<HashMap<String, Vec<String>>> {
        let all: Vec<Tags> = self.inner.store.list().await?;
        Ok(all.into_iter().map(|t| (t.id, t.tags)).collect())
    }

    /// Replaces a resource's tags (the caller checked the resource).
    pub async fn tags_set(&self, id: &str, tags: Vec<String>) -> NetResult<Vec<String>> {
        for t in &tags {
            if t.is_empty() || t.len() > 255 || t.contains(',') {
                return Err(NetError::invalid_input(format!("Invalid tag: {t}")));
            }
        }
        let mut uniq = vec![];
        for t in tags {
            if !uniq.contains(&t) {
                uniq.push(t);
            }
        }
        self.inner
            .store
            .put(&Tags {
                id: id.into(),
                tags: uniq.clone(),
            })
            .await?;
        Ok(uniq)
    }

    /// Adds one tag.
    pub async fn tag_add(&self, id: &str, tag: &str) -> NetResult<()> {
        let mut t = self.tags_get(id).await?;
        t.push(tag.into());
        self.tags_set(id, t).await.map(|_| ())
    }

    /// Removes one tag (404 `TagNotFound` if absent).
    pub async fn tag_remove(&self, id: &str, tag: &str) -> NetResult<()> {
        let mut t = self.tags_get(id).await?;
        if !t.iter().any(|x| x == tag) {
            return Err(NetError::not_found(
                "TagNotFound",
                format!("Tag {tag} could not be found."),
            ));
        }
        t.retain(|x| x != tag);
        self.tags_set(id, t).await.map(|_| ())
    }

    // ------------------------------------------------------ security groups

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

    // ---------------------------------------------------------- floating IPs

    async fn fip_view(&self, f: FloatingIp) -> NetResult<FloatingIpView> {
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
    async fn router_for_network(&self, net: &str, ext: &str) -> NetResult<Option<String>> {
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

    async fn check_fip_port(
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

    async fn refresh_port_server(&self, port_id: &str) -> NetResult<()> {
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

    // -------------------------------------------------------------- routers

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

    async fn set_gateway(
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

    async fn router_ports(&self, id: &str) -> NetResult<Vec<PortView>> {
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

/// The id of subnet `subnet_id`'s DHCP port (see `dhcp_ports`).
pub fn dhcp_port_id(subnet_id: &str) -> String {
    derived_id(subnet_id, "dhcp")
}

/// A UUID derived from `base` and `what` (stable across calls).
pub(crate) fn derived_id(base: &str, what: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{base}/{what}").as_bytes());
    let mut b: [u8; 16] = h[..16].try_into().expect("16 bytes");
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs() {
        assert!(parse_cidr("10.0.0.0/24").is_ok());
        assert_eq!(
            parse_cidr("10.0.0.0/33").unwrap_err(),
            "'10.0.0.0/33' is not a valid IP subnet"
        );
        assert_eq!(
            parse_cidr("10.0.0.1/24").unwrap_err(),
            "'10.0.0.1/24' isn't a recognized IP subnet cidr, '10.0.0.0/24' is recommended"
        );
        let c = parse_cidr("fd00::/64").unwrap();
        assert_eq!(c.version, 6);
        assert_eq!(c.to_string(), "fd00::/64");
        let p = default_pools(parse_cidr("10.0.0.0/24").unwrap(), Some(0x0a000001));
        assert_eq!(p[0].start, "10.0.0.2");
        assert_eq!(p[0].end, "10.0.0.254");
        let p6 = default_pools(c, Some(c.net + 1));
        assert_eq!(p6[0].start, "fd00::2");
        assert_eq!(p6[0].end, "fd00::ffff:ffff:ffff:ffff");
        assert!(validate_mac("fa:16:3e:00:11:22"));
        assert!(!validate_mac("01:16:3e:00:11:22"));
    }
}
