//! Identity lookups over records.

use lifeboat_core::{Role, RoleAssignment};

use crate::{Store, StoreResult};

impl Store {
    /// The highest role `user_id` holds on `project_id`, if any.
    pub async fn role_of(&self, user_id: &str, project_id: &str) -> StoreResult<Option<Role>> {
        let all: Vec<RoleAssignment> = self.list_by_owner(user_id).await?;
        Ok(all
            .iter()
            .filter(|a| a.project_id == project_id)
            .filter_map(|a| Role::parse(&a.role))
            .max())
    }
}
