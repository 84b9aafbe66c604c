//! Point-in-time reads of a running VM's root disk (pull-mode backup) and
//! the persistent dirty bitmaps that make incrementals read only what
//! changed.
//!
//! - **Fleecing.** A temporary qcow2 node whose backing is the live `root`
//!   node, plus a `blockdev-backup sync=none` job from `root` into it: before
//!   the guest overwrites a cluster, the old data is copied into the fleece
//!   node, so reading the fleece node (exported over NBD on a Unix socket in
//!   the VM directory) yields the disk as it was when the job started while
//!   the guest keeps writing. The disk is read once, by the store.
//! - **Bitmaps.** `root.qcow2` carries one persistent bitmap `lb-<gen>`
//!   recording the writes since the VM's last snapshot in the store (named
//!   in the driver state). The job start, the new bitmap's creation and the
//!   old bitmap's disabling happen in one QMP `transaction`, with the guest's
//!   filesystems frozen around it when its agent answers. The old bitmap is
//!   exported with the fleece node (NBD block status); after a successful
//!   backup it is removed, after a failed one it is enabled again and the new
//!   one merged into it, so the next incremental is still correct. A bitmap
//!   that is missing, disabled, inconsistent (qemu did not stop cleanly) or of
//!   another generation is not trusted: it is removed and the disk is read
//!   in full, and the backup says why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use super::migrate::wait_job_end;
use super::qmp::Qmp;
use super::{disk, qmp_err, QemuDriver};
use crate::{HvError, HvResult};

/// Prefix of the driver's bitmaps (other bitmaps are left alone).
pub const BITMAP_PREFIX: &str = "lb-";

/// NBD export name of the point-in-time view.
pub const EXPORT: &str = "backup";

/// A new bitmap generation name.
pub fn new_bitmap_name() -> String {
    format!("{BITMAP_PREFIX}{:08x}", rand::random::<u32>())
}

/// One bitmap on a disk, as QEMU or `qemu-img` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitmapInfo {
    /// Name.
    pub name: String,
    /// Recording writes (enabled).
    pub recording: bool,
    /// Not stored cleanly (the process holding it died).
    pub inconsistent: bool,
}

/// Splits a disk's driver bitmaps into the trusted one (`want`, when present
/// and usable) and the rest (to remove), with the reason `want` is not used.
pub fn judge(
    bitmaps: &[BitmapInfo],
    want: Option<&str>,
) -> (Option<String>, Vec<String>, Option<String>) {
    let mut trusted = None;
    let mut stale = Vec::new();
    let mut why = want.map(|w| format!("dirty bitmap {w} is missing from the disk"));
    for b in bitmaps.iter().filter(|b| b.name.starts_with(BITMAP_PREFIX)) {
        if Some(b.name.as_str()) == want {
            if b.inconsistent {
                why = Some(format!(
                    "dirty bitmap {} is inconsistent (qemu did not stop cleanly)",
                    b.name
                ));
            } else if !b.recording {
                why = Some(format!(
                    "dirty bitmap {} was not recording (an interrupted backup)",
                    b.name
                ));
            } else {
                trusted = Some(b.name.clone());
                why = None;
                continue;
            }
        }
        stale.push(b.name.clone());
    }
    (trusted, stale, why)
}

/// Bitmaps of a qcow2 file that no process has open (`qemu-img info`).
pub async fn file_bitmaps(path: &Path) -> HvResult<Vec<BitmapInfo>> {
    let out = disk::qemu_img(&["info", "-U", "--output=json", &path.to_string_lossy()]).await?;
    let v: Value = serde_json::from_str(&out)
        .map_err(|e| HvError::Other(format!("qemu-img info {}: {e}", path.display())))?;
    Ok(v["format-specific"]["data"]["bitmaps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| {
                    let flags: Vec<&str> = b["flags"]
                        .as_array()
                        .map(|f| f.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    BitmapInfo {
                        name: b["name"].as_str().unwrap_or_default().to_string(),
                        recording: flags.contains(&"auto"),
                        inconsistent: flags.contains(&"in-use"),
                    }
                })
                .collect()
        })
        .unwrap_or_default())
}

