//! Network benchmark: TCP throughput between two guests on one Lifeboat network (namespace
//! guests on veth ports of the network's bridge, with security groups and anti-spoofing
//! active) beside the same transfer between two bare namespaces joined by a veth pair, in the
//! same run. Prints both, the ratio, and a JSON line last. Needs root. Not run in CI.
//!
//! `cargo run --release -p lifeboat-bench --bin network -- [SECONDS] [ROUNDS]`
//! (defaults 2 s, 3 rounds; the median round counts).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use lifeboat_hostnet::{
    netns, HostNetwork, HostOptions, MacAddr, NetworkSpec, PortSpec, SecurityGroup, SubnetSpec,
};
use serde_json::json;

const PORT: u16 = 5201;

/// Removes everything the bench created, also on panic.
struct Cleanup {
    host: String,
    namespaces: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in &self.namespaces {
            let _ = netns::delete(n);
        }
        let _ = lifeboat_hostnet::cleanup_host(&self.host);
    }
}

/// Send for `secs` from `from` to `to_ip` (receiver in `to`); returns Gbit/s seen by the
/// receiver.
fn throughput(from: &str, to: &str, to_ip: Ipv4Addr, secs: f64) -> anyhow::Result<f64> {
    let listener: TcpListener = netns::run_in(to, move || {
        TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), PORT))
    })??;
    let receiver = std::thread::spawn(move || -> std::io::Result<(u64, Duration)> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        let start = Instant::now();
        loop {
            let n = s.read(&mut buf)?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        Ok((total, start.elapsed()))
    });
    let dur = Duration::from_secs_f64(secs);
    netns::run_in(from, move || -> std::io::Result<()> {
        let mut s = TcpStream::connect_timeout(
            &SocketAddr::new(IpAddr::V4(to_ip), PORT),
            Duration::from_secs(5),
        )?;
        let buf = vec![0x5au8; 128 * 1024];
        let start = Instant::now();
        while start.elapsed() < dur {
            s.write_all(&buf)?;
        }
        s.shutdown(std::net::Shutdown::Write)
    })??;
    let (bytes, elapsed) = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    Ok(bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn port(id: &str, last: u8, ip: &str) -> PortSpec {
    PortSpec {
        id: id.into(),
        network_id: "bench".into(),
        mac: MacAddr([0xfa, 0x16, 0x3e, 0xbe, 0x00, last]),
        fixed_ips: vec![ip.parse().unwrap()],
        hostname: None,
        security_groups: vec!["default".into()],
        port_security_enabled: true,
        allowed_address_pairs: vec![],
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(2.0);
    let rounds: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(3);
    anyhow::ensure!(
        rounds >= 1 && secs > 0.0,
        "usage: network [SECONDS] [ROUNDS]"
    );
    // SAFETY: geteuid has no preconditions.
    anyhow::ensure!(
        unsafe { libc::geteuid() } == 0,
        "bench/network needs root (namespaces)"
    );
    let id = std::process::id();
    let host = format!("bnet{id}");
    let ns = |s: &str| format!("lbb-{id}-{s}");
    let (g1, g2, v1, v2) = (ns("g1"), ns("g2"), ns("v1"), ns("v2"));
    let _cleanup = Cleanup {
        host: host.clone(),
        namespaces: vec![g1.clone(), g2.clone(), v1.clone(), v2.clone()],
    };

    // Two guests on a Lifeboat network.
    let hn = HostNetwork::open(&host, HostOptions::default()).await?;
    hn.ensure_network(&NetworkSpec {
        id: "bench".into(),
        vni: 900,
        mtu: 1500,
        subnets: vec![SubnetSpec {
            id: "bench-v4".into(),
            cidr: "10.99.0.0/24".parse()?,
            gateway_ip: None,
            enable_dhcp: false,
            dns_nameservers: vec![],
            host_routes: vec![],
            dhcp_ip: None,
            ipv6_mode: Default::default(),
        }],
    })
    .await?;
    hn.apply_security_groups(&[SecurityGroup {
        id: "default".into(),
        rules: SecurityGroup::default_rules("default"),
        members: vec!["10.99.0.1".parse()?, "10.99.0.2".parse()?],
    }])
    .await?;
    hn.ensure_port_namespace(&port("bench-1", 1, "10.99.0.1"), &g1)
        .await?;
    hn.ensure_port_namespace(&port("bench-2", 2, "10.99.0.2"), &g2)
        .await?;
    netns::run_command(&g1, "ip", &["addr", "add", "10.99.0.1/24", "dev", "eth0"])?;
    netns::run_command(&g2, "ip", &["addr", "add", "10.99.0.2/24", "dev", "eth0"])?;

    // Two bare namespaces joined by a veth pair, same MTU.
    netns::create(&v1)?;
    netns::create(&v2)?;
    netns::run_command(
        &v1,
        "ip",
        &[
            "link", "add", "eth0", "mtu", "1500", "type", "veth", "peer", "name", "peer0",
        ],
    )?;
    netns::run_command(&v1, "ip", &["link", "set", "peer0", "netns", &v2])?;
    netns::run_command(&v2, "ip", &["link", "set", "peer0", "name", "eth0"])?;
    for (n, ip) in [(&v1, "10.98.0.1/24"), (&v2, "10.98.0.2/24")] {
        netns::run_command(n, "ip", &["addr", "add", ip, "dev", "eth0"])?;
        netns::run_command(n, "ip", &["link", "set", "eth0", "up"])?;
        netns::run_command(n, "ip", &["link", "set", "lo", "up"])?;
    }
    // Warm up ARP/conntrack on both paths.
    netns::run_command(&g1, "ping", &["-c", "1", "-W", "2", "10.99.0.2"])?;
    netns::run_command(&v1, "ping", &["-c", "1", "-W", "2", "10.98.0.2"])?;

    let (mut bridge, mut veth) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let b = throughput(&g1, &g2, "10.99.0.2".parse()?, secs)?;
        let v = throughput(&v1, &v2, "10.98.0.2".parse()?, secs)?;
        println!(
            "round {}: bridge {b:.2} Gbit/s, bare veth {v:.2} Gbit/s",
            r + 1
        );
        bridge.push(b);
        veth.push(v);
    }
    let (b, v) = (median(bridge), median(veth));
    println!("guest-to-guest over the Lifeboat bridge (security groups on): {b:.2} Gbit/s");
    println!("two bare namespaces over a veth pair:                          {v:.2} Gbit/s");
    println!("ratio bridge/veth: {:.2}", b / v);
    drop(hn);
    println!(
        "{}",
        json!({"bench": "network", "seconds": secs, "rounds": rounds,
            "bridge_gbps": (b * 100.0).round() / 100.0, "veth_gbps": (v * 100.0).round() / 100.0,
            "ratio": (b / v * 1000.0).round() / 1000.0,
            "guests": "namespaces on veth ports (real VMs come with the QEMU tap integration)"})
    );
    Ok(())
}
