//! Instant restore: a VM restored from a snapshot boots at once from the store.
//!
//! - `root.qcow2` is created empty (the snapshot's size, or the flavor's when larger); at
//!   every launch while the restore runs its blockdev gets a **backing node** that is an NBD
//!   client of `restore.sock` in the VM directory (`reconnect-delay`, so a host agent
//!   restart does not fail the guest's reads).
//! - The host agent serves that socket itself ([`lifeboat_datastore::nbd_server`]): the
//!   snapshot's disk, read-only, every chunk fetched from the store, verified and decoded
//!   when first read.
//! - A `block-stream` job copies every cluster the top does not have yet from the backing
//!   into `root.qcow2` and then drops the backing: the guest runs (and writes into the top)
//!   during the copy, reads of clusters not copied yet go to the store.
//! - The copy is resumable: clusters already in the top are skipped. A failed job (export
//!   error), a qemu that died, or a host agent that restarted leaves the state `copying`;
//!   [`QemuDriver::advance_instant`] (called by `restore_status` and every housekeeping
//!   round) serves the export again and starts a new job. Nothing the guest wrote is lost:
//!   it is in the top, which the stream never overwrites.
//! - Operations that need the whole disk locally (backup, snapshot, migration, offload,
//!   resize) are refused until the copy is done.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use lifeboat_datastore::nbd_server::NbdServer;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::backup::open_store;
use super::{disk, other, qmp_err, DriverState, QemuDriver};
use crate::{HvError, HvResult, RestoreProgress, StoreDisk};

/// The copy job's id.
pub const JOB: &str = "lb-restore";
/// NBD export name of the snapshot's disk.
pub const EXPORT: &str = "root";
/// Socket of the export in the VM directory.
pub const SOCKET: &str = "restore.sock";

/// Driver state of an instant restore (in `state.json`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct InstantState {
    /// The snapshot disk (store location as this host reaches it).
    pub src: StoreDisk,
    /// Disk size of the snapshot.
    pub size: u64,
    /// When the restore started (Unix ms).
    pub started_ms: u64,
    /// The copy finished: the backing is gone from `root.qcow2`.
    pub done: bool,
    /// Copy jobs started.
    pub jobs: u32,
    /// Last failure.
    pub error: Option<String>,
    /// Milliseconds from start to the end of the copy.
    pub took_ms: Option<u64>,
}

