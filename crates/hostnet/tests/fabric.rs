//! A network spanning two host agents (VXLAN over a fabric of veths): a guest on the second
//! host gets its address from the first host's dnsmasq and reaches a guest there; after its
//! port moves to the other host (as a live migration does) it is still reachable.

mod common;

use std::net::IpAddr;

use common::*;
use lifeboat_hostnet::{Fabric, HostNetwork, HostOptions, SecurityGroup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_spans_two_hosts_and_a_port_moves_between_them() {
    require_tools();
    let mut g = Guard::new();
    let (ha, hb) = (g.host("fa"), g.host("fb"));
    let fabric_name = unique("fab");
    g.namespaces.push(format!("lbf-{fabric_name}"));
    let (g1, g2) = (g.ns("g1"), g.ns("g2"));
    let fabric = Fabric::open(&fabric_name).await.unwrap();
    let a = HostNetwork::open(&ha, HostOptions::default())
        .await
        .unwrap();
    let b = HostNetwork::open(&hb, HostOptions::default())
        .await
        .unwrap();
    let n = net("n", 300, "10.77.7.0/24", None);
    a.ensure_network(&n).await.unwrap();
    let ipa = a.join_fabric(&fabric).await.unwrap();
    let ipb = b.join_fabric(&fabric).await.unwrap();
    assert_ne!(ipa, ipb);
    assert_eq!(
        a.join_fabric(&fabric).await.unwrap(),
        ipa,
        "joining again is a no-op"
    );
    b.ensure_network(&n).await.unwrap();
    let sg = [SecurityGroup {
        id: "default".into(),
        rules: SecurityGroup::default_rules("default"),
        members: vec!["10.77.7.11".parse().unwrap(), "10.77.7.12".parse().unwrap()],
    }];
    a.apply_security_groups(&sg).await.unwrap();
    b.apply_security_groups(&sg).await.unwrap();
    let p1 = port("p1", "n", 1, "10.77.7.11", &["default"]);
    let p2 = port("p2", "n", 2, "10.77.7.12", &["default"]);
    a.ensure_port_namespace(&p1, &g1).await.unwrap();
    b.ensure_port_namespace(&p2, &g2).await.unwrap();
    // DHCP for the network is served from host A only; B's port is a remote host entry.
    a.serve_network("n", std::slice::from_ref(&p2))
        .await
        .unwrap();
    assert_eq!(dhcp(&g1).0.to_string(), "10.77.7.11");
    assert_eq!(dhcp(&g2).0.to_string(), "10.77.7.12", "lease over VXLAN");
    assert!(
        ping_within(&g2, "10.77.7.11".parse().unwrap(), 5),
        "across hosts"
    );

    // "Live migration" of p1 from A to B: same MAC, same IP, now behind host B.
    tcp_server(&g2, 8080, "g2");
    a.remove_port("p1").await.unwrap();
    b.ensure_port_namespace(&p1, &g1).await.unwrap();
    a.serve_network("n", &[p1.clone(), p2.clone()])
        .await
        .unwrap();
    assert_eq!(dhcp(&g1).0.to_string(), "10.77.7.11");
    assert!(ping_within(
        &g1,
        IpAddr::V4("10.77.7.12".parse().unwrap()),
        5
    ));
    assert_eq!(
        tcp_get(&g1, "10.77.7.12".parse().unwrap(), 8080).as_deref(),
        Some("g2")
    );
    // And back to A, where the other guest reaches it again through the fabric.
    b.remove_port("p1").await.unwrap();
    a.ensure_port_namespace(&p1, &g1).await.unwrap();
    assert_eq!(dhcp(&g1).0.to_string(), "10.77.7.11");
    assert!(
        ping_within(&g2, "10.77.7.11".parse().unwrap(), 5),
        "after moving back"
    );
    drop(a);
    drop(b);
    drop(fabric);
}
