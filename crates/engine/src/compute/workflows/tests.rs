//! Every workflow kind's params round-trip through the store (the samples
//! are derived from the action list, so a new kind cannot be left out);
//! older rows migrate; unknown or missing params are errors.

use lifeboat_core::{Action, FlavorSnapshot, NetworkRequest};
use serde_json::json;

use super::params as p;
use super::*;

fn flavor() -> FlavorSnapshot {
    (&lifeboat_core::Flavor::defaults()[0]).into()
}

/// A value of each param type that is not its type's default, so a field
/// lost on the way is seen.
trait Sample {
    fn sample() -> Self;
}
impl Sample for String {
    fn sample() -> Self {
        "s4mple".into()
    }
}
impl Sample for bool {
    fn sample() -> Self {
        true
    }
}
impl Sample for u32 {
    fn sample() -> Self {
        7
    }
}
impl<T: Sample> Sample for Option<T> {
    fn sample() -> Self {
        Some(T::sample())
    }
}
impl<T: Sample> Sample for Vec<T> {
    fn sample() -> Self {
        vec![T::sample(), T::sample()]
    }
}
impl Sample for FlavorSnapshot {
    fn sample() -> Self {
        flavor()
    }
}
impl Sample for NetworkRequest {
    fn sample() -> Self {
        NetworkRequest {
            network_id: Some("net".into()),
            port_id: None,
            fixed_ip: Some("10.0.0.9".into()),
        }
    }
}

/// One sample of every kind, from the action list.
macro_rules! samples {
    (@one $var:ident [short] $($f:ident)*) => {
        WorkflowKind::$var(p::$var { $($f: Sample::sample()),* })
    };
    (@one $var:ident [] $($f:ident)*) => {
        WorkflowKind::$var(p::$var {
            supersedes: Some("11111111-2222-3333-4444-555555555555".into()),
            was_active: true,
            $($f: Sample::sample()),*
        })
    };
    ($(
        $(#[$m:meta])* $var:ident = $s:literal $(as $base:ident)? { $($field:ident : $val:expr),* $(,)? }
        $(request $(#[$rm:meta])* $req:ident $({ $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? })?
            $(kind($kx:expr))? => $($h:ident)::+)?
        $(params { $($(#[$pm:meta])* $pf:ident : $pt:ty),* $(,)? })?
        $(steps $plan:tt)?
    ),+ $(,)?) => {
        fn samples() -> Vec<WorkflowKind> {
            vec![$(samples!(@one $var [$($base)?] $($($pf)*)?)),+]
        }
    };
}
lifeboat_core::server_actions!(samples);

async fn round_trip(url: &str) {
    let store = lifeboat_store::Store::open(url).await.unwrap();
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
            reason: None,
            created_at: now,
            updated_at: now,
        };
        store.put_workflow(&wf).await.unwrap();
        let back = store.get_workflow(&wf.id).await.unwrap().unwrap();
        assert_eq!(back.params["v"], json!(PARAMS_VERSION), "{}", k.name());
        let loaded = WorkflowKind::load(&back.kind, &back.params).unwrap();
        assert_eq!(&loaded, k, "{}", k.name());
        // What a new row of this kind is written from reads the same.
        let fresh = WorkflowKind::new_row(k.action(), &back.params).unwrap();
        assert_eq!(&fresh, k, "{}", k.name());
    }
    // One kind per action, in the list's order.
    let names: Vec<_> = kinds.iter().map(|k| k.name()).collect();
    let actions: Vec<_> = Action::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(names, actions);
}

#[tokio::test]
async fn every_kind_round_trips_through_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(&format!("sqlite://{}", dir.path().join("db").display())).await;
}

#[tokio::test]
async fn every_kind_round_trips_through_the_postgres_store() {
    round_trip(&lifeboat_store::testing::fresh_pg_database().await).await;
}

#[test]
fn every_long_action_has_steps_and_every_record_update_none() {
    for k in samples() {
        let a = k.action();
        let steps = crate::steps::plan(&k);
        if a.rule().long {
            assert!(!steps.is_empty(), "{a} is long but has no steps");
        } else {
            assert!(steps.is_empty(), "{a} is a record update with steps");
        }
        // A long action's workflow records what it superseded.
        assert_eq!(k.supersedes().is_some(), a.rule().long, "{a}");
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
    // Version 1: a create did not record was_active (false: never active before).
    let create = WorkflowKind::load(
        "create",
        &json!({"v": 1, "networks": [], "no_network": false, "host": "h1"}),
    )
    .unwrap();
    assert!(!create.was_active());
    assert_eq!(create.host().as_deref(), Some("h1"));
    assert_eq!(create.store()["v"], json!(2));
    assert_eq!(create.store()["was_active"], json!(false));
    // ... but a version-2 row (or a new one) must say it.
    let v2 = json!({"v": 2, "networks": [], "no_network": false, "host": null});
    assert!(WorkflowKind::load("create", &v2).is_err());
    assert!(WorkflowKind::new_row(Action::Create, &v2).is_err());
    assert!(WorkflowKind::new_row(Action::SoftDelete, &json!({"supersedes": "y"})).is_err());
    // A new row is never migrated from an older version.
    assert!(WorkflowKind::new_row(Action::Stop, &json!({"v": 1, "was_active": true})).is_err());
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
