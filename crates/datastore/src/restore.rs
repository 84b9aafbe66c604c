//! Restore a disk of a snapshot into a new raw file or qcow2 image.
//!
//! Chunks are fetched, decrypted, decompressed and verified against their id in parallel and written with
//! `pwrite`; zero chunks are left as holes (the new file is sparse). A chunk that fails its check stops the
//! restore with an error naming it, and the partial file is removed.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use serde::Serialize;

use crate::backup::{Progress, ProgressFn};
use crate::chunk_store::ZERO_ID;
use crate::fixed_index::FixedIndex;
use crate::{DataStore, Error};

/// Output format of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreFormat {
    /// Sparse raw file.
    Raw,
    /// qcow2 (written raw next to the target, then converted with `qemu-img convert`, zero chunks unallocated).
    Qcow2,
}

/// What a restore did.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RestoreReport {
    /// Disk size.
    pub size: u64,
    /// Chunks fetched and verified.
    pub chunks_written: u64,
    /// Zero chunks left as holes.
    pub zero_chunks: u64,
}

struct RemoveOnDrop(Option<PathBuf>);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

impl DataStore {
    /// Restore disk `disk` of snapshot `id` into the new file `target` (must not exist).
    pub fn restore_disk(
        &self,
        id: &str,
        disk: &str,
        target: &Path,
        format: RestoreFormat,
        progress: ProgressFn<'_>,
    ) -> Result<RestoreReport, Error> {
        let m = self.manifest(id)?;
        let idx = self.index(&m, disk)?;
        match format {
            RestoreFormat::Raw => {
                let f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(target)
                    .map_err(|e| Error::io(format!("create {}", target.display()), e))?;
                let mut guard = RemoveOnDrop(Some(target.to_path_buf()));
                let r = self.restore_into(&idx, disk, &f, progress)?;
                f.sync_all()
                    .map_err(|e| Error::io(format!("sync {}", target.display()), e))?;
                guard.0 = None;
                Ok(r)
            }
            RestoreFormat::Qcow2 => {
                if target.exists() {
                    return Err(Error::Invalid(format!("{} exists", target.display())));
                }
                let tmp =
                    target.with_extension(format!("restore-{:08x}.raw", rand::random::<u32>()));
                let _tmp_guard = RemoveOnDrop(Some(tmp.clone()));
                let r = self.restore_disk(id, disk, &tmp, RestoreFormat::Raw, progress)?;
                let mut guard = RemoveOnDrop(Some(target.to_path_buf()));
                let out = Command::new("qemu-img")
                    .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
                    .arg(&tmp)
                    .arg(target)
                    .output()
                    .map_err(|e| {
                        Error::io("run qemu-img convert (is qemu-utils installed?)".into(), e)
                    })?;
                if !out.status.success() {
                    return Err(Error::Backend(format!(
                        "qemu-img convert: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    )));
                }
                guard.0 = None;
                Ok(r)
            }
        }
    }

    /// Write every chunk of `idx` into `f` (which must read as zeros where chunks are zero).
    pub fn restore_into(
        &self,
        idx: &FixedIndex,
        disk: &str,
        f: &File,
        progress: ProgressFn<'_>,
    ) -> Result<RestoreReport, Error> {
        f.set_len(idx.size)
            .map_err(|e| Error::io("set restore target size".into(), e))?;
        let work: Vec<usize> = (0..idx.ids.len())
            .filter(|&i| idx.ids[i] != ZERO_ID)
            .collect();
        let total: u64 = work.iter().map(|&i| idx.range(i).1 as u64).sum();
        let done = AtomicU64::new(0);
        progress(&Progress {
            disk: disk.to_string(),
            done: 0,
            total,
        });
        work.par_iter().try_for_each(|&i| -> Result<(), Error> {
            let (off, len) = idx.range(i);
            let data = self.chunks.load(&idx.ids[i])?;
            if data.len() != len {
                return Err(Error::Corrupt(format!(
                    "chunk {i} of disk {disk} has {} bytes, expected {len}",
                    data.len()
                )));
            }
            f.write_all_at(&data, off)
                .map_err(|e| Error::io(format!("write restore target at {off}"), e))?;
            let d = done.fetch_add(len as u64, Ordering::Relaxed) + len as u64;
            progress(&Progress {
                disk: disk.to_string(),
                done: d,
                total,
            });
            Ok(())
        })?;
        Ok(RestoreReport {
            size: idx.size,
            chunks_written: work.len() as u64,
            zero_chunks: (idx.ids.len() - work.len()) as u64,
        })
    }

    /// Read `buf.len()` bytes at `offset` of a disk from the store (on-demand access, e.g. instant restore).
    pub fn read_at(&self, idx: &FixedIndex, buf: &mut [u8], offset: u64) -> Result<(), Error> {
        if offset
            .checked_add(buf.len() as u64)
            .is_none_or(|e| e > idx.size)
        {
            return Err(Error::Invalid(format!(
                "read past the end of the disk ({} bytes)",
                idx.size
            )));
        }
        let mut pos = 0usize;
        while pos < buf.len() {
            let abs = offset + pos as u64;
            let i = (abs / idx.chunk_size) as usize;
            let (coff, clen) = idx.range(i);
            let within = (abs - coff) as usize;
            let n = (clen - within).min(buf.len() - pos);
            if idx.ids[i] == ZERO_ID {
                buf[pos..pos + n].fill(0);
            } else {
                let data = self.chunks.load(&idx.ids[i])?;
                buf[pos..pos + n].copy_from_slice(&data[within..within + n]);
            }
            pos += n;
        }
        Ok(())
    }
}

/// Helper for callers that only need a sparse raw file from a snapshot's disk.
pub fn restore_raw(
    ds: &DataStore,
    id: &str,
    disk: &str,
    target: &Path,
) -> Result<RestoreReport, Error> {
    ds.restore_disk(id, disk, target, RestoreFormat::Raw, &|_| {})
}
