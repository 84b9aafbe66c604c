use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

use super::Time;

/// What an image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// A base image to boot from.
    Base,
    /// A snapshot made by createImage.
    Snapshot,
    /// A backup made by createBackup.
    Backup,
}

/// Image status (Glance's values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    /// Record exists, no data yet.
    Queued,
    /// Data being written.
    Saving,
    /// Usable.
    Active,
    /// Being deleted.
    Deleted,
    /// Failed.
    Killed,
}

/// A bootable image, snapshot or backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Image {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: ImageKind,
    /// Status.
    pub status: ImageStatus,
    /// Owning project (None: public base image).
    pub owner: Option<String>,
    /// public, private, shared or community.
    pub visibility: String,
    /// qcow2 or raw.
    pub disk_format: String,
    /// bare.
    pub container_format: String,
    /// Bytes of the image data.
    pub size: Option<u64>,
    /// Minimum disk GiB.
    pub min_disk: u64,
    /// Minimum RAM MiB.
    pub min_ram: u64,
    /// Where the driver finds the data (a path for local storage).
    pub location: Option<String>,
    /// Kernel to boot (direct kernel boot), if any.
    pub kernel: Option<String>,
    /// Initramfs to boot, if any.
    pub initrd: Option<String>,
    /// Server this snapshot/backup was made from.
    pub instance_uuid: Option<String>,
    /// createBackup's backup_type.
    pub backup_type: Option<String>,
    /// Free-form properties.
    pub properties: BTreeMap<String, String>,
    /// MD5 of the image data, hex (Glance's `checksum`).
    #[serde(default)]
    pub checksum: Option<String>,
    /// SHA-512 of the image data, hex (Glance's `os_hash_value`).
    #[serde(default)]
    pub os_hash_value: Option<String>,
    /// Created.
    pub created_at: Time,
    /// Updated.
    pub updated_at: Time,
}
