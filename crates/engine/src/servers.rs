//! The server API: create, read, list, update, delete and every action.

use std::collections::BTreeMap;

use lifeboat_core::{
    actions, ids, now, Action, ActionDenied, Actor, Flavor, ImageKind, LockedBy, Permission, Role,
    Server, Status, TaskState, VmState, Workflow,
};
use lifeboat_hypervisor::HvError;
use lifeboat_store::ServerQuery;
use serde_json::json;

use crate::catalog::DEFAULT_IMAGE_ID;
use crate::error::{forbidden, CAS_LOST};
use crate::requests::*;
use crate::secrets::AdminPass;
use crate::workflow::LaunchWith;
use crate::{ComputeError, Engine};

fn not_found(id: &str) -> ComputeError {
    ComputeError::NotFound {
        kind: "Instance",
        id: id.into(),
    }
}

fn generate_password() -> String {
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..12)
        .map(|_| ids::ALNUM[rng.gen_range(0..ids::ALNUM.len())] as char)
        .collect()
}

/// Nova's hostname sanitisation: lowercase, [a-z0-9-], at most 63 chars.
pub fn sanitize_hostname(name: &str) -> String {
    let mut h: String = name
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    h = h.trim_matches('-').to_string();
    h.truncate(63);
    if h.is_empty() {
        "server".into()
    } else {
        h
    }
}

