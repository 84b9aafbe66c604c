//! Full and incremental backups of disks into fixed-size chunks.
//!
//! Three modes per disk, chosen by what the caller provides:
//! - `full`: every chunk is read, zero chunks are skipped, the rest hashed and stored (deduplicated);
//! - `bitmap`: the caller gives the dirty extents since the parent (a QEMU dirty bitmap, read over NBD block
//!   status): only chunks overlapping them are read, the rest take the parent's ids. The result is a complete
//!   snapshot, not a delta;
//! - `hash`: a parent but no bitmap: every chunk is read and hashed; only chunks whose id is new are stored.
//!
//! Hashing, compression and encryption run on all cores (rayon); each worker reads its own chunk with `pread`.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use crate::chunk_store::{ChunkId, Inserted, ZERO_ID};
use crate::fixed_index::FixedIndex;
use crate::gc::WriterGuard;
use crate::manifest::{mac_bytes, DiskEntry, ManifestBody, SnapshotMeta};
use crate::{check_id, DataStore, Error};

/// Random-access reader over a disk's guest-visible bytes.
pub trait DiskReader: Send + Sync {
    /// Disk size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset` (short reads are errors).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

/// A raw image file or a block device read with `pread`.
#[derive(Debug)]
pub struct FileReader {
    file: File,
    size: u64,
}

impl FileReader {
    /// Open a raw file or block device read-only.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let mut file = File::open(path.as_ref())?;
        let size = file.seek(SeekFrom::End(0))?;
        Ok(Self { file, size })
    }
}

impl DiskReader for FileReader {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
}

/// A byte range `[offset, offset+len)` of a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Start.
    pub offset: u64,
    /// Length.
    pub len: u64,
}

/// Progress of a backup or restore.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Disk being processed.
    pub disk: String,
    /// Bytes done so far on this disk.
    pub done: u64,
    /// Bytes to do on this disk.
    pub total: u64,
}

/// Progress callback (called from worker threads).
pub type ProgressFn<'a> = &'a (dyn Fn(&Progress) + Sync);

/// One disk to back up.
pub struct DiskSource {
    /// Disk name in the snapshot.
    pub name: String,
    /// Reader over the disk.
    pub reader: Arc<dyn DiskReader>,
    /// Extents changed since the parent snapshot (from a trusted dirty bitmap), or `None`.
    pub dirty: Option<Vec<Extent>>,
}

/// What to back up.
pub struct BackupRequest {
    /// Metadata stored in the manifest.
    pub meta: SnapshotMeta,
    /// Parent snapshot for incrementals.
    pub parent: Option<String>,
    /// Disks.
    pub disks: Vec<DiskSource>,
}

/// Make a new snapshot id: `<UTC time>-<random>`, so ids sort by creation.
pub fn new_snapshot_id(now: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}-{:08x}",
        now.format("%Y%m%dT%H%M%S%.6fZ"),
        rand::random::<u32>()
    )
}

/// Chunk indices touched by the extents.
fn dirty_chunks(extents: &[Extent], chunk_size: u64, count: usize) -> Vec<bool> {
    let mut d = vec![false; count];
    for e in extents.iter().filter(|e| e.len > 0) {
        let first = (e.offset / chunk_size) as usize;
        let last = ((e.offset + e.len - 1) / chunk_size) as usize;
        for x in d
            .iter_mut()
            .take(last.min(count.saturating_sub(1)) + 1)
            .skip(first)
        {
            *x = true;
        }
    }
    d
}

/// A disk's manifest entry, its index, the chunks taken from the parent unread `(index, id)`, and the chunks
/// found already stored (touched, not written) `(index, id)`.
type DiskResult = (
    DiskEntry,
    FixedIndex,
    Vec<(usize, ChunkId)>,
    Vec<(usize, ChunkId)>,
);

