//! The test VM sweeper (`common/vms.rs`): a test process SIGKILLed while
//! its `lifeboat serve --driver qemu` runs a VM leaves the daemonized qemu
//! (and the orphaned serve) behind; the next real-VM test's start sweeps
//! them, because the registry names the dead test's data dir. The test
//! re-runs itself as that child process (`LIFEBOAT_SWEEP_CHILD_DIR`). The
//! same for a network test's data plane (namespaces, dnsmasq) and namespace.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{free_port, guest_dir, processes_in, qemu_processes, Api, Serve, VmGuard};
use serde_json::json;

const CHILD_DIR: &str = "LIFEBOAT_SWEEP_CHILD_DIR";

/// The two tests take turns: each one's sweep would also sweep what the
/// other's killed child left before that test looked at it.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn my_turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}
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
    let _turn = my_turn();
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
    let mut sleeper = Child(
        std::process::Command::new("sh")
            .args(["-c", "sleep 600; :", "sh"])
            .arg(mine.path().join("x"))
            .spawn()
            .unwrap(),
    );
    // spawn returns once the child has exec'd, but its new argv (what the
    // sweep matches) is set up a moment later: wait until it names the dir
    let deadline = Instant::now() + Duration::from_secs(10);
    while processes_in(mine.path()) != vec![sleeper.0.id()] {
        assert!(
            Instant::now() < deadline,
            "the sleeper never showed with its dir: {:?}",
            processes_in(mine.path())
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    common::sweep_stale();
    assert!(
        sleeper.0.try_wait().unwrap().is_none(),
        "a live test's process was swept"
    );
    assert_eq!(processes_in(mine.path()), vec![sleeper.0.id()]);
}

const NET_CHILD: &str = "LIFEBOAT_SWEEP_NET_CHILD";
const NET_TEST: &str = "a_sigkilled_network_test_leaves_no_namespace_or_dnsmasq_behind";

/// The network child: registers a host data plane and a namespace the way
/// net_vms does, makes them (the data plane's namespaces and a daemonized
/// dnsmasq with its pid file where hostnet keeps it), then waits to be killed.
fn net_child(tag: &str, ready: &Path) -> ! {
    let _vms = VmGuard::new(); // never dropped: the parent SIGKILLs us
    let host = format!("tsw{tag}");
    let mut dataplanes = common::Tracked::dataplanes();
    let mut namespaces = common::Tracked::namespaces();
    dataplanes.push(host.clone());
    namespaces.push(format!("lbt-sw{tag}"));
    let main = lifeboat_hostnet::names::host_ns(&host);
    for ns in [main.clone(), format!("{main}-x1"), format!("lbt-sw{tag}")] {
        lifeboat_hostnet::netns::create(&ns).unwrap();
    }
    let run = PathBuf::from("/run/lifeboat/hostnet")
        .join(&host)
        .join("n1");
    std::fs::create_dir_all(&run).unwrap();
    let st = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &main,
            "dnsmasq",
            "--port=0",
            "--conf-file=/dev/null",
        ])
        .arg(format!("--pid-file={}", run.join("pid").display()))
        .status()
        .unwrap();
    assert!(st.success(), "dnsmasq: {st}");
    std::fs::write(ready, "").unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

fn dnsmasq_of(pid_file: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "dnsmasq" && running(pid)).then_some(pid)
}

/// The process exists and is not a zombie waiting for its reaper.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .is_some_and(|zombie| !zombie)
}

/// A network test SIGKILLed after making a host data plane (namespaces and
/// a dnsmasq) and a namespace of its own leaves them running; the next
/// real-VM test's sweep removes them all, as net_vms registers them.
#[test]
fn a_sigkilled_network_test_leaves_no_namespace_or_dnsmasq_behind() {
    let tag = (std::process::id() % 100_000).to_string();
    if let Some(t) = std::env::var_os(NET_CHILD) {
        let t = t.to_string_lossy().to_string();
        net_child(
            &t,
            &PathBuf::from(std::env::var("LIFEBOAT_SWEEP_NET_READY").unwrap()),
        );
    }
    // SAFETY: geteuid has no preconditions.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the sweeper's network test needs root (namespaces)"
    );
    for t in ["ip", "dnsmasq"] {
        assert!(
            std::process::Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_ok_and(|o| o.status.success()),
            "{t} is not installed: run scripts/setup.sh"
        );
    }
    let _turn = my_turn();
    let top = tempfile::tempdir().unwrap();
    let ready = top.path().join("READY");
    let mut kid = Child(
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NET_TEST, "--nocapture", "--test-threads=1"])
            .env(NET_CHILD, &tag)
            .env("LIFEBOAT_SWEEP_NET_READY", &ready)
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        if let Some(st) = kid.0.try_wait().unwrap() {
            panic!("the child test exited before it made its network: {st}");
        }
        assert!(
            Instant::now() < deadline,
            "the child never made its network"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kid.0.kill().unwrap();
    kid.0.wait().unwrap();
    let host = format!("tsw{tag}");
    let main = lifeboat_hostnet::names::host_ns(&host);
    let pid_file = PathBuf::from("/run/lifeboat/hostnet")
        .join(&host)
        .join("n1/pid");
    let namespaces = [main.clone(), format!("{main}-x1"), format!("lbt-sw{tag}")];
    let dnsmasq = dnsmasq_of(&pid_file).expect("the killed test left its dnsmasq");
    for ns in &namespaces {
        assert!(
            lifeboat_hostnet::netns::exists(ns),
            "the killed test left {ns}"
        );
    }

    common::sweep_stale();
    for ns in &namespaces {
        assert!(!lifeboat_hostnet::netns::exists(ns), "{ns} is swept");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while running(dnsmasq) {
        assert!(Instant::now() < deadline, "dnsmasq {dnsmasq} still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
    let registry: Vec<String> = std::fs::read_dir(common::registry_dir())
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|t| t.contains(&host) || t.contains(&format!("lbt-sw{tag}")))
        .collect();
    assert!(
        registry.is_empty(),
        "its registry entries are gone: {registry:?}"
    );
}
