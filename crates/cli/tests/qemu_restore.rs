//! `restore_backup` on a real VM (QEMU, TCG here) through `lifeboat serve`
//! and the CLI: a server's disk holds data, it is backed up, more is
//! written, then `lifeboat server restore --backup` restores it instantly.
//! The guest runs and reads the backed-up bytes (the MD5 of its whole disk,
//! from inside the guest) while the rate-limited background copy is still
//! running; a backup is refused meanwhile with a 409; once the copy is done
//! the local disk has no backing and equals the snapshot byte for byte, and
//! the server kept its id, port, MAC and IP.
//!
//! Needs qemu-system-x86_64, qemu-utils and the guest image (`guest/out`).
//! One VM at a time (2 cores). Never skips.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, guest_dir, read_disk, write_disk, Api, Serve, VmGuard, BIN};
use serde_json::{json, Value};

/// Background copy speed (bytes/s): the 64 MiB disk (zeros included: the
/// export has no block status) would take minutes, so the guest boots and
/// reads its whole disk from the store well before the copy could have
/// moved it (QEMU's copy-on-read moves what the guest reads, so the copy
/// ends soon after the guest read everything).
const COPY_SPEED: u64 = 256 << 10;

fn login(s: &Serve) -> Api {
    let c = s.credentials();
    Api::login(
        &s.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    )
}

fn action(api: &Api, id: &str, body: Value) -> Value {
    let (st, v) = api.post(&format!("/api/v1/servers/{id}/actions"), body.clone());
    assert!(st == 202 || st == 200, "{body} -> {st} {v}");
    v
}

fn ports_of(s: &Value) -> Vec<(Value, Value, Value)> {
    s["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["port_id"].clone(),
                a["mac_address"].clone(),
                a["fixed_ip"].clone(),
            )
        })
        .collect()
}

