//! Per-project quotas in Nova's model: instances, cores, ram, key_pairs,
//! metadata_items, server_groups and server_group_members, with Nova's
//! defaults (`[quota]` in nova.conf), a `default` quota class admins may
//! change, per-project overrides, usage counted from the store, and Nova's
//! over-quota messages (`nova/compute/utils.py:check_num_instances_quota`).

use std::collections::BTreeMap;

use lifeboat_core::{Actor, Flavor, Permission};
use lifeboat_store::{Record, ServerQuery};
use serde::{Deserialize, Serialize};

use crate::error::{forbidden, OverQuota, QuotaExceeded};
use crate::{ComputeError, Engine, Reason};

/// The resources Lifeboat counts, with Nova's default limits.
pub const QUOTA_DEFAULTS: &[(&str, i64)] = &[
    ("cores", 20),
    ("instances", 10),
    ("key_pairs", 100),
    ("metadata_items", 128),
    ("ram", 51200),
    ("server_group_members", 10),
    ("server_groups", 10),
];

/// Limits by resource; -1 is unlimited.
pub type Limits = BTreeMap<String, i64>;

/// Stored limits: the `default` class (`class:default`) or one project's
/// overrides (`project:<id>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaRecord {
    /// `class:<name>` or `project:<id>`.
    pub key: String,
    /// Limits set for this key (resources absent fall back).
    pub limits: Limits,
}

impl Record for QuotaRecord {
    const KIND: &'static str = "quota";
    fn id(&self) -> String {
        self.key.clone()
    }
}

/// A project's use of the counted resources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuotaUsage {
    /// Servers not deleted.
    pub instances: i64,
    /// Their vCPUs.
    pub cores: i64,
    /// Their RAM in MiB.
    pub ram: i64,
    /// The caller's key pairs (Nova counts key pairs per user).
    pub key_pairs: i64,
    /// The project's server groups.
    pub server_groups: i64,
}

impl QuotaUsage {
    /// Usage of a resource by name (0 for the ones not counted).
    pub fn get(&self, resource: &str) -> i64 {
        match resource {
            "instances" => self.instances,
            "cores" => self.cores,
            "ram" => self.ram,
            "key_pairs" => self.key_pairs,
            "server_groups" => self.server_groups,
            _ => 0,
        }
    }
}

