//! Nova's words for Lifeboat's terms: action names as Nova's conflict
//! messages spell them, policy names, and the sentences Nova answers a
//! refused action with. The engine and core return typed reasons
//! ([`ActionDenied`]); this module is the only place that turns them into
//! Nova's text.

use lifeboat_core::{Action, ActionDenied, Permission};
use lifeboat_engine::{Field, OverQuota, QuotaExceeded, Reason, Resource};

/// The name Nova uses for `action` in `Cannot '<name>' instance ...`.
pub fn action_name(action: Action) -> &'static str {
    use Action as A;
    match action {
        A::Create => "create",
        A::Update => "update",
        A::Delete | A::SoftDelete => "delete",
        A::ForceDelete => "forceDelete",
        A::Restore => "restore",
        A::RebootSoft | A::RebootHard => "reboot",
        A::Rebuild => "rebuild",
        A::Resize => "resize",
        A::ConfirmResize => "confirmResize",
        A::RevertResize => "revertResize",
        A::CreateImage => "createImage",
        A::CreateBackup => "createBackup",
        A::ChangePassword => "changePassword",
        A::ResetState => "os-resetState",
        A::Pause => "pause",
        A::Unpause => "unpause",
        A::Suspend => "suspend",
        A::Resume => "resume",
        A::Lock => "lock",
        A::Unlock => "unlock",
        A::Rescue => "rescue",
        A::Unrescue => "unrescue",
        A::Evacuate => "evacuate",
        A::Start => "start",
        A::Stop => "stop",
        A::Shelve => "shelve",
        A::ShelveOffload => "shelveOffload",
        A::Unshelve => "unshelve",
        A::Migrate => "migrate",
        A::LiveMigrate => "os-migrateLive",
        A::TriggerCrashDump => "trigger_crash_dump",
        A::ConsoleOutput => "os-getConsoleOutput",
        A::RemoteConsole => "remote_consoles",
        A::AddSecurityGroup => "addSecurityGroup",
        A::RemoveSecurityGroup => "removeSecurityGroup",
        A::AddFixedIp => "addFixedIp",
        A::RemoveFixedIp => "removeFixedIp",
        A::AttachInterface => "attach_interface",
        A::DetachInterface => "detach_interface",
        A::AddFloatingIp => "addFloatingIp",
        A::RemoveFloatingIp => "removeFloatingIp",
        A::RunMaintenance => "run_maintenance",
        A::SyncPowerState => "sync_power_state",
        A::RestoreBackup => "restore_backup",
    }
}

/// Nova's instance action name (`os-instance-actions`) of a workflow kind.
pub fn instance_action_name(kind: &str) -> &str {
    match kind {
        "soft_delete" | "force_delete" => "delete",
        "reboot_soft" | "reboot_hard" => "reboot",
        "confirm_resize" => "confirmResize",
        "revert_resize" => "revertResize",
        "create_image" => "createImage",
        "create_backup" => "backup",
        "change_password" => "changePassword",
        "shelve_offload" => "shelveOffload",
        "live_migrate" => "live-migration",
        "reset_state" => "resetState",
        other => other,
    }
}

