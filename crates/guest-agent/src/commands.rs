//! The agent's commands. Each returns a JSON result or an error message, plus
//! an action to perform after the answer has been sent (power off, reboot).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::obj;
use crate::shadow as crypt;
use crate::sys;
use serde_json::Value;

/// Maximum bytes of maintenance output returned (the tail is kept).
pub const MAX_OUTPUT: usize = 64 * 1024;
const DEFAULT_MAINT_TIMEOUT_S: u64 = 300;
const MAX_MAINT_TIMEOUT_S: u64 = 3600;

/// What to do once the answer is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum After {
    Nothing,
    PowerOff,
    Reboot,
}

/// Static configuration of the running agent.
pub struct Ctx {
    /// Milliseconds from kernel start to agent start (`/proc/uptime`).
    pub boot_ms: u64,
    pub started: Instant,
    /// Whether `shutdown`/`reboot` may act (off in `--stdio` test mode).
    pub allow_power: bool,
    pub maintenance_dir: PathBuf,
    pub shadow_path: PathBuf,
}

pub type CmdResult = Result<(Value, After), String>;

fn done(v: Value) -> CmdResult {
    Ok((v, After::Nothing))
}

/// Dispatches one command. `hello` is handled by the caller.
pub fn handle(cmd: &str, args: &Value, ctx: &Ctx) -> CmdResult {
    match cmd {
        "ping" => done(obj(vec![("pong", true.into())])),
        "health" => done(health(ctx)),
        "exec-info" => done(exec_info()),
        "disk-usage" => done(disk_usage()),
        "set-password" => set_password(args, ctx).map(|v| (v, After::Nothing)),
        "run-maintenance" => {
            run_maintenance(args, &ctx.maintenance_dir).map(|v| (v, After::Nothing))
        }
        "fsfreeze" => fsfreeze().map(|v| (v, After::Nothing)),
        "fsthaw" => done(fsthaw()),
        "shutdown" | "reboot" => {
            if !ctx.allow_power {
                return Err(format!("{cmd} is disabled in this mode (--stdio)"));
            }
            // A frozen filesystem would block sync(2) forever: thaw first.
            let thawed = fsthaw();
            let (action, after) = if cmd == "shutdown" {
                ("poweroff", After::PowerOff)
            } else {
                ("reboot", After::Reboot)
            };
            Ok((
                obj(vec![
                    ("action", action.into()),
                    (
                        "thawed",
                        thawed.get("thawed").cloned().unwrap_or(Value::Null),
                    ),
                ]),
                after,
            ))
        }
        other => Err(format!("unknown command {other:?}")),
    }
}

/// Runs the post-answer action: sync, unmount (or make read-only) the disk
/// filesystems, sync again, then busybox `poweroff -f` / `reboot -f`.
pub fn perform(after: After) {
    let verb = match after {
        After::Nothing => return,
        After::PowerOff => "poweroff",
        After::Reboot => "reboot",
    };
    sys::sync_all();
    let (disks, _) = freeze_plan(&mounts());
    for m in disks.iter().rev() {
        let unmounted = Command::new("umount")
            .arg(&m.mountpoint)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("mount")
                .args(["-o", "remount,ro", &m.mountpoint])
                .stderr(Stdio::null())
                .status();
        }
    }
    sys::sync_all();
    for prog in ["/bin/busybox", "busybox"] {
        if let Err(e) = Command::new(prog).args([verb, "-f"]).status() {
            eprintln!("lifeboat-guest-agent: {prog} {verb} -f: {e}");
        }
    }
    // Still running: try the plain applet name from PATH.
    let _ = Command::new(verb).arg("-f").status();
}

fn read_trim(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// Seconds since boot from `/proc/uptime`.
pub fn uptime_s() -> Option<f64> {
    read_trim("/proc/uptime")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Parses `/proc/meminfo` text into (key, bytes) pairs.
fn meminfo(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            let mut it = rest.split_whitespace();
            let n: u64 = it.next()?.parse().ok()?;
            let mult = if it.next() == Some("kB") { 1024 } else { 1 };
            Some((k.trim().to_string(), n * mult))
        })
        .collect()
}

