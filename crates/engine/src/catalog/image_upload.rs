//! Images users make and upload (Glance v2 `POST /v2/images` and
//! `PUT /v2/images/{id}/file`): the record is made `queued`; an upload moves
//! it to `saving`, spools the bytes (MD5, SHA-512 and size computed on the
//! way), checks that they are what `disk_format` says, stores them as disk
//! `root` of a snapshot-store snapshot of kind `image` and makes it `active`
//! with `checksum`, `os_hash_value` and `size`. Any failure puts it back to
//! `queued` (as Glance restores it) and keeps no data.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

use lifeboat_core::{now, Actor, Image, ImageKind, ImageStatus};
use lifeboat_datastore::backup::{BackupRequest, DiskSource, FileReader};
use lifeboat_datastore::{SnapshotKind, SnapshotMeta};
use md5::Digest;

use crate::backup::store_location;
use crate::{ComputeError, Engine, Resource};

/// Glance's `image_size_cap` default (1 TiB).
pub const IMAGE_SIZE_CAP: u64 = 1 << 40;

/// Glance's disk formats (create accepts them all; data is stored for
/// `qcow2` and `raw`, the formats the QEMU driver boots).
pub const DISK_FORMATS: &[&str] = &[
    "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso", "ploop",
];
/// Glance's container formats.
pub const CONTAINER_FORMATS: &[&str] = &[
    "ami",
    "ari",
    "aki",
    "bare",
    "ovf",
    "ova",
    "docker",
    "compressed",
];

/// A new image record (`POST /v2/images`).
#[derive(Debug, Clone, Default)]
pub struct NewImage {
    /// Requested id (a UUID), else one is made.
    pub id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Disk format, if given.
    pub disk_format: Option<String>,
    /// Container format, if given.
    pub container_format: Option<String>,
    /// `private` (default), `shared`, `community` or `public` (admins).
    pub visibility: Option<String>,
    /// Minimum disk GiB.
    pub min_disk: u64,
    /// Minimum RAM MiB.
    pub min_ram: u64,
    /// Extra properties.
    pub properties: BTreeMap<String, String>,
}

/// Images with an upload running in this process.
static UPLOADING: Mutex<Option<HashSet<String>>> = Mutex::new(None);

struct UploadSlot(String);
impl UploadSlot {
    fn take(id: &str) -> Option<UploadSlot> {
        let mut g = UPLOADING.lock().unwrap_or_else(|e| e.into_inner());
        g.get_or_insert_with(HashSet::new)
            .insert(id.to_string())
            .then(|| UploadSlot(id.to_string()))
    }
}
impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut g = UPLOADING.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = g.as_mut() {
            s.remove(&self.0);
        }
    }
}

/// Checks that `head` (the first bytes of the data) is what `format` says,
/// and refuses qcow2 images that would make QEMU open other files.
pub fn check_format(format: &str, head: &[u8]) -> Result<(), ComputeError> {
    let is_qcow2 = head.len() >= 4 && &head[..4] == b"QFI\xfb";
    match format {
        "qcow2" => {
            if !is_qcow2 || head.len() < 72 {
                return Err(ComputeError::BadRequest(
                    "Image data is not a qcow2 image (disk_format qcow2)".into(),
                ));
            }
            let be64 = |o: usize| u64::from_be_bytes(head[o..o + 8].try_into().expect("8"));
            let version = u32::from_be_bytes(head[4..8].try_into().expect("4"));
            if be64(8) != 0 {
                return Err(ComputeError::BadRequest(
                    "qcow2 images with a backing file are not allowed".into(),
                ));
            }
            // qcow2 v3: incompatible feature bit 2 = external data file.
            if version >= 3 && head.len() >= 80 && be64(72) & 0b100 != 0 {
                return Err(ComputeError::BadRequest(
                    "qcow2 images with an external data file are not allowed".into(),
                ));
            }
            Ok(())
        }
        "raw" if is_qcow2 => Err(ComputeError::BadRequest(
            "Image data is a qcow2 image but disk_format is raw".into(),
        )),
        "raw" => Ok(()),
        other => Err(ComputeError::BadRequest(format!(
            "Lifeboat stores image data only for disk_format qcow2 or raw, not {other}"
        ))),
    }
}

