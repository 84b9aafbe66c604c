//! The test VM sweeper (`common/vms.rs`): a test process SIGKILLed while
//! its `lifeboat serve --driver qemu` runs a VM leaves the daemonized qemu
//! (and the orphaned serve) behind; the next real-VM test's start sweeps
//! them, because the registry names the dead test's data dir. The test
//! re-runs itself as that child process (`LIFEBOAT_SWEEP_CHILD_DIR`).

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{free_port, guest_dir, processes_in, qemu_processes, Api, Serve, VmGuard};
use serde_json::json;

const CHILD_DIR: &str = "LIFEBOAT_SWEEP_CHILD_DIR";
const TEST: &str = "a_sigkilled_test_leaves_no_vm_behind";

/// The child: boots a real VM in `dir`, says so, then waits to be killed.
fn child(dir: &Path) -> ! {
    let _vms = VmGuard::new(); // never dropped: the parent SIGKILLs us
    let guest = guest_dir();
    let data = dir.join("data");
    let mut serve = Serve::start_with_driver(
        &data,
        free_port(),
        "qemu",
        &["--guest-dir", guest.to_str().unwrap()],
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
        json!({"name": "leak", "flavor": "m1.nano"}),
    );
    assert_eq!(st, 202, "{v}");
    let s = api.settle(
        v[0]["server"]["id"].as_str().unwrap(),
        Duration::from_secs(240),
    );
    assert_eq!(s["status"], "ACTIVE", "{s}");
    std::fs::write(dir.join("READY"), s["instance_name"].as_str().unwrap()).unwrap();
    std::mem::forget(serve);
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_sigkilled_test_leaves_no_vm_behind() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(&PathBuf::from(dir));
    }
    guest_dir();
    let _vms = VmGuard::new();
    let top = tempfile::tempdir().unwrap();
    let data = top.path().join("data");
    let mut kid = Child(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, top.path())
            .spawn()
            .unwrap(),
    );
    let ready = top.path().join("READY");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ready.exists() {
        if let Some(st) = kid.0.try_wait().unwrap() {
            panic!("the child test exited before its VM ran: {st}");
        }
        assert!(
            Instant::now() < deadline,
            "the child's VM never became ACTIVE"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let instance = std::fs::read_to_string(&ready).unwrap();
    // SIGKILL: no Drop runs in the child
    kid.0.kill().unwrap();
    kid.0.wait().unwrap();
    let leaked = qemu_processes(&format!("{}/", data.display()));
    assert_eq!(leaked.len(), 1, "the killed test left its VM {instance}");
    assert!(
        processes_in(&data).len() >= 2,
        "and its lifeboat serve: {:?}",
        processes_in(&data)
    );

    // what every real-VM test does first
    let swept = common::sweep_stale();
    assert!(swept >= 2, "swept {swept}");
    assert!(qemu_processes(&instance)
        .iter()
        .all(|p| !leaked.contains(p)));
    assert_eq!(
        processes_in(&data),
        Vec::<u32>::new(),
        "nothing runs in the dead test's dir"
    );
    assert!(!data.exists(), "the dead test's data dir is removed");
    let registry: Vec<String> = std::fs::read_dir(common::registry_dir())
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|t| t.contains(&data.display().to_string()))
        .collect();
    assert!(
        registry.is_empty(),
        "its registry entry is gone: {registry:?}"
    );

    // a live test's VMs are never swept: this process is alive
    let mine = tempfile::tempdir().unwrap();
    common::register(mine.path());
    let sleeper = Child(
        std::process::Command::new("sh")
            .args(["-c", "sleep 600; :", "sh"])
            .arg(mine.path().join("x"))
            .spawn()
            .unwrap(),
    );
    common::sweep_stale();
    assert_eq!(processes_in(mine.path()), vec![sleeper.0.id()]);
}
