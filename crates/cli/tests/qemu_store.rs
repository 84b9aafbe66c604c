//! Nova actions through the snapshot store on real VMs (QEMU, TCG here):
//! shelve → offload (the host's disk is freed) → unshelve on ANOTHER host
//! agent with the disk's data intact; createImage into the store and a new
//! server booted from that image on the other host. One VM at a time (2 cores).

mod common;

use std::time::Duration;

use common::{free_port, guest_dir, read_disk, write_disk, Api, Serve, VmGuard};
use serde_json::{json, Value};

struct Agent(std::process::Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn login(s: &Serve) -> Api {
    let c = s.credentials();
    Api::login(
        &s.url,
        c["username"].as_str().unwrap(),
        c["password"].as_str().unwrap(),
    )
}

fn action(api: &Api, id: &str, body: Value) {
    let (st, v) = api.post(&format!("/api/v1/servers/{id}/actions"), body.clone());
    assert!(st == 202 || st == 200, "{body} -> {st} {v}");
}

#[test]
fn shelve_offload_unshelve_on_another_host_keeps_the_disk_and_images_boot_from_the_store() {
    let guest = guest_dir();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("agent-token");
    std::fs::write(&token, "qemu-store-agent-token").unwrap();
    let agent_port = free_port();
    let agent_dir = tempfile::tempdir().unwrap();
    let _vms = VmGuard::new();
    let _agent = Agent(common::start_agent(
        "host2",
        "qemu",
        agent_port,
        agent_dir.path(),
        &token,
    ));
    let agent_arg = common::agent_arg("host2", agent_port, agent_dir.path());
    let mut serve = Serve::start_full(
        dir.path(),
        free_port(),
        "qemu",
        &[],
        &[
            "--guest-dir",
            guest.to_str().unwrap(),
            "--agent",
            &agent_arg,
        ],
    );
    serve.wait_ready_line();
    let api = login(&serve);

    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "keeper", "flavor": "m1.nano", "availability_zone": "nova:host1"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    let s = api.settle(&id, Duration::from_secs(240));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host1")),
        "{s}"
    );
    let instance = s["instance_name"].as_str().unwrap().to_string();
    let host1_vm = dir.path().join("hosts/host1/vms").join(&instance);
    let host2_vm = agent_dir.path().join("vms").join(&instance);

    // Data on the server's disk: random bytes near its end (free blocks of
    // the guest's ext2), written while it is off, then booted with.
    action(&api, &id, json!({"action": "stop"}));
    assert_eq!(
        api.settle(&id, Duration::from_secs(120))["status"],
        "SHUTOFF"
    );
    let root1 = host1_vm.join("root.qcow2");
    let (size, _) = read_disk(&root1, 0, 512);
    let marker: Vec<u8> = (0..(1 << 20)).map(|_| rand::random::<u8>()).collect();
    let at = size - (3 << 20);
    write_disk(&root1, at, &marker);
    action(&api, &id, json!({"action": "start"}));
    assert_eq!(
        api.settle(&id, Duration::from_secs(240))["status"],
        "ACTIVE"
    );

    // Shelve (offload at once): the disk goes into the store, host1 frees it.
    action(&api, &id, json!({"action": "shelve"}));
    let s = api.settle(&id, Duration::from_secs(240));
    assert_eq!(s["status"], "SHELVED_OFFLOADED", "{s}");
    assert!(s["host"].is_null(), "{s}");
    assert!(
        !host1_vm.exists(),
        "offload removed the VM and its disks from host1"
    );
    let store = lifeboat_datastore::StoreLocation::dir(dir.path().join("snapstore"))
        .open()
        .unwrap();
    let shelved: Vec<_> = store
        .snapshots()
        .unwrap()
        .into_iter()
        .filter(|m| m.meta.kind == lifeboat_datastore::SnapshotKind::Shelve)
        .collect();
    assert_eq!(shelved.len(), 1, "one shelve snapshot");
    assert_eq!(shelved[0].meta.server.as_deref(), Some(id.as_str()));

    // Unshelve onto host2: its agent restores the disk from the store.
    action(&api, &id, json!({"action": "unshelve", "host": "host2"}));
    let s = api.settle(&id, Duration::from_secs(300));
    assert_eq!(
        (s["status"].as_str(), s["host"].as_str()),
        (Some("ACTIVE"), Some("host2")),
        "{s}"
    );
    let console = std::fs::read_to_string(host2_vm.join("serial.log")).unwrap();
    assert!(
        console.contains("mounted /dev/vda at /mnt/data"),
        "the guest on host2 mounted its own filesystem (not a fresh disk): {console}"
    );
    assert!(
        !console.contains("formatting blank"),
        "the disk on host2 was not blank: {console}"
    );
    assert!(
        store
            .snapshots()
            .unwrap()
            .iter()
            .all(|m| m.meta.kind != lifeboat_datastore::SnapshotKind::Shelve),
        "the shelve snapshot is deleted after unshelve"
    );
    action(&api, &id, json!({"action": "stop"}));
    assert_eq!(
        api.settle(&id, Duration::from_secs(120))["status"],
        "SHUTOFF"
    );
    let root2 = host2_vm.join("root.qcow2");
    let (size2, got) = read_disk(&root2, at, marker.len());
    assert_eq!(size2, size, "same disk size on host2");
    assert!(
        got == marker,
        "the data written on host1 is on host2's disk"
    );

    // createImage of the stopped server: an active image in the store with
    // its size and checksums.
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "create_image", "name": "keeper-snap"}),
    );
    assert!(st == 202 || st == 200, "{st} {v}");
    let wait_image =
        |name: &str| -> Value {
            let deadline = std::time::Instant::now() + Duration::from_secs(240);
            loop {
                let imgs = api.get("/api/v1/images");
                if let Some(i) = imgs.as_array().unwrap().iter().find(|i| {
                    i["name"] == name && i["status"] != "queued" && i["status"] != "saving"
                }) {
                    return i.clone();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no image {name}: {imgs}"
                );
                std::thread::sleep(Duration::from_millis(500));
            }
        };
    let img = wait_image("keeper-snap");
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["size"].as_u64(), Some(size), "{img}");
    let loc = img["location"].as_str().unwrap_or_default().to_string();
    let (snap, disk) = lifeboat_engine::parse_store_location(&loc)
        .unwrap_or_else(|| panic!("image is in the store: {img}"));
    let digest = store.digest_disk(&snap, &disk).unwrap();
    assert_eq!(img["checksum"].as_str(), Some(digest.md5.as_str()), "{img}");
    assert_eq!(
        img["os_hash_value"].as_str(),
        Some(digest.sha512.as_str()),
        "{img}"
    );

    // A new server from that image on host1 (which never had this disk):
    // its root disk is an overlay of the image restored from the store.
    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "clone", "flavor": "m1.nano", "image": img["id"],
               "availability_zone": "nova:host1"}),
    );
    assert_eq!(st, 202, "{v}");
    let cid = v[0]["server"]["id"].as_str().unwrap().to_string();
    let c = api.settle(&cid, Duration::from_secs(240));
    assert_eq!(
        (c["status"].as_str(), c["host"].as_str()),
        (Some("ACTIVE"), Some("host1")),
        "{c}"
    );
    let cinst = c["instance_name"].as_str().unwrap().to_string();
    let console = std::fs::read_to_string(
        dir.path()
            .join("hosts/host1/vms")
            .join(&cinst)
            .join("serial.log"),
    )
    .unwrap();
    assert!(
        console.contains("mounted /dev/vda at /mnt/data"),
        "{console}"
    );
    action(&api, &cid, json!({"action": "stop"}));
    assert_eq!(
        api.settle(&cid, Duration::from_secs(120))["status"],
        "SHUTOFF"
    );
    let (_, got) = read_disk(
        &dir.path()
            .join("hosts/host1/vms")
            .join(&cinst)
            .join("root.qcow2"),
        at,
        marker.len(),
    );
    assert!(got == marker, "the clone booted from the image's data");
    drop(api);
    drop(serve);
}
