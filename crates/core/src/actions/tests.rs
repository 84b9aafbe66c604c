//! Exhaustive action × state tests. The expected table below is written out
//! independently of `TABLE` (from Nova's decorators) so a wrong table row
//! fails here.

use super::*;
use crate::model::*;

fn server(vm: VmState, task: Option<TaskState>) -> Server {
    let now = now();
    Server {
        vm_state: vm,
        task_state: task,
        power_state: if vm == VmState::Active {
            PowerState::Running
        } else {
            PowerState::Shutdown
        },
        host: Some("h1".into()),
        node: Some("h1".into()),
        instance_name: "instance-00000001".into(),
        availability_zone: Some("nova".into()),
        launched_at: Some(now),
        version: 1,
        ..Server::new(
            "11111111-2222-3333-4444-555555555555",
            "s",
            "p1",
            "u1",
            &Flavor::defaults()[0],
            now,
        )
    }
}

fn actor(role: Role) -> Actor {
    Actor {
        user_id: "u1".into(),
        user_name: "user".into(),
        project_id: "p1".into(),
        role,
    }
}

/// (action, allowed vm_states by wire name; "*" = any).
const EXPECTED: &[(&str, &[&str])] = &[
    ("create", &["*"]),
    ("update", &["*"]),
    ("delete", &["*"]),
    ("soft_delete", &["*"]),
    ("force_delete", &["*"]),
    ("restore", &["soft-delete"]),
    ("reboot_soft", &["active"]),
    (
        "reboot_hard",
        &["active", "stopped", "paused", "suspended", "error"],
    ),
    ("rebuild", &["active", "stopped", "error"]),
    ("resize", &["active", "stopped"]),
    ("confirm_resize", &["resized"]),
    ("revert_resize", &["resized"]),
    (
        "create_image",
        &["active", "stopped", "paused", "suspended"],
    ),
    (
        "create_backup",
        &["active", "stopped", "paused", "suspended"],
    ),
    ("change_password", &["active"]),
    ("reset_state", &["*"]),
    ("pause", &["active"]),
    ("unpause", &["paused"]),
    ("suspend", &["active"]),
    ("resume", &["suspended"]),
    ("lock", &["*"]),
    ("unlock", &["*"]),
    ("rescue", &["active", "stopped", "error"]),
    ("unrescue", &["rescued"]),
    ("evacuate", &["active", "stopped", "error"]),
    ("start", &["stopped"]),
    ("stop", &["active", "error"]),
    ("shelve", &["active", "stopped", "paused", "suspended"]),
    ("shelve_offload", &["shelved"]),
    ("unshelve", &["shelved", "shelved_offloaded"]),
    ("migrate", &["active", "stopped"]),
    ("live_migrate", &["active", "paused"]),
    (
        "trigger_crash_dump",
        &["active", "paused", "rescued", "resized", "error"],
    ),
    ("console_output", &["*"]),
    ("remote_console", &["*"]),
    ("add_security_group", &["*"]),
    ("remove_security_group", &["*"]),
    ("add_fixed_ip", &["*"]),
    ("remove_fixed_ip", &["*"]),
    ("attach_interface", &["active", "paused", "stopped"]),
    ("detach_interface", &["active", "paused", "stopped"]),
    ("add_floating_ip", &["*"]),
    ("remove_floating_ip", &["*"]),
    ("run_maintenance", &["active"]),
    (
        "sync_power_state",
        &[
            "active",
            "stopped",
            "paused",
            "suspended",
            "rescued",
            "error",
        ],
    ),
    ("restore_backup", &["active", "stopped", "error"]),
];

#[test]
fn table_has_one_rule_per_action() {
    for a in Action::ALL {
        assert_eq!(TABLE.iter().filter(|r| r.action == *a).count(), 1, "{a}");
    }
    assert_eq!(EXPECTED.len(), Action::ALL.len());
}

