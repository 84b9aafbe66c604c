//! Crash safety: a real `lifeboat serve` child is SIGKILLed at every step of
//! multi-step workflows (right after the step is persisted as started).
//! After a restart each workflow completes, or rolls back when its step
//! then fails; no server is left in a transient state and nothing is lost.

mod common;

use std::time::Duration;

use common::{free_port, Api, Serve};
use serde_json::{json, Value};

const CREATE_STEPS: &[&str] = &[
    "schedule", "network", "define", "spawn", "ready", "password",
];

fn fake_vms(data_dir: &std::path::Path) -> Value {
    lifeboat_hypervisor::fake::read_state_file(&data_dir.join("hosts/host1/fake-host1.json"))
}

fn creds(s: &Serve) -> (String, String) {
    let c = s.credentials();
    (
        c["username"].as_str().unwrap().into(),
        c["password"].as_str().unwrap().into(),
    )
}

/// Kills the process at `kind:step`, restarts, returns (api, server, workflow).
fn crash_at(
    kind_step: &str,
    prepare: impl FnOnce(&Api) -> String,
    act: impl FnOnce(&Api, &str),
    restart_env: &[(&str, &str)],
) -> (Value, Value, tempfile::TempDir) {
    crash_in(
        tempfile::tempdir().unwrap(),
        &[],
        kind_step,
        prepare,
        act,
        restart_env,
    )
}

/// [`crash_at`] in a prepared data dir, with extra `serve` arguments.
fn crash_in(
    dir: tempfile::TempDir,
    extra: &[&str],
    kind_step: &str,
    prepare: impl FnOnce(&Api) -> String,
    act: impl FnOnce(&Api, &str),
    restart_env: &[(&str, &str)],
) -> (Value, Value, tempfile::TempDir) {
    let port = free_port();
    let first = Serve::start(
        dir.path(),
        port,
        &[
            ("LIFEBOAT_ENABLE_TEST_HOOKS", "1"),
            ("LIFEBOAT_TEST_HANG_AT", kind_step),
        ],
        extra,
    );
    let (u, p) = creds(&first);
    let api = Api::login(&first.url, &u, &p);
    let id = prepare(&api);
    act(&api, &id);
    first.wait_stderr(
        &format!("LIFEBOAT-HANG {kind_step}"),
        Duration::from_secs(30),
    );
    let before = api.get(&format!("/api/v1/servers/{id}"));
    assert!(
        !before["task_state"].is_null(),
        "task in progress at the crash: {before}"
    );
    first.kill9();
    drop(api);

    let second = Serve::start(dir.path(), port, restart_env, extra);
    let api = Api::login(&second.url, &u, &p);
    let s = api.settle(&id, Duration::from_secs(30));
    let wfs = api.get(&format!("/api/v1/servers/{id}/workflows"));
    let wf = wfs
        .as_array()
        .unwrap()
        .iter()
        .find(|w| {
            format!("{}:", w["kind"].as_str().unwrap())
                == format!("{}:", kind_step.split(':').next().unwrap())
        })
        .unwrap()
        .clone();
    // Nothing anywhere is left in a transient state.
    let all = api.get("/api/v1/servers?all_projects=true");
    for x in all.as_array().unwrap() {
        assert!(x["task_state"].is_null(), "transient server left: {x}");
    }
    let events = api.get(&format!("/api/v1/events?server_id={id}&limit=500"));
    assert!(
        events.as_array().unwrap().iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .contains("resumed after restart")),
        "resume logged"
    );
    drop(second);
    (s, wf, dir)
}

fn create(api: &Api) -> String {
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "crashy", "flavor": "m1.nano"}),
    );
    assert_eq!(st, 202, "{v}");
    v[0]["server"]["id"].as_str().unwrap().to_string()
}

