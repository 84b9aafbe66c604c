//! Lifeboat's snapshot store ("snapstore"): server backups, images, shelved disks and DR points in one
//! deduplicated, compressed, optionally encrypted store. Format: `docs/snapstore.md`.
//!
//! Layout on a backend (local directory or S3 bucket):
//! - `config.json` — chunk size, whether the store is encrypted, the key fingerprint (never the key);
//! - `chunks/<4 hex>/<64 hex>` — chunk blobs ([`chunk_store`]);
//! - `snapshots/<id>/manifest.json` and `snapshots/<id>/<disk>.fidx` ([`manifest`], [`fixed_index`]);
//! - `writers/<id>.json` — running backups, which GC and delete respect ([`gc`]).
//!
//! The crate has no engine/hypervisor dependency: callers hand [`backup::DiskReader`]s (a file, a block
//! device, an [`nbd::NbdReader`] over a QEMU export) and, for bitmap incrementals, the dirty extents.

pub mod backend;
pub mod backup;
pub mod chunk_store;
pub mod crypto;
pub mod fixed_index;
pub mod gc;
pub mod location;
pub mod manifest;
pub mod nbd;
pub mod nbd_server;
pub mod prune;
pub mod qsd;
pub mod restore;
pub mod s3;
pub mod verify;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use backend::{Backend, BackendRef, FsBackend};
pub use backup::{BackupRequest, DiskReader, DiskSource, Extent, FileReader, Progress};
pub use chunk_store::{ChunkId, ChunkStore};
pub use crypto::{create_key, load_key, CryptKey};
pub use fixed_index::FixedIndex;
pub use location::{DiskDigest, DiskStream, S3Location, StoreLocation};
pub use manifest::{DiskEntry, ManifestBody, SnapshotKind, SnapshotMeta};
pub use s3::{S3Backend, S3Config};

/// Errors of the store. Messages name the object and never contain key material.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local I/O error.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The object store failed.
    #[error("storage backend: {0}")]
    Backend(String),
    /// Stored data failed a check (hash, MAC, format).
    #[error("damaged data: {0}")]
    Corrupt(String),
    /// Missing, wrong or unusable key.
    #[error("key: {0}")]
    Key(String),
    /// Bad argument.
    #[error("invalid: {0}")]
    Invalid(String),
    /// No such snapshot/disk.
    #[error("not found: {0}")]
    NotFound(String),
    /// Refused because a running backup needs it.
    #[error("busy: {0}")]
    Busy(String),
}

impl Error {
    pub(crate) fn io(what: String, source: std::io::Error) -> Self {
        Self::Io { what, source }
    }
}

/// Default chunk size: 1 MiB (see the measurements in docs/snapstore.md).
pub const DEFAULT_CHUNK_SIZE: u64 = 1 << 20;

/// `config.json` of a store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoreConfig {
    /// Format version (1).
    pub version: u32,
    /// Chunk size of new disks.
    pub chunk_size: u64,
    /// Whether chunks are encrypted.
    pub encrypted: bool,
    /// Fingerprint of the store's key (encrypted stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
}

/// An open store.
#[derive(Clone)]
pub struct DataStore {
    pub(crate) chunks: ChunkStore,
    pub(crate) key: Option<Arc<CryptKey>>,
    pub(crate) config: StoreConfig,
}

impl std::fmt::Debug for DataStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataStore")
            .field("backend", &self.backend().describe())
            .field("config", &self.config)
            .finish()
    }
}

/// Check a chunk size: a power of two from 64 KiB (the qcow2 cluster / dirty-bitmap granularity) to 64 MiB.
pub fn check_chunk_size(cs: u64) -> Result<(), Error> {
    if !cs.is_power_of_two() || !(64 << 10..=64 << 20).contains(&cs) {
        return Err(Error::Invalid(format!(
            "chunk size {cs} must be a power of two from 64 KiB to 64 MiB"
        )));
    }
    Ok(())
}

impl DataStore {
    /// Open the store on `backend`, creating `config.json` when it is empty. An encrypted store needs its key;
    /// a new store is encrypted exactly when a key is given.
    pub fn open(
        backend: BackendRef,
        key: Option<CryptKey>,
        chunk_size: u64,
    ) -> Result<Self, Error> {
        let config = match backend.get("config.json")? {
            Some(raw) => serde_json::from_slice::<StoreConfig>(&raw).map_err(|e| {
                Error::Corrupt(format!("config.json of {}: {e}", backend.describe()))
            })?,
            None => {
                check_chunk_size(chunk_size)?;
                let c = StoreConfig {
                    version: 1,
                    chunk_size,
                    encrypted: key.is_some(),
                    key_fingerprint: key.as_ref().map(|k| k.fingerprint().to_string()),
                };
                backend.put(
                    "config.json",
                    &serde_json::to_vec_pretty(&c).expect("config serializes"),
                )?;
                c
            }
        };
        check_chunk_size(config.chunk_size)?;
        match (&config.key_fingerprint, &key) {
            (Some(fp), None) => {
                return Err(Error::Key(format!(
                    "store {} is encrypted (key {fp}): a key file is needed",
                    backend.describe()
                )))
            }
            (Some(fp), Some(k)) if fp != k.fingerprint() => {
                return Err(Error::Key(format!(
                    "store {} is encrypted with key {fp}, the given key is {}",
                    backend.describe(),
                    k.fingerprint()
                )))
            }
            (None, Some(_)) => {
                return Err(Error::Key(format!(
                    "store {} is not encrypted; open it without a key",
                    backend.describe()
                )))
            }
            _ => {}
        }
        let key = key.map(Arc::new);
        Ok(Self {
            chunks: ChunkStore::new(backend, key.clone()),
            key,
            config,
        })
    }

