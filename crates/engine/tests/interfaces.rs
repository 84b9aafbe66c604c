//! Nova's os-interface on fake hosts: attach binds or makes the port, pushes its tap to the
//! server's host and plugs the NIC (the fake's spec gains it, with a PCI slot the engine
//! keeps for later specs); detach unplugs it and deletes or unbinds the port; Nova's errors
//! for bad requests, ports in use, missing ports and servers in the wrong state.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{Actor, Role, Server, VmState};
use lifeboat_engine::neutron::{NetworkReq, PortReq, SubnetReq};
use lifeboat_engine::{
    ActionOutcome, ComputeError, CreateServer, Engine, EngineConfig, ServerAction,
};
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

fn attach(net: Option<&str>, port: Option<&str>, ip: Option<&str>) -> ServerAction {
    ServerAction::AttachInterface {
        network_id: net.map(str::to_string),
        port_id: port.map(str::to_string),
        fixed_ip: ip.map(str::to_string),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interfaces_attach_and_detach_on_a_running_server() {
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
                name: "vm1".into(),
                flavor: "m1.nano".into(),
                availability_zone: Some("nova:host2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = settle(&engine, &c[0].server.id).await;
    assert_eq!(s.vm_state, VmState::Active);
    let net2 = engine
        .net_create(
            &admin,
            NetworkReq {
                name: Some("net2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .network
        .id;
    engine
        .subnet_create(
            &admin,
            SubnetReq {
                network_id: Some(net2.clone()),
                ip_version: Some(4),
                cidr: Some("10.1.0.0/24".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Nova's request errors.
    let err = |r: Result<ActionOutcome, ComputeError>| r.unwrap_err().to_string();
    assert_eq!(
        err(engine
            .server_action(&admin, &s.id, attach(Some(&net2), Some("p"), None))
            .await),
        "Must not input both network_id and port_id"
    );
    assert_eq!(
        err(engine
            .server_action(&admin, &s.id, attach(None, None, Some("10.1.0.5")))
            .await),
        "Must input network_id when request IP address"
    );
    let nf = engine
        .server_action(&admin, &s.id, attach(None, Some("nope"), None))
        .await
        .unwrap_err();
    assert!(matches!(nf, ComputeError::NotFound { .. }), "{nf:?}");
    assert_eq!(nf.to_string(), "Port id nope could not be found.");
    // Two networks are usable: an attach without one is ambiguous.
    assert_eq!(
        err(engine
            .server_action(&admin, &s.id, attach(None, None, None))
            .await),
        "Multiple possible networks found, use a Network ID to be more specific."
    );

    // Attach on net2 at a given address.
    let out = engine
        .server_action(&admin, &s.id, attach(Some(&net2), None, Some("10.1.0.9")))
        .await
        .unwrap();
    let ActionOutcome::InterfaceAttached { port_id } = out else {
        panic!("{out:?}")
    };
    let s = engine.store().get_server(&s.id).await.unwrap().unwrap();
    assert_eq!(s.attachments.len(), 2, "{:?}", s.attachments);
    let spec = fakes[1].vm_spec(&s.instance_name).unwrap();
    let nic = spec.nics.iter().find(|n| n.port_id == port_id).unwrap();
    assert_eq!(nic.ip, "10.1.0.9");
    assert_eq!(nic.pci_slot, Some(0x10));
    let h2 = fakes[1].net_state().unwrap();
    assert!(
        h2.desired.ports.iter().any(|p| p.id == port_id),
        "the attached port's tap is on the server's host: {h2:?}"
    );
    let pv = engine.port_get(&admin, &port_id).await.unwrap();
    assert_eq!(pv.device_id, s.id);
    assert_eq!(pv.device_owner, "compute:nova");
    assert_eq!(pv.host_id, "host2");
    // The same address again is in use.
    assert_eq!(
        err(engine
            .server_action(&admin, &s.id, attach(Some(&net2), None, Some("10.1.0.9")))
            .await),
        format!(
            "Fixed IP address 10.1.0.9 is already in use on instance {}.",
            s.id
        )
    );
    // The engine keeps the slot: a migration target builds the same layout.
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
    let spec = fakes[0].vm_spec(&s.instance_name).unwrap();
    assert_eq!(
        spec.nics
            .iter()
            .find(|n| n.port_id == port_id)
            .unwrap()
            .pci_slot,
        Some(0x10)
    );

    // A port made first, attached to the stopped server, then detached: unbound, kept.
    let brought = engine
        .port_create(
            &admin,
            PortReq {
                network_id: Some(net2.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .port
        .id;
    engine
        .server_action(&admin, &s.id, ServerAction::Stop)
        .await
        .unwrap();
    let s = settle(&engine, &s.id).await;
    assert_eq!(s.vm_state, VmState::Stopped);
    engine
        .server_action(&admin, &s.id, attach(None, Some(&brought), None))
        .await
        .unwrap();
    assert_eq!(
        err(engine
            .server_action(&admin, &s.id, attach(None, Some(&brought), None))
            .await),
        format!("Port {brought} is still in use.")
    );
    assert!(fakes[0]
        .vm_spec(&s.instance_name)
        .unwrap()
        .nics
        .iter()
        .any(|n| n.port_id == brought));
    engine
        .server_action(
            &admin,
            &s.id,
            ServerAction::DetachInterface {
                port_id: brought.clone(),
            },
        )
        .await
        .unwrap();
    let pv = engine.port_get(&admin, &brought).await.unwrap();
    assert_eq!(pv.device_id, "", "a brought port is only unbound");
    // Detaching the port the attach made deletes it.
    engine
        .server_action(
            &admin,
            &s.id,
            ServerAction::DetachInterface {
                port_id: port_id.clone(),
            },
        )
        .await
        .unwrap();
    assert!(engine.port_get(&admin, &port_id).await.is_err());
    let spec = fakes[0].vm_spec(&s.instance_name).unwrap();
    assert_eq!(spec.nics.len(), 1, "{spec:?}");
    // A port that is not attached.
    let nf = engine
        .server_action(
            &admin,
            &s.id,
            ServerAction::DetachInterface {
                port_id: brought.clone(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        nf.to_string(),
        format!("Port id {brought} could not be found.")
    );

    // Wrong state: a suspended server refuses both (the action table).
    engine
        .server_action(&admin, &s.id, ServerAction::Start)
        .await
        .unwrap();
    settle(&engine, &s.id).await;
    engine
        .server_action(&admin, &s.id, ServerAction::Suspend)
        .await
        .unwrap();
    let s = settle(&engine, &s.id).await;
    assert_eq!(s.vm_state, VmState::Suspended);
    let d = engine
        .server_action(&admin, &s.id, attach(Some(&net2), None, None))
        .await
        .unwrap_err();
    assert!(matches!(d, ComputeError::Denied(_)), "{d:?}");
    // The instance actions.
    let wfs = engine.server_workflows(&admin, &s.id).await.unwrap();
    let kinds: Vec<&str> = wfs.iter().map(|w| w.kind.as_str()).collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "attach_interface").count(),
        2
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "detach_interface").count(),
        2
    );
}
