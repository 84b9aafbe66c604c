//! The QEMU driver: every VM is a real `qemu-system-x86_64` process.
//!
//! Layout: `<state_dir>/vms/<name>/` holds `spec.json` (the [`VmSpec`]),
//! `state.json` (driver state: rescue, pending resize, suspension,
//! migration), `root.qcow2` (a qcow2 overlay of the image's disk, or an empty
//! data disk of the flavor's size for kernel+initramfs images),
//! `ephemeral.qcow2` and `swap.qcow2` per flavor, `qmp.sock` (operations),
//! `qmp-poll.sock` (status polling), `ga.sock` (guest agent chardev),
//! `serial.log` (bounded console log) and `pid`.
//!
//! qemu runs daemonized in its own session, so VMs outlive the Lifeboat
//! process; a new [`QemuDriver`] on the same `state_dir` re-adopts them from
//! their pid files and QMP sockets. A VM whose process vanished without the
//! driver stopping it is reported [`PowerState::Crashed`]; one the guest
//! powered off itself is reported `Shutdown` (and its process reaped).
//!
//! Boot is direct (`-kernel/-initrd/-append`) on machine `pc`; KVM is used
//! only when [`probe_accelerator`] booted a tiny guest under it within a
//! deadline, else TCG.

pub mod accel;
mod backup;
mod console;
pub mod disk;
mod guest;
mod hotplug;
mod instant;
mod migrate;
pub mod net;
pub mod process;
mod pull;
pub mod qmp;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use lifeboat_core::PowerState;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::{
    HostInfo, HvError, HvResult, Hypervisor, ImageRef, MigrationTarget, SnapshotInfo, VmSize,
    VmSpec, VmStatus,
};
pub use accel::{Accel, ProbeImage, ProbeResult};
use process::{files, DiskSlot, Launch};
use qmp::{Qmp, QmpError};

/// SHA-512 crypt(3) (`$6$salt$hash`, 5000 rounds) of `password` with a
/// random salt, computed on the host so the plaintext never enters the guest.
fn host_side_hash(password: &str) -> HvResult<String> {
    sha_crypt::sha512_simple(password, &sha_crypt::Sha512Params::default())
        .map_err(|e| HvError::Other(format!("sha512-crypt: {e:?}")))
}

#[cfg(test)]
mod hash_tests {
    #[test]
    fn sha512_crypt_matches_the_reference() {
        // The test vector of Drepper's SHA-crypt specification.
        let p = sha_crypt::Sha512Params::default();
        let h = sha_crypt::sha512_crypt_b64(b"Hello world!", b"saltstring", &p).unwrap();
        assert_eq!(
            h,
            "svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
        );
        let ours = super::host_side_hash("s3cret").unwrap();
        assert!(ours.starts_with("$6$"), "{ours}");
        sha_crypt::sha512_check("s3cret", &ours).unwrap();
    }
}

/// QEMU driver settings.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// Where VM directories live (`<state_dir>/vms/<name>`).
    pub state_dir: PathBuf,
    /// Host name reported in [`HostInfo`] and migration targets.
    pub hostname: String,
    /// The qemu binary.
    pub qemu_binary: PathBuf,
    /// Accelerator; `Auto` probes.
    pub accel: Accel,
    /// Guest booted by the KVM probe (the project's `guest/out`); without
    /// one, `Auto` means TCG.
    pub probe_image: Option<ProbeImage>,
    /// Capacity offered (vcpus, RAM MiB, disk GiB); detected when None.
    pub capacity: Option<(u32, u64, u64)>,
    /// RAM (MiB) kept for the host itself and not offered to VMs (Nova's
    /// `reserved_host_memory_mb`).
    pub reserved_ram_mb: u64,
    /// How long a boot may take until the guest says ready.
    pub vm_ready_timeout: Duration,
    /// How long a boot under KVM may take until the guest says ready; past
    /// it KVM is taken to be unable to run the guest (a nested kvm-pvm
    /// crawls for minutes, then stops with an internal error), the VM fails
    /// and the host falls back to TCG. A working KVM boots it in ~1 s.
    pub kvm_ready_timeout: Duration,
    /// Deadline of the KVM probe boot.
    pub kvm_probe_timeout: Duration,
    /// Bound of `serial.log` before it rotates.
    pub serial_log_max: u64,
    /// Migration bandwidth limit, bytes/s.
    pub migration_bandwidth: u64,
    /// Kernel command line put before the image's own.
    pub base_cmdline: String,
    /// Disk of a kernel+initramfs image when the flavor says 0 GiB.
    pub min_root_bytes: u64,
    /// Address incoming migrations (RAM and NBD disks) listen on.
    pub migration_address: String,
    /// The snapshot store as this host reaches it; overrides the location
    /// the manager names in requests (None: use the manager's).
    pub snapstore: Option<lifeboat_datastore::StoreLocation>,
    /// The host's network data plane; None: user-mode NICs (see [`net`]).
    pub dataplane: Option<net::DataplaneConfig>,
    /// Speed limit of an instant restore's background copy, bytes/s (0: none).
    pub restore_copy_speed: u64,
}

impl QemuConfig {
    /// Defaults for a host named `hostname` keeping its VMs in `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>, hostname: &str) -> QemuConfig {
        QemuConfig {
            state_dir: state_dir.into(),
            hostname: hostname.to_string(),
            qemu_binary: PathBuf::from("qemu-system-x86_64"),
            accel: Accel::Auto,
            probe_image: None,
            capacity: None,
            reserved_ram_mb: 0,
            vm_ready_timeout: Duration::from_secs(120),
            kvm_ready_timeout: Duration::from_secs(30),
            kvm_probe_timeout: Duration::from_secs(8),
            serial_log_max: 1 << 20,
            migration_bandwidth: 4 << 30,
            base_cmdline: "console=ttyS0 quiet".into(),
            min_root_bytes: 64 << 20,
            migration_address: "127.0.0.1".into(),
            snapstore: None,
            dataplane: None,
            restore_copy_speed: 0,
        }
    }
}

/// Resolves `Auto` by booting the guest under KVM (see [`accel`]); `Kvm`
/// and `Tcg` are taken as given.
pub async fn resolve_accelerator(cfg: &QemuConfig) -> ProbeResult {
    match cfg.accel {
        Accel::Auto => {
            accel::probe(
                &cfg.qemu_binary,
                cfg.probe_image.as_ref(),
                cfg.kvm_probe_timeout,
            )
            .await
        }
        a => ProbeResult {
            accel: a,
            reason: format!("{} forced by configuration", a.name()),
        },
    }
}

