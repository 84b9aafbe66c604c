//! The desired data plane the engine pushes to each host (`net_sync`), checked on fake hosts:
//! a server's port is a tap on its host only, the first host serves the network (DHCP host
//! entries of remote ports, metadata with the key and user data), ports are in the project's
//! default group, and a live migration moves the port to the destination host.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use lifeboat_core::{Actor, Role, Server, VmState};
use lifeboat_engine::{CreateServer, Engine, EngineConfig, ServerAction};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};

async fn settle(e: &Engine, id: &str) -> Server {
    for _ in 0..400 {
        let s = e.store().get_server(id).await.unwrap().unwrap();
        if s.task_state.is_none() && s.vm_state != VmState::Building {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("server {id} did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ports_follow_their_servers_and_the_first_host_serves() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        lifeboat_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf());
    cfg.sync_interval = Duration::from_millis(200);
    cfg.ready_timeout = Duration::from_secs(5);
    let engine = Engine::new(store, cfg);
    engine.bootstrap_identity().await.unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let mut fakes = vec![];
    for i in 1..=2 {
        let f = Arc::new(FakeDriver::new(FakeConfig::from_env(&format!("host{i}"))));
        engine
            .add_host(&format!("host{i}"), "local", "nova", f.clone())
            .await
            .unwrap();
        fakes.push(f);
    }
    engine.start().await.unwrap();
    let admin = Actor {
        user_id: engine.user("admin").await.unwrap().id,
        user_name: "admin".into(),
        project_id: engine.project("admin").await.unwrap().id,
        role: Role::Admin,
    };
    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMiHRSkB7VPZU7VpixQCVKeSmROhwJxtYifbcCBUKhrc net@lifeboat";
    let kp = engine
        .import_keypair(&admin, "k1", KEY, "ssh")
        .await
        .expect("import key pair");
    let ud = base64::engine::general_purpose::STANDARD.encode("#!/bin/sh\necho hi\n");
    let c = engine
        .create_servers(
            &admin,
            CreateServer {
                name: "vm1".into(),
                flavor: "m1.nano".into(),
                key_name: Some("k1".into()),
                user_data: Some(ud),
                availability_zone: Some("nova:host2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = settle(&engine, &c[0].server.id).await;
    assert_eq!(s.host.as_deref(), Some("host2"));
    let port = &s.attachments[0];
    engine.sync_dataplane().await.unwrap();
    let h1 = fakes[0].net_state().expect("host1 was pushed a state");
    let h2 = fakes[1].net_state().expect("host2 was pushed a state");
    // The port is a tap on host2 only, with its MAC and fixed IP, in the default group.
    assert_eq!(h2.desired.ports.len(), 1, "{h2:?}");
    let p = &h2.desired.ports[0];
    assert_eq!(p.id, port.port_id);
    assert_eq!(p.mac.to_string(), port.mac_address);
    assert_eq!(p.fixed_ips[0].to_string(), port.fixed_ip);
    assert_eq!(p.hostname.as_deref(), Some(s.hostname.as_str()));
    assert!(h1.desired.ports.is_empty());
    let default = h2
        .desired
        .security_groups
        .iter()
        .find(|g| g.id == p.security_groups[0])
        .expect("the port's group is pushed");
    assert!(default.members.contains(&p.fixed_ips[0]));
    assert_eq!(default.rules.len(), 4, "Neutron's default rules");
    // host1 (first by name) serves the network: DHCP for the remote port, metadata.
    assert!(h2.desired.served.is_empty());
    let served = &h1.desired.served[0];
    assert_eq!(served.network_id, port.network_id);
    assert_eq!(served.remote_ports[0].id, port.port_id);
    assert!(h1.desired.networks.iter().any(|n| n.id == port.network_id));
    let md = h1
        .metadata
        .iter()
        .find(|m| m.ip.to_string() == port.fixed_ip)
        .expect("metadata for the port's address");
    assert_eq!(md.instance.uuid, s.id);
    assert_eq!(
        md.instance.public_keys,
        vec![("k1".to_string(), kp.public_key.clone())]
    );
    assert_eq!(
        md.instance.user_data.as_deref(),
        Some(&b"#!/bin/sh\necho hi\n"[..])
    );
    assert_eq!(
        md.instance.network_data["links"][0]["ethernet_mac_address"],
        port.mac_address.as_str()
    );

    // Live migration to host1: the tap moves with the server.
    engine
        .server_action(
            &admin,
            &s.id,
            ServerAction::LiveMigrate {
                host: Some("host1".into()),
            },
        )
        .await
        .unwrap();
    let s = settle(&engine, &s.id).await;
    assert_eq!(s.host.as_deref(), Some("host1"), "{:?}", s.fault);
    engine.sync_dataplane().await.unwrap();
    let h1 = fakes[0].net_state().unwrap();
    let h2 = fakes[1].net_state().unwrap();
    assert_eq!(h1.desired.ports[0].id, port.port_id);
    assert!(h2.desired.ports.is_empty(), "{h2:?}");
    assert!(h1.desired.served[0].remote_ports.is_empty());

    // Deleting the server removes its port everywhere.
    engine
        .server_action(&admin, &s.id, ServerAction::Delete)
        .await
        .unwrap();
    for _ in 0..200 {
        if fakes[0].net_state().unwrap().desired.ports.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(fakes[0].net_state().unwrap().desired.ports.is_empty());
}

/// The DHCP service's address is a `network:dhcp` port per subnet (as Neutron's DHCP agent
/// reserves it): listed, taken from the pool before any guest address, pushed as the
/// subnet's service address, gone with DHCP turned off or the subnet, and no obstacle to
/// deleting the subnet or the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dhcp_subnet_reserves_a_dhcp_port_for_the_service() {
    use lifeboat_engine::neutron::{NetworkReq, SubnetReq};
    let dir = tempfile::tempdir().unwrap();
    let store =
        lifeboat_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf());
    cfg.sync_interval = Duration::from_millis(200);
    cfg.ready_timeout = Duration::from_secs(5);
    let engine = Engine::new(store, cfg);
    engine.bootstrap_identity().await.unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let f = Arc::new(FakeDriver::new(FakeConfig::from_env("host1")));
    engine
        .add_host("host1", "local", "nova", f.clone())
        .await
        .unwrap();
    engine.start().await.unwrap();
    let admin = Actor {
        user_id: engine.user("admin").await.unwrap().id,
        user_name: "admin".into(),
        project_id: engine.project("admin").await.unwrap().id,
        role: Role::Admin,
    };
    let dhcp_ports = |all: &[lifeboat_engine::neutron::PortView], net: &str| -> Vec<String> {
        all.iter()
            .filter(|p| p.port.network_id == net && p.device_owner == "network:dhcp")
            .map(|p| p.port.fixed_ip.clone())
            .collect()
    };
    // The bootstrap network's subnet has one (made at start).
    let private = engine
        .net_list(&admin)
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.network.name == "private")
        .unwrap()
        .network
        .id;
    let all = engine.port_list(&admin).await.unwrap();
    assert_eq!(dhcp_ports(&all, &private), vec!["10.0.0.2".to_string()]);

    let net = engine
        .net_create(
            &admin,
            NetworkReq {
                name: Some("n9".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .network
        .id;
    let sub = engine
        .subnet_create(
            &admin,
            SubnetReq {
                network_id: Some(net.clone()),
                ip_version: Some(4),
                cidr: Some("10.9.0.0/24".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let all = engine.port_list(&admin).await.unwrap();
    assert_eq!(dhcp_ports(&all, &net), vec!["10.9.0.2".to_string()]);
    let p = all
        .iter()
        .find(|p| p.port.network_id == net && p.device_owner == "network:dhcp")
        .unwrap();
    assert!(p.device_id.starts_with("dhcp") && p.device_id.ends_with(&net));
    assert!(p.attrs.security_groups.is_empty());
    assert_eq!(p.fixed_ips[0].subnet_id, sub.id);

    // A guest gets another address; the host serves DHCP from the DHCP port's.
    let c = engine
        .create_servers(
            &admin,
            CreateServer {
                name: "g9".into(),
                flavor: "m1.nano".into(),
                networks: vec![lifeboat_engine::NetworkRequest {
                    network_id: Some(net.clone()),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = settle(&engine, &c[0].server.id).await;
    assert_eq!(s.attachments[0].fixed_ip, "10.9.0.3", "{:?}", s.fault);
    engine.sync_dataplane().await.unwrap();
    let st = f.net_state().unwrap();
    let n9 = st.desired.networks.iter().find(|n| n.id == net).unwrap();
    assert_eq!(
        n9.subnets[0].dhcp_ip.map(|i| i.to_string()).as_deref(),
        Some("10.9.0.2")
    );
    assert!(
        !st.desired.ports.iter().any(|p| p.id
            == all
                .iter()
                .find(|x| x.device_owner == "network:dhcp" && x.port.network_id == net)
                .unwrap()
                .port
                .id),
        "the DHCP port is no tap"
    );

    // DHCP off: the port goes; on again: it is back.
    let off = SubnetReq {
        enable_dhcp: Some(false),
        ..Default::default()
    };
    engine.subnet_update(&admin, &sub.id, off).await.unwrap();
    let all = engine.port_list(&admin).await.unwrap();
    assert!(dhcp_ports(&all, &net).is_empty());
    let on = SubnetReq {
        enable_dhcp: Some(true),
        ..Default::default()
    };
    engine.subnet_update(&admin, &sub.id, on).await.unwrap();
    let all = engine.port_list(&admin).await.unwrap();
    assert_eq!(dhcp_ports(&all, &net).len(), 1);

    // The DHCP port does not keep the subnet or the network in use.
    engine
        .server_action(&admin, &s.id, ServerAction::Delete)
        .await
        .unwrap();
    for _ in 0..400 {
        if engine.store().get_server(&s.id).await.unwrap().is_none()
            || engine
                .store()
                .get_server(&s.id)
                .await
                .unwrap()
                .is_some_and(|s| s.vm_state == VmState::Deleted)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    engine.subnet_delete(&admin, &sub.id).await.unwrap();
    let all = engine.port_list(&admin).await.unwrap();
    assert!(dhcp_ports(&all, &net).is_empty());
    engine.net_delete(&admin, &net).await.unwrap();
}

/// Ports follow moves that go back or fail: a revert of a cross-host migration pushes the
/// port's tap to the source again before the VM returns there (the fake, like qemu, refuses an
/// incoming VM whose taps are missing), and a live migration that fails leaves no tap on the
/// destination.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revert_and_failed_moves_leave_ports_where_the_server_is() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        lifeboat_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf());
    cfg.sync_interval = Duration::from_millis(200);
    cfg.ready_timeout = Duration::from_secs(5);
    let engine = Engine::new(store, cfg);
    engine.bootstrap_identity().await.unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let mut fakes = vec![];
    for i in 1..=2 {
        let f = Arc::new(FakeDriver::new(FakeConfig::from_env(&format!("host{i}"))));
        engine
            .add_host(&format!("host{i}"), "local", "nova", f.clone())
            .await
            .unwrap();
        fakes.push(f);
    }
    engine.start().await.unwrap();
    let admin = Actor {
        user_id: engine.user("admin").await.unwrap().id,
        user_name: "admin".into(),
        project_id: engine.project("admin").await.unwrap().id,
        role: Role::Admin,
    };
    let c = engine
        .create_servers(
            &admin,
            CreateServer {
                name: "mv".into(),
                flavor: "m1.nano".into(),
                availability_zone: Some("nova:host1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = settle(&engine, &c[0].server.id).await;
    let port = s.attachments[0].port_id.clone();
    let on = |i: usize| {
        fakes[i]
            .net_state()
            .is_some_and(|st| st.desired.ports.iter().any(|p| p.id == port))
    };

    // Cold migration to host2, then revert: back on host1 with its tap there.
    engine
        .server_action(
            &admin,
            &s.id,
            ServerAction::Migrate {
                host: Some("host2".into()),
            },
        )
        .await
        .unwrap();
    let s = settle(&engine, &s.id).await;
    assert_eq!(s.vm_state, VmState::Resized, "{:?}", s.fault);
    assert_eq!(s.host.as_deref(), Some("host2"));
    engine.sync_dataplane().await.unwrap();
    assert!(on(1) && !on(0));
    engine
        .server_action(&admin, &s.id, ServerAction::RevertResize)
        .await
        .unwrap();
    let s = settle(&engine, &s.id).await;
    assert_eq!(s.vm_state, VmState::Active, "{:?}", s.fault);
    assert_eq!(s.host.as_deref(), Some("host1"));
    engine.sync_dataplane().await.unwrap();
    assert!(
        on(0) && !on(1),
        "the port is on host1 only after the revert"
    );

    // A live migration whose stream fails: the server stays on host1, host2 drops the tap.
    fakes[0].inject_failure("migrate_to", 1);
    engine
        .server_action(
            &admin,
            &s.id,
            ServerAction::LiveMigrate {
                host: Some("host2".into()),
            },
        )
        .await
        .unwrap();
    let s = settle(&engine, &s.id).await;
    assert_eq!(s.host.as_deref(), Some("host1"));
    engine.sync_dataplane().await.unwrap();
    assert!(on(0));
    assert!(!on(1), "a failed move leaves no tap on the destination");
}
