//! Test VMs that outlive their test. QEMU VMs are daemonized: they survive
//! the `lifeboat serve` or agent that started them, and the test process
//! too when it is SIGKILLed or panics before a Drop guard runs. So every
//! data dir a test starts a manager or agent in is recorded in a registry
//! (one file per data dir under `$TMPDIR/lifeboat-test-registry`, naming
//! the test process by pid and start time), and [`sweep_stale`] kills every
//! process whose command line names the data dir of a test process that no
//! longer runs (its qemus, and the serve/agent left orphaned), then removes
//! that data dir. [`VmGuard`] sweeps when a real-VM test starts and, when
//! the test ends (also by panic), kills what its own data dirs still run.

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use serde_json::json;

thread_local! {
    /// Data dirs registered by this thread (a test runs on one thread).
    static MINE: RefCell<Vec<PathBuf>> = const { RefCell::new(vec![]) };
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

fn entry_path(dir: &Path) -> PathBuf {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut h);
    registry_dir().join(format!("{}-{:016x}.json", std::process::id(), h.finish()))
}

/// Records that this test process starts a manager or agent in `dir`.
pub fn register(dir: &Path) {
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir().unwrap().join(dir)
    };
    let me = std::process::id();
    let entry = json!({"pid": me, "start": start_time(me), "dir": dir});
    std::fs::create_dir_all(registry_dir()).expect("test registry dir");
    std::fs::write(entry_path(&dir), entry.to_string()).expect("test registry entry");
    MINE.with(|m| {
        let mut m = m.borrow_mut();
        if !m.contains(&dir) {
            m.push(dir);
        }
    });
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

/// For every registered data dir whose test process is gone: kills the
/// processes naming it, removes it (when it is under the temp dir) and its
/// entry. Returns how many processes were killed.
pub fn sweep_stale() -> usize {
    let Ok(entries) = std::fs::read_dir(registry_dir()) else {
        return 0;
    };
    let mut killed = 0;
    for e in entries.flatten() {
        let path = e.path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let (Some(pid), Some(dir)) = (v["pid"].as_u64(), v["dir"].as_str()) else {
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let alive = start_time(pid as u32).is_some_and(|t| Some(t) == v["start"].as_u64());
        if alive {
            continue;
        }
        let dir = PathBuf::from(dir);
        let n = kill_processes_of(&dir);
        if n > 0 {
            eprintln!(
                "test VM sweeper: killed {n} process(es) left in {} by test process {pid}",
                dir.display()
            );
        }
        killed += n;
        if dir.starts_with(std::env::temp_dir()) && dir != std::env::temp_dir() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// Put first in a real-VM test (`let _vms = VmGuard::new();`): sweeps what
/// killed tests left, and on drop (pass or panic) kills what the data dirs
/// this test registered still run, and forgets them.
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
        let dirs: Vec<PathBuf> = MINE.with(|m| m.borrow_mut().split_off(self.0));
        for d in dirs {
            kill_processes_of(&d);
            let _ = std::fs::remove_file(entry_path(&d));
        }
    }
}
