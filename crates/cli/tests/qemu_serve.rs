//! Real VMs through the whole stack: `lifeboat serve --driver qemu` with the
//! guest image. A server keeps running while `lifeboat serve` is SIGKILLed
//! and restarted, and is still managed afterwards; a VM killed outside
//! Lifeboat is noticed within seconds. Needs qemu-system-x86_64 and the guest
//! image (guest/build-image.sh, run by scripts/test-all.sh): fails with a
//! clear message without them, never skips.

mod common;

use std::time::{Duration, Instant};

use common::{free_port, guest_dir, qemu_pid, Api, Serve, VmGuard};
use serde_json::json;

fn start(dir: &std::path::Path, port: u16, guest: &std::path::Path) -> Serve {
    let mut s =
        Serve::start_with_driver(dir, port, "qemu", &["--guest-dir", guest.to_str().unwrap()]);
    s.wait_ready_line();
    s
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn server_outlives_a_killed_manager_and_vm_deaths_are_noticed() {
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let _vms = VmGuard::new();
    let port = free_port();
    let serve = start(dir.path(), port, &guest);
    let c = serve.credentials();
    let (u, p) = (
        c["username"].as_str().unwrap().to_string(),
        c["password"].as_str().unwrap().to_string(),
    );
    let api = Api::login(&serve.url, &u, &p);
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "survivor", "flavor": "m1.nano"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    let s = api.settle(&id, Duration::from_secs(120));
    assert_eq!(s["status"], "ACTIVE", "{s}");
    let instance = s["instance_name"].as_str().unwrap().to_string();
    let pid = qemu_pid(dir.path(), "host1", &instance).expect("a qemu process runs the server");

    // The serial console: a websocket to a getty on the guest's ttyS1.
    let (st, con) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "remote_console", "protocol": "serial", "console_type": "serial"}),
    );
    assert_eq!(st, 200, "{con}");
    let url = con["url"].as_str().unwrap().to_string();
    assert!(
        url.starts_with(&format!("ws://127.0.0.1:{port}/console/serial?token=")),
        "{url}"
    );
    assert!(
        common::console_says(&url, "login:"),
        "no login prompt on the serial console"
    );
    let (st, bad) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "remote_console", "protocol": "vnc", "console_type": "novnc"}),
    );
    assert_eq!(st, 400, "{bad}");

    // SIGKILL the manager: the VM keeps running.
    drop(api);
    serve.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert!(pid_alive(pid), "the VM died with the manager");

    let serve = start(dir.path(), port, &guest);
    let api = Api::login(&serve.url, &u, &p);
    let s = api.get(&format!("/api/v1/servers/{id}"));
    assert_eq!(
        (s["status"].as_str(), s["power_state"].as_i64()),
        (Some("ACTIVE"), Some(1)),
        "{s}"
    );
    assert_eq!(
        qemu_pid(dir.path(), "host1", &instance),
        Some(pid),
        "same VM process after the restart"
    );
    // still managed: the guest agent answers a password change, a reboot works
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "change_password", "admin_pass": "n3w-passw0rd"}),
    );
    assert_eq!(st, 202, "{v}");
    assert_eq!(api.settle(&id, Duration::from_secs(60))["status"], "ACTIVE");
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "reboot", "hard": true}),
    );
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        api.settle(&id, Duration::from_secs(120))["status"],
        "ACTIVE"
    );
    let (st, out) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "console_output", "length": 200}),
    );
    assert_eq!(st, 200);
    assert!(
        out["output"].as_str().unwrap().contains("LIFEBOAT-READY"),
        "{out}"
    );

    // killed outside Lifeboat: noticed within seconds
    let pid = qemu_pid(dir.path(), "host1", &instance).unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = api.get(&format!("/api/v1/servers/{id}"));
        if s["status"] == "SHUTOFF" {
            break;
        }
        assert!(Instant::now() < deadline, "VM death not noticed: {s}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "start"}),
    );
    assert_eq!(st, 202, "{v}");
    assert_eq!(
        api.settle(&id, Duration::from_secs(120))["status"],
        "ACTIVE"
    );
    let (st, _) = api.req(
        reqwest::Method::DELETE,
        &format!("/api/v1/servers/{id}"),
        None,
    );
    assert_eq!(st, 202);
    assert_eq!(
        api.settle(&id, Duration::from_secs(60))["status"],
        "DELETED"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while qemu_pid(dir.path(), "host1", &instance).is_some() {
        assert!(
            Instant::now() < deadline,
            "VM process still there after delete"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn live_migration_between_agents_and_agent_restart() {
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let agent_dir = tempfile::tempdir().unwrap();
    let _vms = VmGuard::new();
    let port = free_port();
    drop(start(dir.path(), port, &guest)); // creates the agent token
    let agent_port = free_port();
    let token = dir.path().join("agent-token");
    // host2 receives migrations on an address that is neither its `--listen`
    // address (127.0.0.2, the default) nor the old hard-coded 127.0.0.1.
    let mig = ["--migration-address", "127.0.0.3"];
    let mut agent =
        common::start_agent_with("host2", "qemu", agent_port, agent_dir.path(), &token, &mig);
    let agent_arg = common::agent_arg("host2", agent_port, agent_dir.path());
    let mut serve = Serve::start_with_driver(
        dir.path(),
        port,
        "qemu",
        &[
            "--guest-dir",
            guest.to_str().unwrap(),
            "--agent",
            &agent_arg,
        ],
    );
    serve.wait_ready_line();
    let c = serve.credentials();
    let api = Api::login(
        &serve.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    );
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "mover", "flavor": "m1.nano", "availability_zone": "nova:host1"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    let s = api.settle(&id, Duration::from_secs(120));
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
    let s = api.settle(&id, Duration::from_secs(120));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host2")),
        "{s}"
    );
    assert!(
        qemu_pid(dir.path(), "host1", &instance).is_none(),
        "source VM gone"
    );
    let remote_pid = |d: &std::path::Path| -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(d.join("vms").join(&instance).join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        std::path::Path::new(&format!("/proc/{pid}"))
            .exists()
            .then_some(pid)
    };
    let pid = remote_pid(agent_dir.path()).expect("VM runs under the host2 agent");
    let cmd = String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ");
    assert!(
        cmd.contains("-incoming tcp:127.0.0.3:"),
        "host2's qemu listened for the migration on its --migration-address: {cmd}"
    );

    // The agent restarts; its VM keeps running and is re-adopted.
    agent.kill().unwrap();
    agent.wait().unwrap();
    assert!(
        remote_pid(agent_dir.path()) == Some(pid),
        "VM survived its agent"
    );
    let mut agent =
        common::start_agent_with("host2", "qemu", agent_port, agent_dir.path(), &token, &mig);
    // The serial console of a VM on host2 is carried through its agent.
    let (st, con) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "remote_console", "protocol": "serial", "console_type": "serial"}),
    );
    assert_eq!(st, 200, "{con}");
    assert!(
        common::console_says(con["url"].as_str().unwrap(), "login:"),
        "no login prompt on the console through the agent"
    );
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "change_password", "admin_pass": "after-restart"}),
    );
    assert_eq!(st, 202, "{v}");
    let s = api.settle(&id, Duration::from_secs(60));
    assert_eq!(s["status"], "ACTIVE", "{s}");
    let (st, out) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "console_output", "length": 50}),
    );
    assert_eq!(st, 200);
    assert!(
        out["output"].as_str().unwrap().contains("lifeboat"),
        "{out}"
    );
    // Cold migration back to host1 (disks copied), confirmed; then live
    // migration to host2 again.
    let act = |body: serde_json::Value, status: &str, host: &str| {
        let (st, v) = api.post(&format!("/api/v1/servers/{id}/actions"), body);
        assert_eq!(st, 202, "{v}");
        let s = api.settle(&id, Duration::from_secs(120));
        assert_eq!(
            (s["status"].as_str(), s["host"].as_str()),
            (Some(status), Some(host)),
            "{s}"
        );
    };
    act(
        json!({"action": "migrate", "host": "host1"}),
        "VERIFY_RESIZE",
        "host1",
    );
    act(json!({"action": "confirm_resize"}), "ACTIVE", "host1");
    assert!(
        remote_pid(agent_dir.path()).is_none(),
        "source VM gone after confirm"
    );
    act(
        json!({"action": "live_migrate", "host": "host2"}),
        "ACTIVE",
        "host2",
    );

    // host2 dies with its VM: the manager marks it down and the server is
    // evacuated (rebuilt from its image) onto host1, keeping its port.
    let port_before =
        api.get(&format!("/api/v1/servers/{id}"))["attachments"][0]["port_id"].clone();
    let pid = remote_pid(agent_dir.path()).unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    api.wait_host_down("host2", Duration::from_secs(30));
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "evacuate"}),
    );
    assert_eq!(st, 202, "{v}");
    let s = api.settle(&id, Duration::from_secs(120));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host1")),
        "{s}"
    );
    assert_eq!(
        s["attachments"][0]["port_id"], port_before,
        "same port after evacuation"
    );
    assert!(
        qemu_pid(dir.path(), "host1", &instance).is_some(),
        "the VM runs on host1"
    );
    let (st, _) = api.req(
        reqwest::Method::DELETE,
        &format!("/api/v1/servers/{id}"),
        None,
    );
    assert_eq!(st, 202);
    assert_eq!(
        api.settle(&id, Duration::from_secs(60))["status"],
        "DELETED"
    );
}
