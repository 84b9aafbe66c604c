//! The steps of every workflow kind: what each does, how it is undone, and
//! how the workflow's end changes the server. Every step is idempotent: the
//! runner re-runs a step that was interrupted by a crash.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_core::{
    actions, now, Fault, ImageStatus, PowerState, Server, TaskState, VmState, Workflow,
};
use lifeboat_hypervisor::{Hypervisor, VmSize};
use serde_json::Value;

use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;
use crate::secrets::ADMIN_PASS;
use crate::{ComputeError, Engine};

/// Step names of a workflow, given its kind and params.
pub(crate) fn plan(k: &WorkflowKind) -> Vec<&'static str> {
    use WorkflowKind as K;
    let was_active = k.was_active();
    let mut v: Vec<&'static str> = match k {
        K::Create(_) => vec![
            "schedule", "network", "define", "spawn", "ready", "password",
        ],
        K::Delete(_) | K::ForceDelete(_) => {
            vec!["wait_superseded", "power_off", "destroy", "network"]
        }
        K::SoftDelete(_) => vec!["wait_superseded", "power_off"],
        K::Restore(_) => vec!["power_on", "ready"],
        K::RebootSoft(_) | K::RebootHard(_) => vec!["reboot", "ready"],
        K::Start(_) => vec!["power_on", "ready"],
        K::Stop(_) => vec!["power_off"],
        K::Pause(_) => vec!["pause"],
        K::Unpause(_) => vec!["unpause"],
        K::Suspend(_) => vec!["suspend"],
        K::Resume(_) => vec!["resume"],
        K::Rescue(_) => vec!["rescue", "password"],
        K::Unrescue(_) => vec!["unrescue"],
        K::Rebuild(_) => vec!["power_off", "rebuild"],
        K::Resize(_) | K::Migrate(_) => vec!["schedule_dest", "power_off", "resize"],
        K::ConfirmResize(_) => vec!["confirm"],
        K::RevertResize(_) => vec!["revert"],
        K::CreateImage(_) => vec!["snapshot"],
        K::CreateBackup(_) => vec!["snapshot", "rotate"],
        K::ChangePassword(_) => vec!["password"],
        K::Shelve(p) if p.offload => vec!["power_off", "shelve_snapshot", "offload"],
        K::Shelve(_) => vec!["power_off", "shelve_snapshot"],
        K::ShelveOffload(_) => vec!["shelve_snapshot", "offload"],
        K::Unshelve(_) => vec!["schedule", "define", "power_on", "ready", "forget_shelved"],
        K::LiveMigrate(_) => vec!["schedule_dest", "live_migrate"],
        K::Evacuate(_) if was_active => {
            vec!["schedule_dest", "evacuate", "power_on", "ready", "password"]
        }
        K::Evacuate(_) => vec!["schedule_dest", "evacuate", "password"],
        K::RunMaintenance(_) => vec!["maintenance"],
        K::Lock(_) | K::Unlock(_) | K::ResetState(_) | K::TriggerCrashDump(_) => vec![],
    };
    if matches!(
        k,
        K::Rebuild(_) | K::Resize(_) | K::Migrate(_) | K::RevertResize(_)
    ) && was_active
    {
        v.push("power_on");
        v.push("ready");
    }
    if matches!(k, K::Rebuild(_)) {
        // The password goes into the rebuilt guest once it runs.
        v.push("password");
    }
    v
}

/// Removes secrets from params once a workflow no longer needs them.
pub(crate) fn scrub_secrets(p: &mut Value) {
    if let Some(o) = p.as_object_mut() {
        o.remove("admin_pass");
    }
}

fn sid(wf: &Workflow) -> StepResult<String> {
    wf.server_id
        .clone()
        .ok_or_else(|| ComputeError::Internal(format!("workflow {} has no server", wf.id)))
}

fn set_task(s: &mut Server, t: TaskState) {
    s.task_state = Some(t);
}

impl Engine {
    pub(crate) async fn agent_for(&self, host: &str) -> StepResult<Arc<dyn Hypervisor>> {
        self.inner
            .hosts
            .read()
            .await
            .get(host)
            .map(|h| h.agent.clone())
            .ok_or_else(|| ComputeError::Internal(format!("host {host} is not registered")))
    }

