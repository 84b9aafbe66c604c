//! Server actions: the action table's check, then a record update or a workflow.

use lifeboat_core::actions::{Ask, Guard};
use lifeboat_core::{
    actions, Action, ActionDenied, Actor, ImageKind, LockedBy, Role, Server, VmState, Workflow,
};
use lifeboat_hypervisor::HvError;
use serde_json::json;

use crate::error::CAS_LOST;
use crate::requests::*;
use crate::secrets::AdminPass;
use crate::workflow::LaunchWith;
use crate::{ComputeError, Engine, Field, Reason, Resource};

use super::{generate_password, sanitize_hostname};

impl Engine {
    /// Deletes a server (soft delete when `reclaim_instance_interval` > 0).
    pub async fn delete_server(&self, actor: &Actor, id: &str) -> Result<(), ComputeError> {
        self.server_action(actor, id, ServerAction::Delete)
            .await
            .map(|_| ())
    }

    pub(crate) async fn reclaim_one(&self, s: Server) -> Result<(), ComputeError> {
        let system = Actor {
            user_id: "lifeboat".into(),
            user_name: "lifeboat".into(),
            project_id: s.project_id.clone(),
            role: Role::Admin,
        };
        self.begin_workflow(&system, s, Action::ForceDelete, json!({}))
            .await?;
        Ok(())
    }

    pub(crate) async fn begin_workflow(
        &self,
        actor: &Actor,
        s: Server,
        action: Action,
        params: serde_json::Value,
    ) -> Result<Workflow, ComputeError> {
        self.begin_workflow_with(actor, s, action, params, LaunchWith::default())
            .await
    }

    /// [`Self::begin_workflow`] with a secret and records written in the
    /// same transaction as the workflow.
    pub(crate) async fn begin_workflow_with(
        &self,
        actor: &Actor,
        mut s: Server,
        action: Action,
        mut params: serde_json::Value,
        with: LaunchWith,
    ) -> Result<Workflow, ComputeError> {
        let rule = action.rule();
        if !rule.long {
            return Err(ComputeError::Internal(format!(
                "{action} is a record update, not a workflow"
            )));
        }
        if let Some(prev) = &s.task_workflow {
            params["supersedes"] = json!(prev);
        }
        params["was_active"] = json!(
            s.vm_state == VmState::Active
                || (s.vm_state == VmState::Resized && s.old_vm_state == Some(VmState::Active))
        );
        actions::begin(rule, &mut s);
        let wf = self.new_workflow(action.as_str(), Some(&s), Some(&actor.user_id), params)?;
        self.launch(s, wf.clone(), with).await?;
        Ok(wf)
    }

