//! Instant restore on a real VM (TCG unless KVM works here): a server restored from a
//! snapshot in the store boots at once from the host's NBD export of that snapshot while a
//! rate-limited block job copies the disk into its local qcow2. The guest reads its data
//! (a file's MD5, and the MD5 of the whole disk from inside the guest) while the copy is
//! still running; backups are refused until the copy is done; the copy survives a qemu
//! SIGKILL (the VM is started again and the copy resumes) and a host-agent (driver)
//! restart (the export is served again, qemu reconnects); afterwards the disk has no
//! backing and is byte-identical to the snapshot, and the VM boots from it alone.
//!
//! Needs qemu-system-x86_64, qemu-utils and the guest image (`guest/out`, built when
//! missing). Never skips.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{guest_dir, image, md5_of, spec, Reaper, Shell};
use lifeboat_datastore::StoreLocation;
use lifeboat_hypervisor::qemu::QemuDriver;
use lifeboat_hypervisor::{DiskBackupRequest, HvError, Hypervisor, RestoreProgress, StoreDisk};
use md5::Digest;

/// The restored VMs' one NIC.
const NIC: (&str, &str) = ("52:54:00:12:34:58", "10.0.0.7");

async fn driver(state: &Path, gdir: &Path) -> QemuDriver {
    let mut cfg = common::config(state, "ir-host", gdir);
    // 512 KiB/s (QEMU's rate limit lets about twice that through): the 64 MiB copy takes
    // about a minute, so the guest demonstrably works while most of its disk is still in
    // the store.
    cfg.restore_copy_speed = 512 << 10;
    QemuDriver::new(cfg).await.unwrap()
}

async fn status(d: &QemuDriver, name: &str) -> RestoreProgress {
    let p = d
        .restore_status(name)
        .await
        .unwrap()
        .expect("an instant restore");
    eprintln!("restore: {p:?}");
    p
}

