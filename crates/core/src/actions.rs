//! The action table: for every server action, the vm_states and task_states
//! it is allowed in, the transient task_state it sets, the vm_state it
//! results in, whether a lock blocks it and who may call it. Follows the
//! `check_instance_state` / `check_instance_lock` decorators of Nova's
//! `nova/compute/api.py` (see `docs/nova-rules.md`).

use serde::{Deserialize, Serialize};
use std::fmt;
use utoipa::ToSchema;

use crate::model::{LockedBy, Server};
use crate::states::{PowerState, TaskState, VmState};

/// A role on a project.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only.
    Reader,
    /// Read and write own project's resources.
    Member,
    /// Everything, every project.
    Admin,
}

impl Role {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Member => "member",
            Role::Admin => "admin",
        }
    }
    /// Parses a role name (`_member_` is an alias of member).
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "reader" => Some(Role::Reader),
            "member" | "_member_" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// User id.
    pub user_id: String,
    /// User name.
    pub user_name: String,
    /// Project the call is scoped to.
    pub project_id: String,
    /// Highest role held on that project.
    pub role: Role,
}

impl Actor {
    /// Whether the actor is an administrator.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
    /// Whether the actor may see resources of `project_id`.
    pub fn can_see(&self, project_id: &str) -> bool {
        self.is_admin() || self.project_id == project_id
    }
}

macro_rules! actions {
    ($($var:ident = $s:literal),+ $(,)?) => {
        /// Every server action.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum Action { $(#[allow(missing_docs)] #[serde(rename = $s)] $var),+ }
        impl Action {
            /// Every action.
            pub const ALL: &'static [Action] = &[$(Action::$var),+];
            /// Stable snake_case name (native API, CLI, workflows).
            pub fn as_str(self) -> &'static str { match self { $(Action::$var => $s),+ } }
            /// Parses the snake_case name.
            pub fn parse(s: &str) -> Option<Action> { match s { $($s => Some(Action::$var),)+ _ => None } }
        }
        impl fmt::Display for Action {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

actions!(
    Create = "create",
    Update = "update",
    Delete = "delete",
    ForceDelete = "force_delete",
    Restore = "restore",
    RebootSoft = "reboot_soft",
    RebootHard = "reboot_hard",
    Rebuild = "rebuild",
    Resize = "resize",
    ConfirmResize = "confirm_resize",
    RevertResize = "revert_resize",
    CreateImage = "create_image",
    CreateBackup = "create_backup",
    ChangePassword = "change_password",
    ResetState = "reset_state",
    Pause = "pause",
    Unpause = "unpause",
    Suspend = "suspend",
    Resume = "resume",
    Lock = "lock",
    Unlock = "unlock",
    Rescue = "rescue",
    Unrescue = "unrescue",
    Evacuate = "evacuate",
    Start = "start",
    Stop = "stop",
    Shelve = "shelve",
    ShelveOffload = "shelve_offload",
    Unshelve = "unshelve",
    Migrate = "migrate",
    LiveMigrate = "live_migrate",
    TriggerCrashDump = "trigger_crash_dump",
    ConsoleOutput = "console_output",
    RemoteConsole = "remote_console",
    AddSecurityGroup = "add_security_group",
    RemoveSecurityGroup = "remove_security_group",
    AddFixedIp = "add_fixed_ip",
    RemoveFixedIp = "remove_fixed_ip",
    AddFloatingIp = "add_floating_ip",
    RemoveFloatingIp = "remove_floating_ip",
);

/// Which states an action accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowed<T: 'static> {
    /// Any value.
    Any,
    /// Only these values.
    Only(&'static [T]),
}

impl<T: PartialEq> Allowed<T> {
    /// Whether `v` is accepted.
    pub fn contains(&self, v: &T) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::Only(s) => s.contains(v),
        }
    }
}

/// What happens to vm_state when an action's workflow finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// vm_state is not changed.
    Unchanged,
    /// vm_state becomes this.
    To(VmState),
    /// vm_state returns to `old_vm_state` (or ACTIVE when unknown).
    Previous,
    /// The server is gone (deleted).
    Gone,
}

/// What happens when an action's workflow fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Completed steps are undone, task_state cleared, vm_state kept.
    Revert,
    /// The server goes to ERROR with a fault.
    Error,
}

/// Minimum role needed, before ownership and lock checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Readers of the project.
    Reader,
    /// Members of the project (the owner).
    Member,
    /// Administrators only.
    Admin,
}

