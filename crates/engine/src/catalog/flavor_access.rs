//! Flavor access (Nova's `os-flavor-access`): which projects may use a
//! private flavor, and the check create and resize make.

use lifeboat_core::{Actor, Flavor, Permission};
use lifeboat_store::Record;
use serde::{Deserialize, Serialize};

use crate::{ComputeError, Engine, Reason, Resource};

/// One project's access to a private flavor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlavorAccess {
    /// Flavor id.
    pub flavor_id: String,
    /// Project id.
    pub project_id: String,
}

impl Record for FlavorAccess {
    const KIND: &'static str = "flavor_access";
    fn id(&self) -> String {
        format!("{}:{}", self.flavor_id, self.project_id)
    }
    fn ref_id(&self) -> Option<String> {
        Some(self.flavor_id.clone())
    }
}

fn admin_only(actor: &Actor, permission: Permission) -> Result<(), ComputeError> {
    if actor.is_admin() {
        Ok(())
    } else {
        Err(crate::error::forbidden(permission))
    }
}

impl Engine {
    /// Projects with access to a private flavor (admin). Public flavors
    /// have no access list (Nova answers 404).
    pub async fn flavor_access(
        &self,
        actor: &Actor,
        flavor_id: &str,
    ) -> Result<Vec<FlavorAccess>, ComputeError> {
        admin_only(actor, Permission::FlavorAccessList)?;
        let f = self.flavor(flavor_id).await?;
        if f.is_public {
            return Err(ComputeError::NotFound {
                kind: Resource::FlavorAccessList,
                id: f.id,
            });
        }
        Ok(self.inner.store.list_by_ref(&f.id).await?)
    }

    /// Grants a project access to a private flavor (admin).
    pub async fn add_flavor_access(
        &self,
        actor: &Actor,
        flavor_id: &str,
        project_id: &str,
    ) -> Result<Vec<FlavorAccess>, ComputeError> {
        admin_only(actor, Permission::FlavorAccessAdd)?;
        let f = self.flavor(flavor_id).await?;
        if f.is_public {
            return Err(Reason::FlavorIsPublic.into());
        }
        let a = FlavorAccess {
            flavor_id: f.id.clone(),
            project_id: project_id.into(),
        };
        match self.inner.store.insert(&a).await {
            Ok(()) => {}
            Err(lifeboat_store::StoreError::Duplicate(_)) => {
                return Err(Reason::FlavorAccessExists {
                    flavor: f.id,
                    project: project_id.into(),
                }
                .into())
            }
            Err(e) => return Err(e.into()),
        }
        Ok(self.inner.store.list_by_ref(&f.id).await?)
    }

    /// Revokes a project's access to a private flavor (admin).
    pub async fn remove_flavor_access(
        &self,
        actor: &Actor,
        flavor_id: &str,
        project_id: &str,
    ) -> Result<Vec<FlavorAccess>, ComputeError> {
        admin_only(actor, Permission::FlavorAccessRemove)?;
        let f = self.flavor(flavor_id).await?;
        if !self
            .inner
            .store
            .delete::<FlavorAccess>(&format!("{}:{project_id}", f.id))
            .await?
        {
            return Err(ComputeError::NotFound {
                kind: Resource::FlavorAccess,
                id: format!("{}:{project_id}", f.id),
            });
        }
        Ok(self.inner.store.list_by_ref(&f.id).await?)
    }

    /// Ids of the private flavors a project was given access to.
    pub async fn flavors_granted_to(
        &self,
        project_id: &str,
    ) -> Result<std::collections::BTreeSet<String>, ComputeError> {
        let all: Vec<FlavorAccess> = self.inner.store.list().await?;
        Ok(all
            .into_iter()
            .filter(|a| a.project_id == project_id)
            .map(|a| a.flavor_id)
            .collect())
    }

    /// True when the actor's project may use the flavor: it is public, the
    /// actor is an admin, or the project was granted access.
    pub async fn can_use_flavor(&self, actor: &Actor, f: &Flavor) -> Result<bool, ComputeError> {
        if f.is_public || actor.is_admin() {
            return Ok(true);
        }
        Ok(self
            .inner
            .store
            .get::<FlavorAccess>(&format!("{}:{}", f.id, actor.project_id))
            .await?
            .is_some())
    }

    /// A flavor the actor may boot or resize to: enabled and accessible;
    /// otherwise `NotFound` (Nova's FlavorNotFound, which create and resize
    /// render as a 400).
    pub(crate) async fn usable_flavor(
        &self,
        actor: &Actor,
        key: &str,
    ) -> Result<Flavor, ComputeError> {
        let f = self.flavor(key).await?;
        if f.disabled || !self.can_use_flavor(actor, &f).await? {
            return Err(ComputeError::NotFound {
                kind: Resource::Flavor,
                id: key.into(),
            });
        }
        Ok(f)
    }
}
