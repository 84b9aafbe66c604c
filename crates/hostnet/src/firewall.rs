//! Security groups as nftables rules in a host namespace.
//!
//! The kernel here has no conntrack in the bridge family, so filtering is split in two tables:
//! - `bridge lifeboat` (forward hook, priority -300, before br_netfilter): stateless
//!   anti-spoofing on packets from a port (source MAC, ARP sender, IP source in the fixed IPs
//!   and allowed address pairs, no DHCP server or router advertisements from guests), and it
//!   tags each packet with the ports it comes from and goes to: `mark = in_index << 16 |
//!   out_index`;
//! - `inet lifeboat` (forward hook; bridged IP traffic reaches it through br_netfilter,
//!   `bridge-nf-call-iptables=1` in the host namespace): stateful. Established/related traffic
//!   passes; a new connection must be allowed by an egress rule of the sending port (if
//!   filtered) and an ingress rule of the receiving port (if filtered). Default deny both ways,
//!   as Neutron (the default group's egress rules allow all egress).
//!
//! Ports with `port_security_enabled = false` get no index: they are neither tagged nor
//! filtered. The whole ruleset is rebuilt and swapped in one nft transaction on each change.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::nft::{self, m, meta, payload};
use crate::types::{
    Direction, EtherType, PortSpec, Protocol, Remote, SecurityGroup, SecurityGroupRule,
};

pub const TABLE: &str = "lifeboat";

/// A port to filter: its index (1..=65535), its host-side interface, its spec.
pub struct FilteredPort<'a> {
    pub index: u16,
    pub ifname: &'a str,
    pub spec: &'a PortSpec,
}

fn mark_or(v: u32) -> Value {
    json!({"mangle": {"key": meta("mark"), "value": {"|": [meta("mark"), v]}}})
}

fn host_net(ip: IpAddr) -> IpNet {
    IpNet::from(ip)
}

