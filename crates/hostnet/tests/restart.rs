//! An agent process that dies leaves its namespaces, taps and dnsmasq behind: a new process
//! ensures what is still wanted, takes the running dnsmasq over, and prunes the rest.

mod common;

use common::*;
use lifeboat_hostnet::{netns, HostNetwork, HostOptions, RouterInterface, RouterSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_process_adopts_what_is_wanted_and_prunes_the_rest() {
    require_tools();
    let mut g = Guard::new();
    let host = g.host("rs");
    let (g1, g2) = (g.ns("g1"), g.ns("g2"));
    let n1 = net("n1", 111, "10.77.11.0/24", Some("10.77.11.1"));
    let n2 = net("n2", 112, "10.77.12.0/24", Some("10.77.12.1"));
    let p1 = port("p1", "n1", 1, "10.77.11.11", &[]);
    let p2 = port("p2", "n1", 2, "10.77.11.12", &[]);
    let old_dnsmasq;
    {
        let hn = HostNetwork::open(&host, HostOptions::default())
            .await
            .unwrap();
        hn.ensure_network(&n1).await.unwrap();
        hn.ensure_network(&n2).await.unwrap();
        hn.ensure_port_namespace(&p1, &g1).await.unwrap();
        hn.ensure_port_namespace(&p2, &g2).await.unwrap();
        hn.serve_network("n1", &[]).await.unwrap();
        hn.serve_network("n2", &[]).await.unwrap();
        hn.ensure_router(&RouterSpec {
            id: "r-old".into(),
            gateway: None,
            interfaces: vec![RouterInterface {
                network_id: "n2".into(),
                subnet: n2.subnets[0].clone(),
                mac: None,
            }],
            floating_ips: vec![],
        })
        .await
        .unwrap();
        old_dnsmasq = hn.dhcp_info("n1").await.unwrap().0;
        // The process "dies": nothing is cleaned up.
        std::mem::forget(hn);
    }
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    hn.ensure_network(&n1).await.unwrap();
    hn.ensure_port_namespace(&p1, &g1).await.unwrap();
    hn.serve_network("n1", &[]).await.unwrap();
    let new_dnsmasq = hn.dhcp_info("n1").await.unwrap().0;
    assert_ne!(old_dnsmasq, new_dnsmasq);
    assert!(
        !std::path::Path::new(&format!("/proc/{old_dnsmasq}")).exists()
            || std::fs::read_to_string(format!("/proc/{old_dnsmasq}/stat"))
                .map(|s| s.contains(") Z "))
                .unwrap_or(true),
        "the old dnsmasq was stopped"
    );
    let removed = hn.prune().await.unwrap();
    for gone in ["tapp2", "lbbr112", &format!("lbh-{host}-n112")] {
        assert!(
            removed.iter().any(|r| r == gone),
            "{gone} not pruned: {removed:?}"
        );
    }
    assert!(
        removed
            .iter()
            .any(|r| r.starts_with(&format!("lbh-{host}-r"))),
        "router namespace not pruned: {removed:?}"
    );
    assert!(!netns::exists(&format!("lbh-{host}-n112")));
    assert_eq!(
        hn.ports().await,
        vec![("p1".to_string(), "tapp1".to_string())]
    );
    // What is wanted still works.
    assert_eq!(dhcp(&g1).0.to_string(), "10.77.11.11");
    assert!(
        hn.prune().await.unwrap().is_empty(),
        "a second prune finds nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_brings_the_host_to_the_desired_state() {
    use lifeboat_hostnet::{DesiredState, SecurityGroup, ServedNetwork};
    require_tools();
    let mut g = Guard::new();
    let host = g.host("sy");
    let n1 = net("n1", 121, "10.77.21.0/24", Some("10.77.21.1"));
    let n2 = net("n2", 122, "10.77.22.0/24", Some("10.77.22.1"));
    let t1 = port("t1", "n1", 1, "10.77.21.11", &["default"]);
    let t2 = port("t2", "n2", 2, "10.77.22.12", &["default"]);
    let router = RouterSpec {
        id: "r".into(),
        gateway: None,
        interfaces: vec![
            RouterInterface {
                network_id: "n1".into(),
                subnet: n1.subnets[0].clone(),
                mac: None,
            },
            RouterInterface {
                network_id: "n2".into(),
                subnet: n2.subnets[0].clone(),
                mac: None,
            },
        ],
        floating_ips: vec![],
    };
    let full = DesiredState {
        networks: vec![n1.clone(), n2.clone()],
        security_groups: vec![SecurityGroup {
            id: "default".into(),
            rules: SecurityGroup::default_rules("default"),
            members: vec![],
        }],
        ports: vec![t1.clone(), t2.clone()],
        served: vec![
            ServedNetwork {
                network_id: "n1".into(),
                remote_ports: vec![],
            },
            ServedNetwork {
                network_id: "n2".into(),
                remote_ports: vec![],
            },
        ],
        routers: vec![router],
    };
    // The desired state travels as JSON (agent RPC).
    let full: DesiredState = serde_json::from_str(&serde_json::to_string(&full).unwrap()).unwrap();
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    hn.sync(&full).await.unwrap();
    hn.sync(&full).await.unwrap();
    let hns = format!("lbh-{host}");
    let links = netns::run_command(&hns, "ip", &["-o", "link"]).unwrap();
    for l in ["lbbr121", "lbbr122", "tapt1", "tapt2", "lbs121", "lbs122"] {
        assert!(
            links.contains(&format!(" {l}:")) || links.contains(&format!(" {l}@")),
            "{l} missing: {links}"
        );
    }
    let router_ns = format!("lbh-{host}-r{}", lifeboat_hostnet::names::hash8("r"));
    assert!(netns::exists(&router_ns));
    let small = DesiredState {
        networks: vec![n1.clone()],
        security_groups: full.security_groups.clone(),
        ports: vec![t1.clone()],
        served: vec![ServedNetwork {
            network_id: "n1".into(),
            remote_ports: vec![],
        }],
        routers: vec![],
    };
    hn.sync(&small).await.unwrap();
    let links = netns::run_command(&hns, "ip", &["-o", "link"]).unwrap();
    for l in ["lbbr122", "tapt2", "lbs122", "lbq"] {
        assert!(
            !links.contains(&format!(" {l}")),
            "{l} still there: {links}"
        );
    }
    assert!(links.contains(" tapt1:"), "{links}");
    assert!(!netns::exists(&router_ns));
    assert!(!netns::exists(&format!("lbh-{host}-n122")));
    assert!(hn.dhcp_info("n1").await.is_some());
}
