//! Security groups and their rules in the native API: views, requests and handlers.

use super::common::*;

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

pub(super) async fn group_out(e: &Engine, g: SecurityGroup) -> R<SecurityGroupOut> {
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
    #[schema(pattern = "^(ingress|egress)$")]
    pub direction: String,
    /// `IPv4` (default) or `IPv6` (any case).
    #[schema(pattern = "^[iI][pP][vV][46]$")]
    pub ethertype: Option<String>,
    /// Protocol (`tcp`, `udp`, `icmp`, a number; absent for any).
    pub protocol: Option<String>,
    /// First port.
    #[schema(maximum = 65535)]
    pub port_range_min: Option<u32>,
    /// Last port.
    #[schema(maximum = 65535)]
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
