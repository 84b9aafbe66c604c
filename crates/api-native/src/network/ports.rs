//! Ports in the native API: views, requests and handlers.

use super::common::*;

/// One address of a port.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixedIpOut {
    /// Subnet.
    pub subnet_id: String,
    /// Address.
    pub ip_address: String,
}

/// A port: an endpoint (MAC and fixed IPs) that outlives the server it is
/// attached to.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortOut {
    /// UUID.
    pub id: String,
    /// Network.
    pub network_id: String,
    /// Name.
    pub name: String,
    /// MAC.
    pub mac_address: String,
    /// Addresses.
    pub fixed_ips: Vec<FixedIpOut>,
    /// Server it is attached to.
    pub server_id: Option<String>,
    /// Device (server id, router id, ...).
    pub device_id: String,
    /// Device owner (`compute:nova`, `network:router_interface`, ...).
    pub device_owner: String,
    /// `ACTIVE` when bound, else `DOWN`.
    pub status: String,
    /// Security group ids.
    pub security_groups: Vec<String>,
    /// Port security (security groups and anti-spoofing) on.
    pub port_security_enabled: bool,
    /// Administrative state.
    pub admin_state_up: bool,
    /// Owner project.
    pub project_id: String,
}

impl From<PortView> for PortOut {
    fn from(v: PortView) -> Self {
        PortOut {
            id: v.port.id,
            network_id: v.port.network_id,
            name: v.attrs.name,
            mac_address: v.port.mac_address,
            fixed_ips: v
                .fixed_ips
                .into_iter()
                .map(|f| FixedIpOut {
                    subnet_id: f.subnet_id,
                    ip_address: f.ip_address,
                })
                .collect(),
            server_id: v.port.server_id,
            device_id: v.device_id,
            device_owner: v.device_owner,
            status: v.status.into(),
            security_groups: v.attrs.security_groups,
            port_security_enabled: v.attrs.port_security_enabled,
            admin_state_up: v.attrs.admin_state_up,
            project_id: v.port.project_id,
        }
    }
}

/// An address wanted on a port: a subnet, an address, or both (at least
/// one: documented as `anyOf`, see the [`utoipa::ToSchema`] impl).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedIpIn {
    /// Subnet id or name.
    pub subnet: Option<String>,
    /// Address.
    pub ip_address: Option<String>,
}

impl<'s> ToSchema<'s> for FixedIpIn {
    fn schema() -> (
        &'s str,
        utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    ) {
        use utoipa::openapi::schema::{AdditionalProperties, AnyOfBuilder, ObjectBuilder};
        use utoipa::openapi::SchemaType;
        // `{}` and all-null are refused ("Exactly one of 'subnet_id' or
        // 'ip_address' must be specified."): one of them is a string.
        let field = |description: &str, nullable: bool| {
            ObjectBuilder::new()
                .schema_type(SchemaType::String)
                .nullable(nullable)
                .description(Some(description))
        };
        let branch = |required: &str| {
            ObjectBuilder::new()
                .property("subnet", field("Subnet id or name.", required != "subnet"))
                .property("ip_address", field("Address.", required != "ip_address"))
                .required(required)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let schema = AnyOfBuilder::new()
            .item(branch("subnet"))
            .item(branch("ip_address"))
            .description(Some(
                "An address wanted on a port: a subnet, an address, or both.",
            ))
            .build();
        (
            "FixedIpIn",
            utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::AnyOf(schema)),
        )
    }
}

/// A port to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortCreate {
    /// Network id or name.
    #[schema(example = "private")]
    pub network: String,
    /// Name.
    pub name: Option<String>,
    /// MAC (default: generated).
    pub mac_address: Option<String>,
    /// Addresses (default: one from the network's first subnet).
    pub fixed_ips: Option<Vec<FixedIpIn>>,
    /// Security group ids or names (default: the project's `default`).
    pub security_groups: Option<Vec<String>>,
    /// Port security.
    pub port_security_enabled: Option<bool>,
}

