//! The `run_maintenance` action (the worked example of one declaration per
//! action): its table row, its request, its workflow, on the fake driver.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{Action, ActionDenied, Actor, Role, StateAttr, Status, TaskState, VmState};
use lifeboat_engine::{
    ActionOutcome, ComputeError, CreateServer, Engine, EngineConfig, ServerAction,
};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};

async fn engine(dir: &std::path::Path) -> (Engine, Actor) {
    let store = lifeboat_store::Store::open(&format!("sqlite://{}", dir.join("db").display()))
        .await
        .unwrap();
    let mut cfg = EngineConfig::new(dir.to_path_buf());
    cfg.ready_timeout = Duration::from_secs(5);
    let engine = Engine::new(store, cfg);
    engine.bootstrap_identity().await.unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let f = Arc::new(FakeDriver::new(FakeConfig::from_env("host1")));
    engine.add_host("host1", "local", "nova", f).await.unwrap();
    engine.start().await.unwrap();
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
async fn run_maintenance_runs_in_the_guest_and_logs_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let (e, admin) = engine(dir.path()).await;
    let c = e
        .create_servers(
            &admin,
            CreateServer {
                name: "m".into(),
                flavor: "m1.nano".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let id = settle(&e, &c[0].server.id).await.id;

    let out = e
        .server_action(
            &admin,
            &id,
            ServerAction::RunMaintenance {
                procedure: "fstrim".into(),
            },
        )
        .await
        .unwrap();
    let ActionOutcome::Accepted { workflow_id, .. } = out else {
        panic!("not a workflow: {out:?}");
    };
    // The row's transient task state is set at once.
    let s = e.store().get_server(&id).await.unwrap().unwrap();
    assert!(
        s.task_state == Some(TaskState::Maintaining) || s.task_state.is_none(),
        "{:?}",
        s.task_state
    );
    let s = settle(&e, &id).await;
    assert_eq!(s.status(), Status::Active);
    let wf = e.workflow(&admin, &workflow_id).await.unwrap();
    assert_eq!(wf.kind, "run_maintenance");
    assert_eq!(wf.state, lifeboat_core::WorkflowState::Completed);
    let events = e
        .events(
            &admin,
            lifeboat_store::EventQuery {
                workflow_id: Some(workflow_id.clone()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|ev| ev.message == "maintenance fstrim: [fake] maintenance fstrim ok"),
        "{events:#?}"
    );

    // A path is not a procedure.
    let err = e
        .server_action(
            &admin,
            &id,
            ServerAction::RunMaintenance {
                procedure: "../etc/passwd".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ComputeError::BadRequest(_)), "{err:?}");

    // Only an ACTIVE server: the table's vm_state column refuses a stopped one.
    e.server_action(&admin, &id, ServerAction::Stop)
        .await
        .unwrap();
    settle(&e, &id).await;
    let err = e
        .server_action(
            &admin,
            &id,
            ServerAction::RunMaintenance {
                procedure: "fstrim".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ComputeError::Denied(ActionDenied::WrongState {
            action: Action::RunMaintenance,
            server_id: id.clone(),
            attr: StateAttr::VmState,
            vm_state: VmState::Stopped,
            task_state: None,
        })
    );
}
