//! Helpers for the namespace tests: unique names, cleanup guards (also on panic), a DHCP
//! client (busybox udhcpc) in a guest namespace, ping and TCP probes.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use lifeboat_hostnet::{netns, MacAddr, NetworkSpec, PortSpec, SubnetSpec};

static N: AtomicU32 = AtomicU32::new(0);

/// A host name unique to this test process and call.
pub fn unique(tag: &str) -> String {
    format!(
        "t{tag}{}x{}",
        std::process::id() % 100_000,
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// Fails the test clearly when a prerequisite is missing.
pub fn require_tools() {
    assert!(
        nix_is_root(),
        "the hostnet tests need root (network namespaces, nftables)"
    );
    for t in ["nft", "dnsmasq", "busybox", "ip", "ping"] {
        let ok = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        assert!(ok, "{t} is not installed (scripts/setup.sh installs it)");
    }
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Deletes host agents' namespaces and extra namespaces when dropped (also on panic).
pub struct Guard {
    pub hosts: Vec<String>,
    pub namespaces: Vec<String>,
}

impl Guard {
    pub fn new() -> Guard {
        Guard {
            hosts: vec![],
            namespaces: vec![],
        }
    }
    pub fn host(&mut self, tag: &str) -> String {
        let h = unique(tag);
        self.hosts.push(h.clone());
        h
    }
    /// A guest namespace name owned by this guard.
    pub fn ns(&mut self, tag: &str) -> String {
        let n = format!("lbt-{}", unique(tag));
        self.namespaces.push(n.clone());
        n
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for n in &self.namespaces {
            let _ = netns::delete(n);
        }
        for h in &self.hosts {
            let _ = lifeboat_hostnet::cleanup_host(h);
        }
    }
}

pub fn net(id: &str, vni: u32, cidr: &str, gw: Option<&str>) -> NetworkSpec {
    NetworkSpec {
        id: id.into(),
        vni,
        mtu: 1500,
        subnets: vec![SubnetSpec {
            id: format!("{id}-v4"),
            cidr: cidr.parse().unwrap(),
            gateway_ip: gw.map(|g| g.parse().unwrap()),
            enable_dhcp: true,
            dns_nameservers: vec![],
            host_routes: vec![],
            dhcp_ip: None,
            ipv6_mode: Default::default(),
        }],
    }
}

pub fn port(id: &str, net: &str, mac_last: u8, ip: &str, groups: &[&str]) -> PortSpec {
    PortSpec {
        id: id.into(),
        network_id: net.into(),
        mac: MacAddr([0xfa, 0x16, 0x3e, 0x00, 0x00, mac_last]),
        fixed_ips: vec![ip.parse().unwrap()],
        hostname: Some(format!("vm-{id}")),
        security_groups: groups.iter().map(|s| s.to_string()).collect(),
        port_security_enabled: true,
        allowed_address_pairs: vec![],
    }
}

const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    if [ -n "$staticroutes" ]; then
      set -- $staticroutes
      while [ $# -ge 2 ]; do ip route replace "$1" via "$2" dev "$interface"; shift 2; done
    elif [ -n "$router" ]; then
      ip route replace default via "${router%% *}" dev "$interface"
    fi
    echo "$ip $hostname" > "$LB_DHCP_OUT"
    ;;
esac
exit 0
"#;

/// Run busybox udhcpc on eth0 in `ns`; returns (address, hostname) it was given.
pub fn dhcp(ns: &str) -> (Ipv4Addr, String) {
    try_dhcp(ns, 8).unwrap_or_else(|| panic!("no DHCP lease in {ns}"))
}

/// Like [`dhcp`], None when no lease came after `tries` discovers (1 s apart).
pub fn try_dhcp(ns: &str, tries: u32) -> Option<(Ipv4Addr, String)> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("udhcpc.sh");
    std::fs::write(&script, UDHCPC_SCRIPT).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    let out = dir.path().join("lease");
    let mut cmd = std::process::Command::new("busybox");
    let tries = tries.to_string();
    cmd.args([
        "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", &tries, "-T", "1",
    ])
    .args(["-O", "staticroutes", "-O", "hostname", "-s"])
    .arg(&script)
    .env("LB_DHCP_OUT", &out);
    netns::command_in(ns, &mut cmd).unwrap();
    let o = cmd.output().unwrap();
    let Ok(lease) = std::fs::read_to_string(&out) else {
        eprintln!(
            "udhcpc in {ns}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        return None;
    };
    let mut it = lease.split_whitespace();
    let ip = it.next()?.parse().ok()?;
    Some((ip, it.next().unwrap_or("").to_string()))
}

/// One ping with a 1 s deadline.
pub fn ping(ns: &str, ip: IpAddr) -> bool {
    netns::run_command(ns, "ping", &["-c", "1", "-W", "1", &ip.to_string()]).is_ok()
}

/// Ping until it answers or `secs` pass.
pub fn ping_within(ns: &str, ip: IpAddr, secs: u64) -> bool {
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    while std::time::Instant::now() < end {
        if ping(ns, ip) {
            return true;
        }
    }
    false
}

/// A TCP server in `ns` on `port` that answers every connection with `reply` (runs until the
/// namespace goes away or the process ends; accept loop bounded to 1000 connections).
pub fn tcp_server(ns: &str, port: u16, reply: &str) {
    let l: TcpListener = netns::run_in(ns, move || {
        TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).unwrap()
    })
    .unwrap();
    let reply = reply.to_string();
    std::thread::spawn(move || {
        for mut s in l.incoming().take(1000).flatten() {
            let _ = s.write_all(reply.as_bytes());
        }
    });
}

/// Connect from `ns` to ip:port and read the reply; None when it cannot connect in 3 s.
pub fn tcp_get(ns: &str, ip: IpAddr, port: u16) -> Option<String> {
    netns::run_in(ns, move || {
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(3)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        Some(buf)
    })
    .unwrap()
}

/// A TCP server in `ns` that answers each connection with the peer's address.
pub fn tcp_peer_server(ns: &str, port: u16) {
    let l: TcpListener = netns::run_in(ns, move || {
        TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).unwrap()
    })
    .unwrap();
    std::thread::spawn(move || {
        for mut s in l.incoming().take(1000).flatten() {
            let peer = s
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_default();
            let _ = s.write_all(peer.as_bytes());
        }
    });
}

/// A UDP server in `ns` on `port` answering every datagram with `reply` (bounded to 1000).
pub fn udp_server(ns: &str, port: u16, reply: &str) {
    let s: std::net::UdpSocket = netns::run_in(ns, move || {
        std::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)).unwrap()
    })
    .unwrap();
    let reply = reply.to_string();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        for _ in 0..1000 {
            if let Ok((_, from)) = s.recv_from(&mut buf) {
                let _ = s.send_to(reply.as_bytes(), from);
            }
        }
    });
}

/// Send one datagram from `ns` (source port `sport`, the same flow each time) to ip:port and
/// wait 2 s for the answer.
pub fn udp_query(ns: &str, sport: u16, ip: IpAddr, port: u16) -> Option<String> {
    netns::run_in(ns, move || {
        let s =
            std::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), sport))
                .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.send_to(b"?", SocketAddr::new(ip, port)).ok()?;
        let mut buf = [0u8; 1500];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    })
    .unwrap()
}
