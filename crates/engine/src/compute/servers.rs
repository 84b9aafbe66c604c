//! Reading, listing and updating servers; metadata, tags, instance actions.

use std::collections::BTreeMap;

use lifeboat_core::{actions, Action, Actor, Server, Status, VmState, Workflow};
use lifeboat_store::ServerQuery;

use crate::error::{OverQuota, QuotaExceeded};
use crate::requests::*;
use crate::{ComputeError, Engine, Field, Reason, Resource};

use super::{not_found, sanitize_hostname};

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
                .map_err(|_| Reason::MarkerNotFound { marker: m.clone() })?;
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
                return Err(Reason::InvalidField(Field::Name).into());
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
                return Err(Reason::InvalidField(Field::Metadata).into());
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
                    return Err(ComputeError::QuotaExceeded(QuotaExceeded::Resources(vec![
                        OverQuota {
                            resource: "metadata_items",
                            requested: "1".into(),
                            used: 128,
                            limit: 128,
                        },
                    ])));
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
                kind: Resource::MetadataItem,
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
        if !existed && s.tags.len() >= MAX_TAGS {
            return Err(Reason::TooManyTags { limit: MAX_TAGS }.into());
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
                kind: Resource::Tag,
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
                kind: Resource::Workflow,
                id: id.into(),
            })?;
        if let Some(p) = &w.project_id {
            if !actor.can_see(p) {
                return Err(ComputeError::NotFound {
                    kind: Resource::Workflow,
                    id: id.into(),
                });
            }
        } else if !actor.is_admin() {
            return Err(ComputeError::NotFound {
                kind: Resource::Workflow,
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

/// How many tags a server may have.
const MAX_TAGS: usize = 50;

fn validate_tags(tags: &[String]) -> Result<(), ComputeError> {
    if tags.len() > MAX_TAGS {
        return Err(Reason::TooManyTags { limit: MAX_TAGS }.into());
    }
    for t in tags {
        if t.is_empty() || t.len() > 60 || t.contains('/') || t.contains(',') {
            return Err(Reason::BadTag { tag: t.clone() }.into());
        }
    }
    Ok(())
}
