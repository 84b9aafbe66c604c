//! The fake driver: a documented in-process **test double** for the
//! hypervisor. It keeps VMs as records in memory, applies the same state
//! rules a real driver enforces, sleeps a configurable delay per operation
//! and fails on demand. It never touches a real VM; the QEMU driver has its
//! own tests on real VMs.
//!
//! Configuration ([`FakeConfig`]), also from the environment in `lifeboat
//! serve --driver fake`:
//! - `LIFEBOAT_FAKE_DELAY_MS`: delay of every operation (default 0).
//! - `LIFEBOAT_FAKE_FAIL`: `op:count,...` — the next `count` calls of `op`
//!   fail with [`HvError::Injected`] (ops are the trait method names). A test
//!   hook: honoured only with `LIFEBOAT_ENABLE_TEST_HOOKS=1` (or the CLI's
//!   `--enable-test-hooks`), ignored with a warning otherwise.
//! - `LIFEBOAT_FAKE_HOLD_RESTORES=1` (test hook, as above): an instant
//!   restore's background copy does not finish until
//!   [`FakeDriver::hold_restores`] releases it (by default it finishes at the
//!   first `restore_status`). While it runs, `backup_disk`, `resize`,
//!   `offload` and `migrate_to` are refused as the QEMU driver refuses them.
//!
//! With a `state_file`, every change is kept on disk and read back at
//! start, the way a real host keeps its VMs running while the manager
//! restarts: the file holds a JSON object of every VM, and each change
//! appends the changed VM's new state (or its removal) as one line to a
//! journal beside it (`<state_file>` with extension `journal`), written
//! before the operation returns. Once the journal outgrows the VMs, the
//! whole state is written to the file again and the journal emptied, so a
//! change costs one short append, not a rewrite of every VM.
//! [`read_state_file`] reads both, as the driver does at start.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use lifeboat_core::PowerState;
use serde::{Deserialize, Serialize};

use crate::{
    HostInfo, HvError, HvResult, Hypervisor, ImageRef, MigrationTarget, SnapshotInfo, VmSize,
    VmSpec, VmStatus,
};

/// Fake driver settings.
#[derive(Debug, Clone, Default)]
pub struct FakeConfig {
    /// Host name reported.
    pub hostname: String,
    /// Delay of every operation.
    pub delay: Duration,
    /// Pending injected failures: op → remaining count.
    pub failures: HashMap<String, u32>,
    /// Persist VMs to this file.
    pub state_file: Option<PathBuf>,
    /// Capacity offered (vcpus, ram MiB, disk GiB).
    pub capacity: (u32, u64, u64),
    /// Instant restores do not finish their copy until released
    /// ([`FakeDriver::hold_restores`]).
    pub hold_restores: bool,
}

/// Environment variable that turns the test hooks on (shared with the engine's).
pub const TEST_HOOKS_ENV: &str = "LIFEBOAT_ENABLE_TEST_HOOKS";

/// Whether `LIFEBOAT_ENABLE_TEST_HOOKS` is `1` (or `true`, `yes`).
pub fn test_hooks_enabled() -> bool {
    matches!(
        std::env::var(TEST_HOOKS_ENV).as_deref(),
        Ok("1") | Ok("true") | Ok("yes")
    )
}

impl FakeConfig {
    /// Reads `LIFEBOAT_FAKE_DELAY_MS`, and `LIFEBOAT_FAKE_FAIL` when
    /// [`test_hooks_enabled`].
    pub fn from_env(hostname: &str) -> FakeConfig {
        FakeConfig::from_env_with_hooks(hostname, test_hooks_enabled())
    }

    /// Reads `LIFEBOAT_FAKE_DELAY_MS`, and `LIFEBOAT_FAKE_FAIL` only when
    /// `test_hooks` (it is ignored, with a warning, otherwise).
    pub fn from_env_with_hooks(hostname: &str, test_hooks: bool) -> FakeConfig {
        let delay = std::env::var("LIFEBOAT_FAKE_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        let failures = match std::env::var("LIFEBOAT_FAKE_FAIL") {
            Ok(v) if test_hooks => parse_failures(&v),
            Ok(_) => {
                tracing::warn!(
                    "LIFEBOAT_FAKE_FAIL ignored: test hooks are off ({TEST_HOOKS_ENV}=1 turns them on)"
                );
                HashMap::new()
            }
            Err(_) => HashMap::new(),
        };
        let hold_restores = test_hooks
            && matches!(
                std::env::var("LIFEBOAT_FAKE_HOLD_RESTORES").as_deref(),
                Ok("1") | Ok("true") | Ok("yes")
            );
        FakeConfig {
            hostname: hostname.to_string(),
            delay,
            failures,
            state_file: None,
            capacity: (100_000, 1 << 40, 1 << 30),
            hold_restores,
        }
    }
}

