//! Routers in the native API: views, requests and handlers.

use super::common::*;
use super::ports::FixedIpOut;

/// A router's gateway: its address on an external network (SNAT out, floating IPs in).
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayOut {
    /// External network.
    pub network_id: String,
    /// Source NAT of the router's subnets on.
    pub enable_snat: bool,
    /// The router's addresses on the external network.
    pub addresses: Vec<FixedIpOut>,
}

/// One interface of a router: its port with the subnet's gateway address.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouterInterfaceOut {
    /// Port.
    pub port_id: String,
    /// Network.
    pub network_id: String,
    /// Subnet.
    pub subnet_id: String,
    /// The router's address on the subnet.
    pub ip_address: String,
}

/// A router between project networks and an external network.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouterOut {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Owner project.
    pub project_id: String,
    /// Administrative state.
    pub admin_state_up: bool,
    /// External gateway (null: none).
    pub gateway: Option<GatewayOut>,
    /// Interfaces on project subnets.
    pub interfaces: Vec<RouterInterfaceOut>,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
    /// Updated.
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Time,
}

pub(super) fn fixed_out(f: &lifeboat_engine::neutron::FixedIp) -> FixedIpOut {
    FixedIpOut {
        subnet_id: f.subnet_id.clone(),
        ip_address: f.ip_address.clone(),
    }
}

pub(super) async fn router_out(e: &Engine, a: &lifeboat_core::Actor, r: Router) -> R<RouterOut> {
    let mut interfaces = vec![];
    for p in e.router_interfaces(a, &r.id).await? {
        for f in &p.fixed_ips {
            interfaces.push(RouterInterfaceOut {
                port_id: p.port.id.clone(),
                network_id: p.port.network_id.clone(),
                subnet_id: f.subnet_id.clone(),
                ip_address: f.ip_address.clone(),
            });
        }
    }
    Ok(RouterOut {
        id: r.id,
        name: r.name,
        description: r.description,
        project_id: r.project_id,
        admin_state_up: r.admin_state_up,
        gateway: r.external_gateway_info.map(|g| GatewayOut {
            network_id: g.network_id,
            enable_snat: g.enable_snat,
            addresses: g.external_fixed_ips.iter().map(fixed_out).collect(),
        }),
        interfaces,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

pub(super) async fn router_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
    let all = e.router_list(a).await?;
    Ok(pick(&all, key, |r| &r.id, |r| &r.name, "router")?
        .id
        .clone())
}

/// The gateway a request names: an external network (id or name) and SNAT.
pub(super) async fn gateway(
    e: &Engine,
    a: &lifeboat_core::Actor,
    network: &str,
    enable_snat: Option<bool>,
) -> R<GatewayReq> {
    Ok(GatewayReq {
        network_id: network_view(e, a, network).await?.network.id,
        enable_snat,
    })
}

/// A router to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterCreate {
    /// Name.
    #[schema(example = "router1")]
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// External network id or name for its gateway (default: none).
    pub external_network: Option<String>,
    /// Source NAT through the gateway (default true).
    pub enable_snat: Option<bool>,
}

/// A router change: its name, description, or gateway.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterUpdate {
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// External network id or name for the gateway; null removes the gateway.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub external_network: Option<Option<String>>,
    /// Source NAT through the gateway (with `external_network`).
    pub enable_snat: Option<bool>,
}

/// An interface to add: a subnet (the router takes its gateway address) or
/// a port, exactly one of the two (documented so: `oneOf`, see the
/// [`utoipa::ToSchema`] impl).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterInterfaceIn {
    /// Subnet id or name.
    pub subnet: Option<String>,
    /// Port id or name.
    pub port: Option<String>,
}

impl<'s> ToSchema<'s> for RouterInterfaceIn {
    fn schema() -> (
        &'s str,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    ) {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder};
        use utoipa::openapi::SchemaType;
        // `{}`, `{"subnet": null}` and both at once are refused (Neutron's
        // "Either subnet_id or port_id must be specified." and "Cannot
        // specify both"), so each branch takes one non-null string.
        let one = |field: &str, description: &str| {
            ObjectBuilder::new()
                .property(
                    field,
                    ObjectBuilder::new()
                        .schema_type(SchemaType::String)
                        .description(Some(description)),
                )
                .required(field)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let schema = OneOfBuilder::new()
            .item(one("subnet", "Subnet id or name."))
            .item(one("port", "Port id or name."))
            .description(Some(
                "An interface to add: a subnet (the router takes its gateway address) or a port, exactly one.",
            ))
            .example(Some(serde_json::json!({"subnet": "private-subnet"})))
            .build();
        (
            "RouterInterfaceIn",
            utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::OneOf(schema)),
        )
    }
}

/// Routers visible to the caller.
#[utoipa::path(get, path = "/api/v1/routers", responses((status = 200, body = [RouterOut])), security(("token" = [])))]
pub async fn list_routers(State(e): State<Engine>, Caller(a): Caller) -> R<Json<Vec<RouterOut>>> {
    let mut out = vec![];
    for r in e.router_list(&a).await? {
        out.push(router_out(&e, &a, r).await?);
    }
    Ok(Json(out))
}

/// Create a router, with a gateway on an external network when one is named.
#[utoipa::path(post, path = "/api/v1/routers", request_body = RouterCreate,
    responses((status = 201, body = RouterOut)), security(("token" = [])))]