#[test]
fn create_survives_sigkill_at_every_step() {
    for step in CREATE_STEPS {
        let (s, wf, dir) = crash_at(&format!("create:{step}"), create, |_, _| {}, &[]);
        assert_eq!(s["status"], "ACTIVE", "after kill at {step}: {s}");
        assert_eq!(s["power_state"], 1);
        assert_eq!(wf["state"], "completed", "{wf}");
        let rec = wf["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == *step)
            .unwrap();
        assert_eq!(
            rec["attempts"], 2,
            "step {step} ran again after the restart: {wf}"
        );
        assert_eq!(
            s["attachments"].as_array().unwrap().len(),
            1,
            "exactly one port after kill at {step}"
        );
        let vms = fake_vms(dir.path());
        assert_eq!(
            vms.as_object().unwrap().len(),
            1,
            "exactly one VM after kill at {step}: {vms}"
        );
    }
}

#[test]
fn create_rolls_back_when_the_resumed_step_fails() {
    let (s, wf, dir) = crash_at(
        "create:spawn",
        create,
        |_, _| {},
        &[
            ("LIFEBOAT_ENABLE_TEST_HOOKS", "1"),
            ("LIFEBOAT_FAKE_FAIL", "start:1"),
        ],
    );
    assert_eq!(s["status"], "ERROR", "{s}");
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("injected failure"),
        "{s}"
    );
    assert_eq!(wf["state"], "failed");
    assert!(
        s["attachments"].as_array().unwrap().is_empty(),
        "ports released: {s}"
    );
    assert!(
        fake_vms(dir.path()).as_object().unwrap().is_empty(),
        "VM undefined"
    );
}

#[test]
fn resize_survives_sigkill_at_every_step() {
    for step in ["schedule_dest", "power_off", "resize", "power_on", "ready"] {
        let prepare = |api: &Api| {
            let id = create(api);
            api.settle(&id, Duration::from_secs(30));
            id
        };
        let act = |api: &Api, id: &str| {
            let (st, v) = api.post(
                &format!("/api/v1/servers/{id}/actions"),
                json!({"action": "resize", "flavor": "m1.tiny"}),
            );
            assert_eq!(st, 202, "{v}");
        };
        let (s, wf, _dir) = crash_at(&format!("resize:{step}"), prepare, act, &[]);
        assert_eq!(s["status"], "VERIFY_RESIZE", "after kill at {step}: {s}");
        assert_eq!(s["flavor"]["original_name"], "m1.tiny");
        assert_eq!(s["old_flavor"]["original_name"], "m1.nano");
        assert_eq!(wf["state"], "completed");
    }
}

