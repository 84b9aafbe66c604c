//! Serve a disk image (qcow2 or raw) over NBD with `qemu-storage-daemon`, so a stopped VM's qcow2 disk can be
//! read as guest-visible bytes by [`crate::nbd::NbdReader`], and its persistent dirty bitmaps queried.
//!
//! Running VMs are exported by the QEMU driver itself (fleecing + `block-export-add`); this is for disks that
//! no QEMU process has open.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::nbd::NbdAddr;
use crate::Error;

/// A running `qemu-storage-daemon` exporting one image as NBD export `name` on a Unix socket.
/// The daemon is stopped (and a writable image flushed, bitmaps stored) on drop.
#[derive(Debug)]
pub struct QsdExport {
    child: Option<Child>,
    sock: PathBuf,
    _dir: tempfile_dir::Dir,
    /// Export name.
    pub name: String,
}

mod tempfile_dir {
    use std::path::PathBuf;

    /// A private directory removed on drop.
    #[derive(Debug)]
    pub struct Dir(pub PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl QsdExport {
    /// Export `image` (`format` = `qcow2` or `raw`) with the given persistent bitmaps.
    pub fn start(
        image: &Path,
        format: &str,
        bitmaps: &[&str],
        writable: bool,
    ) -> Result<Self, Error> {
        if !matches!(format, "qcow2" | "raw") {
            return Err(Error::Invalid(format!(
                "disk format {format:?} (qcow2 or raw)"
            )));
        }
        let dir = std::env::temp_dir().join(format!(
            "lifeboat-qsd-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let dir = tempfile_dir::Dir(dir);
        let sock = dir.0.join("nbd.sock");
        let img = image
            .to_str()
            .ok_or_else(|| Error::Invalid("image path is not UTF-8".into()))?;
        if img.contains(',') {
            return Err(Error::Invalid("image path must not contain ','".into()));
        }
        let mut export = format!(
            "type=nbd,id=e0,node-name=d0,name=vda,writable={}",
            if writable { "on" } else { "off" }
        );
        for (i, b) in bitmaps.iter().enumerate() {
            export.push_str(&format!(",bitmaps.{i}={b}"));
        }
        let mut cmd = Command::new("qemu-storage-daemon");
        cmd.arg("--blockdev")
            .arg(format!(
                "driver=file,node-name=f0,filename={img}{}",
                if writable { "" } else { ",read-only=on" }
            ))
            .arg("--blockdev")
            .arg(format!(
                "driver={format},node-name=d0,file=f0{}",
                if writable { "" } else { ",read-only=on" }
            ))
            .arg("--nbd-server")
            .arg(format!("addr.type=unix,addr.path={}", sock.display()))
            .arg("--export")
            .arg(export)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            Error::io(
                "start qemu-storage-daemon (is qemu-utils/qemu-system installed?)".into(),
                e,
            )
        })?;
        let deadline = Instant::now() + Duration::from_secs(30);
        // Ready when a client completes the handshake for the export (the socket exists before QEMU listens,
        // and the export is added after the server starts).
        let addr = NbdAddr::Unix(sock.clone());
        while crate::nbd::NbdClient::connect(&addr, "vda", None)
            .map(|c| c.disconnect())
            .is_err()
        {
            if let Ok(Some(st)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(Error::Backend(format!(
                    "qemu-storage-daemon exited ({st}): {}",
                    err.trim()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Backend(
                    "qemu-storage-daemon did not serve its NBD export within 30 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            child: Some(child),
            sock,
            _dir: dir,
            name: "vda".into(),
        })
    }

    /// Address of the NBD server.
    pub fn addr(&self) -> NbdAddr {
        NbdAddr::Unix(self.sock.clone())
    }

    /// Stop the daemon and wait for it (SIGTERM: QEMU flushes and stores persistent bitmaps).
    pub fn stop(mut self) -> Result<(), Error> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        if let Some(mut c) = self.child.take() {
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match c.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    _ => {
                        let _ = c.kill();
                        let _ = c.wait();
                        return Err(Error::Backend(
                            "qemu-storage-daemon did not stop within 30 s".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for QsdExport {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}
