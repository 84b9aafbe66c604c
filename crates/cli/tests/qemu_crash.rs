//! Crash safety on real VMs (QEMU, TCG on this kind of machine): `lifeboat
//! serve --driver qemu` is SIGKILLed right after a step's side effect (the
//! VM defined, its process started, the VM migrated) and before the step is
//! recorded; after a restart the step re-runs without a second VM process
//! or a copy left on the source. Few VMs, one at a time (2 cores).

mod common;

use std::path::Path;
use std::time::Duration;

use common::{free_port, guest_dir, qemu_processes, Api, Serve, VmGuard};
use serde_json::{json, Value};

/// The tests take turns: both name their first VM `instance-00000001`, and
/// `qemu_processes` finds VMs by that name across data dirs.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn hooks(kind_step: &str) -> [(&str, &str); 2] {
    [
        ("LIFEBOAT_ENABLE_TEST_HOOKS", "1"),
        ("LIFEBOAT_TEST_HANG_AT", kind_step),
    ]
}

fn login(s: &Serve) -> Api {
    let c = s.credentials();
    Api::login(
        &s.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    )
}

fn attempts(api: &Api, id: &str, kind: &str, step: &str) -> u64 {
    let wfs = api.get(&format!("/api/v1/servers/{id}/workflows"));
    let wf: &Value = wfs
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["kind"] == kind)
        .unwrap_or_else(|| panic!("{wfs}"));
    assert_eq!(wf["state"], "completed", "{wf}");
    wf["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == step)
        .unwrap()["attempts"]
        .as_u64()
        .unwrap()
}

fn qemu_serve(dir: &Path, port: u16, envs: &[(&str, &str)], extra: &[&str]) -> Serve {
    let guest = guest_dir();
    let mut args = vec!["--guest-dir", guest.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut s = Serve::start_full(dir, port, "qemu", envs, &args);
    s.wait_ready_line();
    s
}

#[test]
fn qemu_create_survives_sigkill_after_define_and_after_spawn() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for step in ["define", "spawn"] {
        let dir = tempfile::tempdir().unwrap();
        // kills this iteration's VMs (also when it fails) before `dir` goes
        let _vms = VmGuard::new();
        let port = free_port();
        let kind_step = format!("create:{step}:after");
        let first = qemu_serve(dir.path(), port, &hooks(&kind_step), &[]);
        let api = login(&first);
        let (st, v) = api.post(
            "/api/v1/servers",
            json!({"name": "qc", "flavor": "m1.nano"}),
        );
        assert_eq!(st, 202, "{v}");
        let id = v[0]["server"]["id"].as_str().unwrap().to_string();
        let instance = v[0]["server"]["instance_name"]
            .as_str()
            .unwrap()
            .to_string();
        first.wait_stderr(
            &format!("LIFEBOAT-HANG {kind_step}"),
            Duration::from_secs(60),
        );
        drop(api);
        first.kill9();
        let before = qemu_processes(&instance).len();
        assert_eq!(
            before,
            usize::from(step == "spawn"),
            "qemu processes at the kill"
        );

        let second = qemu_serve(dir.path(), port, &[], &[]);
        let api = login(&second);
        let s = api.settle(&id, Duration::from_secs(180));
        assert_eq!(s["status"], "ACTIVE", "after kill past {step}: {s}");
        assert_eq!(attempts(&api, &id, "create", step), 2, "{step} re-ran");
        assert_eq!(
            qemu_processes(&instance).len(),
            1,
            "exactly one qemu process for {instance} after kill past {step}"
        );
        let (st, _) = api.req(
            reqwest::Method::DELETE,
            &format!("/api/v1/servers/{id}"),
            None,
        );
        assert_eq!(st, 202);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !qemu_processes(&instance).is_empty() {
            assert!(std::time::Instant::now() < deadline, "VM not destroyed");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
fn qemu_live_migration_survives_sigkill_after_the_migration() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("agent-token");
    std::fs::write(&token, "qemu-crash-agent-token").unwrap();
    let agent_port = free_port();
    let agent_dir = tempfile::tempdir().unwrap();
    let _vms = VmGuard::new();
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _agent = Agent(common::start_agent(
        "host2",
        "qemu",
        agent_port,
        agent_dir.path(),
        &token,
    ));
    let agent_arg = common::agent_arg("host2", agent_port, agent_dir.path());
    let port = free_port();
    let kind_step = "live_migrate:live_migrate:after";
    let first = qemu_serve(
        dir.path(),
        port,
        &hooks(kind_step),
        &["--agent", &agent_arg],
    );
    let api = login(&first);
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "mig", "flavor": "m1.nano", "availability_zone": "nova:host1"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    let s = api.settle(&id, Duration::from_secs(180));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host1")),
        "{s}"
    );
    let instance = s["instance_name"].as_str().unwrap().to_string();
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "live_migrate", "host": "host2"}),
    );
    assert_eq!(st, 202, "{v}");
    first.wait_stderr(
        &format!("LIFEBOAT-HANG {kind_step}"),
        Duration::from_secs(180),
    );
    drop(api);
    first.kill9();

    let second = qemu_serve(dir.path(), port, &[], &["--agent", &agent_arg]);
    let api = login(&second);
    let s = api.settle(&id, Duration::from_secs(120));
    assert_eq!(
        (
            s["status"].as_str(),
            s["host"].as_str(),
            s["power_state"].as_i64()
        ),
        (Some("ACTIVE"), Some("host2"), Some(1)),
        "{s}"
    );
    assert_eq!(attempts(&api, &id, "live_migrate", "live_migrate"), 2);
    let procs = qemu_processes(&instance);
    assert_eq!(procs.len(), 1, "one qemu process (on host2): {procs:?}");
    let cmd =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{}/cmdline", procs[0])).unwrap())
            .to_string();
    assert!(
        cmd.contains(&agent_dir.path().display().to_string()),
        "the VM runs from host2's directory: {cmd}"
    );
    // still managed there
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "reboot", "hard": true}),
    );
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        api.settle(&id, Duration::from_secs(180))["status"],
        "ACTIVE"
    );
}
