//! Named network namespaces, compatible with `ip netns` (bind mounts under `/run/netns`), and
//! running code or processes inside one.
//!
//! Code runs in a namespace on a dedicated thread that `setns(2)`s first: a socket opened there
//! stays in that namespace after the thread ends (netlink connections, listening sockets, taps).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// Where named namespaces live (as `ip netns` keeps them).
pub const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty()
        || name.len() > 64
        || name.contains('/')
        || name.starts_with('.')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(Error::Invalid(format!("invalid namespace name {name:?}")));
    }
    Ok(())
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Names of all named namespaces.
pub fn list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(NETNS_DIR)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).expect("path without NUL")
}

fn errno(what: &str) -> Error {
    Error::Os(format!("{what}: {}", io::Error::last_os_error()))
}

/// Make `/run/netns` a shared mount point, as `ip netns add` does, so namespaces created here
/// are seen by other mount namespaces and vice versa.
fn prepare_dir() -> Result<(), Error> {
    std::fs::create_dir_all(NETNS_DIR).map_err(|e| Error::Os(format!("mkdir {NETNS_DIR}: {e}")))?;
    let dir = cstr(Path::new(NETNS_DIR));
    let none = CString::new("none").unwrap();
    // SAFETY: plain mount(2) calls with valid C strings.
    unsafe {
        if libc::mount(
            none.as_ptr(),
            dir.as_ptr(),
            std::ptr::null(),
            libc::MS_SHARED | libc::MS_REC,
            std::ptr::null(),
        ) == 0
        {
            return Ok(());
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(errno("mount --make-rshared /run/netns"));
        }
        if libc::mount(
            dir.as_ptr(),
            dir.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            return Err(errno("mount --bind /run/netns"));
        }
        if libc::mount(
            none.as_ptr(),
            dir.as_ptr(),
            std::ptr::null(),
            libc::MS_SHARED | libc::MS_REC,
            std::ptr::null(),
        ) != 0
        {
            return Err(errno("mount --make-rshared /run/netns"));
        }
    }
    Ok(())
}

/// Create a named network namespace (idempotent: an existing one is kept).
pub fn create(name: &str) -> Result<(), Error> {
    check_name(name)?;
    let p = path(name);
    if p.exists() && open(name).is_ok() {
        return Ok(());
    }
    prepare_dir()?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&p)
        .map_err(|e| Error::Os(format!("create {}: {e}", p.display())))?;
    let target = cstr(&p);
    let res = std::thread::spawn(move || -> Result<(), Error> {
        // SAFETY: unshare/mount on this thread only; the thread ends right after.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(errno("unshare(CLONE_NEWNET)"));
            }
            let src = CString::new("/proc/thread-self/ns/net").unwrap();
            if libc::mount(
                src.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ) != 0
            {
                return Err(errno("bind-mount the new namespace"));
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| Error::Os("namespace thread panicked".into()))?;
    if res.is_err() {
        let _ = std::fs::remove_file(&p);
    }
    res
}

/// Delete a named namespace (idempotent). Its interfaces go with it once no process or socket
/// holds it any more.
pub fn delete(name: &str) -> Result<(), Error> {
    check_name(name)?;
    let p = path(name);
    if !p.exists() {
        return Ok(());
    }
    let c = cstr(&p);
    // SAFETY: umount2 with a valid path.
    unsafe {
        if libc::umount2(c.as_ptr(), libc::MNT_DETACH) != 0
            && io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
        {
            return Err(errno(&format!("umount {}", p.display())));
        }
    }
    std::fs::remove_file(&p).or_else(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            Ok(())
        } else {
            Err(Error::Os(format!("remove {}: {e}", p.display())))
        }
    })
}

/// Open a namespace's file (for `setns` or `IFLA_NET_NS_FD`).
pub fn open(name: &str) -> Result<File, Error> {
    check_name(name)?;
    let f = File::open(path(name))
        .map_err(|e| Error::NotFound(format!("network namespace {name}: {e}")))?;
    // A plain file left behind without a mount is not a namespace.
    // SAFETY: fstatfs on an open fd.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::fstatfs(f.as_raw_fd(), &mut st) == 0 && st.f_type as i64 != 0x6e736673 {
            return Err(Error::NotFound(format!(
                "network namespace {name} is not mounted"
            )));
        }
    }
    Ok(f)
}

fn setns(f: &File) -> Result<(), Error> {
    // SAFETY: setns on this thread with an open namespace fd.
    if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(errno("setns"));
    }
    Ok(())
}

/// Run `f` on a fresh thread inside namespace `name` and return its result.
pub fn run_in<T, F>(name: &str, f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let file = open(name)?;
    std::thread::spawn(move || -> Result<T, Error> {
        setns(&file)?;
        Ok(f())
    })
    .join()
    .map_err(|_| Error::Os("namespace thread panicked".into()))?
}

/// Write a sysctl (`net/ipv4/ip_forward` style path below /proc/sys) inside a namespace.
pub fn sysctl(name: &str, key: &str, value: &str) -> Result<(), Error> {
    let key = key.to_string();
    let value = value.to_string();
    run_in(name, move || {
        std::fs::write(format!("/proc/sys/{key}"), &value)
            .map_err(|e| Error::Os(format!("sysctl {key}={value}: {e}")))
    })?
}

/// Prepare `cmd` to start inside namespace `name` (setns in the child before exec).
pub fn command_in(name: &str, cmd: &mut Command) -> Result<(), Error> {
    let file: OwnedFd = open(name)?.into();
    let fd = file.as_raw_fd();
    // SAFETY: the closure only calls setns(2), which is async-signal-safe. `file` is kept alive
    // by moving it into the closure, which lives as long as `cmd`.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &file;
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// The argv prefix that runs a program inside a namespace with iproute2 (for callers that build
/// command lines, e.g. a QEMU launcher): `["ip", "netns", "exec", name]`.
pub fn exec_prefix(name: &str) -> Vec<String> {
    vec!["ip".into(), "netns".into(), "exec".into(), name.to_string()]
}

/// Run a command inside a namespace and wait for it; error with its stderr when it fails.
pub fn run_command(name: &str, program: &str, args: &[&str]) -> Result<String, Error> {
    let mut cmd = Command::new(program);
    cmd.args(args);
    command_in(name, &mut cmd)?;
    let out = cmd
        .output()
        .map_err(|e| Error::Os(format!("run {program}: {e}")))?;
    if !out.status.success() {
        return Err(Error::Command(format!(
            "{program} {} in {name}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