/// Serialises check-then-create so that concurrent creates cannot both
/// pass a check that only one of them fits (Nova rechecks instead).
pub(crate) static QUOTA_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The resources over quota (each front words them; Nova's
/// `TooManyInstances` in the OpenStack front).
fn too_many(overs: &[&'static str], req: &[String], used: &[i64], allowed: &[i64]) -> ComputeError {
    ComputeError::QuotaExceeded(QuotaExceeded::Resources(
        overs
            .iter()
            .zip(req)
            .zip(used.iter().zip(allowed))
            .map(|((r, q), (u, a))| OverQuota {
                resource: r,
                requested: q.clone(),
                used: *u,
                limit: *a,
            })
            .collect(),
    ))
}

impl Engine {
    async fn quota_record(&self, key: &str) -> Result<Limits, ComputeError> {
        Ok(self
            .inner
            .store
            .get::<QuotaRecord>(key)
            .await?
            .map(|r| r.limits)
            .unwrap_or_default())
    }

    /// The `default` quota class: Nova's defaults with the admin's changes.
    pub async fn quota_defaults(&self) -> Result<Limits, ComputeError> {
        let mut l: Limits = QUOTA_DEFAULTS
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        l.extend(self.quota_record("class:default").await?);
        Ok(l)
    }

    /// The limits in force for a project.
    pub async fn project_quotas(&self, project_id: &str) -> Result<Limits, ComputeError> {
        let mut l = self.quota_defaults().await?;
        l.extend(self.quota_record(&format!("project:{project_id}")).await?);
        Ok(l)
    }

    /// What a project uses now (`key_pairs` counts the actor's).
    pub async fn quota_usage(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<QuotaUsage, ComputeError> {
        let servers = self
            .inner
            .store
            .list_servers(&ServerQuery {
                project_id: Some(project_id.into()),
                ..Default::default()
            })
            .await?;
        let kps: Vec<lifeboat_core::Keypair> =
            self.inner.store.list_by_owner(&actor.user_id).await?;
        Ok(QuotaUsage {
            instances: servers.len() as i64,
            cores: servers.iter().map(|s| s.flavor.vcpus as i64).sum(),
            ram: servers.iter().map(|s| s.flavor.ram as i64).sum(),
            key_pairs: kps.len() as i64,
            server_groups: self.count_server_groups(project_id).await?,
        })
    }

    /// Quotas of a project as the caller may see them (own project or admin).
    pub async fn show_quotas(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<Limits, ComputeError> {
        if !actor.is_admin() && actor.project_id != project_id {
            return Err(forbidden(Permission::QuotaShow));
        }
        self.project_quotas(project_id).await
    }

    /// Sets limits (admin): `class` `Some("default")` changes the default
    /// class, otherwise the project's overrides. Unknown resources and
    /// values below -1 are refused; lowering a limit below usage needs `force`.
    pub async fn update_quotas(
        &self,
        actor: &Actor,
        target: QuotaTarget<'_>,
        changes: &Limits,
        force: bool,
    ) -> Result<Limits, ComputeError> {
        let (key, policy) = match target {
            QuotaTarget::Class(c) => (format!("class:{c}"), Permission::QuotaClassUpdate),
            QuotaTarget::Project(p) => (format!("project:{p}"), Permission::QuotaUpdate),
        };
        if !actor.is_admin() {
            return Err(forbidden(policy));
        }
        for (k, v) in changes {
            if !QUOTA_DEFAULTS.iter().any(|(r, _)| r == k) {
                return Err(Reason::BadQuotaKey { key: k.clone() }.into());
            }
            if *v < -1 {
                return Err(Reason::QuotaBelowMinusOne {
                    resource: k.clone(),
                    limit: *v,
                }
                .into());
            }
        }
        if let QuotaTarget::Project(p) = target {
            if !force {
                let used = self.quota_usage(actor, p).await?;
                for (k, v) in changes {
                    let u = used.get(k);
                    if *v != -1 && *v < u && k != "key_pairs" {
                        return Err(Reason::QuotaBelowUsage {
                            resource: k.clone(),
                            limit: *v,
                            used: u,
                        }
                        .into());
                    }
                }
            }
        }
        let mut limits = self.quota_record(&key).await?;
        limits.extend(changes.iter().map(|(k, v)| (k.clone(), *v)));
        self.inner
            .store
            .put(&QuotaRecord {
                key: key.clone(),
                limits,
            })
            .await?;
        match target {
            QuotaTarget::Class(_) => self.quota_defaults().await,
            QuotaTarget::Project(p) => self.project_quotas(p).await,
        }
    }

    /// Drops a project's overrides (admin): it falls back to the defaults.
    pub async fn delete_quotas(&self, actor: &Actor, project_id: &str) -> Result<(), ComputeError> {
        if !actor.is_admin() {
            return Err(forbidden(Permission::QuotaDelete));
        }
        self.inner
            .store
            .delete::<QuotaRecord>(&format!("project:{project_id}"))
            .await?;
        Ok(())
    }

    /// Checks that `min..=max` servers of `flavor` fit the project's
    /// instances, cores and ram quotas and returns how many to create
    /// (fewer than `max` when only that many fit, as Nova does). Also
    /// checks `metadata_items`. Hold the returned guard until the servers
    /// are stored.
    pub(crate) async fn check_create_quota(
        &self,
        actor: &Actor,
        flavor: &Flavor,
        min: u32,
        max: u32,
        metadata_items: usize,
    ) -> Result<(u32, tokio::sync::MutexGuard<'static, ()>), ComputeError> {
        let guard = QUOTA_LOCK.lock().await;
        let q = self.project_quotas(&actor.project_id).await?;
        let meta = q["metadata_items"];
        if meta >= 0 && metadata_items as i64 > meta {
            return Err(ComputeError::QuotaExceeded(QuotaExceeded::MetadataItems {
                limit: meta,
            }));
        }
        let (qi, qc, qr) = (q["instances"], q["cores"], q["ram"]);
        if qi < 0 && qc < 0 && qr < 0 {
            return Ok((max, guard));
        }
        let used = self.quota_usage(actor, &actor.project_id).await?;
        let (vcpus, ram) = (flavor.vcpus as i64, flavor.ram as i64);
        let headroom = |limit: i64, used: i64| if limit < 0 { i64::MAX } else { limit - used };
        let mut allowed = headroom(qi, used.instances);
        if vcpus > 0 {
            allowed = allowed.min(headroom(qc, used.cores) / vcpus);
        }
        if ram > 0 {
            allowed = allowed.min(headroom(qr, used.ram) / ram);
        }
        let (min, max) = (min as i64, max as i64);
        if allowed >= max {
            return Ok((max as u32, guard));
        }
        if allowed >= min {
            return Ok((allowed as u32, guard));
        }
        // Nova's get_over_quota_detail, resources in sorted order.
        let num = if min == max {
            min.to_string()
        } else {
            format!("{min}-{max}")
        };
        let mut overs = vec![];
        let mut req = vec![];
        let mut useds = vec![];
        let mut alloweds = vec![];
        for (name, limit, u, delta, shown) in [
            (
                "cores",
                qc,
                used.cores,
                max * vcpus,
                (max * vcpus).to_string(),
            ),
            ("instances", qi, used.instances, max, num),
            ("ram", qr, used.ram, max * ram, (max * ram).to_string()),
        ] {
            if limit >= 0 && u + delta > limit {
                overs.push(name);
                req.push(shown);
                useds.push(u);
                alloweds.push(limit);
            }
        }
        Err(too_many(&overs, &req, &useds, &alloweds))
    }

    /// Checks that growing a server of `project_id` from `old` to `new`
    /// fits its cores and ram quotas (Nova's resize upsize check).
    pub(crate) async fn check_resize_quota(
        &self,
        actor: &Actor,
        project_id: &str,
        old: &lifeboat_core::FlavorSnapshot,
        new: &Flavor,
    ) -> Result<(), ComputeError> {
        let dc = new.vcpus as i64 - old.vcpus as i64;
        let dr = new.ram as i64 - old.ram as i64;
        if dc <= 0 && dr <= 0 {
            return Ok(());
        }
        let q = self.project_quotas(project_id).await?;
        let used = self.quota_usage(actor, project_id).await?;
        let mut overs = vec![];
        let mut req = vec![];
        let mut useds = vec![];
        let mut alloweds = vec![];
        for (name, limit, u, delta) in [
            ("cores", q["cores"], used.cores, dc),
            ("ram", q["ram"], used.ram, dr),
        ] {
            if delta > 0 && limit >= 0 && u + delta > limit {
                overs.push(name);
                req.push(delta.to_string());
                useds.push(u);
                alloweds.push(limit);
            }
        }
        if overs.is_empty() {
            Ok(())
        } else {
            Err(too_many(&overs, &req, &useds, &alloweds))
        }
    }

    /// Checks one more key pair fits the user's `key_pairs` quota.
    pub(crate) async fn check_keypair_quota(&self, actor: &Actor) -> Result<(), ComputeError> {
        let limit = self.project_quotas(&actor.project_id).await?["key_pairs"];
        if limit < 0 {
            return Ok(());
        }
        let kps: Vec<lifeboat_core::Keypair> =
            self.inner.store.list_by_owner(&actor.user_id).await?;
        if kps.len() as i64 >= limit {
            return Err(ComputeError::QuotaExceeded(QuotaExceeded::KeyPairs));
        }
        Ok(())
    }
}

/// Whose limits an update changes.
#[derive(Debug, Clone, Copy)]
pub enum QuotaTarget<'a> {
    /// A quota class (`default` is the only one Nova honours).
    Class(&'a str),
    /// One project.
    Project(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_quota_resources_in_order() {
        let e = too_many(
            &["cores", "ram"],
            &["4".into(), "2048".into()],
            &[20, 51200],
            &[20, 51200],
        );
        assert_eq!(
            e.to_string(),
            "quota exceeded: cores (requested 4, used 20 of 20); ram (requested 2048, used 51200 of 51200)"
        );
    }
}
