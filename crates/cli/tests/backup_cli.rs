//! `lifeboat backup …` end to end on a directory store: key create, create (raw and qcow2 through
//! qemu-storage-daemon), list/show as JSON, verify, restore (qcow2 and raw), prune, delete, gc.

use std::process::Command;

fn lifeboat(store: &std::path::Path, key: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("backup")
        .args(args)
        .args([
            "--store",
            store.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "lifeboat backup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[test]
fn backup_cli_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (store, key) = (dir.path().join("store"), dir.path().join("backup.key"));
    let raw = dir.path().join("disk.raw");
    let mut data = vec![0u8; 3 << 20];
    for (i, b) in data.iter_mut().enumerate().take(1 << 20) {
        *b = (i * 31 % 251) as u8;
    }
    std::fs::write(&raw, &data).unwrap();
    let qcow = dir.path().join("disk.qcow2");
    assert!(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow)
        .status()
        .unwrap()
        .success());

    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args([
            "backup",
            "key",
            "create",
            key.to_str().unwrap(),
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let k: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(k["fingerprint"].as_str().unwrap().contains(':'));

    let a = lifeboat(
        &store,
        &key,
        &[
            "create",
            "--disk",
            &format!("vda={}", raw.display()),
            "--server",
            "s1",
            "--backup-type",
            "daily",
        ],
    );
    let b = lifeboat(
        &store,
        &key,
        &[
            "create",
            "--disk",
            &format!("vda={}", qcow.display()),
            "--server",
            "s1",
            "--backup-type",
            "daily",
            "--rotation",
            "2",
        ],
    );
    assert_eq!(a["disks"][0]["size"], 3 << 20);
    assert_eq!(
        b["disks"][0]["new_chunks"], 0,
        "the qcow2 holds the same bytes: nothing new to store"
    );
    let list = lifeboat(&store, &key, &["list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let id = b["id"].as_str().unwrap();
    assert_eq!(lifeboat(&store, &key, &["show", id])["id"], id);
    assert_eq!(
        lifeboat(&store, &key, &["verify"])["broken_snapshots"],
        serde_json::json!([])
    );

    let restored = dir.path().join("restored.qcow2");
    lifeboat(
        &store,
        &key,
        &["restore", id, "--to", restored.to_str().unwrap()],
    );
    let back = dir.path().join("back.raw");
    assert!(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(&restored)
        .arg(&back)
        .status()
        .unwrap()
        .success());
    assert!(
        std::fs::read(&back).unwrap() == data,
        "qcow2 restore equals the disk"
    );
    data[5] ^= 1;
    std::fs::write(&raw, &data).unwrap();
    let c = lifeboat(
        &store,
        &key,
        &[
            "create",
            "--disk",
            &format!("vda={}", raw.display()),
            "--parent",
            id,
        ],
    );
    assert_eq!(c["disks"][0]["mode"], "hash");
    let r2 = dir.path().join("r2.raw");
    lifeboat(
        &store,
        &key,
        &[
            "restore",
            c["id"].as_str().unwrap(),
            "--to",
            r2.to_str().unwrap(),
            "--format",
            "raw",
        ],
    );
    assert!(std::fs::read(&r2).unwrap() == data);

    let pruned = lifeboat(&store, &key, &["prune", "--keep-last", "1"]);
    assert!(pruned
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["mark"] == "remove"));
    lifeboat(&store, &key, &["delete", c["id"].as_str().unwrap()]);
    let gc = lifeboat(&store, &key, &["gc", "--grace-secs", "0"]);
    assert!(gc["removed_chunks"].as_u64().unwrap() > 0);

    // A wrong key fails with a clear message.
    let other = dir.path().join("other.key");
    assert!(Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["backup", "key", "create", other.to_str().unwrap()])
        .output()
        .unwrap()
        .status
        .success());
    let out = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args([
            "backup",
            "list",
            "--store",
            store.to_str().unwrap(),
            "--key",
            other.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("encrypted with key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
