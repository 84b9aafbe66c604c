//! The `sync_power_state` action: reads a server's VM state from its host
//! now (what the periodic power sync does for idle servers, for one server
//! on demand) and records it, marking an ACTIVE server whose VM is off as
//! stopped. The worked example of docs/ARCHITECTURE.md: its row in
//! `lifeboat_core::server_actions!` (columns, request, steps), this file
//! (its handler and its step) and its front rendering.

use lifeboat_core::{Action, Actor, Level, PowerState, Server, VmState};
use serde_json::json;

use crate::error::StepResult;
use crate::requests::accepted;
use crate::steps::step::{step, Cx};
use crate::{ActionOutcome, ComputeError, Engine};

/// The action's handler: a workflow with no params of its own.
pub(crate) async fn start(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
) -> Result<ActionOutcome, ComputeError> {
    Ok(accepted(
        e.begin_workflow(actor, s, action, json!({})).await?,
    ))
}

step!(
    /// Reads the VM's power state from its host and records it.
    SYNC_POWER = "sync_power", sync_power
);

async fn sync_power(cx: &mut Cx<'_>) -> StepResult<()> {
    let st =
        cx.e.server_agent(&cx.s)
            .await?
            .status(&cx.s.instance_name)
            .await?;
    let actual = st.power_state;
    let was = cx.s.power_state;
    let off = matches!(
        actual,
        PowerState::Shutdown | PowerState::Crashed | PowerState::NoState
    );
    let stopped = off && cx.s.vm_state == VmState::Active;
    cx.e.mutate_server(&cx.id, |x| {
        x.power_state = actual;
        if stopped && x.vm_state == VmState::Active {
            x.vm_state = VmState::Stopped;
        }
        Ok(())
    })
    .await?;
    cx.e.event(Engine::step_event(
        cx.wf,
        if stopped { Level::Warn } else { Level::Info },
        Some(cx.step),
        format!(
            "power state {} -> {}{}",
            was.name(),
            actual.name(),
            if stopped {
                "; server marked stopped"
            } else {
                ""
            }
        ),
    ))
    .await;
    Ok(())
}
