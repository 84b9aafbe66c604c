//! Engine tests on the fake driver: every action's workflow, failures and
//! rollbacks, locks, roles, tenants and multi-host moves.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{
    Action, ActionDenied, Actor, ImageKind, PowerState, Role, Server, StateAttr, Status, VmState,
};
use lifeboat_engine::{
    ActionOutcome, ComputeError, CreateServer, Engine, EngineConfig, ListServers, ServerAction,
};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};

struct Env {
    engine: Engine,
    admin: Actor,
    hosts: Vec<Arc<FakeDriver>>,
    _dir: tempfile::TempDir,
}

async fn env_with(hosts: usize, tweak: impl FnOnce(&mut EngineConfig)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store =
        lifeboat_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf());
    cfg.sync_interval = Duration::from_millis(200);
    cfg.ready_timeout = Duration::from_secs(5);
    tweak(&mut cfg);
    let engine = Engine::new(store, cfg);
    engine.bootstrap_identity().await.unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let mut fakes = vec![];
    for i in 1..=hosts {
        let f = Arc::new(FakeDriver::new(FakeConfig::from_env(&format!("host{i}"))));
        engine
            .add_host(&format!("host{i}"), "local", "nova", f.clone())
            .await
            .unwrap();
        fakes.push(f);
    }
    engine.start().await.unwrap();
    let admin_user = engine.user("admin").await.unwrap();
    let project = engine.project("admin").await.unwrap();
    let admin = Actor {
        user_id: admin_user.id,
        user_name: "admin".into(),
        project_id: project.id,
        role: Role::Admin,
    };
    Env {
        engine,
        admin,
        hosts: fakes,
        _dir: dir,
    }
}

async fn env() -> Env {
    env_with(1, |_| {}).await
}

impl Env {
    async fn member(&self, project: &str, role: Role) -> Actor {
        let p = match self.engine.project(project).await {
            Ok(p) => p,
            Err(_) => self.engine.create_project(project, "").await.unwrap(),
        };
        let name = format!("{project}-{}", role.as_str());
        let u = self
            .engine
            .create_user(&name, "password123", &p.id, role)
            .await
            .unwrap();
        Actor {
            user_id: u.id,
            user_name: name,
            project_id: p.id,
            role,
        }
    }

