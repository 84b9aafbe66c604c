//! Which accelerator a host uses, decided by booting the project's own guest.
//!
//! A `/dev/kvm` that opens is no proof that KVM can run a Linux guest: on a
//! nested paravirtual `kvm-pvm` host a boot sector boots, while the Linux
//! kernel crawls and then stops with a KVM internal error. So the probe boots
//! the guest kernel + initramfs under KVM to its ready marker within a
//! deadline, and also gives up at once when QMP reports the `internal-error`
//! or `guest-panicked` run state. The result is cached per process (keyed by
//! the qemu binary and the probe image). A driver that later sees a VM stop
//! with a KVM internal error calls [`demote_to_tcg`], so new VMs (and new
//! drivers in this process) use TCG.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::Command;
use tokio::time::Instant;

use super::console::READY_MARKER;
use super::qmp::Qmp;

/// Accelerator choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM if the probe boots the guest in time, else TCG.
    Auto,
    /// Hardware virtualisation.
    Kvm,
    /// Emulation.
    Tcg,
}

impl Accel {
    /// `kvm`, `tcg` or `auto`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Auto => "auto",
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::str::FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Accel, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!("unknown accelerator {other:?} (auto, kvm or tcg)")),
        }
    }
}

/// The guest booted by the probe.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProbeImage {
    /// Uncompressed kernel (`guest/out/vmlinux`).
    pub kernel: PathBuf,
    /// Initramfs (`guest/out/initramfs.cpio.gz`) whose `/init` prints the ready marker.
    pub initrd: PathBuf,
}

impl ProbeImage {
    /// The image in `dir` (`vmlinux`, `initramfs.cpio.gz`) if both files exist.
    pub fn in_dir(dir: &Path) -> Option<ProbeImage> {
        let p = ProbeImage {
            kernel: dir.join("vmlinux"),
            initrd: dir.join("initramfs.cpio.gz"),
        };
        (p.kernel.is_file() && p.initrd.is_file()).then_some(p)
    }
}

/// What a probe decided, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeResult {
    /// `Kvm` or `Tcg`.
    pub accel: Accel,
    /// A sentence for the log (boot time, or why KVM is unusable).
    pub reason: String,
}

type Key = (PathBuf, Option<ProbeImage>);

static CACHE: Mutex<Option<HashMap<Key, ProbeResult>>> = Mutex::new(None);
/// One probe at a time in a process (two would race for the 2 cores and both time out).
static PROBING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn cached(key: &Key) -> Option<ProbeResult> {
    CACHE.lock().unwrap().as_ref()?.get(key).cloned()
}

fn remember(key: Key, r: ProbeResult) {
    CACHE
        .lock()
        .unwrap()
        .get_or_insert_with(HashMap::new)
        .insert(key, r);
}

/// Records that KVM failed a real guest on this host: every cached probe
/// answer becomes TCG, so drivers created later in this process use TCG.
pub fn demote_to_tcg(why: &str) {
    let mut g = CACHE.lock().unwrap();
    for r in g.get_or_insert_with(HashMap::new).values_mut() {
        if r.accel == Accel::Kvm {
            *r = ProbeResult {
                accel: Accel::Tcg,
                reason: why.to_string(),
            };
        }
    }
}

/// Decides between KVM and TCG for `qemu_binary` by booting `image` under
/// KVM (see the module documentation); cached per process. Without a probe
/// image KVM cannot be shown to work, so the answer is TCG.
pub async fn probe(
    qemu_binary: &Path,
    image: Option<&ProbeImage>,
    deadline: Duration,
) -> ProbeResult {
    let key: Key = (qemu_binary.to_path_buf(), image.cloned());
    if let Some(r) = cached(&key) {
        return r;
    }
    let _g = PROBING.lock().await;
    if let Some(r) = cached(&key) {
        return r;
    }
    let r = match image {
        None => ProbeResult {
            accel: Accel::Tcg,
            reason: "no guest image to probe kvm with (build guest/out or pass --guest-dir)".into(),
        },
        Some(img) => match kvm_boots_guest(qemu_binary, img, deadline).await {
            Ok(took) => ProbeResult {
                accel: Accel::Kvm,
                reason: format!("the guest kernel booted under kvm in {took:.1?}"),
            },
            Err(why) => ProbeResult {
                accel: Accel::Tcg,
                reason: format!("kvm cannot run the guest: {why}"),
            },
        },
    };
    tracing::info!(accel = r.accel.name(), reason = %r.reason, "accelerator probe");
    remember(key, r.clone());
    r
}

