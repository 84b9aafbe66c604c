//! The power and guest steps most workflows share: power on and off,
//! reboot, pause, suspend, rescue and their reverses, waiting for the guest
//! agent, the admin password, and waiting for a superseded workflow.

use std::time::Duration;

use lifeboat_core::{PowerState, TaskState};

use super::{scrub_secrets, set_task, step, wrong_kind, Cx};
use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;
use crate::secrets::ADMIN_PASS;
use crate::ComputeError;

step!(
    /// Starts a new VM (create); undone by a hard stop.
    SPAWN = "spawn", power_on, stop_now
);
step!(POWER_ON = "power_on", power_on);
step!(READY = "ready", ready);
step!(PASSWORD = "password", password);
step!(WAIT_SUPERSEDED = "wait_superseded", wait_superseded);
step!(POWER_OFF = "power_off", power_off);
step!(REBOOT = "reboot", reboot);
step!(PAUSE = "pause", pause);
step!(UNPAUSE = "unpause", unpause);
step!(SUSPEND = "suspend", suspend);
step!(RESUME = "resume", resume);
step!(RESCUE = "rescue", rescue);
step!(UNRESCUE = "unrescue", unrescue);

/// Powers the VM on.
async fn power_on(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    e.server_agent(&cx.s)
        .await?
        .start(&cx.s.instance_name)
        .await?;
    cx.after = Some(Box::new(|s| {
        s.power_state = PowerState::Running;
        if s.progress < 90 {
            s.progress = 90;
        }
    }));
    Ok(())
}

/// Undoes a spawn: a hard stop.
async fn stop_now(cx: &mut Cx<'_>) -> StepResult<()> {
    let Cx { e, s, id, .. } = cx;
    if let Some(h) = &s.host {
        let _ = e.agent_for(h).await?.stop(&s.instance_name, 0).await;
        e.mutate_server(id, |s| {
            s.power_state = PowerState::Shutdown;
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// Waits for the guest agent.
async fn ready(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, .. } = cx;
    e.wait_ready(s).await?;
    Ok(())
}

/// Sets the sealed admin password in the guest, then forgets it.
async fn password(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { wf, s, id, .. } = cx;

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
            let res = match e.wait_ready(s).await {
                Ok(()) => e
                    .server_agent(s)
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
    Ok(())
}

/// Waits until the workflow this one superseded stopped.
async fn wait_superseded(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    // The whole chain: a second delete supersedes the first, which
    // superseded a create still inside its define step; waiting for
    // the first delete alone let the create define its VM after the
    // destroy (a VM of a deleted server, seen under load).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    let mut next = cx.k.supersedes().map(str::to_string);
    let mut hops = 0;
    while let Some(old) = next.take() {
        e.wait_not_running(&old, deadline).await;
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
    Ok(())
}

/// Powers the VM off (ACPI, then hard after 60 s).
async fn power_off(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, id, .. } = cx;
    let deleting = matches!(
        cx.k,
        WorkflowKind::Delete(_) | WorkflowKind::SoftDelete(_) | WorkflowKind::ForceDelete(_)
    );

    if s.host.is_some() {
        let agent = e.server_agent(s).await?;
        match agent.stop(&s.instance_name, 60).await {
            Ok(()) | Err(lifeboat_hypervisor::HvError::NotFound(_)) => {}
            Err(err) if deleting => {
                tracing::warn!(server = %id, "power off before delete: {err}")
            }
            Err(err) => return Err(err.into()),
        }
        e.mutate_server(id, |s| {
            s.power_state = PowerState::Shutdown;
            Ok(())
        })
        .await?;
    }
    Ok(())
}

/// Reboots, soft or hard as the kind says.
async fn reboot(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let Cx { s, id, k, .. } = cx;

    let hard = matches!(k, WorkflowKind::RebootHard(_));
    e.mutate_server(id, |s| {
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
    e.server_agent(s)
        .await?
        .reboot(&s.instance_name, hard)
        .await?;
    e.mutate_server(id, |s| {
        s.power_state = PowerState::Running;
        Ok(())
    })
    .await?;
    Ok(())
}

/// Sets the power state a pause/suspend/rescue step left.
async fn record_power(cx: &mut Cx<'_>, ps: PowerState) -> StepResult<()> {
    cx.e.mutate_server(&cx.id, |s| {
        s.power_state = ps;
        Ok(())
    })
    .await
    .map(|_| ())
}

/// Pauses the vCPUs.
async fn pause(cx: &mut Cx<'_>) -> StepResult<()> {
    let agent = cx.e.server_agent(&cx.s).await?;
    agent.pause(&cx.s.instance_name).await?;
    record_power(cx, PowerState::Paused).await
}

/// Resumes the vCPUs.
async fn unpause(cx: &mut Cx<'_>) -> StepResult<()> {
    let agent = cx.e.server_agent(&cx.s).await?;
    agent.unpause(&cx.s.instance_name).await?;
    record_power(cx, PowerState::Running).await
}

/// Saves the VM's state and stops it.
async fn suspend(cx: &mut Cx<'_>) -> StepResult<()> {
    let agent = cx.e.server_agent(&cx.s).await?;
    agent.suspend(&cx.s.instance_name).await?;
    record_power(cx, PowerState::Suspended).await
}

/// Restores a suspended VM.
async fn resume(cx: &mut Cx<'_>) -> StepResult<()> {
    let agent = cx.e.server_agent(&cx.s).await?;
    agent.resume(&cx.s.instance_name).await?;
    record_power(cx, PowerState::Running).await
}

/// Boots the rescue image with the server's disk as a second disk.
async fn rescue(cx: &mut Cx<'_>) -> StepResult<()> {
    let WorkflowKind::Rescue(p) = &cx.k else {
        return Err(wrong_kind(&cx.k, cx.step));
    };
    let img = cx.e.rescue_image(p.rescue_image.as_deref()).await?;
    let agent = cx.e.server_agent(&cx.s).await?;
    agent.rescue(&cx.s.instance_name, &img).await?;
    record_power(cx, PowerState::Running).await
}

/// Boots the server's own disk again.
async fn unrescue(cx: &mut Cx<'_>) -> StepResult<()> {
    let agent = cx.e.server_agent(&cx.s).await?;
    agent.unrescue(&cx.s.instance_name).await?;
    record_power(cx, PowerState::Running).await
}
