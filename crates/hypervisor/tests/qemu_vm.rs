//! The QEMU driver on real virtual machines (TCG unless KVM works here).
//!
//! The guest is the project's image in `guest/out` (built by
//! `guest/build-image.sh` when missing; `LIFEBOAT_GUEST_DIR` overrides the
//! directory). Without `qemu-system-x86_64` the tests fail, saying so.
//! `LIFEBOAT_ACCEL` (auto, kvm, tcg) picks the accelerator; auto probes by
//! booting the guest under KVM. Tests take turns (one lock) so that at most
//! two VMs run at a time on a 2-core machine.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{config, guest_dir, Reaper};
use lifeboat_core::PowerState;
use lifeboat_hypervisor::qemu::{Accel, QemuDriver};
use lifeboat_hypervisor::{HvError, Hypervisor, ImageRef, VmSize, VmSpec};

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "lifeboat_hypervisor=info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// `LIFEBOAT_ACCEL` (auto, kvm, tcg; default auto).
fn accel_from_env() -> Accel {
    std::env::var("LIFEBOAT_ACCEL")
        .unwrap_or_default()
        .parse()
        .expect("LIFEBOAT_ACCEL")
}

fn image(dir: &Path) -> ImageRef {
    common::image(dir, None)
}

/// The tests' VM: a 1 GiB root and a 1 GiB ephemeral disk.
fn spec(name: &str, image: ImageRef) -> VmSpec {
    let mut s = common::spec(name, image, 1, ("52:54:00:12:34:56", "10.0.0.5"));
    s.size.ephemeral_gb = 1;
    s
}

async fn driver(state: &Path, host: &str) -> QemuDriver {
    let d = QemuDriver::new(config(state, host, &guest_dir()))
        .await
        .expect("driver");
    eprintln!("accelerator: {} ({})", d.accel().name(), d.accel_reason());
    d
}

async fn power(d: &QemuDriver, name: &str) -> PowerState {
    d.status(name).await.unwrap().power_state
}

fn qemu_img(args: &[&str]) -> String {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn virtual_size(path: &Path) -> u64 {
    let info: serde_json::Value = serde_json::from_str(&qemu_img(&[
        "info",
        "-U",
        "--output=json",
        &path.to_string_lossy(),
    ]))
    .unwrap();
    info["virtual-size"].as_u64().unwrap()
}

fn qemu_io(path: &Path, cmd: &str) -> bool {
    Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", cmd, &path.to_string_lossy()])
        .output()
        .map(|o| o.status.success() && !String::from_utf8_lossy(&o.stdout).contains("fail"))
        .unwrap_or(false)
}

fn cmdline_of(pid: u32) -> String {
    String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap())
        .replace('\0', " ")
}