/// One row of the action table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActionRule {
    /// The action.
    pub action: Action,
    /// Allowed vm_states.
    pub vm_states: Allowed<VmState>,
    /// Allowed task_states (`None` = idle).
    pub task_states: Allowed<Option<TaskState>>,
    /// task_state set when the action is accepted (None: no long task).
    pub task_state: Option<TaskState>,
    /// Resulting vm_state on success.
    pub outcome: Outcome,
    /// What a failure does.
    pub on_failure: OnFailure,
    /// Whether a lock blocks non-admins.
    pub checks_lock: bool,
    /// Whether the server must have been launched at least once.
    pub must_have_launched: bool,
    /// Whether the server must be running (power_state RUNNING).
    pub must_be_running: bool,
    /// Whether the server must have a host.
    pub needs_host: bool,
    /// Minimum role.
    pub policy: Policy,
    /// Whether it runs as a durable workflow (long) or is a record update.
    pub long: bool,
}

use Allowed::{Any, Only};
use TaskState as T;
use VmState as V;

const IDLE: Allowed<Option<TaskState>> = Only(&[None]);

const fn rule(action: Action) -> ActionRule {
    ActionRule {
        action,
        vm_states: Any,
        task_states: IDLE,
        task_state: None,
        outcome: Outcome::Unchanged,
        on_failure: OnFailure::Revert,
        checks_lock: true,
        must_have_launched: true,
        must_be_running: false,
        needs_host: false,
        policy: Policy::Member,
        long: true,
    }
}

/// Nova's `ALLOW_REBOOT`: the task_states a HARD reboot may interrupt.
const REBOOT_TASKS: &[Option<TaskState>] = &[
    None,
    Some(T::Rebooting),
    Some(T::RebootPending),
    Some(T::RebootStarted),
    Some(T::Resuming),
    Some(T::RebootingHard),
    Some(T::Unpausing),
    Some(T::Pausing),
    Some(T::Suspending),
];

