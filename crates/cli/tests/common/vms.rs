//! Test VMs that outlive their test. QEMU VMs are daemonized: they survive
//! the `lifeboat serve` or agent that started them, and the test process
//! too when it is SIGKILLed or panics before a Drop guard runs. So every
//! data dir a test starts a manager or agent in is recorded in a registry
//! (one file per data dir under `$TMPDIR/lifeboat-test-registry`, naming
//! the test process by pid and start time), and [`sweep_stale`] kills every
//! process whose command line names the data dir of a test process that no
//! longer runs (its qemus, and the serve/agent left orphaned), then removes
//! that data dir. Network tests also record the host data planes (their
//! namespaces and dnsmasqs, [`register_dataplane`]) and namespaces
//! ([`register_netns`]) they make, which the sweep removes after the
//! processes. [`VmGuard`] sweeps when a real-VM test starts and, when the
//! test ends (also by panic), cleans up what it registered itself.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde_json::json;

/// Something a test made that must not outlive it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    /// A manager or agent data dir: the processes naming it, then the dir.
    Dir(PathBuf),
    /// A host data plane (`lifeboat_hostnet::cleanup_host`: its dnsmasqs and namespaces).
    Dataplane(String),
    /// A network namespace.
    Netns(String),
}

impl Owned {
    fn key(&self) -> String {
        match self {
            Owned::Dir(d) => d.display().to_string(),
            Owned::Dataplane(h) => format!("dataplane:{h}"),
            Owned::Netns(n) => format!("netns:{n}"),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Owned::Dir(d) => json!({ "dir": d }),
            Owned::Dataplane(h) => json!({ "dataplane": h }),
            Owned::Netns(n) => json!({ "netns": n }),
        }
    }

    fn from_json(v: &serde_json::Value) -> Option<Owned> {
        if let Some(d) = v["dir"].as_str() {
            Some(Owned::Dir(PathBuf::from(d)))
        } else if let Some(h) = v["dataplane"].as_str() {
            Some(Owned::Dataplane(h.to_string()))
        } else {
            v["netns"].as_str().map(|n| Owned::Netns(n.to_string()))
        }
    }

    /// Processes first, then data planes, then namespaces.
    fn order(&self) -> u8 {
        match self {
            Owned::Dir(_) => 0,
            Owned::Dataplane(_) => 1,
            Owned::Netns(_) => 2,
        }
    }

    /// Cleans it up; returns how many processes were killed.
    fn clean(&self, remove_dir: bool) -> usize {
        match self {
            Owned::Dir(d) => {
                let n = kill_processes_of(d);
                if remove_dir && d.starts_with(std::env::temp_dir()) && *d != std::env::temp_dir() {
                    let _ = std::fs::remove_dir_all(d);
                }
                n
            }
            Owned::Dataplane(h) => {
                let _ = lifeboat_hostnet::cleanup_host(h);
                0
            }
            Owned::Netns(n) => {
                let _ = lifeboat_hostnet::netns::delete(n);
                0
            }
        }
    }
}

thread_local! {
    /// What this thread registered (a test runs on one thread).
    static MINE: RefCell<Vec<Owned>> = const { RefCell::new(vec![]) };
}

/// The registry directory (`LIFEBOAT_TEST_REGISTRY`, default
/// `$TMPDIR/lifeboat-test-registry`).
pub fn registry_dir() -> PathBuf {
    std::env::var_os("LIFEBOAT_TEST_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("lifeboat-test-registry"))
}

/// A process's start time in clock ticks since boot (`/proc/PID/stat`
/// field 22), which tells a live owner from a reused pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // the command name may hold spaces and parens: fields start after the last ')'
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

fn entry_path(o: &Owned) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    o.key().hash(&mut h);
    registry_dir().join(format!("{}-{:016x}.json", std::process::id(), h.finish()))
}

fn record(o: Owned) {
    let me = std::process::id();
    let mut entry = o.json();
    entry["pid"] = json!(me);
    entry["start"] = json!(start_time(me));
    std::fs::create_dir_all(registry_dir()).expect("test registry dir");
    std::fs::write(entry_path(&o), entry.to_string()).expect("test registry entry");
    MINE.with(|m| {
        let mut m = m.borrow_mut();
        if !m.contains(&o) {
            m.push(o);
        }
    });
}

/// Records that this test process starts a manager or agent in `dir`.
pub fn register(dir: &Path) {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap().join(dir)
    };
    record(Owned::Dir(dir));
}

/// Records that this test process makes the data plane of host `host`
/// (call before a manager or agent opens it).
pub fn register_dataplane(host: &str) {
    record(Owned::Dataplane(host.to_string()));
}

/// Records that this test process makes the namespace `name` (call before
/// creating it).
pub fn register_netns(name: &str) {
    record(Owned::Netns(name.to_string()));
}

/// Names a test registers as it adds them (data planes, namespaces or
/// fabrics, whose namespace is `lbf-NAME`), so a killed test's are swept.
#[derive(Debug)]
pub struct Tracked {
    items: Vec<String>,
    register: fn(&str),
}

