//! The QEMU driver's snapshot-store work: backing a VM's root disk up into the
//! store (`lifeboat-datastore`) and restoring disks from it.
//!
//! - A stopped VM's `root.qcow2` (with its backing chain) is read through a
//!   read-only `qemu-storage-daemon` NBD export.
//! - A running VM is first copied point-in-time (`blockdev-backup`, guest
//!   frozen around the job start when its agent answers) to a temporary
//!   qcow2 in the VM directory, which is then read the same way.
//! - Each backup is incremental against the VM's previous snapshot when it is
//!   still in the store (`hash` mode: every chunk is read and hashed, only new
//!   chunks are stored).
//! - Restores write a new qcow2 (sparse for zero chunks, every chunk
//!   verified). Images from the store are restored once into
//!   `<state_dir>/base/store-<snapshot>-<disk>.qcow2` and booted as overlays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lifeboat_datastore::backup::{BackupRequest, DiskSource};
use lifeboat_datastore::nbd::NbdReader;
use lifeboat_datastore::qsd::QsdExport;
use lifeboat_datastore::restore::RestoreFormat;
use lifeboat_datastore::{DataStore, SnapshotKind, SnapshotMeta, StoreLocation};

use super::{disk, migrate, other, QemuDriver};
use crate::{DiskBackupInfo, DiskBackupRequest, HvError, HvResult, StoreDisk};

/// Disk name of the root disk in snapshots.
pub const ROOT_DISK: &str = "root";

fn store_err(e: lifeboat_datastore::Error) -> HvError {
    HvError::Other(format!("snapshot store: {e}"))
}

/// Opens the store (blocking: run inside `spawn_blocking`).
pub(crate) fn open_store(loc: &StoreLocation) -> HvResult<DataStore> {
    loc.open().map_err(store_err)
}

impl QemuDriver {
    /// The store location to use: this host's own, else the manager's.
    fn store_location(&self, named: &StoreLocation) -> StoreLocation {
        self.inner
            .cfg
            .snapstore
            .clone()
            .unwrap_or_else(|| named.clone())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> HvResult<T> + Send + 'static,
) -> HvResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HvError::Other(format!("backup task: {e}")))?
}

/// Backs `image` (a qcow2 image, with its backing chain) up as disk
/// [`ROOT_DISK`] of a new snapshot. Blocking.
fn backup_image(
    ds: &DataStore,
    image: &Path,
    req: &DiskBackupRequest,
    parent: Option<String>,
) -> HvResult<(lifeboat_datastore::ManifestBody, Option<(String, String)>)> {
    let kind: SnapshotKind = req
        .kind
        .parse()
        .map_err(|e: lifeboat_datastore::Error| HvError::Other(e.to_string()))?;
    let mut meta = SnapshotMeta::new(kind);
    meta.server = Some(req.server.clone());
    meta.backup_type = req.backup_type.clone();
    meta.image = req.image.clone();
    meta.flavor = req.flavor.clone();
    meta.properties = req.properties.clone();
    let q = QsdExport::start(image, "qcow2", &[], false).map_err(store_err)?;
    let reader = NbdReader::connect(&q.addr(), &q.name, 4).map_err(store_err)?;
    let m = ds
        .backup(
            BackupRequest {
                meta,
                parent,
                disks: vec![DiskSource {
                    name: ROOT_DISK.into(),
                    reader: Arc::new(reader),
                    dirty: None,
                }],
            },
            &|_| {},
        )
        .map_err(store_err)?;
    drop(q);
    let digest = if req.digest {
        let d = ds.digest_disk(&m.id, ROOT_DISK).map_err(store_err)?;
        Some((d.md5, d.sha512))
    } else {
        None
    };
    Ok((m, digest))
}

