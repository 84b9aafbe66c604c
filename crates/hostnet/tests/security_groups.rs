//! Security groups as nftables rules per port: default-deny ingress, rules open a TCP port,
//! the default group allows its own members, anti-spoofing, allowed address pairs and
//! port_security_enabled=false.

mod common;

use std::net::IpAddr;

use common::*;
use lifeboat_hostnet::{
    netns, AddressPair, Direction, EtherType, HostNetwork, HostOptions, Protocol, Remote,
    SecurityGroup, SecurityGroupRule,
};

fn tcp_in(port: u16) -> SecurityGroupRule {
    SecurityGroupRule {
        direction: Direction::Ingress,
        ethertype: EtherType::IPv4,
        protocol: Some(Protocol::Tcp),
        port_range_min: Some(port),
        port_range_max: Some(port),
        remote: Remote::Cidr("0.0.0.0/0".parse().unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_blocks_then_allows_a_tcp_port() {
    require_tools();
    let mut g = Guard::new();
    let host = g.host("sg");
    let (client, server) = (g.ns("c"), g.ns("s"));
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    hn.ensure_network(&net("n", 102, "10.77.2.0/24", None))
        .await
        .unwrap();
    let pc = port("pc", "n", 1, "10.77.2.11", &["default"]);
    let ps = port("ps", "n", 2, "10.77.2.12", &["web"]);
    let groups = |web_rules: Vec<SecurityGroupRule>| {
        vec![
            SecurityGroup {
                id: "default".into(),
                rules: SecurityGroup::default_rules("default"),
                members: vec!["10.77.2.11".parse().unwrap()],
            },
            SecurityGroup {
                id: "web".into(),
                rules: web_rules,
                members: vec!["10.77.2.12".parse().unwrap()],
            },
        ]
    };
    // "web" has only an egress rule: nothing gets in.
    let egress_all = SecurityGroupRule {
        direction: Direction::Egress,
        ethertype: EtherType::IPv4,
        protocol: None,
        port_range_min: None,
        port_range_max: None,
        remote: Remote::Any,
    };
    hn.apply_security_groups(&groups(vec![egress_all.clone()]))
        .await
        .unwrap();
    hn.ensure_port_namespace(&pc, &client).await.unwrap();
    hn.ensure_port_namespace(&ps, &server).await.unwrap();
    netns::run_command(
        &client,
        "ip",
        &["addr", "add", "10.77.2.11/24", "dev", "eth0"],
    )
    .unwrap();
    netns::run_command(
        &server,
        "ip",
        &["addr", "add", "10.77.2.12/24", "dev", "eth0"],
    )
    .unwrap();
    tcp_server(&server, 8080, "hello-8080");
    tcp_server(&server, 8081, "hello-8081");
    let sip: IpAddr = "10.77.2.12".parse().unwrap();
    let cip: IpAddr = "10.77.2.11".parse().unwrap();

    assert_eq!(tcp_get(&client, sip, 8080), None, "8080 must be blocked");
    assert!(!ping(&client, sip), "ICMP must be blocked");
    // The client's default group admits only its members: the server is not one.
    tcp_server(&client, 9000, "from-client");
    assert_eq!(tcp_get(&server, cip, 9000), None);

    hn.apply_security_groups(&groups(vec![egress_all.clone(), tcp_in(8080)]))
        .await
        .unwrap();
    // Answers come back through the client's filter as established traffic.
    assert_eq!(tcp_get(&client, sip, 8080).as_deref(), Some("hello-8080"));
    assert_eq!(tcp_get(&client, sip, 8081), None, "only 8080 is open");

    // Without port security the port is not filtered at all.
    let mut ps_open = ps.clone();
    ps_open.port_security_enabled = false;
    hn.ensure_port_namespace(&ps_open, &server).await.unwrap();
    assert_eq!(tcp_get(&client, sip, 8081).as_deref(), Some("hello-8081"));
    hn.ensure_port_namespace(&ps, &server).await.unwrap();
    assert_eq!(tcp_get(&client, sip, 8081), None, "filtered again");

    // Anti-spoofing: the client sending from another address gets nowhere; an allowed address
    // pair makes that address legitimate.
    netns::run_command(&client, "ip", &["addr", "flush", "dev", "eth0"]).unwrap();
    netns::run_command(
        &client,
        "ip",
        &["addr", "add", "10.77.2.50/24", "dev", "eth0"],
    )
    .unwrap();
    assert_eq!(
        tcp_get(&client, sip, 8080),
        None,
        "spoofed source must be dropped"
    );
    let mut pc2 = pc.clone();
    pc2.allowed_address_pairs = vec![AddressPair {
        ip_address: "10.77.2.50/32".parse().unwrap(),
        mac_address: None,
    }];
    hn.ensure_port_namespace(&pc2, &client).await.unwrap();
    assert_eq!(tcp_get(&client, sip, 8080).as_deref(), Some("hello-8080"));
    drop(hn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_group_allows_members_and_denies_others() {
    require_tools();
    let mut g = Guard::new();
    let host = g.host("sd");
    let (a, b, c) = (g.ns("a"), g.ns("b"), g.ns("c"));
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    hn.ensure_network(&net("n", 103, "10.77.3.0/24", None))
        .await
        .unwrap();
    hn.apply_security_groups(&[
        SecurityGroup {
            id: "default".into(),
            rules: SecurityGroup::default_rules("default"),
            members: vec!["10.77.3.1".parse().unwrap(), "10.77.3.2".parse().unwrap()],
        },
        SecurityGroup {
            id: "other".into(),
            rules: SecurityGroup::default_rules("other"),
            members: vec!["10.77.3.3".parse().unwrap()],
        },
    ])
    .await
    .unwrap();
    for (ns, id, last, grp) in [
        (&a, "a", 1u8, "default"),
        (&b, "b", 2, "default"),
        (&c, "c", 3, "other"),
    ] {
        let ip = format!("10.77.3.{last}");
        hn.ensure_port_namespace(&port(id, "n", last, &ip, &[grp]), ns)
            .await
            .unwrap();
        netns::run_command(
            ns,
            "ip",
            &["addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )
        .unwrap();
    }
    assert!(
        ping_within(&a, "10.77.3.2".parse().unwrap(), 3),
        "same group"
    );
    assert!(
        !ping(&c, "10.77.3.1".parse().unwrap()),
        "other group is denied"
    );
    assert!(
        !ping(&a, "10.77.3.3".parse().unwrap()),
        "other group denies us"
    );
}

/// A fixed IP added to a port (Nova's addFixedIp grows the port's `fixed_ips`): before the port
/// has it, the guest answering from it is dropped as spoofed; once the port carries it, the
/// address passes anti-spoofing, is a member of the port's group (so the peer's default group
/// admits it) and is in the port's DHCP host entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_fixed_ip_is_carried_by_the_data_plane() {
    require_tools();
    let mut g = Guard::new();
    let host = g.host("sf");
    let (a, b) = (g.ns("a"), g.ns("b"));
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    let n = net("n", 104, "10.77.4.0/24", None);
    hn.ensure_network(&n).await.unwrap();
    let groups = |a_ips: &[&str]| {
        let mut members: Vec<IpAddr> = a_ips.iter().map(|x| x.parse().unwrap()).collect();
        members.push("10.77.4.2".parse().unwrap());
        vec![SecurityGroup {
            id: "default".into(),
            rules: SecurityGroup::default_rules("default"),
            members,
        }]
    };
    let pa = port("a", "n", 1, "10.77.4.1", &["default"]);
    let pb = port("b", "n", 2, "10.77.4.2", &["default"]);
    hn.apply_security_groups(&groups(&["10.77.4.1"]))
        .await
        .unwrap();
    hn.ensure_port_namespace(&pa, &a).await.unwrap();
    hn.ensure_port_namespace(&pb, &b).await.unwrap();
    for (ns, ip) in [
        (&a, "10.77.4.1/24"),
        (&a, "10.77.4.9/24"),
        (&b, "10.77.4.2/24"),
    ] {
        netns::run_command(ns, "ip", &["addr", "add", ip, "dev", "eth0"]).unwrap();
    }
    tcp_server(&a, 8080, "from-the-added-ip");
    let (first, added): (IpAddr, IpAddr) =
        ("10.77.4.1".parse().unwrap(), "10.77.4.9".parse().unwrap());
    assert!(
        ping_within(&b, first, 3),
        "the port's first address answers"
    );
    assert!(
        !ping(&b, added),
        "an address the port does not have is spoofed"
    );
    assert_eq!(tcp_get(&b, added, 8080), None);

    let mut grown = pa.clone();
    grown.fixed_ips.push(added);
    hn.apply_security_groups(&groups(&["10.77.4.1", "10.77.4.9"]))
        .await
        .unwrap();
    hn.ensure_port_namespace(&grown, &a).await.unwrap();
    assert!(ping_within(&b, added, 5), "the added address answers");
    assert_eq!(
        tcp_get(&b, added, 8080).as_deref(),
        Some("from-the-added-ip")
    );
    let hosts = lifeboat_hostnet::dhcp::hosts(&n, &[grown, pb]);
    assert!(
        hosts.lines().any(|l| l.ends_with(",10.77.4.1,10.77.4.9")),
        "{hosts}"
    );
    drop(hn);
}