impl Tracked {
    /// Host data planes.
    pub fn dataplanes() -> Tracked {
        Tracked {
            items: vec![],
            register: register_dataplane,
        }
    }

    /// Network namespaces.
    pub fn namespaces() -> Tracked {
        Tracked {
            items: vec![],
            register: register_netns,
        }
    }

    /// VXLAN fabrics (their namespace).
    pub fn fabrics() -> Tracked {
        Tracked {
            items: vec![],
            register: |f| register_netns(&lifeboat_hostnet::names::fabric_ns(f)),
        }
    }

    /// Registers `name`, then keeps it.
    pub fn push(&mut self, name: String) {
        (self.register)(&name);
        self.items.push(name);
    }

    /// [`Tracked::push`] for each.
    pub fn extend(&mut self, names: impl IntoIterator<Item = String>) {
        for n in names {
            self.push(n);
        }
    }
}

impl<'a> IntoIterator for &'a Tracked {
    type Item = &'a String;
    type IntoIter = std::slice::Iter<'a, String>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// Pids (not this process) whose command line contains `needle`.
pub fn processes_naming(needle: &str) -> Vec<u32> {
    processes_where(|cmd| String::from_utf8_lossy(cmd).contains(needle))
}

/// Pids (not this process) whose command line names a path in `dir` or
/// `dir` itself (not merely a path starting with the same characters).
pub fn processes_in(dir: &Path) -> Vec<u32> {
    let d = dir.display().to_string();
    let (slash, nul) = (format!("{d}/"), format!("{d}\0"));
    processes_where(|cmd| {
        let c = String::from_utf8_lossy(cmd);
        c.contains(&slash) || c.contains(&nul)
    })
}

fn processes_where(matches: impl Fn(&[u8]) -> bool) -> Vec<u32> {
    let me = std::process::id();
    let mut out = vec![];
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if matches(&cmd) {
            out.push(pid);
        }
    }
    out
}

/// qemu processes whose command line contains `needle` (an instance name
/// or a data dir).
pub fn qemu_processes(needle: &str) -> Vec<u32> {
    processes_naming(needle)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.starts_with("qemu-system") || c.contains("/qemu-system")
            })
        })
        .collect()
}

/// The live qemu of `instance` on `host` of a serve data dir, from its pid
/// file (checked against the process's command line).
pub fn qemu_pid(data_dir: &Path, host: &str, instance: &str) -> Option<u32> {
    let pid_file = data_dir
        .join("hosts")
        .join(host)
        .join("vms")
        .join(instance)
        .join("pid");
    let pid: u32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline)
        .contains(instance)
        .then_some(pid)
}

fn kill9(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

/// Kills every process naming `dir` and waits (up to 10 s) until they are gone.
pub fn kill_processes_of(dir: &Path) -> usize {
    let pids = processes_in(dir);
    for pid in &pids {
        kill9(*pid);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !processes_in(dir).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    pids.len()
}

/// For every registry entry whose test process is gone: kills the
/// processes naming its data dir and removes the dir (when it is under the
/// temp dir), then removes its data planes and namespaces, then the
/// entries. Returns how many processes were killed.
pub fn sweep_stale() -> usize {
    let Ok(entries) = std::fs::read_dir(registry_dir()) else {
        return 0;
    };
    let mut stale: Vec<(Owned, u64, PathBuf)> = vec![];
    for e in entries.flatten() {
        let path = e.path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let parsed = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| Some((Owned::from_json(&v)?, v["pid"].as_u64()?, v)));
        let Some((owned, pid, v)) = parsed else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let alive = start_time(pid as u32).is_some_and(|t| Some(t) == v["start"].as_u64());
        if !alive {
            stale.push((owned, pid, path));
        }
    }
    stale.sort_by_key(|(o, _, _)| o.order());
    let mut killed = 0;
    for (owned, pid, path) in stale {
        let n = owned.clean(true);
        if n > 0 {
            eprintln!(
                "test VM sweeper: killed {n} process(es) left in {} by test process {pid}",
                owned.key()
            );
        }
        killed += n;
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// Put first in a real-VM test (`let _vms = VmGuard::new();`): sweeps what
/// killed tests left, and on drop (pass or panic) kills what the data dirs
/// this test registered still run, removes the data planes and namespaces
/// it registered, and forgets them.
pub struct VmGuard(usize);

impl VmGuard {
    /// Sweeps stale test VMs, then starts guarding this test's.
    pub fn new() -> VmGuard {
        sweep_stale();
        VmGuard(MINE.with(|m| m.borrow().len()))
    }
}

impl Default for VmGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for VmGuard {
    fn drop(&mut self) {
        let mut mine: Vec<Owned> = MINE.with(|m| m.borrow_mut().split_off(self.0));
        mine.sort_by_key(Owned::order);
        for o in mine {
            // the test's own TempDirs remove its dirs
            o.clean(false);
            let _ = std::fs::remove_file(entry_path(&o));
        }
    }
}