    pub(crate) async fn server_agent(&self, s: &Server) -> StepResult<Arc<dyn Hypervisor>> {
        let host = s
            .host
            .as_deref()
            .ok_or_else(|| ComputeError::Internal(format!("server {} has no host", s.id)))?;
        self.agent_for(host).await
    }

    async fn must_server(&self, id: &str) -> StepResult<Server> {
        self.inner
            .store
            .get_server(id)
            .await?
            .ok_or_else(|| ComputeError::NotFound {
                kind: "Instance",
                id: id.into(),
            })
    }

    async fn wait_ready(&self, s: &Server) -> StepResult<()> {
        let agent = self.server_agent(s).await?;
        let deadline = Instant::now() + self.inner.cfg.ready_timeout;
        loop {
            let st = agent.status(&s.instance_name).await?;
            if st.guest_ready {
                return Ok(());
            }
            if st.power_state != PowerState::Running {
                return Err(ComputeError::Internal(format!(
                    "guest {} stopped while booting",
                    s.instance_name
                )));
            }
            if Instant::now() > deadline {
                return Err(ComputeError::Internal(format!(
                    "guest {} not ready after {:?}",
                    s.instance_name, self.inner.cfg.ready_timeout
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Runs one step.
pub(crate) async fn run(e: &Engine, wf: &mut Workflow, step: &str) -> StepResult<()> {
    let id = sid(wf)?;
    let s = e.must_server(&id).await?;
    let kind = wf.kind.clone();
    let mut k = WorkflowKind::load(&wf.kind, &wf.params)?;
    match step {
        "schedule" => {
            let _claim = e.inner.placement.lock().await;
            if s.host.is_none() {
                let prefer = k
                    .host()
                    .or_else(|| (kind == "unshelve").then(|| s.node.clone()).flatten());
                let host = e
                    .schedule(
                        &s.flavor.resources(),
                        s.pinned_availability_zone.as_deref(),
                        prefer.as_deref(),
                        None,
                        matches!(&k, WorkflowKind::Create(p) if p.host.is_some()),
                    )
                    .await?;
                e.mutate_server(&id, |s| {
                    s.host = Some(host.name.clone());
                    s.node = Some(host.name.clone());
                    s.availability_zone = Some(host.availability_zone.clone());
                    if kind == "create" {
                        set_task(s, TaskState::Networking);
                        s.progress = 10;
                    } else {
                        set_task(s, TaskState::Spawning);
                    }
                    Ok(())
                })
                .await?;
            }
        }
        "network" if kind.ends_with("delete") => {
            e.release_ports(&s, false).await?;
            e.dataplane_best_effort().await;
        }
        "network" => {
            e.allocate_ports(wf).await?;
            e.hang_after(wf, step).await;
            e.mutate_server(&id, |s| {
                set_task(s, TaskState::BlockDeviceMapping);
                s.progress = 30;
                Ok(())
            })
            .await?;
        }
        "define" => {
            // The ports' taps exist before the VM is defined (network/dataplane.rs).
            if let Some(h) = &s.host {
                e.sync_dataplane_for(h, None).await?;
            }
            let mut spec = e.vm_spec(&s).await?;
            if kind == "unshelve" {
                // An offloaded server's disk comes back from the store.
                spec.root_from = e.shelved_root(&s).await?;
            }
            e.server_agent(&s).await?.define(&spec).await?;
            e.hang_after(wf, step).await;
            e.mutate_server(&id, |s| {
                set_task(s, TaskState::Spawning);
                s.progress = 50;
                Ok(())
            })
            .await?;
        }
        "spawn" | "power_on" => {
            e.server_agent(&s).await?.start(&s.instance_name).await?;
            e.hang_after(wf, step).await;
            e.mutate_server(&id, |s| {
                s.power_state = PowerState::Running;
                if s.progress < 90 {
                    s.progress = 90;
                }
                Ok(())
            })
            .await?;
        }
        "ready" => e.wait_ready(&s).await?,
        "password" => {
            // The sealed secret is deleted once applied: a re-run after a
            // crash finds none and has nothing left to do.
            // (A password left in the params of an older row was sealed
            // by `recover` before the workflow ran again.)
            let pw = match e.workflow_secret(&wf.id, ADMIN_PASS).await {
                Ok(p) => p,
                // e.g. sealed under another data dir's key: the guest
                // keeps its credentials, the workflow goes on.
                Err(err) => {
                    tracing::warn!(server = %id, "admin password unavailable: {err}");
                    None
                }
            };
            if let Some(pw) = pw {
                if s.power_state == PowerState::Running {
                    // Best effort like Nova's injection: a guest without an
                    // agent keeps its image's credentials.
                    let res = match e.wait_ready(&s).await {
                        Ok(()) => e
                            .server_agent(&s)
                            .await?
                            .set_password(&s.instance_name, "root", &pw)
                            .await
                            .map_err(ComputeError::from),
                        Err(err) => Err(err),
                    };
                    if let Err(err) = res {
                        tracing::warn!(server = %id, "admin password not set in guest: {err}");
                    }
                }
                e.forget_secrets(&wf.id).await;
            }
            scrub_secrets(&mut wf.params);
        }
        "wait_superseded" => {
            // The whole chain: a second delete supersedes the first, which
            // superseded a create still inside its define step; waiting for
            // the first delete alone let the create define its VM after the
            // destroy (a VM of a deleted server, seen under load).
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut next = k.supersedes().map(str::to_string);
            let mut hops = 0;
            while let Some(old) = next.take() {
                while e.is_running(&old) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                hops += 1;
                if hops > 64 {
                    break;
                }
                if let Some(w) = e.inner.store.get_workflow(&old).await? {
                    next = WorkflowKind::load(&w.kind, &w.params)
                        .ok()
                        .and_then(|k| k.supersedes().map(str::to_string));
                }
            }
        }
        "power_off" => {
            if s.host.is_some() {
                let agent = e.server_agent(&s).await?;
                match agent.stop(&s.instance_name, 60).await {
                    Ok(()) | Err(lifeboat_hypervisor::HvError::NotFound(_)) => {}
                    Err(err) if kind.ends_with("delete") => {
                        tracing::warn!(server = %id, "power off before delete: {err}")
                    }
                    Err(err) => return Err(err.into()),
                }
                e.mutate_server(&id, |s| {
                    s.power_state = PowerState::Shutdown;
                    Ok(())
                })
                .await?;
            }
        }
        "destroy" => {
            // A shelved-offloaded server has no host, but its node still
            // keeps what offload left there (disks, state): clean it too.
            let offloaded = s.host.is_none();
            if let Some(h) = s.host.clone().or_else(|| s.node.clone()) {
                match e.agent_for(&h).await {
                    Err(err) if offloaded => {
                        tracing::warn!(server = %id, "offloaded copy on {h} not destroyed: {err}")
                    }
                    Err(err) => return Err(err),
                    Ok(agent) => match agent.destroy(&s.instance_name).await {
                        Ok(()) | Err(lifeboat_hypervisor::HvError::NotFound(_)) => {}
                        // Nova deletes a shelved-offloaded server without its
                        // host: a dead host does not block the delete.
                        Err(err) if offloaded => tracing::warn!(
                            server = %id,
                            "offloaded copy on {h} not destroyed: {err}"
                        ),
                        Err(err) => return Err(err.into()),
                    },
                }
            }
            if let Err(err) = e.forget_shelved(&id).await {
                tracing::warn!(server = %id, "shelved disk not deleted: {err}");
            }
        }
        "reboot" => {
            let hard = kind == "reboot_hard";
            e.mutate_server(&id, |s| {
                set_task(
                    s,
                    if hard {
                        TaskState::RebootStartedHard
                    } else {
                        TaskState::RebootStarted
                    },
                );
                Ok(())
            })
            .await?;
            e.server_agent(&s)
                .await?
                .reboot(&s.instance_name, hard)
                .await?;
            e.mutate_server(&id, |s| {
                s.power_state = PowerState::Running;
                Ok(())
            })
            .await?;
        }
        "pause" | "unpause" | "suspend" | "resume" | "rescue" | "unrescue" => {
            let agent = e.server_agent(&s).await?;
            let n = &s.instance_name;
            let ps = match step {
                "pause" => {
                    agent.pause(n).await?;
                    PowerState::Paused
                }
                "unpause" => {
                    agent.unpause(n).await?;
                    PowerState::Running
                }
                "suspend" => {
                    agent.suspend(n).await?;
                    PowerState::Suspended
                }
                "resume" => {
                    agent.resume(n).await?;
                    PowerState::Running
                }
                "rescue" => {
                    let WorkflowKind::Rescue(p) = &k else {
                        return Err(wrong_kind(&k, step));
                    };
                    let img = e.rescue_image(p.rescue_image.as_deref()).await?;
                    agent.rescue(n, &img).await?;
                    PowerState::Running
                }
                _ => {
                    agent.unrescue(n).await?;
                    PowerState::Running
                }
            };
            e.mutate_server(&id, |s| {
                s.power_state = ps;
                Ok(())
            })
            .await?;
        }
        "rebuild" => {
            let image_id = need_image(&k)?;
            let img = e.image_ref(&image_id).await?;
            e.mutate_server(&id, |s| {
                set_task(s, TaskState::RebuildSpawning);
                Ok(())
            })
            .await?;
            e.server_agent(&s)
                .await?
                .rebuild(&s.instance_name, &img)
                .await?;
        }
        "schedule_dest" => {
            if k.dest().is_none() {
                let need = match &k {
                    WorkflowKind::Resize(p) => p.flavor.resources(),
                    _ => s.flavor.resources(),
                };
                let current = s.host.clone();
                let dest = match kind.as_str() {
                    // Resizing prefers the same host (allow_resize_to_same_host).
                    "resize" => {
                        let same = e
                            .host_fits(
                                current.as_deref().unwrap_or_default(),
                                &need,
                                &s.flavor.resources(),
                            )
                            .await;
                        if same {
                            current.clone().unwrap_or_default()
                        } else {
                            e.schedule(&need, None, None, current.as_deref(), false)
                                .await?
                                .name
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
                        )
                        .await?
                        .name
                    }
                };
                k.set_dest(dest)?;
                wf.params = k.store();
            }
            if kind == "resize" || kind == "migrate" {
                e.mutate_server(&id, |s| {
                    set_task(s, TaskState::ResizeMigrating);
                    Ok(())
                })
                .await?;
            }
        }
        "resize" => {
            let dest = k.need_dest()?;
            let new_flavor = match &k {
                WorkflowKind::Resize(p) => p.flavor.clone(),
                _ => s.flavor.clone(),
            };
            let size = size_of(&new_flavor);
            let src = s.host.clone().unwrap_or_default();
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
                    e.sync_dataplane_for(&dest, Some((&id, &dest))).await?;
                    let mut spec = e.vm_spec(&s).await?;
                    spec.size = size;
                    let target = e.agent_for(&dest).await?.prepare_incoming(&spec).await?;
                    e.agent_for(&src)
                        .await?
                        .migrate_to(&s.instance_name, &target)
                        .await?;
                }
                e.agent_for(&dest)
                    .await?
                    .resize(&s.instance_name, &size)
                    .await?;
            }
            e.hang_after(wf, step).await;
            e.mutate_server(&id, |s| {
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
            e.move_done(&id).await;
        }
        "confirm" => {
            e.server_agent(&s)
                .await?
                .confirm_resize(&s.instance_name)
                .await?;
            if let Some(src) = &s.source_host {
                let _ = e.agent_for(src).await?.destroy(&s.instance_name).await;
            }
            e.mutate_server(&id, |s| {
                s.old_flavor = None;
                s.source_host = None;
                Ok(())
            })
            .await?;
        }
        "revert" => {
            let old = s.old_flavor.clone().unwrap_or_else(|| s.flavor.clone());
            if let Some(src) = s.source_host.clone() {
                let agent = e.server_agent(&s).await?;
                let _ = agent.stop(&s.instance_name, 0).await;
                let mut spec = e.vm_spec(&s).await?;
                spec.size = size_of(&old);
                let target = e.agent_for(&src).await?.prepare_incoming(&spec).await?;
                agent.migrate_to(&s.instance_name, &target).await?;
            } else {
                let agent = e.server_agent(&s).await?;
                let _ = agent.stop(&s.instance_name, 0).await;
                agent.revert_resize(&s.instance_name).await?;
            }
            e.mutate_server(&id, |s| {
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
        }
        "snapshot" => crate::steps_backup::snapshot(e, wf, &s).await?,
        "shelve_snapshot" => crate::steps_backup::shelve_snapshot(e, wf, &s).await?,
        "forget_shelved" => e.forget_shelved(&s.id).await?,
        "rotate" => {
            let WorkflowKind::CreateBackup(p) = &k else {
                return Err(wrong_kind(&k, step));
            };
            e.rotate_backups(&s, &p.backup_type, p.rotation as usize)
                .await?;
        }
        "offload" => crate::steps_backup::offload(e, &s).await?,
        "live_migrate" => {
            let dest = k.need_dest()?;
            if s.host.as_deref() != Some(dest.as_str()) {
                let dagent = e.agent_for(&dest).await?;
                let sagent = e.server_agent(&s).await?;
                // Check where the VM is before acting (re-run after a
                // crash): still on the source, migrate; gone from it, the
                // stream completed and only the destination's resume (if
                // it is not running yet) and the record are left.
                if present(&sagent, &s.instance_name).await? {
                    e.sync_dataplane_for(&dest, Some((&id, &dest))).await?;
                    let spec = e.vm_spec(&s).await?;
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
                e.mutate_server(&id, |s| {
                    s.host = Some(dest.clone());
                    s.node = Some(dest.clone());
                    Ok(())
                })
                .await?;
                // The source drops its taps.
                e.move_done(&id).await;
            }
        }
        "evacuate" => {
            let dest = k.need_dest()?;
            let mut moved = s.clone();
            moved.host = Some(dest.clone());
            let spec = e.vm_spec(&moved).await?;
            e.sync_dataplane_for(&dest, Some((&id, &dest))).await?;
            e.agent_for(&dest).await?.define(&spec).await?;
            e.hang_after(wf, step).await;
            e.mutate_server(&id, |s| {
                s.host = Some(dest.clone());
                s.node = Some(dest.clone());
                s.power_state = PowerState::Shutdown;
                set_task(s, TaskState::RebuildSpawning);
                Ok(())
            })
            .await?;
            e.move_done(&id).await;
        }
        "maintenance" => {
            let WorkflowKind::RunMaintenance(p) = &k else {
                return Err(wrong_kind(&k, step));
            };
            let procedure = p.procedure.clone();
            let out = e
                .server_agent(&s)
                .await?
                .run_maintenance(&s.instance_name, &procedure)
                .await?;
            e.event(lifeboat_core::NewEvent {
                level: lifeboat_core::Level::Info,
                server_id: Some(s.id.clone()),
                project_id: Some(s.project_id.clone()),
                workflow_id: Some(wf.id.clone()),
                step: Some(step.to_string()),
                message: format!("maintenance {procedure}: {}", out.trim_end()),
            })
            .await;
        }
        other => return Err(ComputeError::Internal(format!("unknown step {other}"))),
    }
    Ok(())
}

/// The image a rebuild or snapshot step works on.
fn need_image(k: &WorkflowKind) -> StepResult<String> {
    k.image_id()
        .map(str::to_string)
        .ok_or_else(|| ComputeError::Internal(format!("{} has no image", k.name())))
}

fn wrong_kind(k: &WorkflowKind, step: &str) -> ComputeError {
    ComputeError::Internal(format!("step {step} does not belong to {}", k.name()))
}

/// Whether `agent`'s host has the VM `name`.
async fn present(agent: &Arc<dyn Hypervisor>, name: &str) -> StepResult<bool> {
    match agent.status(name).await {
        Ok(_) => Ok(true),
        Err(lifeboat_hypervisor::HvError::NotFound(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn size_of(f: &lifeboat_core::FlavorSnapshot) -> VmSize {
    VmSize {
        vcpus: f.vcpus,
        ram_mb: f.ram,
        disk_gb: f.disk,
        ephemeral_gb: f.ephemeral,
        swap_mb: f.swap,
    }
}

/// Undoes one step during rollback.
pub(crate) async fn undo(e: &Engine, wf: &mut Workflow, step: &str) -> StepResult<()> {
    let id = sid(wf)?;
    let Some(s) = e.inner.store.get_server(&id).await? else {
        return Ok(());
    };
    match (wf.kind.as_str(), step) {
        ("create" | "unshelve", "schedule") => {
            e.mutate_server(&id, |s| {
                s.host = None;
                Ok(())
            })
            .await?;
        }
        ("create", "network") => e.release_ports(&s, true).await?,
        ("create" | "unshelve", "define") => {
            if let Some(h) = &s.host {
                let _ = e.agent_for(h).await?.destroy(&s.instance_name).await;
            }
        }
        (_, "spawn") => {
            if let Some(h) = &s.host {
                let _ = e.agent_for(h).await?.stop(&s.instance_name, 0).await;
                e.mutate_server(&id, |s| {
                    s.power_state = PowerState::Shutdown;
                    Ok(())
                })
                .await?;
            }
        }
        (_, "snapshot") => {
            let k = WorkflowKind::load(&wf.kind, &wf.params)?;
            if let Some(img) = k.image_id() {
                e.set_image_status(img, ImageStatus::Killed, None).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Ends a successful workflow: the action table's end of its action (its
/// row's outcome, power state and stamps), nothing overridden here.
pub(crate) async fn complete(e: &Engine, wf: &mut Workflow) -> StepResult<()> {
    let Some(id) = wf.server_id.clone() else {
        return Ok(());
    };
    let kind = wf.kind.clone();
    if matches!(kind.as_str(), "delete" | "force_delete") {
        // Ports attached while the delete ran go with the server.
        let s = e.must_server(&id).await?;
        e.release_ports(&s, false).await?;
    }
    let wf_id = wf.id.clone();
    e.mutate_server(&id, |s| {
        if s.task_workflow.as_deref() != Some(wf_id.as_str()) {
            return Ok(());
        }
        s.task_workflow = None;
        finish_action(&kind, s);
        Ok(())
    })
    .await?;
    Ok(())
}

/// A workflow that ends without finishing (superseded, rolled back) kills
/// the snapshot image it was to fill, so no image stays `queued`/`saving`.
pub(crate) async fn abandon(e: &Engine, wf: &Workflow) -> StepResult<()> {
    if !matches!(wf.kind.as_str(), "create_image" | "create_backup") {
        return Ok(());
    }
    let k = WorkflowKind::load(&wf.kind, &wf.params)?;
    let Some(id) = k.image_id() else {
        return Ok(());
    };
    if let Some(img) = e.inner.store.get::<lifeboat_core::Image>(id).await? {
        if matches!(img.status, ImageStatus::Queued | ImageStatus::Saving) {
            e.set_image_status(id, ImageStatus::Killed, None).await?;
        }
    }
    Ok(())
}

/// Ends a failed workflow after rollback. Returns whether the server went to ERROR.
pub(crate) async fn fail(e: &Engine, wf: &mut Workflow, error: &str) -> StepResult<bool> {
    scrub_secrets(&mut wf.params);
    let Some(id) = wf.server_id.clone() else {
        return Ok(false);
    };
    let kind = wf.kind.clone();
    let wf_id = wf.id.clone();
    let mut errored = false;
    let res = e
        .mutate_server(&id, |s| {
            if s.task_workflow.as_deref() != Some(wf_id.as_str()) {
                return Ok(());
            }
            s.task_workflow = None;
            let to_error = match lifeboat_core::Action::parse(&kind) {
                Some(a) => actions::fail(a.rule(), s),
                None => {
                    s.task_state = None;
                    false
                }
            };
            if to_error {
                s.vm_state = VmState::Error;
                s.fault = Some(Fault {
                    code: 500,
                    message: error.chars().take(255).collect(),
                    details: Some(format!("{kind} failed: {error}")),
                    created: now(),
                });
            }
            errored = to_error;
            Ok(())
        })
        .await;
    match res {
        Ok(_) | Err(ComputeError::NotFound { .. }) => Ok(errored),
        Err(err) => Err(err),
    }
}

/// Applies the action table's end-of-action transition.
pub(crate) fn finish_action(kind: &str, s: &mut Server) -> bool {
    match lifeboat_core::Action::parse(kind) {
        Some(a) => actions::finish_at(a.rule(), s, now()),
        None => {
            s.task_state = None;
            true
        }
    }
}
