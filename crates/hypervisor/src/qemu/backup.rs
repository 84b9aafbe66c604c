//! The QEMU driver's snapshot-store work: backing a VM's root disk up into the
//! store (`lifeboat-datastore`) and restoring disks from it.
//!
//! - A stopped VM's `root.qcow2` (with its backing chain) is read through a
//!   read-only `qemu-storage-daemon` NBD export.
//! - A running VM is read once, from a point-in-time NBD view that QEMU
//!   serves while the guest keeps writing (fleecing, `pull.rs`), with the
//!   guest's filesystems frozen around the moment it is taken when its agent
//!   answers (`DiskBackupInfo::frozen` says whether they were).
//! - Each backup is incremental against the VM's previous snapshot when it is
//!   still in the store: `bitmap` mode (only the chunks a persistent qcow2
//!   dirty bitmap marks are read) when the bitmap is trusted, else `hash`
//!   mode (every chunk is read and hashed, only new chunks are stored), with
//!   the reason in `note`.
//! - Restores write a new qcow2 (sparse for zero chunks, every chunk
//!   verified). Images from the store are restored once into
//!   `<state_dir>/base/store-<snapshot>-<disk>.qcow2` and booted as overlays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use lifeboat_datastore::backup::{BackupRequest, DiskSource};
use lifeboat_datastore::nbd::{self, NbdAddr, NbdReader};
use lifeboat_datastore::qsd::QsdExport;
use lifeboat_datastore::restore::RestoreFormat;
use lifeboat_datastore::{
    DataStore, DiskReader, Extent, SnapshotKind, SnapshotMeta, StoreLocation,
};

use super::{disk, other, pull, QemuDriver};
use crate::{DiskBackupInfo, DiskBackupRequest, HvError, HvResult, StoreDisk};

/// Disk name of the root disk in snapshots.
pub const ROOT_DISK: &str = "root";

pub(super) fn store_err(e: lifeboat_datastore::Error) -> HvError {
    HvError::Other(format!("snapshot store: {e}"))
}

/// Opens the store (blocking: run inside `spawn_blocking`).
pub(crate) fn open_store(loc: &StoreLocation) -> HvResult<DataStore> {
    loc.open().map_err(store_err)
}

