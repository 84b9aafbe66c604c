use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A network request at create: a network, a port, or a fixed IP.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NetworkRequest {
    /// Network UUID.
    pub network_id: Option<String>,
    /// Existing port UUID.
    pub port_id: Option<String>,
    /// Fixed IPv4 address wanted.
    pub fixed_ip: Option<String>,
}

/// A tenant or shared network with an IPv4 subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Network {
    /// UUID.
    pub id: String,
    /// Name (the key in a server's `addresses`).
    pub name: String,
    /// Owner project; None for a shared network.
    pub project_id: Option<String>,
    /// IPv4 CIDR, e.g. `10.0.0.0/24`.
    pub cidr: String,
    /// Gateway address.
    pub gateway: String,
    /// Whether the network is external (floating IP pool).
    pub external: bool,
}

/// A port: a server's attachment to a network, with its fixed IP. A port
/// outlives the VM it is bound to, which is how a restored or recovered
/// server keeps its endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Port {
    /// UUID.
    pub id: String,
    /// Network.
    pub network_id: String,
    /// Bound server, if any.
    pub server_id: Option<String>,
    /// MAC address.
    pub mac_address: String,
    /// Fixed IPv4 address.
    pub fixed_ip: String,
    /// Owner project.
    pub project_id: String,
}

/// A floating IP from an external network, associated with a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FloatingIp {
    /// UUID.
    pub id: String,
    /// The address.
    pub address: String,
    /// External network it comes from.
    pub network_id: String,
    /// Port it is associated with.
    pub port_id: Option<String>,
    /// Owner project.
    pub project_id: String,
}

/// Parses `a.b.c.d/n` into (network address, prefix length).
pub fn parse_cidr(cidr: &str) -> Option<(u32, u8)> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    if len > 30 {
        return None;
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some((u32::from(ip) & mask, len))
}

/// The first free host address in `cidr` not in `used` (skipping the network
/// address, the gateway `.1` and the broadcast address).
pub fn allocate_ip<'a>(cidr: &str, used: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let (net, len) = parse_cidr(cidr)?;
    let size = 1u32 << (32 - len);
    let used: std::collections::HashSet<u32> = used
        .into_iter()
        .filter_map(|s| s.parse::<std::net::Ipv4Addr>().ok().map(u32::from))
        .collect();
    (2..size - 1)
        .map(|i| net + i)
        .find(|a| !used.contains(a))
        .map(|a| std::net::Ipv4Addr::from(a).to_string())
}

/// The `n`-th host address of `cidr` (0-based, skipping the network address
/// and the gateway `.1`), wrapping around; None for an invalid CIDR.
pub fn nth_host(cidr: &str, n: u64) -> Option<String> {
    let (net, len) = parse_cidr(cidr)?;
    let usable = (1u64 << (32 - len)).saturating_sub(3);
    if usable == 0 {
        return None;
    }
    let a = net as u64 + 2 + (n % usable);
    Some(std::net::Ipv4Addr::from(a as u32).to_string())
}

/// Number of assignable addresses of `cidr`.
pub fn host_count(cidr: &str) -> u64 {
    parse_cidr(cidr)
        .map(|(_, len)| (1u64 << (32 - len)).saturating_sub(3))
        .unwrap_or(0)
}

/// The gateway (first host address) of `cidr`.
pub fn gateway_of(cidr: &str) -> Option<String> {
    let (net, _) = parse_cidr(cidr)?;
    Some(std::net::Ipv4Addr::from(net + 1).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation() {
        assert_eq!(allocate_ip("10.0.0.0/24", []).unwrap(), "10.0.0.2");
        assert_eq!(
            allocate_ip("10.0.0.0/24", ["10.0.0.2", "10.0.0.3"]).unwrap(),
            "10.0.0.4"
        );
        assert!(allocate_ip("10.0.0.0/30", ["10.0.0.2"]).is_none());
        assert!(parse_cidr("10.0.0.0/33").is_none());
        assert!(parse_cidr("bogus").is_none());
        assert_eq!(nth_host("10.0.0.0/16", 0).unwrap(), "10.0.0.2");
        assert_eq!(nth_host("10.0.0.0/16", 254).unwrap(), "10.0.1.0");
        assert_eq!(nth_host("10.0.0.0/30", 1).unwrap(), "10.0.0.2", "wraps");
        assert_eq!(host_count("10.0.0.0/24"), 253);
        assert_eq!(gateway_of("10.1.0.0/16").unwrap(), "10.1.0.1");
    }
}
