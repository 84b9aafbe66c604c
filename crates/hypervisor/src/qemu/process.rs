//! The qemu process: command line, daemonized launch, pid checks and signals.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tokio::time::Instant;

use super::net::{self, NicBackend};
use super::Accel;
use crate::{HvError, HvResult};

/// A disk attached to the VM, in bus order (`vda`, `vdb`, ...).
#[derive(Debug, Clone)]
pub struct DiskSlot {
    /// Block node name (`root`, `ephemeral`, `swap`, `rescue`): also the NBD
    /// export name during migration.
    pub node: String,
    /// qcow2 file.
    pub path: PathBuf,
    /// While an instant restore runs: the NBD socket of the snapshot export that is the
    /// node's backing (see `instant.rs`).
    pub backing_nbd: Option<PathBuf>,
}

/// Everything needed to run one qemu process for a VM.
#[derive(Debug, Clone)]
pub struct Launch {
    /// `qemu-system-x86_64`.
    pub qemu_binary: PathBuf,
    /// VM name.
    pub name: String,
    /// The VM's directory (absolute).
    pub dir: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// vCPUs.
    pub vcpus: u32,
    /// RAM MiB.
    pub ram_mb: u64,
    /// Direct-boot kernel; BIOS boot from the first disk when None.
    pub kernel: Option<PathBuf>,
    /// Direct-boot initramfs.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub append: String,
    /// Disks in order.
    pub disks: Vec<DiskSlot>,
    /// NICs: taps of the host's data plane or user-mode fallbacks (see [`super::net`]).
    pub nics: Vec<NicBackend>,
    /// PCI slots of the NICs fixed by hot-plugs ([`crate::Nic::pci_slot`]), same order.
    pub nic_slots: Vec<Option<u8>>,
    /// The config drive: its ISO (`config.iso` in the VM's directory, built at the first
    /// launch that needs it) and what it carries.
    pub config_drive: Option<(PathBuf, lifeboat_hostnet::InstanceMetadata)>,
    /// `-incoming` URI.
    pub incoming: Option<String>,
    /// Start with vCPUs stopped (`-S`).
    pub start_paused: bool,
}

/// Files of a VM directory.
pub mod files {
    /// QMP socket used by operations.
    pub const QMP: &str = "qmp.sock";
    /// Second QMP socket used by status polling (never blocked by a long job).
    pub const QMP_POLL: &str = "qmp-poll.sock";
    /// Guest agent chardev socket.
    pub const GA: &str = "ga.sock";
    /// Serial console log (ttyS0).
    pub const SERIAL: &str = "serial.log";
    /// Interactive serial console socket (ttyS1, a getty in the guest).
    pub const CONSOLE: &str = "console.sock";
    /// Older serial console log (rotated).
    pub const SERIAL_OLD: &str = "serial.log.1";
    /// qemu pid.
    pub const PID: &str = "pid";
}

fn p(dir: &Path, f: &str) -> String {
    dir.join(f).to_string_lossy().into_owned()
}

impl Launch {
    /// The qemu command line (without the binary); tap NICs without their fds.
    pub fn args(&self) -> Vec<String> {
        self.args_with(&[])
    }

    /// The qemu command line with the tap NICs' fds (from [`net::open_taps`]).
    pub fn args_with(&self, fds: &[Option<std::os::fd::OwnedFd>]) -> Vec<String> {
        let d = &self.dir;
        let mut a: Vec<String> = vec![];
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        push(&[
            "-name",
            &format!("{},process=lifeboat-{}", self.name, self.name),
        ]);
        push(&["-machine", "pc"]);
        match self.accel {
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
            _ => push(&["-accel", "tcg,tb-size=32"]),
        }
        push(&["-nodefaults", "-no-user-config", "-display", "none"]);
        push(&["-m", &self.ram_mb.max(32).to_string()]);
        push(&["-smp", &self.vcpus.max(1).to_string()]);
        push(&["-no-shutdown", "-daemonize", "-pidfile", &p(d, files::PID)]);
        for (id, f) in [("qmp", files::QMP), ("qmppoll", files::QMP_POLL)] {
            push(&[
                "-chardev",
                &format!("socket,id={id},path={},server=on,wait=off", p(d, f)),
                "-mon",
                &format!("chardev={id},mode=control"),
            ]);
        }
        push(&[
            "-chardev",
            &format!("file,id=con0,path={},append=on", p(d, files::SERIAL)),
            "-device",
            "isa-serial,chardev=con0",
            "-chardev",
            &format!(
                "socket,id=con1,path={},server=on,wait=off",
                p(d, files::CONSOLE)
            ),
            "-device",
            "isa-serial,chardev=con1",
        ]);
        // Guest panics become the run state `guest-panicked` (Crashed).
        push(&["-device", "pvpanic"]);
        push(&[
            "-chardev",
            &format!("socket,id=ga0,path={},server=on,wait=off", p(d, files::GA)),
            "-device",
            "virtio-serial-pci,id=vser0",
            "-device",
            "virtserialport,bus=vser0.0,chardev=ga0,name=org.lifeboat.agent.0",
        ]);
        for disk in &self.disks {
            let mut bd = serde_json::json!({
                "driver": "qcow2",
                "node-name": disk.node,
                "file": {"driver": "file", "filename": disk.path},
            });
            if let Some(sock) = &disk.backing_nbd {
                bd["backing"] = super::instant::backing_json(sock, &disk.node);
            }
            push(&[
                "-blockdev",
                &bd.to_string(),
                "-device",
                &format!("virtio-blk-pci,drive={0},id={0}-dev", disk.node),
            ]);
        }
        a.extend(net::nic_args(&self.nics, fds, &self.nic_slots));
        let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
        // After the NICs, so that their PCI slots do not depend on it.
        if let Some((iso, _)) = &self.config_drive {
            let bd = serde_json::json!({
                "driver": "raw",
                "node-name": "config",
                "read-only": true,
                "file": {"driver": "file", "filename": iso, "read-only": true},
            });
            push(&[
                "-blockdev",
                &bd.to_string(),
                "-device",
                "virtio-blk-pci,drive=config,id=config-dev",
            ]);
        }
        if let Some(k) = &self.kernel {
            push(&["-kernel", &k.to_string_lossy(), "-append", &self.append]);
            if let Some(i) = &self.initrd {
                push(&["-initrd", &i.to_string_lossy()]);
            }
        }
        if let Some(u) = &self.incoming {
            push(&["-incoming", u]);
        }
        if self.start_paused {
            push(&["-S"]);
        }
        a
    }

