//! Workflow kinds and their typed, versioned params, derived from the
//! action list ([`server_actions!`](crate::server_actions)): one kind per
//! action, named as the action, its params the row's `params { .. }` and,
//! for a long action, [`supersedes`](WorkflowKind::supersedes) and
//! [`was_active`](WorkflowKind::was_active).
//!
//! A workflow row keeps its kind as a string and its params as readable
//! JSON. [`WorkflowKind::load`] reads them into the kind's own struct:
//! unknown fields and missing required ones are errors, never defaults.
//! Rows carry `"v"`, the params version; older rows are brought forward on
//! load ([`migrate`]), so workflows in flight survive an upgrade.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Action, FlavorSnapshot, NetworkRequest};

/// The params version this build writes.
///
/// - 0 (no `"v"`): a soft delete did not record `was_active`;
/// - 1: a create did not record `was_active`;
/// - 2: every long action's params have `was_active`.
pub const PARAMS_VERSION: u64 = 2;

/// Why a workflow row's kind or params cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// No action of that name.
    #[error("unknown workflow kind {0}")]
    UnknownKind(String),
    /// The params do not fit the kind (an unknown field, a missing one, a wrong type).
    #[error("workflow {kind}: bad params: {reason}")]
    Bad {
        /// The kind.
        kind: String,
        /// What is wrong.
        reason: String,
    },
    /// Written by a newer Lifeboat.
    #[error(
        "workflow {kind}: params version {version} is newer than this Lifeboat ({})",
        PARAMS_VERSION
    )]
    Newer {
        /// The kind.
        kind: String,
        /// The row's version.
        version: u64,
    },
    /// A step needs a value the kind does not have (yet).
    #[error("{kind} has no {what}")]
    Missing {
        /// The kind.
        kind: &'static str,
        /// What it lacks.
        what: &'static str,
    },
}

