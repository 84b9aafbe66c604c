//! Names of the namespaces and interfaces Lifeboat owns. Interface names fit IFNAMSIZ (15).
//!
//! | what | name |
//! |---|---|
//! | host agent namespace | `lbh-<host>` |
//! | service namespace of a network on that host (dnsmasq, metadata) | `lbh-<host>-n<vni>` |
//! | router namespace | `lbh-<host>-r<hash8(router id)>` |
//! | fabric namespace joining host agents | `lbf-<fabric>` |
//! | bridge of a network (host ns) | `lbbr<vni>` |
//! | VXLAN device of a network (host ns) | `lbvx<vni>` |
//! | tap / veth of a port (host ns) | `tap<port id[..11]>` |
//! | service port: host side / service ns side | `lbs<vni>` / `svc0` |
//! | router interface: host side / router side | `lbq<hash8>` / `qr<vni>` |
//! | router gateway: host side / router side | `lbg<hash8>` / `qg0` |
//! | uplink to the fabric: host side / fabric side | `lbup0` / `lbu<index>` (alias = host) |

/// FNV-1a, 64 bit: stable short hashes for names.
pub fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in data {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// 8 hex digits of a stable hash.
pub fn hash8(s: &str) -> String {
    format!("{:08x}", (fnv1a(s.as_bytes()) >> 32) as u32)
}

/// Check a host agent name: lowercase letters, digits and '-', 1..=32 characters.
pub fn check_host(host: &str) -> Result<(), crate::Error> {
    if host.is_empty()
        || host.len() > 32
        || !host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(crate::Error::Invalid(format!(
            "host name {host:?} must be 1-32 characters of a-z, 0-9 and '-'"
        )));
    }
    Ok(())
}

pub fn host_ns(host: &str) -> String {
    format!("lbh-{host}")
}

pub fn service_ns(host: &str, vni: u32) -> String {
    format!("lbh-{host}-n{vni}")
}

pub fn router_ns(host: &str, router_id: &str) -> String {
    format!("lbh-{host}-r{}", hash8(router_id))
}

pub fn fabric_ns(fabric: &str) -> String {
    format!("lbf-{fabric}")
}

pub fn bridge(vni: u32) -> String {
    format!("lbbr{vni}")
}

pub fn vxlan(vni: u32) -> String {
    format!("lbvx{vni}")
}

/// The tap (or veth) of a port, as Neutron names it: `tap` + the first 11 characters of the id.
pub fn tap(port_id: &str) -> String {
    let clean: String = port_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(11)
        .collect();
    format!("tap{clean}")
}

pub fn service_host_side(vni: u32) -> String {
    format!("lbs{vni}")
}

pub const SERVICE_IF: &str = "svc0";

pub fn router_port_host_side(router_id: &str, vni: u32) -> String {
    format!("lbq{}", hash8(&format!("{router_id}/{vni}")))
}

pub fn router_port_inside(vni: u32) -> String {
    format!("qr{vni}")
}

pub fn gateway_host_side(router_id: &str) -> String {
    format!("lbg{}", hash8(router_id))
}

pub const GATEWAY_IF: &str = "qg0";
pub const UPLINK_IF: &str = "lbup0";
pub const FABRIC_BRIDGE: &str = "lbfab0";

pub fn fabric_port(index: u8) -> String {
    format!("lbu{index}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_ifnamsiz() {
        for n in [
            bridge(16_777_215),
            vxlan(16_777_215),
            tap("0123456789abcdef-0000"),
            service_host_side(16_777_215),
            router_port_host_side("r", 1),
            router_port_inside(16_777_215),
            gateway_host_side("x"),
            fabric_port(255),
        ] {
            assert!(n.len() <= 15, "{n}");
        }
        assert_eq!(tap("6f1c2d3e-aaaa-bbbb"), "tap6f1c2d3e-aa");
        assert!(check_host("host-1").is_ok());
        assert!(check_host("Host_1").is_err());
        assert!(check_host("").is_err());
    }
}