fn step_attempts(wf: &Value, step: &str) -> u64 {
    wf["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == step)
        .unwrap_or_else(|| panic!("no step {step}: {wf}"))["attempts"]
        .as_u64()
        .unwrap()
}

#[test]
fn create_survives_sigkill_after_every_side_effect() {
    for step in CREATE_STEPS {
        let (s, wf, dir) = crash_at(&format!("create:{step}:after"), create, |_, _| {}, &[]);
        assert_eq!(s["status"], "ACTIVE", "after kill past {step}: {s}");
        assert_eq!(wf["state"], "completed", "{wf}");
        assert_eq!(step_attempts(&wf, step), 2, "{step} re-ran: {wf}");
        assert_eq!(
            s["attachments"].as_array().unwrap().len(),
            1,
            "exactly one port after kill past {step}: {s}"
        );
        let vms = fake_vms(dir.path());
        assert_eq!(vms.as_object().unwrap().len(), 1, "one VM: {vms}");
    }
}

#[test]
fn resize_survives_sigkill_after_every_side_effect() {
    for step in ["schedule_dest", "power_off", "resize", "power_on", "ready"] {
        let prepare = |api: &Api| {
            let id = create(api);
            api.settle(&id, Duration::from_secs(30));
            id
        };
        let act = |api: &Api, id: &str| {
            let (st, v) = api.post(
                &format!("/api/v1/servers/{id}/actions"),
                json!({"action": "resize", "flavor": "m1.tiny"}),
            );
            assert_eq!(st, 202, "{v}");
        };
        let (s, wf, dir) = crash_at(&format!("resize:{step}:after"), prepare, act, &[]);
        assert_eq!(s["status"], "VERIFY_RESIZE", "after kill past {step}: {s}");
        assert_eq!(s["flavor"]["original_name"], "m1.tiny");
        assert_eq!(s["old_flavor"]["original_name"], "m1.nano");
        assert_eq!(step_attempts(&wf, step), 2, "{step} re-ran: {wf}");
        let vms = fake_vms(dir.path());
        assert_eq!(vms.as_object().unwrap().len(), 1, "one VM: {vms}");
    }
}

/// A remote fake agent `host2` beside the in-process `host1`.
struct Agent {
    child: std::process::Child,
    dir: tempfile::TempDir,
    arg: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn start(data_dir: &std::path::Path) -> Agent {
        let token = data_dir.join("agent-token");
        if !token.exists() {
            std::fs::write(&token, "crash-test-agent-token").unwrap();
        }
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let child = common::start_agent("host2", "fake", port, dir.path(), &token);
        let arg = common::agent_arg("host2", port, dir.path());
        Agent { child, dir, arg }
    }

    fn vms(&self) -> Value {
        lifeboat_hypervisor::fake::read_state_file(&self.dir.path().join("fake-host2.json"))
    }
}

fn create_on_host1(api: &Api) -> String {
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "mover", "flavor": "m1.nano", "availability_zone": "nova:host1"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    api.settle(&id, Duration::from_secs(30));
    id
}

/// Kills `serve` at `kind:step[:after]` of a move from host1 to host2;
/// afterwards the VM lives on host2 only.
fn move_crash(kind: &str, step: &str, after: bool, status: &str) {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let kind_step = format!("{kind}:{step}{}", if after { ":after" } else { "" });
    let act = |api: &Api, id: &str| {
        let (st, v) = api.post(
            &format!("/api/v1/servers/{id}/actions"),
            json!({"action": kind, "host": "host2"}),
        );
        assert_eq!(st, 202, "{v}");
    };
    let (s, wf, dir) = crash_in(
        dir,
        &["--agent", &agent.arg],
        &kind_step,
        create_on_host1,
        act,
        &[],
    );
    assert_eq!(s["status"], status, "after kill at {kind_step}: {s}");
    assert_eq!(s["host"], "host2", "after kill at {kind_step}: {s}");
    assert_eq!(wf["state"], "completed", "{wf}");
    if after {
        assert_eq!(step_attempts(&wf, step), 2, "{step} re-ran: {wf}");
    }
    let name = s["instance_name"].as_str().unwrap();
    let on2 = agent.vms();
    assert!(on2.get(name).is_some(), "on host2 after {kind_step}: {on2}");
    if status == "ACTIVE" {
        assert_eq!(on2[name]["power"], 1, "running on host2: {on2}");
    }
    let on1 = fake_vms(dir.path());
    assert!(
        on1.get(name).is_none(),
        "no copy left on host1 after {kind_step}: {on1}"
    );
}

#[test]
fn live_migrate_survives_sigkill_before_and_after_every_side_effect() {
    for step in ["schedule_dest", "live_migrate"] {
        for after in [false, true] {
            move_crash("live_migrate", step, after, "ACTIVE");
        }
    }
}

#[test]
fn cross_host_resize_survives_sigkill_before_and_after_every_side_effect() {
    for step in ["schedule_dest", "power_off", "resize", "power_on", "ready"] {
        for after in [false, true] {
            move_crash("migrate", step, after, "VERIFY_RESIZE");
        }
    }
}

#[test]
fn create_with_two_nics_survives_sigkill_between_its_ports() {
    let create_two = |api: &Api| {
        let nets = api.get("/api/v1/networks");
        let net = nets
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["external"] == false)
            .unwrap_or_else(|| panic!("{nets}"))["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (st, v) = api.post(
            "/api/v1/servers",
            json!({"name": "two-nics", "flavor": "m1.nano",
                   "networks": [{"network_id": net}, {"network_id": net}]}),
        );
        assert_eq!(st, 202, "{v}");
        v[0]["server"]["id"].as_str().unwrap().to_string()
    };
    let (s, wf, _dir) = crash_at("create:network#0:after", create_two, |_, _| {}, &[]);
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(step_attempts(&wf, "network"), 2, "{wf}");
    let ports = s["attachments"].as_array().unwrap();
    assert_eq!(ports.len(), 2, "both ports, once each: {s}");
    assert_ne!(ports[0]["port_id"], ports[1]["port_id"], "{s}");
}