fn health(ctx: &Ctx) -> Value {
    let load = read_trim("/proc/loadavg").unwrap_or_default();
    let f: Vec<&str> = load.split_whitespace().collect();
    let num = |i: usize| -> Value { f.get(i).and_then(|s| s.parse::<f64>().ok()).into() };
    let (running, total) = f
        .get(3)
        .and_then(|s| s.split_once('/'))
        .map(|(a, b)| (a.parse::<u64>().ok(), b.parse::<u64>().ok()))
        .unwrap_or((None, None));
    let mem = meminfo(&fs::read_to_string("/proc/meminfo").unwrap_or_default());
    let m = |k: &str| -> Value { mem.iter().find(|(n, _)| n == k).map(|(_, v)| *v).into() };
    let cpus = thread::available_parallelism().map(|n| n.get() as u64).ok();
    obj(vec![
        ("uptime_s", uptime_s().into()),
        ("agent_uptime_s", ctx.started.elapsed().as_secs_f64().into()),
        ("load1", num(0)),
        ("load5", num(1)),
        ("load15", num(2)),
        ("procs_running", running.into()),
        ("procs_total", total.into()),
        ("cpus", cpus.into()),
        ("mem_total_bytes", m("MemTotal")),
        ("mem_free_bytes", m("MemFree")),
        ("mem_available_bytes", m("MemAvailable")),
        ("mem_buffers_bytes", m("Buffers")),
        ("mem_cached_bytes", m("Cached")),
        ("swap_total_bytes", m("SwapTotal")),
        ("swap_free_bytes", m("SwapFree")),
    ])
}

fn exec_info() -> Value {
    let os = fs::read_to_string("/etc/os-release").ok().and_then(|t| {
        t.lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
    });
    obj(vec![
        (
            "kernel_release",
            read_trim("/proc/sys/kernel/osrelease").into(),
        ),
        (
            "kernel_version",
            read_trim("/proc/sys/kernel/version").into(),
        ),
        ("hostname", read_trim("/proc/sys/kernel/hostname").into()),
        ("arch", std::env::consts::ARCH.into()),
        (
            "boot_id",
            read_trim("/proc/sys/kernel/random/boot_id").into(),
        ),
        ("os", os.into()),
        ("agent_version", env!("CARGO_PKG_VERSION").into()),
    ])
}

// ---------------------------------------------------------------- mounts

#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub source: String,
    pub mountpoint: String,
    pub fstype: String,
}

/// Kernel pseudo filesystems that have no disk usage worth reporting.
const PSEUDO_FS: &[&str] = &[
    "proc",
    "sysfs",
    "devtmpfs",
    "devpts",
    "securityfs",
    "cgroup",
    "cgroup2",
    "pstore",
    "bpf",
    "debugfs",
    "tracefs",
    "mqueue",
    "hugetlbfs",
    "configfs",
    "fusectl",
    "binfmt_misc",
    "autofs",
    "efivarfs",
    "nsfs",
    "rpc_pipefs",
];