/// Removes bitmap `name` from a qcow2 file no process has open.
pub async fn file_remove_bitmap(path: &Path, name: &str) -> HvResult<()> {
    disk::qemu_img(&["bitmap", "--remove", &path.to_string_lossy(), name])
        .await
        .map(|_| ())
}

/// Adds an enabled persistent bitmap to a qcow2 file no process has open.
pub async fn file_add_bitmap(path: &Path, name: &str) -> HvResult<()> {
    disk::qemu_img(&["bitmap", "--add", &path.to_string_lossy(), name])
        .await
        .map(|_| ())
}

/// Bitmaps on node `node` of a running VM.
pub async fn node_bitmaps(q: &mut Qmp, vm: &str, node: &str) -> HvResult<Vec<BitmapInfo>> {
    let nodes = q
        .execute("query-named-block-nodes", Some(json!({"flat": true})))
        .await
        .map_err(|e| qmp_err(vm, e))?;
    let n = nodes
        .as_array()
        .and_then(|a| a.iter().find(|n| n["node-name"] == node))
        .ok_or_else(|| HvError::Other(format!("{vm}: no block node {node}")))?;
    Ok(n["dirty-bitmaps"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|b| BitmapInfo {
                    name: b["name"].as_str().unwrap_or_default().to_string(),
                    recording: b["recording"].as_bool().unwrap_or(false),
                    inconsistent: b["inconsistent"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default())
}

/// A point-in-time view of a running VM's root disk, exported over NBD.
#[derive(Debug)]
pub struct Pull {
    job: String,
    fleece: String,
    fleece_file: PathBuf,
    /// NBD server socket (export [`EXPORT`]).
    pub sock: PathBuf,
    /// Whether the guest's filesystems were frozen for the point in time.
    pub frozen: bool,
    /// Why the guest was not frozen, if it was not.
    pub freeze_note: Option<String>,
    export_up: bool,
    server_up: bool,
}

/// Freezes the guest's filesystems when its agent answers; `(frozen, note)`.
/// `thaw` must follow whenever this was called (also on error).
async fn freeze(d: &QemuDriver, vm: &str) -> (bool, Option<String>) {
    if !d.ga_alive(vm, Duration::from_secs(2)).await {
        return (
            false,
            Some("the guest agent did not answer: crash-consistent, not frozen".into()),
        );
    }
    match d
        .ga(vm, "fsfreeze", json!({}), Duration::from_secs(10))
        .await
    {
        Ok(v)
            if v["result"]["count"]
                .as_u64()
                .or(v["count"].as_u64())
                .unwrap_or(0)
                > 0 =>
        {
            (true, None)
        }
        Ok(_) => (
            false,
            Some("the guest has no freezable filesystem: crash-consistent".into()),
        ),
        Err(e) => (
            false,
            Some(format!("guest fsfreeze failed ({e}): crash-consistent")),
        ),
    }
}

/// Thaws the guest (retried: a frozen guest must never stay frozen).
async fn thaw(d: &QemuDriver, vm: &str) {
    for attempt in 0..3 {
        match d.ga(vm, "fsthaw", json!({}), Duration::from_secs(5)).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(vm = %vm, attempt, "guest fsthaw failed: {e}");
            }
        }
    }
}

/// Starts the point-in-time view: fleece node, then (guest frozen) one
/// transaction with the `sync=none` job, the new bitmap `new_bm` and the
/// disabling of `prev`; then the NBD export (with `prev` when given).
pub async fn start(
    d: &QemuDriver,
    q: &mut Qmp,
    vm: &str,
    prev: Option<&str>,
    new_bm: &str,
) -> HvResult<Pull> {
    let dir = d.dir(vm);
    let vsize = disk::info(&dir.join("root.qcow2")).await?.virtual_size;
    let tag = format!("{:08x}", rand::random::<u32>());
    let fleece_file = dir.join(format!("fleece-{tag}.qcow2"));
    disk::create(&fleece_file, vsize).await?;
    let mut p = Pull {
        job: format!("pull{tag}"),
        fleece: format!("fleece{tag}"),
        fleece_file,
        sock: dir.join("backup-nbd.sock"),
        frozen: false,
        freeze_note: None,
        export_up: false,
        server_up: false,
    };
    if let Err(e) = q
        .execute(
            "blockdev-add",
            Some(json!({
                "driver": "qcow2", "node-name": p.fleece, "backing": "root",
                "file": {"driver": "file", "filename": p.fleece_file},
            })),
        )
        .await
    {
        let _ = std::fs::remove_file(&p.fleece_file);
        return Err(qmp_err(vm, e));
    }
    let mut actions = vec![
        json!({"type": "blockdev-backup", "data": {
            "job-id": p.job, "device": "root", "target": p.fleece, "sync": "none"}}),
        json!({"type": "block-dirty-bitmap-add", "data": {
            "node": "root", "name": new_bm, "persistent": true}}),
    ];
    if let Some(b) = prev {
        actions.push(json!({"type": "block-dirty-bitmap-disable", "data": {
            "node": "root", "name": b}}));
    }
    let (frozen, note) = freeze(d, vm).await;
    let tx = q
        .execute("transaction", Some(json!({"actions": actions})))
        .await;
    // Thaw always: the point in time exists (or the transaction failed).
    thaw(d, vm).await;
    p.frozen = frozen;
    p.freeze_note = note;
    if let Err(e) = tx {
        let _ = q
            .execute("blockdev-del", Some(json!({"node-name": p.fleece})))
            .await;
        let _ = std::fs::remove_file(&p.fleece_file);
        return Err(qmp_err(vm, e));
    }
    if let Err(e) = export(q, vm, &mut p, prev).await {
        end(q, vm, p, false, prev, new_bm).await;
        return Err(e);
    }
    Ok(p)
}

async fn export(q: &mut Qmp, vm: &str, p: &mut Pull, prev: Option<&str>) -> HvResult<()> {
    let _ = std::fs::remove_file(&p.sock);
    q.execute(
        "nbd-server-start",
        // SocketAddressLegacy: the path sits under `data`.
        Some(json!({"addr": {"type": "unix", "data": {"path": p.sock}}})),
    )
    .await
    .map_err(|e| qmp_err(vm, e))?;
    p.server_up = true;
    let mut args = json!({
        "type": "nbd", "id": p.job, "node-name": p.fleece, "name": EXPORT, "writable": false,
    });
    if let Some(b) = prev {
        args["bitmaps"] = json!([b]);
    }
    q.execute("block-export-add", Some(args))
        .await
        .map_err(|e| qmp_err(vm, e))?;
    p.export_up = true;
    Ok(())
}

/// Tears the view down and settles the bitmaps: after a successful backup
/// `prev` is removed (`new_bm` now records the writes since it); after a
/// failed one `prev` records again with `new_bm` merged into it and `new_bm`
/// is removed. Errors are logged: the backup's own result stands.
pub async fn end(q: &mut Qmp, vm: &str, p: Pull, ok: bool, prev: Option<&str>, new_bm: &str) {
    let warn = |what: &str, r: Result<Value, super::qmp::QmpError>| {
        if let Err(e) = r {
            tracing::warn!(vm = %vm, "backup cleanup: {what}: {e}");
        }
    };
    if p.export_up {
        let r = q
            .execute(
                "block-export-del",
                Some(json!({"id": p.job, "mode": "hard"})),
            )
            .await;
        let deleted = r.is_ok();
        warn("block-export-del", r);
        if deleted {
            let _ = q
                .wait_event("BLOCK_EXPORT_DELETED", Duration::from_secs(10), |e| {
                    e["data"]["id"] == p.job.as_str()
                })
                .await;
        }
    }
    if p.server_up {
        let r = q.execute("nbd-server-stop", None).await;
        warn("nbd-server-stop", r);
        let _ = std::fs::remove_file(&p.sock);
    }
    let r = q
        .execute(
            "block-job-cancel",
            Some(json!({"device": p.job, "force": true})),
        )
        .await;
    if r.is_ok() {
        if let Err(e) = wait_job_end(q, vm, &p.job).await {
            tracing::warn!(vm = %vm, "backup cleanup: fleece job: {e}");
        }
    } else {
        warn("block-job-cancel", r);
    }
    let mut deleted = false;
    for _ in 0..20 {
        match q
            .execute("blockdev-del", Some(json!({"node-name": p.fleece})))
            .await
        {
            Ok(_) => {
                deleted = true;
                break;
            }
            Err(e) => {
                tracing::debug!(vm = %vm, "blockdev-del {}: {e}", p.fleece);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    if deleted {
        let _ = std::fs::remove_file(&p.fleece_file);
    } else {
        tracing::warn!(vm = %vm, "backup cleanup: fleece node {} stays until qemu exits", p.fleece);
    }
    let rm = |name: &str| json!({"node": "root", "name": name});
    if ok {
        if let Some(b) = prev {
            let r = q.execute("block-dirty-bitmap-remove", Some(rm(b))).await;
            warn("remove the previous bitmap", r);
        }
    } else {
        if let Some(b) = prev {
            let r = q.execute("block-dirty-bitmap-enable", Some(rm(b))).await;
            warn("re-enable the previous bitmap", r);
            let r = q
                .execute(
                    "block-dirty-bitmap-merge",
                    Some(json!({"node": "root", "target": b, "bitmaps": [new_bm]})),
                )
                .await;
            warn("merge the new bitmap into the previous one", r);
        }
        let r = q
            .execute("block-dirty-bitmap-remove", Some(rm(new_bm)))
            .await;
        warn("remove the new bitmap", r);
    }
}

/// Removes driver bitmaps from a running VM's root node.
pub async fn remove_node_bitmaps(q: &mut Qmp, vm: &str, names: &[String]) -> HvResult<()> {
    for n in names {
        q.execute(
            "block-dirty-bitmap-remove",
            Some(json!({"node": "root", "name": n})),
        )
        .await
        .map_err(|e| qmp_err(vm, e))?;
    }
    Ok(())
}

/// Removes a leftover fleece file (from a crashed driver).
pub fn sweep_fleece_files(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with("fleece-") && n.ends_with(".qcow2") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(name: &str, recording: bool, inconsistent: bool) -> BitmapInfo {
        BitmapInfo {
            name: name.into(),
            recording,
            inconsistent,
        }
    }

    #[test]
    fn only_the_named_recording_consistent_bitmap_is_trusted() {
        let all = [
            b("lb-1", true, false),
            b("lb-2", true, false),
            b("user", true, false),
        ];
        let (t, stale, why) = judge(&all, Some("lb-2"));
        assert_eq!(t.as_deref(), Some("lb-2"));
        assert_eq!(stale, vec!["lb-1".to_string()]);
        assert!(why.is_none());
        let (t, stale, why) = judge(&all, Some("lb-9"));
        assert!(t.is_none());
        assert_eq!(stale.len(), 2);
        assert!(why.unwrap().contains("missing"));
        let (t, _, why) = judge(&[b("lb-1", true, true)], Some("lb-1"));
        assert!(t.is_none());
        assert!(why.unwrap().contains("inconsistent"));
        let (t, _, why) = judge(&[b("lb-1", false, false)], Some("lb-1"));
        assert!(t.is_none());
        assert!(why.unwrap().contains("not recording"));
        let (t, stale, why) = judge(&all, None);
        assert!(t.is_none() && why.is_none());
        assert_eq!(stale.len(), 2);
    }
}
