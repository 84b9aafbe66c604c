//! Workflow steps that go through the snapshot store (`lifeboat-datastore`):
//! createImage/createBackup snapshots, shelve (snapshot, then offload frees
//! the host's disk), unshelve (restore onto whichever host placement picks).
//!
//! The manager never reads or writes a VM disk: the host agent of the
//! server's host backs the disk up into the store and restores it from
//! there ([`Hypervisor::backup_disk`], [`VmSpec::root_from`],
//! [`ImageRef::store`]). The manager only names the store
//! ([`EngineConfig::snapstore`](crate::EngineConfig)) and deletes snapshots
//! (rotation, image delete, unshelve).
//!
//! Images kept in the store have `location = "snapstore:<snapshot>/<disk>"`.

use lifeboat_core::{now, ImageStatus, Level, NewEvent, Server, TaskState, Workflow};
use lifeboat_datastore::{DataStore, StoreLocation};
use lifeboat_hypervisor::{DiskBackupInfo, DiskBackupRequest, StoreDisk};
use lifeboat_store::Record;
use serde::{Deserialize, Serialize};

use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;
use crate::{ComputeError, Engine, Resource};

/// Prefix of an image location in the snapshot store.
pub const STORE_LOCATION_PREFIX: &str = "snapstore:";

/// The store snapshot holding a shelved server's disk (one per server).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShelvedDisk {
    /// Server id.
    pub server_id: String,
    /// Snapshot id in the store.
    pub snapshot: String,
    /// Disk name in the snapshot.
    pub disk: String,
    /// Host it was taken on.
    pub host: String,
    /// When.
    pub created_at: lifeboat_core::Time,
}

impl Record for ShelvedDisk {
    const KIND: &'static str = "shelved_disk";
    fn id(&self) -> String {
        self.server_id.clone()
    }
    fn ref_id(&self) -> Option<String> {
        Some(self.server_id.clone())
    }
    fn created(&self) -> lifeboat_core::Time {
        self.created_at
    }
}

/// `snapstore:<snapshot>/<disk>` of a store disk.
pub fn store_location(snapshot: &str, disk: &str) -> String {
    format!("{STORE_LOCATION_PREFIX}{snapshot}/{disk}")
}

/// Parses `snapstore:<snapshot>/<disk>`.
pub fn parse_store_location(loc: &str) -> Option<(String, String)> {
    let rest = loc.strip_prefix(STORE_LOCATION_PREFIX)?;
    let (snap, disk) = rest.split_once('/')?;
    (lifeboat_datastore::check_id(snap).is_ok() && lifeboat_datastore::check_id(disk).is_ok())
        .then(|| (snap.to_string(), disk.to_string()))
}

fn store_err(e: lifeboat_datastore::Error) -> ComputeError {
    ComputeError::Internal(format!("snapshot store: {e}"))
}

impl Engine {
    /// Where the snapshot store is (handed to host agents).
    pub fn snapstore(&self) -> StoreLocation {
        self.inner.cfg.snapstore.clone()
    }

