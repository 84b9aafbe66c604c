//! The steps of every workflow kind. Each step is a named [`Step`] (its run
//! and its undo side by side) declared with [`step!`] in the file of its
//! workflow: `power.rs` (the power and guest steps most workflows share),
//! `build.rs` (create, unshelve, delete), `moves.rs` (resize, migrate, live
//! migration, evacuation, rebuild), `images.rs` (snapshots, backups,
//! shelve) and the maintenance service's own (`crate::maintenance`).
//! [`plan`] lists a kind's steps (its row's `steps` in the action list,
//! [`plans`]); the runner stores their names and finds a stored name again
//! in the kind's own plan, so no step is looked up by a match on its name. Every step is idempotent: the runner re-runs a step
//! that was interrupted by a crash.

mod build;
mod images;
mod moves;
mod plans;
mod power;
pub(crate) mod step;

pub(crate) use plans::steps_of;
pub(crate) use step::{step, wrong_kind, Cx, ServerUpdate, Step};

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_core::{
    actions, now, Fault, ImageStatus, PowerState, Server, TaskState, VmState, Workflow,
};
use lifeboat_hypervisor::{Hypervisor, VmSize};
use serde_json::Value;

use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;
use crate::{ComputeError, Engine, Resource};

/// Step names of a workflow, given its kind and params (as stored).
pub(crate) fn plan(k: &WorkflowKind) -> Vec<&'static str> {
    steps_of(k).into_iter().map(|s| s.name).collect()
}

/// The step named `name` in `k`'s own plan.
fn find(k: &WorkflowKind, name: &str) -> Option<&'static Step> {
    steps_of(k).into_iter().find(|s| s.name == name)
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
                kind: Resource::Server,
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

/// Runs one step: the step of that name in the workflow's plan, on the
/// server as the runner read it before the step (`loaded`), or as read now.
/// Returns the server update the step leaves to the runner ([`Cx::after`]).
pub(crate) async fn run(
    e: &Engine,
    wf: &mut Workflow,
    step: &str,
    loaded: Option<Server>,
) -> StepResult<Option<ServerUpdate>> {
    let id = sid(wf)?;
    let s = match loaded.filter(|s| s.id == id) {
        Some(s) => s,
        None => e.must_server(&id).await?,
    };
    let k = WorkflowKind::load(&wf.kind, &wf.params)?;
    let Some(st) = find(&k, step) else {
        return Err(ComputeError::Internal(format!(
            "unknown step {step} of {}",
            wf.kind
        )));
    };
    let mut cx = Cx {
        e,
        wf,
        s,
        id,
        k,
        step: st.name,
        after: None,
    };
    (st.run)(&mut cx).await?;
    Ok(cx.after.take())
}

/// Undoes one step during rollback (nothing when the step has no undo or
/// the server is gone).
pub(crate) async fn undo(e: &Engine, wf: &mut Workflow, step: &str) -> StepResult<()> {
    let id = sid(wf)?;
    let k = WorkflowKind::load(&wf.kind, &wf.params)?;
    let Some((name, undo)) = find(&k, step).and_then(|st| Some((st.name, st.undo?))) else {
        return Ok(());
    };
    let Some(s) = e.inner.store.get_server(&id).await? else {
        return Ok(());
    };
    let mut cx = Cx {
        e,
        wf,
        s,
        id,
        k,
        step: name,
        after: None,
    };
    undo(&mut cx).await?;
    // An undo writes its own updates.
    if let Some(mut u) = cx.after.take() {
        e.mutate_server(&cx.id, |s| {
            u(s);
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// The image a rebuild or snapshot step works on.
fn need_image(k: &WorkflowKind) -> StepResult<String> {
    Ok(k.need_image()?)
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
/// Ends a successful workflow: the action table's end of its action (its
/// row's outcome, power state and stamps), nothing overridden here.
pub(crate) async fn complete(
    e: &Engine,
    wf: &mut Workflow,
    mut update: Option<ServerUpdate>,
) -> StepResult<()> {
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
        if let Some(u) = update.as_mut() {
            u(s);
        }
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
    let reason = wf.reason.clone();
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
                    reason: reason.clone(),
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
