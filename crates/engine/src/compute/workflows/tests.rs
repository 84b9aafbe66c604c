//! Every workflow kind's params round-trip through the store; older rows
//! migrate; unknown or missing params are errors.

use serde_json::json;

use super::params as p;
use super::*;

fn flavor() -> FlavorSnapshot {
    (&lifeboat_core::Flavor::defaults()[0]).into()
}

/// One sample of every kind (the match makes a new kind fail to compile
/// here until it has a sample).
fn samples() -> Vec<WorkflowKind> {
    use WorkflowKind as K;
    let sup = Some("11111111-2222-3333-4444-555555555555".to_string());
    let all = vec![
        K::Create(p::Create {
            networks: vec![NetworkRequest {
                network_id: Some("net".into()),
                port_id: None,
                fixed_ip: Some("10.0.0.9".into()),
            }],
            no_network: false,
            host: Some("host2".into()),
        }),
        K::Delete(p::Delete {
            supersedes: sup.clone(),
            was_active: true,
        }),
        K::SoftDelete(p::SoftDelete {
            supersedes: None,
            was_active: false,
        }),
        K::ForceDelete(p::ForceDelete {
            supersedes: sup.clone(),
            was_active: false,
        }),
        K::Restore(p::Restore {
            supersedes: None,
            was_active: false,
        }),
        K::RebootSoft(p::RebootSoft {
            supersedes: None,
            was_active: true,
        }),
        K::RebootHard(p::RebootHard {
            supersedes: sup.clone(),
            was_active: true,
        }),
        K::Start(p::Start {
            supersedes: None,
            was_active: false,
        }),
        K::Stop(p::Stop {
            supersedes: None,
            was_active: true,
        }),
        K::Pause(p::Pause {
            supersedes: None,
            was_active: true,
        }),
        K::Unpause(p::Unpause {
            supersedes: None,
            was_active: false,
        }),
        K::Suspend(p::Suspend {
            supersedes: None,
            was_active: true,
        }),
        K::Resume(p::Resume {
            supersedes: None,
            was_active: false,
        }),
        K::Rescue(p::Rescue {
            supersedes: None,
            was_active: true,
            rescue_image: Some("img".into()),
        }),
        K::Unrescue(p::Unrescue {
            supersedes: None,
            was_active: false,
        }),
        K::Rebuild(p::Rebuild {
            supersedes: None,
            was_active: true,
            image_id: "img".into(),
        }),
        K::Resize(p::Resize {
            supersedes: None,
            was_active: true,
            flavor: flavor(),
            dest: Some("host2".into()),
        }),
        K::Migrate(p::Migrate {
            supersedes: None,
            was_active: false,
            host: None,
            dest: None,
        }),
        K::ConfirmResize(p::ConfirmResize {
            supersedes: None,
            was_active: false,
        }),
        K::RevertResize(p::RevertResize {
            supersedes: None,
            was_active: true,
        }),
        K::LiveMigrate(p::LiveMigrate {
            supersedes: None,
            was_active: true,
            host: Some("host3".into()),
            dest: Some("host3".into()),
        }),
        K::Evacuate(p::Evacuate {
            supersedes: sup.clone(),
            was_active: true,
            host: None,
            dest: Some("host2".into()),
        }),
        K::CreateImage(p::CreateImage {
            supersedes: None,
            was_active: true,
            image_id: "i1".into(),
        }),
        K::CreateBackup(p::CreateBackup {
            supersedes: None,
            was_active: false,
            image_id: "i2".into(),
            backup_type: "daily".into(),
            rotation: 3,
        }),
        K::ChangePassword(p::ChangePassword {
            supersedes: None,
            was_active: true,
        }),
        K::Shelve(p::Shelve {
            supersedes: None,
            was_active: true,
            offload: true,
        }),
        K::ShelveOffload(p::ShelveOffload {
            supersedes: None,
            was_active: false,
        }),
        K::Unshelve(p::Unshelve {
            supersedes: None,
            was_active: false,
            host: Some("host1".into()),
        }),
        K::RunMaintenance(p::RunMaintenance {
            supersedes: None,
            was_active: true,
            procedure: "fstrim".into(),
        }),
        K::SyncPowerState(p::SyncPowerState {
            supersedes: None,
            was_active: true,
        }),
        K::Lock(p::Lock {}),
        K::Unlock(p::Unlock {}),
        K::ResetState(p::ResetState {}),
        K::TriggerCrashDump(p::TriggerCrashDump {}),
        K::AttachInterface(p::AttachInterface {}),
        K::DetachInterface(p::DetachInterface {}),
    ];
    for k in &all {
        match k {
            K::Create(_)
            | K::Delete(_)
            | K::SoftDelete(_)
            | K::ForceDelete(_)
            | K::Restore(_)
            | K::RebootSoft(_)
            | K::RebootHard(_)
            | K::Start(_)
            | K::Stop(_)
            | K::Pause(_)
            | K::Unpause(_)
            | K::Suspend(_)
            | K::Resume(_)
            | K::Rescue(_)
            | K::Unrescue(_)
            | K::Rebuild(_)
            | K::Resize(_)
            | K::Migrate(_)
            | K::ConfirmResize(_)
            | K::RevertResize(_)
            | K::LiveMigrate(_)
            | K::Evacuate(_)
            | K::CreateImage(_)
            | K::CreateBackup(_)
            | K::ChangePassword(_)
            | K::Shelve(_)
            | K::ShelveOffload(_)
            | K::Unshelve(_)
            | K::RunMaintenance(_)
            | K::SyncPowerState(_)
            | K::Lock(_)
            | K::Unlock(_)
            | K::ResetState(_)
            | K::TriggerCrashDump(_)
            | K::AttachInterface(_)
            | K::DetachInterface(_) => {}
        }
    }
    all
}

