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

/// MiB of RAM of this machine, as the qemu driver counts it (MemTotal).
fn host_ram_mb() -> u64 {
    let m = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kb: u64 = m
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse().ok())
        .unwrap();
    kb / 1024
}

/// The qemu processes of `instance` whose command line names one of `dirs`
/// (so VMs of other tests on the machine with the same name do not count).
fn qemus_in(instance: &str, dirs: &[&Path]) -> Vec<(u32, String)> {
    qemu_processes(instance)
        .into_iter()
        .filter_map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            dirs.iter()
                .any(|d| cmd.contains(&d.display().to_string()))
                .then_some((pid, cmd))
        })
        .collect()
}

/// A resize to a flavor that does not fit the server's host (host2) moves it to host3,
/// both host agents (`serve`'s own host1 offers no RAM). `lifeboat serve` is SIGKILLed
/// after the disk copy (`resize:resize:copied:after`: host2's copy already gone, host3's
/// not yet resized) and, in a second run, after the power-on on host3
/// (`resize:power_on:after`); after the restart the step re-runs, the resize ends in
/// VERIFY_RESIZE on host3 and is confirmed, with at most one qemu for the server, on
/// host3, and the disk's data (random bytes written on host2 while it was off) and
/// filesystem intact.
#[test]
fn qemu_cross_host_resize_survives_sigkill_after_the_copy_and_after_power_on() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    struct Agent(std::process::Child);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let ram = host_ram_mb();
    for (step, point) in [("resize", "resize:copied"), ("power_on", "power_on")] {
        let dir = tempfile::tempdir().unwrap();
        let (dir2, dir3) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let _vms = VmGuard::new();
        let token = dir.path().join("agent-token");
        std::fs::write(&token, "qemu-crash-agent-token").unwrap();
        // host2 has room for m1.nano (128 MiB) but not for the new flavor (512 MiB).
        let host2_reserve = (ram - 300).to_string();
        let (port2, port3) = (free_port(), free_port());
        let _agent2 = Agent(common::start_agent_with(
            "host2",
            "qemu",
            port2,
            dir2.path(),
            &token,
            &["--reserved-host-memory-mb", &host2_reserve],
        ));
        let _agent3 = Agent(common::start_agent(
            "host3",
            "qemu",
            port3,
            dir3.path(),
            &token,
        ));
        let (arg2, arg3) = (
            common::agent_arg("host2", port2, dir2.path()),
            common::agent_arg("host3", port3, dir3.path()),
        );
        let host1_reserve = ram.to_string();
        let args = [
            "--agent",
            &arg2,
            "--agent",
            &arg3,
            "--reserved-host-memory-mb",
            &host1_reserve,
        ];
        let port = free_port();
        let kind_step = format!("resize:{point}:after");
        let first = qemu_serve(dir.path(), port, &hooks(&kind_step), &args);
        let api = login(&first);
        let (st, v) = api.post(
            "/api/v1/flavors",
            json!({"id": "big", "name": "m1.big", "vcpus": 1, "ram": 512, "disk": 1}),
        );
        assert_eq!(st, 201, "{v}");
        let (st, v) = api.post(
            "/api/v1/servers",
            json!({"name": "rs", "flavor": "m1.nano", "availability_zone": "nova:host2"}),
        );
        assert_eq!(st, 202, "{v}");
        let id = v[0]["server"]["id"].as_str().unwrap().to_string();
        let s = api.settle(&id, Duration::from_secs(240));
        assert_eq!(
            (s["status"].as_str(), s["host"].as_str()),
            (Some("ACTIVE"), Some("host2")),
            "{s}"
        );
        let instance = s["instance_name"].as_str().unwrap().to_string();
        let (vm2, vm3) = (
            dir2.path().join("vms").join(&instance),
            dir3.path().join("vms").join(&instance),
        );
        let act = |api: &Api, body: Value| {
            let (st, v) = api.post(&format!("/api/v1/servers/{id}/actions"), body.clone());
            assert!(st == 202 || st == 200, "{body} -> {st} {v}");
        };

        // The first run resizes the server while it is off, with random bytes near the
        // end of its disk (free blocks of the guest's ext2) to find on host3.
        let marker = (step == "resize").then(|| {
            act(&api, json!({"action": "stop"}));
            assert_eq!(
                api.settle(&id, Duration::from_secs(120))["status"],
                "SHUTOFF"
            );
            let root = vm2.join("root.qcow2");
            let (size, _) = common::read_disk(&root, 0, 512);
            let bytes: Vec<u8> = (0..(1 << 20)).map(|_| rand::random::<u8>()).collect();
            common::write_disk(&root, size - (3 << 20), &bytes);
            (size - (3 << 20), bytes)
        });
        act(&api, json!({"action": "resize", "flavor": "big"}));
        first.wait_stderr(
            &format!("LIFEBOAT-HANG {kind_step}"),
            Duration::from_secs(300),
        );
        drop(api);
        first.kill9();
        assert!(
            !vm2.exists(),
            "host2's copy is gone at the kill ({kind_step})"
        );
        let dirs = [dir.path(), dir2.path(), dir3.path()];
        assert!(
            qemus_in(&instance, &dirs).len() <= 1,
            "{:?}",
            qemus_in(&instance, &dirs)
        );

        let second = qemu_serve(dir.path(), port, &[], &args);
        let api = login(&second);
        let s = api.settle(&id, Duration::from_secs(300));
        assert_eq!(
            (
                s["status"].as_str(),
                s["host"].as_str(),
                s["flavor"]["id"].as_str()
            ),
            (Some("VERIFY_RESIZE"), Some("host3"), Some("big")),
            "after the kill at {kind_step}: {s}"
        );
        assert_eq!(attempts(&api, &id, "resize", step), 2, "{step} re-ran");
        let on3 = qemus_in(&instance, &dirs);
        match &marker {
            Some((at, bytes)) => {
                assert!(on3.is_empty(), "the stopped server has no qemu: {on3:?}");
                let (_, got) = common::read_disk(&vm3.join("root.qcow2"), *at, bytes.len());
                assert!(
                    got == *bytes,
                    "the data written on host2 is on host3's disk"
                );
            }
            None => {
                assert_eq!(on3.len(), 1, "one qemu: {on3:?}");
                assert!(
                    on3[0].1.contains(&dir3.path().display().to_string()),
                    "it runs on host3: {on3:?}"
                );
            }
        }
        act(&api, json!({"action": "confirm_resize"}));
        let want = if marker.is_some() {
            "SHUTOFF"
        } else {
            "ACTIVE"
        };
        assert_eq!(api.settle(&id, Duration::from_secs(120))["status"], want);
        if marker.is_some() {
            act(&api, json!({"action": "start"}));
            assert_eq!(
                api.settle(&id, Duration::from_secs(240))["status"],
                "ACTIVE"
            );
        }
        let on3 = qemus_in(&instance, &dirs);
        assert_eq!(on3.len(), 1, "exactly one qemu after {kind_step}: {on3:?}");
        assert!(
            on3[0].1.contains(&dir3.path().display().to_string()),
            "{on3:?}"
        );
        assert!(!vm2.exists(), "nothing left on host2");
        let console = std::fs::read_to_string(vm3.join("serial.log")).unwrap();
        assert!(
            console.contains("mounted /dev/vda at /mnt/data")
                && !console.contains("formatting blank"),
            "the guest on host3 mounted its own filesystem: {console}"
        );
    }
}
