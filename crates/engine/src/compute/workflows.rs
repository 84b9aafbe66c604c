//! Workflow kinds and their typed, versioned params.
//!
//! A workflow row keeps its kind as a string and its params as readable
//! JSON (the `workflows` table). [`WorkflowKind::load`] reads them into the
//! kind's own struct: unknown fields and missing required ones are errors,
//! never defaults. Rows carry `"v"`, the params version; rows written before
//! versions (`v` absent, version 0) are migrated forward on load
//! ([`migrate`]), so workflows in flight survive an upgrade.

use lifeboat_core::FlavorSnapshot;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::requests::NetworkRequest;
use crate::ComputeError;

/// The params version this build writes.
pub(crate) const PARAMS_VERSION: u64 = 1;

macro_rules! workflow_kinds {
    ($(
        $(#[$m:meta])*
        $var:ident = $s:literal { $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? }
    ),+ $(,)?) => {
        /// The params of each workflow kind.
        pub(crate) mod params {
            use super::*;
            $(
                $(#[$m])*
                #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
                #[serde(deny_unknown_fields)]
                pub(crate) struct $var { $($(#[$fm])* pub $f: $t),* }
            )+
        }

        /// A workflow kind with its typed params.
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) enum WorkflowKind { $($var(params::$var)),+ }

        impl WorkflowKind {
            /// The kind's name, as stored.
            pub(crate) fn name(&self) -> &'static str {
                match self { $(WorkflowKind::$var(_) => $s),+ }
            }

            /// Reads a row's kind and params (migrating older versions).
            pub(crate) fn load(kind: &str, params: &Value) -> Result<WorkflowKind, ComputeError> {
                let v = migrate(kind, params.clone())?;
                let bad = |e: serde_json::Error| {
                    ComputeError::Internal(format!("workflow {kind}: bad params: {e}"))
                };
                Ok(match kind {
                    $($s => WorkflowKind::$var(serde_json::from_value(v).map_err(bad)?),)+
                    other => {
                        return Err(ComputeError::Internal(format!(
                            "unknown workflow kind {other}"
                        )))
                    }
                })
            }

            /// The params as stored: the kind's fields plus `"v"`.
            pub(crate) fn store(&self) -> Value {
                let mut v = match self {
                    $(WorkflowKind::$var(p) => serde_json::to_value(p),)+
                }
                .expect("params serialize");
                if let Some(o) = v.as_object_mut() {
                    o.insert("v".into(), PARAMS_VERSION.into());
                }
                v
            }
        }
    };
}

workflow_kinds! {
    /// Builds a new server.
    Create = "create" {
        networks: Vec<NetworkRequest>,
        no_network: bool,
        /// Requested host (admin).
        host: Option<String>,
    },
    Delete = "delete" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    SoftDelete = "soft_delete" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    ForceDelete = "force_delete" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Restore = "restore" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    RebootSoft = "reboot_soft" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    RebootHard = "reboot_hard" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Start = "start" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Stop = "stop" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Pause = "pause" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Unpause = "unpause" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Suspend = "suspend" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Resume = "resume" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Rescue = "rescue" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        /// Image to boot (None: the default image).
        rescue_image: Option<String>,
    },
    Unrescue = "unrescue" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Rebuild = "rebuild" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        image_id: String,
    },
    Resize = "resize" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        flavor: FlavorSnapshot,
        /// Chosen by `schedule_dest`.
        #[serde(default, skip_serializing_if = "Option::is_none")] dest: Option<String>,
    },
    Migrate = "migrate" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")] dest: Option<String>,
    },
    ConfirmResize = "confirm_resize" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    RevertResize = "revert_resize" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    LiveMigrate = "live_migrate" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")] dest: Option<String>,
    },
    Evacuate = "evacuate" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        host: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")] dest: Option<String>,
    },
    CreateImage = "create_image" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        image_id: String,
    },
    CreateBackup = "create_backup" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        image_id: String,
        backup_type: String,
        rotation: u32,
    },
    ChangePassword = "change_password" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Shelve = "shelve" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        /// Offload at once (`shelved_offload_time` 0).
        offload: bool,
    },
    ShelveOffload = "shelve_offload" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    Unshelve = "unshelve" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        host: Option<String>,
    },
    RunMaintenance = "run_maintenance" {
        #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>,
        was_active: bool,
        procedure: String,
    },
    SyncPowerState = "sync_power_state" { #[serde(default, skip_serializing_if = "Option::is_none")] supersedes: Option<String>, was_active: bool },
    /// The record of a short action (lock, unlock, reset_state,
    /// trigger_crash_dump, attach/detach_interface): written completed, never run.
    Lock = "lock" {},
    Unlock = "unlock" {},
    ResetState = "reset_state" {},
    TriggerCrashDump = "trigger_crash_dump" {},
    AttachInterface = "attach_interface" {},
    DetachInterface = "detach_interface" {},
}