#[tokio::test]
async fn every_kind_round_trips_through_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        lifeboat_store::Store::open(&format!("sqlite://{}", dir.path().join("db").display()))
            .await
            .unwrap();
    let now = lifeboat_core::now();
    let kinds = samples();
    for (i, k) in kinds.iter().enumerate() {
        let wf = lifeboat_core::Workflow {
            id: format!("wf-{i}"),
            kind: k.name().into(),
            server_id: None,
            project_id: None,
            user_id: None,
            request_id: format!("req-{i}"),
            state: lifeboat_core::WorkflowState::Running,
            steps: vec![],
            params: k.store(),
            error: None,
            created_at: now,
            updated_at: now,
        };
        store.put_workflow(&wf).await.unwrap();
        let back = store.get_workflow(&wf.id).await.unwrap().unwrap();
        assert_eq!(back.params["v"], json!(PARAMS_VERSION), "{}", k.name());
        let loaded = WorkflowKind::load(&back.kind, &back.params).unwrap();
        assert_eq!(&loaded, k, "{}", k.name());
    }
    // Every kind has a sample with a distinct name.
    let mut names: Vec<_> = kinds.iter().map(|k| k.name()).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), kinds.len());
}

#[test]
fn every_long_action_has_a_workflow_kind_of_its_name() {
    for a in lifeboat_core::Action::ALL {
        let r = a.rule();
        let known = samples().iter().any(|k| k.name() == a.as_str());
        if r.long {
            assert!(known, "{a} is long but has no workflow kind");
        }
    }
}

#[test]
fn todays_unversioned_rows_load() {
    // As written by the release before versioned params.
    let resize = WorkflowKind::load(
        "resize",
        &json!({"flavor": flavor(), "was_active": true, "supersedes": "x", "dest": "host2"}),
    )
    .unwrap();
    assert_eq!(resize.dest(), Some("host2"));
    assert_eq!(resize.supersedes(), Some("x"));
    let create = WorkflowKind::load(
        "create",
        &json!({"networks": [], "no_network": true, "host": null}),
    )
    .unwrap();
    assert!(matches!(
        create,
        WorkflowKind::Create(p::Create {
            no_network: true,
            ..
        })
    ));
    // A soft delete did not record was_active: migrated to false.
    let soft = WorkflowKind::load("soft_delete", &json!({"supersedes": "y"})).unwrap();
    assert_eq!(
        soft,
        WorkflowKind::SoftDelete(p::SoftDelete {
            supersedes: Some("y".into()),
            was_active: false
        })
    );
    assert_eq!(soft.store()["was_active"], json!(false));
    let migrate =
        WorkflowKind::load("live_migrate", &json!({"host": null, "was_active": true})).unwrap();
    assert_eq!(migrate.dest(), None);
    assert!(migrate.need_dest().is_err());
}

#[test]
fn unknown_or_missing_params_are_errors() {
    // A missing destination image is not an empty string.
    assert!(WorkflowKind::load("rebuild", &json!({"was_active": true})).is_err());
    assert!(WorkflowKind::load(
        "create_backup",
        &json!({"was_active": true, "image_id": "i", "backup_type": "daily"})
    )
    .is_err());
    assert!(WorkflowKind::load("stop", &json!({})).is_err());
    // Unknown fields, kinds and versions.
    assert!(WorkflowKind::load("stop", &json!({"was_active": true, "bogus": 1})).is_err());
    assert!(WorkflowKind::load("frobnicate", &json!({})).is_err());
    assert!(WorkflowKind::load("stop", &json!({"was_active": true, "v": 99})).is_err());
    assert!(WorkflowKind::load("stop", &json!([])).is_err());
    // A password never rides in the params.
    assert!(WorkflowKind::load(
        "rebuild",
        &json!({"was_active": true, "image_id": "i", "admin_pass": "x"})
    )
    .is_err());
}

#[test]
fn plans_follow_the_params() {
    use crate::steps::plan;
    let shelve = |offload| {
        WorkflowKind::Shelve(p::Shelve {
            supersedes: None,
            was_active: true,
            offload,
        })
    };
    assert_eq!(
        plan(&shelve(true)),
        ["power_off", "shelve_snapshot", "offload"]
    );
    assert_eq!(plan(&shelve(false)), ["power_off", "shelve_snapshot"]);
    let ev = |was_active| {
        WorkflowKind::Evacuate(p::Evacuate {
            supersedes: None,
            was_active,
            host: None,
            dest: None,
        })
    };
    assert_eq!(
        plan(&ev(true)),
        ["schedule_dest", "evacuate", "power_on", "ready", "password"]
    );
    assert_eq!(plan(&ev(false)), ["schedule_dest", "evacuate", "password"]);
    let rb = WorkflowKind::Rebuild(p::Rebuild {
        supersedes: None,
        was_active: true,
        image_id: "i".into(),
    });
    assert_eq!(
        plan(&rb),
        ["power_off", "rebuild", "power_on", "ready", "password"]
    );
}