/// The actions that need the whole disk on the host are refused while an
/// instant restore copies it; the others are not.
#[test]
fn disk_local_guard_refuses_while_restoring() {
    let admin = actor(Role::Admin);
    let s = server(VmState::Active, None);
    let restoring = Ask {
        restoring: true,
        ..Ask::default()
    };
    for a in [
        Action::CreateBackup,
        Action::CreateImage,
        Action::Resize,
        Action::Migrate,
        Action::LiveMigrate,
        Action::Shelve,
        Action::Rebuild,
    ] {
        assert!(a.rule().guards.contains(&Guard::DiskLocal), "{a}");
        assert_eq!(
            check_with(a, &s, &admin, &restoring).unwrap_err(),
            ActionDenied::Restoring {
                action: a,
                server_id: s.id.clone(),
            }
        );
        assert!(check_with(a, &s, &admin, &Ask::default()).is_ok(), "{a}");
    }
    for a in [Action::RebootSoft, Action::Stop, Action::RestoreBackup] {
        assert!(check_with(a, &s, &admin, &restoring).is_ok(), "{a}");
    }
}

#[test]
fn every_action_in_every_vm_state() {
    let admin = actor(Role::Admin);
    for (name, allowed) in EXPECTED {
        let action = Action::parse(name).unwrap();
        for vm in VmState::ALL {
            let mut s = server(*vm, None);
            // crash dump needs a running guest; test the state rule alone.
            s.power_state = PowerState::Running;
            let expect_ok = allowed.contains(&"*") || allowed.contains(&vm.as_str());
            let got = check(action, &s, &admin);
            if expect_ok {
                assert!(got.is_ok(), "{name} in {vm} should be allowed: {got:?}");
            } else {
                let err = got.expect_err(&format!("{name} in {vm} should be refused"));
                assert_eq!(
                    err,
                    ActionDenied::WrongState {
                        action,
                        server_id: s.id.clone(),
                        attr: StateAttr::VmState,
                        vm_state: *vm,
                        task_state: None,
                    }
                );
                assert_eq!(err.http_status(), 409);
            }
        }
    }
}

#[test]
fn every_action_with_every_task_state() {
    let admin = actor(Role::Admin);
    for a in Action::ALL {
        let rule = a.rule();
        let vm = match rule.vm_states {
            Allowed::Any => VmState::Active,
            Allowed::Only(v) => v[0],
        };
        for t in TaskState::ALL {
            let mut s = server(vm, Some(*t));
            s.power_state = PowerState::Running;
            let got = check(*a, &s, &admin);
            let expect_ok = rule.task_states.contains(&Some(*t));
            assert_eq!(got.is_ok(), expect_ok, "{a} with task {t}: {got:?}");
            if let Err(e) = got {
                assert_eq!(
                    e,
                    ActionDenied::WrongState {
                        action: *a,
                        server_id: s.id.clone(),
                        attr: StateAttr::TaskState,
                        vm_state: vm,
                        task_state: Some(*t),
                    }
                );
            }
        }
    }
}

#[test]
fn long_actions_declare_a_task_state() {
    for r in TABLE {
        if r.long && r.action != Action::Update {
            assert!(
                r.task_state.is_some(),
                "{} is long but sets no task_state",
                r.action
            );
        }
        if !r.long {
            assert!(
                r.task_state.is_none(),
                "{} is short but sets a task_state",
                r.action
            );
        }
    }
}

#[test]
fn hard_reboot_allowed_while_soft_rebooting_but_soft_is_not() {
    let m = actor(Role::Member);
    let s = server(VmState::Active, Some(TaskState::RebootPending));
    assert!(check(Action::RebootHard, &s, &m).is_ok());
    assert!(check(Action::RebootSoft, &s, &m).is_err());
}

#[test]
fn locks_block_members_not_admins() {
    for a in Action::ALL {
        let rule = a.rule();
        let vm = match rule.vm_states {
            Allowed::Any => VmState::Active,
            Allowed::Only(v) => v[0],
        };
        let mut s = server(vm, None);
        s.power_state = PowerState::Running;
        s.locked = true;
        s.locked_by = Some(LockedBy::Owner);
        let member = check(*a, &s, &actor(Role::Member));
        if rule.policy == Policy::Admin {
            assert!(matches!(member, Err(ActionDenied::Forbidden { .. })), "{a}");
        } else if rule.checks_lock {
            assert_eq!(
                member.unwrap_err(),
                ActionDenied::Locked {
                    server_id: s.id.clone()
                },
                "{a}"
            );
        } else {
            assert!(member.is_ok(), "{a}: {member:?}");
        }
        assert!(check(*a, &s, &actor(Role::Admin)).is_ok(), "{a}");
    }
}