/// The action table.
pub static TABLE: &[ActionRule] = &[
    ActionRule {
        vm_states: Any,
        task_states: Any,
        task_state: Some(T::Scheduling),
        outcome: Outcome::To(V::Active),
        on_failure: OnFailure::Error,
        checks_lock: false,
        must_have_launched: false,
        ..rule(Action::Create)
    },
    ActionRule {
        task_states: Any,
        long: false,
        must_have_launched: false,
        ..rule(Action::Update)
    },
    ActionRule {
        task_states: Any,
        task_state: Some(T::Deleting),
        outcome: Outcome::Gone,
        on_failure: OnFailure::Error,
        must_have_launched: false,
        ..rule(Action::Delete)
    },
    ActionRule {
        task_states: Any,
        task_state: Some(T::Deleting),
        outcome: Outcome::Gone,
        on_failure: OnFailure::Error,
        must_have_launched: false,
        ..rule(Action::ForceDelete)
    },
    ActionRule {
        vm_states: Only(&[V::SoftDeleted]),
        task_state: Some(T::Restoring),
        outcome: Outcome::To(V::Active),
        ..rule(Action::Restore)
    },
    ActionRule {
        vm_states: Only(&[V::Active]),
        task_states: Only(&[None]),
        task_state: Some(T::Rebooting),
        outcome: Outcome::To(V::Active),
        on_failure: OnFailure::Error,
        ..rule(Action::RebootSoft)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Stopped, V::Paused, V::Suspended, V::Error]),
        task_states: Only(REBOOT_TASKS),
        task_state: Some(T::RebootingHard),
        outcome: Outcome::To(V::Active),
        on_failure: OnFailure::Error,
        ..rule(Action::RebootHard)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Stopped, V::Error]),
        task_state: Some(T::Rebuilding),
        outcome: Outcome::Previous,
        on_failure: OnFailure::Error,
        ..rule(Action::Rebuild)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Stopped]),
        task_state: Some(T::ResizePrep),
        outcome: Outcome::To(V::Resized),
        needs_host: true,
        ..rule(Action::Resize)
    },
    ActionRule {
        vm_states: Only(&[V::Resized]),
        task_state: Some(T::ResizeConfirming),
        outcome: Outcome::Previous,
        ..rule(Action::ConfirmResize)
    },
    ActionRule {
        vm_states: Only(&[V::Resized]),
        task_state: Some(T::ResizeReverting),
        outcome: Outcome::Previous,
        ..rule(Action::RevertResize)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Stopped, V::Paused, V::Suspended]),
        task_state: Some(T::ImageSnapshotPending),
        checks_lock: false,
        ..rule(Action::CreateImage)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Stopped, V::Paused, V::Suspended]),
        task_state: Some(T::ImageBackup),
        checks_lock: false,
        ..rule(Action::CreateBackup)
    },
    ActionRule {
        vm_states: Only(&[V::Active]),
        task_state: Some(T::UpdatingPassword),
        needs_host: true,
        ..rule(Action::ChangePassword)
    },
    ActionRule {
        task_states: Any,
        checks_lock: false,
        policy: Policy::Admin,
        long: false,
        must_have_launched: false,
        ..rule(Action::ResetState)
    },
    ActionRule {
        vm_states: Only(&[V::Active]),
        task_state: Some(T::Pausing),
        outcome: Outcome::To(V::Paused),
        needs_host: true,
        ..rule(Action::Pause)
    },
    ActionRule {
        vm_states: Only(&[V::Paused]),
        task_state: Some(T::Unpausing),
        outcome: Outcome::To(V::Active),
        needs_host: true,
        ..rule(Action::Unpause)
    },
    ActionRule {
        vm_states: Only(&[V::Active]),
        task_state: Some(T::Suspending),
        outcome: Outcome::To(V::Suspended),
        needs_host: true,
        ..rule(Action::Suspend)
    },
    ActionRule {
        vm_states: Only(&[V::Suspended]),
        task_state: Some(T::Resuming),
        outcome: Outcome::To(V::Active),
        needs_host: true,
        ..rule(Action::Resume)
    },
    ActionRule {
        task_states: Any,
        checks_lock: false,
        long: false,
        must_have_launched: false,
        ..rule(Action::Lock)
    },
    ActionRule {
        task_states: Any,
        checks_lock: false,
        long: false,
        must_have_launched: false,
        ..rule(Action::Unlock)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Stopped, V::Error]),
        task_state: Some(T::Rescuing),
        outcome: Outcome::To(V::Rescued),
        needs_host: true,
        ..rule(Action::Rescue)
    },
    ActionRule {
        vm_states: Only(&[V::Rescued]),
        task_state: Some(T::Unrescuing),
        outcome: Outcome::To(V::Active),
        needs_host: true,
        ..rule(Action::Unrescue)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Stopped, V::Error]),
        task_state: Some(T::Rebuilding),
        outcome: Outcome::Previous,
        on_failure: OnFailure::Error,
        checks_lock: false,
        policy: Policy::Admin,
        ..rule(Action::Evacuate)
    },
    ActionRule {
        vm_states: Only(&[V::Stopped]),
        task_state: Some(T::PoweringOn),
        outcome: Outcome::To(V::Active),
        needs_host: true,
        ..rule(Action::Start)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Error]),
        task_state: Some(T::PoweringOff),
        outcome: Outcome::To(V::Stopped),
        needs_host: true,
        ..rule(Action::Stop)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Stopped, V::Paused, V::Suspended]),
        task_state: Some(T::Shelving),
        outcome: Outcome::To(V::Shelved),
        ..rule(Action::Shelve)
    },
    ActionRule {
        vm_states: Only(&[V::Shelved]),
        task_state: Some(T::ShelvingOffloading),
        outcome: Outcome::To(V::ShelvedOffloaded),
        policy: Policy::Admin,
        ..rule(Action::ShelveOffload)
    },
    ActionRule {
        vm_states: Only(&[V::Shelved, V::ShelvedOffloaded]),
        task_state: Some(T::Unshelving),
        outcome: Outcome::To(V::Active),
        ..rule(Action::Unshelve)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Stopped]),
        task_state: Some(T::ResizePrep),
        outcome: Outcome::To(V::Resized),
        needs_host: true,
        policy: Policy::Admin,
        ..rule(Action::Migrate)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Paused]),
        task_state: Some(T::Migrating),
        outcome: Outcome::Unchanged,
        needs_host: true,
        policy: Policy::Admin,
        ..rule(Action::LiveMigrate)
    },
    ActionRule {
        vm_states: Only(&[V::Active, V::Paused, V::Rescued, V::Resized, V::Error]),
        needs_host: true,
        long: false,
        ..rule(Action::TriggerCrashDump)
    },
    ActionRule {
        task_states: Any,
        checks_lock: false,
        needs_host: true,
        // Nova's os_compute_api:os-console-output is PROJECT_MEMBER_OR_ADMIN.
        long: false,
        must_have_launched: false,
        ..rule(Action::ConsoleOutput)
    },
    ActionRule {
        task_states: Any,
        checks_lock: false,
        needs_host: true,
        long: false,
        must_have_launched: false,
        ..rule(Action::RemoteConsole)
    },
    ActionRule {
        task_states: Any,
        checks_lock: false,
        long: false,
        must_have_launched: false,
        ..rule(Action::AddSecurityGroup)
    },
    ActionRule {
        task_states: Any,
        checks_lock: false,
        long: false,
        must_have_launched: false,
        ..rule(Action::RemoveSecurityGroup)
    },
    ActionRule {
        task_states: Any,
        long: false,
        must_have_launched: false,
        ..rule(Action::AddFixedIp)
    },
    ActionRule {
        task_states: Any,
        long: false,
        must_have_launched: false,
        ..rule(Action::RemoveFixedIp)
    },
    ActionRule {
        task_states: Any,
        checks_lock: false,
        long: false,
        must_have_launched: false,
        ..rule(Action::AddFloatingIp)
    },
    ActionRule {
        task_states: Any,
        checks_lock: false,
        long: false,
        must_have_launched: false,
        ..rule(Action::RemoveFloatingIp)
    },
];