/// The Nova policy name (`nova/policies/*.py`) of an action.
pub fn action_policy(action: Action) -> &'static str {
    use Action as A;
    match action {
        A::Create => "os_compute_api:servers:create",
        A::Update => "os_compute_api:servers:update",
        A::Delete | A::SoftDelete => "os_compute_api:servers:delete",
        A::ForceDelete => "os_compute_api:os-deferred-delete:force",
        A::Restore => "os_compute_api:os-deferred-delete:restore",
        A::RebootSoft | A::RebootHard => "os_compute_api:servers:reboot",
        A::Rebuild => "os_compute_api:servers:rebuild",
        A::Resize => "os_compute_api:servers:resize",
        A::ConfirmResize => "os_compute_api:servers:confirm_resize",
        A::RevertResize => "os_compute_api:servers:revert_resize",
        A::CreateImage => "os_compute_api:servers:create_image",
        A::CreateBackup => "os_compute_api:os-create-backup",
        A::ChangePassword => "os_compute_api:os-admin-password",
        A::ResetState => "os_compute_api:os-admin-actions:reset_state",
        A::Pause => "os_compute_api:os-pause-server:pause",
        A::Unpause => "os_compute_api:os-pause-server:unpause",
        A::Suspend => "os_compute_api:os-suspend-server:suspend",
        A::Resume => "os_compute_api:os-suspend-server:resume",
        A::Lock => "os_compute_api:os-lock-server:lock",
        A::Unlock => "os_compute_api:os-lock-server:unlock",
        A::Rescue => "os_compute_api:os-rescue",
        A::Unrescue => "os_compute_api:os-unrescue",
        A::Evacuate => "os_compute_api:os-evacuate",
        A::Start => "os_compute_api:servers:start",
        A::Stop => "os_compute_api:servers:stop",
        A::Shelve => "os_compute_api:os-shelve:shelve",
        A::ShelveOffload => "os_compute_api:os-shelve:shelve_offload",
        A::Unshelve => "os_compute_api:os-shelve:unshelve",
        A::Migrate => "os_compute_api:os-migrate-server:migrate",
        A::LiveMigrate => "os_compute_api:os-migrate-server:migrate_live",
        A::TriggerCrashDump => "os_compute_api:servers:trigger_crash_dump",
        A::ConsoleOutput => "os_compute_api:os-console-output",
        A::RemoteConsole => "os_compute_api:os-remote-consoles",
        A::AddSecurityGroup => "os_compute_api:os-security-groups:add",
        A::RemoveSecurityGroup => "os_compute_api:os-security-groups:remove",
        A::AddFixedIp => "os_compute_api:os-multinic:add",
        A::RemoveFixedIp => "os_compute_api:os-multinic:remove",
        A::AttachInterface => "os_compute_api:os-attach-interfaces:create",
        A::DetachInterface => "os_compute_api:os-attach-interfaces:delete",
        A::AddFloatingIp => "os_compute_api:os-floating-ips:add",
        A::RemoveFloatingIp => "os_compute_api:os-floating-ips:remove",
        // Not a Nova action (native front only); named in Nova's style.
        A::RunMaintenance => "os_compute_api:servers:run_maintenance",
        A::SyncPowerState => "os_compute_api:servers:sync_power_state",
        A::RestoreBackup => "os_compute_api:servers:restore_backup",
    }
}

/// The Nova policy name of a permission.
pub fn policy_name(p: Permission) -> &'static str {
    match p {
        Permission::Action(a) => action_policy(a),
        Permission::UnlockOverride => "os_compute_api:os-lock-server:unlock:unlock_override",
        Permission::CreateForcedHost => "os_compute_api:servers:create:forced_host",
        Permission::CreateRequestedDestination => "compute:servers:create:requested_destination",
        Permission::UnshelveToHost => "os_compute_api:os-shelve:unshelve_to_host",
        Permission::FlavorCreate => "os_compute_api:os-flavor-manage:create",
        Permission::FlavorDelete => "os_compute_api:os-flavor-manage:delete",
        Permission::FlavorAccessList => "os_compute_api:os-flavor-access",
        Permission::FlavorAccessAdd => "os_compute_api:os-flavor-access:add_tenant_access",
        Permission::FlavorAccessRemove => "os_compute_api:os-flavor-access:remove_tenant_access",
        Permission::QuotaShow => "os_compute_api:os-quota-sets:show",
        Permission::QuotaUpdate => "os_compute_api:os-quota-sets:update",
        Permission::QuotaClassUpdate => "os_compute_api:os-quota-class-sets:update",
        Permission::QuotaDelete => "os_compute_api:os-quota-sets:delete",
    }
}

