//! The metadata service at 169.254.169.254 inside a network, keyed by the guest's address,
//! and the config drive ISO with the same documents.

mod common;

use std::sync::Arc;

use common::*;
use lifeboat_hostnet::metadata::{ec2_id, network_data, StaticMetadata};
use lifeboat_hostnet::{
    configdrive, netns, HostNetwork, HostOptions, InstanceMetadata, SecurityGroup,
};

fn instance(n: &lifeboat_hostnet::NetworkSpec, p: &lifeboat_hostnet::PortSpec) -> InstanceMetadata {
    InstanceMetadata {
        uuid: "11111111-2222-3333-4444-555555555555".into(),
        name: "vm1".into(),
        hostname: "vm1".into(),
        project_id: "proj".into(),
        availability_zone: "nova".into(),
        public_keys: vec![(
            "mykey".into(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST test".into(),
        )],
        user_data: Some(b"#!/bin/sh\necho user-data-reached-the-guest\n".to_vec()),
        ec2_instance_id: ec2_id(7),
        local_ipv4: Some("10.77.5.11".parse().unwrap()),
        network_data: network_data(&[(p, n)]),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_returns_user_data_to_the_guest_by_its_address() {
    require_tools();
    let mut g = Guard::new();
    let host = g.host("md");
    let (g1, g2) = (g.ns("g1"), g.ns("g2"));
    let n = net("n", 105, "10.77.5.0/24", Some("10.77.5.1"));
    let p1 = port("p1", "n", 1, "10.77.5.11", &["default"]);
    let p2 = port("p2", "n", 2, "10.77.5.12", &["default"]);
    let src = Arc::new(StaticMetadata::default());
    src.entries.lock().unwrap().push((
        "n".into(),
        "10.77.5.11".parse().unwrap(),
        instance(&n, &p1),
    ));
    let hn = HostNetwork::open(
        &host,
        HostOptions {
            run_dir: None,
            metadata: Some(src.clone()),
        },
    )
    .await
    .unwrap();
    hn.ensure_network(&n).await.unwrap();
    hn.apply_security_groups(&[SecurityGroup {
        id: "default".into(),
        rules: SecurityGroup::default_rules("default"),
        members: vec!["10.77.5.11".parse().unwrap(), "10.77.5.12".parse().unwrap()],
    }])
    .await
    .unwrap();
    hn.ensure_port_namespace(&p1, &g1).await.unwrap();
    hn.ensure_port_namespace(&p2, &g2).await.unwrap();
    hn.serve_network("n", &[]).await.unwrap();
    dhcp(&g1);
    dhcp(&g2);
    let get = |ns: &str, path: &str| {
        netns::run_command(
            ns,
            "busybox",
            &[
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://169.254.169.254{path}"),
            ],
        )
    };
    assert_eq!(
        get(&g1, "/openstack/latest/user_data").unwrap(),
        "#!/bin/sh\necho user-data-reached-the-guest\n"
    );
    assert_eq!(
        get(&g1, "/latest/user-data").unwrap(),
        "#!/bin/sh\necho user-data-reached-the-guest\n"
    );
    let md: serde_json::Value =
        serde_json::from_str(&get(&g1, "/openstack/latest/meta_data.json").unwrap()).unwrap();
    assert_eq!(md["uuid"], "11111111-2222-3333-4444-555555555555");
    assert_eq!(
        md["public_keys"]["mykey"],
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST test"
    );
    let nd: serde_json::Value =
        serde_json::from_str(&get(&g1, "/openstack/latest/network_data.json").unwrap()).unwrap();
    assert_eq!(nd["links"][0]["ethernet_mac_address"], "fa:16:3e:00:00:01");
    assert_eq!(nd["networks"][0]["ip_address"], "10.77.5.11");
    assert_eq!(
        get(&g1, "/latest/meta-data/instance-id").unwrap(),
        "i-00000007"
    );
    assert_eq!(
        get(&g1, "/latest/meta-data/public-keys/0/openssh-key").unwrap(),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITEST test"
    );
    // The other guest is not that instance: it gets nothing of it.
    assert!(
        get(&g2, "/openstack/latest/user_data").is_err(),
        "unknown source must get 404"
    );
}

#[test]
fn config_drive_carries_the_same_documents() {
    let n = net("n", 106, "10.77.6.0/24", Some("10.77.6.1"));
    let p = port("p1", "n", 1, "10.77.6.11", &[]);
    let md = instance(&n, &p);
    let dir = tempfile::tempdir().unwrap();
    let iso = dir.path().join("config.iso");
    configdrive::build(&md, &iso).unwrap();
    let info = std::process::Command::new("isoinfo")
        .args(["-d", "-i"])
        .arg(&iso)
        .output()
        .expect("isoinfo (genisoimage) is installed");
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("Volume id: config-2"), "{info}");
    let read = |path: &str| {
        let o = std::process::Command::new("isoinfo")
            .args(["-R", "-x", path, "-i"])
            .arg(&iso)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(
        read("/openstack/latest/user_data"),
        "#!/bin/sh\necho user-data-reached-the-guest\n"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&read("/openstack/latest/meta_data.json")).unwrap();
    assert_eq!(meta["hostname"], "vm1");
    let nd: serde_json::Value =
        serde_json::from_str(&read("/openstack/2012-08-10/network_data.json")).unwrap();
    assert_eq!(nd["networks"][0]["ip_address"], "10.77.6.11");
    let ec2: serde_json::Value = serde_json::from_str(&read("/ec2/latest/meta-data.json")).unwrap();
    assert_eq!(ec2["instance-id"], "i-00000007");
}
