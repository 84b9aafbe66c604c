//! NBD client against a real qemu-storage-daemon: reads, writes, and a persistent qcow2 dirty bitmap queried
//! with NBD_CMD_BLOCK_STATUS (`qemu:dirty-bitmap:<name>`), also after the daemon restarts.

mod common;

use std::process::Command;
use std::sync::Arc;

use lifeboat_datastore::backup::{BackupRequest, DiskSource, FileReader};
use lifeboat_datastore::nbd::{dirty_extents, NbdClient, NbdReader};
use lifeboat_datastore::qsd::QsdExport;
use lifeboat_datastore::restore::RestoreFormat;
use lifeboat_datastore::{DataStore, Extent, SnapshotKind, SnapshotMeta};

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (qemu-utils) is needed");
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dirty_bitmap_incremental_over_nbd() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("src.raw");
    let mut data = common::make_disk(&raw, 8 << 20, 11);
    let q = dir.path().join("disk.qcow2");
    qemu_img(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw.to_str().unwrap(),
        q.to_str().unwrap(),
    ]);
    qemu_img(&["bitmap", "--add", q.to_str().unwrap(), "bm0"]);
    let ds = DataStore::open(
        Arc::new(lifeboat_datastore::FsBackend::open(dir.path().join("store")).unwrap()),
        None,
        64 << 10,
    )
    .unwrap();

    // Full backup of the stopped disk through an NBD export (qcow2 read as guest bytes).
    let qsd = QsdExport::start(&q, "qcow2", &["bm0"], true).unwrap();
    let reader = Arc::new(NbdReader::connect(&qsd.addr(), "vda", 2).unwrap());
    assert_eq!(lifeboat_datastore::DiskReader::size(&*reader), 8 << 20);
    let full = ds
        .backup(
            BackupRequest {
                meta: SnapshotMeta::new(SnapshotKind::Backup),
                parent: None,
                disks: vec![DiskSource {
                    name: "vda".into(),
                    reader,
                    dirty: None,
                }],
            },
            &|_| {},
        )
        .unwrap();
    assert!(
        dirty_extents(&qsd.addr(), "vda", "bm0").unwrap().is_empty(),
        "nothing written yet"
    );
    // Guest-like writes over NBD: the bitmap records them.
    let mut c = NbdClient::connect(&qsd.addr(), "vda", None).unwrap();
    let writes = [
        (70_000u64, 4096usize),
        (3 << 20, 1 << 20),
        ((8 << 20) - 4096, 4096),
    ];
    for (off, len) in writes {
        let buf: Vec<u8> = (0..len).map(|i| (i as u64 * 7 + off) as u8 | 1).collect();
        c.write_at(&buf, off).unwrap();
        data[off as usize..off as usize + len].copy_from_slice(&buf);
    }
    c.flush().unwrap();
    let mut back = vec![0u8; 4096];
    c.read_at(&mut back, 70_000).unwrap();
    assert_eq!(back, data[70_000..74_096]);
    c.disconnect();
    drop(qsd); // stop: the bitmap is stored in the qcow2

    // After a restart of the daemon (as after a VM restart), the persistent bitmap still lists the writes.
    let qsd = QsdExport::start(&q, "qcow2", &["bm0"], false).unwrap();
    let dirty = dirty_extents(&qsd.addr(), "vda", "bm0").unwrap();
    // 64 KiB granularity: 70000..74096 → [65536, 131072); 3 MiB..4 MiB; the last 64 KiB.
    assert_eq!(
        dirty,
        vec![
            Extent {
                offset: 65536,
                len: 65536
            },
            Extent {
                offset: 3 << 20,
                len: 1 << 20
            },
            Extent {
                offset: (8 << 20) - 65536,
                len: 65536
            }
        ]
    );
    let reader = Arc::new(NbdReader::connect(&qsd.addr(), "vda", 2).unwrap());
    let inc = ds
        .backup(
            BackupRequest {
                meta: SnapshotMeta::new(SnapshotKind::Backup),
                parent: Some(full.id.clone()),
                disks: vec![DiskSource {
                    name: "vda".into(),
                    reader,
                    dirty: Some(dirty),
                }],
            },
            &|_| {},
        )
        .unwrap();
    assert_eq!(inc.disks[0].mode, "bitmap");
    assert_eq!(
        inc.disks[0].read_bytes,
        2 * 65536 + (1 << 20),
        "only the dirty chunks were read"
    );
    let out = dir.path().join("restored.raw");
    ds.restore_disk(&inc.id, "vda", &out, RestoreFormat::Raw, &|_| {})
        .unwrap();
    assert!(
        std::fs::read(&out).unwrap() == data,
        "incremental via bitmap restores the written disk"
    );
    // Same as a fresh full backup of the disk.
    std::fs::write(&raw, &data).unwrap();
    let fresh = ds
        .backup(
            BackupRequest {
                meta: SnapshotMeta::new(SnapshotKind::Backup),
                parent: None,
                disks: vec![DiskSource {
                    name: "vda".into(),
                    reader: Arc::new(FileReader::open(&raw).unwrap()),
                    dirty: None,
                }],
            },
            &|_| {},
        )
        .unwrap();
    assert_eq!(
        ds.index(&inc, "vda").unwrap(),
        ds.index(&fresh, "vda").unwrap()
    );
    // Asking for a bitmap the export does not have fails clearly.
    let e = dirty_extents(&qsd.addr(), "vda", "nope")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}