async fn wait_console(d: &QemuDriver, name: &str, needle: &str, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        let out = d.console_output(name, None).await.unwrap();
        if out.contains(needle) || Instant::now() > end {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_of_one_real_vm() {
    init_tracing();
    let gdir = guest_dir();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let _reaper = Reaper(tmp.path().to_path_buf());
    let d = driver(tmp.path(), "host-a").await;
    let name = "instance-00000001";
    let s = spec(name, image(&gdir));

    // Define (idempotent), wrong-state errors, start (idempotent) until ready.
    d.define(&s).await.unwrap();
    d.define(&s).await.unwrap();
    let vm_dir = d.vm_dir(name);
    assert!(vm_dir.join("spec.json").is_file());
    assert_eq!(virtual_size(&vm_dir.join("root.qcow2")), 1 << 30);
    assert_eq!(virtual_size(&vm_dir.join("ephemeral.qcow2")), 1 << 30);
    assert_eq!(power(&d, name).await, PowerState::Shutdown);
    assert!(matches!(d.pause(name).await, Err(HvError::InvalidState(_))));
    assert!(matches!(
        d.reboot(name, false).await,
        Err(HvError::InvalidState(_))
    ));
    let t = Instant::now();
    d.start(name).await.unwrap();
    eprintln!("boot to ready: {:?} ({})", t.elapsed(), d.accel().name());
    d.start(name).await.unwrap();
    let st = d.status(name).await.unwrap();
    assert_eq!(st.power_state, PowerState::Running);
    assert!(st.guest_ready);
    let pid = st.pid.unwrap();
    let cmd = cmdline_of(pid);
    assert!(cmd.contains("-machine pc"), "{cmd}");
    assert!(cmd.contains("mac=52:54:00:12:34:56"), "{cmd}");
    assert_eq!(d.list().await.unwrap().len(), 1);

    // Console output.
    let out = d.console_output(name, None).await.unwrap();
    assert!(out.contains("LIFEBOAT-READY"), "{out}");
    let last2 = d.console_output(name, Some(2)).await.unwrap();
    assert_eq!(last2.lines().count(), 2);

    // Pause / unpause.
    d.pause(name).await.unwrap();
    d.pause(name).await.unwrap();
    assert_eq!(power(&d, name).await, PowerState::Paused);
    assert!(matches!(
        d.crash_dump(name).await,
        Err(HvError::InvalidState(_))
    ));
    d.unpause(name).await.unwrap();
    d.unpause(name).await.unwrap();
    assert_eq!(power(&d, name).await, PowerState::Running);

    // Guest agent: password and maintenance.
    d.set_password(name, "root", "s3cret-Pa55").await.unwrap();
    let out = d.run_maintenance(name, "self-test").await.unwrap();
    assert!(out.contains("kernel:"), "{out}");
    assert!(d.run_maintenance(name, "no-such-procedure").await.is_err());

    // Crash dump: an NMI the guest kernel reports on the console.
    d.crash_dump(name).await.unwrap();
    let out = wait_console(&d, name, "NMI received", 20).await;
    assert!(out.contains("NMI received"), "{out}");

    // Soft reboot (guest agent) and hard reboot (reset): ready again.
    let t = Instant::now();
    d.reboot(name, false).await.unwrap();
    eprintln!("soft reboot: {:?}", t.elapsed());
    assert!(d.status(name).await.unwrap().guest_ready);
    let t = Instant::now();
    d.reboot(name, true).await.unwrap();
    eprintln!("hard reboot: {:?}", t.elapsed());
    assert_eq!(d.pid(name), Some(pid), "a reset keeps the process");

    // Suspend (RAM to a file, process gone) and resume (guest keeps going).
    let t = Instant::now();
    d.suspend(name).await.unwrap();
    eprintln!("suspend: {:?}", t.elapsed());
    d.suspend(name).await.unwrap();
    assert_eq!(power(&d, name).await, PowerState::Suspended);
    assert_eq!(d.pid(name), None);
    assert!(vm_dir.join("vmstate").is_file());
    assert!(matches!(d.start(name).await, Err(HvError::InvalidState(_))));
    let t = Instant::now();
    d.resume(name).await.unwrap();
    eprintln!("resume: {:?}", t.elapsed());
    d.resume(name).await.unwrap();
    assert_eq!(power(&d, name).await, PowerState::Running);
    assert!(!vm_dir.join("vmstate").exists());
    d.set_password(name, "root", "after-resume").await.unwrap();

    // Live snapshot (blockdev-backup) of the running VM, then one of the
    // paused VM that must equal the disk in use.
    let snaps = tmp.path().join("snaps");
    let live = snaps.join("live.qcow2");
    let t = Instant::now();
    let info = d
        .snapshot_disk(name, &live.to_string_lossy())
        .await
        .unwrap();
    eprintln!("live snapshot: {:?}", t.elapsed());
    assert_eq!(info.format, "qcow2");
    assert!(info.size > 0);
    assert_eq!(virtual_size(&live), 1 << 30);
    let root = vm_dir.join("root.qcow2");
    d.pause(name).await.unwrap();
    d.snapshot_disk(name, &live.to_string_lossy())
        .await
        .unwrap();
    qemu_img(&[
        "compare",
        "-U",
        &live.to_string_lossy(),
        &root.to_string_lossy(),
    ]);
    d.unpause(name).await.unwrap();

    // Graceful stop (ACPI) then idempotent stop.
    let t = Instant::now();
    d.stop(name, 30).await.unwrap();
    eprintln!("acpi stop: {:?}", t.elapsed());
    d.stop(name, 30).await.unwrap();
    assert_eq!(power(&d, name).await, PowerState::Shutdown);
    assert_eq!(d.pid(name), None);
    let out = d.console_output(name, None).await.unwrap();
    assert!(out.contains("powered off"), "{out}");

    // Stopped snapshot (qemu-img convert) after writing a pattern.
    assert!(qemu_io(&root, "write -P 0xab 0 1M"));
    let cold = snaps.join("cold.qcow2");
    d.snapshot_disk(name, &cold.to_string_lossy())
        .await
        .unwrap();
    qemu_img(&["compare", &cold.to_string_lossy(), &root.to_string_lossy()]);
    assert!(qemu_io(&cold, "read -P 0xab 0 1M"));

    // Rebuild: a fresh root disk (the pattern is gone), same identity.
    d.rebuild(name, &image(&gdir)).await.unwrap();
    assert!(
        !qemu_io(&root, "read -P 0xab 0 1M"),
        "old data survived the rebuild"
    );
    assert_eq!(power(&d, name).await, PowerState::Shutdown);

    // Resize: bigger disk and more RAM/vCPUs on the next boot; revert, then
    // resize again and confirm.
    let bigger = VmSize {
        vcpus: 2,
        ram_mb: 160,
        disk_gb: 2,
        ephemeral_gb: 1,
        swap_mb: 64,
    };
    assert!(qemu_io(&root, "write -P 0xcd 0 1M"));
    d.resize(name, &bigger).await.unwrap();
    assert_eq!(virtual_size(&root), 2 << 30);
    assert!(vm_dir.join("root.pre-resize.qcow2").is_file());
    assert!(vm_dir.join("swap.qcow2").is_file());
    assert!(matches!(
        d.resize(name, &s.size).await,
        Err(HvError::InvalidState(_))
    ));
    d.start(name).await.unwrap();
    let cmd = cmdline_of(d.pid(name).unwrap());
    assert!(cmd.contains("-m 160") && cmd.contains("-smp 2"), "{cmd}");
    assert!(cmd.contains("swap.qcow2"), "{cmd}");
    d.stop(name, 0).await.unwrap();
    d.revert_resize(name).await.unwrap();
    assert_eq!(virtual_size(&root), 1 << 30);
    assert!(qemu_io(&root, "read -P 0xcd 0 1M"), "the old disk is back");
    assert!(!vm_dir.join("root.pre-resize.qcow2").exists());
    d.resize(name, &bigger).await.unwrap();
    d.confirm_resize(name).await.unwrap();
    d.confirm_resize(name).await.unwrap();
    assert!(!vm_dir.join("root.pre-resize.qcow2").exists());
    assert_eq!(virtual_size(&root), 2 << 30);

    // Rescue: the rescue image boots with the server's disk as the second
    // disk; unrescue boots the server's own disk again.
    d.start(name).await.unwrap();
    d.rescue(name, &image(&gdir)).await.unwrap();
    let cmd = cmdline_of(d.pid(name).unwrap());
    let (r, s_root) = (
        cmd.find("rescue.qcow2").unwrap(),
        cmd.find("root.qcow2").unwrap(),
    );
    assert!(r < s_root, "rescue disk first: {cmd}");
    assert!(d.status(name).await.unwrap().guest_ready);
    d.unrescue(name).await.unwrap();
    let cmd = cmdline_of(d.pid(name).unwrap());
    assert!(!cmd.contains("rescue.qcow2"), "{cmd}");
    assert!(!vm_dir.join("rescue.qcow2").exists());

    // Offload: only when stopped; the disks stay; a new define brings it back.
    assert!(matches!(
        d.offload(name).await,
        Err(HvError::InvalidState(_))
    ));
    d.stop(name, 0).await.unwrap();
    d.offload(name).await.unwrap();
    assert!(matches!(d.start(name).await, Err(HvError::InvalidState(_))));
    assert!(root.is_file());
    d.define(&s).await.unwrap();
    d.start(name).await.unwrap();

    // Destroy (idempotent).
    d.destroy(name).await.unwrap();
    d.destroy(name).await.unwrap();
    assert!(!vm_dir.exists());
    assert!(matches!(d.status(name).await, Err(HvError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readoption_and_a_vm_killed_outside() {
    init_tracing();
    let gdir = guest_dir();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let _reaper = Reaper(tmp.path().to_path_buf());
    let name = "instance-00000002";
    let pid = {
        let d = driver(tmp.path(), "host-a").await;
        d.define(&spec(name, image(&gdir))).await.unwrap();
        d.start(name).await.unwrap();
        d.pid(name).unwrap()
    };
    // A new driver instance (a restarted host agent) re-adopts the VM.
    let d = driver(tmp.path(), "host-a").await;
    let st = d.status(name).await.unwrap();
    assert_eq!(st.power_state, PowerState::Running);
    assert_eq!(st.pid, Some(pid));
    assert!(st.guest_ready);
    d.set_password(name, "root", "readopted").await.unwrap();
    d.pause(name).await.unwrap();
    d.unpause(name).await.unwrap();

    // Killed outside Lifeboat: noticed as not running, and can start again.
    assert!(Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let end = Instant::now() + Duration::from_secs(10);
    while d.pid(name).is_some() && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = d.status(name).await.unwrap();
    assert!(
        matches!(st.power_state, PowerState::Crashed | PowerState::Shutdown),
        "{st:?}"
    );
    assert_eq!(st.pid, None);
    assert!(!st.guest_ready);
    d.start(name).await.unwrap();
    assert_eq!(power(&d, name).await, PowerState::Running);

    // A guest that powers itself off is reported shut down, not crashed.
    d.stop(name, 30).await.unwrap();
    assert_eq!(power(&d, name).await, PowerState::Shutdown);
    d.destroy(name).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_cold_migration_between_two_drivers() {
    init_tracing();
    let gdir = guest_dir();
    let _turn = TURN.lock().await;
    let tmp_a = tempfile::tempdir().unwrap();
    let tmp_b = tempfile::tempdir().unwrap();
    let _ra = Reaper(tmp_a.path().to_path_buf());
    let _rb = Reaper(tmp_b.path().to_path_buf());
    let a = driver(tmp_a.path(), "host-a").await;
    let b = driver(tmp_b.path(), "host-b").await;
    let name = "instance-00000003";
    let s = spec(name, image(&gdir));
    a.define(&s).await.unwrap();
    // Data on a disk (the guest leaves the ephemeral disk alone) that must
    // arrive at the destination.
    assert!(qemu_io(
        &a.vm_dir(name).join("ephemeral.qcow2"),
        "write -P 0x77 1M 1M"
    ));
    a.start(name).await.unwrap();

    // Live: A → B while the guest runs.
    let t = Instant::now();
    let target = b.prepare_incoming(&s).await.unwrap();
    assert_eq!(target.host, "host-b");
    assert_eq!(b.prepare_incoming(&s).await.unwrap(), target);
    a.migrate_to(name, &target).await.unwrap();
    b.finish_incoming(name).await.unwrap();
    eprintln!("live migration: {:?}", t.elapsed());
    assert!(matches!(a.status(name).await, Err(HvError::NotFound(_))));
    let st = b.status(name).await.unwrap();
    assert_eq!(st.power_state, PowerState::Running);
    if let Err(e) = b.set_password(name, "root", "migrated").await {
        let out = b.console_output(name, Some(30)).await.unwrap();
        panic!("guest agent after migration: {e}\nconsole:\n{out}");
    }
    assert!(b.status(name).await.unwrap().guest_ready);
    let out = b.run_maintenance(name, "self-test").await.unwrap();
    assert!(out.contains("kernel:"), "{out}");

    // Cold: B → A while stopped (disks copied over NBD), then boot on A.
    b.stop(name, 0).await.unwrap();
    let beph = b.vm_dir(name).join("ephemeral.qcow2");
    assert!(
        qemu_io(&beph, "read -P 0x77 1M 1M"),
        "mirrored during live migration"
    );
    assert!(qemu_io(&beph, "write -P 0x5a 4M 1M"));
    let target = a.prepare_incoming(&s).await.unwrap();
    b.migrate_to(name, &target).await.unwrap();
    b.migrate_to(name, &target).await.unwrap();
    assert!(matches!(b.status(name).await, Err(HvError::NotFound(_))));
    a.start(name).await.unwrap();
    assert_eq!(power(&a, name).await, PowerState::Running);
    a.stop(name, 0).await.unwrap();
    let aeph = a.vm_dir(name).join("ephemeral.qcow2");
    assert!(qemu_io(&aeph, "read -P 0x5a 4M 1M"));
    assert!(qemu_io(&aeph, "read -P 0x77 1M 1M"));
    a.destroy(name).await.unwrap();
}

/// KVM forced on: where KVM runs the guest, it boots under KVM; where it
/// cannot (this project's nested kvm-pvm machines, or no usable /dev/kvm),
/// the start fails within the KVM boot deadline with a fault that says why,
/// instead of hanging until the 120 s ready timeout, and the host falls back
/// to TCG for the next boot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_kvm_fails_fast_and_falls_back_to_tcg() {
    init_tracing();
    let gdir = guest_dir();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let _reaper = Reaper(tmp.path().to_path_buf());
    let mut cfg = config(tmp.path(), "host-k", &gdir);
    cfg.accel = Accel::Kvm;
    cfg.kvm_ready_timeout = Duration::from_secs(20);
    let d = QemuDriver::new(cfg).await.expect("driver");
    assert_eq!(d.accel(), Accel::Kvm);
    assert_eq!(d.host_info().await.unwrap().accelerator, "kvm");
    let name = "instance-0000000a";
    let mut s = spec(name, image(&gdir));
    s.size.ephemeral_gb = 0;
    d.define(&s).await.unwrap();
    let t = Instant::now();
    match d.start(name).await {
        Ok(()) => {
            // This host's KVM runs the guest: nothing to fall back from.
            eprintln!("kvm works here: booted in {:?}", t.elapsed());
            assert_eq!(d.accel(), Accel::Kvm);
            let cmd = cmdline_of(d.pid(name).unwrap());
            assert!(cmd.contains("-accel kvm"), "{cmd}");
        }
        Err(e) => {
            let took = t.elapsed();
            eprintln!("kvm failed after {took:?}: {e}");
            assert!(took < Duration::from_secs(40), "took {took:?}: {e}");
            let text = e.to_string();
            assert!(
                text.contains("KVM") && text.contains("TCG"),
                "the fault says why: {text}"
            );
            assert_eq!(d.accel(), Accel::Tcg);
            let info = d.host_info().await.unwrap();
            assert_eq!(info.accelerator, "tcg", "the host reports the fallback");
            assert!(d.accel_reason().contains("KVM"), "{}", d.accel_reason());
            // The failed VM's qemu is gone; the next boot uses TCG and works.
            assert_eq!(d.pid(name), None);
            let st = d.status(name).await.unwrap();
            assert_eq!(st.power_state, PowerState::Crashed);
            d.start(name).await.unwrap();
            let cmd = cmdline_of(d.pid(name).unwrap());
            assert!(cmd.contains("-accel tcg"), "{cmd}");
            assert_eq!(power(&d, name).await, PowerState::Running);
            // A driver made later in this process starts with TCG too.
            let tmp2 = tempfile::tempdir().unwrap();
            let d2 = QemuDriver::new(config(tmp2.path(), "host-k2", &gdir))
                .await
                .unwrap();
            if accel_from_env() == Accel::Auto {
                assert_eq!(d2.accel(), Accel::Tcg);
            }
        }
    }
    d.destroy(name).await.unwrap();
}

/// A guest kernel panic after boot reaches the host through pvpanic: the
/// VM is reported crashed at once, and a hard reboot brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_panic_is_seen_through_pvpanic() {
    init_tracing();
    let gdir = guest_dir();
    let _turn = TURN.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let _reaper = Reaper(tmp.path().to_path_buf());
    let d = driver(tmp.path(), "host-p").await;
    let name = "instance-0000000b";
    let mut img = image(&gdir);
    // An NMI of unknown reason panics the kernel.
    img.cmdline = Some("unknown_nmi_panic".into());
    let mut s = spec(name, img);
    s.size.ephemeral_gb = 0;
    d.define(&s).await.unwrap();
    d.start(name).await.unwrap();
    d.crash_dump(name).await.unwrap();
    let t = Instant::now();
    while power(&d, name).await != PowerState::Crashed {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no guest-panicked state; console:\n{}",
            d.console_output(name, Some(20)).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // (The panic text may never reach the console: pvpanic stops the VM
    // before the kernel flushes it.)
    eprintln!("panic seen after {:?}", t.elapsed());
    assert!(matches!(
        d.set_password(name, "root", "x").await,
        Err(HvError::InvalidState(_))
    ));
    d.reboot(name, true).await.unwrap();
    assert_eq!(power(&d, name).await, PowerState::Running);
    d.destroy(name).await.unwrap();
}

/// Without a usable /dev/kvm (bind-mounted over by /dev/null in a private
/// mount namespace) the probe picks TCG and says why. The test runs itself
/// again inside `unshare -m`; the inner run does the probe.
#[test]
fn probe_picks_tcg_without_kvm() {
    const INNER: &str = "LIFEBOAT_TEST_PROBE_INNER";
    let gdir = guest_dir();
    if std::env::var_os(INNER).is_some() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let mut cfg = config(tmp.path(), "host-n", &gdir);
        cfg.accel = Accel::Auto;
        let d = rt.block_on(QemuDriver::new(cfg)).unwrap();
        println!(
            "PROBE-RESULT accel={} reason={}",
            d.accel().name(),
            d.accel_reason()
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount --bind /dev/null /dev/kvm && exec \"$0\" --exact probe_picks_tcg_without_kvm --nocapture --test-threads=1",
        ])
        .arg(&exe)
        .env(INNER, "1")
        .output()
        .expect("run unshare (util-linux)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "unshare -m needs root (CAP_SYS_ADMIN): {}\n{stdout}\n{stderr}",
        out.status
    );
    let line = stdout
        .lines()
        .find_map(|l| l.find("PROBE-RESULT").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no probe result:\n{stdout}\n{stderr}"));
    assert!(line.contains("accel=tcg"), "{line}");
    assert!(line.contains("kvm"), "the reason names kvm: {line}");
}