/// Brings a row's params to [`PARAMS_VERSION`]. Version 0 (no `"v"`) is the
/// unversioned form of earlier releases: the same fields, except that a
/// soft delete did not record `was_active`.
pub(crate) fn migrate(kind: &str, mut params: Value) -> Result<Value, ComputeError> {
    let Some(o) = params.as_object_mut() else {
        return Err(ComputeError::Internal(format!(
            "workflow {kind}: params are not an object"
        )));
    };
    let v = match o.remove("v") {
        None => 0,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or_default(),
        Some(other) => {
            return Err(ComputeError::Internal(format!(
                "workflow {kind}: bad params version {other}"
            )))
        }
    };
    if v > PARAMS_VERSION {
        return Err(ComputeError::Internal(format!(
            "workflow {kind}: params version {v} is newer than this Lifeboat ({PARAMS_VERSION})"
        )));
    }
    if v == 0 && kind == "soft_delete" {
        o.entry("was_active").or_insert(Value::Bool(false));
    }
    Ok(params)
}

impl WorkflowKind {
    /// The workflow this one superseded (its server's previous task).
    pub(crate) fn supersedes(&self) -> Option<&str> {
        macro_rules! sup {
            ($($v:ident),*) => {
                match self {
                    $(WorkflowKind::$v(p) => p.supersedes.as_deref(),)*
                    _ => None,
                }
            };
        }
        sup!(
            Delete,
            SoftDelete,
            ForceDelete,
            Restore,
            RebootSoft,
            RebootHard,
            Start,
            Stop,
            Pause,
            Unpause,
            Suspend,
            Resume,
            Rescue,
            Unrescue,
            Rebuild,
            Resize,
            Migrate,
            ConfirmResize,
            RevertResize,
            LiveMigrate,
            Evacuate,
            CreateImage,
            CreateBackup,
            ChangePassword,
            Shelve,
            ShelveOffload,
            Unshelve,
            RunMaintenance,
            SyncPowerState
        )
    }

    /// Whether the server was active when the workflow started.
    pub(crate) fn was_active(&self) -> bool {
        self.store()["was_active"].as_bool() == Some(true)
    }

    /// The requested host (create, migrate, live_migrate, evacuate, unshelve).
    pub(crate) fn host(&self) -> Option<String> {
        match self {
            WorkflowKind::Create(p) => p.host.clone(),
            WorkflowKind::Migrate(p) => p.host.clone(),
            WorkflowKind::LiveMigrate(p) => p.host.clone(),
            WorkflowKind::Evacuate(p) => p.host.clone(),
            WorkflowKind::Unshelve(p) => p.host.clone(),
            _ => None,
        }
    }

    /// The destination chosen by `schedule_dest`.
    pub(crate) fn dest(&self) -> Option<&str> {
        match self {
            WorkflowKind::Resize(p) => p.dest.as_deref(),
            WorkflowKind::Migrate(p) => p.dest.as_deref(),
            WorkflowKind::LiveMigrate(p) => p.dest.as_deref(),
            WorkflowKind::Evacuate(p) => p.dest.as_deref(),
            _ => None,
        }
    }

    /// The destination, which a step after `schedule_dest` needs.
    pub(crate) fn need_dest(&self) -> Result<String, ComputeError> {
        self.dest().map(str::to_string).ok_or_else(|| {
            ComputeError::Internal(format!("{} has no destination yet", self.name()))
        })
    }

    /// Records the destination chosen by `schedule_dest`.
    pub(crate) fn set_dest(&mut self, dest: String) -> Result<(), ComputeError> {
        let slot = match self {
            WorkflowKind::Resize(p) => &mut p.dest,
            WorkflowKind::Migrate(p) => &mut p.dest,
            WorkflowKind::LiveMigrate(p) => &mut p.dest,
            WorkflowKind::Evacuate(p) => &mut p.dest,
            other => {
                return Err(ComputeError::Internal(format!(
                    "{} has no destination",
                    other.name()
                )))
            }
        };
        *slot = Some(dest);
        Ok(())
    }

    /// The image a rebuild or snapshot works on.
    pub(crate) fn image_id(&self) -> Option<&str> {
        match self {
            WorkflowKind::Rebuild(p) => Some(&p.image_id),
            WorkflowKind::CreateImage(p) => Some(&p.image_id),
            WorkflowKind::CreateBackup(p) => Some(&p.image_id),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
