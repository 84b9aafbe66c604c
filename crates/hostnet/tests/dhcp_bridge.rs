//! Two namespace guests on one network get their fixed IPs from dnsmasq and reach each other.

mod common;

use std::net::IpAddr;

use common::*;
use lifeboat_hostnet::{HostNetwork, HostOptions, SecurityGroup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_guests_get_fixed_ips_by_dhcp_and_ping_each_other() {
    require_tools();
    let mut g = Guard::new();
    let host = g.host("dh");
    let (g1, g2) = (g.ns("g1"), g.ns("g2"));
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    let n = net("net1", 101, "10.77.1.0/24", Some("10.77.1.1"));
    hn.ensure_network(&n).await.unwrap();
    hn.apply_security_groups(&[SecurityGroup {
        id: "default".into(),
        rules: SecurityGroup::default_rules("default"),
        members: vec!["10.77.1.11".parse().unwrap(), "10.77.1.12".parse().unwrap()],
    }])
    .await
    .unwrap();
    let p1 = port("p1", "net1", 1, "10.77.1.11", &["default"]);
    hn.ensure_port_namespace(&p1, &g1).await.unwrap();
    hn.serve_network("net1", &[]).await.unwrap();
    // The second port arrives after dnsmasq runs: its host entry comes with a SIGHUP.
    let p2 = port("p2", "net1", 2, "10.77.1.12", &["default"]);
    let (pid_before, dir) = hn.dhcp_info("net1").await.unwrap();
    hn.ensure_port_namespace(&p2, &g2).await.unwrap();
    let (pid_after, _) = hn.dhcp_info("net1").await.unwrap();
    assert_eq!(
        pid_before, pid_after,
        "dnsmasq reloads, it is not restarted"
    );
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    assert!(
        hosts.contains("fa:16:3e:00:00:02,vm-p2,10.77.1.12"),
        "{hosts}"
    );

    let (ip1, name1) = dhcp(&g1);
    let (ip2, _) = dhcp(&g2);
    assert_eq!(ip1.to_string(), "10.77.1.11");
    assert_eq!(ip2.to_string(), "10.77.1.12");
    assert_eq!(name1, "vm-p1");
    assert!(ping_within(&g1, IpAddr::V4(ip2), 5), "g1 cannot ping g2");
    assert!(ping(&g2, IpAddr::V4(ip1)), "g2 cannot ping g1");

    // A port without a fixed IP has no host entry and gets no lease (static ranges only).
    let g3 = g.ns("g3");
    let mut p3 = port("p3", "net1", 3, "10.77.1.13", &["default"]);
    p3.fixed_ips.clear();
    hn.ensure_port_namespace(&p3, &g3).await.unwrap();
    assert!(
        try_dhcp(&g3, 3).is_none(),
        "a port without a host entry got a lease"
    );
    // Removing p2 takes its tap and host entry away.
    hn.remove_port("p2").await.unwrap();
    assert!(!ping(&g1, IpAddr::V4(ip2)));
    let hosts = std::fs::read_to_string(dir.join("hosts")).unwrap();
    assert!(!hosts.contains("10.77.1.12"), "{hosts}");
    // Bad input gets a clear error, no panic.
    let err = hn
        .ensure_port(&port("px", "no-such-net", 9, "10.77.1.99", &[]))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "network no-such-net on this host not found"
    );
    let mut bad = n.clone();
    bad.vni = 0;
    assert!(hn
        .ensure_network(&bad)
        .await
        .unwrap_err()
        .to_string()
        .contains("segmentation id 0"));
    let mut clash = n.clone();
    clash.id = "other".into();
    assert!(hn
        .ensure_network(&clash)
        .await
        .unwrap_err()
        .to_string()
        .contains("is used by network net1"));

    // Removing the network takes its service namespace and dnsmasq with it.
    hn.remove_network("net1").await.unwrap();
    assert!(!lifeboat_hostnet::netns::exists(&format!(
        "lbh-{host}-n101"
    )));
    assert!(hn.dhcp_info("net1").await.is_none());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid_after}")).exists(),
        "dnsmasq stopped"
    );
    hn.destroy().await.unwrap();
    assert!(!lifeboat_hostnet::netns::exists(&format!("lbh-{host}")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_slaac_from_router_advertisements_and_ping6() {
    use lifeboat_hostnet::{netns, Ipv6Mode, SubnetSpec};
    require_tools();
    let mut g = Guard::new();
    let host = g.host("v6");
    let (g1, g2) = (g.ns("g1"), g.ns("g2"));
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    let mut n = net("n6", 106, "10.77.8.0/24", None);
    n.subnets.push(SubnetSpec {
        id: "n6-v6".into(),
        cidr: "fd00:77:8::/64".parse().unwrap(),
        gateway_ip: None,
        enable_dhcp: true,
        dns_nameservers: vec![],
        host_routes: vec![],
        dhcp_ip: None,
        ipv6_mode: Ipv6Mode::Slaac,
    });
    hn.ensure_network(&n).await.unwrap();
    // SLAAC addresses are EUI-64 from the MAC, as Neutron computes the fixed IPv6.
    let v6_1: IpAddr = "fd00:77:8::f816:3eff:fe00:1".parse().unwrap();
    let v6_2: IpAddr = "fd00:77:8::f816:3eff:fe00:2".parse().unwrap();
    hn.apply_security_groups(&[SecurityGroup {
        id: "default".into(),
        rules: SecurityGroup::default_rules("default"),
        members: vec![v6_1, v6_2],
    }])
    .await
    .unwrap();
    let mut p1 = port("p1", "n6", 1, "10.77.8.11", &["default"]);
    p1.fixed_ips.push(v6_1);
    let mut p2 = port("p2", "n6", 2, "10.77.8.12", &["default"]);
    p2.fixed_ips.push(v6_2);
    hn.ensure_port_namespace(&p1, &g1).await.unwrap();
    hn.ensure_port_namespace(&p2, &g2).await.unwrap();
    hn.serve_network("n6", &[]).await.unwrap();
    for ns in [&g1, &g2] {
        // Re-trigger router solicitation now that dnsmasq runs.
        netns::run_command(ns, "ip", &["link", "set", "eth0", "down"]).unwrap();
        netns::run_command(ns, "ip", &["link", "set", "eth0", "up"]).unwrap();
    }
    let has_addr = |ns: &str, ip: IpAddr| {
        netns::run_command(ns, "ip", &["-6", "addr", "show", "dev", "eth0"])
            .map(|o| o.contains(&ip.to_string()) && !o.contains("tentative"))
            .unwrap_or(false)
    };
    let end = std::time::Instant::now() + std::time::Duration::from_secs(25);
    while !(has_addr(&g1, v6_1) && has_addr(&g2, v6_2)) {
        assert!(
            std::time::Instant::now() < end,
            "no SLAAC address: {:?}",
            netns::run_command(&g1, "ip", &["-6", "addr"])
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert!(ping_within(&g1, v6_2, 5), "ping6 between guests");
    // A spoofed IPv6 source is dropped.
    netns::run_command(
        &g1,
        "ip",
        &[
            "-6",
            "addr",
            "add",
            "fd00:77:8::99/64",
            "dev",
            "eth0",
            "nodad",
        ],
    )
    .unwrap();
    assert!(
        netns::run_command(
            &g1,
            "ping",
            &[
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                "fd00:77:8::99",
                &v6_2.to_string()
            ]
        )
        .is_err(),
        "spoofed IPv6 source must not get through"
    );
}
