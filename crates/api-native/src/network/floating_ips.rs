//! Floating IPs in the native API: views, requests and handlers.

use super::common::*;

/// A floating IP: a public address mapped onto a port's fixed IP.
#[derive(Debug, Serialize, ToSchema)]
pub struct FloatingIpOut {
    /// UUID.
    pub id: String,
    /// The public address.
    pub address: String,
    /// External network.
    pub network_id: String,
    /// Port it maps to.
    pub port_id: Option<String>,
    /// Fixed IP of that port it maps to.
    pub fixed_ip_address: Option<String>,
    /// Router of the port's subnet.
    pub router_id: Option<String>,
    /// `ACTIVE` when associated, else `DOWN`.
    pub status: String,
    /// Description.
    pub description: String,
    /// Owner project.
    pub project_id: String,
}

impl From<FloatingIpView> for FloatingIpOut {
    fn from(v: FloatingIpView) -> Self {
        FloatingIpOut {
            id: v.fip.id,
            address: v.fip.address,
            network_id: v.fip.network_id,
            port_id: v.fip.port_id,
            fixed_ip_address: v.fixed_ip_address,
            router_id: v.router_id,
            status: v.status.into(),
            description: v.attrs.description,
            project_id: v.fip.project_id,
        }
    }
}

/// A floating IP to allocate.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FloatingIpCreate {
    /// External network id or name (default: the only external network).
    #[schema(example = "public")]
    pub network: Option<String>,
    /// Address wanted (default: a free one): an IPv4 or IPv6 address in a
    /// subnet of the external network (409 when it is in none).
    #[schema(schema_with = ip_address)]
    pub address: Option<String>,
    /// Port id or name to associate at once.
    pub port: Option<String>,
    /// Fixed IP of that port (when it has several).
    pub fixed_ip_address: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// A floating IP association change: a port, or null to disassociate.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FloatingIpUpdate {
    /// Port id or name; null disassociates.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub port: Option<Option<String>>,
    /// Fixed IP of that port (when it has several).
    pub fixed_ip_address: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// An IPv4 or IPv6 address, or null.
fn ip_address() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaFormat};
    use utoipa::openapi::SchemaType;
    let ip = |format: &str| {
        ObjectBuilder::new()
            .schema_type(SchemaType::String)
            .format(Some(SchemaFormat::Custom(format.into())))
    };
    OneOfBuilder::new()
        .item(ip("ipv4"))
        .item(ip("ipv6"))
        .nullable(true)
        .description(Some("An IPv4 or IPv6 address."))
        .build()
        .into()
}

pub(super) async fn fip_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
    let all = e.fip_list(a).await?;
    Ok(
        pick(&all, key, |f| &f.fip.id, |f| &f.fip.address, "floating IP")?
            .fip
            .id
            .clone(),
    )
}

/// Floating IPs visible to the caller.
#[utoipa::path(get, path = "/api/v1/floating-ips", responses((status = 200, body = [FloatingIpOut])), security(("token" = [])))]
pub async fn list_floating_ips(
    State(e): State<Engine>,
    Caller(a): Caller,
) -> R<Json<Vec<FloatingIpOut>>> {
    Ok(Json(
        e.fip_list(&a).await?.into_iter().map(Into::into).collect(),
    ))
}

/// Allocate a floating IP (an empty body takes a free address of the
/// external network; 409 when there is no external network, or several).
#[utoipa::path(post, path = "/api/v1/floating-ips", request_body = FloatingIpCreate,
    responses((status = 201, body = FloatingIpOut)), security(("token" = [])))]
pub async fn create_floating_ip(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(r): Body<FloatingIpCreate>,
) -> R<(StatusCode, Json<FloatingIpOut>)> {
    let net = match &r.network {
        // Only an external network can be named ("no external network with
        // id or name ...", 404, like any other name that names nothing).
        Some(k) => {
            let ext: Vec<NetworkView> = e
                .net_list(&a)
                .await?
                .into_iter()
                .filter(|n| n.network.external)
                .collect();
            pick(
                &ext,
                k,
                |n| &n.network.id,
                |n| &n.network.name,
                "external network",
            )?
            .clone()
        }
        None => {
            let ext: Vec<NetworkView> = e
                .net_list(&a)
                .await?
                .into_iter()
                .filter(|n| n.network.external)
                .collect();
            // The deployment's state, not the body, decides these two: 409
            // (as Neutron answers when a network has no address left).
            match ext.len() {
                1 => ext.into_iter().next().expect("one"),
                0 => {
                    return Err(conflict(
                        "there is no external network to allocate a floating IP from",
                    ))
                }
                _ => {
                    return Err(conflict(
                        "there are several external networks: give \"network\"",
                    ))
                }
            }
        }
    };
    if let Some(addr) = &r.address {
        let ip: std::net::IpAddr = addr
            .parse()
            .map_err(|_| ApiError::bad_request(format!("address {addr} is not an IP address")))?;
        let subnets = e.subnet_list(&a).await?;
        if !subnets
            .iter()
            .any(|s| s.network_id == net.network.id && in_cidr(ip, &s.cidr))
        {
            return Err(conflict(&format!(
                "address {addr} is in no subnet of external network {}",
                net.network.id
            )));
        }
    }
    let port = match &r.port {
        Some(p) => Some(Some(port_id(&e, &a, p).await?)),
        None => None,
    };
    let v = e
        .fip_create(
            &a,
            FloatingIpReq {
                floating_network_id: Some(net.network.id),
                floating_ip_address: r.address,
                port_id: port,
                fixed_ip_address: r.fixed_ip_address,
                description: r.description,
                project_id: None,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(v.into())))
}

/// One floating IP (id or address).
#[utoipa::path(get, path = "/api/v1/floating-ips/{id}", params(("id" = String, Path, description = "Id or address")),
    responses((status = 200, body = FloatingIpOut)), security(("token" = [])))]
pub async fn show_floating_ip(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<FloatingIpOut>> {
    let id = fip_id(&e, &a, &id).await?;
    Ok(Json(e.fip_get(&a, &id).await?.into()))
}

/// Associate a floating IP with a port, or disassociate it (`"port": null`).
/// The address moves with the port: attach the port to another server and
/// the floating IP follows.
#[utoipa::path(patch, path = "/api/v1/floating-ips/{id}", params(("id" = String, Path, description = "Id or address")),
    request_body = FloatingIpUpdate, responses((status = 200, body = FloatingIpOut)), security(("token" = [])))]
pub async fn update_floating_ip(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
    Body(r): Body<FloatingIpUpdate>,
) -> R<Json<FloatingIpOut>> {
    let id = fip_id(&e, &a, &id).await?;
    let port = match r.port {
        Some(Some(p)) => Some(Some(port_id(&e, &a, &p).await?)),
        Some(None) => Some(None),
        None => None,
    };
    let v = e
        .fip_update(
            &a,
            &id,
            FloatingIpReq {
                port_id: port,
                fixed_ip_address: r.fixed_ip_address,
                description: r.description,
                ..Default::default()
            },
        )
        .await?;
    Ok(Json(v.into()))
}

/// Release a floating IP (id or address).
#[utoipa::path(delete, path = "/api/v1/floating-ips/{id}", params(("id" = String, Path, description = "Id or address")),
    responses((status = 204)), security(("token" = [])))]
pub async fn delete_floating_ip(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    let id = fip_id(&e, &a, &id).await?;
    e.fip_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
