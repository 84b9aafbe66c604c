//! Workflows in flight survive an upgrade: rows written in the params
//! formats of earlier releases (no `"v"`; version 1, whose create did not
//! record `was_active`) resume after a restart and complete.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{
    Actor, PowerState, Role, Status, StepRecord, StepState, TaskState, VmState, Workflow,
    WorkflowState,
};
use lifeboat_engine::{CreateServer, Engine, EngineConfig, ServerAction};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};
use lifeboat_hypervisor::Hypervisor;
use serde_json::json;

async fn engine(dir: &std::path::Path, fake: Arc<FakeDriver>, start: bool) -> (Engine, Actor) {
    engine_with(dir, fake, start, None).await
}

async fn engine_with(
    dir: &std::path::Path,
    fake: Arc<FakeDriver>,
    start: bool,
    hang_at: Option<&str>,
) -> (Engine, Actor) {
    let store = lifeboat_store::Store::open(&format!("sqlite://{}", dir.join("db").display()))
        .await
        .unwrap();
    let mut cfg = EngineConfig::new(dir.to_path_buf());
    cfg.ready_timeout = Duration::from_secs(5);
    cfg.hang_at = hang_at.map(str::to_string);
    let engine = Engine::new(store, cfg);
    engine.bootstrap_identity().await.unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    engine
        .add_host("host1", "local", "nova", fake)
        .await
        .unwrap();
    if start {
        engine.start().await.unwrap();
    }
    let user = engine.user("admin").await.unwrap();
    let project = engine.project("admin").await.unwrap();
    let admin = Actor {
        user_id: user.id,
        user_name: "admin".into(),
        project_id: project.id,
        role: Role::Admin,
    };
    (engine, admin)
}

async fn settle(e: &Engine, id: &str) -> lifeboat_core::Server {
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
async fn an_unversioned_workflow_row_resumes_after_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeDriver::new(FakeConfig::from_env("host1")));
    let id = {
        let (e, admin) = engine(dir.path(), fake.clone(), false).await;
        let c = e
            .create_servers(
                &admin,
                CreateServer {
                    name: "old".into(),
                    flavor: "m1.nano".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let id = settle(&e, &c[0].server.id).await.id;
        e.server_action(&admin, &id, ServerAction::Stop)
            .await
            .unwrap();
        let s = settle(&e, &id).await;
        assert_eq!(s.status(), Status::Shutoff);

        // A start that the old release accepted and was killed in: its
        // params in the old form (no "v"), its first step started.
        let now = lifeboat_core::now();
        let step = |name: &str, state| StepRecord {
            name: name.into(),
            state,
            started_at: None,
            finished_at: None,
            attempts: 0,
        };
        let wf = Workflow {
            id: "0a0a0a0a-0000-4000-8000-000000000001".into(),
            kind: "start".into(),
            server_id: Some(id.clone()),
            project_id: Some(s.project_id.clone()),
            user_id: Some(admin.user_id.clone()),
            request_id: "req-old".into(),
            state: WorkflowState::Running,
            steps: vec![
                step("power_on", StepState::Running),
                step("ready", StepState::Pending),
            ],
            params: json!({"was_active": false}),
            error: None,
            reason: None,
            created_at: now,
            updated_at: now,
        };
        let mut s2 = s.clone();
        s2.task_state = Some(TaskState::PoweringOn);
        s2.task_workflow = Some(wf.id.clone());
        e.store()
            .cas_server_with_workflow(&s2, &wf, &Default::default())
            .await
            .unwrap();
        id
    };

    // The new release starts on the same database and finishes it.
    let (e, admin) = engine(dir.path(), fake.clone(), true).await;
    let s = settle(&e, &id).await;
    assert_eq!(s.status(), Status::Active);
    assert_eq!(s.power_state, PowerState::Running);
    let wf = e
        .workflow(&admin, "0a0a0a0a-0000-4000-8000-000000000001")
        .await
        .unwrap();
    assert_eq!(wf.state, WorkflowState::Completed, "{wf:#?}");
    assert!(wf.steps.iter().all(|s| s.state == StepState::Done));
    let st = fake.status(&s.instance_name).await.unwrap();
    assert_eq!(st.power_state, PowerState::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_create_row_resumes_after_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let fake = Arc::new(FakeDriver::new(FakeConfig::from_env("host1")));
    let (wf_id, id) = {
        // The old release accepted a create and was killed at its first step.
        let (e, admin) =
            engine_with(dir.path(), fake.clone(), false, Some("create:schedule")).await;
        let c = e
            .create_servers(
                &admin,
                CreateServer {
                    name: "v1".into(),
                    flavor: "m1.nano".into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let id = c[0].server.id.clone();
        let wf_id = c[0].workflow_id.clone();
        let mut parked = false;
        for _ in 0..400 {
            let wf = e.store().get_workflow(&wf_id).await.unwrap().unwrap();
            if wf.steps[0].state == StepState::Running {
                parked = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(parked, "the create started its first step");
        // Its params as version 1 wrote them: no was_active.
        let mut wf = e.store().get_workflow(&wf_id).await.unwrap().unwrap();
        assert_eq!(wf.params["was_active"], json!(false), "{}", wf.params);
        wf.params = json!({"v": 1, "networks": [], "no_network": false});
        e.store().put_workflow(&wf).await.unwrap();
        (wf_id, id)
    };

    let (e, admin) = engine(dir.path(), fake.clone(), true).await;
    let s = settle(&e, &id).await;
    assert_eq!(s.status(), Status::Active, "{s:?}");
    let wf = e.workflow(&admin, &wf_id).await.unwrap();
    assert_eq!(wf.state, WorkflowState::Completed, "{wf:#?}");
    assert!(wf.steps.iter().all(|s| s.state == StepState::Done));
    // Read forward: stored again in this release's version.
    assert_eq!(
        wf.params["v"],
        json!(lifeboat_core::workflows::PARAMS_VERSION)
    );
    assert_eq!(wf.params["was_active"], json!(false));
    let st = fake.status(&s.instance_name).await.unwrap();
    assert_eq!(st.power_state, PowerState::Running);
}
