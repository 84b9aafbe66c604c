//! Lifeboat domain core.
//!
//! Pure data and rules, no I/O: resource models, the server state machine
//! ([`states`]), the action table ([`actions`]) and host placement
//! ([`placement`]) and the workflow kinds with their typed params
//! ([`workflows`]); the table and the kinds are derived from the one action
//! list (`actions/list.rs`). Every front (native, OpenStack, AWS) and the
//! workflow engine call into this crate; no front re-implements a rule.

pub mod actions;
pub mod ids;
pub mod model;
pub mod placement;
pub mod states;
pub mod workflows;

pub use actions::{
    Action, ActionDenied, ActionRule, Actor, Permission, Role, ServerAction, StateAttr,
};
pub use model::*;
pub use states::{PowerState, Status, TaskState, VmState};
