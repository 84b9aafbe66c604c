//! Workflow kinds and their typed, versioned params: derived in
//! `lifeboat_core::workflows` from each action's row of the action list
//! (its `params { .. }`), re-exported here for the engine's steps. A step
//! reads its kind's struct; a missing or unknown param is an error when the
//! row is loaded, never a default.

pub(crate) use lifeboat_core::workflows::WorkflowKind;

#[cfg(test)]
pub(crate) use lifeboat_core::workflows::{params, PARAMS_VERSION};

#[cfg(test)]
mod tests;
