//! Server state machine data: vm_state, task_state, power_state and the
//! mapping of (vm_state, task_state) to the API `status`, following Nova's
//! `nova/compute/{vm_states,task_states,power_state}.py` and
//! `nova/api/openstack/common.py::_STATE_MAP`.

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $var),+
        }
        // The OpenAPI schema lists the wire strings (what serde sends).
        impl<'s> ToSchema<'s> for $name {
            fn schema() -> (&'s str, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>) {
                (
                    stringify!($name),
                    utoipa::openapi::ObjectBuilder::new()
                        .schema_type(utoipa::openapi::SchemaType::String)
                        .enum_values(Some([$($s),+]))
                        .into(),
                )
            }
        }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The wire string (Nova's value).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s),+ }
            }
            /// Parses the wire string.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$var),)+ _ => None }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// Stable state of a server (Nova `vm_states`).
    VmState {
        Active = "active",
        Building = "building",
        Paused = "paused",
        Suspended = "suspended",
        Stopped = "stopped",
        Rescued = "rescued",
        Resized = "resized",
        SoftDeleted = "soft-delete",
        Deleted = "deleted",
        Error = "error",
        Shelved = "shelved",
        ShelvedOffloaded = "shelved_offloaded",
    }
);

string_enum!(
    /// Transient task of a server (Nova `task_states`); `None` means idle.
    TaskState {
        Scheduling = "scheduling",
        BlockDeviceMapping = "block_device_mapping",
        Networking = "networking",
        Spawning = "spawning",
        ImageSnapshot = "image_snapshot",
        ImageSnapshotPending = "image_snapshot_pending",
        ImagePendingUpload = "image_pending_upload",
        ImageUploading = "image_uploading",
        ImageBackup = "image_backup",
        UpdatingPassword = "updating_password",
        ResizePrep = "resize_prep",
        ResizeMigrating = "resize_migrating",
        ResizeMigrated = "resize_migrated",
        ResizeFinish = "resize_finish",
        ResizeReverting = "resize_reverting",
        ResizeConfirming = "resize_confirming",
        Rebooting = "rebooting",
        RebootPending = "reboot_pending",
        RebootStarted = "reboot_started",
        RebootingHard = "rebooting_hard",
        RebootPendingHard = "reboot_pending_hard",
        RebootStartedHard = "reboot_started_hard",
        Pausing = "pausing",
        Unpausing = "unpausing",
        Suspending = "suspending",
        Resuming = "resuming",
        PoweringOff = "powering-off",
        PoweringOn = "powering-on",
        Rescuing = "rescuing",
        Unrescuing = "unrescuing",
        Rebuilding = "rebuilding",
        RebuildBlockDeviceMapping = "rebuild_block_device_mapping",
        RebuildSpawning = "rebuild_spawning",
        Migrating = "migrating",
        Deleting = "deleting",
        SoftDeleting = "soft-deleting",
        Restoring = "restoring",
        Shelving = "shelving",
        ShelvingImagePendingUpload = "shelving_image_pending_upload",
        ShelvingImageUploading = "shelving_image_uploading",
        ShelvingOffloading = "shelving_offloading",
        Unshelving = "unshelving",
        /// Running a maintenance procedure in the guest (Lifeboat's own).
        Maintaining = "maintaining",
        /// Reading the VM's state from its host (Lifeboat's own).
        SyncingPowerState = "syncing_power_state",
        /// Replacing the VM with one restored from a store snapshot (Lifeboat's own).
        RestoringBackup = "restoring_backup",
    }
);

string_enum!(
    /// API status shown to users, derived from vm_state and task_state.
    Status {
        Active = "ACTIVE",
        Build = "BUILD",
        Reboot = "REBOOT",
        HardReboot = "HARD_REBOOT",
        Password = "PASSWORD",
        Rebuild = "REBUILD",
        Migrating = "MIGRATING",
        Resize = "RESIZE",
        VerifyResize = "VERIFY_RESIZE",
        RevertResize = "REVERT_RESIZE",
        Paused = "PAUSED",
        Suspended = "SUSPENDED",
        Rescue = "RESCUE",
        Shutoff = "SHUTOFF",
        Shelved = "SHELVED",
        ShelvedOffloaded = "SHELVED_OFFLOADED",
        SoftDeleted = "SOFT_DELETED",
        Deleted = "DELETED",
        Error = "ERROR",
        Unknown = "UNKNOWN",
    }
);

