//! The action table: for every server action, the vm_states and task_states
//! it is allowed in, the transient task_state it sets, the vm_state it
//! results in, whether a lock blocks it and who may call it. Follows the
//! `check_instance_state` / `check_instance_lock` decorators of Nova's
//! `nova/compute/api.py` (see `docs/nova-rules.md`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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

mod list;

/// Derives [`Action`], [`TABLE`] and [`ServerAction`] from [`server_actions!`](crate::server_actions).
macro_rules! actions {
    (@base $var:ident) => { rule(Action::$var) };
    (@base $var:ident $base:ident) => { $base(Action::$var) };
    (@kind $var:ident) => { Action::$var };
    (@kind $var:ident $k:expr) => { $k };
    ($(
        $(#[$m:meta])* $var:ident = $s:literal $(as $base:ident)? { $($field:ident : $val:expr),* $(,)? }
        $(request $(#[$rm:meta])* $req:ident $({ $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? })?
            $(kind($k:expr))? => $($h:ident)::+)?
        $(params { $($(#[$pm:meta])* $p:ident : $pt:ty),* $(,)? })?
        $(steps $plan:tt)?
    ),+ $(,)?) => {
        /// Every server action.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum Action { $($(#[$m])* #[serde(rename = $s)] $var),+ }
        impl Action {
            /// Every action, in table order.
            pub const ALL: &'static [Action] = &[$(Action::$var),+];
            /// Stable snake_case name (native API, CLI, workflows).
            pub fn as_str(self) -> &'static str { match self { $(Action::$var => $s),+ } }
            /// Parses the snake_case name.
            pub fn parse(s: &str) -> Option<Action> { match s { $($s => Some(Action::$var),)+ _ => None } }
            /// This action's row of [`TABLE`].
            pub fn rule(self) -> &'static ActionRule { &TABLE[self as usize] }
        }
        impl fmt::Display for Action {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        /// The action table: one row per action, in [`Action`] order, each
        /// the defaults of [`rule`] with the row's own columns.
        pub static TABLE: &[ActionRule] = &[$(ActionRule { $($field: $val,)* ..actions!(@base $var $($base)?) }),+];

        /// A server action a front asks for, with its parameters (the
        /// `request` of its row in [`server_actions!`]; the native API's
        /// body, tagged by `action`).
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
        #[serde(tag = "action", rename_all = "snake_case")]
        #[allow(missing_docs)]
        pub enum ServerAction {
            $($( $(#[$rm])* $req $({ $($(#[$fm])* $f: $t),* })?, )?)+
        }
        impl ServerAction {
            /// The action-table row this request is checked against.
            pub fn kind(&self) -> Action {
                match self {
                    $($(
                        #[allow(unused_variables)]
                        ServerAction::$req { $($($f,)*)? .. } => actions!(@kind $var $($k)?),
                    )?)+
                }
            }
        }
    };
}

crate::server_actions!(actions);

impl ServerAction {
    /// What the request asks beyond its action, for the table's guards
    /// (a destination host, a zone).
    pub fn ask(&self) -> Ask<'static> {
        let mut ask = Ask::default();
        match self {
            ServerAction::Unshelve {
                availability_zone,
                host,
            } => {
                ask.host = host.is_some();
                ask.zone = availability_zone.is_some();
            }
            ServerAction::Evacuate { host, .. }
            | ServerAction::Migrate { host }
            | ServerAction::LiveMigrate { host } => ask.host = host.is_some(),
            _ => {}
        }
        ask
    }
}

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
    /// SHELVED, or SHELVED_OFFLOADED once the server has no host any more
    /// (a shelve that offloads at once).
    Shelved,
    /// The server is gone: DELETED, power NOSTATE, terminated, detached.
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

/// What `old_vm_state` remembers when an action begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remember {
    /// Nothing.
    Nothing,
    /// The current vm_state (to return to: resize, migrate, restore).
    State,
    /// The current vm_state, ACTIVE for an errored server (rebuild, evacuate).
    StateOrActive,
}

/// A named predicate of a row, beyond its state columns: a rule that needs
/// what the request asks ([`Ask`]) or who locked the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// A server an administrator locked is unlocked by administrators only.
    AdminLockNeedsAdmin,
    /// A host forced through `zone:host` is for administrators only.
    ForcedHostNeedsAdmin,
    /// A requested destination host is for administrators only; the
    /// permission names the refusal.
    RequestedHostNeedsAdmin(Permission),
    /// Asking for a host or a zone needs a shelved-offloaded server.
    DestinationNeedsOffloaded,
    /// The server's host must be down (evacuate).
    SourceHostDown,
    /// The server's disk must be whole on its host: refused while an instant
    /// restore still copies it from the snapshot store ([`Ask::restoring`]).
    DiskLocal,
}

/// What a request asks beyond its action, for the [`Guard`]s. Filled by the
/// engine from the typed request and the host records; `Ask::default()`
/// asks nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ask<'a> {
    /// A host named with `zone:host` (create).
    pub forced_host: bool,
    /// A destination host named.
    pub host: bool,
    /// An availability zone named.
    pub zone: bool,
    /// The server's host and whether it is up (None: unknown host).
    pub source_host: Option<(&'a str, Option<bool>)>,
    /// The server's disk is still being copied from the snapshot store (an
    /// instant restore whose background copy has not finished).
    pub restoring: bool,
}

/// `true`: the default of a request's flag that is on unless asked otherwise.
pub fn default_true() -> bool {
    true
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
    /// power_state on success (None: as the steps left it).
    pub power: Option<PowerState>,
    /// Whether success stamps `launched_at` (a new guest is running).
    pub launches: bool,
    /// What `old_vm_state` remembers at the start.
    pub remember: Remember,
    /// Whether success forgets `old_vm_state`.
    pub forgets_old_state: bool,
    /// Whether the start clears the fault of an earlier failure.
    pub clears_fault: bool,
    /// What a failure does.
    pub on_failure: OnFailure,
    /// Whether a lock blocks non-admins.
    pub checks_lock: bool,
    /// Whether the server must have been launched at least once.
    pub must_have_launched: bool,
    /// Whether the server must have a host.
    pub needs_host: bool,
    /// Named predicates checked after the columns, in order.
    pub guards: &'static [Guard],
    /// Minimum role.
    pub policy: Policy,
    /// Whether it runs as a durable workflow (long) or is a record update.
    /// The engine starts a workflow exactly for long actions.
    pub long: bool,
}

use Allowed::{Any, Only};
use PowerState as P;
use TaskState as T;
use VmState as V;

const IDLE: Allowed<Option<TaskState>> = Only(&[None]);

/// The defaults of a row: a long, lock-checked member action on a launched,
/// idle server in any vm_state, that changes nothing and reverts on failure.
const fn rule(action: Action) -> ActionRule {
    ActionRule {
        action,
        vm_states: Any,
        task_states: IDLE,
        task_state: None,
        outcome: Outcome::Unchanged,
        power: None,
        launches: false,
        remember: Remember::Nothing,
        forgets_old_state: false,
        clears_fault: false,
        on_failure: OnFailure::Revert,
        checks_lock: true,
        must_have_launched: true,
        needs_host: false,
        guards: &[],
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

/// A short action: a record update, in any task_state.
const fn short(action: Action) -> ActionRule {
    ActionRule {
        task_states: Any,
        long: false,
        must_have_launched: false,
        ..rule(action)
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
    /// Listing who may use a private flavor.
    FlavorAccessList,
    /// Granting a project a private flavor.
    FlavorAccessAdd,
    /// Revoking a project's private flavor.
    FlavorAccessRemove,
    /// Reading another project's quotas.
    QuotaShow,
    /// Changing a project's quotas.
    QuotaUpdate,
    /// Changing a quota class (the defaults).
    QuotaClassUpdate,
    /// Dropping a project's quota overrides.
    QuotaDelete,
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
    /// The server's host is still up (evacuate needs it down).
    #[error("host {host} is up: evacuate needs it down")]
    HostUp {
        /// The host.
        host: String,
    },
    /// The server's disk is still being copied from the snapshot store (instant
    /// restore), and the action needs the whole disk on the host.
    #[error("{action} is not possible on server {server_id} until its instant restore has copied its disk from the snapshot store")]
    Restoring {
        /// The refused action.
        action: Action,
        /// Server id.
        server_id: String,
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
            ActionDenied::HostUp { .. } => 400,
            _ => 409,
        }
    }
}

/// Checks whether `actor` may run `action` on `server` now, asking nothing
/// beyond the action ([`check_with`] with `Ask::default()`).
pub fn check(
    action: Action,
    server: &Server,
    actor: &Actor,
) -> Result<&'static ActionRule, ActionDenied> {
    check_with(action, server, actor, &Ask::default())
}

/// Checks whether `actor` may run `action` on `server` now: the row's role,
/// lock, state and host columns, then its named [`Guard`]s against `ask`.
/// This is the one place that decides; fronts only translate the error.
pub fn check_with(
    action: Action,
    server: &Server,
    actor: &Actor,
    ask: &Ask<'_>,
) -> Result<&'static ActionRule, ActionDenied> {
    let r = action.rule();
    check_role(r, actor)?;
    if r.checks_lock && server.locked && !actor.is_admin() {
        return Err(ActionDenied::Locked {
            server_id: server.id.clone(),
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
    for g in r.guards {
        guard(action, *g, Some(server), actor, ask)?;
    }
    Ok(r)
}

/// Checks an action that has no server yet (create): the row's role and its
/// guards that do not need a server.
pub fn check_new(
    action: Action,
    actor: &Actor,
    ask: &Ask<'_>,
) -> Result<&'static ActionRule, ActionDenied> {
    let r = action.rule();
    check_role(r, actor)?;
    for g in r.guards {
        guard(action, *g, None, actor, ask)?;
    }
    Ok(r)
}

fn check_role(r: &ActionRule, actor: &Actor) -> Result<(), ActionDenied> {
    let allowed = match r.policy {
        Policy::Reader => true,
        Policy::Member => actor.role >= Role::Member,
        Policy::Admin => actor.is_admin(),
    };
    if allowed {
        Ok(())
    } else {
        Err(ActionDenied::Forbidden {
            permission: Permission::Action(r.action),
        })
    }
}

/// One named predicate.
fn guard(
    action: Action,
    g: Guard,
    server: Option<&Server>,
    actor: &Actor,
    ask: &Ask<'_>,
) -> Result<(), ActionDenied> {
    let forbid = |permission| Err(ActionDenied::Forbidden { permission });
    match g {
        Guard::AdminLockNeedsAdmin => {
            if let Some(s) = server {
                if s.locked && s.locked_by == Some(LockedBy::Admin) && !actor.is_admin() {
                    return forbid(Permission::UnlockOverride);
                }
            }
        }
        Guard::ForcedHostNeedsAdmin => {
            if ask.forced_host && !actor.is_admin() {
                return forbid(Permission::CreateForcedHost);
            }
        }
        Guard::RequestedHostNeedsAdmin(p) => {
            if (ask.host || ask.forced_host) && !actor.is_admin() {
                return forbid(p);
            }
        }
        Guard::DestinationNeedsOffloaded => {
            if let Some(s) = server {
                if (ask.host || ask.zone) && s.vm_state != VmState::ShelvedOffloaded {
                    return Err(ActionDenied::NotOffloaded {
                        server_id: s.id.clone(),
                        vm_state: s.vm_state,
                    });
                }
            }
        }
        Guard::SourceHostDown => {
            if let Some((host, Some(true))) = ask.source_host {
                return Err(ActionDenied::HostUp { host: host.into() });
            }
        }
        Guard::DiskLocal => {
            if let (Some(s), true) = (server, ask.restoring) {
                return Err(ActionDenied::Restoring {
                    action,
                    server_id: s.id.clone(),
                });
            }
        }
    }
    Ok(())
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
/// task_state, remembers the vm_state to return to and clears an old fault,
/// as the row says. Call after [`check`].
pub fn begin(rule: &ActionRule, server: &mut Server) {
    if let Some(t) = rule.task_state {
        server.task_state = Some(t);
    }
    match rule.remember {
        Remember::Nothing => {}
        Remember::State => server.old_vm_state = Some(server.vm_state),
        // A rebuild or evacuation of an errored server brings it back active.
        Remember::StateOrActive => {
            server.old_vm_state = Some(if server.vm_state == VmState::Error {
                VmState::Active
            } else {
                server.vm_state
            })
        }
    }
    if rule.clears_fault {
        server.fault = None;
    }
}

/// Applies the successful end of an action now ([`finish_at`]).
pub fn finish(rule: &ActionRule, server: &mut Server) -> bool {
    finish_at(rule, server, crate::now())
}

/// Applies the successful end of an action at `at`: the row's vm_state
/// outcome and power state, `launched_at` for a launch, task cleared.
/// Returns false when the server is gone (DELETED).
pub fn finish_at(rule: &ActionRule, server: &mut Server, at: crate::Time) -> bool {
    server.task_state = None;
    if let Some(p) = rule.power {
        server.power_state = p;
    }
    if rule.launches {
        server.launched_at = Some(at);
        server.progress = 100;
    }
    let outcome = resulting_vm_state(rule, server);
    if rule.forgets_old_state {
        server.old_vm_state = None;
    }
    match outcome {
        Some(vm) => {
            if vm == VmState::SoftDeleted {
                server.deleted_at = Some(at);
            }
            server.vm_state = vm;
            true
        }
        None => {
            server.vm_state = VmState::Deleted;
            server.power_state = PowerState::NoState;
            server.terminated_at = Some(at);
            server.attachments.clear();
            false
        }
    }
}

/// Applies a failed action: ERROR or back to the previous state, task cleared.
/// Returns whether the server went to ERROR.
pub fn fail(rule: &ActionRule, server: &mut Server) -> bool {
    server.task_state = None;
    if rule.on_failure == OnFailure::Error {
        server.vm_state = VmState::Error;
    }
    rule.on_failure == OnFailure::Error
}

/// The vm_state a finished action leaves the server in (None: gone).
pub fn resulting_vm_state(rule: &ActionRule, server: &Server) -> Option<VmState> {
    match rule.outcome {
        Outcome::Unchanged => Some(server.vm_state),
        Outcome::To(v) => Some(v),
        Outcome::Previous => Some(server.old_vm_state.unwrap_or(VmState::Active)),
        Outcome::Shelved if server.host.is_none() => Some(VmState::ShelvedOffloaded),
        Outcome::Shelved => Some(VmState::Shelved),
        Outcome::Gone => None,
    }
}

#[cfg(test)]
mod tests;