impl Engine {
    /// A server visible to the actor (404 otherwise, as Nova does).
    pub async fn server(&self, actor: &Actor, id: &str) -> Result<Server, ComputeError> {
        let s = self
            .inner
            .store
            .get_server(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        if !actor.can_see(&s.project_id) || (s.vm_state == VmState::Deleted && !actor.is_admin()) {
            return Err(not_found(id));
        }
        Ok(s)
    }

    /// Lists servers visible to the actor.
    pub async fn list_servers(
        &self,
        actor: &Actor,
        q: &ListServers,
    ) -> Result<Vec<Server>, ComputeError> {
        let project_id = if actor.is_admin() && (q.all_projects || q.project_id.is_some()) {
            q.project_id.clone()
        } else {
            Some(actor.project_id.clone())
        };
        let vm_states = q.status.as_ref().map(|sts| {
            sts.iter()
                .flat_map(|s| lifeboat_core::states::states_for_status(*s))
                .map(|(vm, _)| vm)
                .collect::<Vec<_>>()
        });
        let post_filter = q.status.is_some()
            || !q.tags.is_empty()
            || q.image.is_some()
            || q.flavor.is_some()
            || q.locked.is_some();
        let mut sq = ServerQuery {
            project_id,
            vm_states,
            include_deleted: q.deleted && actor.is_admin(),
            name_contains: q.name.clone(),
            host: q.host.clone().filter(|_| actor.is_admin()),
            changes_since: q.changes_since,
            marker: q.marker.clone(),
            limit: q.limit,
        };
        if q.changes_since.is_some() {
            sq.include_deleted = true;
        }
        if let Some(m) = &q.marker {
            // The marker must be visible to the caller.
            self.server(actor, m)
                .await
                .map_err(|_| ComputeError::BadRequest(format!("marker [{m}] not found")))?;
        }
        if !post_filter {
            return Ok(self.inner.store.list_servers(&sq).await?);
        }
        // Filters the store cannot apply: page through until `limit` match.
        let limit = q.limit.unwrap_or(i64::MAX) as usize;
        let mut out = vec![];
        sq.limit = Some(500);
        loop {
            let page = self.inner.store.list_servers(&sq).await?;
            let n = page.len();
            sq.marker = page.last().map(|s| s.id.clone());
            for s in page {
                let ok = q.status.as_ref().is_none_or(|st| st.contains(&s.status()))
                    && q.tags.iter().all(|t| s.tags.contains(t))
                    && q.image
                        .as_ref()
                        .is_none_or(|i| s.image_id.as_ref() == Some(i))
                    && q.flavor.as_ref().is_none_or(|f| &s.flavor.id == f)
                    && q.locked.is_none_or(|l| s.locked == l);
                if ok {
                    out.push(s);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if n < 500 {
                return Ok(out);
            }
        }
    }

    /// Creates `max_count` servers (at least `min_count` must fit).
    pub async fn create_servers(
        &self,
        actor: &Actor,
        req: CreateServer,
    ) -> Result<Vec<Created>, ComputeError> {
        if actor.role < Role::Member {
            return Err(forbidden(Permission::Action(Action::Create)));
        }
        let name = req.name.trim();
        if name.is_empty() || req.name.len() > 255 {
            return Err(ComputeError::BadRequest(
                "Invalid input for field/attribute name. Value: . '' is too short".into(),
            ));
        }
        let min = req.min_count.max(1);
        let max = req.max_count.max(min);
        let flavor: Flavor = self.flavor(&req.flavor).await.map_err(|_| {
            ComputeError::BadRequest(format!("Flavor {} could not be found.", req.flavor))
        })?;
        if flavor.disabled {
            return Err(ComputeError::BadRequest(format!(
                "Flavor {} is disabled.",
                flavor.id
            )));
        }
        if !self.can_use_flavor(actor, &flavor).await? {
            return Err(ComputeError::BadRequest(format!(
                "Flavor {} could not be found.",
                req.flavor
            )));
        }
        let (max, _quota) = self
            .check_create_quota(actor, &flavor, min, max, req.metadata.len())
            .await?;
        let image = match &req.image {
            Some(i) if !i.is_empty() => self
                .image(actor, i)
                .await
                .map_err(|_| ComputeError::BadRequest(format!("Image {i} could not be found.")))?,
            _ => self.image(actor, DEFAULT_IMAGE_ID).await?,
        };
        if image.status != lifeboat_core::ImageStatus::Active {
            return Err(ComputeError::BadRequest(format!(
                "Image {} is not active.",
                image.id
            )));
        }
        if flavor.ram < image.min_ram {
            return Err(ComputeError::BadRequest(
                "Flavor's memory is too small for requested image.".into(),
            ));
        }
        if image.min_disk > flavor.disk && flavor.disk > 0 {
            return Err(ComputeError::BadRequest(
                "Flavor's disk is too small for requested image.".into(),
            ));
        }
        let key_data = match &req.key_name {
            Some(k) => Some(
                self.keypair(actor, k)
                    .await
                    .map_err(|_| ComputeError::BadRequest("Invalid key_name provided.".into()))?
                    .public_key,
            ),
            None => None,
        };
        let (az, forced_host) = match &req.availability_zone {
            Some(z) if z.contains(':') => {
                if !actor.is_admin() {
                    return Err(forbidden(Permission::CreateForcedHost));
                }
                let (z, h) = z.split_once(':').unwrap();
                (
                    Some(z.to_string()).filter(|z| !z.is_empty()),
                    Some(h.to_string()),
                )
            }
            other => (other.clone(), None),
        };
        let host = forced_host.or(req.host.clone());
        if host.is_some() && !actor.is_admin() {
            return Err(forbidden(Permission::CreateRequestedDestination));
        }
        if let Some(z) = &az {
            let zones: Vec<String> = self
                .hosts()
                .await
                .into_iter()
                .map(|(h, _)| h.availability_zone)
                .collect();
            if !zones.contains(z) {
                return Err(ComputeError::BadRequest(
                    "The requested availability zone is not available".into(),
                ));
            }
        }
        if let Some(h) = &host {
            if self.host_up(h).await.is_none() {
                return Err(ComputeError::BadRequest(format!(
                    "Compute host {h} could not be found."
                )));
            }
        }
        self.validate_networks(&req.networks).await?;
        if max > 1
            && req
                .networks
                .iter()
                .any(|n| n.port_id.is_some() || n.fixed_ip.is_some())
        {
            return Err(ComputeError::BadRequest(
                "Multiple instances cannot be created with a specific port or fixed IP.".into(),
            ));
        }
        let reservation_id = ids::reservation_id();
        let mut out = vec![];
        for i in 0..max {
            let admin_pass = req.admin_pass.clone().unwrap_or_else(generate_password);
            let seq = self.inner.store.next_counter("instance").await?;
            let sname = if max > 1 {
                format!("{name}-{}", i + 1)
            } else {
                name.to_string()
            };
            let t = now();
            let server = Server {
                description: req.description.clone(),
                image_id: Some(image.id.clone()),
                instance_name: format!("instance-{seq:08x}"),
                hostname: sanitize_hostname(req.hostname.as_deref().unwrap_or(&sname)),
                availability_zone: az.clone(),
                pinned_availability_zone: az.clone(),
                config_drive: req.config_drive,
                key_name: req.key_name.clone(),
                key_data: key_data.clone(),
                launch_index: i,
                reservation_id: reservation_id.clone(),
                metadata: req.metadata.clone(),
                tags: req.tags.clone(),
                user_data: req.user_data.clone(),
                access_ipv4: req.access_ipv4.clone().unwrap_or_default(),
                access_ipv6: req.access_ipv6.clone().unwrap_or_default(),
                disk_config: req.disk_config.clone().unwrap_or_else(|| "MANUAL".into()),
                security_groups: if req.security_groups.is_empty() {
                    vec!["default".into()]
                } else {
                    req.security_groups.clone()
                },
                scheduler_hints: req.scheduler_hints.clone(),
                admin_password_set: true,
                ..Server::new(
                    ids::uuid(),
                    sname.clone(),
                    &actor.project_id,
                    &actor.user_id,
                    &flavor,
                    t,
                )
            };
            let params = json!({
                "networks": req.networks,
                "no_network": req.no_network,
                "host": host,
            });
            let wf = self.new_workflow("create", Some(&server), Some(&actor.user_id), params);
            let mut server = server;
            server.task_workflow = Some(wf.id.clone());
            let extras = self.extras(
                &wf,
                LaunchWith {
                    admin_pass: Some(AdminPass(admin_pass.clone())),
                    ..Default::default()
                },
            )?;
            let saved = self
                .inner
                .store
                .insert_server_with_workflow(&server, &wf, &extras)
                .await?;
            self.event(lifeboat_core::NewEvent {
                level: lifeboat_core::Level::Info,
                server_id: Some(saved.id.clone()),
                project_id: Some(saved.project_id.clone()),
                workflow_id: Some(wf.id.clone()),
                step: None,
                message: format!("create accepted ({})", wf.request_id),
            })
            .await;
            self.spawn_run(wf.id.clone());
            out.push(Created {
                server: saved,
                admin_pass,
                workflow_id: wf.id,
            });
        }
        Ok(out)
    }

    /// Updates name, description, access IPs or hostname.
    pub async fn update_server(
        &self,
        actor: &Actor,
        id: &str,
        u: UpdateServer,
    ) -> Result<Server, ComputeError> {
        let s = self.server(actor, id).await?;
        actions::check(Action::Update, &s, actor)?;
        if let Some(n) = &u.name {
            if n.trim().is_empty() || n.len() > 255 {
                return Err(ComputeError::BadRequest(
                    "Invalid input for field/attribute name.".into(),
                ));
            }
        }
        self.mutate_server(id, |s| {
            if let Some(n) = &u.name {
                s.name = n.clone();
            }
            if let Some(d) = &u.description {
                s.description = d.clone();
            }
            if let Some(v) = &u.access_ipv4 {
                s.access_ipv4 = v.clone();
            }
            if let Some(v) = &u.access_ipv6 {
                s.access_ipv6 = v.clone();
            }
            if let Some(h) = &u.hostname {
                s.hostname = sanitize_hostname(h);
            }
            if let Some(d) = &u.disk_config {
                s.disk_config = d.clone();
            }
            Ok(())
        })
        .await
    }

    /// Replaces metadata (`replace`) or merges keys into it.
    pub async fn set_metadata(
        &self,
        actor: &Actor,
        id: &str,
        meta: BTreeMap<String, String>,
        replace: bool,
    ) -> Result<BTreeMap<String, String>, ComputeError> {
        let s = self.server(actor, id).await?;
        actions::check(Action::Update, &s, actor)?;
        for (k, v) in &meta {
            if k.is_empty() || k.len() > 255 || v.len() > 255 {
                return Err(ComputeError::BadRequest(
                    "Invalid input for field/attribute metadata.".into(),
                ));
            }
        }
        let s = self
            .mutate_server(id, |s| {
                if replace {
                    s.metadata = meta.clone();
                } else {
                    s.metadata.extend(meta.clone());
                }
                if s.metadata.len() > 128 {
                    return Err(ComputeError::OverLimit("Quota exceeded for metadata_items: Requested 1, but already used 128 of 128 metadata_items".into()));
                }
                Ok(())
            })
            .await?;
        Ok(s.metadata)
    }

    /// Deletes one metadata key.
    pub async fn delete_metadata(
        &self,
        actor: &Actor,
        id: &str,
        key: &str,
    ) -> Result<(), ComputeError> {
        let s = self.server(actor, id).await?;
        actions::check(Action::Update, &s, actor)?;
        if !s.metadata.contains_key(key) {
            return Err(ComputeError::NotFound {
                kind: "Metadata item",
                id: key.into(),
            });
        }
        self.mutate_server(id, |s| {
            s.metadata.remove(key);
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// Replaces the tags (None: add one tag; see [`Engine::add_tag`]).
    pub async fn set_tags(
        &self,
        actor: &Actor,
        id: &str,
        tags: Vec<String>,
    ) -> Result<Vec<String>, ComputeError> {
        let s = self.server(actor, id).await?;
        actions::check(Action::Update, &s, actor)?;
        validate_tags(&tags)?;
        let mut uniq = tags.clone();
        uniq.sort();
        uniq.dedup();
        let s = self
            .mutate_server(id, |s| {
                s.tags = uniq.clone();
                Ok(())
            })
            .await?;
        Ok(s.tags)
    }

    /// Adds a tag.
    pub async fn add_tag(&self, actor: &Actor, id: &str, tag: &str) -> Result<bool, ComputeError> {
        let s = self.server(actor, id).await?;
        actions::check(Action::Update, &s, actor)?;
        validate_tags(&[tag.to_string()])?;
        let existed = s.tags.iter().any(|t| t == tag);
        if !existed && s.tags.len() >= 50 {
            return Err(ComputeError::BadRequest(
                "The number of tags exceeded the per-server limit 50".into(),
            ));
        }
        self.mutate_server(id, |s| {
            if !s.tags.iter().any(|t| t == tag) {
                s.tags.push(tag.to_string());
                s.tags.sort();
            }
            Ok(())
        })
        .await?;
        Ok(!existed)
    }

    /// Removes a tag (404 when absent).
    pub async fn remove_tag(&self, actor: &Actor, id: &str, tag: &str) -> Result<(), ComputeError> {
        let s = self.server(actor, id).await?;
        actions::check(Action::Update, &s, actor)?;
        if !s.tags.iter().any(|t| t == tag) {
            return Err(ComputeError::NotFound {
                kind: "Tag",
                id: tag.into(),
            });
        }
        self.mutate_server(id, |s| {
            s.tags.retain(|t| t != tag);
            Ok(())
        })
        .await?;
        Ok(())
    }

    /// The workflows of a server (Nova instance actions), newest first.
    pub async fn server_workflows(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<Vec<Workflow>, ComputeError> {
        let s = self.server(actor, id).await?;
        Ok(self.inner.store.list_workflows(Some(&s.id), 1000).await?)
    }

    /// A workflow visible to the actor.
    pub async fn workflow(&self, actor: &Actor, id: &str) -> Result<Workflow, ComputeError> {
        let w = self
            .inner
            .store
            .get_workflow(id)
            .await?
            .ok_or_else(|| ComputeError::NotFound {
                kind: "Workflow",
                id: id.into(),
            })?;
        if let Some(p) = &w.project_id {
            if !actor.can_see(p) {
                return Err(ComputeError::NotFound {
                    kind: "Workflow",
                    id: id.into(),
                });
            }
        } else if !actor.is_admin() {
            return Err(ComputeError::NotFound {
                kind: "Workflow",
                id: id.into(),
            });
        }
        Ok(w)
    }

    /// Recent workflows (admins: all; others: their project's).
    pub async fn workflows(
        &self,
        actor: &Actor,
        limit: i64,
    ) -> Result<Vec<Workflow>, ComputeError> {
        let all = self
            .inner
            .store
            .list_workflows(None, limit.clamp(1, 1000))
            .await?;
        Ok(all
            .into_iter()
            .filter(|w| {
                actor.is_admin() || w.project_id.as_deref() == Some(actor.project_id.as_str())
            })
            .collect())
    }

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
        self.begin_workflow(&system, s, Action::ForceDelete, "force_delete", json!({}))
            .await?;
        Ok(())
    }

    async fn begin_workflow(
        &self,
        actor: &Actor,
        s: Server,
        action: Action,
        kind: &str,
        params: serde_json::Value,
    ) -> Result<Workflow, ComputeError> {
        self.begin_workflow_with(actor, s, action, kind, params, LaunchWith::default())
            .await
    }

    /// [`Self::begin_workflow`] with a secret and records written in the
    /// same transaction as the workflow.
    async fn begin_workflow_with(
        &self,
        actor: &Actor,
        mut s: Server,
        action: Action,
        kind: &str,
        mut params: serde_json::Value,
        with: LaunchWith,
    ) -> Result<Workflow, ComputeError> {
        let rule = action.rule();
        if let Some(prev) = &s.task_workflow {
            params["supersedes"] = json!(prev);
        }
        params["was_active"] = json!(
            s.vm_state == VmState::Active
                || (s.vm_state == VmState::Resized && s.old_vm_state == Some(VmState::Active))
        );
        actions::begin(rule, &mut s);
        if action == Action::Rebuild || action == Action::Evacuate {
            // The fault of a previous failure is cleared when the server is rebuilt.
            s.fault = None;
        }
        let wf = self.new_workflow(kind, Some(&s), Some(&actor.user_id), params);
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
        actions::check(action, &s, actor)?;
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
                        self.begin_workflow(
                            actor,
                            s,
                            Action::ForceDelete,
                            "force_delete",
                            json!({}),
                        )
                        .await?,
                    ));
                }
                let kind = if soft { "soft_delete" } else { "delete" };
                if soft {
                    // soft delete uses the delete rule but its own task state.
                    let mut s2 = s.clone();
                    let prev = s2.task_workflow.clone();
                    s2.task_state = Some(TaskState::SoftDeleting);
                    let mut params = json!({});
                    if let Some(p) = prev {
                        params["supersedes"] = json!(p);
                    }
                    let wf = self.new_workflow(kind, Some(&s2), Some(&actor.user_id), params);
                    self.launch(s2, wf.clone(), LaunchWith::default()).await?;
                    return Ok(accepted(wf));
                }
                Ok(accepted(
                    self.begin_workflow(actor, s, action, kind, json!({}))
                        .await?,
                ))
            }
            ServerAction::ForceDelete => Ok(accepted(
                self.begin_workflow(actor, s, action, "force_delete", json!({}))
                    .await?,
            )),
            ServerAction::Reboot { hard } => {
                let kind = if hard { "reboot_hard" } else { "reboot_soft" };
                Ok(accepted(
                    self.begin_workflow(actor, s, action, kind, json!({}))
                        .await?,
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
                        "rebuild",
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
                    self.begin_workflow(actor, s, action, "resize", json!({"flavor": snap}))
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
                let kind = action.as_str().to_string();
                Ok(accepted(
                    self.begin_workflow(actor, s, action, &kind, json!({"host": host}))
                        .await?,
                ))
            }
            ServerAction::Evacuate { host, admin_pass } => {
                let src = s.host.clone().unwrap_or_default();
                if self.host_up(&src).await == Some(true) {
                    return Err(ComputeError::BadRequest(format!(
                        "Compute service of {src} is still in use."
                    )));
                }
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
                        "evacuate",
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
                        "create_image",
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
                        "create_backup",
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
                        "change_password",
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
                        "rescue",
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
                    self.begin_workflow(actor, s, action, "shelve", json!({"offload": offload}))
                        .await?,
                ))
            }
            ServerAction::Unshelve {
                availability_zone,
                host,
            } => {
                if host.is_some() && !actor.is_admin() {
                    return Err(forbidden(Permission::UnshelveToHost));
                }
                if (host.is_some() || availability_zone.is_some())
                    && s.vm_state != VmState::ShelvedOffloaded
                {
                    return Err(ActionDenied::NotOffloaded {
                        server_id: s.id.clone(),
                        vm_state: s.vm_state,
                    }
                    .into());
                }
                let mut s = s;
                if let Some(z) = availability_zone {
                    s.pinned_availability_zone = z;
                }
                Ok(accepted(
                    self.begin_workflow(actor, s, action, "unshelve", json!({"host": host}))
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
            ServerAction::ConsoleOutput { length } => {
                let lines = match length {
                    None | Some(-1) => None,
                    Some(n) if n < -1 => {
                        return Err(ComputeError::BadRequest(
                            "Invalid input for field/attribute length.".into(),
                        ))
                    }
                    Some(n) => Some(n as usize),
                };
                let output = self
                    .agent_for(s.host.as_deref().unwrap_or_default())
                    .await?
                    .console_output(&s.instance_name, lines)
                    .await
                    .map_err(|e| match e {
                        lifeboat_hypervisor::HvError::NotFound(_) => ComputeError::Conflict(
                            format!("Instance {} could not be found on its host.", s.id),
                        ),
                        e => e.into(),
                    })?;
                Ok(ActionOutcome::ConsoleOutput { output })
            }
            ServerAction::RemoteConsole {
                protocol,
                console_type,
            } => {
                let unavailable = || {
                    ComputeError::BadRequest(format!("Unavailable console type {console_type}."))
                };
                let Some(base) = self.inner.cfg.serial_console_url.clone() else {
                    return Err(unavailable());
                };
                if protocol != "serial" || console_type != "serial" {
                    return Err(unavailable());
                }
                let socket = self
                    .agent_for(s.host.as_deref().unwrap_or_default())
                    .await?
                    .console_socket(&s.instance_name)
                    .await
                    .map_err(|e| match e {
                        HvError::Unsupported(_) => unavailable(),
                        e if e.refuses_state() || matches!(e, HvError::NotFound(_)) => {
                            ActionDenied::NotReady {
                                server_id: s.id.clone(),
                            }
                            .into()
                        }
                        e => e.into(),
                    })?;
                let token = self.issue_console_token(actor, &s.id, socket);
                Ok(ActionOutcome::RemoteConsole {
                    protocol,
                    console_type,
                    url: format!("{base}?token={token}"),
                })
            }
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
            | ServerAction::Restore => {
                let kind = action.as_str().to_string();
                Ok(accepted(
                    self.begin_workflow(actor, s, action, &kind, json!({}))
                        .await?,
                ))
            }
        }
    }

    async fn log_short(&self, actor: &Actor, s: &Server, kind: &str, message: &str) {
        let mut wf = self.new_workflow(kind, Some(s), Some(&actor.user_id), json!({}));
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

    /// Counts of a project's servers by status (for limits and dashboards).
    pub async fn usage(&self, actor: &Actor) -> Result<BTreeMap<Status, usize>, ComputeError> {
        let servers = self.list_servers(actor, &ListServers::default()).await?;
        let mut m = BTreeMap::new();
        for s in servers {
            *m.entry(s.status()).or_insert(0) += 1;
        }
        Ok(m)
    }
}

fn validate_tags(tags: &[String]) -> Result<(), ComputeError> {
    if tags.len() > 50 {
        return Err(ComputeError::BadRequest(
            "The number of tags exceeded the per-server limit 50".into(),
        ));
    }
    for t in tags {
        if t.is_empty() || t.len() > 60 || t.contains('/') || t.contains(',') {
            return Err(ComputeError::BadRequest(format!(
                "Invalid input for field/attribute tags. Value: {t}."
            )));
        }
    }
    Ok(())
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
