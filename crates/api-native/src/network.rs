//! Networks, subnets, ports, floating IPs, security groups and routers in the native
//! API. The engine's networking service does the work (the same one the
//! OpenStack Networking front calls, so both see the same records, roles and
//! tenant isolation); this file parses, resolves names and renders flat
//! native views.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use lifeboat_core::Time;
use lifeboat_engine::neutron::{
    AllocationPool, FixedIpReq, FloatingIpReq, FloatingIpView, GatewayReq, NetError, NetErrorKind,
    NetworkReq, NetworkView, PortReq, PortView, Router, RouterReq, RuleReq, SecurityGroup,
    SecurityGroupRule, Subnet, SubnetReq,
};
use lifeboat_engine::Engine;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::Body;

type R<T> = Result<T, ApiError>;

impl From<NetError> for ApiError {
    fn from(e: NetError) -> Self {
        let (status, code) = match e.kind {
            NetErrorKind::BadRequest => (StatusCode::BAD_REQUEST, "bad_request"),
            NetErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
            NetErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            NetErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            NetErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!("internal error: {}", e.message);
        }
        ApiError {
            status,
            code,
            message: e.message,
        }
    }
}

fn not_found(what: &str, key: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        message: format!("no {what} with id or name {key}"),
    }
}

fn ambiguous(what: &str, key: &str) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        code: "conflict",
        message: format!("more than one {what} is named {key}: use its id"),
    }
}

/// Picks the one item whose id is `key`, else the one named `key`.
fn pick<'a, T>(
    items: &'a [T],
    key: &str,
    id: impl Fn(&T) -> &str,
    name: impl Fn(&T) -> &str,
    what: &str,
) -> R<&'a T> {
    if let Some(x) = items.iter().find(|x| id(x) == key) {
        return Ok(x);
    }
    let mut named = items.iter().filter(|x| name(x) == key);
    match (named.next(), named.next()) {
        (Some(x), None) => Ok(x),
        (Some(_), Some(_)) => Err(ambiguous(what, key)),
        _ => Err(not_found(what, key)),
    }
}

async fn network_view(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<NetworkView> {
    let all = e.net_list(a).await?;
    pick(&all, key, |n| &n.network.id, |n| &n.network.name, "network").cloned()
}

async fn subnet_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
    let all = e.subnet_list(a).await?;
    Ok(pick(&all, key, |s| &s.id, |s| &s.name, "subnet")?
        .id
        .clone())
}

async fn port_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
    let all = e.port_list(a).await?;
    Ok(pick(&all, key, |p| &p.port.id, |p| &p.attrs.name, "port")?
        .port
        .id
        .clone())
}

async fn group_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
    let all = e.sg_list(a).await?;
    Ok(pick(&all, key, |g| &g.id, |g| &g.name, "security group")?
        .id
        .clone())
}

async fn group_ids(e: &Engine, a: &lifeboat_core::Actor, keys: &[String]) -> R<Vec<String>> {
    let mut out = vec![];
    for k in keys {
        out.push(group_id(e, a, k).await?);
    }
    Ok(out)
}

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

/// An address range of a subnet.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// First address.
    pub start: String,
    /// Last address.
    pub end: String,
}

/// A subnet.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubnetOut {
    /// UUID.
    pub id: String,
    /// Network.
    pub network_id: String,
    /// Owner project.
    pub project_id: String,
    /// Name.
    pub name: String,
    /// 4 or 6.
    pub ip_version: u8,
    /// CIDR.
    pub cidr: String,
    /// Gateway (none when null).
    pub gateway_ip: Option<String>,
    /// Where addresses are allocated from.
    pub allocation_pools: Vec<Pool>,
    /// DNS servers.
    pub dns_nameservers: Vec<String>,
    /// DHCP on.
    pub enable_dhcp: bool,
    /// Created.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Time,
}