impl DataStore {
    /// Back up the disks of `req`; returns the manifest written. The snapshot appears only when complete.
    pub fn backup(
        &self,
        req: BackupRequest,
        progress: ProgressFn<'_>,
    ) -> Result<ManifestBody, Error> {
        let now = chrono::Utc::now();
        let id = new_snapshot_id(now);
        let mut names = HashSet::new();
        for d in &req.disks {
            check_id(&d.name)?;
            if !names.insert(d.name.clone()) {
                return Err(Error::Invalid(format!("disk {} given twice", d.name)));
            }
        }
        if req.disks.is_empty() {
            return Err(Error::Invalid("a snapshot needs at least one disk".into()));
        }
        let _writer = WriterGuard::register(self, &id, req.parent.as_deref())?;
        let parent = match &req.parent {
            Some(p) => Some(self.manifest(p)?),
            None => None,
        };
        let mut disks = Vec::new();
        // Chunks this backup took from the parent without reading: (disk, chunk index, id).
        let mut from_parent: Vec<(usize, usize, ChunkId)> = Vec::new();
        // Chunks it found stored already and only touched: (disk, chunk index, id).
        let mut existed: Vec<(usize, usize, ChunkId)> = Vec::new();
        for (di, src) in req.disks.iter().enumerate() {
            let pidx = match &parent {
                Some(pm) if pm.disks.iter().any(|d| d.name == src.name) => {
                    Some(self.index(pm, &src.name)?)
                }
                _ => None,
            };
            let (entry, idx, reused, found) = self.backup_disk(src, pidx.as_ref(), progress)?;
            from_parent.extend(reused.into_iter().map(|(i, cid)| (di, i, cid)));
            existed.extend(found.into_iter().map(|(i, cid)| (di, i, cid)));
            let raw = idx.to_bytes();
            self.backend()
                .put(&format!("snapshots/{id}/{}.fidx", src.name), &raw)?;
            disks.push(DiskEntry {
                index_mac: hex::encode(mac_bytes(self.key_ref(), &raw)),
                ..entry
            });
        }
        // The parent protected the chunks we took from it (delete refuses while we run). Should it be gone
        // anyway, make sure each such chunk still exists, re-reading it from the source if not.
        if let Some(p) = &req.parent {
            if self
                .backend()
                .head(&format!("snapshots/{p}/manifest.json"))?
                .is_none()
            {
                let mut seen = HashSet::new();
                for (di, i, cid) in from_parent {
                    if seen.insert(cid)
                        && !self.backend().touch(&crate::chunk_store::chunk_key(&cid))?
                    {
                        let src = &req.disks[di];
                        let (off, len) = FixedIndex::range(
                            &FixedIndex {
                                size: src.reader.size(),
                                chunk_size: disks[di].chunk_size,
                                ids: vec![],
                            },
                            i,
                        );
                        let mut buf = vec![0u8; len];
                        src.reader
                            .read_at(&mut buf, off)
                            .map_err(|e| Error::io(format!("read {}", src.name), e))?;
                        if self.chunks.id_of(&buf) != cid {
                            return Err(Error::Busy(format!(
                                "parent {p} was deleted during the backup and disk {} changed since: retry as a full backup",
                                src.name
                            )));
                        }
                        self.chunks.insert(&cid, &buf)?;
                    }
                }
            }
        }
        // GC's sweep is HEAD-then-DELETE (S3 has no conditional delete): a chunk whose old time it read just
        // before we touched it can still be deleted after the touch. Every chunk we only touched is checked
        // now that all of them were touched, before the manifest makes the snapshot visible; one that is gone
        // is read again and stored again. (A GC that looks after this check sees the touch and keeps it.)
        let mut checked = HashSet::new();
        for (di, i, cid) in existed {
            if checked.insert(cid)
                && self
                    .backend()
                    .head(&crate::chunk_store::chunk_key(&cid))?
                    .is_none()
            {
                let src = &req.disks[di];
                let (off, len) = FixedIndex::range(
                    &FixedIndex {
                        size: src.reader.size(),
                        chunk_size: disks[di].chunk_size,
                        ids: vec![],
                    },
                    i,
                );
                let mut buf = vec![0u8; len];
                src.reader
                    .read_at(&mut buf, off)
                    .map_err(|e| Error::io(format!("read {}", src.name), e))?;
                if self.chunks.id_of(&buf) != cid {
                    return Err(Error::Busy(format!(
                        "a chunk of disk {} was removed by a concurrent GC and the disk changed since: retry",
                        src.name
                    )));
                }
                self.chunks.insert(&cid, &buf)?;
            }
        }
        let body = ManifestBody {
            version: 1,
            id: id.clone(),
            created_at: now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            parent: req.parent.clone(),
            meta: req.meta,
            disks,
            key_fingerprint: self.key.as_ref().map(|k| k.fingerprint().to_string()),
        };
        self.backend().put(
            &format!("snapshots/{id}/manifest.json"),
            &body.to_signed_json(self.key_ref()),
        )?;
        Ok(body)
    }