/// Derives [`WorkflowKind`] and [`params`] from the action list.
macro_rules! workflow_kinds {
    // A record update (`as short`): only its own params.
    (@struct $s:literal $var:ident [short] { $($(#[$fm:meta])* $f:ident : $t:ty),* }) => {
        #[doc = concat!("The params of `", $s, "` (a record update, written completed).")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $var { $($(#[$fm])* pub $f: $t),* }
    };
    // A long action: what every workflow of a server records, then its own.
    (@struct $s:literal $var:ident [] { $($(#[$fm:meta])* $f:ident : $t:ty),* }) => {
        #[doc = concat!("The params of the `", $s, "` workflow.")]
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $var {
            /// The workflow this one superseded (the server's previous task).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub supersedes: Option<String>,
            /// Whether the server was active when the workflow began.
            pub was_active: bool,
            $($(#[$fm])* pub $f: $t),*
        }
    };
    (@supersedes [short] $p:ident) => { None };
    (@supersedes [] $p:ident) => { $p.supersedes.as_deref() };
    (@was_active [short] $p:ident) => { false };
    (@was_active [] $p:ident) => { $p.was_active };
    // The accessors of the fields a step reads by role, found by name: a
    // row's `host` is the requested host, `dest` the chosen destination,
    // `image_id` the image worked on; any other field adds nothing.
    (@host host $p:ident) => { $p.host.clone() };
    (@host $f:ident $p:ident) => { None };
    (@dest dest $p:ident) => { $p.dest.as_deref() };
    (@dest $f:ident $p:ident) => { None };
    (@dest_slot dest $p:ident) => { Some(&mut $p.dest) };
    (@dest_slot $f:ident $p:ident) => { None };
    (@image_id image_id $p:ident) => { Some($p.image_id.as_str()) };
    (@image_id $f:ident $p:ident) => { None };
    ($(
        $(#[$m:meta])* $var:ident = $s:literal $(as $base:ident)? { $($field:ident : $val:expr),* $(,)? }
        $(request $(#[$rm:meta])* $req:ident $({ $($(#[$rfm:meta])* $rf:ident : $rt:ty),* $(,)? })?
            $(kind($k:expr))? => $($h:ident)::+)?
        $(params { $($(#[$pm:meta])* $p:ident : $pt:ty),* $(,)? })?
        $(steps $plan:tt)?
    ),+ $(,)?) => {
        /// The params of each workflow kind, one struct per action.
        pub mod params {
            use super::*;
            $(
                workflow_kinds!(@struct $s $var [$($base)?] { $($($(#[$pm])* $p : $pt),*)? });
            )+
        }

        /// A workflow kind with its typed params: one per action of the list.
        #[derive(Debug, Clone, PartialEq)]
        pub enum WorkflowKind {
            $(
                #[doc = concat!("`", $s, "`.")]
                $var(params::$var)
            ),+
        }

        impl WorkflowKind {
            /// The action this workflow runs.
            pub fn action(&self) -> Action {
                match self { $(WorkflowKind::$var(_) => Action::$var),+ }
            }

            /// Reads params of the current version into `action`'s kind
            /// (a new row: nothing migrated, nothing defaulted).
            pub fn parse(action: Action, params: Value) -> Result<WorkflowKind, ParamsError> {
                let kind = action.as_str();
                let bad = |e: serde_json::Error| ParamsError::Bad {
                    kind: kind.into(),
                    reason: e.to_string(),
                };
                Ok(match action {
                    $(Action::$var => WorkflowKind::$var(serde_json::from_value(params).map_err(bad)?),)+
                })
            }

            /// The params as stored: the kind's fields, without `"v"`.
            fn fields(&self) -> Value {
                match self {
                    $(WorkflowKind::$var(p) => serde_json::to_value(p),)+
                }
                .expect("params serialize")
            }

            /// The workflow this one superseded (its server's previous task).
            pub fn supersedes(&self) -> Option<&str> {
                match self {
                    $(WorkflowKind::$var(_p) => workflow_kinds!(@supersedes [$($base)?] _p),)+
                }
            }

            /// Whether the server was active when the workflow began
            /// (false for a record update).
            pub fn was_active(&self) -> bool {
                match self {
                    $(WorkflowKind::$var(_p) => workflow_kinds!(@was_active [$($base)?] _p),)+
                }
            }

            /// The requested host: a row's `host` param (create, migrate,
            /// live_migrate, evacuate, unshelve).
            pub fn host(&self) -> Option<String> {
                match self {
                    $(WorkflowKind::$var(_p) => None $($(.or(workflow_kinds!(@host $p _p)))*)?,)+
                }
            }

            /// The destination chosen by `schedule_dest`: a row's `dest` param.
            pub fn dest(&self) -> Option<&str> {
                match self {
                    $(WorkflowKind::$var(_p) => None $($(.or(workflow_kinds!(@dest $p _p)))*)?,)+
                }
            }

            /// The destination slot of a move (None: the kind has no `dest`).
            fn dest_slot(&mut self) -> Option<&mut Option<String>> {
                match self {
                    $(WorkflowKind::$var(_p) => None $($(.or(workflow_kinds!(@dest_slot $p _p)))*)?,)+
                }
            }

            /// The image a rebuild or snapshot works on: a row's `image_id` param.
            pub fn image_id(&self) -> Option<&str> {
                match self {
                    $(WorkflowKind::$var(_p) => None $($(.or(workflow_kinds!(@image_id $p _p)))*)?,)+
                }
            }
        }
    };
}

crate::server_actions!(workflow_kinds);

impl WorkflowKind {
    /// The kind's name, as stored (the action's name).
    pub fn name(&self) -> &'static str {
        self.action().as_str()
    }

    /// Reads a row's kind and params, migrating older versions.
    pub fn load(kind: &str, params: &Value) -> Result<WorkflowKind, ParamsError> {
        let action = Action::parse(kind).ok_or_else(|| ParamsError::UnknownKind(kind.into()))?;
        WorkflowKind::parse(action, migrate(kind, params.clone())?)
    }

    /// Reads the params of a new workflow of `action`, written by this
    /// build: `"v"` absent or current, nothing migrated.
    pub fn new_row(action: Action, params: &Value) -> Result<WorkflowKind, ParamsError> {
        let kind = action.as_str();
        let mut v = params.clone();
        let Some(o) = v.as_object_mut() else {
            return Err(not_an_object(kind));
        };
        match o.remove("v") {
            None => {}
            Some(x) if x.as_u64() == Some(PARAMS_VERSION) => {}
            Some(x) => {
                return Err(ParamsError::Bad {
                    kind: kind.into(),
                    reason: format!("a new workflow is version {PARAMS_VERSION}, not {x}"),
                })
            }
        }
        WorkflowKind::parse(action, v)
    }

    /// The params as stored: the kind's fields plus `"v"`.
    pub fn store(&self) -> Value {
        let mut v = self.fields();
        if let Some(o) = v.as_object_mut() {
            o.insert("v".into(), PARAMS_VERSION.into());
        }
        v
    }

    /// The destination, which a step after `schedule_dest` needs.
    pub fn need_dest(&self) -> Result<String, ParamsError> {
        self.dest().map(str::to_string).ok_or(ParamsError::Missing {
            kind: self.name(),
            what: "destination yet",
        })
    }

    /// Records the destination chosen by `schedule_dest`.
    pub fn set_dest(&mut self, dest: String) -> Result<(), ParamsError> {
        let kind = self.name();
        let slot = self.dest_slot().ok_or(ParamsError::Missing {
            kind,
            what: "destination",
        })?;
        *slot = Some(dest);
        Ok(())
    }

    /// The image, which a rebuild or snapshot step needs.
    pub fn need_image(&self) -> Result<String, ParamsError> {
        self.image_id()
            .map(str::to_string)
            .ok_or(ParamsError::Missing {
                kind: self.name(),
                what: "image",
            })
    }
}

fn not_an_object(kind: &str) -> ParamsError {
    ParamsError::Bad {
        kind: kind.into(),
        reason: "params are not an object".into(),
    }
}

/// Brings a row's params to [`PARAMS_VERSION`] (and removes `"v"`). What
/// each older version lacked is filled with what that release meant:
/// - version 0 (no `"v"`): a soft delete did not record `was_active`
///   (it always went on from a stopped guest: false);
/// - versions 0 and 1: a create did not record `was_active` (a new server
///   is never active before its create: false).
pub fn migrate(kind: &str, mut params: Value) -> Result<Value, ParamsError> {
    let Some(o) = params.as_object_mut() else {
        return Err(not_an_object(kind));
    };
    let v = match o.remove("v") {
        None => 0,
        Some(x) => x.as_u64().ok_or_else(|| ParamsError::Bad {
            kind: kind.into(),
            reason: format!("bad params version {x}"),
        })?,
    };
    if v > PARAMS_VERSION {
        return Err(ParamsError::Newer {
            kind: kind.into(),
            version: v,
        });
    }
    if v == 0 && kind == "soft_delete" {
        o.entry("was_active").or_insert(Value::Bool(false));
    }
    if v <= 1 && kind == "create" {
        o.entry("was_active").or_insert(Value::Bool(false));
    }
    Ok(params)
}