/// Kills the probe's qemu and removes its directory when dropped.
struct ProbeRun {
    child: Option<tokio::process::Child>,
    dir: PathBuf,
}

impl Drop for ProbeRun {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Boots `img` with `-accel kvm`; Ok(boot time) when the ready marker
/// appears on the serial console within `deadline`.
pub async fn kvm_boots_guest(
    qemu_binary: &Path,
    img: &ProbeImage,
    deadline: Duration,
) -> Result<Duration, String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("/dev/kvm: {e}"));
    }
    let dir = std::env::temp_dir().join(format!(
        "lifeboat-kvm-probe-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut run = ProbeRun {
        child: None,
        dir: dir.clone(),
    };
    let serial = dir.join("serial.log");
    let qmp_path = dir.join("qmp.sock");
    let started = Instant::now();
    let child = Command::new(qemu_binary)
        .args(["-accel", "kvm", "-cpu", "host", "-machine", "pc"])
        .args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args([
            "-m",
            "128",
            "-smp",
            "1",
            "-no-shutdown",
            "-device",
            "pvpanic",
        ])
        .arg("-chardev")
        .arg(format!("file,id=con0,path={}", serial.display()))
        .args(["-device", "isa-serial,chardev=con0"])
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_path.display()))
        .arg("-kernel")
        .arg(&img.kernel)
        .arg("-initrd")
        .arg(&img.initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1 lifeboat.data=none"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", qemu_binary.display()))?;
    run.child = Some(child);
    let end = started + deadline;
    let mut qmp: Option<Qmp> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let out = std::fs::read(&serial).unwrap_or_default();
        if super::console::contains(&out, READY_MARKER) {
            return Ok(started.elapsed());
        }
        let child = run.child.as_mut().expect("spawned");
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ = e.read_to_string(&mut err).await;
            }
            return Err(format!("qemu exited ({st}): {}", err.trim()));
        }
        if qmp.is_none() && qmp_path.exists() {
            qmp = Qmp::connect(&qmp_path, Duration::from_secs(2)).await.ok();
        }
        if let Some(q) = qmp.as_mut() {
            if let Ok(rs) = q.run_state().await {
                if rs == "internal-error" || rs == "guest-panicked" {
                    return Err(format!("the guest stopped in run state {rs}"));
                }
            }
        }
        if Instant::now() >= end {
            let said = if out.is_empty() {
                "nothing on the serial console".to_string()
            } else {
                "no ready marker".to_string()
            };
            return Err(format!("no boot within {deadline:?} ({said})"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!("KVM".parse::<Accel>().unwrap(), Accel::Kvm);
        assert_eq!("tcg".parse::<Accel>().unwrap(), Accel::Tcg);
        assert_eq!("auto".parse::<Accel>().unwrap(), Accel::Auto);
        assert!("hvf".parse::<Accel>().is_err());
    }

    #[tokio::test]
    async fn no_image_means_tcg_and_demotion_sticks() {
        let bin = PathBuf::from("/nonexistent/qemu-for-this-test");
        let r = probe(&bin, None, Duration::from_secs(1)).await;
        assert_eq!(r.accel, Accel::Tcg);
        assert!(r.reason.contains("no guest image"), "{}", r.reason);
        let key: Key = (PathBuf::from("/nonexistent/qemu-demoted"), None);
        remember(
            key.clone(),
            ProbeResult {
                accel: Accel::Kvm,
                reason: "test".into(),
            },
        );
        demote_to_tcg("kvm internal error");
        assert_eq!(cached(&key).unwrap().accel, Accel::Tcg);
    }
}