impl From<Subnet> for SubnetOut {
    fn from(s: Subnet) -> Self {
        SubnetOut {
            id: s.id,
            network_id: s.network_id,
            project_id: s.project_id,
            name: s.name,
            ip_version: s.ip_version,
            cidr: s.cidr,
            gateway_ip: s.gateway_ip,
            allocation_pools: s
                .allocation_pools
                .into_iter()
                .map(|p| Pool {
                    start: p.start,
                    end: p.end,
                })
                .collect(),
            dns_nameservers: s.dns_nameservers,
            enable_dhcp: s.enable_dhcp,
            created_at: s.created_at,
        }
    }
}

/// Deserialises a present field (null included) as `Some`, so an absent
/// field (`None`, by `default`) and `null` (`Some(None)`) differ.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A subnet to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetCreate {
    /// Network id or name.
    pub network: String,
    /// CIDR (`10.1.0.0/24`, `fd00::/64`).
    pub cidr: String,
    /// Name.
    pub name: Option<String>,
    /// 4 or 6 (default: from the CIDR).
    pub ip_version: Option<u8>,
    /// Gateway; null for none; absent for the first address.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub gateway_ip: Option<Option<String>>,
    /// Allocation pools (default: the whole range but the gateway).
    pub allocation_pools: Option<Vec<Pool>>,
    /// DNS servers.
    pub dns_nameservers: Option<Vec<String>>,
    /// DHCP (default on).
    pub enable_dhcp: Option<bool>,
}

/// Subnets visible to the caller.
#[utoipa::path(get, path = "/api/v1/subnets", responses((status = 200, body = [SubnetOut])), security(("token" = [])))]
pub async fn list_subnets(State(e): State<Engine>, Caller(a): Caller) -> R<Json<Vec<SubnetOut>>> {
    Ok(Json(
        e.subnet_list(&a)
            .await?
            .into_iter()
            .map(Into::into)
            .collect(),
    ))
}

/// Create a subnet.
#[utoipa::path(post, path = "/api/v1/subnets", request_body = SubnetCreate,
    responses((status = 201, body = SubnetOut)), security(("token" = [])))]
pub async fn create_subnet(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(r): Body<SubnetCreate>,
) -> R<(StatusCode, Json<SubnetOut>)> {
    let net = network_view(&e, &a, &r.network).await?;
    let ip_version = r
        .ip_version
        .unwrap_or(if r.cidr.contains(':') { 6 } else { 4 });
    let s = e
        .subnet_create(
            &a,
            SubnetReq {
                network_id: Some(net.network.id),
                name: r.name,
                ip_version: Some(ip_version),
                cidr: Some(r.cidr),
                gateway_ip: r.gateway_ip,
                allocation_pools: r.allocation_pools.map(|ps| {
                    ps.into_iter()
                        .map(|p| AllocationPool {
                            start: p.start,
                            end: p.end,
                        })
                        .collect()
                }),
                dns_nameservers: r.dns_nameservers,
                enable_dhcp: r.enable_dhcp,
                ..Default::default()
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(s.into())))
}

/// Delete a subnet (id or name).
#[utoipa::path(delete, path = "/api/v1/subnets/{id}", params(("id" = String, Path, description = "Id or name")),
    responses((status = 204)), security(("token" = [])))]
pub async fn delete_subnet(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    let id = subnet_id(&e, &a, &id).await?;
    e.subnet_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

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

/// An address wanted on a port: a subnet, an address, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixedIpIn {
    /// Subnet id or name.
    pub subnet: Option<String>,
    /// Address.
    pub ip_address: Option<String>,
}

/// A port to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortCreate {
    /// Network id or name.
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

async fn fixed_ips(
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

async fn groups(
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
    pub network: Option<String>,
    /// Address wanted (default: a free one).
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

async fn fip_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
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
/// external network).
#[utoipa::path(post, path = "/api/v1/floating-ips", request_body = FloatingIpCreate,
    responses((status = 201, body = FloatingIpOut)), security(("token" = [])))]
