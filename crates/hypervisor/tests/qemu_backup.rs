//! Live backups of a real running VM into the snapshot store (TCG unless KVM
//! works here): the guest writes while the backup reads a point-in-time view
//! (its filesystem frozen for the moment the view is taken), the restored disk
//! is a clean filesystem with the guest's files; incrementals read only the
//! chunks a persistent dirty bitmap marks, also after a VM restart and after a
//! failed backup; a bitmap made untrustworthy by a killed qemu forces a full
//! read that says so.
//!
//! Needs qemu-system-x86_64, qemu-utils, e2fsprogs (e2fsck, debugfs) and the
//! guest image (`guest/out`, built when missing). Never skips.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{image, md5_of, spec, Reaper, Shell};
use lifeboat_datastore::restore::RestoreFormat;
use lifeboat_datastore::StoreLocation;
use lifeboat_hypervisor::qemu::QemuDriver;
use lifeboat_hypervisor::{DiskBackupInfo, DiskBackupRequest, Hypervisor};
use md5::Digest;

/// The guest image, and the tools the checks of a restored disk use.
fn guest_dir() -> PathBuf {
    let dir = common::guest_dir();
    for tool in ["e2fsck", "debugfs", "qemu-img"] {
        assert!(
            Command::new(tool).arg("-V").output().is_ok(),
            "{tool} is missing: run scripts/setup.sh (e2fsprogs, qemu-utils)"
        );
    }
    dir
}

/// Restores `snap` to a raw file, checks its ext2 filesystem is clean and
/// returns the MD5 of the files named.
fn check_restored(store: &StoreLocation, snap: &str, dir: &Path, files: &[&str]) -> Vec<String> {
    let ds = store.open().unwrap();
    let raw = dir.join(format!("restored-{snap}.raw"));
    ds.restore_disk(snap, "root", &raw, RestoreFormat::Raw, &|_| {})
        .unwrap();
    let fsck = Command::new("e2fsck")
        .args(["-fn", &raw.to_string_lossy()])
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "snapshot {snap} is not a clean filesystem (e2fsck {}):\n{}{}",
        fsck.status,
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let sums = files
        .iter()
        .map(|f| {
            let out = Command::new("debugfs")
                .args(["-R", &format!("cat /{f}"), &raw.to_string_lossy()])
                .output()
                .unwrap();
            assert!(out.status.success(), "debugfs cat /{f}");
            assert!(!out.stdout.is_empty(), "/{f} is empty in snapshot {snap}");
            format!("{:x}", md5::Md5::digest(&out.stdout))
        })
        .collect();
    let _ = std::fs::remove_file(&raw);
    sums
}

async fn backup(d: &QemuDriver, name: &str, store: &StoreLocation) -> DiskBackupInfo {
    let info = d
        .backup_disk(
            name,
            &DiskBackupRequest {
                store: store.clone(),
                kind: "backup".into(),
                server: format!("{name}-id"),
                backup_type: Some("daily".into()),
                image: None,
                flavor: None,
                properties: Default::default(),
                digest: false,
            },
        )
        .await
        .unwrap();
    eprintln!("backup: {info:?}");
    info
}

