//! Server groups (Nova's `os-server-groups`): a project's named placement
//! policy (affinity, anti-affinity and their soft forms). A server joins a
//! group at create (scheduler hint `group`); membership is the server's own
//! `server_groups` field, written with the server in one transaction, so it
//! needs no second record and a deleted server leaves its group at once.
//! The scheduler (`Engine::schedule`) reads a server's group and the hosts of
//! its other members for every placement: create, unshelve, migrate, live
//! migration and evacuation.

use std::collections::BTreeMap;

use lifeboat_core::placement::{GroupPolicy, GroupRule};
use lifeboat_core::{ids, now, Actor, Role, Server, Time};
use lifeboat_store::{Record, ServerQuery};
use serde::{Deserialize, Serialize};

use crate::error::QuotaExceeded;
use crate::{ComputeError, Engine, Reason, Resource};

/// A server group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerGroup {
    /// UUID.
    pub id: String,
    /// Name (not unique).
    pub name: String,
    /// Placement policy.
    pub policy: GroupPolicy,
    /// anti-affinity's `max_server_per_host` rule, when set.
    pub max_server_per_host: Option<u32>,
    /// Owning project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// Created.
    pub created_at: Time,
}

impl Record for ServerGroup {
    const KIND: &'static str = "server_group";
    fn id(&self) -> String {
        self.id.clone()
    }
    fn owner(&self) -> String {
        self.project_id.clone()
    }
    fn created(&self) -> Time {
        self.created_at
    }
}

fn group_not_found(id: &str) -> ComputeError {
    ComputeError::NotFound {
        kind: Resource::ServerGroup,
        id: id.to_string(),
    }
}

impl Engine {
    /// Creates a group in the actor's project (members and admins; counts
    /// against `server_groups`). Only anti-affinity takes a rule.
    pub async fn create_server_group(
        &self,
        actor: &Actor,
        name: &str,
        policy: GroupPolicy,
        max_server_per_host: Option<u32>,
    ) -> Result<ServerGroup, ComputeError> {
        if actor.role < Role::Member {
            return Err(ComputeError::Forbidden(
                "readers cannot create server groups".into(),
            ));
        }
        if name.trim().is_empty() || name.chars().count() > 255 {
            return Err(ComputeError::BadRequest(
                "A server group's name takes 1 to 255 characters, not all blank.".into(),
            ));
        }
        if max_server_per_host.is_some() && policy != GroupPolicy::AntiAffinity {
            return Err(Reason::RulesNeedAntiAffinity.into());
        }
        if max_server_per_host == Some(0) {
            return Err(ComputeError::BadRequest(
                "max_server_per_host must be at least 1.".into(),
            ));
        }
        let _quota = crate::compute::quota::QUOTA_LOCK.lock().await;
        let limit = self.project_quotas(&actor.project_id).await?["server_groups"];
        if limit >= 0 {
            let used = self.count_server_groups(&actor.project_id).await?;
            if used + 1 > limit {
                return Err(ComputeError::QuotaExceeded(QuotaExceeded::ServerGroups));
            }
        }
        let g = ServerGroup {
            id: ids::uuid(),
            name: name.to_string(),
            policy,
            max_server_per_host,
            project_id: actor.project_id.clone(),
            user_id: actor.user_id.clone(),
            created_at: now(),
        };
        self.inner.store.insert(&g).await?;
        Ok(g)
    }

    /// How many groups a project has.
    pub(crate) async fn count_server_groups(&self, project_id: &str) -> Result<i64, ComputeError> {
        let gs: Vec<ServerGroup> = self.inner.store.list_by_owner(project_id).await?;
        Ok(gs.len() as i64)
    }

    /// The actor's project's groups, or with `all_projects` (admins only;
    /// ignored for others, as Nova does) every project's.
    pub async fn server_groups(
        &self,
        actor: &Actor,
        all_projects: bool,
    ) -> Result<Vec<ServerGroup>, ComputeError> {
        if all_projects && actor.is_admin() {
            Ok(self.inner.store.list().await?)
        } else {
            Ok(self.inner.store.list_by_owner(&actor.project_id).await?)
        }
    }

    /// One group. Another project's group is not found for non-admins, as
    /// in Nova (`InstanceGroup.get_by_uuid` filters by the caller's project
    /// unless the context is admin).
    pub async fn server_group(&self, actor: &Actor, id: &str) -> Result<ServerGroup, ComputeError> {
        self.visible_group(actor, id)
            .await?
            .ok_or_else(|| group_not_found(id))
    }