/// The MACs the VM is defined with on its host (`spec.json`).
fn vm_macs(vm_dir: &std::path::Path) -> Vec<String> {
    let spec: Value =
        serde_json::from_slice(&std::fs::read(vm_dir.join("spec.json")).unwrap()).unwrap();
    spec["nics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["mac"].as_str().unwrap().to_string())
        .collect()
}

fn time_of(e: &Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn random(n: usize) -> Vec<u8> {
    (0..n).map(|_| rand::random::<u8>()).collect()
}

#[test]
fn instant_restore_of_a_server_runs_from_the_store_and_keeps_its_endpoint() {
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let _vms = VmGuard::new();
    let speed = COPY_SPEED.to_string();
    let mut serve = Serve::start_full(
        dir.path(),
        free_port(),
        "qemu",
        &[],
        &[
            "--guest-dir",
            guest.to_str().unwrap(),
            "--restore-copy-speed",
            &speed,
        ],
    );
    serve.wait_ready_line();
    let api = login(&serve);

    // A flavor without a root disk size: the host's minimum root disk (64 MiB).
    let (st, v) = api.post(
        "/api/v1/flavors",
        json!({"name": "r.tiny", "vcpus": 1, "ram": 128, "disk": 0}),
    );
    assert!(st == 200 || st == 201, "{st} {v}");
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "keeper", "flavor": "r.tiny"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    let s = api.settle(&id, Duration::from_secs(240));
    assert_eq!(s["status"], "ACTIVE", "{s}");
    let ports = ports_of(&s);
    assert_eq!(ports.len(), 1, "{s}");
    let instance = s["instance_name"].as_str().unwrap().to_string();
    let vm_dir = dir.path().join("hosts/host1/vms").join(&instance);
    let macs = vm_macs(&vm_dir);
    let root = vm_dir.join("root.qcow2");

    // Data on the disk, written while the server is off: random bytes over its first
    // 16 MiB (so the guest finds no filesystem and never writes the disk itself) and a
    // marker near its end.
    action(&api, &id, json!({"action": "stop"}));
    assert_eq!(
        api.settle(&id, Duration::from_secs(120))["status"],
        "SHUTOFF"
    );
    let (size, _) = read_disk(&root, 0, 512);
    assert_eq!(size, 64 << 20);
    let at = size - (3 << 20);
    let backed_up = random(1 << 20);
    write_disk(&root, 0, &random(16 << 20));
    write_disk(&root, at, &backed_up);
    action(&api, &id, json!({"action": "start"}));
    assert_eq!(
        api.settle(&id, Duration::from_secs(240))["status"],
        "ACTIVE"
    );

    // The backup.
    let v = action(
        &api,
        &id,
        json!({"action": "create_backup", "name": "nightly", "backup_type": "daily", "rotation": 3}),
    );
    let image_id = v["image_id"].as_str().unwrap().to_string();
    assert_eq!(
        api.settle(&id, Duration::from_secs(240))["status"],
        "ACTIVE"
    );
    let img = api
        .get("/api/v1/images")
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == image_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(img["status"], "active", "{img}");
    let (snap, disk) =
        lifeboat_engine::parse_store_location(img["location"].as_str().unwrap()).unwrap();
    let store = lifeboat_datastore::StoreLocation::dir(dir.path().join("snapstore"))
        .open()
        .unwrap();
    let digest = store.digest_disk(&snap, &disk).unwrap();

    // More data after the backup (which the restore must undo).
    action(&api, &id, json!({"action": "stop"}));
    assert_eq!(
        api.settle(&id, Duration::from_secs(120))["status"],
        "SHUTOFF"
    );
    write_disk(&root, at, &random(1 << 20));
    action(&api, &id, json!({"action": "start"}));
    assert_eq!(
        api.settle(&id, Duration::from_secs(240))["status"],
        "ACTIVE"
    );

    // The CLI restores (instant) and waits for the copy, with JSON output.
    let started = Instant::now();
    let cli = Command::new(BIN)
        .args([
            "server", "restore", &id, "--backup", &image_id, "--wait", "-o", "json",
        ])
        .env("LIFEBOAT_URL", &serve.url)
        .env(
            "LIFEBOAT_CREDENTIALS",
            serve.data_dir.join("admin-credentials.json"),
        )
        .env_remove("LIFEBOAT_USER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    struct Kill(Option<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(c) = &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let mut cli = Kill(Some(cli));

    // The server is usable while most of its disk is still in the store.
    let deadline = Instant::now() + Duration::from_secs(240);
    let s = loop {
        let s = api.get(&format!("/api/v1/servers/{id}"));
        if s["status"] == "ACTIVE" && s["task_state"].is_null() && !s["restore"].is_null() {
            break s;
        }
        assert!(
            s["status"] != "ERROR" && Instant::now() < deadline,
            "not restored: {s}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let usable = started.elapsed();
    eprintln!("usable after {usable:?}: {}", s["restore"]);
    assert_eq!(s["restore"]["done"], false, "{s}");
    assert_eq!(s["restore"]["snapshot"], snap.as_str(), "{s}");
    assert_eq!(s["id"], id.as_str());
    assert_eq!(ports_of(&s), ports, "same port, MAC and IP: {s}");
    assert_eq!(vm_macs(&vm_dir), macs, "the new VM has the old MAC");
    let console = std::fs::read_to_string(vm_dir.join("serial.log")).unwrap();
    assert!(
        console.contains("not mounting /dev/vda"),
        "the guest leaves the restored disk alone: {console}"
    );
    // Disk actions are refused with a clear 409 until the copy is done.
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "create_backup", "name": "too-early", "backup_type": "daily", "rotation": 3}),
    );
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("until its instant restore has copied its disk"),
        "{v}"
    );
    // The guest reads its whole disk: the backed-up bytes, not those written after.
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "run_maintenance", "procedure": "disk-digest"}),
    );
    assert_eq!(st, 202, "{v}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let (out, digest_at) = loop {
        let evs = api.get(&format!("/api/v1/events?server_id={id}&limit=500"));
        if let Some(e) = evs.as_array().unwrap().iter().find(|e| {
            e["message"]
                .as_str()
                .unwrap()
                .starts_with("maintenance disk-digest:")
        }) {
            break (e["message"].as_str().unwrap().to_string(), time_of(e));
        }
        assert!(Instant::now() < deadline, "no digest: {evs}");
        std::thread::sleep(Duration::from_millis(250));
    };
    let during = api.get(&format!("/api/v1/servers/{id}"));
    eprintln!("after the guest's digest: {}", during["restore"]);
    // Its reads were answered by the store's export (the host counts them).
    let served = |v: &Value| v["restore"]["served_reads"].as_u64().unwrap_or(0);
    assert!(
        during["restore"].is_null() || served(&during) > served(&s) + 50,
        "the guest's reads went to the store: {} then {}",
        s["restore"],
        during["restore"]
    );
    assert!(
        out.contains(&format!("md5 {}", digest.md5)),
        "the guest read the snapshot's bytes: {out} (store md5 {})",
        digest.md5
    );

    // The CLI returns once the copy is done, with the server.
    let child = cli.0.take().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let done: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    eprintln!(
        "copy done after {:?}: {}",
        started.elapsed(),
        done["restore"]
    );
    assert_eq!(done["restore"]["done"], true, "{done}");
    assert_eq!(done["id"], id.as_str());
    let s = api.get(&format!("/api/v1/servers/{id}"));
    assert!(s["restore"].is_null(), "nothing left to copy: {s}");
    let took = done["restore"]["took_ms"].as_u64().unwrap();
    eprintln!("guest digest logged at {digest_at}; the copy took {took} ms");
    // The local disk alone equals the snapshot.
    action(&api, &id, json!({"action": "stop"}));
    assert_eq!(
        api.settle(&id, Duration::from_secs(120))["status"],
        "SHUTOFF"
    );
    let info = Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&root)
        .output()
        .unwrap();
    let info: Value = serde_json::from_slice(&info.stdout).unwrap();
    assert!(
        info.get("backing-filename").is_none() && info.get("full-backing-filename").is_none(),
        "no backing left: {info}"
    );
    let m = store.manifest(&snap).unwrap();
    let idx = store.index(&m, &disk).unwrap();
    let piece = 64usize << 20;
    for off in (0..size).step_by(piece) {
        let (size2, local) = read_disk(&root, off, piece);
        assert_eq!(size2, size);
        let mut want = vec![0u8; piece];
        store.read_at(&idx, &mut want, off).unwrap();
        assert!(
            local == want,
            "the restored disk equals the snapshot at {off}"
        );
    }
    let (_, local) = read_disk(&root, at, 1 << 20);
    assert!(local == backed_up, "the backed-up marker is on the disk");
    // It boots from it alone, with the same endpoint.
    action(&api, &id, json!({"action": "start"}));
    let s = api.settle(&id, Duration::from_secs(240));
    assert_eq!(s["status"], "ACTIVE", "{s}");
    assert_eq!(ports_of(&s), ports);
    drop(serve);
}
