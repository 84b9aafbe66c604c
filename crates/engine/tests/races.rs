//! Races found by load: a snapshot that loses its compare-and-set leaves
//! no `queued` image; delete under contention is accepted (retried); delete
//! of a shelved-offloaded server cleans its host; X-OpenStack-Request-Id is
//! the instance action's request id.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{Actor, ImageStatus, Role, Status, VmState};
use lifeboat_engine::{CreateServer, Engine, EngineConfig, ServerAction};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
use lifeboat_hypervisor::{HvError, Hypervisor};

struct Env {
    engine: Engine,
    admin: Actor,
    host: Arc<FakeDriver>,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store =
        lifeboat_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
    let mut cfg = EngineConfig::new(dir.path().to_path_buf());
    cfg.sync_interval = Duration::from_secs(3600);
    cfg.ready_timeout = Duration::from_secs(5);
    let engine = Engine::new(store, cfg);
    engine.bootstrap_identity().await.unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let host = Arc::new(FakeDriver::new(FakeConfig::from_env("host1")));
    engine
        .add_host("host1", "local", "nova", host.clone())
        .await
        .unwrap();
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
        host,
        _dir: dir,
    }
}

impl Env {
    async fn settle(&self, id: &str) -> lifeboat_core::Server {
        for _ in 0..800 {
            let s = self.engine.store().get_server(id).await.unwrap().unwrap();
            if s.task_state.is_none() && s.vm_state != VmState::Building {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("server {id} did not settle");
    }

    async fn create(&self, name: &str) -> lifeboat_core::Server {
        let c = self
            .engine
            .create_servers(
                &self.admin,
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_that_lose_the_race_leave_no_queued_image() {
    let e = env().await;
    let s = e.create("snap").await;
    let mut accepted = 0;
    for round in 0..5 {
        let mut tasks = vec![];
        for i in 0..8 {
            let (engine, admin, id) = (e.engine.clone(), e.admin.clone(), s.id.clone());
            tasks.push(tokio::spawn(async move {
                let a = if i % 2 == 0 {
                    ServerAction::CreateImage {
                        name: format!("img-{round}-{i}"),
                        metadata: Default::default(),
                    }
                } else {
                    ServerAction::CreateBackup {
                        name: format!("bak-{round}-{i}"),
                        backup_type: "daily".into(),
                        rotation: 100,
                        metadata: Default::default(),
                    }
                };
                engine.server_action(&admin, &id, a).await
            }));
        }
        for t in tasks {
            if t.await.unwrap().is_ok() {
                accepted += 1;
            }
        }
        e.settle(&s.id).await;
    }
    assert!(accepted >= 5, "one per round at least");
    let images: Vec<_> = e
        .engine
        .images(&e.admin)
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.instance_uuid.as_deref() == Some(s.id.as_str()))
        .collect();
    assert_eq!(images.len(), accepted, "one image per accepted request");
    for i in &images {
        assert_eq!(
            i.status,
            ImageStatus::Active,
            "{} left {:?}",
            i.name,
            i.status
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_under_contention_is_accepted() {
    let e = env().await;
    for n in 0..6 {
        let s = e.create(&format!("busy-{n}")).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut writers = vec![];
        for w in 0..4 {
            let (engine, admin, id, stop) = (
                e.engine.clone(),
                e.admin.clone(),
                s.id.clone(),
                stop.clone(),
            );
            writers.push(tokio::spawn(async move {
                let mut k = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    k += 1;
                    let meta = [(format!("w{w}"), format!("{k}"))].into_iter().collect();
                    if engine.set_metadata(&admin, &id, meta, false).await.is_err() {
                        break;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let r = e.engine.delete_server(&e.admin, &s.id).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in writers {
            w.await.unwrap();
        }
        assert!(r.is_ok(), "delete under contention: {r:?}");
        let gone = e.settle(&s.id).await;
        assert_eq!(gone.vm_state, VmState::Deleted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_shelved_offloaded_server_cleans_its_host() {
    let e = env().await;
    let s = e.create("shelf").await;
    e.engine
        .server_action(&e.admin, &s.id, ServerAction::Shelve)
        .await
        .unwrap();
    let shelved = e.settle(&s.id).await;
    assert_eq!(shelved.status(), Status::ShelvedOffloaded);
    assert!(shelved.host.is_none());
    assert!(
        matches!(
            e.host.status(&s.instance_name).await,
            Err(HvError::NotFound(_))
        ),
        "offload frees the host: the disk is in the snapshot store"
    );
    let shelved = e
        .engine
        .store()
        .get::<lifeboat_engine::ShelvedDisk>(&s.id)
        .await
        .unwrap()
        .expect("the shelved disk is recorded");
    let store = e.engine.snapstore().open().unwrap();
    assert_eq!(
        store
            .manifest(&shelved.snapshot)
            .unwrap()
            .meta
            .server
            .as_deref(),
        Some(s.id.as_str())
    );
    e.engine.delete_server(&e.admin, &s.id).await.unwrap();
    let gone = e.settle(&s.id).await;
    assert_eq!(gone.vm_state, VmState::Deleted);
    assert!(
        matches!(
            e.host.status(&s.instance_name).await,
            Err(HvError::NotFound(_))
        ),
        "the host has no copy of the deleted server"
    );
    assert!(
        store.snapshot_ids().unwrap().is_empty(),
        "deleting the server deleted its shelved disk"
    );
    assert!(e
        .engine
        .store()
        .get::<lifeboat_engine::ShelvedDisk>(&s.id)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_request_id_is_the_actions_request_id() {
    let e = env().await;
    let s = e.create("rid").await;
    let out = lifeboat_engine::with_request_id(
        "req-11111111-2222-3333-4444-555555555555".into(),
        e.engine.server_action(&e.admin, &s.id, ServerAction::Stop),
    )
    .await
    .unwrap();
    let lifeboat_engine::ActionOutcome::Accepted { workflow_id, .. } = out else {
        panic!("{out:?}")
    };
    let wf = e.engine.workflow(&e.admin, &workflow_id).await.unwrap();
    assert_eq!(wf.request_id, "req-11111111-2222-3333-4444-555555555555");
    e.settle(&s.id).await;
    // without a caller id the engine makes one
    let out = e
        .engine
        .server_action(&e.admin, &s.id, ServerAction::Start)
        .await
        .unwrap();
    let lifeboat_engine::ActionOutcome::Accepted { workflow_id, .. } = out else {
        panic!("{out:?}")
    };
    let wf = e.engine.workflow(&e.admin, &workflow_id).await.unwrap();
    assert!(wf.request_id.starts_with("req-") && wf.request_id.len() == 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_superseded_by_delete_leaves_no_queued_image() {
    let e = env().await;
    let s = e.create("snap-del").await;
    e.host.set_delay(Duration::from_millis(300));
    let out = e
        .engine
        .server_action(
            &e.admin,
            &s.id,
            ServerAction::CreateImage {
                name: "never".into(),
                metadata: Default::default(),
            },
        )
        .await
        .unwrap();
    let lifeboat_engine::ActionOutcome::Accepted {
        image_id: Some(img),
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    e.engine.delete_server(&e.admin, &s.id).await.unwrap();
    e.settle(&s.id).await;
    let mut status = ImageStatus::Queued;
    for _ in 0..200 {
        status = e
            .engine
            .store()
            .get::<lifeboat_core::Image>(&img)
            .await
            .unwrap()
            .unwrap()
            .status;
        if !matches!(status, ImageStatus::Queued | ImageStatus::Saving) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        matches!(status, ImageStatus::Killed | ImageStatus::Active),
        "image left {status:?}"
    );
}

/// Load found it: a create inside its define step, then two deletes. The
/// second superseded the first before the first ran a step, and waited
/// only for it, so it destroyed nothing and the create then defined a VM
/// of a deleted server. The delete waits for the whole chain it
/// supersedes. (The first delete is written as the runner leaves a
/// delete superseded before its first step, which is a race to hit.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_waits_for_the_whole_chain_it_supersedes() {
    let e = env().await;
    e.host.set_op_delay("define", Duration::from_millis(1500));
    let c = e
        .engine
        .create_servers(
            &e.admin,
            CreateServer {
                name: "twice".into(),
                flavor: "m1.nano".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = c[0].server.id.clone();
    let store = e.engine.store();
    let mut in_define = false;
    for _ in 0..400 {
        let ev = store
            .events(&lifeboat_store::EventQuery {
                server_id: Some(id.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        if ev
            .iter()
            .any(|x| x.message == "create: define started (attempt 1)")
        {
            in_define = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(in_define, "the create reached its define step");
    let mut s = store.get_server(&id).await.unwrap().unwrap();
    let create_id = s.task_workflow.clone().unwrap();
    let mut first = store.get_workflow(&create_id).await.unwrap().unwrap();
    first.id = format!("{create_id}-first-delete");
    first.kind = "delete".into();
    first.params = serde_json::json!({"v": 1, "supersedes": create_id, "was_active": false});
    first.steps = vec![];
    first.state = lifeboat_core::WorkflowState::RolledBack;
    first.error = Some("superseded by another request".into());
    store.put_workflow(&first).await.unwrap();
    s.task_workflow = Some(first.id.clone());
    store.cas_server(&s).await.unwrap();
    e.engine
        .server_action(&e.admin, &id, ServerAction::Delete)
        .await
        .unwrap();
    let s = e.settle(&id).await;
    assert_eq!(s.vm_state, VmState::Deleted, "{s:?}");
    // let a create still inside `define` finish it
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let left = e.host.list().await.unwrap();
    assert!(left.is_empty(), "VM of a deleted server: {left:?}");
}