#[test]
fn readers_cannot_mutate() {
    let r = actor(Role::Reader);
    for a in Action::ALL {
        let rule = a.rule();
        let vm = match rule.vm_states {
            Allowed::Any => VmState::Active,
            Allowed::Only(v) => v[0],
        };
        let mut s = server(vm, None);
        s.power_state = PowerState::Running;
        let got = check(*a, &s, &r);
        assert_eq!(got.is_ok(), rule.policy == Policy::Reader, "{a}");
    }
}

#[test]
fn admin_lock_cannot_be_removed_by_owner() {
    let mut s = server(VmState::Active, None);
    s.locked = true;
    s.locked_by = Some(LockedBy::Admin);
    assert_eq!(
        check(Action::Unlock, &s, &actor(Role::Member)).unwrap_err(),
        ActionDenied::Forbidden {
            permission: Permission::UnlockOverride
        }
    );
    s.locked_by = Some(LockedBy::Owner);
    assert!(check(Action::Unlock, &s, &actor(Role::Member)).is_ok());
}

#[test]
fn never_launched_servers_refuse_state_checked_actions() {
    let mut s = server(VmState::Error, None);
    s.launched_at = None;
    let e = check(Action::Rebuild, &s, &actor(Role::Member)).unwrap_err();
    assert_eq!(
        e,
        ActionDenied::NotLaunched {
            action: Action::Rebuild,
            server_id: s.id.clone()
        }
    );
    assert!(check(Action::Delete, &s, &actor(Role::Member)).is_ok());
    assert!(check(Action::ResetState, &s, &actor(Role::Admin)).is_ok());
}

#[test]
fn hard_reboot_cannot_interrupt_a_hard_reboot_in_progress() {
    let m = actor(Role::Member);
    for t in [TaskState::RebootPendingHard, TaskState::RebootStartedHard] {
        let s = server(VmState::Active, Some(t));
        assert!(check(Action::RebootHard, &s, &m).is_err(), "{t}");
    }
    let s = server(VmState::Active, Some(TaskState::RebootingHard));
    assert!(check(Action::RebootHard, &s, &m).is_ok());
}

#[test]
fn snapshots_and_evacuation_ignore_locks() {
    let mut s = server(VmState::Active, None);
    s.locked = true;
    s.locked_by = Some(LockedBy::Owner);
    assert!(check(Action::CreateImage, &s, &actor(Role::Member)).is_ok());
    assert!(check(Action::CreateBackup, &s, &actor(Role::Member)).is_ok());
    assert!(check(Action::Stop, &s, &actor(Role::Member)).is_err());
}

#[test]
fn transitions_begin_finish_fail() {
    let mut s = server(VmState::Stopped, None);
    let r = check(Action::Resize, &s, &actor(Role::Member)).unwrap();
    begin(r, &mut s);
    assert_eq!(s.task_state, Some(TaskState::ResizePrep));
    assert_eq!(s.status(), crate::Status::Resize);
    assert!(finish(r, &mut s));
    assert_eq!(s.vm_state, VmState::Resized);
    let r = check(Action::RevertResize, &s, &actor(Role::Member)).unwrap();
    begin(r, &mut s);
    assert_eq!(s.status(), crate::Status::RevertResize);
    finish(r, &mut s);
    assert_eq!(s.vm_state, VmState::Stopped);
    assert_eq!(s.task_state, None);

    let mut e = server(VmState::Error, None);
    let r = check(Action::Rebuild, &e, &actor(Role::Member)).unwrap();
    begin(r, &mut e);
    assert_eq!(e.status(), crate::Status::Rebuild);
    finish(r, &mut e);
    assert_eq!(e.vm_state, VmState::Active);

    let mut a = server(VmState::Active, None);
    let r = check(Action::RebootSoft, &a, &actor(Role::Member)).unwrap();
    begin(r, &mut a);
    fail(r, &mut a);
    assert_eq!(a.vm_state, VmState::Error);
    let mut p = server(VmState::Active, None);
    let r = check(Action::Pause, &p, &actor(Role::Member)).unwrap();
    begin(r, &mut p);
    fail(r, &mut p);
    assert_eq!((p.vm_state, p.task_state), (VmState::Active, None));
    let mut d = server(VmState::Active, None);
    let r = check(Action::Delete, &d, &actor(Role::Member)).unwrap();
    begin(r, &mut d);
    assert!(!finish(r, &mut d));
}
