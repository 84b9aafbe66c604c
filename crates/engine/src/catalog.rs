//! The catalog: flavors (and who may use a private one, `flavor_access`),
//! images (and their upload, `image_upload`), key pairs, and the VM spec a
//! driver gets.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lifeboat_core::{
    now, Actor, Flavor, Image, ImageKind, ImageStatus, Keypair, Permission, Server,
};
use lifeboat_hypervisor::{ImageRef, VmSize, VmSpec};

use crate::{ComputeError, Engine, Reason, Resource};

pub(crate) mod flavor_access;
pub(crate) mod image_upload;

/// Id of the default image registered on first start.
pub const DEFAULT_IMAGE_ID: &str = "5f0c8d7e-4a3b-4c1e-9d2f-0b1a2c3d4e5f";

/// Where the built guest image is looked for (kernel and initramfs).
#[derive(Debug, Clone, Default)]
pub struct GuestImage {
    /// Uncompressed kernel.
    pub kernel: Option<PathBuf>,
    /// Initramfs.
    pub initrd: Option<PathBuf>,
}

impl Engine {
    /// Registers the default flavors and the default image on first start,
    /// and refreshes the default image's files.
    pub async fn bootstrap_catalog(&self, guest: &GuestImage) -> Result<(), ComputeError> {
        let flavors: Vec<Flavor> = self.inner.store.list().await?;
        if flavors.is_empty() {
            for f in Flavor::defaults() {
                self.inner.store.put(&f).await?;
            }
        }
        let existing: Option<Image> = self.inner.store.get(DEFAULT_IMAGE_ID).await?;
        let t = now();
        let img = Image {
            id: DEFAULT_IMAGE_ID.into(),
            name: "lifeboat-guest".into(),
            kind: ImageKind::Base,
            status: ImageStatus::Active,
            owner: None,
            visibility: "public".into(),
            disk_format: "raw".into(),
            container_format: "bare".into(),
            size: guest
                .initrd
                .as_ref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.len()),
            min_disk: 0,
            min_ram: 0,
            location: None,
            kernel: guest.kernel.as_ref().map(|p| p.display().to_string()),
            initrd: guest.initrd.as_ref().map(|p| p.display().to_string()),
            instance_uuid: None,
            backup_type: None,
            properties: BTreeMap::new(),
            checksum: None,
            os_hash_value: None,
            created_at: existing.as_ref().map(|i| i.created_at).unwrap_or(t),
            updated_at: t,
        };
        if existing.as_ref() != Some(&img) {
            self.inner.store.put(&img).await?;
        }
        self.bootstrap_networks().await
    }

    /// Flavors: admins see all of them; others see the enabled ones that
    /// are public or that their project was given access to (Nova's
    /// `is_public=True` filter, which includes the project's private ones).
    pub async fn flavors(&self, actor: &Actor) -> Result<Vec<Flavor>, ComputeError> {
        let all: Vec<Flavor> = self.inner.store.list().await?;
        if actor.is_admin() {
            return Ok(all);
        }
        let granted = self.flavors_granted_to(&actor.project_id).await?;
        Ok(all
            .into_iter()
            .filter(|f| !f.disabled && (f.is_public || granted.contains(&f.id)))
            .collect())
    }

    /// A flavor by id (or, failing that, by name).
    pub async fn flavor(&self, key: &str) -> Result<Flavor, ComputeError> {
        if let Some(f) = self.inner.store.get::<Flavor>(key).await? {
            return Ok(f);
        }
        self.inner
            .store
            .find_by_name::<Flavor>("", key)
            .await?
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::Flavor,
                id: key.into(),
            })
    }

    /// Creates a flavor (admin).
    pub async fn create_flavor(&self, actor: &Actor, f: Flavor) -> Result<Flavor, ComputeError> {
        if !actor.is_admin() {
            return Err(crate::error::forbidden(Permission::FlavorCreate));
        }
        if f.vcpus == 0 || f.ram == 0 || f.name.trim().is_empty() {
            return Err(ComputeError::BadRequest(
                "Invalid flavor: vcpus and ram must be positive and the name set.".into(),
            ));
        }
        match self.inner.store.insert(&f).await {
            Ok(()) => Ok(f),
            Err(lifeboat_store::StoreError::Duplicate(_)) => Err(Reason::FlavorExists {
                id: f.id,
                name: f.name,
            }
            .into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a flavor (admin).
    pub async fn delete_flavor(&self, actor: &Actor, id: &str) -> Result<(), ComputeError> {
        if !actor.is_admin() {
            return Err(crate::error::forbidden(Permission::FlavorDelete));
        }
        if !self.inner.store.delete::<Flavor>(id).await? {
            return Err(ComputeError::NotFound {
                kind: Resource::Flavor,
                id: id.into(),
            });
        }
        Ok(())
    }

    /// Images visible to the actor.
    pub async fn images(&self, actor: &Actor) -> Result<Vec<Image>, ComputeError> {
        let all: Vec<Image> = self.inner.store.list().await?;
        Ok(all
            .into_iter()
            .filter(|i| i.status != ImageStatus::Deleted)
            .filter(|i| {
                actor.is_admin()
                    || i.visibility == "public"
                    || i.owner.as_deref() == Some(actor.project_id.as_str())
            })
            .collect())
    }

    /// An image by id (or unique name) visible to the actor.
    pub async fn image(&self, actor: &Actor, key: &str) -> Result<Image, ComputeError> {
        let imgs = self.images(actor).await?;
        if let Some(i) = imgs.iter().find(|i| i.id == key) {
            return Ok(i.clone());
        }
        let named: Vec<&Image> = imgs.iter().filter(|i| i.name == key).collect();
        match named.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(ComputeError::NotFound {
                kind: Resource::Image,
                id: key.into(),
            }),
        }
    }

    /// Deletes an image the actor owns (or any, for admins); the default
    /// image is protected (403, as Glance answers for a protected image).
    pub async fn delete_image(&self, actor: &Actor, id: &str) -> Result<(), ComputeError> {
        let img = self.image(actor, id).await?;
        // Glance's delete_image: admin, or a member of the owning project.
        if !actor.is_admin()
            && (actor.role < lifeboat_core::Role::Member
                || img.owner.as_deref() != Some(actor.project_id.as_str()))
        {
            return Err(ComputeError::Forbidden(
                "You are not authorized to complete delete_image action.".into(),
            ));
        }
        // The default image is protected (Glance's ProtectedImageDelete):
        // creates without an image and every snapshot boot from it.
        if img.id == DEFAULT_IMAGE_ID {
            return Err(ComputeError::Forbidden(format!(
                "Image {} is protected and cannot be deleted.",
                img.id
            )));
        }
        if img.kind != ImageKind::Base {
            let _ = std::fs::remove_file(self.image_path(&img.id));
        }
        // Snapshots and uploaded images keep their data in the store.
        self.delete_store_image(img.location.as_deref()).await;
        self.inner.store.delete::<Image>(&img.id).await?;
        Ok(())
    }

    pub(crate) fn image_path(&self, id: &str) -> String {
        let dir = self.inner.cfg.data_dir.join("images");
        let _ = std::fs::create_dir_all(&dir);
        dir.join(format!("{id}.img")).display().to_string()
    }

    pub(crate) async fn image_ref(&self, id: &str) -> Result<ImageRef, ComputeError> {
        let img: Image = self
            .inner
            .store
            .get(id)
            .await?
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::Image,
                id: id.into(),
            })?;
        let base: Option<Image> = match (&img.kernel, &img.instance_uuid) {
            (None, Some(_)) => self.inner.store.get(DEFAULT_IMAGE_ID).await?,
            _ => None,
        };
        let store = self.store_disk(img.location.as_deref()).map(|mut d| {
            // What the stored bytes are: a qcow2 file (uploaded) or a raw disk.
            d.format = Some(
                if img.disk_format == "qcow2" && img.instance_uuid.is_none() {
                    "qcow2".into()
                } else {
                    "raw".into()
                },
            );
            d
        });
        Ok(ImageRef {
            id: img.id.clone(),
            disk: if store.is_some() {
                None
            } else {
                img.location.clone()
            },
            store,
            kernel: img
                .kernel
                .clone()
                .or_else(|| base.as_ref().and_then(|b| b.kernel.clone())),
            initrd: img
                .initrd
                .clone()
                .or_else(|| base.as_ref().and_then(|b| b.initrd.clone())),
            cmdline: img.properties.get("os_command_line").cloned(),
        })
    }

    /// The image a rescue boots: the one asked for, or the default image.
    pub(crate) async fn rescue_image(&self, id: Option<&str>) -> Result<ImageRef, ComputeError> {
        self.image_ref(id.unwrap_or(DEFAULT_IMAGE_ID)).await
    }

    pub(crate) async fn set_image_status(
        &self,
        id: &str,
        status: ImageStatus,
        data: Option<(String, u64, String)>,
    ) -> Result<(), ComputeError> {
        if let Some(mut img) = self.inner.store.get::<Image>(id).await? {
            img.status = status;
            img.updated_at = now();
            if let Some((path, size, format)) = data {
                img.location = Some(path);
                img.size = Some(size);
                img.disk_format = format;
            }
            self.inner.store.put(&img).await?;
        }
        Ok(())
    }

    /// The image record of a snapshot/backup (status queued), written in
    /// its workflow's transaction.
    pub(crate) fn new_snapshot_image(
        &self,
        s: &Server,
        name: &str,
        kind: ImageKind,
        backup_type: Option<&str>,
        metadata: &BTreeMap<String, String>,
    ) -> Image {
        let t = now();
        Image {
            id: lifeboat_core::ids::uuid(),
            name: name.into(),
            kind,
            status: ImageStatus::Queued,
            owner: Some(s.project_id.clone()),
            visibility: "private".into(),
            disk_format: "qcow2".into(),
            container_format: "bare".into(),
            size: None,
            min_disk: s.flavor.disk,
            min_ram: 0,
            location: None,
            kernel: None,
            initrd: None,
            instance_uuid: Some(s.id.clone()),
            backup_type: backup_type.map(str::to_string),
            properties: metadata.clone(),
            checksum: None,
            os_hash_value: None,
            created_at: t,
            updated_at: t,
        }
    }

    /// createBackup rotation: keeps the newest `rotation` backups of this type.
    pub(crate) async fn rotate_backups(
        &self,
        s: &Server,
        backup_type: &str,
        rotation: usize,
    ) -> Result<(), ComputeError> {
        let mut backups: Vec<Image> = self
            .inner
            .store
            .list_by_ref::<Image>(&s.id)
            .await?
            .into_iter()
            .filter(|i| {
                i.kind == ImageKind::Backup && i.backup_type.as_deref() == Some(backup_type)
            })
            .filter(|i| i.status == ImageStatus::Active)
            .collect();
        backups.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
        for old in backups.into_iter().skip(rotation) {
            let _ = std::fs::remove_file(self.image_path(&old.id));
            self.inner.store.delete::<Image>(&old.id).await?;
            self.delete_store_image(old.location.as_deref()).await;
        }
        Ok(())
    }

    /// The driver's view of a server.
    pub(crate) async fn vm_spec(&self, s: &Server) -> Result<VmSpec, ComputeError> {
        let image = match &s.image_id {
            Some(i) => self.image_ref(i).await?,
            None => self.image_ref(DEFAULT_IMAGE_ID).await?,
        };
        let ports = self.ports_in_order(&s.id).await?;
        let mut nics = vec![];
        for p in ports {
            nics.push(self.nic_of(&s.id, &p).await?);
        }
        Ok(VmSpec {
            name: s.instance_name.clone(),
            server_id: s.id.clone(),
            hostname: s.hostname.clone(),
            size: VmSize {
                vcpus: s.flavor.vcpus,
                ram_mb: s.flavor.ram,
                disk_gb: s.flavor.disk,
                ephemeral_gb: s.flavor.ephemeral,
                swap_mb: s.flavor.swap,
            },
            image,
            nics,
            user_data: s.user_data.clone(),
            root_disk: None,
            root_from: None,
            config_drive: if s.config_drive {
                Some(self.instance_metadata(s).await?)
            } else {
                None
            },
        })
    }

    /// Key pairs of the actor.
    pub async fn keypairs(&self, actor: &Actor) -> Result<Vec<Keypair>, ComputeError> {
        Ok(self.inner.store.list_by_owner(&actor.user_id).await?)
    }

    /// A key pair of the actor by name.
    pub async fn keypair(&self, actor: &Actor, name: &str) -> Result<Keypair, ComputeError> {
        self.inner
            .store
            .find_by_name::<Keypair>(&actor.user_id, name)
            .await?
            .ok_or_else(|| ComputeError::NotFound {
                kind: Resource::KeyPair,
                id: name.into(),
            })
    }

    /// Imports a public key.
    pub async fn import_keypair(
        &self,
        actor: &Actor,
        name: &str,
        public_key: &str,
        key_type: &str,
    ) -> Result<Keypair, ComputeError> {
        if actor.role < lifeboat_core::Role::Member {
            return Err(ComputeError::Forbidden(
                "readers cannot create key pairs".into(),
            ));
        }
        let valid_name = !name.is_empty()
            && name.len() <= 255
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || " _-.@".contains(c));
        if !valid_name {
            return Err(Reason::KeyPairNameUnsafe.into());
        }
        let parts: Vec<&str> = public_key.split_whitespace().collect();
        let blob = parts.get(1).and_then(|b| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(b).ok()
        });
        let Some(blob) =
            blob.filter(|_| parts[0].starts_with("ssh-") || parts[0].starts_with("ecdsa-"))
        else {
            return Err(Reason::KeyPairBadKey.into());
        };
        use md5::Digest;
        let fingerprint = md5::Md5::digest(&blob)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        self.check_keypair_quota(actor).await?;
        let kp = Keypair {
            name: name.into(),
            user_id: actor.user_id.clone(),
            public_key: public_key.trim().into(),
            fingerprint,
            key_type: key_type.into(),
            created_at: now(),
        };
        match self.inner.store.insert(&kp).await {
            Ok(()) => Ok(kp),
            Err(lifeboat_store::StoreError::Duplicate(_)) => {
                Err(Reason::KeyPairExists { name: name.into() }.into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Generates an Ed25519 key pair, keeps its public half and returns the
    /// private key in OpenSSH format (shown once, never stored).
    pub async fn generate_keypair(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<(Keypair, String), ComputeError> {
        let key = ssh_key::PrivateKey::random(&mut rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .map_err(|e| ComputeError::Internal(format!("key generation: {e}")))?;
        let private = key
            .to_openssh(ssh_key::LineEnding::LF)
            .map_err(|e| ComputeError::Internal(format!("key encoding: {e}")))?
            .to_string();
        let public = key
            .public_key()
            .to_openssh()
            .map_err(|e| ComputeError::Internal(format!("key encoding: {e}")))?;
        let kp = self.import_keypair(actor, name, &public, "ssh").await?;
        Ok((kp, private))
    }

    /// Deletes a key pair of the actor.
    pub async fn delete_keypair(&self, actor: &Actor, name: &str) -> Result<(), ComputeError> {
        let kp = self.keypair(actor, name).await?;
        self.inner
            .store
            .delete::<Keypair>(&format!("{}:{}", kp.user_id, kp.name))
            .await?;
        Ok(())
    }
}
