//! A router's NAT rules (in its own namespace, table `ip lifeboat`): floating IPs are 1:1
//! DNAT in (prerouting) and SNAT out (postrouting, before the router-wide SNAT of internal
//! subnets to the gateway address).

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::nft::{self, m, meta, payload};
use crate::types::RouterSpec;
use crate::{names, Error};

pub const TABLE: &str = "lifeboat";

/// The nft commands for a router.
pub fn render(r: &RouterSpec) -> Vec<Value> {
    let mut c = nft::replace_table("ip", TABLE);
    c.push(nft::base_chain(
        "ip",
        TABLE,
        "pre",
        "nat",
        "prerouting",
        -100,
        "accept",
    ));
    c.push(nft::base_chain(
        "ip",
        TABLE,
        "post",
        "nat",
        "postrouting",
        100,
        "accept",
    ));
    let rule = |chain: &str, e: Vec<Value>| nft::rule("ip", TABLE, chain, e);
    if let Some(gw) = &r.gateway {
        for f in &r.floating_ips {
            c.push(rule(
                "pre",
                vec![
                    m(
                        payload("ip", "daddr"),
                        "==",
                        json!(f.floating_ip.to_string()),
                    ),
                    json!({"dnat": {"addr": f.fixed_ip.to_string()}}),
                ],
            ));
            c.push(rule(
                "post",
                vec![
                    m(meta("oifname"), "==", json!(names::GATEWAY_IF)),
                    m(payload("ip", "saddr"), "==", json!(f.fixed_ip.to_string())),
                    json!({"snat": {"addr": f.floating_ip.to_string()}}),
                ],
            ));
        }
        if gw.enable_snat {
            let internal: Vec<Value> = r
                .interfaces
                .iter()
                .filter_map(|i| match i.subnet.cidr {
                    IpNet::V4(_) => Some(nft::prefix(&i.subnet.cidr.trunc())),
                    IpNet::V6(_) => None,
                })
                .collect();
            if let (false, IpNet::V4(g)) = (internal.is_empty(), gw.ip) {
                c.push(rule(
                    "post",
                    vec![
                        m(meta("oifname"), "==", json!(names::GATEWAY_IF)),
                        m(payload("ip", "saddr"), "==", nft::set(internal)),
                        json!({"snat": {"addr": g.addr().to_string()}}),
                    ],
                ));
            }
        }
    }
    c
}

/// Check a router spec before touching anything.
pub fn validate(r: &RouterSpec) -> Result<(), Error> {
    if !r.floating_ips.is_empty() && r.gateway.is_none() {
        return Err(Error::Invalid(format!(
            "router {} has floating IPs but no external gateway",
            r.id
        )));
    }
    if let Some(gw) = &r.gateway {
        if !gw.ip.addr().is_ipv4() {
            return Err(Error::Invalid(
                "the router gateway address must be IPv4".into(),
            ));
        }
    }
    for i in &r.interfaces {
        if i.subnet.gateway_ip.is_none() {
            return Err(Error::Invalid(format!(
                "subnet {} has no gateway_ip for the router interface",
                i.subnet.id
            )));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for f in &r.floating_ips {
        if !seen.insert(f.floating_ip) {
            return Err(Error::Invalid(format!(
                "floating IP {} mapped twice",
                f.floating_ip
            )));
        }
    }
    Ok(())
}