impl InstantState {
    /// Whether launches need the NBD backing.
    pub fn active(st: &DriverState) -> Option<&InstantState> {
        st.instant.as_ref().filter(|i| !i.done)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The blockdev `backing` of the root node while an instant restore runs.
pub fn backing_json(sock: &Path, node: &str) -> Value {
    json!({
        "driver": "nbd",
        "node-name": format!("{node}-src"),
        "server": {"type": "unix", "path": sock},
        "export": EXPORT,
        "read-only": true,
        // The host agent may restart while the guest runs: its reads wait for the
        // export to come back instead of failing.
        "reconnect-delay": 60,
        "open-timeout": 30,
    })
}

impl QemuDriver {
    /// Creates the empty top `path` for an instant restore of `src`; returns the state.
    pub(super) async fn make_instant_root(
        &self,
        src: &StoreDisk,
        min_size: u64,
        path: &Path,
    ) -> HvResult<InstantState> {
        if src.format.as_deref() == Some("qcow2") {
            return Err(HvError::Unsupported(
                "instant restore serves raw disk snapshots, not uploaded qcow2 files".into(),
            ));
        }
        let mut src = src.clone();
        src.store = self.store_location(&src.store);
        let s2 = src.clone();
        let size = tokio::task::spawn_blocking(move || -> HvResult<u64> {
            let ds = open_store(&s2.store)?;
            let m = ds
                .manifest(&s2.snapshot)
                .map_err(super::backup::store_err)?;
            let d = m.disks.iter().find(|d| d.name == s2.disk).ok_or_else(|| {
                HvError::Other(format!(
                    "snapshot store: no disk {} in snapshot {}",
                    s2.disk, s2.snapshot
                ))
            })?;
            Ok(d.size)
        })
        .await
        .map_err(other)??;
        let tmp = disk::tmp_path(path);
        let _ = std::fs::remove_file(&tmp);
        // Whole 512-byte sectors (QEMU's unit); reads past the snapshot's end are zeros.
        let vsize = size.max(min_size).div_ceil(512) * 512;
        disk::create(&tmp, vsize).await?;
        std::fs::rename(&tmp, path).map_err(other)?;
        Ok(InstantState {
            src,
            size,
            started_ms: now_ms(),
            done: false,
            jobs: 0,
            error: None,
            took_ms: None,
        })
    }

    /// Serves the export of VM `name`'s restore on `restore.sock` unless this process
    /// already does.
    pub(super) async fn ensure_export(&self, name: &str, inst: &InstantState) -> HvResult<()> {
        if self.inner.exports.lock().unwrap().contains_key(name) {
            return Ok(());
        }
        let sock = self.dir(name).join(SOCKET);
        let src = inst.src.clone();
        let srv = tokio::task::spawn_blocking(move || -> HvResult<NbdServer> {
            let ds = open_store(&src.store)?;
            NbdServer::start(ds, &src.snapshot, &src.disk, &sock, EXPORT)
                .map_err(super::backup::store_err)
        })
        .await
        .map_err(other)??;
        tracing::info!(vm = %name, snapshot = %inst.src.snapshot, "serving the instant-restore export");
        let old = self.inner.exports.lock().unwrap().insert(name.into(), srv);
        if let Some(o) = old {
            o.stop();
        }
        Ok(())
    }

    /// Stops serving VM `name`'s export (restore finished, VM destroyed).
    pub(super) fn drop_export(&self, name: &str) {
        let srv = self.inner.exports.lock().unwrap().remove(name);
        if let Some(s) = srv {
            s.stop();
        }
    }

    /// Starts the copy job on the running qemu of `name`.
    async fn start_copy(&self, name: &str, inst: &mut InstantState) -> HvResult<()> {
        let mut q = self.qmp(name).await?;
        let mut args = json!({
            "job-id": JOB, "device": "root",
            "auto-finalize": true, "auto-dismiss": false,
        });
        if self.inner.cfg.restore_copy_speed > 0 {
            args["speed"] = json!(self.inner.cfg.restore_copy_speed);
        }
        q.execute("block-stream", Some(args))
            .await
            .map_err(|e| qmp_err(name, e))?;
        inst.jobs += 1;
        tracing::info!(vm = %name, job = inst.jobs, "instant restore: background copy started");
        Ok(())
    }

    /// Moves the restore of `name` on (op lock held): a finished job is checked and the
    /// restore completed, or the job is started again; with the VM off nothing runs.
    /// Returns the job's (offset, total) when one runs.
    pub(super) async fn advance_instant(
        &self,
        name: &str,
        st: &mut DriverState,
    ) -> HvResult<Option<(u64, u64)>> {
        let Some(mut inst) = InstantState::active(st).cloned() else {
            return Ok(None);
        };
        if st.incoming.is_some() || self.live_state(name, st).await?.is_none() {
            return Ok(None);
        }
        self.ensure_export(name, &inst).await?;
        let mut q = self.qmp(name).await?;
        let jobs = q
            .execute("query-jobs", None)
            .await
            .map_err(|e| qmp_err(name, e))?;
        let job = jobs
            .as_array()
            .and_then(|a| a.iter().find(|j| j["id"] == JOB))
            .cloned();
        let mut running = None;
        match job {
            Some(j) if j["status"] == "concluded" || j["status"] == "null" => {
                if let Some(e) = j["error"].as_str() {
                    tracing::warn!(vm = %name, error = %e, "instant restore: copy job failed; resuming");
                    inst.error = Some(e.to_string());
                }
                q.execute("job-dismiss", Some(json!({"id": JOB})))
                    .await
                    .map_err(|e| qmp_err(name, e))?;
            }
            Some(j) => {
                running = Some((
                    j["current-progress"].as_u64().unwrap_or(0),
                    j["total-progress"].as_u64().unwrap_or(0),
                ));
            }
            None => {}
        }
        if running.is_none() {
            if root_has_backing(&mut q, name).await? {
                drop(q);
                self.start_copy(name, &mut inst).await?;
                running = Some((0, inst.size));
            } else {
                inst.done = true;
                inst.took_ms = Some(now_ms().saturating_sub(inst.started_ms));
                inst.error = None;
                tracing::info!(vm = %name, took_ms = inst.took_ms, jobs = inst.jobs,
                    "instant restore: copy complete, the disk no longer needs the store");
            }
        }
        st.instant = Some(inst.clone());
        self.save_state(name, st)?;
        if inst.done {
            self.drop_export(name);
            let _ = std::fs::remove_file(self.dir(name).join(SOCKET));
        }
        Ok(running)
    }

    /// `restore_status`: advances the restore when the VM is free, then reports it.
    pub(super) async fn restore_status_impl(
        &self,
        name: &str,
    ) -> HvResult<Option<RestoreProgress>> {
        let lock = self.op_lock(name);
        let (mut running, st) = match lock.try_lock() {
            Ok(_g) => {
                let (_spec, mut st) = self.load(name)?;
                let r = match self.advance_instant(name, &mut st).await {
                    Ok(r) => r,
                    Err(e) => {
                        if let Some(i) = st.instant.as_mut() {
                            i.error = Some(e.to_string());
                        }
                        None
                    }
                };
                (r, st)
            }
            // Another operation runs on the VM: report what is known.
            Err(_) => (None, self.load(name)?.1),
        };
        let Some(inst) = st.instant else {
            return Ok(None);
        };
        if inst.done {
            running = None;
        }
        let (reads, bytes) = self
            .inner
            .exports
            .lock()
            .unwrap()
            .get(name)
            .map(|s| {
                let st = s.stats();
                (
                    st.reads.load(std::sync::atomic::Ordering::Relaxed),
                    st.bytes.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .unwrap_or((0, 0));
        Ok(Some(RestoreProgress {
            snapshot: inst.src.snapshot.clone(),
            disk: inst.src.disk.clone(),
            done: inst.done,
            copying: running.is_some(),
            copied: if inst.done {
                inst.size
            } else {
                running.map(|r| r.0).unwrap_or(0)
            },
            total: inst.size,
            jobs: inst.jobs,
            error: inst.error.clone(),
            served_reads: reads,
            served_bytes: bytes,
            took_ms: inst.took_ms,
        }))
    }

    /// Refuses `what` while VM `name`'s disk still depends on the store.
    pub(super) fn refuse_while_restoring(
        &self,
        name: &str,
        st: &DriverState,
        what: &str,
    ) -> HvResult<()> {
        if InstantState::active(st).is_some() {
            return Err(HvError::InvalidState(format!(
                "{name} is being restored (instant restore: its disk is still being copied \
                 from the snapshot store) and cannot {what} until the copy is done"
            )));
        }
        Ok(())
    }
}

/// Whether the `root` node still has a backing node.
async fn root_has_backing(q: &mut super::qmp::Qmp, name: &str) -> HvResult<bool> {
    let nodes = q
        .execute("query-named-block-nodes", Some(json!({"flat": true})))
        .await
        .map_err(|e| qmp_err(name, e))?;
    let root = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node-name"] == "root"))
        .ok_or_else(|| HvError::Other(format!("{name}: no root block node")))?;
    Ok(root
        .get("backing_file_depth")
        .and_then(Value::as_u64)
        .is_some_and(|d| d > 0)
        || root.get("backing_file").is_some_and(|b| !b.is_null()))
}

/// The socket path of VM dir `dir`'s export.
pub fn socket_of(dir: &Path) -> PathBuf {
    dir.join(SOCKET)
}