/// A createImage killed after its backup reached the store and before its image record
/// was filled: after the restart it finishes with that snapshot (no second backup, no
/// orphan in the store), and the image is active and points at it.
#[test]
fn create_image_killed_between_its_store_snapshot_and_its_image_finishes_with_it() {
    let (s, wf, dir) = crash_at(
        "create_image:snapshot:stored:after",
        |api| {
            let id = create(api);
            assert_eq!(api.settle(&id, Duration::from_secs(30))["status"], "ACTIVE");
            id
        },
        |api, id| {
            let (st, v) = api.post(
                &format!("/api/v1/servers/{id}/actions"),
                json!({"action": "create_image", "name": "crash-img"}),
            );
            assert!(st == 202 || st == 200, "{st} {v}");
        },
        &[],
    );
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(wf["state"], "completed", "{wf}");
    assert_eq!(step_attempts(&wf, "snapshot"), 2, "{wf}");
    let store = lifeboat_datastore::StoreLocation::dir(dir.path().join("snapstore"))
        .open()
        .unwrap();
    let snaps: Vec<_> = store
        .snapshots()
        .unwrap()
        .into_iter()
        .filter(|m| m.meta.kind == lifeboat_datastore::SnapshotKind::Image)
        .collect();
    assert_eq!(snaps.len(), 1, "one snapshot, no orphan: {snaps:?}");
    let third = Serve::start(dir.path(), free_port(), &[], &[]);
    let (u, p) = creds(&third);
    let api = Api::login(&third.url, &u, &p);
    let imgs = api.get("/api/v1/images");
    let img = imgs
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "crash-img")
        .unwrap_or_else(|| panic!("no image: {imgs}"))
        .clone();
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(
        img["location"].as_str(),
        Some(format!("snapstore:{}/root", snaps[0].id).as_str()),
        "{img}"
    );
    let digest = store.digest_disk(&snaps[0].id, "root").unwrap();
    assert_eq!(img["checksum"].as_str(), Some(digest.md5.as_str()), "{img}");
}

/// createImage and createBackup SIGKILLed at each step, before and after its side effect:
/// the image record is written with the workflow, so after the restart the image is
/// `active` (one, named as asked), never left `queued` or `saving`, and the server ACTIVE.
#[test]
fn snapshots_survive_sigkill_and_leave_no_queued_image() {
    let cases: &[(&str, &[&str], Value)] = &[
        (
            "create_image",
            &["snapshot"],
            json!({"action": "create_image", "name": "crash-img"}),
        ),
        (
            "create_backup",
            &["snapshot", "rotate"],
            json!({"action": "create_backup", "name": "crash-img", "backup_type": "daily",
                   "rotation": 2}),
        ),
    ];
    for (kind, steps, body) in cases {
        for step in *steps {
            for after in [false, true] {
                let kind_step = format!("{kind}:{step}{}", if after { ":after" } else { "" });
                let prepare = |api: &Api| {
                    let id = create(api);
                    api.settle(&id, Duration::from_secs(30));
                    id
                };
                let act = |api: &Api, id: &str| {
                    let (st, v) = api.post(&format!("/api/v1/servers/{id}/actions"), body.clone());
                    assert_eq!(st, 202, "{v}");
                };
                let (s, wf, dir) = crash_at(&kind_step, prepare, act, &[]);
                assert_eq!(s["status"], "ACTIVE", "after kill at {kind_step}: {s}");
                assert_eq!(wf["state"], "completed", "{kind_step}: {wf}");
                let third = Serve::start(dir.path(), free_port(), &[], &[]);
                let (u, p) = creds(&third);
                let api = Api::login(&third.url, &u, &p);
                let images = api.get("/api/v1/images");
                let images = images.as_array().unwrap();
                for i in images {
                    assert!(
                        i["status"] != "queued" && i["status"] != "saving",
                        "image left {} after kill at {kind_step}: {i}",
                        i["status"]
                    );
                }
                let mine: Vec<&Value> =
                    images.iter().filter(|i| i["name"] == "crash-img").collect();
                assert_eq!(
                    mine.len(),
                    1,
                    "one image after kill at {kind_step}: {images:?}"
                );
                assert_eq!(mine[0]["status"], "active", "{kind_step}: {:?}", mine[0]);
            }
        }
    }
}

const RESTORE_STEPS: &[&str] = &[
    "schedule_dest",
    "destroy_old",
    "restore",
    "power_on",
    "ready",
];

