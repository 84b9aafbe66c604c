//! What the real-VM tests of the QEMU driver share: the guest image, a reaper
//! of the qemus a test leaves, a VM spec on the guest image, and a root shell
//! on the guest's console.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use lifeboat_hypervisor::qemu::{Accel, ProbeImage, QemuConfig, QemuDriver};
use lifeboat_hypervisor::{ConsoleStream, Hypervisor, ImageRef, Nic, VmSize, VmSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The guest image's directory (`LIFEBOAT_GUEST_DIR`, default `guest/out`),
/// brought up to date by `guest/build-image.sh` (instant when it is). Fails
/// with a clear message when qemu is not installed.
pub fn guest_dir() -> PathBuf {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("qemu-system-x86_64").is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "qemu-system-x86_64 is not installed: run scripts/setup.sh (apt-get install qemu-system-x86)"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::var_os("LIFEBOAT_GUEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("guest/out"));
    let st = Command::new("bash")
        .arg(root.join("guest/build-image.sh"))
        .env("OUT_DIR", &dir)
        .current_dir(&root)
        .status()
        .expect("run guest/build-image.sh");
    assert!(st.success(), "guest/build-image.sh failed: {st}");
    assert!(
        dir.join("vmlinux").is_file(),
        "no guest image in {}",
        dir.display()
    );
    std::fs::canonicalize(dir).unwrap()
}

/// A driver for `host` keeping its state in `state`, on the accelerator of
/// `LIFEBOAT_ACCEL` (auto, kvm, tcg; default auto), probing with the guest
/// image, with a boot timeout long enough for TCG on a loaded machine.
pub fn config(state: &Path, host: &str, gdir: &Path) -> QemuConfig {
    let mut cfg = QemuConfig::new(state, host);
    cfg.accel = std::env::var("LIFEBOAT_ACCEL")
        .unwrap_or_default()
        .parse::<Accel>()
        .expect("LIFEBOAT_ACCEL");
    cfg.probe_image = ProbeImage::in_dir(gdir);
    cfg.vm_ready_timeout = Duration::from_secs(180);
    cfg
}

/// Kills every qemu left in a state dir when the test ends (also on panic).
pub struct Reaper(pub PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        let Ok(rd) = std::fs::read_dir(self.0.join("vms")) else {
            return;
        };
        for e in rd.flatten() {
            if let Ok(pid) = std::fs::read_to_string(e.path().join("pid")) {
                let cmdline =
                    std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&*e.path().to_string_lossy()) {
                    let _ = Command::new("kill").args(["-9", pid.trim()]).status();
                }
            }
        }
    }
}

/// The guest image's kernel and initramfs, with extra kernel arguments.
pub fn image(gdir: &Path, cmdline: Option<&str>) -> ImageRef {
    ImageRef {
        id: "lifeboat-guest".into(),
        disk: None,
        kernel: Some(gdir.join("vmlinux").to_string_lossy().into_owned()),
        initrd: Some(
            gdir.join("initramfs.cpio.gz")
                .to_string_lossy()
                .into_owned(),
        ),
        cmdline: cmdline.map(str::to_string),
        store: None,
    }
}

/// A one-vCPU, 128 MiB VM booting `image` with a root disk of `disk_gb`
/// (0: the driver's 64 MiB minimum) and one NIC (`mac`, `ip` in 10.0.0.0/24).
pub fn spec(name: &str, image: ImageRef, disk_gb: u64, (mac, ip): (&str, &str)) -> VmSpec {
    VmSpec {
        name: name.into(),
        server_id: format!("{name}-id"),
        hostname: name.into(),
        size: VmSize {
            vcpus: 1,
            ram_mb: 128,
            disk_gb,
            ephemeral_gb: 0,
            swap_mb: 0,
        },
        image,
        nics: vec![Nic {
            port_id: "p1".into(),
            mac: mac.into(),
            ip: ip.into(),
            prefix: 24,
            gateway: "10.0.0.1".into(),
            pci_slot: None,
        }],
        user_data: None,
        root_disk: None,
        root_from: None,
        config_drive: None,
    }
}

/// A root shell on the VM's second serial port.
pub struct Shell {
    io: ConsoleStream,
    seen: String,
    seq: u32,
}

impl Shell {
    /// Reads the console until `needle` shows, failing after `secs`.
    pub async fn read_until(&mut self, needle: &str, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{needle:?} not on the console after {secs} s:\n{}",
                self.seen
            );
            if let Ok(Ok(n)) = tokio::time::timeout(left, self.io.read(&mut buf)).await {
                assert!(n > 0, "console closed:\n{}", self.seen);
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    }

    /// Sets root's password through the guest agent (the guest's root is an
    /// initramfs, so each boot needs it again) and logs in on the console.
    pub async fn login(d: &QemuDriver, name: &str, password: &str) -> Shell {
        d.set_password(name, "root", password).await.unwrap();
        let io = d.open_console(name).await.unwrap();
        let mut sh = Shell {
            io,
            seen: String::new(),
            seq: 0,
        };
        let end = Instant::now() + Duration::from_secs(120);
        while !sh.seen.contains("login:") {
            assert!(Instant::now() < end, "no login prompt:\n{}", sh.seen);
            sh.io.write_all(b"\n").await.unwrap();
            let mut buf = [0u8; 4096];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), sh.io.read(&mut buf)).await
            {
                sh.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
        sh.io.write_all(b"root\n").await.unwrap();
        sh.read_until("assword:", 30).await;
        sh.io
            .write_all(format!("{password}\n").as_bytes())
            .await
            .unwrap();
        sh.run("true").await;
        sh
    }

    /// Runs `cmd` and returns its output (the lines between two markers).
    pub async fn run(&mut self, cmd: &str) -> String {
        self.seq += 1;
        let n = self.seq;
        // The markers are computed by the shell, so the echoed command line
        // does not contain them.
        let line = format!("echo BEGIN-$(({n}*7)); {cmd}; echo END-$(({n}*7))\n");
        self.seen.clear();
        self.io.write_all(line.as_bytes()).await.unwrap();
        let (b, e) = (format!("BEGIN-{}", n * 7), format!("END-{}", n * 7));
        self.read_until(&e, 300).await;
        let s = &self.seen[self.seen.find(&b).unwrap() + b.len()..];
        s[..s.find(&e).unwrap()].trim().replace('\r', "")
    }
}

/// The digest at the start of an `md5sum` output line.
pub fn md5_of(out: &str) -> String {
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
