//! `restore_backup` (OpsWorks CM's RestoreServer) on the fake driver: the
//! server's VM is replaced by one made from a backup of it in the snapshot
//! store, keeping its id and its ports; the request's typed refusals; the
//! actions that need the whole disk are refused while an instant restore
//! still copies it.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{
    Action, ActionDenied, Actor, ImageKind, Role, Server, StateAttr, Status, VmState,
};
use lifeboat_engine::{
    parse_store_location, ActionOutcome, ComputeError, CreateServer, Engine, EngineConfig, Reason,
    Resource, ServerAction,
};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};

struct Env {
    e: Engine,
    fake: Arc<FakeDriver>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store =
        lifeboat_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf());
    cfg.ready_timeout = Duration::from_secs(5);
    let e = Engine::new(store, cfg);
    e.bootstrap_identity().await.unwrap();
    e.bootstrap_catalog(&Default::default()).await.unwrap();
    let fake = Arc::new(FakeDriver::new(FakeConfig::from_env("host1")));
    e.add_host("host1", "local", "nova", fake.clone())
        .await
        .unwrap();
    e.start().await.unwrap();
    Env { e, fake, _dir: dir }
}

impl Env {
    async fn member(&self, project: &str) -> Actor {
        let p = match self.e.project(project).await {
            Ok(p) => p,
            Err(_) => self.e.create_project(project, "").await.unwrap(),
        };
        let name = format!("{project}-member");
        let u = self
            .e
            .create_user(&name, "password123", &p.id, Role::Member)
            .await
            .unwrap();
        Actor {
            user_id: u.id,
            user_name: name,
            project_id: p.id,
            role: Role::Member,
        }
    }

