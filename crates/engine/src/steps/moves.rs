//! The steps of resize, cold and live migration, evacuation and rebuild.

use lifeboat_core::{PowerState, TaskState, VmState};

use super::power::{PASSWORD, POWER_OFF, POWER_ON, READY};
use super::{need_image, present, set_task, size_of, step, Cx, Step};
use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;

step!(SCHEDULE_DEST = "schedule_dest", schedule_dest);
step!(RESIZE = "resize", resize);
step!(CONFIRM = "confirm", confirm);
step!(REVERT = "revert", revert);
step!(LIVE_MIGRATE = "live_migrate", live_migrate);
step!(EVACUATE = "evacuate", evacuate);
step!(REBUILD = "rebuild", rebuild);

/// The error of a move of a server that has no host.
fn no_host(s: &lifeboat_core::Server) -> crate::ComputeError {
    crate::ComputeError::Internal(format!("server {} has no host to move from", s.id))
}

/// A guest that was running runs again at the end of a move.
fn then_running(k: &WorkflowKind, mut v: Vec<&'static Step>) -> Vec<&'static Step> {
    if k.was_active() {
        v.extend([&POWER_ON, &READY]);
    }
    v
}

/// The plan of resize and cold migration.
pub(crate) fn resize_plan(k: &WorkflowKind) -> Vec<&'static Step> {
    then_running(k, vec![&SCHEDULE_DEST, &POWER_OFF, &RESIZE])
}

/// The plan of revert_resize.
pub(crate) fn revert_plan(k: &WorkflowKind) -> Vec<&'static Step> {
    then_running(k, vec![&REVERT])
}

/// The plan of rebuild: the password goes into the rebuilt guest once it runs.
pub(crate) fn rebuild_plan(k: &WorkflowKind) -> Vec<&'static Step> {
    let mut v = then_running(k, vec![&POWER_OFF, &REBUILD]);
    v.push(&PASSWORD);
    v
}

/// The plan of evacuate: a guest that was running is started on its new host.
pub(crate) fn evacuate_plan(k: &WorkflowKind) -> Vec<&'static Step> {
    let mut v = then_running(k, vec![&SCHEDULE_DEST, &EVACUATE]);
    v.push(&PASSWORD);
    v
}

