//! The `sync_power_state` action, added through the one declaration of
//! docs/ARCHITECTURE.md's worked example: its table row, its request, its
//! workflow, on the fake driver.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::{Action, ActionDenied, Actor, PowerState, Role, StateAttr, Status, VmState};
use lifeboat_engine::{
    ActionOutcome, ComputeError, CreateServer, Engine, EngineConfig, ServerAction,
};
use lifeboat_hypervisor::fake::{FakeConfig, FakeDriver};

async fn engine(dir: &std::path::Path) -> (Engine, Actor, Arc<FakeDriver>) {
    let store = lifeboat_store::Store::open(&format!("sqlite://{}", dir.join("db").display()))
        .await
        .unwrap();
    let mut cfg = EngineConfig::new(dir.to_path_buf());
    cfg.ready_timeout = Duration::from_secs(5);
    // The periodic sync must not be what notices the change here.
    cfg.sync_interval = Duration::from_secs(3600);
    let engine = Engine::new(store, cfg);
    engine.bootstrap_identity().await.unwrap();
    engine.bootstrap_catalog(&Default::default()).await.unwrap();
    let f = Arc::new(FakeDriver::new(FakeConfig::from_env("host1")));
    engine
        .add_host("host1", "local", "nova", f.clone())
        .await
        .unwrap();
    engine.start().await.unwrap();
    let user = engine.user("admin").await.unwrap();
    let project = engine.project("admin").await.unwrap();
    let admin = Actor {
        user_id: user.id,
        user_name: "admin".into(),
        project_id: project.id,
        role: Role::Admin,
    };
    (engine, admin, f)
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
async fn sync_power_state_records_what_the_host_reports() {
    let dir = tempfile::tempdir().unwrap();
    let (e, admin, fake) = engine(dir.path()).await;
    let c = e
        .create_servers(
            &admin,
            CreateServer {
                name: "p".into(),
                flavor: "m1.nano".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let s = settle(&e, &c[0].server.id).await;
    assert_eq!(s.status(), Status::Active);

    // In sync: nothing changes, the workflow completes with its event.
    let ActionOutcome::Accepted { workflow_id, .. } = e
        .server_action(&admin, &s.id, ServerAction::SyncPowerState)
        .await
        .unwrap()
    else {
        panic!("not a workflow");
    };
    let x = settle(&e, &s.id).await;
    assert_eq!(
        (x.status(), x.power_state),
        (Status::Active, PowerState::Running)
    );
    let wf = e.workflow(&admin, &workflow_id).await.unwrap();
    assert_eq!(wf.kind, "sync_power_state");
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
            .any(|ev| ev.message == "power state running -> running"),
        "{events:#?}"
    );

    // The VM stops behind Lifeboat's back: the action records it at once.
    assert!(fake.kill_outside(&s.instance_name));
    e.server_action(&admin, &s.id, ServerAction::SyncPowerState)
        .await
        .unwrap();
    let x = settle(&e, &s.id).await;
    assert_eq!(
        (x.status(), x.power_state),
        (Status::Shutoff, PowerState::Shutdown)
    );

    // The table's vm_state column applies: a shelved server is refused.
    e.server_action(&admin, &s.id, ServerAction::Shelve)
        .await
        .unwrap();
    let x = settle(&e, &s.id).await;
    let err = e
        .server_action(&admin, &s.id, ServerAction::SyncPowerState)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ComputeError::Denied(ActionDenied::WrongState {
            action: Action::SyncPowerState,
            server_id: s.id.clone(),
            attr: StateAttr::VmState,
            vm_state: x.vm_state,
            task_state: None,
        })
    );
}

/// The native API's body is the request derived from the row.
#[test]
fn the_request_is_derived_from_the_row() {
    let r: ServerAction = serde_json::from_str(r#"{"action": "sync_power_state"}"#).unwrap();
    assert_eq!(r, ServerAction::SyncPowerState);
    assert_eq!(r.kind(), Action::SyncPowerState);
    assert_eq!(Action::SyncPowerState.as_str(), "sync_power_state");
    assert!(Action::SyncPowerState.rule().long);
}
