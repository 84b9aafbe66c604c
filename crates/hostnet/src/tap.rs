//! Persistent tap devices (TUNSETIFF/TUNSETPERSIST; netlink cannot create tun/tap) and opening a
//! tap's queue fd for QEMU (`-netdev tap,fd=N`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::{netns, Error};

const TUNSETIFF: libc::c_ulong = 0x400454ca;
const TUNSETPERSIST: libc::c_ulong = 0x400454cb;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_VNET_HDR: libc::c_short = 0x4000;

fn set_iff(f: &File, name: &str, flags: libc::c_short) -> io::Result<()> {
    // struct ifreq: 16 bytes of name, then the union (flags is a short at offset 16).
    let mut ifr = [0u8; 40];
    let n = name.as_bytes();
    if n.len() > 15 {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "name too long"));
    }
    ifr[..n.len()].copy_from_slice(n);
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads/writes a struct ifreq, which the 40-byte buffer covers.
    if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETIFF as _, ifr.as_mut_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn open_tun() -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
}

/// Create a persistent tap `name` inside namespace `ns` (idempotent).
pub fn create_persistent(ns: &str, name: &str) -> Result<(), Error> {
    let name = name.to_string();
    netns::run_in(ns, move || -> Result<(), Error> {
        let f = open_tun().map_err(|e| Error::Os(format!("open /dev/net/tun: {e}")))?;
        set_iff(&f, &name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
            .map_err(|e| Error::Os(format!("TUNSETIFF {name}: {e}")))?;
        // SAFETY: TUNSETPERSIST takes an int argument.
        if unsafe { libc::ioctl(f.as_raw_fd(), TUNSETPERSIST as _, 1 as libc::c_ulong) } != 0 {
            return Err(Error::Os(format!(
                "TUNSETPERSIST {name}: {}",
                io::Error::last_os_error()
            )));
        }
        Ok(())
    })?
}

/// Open a queue of tap `name` in namespace `ns` with a virtio-net header, for QEMU's
/// `-netdev tap,fd=N,vnet_hdr=on`. The fd is close-on-exec: clear that flag (or pass it with
/// `Command::pre_exec`/`dup2`) when handing it to the child.
pub fn open_queue(ns: &str, name: &str) -> Result<OwnedFd, Error> {
    let name = name.to_string();
    netns::run_in(ns, move || -> Result<OwnedFd, Error> {
        let f = open_tun().map_err(|e| Error::Os(format!("open /dev/net/tun: {e}")))?;
        set_iff(&f, &name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR)
            .map_err(|e| Error::Os(format!("attach to tap {name}: {e}")))?;
        Ok(f.into())
    })?
}
