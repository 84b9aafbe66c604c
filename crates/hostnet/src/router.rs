//! A router's NAT rules (in its own namespace, table `ip lifeboat`): floating IPs are 1:1
//! DNAT in (prerouting) and SNAT out (postrouting, before the router-wide SNAT of internal
//! subnets to the gateway address).

use ipnet::IpNet;
use serde_json::{json, Value};

use crate::nft::{self, m, meta, payload};
use crate::types::RouterSpec;
use crate::{names, Error};

pub const TABLE: &str = "lifeboat";

fn ct_mark(fip: std::net::Ipv4Addr) -> Value {
    json!({"mangle": {"key": {"ct": {"key": "mark"}}, "value": fip_mark(fip)}})
}

/// The nft commands for a router. Floating IP flows carry the conntrack mark
/// [`fip_mark`], so a re-mapping can flush exactly them.
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
                    ct_mark(f.floating_ip),
                    json!({"dnat": {"addr": f.fixed_ip.to_string()}}),
                ],
            ));
            c.push(rule(
                "post",
                vec![
                    m(meta("oifname"), "==", json!(names::GATEWAY_IF)),
                    m(payload("ip", "saddr"), "==", json!(f.fixed_ip.to_string())),
                    ct_mark(f.floating_ip),
                    json!({"snat": {"addr": f.floating_ip.to_string()}}),
                ],
            ));
        }
        // Hairpin: a guest reaching a floating IP of its own router from the inside. The
        // answer must come back through the router, so the source becomes the router's
        // address on the way in.
        let internal: Vec<Value> = r
            .interfaces
            .iter()
            .filter(|i| i.subnet.is_ipv4())
            .map(|i| nft::prefix(&i.subnet.cidr.trunc()))
            .collect();
        if !r.floating_ips.is_empty() && !internal.is_empty() {
            c.push(rule(
                "post",
                vec![
                    m(meta("oifname"), "!=", json!(names::GATEWAY_IF)),
                    m(payload("ip", "saddr"), "==", nft::set(internal)),
                    m(nft::ct("status"), "in", json!(["dnat"])),
                    json!({"masquerade": null}),
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

/// The conntrack mark of a floating IP's flows: its address as a number.
pub fn fip_mark(fip: std::net::Ipv4Addr) -> u32 {
    u32::from(fip)
}

/// Delete the conntrack entries with mark `mark` in namespace `ns` (ctnetlink flush with a
/// mark filter), so flows of a re-mapped floating IP take the new mapping at once instead of
/// keeping the old NAT until they time out.
pub fn flush_conntrack_mark(ns: &str, mark: u32) -> Result<(), Error> {
    crate::netns::run_in(ns, move || flush_mark_here(mark))?
}

fn flush_mark_here(mark: u32) -> Result<(), Error> {
    const NETLINK_NETFILTER: i32 = 12;
    const IPCTNL_MSG_CT_DELETE: u16 = 2;
    const NFNL_SUBSYS_CTNETLINK: u16 = 1;
    const CTA_MARK: u16 = 8;
    const CTA_MARK_MASK: u16 = 21;
    let os = |what: &str| {
        Error::Os(format!(
            "ctnetlink {what}: {}",
            std::io::Error::last_os_error()
        ))
    };
    // nlmsghdr (16) + nfgenmsg (4) + two u32 attributes (8 each).
    let mut msg = Vec::with_capacity(36);
    let len: u32 = 36;
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE).to_ne_bytes());
    msg.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
    msg.extend_from_slice(&0u32.to_ne_bytes()); // pid
    msg.extend_from_slice(&[libc::AF_INET as u8, 0, 0, 0]); // nfgenmsg: family, version, res_id
    for (ty, v) in [(CTA_MARK, mark), (CTA_MARK_MASK, u32::MAX)] {
        msg.extend_from_slice(&8u16.to_ne_bytes());
        msg.extend_from_slice(&ty.to_ne_bytes());
        msg.extend_from_slice(&v.to_be_bytes());
    }
    // SAFETY: a netlink socket used and closed on this thread; buffers outlive the calls.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        );
        if fd < 0 {
            return Err(os("socket"));
        }
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        let sent = libc::sendto(
            fd,
            msg.as_ptr() as *const libc::c_void,
            msg.len(),
            0,
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        );
        if sent < 0 {
            let e = os("send");
            libc::close(fd);
            return Err(e);
        }
        let mut buf = [0u8; 512];
        let n = libc::recv(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len(), 0);
        libc::close(fd);
        if n < 0 {
            return Err(os("recv"));
        }
        // NLMSG_ERROR (2) carries the result: 0 = done, -ENOENT = nothing to delete.
        if n as usize >= 20 && u16::from_ne_bytes([buf[4], buf[5]]) == libc::NLMSG_ERROR as u16 {
            let code = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
            if code != 0 && code != -libc::ENOENT {
                return Err(Error::Os(format!(
                    "ctnetlink flush: {}",
                    std::io::Error::from_raw_os_error(-code)
                )));
            }
        }
    }
    Ok(())
}