    async fn create(&self, actor: &Actor, name: &str) -> Server {
        let c = self
            .engine
            .create_servers(
                actor,
                CreateServer {
                    name: name.into(),
                    flavor: "m1.nano".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        self.settle(&c[0].server.id).await
    }

    async fn settle(&self, id: &str) -> Server {
        for _ in 0..400 {
            let s = self.engine.store().get_server(id).await.unwrap().unwrap();
            if s.task_state.is_none() && s.vm_state != VmState::Building {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server {id} did not settle");
    }

    async fn act(&self, actor: &Actor, id: &str, a: ServerAction) -> Server {
        let out = self.engine.server_action(actor, id, a.clone()).await;
        assert!(out.is_ok(), "{a:?}: {out:?}");
        self.settle(id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_every_lifecycle_action() {
    let e = env().await;
    let u = e.member("demo", Role::Member).await;
    let s = e.create(&u, "web").await;
    assert_eq!(s.status(), Status::Active);
    assert_eq!(s.power_state, PowerState::Running);
    assert!(s.launched_at.is_some());
    assert_eq!(s.host.as_deref(), Some("host1"));
    assert_eq!(s.attachments.len(), 1);
    // 10.0.0.2 is the subnet's DHCP port (network/dhcp_ports.rs).
    assert_eq!(s.attachments[0].fixed_ip, "10.0.0.3");
    let id = s.id.clone();

    let s = e.act(&u, &id, ServerAction::Stop).await;
    assert_eq!(
        (s.status(), s.power_state),
        (Status::Shutoff, PowerState::Shutdown)
    );
    let s = e.act(&u, &id, ServerAction::Start).await;
    assert_eq!(s.status(), Status::Active);
    let s = e.act(&u, &id, ServerAction::Pause).await;
    assert_eq!(
        (s.status(), s.power_state),
        (Status::Paused, PowerState::Paused)
    );
    let s = e.act(&u, &id, ServerAction::Unpause).await;
    assert_eq!(s.status(), Status::Active);
    let s = e.act(&u, &id, ServerAction::Suspend).await;
    assert_eq!(s.status(), Status::Suspended);
    let s = e.act(&u, &id, ServerAction::Resume).await;
    assert_eq!(s.status(), Status::Active);
    let s = e.act(&u, &id, ServerAction::Reboot { hard: false }).await;
    assert_eq!(s.status(), Status::Active);
    let s = e.act(&u, &id, ServerAction::Reboot { hard: true }).await;
    assert_eq!(s.status(), Status::Active);
    let s = e
        .act(
            &u,
            &id,
            ServerAction::Rescue {
                admin_pass: None,
                image: None,
            },
        )
        .await;
    assert_eq!(s.status(), Status::Rescue);
    let s = e.act(&u, &id, ServerAction::Unrescue).await;
    assert_eq!(s.status(), Status::Active);

    // resize then revert, resize then confirm
    let s = e
        .act(
            &u,
            &id,
            ServerAction::Resize {
                flavor: "m1.tiny".into(),
            },
        )
        .await;
    assert_eq!(s.status(), Status::VerifyResize);
    assert_eq!(s.flavor.original_name, "m1.tiny");
    let s = e.act(&u, &id, ServerAction::RevertResize).await;
    assert_eq!(
        (s.status(), s.flavor.original_name.as_str()),
        (Status::Active, "m1.nano")
    );
    assert_eq!(s.power_state, PowerState::Running);
    e.act(
        &u,
        &id,
        ServerAction::Resize {
            flavor: "m1.tiny".into(),
        },
    )
    .await;
    let s = e.act(&u, &id, ServerAction::ConfirmResize).await;
    assert_eq!(
        (s.status(), s.flavor.original_name.as_str()),
        (Status::Active, "m1.tiny")
    );
    assert!(s.old_flavor.is_none());

    // rebuild keeps identity and ports
    let port = s.attachments[0].port_id.clone();
    let s = e
        .act(
            &u,
            &id,
            ServerAction::Rebuild {
                image: lifeboat_engine::DEFAULT_IMAGE_ID.into(),
                name: Some("web2".into()),
                admin_pass: None,
                metadata: None,
                description: None,
                key_name: None,
                user_data: None,
                preserve_ephemeral: false,
                hostname: None,
            },
        )
        .await;
    assert_eq!((s.status(), s.name.as_str()), (Status::Active, "web2"));
    assert_eq!(s.attachments[0].port_id, port);

    // snapshot and backups with rotation
    let out = e
        .engine
        .server_action(
            &u,
            &id,
            ServerAction::CreateImage {
                name: "snap".into(),
                metadata: Default::default(),
            },
        )
        .await
        .unwrap();
    let ActionOutcome::Accepted {
        image_id: Some(img),
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    e.settle(&id).await;
    let image = e.engine.image(&u, &img).await.unwrap();
    assert_eq!(image.status, lifeboat_core::ImageStatus::Active);
    assert_eq!(image.kind, ImageKind::Snapshot);
    for i in 0..3 {
        e.act(
            &u,
            &id,
            ServerAction::CreateBackup {
                name: format!("b{i}"),
                backup_type: "daily".into(),
                rotation: 2,
                metadata: Default::default(),
            },
        )
        .await;
    }
    let backups: Vec<_> = e
        .engine
        .images(&u)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.kind == ImageKind::Backup)
        .collect();
    assert_eq!(
        backups
            .iter()
            .map(|b| b.name.as_str())
            .collect::<std::collections::BTreeSet<_>>(),
        ["b1", "b2"].into()
    );

    let s = e
        .act(
            &u,
            &id,
            ServerAction::ChangePassword {
                admin_pass: "s3cret-pass".into(),
            },
        )
        .await;
    assert_eq!(s.status(), Status::Active);
    let wfs = e.engine.server_workflows(&u, &id).await.unwrap();
    let pw = wfs.iter().find(|w| w.kind == "change_password").unwrap();
    assert!(
        pw.params.get("admin_pass").is_none(),
        "secrets are scrubbed: {:?}",
        pw.params
    );

    // shelve (offloaded at once by default) and unshelve
    let s = e.act(&u, &id, ServerAction::Shelve).await;
    assert_eq!(s.status(), Status::ShelvedOffloaded);
    assert!(s.host.is_none());
    let s = e
        .act(
            &u,
            &id,
            ServerAction::Unshelve {
                availability_zone: None,
                host: None,
            },
        )
        .await;
    assert_eq!(
        (s.status(), s.host.as_deref()),
        (Status::Active, Some("host1"))
    );

    // console and crash dump
    let out = e
        .engine
        .server_action(&u, &id, ServerAction::ConsoleOutput { length: Some(1) })
        .await
        .unwrap();
    assert_eq!(
        out,
        ActionOutcome::ConsoleOutput {
            output: "LIFEBOAT-READY\n".into()
        }
    );
    assert_eq!(
        e.engine
            .server_action(&u, &id, ServerAction::TriggerCrashDump)
            .await
            .unwrap(),
        ActionOutcome::Done
    );

    // floating IP
    let fip = e.engine.allocate_floating_ip(&u).await.unwrap();
    e.engine
        .server_action(
            &u,
            &id,
            ServerAction::AddFloatingIp {
                address: fip.address.clone(),
                fixed_address: None,
            },
        )
        .await
        .unwrap();
    let s = e.engine.server(&u, &id).await.unwrap();
    assert_eq!(s.attachments[0].floating_ips, vec![fip.address.clone()]);
    e.engine
        .server_action(
            &u,
            &id,
            ServerAction::RemoveFloatingIp {
                address: fip.address.clone(),
            },
        )
        .await
        .unwrap();
    assert!(e.engine.server(&u, &id).await.unwrap().attachments[0]
        .floating_ips
        .is_empty());

    // delete
    e.act(&u, &id, ServerAction::Delete).await;
    let err = e.engine.server(&u, &id).await.unwrap_err();
    assert!(matches!(err, ComputeError::NotFound { .. }));
    let gone = e.engine.server(&e.admin, &id).await.unwrap();
    assert_eq!(gone.vm_state, VmState::Deleted);
    assert!(
        e.hosts[0].status(&s.instance_name).await.is_err(),
        "VM destroyed"
    );
    let ports: Vec<lifeboat_core::Port> = e.engine.store().list_by_ref(&id).await.unwrap();
    assert!(ports.is_empty(), "ports released");
}

use lifeboat_hypervisor::Hypervisor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_state_lock_roles_and_tenants() {
    let e = env().await;
    let u = e.member("demo", Role::Member).await;
    let r = e.member("demo", Role::Reader).await;
    let other = e.member("other", Role::Member).await;
    let s = e.create(&u, "db").await;

    let err = e
        .engine
        .server_action(&u, &s.id, ServerAction::Start)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ComputeError::Denied(ActionDenied::WrongState {
            action: Action::Start,
            server_id: s.id.clone(),
            attr: StateAttr::VmState,
            vm_state: VmState::Active,
            task_state: None,
        })
    );

    e.engine
        .server_action(
            &u,
            &s.id,
            ServerAction::Lock {
                reason: Some("maint".into()),
            },
        )
        .await
        .unwrap();
    let err = e
        .engine
        .server_action(&u, &s.id, ServerAction::Stop)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ComputeError::Denied(ActionDenied::Locked {
            server_id: s.id.clone()
        })
    );
    // admins bypass locks
    e.act(&e.admin, &s.id, ServerAction::Stop).await;
    e.engine
        .server_action(&u, &s.id, ServerAction::Unlock)
        .await
        .unwrap();

    // readers cannot mutate; other projects cannot see
    assert!(matches!(
        e.engine.server_action(&r, &s.id, ServerAction::Start).await,
        Err(ComputeError::Denied(ActionDenied::Forbidden { .. }))
    ));
    assert!(e.engine.server(&r, &s.id).await.is_ok());
    assert!(matches!(
        e.engine.server(&other, &s.id).await,
        Err(ComputeError::NotFound { .. })
    ));
    assert!(matches!(
        e.engine
            .server_action(&other, &s.id, ServerAction::Start)
            .await,
        Err(ComputeError::NotFound { .. })
    ));
    assert!(e
        .engine
        .list_servers(&other, &ListServers::default())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        e.engine
            .list_servers(
                &e.admin,
                &ListServers {
                    all_projects: true,
                    ..Default::default()
                }
            )
            .await
            .unwrap()
            .len(),
        1
    );
    // admin-only actions
    assert!(matches!(
        e.engine
            .server_action(&u, &s.id, ServerAction::Migrate { host: None })
            .await,
        Err(ComputeError::Denied(ActionDenied::Forbidden { .. }))
    ));
    assert!(matches!(
        e.engine
            .server_action(
                &u,
                &s.id,
                ServerAction::ResetState {
                    state: "error".into()
                }
            )
            .await,
        Err(ComputeError::Denied(ActionDenied::Forbidden { .. }))
    ));
    e.engine
        .server_action(
            &e.admin,
            &s.id,
            ServerAction::ResetState {
                state: "error".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        e.engine.server(&u, &s.id).await.unwrap().status(),
        Status::Error
    );
    // list filters
    let errs = e
        .engine
        .list_servers(
            &u,
            &ListServers {
                status: Some(vec![Status::Error]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(errs.len(), 1);
    let act = e
        .engine
        .list_servers(
            &u,
            &ListServers {
                status: Some(vec![Status::Active]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(act.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_task_at_a_time() {
    let e = env().await;
    e.hosts[0].set_delay(Duration::from_millis(150));
    let u = e.member("demo", Role::Member).await;
    let s = e.create(&u, "busy").await;
    let (a, b) = tokio::join!(
        e.engine
            .server_action(&u, &s.id, ServerAction::Reboot { hard: false }),
        e.engine.server_action(&u, &s.id, ServerAction::Stop),
    );
    assert!(a.is_ok() != b.is_ok(), "exactly one accepted: {a:?} {b:?}");
    let loser = match (a, b) {
        (Ok(_), Err(e)) | (Err(e), Ok(_)) => e,
        other => panic!("{other:?}"),
    };
    assert!(
        loser.to_string().contains("task_state")
            || loser.to_string().contains("changed by another request"),
        "{loser}"
    );
    e.settle(&s.id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_roll_back_or_error() {
    let e = env().await;
    let u = e.member("demo", Role::Member).await;
    // create fails at spawn: server ERROR with fault, VM and ports cleaned up
    e.hosts[0].inject_failure("start", 1);
    let c = e
        .engine
        .create_servers(
            &u,
            CreateServer {
                name: "bad".into(),
                flavor: "m1.nano".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = e.settle(&c[0].server.id).await;
    assert_eq!(s.status(), Status::Error);
    let fault = s.fault.clone().expect("fault");
    assert_eq!(fault.code, 500);
    assert!(
        fault.message.contains("injected failure: start"),
        "{}",
        fault.message
    );
    assert!(
        e.hosts[0].status(&s.instance_name).await.is_err(),
        "undefined on rollback"
    );
    let ports: Vec<lifeboat_core::Port> = e.engine.store().list_by_ref(&s.id).await.unwrap();
    assert!(ports.is_empty());
    // the server settles just before its workflow's last write
    let mut wf = e.engine.server_workflows(&u, &s.id).await.unwrap()[0].clone();
    for _ in 0..100 {
        if wf.state != lifeboat_core::WorkflowState::RollingBack {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        wf = e.engine.server_workflows(&u, &s.id).await.unwrap()[0].clone();
    }
    assert_eq!(wf.state, lifeboat_core::WorkflowState::Failed);
    // errored servers can be deleted
    e.act(&u, &s.id, ServerAction::Delete).await;

    // pause failure reverts to ACTIVE (no ERROR)
    let s = e.create(&u, "ok").await;
    e.hosts[0].inject_failure("pause", 1);
    let s2 = e.act(&u, &s.id, ServerAction::Pause).await;
    assert_eq!(s2.status(), Status::Active);
    assert!(s2.fault.is_none());
    // reboot failure puts the server in ERROR; hard reboot brings it back
    e.hosts[0].inject_failure("reboot", 1);
    let s3 = e.act(&u, &s.id, ServerAction::Reboot { hard: false }).await;
    assert_eq!(s3.status(), Status::Error);
    let s4 = e.act(&u, &s.id, ServerAction::Reboot { hard: true }).await;
    assert_eq!(s4.status(), Status::Active);

    // no host with room: NoValidHost fault
    let big = lifeboat_core::Flavor {
        id: "99".into(),
        name: "huge".into(),
        vcpus: 1,
        ram: 1 << 50,
        ..lifeboat_core::Flavor::defaults()[0].clone()
    };
    e.engine.create_flavor(&e.admin, big).await.unwrap();
    // A quota of RAM would refuse it first; lift it to reach the scheduler.
    e.engine
        .update_quotas(
            &e.admin,
            lifeboat_engine::QuotaTarget::Class("default"),
            &[("ram".to_string(), -1)].into_iter().collect(),
            true,
        )
        .await
        .unwrap();
    let c = e
        .engine
        .create_servers(
            &u,
            CreateServer {
                name: "huge".into(),
                flavor: "huge".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = e.settle(&c[0].server.id).await;
    assert_eq!(s.status(), Status::Error);
    assert_eq!(
        s.fault.unwrap().reason,
        Some(lifeboat_core::FaultReason::NoValidHost { host: None })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_delete_restore_and_reclaim() {
    let e = env_with(1, |c| c.reclaim_instance_interval = 1).await;
    let u = e.member("demo", Role::Member).await;
    let s = e.create(&u, "soft").await;
    let d = e.act(&u, &s.id, ServerAction::Delete).await;
    assert_eq!(d.status(), Status::SoftDeleted);
    let r = e.act(&u, &s.id, ServerAction::Restore).await;
    assert_eq!(
        (r.status(), r.power_state),
        (Status::Active, PowerState::Running)
    );
    e.act(&u, &s.id, ServerAction::Delete).await;
    // the periodic task reclaims it after the interval
    for _ in 0..100 {
        let x = e.engine.store().get_server(&s.id).await.unwrap().unwrap();
        if x.vm_state == VmState::Deleted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not reclaimed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_host_migrate_live_migrate_evacuate() {
    let e = env_with(2, |c| c.shelved_offload_time = -1).await;
    let u = e.member("demo", Role::Member).await;
    let s = e.create(&u, "mover").await;
    let src = s.host.clone().unwrap();
    let dst = if src == "host1" { "host2" } else { "host1" };

    let m = e
        .act(
            &e.admin,
            &s.id,
            ServerAction::LiveMigrate {
                host: Some(dst.into()),
            },
        )
        .await;
    assert_eq!((m.status(), m.host.as_deref()), (Status::Active, Some(dst)));
    let idx = |h: &str| if h == "host1" { 0 } else { 1 };
    assert!(e.hosts[idx(&src)].status(&s.instance_name).await.is_err());
    assert_eq!(
        e.hosts[idx(dst)]
            .status(&s.instance_name)
            .await
            .unwrap()
            .power_state,
        PowerState::Running
    );

    let m = e
        .act(
            &e.admin,
            &s.id,
            ServerAction::Migrate {
                host: Some(src.clone()),
            },
        )
        .await;
    assert_eq!(
        (m.status(), m.host.as_deref(), m.source_host.as_deref()),
        (Status::VerifyResize, Some(src.as_str()), Some(dst))
    );
    let m = e.act(&e.admin, &s.id, ServerAction::RevertResize).await;
    assert_eq!((m.status(), m.host.as_deref()), (Status::Active, Some(dst)));

    // shelve without offload then explicit offload
    let sh = e.act(&u, &s.id, ServerAction::Shelve).await;
    assert_eq!(sh.status(), Status::Shelved);
    assert!(matches!(
        e.engine
            .server_action(&u, &s.id, ServerAction::ShelveOffload)
            .await,
        Err(ComputeError::Denied(ActionDenied::Forbidden { .. }))
    ));
    let off = e.act(&e.admin, &s.id, ServerAction::ShelveOffload).await;
    assert_eq!(off.status(), Status::ShelvedOffloaded);
    let un = e
        .act(
            &u,
            &s.id,
            ServerAction::Unshelve {
                availability_zone: None,
                host: None,
            },
        )
        .await;
    assert_eq!(un.status(), Status::Active);
    let host_now = un.host.clone().unwrap();

    // evacuate refused while the host is up; accepted when down
    let err = e
        .engine
        .server_action(
            &e.admin,
            &s.id,
            ServerAction::Evacuate {
                host: None,
                admin_pass: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ComputeError::Denied(lifeboat_core::ActionDenied::HostUp {
            host: host_now.clone()
        })
    );
    e.engine.set_host_up(&host_now, false).await.unwrap();
    let ev = e
        .act(
            &e.admin,
            &s.id,
            ServerAction::Evacuate {
                host: None,
                admin_pass: None,
            },
        )
        .await;
    assert_eq!(ev.status(), Status::Active);
    assert_ne!(ev.host.as_deref(), Some(host_now.as_str()));
    let _ = Action::Evacuate;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vm_stopped_outside_is_noticed() {
    let e = env().await;
    let u = e.member("demo", Role::Member).await;
    let s = e.create(&u, "victim").await;
    assert!(e.hosts[0].kill_outside(&s.instance_name));
    for _ in 0..50 {
        let x = e.engine.server(&u, &s.id).await.unwrap();
        if x.status() == Status::Shutoff {
            assert_eq!(x.power_state, PowerState::Shutdown);
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("power state not synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_while_building_supersedes_the_create() {
    let e = env().await;
    e.hosts[0].set_delay(Duration::from_millis(200));
    let u = e.member("demo", Role::Member).await;
    let c = e
        .engine
        .create_servers(
            &u,
            CreateServer {
                name: "short-lived".into(),
                flavor: "m1.nano".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = c[0].server.id.clone();
    tokio::time::sleep(Duration::from_millis(250)).await;
    e.engine
        .server_action(&u, &id, ServerAction::Delete)
        .await
        .unwrap();
    let s = e.settle(&id).await;
    assert_eq!(s.vm_state, VmState::Deleted, "{s:?}");
    let wfs = e.engine.server_workflows(&e.admin, &id).await.unwrap();
    let create = wfs.iter().find(|w| w.kind == "create").unwrap();
    assert_eq!(
        create.state,
        lifeboat_core::WorkflowState::RolledBack,
        "{create:?}"
    );
    assert_eq!(
        create.error.as_deref(),
        Some("superseded by another request")
    );
    assert!(e.hosts[0].list().await.unwrap().is_empty(), "no VM leaked");
    let ports: Vec<lifeboat_core::Port> = e.engine.store().list_by_ref(&id).await.unwrap();
    assert!(ports.is_empty(), "no port leaked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placement_respects_capacity() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        lifeboat_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
    let engine = Engine::new(store, EngineConfig::new(dir.path().to_path_buf()));
    engine.bootstrap_identity().await.unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let mut cfg = FakeConfig::from_env("small");
    cfg.capacity = (2, 300, 10);
    engine
        .add_host("small", "local", "nova", Arc::new(FakeDriver::new(cfg)))
        .await
        .unwrap();
    engine.start().await.unwrap();
    let p = engine.project("admin").await.unwrap();
    let u = engine
        .create_user("m", "password123", &p.id, Role::Member)
        .await
        .unwrap();
    let actor = Actor {
        user_id: u.id,
        user_name: "m".into(),
        project_id: p.id,
        role: Role::Member,
    };
    let made = engine
        .create_servers(
            &actor,
            CreateServer {
                name: "x".into(),
                flavor: "m1.nano".into(),
                min_count: 3,
                max_count: 3,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut states = vec![];
    for c in &made {
        let mut s = engine.server(&actor, &c.server.id).await.unwrap();
        for _ in 0..200 {
            if s.task_state.is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            s = engine.server(&actor, &c.server.id).await.unwrap();
        }
        states.push(s.status());
    }
    states.sort_by_key(|s| s.as_str());
    // 128 MiB each on a 300 MiB host: two fit, the third finds no host.
    assert_eq!(states, vec![Status::Active, Status::Active, Status::Error]);
}
