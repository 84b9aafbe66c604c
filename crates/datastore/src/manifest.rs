//! Snapshot manifests: `snapshots/<id>/manifest.json` = `{"body": {...}, "mac": "<hex>"}`.
//!
//! The MAC is keyed BLAKE3 (the key file's MAC key) over the canonical JSON of `body`; in a key-less store it
//! is plain BLAKE3, which detects damage but not deliberate tampering. The body holds, per disk, the MAC of the
//! disk's index file, so the chain manifest → index → chunk ids → chunk contents is checked end to end.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::{ct_eq, CryptKey};
use crate::Error;

/// What a snapshot is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Nova createBackup / `lifeboat backup create`.
    Backup,
    /// createImage snapshots and uploaded images.
    Image,
    /// The disk of a shelved server.
    Shelve,
    /// Disaster-recovery point in time.
    Dr,
    /// The manager's own snapshots.
    Manager,
}

impl SnapshotKind {
    /// Lowercase name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Image => "image",
            Self::Shelve => "shelve",
            Self::Dr => "dr",
            Self::Manager => "manager",
        }
    }
}

impl std::str::FromStr for SnapshotKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "backup" => Self::Backup,
            "image" => Self::Image,
            "shelve" => Self::Shelve,
            "dr" => Self::Dr,
            "manager" => Self::Manager,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown snapshot kind {s:?} (backup, image, shelve, dr, manager)"
                )))
            }
        })
    }
}

/// Caller-supplied metadata of a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// Kind of snapshot.
    pub kind: SnapshotKind,
    /// Nova backup_type (`daily`, `weekly`, …) used for rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_type: Option<String>,
    /// Server id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Flavor id/name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flavor: Option<String>,
    /// Image the server was built from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Ports (free-form JSON objects).
    #[serde(default)]
    pub ports: Vec<serde_json::Value>,
    /// Free-form string properties (name, disk_format, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl SnapshotMeta {
    /// Metadata of the given kind, everything else empty.
    pub fn new(kind: SnapshotKind) -> Self {
        Self {
            kind,
            backup_type: None,
            server: None,
            flavor: None,
            image: None,
            ports: Vec::new(),
            properties: BTreeMap::new(),
        }
    }
}

/// One disk of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskEntry {
    /// Disk name (`vda`, `root`, …): `[A-Za-z0-9_-]+`.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Chunk size in bytes.
    pub chunk_size: u64,
    /// Number of chunks.
    pub chunks: u64,
    /// Chunks that are all zero (not stored).
    pub zero_chunks: u64,
    /// MAC (or checksum) of the index file, hex.
    pub index_mac: String,
    /// Bytes read from the source for this snapshot.
    pub read_bytes: u64,
    /// Chunks newly written by this snapshot.
    pub new_chunks: u64,
    /// Stored (compressed, encrypted) bytes newly written by this snapshot.
    pub new_stored_bytes: u64,
    /// How the disk was read: `full`, `bitmap` (dirty extents + parent) or `hash` (all read, diffed against the parent).
    pub mode: String,
}

/// The MACed content of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestBody {
    /// Format version (1).
    pub version: u32,
    /// Snapshot id.
    pub id: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Parent snapshot (incrementals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Caller metadata.
    pub meta: SnapshotMeta,
    /// Disks.
    pub disks: Vec<DiskEntry>,
    /// Fingerprint of the key (encrypted stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct ManifestFile {
    body: ManifestBody,
    mac: String,
}

/// MAC of bytes under the store key (plain BLAKE3 without a key).
pub fn mac_bytes(key: Option<&CryptKey>, data: &[u8]) -> [u8; 32] {
    match key {
        Some(k) => k.mac(data),
        None => *blake3::hash(data).as_bytes(),
    }
}

impl ManifestBody {
    /// Serialize with its MAC.
    pub fn to_signed_json(&self, key: Option<&CryptKey>) -> Vec<u8> {
        let canon = serde_json::to_vec(self).expect("manifest serializes");
        let mac = hex::encode(mac_bytes(key, &canon));
        serde_json::to_vec_pretty(&ManifestFile {
            body: self.clone(),
            mac,
        })
        .expect("manifest serializes")
    }

    /// Parse and check the MAC.
    pub fn from_signed_json(raw: &[u8], key: Option<&CryptKey>) -> Result<Self, Error> {
        let f: ManifestFile = serde_json::from_slice(raw)
            .map_err(|e| Error::Corrupt(format!("manifest does not parse: {e}")))?;
        if let (Some(fp), Some(k)) = (&f.body.key_fingerprint, key) {
            if fp != k.fingerprint() {
                return Err(Error::Key(format!(
                    "snapshot {} was made with key {fp}, the given key is {}",
                    f.body.id,
                    k.fingerprint()
                )));
            }
        }
        if f.body.key_fingerprint.is_some() && key.is_none() {
            return Err(Error::Key(format!(
                "snapshot {} is encrypted: a key file is needed",
                f.body.id
            )));
        }
        let canon = serde_json::to_vec(&f.body).expect("manifest serializes");
        let want = mac_bytes(key, &canon);
        let got = hex::decode(&f.mac).unwrap_or_default();
        if !ct_eq(&want, &got) {
            return Err(Error::Corrupt(format!(
                "manifest of snapshot {}: MAC does not match (damaged or tampered)",
                f.body.id
            )));
        }
        Ok(f.body)
    }
}