    /// Runs `f` on the opened store on a blocking thread.
    pub(crate) async fn with_snapstore<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DataStore) -> Result<T, lifeboat_datastore::Error> + Send + 'static,
    ) -> Result<T, ComputeError> {
        let loc = self.snapstore();
        tokio::task::spawn_blocking(move || {
            let ds = loc.open().map_err(store_err)?;
            f(&ds).map_err(store_err)
        })
        .await
        .map_err(|e| ComputeError::Internal(format!("snapshot store task: {e}")))?
    }

    /// The store disk behind an image location, if it is in the store.
    pub(crate) fn store_disk(&self, location: Option<&str>) -> Option<StoreDisk> {
        let (snapshot, disk) = parse_store_location(location?)?;
        Some(StoreDisk {
            store: self.snapstore(),
            snapshot,
            disk,
            format: None,
            instant: false,
        })
    }

    /// Deletes the store snapshot behind an image location (if any). A
    /// snapshot already gone is fine; chunks go at the next GC.
    pub(crate) async fn delete_store_image(&self, location: Option<&str>) {
        let Some((snap, _)) = location.and_then(parse_store_location) else {
            return;
        };
        let res = self
            .with_snapstore(move |ds| match ds.delete_snapshot(&snap) {
                Err(lifeboat_datastore::Error::NotFound(_)) => Ok(()),
                r => r,
            })
            .await;
        if let Err(e) = res {
            tracing::warn!("store snapshot of {location:?} not deleted: {e}");
        }
    }

    async fn backup_event(&self, wf: &Workflow, s: &Server, step: &str, info: &DiskBackupInfo) {
        let mut msg = format!(
            "disk {} backed up into the snapshot store as {} ({}{}, {} bytes read, {} bytes stored{})",
            info.disk,
            info.snapshot,
            info.mode,
            if info.live { ", live" } else { "" },
            info.read_bytes,
            info.new_stored_bytes,
            info.parent
                .as_deref()
                .map(|p| format!(", parent {p}"))
                .unwrap_or_default()
        );
        if let Some(n) = &info.note {
            msg.push_str(&format!("; {n}"));
        }
        self.event(NewEvent {
            level: if info.note.is_some() {
                Level::Warn
            } else {
                Level::Info
            },
            server_id: Some(s.id.clone()),
            project_id: Some(s.project_id.clone()),
            workflow_id: Some(wf.id.clone()),
            step: Some(step.into()),
            message: msg,
        })
        .await;
    }

    fn backup_request(&self, s: &Server, kind: &str, digest: bool) -> DiskBackupRequest {
        DiskBackupRequest {
            store: self.snapstore(),
            kind: kind.into(),
            server: s.id.clone(),
            backup_type: None,
            image: s.image_id.clone(),
            flavor: Some(s.flavor.original_name.clone()),
            properties: Default::default(),
            digest,
        }
    }

    /// The store snapshot taken for image `image_id` (its `image_id` property), as the
    /// backup that made it reported it; extra ones (a crash between two attempts) are
    /// deleted. None: no snapshot of that image in the store.
    pub(crate) async fn image_snapshot_in_store(
        &self,
        image_id: &str,
    ) -> StepResult<Option<DiskBackupInfo>> {
        let image_id = image_id.to_string();
        self.with_snapstore(move |ds| {
            let mut mine: Vec<_> = ds
                .snapshots()?
                .into_iter()
                .filter(|m| m.meta.properties.get("image_id") == Some(&image_id))
                .collect();
            let Some(m) = mine.pop() else {
                return Ok(None);
            };
            for extra in mine {
                match ds.delete_snapshot(&extra.id) {
                    Ok(()) | Err(lifeboat_datastore::Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            let Some(d) = m.disks.first() else {
                return Ok(None);
            };
            let digest = ds.digest_disk(&m.id, &d.name)?;
            Ok(Some(DiskBackupInfo {
                snapshot: m.id.clone(),
                disk: d.name.clone(),
                size: d.size,
                parent: m.parent.clone(),
                mode: d.mode.clone(),
                read_bytes: d.read_bytes,
                new_stored_bytes: d.new_stored_bytes,
                live: false,
                frozen: false,
                note: Some("taken before a restart; the image was finished with it".into()),
                md5: Some(digest.md5),
                sha512: Some(digest.sha512),
            }))
        })
        .await
    }

    /// Deletes every store snapshot taken for image `image_id` (a killed image).
    pub(crate) async fn forget_image_snapshots(&self, image_id: &str) -> StepResult<()> {
        let image_id = image_id.to_string();
        self.with_snapstore(move |ds| {
            for m in ds.snapshots()? {
                if m.meta.properties.get("image_id") == Some(&image_id) {
                    match ds.delete_snapshot(&m.id) {
                        Ok(()) | Err(lifeboat_datastore::Error::NotFound(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The shelved disk of a server, if one was stored.
    pub(crate) async fn shelved_disk(&self, server_id: &str) -> StepResult<Option<ShelvedDisk>> {
        Ok(self.inner.store.get::<ShelvedDisk>(server_id).await?)
    }

    /// The root disk an unshelve restores from.
    pub(crate) async fn shelved_root(&self, s: &Server) -> StepResult<Option<StoreDisk>> {
        Ok(self.shelved_disk(&s.id).await?.map(|d| StoreDisk {
            store: self.snapstore(),
            snapshot: d.snapshot,
            disk: d.disk,
            format: None,
            instant: false,
        }))
    }

    /// Deletes a server's shelved disk (record and store snapshots): after
    /// unshelve (Nova deletes the shelved image) and with the server.
    pub(crate) async fn forget_shelved(&self, server_id: &str) -> StepResult<()> {
        let Some(d) = self.shelved_disk(server_id).await? else {
            return Ok(());
        };
        let snap = d.snapshot.clone();
        let server = server_id.to_string();
        self.with_snapstore(move |ds| {
            // The recorded snapshot plus any left by a shelve that crashed
            // after its backup and before its record.
            let mut ids = vec![snap];
            for m in ds.snapshots().unwrap_or_default() {
                if m.meta.kind == lifeboat_datastore::SnapshotKind::Shelve
                    && m.meta.server.as_deref() == Some(server.as_str())
                    && !ids.contains(&m.id)
                {
                    ids.push(m.id);
                }
            }
            for id in ids {
                match ds.delete_snapshot(&id) {
                    Ok(()) | Err(lifeboat_datastore::Error::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })
        .await?;
        self.inner.store.delete::<ShelvedDisk>(server_id).await?;
        Ok(())
    }
}

impl Engine {
    /// The data of an image the actor may see, as a verified stream of its
    /// raw bytes from the snapshot store (`GET /v2/images/{id}/file`).
    /// `None`: the image has no data in the store (a kernel+initramfs base
    /// image, or not active yet).
    pub async fn image_data(
        &self,
        actor: &lifeboat_core::Actor,
        id: &str,
    ) -> Result<Option<(lifeboat_core::Image, lifeboat_datastore::DiskStream)>, ComputeError> {
        let imgs = self.images(actor).await?;
        let img = imgs
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::Image,
                id: id.into(),
            })?;
        let Some((snap, disk)) = img.location.as_deref().and_then(parse_store_location) else {
            return Ok(None);
        };
        if img.status != ImageStatus::Active {
            return Ok(None);
        }
        let stream = self
            .with_snapstore(move |ds| ds.disk_stream(&snap, &disk))
            .await?;
        Ok(Some((img, stream)))
    }
}

/// `snapshot` (createImage, createBackup): the host agent backs the root
/// disk up into the store; the image becomes active with its size and
/// checksums.
pub(crate) async fn snapshot(e: &Engine, wf: &mut Workflow, s: &Server) -> StepResult<()> {
    let kind = wf.kind.clone();
    let typed = WorkflowKind::load(&wf.kind, &wf.params)?;
    let image_id = typed
        .image_id()
        .map(str::to_string)
        .ok_or_else(|| ComputeError::Internal(format!("{kind} has no image")))?;
    e.mutate_server(&s.id, |s| {
        s.task_state = Some(if kind == "create_backup" {
            TaskState::ImageBackup
        } else {
            TaskState::ImageUploading
        });
        Ok(())
    })
    .await?;
    e.set_image_status(&image_id, ImageStatus::Saving, None)
        .await?;
    let mut req = e.backup_request(
        s,
        if kind == "create_backup" {
            "backup"
        } else {
            "image"
        },
        true,
    );
    req.backup_type = match &typed {
        WorkflowKind::CreateBackup(p) => Some(p.backup_type.clone()),
        _ => None,
    };
    req.properties.insert("image_id".into(), image_id.clone());
    // A run killed after its backup and before the image was filled left the snapshot
    // in the store: finish with it instead of backing up again (which would orphan it).
    let info = match e.image_snapshot_in_store(&image_id).await? {
        Some(info) => info,
        None => {
            let info = e
                .server_agent(s)
                .await?
                .backup_disk(&s.instance_name, &req)
                .await?;
            e.backup_event(wf, s, "snapshot", &info).await;
            // Test hook: the kill point between the store snapshot and the image record.
            e.hang_after(wf, "snapshot:stored").await;
            info
        }
    };
    if let Some(mut img) = e.inner.store.get::<lifeboat_core::Image>(&image_id).await? {
        img.status = ImageStatus::Active;
        img.updated_at = now();
        img.location = Some(store_location(&info.snapshot, &info.disk));
        img.size = Some(info.size);
        img.disk_format = "raw".into();
        img.checksum = info.md5.clone();
        img.os_hash_value = info.sha512.clone();
        e.inner.store.put(&img).await?;
    } else {
        // The image was deleted meanwhile: drop its data too.
        e.delete_store_image(Some(&store_location(&info.snapshot, &info.disk)))
            .await;
    }
    Ok(())
}

/// `shelve_snapshot` (shelve, shelve_offload): the host agent stores the
/// stopped server's disk, recorded as its [`ShelvedDisk`]. Done once: a
/// re-run (crash, or shelve_offload after shelve) finds the record.
pub(crate) async fn shelve_snapshot(e: &Engine, wf: &mut Workflow, s: &Server) -> StepResult<()> {
    if e.shelved_disk(&s.id).await?.is_some() {
        return Ok(());
    }
    let Some(host) = s.host.clone() else {
        return Err(ComputeError::Internal(format!(
            "server {} has no host to shelve from",
            s.id
        )));
    };
    let req = e.backup_request(s, "shelve", false);
    let info = e
        .agent_for(&host)
        .await?
        .backup_disk(&s.instance_name, &req)
        .await?;
    e.backup_event(wf, s, "shelve_snapshot", &info).await;
    e.inner
        .store
        .put(&ShelvedDisk {
            server_id: s.id.clone(),
            snapshot: info.snapshot,
            disk: info.disk,
            host,
            created_at: now(),
        })
        .await?;
    Ok(())
}

/// `offload`: with the disk safe in the store, the VM and its disks are
/// removed from the host. A server shelved before the store existed (no
/// shelved disk) keeps its disks on the host (the agent's `offload`).
pub(crate) async fn offload(e: &Engine, s: &Server) -> StepResult<()> {
    if let Some(h) = &s.host {
        let agent = e.agent_for(h).await?;
        let res = if e.shelved_disk(&s.id).await?.is_some() {
            agent.destroy(&s.instance_name).await
        } else {
            agent.offload(&s.instance_name).await
        };
        match res {
            Ok(()) | Err(lifeboat_hypervisor::HvError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    e.mutate_server(&s.id, |s| {
        s.host = None;
        s.power_state = lifeboat_core::PowerState::Shutdown;
        Ok(())
    })
    .await?;
    Ok(())
}