impl QemuDriver {
    /// [`crate::Hypervisor::backup_disk`].
    pub(super) async fn backup_disk_impl(
        &self,
        name: &str,
        req: &DiskBackupRequest,
    ) -> HvResult<DiskBackupInfo> {
        let lock = self.op_lock(name);
        let _g = lock.lock().await;
        let (_spec, mut st) = self.load(name)?;
        if st.offloaded {
            return Err(super::invalid(name, "offloaded", "be backed up"));
        }
        let started = Instant::now();
        let dir = self.dir(name);
        let live = self.live_state(name, &mut st).await?.is_some();
        // A running VM is copied point-in-time first; the copy is what is read.
        let (source, tmp): (PathBuf, Option<PathBuf>) = if live {
            let t = dir.join("backup-point.qcow2");
            let _ = std::fs::remove_file(&t);
            migrate::live_backup(self, name, &t).await?;
            (t.clone(), Some(t))
        } else {
            (dir.join("root.qcow2"), None)
        };
        let store = self.store_location(&req.store);
        let last = st.last_snapshot.clone();
        let req2 = req.clone();
        let res = blocking(move || {
            let ds = open_store(&store)?;
            // The previous snapshot of this VM, if it is still there, is the parent.
            let (parent, note) = match last {
                Some(p) if ds.manifest(&p).is_ok() => (Some(p), None),
                Some(p) => (
                    None,
                    Some(format!(
                        "previous snapshot {p} is gone from the store: full read"
                    )),
                ),
                None => (None, None),
            };
            let (m, digest) = backup_image(&ds, &source, &req2, parent)?;
            Ok((m, digest, note))
        })
        .await;
        if let Some(t) = tmp {
            let _ = std::fs::remove_file(t);
        }
        let (m, digest, note) = res?;
        let d = m
            .disks
            .iter()
            .find(|d| d.name == ROOT_DISK)
            .ok_or_else(|| HvError::Other("snapshot has no root disk".into()))?;
        st.last_snapshot = Some(m.id.clone());
        self.save_state(name, &st)?;
        tracing::info!(vm = %name, snapshot = %m.id, live, mode = %d.mode, read = d.read_bytes,
            stored = d.new_stored_bytes, took = ?started.elapsed(), "disk backed up into the store");
        Ok(DiskBackupInfo {
            snapshot: m.id.clone(),
            disk: ROOT_DISK.into(),
            size: d.size,
            parent: m.parent.clone(),
            mode: d.mode.clone(),
            read_bytes: d.read_bytes,
            new_stored_bytes: d.new_stored_bytes,
            live,
            frozen: false,
            note,
            md5: digest.as_ref().map(|d| d.0.clone()),
            sha512: digest.map(|d| d.1),
        })
    }

    /// Restores a store disk into the new qcow2 `dest` (via a temporary
    /// name, so `dest` exists only when complete).
    pub(super) async fn restore_store_disk(&self, src: &StoreDisk, dest: &Path) -> HvResult<()> {
        let tmp = disk::tmp_path(dest);
        let _ = std::fs::remove_file(&tmp);
        let mut src = src.clone();
        src.store = self.store_location(&src.store);
        let t = tmp.clone();
        let started = Instant::now();
        blocking(move || {
            let ds = open_store(&src.store)?;
            ds.restore_disk(&src.snapshot, &src.disk, &t, RestoreFormat::Qcow2, &|_| {})
                .map_err(store_err)?;
            Ok(())
        })
        .await?;
        std::fs::rename(&tmp, dest).map_err(other)?;
        tracing::info!(dest = %dest.display(), took = ?started.elapsed(), "disk restored from the store");
        Ok(())
    }

    /// The local cached copy of a store image (restored on first use).
    pub(super) async fn store_image(&self, src: &StoreDisk) -> HvResult<PathBuf> {
        lifeboat_datastore::check_id(&src.snapshot).map_err(store_err)?;
        lifeboat_datastore::check_id(&src.disk).map_err(store_err)?;
        let dir = self.inner.cfg.state_dir.join("base");
        std::fs::create_dir_all(&dir).map_err(other)?;
        let path = dir.join(format!("store-{}-{}.qcow2", src.snapshot, src.disk));
        if !path.is_file() {
            let lock = super::lock_of(&self.inner.op_locks, &format!(".image-{}", src.snapshot));
            let _g = lock.lock().await;
            if !path.is_file() {
                self.restore_store_disk(src, &path).await?;
            }
        }
        Ok(path)
    }
}