impl Action {
    /// This action's rule.
    pub fn rule(self) -> &'static ActionRule {
        TABLE
            .iter()
            .find(|r| r.action == self)
            .expect("every action has a rule (checked by tests)")
    }
}

/// Which state attribute refused an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateAttr {
    /// The server's vm_state is not accepted.
    VmState,
    /// The server's task_state is not accepted.
    TaskState,
}

impl fmt::Display for StateAttr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StateAttr::VmState => "vm_state",
            StateAttr::TaskState => "task_state",
        })
    }
}

/// A permission the caller lacks. Each front names it in its own terms
/// (the OpenStack front as a Nova policy name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Running a server action.
    Action(Action),
    /// Unlocking a server an administrator locked.
    UnlockOverride,
    /// Creating a server on a named host through `zone:host`.
    CreateForcedHost,
    /// Creating a server on a requested host.
    CreateRequestedDestination,
    /// Unshelving a server to a named host.
    UnshelveToHost,
    /// Creating a flavor.
    FlavorCreate,
    /// Deleting a flavor.
    FlavorDelete,
}

/// Why an action was refused, in Lifeboat's own terms. Each front renders
/// each reason in its vendor's format; no vendor text lives here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionDenied {
    /// The server's vm_state or task_state does not accept the action.
    #[error("{action} is not allowed on server {server_id} while its {attr} is {}", state_value(*.attr, *.vm_state, *.task_state))]
    WrongState {
        /// The refused action.
        action: Action,
        /// Server id.
        server_id: String,
        /// Which attribute refused it.
        attr: StateAttr,
        /// The server's vm_state.
        vm_state: VmState,
        /// The server's task_state (`None` when idle).
        task_state: Option<TaskState>,
    },
    /// Locked.
    #[error("server {server_id} is locked")]
    Locked {
        /// Server id.
        server_id: String,
    },
    /// Not running.
    #[error("server {server_id} is not running")]
    NotRunning {
        /// Server id.
        server_id: String,
    },
    /// Never launched.
    #[error("server {server_id} was never launched, so {action} is not possible")]
    NotLaunched {
        /// The refused action.
        action: Action,
        /// Server id.
        server_id: String,
    },
    /// The server's host cannot serve the request yet (e.g. its console).
    #[error("server {server_id} is not ready")]
    NotReady {
        /// Server id.
        server_id: String,
    },
    /// No host yet.
    #[error("server {server_id} has no host")]
    NoHost {
        /// Server id.
        server_id: String,
    },
    /// The caller lacks a permission.
    #[error("not permitted: {permission:?}")]
    Forbidden {
        /// The missing permission.
        permission: Permission,
    },
    /// A host or zone was asked for, which only a shelved-offloaded server accepts.
    #[error("server {server_id} in {vm_state} cannot be unshelved to a host or zone")]
    NotOffloaded {
        /// Server id.
        server_id: String,
        /// Its vm_state.
        vm_state: VmState,
    },
}