/// Driver-private state of one VM (`state.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DriverState {
    /// Booted into this rescue image.
    rescue: Option<ImageRef>,
    /// Sizes before an unconfirmed resize (`root.pre-resize.qcow2` exists).
    pre_resize: Option<VmSize>,
    /// Shelved and offloaded: disks kept, never started until defined again.
    offloaded: bool,
    /// RAM state saved in `vmstate` (suspended).
    suspended: bool,
    /// Waiting for an incoming migration (an `-incoming` qemu may run).
    incoming: Option<MigrationTarget>,
    /// The driver started it and did not stop it: if its process is gone,
    /// it crashed or was killed.
    want_running: bool,
    /// The last snapshot of the root disk in the store (the parent of the
    /// next incremental).
    #[serde(default)]
    last_snapshot: Option<String>,
    /// The persistent dirty bitmap on `root.qcow2` that records the writes
    /// since `last_snapshot` (see `pull.rs`).
    #[serde(default)]
    bitmap: Option<String>,
    /// The instant restore of the root disk (see `instant.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instant: Option<instant::InstantState>,
}

struct Inner {
    cfg: QemuConfig,
    /// Accelerator for new qemu processes; drops to TCG when KVM fails a guest.
    accel: Mutex<ProbeResult>,
    vms_dir: PathBuf,
    /// Per-VM operation locks (one operation at a time per VM).
    op_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per-VM locks of the status QMP socket.
    poll_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Per-VM locks of the guest agent socket.
    ga_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The network data plane (taps of the VMs' ports).
    net: net::NetPlane,
    /// NBD exports of snapshots this process serves to instant restores, per VM.
    exports: Mutex<HashMap<String, lifeboat_datastore::nbd_server::NbdServer>>,
}

/// Real QEMU VMs. See the module documentation.
#[derive(Clone)]
pub struct QemuDriver {
    inner: Arc<Inner>,
}

const QMP_CONNECT: Duration = Duration::from_secs(5);
const STOP_QUIT_WAIT: Duration = Duration::from_secs(10);

fn lock_of(
    map: &Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    name: &str,
) -> Arc<tokio::sync::Mutex<()>> {
    map.lock()
        .unwrap()
        .entry(name.to_string())
        .or_default()
        .clone()
}

fn other(e: impl std::fmt::Display) -> HvError {
    HvError::Other(e.to_string())
}

fn qmp_err(name: &str, e: QmpError) -> HvError {
    match e {
        QmpError::Timeout(w) => HvError::Timeout(format!("{name}: qmp {w}")),
        e => HvError::Other(format!("{name}: {e}")),
    }
}

fn invalid(name: &str, state: &str, what: &str) -> HvError {
    HvError::InvalidState(format!("{name} is {state} and cannot {what}"))
}

/// Maps a QMP run state to a power state.
fn power_of(run_state: &str) -> PowerState {
    match run_state {
        "running" => PowerState::Running,
        "shutdown" => PowerState::Shutdown,
        "guest-panicked" | "internal-error" => PowerState::Crashed,
        _ => PowerState::Paused,
    }
}

fn write_json(path: &Path, v: &impl Serialize) -> HvResult<()> {
    let tmp = disk::tmp_path(path);
    std::fs::write(&tmp, serde_json::to_vec_pretty(v).map_err(other)?)
        .map_err(|e| HvError::Other(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| HvError::Other(format!("{}: {e}", path.display())))
}

fn valid_name(name: &str) -> HvResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(HvError::Other(format!("bad vm name {name:?}")))
    }
}

fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', "'\\''"))
}

impl QemuDriver {
    /// Opens the host: creates `state_dir`, resolves the accelerator
    /// (probing for `Auto`), re-adopts running VMs and starts a housekeeping
    /// task (console log rotation, reaping guests that powered off).
    pub async fn new(cfg: QemuConfig) -> HvResult<QemuDriver> {
        let vms_dir = cfg.state_dir.join("vms");
        std::fs::create_dir_all(&vms_dir)
            .map_err(|e| HvError::Other(format!("{}: {e}", vms_dir.display())))?;
        let vms_dir = std::fs::canonicalize(&vms_dir).map_err(other)?;
        let accel = resolve_accelerator(&cfg).await;
        tracing::info!(host = %cfg.hostname, accel = accel.accel.name(), reason = %accel.reason, "qemu driver");
        let inner = Arc::new(Inner {
            net: net::NetPlane::new(cfg.dataplane.clone()),
            cfg,
            accel: Mutex::new(accel),
            vms_dir,
            op_locks: Mutex::default(),
            poll_locks: Mutex::default(),
            ga_locks: Mutex::default(),
            exports: Mutex::default(),
        });
        let d = QemuDriver { inner };
        for name in d.names() {
            let dir = d.dir(&name);
            if let Some(pid) = process::running_pid(&dir) {
                tracing::info!(vm = %name, pid, "re-adopted running vm");
                // Its instant restore reads from this process: serve the export again
                // (qemu reconnects to it).
                if let Ok((_, st)) = d.load(&name) {
                    if let Some(i) = instant::InstantState::active(&st) {
                        if let Err(e) = d.ensure_export(&name, i).await {
                            tracing::error!(vm = %name, "instant restore export: {e}");
                        }
                    }
                }
            }
        }
        let weak = Arc::downgrade(&d.inner);
        tokio::spawn(housekeeping(weak));
        Ok(d)
    }

    /// The accelerator new VMs use (`Kvm` or `Tcg`).
    pub fn accel(&self) -> Accel {
        self.inner.accel.lock().unwrap().accel
    }

    /// Why that accelerator is in use (probe outcome or the KVM failure seen).
    pub fn accel_reason(&self) -> String {
        self.inner.accel.lock().unwrap().reason.clone()
    }

    /// Switches new VMs on this host (and drivers created later in this
    /// process) to TCG after KVM failed a guest.
    fn fall_back_to_tcg(&self, why: &str) {
        let mut a = self.inner.accel.lock().unwrap();
        if a.accel == Accel::Kvm {
            tracing::warn!(host = %self.inner.cfg.hostname, %why, "kvm failed a guest: new vms use tcg");
            *a = ProbeResult {
                accel: Accel::Tcg,
                reason: why.to_string(),
            };
        }
        drop(a);
        accel::demote_to_tcg(why);
    }

    /// Checks a VM's run state for the two ways a guest stops for good
    /// (KVM internal error, guest panic); returns the fault. A KVM failure
    /// ends the qemu (it cannot run on) and makes the host fall back to TCG.
    async fn fatal_run_state(&self, name: &str) -> Option<HvError> {
        let rs = self.run_state(name).await?;
        match rs.as_str() {
            "internal-error" => {
                let why = format!(
                    "{name}: KVM internal error: this host's KVM cannot run the guest \
                     (the VM stopped in run state internal-error); new VMs on {} use TCG",
                    self.inner.cfg.hostname
                );
                self.fall_back_to_tcg(&why);
                console::append_line(&self.dir(name), "[lifeboat] KVM internal error: vm stopped");
                if let Some(pid) = process::running_pid(&self.dir(name)) {
                    let _ = process::kill_hard(pid, &self.dir(name)).await;
                }
                Some(HvError::Other(why))
            }
            "guest-panicked" => Some(HvError::Other(format!(
                "{name}: the guest kernel panicked (pvpanic); console:\n{}",
                console::tail(&self.dir(name), Some(15))
            ))),
            _ => None,
        }
    }