/// Undoes the octal escapes (`\040` etc.) of `/proc/mounts`.
fn unescape_mount_field(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/mounts`; a later mount on the same mountpoint hides earlier ones.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let m = Mount {
            source: unescape_mount_field(f[0]),
            mountpoint: unescape_mount_field(f[1]),
            fstype: f[2].to_string(),
        };
        out.retain(|o| o.mountpoint != m.mountpoint);
        out.push(m);
    }
    out
}

fn mounts() -> Vec<Mount> {
    parse_mounts(&fs::read_to_string("/proc/mounts").unwrap_or_default())
}

fn disk_usage() -> Value {
    let mut list = Vec::new();
    for m in mounts() {
        if PSEUDO_FS.contains(&m.fstype.as_str()) {
            continue;
        }
        let entry = match sys::stat_vfs(Path::new(&m.mountpoint)) {
            Ok(st) => {
                let fr = st.fragment_size;
                obj(vec![
                    ("mountpoint", m.mountpoint.into()),
                    ("device", m.source.into()),
                    ("fstype", m.fstype.into()),
                    ("total_bytes", (st.blocks * fr).into()),
                    (
                        "used_bytes",
                        (st.blocks.saturating_sub(st.blocks_free) * fr).into(),
                    ),
                    ("free_bytes", (st.blocks_free * fr).into()),
                    ("avail_bytes", (st.blocks_avail * fr).into()),
                    ("total_inodes", st.files.into()),
                    ("free_inodes", st.files_free.into()),
                    ("read_only", st.read_only.into()),
                ])
            }
            Err(e) => obj(vec![
                ("mountpoint", m.mountpoint.into()),
                ("device", m.source.into()),
                ("fstype", m.fstype.into()),
                ("error", e.to_string().into()),
            ]),
        };
        list.push(entry);
    }
    obj(vec![("filesystems", Value::Array(list))])
}

// ---------------------------------------------------------------- freeze

/// Mountpoints frozen by this agent, in freeze order.
static FROZEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Splits mounts into freezable ones (block-device backed, not `/`, one per
/// device) and skipped ones with a reason.
pub fn freeze_plan(mounts: &[Mount]) -> (Vec<Mount>, Vec<(Mount, String)>) {
    let mut take: Vec<Mount> = Vec::new();
    let mut skip = Vec::new();
    for m in mounts {
        if m.mountpoint == "/" {
            let why = if matches!(m.fstype.as_str(), "rootfs" | "tmpfs" | "ramfs") {
                "root is an initramfs in RAM (rootfs); it cannot be frozen and holds no disk data"
            } else {
                "the root filesystem is never frozen (the agent runs from it)"
            };
            skip.push((m.clone(), why.to_string()));
        } else if !m.source.starts_with("/dev/") || PSEUDO_FS.contains(&m.fstype.as_str()) {
            continue;
        } else if take.iter().any(|t| t.source == m.source) {
            skip.push((m.clone(), "same device already listed".to_string()));
        } else {
            take.push(m.clone());
        }
    }
    (take, skip)
}

fn fsfreeze() -> Result<Value, String> {
    let (take, skip) = freeze_plan(&mounts());
    let mut frozen = FROZEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut now_frozen = Vec::new();
    for m in &take {
        if frozen.contains(&m.mountpoint) {
            continue;
        }
        if let Err(e) = sys::freeze(Path::new(&m.mountpoint)) {
            // All or nothing: undo what this call froze.
            for mp in now_frozen.iter().rev() {
                let _ = sys::thaw(Path::new(mp));
            }
            return Err(format!(
                "freezing {} failed: {e}; {} filesystem(s) thawed again",
                m.mountpoint,
                now_frozen.len()
            ));
        }
        now_frozen.push(m.mountpoint.clone());
    }
    frozen.extend(now_frozen);
    eprintln!("lifeboat-guest-agent: fsfreeze: {} frozen", frozen.len());
    let root_frozen = false;
    Ok(obj(vec![
        ("frozen", Value::from(frozen.clone())),
        ("count", (frozen.len() as u64).into()),
        ("root_frozen", root_frozen.into()),
        (
            "skipped",
            Value::Array(
                skip.into_iter()
                    .map(|(m, why)| {
                        obj(vec![
                            ("mountpoint", m.mountpoint.into()),
                            ("fstype", m.fstype.into()),
                            ("reason", why.into()),
                        ])
                    })
                    .collect(),
            ),
        ),
    ]))
}

/// Thaws everything this agent froze, and anything else freezable that is
/// frozen (e.g. by an earlier agent process). Never fails as a whole.
fn fsthaw() -> Value {
    let mut frozen = FROZEN.lock().unwrap_or_else(|e| e.into_inner());
    let (take, _) = freeze_plan(&mounts());
    let mut order: Vec<String> = frozen.iter().rev().cloned().collect();
    for m in take.iter().rev() {
        if !order.contains(&m.mountpoint) {
            order.push(m.mountpoint.clone());
        }
    }
    let mut thawed = Vec::new();
    let mut errors = Vec::new();
    for mp in order {
        match sys::thaw(Path::new(&mp)) {
            Ok(()) => thawed.push(mp),
            // EINVAL: was not frozen.
            Err(e) if e.raw_os_error() == Some(22) => {}
            Err(e) => errors.push(obj(vec![
                ("mountpoint", mp.into()),
                ("error", e.to_string().into()),
            ])),
        }
    }
    frozen.clear();
    if !thawed.is_empty() {
        eprintln!("lifeboat-guest-agent: fsthaw: {} thawed", thawed.len());
    }
    obj(vec![
        ("count", (thawed.len() as u64).into()),
        ("thawed", Value::from(thawed)),
        ("errors", Value::Array(errors)),
    ])
}

// ---------------------------------------------------------------- password

fn random_bytes(n: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf)
}

fn set_password(args: &Value, ctx: &Ctx) -> Result<Value, String> {
    let user = args
        .get("user")
        .and_then(Value::as_str)
        .ok_or("missing string argument \"user\"")?;
    if !crypt::valid_user(user) {
        return Err("invalid user name".into());
    }
    let hash = match (args.get("password"), args.get("hash")) {
        (Some(Value::String(pw)), None) => {
            if pw.is_empty() || pw.len() > 4096 {
                return Err("password must be 1..4096 bytes".into());
            }
            let salt = crypt::salt_from_bytes(
                &random_bytes(16).map_err(|e| format!("reading /dev/urandom: {e}"))?,
            );
            crypt::sha512_crypt(pw.as_bytes(), &salt)?
        }
        (None, Some(Value::String(h))) => {
            if !h.starts_with('$') || h.contains([':', '\n', '\r']) {
                return Err("hash must be a crypt(3) string like $6$salt$...".into());
            }
            h.clone()
        }
        _ => {
            return Err("give exactly one of the string arguments \"password\" or \"hash\"".into())
        }
    };
    let path = &ctx.shadow_path;
    let text = fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86400)
        .unwrap_or(0);
    let new = crypt::shadow_set_hash(&text, user, &hash, days)?;
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    let tmp = path.with_extension("lifeboat-tmp");
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(new.as_bytes())?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })?;
    eprintln!("lifeboat-guest-agent: set-password: updated user {user}");
    Ok(obj(vec![
        ("user", user.into()),
        (
            "scheme",
            if hash.starts_with("$6$") {
                "sha512-crypt"
            } else {
                "given"
            }
            .into(),
        ),
    ]))
}

// ---------------------------------------------------------------- maintenance

/// Maintenance script names: `[a-z0-9-]+`, at most 64 characters.
pub fn valid_script_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Keeps the last `MAX_OUTPUT` bytes of a stream; returns (tail, total bytes).
fn read_tail(mut r: impl Read) -> (Vec<u8>, u64) {
    let mut keep = Vec::new();
    let mut total = 0u64;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > 2 * MAX_OUTPUT {
                    keep.drain(..keep.len() - MAX_OUTPUT);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if keep.len() > MAX_OUTPUT {
        keep.drain(..keep.len() - MAX_OUTPUT);
    }
    (keep, total)
}

pub fn run_maintenance(args: &Value, dir: &Path) -> Result<Value, String> {
    let name = args
        .get("name")
        .and_then(Value::as_str)
        .ok_or("missing string argument \"name\"")?;
    if !valid_script_name(name) {
        return Err(
            "invalid maintenance name (must match [a-z0-9-]+, at most 64 characters)".into(),
        );
    }
    let timeout_s = match args.get("timeout_s") {
        None | Some(Value::Null) => DEFAULT_MAINT_TIMEOUT_S,
        Some(v) => v
            .as_u64()
            .filter(|t| (1..=MAX_MAINT_TIMEOUT_S).contains(t))
            .ok_or("timeout_s must be an integer in 1..=3600")?,
    };
    let path = dir.join(name);
    match fs::metadata(&path) {
        Ok(m) if m.is_file() => {}
        _ => {
            return Err(format!(
                "no maintenance script {name:?} in {}",
                dir.display()
            ))
        }
    }
    eprintln!("lifeboat-guest-agent: run-maintenance {name}");
    let started = Instant::now();
    // `sh -c 'exec "$0" 2>&1'` merges stderr into stdout in one ordered stream;
    // the own process group lets a timeout kill the script's children too.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("exec \"$0\" 2>&1")
        .arg(&path)
        .current_dir(dir)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", path.display()))?;
    let pid = child.id() as i32;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(read_tail(stdout));
    });
    let deadline = started + Duration::from_secs(timeout_s);
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break Some(st),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = sys::kill_pid(-pid, sys::SIGKILL);
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(_) => break None,
        }
    };
    // Background children may keep the pipe open: give them a moment, then kill.
    let (tail, total) = match rx.recv_timeout(Duration::from_secs(2)) {
        Ok(r) => r,
        Err(_) => {
            let _ = sys::kill_pid(-pid, sys::SIGKILL);
            rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default()
        }
    };
    let exit_code = status.and_then(|s| s.code());
    let signal = status.and_then(|s| s.signal());
    Ok(obj(vec![
        ("name", name.into()),
        ("exit_code", exit_code.into()),
        ("signal", signal.into()),
        ("timed_out", timed_out.into()),
        ("duration_ms", (started.elapsed().as_millis() as u64).into()),
        ("output", String::from_utf8_lossy(&tail).into_owned().into()),
        ("output_bytes", total.into()),
        ("truncated", (total > tail.len() as u64).into()),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_and_freeze_plan() {
        let text = "rootfs / rootfs rw,size=53012k 0 0\n\
                    proc /proc proc rw 0 0\n\
                    devtmpfs /dev devtmpfs rw 0 0\n\
                    /dev/vda /mnt/data ext4 rw 0 0\n\
                    /dev/vda /mnt/bind ext4 rw 0 0\n\
                    /dev/vdb /mnt/with\\040space ext4 rw 0 0\n\
                    tmpfs /run tmpfs rw 0 0\n";
        let m = parse_mounts(text);
        assert_eq!(m.len(), 7);
        assert_eq!(m[5].mountpoint, "/mnt/with space");
        let (take, skip) = freeze_plan(&m);
        let mps: Vec<&str> = take.iter().map(|m| m.mountpoint.as_str()).collect();
        assert_eq!(mps, ["/mnt/data", "/mnt/with space"]);
        assert_eq!(skip.len(), 2);
        assert_eq!(skip[0].0.mountpoint, "/");
        assert!(skip[0].1.contains("initramfs"));
        // A later mount over the same mountpoint hides the earlier one.
        let m = parse_mounts("a /x ext4 rw 0 0\nb /x xfs rw 0 0\n");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].source, "b");
    }

    #[test]
    fn meminfo_parsing() {
        let m = meminfo("MemTotal:        1000 kB\nHugePages_Total:       0\nbad line\n");
        assert_eq!(
            m,
            vec![
                ("MemTotal".to_string(), 1024000),
                ("HugePages_Total".to_string(), 0)
            ]
        );
    }

    #[test]
    fn script_names() {
        assert!(valid_script_name("fstrim"));
        assert!(valid_script_name("rotate-logs-2"));
        for bad in [
            "",
            "../x",
            "a/b",
            "A",
            "a b",
            "a.sh",
            "x\n",
            &"a".repeat(65),
        ] {
            assert!(!valid_script_name(bad), "{bad:?}");
        }
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lb-ga-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn script(dir: &Path, name: &str, body: &str) {
        let p = dir.join(name);
        fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn args(text: &str) -> Value {
        serde_json::from_str::<Value>(text).unwrap()
    }

    #[test]
    fn maintenance_runs_and_bounds_output() {
        let d = tmpdir("maint");
        script(&d, "ok", "echo out; echo err >&2; exit 3");
        script(&d, "big", "head -c 200000 /dev/zero | tr '\\0' x");
        script(&d, "slow", "sleep 30 & sleep 30");
        let r = run_maintenance(&args(r#"{"name":"ok"}"#), &d).unwrap();
        assert_eq!(r.get("exit_code").and_then(Value::as_u64), Some(3));
        assert_eq!(r.get("output").and_then(Value::as_str), Some("out\nerr\n"));
        assert_eq!(r.get("truncated").and_then(Value::as_bool), Some(false));

        let r = run_maintenance(&args(r#"{"name":"big"}"#), &d).unwrap();
        assert_eq!(
            r.get("output").and_then(Value::as_str).map(str::len),
            Some(MAX_OUTPUT)
        );
        assert_eq!(r.get("output_bytes").and_then(Value::as_u64), Some(200000));
        assert_eq!(r.get("truncated").and_then(Value::as_bool), Some(true));

        let t = Instant::now();
        let r = run_maintenance(&args(r#"{"name":"slow","timeout_s":1}"#), &d).unwrap();
        assert_eq!(r.get("timed_out").and_then(Value::as_bool), Some(true));
        assert_eq!(r.get("signal").and_then(Value::as_u64), Some(9));
        assert!(t.elapsed() < Duration::from_secs(5));

        assert!(run_maintenance(&args(r#"{"name":"../ok"}"#), &d).is_err());
        assert!(run_maintenance(&args(r#"{"name":"missing"}"#), &d).is_err());
        assert!(run_maintenance(&args(r#"{"name":"ok","timeout_s":0}"#), &d).is_err());
        assert!(run_maintenance(&args(r#"{}"#), &d).is_err());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn set_password_rewrites_shadow() {
        let d = tmpdir("shadow");
        let shadow = d.join("shadow");
        fs::write(&shadow, "root:*:1:0:99999:7:::\n").unwrap();
        fs::set_permissions(&shadow, fs::Permissions::from_mode(0o640)).unwrap();
        let ctx = Ctx {
            boot_ms: 0,
            started: Instant::now(),
            allow_power: false,
            maintenance_dir: d.clone(),
            shadow_path: shadow.clone(),
        };
        let r = set_password(&args(r#"{"user":"root","password":"s3cret"}"#), &ctx).unwrap();
        assert_eq!(
            r.get("scheme").and_then(Value::as_str),
            Some("sha512-crypt")
        );
        let text = fs::read_to_string(&shadow).unwrap();
        let hash = text.split(':').nth(1).unwrap();
        assert!(hash.starts_with("$6$"));
        let salt = hash.split('$').nth(2).unwrap();
        assert_eq!(crypt::sha512_crypt(b"s3cret", salt).unwrap(), hash);
        assert!(!text.contains("s3cret"));
        assert_eq!(
            fs::metadata(&shadow).unwrap().permissions().mode() & 0o777,
            0o640
        );

        assert!(set_password(&args(r#"{"user":"nobody","password":"x"}"#), &ctx).is_err());
        assert!(set_password(&args(r#"{"user":"root"}"#), &ctx).is_err());
        assert!(set_password(&args(r#"{"user":"root","hash":"a:b"}"#), &ctx).is_err());
        let e =
            set_password(&args(r#"{"user":"ro:ot","password":"topsecret"}"#), &ctx).unwrap_err();
        assert!(!e.contains("topsecret"));
        set_password(&args(r#"{"user":"root","hash":"$6$x$y"}"#), &ctx).unwrap();
        assert!(fs::read_to_string(&shadow)
            .unwrap()
            .starts_with("root:$6$x$y:"));
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn power_commands_refused_in_test_mode() {
        let ctx = Ctx {
            boot_ms: 0,
            started: Instant::now(),
            allow_power: false,
            maintenance_dir: PathBuf::from("/nonexistent"),
            shadow_path: PathBuf::from("/nonexistent"),
        };
        assert!(handle("shutdown", &Value::Object(Default::default()), &ctx).is_err());
        assert!(handle("reboot", &Value::Object(Default::default()), &ctx).is_err());
        assert!(handle("nope", &Value::Object(Default::default()), &ctx).is_err());
        let (v, after) = handle("ping", &Value::Object(Default::default()), &ctx).unwrap();
        assert_eq!(after, After::Nothing);
        assert_eq!(v.to_string(), r#"{"pong":true}"#);
        let (v, _) = handle("health", &Value::Object(Default::default()), &ctx).unwrap();
        assert!(v.get("mem_total_bytes").and_then(Value::as_u64).unwrap() > 0);
        let (v, _) = handle("disk-usage", &Value::Object(Default::default()), &ctx).unwrap();
        assert!(matches!(v.get("filesystems"), Some(Value::Array(_))));
    }
}
