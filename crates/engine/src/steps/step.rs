//! What a step is: [`Step`] (its name, run and undo), the context [`Cx`] it
//! works on, and [`step!`], which declares one in the file of its workflow.

use std::future::Future;
use std::pin::Pin;

use lifeboat_core::{Server, Workflow};

use crate::compute::workflows::WorkflowKind;
use crate::error::StepResult;
use crate::{ComputeError, Engine};

/// What a step works on: the engine, its workflow, the server as loaded
/// before the step and the workflow's typed kind.
pub(crate) struct Cx<'a> {
    /// The engine.
    pub e: &'a Engine,
    /// The workflow (its params may be updated by the step).
    pub wf: &'a mut Workflow,
    /// The server, as loaded before the step.
    pub s: Server,
    /// The server's id.
    pub id: String,
    /// The workflow's kind and params.
    pub k: WorkflowKind,
    /// The step's name.
    pub step: &'static str,
    /// The server update a step leaves to the runner: applied with the
    /// step's `done` in one transaction (instead of a write of its own).
    pub after: Option<ServerUpdate>,
}

/// A change to the server that records a step's side effect (its task
/// state, progress or power state), written with the step's `done`.
pub(crate) type ServerUpdate = Box<dyn FnMut(&mut Server) + Send>;

/// A step's run or undo.
pub(crate) type StepFn =
    for<'a, 'b> fn(&'a mut Cx<'b>) -> Pin<Box<dyn Future<Output = StepResult<()>> + Send + 'a>>;

/// One named step: what it does and how a rollback undoes it.
pub(crate) struct Step {
    /// The name stored in the workflow row.
    pub name: &'static str,
    /// Runs the step.
    pub run: StepFn,
    /// Undoes it during a rollback (None: nothing to undo).
    pub undo: Option<StepFn>,
}

/// Declares a [`Step`]: `step!(NAME = "name", run_fn[, undo_fn]);` where
/// the functions are `async fn(&mut Cx<'_>) -> StepResult<()>`.
macro_rules! step {
    ($(#[$m:meta])* $name:ident = $s:literal, $run:path $(, $undo:path)? $(,)?) => {
        $(#[$m])*
        pub(crate) static $name: $crate::steps::step::Step = $crate::steps::step::Step {
            name: $s,
            run: |cx| Box::pin($run(cx)),
            undo: $crate::steps::step::step!(@undo $($undo)?),
        };
    };
    (@undo) => { None };
    (@undo $u:path) => { Some(|cx| Box::pin($u(cx))) };
}
pub(crate) use step;

/// The error of a step that does not belong to the workflow it runs in.
pub(crate) fn wrong_kind(k: &WorkflowKind, step: &str) -> ComputeError {
    ComputeError::Internal(format!("step {step} does not belong to {}", k.name()))
}