/// A port change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortUpdate {
    /// Name.
    pub name: Option<String>,
    /// Addresses (replaces them).
    pub fixed_ips: Option<Vec<FixedIpIn>>,
    /// Security group ids or names (replaces them).
    pub security_groups: Option<Vec<String>>,
    /// Port security.
    pub port_security_enabled: Option<bool>,
    /// Administrative state.
    pub admin_state_up: Option<bool>,
}

pub(super) async fn fixed_ips(
    e: &Engine,
    a: &lifeboat_core::Actor,
    ips: Option<Vec<FixedIpIn>>,
) -> R<Option<Vec<FixedIpReq>>> {
    let Some(ips) = ips else {
        return Ok(None);
    };
    let mut out = vec![];
    for f in ips {
        let subnet_id = match &f.subnet {
            Some(s) => Some(subnet_id(e, a, s).await?),
            None => None,
        };
        out.push(FixedIpReq {
            subnet_id,
            ip_address: f.ip_address,
        });
    }
    Ok(Some(out))
}

pub(super) async fn groups(
    e: &Engine,
    a: &lifeboat_core::Actor,
    g: Option<Vec<String>>,
) -> R<Option<Vec<String>>> {
    Ok(match g {
        Some(g) => Some(group_ids(e, a, &g).await?),
        None => None,
    })
}

/// Ports visible to the caller.
#[utoipa::path(get, path = "/api/v1/ports", responses((status = 200, body = [PortOut])), security(("token" = [])))]
pub async fn list_ports(State(e): State<Engine>, Caller(a): Caller) -> R<Json<Vec<PortOut>>> {
    Ok(Json(
        e.port_list(&a).await?.into_iter().map(Into::into).collect(),
    ))
}

/// Create a port (a fixed endpoint to attach to a server later).
#[utoipa::path(post, path = "/api/v1/ports", request_body = PortCreate,
    responses((status = 201, body = PortOut)), security(("token" = [])))]
pub async fn create_port(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(r): Body<PortCreate>,
) -> R<(StatusCode, Json<PortOut>)> {
    let net = network_view(&e, &a, &r.network).await?;
    let req = PortReq {
        network_id: Some(net.network.id),
        name: r.name,
        mac_address: r.mac_address,
        fixed_ips: fixed_ips(&e, &a, r.fixed_ips).await?,
        security_groups: groups(&e, &a, r.security_groups).await?,
        port_security_enabled: r.port_security_enabled,
        ..Default::default()
    };
    Ok((
        StatusCode::CREATED,
        Json(e.port_create(&a, req).await?.into()),
    ))
}

/// One port (id or name).
#[utoipa::path(get, path = "/api/v1/ports/{id}", params(("id" = String, Path, description = "Id or name")),
    responses((status = 200, body = PortOut)), security(("token" = [])))]
pub async fn show_port(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<PortOut>> {
    let id = port_id(&e, &a, &id).await?;
    Ok(Json(e.port_get(&a, &id).await?.into()))
}

/// Change a port.
#[utoipa::path(patch, path = "/api/v1/ports/{id}", params(("id" = String, Path, description = "Id or name")),
    request_body = PortUpdate, responses((status = 200, body = PortOut)), security(("token" = [])))]
pub async fn update_port(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
    Body(r): Body<PortUpdate>,
) -> R<Json<PortOut>> {
    let id = port_id(&e, &a, &id).await?;
    let req = PortReq {
        name: r.name,
        admin_state_up: r.admin_state_up,
        fixed_ips: fixed_ips(&e, &a, r.fixed_ips).await?,
        security_groups: groups(&e, &a, r.security_groups).await?,
        port_security_enabled: r.port_security_enabled,
        ..Default::default()
    };
    Ok(Json(e.port_update(&a, &id, req).await?.into()))
}

/// Delete a port (id or name).
#[utoipa::path(delete, path = "/api/v1/ports/{id}", params(("id" = String, Path, description = "Id or name")),
    responses((status = 204)), security(("token" = [])))]
pub async fn delete_port(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    let id = port_id(&e, &a, &id).await?;
    e.port_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
