//! Storage backends: a flat key → blob namespace (`chunks/…`, `snapshots/…`, `writers/…`).
//!
//! The store only needs put/get/head/list/delete plus two GC helpers (`touch`, `remove_if_older`) whose
//! semantics are what make garbage collection safe while backups run (see `gc.rs`).

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::Error;

/// Size and modification time of a stored object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Object size in bytes.
    pub size: u64,
    /// Last modification (a `touch` moves it forward).
    pub modified: SystemTime,
}

/// A key/value blob store the datastore runs on. Keys are `/`-separated relative paths.
pub trait Backend: Send + Sync {
    /// Human-readable location (for messages).
    fn describe(&self) -> String;
    /// Store `data` under `key`, atomically replacing any previous object (readers see old or new, never a part).
    fn put(&self, key: &str, data: &[u8]) -> Result<(), Error>;
    /// Read an object; `Ok(None)` when it does not exist.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error>;
    /// Metadata of an object; `Ok(None)` when it does not exist.
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, Error>;
    /// All objects whose key starts with `prefix` (a directory-like prefix ending in `/`).
    fn list(&self, prefix: &str) -> Result<Vec<(String, ObjectMeta)>, Error>;
    /// Delete an object (no error when it is already gone).
    fn delete(&self, key: &str) -> Result<(), Error>;
    /// Mark an object as in use now. Returns `false` when it does not exist (the caller then writes it).
    /// After `touch` returned `true`, a concurrent [`Backend::remove_if_older`] with a cutoff before the
    /// touch does not remove the object.
    fn touch(&self, key: &str) -> Result<bool, Error>;
    /// Remove `key` only if its modification time is still before `cutoff`. Returns whether it was removed.
    fn remove_if_older(&self, key: &str, cutoff: SystemTime) -> Result<bool, Error>;
}

/// Shared handle to a backend.
pub type BackendRef = Arc<dyn Backend>;

/// Local filesystem backend: one file per key under a root directory.
///
/// Writes go to a temporary file and are renamed into place. GC removal renames the object into
/// `.trash/` first and re-checks its mtime there; `touch` sets the mtime and then re-checks that the
/// path still exists. Either order of the two makes the object survive or makes the writer re-upload it.
#[derive(Debug)]
pub struct FsBackend {
    root: PathBuf,
}

impl FsBackend {
    /// Open (creating if needed) a store directory.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, Error> {
        let root = root.as_ref().to_path_buf();
        fs::create_dir_all(root.join(".tmp"))
            .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
        fs::create_dir_all(root.join(".trash"))
            .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, Error> {
        if key.is_empty()
            || key
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == ".." || p.starts_with('.'))
        {
            return Err(Error::Invalid(format!("bad object key {key:?}")));
        }
        Ok(self.root.join(key))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root
            .join(".tmp")
            .join(format!("{:016x}", rand::random::<u64>()))
    }
}

fn meta_of(m: &fs::Metadata) -> ObjectMeta {
    ObjectMeta {
        size: m.len(),
        modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

impl Backend for FsBackend {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<(), Error> {
        let path = self.path(key)?;
        let tmp = self.tmp_path();
        let res = (|| -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(data)?;
            // Data is made durable before the rename for manifests and indexes; chunks are many and small,
            // their loss after a host crash is found by `verify` and repaired by the next backup.
            if !key.starts_with("chunks/") {
                f.sync_all()?;
            }
            drop(f);
            match fs::rename(&tmp, &path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir_all(path.parent().expect("key has a parent"))?;
                    fs::rename(&tmp, &path)
                }
                r => r,
            }
        })();
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res.map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>, Error> {
        let path = self.path(key)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(meta_of(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("stat {}", path.display()), e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, ObjectMeta)>, Error> {
        let dir = self.root.join(prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut stack = vec![(dir, prefix.trim_end_matches('/').to_string())];
        while let Some((d, k)) = stack.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("list {}", d.display()), e)),
            };
            for ent in rd {
                let ent = ent.map_err(|e| Error::io(format!("list {}", d.display()), e))?;
                let name = ent.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let key = if k.is_empty() {
                    name.clone()
                } else {
                    format!("{k}/{name}")
                };
                let ft = ent
                    .file_type()
                    .map_err(|e| Error::io(format!("list {}", d.display()), e))?;
                if ft.is_dir() {
                    stack.push((ent.path(), key));
                } else if let Ok(m) = ent.metadata() {
                    out.push((key, meta_of(&m)));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), Error> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("delete {}", path.display()), e)),
        }
    }

    fn touch(&self, key: &str) -> Result<bool, Error> {
        let path = self.path(key)?;
        let f = match fs::OpenOptions::new().append(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(format!("touch {}", path.display()), e)),
        };
        f.set_modified(SystemTime::now())
            .map_err(|e| Error::io(format!("touch {}", path.display()), e))?;
        drop(f);
        // A GC that moved the file away between open and set_modified would miss the new mtime: check the
        // path again after touching (see the type's doc).
        Ok(path.exists())
    }

    fn remove_if_older(&self, key: &str, cutoff: SystemTime) -> Result<bool, Error> {
        let path = self.path(key)?;
        let trash = self.root.join(".trash").join(key.replace('/', "_"));
        match fs::rename(&path, &trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(format!("gc move {}", path.display()), e)),
        }
        let m =
            fs::metadata(&trash).map_err(|e| Error::io(format!("stat {}", trash.display()), e))?;
        if meta_of(&m).modified >= cutoff {
            // Touched by a writer meanwhile: put it back unless a writer already re-uploaded it.
            if !path.exists() {
                let _ = fs::rename(&trash, &path);
            }
            let _ = fs::remove_file(&trash);
            return Ok(false);
        }
        fs::remove_file(&trash)
            .map_err(|e| Error::io(format!("gc remove {}", trash.display()), e))?;
        Ok(true)
    }
}
