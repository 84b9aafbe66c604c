//! Nova's os-interface on fake hosts: attach binds or makes the port, pushes its tap to the
//! server's host and plugs the NIC (the fake's spec gains it, with a PCI slot the engine
//! keeps for later specs); detach unplugs it and deletes or unbinds the port; Nova's errors
//! for bad requests, ports in use, missing ports and servers in the wrong state.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{Actor, Role, Server, VmState};
use lifeboat_engine::neutron::{NetworkReq, PortReq, SubnetReq};
use lifeboat_engine::{
    ActionOutcome, ComputeError, CreateServer, Engine, EngineConfig, NetworkRequest, Resource,
    ServerAction,
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

/// An engine on two fake hosts with a second network (`net2`, 10.1.0.0/24) beside the
/// bootstrap ones, and an administrator.
struct Env {
    _dir: tempfile::TempDir,
    engine: Engine,
    fakes: Vec<Arc<FakeDriver>>,
    admin: Actor,
    net2: String,
    private: String,
}

async fn env() -> Env {
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
    let private = engine
        .net_list(&admin)
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.network.name == "private")
        .unwrap()
        .network
        .id;
    Env {
        _dir: dir,
        engine,
        fakes,
        admin,
        net2,
        private,
    }
}

impl Env {
    /// A server on `host` with the given networks (empty: `private`), settled ACTIVE.
    async fn server(&self, name: &str, host: &str, mut networks: Vec<NetworkRequest>) -> Server {
        if networks.is_empty() {
            networks.push(NetworkRequest {
                network_id: Some(self.private.clone()),
                ..Default::default()
            });
        }
        let c = self
            .engine
            .create_servers(
                &self.admin,
                CreateServer {
                    name: name.into(),
                    flavor: "m1.nano".into(),
                    availability_zone: Some(format!("nova:{host}")),
                    networks,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let s = settle(&self.engine, &c[0].server.id).await;
        assert_eq!(s.vm_state, VmState::Active, "{:?}", s.fault);
        s
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interfaces_attach_and_detach_on_a_running_server() {
    let env = env().await;
    let s = env.server("vm1", "host2", vec![]).await;
    let Env {
        engine,
        fakes,
        admin,
        net2,
        ..
    } = env;

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
    assert_eq!(
        nf,
        ComputeError::NotFound {
            kind: Resource::Port,
            id: "nope".into()
        }
    );
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
        nf,
        ComputeError::NotFound {
            kind: Resource::Port,
            id: brought.clone()
        }
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

/// The ports of `net` that Nova-style attaches made (device owner `compute:nova`).
async fn nova_ports(e: &Engine, a: &Actor, net: &str) -> Vec<String> {
    e.port_list(a)
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.port.network_id == net && p.device_owner == "compute:nova")
        .map(|p| p.port.id)
        .collect()
}

/// A failed plug answers Nova's `InterfaceAttachFailed` and releases the port (a made one is
/// deleted, a brought one unbound and kept); a port of another project is Nova's
/// `PortNotUsable`; a failed unplug keeps the interface and records the error as the
/// instance action's (Nova's detach is a cast: its caller has its 202).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attach_or_detach_leaves_the_server_as_it_was() {
    let env = env().await;
    let (e, a, net2) = (&env.engine, &env.admin, env.net2.as_str());
    let s = env.server("vm", "host1", vec![]).await;
    let fake = &env.fakes[0];
    let nics = || fake.vm_spec(&s.instance_name).unwrap().nics.len();

    fake.inject_failure("attach_nic", 1);
    let err = e
        .server_action(a, &s.id, attach(Some(net2), None, None))
        .await
        .unwrap_err();
    assert!(matches!(err, ComputeError::Failed(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("Failed to attach network adapter device to {}", s.id)
    );
    assert_eq!(nova_ports(e, a, net2).await, Vec::<String>::new());
    assert_eq!(nics(), 1);
    let got = e.store().get_server(&s.id).await.unwrap().unwrap();
    assert_eq!(got.attachments.len(), 1, "{:?}", got.attachments);

    let brought = e
        .port_create(
            a,
            PortReq {
                network_id: Some(net2.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    fake.inject_failure("attach_nic", 1);
    let err = e
        .server_action(a, &s.id, attach(None, Some(&brought.port.id), None))
        .await
        .unwrap_err();
    assert!(matches!(err, ComputeError::Failed(_)), "{err:?}");
    let pv = e.port_get(a, &brought.port.id).await.unwrap();
    assert_eq!(pv.device_id, "", "the brought port is free again");
    assert_eq!(pv.port.mac_address, brought.port.mac_address);
    assert_eq!(nics(), 1);

    let theirs = e
        .port_create(
            a,
            PortReq {
                network_id: Some(net2.into()),
                project_id: Some("another-project".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = e
        .server_action(a, &s.id, attach(None, Some(&theirs.port.id), None))
        .await
        .unwrap_err();
    assert!(matches!(err, ComputeError::BadRequest(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("Port {} not usable for instance {}.", theirs.port.id, s.id)
    );

    // Now it plugs; the unplug fails once: nothing changes but the record.
    e.server_action(a, &s.id, attach(None, Some(&brought.port.id), None))
        .await
        .unwrap();
    assert_eq!(nics(), 2);
    fake.inject_failure("detach_nic", 1);
    e.server_action(
        a,
        &s.id,
        ServerAction::DetachInterface {
            port_id: brought.port.id.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(nics(), 2, "the NIC is still in");
    let pv = e.port_get(a, &brought.port.id).await.unwrap();
    assert_eq!(pv.device_id, s.id, "still bound");
    let wfs = e.server_workflows(a, &s.id).await.unwrap();
    let failed: Vec<_> = wfs
        .iter()
        .filter(|w| w.state == lifeboat_core::WorkflowState::Failed)
        .map(|w| w.kind.as_str())
        .collect();
    // Newest first.
    assert_eq!(
        failed,
        ["detach_interface", "attach_interface", "attach_interface"],
        "{wfs:?}"
    );
    e.server_action(
        a,
        &s.id,
        ServerAction::DetachInterface {
            port_id: brought.port.id.clone(),
        },
    )
    .await
    .unwrap();
    assert_eq!(nics(), 1);
    assert_eq!(e.port_get(a, &brought.port.id).await.unwrap().device_id, "");
}

/// The NICs follow the order of the create request's networks (eth0 is the first asked for),
/// whatever order their ports were made in; an interface attached later comes after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nics_follow_the_order_of_the_requested_networks() {
    let env = env().await;
    let (e, a, net2, private) = (
        &env.engine,
        &env.admin,
        env.net2.clone(),
        env.private.clone(),
    );
    let port_on = |net: String| async move {
        e.port_create(
            a,
            PortReq {
                network_id: Some(net),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .port
        .id
    };
    let on = |net: &str| NetworkRequest {
        network_id: Some(net.into()),
        ..Default::default()
    };
    let by = |port: &str| NetworkRequest {
        port_id: Some(port.into()),
        ..Default::default()
    };
    // A port made before the server, asked for second.
    let early = port_on(private.clone()).await;
    let s = env
        .server("ordered", "host1", vec![on(&net2), by(&early)])
        .await;
    let spec = env.fakes[0].vm_spec(&s.instance_name).unwrap();
    assert_eq!(spec.nics.len(), 2);
    assert!(spec.nics[0].ip.starts_with("10.1.0."), "{:?}", spec.nics);
    assert_eq!(spec.nics[1].port_id, early);
    let nets: Vec<&str> = s
        .attachments
        .iter()
        .map(|x| x.network_id.as_str())
        .collect();
    assert_eq!(nets, [net2.as_str(), private.as_str()]);
    // The other way round, with two made ports and the brought one first.
    let early2 = port_on(net2.clone()).await;
    let s2 = env
        .server(
            "ordered2",
            "host1",
            vec![by(&early2), on(&private), on(&net2)],
        )
        .await;
    let spec = env.fakes[0].vm_spec(&s2.instance_name).unwrap();
    let ips: Vec<&str> = spec.nics.iter().map(|n| n.ip.as_str()).collect();
    assert_eq!(spec.nics[0].port_id, early2, "{ips:?}");
    assert!(
        ips[1].starts_with("10.0.") && ips[2].starts_with("10.1.0."),
        "{ips:?}"
    );
    // Attached later: last.
    let late = port_on(private.clone()).await;
    e.server_action(a, &s.id, attach(None, Some(&late), None))
        .await
        .unwrap();
    let got = e.store().get_server(&s.id).await.unwrap().unwrap();
    let ports: Vec<&str> = got.attachments.iter().map(|x| x.port_id.as_str()).collect();
    assert_eq!(ports.len(), 3);
    assert_eq!(ports[1..], [early.as_str(), late.as_str()]);
}

/// addFixedIp as Nova does it on Neutron: the server's port on the network gets a second
/// address (same port, same MAC), the addresses view shows both, and the host's data plane
/// carries it (the port's anti-spoofing addresses and its group's members); removeFixedIp
/// takes one address off that port and leaves the port. Nova's errors otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_ips_are_added_to_and_removed_from_the_servers_port() {
    let env = env().await;
    let (e, a) = (&env.engine, &env.admin);
    let s = env.server("multi", "host2", vec![]).await;
    let private = s.attachments[0].network_id.clone();
    let port = s.attachments[0].port_id.clone();
    let mac = s.attachments[0].mac_address.clone();
    let first = s.attachments[0].fixed_ip.clone();

    e.server_action(
        a,
        &s.id,
        ServerAction::AddFixedIp {
            network_id: private.clone(),
        },
    )
    .await
    .unwrap();
    let got = e.store().get_server(&s.id).await.unwrap().unwrap();
    assert_eq!(got.attachments.len(), 1, "{:?}", got.attachments);
    let att = &got.attachments[0];
    assert_eq!(
        (att.port_id.as_str(), att.mac_address.as_str()),
        (port.as_str(), mac.as_str())
    );
    assert_eq!(att.extra_fixed_ips.len(), 1, "{att:?}");
    let second = att.extra_fixed_ips[0].clone();
    assert_ne!(second, first);
    let shown: Vec<String> = got.addresses()["private"]
        .iter()
        .map(|x| x.0.clone())
        .collect();
    assert_eq!(shown, [first.clone(), second.clone()]);
    let pv = e.port_get(a, &port).await.unwrap();
    let ips: Vec<&str> = pv.fixed_ips.iter().map(|f| f.ip_address.as_str()).collect();
    assert_eq!(ips, [first.as_str(), second.as_str()]);
    let default_group = e.default_security_group(&s.project_id).await.unwrap().id;
    assert_eq!(
        pv.attrs.security_groups,
        std::slice::from_ref(&default_group),
        "still in its group"
    );
    // The data plane of the server's host.
    let ip2: std::net::IpAddr = second.parse().unwrap();
    let st = env.fakes[1].net_state().unwrap();
    let spec = st.desired.ports.iter().find(|p| p.id == port).unwrap();
    assert!(spec.fixed_ips.contains(&ip2), "{spec:?}");
    assert_eq!(spec.security_groups, std::slice::from_ref(&default_group));
    let g = st
        .desired
        .security_groups
        .iter()
        .find(|g| g.id == default_group)
        .unwrap();
    assert!(g.members.contains(&ip2), "{g:?}");

    // removeFixedIp of the first address: the port keeps the second.
    e.server_action(
        a,
        &s.id,
        ServerAction::RemoveFixedIp {
            address: first.clone(),
        },
    )
    .await
    .unwrap();
    let pv = e.port_get(a, &port).await.unwrap();
    let ips: Vec<&str> = pv.fixed_ips.iter().map(|f| f.ip_address.as_str()).collect();
    assert_eq!(ips, [second.as_str()]);
    assert_eq!(pv.port.mac_address, mac);
    let got = e.store().get_server(&s.id).await.unwrap().unwrap();
    assert_eq!(got.attachments[0].fixed_ip, second);
    let st = env.fakes[1].net_state().unwrap();
    let spec = st.desired.ports.iter().find(|p| p.id == port).unwrap();
    assert_eq!(spec.fixed_ips, [ip2]);

    // Nova's errors.
    let err = |r: Result<ActionOutcome, ComputeError>| r.unwrap_err().to_string();
    assert_eq!(
        err(e
            .server_action(
                a,
                &s.id,
                ServerAction::RemoveFixedIp {
                    address: "10.9.9.9".into()
                }
            )
            .await),
        // FixedIpNotFoundForSpecificInstance, as Nova's remove_fixed_ip_from_instance raises
        // it for an address none of the server's ports has.
        format!("Instance {} doesn't have fixed IP '10.9.9.9'.", s.id)
    );
    for net in ["nosuch", env.net2.as_str()] {
        assert_eq!(
            err(e
                .server_action(
                    a,
                    &s.id,
                    ServerAction::AddFixedIp {
                        network_id: net.into()
                    }
                )
                .await),
            format!("Network could not be found for instance {}.", s.id),
            "{net}"
        );
    }
}

/// A fixed IP outside the network's subnets is refused as Nova refuses Neutron's
/// `InvalidIpForNetwork`: an attach answers 400 "Invalid input received: Fixed IP X is not a
/// valid ip address for network N." and makes no port; a create asking for one fails its
/// build (the server goes to ERROR with that fault) and leaves no port with the address.
/// The network and broadcast addresses of a subnet are refused the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_ip_outside_the_networks_subnets_is_refused() {
    let env = env().await;
    let (e, a, net2) = (&env.engine, &env.admin, env.net2.as_str());
    let s = env.server("vm", "host1", vec![]).await;
    for bad in ["192.168.99.9", "10.1.0.0", "10.1.0.255"] {
        let err = e
            .server_action(a, &s.id, attach(Some(net2), None, Some(bad)))
            .await
            .unwrap_err();
        assert!(matches!(err, ComputeError::BadRequest(_)), "{bad}: {err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "Invalid input received: Fixed IP {bad} is not a valid ip address for network {net2}."
            )
        );
    }
    assert_eq!(nova_ports(e, a, net2).await, Vec::<String>::new());
    let got = e.store().get_server(&s.id).await.unwrap().unwrap();
    assert_eq!(got.attachments.len(), 1);
    // Inside the subnet it is taken.
    e.server_action(a, &s.id, attach(Some(net2), None, Some("10.1.0.9")))
        .await
        .unwrap();

    let c = e
        .create_servers(
            a,
            CreateServer {
                name: "outside".into(),
                flavor: "m1.nano".into(),
                availability_zone: Some("nova:host1".into()),
                networks: vec![NetworkRequest {
                    network_id: Some(net2.into()),
                    fixed_ip: Some("192.168.99.10".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let bad = settle(e, &c[0].server.id).await;
    assert_eq!(bad.vm_state, VmState::Error, "{bad:?}");
    let fault = format!("{:?}", bad.fault);
    assert!(
        fault.contains(&format!(
            "Fixed IP 192.168.99.10 is not a valid ip address for network {net2}."
        )),
        "{fault}"
    );
    let ports = e.port_list(a).await.unwrap();
    assert!(
        ports.iter().all(|p| p.port.fixed_ip != "192.168.99.10"),
        "a port has the address outside the network"
    );
}

/// A create asking for a fixed IP some port on the network has is refused before the server
/// is accepted, as Nova's `validate_networks` does: 400 "Fixed IP address X is already in use
/// on instance Y." (Y the port's device), and nothing is made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_asking_for_a_fixed_ip_in_use_is_refused() {
    let env = env().await;
    let (e, a, net2) = (&env.engine, &env.admin, env.net2.as_str());
    let first = env
        .server(
            "first",
            "host1",
            vec![NetworkRequest {
                network_id: Some(net2.into()),
                fixed_ip: Some("10.1.0.40".into()),
                ..Default::default()
            }],
        )
        .await;
    let before = e
        .store()
        .list_servers(&Default::default())
        .await
        .unwrap()
        .len();
    let err = e
        .create_servers(
            a,
            CreateServer {
                name: "second".into(),
                flavor: "m1.nano".into(),
                networks: vec![NetworkRequest {
                    network_id: Some(net2.into()),
                    fixed_ip: Some("10.1.0.40".into()),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ComputeError::BadRequest(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "Fixed IP address 10.1.0.40 is already in use on instance {}.",
            first.id
        )
    );
    assert_eq!(
        e.store()
            .list_servers(&Default::default())
            .await
            .unwrap()
            .len(),
        before
    );
}