/// Picks the destination (resize prefers the same host) and records it in the params.
async fn schedule_dest(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { wf, s, id, k, .. } = cx;

    if k.dest().is_none() {
        let need = match &k {
            WorkflowKind::Resize(p) => p.flavor.resources(),
            _ => s.flavor.resources(),
        };
        let current = s.host.clone();
        let dest = match k {
            // Resizing prefers the same host (allow_resize_to_same_host), and so
            // does a restore from a backup.
            WorkflowKind::Resize(_) | WorkflowKind::RestoreBackup(_) => {
                let same = match current.as_deref() {
                    Some(h) => e
                        .host_fits(h, &need, &s.flavor.resources())
                        .await
                        .then(|| h.to_string()),
                    None => None,
                };
                match same {
                    Some(h) => h,
                    None => {
                        e.schedule(&need, None, None, current.as_deref(), false, Some(&*s))
                            .await?
                            .name
                    }
                }
            }
            _ => {
                let wanted = k.host();
                e.schedule(
                    &need,
                    None,
                    wanted.as_deref(),
                    current.as_deref(),
                    wanted.is_some(),
                    Some(&*s),
                )
                .await?
                .name
            }
        };
        k.set_dest(dest)?;
        wf.params = k.store();
    }
    if matches!(k, WorkflowKind::Resize(_) | WorkflowKind::Migrate(_)) {
        e.mutate_server(id, |s| {
            set_task(s, TaskState::ResizeMigrating);
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// Resizes in place, or migrates to the destination and resizes there.
async fn resize(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let step = cx.step;
    let Cx { wf, s, id, k, .. } = cx;

    let dest = k.need_dest()?;
    let new_flavor = match &k {
        WorkflowKind::Resize(p) => p.flavor.clone(),
        _ => s.flavor.clone(),
    };
    let size = size_of(&new_flavor);
    let src = s.host.clone().ok_or_else(|| no_host(s))?;
    if dest == src {
        e.agent_for(&src)
            .await?
            .resize(&s.instance_name, &size)
            .await?;
    } else if s.source_host.is_none() {
        // Re-run after a crash: when the source no longer has the
        // VM, the migration already happened; only the resize of
        // the destination copy (idempotent) is left.
        if present(&e.agent_for(&src).await?, &s.instance_name).await? {
            e.sync_dataplane_for(&dest, Some((id, &dest))).await?;
            let mut spec = e.vm_spec(s).await?;
            spec.size = size;
            let target = e.agent_for(&dest).await?.prepare_incoming(&spec).await?;
            e.agent_for(&src)
                .await?
                .migrate_to(&s.instance_name, &target)
                .await?;
            // Kill point `resize:resize:copied:after`: the disks are on the
            // destination and gone from the source; the re-run finds the
            // source empty and only resizes the destination's copy.
            e.hang_after(wf, &format!("{step}:copied")).await;
        }
        e.agent_for(&dest)
            .await?
            .resize(&s.instance_name, &size)
            .await?;
    }
    e.hang_after(wf, step).await;
    e.mutate_server(id, |s| {
        if s.old_flavor.is_none() {
            s.old_flavor = Some(s.flavor.clone());
        }
        s.flavor = new_flavor.clone();
        if dest != src && s.source_host.is_none() {
            s.source_host = Some(src.clone());
            s.host = Some(dest.clone());
            s.node = Some(dest.clone());
        }
        set_task(s, TaskState::ResizeFinish);
        Ok(())
    })
    .await?;
    e.move_done(id).await;
    Ok(())
}

/// Drops the pre-resize disk (and the source's copy).
async fn confirm(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, id, .. } = cx;

    e.server_agent(s)
        .await?
        .confirm_resize(&s.instance_name)
        .await?;
    if let Some(src) = &s.source_host {
        let _ = e.agent_for(src).await?.destroy(&s.instance_name).await;
    }
    e.mutate_server(id, |s| {
        s.old_flavor = None;
        s.source_host = None;
        Ok(())
    })
    .await?;
    Ok(())
}

/// Returns to the old flavor (and the source host).
async fn revert(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, id, .. } = cx;

    let old = s.old_flavor.clone().unwrap_or_else(|| s.flavor.clone());
    if let Some(src) = s.source_host.clone() {
        let agent = e.server_agent(s).await?;
        let _ = agent.stop(&s.instance_name, 0).await;
        // The source gets the ports' taps back before the VM returns to it.
        e.sync_dataplane_for(&src, Some((id.as_str(), src.as_str())))
            .await?;
        let mut spec = e.vm_spec(s).await?;
        spec.size = size_of(&old);
        let target = e.agent_for(&src).await?.prepare_incoming(&spec).await?;
        agent.migrate_to(&s.instance_name, &target).await?;
    } else {
        let agent = e.server_agent(s).await?;
        let _ = agent.stop(&s.instance_name, 0).await;
        agent.revert_resize(&s.instance_name).await?;
    }
    e.mutate_server(id, |s| {
        s.flavor = old.clone();
        s.old_flavor = None;
        if let Some(src) = s.source_host.take() {
            s.host = Some(src.clone());
            s.node = Some(src);
        }
        s.power_state = PowerState::Shutdown;
        Ok(())
    })
    .await?;
    e.move_done(id).await;
    Ok(())
}

/// Migrates the running VM to the destination.
async fn live_migrate(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let step = cx.step;
    let Cx { wf, s, id, k, .. } = cx;

    let dest = k.need_dest()?;
    if s.host.as_deref() != Some(dest.as_str()) {
        let dagent = e.agent_for(&dest).await?;
        let sagent = e.server_agent(s).await?;
        // Check where the VM is before acting (re-run after a
        // crash): still on the source, migrate; gone from it, the
        // stream completed and only the destination's resume (if
        // it is not running yet) and the record are left.
        if present(&sagent, &s.instance_name).await? {
            e.sync_dataplane_for(&dest, Some((id, &dest))).await?;
            let spec = e.vm_spec(s).await?;
            let target = dagent.prepare_incoming(&spec).await?;
            sagent.migrate_to(&s.instance_name, &target).await?;
            dagent.finish_incoming(&s.instance_name).await?;
        } else {
            let st = dagent.status(&s.instance_name).await?;
            if st.power_state != PowerState::Running {
                dagent.finish_incoming(&s.instance_name).await?;
            }
        }
        if s.vm_state == VmState::Paused {
            dagent.pause(&s.instance_name).await?;
        }
        e.hang_after(wf, step).await;
        e.mutate_server(id, |s| {
            s.host = Some(dest.clone());
            s.node = Some(dest.clone());
            Ok(())
        })
        .await?;
        // The source drops its taps.
        e.move_done(id).await;
    }
    Ok(())
}

/// Defines the VM on the destination (its host is dead).
async fn evacuate(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let step = cx.step;
    let Cx { wf, s, id, k, .. } = cx;

    let dest = k.need_dest()?;
    let mut moved = s.clone();
    moved.host = Some(dest.clone());
    let spec = e.vm_spec(&moved).await?;
    e.sync_dataplane_for(&dest, Some((id, &dest))).await?;
    e.agent_for(&dest).await?.define(&spec).await?;
    e.hang_after(wf, step).await;
    e.mutate_server(id, |s| {
        s.host = Some(dest.clone());
        s.node = Some(dest.clone());
        s.power_state = PowerState::Shutdown;
        set_task(s, TaskState::RebuildSpawning);
        Ok(())
    })
    .await?;
    e.move_done(id).await;
    Ok(())
}

/// Replaces the root disk with a fresh copy of the image.
async fn rebuild(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, id, k, .. } = cx;

    let image_id = need_image(k)?;
    let img = e.image_ref(&image_id).await?;
    e.mutate_server(id, |s| {
        set_task(s, TaskState::RebuildSpawning);
        Ok(())
    })
    .await?;
    e.server_agent(s)
        .await?
        .rebuild(&s.instance_name, &img)
        .await?;
    Ok(())
}
