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
use crate::{ComputeError, Engine};

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

    async fn begin_workflow(
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
    async fn begin_workflow_with(
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
        let ask = Ask {
            source_host: up,
            ..req.ask()
        };
        actions::check_with(action, &s, actor, &ask)?;
        let accepted = |wf: Workflow| ActionOutcome::Accepted {
            workflow_id: wf.id,
            image_id: None,
            admin_pass: None,
        };
        match req {
            ServerAction::Delete => {
                let soft = self.inner.cfg.reclaim_instance_interval > 0
                    && s.vm_state != VmState::SoftDeleted
                    && s.host.is_some();
                if s.vm_state == VmState::SoftDeleted {
                    // Deleting a soft-deleted server reclaims it now.
                    return Ok(accepted(
                        self.begin_workflow(actor, s, Action::ForceDelete, json!({}))
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
                Ok(accepted(
                    self.begin_workflow(actor, s, action, json!({})).await?,
                ))
            }
            ServerAction::ForceDelete => Ok(accepted(
                self.begin_workflow(actor, s, action, json!({})).await?,
            )),
            ServerAction::Reboot { hard } => {
                let _kind = if hard { "reboot_hard" } else { "reboot_soft" };
                Ok(accepted(
                    self.begin_workflow(actor, s, action, json!({})).await?,
                ))
            }
            ServerAction::Rebuild {
                image,
                name,
                admin_pass,
                metadata,
                description,
                key_name,
                user_data,
                preserve_ephemeral: _,
                hostname,
            } => {
                let img = self.image(actor, &image).await.map_err(|_| {
                    ComputeError::BadRequest(format!("Image {image} could not be found."))
                })?;
                let key_data = match &key_name {
                    Some(Some(k)) => Some(Some(
                        self.keypair(actor, k)
                            .await
                            .map_err(|_| {
                                ComputeError::BadRequest("Invalid key_name provided.".into())
                            })?
                            .public_key,
                    )),
                    Some(None) => Some(None),
                    None => None,
                };
                let pass = admin_pass.unwrap_or_else(generate_password);
                // Record fields change at once (as Nova does); the disk is rebuilt by the workflow.
                let mut s = s;
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
                let wf = self
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
            ServerAction::Resize { flavor } => {
                let f = self.usable_flavor(actor, &flavor).await.map_err(|_| {
                    ComputeError::BadRequest(format!("Unable to find flavor '{flavor}'"))
                })?;
                if f.id == s.flavor.id {
                    return Err(ComputeError::BadRequest(
                        "When resizing, instances must change flavor!".into(),
                    ));
                }
                if f.disk < s.flavor.disk {
                    return Err(ComputeError::BadRequest(
                        "Resize to zero disk flavor is not allowed.".into(),
                    )
                    .with_message("Unable to resize disk down."));
                }
                self.check_resize_quota(actor, &s.project_id, &s.flavor, &f)
                    .await?;
                let snap: lifeboat_core::FlavorSnapshot = (&f).into();
                Ok(accepted(
                    self.begin_workflow(actor, s, action, json!({"flavor": snap}))
                        .await?,
                ))
            }
            ServerAction::Migrate { host } | ServerAction::LiveMigrate { host } => {
                if let Some(h) = &host {
                    if self.host_up(h).await.is_none() {
                        return Err(ComputeError::BadRequest(format!(
                            "Compute host {h} could not be found."
                        )));
                    }
                    if Some(h) == s.host.as_ref() {
                        return Err(ComputeError::BadRequest(
                            "The target host can't be the same one.".into(),
                        ));
                    }
                }
                Ok(accepted(
                    self.begin_workflow(actor, s, action, json!({"host": host}))
                        .await?,
                ))
            }
            ServerAction::Evacuate { host, admin_pass } => {
                if let Some(h) = &host {
                    if self.host_up(h).await.is_none() {
                        return Err(ComputeError::NotFound {
                            kind: "Compute host",
                            id: h.clone(),
                        });
                    }
                }
                let pass = admin_pass.unwrap_or_else(generate_password);
                let wf = self
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
            ServerAction::CreateImage { name, metadata }
            | ServerAction::CreateBackup { name, metadata, .. }
                if name.trim().is_empty() =>
            {
                let _ = metadata;
                Err(ComputeError::BadRequest(
                    "Invalid input for field/attribute name.".into(),
                ))
            }
            ServerAction::CreateImage { name, metadata } => {
                let img = self.new_snapshot_image(&s, &name, ImageKind::Snapshot, None, &metadata);
                let wf = self
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
            ServerAction::CreateBackup {
                name,
                backup_type,
                rotation,
                metadata,
            } => {
                // The image record is written in the workflow's transaction:
                // a lost race or a crash leaves no `queued` image behind.
                let img = self.new_snapshot_image(
                    &s,
                    &name,
                    ImageKind::Backup,
                    Some(&backup_type),
                    &metadata,
                );
                let wf = self
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
            ServerAction::ChangePassword { admin_pass } => {
                if admin_pass.is_empty() {
                    return Err(ComputeError::BadRequest(
                        "Invalid input for field/attribute adminPass.".into(),
                    ));
                }
                let wf = self
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
            ServerAction::Rescue { admin_pass, image } => {
                let rescue_image = match image {
                    Some(i) => Some(
                        self.image(actor, &i)
                            .await
                            .map_err(|_| {
                                ComputeError::BadRequest(format!("Image {i} could not be found."))
                            })?
                            .id,
                    ),
                    None => None,
                };
                let pass = admin_pass.unwrap_or_else(generate_password);
                let wf = self
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
            ServerAction::Shelve => {
                let offload = self.inner.cfg.shelved_offload_time == 0;
                Ok(accepted(
                    self.begin_workflow(actor, s, action, json!({"offload": offload}))
                        .await?,
                ))
            }
            ServerAction::Unshelve {
                availability_zone,
                host,
            } => {
                let mut s = s;
                if let Some(z) = availability_zone {
                    s.pinned_availability_zone = z;
                }
                Ok(accepted(
                    self.begin_workflow(actor, s, action, json!({"host": host}))
                        .await?,
                ))
            }
            ServerAction::ResetState { state } => {
                let vm = match state.as_str() {
                    "active" => VmState::Active,
                    "error" => VmState::Error,
                    other => {
                        return Err(ComputeError::BadRequest(format!("Invalid input for field/attribute state. Value: {other}. '{other}' is not one of ['active', 'error']")))
                    }
                };
                self.mutate_server(id, |s| {
                    s.vm_state = vm;
                    s.task_state = None;
                    s.task_workflow = None;
                    Ok(())
                })
                .await?;
                self.log_short(actor, &s, "reset_state", &format!("state reset to {state}"))
                    .await;
                Ok(ActionOutcome::Done)
            }
            ServerAction::Lock { reason } => {
                let by = if actor.is_admin() {
                    LockedBy::Admin
                } else {
                    LockedBy::Owner
                };
                self.mutate_server(id, |s| {
                    s.locked = true;
                    s.locked_by = Some(by);
                    s.locked_reason = reason.clone();
                    Ok(())
                })
                .await?;
                self.log_short(actor, &s, "lock", "locked").await;
                Ok(ActionOutcome::Done)
            }
            ServerAction::Unlock => {
                self.mutate_server(id, |s| {
                    s.locked = false;
                    s.locked_by = None;
                    s.locked_reason = None;
                    Ok(())
                })
                .await?;
                self.log_short(actor, &s, "unlock", "unlocked").await;
                Ok(ActionOutcome::Done)
            }
            ServerAction::TriggerCrashDump => {
                self.agent_for(s.host.as_deref().unwrap_or_default())
                    .await?
                    .crash_dump(&s.instance_name)
                    .await
                    .map_err(|e| {
                        if e.refuses_state() || matches!(e, HvError::NotFound(_)) {
                            ActionDenied::NotRunning {
                                server_id: s.id.clone(),
                            }
                            .into()
                        } else {
                            ComputeError::from(e)
                        }
                    })?;
                self.log_short(actor, &s, "trigger_crash_dump", "NMI injected")
                    .await;
                Ok(ActionOutcome::Done)
            }
            ServerAction::ConsoleOutput { length } => self.console_output(&s, length).await,
            ServerAction::RemoteConsole {
                protocol,
                console_type,
            } => self.remote_console(actor, &s, protocol, console_type).await,
            ServerAction::AddSecurityGroup { name } => {
                if name.trim().is_empty() {
                    return Err(ComputeError::BadRequest(
                        "Security group name cannot be empty".into(),
                    ));
                }
                if s.security_groups.contains(&name) {
                    return Err(ComputeError::BadRequest(format!(
                        "Security group {name} is already associated with the instance {}",
                        s.id
                    )));
                }
                self.mutate_server(id, |s| {
                    s.security_groups.push(name.clone());
                    Ok(())
                })
                .await?;
                Ok(ActionOutcome::Done)
            }
            ServerAction::RemoveSecurityGroup { name } => {
                if !s.security_groups.contains(&name) {
                    return Err(ComputeError::BadRequest(format!(
                        "Security group {name} not associated with the instance {}",
                        s.id
                    )));
                }
                self.mutate_server(id, |s| {
                    s.security_groups.retain(|g| g != &name);
                    Ok(())
                })
                .await?;
                Ok(ActionOutcome::Done)
            }
            ServerAction::AddFixedIp { network_id } => {
                self.add_fixed_ip(&s, &network_id).await?;
                Ok(ActionOutcome::Done)
            }
            ServerAction::RemoveFixedIp { address } => {
                self.remove_fixed_ip(&s, &address).await?;
                Ok(ActionOutcome::Done)
            }
            ServerAction::AddFloatingIp {
                address,
                fixed_address,
            } => {
                self.associate_fip(actor, &s, &address, fixed_address.as_deref())
                    .await?;
                Ok(ActionOutcome::Done)
            }
            ServerAction::RemoveFloatingIp { address } => {
                self.disassociate_fip(actor, &s, &address).await?;
                Ok(ActionOutcome::Done)
            }
            ServerAction::RunMaintenance { procedure } => {
                crate::maintenance::check_procedure(&procedure)?;
                Ok(accepted(
                    self.begin_workflow(actor, s, action, json!({ "procedure": procedure }))
                        .await?,
                ))
            }
            ServerAction::Pause
            | ServerAction::Unpause
            | ServerAction::Suspend
            | ServerAction::Resume
            | ServerAction::Unrescue
            | ServerAction::Start
            | ServerAction::Stop
            | ServerAction::ShelveOffload
            | ServerAction::ConfirmResize
            | ServerAction::RevertResize
            | ServerAction::Restore => Ok(accepted(
                self.begin_workflow(actor, s, action, json!({})).await?,
            )),
        }
    }

    async fn log_short(&self, actor: &Actor, s: &Server, kind: &str, message: &str) {
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

trait WithMessage {
    fn with_message(self, m: &str) -> Self;
}

impl WithMessage for ComputeError {
    fn with_message(self, m: &str) -> Self {
        match self {
            ComputeError::BadRequest(_) => ComputeError::BadRequest(m.into()),
            other => other,
        }
    }
}