fn bitmaps_of(root: &Path) -> String {
    let out = Command::new("qemu-img")
        .args(["info", "-U", "--output=json", &root.to_string_lossy()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_backup_is_consistent_and_incrementals_read_only_changes() {
    let gdir = guest_dir();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _reaper = Reaper(state.clone());
    let d = QemuDriver::new(common::config(&state, "bk-host", &gdir))
        .await
        .unwrap();
    let store = StoreLocation::dir(tmp.path().join("snapstore"));
    let name = "bk1";
    let root = state.join("vms").join(name).join("root.qcow2");
    d.define(&spec(
        name,
        image(&gdir, None),
        1,
        ("52:54:00:12:34:57", "10.0.0.6"),
    ))
    .await
    .unwrap();
    d.start(name).await.unwrap();
    let mut sh = Shell::login(&d, name, "Backup-Pa55").await;
    assert!(
        sh.run("grep -c /mnt/data /proc/mounts").await.contains('1'),
        "the root disk is mounted at /mnt/data"
    );
    let before = md5_of(
        &sh.run("dd if=/dev/urandom of=/mnt/data/before bs=1M count=4 conv=fsync 2>/dev/null; md5sum /mnt/data/before")
            .await,
    );

    // 1. A full live backup while the guest writes without pause.
    sh.run("(i=0; while :; do dd if=/dev/urandom of=/mnt/data/w$((i%4)) bs=64k count=8 conv=fsync 2>/dev/null; i=$((i+1)); done) >/dev/null 2>&1 & echo $! >/tmp/writer")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let full = backup(&d, name, &store).await;
    assert!(full.live, "{full:?}");
    assert!(full.frozen, "the guest agent froze /mnt/data: {full:?}");
    assert_eq!(full.mode, "full", "{full:?}");
    assert_eq!(
        full.read_bytes, full.size,
        "a full backup reads the disk once"
    );
    sh.run("kill $(cat /tmp/writer); sleep 1; sync").await;
    let sums = check_restored(&store, &full.snapshot, tmp.path(), &["before"]);
    assert_eq!(sums[0], before, "the file written before the backup");

    // 2. A small write, then an incremental: only the bitmap's chunks are read.
    let small = md5_of(
        &sh.run("dd if=/dev/urandom of=/mnt/data/small bs=64k count=4 conv=fsync 2>/dev/null; sync; md5sum /mnt/data/small")
            .await,
    );
    let inc = backup(&d, name, &store).await;
    assert_eq!(inc.mode, "bitmap", "{inc:?}");
    assert!(inc.frozen, "{inc:?}");
    assert_eq!(inc.parent.as_deref(), Some(full.snapshot.as_str()));
    assert!(
        inc.read_bytes > 0 && inc.read_bytes <= 16 << 20,
        "a 256 KiB write read {} bytes of {}",
        inc.read_bytes,
        inc.size
    );
    let sums = check_restored(&store, &inc.snapshot, tmp.path(), &["before", "small"]);
    assert_eq!(sums, vec![before.clone(), small.clone()]);

    // 3. A failed backup (the store refuses new chunks) while the guest
    // writes: the bitmaps are merged back, the next incremental still holds
    // every write since the last good snapshot.
    let chunks = tmp.path().join("snapstore/chunks");
    let away = tmp.path().join("snapstore/chunks.away");
    std::fs::rename(&chunks, &away).unwrap();
    std::fs::write(&chunks, b"not a directory").unwrap();
    let during = sh
        .run("dd if=/dev/urandom of=/mnt/data/during bs=64k count=16 conv=fsync 2>/dev/null; (i=0; while :; do dd if=/dev/urandom of=/mnt/data/d$((i%2)) bs=64k count=4 conv=fsync 2>/dev/null; i=$((i+1)); done) >/dev/null 2>&1 & echo $! >/tmp/writer")
        .await;
    let _ = during;
    let failed = d
        .backup_disk(
            name,
            &DiskBackupRequest {
                store: store.clone(),
                kind: "backup".into(),
                server: format!("{name}-id"),
                backup_type: Some("daily".into()),
                image: None,
                flavor: None,
                properties: Default::default(),
                digest: false,
            },
        )
        .await;
    assert!(
        failed.is_err(),
        "the backup into a broken store fails: {failed:?}"
    );
    std::fs::remove_file(&chunks).unwrap();
    std::fs::rename(&away, &chunks).unwrap();
    let after = sh
        .run("kill $(cat /tmp/writer); sleep 1; sync; md5sum /mnt/data/during /mnt/data/d0 /mnt/data/d1")
        .await;
    let after: Vec<String> = after.lines().map(md5_of).collect();
    assert_eq!(after.len(), 3, "{after:?}");
    let inc2 = backup(&d, name, &store).await;
    assert_eq!(inc2.mode, "bitmap", "{inc2:?}");
    assert_eq!(inc2.parent.as_deref(), Some(inc.snapshot.as_str()));
    assert!(inc2.read_bytes <= 32 << 20, "{inc2:?}");
    let sums = check_restored(
        &store,
        &inc2.snapshot,
        tmp.path(),
        &["before", "small", "during", "d0", "d1"],
    );
    assert_eq!(sums[..2], [before.clone(), small.clone()]);
    assert_eq!(sums[2..], after[..], "writes during the failed backup");

    // 4. A clean restart: the persistent bitmap survives, the next
    // incremental still reads only what changed.
    drop(sh);
    d.stop(name, 60).await.unwrap();
    assert!(
        bitmaps_of(&root).contains("\"lb-"),
        "the bitmap was stored in the qcow2 at the stop: {}",
        bitmaps_of(&root)
    );
    d.start(name).await.unwrap();
    // The guest's root is an initramfs: the password is set again.
    let mut sh = Shell::login(&d, name, "Backup-Pa55").await;
    let small2 = md5_of(
        &sh.run("dd if=/dev/urandom of=/mnt/data/small2 bs=64k count=4 conv=fsync 2>/dev/null; sync; md5sum /mnt/data/small2")
            .await,
    );
    let inc3 = backup(&d, name, &store).await;
    assert_eq!(inc3.mode, "bitmap", "after a restart: {inc3:?}");
    assert!(inc3.read_bytes <= 16 << 20, "{inc3:?}");
    let sums = check_restored(&store, &inc3.snapshot, tmp.path(), &["small2"]);
    assert_eq!(sums[0], small2);

    // 5. qemu killed while it had a stored bitmap open: the bitmap is
    // inconsistent, the next backup reads everything and says why; the one
    // after is incremental again.
    drop(sh);
    d.stop(name, 60).await.unwrap();
    d.start(name).await.unwrap();
    let pid = std::fs::read_to_string(state.join("vms").join(name).join("pid")).unwrap();
    Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.start(name).await.unwrap();
    let fell = backup(&d, name, &store).await;
    assert_eq!(fell.mode, "hash", "{fell:?}");
    assert_eq!(fell.read_bytes, fell.size, "{fell:?}");
    assert!(
        fell.note.as_deref().unwrap_or("").contains("inconsistent"),
        "the backup says why it read everything: {fell:?}"
    );
    let again = backup(&d, name, &store).await;
    assert_eq!(again.mode, "bitmap", "{again:?}");

    // 6. A stopped VM: read from its qcow2, incremental by its bitmap too.
    d.stop(name, 60).await.unwrap();
    let cold = backup(&d, name, &store).await;
    assert!(!cold.live && !cold.frozen, "{cold:?}");
    assert_eq!(cold.mode, "bitmap", "{cold:?}");
    d.destroy(name).await.unwrap();
}
