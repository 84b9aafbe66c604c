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
