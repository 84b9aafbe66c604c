//! Server groups in the native API: the engine's server-group service (the
//! same one the Compute front's `os-server-groups` calls, so both see the
//! same groups, members, quotas, roles and tenant isolation), rendered flat.
//! A server joins a group at create with the scheduler hint `group`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use lifeboat_core::placement::GroupPolicy;
use lifeboat_core::Time;
use lifeboat_engine::Engine;
use lifeboat_engine::ServerGroup;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
#[allow(unused_imports)]
use crate::error::ErrorBody;
use crate::extract::Body;

type R<T> = Result<T, ApiError>;

/// A server group with its members.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerGroupOut {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Placement policy.
    pub policy: GroupPolicy,
    /// anti-affinity's most members on one host (null: 1).
    pub max_server_per_host: Option<u32>,
    /// Ids of the servers in the group (not deleted).
    pub members: Vec<String>,
    /// Owner project.
    pub project_id: String,
    /// Creating user.
    pub user_id: String,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
}

impl ServerGroupOut {
    fn new(g: ServerGroup, members: Vec<String>) -> ServerGroupOut {
        ServerGroupOut {
            id: g.id,
            name: g.name,
            policy: g.policy,
            max_server_per_host: g.max_server_per_host,
            members,
            project_id: g.project_id,
            user_id: g.user_id,
            created_at: g.created_at,
        }
    }
}

/// A server group to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerGroupCreate {
    /// Name (1-255 characters, not unique).
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// Placement policy.
    pub policy: GroupPolicy,
    /// anti-affinity only: most members on one host (at least 1).
    #[schema(minimum = 1)]
    pub max_server_per_host: Option<u32>,
}

/// Server group list filters.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ServerGroupQuery {
    /// Admin: every project's groups (ignored for others).
    #[serde(default)]
    pub all_projects: bool,
}

async fn render(e: &Engine, groups: Vec<ServerGroup>) -> R<Vec<ServerGroupOut>> {
    let mut members = e.server_group_members(&groups).await?;
    Ok(groups
        .into_iter()
        .map(|g| {
            let m = members.remove(&g.id).unwrap_or_default();
            ServerGroupOut::new(g, m)
        })
        .collect())
}

/// Server groups of the caller's project.
#[utoipa::path(get, path = "/api/v1/server-groups", params(ServerGroupQuery),
    responses((status = 200, body = [ServerGroupOut])), security(("token" = [])))]
pub async fn list_server_groups(
    State(e): State<Engine>,
    Caller(a): Caller,
    Query(q): Query<ServerGroupQuery>,
) -> R<Json<Vec<ServerGroupOut>>> {
    let groups = e.server_groups(&a, q.all_projects).await?;
    Ok(Json(render(&e, groups).await?))
}

/// Create a server group (members and admins; counts against the
/// `server_groups` quota).
#[utoipa::path(post, path = "/api/v1/server-groups", request_body = ServerGroupCreate,
    responses((status = 201, body = ServerGroupOut), (status = 403, body = ErrorBody)), security(("token" = [])))]
pub async fn create_server_group(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(r): Body<ServerGroupCreate>,
) -> R<(StatusCode, Json<ServerGroupOut>)> {
    let g = e
        .create_server_group(&a, &r.name, r.policy, r.max_server_per_host)
        .await?;
    Ok((StatusCode::CREATED, Json(ServerGroupOut::new(g, vec![]))))
}

/// Show a server group.
#[utoipa::path(get, path = "/api/v1/server-groups/{id}", params(("id" = String, Path, description = "Resource id")),
    responses((status = 200, body = ServerGroupOut), (status = 404, body = ErrorBody)), security(("token" = [])))]
pub async fn show_server_group(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<ServerGroupOut>> {
    let g = e.server_group(&a, &id).await?;
    let mut out = render(&e, vec![g]).await?;
    Ok(Json(out.remove(0)))
}

/// Delete a server group (members and admins); its servers stay where they
/// are.
#[utoipa::path(delete, path = "/api/v1/server-groups/{id}", params(("id" = String, Path, description = "Resource id")),
    responses((status = 204), (status = 404, body = ErrorBody)), security(("token" = [])))]
pub async fn delete_server_group(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    e.delete_server_group(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