    /// Runs a server action: checks the action table, then either applies
    /// it at once or starts its workflow. A delete that loses a
    /// compare-and-set race is retried on the fresh record (Nova accepts a
    /// delete in any state); other actions answer the conflict.
    pub async fn server_action(
        &self,
        actor: &Actor,
        id: &str,
        req: ServerAction,
    ) -> Result<ActionOutcome, ComputeError> {
        let retry = matches!(req, ServerAction::Delete | ServerAction::ForceDelete);
        let mut attempt = 0;
        loop {
            match self.server_action_once(actor, id, req.clone()).await {
                Err(ComputeError::Conflict(m))
                    if retry && m.ends_with(CAS_LOST) && attempt < 50 =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(2 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn server_action_once(
        &self,
        actor: &Actor,
        id: &str,
        req: ServerAction,
    ) -> Result<ActionOutcome, ComputeError> {
        let s = self.server(actor, id).await?;
        let action = req.kind();
        let up = match (
            &s.host,
            action.rule().guards.contains(&Guard::SourceHostDown),
        ) {
            (Some(h), true) => Some((h.as_str(), self.host_up(h).await)),
            _ => None,
        };
        let restoring =
            action.rule().guards.contains(&Guard::DiskLocal) && self.disk_restoring(&s).await;
        let ask = Ask {
            source_host: up,
            restoring,
            ..req.ask()
        };
        actions::check_with(action, &s, actor, &ask)?;
        dispatch(self, actor, s, action, req).await
    }

    pub(crate) async fn log_short(&self, actor: &Actor, s: &Server, kind: &str, message: &str) {
        let mut wf = match self.new_workflow(kind, Some(s), Some(&actor.user_id), json!({})) {
            Ok(wf) => wf,
            Err(e) => {
                tracing::warn!("no record of {kind}: {e}");
                return;
            }
        };
        wf.state = lifeboat_core::WorkflowState::Completed;
        let _ = self.inner.store.put_workflow(&wf).await;
        self.event(lifeboat_core::NewEvent {
            level: lifeboat_core::Level::Info,
            server_id: Some(s.id.clone()),
            project_id: Some(s.project_id.clone()),
            workflow_id: Some(wf.id),
            step: None,
            message: format!("{kind}: {message}"),
        })
        .await;
    }
}

/// Generates [`dispatch`] from [`lifeboat_core::server_actions!`]: one arm
/// per request, calling its row's handler with the request's fields.
macro_rules! define_dispatch {
    ($(
        $(#[$m:meta])* $var:ident = $s:literal $(as $base:ident)? { $($field:ident : $val:expr),* $(,)? }
        $(request $(#[$rm:meta])* $req:ident $({ $($(#[$fm:meta])* $f:ident : $t:ty),* $(,)? })?
            $(kind($k:expr))? => $($h:ident)::+)?
        $(params { $($(#[$pm:meta])* $pf:ident : $pt:ty),* $(,)? })?
        $(steps $plan:tt)?
    ),+ $(,)?) => {
        /// Runs a request the action table accepted: its row's handler.
        async fn dispatch(
            e: &Engine,
            actor: &Actor,
            s: Server,
            action: Action,
            req: ServerAction,
        ) -> Result<ActionOutcome, ComputeError> {
            match req {
                $($(
                    // Boxed: one small future whatever the handler.
                    ServerAction::$req { $($($f,)*)? } => {
                        Box::pin(crate::$($h)::+(e, actor, s, action $($(, $f)*)?)).await
                    }
                )?)+
            }
        }
    };
}

lifeboat_core::server_actions!(define_dispatch);

pub(crate) use crate::requests::accepted;

/// A workflow with no params of its own (pause, start, ...).
pub(crate) async fn workflow(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
) -> Result<ActionOutcome, ComputeError> {
    Ok(accepted(
        e.begin_workflow(actor, s, action, json!({})).await?,
    ))
}

/// Reboot: the row (soft or hard) is the request's kind.
pub(crate) async fn reboot(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    _hard: bool,
) -> Result<ActionOutcome, ComputeError> {
    workflow(e, actor, s, action).await
}

/// Delete: a soft delete when `reclaim_instance_interval` > 0, a reclaim
/// of a soft-deleted server.
pub(crate) async fn delete(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
) -> Result<ActionOutcome, ComputeError> {
    let soft = e.inner.cfg.reclaim_instance_interval > 0
        && s.vm_state != VmState::SoftDeleted
        && s.host.is_some();
    if s.vm_state == VmState::SoftDeleted {
        // Deleting a soft-deleted server reclaims it now.
        return Ok(accepted(
            e.begin_workflow(actor, s, Action::ForceDelete, json!({}))
                .await?,
        ));
    }
    let action = if soft {
        // The soft delete's own row: same guards as delete, its
        // own task state and outcome.
        actions::check(Action::SoftDelete, &s, actor)?;
        Action::SoftDelete
    } else {
        action
    };
    workflow(e, actor, s, action).await
}

/// Rebuild: record fields change at once (as Nova does); the disk is
/// rebuilt by the workflow.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn rebuild(
    e: &Engine,
    actor: &Actor,
    mut s: Server,
    action: Action,
    image: String,
    name: Option<String>,
    admin_pass: Option<String>,
    metadata: Option<std::collections::BTreeMap<String, String>>,
    description: Option<Option<String>>,
    key_name: Option<Option<String>>,
    user_data: Option<Option<String>>,
    _preserve_ephemeral: bool,
    hostname: Option<String>,
) -> Result<ActionOutcome, ComputeError> {
    let img = e
        .image(actor, &image)
        .await
        .map_err(|_| Reason::BadReference {
            kind: Resource::Image,
            id: image.clone(),
        })?;
    let key_data = match &key_name {
        Some(Some(k)) => Some(Some(
            e.keypair(actor, k)
                .await
                .map_err(|_| Reason::BadKeyName)?
                .public_key,
        )),
        Some(None) => Some(None),
        None => None,
    };
    let pass = admin_pass.unwrap_or_else(generate_password);
    if let Some(n) = name {
        s.name = n;
    }
    if let Some(m) = metadata {
        s.metadata = m;
    }
    if let Some(d) = description {
        s.description = d;
    }
    if let Some(k) = key_name {
        s.key_name = k;
        s.key_data = key_data.flatten();
    }
    if let Some(u) = user_data {
        s.user_data = u;
    }
    if let Some(h) = hostname {
        s.hostname = sanitize_hostname(&h);
    }
    s.image_id = Some(img.id.clone());
    let wf = e
        .begin_workflow_with(
            actor,
            s,
            action,
            json!({"image_id": img.id}),
            LaunchWith {
                admin_pass: Some(AdminPass(pass.clone())),
                ..Default::default()
            },
        )
        .await?;
    Ok(ActionOutcome::Accepted {
        workflow_id: wf.id,
        image_id: None,
        admin_pass: Some(pass),
    })
}

/// Resize to another flavor (quota checked for what it adds).
pub(crate) async fn resize(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    flavor: String,
) -> Result<ActionOutcome, ComputeError> {
    let f = e
        .usable_flavor(actor, &flavor)
        .await
        // Nova's resize: a missing or disabled flavor is FlavorNotFound
        // with the id asked for (400 at the API).
        .map_err(|_| Reason::BadReference {
            kind: Resource::Flavor,
            id: flavor.clone(),
        })?;
    if f.id == s.flavor.id {
        return Err(Reason::ResizeSameFlavor.into());
    }
    if f.disk < s.flavor.disk {
        return Err(Reason::ResizeDiskDown.into());
    }
    e.check_resize_quota(actor, &s.project_id, &s.flavor, &f)
        .await?;
    let snap: lifeboat_core::FlavorSnapshot = (&f).into();
    Ok(accepted(
        e.begin_workflow(actor, s, action, json!({"flavor": snap}))
            .await?,
    ))
}

/// Cold or live migration, to a named host or one placement picks.
pub(crate) async fn migrate(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    host: Option<String>,
) -> Result<ActionOutcome, ComputeError> {
    if let Some(h) = &host {
        if e.host_up(h).await.is_none() {
            return Err(Reason::BadReference {
                kind: Resource::ComputeHost,
                id: h.clone(),
            }
            .into());
        }
        if Some(h) == s.host.as_ref() {
            return Err(Reason::SameHost.into());
        }
    }
    Ok(accepted(
        e.begin_workflow(actor, s, action, json!({"host": host}))
            .await?,
    ))
}

/// Evacuate from a dead host (the row's guard checked it is down).
pub(crate) async fn evacuate(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    host: Option<String>,
    admin_pass: Option<String>,
) -> Result<ActionOutcome, ComputeError> {
    if let Some(h) = &host {
        if e.host_up(h).await.is_none() {
            return Err(ComputeError::NotFound {
                kind: Resource::ComputeHost,
                id: h.clone(),
            });
        }
    }
    let pass = admin_pass.unwrap_or_else(generate_password);
    let wf = e
        .begin_workflow_with(
            actor,
            s,
            action,
            json!({"host": host}),
            LaunchWith {
                admin_pass: Some(AdminPass(pass.clone())),
                ..Default::default()
            },
        )
        .await?;
    Ok(ActionOutcome::Accepted {
        workflow_id: wf.id,
        image_id: None,
        admin_pass: Some(pass),
    })
}

fn image_name(name: &str) -> Result<(), ComputeError> {
    if name.trim().is_empty() {
        return Err(Reason::InvalidField(Field::Name).into());
    }
    Ok(())
}

/// createImage: a `queued` snapshot image written with the workflow.
pub(crate) async fn create_image(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    name: String,
    metadata: std::collections::BTreeMap<String, String>,
) -> Result<ActionOutcome, ComputeError> {
    image_name(&name)?;
    let img = e.new_snapshot_image(&s, &name, ImageKind::Snapshot, None, &metadata);
    let wf = e
        .begin_workflow_with(
            actor,
            s,
            action,
            json!({"image_id": img.id}),
            LaunchWith {
                records: vec![lifeboat_store::RecordRow::of(&img)?],
                ..Default::default()
            },
        )
        .await?;
    Ok(ActionOutcome::Accepted {
        workflow_id: wf.id,
        image_id: Some(img.id),
        admin_pass: None,
    })
}

/// createBackup: a backup image and its rotation.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn create_backup(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    name: String,
    backup_type: String,
    rotation: u32,
    metadata: std::collections::BTreeMap<String, String>,
) -> Result<ActionOutcome, ComputeError> {
    image_name(&name)?;
    // The image record is written in the workflow's transaction:
    // a lost race or a crash leaves no `queued` image behind.
    let img = e.new_snapshot_image(&s, &name, ImageKind::Backup, Some(&backup_type), &metadata);
    let wf = e
        .begin_workflow_with(
            actor,
            s,
            action,
            json!({"image_id": img.id, "backup_type": backup_type, "rotation": rotation}),
            LaunchWith {
                records: vec![lifeboat_store::RecordRow::of(&img)?],
                ..Default::default()
            },
        )
        .await?;
    Ok(ActionOutcome::Accepted {
        workflow_id: wf.id,
        // Nova: rotation 0 deletes every backup of the type, including this one.
        image_id: (rotation != 0).then_some(img.id),
        admin_pass: None,
    })
}

/// changePassword: the password is sealed, never a param.
pub(crate) async fn change_password(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    admin_pass: String,
) -> Result<ActionOutcome, ComputeError> {
    if admin_pass.is_empty() {
        return Err(Reason::InvalidField(Field::AdminPass).into());
    }
    let wf = e
        .begin_workflow_with(
            actor,
            s,
            action,
            json!({}),
            LaunchWith {
                admin_pass: Some(AdminPass(admin_pass)),
                ..Default::default()
            },
        )
        .await?;
    Ok(accepted(wf))
}

/// Rescue, from the default image or a named one.
pub(crate) async fn rescue(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
    admin_pass: Option<String>,
    image: Option<String>,
) -> Result<ActionOutcome, ComputeError> {
    let rescue_image = match image {
        Some(i) => Some(
            e.image(actor, &i)
                .await
                .map_err(|_| Reason::BadReference {
                    kind: Resource::Image,
                    id: i.clone(),
                })?
                .id,
        ),
        None => None,
    };
    let pass = admin_pass.unwrap_or_else(generate_password);
    let wf = e
        .begin_workflow_with(
            actor,
            s,
            action,
            json!({"rescue_image": rescue_image}),
            LaunchWith {
                admin_pass: Some(AdminPass(pass.clone())),
                ..Default::default()
            },
        )
        .await?;
    Ok(ActionOutcome::Accepted {
        workflow_id: wf.id,
        image_id: None,
        admin_pass: Some(pass),
    })
}

/// Shelve (offloading at once when `shelved_offload_time` is 0).
pub(crate) async fn shelve(
    e: &Engine,
    actor: &Actor,
    s: Server,
    action: Action,
) -> Result<ActionOutcome, ComputeError> {
    let offload = e.inner.cfg.shelved_offload_time == 0;
    Ok(accepted(
        e.begin_workflow(actor, s, action, json!({"offload": offload}))
            .await?,
    ))
}

/// Unshelve, optionally to a zone or host (the row's guards checked who may).
pub(crate) async fn unshelve(
    e: &Engine,
    actor: &Actor,
    mut s: Server,
    action: Action,
    availability_zone: Option<Option<String>>,
    host: Option<String>,
) -> Result<ActionOutcome, ComputeError> {
    if let Some(z) = availability_zone {
        s.pinned_availability_zone = z;
    }
    Ok(accepted(
        e.begin_workflow(actor, s, action, json!({"host": host}))
            .await?,
    ))
}

/// Reset state (admin): a record update, logged.
pub(crate) async fn reset_state(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: Action,
    state: String,
) -> Result<ActionOutcome, ComputeError> {
    let vm = match state.as_str() {
        "active" => VmState::Active,
        "error" => VmState::Error,
        other => {
            return Err(Reason::BadResetState {
                value: other.to_string(),
            }
            .into())
        }
    };
    e.mutate_server(&s.id, |s| {
        s.vm_state = vm;
        s.task_state = None;
        s.task_workflow = None;
        Ok(())
    })
    .await?;
    e.log_short(actor, &s, "reset_state", &format!("state reset to {state}"))
        .await;
    Ok(ActionOutcome::Done)
}

/// Lock, remembering whether an administrator locked it.
pub(crate) async fn lock(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: Action,
    reason: Option<String>,
) -> Result<ActionOutcome, ComputeError> {
    let by = if actor.is_admin() {
        LockedBy::Admin
    } else {
        LockedBy::Owner
    };
    e.mutate_server(&s.id, |s| {
        s.locked = true;
        s.locked_by = Some(by);
        s.locked_reason = reason.clone();
        Ok(())
    })
    .await?;
    e.log_short(actor, &s, "lock", "locked").await;
    Ok(ActionOutcome::Done)
}

/// Unlock (the row's guard checked an admin lock).
pub(crate) async fn unlock(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: Action,
) -> Result<ActionOutcome, ComputeError> {
    e.mutate_server(&s.id, |s| {
        s.locked = false;
        s.locked_by = None;
        s.locked_reason = None;
        Ok(())
    })
    .await?;
    e.log_short(actor, &s, "unlock", "unlocked").await;
    Ok(ActionOutcome::Done)
}

/// Injects an NMI through the host agent.
pub(crate) async fn trigger_crash_dump(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: Action,
) -> Result<ActionOutcome, ComputeError> {
    e.agent_for(s.host.as_deref().unwrap_or_default())
        .await?
        .crash_dump(&s.instance_name)
        .await
        .map_err(|err| {
            if err.refuses_state() || matches!(err, HvError::NotFound(_)) {
                ActionDenied::NotRunning {
                    server_id: s.id.clone(),
                }
                .into()
            } else {
                ComputeError::from(err)
            }
        })?;
    e.log_short(actor, &s, "trigger_crash_dump", "NMI injected")
        .await;
    Ok(ActionOutcome::Done)
}

/// Adds a security group by name.
pub(crate) async fn add_security_group(
    e: &Engine,
    _actor: &Actor,
    s: Server,
    _action: Action,
    name: String,
) -> Result<ActionOutcome, ComputeError> {
    if name.trim().is_empty() {
        return Err(Reason::EmptySecurityGroupName.into());
    }
    if s.security_groups.contains(&name) {
        return Err(Reason::SecurityGroupAlreadyAdded {
            group: name,
            server: s.id,
        }
        .into());
    }
    e.mutate_server(&s.id, |s| {
        s.security_groups.push(name.clone());
        Ok(())
    })
    .await?;
    Ok(ActionOutcome::Done)
}

/// Removes a security group by name.
pub(crate) async fn remove_security_group(
    e: &Engine,
    _actor: &Actor,
    s: Server,
    _action: Action,
    name: String,
) -> Result<ActionOutcome, ComputeError> {
    if !s.security_groups.contains(&name) {
        return Err(Reason::SecurityGroupNotAdded {
            group: name,
            server: s.id,
        }
        .into());
    }
    e.mutate_server(&s.id, |s| {
        s.security_groups.retain(|g| g != &name);
        Ok(())
    })
    .await?;
    Ok(ActionOutcome::Done)
}

/// Adds a fixed IP on a network.
pub(crate) async fn add_fixed_ip(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: Action,
    network_id: String,
) -> Result<ActionOutcome, ComputeError> {
    e.add_fixed_ip(actor, &s, &network_id).await?;
    Ok(ActionOutcome::Done)
}

/// Removes a fixed IP.
pub(crate) async fn remove_fixed_ip(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: Action,
    address: String,
) -> Result<ActionOutcome, ComputeError> {
    e.remove_fixed_ip(actor, &s, &address).await?;
    Ok(ActionOutcome::Done)
}

/// Associates a floating IP.
pub(crate) async fn add_floating_ip(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: Action,
    address: String,
    fixed_address: Option<String>,
) -> Result<ActionOutcome, ComputeError> {
    e.associate_fip(actor, &s, &address, fixed_address.as_deref())
        .await?;
    Ok(ActionOutcome::Done)
}

/// Disassociates a floating IP.
pub(crate) async fn remove_floating_ip(
    e: &Engine,
    actor: &Actor,
    s: Server,
    _action: Action,
    address: String,
) -> Result<ActionOutcome, ComputeError> {
    e.disassociate_fip(actor, &s, &address).await?;
    Ok(ActionOutcome::Done)
}