/// Nova's message for a refused action.
pub fn denied_message(d: &ActionDenied) -> String {
    match d {
        ActionDenied::WrongState {
            action,
            server_id,
            attr,
            vm_state,
            task_state,
        } => format!(
            "Cannot '{}' instance {server_id} while it is in {attr} {}",
            action_name(*action),
            lifeboat_core::actions::state_value(*attr, *vm_state, *task_state)
        ),
        ActionDenied::Locked { server_id } => format!("Instance {server_id} is locked"),
        ActionDenied::NotRunning { server_id } => format!("Instance {server_id} is not running."),
        ActionDenied::NotLaunched { action, server_id } => format!(
            "Instance {server_id} is in an invalid state for '{}'",
            action_name(*action)
        ),
        // Nova's InstanceNotReady, also for a server without a host.
        ActionDenied::NoHost { server_id } | ActionDenied::NotReady { server_id } => {
            format!("Instance {server_id} is not ready")
        }
        ActionDenied::Forbidden { permission } => format!(
            "Policy doesn't allow {} to be performed.",
            policy_name(*permission)
        ),
        // Nova's ComputeServiceInUse.
        ActionDenied::HostUp { host } => format!("Compute service of {host} is still in use."),
        // Nova's InstanceInvalidState wording for a Lifeboat-only condition.
        ActionDenied::Restoring { action, server_id } => format!(
            "Cannot '{}' instance {server_id} while its disk is being restored from a backup",
            action_name(*action)
        ),
        ActionDenied::NotOffloaded {
            server_id,
            vm_state,
        } => format!(
            "The unshelve action on a server with availability_zone or host can only be done on a shelved offloaded server. Instance {server_id} is in vm_state {}",
            vm_state.as_str()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lifeboat_core::actions::{check, Allowed, TABLE};
    use lifeboat_core::{now, Actor, Flavor, PowerState, Role, Server, TaskState, VmState};

    fn server(vm: VmState, task: Option<TaskState>) -> Server {
        let mut s = Server::new("s1", "vm", "p", "u", &Flavor::defaults()[0], now());
        s.vm_state = vm;
        s.task_state = task;
        s.power_state = PowerState::Running;
        s.launched_at = Some(now());
        s.host = Some("h".into());
        s
    }

    fn admin() -> Actor {
        Actor {
            user_id: "u".into(),
            user_name: "u".into(),
            project_id: "p".into(),
            role: Role::Admin,
        }
    }

    /// Every refusal by vm_state reads as Nova's sentence with Nova's action name.
    #[test]
    fn wrong_vm_state_sentences() {
        for r in TABLE {
            let Allowed::Only(ok) = r.vm_states else {
                continue;
            };
            for vm in VmState::ALL.iter().filter(|v| !ok.contains(v)) {
                let s = server(*vm, None);
                let e = check(r.action, &s, &admin()).unwrap_err();
                assert_eq!(
                    denied_message(&e),
                    format!(
                        "Cannot '{}' instance s1 while it is in vm_state {}",
                        action_name(r.action),
                        vm.as_str()
                    )
                );
            }
        }
        let s = server(VmState::Active, Some(TaskState::Rebooting));
        let e = check(Action::RebootSoft, &s, &admin()).unwrap_err();
        assert_eq!(
            denied_message(&e),
            "Cannot 'reboot' instance s1 while it is in task_state rebooting"
        );
    }

    #[test]
    fn policy_sentences() {
        assert_eq!(
            denied_message(&ActionDenied::Forbidden {
                permission: Permission::Action(Action::RebootHard)
            }),
            "Policy doesn't allow os_compute_api:servers:reboot to be performed."
        );
        assert_eq!(
            denied_message(&ActionDenied::Forbidden {
                permission: Permission::UnlockOverride
            }),
            "Policy doesn't allow os_compute_api:os-lock-server:unlock:unlock_override to be performed."
        );
        assert_eq!(
            denied_message(&ActionDenied::NotLaunched {
                action: Action::ForceDelete,
                server_id: "x".into()
            }),
            "Instance x is in an invalid state for 'forceDelete'"
        );
    }
}

/// Nova's name for a kind of resource in `<name> <id> could not be found.`
pub fn resource_name(r: Resource) -> &'static str {
    match r {
        Resource::Server => "Instance",
        Resource::Flavor => "Flavor",
        Resource::FlavorAccessList => "Access list for flavor",
        Resource::FlavorAccess => "Flavor access",
        Resource::Image => "Image",
        Resource::KeyPair => "Keypair",
        Resource::ComputeHost => "Compute host",
        Resource::Host => "Host",
        Resource::ServerGroup => "Instance group",
        Resource::Tag => "Tag",
        Resource::MetadataItem => "Metadata item",
        Resource::User => "User",
        Resource::Project => "Project",
        Resource::AccessKey => "AccessKey",
        Resource::Token => "Token",
        Resource::Network => "Network",
        Resource::FloatingIp => "Floating IP",
        Resource::FloatingIpAddress => "floating IP",
        Resource::Port => "Port id",
        Resource::Workflow => "Workflow",
        Resource::Snapshot => "Snapshot",
    }
}

/// Nova's `NotFound` sentence.
pub fn not_found_message(kind: Resource, id: &str) -> String {
    format!("{} {id} could not be found.", resource_name(kind))
}

/// Nova's sentence for a request the engine refused ([`Reason`]), as
/// Nova's API answers it (400 or 409 by [`Reason::class`]).
pub fn reason_message(r: &Reason) -> String {
    use Reason as R;
    match r {
        R::InvalidField(f) => {
            let name = match f {
                Field::Name => "name",
                Field::Metadata => "metadata",
                Field::AdminPass => "adminPass",
                Field::Length => "length",
            };
            format!("Invalid input for field/attribute {name}.")
        }
        R::BadServerName => {
            "Invalid input for field/attribute name. Value: . '' is too short".into()
        }
        R::BadReference { kind, id } => not_found_message(*kind, id),
        R::ImageNotActive { image } => format!("Image {image} is not active."),
        R::FlavorRamTooSmall => "Flavor's memory is too small for requested image.".into(),
        R::FlavorDiskTooSmall => "Flavor's disk is too small for requested image.".into(),
        R::BadKeyName => "Invalid key_name provided.".into(),
        R::NetworkWithoutSubnet { network } => {
            format!("Network {network} requires a subnet in order to boot instances on.")
        }
        R::NoSuchZone => "The requested availability zone is not available".into(),
        R::SharedPort => {
            "Multiple instances cannot be created with a specific port or fixed IP.".into()
        }
        R::ResizeSameFlavor => "When resizing, instances must change flavor!".into(),
        R::ResizeDiskDown => "Unable to resize disk down.".into(),
        R::SameHost => "The target host can't be the same one.".into(),
        R::BadResetState { value: v } => format!(
            "Invalid input for field/attribute state. Value: {v}. '{v}' is not one of ['active', 'error']"
        ),
        R::EmptySecurityGroupName => "Security group name cannot be empty".into(),
        R::SecurityGroupAlreadyAdded { group, server } => {
            format!("Security group {group} is already associated with the instance {server}")
        }
        R::SecurityGroupNotAdded { group, server } => {
            format!("Security group {group} not associated with the instance {server}")
        }
        R::MarkerNotFound { marker } => format!("marker [{marker}] not found"),
        R::TooManyTags { limit } => {
            format!("The number of tags exceeded the per-server limit {limit}")
        }
        R::BadTag { tag } => format!("Invalid input for field/attribute tags. Value: {tag}."),
        R::BadQuotaKey { key } => format!("Bad key(s) {key} in quota_set"),
        R::QuotaBelowMinusOne { resource, limit } => {
            format!("Quota limit {limit} for {resource} must be -1 or greater.")
        }
        R::QuotaBelowUsage {
            resource,
            limit,
            used,
        } => format!(
            "Quota limit {limit} for {resource} must be greater than or equal to already used and reserved {used}."
        ),
        R::UnavailableConsole { console_type } => {
            format!("Unavailable console type {console_type}.")
        }
        R::RulesNeedAntiAffinity => "Only anti-affinity policy supports rules.".into(),
        R::KeyPairNameUnsafe => {
            "Keypair data is invalid: Keypair name contains unsafe characters".into()
        }
        R::KeyPairBadKey => "Keypair data is invalid: failed to generate fingerprint".into(),
        R::NotOnHost { server } => format!("Instance {server} could not be found on its host."),
        R::FlavorExists { id, name } => {
            format!("Flavor with ID {id} or name {name} already exists.")
        }
        R::KeyPairExists { name } => format!("Key pair '{name}' already exists."),
        R::NameTaken { kind, name } => format!(
            "Conflict occurred attempting to store {} - Duplicate entry found with name {name}.",
            resource_name(*kind).to_lowercase()
        ),
        R::FlavorIsPublic => "Can not add access to a public flavor.".into(),
        R::FlavorAccessExists { flavor, project } => format!(
            "Flavor access already exists for flavor {flavor} and project {project} combination."
        ),
        // Not Nova requests (the native front's restore_backup); in Nova's style.
        R::SnapshotOfAnotherServer { snapshot, server } => {
            format!("Snapshot {snapshot} is not a snapshot of instance {server}.")
        }
        R::SnapshotNotRestorable { snapshot } => {
            format!("Snapshot {snapshot} is not a backup or image snapshot with a disk.")
        }
        R::SnapshotDamaged { snapshot } => format!("Snapshot {snapshot} is damaged."),
    }
}

/// Nova's `NoValidHost` sentence (`host`: the forced host that cannot take
/// the server).
pub fn no_valid_host_message(host: Option<&str>) -> String {
    match host {
        Some(h) => format!("No valid host was found. Host {h} cannot take the server."),
        None => "No valid host was found. There are not enough hosts available.".into(),
    }
}

/// The message of a server's fault as Nova words it.
pub fn fault_message(f: &lifeboat_core::Fault) -> String {
    match &f.reason {
        Some(lifeboat_core::FaultReason::NoValidHost { host }) => {
            no_valid_host_message(host.as_deref())
        }
        None => f.message.clone(),
    }
}

/// Nova's over-quota text (`TooManyInstances`, `MetadataLimitExceeded`,
/// `KeypairLimitExceeded`, `ServerGroupLimitExceeded`,
/// `GroupMemberLimitExceeded`); Nova answers each with a 403.
pub fn quota_message(q: &QuotaExceeded) -> String {
    match q {
        QuotaExceeded::Resources(v) => {
            fn join(v: &[OverQuota], f: impl Fn(&OverQuota) -> String) -> String {
                v.iter().map(f).collect::<Vec<_>>().join(", ")
            }
            let names = join(v, |o| o.resource.to_string());
            format!(
                "Quota exceeded for {names}: Requested {}, but already used {} of {} {names}",
                join(v, |o| o.requested.clone()),
                join(v, |o| o.used.to_string()),
                join(v, |o| o.limit.to_string()),
            )
        }
        QuotaExceeded::MetadataItems { limit } => {
            format!("Maximum number of metadata items exceeds {limit}")
        }
        QuotaExceeded::KeyPairs => "Quota exceeded, too many key pairs.".into(),
        QuotaExceeded::ServerGroups => "Quota exceeded, too many server groups.".into(),
        QuotaExceeded::GroupMembers => "Quota exceeded, too many servers in group".into(),
    }
}

#[cfg(test)]
mod quota_tests {
    use super::*;

    fn over(resource: &'static str, requested: &str, used: i64, limit: i64) -> OverQuota {
        OverQuota {
            resource,
            requested: requested.into(),
            used,
            limit,
        }
    }

    #[test]
    fn nova_texts() {
        let q = QuotaExceeded::Resources(vec![over("instances", "1", 10, 10)]);
        assert_eq!(
            quota_message(&q),
            "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
        );
        let q = QuotaExceeded::Resources(vec![
            over("cores", "4", 20, 20),
            over("ram", "2048", 51200, 51200),
        ]);
        assert_eq!(
            quota_message(&q),
            "Quota exceeded for cores, ram: Requested 4, 2048, but already used 20, 51200 of 20, 51200 cores, ram"
        );
    }
}
