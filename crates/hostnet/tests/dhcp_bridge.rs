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
    hn.destroy().await.unwrap();
    assert!(!lifeboat_hostnet::netns::exists(&format!("lbh-{host}")));
}
