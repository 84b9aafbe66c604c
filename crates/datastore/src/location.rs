//! Where a store is, in a form that can be passed between processes (manager → host agent) without secrets:
//! a directory or an S3 bucket, plus the path of the key file on the host that opens it. S3 credentials come
//! from the opening process's environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`).

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use md5::{Digest, Md5};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::chunk_store::ZERO_ID;
use crate::{DataStore, Error, FsBackend, S3Backend, S3Config, DEFAULT_CHUNK_SIZE};

/// An S3 bucket (credentials are not part of it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Location {
    /// Endpoint URL (path-style requests).
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
    /// Region (default `us-east-1`, or `AWS_REGION`).
    #[serde(default)]
    pub region: Option<String>,
}

/// A store's location and the key file that opens it. Carries no key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoreLocation {
    /// Local directory (filesystem backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<PathBuf>,
    /// S3 bucket instead of a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
    /// Key file on the opening host (encrypted stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl StoreLocation {
    /// A directory store without a key.
    pub fn dir(path: impl Into<PathBuf>) -> Self {
        Self {
            dir: Some(path.into()),
            ..Self::default()
        }
    }

    /// Human-readable location (no secrets).
    pub fn describe(&self) -> String {
        match (&self.dir, &self.s3) {
            (Some(d), _) => d.display().to_string(),
            (None, Some(s)) => format!("s3 {}/{}/{}", s.endpoint, s.bucket, s.prefix),
            (None, None) => "(no store)".into(),
        }
    }

    /// Open (creating a directory store or `config.json` when needed).
    pub fn open(&self) -> Result<DataStore, Error> {
        let key = self.key_file.as_deref().map(crate::load_key).transpose()?;
        let backend: crate::BackendRef = match (&self.dir, &self.s3) {
            (Some(d), None) => Arc::new(FsBackend::open(d)?),
            (None, Some(s)) => {
                let env = |k: &str| {
                    std::env::var(k).map_err(|_| {
                        Error::Invalid(format!(
                            "{k} is not set (needed for the S3 store {})",
                            s.endpoint
                        ))
                    })
                };
                Arc::new(S3Backend::open(&S3Config {
                    endpoint: s.endpoint.clone(),
                    bucket: s.bucket.clone(),
                    prefix: s.prefix.clone(),
                    region: s
                        .region
                        .clone()
                        .or_else(|| std::env::var("AWS_REGION").ok())
                        .unwrap_or_else(|| "us-east-1".into()),
                    access_key: env("AWS_ACCESS_KEY_ID")?,
                    secret_key: env("AWS_SECRET_ACCESS_KEY")?,
                })?)
            }
            (Some(_), Some(_)) => {
                return Err(Error::Invalid(
                    "a store is either a directory or an S3 bucket, not both".into(),
                ))
            }
            (None, None) => return Err(Error::Invalid("no snapshot store configured".into())),
        };
        DataStore::open(backend, key, DEFAULT_CHUNK_SIZE)
    }
}

/// Digests of a disk's guest-visible bytes (what `GET /v2/images/{id}/file` serves as raw data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskDigest {
    /// Bytes.
    pub size: u64,
    /// MD5, hex (Glance's `checksum`).
    pub md5: String,
    /// SHA-512, hex (Glance's `os_hash_value` with `os_hash_algo` = sha512).
    pub sha512: String,
}

impl DataStore {
    /// Read a snapshot's disk back from the store in order (chunks fetched and verified in parallel windows)
    /// and compute its MD5 and SHA-512; this also proves every chunk readable.
    pub fn digest_disk(&self, id: &str, disk: &str) -> Result<DiskDigest, Error> {
        let m = self.manifest(id)?;
        let idx = self.index(&m, disk)?;
        let mut md5 = Md5::new();
        let mut sha = sha2::Sha512::new();
        let zero = vec![0u8; idx.chunk_size as usize];
        let window = rayon::current_num_threads().max(2) * 2;
        let mut i = 0;
        while i < idx.ids.len() {
            let end = (i + window).min(idx.ids.len());
            let datas: Vec<Option<Vec<u8>>> = (i..end)
                .into_par_iter()
                .map(|c| {
                    if idx.ids[c] == ZERO_ID {
                        Ok(None)
                    } else {
                        self.chunks.load(&idx.ids[c]).map(Some)
                    }
                })
                .collect::<Result<_, Error>>()?;
            for (k, d) in datas.iter().enumerate() {
                let (_, len) = idx.range(i + k);
                let b = match d {
                    Some(d) if d.len() == len => &d[..],
                    Some(d) => {
                        return Err(Error::Corrupt(format!(
                            "chunk {} of disk {disk} has {} bytes, expected {len}",
                            i + k,
                            d.len()
                        )))
                    }
                    None => &zero[..len],
                };
                md5.update(b);
                sha.update(b);
            }
            i = end;
        }
        Ok(DiskDigest {
            size: idx.size,
            md5: hex::encode(md5.finalize()),
            sha512: hex::encode(sha.finalize()),
        })
    }

    /// A reader over a snapshot's disk (sequential streaming of its guest-visible bytes, e.g. an image
    /// download). Each chunk is verified as it is read.
    pub fn disk_stream(&self, id: &str, disk: &str) -> Result<DiskStream, Error> {
        let m = self.manifest(id)?;
        let idx = self.index(&m, disk)?;
        Ok(DiskStream {
            ds: self.clone(),
            idx,
            next: 0,
            buf: Vec::new(),
            pos: 0,
        })
    }
}

/// Sequential reader over a snapshot's disk ([`DataStore::disk_stream`]).
pub struct DiskStream {
    ds: DataStore,
    idx: crate::FixedIndex,
    next: usize,
    buf: Vec<u8>,
    pos: usize,
}

impl DiskStream {
    /// Disk size in bytes.
    pub fn size(&self) -> u64 {
        self.idx.size
    }
}

impl Read for DiskStream {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.next >= self.idx.ids.len() {
                return Ok(0);
            }
            let (_, len) = self.idx.range(self.next);
            self.buf = if self.idx.ids[self.next] == ZERO_ID {
                vec![0u8; len]
            } else {
                let d = self
                    .ds
                    .chunks
                    .load(&self.idx.ids[self.next])
                    .map_err(std::io::Error::other)?;
                if d.len() != len {
                    return Err(std::io::Error::other(format!(
                        "chunk {} has {} bytes, expected {len}",
                        self.next,
                        d.len()
                    )));
                }
                d
            };
            self.pos = 0;
            self.next += 1;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
