//! Shared test helpers: store factories for both backends (a real moto S3 server on 127.0.0.1) and disk images.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_datastore::{BackendRef, CryptKey, DataStore, FsBackend, S3Backend, S3Config};
use rand::{Rng, RngCore, SeedableRng};

/// A moto S3 server for one test; killed on drop.
pub struct Moto {
    child: Child,
    pub port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Start `moto_server` from `$LIFEBOAT_TOOLS_VENV` (default `~/.cache/lifeboat-tools`). Panics with a clear
    /// message when it is missing: S3 tests never skip.
    pub fn start() -> Self {
        let venv = std::env::var("LIFEBOAT_TOOLS_VENV").unwrap_or_else(|_| {
            format!(
                "{}/.cache/lifeboat-tools",
                std::env::var("HOME").unwrap_or_default()
            )
        });
        let bin = PathBuf::from(&venv).join("bin/moto_server");
        assert!(
            bin.exists(),
            "S3 tests need moto[server]: {} is missing (scripts/setup.sh creates the venv; set LIFEBOAT_TOOLS_VENV)",
            bin.display()
        );
        let port = free_port();
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let m = Moto { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not listen on 127.0.0.1:{port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        m
    }

    /// Create a bucket (moto accepts unsigned requests).
    pub fn create_bucket(&self, name: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(s, "PUT /{name} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.port)
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 200"),
            "create bucket {name}: {resp}"
        );
    }

    pub fn config(&self, bucket: &str) -> S3Config {
        S3Config {
            endpoint: format!("http://127.0.0.1:{}", self.port),
            bucket: bucket.into(),
            prefix: "store".into(),
            region: "us-east-1".into(),
            access_key: "testing".into(),
            secret_key: "testing".into(),
        }
    }
}

/// Which backend a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fs,
    S3,
}

/// A backend for one test plus what keeps it alive.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub backend: BackendRef,
    _moto: Option<Moto>,
}

impl Env {
    pub fn new(kind: Kind) -> Self {
        let dir = tempfile::tempdir().unwrap();
        match kind {
            Kind::Fs => {
                let backend: BackendRef =
                    Arc::new(FsBackend::open(dir.path().join("store")).unwrap());
                Env {
                    dir,
                    backend,
                    _moto: None,
                }
            }
            Kind::S3 => {
                let moto = Moto::start();
                moto.create_bucket("lifeboat-test");
                let backend: BackendRef =
                    Arc::new(S3Backend::open(&moto.config("lifeboat-test")).unwrap());
                Env {
                    dir,
                    backend,
                    _moto: Some(moto),
                }
            }
        }
    }

    /// Open the store with a chunk size (64 KiB keeps test disks small but many-chunked).
    pub fn store(&self, key: Option<CryptKey>) -> DataStore {
        DataStore::open(self.backend.clone(), key, 64 << 10).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Write a disk image of `size` bytes with random, compressible (log-like text) and zero regions.
pub fn make_disk(path: &Path, size: u64, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; size as usize];
    let mut pos = 0usize;
    let mut n = 0u64;
    while pos < data.len() {
        let len = rng.gen_range(20_000..400_000).min(data.len() - pos);
        match rng.gen_range(0..3) {
            0 => rng.fill_bytes(&mut data[pos..pos + len]),
            1 => {
                let mut w = Vec::new();
                while w.len() < len {
                    n += 1;
                    w.extend_from_slice(
                        format!(
                            "2026-12-01T13:{:02}:{:02} host{} sshd[{}]: accepted key for user{}\n",
                            n % 60,
                            n % 59,
                            n % 7,
                            n * 31 % 9999,
                            n % 13
                        )
                        .as_bytes(),
                    );
                }
                data[pos..pos + len].copy_from_slice(&w[..len]);
            }
            _ => {}
        }
        pos += len;
    }
    std::fs::write(path, &data).unwrap();
    data
}

/// Overwrite `count` random ranges of `len` bytes with random data in the file and the copy; returns the extents.
pub fn random_writes(
    path: &Path,
    data: &mut [u8],
    count: usize,
    len: usize,
    seed: u64,
) -> Vec<lifeboat_datastore::Extent> {
    use std::os::unix::fs::FileExt;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let mut out = Vec::new();
    for _ in 0..count {
        let off = rng.gen_range(0..(data.len() - len)) as u64;
        rng.fill_bytes(&mut data[off as usize..off as usize + len]);
        f.write_all_at(&data[off as usize..off as usize + len], off)
            .unwrap();
        out.push(lifeboat_datastore::Extent {
            offset: off,
            len: len as u64,
        });
    }
    out
}
