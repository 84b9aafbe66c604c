//! Boot benchmark: create → ACTIVE (guest agent ready) through Lifeboat with
//! the QEMU driver, p50/p95 over N servers (default 20, one at a time), beside
//! the bare `qemu-system-x86_64` boot of the same guest and VM shape (flavor
//! disk, NIC, agent port) to its ready marker,
//! measured in the same run, and beside Firecracker's published 125 ms to
//! /sbin/init. Prints numbers and ratios; asserts nothing. Not run in CI.
//!
//! `cargo build --release && bash guest/build-image.sh &&
//!  cargo run --release -p lifeboat-bench --bin boot -- [N]`

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const FIRECRACKER_MS: f64 = 125.0;

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// Makes `dir/base.qcow2`: a formatted 1 GiB disk like the flavor's root disk.
fn make_base_disk(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let raw = dir.join("base.raw");
    std::fs::File::create(&raw)?.set_len(1 << 30)?;
    let ok = Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext2"])
        .arg(&raw)
        .status()?
        .success();
    anyhow::ensure!(ok, "mke2fs failed");
    let base = dir.join("base.qcow2");
    let ok = Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&base)
        .status()?
        .success();
    anyhow::ensure!(ok, "qemu-img convert failed");
    std::fs::remove_file(raw)?;
    Ok(base)
}

/// One bare boot of the same guest and VM shape (128 MiB, the flavor's 1 GiB
/// root disk as a qcow2 overlay, a virtio NIC, the agent's virtio-serial
/// port), started by hand, until the serial console prints the ready marker.
fn bare_boot(guest: &str, accel: &str, base: &std::path::Path) -> anyhow::Result<f64> {
    let disk = base.with_file_name("bare.qcow2");
    let _ = std::fs::remove_file(&disk);
    let ok = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(base)
        .arg(&disk)
        .status()?
        .success();
    anyhow::ensure!(ok, "qemu-img create failed");
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "pc",
            "-accel",
            accel,
            "-m",
            "128",
            "-nographic",
            "-no-user-config",
        ])
        .args([
            "-drive",
            &format!("file={},if=virtio,format=qcow2", disk.display()),
        ])
        .args(["-nic", "user,model=virtio-net-pci,restrict=on"])
        .args(["-device", "virtio-serial", "-chardev", "null,id=ga"])
        .args([
            "-device",
            "virtserialport,chardev=ga,name=org.lifeboat.agent.0",
        ])
        .args([
            "-kernel",
            &format!("{guest}/vmlinux"),
            "-initrd",
            &format!("{guest}/initramfs.cpio.gz"),
        ])
        .args(["-append", "console=ttyS0 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let result = loop {
        let n = out.read(&mut buf)?;
        if n == 0 {
            break Err(anyhow::anyhow!("qemu exited before the ready marker"));
        }
        seen.extend_from_slice(&buf[..n]);
        if seen.windows(14).any(|w| w == b"LIFEBOAT-READY") {
            break Ok(start.elapsed().as_secs_f64() * 1000.0);
        }
        if start.elapsed() > Duration::from_secs(120) {
            break Err(anyhow::anyhow!("no ready marker after 120 s"));
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let bin = std::env::var("LIFEBOAT_BIN").unwrap_or_else(|_| "target/release/lifeboat".into());
    let guest = std::env::var("LIFEBOAT_GUEST_DIR").unwrap_or_else(|_| "guest/out".into());
    let dir = std::env::temp_dir().join(format!("lifeboat-boot-bench-{}", std::process::id()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(&bin)
        .args([
            "serve",
            "--driver",
            "qemu",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(&dir)
        .args(["--guest-dir", &guest])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "lifeboat serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let creds: Value = serde_json::from_str(&std::fs::read_to_string(
        dir.join("admin-credentials.json"),
    )?)?;
    let login: Value = http
        .post(format!("{url}/api/v1/auth/tokens"))
        .json(&json!({"username": creds["username"], "password": creds["password"]}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["token"].as_str().unwrap_or_default().to_string();
    let hosts: Value = http
        .get(format!("{url}/api/v1/hosts"))
        .header("X-Auth-Token", &token)
        .send()
        .await?
        .json()
        .await?;
    println!("boot: {n} servers one at a time, 128 MiB guests; host: {hosts}");

    let mut lifeboat = vec![];
    for i in 0..n {
        let t = Instant::now();
        let r: Value = http
            .post(format!("{url}/api/v1/servers"))
            .header("X-Auth-Token", &token)
            .json(&json!({"name": format!("b{i}"), "flavor": "m1.nano"}))
            .send()
            .await?
            .json()
            .await?;
        let id = r[0]["server"]["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("create failed: {r}"))?
            .to_string();
        loop {
            let s: Value = http
                .get(format!("{url}/api/v1/servers/{id}"))
                .header("X-Auth-Token", &token)
                .send()
                .await?
                .json()
                .await?;
            if s["status"] == "ACTIVE" {
                break;
            }
            anyhow::ensure!(
                s["status"] != "ERROR",
                "server went to ERROR: {}",
                s["fault"]
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        lifeboat.push(t.elapsed().as_secs_f64() * 1000.0);
        http.delete(format!("{url}/api/v1/servers/{id}"))
            .header("X-Auth-Token", &token)
            .send()
            .await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let accel = hosts[0]["accelerator"]
        .as_str()
        .unwrap_or("tcg")
        .to_string();
    let accel = if accel == "kvm" { "kvm" } else { "tcg" };
    std::fs::create_dir_all(&dir)?;
    let base = make_base_disk(&dir)?;
    let mut bare = vec![];
    for _ in 0..n {
        bare.push(bare_boot(&guest, accel, &base)?);
    }
    let (lp50, lp95, bp50, bp95) = (
        pct(&lifeboat, 0.5),
        pct(&lifeboat, 0.95),
        pct(&bare, 0.5),
        pct(&bare, 0.95),
    );
    println!("lifeboat create -> ACTIVE (agent ready): p50 {lp50:.0} ms  p95 {lp95:.0} ms");
    println!("bare qemu boot, same VM shape -> ready marker ({accel}):  p50 {bp50:.0} ms  p95 {bp95:.0} ms");
    println!(
        "ratio lifeboat/bare: p50 {:.2}x  p95 {:.2}x  (target under TCG: p50 <= 1.3x)",
        lp50 / bp50,
        lp95 / bp95
    );
    println!(
        "vs Firecracker's published {FIRECRACKER_MS:.0} ms to /sbin/init: p50 {:.1}x",
        lp50 / FIRECRACKER_MS
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