/// The value named by a [`StateAttr`]: the vm_state, or the task_state (`None` when idle).
pub fn state_value(attr: StateAttr, vm: VmState, task: Option<TaskState>) -> &'static str {
    match attr {
        StateAttr::VmState => vm.as_str(),
        StateAttr::TaskState => task.map(|t| t.as_str()).unwrap_or("None"),
    }
}

impl ActionDenied {
    /// HTTP status a REST front uses.
    pub fn http_status(&self) -> u16 {
        match self {
            ActionDenied::Forbidden { .. } => 403,
            _ => 409,
        }
    }
}

/// Checks whether `actor` may run `action` on `server` now. This is the one
/// place that decides; fronts only translate the error.
pub fn check(
    action: Action,
    server: &Server,
    actor: &Actor,
) -> Result<&'static ActionRule, ActionDenied> {
    let r = action.rule();
    let allowed_role = match r.policy {
        Policy::Reader => true,
        Policy::Member => actor.role >= Role::Member,
        Policy::Admin => actor.is_admin(),
    };
    if !allowed_role {
        return Err(ActionDenied::Forbidden {
            permission: Permission::Action(action),
        });
    }
    if r.checks_lock && server.locked && !actor.is_admin() {
        return Err(ActionDenied::Locked {
            server_id: server.id.clone(),
        });
    }
    if action == Action::Unlock
        && server.locked
        && server.locked_by == Some(LockedBy::Admin)
        && !actor.is_admin()
    {
        return Err(ActionDenied::Forbidden {
            permission: Permission::UnlockOverride,
        });
    }
    if !r.vm_states.contains(&server.vm_state) {
        return Err(wrong_state(action, server, StateAttr::VmState));
    }
    if !r.task_states.contains(&server.task_state) {
        return Err(wrong_state(action, server, StateAttr::TaskState));
    }
    if r.must_have_launched && server.launched_at.is_none() {
        return Err(ActionDenied::NotLaunched {
            action,
            server_id: server.id.clone(),
        });
    }
    if r.needs_host && server.host.is_none() {
        return Err(ActionDenied::NoHost {
            server_id: server.id.clone(),
        });
    }
    if r.must_be_running && server.power_state != PowerState::Running {
        return Err(ActionDenied::NotRunning {
            server_id: server.id.clone(),
        });
    }
    Ok(r)
}

fn wrong_state(action: Action, server: &Server, attr: StateAttr) -> ActionDenied {
    ActionDenied::WrongState {
        action,
        server_id: server.id.clone(),
        attr,
        vm_state: server.vm_state,
        task_state: server.task_state,
    }
}

/// Applies the accepted action to the server record: sets the transient
/// task_state and remembers the vm_state to return to. Call after [`check`].
pub fn begin(rule: &ActionRule, server: &mut Server) {
    if let Some(t) = rule.task_state {
        server.task_state = Some(t);
    }
    match rule.action {
        // A rebuild or evacuation of an errored server brings it back active.
        Action::Rebuild | Action::Evacuate => {
            server.old_vm_state = Some(if server.vm_state == VmState::Error {
                VmState::Active
            } else {
                server.vm_state
            })
        }
        Action::Resize | Action::Migrate | Action::Restore => {
            server.old_vm_state = Some(server.vm_state)
        }
        _ => {}
    }
}

/// Applies the successful end of an action: the resulting vm_state, task
/// cleared. Returns false when the server is gone.
pub fn finish(rule: &ActionRule, server: &mut Server) -> bool {
    let Some(vm) = resulting_vm_state(rule, server) else {
        return false;
    };
    server.vm_state = vm;
    server.task_state = None;
    if matches!(
        rule.action,
        Action::ConfirmResize | Action::RevertResize | Action::Rebuild | Action::Evacuate
    ) {
        server.old_vm_state = None;
    }
    true
}

/// Applies a failed action: ERROR or back to the previous state, task cleared.
pub fn fail(rule: &ActionRule, server: &mut Server) {
    server.task_state = None;
    if rule.on_failure == OnFailure::Error {
        server.vm_state = VmState::Error;
    }
}

/// The vm_state a finished action leaves the server in.
pub fn resulting_vm_state(rule: &ActionRule, server: &Server) -> Option<VmState> {
    match rule.outcome {
        Outcome::Unchanged => Some(server.vm_state),
        Outcome::To(v) => Some(v),
        Outcome::Previous => Some(server.old_vm_state.unwrap_or(VmState::Active)),
        Outcome::Gone => None,
    }
}

#[cfg(test)]
mod tests;