/// Parses `op:count,op:count`.
pub fn parse_failures(s: &str) -> HashMap<String, u32> {
    s.split(',')
        .filter_map(|p| {
            let (op, n) = p.split_once(':').unwrap_or((p, "1"));
            let op = op.trim();
            (!op.is_empty()).then(|| (op.to_string(), n.trim().parse().unwrap_or(1)))
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct FakeVm {
    spec: VmSpec,
    power: PowerState,
    rescued: bool,
    pre_resize: Option<VmSize>,
    offloaded: bool,
    incoming: bool,
    console: Vec<String>,
    boots: u32,
    /// An instant restore's copy has not finished.
    #[serde(default)]
    restoring: bool,
}

impl FakeVm {
    fn log(&mut self, line: String) {
        self.console.push(line);
        let n = self.console.len();
        if n > 1000 {
            self.console.drain(..n - 1000);
        }
    }
    fn boot(&mut self) {
        self.boots += 1;
        self.power = PowerState::Running;
        let line = format!("[fake] {} booted (boot {})", self.spec.hostname, self.boots);
        self.log(line);
        self.log("LIFEBOAT-READY".into());
    }
}

/// The fake hypervisor. See the module documentation.
pub struct FakeDriver {
    cfg: Mutex<FakeConfig>,
    vms: Mutex<BTreeMap<String, FakeVm>>,
    /// The last network state the manager pushed (`net_sync`).
    net: Mutex<Option<crate::HostNetState>>,
    /// The open journal and its length in lines, held across reading a VM
    /// and appending it (and across a compaction), so the journal's last
    /// line for a VM is its newest state: two unserialised appends could
    /// write an older state after a newer one (a destroyed VM came back
    /// after a kill -9).
    journal: Mutex<Journal>,
    /// Per-operation delays that override the common one.
    op_delay: Mutex<BTreeMap<String, Duration>>,
}

impl FakeDriver {
    /// The last network state pushed with `net_sync` (the fake has no data plane: it only
    /// records it).
    pub fn net_state(&self) -> Option<crate::HostNetState> {
        self.net.lock().unwrap().clone()
    }

    /// A fake host; loads `state_file` (and its journal) if it exists.
    pub fn new(cfg: FakeConfig) -> FakeDriver {
        let (vms, lines) = match &cfg.state_file {
            Some(p) => {
                let (vms, lines, valid) = load(p);
                // A torn last line goes, so that the next append starts a line.
                if let Ok(f) = std::fs::OpenOptions::new()
                    .write(true)
                    .open(journal_path(p))
                {
                    if f.metadata().is_ok_and(|m| m.len() > valid) {
                        let _ = f.set_len(valid);
                    }
                }
                (vms, lines)
            }
            None => (BTreeMap::new(), 0),
        };
        FakeDriver {
            cfg: Mutex::new(cfg),
            vms: Mutex::new(vms),
            net: Mutex::new(None),
            journal: Mutex::new(Journal { file: None, lines }),
            op_delay: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes the next `count` calls of `op` fail.
    pub fn inject_failure(&self, op: &str, count: u32) {
        self.cfg
            .lock()
            .unwrap()
            .failures
            .insert(op.to_string(), count);
    }

    /// Holds (true) or releases (false) every instant restore's background copy.
    pub fn hold_restores(&self, hold: bool) {
        self.cfg.lock().unwrap().hold_restores = hold;
    }

    fn held(&self) -> bool {
        self.cfg.lock().unwrap().hold_restores
    }

    /// Sets the per-operation delay.
    pub fn set_delay(&self, d: Duration) {
        self.cfg.lock().unwrap().delay = d;
    }

    /// Holds every call of `op` for `d` instead of the common delay (to
    /// order races in tests: a slow `define` against a quick `destroy`).
    pub fn set_op_delay(&self, op: &str, d: Duration) {
        self.op_delay.lock().unwrap().insert(op.to_string(), d);
    }

    /// The spec the fake holds for VM `name` (its NICs follow attach/detach).
    pub fn vm_spec(&self, name: &str) -> Option<VmSpec> {
        self.vms.lock().unwrap().get(name).map(|v| v.spec.clone())
    }

    /// Simulates a VM dying outside Lifeboat (for reconciliation tests).
    pub fn kill_outside(&self, name: &str) -> bool {
        let mut vms = self.vms.lock().unwrap();
        let found = vms
            .get_mut(name)
            .map(|v| v.power = PowerState::Shutdown)
            .is_some();
        drop(vms);
        self.persist(name);
        found
    }

    async fn enter(&self, op: &str) -> HvResult<()> {
        let delay = {
            let mut cfg = self.cfg.lock().unwrap();
            if let Some(n) = cfg.failures.get_mut(op) {
                if *n > 0 {
                    *n -= 1;
                    return Err(HvError::Injected(op.to_string()));
                }
            }
            self.op_delay
                .lock()
                .unwrap()
                .get(op)
                .copied()
                .unwrap_or(cfg.delay)
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// Makes VM `name`'s current state (or its absence) durable: appends it
    /// to the journal, or rewrites the state file when the journal has
    /// grown past the VMs it describes. A failure to write is logged (the
    /// fake has no disk errors to report).
    fn persist(&self, name: &str) {
        let Some(path) = self.cfg.lock().unwrap().state_file.clone() else {
            return;
        };
        let mut j = self.journal.lock().unwrap();
        if let Err(e) = self.persist_locked(&path, &mut j, name) {
            tracing::warn!("fake driver state {}: {e}", path.display());
            j.file = None;
        }
    }

    fn persist_locked(
        &self,
        path: &std::path::Path,
        j: &mut Journal,
        name: &str,
    ) -> std::io::Result<()> {
        use std::io::Write;
        let vms = self.vms.lock().unwrap();
        if j.lines >= COMPACT_AFTER.max(2 * vms.len()) {
            // Compaction: the whole state to the file (write, rename), then
            // the journal emptied. A crash in between replays the journal
            // over the new file, which ends in the same states.
            let data = serde_json::to_vec(&*vms).expect("serialisable");
            drop(vms);
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, data)?;
            std::fs::rename(tmp, path)?;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(journal_path(path))?;
            f.set_len(0)?;
            j.file = Some(f);
            j.lines = 0;
            return Ok(());
        }
        let mut line = serde_json::to_vec(&(name, vms.get(name))).expect("serialisable");
        drop(vms);
        line.push(b'\n');
        if j.file.is_none() {
            j.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(journal_path(path))?,
            );
        }
        j.file.as_mut().expect("opened").write_all(&line)?;
        j.lines += 1;
        Ok(())
    }

    /// Runs `f` on the named VM and persists it.
    fn with_vm<T>(&self, name: &str, f: impl FnOnce(&mut FakeVm) -> HvResult<T>) -> HvResult<T> {
        let r = {
            let mut vms = self.vms.lock().unwrap();
            let vm = vms
                .get_mut(name)
                .ok_or_else(|| HvError::NotFound(name.to_string()))?;
            f(vm)
        };
        self.persist(name);
        r
    }

    /// Reads the named VM (nothing is written).
    fn read_vm<T>(&self, name: &str, f: impl FnOnce(&FakeVm) -> HvResult<T>) -> HvResult<T> {
        let vms = self.vms.lock().unwrap();
        let vm = vms
            .get(name)
            .ok_or_else(|| HvError::NotFound(name.to_string()))?;
        f(vm)
    }
}

/// The journal is rewritten into the state file after this many lines (or
/// twice as many as there are VMs, if more).
const COMPACT_AFTER: usize = 1024;

/// The open journal of the state file.
struct Journal {
    file: Option<std::fs::File>,
    /// Lines in it.
    lines: usize,
}

/// The journal beside a state file.
fn journal_path(state_file: &std::path::Path) -> PathBuf {
    state_file.with_extension("journal")
}

/// The VMs in a state file and its journal (the journal's whole lines
/// applied in order; a torn last line, from a kill during its write, is
/// ignored), the journal's length in lines and the bytes of those lines.
fn load(state_file: &std::path::Path) -> (BTreeMap<String, FakeVm>, usize, u64) {
    let mut vms: BTreeMap<String, FakeVm> = std::fs::read(state_file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let (mut lines, mut valid) = (0, 0u64);
    if let Ok(j) = std::fs::read(journal_path(state_file)) {
        let mut rest = &j[..];
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            match serde_json::from_slice::<(String, Option<FakeVm>)>(&rest[..end]) {
                Ok((name, Some(vm))) => {
                    vms.insert(name, vm);
                }
                Ok((name, None)) => {
                    vms.remove(&name);
                }
                Err(_) => break,
            }
            lines += 1;
            valid += end as u64 + 1;
            rest = &rest[end + 1..];
        }
    }
    (vms, lines, valid)
}

/// The VMs a fake host keeps in `state_file` (with its journal), as one
/// JSON object from VM name to its record: what the host would find after
/// a restart. For tests that look at a fake host from outside.
pub fn read_state_file(state_file: &std::path::Path) -> serde_json::Value {
    serde_json::to_value(load(state_file).0).expect("serialisable")
}

fn need(vm: &FakeVm, ok: &[PowerState], what: &str) -> HvResult<()> {
    if ok.contains(&vm.power) {
        Ok(())
    } else {
        Err(HvError::InvalidState(format!(
            "{} is {} and cannot {what}",
            vm.spec.name,
            vm.power.name()
        )))
    }
}

fn not_restoring(vm: &FakeVm, what: &str) -> HvResult<()> {
    if vm.restoring {
        return Err(HvError::InvalidState(format!(
            "{} is being restored (instant restore: its disk is still being copied from the \
             snapshot store) and cannot {what} until the copy is done",
            vm.spec.name
        )));
    }
    Ok(())
}

fn not_offloaded(vm: &FakeVm) -> HvResult<()> {
    if vm.offloaded {
        Err(HvError::InvalidState(format!(
            "{} is offloaded",
            vm.spec.name
        )))
    } else {
        Ok(())
    }
}

use PowerState::{Paused, Running, Shutdown, Suspended};

#[async_trait]
impl Hypervisor for FakeDriver {
    fn driver(&self) -> &'static str {
        "fake"
    }

    async fn host_info(&self) -> HvResult<HostInfo> {
        let cfg = self.cfg.lock().unwrap();
        Ok(HostInfo {
            hostname: cfg.hostname.clone(),
            driver: "fake".into(),
            accelerator: "none".into(),
            vcpus: cfg.capacity.0,
            ram_mb: cfg.capacity.1,
            disk_gb: cfg.capacity.2,
        })
    }

    async fn define(&self, spec: &VmSpec) -> HvResult<()> {
        self.enter("define").await?;
        if let Some(src) = &spec.root_from {
            if !self.vms.lock().unwrap().contains_key(&spec.name) {
                let disk = fake_disk_from_store(src.clone()).await?;
                if !disk.starts_with(format!("fake-disk {}\n", spec.server_id).as_bytes()) {
                    return Err(HvError::Other(format!(
                        "store snapshot {} is not a disk of server {}",
                        src.snapshot, spec.server_id
                    )));
                }
            }
        }
        let mut vms = self.vms.lock().unwrap();
        match vms.get_mut(&spec.name) {
            Some(vm) if vm.offloaded => {
                vm.offloaded = false;
                vm.spec = spec.clone();
            }
            Some(_) => {}
            None => {
                vms.insert(
                    spec.name.clone(),
                    FakeVm {
                        spec: spec.clone(),
                        power: Shutdown,
                        rescued: false,
                        pre_resize: None,
                        offloaded: false,
                        incoming: false,
                        console: vec![],
                        boots: 0,
                        restoring: spec.root_from.as_ref().is_some_and(|d| d.instant),
                    },
                );
            }
        }
        drop(vms);
        self.persist(&spec.name);
        Ok(())
    }

    async fn destroy(&self, name: &str) -> HvResult<()> {
        self.enter("destroy").await?;
        self.vms.lock().unwrap().remove(name);
        self.persist(name);
        Ok(())
    }

    async fn start(&self, name: &str) -> HvResult<()> {
        self.enter("start").await?;
        self.with_vm(name, |vm| {
            not_offloaded(vm)?;
            if vm.power != Running {
                need(vm, &[Shutdown, PowerState::Crashed], "start")?;
                vm.boot();
            }
            Ok(())
        })
    }

    async fn stop(&self, name: &str, _timeout_secs: u64) -> HvResult<()> {
        self.enter("stop").await?;
        self.with_vm(name, |vm| {
            vm.power = Shutdown;
            vm.log("[fake] powered off".into());
            Ok(())
        })
    }

    async fn reboot(&self, name: &str, hard: bool) -> HvResult<()> {
        self.enter(if hard { "reboot_hard" } else { "reboot" })
            .await?;
        self.with_vm(name, |vm| {
            not_offloaded(vm)?;
            if !hard {
                need(vm, &[Running], "reboot softly")?;
            }
            vm.boot();
            Ok(())
        })
    }

    async fn pause(&self, name: &str) -> HvResult<()> {
        self.enter("pause").await?;
        self.with_vm(name, |vm| {
            if vm.power != Paused {
                need(vm, &[Running], "pause")?;
                vm.power = Paused;
            }
            Ok(())
        })
    }

    async fn unpause(&self, name: &str) -> HvResult<()> {
        self.enter("unpause").await?;
        self.with_vm(name, |vm| {
            if vm.power != Running {
                need(vm, &[Paused], "unpause")?;
                vm.power = Running;
            }
            Ok(())
        })
    }

    async fn suspend(&self, name: &str) -> HvResult<()> {
        self.enter("suspend").await?;
        self.with_vm(name, |vm| {
            if vm.power != Suspended {
                need(vm, &[Running], "suspend")?;
                vm.power = Suspended;
            }
            Ok(())
        })
    }

    async fn resume(&self, name: &str) -> HvResult<()> {
        self.enter("resume").await?;
        self.with_vm(name, |vm| {
            if vm.power != Running {
                need(vm, &[Suspended], "resume")?;
                vm.power = Running;
            }
            Ok(())
        })
    }

    async fn rescue(&self, name: &str, _rescue_image: &ImageRef) -> HvResult<()> {
        self.enter("rescue").await?;
        self.with_vm(name, |vm| {
            not_offloaded(vm)?;
            vm.rescued = true;
            vm.log("[fake] rescue boot".into());
            vm.boot();
            Ok(())
        })
    }

    async fn unrescue(&self, name: &str) -> HvResult<()> {
        self.enter("unrescue").await?;
        self.with_vm(name, |vm| {
            vm.rescued = false;
            vm.boot();
            Ok(())
        })
    }

    async fn rebuild(&self, name: &str, image: &ImageRef) -> HvResult<()> {
        self.enter("rebuild").await?;
        self.with_vm(name, |vm| {
            not_offloaded(vm)?;
            vm.spec.image = image.clone();
            vm.log(format!("[fake] rebuilt from {}", image.id));
            Ok(())
        })
    }

    async fn resize(&self, name: &str, size: &VmSize) -> HvResult<()> {
        self.enter("resize").await?;
        self.with_vm(name, |vm| {
            not_restoring(vm, "be resized")?;
            if size.disk_gb < vm.spec.size.disk_gb {
                return Err(HvError::InvalidState("disks cannot shrink".into()));
            }
            if vm.pre_resize.is_none() {
                vm.pre_resize = Some(vm.spec.size);
            }
            vm.spec.size = *size;
            Ok(())
        })
    }

    async fn confirm_resize(&self, name: &str) -> HvResult<()> {
        self.enter("confirm_resize").await?;
        self.with_vm(name, |vm| {
            vm.pre_resize = None;
            Ok(())
        })
    }

    async fn revert_resize(&self, name: &str) -> HvResult<()> {
        self.enter("revert_resize").await?;
        self.with_vm(name, |vm| {
            if let Some(old) = vm.pre_resize.take() {
                vm.spec.size = old;
            }
            Ok(())
        })
    }

    async fn snapshot_disk(&self, name: &str, dest: &str) -> HvResult<SnapshotInfo> {
        self.enter("snapshot_disk").await?;
        let spec = self.read_vm(name, |vm| Ok(vm.spec.clone()))?;
        let body = serde_json::to_vec(&spec).expect("serialisable");
        std::fs::write(dest, &body).map_err(|e| HvError::Other(format!("{dest}: {e}")))?;
        Ok(SnapshotInfo {
            path: dest.to_string(),
            size: body.len() as u64,
            format: "fake".into(),
        })
    }

    async fn backup_disk(
        &self,
        name: &str,
        req: &crate::DiskBackupRequest,
    ) -> HvResult<crate::DiskBackupInfo> {
        self.enter("backup_disk").await?;
        let spec = self.read_vm(name, |vm| {
            not_restoring(vm, "be backed up")?;
            Ok(vm.spec.clone())
        })?;
        let req = req.clone();
        tokio::task::spawn_blocking(move || fake_backup(&spec, &req))
            .await
            .map_err(|e| HvError::Other(e.to_string()))?
    }

    async fn restore_status(&self, name: &str) -> HvResult<Option<crate::RestoreProgress>> {
        self.enter("restore_status").await?;
        // The fake copies nothing: an instant restore is complete at its first status,
        // unless the test holds it.
        let held = self.held();
        self.with_vm(name, |vm| {
            if vm.restoring && !held {
                vm.restoring = false;
            }
            let running = vm.power == Running;
            let restoring = vm.restoring;
            Ok(vm
                .spec
                .root_from
                .as_ref()
                .filter(|d| d.instant)
                .map(|d| crate::RestoreProgress {
                    snapshot: d.snapshot.clone(),
                    disk: d.disk.clone(),
                    done: !restoring,
                    copying: restoring && running,
                    copied: if restoring { 0 } else { 64 << 10 },
                    total: 64 << 10,
                    jobs: 1,
                    ..Default::default()
                }))
        })
    }

    async fn console_output(&self, name: &str, lines: Option<usize>) -> HvResult<String> {
        self.enter("console_output").await?;
        self.read_vm(name, |vm| {
            let n = lines.unwrap_or(vm.console.len()).min(vm.console.len());
            let mut s = vm.console[vm.console.len() - n..].join("\n");
            if n > 0 {
                s.push('\n');
            }
            Ok(s)
        })
    }

    async fn crash_dump(&self, name: &str) -> HvResult<()> {
        self.enter("crash_dump").await?;
        self.with_vm(name, |vm| {
            need(vm, &[Running], "take an NMI")?;
            vm.log("[fake] NMI received".into());
            Ok(())
        })
    }

    async fn set_password(&self, name: &str, user: &str, _password: &str) -> HvResult<()> {
        self.enter("set_password").await?;
        self.with_vm(name, |vm| {
            need(vm, &[Running], "set a password")?;
            vm.log(format!("[fake] password of {user} changed"));
            Ok(())
        })
    }

    async fn run_maintenance(&self, name: &str, procedure: &str) -> HvResult<String> {
        self.enter("run_maintenance").await?;
        self.with_vm(name, |vm| {
            need(vm, &[Running], "run maintenance")?;
            let out = format!("[fake] maintenance {procedure} ok");
            vm.log(out.clone());
            Ok(out)
        })
    }

    async fn offload(&self, name: &str) -> HvResult<()> {
        self.enter("offload").await?;
        self.with_vm(name, |vm| {
            not_restoring(vm, "be offloaded")?;
            need(vm, &[Shutdown, PowerState::Crashed], "be offloaded")?;
            vm.offloaded = true;
            Ok(())
        })
    }

    async fn prepare_incoming(&self, spec: &VmSpec) -> HvResult<MigrationTarget> {
        self.enter("prepare_incoming").await?;
        // As the qemu driver opens each NIC's tap: once the manager pushes a data plane to
        // this host, an incoming VM's ports must be in it.
        if let Some(net) = self.net.lock().unwrap().as_ref() {
            for n in &spec.nics {
                if !net.desired.ports.iter().any(|p| p.id == n.port_id) {
                    return Err(HvError::Other(format!(
                        "port tap of {} is not plugged on this host",
                        n.port_id
                    )));
                }
            }
        }
        let host = self.cfg.lock().unwrap().hostname.clone();
        let mut vms = self.vms.lock().unwrap();
        vms.entry(spec.name.clone()).or_insert_with(|| FakeVm {
            spec: spec.clone(),
            power: Shutdown,
            rescued: false,
            pre_resize: None,
            offloaded: false,
            incoming: true,
            console: vec![],
            boots: 0,
            restoring: false,
        });
        drop(vms);
        self.persist(&spec.name);
        Ok(MigrationTarget {
            host,
            uri: format!("fake:{}", spec.name),
            disk: format!("fake:{}", spec.name),
        })
    }

    async fn migrate_to(&self, name: &str, target: &MigrationTarget) -> HvResult<()> {
        self.enter("migrate_to").await?;
        // The fake cannot reach another process's memory: the destination
        // learns the power state in finish_incoming from the manager.
        let _ = target;
        self.read_vm(name, |vm| not_restoring(vm, "migrate"))?;
        self.vms.lock().unwrap().remove(name);
        self.persist(name);
        Ok(())
    }

    async fn finish_incoming(&self, name: &str) -> HvResult<()> {
        self.enter("finish_incoming").await?;
        self.with_vm(name, |vm| {
            vm.incoming = false;
            vm.boot();
            Ok(())
        })
    }

    async fn console_socket(&self, name: &str) -> HvResult<String> {
        let hostname = self.read_vm(name, |vm| {
            need(vm, &[Running, Paused], "open a console")?;
            Ok(vm.spec.hostname.clone())
        })?;
        // A fake getty: answers every input with a login prompt.
        let dir = {
            let cfg = self.cfg.lock().unwrap();
            cfg.state_file
                .as_ref()
                .and_then(|p| p.parent().map(|d| d.to_path_buf()))
                .unwrap_or_else(std::env::temp_dir)
        };
        let path = dir.join(format!("{name}.console.sock"));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| HvError::Other(format!("{}: {e}", path.display())))?;
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut conn, _)) = listener.accept().await {
                let prompt = format!("\r\n{hostname} login: ");
                tokio::spawn(async move {
                    let mut buf = [0u8; 256];
                    while let Ok(n) = conn.read(&mut buf).await {
                        if n == 0 || conn.write_all(prompt.as_bytes()).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(path.display().to_string())
    }

    async fn status(&self, name: &str) -> HvResult<VmStatus> {
        self.read_vm(name, |vm| Ok(status_of(vm)))
    }

    async fn list(&self) -> HvResult<Vec<VmStatus>> {
        Ok(self.vms.lock().unwrap().values().map(status_of).collect())
    }

    async fn attach_nic(&self, name: &str, nic: &crate::Nic) -> HvResult<Vec<crate::NicSlot>> {
        self.enter("attach_nic").await?;
        self.with_vm(name, |vm| {
            not_offloaded(vm)?;
            need(vm, &[Running, Paused, Shutdown], "attach an interface")?;
            if !vm.spec.nics.iter().any(|n| n.port_id == nic.port_id) {
                let slot = (0x10..=0x1f)
                    .find(|s| !vm.spec.nics.iter().any(|n| n.pci_slot == Some(*s)))
                    .ok_or_else(|| HvError::Other("no free PCI slot".into()))?;
                let mut n = nic.clone();
                n.pci_slot = Some(slot);
                vm.spec.nics.push(n);
                vm.log(format!("nic {} attached", nic.mac));
            }
            Ok(fake_slots(&vm.spec))
        })
    }

    async fn detach_nic(&self, name: &str, port_id: &str) -> HvResult<Vec<crate::NicSlot>> {
        self.enter("detach_nic").await?;
        self.with_vm(name, |vm| {
            if let Some(i) = vm.spec.nics.iter().position(|n| n.port_id == port_id) {
                let n = vm.spec.nics.remove(i);
                vm.log(format!("nic {} detached", n.mac));
            }
            Ok(fake_slots(&vm.spec))
        })
    }

    async fn net_sync(&self, state: &crate::HostNetState) -> HvResult<bool> {
        *self.net.lock().unwrap() = Some(state.clone());
        Ok(false)
    }
}

/// The fake's PCI layout: create-time NICs from slot 3 in order, hot-plugged ones where they
/// were put.
fn fake_slots(spec: &VmSpec) -> Vec<crate::NicSlot> {
    spec.nics
        .iter()
        .enumerate()
        .map(|(i, n)| crate::NicSlot {
            port_id: n.port_id.clone(),
            slot: n.pci_slot.unwrap_or(3 + i as u8),
        })
        .collect()
}

fn status_of(vm: &FakeVm) -> VmStatus {
    VmStatus {
        name: vm.spec.name.clone(),
        power_state: if vm.offloaded { Shutdown } else { vm.power },
        guest_ready: vm.power == Running,
        pid: None,
    }
}

/// The fake's "disk": 64 KiB naming the server, really stored in the
/// snapshot store (so shelve/unshelve and images through the store are
/// exercised without VMs).
fn fake_disk(spec: &VmSpec) -> Vec<u8> {
    let mut d = format!("fake-disk {}\n{}\n", spec.server_id, spec.hostname).into_bytes();
    d.resize(64 << 10, 0);
    d
}

fn fake_store_err(e: lifeboat_datastore::Error) -> HvError {
    HvError::Other(format!("snapshot store: {e}"))
}

/// Backs the fake disk up (blocking).
fn fake_backup(spec: &VmSpec, req: &crate::DiskBackupRequest) -> HvResult<crate::DiskBackupInfo> {
    use lifeboat_datastore::backup::{BackupRequest, DiskSource, FileReader};
    let ds = req.store.open().map_err(fake_store_err)?;
    let kind = req
        .kind
        .parse()
        .map_err(|e: lifeboat_datastore::Error| HvError::Other(e.to_string()))?;
    let mut meta = lifeboat_datastore::SnapshotMeta::new(kind);
    meta.server = Some(req.server.clone());
    meta.backup_type = req.backup_type.clone();
    meta.image = req.image.clone();
    meta.properties = req.properties.clone();
    let tmp = std::env::temp_dir().join(format!(
        "lifeboat-fake-disk-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::write(&tmp, fake_disk(spec)).map_err(|e| HvError::Other(e.to_string()))?;
    let reader = FileReader::open(&tmp);
    let _ = std::fs::remove_file(&tmp);
    let reader = reader.map_err(|e| HvError::Other(e.to_string()))?;
    let m = ds
        .backup(
            BackupRequest {
                meta,
                parent: None,
                disks: vec![DiskSource {
                    name: "root".into(),
                    reader: std::sync::Arc::new(reader),
                    dirty: None,
                }],
            },
            &|_| {},
        )
        .map_err(fake_store_err)?;
    let digest = if req.digest {
        Some(ds.digest_disk(&m.id, "root").map_err(fake_store_err)?)
    } else {
        None
    };
    let d = &m.disks[0];
    Ok(crate::DiskBackupInfo {
        snapshot: m.id.clone(),
        disk: "root".into(),
        size: d.size,
        parent: None,
        mode: d.mode.clone(),
        read_bytes: d.read_bytes,
        new_stored_bytes: d.new_stored_bytes,
        live: false,
        frozen: false,
        note: None,
        md5: digest.as_ref().map(|d| d.md5.clone()),
        sha512: digest.map(|d| d.sha512),
    })
}

/// Reads a fake disk back from the store.
async fn fake_disk_from_store(src: crate::StoreDisk) -> HvResult<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let ds = src.store.open().map_err(fake_store_err)?;
        let m = ds.manifest(&src.snapshot).map_err(fake_store_err)?;
        let idx = ds.index(&m, &src.disk).map_err(fake_store_err)?;
        let mut buf = vec![0u8; idx.size.min(4096) as usize];
        ds.read_at(&idx, &mut buf, 0).map_err(fake_store_err)?;
        Ok(buf)
    })
    .await
    .map_err(|e| HvError::Other(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_fail_needs_the_test_hooks() {
        std::env::set_var("LIFEBOAT_FAKE_FAIL", "start:2");
        let off = FakeConfig::from_env_with_hooks("h", false);
        let on = FakeConfig::from_env_with_hooks("h", true);
        std::env::remove_var("LIFEBOAT_FAKE_FAIL");
        assert!(off.failures.is_empty());
        assert_eq!(on.failures.get("start"), Some(&2));
    }

    fn spec(name: &str) -> VmSpec {
        VmSpec {
            name: name.into(),
            server_id: "id".into(),
            hostname: "h".into(),
            size: VmSize {
                vcpus: 1,
                ram_mb: 128,
                disk_gb: 1,
                ephemeral_gb: 0,
                swap_mb: 0,
            },
            image: ImageRef::default(),
            nics: vec![],
            user_data: None,
            root_disk: None,
            root_from: None,
            config_drive: None,
        }
    }

    #[tokio::test]
    async fn lifecycle_and_rules() {
        let d = FakeDriver::new(FakeConfig::from_env("h1"));
        d.define(&spec("vm1")).await.unwrap();
        d.define(&spec("vm1")).await.unwrap();
        assert!(matches!(
            d.pause("vm1").await,
            Err(HvError::InvalidState(_))
        ));
        d.start("vm1").await.unwrap();
        d.start("vm1").await.unwrap();
        d.pause("vm1").await.unwrap();
        assert_eq!(d.status("vm1").await.unwrap().power_state, Paused);
        assert!(d.reboot("vm1", false).await.is_err());
        d.reboot("vm1", true).await.unwrap();
        d.suspend("vm1").await.unwrap();
        d.resume("vm1").await.unwrap();
        let out = d.console_output("vm1", Some(1)).await.unwrap();
        assert_eq!(out, "LIFEBOAT-READY\n");
        d.resize(
            "vm1",
            &VmSize {
                disk_gb: 2,
                ..spec("x").size
            },
        )
        .await
        .unwrap();
        d.revert_resize("vm1").await.unwrap();
        assert!(d.offload("vm1").await.is_err());
        d.stop("vm1", 0).await.unwrap();
        d.offload("vm1").await.unwrap();
        assert!(d.start("vm1").await.is_err());
        d.destroy("vm1").await.unwrap();
        d.destroy("vm1").await.unwrap();
        assert!(matches!(d.status("vm1").await, Err(HvError::NotFound(_))));
    }

    #[tokio::test]
    async fn failure_injection_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = FakeConfig::from_env("h1");
        cfg.state_file = Some(dir.path().join("fake.json"));
        cfg.failures = parse_failures("start:2");
        let d = FakeDriver::new(cfg.clone());
        d.define(&spec("vm1")).await.unwrap();
        assert_eq!(d.start("vm1").await, Err(HvError::Injected("start".into())));
        assert!(d.start("vm1").await.is_err());
        d.start("vm1").await.unwrap();
        cfg.failures.clear();
        let again = FakeDriver::new(cfg);
        assert_eq!(again.status("vm1").await.unwrap().power_state, Running);
    }

    /// Changes go to the journal, which is folded into the state file once
    /// it outgrows the VMs; a restart sees the newest state of each VM
    /// either way, also after a torn last line.
    #[tokio::test]
    async fn journal_and_compaction_keep_the_newest_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("fake.json");
        let mut cfg = FakeConfig::from_env("h1");
        cfg.state_file = Some(file.clone());
        let d = FakeDriver::new(cfg.clone());
        const N: usize = 600;
        for i in 0..N {
            d.define(&spec(&format!("vm{i}"))).await.unwrap();
        }
        // 600 lines so far; the journal is folded in at 1200 (twice the VMs).
        for i in 0..700 {
            if i % 2 == 0 {
                d.start("vm3").await.unwrap();
            } else {
                d.stop("vm3", 0).await.unwrap();
            }
        }
        d.start("vm3").await.unwrap();
        d.destroy("vm4").await.unwrap();
        assert!(d.journal.lock().unwrap().lines < 200);
        // Reads write nothing.
        let before = std::fs::metadata(journal_path(&file)).unwrap().len();
        d.status("vm3").await.unwrap();
        d.console_output("vm3", None).await.unwrap();
        assert_eq!(
            std::fs::metadata(journal_path(&file)).unwrap().len(),
            before
        );
        // The file was written once, before vm4 was destroyed.
        let file_only: BTreeMap<String, serde_json::Value> =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(file_only.len(), N);
        let seen = read_state_file(&file);
        assert_eq!(seen.as_object().unwrap().len(), N - 1);
        assert!(seen.get("vm4").is_none());
        assert_eq!(seen["vm3"]["power"], serde_json::json!(Running));
        // A torn last line (killed mid-write) is ignored.
        {
            use std::io::Write;
            let mut j = std::fs::OpenOptions::new()
                .append(true)
                .open(journal_path(&file))
                .unwrap();
            j.write_all(br#"["vm3",{"spec":"#).unwrap();
        }
        let again = FakeDriver::new(cfg.clone());
        assert_eq!(again.status("vm3").await.unwrap().power_state, Running);
        assert!(again.status("vm4").await.is_err());
        assert_eq!(again.list().await.unwrap().len(), N - 1);
        // The next change after the torn line is read back.
        again.stop("vm3", 0).await.unwrap();
        let third = FakeDriver::new(cfg);
        assert_eq!(third.status("vm3").await.unwrap().power_state, Shutdown);
    }
}
