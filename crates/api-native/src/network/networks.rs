//! Networks in the native API: views, requests and handlers.

use super::common::*;

/// A network.
#[derive(Debug, Serialize, ToSchema)]
pub struct NetworkOut {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Owner project.
    pub project_id: String,
    /// Carries floating IPs.
    pub external: bool,
    /// Visible to every project.
    pub shared: bool,
    /// MTU.
    pub mtu: u32,
    /// Administrative state.
    pub admin_state_up: bool,
    /// Port security default of its ports.
    pub port_security_enabled: bool,
    /// Subnet ids.
    pub subnets: Vec<String>,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
    /// Updated.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Time,
}

impl From<NetworkView> for NetworkOut {
    fn from(v: NetworkView) -> Self {
        NetworkOut {
            id: v.network.id,
            name: v.network.name,
            description: v.attrs.description,
            project_id: v.attrs.project_id,
            external: v.network.external,
            shared: v.attrs.shared,
            mtu: v.attrs.mtu,
            admin_state_up: v.attrs.admin_state_up,
            port_security_enabled: v.attrs.port_security_enabled,
            subnets: v.subnets,
            created_at: v.attrs.created_at,
            updated_at: v.attrs.updated_at,
        }
    }
}

/// A network to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkCreate {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Visible to every project (admin).
    pub shared: Option<bool>,
    /// Carries floating IPs (admin).
    pub external: Option<bool>,
    /// MTU.
    pub mtu: Option<u32>,
    /// Port security default.
    pub port_security_enabled: Option<bool>,
    /// Owner project (admin).
    pub project_id: Option<String>,
}

/// Networks visible to the caller.
#[utoipa::path(get, path = "/api/v1/networks", responses((status = 200, body = [NetworkOut])), security(("token" = [])))]
pub async fn list_networks(State(e): State<Engine>, Caller(a): Caller) -> R<Json<Vec<NetworkOut>>> {
    Ok(Json(
        e.net_list(&a).await?.into_iter().map(Into::into).collect(),
    ))
}

/// Create a network.
#[utoipa::path(post, path = "/api/v1/networks", request_body = NetworkCreate,
    responses((status = 201, body = NetworkOut)), security(("token" = [])))]
pub async fn create_network(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(r): Body<NetworkCreate>,
) -> R<(StatusCode, Json<NetworkOut>)> {
    let v = e
        .net_create(
            &a,
            NetworkReq {
                name: Some(r.name),
                description: r.description,
                admin_state_up: None,
                shared: r.shared,
                external: r.external,
                mtu: r.mtu,
                port_security_enabled: r.port_security_enabled,
                project_id: r.project_id,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(v.into())))
}

/// One network (id or name).
#[utoipa::path(get, path = "/api/v1/networks/{id}", params(("id" = String, Path, description = "Id or name")),
    responses((status = 200, body = NetworkOut)), security(("token" = [])))]
pub async fn show_network(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<NetworkOut>> {
    Ok(Json(network_view(&e, &a, &id).await?.into()))
}

/// Delete a network (it must have no ports in use).
#[utoipa::path(delete, path = "/api/v1/networks/{id}", params(("id" = String, Path, description = "Id or name")),
    responses((status = 204)), security(("token" = [])))]
pub async fn delete_network(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    let v = network_view(&e, &a, &id).await?;
    e.net_delete(&a, &v.network.id).await?;
    Ok(StatusCode::NO_CONTENT)
}
