//! Nova's words for Lifeboat's terms: action names as Nova's conflict
//! messages spell them, policy names, and the sentences Nova answers a
//! refused action with. The engine and core return typed reasons
//! ([`ActionDenied`]); this module is the only place that turns them into
//! Nova's text.

use lifeboat_core::{Action, ActionDenied, Permission};

/// The name Nova uses for `action` in `Cannot '<name>' instance ...`.
pub fn action_name(action: Action) -> &'static str {
    use Action as A;
    match action {
        A::Create => "create",
        A::Update => "update",
        A::Delete => "delete",
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
        A::AddFloatingIp => "addFloatingIp",
        A::RemoveFloatingIp => "removeFloatingIp",
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

/// The Nova policy name of a permission.
pub fn policy_name(p: Permission) -> String {
    match p {
        Permission::Action(a) => format!("os_compute_api:servers:{}", a.as_str()),
        Permission::UnlockOverride => "os_compute_api:os-lock-server:unlock:unlock_override".into(),
        Permission::CreateForcedHost => "os_compute_api:servers:create:forced_host".into(),
        Permission::CreateRequestedDestination => {
            "compute:servers:create:requested_destination".into()
        }
        Permission::UnshelveToHost => "os_compute_api:os-shelve:unshelve_to_host".into(),
        Permission::FlavorCreate => "os_compute_api:os-flavor-manage:create".into(),
        Permission::FlavorDelete => "os_compute_api:os-flavor-manage:delete".into(),
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
            "Policy doesn't allow os_compute_api:servers:reboot_hard to be performed."
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
