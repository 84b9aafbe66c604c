//! Disk images through `qemu-img`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::{HvError, HvResult};

/// Facts from `qemu-img info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskInfo {
    /// Format (`qcow2`, `raw`).
    pub format: String,
    /// Virtual size in bytes.
    pub virtual_size: u64,
    /// Bytes used on the host.
    pub actual_size: u64,
    /// Backing file, if any.
    pub backing: Option<String>,
}

/// Runs `qemu-img` with `args`; returns stdout, or an error with stderr.
pub async fn qemu_img(args: &[&str]) -> HvResult<String> {
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        Command::new("qemu-img")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| HvError::Timeout(format!("qemu-img {}", args.join(" "))))?
    .map_err(|e| HvError::Other(format!("qemu-img: {e}")))?;
    if !out.status.success() {
        return Err(HvError::Other(format!(
            "qemu-img {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

/// `qemu-img info` of `path`; `-U` (no lock) so it works on disks in use.
pub async fn info(path: &Path) -> HvResult<DiskInfo> {
    let out = qemu_img(&["info", "-U", "--output=json", s(path)]).await?;
    let v: Value = serde_json::from_str(&out)
        .map_err(|e| HvError::Other(format!("qemu-img info {}: {e}", path.display())))?;
    Ok(DiskInfo {
        format: v["format"].as_str().unwrap_or("raw").to_string(),
        virtual_size: v["virtual-size"].as_u64().unwrap_or(0),
        actual_size: v["actual-size"].as_u64().unwrap_or(0),
        backing: v["full-backing-filename"]
            .as_str()
            .or(v["backing-filename"].as_str())
            .map(str::to_string),
    })
}

/// Creates an empty qcow2 of `size` bytes.
pub async fn create(path: &Path, size: u64) -> HvResult<()> {
    qemu_img(&["create", "-q", "-f", "qcow2", s(path), &size.to_string()]).await?;
    Ok(())
}

/// Creates a qcow2 overlay of `backing`; its size is at least `min_size`.
pub async fn create_overlay(path: &Path, backing: &Path, min_size: u64) -> HvResult<()> {
    let backing = std::fs::canonicalize(backing)
        .map_err(|e| HvError::Other(format!("image {}: {e}", backing.display())))?;
    let b = info(&backing).await?;
    let size = b.virtual_size.max(min_size);
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        &b.format,
        "-b",
        s(&backing),
        s(path),
        &size.to_string(),
    ])
    .await?;
    Ok(())
}

/// Copies `src` (any format, flattening backing files) to a new qcow2 `dest`.
pub async fn convert_to_qcow2(src: &Path, dest: &Path) -> HvResult<()> {
    let tmp = tmp_path(dest);
    qemu_img(&["convert", "-U", "-O", "qcow2", s(src), s(&tmp)]).await?;
    std::fs::rename(&tmp, dest).map_err(|e| HvError::Other(format!("{}: {e}", dest.display())))
}

/// Grows `path` to `size` bytes (never shrinks).
pub async fn grow(path: &Path, size: u64) -> HvResult<()> {
    let i = info(path).await?;
    if size > i.virtual_size {
        qemu_img(&["resize", "-q", s(path), &size.to_string()]).await?;
    }
    Ok(())
}

/// `dest.tmp` beside `dest`.
pub fn tmp_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    dest.with_file_name(name)
}

/// GiB → bytes.
pub fn gib(n: u64) -> u64 {
    n << 30
}

/// MiB → bytes.
pub fn mib(n: u64) -> u64 {
    n << 20
}