/// MD5 of the guest-visible bytes of a qcow2 file (no backing allowed).
fn qcow2_md5(path: &Path, dir: &Path) -> String {
    let raw = dir.join("flat.raw");
    let _ = std::fs::remove_file(&raw);
    let out = Command::new("qemu-img")
        .args(["convert", "-U", "-f", "qcow2", "-O", "raw"])
        .arg(path)
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sum = format!("{:x}", md5::Md5::digest(std::fs::read(&raw).unwrap()));
    let _ = std::fs::remove_file(&raw);
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_restore_boots_at_once_copies_in_the_background_and_survives_crashes() {
    let gdir = guest_dir();
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let _reaper = Reaper(state.clone());
    let store = StoreLocation::dir(tmp.path().join("snapstore"));
    let d = driver(&state, &gdir).await;

    // The source server: a file on its disk, then a backup of the stopped disk.
    let src = "ir-src";
    d.define(&spec(src, image(&gdir, None), 0, NIC))
        .await
        .unwrap();
    d.start(src).await.unwrap();
    let mut sh = Shell::login(&d, src, "Instant-Pa55").await;
    let file_md5 = md5_of(
        &sh.run("dd if=/dev/urandom of=/mnt/data/big bs=1M count=12 conv=fsync 2>/dev/null; sync; md5sum /mnt/data/big")
            .await,
    );
    assert_eq!(file_md5.len(), 32, "{file_md5}");
    drop(sh);
    d.stop(src, 60).await.unwrap();
    let snap = d
        .backup_disk(
            src,
            &DiskBackupRequest {
                store: store.clone(),
                kind: "backup".into(),
                server: format!("{src}-id"),
                backup_type: None,
                image: None,
                flavor: None,
                properties: Default::default(),
                digest: true,
            },
        )
        .await
        .unwrap();
    let snap_md5 = snap.md5.clone().unwrap();
    d.destroy(src).await.unwrap();

    // The restored server: boots at once from the store; the guest mounts its disk
    // read-only, so the disk must end byte-identical to the snapshot.
    let dst = "ir-dst";
    let mut s = spec(dst, image(&gdir, Some("lifeboat.data=ro")), 0, NIC);
    s.root_from = Some(StoreDisk {
        store: store.clone(),
        snapshot: snap.snapshot.clone(),
        disk: "root".into(),
        format: None,
        instant: true,
    });
    let t0 = Instant::now();
    d.define(&s).await.unwrap();
    let root = state.join("vms").join(dst).join("root.qcow2");
    assert!(
        std::fs::metadata(&root).unwrap().len() < 4 << 20,
        "nothing copied before the boot"
    );
    d.start(dst).await.unwrap();
    let booted = t0.elapsed();
    let p = status(&d, dst).await;
    assert!(
        !p.done && p.copying,
        "still copying when the guest is up: {p:?}"
    );
    assert!(
        p.served_reads > 0,
        "the guest booted from the export: {p:?}"
    );
    assert!(
        p.copied < p.total / 2,
        "the guest was up long before the copy ends: {p:?}"
    );
    let console = std::fs::read_to_string(state.join("vms").join(dst).join("serial.log")).unwrap();
    assert!(
        console.contains("mounted /dev/vda at /mnt/data (read-only)"),
        "{console}"
    );
    // The guest reads its data while the copy runs: a file, then the whole disk.
    let mut sh = Shell::login(&d, dst, "Instant-Pa55").await;
    assert_eq!(md5_of(&sh.run("md5sum /mnt/data/big").await), file_md5);
    drop(sh);
    let digest = d.run_maintenance(dst, "disk-digest").await.unwrap();
    assert!(
        digest.contains(&format!("md5 {snap_md5}")),
        "the guest read the snapshot's exact bytes: {digest} (store md5 {snap_md5})"
    );
    let p = status(&d, dst).await;
    assert!(
        !p.done,
        "the guest read everything before the copy finished: {p:?}"
    );
    eprintln!("booted after {booted:?}, guest read the disk before the copy finished");
    // Operations that need the whole disk locally wait for the copy.
    let refused = d
        .backup_disk(
            dst,
            &DiskBackupRequest {
                store: store.clone(),
                kind: "backup".into(),
                server: format!("{dst}-id"),
                backup_type: None,
                image: None,
                flavor: None,
                properties: Default::default(),
                digest: false,
            },
        )
        .await;
    assert!(
        matches!(&refused, Err(HvError::InvalidState(m)) if m.contains("instant restore")),
        "{refused:?}"
    );

    // A crash mid-copy: qemu SIGKILLed, the VM started again, the copy resumes.
    let pid = std::fs::read_to_string(state.join("vms").join(dst).join("pid")).unwrap();
    Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    d.start(dst).await.unwrap();
    let p = status(&d, dst).await;
    assert!(!p.done && p.copying && p.jobs >= 2, "resumed: {p:?}");

    // A host agent restart mid-copy: the export goes away with the driver and comes
    // back with the new one; qemu reconnects and the copy goes on.
    drop(d);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = driver(&state, &gdir).await;
    let end = Instant::now() + Duration::from_secs(400);
    let p = loop {
        let p = status(&d, dst).await;
        if p.done {
            break p;
        }
        assert!(Instant::now() < end, "copy not done: {p:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert!(p.took_ms.is_some(), "{p:?}");
    let info = Command::new("qemu-img")
        .args(["info", "-U"])
        .arg(&root)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(!info.contains("backing file"), "standalone: {info}");
    assert!(!state.join("vms").join(dst).join("restore.sock").exists());

    // Byte-identical to the snapshot; and it boots without the store.
    d.stop(dst, 60).await.unwrap();
    assert_eq!(qcow2_md5(&root, tmp.path()), snap_md5, "restored disk");
    std::fs::remove_dir_all(tmp.path().join("snapstore")).unwrap();
    d.start(dst).await.unwrap();
    let mut sh = Shell::login(&d, dst, "Instant-Pa55").await;
    assert_eq!(md5_of(&sh.run("md5sum /mnt/data/big").await), file_md5);
    drop(sh);
    d.destroy(dst).await.unwrap();
}
