//! The steps of create, unshelve and delete: placement, ports, the VM's
//! definition and its removal.

use lifeboat_core::TaskState;

use super::{set_task, step, Cx};
use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;

step!(
    /// Picks a host (create, unshelve); undone by forgetting it.
    SCHEDULE = "schedule", schedule, unschedule
);
step!(
    /// Allocates the ports (create); undone by releasing them.
    ALLOCATE_PORTS = "network", allocate_ports, release_allocated
);
step!(
    /// Releases the ports (delete).
    RELEASE_PORTS = "network", release_ports
);
step!(
    /// Defines the VM (create, unshelve); undone by destroying it.
    DEFINE = "define", define, undefine
);
step!(DESTROY = "destroy", destroy);

/// Picks a host (a requested one, or the node an unshelve left).
async fn schedule(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, id, k, .. } = cx;

    let _claim = e.inner.placement.lock().await;
    if s.host.is_none() {
        let prefer = k.host().or_else(|| {
            matches!(k, WorkflowKind::Unshelve(_))
                .then(|| s.node.clone())
                .flatten()
        });
        let host = e
            .schedule(
                &s.flavor.resources(),
                s.pinned_availability_zone.as_deref(),
                prefer.as_deref(),
                None,
                matches!(&k, WorkflowKind::Create(p) if p.host.is_some()),
                Some(&*s),
            )
            .await?;
        e.mutate_server(id, |s| {
            s.host = Some(host.name.clone());
            s.node = Some(host.name.clone());
            s.availability_zone = Some(host.availability_zone.clone());
            if matches!(k, WorkflowKind::Create(_)) {
                set_task(s, TaskState::Networking);
                s.progress = 10;
            } else {
                set_task(s, TaskState::Spawning);
            }
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// Undoes `schedule`.
async fn unschedule(cx: &mut Cx<'_>) -> StepResult<()> {
    cx.e.mutate_server(&cx.id, |s| {
        s.host = None;
        Ok(())
    })
    .await?;
    Ok(())
}

/// Allocates the server's ports.
async fn allocate_ports(cx: &mut Cx<'_>) -> StepResult<()> {
    cx.e.allocate_ports(cx.wf).await?;
    cx.after = Some(Box::new(|s| {
        set_task(s, TaskState::BlockDeviceMapping);
        s.progress = 30;
    }));
    Ok(())
}

/// Undoes `allocate_ports`.
async fn release_allocated(cx: &mut Cx<'_>) -> StepResult<()> {
    cx.e.release_ports(&cx.s, true).await
}

/// Releases the server's ports.
async fn release_ports(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, .. } = cx;

    e.release_ports(s, false).await?;
    e.dataplane_best_effort().await;
    Ok(())
}

/// Defines the VM on its host (an unshelve's disk comes back from the store).
async fn define(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, k, .. } = cx;

    // The ports' taps exist before the VM is defined (network/dataplane.rs).
    if let Some(h) = &s.host {
        e.sync_dataplane_for_define(h).await?;
    }
    let mut spec = e.vm_spec(s).await?;
    if matches!(k, WorkflowKind::Unshelve(_)) {
        // An offloaded server's disk comes back from the store.
        spec.root_from = e.shelved_root(s).await?;
    }
    e.server_agent(s).await?.define(&spec).await?;
    cx.after = Some(Box::new(|s| {
        set_task(s, TaskState::Spawning);
        s.progress = 50;
    }));
    Ok(())
}

/// Undoes `define`.
async fn undefine(cx: &mut Cx<'_>) -> StepResult<()> {
    if let Some(h) = &cx.s.host {
        let _ = cx.e.agent_for(h).await?.destroy(&cx.s.instance_name).await;
    }
    Ok(())
}

/// Removes the VM and its disks (and a shelved disk).
async fn destroy(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, id, .. } = cx;

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
    if let Err(err) = e.forget_shelved(id).await {
        tracing::warn!(server = %id, "shelved disk not deleted: {err}");
    }
    e.inner
        .store
        .delete::<crate::compute::restore::InstantRestore>(id)
        .await?;
    Ok(())
}