    /// Open (or create) a store in a local directory.
    pub fn open_dir(
        path: impl AsRef<std::path::Path>,
        key: Option<CryptKey>,
    ) -> Result<Self, Error> {
        Self::open(Arc::new(FsBackend::open(path)?), key, DEFAULT_CHUNK_SIZE)
    }

    /// The backend.
    pub fn backend(&self) -> &BackendRef {
        self.chunks.backend()
    }

    /// Set the zstd level of new chunks (see docs/snapstore.md for the measured trade-off).
    pub fn set_compression_level(&mut self, level: i32) {
        self.chunks.set_level(level);
    }

    /// The chunk store.
    pub fn chunk_store(&self) -> &ChunkStore {
        &self.chunks
    }

    /// The store configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn key_ref(&self) -> Option<&CryptKey> {
        self.key.as_deref()
    }

    /// Ids of all snapshots (sorted, oldest first: ids start with their UTC creation time).
    pub fn snapshot_ids(&self) -> Result<Vec<String>, Error> {
        let mut ids: Vec<String> = self
            .backend()
            .list("snapshots/")?
            .into_iter()
            .filter_map(|(k, _)| {
                k.strip_prefix("snapshots/")?
                    .strip_suffix("/manifest.json")
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Load and check a snapshot's manifest.
    pub fn manifest(&self, id: &str) -> Result<ManifestBody, Error> {
        check_id(id)?;
        let raw = self
            .backend()
            .get(&format!("snapshots/{id}/manifest.json"))?
            .ok_or_else(|| Error::NotFound(format!("snapshot {id}")))?;
        let m = ManifestBody::from_signed_json(&raw, self.key_ref())?;
        if m.id != id {
            return Err(Error::Corrupt(format!(
                "manifest at {id} names snapshot {}",
                m.id
            )));
        }
        Ok(m)
    }

    /// All manifests (oldest first); fails on the first damaged one.
    pub fn snapshots(&self) -> Result<Vec<ManifestBody>, Error> {
        self.snapshot_ids()?
            .iter()
            .map(|id| self.manifest(id))
            .collect()
    }

    /// Load and check the index of one disk of a snapshot.
    pub fn index(&self, m: &ManifestBody, disk: &str) -> Result<FixedIndex, Error> {
        let d = m
            .disks
            .iter()
            .find(|d| d.name == disk)
            .ok_or_else(|| Error::NotFound(format!("disk {disk} in snapshot {}", m.id)))?;
        let raw = self
            .backend()
            .get(&format!("snapshots/{}/{}.fidx", m.id, d.name))?
            .ok_or_else(|| {
                Error::Corrupt(format!(
                    "index of disk {disk} in snapshot {} is missing",
                    m.id
                ))
            })?;
        let mac = manifest::mac_bytes(self.key_ref(), &raw);
        if !crypto::ct_eq(&mac, &hex::decode(&d.index_mac).unwrap_or_default()) {
            return Err(Error::Corrupt(format!(
                "index of disk {disk} in snapshot {}: MAC does not match",
                m.id
            )));
        }
        let idx = FixedIndex::from_bytes(&raw)?;
        if idx.size != d.size || idx.chunk_size != d.chunk_size {
            return Err(Error::Corrupt(format!(
                "index of disk {disk} in snapshot {} disagrees with the manifest",
                m.id
            )));
        }
        Ok(idx)
    }

    /// Running backups (from the writer registry).
    pub fn writers(&self) -> Result<Vec<gc::WriterInfo>, Error> {
        let mut out = Vec::new();
        for (k, _) in self.backend().list("writers/")? {
            if let Some(raw) = self.backend().get(&k)? {
                if let Ok(w) = serde_json::from_slice::<gc::WriterInfo>(&raw) {
                    out.push(w);
                }
            }
        }
        Ok(out)
    }

    /// Delete a snapshot. Refused while a running backup uses it as its parent. Chunks go at the next GC.
    pub fn delete_snapshot(&self, id: &str) -> Result<(), Error> {
        // A damaged manifest can still be deleted: its index files are then found by listing.
        let m = self.manifest(id);
        if let Err(Error::NotFound(_)) = &m {
            return Err(Error::NotFound(format!("snapshot {id}")));
        }
        if let Some(w) = self
            .writers()?
            .into_iter()
            .find(|w| w.parent.as_deref() == Some(id))
        {
            return Err(Error::Busy(format!(
                "snapshot {id} is the parent of running backup {}",
                w.id
            )));
        }
        let disk_keys: Vec<String> = match &m {
            Ok(m) => m
                .disks
                .iter()
                .map(|d| format!("snapshots/{id}/{}.fidx", d.name))
                .collect(),
            Err(_) => self
                .backend()
                .list(&format!("snapshots/{id}/"))?
                .into_iter()
                .map(|(k, _)| k)
                .filter(|k| !k.ends_with("/manifest.json"))
                .collect(),
        };
        self.backend()
            .delete(&format!("snapshots/{id}/manifest.json"))?;
        for k in disk_keys {
            self.backend().delete(&k)?;
        }
        Ok(())
    }
}

/// Check a snapshot id or disk name: `[A-Za-z0-9_.-]+`, not starting with a dot.
pub fn check_id(id: &str) -> Result<(), Error> {
    if id.is_empty()
        || id.len() > 128
        || id.starts_with('.')
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::Invalid(format!(
            "bad snapshot id or disk name {id:?}"
        )));
    }
    Ok(())
}