/// All nft commands for the host namespace's security groups.
pub fn render(ports: &[FilteredPort<'_>], groups: &HashMap<String, SecurityGroup>) -> Vec<Value> {
    let mut c = Vec::new();
    // Bridge table: tag + anti-spoof.
    c.extend(nft::replace_table("bridge", TABLE));
    c.push(nft::base_chain(
        "bridge", TABLE, "fwd", "filter", "forward", -300, "accept",
    ));
    c.push(nft::rule(
        "bridge",
        TABLE,
        "fwd",
        vec![json!({"mangle": {"key": meta("mark"), "value": 0}})],
    ));
    for p in ports {
        let spoof = format!("spoof{}", p.index);
        c.push(nft::chain("bridge", TABLE, &spoof));
        c.push(nft::rule(
            "bridge",
            TABLE,
            "fwd",
            vec![
                m(meta("oifname"), "==", json!(p.ifname)),
                mark_or(p.index as u32),
            ],
        ));
        c.push(nft::rule(
            "bridge",
            TABLE,
            "fwd",
            vec![
                m(meta("iifname"), "==", json!(p.ifname)),
                mark_or((p.index as u32) << 16),
                nft::jump(&spoof),
            ],
        ));
        c.extend(spoof_rules(&spoof, p.spec));
    }

    // inet table: stateful security groups.
    c.extend(nft::replace_table("inet", TABLE));
    c.push(nft::base_chain(
        "inet", TABLE, "fwd", "filter", "forward", 0, "accept",
    ));
    let r = |chain: &str, e: Vec<Value>| nft::rule("inet", TABLE, chain, e);
    c.push(r(
        "fwd",
        vec![m(meta("mark"), "==", json!(0)), nft::accept()],
    ));
    c.push(r(
        "fwd",
        vec![
            m(nft::ct("state"), "in", json!(["established", "related"])),
            nft::accept(),
        ],
    ));
    c.push(r(
        "fwd",
        vec![
            m(nft::ct("state"), "in", json!(["invalid"])),
            nft::counter(),
            nft::drop_(),
        ],
    ));
    for p in ports {
        let eg = format!("egress{}", p.index);
        let ing = format!("ingress{}", p.index);
        c.push(nft::chain("inet", TABLE, &eg));
        c.push(nft::chain("inet", TABLE, &ing));
        c.push(r(
            "fwd",
            vec![
                m(
                    json!({"&": [meta("mark"), 0xffff_0000u32]}),
                    "==",
                    json!((p.index as u32) << 16),
                ),
                nft::jump(&eg),
            ],
        ));
        c.push(r(
            "fwd",
            vec![
                m(
                    json!({"&": [meta("mark"), 0xffffu32]}),
                    "==",
                    json!(p.index as u32),
                ),
                nft::jump(&ing),
            ],
        ));
        // Always let the port receive DHCP answers and IPv6 neighbour discovery.
        c.push(r(
            &ing,
            vec![
                m(payload("udp", "sport"), "==", json!(67)),
                m(payload("udp", "dport"), "==", json!(68)),
                nft::accept(),
            ],
        ));
        c.push(r(
            &ing,
            vec![
                m(payload("udp", "sport"), "==", json!(547)),
                m(payload("udp", "dport"), "==", json!(546)),
                nft::accept(),
            ],
        ));
        c.push(r(
            &ing,
            vec![
                m(
                    payload("icmpv6", "type"),
                    "==",
                    nft::set(vec![
                        json!("nd-neighbor-solicit"),
                        json!("nd-neighbor-advert"),
                        json!("nd-router-advert"),
                        json!("mld-listener-query"),
                        json!("packet-too-big"),
                    ]),
                ),
                nft::accept(),
            ],
        ));
        // And send DHCP requests and neighbour discovery.
        c.push(r(
            &eg,
            vec![
                m(payload("udp", "sport"), "==", json!(68)),
                m(payload("udp", "dport"), "==", json!(67)),
                nft::ret(),
            ],
        ));
        c.push(r(
            &eg,
            vec![
                m(
                    payload("icmpv6", "type"),
                    "==",
                    nft::set(vec![
                        json!("nd-neighbor-solicit"),
                        json!("nd-neighbor-advert"),
                        json!("nd-router-solicit"),
                        json!("mld-listener-report"),
                        json!("mld2-listener-report"),
                    ]),
                ),
                nft::ret(),
            ],
        ));
        for gid in &p.spec.security_groups {
            let Some(g) = groups.get(gid) else { continue };
            for rule in &g.rules {
                let Some(mut e) = rule_match(rule, groups) else {
                    continue;
                };
                match rule.direction {
                    Direction::Egress => {
                        e.push(nft::ret());
                        c.push(r(&eg, e));
                    }
                    Direction::Ingress => {
                        e.push(nft::accept());
                        c.push(r(&ing, e));
                    }
                }
            }
        }
        c.push(r(&eg, vec![nft::counter(), nft::drop_()]));
        c.push(r(&ing, vec![nft::counter(), nft::drop_()]));
    }
    c
}

fn spoof_rules(chain: &str, p: &PortSpec) -> Vec<Value> {
    let r = |e: Vec<Value>| nft::rule("bridge", TABLE, chain, e);
    let mut macs = vec![json!(p.mac.to_string())];
    let mut v4: Vec<Value> = vec![json!("0.0.0.0")];
    let mut v6: Vec<Value> = vec![
        json!("::"),
        json!({"prefix": {"addr": "fe80::", "len": 10}}),
    ];
    for ip in &p.fixed_ips {
        match ip {
            IpAddr::V4(_) => v4.push(nft::prefix(&host_net(*ip))),
            IpAddr::V6(_) => v6.push(nft::prefix(&host_net(*ip))),
        }
    }
    for pair in &p.allowed_address_pairs {
        if let Some(mac) = pair.mac_address {
            let s = json!(mac.to_string());
            if !macs.contains(&s) {
                macs.push(s);
            }
        }
        match pair.ip_address {
            IpNet::V4(_) => v4.push(nft::prefix(&pair.ip_address)),
            IpNet::V6(_) => v6.push(nft::prefix(&pair.ip_address)),
        }
    }
    vec![
        r(vec![
            m(payload("ether", "saddr"), "!=", nft::set(macs.clone())),
            nft::drop_(),
        ]),
        r(vec![
            m(payload("ether", "type"), "==", json!("arp")),
            m(payload("arp", "saddr ether"), "!=", nft::set(macs)),
            nft::drop_(),
        ]),
        r(vec![
            m(payload("ether", "type"), "==", json!("arp")),
            m(payload("arp", "saddr ip"), "!=", nft::set(v4.clone())),
            nft::drop_(),
        ]),
        // No DHCP servers and no router advertisements from guests.
        r(vec![
            m(payload("udp", "sport"), "==", json!(67)),
            nft::drop_(),
        ]),
        r(vec![
            m(payload("udp", "sport"), "==", json!(547)),
            nft::drop_(),
        ]),
        r(vec![
            m(payload("icmpv6", "type"), "==", json!("nd-router-advert")),
            nft::drop_(),
        ]),
        r(vec![
            m(payload("ip", "saddr"), "!=", nft::set(v4)),
            nft::drop_(),
        ]),
        r(vec![
            m(payload("ip6", "saddr"), "!=", nft::set(v6)),
            nft::drop_(),
        ]),
    ]
}

/// The match expressions of one rule, or `None` when it can match nothing (a remote group
/// without members of that family, a CIDR of the other family).
fn rule_match(
    rule: &SecurityGroupRule,
    groups: &HashMap<String, SecurityGroup>,
) -> Option<Vec<Value>> {
    let (l3, nfproto, icmp) = match rule.ethertype {
        EtherType::IPv4 => ("ip", "ipv4", "icmp"),
        EtherType::IPv6 => ("ip6", "ipv6", "icmpv6"),
    };
    let mut e = vec![m(meta("nfproto"), "==", json!(nfproto))];
    let field = match rule.direction {
        Direction::Ingress => "saddr",
        Direction::Egress => "daddr",
    };
    let family_ok = |ip: &IpAddr| match rule.ethertype {
        EtherType::IPv4 => ip.is_ipv4(),
        EtherType::IPv6 => ip.is_ipv6(),
    };
    match &rule.remote {
        Remote::Any => {}
        Remote::Cidr(c) => {
            if !family_ok(&c.addr()) {
                return None;
            }
            e.push(m(payload(l3, field), "==", nft::prefix(c)));
        }
        Remote::Group(g) => {
            let members: Vec<Value> = groups
                .get(g)
                .map(|g| {
                    g.members
                        .iter()
                        .filter(|ip| family_ok(ip))
                        .map(|ip| json!(ip.to_string()))
                        .collect()
                })
                .unwrap_or_default();
            if members.is_empty() {
                return None;
            }
            e.push(m(payload(l3, field), "==", nft::set(members)));
        }
    }
    match rule.protocol {
        None => {}
        Some(Protocol::Tcp) | Some(Protocol::Udp) => {
            let p = if rule.protocol == Some(Protocol::Tcp) {
                "tcp"
            } else {
                "udp"
            };
            e.push(m(meta("l4proto"), "==", json!(p)));
            match (rule.port_range_min, rule.port_range_max) {
                (Some(a), Some(b)) if a != b => {
                    e.push(m(payload(p, "dport"), "==", json!({"range": [a, b]})))
                }
                (Some(a), _) | (None, Some(a)) => e.push(m(payload(p, "dport"), "==", json!(a))),
                (None, None) => {}
            }
        }
        Some(Protocol::Icmp) => {
            e.push(m(meta("l4proto"), "==", json!(icmp)));
            if let Some(t) = rule.port_range_min {
                e.push(m(payload(icmp, "type"), "==", json!(t)));
                if let Some(code) = rule.port_range_max {
                    e.push(m(payload(icmp, "code"), "==", json!(code)));
                }
            }
        }
        Some(Protocol::Number(n)) => e.push(m(meta("l4proto"), "==", json!(n))),
    }
    Some(e)
}