/// A server with a backup: (server id, backup image id, its ports as
/// (id, MAC, fixed IP)).
fn server_with_backup(api: &Api) -> (String, String, Vec<(Value, Value, Value)>) {
    let id = create(api);
    let s = api.settle(&id, Duration::from_secs(30));
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "create_backup", "name": "nightly", "backup_type": "daily", "rotation": 2}),
    );
    assert_eq!(st, 202, "{v}");
    api.settle(&id, Duration::from_secs(30));
    let img = v["image_id"].as_str().unwrap().to_string();
    (id, img, ports_of(&s))
}

fn ports_of(s: &Value) -> Vec<(Value, Value, Value)> {
    s["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["port_id"].clone(),
                a["mac_address"].clone(),
                a["fixed_ip"].clone(),
            )
        })
        .collect()
}

/// restore_backup SIGKILLed at each step, before and after its side effect: after
/// the restart the server is ACTIVE with the same id and ports, on one VM made
/// from the backup (instant), and the step ran again.
#[test]
fn restore_backup_survives_sigkill_at_every_step() {
    for step in RESTORE_STEPS {
        for after in [false, true] {
            let kind_step = format!("restore_backup:{step}{}", if after { ":after" } else { "" });
            let mut ports = vec![];
            let image = std::cell::RefCell::new(String::new());
            let prepare = |api: &Api| {
                let (id, img, p) = server_with_backup(api);
                ports = p;
                *image.borrow_mut() = img;
                id
            };
            let act = |api: &Api, id: &str| {
                let (st, v) = api.post(
                    &format!("/api/v1/servers/{id}/actions"),
                    json!({"action": "restore_backup", "snapshot": *image.borrow()}),
                );
                assert_eq!(st, 202, "{v}");
            };
            let (s, wf, dir) = crash_at(&kind_step, prepare, act, &[]);
            assert_eq!(s["status"], "ACTIVE", "after kill at {kind_step}: {s}");
            assert_eq!(wf["state"], "completed", "{kind_step}: {wf}");
            assert_eq!(step_attempts(&wf, step), 2, "{kind_step} re-ran: {wf}");
            assert_eq!(ports_of(&s), ports, "same ports after {kind_step}: {s}");
            let vms = fake_vms(dir.path());
            let vms = vms.as_object().unwrap();
            assert_eq!(vms.len(), 1, "one VM after {kind_step}: {vms:?}");
            let vm = vms.values().next().unwrap();
            assert_eq!(
                vm["spec"]["root_from"]["instant"], true,
                "{kind_step}: {vm}"
            );
            assert_eq!(vm["power"], 1, "running after {kind_step}: {vm}");
        }
    }
}

/// A restore whose resumed step fails leaves the server in ERROR with its ports
/// and its backup; restoring again (ERROR is allowed) brings it back.
#[test]
fn restore_backup_that_fails_after_a_crash_can_be_restored_again() {
    let image = std::cell::RefCell::new(String::new());
    let mut ports = vec![];
    let prepare = |api: &Api| {
        let (id, img, p) = server_with_backup(api);
        ports = p;
        *image.borrow_mut() = img;
        id
    };
    let act = |api: &Api, id: &str| {
        let (st, v) = api.post(
            &format!("/api/v1/servers/{id}/actions"),
            json!({"action": "restore_backup", "snapshot": *image.borrow()}),
        );
        assert_eq!(st, 202, "{v}");
    };
    let (s, wf, dir) = crash_at(
        "restore_backup:restore",
        prepare,
        act,
        &[
            ("LIFEBOAT_ENABLE_TEST_HOOKS", "1"),
            ("LIFEBOAT_FAKE_FAIL", "define:1"),
        ],
    );
    assert_eq!(s["status"], "ERROR", "{s}");
    assert_eq!(wf["state"], "failed", "{wf}");
    assert_eq!(ports_of(&s), ports, "ports kept: {s}");
    let id = s["id"].as_str().unwrap().to_string();
    let serve = Serve::start(dir.path(), free_port(), &[], &[]);
    let (u, p) = creds(&serve);
    let api = Api::login(&serve.url, &u, &p);
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "restore_backup", "snapshot": *image.borrow(), "instant": false}),
    );
    assert_eq!(st, 202, "{v}");
    let s = api.settle(&id, Duration::from_secs(30));
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert!(s["fault"].is_null(), "{s}");
    assert_eq!(ports_of(&s), ports);
    assert_eq!(fake_vms(dir.path()).as_object().unwrap().len(), 1);
}
