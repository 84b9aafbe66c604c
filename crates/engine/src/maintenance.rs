//! The maintenance service: procedures run inside a guest by its guest
//! agent (`run_maintenance`, the scripts of the guest image's
//! `/etc/lifeboat/maintenance.d`). The `run_maintenance` server action
//! starts one; its output is logged as an event of the workflow.

use lifeboat_core::{Action, Actor, Server};
use serde_json::json;

use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;
use crate::steps::step::{step, wrong_kind, Cx};
use crate::{ActionOutcome, ComputeError, Engine};

/// A procedure name the guest agent accepts: a script name, never a path.
pub(crate) fn check_procedure(name: &str) -> Result<(), ComputeError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ComputeError::BadRequest(format!(
            "Invalid maintenance procedure {name:?}: a script name of letters, digits, '-' and '_'"
        )))
    }
}

/// The `run_maintenance` action's handler: checks the procedure name and
/// starts the workflow (its one step, `maintenance`, is in `steps.rs`).
pub(crate) async fn start(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    procedure: String,
) -> Result<ActionOutcome, ComputeError> {
    check_procedure(&procedure)?;
    Ok(crate::requests::accepted(
        e.begin_workflow(actor, s, action, json!({ "procedure": procedure }))
            .await?,
    ))
}

step!(
    /// The `run_maintenance` workflow's one step.
    MAINTENANCE = "maintenance", maintenance
);

/// Runs the procedure in the guest and logs its output as an event.
async fn maintenance(cx: &mut Cx<'_>) -> StepResult<()> {
    let e = cx.e;
    let step = cx.step;
    let Cx { wf, s, k, .. } = cx;

    let WorkflowKind::RunMaintenance(p) = &k else {
        return Err(wrong_kind(k, step));
    };
    let procedure = p.procedure.clone();
    let out = e
        .server_agent(s)
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
    Ok(())
}