    /// The group `id` if it exists and `actor` may see it (its project's,
    /// or any for admins).
    async fn visible_group(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<Option<ServerGroup>, ComputeError> {
        Ok(self
            .inner
            .store
            .get::<ServerGroup>(id)
            .await?
            .filter(|g| actor.can_see(&g.project_id)))
    }

    /// Deletes a group (members and admins). Its servers stay where they are
    /// and are no longer constrained.
    pub async fn delete_server_group(&self, actor: &Actor, id: &str) -> Result<(), ComputeError> {
        let g = self.server_group(actor, id).await?;
        if actor.role < Role::Member {
            return Err(ComputeError::Forbidden(
                "readers cannot delete server groups".into(),
            ));
        }
        if !self.inner.store.delete::<ServerGroup>(&g.id).await? {
            return Err(group_not_found(id));
        }
        Ok(())
    }

    /// The servers (not deleted) that are members of each group, by group id.
    pub async fn server_group_members(
        &self,
        groups: &[ServerGroup],
    ) -> Result<BTreeMap<String, Vec<String>>, ComputeError> {
        let mut out: BTreeMap<String, Vec<String>> =
            groups.iter().map(|g| (g.id.clone(), vec![])).collect();
        if groups.is_empty() {
            return Ok(out);
        }
        for s in self.group_servers().await? {
            for gid in &s.server_groups {
                if let Some(m) = out.get_mut(gid) {
                    m.push(s.id.clone());
                }
            }
        }
        Ok(out)
    }

    async fn group_servers(&self) -> Result<Vec<Server>, ComputeError> {
        Ok(self
            .inner
            .store
            .list_servers(&ServerQuery::default())
            .await?
            .into_iter()
            .filter(|s| !s.server_groups.is_empty())
            .collect())
    }

    /// The group a create asks for with the scheduler hint `group` (a UUID,
    /// or a list holding one), checked for `count` more members against the
    /// `server_group_members` quota. As in Nova, the group is looked up the
    /// way `InstanceGroup.get_by_uuid` does: a non-admin's lookup is limited
    /// to the caller's project (another project's group is "not found",
    /// 400), an admin may name any project's group; the quota is the
    /// caller's project's limit on the caller's own members of that group
    /// (`_server_group_count_members_by_user`).
    /// Call with the quota lock held until the servers are stored.
    pub(crate) async fn group_for_create(
        &self,
        actor: &Actor,
        hints: &BTreeMap<String, serde_json::Value>,
        count: u32,
    ) -> Result<Option<ServerGroup>, ComputeError> {
        let id = match hints.get("group") {
            None | Some(serde_json::Value::Null) => return Ok(None),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(a)) => match a.as_slice() {
                [] => return Ok(None),
                [serde_json::Value::String(s)] => s.clone(),
                _ => {
                    return Err(ComputeError::BadRequest(
                        "Only one server group may be given in the scheduler hint 'group'.".into(),
                    ))
                }
            },
            Some(other) => {
                return Err(ComputeError::BadRequest(format!(
                    "Invalid scheduler hint group: {other}"
                )))
            }
        };
        let not_found = || -> ComputeError {
            Reason::BadReference {
                kind: Resource::ServerGroup,
                id: id.clone(),
            }
            .into()
        };
        let Some(g) = self.visible_group(actor, &id).await? else {
            return Err(not_found());
        };
        let limit = self.project_quotas(&actor.project_id).await?["server_group_members"];
        if limit >= 0 {
            let used = self
                .group_servers()
                .await?
                .iter()
                .filter(|s| s.user_id == actor.user_id && s.server_groups.contains(&g.id))
                .count() as i64;
            if used + count as i64 > limit {
                return Err(ComputeError::QuotaExceeded(QuotaExceeded::GroupMembers));
            }
        }
        Ok(Some(g))
    }

    /// The placement rule of `s`'s group: its policy and where its other
    /// members are (a server mid-move counts on the host it is on). `None`
    /// when it is in no group, or its group was deleted.
    pub(crate) async fn group_rule(&self, s: &Server) -> Result<Option<GroupRule>, ComputeError> {
        let Some(gid) = s.server_groups.first() else {
            return Ok(None);
        };
        let Some(g) = self.inner.store.get::<ServerGroup>(gid).await? else {
            return Ok(None);
        };
        let mut members_on = BTreeMap::new();
        for m in self.group_servers().await? {
            if m.id == s.id || !m.server_groups.contains(gid) {
                continue;
            }
            if let Some(h) = &m.host {
                *members_on.entry(h.clone()).or_insert(0u32) += 1;
            }
        }
        Ok(Some(GroupRule {
            policy: g.policy,
            max_per_host: g.max_server_per_host.unwrap_or(1),
            members_on,
        }))
    }
}