/// Hypervisor-reported power state (Nova `power_state`, integer on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "u8")]
pub enum PowerState {
    /// 0: no state / unknown.
    NoState,
    /// 1: running.
    Running,
    /// 3: paused.
    Paused,
    /// 4: shut down.
    Shutdown,
    /// 6: crashed.
    Crashed,
    /// 7: suspended.
    Suspended,
}

// An integer on the wire, so an integer enum in the OpenAPI document.
impl<'s> ToSchema<'s> for PowerState {
    fn schema() -> (
        &'s str,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    ) {
        let all = [
            PowerState::NoState,
            PowerState::Running,
            PowerState::Paused,
            PowerState::Shutdown,
            PowerState::Crashed,
            PowerState::Suspended,
        ];
        (
            "PowerState",
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::SchemaType::Integer)
                .enum_values(Some(all.map(PowerState::code)))
                .description(Some(
                    "0 pending, 1 running, 3 paused, 4 shutdown, 6 crashed, 7 suspended",
                ))
                .into(),
        )
    }
}

impl PowerState {
    /// Nova's integer code.
    pub fn code(self) -> u8 {
        match self {
            PowerState::NoState => 0,
            PowerState::Running => 1,
            PowerState::Paused => 3,
            PowerState::Shutdown => 4,
            PowerState::Crashed => 6,
            PowerState::Suspended => 7,
        }
    }
    /// Nova's name (`power_state.STATE_MAP`).
    pub fn name(self) -> &'static str {
        match self {
            PowerState::NoState => "pending",
            PowerState::Running => "running",
            PowerState::Paused => "paused",
            PowerState::Shutdown => "shutdown",
            PowerState::Crashed => "crashed",
            PowerState::Suspended => "suspended",
        }
    }
}

impl From<PowerState> for u8 {
    fn from(p: PowerState) -> u8 {
        p.code()
    }
}

impl TryFrom<u8> for PowerState {
    type Error = String;
    fn try_from(v: u8) -> Result<Self, String> {
        Ok(match v {
            0 => PowerState::NoState,
            1 => PowerState::Running,
            3 => PowerState::Paused,
            4 => PowerState::Shutdown,
            6 => PowerState::Crashed,
            7 => PowerState::Suspended,
            _ => return Err(format!("invalid power state {v}")),
        })
    }
}

use TaskState as T;

/// `_STATE_MAP`: per vm_state, the task_states that override the default status.
/// Returned as (default, overrides).
fn state_map(vm: VmState) -> (Status, &'static [(TaskState, Status)]) {
    const REBUILDS: [(TaskState, Status); 3] = [
        (T::Rebuilding, Status::Rebuild),
        (T::RebuildBlockDeviceMapping, Status::Rebuild),
        (T::RebuildSpawning, Status::Rebuild),
    ];
    match vm {
        VmState::Active => (
            Status::Active,
            &[
                (T::Rebooting, Status::Reboot),
                (T::RebootPending, Status::Reboot),
                (T::RebootStarted, Status::Reboot),
                (T::RebootingHard, Status::HardReboot),
                (T::RebootPendingHard, Status::HardReboot),
                (T::RebootStartedHard, Status::HardReboot),
                (T::UpdatingPassword, Status::Password),
                REBUILDS[0],
                REBUILDS[1],
                REBUILDS[2],
                (T::Migrating, Status::Migrating),
                (T::ResizePrep, Status::Resize),
                (T::ResizeMigrating, Status::Resize),
                (T::ResizeMigrated, Status::Resize),
                (T::ResizeFinish, Status::Resize),
            ],
        ),
        VmState::Building => (Status::Build, &[]),
        VmState::Stopped => (
            Status::Shutoff,
            &[
                (T::ResizePrep, Status::Resize),
                (T::ResizeMigrating, Status::Resize),
                (T::ResizeMigrated, Status::Resize),
                (T::ResizeFinish, Status::Resize),
                REBUILDS[0],
                REBUILDS[1],
                REBUILDS[2],
            ],
        ),
        VmState::Resized => (
            Status::VerifyResize,
            &[(T::ResizeReverting, Status::RevertResize)],
        ),
        VmState::Paused => (Status::Paused, &[(T::Migrating, Status::Migrating)]),
        VmState::Suspended => (Status::Suspended, &[]),
        VmState::Rescued => (Status::Rescue, &[]),
        VmState::Error => (Status::Error, &REBUILDS),
        VmState::Deleted => (Status::Deleted, &[]),
        VmState::SoftDeleted => (Status::SoftDeleted, &[]),
        VmState::Shelved => (Status::Shelved, &[]),
        VmState::ShelvedOffloaded => (Status::ShelvedOffloaded, &[]),
    }
}

