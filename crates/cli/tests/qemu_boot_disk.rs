//! An uploaded bootable disk boots (real VMs, QEMU, TCG here): the BIOS test disk of
//! `guest/build-boot-disk.sh` (syslinux MBR + extlinux on an ext2 partition, Debian's kernel
//! and the project's guest initramfs) is uploaded through Image v2 (`POST /v2/images`,
//! `PUT /v2/images/{id}/file`) as qcow2 and as raw; a server created from the qcow2 image
//! boots it with BIOS from its own disk (no `-kernel`), reaches ACTIVE and its guest agent
//! answers on the virtio-serial socket; the server is then rebuilt onto the raw image and
//! boots that. One VM at a time (2 cores).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{free_port, guest_dir, Api, Serve, VmGuard};
use serde_json::{json, Value};

/// `guest/out/boot-disk.qcow2`, built (cached) by `guest/build-boot-disk.sh`.
fn boot_disk(guest: &Path) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let st = Command::new("bash")
        .arg(root.join("guest/build-boot-disk.sh"))
        .env("OUT_DIR", guest)
        .status()
        .expect("run guest/build-boot-disk.sh");
    assert!(st.success(), "guest/build-boot-disk.sh failed: {st}");
    let p = guest.join("boot-disk.qcow2");
    assert!(p.is_file(), "{} missing", p.display());
    p
}

/// Creates an image through Image v2 and uploads `file` as its data.
fn upload(os: &Api, name: &str, disk_format: &str, file: &Path) -> String {
    let (st, img) = os.post(
        "/image/v2/images",
        json!({"name": name, "disk_format": disk_format, "container_format": "bare"}),
    );
    assert_eq!(st, 201, "{img}");
    let id = img["id"].as_str().unwrap().to_string();
    let data = std::fs::read(file).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .put(format!("{}/image/v2/images/{id}/file", os.url))
            .header("X-Auth-Token", &os.token)
            .header("Content-Type", "application/octet-stream")
            .body(data)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 204, "upload of {name}");
    let img = os.get(&format!("/image/v2/images/{id}"));
    assert_eq!(img["status"], "active", "{img}");
    assert_eq!(img["disk_format"], disk_format, "{img}");
    id
}

/// One guest-agent request on the VM's `ga.sock` (retried while the driver holds the
/// socket); the answer's `result`.
fn agent(vm_dir: &Path, cmd: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    let id = rand::random::<u32>();
    loop {
        let got = (|| -> std::io::Result<Option<Value>> {
            let s = UnixStream::connect(vm_dir.join("ga.sock"))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            (&s).write_all(format!("{{\"id\":{id},\"cmd\":\"{cmd}\"}}\n").as_bytes())?;
            for line in BufReader::new(&s).lines() {
                let v: Value = serde_json::from_str(&line?).unwrap_or(Value::Null);
                if v["id"] == id {
                    return Ok(Some(v));
                }
            }
            Ok(None)
        })();
        if let Ok(Some(v)) = got {
            assert_eq!(v["ok"], true, "{cmd}: {v}");
            return v["result"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the guest agent did not answer {cmd}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The server is ACTIVE, booted with BIOS from its disk, and its agent answers.
fn check_booted_from_disk(api: &Api, dir: &Path, id: &str, boots: usize) {
    let s = api.settle(id, Duration::from_secs(300));
    assert_eq!(s["status"], "ACTIVE", "{s}");
    let inst = s["instance_name"].as_str().unwrap().to_string();
    let vm = dir.join("hosts/host1/vms").join(&inst);
    let pid: u32 = std::fs::read_to_string(vm.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    assert!(
        !args.iter().any(|a| a == "-kernel" || a == "-initrd"),
        "booted by the BIOS, not direct kernel boot: {args:?}"
    );
    let console = std::fs::read_to_string(vm.join("serial.log")).unwrap();
    assert!(
        console.matches("SYSLINUX").count() >= boots,
        "syslinux from the disk's MBR/partition loaded the kernel ({boots} boots): {console}"
    );
    assert!(console.contains("LIFEBOAT-READY"), "{console}");
    assert!(
        console.contains("mounted /dev/vda1 at /mnt/data"),
        "the guest mounted its boot partition: {console}"
    );
    assert_eq!(agent(&vm, "ping")["pong"], true);
    let info = agent(&vm, "exec-info");
    assert!(
        info["kernel_release"]
            .as_str()
            .is_some_and(|k| k.ends_with("-amd64")),
        "{info}"
    );
}

#[test]
fn uploaded_bootable_qcow2_and_raw_boot_with_bios_and_rebuild_onto_raw() {
    let guest = guest_dir();
    let qcow2 = boot_disk(&guest);
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("boot-disk.raw");
    let st = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "qcow2", "-O", "raw"])
        .arg(&qcow2)
        .arg(&raw)
        .status()
        .unwrap();
    assert!(st.success());
    let _vms = VmGuard::new();
    let mut serve = Serve::start_full(
        dir.path(),
        free_port(),
        "qemu",
        &[],
        &["--guest-dir", guest.to_str().unwrap()],
    );
    serve.wait_ready_line();
    let c = serve.credentials();
    let (user, pass) = (
        c["username"].as_str().unwrap().to_string(),
        c["password"].as_str().unwrap().to_string(),
    );
    let os = Api::keystone(&serve.url, &user, &pass);
    let api = Api::login(&serve.url, &user, &pass);

    let q_id = upload(&os, "bootable-qcow2", "qcow2", &qcow2);
    let r_id = upload(&os, "bootable-raw", "raw", &raw);

    let (st, v) = api.post(
        "/api/v1/servers",
        json!({"name": "biosboot", "flavor": "m1.nano", "image": q_id,
               "availability_zone": "nova:host1"}),
    );
    assert_eq!(st, 202, "{v}");
    let id = v[0]["server"]["id"].as_str().unwrap().to_string();
    check_booted_from_disk(&api, dir.path(), &id, 1);

    // Rebuild onto the raw upload: a new root disk from that image, booted the same way.
    let (st, v) = api.post(
        &format!("/api/v1/servers/{id}/actions"),
        json!({"action": "rebuild", "image": r_id}),
    );
    assert!(st == 202 || st == 200, "{st} {v}");
    check_booted_from_disk(&api, dir.path(), &id, 2);
    let s = api.get(&format!("/api/v1/servers/{id}"));
    assert_eq!(s["image_id"].as_str(), Some(r_id.as_str()), "{s}");

    let (st, _) = api.req(
        reqwest::Method::DELETE,
        &format!("/api/v1/servers/{id}"),
        None,
    );
    assert_eq!(st, 202);
    assert_eq!(
        api.settle(&id, Duration::from_secs(60))["status"],
        "DELETED"
    );
    drop(serve);
}