impl Engine {
    /// `POST /v2/images`: a `queued` image owned by the actor's project.
    pub async fn create_image(&self, actor: &Actor, n: NewImage) -> Result<Image, ComputeError> {
        if actor.role < lifeboat_core::Role::Member && !actor.is_admin() {
            return Err(ComputeError::Forbidden(
                "You are not authorized to complete add_image action.".into(),
            ));
        }
        let visibility = n.visibility.unwrap_or_else(|| "shared".into());
        if visibility == "public" && !actor.is_admin() {
            return Err(ComputeError::Forbidden(
                "You are not authorized to complete publicize_image action.".into(),
            ));
        }
        let id = match n.id {
            Some(id) => {
                if self.inner.store.get::<Image>(&id).await?.is_some() {
                    return Err(ComputeError::Conflict(format!(
                        "Image with identifier {id} already exists!"
                    )));
                }
                id
            }
            None => lifeboat_core::ids::uuid(),
        };
        let t = now();
        let img = Image {
            id,
            name: n.name.unwrap_or_default(),
            kind: ImageKind::Base,
            status: ImageStatus::Queued,
            owner: Some(actor.project_id.clone()),
            visibility,
            disk_format: n.disk_format.unwrap_or_default(),
            container_format: n.container_format.unwrap_or_default(),
            size: None,
            min_disk: n.min_disk,
            min_ram: n.min_ram,
            location: None,
            kernel: None,
            initrd: None,
            instance_uuid: None,
            backup_type: None,
            properties: n.properties,
            checksum: None,
            os_hash_value: None,
            created_at: t,
            updated_at: t,
        };
        self.inner.store.put(&img).await?;
        Ok(img)
    }