pub async fn create_floating_ip(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(r): Body<FloatingIpCreate>,
) -> R<(StatusCode, Json<FloatingIpOut>)> {
    let net = match &r.network {
        Some(k) => network_view(&e, &a, k).await?,
        None => {
            let ext: Vec<NetworkView> = e
                .net_list(&a)
                .await?
                .into_iter()
                .filter(|n| n.network.external)
                .collect();
            match ext.len() {
                1 => ext.into_iter().next().expect("one"),
                0 => {
                    return Err(ApiError::bad_request(
                        "there is no external network to allocate a floating IP from",
                    ))
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "there are several external networks: give \"network\"",
                    ))
                }
            }
        }
    };
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

/// A security group rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleOut {
    /// UUID.
    pub id: String,
    /// Group.
    pub security_group_id: String,
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` or `IPv6`.
    pub ethertype: String,
    /// Protocol (`tcp`, `udp`, `icmp`, a number; null for any).
    pub protocol: Option<String>,
    /// First port.
    pub port_range_min: Option<u32>,
    /// Last port.
    pub port_range_max: Option<u32>,
    /// Remote prefix.
    pub remote_ip_prefix: Option<String>,
    /// Remote group.
    pub remote_group_id: Option<String>,
    /// Description.
    pub description: String,
}

impl From<SecurityGroupRule> for RuleOut {
    fn from(r: SecurityGroupRule) -> Self {
        RuleOut {
            id: r.id,
            security_group_id: r.security_group_id,
            direction: r.direction,
            ethertype: r.ethertype,
            protocol: r.protocol,
            port_range_min: r.port_range_min,
            port_range_max: r.port_range_max,
            remote_ip_prefix: r.remote_ip_prefix,
            remote_group_id: r.remote_group_id,
            description: r.description,
        }
    }
}

/// A security group with its rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecurityGroupOut {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Owner project.
    pub project_id: String,
    /// Stateful.
    pub stateful: bool,
    /// Rules.
    pub rules: Vec<RuleOut>,
}

async fn group_out(e: &Engine, g: SecurityGroup) -> R<SecurityGroupOut> {
    let rules = e.sg_rules_of(&g.id).await?;
    Ok(SecurityGroupOut {
        id: g.id,
        name: g.name,
        description: g.description,
        project_id: g.project_id,
        stateful: g.stateful,
        rules: rules.into_iter().map(Into::into).collect(),
    })
}

/// A security group to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupCreate {
    /// Name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
}

/// A rule to add.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleCreate {
    /// `ingress` or `egress`.
    pub direction: String,
    /// `IPv4` (default) or `IPv6`.
    pub ethertype: Option<String>,
    /// Protocol (`tcp`, `udp`, `icmp`, a number; absent for any).
    pub protocol: Option<String>,
    /// First port.
    pub port_range_min: Option<u32>,
    /// Last port.
    pub port_range_max: Option<u32>,
    /// Remote prefix (`0.0.0.0/0`).
    pub remote_ip_prefix: Option<String>,
    /// Remote group id or name.
    pub remote_group: Option<String>,
    /// Description.
    pub description: Option<String>,
}

/// Security groups visible to the caller, with their rules.
#[utoipa::path(get, path = "/api/v1/security-groups", responses((status = 200, body = [SecurityGroupOut])), security(("token" = [])))]
pub async fn list_security_groups(
    State(e): State<Engine>,
    Caller(a): Caller,
) -> R<Json<Vec<SecurityGroupOut>>> {
    let mut out = vec![];
    for g in e.sg_list(&a).await? {
        out.push(group_out(&e, g).await?);
    }
    Ok(Json(out))
}

/// Create a security group (egress rules as Neutron makes them).
#[utoipa::path(post, path = "/api/v1/security-groups", request_body = SecurityGroupCreate,
    responses((status = 201, body = SecurityGroupOut)), security(("token" = [])))]
pub async fn create_security_group(
    State(e): State<Engine>,
    Caller(a): Caller,
    Body(r): Body<SecurityGroupCreate>,
) -> R<(StatusCode, Json<SecurityGroupOut>)> {
    let g = e
        .sg_create(&a, r.name, r.description.unwrap_or_default(), None)
        .await?;
    Ok((StatusCode::CREATED, Json(group_out(&e, g).await?)))
}

/// One security group (id or name).
#[utoipa::path(get, path = "/api/v1/security-groups/{id}", params(("id" = String, Path, description = "Id or name")),
    responses((status = 200, body = SecurityGroupOut)), security(("token" = [])))]
pub async fn show_security_group(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<Json<SecurityGroupOut>> {
    let id = group_id(&e, &a, &id).await?;
    let g = e.sg_get(&a, &id).await?;
    Ok(Json(group_out(&e, g).await?))
}

/// Delete a security group (id or name).
#[utoipa::path(delete, path = "/api/v1/security-groups/{id}", params(("id" = String, Path, description = "Id or name")),
    responses((status = 204)), security(("token" = [])))]
pub async fn delete_security_group(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    let id = group_id(&e, &a, &id).await?;
    e.sg_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a rule to a security group (id or name).
#[utoipa::path(post, path = "/api/v1/security-groups/{id}/rules", params(("id" = String, Path, description = "Id or name")),
    request_body = RuleCreate, responses((status = 201, body = RuleOut)), security(("token" = [])))]
pub async fn create_rule(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
    Body(r): Body<RuleCreate>,
) -> R<(StatusCode, Json<RuleOut>)> {
    let gid = group_id(&e, &a, &id).await?;
    let remote = match &r.remote_group {
        Some(g) => Some(group_id(&e, &a, g).await?),
        None => None,
    };
    let rule = e
        .sg_rule_create(
            &a,
            RuleReq {
                security_group_id: Some(gid),
                direction: Some(r.direction),
                ethertype: r.ethertype,
                protocol: r.protocol,
                port_range_min: r.port_range_min,
                port_range_max: r.port_range_max,
                remote_ip_prefix: r.remote_ip_prefix,
                remote_group_id: remote,
                description: r.description,
                project_id: None,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(rule.into())))
}

/// Delete a security group rule.
#[utoipa::path(delete, path = "/api/v1/security-group-rules/{id}", params(("id" = String, Path, description = "Rule id")),
    responses((status = 204)), security(("token" = [])))]
pub async fn delete_rule(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
) -> R<StatusCode> {
    e.sg_rule_delete(&a, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

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

fn fixed_out(f: &lifeboat_engine::neutron::FixedIp) -> FixedIpOut {
    FixedIpOut {
        subnet_id: f.subnet_id.clone(),
        ip_address: f.ip_address.clone(),
    }
}

async fn router_out(e: &Engine, a: &lifeboat_core::Actor, r: Router) -> R<RouterOut> {
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

async fn router_id(e: &Engine, a: &lifeboat_core::Actor, key: &str) -> R<String> {
    let all = e.router_list(a).await?;
    Ok(pick(&all, key, |r| &r.id, |r| &r.name, "router")?
        .id
        .clone())
}

/// The gateway a request names: an external network (id or name) and SNAT.
async fn gateway(
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

/// An interface to add: a subnet (the router takes its gateway address) or a port.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RouterInterfaceIn {
    /// Subnet id or name.
    pub subnet: Option<String>,
    /// Port id or name.
    pub port: Option<String>,
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
#[utoipa::path(post, path = "/api/v1/routers/{id}/interfaces", params(("id" = String, Path, description = "Id or name")),
    request_body = RouterInterfaceIn, responses((status = 200, body = RouterOut)), security(("token" = [])))]
pub async fn add_router_interface(
    State(e): State<Engine>,
    Caller(a): Caller,
    Path(id): Path<String>,
    Body(r): Body<RouterInterfaceIn>,
) -> R<Json<RouterOut>> {
    let id = router_id(&e, &a, &id).await?;
    let subnet = match &r.subnet {
        Some(s) => Some(subnet_id(&e, &a, s).await?),
        None => None,
    };
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
    ("id" = String, Path, description = "Router id or name"),
    ("key" = String, Path, description = "Subnet id or name, or the interface's port id")),
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