    /// Settings.
    pub fn config(&self) -> &QemuConfig {
        &self.inner.cfg
    }

    /// Directory of VM `name`.
    pub fn vm_dir(&self, name: &str) -> PathBuf {
        self.dir(name)
    }

    /// Pid of the live qemu of `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        process::running_pid(&self.dir(name))
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.inner.vms_dir.join(name)
    }

    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.inner.vms_dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .filter(|e| e.path().join("spec.json").is_file())
                    .filter_map(|e| e.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    fn op_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock_of(&self.inner.op_locks, name)
    }

    fn load(&self, name: &str) -> HvResult<(VmSpec, DriverState)> {
        valid_name(name)?;
        let dir = self.dir(name);
        let spec: VmSpec = match std::fs::read(dir.join("spec.json")) {
            Ok(b) => serde_json::from_slice(&b).map_err(other)?,
            Err(_) => return Err(HvError::NotFound(name.to_string())),
        };
        let st = std::fs::read(dir.join("state.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok((spec, st))
    }

    fn save_state(&self, name: &str, st: &DriverState) -> HvResult<()> {
        write_json(&self.dir(name).join("state.json"), st)
    }

    fn save_spec(&self, spec: &VmSpec) -> HvResult<()> {
        write_json(&self.dir(&spec.name).join("spec.json"), spec)
    }

    async fn qmp(&self, name: &str) -> HvResult<Qmp> {
        Qmp::connect(&self.dir(name).join(files::QMP), QMP_CONNECT)
            .await
            .map_err(|e| qmp_err(name, e))
    }

    /// `query-status` over the polling socket; None if no live process.
    async fn run_state(&self, name: &str) -> Option<String> {
        let dir = self.dir(name);
        process::running_pid(&dir)?;
        let lock = lock_of(&self.inner.poll_locks, name);
        let _g = lock.lock().await;
        let mut q = Qmp::connect(&dir.join(files::QMP_POLL), QMP_CONNECT)
            .await
            .ok()?;
        q.run_state().await.ok()
    }

    async fn ga(&self, name: &str, cmd: &str, args: Value, deadline: Duration) -> HvResult<Value> {
        let lock = lock_of(&self.inner.ga_locks, name);
        let _g = lock.lock().await;
        guest::request(&self.dir(name).join(files::GA), cmd, args, deadline).await
    }

    /// [`QemuDriver::ga`] for idempotent requests: a timed-out attempt is
    /// retried once on a new connection.
    async fn ga_retry(
        &self,
        name: &str,
        cmd: &str,
        args: Value,
        deadline: Duration,
    ) -> HvResult<Value> {
        let first = deadline.min(Duration::from_secs(5));
        match self.ga(name, cmd, args.clone(), first).await {
            Err(HvError::Timeout(w)) => {
                tracing::warn!(vm = %name, "{w}: retrying on a new connection");
                self.ga(name, cmd, args, deadline).await
            }
            r => r,
        }
    }

    /// Whether the guest agent answers a ping within `deadline`.
    async fn ga_alive(&self, name: &str, deadline: Duration) -> bool {
        let lock = lock_of(&self.inner.ga_locks, name);
        let Ok(_g) = lock.try_lock() else {
            // Someone is talking to the agent right now.
            return true;
        };
        guest::request(&self.dir(name).join(files::GA), "ping", json!({}), deadline)
            .await
            .is_ok()
    }

    fn root_size(&self, spec: &VmSpec, image_size: u64) -> u64 {
        disk::gib(spec.size.disk_gb)
            .max(image_size)
            .max(self.inner.cfg.min_root_bytes)
    }

    /// Creates the root disk at `path` for `spec` from `image`.
    async fn make_root(&self, spec: &VmSpec, image: &ImageRef, path: &Path) -> HvResult<()> {
        let tmp = disk::tmp_path(path);
        if let Some(src) = &spec.root_from {
            self.restore_store_disk(src, path).await?;
            let min = self.root_size(spec, 0);
            return disk::grow(path, min).await;
        }
        if let Some(src) = &spec.root_disk {
            disk::convert_to_qcow2(Path::new(src), path).await?;
            let min = self.root_size(spec, 0);
            return disk::grow(path, min).await;
        }
        let cached = match &image.store {
            Some(src) => Some(self.store_image(src).await?),
            None => image.disk.as_ref().map(PathBuf::from),
        };
        match &cached {
            Some(img) => {
                let img_size = disk::info(Path::new(img)).await?.virtual_size;
                disk::create_overlay(&tmp, Path::new(img), self.root_size(spec, img_size)).await?
            }
            None => {
                // A kernel+initramfs image has no disk: the root disk is the
                // guest's data disk. An overlay of a cached, already formatted
                // blank disk saves the guest formatting it on first boot.
                let size = self.root_size(spec, 0);
                match self.formatted_blank(size).await {
                    Some(base) => disk::create_overlay(&tmp, &base, size).await?,
                    None => disk::create(&tmp, size).await?,
                }
            }
        }
        std::fs::rename(&tmp, path).map_err(other)
    }

    /// `<state_dir>/base/blank-<size>.qcow2`: an ext2 filesystem (the guest's
    /// busybox makes the same) of `size` bytes, made once with the host's
    /// mke2fs. None when mke2fs is missing (the guest then formats).
    async fn formatted_blank(&self, size: u64) -> Option<PathBuf> {
        let dir = self.inner.cfg.state_dir.join("base");
        let base = dir.join(format!("blank-{size}.qcow2"));
        if base.is_file() {
            return Some(base);
        }
        std::fs::create_dir_all(&dir).ok()?;
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let raw = dir.join(format!("blank-{size}.{nonce}.raw.tmp"));
        let f = std::fs::File::create(&raw).ok()?;
        f.set_len(size).ok()?;
        drop(f);
        let made = tokio::process::Command::new("mke2fs")
            .args(["-q", "-F", "-t", "ext2", "-L", "lifeboat-data"])
            .arg(&raw)
            .status()
            .await
            .map(|st| st.success())
            .unwrap_or(false);
        let out = if made {
            let tmp = dir.join(format!("blank-{size}.{nonce}.qcow2.tmp"));
            let ok = disk::qemu_img(&[
                "convert",
                "-q",
                "-f",
                "raw",
                "-O",
                "qcow2",
                raw.to_str()?,
                tmp.to_str()?,
            ])
            .await
            .is_ok()
                && std::fs::rename(&tmp, &base).is_ok();
            ok.then_some(base)
        } else {
            tracing::info!("mke2fs unavailable: guests format their blank disk on first boot");
            None
        };
        let _ = std::fs::remove_file(&raw);
        out
    }

    /// Creates missing ephemeral and swap disks.
    async fn make_extra_disks(&self, spec: &VmSpec) -> HvResult<()> {
        let dir = self.dir(&spec.name);
        let eph = dir.join("ephemeral.qcow2");
        if spec.size.ephemeral_gb > 0 && !eph.exists() {
            disk::create(&eph, disk::gib(spec.size.ephemeral_gb)).await?;
        }
        let swap = dir.join("swap.qcow2");
        if spec.size.swap_mb > 0 && !swap.exists() {
            disk::create(&swap, disk::mib(spec.size.swap_mb)).await?;
        }
        Ok(())
    }

    /// The server's own disks in bus order.
    fn server_disks(&self, spec: &VmSpec) -> Vec<DiskSlot> {
        let dir = self.dir(&spec.name);
        let mut v = vec![DiskSlot {
            node: "root".into(),
            path: dir.join("root.qcow2"),
            backing_nbd: None,
        }];
        if spec.size.ephemeral_gb > 0 {
            v.push(DiskSlot {
                node: "ephemeral".into(),
                path: dir.join("ephemeral.qcow2"),
                backing_nbd: None,
            });
        }
        if spec.size.swap_mb > 0 {
            v.push(DiskSlot {
                node: "swap".into(),
                path: dir.join("swap.qcow2"),
                backing_nbd: None,
            });
        }
        v
    }

    fn launch_for(&self, spec: &VmSpec, st: &DriverState) -> Launch {
        let dir = self.dir(&spec.name);
        let (image, disks) = match &st.rescue {
            Some(img) => {
                let mut d = vec![DiskSlot {
                    node: "rescue".into(),
                    path: dir.join("rescue.qcow2"),
                    backing_nbd: None,
                }];
                d.extend(self.server_disks(spec));
                (img, d)
            }
            None => (&spec.image, self.server_disks(spec)),
        };
        let mut disks = disks;
        if instant::InstantState::active(st).is_some() {
            for d in disks.iter_mut().filter(|d| d.node == "root") {
                d.backing_nbd = Some(instant::socket_of(&dir));
            }
        }
        let mut append = self.inner.cfg.base_cmdline.clone();
        if let Some(c) = &image.cmdline {
            append.push(' ');
            append.push_str(c);
        }
        append.push_str(&format!(" lifeboat.hostname={}", spec.hostname));
        let nics = self.inner.net.backends(&spec.nics);
        append.push_str(net::cmdline(&nics));
        let config_drive = spec
            .config_drive
            .clone()
            .map(|md| (dir.join("config.iso"), md));
        if config_drive.is_some() {
            append.push_str(" lifeboat.configdrive=1");
        }
        Launch {
            qemu_binary: self.inner.cfg.qemu_binary.clone(),
            name: spec.name.clone(),
            dir,
            accel: self.accel(),
            vcpus: spec.size.vcpus,
            ram_mb: spec.size.ram_mb,
            kernel: image.kernel.as_ref().map(PathBuf::from),
            initrd: image.initrd.as_ref().map(PathBuf::from),
            append,
            disks,
            nics,
            nic_slots: spec.nics.iter().map(|n| n.pci_slot).collect(),
            config_drive,
            incoming: None,
            start_paused: false,
        }
    }

    /// Spawns qemu for `spec`; returns the console offset after the boot
    /// line (the ready marker is looked for after it).
    async fn boot(&self, spec: &VmSpec, st: &mut DriverState, why: &str) -> HvResult<u64> {
        let dir = self.dir(&spec.name);
        if let Some(k) = st.rescue.as_ref().unwrap_or(&spec.image).kernel.as_deref() {
            if !Path::new(k).is_file() {
                return Err(HvError::Other(format!("kernel {k} is missing")));
            }
        }
        if let Some(i) = instant::InstantState::active(st) {
            self.ensure_export(&spec.name, i).await?;
        }
        console::rotate(&dir, self.inner.cfg.serial_log_max);
        let offset = console::mark_boot(&dir, why);
        st.want_running = true;
        self.save_state(&spec.name, st)?;
        let launch = self.launch_for(spec, st);
        let started = std::time::Instant::now();
        match launch.spawn().await {
            Ok(pid) => {
                tracing::info!(vm = %spec.name, pid, accel = launch.accel.name(),
                    took = ?started.elapsed(), "qemu started ({why})");
                // The background copy of an instant restore starts with the guest.
                if let Err(e) = self.advance_instant(&spec.name, st).await {
                    tracing::warn!(vm = %spec.name, "instant restore: {e} (retried)");
                }
                Ok(offset)
            }
            Err(e) => {
                st.want_running = false;
                self.save_state(&spec.name, st)?;
                if launch.accel == Accel::Kvm {
                    self.fall_back_to_tcg(&format!(
                        "qemu could not start a VM under KVM ({e}); new VMs on {} use TCG",
                        self.inner.cfg.hostname
                    ));
                }
                Err(e)
            }
        }
    }

    /// Waits for the ready marker after `offset` on the console.
    async fn wait_ready(&self, name: &str, offset: u64) -> HvResult<()> {
        let dir = self.dir(name);
        let started = Instant::now();
        let end = started + self.inner.cfg.vm_ready_timeout;
        let under_kvm = process::accel_of(&dir) == Some(Accel::Kvm);
        let kvm_end = started + self.inner.cfg.kvm_ready_timeout;
        let mut next_qmp_check = started + Duration::from_millis(250);
        loop {
            let out = console::since(&dir, offset);
            if console::contains(&out, console::READY_MARKER) {
                tracing::info!(vm = %name, took = ?started.elapsed(), "guest ready");
                return Ok(());
            }
            if process::running_pid(&dir).is_none() {
                return Err(HvError::Other(format!(
                    "{name}: qemu exited while booting; console:\n{}",
                    console::tail(&dir, Some(15))
                )));
            }
            if Instant::now() >= next_qmp_check {
                if let Some(fault) = self.fatal_run_state(name).await {
                    return Err(fault);
                }
                next_qmp_check = Instant::now() + Duration::from_millis(250);
            }
            if console::contains(&out, "Kernel panic - not syncing") {
                return Err(HvError::Other(format!(
                    "{name}: guest kernel panicked while booting; console:\n{}",
                    console::tail(&dir, Some(15))
                )));
            }
            if under_kvm && Instant::now() >= kvm_end {
                let why = format!(
                    "{name}: the guest did not boot under KVM within {:?} (a working KVM boots \
                     it in about a second): this host's KVM cannot run the guest; new VMs on {} \
                     use TCG",
                    self.inner.cfg.kvm_ready_timeout, self.inner.cfg.hostname
                );
                self.fall_back_to_tcg(&why);
                console::append_line(&dir, "[lifeboat] no boot under KVM: vm stopped");
                if let Some(pid) = process::running_pid(&dir) {
                    let _ = process::kill_hard(pid, &dir).await;
                }
                return Err(HvError::Other(why));
            }
            if Instant::now() >= end {
                return Err(HvError::Timeout(format!(
                    "{name}: guest not ready after {:?}",
                    self.inner.cfg.vm_ready_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Ends the qemu process: `quit`, then SIGKILL.
    async fn kill_vm(&self, name: &str) -> HvResult<()> {
        let dir = self.dir(name);
        let Some(pid) = process::running_pid(&dir) else {
            return Ok(());
        };
        if let Ok(mut q) = self.qmp(name).await {
            let _ = q.execute_within("quit", None, Duration::from_secs(5)).await;
        }
        if !process::wait_gone(pid, &dir, STOP_QUIT_WAIT).await {
            process::kill_hard(pid, &dir).await?;
        }
        let _ = std::fs::remove_file(dir.join(files::PID));
        Ok(())
    }

    /// If an incoming migration is pending that never happened (a cold
    /// migration copied the disks), ends the waiting qemu.
    async fn settle_incoming(&self, name: &str, st: &mut DriverState) -> HvResult<()> {
        if st.incoming.is_none() {
            return Ok(());
        }
        if let Some(rs) = self.run_state(name).await {
            if rs != "inmigrate" {
                // A live migration arrived: complete it.
                return self.finish_incoming_locked(name, st).await;
            }
        }
        self.kill_vm(name).await?;
        st.incoming = None;
        st.want_running = false;
        self.save_state(name, st)
    }

    /// The run state, reaping a process whose guest powered off.
    async fn live_state(&self, name: &str, st: &mut DriverState) -> HvResult<Option<String>> {
        match self.run_state(name).await {
            Some(s) if s == "shutdown" => {
                st.want_running = false;
                self.save_state(name, st)?;
                self.kill_vm(name).await?;
                Ok(None)
            }
            Some(s) => Ok(Some(s)),
            None => {
                if process::running_pid(&self.dir(name)).is_some() {
                    Err(HvError::Other(format!(
                        "{name}: qemu does not answer on QMP"
                    )))
                } else {
                    Ok(None)
                }
            }
        }
    }

    async fn stop_locked(
        &self,
        name: &str,
        st: &mut DriverState,
        timeout: Duration,
    ) -> HvResult<()> {
        if st.suspended {
            let _ = std::fs::remove_file(self.dir(name).join("vmstate"));
            st.suspended = false;
        }
        self.settle_incoming(name, st).await?;
        st.want_running = false;
        self.save_state(name, st)?;
        let dir = self.dir(name);
        let Some(pid) = process::running_pid(&dir) else {
            return Ok(());
        };
        if !timeout.is_zero() && self.run_state(name).await.as_deref() == Some("running") {
            let started = Instant::now();
            let end = started + timeout;
            // The ACPI button event is lost if the guest's acpid is not
            // listening yet (just after boot): press it again every 2 s.
            let mut next_press = started;
            while Instant::now() < end {
                if Instant::now() >= next_press {
                    let mut q = self.qmp(name).await?;
                    q.execute("system_powerdown", None)
                        .await
                        .map_err(|e| qmp_err(name, e))?;
                    next_press = Instant::now() + Duration::from_secs(2);
                }
                match self.run_state(name).await.as_deref() {
                    None | Some("shutdown") => break,
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            let clean = matches!(
                self.run_state(name).await.as_deref(),
                None | Some("shutdown")
            );
            tracing::info!(vm = %name, clean, took = ?started.elapsed(), "acpi power-off");
        }
        self.kill_vm(name).await?;
        let _ = pid;
        console::append_line(&dir, "[lifeboat] powered off");
        Ok(())
    }

    async fn boot_and_wait(&self, spec: &VmSpec, st: &mut DriverState, why: &str) -> HvResult<()> {
        let off = self.boot(spec, st, why).await?;
        self.wait_ready(&spec.name, off).await
    }

    async fn finish_incoming_locked(&self, name: &str, st: &mut DriverState) -> HvResult<()> {
        migrate::finish_incoming(self, name).await?;
        st.incoming = None;
        st.want_running = true;
        self.save_state(name, st)?;
        console::append_line(&self.dir(name), "[lifeboat] migrated in");
        Ok(())
    }

    fn detect_capacity(&self) -> (u32, u64, u64) {
        let vcpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let ram_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|k| k.parse::<u64>().ok())
            })
            .map(|kb| kb / 1024)
            .unwrap_or(1024);
        let disk_gb = {
            let path = std::ffi::CString::new(self.inner.vms_dir.to_string_lossy().as_bytes())
                .unwrap_or_default();
            // SAFETY: statvfs writes into the zeroed struct we own.
            let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
            if unsafe { libc::statvfs(path.as_ptr(), &mut s) } == 0 {
                (s.f_blocks as u64 * s.f_frsize as u64) >> 30
            } else {
                0
            }
        };
        (vcpus, ram_mb, disk_gb)
    }

    async fn status_of(&self, name: &str) -> HvResult<VmStatus> {
        let (_spec, st) = self.load(name)?;
        let dir = self.dir(name);
        let pid = process::running_pid(&dir);
        let power = if st.offloaded {
            PowerState::Shutdown
        } else if pid.is_none() {
            if st.suspended {
                PowerState::Suspended
            } else if st.want_running {
                PowerState::Crashed
            } else {
                PowerState::Shutdown
            }
        } else {
            match self.run_state(name).await {
                Some(s) if st.incoming.is_some() && s == "inmigrate" => PowerState::Shutdown,
                Some(s) => power_of(&s),
                None => PowerState::NoState,
            }
        };
        let guest_ready = power == PowerState::Running
            && (console::ready_since_boot(&dir)
                || self.ga_alive(name, Duration::from_millis(500)).await);
        Ok(VmStatus {
            name: name.to_string(),
            power_state: power,
            guest_ready,
            pid,
        })
    }
}

/// Every few seconds: bounds console logs and reaps guests that powered
/// themselves off. Ends with the driver.
async fn housekeeping(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let d = QemuDriver { inner };
        for name in d.names() {
            let dir = d.dir(&name);
            console::rotate(&dir, d.inner.cfg.serial_log_max);
            if process::running_pid(&dir).is_none() {
                continue;
            }
            let lock = d.op_lock(&name);
            let Ok(_g) = lock.try_lock() else {
                continue;
            };
            let rs = d.run_state(&name).await;
            if rs.as_deref() == Some("internal-error") {
                if let Some(fault) = d.fatal_run_state(&name).await {
                    tracing::error!(vm = %name, "{fault}");
                }
            }
            if rs.as_deref() == Some("shutdown") {
                if let Ok((_, mut st)) = d.load(&name) {
                    tracing::info!(vm = %name, "guest powered off: ending its qemu");
                    let _ = d.live_state(&name, &mut st).await;
                }
            } else if let Ok((_, mut st)) = d.load(&name) {
                if instant::InstantState::active(&st).is_some() {
                    if let Err(e) = d.advance_instant(&name, &mut st).await {
                        tracing::warn!(vm = %name, "instant restore: {e}");
                    }
                }
            }
        }
    }
}

#[async_trait]
impl Hypervisor for QemuDriver {
    fn driver(&self) -> &'static str {
        "qemu"
    }

    async fn host_info(&self) -> HvResult<HostInfo> {
        let (vcpus, ram_mb, disk_gb) = self
            .inner
            .cfg
            .capacity
            .unwrap_or_else(|| self.detect_capacity());
        Ok(HostInfo {
            hostname: self.inner.cfg.hostname.clone(),
            driver: "qemu".into(),
            accelerator: self.accel().name().into(),
            vcpus,
            ram_mb: ram_mb.saturating_sub(self.inner.cfg.reserved_ram_mb),
            disk_gb,
        })
    }

    async fn define(&self, spec: &VmSpec) -> HvResult<()> {
        valid_name(&spec.name)?;
        let lock = self.op_lock(&spec.name);
        let _g = lock.lock().await;
        let dir = self.dir(&spec.name);
        match self.load(&spec.name) {
            Ok((old, mut st)) => {
                if st.offloaded {
                    st.offloaded = false;
                    let mut spec = spec.clone();
                    // The disks stay those of the shelved server.
                    spec.root_disk = old.root_disk.clone();
                    self.save_spec(&spec)?;
                    self.make_extra_disks(&spec).await?;
                    self.save_state(&spec.name, &st)?;
                }
                return Ok(());
            }
            Err(HvError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&dir).map_err(other)?;
        let mut st = DriverState::default();
        match spec.root_from.as_ref().filter(|s| s.instant) {
            Some(src) => {
                let min = self.root_size(spec, 0);
                let inst = self
                    .make_instant_root(src, min, &dir.join("root.qcow2"))
                    .await?;
                st.instant = Some(inst);
            }
            None => {
                self.make_root(spec, &spec.image, &dir.join("root.qcow2"))
                    .await?
            }
        }
        self.make_extra_disks(spec).await?;
        self.save_state(&spec.name, &st)?;
        // spec.json last: its presence means the VM is fully defined. The
        // store disk it was restored from is not needed any more.
        let mut saved = spec.clone();
        saved.root_from = None;
        self.save_spec(&saved)?;
        tracing::info!(vm = %spec.name, "defined");
        Ok(())
    }

    async fn destroy(&self, name: &str) -> HvResult<()> {
        valid_name(name)?;
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let dir = self.dir(name);
        if !dir.exists() {
            return Ok(());
        }
        self.kill_vm(name).await?;
        self.drop_export(name);
        std::fs::remove_dir_all(&dir).map_err(other)?;
        tracing::info!(vm = %name, "destroyed");
        Ok(())
    }

    async fn start(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (spec, mut st) = self.load(name)?;
        if st.offloaded {
            return Err(invalid(name, "offloaded", "start"));
        }
        if st.suspended {
            return Err(invalid(name, "suspended", "start"));
        }
        self.settle_incoming(name, &mut st).await?;
        match self.live_state(name, &mut st).await? {
            Some(s) if s == "running" => return Ok(()),
            Some(s) => return Err(invalid(name, &s, "start")),
            None => {}
        }
        self.boot_and_wait(&spec, &mut st, "power on").await
    }

    async fn stop(&self, name: &str, timeout_secs: u64) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        self.stop_locked(name, &mut st, Duration::from_secs(timeout_secs))
            .await
    }

    async fn reboot(&self, name: &str, hard: bool) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (spec, mut st) = self.load(name)?;
        if st.offloaded {
            return Err(invalid(name, "offloaded", "reboot"));
        }
        let rs = self.live_state(name, &mut st).await?;
        let dir = self.dir(name);
        if !hard {
            if rs.as_deref() != Some("running") {
                return Err(invalid(
                    name,
                    rs.as_deref().unwrap_or("shutdown"),
                    "reboot softly",
                ));
            }
            let off = console::mark_boot(&dir, "soft reboot");
            // Watch for the guest's own reset while asking its agent: the
            // agent may go down before it answers.
            let mut q = self.qmp(name).await?;
            if let Err(e) = self
                .ga(name, "reboot", json!({}), Duration::from_secs(5))
                .await
            {
                let reset = q
                    .wait_event("RESET", Duration::from_secs(5), |_| true)
                    .await;
                if reset.is_err() {
                    tracing::warn!(vm = %name, error = %e, "guest agent reboot failed: resetting");
                    q.execute("system_reset", None)
                        .await
                        .map_err(|e| qmp_err(name, e))?;
                }
            }
            drop(q);
            return self.wait_ready(name, off).await;
        }
        match rs {
            None => {
                if st.suspended {
                    let _ = std::fs::remove_file(dir.join("vmstate"));
                    st.suspended = false;
                }
                self.settle_incoming(name, &mut st).await?;
                self.boot_and_wait(&spec, &mut st, "hard reboot (power on)")
                    .await
            }
            Some(s) => {
                let off = console::mark_boot(&dir, "hard reboot (reset)");
                let mut q = self.qmp(name).await?;
                q.execute("system_reset", None)
                    .await
                    .map_err(|e| qmp_err(name, e))?;
                if s != "running" {
                    q.execute("cont", None)
                        .await
                        .map_err(|e| qmp_err(name, e))?;
                }
                drop(q);
                self.wait_ready(name, off).await
            }
        }
    }

    async fn pause(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        match self.live_state(name, &mut st).await?.as_deref() {
            Some("paused") => Ok(()),
            Some("running") => {
                let mut q = self.qmp(name).await?;
                q.execute("stop", None)
                    .await
                    .map_err(|e| qmp_err(name, e))?;
                Ok(())
            }
            s => Err(invalid(name, s.unwrap_or("shutdown"), "pause")),
        }
    }

    async fn unpause(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        match self.live_state(name, &mut st).await?.as_deref() {
            Some("running") => Ok(()),
            Some("paused") => {
                let mut q = self.qmp(name).await?;
                q.execute("cont", None)
                    .await
                    .map_err(|e| qmp_err(name, e))?;
                Ok(())
            }
            s => Err(invalid(name, s.unwrap_or("shutdown"), "unpause")),
        }
    }

    async fn suspend(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        if st.suspended && process::running_pid(&self.dir(name)).is_none() {
            return Ok(());
        }
        match self.live_state(name, &mut st).await?.as_deref() {
            Some("running") => {}
            s => return Err(invalid(name, s.unwrap_or("shutdown"), "suspend")),
        }
        let dir = self.dir(name);
        let started = Instant::now();
        let tmp = dir.join("vmstate.tmp");
        let mut q = self.qmp(name).await?;
        q.execute("stop", None)
            .await
            .map_err(|e| qmp_err(name, e))?;
        let uri = format!("exec:cat > {}", shell_quote(&tmp));
        if let Err(e) = migrate::run_migration(self, &mut q, name, &uri).await {
            let _ = q.execute("cont", None).await;
            return Err(e);
        }
        std::fs::rename(&tmp, dir.join("vmstate")).map_err(other)?;
        st.suspended = true;
        st.want_running = false;
        self.save_state(name, &st)?;
        drop(q);
        self.kill_vm(name).await?;
        console::append_line(&dir, "[lifeboat] suspended (RAM saved to disk)");
        tracing::info!(vm = %name, took = ?started.elapsed(), "suspended");
        Ok(())
    }

    async fn resume(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (spec, mut st) = self.load(name)?;
        if !st.suspended {
            return match self.live_state(name, &mut st).await?.as_deref() {
                Some("running") => Ok(()),
                s => Err(invalid(name, s.unwrap_or("shutdown"), "resume")),
            };
        }
        let dir = self.dir(name);
        if process::running_pid(&dir).is_some() {
            // A resume interrupted after qemu started: start over.
            self.kill_vm(name).await?;
        }
        let started = Instant::now();
        let state_file = dir.join("vmstate");
        if let Some(i) = instant::InstantState::active(&st) {
            self.ensure_export(name, i).await?;
        }
        let mut launch = self.launch_for(&spec, &st);
        launch.incoming = Some(format!("exec:cat {}", shell_quote(&state_file)));
        console::append_line(&dir, "[lifeboat] resuming from saved RAM");
        st.want_running = true;
        self.save_state(name, &st)?;
        launch.spawn().await?;
        let mut q = self.qmp(name).await?;
        let end = Instant::now() + Duration::from_secs(120);
        loop {
            let rs = q.run_state().await.map_err(|e| qmp_err(name, e))?;
            if rs != "inmigrate" && rs != "prelaunch" {
                break;
            }
            if Instant::now() >= end {
                return Err(HvError::Timeout(format!("{name}: loading saved RAM")));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mig = q
            .execute("query-migrate", None)
            .await
            .map_err(|e| qmp_err(name, e))?;
        if mig["status"] == "failed" {
            return Err(HvError::Other(format!(
                "{name}: restoring RAM failed: {}",
                mig["error-desc"]
            )));
        }
        q.execute("cont", None)
            .await
            .map_err(|e| qmp_err(name, e))?;
        let _ = std::fs::remove_file(&state_file);
        st.suspended = false;
        self.save_state(name, &st)?;
        tracing::info!(vm = %name, took = ?started.elapsed(), "resumed");
        Ok(())
    }

    async fn rescue(&self, name: &str, rescue_image: &ImageRef) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (spec, mut st) = self.load(name)?;
        if st.offloaded {
            return Err(invalid(name, "offloaded", "be rescued"));
        }
        if st.rescue.as_ref() == Some(rescue_image)
            && self.live_state(name, &mut st).await?.as_deref() == Some("running")
        {
            return Ok(());
        }
        self.stop_locked(name, &mut st, Duration::ZERO).await?;
        let rdisk = self.dir(name).join("rescue.qcow2");
        let _ = std::fs::remove_file(&rdisk);
        match &rescue_image.disk {
            Some(img) => disk::create_overlay(&rdisk, Path::new(img), 0).await?,
            None => disk::create(&rdisk, self.inner.cfg.min_root_bytes).await?,
        }
        st.rescue = Some(rescue_image.clone());
        self.boot_and_wait(&spec, &mut st, "rescue").await
    }

    async fn unrescue(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (spec, mut st) = self.load(name)?;
        if st.rescue.is_none() {
            if self.live_state(name, &mut st).await?.as_deref() == Some("running") {
                return Ok(());
            }
        } else {
            self.stop_locked(name, &mut st, Duration::ZERO).await?;
            st.rescue = None;
            self.save_state(name, &st)?;
            let _ = std::fs::remove_file(self.dir(name).join("rescue.qcow2"));
        }
        if st.suspended {
            return Err(invalid(name, "suspended", "be unrescued"));
        }
        self.boot_and_wait(&spec, &mut st, "unrescue").await
    }

    async fn rebuild(&self, name: &str, image: &ImageRef) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (mut spec, mut st) = self.load(name)?;
        if st.offloaded {
            return Err(invalid(name, "offloaded", "be rebuilt"));
        }
        let was_running = self.live_state(name, &mut st).await?.is_some();
        if was_running || st.suspended {
            self.stop_locked(name, &mut st, Duration::ZERO).await?;
        }
        let root = self.dir(name).join("root.qcow2");
        spec.image = image.clone();
        spec.root_disk = None;
        spec.root_from = None;
        let fresh = self.dir(name).join("root.rebuild.qcow2");
        self.make_root(&spec, image, &fresh).await?;
        std::fs::rename(&fresh, &root).map_err(other)?;
        if st.instant.take().is_some() {
            // The restored disk is replaced: nothing more to copy.
            self.save_state(name, &st)?;
            self.drop_export(name);
        }
        self.save_spec(&spec)?;
        console::append_line(
            &self.dir(name),
            &format!("[lifeboat] rebuilt from {}", image.id),
        );
        tracing::info!(vm = %name, image = %image.id, "rebuilt");
        if was_running {
            self.boot_and_wait(&spec, &mut st, "rebuild").await?;
        }
        Ok(())
    }

    async fn resize(&self, name: &str, size: &VmSize) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (mut spec, mut st) = self.load(name)?;
        if size.disk_gb < spec.size.disk_gb {
            return Err(HvError::InvalidState("disks cannot shrink".into()));
        }
        self.refuse_while_restoring(name, &st, "be resized")?;
        self.settle_incoming(name, &mut st).await?;
        if let Some(s) = self.live_state(name, &mut st).await? {
            return Err(invalid(name, &s, "be resized (stop it first)"));
        }
        let dir = self.dir(name);
        let root = dir.join("root.qcow2");
        let keep = dir.join("root.pre-resize.qcow2");
        if st.pre_resize.is_none() {
            let tmp = disk::tmp_path(&keep);
            std::fs::copy(&root, &tmp).map_err(other)?;
            std::fs::rename(&tmp, &keep).map_err(other)?;
            st.pre_resize = Some(spec.size);
            self.save_state(name, &st)?;
        }
        disk::grow(&root, disk::gib(size.disk_gb)).await?;
        let eph = dir.join("ephemeral.qcow2");
        if size.ephemeral_gb > 0 && eph.exists() {
            disk::grow(&eph, disk::gib(size.ephemeral_gb)).await?;
        }
        let swap = dir.join("swap.qcow2");
        if size.swap_mb != spec.size.swap_mb {
            let _ = std::fs::remove_file(&swap);
        }
        spec.size = *size;
        self.make_extra_disks(&spec).await?;
        self.save_spec(&spec)?;
        tracing::info!(vm = %name, ?size, "resized");
        Ok(())
    }

    async fn confirm_resize(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        let _ = std::fs::remove_file(self.dir(name).join("root.pre-resize.qcow2"));
        if st.pre_resize.take().is_some() {
            self.save_state(name, &st)?;
        }
        Ok(())
    }

    async fn revert_resize(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (mut spec, mut st) = self.load(name)?;
        let Some(old) = st.pre_resize else {
            return Ok(());
        };
        if self.live_state(name, &mut st).await?.is_some() {
            self.stop_locked(name, &mut st, Duration::ZERO).await?;
        }
        let dir = self.dir(name);
        std::fs::rename(dir.join("root.pre-resize.qcow2"), dir.join("root.qcow2"))
            .map_err(other)?;
        if old.swap_mb != spec.size.swap_mb {
            let _ = std::fs::remove_file(dir.join("swap.qcow2"));
        }
        spec.size = old;
        self.make_extra_disks(&spec).await?;
        self.save_spec(&spec)?;
        st.pre_resize = None;
        self.save_state(name, &st)?;
        tracing::info!(vm = %name, "resize reverted");
        Ok(())
    }

    async fn snapshot_disk(&self, name: &str, dest: &str) -> HvResult<SnapshotInfo> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        self.refuse_while_restoring(name, &st, "be snapshotted")?;
        let dest = PathBuf::from(dest);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(other)?;
        }
        let started = Instant::now();
        let live = self.live_state(name, &mut st).await?.is_some();
        if live {
            migrate::live_backup(self, name, &dest).await?;
        } else {
            disk::convert_to_qcow2(&self.dir(name).join("root.qcow2"), &dest).await?;
        }
        let size = std::fs::metadata(&dest).map_err(other)?.len();
        tracing::info!(vm = %name, live, took = ?started.elapsed(), dest = %dest.display(), "disk snapshot");
        Ok(SnapshotInfo {
            path: dest.to_string_lossy().into_owned(),
            size,
            format: "qcow2".into(),
        })
    }

    async fn backup_disk(
        &self,
        name: &str,
        req: &crate::DiskBackupRequest,
    ) -> HvResult<crate::DiskBackupInfo> {
        self.backup_disk_impl(name, req).await
    }

    async fn restore_status(&self, name: &str) -> HvResult<Option<crate::RestoreProgress>> {
        self.restore_status_impl(name).await
    }

    async fn console_output(&self, name: &str, lines: Option<usize>) -> HvResult<String> {
        self.load(name)?;
        let dir = self.dir(name);
        console::rotate(&dir, self.inner.cfg.serial_log_max);
        Ok(console::tail(&dir, lines))
    }

    async fn crash_dump(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        match self.live_state(name, &mut st).await?.as_deref() {
            Some("running") => {}
            s => return Err(invalid(name, s.unwrap_or("shutdown"), "take an NMI")),
        }
        let mut q = self.qmp(name).await?;
        q.execute("inject-nmi", None)
            .await
            .map_err(|e| qmp_err(name, e))?;
        console::append_line(&self.dir(name), "[lifeboat] crash dump: inject-nmi");
        Ok(())
    }

    async fn set_password(&self, name: &str, user: &str, password: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        match self.live_state(name, &mut st).await?.as_deref() {
            Some("running") => {}
            s => return Err(invalid(name, s.unwrap_or("shutdown"), "set a password")),
        }
        self.ga_retry(
            name,
            "set-password",
            json!({"user": user, "hash": host_side_hash(password)?}),
            Duration::from_secs(30),
        )
        .await?;
        Ok(())
    }

    async fn run_maintenance(&self, name: &str, procedure: &str) -> HvResult<String> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        match self.live_state(name, &mut st).await?.as_deref() {
            Some("running") => {}
            s => return Err(invalid(name, s.unwrap_or("shutdown"), "run maintenance")),
        }
        let v = self
            .ga(
                name,
                "run-maintenance",
                json!({"name": procedure}),
                Duration::from_secs(120),
            )
            .await?;
        let r = &v["result"];
        let out = guest::output_of(&v);
        if r["timed_out"] == true || r["exit_code"].as_i64().is_some_and(|c| c != 0) {
            return Err(HvError::Other(format!(
                "maintenance {procedure} failed (exit {}, timed out {}): {out}",
                r["exit_code"], r["timed_out"]
            )));
        }
        Ok(out)
    }

    async fn offload(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        if st.suspended {
            return Err(invalid(name, "suspended", "be offloaded"));
        }
        self.refuse_while_restoring(name, &st, "be offloaded")?;
        self.settle_incoming(name, &mut st).await?;
        if let Some(s) = self.live_state(name, &mut st).await? {
            return Err(invalid(name, &s, "be offloaded"));
        }
        st.offloaded = true;
        st.want_running = false;
        self.save_state(name, &st)?;
        tracing::info!(vm = %name, "offloaded");
        Ok(())
    }

    async fn prepare_incoming(&self, spec: &VmSpec) -> HvResult<MigrationTarget> {
        valid_name(&spec.name)?;
        let lock = self.op_lock(&spec.name);
        let _g = lock.lock().await;
        migrate::prepare_incoming(self, spec).await
    }

    async fn migrate_to(&self, name: &str, target: &MigrationTarget) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (spec, mut st) = match self.load(name) {
            Ok(x) => x,
            // Already gone: a repeated call after success.
            Err(HvError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if st.rescue.is_some() {
            return Err(invalid(name, "rescued", "migrate"));
        }
        if st.suspended {
            return Err(invalid(name, "suspended", "migrate"));
        }
        self.refuse_while_restoring(name, &st, "migrate")?;
        let live = self.live_state(name, &mut st).await?.is_some();
        migrate::migrate_out(self, &spec, target, live).await?;
        self.kill_vm(name).await?;
        std::fs::remove_dir_all(self.dir(name)).map_err(other)?;
        tracing::info!(vm = %name, live, to = %target.host, "migrated away");
        Ok(())
    }

    async fn finish_incoming(&self, name: &str) -> HvResult<()> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        if st.incoming.is_none() {
            return match self.live_state(name, &mut st).await?.as_deref() {
                Some("running") | Some("paused") => Ok(()),
                s => Err(invalid(name, s.unwrap_or("shutdown"), "finish a migration")),
            };
        }
        self.finish_incoming_locked(name, &mut st).await
    }

    async fn console_socket(&self, name: &str) -> HvResult<String> {
        let st = self.status_of(name).await?;
        if st.power_state != PowerState::Running && st.power_state != PowerState::Paused {
            return Err(invalid(name, st.power_state.name(), "open a console"));
        }
        let sock = self.dir(name).join(process::files::CONSOLE);
        if !sock.exists() {
            return Err(HvError::Unsupported(format!(
                "{name} was started without a console socket; reboot it"
            )));
        }
        Ok(sock.to_string_lossy().into_owned())
    }

    async fn status(&self, name: &str) -> HvResult<VmStatus> {
        self.status_of(name).await
    }

    async fn net_sync(&self, state: &crate::HostNetState) -> HvResult<bool> {
        self.inner.net.sync(state).await
    }

    async fn attach_nic(&self, name: &str, nic: &crate::Nic) -> HvResult<Vec<crate::NicSlot>> {
        hotplug::attach(self, name, nic).await
    }

    async fn detach_nic(&self, name: &str, port_id: &str) -> HvResult<Vec<crate::NicSlot>> {
        hotplug::detach(self, name, port_id).await
    }

    async fn list(&self) -> HvResult<Vec<VmStatus>> {
        let mut v = vec![];
        for name in self.names() {
            match self.status_of(&name).await {
                Ok(s) => v.push(s),
                Err(HvError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(v)
    }
}
