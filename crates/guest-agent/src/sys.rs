//! The few C library calls std does not wrap: statvfs(3), ioctl(2) for
//! FIFREEZE/FITHAW, sync(2) and kill(2). They come from the C library std
//! already links (glibc, statically), so there is no extra dependency.

use std::ffi::{c_char, c_int, c_ulong, CString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// `struct statvfs` of glibc on 64-bit Linux (where `unsigned long` is 64 bits).
#[cfg(target_pointer_width = "64")]
#[repr(C)]
#[derive(Default)]
struct StatVfsRaw {
    f_bsize: u64,
    f_frsize: u64,
    f_blocks: u64,
    f_bfree: u64,
    f_bavail: u64,
    f_files: u64,
    f_ffree: u64,
    f_favail: u64,
    f_fsid: u64,
    f_flag: u64,
    f_namemax: u64,
    spare: [c_int; 6],
}

extern "C" {
    fn statvfs(path: *const c_char, buf: *mut StatVfsRaw) -> c_int;
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
    fn sync();
    fn kill(pid: c_int, sig: c_int) -> c_int;
}

const ST_RDONLY: u64 = 1;
/// `_IOWR('X', 119, int)` and `_IOWR('X', 120, int)`.
const FIFREEZE: c_ulong = 0xC004_5877;
const FITHAW: c_ulong = 0xC004_5878;
pub const SIGKILL: c_int = 9;

pub struct StatVfs {
    pub fragment_size: u64,
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_avail: u64,
    pub files: u64,
    pub files_free: u64,
    pub read_only: bool,
}

pub fn stat_vfs(path: &Path) -> io::Result<StatVfs> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut raw = StatVfsRaw::default();
    // SAFETY: `c` is a valid NUL-terminated string and `raw` a properly
    // laid-out, writable `struct statvfs`.
    let rc = unsafe { statvfs(c.as_ptr(), &mut raw) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = if raw.f_frsize != 0 {
        raw.f_frsize
    } else {
        raw.f_bsize
    };
    Ok(StatVfs {
        fragment_size: frsize,
        blocks: raw.f_blocks,
        blocks_free: raw.f_bfree,
        blocks_avail: raw.f_bavail,
        files: raw.f_files,
        files_free: raw.f_ffree,
        read_only: raw.f_flag & ST_RDONLY != 0,
    })
}

fn fs_ioctl(mountpoint: &Path, request: c_ulong) -> io::Result<()> {
    let dir = File::open(mountpoint)?;
    // SAFETY: FIFREEZE/FITHAW take an (ignored) int argument; the fd is open.
    let rc = unsafe { ioctl(dir.as_raw_fd(), request, 0 as c_int) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Freezes the filesystem mounted at `mountpoint` (FIFREEZE).
pub fn freeze(mountpoint: &Path) -> io::Result<()> {
    fs_ioctl(mountpoint, FIFREEZE)
}

/// Thaws the filesystem mounted at `mountpoint` (FITHAW).
pub fn thaw(mountpoint: &Path) -> io::Result<()> {
    fs_ioctl(mountpoint, FITHAW)
}

/// sync(2).
pub fn sync_all() {
    // SAFETY: no arguments, cannot fail.
    unsafe { sync() }
}

/// kill(2); a negative pid addresses a process group.
pub fn kill_pid(pid: i32, sig: c_int) -> io::Result<()> {
    // SAFETY: plain system call with integer arguments.
    if unsafe { kill(pid, sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_layout_matches_glibc() {
        assert_eq!(std::mem::size_of::<StatVfsRaw>(), 112);
        let st = stat_vfs(Path::new("/")).unwrap();
        assert!(st.fragment_size > 0);
        assert!(st.blocks_free <= st.blocks);
    }
}
