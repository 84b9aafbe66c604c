//! Block jobs and migration: live disk backups (`blockdev-backup`), RAM
//! state to a file (suspend) and live migration between two drivers over
//! 127.0.0.1 with the disks mirrored to the destination's NBD exports.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::process;
use super::qmp::Qmp;
use super::{console, disk, other, qmp_err, DriverState, QemuDriver};
use crate::{HvError, HvResult, MigrationTarget, VmSpec};

const JOB_TIMEOUT: Duration = Duration::from_secs(600);

/// Sets the bandwidth and runs `migrate uri` to completion.
pub(super) async fn run_migration(
    d: &QemuDriver,
    q: &mut Qmp,
    name: &str,
    uri: &str,
) -> HvResult<()> {
    q.execute(
        "migrate-set-parameters",
        Some(json!({"max-bandwidth": d.inner.cfg.migration_bandwidth, "downtime-limit": 300})),
    )
    .await
    .map_err(|e| qmp_err(name, e))?;
    q.execute("migrate", Some(json!({"uri": uri})))
        .await
        .map_err(|e| qmp_err(name, e))?;
    let end = Instant::now() + JOB_TIMEOUT;
    loop {
        let m = q
            .execute("query-migrate", None)
            .await
            .map_err(|e| qmp_err(name, e))?;
        match m["status"].as_str().unwrap_or("") {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                return Err(HvError::Other(format!(
                    "{name}: migration {}: {}",
                    m["status"],
                    m["error-desc"].as_str().unwrap_or("")
                )))
            }
            _ => {}
        }
        if Instant::now() >= end {
            let _ = q.execute("migrate_cancel", None).await;
            return Err(HvError::Timeout(format!("{name}: migration to {uri}")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn job_done(ev: &Value, job: &str) -> bool {
    ev["data"]["device"] == job || ev["data"]["id"] == job
}

/// Waits for `BLOCK_JOB_COMPLETED`/`CANCELLED` of `job`; errors if it failed.
pub(super) async fn wait_job_end(q: &mut Qmp, name: &str, job: &str) -> HvResult<()> {
    let end = Instant::now() + JOB_TIMEOUT;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let ev = q.next_event(left).await.map_err(|e| qmp_err(name, e))?;
        let kind = ev["event"].as_str().unwrap_or("");
        if !job_done(&ev, job) {
            continue;
        }
        match kind {
            "BLOCK_JOB_COMPLETED" | "BLOCK_JOB_CANCELLED" => {
                if let Some(err) = ev["data"]["error"].as_str() {
                    return Err(HvError::Other(format!("{name}: job {job}: {err}")));
                }
                return Ok(());
            }
            "BLOCK_JOB_ERROR" => {
                return Err(HvError::Other(format!("{name}: job {job}: {}", ev["data"])))
            }
            _ => {}
        }
    }
}

/// A crash-consistent copy of the running VM's root disk to `dest` (qcow2)
/// with a `blockdev-backup sync=full` job; the guest agent freezes
/// filesystems around the job start where it can.
pub(super) async fn live_backup(d: &QemuDriver, name: &str, dest: &Path) -> HvResult<()> {
    let dir = d.dir(name);
    let vsize = disk::info(&dir.join("root.qcow2")).await?.virtual_size;
    let tmp = disk::tmp_path(dest);
    let _ = std::fs::remove_file(&tmp);
    disk::create(&tmp, vsize).await?;
    let node = format!("snap{}", rand::random::<u32>());
    let mut q = d.qmp(name).await?;
    q.execute(
        "blockdev-add",
        Some(json!({
            "driver": "qcow2", "node-name": node,
            "file": {"driver": "file", "filename": tmp},
        })),
    )
    .await
    .map_err(|e| qmp_err(name, e))?;
    let frozen = d
        .ga(name, "fsfreeze", json!({}), Duration::from_secs(3))
        .await
        .is_ok();
    let started = q
        .execute(
            "blockdev-backup",
            Some(json!({
                "job-id": node, "device": "root", "target": node, "sync": "full",
                "x-perf": {"use-copy-range": true},
            })),
        )
        .await;
    if frozen {
        let _ = d
            .ga(name, "fsthaw", json!({}), Duration::from_secs(3))
            .await;
    }
    let res = match started {
        Ok(_) => wait_job_end(&mut q, name, &node).await,
        Err(e) => Err(qmp_err(name, e)),
    };
    let _ = q
        .execute("blockdev-del", Some(json!({"node-name": node})))
        .await;
    match res {
        Ok(()) => std::fs::rename(&tmp, dest).map_err(other),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Parses `nbd:HOST:PORT`.
fn parse_nbd(s: &str) -> HvResult<(String, u16)> {
    let rest = s
        .strip_prefix("nbd:")
        .ok_or_else(|| HvError::Other(format!("not an nbd target: {s}")))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| HvError::Other(format!("bad nbd target: {s}")))?;
    let port = port
        .parse()
        .map_err(|_| HvError::Other(format!("bad nbd port: {s}")))?;
    Ok((host.to_string(), port))
}

/// Destination side: defines the VM with empty disks of the right sizes,
/// starts `qemu -incoming tcp:ADDR:P -S` and exports its disks over NBD
/// so the source can copy them (live mirror or cold `qemu-img convert`).
pub(super) async fn prepare_incoming(d: &QemuDriver, spec: &VmSpec) -> HvResult<MigrationTarget> {
    let name = &spec.name;
    let dir = d.dir(name);
    if let Ok((_, st)) = d.load(name) {
        match &st.incoming {
            Some(t) if process::running_pid(&dir).is_some() => return Ok(t.clone()),
            Some(_) => {}
            None => {
                return Err(HvError::InvalidState(format!(
                    "{name} already exists on {}",
                    d.inner.cfg.hostname
                )))
            }
        }
        d.kill_vm(name).await?;
        std::fs::remove_dir_all(&dir).map_err(other)?;
    } else if dir.exists() {
        // A half-made definition.
        d.kill_vm(name).await?;
        std::fs::remove_dir_all(&dir).map_err(other)?;
    }
    std::fs::create_dir_all(&dir).map_err(other)?;
    let root_size = match (&spec.root_disk, &spec.image.disk) {
        (Some(r), _) => disk::info(Path::new(r)).await?.virtual_size,
        (None, Some(img)) => disk::info(Path::new(img)).await?.virtual_size,
        (None, None) => 0,
    };
    disk::create(&dir.join("root.qcow2"), d.root_size(spec, root_size)).await?;
    d.make_extra_disks(spec).await?;
    let addr = d.inner.cfg.migration_address.clone();
    let mig_port = process::free_port(&addr)?;
    let nbd_port = process::free_port(&addr)?;
    let target = MigrationTarget {
        host: d.inner.cfg.hostname.clone(),
        uri: format!("tcp:{addr}:{mig_port}"),
        disk: format!("nbd:{addr}:{nbd_port}"),
    };
    let mut st = DriverState {
        incoming: Some(target.clone()),
        ..DriverState::default()
    };
    d.save_state(name, &st)?;
    d.save_spec(spec)?;
    let mut launch = d.launch_for(spec, &st);
    launch.incoming = Some(target.uri.clone());
    launch.start_paused = true;
    console::append_line(&dir, "[lifeboat] waiting for an incoming migration");
    launch.spawn().await?;
    let mut q = d.qmp(name).await?;
    let r = async {
        q.execute(
            "nbd-server-start",
            Some(json!({"addr": {"type": "inet",
                "data": {"host": addr, "port": nbd_port.to_string()}}})),
        )
        .await?;
        for slot in &launch.disks {
            q.execute(
                "block-export-add",
                Some(json!({"type": "nbd", "id": format!("exp-{}", slot.node),
                    "node-name": slot.node, "name": slot.node, "writable": true})),
            )
            .await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = r {
        st.incoming = None;
        let _ = d.save_state(name, &st);
        drop(q);
        let _ = d.kill_vm(name).await;
        return Err(qmp_err(name, e));
    }
    tracing::info!(vm = %name, uri = %target.uri, disk = %target.disk, "waiting for incoming migration");
    Ok(target)
}

/// Source side: copies every disk to the destination's NBD exports and,
/// when the VM runs, migrates its RAM and device state; the local qemu is
/// left in `postmigrate` for the caller to end.
pub(super) async fn migrate_out(
    d: &QemuDriver,
    spec: &VmSpec,
    target: &MigrationTarget,
    live: bool,
) -> HvResult<()> {
    let name = &spec.name;
    let (host, port) = parse_nbd(&target.disk)?;
    let slots = d.server_disks(spec);
    let started = Instant::now();
    if !live {
        for s in &slots {
            let url = format!("nbd://{host}:{port}/{}", s.node);
            let src = disk::info(&s.path).await?;
            let dst = disk::info(Path::new(&url)).await?;
            let mut from = s.path.clone();
            if src.virtual_size > dst.virtual_size {
                tracing::warn!(vm = %name, disk = %s.node, "destination disk is smaller: truncating");
                from = d.dir(name).join(format!("{}.cut.qcow2", s.node));
                let _ = std::fs::remove_file(&from);
                disk::qemu_img(&[
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-F",
                    "qcow2",
                    "-b",
                    &s.path.to_string_lossy(),
                    &from.to_string_lossy(),
                    &dst.virtual_size.to_string(),
                ])
                .await?;
            }
            disk::qemu_img(&[
                "convert",
                "-n",
                "-f",
                "qcow2",
                "-O",
                "raw",
                &from.to_string_lossy(),
                &url,
            ])
            .await?;
        }
        tracing::info!(vm = %name, took = ?started.elapsed(), "disks copied (cold migration)");
        return Ok(());
    }
    let mut q = d.qmp(name).await?;
    let mut jobs = vec![];
    let res = async {
        for s in &slots {
            let job = format!("mig-{}", s.node);
            q.execute(
                "blockdev-add",
                Some(json!({"driver": "nbd", "node-name": job,
                    "server": {"type": "inet", "host": host, "port": port.to_string()},
                    "export": s.node})),
            )
            .await
            .map_err(|e| qmp_err(name, e))?;
            q.execute(
                "blockdev-mirror",
                Some(json!({"job-id": job, "device": s.node, "target": job,
                    "sync": "full", "copy-mode": "write-blocking"})),
            )
            .await
            .map_err(|e| qmp_err(name, e))?;
            jobs.push(job);
        }
        for job in &jobs {
            let j = job.clone();
            let ev = q
                .wait_event("BLOCK_JOB_READY", JOB_TIMEOUT, move |e| job_done(e, &j))
                .await;
            if let Err(e) = ev {
                // A failed job ends with COMPLETED + error instead of READY.
                return Err(qmp_err(name, e));
            }
        }
        tracing::info!(vm = %name, took = ?started.elapsed(), "disks mirrored");
        run_migration(d, &mut q, name, &target.uri).await?;
        Ok(())
    }
    .await;
    // Ends the mirrors: after migration (source stopped) this leaves the
    // destination a complete copy; after a failure it just stops them.
    for job in &jobs {
        if q.execute("block-job-cancel", Some(json!({"device": job})))
            .await
            .is_ok()
        {
            let _ = wait_job_end(&mut q, name, job).await;
        }
        let _ = q
            .execute("blockdev-del", Some(json!({"node-name": job})))
            .await;
    }
    if res.is_err() && q.run_state().await.ok().as_deref() == Some("postmigrate") {
        let _ = q.execute("cont", None).await;
    }
    res?;
    tracing::info!(vm = %name, took = ?started.elapsed(), to = %target.uri, "live migration done");
    Ok(())
}

/// Destination side: waits for the incoming migration to land, closes the
/// NBD exports and runs the guest.
pub(super) async fn finish_incoming(d: &QemuDriver, name: &str) -> HvResult<()> {
    let dir = d.dir(name);
    let mut q = d.qmp(name).await?;
    let end = Instant::now() + JOB_TIMEOUT;
    loop {
        if process::running_pid(&dir).is_none() {
            return Err(HvError::Other(format!("{name}: incoming qemu exited")));
        }
        let m = q
            .execute("query-migrate", None)
            .await
            .map_err(|e| qmp_err(name, e))?;
        match m["status"].as_str().unwrap_or("") {
            "completed" => break,
            "failed" | "cancelled" => {
                return Err(HvError::Other(format!(
                    "{name}: incoming migration {}",
                    m["status"]
                )))
            }
            _ => {}
        }
        if Instant::now() >= end {
            return Err(HvError::Timeout(format!("{name}: incoming migration")));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let exports = q
        .execute("query-block-exports", None)
        .await
        .unwrap_or_default();
    for e in exports.as_array().into_iter().flatten() {
        let _ = q
            .execute(
                "block-export-del",
                Some(json!({"id": e["id"], "mode": "hard"})),
            )
            .await;
    }
    let _ = q.execute("nbd-server-stop", None).await;
    let rs = q.run_state().await.map_err(|e| qmp_err(name, e))?;
    if rs != "running" {
        q.execute("cont", None)
            .await
            .map_err(|e| qmp_err(name, e))?;
    }
    Ok(())
}
