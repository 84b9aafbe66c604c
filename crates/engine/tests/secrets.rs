//! Admin passwords never show: not in workflow params, events or server
//! records, at any time while their workflow runs or after; never in
//! plaintext in the database; gone from it once the workflow ends; and
//! applied to the guest (rescue too).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{Actor, Role, VmState};
use lifeboat_engine::{CreateServer, Engine, EngineConfig, ListServers, ServerAction};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
use lifeboat_hypervisor::Hypervisor;

struct Env {
    engine: Engine,
    admin: Actor,
    hosts: Vec<Arc<FakeDriver>>,
    dir: tempfile::TempDir,
}

async fn env(hosts: usize) -> Env {
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
    let mut fakes = vec![];
    for i in 1..=hosts {
        let mut c = FakeConfig::from_env(&format!("host{i}"));
        c.delay = Duration::from_millis(150);
        let f = Arc::new(FakeDriver::new(c));
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
        dir,
    }
}

/// Everything a reader of the API can see, as JSON text.
async fn visible(e: &Engine, admin: &Actor) -> String {
    let mut out = String::new();
    for w in e.workflows(admin, 1000).await.unwrap() {
        out.push_str(&serde_json::to_string(&w).unwrap());
        out.push_str(&serde_json::to_string(&e.workflow(admin, &w.id).await.unwrap()).unwrap());
    }
    let q = ListServers {
        all_projects: true,
        ..Default::default()
    };
    for s in e.list_servers(admin, &q).await.unwrap() {
        out.push_str(&serde_json::to_string(&s).unwrap());
        for w in e.server_workflows(admin, &s.id).await.unwrap() {
            out.push_str(&serde_json::to_string(&w).unwrap());
        }
    }
    let events = e
        .events(
            admin,
            lifeboat_store::EventQuery {
                limit: Some(10_000),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    out.push_str(&serde_json::to_string(&events).unwrap());
    out
}

fn db_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = vec![];
    for f in ["db", "db-wal", "db-shm"] {
        if let Ok(b) = std::fs::read(dir.join(f)) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Polls everything visible until `stop`, failing if `secret` shows up.
fn watch(e: &Env, secret: &'static str) -> (Arc<AtomicBool>, tokio::task::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (engine, admin, dir) = (
        e.engine.clone(),
        e.admin.clone(),
        e.dir.path().to_path_buf(),
    );
    let flag = stop.clone();
    let h = tokio::spawn(async move {
        let mut rounds = 0;
        loop {
            let seen = visible(&engine, &admin).await;
            assert!(
                !seen.contains(secret),
                "secret visible through the API: {seen}"
            );
            assert!(
                !contains(&db_bytes(&dir), secret),
                "secret in plaintext in the database"
            );
            rounds += 1;
            if flag.load(Ordering::Relaxed) {
                return rounds;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    (stop, h)
}

async fn settle(e: &Env, id: &str) {
    for _ in 0..800 {
        let s = e.engine.store().get_server(id).await.unwrap().unwrap();
        if s.task_state.is_none() && s.vm_state != VmState::Building {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server {id} did not settle");
}

async fn password_applies(e: &Env, host: usize, instance: &str) -> usize {
    e.hosts[host]
        .console_output(instance, None)
        .await
        .unwrap()
        .matches("password of root changed")
        .count()
}

async fn no_secret_left(e: &Env, wf: &str, secret: &str) {
    assert_eq!(
        e.engine
            .store()
            .workflow_secret(wf, "admin_pass")
            .await
            .unwrap(),
        None,
        "sealed secret deleted when the workflow ended"
    );
    assert!(!visible(&e.engine, &e.admin).await.contains(secret));
    assert!(!contains(&db_bytes(e.dir.path()), secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_passwords_never_show_and_are_applied() {
    let e = env(2).await;
    let (stop, watcher) = watch(&e, "Pw-Create-0001");
    let created = e
        .engine
        .create_servers(
            &e.admin,
            CreateServer {
                name: "s".into(),
                flavor: "m1.nano".into(),
                admin_pass: Some("Pw-Create-0001".into()),
                availability_zone: Some("nova:host1".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        created[0].admin_pass, "Pw-Create-0001",
        "shown once to the creator"
    );
    let s = created[0].server.clone();
    settle(&e, &s.id).await;
    stop.store(true, Ordering::Relaxed);
    assert!(watcher.await.unwrap() >= 1, "watched while it ran");
    no_secret_left(&e, &created[0].workflow_id, "Pw-Create-0001").await;
    assert_eq!(password_applies(&e, 0, &s.instance_name).await, 1);

    let cases: Vec<(&'static str, ServerAction)> = vec![
        (
            "Pw-Change-0002",
            ServerAction::ChangePassword {
                admin_pass: "Pw-Change-0002".into(),
            },
        ),
        (
            "Pw-Rebuild-0003",
            ServerAction::Rebuild {
                image: lifeboat_engine::DEFAULT_IMAGE_ID.into(),
                name: None,
                admin_pass: Some("Pw-Rebuild-0003".into()),
                metadata: None,
                description: None,
                key_name: None,
                user_data: None,
                preserve_ephemeral: false,
                hostname: None,
            },
        ),
        (
            "Pw-Rescue-0004",
            ServerAction::Rescue {
                admin_pass: Some("Pw-Rescue-0004".into()),
                image: None,
            },
        ),
    ];
    let mut applied = 1;
    for h in &e.hosts {
        h.set_delay(Duration::from_millis(150));
    }
    for (secret, action) in cases {
        let (stop, watcher) = watch(&e, secret);
        let out = e
            .engine
            .server_action(&e.admin, &s.id, action)
            .await
            .unwrap();
        settle(&e, &s.id).await;
        stop.store(true, Ordering::Relaxed);
        assert!(watcher.await.unwrap() >= 1, "watched while {secret} ran");
        let lifeboat_engine::ActionOutcome::Accepted { workflow_id, .. } = out else {
            panic!("{out:?}");
        };
        no_secret_left(&e, &workflow_id, secret).await;
        applied += 1;
        assert_eq!(
            password_applies(&e, 0, &s.instance_name).await,
            applied,
            "{secret} applied to the guest"
        );
    }
    e.engine
        .server_action(&e.admin, &s.id, ServerAction::Unrescue)
        .await
        .unwrap();
    settle(&e, &s.id).await;

    // evacuate from a dead host
    e.engine.set_host_up("host1", false).await.unwrap();
    let (stop, watcher) = watch(&e, "Pw-Evacuate-0005");
    let out = e
        .engine
        .server_action(
            &e.admin,
            &s.id,
            ServerAction::Evacuate {
                host: None,
                admin_pass: Some("Pw-Evacuate-0005".into()),
            },
        )
        .await
        .unwrap();
    settle(&e, &s.id).await;
    stop.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    let lifeboat_engine::ActionOutcome::Accepted { workflow_id, .. } = out else {
        panic!("{out:?}");
    };
    no_secret_left(&e, &workflow_id, "Pw-Evacuate-0005").await;
    assert_eq!(password_applies(&e, 1, &s.instance_name).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_superseded_by_delete_keeps_no_password() {
    let e = env(1).await;
    e.hosts[0].set_delay(Duration::from_millis(300));
    let created = e
        .engine
        .create_servers(
            &e.admin,
            CreateServer {
                name: "gone".into(),
                flavor: "m1.nano".into(),
                admin_pass: Some("Pw-Superseded-0006".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = created[0].server.id.clone();
    tokio::time::sleep(Duration::from_millis(100)).await;
    e.engine.delete_server(&e.admin, &id).await.unwrap();
    for _ in 0..400 {
        let w = e
            .engine
            .store()
            .get_workflow(&created[0].workflow_id)
            .await
            .unwrap()
            .unwrap();
        let s = e.engine.store().get_server(&id).await.unwrap().unwrap();
        if w.state != lifeboat_core::WorkflowState::Running && s.vm_state == VmState::Deleted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    no_secret_left(&e, &created[0].workflow_id, "Pw-Superseded-0006").await;
}