pub async fn create_router(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(r): Body<RouterCreate>,
) -> R<(StatusCode, Json<RouterOut>)> {
    let gw = match &r.external_network {
        Some(n) => Some(gateway(&e, &a, n, r.enable_snat).await?),
        None if r.enable_snat.is_some() => {
            return Err(ApiError::bad_request("enable_snat needs external_network"))
        }
        None => None,
    };
    let v = e
        .router_create(
            &a,
            RouterReq {
                name: Some(r.name),
                description: r.description,
                external_gateway_info: gw.map(Some),
                ..Default::default()
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(router_out(&e, &a, v).await?)))
}

/// One router (id or name), with its gateway and interfaces.
#[utoipa::path(get, path = "/api/v1/routers/{id}", params(("id" = String, Path, description = "Id or name")),
    responses((status = 200, body = RouterOut)), security(("token" = [])))]
pub async fn show_router(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<RouterOut>> {
    let id = router_id(&e, &a, &id).await?;
    let r = e.router_get(&a, &id).await?;
    Ok(Json(router_out(&e, &a, r).await?))
}

/// Change a router: rename it, or set or clear its gateway (`"external_network": null`).
#[utoipa::path(patch, path = "/api/v1/routers/{id}", params(("id" = String, Path, description = "Id or name")),
    request_body = RouterUpdate, responses((status = 200, body = RouterOut)), security(("token" = [])))]
pub async fn update_router(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
    Body(r): Body<RouterUpdate>,
) -> R<Json<RouterOut>> {
    let id = router_id(&e, &a, &id).await?;
    let gw = match (&r.external_network, r.enable_snat) {
        (Some(Some(n)), snat) => Some(Some(gateway(&e, &a, n, snat).await?)),
        (Some(None), None) => Some(None),
        (Some(None), Some(_)) => {
            return Err(ApiError::bad_request(
                "enable_snat needs an external_network",
            ))
        }
        (None, Some(snat)) => {
            // SNAT alone: the same gateway network, SNAT changed.
            let cur = e.router_get(&a, &id).await?;
            let g = cur.external_gateway_info.ok_or_else(|| {
                ApiError::bad_request("the router has no gateway: give external_network")
            })?;
            Some(Some(GatewayReq {
                network_id: g.network_id,
                enable_snat: Some(snat),
            }))
        }
        (None, None) => None,
    };
    let v = e
        .router_update(
            &a,
            &id,
            RouterReq {
                name: r.name,
                description: r.description,
                external_gateway_info: gw,
                ..Default::default()
            },
        )
        .await?;
    Ok(Json(router_out(&e, &a, v).await?))
}

/// Delete a router (it must have no interfaces; its gateway goes with it).
#[utoipa::path(delete, path = "/api/v1/routers/{id}", params(("id" = String, Path, description = "Id or name")),
    responses((status = 204)), security(("token" = [])))]
pub async fn delete_router(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    let id = router_id(&e, &a, &id).await?;
    e.router_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add an interface on a subnet (the router takes the subnet's gateway address) or on a port.
#[utoipa::path(post, path = "/api/v1/routers/{id}/interfaces", params(("id" = String, Path, description = "Id or name", example = "router1")),
    request_body = RouterInterfaceIn, responses((status = 200, body = RouterOut)), security(("token" = [])))]
pub async fn add_router_interface(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
    Body(r): Body<RouterInterfaceIn>,
) -> R<Json<RouterOut>> {
    let id = router_id(&e, &a, &id).await?;
    // The body's shape is checked before its names are looked up.
    if r.subnet.is_some() == r.port.is_some() {
        e.router_add_interface(&a, &id, r.subnet.clone(), r.port.clone())
            .await?;
    }
    let subnet = match &r.subnet {
        Some(s) => Some(subnet_id(&e, &a, s).await?),
        None => None,
    };
    // An interface the router already has on the subnet is the state's
    // refusal, not the body's: 409 (Neutron's words).
    if let Some(sid) = &subnet {
        let ports = e.router_interfaces(&a, &id).await?;
        if ports
            .iter()
            .any(|p| p.fixed_ips.iter().any(|f| &f.subnet_id == sid))
        {
            return Err(conflict(&format!(
                "Bad router request: Router already has a port on subnet {sid}."
            )));
        }
    }
    let port = match &r.port {
        Some(p) => Some(port_id(&e, &a, p).await?),
        None => None,
    };
    e.router_add_interface(&a, &id, subnet, port).await?;
    let v = e.router_get(&a, &id).await?;
    Ok(Json(router_out(&e, &a, v).await?))
}

/// Remove the router's interface on a subnet or port (`key`: a subnet id or name, or the
/// interface's port id).
#[utoipa::path(delete, path = "/api/v1/routers/{id}/interfaces/{key}", params(
    ("id" = String, Path, description = "Router id or name", example = "router1"),
    ("key" = String, Path, description = "Subnet id or name, or the interface's port id", example = "private-subnet")),
    responses((status = 200, body = RouterOut)), security(("token" = [])))]
pub async fn remove_router_interface(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path((id, key)): Path<(String, String)>,
) -> R<Json<RouterOut>> {
    let id = router_id(&e, &a, &id).await?;
    let ports = e.router_interfaces(&a, &id).await?;
    if ports.iter().any(|p| p.port.id == key) {
        e.router_remove_interface(&a, &id, None, Some(key)).await?;
    } else {
        let subnet = subnet_id(&e, &a, &key).await?;
        e.router_remove_interface(&a, &id, Some(subnet), None)
            .await?;
    }
    let v = e.router_get(&a, &id).await?;
    Ok(Json(router_out(&e, &a, v).await?))
}
