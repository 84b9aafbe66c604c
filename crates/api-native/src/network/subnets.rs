//! Subnets in the native API: views, requests and handlers.

use super::common::*;

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

/// A subnet to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetCreate {
    /// Network id or name.
    #[schema(example = "private")]
    pub network: String,
    /// CIDR (`10.1.0.0/24`, `fd00::/64`).
    #[schema(example = "10.1.0.0/24")]
    pub cidr: String,
    /// Name.
    pub name: Option<String>,
    /// 4 or 6 (default: from the CIDR).
    #[schema(schema_with = ip_version)]
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

/// 4 or 6, or null.
fn ip_version() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::ObjectBuilder;
    use utoipa::openapi::SchemaType;
    ObjectBuilder::new()
        .schema_type(SchemaType::Integer)
        .enum_values(Some([4, 6]))
        .nullable(true)
        .description(Some("4 or 6 (default: from the CIDR)."))
        .build()
        .into()
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
    // A CIDR overlapping one of the network's subnets is refused by the
    // state, not the body: 409 (Neutron's words, its 400 in the Networking
    // front).
    if let Some(new) = cidr_addr(&r.cidr) {
        for s in e.subnet_list(&a).await? {
            if s.network_id != net.network.id {
                continue;
            }
            let overlaps = in_cidr(new, &s.cidr)
                || cidr_addr(&s.cidr).is_some_and(|old| in_cidr(old, &r.cidr));
            if overlaps {
                return Err(conflict(&format!(
                    "Requested subnet with cidr: {} for network: {} overlaps with another subnet.",
                    r.cidr, net.network.id
                )));
            }
        }
    }
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