    async fn settle(&self, id: &str) -> Server {
        for _ in 0..400 {
            let s = self.e.store().get_server(id).await.unwrap().unwrap();
            if s.task_state.is_none() && s.vm_state != VmState::Building {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server {id} did not settle");
    }

    async fn create(&self, u: &Actor, name: &str) -> Server {
        let c = self
            .e
            .create_servers(
                u,
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

    async fn act(&self, u: &Actor, id: &str, a: ServerAction) -> Server {
        let out = self.e.server_action(u, id, a.clone()).await;
        assert!(out.is_ok(), "{a:?}: {out:?}");
        self.settle(id).await
    }

    /// A backup of server `id`: (image id, store snapshot id).
    async fn backup(&self, u: &Actor, id: &str, name: &str) -> (String, String) {
        let out = self
            .e
            .server_action(
                u,
                id,
                ServerAction::CreateBackup {
                    name: name.into(),
                    backup_type: "daily".into(),
                    rotation: 5,
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
        self.settle(id).await;
        let image = self.e.image(u, &img).await.unwrap();
        assert_eq!(image.kind, ImageKind::Backup);
        let (snap, disk) = parse_store_location(image.location.as_deref().unwrap()).unwrap();
        assert_eq!(disk, "root");
        (img, snap)
    }

    async fn restore(
        &self,
        u: &Actor,
        id: &str,
        snapshot: &str,
        instant: bool,
    ) -> Result<ActionOutcome, ComputeError> {
        self.e
            .server_action(
                u,
                id,
                ServerAction::RestoreBackup {
                    snapshot: snapshot.into(),
                    instant,
                },
            )
            .await
    }
}

/// The server's endpoint: each port's id, MAC, fixed and floating IPs.
fn endpoint(s: &Server) -> Vec<(String, String, String, Vec<String>)> {
    s.attachments
        .iter()
        .map(|a| {
            (
                a.port_id.clone(),
                a.mac_address.clone(),
                a.fixed_ip.clone(),
                a.floating_ips.clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_keeps_the_endpoint_and_refuses_disk_actions_while_copying() {
    let env = env().await;
    let u = env.member("demo").await;
    let s = env.create(&u, "db").await;
    let before = endpoint(&s);
    assert_eq!(before.len(), 1);
    let vm_before = env.fake.vm_spec(&s.instance_name).unwrap();
    let (img, snap) = env.backup(&u, &s.id, "nightly").await;

    // Instant restore, named by the backup's image id; the copy is held.
    env.fake.hold_restores(true);
    let out = env.restore(&u, &s.id, &img, true).await.unwrap();
    let ActionOutcome::Accepted { workflow_id, .. } = out else {
        panic!("{out:?}")
    };
    let r = env.settle(&s.id).await;
    assert_eq!(r.status(), Status::Active, "{r:?}");
    assert_eq!(r.id, s.id);
    assert_eq!(r.host.as_deref(), Some("host1"));
    assert_eq!(endpoint(&r), before, "same ports, MAC and IPs");
    let vm = env.fake.vm_spec(&r.instance_name).unwrap();
    let from = vm
        .root_from
        .clone()
        .expect("the VM was made from the store");
    assert_eq!(
        (from.snapshot.as_str(), from.instant),
        (snap.as_str(), true)
    );
    assert_eq!(
        vm.nics
            .iter()
            .map(|n| (n.port_id.clone(), n.mac.clone(), n.ip.clone()))
            .collect::<Vec<_>>(),
        vm_before
            .nics
            .iter()
            .map(|n| (n.port_id.clone(), n.mac.clone(), n.ip.clone()))
            .collect::<Vec<_>>(),
        "the new VM has the old NICs"
    );
    let wf = env.e.workflow(&u, &workflow_id).await.unwrap();
    assert_eq!(wf.kind, "restore_backup");
    assert_eq!(
        wf.steps.iter().map(|x| x.name.as_str()).collect::<Vec<_>>(),
        [
            "schedule_dest",
            "destroy_old",
            "restore",
            "power_on",
            "ready"
        ]
    );
    assert_eq!(wf.params["snapshot"], snap.as_str());
    assert_eq!(wf.params["instant"], true);

    // While the copy runs: the view shows it, the disk actions are refused (409 reason),
    // other actions work.
    let p = env
        .e
        .restore_progress(&r)
        .await
        .expect("restore in progress");
    assert!(!p.done && p.copying, "{p:?}");
    for a in [
        ServerAction::CreateBackup {
            name: "x".into(),
            backup_type: "daily".into(),
            rotation: 5,
            metadata: Default::default(),
        },
        ServerAction::CreateImage {
            name: "x".into(),
            metadata: Default::default(),
        },
        ServerAction::Resize {
            flavor: "m1.tiny".into(),
        },
        ServerAction::Shelve,
    ] {
        let kind = a.kind();
        let err = env.e.server_action(&u, &s.id, a).await.unwrap_err();
        assert_eq!(
            err,
            ComputeError::Denied(ActionDenied::Restoring {
                action: kind,
                server_id: s.id.clone(),
            })
        );
        let ComputeError::Denied(d) = &err else {
            unreachable!()
        };
        assert_eq!(d.http_status(), 409);
    }
    let r = env
        .act(&u, &s.id, ServerAction::Reboot { hard: false })
        .await;
    assert_eq!(r.status(), Status::Active);

    // The copy ends: the view says done once (and logs it), then nothing; backups work.
    env.fake.hold_restores(false);
    let p = env.e.restore_progress(&r).await.expect("last state");
    assert!(p.done, "{p:?}");
    assert!(env.e.restore_progress(&r).await.is_none());
    let events = env
        .e
        .events(
            &u,
            lifeboat_store::EventQuery {
                server_id: Some(s.id.clone()),
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    for needle in [
        "restore_backup accepted",
        "old VM and its disks are removed",
        "(instant: it boots from the store",
        "instant restore of snapshot",
    ] {
        assert!(
            events.iter().any(|e| e.message.contains(needle)),
            "event {needle:?} logged"
        );
    }
    let (_, snap2) = env.backup(&u, &s.id, "after").await;

    // A full restore (named by the snapshot id) leaves no copy behind.
    let r = {
        env.restore(&u, &s.id, &snap2, false).await.unwrap();
        env.settle(&s.id).await
    };
    assert_eq!(r.status(), Status::Active);
    assert_eq!(endpoint(&r), before);
    let from = env
        .fake
        .vm_spec(&r.instance_name)
        .unwrap()
        .root_from
        .unwrap();
    assert_eq!(
        (from.snapshot.as_str(), from.instant),
        (snap2.as_str(), false)
    );
    assert!(env.e.restore_progress(&r).await.is_none());

    // A stopped server and a failed one can be restored; the fault goes.
    env.act(&u, &s.id, ServerAction::Stop).await;
    let r = {
        env.restore(&u, &s.id, &snap, true).await.unwrap();
        env.settle(&s.id).await
    };
    assert_eq!(r.status(), Status::Active);
    let admin = {
        let user = env.e.user("admin").await.unwrap();
        let project = env.e.project("admin").await.unwrap();
        Actor {
            user_id: user.id,
            user_name: "admin".into(),
            project_id: project.id,
            role: Role::Admin,
        }
    };
    env.act(
        &admin,
        &s.id,
        ServerAction::ResetState {
            state: "error".into(),
        },
    )
    .await;
    let r = {
        env.restore(&u, &s.id, &snap, true).await.unwrap();
        env.settle(&s.id).await
    };
    assert_eq!(r.status(), Status::Active);
    assert!(r.fault.is_none());
    assert_eq!(endpoint(&r), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_with_typed_reasons() {
    let env = env().await;
    let u = env.member("demo").await;
    let s = env.create(&u, "db").await;
    let other = env.create(&u, "other").await;
    let (_, snap) = env.backup(&u, &s.id, "mine").await;
    let (other_img, other_snap) = env.backup(&u, &other.id, "theirs").await;

    // Unknown snapshots, and ids that cannot be snapshot ids.
    for bad in ["nope", "../etc", ""] {
        assert_eq!(
            env.restore(&u, &s.id, bad, true).await.unwrap_err(),
            ComputeError::Rejected(Reason::BadReference {
                kind: Resource::Snapshot,
                id: bad.into(),
            }),
            "{bad:?}"
        );
    }
    // Another server's backup (by snapshot or image id).
    for key in [&other_snap, &other_img] {
        assert_eq!(
            env.restore(&u, &s.id, key, true).await.unwrap_err(),
            ComputeError::Rejected(Reason::SnapshotOfAnotherServer {
                snapshot: other_snap.clone(),
                server: s.id.clone(),
            })
        );
    }
    // A snapshot of this server that is not a backup or image (a shelved disk).
    let shelve = {
        let loc = env.e.snapstore();
        let sid = s.id.clone();
        tokio::task::spawn_blocking(move || {
            use lifeboat_datastore::backup::{BackupRequest, DiskSource, FileReader};
            let ds = loc.open().unwrap();
            let f = tempfile::NamedTempFile::new().unwrap();
            let mut d = format!("fake-disk {sid}\n").into_bytes();
            d.resize(64 << 10, 0);
            std::fs::write(f.path(), d).unwrap();
            let mut meta =
                lifeboat_datastore::SnapshotMeta::new(lifeboat_datastore::SnapshotKind::Shelve);
            meta.server = Some(sid);
            ds.backup(
                BackupRequest {
                    meta,
                    parent: None,
                    disks: vec![DiskSource {
                        name: "root".into(),
                        reader: Arc::new(FileReader::open(f.path()).unwrap()),
                        dirty: None,
                    }],
                },
                &|_| {},
            )
            .unwrap()
            .id
        })
        .await
        .unwrap()
    };
    assert_eq!(
        env.restore(&u, &s.id, &shelve, true).await.unwrap_err(),
        ComputeError::Rejected(Reason::SnapshotNotRestorable { snapshot: shelve })
    );
    // A state the action table refuses.
    env.act(&u, &s.id, ServerAction::Pause).await;
    assert_eq!(
        env.restore(&u, &s.id, &snap, true).await.unwrap_err(),
        ComputeError::Denied(ActionDenied::WrongState {
            action: Action::RestoreBackup,
            server_id: s.id.clone(),
            attr: StateAttr::VmState,
            vm_state: VmState::Paused,
            task_state: None,
        })
    );
    env.act(&u, &s.id, ServerAction::Unpause).await;
    // Another project sees no such server.
    let stranger = env.member("elsewhere").await;
    assert!(matches!(
        env.restore(&stranger, &s.id, &snap, true)
            .await
            .unwrap_err(),
        ComputeError::NotFound {
            kind: Resource::Server,
            ..
        }
    ));
    // The request's default is instant.
    let req: ServerAction =
        serde_json::from_value(serde_json::json!({"action": "restore_backup", "snapshot": snap}))
            .unwrap();
    assert_eq!(
        req,
        ServerAction::RestoreBackup {
            snapshot: snap.clone(),
            instant: true
        }
    );
    assert_eq!(req.kind(), Action::RestoreBackup);
    // Nothing was changed by the refusals.
    let now = env.settle(&s.id).await;
    assert_eq!(now.status(), Status::Active);
    assert!(env.e.restore_progress(&now).await.is_none());
}