/// The API status of a server in `vm` with task `task` (Nova `status_from_state`).
pub fn status_from_state(vm: VmState, task: Option<TaskState>) -> Status {
    let (default, overrides) = state_map(vm);
    task.and_then(|t| overrides.iter().find(|(k, _)| *k == t).map(|(_, s)| *s))
        .unwrap_or(default)
}

/// The vm_states a status filter selects (Nova `task_and_vm_state_from_status`).
/// Returns (vm_states, task_states filter or None for "any task").
pub fn states_for_status(status: Status) -> Vec<(VmState, Option<Vec<Option<TaskState>>>)> {
    let mut out = Vec::new();
    for vm in VmState::ALL {
        let (default, overrides) = state_map(*vm);
        let matching: Vec<Option<TaskState>> = overrides
            .iter()
            .filter(|(_, s)| *s == status)
            .map(|(t, _)| Some(*t))
            .collect();
        if default == status {
            // default applies to every task not overridden; Nova returns all
            // tasks for the vm_state in that case.
            out.push((*vm, None));
        } else if !matching.is_empty() {
            out.push((*vm, Some(matching)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pair_maps_to_a_status() {
        for vm in VmState::ALL {
            assert_ne!(status_from_state(*vm, None), Status::Unknown);
            for t in TaskState::ALL {
                let s = status_from_state(*vm, Some(*t));
                assert_ne!(s, Status::Unknown, "{vm}/{t}");
            }
        }
    }

    #[test]
    fn nova_examples() {
        assert_eq!(status_from_state(VmState::Active, None), Status::Active);
        assert_eq!(
            status_from_state(VmState::Active, Some(T::RebootingHard)),
            Status::HardReboot
        );
        assert_eq!(
            status_from_state(VmState::Active, Some(T::Rebooting)),
            Status::Reboot
        );
        assert_eq!(
            status_from_state(VmState::Stopped, Some(T::PoweringOn)),
            Status::Shutoff
        );
        assert_eq!(
            status_from_state(VmState::Resized, Some(T::ResizeReverting)),
            Status::RevertResize
        );
        assert_eq!(
            status_from_state(VmState::Resized, None),
            Status::VerifyResize
        );
        assert_eq!(
            status_from_state(VmState::Error, Some(T::Rebuilding)),
            Status::Rebuild
        );
        assert_eq!(
            status_from_state(VmState::Paused, Some(T::Migrating)),
            Status::Migrating
        );
        assert_eq!(
            status_from_state(VmState::Building, Some(T::Spawning)),
            Status::Build
        );
        assert_eq!(
            status_from_state(VmState::SoftDeleted, None),
            Status::SoftDeleted
        );
    }

    #[test]
    fn wire_strings_round_trip() {
        for vm in VmState::ALL {
            assert_eq!(VmState::parse(vm.as_str()), Some(*vm));
            let j = serde_json::to_string(vm).unwrap();
            assert_eq!(j, format!("\"{}\"", vm.as_str()));
        }
        for t in TaskState::ALL {
            assert_eq!(TaskState::parse(t.as_str()), Some(*t));
        }
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(*s));
        }
        assert_eq!(serde_json::to_string(&PowerState::Shutdown).unwrap(), "4");
        assert_eq!(
            serde_json::from_str::<PowerState>("1").unwrap(),
            PowerState::Running
        );
    }

    #[test]
    fn status_filter_inverse() {
        let act = states_for_status(Status::Active);
        assert_eq!(act, vec![(VmState::Active, None)]);
        let reb = states_for_status(Status::Rebuild);
        assert_eq!(reb.len(), 3);
    }
}