    /// Starts qemu daemonized (its own session, so it outlives this
    /// process); returns its pid once QMP listens.
    pub async fn spawn(&self) -> HvResult<u32> {
        for f in [files::QMP, files::QMP_POLL, files::GA, files::PID] {
            let _ = std::fs::remove_file(self.dir.join(f));
        }
        if let Some((iso, md)) = &self.config_drive {
            if !iso.is_file() {
                let (iso, md) = (iso.clone(), md.clone());
                tokio::task::spawn_blocking(move || {
                    lifeboat_hostnet::configdrive::build(&md, &iso)
                })
                .await
                .map_err(|e| HvError::Other(format!("config drive: {e}")))?
                .map_err(|e| HvError::Other(format!("{}: config drive: {e}", self.name)))?;
            }
        }
        // Tap queues are opened here (close-on-exec in this process) and inherited by this
        // one child only: the fds are made inheritable after the fork.
        let fds = net::open_taps(&self.nics)?;
        let args = self.args_with(&fds);
        tracing::debug!(vm = %self.name, "qemu {}", args.join(" "));
        let mut cmd = Command::new(&self.qemu_binary);
        cmd.args(&args)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let raw: Vec<i32> = fds
            .iter()
            .flatten()
            .map(std::os::fd::AsRawFd::as_raw_fd)
            .collect();
        if !raw.is_empty() {
            // SAFETY: the closure only calls fcntl(2), which is async-signal-safe.
            unsafe {
                cmd.pre_exec(move || {
                    for fd in &raw {
                        if libc::fcntl(*fd, libc::F_SETFD, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .map_err(|_| HvError::Timeout(format!("{}: qemu did not daemonize", self.name)))?
            .map_err(|e| HvError::Other(format!("{}: {e}", self.qemu_binary.display())))?;
        drop(fds);
        if !out.status.success() {
            return Err(HvError::Other(format!(
                "{}: qemu failed ({}): {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let pid = read_pid(&self.dir)
            .ok_or_else(|| HvError::Other(format!("{}: qemu wrote no pid file", self.name)))?;
        Ok(pid)
    }
}

/// The pid in `<dir>/pid`, if the file exists.
pub fn read_pid(dir: &Path) -> Option<u32> {
    std::fs::read_to_string(dir.join(files::PID))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is a live (not zombie) qemu of the VM in `dir`.
pub fn alive(pid: u32, dir: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Field 3, after the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("X");
    if matches!(state, "Z" | "X" | "x") {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let needle = dir.join(files::QMP);
    let needle = needle.to_string_lossy();
    String::from_utf8_lossy(&cmdline).contains(needle.as_ref())
}

/// The accelerator the live qemu of `dir` runs with (from its command line).
pub fn accel_of(dir: &Path) -> Option<Accel> {
    let pid = running_pid(dir)?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let i = args.iter().position(|a| *a == b"-accel")?;
    let v = args.get(i + 1)?;
    Some(if v.starts_with(b"kvm") {
        Accel::Kvm
    } else {
        Accel::Tcg
    })
}

/// The live qemu pid of the VM in `dir`.
pub fn running_pid(dir: &Path) -> Option<u32> {
    read_pid(dir).filter(|p| alive(*p, dir))
}

/// Sends `sig` to `pid`.
pub fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Waits until the qemu of `dir` is gone, up to `deadline`.
pub async fn wait_gone(pid: u32, dir: &Path, deadline: Duration) -> bool {
    let end = Instant::now() + deadline;
    while alive(pid, dir) {
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// SIGKILLs the qemu of `dir` and waits for it to go.
pub async fn kill_hard(pid: u32, dir: &Path) -> HvResult<()> {
    signal(pid, libc::SIGKILL);
    if wait_gone(pid, dir, Duration::from_secs(10)).await {
        Ok(())
    } else {
        Err(HvError::Other(format!("qemu {pid} survived SIGKILL")))
    }
}

/// A free TCP port on `addr` (bound, then released).
pub fn free_port(addr: &str) -> HvResult<u16> {
    let l = std::net::TcpListener::bind((addr, 0))
        .map_err(|e| HvError::Other(format!("no free port: {e}")))?;
    Ok(l.local_addr()
        .map_err(|e| HvError::Other(e.to_string()))?
        .port())
}