impl QemuDriver {
    /// The store location to use: this host's own, else the manager's.
    pub(super) fn store_location(&self, named: &StoreLocation) -> StoreLocation {
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

/// Backs the disk `reader` reads up as disk [`ROOT_DISK`] of a new snapshot
/// (`dirty`: the extents changed since `parent`, from a trusted bitmap).
/// Blocking.
fn backup_reader(
    ds: &DataStore,
    reader: Arc<dyn DiskReader>,
    dirty: Option<Vec<Extent>>,
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
    let m = ds
        .backup(
            BackupRequest {
                meta,
                parent,
                disks: vec![DiskSource {
                    name: ROOT_DISK.into(),
                    reader,
                    dirty,
                }],
            },
            &|_| {},
        )
        .map_err(store_err)?;
    let digest = if req.digest {
        let d = ds.digest_disk(&m.id, ROOT_DISK).map_err(store_err)?;
        Some((d.md5, d.sha512))
    } else {
        None
    };
    Ok((m, digest))
}

/// What one backup produced.
type BackupOut = (lifeboat_datastore::ManifestBody, Option<(String, String)>);

impl QemuDriver {
    /// [`crate::Hypervisor::backup_disk`]: one read of the root disk (a
    /// point-in-time NBD view of a running VM, the qcow2 of a stopped one),
    /// only the changed chunks when the VM's dirty bitmap is trusted.
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
        self.refuse_while_restoring(name, &st, "be backed up")?;
        let started = Instant::now();
        let dir = self.dir(name);
        let live = self.live_state(name, &mut st).await?.is_some();
        let store = self.store_location(&req.store);
        let mut notes: Vec<String> = Vec::new();
        // The previous snapshot of this VM, if it is still there, is the parent.
        let last = st.last_snapshot.clone();
        let parent = {
            let (store, last) = (store.clone(), last.clone());
            blocking(move || {
                let ds = open_store(&store)?;
                Ok(last.filter(|p| ds.manifest(p).is_ok()))
            })
            .await?
        };
        if let (Some(p), None) = (&last, &parent) {
            notes.push(format!(
                "previous snapshot {p} is gone from the store: full read"
            ));
        }
        // Its bitmap counts only with the parent it was made for.
        let want = parent.as_ref().and(st.bitmap.clone());
        let new_bm = pull::new_bitmap_name();
        let req2 = req.clone();
        let (res, prev, frozen) = if live {
            let mut q = self.qmp(name).await?;
            let (prev, stale, why) = pull::judge(
                &pull::node_bitmaps(&mut q, name, "root").await?,
                want.as_deref(),
            );
            notes.extend(why.map(|w| format!("{w}: every chunk read")));
            pull::remove_node_bitmaps(&mut q, name, &stale).await?;
            let view = pull::start(self, &mut q, name, prev.as_deref(), &new_bm).await?;
            let frozen = view.frozen;
            notes.extend(view.freeze_note.clone());
            let sock = view.sock.clone();
            let (bm, parent) = (prev.clone(), parent.clone());
            let res: HvResult<BackupOut> = blocking(move || {
                let ds = open_store(&store)?;
                let addr = NbdAddr::Unix(sock);
                let dirty = bm
                    .map(|b| nbd::dirty_extents(&addr, pull::EXPORT, &b))
                    .transpose()
                    .map_err(store_err)?;
                let reader = NbdReader::connect(&addr, pull::EXPORT, 4).map_err(store_err)?;
                backup_reader(&ds, Arc::new(reader), dirty, &req2, parent)
            })
            .await;
            pull::end(&mut q, name, view, res.is_ok(), prev.as_deref(), &new_bm).await;
            (res, prev, frozen)
        } else {
            pull::sweep_fleece_files(&dir);
            let root = dir.join("root.qcow2");
            let (prev, stale, why) =
                pull::judge(&pull::file_bitmaps(&root).await?, want.as_deref());
            notes.extend(why.map(|w| format!("{w}: every chunk read")));
            for b in &stale {
                pull::file_remove_bitmap(&root, b).await?;
            }
            let (bm, parent, root2) = (prev.clone(), parent.clone(), root.clone());
            let res: HvResult<BackupOut> = blocking(move || {
                let ds = open_store(&store)?;
                let bitmaps: Vec<&str> = bm.iter().map(String::as_str).collect();
                let q = QsdExport::start(&root2, "qcow2", &bitmaps, false).map_err(store_err)?;
                let dirty = bm
                    .as_deref()
                    .map(|b| nbd::dirty_extents(&q.addr(), &q.name, b))
                    .transpose()
                    .map_err(store_err)?;
                let reader = NbdReader::connect(&q.addr(), &q.name, 4).map_err(store_err)?;
                let out = backup_reader(&ds, Arc::new(reader), dirty, &req2, parent);
                drop(q);
                out
            })
            .await;
            if res.is_ok() {
                // Nothing writes a stopped VM's disk while we hold its lock:
                // the new bitmap starts at the snapshot's point in time.
                if let Some(b) = &prev {
                    if let Err(e) = pull::file_remove_bitmap(&root, b).await {
                        tracing::warn!(vm = %name, "removing bitmap {b}: {e}");
                    }
                }
                if let Err(e) = pull::file_add_bitmap(&root, &new_bm).await {
                    tracing::warn!(vm = %name, "adding bitmap {new_bm}: {e}");
                }
            }
            (res, prev, false)
        };
        let (m, digest) = match res {
            Ok(x) => x,
            Err(e) => {
                // The bitmap that still records since the last snapshot.
                st.bitmap = prev;
                let _ = self.save_state(name, &st);
                return Err(e);
            }
        };
        let d = m
            .disks
            .iter()
            .find(|d| d.name == ROOT_DISK)
            .ok_or_else(|| HvError::Other("snapshot has no root disk".into()))?;
        st.last_snapshot = Some(m.id.clone());
        st.bitmap = Some(new_bm);
        self.save_state(name, &st)?;
        tracing::info!(vm = %name, snapshot = %m.id, live, frozen, mode = %d.mode, read = d.read_bytes,
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
            frozen,
            note: (!notes.is_empty()).then(|| notes.join("; ")),
            md5: digest.as_ref().map(|d| d.0.clone()),
            sha512: digest.map(|d| d.1),
        })
    }

    /// Restores a store disk into the new qcow2 `dest` (via a temporary
    /// name, so `dest` exists only when complete). Stored qcow2 files
    /// (uploaded images) must be self-contained: a backing file or an
    /// external data file is refused, then they are rewritten by
    /// `qemu-img convert`.
    pub(super) async fn restore_store_disk(&self, src: &StoreDisk, dest: &Path) -> HvResult<()> {
        let tmp = disk::tmp_path(dest);
        let _ = std::fs::remove_file(&tmp);
        let mut src = src.clone();
        src.store = self.store_location(&src.store);
        let qcow2_file = src.format.as_deref() == Some("qcow2");
        let t = if qcow2_file {
            tmp.with_extension("upload")
        } else {
            tmp.clone()
        };
        let started = Instant::now();
        let t2 = t.clone();
        blocking(move || {
            let ds = open_store(&src.store)?;
            let fmt = if qcow2_file {
                RestoreFormat::Raw
            } else {
                RestoreFormat::Qcow2
            };
            ds.restore_disk(&src.snapshot, &src.disk, &t2, fmt, &|_| {})
                .map_err(store_err)?;
            Ok(())
        })
        .await?;
        if qcow2_file {
            let res = async {
                let out =
                    disk::qemu_img(&["info", "-f", "qcow2", "--output=json", &t.to_string_lossy()])
                        .await?;
                let v: serde_json::Value = serde_json::from_str(&out).map_err(other)?;
                if v.get("backing-filename").is_some()
                    || v["format-specific"]["data"].get("data-file").is_some()
                {
                    return Err(HvError::Other(
                        "the image is a qcow2 with a backing or external data file: refused".into(),
                    ));
                }
                disk::qemu_img(&[
                    "convert",
                    "-q",
                    "-f",
                    "qcow2",
                    "-O",
                    "qcow2",
                    &t.to_string_lossy(),
                    &tmp.to_string_lossy(),
                ])
                .await
                .map(|_| ())
            }
            .await;
            let _ = std::fs::remove_file(&t);
            res?;
        }
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