    /// `PUT /v2/images/{id}/file`: stores the bytes `data` yields (chunks,
    /// or an error that aborts the upload) and makes the image active.
    pub async fn upload_image(
        &self,
        actor: &Actor,
        id: &str,
        mut data: tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    ) -> Result<Image, ComputeError> {
        let img = self
            .images(actor)
            .await?
            .into_iter()
            .find(|i| i.id == id)
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::Image,
                id: id.into(),
            })?;
        if !actor.is_admin()
            && (actor.role < lifeboat_core::Role::Member
                || img.owner.as_deref() != Some(actor.project_id.as_str()))
        {
            return Err(ComputeError::Forbidden(format!(
                "Not allowed to upload image data for image {id}"
            )));
        }
        let slot = UploadSlot::take(id);
        if img.status != ImageStatus::Queued || slot.is_none() {
            let cur = if slot.is_none() {
                "saving"
            } else {
                crate::catalog::image_upload::status_name(img.status)
            };
            return Err(ComputeError::Conflict(format!(
                "Image status transition from {cur} to saving is not allowed"
            )));
        }
        let missing: Vec<&str> = [
            ("disk_format", &img.disk_format),
            ("container_format", &img.container_format),
        ]
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| *k)
        .collect();
        match missing.len() {
            0 => {}
            1 => {
                return Err(ComputeError::BadRequest(format!(
                    "Property {} must be set prior to saving data.",
                    missing[0]
                )))
            }
            _ => {
                return Err(ComputeError::BadRequest(format!(
                    "Properties {} must be set prior to saving data.",
                    missing.join(", ")
                )))
            }
        }
        if !matches!(img.disk_format.as_str(), "qcow2" | "raw") {
            return Err(ComputeError::BadRequest(format!(
                "Lifeboat stores image data only for disk_format qcow2 or raw, not {}",
                img.disk_format
            )));
        }
        self.set_image_status(id, ImageStatus::Saving, None).await?;
        let res = self.store_upload(&img, &mut data).await;
        drop(slot);
        match res {
            Ok((snap, size, md5, sha512)) => {
                let loc = store_location(&snap, "root");
                match self.inner.store.get::<Image>(id).await? {
                    Some(mut cur) if cur.status == ImageStatus::Saving => {
                        cur.status = ImageStatus::Active;
                        cur.updated_at = now();
                        cur.location = Some(loc);
                        cur.size = Some(size);
                        cur.checksum = Some(md5);
                        cur.os_hash_value = Some(sha512);
                        self.inner.store.put(&cur).await?;
                        Ok(cur)
                    }
                    _ => {
                        // Deleted during the upload: no data stays behind.
                        self.delete_store_image(Some(&loc)).await;
                        Err(ComputeError::Conflict(format!(
                            "Image {id} could not be found after upload. The image may have been deleted during the upload."
                        )))
                    }
                }
            }
            Err(e) => {
                if let Some(mut cur) = self.inner.store.get::<Image>(id).await? {
                    if cur.status == ImageStatus::Saving {
                        cur.status = ImageStatus::Queued;
                        cur.updated_at = now();
                        self.inner.store.put(&cur).await?;
                    }
                }
                Err(e)
            }
        }
    }

    /// Spools, checks and stores one upload; `(snapshot, size, md5, sha512)`.
    async fn store_upload(
        &self,
        img: &Image,
        data: &mut tokio::sync::mpsc::Receiver<Result<Vec<u8>, String>>,
    ) -> Result<(String, u64, String, String), ComputeError> {
        let dir = self.inner.cfg.data_dir.join("uploads");
        std::fs::create_dir_all(&dir).map_err(|e| ComputeError::Internal(e.to_string()))?;
        let path = dir.join(format!("{}.{:08x}.part", img.id, rand::random::<u32>()));
        struct Rm(std::path::PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let _rm = Rm(path.clone());
        let mut f = std::fs::File::create(&path)
            .map_err(|e| ComputeError::Internal(format!("spool {}: {e}", path.display())))?;
        let mut md5 = md5::Md5::new();
        let mut sha = sha2::Sha512::new();
        let mut size = 0u64;
        let mut head: Vec<u8> = Vec::new();
        while let Some(chunk) = data.recv().await {
            let chunk = chunk.map_err(|e| {
                ComputeError::BadRequest(format!("Error reading the image data: {e}"))
            })?;
            size += chunk.len() as u64;
            if size > IMAGE_SIZE_CAP {
                return Err(ComputeError::OverLimit(format!(
                    "The incoming image is too large: more than {IMAGE_SIZE_CAP} bytes"
                )));
            }
            if head.len() < 512 {
                head.extend_from_slice(&chunk[..chunk.len().min(512 - head.len())]);
            }
            md5.update(&chunk);
            sha.update(&chunk);
            f.write_all(&chunk)
                .map_err(|e| ComputeError::Internal(format!("spool: {e}")))?;
        }
        f.flush()
            .map_err(|e| ComputeError::Internal(format!("spool: {e}")))?;
        drop(f);
        if size == 0 {
            return Err(ComputeError::BadRequest("The image data is empty".into()));
        }
        check_format(&img.disk_format, &head)?;
        let mut meta = SnapshotMeta::new(SnapshotKind::Image);
        meta.properties.insert("image_id".into(), img.id.clone());
        meta.properties
            .insert("disk_format".into(), img.disk_format.clone());
        meta.properties.insert("source".into(), "upload".into());
        let p = path.clone();
        let snap = self
            .with_snapstore(move |ds| {
                let reader = FileReader::open(&p).map_err(|e| lifeboat_datastore::Error::Io {
                    what: format!("open {}", p.display()),
                    source: e,
                })?;
                let m = ds.backup(
                    BackupRequest {
                        meta,
                        parent: None,
                        disks: vec![DiskSource {
                            name: "root".into(),
                            reader: Arc::new(reader),
                            dirty: None,
                        }],
                    },
                    &|_| {},
                )?;
                Ok(m.id)
            })
            .await?;
        Ok((
            snap,
            size,
            hex::encode(md5.finalize()),
            hex::encode(sha.finalize()),
        ))
    }
}

/// Glance's name of a status.
pub fn status_name(s: ImageStatus) -> &'static str {
    match s {
        ImageStatus::Queued => "queued",
        ImageStatus::Saving => "saving",
        ImageStatus::Active => "active",
        ImageStatus::Deleted => "deleted",
        ImageStatus::Killed => "killed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_checked_against_the_bytes() {
        let mut q = vec![0u8; 512];
        q[..4].copy_from_slice(b"QFI\xfb");
        q[7] = 3;
        assert!(check_format("qcow2", &q).is_ok());
        assert!(check_format("raw", &q).is_err());
        assert!(check_format("raw", &[0u8; 512]).is_ok());
        assert!(check_format("qcow2", &[0u8; 512]).is_err());
        assert!(check_format("vmdk", &[0u8; 512]).is_err());
        let mut b = q.clone();
        b[15] = 0x30; // backing file offset
        assert!(check_format("qcow2", &b)
            .unwrap_err()
            .to_string()
            .contains("backing file"));
        let mut d = q.clone();
        d[79] = 0b100; // external data file
        assert!(check_format("qcow2", &d)
            .unwrap_err()
            .to_string()
            .contains("external data file"));
    }
}