    fn backup_disk(
        &self,
        src: &DiskSource,
        parent: Option<&FixedIndex>,
        progress: ProgressFn<'_>,
    ) -> Result<DiskResult, Error> {
        let size = src.reader.size();
        let chunk_size = parent
            .map(|p| p.chunk_size)
            .unwrap_or(self.config.chunk_size);
        let mut idx = FixedIndex::zeroed(size, chunk_size);
        let count = idx.ids.len();
        let (mode, to_read): (&str, Vec<usize>) = match (parent, &src.dirty) {
            (Some(p), Some(dirty)) => {
                let mut d = dirty_chunks(dirty, chunk_size, count);
                // Chunks the parent does not cover fully (the disk grew, or its old last chunk) are read too.
                for (i, x) in d.iter_mut().enumerate() {
                    if i >= p.ids.len() || idx.range(i) != p.range(i) {
                        *x = true;
                    }
                }
                ("bitmap", (0..count).filter(|&i| d[i]).collect())
            }
            (Some(_), None) => ("hash", (0..count).collect()),
            (None, _) => ("full", (0..count).collect()),
        };
        let mut reused = Vec::new();
        if mode == "bitmap" {
            let p = parent.expect("bitmap mode has a parent");
            let read: HashSet<usize> = to_read.iter().copied().collect();
            for i in (0..count).filter(|i| !read.contains(i)) {
                idx.ids[i] = p.ids[i];
                if p.ids[i] != ZERO_ID {
                    reused.push((i, p.ids[i]));
                }
            }
        }
        let known: HashSet<ChunkId> = parent
            .map(|p| p.ids.iter().copied().collect())
            .unwrap_or_default();
        let seen: Mutex<HashMap<ChunkId, ()>> = Mutex::new(HashMap::new());
        let total: u64 = to_read.iter().map(|&i| idx.range(i).1 as u64).sum();
        let done = AtomicU64::new(0);
        let new_chunks = AtomicU64::new(0);
        let new_bytes = AtomicU64::new(0);
        progress(&Progress {
            disk: src.name.clone(),
            done: 0,
            total,
        });
        let results: Vec<Result<(usize, ChunkId, bool), Error>> = to_read
            .par_iter()
            .map(|&i| {
                let (off, len) = idx.range(i);
                let mut buf = vec![0u8; len];
                src.reader
                    .read_at(&mut buf, off)
                    .map_err(|e| Error::io(format!("read disk {} at {off}", src.name), e))?;
                let mut touched = false;
                let cid = if crate::chunk_store::is_zero(&buf) {
                    ZERO_ID
                } else {
                    let cid = self.chunks.id_of(&buf);
                    // Parent chunks are protected by the parent; chunks met earlier in this backup are handled.
                    let first = !known.contains(&cid)
                        && seen.lock().expect("lock").insert(cid, ()).is_none();
                    if first {
                        match self.chunks.insert(&cid, &buf)? {
                            Inserted::Written(n) => {
                                new_chunks.fetch_add(1, Ordering::Relaxed);
                                new_bytes.fetch_add(n, Ordering::Relaxed);
                            }
                            Inserted::Existed => touched = true,
                        }
                    }
                    cid
                };
                let d = done.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
                progress(&Progress {
                    disk: src.name.clone(),
                    done: d,
                    total,
                });
                Ok((i, cid, touched))
            })
            .collect();
        let mut existed = Vec::new();
        for r in results {
            let (i, cid, touched) = r?;
            idx.ids[i] = cid;
            if touched {
                existed.push((i, cid));
            }
        }
        let entry = DiskEntry {
            name: src.name.clone(),
            size,
            chunk_size,
            chunks: count as u64,
            zero_chunks: (count - idx.stored_chunks()) as u64,
            index_mac: String::new(),
            read_bytes: total,
            new_chunks: new_chunks.into_inner(),
            new_stored_bytes: new_bytes.into_inner(),
            mode: mode.to_string(),
        };
        Ok((entry, idx, reused, existed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_chunk_mapping() {
        let e = [
            Extent { offset: 0, len: 1 },
            Extent {
                offset: 3 * 1024 - 1,
                len: 2,
            },
            Extent {
                offset: 9000,
                len: 0,
            },
        ];
        let d = dirty_chunks(&e, 1024, 5);
        assert_eq!(d, vec![true, false, true, true, false]);
        // An extent running past the end is clipped.
        let d = dirty_chunks(
            &[Extent {
                offset: 4000,
                len: 10_000,
            }],
            1024,
            5,
        );
        assert_eq!(d, vec![false, false, false, true, true]);
    }
}
