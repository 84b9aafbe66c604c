//! The networking service behind the OpenStack Networking (Neutron) API:
//! networks, subnets, ports, floating IPs, security groups and routers.
//!
//! It reuses the records Nova's server create allocates from (the core
//! [`Network`], [`Port`] and [`FloatingIp`]) and keeps the attributes only
//! the networking API has in side records keyed by the same id
//! ([`NetworkAttrs`], [`PortAttrs`]). Subnets, security groups, their rules
//! and routers are records of their own. Errors carry Neutron's exception
//! name ([`NetError::reason`]) so a front can render Neutron's fault body.
//!
//! This file holds the records, requests, views, errors and address
//! parsing; the service itself is one file per resource in `neutron/`
//! (`networks`, `subnets`, `ports`, `tags`, `security_groups`,
//! `floating_ips`, `routers`).

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
            ComputeError::Rejected(r) if r.class() == crate::Class::Invalid => {
                NetError::bad_request(m)
            }
            ComputeError::Rejected(_) => NetError::conflict("Conflict", m),
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

// The service's `impl Engine` blocks, one file per resource.
mod floating_ips;
mod networks;
mod ports;
mod routers;
mod security_groups;
mod subnets;
mod tags;

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
