//! The read-only NBD server over a snapshot's disk (instant restore's source), read by QEMU's
//! own NBD client (`qemu-img`) and by ours: byte-identical to the backed-up disk; chunks are
//! fetched on demand (a read of one range fetches only its chunks); writes are refused; a
//! damaged chunk gives EIO, never data; a qcow2 overlay with the export as its backing reads
//! the snapshot and keeps its own writes, and `qemu-img` streams it into a standalone disk.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use lifeboat_datastore::backup::{BackupRequest, DiskSource, FileReader};
use lifeboat_datastore::nbd::{NbdAddr, NbdClient};
use lifeboat_datastore::nbd_server::NbdServer;
use lifeboat_datastore::{DataStore, SnapshotKind, SnapshotMeta};

fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (qemu-utils) is needed");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn backup(ds: &DataStore, raw: &Path) -> String {
    let m = ds
        .backup(
            BackupRequest {
                meta: SnapshotMeta::new(SnapshotKind::Backup),
                parent: None,
                disks: vec![DiskSource {
                    name: "root".into(),
                    reader: Arc::new(FileReader::open(raw).unwrap()),
                    dirty: None,
                }],
            },
            &|_| {},
        )
        .unwrap();
    m.id
}

fn uri(sock: &Path) -> String {
    format!("nbd+unix:///root?socket={}", sock.display())
}

#[test]
fn serves_a_snapshot_on_demand_read_only_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    // Odd size (not a chunk multiple), random + text + zero regions.
    let data = common::make_disk(&raw, (6 << 20) + 12_288, 5);
    let key = lifeboat_datastore::create_key(&dir.path().join("key")).unwrap();
    let ds = DataStore::open(
        Arc::new(lifeboat_datastore::FsBackend::open(dir.path().join("store")).unwrap()),
        Some(key),
        64 << 10,
    )
    .unwrap();
    let id = backup(&ds, &raw);
    let sock = dir.path().join("nbd.sock");
    let srv = NbdServer::start(ds.clone(), &id, "root", &sock, "root").unwrap();
    assert_eq!(srv.size(), data.len() as u64);

    // Our client: one small read fetches only its chunk(s).
    let mut c = NbdClient::connect(&NbdAddr::Unix(sock.clone()), "root", None).unwrap();
    assert_eq!(c.size(), data.len() as u64);
    let mut buf = vec![0u8; 4096];
    let at = (1 << 20) + 100;
    c.read_at(&mut buf, at).unwrap();
    assert_eq!(buf, data[at as usize..at as usize + 4096]);
    assert!(srv.stats().chunks_fetched.load(Ordering::Relaxed) <= 1);
    assert!(srv.stats().first_read_us.load(Ordering::Relaxed) > 0);
    // Read-only: a write is refused and changes nothing.
    assert!(c.write_at(&[1u8; 512], 0).is_err(), "write accepted");
    c.read_at(&mut buf[..512], 0).unwrap();
    assert_eq!(buf[..512], data[..512]);
    c.disconnect();

    // QEMU's client: the whole export equals the disk.
    let out = dir.path().join("copy.raw");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "raw",
        &uri(&sock),
        out.to_str().unwrap(),
    ]);
    assert!(std::fs::read(&out).unwrap() == data, "export differs");
    // An unknown export name is refused.
    let bad = Command::new("qemu-img")
        .args([
            "info",
            &format!("nbd+unix:///nope?socket={}", sock.display()),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());

    // A qcow2 overlay backed by the export: reads the snapshot, keeps its own writes, and a
    // rebase onto nothing (the stream of instant restore, offline) makes it standalone.
    let top = dir.path().join("top.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        &uri(&sock),
        top.to_str().unwrap(),
    ]);
    let qio = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0x5a 65536 4096"])
        .arg(&top)
        .output()
        .expect("qemu-io (qemu-utils)");
    assert!(
        qio.status.success(),
        "{}",
        String::from_utf8_lossy(&qio.stderr)
    );
    qemu_img(&[
        "rebase",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "",
        top.to_str().unwrap(),
    ]);
    srv.stop();
    assert!(
        !qemu_img(&["info", top.to_str().unwrap()]).contains("backing file"),
        "standalone after the rebase"
    );
    let flat = dir.path().join("flat.raw");
    qemu_img(&[
        "convert",
        "-f",
        "qcow2",
        "-O",
        "raw",
        top.to_str().unwrap(),
        flat.to_str().unwrap(),
    ]);
    let mut want = data.clone();
    want[65536..65536 + 4096].fill(0x5a);
    assert!(std::fs::read(&flat).unwrap() == want, "overlay differs");

    // Damage: a flipped byte in a stored chunk gives EIO for reads of that chunk only.
    let srv = NbdServer::start(ds.clone(), &id, "root", &sock, "root").unwrap();
    let chunks: Vec<_> = walk(&dir.path().join("store/chunks"));
    let victim = &chunks[0];
    let mut b = std::fs::read(victim).unwrap();
    let n = b.len();
    b[n / 2] ^= 0x40;
    std::fs::write(victim, &b).unwrap();
    let mut c = NbdClient::connect(&NbdAddr::Unix(sock.clone()), "root", None).unwrap();
    let mut errors = 0;
    for i in 0..data.len().div_ceil(64 << 10) {
        let off = (i * (64 << 10)) as u64;
        let len = (64 << 10).min(data.len() - off as usize);
        let mut buf = vec![0u8; len];
        match c.read_at(&mut buf, off) {
            Ok(()) => assert_eq!(buf, data[off as usize..off as usize + len], "chunk {i}"),
            Err(_) => errors += 1,
        }
    }
    assert!(errors >= 1, "the damaged chunk was served");
    assert_eq!(
        srv.stats().errors.load(Ordering::Relaxed),
        errors,
        "every failed read was counted"
    );
    assert!(srv
        .stats()
        .last_error
        .lock()
        .unwrap()
        .as_deref()
        .is_some_and(|e| e.contains("damaged")));
    c.disconnect();
    srv.stop();
    assert!(!sock.exists(), "socket removed on stop");
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(p).unwrap() {
        let e = e.unwrap().path();
        if e.is_dir() {
            out.extend(walk(&e));
        } else {
            out.push(e);
        }
    }
    out.sort();
    out
}
