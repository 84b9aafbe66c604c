//! The data plane's own small model: what a caller (the Neutron layer, the host agent) hands in.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::Error;

/// An Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The MAC the host side of a port's tap carries: the port's MAC with the first octet set to
    /// `0xfe` (as Nova/libvirt do), so the bridge never sees the guest's own MAC on the host side.
    pub fn host_side(&self) -> MacAddr {
        let mut b = self.0;
        b[0] = 0xfe;
        MacAddr(b)
    }

    /// A locally administered unicast MAC derived from a string (for service interfaces).
    pub fn derived(seed: &str) -> MacAddr {
        let h = crate::names::fnv1a(seed.as_bytes());
        let b = h.to_be_bytes();
        MacAddr([0x02, b[3], b[4], b[5], b[6], b[7]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for MacAddr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split(':').collect();
        let bad = || Error::Invalid(format!("invalid MAC address {s:?}"));
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            if p.len() != 2 {
                return Err(bad());
            }
            b[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        if b[0] & 1 == 1 {
            return Err(Error::Invalid(format!("MAC address {s:?} is multicast")));
        }
        Ok(MacAddr(b))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How guests on an IPv6 subnet get addresses (Neutron's `ipv6_address_mode` / `ipv6_ra_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Ipv6Mode {
    /// Router advertisements with the prefix (autonomous flag); the guest builds its EUI-64 address.
    Slaac,
    /// Stateless DHCPv6: SLAAC addresses, other options by DHCPv6.
    DhcpStateless,
    /// DHCPv6 hands out the port's fixed address; RAs carry the prefix with the managed flag.
    #[default]
    DhcpStateful,
}

/// One subnet of a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetSpec {
    pub id: String,
    pub cidr: IpNet,
    pub gateway_ip: Option<IpAddr>,
    #[serde(default = "yes")]
    pub enable_dhcp: bool,
    #[serde(default)]
    pub dns_nameservers: Vec<IpAddr>,
    /// Extra routes pushed by DHCP (destination, nexthop).
    #[serde(default)]
    pub host_routes: Vec<(IpNet, IpAddr)>,
    /// The address of the DHCP/metadata service port on this subnet. `None`: the highest host
    /// address of the CIDR (the Neutron layer should allocate a DHCP port and pass it here).
    #[serde(default)]
    pub dhcp_ip: Option<IpAddr>,
    #[serde(default)]
    pub ipv6_mode: Ipv6Mode,
}

fn yes() -> bool {
    true
}

impl SubnetSpec {
    /// The service (DHCP and metadata) address on this subnet.
    pub fn service_ip(&self) -> IpAddr {
        if let Some(ip) = self.dhcp_ip {
            return ip;
        }
        match self.cidr {
            IpNet::V4(n) => {
                let b = u32::from(n.broadcast());
                let ip = if n.prefix_len() >= 31 { b } else { b - 1 };
                IpAddr::V4(Ipv4Addr::from(ip))
            }
            IpNet::V6(n) => {
                let b = u128::from(n.broadcast());
                IpAddr::V6(std::net::Ipv6Addr::from(b - 1))
            }
        }
    }

    pub fn is_ipv4(&self) -> bool {
        matches!(self.cidr, IpNet::V4(_))
    }
}

/// A network as the data plane sees it: an L2 segment (one bridge per host, one VXLAN VNI
/// between hosts) and its subnets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub id: String,
    /// Segmentation id (VXLAN VNI), 1..=16777215; also names the bridge.
    pub vni: u32,
    #[serde(default)]
    pub subnets: Vec<SubnetSpec>,
    #[serde(default = "default_mtu")]
    pub mtu: u32,
}

fn default_mtu() -> u32 {
    1500
}

/// An address pair a port may send from besides its fixed IPs (Neutron `allowed_address_pairs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressPair {
    pub ip_address: IpNet,
    #[serde(default)]
    pub mac_address: Option<MacAddr>,
}

/// A port: one guest NIC (or router/DHCP interface) on a network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    pub id: String,
    pub network_id: String,
    pub mac: MacAddr,
    #[serde(default)]
    pub fixed_ips: Vec<IpAddr>,
    /// Used for the DHCP host entry and the metadata hostname.
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default = "yes")]
    pub port_security_enabled: bool,
    #[serde(default)]
    pub allowed_address_pairs: Vec<AddressPair>,
}

/// Direction of a security group rule, seen from the port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

/// IP version of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtherType {
    IPv4,
    IPv6,
}

/// Protocol of a security group rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP for IPv4 rules, ICMPv6 for IPv6 rules (as Neutron maps `icmp`).
    Icmp,
    /// Any other IP protocol by number.
    Number(u8),
}

/// Where the other end of a rule may be.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Remote {
    Any,
    Cidr(IpNet),
    /// Members of this security group (their addresses come with [`SecurityGroup::members`]).
    Group(String),
}

/// One security group rule (Neutron semantics: a whitelist entry).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroupRule {
    pub direction: Direction,
    pub ethertype: EtherType,
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// For TCP/UDP the port range; for ICMP min is the type and max the code.
    #[serde(default)]
    pub port_range_min: Option<u16>,
    #[serde(default)]
    pub port_range_max: Option<u16>,
    pub remote: Remote,
}

/// A security group with its rules and the addresses of all ports in it (on every host), which
/// rules with `Remote::Group(this id)` match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    pub id: String,
    pub rules: Vec<SecurityGroupRule>,
    #[serde(default)]
    pub members: Vec<IpAddr>,
}

impl SecurityGroup {
    /// Neutron's `default` group: ingress from members of the same group, all egress (v4 and v6).
    pub fn default_rules(id: &str) -> Vec<SecurityGroupRule> {
        let mut v = Vec::new();
        for et in [EtherType::IPv4, EtherType::IPv6] {
            v.push(SecurityGroupRule {
                direction: Direction::Ingress,
                ethertype: et,
                protocol: None,
                port_range_min: None,
                port_range_max: None,
                remote: Remote::Group(id.to_string()),
            });
            v.push(SecurityGroupRule {
                direction: Direction::Egress,
                ethertype: et,
                protocol: None,
                port_range_min: None,
                port_range_max: None,
                remote: Remote::Any,
            });
        }
        v
    }
}

/// A router interface on an internal subnet: the router holds the subnet's gateway address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterInterface {
    pub network_id: String,
    pub subnet: SubnetSpec,
    /// The router port's MAC (Neutron `qr-` port); derived when `None`.
    #[serde(default)]
    pub mac: Option<MacAddr>,
}

/// A router's external gateway: an address on the external network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterGateway {
    pub network_id: String,
    /// The router's address with the external subnet's prefix length.
    pub ip: IpNet,
    pub gateway_ip: Option<IpAddr>,
    #[serde(default)]
    pub mac: Option<MacAddr>,
    /// SNAT internal subnets to the gateway address (Neutron `enable_snat`).
    #[serde(default = "yes")]
    pub enable_snat: bool,
}

/// A floating IP mapped to a fixed IP behind the router (1:1 DNAT in, SNAT out).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub floating_ip: Ipv4Addr,
    pub fixed_ip: Ipv4Addr,
}

/// A router's desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterSpec {
    pub id: String,
    #[serde(default)]
    pub gateway: Option<RouterGateway>,
    #[serde(default)]
    pub interfaces: Vec<RouterInterface>,
    #[serde(default)]
    pub floating_ips: Vec<FloatingIp>,
}
