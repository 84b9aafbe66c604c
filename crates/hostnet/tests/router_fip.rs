//! A router between an internal network and an external one: SNAT out, a floating IP that
//! answers from the external side and keeps answering after it moves to another port.

mod common;

use std::net::IpAddr;

use common::*;
use lifeboat_hostnet::{
    netns, Direction, EtherType, FloatingIp, HostNetwork, HostOptions, Protocol, Remote,
    RouterGateway, RouterInterface, RouterSpec, SecurityGroup, SecurityGroupRule,
};

fn ingress(proto: Protocol, port: Option<u16>) -> SecurityGroupRule {
    SecurityGroupRule {
        direction: Direction::Ingress,
        ethertype: EtherType::IPv4,
        protocol: Some(proto),
        port_range_min: port,
        port_range_max: port,
        remote: Remote::Cidr("0.0.0.0/0".parse().unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floating_ip_answers_from_outside_and_follows_its_port() {
    require_tools();
    let mut g = Guard::new();
    let host = g.host("fip");
    let (x, g1, g2) = (g.ns("x"), g.ns("g1"), g.ns("g2"));
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();

    let mut ext = net("ext", 200, "198.51.100.0/24", None);
    ext.subnets[0].enable_dhcp = false;
    let int = net("int", 201, "10.77.4.0/24", Some("10.77.4.1"));
    hn.ensure_network(&ext).await.unwrap();
    hn.ensure_network(&int).await.unwrap();
    hn.serve_network("int", &[]).await.unwrap();
    hn.apply_security_groups(&[
        SecurityGroup {
            id: "default".into(),
            rules: SecurityGroup::default_rules("default"),
            members: vec!["10.77.4.11".parse().unwrap(), "10.77.4.12".parse().unwrap()],
        },
        SecurityGroup {
            id: "pub".into(),
            rules: vec![
                ingress(Protocol::Icmp, None),
                ingress(Protocol::Tcp, Some(8080)),
                ingress(Protocol::Udp, Some(6000)),
                ingress(Protocol::Tcp, Some(7001)),
            ],
            members: vec![],
        },
    ])
    .await
    .unwrap();

    // The outside world: a namespace on the external network.
    let mut px = port("px", "ext", 0x10, "198.51.100.10", &[]);
    px.port_security_enabled = false;
    hn.ensure_port_namespace(&px, &x).await.unwrap();
    netns::run_command(
        &x,
        "ip",
        &["addr", "add", "198.51.100.10/24", "dev", "eth0"],
    )
    .unwrap();
    tcp_peer_server(&x, 7000);

    for (ns, id, last) in [(&g1, "g1", 11u8), (&g2, "g2", 12)] {
        let ip = format!("10.77.4.{last}");
        hn.ensure_port_namespace(&port(id, "int", last, &ip, &["default", "pub"]), ns)
            .await
            .unwrap();
        assert_eq!(dhcp(ns).0.to_string(), ip);
        tcp_server(ns, 8080, id);
        udp_server(ns, 6000, id);
        tcp_peer_server(ns, 7001);
    }

    let fip: std::net::Ipv4Addr = "198.51.100.50".parse().unwrap();
    let mut spec = RouterSpec {
        id: "r1".into(),
        gateway: Some(RouterGateway {
            network_id: "ext".into(),
            ip: "198.51.100.2/24".parse().unwrap(),
            gateway_ip: Some("198.51.100.10".parse().unwrap()),
            mac: None,
            enable_snat: true,
        }),
        interfaces: vec![RouterInterface {
            network_id: "int".into(),
            subnet: int.subnets[0].clone(),
            mac: None,
        }],
        floating_ips: vec![],
    };
    hn.ensure_router(&spec).await.unwrap();
    // SNAT: a guest without a floating IP leaves with the router's gateway address.
    assert!(
        ping_within(&g1, "10.77.4.1".parse().unwrap(), 5),
        "guest reaches its gateway"
    );
    assert_eq!(
        tcp_get(&g1, "198.51.100.10".parse().unwrap(), 7000).as_deref(),
        Some("198.51.100.2")
    );
    assert!(!ping(&x, IpAddr::V4(fip)), "no floating IP yet");

    spec.floating_ips.push(FloatingIp {
        floating_ip: fip,
        fixed_ip: "10.77.4.11".parse().unwrap(),
    });
    hn.ensure_router(&spec).await.unwrap();
    assert!(ping_within(&x, IpAddr::V4(fip), 5), "floating IP answers");
    assert_eq!(tcp_get(&x, IpAddr::V4(fip), 8080).as_deref(), Some("g1"));
    // The guest sees the outside client's own address (no SNAT on the way in)...
    assert_eq!(
        tcp_get(&x, IpAddr::V4(fip), 7001).as_deref(),
        Some("198.51.100.10")
    );
    // ...and the other guest reaches the floating IP from inside (hairpin, answered back
    // through the router).
    assert_eq!(tcp_get(&g2, IpAddr::V4(fip), 8080).as_deref(), Some("g1"));
    // One UDP flow (same source port each time) from outside.
    assert_eq!(
        udp_query(&x, 5555, IpAddr::V4(fip), 6000).as_deref(),
        Some("g1")
    );
    // With its floating IP the guest leaves as the floating IP.
    assert_eq!(
        tcp_get(&g1, "198.51.100.10".parse().unwrap(), 7000).as_deref(),
        Some("198.51.100.50")
    );

    // Move it to the other port.
    hn.set_floating_ip(
        "r1",
        FloatingIp {
            floating_ip: fip,
            fixed_ip: "10.77.4.12".parse().unwrap(),
        },
    )
    .await
    .unwrap();
    assert!(
        ping_within(&x, IpAddr::V4(fip), 5),
        "floating IP answers after the move"
    );
    assert_eq!(tcp_get(&x, IpAddr::V4(fip), 8080).as_deref(), Some("g2"));
    // The same UDP flow follows at once (its old conntrack NAT was flushed).
    assert_eq!(
        udp_query(&x, 5555, IpAddr::V4(fip), 6000).as_deref(),
        Some("g2")
    );
    assert_eq!(
        tcp_get(&g1, "198.51.100.10".parse().unwrap(), 7000).as_deref(),
        Some("198.51.100.2"),
        "g1 is back to the router's SNAT"
    );

    hn.clear_floating_ip("r1", fip).await.unwrap();
    assert_eq!(tcp_get(&x, IpAddr::V4(fip), 8080), None);
    hn.remove_router("r1").await.unwrap();
    assert!(!ping(&g1, "10.77.4.1".parse().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_routes_ipv6_between_two_networks() {
    use lifeboat_hostnet::{Ipv6Mode, SubnetSpec};
    require_tools();
    let mut g = Guard::new();
    let host = g.host("r6");
    let (g1, g2) = (g.ns("g1"), g.ns("g2"));
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    let v6 = |net: &str, prefix: &str, gw: &str| SubnetSpec {
        id: format!("{net}-v6"),
        cidr: prefix.parse().unwrap(),
        gateway_ip: Some(gw.parse().unwrap()),
        enable_dhcp: true,
        dns_nameservers: vec![],
        host_routes: vec![],
        dhcp_ip: None,
        ipv6_mode: Ipv6Mode::Slaac,
    };
    let mut a = net("a", 131, "10.77.31.0/24", Some("10.77.31.1"));
    a.subnets.push(v6("a", "fd00:77:31::/64", "fd00:77:31::1"));
    let mut b = net("b", 132, "10.77.32.0/24", Some("10.77.32.1"));
    b.subnets.push(v6("b", "fd00:77:32::/64", "fd00:77:32::1"));
    let ip1: IpAddr = "fd00:77:31::f816:3eff:fe00:1".parse().unwrap();
    let ip2: IpAddr = "fd00:77:32::f816:3eff:fe00:2".parse().unwrap();
    for n in [&a, &b] {
        hn.ensure_network(n).await.unwrap();
    }
    hn.apply_security_groups(&[SecurityGroup {
        id: "default".into(),
        rules: SecurityGroup::default_rules("default"),
        members: vec![
            ip1,
            ip2,
            "10.77.31.11".parse().unwrap(),
            "10.77.32.12".parse().unwrap(),
        ],
    }])
    .await
    .unwrap();
    let mut p1 = port("p1", "a", 1, "10.77.31.11", &["default"]);
    p1.fixed_ips.push(ip1);
    let mut p2 = port("p2", "b", 2, "10.77.32.12", &["default"]);
    p2.fixed_ips.push(ip2);
    hn.ensure_port_namespace(&p1, &g1).await.unwrap();
    hn.ensure_port_namespace(&p2, &g2).await.unwrap();
    hn.serve_network("a", &[]).await.unwrap();
    hn.serve_network("b", &[]).await.unwrap();
    let iface = |n: &lifeboat_hostnet::NetworkSpec, i: usize| RouterInterface {
        network_id: n.id.clone(),
        subnet: n.subnets[i].clone(),
        mac: None,
    };
    hn.ensure_router(&RouterSpec {
        id: "r6".into(),
        gateway: None,
        interfaces: vec![iface(&a, 0), iface(&a, 1), iface(&b, 0), iface(&b, 1)],
        floating_ips: vec![],
    })
    .await
    .unwrap();
    for ns in [&g1, &g2] {
        netns::run_command(ns, "ip", &["link", "set", "eth0", "down"]).unwrap();
        netns::run_command(ns, "ip", &["link", "set", "eth0", "up"]).unwrap();
    }
    assert_eq!(dhcp(&g1).0.to_string(), "10.77.31.11");
    assert_eq!(dhcp(&g2).0.to_string(), "10.77.32.12");
    // IPv4 is routed between the two subnets too.
    assert!(
        ping_within(&g1, "10.77.32.12".parse().unwrap(), 5),
        "IPv4 across the router"
    );
    // SLAAC addresses from the prefixes, default route from the router's advertisements.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let ready = |ns: &str| {
        let r =
            netns::run_command(ns, "ip", &["-6", "route", "show", "default"]).unwrap_or_default();
        let a = netns::run_command(ns, "ip", &["-6", "addr", "show", "dev", "eth0"])
            .unwrap_or_default();
        r.contains("via fe80") && a.contains("fd00:77:") && !a.contains("tentative")
    };
    while !(ready(&g1) && ready(&g2)) {
        assert!(
            std::time::Instant::now() < end,
            "no IPv6 default route/address: {:?} {:?}",
            netns::run_command(&g1, "ip", &["-6", "route"]),
            netns::run_command(&g1, "ip", &["-6", "addr"])
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(ping_within(&g1, ip2, 5), "IPv6 across the router");
}
